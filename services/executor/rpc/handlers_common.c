/* handlers_common.c: helpers the SandboxExecutor handlers share (sandbox resolution, message
 * builders, errno mapping, output streaming) and the method table. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "handlers.h"
#include "status.h"

#define CHUNK (64 * 1024)

int exh_box(sbx_ctx *ctx, sbx_exsvc *s, const char *sandbox_id, const char *project_id, int mode,
            sbx_box **out)
{
    char err[512];
    int code = exv_address(sandbox_id, project_id, err, sizeof err);
    if (code != SBX_OK)
        return sbx_ctx_error(ctx, code, "%s", err);
    code = sbx_reg_get(s->reg, sbx_ctx_tenant(ctx), sandbox_id, project_id, mode, out, err,
                       sizeof err);
    if (code != SBX_OK)
        return sbx_ctx_error(ctx, code, "%s", err);
    return SBX_OK;
}

Sbx__V1__Sandbox *exh_sandbox_msg(sbx_ctx *ctx, sbx_box *b)
{
    Sbx__V1__Sandbox *m = (Sbx__V1__Sandbox *)sbx_ctx_new_msg(ctx, &sbx__v1__sandbox__descriptor);
    sbx_box_snap sn;
    sbx_box_snapshot(b, &sn);
    m->sandbox_id = sbx_ctx_strdup(ctx, sbx_box_id(b));
    m->project_id = sbx_ctx_strdup(ctx, sbx_box_project(b));
    m->state = sn.state == SBX_BOX_STOPPED ? SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED
                                           : SBX__V1__SANDBOX_STATE__SANDBOX_STATE_RUNNING;
    m->template_ = sbx_ctx_strdup(ctx, sbx_box_template(b));
    m->init_pid = sn.init_pid;
    m->created_at_unix_ms = sn.created_ms;
    m->last_used_at_unix_ms = sn.last_used_ms;
    m->expires_at_unix_ms = sn.expires_ms;
    m->idle_timeout_ms = sn.idle_timeout_ms;
    m->running_processes = sn.running_processes;
    Sbx__V1__SandboxLimits *l =
        (Sbx__V1__SandboxLimits *)sbx_ctx_new_msg(ctx, &sbx__v1__sandbox_limits__descriptor);
    const exv_limits *el = sbx_box_limits(b);
    l->memory_bytes = el->memory_bytes;
    l->pids = (int32_t)el->pids;
    l->cpu_millis = (int32_t)el->cpu_millis;
    l->command_timeout_ms = el->command_timeout_ms;
    l->max_output_bytes = el->max_output_bytes;
    l->open_files = (int32_t)el->open_files;
    l->disk_bytes = el->disk_bytes;
    m->limits = l;
    const char *const *enf;
    size_t ne = sbx_box_enforced(b, &enf);
    m->n_enforced = ne;
    m->enforced = ne ? sbx_ctx_alloc(ctx, ne * sizeof(char *)) : NULL;
    for (size_t i = 0; i < ne; i++)
        m->enforced[i] = sbx_ctx_strdup(ctx, enf[i]);
    const char *const *mk, *const *mv;
    size_t nm = sbx_box_metadata(b, &mk, &mv);
    m->n_metadata = nm;
    m->metadata = nm ? sbx_ctx_alloc(ctx, nm * sizeof(*m->metadata)) : NULL;
    for (size_t i = 0; i < nm; i++) {
        Sbx__V1__Sandbox__MetadataEntry *e = (Sbx__V1__Sandbox__MetadataEntry *)sbx_ctx_new_msg(
            ctx, &sbx__v1__sandbox__metadata_entry__descriptor);
        e->key = sbx_ctx_strdup(ctx, mk[i]);
        e->value = sbx_ctx_strdup(ctx, mv[i]);
        m->metadata[i] = e;
    }
    return m;
}

Sbx__V1__ProcessExit *exh_exit_msg(sbx_ctx *ctx, const sbx_exe_exit *x)
{
    Sbx__V1__ProcessExit *m =
        (Sbx__V1__ProcessExit *)sbx_ctx_new_msg(ctx, &sbx__v1__process_exit__descriptor);
    m->exit_code = x->exit_code;
    m->signal = x->signal;
    m->duration_us = x->duration_us;
    m->timed_out = x->timed_out;
    m->output_truncated = x->output_truncated;
    m->cached = x->cached;
    m->stdout_bytes = x->stdout_bytes;
    m->stderr_bytes = x->stderr_bytes;
    m->finished_at_unix_ms = x->finished_ms;
    m->oom_killed = x->oom_killed;
    return m;
}

int exh_files_error(sbx_ctx *ctx, int rc, const char *msg)
{
    int code = sbx_files_status(rc);
    if (code == SBX_OK || code == SBX_UNKNOWN)
        code = SBX_INTERNAL;
    return sbx_ctx_error(ctx, code, "%s", msg && msg[0] ? msg : strerror(-rc));
}

int exh_select(sbx_ctx *ctx, sbx_box *b, const Sbx__V1__ProcessSelector *sel, sbx_exe **out)
{
    char err[256];
    int code = exv_selector(sel, err, sizeof err);
    if (code != SBX_OK)
        return sbx_ctx_error(ctx, code, "%s", err);
    if (sel->sel_case == SBX__V1__PROCESS_SELECTOR__SEL_PID) {
        *out = sbx_exe_find_pid(b, sel->pid);
        if (!*out)
            return sbx_ctx_error(ctx, SBX_NOT_FOUND, "process.pid: no process %d in sandbox %s",
                                 sel->pid, sbx_box_id(b));
    } else {
        *out = sbx_exe_find_tag(b, sel->tag);
        if (!*out)
            return sbx_ctx_error(ctx, SBX_NOT_FOUND, "process.tag: no process tagged \"%s\" in "
                                 "sandbox %s", sel->tag, sbx_box_id(b));
    }
    return SBX_OK;
}

Sbx__V1__AttachInfo *exh_attach_info(sbx_ctx *ctx, sbx_exe *e)
{
    sbx_exe_info in;
    sbx_exe_info_get(e, &in);
    Sbx__V1__AttachInfo *a =
        (Sbx__V1__AttachInfo *)sbx_ctx_new_msg(ctx, &sbx__v1__attach_info__descriptor);
    a->pid = in.pid;
    a->running = in.state == EXE_RUNNING;
    /* the capture keeps the first bytes: with any of it, offset 0 is still held */
    a->stdout_oldest_offset = sbx_exe_capture_len(e, SBX_STREAM_STDOUT) ? 0 : in.out_oldest;
    a->stderr_oldest_offset = sbx_exe_capture_len(e, SBX_STREAM_STDERR) ? 0 : in.err_oldest;
    return a;
}

