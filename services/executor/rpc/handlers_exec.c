/* handlers_exec.c: Exec (streamed) and Run (collected). Both validate the request once, resolve
 * or create the sandbox, deduplicate by request_id, answer from the store's cache when asked,
 * start the command in the sandbox (its stdin queued in the process table), and then either
 * hand it to the background monitor or drive it in the foreground: forward output with byte
 * offsets up to the per-stream cap, notice a client that left (kill the command unless it has
 * a request_id; a command on a terminal is hung up first, SIGHUP to its process group, as
 * when a terminal closes), and finish it (recorded through the outbox before `exited` is sent).
 * exh_start is also how StartDevServer starts its command.
 *
 * Threads: the handlers' worker threads; a foreground Exec/Run blocks its worker until the
 * command finished. */
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

#define STOPPED_GRACE_MS 5000

typedef struct run_out {
    bool stream;               /* Exec (true) or Run */
    Sbx__V1__RunResponse *run; /* Run only */
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
    uint64_t end[2] = {in.out_end, in.err_end};
    for (int s = 0; s < 2; s++) {
        size_t n = end[s] < e->head_limit ? (size_t)end[s] : e->head_limit;
        ProtobufCBinaryData *bd = s ? &run->stderr : &run->stdout;
        bd->data = n ? sbx_ctx_alloc(ctx, n) : NULL;
        bd->len =
            n ? sbx_exe_read_head(e, s ? SBX_STREAM_STDERR : SBX_STREAM_STDOUT, bd->data, n) : 0;
    }
    run->exit = exh_exit_msg(ctx, &in.exit);
}

/* Run waiting for the first attempt of a request_id to finish. */
static int wait_first_attempt(sbx_ctx *ctx, sbx_exe *e)
{
    while (sbx_exe_wait_done(e, 250) == -ETIMEDOUT) {
        if (sbx_ctx_cancelled(ctx))
            return SBX_CANCELLED;
        if (sbx_ctx_remaining_ms(ctx) <= 0)
            return sbx_ctx_error(ctx, SBX_DEADLINE_EXCEEDED, "the first attempt is still running");
    }
    return SBX_OK;
}

/* A retry with a known request_id: replay the first result, or attach while it runs. */
static int answer_existing(sbx_ctx *ctx, sbx_exe *e, run_out *o)
{
    sbx_exe_state st = sbx_exe_wait_started(e, 15000);
    if (st == EXE_STARTING || st == EXE_ABORTED)
        return sbx_ctx_error(ctx, SBX_UNAVAILABLE, "request_id: the first attempt %s; retry",
                             st == EXE_STARTING ? "is still starting" : "failed to start");
    if (!o->stream) {
        int code = e->background ? SBX_OK : wait_first_attempt(ctx, e);
        if (code == SBX_OK)
            fill_run(ctx, e, o->run);
        return code;
    }
    if (e->background) /* the first answer was `started` alone */
        return send_started(ctx, e) < 0 ? SBX_CANCELLED : SBX_OK;
    if ((st == EXE_RUNNING ? send_attached(ctx, e) : send_started(ctx, e)) < 0)
        return SBX_CANCELLED;
    exh_follower f;
    exh_follow_init(&f, ctx, e, 0, 0);
    int code = exh_follow_stream(&f, st == EXE_RUNNING);
    exh_follow_done(&f);
    return code;
}

/* ---------------------------------------------------------------- start */

/* Answers from the store's cache when cache_ttl_s asks for it. Returns true when answered. */
static bool try_cache(sbx_ctx *ctx, sbx_exsvc *s, sbx_exe *e)
{
    if (!s->stores || e->cache_ttl_s <= 0 || !e->cmdkey[0])
        return false;
    int64_t dl = s->cache_lookup_ms ? s->cache_lookup_ms : 2000;
    int64_t left = sbx_ctx_remaining_ms(ctx);
    if (left < dl * 2)
        dl = left / 2;
    if (dl <= 0)
        return false;
    Sbx__V1__GetCachedResultResponse *resp = NULL;
    char err[256];
    int code = sbx_stores_cache_get(s->stores, e->tenant, e->project, e->cmdkey, dl, &resp, err,
                                    sizeof err);
    bool hit = code == SBX_OK && resp->found && resp->result;
    if (hit)
        sbx_exe_set_cached(e, resp->result);
    else if (code != SBX_OK)
        SBX_LOG_DEBUG("exec", "cache lookup failed; running the command code=%s msg=\"%s\"",
                      sbx_status_name(code), err);
    if (resp)
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    return hit;
}

