/* test_ports_portfwd.c: the port forwarder (ports/portfwd*.c) against real servers in a real
 * sandbox (its own network namespace, loopback only): http.server reachable, a 100 MB download byte
 * for byte, 50 concurrent connections, raw TCP echo, a chunked HTTP response unchanged and
 * streamed, half-close, backpressure, the per-sandbox connection cap, nothing listening, and
 * closing the sandbox's ports freeing the host port; IPv6 bind and the recv/send (no splice) mode.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "devserver.h"
#include "ports_fixture.h"

/* srv.py MODE on port, exposed: the server (asserted) and *hp its host port. */
static sbx_proc *serve_exposed(env *e, const char *mode, uint16_t port, uint16_t *hp)
{
    sbx_proc *p = env_pyserver(e, mode, port);
    assert_non_null(p);
    *hp = env_expose(e, port);
    assert_true(*hp > 0);
    return p;
}

/* The first port's counters once its live connections are want (or ms passed). */
static sbx_portfwd_port wait_active(sbx_portfwd *f, const char *key, uint32_t want, int ms)
{
    sbx_portfwd_port pp = {0};
    uint64_t end = sbx_mono_ms() + (uint64_t)ms;
    do {
        assert_int_equal(sbx_portfwd_list(f, key, &pp, 1), 1);
    } while (pp.active != want && sbx_mono_ms() < end && usleep(2000) == 0);
    return pp;
}

/* http.server serves a file from the home dir; ExposePort is idempotent; list reports it. */
static void test_http_server_reachable(void **state)
{
    env *e = *state;
    ENV_REQUIRE(e);
    char path[256];
    snprintf(path, sizeof path, "%s/hello.txt", e->home);
    assert_int_equal(write_file(path, "hello from the sandbox\n", 23), 0);
    uint16_t hp = env_expose(e, 8000);
    assert_true(hp > 0);
    uint16_t hp2 = env_expose(e, 8000);
    assert_int_equal(hp, hp2);
    uint16_t hp3 = env_expose(e, 8001);
    assert_true(hp3 > 0 && hp3 != hp);

    const char *argv[] = {"python3",   "-m",          "http.server", "8000", "--bind",
                          "127.0.0.1", "--directory", "/home/user",  NULL};
    sbx_proc *p = env_start(e, argv, "web");
    assert_non_null(p);
    char url[256];
    assert_true(sbx_devserver_probe_url("127.0.0.1", hp, "/hello.txt", url, sizeof url) > 0);
    sbx_dev_wait_req wr = {
        .url = url, .timeout_ms = 10000, .wait = sbx_devserver_proc_wait, .wait_arg = p};
    sbx_dev_result r;
    assert_int_equal(sbx_devserver_wait(&wr, &r), 0);
    assert_int_equal(r.outcome, SBX_DEV_READY);
    assert_int_equal(r.http_status, 200);

    hash64 got, want;
    assert_int_equal(http_get_hash(hp, "/hello.txt", &got), 200);
    hash_init(&want);
    hash_add(&want, "hello from the sandbox\n", 23);
    assert_int_equal(got.n, want.n);
    assert_true(got.h == want.h);

    sbx_portfwd_port ports[4];
    assert_int_equal(sbx_portfwd_list(e->fwd, e->id, ports, 4), 2);
    assert_int_equal(ports[0].port, 8000);
    assert_int_equal(ports[0].host_port, hp);
    assert_int_equal(ports[1].port, 8001);
    assert_true(ports[0].accepted >= 2);
    assert_true(ports[0].bytes_out > 23);
    char u[64];
    assert_true(sbx_portfwd_url(e->fwd, hp, u, sizeof u) > 0);
    char want_url[64];
    snprintf(want_url, sizeof want_url, "http://127.0.0.1:%u/", (unsigned)hp);
    assert_string_equal(u, want_url);
    sbx_proc_unref(p);
}

