/* test_core_exectab.c: the execution table (core/exectab.c, exe.c, exe_record.c, execmon.c) on
 * a real sandbox: request_id deduplication (same command: the first execution; another command:
 * refused; an aborted start: forgotten), tags unique among running commands and lookups by tag
 * and pid, output held by the process (the head for Run and the record, offsets past the cap),
 * programs that cannot be executed, cached answers, stdin, the history record as the outbox
 * delivers it, the monitor, and the retention of finished executions (the newest keep their
 * ring; older ones keep only their head with a request_id, nothing without), and the journal
 * of running background commands (an entry while it runs, none once recorded, an entry left by
 * a dead run recorded as killed at the next start). Needs root; skips with the reason
 * otherwise. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "executor_fixture.h"
#include "status.h"

static char err[512];

typedef struct tctx {
    exf *f;
    sbx_box *b;
} tctx;

static int setup(void **state)
{
    exf *f = exf_open(&(exf_opts){.outbox = true, .ring_bytes = 4096});
    *state = NULL;
    if (!f)
        return 0;
    tctx *t = calloc(1, sizeof *t);
    t->f = f;
    t->b = exf_box(f, "t", "exe");
    *state = t;
    return t->b ? 0 : -1;
}

static int teardown(void **state)
{
    tctx *t = *state;
    if (!t)
        return 0;
    sbx_box_release(t->b);
    exf_close(t->f);
    free(t);
    return 0;
}

typedef struct run_spec {
    const char *sh;
    const char *tag, *request_id, *stdin_data;
    bool background;
    uint64_t cap; /* 0 = 1 MiB */
    const char *cwd;
} run_spec;

/* Begins and starts a shell command as the handlers do. Returns the status; *e the new
 * execution, or the first one of a request_id retry (*retry set). */
static int start(tctx *t, const run_spec *s, sbx_exe **e, bool *retry)
{
    Sbx__V1__ExecRequest r = SBX__V1__EXEC_REQUEST__INIT;
    r.command_case = SBX__V1__EXEC_REQUEST__COMMAND_SHELL;
    r.shell = (char *)s->sh;
    r.tag = (char *)(s->tag ? s->tag : "");
    r.request_id = (char *)(s->request_id ? s->request_id : "");
    r.background = s->background;
    r.cwd = (char *)(s->cwd ? s->cwd : "");
    sbx_exe_spec spec = {
        .req = &r, .fingerprint = s->request_id ? s->sh : "", .cap = s->cap ? s->cap : 1u << 20};
    sbx_exe *existing = NULL;
    *e = NULL;
    int code = sbx_exe_begin(t->b, &spec, e, &existing, err, sizeof err);
    if (retry)
        *retry = existing != NULL;
    if (existing)
        *e = existing;
    if (code != SBX_OK || existing)
        return code;
    const char *argv[] = {"/bin/sh", "-c", s->sh, NULL};
    size_t in = s->stdin_data ? strlen(s->stdin_data) : 0;
    sbx_proc_req pr = {.spawn = {.argv = argv, .cwd = (*e)->cwd, .want_stdin = in > 0},
                       .stdin_data = s->stdin_data,
                       .stdin_len = in,
                       .stdin_close = true};
    code = sbx_exe_spawn(t->b, *e, &pr, err, sizeof err);
    if (code != SBX_OK) {
        sbx_exe_unref(*e);
        *e = NULL;
    } else if (s->background) {
        sbx_exe_follow_in_background(*e);
    }
    return code;
}

/* Runs a foreground command to its end as a handler drives it. */
static sbx_exe *run(tctx *t, const run_spec *s)
{
    sbx_exe *e;
    bool retry;
    assert_int_equal(start(t, s, &e, &retry), SBX_OK);
    sbx_proc *p = sbx_exe_proc(e);
    if (p)
        assert_int_equal(sbx_proc_wait_finished(p, 20000), 0);
    sbx_proc_unref(p);
    assert_true(sbx_exe_finish(e, false, -1));
    return e;
}

static size_t head(sbx_exe *e, int stream, char *buf, size_t len)
{
    size_t n = sbx_exe_read_head(e, stream, buf, len - 1);
    buf[n] = 0;
    return n;
}

static void test_request_id_dedup(void **state)
{
    tctx *t = *state;
    EXF_REQUIRE(t);
    run_spec s = {.sh = "echo first", .request_id = "r1"};
    sbx_exe *a = run(t, &s), *b;
    bool retry;
    assert_int_equal(start(t, &s, &b, &retry), SBX_OK);
    assert_true(retry);
    assert_ptr_equal(b, a);
    sbx_exe_unref(b);
    run_spec other = {.sh = "echo second", .request_id = "r1"};
    assert_int_equal(start(t, &other, &b, &retry), SBX_ALREADY_EXISTS);
    assert_non_null(strstr(err, "request_id"));
    /* a start that failed is forgotten: the retry runs */
    run_spec bad = {.sh = "true", .request_id = "r2", .cwd = "/no/such/dir"};
    assert_int_equal(start(t, &bad, &b, &retry), SBX_FAILED_PRECONDITION);
    assert_non_null(strstr(err, "cwd"));
    bad.cwd = NULL;
    assert_int_equal(start(t, &bad, &b, &retry), SBX_OK);
    assert_false(retry);
    sbx_exe_unref(b);
    sbx_exe_unref(a);
}

