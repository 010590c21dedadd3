/* portfwd.h: the executor's port forwarder. One forwarder per executor relays TCP connections
 * from listeners on the --port-bind host address (default 127.0.0.1, ephemeral host ports) to
 * 127.0.0.1:PORT inside a sandbox's network namespace. No veth pairs, no extra addresses: each
 * sandbox gets one small thread that setns(CLONE_NEWNET)s into its namespace once and keeps a
 * few unconnected sockets ready there; the relay thread (epoll, splice through pipes) connects
 * them, so accepting a connection costs no thread hop. Half-close is propagated, a side is not
 * read while the other side cannot take more (bounded buffering), connections per sandbox are
 * capped, and an error on either side resets both.
 *
 * Threads: every function is thread-safe. The forwarder owns one relay thread, plus one thread
 * per sandbox that has an exposed port. Its threads block all signals (SIGPIPE included).
 *
 * Errors: functions return 0 (or a count) or a negative errno. Nothing returned needs freeing
 * unless stated. */
#ifndef SBX_PORTFWD_H
#define SBX_PORTFWD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sbx_portfwd sbx_portfwd;

typedef struct {
    const char *bind_host;       /* numeric IPv4/IPv6 address listeners bind to ("::1" or "[::1]");
                                    NULL = "127.0.0.1" */
    uint32_t max_conns;          /* live connections per sandbox, over all its ports; beyond it
                                    new connections are accepted and reset at once; 0 = 512 */
    uint32_t max_ports;          /* exposed ports per sandbox; 0 = 64 */
    uint32_t pipe_bytes;         /* kernel buffer per direction per connection (pipe size): the
                                    most a slow reader lets pile up; 0 = 256 KiB */
    uint32_t connect_timeout_ms; /* connect inside the sandbox; 0 = 10000 */
    uint32_t spare_sockets;      /* unconnected sockets kept ready per sandbox; 0 = 4 */
    bool copy;                   /* relay through user-space buffers (recv/send) instead of
                                    splice; pipe_bytes is then the buffer size */
} sbx_portfwd_cfg;

/* Creates a forwarder and starts its relay thread. cfg may be NULL (all defaults); it is
 * copied. Errors: -EINVAL (bind_host not a numeric address), -errno of epoll/eventfd/thread.
 * On success *out is the caller's (release with sbx_portfwd_destroy). */
int sbx_portfwd_create(const sbx_portfwd_cfg *cfg, sbx_portfwd **out);

/* Closes every listener and connection, stops all threads, frees f. NULL is harmless. */
void sbx_portfwd_destroy(sbx_portfwd *f);

/* The address listeners bind to, as given (brackets removed). Owned by f. */
const char *sbx_portfwd_bind_host(const sbx_portfwd *f);

/* Writes "http://<host>:<host_port>/" (IPv6 hosts in brackets) into buf. Returns the length, or
 * -ENOSPC when len is too small (buf then holds a truncated string). */
int sbx_portfwd_url(const sbx_portfwd *f, uint16_t host_port, char *buf, size_t len);

/* Makes TCP port `port` on the loopback of the sandbox `key` reachable at
 * bind_host:*host_port. Idempotent: a port already exposed for key returns its host port.
 * netns_fd is the sandbox's network namespace (e.g. open("/proc/<init>/ns/net")); it is
 * duplicated the first time key is seen and the caller keeps its own fd. Once key is known,
 * netns_fd must name the same namespace: a different one gives -ESTALE (the sandbox was replaced
 * without sbx_portfwd_close_sandbox). Nothing has to listen on the port yet; connections made
 * while nothing listens are reset.
 * Errors: -EINVAL (key not 1..64 bytes, port 0, bad fd), -ENOSPC (max_ports reached for key),
 * -EADDRINUSE / -EADDRNOTAVAIL (no host port free / bind host unusable), -EPERM/-EINVAL from
 * setns, -EMFILE... */
int sbx_portfwd_expose(sbx_portfwd *f, const char *key, int netns_fd, uint16_t port,
                       uint16_t *host_port);

/* Same, naming the namespace by a process in it: /proc/<pid>/ns/net (the sandbox init's host
 * pid, sbx_sandbox_init_pid). -ESRCH when the process is gone. */
int sbx_portfwd_expose_pid(sbx_portfwd *f, const char *key, pid_t pid, uint16_t port,
                           uint16_t *host_port);

/* Closes every listener of sandbox key and resets every live connection through them; when it
 * returns, the host ports are free and no thread of f refers to the namespace any more. Call it
 * whenever the sandbox stops. Returns how many ports were exposed, or -ENOENT for an unknown
 * key (harmless). */
int sbx_portfwd_close_sandbox(sbx_portfwd *f, const char *key);

typedef struct {
    uint16_t port;      /* port inside the sandbox */
    uint16_t host_port; /* port on bind_host */
    uint32_t active;    /* live connections now */
    uint64_t accepted;  /* connections accepted (including refused ones) */
    uint64_t refused;   /* reset at once: over max_conns, or out of memory/fds */
    uint64_t failed;    /* nothing listening / connect error / timeout inside the sandbox */
    uint64_t bytes_in;  /* client -> sandbox */
    uint64_t bytes_out; /* sandbox -> client */
} sbx_portfwd_port;

/* Copies up to max of key's exposed ports, in the order they were exposed, into out. Returns
 * the number of ports key has (may exceed max), 0 for an unknown key. Counters are snapshots. */
int sbx_portfwd_list(sbx_portfwd *f, const char *key, sbx_portfwd_port *out, size_t max);

#ifdef __cplusplus
}
#endif
#endif
