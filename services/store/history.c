/* history.c: execution history. Each project has a counter (meta 'c': last sequence, execution
 * count, last execution time and summary); an append reads it and writes the record under
 * be64(last+1) together with the new counter in one atomic write, so sequences are gapless,
 * monotonic and survive restarts. An optional record id maps to the first sequence (meta 'i'),
 * making a replayed append a no-op. A record carries the server's write time (monotonic per
 * project) and the caller's time (started_at) that time ranges and max-age retention use; the
 * latter is not ordered by seq, so ranged listings scan with a budget per page. A max_records
 * retention drops the record falling out of it in the append's own write. Listing is newest
 * first with opaque page tokens;
 * watchers read from a sequence and sleep on a striped condition variable that every commit
 * touching the project bumps (ticket protocol: no gap and no duplicate at the seam).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storedb_int.h"

/* ---- encoding ---- */

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
    c->exists = !r.bad;
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

static bool rec_decode(const char *k, size_t kn, size_t scope_n, const char *v, size_t vn,
                       sdb_hist_rec *r)
{
    if (kn != scope_n + 8)
        return false;
    r->seq = sdb__be64(k + scope_n);
    return sdb__rec_decode_value(v, vn, r);
}

/* ---- append ---- */

int sdb__hist_check_append(sdb *db, sdb_slice tenant, const sdb_hist_entry *a, char *err,
                           size_t errlen)
{
    int rc;
    if ((rc = sdb__check_tenant(tenant, err, errlen)) ||
        (rc = sdb__check_project(a->project, err, errlen)) ||
        (rc = sdb__check_bytes("record_id", a->record_id, SDB_RECORD_ID_MAX, true, err, errlen)) ||
        (rc = sdb__check_size("record", a->data.n, db->o.max_record_bytes, err, errlen)))
        return rc;
    if (a->time_ms < 0)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT, "started_at_unix_ms: %lld is negative",
                        (long long)a->time_ms);
    return SBX_OK;
}

/* The project's record: created (version 0) when missing; *max_records gets the retention
 * by count in force. */
static int touch_project(sdb__txn *t, sdb_slice tenant, sdb_slice project, int64_t now,
                         uint64_t *max_records, char *err, size_t errlen)
{
    sdb *db = sdb__txn_db(t);
    sdb__buf k;
    sdb__buf_init(&k);
    sdb__key_project(&k, tenant, project);
    char *v = NULL;
    size_t vn = 0;
    *max_records = db->o.history_max_records;
    int rc = sdb__txn_get(t, SDB__CF_PROJECTS, &k, &v, &vn, err, errlen);
    if (rc == SBX_OK) {
        sdb__projrec r;
        if (!sdb__projrec_decode(v, vn, &r)) {
            rc = sdb__err(err, errlen, SBX_DATA_LOSS, "project record is corrupted");
        } else {
            if (r.ret_max_records)
                *max_records = r.ret_max_records;
            free(r.fields);
        }
    } else if (rc == SBX_NOT_FOUND) {
        sdb__projrec r = {.version = 0, .created_ms = now};
        sdb__buf b;
        sdb__buf_init(&b);
        sdb__projrec_encode(&b, &r);
        sdb__txn_put(t, SDB__CF_PROJECTS, &k, b.p, b.n);
        sdb__buf_free(&b);
        rc = SBX_OK;
    }
    free(v);
    sdb__buf_free(&k);
    return rc;
}

/* Deletes record seq (and its record-id entry) if it exists; *gone = 1 when it did. */
static int drop_record(sdb__txn *t, sdb_slice tenant, sdb_slice project, uint64_t seq, int *gone,
                       char *err, size_t errlen)
{
    sdb__buf k;
    sdb__buf_init(&k);
    sdb__key_hist(&k, tenant, project, seq);
    char *v = NULL;
    size_t vn = 0;
    *gone = 0;
    int rc = sdb__txn_get(t, SDB__CF_HISTORY, &k, &v, &vn, err, errlen);
    if (rc == SBX_OK) {
        sdb_hist_rec r;
        sdb__txn_del(t, SDB__CF_HISTORY, &k);
        if (sdb__rec_decode_value(v, vn, &r) && r.record_id.n) {
            sdb__key_meta(&k, tenant, project, 'i', r.record_id);
            sdb__txn_del(t, SDB__CF_META, &k);
        }
        *gone = 1;
    } else if (rc == SBX_NOT_FOUND) {
        rc = SBX_OK;
    }
    free(v);
    sdb__buf_free(&k);
    return rc;
}

