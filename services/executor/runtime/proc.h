/* proc.h: the processes of one sandbox as the executor sees them: a table of commands, each
 * with bounded stdout/stderr ring buffers addressed by absolute byte offsets, an output cap,
 * exit status, and waiters. One relay thread per table reads every command's pipes (epoll) and
 * the sandbox's exit queue, so a command can never block on a full pipe and the executor's
 * memory stays bounded whatever a command writes.
 *
 * Lifetimes: sbx_proc values are reference counted. Functions that return a sbx_proc * give the
 * caller one reference (release with sbx_proc_unref); the table keeps its own until the process
 * is evicted (finished and older than the newest max_finished) or the table is destroyed.
 * Functions return 0 / a count, or a negative errno. All are thread-safe. */
#ifndef SBX_PROC_H
#define SBX_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sandbox.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sbx_proctab sbx_proctab;
typedef struct sbx_proc sbx_proc;

typedef struct {
    size_t ring_bytes;       /* output held per stream (oldest dropped first); 0 = 1 MiB */
    size_t max_finished;     /* finished processes kept for lookup/attach; 0 = 64 */
    uint32_t drain_grace_ms; /* after the main process exits, how long pipes still held open by
                                its descendants are read before the process counts as finished;
                                0 = 200 ms */
} sbx_proctab_cfg;

/* Creates the table for sb and starts its relay thread. The table consumes sb's exit queue
 * (sbx_sandbox_next_exit): do not read it elsewhere. sb must outlive the table. */
int sbx_proctab_create(sbx_sandbox *sb, const sbx_proctab_cfg *cfg, sbx_proctab **out);
/* Stops the relay thread, closes every pipe, marks unfinished processes finished (waiters wake)
 * and drops the table's references. Does not kill anything (sbx_sandbox_destroy does).
 * NULL is harmless. */
void sbx_proctab_destroy(sbx_proctab *t);

typedef struct {
    sbx_spawn_req spawn;       /* argv, env, cwd, stdin, merge_stderr, timeout (see sandbox.h) */
    const char *tag;           /* optional name for lookup; copied */
    uint64_t max_output_bytes; /* stdout + stderr accepted; beyond it output is read and
                                  dropped, output_truncated set; 0 = unlimited */
    bool kill_on_output_cap;   /* also kill the command's tree when the cap is hit */
    uint64_t max_stream_bytes; /* each of stdout and stderr: the first max_stream_bytes are kept,
                                  the rest read and dropped (output_truncated); 0 = no cap.
                                  At most the table's ring_bytes keeps every kept byte in the
                                  ring, however slowly a reader consumes it */
    bool backpressure;         /* the reader must get every kept byte: reading a stream pauses
                                  while a full ring of it is unread (by sbx_proc_read), so a slow
                                  reader slows the command instead of losing output */
} sbx_proc_req;

/* Starts a command. On success *out is a new reference. Errors as sbx_sandbox_spawn (err_what,
 * if non-NULL, receives its static step name). */
int sbx_proc_start(sbx_proctab *t, const sbx_proc_req *req, sbx_proc **out, const char **err_what);

/* Newest process with this pid / tag (running ones first), as a new reference, or NULL. */
sbx_proc *sbx_proc_find_pid(sbx_proctab *t, int pid);
sbx_proc *sbx_proc_find_tag(sbx_proctab *t, const char *tag);
/* Up to max processes (oldest first) as new references; returns how many were stored. */
size_t sbx_proctab_list(sbx_proctab *t, sbx_proc **out, size_t max);

void sbx_proc_ref(sbx_proc *p);
void sbx_proc_unref(sbx_proc *p); /* NULL is harmless */

enum { SBX_STREAM_STDOUT = 1, SBX_STREAM_STDERR = 2 };

typedef struct {
    int pid;
    const char *tag;           /* owned by the process ("" if none); valid while you hold a ref */
    bool running;              /* the main process has not been reaped */
    bool finished;             /* reaped and no more output will come */
    sbx_exit exit;             /* valid when !running */
    bool output_truncated;     /* the output cap was hit */
    uint64_t dropped_bytes;    /* output read past the cap and discarded */
    uint64_t out_end, err_end; /* offset after the last byte kept, per stream */
    uint64_t out_oldest, err_oldest; /* oldest offset still held in the ring */
    uint64_t out_total, err_total;   /* bytes the command wrote per stream, kept or dropped */
} sbx_proc_status;

void sbx_proc_status_get(sbx_proc *p, sbx_proc_status *st);

/* Copies up to len bytes of a stream starting at *offset. An offset older than the oldest held
 * is moved forward to it (so a reader sees the gap); *offset is set to where the copy starts.
 * Returns bytes copied (0 when nothing beyond *offset is held yet), or -EINVAL. */
ssize_t sbx_proc_read(sbx_proc *p, int stream, uint64_t *offset, void *buf, size_t len);

/* Blocks until stdout has data beyond out_off, stderr beyond err_off, or the process finished
 * (any of them already true returns at once). timeout_ms < 0 waits forever. Returns 0 or
 * -ETIMEDOUT. */
int sbx_proc_wait(sbx_proc *p, uint64_t out_off, uint64_t err_off, int timeout_ms);
/* Blocks until the process finished. Returns 0 or -ETIMEDOUT. */
int sbx_proc_wait_finished(sbx_proc *p, int timeout_ms);

/* Writes all of buf to the command's stdin, waiting up to timeout_ms for room (< 0: forever).
 * Returns bytes written (short on timeout), -EPIPE if stdin is closed or the command stopped
 * reading, -EBADF if the command was started without stdin. */
ssize_t sbx_proc_write_stdin(sbx_proc *p, const void *buf, size_t len, int timeout_ms);
/* Turns backpressure off (the reader went away): paused streams resume, and output is kept in
 * the ring, newest first, for a later attach. Idempotent. */
void sbx_proc_release_backpressure(sbx_proc *p);
/* Closes stdin (EOF for the command). Idempotent. */
int sbx_proc_close_stdin(sbx_proc *p);
/* Sends sig to the main process (-ESRCH once it exited). */
int sbx_proc_signal(sbx_proc *p, int sig);
/* SIGKILLs the command's whole tree (also after its main process exited). */
int sbx_proc_kill_tree(sbx_proc *p);

#ifdef __cplusplus
}
#endif
#endif
