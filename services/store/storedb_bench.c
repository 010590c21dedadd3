/* storedb_bench.c: engine micro-benchmark (no gRPC). Measures synced writes with 1 and N
 * concurrent writers in both commit modes (GROUP: own committer thread; DIRECT: striped locks
 * + RocksDB group commit), for appends to ONE project and KV sets of distinct keys, and the
 * latency of Get / GetCachedResult / GetProject reads.
 *   sbx-storedb-bench [dir] [seconds-per-case]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "storedb.h"

typedef struct {
    sdb *db;
    int id, kind;
    double until;
    long ops, fails;
} worker;

enum { APPEND_ONE_PROJECT, APPEND_OWN_PROJECT, KV_SET_DISTINCT, KV_INCR_ONE_KEY };
static const char *kind_name[] = {"append, one project", "append, project per writer",
                                  "kv set, distinct keys", "kv incr, one key"};

static void *work(void *arg)
{
    worker *w = arg;
    char key[64], proj[32];
    char payload[200];
    memset(payload, 'x', sizeof payload);
    snprintf(proj, sizeof proj, "p%d", w->id);
    while (sbx_mono_ns() / 1e9 < w->until) {
        int rc;
        switch (w->kind) {
        case APPEND_ONE_PROJECT:
        case APPEND_OWN_PROJECT: {
            sdb_hist_entry e = {sdb_slice_c(w->kind == APPEND_ONE_PROJECT ? "shared" : proj),
                                sdb_slice_c(""), sdb_slice_n(payload, sizeof payload), 0, 0};
            rc = sdb_hist_append(w->db, sdb_slice_c("bench"), &e, NULL, NULL, 0);
            break;
        }
        case KV_SET_DISTINCT: {
            snprintf(key, sizeof key, "w%d-k%ld", w->id, w->ops % 10000);
            sdb_kv_set_req r = {.key = sdb_slice_c(key), .value = sdb_slice_n(payload, 100)};
            rc = sdb_kv_set(w->db, sdb_slice_c("bench"), &r, NULL, NULL, 0);
            break;
        }
        default:
            rc = sdb_kv_incr(w->db, sdb_slice_c("bench"), sdb_slice_c("ctr"), 1, NULL, NULL, NULL,
                             0);
        }
        if (rc)
            w->fails++;
        else
            w->ops++;
    }
    return NULL;
}

static sdb *open_db(const char *dir, int mode, bool sync)
{
    sdb_opts o;
    sdb_opts_default(&o);
    o.path = dir;
    o.commit_mode = mode;
    o.sync = sync;
    o.sweep_interval_ms = 0;
    sdb *db;
    char err[512];
    if (sdb_open(&o, &db, err, sizeof err)) {
        fprintf(stderr, "open %s: %s\n", dir, err);
        exit(1);
    }
    return db;
}

static double run(sdb *db, int kind, int threads, double secs)
{
    worker *w = calloc((size_t)threads, sizeof *w);
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    double t0 = sbx_mono_ns() / 1e9;
    for (int i = 0; i < threads; i++) {
        w[i] = (worker){db, i, kind, t0 + secs, 0, 0};
        pthread_create(&th[i], NULL, work, &w[i]);
    }
    long ops = 0, fails = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        ops += w[i].ops;
        fails += w[i].fails;
    }
    double el = sbx_mono_ns() / 1e9 - t0;
    free(w);
    free(th);
    if (fails)
        fprintf(stderr, "  (%ld failures)\n", fails);
    return (double)ops / el;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void read_latency(sdb *db)
{
    enum { N = 20000 };
    static double lat[N];
    sdb_kv_set_req r = {.key = sdb_slice_c("hot"), .value = sdb_slice_c("value")};
    sdb_kv_set(db, sdb_slice_c("bench"), &r, NULL, NULL, 0);
    sdb_cache_put(db, sdb_slice_c("bench"), sdb_slice_c("shared"), sdb_slice_c("cmd"),
                  sdb_slice_c("cached-result"), 0, NULL, NULL, 0);
    const char *names[] = {"kv get", "cache get", "project get"};
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < N; i++) {
            uint64_t t0 = sbx_mono_ns();
            if (k == 0) {
                char *v;
                size_t n;
                sdb_kv_get(db, sdb_slice_c("bench"), sdb_slice_c("hot"), &v, &n, NULL, NULL, 0);
                free(v);
            } else if (k == 1) {
                sdb_cache_entry e;
                sdb_cache_get(db, sdb_slice_c("bench"), sdb_slice_c("shared"), sdb_slice_c("cmd"),
                              &e, NULL, 0);
                sdb_cache_entry_clear(&e);
            } else {
                sdb_project *p;
                sdb_proj_get(db, sdb_slice_c("bench"), sdb_slice_c("shared"), &p, NULL, 0);
                sdb_project_free(p);
            }
            lat[i] = (sbx_mono_ns() - t0) / 1e3;
        }
        qsort(lat, N, sizeof *lat, cmp_d);
        printf("%-12s p50 %.1f us  p99 %.1f us\n", names[k], lat[N / 2], lat[N * 99 / 100]);
    }
}

int main(int argc, char **argv)
{
    char tmpl[] = "/tmp/sbx-storedb-bench-XXXXXX";
    bool own = argc <= 1 || !argv[1][0];
    const char *base = own ? mkdtemp(tmpl) : argv[1];
    double secs = argc > 2 ? atof(argv[2]) : 2.0;
    char dir[512];
    const int conc[] = {1, 8, 64};
    printf("synced writes, ops/s (%.1f s per case, dir %s)\n", secs, base);
    printf("%-28s %8s %10s %10s\n", "case", "writers", "group", "direct");
    for (int kind = 0; kind < 4; kind++) {
        for (size_t c = 0; c < sizeof conc / sizeof *conc; c++) {
            double r[2];
            for (int mode = 0; mode < 2; mode++) {
                snprintf(dir, sizeof dir, "%s/k%d-c%d-m%d", base, kind, conc[c], mode);
                sdb *db = open_db(dir, mode, true);
                r[mode] = run(db, kind, conc[c], secs);
                sdb_close(db);
            }
            printf("%-28s %8d %10.0f %10.0f\n", kind_name[kind], conc[c], r[0], r[1]);
        }
    }
    snprintf(dir, sizeof dir, "%s/unsynced", base);
    sdb *db = open_db(dir, SDB_COMMIT_GROUP, false);
    printf("%-28s %8d %10.0f   (sync off)\n", kind_name[0], 1,
           run(db, APPEND_ONE_PROJECT, 1, secs));
    printf("%-28s %8d %10.0f   (sync off)\n", kind_name[0], 64,
           run(db, APPEND_ONE_PROJECT, 64, secs));
    read_latency(db);
    sdb_close(db);
    char cmd[600];
    if (own) {
        snprintf(cmd, sizeof cmd, "rm -rf %s", base);
        if (system(cmd) != 0)
            fprintf(stderr, "cleanup of %s failed\n", base);
    }
    return 0;
}
