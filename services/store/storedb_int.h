/* storedb_int.h: the engine's internal interface, shared by its files and by nothing outside
 * services/store (tests of internals excepted). The database handle's state, then one section
 * per file in the order the engine is layered (storedb.h's head comment draws the picture):
 * every file calls only files of the sections above its own.
 *   keys.h        bytes, keys, validation, errors, page tokens (no handle)
 *   visible.c     the snapshot readers see (only durable writes)
 *   read.c        point reads and range iterators of the committed state
 *   codec.c       the values: history record, record id, counter, project, cache and kv entries
 *   watch.c       the watch stripes: append notification for WatchExecutions
 *   rcache.c      the group committer's read cache of metadata values and kv/cache entries
 *   counters.c    the group committer's counters, written once per group
 *   walsync.c     fdatasync of RocksDB's log files through the syncer's own descriptors
 *   durable.c     the syncer and the completer: written -> durable, visible, acknowledged
 *   commit.c      writes: operations, transactions, the group committer
 *   projects.c    implicit project creation (used by appends and cache puts)
 *   history.c     the body of an append (used by RecordExecution)
 *   cache.c       the body of a cache fill (used by RecordExecution)
 *   retention.c   the sweeper thread and the expiry compaction filter (started by open.c)
 */
#ifndef SBX_STOREDB_INT_H
#define SBX_STOREDB_INT_H

#include <pthread.h>
#include <rocksdb/c.h>
#include <stdatomic.h>

#include "keys.h"

enum {
    SDB__CF_DEFAULT,
    SDB__CF_PROJECTS,
    SDB__CF_HISTORY,
    SDB__CF_CACHE,
    SDB__CF_KV,
    SDB__CF_META,
    SDB__CF_COUNT
};

#define SDB__WATCH_STRIPES 64
#define SDB__LOCK_STRIPES 1024
#define SDB__MAX_GROUP_BYTES (16u << 20)

typedef struct sdb__op sdb__op;
typedef struct sdb__rc_ent sdb__rc_ent;
typedef struct sdb__snap sdb__snap;
typedef struct sdb__dc_ent sdb__dc_ent;
typedef struct sdb__dc_undo sdb__dc_undo;

/* counters.c: a group's counter changes, written once per group (see there). */
#define SDB__DC_MAX_VALUE 48
typedef struct sdb__dcount {
    sdb__dc_ent *e;
    size_t n, cap;
    size_t *slots; /* open addressing: entry index + 1, 0 = empty */
    size_t nslots;
    sdb__dc_undo *u;
    size_t un, ucap;
} sdb__dcount;

/* rcache.c: the committer's read cache (see there). */
typedef struct {
    sdb__rc_ent **b; /* buckets, allocated on first use */
    size_t n;
} sdb__rc_tab;
typedef struct sdb__rcache {
    sdb__rc_tab meta, ent; /* meta/projects values; kv/cache entries */
    bool entries;          /* the entries table is used (not with the compaction filter) */
} sdb__rcache;

/* walsync.c: the syncer's own descriptors of RocksDB's log files. */
#define SDB__WAL_FILES 8
typedef struct sdb__walsync {
    int dir_fd, ino_fd;
    struct {
        uint64_t num;
        int fd;
    } logs[SDB__WAL_FILES];
    int n;
    bool dir_dirty;
    int failed_errno; /* a failed sync is final */
    bool failed_logged;
} sdb__walsync;

typedef struct sdb__watch {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t gen;
} sdb__watch;

/* The handle. open.c creates and frees it; each part below belongs to the file named. */
struct sdb {
    sdb_opts o;
    char *path;
    rocksdb_t *rdb;
    rocksdb_options_t *dbopts;
    rocksdb_options_t *cfopts[SDB__CF_COUNT];
    rocksdb_column_family_handle_t *cf[SDB__CF_COUNT];
    rocksdb_block_based_table_options_t *bbto;
    rocksdb_cache_t *bcache;
    rocksdb_compactionfilter_t *cfilter[SDB__CF_COUNT];
    rocksdb_readoptions_t *ro;
    rocksdb_writeoptions_t *wo;

