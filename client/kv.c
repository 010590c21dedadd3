/* kv.c: the tenant's key-value space on the store (Set, Get, Delete, Incr, List, Flush). The
 * whole space lives on the store instance that rendezvous hashing picks for the key "kv". */
#include <stdlib.h>
#include <string.h>

#include "sbx/v1/store.pb-c.h"
#include "sbx_internal.h"

#define KV_METHOD(m) "/sbx.v1.StateStore/" m

static sbx_error *kv_call(sbx_client *c, const char *method, const ProtobufCMessage *req,
                          const ProtobufCMessageDescriptor *rd, ProtobufCMessage **resp, bool idem)
{
    return sbx__unary_key(c, SBX_SERVICE_STORE, SBX__KV_ROUTE_KEY, method, req, rd, resp, idem);
}

sbx_error *sbx_kv_set(sbx_client *c, const char *key, const void *value, size_t len,
                      const sbx_kv_set_opts *opts, uint64_t *version, int64_t *expires_at_ms)
{
    if (version)
        *version = 0;
    if (expires_at_ms)
        *expires_at_ms = 0;
    Sbx__V1__KvSetRequest req = SBX__V1__KV_SET_REQUEST__INIT;
    Sbx__V1__ExpectedVersion exp = SBX__V1__EXPECTED_VERSION__INIT;
    req.key = (char *)sbx__nz(key);
    req.value.data = (uint8_t *)value;
    req.value.len = len;
    bool idem = true;
    if (opts) {
        req.ttl_s = opts->ttl_s;
        req.expires_at_unix_ms = opts->expires_at_ms;
        if (opts->check_version) {
            exp.version = opts->expected_version;
            req.expected = &exp;
            idem = false;
        }
    }
    ProtobufCMessage *resp = NULL;
    sbx_error *e =
        kv_call(c, KV_METHOD("Set"), &req.base, &sbx__v1__kv_set_response__descriptor, &resp, idem);
    if (e)
        return e;
    Sbx__V1__KvSetResponse *r = (void *)resp;
    if (version)
        *version = r->version;
    if (expires_at_ms)
        *expires_at_ms = r->expires_at_unix_ms;
    protobuf_c_message_free_unpacked(resp, NULL);
    return NULL;
}

static int fill_entry(sbx_kv_entry *d, const char *key, const ProtobufCBinaryData *v,
                      uint64_t version, int64_t exp)
{
    d->key = sbx__strdup(key);
    d->value = sbx__memdup(v->data, v->len);
    d->value_len = v->len;
    d->version = version;
    d->expires_at_ms = exp;
    return d->key && d->value ? 0 : -1;
}

static void entry_clear(sbx_kv_entry *e)
{
    free(e->key);
    free(e->value);
}

void sbx_kv_entry_free(sbx_kv_entry *e)
{
    if (!e)
        return;
    entry_clear(e);
    free(e);
}

sbx_error *sbx_kv_get(sbx_client *c, const char *key, sbx_kv_entry **out)
{
    *out = NULL;
    Sbx__V1__KvGetRequest req = SBX__V1__KV_GET_REQUEST__INIT;
    req.key = (char *)sbx__nz(key);
    ProtobufCMessage *resp = NULL;
    sbx_error *e =
        kv_call(c, KV_METHOD("Get"), &req.base, &sbx__v1__kv_get_response__descriptor, &resp, true);
    if (e)
        return e;
    Sbx__V1__KvGetResponse *r = (void *)resp;
    sbx_kv_entry *d = calloc(1, sizeof *d);
    if (!d ||
        fill_entry(d, *r->key ? r->key : key, &r->value, r->version, r->expires_at_unix_ms) != 0) {
        sbx_kv_entry_free(d);
        protobuf_c_message_free_unpacked(resp, NULL);
        return sbx__error_oom();
    }
    protobuf_c_message_free_unpacked(resp, NULL);
    *out = d;
    return NULL;
}

