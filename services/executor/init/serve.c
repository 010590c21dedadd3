/* serve.c: the init's request loop and its replies. pid 1 of the sandbox polls the protocol
 * socket and a signalfd (SIGCHLD): it answers Spawn (spawn.c), Signal, KillAll and Ping, reaps
 * every process and reports command exits (cmds.c), and kills the trees of commands past their
 * deadline. It exits when the executor's end of the socket closes, taking the sandbox with it.
 * Single-threaded (sbx-init). */
#include "init_parts.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

int sbx_init_send(Sbxinit__InitMsg *m, const int *fds, size_t nfds)
{
    return sbx_wire_send(sbx_init.sock, m, fds, nfds);
}

void sbx_init_send_ready(uint64_t id, int32_t pid, int err, const char *what, char **enforced,
                         size_t n, const int *fds, size_t nfds)
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
    sbx_init_send(&m, fds, nfds);
}

void sbx_init_send_result(uint64_t id, int err)
{
    Sbxinit__InitMsg m = SBXINIT__INIT_MSG__INIT;
    Sbxinit__Result r = SBXINIT__RESULT__INIT;
    r.err = err < 0 ? -err : err;
    m.id = id;
    m.body_case = SBXINIT__INIT_MSG__BODY_RESULT;
    m.result = &r;
    sbx_init_send(&m, NULL, 0);
}

static void handle_signal(uint64_t id, const Sbxinit__Signal *s)
{
    int err = 0;
    if (s->pid <= 1 || s->sig < 0 || s->sig >= _NSIG) {
        err = s->pid <= 1 ? EPERM : EINVAL;
    } else if (s->tree) {
        sbx_cmd *c = sbx_cmds_find(s->pid, false);
        if (!c)
            err = ESRCH;
        else
            sbx_cmds_kill_tree(c);
    } else if (kill(s->whole_group ? -s->pid : s->pid, s->sig) < 0) {
        err = errno;
    }
    sbx_init_send_result(id, err);
}

static void dispatch(const Sbxinit__InitMsg *m)
{
    switch (m->body_case) {
    case SBXINIT__INIT_MSG__BODY_SPAWN:
        sbx_cmd_spawn(m->id, m->spawn);
        break;
    case SBXINIT__INIT_MSG__BODY_SIGNAL:
        handle_signal(m->id, m->signal);
        break;
    case SBXINIT__INIT_MSG__BODY_KILL_ALL:
        sbx_init_send_result(m->id, kill(-1, SIGKILL) < 0 && errno != ESRCH ? errno : 0);
        break;
    case SBXINIT__INIT_MSG__BODY_PING:
        sbx_init_send_result(m->id, 0);
        break;
    default:
        sbx_init_send_result(m->id, EPROTO);
        break;
    }
}

/* Reads and answers one request (none waiting: returns). Exits when the executor is gone. */
static void serve_one(void)
{
    Sbxinit__InitMsg *m;
    int fds[SBX_WIRE_MAX_FDS];
    size_t nfds;
    int rc = sbx_wire_recv(sbx_init.sock, sbx_init.rx, SBX_WIRE_MAX, MSG_DONTWAIT, &m, fds, &nfds);
    if (rc == -EAGAIN || rc == -EPROTO)
        return;
    if (rc < 0)
        _exit(0); /* the executor is gone: pid 1 exiting ends the sandbox */
    for (size_t i = 0; i < nfds; i++)
        close(fds[i]);
    dispatch(m);
    sbxinit__init_msg__free_unpacked(m, NULL);
}

_Noreturn void sbx_serve(int sigfd)
{
    for (;;) {
        int timeout = sbx_cmds_check_timeouts();
        struct pollfd pf[2] = {{.fd = sbx_init.sock, .events = POLLIN},
                               {.fd = sigfd, .events = POLLIN}};
        int n = poll(pf, 2, timeout);
        if (n < 0 && errno != EINTR)
            _exit(2);
        if (n <= 0)
            continue;
        if (pf[1].revents) {
            struct signalfd_siginfo si;
            while (read(sigfd, &si, sizeof si) == sizeof si) {
            }
            sbx_cmds_reap();
        }
        if (pf[0].revents)
            serve_one();
    }
}
