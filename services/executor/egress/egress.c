/* egress.c: sbx_egress's public API (see egress.h): the service (rules, loop and resolver
 * threads), each sandbox's record (policy, counters, proxies opened inside its network
 * namespace by a short-lived thread that setns()es there: a listening socket stays in the
 * namespace it was made in), the proxy environment of commands, and the metrics.
 *
 * Threads: any. A record's op_mu serialises its start / policy changes / stop (which may wait
 * for the loop); its mu guards the policy the loop reads. Never hold mu while waiting for the
 * loop. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include "egress_int.h"
#include "log.h"

const char *const sbx_egress_env[] = {
    "HTTP_PROXY=" SBX_EGRESS_HTTP_PROXY,
    "HTTPS_PROXY=" SBX_EGRESS_HTTP_PROXY,
    "http_proxy=" SBX_EGRESS_HTTP_PROXY,
    "https_proxy=" SBX_EGRESS_HTTP_PROXY,
    "ALL_PROXY=" SBX_EGRESS_SOCKS_PROXY,
    "all_proxy=" SBX_EGRESS_SOCKS_PROXY,
    "NO_PROXY=localhost,127.0.0.1,::1",
    "no_proxy=localhost,127.0.0.1,::1",
    NULL,
};

/* ---- the service -------------------------------------------------------------------------- */

static void apply_defaults(sbx_egress_cfg *c)
{
    if (!c->max_conns)
        c->max_conns = 256;
    if (!c->idle_timeout_s)
        c->idle_timeout_s = 300;
    if (!c->handshake_ms)
        c->handshake_ms = 30000;
    if (!c->connect_ms)
        c->connect_ms = 10000;
    if (!c->resolvers)
        c->resolvers = 8;
    if (c->resolvers > 64)
        c->resolvers = 64;
    if (!c->pipe_bytes)
        c->pipe_bytes = 256 * 1024;
    if (!c->http_port)
        c->http_port = 3128;
    if (!c->socks_port)
        c->socks_port = 1080;
}

/* Connections the executor proxies at once: each costs two sockets and two pipes. */
static unsigned total_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
        return 16384;
    if (rl.rlim_cur <= 2048)
        return 128;
    uint64_t n = (rl.rlim_cur - 1024) / 6;
    return n > 65536 ? 65536 : (unsigned)n;
}

int sbx_egress_new(const sbx_egress_cfg *cfg, sbx_egress **out, char *err, size_t errlen)
{
    *out = NULL;
    sbx_egress *e = calloc(1, sizeof *e);
    if (!e)
        return -ENOMEM;
    if (cfg)
        e->cfg = *cfg;
    apply_defaults(&e->cfg);
    e->cfg.allow_private = e->cfg.deny = NULL; /* not kept */
    e->cfg.service_addrs = NULL;
    e->cfg.n_service_addrs = 0;
    e->epfd = e->wakefd = e->spare_fd = -1;
    pthread_mutex_init(&e->cmd_mu, NULL);
    pthread_cond_init(&e->cmd_cv, NULL);
    e->cmds_tail = &e->cmds;
    sbx_relay_pipes_init(&e->pipes, e->cfg.pipe_bytes);
    e->max_total = total_limit();
    int rc = sbx_egress_policy_from_list(cfg ? cfg->deny : NULL, true, "--egress-deny",
                                         &e->rules.deny, err, errlen);
    if (rc == 0 && cfg)
        rc = sbx__eg_rules_open(&e->rules, cfg->allow_private, err, errlen);
    if (rc == 0 && cfg)
        rc = sbx__eg_rules_services(&e->rules, cfg->service_addrs, cfg->n_service_addrs, err,
                                    errlen);
    if (rc < 0)
        goto fail;
    sbx__eg_rules_self(&e->rules);
    e->wake_ep.kind = EP_WAKE;
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    e->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    e->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (e->epfd < 0 || e->wakefd < 0) {
        rc = -errno;
        snprintf(err, errlen, "egress: epoll/eventfd: %s", strerror(-rc));
        goto fail;
    }
    if ((rc = sbx__eg_ep_add(e, e->wakefd, &e->wake_ep, EPOLLIN)) < 0 ||
        (rc = sbx__eg_resolver_new(e->cfg.resolvers, e->wakefd, &e->res)) < 0) {
        snprintf(err, errlen, "egress: cannot start: %s", strerror(-rc));
        goto fail;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 512 * 1024);
    rc = -pthread_create(&e->thr, &attr, sbx__eg_loop_main, e);
    pthread_attr_destroy(&attr);
    if (rc < 0) {
        snprintf(err, errlen, "egress: cannot start the loop thread: %s", strerror(-rc));
        goto fail;
    }
    e->thr_started = true;
    SBX_LOG_INFO(COMP,
                 "egress proxies ready max_conns=%u idle_timeout_s=%u resolvers=%u "
                 "allow_private=%zu deny=%zu max_total=%u",
                 e->cfg.max_conns, e->cfg.idle_timeout_s, e->cfg.resolvers, e->rules.n_open,
                 sbx_egress_policy_count(e->rules.deny, true), e->max_total);
    *out = e;
    return 0;
fail:
    sbx_egress_free(e);
    return rc;
}

