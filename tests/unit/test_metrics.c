/* test_metrics.c: the --metrics-listen endpoint (common/metrics.c) over real loopback HTTP/1.1
 * against a real server: the Prometheus text of the server's counters plus a service's extra
 * lines, several keep-alive connections open and scraped at once (interleaved on one thread and
 * from several threads), 404/405 answers that keep the connection, /healthz, a stop that closes
 * open connections, and addresses that are refused. */
#include "test_main.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "grpc/health/v1/health.pb-c.h"
#include "metrics.h"
#include "rpc_client.h"
#include "serve.h"

#define CONNS 4
#define ROUNDS 3
#define THREAD_REQUESTS 25

static atomic_int extra_calls;

static void extra_lines(FILE *out, void *arg)
{
    atomic_fetch_add(&extra_calls, 1);
    fprintf(out, "# TYPE sbx_test_extra_total counter\nsbx_test_extra_total %d\n", *(int *)arg);
}

struct fixture {
    sbx_server *srv;
    sbx_metrics_http *http;
    int port;
    int extra_value;
};

static const char *HANDLED_CHECK_OK =
    "grpc_server_handled_total{grpc_service=\"grpc.health.v1.Health\","
    "grpc_method=\"Check\",grpc_code=\"OK\"} 1\n";

/* A server with only Health, one Check call made, and the metrics listener on an ephemeral
 * port. */
static struct fixture *start(void)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    sbx_rpc_init();
    sbx_server_opts o;
    sbx_server_opts_default(&o);
    o.health_name = "sbx.v1.Test";
    f->srv = sbx_server_new(&o, NULL, 0);
    assert_non_null(f->srv);
    assert_int_equal(sbx_server_start(f->srv), 0);

    char target[64], err[128];
    snprintf(target, sizeof target, "127.0.0.1:%d", sbx_server_port(f->srv));
    sbx_chan_opts co = {.target = target};
    sbx_chan *ch = sbx_chan_new(&co, err, sizeof err);
    assert_non_null(ch);
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    sbx_rpc_result res = {0};
    assert_int_equal(sbx_call_unary(ch, "/grpc.health.v1.Health/Check", &req.base,
                                    &grpc__health__v1__health_check_response__descriptor, &resp,
                                    5000, NULL, &res),
                     SBX_OK);
    protobuf_c_message_free_unpacked(resp, NULL);
    sbx_rpc_result_clear(&res);
    sbx_chan_free(ch);

    f->extra_value = 42;
    atomic_store(&extra_calls, 0);
    f->http = sbx_metrics_listen("127.0.0.1:0", f->srv, extra_lines, &f->extra_value, &f->port);
    assert_non_null(f->http);
    assert_true(f->port > 0);
    return f;
}

static void stop(struct fixture *f)
{
    sbx_metrics_stop(f->http);
    sbx_server_shutdown(f->srv);
    sbx_server_free(f->srv);
    sbx_rpc_shutdown();
    free(f);
}

/* A TCP connection to the listener; reads give up after 30 s so a hung server fails the test
 * instead of hanging it. */
static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct timeval tv = {.tv_sec = 30};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -errno;
    }
    return fd;
}

static void send_request(int fd, const char *method, const char *path, const char *body)
{
    char req[512];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: %zu\r\n\r\n%s", method,
                     path, strlen(body), body);
    assert_int_equal(write(fd, req, (size_t)n), n);
}

struct response {
    int status;
    char headers[2048];
    char *body; /* malloc'd, NUL-terminated */
};

