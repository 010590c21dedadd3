/* conn.c: one proxy connection, from the sandbox's request to the relay (see egress_int.h):
 * read the request head (HTTP CONNECT / absolute URI, or a SOCKS5 greeting and request), decide
 * on the name (verdict.c), resolve it on the resolver threads, decide on each address, connect
 * to the first allowed one (the next on failure), send the proxy's reply and the request's
 * first bytes, then relay both ways with the splice relay until either side closes or the
 * connection idles out. Refusals are answered (403 / SOCKS 0x02, 502 / 504 for failures) and
 * the client is drained briefly so it reads the answer before the close. Each connection ends
 * in one log line with its decision, rule and bytes; counters go to the sandbox and service.
 *
 * Threads: the loop thread only. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "egress_int.h"
#include "log.h"

#define LINGER_MS 2000

static const char *proto_name(const eg_conn *c)
{
    return c->proto == EG_SOCKS             ? "socks"
           : c->req.kind == EG_HTTP_FORWARD ? "http"
           : c->req.kind == EG_HTTP_CONNECT ? "connect"
                                            : "http";
}

static void tune(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* No pacing congestion control on loopback (see egress.c listen_on). */
static void loopback_cc(int fd)
{
    if (setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, "cubic", 5) < 0)
        setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, "reno", 4);
}

/* At most LOG_PER_S decision lines per sandbox and second: a sandbox opening connections in a
 * loop cannot flood the executor's log. How many were left out is logged with the next line
 * after the window. */
#define LOG_PER_S 200
static bool log_ok(sbx_egress *e, sbx_egress_sb *sb)
{
    if (e->now - sb->log_window >= 1000) {
        if (sb->log_cut)
            SBX_LOG_INFO(COMP, "decision lines left out sandbox=%s project=%s count=%u limit=%d/s",
                         sb->key, sb->label, sb->log_cut, LOG_PER_S);
        sb->log_window = e->now;
        sb->log_n = sb->log_cut = 0;
    }
    if (sb->log_n < LOG_PER_S) {
        sb->log_n++;
        return true;
    }
    sb->log_cut++;
    return false;
}

/* ---- closing ------------------------------------------------------------------------------ */

void sbx__eg_conn_close(sbx_egress *e, eg_conn *c, bool reset)
{
    if (c->state == S_DEAD)
        return;
    sbx_egress_sb *sb = c->sb;
    if (c->counted && sbx_log_threshold <= SBX_LOG_INFO && log_ok(e, sb))
        SBX_LOG_INFO(COMP,
                     "connection sandbox=%s project=%s proto=%s dest=%s port=%u decision=allowed "
                     "rule=\"%s\" addr=%s bytes_out=%llu bytes_in=%llu duration_ms=%llu",
                     sb->key, sb->label, proto_name(c), c->req.host, (unsigned)c->req.port, c->rule,
                     c->addr, (unsigned long long)c->bytes[0], (unsigned long long)c->bytes[1],
                     (unsigned long long)(e->now - c->t_start));
    c->state = S_DEAD;
    sbx__eg_timer_del(e, c);
    eg_list_del(&c->sb_link);
    eg_list_del(&c->wait_link);
    if (c->lookup) {
        c->lookup->conn = NULL; /* the resolver's result is dropped when it arrives */
        c->lookup = NULL;
        sb->lookups--;
        sbx__eg_lookup_next(e, sb);
    }
    sb->nconns--;
    e->total--;
    EG_SUB(&sb->active, 1);
    EG_SUB(&e->m_active, 1);
    sbx_egress_policy_unref(c->policy);
    c->policy = NULL;
    sbx_relay_end(&c->rl, e->epfd, &e->pipes, reset);
    free(c->in);
    c->in = NULL;
    for (int s = 0; s < 2; s++) {
        free(c->wbuf[s]);
        c->wbuf[s] = NULL;
    }
    c->zombie_next = e->zombies;
    e->zombies = c;
}

/* ---- refusals ----------------------------------------------------------------------------- */

