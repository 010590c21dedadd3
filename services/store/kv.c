/* kv.c: the Puter-KV-style key-value space of a tenant. An entry stores its version (bumped on
 * every write), expiry and update time in front of the value; expired entries read as absent
 * everywhere (Get, Delete, CAS, Incr, List) and are purged by the sweeper and the compaction
 * filter. Versions come from a per-tenant revision counter (like etcd's mod_revision), so a
 * key's version only grows, even across Delete and Flush; a per-tenant key counter makes the
 * number Flush reports exact. Set supports a TTL (relative or absolute) and expected-version
 * CAS; Incr is an atomic int64 add on a decimal-text value. Read-modify-writes go through
 * commit.c, which makes them atomic under concurrent clients. Flush range-deletes the caller's
 * tenant only. Calls commit.c, read.c, codec.c (the entry) and keys.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storedb_int.h"

static int check_key(sdb *db, sdb_slice tenant, sdb_slice key, char *err, size_t errlen)
{
    int rc = sdb__check_tenant(tenant, err, errlen);
    if (rc == SBX_OK)
        rc = sdb__check_bytes("key", key, db->o.kv_max_key, false, err, errlen);
    return rc;
}

static uint64_t tenant_hash(sdb_slice tenant)
{
    return sdb__hash(tenant, sdb_slice_n("", 0));
}

/* Tenant-wide meta keys: 'v' revision, 'n' number of keys. */
static void tenant_key(sdb__buf *k, sdb_slice tenant, char tag)
{
    sdb__key_meta(k, tenant, sdb_slice_n("", 0), tag, sdb_slice_n("", 0));
}

/* Next revision of the tenant (the new version of a key being written); adjusts the key count
 * by count_delta. */
static int bump(sdb__txn *t, sdb_slice tenant, int count_delta, uint64_t *rev, char *err,
                size_t errlen)
{
    sdb__buf k;
    sdb__buf_init(&k);
    tenant_key(&k, tenant, 'v');
    int rc = rev ? sdb__txn_add_u64(t, SDB__CF_META, &k, 1, rev, err, errlen) : SBX_OK;
    if (rc == SBX_OK && count_delta) {
        tenant_key(&k, tenant, 'n');
        rc = sdb__txn_add_u64(t, SDB__CF_META, &k, count_delta, NULL, err, errlen);
    }
    sdb__buf_free(&k);
    return rc;
}

static int mismatch(uint64_t expected, uint64_t have, char *err, size_t errlen)
{
    return sdb__err(err, errlen, SBX_FAILED_PRECONDITION,
                    "version mismatch: expected %llu, current %llu", (unsigned long long)expected,
                    (unsigned long long)have);
}

/* Reads the current entry through the txn. *raw must be freed. */
static int read_entry(sdb__txn *t, const sdb__buf *k, char **raw, sdb__kv_val *e, char *err,
                      size_t errlen)
{
    size_t vn = 0;
    *raw = NULL;
    memset(e, 0, sizeof *e);
    int rc = sdb__txn_get(t, SDB__CF_KV, k, raw, &vn, err, errlen);
    if (rc == SBX_NOT_FOUND)
        return SBX_OK;
    if (rc)
        return rc;
    if (!sdb__kv_val_decode(*raw, vn, sdb__now(sdb__txn_db(t)), e))
        return sdb__err(err, errlen, SBX_DATA_LOSS, "kv entry is corrupted");
    return SBX_OK;
}

/* ---- Set ---- */

typedef struct {
    sdb_slice tenant;
    const sdb_kv_set_req *s;
    int64_t expires;
    sdb_kv_meta *out;
} set_arg;

