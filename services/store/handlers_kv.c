/* handlers_kv.c: the KV RPCs of sbx.v1.StateStore (Set, Get, Delete, Incr, List, Flush) on
 * the engine's sdb_kv_*; Get hands the engine's buffer to the response without a copy.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers_int.h"

typedef struct {
    sh_write w;
    sdb_kv_set_req s;
    sdb_kv_meta m;
} set_call;

static ProtobufCMessage *set_reply(sh_write *w)
{
    set_call *c = (set_call *)w;
    Sbx__V1__KvSetResponse *r =
        (void *)sbx_ctx_new_msg(w->ctx, &sbx__v1__kv_set_response__descriptor);
    r->version = c->m.version;
    r->expires_at_unix_ms = c->m.expires_ms;
    return &r->base;
}

int sh_kv_set(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    sdb *db = data;
    const Sbx__V1__KvSetRequest *q = (const void *)req;
    set_call *c = sbx_ctx_alloc(ctx, sizeof *c);
    c->w = (sh_write){ctx, set_reply};
    c->s = (sdb_kv_set_req){
        .key = sh_str(q->key),
        .value = sdb_slice_n(q->value.data, q->value.len),
        .ttl_s = q->ttl_s,
        .expires_at_ms = q->expires_at_unix_ms,
        .has_expected_version = q->expected != NULL,
        .expected_version = q->expected ? q->expected->version : 0,
    };
    char err[SH_ERRLEN] = "";
    bool async = sdb_async_writes(db);
    int rc = async ? sdb_kv_set_async(db, sh_tenant(ctx), &c->s, &c->m, sh_write_done, &c->w, err,
                                      sizeof err)
                   : sdb_kv_set(db, sh_tenant(ctx), &c->s, &c->m, err, sizeof err);
    return sh_write_end(&c->w, async, rc, err, resp);
}

int sh_kv_get(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    sdb *db = data;
    const Sbx__V1__KvGetRequest *q = (const void *)req;
    char *v = NULL;
    size_t n = 0;
    sdb_kv_meta m;
    char err[SH_ERRLEN] = "";
    int rc = sdb_kv_get(db, sh_tenant(ctx), sh_str(q->key), &v, &n, &m, err, sizeof err);
    if (rc)
        return sh_fail(ctx, rc, err);
    sbx_ctx_defer(ctx, free, v); /* no copy: freed with the call, after packing */
    Sbx__V1__KvGetResponse *r = (void *)sbx_ctx_new_msg(ctx, &sbx__v1__kv_get_response__descriptor);
    r->key = sbx_ctx_strdup(ctx, q->key ? q->key : "");
    r->value.data = (uint8_t *)v;
    r->value.len = n;
    r->version = m.version;
    r->expires_at_unix_ms = m.expires_ms;
    *resp = &r->base;
    return SBX_OK;
}

int sh_kv_delete(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    sdb *db = data;
    const Sbx__V1__KvDeleteRequest *q = (const void *)req;
    bool existed = false;
    char err[SH_ERRLEN] = "";
    int rc = sdb_kv_delete(db, sh_tenant(ctx), sh_str(q->key), &existed, err, sizeof err);
    if (rc)
        return sh_fail(ctx, rc, err);
    Sbx__V1__KvDeleteResponse *r =
        (void *)sbx_ctx_new_msg(ctx, &sbx__v1__kv_delete_response__descriptor);
    r->existed = existed;
    *resp = &r->base;
    return SBX_OK;
}

int sh_kv_incr(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    sdb *db = data;
    const Sbx__V1__KvIncrRequest *q = (const void *)req;
    int64_t v = 0;
    sdb_kv_meta m;
    char err[SH_ERRLEN] = "";
    int rc = sdb_kv_incr(db, sh_tenant(ctx), sh_str(q->key), q->delta, &v, &m, err, sizeof err);
    if (rc)
        return sh_fail(ctx, rc, err);
    Sbx__V1__KvIncrResponse *r =
        (void *)sbx_ctx_new_msg(ctx, &sbx__v1__kv_incr_response__descriptor);
    r->value = v;
    r->version = m.version;
    *resp = &r->base;
    return SBX_OK;
}

typedef struct {
    sbx_ctx *ctx;
    Sbx__V1__KvEntry **items;
    size_t n, bytes;
} list_kv_state;

static int list_kv_cb(void *arg, const sdb_kv_item *it)
{
    list_kv_state *s = arg;
    size_t sz = it->key.n + it->value.n + 32;
    if (s->n > 0 && s->bytes + sz > SBX_STORE_RESPONSE_BUDGET)
        return SDB_PAGE_FULL;
    Sbx__V1__KvEntry *e = (void *)sbx_ctx_new_msg(s->ctx, &sbx__v1__kv_entry__descriptor);
    e->key = sh_arena_str(s->ctx, it->key);
    if (it->value.n) {
        e->value.data = sbx_ctx_memdup(s->ctx, it->value.p, it->value.n);
        e->value.len = it->value.n;
    }
    e->version = it->meta.version;
    e->expires_at_unix_ms = it->meta.expires_ms;
    s->items[s->n++] = e;
    s->bytes += sz;
    return 0;
}

int sh_kv_list(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    sdb *db = data;
    const Sbx__V1__KvListRequest *q = (const void *)req;
    list_kv_state s = {ctx, sbx_ctx_alloc(ctx, SDB_LIST_MAX * sizeof(Sbx__V1__KvEntry *)), 0, 0};
    sdb_page pg;
    char err[SH_ERRLEN] = "";
    int rc = sdb_kv_list(db, sh_tenant(ctx), sh_str(q->prefix), q->limit != 0, q->limit,
                         sh_str(q->cursor), q->keys_only, list_kv_cb, &s, &pg, err, sizeof err);
    if (rc)
        return sh_fail(ctx, rc, err);
    Sbx__V1__KvListResponse *r =
        (void *)sbx_ctx_new_msg(ctx, &sbx__v1__kv_list_response__descriptor);
    r->n_entries = s.n;
    r->entries = s.items;
    r->next_cursor = sbx_ctx_strdup(ctx, pg.next_token);
    *resp = &r->base;
    return SBX_OK;
}

int sh_kv_flush(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    (void)req;
    sdb *db = data;
    uint64_t n = 0;
    char err[SH_ERRLEN] = "";
    int rc = sdb_kv_flush(db, sh_tenant(ctx), &n, err, sizeof err);
    if (rc)
        return sh_fail(ctx, rc, err);
    Sbx__V1__KvFlushResponse *r =
        (void *)sbx_ctx_new_msg(ctx, &sbx__v1__kv_flush_response__descriptor);
    r->deleted = n;
    *resp = &r->base;
    return SBX_OK;
}