/* Drops the upstream side (if any) and switches to writing bytes to the client, then closing. */
static void refuse_with(sbx_egress *e, eg_conn *c, const void *bytes, size_t len)
{
    if (c->rl.fd[1] >= 0) {
        sbx_relay_close_fd(e->epfd, c->rl.fd[1]);
        c->rl.fd[1] = -1;
    }
    for (int s = 0; s < 2; s++) {
        free(c->wbuf[s]);
        c->wbuf[s] = NULL;
        c->wlen[s] = c->woff[s] = 0;
    }
    if (len && (c->wbuf[0] = malloc(len))) {
        memcpy(c->wbuf[0], bytes, len);
        c->wlen[0] = (uint32_t)len;
    }
    c->state = S_REFUSE;
    sbx__eg_timer_set(e, c, e->now + LINGER_MS);
    sbx__eg_conn_event(e, c, 0, EPOLLOUT);
}

/* A refusal line "sbx egress: HOST:PORT <what>" as the protocol answers it. */
static void answer(sbx_egress *e, eg_conn *c, int status, int socks_rep, const char *line)
{
    if (c->proto == EG_SOCKS) {
        uint8_t r[10];
        size_t n = socks_rep ? sbx__eg_socks_reply(r, socks_rep) : 0;
        refuse_with(e, c, r, n);
        return;
    }
    char buf[1024];
    int n = sbx__eg_http_reply(status, line, buf, sizeof buf);
    refuse_with(e, c, buf, n > 0 && (size_t)n < sizeof buf ? (size_t)n : 0);
}

static void dest_str(const eg_conn *c, char *buf, size_t len)
{
    bool v6 = c->req.literal && strchr(c->req.host, ':');
    snprintf(buf, len, "%s%s%s:%u", v6 ? "[" : "", c->req.host, v6 ? "]" : "",
             (unsigned)c->req.port);
}

static void deny(sbx_egress *e, eg_conn *c, const char *rule)
{
    EG_ADD(&c->sb->denied, 1);
    EG_ADD(&e->m_denied, 1);
    if (sbx_log_threshold <= SBX_LOG_INFO && log_ok(e, c->sb))
        SBX_LOG_INFO(COMP,
                     "connection sandbox=%s project=%s proto=%s dest=%s port=%u decision=denied "
                     "rule=\"%s\"",
                     c->sb->key, c->sb->label, proto_name(c), c->req.host, (unsigned)c->req.port,
                     rule);
    char d[300], line[600];
    dest_str(c, d, sizeof d);
    snprintf(line, sizeof line, "sbx egress: %s denied (%s)", d, rule);
    answer(e, c, 403, 0x02, line);
}

/* Allowed but not done: the name did not resolve, no address answered, or a bad request. */
static void fail(sbx_egress *e, eg_conn *c, int status, int socks_rep, const char *what)
{
    EG_ADD(&c->sb->failed, 1);
    EG_ADD(&e->m_failed, 1);
    char d[300] = "-", line[600];
    if (c->req.host[0])
        dest_str(c, d, sizeof d);
    if (sbx_log_threshold <= SBX_LOG_INFO && log_ok(e, c->sb))
        SBX_LOG_INFO(COMP,
                     "connection sandbox=%s project=%s proto=%s dest=%s port=%u decision=failed "
                     "reason=\"%s\"",
                     c->sb->key, c->sb->label, proto_name(c), c->req.host[0] ? c->req.host : "-",
                     (unsigned)c->req.port, what);
    if (c->req.host[0])
        snprintf(line, sizeof line, "sbx egress: %s %s", d, what);
    else
        snprintf(line, sizeof line, "sbx egress: %s", what);
    answer(e, c, status, socks_rep, line);
}

/* ---- writing what comes before the relay -------------------------------------------------- */

static void start_relay(sbx_egress *e, eg_conn *c);

