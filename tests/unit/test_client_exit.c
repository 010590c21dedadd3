/* test_client_exit.c: exit-status mapping (request error 1, unreachable 69, a command's own
 * status, 128+N for signal N, 124 on timeout), signal names, the error line format, keygen
 * output, request ids and command keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "cli.h"
#include "test_main.h"

static void test_exit_code_mapping(void **state)
{
    (void)state;
    assert_int_equal(cli_exit_code(NULL), 0);
    for (int code = 1; code <= 16; code++) {
        sbx_error *e = sbx_error_new(code, "x");
        assert_non_null(e);
        assert_string_equal(e->name, sbx_code_name(code));
        assert_int_equal(cli_exit_code(e), code == SBX_CODE_UNAVAILABLE ? 69 : 1);
        sbx_error_free(e);
    }
    sbx_error_free(NULL); /* harmless */
}

static void test_command_status(void **state)
{
    (void)state;
    sbx_exec_result r = {0};
    assert_int_equal(cli_command_status(&r), 0);
    r.exit_code = 3;
    assert_int_equal(cli_command_status(&r), 3);
    r.exit_code = 137;
    r.signal = 9;
    assert_int_equal(cli_command_status(&r), 137);
    r.exit_code = 0;
    r.signal = 15;
    assert_int_equal(cli_command_status(&r), 143);
    r.timed_out = true; /* the executor kills with 9 at timeout; the CLI says 124 */
    r.signal = 9;
    assert_int_equal(cli_command_status(&r), 124);
}

static void test_signal_names(void **state)
{
    (void)state;
    assert_int_equal(cli_parse_signal("9"), 9);
    assert_int_equal(cli_parse_signal("KILL"), 9);
    assert_int_equal(cli_parse_signal("sigterm"), 15);
    assert_int_equal(cli_parse_signal("SIGINT"), 2);
    assert_int_equal(cli_parse_signal("0"), -1);
    assert_int_equal(cli_parse_signal("65"), -1);
    assert_int_equal(cli_parse_signal("NOPE"), -1);
}

static void test_error_line_format(void **state)
{
    (void)state;
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    char path[] = "/tmp/sbx-test-errXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    dup2(fd, STDERR_FILENO);
    int rc1 = cli_fail("kv get k", sbx_error_new(SBX_CODE_NOT_FOUND, "key not found\nsecond line"));
    int rc2 = cli_fail("health", sbx_error_new(SBX_CODE_UNAVAILABLE, "connection refused"));
    int rc3 = cli_usage_error("kv: want a subcommand");
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    char buf[512] = {0};
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    unlink(path);
    assert_true(n > 0);
    assert_int_equal(rc1, 1);
    assert_int_equal(rc2, 69);
    assert_int_equal(rc3, 2);
    assert_string_equal(buf, "sbx: kv get k: NOT_FOUND: key not found second line\n"
                             "sbx: health: UNAVAILABLE: connection refused\n"
                             "sbx: kv: want a subcommand\n");
}

static void test_keygen_format(void **state)
{
    (void)state;
    char *k1 = NULL, *l1 = NULL, *k2 = NULL, *l2 = NULL;
    assert_null(sbx_keygen("alice", &k1, &l1));
    assert_null(sbx_keygen("alice", &k2, &l2));
    /* "sbx_" + 43 base64url chars (256 bits) */
    assert_int_equal(strlen(k1), 4 + 43);
    assert_memory_equal(k1, "sbx_", 4);
    for (const char *p = k1 + 4; *p; p++)
        assert_true((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                    *p == '_');
    assert_string_not_equal(k1, k2);
    /* line 2 is TENANT:SHA256HEX(key), exactly what the services' keys file expects */
    char hex[65];
    sbx_sha256_hex(k1, strlen(k1), hex);
    char want[128];
    snprintf(want, sizeof want, "alice:%s", hex);
    assert_string_equal(l1, want);
    /* and the services' own parser accepts it and maps the key to the tenant */
    char err[128];
    sbx_auth *au = sbx_auth_parse(l1, strlen(l1), err, sizeof err);
    assert_non_null(au);
    char authz[128];
    snprintf(authz, sizeof authz, "Bearer %s", k1);
    const char *tenant = NULL;
    bool svc = false;
    assert_int_equal(sbx_auth_check(au, authz, strlen(authz), &tenant, &svc), 0);
    assert_string_equal(tenant, "alice");
    sbx_auth_free(au);
    free(k1);
    free(l1);
    free(k2);
    free(l2);
}

static void test_keygen_bad_tenant(void **state)
{
    (void)state;
    char *k = NULL, *l = NULL;
    const char *bad[] = {"", "a b", "x/y", "@service"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sbx_error *e = sbx_keygen(bad[i], &k, &l);
        assert_non_null(e);
        assert_int_equal(e->code, SBX_CODE_INVALID_ARGUMENT);
        assert_null(k);
        assert_null(l);
        sbx_error_free(e);
    }
}

static void test_request_id(void **state)
{
    (void)state;
    char a[37], b[37];
    sbx_request_id_new(a);
    sbx_request_id_new(b);
    assert_int_equal(strlen(a), 36);
    assert_string_not_equal(a, b);
    assert_int_equal(a[8], '-');
    assert_int_equal(a[14], '4'); /* version 4 */
    assert_true(strchr("89ab", a[19]) != NULL);
}

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
    cmocka_unit_test(test_exit_code_mapping),
    cmocka_unit_test(test_command_status),
    cmocka_unit_test(test_signal_names),
    cmocka_unit_test(test_error_line_format),
    cmocka_unit_test(test_keygen_format),
    cmocka_unit_test(test_keygen_bad_tenant),
    cmocka_unit_test(test_request_id),
    cmocka_unit_test(test_command_key),
};
SBX_TEST_MAIN(tests)
