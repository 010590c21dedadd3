/* bench_ports.c (sbx-bench-ports): the port forwarder against direct loopback to the same
 * server in the same run. A child holds a fresh network namespace (lo up, nothing else); the
 * servers are threads of this process listening inside it (a minimal keep-alive HTTP/1.1
 * responder and a bulk sender) plus, optionally, `python3 -m http.server`. The "direct" client
 * socket is created inside the namespace (setns), the "forwarded" one connects to the host
 * port. Runs alternate direct / forwarded rounds and report medians and the ratios issue 5
 * asks for: forwarded request latency <= 1.3x direct, forwarded bulk throughput >= 1 GB/s.
 *
 * Usage: sbx-bench-ports [--quick] [--no-python] [--bulk-only | --latency-only]
 *                        [--pipe-bytes N]
 * Environment knobs for experiments: BENCH_COPY=1 relays with recv/send instead of splice;
 * BENCH_SKIP_DIRECT=1 / BENCH_SKIP_FWD=1 skip one side of the bulk rounds (for perf). */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "portfwd.h"

#define HTTP_PORT 8080
#define BULK_PORT 8081
#define PY_PORT 8082

static int g_nsfd = -1, g_selfns = -1;
static size_t g_bulk_bytes = 2ull << 30;

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* ---- the namespace and its servers ------------------------------------------------------- */

static pid_t make_netns(void)
{
    int p[2];
    if (pipe(p) < 0)
        die("pipe");
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (unshare(CLONE_NEWNET) < 0)
            die("unshare(CLONE_NEWNET)");
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        struct ifreq ifr = {0};
        snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
        ioctl(s, SIOCGIFFLAGS, &ifr);
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
            die("lo up");
        close(s);
        char c = 1;
        if (write(p[1], &c, 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    char c;
    close(p[1]);
    if (read(p[0], &c, 1) != 1)
        die("netns child");
    close(p[0]);
    return pid;
}

/* A socket created inside the namespace (this thread steps in and back out). */
static int ns_socket(void)
{
    if (setns(g_nsfd, CLONE_NEWNET) < 0)
        die("setns");
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (setns(g_selfns, CLONE_NEWNET) < 0)
        die("setns back");
    return fd;
}

static int listen_ns(uint16_t port)
{
    int fd = ns_socket();
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 1024) < 0)
        die("listen in netns");
    return fd;
}

