/* handlers_devserver.c: StartDevServer, the one implementation of it. The port is exposed first
 * (the probe goes through the forwarder, and the port is reachable the moment the server
 * listens); the command runs as an ordinary background execution started by exh_start (so
 * ListProcesses, SignalProcess --tag, AttachProcess and the history see it, and a tag is unique
 * among running commands exactly as for Exec; a running command with the tag is reused, not
 * restarted); the readiness wait, the output tail and the failure message are the devserver
 * library's (libcurl probes). On failure the command's tree is killed unless keep_on_failure.
 *
 * Threads: the handler's worker thread, blocked for up to ready_timeout_ms (no SBX_RUN_INLINE);
 * the wait gives up when the client leaves, the deadline passes, the server stops or the
 * sandbox stops. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "devserver.h"
#include "handlers.h"
#include "log.h"
#include "status.h"

#define TAIL_LINES 20
#define READY_TIMEOUT_DEFAULT_MS 30000

/* How the wait went, for the answer. */
typedef struct dev_outcome {
    uint16_t host_port;
    bool reused, killed;
    int64_t started_mono_ms;
    sbx_dev_result res;
    char tail[2048];
} dev_outcome;

typedef struct {
    sbx_ctx *ctx;
    sbx_exsvc *s;
    sbx_box *b;
    sbx_proc *p;
} dev_wait;

/* sbx_dev_wait_fn: stops the wait when the client left, the deadline passed, the server is
 * stopping or the sandbox stopped; otherwise waits on the server process. */
static int dev_wait_fn(void *arg, int timeout_ms, sbx_dev_exit *ex)
{
    dev_wait *w = arg;
    if (sbx_ctx_cancelled(w->ctx) || sbx_ctx_server_stopping(w->ctx) ||
        __atomic_load_n(&w->s->stopping, __ATOMIC_RELAXED) || !sbx_box_running(w->b))
        return -ECANCELED;
    int64_t left = sbx_ctx_remaining_ms(w->ctx);
    if (left <= 0)
        return -ECANCELED;
    if (timeout_ms > left)
        timeout_ms = (int)left;
    return sbx_devserver_proc_wait(w->p, timeout_ms, ex);
}

static int check_request(sbx_ctx *ctx, sbx_exsvc *s, const Sbx__V1__StartDevServerRequest *r)
{
    int code = exh_check_port(ctx, s, r->port);
    if (code != SBX_OK)
        return code;
    const char *path = r->ready_path[0] ? r->ready_path : "/";
    if (strlen(path) > EXV_READY_PATH_MAX || sbx_devserver_check_path(path) < 0)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                             "ready_path: must start with \"/\" and be "
                             "1..%d printable bytes without spaces or '#'",
                             EXV_READY_PATH_MAX);
    if (r->ready_timeout_ms < 0 || r->ready_timeout_ms > EXV_READY_TIMEOUT_MAX_MS)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "ready_timeout_ms: %lld is not in 0..%lld",
                             (long long)r->ready_timeout_ms, (long long)EXV_READY_TIMEOUT_MAX_MS);
    if (r->command_case != SBX__V1__START_DEV_SERVER_REQUEST__COMMAND_ARGV &&
        r->command_case != SBX__V1__START_DEV_SERVER_REQUEST__COMMAND_SHELL)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "command: required (argv or shell)");
    return SBX_OK;
}

/* The ExecRequest a StartDevServerRequest stands for: a background command with stdin closed,
 * the sandbox's command timeout (arena memory, pointing into r). */
static Sbx__V1__ExecRequest *as_exec(sbx_ctx *ctx, const Sbx__V1__StartDevServerRequest *r)
{
    Sbx__V1__ExecRequest *x =
        (Sbx__V1__ExecRequest *)sbx_ctx_new_msg(ctx, &sbx__v1__exec_request__descriptor);
    x->sandbox_id = r->sandbox_id;
    x->project_id = r->project_id;
    if (r->command_case == SBX__V1__START_DEV_SERVER_REQUEST__COMMAND_ARGV) {
        x->command_case = SBX__V1__EXEC_REQUEST__COMMAND_ARGV;
        x->argv = r->argv;
    } else if (r->command_case == SBX__V1__START_DEV_SERVER_REQUEST__COMMAND_SHELL) {
        x->command_case = SBX__V1__EXEC_REQUEST__COMMAND_SHELL;
        x->shell = r->shell;
    }
    x->cwd = r->cwd;
    x->n_env = r->n_env;
    if (r->n_env) {
        x->env = sbx_ctx_alloc(ctx, r->n_env * sizeof *x->env);
        for (size_t i = 0; i < r->n_env; i++) {
            Sbx__V1__ExecRequest__EnvEntry *e = (Sbx__V1__ExecRequest__EnvEntry *)sbx_ctx_new_msg(
                ctx, &sbx__v1__exec_request__env_entry__descriptor);
            e->key = r->env[i] ? r->env[i]->key : (char *)"";
            e->value = r->env[i] ? r->env[i]->value : (char *)"";
            x->env[i] = e;
        }
    }
    x->close_stdin = true;
    x->background = true;
    x->tag = r->tag;
    return x;
}