int sdb__hist_apply_append(sdb__txn *t, sdb_slice tenant, const sdb_hist_entry *a,
                           sdb_hist_result *res, char *err, size_t errlen)
{
    sdb *db = sdb__txn_db(t);
    sdb__buf k, b;
    sdb__buf_init(&k);
    sdb__buf_init(&b);
    char *v = NULL, *cv = NULL;
    size_t vn = 0, cvn = 0;
    int rc;
    memset(res, 0, sizeof *res);

    if (a->record_id.n) {
        sdb__key_meta(&k, tenant, a->project, 'i', a->record_id);
        rc = sdb__txn_get(t, SDB__CF_META, &k, &v, &vn, err, errlen);
        if (rc == SBX_OK) {
            if (vn < 24) {
                rc = sdb__err(err, errlen, SBX_DATA_LOSS, "record_id index entry is corrupted");
                goto out;
            }
            res->seq = sdb__be64(v);
            res->recorded_ms = (int64_t)sdb__be64(v + 8);
            res->time_ms = (int64_t)sdb__be64(v + 16);
            res->duplicate = true;
            goto out;
        }
        if (rc != SBX_NOT_FOUND)
            goto out;
    }

    sdb__key_meta(&k, tenant, a->project, 'c', sdb_slice_n("", 0));
    sdb__counter c = {0};
    rc = sdb__txn_get(t, SDB__CF_META, &k, &cv, &cvn, err, errlen);
    if (rc == SBX_OK) {
        if (!sdb__counter_decode(cv, cvn, &c)) {
            rc = sdb__err(err, errlen, SBX_DATA_LOSS, "history counter of project is corrupted");
            goto out;
        }
    } else if (rc != SBX_NOT_FOUND) {
        goto out;
    }
    int64_t now = sdb__now(db);
    uint64_t max_records;
    if ((rc = touch_project(t, tenant, a->project, now, &max_records, err, errlen)) != SBX_OK)
        goto out;

    uint64_t seq = c.last_seq + 1;
    int64_t recorded = now > c.last_recorded_ms ? now : c.last_recorded_ms;
    int64_t time = a->time_ms ? a->time_ms : now;

    /* the record */
    sdb__buf_u8(&b, SDB__VALUE_V1);
    sdb__buf_be64(&b, (uint64_t)recorded);
    sdb__buf_be64(&b, (uint64_t)time);
    sdb__buf_str(&b, a->record_id);
    sdb__buf_raw(&b, a->data.p, a->data.n);
    sdb__buf kh;
    sdb__buf_init(&kh);
    sdb__key_hist(&kh, tenant, a->project, seq);
    sdb__txn_put(t, SDB__CF_HISTORY, &kh, b.p, b.n);

    /* the record id -> first sequence */
    if (a->record_id.n) {
        sdb__key_meta(&kh, tenant, a->project, 'i', a->record_id);
        sdb__buf_reset(&b);
        sdb__buf_be64(&b, seq);
        sdb__buf_be64(&b, (uint64_t)recorded);
        sdb__buf_be64(&b, (uint64_t)time);
        sdb__txn_put(t, SDB__CF_META, &kh, b.p, b.n);
    }
    sdb__buf_free(&kh);

    /* retention by count: the record that just fell out goes in the same write */
    uint64_t count = c.exec_count + 1;
    if (max_records && seq > max_records) {
        int gone;
        if ((rc = drop_record(t, tenant, a->project, seq - max_records, &gone, err, errlen)))
            goto out;
        count -= (uint64_t)gone;
    }

    /* the counter (k still holds its key) */
    sdb__counter nc = {true, seq, count, recorded, time, a->exit_code};
    sdb__buf_reset(&b);
    sdb__counter_encode(&b, &nc);
    sdb__txn_put(t, SDB__CF_META, &k, b.p, b.n);
    sdb__txn_notify(t, sdb__watch_stripe(tenant, a->project));

    res->seq = seq;
    res->recorded_ms = recorded;
    res->time_ms = time;
    rc = SBX_OK;
out:
    free(v);
    free(cv);
    sdb__buf_free(&k);
    sdb__buf_free(&b);
    return rc;
}

