/* test_client_args.c: the `sbx` command line, command by command: flags, positionals, the
 * trailing command of exec/serve/cache, global flags before or after the command, environment
 * defaults, and usage errors (which the CLI turns into exit status 2). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "test_main.h"

static char *store_argv[64];
static int store_argc;
static char arena[8192]; /* words are copied here: cli_parse may split KEY=VALUE in place */
static char last_err[512];

static const char *fake_env(const char *name)
{
    if (strcmp(name, "SBX_EXECUTOR") == 0)
        return "10.1.1.1:1";
    if (strcmp(name, "SBX_API_KEY") == 0)
        return "k-from-env";
    return NULL;
}

/* Parses a NULL-terminated word list; returns cli_parse's result. */
static int parse(cli_args *a, ...)
{
    size_t used = 0;
    store_argc = 0;
    va_list ap;
    va_start(ap, a);
    const char *w = "sbx";
    do {
        size_t l = strlen(w) + 1;
        assert_true(used + l <= sizeof arena && store_argc < 63);
        memcpy(arena + used, w, l);
        store_argv[store_argc++] = arena + used;
        used += l;
    } while ((w = va_arg(ap, const char *)));
    va_end(ap);
    store_argv[store_argc] = NULL;
    cli_defaults(a, NULL);
    last_err[0] = 0;
    return cli_parse(store_argc, store_argv, a, last_err, sizeof last_err);
}

static void test_globals(void **state)
{
    (void)state;
    cli_args a;
    assert_int_equal(parse(&a, "--executor", "a:1,b:2", "--store=c:3", "--api-key", "K", "--json", "--deadline",
                           "2.5", "--tls-ca", "ca.pem", "health", NULL), 0);
    assert_int_equal(a.cmd, CMD_HEALTH);
    assert_string_equal(a.executor, "a:1,b:2");
    assert_string_equal(a.store, "c:3");
    assert_string_equal(a.api_key, "K");
    assert_true(a.json);
    assert_true(a.deadline_set);
    assert_int_equal(a.deadline_ms, 2500);
    assert_string_equal(a.tls_ca, "ca.pem");
    /* global flags are also accepted after the command */
    assert_int_equal(parse(&a, "kv", "get", "k", "--json", NULL), 0);
    assert_true(a.json);
    /* defaults */
    assert_int_equal(parse(&a, "health", NULL), 0);
    assert_string_equal(a.executor, "127.0.0.1:50051");
    assert_string_equal(a.store, "127.0.0.1:50052");
    assert_null(a.api_key);
    assert_int_equal(parse(&a, "--deadline", "0", "health", NULL), -1);
    assert_int_equal(parse(&a, "--bogus", "health", NULL), -1);
    assert_int_equal(parse(&a, NULL), -1);
    assert_int_equal(parse(&a, "frob", NULL), -1);
    assert_int_equal(parse(&a, "--help", NULL), 0);
    assert_int_equal(a.cmd, CMD_HELP);
}

static void test_env_defaults(void **state)
{
    (void)state;
    cli_args a;
    cli_defaults(&a, fake_env);
    assert_string_equal(a.executor, "10.1.1.1:1");
    assert_string_equal(a.store, "127.0.0.1:50052");
    assert_string_equal(a.api_key, "k-from-env");
    char *argv[] = {(char *)"sbx", (char *)"--executor", (char *)"x:2", (char *)"health", NULL};
    char err[128];
    assert_int_equal(cli_parse(4, argv, &a, err, sizeof err), 0);
    assert_string_equal(a.executor, "x:2"); /* a flag wins over the variable */
}