void sbx_egress_free(sbx_egress *e)
{
    if (!e)
        return;
    if (e->thr_started) {
        sbx__eg_run_on_loop(e, CMD_QUIT, NULL);
        pthread_join(e->thr, NULL);
    }
    sbx__eg_resolver_free(e->res);
    sbx__eg_rules_free(&e->rules);
    sbx_relay_pipes_free(&e->pipes);
    free(e->heap);
    if (e->epfd >= 0)
        close(e->epfd);
    if (e->wakefd >= 0)
        close(e->wakefd);
    if (e->spare_fd >= 0)
        close(e->spare_fd);
    pthread_mutex_destroy(&e->cmd_mu);
    pthread_cond_destroy(&e->cmd_cv);
    free(e);
}

void sbx_egress_metrics_write(FILE *out, void *arg)
{
    sbx_egress *e = arg;
    if (!e)
        return;
    fprintf(out,
            "# HELP sbx_egress_connections_total Proxy connections of sandboxes by decision "
            "(failed: allowed, but not resolved or not reachable, or a malformed request).\n"
            "# TYPE sbx_egress_connections_total counter\n"
            "sbx_egress_connections_total{decision=\"allowed\"} %llu\n"
            "sbx_egress_connections_total{decision=\"denied\"} %llu\n"
            "sbx_egress_connections_total{decision=\"failed\"} %llu\n"
            "# HELP sbx_egress_bytes_total Bytes relayed by the egress proxies (out: from "
            "sandboxes).\n"
            "# TYPE sbx_egress_bytes_total counter\n"
            "sbx_egress_bytes_total{direction=\"out\"} %llu\n"
            "sbx_egress_bytes_total{direction=\"in\"} %llu\n"
            "# HELP sbx_egress_active_connections Live proxy connections.\n"
            "# TYPE sbx_egress_active_connections gauge\n"
            "sbx_egress_active_connections %u\n"
            "# HELP sbx_egress_lookups_total Host names resolved for sandboxes (failed: no "
            "address).\n"
            "# TYPE sbx_egress_lookups_total counter\n"
            "sbx_egress_lookups_total{result=\"all\"} %llu\n"
            "sbx_egress_lookups_total{result=\"failed\"} %llu\n",
            (unsigned long long)EG_LOAD(&e->m_allowed), (unsigned long long)EG_LOAD(&e->m_denied),
            (unsigned long long)EG_LOAD(&e->m_failed), (unsigned long long)EG_LOAD(&e->m_bytes_out),
            (unsigned long long)EG_LOAD(&e->m_bytes_in), (unsigned)EG_LOAD(&e->m_active),
            (unsigned long long)EG_LOAD(&e->m_lookups),
            (unsigned long long)EG_LOAD(&e->m_lookup_fails));
}

