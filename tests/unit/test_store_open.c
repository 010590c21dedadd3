/* test_store_open.c: opening and closing the store (services/store/open.c, commit.c,
 * checkpoint.c): options, parent dirs, the data-dir lock, restart persistence, sync off,
 * checkpoints that open and read back, counters and RocksDB properties, the opt-in expiry
 * compaction filter, a full disk: the error is RESOURCE_EXHAUSTED and no write is
 * acknowledged that did not reach the WAL; with sync on the syncer follows RocksDB to each new
 * log file. */
#include "test_main.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store_fixture.h"

static void open_creates_parents_and_rejects_bad_options(void **state)
{
    (void)state;
    char *dir = tst_tmpdir(), path[512], err[512];
    snprintf(path, sizeof path, "%s/a/b/c", dir);
    sdb_opts o;
    sdb_opts_default(&o);
    o.path = path;
    o.sweep_interval_ms = 50; /* the background sweeper runs and stops cleanly */
    sdb *db = NULL;
    assert_int_equal(sdb_open(&o, &db, err, sizeof err), SBX_OK);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    usleep(120000);
    /* a second open of the same dir fails: RocksDB's LOCK */
    sdb *db2 = NULL;
    assert_int_equal(sdb_open(&o, &db2, err, sizeof err), SBX_UNAVAILABLE);
    assert_null(db2);
    assert_non_null(strstr(err, "in use by another process"));
    sdb_close(db);
    sdb_close(NULL);

    o.kv_max_key = 0;
    assert_int_equal(sdb_open(&o, &db, err, sizeof err), SBX_INVALID_ARGUMENT);
    assert_string_equal(err, "kv_max_key: 0 must be 1..2048 bytes");
    sdb_opts_default(&o);
    o.path = "";
    assert_int_equal(sdb_open(&o, &db, err, sizeof err), SBX_INVALID_ARGUMENT);
    assert_string_equal(err, "data_dir: must not be empty");
    /* missing dir without create_if_missing */
    snprintf(path, sizeof path, "%s/none", dir);
    o.path = path;
    o.create_if_missing = false;
    int rc = sdb_open(&o, &db, err, sizeof err);
    assert_true(rc == SBX_INVALID_ARGUMENT || rc == SBX_UNAVAILABLE);
    assert_null(db);
    tst_rmrf(dir);
    free(dir);
}

static void data_survives_restart(void **state)
{
    tst_db *t = *state;
    char err[256];
    sdb_kv_set_req r = {.key = S("k"), .value = S("v")};
    assert_int_equal(sdb_kv_set(t->db, S("t"), &r, NULL, err, sizeof err), SBX_OK);
    sdb_hist_entry e = {S("p"), S("rid"), S("rec"), 0, 0};
    assert_int_equal(sdb_hist_append(t->db, S("t"), &e, NULL, err, sizeof err), SBX_OK);
    assert_int_equal(
        sdb_cache_put(t->db, S("t"), S("p"), S("c"), S("res"), 0, NULL, err, sizeof err), SBX_OK);
    tst_db_reopen(t);
    char *v = NULL;
    size_t n;
    assert_int_equal(sdb_kv_get(t->db, S("t"), S("k"), &v, &n, NULL, err, sizeof err), SBX_OK);
    free(v);
    sdb_project *p;
    assert_int_equal(sdb_proj_get(t->db, S("t"), S("p"), &p, err, sizeof err), SBX_OK);
    assert_int_equal(p->execution_count, 1);
    assert_int_equal(p->cache_entries, 1);
    sdb_project_free(p);
    sdb_cache_entry ce;
    assert_int_equal(sdb_cache_get(t->db, S("t"), S("p"), S("c"), &ce, err, sizeof err), SBX_OK);
    assert_true(ce.found);
    sdb_cache_entry_clear(&ce);
}

static void sync_off_still_persists_across_close(void **state)
{
    tst_db *t = *state;
    t->o.sync = false;
    tst_db_reopen(t);
    for (int i = 0; i < 100; i++)
        assert_int_equal(sdb_kv_incr(t->db, S("t"), S("n"), 1, NULL, NULL, NULL, 0), SBX_OK);
    t->o.sync = true;
    tst_db_reopen(t);
    int64_t v;
    assert_int_equal(sdb_kv_incr(t->db, S("t"), S("n"), 0, &v, NULL, NULL, 0), SBX_OK);
    assert_int_equal(v, 100);
}

