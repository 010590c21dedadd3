/* retention.c: what the store purges in the background. A sweeper thread wakes every
 * sweep_interval_ms and (1) enforces each project's history retention (max records, max age;
 * the project's own or the store default), deleting the oldest records and their record-id
 * entries; (2) deletes expired cache and kv entries, examining at most sweep_batch keys per
 * column family per tick and resuming where it stopped. Deletes go through commit.c and
 * re-check under the commit that the entry is still expired (or the project still the same
 * incarnation), so a concurrent write is never lost, and they keep the per-project cache-entry,
 * per-tenant kv-key and per-project retained-record counters exact. Optionally
 * (opts.compaction_filter) a compaction filter on the cache and kv column families also drops
 * expired entries whenever RocksDB compacts them (those are then not subtracted from the
 * counters).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "storedb_int.h"

#define CHUNK 2000 /* keys deleted per commit */

/* ---- compaction filter ---- */

typedef struct {
    sdb *db;
    int cf;
} filter_state;

static unsigned char expiry_filter(void *st, int level, const char *key, size_t klen, const char *v,
                                   size_t vn, char **nv, size_t *nvn, unsigned char *changed)
{
    (void)level;
    (void)key;
    (void)klen;
    (void)nv;
    (void)nvn;
    filter_state *fs = st;
    *changed = 0;
    /* cache: ver, created, expires...; kv: ver, version, expires...: expiry at offset 9 */
    if (vn < 17 || v[0] != SDB__VALUE_V1)
        return 0;
    int64_t exp = (int64_t)sdb__be64(v + 9);
    return exp != 0 && exp <= sdb__now(fs->db);
}

static const char *filter_name(void *st)
{
    filter_state *fs = st;
    return fs->cf == SDB__CF_CACHE ? "sbx-expiry-cache" : "sbx-expiry-kv";
}

rocksdb_compactionfilter_t *sdb__expiry_filter(sdb *db, int cf)
{
    filter_state *fs = malloc(sizeof *fs);
    if (!fs)
        abort();
    fs->db = db;
    fs->cf = cf;
    return rocksdb_compactionfilter_create(fs, free, expiry_filter, filter_name);
}

/* ---- packed key lists: be32 len + key, repeated ---- */

static void list_add(sdb__buf *l, const char *k, size_t n)
{
    sdb__buf_be32(l, (uint32_t)n);
    sdb__buf_raw(l, k, n);
}

static bool list_next(sdb__rd *r, sdb__buf *k)
{
    if (r->n == 0)
        return false;
    uint32_t n = sdb__rd_be32(r);
    sdb_slice s = sdb__rd_bytes(r, n);
    if (r->bad)
        return false;
    sdb__buf_reset(k);
    sdb__buf_raw(k, s.p, s.n);
    return true;
}

/* ---- expired cache / kv entries ---- */

typedef struct {
    int cf;
    sdb__buf *keys; /* all of one tenant (kv) or one project (cache) */
    uint64_t removed;
} expired_arg;

/* The counter an expired entry is subtracted from and the lock stripe of its owner. */
static bool owner_of(int cf, const char *k, size_t kn, sdb__buf *count_key, uint64_t *hash)
{
    sdb_slice tenant, project, rest;
    if (cf == SDB__CF_KV) {
        if (!sdb__key_split(k, kn, &tenant, &rest))
            return false;
        project = sdb_slice_n("", 0);
    } else if (!sdb__key_split_scope(k, kn, &tenant, &project, &rest)) {
        return false;
    }
    if (count_key)
        sdb__key_meta(count_key, tenant, project, 'n', sdb_slice_n("", 0));
    if (hash)
        *hash = sdb__hash(tenant, project);
    return true;
}

