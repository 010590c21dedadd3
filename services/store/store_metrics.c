/* store_metrics.c: renders the engine's counters and RocksDB properties for /metrics. */
#include "store_metrics.h"

#include "storedb.h"

static void counter(FILE *out, const char *name, const char *help, unsigned long long v)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name, v);
}

void sbx_store_metrics_write(FILE *out, void *arg)
{
    sdb *db = arg;
    sdb_stats st;
    sdb_stats_read(db, &st);
    counter(out, "sbx_store_cache_hits_total", "GetCachedResult answered from a fresh entry.",
            st.cache_hits);
    counter(out, "sbx_store_cache_misses_total", "GetCachedResult with no entry.", st.cache_misses);
    counter(out, "sbx_store_cache_expired_total", "GetCachedResult that found an expired entry.",
            st.cache_expired);
    counter(out, "sbx_store_cache_puts_total", "Cached results written.", st.cache_puts);
    counter(out, "sbx_store_history_appends_total", "Execution records appended.",
            st.history_appends);
    counter(out, "sbx_store_history_duplicates_total", "Appends answered by record id (replays).",
            st.history_duplicates);
    counter(out, "sbx_store_kv_reads_total", "KV reads.", st.kv_reads);
    counter(out, "sbx_store_kv_writes_total", "KV writes.", st.kv_writes);
    counter(out, "sbx_store_commit_groups_total", "Synced writes (each may carry many operations).",
            st.commit_groups);
    counter(out, "sbx_store_commit_ops_total", "Operations committed in groups.", st.commit_ops);
    counter(out, "sbx_store_commit_failures_total",
            "Groups whose write failed (nothing acknowledged).", st.commit_failures);
    counter(
        out, "sbx_store_commit_syncs_total",
        "WAL fdatasyncs (with sync on: one per round of the syncer, covering every group written since the previous one).",
        st.commit_syncs);
    counter(out, "sbx_store_swept_expired_total",
            "Expired cache/KV entries purged in the background.", st.swept_expired);
    counter(out, "sbx_store_swept_history_total", "History records removed by retention.",
            st.swept_history);
    static const struct {
        const char *prop, *name, *help;
    } gauges[] = {
        {"rocksdb.total-sst-files-size", "sbx_store_rocksdb_sst_bytes", "Size of all SST files."},
        {"rocksdb.cur-size-all-mem-tables", "sbx_store_rocksdb_memtable_bytes",
         "Size of all memtables."},
        {"rocksdb.estimate-num-keys", "sbx_store_rocksdb_estimated_keys",
         "Estimated number of keys."},
        {"rocksdb.estimate-pending-compaction-bytes", "sbx_store_rocksdb_pending_compaction_bytes",
         "Bytes compaction estimates it still has to rewrite."},
        {"rocksdb.compaction-pending", "sbx_store_rocksdb_compaction_pending",
         "1 when a compaction is pending."},
        {"rocksdb.num-running-compactions", "sbx_store_rocksdb_running_compactions",
         "Compactions running now."},
    };
    for (size_t i = 0; i < sizeof gauges / sizeof gauges[0]; i++) {
        uint64_t v;
        if (sdb_property(db, gauges[i].prop, &v) == 0)
            fprintf(out, "# HELP %s %s\n# TYPE %s gauge\n%s %llu\n", gauges[i].name, gauges[i].help,
                    gauges[i].name, gauges[i].name, (unsigned long long)v);
    }
}