/* Writes pending bytes of side s: 1 all written, 0 would block, -errno. */
static int flush_side(sbx_egress *e, eg_conn *c, int s)
{
    while (c->woff[s] < c->wlen[s]) {
        ssize_t n = send(c->rl.fd[s], c->wbuf[s] + c->woff[s], c->wlen[s] - c->woff[s],
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        c->woff[s] += (uint32_t)n;
        if (s == 1) {
            c->bytes[0] += (uint64_t)n;
            EG_ADD(&c->sb->bytes_out, (uint64_t)n);
            EG_ADD(&e->m_bytes_out, (uint64_t)n);
        }
    }
    return 1;
}

static void flush(sbx_egress *e, eg_conn *c)
{
    int a = flush_side(e, c, 0);
    int b = a < 0 ? 0 : flush_side(e, c, 1);
    if (a < 0 || b < 0) {
        sbx__eg_conn_close(e, c, true);
        return;
    }
    if (a && b)
        start_relay(e, c);
}

/* ---- relaying ----------------------------------------------------------------------------- */

/* Moves what can move in direction d; false when the connection was closed. */
static bool pump(sbx_egress *e, eg_conn *c, int d)
{
    uint64_t moved = 0;
    const char *what = NULL;
    int rc = sbx_relay_pump(&c->rl, d, &moved, &what);
    if (moved) {
        c->bytes[d] += moved;
        c->t_last = e->now;
        EG_ADD(d == 0 ? &c->sb->bytes_out : &c->sb->bytes_in, moved);
        EG_ADD(d == 0 ? &e->m_bytes_out : &e->m_bytes_in, moved);
    }
    if (rc < 0) {
        SBX_LOG_DEBUG(COMP, "connection reset sandbox=%s dest=%s what=%s err=%d", c->sb->key,
                      c->req.host, what, -rc);
        sbx__eg_conn_close(e, c, true);
        return false;
    }
    if (rc == SBX_RELAY_DONE) {
        sbx__eg_conn_close(e, c, false);
        return false;
    }
    return true;
}

static void start_relay(sbx_egress *e, eg_conn *c)
{
    for (int s = 0; s < 2; s++) {
        free(c->wbuf[s]);
        c->wbuf[s] = NULL;
    }
    int rc = sbx_relay_begin(&c->rl, &e->pipes, false, e->cfg.pipe_bytes);
    if (rc < 0) {
        sbx__eg_conn_close(e, c, true);
        return;
    }
    c->state = S_RELAY;
    c->t_last = e->now;
    sbx__eg_timer_set(e, c, e->now + (uint64_t)e->cfg.idle_timeout_s * 1000);
    if (pump(e, c, 0))
        pump(e, c, 1);
}

/* ---- connecting --------------------------------------------------------------------------- */

static void set_wbuf(eg_conn *c, int s, const void *a, size_t al, const void *b, size_t bl)
{
    if (!(al + bl))
        return;
    c->wbuf[s] = malloc(al + bl);
    if (!c->wbuf[s])
        return;
    if (al)
        memcpy(c->wbuf[s], a, al);
    if (bl)
        memcpy(c->wbuf[s] + al, b, bl);
    c->wlen[s] = (uint32_t)(al + bl);
}

static void connected(sbx_egress *e, eg_conn *c)
{
    size_t start = c->in_used + c->req.head_len;
    const char *rest = c->in + start;
    size_t nrest = c->in_len > start ? c->in_len - start : 0;
    if (c->proto == EG_SOCKS) {
        uint8_t r[10];
        set_wbuf(c, 0, r, sbx__eg_socks_reply(r, 0), NULL, 0);
        set_wbuf(c, 1, rest, nrest, NULL, 0);
    } else if (c->req.kind == EG_HTTP_CONNECT) {
        char r[64];
        int n = sbx__eg_http_reply(200, "", r, sizeof r);
        set_wbuf(c, 0, r, (size_t)n, NULL, 0);
        set_wbuf(c, 1, rest, nrest, NULL, 0);
    } else {
        char *head = NULL;
        size_t hl = 0;
        if (sbx__eg_http_rewrite(c->in + c->in_used, &c->req, &head, &hl) < 0) {
            fail(e, c, 400, 0, "request has folded header lines");
            return;
        }
        set_wbuf(c, 1, head, hl, rest, nrest);
        free(head);
    }
    free(c->in);
    c->in = NULL;
    c->state = S_FLUSH;
    sbx__eg_timer_set(e, c, e->now + (uint64_t)e->cfg.idle_timeout_s * 1000);
    flush(e, c);
}

/* Tries the next candidate address; all failed: 502 / 504. */
static void connect_next(sbx_egress *e, eg_conn *c)
{
    while (c->icand < c->ncand) {
        struct sockaddr_storage *sa = &c->cand[c->icand++];
        socklen_t sl =
            sa->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
        eg_addr a;
        sbx__eg_addr_from_sa((struct sockaddr *)sa, &a);
        sbx__eg_addr_str(&a, c->addr, sizeof c->addr);
        int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            c->last_err = errno;
            continue;
        }
        tune(fd);
        const char *sp = sbx__eg_special(&a);
        if (sp && strcmp(sp, "loopback") == 0)
            loopback_cc(fd); /* an opened loopback destination: as the sandbox side */
        c->rl.fd[1] = fd;
        if (sbx__eg_ep_add(e, fd, &c->ep[1], EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) < 0) {
            c->last_err = errno;
            close(fd);
            c->rl.fd[1] = -1;
            continue;
        }
        if (connect(fd, (struct sockaddr *)sa, sl) == 0) {
            connected(e, c);
            return;
        }
        if (errno == EINPROGRESS) {
            c->state = S_CONNECTING;
            uint64_t d = e->now + e->cfg.connect_ms;
            sbx__eg_timer_set(e, c, d < c->hs_deadline ? d : c->hs_deadline);
            return;
        }
        c->last_err = errno;
        close(fd);
        c->rl.fd[1] = -1;
    }
    char what[200];
    snprintf(what, sizeof what, "connect to %s failed (%s)", c->addr,
             strerror(c->last_err ? c->last_err : ECONNREFUSED));
    int rep = c->last_err == ECONNREFUSED ? 0x05 : c->last_err == ENETUNREACH ? 0x03 : 0x04;
    fail(e, c, c->last_err == ETIMEDOUT ? 504 : 502, rep, what);
}