/* ---- sandbox records ---------------------------------------------------------------------- */

typedef struct sb_ext {
    struct sbx_egress_sb sb;
    pthread_mutex_t op_mu;
} sb_ext;

static pthread_mutex_t *op_mu(sbx_egress_sb *s)
{
    return &((sb_ext *)s)->op_mu;
}

sbx_egress_sb *sbx_egress_sb_new(sbx_egress *e, const char *key, const char *label,
                                 sbx_egress_policy *p)
{
    sb_ext *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    sbx_egress_sb *s = &x->sb;
    char err[64];
    if (p)
        s->policy = sbx_egress_policy_ref(p);
    else if (sbx_egress_policy_new(NULL, 0, NULL, 0, "", &s->policy, err, sizeof err) < 0) {
        free(x);
        return NULL;
    }
    s->e = e;
    s->refs = 1;
    snprintf(s->key, sizeof s->key, "%s", key ? key : "");
    snprintf(s->label, sizeof s->label, "%s", label ? label : "");
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&x->op_mu, NULL);
    s->l[0].fd = s->l[1].fd = -1;
    eg_list_init(&s->conns);
    eg_list_init(&s->lookup_wait);
    return s;
}

void sbx__eg_sb_unref(sbx_egress_sb *s)
{
    if (!s || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    sbx_egress_policy_unref(s->policy);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(op_mu(s));
    free((sb_ext *)s);
}

typedef struct ns_job {
    int netns_fd;
    uint16_t port[2];
    int fd[2];
    int err;
} ns_job;

static int listen_on(uint16_t port, uint16_t *bound)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* sandbox-side connections are loopback: no pacing congestion control (BBR arms a timer
       per burst, which on loopback costs more than it saves); accepted sockets inherit it */
    if (setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, "cubic", 5) < 0)
        setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, "reno", 4);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 1024) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    *bound = ntohs(sa.sin_port);
    return fd;
}

/* The thread that makes the listeners inside the sandbox's network namespace. */
static void *ns_main(void *arg)
{
    ns_job *j = arg;
    if (j->netns_fd >= 0 && setns(j->netns_fd, CLONE_NEWNET) < 0) {
        j->err = -errno;
        return NULL;
    }
    for (int i = 0; i < 2; i++) {
        uint16_t bound = 0;
        int fd = listen_on(j->port[i], &bound);
        if (fd < 0) {
            j->err = fd;
            return NULL;
        }
        j->fd[i] = fd;
        j->port[i] = bound;
    }
    return NULL;
}

/* Opens the proxies (caller holds op_mu, not mu). */
static int open_proxies(sbx_egress_sb *s, int netns_fd)
{
    sbx_egress *e = s->e;
    ns_job j = {.netns_fd = netns_fd, .fd = {-1, -1}};
    j.port[0] = e->cfg.ephemeral_ports ? 0 : e->cfg.http_port;
    j.port[1] = e->cfg.ephemeral_ports ? 0 : e->cfg.socks_port;
    pthread_t t;
    int rc = -pthread_create(&t, NULL, ns_main, &j);
    if (rc < 0)
        return rc;
    pthread_join(t, NULL);
    if (j.err < 0) {
        for (int i = 0; i < 2; i++)
            if (j.fd[i] >= 0)
                close(j.fd[i]);
        SBX_LOG_ERRNO(SBX_LOG_WARN, COMP, j.err, "cannot open the proxies in sandbox=%s", s->key);
        return j.err;
    }
    for (int i = 0; i < 2; i++)
        s->l[i] = (eg_listener){.ep = {EP_LISTEN, 0},
                                .fd = j.fd[i],
                                .proto = i == 0 ? EG_HTTP_CONNECT : EG_SOCKS,
                                .sb = s};
    s->http_port = j.port[0];
    s->socks_port = j.port[1];
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED); /* the loop's */
    sbx__eg_run_on_loop(e, CMD_ADD_SB, s);
    pthread_mutex_lock(&s->mu);
    s->open = true;
    pthread_mutex_unlock(&s->mu);
    SBX_LOG_DEBUG(COMP, "proxies open sandbox=%s http=127.0.0.1:%u socks=127.0.0.1:%u", s->key,
                  (unsigned)s->http_port, (unsigned)s->socks_port);
    return 0;
}

