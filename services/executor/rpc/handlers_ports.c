/* handlers_ports.c: ExposePort and StartDevServer, the exposed ports of a Sandbox message, and
 * the registry's stop callback that closes a stopped sandbox's forwards (its host ports are free
 * once KillSandbox returns).
 *
 * StartDevServer runs its command as an ordinary background execution of the sandbox's
 * execution table (so `ListProcesses`, `SignalProcess --tag`, `AttachProcess` and the history see
 * it, and a tag is unique among running commands exactly as for Exec); the readiness wait,
 * the output tail and the failure message are the devserver library's (libcurl probes through
 * the forwarder). The handler blocks for up to ready_timeout_ms, so it runs on a worker thread
 * (no SBX_RUN_INLINE). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "devserver.h"
#include "handlers.h"
#include "log.h"
#include "status.h"

#define TAIL_LINES 20

/* The status and message of a failed sbx_portfwd_expose*. */
static int expose_error(sbx_ctx *ctx, int rc, uint32_t port, const char *sandbox_id)
{
    switch (rc) {
    case -ENOSPC:
        return sbx_ctx_error(ctx, SBX_RESOURCE_EXHAUSTED, "port: sandbox %s already exposes the "
                             "most ports allowed; %u not exposed", sandbox_id, port);
    case -EADDRINUSE:
    case -EADDRNOTAVAIL:
        return sbx_ctx_error(ctx, SBX_RESOURCE_EXHAUSTED, "port: no host port free to forward "
                             "port %u (%s)", port, strerror(-rc));
    case -ESRCH:
    case -ESTALE:
        return sbx_ctx_error(ctx, SBX_UNAVAILABLE, "sandbox %s stopped while port %u was being "
                             "exposed; retry", sandbox_id, port);
    case -EMFILE:
    case -ENFILE:
    case -ENOMEM:
        return sbx_ctx_error(ctx, SBX_RESOURCE_EXHAUSTED, "expose port %u: %s", port,
                             strerror(-rc));
    default:
        return sbx_ctx_error(ctx, SBX_INTERNAL, "expose port %u: %s", port, strerror(-rc));
    }
}

static int check_port(sbx_ctx *ctx, sbx_exsvc *s, uint32_t port)
{
    if (port == 0 || port > 65535)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "port: %u is not in 1..65535", port);
    if (!s->fwd)
        return sbx_ctx_error(ctx, SBX_UNAVAILABLE, "port forwarding is not available on this "
                             "executor");
    return SBX_OK;
}

/* Exposes port in b (held with a use). */
static int expose(sbx_ctx *ctx, sbx_exsvc *s, sbx_box *b, uint32_t port, uint16_t *host_port)
{
    sbx_box_snap sn;
    sbx_box_snapshot(b, &sn);
    if (sn.state != SBX_BOX_RUNNING || sn.init_pid <= 0)
        return sbx_ctx_error(ctx, SBX_UNAVAILABLE, "sandbox %s stopped; retry", sbx_box_id(b));
    int rc = sbx_portfwd_expose_pid(s->fwd, sbx_box_id(b), sn.init_pid, (uint16_t)port, host_port);
    if (rc < 0)
        return expose_error(ctx, rc, port, sbx_box_id(b));
    return SBX_OK;
}

static char *url_of(sbx_ctx *ctx, sbx_exsvc *s, uint16_t host_port)
{
    char url[128];
    if (sbx_portfwd_url(s->fwd, host_port, url, sizeof url) < 0)
        url[0] = 0;
    return sbx_ctx_strdup(ctx, url);
}

int exh_expose_port(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    sbx_exsvc *s = data;
    const Sbx__V1__ExposePortRequest *r = (const Sbx__V1__ExposePortRequest *)req;
    int code = check_port(ctx, s, r->port);
    if (code != SBX_OK)
        return code;
    sbx_box *b;
    if ((code = exh_box(ctx, s, r->sandbox_id, r->project_id, REG_CREATE, &b)) != SBX_OK)
        return code;
    uint16_t hp = 0;
    code = expose(ctx, s, b, r->port, &hp);
    if (code == SBX_OK)
        SBX_LOG_DEBUG("ports", "exposed sandbox=%s port=%u host_port=%u", sbx_box_id(b),
                      (unsigned)r->port, (unsigned)hp);
    sbx_box_release(b);
    if (code != SBX_OK)
        return code;
    Sbx__V1__ExposePortResponse *out = (Sbx__V1__ExposePortResponse *)sbx_ctx_new_msg(
        ctx, &sbx__v1__expose_port_response__descriptor);
    out->host = sbx_ctx_strdup(ctx, sbx_portfwd_bind_host(s->fwd));
    out->host_port = hp;
    out->url = url_of(ctx, s, hp);
    *resp = &out->base;
    return SBX_OK;
}

