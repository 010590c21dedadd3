/* init.c: sbx-init, the single-threaded helper the executor starts once per sandbox (never the
 * executor itself forking user commands), and the start-up of the sandbox's init.
 *
 * The process the executor spawns (the helper) reads the Setup message from fd 3 (with the
 * detached mounts of the home and the template the executor made: no host path is resolved
 * inside the sandbox's user namespace, where a directory the sandbox's uids cannot search
 * would stop it), forks the real init into new user/pid/mount/net/ipc/uts/cgroup namespaces
 * as a sibling (CLONE_PARENT: the init's parent is the executor, so PR_SET_PDEATHSIG ties it
 * to the executor), writes its uid/gid maps and exits. The init is pid 1 of the sandbox: it becomes
 * root of its user namespace, brings up lo, builds the root filesystem, restricts its capabilities,
 * loads the seccomp filter, answers Ready and serves requests (serve.c) until the executor's end of
 * the socket closes. fd 4, when present, is the sandbox's delegated cgroup2 directory (cmdcg.c).
 *
 * Pool (Setup.park): the init makes everything that does not depend on the sandbox (the
 * namespaces, id maps, loopback, signalfd, a few per-command cgroups, the root filesystem from
 * Setup's template without a home, pivoted into with the old root detached, and the compiled
 * seccomp program), answers Ready and waits for a Claim: hostname, rlimits, tmpfs sizes and a
 * detached mount of the home made by the executor, which it attaches before making the root
 * read-only, dropping capabilities and loading seccomp as an unpooled init does.
 *
 * Every step that fails is named in Ready.err_what. Single-threaded; sbx_init is the state
 * every part reads. */
#include "init_parts.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define SOCK_FD 3
#define CGROUP2_FD 4
#define USER_ID 1000u
#define DEFAULT_TMP_BYTES (64u << 20)

#define HOME_MNT_FD 5     /* the detached mounts that came with Setup, moved here so that */
#define TEMPLATE_MNT_FD 6 /* closefrom() keeps them */
#define PARK_FD_BASE 64

sbx_init_state sbx_init = {.sock = SOCK_FD, .home_mnt_fd = -1, .template_mnt_fd = -1};

static void close_mount_fds(void)
{
    if (sbx_init.home_mnt_fd >= 0)
        close(sbx_init.home_mnt_fd);
    if (sbx_init.template_mnt_fd >= 0)
        close(sbx_init.template_mnt_fd);
    sbx_init.home_mnt_fd = sbx_init.template_mnt_fd = -1;
}

void sbx_init_log(const char *what, int err)
{
    char buf[256];
    int n = snprintf(buf, sizeof buf, "sbx-init[%d]: %s: %s\n", (int)getpid(), what,
                     strerror(err < 0 ? -err : err));
    if (n > 0 && write(2, buf, (size_t)n) < 0) {
        /* nothing left to report to */
    }
}

/* The helper tells the init its host pid and whether the id maps were written. */
typedef struct {
    int32_t host_pid;
    int32_t err;
} sync_msg;

/* What Ready reports as enforced (static strings). */
typedef struct {
    char *list[8];
    size_t n;
} enforced_list;

/* ---------------------------------------------------------------- the init's steps */

/* The sync from the helper, then root inside the user namespace. */
static int init_identity(int sync_fd, bool userns, sync_msg *sm, enforced_list *en,
                         const char **what)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (read(sync_fd, sm, sizeof *sm) != sizeof *sm) {
        *what = "sync";
        return -EIO;
    }
    close(sync_fd);
    if (sm->err < 0) {
        *what = "uid-map";
        return sm->err;
    }
    if (userns) {
        *what = "setresuid";
        int rc = sbx_userns_become_root(sbx_init.sock);
        if (rc < 0)
            return rc;
        en->list[en->n++] = "userns";
    }
    return 0;
}

/* Namespace-wide parts that do not depend on the sandbox: loopback, signalfd, command table,
 * a few empty per-command cgroups. */
static int init_common(enforced_list *en, int *sigfd, const char **what)
{
    int rc;
    *what = "lo-up";
    if ((rc = sbx_net_lo_up()) < 0)
        return rc;
    en->list[en->n++] = "net:loopback-only";
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN); /* spawn.c resets it for commands */
    *what = "signalfd";
    *sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (*sigfd < 0)
        return -errno;
    if ((rc = sbx_cmds_init()) < 0)
        return rc;
    sbx_cmdcg_topup();
    *what = NULL;
    return 0;
}

