/* relay.h: moving bytes both ways between two non-blocking stream sockets, the piece the port
 * forwarder (portfwd_relay.c) and the egress proxies (egress/) share. Each direction goes
 * through a pipe with splice(), so data never enters user space (or through a user-space
 * buffer with recv/send in copy mode); a side is not read while the other cannot take more
 * (the pipe's size bounds what a slow reader lets pile up), a direction that ends shuts the
 * other socket for writing (half-close is propagated), and both ended means done.
 *
 * Threads: a relay and its pipe cache belong to one thread (an event loop); nothing locks.
 * Errors: 0 / a count, or a negative errno. */
#ifndef SBX_RELAY_H
#define SBX_RELAY_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SBX_RELAY_PIPE_CACHE 128

/* Empty pipes kept for reuse by one loop thread (a connection costs no pipe2() then). */
typedef struct sbx_relay_pipes {
    uint32_t want; /* F_SETPIPE_SZ asked for new pipes */
    int fds[SBX_RELAY_PIPE_CACHE][2];
    uint32_t cap[SBX_RELAY_PIPE_CACHE];
    unsigned n;
} sbx_relay_pipes;

void sbx_relay_pipes_init(sbx_relay_pipes *pc, uint32_t pipe_bytes);
/* Closes every cached pipe. */
void sbx_relay_pipes_free(sbx_relay_pipes *pc);

/* One connection: direction d moves fd[d] -> fd[1 - d]. */
typedef struct sbx_relay {
    int fd[2];
    int pipe[2][2];
    uint32_t inpipe[2], cap[2];
    char *buf[2];     /* copy mode: user-space buffers instead of pipes */
    uint32_t head[2]; /* copy mode: where buffered bytes start in buf[d] */
    bool eof[2];      /* fd[d] has no more to read */
    bool shut[2];     /* fd[1 - d] was shut down for writing after direction d ended */
} sbx_relay;

/* Sets the two sockets (either may be -1 for now) and no pipes. */
void sbx_relay_init(sbx_relay *r, int fd0, int fd1);
/* Takes a pipe (or, copy, a buffer of `bytes`) per direction. 0, -ENOMEM or -errno of pipe2. */
int sbx_relay_begin(sbx_relay *r, sbx_relay_pipes *pc, bool copy, uint32_t bytes);

enum { SBX_RELAY_DONE = 0, SBX_RELAY_OPEN = 1 };
/* Moves what can be moved in direction d without blocking, adding the bytes written to
 * fd[1 - d] to *moved. Returns SBX_RELAY_OPEN, SBX_RELAY_DONE once both directions ended (close
 * with a FIN), or -errno (reset both sides; *what says "read", "write" or "shutdown"). */
int sbx_relay_pump(sbx_relay *r, int d, uint64_t *moved, const char **what);

/* Bytes waiting in direction d (read but not yet written). */
static inline uint32_t sbx_relay_pending(const sbx_relay *r, int d)
{
    return r->inpipe[d];
}

/* Closes a socket after removing it from the epoll set epfd (-1 = none). A process forked in
 * between may still hold a copy of the fd, and then close() alone leaves it registered: its
 * events would keep arriving with a pointer to freed memory. fd < 0 is harmless. */
void sbx_relay_close_fd(int epfd, int fd);
/* Closes both sockets as sbx_relay_close_fd does (reset: an abortive close, RST instead of FIN)
 * and gives the pipes back to the cache (empty ones) or closes them; frees the buffers.
 * Harmless twice. */
void sbx_relay_end(sbx_relay *r, int epfd, sbx_relay_pipes *pc, bool reset);

/* SO_LINGER {1, 0}: close() then sends a RST. */
void sbx_relay_set_rst(int fd);

#ifdef __cplusplus
}
#endif
#endif
