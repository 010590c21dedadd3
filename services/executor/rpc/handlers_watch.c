/* handlers_watch.c: WatchDir, a server stream of file events under a directory of a sandbox
 * (files/watch.h does the watching: inotify through the file layer's in-root resolution, as the
 * sandbox user). The stream sends READY once the watch is in place, then every change (merged
 * per path within coalesce_ms), and ends with OK when the sandbox stops or the watched directory
 * is deleted or moved away, with UNAVAILABLE when the server shuts down, and with
 * RESOURCE_EXHAUSTED when a new directory does not fit the sandbox's watch budget.
 *
 * Limits, per sandbox: at most watch_max_streams streams at once (each holds a worker thread and
 * an inotify instance, so they count like connections) and watch_max_dirs directories followed
 * by all of them together. The accounting lives here, keyed by the sandbox: an entry exists
 * while a stream of that sandbox is open (each stream holds a reference to its box, so the key
 * cannot be reused meanwhile).
 *
 * A stream does not keep the sandbox in use (KillSandbox and idle expiry proceed; the stream
 * notices within 250 ms and ends): the watch holds its own handle on the sandbox root.
 *
 * Threads: the handlers' worker threads; one stream blocks its worker until it ends. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "handlers.h"
#include "status.h"
#include "watch.h"

#define WATCH_MAX_DIRS_DEFAULT 8192
#define WATCH_MAX_STREAMS_DEFAULT 16
#define POLL_MS 250

typedef struct wacct {
    sbx_box *b;
    int streams;
    sbx_watch_budget budget;
    struct wacct *next;
} wacct;

static pthread_mutex_t acct_mu = PTHREAD_MUTEX_INITIALIZER;
static wacct *accts;

/* Joins the sandbox's accounting: NULL with *full set when it has max_streams open already. */
static wacct *acct_join(sbx_box *b, int max_streams, int max_dirs, bool *full)
{
    *full = false;
    pthread_mutex_lock(&acct_mu);
    wacct *a = accts;
    while (a && a->b != b)
        a = a->next;
    if (a && a->streams >= max_streams) {
        *full = true;
        a = NULL;
    } else if (a) {
        a->streams++;
    } else if ((a = calloc(1, sizeof *a)) != NULL) {
        a->b = b;
        a->streams = 1;
        a->budget.max = max_dirs;
        a->budget.limit_name = "--watch-max-dirs";
        a->next = accts;
        accts = a;
    }
    pthread_mutex_unlock(&acct_mu);
    return a;
}

static void acct_leave(wacct *a)
{
    pthread_mutex_lock(&acct_mu);
    if (--a->streams == 0) {
        wacct **pp = &accts;
        while (*pp != a)
            pp = &(*pp)->next;
        *pp = a->next;
        free(a);
    }
    pthread_mutex_unlock(&acct_mu);
}

static int send_event(sbx_ctx *ctx, Sbx__V1__WatchEventKind kind, const char *path, bool is_dir,
                      uint32_t cookie, int64_t at_ms)
{
    Sbx__V1__WatchEvent ev = SBX__V1__WATCH_EVENT__INIT;
    ev.kind = kind;
    ev.path = (char *)path;
    ev.is_dir = is_dir;
    ev.cookie = cookie;
    ev.at_unix_ms = at_ms;
    return sbx_stream_send(ctx, &ev.base);
}

/* The status of a failed sbx_watch_open (the file API's, with the proto's NOT_FOUND and
 * FAILED_PRECONDITION for a missing path and a non-directory). */
static int open_error(sbx_ctx *ctx, int rc, const char *err)
{
    if (rc == -EMFILE || rc == -ENFILE || rc == -ENOSPC)
        return sbx_ctx_error(ctx, SBX_RESOURCE_EXHAUSTED, "%s", err);
    return exh_file_error(ctx, rc, err, SBX_NOT_FOUND, SBX_FAILED_PRECONDITION, 0);
}