/* Builds the root from the detached mounts that came with Setup: fully, or without the home
 * when parked. The mounts are consumed (attached or closed). */
static int build_root(uint64_t tmp_bytes, bool park, const char **what)
{
    sbx_mounts_cfg mc = {.template_mnt_fd = sbx_init.template_mnt_fd,
                         .home_mnt_fd = park ? -1 : sbx_init.home_mnt_fd,
                         .tmp_bytes = tmp_bytes ? tmp_bytes : DEFAULT_TMP_BYTES,
                         .user_uid = USER_ID};
    int rc = park ? sbx_mounts_prebuild(&mc, what) : sbx_mounts_build(&mc, what);
    close_mount_fds();
    return rc;
}

/* Last steps of every init, once its root is complete: capabilities, seccomp. */
static int lock_down(bool no_seccomp, enforced_list *en, const char **what)
{
    int rc;
    en->list[en->n++] = "mount-ns";
    en->list[en->n++] = "pid-ns";
    *what = "capabilities";
    if ((rc = sbx_caps_restrict_init()) < 0)
        return rc;
    if (!no_seccomp) {
        *what = "seccomp";
        if ((rc = sbx_seccomp_load()) < 0)
            return rc;
        sbx_init.seccomp = true;
        en->list[en->n++] = "seccomp";
    }
    en->list[en->n++] =
        sbx_cmdcg_enabled() ? "kill-tree:cgroup-v2-kill" : "kill-tree:process-group";
    *what = NULL;
    return 0;
}

/* The per-sandbox parts of an unpooled init: hostname, root filesystem, lock-down. */
static int init_sandbox(const Sbxinit__Setup *su, enforced_list *en, const char **what)
{
    int rc;
    sbx_init.nofile = su->nofile;
    sbx_init.fsize = su->fsize_bytes;
    sbx_init.nproc = su->nproc;
    *what = "hostname";
    if ((rc = sbx_ns_set_hostname(su->hostname)) < 0 ||
        (rc = build_root(su->tmp_bytes, false, what)) < 0)
        return rc;
    return lock_down(su->no_seccomp, en, what);
}

/* A claimed init: its hostname, home, tmpfs sizes, rlimits, then lock-down. */
static int init_claimed(const Sbxinit__Claim *cl, int home_mnt_fd, uint64_t built_tmp,
                        enforced_list *en, const char **what)
{
    int rc;
    sbx_init.nofile = cl->nofile;
    sbx_init.fsize = cl->fsize_bytes;
    sbx_init.nproc = cl->nproc;
    *what = "hostname";
    if ((rc = sbx_ns_set_hostname(cl->hostname)) < 0)
        return rc;
    if (cl->has_home_mount && home_mnt_fd < 0) {
        *what = "home";
        return -EBADF;
    }
    sbx_mounts_claim mc = {.home_mnt_fd = home_mnt_fd,
                           .tmp_bytes = cl->tmp_bytes ? cl->tmp_bytes : DEFAULT_TMP_BYTES,
                           .built_tmp_bytes = built_tmp,
                           .user_uid = USER_ID};
    if ((rc = sbx_mounts_finish(&mc, what)) < 0)
        return rc;
    return lock_down(cl->no_seccomp, en, what);
}

/* Parked: waits for the Claim (answering anything else with EPROTO); exits when the executor
 * goes away. Returns the message (the caller frees it) and the received home fd or -1. */
static Sbxinit__InitMsg *wait_claim(int *home_fd)
{
    for (;;) {
        Sbxinit__InitMsg *m;
        int fds[SBX_WIRE_MAX_FDS];
        size_t nfds;
        int rc = sbx_wire_recv(sbx_init.sock, sbx_init.rx, SBX_WIRE_MAX, 0, &m, fds, &nfds);
        if (rc == -EPROTO)
            continue;
        if (rc < 0)
            _exit(0); /* the executor is gone (or the pool dropped us) */
        if (m->body_case == SBXINIT__INIT_MSG__BODY_CLAIM) {
            *home_fd = -1;
            for (size_t i = 0; i < nfds; i++) {
                if (i == 0 && m->claim->has_home_mount)
                    *home_fd = fds[i];
                else
                    close(fds[i]);
            }
            return m;
        }
        for (size_t i = 0; i < nfds; i++)
            close(fds[i]);
        sbx_init_send_result(m->id, EPROTO);
        sbxinit__init_msg__free_unpacked(m, NULL);
    }
}

