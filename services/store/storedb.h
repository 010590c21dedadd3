/* storedb.h: sbx-store's storage engine on RocksDB (no gRPC, no protobuf).
 *
 * One database holds, per tenant: projects (a field map with a version), execution history
 * (per-project gapless sequence), a result cache with TTL and a Puter-KV-style key space.
 * Every key starts with the tenant, so one tenant can never read or touch another's data.
 *
 * Conventions for every function below:
 *   - returns an sbx status code (common/status.h: gRPC numbers); on failure a message naming
 *     the field and the limit is written to err (errlen bytes, always NUL-terminated; err may
 *     be NULL when errlen is 0);
 *   - byte strings are sdb_slice (pointer + length, need not be NUL-terminated); ids and keys
 *     must not contain NUL bytes;
 *   - pointers handed to callbacks are valid only during the callback; memory returned through
 *     out-parameters is owned by the caller and freed as the function says (free() unless a
 *     dedicated *_free is named). Freeing NULL is harmless.
 *   - a write returns SBX_OK only once it is in the WAL (fdatasync'ed when opts.sync is on).
 * All functions are thread-safe. Everything the engine exports is sdb_* / SDB_*; its files
 * share sdb__* / SDB__* through storedb_int.h and keys.h, which are not for use outside it.
 *
 * Layers, bottom to top. A file calls only files of lower layers (no circle; each file's head
 * comment names the files it calls):
 *   0  keys.c        byte builder and reader, key layout, stripe hash, validation and error
 *                    messages, RocksDB error mapping, page tokens (keys.h; no handle)
 *      visible.c     the snapshot readers see: only what is durable
 *   1  read.c        point reads and prefix-bounded iterators of the committed state
 *      codec.c       the stored values: counter, history record, record-id entry, project
 *                    record, cache entry, kv entry
 *      watch.c       watch stripes: the ticket protocol of sdb_hist_watch_*
 *      checkpoint.c  sdb_checkpoint
 *      walsync.c     fdatasync of RocksDB's log files through the syncer's own descriptors
 *      counters.c    the committer's counters, written once per group
 *   2  durable.c     the syncer (one fdatasync per round, then publishes the durable state and
 *                    sends the replies) and, with sync off, the completer
 *   3  commit.c      writes: operations, transactions, the group committer / direct mode
 *   4  projects.c    sdb_proj_*, sdb_project_free, implicit project creation
 *      kv.c          sdb_kv_*
 *   5  history.c     sdb_hist_append/list/read_after/last_seq
 *      cache.c       sdb_cache_*
 *   6  record.c      sdb_record_execution (an append and a cache fill in one write)
 *      retention.c   sdb_sweep, the sweeper thread, the expiry compaction filter
 *   7  open.c        sdb_open/close (start and stop the committer, the watch stripes and the
 *                    sweeper), sdb_opts_default, sdb_now_ms, sdb_stats_read, sdb_property,
 *                    sdb_compact
 */
#ifndef SBX_STOREDB_H
#define SBX_STOREDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct sdb sdb;

typedef struct sdb_slice {
    const char *p;
    size_t n;
} sdb_slice;

static inline sdb_slice sdb_slice_c(const char *s)
{
    sdb_slice r = {s, s ? strlen(s) : 0};
    return r;
}
static inline sdb_slice sdb_slice_n(const void *p, size_t n)
{
    sdb_slice r = {(const char *)p, n};
    return r;
}

/* Page tokens are base64url text of at most this many bytes (including the NUL). */
#define SDB_TOKEN_MAX 4096

/* Fixed limits (the configurable ones are in sdb_opts). */
#define SDB_TENANT_MAX 128      /* bytes */
#define SDB_PROJECT_ID_MAX 128  /* bytes of [A-Za-z0-9][A-Za-z0-9._-]* */
#define SDB_RECORD_ID_MAX 128   /* bytes */
#define SDB_COMMAND_KEY_MAX 256 /* bytes */
#define SDB_FIELD_KEY_MAX 256   /* project field name, bytes */
#define SDB_FIELD_VALUE_MAX 65536
#define SDB_FIELDS_MAX 256              /* fields per project */
#define SDB_FIELDS_TOTAL_MAX (1u << 20) /* all keys + values of a project */
#define SDB_HIST_LIST_DEFAULT 50
#define SDB_LIST_DEFAULT 100 /* projects, kv */
#define SDB_LIST_MAX 1000
#define SDB_HIST_SCAN_MAX 20000 /* records examined per ListExecutions page with a time range */

