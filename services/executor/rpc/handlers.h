/* handlers.h: the SandboxExecutor method table and what its handler files share. Handlers take
 * decoded protobuf-c requests and an sbx_ctx (see common/rpc_server.h), never touch gRPC, map
 * requests onto core calls and return a status with a message naming the field. One file per
 * group: handlers_sandbox.c (lifecycle), handlers_exec.c (Exec/Run), handlers_output.c (output
 * streaming for Exec, AttachProcess and replays), handlers_proc.c (background processes),
 * handlers_files.c (file RPCs), handlers_upload.c (UploadFiles), handlers_ports.c (ExposePort),
 * handlers_devserver.c (StartDevServer), handlers_network.c (egress policies: UpdateSandboxNetwork,
 * Sandbox.network, the proxy environment), handlers_term.c (ResizeTerminal), handlers_watch.c
 * (WatchDir); handlers_common.c holds the helpers and the table.
 *
 * Threads: handlers run on the server's worker threads (ListSandboxes inline); every helper is
 * thread-safe. Memory: what a handler allocates lives in the ctx's arena. */
#ifndef SBX_EXEC_HANDLERS_H
#define SBX_EXEC_HANDLERS_H

#include <stdbool.h>
#include <stdint.h>

#include "exectab.h"
#include "portfwd.h"
#include "registry.h"
#include "rpc_server.h"
#include "sbx/v1/executor.pb-c.h"
#include "stores.h"

/* The service data passed to every handler. */
typedef struct sbx_exsvc {
    sbx_reg *reg;
    sbx_execmon *mon;
    sbx_stores *stores;      /* NULL: no cache lookups */
    int64_t cache_lookup_ms; /* deadline of a GetCachedResult; 0 = 2000 */
    sbx_portfwd *fwd;        /* the port forwarder; NULL: ExposePort/StartDevServer UNAVAILABLE */
    sbx_egress *egress;      /* the egress proxies; NULL: UpdateSandboxNetwork UNAVAILABLE */
    int stopping;            /* atomic: SIGTERM received (a command whose client left is then
                                killed even with a request_id, so shutdown cannot hang) */
    int watch_max_dirs;      /* directories the WatchDir streams of a sandbox follow; 0 = 8192 */
    int watch_max_streams;   /* WatchDir streams per sandbox; 0 = 16 */
} sbx_exsvc;

extern const sbx_method sbx_executor_methods[];
extern const size_t sbx_executor_n_methods;

/* ---- sandboxes and processes (handlers_common.c) ---- */

/* Checks the address (exv_address) and resolves it (see sbx_reg_get); sets the ctx error. */
int exh_box(sbx_ctx *ctx, sbx_exsvc *s, const char *sandbox_id, const char *project_id, int mode,
            sbx_box **out);
/* Resolves an address the caller already checked (exv_exec_request checks it for Exec). */
int exh_resolve(sbx_ctx *ctx, sbx_exsvc *s, const char *sandbox_id, const char *project_id,
                int mode, sbx_box **out);
/* The prologue of the process handlers: checks the selector, resolves the running sandbox (a
 * use) and finds the execution (a reference); NOT_FOUND with a message when none. Release both
 * with exh_process_put (b may have been released and set to NULL by the caller). */
int exh_process_get(sbx_ctx *ctx, sbx_exsvc *s, const char *sandbox_id, const char *project_id,
                    const Sbx__V1__ProcessSelector *sel, sbx_box **b, sbx_exe **e);
void exh_process_put(sbx_box *b, sbx_exe *e);
/* The Sandbox message of b (arena), its exposed ports included. */
Sbx__V1__Sandbox *exh_sandbox_msg(sbx_ctx *ctx, sbx_exsvc *s, sbx_box *b);
/* ProcessExit of an exit summary (arena). */
Sbx__V1__ProcessExit *exh_exit_msg(sbx_ctx *ctx, const sbx_exe_exit *x);
/* "K=V" environment of a command: the sandbox's, overridden per key by the request's (arena
 * memory, NULL-terminated). */
