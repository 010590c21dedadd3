/* exec.c: running commands (Exec) and following background ones (AttachProcess). Both are
 * server streams of ExecEvent; both resume after UNAVAILABLE without losing or repeating
 * output: Exec is re-sent with the same request_id (the executor replays or attaches instead
 * of running the command again) and output below the byte offsets already delivered is
 * skipped; AttachProcess is re-sent from those offsets. */
#include <stdlib.h>
#include <string.h>

#include "sbx/v1/executor.pb-c.h"
#include "sbx_internal.h"

#define M(m) "/sbx.v1.SandboxExecutor/" m

void sbx_exec_result_clear(sbx_exec_result *r)
{
    if (!r)
        return;
    free(r->sandbox_id);
    memset(r, 0, sizeof *r);
}

typedef struct follow {
    sbx_started_fn on_started;
    sbx_output_fn on_output;
    void *ud;
    uint64_t delivered[3]; /* next byte offset per stream (index 1 stdout, 2 stderr) */
    bool started_seen;
    bool cancelled;
    sbx_exec_result *res;
} follow;

static void exit_fill(sbx_exec_result *r, const Sbx__V1__ProcessExit *x)
{
    r->exited = true;
    r->exit_code = x->exit_code;
    r->signal = x->signal;
    r->timed_out = x->timed_out;
    r->output_truncated = x->output_truncated;
    r->cached = x->cached;
    r->oom_killed = x->oom_killed;
    r->duration_us = x->duration_us;
    r->stdout_bytes = x->stdout_bytes;
    r->stderr_bytes = x->stderr_bytes;
    r->finished_at_ms = x->finished_at_unix_ms;
}

static void set_sandbox(sbx_exec_result *r, const char *id)
{
    if (id && *id && (!r->sandbox_id || strcmp(r->sandbox_id, id) != 0)) {
        free(r->sandbox_id);
        r->sandbox_id = strdup(id);
    }
}

/* Delivers the part of a chunk not delivered yet. Returns non-zero to cancel. */
static int deliver(follow *f, sbx_stream_id sid, const Sbx__V1__ProcessOutput *o)
{
    uint64_t off = o->offset, end = o->offset + o->data.len;
    uint64_t *next = &f->delivered[sid];
    if (end <= *next)
        return 0; /* replayed after a reconnect: already seen */
    size_t skip = off < *next ? (size_t)(*next - off) : 0;
    *next = end;
    if (!f->on_output)
        return 0;
    return f->on_output(sid, o->data.data + skip, o->data.len - skip, off + skip, f->ud);
}

/* Reads one stream to its end. Returns the status code; *progress tells whether any event came. */
static int pump(follow *f, sbx_cstream *st, sbx_rpc_result *res, bool *progress)
{
    ProtobufCMessage *m = NULL;
    int rc;
    *progress = false;
    while ((rc = sbx_cstream_next(st, &sbx__v1__exec_event__descriptor, &m)) == 1) {
        *progress = true;
        Sbx__V1__ExecEvent *ev = (void *)m;
        int stop = 0;
        switch (ev->event_case) {
        case SBX__V1__EXEC_EVENT__EVENT_STARTED:
            f->res->pid = ev->started->pid;
            f->res->started_at_ms = ev->started->started_at_unix_ms;
            set_sandbox(f->res, ev->started->sandbox_id);
            if (!f->started_seen && f->on_started)
                f->on_started(ev->started->pid, f->res->sandbox_id ? f->res->sandbox_id : "",
                              f->ud);
            f->started_seen = true;
            break;
        case SBX__V1__EXEC_EVENT__EVENT_ATTACHED:
            f->res->pid = ev->attached->pid;
            break;
        case SBX__V1__EXEC_EVENT__EVENT_STDOUT:
            stop = deliver(f, SBX_STDOUT, ev->stdout);
            break;
        case SBX__V1__EXEC_EVENT__EVENT_STDERR:
            stop = deliver(f, SBX_STDERR, ev->stderr);
            break;
        case SBX__V1__EXEC_EVENT__EVENT_EXITED:
            exit_fill(f->res, ev->exited);
            break;
        default:
            break; /* an event this client does not know yet */
        }
        protobuf_c_message_free_unpacked(m, NULL);
        if (stop) {
            f->cancelled = true;
            break;
        }
    }
    int code = sbx_cstream_finish(st, res);
    if (f->cancelled)
        return SBX_CODE_CANCELLED;
    if (rc < 0)
        return SBX_CODE_INTERNAL;
    return code;
}

