/* test_cli_out.c: how the CLI reports (client/cli/out.c): exit-status mapping (request error
 * 1, unreachable 69, a command's own status, 128+N for signal N, 124 on timeout), the one-line
 * error format, and cli_write_all. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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

static void test_write_all(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    char big[100000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)(i * 7);
    /* more than a pipe holds at once: a reader drains it while we write */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[1]);
        char got[sizeof big];
        size_t n = 0;
        ssize_t r;
        while ((r = read(p[0], got + n, sizeof got - n)) > 0)
            n += (size_t)r;
        _exit(n == sizeof big && memcmp(got, big, n) == 0 ? 0 : 1);
    }
    close(p[0]);
    assert_int_equal(cli_write_all(p[1], big, sizeof big), 0);
    close(p[1]);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* a reader that went away: -1 (EPIPE), not a crash */
    assert_int_equal(pipe(p), 0);
    close(p[0]);
    void (*old)(int) = signal(SIGPIPE, SIG_IGN);
    assert_int_equal(cli_write_all(p[1], "x", 1), -1);
    assert_int_equal(errno, EPIPE);
    signal(SIGPIPE, old);
    close(p[1]);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_exit_code_mapping),
    cmocka_unit_test(test_command_status),
    cmocka_unit_test(test_error_line_format),
    cmocka_unit_test(test_write_all),
};
SBX_TEST_MAIN(tests)
