/* test_core_validate.c: request validation (core/exec_validate.c) and the command cache key
 * (cmdkey.c) of the executor service. */
#include <stdlib.h>
#include <string.h>

#include "exec_cmdkey.h"
#include "exec_validate.h"
#include "status.h"
#include "test_main.h"

static char err[512];

static void test_project_and_ids(void **state)
{
    (void)state;
    assert_int_equal(exv_project_id("project_id", "a", err, sizeof err), SBX_OK);
    assert_int_equal(exv_project_id("project_id", "A9._-x", err, sizeof err), SBX_OK);
    assert_int_equal(exv_project_id("project_id", "", err, sizeof err), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "project_id"));
    assert_int_equal(exv_project_id("project_id", ".x", err, sizeof err), SBX_INVALID_ARGUMENT);
    assert_int_equal(exv_project_id("project_id", "a/b", err, sizeof err), SBX_INVALID_ARGUMENT);
    char big[200];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    assert_int_equal(exv_project_id("project_id", big, err, sizeof err), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "128"));
    assert_int_equal(exv_address("", "", err, sizeof err), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "sandbox_id, project_id"));
    assert_int_equal(exv_address("sb-1", "", err, sizeof err), SBX_OK);
    assert_int_equal(exv_address("sb 1", "", err, sizeof err), SBX_INVALID_ARGUMENT);
    assert_int_equal(exv_tag("tag", "web:1.x-y_z", err, sizeof err), SBX_OK);
    assert_int_equal(exv_tag("tag", "a b", err, sizeof err), SBX_INVALID_ARGUMENT);
    assert_int_equal(exv_request_id("uuid-123 ok", err, sizeof err), SBX_OK);
    assert_int_equal(exv_request_id("\x7f", err, sizeof err), SBX_INVALID_ARGUMENT);
    assert_int_equal(exv_template("py3.11", err, sizeof err), SBX_OK);
    assert_int_equal(exv_template("../x", err, sizeof err), SBX_INVALID_ARGUMENT);
}

static void test_env_and_metadata(void **state)
{
    (void)state;
    exv_kv ok[] = {{"PATH", "/x"}, {"_A1", ""}};
    assert_int_equal(exv_env("env", ok, 2, err, sizeof err), SBX_OK);
    exv_kv eq[] = {{"A=B", "x"}};
    assert_int_equal(exv_env("env", eq, 1, err, sizeof err), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "'='"));
    exv_kv digit[] = {{"1A", "x"}};
    assert_int_equal(exv_env("env", digit, 1, err, sizeof err), SBX_INVALID_ARGUMENT);
    exv_kv empty[] = {{"", "x"}};
    assert_int_equal(exv_env("env", empty, 1, err, sizeof err), SBX_INVALID_ARGUMENT);
    char *bigv = malloc(EXV_ENV_VALUE_MAX + 2);
    memset(bigv, 'v', EXV_ENV_VALUE_MAX + 1);
    bigv[EXV_ENV_VALUE_MAX + 1] = 0;
    exv_kv big[] = {{"K", bigv}};
    assert_int_equal(exv_env("env", big, 1, err, sizeof err), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "32768"));
    free(bigv);
    exv_kv m[] = {{"k", "v"}};
    assert_int_equal(exv_metadata("metadata", m, 1, err, sizeof err), SBX_OK);
    assert_int_equal(exv_metadata("metadata", m, 65, err, sizeof err), SBX_INVALID_ARGUMENT);
}

