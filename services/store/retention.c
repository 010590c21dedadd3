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
 * counters). open.c starts and stops the thread and installs the filter. Calls history.c (the
 * last sequence), commit.c, read.c, codec.c and keys.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
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
    int64_t exp = sdb__entry_expiry(v, vn);
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
        int64_t exp = sdb__entry_expiry(v, vn);
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

/* Where the next tick resumes: the iterator's key, or the start when it reached the end. */
static void save_cursor(sdb *db, int cf, const sdb__iter *it)
{
    free(db->sweep_cursor[cf]);
    db->sweep_cursor[cf] = NULL;
    db->sweep_cursor_len[cf] = 0;
    if (!sdb__iter_valid(it))
        return;
    size_t kn;
    const char *k = sdb__iter_key(it, &kn);
    db->sweep_cursor[cf] = malloc(kn ? kn : 1);
    if (db->sweep_cursor[cf]) {
        memcpy(db->sweep_cursor[cf], k, kn);
        db->sweep_cursor_len[cf] = kn;
    }
}

static uint64_t sweep_expired(sdb *db, int cf)
{
    int64_t now = sdb__now(db);
    sdb__iter it;
    sdb__iter_open(db, &it, cf, NULL);
    if (db->sweep_cursor[cf])
        sdb__iter_seek(&it, db->sweep_cursor[cf], db->sweep_cursor_len[cf]);
    else
        sdb__iter_seek_first(&it);
    sdb__buf keys;
    sdb__buf_init(&keys);
    uint64_t removed = 0, hash = 0;
    int budget = db->o.sweep_batch > 0 ? db->o.sweep_batch : 20000, n = 0, found = 0;
    for (; sdb__iter_valid(&it) && n < budget; sdb__iter_next(&it), n++) {
        size_t kn, vn;
        const char *k = sdb__iter_key(&it, &kn);
        const char *v = sdb__iter_value(&it, &vn);
        int64_t exp = sdb__entry_expiry(v, vn);
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
    save_cursor(db, cf, &it); /* budget used up: resume there next tick */
    char err[256];
    if (sdb__iter_close(&it, err, sizeof err) != SBX_OK)
        SBX_LOG_WARN("store", "sweep iteration failed err=\"%s\"", err);
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

/* Whether the project is still the incarnation the scan saw (not deleted, or deleted and
 * re-created, meanwhile). */
static int same_project(sdb__txn *t, const retention_arg *x, bool *same, char *err, size_t errlen)
{
    sdb__buf k;
    sdb__buf_init(&k);
    sdb__key_project(&k, x->tenant, x->project);
    char *v = NULL;
    size_t vn = 0;
    *same = false;
    int rc = sdb__txn_get(t, SDB__CF_PROJECTS, &k, &v, &vn, err, errlen);
    sdb__buf_free(&k);
    if (rc == SBX_OK) {
        sdb__projrec r;
        *same = sdb__projrec_decode(v, vn, &r) && r.created_ms == x->created_ms;
        free(r.fields);
    } else if (rc == SBX_NOT_FOUND) {
        rc = SBX_OK;
    }
    free(v);
    return rc;
}

/* Deletes the packed keys; x->removed counts the records that were still there (the append
 * may have dropped one too). */
static int drop_keys(sdb__txn *t, retention_arg *x, char *err, size_t errlen)
{
    sdb__rd rd = sdb__rd_init(x->keys->p, x->keys->n);
    sdb__buf k;
    sdb__buf_init(&k);
    int rc = SBX_OK;
    while (rc == SBX_OK && list_next(&rd, &k)) {
        int cf = (unsigned char)k.p[0]; /* packed entries carry a leading cf byte */
        sdb__buf kk;
        sdb__buf_init(&kk);
        sdb__buf_raw(&kk, k.p + 1, k.n - 1);
        if (cf == SDB__CF_HISTORY) {
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
    sdb__buf_free(&k);
    return rc;
}

/* The counter's execution_count is the number of records retained: subtract x->removed. */
static int uncount(sdb__txn *t, const retention_arg *x, char *err, size_t errlen)
{
    sdb__buf k;
    sdb__buf_init(&k);
    sdb__key_meta(&k, x->tenant, x->project, 'c', sdb_slice_n("", 0));
    char *cv = NULL;
    size_t cn = 0;
    sdb__counter c;
    int rc = sdb__txn_get(t, SDB__CF_META, &k, &cv, &cn, err, errlen);
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
    sdb__buf_free(&k);
    return rc;
}

static int retention_apply(sdb__txn *t, void *arg, char *err, size_t errlen)
{
    retention_arg *x = arg;
    bool same;
    x->removed = 0;
    int rc = same_project(t, x, &same, err, errlen);
    if (rc || !same)
        return rc;
    rc = drop_keys(t, x, err, errlen);
    if (rc == SBX_OK && x->removed)
        rc = uncount(t, x, err, errlen);
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

static void add_packed(sdb__buf *l, int cf, const char *k, size_t n)
{
    sdb__buf_be32(l, (uint32_t)n + 1);
    sdb__buf_u8(l, (uint8_t)cf);
    sdb__buf_raw(l, k, n);
}

/* Drops x's project's records oldest first while they are at or below seq cut or older than
 * threshold, up to the first record to keep, committing CHUNK records at a time. */
static uint64_t drop_old(sdb *db, retention_arg *x, uint64_t cut, int64_t threshold)
{
    sdb__buf scope, rk;
    sdb__buf_init(&scope);
    sdb__buf_init(&rk);
    sdb__key_scope(&scope, x->tenant, x->project);
    sdb__iter it;
    sdb__iter_open(db, &it, SDB__CF_HISTORY, &scope);
    uint64_t removed = 0;
    int n = 0;
    for (sdb__iter_seek_first(&it); sdb__iter_valid(&it); sdb__iter_next(&it)) {
        size_t kn, vn;
        const char *k = sdb__iter_key(&it, &kn);
        const char *v = sdb__iter_value(&it, &vn);
        sdb_hist_rec rec;
        if (kn != scope.n + 8)
            continue;
        if (!sdb__rec_decode(k, kn, scope.n, v, vn, &rec))
            break;
        /* a record older than max_age that was appended after a younger one waits until the
         * younger one goes */
        if (rec.seq > cut && rec.time_ms >= threshold)
            break;
        add_packed(x->keys, SDB__CF_HISTORY, k, kn);
        if (rec.record_id.n) {
            sdb__key_meta(&rk, x->tenant, x->project, 'i', rec.record_id);
            add_packed(x->keys, SDB__CF_META, rk.p, rk.n);
        }
        if (++n == CHUNK) {
            removed += commit_retention(db, x);
            n = 0;
        }
    }
    sdb__iter_close(&it, NULL, 0);
    removed += commit_retention(db, x);
    sdb__buf_free(&scope);
    sdb__buf_free(&rk);
    return removed;
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
    sdb__buf keys;
    sdb__buf_init(&keys);
    retention_arg x = {tenant, project, pr->created_ms, &keys, 0};
    uint64_t removed = drop_old(db, &x, cut, threshold);
    sdb__buf_free(&keys);
    return removed;
}

static uint64_t sweep_retention(sdb *db)
{
    int64_t now = sdb__now(db);
    uint64_t removed = 0;
    sdb__iter it;
    sdb__iter_open(db, &it, SDB__CF_PROJECTS, NULL);
    for (sdb__iter_seek_first(&it); sdb__iter_valid(&it); sdb__iter_next(&it)) {
        if (atomic_load(&db->closing))
            break;
        size_t kn, vn;
        const char *k = sdb__iter_key(&it, &kn);
        const char *v = sdb__iter_value(&it, &vn);
        sdb_slice tenant, project;
        sdb__projrec pr;
        if (!sdb__key_split(k, kn, &tenant, &project) || !sdb__projrec_decode(v, vn, &pr))
            continue;
        free(pr.fields);
        pr.fields = NULL;
        removed += retain_project(db, tenant, project, &pr, now);
    }
    sdb__iter_close(&it, NULL, 0);
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
        sbx_deadline_in(&dl, db->o.sweep_interval_ms);
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