/* ---------------------------------------------------------------- StartDevServer */

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

/* The last lines of an execution whose process is gone (exec failure): its captured stderr,
 * else stdout. */
static void capture_tail(sbx_exe *e, char *buf, size_t len)
{
    buf[0] = 0;
    for (int s = 0; s < 2 && !buf[0]; s++) {
        int stream = s ? SBX_STREAM_STDOUT : SBX_STREAM_STDERR;
        size_t n = sbx_exe_capture_len(e, stream);
        uint64_t off = n > len - 1 ? n - (len - 1) : 0;
        size_t m = sbx_exe_capture_read(e, stream, off, buf, len - 1);
        while (m > 0 && (buf[m - 1] == '\n' || buf[m - 1] == '\r'))
            m--;
        for (size_t i = 0; i < m; i++)
            if (((unsigned char)buf[i] < 0x20 && buf[i] != '\n' && buf[i] != '\t') ||
                (unsigned char)buf[i] == 0x7f)
                buf[i] = '?';
        buf[m] = 0;
    }
}

/* Starts the command as a background execution, or finds the running one with the tag.
 * On SBX_OK *out is a reference. */
static int start_or_reuse(sbx_ctx *ctx, sbx_box *b, const Sbx__V1__ExecRequest *x, sbx_exe **out,
                          bool *reused)
{
    char err[512];
    *out = NULL;
    *reused = false;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (x->tag[0]) {
            sbx_exe *e = sbx_exe_find_tag(b, x->tag);
            if (e) {
                sbx_exe_state st = sbx_exe_wait_started(e, 15000);
                if (st == EXE_RUNNING) {
                    *out = e;
                    *reused = true;
                    return SBX_OK;
                }
                sbx_exe_unref(e);
            }
        }
        const exv_limits *lim = sbx_box_limits(b);
        sbx_exe_spec spec = {.req = x, .cmdkey = NULL, .fingerprint = "",
                             .cap = (uint64_t)lim->max_output_bytes};
        sbx_exe *e = NULL, *existing = NULL;
        int code = sbx_exe_begin(b, &spec, &e, &existing, err, sizeof err);
        if (existing)
            sbx_exe_unref(existing); /* no request_id: cannot happen */
        if (code == SBX_ALREADY_EXISTS && x->tag[0] && attempt == 0)
            continue; /* the tag was taken in between: reuse that process */
        if (code != SBX_OK)
            return sbx_ctx_error(ctx, code, "%s", err);
        if (!e)
            return sbx_ctx_error(ctx, SBX_INTERNAL, "the execution table returned no execution");
        const char *shell_argv[4] = {"/bin/sh", "-c", x->shell, NULL};
        const char **argv = shell_argv;
        if (x->command_case == SBX__V1__EXEC_REQUEST__COMMAND_ARGV) {
            argv = sbx_ctx_alloc(ctx, (x->argv->n_args + 1) * sizeof *argv);
            for (size_t i = 0; i < x->argv->n_args; i++)
                argv[i] = x->argv->args[i];
            argv[x->argv->n_args] = NULL;
        }
        sbx_proc_req pr = {
            .spawn = {.argv = argv,
                      .env = exh_build_env(ctx, b, x),
                      .cwd = e->cwd,
                      .want_stdin = false,
                      .timeout_ms = (uint32_t)lim->command_timeout_ms},
            .tag = x->tag,
            .max_output_bytes = 0,
        };
        code = sbx_exe_spawn(b, e, &pr, err, sizeof err);
        if (code != SBX_OK) {
            sbx_exe_unref(e);
            return sbx_ctx_error(ctx, code, "%s", err);
        }
        sbx_exe_follow_in_background(b, e);
        *out = e;
        return SBX_OK;
    }
    return sbx_ctx_error(ctx, SBX_ALREADY_EXISTS, "tag: \"%s\" is in use", x->tag);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int exh_start_dev_server(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                         void *data)
{
    sbx_exsvc *s = data;
    const Sbx__V1__StartDevServerRequest *r = (const Sbx__V1__StartDevServerRequest *)req;
    int code = check_port(ctx, s, r->port);
    if (code != SBX_OK)
        return code;
    const char *path = r->ready_path[0] ? r->ready_path : "/";
    if (strlen(path) > EXV_READY_PATH_MAX || sbx_devserver_check_path(path) < 0)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "ready_path: must start with \"/\" and be "
                             "1..%d printable bytes without spaces or '#'", EXV_READY_PATH_MAX);
    if (r->ready_timeout_ms < 0 || r->ready_timeout_ms > EXV_READY_TIMEOUT_MAX_MS)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "ready_timeout_ms: %lld is not in 0..%lld",
                             (long long)r->ready_timeout_ms, (long long)EXV_READY_TIMEOUT_MAX_MS);
    if (r->command_case != SBX__V1__START_DEV_SERVER_REQUEST__COMMAND_ARGV &&
        r->command_case != SBX__V1__START_DEV_SERVER_REQUEST__COMMAND_SHELL)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "command: required (argv or shell)");
    Sbx__V1__ExecRequest *x = as_exec(ctx, r);
    char err[512];
    if ((code = exv_exec_request(x, err, sizeof err)) != SBX_OK)
        return sbx_ctx_error(ctx, code, "%s", err);

    sbx_box *b;
    if ((code = exh_box(ctx, s, r->sandbox_id, r->project_id, REG_CREATE, &b)) != SBX_OK)
        return code;
    /* expose first: the probe goes through the forwarder, and the port is reachable the moment
       the server listens */
    uint16_t hp = 0;
    if ((code = expose(ctx, s, b, r->port, &hp)) != SBX_OK) {
        sbx_box_release(b);
        return code;
    }
    char probe[EXV_READY_PATH_MAX + 128];
    if (sbx_devserver_probe_url(sbx_portfwd_bind_host(s->fwd), hp, path, probe, sizeof probe) < 0) {
        sbx_box_release(b);
        return sbx_ctx_error(ctx, SBX_INTERNAL, "cannot build the readiness URL");
    }

    int64_t t0 = mono_ms();
    sbx_exe *e = NULL;
    bool reused = false;
    if ((code = start_or_reuse(ctx, b, x, &e, &reused)) != SBX_OK) {
        sbx_box_release(b);
        return code;
    }
    sbx_exe_info in;
    sbx_exe_info_get(e, &in);
    sbx_proc *p = sbx_exe_proc(e);
    sbx_dev_result res;
    memset(&res, 0, sizeof res);
    bool killed = false;
    char tail[2048] = "";
    if (!p) {
        /* it could not be executed (127/126, the reason on its stderr) or is already gone */
        sbx_exe_wait_done(e, 1000);
        sbx_exe_info_get(e, &in);
        res.outcome = SBX_DEV_EXITED;
        res.exit.exit_code = in.exit.exit_code;
        res.exit.signal = in.exit.signal;
        capture_tail(e, tail, sizeof tail);
    } else {
        dev_wait w = {.ctx = ctx, .s = s, .b = b, .p = p};
        sbx_dev_wait_req wr = {
            .url = probe,
            .timeout_ms = r->ready_timeout_ms ? (uint32_t)r->ready_timeout_ms : 30000,
            .wait = dev_wait_fn,
            .wait_arg = &w,
        };
        int rc = sbx_devserver_wait(&wr, &res);
        if (rc < 0) {
            sbx_proc_unref(p);
            sbx_exe_unref(e);
            sbx_box_release(b);
            return sbx_ctx_error(ctx, SBX_INTERNAL, "readiness probe: %s", strerror(-rc));
        }
        if (res.outcome != SBX_DEV_READY && !r->keep_on_failure) {
            sbx_proc_kill_tree(p); /* also what an exited server left behind */
            killed = res.outcome != SBX_DEV_EXITED;
        }
        if (res.outcome != SBX_DEV_READY)
            sbx_proc_wait_finished(p, 300); /* let its last output drain into the ring */
        sbx_devserver_tail(p, TAIL_LINES, tail, sizeof tail);
    }
    SBX_LOG_INFO("ports", "dev server sandbox=%s port=%u host_port=%u pid=%d reused=%d outcome=%d "
                 "elapsed_ms=%u probes=%u", sbx_box_id(b), (unsigned)r->port, (unsigned)hp, in.pid,
                 reused ? 1 : 0, (int)res.outcome, res.elapsed_ms, res.probes);
    if (res.outcome == SBX_DEV_READY) {
        Sbx__V1__StartDevServerResponse *out = (Sbx__V1__StartDevServerResponse *)sbx_ctx_new_msg(
            ctx, &sbx__v1__start_dev_server_response__descriptor);
        out->url = url_of(ctx, s, hp);
        out->pid = in.pid;
        out->host = sbx_ctx_strdup(ctx, sbx_portfwd_bind_host(s->fwd));
        out->host_port = hp;
        int64_t after = reused && in.started_ms > 0 ? sbx_now_unix_ms() - in.started_ms
                                                    : mono_ms() - t0;
        out->ready_after_ms = after > 0 ? after : 0;
        out->sandbox_id = sbx_ctx_strdup(ctx, sbx_box_id(b));
        *resp = &out->base;
        code = SBX_OK;
    } else if (res.outcome == SBX_DEV_CANCELLED) {
        bool late = sbx_ctx_remaining_ms(ctx) <= 0 && !sbx_ctx_cancelled(ctx);
        bool gone = !sbx_box_running(b);
        code = sbx_ctx_error(ctx, gone ? SBX_UNAVAILABLE : late ? SBX_DEADLINE_EXCEEDED
                                                                : SBX_CANCELLED,
                             "%s while waiting for the dev server on port %u (%u ms); process %d "
                             "%s%s%s", gone ? "the sandbox stopped" : late ? "the RPC deadline "
                             "passed" : "the call was cancelled", (unsigned)r->port,
                             res.elapsed_ms, in.pid, killed ? "killed" : "left running",
                             tail[0] ? "; last output:\n" : "", tail);
    } else {
        char msg[3072];
        code = sbx_devserver_message(&res, (uint16_t)r->port, killed, tail, msg, sizeof msg);
        code = sbx_ctx_error(ctx, code, "%s", msg);
    }
    sbx_proc_unref(p);
    sbx_exe_unref(e);
    sbx_box_release(b);
    return code;
}

