/* record.c: RecordExecution, the executor's one write per finished command: the history append
 * (history.c) and the cache fill (cache.c) of the same command in ONE atomic write, checked
 * up front as AppendExecution and PutCachedResult check theirs. A replayed record id writes
 * nothing, the cache included. The top of the data layer: calls history.c, cache.c and
 * commit.c.
 */
#include <stdlib.h>
#include <string.h>

#include "storedb_int.h"

typedef struct {
    sdb_slice tenant;
    const sdb_record_exec *r;
    sdb_hist_result *res;
    int64_t expires;
} record_arg;

static int record_apply(sdb__txn *t, void *arg, char *err, size_t errlen)
{
    record_arg *x = arg;
    int rc = sdb__hist_apply_append(t, x->tenant, &x->r->hist, x->res, err, errlen);
    if (rc || x->res->duplicate || x->r->command_key.n == 0)
        return rc;
    return sdb__cache_fill(t, x->tenant, x->r->hist.project, x->r->command_key, x->r->cache_data,
                           x->expires, x->res->seq, err, errlen);
}

static void count(sdb *db, const sdb_record_exec *r, const sdb_hist_result *res)
{
    if (res->duplicate) {
        SDB__STAT_ADD(db, history_duplicates, 1);
        return;
    }
    SDB__STAT_ADD(db, history_appends, 1);
    if (r->command_key.n)
        SDB__STAT_ADD(db, cache_puts, 1);
}

/* The checks of a record; fills x for record_apply. */
static int record_prepare(sdb *db, sdb_slice tenant, const sdb_record_exec *r, sdb_hist_result *res,
                          record_arg *x, char *err, size_t errlen)
{
    memset(res, 0, sizeof *res);
    int rc = sdb__hist_check_append(db, tenant, &r->hist, err, errlen);
    if (rc)
        return rc;
    int64_t ttl = 0;
    if (r->command_key.n && (rc = sdb__cache_check_put(db, tenant, r->hist.project, r->command_key,
                                                       r->cache_data, r->ttl_s, &ttl, err, errlen)))
        return rc;
    *x = (record_arg){tenant, r, res, sdb__now(db) + ttl * 1000};
    return SBX_OK;
}

/* After the commit: the counters and the cache entry's expiry. */
static void record_after(sdb *db, const record_arg *x, int64_t *expires_ms, int rc)
{
    if (rc)
        return;
    count(db, x->r, x->res);
    if (expires_ms && !x->res->duplicate && x->r->command_key.n)
        *expires_ms = x->expires;
}

int sdb_record_execution(sdb *db, sdb_slice tenant, const sdb_record_exec *r, sdb_hist_result *res,
                         int64_t *expires_ms, char *err, size_t errlen)
{
    sdb_hist_result tmp;
    if (expires_ms)
        *expires_ms = 0;
    record_arg x;
    int rc = record_prepare(db, tenant, r, res ? res : &tmp, &x, err, errlen);
    if (rc)
        return rc;
    rc = sdb__commit(db, record_apply, &x, sdb__hash(tenant, r->hist.project), false, err, errlen);
    record_after(db, &x, expires_ms, rc);
    return rc;
}

typedef struct {
    sdb__async a;
    record_arg x;
    int64_t *expires_ms;
    sdb_hist_result tmp;
} record_async;

static void record_async_after(sdb__async *a, int status)
{
    record_async *w = (record_async *)a;
    record_after(a->db, &w->x, w->expires_ms, status);
}

int sdb_record_execution_async(sdb *db, sdb_slice tenant, const sdb_record_exec *r,
                               sdb_hist_result *res, int64_t *expires_ms, sdb_done_fn done,
                               void *arg, char *err, size_t errlen)
{
    if (expires_ms)
        *expires_ms = 0;
    record_async *w = calloc(1, sizeof *w);
    if (!w)
        return sdb__err(err, errlen, SBX_RESOURCE_EXHAUSTED, "out of memory");
    int rc = record_prepare(db, tenant, r, res ? res : &w->tmp, &w->x, err, errlen);
    if (rc) {
        free(w);
        return rc;
    }
    w->expires_ms = expires_ms;
    return sdb__async_queue(db, &w->a, record_apply, &w->x, record_async_after, done, arg, err,
                            errlen);
}