typedef int (*start_fn)(sbx_client *c, sbx__shard *s, void *arg, follow *f, int64_t left,
                        sbx_cstream **st, sbx_rpc_result *res);

static sbx_error *run_resumable(sbx_client *c, size_t shard, start_fn start, void *arg, follow *f,
                                int64_t deadline_ms, bool want_exit)
{
    sbx__shard *s = &c->shards[SBX_SERVICE_EXECUTOR][shard];
    int64_t deadline_abs = deadline_ms > 0 ? sbx__mono_ms() + deadline_ms : 0;
    int attempt = 0;
    for (;;) {
        attempt++;
        int64_t left = deadline_abs ? deadline_abs - sbx__mono_ms() : 0;
        if (deadline_abs && left <= 0)
            return sbx_error_new(SBX_CODE_DEADLINE_EXCEEDED, "deadline passed (%d attempts)",
                                 attempt - 1);
        sbx_cstream *st = NULL;
        sbx_rpc_result res = {0};
        int code = start(c, s, arg, f, left, &st, &res);
        bool progress = false;
        if (code == SBX_CODE_OK)
            code = pump(f, st, &res, &progress);
        if (code == SBX_CODE_OK) {
            sbx_rpc_result_clear(&res);
            if (want_exit && !f->res->exited)
                return sbx_error_new(SBX_CODE_UNKNOWN,
                                     "the stream ended before the process exited");
            return NULL;
        }
        if (code == SBX_CODE_CANCELLED && f->cancelled) {
            sbx_rpc_result_clear(&res);
            return sbx_error_new(SBX_CODE_CANCELLED, "stopped by the caller");
        }
        if (progress)
            attempt = 1; /* the stream moved: a fresh retry budget */
        sbx_error *e = NULL;
        if (!sbx__stream_retry(c, &res, code, s->addr, true, attempt, deadline_abs, &e))
            return e;
    }
}

/* ---- Exec */

static int exec_start(sbx_client *c, sbx__shard *s, void *arg, follow *f, int64_t left,
                      sbx_cstream **st, sbx_rpc_result *res)
{
    (void)c;
    (void)f;
    return sbx_call_server_stream(s->ch, M("Exec"), arg, left, st, res);
}

