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
 * the socket closes. fd 4, when present, is the sandbox's delegated cgroup2 directory. */
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

typedef struct {
    pid_t pid;    /* pid inside the sandbox */
    uint64_t seq; /* names the per-command cgroup "c<seq>" */
    uint64_t start_us;
    uint64_t deadline_us; /* 0 = none */
    bool has_cg;
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
    uint64_t seq;
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

static void send_ready(int32_t pid, int err, const char *what, char **enforced, size_t n)
{
    Sbxinit__InitMsg m = SBXINIT__INIT_MSG__INIT;
    Sbxinit__Ready r = SBXINIT__READY__INIT;
    r.init_pid = pid;
    r.err = err < 0 ? -err : err;
    r.err_what = (char *)(what ? what : "");
    r.enforced = enforced;
    r.n_enforced = n;
    m.id = g.setup_id;
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

/* ---------------------------------------------------------------- commands */

typedef struct {
    char *const *argv;
    char *const *envp;
    const char *path; /* PATH used for the search */
    const char *cwd;
    int in_r, out_w, err_w;
    int report; /* close-on-exec pipe: a failure before exec is written here */
} spawn_ctx;

typedef struct {
    int32_t err;
    char what[8];
} spawn_failure;

/* In the command's process (a fork of the single-threaded init) between clone3 and exec. */
static _Noreturn void child_fail(spawn_ctx *c, const char *what)
{
    spawn_failure f = {.err = errno ? errno : EIO};
    snprintf(f.what, sizeof f.what, "%s", what);
    if (write(c->report, &f, sizeof f) < 0) {
        /* the init sees a failure without a reason */
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

static _Noreturn void child_main(spawn_ctx *c)
{
    struct sigaction sa = {.sa_handler = SIG_DFL};
    for (int s = 1; s < _NSIG; s++)
        sigaction(s, &sa, NULL); /* EINVAL for SIGKILL/SIGSTOP/internal ones: fine */
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

static void cmd_cgname(const cmd *c, const char *file, char *buf, size_t len)
{
    snprintf(buf, len, "c%llu%s%s", (unsigned long long)c->seq, file ? "/" : "", file ? file : "");
}

static void cmd_kill_tree(cmd *c)
{
    char path[64];
    if (c->has_cg) {
        cmd_cgname(c, "cgroup.kill", path, sizeof path);
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

/* Drops commands whose main process is gone and whose cgroup could be removed. */
static void cmd_collect(void)
{
    char path[64];
    size_t w = 0;
    for (size_t i = 0; i < g.ncmds; i++) {
        cmd *c = &g.cmds[i];
        if (c->exited && c->has_cg) {
            cmd_cgname(c, NULL, path, sizeof path);
            if (unlinkat(g.cg2fd, path, AT_REMOVEDIR) == 0 || errno == ENOENT)
                c->has_cg = false;
        }
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

static void handle_spawn(uint64_t id, const Sbxinit__Spawn *s)
{
    Sbxinit__InitMsg m = SBXINIT__INIT_MSG__INIT;
    Sbxinit__Started st = SBXINIT__STARTED__INIT;
    m.id = id;
    m.body_case = SBXINIT__INIT_MSG__BODY_STARTED;
    m.started = &st;
    int p_in[2] = {-1, -1}, p_out[2] = {-1, -1}, p_err[2] = {-1, -1}, p_rep[2] = {-1, -1};
    int cg_dir = -1;
    char **env = NULL, **argv = NULL;
    char cgpath[64];
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
        pipe2(p_out, O_CLOEXEC) < 0 || (!s->merge_stderr && pipe2(p_err, O_CLOEXEC) < 0) ||
        pipe2(p_rep, O_CLOEXEC) < 0) {
        err = errno;
        goto out_free_argv;
    }
    c.seq = ++g.seq;
    if (g.cg2fd >= 0) {
        cmd_cgname(&c, NULL, cgpath, sizeof cgpath);
        if (mkdirat(g.cg2fd, cgpath, 0755) == 0) {
            c.has_cg = true;
            cg_dir = openat(g.cg2fd, cgpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        }
        if (cg_dir < 0)
            logmsg("per-command cgroup", errno);
    }
    spawn_ctx ctx = {
        .argv = argv,
        .envp = env,
        .path = path,
        .cwd = s->cwd[0] ? s->cwd : "/home/user",
        .in_r = p_in[0],
        .out_w = p_out[1],
        .err_w = s->merge_stderr ? p_out[1] : p_err[1],
        .report = p_rep[1],
    };
    c.start_us = now_us();
    /* Born inside its cgroup (CLONE_INTO_CGROUP: moving it later through cgroup.procs costs an
       RCU grace period, milliseconds here); CLONE_VFORK: we resume once it exec'd or failed. */
    struct clone_args ca = {.flags = CLONE_VFORK, .exit_signal = SIGCHLD};
    if (cg_dir >= 0) {
        ca.flags |= CLONE_INTO_CGROUP;
        ca.cgroup = (uint64_t)cg_dir;
    }
    pid_t pid = (pid_t)syscall(SYS_clone3, &ca, sizeof ca);
    if (pid < 0 && errno == ENOSYS)
        pid = (pid_t)syscall(SYS_clone, CLONE_VFORK | SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid == 0)
        child_main(&ctx);
    if (pid < 0) {
        err = errno;
        goto out_rmcg;
    }
    close_if(&p_rep[1]);
    spawn_failure f;
    if (read(p_rep[0], &f, sizeof f) == sizeof f) { /* it never reached exec: collect it now */
        waitpid(pid, NULL, 0);
        err = f.err;
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
    if (c.has_cg) {
        cmd_cgname(&c, NULL, cgpath, sizeof cgpath);
        unlinkat(g.cg2fd, cgpath, AT_REMOVEDIR);
    }
out_close:
    close_if(&cg_dir);
    close_if(&p_rep[0]);
    close_if(&p_rep[1]);
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

/* The sandbox init (pid 1): finishes the sandbox and serves. Never returns. */
static void init_main(const Sbxinit__Setup *su, int sync_fd, bool userns)
{
    char *enforced[8];
    size_t ne = 0;
    const char *what = NULL;
    int rc;
    sync_msg sm = {0, -EIO};

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
        enforced[ne++] = "userns";
    }
    g.cmd_uid = userns ? USER_ID : su->uid_base + USER_ID;
    const char *hn = su->hostname[0] ? su->hostname : "sbx";
    what = "hostname";
    if (sethostname(hn, strlen(hn)) < 0) {
        rc = -errno;
        goto out_fail;
    }
    sbx_mounts_cfg mc = {
        .template_fd = -1, .home_fd = -1, .tmp_bytes = su->tmp_bytes, .user_uid = USER_ID};
    if (!mc.tmp_bytes)
        mc.tmp_bytes = 64u << 20;
    if (su->template_root[0]) {
        what = "template";
        mc.is_template = true;
        mc.template_fd = open(su->template_root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (mc.template_fd < 0) {
            rc = -errno;
            goto out_fail;
        }
    }
    if (su->home_dir[0]) {
        what = "home";
        mc.home_fd = open(su->home_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (mc.home_fd < 0) {
            rc = -errno;
            goto out_fail;
        }
    }
    if ((rc = sbx_mounts_build(&mc, &what)) < 0)
        goto out_fail;
    if (mc.home_fd >= 0)
        close(mc.home_fd);
    if (mc.template_fd >= 0)
        close(mc.template_fd);
    enforced[ne++] = "mount-ns";
    enforced[ne++] = "pid-ns";
    what = "lo-up";
    if ((rc = sbx_ns_lo_up()) < 0)
        goto out_fail;
    enforced[ne++] = "net:loopback-only";
    what = "capabilities";
    if ((rc = sbx_caps_restrict_init()) < 0)
        goto out_fail;
    if (!su->no_seccomp) {
        what = "seccomp";
        if ((rc = sbx_seccomp_load()) < 0)
            goto out_fail;
        g.seccomp = true;
        enforced[ne++] = "seccomp";
    }
    if (g.cg2fd >= 0)
        enforced[ne++] = "kill-tree:cgroup-v2-kill";
    else
        enforced[ne++] = "kill-tree:process-group";

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    what = "signalfd";
    g.sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    g.cmds = calloc(MAX_CMDS, sizeof *g.cmds);
    if (g.sigfd < 0 || !g.cmds) {
        rc = -errno;
        goto out_fail;
    }
    send_ready(sm.host_pid, 0, NULL, enforced, ne);
    serve();
    _exit(0);

out_fail:
    logmsg(what, rc);
    send_ready(sm.host_pid, rc, what, NULL, 0);
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
    g.nofile = su->nofile;
    g.fsize = su->fsize_bytes;
    g.nproc = su->nproc;

    int sp[2];
    if (pipe2(sp, O_CLOEXEC) < 0) {
        send_ready(0, -errno, "pipe", NULL, 0);
        status = 1;
        goto out_free;
    }
    bool userns = true;
    pid_t pid = sbx_ns_clone(SBX_NS_ALL_FLAGS, true);
    if (pid < 0 && su->weak) {
        logmsg("user namespace unavailable, weak isolation", pid);
        userns = false;
        pid = sbx_ns_clone(SBX_NS_ALL_FLAGS & ~(unsigned long)(CLONE_NEWUSER | CLONE_NEWCGROUP),
                           true);
    }
    if (pid < 0) {
        send_ready(0, pid, "namespaces", NULL, 0);
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
