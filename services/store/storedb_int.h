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
    SDB_CF_DEFAULT,
    SDB_CF_PROJECTS,
    SDB_CF_HISTORY,
    SDB_CF_CACHE,
    SDB_CF_KV,
    SDB_CF_META,
    SDB_CF_COUNT
};

#define SDB_WATCH_STRIPES 64
#define SDB_LOCK_STRIPES 1024
#define SDB_VALUE_V1 1
#define SDB_MAX_GROUP_BYTES (16u << 20)

/* Value header sizes (fixed offsets are read by the compaction filter). */
#define SDB_CACHE_HDR 25 /* ver, created, expires, seq */
#define SDB_KV_HDR 25    /* ver, version, expires, updated */

typedef struct sdb_op sdb_op;

typedef struct sdb_watch {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t gen;
} sdb_watch;

struct sbx_storedb {
    sbx_storedb_opts o;
    char *path;
    rocksdb_t *rdb;
    rocksdb_options_t *dbopts;
    rocksdb_options_t *cfopts[SDB_CF_COUNT];
    rocksdb_column_family_handle_t *cf[SDB_CF_COUNT];
    rocksdb_block_based_table_options_t *bbto;
    rocksdb_cache_t *bcache;
    rocksdb_compactionfilter_t *cfilter[SDB_CF_COUNT];
    rocksdb_readoptions_t *ro;
    rocksdb_writeoptions_t *wo;

    /* commit.c: group committer */
    pthread_mutex_t q_mu;
    pthread_cond_t q_cv;
    sdb_op *q_head, *q_tail;
    bool q_stop;
    bool committer_started;
    pthread_t committer;
    rocksdb_writebatch_wi_t *gbatch;
    /* commit.c: direct mode */
    pthread_rwlock_t excl;
    pthread_mutex_t stripes[SDB_LOCK_STRIPES];

    /* history.c: watch notification */
    sdb_watch watch[SDB_WATCH_STRIPES];
    atomic_bool closing;

    /* retention.c */
    pthread_mutex_t sw_mu;
    pthread_mutex_t sweep_mu; /* one sweep at a time (thread or sbx_storedb_sweep) */
    pthread_cond_t sw_cv;
    bool sw_stop;
    bool sweeper_started;
    pthread_t sweeper;
    char *sweep_cursor[SDB_CF_COUNT];
    size_t sweep_cursor_len[SDB_CF_COUNT];

    struct {
        _Atomic uint64_t cache_hits, cache_misses, cache_expired, cache_puts;
        _Atomic uint64_t history_appends, history_duplicates;
        _Atomic uint64_t kv_reads, kv_writes;
        _Atomic uint64_t commit_groups, commit_ops, commit_failures;
        _Atomic uint64_t swept_expired, swept_history;
    } st;
};

#define SDB_STAT_ADD(db, f, n) atomic_fetch_add_explicit(&(db)->st.f, (n), memory_order_relaxed)

/* ---- keys.c: byte builder and reader ---- */
typedef struct sdb_buf {
    char *p;
    size_t n, cap;
    char inl[240];
} sdb_buf;

void sdb_buf_init(sdb_buf *b);
void sdb_buf_free(sdb_buf *b);
void sdb_buf_reset(sdb_buf *b);
void sdb_buf_raw(sdb_buf *b, const void *p, size_t n);
void sdb_buf_u8(sdb_buf *b, uint8_t v);
void sdb_buf_be16(sdb_buf *b, uint16_t v);
void sdb_buf_be32(sdb_buf *b, uint32_t v);
void sdb_buf_be64(sdb_buf *b, uint64_t v);
void sdb_buf_str(sdb_buf *b, sbx_slice s); /* u16 length + bytes (s.n <= 65535) */
void sdb_buf_copy(sdb_buf *dst, const sdb_buf *src);
/* Turns b into the smallest key greater than every key having b as a prefix. Returns false
 * when there is none (all bytes 0xff). */
bool sdb_buf_successor(sdb_buf *b);

