/* portfwd_relay.c: the relay thread of the port forwarder (see portfwd_int.h). One epoll loop
 * over every listener and connection (edge-triggered for connections) moves bytes with the
 * splice relay of relay.h (one pipe per direction, or buffers in copy mode): half-close is
 * propagated, a side is not read while the other cannot take more, and an error on either side
 * resets both. Teardown requests from other threads are
 * commands the relay runs between epoll batches (so no event of the current batch can point to
 * freed memory), while the caller waits.
 *
 * Threads: the relay thread owns every connection; sbx__pf_run_on_relay and sbx__pf_wake are
 * called from any thread. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "portfwd_int.h"

void sbx__pf_block_signals(sigset_t *old)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, old);
}

void sbx__pf_wake(sbx_portfwd *f)
{
    uint64_t one = 1;
    ssize_t n = write(f->wakefd, &one, sizeof one);
    (void)n; /* EAGAIN: the counter is already non-zero, the thread will wake */
}

/* ---- connections (relay thread) ----------------------------------------------------------- */

/* Closes both sides; reset = abortive close (RST) instead of a FIN. The memory is freed after
 * the current epoll batch. */
static void conn_close(sbx_portfwd *f, pf_conn *c, bool reset)
{
    if (c->state == C_DEAD)
        return;
    c->state = C_DEAD;
    dl_del(&c->q_link);
    dl_del(&c->sb_link);
    c->sb->nconns--;
    ATOMIC_SUB(&c->l->active, 1);
    sbx_relay_end(&c->rl, f->epfd, &f->pipes, reset);
    c->zombie_next = f->zombies;
    f->zombies = c;
}

static void conn_fail(sbx_portfwd *f, pf_conn *c, int err, const char *what)
{
    if (c->state != C_RELAY)
        ATOMIC_ADD(&c->l->failed, 1);
    SBX_LOG_DEBUG(COMP, "connection reset key=%s port=%u what=%s err=%d", c->sb->key,
                  (unsigned)c->l->port, what, err);
    conn_close(f, c, true);
}

int sbx__pf_ep_add(sbx_portfwd *f, int fd, ep_tag *tag, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = tag};
    return epoll_ctl(f->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

/* Moves what can be moved in direction d; false when the connection was closed. */
static bool pump(sbx_portfwd *f, pf_conn *c, int d)
{
    uint64_t moved = 0;
    const char *what = NULL;
    int rc = sbx_relay_pump(&c->rl, d, &moved, &what);
    if (moved)
        ATOMIC_ADD(d == 0 ? &c->l->bytes_in : &c->l->bytes_out, moved);
    if (rc < 0) {
        conn_fail(f, c, -rc, what);
        return false;
    }
    if (rc == SBX_RELAY_DONE) {
        conn_close(f, c, false);
        return false;
    }
    return true;
}

static void conn_relay(sbx_portfwd *f, pf_conn *c)
{
    int rc = sbx_relay_begin(&c->rl, &f->pipes, f->cfg.copy, f->cfg.pipe_bytes);
    if (rc < 0) {
        conn_fail(f, c, -rc, f->cfg.copy ? "buffer" : "pipe");
        return;
    }
    c->state = C_RELAY;
    if (pump(f, c, 0))
        pump(f, c, 1);
}

static void conn_connect(sbx_portfwd *f, pf_conn *c, int fd)
{
    c->rl.fd[1] = fd;
    if (sbx__pf_ep_add(f, fd, &c->ep[1], EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) < 0) {
        conn_fail(f, c, errno, "epoll");
        return;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(c->l->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
        conn_relay(f, c);
    } else if (errno == EINPROGRESS) {
        c->state = C_CONNECTING;
        c->deadline_ms = sbx_mono_ms() + f->cfg.connect_timeout_ms;
        dl_push(&f->connecting, &c->q_link);
    } else {
        conn_fail(f, c, errno, "connect");
    }
}

static void conn_event(sbx_portfwd *f, pf_conn *c, int side, uint32_t ev)
{
    if (c->state == C_DEAD || c->state == C_WAIT_SOCK)
        return;
    if (c->state == C_CONNECTING) {
        if (side != 1)
            return; /* client data waits in its socket until the sandbox side is up */
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->rl.fd[1], SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err) {
            conn_fail(f, c, err, "connect");
            return;
        }
        if (!(ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)))
            return;
        dl_del(&c->q_link);
        conn_relay(f, c);
        return;
    }
    if (ev & EPOLLERR) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->rl.fd[side], SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            conn_fail(f, c, err, "socket");
            return;
        }
    }
    /* readable/hang-up: direction side (it is the source); writable: the other direction */
    if ((ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && !pump(f, c, side))
        return;
    /* Writable matters only with bytes waiting for it: new bytes on the other socket come
       with an edge of their own (most EPOLLOUT bits here ride along with EPOLLIN). */
    if ((ev & (EPOLLHUP | EPOLLERR)) || ((ev & EPOLLOUT) && c->rl.inpipe[1 - side]))
        pump(f, c, 1 - side);
}

