/* handlers_exec.c: Exec (streamed) and Run (collected). Both validate the request, resolve or
 * create the sandbox, deduplicate by request_id, answer from the store's cache when asked,
 * start the command in the sandbox, and then either hand it to the background monitor or drive
 * it in the foreground: feed stdin, forward output with byte offsets up to the per-stream cap,
 * notice a client that left (kill the command unless it has a request_id), and finish it
 * (recorded through the outbox before `exited` is sent). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "exec_cmdkey.h"
#include "handlers.h"
#include "log.h"
#include "status.h"

#define CHUNK (256 * 1024) /* bytes of output per Exec event: fewer, larger messages stream faster */
#define STOPPED_GRACE_MS 5000

typedef struct run_out {
    bool stream;                 /* Exec (true) or Run */
    Sbx__V1__RunResponse *run;   /* Run only */
} run_out;

static int send_started(sbx_ctx *ctx, sbx_exe *e)
{
    sbx_exe_info in;
    sbx_exe_info_get(e, &in);
    Sbx__V1__ExecEvent ev = SBX__V1__EXEC_EVENT__INIT;
    Sbx__V1__ProcessStarted st = SBX__V1__PROCESS_STARTED__INIT;
    st.pid = in.exit.cached ? 0 : in.pid;
    st.sandbox_id = e->sandbox_id;
    st.started_at_unix_ms = in.started_ms;
    st.tag = e->tag;
    ev.event_case = SBX__V1__EXEC_EVENT__EVENT_STARTED;
    ev.started = &st;
    return sbx_stream_send(ctx, &ev.base);
}

static int send_attached(sbx_ctx *ctx, sbx_exe *e)
{
    Sbx__V1__ExecEvent ev = SBX__V1__EXEC_EVENT__INIT;
    ev.event_case = SBX__V1__EXEC_EVENT__EVENT_ATTACHED;
    ev.attached = exh_attach_info(ctx, e);
    return sbx_stream_send(ctx, &ev.base);
}

/* Fills a RunResponse from a finished (or background) execution. */
static void fill_run(sbx_ctx *ctx, sbx_exe *e, Sbx__V1__RunResponse *run)
{
    sbx_exe_info in;
    sbx_exe_info_get(e, &in);
    run->sandbox_id = sbx_ctx_strdup(ctx, e->sandbox_id);
    run->pid = in.exit.cached ? 0 : in.pid;
    if (in.state != EXE_DONE)
        return;
    size_t lim = e->capture_limit;
    for (int s = 0; s < 2; s++) {
        int stream = s ? SBX_STREAM_STDERR : SBX_STREAM_STDOUT;
        size_t n = sbx_exe_capture_len(e, stream);
        if (n > lim)
            n = lim;
        ProtobufCBinaryData *bd = s ? &run->stderr : &run->stdout;
        bd->data = n ? sbx_ctx_alloc(ctx, n) : NULL;
        bd->len = n ? sbx_exe_capture_read(e, stream, 0, bd->data, n) : 0;
    }
    run->exit = exh_exit_msg(ctx, &in.exit);
}

/* A retry with a known request_id: replay the first result, or attach while it runs. */
static int answer_existing(sbx_ctx *ctx, sbx_exe *e, run_out *o)
{
    sbx_exe_state st = sbx_exe_wait_started(e, 15000);
    if (st == EXE_STARTING || st == EXE_ABORTED)
        return sbx_ctx_error(ctx, SBX_UNAVAILABLE, "request_id: the first attempt %s; retry",
                             st == EXE_STARTING ? "is still starting" : "failed to start");
    if (!o->stream) {
        if (!e->background) {
            int64_t left = sbx_ctx_remaining_ms(ctx);
            while (sbx_exe_wait_done(e, 250) == -ETIMEDOUT) {
                if (sbx_ctx_cancelled(ctx))
                    return SBX_CANCELLED;
                left = sbx_ctx_remaining_ms(ctx);
                if (left <= 0)
                    return sbx_ctx_error(ctx, SBX_DEADLINE_EXCEEDED, "the first attempt is still "
                                         "running");
            }
        }
        fill_run(ctx, e, o->run);
        return SBX_OK;
    }
    if (e->background) /* the first answer was `started` alone */
        return send_started(ctx, e) < 0 ? SBX_CANCELLED : SBX_OK;
    if (st == EXE_RUNNING) {
        if (send_attached(ctx, e) < 0)
            return SBX_CANCELLED;
        return exh_stream_output(ctx, e, 0, 0, true);
    }
    if (send_started(ctx, e) < 0)
        return SBX_CANCELLED;
    return exh_stream_output(ctx, e, 0, 0, false);
}

