/* handlers_proc.c: ListProcesses, SignalProcess, SendInput, CloseInput, AttachProcess — the
 * commands of a running sandbox, foreground and background, selected by pid or tag (the
 * prologue is exh_process_get). Input is queued in the process table; output is streamed by
 * handlers_output.c.
 *
 * Threads: the handlers' worker threads; SendInput and AttachProcess block theirs. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "handlers.h"
#include "status.h"

static Sbx__V1__ProcessInfo *proc_info(sbx_ctx *ctx, sbx_exe *e)
{
    sbx_exe_info in;
    sbx_exe_info_get(e, &in);
    Sbx__V1__ProcessInfo *m =
        (Sbx__V1__ProcessInfo *)sbx_ctx_new_msg(ctx, &sbx__v1__process_info__descriptor);
    m->pid = in.pid;
    m->tag = sbx_ctx_strdup(ctx, e->tag);
    if (e->argv) {
        m->n_argv = e->argc;
        m->argv = sbx_ctx_alloc(ctx, (e->argc ? e->argc : 1) * sizeof(char *));
        for (size_t i = 0; i < e->argc; i++)
            m->argv[i] = sbx_ctx_strdup(ctx, e->argv[i]);
    }
    m->shell = sbx_ctx_strdup(ctx, e->shell ? e->shell : "");
    m->cwd = sbx_ctx_strdup(ctx, e->cwd);
    m->running = in.state == EXE_RUNNING;
    if (in.state == EXE_DONE)
        m->exit = exh_exit_msg(ctx, &in.exit);
    m->started_at_unix_ms = in.started_ms;
    m->stdout_bytes = in.state == EXE_DONE ? in.exit.stdout_bytes : in.out_end;
    m->stderr_bytes = in.state == EXE_DONE ? in.exit.stderr_bytes : in.err_end;
    m->background = e->background;
    m->stdin_open = in.stdin_open;
    if (e->pty) {
        m->pty = (Sbx__V1__TerminalSize *)sbx_ctx_new_msg(ctx, &sbx__v1__terminal_size__descriptor);
        m->pty->cols = in.cols;
        m->pty->rows = in.rows;
    }
    return m;
}

int exh_list_processes(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                       void *data)
{
    const Sbx__V1__ListProcessesRequest *r = (const Sbx__V1__ListProcessesRequest *)req;
    sbx_box *b;
    int code = exh_box(ctx, data, r->sandbox_id, r->project_id, REG_USE, &b);
    if (code != SBX_OK)
        return code;
    sbx_exe **v;
    size_t n = sbx_exe_list(b, r->include_exited, &v);
    Sbx__V1__ListProcessesResponse *out = (Sbx__V1__ListProcessesResponse *)sbx_ctx_new_msg(
        ctx, &sbx__v1__list_processes_response__descriptor);
    out->processes = n ? sbx_ctx_alloc(ctx, n * sizeof(Sbx__V1__ProcessInfo *)) : NULL;
    for (size_t i = 0; i < n; i++)
        out->processes[out->n_processes++] = proc_info(ctx, v[i]);
    sbx_exe_list_free(v, n);
    sbx_box_release(b);
    *resp = &out->base;
    return SBX_OK;
}

int exh_signal_process(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                       void *data)
{
    const Sbx__V1__SignalProcessRequest *r = (const Sbx__V1__SignalProcessRequest *)req;
    int sig = r->signal ? r->signal : 15;
    if (sig < 1 || sig > EXV_SIGNAL_MAX)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "signal: %d is not in 1..%d", r->signal,
                             EXV_SIGNAL_MAX);
    sbx_box *b;
    sbx_exe *e;
    int code = exh_process_get(ctx, data, r->sandbox_id, r->project_id, r->process, &b, &e);
    if (code != SBX_OK)
        return code;
    sbx_exe_info in;
    sbx_exe_info_get(e, &in);
    int rc = in.state == EXE_RUNNING && in.pid > 0
                 ? sbx_sandbox_signal_group(sbx_box_sandbox(b), in.pid, sig)
                 : -ESRCH;
    if (rc == -ESRCH)
        code = sbx_ctx_error(ctx, SBX_FAILED_PRECONDITION, "process %d already exited", in.pid);
    else if (rc < 0)
        code =
            sbx_ctx_error(ctx, SBX_INTERNAL, "cannot signal process %d: %s", in.pid, strerror(-rc));
    exh_process_put(b, e);
    if (code == SBX_OK)
        *resp = sbx_ctx_new_msg(ctx, &sbx__v1__signal_process_response__descriptor);
    return code;
}

/* Writes SendInput's data within the call's deadline (at most 10 minutes). */
static int send_input(sbx_ctx *ctx, sbx_exe *e, const ProtobufCBinaryData *data)
{
    sbx_exe_info in;
    sbx_exe_info_get(e, &in);
    if (in.state != EXE_RUNNING)
        return sbx_ctx_error(ctx, SBX_FAILED_PRECONDITION, "process %d already exited", in.pid);
    if (!in.stdin_open)
        return sbx_ctx_error(ctx, SBX_FAILED_PRECONDITION, "process %d: stdin is closed", in.pid);
    if (!data->len)
        return SBX_OK;
    int64_t left = sbx_ctx_remaining_ms(ctx);
    int to = left > 600000 ? 600000 : (int)(left > 0 ? left : 0);
    ssize_t n = sbx_exe_write_input(e, data->data, data->len, to);
    if (n == -EPIPE)
        return sbx_ctx_error(ctx, SBX_FAILED_PRECONDITION, "process %d: stdin is closed", in.pid);
    if (n < 0)
        return sbx_ctx_error(ctx, SBX_INTERNAL, "write to stdin: %s", strerror((int)-n));
    if ((size_t)n < data->len)
        return sbx_ctx_error(ctx, SBX_DEADLINE_EXCEEDED,
                             "data: %zd of %zu bytes written before "
                             "the deadline (the process is not reading)",
                             n, data->len);
    return SBX_OK;
}

