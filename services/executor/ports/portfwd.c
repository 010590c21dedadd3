/* portfwd.c: the port forwarder's public API (see portfwd.h): create and destroy, the bind
 * address and URLs, exposing a port (a listener on the bind host, the sandbox's record and
 * netns thread on first use), closing a sandbox's ports, and the per-port counters. The relay
 * thread (portfwd_relay.c) does the forwarding; the netns threads (portfwd_ns.c) make the
 * sockets inside the sandboxes.
 *
 * Threads: any caller; registry changes under f->mu, teardown through relay commands. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "portfwd_int.h"

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

static void apply_defaults(sbx_portfwd_cfg *c)
{
    if (!c->max_conns)
        c->max_conns = 512;
    if (!c->max_ports)
        c->max_ports = 64;
    if (!c->pipe_bytes)
        c->pipe_bytes = 256 * 1024;
    if (c->pipe_bytes > 16u * 1024 * 1024)
        c->pipe_bytes = 16u * 1024 * 1024;
    if (!c->connect_timeout_ms)
        c->connect_timeout_ms = 10000;
    if (!c->spare_sockets)
        c->spare_sockets = 4;
    if (c->spare_sockets > POOL_MAX)
        c->spare_sockets = POOL_MAX;
}

int sbx_portfwd_create(const sbx_portfwd_cfg *cfg, sbx_portfwd **out)
{
    sbx_portfwd *f = calloc(1, sizeof *f);
    if (!f)
        return -ENOMEM;
    if (cfg)
        f->cfg = *cfg;
    apply_defaults(&f->cfg);
    f->epfd = f->wakefd = f->spare_fd = -1;
    int rc = parse_host(f, f->cfg.bind_host ? f->cfg.bind_host : "127.0.0.1");
    if (rc < 0) {
        free(f);
        return rc;
    }
    f->cfg.bind_host = NULL; /* not kept: f->host is the copy */
    sbx_relay_pipes_init(&f->pipes, f->cfg.pipe_bytes);
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
    if ((rc = sbx__pf_ep_add(f, f->wakefd, &f->wake_ep, EPOLLIN)) < 0)
        goto out_free;
    sigset_t old;
    sbx__pf_block_signals(&old);
    rc = -pthread_create(&f->thr, NULL, sbx__pf_relay_main, f);
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
        sbx__pf_run_on_relay(f, CMD_STOP, NULL);
        pthread_join(f->thr, NULL);
    }
    /* the relay thread is gone: everything is ours */
    pf_sb *sb = f->sbs;
    while (sb) {
        pf_sb *next = sb->next;
        sbx__pf_close_sb_conns(f, sb);
        sbx__pf_sb_free(sb);
        sb = next;
    }
    sbx__pf_free_zombies(f);
    sbx_relay_pipes_free(&f->pipes);
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
    sbx__pf_tune_socket(fd); /* inherited by accept() */
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

/* The sandbox record of key (created with its netns thread on first use), checked to be the
 * same namespace (caller holds f->mu). */
static int sb_get(sbx_portfwd *f, const char *key, int netns_fd, const struct stat *nst,
                  pf_sb **out)
{
    pf_sb *sb = find_sb(f, key);
    if (sb) {
        *out = sb;
        return sb->ns_dev != nst->st_dev || sb->ns_ino != nst->st_ino ? -ESTALE : 0;
    }
    int rc = sbx__pf_sb_new(f, key, netns_fd, nst, &sb);
    if (rc < 0)
        return rc;
    sb->next = f->sbs;
    f->sbs = sb;
    *out = sb;
    return 0;
}

/* A new listener for port, appended to sb's list and handed to the relay thread (caller holds
 * f->mu). */
static int add_listener(sbx_portfwd *f, pf_sb *sb, uint16_t port, uint16_t *host_port)
{
    pf_listener *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->ep.kind = EP_LISTENER;
    l->port = port;
    l->sb = sb;
    if ((l->fd = listen_on(f, &l->host_port)) < 0) {
        int rc = l->fd;
        free(l);
        return rc;
    }
    pf_listener **tail = &sb->listeners;
    while (*tail)
        tail = &(*tail)->next;
    *tail = l;
    sb->nports++;
    /* from here the relay thread may accept on it; l and sb are fully set up */
    int rc = sbx__pf_ep_add(f, l->fd, &l->ep, EPOLLIN);
    if (rc < 0) {
        /* leave it listed (closed) so the list stays simple: it is freed with the sandbox */
        close(l->fd);
        l->fd = -1;
        return rc;
    }
    *host_port = l->host_port;
    SBX_LOG_INFO(COMP, "exposed key=%s port=%u host=%s host_port=%u", sb->key, (unsigned)port,
                 f->host, (unsigned)l->host_port);
    return 0;
}

int sbx_portfwd_expose(sbx_portfwd *f, const char *key, int netns_fd, uint16_t port,
                       uint16_t *host_port)
{
    if (!f || !valid_key(key) || port == 0 || !host_port || netns_fd < 0)
        return -EINVAL;
    struct stat nst;
    if (fstat(netns_fd, &nst) < 0)
        return -errno;
    pthread_mutex_lock(&f->mu);
    pf_sb *sb = NULL;
    int rc = sb_get(f, key, netns_fd, &nst, &sb);
    pf_listener *l = rc == 0 ? sb->listeners : NULL;
    while (l && l->port != port)
        l = l->next;
    if (l)
        *host_port = l->host_port; /* already exposed */
    else if (rc == 0 && sb->nports >= f->cfg.max_ports)
        rc = -ENOSPC;
    else if (rc == 0)
        rc = add_listener(f, sb, port, host_port);
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
    sbx__pf_run_on_relay(f, CMD_CLOSE_SB, sb);
    int n = (int)sb->nports;
    SBX_LOG_INFO(COMP, "closed sandbox ports key=%s ports=%d", key, n);
    sbx__pf_sb_free(sb);
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
