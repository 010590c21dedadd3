/* storedb_int.h: internals shared by the engine's files (db.c, keys.c, commit.c, history.c,
 * cache.c, projects.c, kv.c, checkpoint.c, retention.c). Not for use outside services/store.
 *
 * Key layout (every key starts with the tenant; "str" = u16 big-endian length + bytes):
 *   projects: str(tenant) raw(project_id)                       -> project record
 *   history:  str(tenant) str(project) be64(seq)                -> history record
 *   cache:    str(tenant) str(project) be64(generation) raw(cmd) -> cache entry
 *   meta:     str(tenant) str(project) 'c'                      -> counter (last seq, stats)
 *             str(tenant) str(project) 'g'                      -> cache generation (be64)
 *             str(tenant) str(project) 'n'                      -> cache entries (be64)
 *             str(tenant) str(project) 'i' raw(record_id)       -> be64(seq) be64(time)
 *             str(tenant) str("") 'v'                           -> kv revision (be64)
 *             str(tenant) str("") 'n'                           -> kv keys (be64)
 *   kv:       str(tenant) raw(key)                              -> kv entry
 * The project scope str(tenant) str(project) is a prefix of exactly that project's history,
 * cache and meta keys, so DeleteProject is three range deletes (project ids are never
 * empty, so the tenant-wide meta keys under str("") are outside every project scope). Values
 * start with a format version byte (1).
 */
#ifndef SBX_STOREDB_INT_H
#define SBX_STOREDB_INT_H

#include <pthread.h>
#include <rocksdb/c.h>
#include <stdatomic.h>

#include "status.h"
#include "storedb.h"

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
#define SDB__VALUE_V1 1
#define SDB__MAX_GROUP_BYTES (16u << 20)

/* Value header sizes (fixed offsets are read by the compaction filter). */
#define SDB__CACHE_HDR 25 /* ver, created, expires, seq */
#define SDB__KV_HDR 25    /* ver, version, expires, updated */

typedef struct sdb__op sdb__op;

typedef struct sdb__watch {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t gen;
} sdb__watch;

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
    bool q_stop;
    bool committer_started;
    pthread_t committer;
    rocksdb_writebatch_wi_t *gbatch;
    /* commit.c: direct mode */
    pthread_rwlock_t excl;
    pthread_mutex_t stripes[SDB__LOCK_STRIPES];

    /* history.c: watch notification */
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
        _Atomic uint64_t commit_groups, commit_ops, commit_failures;
        _Atomic uint64_t swept_expired, swept_history;
    } st;
};

#define SDB__STAT_ADD(db, f, n) atomic_fetch_add_explicit(&(db)->st.f, (n), memory_order_relaxed)

/* ---- keys.c: byte builder and reader ---- */
typedef struct sdb__buf {
    char *p;
    size_t n, cap;
    char inl[240];
} sdb__buf;

void sdb__buf_init(sdb__buf *b);
void sdb__buf_free(sdb__buf *b);
void sdb__buf_reset(sdb__buf *b);
void sdb__buf_raw(sdb__buf *b, const void *p, size_t n);
void sdb__buf_u8(sdb__buf *b, uint8_t v);
void sdb__buf_be16(sdb__buf *b, uint16_t v);
void sdb__buf_be32(sdb__buf *b, uint32_t v);
void sdb__buf_be64(sdb__buf *b, uint64_t v);
void sdb__buf_str(sdb__buf *b, sdb_slice s); /* u16 length + bytes (s.n <= 65535) */
void sdb__buf_copy(sdb__buf *dst, const sdb__buf *src);
/* Turns b into the smallest key greater than every key having b as a prefix. Returns false
 * when there is none (all bytes 0xff). */
bool sdb__buf_successor(sdb__buf *b);

typedef struct sdb__rd {
    const char *p;
    size_t n;
    bool bad;
} sdb__rd;
static inline sdb__rd sdb__rd_init(const void *p, size_t n)
{
    sdb__rd r = {(const char *)p, n, false};
    return r;
}
uint8_t sdb__rd_u8(sdb__rd *r);
uint16_t sdb__rd_be16(sdb__rd *r);
uint32_t sdb__rd_be32(sdb__rd *r);
uint64_t sdb__rd_be64(sdb__rd *r);
sdb_slice sdb__rd_bytes(sdb__rd *r, size_t n);
sdb_slice sdb__rd_str(sdb__rd *r); /* u16 length + bytes */

static inline uint64_t sdb__be64(const void *p)
{
    const unsigned char *b = p;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | b[i];
    return v;
}

/* ---- keys.c: key builders ---- */
void sdb__key_tenant(sdb__buf *b, sdb_slice tenant);
void sdb__key_project(sdb__buf *b, sdb_slice tenant, sdb_slice project); /* projects CF */
void sdb__key_scope(sdb__buf *b, sdb_slice tenant, sdb_slice project);   /* history/cache/meta */
void sdb__key_hist(sdb__buf *b, sdb_slice tenant, sdb_slice project, uint64_t seq);
void sdb__key_meta(sdb__buf *b, sdb_slice tenant, sdb_slice project, char tag, sdb_slice suffix);
void sdb__key_cache(sdb__buf *b, sdb_slice tenant, sdb_slice project, uint64_t gen, sdb_slice cmd);
void sdb__key_kv(sdb__buf *b, sdb_slice tenant, sdb_slice key);
/* Splits a projects-CF or kv-CF key into tenant and the raw rest. */
bool sdb__key_split(const char *k, size_t n, sdb_slice *tenant, sdb_slice *rest);
/* Splits a scope-prefixed key (history/cache/meta) into tenant, project and the rest. */
bool sdb__key_split_scope(const char *k, size_t n, sdb_slice *tenant, sdb_slice *project,
                          sdb_slice *rest);

