/* open.c: the top of the engine: the database handle's life. Open checks the options, creates
 * the data dir, opens RocksDB with one column family per kind of data (projects, history,
 * cache, kv, meta), a shared LRU block cache with bloom filters for point lookups, optional
 * expiry compaction filters on cache and kv, WAL sync on or off; then it starts the committer
 * (commit.c) and the sweeper (retention.c) threads and readies the watch stripes (watch.c).
 * Close stops them in reverse order. Also what the handle reports about itself: counters,
 * RocksDB properties, manual compaction. Calls retention.c, commit.c, watch.c and keys.c;
 * nothing calls it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clock.h"
#include "log.h"
#include "storedb_int.h"

static const char *const cf_names[SDB__CF_COUNT] = {"default", "projects", "history",
                                                    "cache",   "kv",       "meta"};

void sdb_opts_default(sdb_opts *o)
{
    memset(o, 0, sizeof *o);
    o->sync = true;
    o->create_if_missing = true;
    o->commit_mode = SDB_COMMIT_GROUP;
    o->max_group_ops = 512;
    o->group_linger_us = 0;
    o->kv_max_key = 1024;
    o->kv_max_value = 1u << 20;
    o->kv_max_ttl_s = 10ll * 365 * 86400;
    o->max_record_bytes = 4u << 20;
    o->max_cache_bytes = 4u << 20;
    o->cache_default_ttl_s = 3600;
    o->cache_max_ttl_s = 30ll * 86400;
    o->sweep_interval_ms = 10000;
    o->sweep_batch = 20000;
    o->block_cache_bytes = 64u << 20;
    o->rocksdb_log_level = 4; /* FATAL */
}

static int64_t wall_clock(void *arg)
{
    (void)arg;
    return sbx_wall_ms();
}

int64_t sdb_now_ms(const sdb *db)
{
    return sdb__now(db);
}

static int check_opts(const sdb_opts *o, char *err, size_t errlen)
{
    if (!o->path || !*o->path)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT, "data_dir: must not be empty");
    if (strlen(o->path) >= 4000)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT, "data_dir: longer than 4000 bytes");
    if (o->kv_max_key < 1 || o->kv_max_key > 2048)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT, "kv_max_key: %zu must be 1..2048 bytes",
                        o->kv_max_key);
    if (o->kv_max_value < 1 || o->kv_max_value > (64u << 20))
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                        "kv_max_value: %zu must be 1..67108864 bytes", o->kv_max_value);
    if (o->max_record_bytes < 1 || o->max_record_bytes > (64u << 20))
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                        "max_record_bytes: %zu must be 1..67108864", o->max_record_bytes);
    if (o->max_cache_bytes < 1 || o->max_cache_bytes > (64u << 20))
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                        "max_cache_bytes: %zu must be 1..67108864", o->max_cache_bytes);
    if (o->cache_max_ttl_s < 1 || o->cache_default_ttl_s < 1 ||
        o->cache_default_ttl_s > o->cache_max_ttl_s)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                        "cache_default_ttl_s: %lld must be 1..cache_max_ttl_s (%lld)",
                        (long long)o->cache_default_ttl_s, (long long)o->cache_max_ttl_s);
    if (o->kv_max_ttl_s < 1)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT, "kv_max_ttl_s: must be positive");
    if (o->commit_mode != SDB_COMMIT_GROUP && o->commit_mode != SDB_COMMIT_DIRECT)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT, "commit_mode: %d is unknown",
                        o->commit_mode);
    if (o->max_group_ops < 1)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT, "max_group_ops: must be >= 1");
    if (o->group_linger_us < 0 || o->group_linger_us > 100000)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT, "group_linger_us: %d must be 0..100000",
                        o->group_linger_us);
    if (o->sweep_interval_ms < 0 || o->sweep_batch < 0)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                        "sweep_interval_ms/sweep_batch: must not be negative");
    if (o->rocksdb_log_level < 0 || o->rocksdb_log_level > 5)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                        "rocksdb_log_level: %d must be 0 (debug)..5 (header)",
                        o->rocksdb_log_level);
    if (o->history_max_age_s < 0)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                        "history_max_age_s: must not be negative");
    return SBX_OK;
}

/* mkdir -p with mode 0700 for the directories it creates. */
static int mkdirs(const char *path, char *err, size_t errlen)
{
    char *p = strdup(path);
    if (!p)
        return sdb__err(err, errlen, SBX_RESOURCE_EXHAUSTED, "out of memory");
    for (char *s = p + 1;; s++) {
        char c = *s;
        if (c == '/' || c == '\0') {
            *s = '\0';
            if (mkdir(p, 0700) != 0 && errno != EEXIST) {
                int e = errno;
                int code = sdb__err(err, errlen, sbx_status_from_errno(e),
                                    "data_dir: cannot create %s: %s", p, strerror(e));
                free(p);
                return code;
            }
            *s = c;
        }
        if (c == '\0')
            break;
    }
    free(p);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return sdb__err(err, errlen, SBX_FAILED_PRECONDITION, "data_dir: %s is not a directory",
                        path);
    return SBX_OK;
}

