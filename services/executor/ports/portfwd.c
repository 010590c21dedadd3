/* portfwd.c: the port forwarder (see portfwd.h). One relay thread runs an epoll loop over every
 * listener and connection (edge-triggered for connections) and moves bytes with splice()
 * through one pipe per direction, so data is never copied to user space. Per sandbox, one
 * "netns thread" enters the sandbox's network namespace once and keeps a small pool of
 * unconnected sockets created there; the relay thread takes one per accepted connection and
 * connects it (a socket stays in the namespace it was created in). When the pool is empty the
 * connection waits in the sandbox's queue until the netns thread refills it and wakes the relay
 * thread.
 *
 * Ownership: the registry (sandboxes, their listeners) is guarded by f->mu; callers add to it
 * directly. Everything about connections belongs to the relay thread alone; teardown requests
 * from other threads are commands the relay thread runs between epoll batches (so no event of
 * the current batch can point to freed memory), while the caller waits. */
#include "portfwd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define COMP "portfwd"
#define KEY_MAX 64
#define POOL_MAX 64
#define PIPE_CACHE_MAX 128
#define ACCEPT_BATCH 64
#define EVENTS_MAX 256
#define LISTEN_BACKLOG 1024

#define ATOMIC_ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_RELAXED)
#define ATOMIC_SUB(p, v) __atomic_sub_fetch((p), (v), __ATOMIC_RELAXED)
#define ATOMIC_LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)

/* An intrusive doubly linked list (a circular list with a head node). */
typedef struct dlink {
    struct dlink *prev, *next;
} dlink;

static void dl_init(dlink *h)
{
    h->prev = h->next = h;
}
static bool dl_empty(const dlink *h)
{
    return h->next == h;
}
static void dl_push(dlink *h, dlink *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}
static void dl_del(dlink *n)
{
    if (!n->next)
        return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = NULL;
}
#define DL_ENTRY(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

/* What an epoll cookie points to. */
enum { EP_WAKE = 1, EP_LISTENER, EP_CONN };
typedef struct {
    uint8_t kind;
    uint8_t side; /* EP_CONN: 0 client, 1 sandbox */
} ep_tag;

typedef struct pf_sb pf_sb;

typedef struct pf_listener {
    ep_tag ep;
    int fd;
    uint16_t port, host_port;
    pf_sb *sb;
    struct pf_listener *next; /* sb's list, in expose order */
    /* counters: written by the relay thread, read anywhere */
    uint32_t active;
    uint64_t accepted, refused, failed, bytes_in, bytes_out;
} pf_listener;

enum { C_WAIT_SOCK = 1, C_CONNECTING, C_RELAY, C_DEAD };

typedef struct pf_conn {
    ep_tag ep[2]; /* side 0: the client, side 1: the sandbox */
    int fd[2];
    /* direction d moves fd[d] -> fd[1 - d] through pipe[d] */
    int pipe[2][2];
    uint32_t inpipe[2], pipecap[2];
    char *buf[2];     /* cfg.copy: user-space buffers instead of pipes */
    uint32_t head[2]; /* cfg.copy: where buffered bytes start in buf[d] */
    bool eof[2];      /* fd[d] has no more to read */
    bool shut[2];     /* fd[1 - d] was shut down for writing after direction d ended */
    uint8_t state;
    pf_listener *l;
    pf_sb *sb;
    uint64_t deadline_ms; /* C_CONNECTING */
    dlink sb_link;        /* sb->conns */
    dlink q_link;         /* sb->waitq (C_WAIT_SOCK) or f->connecting (C_CONNECTING) */
    struct pf_conn *zombie_next;
} pf_conn;

struct pf_sb {
    char key[KEY_MAX + 1];
    int netns_fd;
    dev_t ns_dev;
    ino_t ns_ino;
    pf_listener *listeners; /* f->mu */
    unsigned nports;        /* f->mu */
    sbx_portfwd *f;

