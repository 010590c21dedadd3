/* main.c (sbx-store): wires the flags, the RocksDB engine, the StateStore handlers, metrics and
 * the gRPC server together, then serves until SIGTERM/SIGINT. Closes in reverse order: the
 * server (no handler is still running) before the engine. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"
#include "log.h"
#include "metrics.h"
#include "rpc_server.h"
#include "serve.h"
#include "store_metrics.h"
#include "storedb.h"

enum { N_STORE_FLAGS = 12 };

typedef struct {
    const char *data_dir, *metrics_listen, *commit;
    bool sync;
    int64_t kv_max_key, kv_max_value, cache_ttl, cache_max_ttl, hist_max, hist_age, sweep_ms;
    int64_t linger_us;
} store_flags;

/* The store's own flags, after the server's common ones. */
static void store_flag_rows(sbx_cfg_opt *rows, store_flags *f)
{
    const sbx_cfg_opt own[N_STORE_FLAGS] = {
        {"data-dir", "SBX_DATA_DIR", SBX_CFG_STR, "./sbx-data/store", 0, 0, NULL,
         "directory of the RocksDB database (created with its parents)", &f->data_dir},
        {"sync", "SBX_SYNC", SBX_CFG_BOOL, "on", 0, 0, NULL,
         "on: a write is acknowledged only after its WAL record is fdatasync'ed (survives power "
         "loss); off: survives a process crash, not a power loss",
         &f->sync},
        {"metrics-listen", "SBX_METRICS_LISTEN", SBX_CFG_STR, NULL, 0, 0, NULL,
         "HOST:PORT serving Prometheus text on GET /metrics (off when unset)", &f->metrics_listen},
        {"commit-mode", "SBX_COMMIT_MODE", SBX_CFG_ENUM, "group", 0, 0, "group|direct",
         "group: one committer thread merges concurrent writes into one synced write; direct: "
         "each writer writes itself (RocksDB's own group commit)",
         &f->commit},
        {"commit-linger-us", "SBX_COMMIT_LINGER_US", SBX_CFG_INT, "0", 0, 100000, NULL,
         "group: when the last group or sync round had several writers, wait up to this long "
         "for as many before writing, so they share one write and fsync (0 = never wait)",
         &f->linger_us},
        {"kv-max-key", "SBX_KV_MAX_KEY", SBX_CFG_SIZE, "1024", 1, 2048, NULL,
         "largest KV key, bytes", &f->kv_max_key},
        {"kv-max-value", "SBX_KV_MAX_VALUE", SBX_CFG_SIZE, "1M", 0, 1 << 20, NULL,
         "largest KV value, bytes (store.proto: 0..1 MiB)", &f->kv_max_value},
        {"cache-ttl", "SBX_CACHE_TTL", SBX_CFG_INT, "3600", 1, 30 * 86400, NULL,
         "default TTL of a cached result, seconds", &f->cache_ttl},
        {"cache-max-ttl", "SBX_CACHE_MAX_TTL", SBX_CFG_INT, "2592000", 1, 365LL * 86400, NULL,
         "largest TTL a client may ask for a cached result, seconds", &f->cache_max_ttl},
        {"history-max-records", "SBX_HISTORY_MAX_RECORDS", SBX_CFG_INT, "0", 0, 1LL << 40, NULL,
         "default history retention per project, records (0 = unlimited; projects may set their "
         "own)",
         &f->hist_max},
        {"history-max-age", "SBX_HISTORY_MAX_AGE", SBX_CFG_INT, "0", 0, 100LL * 365 * 86400, NULL,
         "default history retention per project, seconds (0 = unlimited)", &f->hist_age},
        {"sweep-interval-ms", "SBX_SWEEP_INTERVAL_MS", SBX_CFG_INT, "10000", 0, 3600000, NULL,
         "period of the background sweeper (expired cache/KV entries, retention); 0 = off",
         &f->sweep_ms},
    };
    memcpy(rows, own, sizeof own);
}

static void engine_opts(const store_flags *f, sdb_opts *o)
{
    sdb_opts_default(o);
    o->path = f->data_dir;
    o->sync = f->sync;
    o->commit_mode = f->commit && f->commit[0] == 'd' ? SDB_COMMIT_DIRECT : SDB_COMMIT_GROUP;
    o->group_linger_us = (int)f->linger_us;
    o->kv_max_key = (size_t)f->kv_max_key;
    o->kv_max_value = (size_t)f->kv_max_value;
    o->cache_default_ttl_s = f->cache_ttl;
    o->cache_max_ttl_s = f->cache_max_ttl;
    o->history_max_records = (uint64_t)f->hist_max;
    o->history_max_age_s = f->hist_age;
    o->sweep_interval_ms = (int)f->sweep_ms;
}

/* Serves db until a signal. Returns the exit status. */
static int serve(sdb *db, const sbx_server_opts *so, const sbx_server_flags *sf,
                 const char *metrics_listen)
{
    sbx_rpc_init();
    sbx_server *srv = sbx_server_new(so, sbx_store_service(db), 1);
    if (!srv) {
        sbx_rpc_shutdown();
        return 1;
    }
    sbx_metrics_http *mh = NULL;
    if (metrics_listen) {
        int mport = 0;
        mh = sbx_metrics_listen(metrics_listen, srv, sbx_store_metrics_write, db, &mport);
        if (!mh) {
            sbx_server_free(srv);
            sbx_rpc_shutdown();
            return 1;
        }
        char maddr[300];
        sbx_listen_addr(metrics_listen, mport, maddr, sizeof maddr);
        SBX_LOG_INFO("store", "metrics on http://%s/metrics", maddr);
    }
    sbx_server_start(srv);
    sbx_serve_until_signal(srv, sf->listen, "store");
    sbx_metrics_stop(mh);
    sbx_server_free(srv);
    sbx_rpc_shutdown();
    return 0;
}

int main(int argc, char **argv)
{
    sbx_server_flags sf;
    store_flags f = {0};
    sbx_cfg_opt opts[SBX_SERVER_FLAG_COUNT + N_STORE_FLAGS];
    sbx_server_flag_rows(opts, &sf, "127.0.0.1:50052");
    store_flag_rows(opts + SBX_SERVER_FLAG_COUNT, &f);
    sbx_cfg_parse_or_exit(
        opts, sizeof opts / sizeof opts[0], argc, argv, NULL, "sbx-store",
        "sbx-store: execution history, result cache, project metadata and KV on RocksDB.");
    if (sbx_check_addr_flag("sbx-store", "--listen", sf.listen, true) ||
        sbx_check_addr_flag("sbx-store", "--metrics-listen", f.metrics_listen, true))
        return 2;
    sbx_signals_block();
    sbx_server_opts so;
    sbx_server_flags_apply(&sf, &so, "sbx.v1.StateStore");

    sdb_opts dbo;
    engine_opts(&f, &dbo);
    char err[512];
    sdb *db = NULL;
    if (sdb_open(&dbo, &db, err, sizeof err) != 0) {
        SBX_LOG_ERROR("store", "cannot open the database: %s", err);
        return 1;
    }
    SBX_LOG_INFO("store", "database open path=%s sync=%s commit=%s", f.data_dir,
                 f.sync ? "on" : "off", f.commit);
    int rc = serve(db, &so, &sf, f.metrics_listen);
    sdb_close(db); /* flushes; after the server so no handler is still running */
    if (rc == 0)
        SBX_LOG_INFO("store", "stopped cleanly");
    return rc;
}
