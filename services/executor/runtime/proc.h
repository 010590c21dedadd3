/* proc.h: the processes of one sandbox as the executor sees them: a table of commands, each
 * with its stdout/stderr held in memory (the first keep_head_bytes of each stream for as long as
 * the process lives, the newest bytes after them in a bounded ring, all addressed by absolute
 * byte offsets), an output cap, queued stdin, exit status, and waiters. One relay thread per
 * table moves every command's bytes (epoll: output pipes into memory, queued input into stdin)
 * and receives the sandbox's exits, so a command never blocks on a full pipe, no caller ever
 * blocks on a command's stdin, and the executor's memory stays bounded whatever a command
 * writes.
 *
 * Lifetimes: sbx_proc values are reference counted. Functions that return a sbx_proc * give the
 * caller one reference (release with sbx_proc_unref); the table keeps its own until the process
 * is evicted (finished and older than the newest max_finished: it can no longer be signalled
 * then) or the table is destroyed. Functions return 0 / a count, or a negative errno. All are
 * thread-safe. Lock order: the table's lock, then a process's stdin lock, then its lock. */
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
    size_t ring_bytes;       /* newest output held per stream after its head (oldest dropped
                                first); 0 = 1 MiB */
    size_t max_finished;     /* finished processes the table keeps (signallable); 0 = 64 */
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
    const char *tag;           /* optional label, reported by sbx_proc_status_get; copied */
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
    uint64_t keep_head_bytes;  /* each stream's first keep_head_bytes stay held until the process
                                  is freed (a command's answer, replays, its history record);
                                  the ring holds the newest bytes after them. 0 = none */
    const void *stdin_data;    /* queued for the command's stdin (spawn.want_stdin); copied */
    size_t stdin_len;
    bool stdin_close; /* close stdin (EOF) once stdin_data is written; on a terminal
                         (spawn.pty_cols/rows) EOF is typed instead, as sbx_proc_close_stdin
                         does, and the terminal keeps taking input */
} sbx_proc_req;

/* Starts a command. On success *out is a new reference. Errors as sbx_sandbox_spawn (err_what,
 * if non-NULL, receives its static step name). */
int sbx_proc_start(sbx_proctab *t, const sbx_proc_req *req, sbx_proc **out, const char **err_what);

/* A process that never ran (a program that could not be executed, an answer from the cache):
 * finished, with this exit and this output (copied; both streams held whole), in no table. */
typedef struct {
    sbx_exit exit;
    const void *out, *err;
    size_t out_len, err_len;
} sbx_proc_done;
int sbx_proc_new_done(const sbx_proc_done *d, sbx_proc **out);

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
    uint64_t out_oldest, err_oldest; /* oldest offset still held (0 while a head is kept; reads
                                        between the head and the ring skip to the ring) */
    uint64_t out_total, err_total;   /* bytes the command wrote per stream, kept or dropped */
    bool stdin_open;                 /* stdin takes input (not closed, no close pending) */
    bool pty;                        /* runs on a terminal (stdout is its output, no stderr) */
    uint16_t cols, rows;             /* the terminal's size (pty) */
} sbx_proc_status;

void sbx_proc_status_get(sbx_proc *p, sbx_proc_status *st);

/* Copies up to len bytes of a stream starting at *offset. An offset that is no longer held (older
 * than the ring, past the head) is moved forward to the oldest held after it (so a reader sees
 * the gap); *offset is set to where the copy starts. Returns bytes copied (0 when nothing beyond
 * *offset is held yet), or -EINVAL. */
ssize_t sbx_proc_read(sbx_proc *p, int stream, uint64_t *offset, void *buf, size_t len);
/* Frees the ring of a finished process; its heads stay readable. */
void sbx_proc_drop_ring(sbx_proc *p);

/* Blocks until stdout has data beyond out_off, stderr beyond err_off, or the process finished
 * (any of them already true returns at once). timeout_ms < 0 waits forever. Returns 0 or
 * -ETIMEDOUT. */
int sbx_proc_wait(sbx_proc *p, uint64_t out_off, uint64_t err_off, int timeout_ms);
/* Blocks until the process finished. Returns 0 or -ETIMEDOUT. */
int sbx_proc_wait_finished(sbx_proc *p, int timeout_ms);

/* Queues all of buf for the command's stdin (after what is queued already) and waits up to
 * timeout_ms (< 0: forever) until the relay thread wrote it; what is not written by then is
 * withdrawn. One writer at a time. Returns bytes written (short on timeout), or -EPIPE when
 * stdin is closed, was started without, or the command stopped reading. */
ssize_t sbx_proc_write_stdin(sbx_proc *p, const void *buf, size_t len, int timeout_ms);
/* Turns backpressure off (the reader went away): paused streams resume, and output is kept in
 * the ring, newest first, for a later attach. Idempotent. */
void sbx_proc_release_backpressure(sbx_proc *p);
/* Closes stdin (EOF for the command) once the queued input is written. Idempotent. On a
 * terminal it types EOF instead, the way a terminal's user does: the VEOF character (^D), twice
 * when the input so far ends inside a line of a canonical-mode terminal (the first one only
 * ends the line); the terminal stays open for more input. Returns 0, or -EPIPE (a terminal
 * that is gone). */
int sbx_proc_close_stdin(sbx_proc *p);
/* Sets the size of the process's terminal (TIOCSWINSZ on its master side: the kernel sends
 * SIGWINCH to the terminal's foreground process group). 0, -ENOTTY when it runs on pipes, or
 * -ESRCH when its terminal is closed (the process finished). */
int sbx_proc_resize(sbx_proc *p, uint16_t cols, uint16_t rows);
/* SIGKILLs the command's whole tree (also after its main process exited). */
int sbx_proc_kill_tree(sbx_proc *p);

#ifdef __cplusplus
}
#endif
#endif
