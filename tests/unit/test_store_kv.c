/* test_store_kv.c: the tenant key-value space (services/store/kv.c): Set/Get/Delete, versions
 * from the per-tenant revision, CAS, TTLs on an injected clock, Incr (and 8 threads x 1000
 * increments = 8000 in both commit modes), List with prefix/cursor/keys-only, Flush of one
 * tenant, limits, sweeper; a write is seen by readers only once it is durable (the syncer held
 * before its fdatasync); versions and key counts exact with counters written once per group and
 * with the committer's entries cache answering the previous-entry reads. */
#include "test_main.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store_fixture.h"

static int kset(tst_db *t, const char *tenant, const char *key, const char *val, int64_t ttl,
                sdb_kv_meta *m)
{
    char err[256] = "";
    sdb_kv_set_req r = {.key = S(key), .value = S(val), .ttl_s = ttl};
    int rc = sdb_kv_set(t->db, S(tenant), &r, m, err, sizeof err);
    if (rc)
        fprintf(stderr, "set: %s\n", err);
    return rc;
}

static int kget(tst_db *t, const char *tenant, const char *key, char *out, size_t outn,
                sdb_kv_meta *m)
{
    char *v = NULL, err[256];
    size_t n = 0;
    int rc = sdb_kv_get(t->db, S(tenant), S(key), &v, &n, m, err, sizeof err);
    if (out)
        snprintf(out, outn, "%.*s", (int)n, v ? v : "");
    free(v);
    return rc;
}

