/* cache.c: the result cache. An entry lives under (tenant, project, generation, command key)
 * and stores its expiry in the value; every read checks it (expired = miss, reported as
 * expired), the sweeper and the compaction filter purge expired entries. Clearing a whole
 * project is O(1): the project's generation (meta 'g') is bumped, so every older entry becomes
 * unreachable, and the older generations are range-deleted in the same write (one tombstone;
 * compaction reclaims the space in the background). A per-project entry counter (meta 'n',
 * maintained by put, clear and the sweeper) makes the number a clear reports exact without a
 * scan. RecordExecution appends history and fills the cache in one atomic write.
 */
#include <stdlib.h>
#include <string.h>

#include "storedb_int.h"

static int check_ttl(sbx_storedb *db, int64_t ttl_s, int64_t *eff, char *err, size_t errlen)
{
    if (ttl_s < 0 || ttl_s > db->o.cache_max_ttl_s)
        return sdb_err(err, errlen, SBX_INVALID_ARGUMENT,
                       "ttl_s: %lld must be 0 (default %lld) or 1..%lld", (long long)ttl_s,
                       (long long)db->o.cache_default_ttl_s, (long long)db->o.cache_max_ttl_s);
    *eff = ttl_s ? ttl_s : db->o.cache_default_ttl_s;
    return SBX_OK;
}

static int check_key(sbx_slice tenant, sbx_slice project, sbx_slice cmd, bool allow_empty,
                     char *err, size_t errlen)
{
    int rc;
    if ((rc = sdb_check_tenant(tenant, err, errlen)) ||
        (rc = sdb_check_project(project, err, errlen)) ||
        (rc = sdb_check_bytes("command_key", cmd, SBX_COMMAND_KEY_MAX, allow_empty, err, errlen)))
        return rc;
    return SBX_OK;
}

/* Generation through the txn (t != NULL) or the committed state. */
static int read_gen(sbx_storedb *db, sdb_txn *t, sbx_slice tenant, sbx_slice project, uint64_t *gen,
                    char *err, size_t errlen)
{
    sdb_buf k;
    sdb_buf_init(&k);
    sdb_key_meta(&k, tenant, project, 'g', sbx_slice_n("", 0));
    char *v = NULL;
    size_t vn = 0;
    int rc = t ? sdb_txn_get(t, SDB_CF_META, &k, &v, &vn, err, errlen)
               : sdb_get(db, SDB_CF_META, &k, &v, &vn, err, errlen);
    sdb_buf_free(&k);
    *gen = 0;
    if (rc == SBX_NOT_FOUND)
        return SBX_OK;
    if (rc == SBX_OK && vn == 8)
        *gen = sdb_be64(v);
    else if (rc == SBX_OK)
        rc = sdb_err(err, errlen, SBX_DATA_LOSS, "cache generation of project is corrupted");
    free(v);
    return rc;
}

static void entry_encode(sdb_buf *b, int64_t created, int64_t expires, uint64_t seq, sbx_slice data)
{
    sdb_buf_u8(b, SDB_VALUE_V1);
    sdb_buf_be64(b, (uint64_t)created);
    sdb_buf_be64(b, (uint64_t)expires);
    sdb_buf_be64(b, seq);
    sdb_buf_raw(b, data.p, data.n);
}

static void count_key(sdb_buf *k, sbx_slice tenant, sbx_slice project)
{
    sdb_key_meta(k, tenant, project, 'n', sbx_slice_n("", 0));
}

static int fill(sdb_txn *t, sbx_slice tenant, sbx_slice project, sbx_slice cmd, sbx_slice data,
                int64_t expires, uint64_t seq, char *err, size_t errlen)
{
    sbx_storedb *db = sdb_txn_db(t);
    uint64_t gen;
    int rc = read_gen(db, t, tenant, project, &gen, err, errlen);
    if (rc)
        return rc;
    sdb_buf k, b;
    sdb_buf_init(&k);
    sdb_buf_init(&b);
    sdb_key_cache(&k, tenant, project, gen, cmd);
    char *old = NULL;
    size_t on = 0;
    rc = sdb_txn_get(t, SDB_CF_CACHE, &k, &old, &on, err, errlen);
    free(old);
    if (rc == SBX_OK || rc == SBX_NOT_FOUND) {
        bool is_new = rc == SBX_NOT_FOUND;
        entry_encode(&b, sdb_now(db), expires, seq, data);
        sdb_txn_put(t, SDB_CF_CACHE, &k, b.p, b.n);
        rc = SBX_OK;
        if (is_new) {
            count_key(&k, tenant, project);
            rc = sdb_txn_add_u64(t, SDB_CF_META, &k, 1, NULL, err, errlen);
        }
    }
    sdb_buf_free(&k);
    sdb_buf_free(&b);
    return rc;
}

