/* test_client_cmdkey.c: command keys (client/cmdkey.c): argument boundaries, working
 * directory normalisation, env order, stdin and the shell form all count as they should. */
#include <string.h>

#include "sbx.h"
#include "test_main.h"

static void test_command_key(void **state)
{
    (void)state;
    const char *argv1[] = {"echo", "a b"};
    const char *argv2[] = {"echo a", "b"};
    const char *env1[] = {"B=2", "A=1"};
    const char *env2[] = {"A=1", "B=2"};
    char k1[65], k2[65], k3[65], k4[65], k5[65], k6[65], k7[65];
    sbx_command_key(argv1, 2, NULL, NULL, NULL, 0, NULL, 0, k1);
    sbx_command_key(argv2, 2, NULL, NULL, NULL, 0, NULL, 0, k2);
    assert_int_equal(strlen(k1), 64);
    assert_string_not_equal(k1, k2); /* argument boundaries matter */
    sbx_command_key(argv1, 2, NULL, "/home/user", NULL, 0, NULL, 0, k3);
    sbx_command_key(argv1, 2, NULL, "", NULL, 0, NULL, 0, k4);
    assert_string_equal(k1, k3); /* "" and NULL mean /home/user */
    assert_string_equal(k1, k4);
    sbx_command_key(argv1, 2, NULL, "src/../.", NULL, 0, NULL, 0, k5);
    assert_string_equal(k1, k5); /* normalised */
    sbx_command_key(argv1, 2, NULL, NULL, env1, 2, NULL, 0, k6);
    sbx_command_key(argv1, 2, NULL, NULL, env2, 2, NULL, 0, k7);
    assert_string_equal(k6, k7); /* env order does not matter */
    assert_string_not_equal(k1, k6);
    sbx_command_key(argv1, 2, NULL, NULL, NULL, 0, "in", 2, k6);
    assert_string_not_equal(k1, k6); /* stdin matters */
    sbx_command_key(NULL, 0, "echo 'a b'", NULL, NULL, 0, NULL, 0, k7);
    assert_string_not_equal(k1, k7); /* shell form differs from argv form */
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_command_key),
};
SBX_TEST_MAIN(tests)