typedef struct {
    sdb_slice tenant;
    const sdb_hist_entry *a;
    sdb_hist_result *res;
} append_arg;

static int append_apply(sdb__txn *t, void *arg, char *err, size_t errlen)
{
    append_arg *x = arg;
    return sdb__hist_apply_append(t, x->tenant, x->a, x->res, err, errlen);
}

int sdb_hist_append(sdb *db, sdb_slice tenant, const sdb_hist_entry *a, sdb_hist_result *res,
                    char *err, size_t errlen)
{
    sdb_hist_result tmp;
    if (!res)
        res = &tmp;
    memset(res, 0, sizeof *res);
    int rc = sdb__hist_check_append(db, tenant, a, err, errlen);
    if (rc)
        return rc;
    append_arg x = {tenant, a, res};
    rc = sdb__commit(db, append_apply, &x, sdb__hash(tenant, a->project), false, err, errlen);
    if (rc == SBX_OK) {
        if (res->duplicate)
            SDB__STAT_ADD(db, history_duplicates, 1);
        else
            SDB__STAT_ADD(db, history_appends, 1);
    }
    return rc;
}

/* ---- reading ---- */

typedef struct {
    sdb__buf scope, upper, seek;
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it;
} hist_iter;

static void hist_iter_open(sdb *db, hist_iter *h, sdb_slice tenant, sdb_slice project)
{
    sdb__buf_init(&h->scope);
    sdb__buf_init(&h->upper);
    sdb__buf_init(&h->seek);
    sdb__key_scope(&h->scope, tenant, project);
    sdb__buf_copy(&h->upper, &h->scope);
    sdb__buf_successor(&h->upper); /* never all 0xff: the scope starts with a short length */
    h->ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_lower_bound(h->ro, h->scope.p, h->scope.n);
    rocksdb_readoptions_set_iterate_upper_bound(h->ro, h->upper.p, h->upper.n);
    h->it = rocksdb_create_iterator_cf(db->rdb, h->ro, db->cf[SDB__CF_HISTORY]);
}

static void hist_iter_seek(hist_iter *h, uint64_t seq, bool for_prev)
{
    sdb__buf_copy(&h->seek, &h->scope);
    sdb__buf_be64(&h->seek, seq);
    if (for_prev)
        rocksdb_iter_seek_for_prev(h->it, h->seek.p, h->seek.n);
    else
        rocksdb_iter_seek(h->it, h->seek.p, h->seek.n);
}

static bool hist_iter_rec(hist_iter *h, sdb_hist_rec *r)
{
    size_t kn, vn;
    const char *k = rocksdb_iter_key(h->it, &kn);
    const char *v = rocksdb_iter_value(h->it, &vn);
    return rec_decode(k, kn, h->scope.n, v, vn, r);
}

static int hist_iter_close(hist_iter *h, char *err, size_t errlen)
{
    char *rerr = NULL;
    rocksdb_iter_get_error(h->it, &rerr);
    rocksdb_iter_destroy(h->it);
    rocksdb_readoptions_destroy(h->ro);
    sdb__buf_free(&h->scope);
    sdb__buf_free(&h->upper);
    sdb__buf_free(&h->seek);
    return rerr ? sdb__rocks_err("read", rerr, err, errlen) : SBX_OK;
}

