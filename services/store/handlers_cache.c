/* handlers_cache.c: the Cache RPCs of sbx.v1.StateStore (GetCachedResult, PutCachedResult,
 * ClearCache, RecordExecution) on the engine's sdb_cache_* and sdb_record_execution. Cached
 * results are stored as packed protobuf with what the engine keeps itself (project, command
 * key, times, seq) cleared, and filled in on the way out.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers_int.h"

int sh_get_cached_result(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                         void *data)
{
    sdb *db = data;
    const Sbx__V1__GetCachedResultRequest *q = (const void *)req;
    sdb_cache_entry e;
    char err[SH_ERRLEN] = "";
    int rc = sdb_cache_get(db, sh_tenant(ctx), sh_str(q->project_id), sh_str(q->command_key), &e,
                           err, sizeof err);
    if (rc)
        return sh_fail(ctx, rc, err);
    Sbx__V1__GetCachedResultResponse *r =
        (void *)sbx_ctx_new_msg(ctx, &sbx__v1__get_cached_result_response__descriptor);
    r->expired = e.expired;
    if (e.found) {
        ProtobufCAllocator a = sh_arena_allocator(ctx);
        Sbx__V1__CachedResult *c = sbx__v1__cached_result__unpack(&a, e.len, e.data);
        if (!c) {
            sdb_cache_entry_clear(&e);
            return sbx_ctx_error(ctx, SBX_DATA_LOSS, "cached result does not decode");
        }
        c->project_id = sbx_ctx_strdup(ctx, q->project_id ? q->project_id : "");
        c->command_key = sbx_ctx_strdup(ctx, q->command_key ? q->command_key : "");
        c->created_at_unix_ms = e.created_ms;
        c->expires_at_unix_ms = e.expires_ms;
        c->seq = e.seq;
        r->found = true;
        r->result = c;
    }
    sdb_cache_entry_clear(&e);
    *resp = &r->base;
    return SBX_OK;
}

static int check_result(sbx_ctx *ctx, const Sbx__V1__CachedResult *c)
{
    if (!c)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "result: is required");
    if (c->stdout.len > SH_OUTPUT_MAX || c->stderr.len > SH_OUTPUT_MAX)
        return sbx_ctx_error(
            ctx, SBX_INVALID_ARGUMENT, "result.%s: %zu bytes exceeds the limit of %u bytes",
            c->stdout.len > SH_OUTPUT_MAX ? "stdout" : "stderr",
            c->stdout.len > SH_OUTPUT_MAX ? c->stdout.len : c->stderr.len, SH_OUTPUT_MAX);
    if (c->duration_us < 0)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                             "result.duration_us: %lld must not be negative",
                             (long long)c->duration_us);
    return SBX_OK;
}

/* The stored form of a cached result: what the engine keeps itself is cleared. */
static sdb_slice pack_result(sbx_ctx *ctx, Sbx__V1__CachedResult c)
{
    c.project_id = (char *)protobuf_c_empty_string;
    c.command_key = (char *)protobuf_c_empty_string;
    c.created_at_unix_ms = 0;
    c.expires_at_unix_ms = 0;
    c.seq = 0;
    if (c.stdout_bytes < c.stdout.len)
        c.stdout_bytes = c.stdout.len;
    if (c.stderr_bytes < c.stderr.len)
        c.stderr_bytes = c.stderr.len;
    return sh_pack(ctx, &c.base);
}

int sh_put_cached_result(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                         void *data)
{
    sdb *db = data;
    const Sbx__V1__PutCachedResultRequest *q = (const void *)req;
    int rc = check_result(ctx, q->result);
    if (rc)
        return rc;
    if (q->ttl_s < 0)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                             "ttl_s: %lld must be 0 (default 3600) or 1..2592000",
                             (long long)q->ttl_s);
    char err[SH_ERRLEN] = "";
    int64_t exp = 0;
    rc = sdb_cache_put(db, sh_tenant(ctx), sh_str(q->project_id), sh_str(q->result->command_key),
                       pack_result(ctx, *q->result), q->ttl_s, &exp, err, sizeof err);
    if (rc)
        return sh_fail(ctx, rc, err);
    Sbx__V1__PutCachedResultResponse *r =
        (void *)sbx_ctx_new_msg(ctx, &sbx__v1__put_cached_result_response__descriptor);
    r->expires_at_unix_ms = exp;
    *resp = &r->base;
    return SBX_OK;
}