sbx_error *sbx_exec(sbx_client *c, const sbx_exec_req *r, sbx_started_fn on_started,
                    sbx_output_fn on_output, void *ud, sbx_exec_result *res)
{
    memset(res, 0, sizeof *res);
    if (!r->shell && r->argc == 0)
        return sbx_error_new(SBX_CODE_INVALID_ARGUMENT, "no command given");
    Sbx__V1__ExecRequest req = SBX__V1__EXEC_REQUEST__INIT;
    Sbx__V1__Argv av = SBX__V1__ARGV__INIT;
    req.project_id = (char *)sbx__nz(r->project_id);
    req.sandbox_id = (char *)sbx__nz(r->sandbox_id);
    if (r->shell) {
        req.command_case = SBX__V1__EXEC_REQUEST__COMMAND_SHELL;
        req.shell = (char *)r->shell;
    } else {
        av.n_args = r->argc;
        av.args = (char **)r->argv;
        req.command_case = SBX__V1__EXEC_REQUEST__COMMAND_ARGV;
        req.argv = &av;
    }
    req.cwd = (char *)sbx__nz(r->cwd);
    void **env = NULL;
    if (sbx__env_entries(r->env, r->n_env, &sbx__v1__exec_request__env_entry__descriptor, &env) !=
        0)
        return sbx_error_new(SBX_CODE_INVALID_ARGUMENT,
                             "env entries must be KEY=VALUE with a non-empty KEY");
    req.n_env = r->n_env;
    req.env = (Sbx__V1__ExecRequest__EnvEntry **)env;
    req.stdin.data = (uint8_t *)r->stdin_data;
    req.stdin.len = r->stdin_data ? r->stdin_len : 0;
    req.close_stdin = r->close_stdin;
    req.timeout_ms = r->timeout_ms;
    req.max_output_bytes = r->max_output_bytes;
    req.background = r->background;
    req.tag = (char *)sbx__nz(r->tag);
    req.cache_ttl_s = r->cache_ttl_s;
    Sbx__V1__TerminalSize pty = SBX__V1__TERMINAL_SIZE__INIT;
    if (r->pty_cols || r->pty_rows) {
        pty.cols = r->pty_cols;
        pty.rows = r->pty_rows;
        req.pty = &pty;
    }
    char rid[37];
    if (r->request_id && *r->request_id)
        req.request_id = (char *)r->request_id;
    else {
        sbx_request_id_new(rid);
        req.request_id = rid;
    }
    follow f = {.on_started = on_started, .on_output = on_output, .ud = ud, .res = res};
    const char *key = *req.project_id ? req.project_id : req.sandbox_id;
    sbx_error *e = run_resumable(c, sbx__shard_for(c, SBX_SERVICE_EXECUTOR, key), exec_start,
                                 &req.base, &f, r->deadline_ms, !r->background);
    sbx__env_free(env, r->n_env);
    return e;
}

/* ---- AttachProcess */

typedef struct attach_arg {
    const char *project_id;
    sbx_proc_sel sel;
    bool follow;
} attach_arg;

static int attach_start(sbx_client *c, sbx__shard *s, void *arg, follow *f, int64_t left,
                        sbx_cstream **st, sbx_rpc_result *res)
{
    (void)c;
    attach_arg *a = arg;
    Sbx__V1__AttachProcessRequest req = SBX__V1__ATTACH_PROCESS_REQUEST__INIT;
    Sbx__V1__ProcessSelector sel = SBX__V1__PROCESS_SELECTOR__INIT;
    req.project_id = (char *)sbx__nz(a->project_id);
    if (a->sel.tag && *a->sel.tag) {
        sel.sel_case = SBX__V1__PROCESS_SELECTOR__SEL_TAG;
        sel.tag = (char *)a->sel.tag;
    } else {
        sel.sel_case = SBX__V1__PROCESS_SELECTOR__SEL_PID;
        sel.pid = a->sel.pid;
    }
    req.process = &sel;
    req.stdout_offset = f->delivered[SBX_STDOUT];
    req.stderr_offset = f->delivered[SBX_STDERR];
    req.follow = a->follow;
    return sbx_call_server_stream(s->ch, M("AttachProcess"), &req.base, left, st, res);
}

sbx_error *sbx_attach(sbx_client *c, const char *project_id, sbx_proc_sel sel,
                      uint64_t stdout_offset, uint64_t stderr_offset, bool follow_live,
                      sbx_output_fn on_output, void *ud, sbx_exec_result *res)
{
    memset(res, 0, sizeof *res);
    attach_arg a = {.project_id = project_id, .sel = sel, .follow = follow_live};
    follow f = {.on_output = on_output, .ud = ud, .res = res};
    f.delivered[SBX_STDOUT] = stdout_offset;
    f.delivered[SBX_STDERR] = stderr_offset;
    /* attaching is a read: no deadline unless following forever is not wanted */
    return run_resumable(c, sbx__shard_for(c, SBX_SERVICE_EXECUTOR, project_id), attach_start, &a,
                         &f, follow_live ? 0 : c->deadline_ms, false);
}