static int set_apply(sdb__txn *t, void *arg, char *err, size_t errlen)
{
    set_arg *x = arg;
    sdb__buf k, b;
    sdb__buf_init(&k);
    sdb__buf_init(&b);
    sdb__key_kv(&k, x->tenant, x->s->key);
    char *raw;
    sdb__kv_val e;
    int rc = read_entry(t, &k, &raw, &e, err, errlen);
    if (rc)
        goto out;
    uint64_t have = e.live ? e.meta.version : 0, rev;
    if (x->s->has_expected_version && x->s->expected_version != have) {
        rc = mismatch(x->s->expected_version, have, err, errlen);
        goto out;
    }
    if ((rc = bump(t, x->tenant, raw ? 0 : 1, &rev, err, errlen)))
        goto out;
    sdb_kv_meta m = {rev, x->expires, sdb__now(sdb__txn_db(t))};
    sdb__kv_val_encode(&b, &m, x->s->value);
    sdb__txn_put(t, SDB__CF_KV, &k, b.p, b.n);
    *x->out = m;
out:
    free(raw);
    sdb__buf_free(&k);
    sdb__buf_free(&b);
    return rc;
}

/* The checks of a Set; fills x for set_apply. */
static int set_prepare(sdb *db, sdb_slice tenant, const sdb_kv_set_req *s, sdb_kv_meta *out,
                       set_arg *x, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    int rc = check_key(db, tenant, s->key, err, errlen);
    if (rc == SBX_OK)
        rc = sdb__check_size("value", s->value.n, db->o.kv_max_value, err, errlen);
    if (rc)
        return rc;
    int64_t now = sdb__now(db), expires = 0, max_ttl = db->o.kv_max_ttl_s;
    if (s->ttl_s && s->expires_at_ms)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                        "ttl_s and expires_at_unix_ms: set at most one of them");
    if (s->ttl_s < 0 || s->ttl_s > max_ttl)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                        "ttl_s: %lld must be 0 (no expiry) or 1..%lld", (long long)s->ttl_s,
                        (long long)max_ttl);
    if (s->ttl_s)
        expires = now + s->ttl_s * 1000;
    if (s->expires_at_ms) {
        if (s->expires_at_ms <= now)
            return sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                            "expires_at_unix_ms: %lld is not in the future (now %lld)",
                            (long long)s->expires_at_ms, (long long)now);
        if (s->expires_at_ms - now > max_ttl * 1000)
            return sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                            "expires_at_unix_ms: %lld is more than %lld s ahead",
                            (long long)s->expires_at_ms, (long long)max_ttl);
        expires = s->expires_at_ms;
    }
    *x = (set_arg){tenant, s, expires, out};
    return SBX_OK;
}

static void set_after(sdb *db, sdb_kv_meta *out, int rc)
{
    if (rc == SBX_OK)
        SDB__STAT_ADD(db, kv_writes, 1);
    else
        memset(out, 0, sizeof *out);
}

int sdb_kv_set(sdb *db, sdb_slice tenant, const sdb_kv_set_req *s, sdb_kv_meta *out, char *err,
               size_t errlen)
{
    sdb_kv_meta tmp;
    if (!out)
        out = &tmp;
    set_arg x;
    int rc = set_prepare(db, tenant, s, out, &x, err, errlen);
    if (rc)
        return rc;
    rc = sdb__commit(db, set_apply, &x, tenant_hash(tenant), false, err, errlen);
    set_after(db, out, rc);
    return rc;
}

typedef struct {
    sdb__async a;
    set_arg x;
    sdb_kv_meta tmp;
} set_async;

static void set_async_after(sdb__async *a, int status)
{
    set_after(a->db, ((set_async *)a)->x.out, status);
}

int sdb_kv_set_async(sdb *db, sdb_slice tenant, const sdb_kv_set_req *s, sdb_kv_meta *out,
                     sdb_done_fn done, void *arg, char *err, size_t errlen)
{
    set_async *w = calloc(1, sizeof *w);
    if (!w)
        return sdb__err(err, errlen, SBX_RESOURCE_EXHAUSTED, "out of memory");
    int rc = set_prepare(db, tenant, s, out ? out : &w->tmp, &w->x, err, errlen);
    if (rc) {
        free(w);
        return rc;
    }
    return sdb__async_queue(db, &w->a, set_apply, &w->x, set_async_after, done, arg, err, errlen);
}