int sdb_hist_list(sdb *db, sdb_slice tenant, const sdb_hist_query *q, sdb_hist_cb cb, void *arg,
                  sdb_page *page, char *err, size_t errlen)
{
    int rc;
    if ((rc = sdb__check_tenant(tenant, err, errlen)) ||
        (rc = sdb__check_project(q->project, err, errlen)) ||
        (rc = sdb__check_limit(q->has_limit, q->limit, SDB_HIST_LIST_DEFAULT, page, err, errlen)))
        return rc;
    if (q->since_ms < 0)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                        "since_unix_ms: %lld must not be negative", (long long)q->since_ms);
    if (q->until_ms < 0)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                        "until_unix_ms: %lld must not be negative", (long long)q->until_ms);
    if (q->since_ms && q->until_ms && q->since_ms > q->until_ms)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                        "since_unix_ms: %lld is after until_unix_ms: %lld", (long long)q->since_ms,
                        (long long)q->until_ms);
    /* a token is bound to the project and the time filters it was issued for */
    char scope_buf[SDB_PROJECT_ID_MAX + 17];
    size_t sn = q->project.n < SDB_PROJECT_ID_MAX ? q->project.n : SDB_PROJECT_ID_MAX;
    memcpy(scope_buf, q->project.p, sn);
    scope_buf[sn++] = '\0';
    for (int i = 0; i < 8; i++) {
        scope_buf[sn + (size_t)i] = (char)((uint64_t)q->since_ms >> (56 - 8 * i));
        scope_buf[sn + 8 + (size_t)i] = (char)((uint64_t)q->until_ms >> (56 - 8 * i));
    }
    sdb_slice scope = sdb_slice_n(scope_buf, sn + 16);
    uint64_t start = UINT64_MAX;
    if (q->page_token.n) {
        char cur[SDB_TOKEN_MAX];
        size_t cn = 0;
        rc = sdb__token_decode("page_token", SDB__TOK_HIST, tenant, scope, q->page_token, cur, &cn,
                               err, errlen);
        if (rc)
            return rc;
        if (cn != 8 || sdb__be64(cur) == 0)
            return sdb__err(err, errlen, SBX_INVALID_ARGUMENT, "page_token: malformed cursor");
        start = sdb__be64(cur);
    }
    bool ranged = q->since_ms || q->until_ms;

    hist_iter h;
    hist_iter_open(db, &h, tenant, q->project);
    hist_iter_seek(&h, start, true);
    uint32_t examined = 0;
    while (rocksdb_iter_valid(h.it)) {
        sdb_hist_rec r;
        if (!hist_iter_rec(&h, &r)) {
            hist_iter_close(&h, NULL, 0);
            return sdb__err(err, errlen, SBX_DATA_LOSS, "history record is corrupted");
        }
        bool budget_out = ranged && ++examined > SDB_HIST_SCAN_MAX;
        bool match =
            (!q->since_ms || r.time_ms >= q->since_ms) && (!q->until_ms || r.time_ms < q->until_ms);
        int stop = 0;
        if (!budget_out && match && page->count < page->applied_limit && cb)
            stop = cb(arg, &r);
        if (budget_out || (match && page->count == page->applied_limit) || stop == SDB_PAGE_FULL) {
            char cur[8];
            for (int i = 0; i < 8; i++)
                cur[i] = (char)(r.seq >> (56 - 8 * i));
            sdb__token_encode(SDB__TOK_HIST, tenant, scope, cur, 8, page->next_token);
            break;
        }
        if (match) {
            page->count++;
            if (stop) {
                hist_iter_close(&h, NULL, 0);
                return stop;
            }
        }
        rocksdb_iter_prev(h.it);
    }
    return hist_iter_close(&h, err, errlen);
}

int sdb_hist_read_after(sdb *db, sdb_slice tenant, sdb_slice project, uint64_t after_seq,
                        uint32_t max, sdb_hist_cb cb, void *arg, uint64_t *last, char *err,
                        size_t errlen)
{
    int rc;
    if ((rc = sdb__check_tenant(tenant, err, errlen)) ||
        (rc = sdb__check_project(project, err, errlen)))
        return rc;
    if (max < 1 || max > SDB_LIST_MAX)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT, "max: %u must be 1..%d", max,
                        SDB_LIST_MAX);
    if (after_seq == UINT64_MAX)
        return SBX_OK;
    hist_iter h;
    hist_iter_open(db, &h, tenant, project);
    hist_iter_seek(&h, after_seq + 1, false);
    for (uint32_t n = 0; n < max && rocksdb_iter_valid(h.it); n++) {
        sdb_hist_rec r;
        if (!hist_iter_rec(&h, &r)) {
            hist_iter_close(&h, NULL, 0);
            return sdb__err(err, errlen, SBX_DATA_LOSS, "history record is corrupted");
        }
        int stop = cb ? cb(arg, &r) : 0;
        if (last)
            *last = r.seq;
        if (stop) {
            hist_iter_close(&h, NULL, 0);
            return stop;
        }
        rocksdb_iter_next(h.it);
    }
    return hist_iter_close(&h, err, errlen);
}

