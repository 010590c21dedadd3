/* record.c: RecordExecution, the executor's one write per finished command: the history append
 * (history.c) and the cache fill (cache.c) of the same command in ONE atomic write, checked
 * up front as AppendExecution and PutCachedResult check theirs. A replayed record id writes
 * nothing, the cache included. The top of the data layer: calls history.c, cache.c and
 * commit.c.
 */
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

int sdb_record_execution(sdb *db, sdb_slice tenant, const sdb_record_exec *r, sdb_hist_result *res,
                         int64_t *expires_ms, char *err, size_t errlen)
{
    sdb_hist_result tmp;
    if (!res)
        res = &tmp;
    memset(res, 0, sizeof *res);
    if (expires_ms)
        *expires_ms = 0;
    int rc = sdb__hist_check_append(db, tenant, &r->hist, err, errlen);
    if (rc)
        return rc;
    int64_t ttl = 0;
    if (r->command_key.n && (rc = sdb__cache_check_put(db, tenant, r->hist.project, r->command_key,
                                                       r->cache_data, r->ttl_s, &ttl, err, errlen)))
        return rc;
    record_arg x = {tenant, r, res, sdb__now(db) + ttl * 1000};
    rc = sdb__commit(db, record_apply, &x, sdb__hash(tenant, r->hist.project), false, err, errlen);
    if (rc)
        return rc;
    count(db, r, res);
    if (expires_ms && !res->duplicate && r->command_key.n)
        *expires_ms = x.expires;
    return SBX_OK;
}
