/* handlers_output.c: streaming an execution's output to a client (Exec while it runs, the rest
 * and `exited` after it, AttachProcess, request_id replays, cached answers). One follower per
 * client keeps the next offset of each stream; one send step and one wait step serve every
 * loop, so the offsets and the per-stream cap are computed in one place. Output chunks are at
 * most 64 KiB (ProcessOutput.data) and carry their absolute offset.
 *
 * Threads: the handler's. The follower holds a reference to the process; nothing else. */
#include <errno.h>
#include <string.h>

#include "handlers.h"
#include "status.h"

#define CHUNK (64 * 1024)

void exh_follow_init(exh_follower *f, sbx_ctx *ctx, sbx_exe *e, uint64_t off_out, uint64_t off_err)
{
    f->ctx = ctx;
    f->e = e;
    f->p = sbx_exe_proc(e);
    f->off[0] = off_out;
    f->off[1] = off_err;
    f->buf = sbx_ctx_alloc(ctx, CHUNK);
}

void exh_follow_done(exh_follower *f)
{
    sbx_proc_unref(f->p);
    f->p = NULL;
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

/* Sends stream s from its offset up to lim (a bounded number of chunks per call). A gap (bytes
 * no longer held) moves the offset forward; the next chunk's offset shows it. */
static int send_stream(exh_follower *f, int s, uint64_t lim)
{
    int stream = s ? SBX_STREAM_STDERR : SBX_STREAM_STDOUT;
    for (int rounds = 0; f->p && f->off[s] < lim && rounds < 64; rounds++) {
        uint64_t o = f->off[s];
        size_t want = lim - o < CHUNK ? (size_t)(lim - o) : CHUNK;
        ssize_t n = sbx_proc_read(f->p, stream, &o, f->buf, want);
        if (o >= lim) {
            f->off[s] = lim;
            return 0;
        }
        if (n <= 0) {
            f->off[s] = o > f->off[s] ? o : f->off[s];
            return 0;
        }
        if (o + (uint64_t)n > lim)
            n = (ssize_t)(lim - o);
        if (send_chunk(f->ctx, stream, f->buf, (size_t)n, o) < 0)
            return -ECANCELED;
        f->off[s] = o + (uint64_t)n;
    }
    return 0;
}

int exh_follow_send(exh_follower *f)
{
    sbx_exe_info in;
    sbx_exe_info_get(f->e, &in);
    uint64_t cap = f->e->cap;
    if (send_stream(f, 0, in.out_end < cap ? in.out_end : cap) < 0)
        return -ECANCELED;
    sbx_exe_info_get(f->e, &in); /* stderr up to what exists now */
    return send_stream(f, 1, in.err_end < cap ? in.err_end : cap);
}

void exh_follow_wait(exh_follower *f, bool reading, int ms)
{
    if (!f->p) {
        sbx_exe_wait_done(f->e, ms);
        return;
    }
    sbx_proc_status st;
    sbx_proc_status_get(f->p, &st);
    if (st.finished) { /* whoever drives it records it, then it is DONE */
        sbx_exe_wait_done(f->e, ms < 50 ? ms : 50);
        return;
    }
    uint64_t cap = f->e->cap;
    uint64_t w_out = reading && f->off[0] < cap ? f->off[0] : UINT64_MAX;
    uint64_t w_err = reading && f->off[1] < cap ? f->off[1] : UINT64_MAX;
    sbx_proc_wait(f->p, w_out, w_err, ms);
}

static int send_exited(sbx_ctx *ctx, const sbx_exe_exit *x)
{
    Sbx__V1__ExecEvent ev = SBX__V1__EXEC_EVENT__INIT;
    ev.event_case = SBX__V1__EXEC_EVENT__EVENT_EXITED;
    ev.exited = exh_exit_msg(ctx, x);
    return sbx_stream_send(ctx, &ev.base);
}

int exh_follow_stream(exh_follower *f, bool follow)
{
    for (;;) {
        sbx_exe_info in;
        sbx_exe_info_get(f->e, &in);
        if (exh_follow_send(f) < 0)
            return SBX_CANCELLED;
        if (in.state == EXE_DONE)
            return send_exited(f->ctx, &in.exit) < 0 ? SBX_CANCELLED : SBX_OK;
        if (in.state > EXE_DONE || !follow)
            return SBX_OK;
        if (sbx_ctx_cancelled(f->ctx))
            return SBX_CANCELLED;
        exh_follow_wait(f, true, 250);
    }
}

Sbx__V1__AttachInfo *exh_attach_info(sbx_ctx *ctx, sbx_exe *e)
{
    sbx_exe_info in;
    sbx_exe_info_get(e, &in);
    Sbx__V1__AttachInfo *a =
        (Sbx__V1__AttachInfo *)sbx_ctx_new_msg(ctx, &sbx__v1__attach_info__descriptor);
    a->pid = in.pid;
    a->running = in.state == EXE_RUNNING;
    a->stdout_oldest_offset = in.out_oldest;
    a->stderr_oldest_offset = in.err_oldest;
    return a;
}
