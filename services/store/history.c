/* history.c: execution history. Each project has a counter (meta 'c': last sequence, execution
 * count, last execution time and summary); an append reads it and writes the record under
 * be64(last+1) together with the new counter in one atomic write, so sequences are gapless,
 * monotonic and survive restarts. An optional record id maps to the first sequence (meta 'i'),
 * making a replayed append a no-op. A record carries the server's write time (monotonic per
 * project) and the caller's time (started_at) that time ranges and max-age retention use; the
 * latter is not ordered by seq, so ranged listings scan with a budget per page. A max_records
 * retention drops the record falling out of it in the append's own write. Listing is newest
 * first with opaque page tokens; watchers read from a sequence (sdb_hist_read_after) and wait
 * through watch.c, which every append's commit notifies. Calls projects.c (implicit creation),
 * commit.c, read.c, codec.c and keys.c.
 */
#include <stdlib.h>
#include <string.h>

#include "storedb_int.h"

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

/* A replay: when the record id is known, *res gets the first append's result and
 * res->duplicate is set. */
static int find_duplicate(sdb__txn *t, sdb_slice tenant, const sdb_hist_entry *a,
                          sdb_hist_result *res, char *err, size_t errlen)
{
    sdb__buf k;
    sdb__buf_init(&k);
    sdb__key_meta(&k, tenant, a->project, 'i', a->record_id);
    char *v = NULL;
    size_t vn = 0;
    int rc = sdb__txn_get(t, SDB__CF_META, &k, &v, &vn, err, errlen);
    sdb__buf_free(&k);
    if (rc == SBX_OK) {
        if (sdb__recid_decode(v, vn, res))
            res->duplicate = true;
        else
            rc = sdb__err(err, errlen, SBX_DATA_LOSS, "record_id index entry is corrupted");
    } else if (rc == SBX_NOT_FOUND) {
        rc = SBX_OK;
    }
    free(v);
    return rc;
}

/* The project's counter (zero when it has none) under key k. */
static int read_counter(sdb__txn *t, const sdb__buf *k, sdb__counter *c, char *err, size_t errlen)
{
    char *v = NULL;
    size_t vn = 0;
    memset(c, 0, sizeof *c);
    int rc = sdb__txn_get(t, SDB__CF_META, k, &v, &vn, err, errlen);
    if (rc == SBX_OK && !sdb__counter_decode(v, vn, c))
        rc = sdb__err(err, errlen, SBX_DATA_LOSS, "history counter of project is corrupted");
    else if (rc == SBX_NOT_FOUND)
        rc = SBX_OK;
    free(v);
    return rc;
}

/* The record under seq and, with a record id, the id's entry pointing at it. */
static void put_record(sdb__txn *t, sdb_slice tenant, const sdb_hist_entry *a, uint64_t seq,
                       int64_t recorded, int64_t time)
{
    sdb__buf k, b;
    sdb__buf_init(&k);
    sdb__buf_init(&b);
    sdb__rec_encode(&b, recorded, time, a->record_id, a->data);
    sdb__key_hist(&k, tenant, a->project, seq);
    sdb__txn_put(t, SDB__CF_HISTORY, &k, b.p, b.n);
    if (a->record_id.n) {
        sdb__key_meta(&k, tenant, a->project, 'i', a->record_id);
        sdb__buf_reset(&b);
        sdb__recid_encode(&b, seq, recorded, time);
        sdb__txn_put(t, SDB__CF_META, &k, b.p, b.n);
    }
    sdb__buf_free(&k);
    sdb__buf_free(&b);
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
    memset(res, 0, sizeof *res);
    int rc = a->record_id.n ? find_duplicate(t, tenant, a, res, err, errlen) : SBX_OK;
    if (rc || res->duplicate)
        return rc;
    sdb__buf k;
    sdb__buf_init(&k);
    sdb__key_meta(&k, tenant, a->project, 'c', sdb_slice_n("", 0));
    sdb__counter c;
    int64_t now = sdb__now(sdb__txn_db(t));
    uint64_t max_records;
    if ((rc = read_counter(t, &k, &c, err, errlen)) ||
        (rc = sdb__project_ensure(t, tenant, a->project, now, &max_records, err, errlen)))
        goto free_key;

    uint64_t seq = c.last_seq + 1;
    int64_t recorded = now > c.last_recorded_ms ? now : c.last_recorded_ms;
    int64_t time = a->time_ms ? a->time_ms : now;
    put_record(t, tenant, a, seq, recorded, time);

    /* retention by count: the record that just fell out goes in the same write */
    uint64_t count = c.exec_count + 1;
    if (max_records && seq > max_records) {
        int gone;
        if ((rc = drop_record(t, tenant, a->project, seq - max_records, &gone, err, errlen)))
            goto free_key;
        count -= (uint64_t)gone;
    }

    sdb__counter nc = {seq, count, recorded, time, a->exit_code};
    sdb__buf b;
    sdb__buf_init(&b);
    sdb__counter_encode(&b, &nc);
    sdb__txn_put_counter(t, SDB__CF_META, &k, b.p, b.n);
    sdb__buf_free(&b);
    sdb__txn_notify(t, sdb__watch_stripe(tenant, a->project));
    res->seq = seq;
    res->recorded_ms = recorded;
    res->time_ms = time;
free_key:
    sdb__buf_free(&k);
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

static void append_after(sdb *db, const sdb_hist_result *res, int rc)
{
    if (rc == SBX_OK) {
        if (res->duplicate)
            SDB__STAT_ADD(db, history_duplicates, 1);
        else
            SDB__STAT_ADD(db, history_appends, 1);
    }
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
    append_after(db, res, rc);
    return rc;
}

typedef struct {
    sdb__async a;
    append_arg x;
    sdb_hist_result tmp;
} append_async;

static void append_async_after(sdb__async *a, int status)
{
    append_after(a->db, ((append_async *)a)->x.res, status);
}

int sdb_hist_append_async(sdb *db, sdb_slice tenant, const sdb_hist_entry *a, sdb_hist_result *res,
                          sdb_done_fn done, void *arg, char *err, size_t errlen)
{
    if (res)
        memset(res, 0, sizeof *res);
    int rc = sdb__hist_check_append(db, tenant, a, err, errlen);
    if (rc)
        return rc;
    append_async *w = calloc(1, sizeof *w);
    if (!w)
        return sdb__err(err, errlen, SBX_RESOURCE_EXHAUSTED, "out of memory");
    w->x = (append_arg){tenant, a, res ? res : &w->tmp};
    return sdb__async_queue(db, &w->a, append_apply, &w->x, append_async_after, done, arg, err,
                            errlen);
}

/* ---- reading ---- */

typedef struct {
    sdb__iter it;
    size_t scope_n;
} hist_iter;

/* Positioned at seq, or the record next to it in the direction of reading. */
static void hist_iter_open(sdb *db, hist_iter *h, sdb_slice tenant, sdb_slice project, uint64_t seq,
                           bool backwards)
{
    sdb__buf k;
    sdb__buf_init(&k);
    sdb__key_scope(&k, tenant, project);
    h->scope_n = k.n;
    sdb__iter_open(db, &h->it, SDB__CF_HISTORY, &k);
    sdb__buf_be64(&k, seq);
    if (backwards)
        sdb__iter_seek_for_prev(&h->it, k.p, k.n);
    else
        sdb__iter_seek(&h->it, k.p, k.n);
    sdb__buf_free(&k);
}

static bool hist_iter_rec(hist_iter *h, sdb_hist_rec *r)
{
    size_t kn, vn;
    const char *k = sdb__iter_key(&h->it, &kn);
    const char *v = sdb__iter_value(&h->it, &vn);
    return sdb__rec_decode(k, kn, h->scope_n, v, vn, r);
}

static int check_query(sdb_slice tenant, const sdb_hist_query *q, sdb_page *page, char *err,
                       size_t errlen)
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
    return SBX_OK;
}

