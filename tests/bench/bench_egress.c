/* bench_egress.c (sbx-bench-egress): the egress proxies against direct loopback to the same
 * servers in the same run. The proxies (services/executor/egress, the shipped code) run in this
 * process on the host's network namespace with ephemeral ports, a policy allowing 127.0.0.2 and
 * --egress-allow-private 127.0.0.2/32, logging at info as the executor does; the servers are
 * threads on 127.0.0.2. Measured, alternating direct / proxied rounds:
 *  - time to first byte of a new connection: connect, send a byte, read the answer's first byte
 *    (direct; through an HTTP CONNECT tunnel, whose 200 is read first; through SOCKS5 with the
 *    name resolved by the proxy) - the goal is + <= 0.5 ms per connection;
 *  - bulk throughput of one connection reading 2 GiB (goal >= 1 GB/s through the proxy).
 * Prints medians and ratios; never asserts.
 *
 * Usage: sbx-bench-egress [--quick]   (log lines go to stderr: 2>/dev/null) */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "egress.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int listen_on(const char *ip, uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, ip, &sa.sin_addr);
    socklen_t sl = sizeof sa;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 1024) < 0) {
        perror("bind 127.0.0.2");
        exit(1);
    }
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* One byte in, one byte out, close: sequential connections. */
static void *ttfb_server(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    for (;;) {
        int c = accept(lfd, NULL, NULL);
        if (c < 0)
            return NULL;
        char b;
        if (recv(c, &b, 1, 0) == 1) {
            ssize_t w = send(c, "R", 1, MSG_NOSIGNAL);
            (void)w;
        }
        close(c);
    }
}

static size_t bulk_bytes = 2ull << 30;

static void *bulk_server(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    static char buf[1 << 20];
    for (;;) {
        int c = accept(lfd, NULL, NULL);
        if (c < 0)
            return NULL;
        char b;
        if (recv(c, &b, 1, 0) == 1)
            for (size_t sent = 0; sent < bulk_bytes;) {
                ssize_t n = send(c, buf, sizeof buf, MSG_NOSIGNAL);
                if (n <= 0)
                    break;
                sent += (size_t)n;
            }
        close(c);
    }
}

static int dial(const char *ip, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        perror("connect");
        exit(1);
    }
    return fd;
}

enum { DIRECT, CONNECT, SOCKS };
static const char *const MODE[] = {"direct", "http-connect", "socks5h"};
static uint16_t proxy_http, proxy_socks;

