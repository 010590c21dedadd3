/* init.c: sbx-init, the single-threaded helper the executor starts once per sandbox (never the
 * executor itself forking user commands). The process the executor spawns reads the Setup
 * message from fd 3, forks the real init into new user/pid/mount/net/ipc/uts/cgroup namespaces
 * as a sibling (CLONE_PARENT: the init's parent is the executor, so PR_SET_PDEATHSIG ties it to
 * the executor), writes its uid/gid maps and exits. The init is pid 1 of the sandbox: it builds
 * the root filesystem, brings up lo, restricts its capabilities, loads the seccomp filter, and
 * then serves requests in a poll loop: Spawn (vfork+exec as uid 1000 in a fresh session and a
 * per-command cgroup, stdio pipes handed back with SCM_RIGHTS), Signal, KillAll, Ping; it reaps
 * every process and reports the exits of commands, and enforces per-command timeouts by killing
 * the command's whole tree. It exits (taking the sandbox with it) when the executor's end of
 * the socket closes. fd 4, when present, is the sandbox's delegated cgroup2 directory.
 *
 * Pool (Setup.park): the init makes everything that does not depend on the sandbox (the
 * namespaces, id maps, loopback, signalfd, a few per-command cgroups, the root filesystem from
 * Setup's template without a home, pivoted into with the old root detached, and the compiled
 * seccomp program), answers Ready and waits for a Claim: hostname, rlimits, tmpfs sizes and a
 * detached mount of the home made by the executor, which it attaches before making the root
 * read-only, dropping capabilities and loading seccomp as an unpooled init does.
 *
 * Per-command cost: commands start with clone3(CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP) on
 * a private stack (x86_64 without ASan: no page-table copy, and a failure before exec comes
 * back through shared memory instead of a pipe), with one signal disposition reset and only
 * the capabilities the init kept dropped from the bounding set, into a per-command cgroup
 * taken from a short list of empty ones (a cgroup mkdir + rmdir per command cost ~0.1 ms
 * here); a group goes back on the list once it is empty again, unless it was killed. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "init_parts.h"
#include "wire.h"

#define SOCK_FD 3
#define CGROUP2_FD 4
#define USER_ID 1000u
#define MAX_CMDS 4096
#define DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"
#define CG_FREE_MAX 16 /* empty per-command cgroups kept for reuse */
#define CG_FREE_LOW 2  /* made ahead (after a reply went out) when fewer are left */

typedef struct {
    uint32_t n; /* "c<n>" */
    int fd;     /* O_RDONLY dir fd for CLONE_INTO_CGROUP */
} cgslot;

typedef struct {
    pid_t pid;    /* pid inside the sandbox */
    uint32_t cgn; /* names the per-command cgroup "c<cgn>" (valid with has_cg) */
    uint64_t start_us;
    uint64_t deadline_us; /* 0 = none */
    bool has_cg;
    bool cg_killed; /* cgroup.kill was written: the group is removed, never reused */
    bool timed_out;
    bool exited; /* main process reaped; kept while its cgroup still has members */
} cmd;

static struct {
    int sock;
    int cg2fd;
    int sigfd;
    uint32_t cmd_uid; /* uid/gid commands run as, as seen by the init */
    uint64_t nofile, fsize, nproc;
    cmd *cmds;
    size_t ncmds;
    uint32_t cgseq;
    cgslot cgfree[CG_FREE_MAX];
    size_t ncgfree;
    uint8_t *rx;
    bool seccomp;      /* the denylist is loaded: commands add the clone3 block */
    uint64_t setup_id; /* Ready answers the Setup request */
} g = {.sock = SOCK_FD, .cg2fd = -1, .sigfd = -1};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void logmsg(const char *what, int err)
{
    char buf[256];
    int n = snprintf(buf, sizeof buf, "sbx-init[%d]: %s: %s\n", (int)getpid(), what,
                     strerror(err < 0 ? -err : err));
    if (n > 0 && write(2, buf, (size_t)n) < 0) {
        /* nothing left to report to */
    }
}

static int send_msg(Sbxinit__InitMsg *m, const int *fds, size_t nfds)
{
    return sbx_wire_send(g.sock, m, fds, nfds);
}

static void send_ready(uint64_t id, int32_t pid, int err, const char *what, char **enforced,
                       size_t n)
{
    Sbxinit__InitMsg m = SBXINIT__INIT_MSG__INIT;
    Sbxinit__Ready r = SBXINIT__READY__INIT;
    r.init_pid = pid;
    r.err = err < 0 ? -err : err;
    r.err_what = (char *)(what ? what : "");
    r.enforced = enforced;
    r.n_enforced = n;
    m.id = id;
    m.body_case = SBXINIT__INIT_MSG__BODY_READY;
    m.ready = &r;
    send_msg(&m, NULL, 0);
}

