/* spawn.c: the command spawner. A Spawn request becomes a process in the sandbox: in a fresh
 * session, with its stdio on pipes whose other ends go back to the executor (SCM_RIGHTS), or on
 * a terminal (pty.c) that is its controlling terminal and whose master goes back instead,
 * the command's rlimits, no capabilities (bounding and ambient sets emptied before setresuid,
 * the rest cleared after), no_new_privs, the clone3 block on top of the init's seccomp filter,
 * running as the sandbox user, its environment the defaults overridden by the request's.
 *
 * Per-command cost: commands start with clone3(CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP) on
 * a private stack (x86_64 without ASan: no page-table copy, and a failure before exec comes
 * back through shared memory instead of a pipe), with one signal disposition reset and only
 * the capabilities the init kept dropped from the bounding set, into a per-command cgroup
 * (cmdcg.c). Single-threaded (sbx-init); the child runs on the init's memory until it execs,
 * so between clone3 and exec it only makes raw syscalls and writes its own stack and `fail`. */
#include "init_parts.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"

#define DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"
#define DEFAULT_CWD "/home/user"

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
    bool ctty;  /* in_r is a terminal: make it the controlling terminal of the new session */
    int report; /* fallback (no shared memory): close-on-exec pipe for a failure, else -1 */
    volatile spawn_failure fail; /* with CLONE_VM: written by the child before it exits */
} spawn_ctx;

/* ---------------------------------------------------------------- the child */

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

/* execvp without the allocation: every PATH entry in turn; EACCES wins over ENOENT. */
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

