/* devserver.h: dev-server readiness. Polls http://host:port/ready-path with libcurl until any
 * HTTP response arrives (every status code counts), the ready timeout passes, or the server's
 * process exits first, and says which; the output tail and the status and message the RPC
 * returns for an outcome. The StartDevServer sequence itself (start or reuse the command,
 * expose the port, wait, kill on failure) is the RPC handler's (rpc/handlers_devserver.c).
 *
 * Threads: every function is thread-safe and blocks the calling thread while it waits (run it
 * on a worker, not on a completion-queue thread). libcurl is initialised once on first use
 * (curl_global_init through pthread_once).
 *
 * Errors: functions return 0 / a length or a negative errno unless stated. */
#ifndef SBX_DEVSERVER_H
#define SBX_DEVSERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proc.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    SBX_DEV_READY = 0, /* an HTTP response arrived */
    SBX_DEV_TIMEOUT,   /* nothing answered within the ready timeout */
    SBX_DEV_EXITED,    /* the process exited before it answered */
    SBX_DEV_CANCELLED, /* the wait callback asked to stop (e.g. the RPC was cancelled) */
} sbx_dev_outcome;

typedef struct {
    int exit_code; /* valid when signal == 0 */
    int signal;    /* terminating signal, or 0 */
} sbx_dev_exit;

/* Called between probes. Block for at most timeout_ms (returning early is fine), then say how
 * the server process is: 0 still running, 1 exited (fill *ex), < 0 stop waiting (cancelled).
 * sbx_devserver_proc_wait is this callback for a sbx_proc. */
typedef int (*sbx_dev_wait_fn)(void *arg, int timeout_ms, sbx_dev_exit *ex);

typedef struct {
    const char *url;           /* probed URL, e.g. from sbx_devserver_probe_url */
    uint32_t timeout_ms;       /* ready timeout; 0 = 30000 */
    uint32_t probe_timeout_ms; /* connect + response headers of one probe; 0 = 1000 */
    uint32_t interval_min_ms;  /* first pause between probes; 0 = 10 */
    uint32_t interval_max_ms;  /* pauses double up to this; 0 = 100 */
    sbx_dev_wait_fn wait;      /* NULL: just sleep (exit is then never detected) */
    void *wait_arg;
} sbx_dev_wait_req;

typedef struct {
    sbx_dev_outcome outcome;
    uint32_t elapsed_ms;  /* from the call to the outcome */
    uint32_t probes;      /* HTTP requests made */
    long http_status;     /* SBX_DEV_READY: the status code that answered */
    sbx_dev_exit exit;    /* SBX_DEV_EXITED */
    char last_error[128]; /* why the last failed probe failed (curl's words), "" if none */
} sbx_dev_result;

/* Probes req->url until an outcome; fills *res. When the process exits, one last probe is made
 * (a server that daemonised answers and counts as ready). Returns 0 with any outcome, -EINVAL
 * (no url), -ENOMEM (curl could not start). */
int sbx_devserver_wait(const sbx_dev_wait_req *req, sbx_dev_result *res);

/* The wait callback for a sbx_proc (arg is the sbx_proc *): waits on the process, reports its
 * exit once its main process was reaped. */
int sbx_devserver_proc_wait(void *arg, int timeout_ms, sbx_dev_exit *ex);

/* 0 when path is a usable ready path: starts with '/', 1..2048 bytes, printable ASCII without
 * spaces or '#'. -EINVAL otherwise. */
int sbx_devserver_check_path(const char *path);

/* Writes the probe URL "http://<host>:<port><path>" (IPv6 in brackets; a wildcard bind host
 * 0.0.0.0 / :: is probed on 127.0.0.1 / ::1; path NULL or "" = "/"). Returns the length,
 * -EINVAL (bad host or path), -ENOSPC (buf too small). */
int sbx_devserver_probe_url(const char *host, uint16_t port, const char *path, char *buf,
                            size_t len);

/* Copies the last max_lines lines (at most len - 1 bytes) of p's stderr, or of its stdout when
 * stderr has nothing, into buf, NUL-terminated, bytes that are not printable text replaced by
 * '?'. Returns the length. */
size_t sbx_devserver_tail(sbx_proc *p, int max_lines, char *buf, size_t len);

/* The RPC status of a result (sbx_status: OK, DEADLINE_EXCEEDED, FAILED_PRECONDITION,
 * CANCELLED) and its message in buf: outcome, port, elapsed time, exit code or signal, the last
 * probe error, whether the process was killed, and tail (the process's last output; may be
 * NULL). */
int sbx_devserver_message(const sbx_dev_result *r, uint16_t port, bool killed, const char *tail,
                          char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