/* The running execution with the request's tag (a reference), or NULL. */
static sbx_exe *running_with_tag(sbx_box *b, const char *tag)
{
    sbx_exe *e = tag[0] ? sbx_exe_find_tag(b, tag) : NULL;
    if (e && sbx_exe_wait_started(e, 15000) != EXE_RUNNING) {
        sbx_exe_unref(e);
        e = NULL;
    }
    return e;
}

/* Starts the command as a background execution, or finds the running one with the tag.
 * On SBX_OK *out is a reference. */
static int start_or_reuse(sbx_ctx *ctx, sbx_exsvc *s, sbx_box *b, const Sbx__V1__ExecRequest *x,
                          sbx_exe **out, bool *reused)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        if ((*out = running_with_tag(b, x->tag))) {
            *reused = true;
            return SBX_OK;
        }
        sbx_exe *existing = NULL;
        int code = exh_start(ctx, s, b, x, true, out, &existing);
        sbx_exe_unref(existing); /* no request_id: none */
        if (code == SBX_ALREADY_EXISTS && x->tag[0] && attempt == 0)
            continue; /* the tag was taken in between: reuse that process */
        if (code == SBX_OK && !*out)
            code = sbx_ctx_error(ctx, SBX_INTERNAL, "the execution table returned no execution");
        return code;
    }
    return sbx_ctx_error(ctx, SBX_ALREADY_EXISTS, "tag: \"%s\" is in use", x->tag);
}

/* Waits for readiness through the probe URL; kills the tree on failure unless kept; fills the
 * output tail. Returns SBX_OK, or INTERNAL when the probe could not run. */
static int wait_ready(sbx_ctx *ctx, sbx_exsvc *s, sbx_box *b, sbx_exe *e,
                      const Sbx__V1__StartDevServerRequest *r, const char *probe, dev_outcome *o)
{
    sbx_proc *p = sbx_exe_proc(e);
    if (!p)
        return sbx_ctx_error(ctx, SBX_INTERNAL, "the dev server has no process");
    dev_wait w = {.ctx = ctx, .s = s, .b = b, .p = p};
    sbx_dev_wait_req wr = {
        .url = probe,
        .timeout_ms =
            r->ready_timeout_ms ? (uint32_t)r->ready_timeout_ms : READY_TIMEOUT_DEFAULT_MS,
        .wait = dev_wait_fn,
        .wait_arg = &w,
    };
    int rc = sbx_devserver_wait(&wr, &o->res);
    if (rc == 0 && o->res.outcome != SBX_DEV_READY) {
        if (!r->keep_on_failure) {
            sbx_proc_kill_tree(p); /* also what an exited server left behind */
            o->killed = o->res.outcome != SBX_DEV_EXITED;
        }
        sbx_proc_wait_finished(p, 300); /* let its last output drain into the ring */
    }
    if (rc == 0)
        sbx_devserver_tail(p, TAIL_LINES, o->tail, sizeof o->tail);
    sbx_proc_unref(p);
    return rc == 0 ? SBX_OK
                   : sbx_ctx_error(ctx, SBX_INTERNAL, "readiness probe: %s", strerror(-rc));
}

static int answer_ready(sbx_ctx *ctx, sbx_exsvc *s, sbx_box *b, const sbx_exe_info *in,
                        const dev_outcome *o, ProtobufCMessage **resp)
{
    Sbx__V1__StartDevServerResponse *out = (Sbx__V1__StartDevServerResponse *)sbx_ctx_new_msg(
        ctx, &sbx__v1__start_dev_server_response__descriptor);
    out->url = exh_url(ctx, s, o->host_port);
    out->pid = in->pid;
    out->host = sbx_ctx_strdup(ctx, sbx_portfwd_bind_host(s->fwd));
    out->host_port = o->host_port;
    int64_t after = o->reused && in->started_ms > 0 ? sbx_wall_ms() - in->started_ms
                                                    : (int64_t)sbx_mono_ms() - o->started_mono_ms;
    out->ready_after_ms = after > 0 ? after : 0;
    out->sandbox_id = sbx_ctx_strdup(ctx, sbx_box_id(b));
    *resp = &out->base;
    return SBX_OK;
}