static int expired_apply(sdb__txn *t, void *arg, char *err, size_t errlen)
{
    expired_arg *x = arg;
    sdb *db = sdb__txn_db(t);
    int64_t now = sdb__now(db);
    sdb__rd r = sdb__rd_init(x->keys->p, x->keys->n);
    sdb__buf k;
    sdb__buf_init(&k);
    int rc = SBX_OK;
    x->removed = 0;
    while (list_next(&r, &k)) {
        char *v = NULL;
        size_t vn = 0;
        rc = sdb__txn_get(t, x->cf, &k, &v, &vn, err, errlen);
        if (rc == SBX_NOT_FOUND) {
            rc = SBX_OK;
            continue;
        }
        if (rc)
            break;
        int64_t exp = vn >= 17 ? (int64_t)sdb__be64(v + 9) : 0;
        free(v);
        if (exp != 0 && exp <= now) { /* still expired: no write refreshed it meanwhile */
            sdb__buf ck;
            sdb__buf_init(&ck);
            sdb__txn_del(t, x->cf, &k);
            x->removed++;
            if (owner_of(x->cf, k.p, k.n, &ck, NULL))
                rc = sdb__txn_add_u64(t, SDB__CF_META, &ck, -1, NULL, err, errlen);
            sdb__buf_free(&ck);
            if (rc)
                break;
        }
    }
    sdb__buf_free(&k);
    return rc;
}

static uint64_t commit_expired(sdb *db, int cf, sdb__buf *keys, uint64_t hash)
{
    if (!keys->n)
        return 0;
    expired_arg x = {cf, keys, 0};
    char err[256];
    int rc = sdb__commit(db, expired_apply, &x, hash, false, err, sizeof err);
    sdb__buf_reset(keys);
    if (rc) {
        SBX_LOG_WARN("store", "sweep of expired entries failed err=\"%s\"", err);
        return 0;
    }
    return x.removed;
}

static uint64_t sweep_expired(sdb *db, int cf)
{
    int64_t now = sdb__now(db);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->rdb, db->ro, db->cf[cf]);
    if (db->sweep_cursor[cf]) {
        rocksdb_iter_seek(it, db->sweep_cursor[cf], db->sweep_cursor_len[cf]);
    } else {
        rocksdb_iter_seek_to_first(it);
    }
    sdb__buf keys;
    sdb__buf_init(&keys);
    uint64_t removed = 0, hash = 0;
    int budget = db->o.sweep_batch > 0 ? db->o.sweep_batch : 20000, n = 0, found = 0;
    for (; rocksdb_iter_valid(it) && n < budget; rocksdb_iter_next(it), n++) {
        size_t kn, vn;
        const char *k = rocksdb_iter_key(it, &kn);
        const char *v = rocksdb_iter_value(it, &vn);
        if (vn < 17 || v[0] != SDB__VALUE_V1)
            continue;
        int64_t exp = (int64_t)sdb__be64(v + 9);
        uint64_t h;
        if (exp != 0 && exp <= now && owner_of(cf, k, kn, NULL, &h)) {
            /* one commit per owner and chunk: the DIRECT mode locks by owner */
            if (found && (h != hash || found == CHUNK)) {
                removed += commit_expired(db, cf, &keys, hash);
                found = 0;
            }
            hash = h;
            list_add(&keys, k, kn);
            found++;
        }
    }
    free(db->sweep_cursor[cf]);
    db->sweep_cursor[cf] = NULL;
    db->sweep_cursor_len[cf] = 0;
    if (rocksdb_iter_valid(it)) { /* budget used up: resume here next tick */
        size_t kn;
        const char *k = rocksdb_iter_key(it, &kn);
        db->sweep_cursor[cf] = malloc(kn ? kn : 1);
        if (db->sweep_cursor[cf]) {
            memcpy(db->sweep_cursor[cf], k, kn);
            db->sweep_cursor_len[cf] = kn;
        }
    }
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    if (rerr) {
        SBX_LOG_WARN("store", "sweep iteration failed err=\"%s\"", rerr);
        free(rerr);
    }
    rocksdb_iter_destroy(it);
    removed += commit_expired(db, cf, &keys, hash);
    sdb__buf_free(&keys);
    return removed;
}

/* ---- history retention ---- */

typedef struct {
    sdb_slice tenant, project;
    int64_t created_ms;
    sdb__buf *keys; /* history keys and record-id keys, both packed; cf by prefix byte */
    uint64_t removed;
} retention_arg;

