/* test_core_outbox.c: the executor's durable outbox (core/outbox.c): in-order delivery, retries
 * while the store is unavailable, resuming after a restart, a torn tail, dead letters. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "outbox.h"
#include "status.h"
#include "test_main.h"

typedef struct fake {
    pthread_mutex_t mu;
    int fail_left;  /* answer UNAVAILABLE this many times */
    int refuse_tag; /* answer INVALID_ARGUMENT for the record with this first byte */
    char got[64][32];
    char tenants[64][16];
    int n, calls;
} fake;

static int deliver(void *arg, const char *tenant, const uint8_t *req, size_t len, char *err,
                   size_t errlen)
{
    fake *f = arg;
    pthread_mutex_lock(&f->mu);
    f->calls++;
    int code = SBX_OK;
    if (f->fail_left > 0) {
        f->fail_left--;
        snprintf(err, errlen, "store down");
        code = SBX_UNAVAILABLE;
    } else if (f->refuse_tag && len && req[0] == f->refuse_tag) {
        code = SBX_INVALID_ARGUMENT;
    } else if (f->n < 64) {
        snprintf(f->got[f->n], sizeof f->got[0], "%.*s", (int)len, (const char *)req);
        snprintf(f->tenants[f->n], sizeof f->tenants[0], "%s", tenant);
        f->n++;
    }
    pthread_mutex_unlock(&f->mu);
    return code;
}