/* ---- Get ---- */

int sdb_kv_get(sdb *db, sdb_slice tenant, sdb_slice key, char **value, size_t *len,
               sdb_kv_meta *meta, char *err, size_t errlen)
{
    *value = NULL;
    *len = 0;
    if (meta)
        memset(meta, 0, sizeof *meta);
    int rc = check_key(db, tenant, key, err, errlen);
    if (rc)
        return rc;
    SDB__STAT_ADD(db, kv_reads, 1);
    sdb__buf k;
    sdb__buf_init(&k);
    sdb__key_kv(&k, tenant, key);
    char *v = NULL;
    size_t vn = 0;
    rc = sdb__get(db, SDB__CF_KV, &k, &v, &vn, err, errlen);
    sdb__buf_free(&k);
    if (rc == SBX_NOT_FOUND)
        return sdb__err(err, errlen, SBX_NOT_FOUND, "key not found");
    if (rc)
        return rc;
    sdb__kv_val e;
    if (!sdb__kv_val_decode(v, vn, sdb__now(db), &e)) {
        free(v);
        return sdb__err(err, errlen, SBX_DATA_LOSS, "kv entry is corrupted");
    }
    if (!e.live) {
        free(v);
        return sdb__err(err, errlen, SBX_NOT_FOUND, "key not found (expired)");
    }
    /* reuse RocksDB's buffer: it is the entry header longer than the value */
    size_t n = e.value.n;
    memmove(v, e.value.p, n);
    v[n] = '\0';
    *value = v;
    *len = n;
    if (meta)
        *meta = e.meta;
    return SBX_OK;
}

/* ---- Delete ---- */

typedef struct {
    sdb_slice tenant, key;
    bool *existed;
} del_arg;

static int del_apply(sdb__txn *t, void *arg, char *err, size_t errlen)
{
    del_arg *x = arg;
    sdb__buf k;
    sdb__buf_init(&k);
    sdb__key_kv(&k, x->tenant, x->key);
    char *raw;
    sdb__kv_val e;
    int rc = read_entry(t, &k, &raw, &e, err, errlen);
    if (rc == SBX_OK && raw) {
        *x->existed = e.live;
        sdb__txn_del(t, SDB__CF_KV, &k);
        rc = bump(t, x->tenant, -1, NULL, err, errlen);
    }
    free(raw);
    sdb__buf_free(&k);
    return rc;
}

int sdb_kv_delete(sdb *db, sdb_slice tenant, sdb_slice key, bool *existed, char *err, size_t errlen)
{
    bool tmp;
    if (!existed)
        existed = &tmp;
    *existed = false;
    int rc = check_key(db, tenant, key, err, errlen);
    if (rc)
        return rc;
    del_arg x = {tenant, key, existed};
    rc = sdb__commit(db, del_apply, &x, tenant_hash(tenant), false, err, errlen);
    if (rc == SBX_OK)
        SDB__STAT_ADD(db, kv_writes, 1);
    else
        *existed = false;
    return rc;
}

/* ---- Incr ---- */

/* Strict decimal int64: optional '-', 1..19 digits (no spaces, no '+', no leading zeros
 * rule). */