/* The command's rlimits (no core files ever). */
static int child_rlimits(void)
{
    struct rlimit rl = {sbx_init.nofile, sbx_init.nofile};
    if (sbx_init.nofile && setrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -1;
    rl.rlim_cur = rl.rlim_max = 0;
    setrlimit(RLIMIT_CORE, &rl);
    rl.rlim_cur = rl.rlim_max = sbx_init.fsize;
    if (sbx_init.fsize && setrlimit(RLIMIT_FSIZE, &rl) < 0)
        return -1;
    rl.rlim_cur = rl.rlim_max = sbx_init.nproc;
    if (sbx_init.nproc && setrlimit(RLIMIT_NPROC, &rl) < 0)
        return -1;
    return 0;
}

/* Capabilities dropped, the sandbox user, no_new_privs, clone3 blocked: 0, or -1 with errno
 * set. */
static int child_drop_privileges(void)
{
    int rc = sbx_caps_drop_bounding();
    uint32_t id = sbx_init.cmd_uid;
    if (rc == 0) {
        if (syscall(SYS_setgroups, 0, NULL) < 0 || syscall(SYS_setresgid, id, id, id) < 0 ||
            syscall(SYS_setresuid, id, id, id) < 0)
            return -1;
        rc = sbx_caps_clear();
    }
    if (rc == 0) {
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
            return -1;
        if (sbx_init.seccomp)
            rc = sbx_seccomp_block_clone3();
    }
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    return 0;
}

static void child_main(void *arg)
{
    spawn_ctx *c = arg;
    /* The init installs no handlers and ignores only SIGPIPE (init.c); exec resets nothing
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
    if (c->ctty && ioctl(0, TIOCSCTTY, 0) < 0)
        child_fail(c, "setup");
    if (child_rlimits() < 0 || child_drop_privileges() < 0)
        child_fail(c, "setup");
    if (chdir(c->cwd) < 0)
        child_fail(c, "cwd");
    child_exec_search(c);
    child_fail(c, "exec");
}

/* ---------------------------------------------------------------- clone */

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

/* Starts the command (see start_child) sharing our memory. */
static pid_t clone_command(spawn_ctx *ctx, struct clone_args *ca, spawn_failure *f)
{
    ca->flags |= CLONE_VM;
    ca->stack = (uint64_t)(uintptr_t)child_stack;
    ca->stack_size = sizeof child_stack;
    ctx->report = -1;
    ctx->fail.err = 0;
    long r = clone3_vm(ca, child_main, ctx);
    if (r < 0)
        return (pid_t)r;
    pid_t pid = (pid_t)r;
    if (ctx->fail.err) { /* it never reached exec and has exited: collect it now */
        waitpid(pid, NULL, 0);
        f->err = ctx->fail.err;
        memcpy(f->what, (const void *)ctx->fail.what, sizeof f->what);
        return 0;
    }
    return pid;
}
#else
/* Starts the command (see start_child) as a vfork; a failure comes back through a pipe. */
static pid_t clone_command(spawn_ctx *ctx, struct clone_args *ca, spawn_failure *f)
{
    int rep[2];
    if (pipe2(rep, O_CLOEXEC) < 0)
        return -errno;
    ctx->report = rep[1];
    pid_t pid = (pid_t)syscall(SYS_clone3, ca, sizeof *ca);
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
}
#endif

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
    return clone_command(ctx, &ca, f);
}

/* ---------------------------------------------------------------- the request */

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

typedef struct {
    int in[2], out[2], err[2];
    int master, slave; /* a terminal instead (pty_cols/pty_rows), else -1 */
} stdio_pipes;

static void pipes_close(stdio_pipes *p)
{
    for (int i = 0; i < 2; i++) {
        close_if(&p->in[i]);
        close_if(&p->out[i]);
        close_if(&p->err[i]);
    }
    close_if(&p->master);
    close_if(&p->slave);
}

static bool wants_pty(const Sbxinit__Spawn *s)
{
    return s->pty_cols > 0 && s->pty_rows > 0;
}

/* stdin (a pipe, or /dev/null), stdout, and stderr (none with merge_stderr), or a terminal for
 * all three: 0 or an errno. */
static int pipes_open(const Sbxinit__Spawn *s, stdio_pipes *p)
{
    *p = (stdio_pipes){{-1, -1}, {-1, -1}, {-1, -1}, -1, -1};
    if (wants_pty(s)) {
        int rc = sbx_pty_open(s->pty_cols, s->pty_rows, &p->master, &p->slave);
        return rc < 0 ? -rc : 0;
    }
    if (s->want_stdin ? pipe2(p->in, O_CLOEXEC) < 0
                      : (p->in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
        return errno;
    if (pipe2(p->out, O_CLOEXEC) < 0 || (!s->merge_stderr && pipe2(p->err, O_CLOEXEC) < 0))
        return errno;
    return 0;
}

static void reply_started(uint64_t id, const Sbxinit__Spawn *s, pid_t pid, const stdio_pipes *io)
{
    Sbxinit__InitMsg m = SBXINIT__INIT_MSG__INIT;
    Sbxinit__Started st = SBXINIT__STARTED__INIT;
    m.id = id;
    m.body_case = SBXINIT__INIT_MSG__BODY_STARTED;
    m.started = &st;
    st.pid = pid;
    int fds[3];
    size_t nfds = 0;
    if (io->master >= 0) { /* input and output: the master, twice (see init.proto) */
        st.pty = st.has_stdin = true;
        fds[nfds++] = io->master;
        fds[nfds++] = io->master;
    } else {
        st.has_stdin = s->want_stdin;
        st.has_stderr = !s->merge_stderr;
        if (s->want_stdin)
            fds[nfds++] = io->in[1];
        fds[nfds++] = io->out[0];
        if (!s->merge_stderr)
            fds[nfds++] = io->err[0];
    }
    if (sbx_init_send(&m, fds, nfds) < 0)
        sbx_init_log("send started", errno);
}

static void reply_failed(uint64_t id, int err, const char *what)
{
    Sbxinit__InitMsg m = SBXINIT__INIT_MSG__INIT;
    Sbxinit__Started st = SBXINIT__STARTED__INIT;
    m.id = id;
    m.body_case = SBXINIT__INIT_MSG__BODY_STARTED;
    m.started = &st;
    st.err = err;
    st.what = (char *)(what ? what : "setup");
    sbx_init_send(&m, NULL, 0);
}

/* Starts the command in its cgroup and answers Started. 0, or an errno (*what: the step). */
static int start_command(uint64_t id, const Sbxinit__Spawn *s, spawn_ctx *ctx,
                         const stdio_pipes *io, const char **what)
{
    sbx_cmd c = {0};
    int cg_dir = -1, err = 0;
    if (sbx_cmdcg_enabled()) {
        cg_dir = sbx_cmdcg_take(&c.cgn);
        if (cg_dir >= 0)
            c.has_cg = true;
        else
            sbx_init_log("per-command cgroup", cg_dir);
    }
    c.start_us = sbx_mono_us();
    spawn_failure f = {0};
    pid_t pid = start_child(ctx, cg_dir, &f);
    if (pid > 0) {
        c.pid = pid;
        if (s->timeout_ms)
            c.deadline_us = c.start_us + (uint64_t)s->timeout_ms * 1000u;
        sbx_cmds_add(&c);
        reply_started(id, s, pid, io);
        goto out_close;
    }
    if (pid < 0) {
        err = -pid;
    } else {
        err = f.err ? f.err : EIO;
        f.what[sizeof f.what - 1] = '\0';
        *what = strcmp(f.what, "exec") == 0 ? "exec" : strcmp(f.what, "cwd") == 0 ? "cwd" : "setup";
    }
    /* the failed child was reaped: its group is empty (else drop it anyway) */
    if (c.has_cg && !sbx_cmdcg_release(c.cgn, false))
        sbx_cmdcg_remove(c.cgn);
out_close:
    close_if(&cg_dir);
    return err;
}

/* Opens the stdio pipes and starts the command: 0, or an errno (*what: the step). */
static int spawn_with_pipes(uint64_t id, const Sbxinit__Spawn *s, char **argv, char **env,
                            const char *path, const char **what)
{
    stdio_pipes io;
    int err = pipes_open(s, &io);
    if (err == 0) {
        spawn_ctx ctx = {
            .argv = argv,
            .envp = env,
            .path = path,
            .cwd = s->cwd[0] ? s->cwd : DEFAULT_CWD,
            .in_r = io.in[0],
            .out_w = io.out[1],
            .err_w = s->merge_stderr ? io.out[1] : io.err[1],
            .report = -1,
        };
        if (io.slave >= 0) {
            ctx.in_r = ctx.out_w = ctx.err_w = io.slave;
            ctx.ctty = true;
        }
        err = start_command(id, s, &ctx, &io, what);
    } else if (wants_pty(s)) {
        *what = "pty";
    }
    pipes_close(&io); /* the executor has its ends (SCM_RIGHTS), the command its own */
    return err;
}

/* Checks and prepares the request, then starts it: 0, or an errno (*what: the step). */
static int spawn_request(uint64_t id, const Sbxinit__Spawn *s, const char **what)
{
    if (s->n_argv == 0 || !s->argv[0][0])
        return EINVAL;
    if (sbx_cmds_full())
        return EAGAIN;
    const char *path;
    char **env = build_env(s, &path);
    char **argv = calloc(s->n_argv + 1, sizeof *argv);
    int err = ENOMEM;
    if (env && argv) {
        memcpy(argv, s->argv, s->n_argv * sizeof *argv);
        err = spawn_with_pipes(id, s, argv, env, path, what);
    }
    free(argv);
    free(env);
    return err;
}

void sbx_cmd_spawn(uint64_t id, const Sbxinit__Spawn *s)
{
    const char *what = NULL;
    int err = spawn_request(id, s, &what);
    if (err)
        reply_failed(id, err, what);
    /* the reply is out: make the next command's group now, off its critical path */
    sbx_cmdcg_topup();
}
