/* test_store_handlers.c: the sbx.v1.StateStore handlers (services/store/handlers*.c) called
 * directly with test contexts (sbx_ctx_new_test): proto <-> engine mapping, server-owned
 * fields, limits and messages, the method table, Checkpoint's service-principal rule, and
 * WatchExecutions catch-up + live + cancellation + deleted project. */
#include "test_main.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "handlers.h"
#include "sbx/v1/store.pb-c.h"

#include "store_fixture.h"

static const sbx_method *method(const char *name)
{
    const sbx_service_def *d = sbx_store_service(NULL);
    for (size_t i = 0; i < d->n_methods; i++)
        if (!strcmp(d->methods[i].name, name))
            return &d->methods[i];
    return NULL;
}

static int call(tst_db *t, sbx_ctx *ctx, const char *name, const void *req, void *resp)
{
    const sbx_method *m = method(name);
    assert_non_null(m);
    ProtobufCMessage *r = NULL;
    int rc = m->handler(ctx, req, &r, t->db);
    if (rc == SBX_PENDING) /* a write the committer completes */
        rc = sbx_ctx_test_wait(ctx, &r);
    if (resp)
        *(ProtobufCMessage **)resp = r;
    return rc;
}

static void method_table_is_complete(void **state)
{
    (void)state;
    const sbx_service_def *d = sbx_store_service(NULL);
    assert_ptr_equal(d->desc, &sbx__v1__state_store__descriptor);
    assert_int_equal(d->n_methods, d->desc->n_methods);
    for (unsigned i = 0; i < d->desc->n_methods; i++) {
        const sbx_method *m = method(d->desc->methods[i].name);
        assert_non_null(m);
        assert_non_null(m->handler);
        bool stream = !strcmp(m->name, "WatchExecutions");
        assert_int_equal(m->kind, stream ? SBX_SERVER_STREAM : SBX_UNARY);
    }
    /* fast reads inline; the writes the committer completes (GROUP mode) inline too; other
     * synced writes on the pool; Checkpoint for services only */
    assert_true(method("Get")->flags & SBX_RUN_INLINE);
    assert_true(method("GetProject")->flags & SBX_RUN_INLINE);
    assert_true(method("GetCachedResult")->flags & SBX_RUN_INLINE);
    assert_true(method("Set")->flags & SBX_RUN_INLINE);
    assert_true(method("AppendExecution")->flags & SBX_RUN_INLINE);
    assert_true(method("RecordExecution")->flags & SBX_RUN_INLINE);
    assert_false(method("Delete")->flags & SBX_RUN_INLINE);
    assert_false(method("UpdateProject")->flags & SBX_RUN_INLINE);
    assert_false(method("WatchExecutions")->flags & SBX_RUN_INLINE);
    assert_true(method("Checkpoint")->flags & SBX_SERVICE_ONLY);
}

static Sbx__V1__ExecutionRecord *record(const char *rid, int exit_code)
{
    static Sbx__V1__ExecutionRecord r;
    static char *argv[] = {"/bin/echo", "hi"};
    sbx__v1__execution_record__init(&r);
    r.record_id = (char *)rid;
    r.command = "echo hi";
    r.n_argv = 2;
    r.argv = argv;
    r.exit_code = exit_code;
    r.stdout.data = (uint8_t *)"hi\n";
    r.stdout.len = 3;
    r.duration_us = 1234;
    r.command_key = "ck";
    r.project_id = "ignored";
    r.seq = 999; /* ignored on input */
    return &r;
}