/* A pooled init: everything that does not depend on the sandbox, pivot included (detaching the
 * old root waits for an RCU grace period), and the compiled seccomp program; Ready; then the
 * Claim, whose id *answer_id becomes. */
static int init_parked(const Sbxinit__Setup *su, int32_t host_pid, uint64_t *answer_id,
                       enforced_list *en, const char **what)
{
    uint64_t built_tmp = su->tmp_bytes ? su->tmp_bytes : DEFAULT_TMP_BYTES;
    int rc = build_root(built_tmp, true, what);
    if (rc < 0)
        return rc;
    *what = "seccomp";
    if ((rc = sbx_seccomp_prepare()) < 0)
        return rc;
    sbx_init_send_ready(*answer_id, host_pid, 0, NULL, NULL, 0, NULL, 0);
    int home_fd;
    Sbxinit__InitMsg *cm = wait_claim(&home_fd);
    *answer_id = cm->id;
    rc = init_claimed(cm->claim, home_fd, built_tmp, en, what);
    if (home_fd >= 0)
        close(home_fd);
    sbxinit__init_msg__free_unpacked(cm, NULL);
    return rc;
}

/* The sandbox init (pid 1): finishes the sandbox (after a Claim when parked), answers Ready
 * to the Setup (or the Claim) with setup_id, and serves. */
static _Noreturn void init_main(const Sbxinit__Setup *su, uint64_t setup_id, int sync_fd,
                                bool userns)
{
    enforced_list en = {.n = 0};
    const char *what = NULL;
    sync_msg sm = {0, -EIO};
    uint64_t answer_id = setup_id;
    int sigfd = -1;
    int rc = init_identity(sync_fd, userns, &sm, &en, &what);
    sbx_init.cmd_uid = userns ? USER_ID : su->uid_base + USER_ID;
    if (rc == 0)
        rc = init_common(&en, &sigfd, &what);
    if (rc == 0)
        rc = su->park ? init_parked(su, sm.host_pid, &answer_id, &en, &what)
                      : init_sandbox(su, &en, &what);
    if (rc < 0) {
        sbx_init_log(what, rc);
        sbx_init_send_ready(answer_id, sm.host_pid, rc, what, NULL, 0, NULL, 0);
        _exit(1);
    }
    /* The final Ready carries the sandbox root (O_PATH) and its network namespace, so the
     * executor needs neither /proc/<pid>/root nor /proc/<pid>/ns/net: opening those for a
     * process of another uid needs CAP_SYS_PTRACE, which container runtimes drop. */
    int fds[2] = {open("/", O_PATH | O_DIRECTORY | O_CLOEXEC),
                  open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC)};
    if (fds[0] < 0 || fds[1] < 0) {
        rc = -errno;
        sbx_init_log("ready-fds", rc);
        sbx_init_send_ready(answer_id, sm.host_pid, rc, "ready-fds", NULL, 0, NULL, 0);
        _exit(1);
    }
    sbx_init_send_ready(answer_id, sm.host_pid, 0, NULL, en.list, en.n, fds, 2);
    close(fds[0]);
    close(fds[1]);
    sbx_serve(sigfd);
}

/* ---------------------------------------------------------------- the helper */

/* Forks the init into its namespaces (weak: without user and cgroup namespaces when the user
 * namespace cannot be made and Setup allows it), writes its id maps and lets it go. Returns
 * the helper's exit status. Never returns in the init. */
static int start_init(const Sbxinit__Setup *su, uint64_t setup_id)
{
    int sp[2];
    if (pipe2(sp, O_CLOEXEC) < 0) {
        sbx_init_send_ready(setup_id, 0, -errno, "pipe", NULL, 0, NULL, 0);
        return 1;
    }
    bool userns = true;
    pid_t pid = sbx_ns_clone(SBX_NS_ALL_FLAGS, true);
    if (pid < 0 && su->weak && !su->park) {
        sbx_init_log("user namespace unavailable, weak isolation", pid);
        userns = false;
        pid = sbx_ns_clone(SBX_NS_ALL_FLAGS & ~(unsigned long)(CLONE_NEWUSER | CLONE_NEWCGROUP),
                           true);
    }
    if (pid < 0) {
        sbx_init_send_ready(setup_id, 0, pid, "namespaces", NULL, 0, NULL, 0);
        return 1;
    }
    if (pid == 0) {
        close(sp[1]);
        init_main(su, setup_id, sp[0], userns);
    }
    close(sp[0]);
    sync_msg sm = {.host_pid = pid, .err = 0};
    if (userns)
        sm.err = sbx_userns_write_idmap(pid, su->uid_base, 65536);
    if (write(sp[1], &sm, sizeof sm) != sizeof sm)
        kill(pid, SIGKILL);
    return 0;
}