static void send_result(uint64_t id, int err)
{
    Sbxinit__InitMsg m = SBXINIT__INIT_MSG__INIT;
    Sbxinit__Result r = SBXINIT__RESULT__INIT;
    r.err = err < 0 ? -err : err;
    m.id = id;
    m.body_case = SBXINIT__INIT_MSG__BODY_RESULT;
    m.result = &r;
    send_msg(&m, NULL, 0);
}

/* ---------------------------------------------------------------- per-command cgroups */

static void cg_name(uint32_t n, const char *file, char *buf, size_t len)
{
    snprintf(buf, len, "c%u%s%s", n, file ? "/" : "", file ? file : "");
}

/* An empty per-command group: one from the free list, else a new one. Returns its dir fd (the
 * caller closes it) and its number, or -errno. */
static int cg_make(uint32_t *n)
{
    char path[32];
    uint32_t k = ++g.cgseq;
    cg_name(k, NULL, path, sizeof path);
    if (mkdirat(g.cg2fd, path, 0755) < 0)
        return -errno;
    int fd = openat(g.cg2fd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        unlinkat(g.cg2fd, path, AT_REMOVEDIR);
        return -e;
    }
    *n = k;
    return fd;
}

static int cg_take(uint32_t *n)
{
    if (g.ncgfree > 0) {
        cgslot s = g.cgfree[--g.ncgfree];
        *n = s.n;
        return s.fd;
    }
    return cg_make(n);
}

/* Keeps enough empty groups that the next commands need no mkdir. */
static void cg_topup(void)
{
    while (g.cg2fd >= 0 && g.ncgfree < CG_FREE_LOW) {
        uint32_t n;
        int fd = cg_make(&n);
        if (fd < 0)
            return;
        g.cgfree[g.ncgfree++] = (cgslot){.n = n, .fd = fd};
    }
}