static void test_exec_request(void **state)
{
    (void)state;
    Sbx__V1__ExecRequest r = SBX__V1__EXEC_REQUEST__INIT;
    Sbx__V1__Argv av = SBX__V1__ARGV__INIT;
    char *args[] = {"echo", "hi"};
    r.project_id = "p";
    assert_int_equal(exv_exec_request(&r, err, sizeof err), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "command"));
    r.command_case = SBX__V1__EXEC_REQUEST__COMMAND_ARGV;
    r.argv = &av;
    assert_int_equal(exv_exec_request(&r, err, sizeof err), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "argv.args"));
    av.args = args;
    av.n_args = 2;
    assert_int_equal(exv_exec_request(&r, err, sizeof err), SBX_OK);
    char *emptyprog[] = {""};
    av.args = emptyprog;
    av.n_args = 1;
    assert_int_equal(exv_exec_request(&r, err, sizeof err), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "args[0]"));
    av.args = args;
    av.n_args = 2;
    r.timeout_ms = -1;
    assert_int_equal(exv_exec_request(&r, err, sizeof err), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "timeout_ms"));
    r.timeout_ms = EXV_TIMEOUT_MAX_MS + 1;
    assert_int_equal(exv_exec_request(&r, err, sizeof err), SBX_INVALID_ARGUMENT);
    r.timeout_ms = EXV_TIMEOUT_MAX_MS;
    assert_int_equal(exv_exec_request(&r, err, sizeof err), SBX_OK);
    r.max_output_bytes = -5;
    assert_int_equal(exv_exec_request(&r, err, sizeof err), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "max_output_bytes"));
    r.max_output_bytes = 0;
    r.cache_ttl_s = EXV_CACHE_TTL_MAX_S + 1;
    assert_int_equal(exv_exec_request(&r, err, sizeof err), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "cache_ttl_s"));
    r.cache_ttl_s = 0;
    r.stdin.len = EXV_STDIN_MAX + 1;
    assert_int_equal(exv_exec_request(&r, err, sizeof err), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "stdin"));
    r.stdin.len = 0;
    r.command_case = SBX__V1__EXEC_REQUEST__COMMAND_SHELL;
    r.shell = "";
    assert_int_equal(exv_exec_request(&r, err, sizeof err), SBX_INVALID_ARGUMENT);
    r.shell = "echo hi";
    assert_int_equal(exv_exec_request(&r, err, sizeof err), SBX_OK);
    Sbx__V1__ProcessSelector sel = SBX__V1__PROCESS_SELECTOR__INIT;
    assert_int_equal(exv_selector(NULL, err, sizeof err), SBX_INVALID_ARGUMENT);
    assert_int_equal(exv_selector(&sel, err, sizeof err), SBX_INVALID_ARGUMENT);
    sel.sel_case = SBX__V1__PROCESS_SELECTOR__SEL_PID;
    sel.pid = 0;
    assert_int_equal(exv_selector(&sel, err, sizeof err), SBX_INVALID_ARGUMENT);
    sel.pid = 5;
    assert_int_equal(exv_selector(&sel, err, sizeof err), SBX_OK);
}

static void test_limits(void **state)
{
    (void)state;
    exv_limits def = {1 << 30, 512, 1000, 60000, 1 << 24, 1024, 1LL << 32, 65536};
    exv_limits max = {16LL << 30, 4096, 2000, 86400000, 1 << 30, 65536, 1LL << 40, 1 << 24};
    exv_limits out;
    assert_int_equal(exv_limits_resolve(NULL, &def, &max, &out, err, sizeof err), SBX_OK);
    assert_memory_equal(&out, &def, sizeof out);
    Sbx__V1__SandboxLimits l = SBX__V1__SANDBOX_LIMITS__INIT;
    l.pids = 64;
    assert_int_equal(exv_limits_resolve(&l, &def, &max, &out, err, sizeof err), SBX_OK);
    assert_int_equal(out.pids, 64);
    assert_int_equal(out.memory_bytes, def.memory_bytes);
    l.memory_bytes = 1 << 20;
    assert_int_equal(exv_limits_resolve(&l, &def, &max, &out, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "limits.memory_bytes"));
    assert_non_null(strstr(err, "minimum"));
    l.memory_bytes = 32LL << 30;
    assert_int_equal(exv_limits_resolve(&l, &def, &max, &out, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "maximum"));
    l.memory_bytes = 0;
    l.cpu_millis = -1;
    assert_int_equal(exv_limits_resolve(&l, &def, &max, &out, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "cpu_millis"));
    assert_int_equal(exv_limits_check_config(&def, &max, err, sizeof err), SBX_OK);
    def.pids = 5000;
    assert_int_equal(exv_limits_check_config(&def, &max, err, sizeof err), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "--pids"));
}

/* disk_bytes has a minimum (an ext4 image); disk_inodes follows disk_bytes unless asked for,
 * and may not exceed one per 2 KiB of it. */