    /* commit.c: group committer */
    pthread_mutex_t q_mu;
    pthread_cond_t q_cv;
    sdb__op *q_head, *q_tail;
    size_t q_n;     /* ops queued */
    size_t q_want;  /* the committer waits on q_cv until q_n reaches this ... */
    bool q_waiting; /* ... while this is set (writers signal only then) */
    bool q_stop;
    bool committer_started;
    pthread_t committer;
    rocksdb_writebatch_wi_t *gbatch;
    sdb__rcache rc; /* committer thread only */
    sdb__dcount dc; /* committer thread only */
    bool durable_started;
    /* durable.c: syncer (sync on: makes written groups durable and visible) */
    bool pipelined; /* the committer writes unsynced and the syncer syncs */
    rocksdb_writeoptions_t *wo_nosync;
    sdb__walsync wal; /* walsync.c: the syncer's descriptors of the log files */
    pthread_mutex_t s_mu;
    pthread_cond_t s_cv;
    sdb__op *s_head, *s_tail;
    uint64_t s_notify;
    sdb__snap *s_snap;           /* the state after the newest group handed over */
    _Atomic size_t s_last_round; /* ops acknowledged by the last sync (commit.c's linger) */
    bool s_waiting, s_stop, syncer_started;
    pthread_t syncer;
    /* durable.c: completer (sync off: runs the done callbacks of written groups) */
    pthread_mutex_t c_mu;
    pthread_cond_t c_cv;
    sdb__op *c_head, *c_tail;
    bool c_waiting, c_stop, completer_started;
    pthread_t completer;
    /* visible.c: the published snapshot (NULL: readers read the latest state) */
    pthread_mutex_t v_mu;
    sdb__snap *v_cur;
    /* commit.c: direct mode */
    pthread_rwlock_t excl;
    pthread_mutex_t stripes[SDB__LOCK_STRIPES];

    /* watch.c: append notification */
    sdb__watch watch[SDB__WATCH_STRIPES];
    atomic_bool closing;

    /* retention.c */
    pthread_mutex_t sw_mu;
    pthread_mutex_t sweep_mu; /* one sweep at a time (thread or sdb_sweep) */
    pthread_cond_t sw_cv;
    bool sw_stop;
    bool sweeper_started;
    pthread_t sweeper;
    char *sweep_cursor[SDB__CF_COUNT];
    size_t sweep_cursor_len[SDB__CF_COUNT];

    struct {
        _Atomic uint64_t cache_hits, cache_misses, cache_expired, cache_puts;
        _Atomic uint64_t history_appends, history_duplicates;
        _Atomic uint64_t kv_reads, kv_writes;
        _Atomic uint64_t commit_groups, commit_ops, commit_failures, commit_syncs;
        _Atomic uint64_t swept_expired, swept_history;
    } st;
};

#define SDB__STAT_ADD(db, f, n) atomic_fetch_add_explicit(&(db)->st.f, (n), memory_order_relaxed)

/* Now on the database's clock (opts.clock: the wall clock unless a test injects one), ms. */
static inline int64_t sdb__now(const sdb *db)
{
    return db->o.clock(db->o.clock_arg);
}

/* ---- visible.c: the snapshot readers see ---- */
/* A snapshot of the latest state (committer, after a write); NULL when out of memory. */
sdb__snap *sdb__snap_take(sdb *db);
/* Frees a snapshot that was never published (NULL is harmless). */
void sdb__snap_drop(sdb *db, sdb__snap *p);
const rocksdb_snapshot_t *sdb__snap_rocks(const sdb__snap *p);
/* Makes p (NULL: the latest state) what readers see from now on. */
void sdb__visible_publish(sdb *db, sdb__snap *p);
/* The published snapshot, held until released (NULL: read the latest state). */
sdb__snap *sdb__visible_acquire(sdb *db);
void sdb__visible_release(sdb *db, sdb__snap *p);
/* Read options for p (db->ro when p is NULL). */
const rocksdb_readoptions_t *sdb__visible_ro(const sdb *db, const sdb__snap *p);
/* Unpublishes and frees the published snapshot (close). */
void sdb__visible_close(sdb *db);

