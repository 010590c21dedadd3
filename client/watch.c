/* watch.c: WatchDir, a server stream of file events under a directory of a sandbox. The stream
 * has no deadline; after UNAVAILABLE (an executor restart, a dropped connection) it is made
 * again with jittered backoff for up to reconnect_ms, and since changes in between were not
 * seen, the caller gets the new READY followed by a synthetic OVERFLOW ("re-list"), never a
 * silent gap. Before the first READY the client's usual retry budget applies, and errors other
 * than UNAVAILABLE (NOT_FOUND, INVALID_ARGUMENT, ...) are returned as they come. */
#include <errno.h>
#include <time.h>

#include "sbx/v1/executor.pb-c.h"
#include "sbx_internal.h"

#define M(m) "/sbx.v1.SandboxExecutor/" m

/* Sleeps the backoff delay of attempt (1-based, capped so the delay stays at its maximum);
 * false when that would pass until_ms (monotonic). */
static bool reconnect_wait(sbx_client *c, int attempt, int64_t until_ms)
{
    pthread_mutex_lock(&c->mu);
    int64_t delay = sbx_backoff_delay_ms(&c->backoff, attempt > 30 ? 30 : attempt, &c->seed);
    pthread_mutex_unlock(&c->mu);
    if (sbx__mono_ms() + delay >= until_ms)
        return false;
    struct timespec ts = {.tv_sec = delay / 1000, .tv_nsec = (delay % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    return true;
}

typedef struct watch_run {
    sbx_watch_fn fn;
    void *ud;
    bool had_ready; /* a READY was delivered by an earlier stream */
} watch_run;

/* Hands one stream's events to fn. Returns 1 when fn asked to stop, 0 at the stream's end, -1
 * on a message that does not decode. *ready: this stream's READY arrived. */
static int deliver_events(watch_run *w, sbx_cstream *st, bool *ready)
{
    ProtobufCMessage *m = NULL;
    int rc;
    while ((rc = sbx_cstream_next(st, &sbx__v1__watch_event__descriptor, &m)) == 1) {
        const Sbx__V1__WatchEvent *we = (const void *)m;
        int stop = 0;
        int kind = (int)we->kind;
        if (kind >= (int)SBX_WATCH_READY && kind <= (int)SBX_WATCH_OVERFLOW) {
            sbx_watch_event ev = {.kind = (sbx_watch_kind)kind,
                                  .path = we->path ? we->path : "",
                                  .is_dir = we->is_dir,
                                  .cookie = we->cookie,
                                  .at_ms = we->at_unix_ms};
            stop = w->fn(&ev, w->ud);
            if (!stop && ev.kind == SBX_WATCH_READY) {
                if (w->had_ready) { /* resumed: what changed while we were away is unknown */
                    sbx_watch_event ov = {
                        .kind = SBX_WATCH_OVERFLOW, .path = "", .at_ms = sbx__now_ms()};
                    stop = w->fn(&ov, w->ud);
                }
                w->had_ready = true;
                *ready = true;
            }
        } /* else: a kind this client does not know yet */
        protobuf_c_message_free_unpacked(m, NULL);
        if (stop)
            return 1;
    }
    return rc < 0 ? -1 : 0;
}

sbx_error *sbx_watch_dir(sbx_client *c, const char *project_id, const char *path,
                         const sbx_watch_opts *opts, sbx_watch_fn fn, void *ud)
{
    if (!fn)
        return sbx_error_new(SBX_CODE_INVALID_ARGUMENT, "fn: a callback is required");
    sbx_watch_opts o = opts ? *opts : (sbx_watch_opts){0};
    int64_t reconnect_ms = o.reconnect_ms > 0 ? o.reconnect_ms : 30000;
    size_t shard = sbx__shard_for(c, SBX_SERVICE_EXECUTOR, project_id);
    sbx__shard *s = &c->shards[SBX_SERVICE_EXECUTOR][shard];
    watch_run w = {.fn = fn, .ud = ud};
    int64_t until = 0; /* while reconnecting: give up at this monotonic time */
    for (int attempt = 1;; attempt++) {
        Sbx__V1__WatchDirRequest req = SBX__V1__WATCH_DIR_REQUEST__INIT;
        req.project_id = (char *)sbx__nz(project_id);
        req.path = (char *)sbx__nz(path);
        req.recursive = o.recursive;
        req.coalesce_ms = o.coalesce_ms;
        sbx_cstream *st = NULL;
        sbx_rpc_result res = {0};
        int code = sbx_call_server_stream(s->ch, M("WatchDir"), &req.base, 0, &st, &res);
        bool ready = false;
        int got = 0;
        if (code == SBX_CODE_OK) {
            got = deliver_events(&w, st, &ready);
            code = sbx_cstream_finish(st, got == 0 ? &res : NULL); /* cancels when we stop */
        }
        if (got == 1) {
            sbx_rpc_result_clear(&res);
            return NULL;
        }
        if (got < 0) {
            sbx_rpc_result_clear(&res);
            return sbx_error_new(SBX_CODE_INTERNAL, "WatchDir: a message did not decode");
        }
        if (code == SBX_CODE_OK) { /* the directory was deleted or the sandbox stopped */
            sbx_rpc_result_clear(&res);
            return NULL;
        }
        if (!w.had_ready) { /* never up: the client's usual retry budget, then the error */
            sbx_error *e = NULL;
            if (!sbx__stream_retry(c, &res, code, s->addr, true, attempt, 0, &e))
                return e;
            continue;
        }
        if (ready || !until) { /* the stream was up: a fresh budget to get it back */
            attempt = 1;
            until = sbx__mono_ms() + reconnect_ms;
        }
        if (code != SBX_CODE_UNAVAILABLE || !reconnect_wait(c, attempt, until)) {
            sbx_error *e = sbx__error_rpc(&res, code, s->addr);
            if (e)
                e->attempts = attempt;
            sbx_rpc_result_clear(&res);
            return e ? e : sbx__error_oom();
        }
        sbx_rpc_result_clear(&res);
    }
}
