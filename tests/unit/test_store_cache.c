/* test_store_cache.c: the result cache (services/store/cache.c): TTL checked on read with an
 * injected clock, O(1) project-wide clear by generation, exact clear counts, RecordExecution
 * atomicity and its record-id rule, sweeper purge, tenant isolation, entry counts exact with
 * the committer's entries cache. */
#include "test_main.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_fixture.h"

static int put(tst_db *t, const char *tenant, const char *project, const char *cmd,
               const char *data, int64_t ttl_s)
{
    char err[256] = "";
    int rc =
        sdb_cache_put(t->db, S(tenant), S(project), S(cmd), S(data), ttl_s, NULL, err, sizeof err);
    if (rc)
        fprintf(stderr, "put: %s\n", err);
    return rc;
}

/* 1 hit, 0 miss, -1 expired */
static int get(tst_db *t, const char *tenant, const char *project, const char *cmd, char *out,
               size_t outn)
{
    sdb_cache_entry e;
    char err[256];
    assert_int_equal(sdb_cache_get(t->db, S(tenant), S(project), S(cmd), &e, err, sizeof err),
                     SBX_OK);
    int r = e.found ? 1 : e.expired ? -1 : 0;
    if (out)
        snprintf(out, outn, "%.*s", (int)e.len, e.data ? (char *)e.data : "");
    sdb_cache_entry_clear(&e);
    return r;
}

static void cache_put_get(void **state)
{
    tst_db *t = *state;
    int64_t exp = 0;
    char err[256], buf[64];
    assert_int_equal(
        sdb_cache_put(t->db, S("t"), S("p"), S("k1"), S("result-1"), 0, &exp, err, sizeof err),
        SBX_OK);
    assert_int_equal(exp, TST_T0 + 3600 * 1000); /* default TTL: one hour */
    assert_int_equal(get(t, "t", "p", "k1", buf, sizeof buf), 1);
    assert_string_equal(buf, "result-1");
    assert_int_equal(get(t, "t", "p", "nope", NULL, 0), 0);
    /* replace */
    assert_int_equal(put(t, "t", "p", "k1", "result-2", 60), SBX_OK);
    assert_int_equal(get(t, "t", "p", "k1", buf, sizeof buf), 1);
    assert_string_equal(buf, "result-2");
    /* the put created the project (version 0) */
    sdb_project *p;
    assert_int_equal(sdb_proj_get(t->db, S("t"), S("p"), &p, err, sizeof err), SBX_OK);
    assert_int_equal(p->version, 0);
    assert_int_equal(p->cache_entries, 1);
    sdb_project_free(p);
    sdb_stats st;
    sdb_stats_read(t->db, &st);
    assert_int_equal(st.cache_hits, 2);
    assert_int_equal(st.cache_misses, 1);
    assert_int_equal(st.cache_puts, 2);
}

static void cache_ttl_expiry_on_read(void **state)
{
    tst_db *t = *state;
    assert_int_equal(put(t, "t", "p", "k", "v", 10), SBX_OK);
    atomic_fetch_add(&t->now, 9999);
    assert_int_equal(get(t, "t", "p", "k", NULL, 0), 1);
    atomic_fetch_add(&t->now, 1); /* expiry instant: expired */
    assert_int_equal(get(t, "t", "p", "k", NULL, 0), -1);
    sdb_stats st;
    sdb_stats_read(t->db, &st);
    assert_int_equal(st.cache_expired, 1);
    assert_int_equal(st.cache_misses, 1);
    /* a fresh put revives it */
    assert_int_equal(put(t, "t", "p", "k", "v2", 10), SBX_OK);
    assert_int_equal(get(t, "t", "p", "k", NULL, 0), 1);
}