/* ---- read.c: reads of the committed state ---- */
/* Point read of what is visible. SBX_OK (found, *val malloc'd: free()), SBX_NOT_FOUND, or an
 * error. */
int sdb__get(sdb *db, int cf, const sdb__buf *key, char **val, size_t *vn, char *err,
             size_t errlen);
/* The same of the latest state, written but perhaps not durable yet: the committer's own
 * reads only. */
int sdb__get_latest(sdb *db, int cf, const sdb__buf *key, char **val, size_t *vn, char *err,
                    size_t errlen);

/* An iterator over the keys of one column family that start with a prefix. */
typedef struct sdb__iter {
    sdb__buf lo, hi;
    sdb *db;
    sdb__snap *snap; /* the visible state it reads (NULL: the latest) */
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it;
} sdb__iter;
/* prefix NULL: the whole column family. Not positioned yet: seek first. */
void sdb__iter_open(sdb *db, sdb__iter *i, int cf, const sdb__buf *prefix);
void sdb__iter_seek_first(sdb__iter *i);
void sdb__iter_seek(sdb__iter *i, const void *key, size_t n);          /* first key >= key */
void sdb__iter_seek_for_prev(sdb__iter *i, const void *key, size_t n); /* last key <= key */
bool sdb__iter_valid(const sdb__iter *i);
void sdb__iter_next(sdb__iter *i);
void sdb__iter_prev(sdb__iter *i);
const char *sdb__iter_key(const sdb__iter *i, size_t *n);
const char *sdb__iter_value(const sdb__iter *i, size_t *n);
/* Frees the iterator. Returns SBX_OK, or the error the iteration hit (message in err). */
int sdb__iter_close(sdb__iter *i, char *err, size_t errlen);
/* One page of a listing of a tenant's names (the projects and kv column families: str(tenant)
 * raw(name)) that start with prefix: validates token (kind, issued for tenant and prefix; field
 * names it in errors) and opens i positioned after the token's cursor, the last name of the
 * previous page, or at the first name. On error nothing is open. */
int sdb__iter_open_page(sdb *db, sdb__iter *i, int cf, int kind, const char *field,
                        sdb_slice tenant, sdb_slice prefix, sdb_slice token, char *err,
                        size_t errlen);

/* ---- codec.c: the values (each starts with a format version byte) ---- */
#define SDB__VALUE_V1 1
/* Cache and kv entries keep their expiry (be64 ms, 0 = never) at the same offset, so the
 * compaction filter and the sweeper read it without knowing the kind of entry: this is that
 * expiry (0 when the entry has none or the value is not one). */
int64_t sdb__entry_expiry(const char *v, size_t vn);

/* Per-project counter (meta 'c'). */
typedef struct sdb__counter {
    uint64_t last_seq;
    uint64_t exec_count; /* records retained */
    int64_t last_recorded_ms, last_time_ms;
    int32_t last_exit_code;
} sdb__counter;
bool sdb__counter_decode(const char *v, size_t n, sdb__counter *c);
void sdb__counter_encode(sdb__buf *b, const sdb__counter *c);

/* History record: ver, be64 recorded, be64 time, str(record_id), payload. */
void sdb__rec_encode(sdb__buf *b, int64_t recorded_ms, int64_t time_ms, sdb_slice record_id,
                     sdb_slice data);
bool sdb__rec_decode_value(const char *v, size_t vn, sdb_hist_rec *r);
/* A history key and value; scope_n is the length of the project's scope (the seq follows). */
bool sdb__rec_decode(const char *k, size_t kn, size_t scope_n, const char *v, size_t vn,
                     sdb_hist_rec *r);
