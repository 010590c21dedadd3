/* test_sandbox_proc.c: the process table (proc.c) on a real sandbox: ring buffers with absolute
 * offsets and the oldest held offset, the output cap, waiters for new output, stdin, lookup by
 * pid and tag, the drain grace for pipes held by daemons, and eviction of finished entries. */
#include <pthread.h>
#include <signal.h>

#include "sandbox_fixture.h"

static void test_ring_keeps_newest(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    sbx_proctab_cfg pc = {.ring_bytes = 4096};
    tsbx t;
    tres r;
    assert_int_equal(tsbx_open2(&t, NULL, &pc), 0);
    /* 10000 bytes "0123456789" x 1000 on stdout, 3 bytes on stderr */
    const char *argv[] = {"/bin/sh", "-c",
                          "i=0; while [ $i -lt 1000 ]; do printf 0123456789; i=$((i+1)); done; "
                          "printf err >&2",
                          NULL};
    sbx_proc_req req = {.spawn = {.argv = argv}};
    sbx_proc *p;
    assert_int_equal(sbx_proc_start(t.tab, &req, &p, NULL), 0);
    assert_int_equal(sbx_proc_wait_finished(p, 20000), 0);
    uint64_t off = 0;
    ssize_t n = sbx_proc_read(p, SBX_STREAM_STDOUT, &off, r.out, sizeof r.out);
    assert_int_equal(off, 10000 - 4096);
    r.len = (size_t)n;
    sbx_proc_status_get(p, &r.st);
    char e[8] = "";
    off = 0;
    assert_int_equal(sbx_proc_read(p, SBX_STREAM_STDERR, &off, e, sizeof e), 3);
    assert_memory_equal(e, "err", 3);
    sbx_proc_unref(p);
    assert_int_equal(r.st.out_end, 10000);
    assert_int_equal(r.st.out_oldest, 10000 - 4096);
    assert_int_equal(r.st.err_end, 3);
    assert_int_equal(r.st.err_oldest, 0);
    assert_false(r.st.output_truncated);
    /* the read asked for offset 0 and was moved to the oldest held byte */
    assert_int_equal(r.len, 4096);
    assert_int_equal(r.out[0], '0' + (10000 - 4096) % 10);
    assert_int_equal(r.out[4095], '9');
    tsbx_close(&t);
}

static void test_output_cap_truncates(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    tsbx t;
    tres r;
    assert_int_equal(tsbx_open(&t, NULL), 0);
    const char *argv[] = {"/bin/sh", "-c", "head -c 100000 /dev/zero; echo tail", NULL};
    assert_int_equal(tsbx_runv(&t, argv, 20000, 1000, &r), 0);
    assert_true(r.st.output_truncated);
    assert_int_equal(r.st.out_end, 1000);
    assert_int_equal(r.st.dropped_bytes, 100005 - 1000);
    assert_int_equal(r.st.exit.exit_code, 0);
    /* kill_on_output_cap stops an endless writer */
    const char *yes[] = {"yes", NULL};
    sbx_proc_req req = {
        .spawn = {.argv = yes}, .max_output_bytes = 4096, .kill_on_output_cap = true};
    sbx_proc *p;
    assert_int_equal(sbx_proc_start(t.tab, &req, &p, NULL), 0);
    assert_int_equal(sbx_proc_wait_finished(p, 10000), 0);
    sbx_proc_status st;
    sbx_proc_status_get(p, &st);
    assert_true(st.output_truncated);
    assert_int_equal(st.exit.signal, SIGKILL);
    assert_int_equal(st.out_end, 4096);
    sbx_proc_unref(p);
    tsbx_close(&t);
}

static void test_wait_for_new_output_and_stdin(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    tsbx t;
    assert_int_equal(tsbx_open(&t, NULL), 0);
    const char *argv[] = {"cat", NULL};
    sbx_proc_req req = {.spawn = {.argv = argv, .want_stdin = true}, .tag = "cat"};
    sbx_proc *p;
    assert_int_equal(sbx_proc_start(t.tab, &req, &p, NULL), 0);
    assert_int_equal(sbx_proc_wait(p, 0, 0, 100), -ETIMEDOUT);
    assert_int_equal(sbx_proc_write_stdin(p, "hello\n", 6, 1000), 6);
    assert_int_equal(sbx_proc_wait(p, 0, 0, 5000), 0);
    char buf[32] = "";
    uint64_t off = 0;
    assert_int_equal(sbx_proc_read(p, SBX_STREAM_STDOUT, &off, buf, sizeof buf), 6);
    assert_memory_equal(buf, "hello\n", 6);
    /* nothing after offset 6 yet */
    assert_int_equal(sbx_proc_wait(p, 6, 0, 100), -ETIMEDOUT);
    assert_int_equal(sbx_proc_write_stdin(p, "more\n", 5, 1000), 5);
    assert_int_equal(sbx_proc_wait(p, 6, 0, 5000), 0);
    off = 6;
    assert_int_equal(sbx_proc_read(p, SBX_STREAM_STDOUT, &off, buf, sizeof buf), 5);
    assert_memory_equal(buf, "more\n", 5);
    /* lookups */
    sbx_proc_status st;
    sbx_proc_status_get(p, &st);
    sbx_proc *q = sbx_proc_find_pid(t.tab, st.pid);
    assert_ptr_equal(q, p);
    sbx_proc_unref(q);
    q = sbx_proc_find_tag(t.tab, "cat");
    assert_ptr_equal(q, p);
    sbx_proc_unref(q);
    assert_null(sbx_proc_find_tag(t.tab, "dog"));
    assert_null(sbx_proc_find_pid(t.tab, 99999));
    assert_int_equal(sbx_proc_close_stdin(p), 0);
    assert_int_equal(sbx_proc_wait_finished(p, 5000), 0);
    sbx_proc_status_get(p, &st);
    assert_int_equal(st.exit.exit_code, 0);
    assert_false(st.running);
    assert_int_equal(sbx_proc_write_stdin(p, "x", 1, 100), -EPIPE);
    assert_int_equal(sbx_proc_signal(p, SIGTERM), -ESRCH);
    sbx_proc_unref(p);
    tsbx_close(&t);
}

