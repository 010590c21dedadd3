/* proc_int.h: what the two halves of the process table share (private to runtime/): proc.c
 * (the table, its relay thread, exits, lifetimes) and proc_io.c (the bytes: output streams with
 * their head and ring, the stdin queue). Cross-file functions use the sbx__proc_ prefix.
 *
 * Locks: t->lock guards the table's list and orphan exits; p->lock guards everything of one
 * process below it (streams, input, state); p->stdin_lock serializes stdin writers. Order:
 * t->lock, then p->stdin_lock, then p->lock. epoll_ctl on a process's fds happens under p->lock
 * (the relay thread, writers and readers all change its registrations). */
#ifndef SBX_PROC_INT_H
#define SBX_PROC_INT_H

#include <pthread.h>

#include "proc.h"

#define SBX_STREAM_STDIN 0 /* the tag of the stdin pipe in the relay's epoll set */

/* What an epoll event of a process's pipe points to. */
typedef struct {
    struct sbx_proc *owner;
    int which; /* SBX_STREAM_STDOUT, SBX_STREAM_STDERR or SBX_STREAM_STDIN */
} pipe_tag;

/* One output stream. Offsets [0, head_max) live in head; later ones in the ring buf, at
 * (offset - head_max) % cap. */
typedef struct {
    pipe_tag tag;
    int fd;        /* -1 once closed */
    uint8_t *head; /* grows up to head_max */
    size_t head_cap;
    uint64_t head_max; /* keep_head_bytes */
    uint8_t *buf;      /* ring: grows up to the table's ring_bytes, then wraps */
    size_t cap;
    uint64_t end;      /* absolute offset after the last byte kept */
    uint64_t total;    /* bytes read from the pipe, kept or dropped */
    uint64_t consumed; /* backpressure: offset up to which sbx_proc_read has read */
    bool paused;       /* backpressure: the fd is out of epoll until the reader catches up */
} stream;

/* The stdin pipe and its queue: q[off, len) is written by the relay thread. */
typedef struct {
    pipe_tag tag;
    int fd; /* -1: closed, or started without stdin */
    uint8_t *q;
    size_t off, len;
    uint64_t written; /* bytes written since the start */
    bool close_after; /* close once the queue is written */
    bool armed;       /* the fd is in epoll (EPOLLOUT) */
    int last;         /* the last byte queued, -1 before any (a terminal's EOF needs it) */
} input;

struct sbx_proc {
    int refs;         /* atomic */
    sbx_proctab *tab; /* NULL once evicted or the table is gone, and for sbx_proc_new_done */
    int pid;
    char *tag;
    uint64_t max_output;
    uint64_t max_stream; /* per-stream cap (0 = none) */
    bool backpressure;
    bool kill_on_cap;
    bool pty; /* on a terminal: in.fd and out.fd are its master side */

    pthread_mutex_t lock; /* fields below */
    pthread_cond_t cond;  /* output, input progress, exit, finish */
    stream out, err;
    input in;
    bool running, finished, truncated, cap_killed;
    uint64_t dropped;
    sbx_exit exit;
    uint64_t grace_deadline_ms; /* set at exit while pipes are still open */
    uint16_t cols, rows;        /* the terminal's size (pty) */

    pthread_mutex_t stdin_lock;
};

#define MAX_ORPHAN_EXITS 64

struct sbx_proctab {
    sbx_sandbox *sb;
    sbx_proctab_cfg cfg;
    int epfd, ctl;
    pthread_t relay;
    bool stop; /* under lock */

    pthread_mutex_t lock; /* list, orphans */
    sbx_proc **procs;     /* oldest first */
    size_t nprocs, capprocs;
    sbx_exit orphans[MAX_ORPHAN_EXITS]; /* exits that arrived before their start returned */
    size_t norphans;
};

/* ---- proc.c ---- */
/* Marks p finished once it exited and both output pipes are closed (caller holds p->lock). */
void sbx__proc_check_finished(sbx_proc *p);

/* ---- proc_io.c ---- */
/* Relay thread: reads what a readable output pipe holds into its stream (caps, backpressure). */
void sbx__proc_read_pipe(sbx_proctab *t, stream *s, uint8_t *chunk, size_t chunk_len);
/* Relay thread: writes queued input while the pipe takes it; closes stdin on an error. */
void sbx__proc_write_pipe(sbx_proc *p, uint32_t events);
/* Takes an output pipe out of epoll and closes it (caller holds p->lock). */
void sbx__proc_stream_close(sbx_proctab *t, stream *s);
/* Closes stdin and drops its queue (caller holds p->lock). */
void sbx__proc_input_close(sbx_proc *p);
/* Sets up stdin from a request: the fd non-blocking, the initial queue, close-after (caller
 * holds p->lock; p->tab is set). Returns 0 or -ENOMEM. */
int sbx__proc_input_start(sbx_proc *p, int fd, const sbx_proc_req *req);
/* Copies d into a stream's head (head_max = n) of a process that never ran. */
int sbx__proc_stream_fill(stream *s, const void *d, size_t n);
/* The bytes that type EOF on p's terminal (see sbx_proc_close_stdin) into eof[2]; returns how
 * many (caller holds p->lock). */
size_t sbx__proc_pty_eof(sbx_proc *p, uint8_t eof[2]);
/* Oldest offset held of a stream (caller holds p->lock). */
uint64_t sbx__proc_stream_oldest(const stream *s);

#endif