/* Drives a foreground execution to its end (see the file comment). */
static int drive(sbx_ctx *ctx, sbx_exsvc *s, sbx_box *b, sbx_exe *e, const Sbx__V1__ExecRequest *r,
                 run_out *o)
{
    sbx_proc *p = sbx_exe_proc(e);
    uint8_t *buf = o->stream ? sbx_ctx_alloc(ctx, CHUNK) : NULL;
    uint64_t off[2] = {0, 0};
    const uint8_t *in = r->stdin.data;
    size_t in_left = p ? r->stdin.len : 0;
    bool gone = false, killed = false, keep = r->request_id[0] != 0;
    int stopped_ms = 0;
    while (p) {
        if (in_left) {
            ssize_t n = sbx_proc_write_stdin(p, in, in_left, 0);
            if (n > 0) {
                in += n;
                in_left -= (size_t)n;
            } else if (n < 0) {
                in_left = 0; /* the command closed its stdin or exited */
            }
            if (!in_left) {
                sbx_proc_close_stdin(p);
                sbx_exe_stdin_closed(e);
            }
        }
        if (o->stream && !gone && exh_send_available(ctx, e, p, off, buf) < 0)
            gone = true;
        sbx_exe_pull(e);
        sbx_proc_status st;
        sbx_proc_status_get(p, &st);
        if (st.finished)
            break;
        if (!gone && sbx_ctx_cancelled(ctx))
            gone = true;
        if (gone && o->stream)
            sbx_proc_release_backpressure(p); /* nobody reads any more: never block the command */
        if (gone && (!keep || __atomic_load_n(&s->stopping, __ATOMIC_RELAXED)) && !killed) {
            /* the client left and cannot come back for it: kill its process group */
            sbx_proc_kill_tree(p);
            killed = true;
        }
        if (!sbx_box_running(b)) {
            stopped_ms += 250;
            if (stopped_ms > STOPPED_GRACE_MS)
                break; /* killed with the sandbox; finish it as lost below */
        }
        uint64_t w_out, w_err;
        if (o->stream && !gone) {
            w_out = off[0] >= e->cap ? UINT64_MAX : off[0];
            w_err = off[1] >= e->cap ? UINT64_MAX : off[1];
        } else {
            size_t c0 = sbx_exe_capture_len(e, SBX_STREAM_STDOUT);
            size_t c1 = sbx_exe_capture_len(e, SBX_STREAM_STDERR);
            w_out = c0 >= e->capture_limit ? UINT64_MAX : st.out_end > c0 ? st.out_end : c0;
            w_err = c1 >= e->capture_limit ? UINT64_MAX : st.err_end > c1 ? st.err_end : c1;
        }
        sbx_proc_wait(p, w_out, w_err, in_left ? 5 : 250);
    }
    int64_t oom = -1;
    if (p) {
        sbx_proc_status st;
        sbx_proc_status_get(p, &st);
        if (!st.running && st.exit.signal == SIGKILL && !st.exit.timed_out)
            oom = sbx_exe_oom_kills(b);
        sbx_exe_finish(e, !st.finished, oom);
    } else {
        sbx_exe_finish(e, true, -1);
    }
    int code = SBX_OK;
    if (o->stream) {
        if (gone)
            code = SBX_CANCELLED;
        else
            code = exh_stream_output(ctx, e, off[0], off[1], false); /* rest + exited */
    } else {
        fill_run(ctx, e, o->run);
    }
    sbx_proc_unref(p);
    return code;
}

