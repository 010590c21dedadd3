/* seccomp.c: the sandbox syscall filter. The denylist is loaded once by the sandbox init and
 * inherited by every command; clone3 is refused by a second 4-instruction filter each command
 * adds just before exec, so the init itself can still use clone3(CLONE_INTO_CGROUP) (and no
 * per-command compile or JIT of the big filter is paid). Default allow; EPERM for the escape and
 * host-wide tools Docker's default profile denies (mount API, namespaces, ptrace, kexec, bpf,
 * keyrings, modules, clocks, swap, reboot, handle-based opens, userfaultfd, io_uring, ...), ENOSYS
 * for clone3 in commands (so libc falls back to clone, whose namespace flags are checked), and
 * EPERM for vsock sockets (vsock is not namespaced: on a VM it reaches the hypervisor). Other
 * architectures' syscalls are killed. */
#include "init_parts.h"

#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/ioctl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *const denied[] = {
    /* mounts and namespaces */
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "unshare",
    "setns",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "open_tree_attr",
    "chroot",
    /* other processes' memory */
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "process_madvise",
    /* kernel and host-wide state */
    "kexec_load",
    "kexec_file_load",
    "bpf",
    "perf_event_open",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "query_module",
    "get_kernel_syms",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "syslog",
    "sysfs",
    "_sysctl",
    "ustat",
    "uselib",
    "lookup_dcookie",
    "nfsservctl",
    "quotactl",
    "quotactl_fd",
    "vhangup",
    "iopl",
    "ioperm",
    "sethostname",
    "setdomainname",
    "lsm_set_self_attr",
    /* clocks */
    "clock_settime",
    "clock_adjtime",
    "settimeofday",
    "adjtimex",
    "stime",
    /* keyrings */
    "keyctl",
    "add_key",
    "request_key",
    /* handles, fault handling, NUMA placement, io_uring */
    "open_by_handle_at",
    "name_to_handle_at",
    "userfaultfd",
    "mbind",
    "set_mempolicy",
    "migrate_pages",
    "move_pages",
    "get_mempolicy",
    "set_mempolicy_home_node",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    /* fanotify needs CAP_SYS_ADMIN in Docker */
    "fanotify_init",
};

static const unsigned long ns_flags[] = {CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNS,    CLONE_NEWNET,
                                         CLONE_NEWIPC,  CLONE_NEWUTS, CLONE_NEWCGROUP};

int sbx_seccomp_block_clone3(void)
{
    /* A tiny second filter: other architectures are already killed by the first one. */
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof f / sizeof *f, .filter = f};
    return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0 ? -errno : 0;
}

/* The denylist compiled to BPF by sbx_seccomp_prepare (libseccomp's rule building and code
 * generation cost ~0.4 ms here: a pooled init pays it before it is claimed). */
static struct sock_fprog prepared;

static int build_filter(scmp_filter_ctx ctx)
{
    int rc = 0;
    for (size_t i = 0; i < sizeof denied / sizeof *denied; i++) {
        int nr = seccomp_syscall_resolve_name(denied[i]);
        if (nr == __NR_SCMP_ERROR || nr < 0)
            continue; /* not a syscall on this architecture */
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
        if (rc < 0)
            return rc;
    }
    for (size_t i = 0; rc == 0 && i < sizeof ns_flags / sizeof *ns_flags; i++)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]));
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socket), 1,
                              SCMP_A0(SCMP_CMP_EQ, AF_VSOCK));
    /* terminal injection into whatever tty a command might share */
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
                              SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCSTI));
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
                              SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCLINUX));
    return rc;
}

int sbx_seccomp_prepare(void)
{
    if (prepared.filter)
        return 0;
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx)
        return -ENOMEM;
    int rc = build_filter(ctx);
    int fd = -1;
    if (rc < 0)
        goto out_release;
    /* libseccomp 2.5 exports the program only to an fd */
    fd = memfd_create("sbx-seccomp", MFD_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        goto out_release;
    }
    if ((rc = seccomp_export_bpf(ctx, fd)) < 0)
        goto out_release;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        goto out_release;
    }
    size_t len = (size_t)st.st_size;
    if (len == 0 || len % sizeof(struct sock_filter) != 0 ||
        len / sizeof(struct sock_filter) > BPF_MAXINSNS) {
        rc = -EINVAL;
        goto out_release;
    }
    struct sock_filter *prog = malloc(len);
    if (!prog) {
        rc = -ENOMEM;
        goto out_release;
    }
    if (pread(fd, prog, len, 0) != (ssize_t)len) {
        free(prog);
        rc = -EIO;
        goto out_release;
    }
    prepared.filter = prog;
    prepared.len = (unsigned short)(len / sizeof(struct sock_filter));
out_release:
    if (fd >= 0)
        close(fd);
    seccomp_release(ctx);
    return rc;
}

int sbx_seccomp_load(void)
{
    int rc = sbx_seccomp_prepare();
    if (rc < 0)
        return rc;
    /* what libseccomp's seccomp_load does with its default attributes: no_new_privs, then the
       filter without flags */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -errno;
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prepared) < 0)
        return -errno;
    free(prepared.filter);
    prepared.filter = NULL;
    prepared.len = 0;
    return 0;
}