static void history_through_handlers(void **state)
{
    tst_db *t = *state;
    sbx_ctx *ctx = sbx_ctx_new_test("acme", false);
    Sbx__V1__AppendExecutionRequest a = SBX__V1__APPEND_EXECUTION_REQUEST__INIT;
    a.project_id = "proj";
    a.record = record("r-1", 0);
    Sbx__V1__AppendExecutionResponse *ar;
    assert_int_equal(call(t, ctx, "AppendExecution", &a, &ar), SBX_OK);
    assert_int_equal(ar->seq, 1);
    assert_false(ar->duplicate);
    assert_int_equal(call(t, ctx, "AppendExecution", &a, &ar), SBX_OK);
    assert_true(ar->duplicate);
    a.record = record("", 2);
    assert_int_equal(call(t, ctx, "AppendExecution", &a, &ar), SBX_OK);
    assert_int_equal(ar->seq, 2);

    Sbx__V1__ListExecutionsRequest l = SBX__V1__LIST_EXECUTIONS_REQUEST__INIT;
    l.project_id = "proj";
    Sbx__V1__ListExecutionsResponse *lr;
    assert_int_equal(call(t, ctx, "ListExecutions", &l, &lr), SBX_OK);
    assert_int_equal(lr->limit_applied, 50);
    assert_int_equal(lr->n_records, 2);
    assert_string_equal(lr->next_page_token, "");
    Sbx__V1__ExecutionRecord *r = lr->records[0];
    assert_int_equal(r->seq, 2);
    assert_string_equal(r->project_id, "proj");
    assert_int_equal(r->recorded_at_unix_ms, TST_T0);
    assert_int_equal(r->started_at_unix_ms, TST_T0); /* 0 on input = the server's time */
    assert_int_equal(r->exit_code, 2);
    assert_int_equal(r->n_argv, 2);
    assert_int_equal(r->stdout.len, 0); /* no include_output */
    assert_int_equal(r->stdout_bytes, 3);
    assert_string_equal(lr->records[1]->record_id, "r-1");
    l.include_output = true;
    l.limit = 1;
    assert_int_equal(call(t, ctx, "ListExecutions", &l, &lr), SBX_OK);
    assert_int_equal(lr->n_records, 1);
    assert_int_equal(lr->records[0]->stdout.len, 3);
    assert_memory_equal(lr->records[0]->stdout.data, "hi\n", 3);
    assert_true(lr->next_page_token[0]);
    l.page_token = "bogus";
    assert_int_equal(call(t, ctx, "ListExecutions", &l, &lr), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(sbx_ctx_error_message(ctx), "page_token"));
    l.page_token = "";
    l.limit = -1;
    assert_int_equal(call(t, ctx, "ListExecutions", &l, &lr), SBX_INVALID_ARGUMENT);
    assert_string_equal(sbx_ctx_error_message(ctx), "limit: -1 must be 1..1000");
    /* bad records */
    a.record = record("has space", 0);
    assert_int_equal(call(t, ctx, "AppendExecution", &a, &ar), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(sbx_ctx_error_message(ctx), "record.record_id"));
    a.record = NULL;
    assert_int_equal(call(t, ctx, "AppendExecution", &a, &ar), SBX_INVALID_ARGUMENT);
    assert_string_equal(sbx_ctx_error_message(ctx), "record: is required");
    a.record = record("", 0);
    a.record->stdout.len = (1u << 20) + 1;
    assert_int_equal(call(t, ctx, "AppendExecution", &a, &ar), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(sbx_ctx_error_message(ctx), "record.stdout: 1048577 bytes"));
    a.record = record("", 0);
    a.project_id = "no/slash";
    assert_int_equal(call(t, ctx, "AppendExecution", &a, &ar), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(sbx_ctx_error_message(ctx), "project_id"));
    sbx_ctx_free_test(ctx);
}

