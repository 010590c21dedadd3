/* cache.c: the result cache. An entry lives under (tenant, project, generation, command key)
 * and stores its expiry in the value (codec.c); every read checks it (expired = miss, reported
 * as expired), the sweeper and the compaction filter purge expired entries. Clearing a whole
 * project is O(1): the project's generation (meta 'g') is bumped, so every older entry becomes
 * unreachable, and the older generations are range-deleted in the same write (one tombstone;
 * compaction reclaims the space in the background). A per-project entry counter (meta 'n',
 * maintained by put, clear and the sweeper) makes the number a clear reports exact without a
 * scan. record.c fills the cache in RecordExecution's write through sdb__cache_fill. Calls
 * projects.c (implicit creation), commit.c, read.c, codec.c and keys.c.
 */
#include <stdlib.h>
#include <string.h>

#include "storedb_int.h"

static int check_ttl(sdb *db, int64_t ttl_s, int64_t *eff, char *err, size_t errlen)
{
    if (ttl_s < 0 || ttl_s > db->o.cache_max_ttl_s)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                        "ttl_s: %lld must be 0 (default %lld) or 1..%lld", (long long)ttl_s,
                        (long long)db->o.cache_default_ttl_s, (long long)db->o.cache_max_ttl_s);
    *eff = ttl_s ? ttl_s : db->o.cache_default_ttl_s;
    return SBX_OK;
}

static int check_key(sdb_slice tenant, sdb_slice project, sdb_slice cmd, bool allow_empty,
                     char *err, size_t errlen)
{
    int rc;
    if ((rc = sdb__check_tenant(tenant, err, errlen)) ||
        (rc = sdb__check_project(project, err, errlen)) ||
        (rc = sdb__check_bytes("command_key", cmd, SDB_COMMAND_KEY_MAX, allow_empty, err, errlen)))
        return rc;
    return SBX_OK;
}

int sdb__cache_check_put(sdb *db, sdb_slice tenant, sdb_slice project, sdb_slice cmd,
                         sdb_slice data, int64_t ttl_s, int64_t *eff_ttl_s, char *err,
                         size_t errlen)
{
    int rc;
    if ((rc = check_key(tenant, project, cmd, false, err, errlen)) ||
        (rc = sdb__check_size("result", data.n, db->o.max_cache_bytes, err, errlen)) ||
        (rc = check_ttl(db, ttl_s, eff_ttl_s, err, errlen)))
        return rc;
    return SBX_OK;
}

/* Generation through the txn (t != NULL) or the committed state. */
static int read_gen(sdb *db, sdb__txn *t, sdb_slice tenant, sdb_slice project, uint64_t *gen,
                    char *err, size_t errlen)
{
    sdb__buf k;
    sdb__buf_init(&k);
    sdb__key_meta(&k, tenant, project, 'g', sdb_slice_n("", 0));
    char *v = NULL;
    size_t vn = 0;
    int rc = t ? sdb__txn_get(t, SDB__CF_META, &k, &v, &vn, err, errlen)
               : sdb__get(db, SDB__CF_META, &k, &v, &vn, err, errlen);
    sdb__buf_free(&k);
    *gen = 0;
    if (rc == SBX_NOT_FOUND)
        return SBX_OK;
    if (rc == SBX_OK && vn == 8)
        *gen = sdb__be64(v);
    else if (rc == SBX_OK)
        rc = sdb__err(err, errlen, SBX_DATA_LOSS, "cache generation of project is corrupted");
    free(v);
    return rc;
}

static void count_key(sdb__buf *k, sdb_slice tenant, sdb_slice project)
{
    sdb__key_meta(k, tenant, project, 'n', sdb_slice_n("", 0));
}

int sdb__cache_fill(sdb__txn *t, sdb_slice tenant, sdb_slice project, sdb_slice cmd, sdb_slice data,
                    int64_t expires, uint64_t seq, char *err, size_t errlen)
{
    sdb *db = sdb__txn_db(t);
    uint64_t gen;
    int rc = read_gen(db, t, tenant, project, &gen, err, errlen);
    if (rc)
        return rc;
    sdb__buf k, b;
    sdb__buf_init(&k);
    sdb__buf_init(&b);
    sdb__key_cache(&k, tenant, project, gen, cmd);
    rc = sdb__txn_exists(t, SDB__CF_CACHE, &k, err, errlen);
    if (rc == SBX_OK || rc == SBX_NOT_FOUND) {
        bool is_new = rc == SBX_NOT_FOUND;
        sdb__cache_val c = {sdb__now(db), expires, seq, data};
        sdb__cache_val_encode(&b, &c);
        sdb__txn_put(t, SDB__CF_CACHE, &k, b.p, b.n);
        rc = SBX_OK;
        if (is_new) {
            count_key(&k, tenant, project);
            rc = sdb__txn_add_u64(t, SDB__CF_META, &k, 1, NULL, err, errlen);
        }
    }
    sdb__buf_free(&k);
    sdb__buf_free(&b);
    return rc;
}

void sdb_cache_entry_clear(sdb_cache_entry *e)
{
    if (!e)
        return;
    free(e->data);
    memset(e, 0, sizeof *e);
}