static void kv_set_get_delete(void **state)
{
    tst_db *t = *state;
    sdb_kv_meta m;
    char buf[64], err[256];
    assert_int_equal(kset(t, "t", "a", "1", 0, &m), SBX_OK);
    assert_int_equal(m.version, 1);
    assert_int_equal(m.expires_ms, 0);
    assert_int_equal(kget(t, "t", "a", buf, sizeof buf, &m), SBX_OK);
    assert_string_equal(buf, "1");
    assert_int_equal(m.version, 1);
    /* binary values, empty values */
    char *v = NULL;
    size_t n;
    sdb_kv_set_req r = {.key = S("bin"), .value = sdb_slice_n("x\0y", 3)};
    assert_int_equal(sdb_kv_set(t->db, S("t"), &r, NULL, err, sizeof err), SBX_OK);
    assert_int_equal(sdb_kv_get(t->db, S("t"), S("bin"), &v, &n, NULL, err, sizeof err), SBX_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(v, "x\0y", 3);
    free(v);
    assert_int_equal(kset(t, "t", "empty", "", 0, NULL), SBX_OK);
    assert_int_equal(kget(t, "t", "empty", buf, sizeof buf, NULL), SBX_OK);
    assert_string_equal(buf, "");

    bool existed = false;
    assert_int_equal(sdb_kv_delete(t->db, S("t"), S("a"), &existed, err, sizeof err), SBX_OK);
    assert_true(existed);
    assert_int_equal(sdb_kv_delete(t->db, S("t"), S("a"), &existed, err, sizeof err), SBX_OK);
    assert_false(existed);
    assert_int_equal(kget(t, "t", "a", NULL, 0, NULL), SBX_NOT_FOUND);
}

static void kv_versions_only_grow(void **state)
{
    tst_db *t = *state;
    sdb_kv_meta m;
    assert_int_equal(kset(t, "t", "a", "1", 0, &m), SBX_OK);
    uint64_t v1 = m.version;
    assert_int_equal(kset(t, "t", "b", "1", 0, &m), SBX_OK);
    assert_int_equal(kset(t, "t", "a", "2", 0, &m), SBX_OK);
    assert_true(m.version > v1);
    uint64_t v2 = m.version;
    assert_int_equal(sdb_kv_delete(t->db, S("t"), S("a"), NULL, NULL, 0), SBX_OK);
    assert_int_equal(kset(t, "t", "a", "3", 0, &m), SBX_OK);
    assert_true(m.version > v2); /* even across Delete */
    uint64_t v3 = m.version;
    assert_int_equal(sdb_kv_flush(t->db, S("t"), NULL, NULL, 0), SBX_OK);
    tst_db_reopen(t);
    assert_int_equal(kset(t, "t", "a", "4", 0, &m), SBX_OK);
    assert_true(m.version > v3); /* and across Flush and restart */
    /* another tenant has its own counter */
    assert_int_equal(kset(t, "u", "a", "1", 0, &m), SBX_OK);
    assert_int_equal(m.version, 1);
}

static void kv_cas(void **state)
{
    tst_db *t = *state;
    char err[256];
    sdb_kv_meta m;
    sdb_kv_set_req r = {
        .key = S("k"), .value = S("v"), .has_expected_version = true, .expected_version = 0};
    assert_int_equal(sdb_kv_set(t->db, S("t"), &r, &m, err, sizeof err), SBX_OK);
    uint64_t v = m.version;
    assert_int_equal(sdb_kv_set(t->db, S("t"), &r, &m, err, sizeof err), SBX_FAILED_PRECONDITION);
    char want[128];
    snprintf(want, sizeof want, "version mismatch: expected 0, current %llu",
             (unsigned long long)v);
    assert_string_equal(err, want);
    r.expected_version = v;
    assert_int_equal(sdb_kv_set(t->db, S("t"), &r, &m, err, sizeof err), SBX_OK);
    assert_int_equal(sdb_kv_set(t->db, S("t"), &r, &m, err, sizeof err), SBX_FAILED_PRECONDITION);
    /* an expired key counts as missing: expected 0 succeeds */
    sdb_kv_set_req e = {.key = S("e"), .value = S("v"), .ttl_s = 1};
    assert_int_equal(sdb_kv_set(t->db, S("t"), &e, &m, err, sizeof err), SBX_OK);
    atomic_fetch_add(&t->now, 1000);
    e.has_expected_version = true;
    e.expected_version = 5;
    assert_int_equal(sdb_kv_set(t->db, S("t"), &e, &m, err, sizeof err), SBX_FAILED_PRECONDITION);
    assert_string_equal(err, "version mismatch: expected 5, current 0");
    e.expected_version = 0;
    e.ttl_s = 0;
    assert_int_equal(sdb_kv_set(t->db, S("t"), &e, &m, err, sizeof err), SBX_OK);
}

static void kv_ttl(void **state)
{
    tst_db *t = *state;
    char err[256];
    sdb_kv_meta m;
    assert_int_equal(kset(t, "t", "k", "v", 10, &m), SBX_OK);
    assert_int_equal(m.expires_ms, TST_T0 + 10000);
    atomic_fetch_add(&t->now, 9999);
    assert_int_equal(kget(t, "t", "k", NULL, 0, &m), SBX_OK);
    atomic_fetch_add(&t->now, 1);
    assert_int_equal(kget(t, "t", "k", NULL, 0, &m), SBX_NOT_FOUND);
    bool existed = true;
    assert_int_equal(sdb_kv_delete(t->db, S("t"), S("k"), &existed, err, sizeof err), SBX_OK);
    assert_false(existed); /* expired = not there */
    /* absolute expiry */
    int64_t now = atomic_load(&t->now);
    sdb_kv_set_req r = {.key = S("abs"), .value = S("v"), .expires_at_ms = now + 500};
    assert_int_equal(sdb_kv_set(t->db, S("t"), &r, &m, err, sizeof err), SBX_OK);
    assert_int_equal(m.expires_ms, now + 500);
    /* bad TTLs */
    r.expires_at_ms = now;
    assert_int_equal(sdb_kv_set(t->db, S("t"), &r, &m, err, sizeof err), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "expires_at_unix_ms"));
    r.expires_at_ms = now + 100;
    r.ttl_s = 5;
    assert_int_equal(sdb_kv_set(t->db, S("t"), &r, &m, err, sizeof err), SBX_INVALID_ARGUMENT);
    r.expires_at_ms = 0;
    r.ttl_s = -1;
    assert_int_equal(sdb_kv_set(t->db, S("t"), &r, &m, err, sizeof err), SBX_INVALID_ARGUMENT);
    assert_string_equal(err, "ttl_s: -1 must be 0 (no expiry) or 1..315360000");
    r.ttl_s = 315360001;
    assert_int_equal(sdb_kv_set(t->db, S("t"), &r, &m, err, sizeof err), SBX_INVALID_ARGUMENT);
}