/* Record-id entry (meta 'i'): be64 seq, be64 recorded, be64 time of the first append. */
void sdb__recid_encode(sdb__buf *b, uint64_t seq, int64_t recorded_ms, int64_t time_ms);
bool sdb__recid_decode(const char *v, size_t vn, sdb_hist_result *r);

/* Project record. */
typedef struct sdb__projrec {
    uint64_t version;
    int64_t created_ms, updated_ms;
    uint64_t ret_max_records;
    int64_t ret_max_age_s;
    size_t n_fields;
    sdb_field *fields; /* malloc'd array pointing into the value */
} sdb__projrec;
/* r->fields is malloc'd (free it) and points into v. */
bool sdb__projrec_decode(const char *v, size_t n, sdb__projrec *r);
void sdb__projrec_encode(sdb__buf *b, const sdb__projrec *r);

/* Cache entry: ver, be64 created, be64 expires, be64 seq, payload. */
typedef struct sdb__cache_val {
    int64_t created_ms, expires_ms;
    uint64_t seq;
    sdb_slice data; /* points into the value */
} sdb__cache_val;
void sdb__cache_val_encode(sdb__buf *b, const sdb__cache_val *c);
bool sdb__cache_val_decode(const char *v, size_t vn, sdb__cache_val *c);

/* kv entry: ver, be64 version, be64 expires, be64 updated, value. */
typedef struct sdb__kv_val {
    bool live; /* not expired at the time given to decode */
    sdb_kv_meta meta;
    sdb_slice value; /* points into the value */
} sdb__kv_val;
void sdb__kv_val_encode(sdb__buf *b, const sdb_kv_meta *m, sdb_slice value);
bool sdb__kv_val_decode(const char *v, size_t vn, int64_t now, sdb__kv_val *e);

/* ---- watch.c: append notification (the ticket protocol of sdb_hist_watch_*) ---- */
static inline unsigned sdb__watch_stripe(sdb_slice tenant, sdb_slice project)
{
    return (unsigned)(sdb__hash(tenant, project) % SDB__WATCH_STRIPES);
}
void sdb__watch_init(sdb *db);
/* Bumps the generation of every stripe set in mask and wakes its waiters. */
void sdb__watch_notify(sdb *db, uint64_t mask);
/* Wakes every waiter (db->closing is set: their waits return SBX_UNAVAILABLE). */
void sdb__watch_close(sdb *db);
void sdb__watch_destroy(sdb *db);

/* ---- counters.c: a group's counters (committer thread only) ---- */
/* The counter's value changed in this group (false: not deferred, read the batch); *v points
 * into the table until its next change. */
bool sdb__dc_get(sdb__dcount *d, int cf, const sdb__buf *key, const char **v, size_t *vn);
/* Records the counter's new value (undoable); false when above SDB__DC_MAX_VALUE bytes or out
 * of memory (put it directly). */
bool sdb__dc_set(sdb__dcount *d, int cf, const sdb__buf *key, const void *v, size_t vn);
/* The key was put or deleted directly: the batch holds its value now (undoable). */
void sdb__dc_forget(sdb__dcount *d, int cf, const sdb__buf *key);
/* Undo position before an operation, and rolling back to it when the operation failed. */
size_t sdb__dc_mark(const sdb__dcount *d);
void sdb__dc_rollback(sdb__dcount *d, size_t mark);
/* Hands each changed counter to put (once), then empties the table for the next group. */
void sdb__dc_drain(sdb__dcount *d,
                   void (*put)(void *arg, int cf, const char *k, size_t kn, const char *v,
                               size_t vn),
                   void *arg);
void sdb__dc_free(sdb__dcount *d);

/* ---- walsync.c: the WAL made durable by the syncer ---- */
/* Opens the data dir and watches it for new log files; an error when inotify is unavailable. */
int sdb__walsync_open(sdb *db, char *err, size_t errlen);
/* Makes everything written to the log so far durable: SBX_OK, or an error (final). */
int sdb__walsync_sync(sdb *db, char *err, size_t errlen);
void sdb__walsync_close(sdb *db);