const char **exh_build_env(sbx_ctx *ctx, sbx_box *b, const Sbx__V1__ExecRequest *r);

/* ---- starting commands (handlers_exec.c) ---- */

/* Registers and starts the command of a validated request in b, as Exec does (a background one
 * is handed to the monitor): *e is a new reference, RUNNING, or DONE when the cache answered or
 * the program cannot be executed; NULL with *existing set when a request_id retry found the
 * first execution. stream: the output is read as a stream (Exec, AttachProcess) rather than
 * collected by Run (which caps each stream at 1 MiB). Sets the ctx error. */
int exh_start(sbx_ctx *ctx, sbx_exsvc *s, sbx_box *b, const Sbx__V1__ExecRequest *r, bool stream,
              sbx_exe **e, sbx_exe **existing);

/* ---- output streaming (handlers_output.c) ---- */

/* What one client has been sent of an execution's output: the next offset per stream. */
typedef struct exh_follower {
    sbx_ctx *ctx;
    sbx_exe *e;
    sbx_proc *p;     /* a reference, or NULL (no output held) */
    uint64_t off[2]; /* stdout, stderr */
    uint8_t *buf;    /* arena */
} exh_follower;

void exh_follow_init(exh_follower *f, sbx_ctx *ctx, sbx_exe *e, uint64_t off_out, uint64_t off_err);
void exh_follow_done(exh_follower *f);
/* Sends what is readable of both streams (stdout first) up to the cap, in chunks. Returns 0 or
 * -ECANCELED (the client left). */
int exh_follow_send(exh_follower *f);
/* Waits up to ms for output past the follower's offsets (only for the end with reading false),
 * the process's end, or the execution's end once the process finished. */
void exh_follow_wait(exh_follower *f, bool reading, int ms);
/* Streams like AttachProcess from the follower's offsets: output, then `exited` once the
 * execution is done; follow: keep waiting for live output until then. Returns a status. */
int exh_follow_stream(exh_follower *f, bool follow);
/* The AttachInfo of an execution (arena). */
Sbx__V1__AttachInfo *exh_attach_info(sbx_ctx *ctx, sbx_exe *e);

/* ---- files (handlers_files.c) ---- */

/* Receives the first message of a WriteFile/UploadFiles stream (kept until the call ends) and
 * checks it is the `header` of the oneof; INVALID_ARGUMENT otherwise. */
int exh_recv_header(sbx_ctx *ctx, const ProtobufCMessageDescriptor *d, ProtobufCMessage **out);
/* Receives the next message of such a stream into *out (NULL at the end); keep: freed when the
 * call ends, else the caller frees it with sbx_stream_free. Returns SBX_OK or the status of a
 * failed receive with the ctx error set (undecodable: the message when it does not decode). */
int exh_recv_part(sbx_ctx *ctx, const ProtobufCMessageDescriptor *d, ProtobufCMessage **out,
                  bool keep, const char *undecodable);
/* An absolute, normalised copy of a sandbox path (arena). */
char *exh_norm_path(sbx_ctx *ctx, const char *path);
/* A file-layer error with per-RPC overrides for ENOENT, ENOTDIR and EISDIR (0: the default). */
int exh_file_error(sbx_ctx *ctx, int rc, const char *msg, int enoent, int enotdir, int eisdir);
/* ENOSPC/EDQUOT of a file RPC on b (held): RESOURCE_EXHAUSTED naming the disk limit that was
 * reached (limits.disk_bytes or limits.disk_inodes) and what the home holds. */
int exh_disk_full(sbx_ctx *ctx, sbx_box *b, const char *msg);

/* ---- ports (handlers_ports.c) ---- */