/* Reads one HTTP/1.1 response (Content-Length framed); returns -1 on EOF or error before it. */
static int read_response(int fd, struct response *r)
{
    char buf[4096];
    size_t got = 0;
    char *end = NULL;
    while (!end) {
        if (got == sizeof buf - 1)
            return -1;
        ssize_t n = read(fd, buf + got, sizeof buf - 1 - got);
        if (n <= 0)
            return -1;
        got += (size_t)n;
        buf[got] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    size_t hlen = (size_t)(end - buf) + 4;
    assert_true(hlen < sizeof r->headers);
    memcpy(r->headers, buf, hlen);
    r->headers[hlen] = '\0';
    assert_int_equal(sscanf(r->headers, "HTTP/1.1 %d", &r->status), 1);
    const char *cl = strcasestr(r->headers, "\r\nContent-Length:");
    assert_non_null(cl);
    size_t len = strtoul(cl + 17, NULL, 10);
    r->body = malloc(len + 1);
    assert_non_null(r->body);
    size_t have = got - hlen < len ? got - hlen : len;
    memcpy(r->body, buf + hlen, have);
    while (have < len) {
        ssize_t n = read(fd, r->body + have, len - have);
        if (n <= 0) {
            free(r->body);
            return -1;
        }
        have += (size_t)n;
    }
    r->body[len] = '\0';
    return 0;
}

/* One request on fd (a POST carries a small body): the response has status want, and text in
 * its body and header in its headers unless they are NULL. */
static void expect(int fd, const char *method, const char *path, int want, const char *text,
                   const char *header)
{
    struct response r;
    send_request(fd, method, path, strcmp(method, "POST") == 0 ? "a=b" : "");
    assert_int_equal(read_response(fd, &r), 0);
    assert_int_equal(r.status, want);
    if (text)
        assert_non_null(strstr(r.body, text));
    if (header)
        assert_non_null(strcasestr(r.headers, header));
    free(r.body);
}

/* The server counts a call when its final batch completes, a moment after the client saw the
 * status: scrape until the Check shows (bounded), as a Prometheus scrape would see it later. */
static void wait_for_check_count(struct fixture *f)
{
    int fd = connect_to(f->port);
    assert_true(fd >= 0);
    for (int i = 0; i < 500; i++) {
        struct response r;
        send_request(fd, "GET", "/metrics", "");
        assert_int_equal(read_response(fd, &r), 0);
        bool seen = strstr(r.body, HANDLED_CHECK_OK) != NULL;
        free(r.body);
        if (seen)
            break;
        usleep(10000);
    }
    close(fd);
}

static void assert_metrics_response(const struct response *r)
{
    assert_int_equal(r->status, 200);
    assert_non_null(strcasestr(r->headers, "Content-Type: text/plain; version=0.0.4"));
    assert_null(strcasestr(r->headers, "Connection: close"));
    assert_non_null(strstr(r->body, "# TYPE grpc_server_handled_total counter\n"));
    assert_non_null(strstr(r->body, HANDLED_CHECK_OK));
    assert_non_null(strstr(r->body, "# TYPE grpc_server_handling_seconds histogram\n"));
    assert_non_null(
        strstr(r->body, "grpc_server_handling_seconds_count{grpc_service=\"grpc.health.v1.Health\","
                        "grpc_method=\"Check\"} 1\n"));
    assert_non_null(strstr(r->body, "sbx_test_extra_total 42\n"));
}

static void scrape_has_server_counters_and_extra_lines(void **state)
{
    (void)state;
    struct fixture *f = start();
    wait_for_check_count(f);
    int fd = connect_to(f->port);
    assert_true(fd >= 0);
    send_request(fd, "GET", "/metrics?format=text", "");
    struct response r;
    assert_int_equal(read_response(fd, &r), 0);
    assert_metrics_response(&r);
    assert_null(strstr(r.body, "grpc_method=\"Watch\"")); /* never called: no lines for it */
    free(r.body);
    close(fd);
    stop(f);
}

static void keepalive_connections_interleaved(void **state)
{
    (void)state;
    struct fixture *f = start();
    wait_for_check_count(f);
    int idle = connect_to(f->port); /* opened first, never sends: must not hold anyone up */
    assert_true(idle >= 0);
    int fds[CONNS];
    for (int i = 0; i < CONNS; i++) {
        fds[i] = connect_to(f->port);
        assert_true(fds[i] >= 0);
    }
    int before = atomic_load(&extra_calls);
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < CONNS; i++)
            send_request(fds[i], "GET", "/metrics", "");
        for (int i = 0; i < CONNS; i++) {
            struct response r;
            assert_int_equal(read_response(fds[i], &r), 0);
            assert_metrics_response(&r);
            free(r.body);
        }
    }
    assert_int_equal(atomic_load(&extra_calls) - before, CONNS * ROUNDS);
    for (int i = 0; i < CONNS; i++)
        close(fds[i]);
    close(idle);
    stop(f);
}