static void test_exec(void **state)
{
    (void)state;
    cli_args a;
    assert_int_equal(parse(&a, "exec", "-p", "proj", "--cwd", "src", "--env", "A=1", "-e", "B=2", "--timeout-ms",
                           "500", "--cache=60", "--stdin", "--tag", "t1", "--", "ls", "-la", "--json", NULL), 0);
    assert_int_equal(a.cmd, CMD_EXEC);
    assert_string_equal(a.project, "proj");
    assert_string_equal(a.cwd, "src");
    assert_int_equal(a.n_env, 2);
    assert_string_equal(a.env[1], "B=2");
    assert_int_equal(a.timeout_ms, 500);
    assert_true(a.cache);
    assert_int_equal(a.cache_ttl_s, 60);
    assert_true(a.use_stdin);
    assert_string_equal(a.tag, "t1");
    assert_int_equal(a.argc, 3);
    assert_string_equal(a.argv[0], "ls");
    assert_string_equal(a.argv[2], "--json"); /* after --: the command's, not ours */
    assert_false(a.json);
    /* without "--", the first word starts the command */
    assert_int_equal(parse(&a, "exec", "-pP", "--cache", "--background", "python3", "-c", "print(1)", NULL), 0);
    assert_string_equal(a.project, "P");
    assert_int_equal(a.cache_ttl_s, 3600);
    assert_true(a.background);
    assert_int_equal(a.argc, 3);
    assert_string_equal(a.argv[1], "-c");
    /* errors */
    assert_int_equal(parse(&a, "exec", "--", "ls", NULL), -1);             /* no -p */
    assert_int_equal(parse(&a, "exec", "-p", "x", NULL), -1);              /* no command */
    assert_int_equal(parse(&a, "exec", "-p", "x", "--env", "NOEQ", "--", "ls", NULL), -1);
    assert_int_equal(parse(&a, "exec", "-p", "x", "--cache=0", "--", "ls", NULL), -1);
    assert_int_equal(parse(&a, "exec", "-p", "x", "--timeout-ms", "-1", "--", "ls", NULL), -1);
    assert_int_equal(parse(&a, "exec", "-p", "x", "--timeout-ms", "12abc", "--", "ls", NULL), -1);
    assert_int_equal(parse(&a, "exec", "-p", "x", "--depth", "1", "--", "ls", NULL), -1); /* not an exec flag */
    assert_non_null(strstr(last_err, "--depth"));
}

static void test_sh(void **state)
{
    (void)state;
    cli_args a;
    assert_int_equal(parse(&a, "sh", "-p", "p", "echo hi | wc -c", "--json", NULL), 0);
    assert_int_equal(a.cmd, CMD_SH);
    assert_string_equal(a.shell, "echo hi | wc -c");
    assert_true(a.json);
    assert_int_equal(parse(&a, "sh", "-p", "p", NULL), -1);
    assert_int_equal(parse(&a, "sh", "-p", "p", "a", "b", NULL), -1);
}

static void test_files(void **state)
{
    (void)state;
    cli_args a;
    assert_int_equal(parse(&a, "write", "-p", "p", "/x/y", "local.txt", "--mode", "0755", NULL), 0);
    assert_int_equal(a.cmd, CMD_WRITE);
    assert_string_equal(a.path, "/x/y");
    assert_string_equal(a.path2, "local.txt");
    assert_int_equal(a.mode, 0755);
    assert_int_equal(parse(&a, "write", "-p", "p", "f", NULL), 0);
    assert_null(a.path2);
    assert_int_equal(parse(&a, "write", "-p", "p", "f", "--mode", "999", NULL), -1);
    assert_int_equal(parse(&a, "read", "-p", "p", "f", NULL), 0);
    assert_int_equal(a.cmd, CMD_READ);
    assert_int_equal(parse(&a, "read", "-p", "p", NULL), -1);
    assert_int_equal(parse(&a, "ls", "-p", "p", NULL), 0);
    assert_string_equal(a.path, "");
    assert_int_equal(parse(&a, "ls", "-p", "p", "dir", "--depth", "3", "-l", NULL), 0);
    assert_int_equal(a.depth, 3);
    assert_true(a.long_format);
    assert_int_equal(parse(&a, "ls", "-p", "p", "--depth", "33", NULL), -1);
    assert_int_equal(parse(&a, "stat", "-p", "p", "f", NULL), 0);
    assert_int_equal(parse(&a, "mkdir", "-p", "p", "d", NULL), 0);
    assert_true(a.parents);
    assert_int_equal(parse(&a, "mkdir", "-p", "p", "d", "--no-parents", NULL), 0);
    assert_false(a.parents);
    assert_int_equal(parse(&a, "rm", "-p", "p", "-r", "d", NULL), 0);
    assert_true(a.recursive);
    assert_false(a.force);
    assert_int_equal(parse(&a, "rm", "-p", "p", "d", "-f", NULL), 0);
    assert_true(a.force);
    assert_int_equal(parse(&a, "mv", "-p", "p", "a", "b", NULL), 0);
    assert_string_equal(a.path, "a");
    assert_string_equal(a.path2, "b");
    assert_false(a.overwrite);
    assert_int_equal(parse(&a, "mv", "-p", "p", "a", NULL), -1);
}