static void refuse(pf_listener *l, int fd)
{
    ATOMIC_ADD(&l->refused, 1); /* before the client can see the reset */
    sbx_relay_set_rst(fd);
    close(fd);
}

/* Out of fds: accepts (and resets) one pending connection through the spare fd, so the
 * level-triggered listener does not spin. */
static void drop_one(sbx_portfwd *f, pf_listener *l)
{
    uint64_t t = sbx_mono_ms();
    if (t - f->last_fd_warn_ms > 10000) {
        f->last_fd_warn_ms = t;
        SBX_LOG_WARN(COMP, "out of file descriptors; resetting new connections");
    }
    close(f->spare_fd);
    int tmp = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
    if (tmp >= 0) {
        ATOMIC_ADD(&l->accepted, 1);
        refuse(l, tmp);
    }
    f->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* A connection of an accepted client fd: connected at once with a pooled socket, or queued
 * until the netns thread makes one. */
static void conn_new(sbx_portfwd *f, pf_listener *l, int fd)
{
    pf_sb *sb = l->sb;
    pf_conn *c = sb->nconns < f->cfg.max_conns ? calloc(1, sizeof *c) : NULL;
    if (!c) {
        refuse(l, fd);
        return;
    }
    c->ep[0] = (ep_tag){EP_CONN, 0};
    c->ep[1] = (ep_tag){EP_CONN, 1};
    sbx_relay_init(&c->rl, fd, -1);
    c->l = l;
    c->sb = sb;
    c->state = C_WAIT_SOCK;
    dl_push(&sb->conns, &c->sb_link);
    sb->nconns++;
    ATOMIC_ADD(&l->active, 1);
    if (sbx__pf_ep_add(f, fd, &c->ep[0], EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) < 0) {
        conn_fail(f, c, errno, "epoll");
        return;
    }
    int ufd = dl_empty(&sb->waitq) ? sbx__pf_pool_take(sb) : -EAGAIN;
    if (ufd >= 0) {
        conn_connect(f, c, ufd);
        return;
    }
    dl_push(&sb->waitq, &c->q_link);
    if (!sb->on_starved) {
        sb->on_starved = true;
        dl_push(&f->starved, &sb->starved_link);
    }
}

static void on_accept(sbx_portfwd *f, pf_listener *l)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            ATOMIC_ADD(&l->accepted, 1);
            conn_new(f, l, fd);
        } else if (errno == EINTR || errno == ECONNABORTED) {
            continue;
        } else if ((errno == EMFILE || errno == ENFILE) && f->spare_fd >= 0) {
            drop_one(f, l);
        } else {
            return; /* EAGAIN (or an error we cannot act on: level-triggered, retried) */
        }
    }
}

/* Hands freshly made sockets to connections that waited for one. */
static void serve_starved(sbx_portfwd *f)
{
    dlink *n = f->starved.next;
    while (n != &f->starved) {
        dlink *next = n->next;
        pf_sb *sb = DL_ENTRY(n, pf_sb, starved_link);
        while (!dl_empty(&sb->waitq)) {
            int fd = sbx__pf_pool_take(sb);
            if (fd < 0)
                break;
            pf_conn *c = DL_ENTRY(sb->waitq.next, pf_conn, q_link);
            dl_del(&c->q_link);
            conn_connect(f, c, fd);
        }
        if (dl_empty(&sb->waitq)) {
            dl_del(&sb->starved_link);
            sb->on_starved = false;
        }
        n = next;
    }
}

static void expire_connecting(sbx_portfwd *f, uint64_t now)
{
    while (!dl_empty(&f->connecting)) {
        pf_conn *c = DL_ENTRY(f->connecting.next, pf_conn, q_link);
        if (c->deadline_ms > now)
            break;
        conn_fail(f, c, ETIMEDOUT, "connect-timeout");
    }
}

