/* test_config.c: the flag/env table parser. */
#include "test_main.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"

static const char *listen_v, *mode_v;
static int64_t n_v, size_v;
static bool flag_v;

static const sbx_cfg_opt opts[] = {
    {"listen", "SBXT_LISTEN", SBX_CFG_STR, "127.0.0.1:1", 0, 0, NULL, "addr", &listen_v},
    {"count", "SBXT_COUNT", SBX_CFG_INT, "5", 1, 100, NULL, "n", &n_v},
    {"size", "SBXT_SIZE", SBX_CFG_SIZE, "1M", 1024, 1LL << 30, NULL, "bytes", &size_v},
    {"sync", "SBXT_SYNC", SBX_CFG_BOOL, "on", 0, 0, NULL, "sync", &flag_v},
    {"mode", "SBXT_MODE", SBX_CFG_ENUM, "fast", 0, 0, "fast|safe", "mode", &mode_v},
};
#define N (sizeof opts / sizeof opts[0])

static int parse(int argc, char **argv, char *err)
{
    return sbx_cfg_parse(opts, N, argc, argv, NULL, err, 256);
}

static void defaults_apply(void **state)
{
    (void)state;
    char err[256];
    char *argv[] = {"prog"};
    assert_int_equal(parse(1, argv, err), SBX_CFG_OK);
    assert_string_equal(listen_v, "127.0.0.1:1");
    assert_int_equal(n_v, 5);
    assert_int_equal(size_v, 1 << 20);
    assert_true(flag_v);
    assert_string_equal(mode_v, "fast");
}

static void flags_beat_env(void **state)
{
    (void)state;
    char err[256];
    setenv("SBXT_COUNT", "7", 1);
    setenv("SBXT_LISTEN", "127.0.0.1:9", 1);
    char *argv[] = {"prog", "--count", "9", "--sync=off", "--size", "64K", "--mode=safe"};
    assert_int_equal(parse(7, argv, err), SBX_CFG_OK);
    assert_int_equal(n_v, 9);
    assert_string_equal(listen_v, "127.0.0.1:9");
    assert_false(flag_v);
    assert_int_equal(size_v, 65536);
    assert_string_equal(mode_v, "safe");
    unsetenv("SBXT_COUNT");
    unsetenv("SBXT_LISTEN");
}

static void bad_values_name_the_flag(void **state)
{
    (void)state;
    char err[256];
    char *a1[] = {"prog", "--count", "abc"};
    assert_int_equal(parse(3, a1, err), SBX_CFG_ERROR);
    assert_non_null(strstr(err, "--count"));
    char *a2[] = {"prog", "--count", "101"};
    assert_int_equal(parse(3, a2, err), SBX_CFG_ERROR);
    assert_non_null(strstr(err, "1..100"));
    char *a3[] = {"prog", "--mode", "slow"};
    assert_int_equal(parse(3, a3, err), SBX_CFG_ERROR);
    assert_non_null(strstr(err, "fast|safe"));
    char *a4[] = {"prog", "--nope"};
    assert_int_equal(parse(2, a4, err), SBX_CFG_ERROR);
    assert_non_null(strstr(err, "--nope"));
    char *a5[] = {"prog", "--count"};
    assert_int_equal(parse(2, a5, err), SBX_CFG_ERROR);
    assert_non_null(strstr(err, "needs a value"));
    setenv("SBXT_SIZE", "12Q", 1);
    char *a6[] = {"prog"};
    assert_int_equal(parse(1, a6, err), SBX_CFG_ERROR);
    assert_non_null(strstr(err, "SBXT_SIZE"));
    unsetenv("SBXT_SIZE");
}

static void help_and_positional(void **state)
{
    (void)state;
    char err[256];
    char *a1[] = {"prog", "--help"};
    assert_int_equal(parse(2, a1, err), SBX_CFG_HELP);
    char *a2[] = {"prog", "--count", "3", "cmd", "--x"};
    int pos = 0;
    assert_int_equal(sbx_cfg_parse(opts, N, 5, a2, &pos, err, sizeof err), SBX_CFG_OK);
    assert_int_equal(pos, 3);
    char *a3[] = {"prog", "stray"};
    assert_int_equal(parse(2, a3, err), SBX_CFG_ERROR);
}

static void sizes(void **state)
{
    (void)state;
    int64_t v;
    assert_int_equal(sbx_parse_size("4096", &v), 0);
    assert_int_equal(v, 4096);
    assert_int_equal(sbx_parse_size("2G", &v), 0);
    assert_int_equal(v, 2LL << 30);
    assert_int_equal(sbx_parse_size("400KiB", &v), 0);
    assert_int_equal(v, 400 * 1024);
    assert_int_equal(sbx_parse_size("-1", &v), -1);
    assert_int_equal(sbx_parse_size("1X", &v), -1);
    assert_int_equal(sbx_parse_size("99999999999T", &v), -1);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(defaults_apply),
    cmocka_unit_test(flags_beat_env),
    cmocka_unit_test(bad_values_name_the_flag),
    cmocka_unit_test(help_and_positional),
    cmocka_unit_test(sizes),
};
SBX_TEST_MAIN(tests)
