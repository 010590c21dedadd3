/* sbx_probe.c: runs INSIDE a sandbox (copied into its home by the security tests) and attempts
 * one thing, printing "OK" or the exact errno name (e.g. "EACCES") so tests can assert the
 * precise failure. Usage: sbx_probe OP [ARGS]. Exit 0 when the attempt was made. */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static int report(int rc)
{
    if (rc < 0)
        printf("%s\n", strerrorname_np(errno));
    else
        printf("OK\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    const char *op = argv[1];
    const char *a = argc > 2 ? argv[2] : "";
    if (!strcmp(op, "read")) {
        int fd = open(a, O_RDONLY);
        char c;
        return report(fd < 0 ? -1 : (int)read(fd, &c, 1));
    }
    if (!strcmp(op, "write")) {
        int fd = open(a, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        return report(fd < 0 ? -1 : (int)write(fd, "x", 1));
    }
    if (!strcmp(op, "mount"))
        return report(mount("tmpfs", "/tmp", "tmpfs", 0, NULL));
    if (!strcmp(op, "umount"))
        return report(umount2("/proc", MNT_DETACH));
    if (!strcmp(op, "unshare-user"))
        return report(unshare(CLONE_NEWUSER));
    if (!strcmp(op, "unshare-net"))
        return report(unshare(CLONE_NEWNET));
    if (!strcmp(op, "clone-newuser")) {
        long r = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, NULL);
        if (r == 0)
            _exit(0);
        return report(r < 0 ? -1 : 0);
    }
    if (!strcmp(op, "clone3")) {
        struct clone_args ca = {.exit_signal = SIGCHLD};
        long r = syscall(SYS_clone3, &ca, sizeof ca);
        if (r == 0)
            _exit(0);
        return report(r < 0 ? -1 : 0);
    }
    if (!strcmp(op, "setns")) {
        int fd = open("/proc/1/ns/net", O_RDONLY);
        if (fd < 0)
            return report(-1);
        return report(setns(fd, 0));
    }
    if (!strcmp(op, "ptrace")) /* attach to our own child: only seccomp can refuse it */ {
        pid_t c = fork();
        if (c == 0) {
            pause();
            _exit(0);
        }
        int r = (int)ptrace(PTRACE_ATTACH, c, NULL, NULL);
        int e = errno;
        kill(c, SIGKILL);
        waitpid(c, NULL, 0);
        errno = e;
        return report(r);
    }
    if (!strcmp(op, "connect")) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)strtol(a, NULL, 10))};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return report(connect(s, (struct sockaddr *)&sa, sizeof sa));
    }
    if (!strcmp(op, "vsock"))
        return report(socket(AF_VSOCK, SOCK_STREAM, 0));
    if (!strcmp(op, "kill"))
        return report(kill((pid_t)strtol(a, NULL, 10), SIGKILL));
    if (!strcmp(op, "bpf"))
        return report((int)syscall(SYS_bpf, 0, NULL, 0));
    if (!strcmp(op, "keyctl"))
        return report((int)syscall(SYS_keyctl, 0, 0, 0, 0, 0));
    if (!strcmp(op, "chroot"))
        return report(chroot("/tmp"));
    if (!strcmp(op, "alloc")) { /* touch memory in 64 MiB steps up to a GiB count */
        long gib = strtol(a, NULL, 10);
        for (long i = 0; i < gib * 16; i++) {
            char *p =
                mmap(NULL, 64 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED)
                return report(-1);
            memset(p, 1, 64 << 20);
        }
        return report(0);
    }
    if (!strcmp(op, "forkbomb")) { /* fork until refused; children sleep */
        int n = 0;
        for (;;) {
            pid_t c = fork();
            if (c == 0) {
                pause();
                _exit(0);
            }
            if (c < 0)
                break;
            n++;
        }
        int e = errno;
        printf("forked=%d ", n);
        errno = e;
        return report(-1);
    }
    if (!strcmp(op, "fill")) { /* write 1 MiB blocks until an error */
        signal(SIGXFSZ, SIG_IGN);
        int fd = open(a, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0)
            return report(-1);
        static char buf[1 << 20];
        long total = 0;
        for (;;) {
            ssize_t n = write(fd, buf, sizeof buf);
            if (n <= 0) {
                int e = errno;
                printf("bytes=%ld ", total);
                errno = n == 0 ? ENOSPC : e;
                return report(-1);
            }
            total += n;
            if (total > (20L << 30)) /* 20 GiB: nothing stopped us */
                return report(0);
        }
    }
    if (!strcmp(op, "files")) { /* create N empty files in dir a */
        int n = argc > 3 ? (int)strtol(argv[3], NULL, 10) : 0;
        char path[4096];
        for (int i = 0; i < n; i++) {
            snprintf(path, sizeof path, "%s/f%d", a, i);
            int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
            if (fd < 0) {
                printf("created=%d ", i);
                return report(-1);
            }
            close(fd);
        }
        printf("created=%d ", n);
        return report(0);
    }
    fprintf(stderr, "unknown op %s\n", op);
    return 2;
}
