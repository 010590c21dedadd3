/* command.c: commands in a sandbox (see sandbox.h): start one, signal it or its tree, kill
 * everything, ping the init, and take command exits from the exit queue or through the exit
 * hook.
 *
 * Job: each call is one request to the sandbox's init (service.c carries it and hands back the
 * answer and any pipe fds that came with it). Exits arrive on the service thread, which queues
 * them on the sandbox (eventfd readable while any are queued) or gives them to the hook.
 * Threads: any. Ownership: the fds of a started command belong to the caller.
 * Locks: sb->lock alone; sbx_sandbox_set_exit_hook then waits out a service-thread batch. */
#include "sandbox_int.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static size_t strv_len(const char *const *v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    return n;
}

/* argv + env + cwd must fit one packet (with room for the framing). */
static bool spawn_fits(const sbx_spawn_req *req, size_t argc, size_t envc)
{
    size_t total = 0;
    for (size_t i = 0; i < argc; i++)
        total += strlen(req->argv[i]) + 8;
    for (size_t i = 0; i < envc; i++)
        total += strlen(req->env[i]) + 8;
    return total + (req->cwd ? strlen(req->cwd) : 0) + 256 <= SBX_WIRE_MAX;
}

/* Reads a Started answer into out; the fds it takes are no longer p's. */
static int take_started(sbx__pending *p, sbx_spawned *out)
{
    const Sbxinit__Started *st =
        p->msg->body_case == SBXINIT__INIT_MSG__BODY_STARTED ? p->msg->started : NULL;
    if (!st)
        return -EPROTO;
    if (st->err) {
        out->err_what = strcmp(st->what, "exec") == 0  ? "exec"
                        : strcmp(st->what, "cwd") == 0 ? "cwd"
                        : strcmp(st->what, "pty") == 0 ? "pty"
                                                       : "setup";
        return -st->err;
    }
    size_t want = 1u + (st->has_stdin ? 1u : 0u) + (st->has_stderr ? 1u : 0u);
    if (p->nfds != want || (st->pty && (!st->has_stdin || st->has_stderr)))
        return -EPROTO;
    size_t k = 0;
    out->pid = st->pid;
    out->pty = st->pty;
    out->stdin_fd = st->has_stdin ? p->fds[k++] : -1;
    out->stdout_fd = p->fds[k++];
    out->stderr_fd = st->has_stderr ? p->fds[k++] : -1;
    p->nfds = 0;
    return 0;
}

int sbx_sandbox_spawn(sbx_sandbox *sb, const sbx_spawn_req *req, sbx_spawned *out)
{
    out->pid = -1;
    out->stdin_fd = out->stdout_fd = out->stderr_fd = -1;
    out->pty = false;
    out->err_what = NULL;
    size_t argc = strv_len(req->argv), envc = strv_len(req->env);
    if (argc == 0 || !req->argv[0][0])
        return -EINVAL;
    if (!spawn_fits(req, argc, envc))
        return -E2BIG;

    Sbxinit__InitMsg m = SBXINIT__INIT_MSG__INIT;
    Sbxinit__Spawn s = SBXINIT__SPAWN__INIT;
    s.argv = (char **)req->argv;
    s.n_argv = argc;
    s.env = (char **)req->env;
    s.n_env = envc;
    s.cwd = (char *)(req->cwd ? req->cwd : "");
    s.want_stdin = req->want_stdin;
    s.merge_stderr = req->merge_stderr;
    s.timeout_ms = req->timeout_ms;
    if (req->pty_cols && req->pty_rows) {
        s.pty_cols = req->pty_cols;
        s.pty_rows = req->pty_rows;
    }
    m.body_case = SBXINIT__INIT_MSG__BODY_SPAWN;
    m.spawn = &s;
    sbx__pending p;
    int rc = sbx__request(sb, &m, &p, REQUEST_TIMEOUT_MS);
    if (rc < 0)
        return rc;
    rc = take_started(&p, out);
    sbx__pending_release(&p);
    return rc;
}

/* ---------------------------------------------------------------- exits */

void sbx_sandbox_set_exit_hook(sbx_sandbox *sb, sbx_exit_cb cb, void *arg)
{
    pthread_mutex_lock(&sb->lock);
    sb->hook = cb;
    sb->hook_arg = arg;
    pthread_mutex_unlock(&sb->lock);
    /* a batch of the service thread may still be calling the previous hook */
    sbx__svc_barrier();
}

int sbx_sandbox_exit_fd(const sbx_sandbox *sb)
{
    return sb->exit_efd;
}

int sbx_sandbox_next_exit(sbx_sandbox *sb, sbx_exit *ev)
{
    int rc = -EAGAIN;
    pthread_mutex_lock(&sb->lock);
    if (sb->qlen > 0) {
        *ev = sb->q[sb->qhead];
        sb->qhead = (sb->qhead + 1) % sb->qcap;
        sb->qlen--;
        rc = 0;
    }
    if (sb->qlen == 0) {
        uint64_t v;
        if (read(sb->exit_efd, &v, sizeof v) < 0 && errno != EAGAIN)
            rc = rc == 0 ? 0 : -errno;
    }
    pthread_mutex_unlock(&sb->lock);
    return rc;
}

/* ---------------------------------------------------------------- signals */

static int send_signal(sbx_sandbox *sb, int pid, int sig, bool group, bool tree)
{
    if (sig < 0 || sig >= 65)
        return -EINVAL;
    Sbxinit__InitMsg m = SBXINIT__INIT_MSG__INIT;
    Sbxinit__Signal s = SBXINIT__SIGNAL__INIT;
    s.pid = pid;
    s.sig = sig;
    s.whole_group = group;
    s.tree = tree;
    m.body_case = SBXINIT__INIT_MSG__BODY_SIGNAL;
    m.signal = &s;
    return sbx__request_result(sb, &m);
}

int sbx_sandbox_signal(sbx_sandbox *sb, int pid, int sig)
{
    return send_signal(sb, pid, sig, false, false);
}

int sbx_sandbox_signal_group(sbx_sandbox *sb, int pid, int sig)
{
    return send_signal(sb, pid, sig, true, false);
}

int sbx_sandbox_kill_tree(sbx_sandbox *sb, int pid)
{
    return send_signal(sb, pid, SIGKILL, false, true);
}

int sbx_sandbox_kill_all(sbx_sandbox *sb)
{
    Sbxinit__InitMsg m = SBXINIT__INIT_MSG__INIT;
    Sbxinit__KillAll k = SBXINIT__KILL_ALL__INIT;
    m.body_case = SBXINIT__INIT_MSG__BODY_KILL_ALL;
    m.kill_all = &k;
    return sbx__request_result(sb, &m);
}

int sbx_sandbox_ping(sbx_sandbox *sb)
{
    Sbxinit__InitMsg m = SBXINIT__INIT_MSG__INIT;
    Sbxinit__Ping pg = SBXINIT__PING__INIT;
    m.body_case = SBXINIT__INIT_MSG__BODY_PING;
    m.ping = &pg;
    return sbx__request_result(sb, &m);
}