static void test_setup_serve(void **state)
{
    (void)state;
    cli_args a;
    assert_int_equal(parse(&a, "setup", "-p", "p", "./site", "--to", "app", "--install", "pip install -r r.txt",
                           NULL), 0);
    assert_int_equal(a.cmd, CMD_SETUP);
    assert_string_equal(a.local_dir, "./site");
    assert_string_equal(a.to, "app");
    assert_string_equal(a.install, "pip install -r r.txt");
    assert_true(a.replace);
    assert_int_equal(parse(&a, "setup", "-p", "p", NULL), -1);
    assert_int_equal(parse(&a, "serve", "-p", "p", "--port", "8000", "--ready-path", "/health", "--ready-timeout",
                           "5", "--", "python3", "-m", "http.server", "8000", NULL), 0);
    assert_int_equal(a.cmd, CMD_SERVE);
    assert_int_equal(a.port, 8000);
    assert_string_equal(a.ready_path, "/health");
    assert_int_equal(a.ready_timeout_ms, 5000);
    assert_int_equal(a.argc, 4);
    assert_int_equal(parse(&a, "serve", "-p", "p", "--", "x", NULL), -1); /* no --port */
    assert_int_equal(parse(&a, "serve", "-p", "p", "--port", "70000", "--", "x", NULL), -1);
    assert_int_equal(parse(&a, "serve", "-p", "p", "--port", "80", "--ready-path", "health", "--", "x", NULL), -1);
}

static void test_procs(void **state)
{
    (void)state;
    cli_args a;
    assert_int_equal(parse(&a, "ps", "-p", "p", NULL), 0);
    assert_int_equal(a.cmd, CMD_PS);
    assert_int_equal(parse(&a, "kill", "-p", "p", "42", "--signal", "KILL", NULL), 0);
    assert_int_equal(a.pid, 42);
    assert_int_equal(a.signal, 9);
    assert_int_equal(parse(&a, "kill", "-p", "p", "--tag", "web", NULL), 0);
    assert_string_equal(a.tag, "web");
    assert_int_equal(a.signal, 0);
    assert_int_equal(parse(&a, "kill", "-p", "p", NULL), -1);
    assert_int_equal(parse(&a, "kill", "-p", "p", "1", "--tag", "x", NULL), -1);
    assert_int_equal(parse(&a, "kill", "-p", "p", "abc", NULL), -1);
    assert_int_equal(parse(&a, "kill", "-p", "p", "1", "--signal", "99", NULL), -1);
    assert_int_equal(parse(&a, "attach", "-p", "p", "7", "--from-offset", "100", NULL), 0);
    assert_int_equal(a.pid, 7);
    assert_int_equal(a.from_offset, 100);
    assert_false(a.no_follow);
    assert_int_equal(parse(&a, "attach", "-p", "p", "--tag", "t", "--no-follow", NULL), 0);
    assert_true(a.no_follow);
}

