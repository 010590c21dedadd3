/* metrics.c: per-method counters recorded by the server loop, their Prometheus rendering, and
 * a tiny blocking HTTP/1.0 listener for GET /metrics (one thread, one request per connection). */
#include "metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "rpc_internal.h"
#include "status.h"

const double sbx_lat_bounds[SBX_LAT_BUCKETS] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                 0.005,   0.01,   0.025,   0.05,   0.1,   0.25,
                                                 0.5,     1,      5,       30};

void sbx_metrics_record(sbx_method_entry *me, int code, int64_t ns)
{
    if (!me)
        return;
    if (code < 0 || code > 16)
        code = SBX_UNKNOWN;
    atomic_fetch_add_explicit(&me->handled[code], 1, memory_order_relaxed);
    double sec = (double)ns / 1e9;
    int b = 0;
    while (b < SBX_LAT_BUCKETS && sec > sbx_lat_bounds[b])
        b++;
    atomic_fetch_add_explicit(&me->lat[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&me->lat_sum_ns, (uint64_t)(ns > 0 ? ns : 0), memory_order_relaxed);
}

void sbx_metrics_write_server(FILE *out, sbx_server *s)
{
    sbx_method_entry *ms;
    size_t n = sbx_server_methods(s, &ms);
    fprintf(out, "# HELP grpc_server_handled_total Total number of RPCs completed on the server.\n"
                 "# TYPE grpc_server_handled_total counter\n");
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < 17; c++) {
            uint64_t v = atomic_load(&ms[i].handled[c]);
            if (v)
                fprintf(out,
                        "grpc_server_handled_total{grpc_service=\"%s\",grpc_method=\"%s\",grpc_code=\"%s\"} %llu\n",
                        ms[i].service, ms[i].name, sbx_status_name(c), (unsigned long long)v);
        }
    fprintf(out, "# HELP grpc_server_handling_seconds Time from request arrival to the final status.\n"
                 "# TYPE grpc_server_handling_seconds histogram\n");
    for (size_t i = 0; i < n; i++) {
        uint64_t cum = 0, total = 0;
        for (int b = 0; b <= SBX_LAT_BUCKETS; b++)
            total += atomic_load(&ms[i].lat[b]);
        if (!total)
            continue;
        for (int b = 0; b < SBX_LAT_BUCKETS; b++) {
            cum += atomic_load(&ms[i].lat[b]);
            fprintf(out, "grpc_server_handling_seconds_bucket{grpc_service=\"%s\",grpc_method=\"%s\",le=\"%g\"} %llu\n",
                    ms[i].service, ms[i].name, sbx_lat_bounds[b], (unsigned long long)cum);
        }
        fprintf(out, "grpc_server_handling_seconds_bucket{grpc_service=\"%s\",grpc_method=\"%s\",le=\"+Inf\"} %llu\n",
                ms[i].service, ms[i].name, (unsigned long long)total);
        fprintf(out, "grpc_server_handling_seconds_sum{grpc_service=\"%s\",grpc_method=\"%s\"} %.9f\n",
                ms[i].service, ms[i].name, (double)atomic_load(&ms[i].lat_sum_ns) / 1e9);
        fprintf(out, "grpc_server_handling_seconds_count{grpc_service=\"%s\",grpc_method=\"%s\"} %llu\n",
                ms[i].service, ms[i].name, (unsigned long long)total);
    }
}

struct sbx_metrics_http {
    int fd;
    int stop_pipe[2];
    pthread_t th;
    sbx_server *srv;
    sbx_metrics_extra_fn extra;
    void *arg;
};

static void serve_one(sbx_metrics_http *m, int c)
{
    char req[2048];
    size_t got = 0;
    struct pollfd p = {.fd = c, .events = POLLIN};
    while (got < sizeof req - 1 && poll(&p, 1, 2000) > 0) {
        ssize_t r = read(c, req + got, sizeof req - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
        req[got] = '\0';
        if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
            break;
    }
    req[got] = '\0';
    char *body = NULL;
    size_t blen = 0;
    const char *status = "200 OK";
    FILE *f = open_memstream(&body, &blen);
    if (!f)
        return;
    if (strncmp(req, "GET /metrics", 12) == 0 && (req[12] == ' ' || req[12] == '?')) {
        sbx_metrics_write_server(f, m->srv);
        if (m->extra)
            m->extra(f, m->arg);
    } else if (strncmp(req, "GET /healthz ", 13) == 0) {
        fputs("ok\n", f);
    } else {
        status = "404 Not Found";
        fputs("not found: try GET /metrics\n", f);
    }
    fclose(f);
    char hdr[256];
    int hl = snprintf(hdr, sizeof hdr,
                      "HTTP/1.0 %s\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n", status, blen);
    ssize_t w = write(c, hdr, (size_t)hl);
    size_t off = 0;
    while (w >= 0 && off < blen) {
        w = write(c, body + off, blen - off);
        if (w > 0)
            off += (size_t)w;
    }
    free(body);
}

static void *http_thread(void *arg)
{
    sbx_metrics_http *m = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = m->fd, .events = POLLIN}, {.fd = m->stop_pipe[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents)
            break;
        if (p[0].revents & POLLIN) {
            int c = accept4(m->fd, NULL, NULL, SOCK_CLOEXEC);
            if (c < 0)
                continue;
            serve_one(m, c);
            close(c);
        }
    }
    return NULL;
}

sbx_metrics_http *sbx_metrics_listen(const char *addr, sbx_server *s, sbx_metrics_extra_fn extra, void *arg,
                                     int *port_out)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof host) {
        SBX_LOG_ERROR("metrics", "--metrics-listen: expected HOST:PORT addr=%s", addr);
        return NULL;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    char *h = host;
    if (h[0] == '[') {
        h++;
        h[strlen(h) - 1] = '\0';
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(*h ? h : NULL, colon + 1, &hints, &ai) != 0 || !ai) {
        SBX_LOG_ERROR("metrics", "--metrics-listen: cannot resolve addr=%s", addr);
        return NULL;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 64) != 0) {
        SBX_LOG_ERRNO(SBX_LOG_ERROR, "metrics", errno, "--metrics-listen: cannot listen addr=%s", addr);
        freeaddrinfo(ai);
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    int port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                        : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    sbx_metrics_http *m = calloc(1, sizeof *m);
    if (!m || pipe2(m->stop_pipe, O_CLOEXEC) != 0) {
        free(m);
        close(fd);
        return NULL;
    }
    m->fd = fd;
    m->srv = s;
    m->extra = extra;
    m->arg = arg;
    if (pthread_create(&m->th, NULL, http_thread, m) != 0) {
        close(m->stop_pipe[0]);
        close(m->stop_pipe[1]);
        close(fd);
        free(m);
        return NULL;
    }
    if (port_out)
        *port_out = port;
    return m;
}

void sbx_metrics_stop(sbx_metrics_http *m)
{
    if (!m)
        return;
    ssize_t w = write(m->stop_pipe[1], "x", 1);
    (void)w;
    pthread_join(m->th, NULL);
    close(m->stop_pipe[0]);
    close(m->stop_pipe[1]);
    close(m->fd);
    free(m);
}
