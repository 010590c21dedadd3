/* metrics.c: the Prometheus text of the server's per-method counters (recorded by the call
 * path, rpc_call.c) and the HTTP endpoint behind --metrics-listen, served by libmicrohttpd.
 *
 * Threads: libmicrohttpd runs HTTP_THREADS polling threads (epoll), each accepting and serving
 * its own connections: HTTP/1.1 keep-alive, at most HTTP_MAX_CONNS connections, an idle one
 * closed after HTTP_IDLE_S. Each request renders into its own buffer, which libmicrohttpd frees
 * after sending; the counters are read with atomic loads and the extra callback may run on
 * several threads at once. sbx_metrics_stop closes every connection and joins the threads. */
#include "metrics.h"

#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "rpc_internal.h"
#include "status.h"

#define HTTP_THREADS 2    /* scrapes are short; two let one slow client not hold up another */
#define HTTP_MAX_CONNS 64 /* connections open at once; more are refused at accept */
#define HTTP_IDLE_S 60    /* a keep-alive connection idle this long is closed */
#define TEXT_FORMAT "text/plain; version=0.0.4; charset=utf-8"

/* 'grpc_service="sbx.v1.StateStore",grpc_method="Get"' */
static void labels(char *buf, size_t len, const sbx_method_entry *me)
{
    snprintf(buf, len, "grpc_service=\"%s\",grpc_method=\"%s\"", me->service, me->name);
}

static void write_handled(FILE *out, const sbx_method_entry *ms, size_t n)
{
    fputs("# HELP grpc_server_handled_total Total number of RPCs completed on the server.\n"
          "# TYPE grpc_server_handled_total counter\n",
          out);
    char lab[400];
    for (size_t i = 0; i < n; i++) {
        labels(lab, sizeof lab, &ms[i]);
        for (int c = 0; c < SBX_STATUS_COUNT; c++) {
            uint64_t v = atomic_load(&ms[i].handled[c]);
            if (v)
                fprintf(out, "grpc_server_handled_total{%s,grpc_code=\"%s\"} %llu\n", lab,
                        sbx_status_name(c), (unsigned long long)v);
        }
    }
}

static void write_histogram(FILE *out, const sbx_method_entry *ms, size_t n)
{
    fputs("# HELP grpc_server_handling_seconds Time from request arrival to the final status.\n"
          "# TYPE grpc_server_handling_seconds histogram\n",
          out);
    char lab[400];
    for (size_t i = 0; i < n; i++) {
        uint64_t cum = 0, total = 0;
        for (int b = 0; b <= SBX_LAT_BUCKETS; b++)
            total += atomic_load(&ms[i].lat[b]);
        if (!total)
            continue;
        labels(lab, sizeof lab, &ms[i]);
        for (int b = 0; b < SBX_LAT_BUCKETS; b++) {
            cum += atomic_load(&ms[i].lat[b]);
            fprintf(out, "grpc_server_handling_seconds_bucket{%s,le=\"%g\"} %llu\n", lab,
                    sbx_lat_bounds[b], (unsigned long long)cum);
        }
        fprintf(out, "grpc_server_handling_seconds_bucket{%s,le=\"+Inf\"} %llu\n", lab,
                (unsigned long long)total);
        fprintf(out, "grpc_server_handling_seconds_sum{%s} %.9f\n", lab,
                (double)atomic_load(&ms[i].lat_sum_ns) / 1e9);
        fprintf(out, "grpc_server_handling_seconds_count{%s} %llu\n", lab,
                (unsigned long long)total);
    }
}

void sbx_metrics_write_server(FILE *out, sbx_server *s)
{
    sbx_method_entry *ms;
    size_t n = sbx_server_methods(s, &ms);
    write_handled(out, ms, n);
    write_histogram(out, ms, n);
}

struct sbx_metrics_http {
    struct MHD_Daemon *d;
    sbx_server *srv;
    sbx_metrics_extra_fn extra;
    void *arg;
};