/* Reads output at *off (below limit): the capture first, then the ring. */
static size_t read_out(sbx_exe *e, sbx_proc *p, int stream, uint64_t *off, uint64_t limit,
                       uint8_t *buf, size_t len)
{
    if (*off >= limit)
        return 0;
    if (limit - *off < len)
        len = (size_t)(limit - *off);
    size_t n = sbx_exe_capture_read(e, stream, *off, buf, len);
    if (n > 0 || !p)
        return n;
    uint64_t o = *off;
    ssize_t r = sbx_proc_read(p, stream, &o, buf, len);
    if (r <= 0) {
        *off = o;
        return 0;
    }
    if (o >= limit) {
        *off = limit;
        return 0;
    }
    if (o + (uint64_t)r > limit)
        r = (ssize_t)(limit - o);
    *off = o;
    return (size_t)r;
}

static int send_chunk(sbx_ctx *ctx, int stream, const uint8_t *d, size_t n, uint64_t off)
{
    Sbx__V1__ExecEvent ev = SBX__V1__EXEC_EVENT__INIT;
    Sbx__V1__ProcessOutput po = SBX__V1__PROCESS_OUTPUT__INIT;
    po.data.data = (uint8_t *)d;
    po.data.len = n;
    po.offset = off;
    if (stream == SBX_STREAM_STDOUT) {
        ev.event_case = SBX__V1__EXEC_EVENT__EVENT_STDOUT;
        ev.stdout = &po;
    } else {
        ev.event_case = SBX__V1__EXEC_EVENT__EVENT_STDERR;
        ev.stderr = &po;
    }
    return sbx_stream_send(ctx, &ev.base);
}

/* Sends what is readable of both streams (stdout first) up to the cap. Returns 0, -ECANCELED. */
int exh_send_available(sbx_ctx *ctx, sbx_exe *e, sbx_proc *p, uint64_t off[2], uint8_t *buf)
{
    for (int s = 0; s < 2; s++) {
        int stream = s ? SBX_STREAM_STDERR : SBX_STREAM_STDOUT;
        sbx_exe_info in;
        sbx_exe_info_get(e, &in);
        uint64_t end = s ? in.err_end : in.out_end;
        uint64_t lim = end < e->cap ? end : e->cap;
        for (int rounds = 0; off[s] < lim && rounds < 64; rounds++) {
            uint64_t o = off[s];
            size_t n = read_out(e, p, stream, &o, lim, buf, CHUNK);
            if (n == 0) {
                off[s] = o > off[s] ? o : off[s];
                break;
            }
            if (send_chunk(ctx, stream, buf, n, o) < 0)
                return -ECANCELED;
            off[s] = o + n;
        }
    }
    return 0;
}