int sdb_cache_get(sdb *db, sdb_slice tenant, sdb_slice project, sdb_slice command_key,
                  sdb_cache_entry *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    int rc = check_key(tenant, project, command_key, false, err, errlen);
    if (rc)
        return rc;
    uint64_t gen;
    if ((rc = read_gen(db, NULL, tenant, project, &gen, err, errlen)))
        return rc;
    sdb__buf k;
    sdb__buf_init(&k);
    sdb__key_cache(&k, tenant, project, gen, command_key);
    char *v = NULL;
    size_t vn = 0;
    rc = sdb__get(db, SDB__CF_CACHE, &k, &v, &vn, err, errlen);
    sdb__buf_free(&k);
    if (rc == SBX_NOT_FOUND) {
        SDB__STAT_ADD(db, cache_misses, 1);
        return SBX_OK;
    }
    if (rc)
        return rc;
    sdb__cache_val c;
    if (!sdb__cache_val_decode(v, vn, &c)) {
        free(v);
        return sdb__err(err, errlen, SBX_DATA_LOSS, "cache entry is corrupted");
    }
    out->created_ms = c.created_ms;
    out->expires_ms = c.expires_ms;
    out->seq = c.seq;
    if (out->expires_ms <= sdb__now(db)) {
        out->expired = true;
        SDB__STAT_ADD(db, cache_misses, 1);
        SDB__STAT_ADD(db, cache_expired, 1);
        free(v);
        return SBX_OK;
    }
    /* hand out the payload: move it to the front of RocksDB's malloc'd buffer */
    out->len = c.data.n;
    memmove(v, c.data.p, c.data.n);
    out->data = v;
    out->found = true;
    SDB__STAT_ADD(db, cache_hits, 1);
    return SBX_OK;
}

typedef struct {
    sdb_slice tenant, project, cmd, data;
    int64_t expires;
} put_arg;

static int put_apply(sdb__txn *t, void *arg, char *err, size_t errlen)
{
    put_arg *x = arg;
    int rc =
        sdb__project_ensure(t, x->tenant, x->project, sdb__now(sdb__txn_db(t)), NULL, err, errlen);
    if (rc)
        return rc;
    return sdb__cache_fill(t, x->tenant, x->project, x->cmd, x->data, x->expires, 0, err, errlen);
}

int sdb_cache_put(sdb *db, sdb_slice tenant, sdb_slice project, sdb_slice command_key,
                  sdb_slice data, int64_t ttl_s, int64_t *expires_ms, char *err, size_t errlen)
{
    int64_t ttl = 0;
    int rc = sdb__cache_check_put(db, tenant, project, command_key, data, ttl_s, &ttl, err, errlen);
    if (rc)
        return rc;
    put_arg x = {tenant, project, command_key, data, sdb__now(db) + ttl * 1000};
    rc = sdb__commit(db, put_apply, &x, sdb__hash(tenant, project), false, err, errlen);
    if (rc == SBX_OK) {
        SDB__STAT_ADD(db, cache_puts, 1);
        if (expires_ms)
            *expires_ms = x.expires;
    }
    return rc;
}

typedef struct {
    sdb_slice tenant, project, cmd;
    uint64_t *cleared;
} clear_arg;

static int clear_one_apply(sdb__txn *t, void *arg, char *err, size_t errlen)
{
    clear_arg *x = arg;
    sdb *db = sdb__txn_db(t);
    uint64_t gen;
    int rc = read_gen(db, t, x->tenant, x->project, &gen, err, errlen);
    if (rc)
        return rc;
    sdb__buf k;
    sdb__buf_init(&k);
    sdb__key_cache(&k, x->tenant, x->project, gen, x->cmd);
    char *v = NULL;
    size_t vn = 0;
    rc = sdb__txn_get(t, SDB__CF_CACHE, &k, &v, &vn, err, errlen);
    if (rc == SBX_OK) {
        *x->cleared = 1; /* expired ones included */
        sdb__txn_del(t, SDB__CF_CACHE, &k);
        count_key(&k, x->tenant, x->project);
        rc = sdb__txn_add_u64(t, SDB__CF_META, &k, -1, NULL, err, errlen);
    } else if (rc == SBX_NOT_FOUND) {
        rc = SBX_OK;
    }
    free(v);
    sdb__buf_free(&k);
    return rc;
}

static int clear_project_apply(sdb__txn *t, void *arg, char *err, size_t errlen)
{
    clear_arg *x = arg;
    sdb *db = sdb__txn_db(t);
    uint64_t gen;
    int rc = read_gen(db, t, x->tenant, x->project, &gen, err, errlen);
    if (rc)
        return rc;
    sdb__buf k, lo, hi;
    sdb__buf_init(&k);
    sdb__buf_init(&lo);
    sdb__buf_init(&hi);
    sdb__key_meta(&k, x->tenant, x->project, 'g', sdb_slice_n("", 0));
    char g[8];
    sdb__be64_put(g, gen + 1);
    sdb__txn_put(t, SDB__CF_META, &k, g, 8);
    sdb__key_cache(&lo, x->tenant, x->project, 0, sdb_slice_n("", 0));
    sdb__key_cache(&hi, x->tenant, x->project, gen + 1, sdb_slice_n("", 0));
    sdb__txn_del_range(t, SDB__CF_CACHE, &lo, &hi);
    count_key(&k, x->tenant, x->project);
    rc = sdb__txn_get_u64(t, SDB__CF_META, &k, x->cleared, err, errlen);
    if (rc == SBX_OK)
        sdb__txn_put_u64(t, SDB__CF_META, &k, 0);
    sdb__buf_free(&k);
    sdb__buf_free(&lo);
    sdb__buf_free(&hi);
    return rc;
}

int sdb_cache_clear(sdb *db, sdb_slice tenant, sdb_slice project, sdb_slice command_key,
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
    rc = sdb__commit(db, whole ? clear_project_apply : clear_one_apply, &x,
                     sdb__hash(tenant, project), whole, err, errlen);
    if (rc)
        *cleared = 0;
    return rc;
}