static void test_limits_disk(void **state)
{
    (void)state;
    exv_limits def = {1 << 30, 512, 1000, 60000, 1 << 24, 1024, 1LL << 32, 0};
    exv_limits max = {16LL << 30, 4096, 2000, 86400000, 1 << 30, 65536, 1LL << 40, 1 << 24};
    exv_limits out;
    assert_int_equal(exv_limits_resolve(NULL, &def, &max, &out, err, sizeof err), SBX_OK);
    assert_int_equal(out.disk_inodes, (1LL << 32) / 16384); /* ext4's own ratio */
    Sbx__V1__SandboxLimits l = SBX__V1__SANDBOX_LIMITS__INIT;
    l.disk_bytes = 1 << 20;
    assert_int_equal(exv_limits_resolve(&l, &def, &max, &out, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "limits.disk_bytes"));
    l.disk_bytes = 10 << 20;
    assert_int_equal(exv_limits_resolve(&l, &def, &max, &out, err, sizeof err), SBX_OK);
    assert_int_equal(out.disk_inodes, 1024); /* 640 by the ratio: the minimum */
    l.disk_inodes = 5120;
    assert_int_equal(exv_limits_resolve(&l, &def, &max, &out, err, sizeof err), SBX_OK);
    assert_int_equal(out.disk_inodes, 5120);
    l.disk_inodes = 5121;
    assert_int_equal(exv_limits_resolve(&l, &def, &max, &out, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "limits.disk_inodes"));
    l.disk_inodes = 100;
    assert_int_equal(exv_limits_resolve(&l, &def, &max, &out, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "minimum"));
    def.disk_inodes = 1 << 20; /* a server default above what a small disk allows adapts */
    l.disk_inodes = 0;
    assert_int_equal(exv_limits_resolve(&l, &def, &max, &out, err, sizeof err), SBX_OK);
    assert_int_equal(out.disk_inodes, 5120);
    def.disk_bytes = 1 << 20;
    assert_int_equal(exv_limits_check_config(&def, &max, err, sizeof err), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "--disk"));
}

static void test_command_key(void **state)
{
    (void)state;
    Sbx__V1__ExecRequest r = SBX__V1__EXEC_REQUEST__INIT;
    r.command_case = SBX__V1__EXEC_REQUEST__COMMAND_SHELL;
    r.shell = "make test";
    char k1[65], k2[65], k3[65];
    assert_int_equal(exk_command_key(&r, k1), 0);
    assert_int_equal(strlen(k1), 64);
    r.cwd = "/home/user/sub/..";
    assert_int_equal(exk_command_key(&r, k2), 0);
    assert_string_equal(k1, k2); /* cwd is normalized against /home/user */
    Sbx__V1__ExecRequest__EnvEntry a = SBX__V1__EXEC_REQUEST__ENV_ENTRY__INIT,
                                   b = SBX__V1__EXEC_REQUEST__ENV_ENTRY__INIT;
    a.key = "A";
    a.value = "1";
    b.key = "B";
    b.value = "2";
    Sbx__V1__ExecRequest__EnvEntry *ab[] = {&a, &b}, *ba[] = {&b, &a};
    r.env = ab;
    r.n_env = 2;
    assert_int_equal(exk_command_key(&r, k2), 0);
    r.env = ba;
    assert_int_equal(exk_command_key(&r, k3), 0);
    assert_string_equal(k2, k3); /* env order does not matter */
    assert_string_not_equal(k1, k2);
    r.stdin.data = (uint8_t *)"in";
    r.stdin.len = 2;
    assert_int_equal(exk_command_key(&r, k3), 0);
    assert_string_not_equal(k2, k3);
    char *n = exk_normalize_cwd("a/./b/../c");
    assert_string_equal(n, "/home/user/a/c");
    free(n);
    n = exk_normalize_cwd("/../..");
    assert_string_equal(n, "/");
    free(n);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_project_and_ids), cmocka_unit_test(test_env_and_metadata),
        cmocka_unit_test(test_exec_request),    cmocka_unit_test(test_limits),
        cmocka_unit_test(test_limits_disk),     cmocka_unit_test(test_command_key),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