static void on_connect_event(sbx_egress *e, eg_conn *c, int side, uint32_t ev)
{
    if (side == 0) {
        if (ev & (EPOLLHUP | EPOLLERR))
            sbx__eg_conn_close(e, c, true); /* the client left */
        return;
    }
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->rl.fd[1], SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (!err) {
        struct sockaddr_storage peer;
        socklen_t pl = sizeof peer;
        if (getpeername(c->rl.fd[1], (struct sockaddr *)&peer, &pl) < 0)
            return; /* still connecting (a stale event) */
        connected(e, c);
        return;
    }
    c->last_err = err;
    sbx_relay_close_fd(e->epfd, c->rl.fd[1]);
    c->rl.fd[1] = -1;
    connect_next(e, c);
}

/* ---- deciding ----------------------------------------------------------------------------- */

/* Address stage over the lookup's (or the literal's) addresses; connects or refuses. */
static void decide_addrs(sbx_egress *e, eg_conn *c, const struct addrinfo *res,
                         const struct sockaddr *one)
{
    char first_rule[EG_RULE_MAX] = "";
    c->ncand = c->icand = 0;
    for (const struct addrinfo *ai = res; (ai || one) && c->ncand < EG_ADDRS_MAX;
         ai = ai ? ai->ai_next : NULL) {
        const struct sockaddr *sa = ai ? ai->ai_addr : one;
        eg_addr a;
        if (sbx__eg_addr_from_sa(sa, &a)) {
            char rule[EG_RULE_MAX];
            int v = sbx__eg_verdict_addr(&e->rules, c->policy, &a, c->req.port, c->by_name, rule,
                                         sizeof rule);
            if (v == EG_ALLOW) {
                if (!c->by_name && !c->rule[0])
                    snprintf(c->rule, sizeof c->rule, "%s", rule);
                struct sockaddr_storage *ss = &c->cand[c->ncand++];
                memset(ss, 0, sizeof *ss);
                /* connect to exactly the checked address, IPv4-mapped ones as IPv4 */
                if (a.family == AF_INET) {
                    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
                    s4->sin_family = AF_INET;
                    memcpy(&s4->sin_addr, a.b, 4);
                    s4->sin_port = htons(c->req.port);
                } else {
                    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
                    s6->sin6_family = AF_INET6;
                    memcpy(&s6->sin6_addr, a.b, 16);
                    s6->sin6_port = htons(c->req.port);
                }
            } else if (!first_rule[0]) {
                snprintf(first_rule, sizeof first_rule, "%s", rule);
            }
        }
        if (one)
            break;
    }
    if (!c->ncand) {
        deny(e, c, first_rule[0] ? first_rule : "no usable address");
        return;
    }
    c->counted = true;
    EG_ADD(&c->sb->allowed, 1);
    EG_ADD(&e->m_allowed, 1);
    connect_next(e, c);
}