/* Streams the events of an open watch until the stream ends; returns the status. */
static int stream_events(sbx_ctx *ctx, sbx_box *b, sbx_watch *w)
{
    char err[320];
    for (;;) {
        if (sbx_ctx_cancelled(ctx))
            return SBX_CANCELLED;
        if (sbx_ctx_server_stopping(ctx))
            return sbx_ctx_error(ctx, SBX_UNAVAILABLE, "the server is shutting down");
        if (!sbx_box_running(b))
            return SBX_OK; /* the sandbox stopped: so does its watch */
        sbx_watch_event ev;
        int rc = sbx_watch_next(w, &ev, POLL_MS, err, sizeof err);
        if (rc == 1) {
            if (send_event(ctx, (Sbx__V1__WatchEventKind)ev.kind, ev.path, ev.is_dir, ev.cookie,
                           ev.at_ms) < 0)
                return SBX_CANCELLED;
        } else if (rc == -ENOENT) {
            return SBX_OK; /* the watched directory is gone */
        } else if (rc < 0) {
            int code = rc == -ENOSPC ? SBX_RESOURCE_EXHAUSTED : SBX_INTERNAL;
            return sbx_ctx_error(ctx, code, "%s", err);
        }
    }
}

int exh_watch_dir(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    (void)resp;
    const Sbx__V1__WatchDirRequest *r = (const Sbx__V1__WatchDirRequest *)req;
    sbx_exsvc *s = data;
    char err[320] = "";
    int code = exv_path("path", r->path, true, err, sizeof err);
    if (code != SBX_OK)
        return sbx_ctx_error(ctx, code, "%s", err);
    if (r->coalesce_ms > SBX_WATCH_COALESCE_MS_MAX)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "coalesce_ms: %u is outside 0..%d",
                             r->coalesce_ms, SBX_WATCH_COALESCE_MS_MAX);
    sbx_box *b;
    if ((code = exh_box(ctx, s, r->sandbox_id, r->project_id, REG_CREATE, &b)) != SBX_OK)
        return code;
    int max_streams = s->watch_max_streams > 0 ? s->watch_max_streams : WATCH_MAX_STREAMS_DEFAULT;
    int max_dirs = s->watch_max_dirs > 0 ? s->watch_max_dirs : WATCH_MAX_DIRS_DEFAULT;
    bool full;
    wacct *a = acct_join(b, max_streams, max_dirs, &full);
    if (!a) {
        sbx_box_release(b);
        if (full)
            return sbx_ctx_error(ctx, SBX_RESOURCE_EXHAUSTED,
                                 "the sandbox has %d WatchDir streams open, its limit "
                                 "(--watch-max-streams)",
                                 max_streams);
        return sbx_ctx_error(ctx, SBX_RESOURCE_EXHAUSTED, "out of memory");
    }
    const char *path = r->path[0] ? r->path : SBX_FILES_HOME;
    sbx_watch_opts o = {
        .recursive = r->recursive, .coalesce_ms = r->coalesce_ms, .budget = &a->budget};
    sbx_watch *w = NULL;
    int rc =
        sbx_watch_open(sbx_box_files(b), path, exh_norm_path(ctx, path), &o, &w, err, sizeof err);
    /* the watch has its own handle on the root: keep a reference to the box, not a use */
    sbx_box_ref(b);
    sbx_box_release(b);
    if (rc < 0) {
        code = open_error(ctx, rc, err);
    } else if (send_event(ctx, SBX__V1__WATCH_EVENT_KIND__WATCH_EVENT_KIND_READY,
                          exh_norm_path(ctx, path), true, 0, sbx_wall_ms()) < 0) {
        code = SBX_CANCELLED;
    } else {
        code = stream_events(ctx, b, w);
    }
    sbx_watch_close(w);
    acct_leave(a);
    sbx_box_unref(b);
    return code;
}