static void checkpoint_opens_and_reads_back(void **state)
{
    tst_db *t = *state;
    char err[512], cp[512];
    for (int i = 0; i < 50; i++) {
        sdb_hist_entry e = {S("p"), S(""), S("rec"), 0, 0};
        assert_int_equal(sdb_hist_append(t->db, S("t"), &e, NULL, err, sizeof err), SBX_OK);
    }
    sdb_kv_set_req r = {.key = S("k"), .value = S("checkpointed")};
    assert_int_equal(sdb_kv_set(t->db, S("t"), &r, NULL, err, sizeof err), SBX_OK);
    snprintf(cp, sizeof cp, "%s/cp1", t->dir);
    uint64_t seq = 0;
    int64_t us = -1;
    assert_int_equal(sdb_checkpoint(t->db, S(cp), &seq, &us, err, sizeof err), SBX_OK);
    assert_true(seq > 0);
    assert_true(us >= 0);
    /* writes after the checkpoint are not in it */
    r.value = S("later");
    assert_int_equal(sdb_kv_set(t->db, S("t"), &r, NULL, err, sizeof err), SBX_OK);
    /* errors */
    assert_int_equal(sdb_checkpoint(t->db, S(cp), NULL, NULL, err, sizeof err), SBX_ALREADY_EXISTS);
    assert_non_null(strstr(err, "already exists"));
    assert_int_equal(sdb_checkpoint(t->db, S("relative/dir"), NULL, NULL, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "absolute"));
    char missing[600];
    snprintf(missing, sizeof missing, "%s/no/such/parent", t->dir);
    assert_int_equal(sdb_checkpoint(t->db, S(missing), NULL, NULL, err, sizeof err),
                     SBX_FAILED_PRECONDITION);
    assert_int_equal(sdb_checkpoint(t->db, S(""), NULL, NULL, err, sizeof err),
                     SBX_INVALID_ARGUMENT);

    /* a second store on the copy */
    sdb_opts o = t->o;
    o.path = cp;
    sdb *copy = NULL;
    assert_int_equal(sdb_open(&o, &copy, err, sizeof err), SBX_OK);
    char *v = NULL;
    size_t n;
    assert_int_equal(sdb_kv_get(copy, S("t"), S("k"), &v, &n, NULL, err, sizeof err), SBX_OK);
    assert_int_equal(n, 12);
    assert_memory_equal(v, "checkpointed", 12);
    free(v);
    uint64_t last;
    assert_int_equal(sdb_hist_last_seq(copy, S("t"), S("p"), &last, err, sizeof err), SBX_OK);
    assert_int_equal(last, 50);
    /* the copy is independent and writable */
    sdb_hist_entry e = {S("p"), S(""), S("rec"), 0, 0};
    sdb_hist_result res;
    assert_int_equal(sdb_hist_append(copy, S("t"), &e, &res, err, sizeof err), SBX_OK);
    assert_int_equal(res.seq, 51);
    sdb_close(copy);
}

static void stats_and_properties(void **state)
{
    tst_db *t = *state;
    char err[256];
    for (int i = 0; i < 20; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        sdb_kv_set_req r = {.key = S(k), .value = S("v")};
        assert_int_equal(sdb_kv_set(t->db, S("t"), &r, NULL, err, sizeof err), SBX_OK);
    }
    sdb_stats st;
    sdb_stats_read(t->db, &st);
    assert_int_equal(st.kv_writes, 20);
    assert_int_equal(st.commit_ops, 20);
    assert_true(st.commit_groups >= 1 && st.commit_groups <= 20);
    assert_int_equal(st.commit_failures, 0);
    uint64_t v;
    assert_int_equal(sdb_property(t->db, "rocksdb.estimate-num-keys", &v), 0);
    assert_true(v >= 20);
    sdb_compact(t->db);
    assert_int_equal(sdb_property(t->db, "rocksdb.total-sst-files-size", &v), 0);
    assert_true(v > 0);
    assert_int_equal(sdb_property(t->db, "rocksdb.compaction-pending", &v), 0);
    assert_int_equal(sdb_property(t->db, "rocksdb.no-such-property", &v), -1);
}

static void compaction_filter_drops_expired(void **state)
{
    tst_db *t = *state;
    t->o.compaction_filter = true;
    tst_db_reopen(t);
    char err[256];
    sdb_kv_set_req r = {.key = S("short"), .value = S("v"), .ttl_s = 1};
    assert_int_equal(sdb_kv_set(t->db, S("t"), &r, NULL, err, sizeof err), SBX_OK);
    r.key = S("long");
    r.ttl_s = 0;
    assert_int_equal(sdb_kv_set(t->db, S("t"), &r, NULL, err, sizeof err), SBX_OK);
    atomic_fetch_add(&t->now, 2000);
    sdb_compact(t->db);
    /* physically gone: the sweeper finds nothing to remove */
    assert_int_equal(sdb_sweep(t->db), 0);
    char *v = NULL;
    size_t n;
    assert_int_equal(sdb_kv_get(t->db, S("t"), S("long"), &v, &n, NULL, err, sizeof err), SBX_OK);
    free(v);
}

/* A 3 MiB tmpfs as the data dir: writes fail with RESOURCE_EXHAUSTED once it is full, and
 * every write that reported OK is there after a reopen with more space. Needs CAP_SYS_ADMIN;
 * skipped otherwise. */
