/* devserver.c: dev-server readiness (see devserver.h). One libcurl easy handle per wait probes
 * the URL with short per-probe timeouts; between probes the caller's wait callback sleeps on
 * the server process (so an exit ends the wait at once), with pauses growing from 10 ms to
 * 100 ms. A probe counts as an answer as soon as a status line has been parsed: the body is
 * never read.
 *
 * Threads: the caller's, blocked while it waits; libcurl's global state is set up once. */
#include "devserver.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "status.h"

#define PATH_MAX_LEN 2048
#define TAIL_LINES 20

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Any body byte means the headers are complete: stop there (the transfer then ends with
 * CURLE_WRITE_ERROR, which is fine, the status code is known). */
static size_t discard_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    (void)ptr;
    (void)size;
    (void)nmemb;
    (void)arg;
    return 0;
}

static CURL *probe_handle(const char *url, char *errbuf)
{
    CURL *h = curl_easy_init();
    if (!h)
        return NULL;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROXY, ""); /* never through http_proxy & co */
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "sbx-readiness/1");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    return h;
}

/* One probe within the time left; true when an HTTP response arrived. */
static bool probe_once(CURL *h, char *errbuf, uint64_t deadline, uint32_t probe_timeout,
                       sbx_dev_result *res)
{
    uint64_t now = sbx_mono_ms();
    uint64_t left = deadline > now ? deadline - now : 1;
    long pt = (long)(left < probe_timeout ? left : probe_timeout);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, pt);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, pt);
    errbuf[0] = '\0';
    CURLcode cc = curl_easy_perform(h);
    res->probes++;
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    if (code > 0) {
        res->http_status = code;
        res->last_error[0] = '\0';
        return true;
    }
    snprintf(res->last_error, sizeof res->last_error, "%s",
             errbuf[0] ? errbuf : curl_easy_strerror(cc));
    return false;
}

/* Probes until an outcome (see sbx_devserver_wait). */
static sbx_dev_outcome probe_loop(const sbx_dev_wait_req *req, CURL *h, char *errbuf,
                                  sbx_dev_result *res)
{
    uint32_t timeout = req->timeout_ms ? req->timeout_ms : 30000;
    uint32_t probe_timeout = req->probe_timeout_ms ? req->probe_timeout_ms : 1000;
    uint32_t interval = req->interval_min_ms ? req->interval_min_ms : 10;
    uint32_t interval_max = req->interval_max_ms ? req->interval_max_ms : 100;
    if (interval_max < interval)
        interval_max = interval;
    uint64_t deadline = sbx_mono_ms() + timeout;
    for (bool exited = false;;
         interval = interval * 2 > interval_max ? interval_max : interval * 2) {
        if (probe_once(h, errbuf, deadline, probe_timeout, res))
            return SBX_DEV_READY;
        if (exited)
            return SBX_DEV_EXITED;
        uint64_t now = sbx_mono_ms();
        if (now >= deadline)
            return SBX_DEV_TIMEOUT;
        int pause = (int)(deadline - now < interval ? deadline - now : interval);
        int w = 0;
        if (req->wait)
            w = req->wait(req->wait_arg, pause, &res->exit);
        else
            sleep_ms(pause);
        if (w < 0)
            return SBX_DEV_CANCELLED;
        exited = w > 0; /* one last probe: it may have daemonised */
    }
}

int sbx_devserver_wait(const sbx_dev_wait_req *req, sbx_dev_result *res)
{
    if (!req || !req->url || !res)
        return -EINVAL;
    memset(res, 0, sizeof *res);
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK)
        return -ENOMEM;
    char errbuf[CURL_ERROR_SIZE] = "";
    CURL *h = probe_handle(req->url, errbuf);
    if (!h)
        return -ENOMEM;
    uint64_t start = sbx_mono_ms();
    res->outcome = probe_loop(req, h, errbuf, res);
    res->elapsed_ms = (uint32_t)(sbx_mono_ms() - start);
    curl_easy_cleanup(h);
    return 0;
}

int sbx_devserver_proc_wait(void *arg, int timeout_ms, sbx_dev_exit *ex)
{
    sbx_proc *p = arg;
    sbx_proc_status st;
    sbx_proc_status_get(p, &st);
    if (st.running && timeout_ms > 0) {
        sbx_proc_wait_finished(p, timeout_ms);
        sbx_proc_status_get(p, &st);
    }
    if (st.running)
        return 0;
    ex->exit_code = st.exit.exit_code;
    ex->signal = st.exit.signal;
    return 1;
}

int sbx_devserver_check_path(const char *path)
{
    if (!path || path[0] != '/')
        return -EINVAL;
    size_t n = 0;
    for (; path[n]; n++) {
        unsigned char ch = (unsigned char)path[n];
        if (n >= PATH_MAX_LEN || ch <= 0x20 || ch >= 0x7f || ch == '#')
            return -EINVAL;
    }
    return 0;
}