/* ---- durable.c: written -> durable, visible, acknowledged ---- */
/* Ops head..tail (linked by next) of one group, whose write (if wrote) is done: acknowledges
 * them once it is durable (with sync on: after the syncer's next fdatasync, which also
 * publishes the state after it and wakes the watchers of the stripes in notify; with sync off
 * at once, on the completer thread). */
void sdb__durable_queue(sdb *db, sdb__op *head, sdb__op *tail, uint64_t notify, bool wrote);
/* Starts the syncer (sync on) or the completer (sync off); an errno on failure. */
int sdb__durable_start(sdb *db);
/* After the committer stopped: drains and stops both. */
void sdb__durable_stop(sdb *db);

/* The hash of a key of a column family: the committer's in-memory tables (rcache.c,
 * counters.c). */
static inline uint64_t sdb__hash_cf(int cf, const char *k, size_t n)
{
    unsigned char c = (unsigned char)cf;
    return sdb__hash(sdb_slice_n(&c, 1), sdb_slice_n(k, n));
}

/* ---- rcache.c: the committer's read cache of meta/projects values and kv/cache entries ---- */
bool sdb__rc_cacheable(const sdb__rcache *rc, int cf);
/* SBX_OK (*val malloc'd), SBX_NOT_FOUND (cached absence), or -1: not cached. */
int sdb__rc_get(sdb__rcache *rc, int cf, const sdb__buf *key, char **val, size_t *vn);
/* SBX_OK (present), SBX_NOT_FOUND (cached absence), or -1: not known. */
int sdb__rc_exists(sdb__rcache *rc, int cf, const sdb__buf *key);
/* The key's value is now v (NULL: absent). */
void sdb__rc_set(sdb__rcache *rc, int cf, const sdb__buf *key, const void *v, size_t vn);
void sdb__rc_clear(sdb__rcache *rc);
void sdb__rc_free(sdb__rcache *rc);

/* ---- commit.c: writes ---- */
typedef struct sdb__txn sdb__txn;
/* An operation's body: reads through the txn see the committed state plus every earlier
 * operation of the same group; it must validate before it writes (a failing op is rolled
 * back, but keep it simple). Returns a status; on error fills err. */
typedef int (*sdb__apply_fn)(sdb__txn *t, void *arg, char *err, size_t errlen);

/* One queued write. The caller fills apply, arg, exclusive, err/errlen and done; done runs on
 * the committer thread once the op's writes are durable (status SBX_OK) or failed, exactly
 * once, and may free the op. It must not block: it runs before the next group starts. */
struct sdb__op {
    sdb__apply_fn apply;
    void *arg;
    bool exclusive;
    int status;
    char *err;
    size_t errlen;
    void (*done)(sdb__op *op, int status);
    sdb__op *next;
};
/* GROUP mode: queues op and returns SBX_OK (done will run), or SBX_UNAVAILABLE (message in
 * op->err; done will not run) when the store is closing. */
int sdb__commit_async(sdb *db, sdb__op *op);

/* The state of one public asynchronous write (storedb.h): embed it first in a struct that also
 * holds the op's arg, and queue it with sdb__async_queue. */
typedef struct sdb__async sdb__async;
struct sdb__async {
    sdb__op op;
    sdb *db;
    void (*after)(sdb__async *a, int status); /* bookkeeping before done (may be NULL) */
    sdb_done_fn done;
    void *done_arg;
    char err[512];
};
/* Queues a (malloc'd, freed after done ran) to run apply(arg), then after and done. On error a
 * is freed, done does not run and the message is copied to err. */
int sdb__async_queue(sdb *db, sdb__async *a, sdb__apply_fn apply, void *arg,
                     void (*after)(sdb__async *a, int status), sdb_done_fn done, void *done_arg,
                     char *err, size_t errlen);

/* Runs apply atomically with respect to every other write and returns once its writes are
 * durable (or failed). lock_hash picks the stripe lock in DIRECT mode; exclusive ops run
 * alone and may use range deletes. */