static const char RESP[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
static const char RESP_CLOSE[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

/* Keep-alive HTTP/1.1: answers each request (headers end at a blank line). */
static void *http_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char buf[8192];
    size_t have = 0;
    for (;;) {
        ssize_t n = read(fd, buf + have, sizeof buf - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        char *end;
        while ((end = memmem(buf, have, "\r\n\r\n", 4)) != NULL) {
            size_t used = (size_t)(end - buf) + 4;
            bool close_it = memmem(buf, used, "Connection: close", 17) != NULL;
            const char *r = close_it ? RESP_CLOSE : RESP;
            size_t rl = close_it ? sizeof RESP_CLOSE - 1 : sizeof RESP - 1;
            if (write(fd, r, rl) != (ssize_t)rl || close_it)
                goto out;
            memmove(buf, buf + used, have - used);
            have -= used;
        }
        if (have == sizeof buf)
            break;
    }
out:
    close(fd);
    return NULL;
}

/* Bulk: sends g_bulk_bytes then closes. */
static void *bulk_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    static char buf[1 << 20];
    size_t left = g_bulk_bytes;
    while (left > 0) {
        ssize_t n = send(fd, buf, left < sizeof buf ? left : sizeof buf, MSG_NOSIGNAL);
        if (n <= 0)
            break;
        left -= (size_t)n;
    }
    close(fd);
    return NULL;
}

typedef struct {
    int lfd;
    void *(*fn)(void *);
} acceptor;

static void *accept_loop(void *arg)
{
    acceptor *a = arg;
    for (;;) {
        int fd = accept4(a->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        pthread_create(&t, &at, a->fn, (void *)(intptr_t)fd);
        pthread_attr_destroy(&at);
    }
    return NULL;
}

static void serve(uint16_t port, void *(*fn)(void *))
{
    acceptor *a = malloc(sizeof *a);
    a->lfd = listen_ns(port);
    a->fn = fn;
    pthread_t t;
    pthread_create(&t, NULL, accept_loop, a);
    pthread_detach(t);
}

static char g_pydir[] = "/tmp/sbx-bench-ports-XXXXXX";

/* python3 -m http.server in the namespace, serving a directory with a 2-byte index.html. */
static pid_t start_python(void)
{
    char idx[64];
    if (!mkdtemp(g_pydir))
        die("mkdtemp");
    snprintf(idx, sizeof idx, "%s/index.html", g_pydir);
    FILE *fp = fopen(idx, "w");
    if (!fp)
        die("index.html");
    fputs("ok", fp);
    fclose(fp);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (setns(g_nsfd, CLONE_NEWNET) < 0)
            _exit(127);
        int nul = open("/dev/null", O_RDWR);
        dup2(nul, 1);
        dup2(nul, 2);
        execlp("/usr/bin/python3", "python3", "-m", "http.server", "8082", "--bind", "127.0.0.1",
               "--directory", g_pydir, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* ---- clients ------------------------------------------------------------------------------ */

static int connect_to(bool direct, uint16_t port)
{
    int fd = direct ? ns_socket() : socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("connect");
    return fd;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    double p50, p99;
} lat;

static lat summarize(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return (lat){v[n / 2], v[(int)(n * 0.99)]};
}

static const char REQ[] = "GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
static const char REQ_CLOSE[] = "GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";

static void read_response(int fd, size_t want)
{
    char buf[256];
    size_t got = 0;
    while (got < want) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            die("read response");
        got += (size_t)n;
    }
}

/* Keep-alive: n sequential requests on one connection. */
static lat bench_keepalive(bool direct, uint16_t port, int n)
{
    double *v = malloc(sizeof *v * (size_t)n);
    int fd = connect_to(direct, port);
    for (int i = 0; i < n + 200; i++) {
        double t0 = now_us();
        if (write(fd, REQ, sizeof REQ - 1) != (ssize_t)sizeof REQ - 1)
            die("write");
        read_response(fd, sizeof RESP - 1);
        if (i >= 200)
            v[i - 200] = now_us() - t0; /* the first 200 warm up */
    }
    close(fd);
    lat l = summarize(v, n);
    free(v);
    return l;
}

/* A new connection per request (connect, request, response, server closes). */
static lat bench_newconn(bool direct, uint16_t port, int n)
{
    double *v = malloc(sizeof *v * (size_t)n);
    for (int i = 0; i < n; i++) {
        double t0 = now_us();
        int fd = connect_to(direct, port);
        if (write(fd, REQ_CLOSE, sizeof REQ_CLOSE - 1) != (ssize_t)sizeof REQ_CLOSE - 1)
            die("write");
        char buf[512];
        while (read(fd, buf, sizeof buf) > 0)
            ;
        v[i] = now_us() - t0;
        close(fd);
    }
    lat l = summarize(v, n);
    free(v);
    return l;
}

static size_t curl_sink(char *p, size_t s, size_t n, void *a)
{
    (void)p;
    (void)a;
    return s * n;
}

static curl_socket_t curl_opensocket(void *arg, curlsocktype purpose, struct curl_sockaddr *addr)
{
    (void)arg;
    (void)purpose;
    (void)addr;
    return ns_socket();
}

/* libcurl GET per request (a handle reused: keep-alive if the server allows it). */
static lat bench_curl(bool direct, uint16_t port, int n)
{
    double *v = malloc(sizeof *v * (size_t)n);
    CURL *h = curl_easy_init();
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", (unsigned)port);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, curl_sink);
    if (direct)
        curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, curl_opensocket);
    for (int i = 0; i < n + 20; i++) {
        double t0 = now_us();
        if (curl_easy_perform(h) != CURLE_OK)
            die("curl");
        if (i >= 20)
            v[i - 20] = now_us() - t0;
    }
    curl_easy_cleanup(h);
    lat l = summarize(v, n);
    free(v);
    return l;
}

static double bench_bulk(bool direct, uint16_t port)
{
    int fd = connect_to(direct, port);
    static char buf[1 << 20];
    size_t got = 0;
    double t0 = now_us();
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    double dt = now_us() - t0;
    close(fd);
    if (got != g_bulk_bytes) {
        fprintf(stderr, "bulk: got %zu of %zu bytes\n", got, g_bulk_bytes);
        exit(1);
    }
    return (double)got / dt / 1e3; /* GB/s */
}

/* ---- main --------------------------------------------------------------------------------- */

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

#define ROUNDS 5

typedef lat (*lat_fn)(bool, uint16_t, int);

static void run_latency(const char *name, lat_fn fn, uint16_t direct_port, uint16_t fwd_port, int n)
{
    double d50[ROUNDS], f50[ROUNDS], d99[ROUNDS], f99[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        lat a = fn(true, direct_port, n), b = fn(false, fwd_port, n);
        d50[r] = a.p50, d99[r] = a.p99, f50[r] = b.p50, f99[r] = b.p99;
    }
    double dm = median(d50, ROUNDS), fm = median(f50, ROUNDS);
    printf("%-34s direct p50 %7.1f us p99 %7.1f | forwarded p50 %7.1f us p99 %7.1f | "
           "ratio p50 %.2fx (+%.1f us)\n",
           name, dm, median(d99, ROUNDS), fm, median(f99, ROUNDS), fm / dm, fm - dm);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    bool quick = false, python = true, latency = true, bulk = true;
    uint32_t pipe_bytes = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = true;
        else if (strcmp(argv[i], "--no-python") == 0)
            python = false;
        else if (strcmp(argv[i], "--bulk-only") == 0)
            latency = python = false;
        else if (strcmp(argv[i], "--latency-only") == 0)
            bulk = false;
        else if (strcmp(argv[i], "--pipe-bytes") == 0 && i + 1 < argc)
            pipe_bytes = (uint32_t)strtoul(argv[++i], NULL, 0);
        else {
            fprintf(stderr,
                    "usage: %s [--quick] [--no-python] [--bulk-only | --latency-only] "
                    "[--pipe-bytes N]\n",
                    argv[0]);
            return 2;
        }
    }
    if (quick)
        g_bulk_bytes = 512u << 20;
    sbx_log_set_level(SBX_LOG_WARN);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    pid_t holder = make_netns();
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/net", (int)holder);
    g_nsfd = open(path, O_RDONLY | O_CLOEXEC);
    g_selfns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (g_nsfd < 0 || g_selfns < 0)
        die("open ns");
    serve(HTTP_PORT, http_conn);
    serve(BULK_PORT, bulk_conn);
    pid_t py = python ? start_python() : -1;

    sbx_portfwd *f;
    sbx_portfwd_cfg cfg = {.pipe_bytes = pipe_bytes, .copy = getenv("BENCH_COPY") != NULL};
    if (sbx_portfwd_create(&cfg, &f) < 0)
        die("sbx_portfwd_create");
    uint16_t hp_http, hp_bulk, hp_py = 0;
    if (sbx_portfwd_expose(f, "bench", g_nsfd, HTTP_PORT, &hp_http) < 0 ||
        sbx_portfwd_expose(f, "bench", g_nsfd, BULK_PORT, &hp_bulk) < 0 ||
        (python && sbx_portfwd_expose(f, "bench", g_nsfd, PY_PORT, &hp_py) < 0))
        die("expose");

    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    printf("sbx-bench-ports: %ld CPUs, %d rounds alternating direct/forwarded, medians\n", ncpu,
           ROUNDS);
    int n = quick ? 2000 : 10000;
    if (latency)
        run_latency("C server keep-alive request", bench_keepalive, HTTP_PORT, hp_http, n);
    if (latency)
        run_latency("C server new connection/request", bench_newconn, HTTP_PORT, hp_http, n / 5);
    if (latency)
        run_latency("C server libcurl keep-alive GET", bench_curl, HTTP_PORT, hp_http, n / 2);
    if (python) {
        /* wait until python listens */
        for (int i = 0; i < 250; i++) {
            int fd = ns_socket();
            struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(PY_PORT)};
            sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
            close(fd);
            if (rc == 0)
                break;
            usleep(20000);
        }
        run_latency("python http.server libcurl GET", bench_curl, PY_PORT, hp_py,
                    quick ? 100 : 300);
    }
    double dt[ROUNDS], ft[ROUNDS];
    for (int r = 0; r < ROUNDS && bulk; r++) {
        dt[r] = getenv("BENCH_SKIP_DIRECT") ? 1 : bench_bulk(true, BULK_PORT);
        ft[r] = getenv("BENCH_SKIP_FWD") ? 1 : bench_bulk(false, hp_bulk);
    }
    if (bulk) {
        double dm = median(dt, ROUNDS), fm = median(ft, ROUNDS);
        printf("%-34s direct %.2f GB/s | forwarded %.2f GB/s | ratio %.2f (goal forwarded >= 1 "
               "GB/s)\n",
               "bulk download", dm, fm, fm / dm);
    }
    sbx_portfwd_destroy(f);
    if (py > 0)
        kill(py, SIGKILL);
    kill(holder, SIGKILL);
    waitpid(holder, NULL, 0);
    if (py > 0) {
        waitpid(py, NULL, 0);
        char idx[64];
        snprintf(idx, sizeof idx, "%s/index.html", g_pydir);
        unlink(idx);
        rmdir(g_pydir);
    }
    curl_global_cleanup();
    return 0;
}