static void test_sandbox(void **state)
{
    (void)state;
    cli_args a;
    const char *subs[] = {"create", "get", "kill"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(parse(&a, "sandbox", subs[i], "-p", "p", NULL), 0);
        assert_string_equal(a.sub, subs[i]);
        assert_int_equal(parse(&a, "sandbox", subs[i], NULL), -1);
    }
    assert_int_equal(parse(&a, "sandbox", "list", NULL), 0);
    assert_int_equal(parse(&a, "sandbox", "timeout", "-p", "p", "300", NULL), 0);
    assert_int_equal(a.seconds, 300);
    assert_int_equal(parse(&a, "sandbox", "timeout", "-p", "p", NULL), -1);
    assert_int_equal(parse(&a, "sandbox", "timeout", "-p", "p", "-5", NULL), -1);
    assert_int_equal(parse(&a, "sandbox", "explode", "-p", "p", NULL), -1);
    assert_int_equal(parse(&a, "sandbox", NULL), -1);
}

static void test_history(void **state)
{
    (void)state;
    cli_args a;
    assert_int_equal(parse(&a, "history", "-p", "p", "--limit", "5", "--follow", NULL), 0);
    assert_int_equal(a.cmd, CMD_HISTORY);
    assert_string_equal(a.sub, "");
    assert_int_equal(a.limit, 5);
    assert_true(a.follow);
    assert_int_equal(parse(&a, "history", "-p", "p", NULL), 0);
    assert_false(a.follow);
    assert_int_equal(parse(&a, "history", NULL), -1);
    assert_int_equal(parse(&a, "history", "-p", "p", "--limit", "0", NULL), -1);
    assert_int_equal(parse(&a, "history", "-p", "p", "extra", NULL), -1);
    assert_int_equal(parse(&a, "history", "add", "-p", "p", "--exit-code", "3", "--duration-ms", "12",
                           "--stdout", "hi", "--cache-ttl", "60", "--", "echo", "hi", NULL), 0);
    assert_string_equal(a.sub, "add");
    assert_int_equal(a.exit_code, 3);
    assert_int_equal(a.duration_ms, 12);
    assert_string_equal(a.out_text, "hi");
    assert_int_equal(a.cache_ttl_s, 60);
    assert_int_equal(a.argc, 2);
    assert_int_equal(parse(&a, "history", "add", "-p", "p", NULL), -1);
}

static void test_project(void **state)
{
    (void)state;
    cli_args a;
    assert_int_equal(parse(&a, "project", "get", "-p", "p", NULL), 0);
    assert_string_equal(a.sub, "get");
    assert_int_equal(parse(&a, "project", "get", NULL), -1);
    assert_int_equal(parse(&a, "project", "list", NULL), 0);
    assert_int_equal(parse(&a, "project", "list", "demo-", NULL), 0);
    assert_string_equal(a.prefix, "demo-");
    assert_int_equal(parse(&a, "project", "delete", "-p", "p", NULL), 0);
    assert_int_equal(parse(&a, "project", "set", "-p", "p", "owner=ann", "empty=", "x=a=b", "--expect-version", "3",
                           NULL), 0);
    assert_int_equal(a.n_set, 3);
    assert_string_equal(a.set_keys[0], "owner");
    assert_string_equal(a.set_values[0], "ann");
    assert_string_equal(a.set_values[1], "");
    assert_string_equal(a.set_keys[2], "x");
    assert_string_equal(a.set_values[2], "a=b");
    assert_true(a.has_expect);
    assert_int_equal(a.expect_version, 3);
    assert_int_equal(parse(&a, "project", "set", "-p", "p", "--expect-version", "0", "k=v", NULL), 0);
    assert_true(a.has_expect);
    assert_int_equal(a.expect_version, 0);
    assert_int_equal(parse(&a, "project", "set", "-p", "p", NULL), -1);
    assert_int_equal(parse(&a, "project", "set", "-p", "p", "novalue", NULL), -1);
    assert_int_equal(parse(&a, "project", "set", "-p", "p", "=v", NULL), -1);
    assert_int_equal(parse(&a, "project", "set", "-p", "p", "k=v", "--expect-version", "-1", NULL), -1);
}