/* What a page token is bound to: the project and the time filters it was issued for. */
typedef struct {
    char b[SDB_PROJECT_ID_MAX + 17];
    sdb_slice s;
} query_scope;

static void scope_of(const sdb_hist_query *q, query_scope *sc)
{
    size_t sn = q->project.n < SDB_PROJECT_ID_MAX ? q->project.n : SDB_PROJECT_ID_MAX;
    memcpy(sc->b, q->project.p, sn);
    sc->b[sn++] = '\0';
    sdb__be64_put(sc->b + sn, (uint64_t)q->since_ms);
    sdb__be64_put(sc->b + sn + 8, (uint64_t)q->until_ms);
    sc->s = sdb_slice_n(sc->b, sn + 16);
}

/* The newest seq the page may start at: the token's cursor, else the end. */
static int start_of(sdb_slice tenant, sdb_slice scope, sdb_slice token, uint64_t *start, char *err,
                    size_t errlen)
{
    *start = UINT64_MAX;
    if (!token.n)
        return SBX_OK;
    char cur[SDB_TOKEN_MAX];
    size_t cn = 0;
    int rc =
        sdb__token_decode("page_token", SDB__TOK_HIST, tenant, scope, token, cur, &cn, err, errlen);
    if (rc)
        return rc;
    if (cn != 8 || sdb__be64(cur) == 0)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT, "page_token: malformed cursor");
    *start = sdb__be64(cur);
    return SBX_OK;
}

int sdb_hist_list(sdb *db, sdb_slice tenant, const sdb_hist_query *q, sdb_hist_cb cb, void *arg,
                  sdb_page *page, char *err, size_t errlen)
{
    query_scope sc;
    uint64_t start;
    int rc = check_query(tenant, q, page, err, errlen);
    if (rc)
        return rc;
    scope_of(q, &sc);
    if ((rc = start_of(tenant, sc.s, q->page_token, &start, err, errlen)))
        return rc;
    bool ranged = q->since_ms || q->until_ms;
    hist_iter h;
    hist_iter_open(db, &h, tenant, q->project, start, true);
    for (uint32_t examined = 0; sdb__iter_valid(&h.it); sdb__iter_prev(&h.it)) {
        sdb_hist_rec r;
        if (!hist_iter_rec(&h, &r)) {
            sdb__iter_close(&h.it, NULL, 0);
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
            sdb__be64_put(cur, r.seq);
            sdb__token_encode(SDB__TOK_HIST, tenant, sc.s, cur, 8, page->next_token);
            break;
        }
        if (match)
            page->count++;
        if (match && stop) {
            sdb__iter_close(&h.it, NULL, 0);
            return stop;
        }
    }
    return sdb__iter_close(&h.it, err, errlen);
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
    hist_iter_open(db, &h, tenant, project, after_seq + 1, false);
    for (uint32_t n = 0; n < max && sdb__iter_valid(&h.it); n++) {
        sdb_hist_rec r;
        if (!hist_iter_rec(&h, &r)) {
            sdb__iter_close(&h.it, NULL, 0);
            return sdb__err(err, errlen, SBX_DATA_LOSS, "history record is corrupted");
        }
        int stop = cb ? cb(arg, &r) : 0;
        if (last)
            *last = r.seq;
        if (stop) {
            sdb__iter_close(&h.it, NULL, 0);
            return stop;
        }
        sdb__iter_next(&h.it);
    }
    return sdb__iter_close(&h.it, err, errlen);
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