/* The detached mounts that came with Setup (home first, then template, as its flags say), moved
 * to HOME_MNT_FD and TEMPLATE_MNT_FD. Anything else received is closed. 0, or -EPROTO when
 * the flags and the descriptors disagree. */
static int keep_mount_fds(const Sbxinit__Setup *su, int *fds, size_t nfds)
{
    size_t want = (su->has_home_mount ? 1u : 0u) + (su->has_template_mount ? 1u : 0u);
    int high[2] = {-1, -1};
    for (size_t i = 0; i < nfds; i++) { /* out of the way of 5 and 6 first */
        if (i < want && nfds == want)
            high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, PARK_FD_BASE);
        close(fds[i]);
    }
    if (nfds != want)
        return -EPROTO;
    size_t k = 0;
    if (su->has_home_mount)
        sbx_init.home_mnt_fd = dup3(high[k++], HOME_MNT_FD, O_CLOEXEC) < 0 ? -1 : HOME_MNT_FD;
    if (su->has_template_mount)
        sbx_init.template_mnt_fd =
            dup3(high[k++], TEMPLATE_MNT_FD, O_CLOEXEC) < 0 ? -1 : TEMPLATE_MNT_FD;
    for (size_t i = 0; i < want; i++)
        if (high[i] >= 0)
            close(high[i]);
    if ((su->has_home_mount && sbx_init.home_mnt_fd < 0) ||
        (su->has_template_mount && sbx_init.template_mnt_fd < 0))
        return -EPROTO;
    return 0;
}

static int usage(const char *arg)
{
    printf("usage: sbx-init [--probe]\n"
           "Started by sbx-executor with its protocol socket on fd 3 (and optionally the\n"
           "sandbox's cgroup2 dir on fd 4); --probe checks that namespaces can be created.\n");
    return strcmp(arg, "--help") == 0 ? 0 : 2;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--probe") == 0)
        return sbx_ns_probe();
    if (argc > 1)
        return usage(argv[1]);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (fcntl(SOCK_FD, F_SETFD, FD_CLOEXEC) < 0) {
        sbx_init_log("no protocol socket on fd 3", errno);
        return 2;
    }
    sbx_init.rx = malloc(SBX_WIRE_MAX);
    if (!sbx_init.rx)
        return 2;
    Sbxinit__InitMsg *m;
    int fds[SBX_WIRE_MAX_FDS];
    size_t nfds;
    int rc = sbx_wire_recv(SOCK_FD, sbx_init.rx, SBX_WIRE_MAX, 0, &m, fds, &nfds);
    if (rc < 0 || m->body_case != SBXINIT__INIT_MSG__BODY_SETUP) {
        sbx_init_log("setup message", rc < 0 ? rc : -EPROTO);
        if (rc == 0)
            sbxinit__init_msg__free_unpacked(m, NULL);
        return 2;
    }
    const Sbxinit__Setup *su = m->setup;
    int status = 2; /* the executor died before PDEATHSIG was armed */
    if (keep_mount_fds(su, fds, nfds) < 0) {
        sbx_init_log("setup descriptors", -EPROTO);
    } else if (!su->expect_ppid || getppid() == (pid_t)su->expect_ppid) {
        if (su->has_cgroup2) {
            sbx_cmdcg_set_root(CGROUP2_FD);
            fcntl(CGROUP2_FD, F_SETFD, FD_CLOEXEC);
        }
        closefrom(TEMPLATE_MNT_FD + 1);
        status = start_init(su, m->id);
    }
    close_mount_fds(); /* the helper's copies; the init has its own */
    sbxinit__init_msg__free_unpacked(m, NULL);
    free(sbx_init.rx);
    return status;
}