static void disk_full_is_resource_exhausted_and_never_acknowledged(void **state)
{
    (void)state;
    char *dir = tst_tmpdir(), path[512], err[512];
    if (mount("tmpfs", dir, "tmpfs", 0, "size=3m") != 0) {
        tst_rmrf(dir);
        free(dir);
        skip();
    }
    snprintf(path, sizeof path, "%s/db", dir);
    sdb_opts o;
    sdb_opts_default(&o);
    o.path = path;
    o.sweep_interval_ms = 0;
    sdb *db = NULL;
    assert_int_equal(sdb_open(&o, &db, err, sizeof err), SBX_OK);
    char *val = malloc(64 * 1024);
    memset(val, 'x', 64 * 1024);
    int ok = 0, rc = SBX_OK;
    for (int i = 0; i < 200; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%03d", i);
        sdb_kv_set_req r = {.key = S(k), .value = sdb_slice_n(val, 64 * 1024)};
        rc = sdb_kv_set(db, S("t"), &r, NULL, err, sizeof err);
        if (rc != SBX_OK)
            break;
        ok++;
    }
    assert_int_equal(rc, SBX_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(err, "disk is full"));
    /* later writes fail as well: nothing is acknowledged that is not durable */
    sdb_kv_set_req r = {.key = S("after"), .value = S("v")};
    assert_int_not_equal(sdb_kv_set(db, S("t"), &r, NULL, err, sizeof err), SBX_OK);
    sdb_stats st;
    sdb_stats_read(db, &st);
    assert_true(st.commit_failures >= 1);
    sdb_close(db);
    /* grow the filesystem and reopen: every acknowledged key is there */
    assert_int_equal(mount("tmpfs", dir, "tmpfs", MS_REMOUNT, "size=64m"), 0);
    assert_int_equal(sdb_open(&o, &db, err, sizeof err), SBX_OK);
    for (int i = 0; i < ok; i++) {
        char k[16], *v = NULL;
        size_t n;
        snprintf(k, sizeof k, "k%03d", i);
        assert_int_equal(sdb_kv_get(db, S("t"), S(k), &v, &n, NULL, err, sizeof err), SBX_OK);
        assert_int_equal(n, 64 * 1024);
        free(v);
    }
    sdb_close(db);
    free(val);
    umount2(dir, MNT_DETACH);
    tst_rmrf(dir);
    free(dir);
}

/* The numbers of the log files (NNNNNN.log under dir) this process holds descriptors of. */
static int held_logs(const char *dir, unsigned long *nums, int max)
{
    int n = 0;
    char link[64], target[1024];
    for (int fd = 0; fd < 4096 && n < max; fd++) {
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t len = readlink(link, target, sizeof target - 1);
        if (len <= 0)
            continue;
        target[len] = 0;
        size_t dn = strlen(dir);
        unsigned long num;
        char tail[8];
        if (strncmp(target, dir, dn) == 0 && target[dn] == '/' &&
            sscanf(target + dn + 1, "%lu.%7s", &num, tail) == 2 && strcmp(tail, "log") == 0)
            nums[n++] = num;
    }
    return n;
}

static unsigned long max_of(const unsigned long *v, int n)
{
    unsigned long m = 0;
    for (int i = 0; i < n; i++)
        m = v[i] > m ? v[i] : m;
    return m;
}

static void syncer_follows_new_log_files(void **state)
{
    tst_db *t = *state;
    assert_true(t->o.sync);
    char err[256];
    sdb_kv_set_req r = {.key = S("a"), .value = S("1")};
    assert_int_equal(sdb_kv_set(t->db, S("t"), &r, NULL, err, sizeof err), SBX_OK);
    unsigned long before[16], after[16];
    /* RocksDB's writer and the syncer's own descriptor of the current log */
    int nb = held_logs(t->path, before, 16);
    assert_true(nb >= 2);
    unsigned long cur = max_of(before, nb);
    /* a compaction flushes the memtable: RocksDB switches to a new log file */
    sdb_compact(t->db);
    r.key = S("b");
    assert_int_equal(sdb_kv_set(t->db, S("t"), &r, NULL, err, sizeof err), SBX_OK);
    int na = held_logs(t->path, after, 16);
    unsigned long next = max_of(after, na);
    assert_true(next > cur);
    int on_next = 0, on_old = 0;
    for (int i = 0; i < na; i++) {
        on_next += after[i] == next;
        on_old += after[i] == cur;
    }
    assert_int_equal(on_next, 2); /* RocksDB's and the syncer's */
    assert_int_equal(on_old, 0);  /* the old log got its last sync and was let go */
    sdb_stats st;
    sdb_stats_read(t->db, &st);
    assert_true(st.commit_syncs >= 2);
    tst_db_reopen(t);
    char *v = NULL;
    size_t n;
    assert_int_equal(sdb_kv_get(t->db, S("t"), S("b"), &v, &n, NULL, err, sizeof err), SBX_OK);
    free(v);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(open_creates_parents_and_rejects_bad_options),
    cmocka_unit_test_setup_teardown(data_survives_restart, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(sync_off_still_persists_across_close, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(checkpoint_opens_and_reads_back, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(stats_and_properties, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(compaction_filter_drops_expired, tst_setup, tst_teardown),
    cmocka_unit_test(disk_full_is_resource_exhausted_and_never_acknowledged),
    cmocka_unit_test_setup_teardown(syncer_follows_new_log_files, tst_setup, tst_teardown),
};
SBX_TEST_MAIN(tests)
