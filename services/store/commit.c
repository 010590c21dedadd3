/* commit.c: how writes reach RocksDB, atomically and durably.
 *
 * Every write of the store is an operation (sdb__apply_fn) that reads what it needs and adds
 * puts/deletes to a transaction. Two strategies, chosen at open (opts.commit_mode):
 *
 * GROUP (default): callers enqueue their operation (sdb__commit_async: the handler's thread
 * goes on, and a done callback ends the call later; sdb__commit: the caller sleeps on a
 * semaphore); one committer thread takes everything queued, applies the operations one after
 * another into ONE indexed write batch (rocksdb_writebatch_wi: reads see the committed state
 * plus the earlier operations of the group; meta/projects reads come from rcache.c), makes a
 * single write for the whole group, and hands the group to durable.c, which makes it durable
 * (with sync on: one fdatasync of the syncer thread per round, overlapping the committer's next
 * group), visible to readers and acknowledged (the completer thread runs the done callbacks, the
 * gRPC replies) while the committer goes on with the next group. Sequence
 * assignment, CAS and Incr are serialised by construction (no locks), and N concurrent writers -
 * even to the same project or key - share one fsync. If the write fails every operation of the
 * group gets the error: nothing is acknowledged that was not made durable.
 *
 * DIRECT: the caller applies its operation under a striped mutex (per project; per tenant
 * for kv) and writes itself; RocksDB's own group commit merges concurrent writers of different
 * stripes, but writers of one stripe serialise through their fsync.
 *
 * Exclusive operations (range deletes: DeleteProject, project-wide cache clear, Flush) run
 * alone: in GROUP mode the committer first writes what it has, in DIRECT mode they take the
 * write side of a rwlock whose read side every other write holds.
 *
 * Counters (sdb__txn_add_u64) change in counters.c during a group and go into its batch once,
 * before its write.
 *
 * A write that became durable wakes the watchers of the projects it touched (watch.c). Calls
 * read.c, watch.c, rcache.c, counters.c, durable.c and keys.c; open.c starts and stops the
 * committer.
 */
#include <errno.h>
#include <stdio.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "storedb_int.h"

struct sdb__txn {
    sdb *db;
    rocksdb_writebatch_wi_t *wi; /* normal ops */
    rocksdb_writebatch_t *wb;    /* exclusive ops */
    uint64_t notify;
    sdb__rcache *rc; /* GROUP mode normal ops: the committer's read cache */
};

sdb *sdb__txn_db(sdb__txn *t)
{
    return t->db;
}

int sdb__txn_get(sdb__txn *t, int cf, const sdb__buf *key, char **val, size_t *vn, char *err,
                 size_t errlen)
{
    if (!t->wi) /* exclusive ops: the latest state (what is visible may be behind it) */
        return sdb__get_latest(t->db, cf, key, val, vn, err, errlen);
    const char *dv;
    size_t dn;
    if (t->rc && cf == SDB__CF_META && sdb__dc_get(&t->db->dc, cf, key, &dv, &dn)) {
        char *b = malloc(dn ? dn : 1);
        if (!b)
            return sdb__err(err, errlen, SBX_RESOURCE_EXHAUSTED, "out of memory");
        memcpy(b, dv, dn);
        *val = b;
        *vn = dn;
        return SBX_OK;
    }
    bool cached = t->rc && sdb__rc_cacheable(t->rc, cf);
    int rc = cached ? sdb__rc_get(t->rc, cf, key, val, vn) : -1;
    if (rc >= 0)
        return rc;
    char *rerr = NULL;
    size_t n = 0;
    char *v = rocksdb_writebatch_wi_get_from_batch_and_db_cf(
        t->wi, t->db->rdb, t->db->ro, t->db->cf[cf], key->p, key->n, &n, &rerr);
    if (rerr)
        return sdb__rocks_err("read", rerr, err, errlen);
    if (cached)
        sdb__rc_set(t->rc, cf, key, v, n);
    if (!v)
        return SBX_NOT_FOUND;
    *val = v;
    *vn = n;
    return SBX_OK;
}

int sdb__txn_exists(sdb__txn *t, int cf, const sdb__buf *key, char *err, size_t errlen)
{
    if (t->rc && sdb__rc_cacheable(t->rc, cf)) {
        int rc = sdb__rc_exists(t->rc, cf, key);
        if (rc >= 0)
            return rc;
    }
    char *v = NULL;
    size_t vn = 0;
    int rc = sdb__txn_get(t, cf, key, &v, &vn, err, errlen);
    free(v);
    return rc;
}