static int retention_apply(sdb__txn *t, void *arg, char *err, size_t errlen)
{
    retention_arg *x = arg;
    sdb__buf k;
    sdb__buf_init(&k);
    sdb__key_project(&k, x->tenant, x->project);
    char *v = NULL;
    size_t vn = 0;
    x->removed = 0;
    int rc = sdb__txn_get(t, SDB__CF_PROJECTS, &k, &v, &vn, err, errlen);
    if (rc == SBX_NOT_FOUND) { /* deleted meanwhile */
        sdb__buf_free(&k);
        return SBX_OK;
    }
    if (rc) {
        sdb__buf_free(&k);
        return rc;
    }
    sdb__projrec r;
    bool same = sdb__projrec_decode(v, vn, &r) && r.created_ms == x->created_ms;
    free(r.fields);
    free(v);
    if (same) { /* not deleted and re-created since the scan */
        sdb__rd rd = sdb__rd_init(x->keys->p, x->keys->n);
        while (rc == SBX_OK && list_next(&rd, &k)) {
            /* packed entries carry a leading cf byte */
            int cf = (unsigned char)k.p[0];
            sdb__buf kk;
            sdb__buf_init(&kk);
            sdb__buf_raw(&kk, k.p + 1, k.n - 1);
            if (cf == SDB__CF_HISTORY) {
                /* count only records still there (the append may have dropped one too) */
                char *hv = NULL;
                size_t hn = 0;
                rc = sdb__txn_get(t, cf, &kk, &hv, &hn, err, errlen);
                free(hv);
                if (rc == SBX_OK)
                    x->removed++;
                if (rc == SBX_NOT_FOUND)
                    rc = SBX_OK;
            }
            sdb__txn_del(t, cf, &kk);
            sdb__buf_free(&kk);
        }
        if (rc == SBX_OK && x->removed) {
            /* the counter's execution_count is the number of records retained */
            char *cv = NULL;
            size_t cn = 0;
            sdb__counter c;
            sdb__key_meta(&k, x->tenant, x->project, 'c', sdb_slice_n("", 0));
            rc = sdb__txn_get(t, SDB__CF_META, &k, &cv, &cn, err, errlen);
            if (rc == SBX_OK && sdb__counter_decode(cv, cn, &c)) {
                sdb__buf b;
                sdb__buf_init(&b);
                c.exec_count = c.exec_count > x->removed ? c.exec_count - x->removed : 0;
                sdb__counter_encode(&b, &c);
                sdb__txn_put(t, SDB__CF_META, &k, b.p, b.n);
                sdb__buf_free(&b);
            } else if (rc == SBX_NOT_FOUND) {
                rc = SBX_OK;
            }
            free(cv);
        }
    }
    sdb__buf_free(&k);
    return rc;
}

static uint64_t commit_retention(sdb *db, retention_arg *x)
{
    if (!x->keys->n)
        return 0;
    char err[256];
    int rc = sdb__commit(db, retention_apply, x, sdb__hash(x->tenant, x->project), false, err,
                         sizeof err);
    sdb__buf_reset(x->keys);
    if (rc) {
        SBX_LOG_WARN("store", "history retention failed err=\"%s\"", err);
        return 0;
    }
    return x->removed;
}

static void add_packed(sdb__buf *l, int cf, const sdb__buf *key)
{
    sdb__buf_be32(l, (uint32_t)key->n + 1);
    sdb__buf_u8(l, (uint8_t)cf);
    sdb__buf_raw(l, key->p, key->n);
}

static uint64_t retain_project(sdb *db, sdb_slice tenant, sdb_slice project, const sdb__projrec *pr,
                               int64_t now)
{
    uint64_t max_records = pr->ret_max_records ? pr->ret_max_records : db->o.history_max_records;
    int64_t max_age = pr->ret_max_age_s ? pr->ret_max_age_s : db->o.history_max_age_s;
    if (!max_records && !max_age)
        return 0;
    uint64_t last = 0;
    if (sdb_hist_last_seq(db, tenant, project, &last, NULL, 0) != SBX_OK)
        return 0;
    uint64_t cut = max_records && last > max_records ? last - max_records : 0;
    int64_t threshold = max_age ? now - max_age * 1000 : INT64_MIN;

    sdb__buf lo, hi, keys, rk;
    sdb__buf_init(&lo);
    sdb__buf_init(&hi);
    sdb__buf_init(&keys);
    sdb__buf_init(&rk);
    sdb__key_scope(&lo, tenant, project);
    sdb__buf_copy(&hi, &lo);
    sdb__buf_successor(&hi);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_lower_bound(ro, lo.p, lo.n);
    rocksdb_readoptions_set_iterate_upper_bound(ro, hi.p, hi.n);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->rdb, ro, db->cf[SDB__CF_HISTORY]);
    retention_arg x = {tenant, project, pr->created_ms, &keys, 0};
    uint64_t removed = 0;
    int n = 0;
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kn, vn;
        const char *k = rocksdb_iter_key(it, &kn);
        const char *v = rocksdb_iter_value(it, &vn);
        if (kn != lo.n + 8)
            continue;
        uint64_t seq = sdb__be64(k + lo.n);
        sdb_hist_rec rec;
        if (!sdb__rec_decode_value(v, vn, &rec))
            break;
        /* oldest first; stop at the first record to keep (a record older than max_age that
         * was appended after a younger one waits until the younger one goes) */
        if (seq > cut && rec.time_ms >= threshold)
            break;
        sdb_slice rid = rec.record_id;
        sdb__buf kb;
        sdb__buf_init(&kb);
        sdb__buf_raw(&kb, k, kn);
        add_packed(&keys, SDB__CF_HISTORY, &kb);
        sdb__buf_free(&kb);
        if (rid.n) {
            sdb__key_meta(&rk, tenant, project, 'i', rid);
            add_packed(&keys, SDB__CF_META, &rk);
        }
        if (++n == CHUNK) {
            removed += commit_retention(db, &x);
            n = 0;
        }
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    removed += commit_retention(db, &x);
    sdb__buf_free(&lo);
    sdb__buf_free(&hi);
    sdb__buf_free(&keys);
    sdb__buf_free(&rk);
    return removed;
}