/* 100 MB through http.server: byte for byte. */
static void test_download_100mb(void **state)
{
    env *e = *state;
    ENV_REQUIRE(e);
    const size_t total = 100u * 1024 * 1024;
    char path[256];
    snprintf(path, sizeof path, "%s/big.bin", e->home);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    uint64_t seed = 0x9E3779B97F4A7C15ULL;
    hash64 want;
    hash_init(&want);
    char *chunk = malloc(1 << 20);
    for (size_t done = 0; done < total; done += 1 << 20) {
        prng_fill(&seed, chunk, 1 << 20);
        hash_add(&want, chunk, 1 << 20);
        assert_int_equal(write(fd, chunk, 1 << 20), 1 << 20);
    }
    free(chunk);
    close(fd);

    uint16_t hp = env_expose(e, 8080);
    const char *argv[] = {"python3",   "-m",          "http.server", "8080", "--bind",
                          "127.0.0.1", "--directory", "/home/user",  NULL};
    sbx_proc *p = env_start(e, argv, "web");
    char url[128];
    sbx_devserver_probe_url("127.0.0.1", hp, "/", url, sizeof url);
    sbx_dev_wait_req wr = {
        .url = url, .timeout_ms = 10000, .wait = sbx_devserver_proc_wait, .wait_arg = p};
    sbx_dev_result r;
    assert_int_equal(sbx_devserver_wait(&wr, &r), 0);
    assert_int_equal(r.outcome, SBX_DEV_READY);

    uint64_t t0 = sbx_mono_ms();
    hash64 got;
    assert_int_equal(http_get_hash(hp, "/big.bin", &got), 200);
    uint64_t dt = sbx_mono_ms() - t0;
    assert_int_equal(got.n, total);
    assert_true(got.h == want.h);
    fprintf(stderr, "100 MB via forwarder from python http.server: %llu ms\n",
            (unsigned long long)dt);
    sbx_proc_unref(p);
}

typedef struct {
    uint16_t port;
    int idx;
    pthread_barrier_t *bar;
    int ok;
} conc_arg;

static void *conc_worker(void *arg)
{
    conc_arg *a = arg;
    int fd = tcp_connect(a->port);
    /* every thread holds its connection before any sends: 50 live at once */
    pthread_barrier_wait(a->bar);
    pthread_barrier_wait(a->bar); /* main checked the active count */
    if (fd < 0)
        return NULL;
    size_t len = 256 * 1024;
    char *out = malloc(len);
    uint64_t seed = 1000 + (uint64_t)a->idx;
    prng_fill(&seed, out, len);
    if (write_all(fd, out, len) == 0 && shutdown(fd, SHUT_WR) == 0) {
        char *in = NULL;
        ssize_t n = read_all(fd, &in, len * 2);
        a->ok = n == (ssize_t)len && memcmp(in, out, len) == 0;
        free(in);
    }
    free(out);
    close(fd);
    return NULL;
}

/* 50 concurrent connections through one forward, each echoing 256 KiB. */
static void test_concurrent_50(void **state)
{
    env *e = *state;
    ENV_REQUIRE(e);
    uint16_t hp;
    sbx_proc *p = serve_exposed(e, "echo", 9000, &hp);
    enum { N = 50 };
    pthread_t th[N];
    conc_arg args[N];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, N + 1);
    for (int i = 0; i < N; i++) {
        args[i] = (conc_arg){.port = hp, .idx = i, .bar = &bar};
        pthread_create(&th[i], NULL, conc_worker, &args[i]);
    }
    pthread_barrier_wait(&bar);
    sbx_portfwd_port pp = wait_active(e->fwd, e->id, N, 5000);
    assert_int_equal(pp.active, N);
    pthread_barrier_wait(&bar);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        ok += args[i].ok;
    }
    pthread_barrier_destroy(&bar);
    assert_int_equal(ok, N);
    pp = wait_active(e->fwd, e->id, 0, 5000);
    assert_int_equal(pp.active, 0);
    assert_int_equal(pp.bytes_in, (uint64_t)N * 256 * 1024);
    assert_int_equal(pp.bytes_out, (uint64_t)N * 256 * 1024);
    sbx_proc_unref(p);
}