void sdb__txn_put(sdb__txn *t, int cf, const sdb__buf *key, const void *v, size_t vn)
{
    if (t->rc && cf == SDB__CF_META)
        sdb__dc_forget(&t->db->dc, cf, key);
    if (t->rc && sdb__rc_cacheable(t->rc, cf))
        sdb__rc_set(t->rc, cf, key, vn ? v : "", vn);
    if (t->wi)
        rocksdb_writebatch_wi_put_cf(t->wi, t->db->cf[cf], key->p, key->n, v, vn);
    else
        rocksdb_writebatch_put_cf(t->wb, t->db->cf[cf], key->p, key->n, v, vn);
}

void sdb__txn_del(sdb__txn *t, int cf, const sdb__buf *key)
{
    if (t->rc && cf == SDB__CF_META)
        sdb__dc_forget(&t->db->dc, cf, key);
    if (t->rc && sdb__rc_cacheable(t->rc, cf))
        sdb__rc_set(t->rc, cf, key, NULL, 0);
    if (t->wi)
        rocksdb_writebatch_wi_delete_cf(t->wi, t->db->cf[cf], key->p, key->n);
    else
        rocksdb_writebatch_delete_cf(t->wb, t->db->cf[cf], key->p, key->n);
}

void sdb__txn_del_range(sdb__txn *t, int cf, const sdb__buf *begin, const sdb__buf *end)
{
    if (!t->wb)
        abort(); /* programming error: range deletes need an exclusive op */
    rocksdb_writebatch_delete_range_cf(t->wb, t->db->cf[cf], begin->p, begin->n, end->p, end->n);
}

void sdb__txn_notify(sdb__txn *t, unsigned stripe)
{
    t->notify |= 1ull << (stripe % SDB__WATCH_STRIPES);
}

/* After a write of n_ops operations: counts it and maps its failure (rerr, freed) to a
 * status. */
static int written(sdb *db, char *rerr, size_t n_ops, char *err, size_t errlen)
{
    SDB__STAT_ADD(db, commit_groups, 1);
    SDB__STAT_ADD(db, commit_ops, n_ops);
    if (rerr) {
        SDB__STAT_ADD(db, commit_failures, 1);
        SBX_LOG_ERROR("store", "write failed err=\"%s\"", rerr);
        return sdb__rocks_err("write", rerr, err, errlen);
    }
    return SBX_OK;
}

/* The write options of the committer's writes: unsynced when durable.c syncs them. */
static const rocksdb_writeoptions_t *write_opts(const sdb *db)
{
    return db->pipelined ? db->wo_nosync : db->wo;
}

/* ---- exclusive ops (both modes) ---- */

/* *notify gets the watch stripes to wake once the write is durable; *wrote whether it wrote. */
static int run_exclusive(sdb *db, sdb__apply_fn apply, void *arg, uint64_t *notify, bool *wrote,
                         char *err, size_t errlen)
{
    sdb__txn t = {db, NULL, rocksdb_writebatch_create(), 0, NULL};
    int rc = apply(&t, arg, err, errlen);
    *wrote = false;
    if (rc == SBX_OK && rocksdb_writebatch_count(t.wb) > 0) {
        char *rerr = NULL;
        rocksdb_write(db->rdb, write_opts(db), t.wb, &rerr);
        rc = written(db, rerr, 1, err, errlen);
        *wrote = rc == SBX_OK;
    }
    *notify = t.notify;
    rocksdb_writebatch_destroy(t.wb);
    return rc;
}

/* ---- DIRECT mode ---- */

static int commit_direct(sdb *db, sdb__apply_fn apply, void *arg, uint64_t lock_hash,
                         bool exclusive, char *err, size_t errlen)
{
    int rc;
    if (exclusive) {
        uint64_t notify;
        bool wrote;
        pthread_rwlock_wrlock(&db->excl);
        rc = run_exclusive(db, apply, arg, &notify, &wrote, err, errlen);
        pthread_rwlock_unlock(&db->excl);
        if (wrote)
            sdb__watch_notify(db, notify);
        return rc;
    }
    pthread_mutex_t *mu = &db->stripes[lock_hash % SDB__LOCK_STRIPES];
    pthread_rwlock_rdlock(&db->excl);
    pthread_mutex_lock(mu);
    sdb__txn t = {db, rocksdb_writebatch_wi_create(0, 1), NULL, 0, NULL};
    rc = apply(&t, arg, err, errlen);
    if (rc == SBX_OK && rocksdb_writebatch_wi_count(t.wi) > 0) {
        char *rerr = NULL;
        rocksdb_write_writebatch_wi(db->rdb, db->wo, t.wi, &rerr);
        rc = written(db, rerr, 1, err, errlen);
        if (rc == SBX_OK)
            sdb__watch_notify(db, t.notify);
    }
    pthread_mutex_unlock(mu);
    pthread_rwlock_unlock(&db->excl);
    rocksdb_writebatch_wi_destroy(t.wi);
    return rc;
}