/* The answer of a wait that did not end ready. */
static int answer_failed(sbx_ctx *ctx, sbx_box *b, const sbx_exe_info *in, uint32_t port,
                         const dev_outcome *o)
{
    if (o->res.outcome != SBX_DEV_CANCELLED) {
        char msg[3072];
        int code =
            sbx_devserver_message(&o->res, (uint16_t)port, o->killed, o->tail, msg, sizeof msg);
        return sbx_ctx_error(ctx, code, "%s", msg);
    }
    bool late = sbx_ctx_remaining_ms(ctx) <= 0 && !sbx_ctx_cancelled(ctx);
    bool gone = !sbx_box_running(b);
    return sbx_ctx_error(ctx,
                         gone   ? SBX_UNAVAILABLE
                         : late ? SBX_DEADLINE_EXCEEDED
                                : SBX_CANCELLED,
                         "%s while waiting for the dev server on port %u (%u ms); process %d "
                         "%s%s%s",
                         gone   ? "the sandbox stopped"
                         : late ? "the RPC deadline passed"
                                : "the call was cancelled",
                         (unsigned)port, o->res.elapsed_ms, in->pid,
                         o->killed ? "killed" : "left running",
                         o->tail[0] ? "; last output:\n" : "", o->tail);
}

static int dev_in_box(sbx_ctx *ctx, sbx_exsvc *s, sbx_box *b,
                      const Sbx__V1__StartDevServerRequest *r, const Sbx__V1__ExecRequest *x,
                      ProtobufCMessage **resp)
{
    dev_outcome o = {0};
    int code = exh_expose(ctx, s, b, r->port, &o.host_port);
    if (code != SBX_OK)
        return code;
    char probe[EXV_READY_PATH_MAX + 128];
    if (sbx_devserver_probe_url(sbx_portfwd_bind_host(s->fwd), o.host_port, r->ready_path, probe,
                                sizeof probe) < 0)
        return sbx_ctx_error(ctx, SBX_INTERNAL, "cannot build the readiness URL");
    o.started_mono_ms = (int64_t)sbx_mono_ms();
    sbx_exe *e = NULL;
    if ((code = start_or_reuse(ctx, s, b, x, &e, &o.reused)) != SBX_OK)
        return code;
    sbx_exe_info in;
    sbx_exe_info_get(e, &in);
    code = wait_ready(ctx, s, b, e, r, probe, &o);
    if (code == SBX_OK)
        SBX_LOG_INFO("ports",
                     "dev server sandbox=%s port=%u host_port=%u pid=%d reused=%d "
                     "outcome=%d elapsed_ms=%u probes=%u",
                     sbx_box_id(b), (unsigned)r->port, (unsigned)o.host_port, in.pid,
                     o.reused ? 1 : 0, (int)o.res.outcome, o.res.elapsed_ms, o.res.probes);
    if (code == SBX_OK)
        code = o.res.outcome == SBX_DEV_READY ? answer_ready(ctx, s, b, &in, &o, resp)
                                              : answer_failed(ctx, b, &in, r->port, &o);
    sbx_exe_unref(e);
    return code;
}

int exh_start_dev_server(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                         void *data)
{
    sbx_exsvc *s = data;
    const Sbx__V1__StartDevServerRequest *r = (const Sbx__V1__StartDevServerRequest *)req;
    int code = check_request(ctx, s, r);
    if (code != SBX_OK)
        return code;
    Sbx__V1__ExecRequest *x = as_exec(ctx, r);
    char err[512];
    if ((code = exv_exec_request(x, err, sizeof err)) != SBX_OK) /* the address included */
        return sbx_ctx_error(ctx, code, "%s", err);
    sbx_box *b;
    if ((code = exh_resolve(ctx, s, r->sandbox_id, r->project_id, REG_CREATE, &b)) != SBX_OK)
        return code;
    code = dev_in_box(ctx, s, b, r, x, resp);
    sbx_box_release(b);
    return code;
}