static void test_cache(void **state)
{
    (void)state;
    cli_args a;
    assert_int_equal(parse(&a, "cache", "clear", "-p", "p", NULL), 0);
    assert_int_equal(a.argc, 0);
    assert_int_equal(parse(&a, "cache", "clear", "-p", "p", "--", "make", "test", NULL), 0);
    assert_int_equal(a.argc, 2);
    assert_string_equal(a.argv[0], "make");
    assert_int_equal(parse(&a, "cache", "clear", "-p", "p", "--shell", "make test", NULL), 0);
    assert_string_equal(a.shell, "make test");
    assert_int_equal(parse(&a, "cache", "clear", NULL), -1);
    assert_int_equal(parse(&a, "cache", "get", "-p", "p", NULL), -1);
    assert_int_equal(parse(&a, "cache", "purge", "-p", "p", NULL), -1);
}

static void test_kv(void **state)
{
    (void)state;
    cli_args a;
    assert_int_equal(parse(&a, "kv", "set", "k", "v", "--ttl", "60", "--expect-version", "2", NULL), 0);
    assert_string_equal(a.sub, "set");
    assert_string_equal(a.key, "k");
    assert_string_equal(a.value, "v");
    assert_int_equal(a.ttl_s, 60);
    assert_true(a.has_expect);
    assert_int_equal(parse(&a, "kv", "set", "k", NULL), -1);
    assert_int_equal(parse(&a, "kv", "set", "k", "v", "--ttl", "-1", NULL), -1);
    assert_int_equal(parse(&a, "kv", "get", "k", NULL), 0);
    assert_int_equal(parse(&a, "kv", "get", NULL), -1);
    assert_int_equal(parse(&a, "kv", "get", "", NULL), -1);
    assert_int_equal(parse(&a, "kv", "del", "k", NULL), 0);
    assert_int_equal(parse(&a, "kv", "incr", "n", NULL), 0);
    assert_int_equal(a.delta, 1); /* no DELTA sends 1 */
    assert_int_equal(parse(&a, "kv", "incr", "n", "-5", NULL), 0);
    assert_int_equal(a.delta, -5);
    assert_int_equal(parse(&a, "kv", "incr", "n", "0", NULL), 0);
    assert_int_equal(a.delta, 0);
    assert_int_equal(parse(&a, "kv", "incr", "n", "x", NULL), -1);
    assert_int_equal(parse(&a, "kv", "incr", "n", "99999999999999999999", NULL), -1);
    assert_int_equal(parse(&a, "kv", "list", NULL), 0);
    assert_null(a.prefix);
    assert_int_equal(parse(&a, "kv", "list", "user:", "--limit", "10", "--keys-only", NULL), 0);
    assert_string_equal(a.prefix, "user:");
    assert_int_equal(a.limit, 10);
    assert_true(a.keys_only);
    assert_int_equal(parse(&a, "kv", "flush", NULL), 0);
    assert_int_equal(parse(&a, "kv", "flush", "x", NULL), -1);
    assert_int_equal(parse(&a, "kv", NULL), -1);
}

static void test_health_keygen_demo(void **state)
{
    (void)state;
    cli_args a;
    assert_int_equal(parse(&a, "health", NULL), 0);
    assert_null(a.service);
    assert_int_equal(parse(&a, "health", "--service", "store", NULL), 0);
    assert_string_equal(a.service, "store");
    assert_int_equal(parse(&a, "health", "--service", "db", NULL), -1);
    assert_int_equal(parse(&a, "keygen", "--tenant", "acme", NULL), 0);
    assert_string_equal(a.tenant, "acme");
    assert_int_equal(parse(&a, "keygen", NULL), -1);
    assert_int_equal(parse(&a, "demo", NULL), 0);
    assert_int_equal(parse(&a, "demo", "--keep", NULL), 0);
    assert_true(a.keep);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_globals),
    cmocka_unit_test(test_env_defaults),
    cmocka_unit_test(test_exec),
    cmocka_unit_test(test_sh),
    cmocka_unit_test(test_files),
    cmocka_unit_test(test_setup_serve),
    cmocka_unit_test(test_procs),
    cmocka_unit_test(test_sandbox),
    cmocka_unit_test(test_history),
    cmocka_unit_test(test_project),
    cmocka_unit_test(test_cache),
    cmocka_unit_test(test_kv),
    cmocka_unit_test(test_health_keygen_demo),
};
SBX_TEST_MAIN(tests)
