/* test_store_counters.c: the group committer's counters (services/store/counters.c): the last
 * value of a group is what reaches the batch, once per counter; an operation rolled back
 * restores the values before it (new, changed and forgotten counters alike); a forgotten
 * counter is not written; a table of many counters keeps every one; values of any length up
 * to the limit keep their length. */
#include "test_main.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storedb_int.h"

/* sdb__buf keeps short keys inline: build it in place */
static void key(sdb__buf *b, const char *s)
{
    sdb__buf_init(b);
    sdb__buf_raw(b, s, strlen(s));
}

static uint64_t get(sdb__dcount *d, int cf, const char *s, bool *live)
{
    sdb__buf k;
    key(&k, s);
    const char *v;
    size_t vn = 0;
    *live = sdb__dc_get(d, cf, &k, &v, &vn);
    sdb__buf_free(&k);
    if (!*live)
        return 0;
    assert_int_equal(vn, 8);
    return sdb__be64(v);
}

static void set(sdb__dcount *d, int cf, const char *s, uint64_t v)
{
    sdb__buf k;
    key(&k, s);
    char b[8];
    sdb__be64_put(b, v);
    assert_true(sdb__dc_set(d, cf, &k, b, 8));
    sdb__buf_free(&k);
}

static void forget(sdb__dcount *d, int cf, const char *s)
{
    sdb__buf k;
    key(&k, s);
    sdb__dc_forget(d, cf, &k);
    sdb__buf_free(&k);
}

typedef struct {
    int n;
    char keys[2048][16];
    uint64_t vals[2048];
} drained;

static void collect(void *arg, int cf, const char *k, size_t kn, const char *v, size_t vn)
{
    drained *x = arg;
    snprintf(x->keys[x->n], sizeof x->keys[0], "%d:%.*s", cf, (int)kn, k);
    x->vals[x->n++] = vn == 8 ? sdb__be64(v) : 1000000 + vn;
}

static void last_value_once_per_group(void **state)
{
    (void)state;
    sdb__dcount d = {0};
    bool live;
    set(&d, SDB__CF_META, "rev", 1);
    set(&d, SDB__CF_META, "rev", 2);
    set(&d, SDB__CF_META, "rev", 3);
    set(&d, SDB__CF_PROJECTS, "rev", 9); /* another column family: another counter */
    assert_int_equal(get(&d, SDB__CF_META, "rev", &live), 3);
    assert_true(live);
    drained *x = calloc(1, sizeof *x);
    sdb__dc_drain(&d, collect, x);
    assert_int_equal(x->n, 2);
    assert_string_equal(x->keys[0], "5:rev");
    assert_int_equal(x->vals[0], 3);
    assert_int_equal(x->vals[1], 9);
    /* drained: the next group starts empty */
    get(&d, SDB__CF_META, "rev", &live);
    assert_false(live);
    x->n = 0;
    sdb__dc_drain(&d, collect, x);
    assert_int_equal(x->n, 0);
    free(x);
    sdb__dc_free(&d);
}

static void rollback_restores_the_values_before_the_op(void **state)
{
    (void)state;
    sdb__dcount d = {0};
    bool live;
    set(&d, SDB__CF_META, "a", 10); /* op 1 succeeds */
    forget(&d, SDB__CF_META, "gone");
    size_t mark = sdb__dc_mark(&d); /* op 2 fails */
    set(&d, SDB__CF_META, "a", 11);
    set(&d, SDB__CF_META, "b", 5);
    set(&d, SDB__CF_META, "a", 12);
    sdb__dc_rollback(&d, mark);
    assert_int_equal(get(&d, SDB__CF_META, "a", &live), 10);
    assert_true(live);
    get(&d, SDB__CF_META, "b", &live);
    assert_false(live);
    set(&d, SDB__CF_META, "c", 7); /* op 3: a counter op 4 forgets (a direct put) */
    mark = sdb__dc_mark(&d);
    forget(&d, SDB__CF_META, "c");
    get(&d, SDB__CF_META, "c", &live);
    assert_false(live);
    sdb__dc_rollback(&d, mark); /* op 4 failed: its direct put is rolled back too */
    assert_int_equal(get(&d, SDB__CF_META, "c", &live), 7);
    assert_true(live);
    drained *x = calloc(1, sizeof *x);
    sdb__dc_drain(&d, collect, x);
    assert_int_equal(x->n, 2); /* a = 10 and c = 7; b was rolled back */
    assert_string_equal(x->keys[0], "5:a");
    assert_int_equal(x->vals[0], 10);
    assert_string_equal(x->keys[1], "5:c");
    assert_int_equal(x->vals[1], 7);
    free(x);
    sdb__dc_free(&d);
}