/* The command key (for the cache) and the fingerprint a request_id retry must match: the
 * request's own fields (not resolved defaults), so Run and Exec retries match. */
static int plan_keys(const Sbx__V1__ExecRequest *r, char key[65], char fp[65])
{
    key[0] = fp[0] = 0;
    if (!(r->cache_ttl_s > 0 && !r->background) && !r->request_id[0])
        return 0;
    if (exk_command_key(r, key) < 0)
        return -ENOMEM;
    char buf[256];
    int n = snprintf(buf, sizeof buf, "%s|bg=%d|tag=%s|cap=%lld|to=%lld|ttl=%lld|cs=%d", key,
                     r->background ? 1 : 0, r->tag, (long long)r->max_output_bytes,
                     (long long)r->timeout_ms, (long long)r->cache_ttl_s, r->close_stdin ? 1 : 0);
    sbx_sha256_hex(buf, (size_t)n, fp);
    return 0;
}

/* Starts the STARTING execution e of r in b. */
static int spawn(sbx_ctx *ctx, sbx_box *b, sbx_exe *e, const Sbx__V1__ExecRequest *r, bool stream)
{
    const char *shell_argv[4] = {"/bin/sh", "-c", r->shell, NULL};
    const char **argv = shell_argv;
    if (r->command_case == SBX__V1__EXEC_REQUEST__COMMAND_ARGV) {
        argv = sbx_ctx_alloc(ctx, (r->argv->n_args + 1) * sizeof *argv);
        for (size_t i = 0; i < r->argv->n_args; i++)
            argv[i] = r->argv->args[i];
        argv[r->argv->n_args] = NULL;
    }
    int64_t timeout = r->timeout_ms ? r->timeout_ms : sbx_box_limits(b)->command_timeout_ms;
    sbx_proc_req pr = {
        .spawn = {.argv = argv,
                  .env = exh_build_env(ctx, b, r),
                  .cwd = e->cwd,
                  .want_stdin =
                      r->background ? !(r->close_stdin && r->stdin.len == 0) : r->stdin.len > 0,
                  .timeout_ms = (uint32_t)timeout,
                  .pty_cols = r->pty ? (uint16_t)r->pty->cols : 0,
                  .pty_rows = r->pty ? (uint16_t)r->pty->rows : 0},
        .tag = r->tag,
        /* a foreground command keeps at most what its answer can carry, per stream: nothing
         * kept is overwritten before it is sent; background ones keep the ring's newest bytes
         * for AttachProcess */
        .max_stream_bytes = r->background ? 0
                            : stream      ? e->cap
                                          : e->head_limit,
        /* an Exec stream delivers every byte up to the cap: a slow client slows the command */
        .backpressure = !r->background && stream,
        .stdin_data = r->stdin.data,
        .stdin_len = r->stdin.len,
        /* a terminal takes input for as long as it is open; close_stdin types EOF */
        .stdin_close = r->background || r->pty ? r->close_stdin : true,
    };
    char err[512];
    int code = sbx_exe_spawn(b, e, &pr, err, sizeof err);
    return code == SBX_OK ? SBX_OK : sbx_ctx_error(ctx, code, "%s", err);
}

int exh_start(sbx_ctx *ctx, sbx_exsvc *s, sbx_box *b, const Sbx__V1__ExecRequest *r, bool stream,
              sbx_exe **e, sbx_exe **existing)
{
    uint64_t cap =
        (uint64_t)(r->max_output_bytes ? r->max_output_bytes : sbx_box_limits(b)->max_output_bytes);
    /* a terminal's output is a screen, not a result: it streams without the default cap (the
       newest ring and the first MiB stay held for attach and history) */
    if (r->pty && !r->max_output_bytes)
        cap = UINT64_MAX;
    if (!stream && cap > EXV_RUN_OUTPUT_MAX)
        cap = EXV_RUN_OUTPUT_MAX;
    char key[65], fp[65];
    if (plan_keys(r, key, fp) < 0)
        return sbx_ctx_error(ctx, SBX_RESOURCE_EXHAUSTED, "out of memory");
    bool want_cache = r->cache_ttl_s > 0 && !r->background;
    sbx_exe_spec spec = {
        .req = r, .cmdkey = want_cache ? key : NULL, .fingerprint = fp, .cap = cap};
    char err[512];
    int code = sbx_exe_begin(b, &spec, e, existing, err, sizeof err);
    if (code != SBX_OK)
        return sbx_ctx_error(ctx, code, "%s", err);
    if (*existing || (want_cache && try_cache(ctx, s, *e)))
        return SBX_OK;
    if ((code = spawn(ctx, b, *e, r, stream)) != SBX_OK) {
        sbx_exe_unref(*e);
        *e = NULL;
        return code;
    }
    if (r->background)
        sbx_exe_follow_in_background(*e);
    return SBX_OK;
}