static void kv_limits(void **state)
{
    tst_db *t = *state;
    char err[256];
    char *big = calloc(1, (1u << 20) + 2);
    memset(big, 'k', 1500);
    sdb_kv_set_req r = {.key = sdb_slice_n(big, 1500), .value = S("v")};
    assert_int_equal(sdb_kv_set(t->db, S("t"), &r, NULL, err, sizeof err), SBX_INVALID_ARGUMENT);
    assert_string_equal(err, "key: 1500 bytes exceeds the limit of 1024 bytes");
    r.key = sdb_slice_n(big, 1024);
    assert_int_equal(sdb_kv_set(t->db, S("t"), &r, NULL, err, sizeof err), SBX_OK);
    r.key = sdb_slice_n("a\0b", 3);
    assert_int_equal(sdb_kv_set(t->db, S("t"), &r, NULL, err, sizeof err), SBX_INVALID_ARGUMENT);
    assert_string_equal(err, "key: contains a NUL byte at offset 1");
    r.key = S("");
    assert_int_equal(sdb_kv_set(t->db, S("t"), &r, NULL, err, sizeof err), SBX_INVALID_ARGUMENT);
    r.key = S("v");
    r.value = sdb_slice_n(big, (1u << 20) + 1);
    assert_int_equal(sdb_kv_set(t->db, S("t"), &r, NULL, err, sizeof err), SBX_INVALID_ARGUMENT);
    assert_string_equal(err, "value: 1048577 bytes exceeds the limit of 1048576 bytes");
    r.value = sdb_slice_n(big, 1u << 20);
    assert_int_equal(sdb_kv_set(t->db, S("t"), &r, NULL, err, sizeof err), SBX_OK);
    free(big);
}

static void kv_incr(void **state)
{
    tst_db *t = *state;
    char err[256], buf[64];
    int64_t v;
    sdb_kv_meta m;
    /* delta 0 on a missing key only reads */
    assert_int_equal(sdb_kv_incr(t->db, S("t"), S("n"), 0, &v, &m, err, sizeof err), SBX_OK);
    assert_int_equal(v, 0);
    assert_int_equal(m.version, 0);
    assert_int_equal(kget(t, "t", "n", NULL, 0, NULL), SBX_NOT_FOUND);
    assert_int_equal(sdb_kv_incr(t->db, S("t"), S("n"), 5, &v, &m, err, sizeof err), SBX_OK);
    assert_int_equal(v, 5);
    assert_int_equal(m.expires_ms, 0);
    assert_int_equal(sdb_kv_incr(t->db, S("t"), S("n"), -47, &v, &m, err, sizeof err), SBX_OK);
    assert_int_equal(v, -42);
    assert_int_equal(kget(t, "t", "n", buf, sizeof buf, NULL), SBX_OK);
    assert_string_equal(buf, "-42"); /* stored as decimal text */
    /* not an integer */
    const char *bad[] = {"abc", "1.5", " 1", "1 ", "+1", "", "--1", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(kset(t, "t", "s", bad[i], 0, NULL), SBX_OK);
        assert_int_equal(sdb_kv_incr(t->db, S("t"), S("s"), 1, &v, &m, err, sizeof err),
                         SBX_FAILED_PRECONDITION);
    }
    assert_non_null(strstr(err, "not a decimal int64"));
    /* overflow: nothing written */
    assert_int_equal(kset(t, "t", "big", "9223372036854775807", 0, &m), SBX_OK);
    uint64_t ver = m.version;
    assert_int_equal(sdb_kv_incr(t->db, S("t"), S("big"), 1, &v, &m, err, sizeof err),
                     SBX_OUT_OF_RANGE);
    assert_non_null(strstr(err, "overflows int64"));
    assert_int_equal(kget(t, "t", "big", buf, sizeof buf, &m), SBX_OK);
    assert_string_equal(buf, "9223372036854775807");
    assert_int_equal(m.version, ver);
    assert_int_equal(kset(t, "t", "small", "-9223372036854775808", 0, &m), SBX_OK);
    assert_int_equal(sdb_kv_incr(t->db, S("t"), S("small"), -1, &v, &m, err, sizeof err),
                     SBX_OUT_OF_RANGE);
    /* keeps an existing TTL; an expired key counts as 0 and gets none */
    assert_int_equal(kset(t, "t", "ttl", "10", 100, &m), SBX_OK);
    int64_t exp = m.expires_ms;
    assert_int_equal(sdb_kv_incr(t->db, S("t"), S("ttl"), 1, &v, &m, err, sizeof err), SBX_OK);
    assert_int_equal(v, 11);
    assert_int_equal(m.expires_ms, exp);
    atomic_fetch_add(&t->now, 100000);
    assert_int_equal(sdb_kv_incr(t->db, S("t"), S("ttl"), 1, &v, &m, err, sizeof err), SBX_OK);
    assert_int_equal(v, 1);
    assert_int_equal(m.expires_ms, 0);
}