/* Raw TCP: request/response turns of many sizes come back unchanged on one long connection. */
static void test_raw_tcp_echo(void **state)
{
    env *e = *state;
    ENV_REQUIRE(e);
    uint16_t hp;
    sbx_proc *p = serve_exposed(e, "echo", 7000, &hp);
    int fd = tcp_connect(hp);
    assert_true(fd >= 0);
    static const size_t sizes[] = {1, 2, 100, 1460, 4096, 65535, 65536, 300000, 1 << 20};
    uint64_t seed = 42;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t len = sizes[i];
        char *out = malloc(len), *in = malloc(len);
        prng_fill(&seed, out, len);
        /* write and read at once so large turns cannot deadlock on full buffers */
        size_t w = 0, r = 0;
        while (r < len) {
            struct pollfd pfd = {.fd = fd, .events = POLLIN | (w < len ? POLLOUT : 0)};
            assert_true(poll(&pfd, 1, 5000) > 0);
            if ((pfd.revents & POLLOUT) && w < len) {
                ssize_t n = send(fd, out + w, len - w, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n > 0)
                    w += (size_t)n;
            }
            if (pfd.revents & POLLIN) {
                ssize_t n = recv(fd, in + r, len - r, MSG_DONTWAIT);
                assert_true(n > 0 || (n < 0 && errno == EAGAIN));
                if (n > 0)
                    r += (size_t)n;
            }
        }
        assert_memory_equal(in, out, len);
        free(out);
        free(in);
    }
    /* binary zeros and CR/LF are data like any other */
    char odd[] = {0, '\r', '\n', 0, (char)0xff, 'x'};
    assert_int_equal(write_all(fd, odd, sizeof odd), 0);
    shutdown(fd, SHUT_WR);
    char *in = NULL;
    assert_int_equal(read_all(fd, &in, 1024), (ssize_t)sizeof odd);
    assert_memory_equal(in, odd, sizeof odd);
    free(in);
    close(fd);
    sbx_proc_unref(p);
}

static size_t curl_collect(char *ptr, size_t size, size_t nmemb, void *arg)
{
    hash64 *h = arg;
    hash_add(h, ptr, size * nmemb);
    return size * nmemb;
}