int sbx_devserver_probe_url(const char *host, uint16_t port, const char *path, char *buf,
                            size_t len)
{
    if (!host || port == 0)
        return -EINVAL;
    if (!path || !path[0])
        path = "/";
    if (sbx_devserver_check_path(path) < 0)
        return -EINVAL;
    char h[INET6_ADDRSTRLEN];
    size_t hn = strlen(host);
    if (hn >= 2 && host[0] == '[' && host[hn - 1] == ']') {
        host++;
        hn -= 2;
    }
    if (hn >= sizeof h)
        return -EINVAL;
    memcpy(h, host, hn);
    h[hn] = '\0';
    unsigned char a[16];
    int n;
    if (inet_pton(AF_INET, h, a) == 1) {
        n = snprintf(buf, len, "http://%s:%u%s", strcmp(h, "0.0.0.0") ? h : "127.0.0.1",
                     (unsigned)port, path);
    } else if (inet_pton(AF_INET6, h, a) == 1) {
        static const unsigned char any6[16];
        n = snprintf(buf, len, "http://[%s]:%u%s", memcmp(a, any6, 16) ? h : "::1", (unsigned)port,
                     path);
    } else {
        return -EINVAL;
    }
    if (n < 0 || (size_t)n >= len)
        return -ENOSPC;
    return n;
}

/* Copies [off, end) of a stream, keeping the last max_lines lines; returns the length. */
static size_t tail_of(sbx_proc *p, int stream, uint64_t oldest, uint64_t end, int max_lines,
                      char *buf, size_t len)
{
    if (len == 0)
        return 0;
    buf[0] = '\0';
    if (end <= oldest)
        return 0;
    uint64_t off = end - oldest > len - 1 ? end - (len - 1) : oldest;
    bool cut = off > 0;
    ssize_t n = sbx_proc_read(p, stream, &off, buf, len - 1);
    if (n <= 0)
        return 0;
    size_t m = (size_t)n;
    while (m > 0 && (buf[m - 1] == '\n' || buf[m - 1] == '\r'))
        m--; /* trailing newlines */
    size_t startpos = 0;
    int lines = 0;
    for (size_t i = m; i > 0; i--) {
        if (buf[i - 1] == '\n' && ++lines >= max_lines) {
            startpos = i;
            break;
        }
    }
    if (startpos == 0 && cut) {
        /* began mid-line: drop the partial first line when there is more than one */
        char *nl = memchr(buf, '\n', m);
        if (nl)
            startpos = (size_t)(nl - buf) + 1;
    }
    memmove(buf, buf + startpos, m - startpos);
    m -= startpos;
    for (size_t i = 0; i < m; i++) {
        unsigned char ch = (unsigned char)buf[i];
        if ((ch < 0x20 && ch != '\n' && ch != '\t') || ch == 0x7f)
            buf[i] = '?';
    }
    buf[m] = '\0';
    return m;
}

size_t sbx_devserver_tail(sbx_proc *p, int max_lines, char *buf, size_t len)
{
    if (!buf || len == 0)
        return 0;
    buf[0] = '\0';
    if (!p)
        return 0;
    if (max_lines <= 0)
        max_lines = TAIL_LINES;
    sbx_proc_status st;
    sbx_proc_status_get(p, &st);
    size_t n = tail_of(p, SBX_STREAM_STDERR, st.err_oldest, st.err_end, max_lines, buf, len);
    if (n == 0)
        n = tail_of(p, SBX_STREAM_STDOUT, st.out_oldest, st.out_end, max_lines, buf, len);
    return n;
}

int sbx_devserver_message(const sbx_dev_result *r, uint16_t port, bool killed, const char *tail,
                          char *buf, size_t len)
{
    int status;
    int n = 0;
    if (!buf || len == 0)
        return SBX_INTERNAL;
    buf[0] = '\0';
    switch (r->outcome) {
    case SBX_DEV_READY:
        return SBX_OK;
    case SBX_DEV_EXITED:
        status = SBX_FAILED_PRECONDITION;
        if (r->exit.signal)
            n = snprintf(buf, len,
                         "dev server was killed by signal %d (%s) before port %u was "
                         "ready (%u ms)",
                         r->exit.signal, strsignal(r->exit.signal), (unsigned)port, r->elapsed_ms);
        else
            n = snprintf(buf, len,
                         "dev server exited with code %d before port %u was ready "
                         "(%u ms)",
                         r->exit.exit_code, (unsigned)port, r->elapsed_ms);
        break;
    case SBX_DEV_TIMEOUT:
        status = SBX_DEADLINE_EXCEEDED;
        n = snprintf(buf, len,
                     "dev server not ready on port %u within %u ms (%u probes, last: "
                     "%s); process %s",
                     (unsigned)port, r->elapsed_ms, r->probes,
                     r->last_error[0] ? r->last_error : "no answer",
                     killed ? "killed" : "left running");
        break;
    default:
        status = SBX_CANCELLED;
        n = snprintf(buf, len, "waiting for the dev server on port %u was cancelled after %u ms",
                     (unsigned)port, r->elapsed_ms);
        break;
    }
    if (n > 0 && (size_t)n < len && tail && tail[0])
        snprintf(buf + n, len - (size_t)n, "; last output:\n%s", tail);
    return status;
}