/* ---- open.c: the handle ---- */

/* How writes reach RocksDB (see commit.c). GROUP: one committer thread applies queued
 * operations into one indexed batch and writes it; with sync on, a syncer thread makes one
 * fdatasync for every group written since its previous one while the committer goes on, and
 * only then are the writes visible to readers and acknowledged (durable.c, visible.c; sequence
 * assignment, CAS and Incr need no locks; all concurrent writers share one fsync). DIRECT:
 * each caller writes itself under a striped lock (per project; per tenant for kv, whose
 * versions come from a tenant-wide counter) and relies on RocksDB's own group commit; writers
 * of one stripe serialise through their fsync. GROUP measured faster at 8 and 64 writers. */
enum { SDB_COMMIT_GROUP = 0, SDB_COMMIT_DIRECT = 1 };

typedef int64_t (*sdb_clock_fn)(void *arg); /* wall clock, ms since the epoch */

typedef struct sdb_opts {
    const char *path;             /* data dir; created (with parents, 0700) when missing */
    bool sync;                    /* fdatasync the WAL before acknowledging (default true) */
    bool create_if_missing;       /* default true */
    int commit_mode;              /* SDB_COMMIT_GROUP (default) or SDB_COMMIT_DIRECT */
    int max_group_ops;            /* ops merged into one write at most (default 512) */
    int group_linger_us;          /* GROUP: when the last group had several writers, wait up to
                                     this long for as many before writing (default 0 = off) */
    size_t kv_max_key;            /* default 1024, at most 2048 */
    size_t kv_max_value;          /* default 1 MiB (the proto's limit; Puter KV has 400 KiB) */
    int64_t kv_max_ttl_s;         /* default 10 years */
    size_t max_record_bytes;      /* history payload, default 4 MiB */
    size_t max_cache_bytes;       /* cached result payload, default 4 MiB */
    int64_t cache_default_ttl_s;  /* default 3600 */
    int64_t cache_max_ttl_s;      /* default 30 days */
    uint64_t history_max_records; /* default retention for projects without their own; 0 = none */
    int64_t history_max_age_s;    /* same, by age; 0 = none */
    int sweep_interval_ms;    /* background sweeper period; 0 = no sweeper thread (default 10000) */
    int sweep_batch;          /* keys examined per CF per sweep tick (default 20000) */
    size_t block_cache_bytes; /* default 64 MiB */
    bool compaction_filter;   /* also drop expired cache/kv entries during compaction (default
                                 false: entries it drops are not subtracted from the exact
                                 counts ClearCache/Flush report; the sweeper keeps them exact) */
    int rocksdb_log_level;    /* RocksDB's info LOG in the data dir: 0 debug .. 4 fatal
                                 (default 4: see open.c for why) */
    sdb_clock_fn clock;       /* NULL = CLOCK_REALTIME; tests inject their own */
    void *clock_arg;
    void (*before_sync)(void *arg); /* tests only: the syncer calls it before each fdatasync */
    void *before_sync_arg;
} sdb_opts;

void sdb_opts_default(sdb_opts *o);

/* Opens (creating when allowed) the database with its column families. *out is NULL on error.
 * Errors: INVALID_ARGUMENT (bad options), UNAVAILABLE (locked by another process, I/O),
 * RESOURCE_EXHAUSTED (disk full), DATA_LOSS (corruption). */
int sdb_open(const sdb_opts *o, sdb **out, char *err, size_t errlen);
/* Stops the sweeper and committer (queued writes are completed first), wakes watchers (their
 * waits return SBX_UNAVAILABLE) and closes RocksDB. Every other call on db must have returned
 * before it frees the handle (stop the gRPC server first). NULL ok. */
