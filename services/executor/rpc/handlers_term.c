/* handlers_term.c: ResizeTerminal, the one RPC of its own that a terminal needs (a terminal is
 * otherwise an ordinary process: Exec/Run with ExecRequest.pty start it, SendInput types into
 * it, CloseInput types EOF, AttachProcess/ListProcesses/SignalProcess work as for pipes). The
 * new size is set on the terminal's master side with TIOCSWINSZ, so the kernel delivers
 * SIGWINCH to the terminal's foreground process group.
 *
 * Threads: the handlers' worker threads; nothing blocks. */
#include <errno.h>
#include <string.h>

#include "handlers.h"
#include "status.h"

int exh_resize_terminal(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                        void *data)
{
    const Sbx__V1__ResizeTerminalRequest *r = (const Sbx__V1__ResizeTerminalRequest *)req;
    char err[128];
    int code = exv_term_size("", r->cols, r->rows, err, sizeof err);
    if (code != SBX_OK)
        return sbx_ctx_error(ctx, code, "%s", err);
    sbx_box *b;
    sbx_exe *e;
    code = exh_process_get(ctx, data, r->sandbox_id, r->project_id, r->process, &b, &e);
    if (code != SBX_OK)
        return code;
    sbx_exe_info in;
    sbx_exe_info_get(e, &in);
    int rc = sbx_exe_resize(e, (uint16_t)r->cols, (uint16_t)r->rows);
    if (rc == -ENOTTY)
        code = sbx_ctx_error(ctx, SBX_FAILED_PRECONDITION,
                             "process %d has no terminal (start it with pty set)", in.pid);
    else if (rc == -ESRCH)
        code = sbx_ctx_error(ctx, SBX_FAILED_PRECONDITION, "process %d already exited", in.pid);
    else if (rc < 0)
        code = sbx_ctx_error(ctx, SBX_INTERNAL, "resize the terminal of process %d: %s", in.pid,
                             strerror(-rc));
    exh_process_put(b, e);
    if (code == SBX_OK)
        *resp = sbx_ctx_new_msg(ctx, &sbx__v1__resize_terminal_response__descriptor);
    return code;
}