static void start_lookup(sbx_egress *e, eg_conn *c)
{
    eg_lookup *l = calloc(1, sizeof *l);
    if (!l) {
        fail(e, c, 503, 0x01, "out of memory");
        return;
    }
    snprintf(l->name, sizeof l->name, "%s", c->req.host);
    l->conn = c;
    c->lookup = l;
    c->sb->lookups++;
    EG_ADD(&e->m_lookups, 1);
    sbx__eg_resolver_submit(e->res, l);
}

void sbx__eg_lookup_next(sbx_egress *e, sbx_egress_sb *sb)
{
    while (!sb->closing && sb->lookups < EG_LOOKUPS_PER_SB && !eg_list_empty(&sb->lookup_wait)) {
        eg_conn *c = EG_ENTRY(sb->lookup_wait.next, eg_conn, wait_link);
        eg_list_del(&c->wait_link);
        start_lookup(e, c);
    }
}

void sbx__eg_conn_resolved(sbx_egress *e, eg_lookup *l)
{
    eg_conn *c = l->conn;
    if (!c) {
        sbx__eg_lookup_free(l);
        return;
    }
    c->lookup = NULL;
    c->sb->lookups--;
    if (l->gai_err) {
        EG_ADD(&e->m_lookup_fails, 1);
        char what[200];
        snprintf(what, sizeof what, "cannot be resolved (%s)", gai_strerror(l->gai_err));
        fail(e, c, 502, 0x04, what);
    } else {
        decide_addrs(e, c, l->res, NULL);
    }
    sbx__eg_lookup_free(l);
    sbx__eg_lookup_next(e, c->sb);
}