/* The body and status for one GET/HEAD; *body is malloc'd (NULL when out of memory). */
static unsigned route(sbx_metrics_http *m, const char *url, char **body, size_t *len,
                      const char **type)
{
    unsigned status = MHD_HTTP_OK;
    *type = TEXT_FORMAT;
    FILE *f = open_memstream(body, len);
    if (!f) {
        *body = NULL;
        return MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
    if (strcmp(url, "/metrics") == 0) {
        sbx_metrics_write_server(f, m->srv);
        if (m->extra)
            m->extra(f, m->arg);
    } else if (strcmp(url, "/healthz") == 0) {
        fputs("ok\n", f);
        *type = "text/plain; charset=utf-8";
    } else {
        fputs("not found: try GET /metrics\n", f);
        *type = "text/plain; charset=utf-8";
        status = MHD_HTTP_NOT_FOUND;
    }
    if (fclose(f) != 0) {
        free(*body);
        *body = NULL;
        return MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
    return status;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, char *body, size_t len,
                             const char *type)
{
    struct MHD_Response *r = body
                                 ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE)
                                 : MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* libmicrohttpd calls this once when the headers are in, then per piece of body, then once at
 * the end: the reply goes out on the last call; a body (nothing here takes one) is dropped. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_len, void **state)
{
    static int headers_seen;
    (void)version;
    (void)upload;
    if (!*state) {
        *state = &headers_seen;
        return MHD_YES;
    }
    if (*upload_len) {
        *upload_len = 0;
        return MHD_YES;
    }
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        static char msg[] = "method not allowed: try GET /metrics\n";
        return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, strdup(msg), sizeof msg - 1,
                     "text/plain; charset=utf-8");
    }
    char *body;
    size_t len;
    const char *type;
    unsigned status = route(cls, url, &body, &len, &type);
    return reply(c, status, body, len, type);
}

static void on_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    SBX_LOG_WARN("metrics", "libmicrohttpd: %s", buf);
}

/* Resolves "HOST:PORT" ("[::1]:9090", ":9090" = any address); NULL and logs on error. */
static struct addrinfo *resolve(const char *addr)
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
    size_t hl = strlen(h);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h[hl - 1] = '\0';
        h++;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(*h ? h : NULL, colon + 1, &hints, &ai) != 0 || !ai) {
        SBX_LOG_ERROR("metrics", "--metrics-listen: cannot resolve addr=%s", addr);
        return NULL;
    }
    return ai;
}

sbx_metrics_http *sbx_metrics_listen(const char *addr, sbx_server *s, sbx_metrics_extra_fn extra,
                                     void *arg, int *port_out)
{
    struct addrinfo *ai = resolve(addr);
    if (!ai)
        return NULL;
    sbx_metrics_http *m = calloc(1, sizeof *m);
    if (!m) {
        freeaddrinfo(ai);
        return NULL;
    }
    m->srv = s;
    m->extra = extra;
    m->arg = arg;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    struct MHD_OptionItem opts[] = {
        {MHD_OPTION_SOCK_ADDR, 0, ai->ai_addr},
        {MHD_OPTION_THREAD_POOL_SIZE, HTTP_THREADS, NULL},
        {MHD_OPTION_CONNECTION_LIMIT, HTTP_MAX_CONNS, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, HTTP_IDLE_S, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    /* the logger goes first so that start-up errors reach it too */
    m->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, m, MHD_OPTION_EXTERNAL_LOGGER, on_log,
                            NULL, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!m->d) {
        SBX_LOG_ERROR("metrics",
                      "--metrics-listen: cannot listen (address in use, or not local) addr=%s",
                      addr);
        free(m);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_BIND_PORT);
    if (port_out)
        *port_out = info ? info->port : 0;
    return m;
}

void sbx_metrics_stop(sbx_metrics_http *m)
{
    if (!m)
        return;
    MHD_stop_daemon(m->d);
    free(m);
}