uint64_t sdb__hash(sdb_slice a, sdb_slice b);
static inline unsigned sdb__watch_stripe(sdb_slice tenant, sdb_slice project)
{
    return (unsigned)(sdb__hash(tenant, project) % SDB__WATCH_STRIPES);
}

/* ---- keys.c: validation and errors ---- */
int sdb__err(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* field: must not be empty (unless allow_empty), at most max bytes, no NUL byte. */
int sdb__check_bytes(const char *field, sdb_slice s, size_t max, bool allow_empty, char *err,
                     size_t errlen);
int sdb__check_tenant(sdb_slice tenant, char *err, size_t errlen);
int sdb__check_project(sdb_slice project, char *err, size_t errlen);
/* Applies the list-limit rule: def when !has; < 1 -> INVALID_ARGUMENT; > max clamped. */
int sdb__check_limit(bool has, int64_t limit, uint32_t def, sdb_page *page, char *err,
                     size_t errlen);
/* Maps a RocksDB error string to a status with a clear message; frees rerr. */
int sdb__rocks_err(const char *what, char *rerr, char *err, size_t errlen);
int sdb__rocks_status(const char *rerr);

/* ---- keys.c: page tokens ---- */
enum { SDB__TOK_HIST = 1, SDB__TOK_PROJ = 2, SDB__TOK_KV = 3 };
/* base64url(ver, kind, bind(tenant, scope), u16 len, cursor, check). */
void sdb__token_encode(int kind, sdb_slice tenant, sdb_slice scope, const void *cur, size_t n,
                       char out[SDB_TOKEN_MAX]);
/* Validates and decodes; cur must hold SDB_TOKEN_MAX bytes. INVALID_ARGUMENT on any defect. */
int sdb__token_decode(const char *field, int kind, sdb_slice tenant, sdb_slice scope, sdb_slice tok,
                      char *cur, size_t *n, char *err, size_t errlen);

/* ---- db.c ---- */
/* Point read of the committed state. SBX_OK (found, *val malloc'd: free()), SBX_NOT_FOUND,
 * or an error. */
int sdb__get(sdb *db, int cf, const sdb__buf *key, char **val, size_t *vn, char *err,
             size_t errlen);
int64_t sdb__now(const sdb *db);

/* ---- commit.c ---- */
typedef struct sdb__txn sdb__txn;
/* An operation's body: reads through the txn see the committed state plus every earlier
 * operation of the same group; it must validate before it writes (a failing op is rolled
 * back, but keep it simple). Returns a status; on error fills err. */
typedef int (*sdb__apply_fn)(sdb__txn *t, void *arg, char *err, size_t errlen);

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
/* be64 counters: a missing key reads as 0. */
int sdb__txn_get_u64(sdb__txn *t, int cf, const sdb__buf *key, uint64_t *v, char *err,
                     size_t errlen);
void sdb__txn_put_u64(sdb__txn *t, int cf, const sdb__buf *key, uint64_t v);
/* Adds delta (may be negative; clamps at 0) to a be64 counter. */
int sdb__txn_add_u64(sdb__txn *t, int cf, const sdb__buf *key, int64_t delta, uint64_t *after,
                     char *err, size_t errlen);
/* Wake watchers of that stripe once the write is durable. */
void sdb__txn_notify(sdb__txn *t, unsigned stripe);

/* ---- history.c ---- */
void sdb__watch_notify(sdb *db, uint64_t mask);
void sdb__watch_init(sdb *db);
void sdb__watch_destroy(sdb *db);
void sdb__watch_close(sdb *db);

typedef struct sdb__counter {
    bool exists;
    uint64_t last_seq;
    uint64_t exec_count; /* records retained */
    int64_t last_recorded_ms, last_time_ms;
    int32_t last_exit_code;
} sdb__counter;
bool sdb__counter_decode(const char *v, size_t n, sdb__counter *c);
void sdb__counter_encode(sdb__buf *b, const sdb__counter *c);
/* History record value: ver, be64 recorded, be64 time, str(record_id), payload. */
bool sdb__rec_decode_value(const char *v, size_t vn, sdb_hist_rec *r);
/* The body of an append (also used by RecordExecution): record-id check, sequence, record,
 * counter, implicit project creation, watch notification. */
int sdb__hist_apply_append(sdb__txn *t, sdb_slice tenant, const sdb_hist_entry *a,
                           sdb_hist_result *res, char *err, size_t errlen);
int sdb__hist_check_append(sdb *db, sdb_slice tenant, const sdb_hist_entry *a, char *err,
                           size_t errlen);
int sdb__check_size(const char *field, size_t n, size_t max, char *err, size_t errlen);

/* ---- projects.c ---- */
typedef struct sdb__projrec {
    uint64_t version;
    int64_t created_ms, updated_ms;
    uint64_t ret_max_records;
    int64_t ret_max_age_s;
    size_t n_fields;
    sdb_field *fields; /* malloc'd array pointing into the value */
} sdb__projrec;
bool sdb__projrec_decode(const char *v, size_t n, sdb__projrec *r);
void sdb__projrec_encode(sdb__buf *b, const sdb__projrec *r);
/* Writes a version-0 project record when the project does not exist (implicit creation by an
 * append or a cache put). */
int sdb__ensure_project(sdb__txn *t, sdb_slice tenant, sdb_slice project, int64_t now, char *err,
                        size_t errlen);

/* ---- retention.c ---- */
int sdb__sweeper_start(sdb *db);
void sdb__sweeper_stop(sdb *db);
rocksdb_compactionfilter_t *sdb__expiry_filter(sdb *db, int cf);

#endif
