/* test_egress_proxy.c: the egress proxies (services/executor/egress) in this process, on the
 * host's own network namespace (netns -1) with ephemeral proxy ports: an upstream server on
 * 127.0.0.2 opened with --egress-allow-private, CONNECT, absolute-URI requests (rewritten for
 * the origin), SOCKS5 by name and by address, refusals with their exact answers, a policy
 * replaced while a tunnel stays open, the per-sandbox connection limit, a client that stops
 * reading while others go on, the idle timeout, and stop closing everything. Loopback only. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "egress.h"
#include "test_main.h"

/* ---- an upstream server on 127.0.0.2: echoes lines, answers HTTP with the request line ---- */

typedef struct upstream {
    int lfd;
    uint16_t port;
    pthread_t thr;
    volatile int stop;
} upstream;

static void *serve_one(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[65536];
    size_t have = 0;
    for (;;) {
        ssize_t n = recv(fd, buf + have, sizeof buf - have - 1, 0);
        if (n <= 0)
            break;
        have += (size_t)n;
        buf[have] = 0;
        if (strncmp(buf, "GET ", 4) == 0 || strncmp(buf, "POST ", 5) == 0) {
            if (!strstr(buf, "\r\n\r\n"))
                continue;
            char *eol = strstr(buf, "\r\n");
            char body[2048];
            int bl = snprintf(body, sizeof body, "%.*s|%s", (int)(eol - buf), buf,
                              strstr(buf, "Connection: close") ? "close" : "keep");
            char resp[4096];
            int rl = snprintf(
                resp, sizeof resp,
                "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", bl, body);
            ssize_t w = send(fd, resp, (size_t)rl, MSG_NOSIGNAL);
            (void)w;
            break;
        }
        if (strncmp(buf, "BULK", 4) == 0) { /* BULK: 64 MiB then close */
            static char chunk[65536];
            for (int i = 0; i < 1024; i++)
                if (send(fd, chunk, sizeof chunk, MSG_NOSIGNAL) < 0)
                    break;
            break;
        }
        ssize_t w = send(fd, buf, have, MSG_NOSIGNAL); /* echo */
        (void)w;
        have = 0;
    }
    close(fd);
    return NULL;
}