static void decide(sbx_egress *e, eg_conn *c)
{
    pthread_mutex_lock(&c->sb->mu);
    c->policy = sbx_egress_policy_ref(c->sb->policy);
    pthread_mutex_unlock(&c->sb->mu);
    char rule[EG_RULE_MAX];
    int v = sbx__eg_verdict_name(&e->rules, c->policy, c->req.literal ? NULL : c->req.host,
                                 c->req.port, &c->by_name, rule, sizeof rule);
    if (v == EG_DENY) {
        deny(e, c, rule);
        return;
    }
    if (c->by_name)
        snprintf(c->rule, sizeof c->rule, "%s", rule);
    if (c->req.literal) {
        eg_addr a;
        struct sockaddr_storage ss = {0};
        sbx__eg_addr_parse(c->req.host, &a);
        if (a.family == AF_INET) {
            ((struct sockaddr_in *)&ss)->sin_family = AF_INET;
            memcpy(&((struct sockaddr_in *)&ss)->sin_addr, a.b, 4);
        } else {
            ((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
            memcpy(&((struct sockaddr_in6 *)&ss)->sin6_addr, a.b, 16);
        }
        decide_addrs(e, c, NULL, (struct sockaddr *)&ss);
        return;
    }
    c->state = S_LOOKUP;
    if (c->sb->lookups < EG_LOOKUPS_PER_SB)
        start_lookup(e, c);
    else
        eg_list_push(&c->sb->lookup_wait, &c->wait_link);
}

/* ---- reading the request ------------------------------------------------------------------ */

/* Parses what was read; returns once the request is complete, refused or needs more. */
static void parse_request(sbx_egress *e, eg_conn *c)
{
    if (c->proto != EG_SOCKS) {
        int status = 0;
        char why[160];
        int rc =
            sbx__eg_http_parse(c->in, c->in_len, EG_HEAD_MAX, &c->req, &status, why, sizeof why);
        if (rc < 0) {
            c->req.host[0] = 0;
            fail(e, c, status, 0, why);
        } else if (rc > 0) {
            decide(e, c);
        }
        return;
    }
    const uint8_t *b = (const uint8_t *)c->in;
    if (c->socks_stage == 0) {
        bool noauth = false;
        int rc = sbx__eg_socks_greeting(b, c->in_len, &noauth);
        if (rc == 0)
            return;
        uint8_t m[2] = {5, noauth ? 0x00 : 0xff};
        if (rc < 0 || !noauth || send(c->rl.fd[0], m, 2, MSG_DONTWAIT | MSG_NOSIGNAL) != 2) {
            c->req.host[0] = 0;
            fail(e, c, 400, 0, rc < 0 ? "not a SOCKS5 greeting" : "no acceptable SOCKS method");
            return;
        }
        c->in_used = (uint32_t)rc;
        c->socks_stage = 1;
    }
    int rep = 0;
    int rc = sbx__eg_socks_request(b + c->in_used, c->in_len - c->in_used, &c->req, &rep);
    if (rc == 0)
        return;
    if (rc < 0) {
        c->req.host[0] = 0;
        fail(e, c, 400, rep ? rep : 0x01,
             rep == 0x07 ? "SOCKS command not supported (CONNECT only)" : "bad SOCKS request");
        return;
    }
    decide(e, c);
}

static void read_request(sbx_egress *e, eg_conn *c)
{
    for (;;) {
        if (c->in_len >= EG_HEAD_MAX) {
            parse_request(e, c); /* a full buffer gets its 431 there */
            return;
        }
        ssize_t n = recv(c->rl.fd[0], c->in + c->in_len, EG_HEAD_MAX - c->in_len, MSG_DONTWAIT);
        if (n > 0) {
            c->in_len += (uint32_t)n;
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            if (c->in_len)
                parse_request(e, c); /* a complete request followed by a half-close */
            if (c->state == S_HEAD)
                sbx__eg_conn_close(e, c, n != 0);
            return;
        }
        if (errno == EINTR)
            continue;
        break;
    }
    parse_request(e, c);
}

/* ---- events ------------------------------------------------------------------------------- */

/* Refusal written: stop writing, then read (and drop) until the client closes. */
static void linger(sbx_egress *e, eg_conn *c)
{
    char sink[4096];
    for (;;) {
        ssize_t n = recv(c->rl.fd[0], sink, sizeof sink, MSG_DONTWAIT);
        if (n > 0)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        sbx__eg_conn_close(e, c, false);
        return;
    }
}

void sbx__eg_conn_event(sbx_egress *e, eg_conn *c, int side, uint32_t ev)
{
    switch (c->state) {
    case S_HEAD:
        if (side == 0)
            read_request(e, c);
        return;
    case S_LOOKUP:
        if (side == 0 && (ev & (EPOLLHUP | EPOLLERR)))
            sbx__eg_conn_close(e, c, true);
        return;
    case S_CONNECTING:
        on_connect_event(e, c, side, ev);
        return;
    case S_FLUSH:
        if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))
            flush(e, c);
        return;
    case S_RELAY:
        if (ev & EPOLLERR) {
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(c->rl.fd[side], SOL_SOCKET, SO_ERROR, &err, &len);
            if (err) {
                sbx__eg_conn_close(e, c, true);
                return;
            }
        }
        if ((ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && !pump(e, c, side))
            return;
        if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))
            pump(e, c, 1 - side);
        return;
    case S_REFUSE: {
        if (side != 0)
            return;
        int rc = flush_side(e, c, 0);
        if (rc < 0) {
            sbx__eg_conn_close(e, c, true);
        } else if (rc > 0) {
            shutdown(c->rl.fd[0], SHUT_WR);
            c->state = S_LINGER;
            linger(e, c);
        }
        return;
    }
    case S_LINGER:
        if (side == 0)
            linger(e, c);
        return;
    default:
        return;
    }
}

