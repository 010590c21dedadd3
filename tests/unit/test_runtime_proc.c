/* test_runtime_proc.c: the process table (runtime/proc.c, proc_io.c) on a real sandbox: ring
 * buffers with absolute offsets and the oldest held offset, the kept head before the ring, the
 * output cap, waiters for new output, stdin written by the relay thread (queued at the start,
 * closed after, a writer that times out), processes that never ran, the drain grace for pipes
 * held by daemons, and eviction of finished entries. */
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
    sbx_proc_status st;
    sbx_proc_status_get(p, &st);
    assert_string_equal(st.tag, "cat");
    assert_true(st.stdin_open);
    assert_int_equal(sbx_proc_close_stdin(p), 0);
    assert_int_equal(sbx_proc_wait_finished(p, 5000), 0);
    sbx_proc_status_get(p, &st);
    assert_int_equal(st.exit.exit_code, 0);
    assert_false(st.running);
    assert_int_equal(sbx_proc_write_stdin(p, "x", 1, 100), -EPIPE);
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
    assert_int_equal(tsbx_sh(&t, "sleep 100 & echo started", 10000, &r), 0);
    assert_true(r.st.finished);
    assert_string_equal(r.out, "started\n");
    assert_int_equal(r.st.exit.exit_code, 0);
    tsbx_close(&t);
}

/* The table keeps the newest max_finished finished processes; an evicted one can no longer be
 * signalled and its stdin is closed (observable through a reference the test keeps). */
static void test_finished_entries_evicted(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    sbx_proctab_cfg pc = {.max_finished = 3};
    tsbx t;
    assert_int_equal(tsbx_open2(&t, NULL, &pc), 0);
    const char *argv[] = {"true", NULL};
    sbx_proc_req req = {.spawn = {.argv = argv, .want_stdin = true}};
    sbx_proc *v[8];
    for (int i = 0; i < 8; i++) {
        assert_int_equal(sbx_proc_start(t.tab, &req, &v[i], NULL), 0);
        assert_int_equal(sbx_proc_wait_finished(v[i], 10000), 0);
    }
    /* eviction is the relay thread's housekeeping, which runs when the relay wakes: a new
     * command wakes it (allow it up to 2 s) */
    const char *sleeper[] = {"sleep", "30", NULL};
    sbx_proc_req sreq = {.spawn = {.argv = sleeper}};
    sbx_proc *s;
    assert_int_equal(sbx_proc_start(t.tab, &sreq, &s, NULL), 0);
    size_t open_now = 8;
    for (int tries = 0; tries < 200 && open_now > 3; tries++) {
        open_now = 0;
        for (int i = 0; i < 8; i++) {
            sbx_proc_status st;
            sbx_proc_status_get(v[i], &st);
            open_now += st.stdin_open;
        }
        usleep(10 * 1000);
    }
    assert_int_equal(open_now, 3);
    for (int i = 0; i < 8; i++) {
        sbx_proc_status st;
        sbx_proc_status_get(v[i], &st);
        assert_int_equal(st.stdin_open, i >= 5); /* the newest three stay in the table */
        if (i < 5)
            assert_int_equal(sbx_proc_kill_tree(v[i]), -ESRCH);
        sbx_proc_unref(v[i]);
    }
    sbx_proc_kill_tree(s);
    sbx_proc_unref(s);
    tsbx_close(&t);
}

/* The first keep_head_bytes stay whatever the ring drops; a read in the gap between them moves
 * to the ring; without the ring only the head is left. */
static void test_head_kept_before_the_ring(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    sbx_proctab_cfg pc = {.ring_bytes = 4096};
    tsbx t;
    assert_int_equal(tsbx_open2(&t, NULL, &pc), 0);
    const char *argv[] = {"/bin/sh", "-c",
                          "i=0; while [ $i -lt 1000 ]; do printf 0123456789; i=$((i+1)); done",
                          NULL};
    sbx_proc_req req = {.spawn = {.argv = argv}, .keep_head_bytes = 1000};
    sbx_proc *p;
    assert_int_equal(sbx_proc_start(t.tab, &req, &p, NULL), 0);
    assert_int_equal(sbx_proc_wait_finished(p, 20000), 0);
    sbx_proc_status st;
    sbx_proc_status_get(p, &st);
    assert_int_equal(st.out_end, 10000);
    assert_int_equal(st.out_oldest, 0);
    static char buf[16384];
    uint64_t off = 0;
    assert_int_equal(sbx_proc_read(p, SBX_STREAM_STDOUT, &off, buf, sizeof buf), 1000);
    assert_int_equal(off, 0);
    assert_memory_equal(buf, "0123456789", 10);
    assert_int_equal(buf[999], '9');
    off = 1000; /* dropped: the read moves to the oldest byte of the ring */
    assert_int_equal(sbx_proc_read(p, SBX_STREAM_STDOUT, &off, buf, sizeof buf), 4096);
    assert_int_equal(off, 10000 - 4096);
    assert_int_equal(buf[4095], '9');
    sbx_proc_drop_ring(p);
    off = 1000;
    assert_int_equal(sbx_proc_read(p, SBX_STREAM_STDOUT, &off, buf, sizeof buf), 0);
    assert_int_equal(off, 10000);
    off = 990;
    assert_int_equal(sbx_proc_read(p, SBX_STREAM_STDOUT, &off, buf, sizeof buf), 10);
    sbx_proc_unref(p);

    /* contiguous when the ring still holds what follows the head */
    const char *argv2[] = {"/bin/sh", "-c", "printf abcdefghij", NULL};
    sbx_proc_req req2 = {.spawn = {.argv = argv2}, .keep_head_bytes = 4};
    assert_int_equal(sbx_proc_start(t.tab, &req2, &p, NULL), 0);
    assert_int_equal(sbx_proc_wait_finished(p, 20000), 0);
    off = 2;
    assert_int_equal(sbx_proc_read(p, SBX_STREAM_STDOUT, &off, buf, sizeof buf), 8);
    assert_memory_equal(buf, "cdefghij", 8);
    sbx_proc_unref(p);
    tsbx_close(&t);
}