/* A chunked HTTP response arrives byte for byte, chunk by chunk as it is sent, and decodes. */
static void test_chunked_http(void **state)
{
    env *e = *state;
    ENV_REQUIRE(e);
    uint16_t hp;
    sbx_proc *p = serve_exposed(e, "chunked", 7100, &hp);

    /* what srv.py sends */
    char *want = malloc(65536), *body = malloc(65536);
    size_t wn = (size_t)snprintf(want, 65536,
                                 "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                 "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    size_t bn = 0;
    for (int i = 0; i < 5; i++) {
        char piece[16];
        int pl = snprintf(piece, sizeof piece, "chunk-%d;", i);
        size_t dl = (size_t)pl * (size_t)(i * 300 + 1);
        wn += (size_t)snprintf(want + wn, 65536 - wn, "%zx\r\n", dl);
        for (int k = 0; k < i * 300 + 1; k++) {
            memcpy(want + wn, piece, (size_t)pl);
            memcpy(body + bn, piece, (size_t)pl);
            wn += (size_t)pl;
            bn += (size_t)pl;
        }
        memcpy(want + wn, "\r\n", 2);
        wn += 2;
    }
    memcpy(want + wn, "0\r\n\r\n", 5);
    wn += 5;

    int fd = tcp_connect(hp);
    assert_true(fd >= 0);
    const char *req = "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(write_all(fd, req, strlen(req)), 0);
    uint64_t t0 = sbx_mono_ms();
    char first[256];
    ssize_t n1 = read(fd, first, sizeof first);
    uint64_t t_first = sbx_mono_ms() - t0;
    assert_true(n1 > 0);
    char *rest = NULL;
    ssize_t n2 = read_all(fd, &rest, 1 << 20);
    uint64_t t_all = sbx_mono_ms() - t0;
    assert_true(n2 >= 0);
    assert_int_equal((size_t)n1 + (size_t)n2, wn);
    assert_memory_equal(first, want, (size_t)n1);
    assert_memory_equal(rest, want + n1, (size_t)n2);
    /* streamed: the first bytes came long before the last (5 chunks 100 ms apart) */
    assert_true(t_first < 150);
    assert_true(t_all >= 350);
    free(rest);
    close(fd);

    /* and libcurl decodes it to the body */
    CURL *h = curl_easy_init();
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/stream", (unsigned)hp);
    hash64 got, exp;
    hash_init(&got);
    hash_init(&exp);
    hash_add(&exp, body, bn);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, curl_collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &got);
    assert_int_equal(curl_easy_perform(h), CURLE_OK);
    curl_easy_cleanup(h);
    assert_int_equal(got.n, bn);
    assert_true(got.h == exp.h);
    free(want);
    free(body);
    sbx_proc_unref(p);
}

/* The client's shutdown(SHUT_WR) reaches the server as EOF while the way back stays open; the
 * server's FIN then reaches the client. */
static void test_half_close(void **state)
{
    env *e = *state;
    ENV_REQUIRE(e);
    uint16_t hp;
    sbx_proc *p = serve_exposed(e, "echo", 7200, &hp);
    int fd = tcp_connect(hp);
    assert_true(fd >= 0);
    const char msg[] = "one way, then the other";
    assert_int_equal(write_all(fd, msg, sizeof msg - 1), 0);
    /* nothing comes back as EOF yet: the connection is open both ways */
    char buf[64];
    ssize_t n = 0;
    while ((size_t)n < sizeof msg - 1) {
        ssize_t r = read(fd, buf + n, sizeof buf - (size_t)n);
        assert_true(r > 0);
        n += r;
    }
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 200), 0);
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    /* the echo server sees EOF, shuts its side: we read EOF (0), not a reset */
    assert_true(poll(&pfd, 1, 5000) > 0);
    assert_int_equal(read(fd, buf, sizeof buf), 0);
    close(fd);
    assert_int_equal(wait_active(e->fwd, e->id, 0, 2000).active, 0);
    sbx_proc_unref(p);
}

/* A server that does not read: the forwarder stops reading the client (bounded buffering);
 * once the server reads, everything arrives. */
static void test_backpressure(void **state)
{
    env *e = *state;
    ENV_REQUIRE(e);
    uint16_t hp;
    sbx_proc *p = serve_exposed(e, "sink", 7300, &hp);
    int fd = tcp_connect(hp);
    assert_true(fd >= 0);
    char *buf = calloc(1, 1 << 20);
    size_t sent = 0;
    uint64_t t0 = sbx_mono_ms();
    /* the sink sleeps 1 s before reading: fill until writes stop making progress */
    while (sbx_mono_ms() - t0 < 600) {
        ssize_t n = send(fd, buf, 1 << 20, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0)
            sent += (size_t)n;
        else
            usleep(10000);
    }
    fprintf(stderr, "buffered while the server did not read: %zu KiB\n", sent / 1024);
    /* socket buffers on both legs plus one pipe: a few MiB at most, never unbounded */
    assert_true(sent > 0);
    assert_true(sent < 32u * 1024 * 1024);
    size_t total = 64u * 1024 * 1024;
    while (sent < total) {
        size_t len = total - sent < (1 << 20) ? total - sent : (1 << 20);
        assert_int_equal(write_all(fd, buf, len), 0);
        sent += len;
    }
    shutdown(fd, SHUT_WR);
    char *in = NULL;
    assert_true(read_all(fd, &in, 64) > 0);
    assert_int_equal(strtoull(in, NULL, 10), total);
    free(in);
    free(buf);
    close(fd);
    sbx_proc_unref(p);
}