sbx_error *sbx_kv_del(sbx_client *c, const char *key, bool *existed)
{
    if (existed)
        *existed = false;
    Sbx__V1__KvDeleteRequest req = SBX__V1__KV_DELETE_REQUEST__INIT;
    req.key = (char *)sbx__nz(key);
    ProtobufCMessage *resp = NULL;
    sbx_error *e = kv_call(c, KV_METHOD("Delete"), &req.base,
                           &sbx__v1__kv_delete_response__descriptor, &resp, true);
    if (e)
        return e;
    if (existed)
        *existed = ((Sbx__V1__KvDeleteResponse *)resp)->existed;
    protobuf_c_message_free_unpacked(resp, NULL);
    return NULL;
}

sbx_error *sbx_kv_incr(sbx_client *c, const char *key, int64_t delta, int64_t *value,
                       uint64_t *version)
{
    if (value)
        *value = 0;
    if (version)
        *version = 0;
    Sbx__V1__KvIncrRequest req = SBX__V1__KV_INCR_REQUEST__INIT;
    req.key = (char *)sbx__nz(key);
    req.delta = delta;
    ProtobufCMessage *resp = NULL;
    sbx_error *e = kv_call(c, KV_METHOD("Incr"), &req.base, &sbx__v1__kv_incr_response__descriptor,
                           &resp, delta == 0);
    if (e)
        return e;
    Sbx__V1__KvIncrResponse *r = (void *)resp;
    if (value)
        *value = r->value;
    if (version)
        *version = r->version;
    protobuf_c_message_free_unpacked(resp, NULL);
    return NULL;
}

sbx_error *sbx_kv_flush(sbx_client *c, uint64_t *deleted)
{
    if (deleted)
        *deleted = 0;
    Sbx__V1__KvFlushRequest req = SBX__V1__KV_FLUSH_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    sbx_error *e = kv_call(c, KV_METHOD("Flush"), &req.base,
                           &sbx__v1__kv_flush_response__descriptor, &resp, true);
    if (e)
        return e;
    if (deleted)
        *deleted = ((Sbx__V1__KvFlushResponse *)resp)->deleted;
    protobuf_c_message_free_unpacked(resp, NULL);
    return NULL;
}

void sbx_kv_list_free(sbx_kv_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->count; i++)
        entry_clear(&l->entries[i]);
    free(l->entries);
    free(l->next_cursor);
    free(l);
}

sbx_error *sbx_kv_list_page(sbx_client *c, const char *prefix, const char *cursor, int limit,
                            bool keys_only, sbx_kv_list **out)
{
    *out = NULL;
    Sbx__V1__KvListRequest req = SBX__V1__KV_LIST_REQUEST__INIT;
    req.prefix = (char *)sbx__nz(prefix);
    req.cursor = (char *)sbx__nz(cursor);
    req.limit = limit;
    req.keys_only = keys_only;
    ProtobufCMessage *resp = NULL;
    sbx_error *e = kv_call(c, KV_METHOD("List"), &req.base, &sbx__v1__kv_list_response__descriptor,
                           &resp, true);
    if (e)
        return e;
    Sbx__V1__KvListResponse *r = (void *)resp;
    sbx_kv_list *l = calloc(1, sizeof *l);
    if (l && r->n_entries)
        l->entries = calloc(r->n_entries, sizeof *l->entries);
    bool ok = l && (!r->n_entries || l->entries);
    for (size_t i = 0; ok && i < r->n_entries; i++) {
        Sbx__V1__KvEntry *en = r->entries[i];
        l->count++;
        ok = fill_entry(&l->entries[i], en->key, &en->value, en->version, en->expires_at_unix_ms) ==
             0;
    }
    if (ok)
        ok = (l->next_cursor = sbx__strdup(r->next_cursor)) != NULL;
    protobuf_c_message_free_unpacked(resp, NULL);
    if (!ok) {
        sbx_kv_list_free(l);
        return sbx__error_oom();
    }
    *out = l;
    return NULL;
}