int sdb__commit(sdb *db, sdb__apply_fn apply, void *arg, uint64_t lock_hash, bool exclusive,
                char *err, size_t errlen);
int sdb__commit_start(sdb *db);
void sdb__commit_stop(sdb *db);

sdb *sdb__txn_db(sdb__txn *t);
int sdb__txn_get(sdb__txn *t, int cf, const sdb__buf *key, char **val, size_t *vn, char *err,
                 size_t errlen);
void sdb__txn_put(sdb__txn *t, int cf, const sdb__buf *key, const void *v, size_t vn);
void sdb__txn_del(sdb__txn *t, int cf, const sdb__buf *key);
/* Exclusive ops only: deletes [begin, end). */
void sdb__txn_del_range(sdb__txn *t, int cf, const sdb__buf *begin, const sdb__buf *end);
/* Whether key is there: SBX_OK, SBX_NOT_FOUND or an error (the committer's cache knows
 * of entries whose values are too big for it). */
int sdb__txn_exists(sdb__txn *t, int cf, const sdb__buf *key, char *err, size_t errlen);
/* be64 counters: a missing key reads as 0. */
int sdb__txn_get_u64(sdb__txn *t, int cf, const sdb__buf *key, uint64_t *v, char *err,
                     size_t errlen);
void sdb__txn_put_u64(sdb__txn *t, int cf, const sdb__buf *key, uint64_t v);
/* A value (of SDB__DC_MAX_VALUE bytes at most to be deferred) that changes with most writes
 * and is read only through the txn: put into the batch once per group (counters.c). */
void sdb__txn_put_counter(sdb__txn *t, int cf, const sdb__buf *key, const void *v, size_t vn);
/* Adds delta (may be negative; clamps at 0) to a be64 counter. */
int sdb__txn_add_u64(sdb__txn *t, int cf, const sdb__buf *key, int64_t delta, uint64_t *after,
                     char *err, size_t errlen);
/* Wake watchers of that stripe once the write is durable. */
void sdb__txn_notify(sdb__txn *t, unsigned stripe);

/* ---- projects.c ---- */
/* Writes a version-0 project record when the project does not exist (implicit creation by an
 * append or a cache put). max_records (may be NULL) gets the history retention by count in
 * force for the project (its own, else the store default); then a stored record that does not
 * decode is DATA_LOSS. */
int sdb__project_ensure(sdb__txn *t, sdb_slice tenant, sdb_slice project, int64_t now,
                        uint64_t *max_records, char *err, size_t errlen);

/* ---- history.c ---- */
/* The checks of sdb_hist_append (before the commit). */
int sdb__hist_check_append(sdb *db, sdb_slice tenant, const sdb_hist_entry *a, char *err,
                           size_t errlen);
/* The body of an append: record-id check, sequence, record, counter, implicit project
 * creation, retention by count, watch notification. */
int sdb__hist_apply_append(sdb__txn *t, sdb_slice tenant, const sdb_hist_entry *a,
                           sdb_hist_result *res, char *err, size_t errlen);

/* ---- cache.c ---- */
/* The checks of sdb_cache_put (before the commit); *ttl_s gets the TTL in force. */
int sdb__cache_check_put(sdb *db, sdb_slice tenant, sdb_slice project, sdb_slice cmd,
                         sdb_slice data, int64_t ttl_s, int64_t *eff_ttl_s, char *err,
                         size_t errlen);
/* The body of a fill: the entry under the project's current generation and the entry count. */
int sdb__cache_fill(sdb__txn *t, sdb_slice tenant, sdb_slice project, sdb_slice cmd, sdb_slice data,
                    int64_t expires, uint64_t seq, char *err, size_t errlen);

/* ---- retention.c ---- */
int sdb__sweeper_start(sdb *db);
void sdb__sweeper_stop(sdb *db);
rocksdb_compactionfilter_t *sdb__expiry_filter(sdb *db, int cf);

#endif