static void free_handles(sdb *db)
{
    for (int i = 0; i < SDB__CF_COUNT; i++) {
        if (db->cf[i])
            rocksdb_column_family_handle_destroy(db->cf[i]);
        db->cf[i] = NULL;
    }
    if (db->rdb)
        rocksdb_close(db->rdb);
    db->rdb = NULL;
    for (int i = 0; i < SDB__CF_COUNT; i++) {
        if (db->cfopts[i])
            rocksdb_options_destroy(db->cfopts[i]);
        if (db->cfilter[i])
            rocksdb_compactionfilter_destroy(db->cfilter[i]);
        free(db->sweep_cursor[i]);
    }
    if (db->dbopts)
        rocksdb_options_destroy(db->dbopts);
    if (db->bbto)
        rocksdb_block_based_options_destroy(db->bbto);
    if (db->bcache)
        rocksdb_cache_destroy(db->bcache);
    if (db->ro)
        rocksdb_readoptions_destroy(db->ro);
    if (db->wo)
        rocksdb_writeoptions_destroy(db->wo);
}

static void destroy_sync(sdb *db)
{
    pthread_mutex_destroy(&db->q_mu);
    pthread_cond_destroy(&db->q_cv);
    pthread_mutex_destroy(&db->v_mu);
    pthread_rwlock_destroy(&db->excl);
    for (int i = 0; i < SDB__LOCK_STRIPES; i++)
        pthread_mutex_destroy(&db->stripes[i]);
    pthread_mutex_destroy(&db->sw_mu);
    pthread_mutex_destroy(&db->sweep_mu);
    pthread_cond_destroy(&db->sw_cv);
    sdb__watch_destroy(db);
}

static void init_sync(sdb *db)
{
    pthread_condattr_t ca; /* timed waits (linger, sweeper) on the monotonic clock */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&db->q_mu, NULL);
    pthread_cond_init(&db->q_cv, &ca);
    pthread_mutex_init(&db->v_mu, NULL);
    pthread_rwlock_init(&db->excl, NULL);
    for (int i = 0; i < SDB__LOCK_STRIPES; i++)
        pthread_mutex_init(&db->stripes[i], NULL);
    pthread_mutex_init(&db->sw_mu, NULL);
    pthread_mutex_init(&db->sweep_mu, NULL);
    pthread_cond_init(&db->sw_cv, &ca);
    pthread_condattr_destroy(&ca);
    sdb__watch_init(db);
}

/* The RocksDB options of the database and of each column family. */
static void make_options(sdb *db, const sdb_opts *o)
{
    db->dbopts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(db->dbopts, o->create_if_missing);
    rocksdb_options_set_create_missing_column_families(db->dbopts, 1);
    rocksdb_options_increase_parallelism(db->dbopts, 2);
    /* RocksDB's own info LOG: FATAL only by default. This Debian build keeps assertions on,
     * and its LOG writer aborts the process on the next log line after the disk filled up
     * (WritableFileWriter::AssertFalseAndGetStatusForPrevError, from the SstFileManager's
     * recovery thread); with nothing logged a full disk is a clean RESOURCE_EXHAUSTED. Our own
     * log says what failed. opts.rocksdb_log_level raises it for debugging. */
    rocksdb_options_set_info_log_level(db->dbopts, o->rocksdb_log_level);
    rocksdb_options_set_keep_log_file_num(db->dbopts, 3);
    rocksdb_options_set_max_log_file_size(db->dbopts, 8u << 20);
    rocksdb_options_set_max_total_wal_size(db->dbopts, 256u << 20);
    rocksdb_options_set_enable_pipelined_write(db->dbopts, 0);
    /* 16 MiB memtables instead of RocksDB's 64: every write inserts into a skip list whose
     * search costs grow with its size (MemTable::Add was the largest part of a Set's apply);
     * 3-22% more durable Sets at 64 in flight, reads the same (issue 11's bench). */
    rocksdb_options_set_write_buffer_size(db->dbopts, 16u << 20);

    db->bbto = rocksdb_block_based_options_create();
    db->bcache = rocksdb_cache_create_lru(o->block_cache_bytes ? o->block_cache_bytes : 8u << 20);
    rocksdb_block_based_options_set_block_cache(db->bbto, db->bcache);
    rocksdb_block_based_options_set_filter_policy(db->bbto,
                                                  rocksdb_filterpolicy_create_bloom_full(10));
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(db->bbto, 1);
    rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(db->bbto, 1);

    /* the committer's entries cache cannot follow the filter's drops (rcache.c) */
    db->rc.entries = !o->compaction_filter;
    for (int i = 0; i < SDB__CF_COUNT; i++) {
        db->cfopts[i] = rocksdb_options_create_copy(db->dbopts);
        rocksdb_options_set_block_based_table_factory(db->cfopts[i], db->bbto);
        if (o->compaction_filter && (i == SDB__CF_CACHE || i == SDB__CF_KV)) {
            db->cfilter[i] = sdb__expiry_filter(db, i);
            rocksdb_options_set_compaction_filter(db->cfopts[i], db->cfilter[i]);
        }
    }
}