void sdb_close(sdb *db);
/* Current time on the database's clock (ms). */
int64_t sdb_now_ms(const sdb *db);

/* Asynchronous writes: sdb_kv_set_async, sdb_hist_append_async and sdb_record_execution_async
 * do what their synchronous forms do without blocking the caller. The checks run at once: an
 * error is returned and done is not called. Otherwise they return SBX_OK and done(arg, status,
 * err) runs exactly once, on the committer thread, when the write is durable (SBX_OK) or
 * failed (err names why), after the outputs were filled. Everything passed in (slices, the
 * request, the outputs) must stay valid until then. done must not block: the next group waits
 * for it. Every accepted write is completed before sdb_close returns. GROUP mode only:
 * sdb_async_writes tells (DIRECT mode has no committer to complete them). */
typedef void (*sdb_done_fn)(void *arg, int status, const char *err);
bool sdb_async_writes(const sdb *db);

/* Counters for /metrics (monotonic since open). */
typedef struct sdb_stats {
    uint64_t cache_hits, cache_misses, cache_expired, cache_puts;
    uint64_t history_appends, history_duplicates;
    uint64_t kv_reads, kv_writes;
    uint64_t commit_groups, commit_ops, commit_failures; /* group writes, ops in them, failed */
    uint64_t commit_syncs;                 /* fdatasyncs of the WAL by the syncer (sync on) */
    uint64_t swept_expired, swept_history; /* background purges */
} sdb_stats;
void sdb_stats_read(const sdb *db, sdb_stats *out);
/* An integer RocksDB property summed over the column families, e.g.
 * "rocksdb.total-sst-files-size", "rocksdb.estimate-pending-compaction-bytes",
 * "rocksdb.compaction-pending", "rocksdb.estimate-num-keys". Returns 0 ok, -1 unknown. */
int sdb_property(sdb *db, const char *name, uint64_t *out);
/* Compacts every column family (drops expired entries through the compaction filter). */
void sdb_compact(sdb *db);

/* ---- checkpoint.c ---- */
/* A consistent copy of the whole database in dir, which must not exist (its parent must).
 * The copy opens with sdb_open. Errors: ALREADY_EXISTS, NOT_FOUND (parent),
 * INVALID_ARGUMENT (empty, NUL, relative, over 4096 bytes), FAILED_PRECONDITION (parent
 * missing), others from RocksDB. *sequence (may be NULL) gets the RocksDB sequence number the
 * copy contains, *took_us (may be NULL) the time taken. */
int sdb_checkpoint(sdb *db, sdb_slice dir, uint64_t *sequence, int64_t *took_us, char *err,
                   size_t errlen);
/* The data dir the database was opened on. */
const char *sdb_path(const sdb *db);

/* ---- retention.c ---- */
/* Runs one sweep now (retention of every project, expired cache/kv entries); what the
 * background thread does every sweep_interval_ms. Returns entries removed. */
uint64_t sdb_sweep(sdb *db);

/* ---- history.c ---- */
typedef struct sdb_hist_entry {
    sdb_slice project;
    sdb_slice record_id; /* optional (n == 0): a replay with the same id is a no-op */
    sdb_slice data;      /* opaque payload (the packed record), <= max_record_bytes */
    int64_t time_ms;     /* the record's time (started_at) used by time ranges and max-age
                            retention; 0 = now */
    int32_t exit_code;   /* kept on the project as its last exit code */
} sdb_hist_entry;

typedef struct sdb_hist_result {
    uint64_t seq;        /* assigned sequence (or the first one on a duplicate) */
    int64_t recorded_ms; /* server time the record was written (monotonic per project) */
    int64_t time_ms;     /* the record's time (entry.time_ms or now) */
    bool duplicate;      /* record_id seen before: nothing was written */
} sdb_hist_result;

/* Appends one record; the sequence is last+1 of the project (starting at 1), assigned in the
 * same atomic write as the record. Creates the project (version 0) when it does not exist.
 * With a max_records retention the record that falls out of it is deleted in the same write;
 * larger backlogs and max-age retention are the sweeper's. */