static void cache_through_handlers(void **state)
{
    tst_db *t = *state;
    sbx_ctx *ctx = sbx_ctx_new_test("acme", false);
    Sbx__V1__RecordExecutionRequest rq = SBX__V1__RECORD_EXECUTION_REQUEST__INIT;
    rq.project_id = "proj";
    rq.record = record("rec-1", 5);
    rq.cache_ttl_s = 60;
    Sbx__V1__RecordExecutionResponse *rr;
    assert_int_equal(call(t, ctx, "RecordExecution", &rq, &rr), SBX_OK);
    assert_int_equal(rr->seq, 1);
    assert_int_equal(rr->cache_expires_at_unix_ms, TST_T0 + 60000);

    Sbx__V1__GetCachedResultRequest g = SBX__V1__GET_CACHED_RESULT_REQUEST__INIT;
    g.project_id = "proj";
    g.command_key = "ck";
    Sbx__V1__GetCachedResultResponse *gr;
    assert_int_equal(call(t, ctx, "GetCachedResult", &g, &gr), SBX_OK);
    assert_true(gr->found);
    assert_false(gr->expired);
    assert_int_equal(gr->result->exit_code, 5);
    assert_int_equal(gr->result->seq, 1);
    assert_int_equal(gr->result->duration_us, 1234);
    assert_string_equal(gr->result->command_key, "ck");
    assert_string_equal(gr->result->project_id, "proj");
    assert_int_equal(gr->result->created_at_unix_ms, TST_T0);
    assert_int_equal(gr->result->expires_at_unix_ms, TST_T0 + 60000);
    assert_memory_equal(gr->result->stdout.data, "hi\n", 3);
    atomic_fetch_add(&t->now, 60000);
    assert_int_equal(call(t, ctx, "GetCachedResult", &g, &gr), SBX_OK);
    assert_false(gr->found);
    assert_true(gr->expired);
    assert_null(gr->result);

    Sbx__V1__PutCachedResultRequest p = SBX__V1__PUT_CACHED_RESULT_REQUEST__INIT;
    Sbx__V1__CachedResult c = SBX__V1__CACHED_RESULT__INIT;
    c.command_key = "ck2";
    c.exit_code = 1;
    p.project_id = "proj";
    p.result = &c;
    Sbx__V1__PutCachedResultResponse *pr;
    assert_int_equal(call(t, ctx, "PutCachedResult", &p, &pr), SBX_OK);
    assert_int_equal(pr->expires_at_unix_ms, atomic_load(&t->now) + 3600000);
    p.ttl_s = -1;
    assert_int_equal(call(t, ctx, "PutCachedResult", &p, &pr), SBX_INVALID_ARGUMENT);
    assert_string_equal(sbx_ctx_error_message(ctx),
                        "ttl_s: -1 must be 0 (default 3600) or 1..2592000");

    Sbx__V1__ClearCacheRequest cl = SBX__V1__CLEAR_CACHE_REQUEST__INIT;
    cl.project_id = "proj";
    Sbx__V1__ClearCacheResponse *cr;
    assert_int_equal(call(t, ctx, "ClearCache", &cl, &cr), SBX_OK);
    assert_true(cr->whole_project);
    assert_int_equal(cr->cleared, 2);

    /* cache_ttl_s > 0 needs a command key */
    rq.record = record("rec-2", 0);
    rq.record->command_key = "";
    assert_int_equal(call(t, ctx, "RecordExecution", &rq, &rr), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(sbx_ctx_error_message(ctx), "record.command_key"));
    rq.cache_ttl_s = 0;
    assert_int_equal(call(t, ctx, "RecordExecution", &rq, &rr), SBX_OK);
    assert_int_equal(rr->cache_expires_at_unix_ms, 0);
    sbx_ctx_free_test(ctx);
}

static void projects_through_handlers(void **state)
{
    tst_db *t = *state;
    sbx_ctx *ctx = sbx_ctx_new_test("acme", false);
    Sbx__V1__UpdateProjectRequest u = SBX__V1__UPDATE_PROJECT_REQUEST__INIT;
    Sbx__V1__UpdateProjectRequest__SetFieldsEntry e1 =
        SBX__V1__UPDATE_PROJECT_REQUEST__SET_FIELDS_ENTRY__INIT;
    e1.key = "lang";
    e1.value = "c";
    Sbx__V1__UpdateProjectRequest__SetFieldsEntry *set[] = {&e1};
    Sbx__V1__ExpectedVersion ev = SBX__V1__EXPECTED_VERSION__INIT;
    Sbx__V1__RetentionPolicy ret = SBX__V1__RETENTION_POLICY__INIT;
    ret.max_records = 100;
    u.project_id = "proj";
    u.n_set_fields = 1;
    u.set_fields = set;
    u.expected = &ev; /* version 0: must not exist */
    u.retention = &ret;
    Sbx__V1__Project *p;
    assert_int_equal(call(t, ctx, "UpdateProject", &u, &p), SBX_OK);
    assert_int_equal(p->version, 1);
    assert_int_equal(p->n_fields, 1);
    assert_string_equal(p->fields[0]->key, "lang");
    assert_int_equal(p->retention->max_records, 100);
    assert_int_equal(call(t, ctx, "UpdateProject", &u, &p), SBX_FAILED_PRECONDITION);
    assert_string_equal(sbx_ctx_error_message(ctx), "version mismatch: expected 0, current 1");

    Sbx__V1__GetProjectRequest g = SBX__V1__GET_PROJECT_REQUEST__INIT;
    g.project_id = "proj";
    assert_int_equal(call(t, ctx, "GetProject", &g, &p), SBX_OK);
    assert_string_equal(p->project_id, "proj");
    sbx_ctx *other = sbx_ctx_new_test("evil", false);
    assert_int_equal(call(t, other, "GetProject", &g, &p), SBX_NOT_FOUND);
    sbx_ctx_free_test(other);

    Sbx__V1__ListProjectsRequest l = SBX__V1__LIST_PROJECTS_REQUEST__INIT;
    Sbx__V1__ListProjectsResponse *lr;
    assert_int_equal(call(t, ctx, "ListProjects", &l, &lr), SBX_OK);
    assert_int_equal(lr->n_projects, 1);

    Sbx__V1__DeleteProjectRequest d = SBX__V1__DELETE_PROJECT_REQUEST__INIT;
    d.project_id = "proj";
    Sbx__V1__DeleteProjectResponse *dr;
    assert_int_equal(call(t, ctx, "DeleteProject", &d, &dr), SBX_OK);
    assert_true(dr->existed);
    assert_int_equal(call(t, ctx, "DeleteProject", &d, &dr), SBX_OK);
    assert_false(dr->existed);
    sbx_ctx_free_test(ctx);
}