/* Input queued with the start reaches the command, then EOF; a writer that the command does not
 * read from gets a short count at its deadline (the rest withdrawn). */
static void test_stdin_queued_and_closed(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    tsbx t;
    assert_int_equal(tsbx_open(&t, NULL), 0);
    size_t big = 1u << 20;
    char *data = malloc(big);
    memset(data, 'x', big);
    const char *wc[] = {"wc", "-c", NULL};
    sbx_proc_req req = {.spawn = {.argv = wc, .want_stdin = true},
                        .stdin_data = data,
                        .stdin_len = big,
                        .stdin_close = true};
    sbx_proc *p;
    assert_int_equal(sbx_proc_start(t.tab, &req, &p, NULL), 0);
    assert_int_equal(sbx_proc_wait_finished(p, 20000), 0);
    char out[64] = "";
    uint64_t off = 0;
    assert_true(sbx_proc_read(p, SBX_STREAM_STDOUT, &off, out, sizeof out - 1) > 0);
    assert_int_equal(strtoul(out, NULL, 10), big);
    sbx_proc_status st;
    sbx_proc_status_get(p, &st);
    assert_false(st.stdin_open);
    assert_int_equal(sbx_proc_write_stdin(p, "x", 1, 100), -EPIPE);
    sbx_proc_unref(p);

    const char *sleeper[] = {"sleep", "30", NULL};
    sbx_proc_req req2 = {.spawn = {.argv = sleeper, .want_stdin = true}};
    assert_int_equal(sbx_proc_start(t.tab, &req2, &p, NULL), 0);
    ssize_t n = sbx_proc_write_stdin(p, data, big, 200);
    assert_true(n > 0 && (size_t)n < big); /* what the pipe took */
    sbx_proc_status_get(p, &st);
    assert_true(st.stdin_open);
    assert_int_equal(sbx_proc_write_stdin(p, data, 10, 0), 0); /* a full pipe: nothing, no error */
    assert_int_equal(sbx_proc_close_stdin(p), 0);
    sbx_proc_status_get(p, &st);
    assert_false(st.stdin_open);
    assert_int_equal(sbx_proc_kill_tree(p), 0);
    assert_int_equal(sbx_proc_wait_finished(p, 10000), 0);
    sbx_proc_unref(p);
    free(data);
    tsbx_close(&t);
}

/* A process that never ran: finished at once, its output held whole, nothing to signal. */
static void test_process_that_never_ran(void **state)
{
    (void)state;
    sbx_proc_done d = {.exit = {.exit_code = 127}, .err = "sbx: nope: not found\n", .err_len = 21};
    sbx_proc *p;
    assert_int_equal(sbx_proc_new_done(&d, &p), 0);
    sbx_proc_status st;
    sbx_proc_status_get(p, &st);
    assert_true(st.finished);
    assert_false(st.running);
    assert_int_equal(st.exit.exit_code, 127);
    assert_int_equal(st.err_end, 21);
    assert_int_equal(st.out_end, 0);
    assert_false(st.stdin_open);
    char buf[64];
    uint64_t off = 5;
    assert_int_equal(sbx_proc_read(p, SBX_STREAM_STDERR, &off, buf, sizeof buf), 16);
    assert_memory_equal(buf, "nope: not found\n", 16);
    assert_int_equal(sbx_proc_wait_finished(p, 0), 0);
    assert_int_equal(sbx_proc_kill_tree(p), -ESRCH);
    assert_int_equal(sbx_proc_write_stdin(p, "x", 1, 0), -EPIPE);
    sbx_proc_unref(p);
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
        cmocka_unit_test(test_head_kept_before_the_ring),
        cmocka_unit_test(test_stdin_queued_and_closed),
        cmocka_unit_test(test_process_that_never_ran),
        cmocka_unit_test(test_table_destroy_wakes_waiters),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