static uint64_t sweep_retention(sdb *db)
{
    int64_t now = sdb__now(db);
    uint64_t removed = 0;
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->rdb, db->ro, db->cf[SDB__CF_PROJECTS]);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        if (atomic_load(&db->closing))
            break;
        size_t kn, vn;
        const char *k = rocksdb_iter_key(it, &kn);
        const char *v = rocksdb_iter_value(it, &vn);
        sdb_slice tenant, project;
        sdb__projrec pr;
        if (!sdb__key_split(k, kn, &tenant, &project) || !sdb__projrec_decode(v, vn, &pr))
            continue;
        free(pr.fields);
        pr.fields = NULL;
        removed += retain_project(db, tenant, project, &pr, now);
    }
    rocksdb_iter_destroy(it);
    return removed;
}

uint64_t sdb_sweep(sdb *db)
{
    pthread_mutex_lock(&db->sweep_mu);
    uint64_t h = sweep_retention(db);
    uint64_t e = sweep_expired(db, SDB__CF_CACHE) + sweep_expired(db, SDB__CF_KV);
    pthread_mutex_unlock(&db->sweep_mu);
    SDB__STAT_ADD(db, swept_history, h);
    SDB__STAT_ADD(db, swept_expired, e);
    if (h || e)
        SBX_LOG_DEBUG("store", "swept history=%llu expired=%llu", (unsigned long long)h,
                      (unsigned long long)e);
    return h + e;
}

/* ---- the thread ---- */

static void *sweeper_main(void *arg)
{
    sdb *db = arg;
    pthread_mutex_lock(&db->sw_mu);
    while (!db->sw_stop) {
        struct timespec dl;
        clock_gettime(CLOCK_MONOTONIC, &dl);
        dl.tv_sec += db->o.sweep_interval_ms / 1000;
        dl.tv_nsec += (long)(db->o.sweep_interval_ms % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        int e = 0;
        while (!db->sw_stop && e != ETIMEDOUT)
            e = pthread_cond_timedwait(&db->sw_cv, &db->sw_mu, &dl);
        if (db->sw_stop)
            break;
        pthread_mutex_unlock(&db->sw_mu);
        sdb_sweep(db);
        pthread_mutex_lock(&db->sw_mu);
    }
    pthread_mutex_unlock(&db->sw_mu);
    return NULL;
}

int sdb__sweeper_start(sdb *db)
{
    if (db->o.sweep_interval_ms <= 0)
        return SBX_OK;
    int e = pthread_create(&db->sweeper, NULL, sweeper_main, db);
    if (e)
        return sbx_status_from_errno(e);
    db->sweeper_started = true;
    return SBX_OK;
}

void sdb__sweeper_stop(sdb *db)
{
    if (!db->sweeper_started)
        return;
    pthread_mutex_lock(&db->sw_mu);
    db->sw_stop = true;
    pthread_cond_signal(&db->sw_cv);
    pthread_mutex_unlock(&db->sw_mu);
    pthread_join(db->sweeper, NULL);
    db->sweeper_started = false;
}