static void test_tags_and_lookups(void **state)
{
    tctx *t = *state;
    EXF_REQUIRE(t);
    run_spec s = {.sh = "sleep 30", .tag = "svc", .background = true};
    sbx_exe *a, *b;
    assert_int_equal(start(t, &s, &a, NULL), SBX_OK);
    assert_int_equal(start(t, &s, &b, NULL), SBX_ALREADY_EXISTS);
    assert_non_null(strstr(err, "tag: \"svc\""));
    assert_int_equal(sbx_exectab_running(NULL, t->b), 1);
    sbx_exe_info in;
    sbx_exe_info_get(a, &in);
    assert_int_equal(in.state, EXE_RUNNING);
    b = sbx_exe_find_pid(t->b, in.pid);
    assert_ptr_equal(b, a);
    sbx_exe_unref(b);
    sbx_proc *p = sbx_exe_proc(a);
    sbx_proc_kill_tree(p);
    sbx_proc_unref(p);
    assert_int_equal(sbx_exe_wait_done(a, 5000), 0); /* the monitor finishes it */
    /* finished: the tag is free; a lookup prefers the running one, else the newest */
    b = sbx_exe_find_tag(t->b, "svc");
    assert_ptr_equal(b, a);
    sbx_exe_unref(b);
    assert_int_equal(start(t, &s, &b, NULL), SBX_OK);
    sbx_exe *c = sbx_exe_find_tag(t->b, "svc");
    assert_ptr_equal(c, b);
    sbx_exe_unref(c);
    sbx_exe **v;
    size_t n = sbx_exe_list(t->b, false, &v);
    assert_int_equal(n, 1);
    sbx_exe_list_free(v, n);
    n = sbx_exe_list(t->b, true, &v);
    assert_int_equal(n, 2);
    sbx_exe_list_free(v, n);
    p = sbx_exe_proc(b);
    sbx_proc_kill_tree(p);
    sbx_proc_unref(p);
    sbx_exe_unref(b);
    sbx_exe_unref(a);
}

/* Output past the cap counts as truncated; Run's answer and the record keep the first cap
 * bytes; the stream ends are the process's. */
static void test_output_head_and_cap(void **state)
{
    tctx *t = *state;
    EXF_REQUIRE(t);
    run_spec s = {.sh = "printf 0123456789abcdefghij; printf oops >&2; exit 3", .cap = 10};
    sbx_exe *e = run(t, &s);
    sbx_exe_info in;
    sbx_exe_info_get(e, &in);
    assert_int_equal(in.state, EXE_DONE);
    assert_int_equal(in.exit.exit_code, 3);
    assert_int_equal(in.out_end, 20);
    assert_int_equal(in.exit.stdout_bytes, 20);
    assert_true(in.exit.output_truncated);
    char buf[64];
    assert_int_equal(head(e, SBX_STREAM_STDOUT, buf, sizeof buf), 10);
    assert_string_equal(buf, "0123456789");
    uint64_t off = 12;
    assert_int_equal(sbx_exe_read(e, SBX_STREAM_STDOUT, &off, buf, 4), 4);
    assert_memory_equal(buf, "cdef", 4);
    /* recorded as the store will get it */
    assert_true(exf_wait_records(t->f, 1, 5000) >= 1);
    Sbx__V1__RecordExecutionRequest *r = exf_record(t->f, 0);
    assert_non_null(r);
    assert_string_equal(r->project_id, "exe");
    assert_string_equal(r->record->record_id, e->id);
    assert_int_equal(r->record->exit_code, 3);
    assert_int_equal(r->record->stdout.len, 10);
    assert_memory_equal(r->record->stdout.data, "0123456789", 10);
    assert_int_equal(r->record->stderr.len, 4);
    assert_true(r->record->output_truncated);
    assert_int_equal(r->record->stdout_bytes, 20);
    assert_int_equal(r->record->n_argv, 3);
    assert_string_equal(r->record->argv[0], "/bin/sh");
    sbx__v1__record_execution_request__free_unpacked(r, NULL);
    sbx_exe_unref(e);
}