#define INCR_THREADS 8
#define INCR_EACH 1000

static void *incr_main(void *arg)
{
    tst_db *t = arg;
    long fails = 0;
    for (int i = 0; i < INCR_EACH; i++) {
        int64_t v;
        if (sdb_kv_incr(t->db, S("t"), S("counter"), 1, &v, NULL, NULL, 0) != SBX_OK)
            fails++;
    }
    return (void *)fails;
}

static void run_concurrent_incr(tst_db *t)
{
    pthread_t th[INCR_THREADS];
    for (int i = 0; i < INCR_THREADS; i++)
        pthread_create(&th[i], NULL, incr_main, t);
    for (int i = 0; i < INCR_THREADS; i++) {
        void *r;
        pthread_join(th[i], &r);
        assert_int_equal((long)r, 0);
    }
    char buf[32];
    assert_int_equal(kget(t, "t", "counter", buf, sizeof buf, NULL), SBX_OK);
    assert_string_equal(buf, "8000");
}

static void kv_incr_concurrent_8x1000(void **state)
{
    run_concurrent_incr(*state);
}

static void kv_incr_concurrent_8x1000_direct(void **state)
{
    tst_db *t = *state;
    t->o.sync = false; /* direct mode serialises one key through its fsync: keep it quick */
    tst_db_reopen(t);
    run_concurrent_incr(t);
}

typedef struct {
    char keys[64][32];
    char vals[64][32];
    size_t n;
} klist;

static int klist_cb(void *arg, const sdb_kv_item *it)
{
    klist *l = arg;
    snprintf(l->keys[l->n], 32, "%.*s", (int)it->key.n, it->key.p);
    snprintf(l->vals[l->n], 32, "%.*s", (int)it->value.n, it->value.p);
    l->n++;
    return 0;
}

