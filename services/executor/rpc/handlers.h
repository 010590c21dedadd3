/* handlers.h: the SandboxExecutor method table and what its handler files share. Handlers take
 * decoded protobuf-c requests and an sbx_ctx (see common/rpc_server.h), never touch gRPC, and
 * return a status with a message naming the field. One file per group: handlers_sandbox.c
 * (lifecycle), handlers_exec.c (Exec/Run and output streaming), handlers_proc.c (background
 * processes), handlers_files.c (file RPCs), handlers_ports.c (ExposePort, StartDevServer);
 * handlers_common.c holds the helpers and the table. */
#ifndef SBX_EXEC_HANDLERS_H
#define SBX_EXEC_HANDLERS_H

#include <stdbool.h>
#include <stdint.h>

#include "exectab.h"
#include "outbox.h"
#include "portfwd.h"
#include "registry.h"
#include "rpc_server.h"
#include "sbx/v1/executor.pb-c.h"
#include "store_client.h"

/* The service data passed to every handler. */
typedef struct sbx_exsvc {
    sbx_reg *reg;
    sbx_execmon *mon;
    sbx_outbox *ob;          /* may be NULL (tests) */
    sbx_storecli *store;     /* NULL: no cache lookups */
    int64_t cache_lookup_ms; /* deadline of a GetCachedResult; 0 = 2000 */
    const char *port_bind;
    sbx_portfwd *fwd;        /* the port forwarder; NULL: ExposePort/StartDevServer UNAVAILABLE */
    int stopping;            /* atomic: SIGTERM received (a command whose client left is then
                                killed even with a request_id, so shutdown cannot hang) */
} sbx_exsvc;

extern const sbx_method sbx_executor_methods[];
extern const size_t sbx_executor_n_methods;

/* ---- shared helpers (handlers_common.c) ---- */

/* Validates the address and resolves it (see sbx_reg_get); sets the ctx error. */
int exh_box(sbx_ctx *ctx, sbx_exsvc *s, const char *sandbox_id, const char *project_id, int mode,
            sbx_box **out);
/* The Sandbox message of b (arena). */
Sbx__V1__Sandbox *exh_sandbox_msg(sbx_ctx *ctx, sbx_box *b);
/* ProcessExit of an exit summary (arena). */
Sbx__V1__ProcessExit *exh_exit_msg(sbx_ctx *ctx, const sbx_exe_exit *x);
/* Maps a file-layer errno (with its message) to a status with that message. */
int exh_files_error(sbx_ctx *ctx, int rc, const char *msg);
/* Finds the execution of a selector (validated). NOT_FOUND with a message when none. */
int exh_select(sbx_ctx *ctx, sbx_box *b, const Sbx__V1__ProcessSelector *sel, sbx_exe **out);
/* Streams an execution's output from off[] like AttachProcess: chunks of at most 64 KiB, then
 * `exited` when it is done (and the stream caught up). follow: keep waiting for live output
 * until it is done. */
int exh_stream_output(sbx_ctx *ctx, sbx_exe *e, uint64_t off_out, uint64_t off_err, bool follow);
/* Sends what is readable now of both streams from off[] (advanced) up to the cap, in chunks of
 * at most 64 KiB (buf holds 64 KiB). Returns 0 or -ECANCELED. */
int exh_send_available(sbx_ctx *ctx, sbx_exe *e, sbx_proc *p, uint64_t off[2], uint8_t *buf);
/* The AttachInfo of an execution (arena). */
Sbx__V1__AttachInfo *exh_attach_info(sbx_ctx *ctx, sbx_exe *e);

/* ---- ports (handlers_ports.c) ---- */
/* Fills m->exposed_ports (ordered by port) from the forwarder when b is running. */
void exh_sandbox_ports(sbx_ctx *ctx, sbx_exsvc *s, sbx_box *b, Sbx__V1__Sandbox *m);
/* sbx_reg_cfg.on_stop with the forwarder as arg: closes the sandbox's listeners and connections. */
void exh_ports_on_stop(void *arg, sbx_box *b);

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

/* "K=V" environment of a command: the sandbox's, overridden per key by the request's (arena
 * memory, NULL-terminated). */
const char **exh_build_env(sbx_ctx *ctx, sbx_box *b, const Sbx__V1__ExecRequest *r);

#endif