    /* relay thread only */
    dlink conns;
    dlink waitq;
    unsigned nconns;
    bool on_starved;
    dlink starved_link;

    /* the netns thread and its socket pool (pool_mu) */
    pthread_t thr;
    bool thr_started;
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv;
    int pool[POOL_MAX];
    unsigned pool_n, pool_target;
    bool stop, ns_ready, want_wake;
    int ns_err;

    pf_sb *next; /* f->sbs */
};

typedef struct pf_cmd {
    int op; /* CMD_CLOSE_SB, CMD_STOP */
    pf_sb *sb;
    bool done;
    struct pf_cmd *next;
} pf_cmd;
enum { CMD_CLOSE_SB = 1, CMD_STOP };

struct sbx_portfwd {
    sbx_portfwd_cfg cfg;
    char host[INET6_ADDRSTRLEN];
    int family;
    union {
        struct sockaddr_in v4;
        struct sockaddr_in6 v6;
    } bind_addr;
    socklen_t bind_len;

    int epfd;
    int wakefd;
    ep_tag wake_ep;
    pthread_t thr;
    bool thr_started;

    pthread_mutex_t mu; /* sbs, listeners, the command queue */
    pthread_cond_t cmd_cv;
    pf_sb *sbs;
    pf_cmd *cmds, **cmds_tail;

    /* relay thread only */
    dlink connecting;
    dlink starved;
    pf_conn *zombies;
    int pipe_cache[PIPE_CACHE_MAX][2];
    uint32_t pipe_cache_cap[PIPE_CACHE_MAX];
    unsigned npipe_cache;
    int spare_fd; /* closed to accept (and drop) a connection when out of fds */
    uint64_t last_fd_warn_ms;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void block_signals(sigset_t *old)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, old);
}

static void wake(sbx_portfwd *f)
{
    uint64_t one = 1;
    ssize_t n = write(f->wakefd, &one, sizeof one);
    (void)n; /* EAGAIN: the counter is already non-zero, the thread will wake */
}

/* ---- the netns thread of a sandbox --------------------------------------------------------- */

/* Both legs are loopback: no Nagle (we relay whatever arrives at once), and no pacing. A
 * pacing congestion control (BBR is a common default) arms a timer per burst, which on a relay
 * costs more than it saves; cubic on loopback just sends. */
static void tune_socket(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, "cubic", 5) < 0)
        setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, "reno", 4);
}

static int ns_socket(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    tune_socket(fd);
    return fd;
}