/* ---------------------------------------------------------------- foreground */

/* Finishes a driven execution; the oom counter is read when the kernel's SIGKILL may be the
 * oom killer's: the command died of it, or (a shell running the killed program) exited 137. */
static void finish_driven(sbx_box *b, sbx_exe *e, sbx_proc *p)
{
    sbx_proc_status st;
    sbx_proc_status_get(p, &st);
    int64_t oom = -1;
    sbx_exe_info in;
    sbx_exe_info_get(e, &in);
    if (in.state == EXE_RUNNING && !st.running && !st.exit.timed_out &&
        (st.exit.signal == SIGKILL || (!st.exit.signal && st.exit.exit_code == 128 + SIGKILL)))
        oom = sbx_exe_oom_kills(b);
    sbx_exe_finish(e, !st.finished, oom);
}

/* Drives a foreground execution to its end (see the file comment). */
static int drive(sbx_ctx *ctx, sbx_exsvc *s, sbx_box *b, sbx_exe *e, bool keep, run_out *o)
{
    exh_follower f;
    exh_follow_init(&f, ctx, e, 0, 0);
    bool gone = false, killed = false, hung_up = false;
    int stopped_ms = 0;
    while (f.p) {
        if (o->stream && !gone && exh_follow_send(&f) < 0)
            gone = true;
        sbx_proc_status st;
        sbx_proc_status_get(f.p, &st);
        if (st.finished)
            break;
        gone = gone || sbx_ctx_cancelled(ctx);
        if (gone && o->stream)
            sbx_proc_release_backpressure(f.p); /* nobody reads any more: never block it */
        if (gone && e->pty && !hung_up) { /* its terminal was closed: hang up, as a terminal */
            sbx_sandbox_signal_group(sbx_box_sandbox(b), st.pid, SIGHUP);
            hung_up = true;
        }
        if (gone && !killed && (!keep || __atomic_load_n(&s->stopping, __ATOMIC_RELAXED))) {
            sbx_proc_kill_tree(f.p); /* the client left and cannot come back for it */
            killed = true;
        }
        if (!sbx_box_running(b) && (stopped_ms += 250) > STOPPED_GRACE_MS)
            break; /* killed with the sandbox; finished as lost below */
        exh_follow_wait(&f, o->stream && !gone, 250);
    }
    if (f.p)
        finish_driven(b, e, f.p);
    else
        sbx_exe_finish(e, true, -1);
    int code = SBX_OK;
    if (o->stream)
        code = gone ? SBX_CANCELLED : exh_follow_stream(&f, false); /* the rest, then exited */
    else
        fill_run(ctx, e, o->run);
    exh_follow_done(&f);
    return code;
}

/* Everything after the sandbox is resolved. */
static int exec_in_box(sbx_ctx *ctx, sbx_exsvc *s, sbx_box *b, const Sbx__V1__ExecRequest *r,
                       run_out *o)
{
    sbx_exe *e = NULL, *existing = NULL;
    int code = exh_start(ctx, s, b, r, o->stream, &e, &existing);
    if (code != SBX_OK)
        return code;
    if (existing) {
        code = answer_existing(ctx, existing, o);
        sbx_exe_unref(existing);
        return code;
    }
    /* a foreground command whose client is gone is noticed while it is driven; a background
       one keeps running for AttachProcess even if this stream broke */
    if (o->stream)
        (void)send_started(ctx, e);
    if (!r->background)
        code = drive(ctx, s, b, e, r->request_id[0] != 0, o);
    else if (!o->stream)
        fill_run(ctx, e, o->run);
    sbx_exe_unref(e);
    return code;
}

static int exec_common(sbx_ctx *ctx, sbx_exsvc *s, const Sbx__V1__ExecRequest *r, run_out *o)
{
    char err[512];
    int code = exv_exec_request(r, err, sizeof err); /* the address included */
    if (code != SBX_OK)
        return sbx_ctx_error(ctx, code, "%s", err);
    sbx_box *b;
    if ((code = exh_resolve(ctx, s, r->sandbox_id, r->project_id, REG_CREATE, &b)) != SBX_OK)
        return code;
    code = exec_in_box(ctx, s, b, r, o);
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
