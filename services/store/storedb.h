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
 *   - byte strings are sbx_slice (pointer + length, need not be NUL-terminated); ids and keys
 *     must not contain NUL bytes;
 *   - pointers handed to callbacks are valid only during the callback; memory returned through
 *     out-parameters is owned by the caller and freed as the function says (free() unless a
 *     dedicated *_free is named). Freeing NULL is harmless.
 *   - a write returns SBX_OK only once it is in the WAL (fdatasync'ed when opts.sync is on).
 * All functions are thread-safe.
 */
#ifndef SBX_STOREDB_H
#define SBX_STOREDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct sbx_storedb sbx_storedb;

typedef struct sbx_slice {
    const char *p;
    size_t n;
} sbx_slice;

static inline sbx_slice sbx_slice_c(const char *s)
{
    sbx_slice r = {s, s ? strlen(s) : 0};
    return r;
}
static inline sbx_slice sbx_slice_n(const void *p, size_t n)
{
    sbx_slice r = {(const char *)p, n};
    return r;
}

/* Page tokens are base64url text of at most this many bytes (including the NUL). */
#define SBX_TOKEN_MAX 4096

/* Fixed limits (the configurable ones are in sbx_storedb_opts). */
#define SBX_STORE_TENANT_MAX 128      /* bytes */
#define SBX_PROJECT_ID_MAX 128  /* bytes of [A-Za-z0-9][A-Za-z0-9._-]* */
#define SBX_RECORD_ID_MAX 128   /* bytes */
#define SBX_COMMAND_KEY_MAX 256 /* bytes */
#define SBX_FIELD_KEY_MAX 256   /* project field name, bytes */
#define SBX_FIELD_VALUE_MAX 65536
#define SBX_FIELDS_MAX 256              /* fields per project */
#define SBX_FIELDS_TOTAL_MAX (1u << 20) /* all keys + values of a project */
#define SBX_HIST_LIST_DEFAULT 50
#define SBX_LIST_DEFAULT 100 /* projects, kv */
#define SBX_LIST_MAX 1000
#define SBX_HIST_SCAN_MAX 20000 /* records examined per ListExecutions page with a time range */

/* How writes reach RocksDB (see commit.c). GROUP: one committer thread applies queued
 * operations into one indexed batch and makes a single synced write per group (sequence
 * assignment, CAS and Incr need no locks; all concurrent writers share one fsync). DIRECT:
 * each caller writes itself under a striped lock (per project; per tenant for kv, whose
 * versions come from a tenant-wide counter) and relies on RocksDB's own group commit; writers
 * of one stripe serialise through their fsync. GROUP measured faster at 8 and 64 writers. */
enum { SBX_COMMIT_GROUP = 0, SBX_COMMIT_DIRECT = 1 };

typedef int64_t (*sbx_clock_fn)(void *arg); /* wall clock, ms since the epoch */

typedef struct sbx_storedb_opts {
    const char *path;             /* data dir; created (with parents, 0700) when missing */
    bool sync;                    /* fdatasync the WAL before acknowledging (default true) */
    bool create_if_missing;       /* default true */
    int commit_mode;              /* SBX_COMMIT_GROUP (default) or SBX_COMMIT_DIRECT */
    int max_group_ops;            /* ops merged into one write at most (default 512) */
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
                                 (default 4: see db.c for why) */
    sbx_clock_fn clock;       /* NULL = CLOCK_REALTIME; tests inject their own */
    void *clock_arg;
} sbx_storedb_opts;

void sbx_storedb_opts_default(sbx_storedb_opts *o);

/* Opens (creating when allowed) the database with its column families. *out is NULL on error.
 * Errors: INVALID_ARGUMENT (bad options), UNAVAILABLE (locked by another process, I/O),
 * RESOURCE_EXHAUSTED (disk full), DATA_LOSS (corruption). */
int sbx_storedb_open(const sbx_storedb_opts *o, sbx_storedb **out, char *err, size_t errlen);
/* Stops the sweeper and committer (queued writes are completed first), wakes watchers (their
 * waits return SBX_UNAVAILABLE) and closes RocksDB. Every other call on db must have returned
 * before it frees the handle (stop the gRPC server first). NULL ok. */
void sbx_storedb_close(sbx_storedb *db);
/* Current time on the database's clock (ms). */
int64_t sbx_storedb_now_ms(const sbx_storedb *db);

/* Counters for /metrics (monotonic since open). */
typedef struct sbx_storedb_stats_t {
    uint64_t cache_hits, cache_misses, cache_expired, cache_puts;
    uint64_t history_appends, history_duplicates;
    uint64_t kv_reads, kv_writes;
    uint64_t commit_groups, commit_ops, commit_failures; /* synced writes, ops in them, failed */
    uint64_t swept_expired, swept_history;               /* background purges */
} sbx_storedb_stats_t;
void sbx_storedb_stats(const sbx_storedb *db, sbx_storedb_stats_t *out);
/* An integer RocksDB property summed over the column families, e.g.
 * "rocksdb.total-sst-files-size", "rocksdb.estimate-pending-compaction-bytes",
 * "rocksdb.compaction-pending", "rocksdb.estimate-num-keys". Returns 0 ok, -1 unknown. */
int sbx_storedb_property(sbx_storedb *db, const char *name, uint64_t *out);
/* Compacts every column family (drops expired entries through the compaction filter). */
void sbx_storedb_compact(sbx_storedb *db);

/* ---- checkpoint.c ---- */
/* A consistent copy of the whole database in dir, which must not exist (its parent must).
 * The copy opens with sbx_storedb_open. Errors: ALREADY_EXISTS, NOT_FOUND (parent),
 * INVALID_ARGUMENT (empty, NUL, relative, over 4096 bytes), FAILED_PRECONDITION (parent
 * missing), others from RocksDB. *sequence (may be NULL) gets the RocksDB sequence number the
 * copy contains, *took_us (may be NULL) the time taken. */
int sbx_storedb_checkpoint(sbx_storedb *db, sbx_slice dir, uint64_t *sequence, int64_t *took_us,
                           char *err, size_t errlen);

/* ---- retention.c ---- */
/* Runs one sweep now (retention of every project, expired cache/kv entries); what the
 * background thread does every sweep_interval_ms. Returns entries removed. */
uint64_t sbx_storedb_sweep(sbx_storedb *db);

/* ---- history.c ---- */
typedef struct sbx_hist_entry {
    sbx_slice project;
    sbx_slice record_id; /* optional (n == 0): a replay with the same id is a no-op */
    sbx_slice data;      /* opaque payload (the packed record), <= max_record_bytes */
    int64_t time_ms;     /* the record's time (started_at) used by time ranges and max-age
                            retention; 0 = now */
    int32_t exit_code;   /* kept on the project as its last exit code */
} sbx_hist_entry;

typedef struct sbx_hist_result {
    uint64_t seq;        /* assigned sequence (or the first one on a duplicate) */
    int64_t recorded_ms; /* server time the record was written (monotonic per project) */
    int64_t time_ms;     /* the record's time (entry.time_ms or now) */
    bool duplicate;      /* record_id seen before: nothing was written */
} sbx_hist_result;

/* Appends one record; the sequence is last+1 of the project (starting at 1), assigned in the
 * same atomic write as the record. Creates the project (version 0) when it does not exist.
 * With a max_records retention the record that falls out of it is deleted in the same write;
 * larger backlogs and max-age retention are the sweeper's. */
int sbx_hist_append(sbx_storedb *db, sbx_slice tenant, const sbx_hist_entry *a,
                    sbx_hist_result *res, char *err, size_t errlen);

typedef struct sbx_hist_rec {
    uint64_t seq;
    int64_t time_ms;     /* entry.time_ms */
    int64_t recorded_ms; /* server write time */
    sbx_slice record_id;
    sbx_slice data;
} sbx_hist_rec;
/* List callbacks (records, projects, kv items) return 0 to go on, SBX_PAGE_FULL to end the
 * page before this item (it becomes the first of the next page, so next_token is set: for
 * response size budgets), or another non-zero value to stop the listing with that value as the
 * return code. */
#define SBX_PAGE_FULL (-1)
typedef int (*sbx_hist_cb)(void *arg, const sbx_hist_rec *r);

typedef struct sbx_hist_query {
    sbx_slice project;
    bool has_limit; /* false: SBX_HIST_LIST_DEFAULT */
    int64_t limit;  /* 1..SBX_LIST_MAX; larger is clamped (see applied_limit) */
    sbx_slice page_token;
    int64_t since_ms; /* time_ms >= since_ms; 0 = unbounded */
    int64_t until_ms; /* time_ms < until_ms; 0 = unbounded */
} sbx_hist_query;

typedef struct sbx_page {
    uint32_t applied_limit;
    uint32_t count;
    bool clamped;                   /* the requested limit was above the maximum */
    char next_token[SBX_TOKEN_MAX]; /* "" when there is no further page */
} sbx_page;

/* Newest first. A project that does not exist lists as empty. Times are the callers' (not
 * ordered by seq), so with a time range at most SBX_HIST_SCAN_MAX records are examined per
 * call: a page may then hold fewer than limit records and still carry a next_token. */
int sbx_hist_list(sbx_storedb *db, sbx_slice tenant, const sbx_hist_query *q, sbx_hist_cb cb,
                  void *arg, sbx_page *page, char *err, size_t errlen);
/* Oldest first, records with seq > after_seq, at most max (<= SBX_LIST_MAX); *last is set to
 * the last seq delivered (unchanged when none). For watch catch-up and following. */
int sbx_hist_read_after(sbx_storedb *db, sbx_slice tenant, sbx_slice project, uint64_t after_seq,
                        uint32_t max, sbx_hist_cb cb, void *arg, uint64_t *last, char *err,
                        size_t errlen);
/* Last assigned sequence of a project (0 when none). */
int sbx_hist_last_seq(sbx_storedb *db, sbx_slice tenant, sbx_slice project, uint64_t *seq,
                      char *err, size_t errlen);
/* Watch: take a ticket, read (sbx_hist_read_after), and when nothing new arrived wait with
 * the ticket: the wait returns at once if an append to the project committed after the ticket
 * was taken, so no append between the read and the wait is missed.
 * wait returns SBX_OK (something may have changed), SBX_DEADLINE_EXCEEDED (timeout) or
 * SBX_UNAVAILABLE (the database is closing). */
uint64_t sbx_hist_watch_ticket(sbx_storedb *db, sbx_slice tenant, sbx_slice project);
int sbx_hist_watch_wait(sbx_storedb *db, sbx_slice tenant, sbx_slice project, uint64_t ticket,
                        int timeout_ms);

/* ---- cache.c ---- */
typedef struct sbx_cache_entry {
    bool found;   /* a live entry */
    bool expired; /* an entry exists but its TTL ran out (reported as a miss) */
    void *data;   /* payload, malloc'd: the caller frees it (NULL on a miss) */
    size_t len;
    int64_t created_ms, expires_ms;
    uint64_t seq; /* history seq when filled by RecordExecution, else 0 */
} sbx_cache_entry;
/* Frees e->data; the entry can be reused. */
void sbx_cache_entry_clear(sbx_cache_entry *e);

int sbx_cache_get(sbx_storedb *db, sbx_slice tenant, sbx_slice project, sbx_slice command_key,
                  sbx_cache_entry *out, char *err, size_t errlen);
/* ttl_s: 0 = default (3600), 1..cache_max_ttl_s; *expires_ms (may be NULL) gets the expiry.
 * Creates the project (version 0) when it does not exist. */
int sbx_cache_put(sbx_storedb *db, sbx_slice tenant, sbx_slice project, sbx_slice command_key,
                  sbx_slice data, int64_t ttl_s, int64_t *expires_ms, char *err, size_t errlen);
/* command_key.n == 0: the whole project, O(1) (the project's cache generation is bumped and
 * the old generations range-deleted in the same write). *cleared (may be NULL) gets the number
 * of entries removed, expired ones included (kept exact by a per-project entry counter). */
int sbx_cache_clear(sbx_storedb *db, sbx_slice tenant, sbx_slice project, sbx_slice command_key,
                    uint64_t *cleared, char *err, size_t errlen);

typedef struct sbx_record_exec {
    sbx_hist_entry hist;   /* as for sbx_hist_append */
    sbx_slice command_key; /* n == 0: do not fill the cache */
    sbx_slice cache_data;  /* payload cached under command_key */
    int64_t ttl_s;         /* as for sbx_cache_put (0 = default) */
} sbx_record_exec;
/* Appends history, fills the cache and updates the project's last-execution fields and
 * execution count in ONE atomic write. A replayed record_id writes nothing (duplicate). */
int sbx_record_execution(sbx_storedb *db, sbx_slice tenant, const sbx_record_exec *r,
                         sbx_hist_result *res, int64_t *expires_ms, char *err, size_t errlen);

/* ---- projects.c ---- */
typedef struct sbx_field {
    sbx_slice key, value;
} sbx_field;

typedef struct sbx_project {
    sbx_slice id;
    uint64_t version;   /* 0: exists only through history/cache, never updated */
    int64_t created_ms; /* first update, append or cache put */
    int64_t updated_ms; /* last update; 0 = never */
    size_t n_fields;
    sbx_field *fields;              /* sorted by key */
    uint64_t retention_max_records; /* the policy in force (the store default when the */
    int64_t retention_max_age_s;    /* project has none); 0 = unlimited */
    /* execution statistics (kept with the history counter) */
    uint64_t execution_count; /* records currently retained */
    uint64_t last_seq;
    int64_t last_execution_ms; /* time_ms of the newest record */
    int32_t last_exit_code;
    uint64_t cache_generation, cache_entries;
    void *priv_; /* backing memory */
} sbx_project;
/* Frees a project returned by sbx_proj_get / sbx_proj_update. NULL ok. */
void sbx_project_free(sbx_project *p);

/* Errors: NOT_FOUND "project: 'id' not found". *out is freed with sbx_project_free. */
int sbx_proj_get(sbx_storedb *db, sbx_slice tenant, sbx_slice project, sbx_project **out, char *err,
                 size_t errlen);

typedef struct sbx_proj_patch {
    sbx_slice project;
    const sbx_field *set; /* merged into the fields */
    size_t n_set;
    const sbx_slice *remove; /* field names removed */
    size_t n_remove;
    bool has_expected_version; /* CAS: 0 = the project must not exist */
    uint64_t expected_version;
    bool has_retention;
    uint64_t retention_max_records;
    int64_t retention_max_age_s;
} sbx_proj_patch;
/* Creates or updates; version + 1 per update. CAS mismatch -> FAILED_PRECONDITION
 * "version mismatch: expected E, current C" (C = 0 when the project does not exist or was
 * never updated). *out (may be NULL) gets the project after the update. */
int sbx_proj_update(sbx_storedb *db, sbx_slice tenant, const sbx_proj_patch *u, sbx_project **out,
                    char *err, size_t errlen);

typedef int (*sbx_proj_cb)(void *arg, const sbx_project *p);
/* Projects whose id starts with prefix, in id order (default limit SBX_LIST_DEFAULT). */
int sbx_proj_list(sbx_storedb *db, sbx_slice tenant, sbx_slice prefix, bool has_limit,
                  int64_t limit, sbx_slice page_token, sbx_proj_cb cb, void *arg, sbx_page *page,
                  char *err, size_t errlen);
/* Removes metadata, history, cache entries, counters and record ids of the project (range
 * deletes, one atomic write). *existed says whether there was anything. */
int sbx_proj_delete(sbx_storedb *db, sbx_slice tenant, sbx_slice project, bool *existed, char *err,
                    size_t errlen);
/* created_ms of the project, 0 when it does not exist: a watcher notices a delete (and a
 * re-creation) when this changes. */
int sbx_proj_incarnation(sbx_storedb *db, sbx_slice tenant, sbx_slice project, int64_t *created_ms,
                         char *err, size_t errlen);

/* ---- kv.c ---- */
typedef struct sbx_kv_set_req {
    sbx_slice key, value;
    int64_t ttl_s;             /* > 0: expire after; 0 = no TTL (unless expires_at_ms) */
    int64_t expires_at_ms;     /* absolute expiry; 0 = none; exclusive with ttl_s */
    bool has_expected_version; /* CAS; 0 = the key must not exist */
    uint64_t expected_version;
} sbx_kv_set_req;

/* Versions come from a per-tenant write counter: every write gives the key a version greater
 * than any it had before, even across Delete and Flush. */
typedef struct sbx_kv_meta {
    uint64_t version;
    int64_t expires_ms; /* 0 = never */
    int64_t updated_ms;
} sbx_kv_meta;

/* Errors: FAILED_PRECONDITION "version mismatch: expected E, current C" (C = 0 when missing or
 * expired). */
int sbx_kv_set(sbx_storedb *db, sbx_slice tenant, const sbx_kv_set_req *s, sbx_kv_meta *out,
               char *err, size_t errlen);
/* *value (malloc'd, NUL-terminated for convenience, caller frees) and *len. Missing or
 * expired: NOT_FOUND "key not found". */
int sbx_kv_get(sbx_storedb *db, sbx_slice tenant, sbx_slice key, char **value, size_t *len,
               sbx_kv_meta *meta, char *err, size_t errlen);
int sbx_kv_delete(sbx_storedb *db, sbx_slice tenant, sbx_slice key, bool *existed, char *err,
                  size_t errlen);
/* Atomic add; the value is decimal text; missing/expired = 0 (created without expiry); keeps
 * an existing TTL. delta 0 only reads (a missing key gives 0, version 0). FAILED_PRECONDITION
 * when the value is not a decimal int64, OUT_OF_RANGE on overflow (nothing written). */
int sbx_kv_incr(sbx_storedb *db, sbx_slice tenant, sbx_slice key, int64_t delta, int64_t *result,
                sbx_kv_meta *meta, char *err, size_t errlen);

typedef struct sbx_kv_item {
    sbx_slice key, value; /* value empty when keys_only */
    sbx_kv_meta meta;
} sbx_kv_item;
typedef int (*sbx_kv_cb)(void *arg, const sbx_kv_item *it);
/* Keys starting with prefix in key order, skipping expired entries (default limit
 * SBX_LIST_DEFAULT). */
int sbx_kv_list(sbx_storedb *db, sbx_slice tenant, sbx_slice prefix, bool has_limit, int64_t limit,
                sbx_slice page_token, bool keys_only, sbx_kv_cb cb, void *arg, sbx_page *page,
                char *err, size_t errlen);
/* Deletes every key of the tenant (one range delete); *deleted (may be NULL) gets the number of
 * keys removed, expired ones included (a per-tenant key counter). */
int sbx_kv_flush(sbx_storedb *db, sbx_slice tenant, uint64_t *deleted, char *err, size_t errlen);

#endif