static void *ns_main(void *arg)
{
    pf_sb *sb = arg;
    block_signals(NULL);
    int rc = setns(sb->netns_fd, CLONE_NEWNET) < 0 ? -errno : 0;
    pthread_mutex_lock(&sb->pool_mu);
    sb->ns_err = rc;
    sb->ns_ready = true;
    pthread_cond_broadcast(&sb->pool_cv);
    if (rc < 0) {
        pthread_mutex_unlock(&sb->pool_mu);
        return NULL;
    }
    for (;;) {
        while (!sb->stop && sb->pool_n >= sb->pool_target)
            pthread_cond_wait(&sb->pool_cv, &sb->pool_mu);
        if (sb->stop)
            break;
        pthread_mutex_unlock(&sb->pool_mu);
        int fd = ns_socket();
        if (fd < 0) {
            SBX_LOG_ERRNO(SBX_LOG_WARN, COMP, fd, "socket in sandbox failed key=%s", sb->key);
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        pthread_mutex_lock(&sb->pool_mu);
        if (fd < 0)
            continue;
        sb->pool[sb->pool_n++] = fd;
        if (sb->want_wake) {
            sb->want_wake = false;
            pthread_mutex_unlock(&sb->pool_mu);
            wake(sb->f);
            pthread_mutex_lock(&sb->pool_mu);
        }
    }
    pthread_mutex_unlock(&sb->pool_mu);
    return NULL;
}

/* Takes a socket from sb's pool: fd, or -EAGAIN (the netns thread will wake the relay thread
 * when it has one). */
static int pool_take(pf_sb *sb)
{
    int fd = -EAGAIN;
    pthread_mutex_lock(&sb->pool_mu);
    if (sb->pool_n > 0) {
        fd = sb->pool[--sb->pool_n];
        if (sb->pool_n <= sb->pool_target / 2)
            pthread_cond_signal(&sb->pool_cv);
    } else {
        sb->want_wake = true;
        pthread_cond_signal(&sb->pool_cv);
    }
    pthread_mutex_unlock(&sb->pool_mu);
    return fd;
}

static void sb_free(pf_sb *sb)
{
    if (!sb)
        return;
    if (sb->thr_started) {
        pthread_mutex_lock(&sb->pool_mu);
        sb->stop = true;
        pthread_cond_broadcast(&sb->pool_cv);
        pthread_mutex_unlock(&sb->pool_mu);
        pthread_join(sb->thr, NULL);
    }
    for (unsigned i = 0; i < sb->pool_n; i++)
        close(sb->pool[i]);
    pf_listener *l = sb->listeners;
    while (l) {
        pf_listener *next = l->next;
        if (l->fd >= 0)
            close(l->fd);
        free(l);
        l = next;
    }
    if (sb->netns_fd >= 0)
        close(sb->netns_fd);
    pthread_mutex_destroy(&sb->pool_mu);
    pthread_cond_destroy(&sb->pool_cv);
    free(sb);
}

/* Creates the record of a sandbox and starts its netns thread (waits until it is in the
 * namespace). */
static int sb_new(sbx_portfwd *f, const char *key, int netns_fd, const struct stat *nst,
                  pf_sb **out)
{
    pf_sb *sb = calloc(1, sizeof *sb);
    if (!sb)
        return -ENOMEM;
    snprintf(sb->key, sizeof sb->key, "%s", key);
    sb->f = f;
    sb->ns_dev = nst->st_dev;
    sb->ns_ino = nst->st_ino;
    sb->pool_target = f->cfg.spare_sockets;
    dl_init(&sb->conns);
    dl_init(&sb->waitq);
    pthread_mutex_init(&sb->pool_mu, NULL);
    pthread_cond_init(&sb->pool_cv, NULL);
    sb->netns_fd = fcntl(netns_fd, F_DUPFD_CLOEXEC, 3);
    if (sb->netns_fd < 0) {
        int rc = -errno;
        sb_free(sb);
        return rc;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int rc = -pthread_create(&sb->thr, &attr, ns_main, sb);
    pthread_attr_destroy(&attr);
    if (rc < 0) {
        sb_free(sb);
        return rc;
    }
    sb->thr_started = true;
    pthread_mutex_lock(&sb->pool_mu);
    while (!sb->ns_ready)
        pthread_cond_wait(&sb->pool_cv, &sb->pool_mu);
    rc = sb->ns_err;
    pthread_mutex_unlock(&sb->pool_mu);
    if (rc < 0) {
        SBX_LOG_ERRNO(SBX_LOG_WARN, COMP, rc, "setns into sandbox failed key=%s", key);
        sb_free(sb);
        return rc;
    }
    *out = sb;
    return 0;
}

/* ---- pipes ------------------------------------------------------------------------------- */

static int pipe_get(sbx_portfwd *f, int p[2], uint32_t *cap)
{
    if (f->npipe_cache > 0) {
        f->npipe_cache--;
        p[0] = f->pipe_cache[f->npipe_cache][0];
        p[1] = f->pipe_cache[f->npipe_cache][1];
        *cap = f->pipe_cache_cap[f->npipe_cache];
        return 0;
    }
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0)
        return -errno;
    int sz = fcntl(p[1], F_SETPIPE_SZ, (int)f->cfg.pipe_bytes);
    if (sz < 0)
        sz = fcntl(p[1], F_GETPIPE_SZ);
    *cap = sz > 0 ? (uint32_t)sz : 65536u;
    return 0;
}

/* Returns a pipe to the cache when it is empty, else closes it. */
static void pipe_put(sbx_portfwd *f, int p[2], uint32_t inpipe, uint32_t cap)
{
    if (p[0] < 0)
        return;
    if (inpipe == 0 && f->npipe_cache < PIPE_CACHE_MAX) {
        f->pipe_cache[f->npipe_cache][0] = p[0];
        f->pipe_cache[f->npipe_cache][1] = p[1];
        f->pipe_cache_cap[f->npipe_cache] = cap;
        f->npipe_cache++;
    } else {
        close(p[0]);
        close(p[1]);
    }
    p[0] = p[1] = -1;
}

/* ---- connections (relay thread) ----------------------------------------------------------- */

static void set_rst_on_close(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

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
    for (int s = 0; s < 2; s++) {
        if (c->fd[s] >= 0) {
            if (reset)
                set_rst_on_close(c->fd[s]);
            close(c->fd[s]);
            c->fd[s] = -1;
        }
        pipe_put(f, c->pipe[s], c->inpipe[s], c->pipecap[s]);
        free(c->buf[s]);
        c->buf[s] = NULL;
    }
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

static int ep_add(sbx_portfwd *f, int fd, ep_tag *tag, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = tag};
    return epoll_ctl(f->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

/* Moves what can be moved in direction d without blocking. Returns false when the connection
 * was closed. */
static bool pump(sbx_portfwd *f, pf_conn *c, int d)
{
    int src = c->fd[d], dst = c->fd[1 - d];
    for (;;) {
        bool progress = false;
        if (!c->eof[d] && c->inpipe[d] < c->pipecap[d]) {
            ssize_t n;
            if (c->buf[d]) {
                if (c->head[d] + c->inpipe[d] == c->pipecap[d]) {
                    memmove(c->buf[d], c->buf[d] + c->head[d], c->inpipe[d]);
                    c->head[d] = 0;
                }
                uint32_t tail = c->head[d] + c->inpipe[d];
                n = recv(src, c->buf[d] + tail, c->pipecap[d] - tail, MSG_DONTWAIT);
            } else {
                n = splice(src, NULL, c->pipe[d][1], NULL, c->pipecap[d] - c->inpipe[d],
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            }
            if (n > 0) {
                c->inpipe[d] += (uint32_t)n;
                progress = true;
            } else if (n == 0) {
                c->eof[d] = true;
                progress = true;
            } else if (errno != EAGAIN && errno != EINTR) {
                conn_fail(f, c, errno, "read");
                return false;
            }
        }
        if (c->inpipe[d] > 0) {
            ssize_t n;
            if (c->buf[d])
                n = send(dst, c->buf[d] + c->head[d], c->inpipe[d], MSG_DONTWAIT | MSG_NOSIGNAL);
            else
                n = splice(c->pipe[d][0], NULL, dst, NULL, c->inpipe[d],
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n > 0) {
                c->inpipe[d] -= (uint32_t)n;
                c->head[d] = c->inpipe[d] ? c->head[d] + (uint32_t)n : 0;
                if (d == 0)
                    ATOMIC_ADD(&c->l->bytes_in, (uint64_t)n);
                else
                    ATOMIC_ADD(&c->l->bytes_out, (uint64_t)n);
                progress = true;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                conn_fail(f, c, errno, "write");
                return false;
            }
        }
        if (c->eof[d] && c->inpipe[d] == 0 && !c->shut[d]) {
            c->shut[d] = true;
            if (shutdown(dst, SHUT_WR) < 0 && errno != ENOTCONN) {
                conn_fail(f, c, errno, "shutdown");
                return false;
            }
            if (c->shut[1 - d]) {
                conn_close(f, c, false);
                return false;
            }
        }
        if (!progress)
            return true;
    }
}

static void conn_relay(sbx_portfwd *f, pf_conn *c)
{
    for (int d = 0; d < 2; d++) {
        if (f->cfg.copy) {
            c->pipecap[d] = f->cfg.pipe_bytes;
            if (!(c->buf[d] = malloc(c->pipecap[d]))) {
                conn_fail(f, c, ENOMEM, "buffer");
                return;
            }
            continue;
        }
        if (pipe_get(f, c->pipe[d], &c->pipecap[d]) < 0) {
            conn_fail(f, c, errno, "pipe");
            return;
        }
    }
    c->state = C_RELAY;
    if (pump(f, c, 0))
        pump(f, c, 1);
}

static void conn_connect(sbx_portfwd *f, pf_conn *c, int fd)
{
    c->fd[1] = fd;
    if (ep_add(f, fd, &c->ep[1], EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) < 0) {
        conn_fail(f, c, errno, "epoll");
        return;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(c->l->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
        conn_relay(f, c);
    } else if (errno == EINPROGRESS) {
        c->state = C_CONNECTING;
        c->deadline_ms = now_ms() + f->cfg.connect_timeout_ms;
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
        if (getsockopt(c->fd[1], SOL_SOCKET, SO_ERROR, &err, &len) < 0)
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
        getsockopt(c->fd[side], SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            conn_fail(f, c, err, "socket");
            return;
        }
    }
    /* readable/hang-up: direction side (it is the source); writable: the other direction */
    if ((ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && !pump(f, c, side))
        return;
    if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        pump(f, c, 1 - side);
}

static void refuse(pf_listener *l, int fd)
{
    ATOMIC_ADD(&l->refused, 1); /* before the client can see the reset */
    set_rst_on_close(fd);
    close(fd);
}

static void on_accept(sbx_portfwd *f, pf_listener *l)
{
    pf_sb *sb = l->sb;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if ((errno == EMFILE || errno == ENFILE) && f->spare_fd >= 0) {
                /* out of fds: drop one pending connection so the listener does not spin */
                uint64_t t = now_ms();
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
                continue;
            }
            return; /* EAGAIN (or an error we cannot act on: level-triggered, retried) */
        }
        ATOMIC_ADD(&l->accepted, 1);
        if (sb->nconns >= f->cfg.max_conns) {
            refuse(l, fd);
            continue;
        }
        pf_conn *c = calloc(1, sizeof *c);
        if (!c) {
            refuse(l, fd);
            continue;
        }
        c->ep[0] = (ep_tag){EP_CONN, 0};
        c->ep[1] = (ep_tag){EP_CONN, 1};
        c->fd[0] = fd;
        c->fd[1] = -1;
        c->pipe[0][0] = c->pipe[0][1] = c->pipe[1][0] = c->pipe[1][1] = -1;
        c->l = l;
        c->sb = sb;
        c->state = C_WAIT_SOCK;
        dl_push(&sb->conns, &c->sb_link);
        sb->nconns++;
        ATOMIC_ADD(&l->active, 1);
        if (ep_add(f, fd, &c->ep[0], EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) < 0) {
            conn_fail(f, c, errno, "epoll");
            continue;
        }
        int ufd = dl_empty(&sb->waitq) ? pool_take(sb) : -EAGAIN;
        if (ufd >= 0) {
            conn_connect(f, c, ufd);
        } else {
            dl_push(&sb->waitq, &c->q_link);
            if (!sb->on_starved) {
                sb->on_starved = true;
                dl_push(&f->starved, &sb->starved_link);
            }
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
            int fd = pool_take(sb);
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
static void close_sb_conns(sbx_portfwd *f, pf_sb *sb)
{
    for (pf_listener *l = sb->listeners; l; l = l->next) {
        if (l->fd >= 0) {
            close(l->fd);
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
            close_sb_conns(f, c->sb);
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

static void free_zombies(sbx_portfwd *f)
{
    while (f->zombies) {
        pf_conn *c = f->zombies;
        f->zombies = c->zombie_next;
        free(c);
    }
}

static void *relay_main(void *arg)
{
    sbx_portfwd *f = arg;
    block_signals(NULL);
    struct epoll_event evs[EVENTS_MAX];
    bool running = true;
    while (running) {
        int timeout = -1;
        if (!dl_empty(&f->connecting)) {
            pf_conn *c = DL_ENTRY(f->connecting.next, pf_conn, q_link);
            uint64_t now = now_ms();
            timeout = c->deadline_ms > now ? (int)(c->deadline_ms - now) : 0;
        }
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
            expire_connecting(f, now_ms());
        free_zombies(f);
    }
    return NULL;
}

/* Queues a command for the relay thread and waits until it ran. */
static void run_on_relay(sbx_portfwd *f, int op, pf_sb *sb)
{
    pf_cmd cmd = {.op = op, .sb = sb};
    pthread_mutex_lock(&f->mu);
    *f->cmds_tail = &cmd;
    f->cmds_tail = &cmd.next;
    pthread_mutex_unlock(&f->mu);
    wake(f);
    pthread_mutex_lock(&f->mu);
    while (!cmd.done)
        pthread_cond_wait(&f->cmd_cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
}

/* ---- public API ---------------------------------------------------------------------------- */

static int parse_host(sbx_portfwd *f, const char *host)
{
    char buf[INET6_ADDRSTRLEN + 2];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        if (n - 2 >= sizeof buf)
            return -EINVAL;
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
    } else {
        if (n >= sizeof buf)
            return -EINVAL;
        memcpy(buf, host, n + 1);
    }
    memset(&f->bind_addr, 0, sizeof f->bind_addr);
    if (inet_pton(AF_INET, buf, &f->bind_addr.v4.sin_addr) == 1) {
        f->family = AF_INET;
        f->bind_addr.v4.sin_family = AF_INET;
        f->bind_len = sizeof f->bind_addr.v4;
    } else if (inet_pton(AF_INET6, buf, &f->bind_addr.v6.sin6_addr) == 1) {
        f->family = AF_INET6;
        f->bind_addr.v6.sin6_family = AF_INET6;
        f->bind_len = sizeof f->bind_addr.v6;
    } else {
        return -EINVAL;
    }
    memcpy(f->host, buf, strlen(buf) + 1);
    return 0;
}

int sbx_portfwd_create(const sbx_portfwd_cfg *cfg, sbx_portfwd **out)
{
    sbx_portfwd *f = calloc(1, sizeof *f);
    if (!f)
        return -ENOMEM;
    if (cfg)
        f->cfg = *cfg;
    if (!f->cfg.max_conns)
        f->cfg.max_conns = 512;
    if (!f->cfg.max_ports)
        f->cfg.max_ports = 64;
    if (!f->cfg.pipe_bytes)
        f->cfg.pipe_bytes = 256 * 1024;
    if (f->cfg.pipe_bytes > 16u * 1024 * 1024)
        f->cfg.pipe_bytes = 16u * 1024 * 1024;
    if (!f->cfg.connect_timeout_ms)
        f->cfg.connect_timeout_ms = 10000;
    if (!f->cfg.spare_sockets)
        f->cfg.spare_sockets = 4;
    if (f->cfg.spare_sockets > POOL_MAX)
        f->cfg.spare_sockets = POOL_MAX;
    f->epfd = f->wakefd = f->spare_fd = -1;
    int rc = parse_host(f, f->cfg.bind_host ? f->cfg.bind_host : "127.0.0.1");
    if (rc < 0) {
        free(f);
        return rc;
    }
    f->cfg.bind_host = NULL; /* not kept: f->host is the copy */
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cmd_cv, NULL);
    f->cmds_tail = &f->cmds;
    dl_init(&f->connecting);
    dl_init(&f->starved);
    f->wake_ep.kind = EP_WAKE;
    f->epfd = epoll_create1(EPOLL_CLOEXEC);
    f->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    f->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (f->epfd < 0 || f->wakefd < 0) {
        rc = -errno;
        goto out_free;
    }
    if ((rc = ep_add(f, f->wakefd, &f->wake_ep, EPOLLIN)) < 0)
        goto out_free;
    sigset_t old;
    block_signals(&old);
    rc = -pthread_create(&f->thr, NULL, relay_main, f);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc < 0)
        goto out_free;
    f->thr_started = true;
    *out = f;
    SBX_LOG_INFO(COMP, "forwarder started bind=%s max_conns=%u pipe_bytes=%u", f->host,
                 f->cfg.max_conns, f->cfg.pipe_bytes);
    return 0;

out_free:
    sbx_portfwd_destroy(f);
    return rc;
}

void sbx_portfwd_destroy(sbx_portfwd *f)
{
    if (!f)
        return;
    if (f->thr_started) {
        run_on_relay(f, CMD_STOP, NULL);
        pthread_join(f->thr, NULL);
    }
    /* the relay thread is gone: everything is ours */
    pf_sb *sb = f->sbs;
    while (sb) {
        pf_sb *next = sb->next;
        close_sb_conns(f, sb);
        sb_free(sb);
        sb = next;
    }
    free_zombies(f);
    for (unsigned i = 0; i < f->npipe_cache; i++) {
        close(f->pipe_cache[i][0]);
        close(f->pipe_cache[i][1]);
    }
    if (f->epfd >= 0)
        close(f->epfd);
    if (f->wakefd >= 0)
        close(f->wakefd);
    if (f->spare_fd >= 0)
        close(f->spare_fd);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cmd_cv);
    free(f);
}

const char *sbx_portfwd_bind_host(const sbx_portfwd *f)
{
    return f->host;
}

int sbx_portfwd_url(const sbx_portfwd *f, uint16_t host_port, char *buf, size_t len)
{
    const char *fmt = f->family == AF_INET6 ? "http://[%s]:%u/" : "http://%s:%u/";
    int n = snprintf(buf, len, fmt, f->host, (unsigned)host_port);
    if (n < 0 || (size_t)n >= len)
        return -ENOSPC;
    return n;
}

static bool valid_key(const char *key)
{
    if (!key)
        return false;
    size_t n = strnlen(key, KEY_MAX + 1);
    return n >= 1 && n <= KEY_MAX;
}

static pf_sb *find_sb(sbx_portfwd *f, const char *key)
{
    for (pf_sb *sb = f->sbs; sb; sb = sb->next)
        if (strcmp(sb->key, key) == 0)
            return sb;
    return NULL;
}

static int listen_on(sbx_portfwd *f, uint16_t *host_port)
{
    int fd = socket(f->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    tune_socket(fd); /* inherited by accept() */
    if (f->family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    union {
        struct sockaddr_in v4;
        struct sockaddr_in6 v6;
    } a;
    socklen_t alen = f->bind_len;
    memcpy(&a, &f->bind_addr, alen);
    if (bind(fd, (struct sockaddr *)&a, alen) < 0 || listen(fd, LISTEN_BACKLOG) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    *host_port = ntohs(f->family == AF_INET6 ? a.v6.sin6_port : a.v4.sin_port);
    return fd;
}

int sbx_portfwd_expose(sbx_portfwd *f, const char *key, int netns_fd, uint16_t port,
                       uint16_t *host_port)
{
    if (!f || !valid_key(key) || port == 0 || !host_port || netns_fd < 0)
        return -EINVAL;
    struct stat nst;
    if (fstat(netns_fd, &nst) < 0)
        return -errno;
    int rc = 0;
    pthread_mutex_lock(&f->mu);
    pf_sb *sb = find_sb(f, key);
    if (sb) {
        if (sb->ns_dev != nst.st_dev || sb->ns_ino != nst.st_ino) {
            rc = -ESTALE;
            goto out_unlock;
        }
        for (pf_listener *l = sb->listeners; l; l = l->next) {
            if (l->port == port) {
                *host_port = l->host_port;
                goto out_unlock;
            }
        }
        if (sb->nports >= f->cfg.max_ports) {
            rc = -ENOSPC;
            goto out_unlock;
        }
    } else {
        if ((rc = sb_new(f, key, netns_fd, &nst, &sb)) < 0)
            goto out_unlock;
        sb->next = f->sbs;
        f->sbs = sb;
    }
    pf_listener *l = calloc(1, sizeof *l);
    if (!l) {
        rc = -ENOMEM;
        goto out_unlock;
    }
    l->ep.kind = EP_LISTENER;
    l->port = port;
    l->sb = sb;
    if ((l->fd = listen_on(f, &l->host_port)) < 0) {
        rc = l->fd;
        free(l);
        goto out_unlock;
    }
    pf_listener **tail = &sb->listeners;
    while (*tail)
        tail = &(*tail)->next;
    *tail = l;
    sb->nports++;
    /* from here the relay thread may accept on it; l and sb are fully set up */
    if ((rc = ep_add(f, l->fd, &l->ep, EPOLLIN)) < 0) {
        /* leave it listed (closed) so the list stays simple: it is freed with the sandbox */
        close(l->fd);
        l->fd = -1;
        goto out_unlock;
    }
    *host_port = l->host_port;
    SBX_LOG_INFO(COMP, "exposed key=%s port=%u host=%s host_port=%u", key, (unsigned)port, f->host,
                 (unsigned)l->host_port);
out_unlock:
    pthread_mutex_unlock(&f->mu);
    return rc;
}

int sbx_portfwd_expose_pid(sbx_portfwd *f, const char *key, pid_t pid, uint16_t port,
                           uint16_t *host_port)
{
    if (pid <= 0)
        return -EINVAL;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/net", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? -ESRCH : -errno;
    int rc = sbx_portfwd_expose(f, key, fd, port, host_port);
    close(fd);
    return rc;
}

int sbx_portfwd_close_sandbox(sbx_portfwd *f, const char *key)
{
    if (!f || !valid_key(key))
        return -ENOENT;
    pthread_mutex_lock(&f->mu);
    pf_sb **pp = &f->sbs;
    while (*pp && strcmp((*pp)->key, key) != 0)
        pp = &(*pp)->next;
    pf_sb *sb = *pp;
    if (sb)
        *pp = sb->next;
    pthread_mutex_unlock(&f->mu);
    if (!sb)
        return -ENOENT;
    run_on_relay(f, CMD_CLOSE_SB, sb);
    int n = (int)sb->nports;
    SBX_LOG_INFO(COMP, "closed sandbox ports key=%s ports=%d", key, n);
    sb_free(sb);
    return n;
}

int sbx_portfwd_list(sbx_portfwd *f, const char *key, sbx_portfwd_port *out, size_t max)
{
    if (!f || !valid_key(key))
        return 0;
    int n = 0;
    pthread_mutex_lock(&f->mu);
    pf_sb *sb = find_sb(f, key);
    for (pf_listener *l = sb ? sb->listeners : NULL; l; l = l->next) {
        if (l->fd < 0)
            continue;
        if ((size_t)n < max) {
            sbx_portfwd_port *p = &out[n];
            p->port = l->port;
            p->host_port = l->host_port;
            p->active = ATOMIC_LOAD(&l->active);
            p->accepted = ATOMIC_LOAD(&l->accepted);
            p->refused = ATOMIC_LOAD(&l->refused);
            p->failed = ATOMIC_LOAD(&l->failed);
            p->bytes_in = ATOMIC_LOAD(&l->bytes_in);
            p->bytes_out = ATOMIC_LOAD(&l->bytes_out);
        }
        n++;
    }
    pthread_mutex_unlock(&f->mu);
    return n;
}