int sdb_hist_last_seq(sdb *db, sdb_slice tenant, sdb_slice project, uint64_t *seq, char *err,
                      size_t errlen)
{
    int rc;
    *seq = 0;
    if ((rc = sdb__check_tenant(tenant, err, errlen)) ||
        (rc = sdb__check_project(project, err, errlen)))
        return rc;
    sdb__buf k;
    sdb__buf_init(&k);
    sdb__key_meta(&k, tenant, project, 'c', sdb_slice_n("", 0));
    char *v = NULL;
    size_t vn = 0;
    rc = sdb__get(db, SDB__CF_META, &k, &v, &vn, err, errlen);
    sdb__buf_free(&k);
    if (rc == SBX_NOT_FOUND)
        return SBX_OK;
    if (rc)
        return rc;
    sdb__counter c;
    bool ok = sdb__counter_decode(v, vn, &c);
    free(v);
    if (!ok)
        return sdb__err(err, errlen, SBX_DATA_LOSS, "history counter of project is corrupted");
    *seq = c.last_seq;
    return SBX_OK;
}

/* ---- watch ---- */

void sdb__watch_init(sdb *db)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    for (int i = 0; i < SDB__WATCH_STRIPES; i++) {
        pthread_mutex_init(&db->watch[i].mu, NULL);
        pthread_cond_init(&db->watch[i].cv, &ca);
        db->watch[i].gen = 0;
    }
    pthread_condattr_destroy(&ca);
}

void sdb__watch_destroy(sdb *db)
{
    for (int i = 0; i < SDB__WATCH_STRIPES; i++) {
        pthread_mutex_destroy(&db->watch[i].mu);
        pthread_cond_destroy(&db->watch[i].cv);
    }
}

void sdb__watch_notify(sdb *db, uint64_t mask)
{
    for (int i = 0; mask && i < SDB__WATCH_STRIPES; i++) {
        if (!(mask & (1ull << i)))
            continue;
        mask &= ~(1ull << i);
        sdb__watch *w = &db->watch[i];
        pthread_mutex_lock(&w->mu);
        w->gen++;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
}

void sdb__watch_close(sdb *db)
{
    for (int i = 0; i < SDB__WATCH_STRIPES; i++) {
        pthread_mutex_lock(&db->watch[i].mu);
        pthread_cond_broadcast(&db->watch[i].cv);
        pthread_mutex_unlock(&db->watch[i].mu);
    }
}

uint64_t sdb_hist_watch_ticket(sdb *db, sdb_slice tenant, sdb_slice project)
{
    sdb__watch *w = &db->watch[sdb__watch_stripe(tenant, project)];
    pthread_mutex_lock(&w->mu);
    uint64_t g = w->gen;
    pthread_mutex_unlock(&w->mu);
    return g;
}

int sdb_hist_watch_wait(sdb *db, sdb_slice tenant, sdb_slice project, uint64_t ticket,
                        int timeout_ms)
{
    sdb__watch *w = &db->watch[sdb__watch_stripe(tenant, project)];
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    if (timeout_ms < 0)
        timeout_ms = 0;
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    int rc = SBX_OK;
    pthread_mutex_lock(&w->mu);
    while (w->gen == ticket && !atomic_load(&db->closing)) {
        if (pthread_cond_timedwait(&w->cv, &w->mu, &dl) == ETIMEDOUT) {
            rc = SBX_DEADLINE_EXCEEDED;
            break;
        }
    }
    if (atomic_load(&db->closing))
        rc = SBX_UNAVAILABLE;
    else if (w->gen != ticket)
        rc = SBX_OK;
    pthread_mutex_unlock(&w->mu);
    return rc;
}