typedef struct {
    sbx_proc *p;
    int rc;
} waiter_arg;

static void *waiter(void *arg)
{
    waiter_arg *w = arg;
    w->rc = sbx_proc_wait(w->p, 0, 0, 10000);
    return NULL;
}

static void test_waiters_wake_on_output(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    tsbx t;
    assert_int_equal(tsbx_open(&t, NULL), 0);
    const char *argv[] = {"/bin/sh", "-c", "sleep 0.3; echo late >&2", NULL};
    sbx_proc_req req = {.spawn = {.argv = argv}};
    sbx_proc *p;
    assert_int_equal(sbx_proc_start(t.tab, &req, &p, NULL), 0);
    pthread_t th[4];
    waiter_arg wa[4];
    for (int i = 0; i < 4; i++) {
        wa[i] = (waiter_arg){.p = p, .rc = 1};
        pthread_create(&th[i], NULL, waiter, &wa[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(wa[i].rc, 0);
    }
    sbx_proc_status st;
    sbx_proc_status_get(p, &st);
    assert_true(st.err_end == 5 || st.finished);
    sbx_proc_unref(p);
    tsbx_close(&t);
}

static void test_daemon_holding_stdout_does_not_block(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    sbx_proctab_cfg pc = {.drain_grace_ms = 100};
    tsbx t;
    tres r;
    assert_int_equal(tsbx_open2(&t, NULL, &pc), 0);
    double t0 = (double)clock();
    (void)t0;
    assert_int_equal(tsbx_sh(&t, "sleep 100 & echo started", 10000, &r), 0);
    assert_true(r.st.finished);
    assert_string_equal(r.out, "started\n");
    assert_int_equal(r.st.exit.exit_code, 0);
    tsbx_close(&t);
}

static void test_finished_entries_evicted(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    sbx_proctab_cfg pc = {.max_finished = 3};
    tsbx t;
    tres r;
    assert_int_equal(tsbx_open2(&t, NULL, &pc), 0);
    for (int i = 0; i < 8; i++)
        assert_int_equal(tsbx_sh(&t, "true", 10000, &r), 0);
    usleep(50 * 1000);
    assert_int_equal(tsbx_sh(&t, "true", 10000, &r), 0);
    /* eviction is the relay thread's housekeeping, which may run just after the last exit is
     * delivered (exits arrive on the sandbox service thread): allow it up to 2 s */
    sbx_proc *list[16];
    size_t n = 0;
    for (int tries = 0; tries < 200; tries++) {
        n = sbx_proctab_list(t.tab, list, 16);
        for (size_t i = 0; i < n; i++)
            sbx_proc_unref(list[i]);
        if (n <= 4)
            break;
        usleep(10 * 1000);
    }
    assert_true(n <= 4);
    tsbx_close(&t);
}

static void test_table_destroy_wakes_waiters(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    tsbx t;
    assert_int_equal(tsbx_open(&t, NULL), 0);
    const char *argv[] = {"sleep", "1000", NULL};
    sbx_proc_req req = {.spawn = {.argv = argv}};
    sbx_proc *p;
    assert_int_equal(sbx_proc_start(t.tab, &req, &p, NULL), 0);
    sbx_proctab_destroy(t.tab);
    t.tab = NULL;
    assert_int_equal(sbx_proc_wait_finished(p, 1000), 0);
    sbx_proc_status st;
    sbx_proc_status_get(p, &st);
    assert_true(st.exit.lost);
    assert_int_equal(sbx_proc_kill_tree(p), -ESRCH);
    sbx_proc_unref(p);
    tsbx_close(&t);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_keeps_newest),
        cmocka_unit_test(test_output_cap_truncates),
        cmocka_unit_test(test_wait_for_new_output_and_stdin),
        cmocka_unit_test(test_waiters_wake_on_output),
        cmocka_unit_test(test_daemon_holding_stdout_does_not_block),
        cmocka_unit_test(test_finished_entries_evicted),
        cmocka_unit_test(test_table_destroy_wakes_waiters),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