void sbx__eg_conn_timeout(sbx_egress *e, eg_conn *c)
{
    switch (c->state) {
    case S_HEAD:
        sbx__eg_conn_close(e, c, true); /* never sent a whole request */
        return;
    case S_LOOKUP:
        fail(e, c, 504, 0x04, "cannot be resolved in time");
        return;
    case S_CONNECTING:
        sbx_relay_close_fd(e->epfd, c->rl.fd[1]);
        c->rl.fd[1] = -1;
        c->last_err = ETIMEDOUT;
        if (e->now >= c->hs_deadline)
            c->icand = c->ncand; /* no time left for the other addresses */
        connect_next(e, c);
        return;
    case S_RELAY: {
        uint64_t idle = (uint64_t)e->cfg.idle_timeout_s * 1000;
        if (c->t_last + idle > e->now) {
            sbx__eg_timer_set(e, c, c->t_last + idle);
            return;
        }
        SBX_LOG_DEBUG(COMP, "idle connection closed sandbox=%s dest=%s", c->sb->key, c->req.host);
        sbx__eg_conn_close(e, c, true);
        return;
    }
    default:
        sbx__eg_conn_close(e, c, c->state != S_LINGER);
        return;
    }
}

/* ---- accepting ---------------------------------------------------------------------------- */

static void refuse_limit(sbx_egress *e, eg_listener *l, int fd, const char *why)
{
    sbx_egress_sb *sb = l->sb;
    EG_ADD(&sb->denied, 1);
    EG_ADD(&e->m_denied, 1);
    if (e->now - sb->limit_logged >= 1000) {
        sb->limit_logged = e->now;
        SBX_LOG_INFO(COMP, "connection sandbox=%s project=%s proto=%s decision=denied rule=\"%s\"",
                     sb->key, sb->label, l->proto == EG_SOCKS ? "socks" : "http", why);
    }
    if (l->proto != EG_SOCKS) {
        char buf[512], line[256];
        snprintf(line, sizeof line, "sbx egress: connection refused (%s)", why);
        int n = sbx__eg_http_reply(503, line, buf, sizeof buf);
        ssize_t w = send(fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
        (void)w;
    } else {
        sbx_relay_set_rst(fd);
    }
    close(fd);
}

void sbx__eg_conn_new(sbx_egress *e, eg_listener *l, int fd)
{
    sbx_egress_sb *sb = l->sb;
    char why[96];
    if (sb->nconns >= e->cfg.max_conns) {
        snprintf(why, sizeof why, "the sandbox has %u proxy connections, the limit", sb->nconns);
        refuse_limit(e, l, fd, why);
        return;
    }
    if (e->total >= e->max_total) {
        snprintf(why, sizeof why, "the executor has %u proxy connections, its limit", e->total);
        refuse_limit(e, l, fd, why);
        return;
    }
    eg_conn *c = calloc(1, sizeof *c);
    char *in = malloc(EG_HEAD_MAX);
    if (!c || !in) {
        free(c);
        free(in);
        refuse_limit(e, l, fd, "out of memory");
        return;
    }
    tune(fd);
    c->ep[0] = (eg_tag){EP_CONN, 0};
    c->ep[1] = (eg_tag){EP_CONN, 1};
    sbx_relay_init(&c->rl, fd, -1);
    c->in = in;
    c->state = S_HEAD;
    c->proto = l->proto;
    c->sb = sb;
    c->t_start = c->t_last = e->now;
    c->hs_deadline = e->now + e->cfg.handshake_ms;
    eg_list_push(&sb->conns, &c->sb_link);
    sb->nconns++;
    e->total++;
    EG_ADD(&sb->active, 1);
    EG_ADD(&e->m_active, 1);
    sbx__eg_timer_set(e, c, c->hs_deadline);
    if (sbx__eg_ep_add(e, fd, &c->ep[0], EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) < 0) {
        sbx__eg_conn_close(e, c, true);
        return;
    }
    read_request(e, c); /* what arrived with the connection */
}