static void *upstream_main(void *arg)
{
    upstream *u = arg;
    while (!u->stop) {
        struct pollfd p = {.fd = u->lfd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept(u->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_t t;
        pthread_create(&t, NULL, serve_one, (void *)(intptr_t)fd);
        pthread_detach(t);
    }
    return NULL;
}

static void upstream_start(upstream *u)
{
    u->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.2", &sa.sin_addr);
    socklen_t sl = sizeof sa;
    assert_int_equal(bind(u->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(u->lfd, 256), 0);
    getsockname(u->lfd, (struct sockaddr *)&sa, &sl);
    u->port = ntohs(sa.sin_port);
    u->stop = 0;
    pthread_create(&u->thr, NULL, upstream_main, u);
}

static void upstream_stop(upstream *u)
{
    u->stop = 1;
    pthread_join(u->thr, NULL);
    close(u->lfd);
}

/* ---- fixture ---------------------------------------------------------------------------- */

typedef struct fx {
    upstream up;
    sbx_egress *e;
    sbx_egress_sb *sb;
    uint16_t http, socks;
} fx;

static sbx_egress_policy *pol(const char *a0, const char *a1, const char *d0)
{
    const char *a[2] = {a0, a1}, *d[1] = {d0};
    sbx_egress_policy *p = NULL;
    char err[256];
    int rc = sbx_egress_policy_new(a,
                                   a1   ? 2
                                   : a0 ? 1
                                        : 0,
                                   d, d0 ? 1 : 0, "network", &p, err, sizeof err);
    if (rc)
        fail_msg("%s", err);
    return p;
}

static void fx_open(fx *f, uint32_t max_conns, uint32_t idle_s, sbx_egress_policy *p)
{
    upstream_start(&f->up);
    const char *svc[] = {"127.0.0.1:50099"};
    sbx_egress_cfg cfg = {.allow_private = "127.0.0.2/32",
                          .deny = "*.denied.test",
                          .service_addrs = svc,
                          .n_service_addrs = 1,
                          .max_conns = max_conns,
                          .idle_timeout_s = idle_s,
                          .ephemeral_ports = true};
    char err[256];
    int rc = sbx_egress_new(&cfg, &f->e, err, sizeof err);
    if (rc)
        fail_msg("%s", err);
    f->sb = sbx_egress_sb_new(f->e, "sb-test", "tenant/proj", p);
    sbx_egress_policy_unref(p);
    assert_int_equal(sbx_egress_sb_start(f->sb, -1), 0);
    sbx_egress_sb_ports(f->sb, &f->http, &f->socks);
    assert_true(f->http > 0 && f->socks > 0);
    assert_true(sbx_egress_sb_proxied(f->sb));
}

static void fx_close(fx *f)
{
    sbx_egress_sb_free(f->sb);
    sbx_egress_free(f->e);
    upstream_stop(&f->up);
}

static int dial(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static void put(int fd, const char *s)
{
    assert_int_equal(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

/* Reads until the peer closes (or n bytes); NUL-terminated. */
static size_t get_all(int fd, char *buf, size_t n)
{
    size_t have = 0;
    while (have + 1 < n) {
        ssize_t r = recv(fd, buf + have, n - have - 1, 0);
        if (r <= 0)
            break;
        have += (size_t)r;
    }
    buf[have] = 0;
    return have;
}

/* Reads a CONNECT answer's head. */
static void get_head(int fd, char *buf, size_t n)
{
    size_t have = 0;
    while (have + 1 < n) {
        ssize_t r = recv(fd, buf + have, 1, 0);
        if (r <= 0)
            break;
        have++;
        buf[have] = 0;
        if (have >= 4 && strcmp(buf + have - 4, "\r\n\r\n") == 0)
            break;
    }
    buf[have] = 0;
}

static void test_connect_and_forward(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 0, 0, pol("127.0.0.2", NULL, NULL));
    char req[256], buf[4096];
    int fd = dial(f.http);
    snprintf(req, sizeof req, "CONNECT 127.0.0.2:%u HTTP/1.1\r\nHost: x\r\n\r\nhello\n", f.up.port);
    put(fd, req);
    get_head(fd, buf, sizeof buf);
    assert_string_equal(buf, "HTTP/1.1 200 Connection established\r\n\r\n");
    assert_int_equal(recv(fd, buf, 6, MSG_WAITALL), 6); /* the early bytes went through */
    assert_memory_equal(buf, "hello\n", 6);
    put(fd, "again\n");
    assert_int_equal(recv(fd, buf, 6, MSG_WAITALL), 6);
    close(fd);
    /* absolute URI: origin-form upstream, Connection: close */
    fd = dial(f.http);
    snprintf(req, sizeof req,
             "GET http://127.0.0.2:%u/pkg?v=1 HTTP/1.1\r\nHost: 127.0.0.2\r\n"
             "Proxy-Connection: keep-alive\r\n\r\n",
             f.up.port);
    put(fd, req);
    get_all(fd, buf, sizeof buf);
    assert_non_null(strstr(buf, "HTTP/1.1 200 OK"));
    assert_non_null(strstr(buf, "GET /pkg?v=1 HTTP/1.1|close"));
    close(fd);
    sbx_egress_counters c;
    sbx_egress_sb_counters(f.sb, &c);
    assert_int_equal(c.allowed, 2);
    assert_int_equal(c.denied, 0);
    assert_true(c.bytes_out > 0 && c.bytes_in > 0);
    fx_close(&f);
}

static void expect_refusal(uint16_t port, const char *req, const char *want)
{
    char buf[4096];
    int fd = dial(port);
    put(fd, req);
    get_all(fd, buf, sizeof buf);
    close(fd);
    if (!strstr(buf, want))
        fail_msg("request %s\nanswer %s\nwanted %s", req, buf, want);
}

static void test_refusals(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 0, 0, pol("127.0.0.2:1", "*", "*.nope.test"));
    char req[256], want[256];
    /* allow_out names another port */
    snprintf(req, sizeof req, "CONNECT 127.0.0.2:%u HTTP/1.1\r\n\r\n", f.up.port);
    snprintf(want, sizeof want,
             "HTTP/1.1 403 Forbidden - sbx egress: 127.0.0.2:%u denied (127.0.0.2 is internal",
             f.up.port);
    expect_refusal(f.http, req, want);
    snprintf(want, sizeof want,
             "\r\n\r\nsbx egress: 127.0.0.2:%u denied (127.0.0.2 is internal (allow_out * covers",
             f.up.port);
    expect_refusal(f.http, req, want);
    /* SSRF: loopback, metadata, a name resolving to loopback, the service port */
    expect_refusal(f.http, "CONNECT 127.0.0.1:22 HTTP/1.1\r\n\r\n",
                   "sbx egress: 127.0.0.1:22 denied (127.0.0.1 is loopback)\n");
    expect_refusal(f.http, "GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\n\r\n",
                   "sbx egress: 169.254.169.254:80 denied (169.254.169.254 is link-local");
    expect_refusal(f.http, "CONNECT localhost:80 HTTP/1.1\r\n\r\n", "is loopback)\n");
    expect_refusal(f.http, "CONNECT [::1]:80 HTTP/1.1\r\n\r\n",
                   "sbx egress: [::1]:80 denied (::1 is loopback)\n");
    expect_refusal(f.http, "CONNECT 127.0.0.1:50099 HTTP/1.1\r\n\r\n",
                   "denied (127.0.0.1:50099 is an sbx service address)");
    /* deny wins; the global deny */
    expect_refusal(f.http, "CONNECT a.nope.test:443 HTTP/1.1\r\n\r\n",
                   "sbx egress: a.nope.test:443 denied (deny_out *.nope.test)\n");
    expect_refusal(f.http, "CONNECT x.denied.test:443 HTTP/1.1\r\n\r\n",
                   "denied (--egress-deny *.denied.test)\n");
    /* bad requests and resolution failures */
    expect_refusal(f.http, "GET / HTTP/1.1\r\n\r\n",
                   "HTTP/1.1 400 Bad Request - sbx egress: not a proxy");
    expect_refusal(f.http, "CONNECT no-such-host.invalid:443 HTTP/1.1\r\n\r\n",
                   "HTTP/1.1 502 Bad Gateway - sbx egress: no-such-host.invalid:443");
    expect_refusal(f.http, "CONNECT no-such-host.invalid:443 HTTP/1.1\r\n\r\n",
                   "sbx egress: no-such-host.invalid:443 cannot be resolved (");
    sbx_egress_counters c;
    sbx_egress_sb_counters(f.sb, &c);
    assert_int_equal(c.allowed, 0);
    assert_int_equal(c.denied, 9);
    assert_int_equal(c.failed, 3);
    fx_close(&f);
}

static int socks_connect(uint16_t port, const uint8_t *req, size_t n, uint8_t *rep)
{
    int fd = dial(port);
    const uint8_t g[] = {5, 1, 0};
    assert_int_equal(send(fd, g, 3, 0), 3);
    uint8_t m[2];
    assert_int_equal(recv(fd, m, 2, MSG_WAITALL), 2);
    assert_int_equal(m[0], 5);
    assert_int_equal(m[1], 0);
    assert_int_equal(send(fd, req, n, 0), (ssize_t)n);
    uint8_t r[10];
    assert_int_equal(recv(fd, r, 10, MSG_WAITALL), 10);
    *rep = r[1];
    return fd;
}

static void test_socks(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 0, 0, pol("127.0.0.2", NULL, NULL));
    uint8_t rep;
    uint8_t req[10] = {5, 1, 0, 1, 127, 0, 0, 2, (uint8_t)(f.up.port >> 8), (uint8_t)f.up.port};
    int fd = socks_connect(f.socks, req, sizeof req, &rep);
    assert_int_equal(rep, 0);
    put(fd, "ping\n");
    char buf[16];
    assert_int_equal(recv(fd, buf, 5, MSG_WAITALL), 5);
    assert_memory_equal(buf, "ping\n", 5);
    close(fd);
    /* denied: "not allowed by ruleset" */
    uint8_t lo[10] = {5, 1, 0, 1, 127, 0, 0, 1, 0, 22};
    fd = socks_connect(f.socks, lo, sizeof lo, &rep);
    assert_int_equal(rep, 2);
    close(fd);
    uint8_t name[] = {5, 1, 0, 3, 9, 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't', 0, 80};
    fd = socks_connect(f.socks, name, sizeof name, &rep);
    assert_int_equal(rep, 2);
    close(fd);
    fx_close(&f);
}

static void test_policy_change_applies_to_new_connections(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 0, 0, pol("127.0.0.2", NULL, NULL));
    char req[256], buf[256];
    snprintf(req, sizeof req, "CONNECT 127.0.0.2:%u HTTP/1.1\r\n\r\n", f.up.port);
    int open_fd = dial(f.http);
    put(open_fd, req);
    get_head(open_fd, buf, sizeof buf);
    assert_non_null(strstr(buf, " 200 "));
    sbx_egress_policy *none = pol(NULL, NULL, NULL);
    assert_int_equal(sbx_egress_sb_set_policy(f.sb, none, -1), 0);
    sbx_egress_policy_unref(none);
    assert_true(sbx_egress_sb_proxied(f.sb)); /* stays open to say why */
    expect_refusal(f.http, req, "denied (allow_out is empty)");
    put(open_fd, "still\n"); /* the open tunnel is not cut */
    assert_int_equal(recv(open_fd, buf, 6, MSG_WAITALL), 6);
    close(open_fd);
    sbx_egress_policy *p = sbx_egress_sb_policy(f.sb);
    assert_true(sbx_egress_policy_empty(p));
    sbx_egress_policy_unref(p);
    fx_close(&f);
}

static void test_connection_limit_and_stalled_reader(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 8, 0, pol("127.0.0.2", NULL, NULL));
    char req[256], buf[512];
    /* a client that asks for 64 MiB and never reads */
    int stalled = dial(f.http);
    snprintf(req, sizeof req, "CONNECT 127.0.0.2:%u HTTP/1.1\r\n\r\nBULK", f.up.port);
    put(stalled, req);
    usleep(200 * 1000);
    /* 7 more fit under the limit of 8, and each still works */
    int fds[7];
    for (int i = 0; i < 7; i++) {
        fds[i] = dial(f.http);
        snprintf(req, sizeof req, "CONNECT 127.0.0.2:%u HTTP/1.1\r\n\r\n", f.up.port);
        put(fds[i], req);
        get_head(fds[i], buf, sizeof buf);
        assert_non_null(strstr(buf, " 200 "));
        put(fds[i], "x\n");
        assert_int_equal(recv(fds[i], buf, 2, MSG_WAITALL), 2);
    }
    /* the ninth is refused with a 503 */
    int extra = dial(f.http);
    get_all(extra, buf, sizeof buf);
    assert_non_null(strstr(buf, "503 Service Unavailable - sbx egress: connection refused"));
    assert_non_null(strstr(buf, "limit"));
    close(extra);
    for (int i = 0; i < 7; i++)
        close(fds[i]);
    close(stalled);
    sbx_egress_counters c;
    sbx_egress_sb_counters(f.sb, &c);
    assert_int_equal(c.denied, 1);
    assert_true(c.bytes_in < 48u << 20); /* the stalled one did not drain 64 MiB */
    fx_close(&f);
}

static void test_idle_timeout_and_stop(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 0, 1, pol("127.0.0.2", NULL, NULL));
    char req[256], buf[256];
    snprintf(req, sizeof req, "CONNECT 127.0.0.2:%u HTTP/1.1\r\n\r\n", f.up.port);
    int fd = dial(f.http);
    put(fd, req);
    get_head(fd, buf, sizeof buf);
    assert_non_null(strstr(buf, " 200 "));
    /* no traffic: closed after about a second */
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    assert_true(recv(fd, buf, sizeof buf, 0) <= 0);
    close(fd);
    /* stop closes tunnels and listeners */
    fd = dial(f.http);
    put(fd, req);
    get_head(fd, buf, sizeof buf);
    sbx_egress_sb_stop(f.sb);
    assert_true(recv(fd, buf, sizeof buf, 0) <= 0);
    close(fd);
    assert_false(sbx_egress_sb_proxied(f.sb));
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(f.http)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_not_equal(connect(s, (struct sockaddr *)&sa, sizeof sa), 0);
    close(s);
    sbx_egress_policy *p = pol("*", NULL, NULL);
    assert_int_equal(sbx_egress_sb_set_policy(f.sb, p, -1), -ESHUTDOWN);
    sbx_egress_policy_unref(p);
    fx_close(&f);
}

static void test_bad_service_flags(void **state)
{
    (void)state;
    sbx_egress *e = NULL;
    char err[256];
    sbx_egress_cfg cfg = {.deny = "ok.test,not a pattern"};
    assert_int_equal(sbx_egress_new(&cfg, &e, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "--egress-deny: item 2"));
    cfg = (sbx_egress_cfg){.allow_private = "10.0.0.0/8,*.corp"};
    assert_int_equal(sbx_egress_new(&cfg, &e, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "--egress-allow-private: item 2"));
    assert_null(e);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_and_forward),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_socks),
        cmocka_unit_test(test_policy_change_applies_to_new_connections),
        cmocka_unit_test(test_connection_limit_and_stalled_reader),
        cmocka_unit_test(test_idle_timeout_and_stop),
        cmocka_unit_test(test_bad_service_flags),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
