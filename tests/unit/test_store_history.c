/* test_store_history.c: execution history (services/store/history.c): gapless sequences,
 * record-id idempotency, newest-first pages, time ranges, restarts, concurrent appenders,
 * watch catch-up + live following, retention. */
#include "test_main.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_fixture.h"

static int append(tst_db *t, const char *tenant, const char *project, const char *rid,
                  const char *data, int64_t time_ms, sdb_hist_result *res)
{
    char err[256] = "";
    sdb_hist_entry e = {S(project), S(rid ? rid : ""), S(data), time_ms, 0};
    int rc = sdb_hist_append(t->db, S(tenant), &e, res, err, sizeof err);
    if (rc)
        fprintf(stderr, "append: %s\n", err);
    return rc;
}

typedef struct {
    uint64_t seqs[4096];
    char data[4096][16];
    size_t n;
} collect;

static int collect_cb(void *arg, const sdb_hist_rec *r)
{
    collect *c = arg;
    c->seqs[c->n] = r->seq;
    snprintf(c->data[c->n], sizeof c->data[0], "%.*s", (int)r->data.n, r->data.p);
    c->n++;
    return 0;
}

static void append_assigns_gapless_seq(void **state)
{
    tst_db *t = *state;
    sdb_hist_result r;
    for (int i = 1; i <= 10; i++) {
        assert_int_equal(append(t, "t", "p", NULL, "x", 0, &r), SBX_OK);
        assert_int_equal(r.seq, (uint64_t)i);
        assert_false(r.duplicate);
        assert_int_equal(r.time_ms, TST_T0);
    }
    /* another project starts at 1 */
    assert_int_equal(append(t, "t", "q", NULL, "x", 0, &r), SBX_OK);
    assert_int_equal(r.seq, 1);
    uint64_t last;
    assert_int_equal(sdb_hist_last_seq(t->db, S("t"), S("p"), &last, NULL, 0), SBX_OK);
    assert_int_equal(last, 10);
    sdb_stats st;
    sdb_stats_read(t->db, &st);
    assert_int_equal(st.history_appends, 11);
}

static void append_record_id_is_idempotent(void **state)
{
    tst_db *t = *state;
    sdb_hist_result r;
    assert_int_equal(append(t, "t", "p", NULL, "a", 0, &r), SBX_OK);
    assert_int_equal(append(t, "t", "p", "rid-1", "b", 0, &r), SBX_OK);
    assert_int_equal(r.seq, 2);
    assert_false(r.duplicate);
    atomic_fetch_add(&t->now, 5000);
    assert_int_equal(append(t, "t", "p", "rid-1", "b-replayed", 0, &r), SBX_OK);
    assert_int_equal(r.seq, 2);
    assert_true(r.duplicate);
    assert_int_equal(r.time_ms, TST_T0);
    /* the replay wrote nothing: next is 3 */
    assert_int_equal(append(t, "t", "p", "rid-2", "c", 0, &r), SBX_OK);
    assert_int_equal(r.seq, 3);
    /* same record id in another project or tenant is independent */
    assert_int_equal(append(t, "t", "q", "rid-1", "d", 0, &r), SBX_OK);
    assert_false(r.duplicate);
    assert_int_equal(append(t, "u", "p", "rid-1", "d", 0, &r), SBX_OK);
    assert_false(r.duplicate);
    assert_int_equal(r.seq, 1);
    /* survives a restart */
    tst_db_reopen(t);
    assert_int_equal(append(t, "t", "p", "rid-1", "again", 0, &r), SBX_OK);
    assert_true(r.duplicate);
    assert_int_equal(r.seq, 2);
}