/* Beyond max_conns live connections per sandbox, new ones are reset at once. */
static void test_conn_cap(void **state)
{
    env *e = *state;
    ENV_REQUIRE(e);
    sbx_portfwd *f;
    sbx_portfwd_cfg cfg = {.max_conns = 5};
    assert_int_equal(sbx_portfwd_create(&cfg, &f), 0);
    sbx_proc *p = env_pyserver(e, "echo", 7400);
    assert_non_null(p);
    uint16_t hp;
    assert_int_equal(sbx_portfwd_expose_pid(f, e->id, sbx_sandbox_init_pid(e->sb), 7400, &hp), 0);
    int fds[5];
    for (int i = 0; i < 5; i++) {
        fds[i] = tcp_connect(hp);
        assert_true(fds[i] >= 0);
        assert_int_equal(write_all(fds[i], "x", 1), 0);
        char c;
        assert_int_equal(read(fds[i], &c, 1), 1); /* relayed: live */
    }
    int extra = tcp_connect(hp);
    assert_true(extra >= 0);
    write_all(extra, "y", 1);
    char c;
    struct pollfd pfd = {.fd = extra, .events = POLLIN};
    assert_true(poll(&pfd, 1, 2000) > 0);
    ssize_t n = read(extra, &c, 1);
    assert_true(n == 0 || (n < 0 && errno == ECONNRESET));
    close(extra);
    sbx_portfwd_port pp;
    assert_int_equal(sbx_portfwd_list(f, e->id, &pp, 1), 1);
    assert_int_equal(pp.refused, 1);
    assert_int_equal(pp.active, 5);
    /* one closes: room for a new one */
    close(fds[0]);
    wait_active(f, e->id, 4, 2000);
    fds[0] = tcp_connect(hp);
    assert_int_equal(write_all(fds[0], "z", 1), 0);
    assert_int_equal(read(fds[0], &c, 1), 1);
    assert_int_equal(c, 'z');
    for (int i = 0; i < 5; i++)
        close(fds[i]);
    sbx_portfwd_destroy(f);
    sbx_proc_unref(p);
}

/* Nothing listens inside: the client's connection is reset promptly; failed counts it. */
static void test_nothing_listening(void **state)
{
    env *e = *state;
    ENV_REQUIRE(e);
    uint16_t hp = env_expose(e, 7500);
    assert_true(hp > 0);
    int fd = tcp_connect(hp);
    assert_true(fd >= 0); /* the host listener accepts... */
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    uint64_t t0 = sbx_mono_ms();
    assert_true(poll(&pfd, 1, 2000) > 0);
    char c;
    ssize_t n = read(fd, &c, 1);
    assert_true(n < 0 && errno == ECONNRESET); /* ...and resets when the inside refuses */
    assert_true(sbx_mono_ms() - t0 < 500);
    close(fd);
    sbx_portfwd_port pp;
    sbx_portfwd_list(e->fwd, e->id, &pp, 1);
    assert_int_equal(pp.failed, 1);
    assert_int_equal(pp.active, 0);
}

/* Closing the sandbox's ports resets live connections, refuses new ones and frees the host
 * port for anyone to bind. */