static void kv_list(void **state)
{
    tst_db *t = *state;
    char k[32], err[256];
    for (int i = 0; i < 30; i++) {
        snprintf(k, sizeof k, "user:%02d", i);
        assert_int_equal(kset(t, "t", k, k, i % 3 == 0 ? 1 : 0, NULL), SBX_OK);
    }
    assert_int_equal(kset(t, "t", "other", "x", 0, NULL), SBX_OK);
    assert_int_equal(kset(t, "u", "user:99", "x", 0, NULL), SBX_OK);
    atomic_fetch_add(&t->now, 1000); /* 10 expired */
    klist *l = calloc(1, sizeof *l);
    sdb_page pg;
    char tok[SDB_TOKEN_MAX] = "";
    int pages = 0;
    do {
        assert_int_equal(sdb_kv_list(t->db, S("t"), S("user:"), true, 7, S(tok), false, klist_cb, l,
                                     &pg, err, sizeof err),
                         SBX_OK);
        snprintf(tok, sizeof tok, "%s", pg.next_token);
        pages++;
    } while (tok[0]);
    assert_int_equal(l->n, 20);
    assert_int_equal(pages, 3);
    assert_string_equal(l->keys[0], "user:01");
    assert_string_equal(l->vals[0], "user:01");
    for (size_t i = 1; i < l->n; i++)
        assert_true(strcmp(l->keys[i - 1], l->keys[i]) < 0);
    /* keys only, default limit, all keys */
    l->n = 0;
    assert_int_equal(
        sdb_kv_list(t->db, S("t"), S(""), false, 0, S(""), true, klist_cb, l, &pg, err, sizeof err),
        SBX_OK);
    assert_int_equal(pg.applied_limit, 100);
    assert_int_equal(l->n, 21);
    assert_string_equal(l->vals[0], "");
    /* cursor bound to tenant and prefix */
    assert_int_equal(sdb_kv_list(t->db, S("t"), S("user:"), true, 2, S(""), true, NULL, NULL, &pg,
                                 err, sizeof err),
                     SBX_OK);
    snprintf(tok, sizeof tok, "%s", pg.next_token);
    assert_int_equal(sdb_kv_list(t->db, S("u"), S("user:"), true, 2, S(tok), true, NULL, NULL, &pg,
                                 err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_int_equal(sdb_kv_list(t->db, S("t"), S("user"), true, 2, S(tok), true, NULL, NULL, &pg,
                                 err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    free(l);
}

static void kv_flush_only_the_tenant(void **state)
{
    tst_db *t = *state;
    char k[16];
    for (int i = 0; i < 12; i++) {
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(kset(t, "t", k, "v", i < 4 ? 1 : 0, NULL), SBX_OK);
        assert_int_equal(kset(t, "u", k, "v", 0, NULL), SBX_OK);
    }
    assert_int_equal(sdb_kv_delete(t->db, S("t"), S("k11"), NULL, NULL, 0), SBX_OK);
    atomic_fetch_add(&t->now, 2000);
    uint64_t n = 0;
    assert_int_equal(sdb_kv_flush(t->db, S("t"), &n, NULL, 0), SBX_OK);
    assert_int_equal(n, 11); /* expired ones included */
    assert_int_equal(kget(t, "t", "k5", NULL, 0, NULL), SBX_NOT_FOUND);
    assert_int_equal(kget(t, "u", "k5", NULL, 0, NULL), SBX_OK);
    assert_int_equal(sdb_kv_flush(t->db, S("t"), &n, NULL, 0), SBX_OK);
    assert_int_equal(n, 0);
    /* projects are untouched */
    sdb_proj_patch u = {.project = S("p")};
    assert_int_equal(sdb_proj_update(t->db, S("t"), &u, NULL, NULL, 0), SBX_OK);
    assert_int_equal(sdb_kv_flush(t->db, S("t"), &n, NULL, 0), SBX_OK);
    sdb_project *p;
    assert_int_equal(sdb_proj_get(t->db, S("t"), S("p"), &p, NULL, 0), SBX_OK);
    sdb_project_free(p);
}

static void kv_sweeper_purges_expired(void **state)
{
    tst_db *t = *state;
    char k[16];
    for (int i = 0; i < 10; i++) {
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(kset(t, "t", k, "v", i < 6 ? 5 : 0, NULL), SBX_OK);
    }
    atomic_fetch_add(&t->now, 5000);
    assert_int_equal(sdb_sweep(t->db), 6);
    uint64_t n;
    assert_int_equal(sdb_kv_flush(t->db, S("t"), &n, NULL, 0), SBX_OK);
    assert_int_equal(n, 4);
    sdb_stats st;
    sdb_stats_read(t->db, &st);
    assert_int_equal(st.swept_expired, 6);
}

static void kv_tenants_are_isolated(void **state)
{
    tst_db *t = *state;
    assert_int_equal(kset(t, "alice", "k", "secret", 0, NULL), SBX_OK);
    assert_int_equal(kget(t, "bob", "k", NULL, 0, NULL), SBX_NOT_FOUND);
    bool existed = true;
    assert_int_equal(sdb_kv_delete(t->db, S("bob"), S("k"), &existed, NULL, 0), SBX_OK);
    assert_false(existed);
    assert_int_equal(kget(t, "alice", "k", NULL, 0, NULL), SBX_OK);
}

/* A gate the syncer stops at (opts.before_sync) while armed, until released. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool armed, entered, released;
} sync_gate;

static void gate_hook(void *arg)
{
    sync_gate *g = arg;
    pthread_mutex_lock(&g->mu);
    if (g->armed) {
        g->entered = true;
        pthread_cond_broadcast(&g->cv);
        while (!g->released)
            pthread_cond_wait(&g->cv, &g->mu);
        g->armed = false;
    }
    pthread_mutex_unlock(&g->mu);
}

typedef struct {
    _Atomic int calls, status;
} done_rec;

static void rec_done(void *arg, int status, const char *err)
{
    done_rec *d = arg;
    if (status)
        fprintf(stderr, "async set: %s\n", err);
    atomic_store(&d->status, status);
    atomic_fetch_add(&d->calls, 1);
}

static void wait_calls(done_rec *d, int n)
{
    for (int i = 0; i < 5000 && atomic_load(&d->calls) < n; i++)
        usleep(1000);
}

static void kv_unsynced_writes_are_invisible(void **state)
{
    tst_db *t = *state;
    sync_gate g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    t->o.before_sync = gate_hook;
    t->o.before_sync_arg = &g;
    tst_db_reopen(t);
    sdb_kv_meta m1, m2 = {0}, m3 = {0};
    assert_int_equal(kset(t, "t", "k", "v1", 0, &m1), SBX_OK);

    pthread_mutex_lock(&g.mu);
    g.armed = true;
    pthread_mutex_unlock(&g.mu);
    char err[256];
    done_rec d = {0};
    sdb_kv_set_req r2 = {.key = S("k"), .value = S("v2")};
    assert_int_equal(sdb_kv_set_async(t->db, S("t"), &r2, &m2, rec_done, &d, err, sizeof err),
                     SBX_OK);
    pthread_mutex_lock(&g.mu);
    while (!g.entered)
        pthread_cond_wait(&g.cv, &g.mu); /* v2 is written, its sync held */
    pthread_mutex_unlock(&g.mu);

    /* readers still see v1; the writer has no answer yet */
    char buf[32];
    sdb_kv_meta m;
    assert_int_equal(kget(t, "t", "k", buf, sizeof buf, &m), SBX_OK);
    assert_string_equal(buf, "v1");
    assert_int_equal(m.version, m1.version);
    klist *l = calloc(1, sizeof *l);
    sdb_page pg;
    assert_int_equal(sdb_kv_list(t->db, S("t"), S(""), false, 0, S(""), false, klist_cb, l, &pg,
                                 err, sizeof err),
                     SBX_OK);
    assert_int_equal(l->n, 1);
    assert_string_equal(l->vals[0], "v1");
    free(l);
    assert_int_equal(atomic_load(&d.calls), 0);

    /* the committer itself works on the written state: a CAS on v2's version succeeds */
    sdb_kv_set_req r3 = {.key = S("k"),
                         .value = S("v3"),
                         .has_expected_version = true,
                         .expected_version = m1.version + 1};
    assert_int_equal(sdb_kv_set_async(t->db, S("t"), &r3, &m3, rec_done, &d, err, sizeof err),
                     SBX_OK);
    usleep(20000);
    assert_int_equal(atomic_load(&d.calls), 0);
    assert_int_equal(kget(t, "t", "k", buf, sizeof buf, NULL), SBX_OK);
    assert_string_equal(buf, "v1");

    pthread_mutex_lock(&g.mu);
    g.released = true;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    wait_calls(&d, 2);
    assert_int_equal(atomic_load(&d.calls), 2);
    assert_int_equal(atomic_load(&d.status), SBX_OK);
    assert_int_equal(m2.version, m1.version + 1);
    assert_int_equal(m3.version, m1.version + 2);
    assert_int_equal(kget(t, "t", "k", buf, sizeof buf, &m), SBX_OK);
    assert_string_equal(buf, "v3");
    assert_int_equal(m.version, m3.version);
    /* and they survive a restart */
    tst_db_reopen(t);
    assert_int_equal(kget(t, "t", "k", buf, sizeof buf, NULL), SBX_OK);
    assert_string_equal(buf, "v3");
}

/* 8 writers, a third of whose Sets carry a CAS that fails, so groups mix failures and
 * successes: with the tenant's revision and key count written once per group (counters.c),
 * every successful Set still gets the next version exactly once, and both counters are on
 * disk after a restart. (The rollback of counters an op changed before failing is tested
 * directly in test_store_counters.) */
#define CW_THREADS 8
#define CW_OPS 400
#define CW_KEYS 64
typedef struct {
    tst_db *t;
    int id;
    _Atomic int *outstanding;
    _Atomic uint64_t *versions; /* one slot per successful Set, in completion order */
    _Atomic int *nver, *failed;
} cw_arg;

typedef struct {
    cw_arg *a;
    sdb_kv_meta m;
    sdb_kv_set_req r;
    char key[16];
} cw_op;

static void cw_done(void *arg, int status, const char *err)
{
    (void)err;
    cw_op *o = arg;
    if (status == SBX_OK)
        o->a->versions[atomic_fetch_add(o->a->nver, 1)] = o->m.version;
    else if (status == SBX_FAILED_PRECONDITION)
        atomic_fetch_add(o->a->failed, 1);
    atomic_fetch_sub(o->a->outstanding, 1);
    free(o);
}

static void *cw_main(void *arg)
{
    cw_arg *a = arg;
    unsigned seed = (unsigned)a->id * 7919u + 1;
    char err[256];
    for (int i = 0; i < CW_OPS; i++) {
        cw_op *o = calloc(1, sizeof *o);
        o->a = a;
        snprintf(o->key, sizeof o->key, "k%02d", (int)(rand_r(&seed) % CW_KEYS));
        o->r = (sdb_kv_set_req){.key = S(o->key), .value = S("v")};
        if (rand_r(&seed) % 3 == 0) { /* a CAS that cannot hold: versions start at 1 */
            o->r.has_expected_version = true;
            o->r.expected_version = 1000000;
        }
        atomic_fetch_add(a->outstanding, 1);
        if (sdb_kv_set_async(a->t->db, S("t"), &o->r, &o->m, cw_done, o, err, sizeof err) !=
            SBX_OK) {
            atomic_fetch_sub(a->outstanding, 1);
            free(o);
        }
    }
    return NULL;
}

static void kv_counters_once_per_group_survive_failed_neighbours(void **state)
{
    tst_db *t = *state;
    _Atomic int outstanding = 0, nver = 0, failed = 0;
    _Atomic uint64_t *versions = calloc(CW_THREADS * CW_OPS, sizeof *versions);
    cw_arg args[CW_THREADS];
    pthread_t th[CW_THREADS];
    for (int i = 0; i < CW_THREADS; i++) {
        args[i] = (cw_arg){t, i, &outstanding, versions, &nver, &failed};
        pthread_create(&th[i], NULL, cw_main, &args[i]);
    }
    for (int i = 0; i < CW_THREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 20000 && atomic_load(&outstanding) > 0; i++)
        usleep(1000);
    assert_int_equal(atomic_load(&outstanding), 0);
    int n = atomic_load(&nver);
    assert_true(atomic_load(&failed) > 0);
    assert_int_equal(n + atomic_load(&failed), CW_THREADS * CW_OPS);
    /* every successful Set took the next revision: exactly 1..n, each once */
    char *seen = calloc((size_t)n + 1, 1);
    for (int i = 0; i < n; i++) {
        uint64_t v = versions[i];
        assert_true(v >= 1 && v <= (uint64_t)n);
        assert_false(seen[v]);
        seen[v] = 1;
    }
    free(seen);
    free(versions);
    /* the revision and the key count were written: after a restart the next Set is n + 1 and
     * Flush counts every key written */
    tst_db_reopen(t);
    sdb_kv_meta m;
    assert_int_equal(kset(t, "t", "after", "x", 0, &m), SBX_OK);
    assert_int_equal(m.version, (uint64_t)n + 1);
    uint64_t deleted = 0;
    char err[256];
    assert_int_equal(sdb_kv_flush(t->db, S("t"), &deleted, err, sizeof err), SBX_OK);
    assert_int_equal(deleted, CW_KEYS + 1);
}

/* The committer's entries cache (rcache.c) answers a Set's read of the key's previous entry;
 * every way an entry changes must reach it: a big value it keeps only as "present", a failed
 * CAS (which keeps the cache), a Delete, a Flush (a range delete), the sweeper, a restart. A
 * stale answer shows up as a wrong version, a wrong CAS outcome or a wrong key count. */
static void kv_entries_cache_follows_every_write(void **state)
{
    tst_db *t = *state;
    char err[256];
    sdb_kv_meta m;
    static char big[4096];
    memset(big, 'b', sizeof big - 1);
    /* a value too big for the cache: the CAS still sees its version */
    sdb_kv_set_req r = {.key = S("big"), .value = S(big), .has_expected_version = true};
    assert_int_equal(sdb_kv_set(t->db, S("t"), &r, &m, err, sizeof err), SBX_OK);
    uint64_t v1 = m.version;
    assert_int_equal(sdb_kv_set(t->db, S("t"), &r, &m, err, sizeof err), SBX_FAILED_PRECONDITION);
    r.expected_version = v1;
    assert_int_equal(sdb_kv_set(t->db, S("t"), &r, &m, err, sizeof err), SBX_OK);
    uint64_t v2 = m.version;
    assert_true(v2 > v1);
    /* a small value replacing it, then a failed CAS: the next CAS sees the small value's version */
    sdb_kv_set_req s = {.key = S("big"), .value = S("small")};
    assert_int_equal(sdb_kv_set(t->db, S("t"), &s, &m, err, sizeof err), SBX_OK);
    uint64_t v3 = m.version;
    r.expected_version = v2;
    assert_int_equal(sdb_kv_set(t->db, S("t"), &r, &m, err, sizeof err), SBX_FAILED_PRECONDITION);
    r.expected_version = v3;
    assert_int_equal(sdb_kv_set(t->db, S("t"), &r, &m, err, sizeof err), SBX_OK);
    /* Delete: the key is new again for a CAS on 0 */
    assert_int_equal(sdb_kv_delete(t->db, S("t"), S("big"), NULL, err, sizeof err), SBX_OK);
    r.expected_version = 0;
    assert_int_equal(sdb_kv_set(t->db, S("t"), &r, &m, err, sizeof err), SBX_OK);
    /* Flush deletes a range behind the per-key writes */
    assert_int_equal(kset(t, "t", "k", "v", 0, NULL), SBX_OK);
    uint64_t n = 0;
    assert_int_equal(sdb_kv_flush(t->db, S("t"), &n, err, sizeof err), SBX_OK);
    assert_int_equal(n, 2);
    sdb_kv_set_req k0 = {.key = S("k"), .value = S("v"), .has_expected_version = true};
    assert_int_equal(sdb_kv_set(t->db, S("t"), &k0, &m, err, sizeof err), SBX_OK);
    /* the sweeper deletes an expired key: a new Set of it counts it again */
    assert_int_equal(kset(t, "t", "e", "v", 1, NULL), SBX_OK);
    atomic_fetch_add(&t->now, 2000);
    assert_int_equal(sdb_sweep(t->db), 1);
    assert_int_equal(kset(t, "t", "e", "v", 0, NULL), SBX_OK);
    /* a restart starts with an empty cache and the same answers */
    tst_db_reopen(t);
    k0.expected_version = m.version;
    assert_int_equal(sdb_kv_set(t->db, S("t"), &k0, &m, err, sizeof err), SBX_OK);
    k0.expected_version = 0;
    assert_int_equal(sdb_kv_set(t->db, S("t"), &k0, &m, err, sizeof err), SBX_FAILED_PRECONDITION);
    /* k and e are the live keys: each counted once */
    assert_int_equal(sdb_kv_flush(t->db, S("t"), &n, err, sizeof err), SBX_OK);
    assert_int_equal(n, 2);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(kv_set_get_delete, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(kv_versions_only_grow, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(kv_cas, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(kv_ttl, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(kv_limits, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(kv_incr, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(kv_incr_concurrent_8x1000, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(kv_incr_concurrent_8x1000_direct, tst_setup_direct,
                                    tst_teardown),
    cmocka_unit_test_setup_teardown(kv_list, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(kv_flush_only_the_tenant, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(kv_sweeper_purges_expired, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(kv_tenants_are_isolated, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(kv_unsynced_writes_are_invisible, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(kv_entries_cache_follows_every_write, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(kv_counters_once_per_group_survive_failed_neighbours, tst_setup,
                                    tst_teardown),
};
SBX_TEST_MAIN(tests)