/* A connection to 127.0.0.2:port, directly or through a proxy, ready for payload. */
static int open_conn(int mode, uint16_t port)
{
    if (mode == DIRECT)
        return dial("127.0.0.2", port);
    if (mode == CONNECT) {
        int fd = dial("127.0.0.1", proxy_http);
        char req[96], head[256];
        int n = snprintf(req, sizeof req, "CONNECT 127.0.0.2:%u HTTP/1.1\r\n\r\n", port);
        if (send(fd, req, (size_t)n, 0) != n)
            exit(1);
        size_t h = 0;
        while (h < sizeof head - 1 && recv(fd, head + h, 1, 0) == 1) {
            h++;
            if (h >= 4 && memcmp(head + h - 4, "\r\n\r\n", 4) == 0)
                break;
        }
        if (h < 12 || memcmp(head + 9, "200", 3) != 0) {
            fprintf(stderr, "proxy refused\n");
            exit(1);
        }
        return fd;
    }
    int fd = dial("127.0.0.1", proxy_socks);
    uint8_t g[3] = {5, 1, 0}, m[2], r[10];
    uint8_t q[32] = {5, 1, 0, 3, 9};
    memcpy(q + 5, "127.0.0.2", 9);
    q[14] = (uint8_t)(port >> 8);
    q[15] = (uint8_t)port;
    if (send(fd, g, 3, 0) != 3 || recv(fd, m, 2, MSG_WAITALL) != 2 || send(fd, q, 16, 0) != 16 ||
        recv(fd, r, 10, MSG_WAITALL) != 10 || r[1] != 0) {
        fprintf(stderr, "socks refused\n");
        exit(1);
    }
    return fd;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median time to first byte over n new connections, microseconds. */
static double ttfb_round(int mode, uint16_t port, int n)
{
    double *v = malloc((size_t)n * sizeof *v);
    for (int i = 0; i < n; i++) {
        double t0 = now_s();
        int fd = open_conn(mode, port);
        char b;
        if (send(fd, "x", 1, 0) != 1 || recv(fd, &b, 1, 0) != 1)
            exit(1);
        v[i] = (now_s() - t0) * 1e6;
        close(fd);
    }
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    double med = v[n / 2];
    free(v);
    return med;
}

/* GB/s of one connection reading bulk_bytes. */
static double bulk_round(int mode, uint16_t port)
{
    static char buf[1 << 20];
    int fd = open_conn(mode, port);
    double t0 = now_s();
    if (send(fd, "x", 1, 0) != 1)
        exit(1);
    size_t got = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    double dt = now_s() - t0;
    close(fd);
    return (double)got / dt / 1e9;
}

int main(int argc, char **argv)
{
    bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    int conns = quick ? 300 : 1000, rounds = quick ? 3 : 5, brounds = quick ? 2 : 3;
    if (quick)
        bulk_bytes = 512u << 20;
    uint16_t tport, bport;
    int tl = listen_on("127.0.0.2", &tport), bl = listen_on("127.0.0.2", &bport);
    pthread_t t1, t2;
    pthread_create(&t1, NULL, ttfb_server, (void *)(intptr_t)tl);
    pthread_create(&t2, NULL, bulk_server, (void *)(intptr_t)bl);
    pthread_detach(t1);
    pthread_detach(t2);
    sbx_egress_cfg cfg = {.allow_private = "127.0.0.2/32", .ephemeral_ports = true};
    sbx_egress *e = NULL;
    char err[256];
    if (sbx_egress_new(&cfg, &e, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    const char *allow[] = {"127.0.0.2"};
    sbx_egress_policy *p = NULL;
    sbx_egress_policy_new(allow, 1, NULL, 0, "network", &p, err, sizeof err);
    sbx_egress_sb *sb = sbx_egress_sb_new(e, "bench", "bench", p);
    sbx_egress_policy_unref(p);
    if (sbx_egress_sb_start(sb, -1) < 0)
        return 1;
    sbx_egress_sb_ports(sb, &proxy_http, &proxy_socks);

    double tt[3][8] = {{0}}, bw[2][8] = {{0}};
    for (int m = 0; m < 3; m++)
        ttfb_round(m, tport, 50); /* warm-up */
    for (int r = 0; r < rounds; r++)
        for (int m = 0; m < 3; m++)
            tt[m][r] = ttfb_round(m, tport, conns);
    for (int r = 0; r < brounds; r++)
        for (int m = 0; m < 2; m++)
            bw[m][r] = bulk_round(m, bport);
    double med[3], bmed[2];
    for (int m = 0; m < 3; m++) {
        qsort(tt[m], (size_t)rounds, sizeof(double), cmp_d);
        med[m] = tt[m][rounds / 2];
    }
    for (int m = 0; m < 2; m++) {
        qsort(bw[m], (size_t)brounds, sizeof(double), cmp_d);
        bmed[m] = bw[m][brounds / 2];
    }
    printf("time to first byte of a new connection (median of %d rounds x %d connections):\n",
           rounds, conns);
    printf("  %-13s %8.1f us\n", MODE[0], med[0]);
    for (int m = 1; m < 3; m++)
        printf("  %-13s %8.1f us  (+%.3f ms per connection, %.2fx direct; goal +<= 0.5 ms)\n",
               MODE[m], med[m], (med[m] - med[0]) / 1000.0, med[m] / med[0]);
    printf("bulk, one connection reading %zu MiB (median of %d rounds):\n", bulk_bytes >> 20,
           brounds);
    printf("  direct        %8.2f GB/s\n", bmed[0]);
    printf("  http-connect  %8.2f GB/s  (%.2fx direct; goal >= 1 GB/s)\n", bmed[1],
           bmed[1] / bmed[0]);
    sbx_egress_sb_free(sb);
    sbx_egress_free(e);
    close(tl);
    close(bl);
    return 0;
}