static void cache_validates_input(void **state)
{
    tst_db *t = *state;
    char err[256];
    assert_int_equal(
        sdb_cache_put(t->db, S("t"), S("p"), S("k"), S("v"), -1, NULL, err, sizeof err),
        SBX_INVALID_ARGUMENT);
    assert_string_equal(err, "ttl_s: -1 must be 0 (default 3600) or 1..2592000");
    assert_int_equal(
        sdb_cache_put(t->db, S("t"), S("p"), S("k"), S("v"), 2592001, NULL, err, sizeof err),
        SBX_INVALID_ARGUMENT);
    assert_int_equal(
        sdb_cache_put(t->db, S("t"), S("p"), S("k"), S("v"), 2592000, NULL, err, sizeof err),
        SBX_OK);
    assert_int_equal(sdb_cache_put(t->db, S("t"), S("p"), S(""), S("v"), 0, NULL, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_string_equal(err, "command_key: must not be empty");
    char key[300];
    memset(key, 'k', sizeof key);
    assert_int_equal(sdb_cache_put(t->db, S("t"), S("p"), sdb_slice_n(key, 257), S("v"), 0, NULL,
                                   err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_string_equal(err, "command_key: 257 bytes exceeds the limit of 256 bytes");
    sdb_cache_entry e;
    assert_int_equal(
        sdb_cache_get(t->db, S("t"), S("p"), sdb_slice_n("a\0", 2), &e, err, sizeof err),
        SBX_INVALID_ARGUMENT);
}

static void cache_clear_one(void **state)
{
    tst_db *t = *state;
    uint64_t n = 9;
    assert_int_equal(put(t, "t", "p", "a", "1", 0), SBX_OK);
    assert_int_equal(put(t, "t", "p", "b", "2", 0), SBX_OK);
    assert_int_equal(sdb_cache_clear(t->db, S("t"), S("p"), S("a"), &n, NULL, 0), SBX_OK);
    assert_int_equal(n, 1);
    assert_int_equal(get(t, "t", "p", "a", NULL, 0), 0);
    assert_int_equal(get(t, "t", "p", "b", NULL, 0), 1);
    assert_int_equal(sdb_cache_clear(t->db, S("t"), S("p"), S("a"), &n, NULL, 0), SBX_OK);
    assert_int_equal(n, 0);
}

static void cache_clear_project_is_generation_bump(void **state)
{
    tst_db *t = *state;
    char k[16];
    for (int i = 0; i < 50; i++) {
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(put(t, "t", "p", k, "v", i < 10 ? 1 : 0), SBX_OK);
    }
    assert_int_equal(put(t, "t", "other", "k1", "v", 0), SBX_OK);
    atomic_fetch_add(&t->now, 5000); /* 10 of them expired: still counted */
    uint64_t n = 0;
    sdb_stats before, after;
    sdb_stats_read(t->db, &before);
    assert_int_equal(sdb_cache_clear(t->db, S("t"), S("p"), S(""), &n, NULL, 0), SBX_OK);
    sdb_stats_read(t->db, &after);
    assert_int_equal(n, 50);
    assert_int_equal(after.commit_ops - before.commit_ops, 1); /* one write, not a scan */
    for (int i = 0; i < 50; i++) {
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(get(t, "t", "p", k, NULL, 0), 0);
    }
    assert_int_equal(get(t, "t", "other", "k1", NULL, 0), 1);
    sdb_project *p;
    assert_int_equal(sdb_proj_get(t->db, S("t"), S("p"), &p, NULL, 0), SBX_OK);
    assert_int_equal(p->cache_generation, 1);
    assert_int_equal(p->cache_entries, 0);
    sdb_project_free(p);
    /* new entries land in the new generation and survive a restart */
    assert_int_equal(put(t, "t", "p", "k3", "new", 0), SBX_OK);
    tst_db_reopen(t);
    char buf[16];
    assert_int_equal(get(t, "t", "p", "k3", buf, sizeof buf), 1);
    assert_string_equal(buf, "new");
    assert_int_equal(sdb_cache_clear(t->db, S("t"), S("p"), S(""), &n, NULL, 0), SBX_OK);
    assert_int_equal(n, 1);
}

static void record_execution_is_one_atomic_write(void **state)
{
    tst_db *t = *state;
    char err[256];
    sdb_record_exec r = {
        .hist = {S("p"), S("rec-1"), S("packed-record"), TST_T0 - 500, 3},
        .command_key = S("cmd"),
        .cache_data = S("packed-result"),
        .ttl_s = 60,
    };
    sdb_hist_result res;
    int64_t exp = 0;
    sdb_stats before, after;
    sdb_stats_read(t->db, &before);
    assert_int_equal(sdb_record_execution(t->db, S("t"), &r, &res, &exp, err, sizeof err), SBX_OK);
    sdb_stats_read(t->db, &after);
    assert_int_equal(after.commit_groups - before.commit_groups, 1);
    assert_int_equal(res.seq, 1);
    assert_false(res.duplicate);
    assert_int_equal(exp, TST_T0 + 60000);
    sdb_cache_entry e;
    assert_int_equal(sdb_cache_get(t->db, S("t"), S("p"), S("cmd"), &e, err, sizeof err), SBX_OK);
    assert_true(e.found);
    assert_int_equal(e.seq, 1);
    assert_memory_equal(e.data, "packed-result", 13);
    sdb_cache_entry_clear(&e);
    sdb_project *p;
    assert_int_equal(sdb_proj_get(t->db, S("t"), S("p"), &p, err, sizeof err), SBX_OK);
    assert_int_equal(p->execution_count, 1);
    assert_int_equal(p->last_seq, 1);
    assert_int_equal(p->last_exit_code, 3);
    assert_int_equal(p->last_execution_ms, TST_T0 - 500);
    assert_int_equal(p->version, 0);
    assert_int_equal(p->created_ms, TST_T0);
    sdb_project_free(p);

    /* replay: nothing written, neither history nor cache */
    assert_int_equal(sdb_cache_clear(t->db, S("t"), S("p"), S("cmd"), NULL, NULL, 0), SBX_OK);
    r.cache_data = S("other");
    assert_int_equal(sdb_record_execution(t->db, S("t"), &r, &res, &exp, err, sizeof err), SBX_OK);
    assert_true(res.duplicate);
    assert_int_equal(res.seq, 1);
    assert_int_equal(exp, 0);
    assert_int_equal(get(t, "t", "p", "cmd", NULL, 0), 0);
    /* no cache key: history only */
    r.hist.record_id = S("rec-2");
    r.command_key = S("");
    assert_int_equal(sdb_record_execution(t->db, S("t"), &r, &res, &exp, err, sizeof err), SBX_OK);
    assert_int_equal(res.seq, 2);
    assert_int_equal(get(t, "t", "p", "cmd", NULL, 0), 0);
    /* bad TTL: nothing written */
    r.hist.record_id = S("rec-3");
    r.command_key = S("cmd");
    r.ttl_s = -5;
    assert_int_equal(sdb_record_execution(t->db, S("t"), &r, &res, &exp, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    uint64_t last;
    assert_int_equal(sdb_hist_last_seq(t->db, S("t"), S("p"), &last, NULL, 0), SBX_OK);
    assert_int_equal(last, 2);
}

static uint64_t cache_entries(tst_db *t, const char *project)
{
    sdb_project *p;
    assert_int_equal(sdb_proj_get(t->db, S("t"), S(project), &p, NULL, 0), SBX_OK);
    uint64_t n = p->cache_entries;
    sdb_project_free(p);
    return n;
}

/* A fill asks the committer's entries cache (rcache.c) whether the command had an entry; it
 * keeps big results only as "present". The project's entry count is exact through refills of
 * big and small results, a one-key clear, a generation bump, the sweeper and a restart. */
static void fill_counts_entries_exactly(void **state)
{
    tst_db *t = *state;
    static char big[8192];
    memset(big, 'r', sizeof big - 1);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(put(t, "t", "p", "big", big, 0), SBX_OK);
        assert_int_equal(put(t, "t", "p", "small", "s", 1), SBX_OK);
    }
    assert_int_equal(cache_entries(t, "p"), 2);
    assert_int_equal(sdb_cache_clear(t->db, S("t"), S("p"), S("big"), NULL, NULL, 0), SBX_OK);
    assert_int_equal(cache_entries(t, "p"), 1);
    assert_int_equal(put(t, "t", "p", "big", big, 0), SBX_OK);
    assert_int_equal(cache_entries(t, "p"), 2);
    /* the sweeper deletes the expired small one; a refill counts it again */
    atomic_fetch_add(&t->now, 2000);
    assert_int_equal(sdb_sweep(t->db), 1);
    assert_int_equal(cache_entries(t, "p"), 1);
    assert_int_equal(put(t, "t", "p", "small", "s", 0), SBX_OK);
    assert_int_equal(cache_entries(t, "p"), 2);
    /* a generation bump: the same commands are new entries again */
    assert_int_equal(sdb_cache_clear(t->db, S("t"), S("p"), S(""), NULL, NULL, 0), SBX_OK);
    assert_int_equal(put(t, "t", "p", "big", big, 0), SBX_OK);
    assert_int_equal(cache_entries(t, "p"), 1);
    tst_db_reopen(t);
    assert_int_equal(put(t, "t", "p", "big", big, 0), SBX_OK);
    assert_int_equal(put(t, "t", "p", "small", "s", 0), SBX_OK);
    assert_int_equal(cache_entries(t, "p"), 2);
}

static void sweeper_purges_expired_entries(void **state)
{
    tst_db *t = *state;
    char k[16];
    for (int i = 0; i < 30; i++) {
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(put(t, "t", i % 2 ? "p" : "q", k, "v", i < 20 ? 10 : 1000), SBX_OK);
    }
    atomic_fetch_add(&t->now, 11000);
    uint64_t removed = sdb_sweep(t->db);
    assert_int_equal(removed, 20);
    sdb_project *p;
    assert_int_equal(sdb_proj_get(t->db, S("t"), S("p"), &p, NULL, 0), SBX_OK);
    assert_int_equal(p->cache_entries, 5);
    sdb_project_free(p);
    /* gone from disk, not just hidden: a get says miss, not expired */
    assert_int_equal(get(t, "t", "p", "k1", NULL, 0), 0);
    assert_int_equal(get(t, "t", "p", "k21", NULL, 0), 1);
    uint64_t n;
    assert_int_equal(sdb_cache_clear(t->db, S("t"), S("q"), S(""), &n, NULL, 0), SBX_OK);
    assert_int_equal(n, 5);
    assert_int_equal(sdb_sweep(t->db), 0);
}

static void cache_tenants_are_isolated(void **state)
{
    tst_db *t = *state;
    assert_int_equal(put(t, "alice", "p", "k", "secret", 0), SBX_OK);
    assert_int_equal(get(t, "bob", "p", "k", NULL, 0), 0);
    uint64_t n;
    assert_int_equal(sdb_cache_clear(t->db, S("bob"), S("p"), S(""), &n, NULL, 0), SBX_OK);
    assert_int_equal(n, 0);
    assert_int_equal(get(t, "alice", "p", "k", NULL, 0), 1);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(cache_put_get, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(cache_ttl_expiry_on_read, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(cache_validates_input, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(cache_clear_one, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(cache_clear_project_is_generation_bump, tst_setup,
                                    tst_teardown),
    cmocka_unit_test_setup_teardown(record_execution_is_one_atomic_write, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(fill_counts_entries_exactly, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(sweeper_purges_expired_entries, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(cache_tenants_are_isolated, tst_setup, tst_teardown),
};
SBX_TEST_MAIN(tests)
