/* codec.c: the stored values, one encoder and one decoder per kind: the per-project counter,
 * the history record, the record-id entry, the project record, the cache entry and the kv
 * entry. Every value starts with a format version byte (SDB__VALUE_V1); a decoder returns false
 * on a value it does not understand, and its caller reports DATA_LOSS. Cache and kv entries
 * share the offset of their expiry, which the compaction filter and the sweeper read through
 * sdb__entry_expiry. No state; calls keys.c only.
 */
#include <stdlib.h>
#include <string.h>

#include "storedb_int.h"

#define EXPIRY_OFF 9 /* after the version byte and one be64 */

int64_t sdb__entry_expiry(const char *v, size_t vn)
{
    if (vn < EXPIRY_OFF + 8 || v[0] != SDB__VALUE_V1)
        return 0;
    return (int64_t)sdb__be64(v + EXPIRY_OFF);
}

/* ---- counter ---- */

bool sdb__counter_decode(const char *v, size_t n, sdb__counter *c)
{
    sdb__rd r = sdb__rd_init(v, n);
    memset(c, 0, sizeof *c);
    if (sdb__rd_u8(&r) != SDB__VALUE_V1)
        return false;
    c->last_seq = sdb__rd_be64(&r);
    c->exec_count = sdb__rd_be64(&r);
    c->last_recorded_ms = (int64_t)sdb__rd_be64(&r);
    c->last_time_ms = (int64_t)sdb__rd_be64(&r);
    c->last_exit_code = (int32_t)sdb__rd_be32(&r);
    return !r.bad;
}

void sdb__counter_encode(sdb__buf *b, const sdb__counter *c)
{
    sdb__buf_u8(b, SDB__VALUE_V1);
    sdb__buf_be64(b, c->last_seq);
    sdb__buf_be64(b, c->exec_count);
    sdb__buf_be64(b, (uint64_t)c->last_recorded_ms);
    sdb__buf_be64(b, (uint64_t)c->last_time_ms);
    sdb__buf_be32(b, (uint32_t)c->last_exit_code);
}

/* ---- history record, record-id entry ---- */

void sdb__rec_encode(sdb__buf *b, int64_t recorded_ms, int64_t time_ms, sdb_slice record_id,
                     sdb_slice data)
{
    sdb__buf_u8(b, SDB__VALUE_V1);
    sdb__buf_be64(b, (uint64_t)recorded_ms);
    sdb__buf_be64(b, (uint64_t)time_ms);
    sdb__buf_str(b, record_id);
    sdb__buf_raw(b, data.p, data.n);
}

bool sdb__rec_decode_value(const char *v, size_t vn, sdb_hist_rec *r)
{
    sdb__rd d = sdb__rd_init(v, vn);
    if (sdb__rd_u8(&d) != SDB__VALUE_V1)
        return false;
    r->recorded_ms = (int64_t)sdb__rd_be64(&d);
    r->time_ms = (int64_t)sdb__rd_be64(&d);
    r->record_id = sdb__rd_str(&d);
    r->data.p = d.p;
    r->data.n = d.n;
    return !d.bad;
}

bool sdb__rec_decode(const char *k, size_t kn, size_t scope_n, const char *v, size_t vn,
                     sdb_hist_rec *r)
{
    if (kn != scope_n + 8)
        return false;
    r->seq = sdb__be64(k + scope_n);
    return sdb__rec_decode_value(v, vn, r);
}

void sdb__recid_encode(sdb__buf *b, uint64_t seq, int64_t recorded_ms, int64_t time_ms)
{
    sdb__buf_be64(b, seq);
    sdb__buf_be64(b, (uint64_t)recorded_ms);
    sdb__buf_be64(b, (uint64_t)time_ms);
}

bool sdb__recid_decode(const char *v, size_t vn, sdb_hist_result *r)
{
    if (vn < 24)
        return false;
    r->seq = sdb__be64(v);
    r->recorded_ms = (int64_t)sdb__be64(v + 8);
    r->time_ms = (int64_t)sdb__be64(v + 16);
    return true;
}

/* ---- project record ---- */