/* A program that cannot be executed: a finished execution, 127 and the reason on stderr. */
static void test_cannot_execute(void **state)
{
    tctx *t = *state;
    EXF_REQUIRE(t);
    Sbx__V1__ExecRequest r = SBX__V1__EXEC_REQUEST__INIT;
    Sbx__V1__Argv av = SBX__V1__ARGV__INIT;
    char *args[] = {"no-such-program"};
    av.args = args;
    av.n_args = 1;
    r.command_case = SBX__V1__EXEC_REQUEST__COMMAND_ARGV;
    r.argv = &av;
    sbx_exe_spec spec = {.req = &r, .fingerprint = "", .cap = 1000};
    sbx_exe *e, *ex;
    assert_int_equal(sbx_exe_begin(t->b, &spec, &e, &ex, err, sizeof err), SBX_OK);
    const char *argv[] = {"no-such-program", NULL};
    sbx_proc_req pr = {.spawn = {.argv = argv}};
    assert_int_equal(sbx_exe_spawn(t->b, e, &pr, err, sizeof err), SBX_OK);
    sbx_exe_info in;
    sbx_exe_info_get(e, &in);
    assert_int_equal(in.state, EXE_DONE);
    assert_int_equal(in.exit.exit_code, 127);
    char buf[256];
    head(e, SBX_STREAM_STDERR, buf, sizeof buf);
    assert_non_null(strstr(buf, "sbx: no-such-program: No such file or directory"));
    assert_int_equal(in.exit.stderr_bytes, strlen(buf));
    sbx_exe_unref(e);
}

static void test_cached_answer(void **state)
{
    tctx *t = *state;
    EXF_REQUIRE(t);
    Sbx__V1__ExecRequest r = SBX__V1__EXEC_REQUEST__INIT;
    r.command_case = SBX__V1__EXEC_REQUEST__COMMAND_SHELL;
    r.shell = "make";
    r.cache_ttl_s = 60;
    sbx_exe_spec spec = {.req = &r, .cmdkey = "k", .fingerprint = "", .cap = 1000};
    sbx_exe *e, *ex;
    assert_int_equal(sbx_exe_begin(t->b, &spec, &e, &ex, err, sizeof err), SBX_OK);
    Sbx__V1__CachedResult c = SBX__V1__CACHED_RESULT__INIT;
    c.stdout.data = (uint8_t *)"built\n";
    c.stdout.len = 6;
    c.exit_code = 0;
    c.duration_us = 1234;
    c.stdout_bytes = 6;
    sbx_exe_set_cached(e, &c);
    sbx_exe_info in;
    sbx_exe_info_get(e, &in);
    assert_int_equal(in.state, EXE_DONE);
    assert_true(in.exit.cached);
    assert_int_equal(in.exit.duration_us, 1234);
    assert_int_equal(in.out_end, 6);
    char buf[16];
    assert_int_equal(head(e, SBX_STREAM_STDOUT, buf, sizeof buf), 6);
    assert_string_equal(buf, "built\n");
    assert_true(exf_wait_records(t->f, 1, 5000) >= 1);
    Sbx__V1__RecordExecutionRequest *rec = exf_record(t->f, 0);
    assert_true(rec->record->cached);
    assert_int_equal(rec->cache_ttl_s, 0); /* a cached answer is not cached again */
    sbx__v1__record_execution_request__free_unpacked(rec, NULL);
    sbx_exe_unref(e);
}

static void test_stdin(void **state)
{
    tctx *t = *state;
    EXF_REQUIRE(t);
    run_spec fg = {.sh = "tr a-z A-Z", .stdin_data = "queued at the start\n"};
    sbx_exe *e = run(t, &fg);
    char buf[64];
    head(e, SBX_STREAM_STDOUT, buf, sizeof buf);
    assert_string_equal(buf, "QUEUED AT THE START\n");
    sbx_exe_unref(e);

    run_spec bg = {.sh = "cat", .background = true};
    assert_int_equal(start(t, &bg, &e, NULL), SBX_OK);
    sbx_exe_info in;
    sbx_exe_info_get(e, &in);
    assert_false(in.stdin_open); /* started without stdin */
    assert_int_equal(sbx_exe_write_input(e, "x", 1, 100), -EPIPE);
    sbx_exe_close_input(e);
    assert_int_equal(sbx_exe_wait_done(e, 5000), 0);
    assert_int_equal(sbx_exe_write_input(e, "x", 1, 100), -EPIPE);
    sbx_exe_unref(e);
}

/* More finished executions than keep their ring: the older ones keep their head when a retry
 * may replay them (request_id), nothing otherwise; their ends stay known. */