static void *scrape_thread(void *arg)
{
    struct fixture *f = arg;
    int fd = connect_to(f->port);
    long ok = 0;
    for (int i = 0; fd >= 0 && i < THREAD_REQUESTS; i++) {
        struct response r;
        send_request(fd, "GET", "/metrics", "");
        if (read_response(fd, &r) != 0)
            break;
        ok += r.status == 200 && strstr(r.body, HANDLED_CHECK_OK) &&
              strstr(r.body, "sbx_test_extra_total 42\n");
        free(r.body);
    }
    if (fd >= 0)
        close(fd);
    return (void *)ok;
}

static void keepalive_connections_from_threads(void **state)
{
    (void)state;
    struct fixture *f = start();
    wait_for_check_count(f);
    pthread_t th[CONNS];
    for (int i = 0; i < CONNS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, scrape_thread, f), 0);
    for (int i = 0; i < CONNS; i++) {
        void *ok;
        pthread_join(th[i], &ok);
        assert_int_equal((long)ok, THREAD_REQUESTS);
    }
    stop(f);
}

static void other_paths_and_methods_keep_the_connection(void **state)
{
    (void)state;
    struct fixture *f = start();
    int fd = connect_to(f->port);
    assert_true(fd >= 0);
    expect(fd, "GET", "/nope", 404, "not found: try GET /metrics", NULL);
    expect(fd, "GET", "/metricsx", 404, "not found", NULL);
    expect(fd, "GET", "/healthz", 200, "ok\n", NULL);
    expect(fd, "POST", "/metrics", 405, "method not allowed", "Allow: GET, HEAD");
    expect(fd, "GET", "/metrics", 200, "sbx_test_extra_total 42\n", "version=0.0.4");
    close(fd);
    stop(f);
}

static void stop_closes_open_connections(void **state)
{
    (void)state;
    struct fixture *f = start();
    int fd = connect_to(f->port);
    assert_true(fd >= 0);
    expect(fd, "GET", "/healthz", 200, "ok\n", NULL);
    int port = f->port;
    sbx_metrics_stop(f->http);
    f->http = NULL;
    char c;
    ssize_t n = read(fd, &c, 1);
    assert_true(n == 0 || (n < 0 && errno == ECONNRESET));
    close(fd);
    assert_int_equal(connect_to(port), -ECONNREFUSED);
    stop(f);
}

static void bad_addresses_are_refused(void **state)
{
    (void)state;
    struct fixture *f = start();
    int port = 0;
    assert_null(sbx_metrics_listen("no-port-here", f->srv, NULL, NULL, &port));
    assert_null(sbx_metrics_listen("127.0.0.1:notaport", f->srv, NULL, NULL, &port));
    char taken[64];
    snprintf(taken, sizeof taken, "127.0.0.1:%d", f->port);
    assert_null(sbx_metrics_listen(taken, f->srv, NULL, NULL, &port));
    /* the listener that holds the port still answers */
    int fd = connect_to(f->port);
    assert_true(fd >= 0);
    expect(fd, "GET", "/healthz", 200, "ok\n", NULL);
    close(fd);
    stop(f);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(scrape_has_server_counters_and_extra_lines),
    cmocka_unit_test(keepalive_connections_interleaved),
    cmocka_unit_test(keepalive_connections_from_threads),
    cmocka_unit_test(other_paths_and_methods_keep_the_connection),
    cmocka_unit_test(stop_closes_open_connections),
    cmocka_unit_test(bad_addresses_are_refused),
};
SBX_TEST_MAIN(tests)