void sdb__projrec_encode(sdb__buf *b, const sdb__projrec *r)
{
    sdb__buf_u8(b, SDB__VALUE_V1);
    sdb__buf_be64(b, r->version);
    sdb__buf_be64(b, (uint64_t)r->created_ms);
    sdb__buf_be64(b, (uint64_t)r->updated_ms);
    sdb__buf_be64(b, r->ret_max_records);
    sdb__buf_be64(b, (uint64_t)r->ret_max_age_s);
    sdb__buf_be32(b, (uint32_t)r->n_fields);
    for (size_t i = 0; i < r->n_fields; i++) {
        sdb__buf_be32(b, (uint32_t)r->fields[i].key.n);
        sdb__buf_raw(b, r->fields[i].key.p, r->fields[i].key.n);
        sdb__buf_be32(b, (uint32_t)r->fields[i].value.n);
        sdb__buf_raw(b, r->fields[i].value.p, r->fields[i].value.n);
    }
}

bool sdb__projrec_decode(const char *v, size_t n, sdb__projrec *r)
{
    sdb__rd d = sdb__rd_init(v, n);
    memset(r, 0, sizeof *r);
    if (sdb__rd_u8(&d) != SDB__VALUE_V1)
        return false;
    r->version = sdb__rd_be64(&d);
    r->created_ms = (int64_t)sdb__rd_be64(&d);
    r->updated_ms = (int64_t)sdb__rd_be64(&d);
    r->ret_max_records = sdb__rd_be64(&d);
    r->ret_max_age_s = (int64_t)sdb__rd_be64(&d);
    uint32_t nf = sdb__rd_be32(&d);
    if (d.bad || nf > SDB_FIELDS_MAX)
        return false;
    r->fields = nf ? calloc(nf, sizeof *r->fields) : NULL;
    if (nf && !r->fields)
        return false;
    for (uint32_t i = 0; i < nf; i++) {
        uint32_t kn = sdb__rd_be32(&d);
        r->fields[i].key = sdb__rd_bytes(&d, kn);
        uint32_t vn = sdb__rd_be32(&d);
        r->fields[i].value = sdb__rd_bytes(&d, vn);
    }
    r->n_fields = nf;
    if (d.bad) {
        free(r->fields);
        r->fields = NULL;
        return false;
    }
    return true;
}

/* ---- cache entry ---- */

void sdb__cache_val_encode(sdb__buf *b, const sdb__cache_val *c)
{
    sdb__buf_u8(b, SDB__VALUE_V1);
    sdb__buf_be64(b, (uint64_t)c->created_ms);
    sdb__buf_be64(b, (uint64_t)c->expires_ms);
    sdb__buf_be64(b, c->seq);
    sdb__buf_raw(b, c->data.p, c->data.n);
}

bool sdb__cache_val_decode(const char *v, size_t vn, sdb__cache_val *c)
{
    sdb__rd d = sdb__rd_init(v, vn);
    uint8_t ver = sdb__rd_u8(&d);
    c->created_ms = (int64_t)sdb__rd_be64(&d);
    c->expires_ms = (int64_t)sdb__rd_be64(&d);
    c->seq = sdb__rd_be64(&d);
    c->data.p = d.p;
    c->data.n = d.n;
    return !d.bad && ver == SDB__VALUE_V1;
}

/* ---- kv entry ---- */

void sdb__kv_val_encode(sdb__buf *b, const sdb_kv_meta *m, sdb_slice value)
{
    sdb__buf_u8(b, SDB__VALUE_V1);
    sdb__buf_be64(b, m->version);
    sdb__buf_be64(b, (uint64_t)m->expires_ms);
    sdb__buf_be64(b, (uint64_t)m->updated_ms);
    sdb__buf_raw(b, value.p, value.n);
}

bool sdb__kv_val_decode(const char *v, size_t vn, int64_t now, sdb__kv_val *e)
{
    sdb__rd d = sdb__rd_init(v, vn);
    memset(e, 0, sizeof *e);
    uint8_t ver = sdb__rd_u8(&d);
    e->meta.version = sdb__rd_be64(&d);
    e->meta.expires_ms = (int64_t)sdb__rd_be64(&d);
    e->meta.updated_ms = (int64_t)sdb__rd_be64(&d);
    if (d.bad || ver != SDB__VALUE_V1)
        return false;
    e->value.p = d.p;
    e->value.n = d.n;
    e->live = e->meta.expires_ms == 0 || e->meta.expires_ms > now;
    return true;
}