void sbx_cache_entry_clear(sbx_cache_entry *e)
{
    if (!e)
        return;
    free(e->data);
    memset(e, 0, sizeof *e);
}

int sbx_cache_get(sbx_storedb *db, sbx_slice tenant, sbx_slice project, sbx_slice command_key,
                  sbx_cache_entry *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    int rc = check_key(tenant, project, command_key, false, err, errlen);
    if (rc)
        return rc;
    uint64_t gen;
    if ((rc = read_gen(db, NULL, tenant, project, &gen, err, errlen)))
        return rc;
    sdb_buf k;
    sdb_buf_init(&k);
    sdb_key_cache(&k, tenant, project, gen, command_key);
    char *v = NULL;
    size_t vn = 0;
    rc = sdb_get(db, SDB_CF_CACHE, &k, &v, &vn, err, errlen);
    sdb_buf_free(&k);
    if (rc == SBX_NOT_FOUND) {
        SDB_STAT_ADD(db, cache_misses, 1);
        return SBX_OK;
    }
    if (rc)
        return rc;
    sdb_rd d = sdb_rd_init(v, vn);
    uint8_t ver = sdb_rd_u8(&d);
    out->created_ms = (int64_t)sdb_rd_be64(&d);
    out->expires_ms = (int64_t)sdb_rd_be64(&d);
    out->seq = sdb_rd_be64(&d);
    if (d.bad || ver != SDB_VALUE_V1) {
        free(v);
        memset(out, 0, sizeof *out);
        return sdb_err(err, errlen, SBX_DATA_LOSS, "cache entry is corrupted");
    }
    if (out->expires_ms <= sdb_now(db)) {
        out->expired = true;
        SDB_STAT_ADD(db, cache_misses, 1);
        SDB_STAT_ADD(db, cache_expired, 1);
        free(v);
        return SBX_OK;
    }
    /* hand out the payload: move it to the front of RocksDB's malloc'd buffer */
    out->len = d.n;
    memmove(v, d.p, d.n);
    out->data = v;
    out->found = true;
    SDB_STAT_ADD(db, cache_hits, 1);
    return SBX_OK;
}

typedef struct {
    sbx_slice tenant, project, cmd, data;
    int64_t expires;
} put_arg;

static int put_apply(sdb_txn *t, void *arg, char *err, size_t errlen)
{
    put_arg *x = arg;
    int rc = sdb_ensure_project(t, x->tenant, x->project, sdb_now(sdb_txn_db(t)), err, errlen);
    if (rc)
        return rc;
    return fill(t, x->tenant, x->project, x->cmd, x->data, x->expires, 0, err, errlen);
}

int sbx_cache_put(sbx_storedb *db, sbx_slice tenant, sbx_slice project, sbx_slice command_key,
                  sbx_slice data, int64_t ttl_s, int64_t *expires_ms, char *err, size_t errlen)
{
    int64_t ttl = 0;
    int rc;
    if ((rc = check_key(tenant, project, command_key, false, err, errlen)) ||
        (rc = sdb_check_size("result", data.n, db->o.max_cache_bytes, err, errlen)) ||
        (rc = check_ttl(db, ttl_s, &ttl, err, errlen)))
        return rc;
    put_arg x = {tenant, project, command_key, data, sdb_now(db) + ttl * 1000};
    rc = sdb_commit(db, put_apply, &x, sdb_hash(tenant, project), false, err, errlen);
    if (rc == SBX_OK) {
        SDB_STAT_ADD(db, cache_puts, 1);
        if (expires_ms)
            *expires_ms = x.expires;
    }
    return rc;
}

typedef struct {
    sbx_slice tenant, project, cmd;
    uint64_t *cleared;
} clear_arg;

static int clear_one_apply(sdb_txn *t, void *arg, char *err, size_t errlen)
{
    clear_arg *x = arg;
    sbx_storedb *db = sdb_txn_db(t);
    uint64_t gen;
    int rc = read_gen(db, t, x->tenant, x->project, &gen, err, errlen);
    if (rc)
        return rc;
    sdb_buf k;
    sdb_buf_init(&k);
    sdb_key_cache(&k, x->tenant, x->project, gen, x->cmd);
    char *v = NULL;
    size_t vn = 0;
    rc = sdb_txn_get(t, SDB_CF_CACHE, &k, &v, &vn, err, errlen);
    if (rc == SBX_OK) {
        *x->cleared = 1; /* expired ones included */
        sdb_txn_del(t, SDB_CF_CACHE, &k);
        count_key(&k, x->tenant, x->project);
        rc = sdb_txn_add_u64(t, SDB_CF_META, &k, -1, NULL, err, errlen);
    } else if (rc == SBX_NOT_FOUND) {
        rc = SBX_OK;
    }
    free(v);
    sdb_buf_free(&k);
    return rc;
}