int sdb_hist_append(sdb *db, sdb_slice tenant, const sdb_hist_entry *a, sdb_hist_result *res,
                    char *err, size_t errlen);
int sdb_hist_append_async(sdb *db, sdb_slice tenant, const sdb_hist_entry *a, sdb_hist_result *res,
                          sdb_done_fn done, void *arg, char *err, size_t errlen);

typedef struct sdb_hist_rec {
    uint64_t seq;
    int64_t time_ms;     /* entry.time_ms */
    int64_t recorded_ms; /* server write time */
    sdb_slice record_id;
    sdb_slice data;
} sdb_hist_rec;
/* List callbacks (records, projects, kv items) return 0 to go on, SDB_PAGE_FULL to end the
 * page before this item (it becomes the first of the next page, so next_token is set: for
 * response size budgets), or another non-zero value to stop the listing with that value as the
 * return code. */
#define SDB_PAGE_FULL (-1)
typedef int (*sdb_hist_cb)(void *arg, const sdb_hist_rec *r);

typedef struct sdb_hist_query {
    sdb_slice project;
    bool has_limit; /* false: SDB_HIST_LIST_DEFAULT */
    int64_t limit;  /* 1..SDB_LIST_MAX; larger is clamped (see applied_limit) */
    sdb_slice page_token;
    int64_t since_ms; /* time_ms >= since_ms; 0 = unbounded */
    int64_t until_ms; /* time_ms < until_ms; 0 = unbounded */
} sdb_hist_query;

typedef struct sdb_page {
    uint32_t applied_limit;
    uint32_t count;
    bool clamped;                   /* the requested limit was above the maximum */
    char next_token[SDB_TOKEN_MAX]; /* "" when there is no further page */
} sdb_page;

/* Newest first. A project that does not exist lists as empty. Times are the callers' (not
 * ordered by seq), so with a time range at most SDB_HIST_SCAN_MAX records are examined per
 * call: a page may then hold fewer than limit records and still carry a next_token. */
int sdb_hist_list(sdb *db, sdb_slice tenant, const sdb_hist_query *q, sdb_hist_cb cb, void *arg,
                  sdb_page *page, char *err, size_t errlen);
/* Oldest first, records with seq > after_seq, at most max (<= SDB_LIST_MAX); *last is set to
 * the last seq delivered (unchanged when none). For watch catch-up and following. */
int sdb_hist_read_after(sdb *db, sdb_slice tenant, sdb_slice project, uint64_t after_seq,
                        uint32_t max, sdb_hist_cb cb, void *arg, uint64_t *last, char *err,
                        size_t errlen);
/* Last assigned sequence of a project (0 when none). */
int sdb_hist_last_seq(sdb *db, sdb_slice tenant, sdb_slice project, uint64_t *seq, char *err,
                      size_t errlen);
/* ---- watch.c ---- */
/* Watch: take a ticket, read (sdb_hist_read_after), and when nothing new arrived wait with
 * the ticket: the wait returns at once if an append to the project committed after the ticket
 * was taken, so no append between the read and the wait is missed.
 * wait returns SBX_OK (something may have changed), SBX_DEADLINE_EXCEEDED (timeout) or
 * SBX_UNAVAILABLE (the database is closing). */
uint64_t sdb_hist_watch_ticket(sdb *db, sdb_slice tenant, sdb_slice project);
int sdb_hist_watch_wait(sdb *db, sdb_slice tenant, sdb_slice project, uint64_t ticket,
                        int timeout_ms);

/* ---- cache.c ---- */
typedef struct sdb_cache_entry {
    bool found;   /* a live entry */
    bool expired; /* an entry exists but its TTL ran out (reported as a miss) */
    void *data;   /* payload, malloc'd: the caller frees it (NULL on a miss) */
    size_t len;
    int64_t created_ms, expires_ms;
    uint64_t seq; /* history seq when filled by RecordExecution, else 0 */
} sdb_cache_entry;
/* Frees e->data; the entry can be reused. */
void sdb_cache_entry_clear(sdb_cache_entry *e);