/* ---- GROUP mode ---- */

/* Hands ops[0..n) to durable.c, which acknowledges them once what they wrote (if wrote) is
 * durable, while this thread goes on with the next group. */
static void hand_off(sdb *db, sdb__op **ops, size_t n, uint64_t notify, bool wrote)
{
    for (size_t i = 0; i + 1 < n; i++)
        ops[i]->next = ops[i + 1];
    ops[n - 1]->next = NULL;
    sdb__durable_queue(db, ops[0], ops[n - 1], notify, wrote);
}

static void put_counter(void *arg, int cf, const char *k, size_t kn, const char *v, size_t vn)
{
    sdb *db = arg;
    rocksdb_writebatch_wi_put_cf(db->gbatch, db->cf[cf], k, kn, v, vn);
}

/* Writes the batch built so far (with the group's counters) and completes ops[0..n). */
static void flush_group(sdb *db, sdb__op **ops, size_t *n, uint64_t *notify)
{
    if (*n == 0)
        return;
    rocksdb_writebatch_wi_t *wi = db->gbatch;
    sdb__dc_drain(&db->dc, put_counter, db);
    int wrc = SBX_OK;
    char msg[512] = "";
    bool wrote = false;
    if (rocksdb_writebatch_wi_count(wi) > 0) {
        char *rerr = NULL;
        rocksdb_write_writebatch_wi(db->rdb, write_opts(db), wi, &rerr);
        wrc = written(db, rerr, *n, msg, sizeof msg);
        wrote = wrc == SBX_OK;
    }
    rocksdb_writebatch_wi_clear(wi);
    if (wrc != SBX_OK)
        sdb__rc_clear(&db->rc); /* it held writes that did not happen */
    for (size_t i = 0; i < *n; i++) {
        sdb__op *op = ops[i];
        /* An op that succeeded (even one that only read, e.g. a duplicate append) may have
         * depended on an earlier op of this group: when the write failed it fails too. */
        if (wrc != SBX_OK && op->status == SBX_OK) {
            op->status = wrc;
            sdb__err(op->err, op->errlen, wrc, "%s", msg);
        }
    }
    hand_off(db, ops, *n, *notify, wrote);
    *n = 0;
    *notify = 0;
}

static void run_group(sdb *db, sdb__op *list, sdb__op **ops)
{
    size_t n = 0;
    uint64_t notify = 0;
    rocksdb_writebatch_wi_t *wi = db->gbatch;
    for (sdb__op *op = list, *next; op; op = next) {
        next = op->next;
        if (op->exclusive) {
            flush_group(db, ops, &n, &notify);
            sdb__rc_clear(&db->rc); /* range deletes: the cache cannot follow them */
            uint64_t xnotify;
            bool wrote;
            op->status =
                run_exclusive(db, op->apply, op->arg, &xnotify, &wrote, op->err, op->errlen);
            hand_off(db, &op, 1, xnotify, wrote);
            continue;
        }
        sdb__txn t = {db, wi, NULL, 0, &db->rc};
        rocksdb_writebatch_wi_set_save_point(wi);
        size_t mark = sdb__dc_mark(&db->dc);
        int count = rocksdb_writebatch_wi_count(wi);
        op->status = op->apply(&t, op->arg, op->err, op->errlen);
        if (op->status != SBX_OK) {
            /* An op that failed before writing anything (a version mismatch) leaves the cache
             * true: what it cached it read from the state before it. */
            bool wrote_any =
                rocksdb_writebatch_wi_count(wi) != count || sdb__dc_mark(&db->dc) != mark;
            char *rerr = NULL;
            rocksdb_writebatch_wi_rollback_to_save_point(wi, &rerr);
            free(rerr);
            sdb__dc_rollback(&db->dc, mark);
            if (wrote_any)
                sdb__rc_clear(&db->rc); /* it may hold the rolled-back writes */
        } else {
            notify |= t.notify;
        }
        ops[n++] = op;
        size_t size = 0;
        rocksdb_writebatch_wi_data(wi, &size);
        if (size >= SDB__MAX_GROUP_BYTES)
            flush_group(db, ops, &n, &notify);
    }
    flush_group(db, ops, &n, &notify);
}