static void append_validates_input(void **state)
{
    tst_db *t = *state;
    char err[256];
    sdb_hist_entry e = {S("bad/id"), S(""), S("x"), 0, 0};
    assert_int_equal(sdb_hist_append(t->db, S("t"), &e, NULL, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "project_id"));
    e.project = S("");
    assert_int_equal(sdb_hist_append(t->db, S("t"), &e, NULL, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_string_equal(err, "project_id: must not be empty");
    e.project = S("p");
    e.record_id = sdb_slice_n("a\0b", 3);
    assert_int_equal(sdb_hist_append(t->db, S("t"), &e, NULL, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_string_equal(err, "record_id: contains a NUL byte at offset 1");
    e.record_id = S("");
    size_t big = t->o.max_record_bytes + 1;
    char *data = calloc(1, big);
    e.data = sdb_slice_n(data, big);
    assert_int_equal(sdb_hist_append(t->db, S("t"), &e, NULL, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "exceeds the limit of"));
    free(data);
    e.data = S("x");
    assert_int_equal(sdb_hist_append(t->db, S(""), &e, NULL, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_string_equal(err, "tenant: must not be empty");
    /* nothing was written by the failed calls */
    uint64_t last;
    assert_int_equal(sdb_hist_last_seq(t->db, S("t"), S("p"), &last, NULL, 0), SBX_OK);
    assert_int_equal(last, 0);
}

static void list_newest_first_with_pages(void **state)
{
    tst_db *t = *state;
    char d[16];
    for (int i = 1; i <= 120; i++) {
        snprintf(d, sizeof d, "r%d", i);
        assert_int_equal(append(t, "t", "p", NULL, d, 0, NULL), SBX_OK);
    }
    collect *c = calloc(1, sizeof *c);
    sdb_hist_query q = {.project = S("p")};
    sdb_page pg;
    char tok[SDB_TOKEN_MAX] = "", err[256];
    int pages = 0;
    do {
        q.page_token = S(tok);
        size_t before = c->n;
        assert_int_equal(sdb_hist_list(t->db, S("t"), &q, collect_cb, c, &pg, err, sizeof err),
                         SBX_OK);
        assert_int_equal(pg.applied_limit, 50);
        assert_int_equal(pg.count, c->n - before);
        snprintf(tok, sizeof tok, "%s", pg.next_token);
        pages++;
    } while (tok[0]);
    assert_int_equal(pages, 3);
    assert_int_equal(c->n, 120);
    for (size_t i = 0; i < c->n; i++)
        assert_int_equal(c->seqs[i], 120 - i); /* newest first, no gap, no duplicate */
    assert_string_equal(c->data[0], "r120");
    /* an explicit limit, and a limit above the maximum is clamped and said */
    c->n = 0;
    q.page_token = S("");
    q.has_limit = true;
    q.limit = 7;
    assert_int_equal(sdb_hist_list(t->db, S("t"), &q, collect_cb, c, &pg, err, sizeof err), SBX_OK);
    assert_int_equal(c->n, 7);
    q.limit = 100000;
    assert_int_equal(sdb_hist_list(t->db, S("t"), &q, NULL, NULL, &pg, err, sizeof err), SBX_OK);
    assert_int_equal(pg.applied_limit, 1000);
    assert_true(pg.clamped);
    assert_int_equal(pg.count, 120);
    assert_string_equal(pg.next_token, "");
    q.limit = 0;
    assert_int_equal(sdb_hist_list(t->db, S("t"), &q, NULL, NULL, &pg, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_string_equal(err, "limit: 0 must be 1..1000");
    /* an unknown project lists as empty */
    q.has_limit = false;
    q.project = S("nope");
    assert_int_equal(sdb_hist_list(t->db, S("t"), &q, NULL, NULL, &pg, err, sizeof err), SBX_OK);
    assert_int_equal(pg.count, 0);
    free(c);
}

static void list_rejects_foreign_and_bad_tokens(void **state)
{
    tst_db *t = *state;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(append(t, "t", "p", NULL, "x", 0, NULL), SBX_OK);
        assert_int_equal(append(t, "t", "q", NULL, "x", 0, NULL), SBX_OK);
        assert_int_equal(append(t, "u", "p", NULL, "x", 0, NULL), SBX_OK);
    }
    sdb_hist_query q = {.project = S("p"), .has_limit = true, .limit = 2};
    sdb_page pg;
    char tok[SDB_TOKEN_MAX], err[256];
    assert_int_equal(sdb_hist_list(t->db, S("t"), &q, NULL, NULL, &pg, err, sizeof err), SBX_OK);
    snprintf(tok, sizeof tok, "%s", pg.next_token);
    assert_true(tok[0]);
    q.page_token = S(tok);
    /* same token, other tenant / other project */
    assert_int_equal(sdb_hist_list(t->db, S("u"), &q, NULL, NULL, &pg, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "page_token"));
    q.project = S("q");
    assert_int_equal(sdb_hist_list(t->db, S("t"), &q, NULL, NULL, &pg, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    q.project = S("p");
    q.page_token = S("garbage!");
    assert_int_equal(sdb_hist_list(t->db, S("t"), &q, NULL, NULL, &pg, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    q.page_token = S(tok);
    assert_int_equal(sdb_hist_list(t->db, S("t"), &q, NULL, NULL, &pg, err, sizeof err), SBX_OK);
    assert_int_equal(pg.count, 2);
}

static void list_time_range(void **state)
{
    tst_db *t = *state;
    /* times out of seq order (started_at is the caller's) */
    int64_t times[] = {1000, 5000, 2000, 7000, 3000, 9000};
    for (int i = 0; i < 6; i++)
        assert_int_equal(append(t, "t", "p", NULL, "x", times[i], NULL), SBX_OK);
    collect *c = calloc(1, sizeof *c);
    sdb_hist_query q = {.project = S("p"), .since_ms = 2000, .until_ms = 7000};
    sdb_page pg;
    char err[256];
    assert_int_equal(sdb_hist_list(t->db, S("t"), &q, collect_cb, c, &pg, err, sizeof err), SBX_OK);
    /* seq 5 (3000), 3 (2000), 2 (5000); 7000 excluded (until is exclusive) */
    assert_int_equal(c->n, 3);
    assert_int_equal(c->seqs[0], 5);
    assert_int_equal(c->seqs[1], 3);
    assert_int_equal(c->seqs[2], 2);
    q.since_ms = 8000;
    q.until_ms = 7000;
    assert_int_equal(sdb_hist_list(t->db, S("t"), &q, NULL, NULL, &pg, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "since_unix_ms"));
    q.since_ms = -1;
    q.until_ms = 0;
    assert_int_equal(sdb_hist_list(t->db, S("t"), &q, NULL, NULL, &pg, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    /* pages within a range */
    c->n = 0;
    q.since_ms = 1;
    q.has_limit = true;
    q.limit = 4;
    assert_int_equal(sdb_hist_list(t->db, S("t"), &q, collect_cb, c, &pg, err, sizeof err), SBX_OK);
    assert_int_equal(c->n, 4);
    char tok[SDB_TOKEN_MAX];
    snprintf(tok, sizeof tok, "%s", pg.next_token);
    q.page_token = S(tok);
    assert_int_equal(sdb_hist_list(t->db, S("t"), &q, collect_cb, c, &pg, err, sizeof err), SBX_OK);
    assert_int_equal(c->n, 6);
    assert_string_equal(pg.next_token, "");
    free(c);
}

static void seq_survives_restart(void **state)
{
    tst_db *t = *state;
    sdb_hist_result r;
    for (int i = 0; i < 5; i++)
        assert_int_equal(append(t, "t", "p", NULL, "x", 0, &r), SBX_OK);
    tst_db_reopen(t);
    assert_int_equal(append(t, "t", "p", NULL, "x", 0, &r), SBX_OK);
    assert_int_equal(r.seq, 6);
    sdb_page pg;
    sdb_hist_query q = {.project = S("p")};
    assert_int_equal(sdb_hist_list(t->db, S("t"), &q, NULL, NULL, &pg, NULL, 0), SBX_OK);
    assert_int_equal(pg.count, 6);
}

/* ---- concurrency ---- */

#define APPENDERS 8
#define PER_APPENDER 200

typedef struct {
    tst_db *t;
    int id;
    uint64_t seqs[PER_APPENDER];
    int failures;
} appender;

static void *appender_main(void *arg)
{
    appender *a = arg;
    char rid[32];
    for (int i = 0; i < PER_APPENDER; i++) {
        sdb_hist_result r;
        snprintf(rid, sizeof rid, "w%d-%d", a->id, i);
        if (append(a->t, "t", "shared", rid, rid, 0, &r) != SBX_OK || r.duplicate)
            a->failures++;
        a->seqs[i] = r.seq;
    }
    return NULL;
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

static void run_concurrent_appenders(tst_db *t)
{
    static appender a[APPENDERS];
    pthread_t th[APPENDERS];
    for (int i = 0; i < APPENDERS; i++) {
        memset(&a[i], 0, sizeof a[i]);
        a[i].t = t;
        a[i].id = i;
        pthread_create(&th[i], NULL, appender_main, &a[i]);
    }
    uint64_t *all = calloc(APPENDERS * PER_APPENDER, sizeof *all);
    size_t n = 0;
    for (int i = 0; i < APPENDERS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(a[i].failures, 0);
        for (int j = 0; j < PER_APPENDER; j++) {
            if (j)
                assert_true(a[i].seqs[j] > a[i].seqs[j - 1]); /* monotonic per writer */
            all[n++] = a[i].seqs[j];
        }
    }
    qsort(all, n, sizeof *all, cmp_u64);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(all[i], i + 1); /* gapless, no duplicate */
    free(all);
    /* the stored history agrees */
    collect *c = calloc(1, sizeof *c);
    uint64_t last = 0;
    assert_int_equal(
        sdb_hist_read_after(t->db, S("t"), S("shared"), 0, 1000, collect_cb, c, &last, NULL, 0),
        SBX_OK);
    assert_int_equal(
        sdb_hist_read_after(t->db, S("t"), S("shared"), last, 1000, collect_cb, c, &last, NULL, 0),
        SBX_OK);
    assert_int_equal(c->n, APPENDERS * PER_APPENDER);
    for (size_t i = 0; i < c->n; i++)
        assert_int_equal(c->seqs[i], i + 1);
    free(c);
}

static void concurrent_appenders_gapless(void **state)
{
    run_concurrent_appenders(*state);
}

static void concurrent_appenders_gapless_direct(void **state)
{
    run_concurrent_appenders(*state);
}

/* ---- watch ---- */

typedef struct {
    tst_db *t;
    int total;
    volatile int started;
} producer;

static void *producer_main(void *arg)
{
    producer *p = arg;
    char d[16];
    for (int i = 0; i < p->total; i++) {
        snprintf(d, sizeof d, "live%d", i);
        append(p->t, "t", "w", NULL, d, 0, NULL);
    }
    return NULL;
}

static void watch_catch_up_then_follow(void **state)
{
    tst_db *t = *state;
    for (int i = 0; i < 30; i++)
        assert_int_equal(append(t, "t", "w", NULL, "old", 0, NULL), SBX_OK);
    producer p = {t, 300, 0};
    pthread_t th;
    pthread_create(&th, NULL, producer_main, &p);
    /* the watcher from seq 11 on (from_seq = 11: after_seq = 10), like the handler does */
    collect *c = calloc(1, sizeof *c);
    uint64_t last = 10;
    int idle = 0;
    while (c->n < 320 && idle < 50) {
        uint64_t ticket = sdb_hist_watch_ticket(t->db, S("t"), S("w"));
        size_t before = c->n;
        assert_int_equal(
            sdb_hist_read_after(t->db, S("t"), S("w"), last, 64, collect_cb, c, &last, NULL, 0),
            SBX_OK);
        if (c->n == before) {
            int rc = sdb_hist_watch_wait(t->db, S("t"), S("w"), ticket, 100);
            assert_true(rc == SBX_OK || rc == SBX_DEADLINE_EXCEEDED);
            idle = rc == SBX_DEADLINE_EXCEEDED ? idle + 1 : 0;
        }
    }
    pthread_join(th, NULL);
    assert_int_equal(c->n, 320);
    for (size_t i = 0; i < c->n; i++)
        assert_int_equal(c->seqs[i], 11 + i); /* no gap, no duplicate at the seam */
    /* a wait with a current ticket times out; closing wakes it with UNAVAILABLE */
    uint64_t ticket = sdb_hist_watch_ticket(t->db, S("t"), S("w"));
    assert_int_equal(sdb_hist_watch_wait(t->db, S("t"), S("w"), ticket, 10), SBX_DEADLINE_EXCEEDED);
    free(c);
}

/* ---- retention ---- */

static void retention_max_records_applied_on_append(void **state)
{
    tst_db *t = *state;
    char err[256];
    sdb_proj_patch u = {.project = S("r"), .has_retention = true, .retention_max_records = 5};
    assert_int_equal(sdb_proj_update(t->db, S("t"), &u, NULL, err, sizeof err), SBX_OK);
    char rid[16];
    for (int i = 1; i <= 12; i++) {
        snprintf(rid, sizeof rid, "id%d", i);
        assert_int_equal(append(t, "t", "r", rid, rid, 0, NULL), SBX_OK);
    }
    collect *c = calloc(1, sizeof *c);
    uint64_t last = 0;
    assert_int_equal(
        sdb_hist_read_after(t->db, S("t"), S("r"), 0, 100, collect_cb, c, &last, NULL, 0), SBX_OK);
    assert_int_equal(c->n, 5);
    assert_int_equal(c->seqs[0], 8);
    assert_int_equal(c->seqs[4], 12);
    sdb_project *p;
    assert_int_equal(sdb_proj_get(t->db, S("t"), S("r"), &p, err, sizeof err), SBX_OK);
    assert_int_equal(p->execution_count, 5);
    assert_int_equal(p->last_seq, 12);
    assert_int_equal(p->retention_max_records, 5);
    sdb_project_free(p);
    /* the record id of a dropped record is forgotten: a replay appends anew */
    sdb_hist_result r;
    assert_int_equal(append(t, "t", "r", "id1", "again", 0, &r), SBX_OK);
    assert_false(r.duplicate);
    assert_int_equal(r.seq, 13);
    assert_int_equal(append(t, "t", "r", "id12", "again", 0, &r), SBX_OK);
    assert_true(r.duplicate);
    free(c);
}

static void retention_sweeper_by_age_and_backlog(void **state)
{
    tst_db *t = *state;
    char err[256];
    /* 20 records, one per minute of caller time */
    for (int i = 0; i < 20; i++)
        assert_int_equal(append(t, "t", "a", NULL, "x", TST_T0 + i * 60000, NULL), SBX_OK);
    /* keep 10 minutes: records older than now - 600 s go (now = T0 + 20 min) */
    atomic_store(&t->now, TST_T0 + 20 * 60000);
    sdb_proj_patch u = {.project = S("a"), .has_retention = true, .retention_max_age_s = 600};
    assert_int_equal(sdb_proj_update(t->db, S("t"), &u, NULL, err, sizeof err), SBX_OK);
    uint64_t removed = sdb_sweep(t->db);
    assert_int_equal(removed, 10);
    sdb_project *p;
    assert_int_equal(sdb_proj_get(t->db, S("t"), S("a"), &p, err, sizeof err), SBX_OK);
    assert_int_equal(p->execution_count, 10);
    sdb_project_free(p);
    collect *c = calloc(1, sizeof *c);
    uint64_t last = 0;
    assert_int_equal(
        sdb_hist_read_after(t->db, S("t"), S("a"), 0, 100, collect_cb, c, &last, NULL, 0), SBX_OK);
    assert_int_equal(c->n, 10);
    assert_int_equal(c->seqs[0], 11);
    /* lowering max_records leaves a backlog the sweeper removes */
    u.retention_max_age_s = 0;
    u.retention_max_records = 3;
    assert_int_equal(sdb_proj_update(t->db, S("t"), &u, NULL, err, sizeof err), SBX_OK);
    assert_int_equal(sdb_sweep(t->db), 7);
    c->n = 0;
    assert_int_equal(
        sdb_hist_read_after(t->db, S("t"), S("a"), 0, 100, collect_cb, c, &last, NULL, 0), SBX_OK);
    assert_int_equal(c->n, 3);
    assert_int_equal(c->seqs[0], 18);
    sdb_stats st;
    sdb_stats_read(t->db, &st);
    assert_int_equal(st.swept_history, 17);
    free(c);
}

static void history_tenants_are_isolated(void **state)
{
    tst_db *t = *state;
    assert_int_equal(append(t, "alice", "p", NULL, "secret", 0, NULL), SBX_OK);
    sdb_page pg;
    sdb_hist_query q = {.project = S("p")};
    assert_int_equal(sdb_hist_list(t->db, S("bob"), &q, NULL, NULL, &pg, NULL, 0), SBX_OK);
    assert_int_equal(pg.count, 0);
    uint64_t last = 0;
    assert_int_equal(sdb_hist_last_seq(t->db, S("bob"), S("p"), &last, NULL, 0), SBX_OK);
    assert_int_equal(last, 0);
    sdb_hist_result r;
    assert_int_equal(append(t, "bob", "p", NULL, "mine", 0, &r), SBX_OK);
    assert_int_equal(r.seq, 1);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(append_assigns_gapless_seq, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(append_record_id_is_idempotent, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(append_validates_input, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(list_newest_first_with_pages, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(list_rejects_foreign_and_bad_tokens, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(list_time_range, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(seq_survives_restart, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(concurrent_appenders_gapless, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(concurrent_appenders_gapless_direct, tst_setup_direct,
                                    tst_teardown),
    cmocka_unit_test_setup_teardown(watch_catch_up_then_follow, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(retention_max_records_applied_on_append, tst_setup,
                                    tst_teardown),
    cmocka_unit_test_setup_teardown(retention_sweeper_by_age_and_backlog, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(history_tenants_are_isolated, tst_setup, tst_teardown),
};
SBX_TEST_MAIN(tests)