static void test_retention(void **state)
{
    tctx *t = *state;
    EXF_REQUIRE(t);
    /* 6000 bytes: a 1000-byte head (the cap), then the newest 4096 in the ring */
    const char *sh = "i=0; while [ $i -lt 600 ]; do printf 0123456789; i=$((i+1)); done";
    run_spec with_id = {.sh = sh, .request_id = "keep", .cap = 1000};
    run_spec plain = {.sh = sh, .cap = 1000};
    sbx_exe *kept = run(t, &with_id), *gone = run(t, &plain);
    char buf[8192];
    uint64_t off = 1000; /* past the head: the ring's oldest */
    assert_int_equal(sbx_exe_read(kept, SBX_STREAM_STDOUT, &off, buf, sizeof buf), 4096);
    assert_int_equal(off, 6000 - 4096);
    for (int i = 0; i < EXE_KEEP_PROCS + 1; i++)
        sbx_exe_unref(run(t, &(run_spec){.sh = "true"}));
    sbx_exe_info in;
    sbx_exe_info_get(gone, &in);
    assert_int_equal(in.exit.stdout_bytes, 6000);
    assert_int_equal(in.out_end, 6000);
    assert_null(sbx_exe_proc(gone));
    off = 0;
    assert_int_equal(sbx_exe_read(gone, SBX_STREAM_STDOUT, &off, buf, sizeof buf), 0);
    assert_int_equal(head(kept, SBX_STREAM_STDOUT, buf, sizeof buf), 1000);
    off = 1000;
    assert_int_equal(sbx_exe_read(kept, SBX_STREAM_STDOUT, &off, buf, sizeof buf), 0);
    assert_int_equal(off, 6000);
    sbx_exe_unref(kept);
    sbx_exe_unref(gone);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    char *buf = calloc(1, 1 << 20);
    *len = fread(buf, 1, 1 << 20, fp);
    fclose(fp);
    return buf;
}

/* Waits up to 2 s for path to be gone. */
static bool gone_soon(const char *path)
{
    for (int i = 0; i < 200 && access(path, F_OK) == 0; i++)
        usleep(10000);
    return access(path, F_OK) != 0;
}

/* A background command has a journal entry while it runs and none once its record is queued; an
 * entry a dead executor left is recorded as killed (SIGKILL, 137) at the next start. */
static void test_journal(void **state)
{
    tctx *t = *state;
    EXF_REQUIRE(t);
    char dir[128], path[256];
    size_t n = 99;
    snprintf(dir, sizeof dir, "%s/running", t->f->dir);
    assert_int_equal(sbx_execmon_journal(t->f->mon, dir, &n), 0);
    assert_int_equal(n, 0);
    sbx_exe *e;
    assert_int_equal(
        start(t, &(run_spec){.sh = "sleep 30", .tag = "jr", .background = true}, &e, NULL), SBX_OK);
    snprintf(path, sizeof path, "%s/%s", dir, e->id);
    size_t len = 0;
    char *saved = slurp(path, &len);
    assert_non_null(saved);
    assert_true(len > 2);
    /* its real end: recorded, the entry goes */
    assert_int_equal(sbx_sandbox_kill_all(sbx_box_sandbox(t->b)), 0);
    assert_int_equal(sbx_exe_wait_done(e, 5000), 0);
    assert_int_equal(exf_wait_records(t->f, 1, 5000), 1);
    assert_true(gone_soon(path));
    /* as if the executor had died instead: the entry is there at the next start */
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(saved, 1, len, fp), len);
    fclose(fp);
    free(saved);
    assert_int_equal(sbx_execmon_journal(t->f->mon, dir, &n), 0);
    assert_int_equal(n, 1);
    assert_int_not_equal(access(path, F_OK), 0);
    assert_int_equal(exf_wait_records(t->f, 2, 5000), 2);
    Sbx__V1__RecordExecutionRequest *r = exf_record(t->f, 1);
    assert_non_null(r);
    assert_string_equal(r->project_id, "exe");
    assert_string_equal(r->record->record_id, e->id);
    assert_string_equal(r->record->tag, "jr");
    assert_int_equal(r->record->signal, 9);
    assert_int_equal(r->record->exit_code, 137);
    assert_true(r->record->output_truncated);
    assert_true(r->record->duration_us > 0);
    assert_int_equal(r->cache_ttl_s, 0);
    sbx__v1__record_execution_request__free_unpacked(r, NULL);
    sbx_exe_unref(e);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_request_id_dedup, setup, teardown),
    cmocka_unit_test_setup_teardown(test_tags_and_lookups, setup, teardown),
    cmocka_unit_test_setup_teardown(test_output_head_and_cap, setup, teardown),
    cmocka_unit_test_setup_teardown(test_cannot_execute, setup, teardown),
    cmocka_unit_test_setup_teardown(test_cached_answer, setup, teardown),
    cmocka_unit_test_setup_teardown(test_stdin, setup, teardown),
    cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
    cmocka_unit_test_setup_teardown(test_journal, setup, teardown),
};

SBX_TEST_MAIN(tests)