/* Group commit linger: when the last group (or, with the syncer, the last sync round) had
 * several writers, more are in flight and will arrive within about one round trip; waiting up
 * to o.group_linger_us for as many lets them share this group's write and fsync instead of
 * paying for the next one. */
static void linger(sdb *db, size_t last)
{
    size_t round = atomic_load_explicit(&db->s_last_round, memory_order_relaxed);
    if (round > last)
        last = round;
    if (db->o.group_linger_us <= 0 || last < 2 || db->q_n >= last || db->q_stop)
        return;
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_nsec += (long)db->o.group_linger_us * 1000L;
    while (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    db->q_want = last;
    db->q_waiting = true;
    while (db->q_n < last && !db->q_stop && pthread_cond_timedwait(&db->q_cv, &db->q_mu, &dl) == 0)
        ;
    db->q_waiting = false;
}

static void *committer_main(void *arg)
{
    sdb *db = arg;
    pthread_setname_np(pthread_self(), "sbx-commit");
    size_t max = (size_t)db->o.max_group_ops, last = 0;
    sdb__op **ops = calloc(max, sizeof *ops);
    if (!ops)
        abort();
    pthread_mutex_lock(&db->q_mu);
    for (;;) {
        db->q_want = 1;
        db->q_waiting = true;
        while (!db->q_head && !db->q_stop)
            pthread_cond_wait(&db->q_cv, &db->q_mu);
        db->q_waiting = false;
        if (!db->q_head)
            break; /* stopping and drained */
        linger(db, last);
        sdb__op *list = db->q_head, *tail = list;
        size_t n = 1;
        for (; n < max && tail->next; n++)
            tail = tail->next;
        db->q_head = tail->next;
        if (!db->q_head)
            db->q_tail = NULL;
        db->q_n -= n;
        tail->next = NULL;
        last = n;
        pthread_mutex_unlock(&db->q_mu);
        run_group(db, list, ops);
        pthread_mutex_lock(&db->q_mu);
    }
    pthread_mutex_unlock(&db->q_mu);
    free(ops);
    return NULL;
}

int sdb__commit_start(sdb *db)
{
    if (db->o.commit_mode != SDB_COMMIT_GROUP)
        return SBX_OK;
    db->gbatch = rocksdb_writebatch_wi_create(1u << 16, 1);
    db->durable_started = true;
    int e = sdb__durable_start(db);
    if (e == 0)
        e = pthread_create(&db->committer, NULL, committer_main, db);
    if (e) {
        sdb__commit_stop(db);
        return sbx_status_from_errno(e);
    }
    db->committer_started = true;
    return SBX_OK;
}

/* Stops the committer once it wrote everything queued, then durable.c's threads once every
 * write is durable and acknowledged. */
void sdb__commit_stop(sdb *db)
{
    if (db->committer_started) {
        pthread_mutex_lock(&db->q_mu);
        db->q_stop = true;
        pthread_cond_signal(&db->q_cv);
        pthread_mutex_unlock(&db->q_mu);
        pthread_join(db->committer, NULL);
        db->committer_started = false;
    }
    if (db->durable_started) {
        sdb__durable_stop(db);
        db->durable_started = false;
    }
    if (db->gbatch) {
        rocksdb_writebatch_wi_destroy(db->gbatch);
        db->gbatch = NULL;
        sdb__rc_free(&db->rc);
        sdb__dc_free(&db->dc);
    }
}

int sdb__commit_async(sdb *db, sdb__op *op)
{
    op->status = SBX_OK;
    op->next = NULL;
    pthread_mutex_lock(&db->q_mu);
    if (db->q_stop) {
        pthread_mutex_unlock(&db->q_mu);
        return sdb__err(op->err, op->errlen, SBX_UNAVAILABLE, "the store is shutting down");
    }
    if (db->q_tail)
        db->q_tail->next = op;
    else
        db->q_head = op;
    db->q_tail = op;
    db->q_n++;
    /* wake the committer only when it waits for this many: no futex call per writer */
    bool wake = db->q_waiting && db->q_n >= db->q_want;
    pthread_mutex_unlock(&db->q_mu);
    if (wake)
        pthread_cond_signal(&db->q_cv);
    return SBX_OK;
}

typedef struct {
    sdb__op op;
    sem_t sem;
} sync_op;

static void sync_done(sdb__op *op, int status)
{
    (void)status;
    sem_post(&((sync_op *)op)->sem);
}

int sdb__commit(sdb *db, sdb__apply_fn apply, void *arg, uint64_t lock_hash, bool exclusive,
                char *err, size_t errlen)
{
    if (db->o.commit_mode == SDB_COMMIT_DIRECT)
        return commit_direct(db, apply, arg, lock_hash, exclusive, err, errlen);
    sync_op w = {.op = {.apply = apply,
                        .arg = arg,
                        .exclusive = exclusive,
                        .err = err,
                        .errlen = errlen,
                        .done = sync_done}};
    sem_init(&w.sem, 0, 0);
    int rc = sdb__commit_async(db, &w.op);
    if (rc == SBX_OK) {
        while (sem_wait(&w.sem) != 0 && errno == EINTR)
            ;
        rc = w.op.status;
    }
    sem_destroy(&w.sem);
    return rc;
}

bool sdb_async_writes(const sdb *db)
{
    return db && db->o.commit_mode == SDB_COMMIT_GROUP;
}

static void async_done(sdb__op *op, int status)
{
    sdb__async *a = (sdb__async *)op;
    if (a->after)
        a->after(a, status);
    a->done(a->done_arg, status, status ? a->err : "");
    free(a);
}

int sdb__async_queue(sdb *db, sdb__async *a, sdb__apply_fn apply, void *arg,
                     void (*after)(sdb__async *a, int status), sdb_done_fn done, void *done_arg,
                     char *err, size_t errlen)
{
    a->db = db;
    a->after = after;
    a->done = done;
    a->done_arg = done_arg;
    a->op.apply = apply;
    a->op.arg = arg;
    a->op.err = a->err;
    a->op.errlen = sizeof a->err;
    a->op.exclusive = false;
    a->op.done = async_done;
    int rc = sdb_async_writes(db) ? sdb__commit_async(db, &a->op)
                                  : sdb__err(a->err, sizeof a->err, SBX_FAILED_PRECONDITION,
                                             "asynchronous writes need commit mode group");
    if (rc) {
        snprintf(err, errlen, "%s", a->err);
        free(a);
    }
    return rc;
}

int sdb__txn_get_u64(sdb__txn *t, int cf, const sdb__buf *key, uint64_t *v, char *err,
                     size_t errlen)
{
    char *raw = NULL;
    size_t n = 0;
    *v = 0;
    int rc = sdb__txn_get(t, cf, key, &raw, &n, err, errlen);
    if (rc == SBX_NOT_FOUND)
        return SBX_OK;
    if (rc == SBX_OK && n != 8)
        rc = sdb__err(err, errlen, SBX_DATA_LOSS, "store counter is corrupted");
    else if (rc == SBX_OK)
        *v = sdb__be64(raw);
    free(raw);
    return rc;
}

void sdb__txn_put_counter(sdb__txn *t, int cf, const sdb__buf *key, const void *v, size_t vn)
{
    if (t->rc && t->wi && cf == SDB__CF_META && sdb__dc_set(&t->db->dc, cf, key, v, vn))
        sdb__rc_set(t->rc, cf, key, v, vn); /* written once per group; the read cache follows */
    else
        sdb__txn_put(t, cf, key, v, vn);
}

void sdb__txn_put_u64(sdb__txn *t, int cf, const sdb__buf *key, uint64_t v)
{
    char b[8];
    sdb__be64_put(b, v);
    sdb__txn_put(t, cf, key, b, 8);
}

int sdb__txn_add_u64(sdb__txn *t, int cf, const sdb__buf *key, int64_t delta, uint64_t *after,
                     char *err, size_t errlen)
{
    uint64_t v;
    int rc = sdb__txn_get_u64(t, cf, key, &v, err, errlen);
    if (rc)
        return rc;
    if (delta < 0)
        v = (uint64_t)-delta > v ? 0 : v - (uint64_t)-delta;
    else
        v += (uint64_t)delta;
    char b[8];
    sdb__be64_put(b, v);
    sdb__txn_put_counter(t, cf, key, b, 8);
    if (after)
        *after = v;
    return SBX_OK;
}
