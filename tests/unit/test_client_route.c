/* test_client_route.c: rendezvous hashing in libsbx: stable, balanced, and adding an address
 * moves only the keys the new address wins (about 1/n), never between old addresses. */
#include <stdio.h>
#include <string.h>

#include "sbx.h"
#include "test_main.h"

#define NKEYS 20000

static const char *addrs5[] = {"10.0.0.1:50051", "10.0.0.2:50051", "10.0.0.3:50051",
                               "10.0.0.4:50051", "10.0.0.5:50051"};

static void key_of(int i, char *buf, size_t n)
{
    snprintf(buf, n, "project-%d", i);
}

static void test_empty_and_single(void **state)
{
    (void)state;
    assert_int_equal(sbx_rendezvous_pick(addrs5, 0, "x"), -1);
    assert_int_equal(sbx_rendezvous_pick(addrs5, 1, "x"), 0);
    assert_int_equal(sbx_rendezvous_pick(addrs5, 1, NULL), 0);
}

static void test_stable(void **state)
{
    (void)state;
    char k[32];
    for (int i = 0; i < 1000; i++) {
        key_of(i, k, sizeof k);
        int a = sbx_rendezvous_pick(addrs5, 5, k);
        assert_true(a >= 0 && a < 5);
        assert_int_equal(sbx_rendezvous_pick(addrs5, 5, k), a);
    }
    /* pinned values: the mapping must never change between releases (clients must agree) */
    assert_int_equal(sbx_rendezvous_score("a:1", "p"), sbx_rendezvous_score("a:1", "p"));
    assert_true(sbx_rendezvous_score("a:1", "p") != sbx_rendezvous_score("a:1", "q"));
    assert_true(sbx_rendezvous_score("ab:1", "c") != sbx_rendezvous_score("a", "b:1c"));
}

static void test_order_independent(void **state)
{
    (void)state;
    const char *rev[] = {addrs5[4], addrs5[3], addrs5[2], addrs5[1], addrs5[0]};
    char k[32];
    for (int i = 0; i < 2000; i++) {
        key_of(i, k, sizeof k);
        int a = sbx_rendezvous_pick(addrs5, 5, k);
        int b = sbx_rendezvous_pick(rev, 5, k);
        assert_string_equal(addrs5[a], rev[b]);
    }
}

static void test_balanced(void **state)
{
    (void)state;
    int count[5] = {0};
    char k[32];
    for (int i = 0; i < NKEYS; i++) {
        key_of(i, k, sizeof k);
        count[sbx_rendezvous_pick(addrs5, 5, k)]++;
    }
    for (int i = 0; i < 5; i++) {
        /* expected 4000 each; allow +-10% */
        assert_in_range(count[i], 3600, 4400);
    }
}

static void test_minimal_movement_on_add(void **state)
{
    (void)state;
    char k[32];
    int moved = 0;
    for (int i = 0; i < NKEYS; i++) {
        key_of(i, k, sizeof k);
        int before = sbx_rendezvous_pick(addrs5, 4, k);
        int after = sbx_rendezvous_pick(addrs5, 5, k);
        if (after != before) {
            /* a key only ever moves to the new address */
            assert_int_equal(after, 4);
            moved++;
        }
    }
    /* about 1/5 of the keys move: 4000 of 20000, +-10% */
    assert_in_range(moved, 3600, 4400);
}

static void test_minimal_movement_on_remove(void **state)
{
    (void)state;
    char k[32];
    const char *without2[] = {addrs5[0], addrs5[1], addrs5[3], addrs5[4]};
    for (int i = 0; i < NKEYS; i++) {
        key_of(i, k, sizeof k);
        int before = sbx_rendezvous_pick(addrs5, 5, k);
        int after = sbx_rendezvous_pick(without2, 4, k);
        if (before != 2)
            assert_string_equal(addrs5[before], without2[after]);
    }
}

static void test_client_route(void **state)
{
    (void)state;
    sbx_config cfg = {.executor = "10.0.0.1:50051,10.0.0.2:50051, 10.0.0.3:50051",
                      .store = "127.0.0.1:1"};
    sbx_client *c = NULL;
    sbx_error *e = sbx_client_new(&cfg, &c);
    assert_null(e);
    assert_int_equal(sbx_client_addr_count(c, SBX_SERVICE_EXECUTOR), 3);
    assert_string_equal(sbx_client_addr(c, SBX_SERVICE_EXECUTOR, 2), "10.0.0.3:50051");
    assert_int_equal(sbx_client_addr_count(c, SBX_SERVICE_STORE), 1);
    const char *list[] = {"10.0.0.1:50051", "10.0.0.2:50051", "10.0.0.3:50051"};
    char k[32];
    for (int i = 0; i < 100; i++) {
        key_of(i, k, sizeof k);
        assert_string_equal(sbx_client_route(c, SBX_SERVICE_EXECUTOR, k),
                            list[sbx_rendezvous_pick(list, 3, k)]);
        assert_string_equal(sbx_client_route(c, SBX_SERVICE_STORE, k), "127.0.0.1:1");
    }
    sbx_client_free(c);
}

static void test_client_bad_addresses(void **state)
{
    (void)state;
    const char *bad[] = {"", "a:1,,b:2", "nocolon", "a:1,a:1", "a b:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sbx_config cfg = {.executor = bad[i][0] ? bad[i] : ",", .store = "127.0.0.1:1"};
        sbx_client *c = NULL;
        sbx_error *e = sbx_client_new(&cfg, &c);
        assert_non_null(e);
        assert_null(c);
        assert_int_equal(e->code, SBX_CODE_INVALID_ARGUMENT);
        assert_string_equal(e->name, "INVALID_ARGUMENT");
        sbx_error_free(e);
    }
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_and_single),
        cmocka_unit_test(test_stable),
        cmocka_unit_test(test_order_independent),
        cmocka_unit_test(test_balanced),
        cmocka_unit_test(test_minimal_movement_on_add),
        cmocka_unit_test(test_minimal_movement_on_remove),
        cmocka_unit_test(test_client_route),
        cmocka_unit_test(test_client_bad_addresses),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    sbx_global_init();
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    sbx_global_cleanup();
    return rc;
}
