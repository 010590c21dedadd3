/* test_common_route.c: common/route.c, shared by libsbx and sbx-executor: address lists (what
 * is accepted, what is refused and how the refusal reads) and pinned routing values (a client
 * and an executor of different releases must pick the same store for a project). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "route.h"
#include "test_main.h"

static const char *three[] = {"127.0.0.1:50052", "127.0.0.1:50053", "127.0.0.1:50054"};

static void test_addr_ok(void **state)
{
    (void)state;
    assert_true(sbx_addr_ok("127.0.0.1:50052", false));
    assert_true(sbx_addr_ok("store-0.sbx.svc:50052", false));
    assert_true(sbx_addr_ok("[::1]:50052", false));
    assert_true(sbx_addr_ok("unix:/run/sbx/store.sock", false));
    assert_true(sbx_addr_ok("127.0.0.1:0", true));
    assert_false(sbx_addr_ok("127.0.0.1:0", false));    /* a store is not "any port" */
    assert_false(sbx_addr_ok("127.0.0.1:65536", true)); /* past the port range */
    assert_false(sbx_addr_ok("127.0.0.1:123456", true));
    assert_false(sbx_addr_ok("localhost", true)); /* no port */
    assert_false(sbx_addr_ok(":50052", true));    /* no host */
    assert_false(sbx_addr_ok("host:50x", true));
    assert_false(sbx_addr_ok("a b:1", true));
    assert_false(sbx_addr_ok("a:1,b:2", true)); /* one address, not a list */
    assert_false(sbx_addr_ok("[::1:50052", true));
    assert_false(sbx_addr_ok("unix:", true));
    assert_false(sbx_addr_ok("", true));
    assert_false(sbx_addr_ok(NULL, true));
}

static void test_parse(void **state)
{
    (void)state;
    sbx_addr_list l;
    char err[320];
    assert_int_equal(
        sbx_addr_list_parse(" 10.0.0.1:1 ,10.0.0.2:2,10.0.0.3:3 ", &l, err, sizeof err), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.v[0], "10.0.0.1:1");
    assert_string_equal(l.v[2], "10.0.0.3:3");
    sbx_addr_list_free(&l);
    assert_int_equal(l.n, 0);
    sbx_addr_list_free(&l); /* twice is harmless */

    struct {
        const char *in, *want;
    } bad[] = {
        {"", "empty item"},
        {"10.0.0.1:1,", "empty item"},
        {"10.0.0.1:1,,10.0.0.2:2", "empty item"},
        {"10.0.0.1:1,nohost", "bad address \"nohost\""},
        {"10.0.0.1:1, 10.0.0.1:1", "address 10.0.0.1:1 listed twice"},
        {"10.0.0.1:0", "bad address \"10.0.0.1:0\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        assert_int_equal(sbx_addr_list_parse(bad[i].in, &l, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, bad[i].want));
        assert_int_equal(l.n, 0);
        assert_null(l.v);
    }
}

static void test_pinned(void **state)
{
    (void)state;
    /* values of this release; changing the hash would split a cluster's clients and executors
       across different stores during an upgrade */
    assert_true(sbx_route_score("127.0.0.1:50052", "proj-a") == 0xc72285c6f838e335ull);
    assert_true(sbx_route_score("127.0.0.1:50052", "demo") == 0xf46801e11d394439ull);
    assert_true(sbx_route_score("127.0.0.1:50052", "") == 0xa79cd80dcfd7f939ull);
    static const int want[12] = {2, 1, 1, 2, 0, 1, 0, 1, 1, 1, 0, 1};
    char k[16];
    for (int i = 0; i < 12; i++) {
        snprintf(k, sizeof k, "p%d", i);
        assert_int_equal(sbx_route_pick(three, 3, k), want[i]);
    }
    assert_int_equal(sbx_route_pick(three, 3, NULL), sbx_route_pick(three, 3, ""));
    assert_int_equal(sbx_route_pick(three, 0, "x"), -1);
}

static void test_spread(void **state)
{
    (void)state;
    int count[3] = {0};
    char k[32];
    for (int i = 0; i < 3000; i++) {
        snprintf(k, sizeof k, "project-%d", i);
        count[sbx_route_pick(three, 3, k)]++;
    }
    for (int i = 0; i < 3; i++)
        assert_in_range(count[i], 900, 1100); /* 1000 each, +-10% */
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_addr_ok),
    cmocka_unit_test(test_parse),
    cmocka_unit_test(test_pinned),
    cmocka_unit_test(test_spread),
};
SBX_TEST_MAIN(tests)