static int open_rocks(sdb *db, const sdb_opts *o, char *err, size_t errlen)
{
    const rocksdb_options_t *cfo[SDB__CF_COUNT];
    for (int i = 0; i < SDB__CF_COUNT; i++)
        cfo[i] = db->cfopts[i];
    char *rerr = NULL;
    db->rdb = rocksdb_open_column_families(db->dbopts, o->path, SDB__CF_COUNT, cf_names, cfo,
                                           db->cf, &rerr);
    if (rerr || !db->rdb) {
        for (int i = 0; i < SDB__CF_COUNT; i++)
            db->cf[i] = NULL; /* not set on failure */
        return sdb__rocks_err("open", rerr, err, errlen);
    }
    db->ro = rocksdb_readoptions_create();
    db->wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(db->wo, o->sync);
    return SBX_OK;
}

static int start_threads(sdb *db, char *err, size_t errlen)
{
    int rc = sdb__commit_start(db);
    if (rc)
        return sdb__err(err, errlen, rc, "store open failed: cannot start the committer thread");
    if ((rc = sdb__sweeper_start(db)) != SBX_OK) {
        sdb__commit_stop(db);
        return sdb__err(err, errlen, rc, "store open failed: cannot start the sweeper thread");
    }
    return SBX_OK;
}

int sdb_open(const sdb_opts *o, sdb **out, char *err, size_t errlen)
{
    *out = NULL;
    int rc = check_opts(o, err, errlen);
    if (rc)
        return rc;
    if (o->create_if_missing && (rc = mkdirs(o->path, err, errlen)) != SBX_OK)
        return rc;

    sdb *db = calloc(1, sizeof *db);
    if (!db)
        return sdb__err(err, errlen, SBX_RESOURCE_EXHAUSTED, "out of memory");
    db->o = *o;
    if (!db->o.clock)
        db->o.clock = wall_clock;
    db->path = strdup(o->path);
    db->o.path = db->path;
    init_sync(db);
    make_options(db, o);
    if ((rc = open_rocks(db, o, err, errlen)) != SBX_OK ||
        (rc = start_threads(db, err, errlen)) != SBX_OK)
        goto free_db;
    SBX_LOG_INFO("store", "opened db path=%s sync=%s commit=%s", o->path, o->sync ? "on" : "off",
                 o->commit_mode == SDB_COMMIT_GROUP ? "group" : "direct");
    *out = db;
    return SBX_OK;

free_db:
    free_handles(db);
    destroy_sync(db);
    free(db->path);
    free(db);
    return rc;
}

void sdb_close(sdb *db)
{
    if (!db)
        return;
    atomic_store(&db->closing, true);
    sdb__watch_close(db);
    sdb__sweeper_stop(db);
    sdb__commit_stop(db);
    free_handles(db);
    destroy_sync(db);
    SBX_LOG_INFO("store", "closed db path=%s", db->path);
    free(db->path);
    free(db);
}

void sdb_stats_read(const sdb *db, sdb_stats *o)
{
#define LD(f) o->f = atomic_load_explicit(&db->st.f, memory_order_relaxed)
    LD(cache_hits);
    LD(cache_misses);
    LD(cache_expired);
    LD(cache_puts);
    LD(history_appends);
    LD(history_duplicates);
    LD(kv_reads);
    LD(kv_writes);
    LD(commit_groups);
    LD(commit_ops);
    LD(commit_failures);
    LD(commit_syncs);
    LD(swept_expired);
    LD(swept_history);
#undef LD
}

int sdb_property(sdb *db, const char *name, uint64_t *out)
{
    uint64_t sum = 0;
    int found = 0;
    for (int i = 0; i < SDB__CF_COUNT; i++) {
        uint64_t v = 0;
        if (rocksdb_property_int_cf(db->rdb, db->cf[i], name, &v) == 0) {
            sum += v;
            found = 1;
        }
    }
    *out = sum;
    return found ? 0 : -1;
}

void sdb_compact(sdb *db)
{
    for (int i = 0; i < SDB__CF_COUNT; i++)
        rocksdb_compact_range_cf(db->rdb, db->cf[i], NULL, 0, NULL, 0);
}