typedef struct sdb_rd {
    const char *p;
    size_t n;
    bool bad;
} sdb_rd;
static inline sdb_rd sdb_rd_init(const void *p, size_t n)
{
    sdb_rd r = {(const char *)p, n, false};
    return r;
}
uint8_t sdb_rd_u8(sdb_rd *r);
uint16_t sdb_rd_be16(sdb_rd *r);
uint32_t sdb_rd_be32(sdb_rd *r);
uint64_t sdb_rd_be64(sdb_rd *r);
sbx_slice sdb_rd_bytes(sdb_rd *r, size_t n);
sbx_slice sdb_rd_str(sdb_rd *r); /* u16 length + bytes */

static inline uint64_t sdb_be64(const void *p)
{
    const unsigned char *b = p;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | b[i];
    return v;
}

/* ---- keys.c: key builders ---- */
void sdb_key_tenant(sdb_buf *b, sbx_slice tenant);
void sdb_key_project(sdb_buf *b, sbx_slice tenant, sbx_slice project); /* projects CF */
void sdb_key_scope(sdb_buf *b, sbx_slice tenant, sbx_slice project);   /* history/cache/meta */
void sdb_key_hist(sdb_buf *b, sbx_slice tenant, sbx_slice project, uint64_t seq);
void sdb_key_meta(sdb_buf *b, sbx_slice tenant, sbx_slice project, char tag, sbx_slice suffix);
void sdb_key_cache(sdb_buf *b, sbx_slice tenant, sbx_slice project, uint64_t gen, sbx_slice cmd);
void sdb_key_kv(sdb_buf *b, sbx_slice tenant, sbx_slice key);
/* Splits a projects-CF or kv-CF key into tenant and the raw rest. */
bool sdb_key_split(const char *k, size_t n, sbx_slice *tenant, sbx_slice *rest);
/* Splits a scope-prefixed key (history/cache/meta) into tenant, project and the rest. */
bool sdb_key_split_scope(const char *k, size_t n, sbx_slice *tenant, sbx_slice *project,
                         sbx_slice *rest);

uint64_t sdb_hash(sbx_slice a, sbx_slice b);
static inline unsigned sdb_watch_stripe(sbx_slice tenant, sbx_slice project)
{
    return (unsigned)(sdb_hash(tenant, project) % SDB_WATCH_STRIPES);
}