static void test_close_frees_port(void **state)
{
    env *e = *state;
    ENV_REQUIRE(e);
    uint16_t hp;
    sbx_proc *p = serve_exposed(e, "echo", 7600, &hp);
    int fd = tcp_connect(hp);
    assert_true(fd >= 0);
    assert_int_equal(write_all(fd, "ping", 4), 0);
    char buf[8];
    assert_int_equal(read(fd, buf, 4), 4);

    assert_int_equal(sbx_portfwd_close_sandbox(e->fwd, e->id), 1);
    /* the live connection is gone */
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    assert_true(poll(&pfd, 1, 2000) > 0);
    ssize_t n = read(fd, buf, sizeof buf);
    assert_true(n == 0 || (n < 0 && errno == ECONNRESET));
    close(fd);
    /* nothing listens on the host port any more */
    assert_int_equal(tcp_connect(hp), -ECONNREFUSED);
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(hp)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(s, 1), 0);
    close(s);
    sbx_portfwd_port pp;
    assert_int_equal(sbx_portfwd_list(e->fwd, e->id, &pp, 1), 0);
    assert_int_equal(sbx_portfwd_close_sandbox(e->fwd, e->id), -ENOENT);
    /* the sandbox can expose again afterwards (a new record) */
    uint16_t hp2 = env_expose(e, 7600);
    assert_true(hp2 > 0);
    fd = tcp_connect(hp2);
    assert_int_equal(write_all(fd, "pong", 4), 0);
    assert_int_equal(read(fd, buf, 4), 4);
    assert_memory_equal(buf, "pong", 4);
    close(fd);
    sbx_proc_unref(p);
}

/* Bad arguments, a replaced namespace under the same key, the max_ports cap. */
static void test_expose_errors(void **state)
{
    env *e = *state;
    ENV_REQUIRE(e);
    uint16_t hp;
    pid_t ipid = sbx_sandbox_init_pid(e->sb);
    assert_int_equal(sbx_portfwd_expose_pid(e->fwd, e->id, ipid, 0, &hp), -EINVAL);
    assert_int_equal(sbx_portfwd_expose_pid(e->fwd, "", ipid, 80, &hp), -EINVAL);
    assert_int_equal(sbx_portfwd_expose(e->fwd, e->id, -1, 80, &hp), -EINVAL);
    assert_int_equal(sbx_portfwd_expose_pid(e->fwd, e->id, ipid, 80, &hp), 0);
    /* same key, another namespace (the host's): the caller forgot close_sandbox */
    assert_int_equal(sbx_portfwd_expose_pid(e->fwd, e->id, getpid(), 81, &hp), -ESTALE);

    sbx_portfwd *f;
    sbx_portfwd_cfg cfg = {.max_ports = 2};
    assert_int_equal(sbx_portfwd_create(&cfg, &f), 0);
    assert_int_equal(sbx_portfwd_expose_pid(f, "k", ipid, 1, &hp), 0);
    assert_int_equal(sbx_portfwd_expose_pid(f, "k", ipid, 2, &hp), 0);
    assert_int_equal(sbx_portfwd_expose_pid(f, "k", ipid, 3, &hp), -ENOSPC);
    assert_int_equal(sbx_portfwd_expose_pid(f, "k", ipid, 2, &hp), 0); /* idempotent */
    sbx_portfwd_destroy(f);

    sbx_portfwd_cfg bad = {.bind_host = "localhost"};
    assert_int_equal(sbx_portfwd_create(&bad, &f), -EINVAL);
}

/* cfg.copy (recv/send through user-space buffers instead of splice): same bytes, same
 * half-close. */