/* Answers from the store's cache when cache_ttl_s asks for it. Returns true when answered. */
static bool try_cache(sbx_ctx *ctx, sbx_exsvc *s, sbx_exe *e)
{
    if (!s->store || e->cache_ttl_s <= 0 || !e->cmdkey[0])
        return false;
    int64_t dl = s->cache_lookup_ms ? s->cache_lookup_ms : 2000;
    int64_t left = sbx_ctx_remaining_ms(ctx);
    if (left < dl * 2)
        dl = left / 2;
    if (dl <= 0)
        return false;
    if (s->ob) {
        /* a result this executor just produced may still be on its way to the store: let it
         * land first (bounded; skipped while the store is failing, the lookup would fail too) */
        sbx_outbox_stats os;
        sbx_outbox_get_stats(s->ob, &os);
        if (os.pending && (os.last_code == SBX_OK || os.delivered == 0))
            sbx_outbox_flush(s->ob, (int)(dl < 400 ? dl / 2 : 200));
    }
    Sbx__V1__GetCachedResultResponse *resp = NULL;
    char err[256];
    int code = sbx_storecli_cache_get(s->store, e->tenant, e->project, e->cmdkey, dl, &resp, err,
                                      sizeof err);
    bool hit = false;
    if (code == SBX_OK && resp->found && resp->result) {
        sbx_exe_set_cached(e, resp->result);
        hit = true;
    } else if (code != SBX_OK) {
        SBX_LOG_DEBUG("exec", "cache lookup failed; running the command code=%s msg=\"%s\"",
                      sbx_status_name(code), err);
    }
    if (resp)
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    return hit;
}