static bool parse_i64(sdb_slice s, int64_t *out)
{
    if (s.n == 0 || s.n > 20)
        return false;
    char buf[24];
    memcpy(buf, s.p, s.n);
    buf[s.n] = '\0';
    size_t i = buf[0] == '-' ? 1 : 0;
    if (i == s.n)
        return false;
    for (size_t j = i; j < s.n; j++)
        if (buf[j] < '0' || buf[j] > '9')
            return false;
    errno = 0;
    char *end;
    long long v = strtoll(buf, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

typedef struct {
    sdb_slice tenant, key;
    int64_t delta;
    int64_t *result;
    sdb_kv_meta *meta;
} incr_arg;

static int incr_apply(sdb__txn *t, void *arg, char *err, size_t errlen)
{
    incr_arg *x = arg;
    sdb__buf k, b;
    sdb__buf_init(&k);
    sdb__buf_init(&b);
    sdb__key_kv(&k, x->tenant, x->key);
    char *raw;
    sdb__kv_val e;
    int rc = read_entry(t, &k, &raw, &e, err, errlen);
    if (rc)
        goto out;
    int64_t cur = 0, next;
    if (e.live && !parse_i64(e.value, &cur)) {
        rc = sdb__err(err, errlen, SBX_FAILED_PRECONDITION,
                      "key: the value is not a decimal int64 (%zu bytes), cannot increment",
                      e.value.n);
        goto out;
    }
    if (__builtin_add_overflow(cur, x->delta, &next)) {
        rc = sdb__err(err, errlen, SBX_OUT_OF_RANGE, "delta: %lld + %lld overflows int64",
                      (long long)cur, (long long)x->delta);
        goto out;
    }
    uint64_t rev;
    if ((rc = bump(t, x->tenant, raw ? 0 : 1, &rev, err, errlen)))
        goto out;
    char num[24];
    int nn = snprintf(num, sizeof num, "%lld", (long long)next);
    sdb_kv_meta m = {rev, e.live ? e.meta.expires_ms : 0, sdb__now(sdb__txn_db(t))};
    sdb__kv_val_encode(&b, &m, sdb_slice_n(num, (size_t)nn));
    sdb__txn_put(t, SDB__CF_KV, &k, b.p, b.n);
    *x->result = next;
    *x->meta = m;
out:
    free(raw);
    sdb__buf_free(&k);
    sdb__buf_free(&b);
    return rc;
}

int sdb_kv_incr(sdb *db, sdb_slice tenant, sdb_slice key, int64_t delta, int64_t *result,
                sdb_kv_meta *meta, char *err, size_t errlen)
{
    int64_t r0;
    sdb_kv_meta m0;
    if (!result)
        result = &r0;
    if (!meta)
        meta = &m0;
    *result = 0;
    memset(meta, 0, sizeof *meta);
    int rc = check_key(db, tenant, key, err, errlen);
    if (rc)
        return rc;
    if (delta == 0) { /* only reads */
        char *v = NULL;
        size_t n = 0;
        rc = sdb_kv_get(db, tenant, key, &v, &n, meta, err, errlen);
        if (rc == SBX_NOT_FOUND) {
            memset(meta, 0, sizeof *meta);
            return SBX_OK;
        }
        if (rc == SBX_OK && !parse_i64(sdb_slice_n(v, n), result))
            rc = sdb__err(err, errlen, SBX_FAILED_PRECONDITION,
                          "key: the value is not a decimal int64 (%zu bytes), cannot increment", n);
        free(v);
        if (rc) {
            *result = 0;
            memset(meta, 0, sizeof *meta);
        }
        return rc;
    }
    incr_arg x = {tenant, key, delta, result, meta};
    rc = sdb__commit(db, incr_apply, &x, tenant_hash(tenant), false, err, errlen);
    if (rc == SBX_OK) {
        SDB__STAT_ADD(db, kv_writes, 1);
    } else {
        *result = 0;
        memset(meta, 0, sizeof *meta);
    }
    return rc;
}

/* ---- List ---- */

typedef struct {
    sdb_slice tenant, prefix;
    bool keys_only;
    sdb_kv_cb cb;
    void *arg;
    sdb_page *page;
} list_arg;

/* The page from the iterator's position on; returns what ends the listing early (an error or
 * the callback's stop value), else 0. */
static int list_page(sdb *db, sdb__iter *it, const list_arg *l, char *err, size_t errlen)
{
    int64_t now = sdb__now(db);
    sdb_page *page = l->page;
    sdb__buf last; /* the key last returned: the cursor of the next page */
    sdb__buf_init(&last);
    int stop = 0;
    for (; sdb__iter_valid(it); sdb__iter_next(it)) {
        size_t kn, vn;
        const char *k = sdb__iter_key(it, &kn);
        const char *v = sdb__iter_value(it, &vn);
        sdb_slice t;
        sdb_kv_item item;
        sdb__kv_val e;
        if (!sdb__key_split(k, kn, &t, &item.key) || !sdb__kv_val_decode(v, vn, now, &e)) {
            stop = sdb__err(err, errlen, SBX_DATA_LOSS, "kv entry is corrupted");
            break;
        }
        if (!e.live)
            continue;
        if (page->count == page->applied_limit) {
            sdb__token_encode(SDB__TOK_KV, l->tenant, l->prefix, last.p, last.n, page->next_token);
            break;
        }
        item.value = l->keys_only ? sdb_slice_n("", 0) : e.value;
        item.meta = e.meta;
        stop = l->cb ? l->cb(l->arg, &item) : 0;
        if (stop == SDB_PAGE_FULL) {
            stop = 0;
            sdb__token_encode(SDB__TOK_KV, l->tenant, l->prefix, last.p, last.n, page->next_token);
            break;
        }
        page->count++;
        if (stop)
            break;
        sdb__buf_reset(&last);
        sdb__buf_raw(&last, item.key.p, item.key.n);
    }
    sdb__buf_free(&last);
    return stop;
}

int sdb_kv_list(sdb *db, sdb_slice tenant, sdb_slice prefix, bool has_limit, int64_t limit,
                sdb_slice page_token, bool keys_only, sdb_kv_cb cb, void *arg, sdb_page *page,
                char *err, size_t errlen)
{
    int rc;
    if ((rc = sdb__check_tenant(tenant, err, errlen)) ||
        (rc = sdb__check_bytes("prefix", prefix, db->o.kv_max_key, true, err, errlen)) ||
        (rc = sdb__check_limit(has_limit, limit, SDB_LIST_DEFAULT, page, err, errlen)))
        return rc;
    sdb__iter it;
    if ((rc = sdb__iter_open_page(db, &it, SDB__CF_KV, SDB__TOK_KV, "cursor", tenant, prefix,
                                  page_token, err, errlen)))
        return rc;
    SDB__STAT_ADD(db, kv_reads, 1);
    list_arg l = {tenant, prefix, keys_only, cb, arg, page};
    int stop = list_page(db, &it, &l, err, errlen);
    rc = sdb__iter_close(&it, stop ? NULL : err, stop ? 0 : errlen);
    return stop ? stop : rc;
}

/* ---- Flush ---- */

typedef struct {
    sdb_slice tenant;
    uint64_t *deleted;
} flush_arg;

static int flush_apply(sdb__txn *t, void *arg, char *err, size_t errlen)
{
    flush_arg *x = arg;
    sdb__buf lo, hi;
    sdb__buf_init(&lo);
    sdb__buf_init(&hi);
    tenant_key(&lo, x->tenant, 'n');
    int rc = sdb__txn_get_u64(t, SDB__CF_META, &lo, x->deleted, err, errlen);
    if (rc == SBX_OK) {
        sdb__txn_put_u64(t, SDB__CF_META, &lo, 0);
        sdb__key_tenant(&lo, x->tenant);
        sdb__buf_copy(&hi, &lo);
        sdb__buf_successor(&hi);
        sdb__txn_del_range(t, SDB__CF_KV, &lo, &hi);
    }
    sdb__buf_free(&lo);
    sdb__buf_free(&hi);
    return rc;
}

int sdb_kv_flush(sdb *db, sdb_slice tenant, uint64_t *deleted, char *err, size_t errlen)
{
    uint64_t tmp;
    if (!deleted)
        deleted = &tmp;
    *deleted = 0;
    int rc = sdb__check_tenant(tenant, err, errlen);
    if (rc)
        return rc;
    flush_arg x = {tenant, deleted};
    rc = sdb__commit(db, flush_apply, &x, tenant_hash(tenant), true, err, errlen);
    if (rc == SBX_OK)
        SDB__STAT_ADD(db, kv_writes, 1);
    else
        *deleted = 0;
    return rc;
}