int exh_stream_output(sbx_ctx *ctx, sbx_exe *e, uint64_t off_out, uint64_t off_err, bool follow)
{
    uint8_t *buf = sbx_ctx_alloc(ctx, CHUNK);
    uint64_t off[2] = {off_out, off_err};
    sbx_proc *p = sbx_exe_proc(e);
    int code = SBX_OK;
    for (;;) {
        sbx_exe_info in;
        sbx_exe_info_get(e, &in);
        bool done = in.state >= EXE_DONE;
        if (exh_send_available(ctx, e, p, off, buf) < 0) {
            code = SBX_CANCELLED;
            break;
        }
        if (done) {
            if (in.state == EXE_DONE) {
                Sbx__V1__ExecEvent ev = SBX__V1__EXEC_EVENT__INIT;
                ev.event_case = SBX__V1__EXEC_EVENT__EVENT_EXITED;
                ev.exited = exh_exit_msg(ctx, &in.exit);
                if (sbx_stream_send(ctx, &ev.base) < 0)
                    code = SBX_CANCELLED;
            }
            break;
        }
        if (!follow)
            break;
        if (sbx_ctx_cancelled(ctx)) {
            code = SBX_CANCELLED;
            break;
        }
        uint64_t w_out = off[0] >= e->cap ? UINT64_MAX : off[0];
        uint64_t w_err = off[1] >= e->cap ? UINT64_MAX : off[1];
        if (p) {
            sbx_proc_status st;
            sbx_proc_status_get(p, &st);
            if (st.finished)
                sbx_exe_wait_done(e, 50); /* the driver records it, then it is DONE */
            else
                sbx_proc_wait(p, w_out, w_err, 250);
        } else {
            sbx_exe_wait_done(e, 250);
        }
    }
    sbx_proc_unref(p);
    return code;
}

/* ---------------------------------------------------------------- method table */

const sbx_method sbx_executor_methods[] = {
    {"CreateSandbox", SBX_UNARY, 0, exh_create_sandbox},
    {"GetSandbox", SBX_UNARY, 0, exh_get_sandbox},
    {"ListSandboxes", SBX_UNARY, SBX_RUN_INLINE, exh_list_sandboxes},
    {"KillSandbox", SBX_UNARY, 0, exh_kill_sandbox},
    {"SetSandboxTimeout", SBX_UNARY, 0, exh_set_sandbox_timeout},
    {"Exec", SBX_SERVER_STREAM, 0, exh_exec},
    {"Run", SBX_UNARY, 0, exh_run},
    {"ListProcesses", SBX_UNARY, 0, exh_list_processes},
    {"SignalProcess", SBX_UNARY, 0, exh_signal_process},
    {"SendInput", SBX_UNARY, 0, exh_send_input},
    {"CloseInput", SBX_UNARY, 0, exh_close_input},
    {"AttachProcess", SBX_SERVER_STREAM, 0, exh_attach_process},
    {"ReadFile", SBX_SERVER_STREAM, 0, exh_read_file},
    {"WriteFile", SBX_CLIENT_STREAM, 0, exh_write_file},
    {"ListDir", SBX_UNARY, 0, exh_list_dir},
    {"Stat", SBX_UNARY, 0, exh_stat},
    {"MakeDir", SBX_UNARY, 0, exh_make_dir},
    {"Remove", SBX_UNARY, 0, exh_remove},
    {"Move", SBX_UNARY, 0, exh_move},
    {"UploadFiles", SBX_CLIENT_STREAM, 0, exh_upload_files},
    {"ExposePort", SBX_UNARY, 0, exh_expose_port},
    {"StartDevServer", SBX_UNARY, 0, exh_start_dev_server},
};
const size_t sbx_executor_n_methods = sizeof sbx_executor_methods / sizeof sbx_executor_methods[0];

/* "K=V" environment: the sandbox's, overridden per key by the request's. Arena memory. */
const char **exh_build_env(sbx_ctx *ctx, sbx_box *b, const Sbx__V1__ExecRequest *r)
{
    const char *const *benv;
    size_t nb = sbx_box_env(b, &benv);
    const char **env = sbx_ctx_alloc(ctx, (nb + r->n_env + 1) * sizeof *env);
    size_t n = 0;
    for (size_t i = 0; i < nb; i++) {
        const char *eq = strchr(benv[i], '=');
        size_t kl = eq ? (size_t)(eq - benv[i]) : strlen(benv[i]);
        bool overridden = false;
        for (size_t k = 0; k < r->n_env && !overridden; k++)
            overridden = strlen(r->env[k]->key) == kl && memcmp(r->env[k]->key, benv[i], kl) == 0;
        if (!overridden)
            env[n++] = benv[i];
    }
    for (size_t k = 0; k < r->n_env; k++) {
        size_t l = strlen(r->env[k]->key) + strlen(r->env[k]->value) + 2;
        char *s = sbx_ctx_alloc(ctx, l);
        snprintf(s, l, "%s=%s", r->env[k]->key, r->env[k]->value);
        env[n++] = s;
    }
    env[n] = NULL;
    return env;
}