static char *mkdir_tmp(void)
{
    char *d = strdup("/tmp/sbx-outbox-test-XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static sbx_outbox *open_ob(const char *dir, fake *f)
{
    sbx_outbox_cfg c = {.dir = dir,
                        .sync = true,
                        .deliver = deliver,
                        .deliver_arg = f,
                        .retry_initial_ms = 5,
                        .retry_max_ms = 20,
                        .compact_bytes = 1};
    sbx_outbox *ob = NULL;
    assert_int_equal(sbx_outbox_open(&c, &ob), 0);
    return ob;
}

static void append(sbx_outbox *ob, const char *tenant, const char *s)
{
    assert_int_equal(sbx_outbox_append(ob, tenant, (const uint8_t *)s, strlen(s)), 0);
}

static void test_in_order_with_retries(void **state)
{
    (void)state;
    char *dir = mkdir_tmp();
    fake f = {.mu = PTHREAD_MUTEX_INITIALIZER, .fail_left = 5};
    sbx_outbox *ob = open_ob(dir, &f);
    append(ob, "alice", "r1");
    append(ob, "bob", "r2");
    append(ob, "alice", "r3");
    assert_int_equal(sbx_outbox_flush(ob, 5000), 0);
    assert_int_equal(f.n, 3);
    assert_string_equal(f.got[0], "r1");
    assert_string_equal(f.got[1], "r2");
    assert_string_equal(f.got[2], "r3");
    assert_string_equal(f.tenants[1], "bob");
    sbx_outbox_stats st;
    sbx_outbox_get_stats(ob, &st);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.delivered, 3);
    assert_true(st.retries >= 5);
    sbx_outbox_close(ob);
    free(dir);
}

/* While the store is down the stats tell how long it has failed and how old the oldest queued
 * record is (the metrics per store); both go back to 0 once it is delivered. */
static void test_backlog_age(void **state)
{
    (void)state;
    char *dir = mkdir_tmp();
    fake f = {.mu = PTHREAD_MUTEX_INITIALIZER, .fail_left = 1 << 30};
    sbx_outbox *ob = open_ob(dir, &f);
    sbx_outbox_stats st;
    sbx_outbox_get_stats(ob, &st);
    assert_int_equal(st.oldest_ms, 0);
    assert_int_equal(st.failing_ms, 0);
    append(ob, "t", "old");
    usleep(1200 * 1000);
    append(ob, "t", "new");
    sbx_outbox_get_stats(ob, &st);
    assert_int_equal(st.pending, 2);
    assert_in_range(st.oldest_ms, 1200, 60000); /* the first record's age, not the last's */
    assert_in_range(st.failing_ms, 1000, 60000);
    pthread_mutex_lock(&f.mu);
    f.fail_left = 0;
    pthread_mutex_unlock(&f.mu);
    assert_int_equal(sbx_outbox_flush(ob, 5000), 0);
    sbx_outbox_get_stats(ob, &st);
    assert_int_equal(st.oldest_ms, 0);
    assert_int_equal(st.failing_ms, 0);
    assert_int_equal(f.n, 2);
    sbx_outbox_close(ob);
    free(dir);
}

static void test_resume_after_restart(void **state)
{
    (void)state;
    char *dir = mkdir_tmp();
    fake down = {.mu = PTHREAD_MUTEX_INITIALIZER, .fail_left = 1 << 30};
    sbx_outbox *ob = open_ob(dir, &down);
    append(ob, "t", "a");
    append(ob, "t", "b");
    assert_int_equal(sbx_outbox_flush(ob, 100), -ETIMEDOUT);
    sbx_outbox_close(ob);
    assert_int_equal(down.n, 0);
    fake up = {.mu = PTHREAD_MUTEX_INITIALIZER};
    ob = open_ob(dir, &up);
    assert_int_equal(sbx_outbox_flush(ob, 5000), 0);
    assert_int_equal(up.n, 2);
    assert_string_equal(up.got[0], "a");
    assert_string_equal(up.got[1], "b");
    sbx_outbox_close(ob);
    /* delivered entries are not sent again */
    fake again = {.mu = PTHREAD_MUTEX_INITIALIZER};
    ob = open_ob(dir, &again);
    append(ob, "t", "c");
    assert_int_equal(sbx_outbox_flush(ob, 5000), 0);
    assert_int_equal(again.n, 1);
    assert_string_equal(again.got[0], "c");
    sbx_outbox_close(ob);
    free(dir);
}

static void test_torn_tail_and_dead_letters(void **state)
{
    (void)state;
    char *dir = mkdir_tmp();
    fake down = {.mu = PTHREAD_MUTEX_INITIALIZER, .fail_left = 1 << 30};
    sbx_outbox *ob = open_ob(dir, &down);
    append(ob, "t", "good");
    append(ob, "t", "Xbad");
    append(ob, "t", "after");
    sbx_outbox_close(ob);
    /* a crash in the middle of an append leaves half an entry at the end */
    char p[512];
    snprintf(p, sizeof p, "%s/queue.log", dir);
    int fd = open(p, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "SBXO\x40\0\0\0garbage", 15), 15);
    close(fd);
    fake up = {.mu = PTHREAD_MUTEX_INITIALIZER, .refuse_tag = 'X'};
    ob = open_ob(dir, &up);
    assert_int_equal(sbx_outbox_flush(ob, 5000), 0);
    assert_int_equal(up.n, 2);
    assert_string_equal(up.got[0], "good");
    assert_string_equal(up.got[1], "after");
    sbx_outbox_stats st;
    sbx_outbox_get_stats(ob, &st);
    assert_int_equal(st.dead, 1);
    sbx_outbox_close(ob);
    snprintf(p, sizeof p, "%s/dead.log", dir);
    struct stat sst;
    assert_int_equal(stat(p, &sst), 0);
    assert_true(sst.st_size > 0);
    free(dir);
}

static void test_bad_input(void **state)
{
    (void)state;
    char *dir = mkdir_tmp();
    fake f = {.mu = PTHREAD_MUTEX_INITIALIZER};
    sbx_outbox *ob = open_ob(dir, &f);
    assert_int_equal(sbx_outbox_append(ob, "", (const uint8_t *)"x", 1), -EINVAL);
    char longt[80];
    memset(longt, 't', sizeof longt - 1);
    longt[sizeof longt - 1] = 0;
    assert_int_equal(sbx_outbox_append(ob, longt, (const uint8_t *)"x", 1), -EINVAL);
    sbx_outbox_close(ob);
    sbx_outbox_cfg c = {.dir = NULL};
    assert_int_equal(sbx_outbox_open(&c, &ob), -EINVAL);
    free(dir);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order_with_retries),
        cmocka_unit_test(test_backlog_age),
        cmocka_unit_test(test_resume_after_restart),
        cmocka_unit_test(test_torn_tail_and_dead_letters),
        cmocka_unit_test(test_bad_input),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