int sh_clear_cache(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    sdb *db = data;
    const Sbx__V1__ClearCacheRequest *q = (const void *)req;
    uint64_t n = 0;
    char err[SH_ERRLEN] = "";
    int rc = sdb_cache_clear(db, sh_tenant(ctx), sh_str(q->project_id), sh_str(q->command_key), &n,
                             err, sizeof err);
    if (rc)
        return sh_fail(ctx, rc, err);
    Sbx__V1__ClearCacheResponse *r =
        (void *)sbx_ctx_new_msg(ctx, &sbx__v1__clear_cache_response__descriptor);
    r->whole_project = sh_str(q->command_key).n == 0;
    r->cleared = n;
    *resp = &r->base;
    return SBX_OK;
}

typedef struct {
    sh_write w;
    sdb_record_exec x;
    sdb_hist_result res;
    int64_t exp;
} record_call;

static ProtobufCMessage *record_reply(sh_write *w)
{
    record_call *c = (record_call *)w;
    Sbx__V1__RecordExecutionResponse *r =
        (void *)sbx_ctx_new_msg(w->ctx, &sbx__v1__record_execution_response__descriptor);
    r->seq = c->res.seq;
    r->duplicate = c->res.duplicate;
    r->cache_expires_at_unix_ms = c->exp;
    return &r->base;
}

int sh_record_execution(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                        void *data)
{
    sdb *db = data;
    const Sbx__V1__RecordExecutionRequest *q = (const void *)req;
    int rc = sh_check_record(ctx, q->record);
    if (rc)
        return rc;
    if (q->cache_ttl_s < 0 || q->cache_ttl_s > 2592000)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                             "cache_ttl_s: %lld must be 0 (do not cache) or 1..2592000",
                             (long long)q->cache_ttl_s);
    const Sbx__V1__ExecutionRecord *in = q->record;
    if (q->cache_ttl_s > 0 && sh_str(in->command_key).n == 0)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                             "record.command_key: must not be empty when cache_ttl_s > 0");
    record_call *c = sbx_ctx_alloc(ctx, sizeof *c);
    c->w = (sh_write){ctx, record_reply};
    sdb_record_exec *x = &c->x;
    int64_t started;
    *x = (sdb_record_exec){
        .hist = {sh_str(q->project_id), sh_str(in->record_id), {0}, 0, in->exit_code}};
    x->hist.data = sh_pack_record(ctx, db, in, &started);
    x->hist.time_ms = started;
    if (q->cache_ttl_s > 0) {
        Sbx__V1__CachedResult cr = SBX__V1__CACHED_RESULT__INIT;
        cr.exit_code = in->exit_code;
        cr.signal = in->signal;
        cr.timed_out = in->timed_out;
        cr.output_truncated = in->output_truncated;
        cr.stdout = in->stdout;
        cr.stderr = in->stderr;
        cr.duration_us = in->duration_us;
        cr.stdout_bytes = in->stdout_bytes;
        cr.stderr_bytes = in->stderr_bytes;
        x->command_key = sh_str(in->command_key);
        x->cache_data = pack_result(ctx, cr);
        x->ttl_s = q->cache_ttl_s;
    }
    char err[SH_ERRLEN] = "";
    bool async = sdb_async_writes(db);
    rc = async ? sdb_record_execution_async(db, sh_tenant(ctx), x, &c->res, &c->exp, sh_write_done,
                                            &c->w, err, sizeof err)
               : sdb_record_execution(db, sh_tenant(ctx), x, &c->res, &c->exp, err, sizeof err);
    return sh_write_end(&c->w, async, rc, err, resp);
}