int sbx_egress_sb_start(sbx_egress_sb *s, int netns_fd)
{
    pthread_mutex_lock(op_mu(s));
    int rc = 0;
    if (s->stopped)
        rc = -ESHUTDOWN;
    else if (!s->open && !sbx_egress_policy_empty(s->policy))
        rc = open_proxies(s, netns_fd);
    pthread_mutex_unlock(op_mu(s));
    return rc;
}

int sbx_egress_sb_set_policy(sbx_egress_sb *s, sbx_egress_policy *p, int netns_fd)
{
    pthread_mutex_lock(op_mu(s));
    int rc = 0;
    if (s->stopped)
        rc = -ESHUTDOWN;
    else if (!s->open && !sbx_egress_policy_empty(p))
        rc = open_proxies(s, netns_fd);
    if (rc == 0) {
        sbx_egress_policy *np = p ? sbx_egress_policy_ref(p) : NULL;
        char err[64];
        if (!np && sbx_egress_policy_new(NULL, 0, NULL, 0, "", &np, err, sizeof err) < 0)
            rc = -ENOMEM;
        if (np) {
            pthread_mutex_lock(&s->mu);
            sbx_egress_policy *old = s->policy;
            s->policy = np;
            pthread_mutex_unlock(&s->mu);
            sbx_egress_policy_unref(old);
        }
    }
    pthread_mutex_unlock(op_mu(s));
    return rc;
}

void sbx_egress_sb_stop(sbx_egress_sb *s)
{
    if (!s)
        return;
    pthread_mutex_lock(op_mu(s));
    if (!s->stopped) {
        pthread_mutex_lock(&s->mu);
        s->stopped = true;
        bool open = s->open;
        pthread_mutex_unlock(&s->mu);
        if (open)
            sbx__eg_run_on_loop(s->e, CMD_STOP_SB, s);
    }
    pthread_mutex_unlock(op_mu(s));
}

void sbx_egress_sb_free(sbx_egress_sb *s)
{
    if (!s)
        return;
    sbx_egress_sb_stop(s);
    sbx__eg_sb_unref(s);
}

sbx_egress_policy *sbx_egress_sb_policy(sbx_egress_sb *s)
{
    pthread_mutex_lock(&s->mu);
    sbx_egress_policy *p = sbx_egress_policy_ref(s->policy);
    pthread_mutex_unlock(&s->mu);
    return p;
}

bool sbx_egress_sb_proxied(sbx_egress_sb *s)
{
    if (!s)
        return false;
    pthread_mutex_lock(&s->mu);
    bool on = s->open && !s->stopped;
    pthread_mutex_unlock(&s->mu);
    return on;
}

void sbx_egress_sb_counters(sbx_egress_sb *s, sbx_egress_counters *c)
{
    memset(c, 0, sizeof *c);
    if (!s)
        return;
    c->allowed = EG_LOAD(&s->allowed);
    c->denied = EG_LOAD(&s->denied);
    c->failed = EG_LOAD(&s->failed);
    c->bytes_out = EG_LOAD(&s->bytes_out);
    c->bytes_in = EG_LOAD(&s->bytes_in);
    c->active = EG_LOAD(&s->active);
}

void sbx_egress_sb_ports(sbx_egress_sb *s, uint16_t *http, uint16_t *socks)
{
    pthread_mutex_lock(&s->mu);
    bool on = s->open && !s->stopped;
    pthread_mutex_unlock(&s->mu);
    *http = on ? s->http_port : 0;
    *socks = on ? s->socks_port : 0;
}