static void kv_through_handlers(void **state)
{
    tst_db *t = *state;
    sbx_ctx *ctx = sbx_ctx_new_test("acme", false);
    Sbx__V1__KvSetRequest s = SBX__V1__KV_SET_REQUEST__INIT;
    s.key = "greeting";
    s.value.data = (uint8_t *)"hello";
    s.value.len = 5;
    Sbx__V1__KvSetResponse *sr;
    assert_int_equal(call(t, ctx, "Set", &s, &sr), SBX_OK);
    assert_int_equal(sr->version, 1);
    Sbx__V1__KvGetRequest g = SBX__V1__KV_GET_REQUEST__INIT;
    g.key = "greeting";
    Sbx__V1__KvGetResponse *gr;
    assert_int_equal(call(t, ctx, "Get", &g, &gr), SBX_OK);
    assert_int_equal(gr->value.len, 5);
    assert_memory_equal(gr->value.data, "hello", 5);
    assert_string_equal(gr->key, "greeting");
    g.key = "missing";
    assert_int_equal(call(t, ctx, "Get", &g, &gr), SBX_NOT_FOUND);

    Sbx__V1__KvIncrRequest in = SBX__V1__KV_INCR_REQUEST__INIT;
    in.key = "n";
    in.delta = 41;
    Sbx__V1__KvIncrResponse *ir;
    assert_int_equal(call(t, ctx, "Incr", &in, &ir), SBX_OK);
    in.delta = 1;
    assert_int_equal(call(t, ctx, "Incr", &in, &ir), SBX_OK);
    assert_int_equal(ir->value, 42);
    in.key = "greeting";
    assert_int_equal(call(t, ctx, "Incr", &in, &ir), SBX_FAILED_PRECONDITION);

    Sbx__V1__KvListRequest l = SBX__V1__KV_LIST_REQUEST__INIT;
    l.limit = 1;
    Sbx__V1__KvListResponse *lr;
    assert_int_equal(call(t, ctx, "List", &l, &lr), SBX_OK);
    assert_int_equal(lr->n_entries, 1);
    assert_string_equal(lr->entries[0]->key, "greeting");
    l.cursor = lr->next_cursor;
    assert_int_equal(call(t, ctx, "List", &l, &lr), SBX_OK);
    assert_string_equal(lr->entries[0]->key, "n");
    l.cursor = "xyz";
    assert_int_equal(call(t, ctx, "List", &l, &lr), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(sbx_ctx_error_message(ctx), "cursor"));

    Sbx__V1__KvDeleteRequest d = SBX__V1__KV_DELETE_REQUEST__INIT;
    d.key = "n";
    Sbx__V1__KvDeleteResponse *dr;
    assert_int_equal(call(t, ctx, "Delete", &d, &dr), SBX_OK);
    assert_true(dr->existed);
    Sbx__V1__KvFlushRequest f = SBX__V1__KV_FLUSH_REQUEST__INIT;
    Sbx__V1__KvFlushResponse *fr;
    assert_int_equal(call(t, ctx, "Flush", &f, &fr), SBX_OK);
    assert_int_equal(fr->deleted, 1);
    sbx_ctx_free_test(ctx);
}