static void forgotten_counter_is_not_written(void **state)
{
    (void)state;
    sdb__dcount d = {0};
    set(&d, SDB__CF_META, "x", 1);
    forget(&d, SDB__CF_META, "x"); /* put directly after: the batch has the truth */
    drained *x = calloc(1, sizeof *x);
    sdb__dc_drain(&d, collect, x);
    assert_int_equal(x->n, 0);
    free(x);
    sdb__dc_free(&d);
}

static void many_counters(void **state)
{
    (void)state;
    sdb__dcount d = {0};
    char k[16];
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 2000; i++) {
            snprintf(k, sizeof k, "k%d", i);
            set(&d, SDB__CF_META, k, (uint64_t)(i * 10 + round));
        }
    bool live;
    for (int i = 0; i < 2000; i += 37) {
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(get(&d, SDB__CF_META, k, &live), (uint64_t)(i * 10 + 1));
        assert_true(live);
    }
    drained *x = calloc(1, sizeof *x);
    sdb__dc_drain(&d, collect, x);
    assert_int_equal(x->n, 2000);
    free(x);
    sdb__dc_free(&d);
}

/* Values of any length up to SDB__DC_MAX_VALUE (a project's history counter): the length is
 * restored with the bytes on rollback; a longer value is refused (the caller puts it). */
static void byte_values_keep_their_length(void **state)
{
    (void)state;
    sdb__dcount d = {0};
    sdb__buf k;
    key(&k, "c");
    char big[SDB__DC_MAX_VALUE + 1];
    memset(big, 'x', sizeof big);
    assert_true(sdb__dc_set(&d, SDB__CF_META, &k, big, SDB__DC_MAX_VALUE));
    size_t mark = sdb__dc_mark(&d);
    assert_true(sdb__dc_set(&d, SDB__CF_META, &k, "short", 5));
    const char *v;
    size_t vn;
    assert_true(sdb__dc_get(&d, SDB__CF_META, &k, &v, &vn));
    assert_int_equal(vn, 5);
    assert_memory_equal(v, "short", 5);
    sdb__dc_rollback(&d, mark);
    assert_true(sdb__dc_get(&d, SDB__CF_META, &k, &v, &vn));
    assert_int_equal(vn, SDB__DC_MAX_VALUE);
    assert_memory_equal(v, big, SDB__DC_MAX_VALUE);
    assert_false(sdb__dc_set(&d, SDB__CF_META, &k, big, sizeof big));
    drained *x = calloc(1, sizeof *x);
    sdb__dc_drain(&d, collect, x);
    assert_int_equal(x->n, 1);
    assert_int_equal(x->vals[0], 1000000 + SDB__DC_MAX_VALUE);
    free(x);
    sdb__buf_free(&k);
    sdb__dc_free(&d);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(last_value_once_per_group),
    cmocka_unit_test(rollback_restores_the_values_before_the_op),
    cmocka_unit_test(forgotten_counter_is_not_written),
    cmocka_unit_test(byte_values_keep_their_length),
    cmocka_unit_test(many_counters),
};
SBX_TEST_MAIN(tests)
