/* handlers_int.h: what the StateStore handler files share (handlers.c holds the helpers and
 * the method table; handlers_<group>.c one RPC group each, in the order of store.proto).
 * Prefix sh_ ("store handler"); not for use outside services/store.
 *
 * Every handler validates the proto-level limits the engine does not know, converts between
 * protobuf-c messages and engine calls, and passes the engine's status and message through
 * unchanged. Responses come from the call arena. Handlers run on the server's worker threads
 * (SBX_RUN_INLINE ones on the completion thread); the engine is thread-safe. In GROUP commit
 * mode Set, AppendExecution and RecordExecution run inline too: they check, queue the write
 * and return SBX_PENDING; the committer finishes the call once the write is durable.
 */
#ifndef SBX_STORE_HANDLERS_INT_H
#define SBX_STORE_HANDLERS_INT_H

#include "handlers.h"
#include "sbx/v1/store.pb-c.h"

#define SH_ERRLEN 512            /* engine error messages */
#define SH_OUTPUT_MAX (1u << 20) /* stdout / stderr of a record or cached result */

/* ---- handlers.c: helpers ---- */
/* s, or "" for NULL. */
sdb_slice sh_str(const char *s);
/* The caller's tenant. */
sdb_slice sh_tenant(sbx_ctx *ctx);
/* Ends the call with the engine's status rc and its message err (the status text when empty). */
int sh_fail(sbx_ctx *ctx, int rc, const char *err);
/* protobuf-c allocations from the call arena (freed with the call). */
ProtobufCAllocator sh_arena_allocator(sbx_ctx *ctx);
/* m packed into the call arena. */
sdb_slice sh_pack(sbx_ctx *ctx, const ProtobufCMessage *m);
/* s as a NUL-terminated string in the call arena. */
char *sh_arena_str(sbx_ctx *ctx, sdb_slice s);
/* INVALID_ARGUMENT naming field when s (NULL = "") is longer than max bytes. */
int sh_check_len(sbx_ctx *ctx, const char *field, const char *s, size_t max);

/* A durable write handed to the engine's committer (GROUP mode). Embed it first in the call's
 * state (from the call arena, with the engine request and outputs); reply builds the OK
 * response from the outputs. The committer ends the call through sh_write_done, so a write
 * goes polling thread -> committer -> transport with no worker thread in between. */
typedef struct sh_write {
    sbx_ctx *ctx;
    ProtobufCMessage *(*reply)(struct sh_write *w);
} sh_write;
/* The engine's sdb_done_fn for sh_write (arg: the sh_write): finishes the call. */
void sh_write_done(void *arg, int status, const char *err);
/* The tail of a write handler: rc and err from the engine call, async when it was the *_async
 * form. Returns SBX_PENDING once queued (w must not be touched then: the call may be over). */
int sh_write_end(sh_write *w, bool async, int rc, const char *err, ProtobufCMessage **resp);

/* ---- handlers_history.c ---- */
/* The limits of an ExecutionRecord (record required). */
int sh_check_record(sbx_ctx *ctx, const Sbx__V1__ExecutionRecord *r);
/* The stored form of a record: server-owned fields cleared, started_at defaulted to now
 * (*started gets it). */
sdb_slice sh_pack_record(sbx_ctx *ctx, sdb *db, const Sbx__V1__ExecutionRecord *in,
                         int64_t *started);
/* The handlers (sbx_handler_fn), registered in handlers.c's method table. */
int sh_append_execution(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                        void *data);
int sh_list_executions(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                       void *data);
int sh_watch_executions(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                        void *data);

/* ---- handlers_cache.c ---- */
int sh_get_cached_result(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                         void *data);
int sh_put_cached_result(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                         void *data);
int sh_clear_cache(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data);
int sh_record_execution(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                        void *data);

/* ---- handlers_projects.c ---- */
int sh_get_project(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data);
int sh_update_project(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                      void *data);
int sh_list_projects(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                     void *data);
int sh_delete_project(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                      void *data);

/* ---- handlers_kv.c ---- */
int sh_kv_set(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data);
int sh_kv_get(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data);
int sh_kv_delete(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data);
int sh_kv_incr(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data);
int sh_kv_list(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data);
int sh_kv_flush(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data);

/* ---- handlers_admin.c ---- */
int sh_checkpoint(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data);

#endif