/* ---- keys.c: validation and errors ---- */
int sdb_err(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* field: must not be empty (unless allow_empty), at most max bytes, no NUL byte. */
int sdb_check_bytes(const char *field, sbx_slice s, size_t max, bool allow_empty, char *err,
                    size_t errlen);
int sdb_check_tenant(sbx_slice tenant, char *err, size_t errlen);
int sdb_check_project(sbx_slice project, char *err, size_t errlen);
/* Applies the list-limit rule: def when !has; < 1 -> INVALID_ARGUMENT; > max clamped. */
int sdb_check_limit(bool has, int64_t limit, uint32_t def, sbx_page *page, char *err,
                    size_t errlen);
/* Maps a RocksDB error string to a status with a clear message; frees rerr. */
int sdb_rocks_err(const char *what, char *rerr, char *err, size_t errlen);
int sdb_rocks_status(const char *rerr);

/* ---- keys.c: page tokens ---- */
enum { SDB_TOK_HIST = 1, SDB_TOK_PROJ = 2, SDB_TOK_KV = 3 };
/* base64url(ver, kind, bind(tenant, scope), u16 len, cursor, check). */
void sdb_token_encode(int kind, sbx_slice tenant, sbx_slice scope, const void *cur, size_t n,
                      char out[SBX_TOKEN_MAX]);
/* Validates and decodes; cur must hold SBX_TOKEN_MAX bytes. INVALID_ARGUMENT on any defect. */
int sdb_token_decode(const char *field, int kind, sbx_slice tenant, sbx_slice scope, sbx_slice tok,
                     char *cur, size_t *n, char *err, size_t errlen);

/* ---- db.c ---- */
/* Point read of the committed state. SBX_OK (found, *val malloc'd: free()), SBX_NOT_FOUND,
 * or an error. */
int sdb_get(sbx_storedb *db, int cf, const sdb_buf *key, char **val, size_t *vn, char *err,
            size_t errlen);
int64_t sdb_now(const sbx_storedb *db);

/* ---- commit.c ---- */
typedef struct sdb_txn sdb_txn;
/* An operation's body: reads through the txn see the committed state plus every earlier
 * operation of the same group; it must validate before it writes (a failing op is rolled
 * back, but keep it simple). Returns a status; on error fills err. */
typedef int (*sdb_apply_fn)(sdb_txn *t, void *arg, char *err, size_t errlen);

/* Runs apply atomically with respect to every other write and returns once its writes are
 * durable (or failed). lock_hash picks the stripe lock in DIRECT mode; exclusive ops run
 * alone and may use range deletes. */
int sdb_commit(sbx_storedb *db, sdb_apply_fn apply, void *arg, uint64_t lock_hash, bool exclusive,
               char *err, size_t errlen);
int sdb_commit_start(sbx_storedb *db);
void sdb_commit_stop(sbx_storedb *db);

sbx_storedb *sdb_txn_db(sdb_txn *t);
int sdb_txn_get(sdb_txn *t, int cf, const sdb_buf *key, char **val, size_t *vn, char *err,
                size_t errlen);
void sdb_txn_put(sdb_txn *t, int cf, const sdb_buf *key, const void *v, size_t vn);
void sdb_txn_del(sdb_txn *t, int cf, const sdb_buf *key);
/* Exclusive ops only: deletes [begin, end). */
void sdb_txn_del_range(sdb_txn *t, int cf, const sdb_buf *begin, const sdb_buf *end);
/* be64 counters: a missing key reads as 0. */
int sdb_txn_get_u64(sdb_txn *t, int cf, const sdb_buf *key, uint64_t *v, char *err, size_t errlen);
void sdb_txn_put_u64(sdb_txn *t, int cf, const sdb_buf *key, uint64_t v);
/* Adds delta (may be negative; clamps at 0) to a be64 counter. */
int sdb_txn_add_u64(sdb_txn *t, int cf, const sdb_buf *key, int64_t delta, uint64_t *after,
                    char *err, size_t errlen);
/* Wake watchers of that stripe once the write is durable. */
void sdb_txn_notify(sdb_txn *t, unsigned stripe);

/* ---- history.c ---- */
void sdb_watch_notify(sbx_storedb *db, uint64_t mask);
void sdb_watch_init(sbx_storedb *db);
void sdb_watch_destroy(sbx_storedb *db);
void sdb_watch_close(sbx_storedb *db);

typedef struct sdb_counter {
    bool exists;
    uint64_t last_seq;
    uint64_t exec_count; /* records retained */
    int64_t last_recorded_ms, last_time_ms;
    int32_t last_exit_code;
} sdb_counter;
bool sdb_counter_decode(const char *v, size_t n, sdb_counter *c);
void sdb_counter_encode(sdb_buf *b, const sdb_counter *c);
/* History record value: ver, be64 recorded, be64 time, str(record_id), payload. */
bool sdb_rec_decode_value(const char *v, size_t vn, sbx_hist_rec *r);
/* The body of an append (also used by RecordExecution): record-id check, sequence, record,
 * counter, implicit project creation, watch notification. */
int sdb_hist_apply_append(sdb_txn *t, sbx_slice tenant, const sbx_hist_entry *a,
                          sbx_hist_result *res, char *err, size_t errlen);
int sdb_hist_check_append(sbx_storedb *db, sbx_slice tenant, const sbx_hist_entry *a, char *err,
                          size_t errlen);
int sdb_check_size(const char *field, size_t n, size_t max, char *err, size_t errlen);

/* ---- projects.c ---- */
typedef struct sdb_projrec {
    uint64_t version;
    int64_t created_ms, updated_ms;
    uint64_t ret_max_records;
    int64_t ret_max_age_s;
    size_t n_fields;
    sbx_field *fields; /* malloc'd array pointing into the value */
} sdb_projrec;
bool sdb_projrec_decode(const char *v, size_t n, sdb_projrec *r);
void sdb_projrec_encode(sdb_buf *b, const sdb_projrec *r);
/* Writes a version-0 project record when the project does not exist (implicit creation by an
 * append or a cache put). */
int sdb_ensure_project(sdb_txn *t, sbx_slice tenant, sbx_slice project, int64_t now, char *err,
                       size_t errlen);

/* ---- retention.c ---- */
int sdb_sweeper_start(sbx_storedb *db);
void sdb_sweeper_stop(sbx_storedb *db);
rocksdb_compactionfilter_t *sdb_expiry_filter(sbx_storedb *db, int cf);

#endif
