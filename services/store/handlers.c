/* handlers.c: sbx.v1.StateStore on the storage engine: the method table (every RPC with its
 * streaming kind, flags and handler, in the order of store.proto) and the helpers the handler
 * files share. The handlers themselves are in handlers_history.c, handlers_cache.c,
 * handlers_projects.c, handlers_kv.c and handlers_admin.c (see handlers_int.h).
 */
#include <string.h>

#include "handlers_int.h"

sdb_slice sh_str(const char *s)
{
    return sdb_slice_c(s ? s : "");
}

sdb_slice sh_tenant(sbx_ctx *ctx)
{
    return sdb_slice_c(sbx_ctx_tenant(ctx));
}

int sh_fail(sbx_ctx *ctx, int rc, const char *err)
{
    return sbx_ctx_error(ctx, rc, "%s", err[0] ? err : sbx_status_desc(rc));
}

static void *arena_alloc(void *data, size_t n)
{
    return sbx_ctx_alloc(data, n ? n : 1);
}

static void arena_free(void *data, void *p)
{
    (void)data;
    (void)p;
}

ProtobufCAllocator sh_arena_allocator(sbx_ctx *ctx)
{
    ProtobufCAllocator a = {arena_alloc, arena_free, ctx};
    return a;
}

sdb_slice sh_pack(sbx_ctx *ctx, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = sbx_ctx_alloc(ctx, n ? n : 1);
    protobuf_c_message_pack(m, buf);
    return sdb_slice_n(buf, n);
}

char *sh_arena_str(sbx_ctx *ctx, sdb_slice s)
{
    char *p = sbx_ctx_alloc(ctx, s.n + 1);
    memcpy(p, s.p, s.n);
    p[s.n] = '\0';
    return p;
}

int sh_check_len(sbx_ctx *ctx, const char *field, const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n > max)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                             "%s: %zu bytes exceeds the limit of %zu bytes", field, n, max);
    return SBX_OK;
}

void sh_write_done(void *arg, int status, const char *err)
{
    sh_write *w = arg;
    if (status) {
        sbx_ctx_finish(w->ctx, sh_fail(w->ctx, status, err), NULL);
        return;
    }
    sbx_ctx_finish(w->ctx, SBX_OK, w->reply(w));
}

int sh_write_end(sh_write *w, bool async, int rc, const char *err, ProtobufCMessage **resp)
{
    if (rc)
        return sh_fail(w->ctx, rc, err);
    if (async)
        return SBX_PENDING;
    *resp = w->reply(w);
    return SBX_OK;
}

/* Writes the committer completes (sh_write) in GROUP mode: inline then, since they only queue. */
#define SH_ASYNC_WRITE (1u << 31)

static const sbx_method store_methods[] = {
    {"AppendExecution", SBX_UNARY, SH_ASYNC_WRITE, sh_append_execution},
    {"ListExecutions", SBX_UNARY, SBX_RUN_INLINE, sh_list_executions},
    {"WatchExecutions", SBX_SERVER_STREAM, 0, sh_watch_executions},
    {"GetCachedResult", SBX_UNARY, SBX_RUN_INLINE, sh_get_cached_result},
    {"PutCachedResult", SBX_UNARY, 0, sh_put_cached_result},
    {"ClearCache", SBX_UNARY, 0, sh_clear_cache},
    {"RecordExecution", SBX_UNARY, SH_ASYNC_WRITE, sh_record_execution},
    {"GetProject", SBX_UNARY, SBX_RUN_INLINE, sh_get_project},
    {"UpdateProject", SBX_UNARY, 0, sh_update_project},
    {"ListProjects", SBX_UNARY, SBX_RUN_INLINE, sh_list_projects},
    {"DeleteProject", SBX_UNARY, 0, sh_delete_project},
    {"Set", SBX_UNARY, SH_ASYNC_WRITE, sh_kv_set},
    {"Get", SBX_UNARY, SBX_RUN_INLINE, sh_kv_get},
    {"Delete", SBX_UNARY, 0, sh_kv_delete},
    {"Incr", SBX_UNARY, 0, sh_kv_incr},
    {"List", SBX_UNARY, SBX_RUN_INLINE, sh_kv_list},
    {"Flush", SBX_UNARY, 0, sh_kv_flush},
    {"Checkpoint", SBX_UNARY, SBX_SERVICE_ONLY, sh_checkpoint},
};

#define N_METHODS (sizeof store_methods / sizeof *store_methods)

static sbx_service_def store_service;
static sbx_method methods_now[N_METHODS];

const sbx_service_def *sbx_store_service(sdb *db)
{
    bool async = !db || sdb_async_writes(db);
    for (size_t i = 0; i < N_METHODS; i++) {
        methods_now[i] = store_methods[i];
        if (methods_now[i].flags & SH_ASYNC_WRITE)
            methods_now[i].flags = async ? SBX_RUN_INLINE : 0;
    }
    store_service.desc = &sbx__v1__state_store__descriptor;
    store_service.methods = methods_now;
    store_service.n_methods = N_METHODS;
    store_service.data = db;
    return &store_service;
}