static void test_copy_mode(void **state)
{
    env *e = *state;
    ENV_REQUIRE(e);
    sbx_portfwd *f;
    sbx_portfwd_cfg cfg = {.copy = true, .pipe_bytes = 65536};
    assert_int_equal(sbx_portfwd_create(&cfg, &f), 0);
    sbx_proc *p = env_pyserver(e, "echo", 7800);
    assert_non_null(p);
    uint16_t hp;
    assert_int_equal(sbx_portfwd_expose_pid(f, e->id, sbx_sandbox_init_pid(e->sb), 7800, &hp), 0);
    int fd = tcp_connect(hp);
    assert_true(fd >= 0);
    size_t len = 3u << 20;
    char *out = malloc(len);
    uint64_t seed = 7;
    prng_fill(&seed, out, len);
    /* the echo server writes back while we write: interleave so no side blocks */
    size_t w = 0, r = 0;
    char *in = malloc(len);
    while (r < len) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN | (w < len ? POLLOUT : 0)};
        assert_true(poll(&pfd, 1, 5000) > 0);
        if ((pfd.revents & POLLOUT) && w < len) {
            ssize_t n = send(fd, out + w, len - w, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n > 0)
                w += (size_t)n;
            if (w == len)
                shutdown(fd, SHUT_WR);
        }
        if (pfd.revents & POLLIN) {
            ssize_t n = recv(fd, in + r, len - r, MSG_DONTWAIT);
            if (n > 0)
                r += (size_t)n;
        }
    }
    assert_memory_equal(in, out, len);
    char c;
    assert_int_equal(read(fd, &c, 1), 0); /* the server's FIN after our half-close */
    close(fd);
    free(in);
    free(out);
    sbx_portfwd_destroy(f);
    sbx_proc_unref(p);
}

/* --port-bind ::1: the listener is IPv6, the URL has brackets, data flows. */
static void test_ipv6_bind(void **state)
{
    env *e = *state;
    ENV_REQUIRE(e);
    sbx_portfwd *f;
    sbx_portfwd_cfg cfg = {.bind_host = "[::1]"};
    assert_int_equal(sbx_portfwd_create(&cfg, &f), 0);
    assert_string_equal(sbx_portfwd_bind_host(f), "::1");
    sbx_proc *p = env_pyserver(e, "echo", 7700);
    assert_non_null(p);
    uint16_t hp;
    assert_int_equal(sbx_portfwd_expose_pid(f, e->id, sbx_sandbox_init_pid(e->sb), 7700, &hp), 0);
    char url[64], want[64];
    assert_true(sbx_portfwd_url(f, hp, url, sizeof url) > 0);
    snprintf(want, sizeof want, "http://[::1]:%u/", (unsigned)hp);
    assert_string_equal(url, want);
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons(hp)};
    sa.sin6_addr = in6addr_loopback;
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(write_all(fd, "six", 3), 0);
    shutdown(fd, SHUT_WR);
    char *in = NULL;
    assert_int_equal(read_all(fd, &in, 64), 3);
    assert_memory_equal(in, "six", 3);
    free(in);
    close(fd);
    sbx_portfwd_destroy(f);
    sbx_proc_unref(p);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_http_server_reachable, env_setup, env_teardown),
    cmocka_unit_test_setup_teardown(test_download_100mb, env_setup, env_teardown),
    cmocka_unit_test_setup_teardown(test_concurrent_50, env_setup, env_teardown),
    cmocka_unit_test_setup_teardown(test_raw_tcp_echo, env_setup, env_teardown),
    cmocka_unit_test_setup_teardown(test_chunked_http, env_setup, env_teardown),
    cmocka_unit_test_setup_teardown(test_half_close, env_setup, env_teardown),
    cmocka_unit_test_setup_teardown(test_backpressure, env_setup, env_teardown),
    cmocka_unit_test_setup_teardown(test_conn_cap, env_setup, env_teardown),
    cmocka_unit_test_setup_teardown(test_nothing_listening, env_setup, env_teardown),
    cmocka_unit_test_setup_teardown(test_close_frees_port, env_setup, env_teardown),
    cmocka_unit_test_setup_teardown(test_expose_errors, env_setup, env_teardown),
    cmocka_unit_test_setup_teardown(test_ipv6_bind, env_setup, env_teardown),
    cmocka_unit_test_setup_teardown(test_copy_mode, env_setup, env_teardown),
};

SBX_TEST_MAIN(tests)