static void checkpoint_needs_service_principal(void **state)
{
    tst_db *t = *state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/cp", t->dir);
    Sbx__V1__CheckpointRequest c = SBX__V1__CHECKPOINT_REQUEST__INIT;
    c.dir = dir;
    Sbx__V1__CheckpointResponse *cr;
    sbx_ctx *user = sbx_ctx_new_test("acme", false);
    assert_int_equal(call(t, user, "Checkpoint", &c, &cr), SBX_PERMISSION_DENIED);
    sbx_ctx_free_test(user);
    sbx_ctx *svc = sbx_ctx_new_test("default", true);
    assert_int_equal(call(t, svc, "Checkpoint", &c, &cr), SBX_OK);
    assert_string_equal(cr->dir, dir);
    assert_int_equal(call(t, svc, "Checkpoint", &c, &cr), SBX_ALREADY_EXISTS);
    sbx_ctx_free_test(svc);
    assert_int_equal(access(dir, F_OK), 0);
}

typedef struct {
    tst_db *t;
    sbx_ctx *ctx;
    int rc;
    const char *project;
    uint64_t from;
} watcher;

static void *watch_main(void *arg)
{
    watcher *w = arg;
    Sbx__V1__WatchExecutionsRequest q = SBX__V1__WATCH_EXECUTIONS_REQUEST__INIT;
    q.project_id = (char *)w->project;
    q.from_seq = w->from;
    ProtobufCMessage *resp = NULL;
    w->rc = method("WatchExecutions")->handler(w->ctx, &q.base, &resp, w->t->db);
    return NULL;
}

static void append_n(tst_db *t, const char *project, int n)
{
    sbx_ctx *ctx = sbx_ctx_new_test("acme", false);
    for (int i = 0; i < n; i++) {
        Sbx__V1__AppendExecutionRequest a = SBX__V1__APPEND_EXECUTION_REQUEST__INIT;
        a.project_id = (char *)project;
        a.record = record("", i);
        ProtobufCMessage *r;
        assert_int_equal(call(t, ctx, "AppendExecution", &a, &r), SBX_OK);
    }
    sbx_ctx_free_test(ctx);
}

static void watch_streams_catch_up_live_and_stops(void **state)
{
    tst_db *t = *state;
    append_n(t, "w", 5);
    watcher w = {t, sbx_ctx_new_test("acme", false), -1, "w", 3};
    pthread_t th;
    pthread_create(&th, NULL, watch_main, &w);
    usleep(50000);
    append_n(t, "w", 4);
    usleep(300000);
    sbx_ctx_test_cancel(w.ctx);
    pthread_join(th, NULL);
    assert_int_equal(w.rc, SBX_CANCELLED);
    ProtobufCMessage **msgs;
    size_t n = sbx_ctx_test_sent(w.ctx, &msgs, &sbx__v1__execution_record__descriptor);
    assert_int_equal(n, 7); /* 3..5 caught up, 6..9 live */
    for (size_t i = 0; i < n; i++) {
        Sbx__V1__ExecutionRecord *r = (void *)msgs[i];
        assert_int_equal(r->seq, 3 + i);
        assert_string_equal(r->project_id, "w");
    }
    sbx_ctx_free_test(w.ctx);

    /* from_seq 0 = only new records; a delete ends the stream with NOT_FOUND */
    watcher w2 = {t, sbx_ctx_new_test("acme", false), -1, "w", 0};
    pthread_create(&th, NULL, watch_main, &w2);
    usleep(50000);
    append_n(t, "w", 1);
    usleep(100000);
    Sbx__V1__DeleteProjectRequest d = SBX__V1__DELETE_PROJECT_REQUEST__INIT;
    d.project_id = "w";
    sbx_ctx *ctx = sbx_ctx_new_test("acme", false);
    ProtobufCMessage *dr;
    assert_int_equal(call(t, ctx, "DeleteProject", &d, &dr), SBX_OK);
    sbx_ctx_free_test(ctx);
    pthread_join(th, NULL);
    assert_int_equal(w2.rc, SBX_NOT_FOUND);
    n = sbx_ctx_test_sent(w2.ctx, &msgs, &sbx__v1__execution_record__descriptor);
    assert_int_equal(n, 1);
    assert_int_equal(((Sbx__V1__ExecutionRecord *)msgs[0])->seq, 10);
    sbx_ctx_free_test(w2.ctx);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(method_table_is_complete),
    cmocka_unit_test_setup_teardown(history_through_handlers, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(cache_through_handlers, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(projects_through_handlers, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(kv_through_handlers, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(checkpoint_needs_service_principal, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(watch_streams_catch_up_live_and_stops, tst_setup, tst_teardown),
};
SBX_TEST_MAIN(tests)