/* ---------------------------------------------------------------- Sandbox.exposed_ports */

static int cmp_port(const void *a, const void *b)
{
    const sbx_portfwd_port *x = a, *y = b;
    return (int)x->port - (int)y->port;
}

void exh_sandbox_ports(sbx_ctx *ctx, sbx_exsvc *s, sbx_box *b, Sbx__V1__Sandbox *m)
{
    if (!s->fwd || !m || m->state != SBX__V1__SANDBOX_STATE__SANDBOX_STATE_RUNNING)
        return;
    sbx_portfwd_port v[128];
    int n = sbx_portfwd_list(s->fwd, sbx_box_id(b), v, sizeof v / sizeof v[0]);
    if (n <= 0)
        return;
    size_t k = (size_t)n < sizeof v / sizeof v[0] ? (size_t)n : sizeof v / sizeof v[0];
    qsort(v, k, sizeof v[0], cmp_port);
    m->exposed_ports = sbx_ctx_alloc(ctx, k * sizeof *m->exposed_ports);
    const char *host = sbx_portfwd_bind_host(s->fwd);
    for (size_t i = 0; i < k; i++) {
        Sbx__V1__ExposedPort *ep = (Sbx__V1__ExposedPort *)sbx_ctx_new_msg(
            ctx, &sbx__v1__exposed_port__descriptor);
        ep->port = v[i].port;
        ep->host = sbx_ctx_strdup(ctx, host);
        ep->host_port = v[i].host_port;
        ep->url = url_of(ctx, s, v[i].host_port);
        m->exposed_ports[i] = ep;
    }
    m->n_exposed_ports = k;
}

void exh_ports_on_stop(void *arg, sbx_box *b)
{
    sbx_portfwd *f = arg;
    if (f)
        sbx_portfwd_close_sandbox(f, sbx_box_id(b)); /* logs what it closed */
}
