/* relay.c: the two-way splice relay of a pair of sockets (see relay.h), shared by the port
 * forwarder and the egress proxies.
 *
 * Threads: the caller's loop thread only. */
#include "relay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/epoll.h>
#include <unistd.h>

void sbx_relay_pipes_init(sbx_relay_pipes *pc, uint32_t pipe_bytes)
{
    memset(pc, 0, sizeof *pc);
    pc->want = pipe_bytes ? pipe_bytes : 256u * 1024;
}

void sbx_relay_pipes_free(sbx_relay_pipes *pc)
{
    while (pc->n > 0) {
        pc->n--;
        close(pc->fds[pc->n][0]);
        close(pc->fds[pc->n][1]);
    }
}

static int pipe_get(sbx_relay_pipes *pc, int p[2], uint32_t *cap)
{
    if (pc->n > 0) {
        pc->n--;
        p[0] = pc->fds[pc->n][0];
        p[1] = pc->fds[pc->n][1];
        *cap = pc->cap[pc->n];
        return 0;
    }
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0)
        return -errno;
    int sz = fcntl(p[1], F_SETPIPE_SZ, (int)pc->want);
    if (sz < 0)
        sz = fcntl(p[1], F_GETPIPE_SZ);
    *cap = sz > 0 ? (uint32_t)sz : 65536u;
    return 0;
}

/* Returns a pipe to the cache when it is empty, else closes it. */
static void pipe_put(sbx_relay_pipes *pc, int p[2], uint32_t inpipe, uint32_t cap)
{
    if (p[0] < 0)
        return;
    if (inpipe == 0 && pc->n < SBX_RELAY_PIPE_CACHE) {
        pc->fds[pc->n][0] = p[0];
        pc->fds[pc->n][1] = p[1];
        pc->cap[pc->n] = cap;
        pc->n++;
    } else {
        close(p[0]);
        close(p[1]);
    }
    p[0] = p[1] = -1;
}

void sbx_relay_set_rst(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

void sbx_relay_init(sbx_relay *r, int fd0, int fd1)
{
    memset(r, 0, sizeof *r);
    r->fd[0] = fd0;
    r->fd[1] = fd1;
    r->pipe[0][0] = r->pipe[0][1] = r->pipe[1][0] = r->pipe[1][1] = -1;
}

int sbx_relay_begin(sbx_relay *r, sbx_relay_pipes *pc, bool copy, uint32_t bytes)
{
    for (int d = 0; d < 2; d++) {
        if (copy) {
            r->cap[d] = bytes ? bytes : 256u * 1024;
            if (!(r->buf[d] = malloc(r->cap[d])))
                return -ENOMEM;
            continue;
        }
        int rc = pipe_get(pc, r->pipe[d], &r->cap[d]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Reads what fd[d] has into direction d's pipe (or buffer): 1 progress, 0 none, -errno. */
static int fill(sbx_relay *r, int d)
{
    if (r->eof[d] || r->inpipe[d] >= r->cap[d])
        return 0;
    ssize_t n;
    if (r->buf[d]) {
        if (r->head[d] + r->inpipe[d] == r->cap[d]) {
            memmove(r->buf[d], r->buf[d] + r->head[d], r->inpipe[d]);
            r->head[d] = 0;
        }
        uint32_t tail = r->head[d] + r->inpipe[d];
        n = recv(r->fd[d], r->buf[d] + tail, r->cap[d] - tail, MSG_DONTWAIT);
    } else {
        n = splice(r->fd[d], NULL, r->pipe[d][1], NULL, r->cap[d] - r->inpipe[d],
                   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    }
    if (n > 0)
        r->inpipe[d] += (uint32_t)n;
    else if (n == 0)
        r->eof[d] = true;
    else
        return errno == EAGAIN || errno == EINTR ? 0 : -errno;
    return 1;
}

/* Writes direction d's pipe (or buffer) into fd[1 - d]: 1 progress, 0 none, -errno. */
static int drain(sbx_relay *r, int d, uint64_t *moved)
{
    if (r->inpipe[d] == 0)
        return 0;
    int dst = r->fd[1 - d];
    ssize_t n;
    if (r->buf[d])
        n = send(dst, r->buf[d] + r->head[d], r->inpipe[d], MSG_DONTWAIT | MSG_NOSIGNAL);
    else
        n = splice(r->pipe[d][0], NULL, dst, NULL, r->inpipe[d], SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -errno;
    if (n == 0)
        return 0;
    r->inpipe[d] -= (uint32_t)n;
    r->head[d] = r->inpipe[d] ? r->head[d] + (uint32_t)n : 0;
    *moved += (uint64_t)n;
    return 1;
}

int sbx_relay_pump(sbx_relay *r, int d, uint64_t *moved, const char **what)
{
    for (;;) {
        int in = fill(r, d);
        if (in < 0) {
            *what = "read";
            return in;
        }
        int out = drain(r, d, moved);
        if (out < 0) {
            *what = "write";
            return out;
        }
        if (r->eof[d] && r->inpipe[d] == 0 && !r->shut[d]) {
            r->shut[d] = true;
            if (shutdown(r->fd[1 - d], SHUT_WR) < 0 && errno != ENOTCONN) {
                *what = "shutdown";
                return -errno;
            }
            if (r->shut[1 - d])
                return SBX_RELAY_DONE;
        }
        if (!in && !out)
            return SBX_RELAY_OPEN;
    }
}

void sbx_relay_close_fd(int epfd, int fd)
{
    if (fd < 0)
        return;
    if (epfd >= 0)
        epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL); /* ENOENT when it was never added: fine */
    close(fd);
}

void sbx_relay_end(sbx_relay *r, int epfd, sbx_relay_pipes *pc, bool reset)
{
    for (int s = 0; s < 2; s++) {
        if (r->fd[s] >= 0) {
            if (reset)
                sbx_relay_set_rst(r->fd[s]);
            sbx_relay_close_fd(epfd, r->fd[s]);
            r->fd[s] = -1;
        }
        pipe_put(pc, r->pipe[s], r->inpipe[s], r->cap[s]);
        free(r->buf[s]);
        r->buf[s] = NULL;
    }
}