/* 1..65535 and a forwarder present; sets the ctx error. */
int exh_check_port(sbx_ctx *ctx, sbx_exsvc *s, uint32_t port);
/* Exposes port of b (held with a use): *host_port. Sets the ctx error. */
int exh_expose(sbx_ctx *ctx, sbx_exsvc *s, sbx_box *b, uint32_t port, uint16_t *host_port);
/* "http://host:port/" of a host port (arena). */
char *exh_url(sbx_ctx *ctx, sbx_exsvc *s, uint16_t host_port);
/* Fills m->exposed_ports (ordered by port) from the forwarder when b is running. */
void exh_sandbox_ports(sbx_ctx *ctx, sbx_exsvc *s, sbx_box *b, Sbx__V1__Sandbox *m);
/* sbx_reg_cfg.on_stop with the forwarder as arg: closes the sandbox's listeners and connections. */
void exh_ports_on_stop(void *arg, sbx_box *b);

/* ---- network egress (handlers_network.c) ---- */

/* Parses a request's policy (field names it in errors, e.g. "network"); INVALID_ARGUMENT naming
 * the list, index and pattern. NULL np = an empty policy. *out: a reference (unref it). */
int exh_network_policy(sbx_ctx *ctx, const Sbx__V1__NetworkPolicy *np, const char *field,
                       sbx_egress_policy **out);
/* Sandbox.network of b (arena), or NULL without an egress service. */
Sbx__V1__SandboxNetwork *exh_network_msg(sbx_ctx *ctx, sbx_box *b);
/* Whether commands of b get the proxy environment (sbx_egress_env). */
bool exh_proxied(sbx_box *b);

/* ---- handlers ---- */
int exh_create_sandbox(sbx_ctx *, const ProtobufCMessage *, ProtobufCMessage **, void *);
int exh_get_sandbox(sbx_ctx *, const ProtobufCMessage *, ProtobufCMessage **, void *);
int exh_list_sandboxes(sbx_ctx *, const ProtobufCMessage *, ProtobufCMessage **, void *);
int exh_kill_sandbox(sbx_ctx *, const ProtobufCMessage *, ProtobufCMessage **, void *);
int exh_set_sandbox_timeout(sbx_ctx *, const ProtobufCMessage *, ProtobufCMessage **, void *);
int exh_exec(sbx_ctx *, const ProtobufCMessage *, ProtobufCMessage **, void *);
int exh_run(sbx_ctx *, const ProtobufCMessage *, ProtobufCMessage **, void *);
int exh_list_processes(sbx_ctx *, const ProtobufCMessage *, ProtobufCMessage **, void *);
int exh_signal_process(sbx_ctx *, const ProtobufCMessage *, ProtobufCMessage **, void *);
int exh_send_input(sbx_ctx *, const ProtobufCMessage *, ProtobufCMessage **, void *);
int exh_close_input(sbx_ctx *, const ProtobufCMessage *, ProtobufCMessage **, void *);
int exh_attach_process(sbx_ctx *, const ProtobufCMessage *, ProtobufCMessage **, void *);
int exh_read_file(sbx_ctx *, const ProtobufCMessage *, ProtobufCMessage **, void *);
int exh_write_file(sbx_ctx *, const ProtobufCMessage *, ProtobufCMessage **, void *);
int exh_list_dir(sbx_ctx *, const ProtobufCMessage *, ProtobufCMessage **, void *);
int exh_stat(sbx_ctx *, const ProtobufCMessage *, ProtobufCMessage **, void *);
int exh_make_dir(sbx_ctx *, const ProtobufCMessage *, ProtobufCMessage **, void *);
int exh_remove(sbx_ctx *, const ProtobufCMessage *, ProtobufCMessage **, void *);
int exh_move(sbx_ctx *, const ProtobufCMessage *, ProtobufCMessage **, void *);
int exh_upload_files(sbx_ctx *, const ProtobufCMessage *, ProtobufCMessage **, void *);
int exh_expose_port(sbx_ctx *, const ProtobufCMessage *, ProtobufCMessage **, void *);
int exh_start_dev_server(sbx_ctx *, const ProtobufCMessage *, ProtobufCMessage **, void *);
int exh_resize_terminal(sbx_ctx *, const ProtobufCMessage *, ProtobufCMessage **, void *);
int exh_watch_dir(sbx_ctx *, const ProtobufCMessage *, ProtobufCMessage **, void *);
int exh_update_sandbox_network(sbx_ctx *, const ProtobufCMessage *, ProtobufCMessage **, void *);

#endif