/* Relay thread: closes the listeners and connections of a sandbox that callers already removed
 * from the registry. */
void sbx__pf_close_sb_conns(sbx_portfwd *f, pf_sb *sb)
{
    for (pf_listener *l = sb->listeners; l; l = l->next) {
        if (l->fd >= 0) {
            sbx_relay_close_fd(f->epfd, l->fd);
            l->fd = -1;
        }
    }
    while (!dl_empty(&sb->conns))
        conn_close(f, DL_ENTRY(sb->conns.next, pf_conn, sb_link), true);
    if (sb->on_starved) {
        dl_del(&sb->starved_link);
        sb->on_starved = false;
    }
}

/* Runs queued commands; returns false on CMD_STOP. */
static bool run_commands(sbx_portfwd *f)
{
    bool go_on = true;
    pthread_mutex_lock(&f->mu);
    pf_cmd *c = f->cmds;
    f->cmds = NULL;
    f->cmds_tail = &f->cmds;
    pthread_mutex_unlock(&f->mu);
    while (c) {
        pf_cmd *next = c->next;
        if (c->op == CMD_CLOSE_SB)
            sbx__pf_close_sb_conns(f, c->sb);
        else if (c->op == CMD_STOP)
            go_on = false;
        pthread_mutex_lock(&f->mu);
        c->done = true;
        pthread_cond_broadcast(&f->cmd_cv);
        pthread_mutex_unlock(&f->mu);
        c = next;
    }
    return go_on;
}

void sbx__pf_free_zombies(sbx_portfwd *f)
{
    while (f->zombies) {
        pf_conn *c = f->zombies;
        f->zombies = c->zombie_next;
        free(c);
    }
}

/* After relaying, the thread polls without sleeping for this long: a request's answer usually
 * comes back within it, and catching it saves the wake-up of a sleeping thread (about a third
 * of what the forwarder adds to a keep-alive request here). Bounded, so an idle forwarder
 * sleeps. */
#define SPIN_NS 50000u

void *sbx__pf_relay_main(void *arg)
{
    sbx_portfwd *f = arg;
    sbx__pf_block_signals(NULL);
    struct epoll_event evs[EVENTS_MAX];
    bool running = true;
    uint64_t spin_until = 0;
    while (running) {
        int timeout = -1;
        if (!dl_empty(&f->connecting)) {
            pf_conn *c = DL_ENTRY(f->connecting.next, pf_conn, q_link);
            uint64_t now = sbx_mono_ms();
            timeout = c->deadline_ms > now ? (int)(c->deadline_ms - now) : 0;
        }
        if (spin_until && sbx_mono_ns() < spin_until)
            timeout = 0;
        else
            spin_until = 0;
        int n = epoll_wait(f->epfd, evs, EVENTS_MAX, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            SBX_LOG_ERRNO(SBX_LOG_ERROR, COMP, errno, "epoll_wait failed");
            break;
        }
        bool woken = false;
        for (int i = 0; i < n; i++) {
            ep_tag *t = evs[i].data.ptr;
            if (t->kind == EP_CONN) {
                pf_conn *c =
                    (pf_conn *)((char *)t - offsetof(pf_conn, ep) - t->side * sizeof(ep_tag));
                conn_event(f, c, t->side, evs[i].events);
                spin_until = sbx_mono_ns() + SPIN_NS;
            } else if (t->kind == EP_LISTENER) {
                pf_listener *l = (pf_listener *)t;
                if (l->fd >= 0)
                    on_accept(f, l);
            } else {
                uint64_t v;
                ssize_t r = read(f->wakefd, &v, sizeof v);
                (void)r;
                woken = true;
            }
        }
        if (woken) {
            serve_starved(f);
            running = run_commands(f);
        }
        if (!dl_empty(&f->connecting))
            expire_connecting(f, sbx_mono_ms());
        sbx__pf_free_zombies(f);
    }
    return NULL;
}

/* Queues a command for the relay thread and waits until it ran. */
void sbx__pf_run_on_relay(sbx_portfwd *f, int op, pf_sb *sb)
{
    pf_cmd cmd = {.op = op, .sb = sb};
    pthread_mutex_lock(&f->mu);
    *f->cmds_tail = &cmd;
    f->cmds_tail = &cmd.next;
    pthread_mutex_unlock(&f->mu);
    sbx__pf_wake(f);
    pthread_mutex_lock(&f->mu);
    while (!cmd.done)
        pthread_cond_wait(&f->cmd_cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
}