static int exec_common(sbx_ctx *ctx, sbx_exsvc *s, const Sbx__V1__ExecRequest *r, run_out *o)
{
    char err[512];
    int code = exv_exec_request(r, err, sizeof err);
    if (code != SBX_OK)
        return sbx_ctx_error(ctx, code, "%s", err);
    sbx_box *b;
    if ((code = exh_box(ctx, s, r->sandbox_id, r->project_id, REG_CREATE, &b)) != SBX_OK)
        return code;
    const exv_limits *lim = sbx_box_limits(b);
    uint64_t cap = (uint64_t)(r->max_output_bytes ? r->max_output_bytes : lim->max_output_bytes);
    if (!o->stream && cap > EXV_RUN_OUTPUT_MAX)
        cap = EXV_RUN_OUTPUT_MAX;
    int64_t timeout = r->timeout_ms ? r->timeout_ms : lim->command_timeout_ms;

    char key[65] = "", fp[65] = "";
    bool want_cache = r->cache_ttl_s > 0 && !r->background;
    if (want_cache || r->request_id[0]) {
        if (exk_command_key(r, key) < 0) {
            sbx_box_release(b);
            return sbx_ctx_error(ctx, SBX_RESOURCE_EXHAUSTED, "out of memory");
        }
        char buf[256];
        /* the request's own fields (not resolved defaults): Run and Exec retries match */
        int n = snprintf(buf, sizeof buf, "%s|bg=%d|tag=%s|cap=%lld|to=%lld|ttl=%lld|cs=%d", key,
                         r->background ? 1 : 0, r->tag, (long long)r->max_output_bytes,
                         (long long)r->timeout_ms, (long long)r->cache_ttl_s, r->close_stdin ? 1 : 0);
        sbx_sha256_hex(buf, (size_t)n, fp);
    }
    sbx_exe_spec spec = {.req = r, .cmdkey = want_cache ? key : NULL, .fingerprint = fp, .cap = cap};
    sbx_exe *e = NULL, *existing = NULL;
    code = sbx_exe_begin(b, &spec, &e, &existing, err, sizeof err);
    if (code != SBX_OK) {
        sbx_box_release(b);
        return sbx_ctx_error(ctx, code, "%s", err);
    }
    if (existing) {
        code = answer_existing(ctx, existing, o);
        sbx_exe_unref(existing);
        sbx_box_release(b);
        return code;
    }
    if (want_cache && try_cache(ctx, s, e)) {
        if (o->stream) {
            code = send_started(ctx, e) < 0 ? SBX_CANCELLED
                                            : exh_stream_output(ctx, e, 0, 0, false);
        } else {
            fill_run(ctx, e, o->run);
        }
        sbx_exe_unref(e);
        sbx_box_release(b);
        return code;
    }

    const char *shell_argv[4] = {"/bin/sh", "-c", r->shell, NULL};
    const char **argv = shell_argv;
    if (r->command_case == SBX__V1__EXEC_REQUEST__COMMAND_ARGV) {
        argv = sbx_ctx_alloc(ctx, (r->argv->n_args + 1) * sizeof *argv);
        for (size_t i = 0; i < r->argv->n_args; i++)
            argv[i] = r->argv->args[i];
        argv[r->argv->n_args] = NULL;
    }
    sbx_proc_req pr = {
        .spawn = {.argv = argv,
                  .env = exh_build_env(ctx, b, r),
                  .cwd = e->cwd,
                  .want_stdin = r->background ? !(r->close_stdin && r->stdin.len == 0)
                                              : r->stdin.len > 0,
                  .timeout_ms = (uint32_t)timeout},
        .tag = r->tag,
        .max_output_bytes = 0,
        /* a foreground command keeps at most what its answer can carry, per stream, in the
         * ring: nothing kept is overwritten before this handler copies it; background ones
         * keep the ring's newest bytes for AttachProcess */
        .max_stream_bytes = r->background ? 0 : o->stream ? (uint64_t)e->cap : (uint64_t)e->capture_limit,
        /* an Exec stream delivers every byte up to the cap: a slow client slows the command */
        .backpressure = !r->background && o->stream,
    };
    code = sbx_exe_spawn(b, e, &pr, err, sizeof err);
    if (code != SBX_OK) {
        sbx_exe_unref(e);
        sbx_box_release(b);
        return sbx_ctx_error(ctx, code, "%s", err);
    }
    if (o->stream && send_started(ctx, e) < 0 && r->background) {
        /* a background command keeps running for AttachProcess even if this stream broke */
    }
    if (r->background) {
        sbx_proc *p = sbx_exe_proc(e);
        if (p && r->stdin.len) {
            int64_t left = sbx_ctx_remaining_ms(ctx);
            int to = left > 10000 ? 10000 : (int)(left > 0 ? left : 0);
            ssize_t n = sbx_proc_write_stdin(p, r->stdin.data, r->stdin.len, to);
            if (n < (ssize_t)r->stdin.len)
                SBX_LOG_WARN("exec", "background stdin not fully written id=%s written=%zd of=%zu",
                             e->id, n, r->stdin.len);
        }
        if (p && r->close_stdin) {
            sbx_proc_close_stdin(p);
            sbx_exe_stdin_closed(e);
        }
        sbx_proc_unref(p);
        sbx_exe_follow_in_background(b, e);
        if (!o->stream)
            fill_run(ctx, e, o->run);
        sbx_exe_unref(e);
        sbx_box_release(b);
        return SBX_OK;
    }
    code = drive(ctx, s, b, e, r, o);
    sbx_exe_unref(e);
    sbx_box_release(b);
    return code;
}

int exh_exec(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    (void)resp;
    run_out o = {.stream = true};
    return exec_common(ctx, data, (const Sbx__V1__ExecRequest *)req, &o);
}

int exh_run(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    run_out o = {.stream = false};
    o.run = (Sbx__V1__RunResponse *)sbx_ctx_new_msg(ctx, &sbx__v1__run_response__descriptor);
    int code = exec_common(ctx, data, (const Sbx__V1__ExecRequest *)req, &o);
    if (code == SBX_OK)
        *resp = &o.run->base;
    return code;
}