int sdb_cache_get(sdb *db, sdb_slice tenant, sdb_slice project, sdb_slice command_key,
                  sdb_cache_entry *out, char *err, size_t errlen);
/* ttl_s: 0 = default (3600), 1..cache_max_ttl_s; *expires_ms (may be NULL) gets the expiry.
 * Creates the project (version 0) when it does not exist. */
int sdb_cache_put(sdb *db, sdb_slice tenant, sdb_slice project, sdb_slice command_key,
                  sdb_slice data, int64_t ttl_s, int64_t *expires_ms, char *err, size_t errlen);
/* command_key.n == 0: the whole project, O(1) (the project's cache generation is bumped and
 * the old generations range-deleted in the same write). *cleared (may be NULL) gets the number
 * of entries removed, expired ones included (kept exact by a per-project entry counter). */
int sdb_cache_clear(sdb *db, sdb_slice tenant, sdb_slice project, sdb_slice command_key,
                    uint64_t *cleared, char *err, size_t errlen);

/* ---- record.c ---- */
typedef struct sdb_record_exec {
    sdb_hist_entry hist;   /* as for sdb_hist_append */
    sdb_slice command_key; /* n == 0: do not fill the cache */
    sdb_slice cache_data;  /* payload cached under command_key */
    int64_t ttl_s;         /* as for sdb_cache_put (0 = default) */
} sdb_record_exec;
/* Appends history, fills the cache and updates the project's last-execution fields and
 * execution count in ONE atomic write. A replayed record_id writes nothing (duplicate). */
int sdb_record_execution(sdb *db, sdb_slice tenant, const sdb_record_exec *r, sdb_hist_result *res,
                         int64_t *expires_ms, char *err, size_t errlen);
int sdb_record_execution_async(sdb *db, sdb_slice tenant, const sdb_record_exec *r,
                               sdb_hist_result *res, int64_t *expires_ms, sdb_done_fn done,
                               void *arg, char *err, size_t errlen);

/* ---- projects.c ---- */
typedef struct sdb_field {
    sdb_slice key, value;
} sdb_field;

typedef struct sdb_project {
    sdb_slice id;
    uint64_t version;   /* 0: exists only through history/cache, never updated */
    int64_t created_ms; /* first update, append or cache put */
    int64_t updated_ms; /* last update; 0 = never */
    size_t n_fields;
    sdb_field *fields;              /* sorted by key */
    uint64_t retention_max_records; /* the policy in force (the store default when the */
    int64_t retention_max_age_s;    /* project has none); 0 = unlimited */
    /* execution statistics (kept with the history counter) */
    uint64_t execution_count; /* records currently retained */
    uint64_t last_seq;
    int64_t last_execution_ms; /* time_ms of the newest record */
    int32_t last_exit_code;
    uint64_t cache_generation, cache_entries;
    void *priv_; /* backing memory */
} sdb_project;
/* Frees a project returned by sdb_proj_get / sdb_proj_update. NULL ok. */
void sdb_project_free(sdb_project *p);

/* Errors: NOT_FOUND "project: 'id' not found". *out is freed with sdb_project_free. */
int sdb_proj_get(sdb *db, sdb_slice tenant, sdb_slice project, sdb_project **out, char *err,
                 size_t errlen);

typedef struct sdb_proj_patch {
    sdb_slice project;
    const sdb_field *set; /* merged into the fields */
    size_t n_set;
    const sdb_slice *remove; /* field names removed */
    size_t n_remove;
    bool has_expected_version; /* CAS: 0 = the project must not exist */
    uint64_t expected_version;
    bool has_retention;
    uint64_t retention_max_records;
    int64_t retention_max_age_s;
} sdb_proj_patch;
/* Creates or updates; version + 1 per update. CAS mismatch -> FAILED_PRECONDITION
 * "version mismatch: expected E, current C" (C = 0 when the project does not exist or was
 * never updated). *out (may be NULL) gets the project after the update. */
int sdb_proj_update(sdb *db, sdb_slice tenant, const sdb_proj_patch *u, sdb_project **out,
                    char *err, size_t errlen);

