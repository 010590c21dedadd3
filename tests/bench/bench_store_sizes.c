/* bench_store_sizes.c: sbx-store's engine at size: loads N history records into one project
 * and N KV keys (default 1,000,000 each, with 8 writer threads sharing group commits), then
 * times listing a page at the newest end and deep inside (via page tokens), p50/p99 over
 * repeated calls. Goal (store issue): a page in <= 1 ms with a million of each.
 *   bench_store_sizes [N] [DIR]   (DIR is removed afterwards unless given) */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "storedb.h"

static sdb *db;
static long total;
static const int writers = 8;

static void *load_hist(void *arg)
{
    long w = (long)arg;
    char err[256], data[200];
    memset(data, 'r', sizeof data);
    for (long i = w; i < total; i += writers) {
        sdb_hist_entry e = {.project = sdb_slice_c("big"),
                            .data = sdb_slice_n(data, sizeof data),
                            .time_ms = 1700000000000LL + i};
        sdb_hist_result r;
        if (sdb_hist_append(db, sdb_slice_c("bench"), &e, &r, err, sizeof err) != 0) {
            fprintf(stderr, "append: %s\n", err);
            exit(1);
        }
    }
    return NULL;
}

static void *load_kv(void *arg)
{
    long w = (long)arg;
    char err[256], key[32], val[100];
    memset(val, 'v', sizeof val);
    for (long i = w; i < total; i += writers) {
        snprintf(key, sizeof key, "k%07ld", i);
        sdb_kv_set_req s = {.key = sdb_slice_c(key), .value = sdb_slice_n(val, sizeof val)};
        sdb_kv_meta m;
        if (sdb_kv_set(db, sdb_slice_c("bench"), &s, &m, err, sizeof err) != 0) {
            fprintf(stderr, "set: %s\n", err);
            exit(1);
        }
    }
    return NULL;
}

static int count_cb(void *arg, const void *x)
{
    (void)x;
    (*(int *)arg)++;
    return 0;
}
static int hist_cb(void *arg, const sdb_hist_rec *r)
{
    return count_cb(arg, r);
}
static int kv_cb(void *arg, const sdb_kv_item *it)
{
    return count_cb(arg, it);
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void load(void *(*fn)(void *), const char *what)
{
    pthread_t t[8];
    uint64_t t0 = sbx_mono_ns();
    for (long i = 0; i < writers; i++)
        pthread_create(&t[i], NULL, fn, (void *)i);
    for (int i = 0; i < writers; i++)
        pthread_join(t[i], NULL);
    printf("loaded %ld %s in %.1f s (%.0f/s, sync off, %d writers)\n", total, what,
           (sbx_mono_ns() - t0) / 1e9, total / ((sbx_mono_ns() - t0) / 1e9), writers);
}

/* Times `reps` listings of one page; token selects where. */
static void time_hist(const char *label, const char *token, int reps)
{
    double *t = malloc(sizeof(double) * (size_t)reps);
    char err[256];
    int n = 0;
    for (int i = 0; i < reps; i++) {
        sdb_hist_query q = {.project = sdb_slice_c("big"),
                            .has_limit = true,
                            .limit = 50,
                            .page_token = sdb_slice_c(token)};
        sdb_page pg;
        n = 0;
        uint64_t t0 = sbx_mono_ns();
        if (sdb_hist_list(db, sdb_slice_c("bench"), &q, hist_cb, &n, &pg, err, sizeof err) != 0) {
            fprintf(stderr, "list: %s\n", err);
            exit(1);
        }
        t[i] = (sbx_mono_ns() - t0) / 1e3;
    }
    qsort(t, (size_t)reps, sizeof *t, cmpd);
    printf("%-44s %3d records  p50 %7.1f us  p99 %7.1f us\n", label, n, t[reps / 2],
           t[reps * 99 / 100]);
    free(t);
}

static void time_kv(const char *label, const char *prefix, const char *token, int reps)
{
    double *t = malloc(sizeof(double) * (size_t)reps);
    char err[256];
    int n = 0;
    for (int i = 0; i < reps; i++) {
        sdb_page pg;
        n = 0;
        uint64_t t0 = sbx_mono_ns();
        if (sdb_kv_list(db, sdb_slice_c("bench"), sdb_slice_c(prefix), true, 100,
                        sdb_slice_c(token), false, kv_cb, &n, &pg, err, sizeof err) != 0) {
            fprintf(stderr, "kv list: %s\n", err);
            exit(1);
        }
        t[i] = (sbx_mono_ns() - t0) / 1e3;
    }
    qsort(t, (size_t)reps, sizeof *t, cmpd);
    printf("%-44s %3d keys     p50 %7.1f us  p99 %7.1f us\n", label, n, t[reps / 2],
           t[reps * 99 / 100]);
    free(t);
}

/* Walks `pages` pages of `limit` records from the newest and returns the token there. */
static void hist_token_at(long pages, int limit, char *out)
{
    char err[256];
    out[0] = '\0';
    for (long p = 0; p < pages; p++) {
        sdb_hist_query q = {.project = sdb_slice_c("big"),
                            .has_limit = true,
                            .limit = limit,
                            .page_token = sdb_slice_c(out)};
        sdb_page pg;
        int n = 0;
        if (sdb_hist_list(db, sdb_slice_c("bench"), &q, hist_cb, &n, &pg, err, sizeof err) != 0) {
            fprintf(stderr, "walk: %s\n", err);
            exit(1);
        }
        snprintf(out, SDB_TOKEN_MAX, "%s", pg.next_token);
    }
}

int main(int argc, char **argv)
{
    total = argc > 1 ? strtol(argv[1], NULL, 10) : 1000000;
    char tmpl[] = "/tmp/sbx-sizes-XXXXXX";
    const char *dir = argc > 2 ? argv[2] : mkdtemp(tmpl);
    if (total < 1000 || !dir) {
        fprintf(stderr, "usage: bench_store_sizes [N >= 1000] [DIR]\n");
        return 2;
    }
    sdb_opts o;
    sdb_opts_default(&o);
    o.path = dir;
    o.sync = false;
    o.sweep_interval_ms = 0;
    char err[512];
    if (sdb_open(&o, &db, err, sizeof err) != 0) {
        fprintf(stderr, "open: %s\n", err);
        return 1;
    }
    load(load_hist, "history records");
    load(load_kv, "KV keys");
    sdb_compact(db);
    char tok[SDB_TOKEN_MAX];
    time_hist("history: newest page (limit 50)", "", 500);
    hist_token_at(total / 1000 / 2, 1000, tok);
    time_hist("history: page in the middle (via token)", tok, 500);
    hist_token_at(total / 1000 - 1, 1000, tok);
    time_hist("history: oldest end (via token)", tok, 500);
    time_kv("kv: first page (limit 100)", "", "", 500);
    time_kv("kv: prefix k05 (middle of the keyspace)", "k05", "", 500);
    sdb_page pg;
    int n = 0;
    sdb_kv_list(db, sdb_slice_c("bench"), sdb_slice_c("k09"), true, 100, sdb_slice_c(""), true,
                kv_cb, &n, &pg, err, sizeof err);
    snprintf(tok, sizeof tok, "%s", pg.next_token);
    time_kv("kv: next page by cursor (prefix k09)", "k09", tok, 500);
    uint64_t sst = 0;
    sdb_property(db, "rocksdb.total-sst-files-size", &sst);
    printf("database size on disk: %.1f MiB\n", (double)sst / (1 << 20));
    sdb_close(db);
    if (argc <= 2) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", dir);
    }
    return 0;
}