int exh_send_input(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    const Sbx__V1__SendInputRequest *r = (const Sbx__V1__SendInputRequest *)req;
    if (r->data.len > EXV_INPUT_MAX)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "data: %zu bytes exceeds the limit of %d",
                             r->data.len, EXV_INPUT_MAX);
    sbx_box *b;
    sbx_exe *e;
    int code = exh_process_get(ctx, data, r->sandbox_id, r->project_id, r->process, &b, &e);
    if (code != SBX_OK)
        return code;
    code = send_input(ctx, e, &r->data);
    exh_process_put(b, e);
    if (code == SBX_OK)
        *resp = sbx_ctx_new_msg(ctx, &sbx__v1__send_input_response__descriptor);
    return code;
}

int exh_close_input(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    const Sbx__V1__CloseInputRequest *r = (const Sbx__V1__CloseInputRequest *)req;
    sbx_box *b;
    sbx_exe *e;
    int code = exh_process_get(ctx, data, r->sandbox_id, r->project_id, r->process, &b, &e);
    if (code != SBX_OK)
        return code;
    sbx_exe_close_input(e);
    exh_process_put(b, e);
    *resp = sbx_ctx_new_msg(ctx, &sbx__v1__close_input_response__descriptor);
    return SBX_OK;
}

int exh_attach_process(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                       void *data)
{
    (void)resp;
    const Sbx__V1__AttachProcessRequest *r = (const Sbx__V1__AttachProcessRequest *)req;
    sbx_box *b;
    sbx_exe *e;
    int code = exh_process_get(ctx, data, r->sandbox_id, r->project_id, r->process, &b, &e);
    if (code != SBX_OK)
        return code;
    /* the box use is not needed to read output: let a KillSandbox proceed while we follow */
    sbx_box_release(b);
    sbx_exe_info in;
    sbx_exe_info_get(e, &in);
    bool out_far = r->stdout_offset > in.out_end;
    if (out_far || r->stderr_offset > in.err_end) {
        exh_process_put(NULL, e);
        return sbx_ctx_error(ctx, SBX_OUT_OF_RANGE,
                             "%s: offset %llu is beyond the %llu bytes "
                             "produced so far",
                             out_far ? "stdout_offset" : "stderr_offset",
                             (unsigned long long)(out_far ? r->stdout_offset : r->stderr_offset),
                             (unsigned long long)(out_far ? in.out_end : in.err_end));
    }
    Sbx__V1__ExecEvent ev = SBX__V1__EXEC_EVENT__INIT;
    ev.event_case = SBX__V1__EXEC_EVENT__EVENT_ATTACHED;
    ev.attached = exh_attach_info(ctx, e);
    if (sbx_stream_send(ctx, &ev.base) < 0) {
        exh_process_put(NULL, e);
        return SBX_CANCELLED;
    }
    exh_follower f;
    exh_follow_init(&f, ctx, e, r->stdout_offset, r->stderr_offset);
    code = exh_follow_stream(&f, r->follow);
    exh_follow_done(&f);
    exh_process_put(NULL, e);
    return code;
}