/* No process left in group n (cgroup.events says "populated 0")? */
static bool cg_empty(uint32_t n)
{
    char path[48], buf[128];
    cg_name(n, "cgroup.events", path, sizeof path);
    int fd = openat(g.cg2fd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT;
    ssize_t k = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (k <= 0)
        return false;
    buf[k] = '\0';
    return strstr(buf, "populated 0") != NULL;
}

/* Gives group n back once it is empty: onto the free list, or removed when the list is full
 * or the group was killed. false while processes are still in it.
 * A killed group is never reused: this kernel (6.18) compares the kill counter of the cgroup a
 * child is cloned into (CLONE_INTO_CGROUP) with the one of its parent's cgroup and SIGKILLs the
 * child when they differ, so every command started in a group that saw a cgroup.kill would
 * die at once. */
static bool cg_release(uint32_t n, bool killed)
{
    char path[32];
    cg_name(n, NULL, path, sizeof path);
    if (!killed && g.ncgfree < CG_FREE_MAX) {
        if (!cg_empty(n))
            return false;
        int fd = openat(g.cg2fd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            g.cgfree[g.ncgfree++] = (cgslot){.n = n, .fd = fd};
            return true;
        }
    }
    return unlinkat(g.cg2fd, path, AT_REMOVEDIR) == 0 || errno == ENOENT;
}

/* ---------------------------------------------------------------- commands */

typedef struct {
    int32_t err;
    char what[8];
} spawn_failure;

typedef struct {
    char *const *argv;
    char *const *envp;
    const char *path; /* PATH used for the search */
    const char *cwd;
    int in_r, out_w, err_w;
    int report; /* fallback (no shared memory): close-on-exec pipe for a failure, else -1 */
    volatile spawn_failure fail; /* with CLONE_VM: written by the child before it exits */
} spawn_ctx;

/* In the command's process (a vfork of the single-threaded init) between clone3 and exec. */
static _Noreturn void child_fail(spawn_ctx *c, const char *what)
{
    spawn_failure f = {.err = errno ? errno : EIO};
    snprintf(f.what, sizeof f.what, "%s", what);
    if (c->report >= 0) {
        if (write(c->report, &f, sizeof f) < 0) {
            /* the init sees a failure without a reason */
        }
    } else {
        memcpy((void *)c->fail.what, f.what, sizeof f.what);
        c->fail.err = f.err;
    }
    _exit(127);
}

static void child_exec_search(spawn_ctx *c)
{
    const char *file = c->argv[0];
    if (strchr(file, '/')) {
        execve(file, c->argv, c->envp);
        return;
    }
    size_t flen = strlen(file);
    char buf[4096];
    bool eacces = false;
    for (const char *p = c->path;; p++) {
        const char *e = strchr(p, ':');
        size_t dlen = e ? (size_t)(e - p) : strlen(p);
        if (dlen + flen + 2 <= sizeof buf) {
            memcpy(buf, dlen ? p : ".", dlen ? dlen : 1);
            size_t o = dlen ? dlen : 1;
            buf[o] = '/';
            memcpy(buf + o + 1, file, flen + 1);
            execve(buf, c->argv, c->envp);
            if (errno == EACCES)
                eacces = true;
            else if (errno != ENOENT && errno != ENOTDIR)
                return;
        }
        if (!e)
            break;
        p = e;
    }
    errno = eacces ? EACCES : ENOENT;
}

static void child_main(void *arg)
{
    spawn_ctx *c = arg;
    /* The init installs no handlers and ignores only SIGPIPE (init_main); exec resets nothing
       that is ignored, so that one goes back to the default. SIGCHLD is only blocked. */
    struct sigaction sa = {.sa_handler = SIG_DFL};
    sigaction(SIGPIPE, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    errno = 0;
    if (setsid() < 0)
        child_fail(c, "setup");
    if (dup2(c->in_r, 0) < 0 || dup2(c->out_w, 1) < 0 || dup2(c->err_w, 2) < 0)
        child_fail(c, "setup");
    struct rlimit rl = {g.nofile, g.nofile};
    if (g.nofile && setrlimit(RLIMIT_NOFILE, &rl) < 0)
        child_fail(c, "setup");
    rl.rlim_cur = rl.rlim_max = 0;
    setrlimit(RLIMIT_CORE, &rl);
    rl.rlim_cur = rl.rlim_max = g.fsize;
    if (g.fsize && setrlimit(RLIMIT_FSIZE, &rl) < 0)
        child_fail(c, "setup");
    rl.rlim_cur = rl.rlim_max = g.nproc;
    if (g.nproc && setrlimit(RLIMIT_NPROC, &rl) < 0)
        child_fail(c, "setup");
    int rc = sbx_caps_drop_bounding();
    if (rc < 0) {
        errno = -rc;
        child_fail(c, "setup");
    }
    if (syscall(SYS_setgroups, 0, NULL) < 0 ||
        syscall(SYS_setresgid, g.cmd_uid, g.cmd_uid, g.cmd_uid) < 0 ||
        syscall(SYS_setresuid, g.cmd_uid, g.cmd_uid, g.cmd_uid) < 0)
        child_fail(c, "setup");
    if ((rc = sbx_caps_clear()) < 0) {
        errno = -rc;
        child_fail(c, "setup");
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        child_fail(c, "setup");
    if (g.seccomp && (rc = sbx_seccomp_block_clone3()) < 0) {
        errno = -rc;
        child_fail(c, "setup");
    }
    if (chdir(c->cwd) < 0)
        child_fail(c, "cwd");
    child_exec_search(c);
    child_fail(c, "exec");
}

#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
/* The command's stack until it execs (CLONE_VFORK: one child at a time). Not under ASan,
 * whose stack redzones would stay poisoned in this memory after an exec. */
static char child_stack[64 * 1024] __attribute__((aligned(64)));

/* clone3 sharing our memory: the child starts on child_stack, runs fn(arg) and exits 127 if
 * it returns; it never comes back into this frame. Returns the child pid or -errno. */
static long clone3_vm(struct clone_args *ca, void (*fn)(void *), void *arg)
{
    register long rax __asm__("rax") = SYS_clone3;
    register void *rdi __asm__("rdi") = ca;
    register long rsi __asm__("rsi") = (long)sizeof *ca;
    register void (*r12)(void *) __asm__("r12") = fn;
    register void *r13 __asm__("r13") = arg;
    __asm__ volatile("syscall\n\t"
                     "test %%rax, %%rax\n\t"
                     "jnz 1f\n\t"
                     "xor %%ebp, %%ebp\n\t"
                     "mov %%r13, %%rdi\n\t"
                     "call *%%r12\n\t"
                     "mov %[nr_exit], %%eax\n\t"
                     "mov $127, %%edi\n\t"
                     "syscall\n\t"
                     "ud2\n\t"
                     "1:"
                     : "+r"(rax)
                     : "r"(rdi), "r"(rsi), "r"(r12), "r"(r13), [nr_exit] "i"(SYS_exit)
                     : "rcx", "r11", "memory");
    return rax;
}
#define SBX_SPAWN_SHARED_VM 1
#else
#define SBX_SPAWN_SHARED_VM 0
#endif

static cmd *cmd_find(pid_t pid, bool live_only)
{
    cmd *best = NULL;
    for (size_t i = 0; i < g.ncmds; i++) {
        if (g.cmds[i].pid != pid)
            continue;
        if (!g.cmds[i].exited)
            return &g.cmds[i];
        if (!live_only)
            best = &g.cmds[i];
    }
    return best;
}

static void cmd_kill_tree(cmd *c)
{
    char path[64];
    if (c->has_cg) {
        cg_name(c->cgn, "cgroup.kill", path, sizeof path);
        c->cg_killed = true;
        int fd = openat(g.cg2fd, path, O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            if (write(fd, "1", 1) != 1)
                logmsg("cgroup.kill", errno);
            close(fd);
        }
    }
    if (!c->exited) {
        kill(-c->pid, SIGKILL); /* its session/process group */
        kill(c->pid, SIGKILL);
    }
}

/* Drops commands whose main process is gone and whose cgroup is empty (the group goes back to
 * the free list). A command whose descendants still run keeps its group (kill-tree). */
static void cmd_collect(void)
{
    size_t w = 0;
    for (size_t i = 0; i < g.ncmds; i++) {
        cmd *c = &g.cmds[i];
        if (c->exited && c->has_cg && cg_release(c->cgn, c->cg_killed))
            c->has_cg = false;
        if (c->exited && !c->has_cg)
            continue;
        g.cmds[w++] = *c;
    }
    g.ncmds = w;
}

static char **build_env(const Sbxinit__Spawn *s, const char **path)
{
    static const char *const defaults[] = {"PATH=" DEFAULT_PATH, "HOME=/home/user", "USER=user",
                                           "LOGNAME=user",       "SHELL=/bin/bash", "LANG=C.UTF-8",
                                           "TERM=xterm-256color"};
    size_t nd = sizeof defaults / sizeof *defaults;
    char **env = calloc(nd + s->n_env + 1, sizeof *env);
    if (!env)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < nd; i++)
        env[n++] = (char *)defaults[i];
    for (size_t i = 0; i < s->n_env; i++) {
        const char *kv = s->env[i];
        const char *eq = strchr(kv, '=');
        if (!eq || eq == kv)
            continue;
        size_t klen = (size_t)(eq - kv) + 1;
        size_t j = 0;
        while (j < n && strncmp(env[j], kv, klen) != 0)
            j++;
        env[j] = (char *)kv;
        if (j == n)
            n++;
    }
    env[n] = NULL;
    *path = DEFAULT_PATH;
    for (size_t j = 0; j < n; j++)
        if (strncmp(env[j], "PATH=", 5) == 0)
            *path = env[j] + 5;
    return env;
}

static void close_if(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Starts the command; on failure before exec, *f says why and the child is reaped. Returns the
 * pid, 0 when f was filled, or -errno when no child was made. */
static pid_t start_child(spawn_ctx *ctx, int cg_dir, spawn_failure *f)
{
    /* Born inside its cgroup (CLONE_INTO_CGROUP: moving it later through cgroup.procs costs an
       RCU grace period, milliseconds here); CLONE_VFORK: we resume once it exec'd or failed. */
    struct clone_args ca = {.flags = CLONE_VFORK, .exit_signal = SIGCHLD};
    if (cg_dir >= 0) {
        ca.flags |= CLONE_INTO_CGROUP;
        ca.cgroup = (uint64_t)cg_dir;
    }
    pid_t pid;
#if SBX_SPAWN_SHARED_VM
    ca.flags |= CLONE_VM;
    ca.stack = (uint64_t)(uintptr_t)child_stack;
    ca.stack_size = sizeof child_stack;
    ctx->report = -1;
    ctx->fail.err = 0;
    long r = clone3_vm(&ca, child_main, ctx);
    if (r < 0)
        return (pid_t)r;
    pid = (pid_t)r;
    if (ctx->fail.err) { /* it never reached exec and has exited: collect it now */
        waitpid(pid, NULL, 0);
        f->err = ctx->fail.err;
        memcpy(f->what, (const void *)ctx->fail.what, sizeof f->what);
        return 0;
    }
    return pid;
#else
    int rep[2];
    if (pipe2(rep, O_CLOEXEC) < 0)
        return -errno;
    ctx->report = rep[1];
    pid = (pid_t)syscall(SYS_clone3, &ca, sizeof ca);
    if (pid < 0 && errno == ENOSYS)
        pid = (pid_t)syscall(SYS_clone, CLONE_VFORK | SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid == 0) {
        child_main(ctx);
        _exit(127);
    }
    int e = errno;
    close(rep[1]);
    if (pid < 0) {
        close(rep[0]);
        return -e;
    }
    ssize_t n = read(rep[0], f, sizeof *f);
    close(rep[0]);
    if (n == sizeof *f) { /* it never reached exec: collect it now */
        waitpid(pid, NULL, 0);
        return 0;
    }
    return pid;
#endif
}

static void handle_spawn(uint64_t id, const Sbxinit__Spawn *s)
{
    Sbxinit__InitMsg m = SBXINIT__INIT_MSG__INIT;
    Sbxinit__Started st = SBXINIT__STARTED__INIT;
    m.id = id;
    m.body_case = SBXINIT__INIT_MSG__BODY_STARTED;
    m.started = &st;
    int p_in[2] = {-1, -1}, p_out[2] = {-1, -1}, p_err[2] = {-1, -1};
    int cg_dir = -1;
    char **env = NULL, **argv = NULL;
    cmd c = {0};
    int err = 0;

    if (s->n_argv == 0 || !s->argv[0][0]) {
        err = EINVAL;
        goto out_reply;
    }
    if (g.ncmds >= MAX_CMDS) {
        err = EAGAIN;
        goto out_reply;
    }
    const char *path;
    env = build_env(s, &path);
    argv = calloc(s->n_argv + 1, sizeof *argv);
    if (!env || !argv) {
        free(argv);
        err = ENOMEM;
        goto out_reply;
    }
    for (size_t i = 0; i < s->n_argv; i++)
        argv[i] = s->argv[i];

    if ((s->want_stdin ? pipe2(p_in, O_CLOEXEC)
                       : ((p_in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0 ? -1 : 0)) < 0 ||
        pipe2(p_out, O_CLOEXEC) < 0 || (!s->merge_stderr && pipe2(p_err, O_CLOEXEC) < 0)) {
        err = errno;
        goto out_free_argv;
    }
    if (g.cg2fd >= 0) {
        cg_dir = cg_take(&c.cgn);
        if (cg_dir >= 0)
            c.has_cg = true;
        else
            logmsg("per-command cgroup", cg_dir);
    }
    spawn_ctx ctx = {
        .argv = argv,
        .envp = env,
        .path = path,
        .cwd = s->cwd[0] ? s->cwd : "/home/user",
        .in_r = p_in[0],
        .out_w = p_out[1],
        .err_w = s->merge_stderr ? p_out[1] : p_err[1],
        .report = -1,
    };
    c.start_us = now_us();
    spawn_failure f = {0};
    pid_t pid = start_child(&ctx, cg_dir, &f);
    if (pid < 0) {
        err = -pid;
        goto out_rmcg;
    }
    if (pid == 0) {
        err = f.err ? f.err : EIO;
        f.what[sizeof f.what - 1] = '\0';
        st.what = strcmp(f.what, "exec") == 0  ? "exec"
                  : strcmp(f.what, "cwd") == 0 ? "cwd"
                                               : "setup";
        goto out_rmcg;
    }
    c.pid = pid;
    if (s->timeout_ms)
        c.deadline_us = c.start_us + (uint64_t)s->timeout_ms * 1000u;
    g.cmds[g.ncmds++] = c;
    st.pid = pid;
    st.has_stdin = s->want_stdin;
    st.has_stderr = !s->merge_stderr;
    int fds[3];
    size_t nfds = 0;
    if (s->want_stdin)
        fds[nfds++] = p_in[1];
    fds[nfds++] = p_out[0];
    if (!s->merge_stderr)
        fds[nfds++] = p_err[0];
    if (send_msg(&m, fds, nfds) < 0)
        logmsg("send started", errno);
    goto out_close;

out_rmcg:
    if (c.has_cg && !cg_release(c.cgn, false)) {
        /* a failed child left something behind: cannot happen (it was reaped); drop it */
        char cgpath[32];
        cg_name(c.cgn, NULL, cgpath, sizeof cgpath);
        unlinkat(g.cg2fd, cgpath, AT_REMOVEDIR);
    }
out_close:
    close_if(&cg_dir);
    close_if(&p_in[0]);
    close_if(&p_in[1]);
    close_if(&p_out[0]);
    close_if(&p_out[1]);
    close_if(&p_err[0]);
    close_if(&p_err[1]);
out_free_argv:
    free(argv);
out_reply:
    free(env);
    if (err) {
        st.err = err;
        if (!st.what || !st.what[0])
            st.what = "setup";
        send_msg(&m, NULL, 0);
    }
    /* the reply is out: make the next command's group now, off its critical path */
    cg_topup();
}

static void handle_signal(uint64_t id, const Sbxinit__Signal *s)
{
    int err = 0;
    if (s->pid <= 1 || s->sig < 0 || s->sig >= _NSIG) {
        err = s->pid <= 1 ? EPERM : EINVAL;
    } else if (s->tree) {
        cmd *c = cmd_find(s->pid, false);
        if (!c)
            err = ESRCH;
        else
            cmd_kill_tree(c);
    } else if (kill(s->whole_group ? -s->pid : s->pid, s->sig) < 0) {
        err = errno;
    }
    send_result(id, err);
}

static void report_exit(cmd *c, int status, const struct rusage *ru)
{
    Sbxinit__InitMsg m = SBXINIT__INIT_MSG__INIT;
    Sbxinit__Exited e = SBXINIT__EXITED__INIT;
    Sbxinit__Rusage r = SBXINIT__RUSAGE__INIT;
    e.pid = c->pid;
    if (WIFSIGNALED(status)) {
        e.signal = WTERMSIG(status);
        e.core_dumped = WCOREDUMP(status);
    } else {
        e.exit_code = WEXITSTATUS(status);
    }
    e.timed_out = c->timed_out;
    e.duration_us = now_us() - c->start_us;
    r.utime_us = (uint64_t)ru->ru_utime.tv_sec * 1000000u + (uint64_t)ru->ru_utime.tv_usec;
    r.stime_us = (uint64_t)ru->ru_stime.tv_sec * 1000000u + (uint64_t)ru->ru_stime.tv_usec;
    r.maxrss_kb = (uint64_t)ru->ru_maxrss;
    e.rusage = &r;
    m.body_case = SBXINIT__INIT_MSG__BODY_EXITED;
    m.exited = &e;
    send_msg(&m, NULL, 0);
}

static void reap(void)
{
    int status;
    struct rusage ru;
    pid_t pid;
    while ((pid = wait4(-1, &status, WNOHANG, &ru)) > 0) {
        cmd *c = cmd_find(pid, true);
        if (!c)
            continue; /* an orphan re-parented to us */
        c->exited = true;
        report_exit(c, status, &ru);
    }
    cmd_collect();
}

static int check_timeouts(void)
{
    uint64_t now = now_us(), next = 0;
    for (size_t i = 0; i < g.ncmds; i++) {
        cmd *c = &g.cmds[i];
        if (!c->deadline_us || c->exited)
            continue;
        if (c->deadline_us <= now) {
            c->timed_out = true;
            c->deadline_us = 0;
            cmd_kill_tree(c);
        } else if (!next || c->deadline_us < next) {
            next = c->deadline_us;
        }
    }
    if (!next)
        return -1;
    return (int)((next - now + 999) / 1000);
}

static void serve(void)
{
    for (;;) {
        int timeout = check_timeouts();
        struct pollfd pf[2] = {{.fd = g.sock, .events = POLLIN}, {.fd = g.sigfd, .events = POLLIN}};
        int n = poll(pf, 2, timeout);
        if (n < 0 && errno != EINTR)
            _exit(2);
        if (n <= 0)
            continue;
        if (pf[1].revents) {
            struct signalfd_siginfo si;
            while (read(g.sigfd, &si, sizeof si) == sizeof si) {
            }
            reap();
        }
        if (!pf[0].revents)
            continue;
        Sbxinit__InitMsg *m;
        int fds[SBX_WIRE_MAX_FDS];
        size_t nfds;
        int rc = sbx_wire_recv(g.sock, g.rx, SBX_WIRE_MAX, MSG_DONTWAIT, &m, fds, &nfds);
        if (rc == -EAGAIN || rc == -EPROTO)
            continue;
        if (rc < 0)
            _exit(0); /* the executor is gone: pid 1 exiting ends the sandbox */
        for (size_t i = 0; i < nfds; i++)
            close(fds[i]);
        switch (m->body_case) {
        case SBXINIT__INIT_MSG__BODY_SPAWN:
            handle_spawn(m->id, m->spawn);
            break;
        case SBXINIT__INIT_MSG__BODY_SIGNAL:
            handle_signal(m->id, m->signal);
            break;
        case SBXINIT__INIT_MSG__BODY_KILL_ALL:
            send_result(m->id, kill(-1, SIGKILL) < 0 && errno != ESRCH ? errno : 0);
            break;
        case SBXINIT__INIT_MSG__BODY_PING:
            send_result(m->id, 0);
            break;
        default:
            send_result(m->id, EPROTO);
            break;
        }
        sbxinit__init_msg__free_unpacked(m, NULL);
    }
}

/* ---------------------------------------------------------------- start-up */

typedef struct {
    int32_t host_pid;
    int32_t err;
} sync_msg;

/* The per-sandbox parts of an unpooled init (from Setup). */
typedef struct {
    const char *hostname, *template_root, *home_dir;
    uint64_t tmp_bytes, nofile, fsize, nproc;
    bool no_seccomp;
} sandbox_args;

typedef struct {
    char *list[8];
    size_t n;
} enforced_list;

/* Namespace-wide parts that do not depend on the sandbox: loopback, signalfd, command table,
 * a few empty per-command cgroups. */
static int init_common(enforced_list *en, const char **what)
{
    int rc;
    *what = "lo-up";
    if ((rc = sbx_ns_lo_up()) < 0)
        return rc;
    en->list[en->n++] = "net:loopback-only";
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN); /* child_main resets it for commands */
    *what = "signalfd";
    g.sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    g.cmds = calloc(MAX_CMDS, sizeof *g.cmds);
    if (g.sigfd < 0 || !g.cmds)
        return g.sigfd < 0 ? -errno : -ENOMEM;
    cg_topup();
    *what = NULL;
    return 0;
}

static int set_hostname(const char *name, const char **what)
{
    const char *hn = name[0] ? name : "sbx";
    *what = "hostname";
    return sethostname(hn, strlen(hn)) < 0 ? -errno : 0;
}

/* Opens the template (if any) and builds the root: fully, or without the home when parked. */
static int build_root(const char *template_root, const char *home_dir, uint64_t tmp_bytes,
                      bool park, const char **what)
{
    sbx_mounts_cfg mc = {
        .template_fd = -1, .home_fd = -1, .tmp_bytes = tmp_bytes, .user_uid = USER_ID};
    if (!mc.tmp_bytes)
        mc.tmp_bytes = 64u << 20;
    if (template_root[0]) {
        *what = "template";
        mc.is_template = true;
        mc.template_fd = open(template_root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (mc.template_fd < 0)
            return -errno;
    }
    if (!park && home_dir[0]) {
        *what = "home";
        mc.home_fd = open(home_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (mc.home_fd < 0) {
            int rc = -errno;
            if (mc.template_fd >= 0)
                close(mc.template_fd);
            return rc;
        }
    }
    int rc = park ? sbx_mounts_prebuild(&mc, what) : sbx_mounts_build(&mc, what);
    if (mc.home_fd >= 0)
        close(mc.home_fd);
    if (mc.template_fd >= 0)
        close(mc.template_fd);
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
        g.seccomp = true;
        en->list[en->n++] = "seccomp";
    }
    en->list[en->n++] = g.cg2fd >= 0 ? "kill-tree:cgroup-v2-kill" : "kill-tree:process-group";
    *what = NULL;
    return 0;
}

/* The per-sandbox parts of an unpooled init: hostname, root filesystem, lock-down. */
static int init_sandbox(const sandbox_args *a, enforced_list *en, const char **what)
{
    int rc;
    g.nofile = a->nofile;
    g.fsize = a->fsize;
    g.nproc = a->nproc;
    if ((rc = set_hostname(a->hostname, what)) < 0 ||
        (rc = build_root(a->template_root, a->home_dir, a->tmp_bytes, false, what)) < 0)
        return rc;
    return lock_down(a->no_seccomp, en, what);
}

/* A claimed init: its hostname, home, tmpfs sizes, rlimits, then lock-down. */
static int init_claimed(const Sbxinit__Claim *cl, int home_mnt_fd, uint64_t built_tmp,
                        enforced_list *en, const char **what)
{
    int rc;
    g.nofile = cl->nofile;
    g.fsize = cl->fsize_bytes;
    g.nproc = cl->nproc;
    if ((rc = set_hostname(cl->hostname, what)) < 0)
        return rc;
    if (cl->has_home_mount && home_mnt_fd < 0) {
        *what = "home";
        return -EBADF;
    }
    sbx_mounts_claim mc = {.home_mnt_fd = home_mnt_fd,
                           .tmp_bytes = cl->tmp_bytes ? cl->tmp_bytes : 64u << 20,
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
        int rc = sbx_wire_recv(g.sock, g.rx, SBX_WIRE_MAX, 0, &m, fds, &nfds);
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
        send_result(m->id, EPROTO);
        sbxinit__init_msg__free_unpacked(m, NULL);
    }
}

/* The sandbox init (pid 1): finishes the sandbox (after a Claim when parked) and serves.
 * Never returns. */
static void init_main(const Sbxinit__Setup *su, int sync_fd, bool userns)
{
    enforced_list en = {.n = 0};
    const char *what = NULL;
    int rc;
    sync_msg sm = {0, -EIO};
    uint64_t answer_id = g.setup_id;

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (read(sync_fd, &sm, sizeof sm) != sizeof sm) {
        rc = -EIO;
        what = "sync";
        goto out_fail;
    }
    close(sync_fd);
    if ((rc = sm.err) < 0) {
        what = "uid-map";
        goto out_fail;
    }
    if (userns) {
        what = "setresuid";
        if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0 || setgroups(0, NULL) < 0) {
            rc = -errno;
            goto out_fail;
        }
        en.list[en.n++] = "userns";
        /* A change of the effective uid/gid clears the parent-death signal (prctl(2)): arm it
           again, then catch an executor that died in between by its end of the socket (our
           parent is outside our pid namespace: getppid() says 0). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        struct pollfd pf = {.fd = g.sock, .events = POLLIN};
        if (poll(&pf, 1, 0) == 1 && (pf.revents & (POLLHUP | POLLERR)))
            _exit(0);
    }
    g.cmd_uid = userns ? USER_ID : su->uid_base + USER_ID;
    if ((rc = init_common(&en, &what)) < 0)
        goto out_fail;

    if (su->park) {
        /* everything that does not depend on the sandbox, pivot included (detaching the old
           root waits for an RCU grace period), and the compiled seccomp program */
        uint64_t built_tmp = su->tmp_bytes ? su->tmp_bytes : 64u << 20;
        if ((rc = build_root(su->template_root, "", built_tmp, true, &what)) < 0)
            goto out_fail;
        what = "seccomp";
        if ((rc = sbx_seccomp_prepare()) < 0)
            goto out_fail;
        send_ready(answer_id, sm.host_pid, 0, NULL, NULL, 0);
        int home_fd;
        Sbxinit__InitMsg *cm = wait_claim(&home_fd);
        answer_id = cm->id;
        rc = init_claimed(cm->claim, home_fd, built_tmp, &en, &what);
        if (home_fd >= 0)
            close(home_fd);
        sbxinit__init_msg__free_unpacked(cm, NULL);
    } else {
        sandbox_args a = {.hostname = su->hostname,
                          .template_root = su->template_root,
                          .home_dir = su->home_dir,
                          .tmp_bytes = su->tmp_bytes,
                          .nofile = su->nofile,
                          .fsize = su->fsize_bytes,
                          .nproc = su->nproc,
                          .no_seccomp = su->no_seccomp};
        rc = init_sandbox(&a, &en, &what);
    }
    if (rc < 0)
        goto out_fail;
    send_ready(answer_id, sm.host_pid, 0, NULL, en.list, en.n);
    serve();
    _exit(0);

out_fail:
    logmsg(what, rc);
    send_ready(answer_id, sm.host_pid, rc, what, NULL, 0);
    _exit(1);
}

static int probe(void)
{
    pid_t pid = sbx_ns_clone(SBX_NS_ALL_FLAGS, false);
    if (pid == 0)
        _exit(0);
    if (pid < 0) {
        printf("namespaces: %s\n", strerror(-pid));
        return 1;
    }
    int st;
    waitpid(pid, &st, 0);
    printf("namespaces: ok\n");
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--probe") == 0)
        return probe();
    if (argc > 1) {
        printf("usage: sbx-init [--probe]\n"
               "Started by sbx-executor with its protocol socket on fd 3 (and optionally the\n"
               "sandbox's cgroup2 dir on fd 4); --probe checks that namespaces can be created.\n");
        return strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (fcntl(SOCK_FD, F_SETFD, FD_CLOEXEC) < 0) {
        logmsg("no protocol socket on fd 3", errno);
        return 2;
    }
    g.rx = malloc(SBX_WIRE_MAX);
    if (!g.rx)
        return 2;
    Sbxinit__InitMsg *m;
    int fds[SBX_WIRE_MAX_FDS];
    size_t nfds;
    int rc = sbx_wire_recv(SOCK_FD, g.rx, SBX_WIRE_MAX, 0, &m, fds, &nfds);
    if (rc < 0 || m->body_case != SBXINIT__INIT_MSG__BODY_SETUP) {
        logmsg("setup message", rc < 0 ? rc : -EPROTO);
        if (rc == 0)
            sbxinit__init_msg__free_unpacked(m, NULL);
        return 2;
    }
    for (size_t i = 0; i < nfds; i++)
        close(fds[i]);
    const Sbxinit__Setup *su = m->setup;
    g.setup_id = m->id;
    int status = 0;
    if (su->expect_ppid && getppid() != (pid_t)su->expect_ppid) {
        status = 2; /* the executor died before PDEATHSIG was armed */
        goto out_free;
    }
    if (su->has_cgroup2) {
        g.cg2fd = CGROUP2_FD;
        fcntl(g.cg2fd, F_SETFD, FD_CLOEXEC);
    }
    closefrom(g.cg2fd >= 0 ? CGROUP2_FD + 1 : SOCK_FD + 1);

    int sp[2];
    if (pipe2(sp, O_CLOEXEC) < 0) {
        send_ready(g.setup_id, 0, -errno, "pipe", NULL, 0);
        status = 1;
        goto out_free;
    }
    bool userns = true;
    pid_t pid = sbx_ns_clone(SBX_NS_ALL_FLAGS, true);
    if (pid < 0 && su->weak && !su->park) {
        logmsg("user namespace unavailable, weak isolation", pid);
        userns = false;
        pid = sbx_ns_clone(SBX_NS_ALL_FLAGS & ~(unsigned long)(CLONE_NEWUSER | CLONE_NEWCGROUP),
                           true);
    }
    if (pid < 0) {
        send_ready(g.setup_id, 0, pid, "namespaces", NULL, 0);
        status = 1;
        goto out_free;
    }
    if (pid == 0) {
        close(sp[1]);
        init_main(su, sp[0], userns);
    }
    close(sp[0]);
    sync_msg sm = {.host_pid = pid, .err = 0};
    if (userns)
        sm.err = sbx_ns_write_idmap(pid, su->uid_base, 65536);
    if (write(sp[1], &sm, sizeof sm) != sizeof sm)
        kill(pid, SIGKILL);
out_free:
    sbxinit__init_msg__free_unpacked(m, NULL);
    free(g.rx);
    return status;
}
