/* procs.c: a sandbox's processes: ListProcesses, SignalProcess, SendInput, CloseInput,
 * ResizeTerminal. */
#include <stdlib.h>
#include <string.h>

#include "sbx/v1/executor.pb-c.h"
#include "sbx_internal.h"

#define M(m) "/sbx.v1.SandboxExecutor/" m

static void sel_fill(Sbx__V1__ProcessSelector *ps, sbx_proc_sel sel)
{
    sbx__v1__process_selector__init(ps);
    if (sel.tag && *sel.tag) {
        ps->sel_case = SBX__V1__PROCESS_SELECTOR__SEL_TAG;
        ps->tag = (char *)sel.tag;
    } else {
        ps->sel_case = SBX__V1__PROCESS_SELECTOR__SEL_PID;
        ps->pid = sel.pid;
    }
}

void sbx_proc_list_free(sbx_proc_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->count; i++) {
        free(l->procs[i].tag);
        free(l->procs[i].command);
        free(l->procs[i].cwd);
    }
    free(l->procs);
    free(l);
}

sbx_error *sbx_proc_list_get(sbx_client *c, const char *project_id, bool include_exited,
                             sbx_proc_list **out)
{
    *out = NULL;
    Sbx__V1__ListProcessesRequest req = SBX__V1__LIST_PROCESSES_REQUEST__INIT;
    req.project_id = (char *)sbx__nz(project_id);
    req.include_exited = include_exited;
    ProtobufCMessage *resp = NULL;
    sbx_error *e =
        sbx__unary_key(c, SBX_SERVICE_EXECUTOR, req.project_id, M("ListProcesses"), &req.base,
                       &sbx__v1__list_processes_response__descriptor, &resp, true);
    if (e)
        return e;
    Sbx__V1__ListProcessesResponse *r = (void *)resp;
    sbx_proc_list *l = calloc(1, sizeof *l);
    bool ok = l != NULL;
    if (ok && r->n_processes)
        ok = (l->procs = calloc(r->n_processes, sizeof *l->procs)) != NULL;
    for (size_t i = 0; ok && i < r->n_processes; i++) {
        const Sbx__V1__ProcessInfo *s = r->processes[i];
        sbx_proc_info *d = &l->procs[i];
        l->count++;
        d->pid = s->pid;
        d->running = s->running;
        d->background = s->background;
        d->stdin_open = s->stdin_open;
        d->started_at_ms = s->started_at_unix_ms;
        d->stdout_bytes = s->stdout_bytes;
        d->stderr_bytes = s->stderr_bytes;
        if (s->exit) {
            d->has_exit = true;
            d->exit_code = s->exit->exit_code;
            d->signal = s->exit->signal;
            d->timed_out = s->exit->timed_out;
            d->duration_us = s->exit->duration_us;
        }
        if (s->pty) {
            d->pty = true;
            d->cols = s->pty->cols;
            d->rows = s->pty->rows;
        }
        d->tag = sbx__strdup(s->tag);
        d->cwd = sbx__strdup(s->cwd);
        d->command = *s->shell ? sbx__strdup(s->shell)
                               : sbx__join_argv((const char *const *)s->argv, s->n_argv);
        ok = d->tag && d->cwd && d->command;
    }
    protobuf_c_message_free_unpacked(resp, NULL);
    if (!ok) {
        sbx_proc_list_free(l);
        return sbx__error_oom();
    }
    *out = l;
    return NULL;
}

sbx_error *sbx_proc_signal(sbx_client *c, const char *project_id, sbx_proc_sel sel, int signal)
{
    Sbx__V1__SignalProcessRequest req = SBX__V1__SIGNAL_PROCESS_REQUEST__INIT;
    Sbx__V1__ProcessSelector ps;
    sel_fill(&ps, sel);
    req.project_id = (char *)sbx__nz(project_id);
    req.process = &ps;
    req.signal = signal;
    ProtobufCMessage *resp = NULL;
    bool idem = signal == 0 || signal == 9 || signal == 15; /* as the contract says */
    sbx_error *e =
        sbx__unary_key(c, SBX_SERVICE_EXECUTOR, req.project_id, M("SignalProcess"), &req.base,
                       &sbx__v1__signal_process_response__descriptor, &resp, idem);
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    return e;
}

sbx_error *sbx_proc_send_input(sbx_client *c, const char *project_id, sbx_proc_sel sel,
                               const void *data, size_t len)
{
    Sbx__V1__SendInputRequest req = SBX__V1__SEND_INPUT_REQUEST__INIT;
    Sbx__V1__ProcessSelector ps;
    sel_fill(&ps, sel);
    req.project_id = (char *)sbx__nz(project_id);
    req.process = &ps;
    req.data.data = (uint8_t *)data;
    req.data.len = data ? len : 0;
    ProtobufCMessage *resp = NULL;
    sbx_error *e =
        sbx__unary_key(c, SBX_SERVICE_EXECUTOR, req.project_id, M("SendInput"), &req.base,
                       &sbx__v1__send_input_response__descriptor, &resp, false);
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    return e;
}

sbx_error *sbx_proc_close_input(sbx_client *c, const char *project_id, sbx_proc_sel sel)
{
    Sbx__V1__CloseInputRequest req = SBX__V1__CLOSE_INPUT_REQUEST__INIT;
    Sbx__V1__ProcessSelector ps;
    sel_fill(&ps, sel);
    req.project_id = (char *)sbx__nz(project_id);
    req.process = &ps;
    ProtobufCMessage *resp = NULL;
    sbx_error *e =
        sbx__unary_key(c, SBX_SERVICE_EXECUTOR, req.project_id, M("CloseInput"), &req.base,
                       &sbx__v1__close_input_response__descriptor, &resp, true);
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    return e;
}

sbx_error *sbx_terminal_resize(sbx_client *c, const char *project_id, sbx_proc_sel sel,
                               uint32_t cols, uint32_t rows)
{
    Sbx__V1__ResizeTerminalRequest req = SBX__V1__RESIZE_TERMINAL_REQUEST__INIT;
    Sbx__V1__ProcessSelector ps;
    sel_fill(&ps, sel);
    req.project_id = (char *)sbx__nz(project_id);
    req.process = &ps;
    req.cols = cols;
    req.rows = rows;
    ProtobufCMessage *resp = NULL;
    sbx_error *e =
        sbx__unary_key(c, SBX_SERVICE_EXECUTOR, req.project_id, M("ResizeTerminal"), &req.base,
                       &sbx__v1__resize_terminal_response__descriptor, &resp, true);
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    return e;
}