static int clear_project_apply(sdb_txn *t, void *arg, char *err, size_t errlen)
{
    clear_arg *x = arg;
    sbx_storedb *db = sdb_txn_db(t);
    uint64_t gen;
    int rc = read_gen(db, t, x->tenant, x->project, &gen, err, errlen);
    if (rc)
        return rc;
    sdb_buf k, lo, hi;
    sdb_buf_init(&k);
    sdb_buf_init(&lo);
    sdb_buf_init(&hi);
    sdb_key_meta(&k, x->tenant, x->project, 'g', sbx_slice_n("", 0));
    char g[8];
    for (int i = 0; i < 8; i++)
        g[i] = (char)((gen + 1) >> (56 - 8 * i));
    sdb_txn_put(t, SDB_CF_META, &k, g, 8);
    sdb_key_cache(&lo, x->tenant, x->project, 0, sbx_slice_n("", 0));
    sdb_key_cache(&hi, x->tenant, x->project, gen + 1, sbx_slice_n("", 0));
    sdb_txn_del_range(t, SDB_CF_CACHE, &lo, &hi);
    count_key(&k, x->tenant, x->project);
    rc = sdb_txn_get_u64(t, SDB_CF_META, &k, x->cleared, err, errlen);
    if (rc == SBX_OK)
        sdb_txn_put_u64(t, SDB_CF_META, &k, 0);
    sdb_buf_free(&k);
    sdb_buf_free(&lo);
    sdb_buf_free(&hi);
    return rc;
}

int sbx_cache_clear(sbx_storedb *db, sbx_slice tenant, sbx_slice project, sbx_slice command_key,
                    uint64_t *cleared, char *err, size_t errlen)
{
    uint64_t tmp;
    if (!cleared)
        cleared = &tmp;
    *cleared = 0;
    int rc = check_key(tenant, project, command_key, true, err, errlen);
    if (rc)
        return rc;
    clear_arg x = {tenant, project, command_key, cleared};
    bool whole = command_key.n == 0;
    rc = sdb_commit(db, whole ? clear_project_apply : clear_one_apply, &x,
                    sdb_hash(tenant, project), whole, err, errlen);
    if (rc)
        *cleared = 0;
    return rc;
}

typedef struct {
    sbx_slice tenant;
    const sbx_record_exec *r;
    sbx_hist_result *res;
    int64_t expires;
} record_arg;

static int record_apply(sdb_txn *t, void *arg, char *err, size_t errlen)
{
    record_arg *x = arg;
    int rc = sdb_hist_apply_append(t, x->tenant, &x->r->hist, x->res, err, errlen);
    if (rc || x->res->duplicate || x->r->command_key.n == 0)
        return rc;
    return fill(t, x->tenant, x->r->hist.project, x->r->command_key, x->r->cache_data, x->expires,
                x->res->seq, err, errlen);
}

int sbx_record_execution(sbx_storedb *db, sbx_slice tenant, const sbx_record_exec *r,
                         sbx_hist_result *res, int64_t *expires_ms, char *err, size_t errlen)
{
    sbx_hist_result tmp;
    if (!res)
        res = &tmp;
    memset(res, 0, sizeof *res);
    if (expires_ms)
        *expires_ms = 0;
    int rc = sdb_hist_check_append(db, tenant, &r->hist, err, errlen);
    if (rc)
        return rc;
    int64_t ttl = 0;
    if (r->command_key.n &&
        ((rc = check_key(tenant, r->hist.project, r->command_key, false, err, errlen)) ||
         (rc = sdb_check_size("result", r->cache_data.n, db->o.max_cache_bytes, err, errlen)) ||
         (rc = check_ttl(db, r->ttl_s, &ttl, err, errlen))))
        return rc;
    record_arg x = {tenant, r, res, sdb_now(db) + ttl * 1000};
    rc = sdb_commit(db, record_apply, &x, sdb_hash(tenant, r->hist.project), false, err, errlen);
    if (rc == SBX_OK) {
        if (res->duplicate) {
            SDB_STAT_ADD(db, history_duplicates, 1);
        } else {
            SDB_STAT_ADD(db, history_appends, 1);
            if (r->command_key.n) {
                SDB_STAT_ADD(db, cache_puts, 1);
                if (expires_ms)
                    *expires_ms = x.expires;
            }
        }
    }
    return rc;
}