typedef int (*sdb_proj_cb)(void *arg, const sdb_project *p);
/* Projects whose id starts with prefix, in id order (default limit SDB_LIST_DEFAULT). */
int sdb_proj_list(sdb *db, sdb_slice tenant, sdb_slice prefix, bool has_limit, int64_t limit,
                  sdb_slice page_token, sdb_proj_cb cb, void *arg, sdb_page *page, char *err,
                  size_t errlen);
/* Removes metadata, history, cache entries, counters and record ids of the project (range
 * deletes, one atomic write). *existed says whether there was anything. */
int sdb_proj_delete(sdb *db, sdb_slice tenant, sdb_slice project, bool *existed, char *err,
                    size_t errlen);
/* created_ms of the project, 0 when it does not exist: a watcher notices a delete (and a
 * re-creation) when this changes. */
int sdb_proj_incarnation(sdb *db, sdb_slice tenant, sdb_slice project, int64_t *created_ms,
                         char *err, size_t errlen);

/* ---- kv.c ---- */
typedef struct sdb_kv_set_req {
    sdb_slice key, value;
    int64_t ttl_s;             /* > 0: expire after; 0 = no TTL (unless expires_at_ms) */
    int64_t expires_at_ms;     /* absolute expiry; 0 = none; exclusive with ttl_s */
    bool has_expected_version; /* CAS; 0 = the key must not exist */
    uint64_t expected_version;
} sdb_kv_set_req;

/* Versions come from a per-tenant write counter: every write gives the key a version greater
 * than any it had before, even across Delete and Flush. */
typedef struct sdb_kv_meta {
    uint64_t version;
    int64_t expires_ms; /* 0 = never */
    int64_t updated_ms;
} sdb_kv_meta;

/* Errors: FAILED_PRECONDITION "version mismatch: expected E, current C" (C = 0 when missing or
 * expired). */
int sdb_kv_set(sdb *db, sdb_slice tenant, const sdb_kv_set_req *s, sdb_kv_meta *out, char *err,
               size_t errlen);
int sdb_kv_set_async(sdb *db, sdb_slice tenant, const sdb_kv_set_req *s, sdb_kv_meta *out,
                     sdb_done_fn done, void *arg, char *err, size_t errlen);
/* *value (malloc'd, NUL-terminated for convenience, caller frees) and *len. Missing or
 * expired: NOT_FOUND "key not found". */
int sdb_kv_get(sdb *db, sdb_slice tenant, sdb_slice key, char **value, size_t *len,
               sdb_kv_meta *meta, char *err, size_t errlen);
int sdb_kv_delete(sdb *db, sdb_slice tenant, sdb_slice key, bool *existed, char *err,
                  size_t errlen);
/* Atomic add; the value is decimal text; missing/expired = 0 (created without expiry); keeps
 * an existing TTL. delta 0 only reads (a missing key gives 0, version 0). FAILED_PRECONDITION
 * when the value is not a decimal int64, OUT_OF_RANGE on overflow (nothing written). */
int sdb_kv_incr(sdb *db, sdb_slice tenant, sdb_slice key, int64_t delta, int64_t *result,
                sdb_kv_meta *meta, char *err, size_t errlen);

typedef struct sdb_kv_item {
    sdb_slice key, value; /* value empty when keys_only */
    sdb_kv_meta meta;
} sdb_kv_item;
typedef int (*sdb_kv_cb)(void *arg, const sdb_kv_item *it);
/* Keys starting with prefix in key order, skipping expired entries (default limit
 * SDB_LIST_DEFAULT). */
int sdb_kv_list(sdb *db, sdb_slice tenant, sdb_slice prefix, bool has_limit, int64_t limit,
                sdb_slice page_token, bool keys_only, sdb_kv_cb cb, void *arg, sdb_page *page,
                char *err, size_t errlen);
/* Deletes every key of the tenant (one range delete); *deleted (may be NULL) gets the number of
 * keys removed, expired ones included (a per-tenant key counter). */
int sdb_kv_flush(sdb *db, sdb_slice tenant, uint64_t *deleted, char *err, size_t errlen);

#endif
