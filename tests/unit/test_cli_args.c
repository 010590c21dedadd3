/* test_cli_args.c: the `sbx` command line (client/cli/args.c and the option tables of the
 * cmd_*.c files), command by command: flags, positionals, the trailing command of
 * exec/serve/cache/history add, global flags before or after the command, environment defaults,
 * usage errors (which the CLI turns into exit status 2) and their wording, --help per command,
 * "--", options after positionals, and the consistency of the tables themselves. */
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
    assert_int_equal(parse(&a, "--executor", "a:1,b:2", "--store=c:3", "--api-key", "K", "--json",
                           "--deadline", "2.5", "--tls-ca", "ca.pem", "health", NULL),
                     0);
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
    assert_int_equal(parse(&a, "exec", "-p", "proj", "--cwd", "src", "--env", "A=1", "-e", "B=2",
                           "--timeout-ms", "500", "--cache=60", "--stdin", "--tag", "t1", "--",
                           "ls", "-la", "--json", NULL),
                     0);
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
    assert_int_equal(
        parse(&a, "exec", "-pP", "--cache", "--background", "python3", "-c", "print(1)", NULL), 0);
    assert_string_equal(a.project, "P");
    assert_int_equal(a.cache_ttl_s, 3600);
    assert_true(a.background);
    assert_int_equal(a.argc, 3);
    assert_string_equal(a.argv[1], "-c");
    /* errors */
    assert_int_equal(parse(&a, "exec", "--", "ls", NULL), -1); /* no -p */
    assert_int_equal(parse(&a, "exec", "-p", "x", NULL), -1);  /* no command */
    assert_int_equal(parse(&a, "exec", "-p", "x", "--env", "NOEQ", "--", "ls", NULL), -1);
    assert_int_equal(parse(&a, "exec", "-p", "x", "--cache=0", "--", "ls", NULL), -1);
    assert_int_equal(parse(&a, "exec", "-p", "x", "--timeout-ms", "-1", "--", "ls", NULL), -1);
    assert_int_equal(parse(&a, "exec", "-p", "x", "--timeout-ms", "12abc", "--", "ls", NULL), -1);
    assert_int_equal(parse(&a, "exec", "-p", "x", "--depth", "1", "--", "ls", NULL),
                     -1); /* not an exec flag */
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
    assert_int_equal(parse(&a, "setup", "-p", "p", "./site", "--to", "app", "--install",
                           "pip install -r r.txt", NULL),
                     0);
    assert_int_equal(a.cmd, CMD_SETUP);
    assert_string_equal(a.local_dir, "./site");
    assert_string_equal(a.to, "app");
    assert_string_equal(a.install, "pip install -r r.txt");
    assert_true(a.replace);
    assert_int_equal(parse(&a, "setup", "-p", "p", NULL), -1);
    assert_int_equal(parse(&a, "serve", "-p", "p", "--port", "8000", "--ready-path", "/health",
                           "--ready-timeout", "5", "--", "python3", "-m", "http.server", "8000",
                           NULL),
                     0);
    assert_int_equal(a.cmd, CMD_SERVE);
    assert_int_equal(a.port, 8000);
    assert_string_equal(a.ready_path, "/health");
    assert_int_equal(a.ready_timeout_ms, 5000);
    assert_int_equal(a.argc, 4);
    assert_int_equal(parse(&a, "serve", "-p", "p", "--", "x", NULL), -1); /* no --port */
    assert_int_equal(parse(&a, "serve", "-p", "p", "--port", "70000", "--", "x", NULL), -1);
    assert_int_equal(
        parse(&a, "serve", "-p", "p", "--port", "80", "--ready-path", "health", "--", "x", NULL),
        -1);
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

static void test_term_watch(void **state)
{
    (void)state;
    cli_args a;
    assert_int_equal(parse(&a, "term", "-p", "p", NULL), 0);
    assert_int_equal(a.cmd, CMD_TERM);
    assert_int_equal(a.argc, 0); /* the default shell */
    assert_int_equal(parse(&a, "term", "-p", "p", "--tag", "sh1", "-e", "TERM=vt100", "--",
                           "python3", "-q", NULL),
                     0);
    assert_string_equal(a.tag, "sh1");
    assert_int_equal(a.n_env, 1);
    assert_int_equal(a.argc, 2);
    assert_string_equal(a.argv[0], "python3");
    assert_int_equal(parse(&a, "term", NULL), -1);
    assert_non_null(strstr(last_err, "-p"));
    assert_int_equal(parse(&a, "exec", "-p", "p", "--pty", "--", "tty", NULL), 0);
    assert_true(a.pty);
    assert_int_equal(parse(&a, "watch", "-p", "p", "app", "-r", "--coalesce-ms", "1", NULL), 0);
    assert_int_equal(a.cmd, CMD_WATCH);
    assert_string_equal(a.path, "app");
    assert_true(a.recursive);
    assert_int_equal(a.coalesce_ms, 1);
    assert_int_equal(parse(&a, "--json", "watch", "-p", "p", "/tmp", NULL), 0);
    assert_true(a.json);
    assert_false(a.recursive);
    assert_int_equal(a.coalesce_ms, 0);
    assert_int_equal(parse(&a, "watch", "-p", "p", NULL), -1);
    assert_int_equal(parse(&a, "watch", "-p", "p", "a", "b", NULL), -1);
    assert_int_equal(parse(&a, "watch", "-p", "p", "a", "--coalesce-ms", "10001", NULL), -1);
    assert_non_null(strstr(last_err, "coalesce-ms"));
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
    assert_int_equal(parse(&a, "history", "add", "-p", "p", "--exit-code", "3", "--duration-ms",
                           "12", "--stdout", "hi", "--cache-ttl", "60", "--", "echo", "hi", NULL),
                     0);
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
    assert_int_equal(parse(&a, "project", "set", "-p", "p", "owner=ann", "empty=", "x=a=b",
                           "--expect-version", "3", NULL),
                     0);
    assert_int_equal(a.n_set, 3);
    assert_string_equal(a.set_keys[0], "owner");
    assert_string_equal(a.set_values[0], "ann");
    assert_string_equal(a.set_values[1], "");
    assert_string_equal(a.set_keys[2], "x");
    assert_string_equal(a.set_values[2], "a=b");
    assert_true(a.has_expect);
    assert_int_equal(a.expect_version, 3);
    assert_int_equal(parse(&a, "project", "set", "-p", "p", "--expect-version", "0", "k=v", NULL),
                     0);
    assert_true(a.has_expect);
    assert_int_equal(a.expect_version, 0);
    assert_int_equal(parse(&a, "project", "set", "-p", "p", NULL), -1);
    assert_int_equal(parse(&a, "project", "set", "-p", "p", "novalue", NULL), -1);
    assert_int_equal(parse(&a, "project", "set", "-p", "p", "=v", NULL), -1);
    assert_int_equal(parse(&a, "project", "set", "-p", "p", "k=v", "--expect-version", "-1", NULL),
                     -1);
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
    assert_int_equal(parse(&a, "kv", "set", "k", "v", "--ttl", "60", "--expect-version", "2", NULL),
                     0);
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

/* An unknown option is a usage error naming the command and the option, with the hint. */
static void test_unknown_option(void **state)
{
    (void)state;
    cli_args a;
    assert_int_equal(parse(&a, "ls", "-p", "p", "--bogus", NULL), -1);
    assert_string_equal(last_err, "ls: unknown option --bogus (try: sbx ls --help)");
    assert_int_equal(parse(&a, "ls", "-p", "p", "--bogus=1", NULL), -1);
    assert_string_equal(last_err, "ls: unknown option --bogus (try: sbx ls --help)");
    assert_int_equal(parse(&a, "kv", "get", "k", "-z", NULL), -1);
    assert_string_equal(last_err, "kv get: unknown option -z (try: sbx kv --help)");
    assert_int_equal(parse(&a, "--bogus", "health", NULL), -1);
    assert_string_equal(last_err, "unknown option --bogus (try: sbx --help)");
    /* an option of another command */
    assert_int_equal(parse(&a, "kv", "list", "--depth", "2", NULL), -1);
    assert_string_equal(last_err, "kv list: unknown option --depth (try: sbx kv --help)");
    /* no abbreviations: a later option must not make a script's abbreviation ambiguous */
    assert_int_equal(parse(&a, "exec", "--proj", "p", "--", "ls", NULL), -1);
    assert_string_equal(last_err, "exec: unknown option --proj (try: sbx exec --help)");
    assert_int_equal(parse(&a, "--exec", "x:1", "health", NULL), -1);
    assert_int_equal(parse(&a, "kv", "list", "--keys", NULL), -1);
    /* a flag given a value */
    assert_int_equal(parse(&a, "exec", "-p", "x", "--stdin=yes", "ls", NULL), -1);
    assert_string_equal(last_err, "exec: --stdin takes no value (try: sbx exec --help)");
    assert_int_equal(parse(&a, "health", "--json=1", NULL), -1);
    assert_string_equal(last_err, "health: --json takes no value (try: sbx health --help)");
    /* --version only before the command */
    assert_int_equal(parse(&a, "health", "--version", NULL), -1);
}

static void test_missing_value(void **state)
{
    (void)state;
    cli_args a;
    assert_int_equal(parse(&a, "exec", "-p", NULL), -1);
    assert_string_equal(last_err, "exec: -p needs a value (try: sbx exec --help)");
    assert_int_equal(parse(&a, "ls", "-p", "p", "--depth", NULL), -1);
    assert_string_equal(last_err, "ls: --depth needs a value (try: sbx ls --help)");
    assert_int_equal(parse(&a, "--executor", NULL), -1);
    assert_string_equal(last_err, "--executor needs a value (try: sbx --help)");
    assert_int_equal(parse(&a, "health", "--deadline", NULL), -1);
    assert_string_equal(last_err, "health: --deadline needs a value (try: sbx health --help)");
    /* a bad value names the option, what it wants and what it got */
    assert_int_equal(parse(&a, "ls", "-p", "p", "--depth", "99", NULL), -1);
    assert_string_equal(last_err, "ls: --depth: want 1..32 (got \"99\")");
    assert_int_equal(parse(&a, "--deadline", "soon", "health", NULL), -1);
    assert_string_equal(last_err, "--deadline: want a positive number of seconds (got \"soon\")");
    /* the value of an option may look like an option */
    assert_int_equal(parse(&a, "history", "add", "-p", "p", "--stdout", "-x", "--", "true", NULL),
                     0);
    assert_string_equal(a.out_text, "-x");
    assert_int_equal(parse(&a, "exec", "-p", "p", "--tag=", "ls", NULL), 0);
    assert_string_equal(a.tag, "");
}

/* `sbx COMMAND --help` parses to CMD_HELP with that command, wherever --help stands before
 * a trailing command; `sbx --help` and `sbx help` to the list. */
static void test_help_per_command(void **state)
{
    (void)state;
    cli_args a;
    for (size_t i = 0; i < cli_n_commands; i++) {
        const char *name = cli_commands[i]->name;
        assert_int_equal(parse(&a, name, "--help", NULL), 0);
        assert_int_equal(a.cmd, CMD_HELP);
        assert_ptr_equal(a.help_topic, cli_commands[i]);
        assert_int_equal(parse(&a, name, "-h", NULL), 0);
        assert_ptr_equal(a.help_topic, cli_commands[i]);
        assert_int_equal(parse(&a, "help", name, NULL), 0);
        assert_ptr_equal(a.help_topic, cli_commands[i]);
        /* the usage names the command and lists each of its options */
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        cli_command_usage(cli_commands[i], f);
        fclose(f);
        char want[64];
        snprintf(want, sizeof want, "usage: sbx %s", name);
        assert_memory_equal(out, want, strlen(want));
        for (const cli_opt *o = cli_commands[i]->opts; o->name; o++) {
            snprintf(want, sizeof want, "--%s", o->name);
            assert_non_null(strstr(out, want));
        }
        free(out);
    }
    assert_int_equal(parse(&a, "kv", "get", "k", "--help", NULL), 0);
    assert_ptr_equal(a.help_topic, &cli_cmd_kv);
    assert_int_equal(parse(&a, "exec", "-p", "p", "--help", "ls", NULL), 0);
    assert_ptr_equal(a.help_topic, &cli_cmd_exec);
    /* after the command starts, --help is the command's */
    assert_int_equal(parse(&a, "exec", "-p", "p", "ls", "--help", NULL), 0);
    assert_int_equal(a.cmd, CMD_EXEC);
    assert_string_equal(a.argv[1], "--help");
    assert_int_equal(parse(&a, "--json", "--help", NULL), 0);
    assert_int_equal(a.cmd, CMD_HELP);
    assert_null(a.help_topic);
    assert_int_equal(parse(&a, "help", NULL), 0);
    assert_null(a.help_topic);
    assert_int_equal(parse(&a, "help", "frob", NULL), -1);
    assert_int_equal(parse(&a, "--version", NULL), 0);
    assert_int_equal(a.cmd, CMD_VERSION);
    /* the list names every command */
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    cli_usage(f);
    fclose(f);
    for (size_t i = 0; i < cli_n_commands; i++) {
        char want[32];
        snprintf(want, sizeof want, "\n  %s ", cli_commands[i]->name);
        assert_non_null(strstr(out, want));
    }
    free(out);
}

/* Where CLI.md allows it, options may follow the positionals. */
static void test_options_after_positionals(void **state)
{
    (void)state;
    cli_args a;
    assert_int_equal(parse(&a, "kv", "set", "k", "v", "--ttl", "5", NULL), 0);
    assert_int_equal(a.ttl_s, 5);
    assert_int_equal(parse(&a, "ls", "dir", "-p", "p", "-l", NULL), 0);
    assert_string_equal(a.path, "dir");
    assert_string_equal(a.project, "p");
    assert_int_equal(parse(&a, "rm", "-p", "p", "d", "-rf", NULL), 0); /* clustered flags */
    assert_true(a.recursive && a.force);
    assert_int_equal(parse(&a, "sh", "echo hi", "-p", "p", "--timeout-ms", "5", NULL), 0);
    assert_string_equal(a.shell, "echo hi");
    assert_int_equal(a.timeout_ms, 5);
    assert_int_equal(parse(&a, "project", "set", "k=v", "-p", "p", "--expect-version", "1", NULL),
                     0);
    assert_int_equal(a.n_set, 1);
    assert_true(a.has_expect);
    assert_int_equal(parse(&a, "sandbox", "timeout", "60", "-p", "p", NULL), 0);
    assert_int_equal(a.seconds, 60);
    /* a negative number is a positional, not an option */
    assert_int_equal(parse(&a, "kv", "incr", "n", "-5", "--json", NULL), 0);
    assert_int_equal(a.delta, -5);
    assert_true(a.json);
    /* "-" is a positional */
    assert_int_equal(parse(&a, "write", "-p", "p", "f", "-", NULL), 0);
    assert_string_equal(a.path2, "-");
    /* but in exec, serve, cache and history add the first positional starts the command */
    assert_int_equal(parse(&a, "exec", "-p", "p", "ls", "-p", "q", NULL), 0);
    assert_string_equal(a.project, "p");
    assert_int_equal(a.argc, 3);
    assert_string_equal(a.argv[1], "-p");
    assert_int_equal(parse(&a, "serve", "-p", "p", "--port", "80", "py", "--port", "81", NULL), 0);
    assert_int_equal(a.port, 80);
    assert_int_equal(a.argc, 3);
    assert_int_equal(parse(&a, "cache", "get", "-p", "p", "make", "-j4", NULL), 0);
    assert_int_equal(a.argc, 2);
}

/* "--" ends the options: what follows is the command to run, or positionals. */
static void test_double_dash(void **state)
{
    (void)state;
    cli_args a;
    assert_int_equal(parse(&a, "exec", "-p", "p", "--", "--json", "-p", NULL), 0);
    assert_false(a.json);
    assert_int_equal(a.argc, 2);
    assert_string_equal(a.argv[0], "--json");
    assert_int_equal(parse(&a, "exec", "-p", "p", "--", "--", NULL), 0);
    assert_int_equal(a.argc, 1);
    assert_string_equal(a.argv[0], "--");
    assert_int_equal(parse(&a, "exec", "-p", "p", "--", NULL), -1); /* nothing to run */
    assert_int_equal(parse(&a, "sh", "-p", "p", "--", "-c", NULL), 0);
    assert_string_equal(a.shell, "-c");
    assert_int_equal(parse(&a, "serve", "-p", "p", "--port", "8000", "--", "--port", NULL), 0);
    assert_int_equal(a.argc, 1);
    assert_string_equal(a.argv[0], "--port");
    assert_int_equal(parse(&a, "cache", "clear", "-p", "p", "--", "-x", NULL), 0);
    assert_int_equal(a.argc, 1);
    assert_string_equal(a.argv[0], "-x");
    assert_int_equal(parse(&a, "kv", "set", "--", "-k", "-v", NULL), 0);
    assert_string_equal(a.key, "-k");
    assert_string_equal(a.value, "-v");
    assert_int_equal(parse(&a, "rm", "-p", "p", "--", "-r", NULL), 0);
    assert_string_equal(a.path, "-r");
    assert_false(a.recursive);
    assert_int_equal(parse(&a, "history", "add", "-p", "p", "--", "echo", "--limit", NULL), 0);
    assert_int_equal(a.argc, 2);
    assert_int_equal(a.limit, 0);
    assert_int_equal(parse(&a, "history", "-p", "p", "--", "x", NULL), -1);
}

/* A parse after a failed one (a half-read "-rz") starts clean: getopt_long's state is reset. */
static void test_parses_are_independent(void **state)
{
    (void)state;
    cli_args a;
    assert_int_equal(parse(&a, "rm", "-p", "p", "-rz", "d", NULL), -1);
    assert_string_equal(last_err, "rm: unknown option -z (try: sbx rm --help)");
    assert_int_equal(parse(&a, "rm", "-p", "p", "d", NULL), 0);
    assert_false(a.recursive);
    assert_string_equal(a.path, "d");
    assert_int_equal(parse(&a, "ls", "-lx", NULL), -1);
    assert_int_equal(parse(&a, "health", NULL), 0);
}

/* Each command's table: unique long names and letters (with the global options and -h), the
 * synopsis starts with the command, every entry has its text. */
static void test_tables(void **state)
{
    (void)state;
    for (size_t i = 0; i < cli_n_commands; i++) {
        const cli_command *c = cli_commands[i];
        assert_ptr_equal(cli_find_command(c->name), c);
        assert_non_null(c->brief);
        assert_non_null(c->summary);
        assert_non_null(c->finish);
        assert_non_null(c->run);
        char want[32];
        snprintf(want, sizeof want, "sbx %s", c->name);
        assert_memory_equal(c->synopsis, want, strlen(want));
        const cli_opt *all[128];
        size_t n = 0;
        for (const cli_opt *o = c->opts; o->name; o++)
            all[n++] = o;
        for (const cli_opt *o = cli_global_opts; o->name; o++)
            all[n++] = o;
        for (size_t j = 0; j < n; j++) {
            assert_non_null(all[j]->help);
            assert_true(all[j]->shrt != 'h' && strcmp(all[j]->name, "help") != 0);
            assert_true(all[j]->kind == CLI_FLAG || all[j]->kind == CLI_UNFLAG || all[j]->arg);
            if (all[j]->kind != CLI_FLAG && all[j]->kind != CLI_UNFLAG && all[j]->kind != CLI_STR &&
                all[j]->kind != CLI_CALL)
                assert_non_null(all[j]->want);
            for (size_t k = j + 1; k < n; k++) {
                assert_string_not_equal(all[j]->name, all[k]->name);
                assert_true(!all[j]->shrt || all[j]->shrt != all[k]->shrt);
            }
        }
    }
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_globals),
    cmocka_unit_test(test_env_defaults),
    cmocka_unit_test(test_exec),
    cmocka_unit_test(test_sh),
    cmocka_unit_test(test_files),
    cmocka_unit_test(test_setup_serve),
    cmocka_unit_test(test_procs),
    cmocka_unit_test(test_term_watch),
    cmocka_unit_test(test_sandbox),
    cmocka_unit_test(test_history),
    cmocka_unit_test(test_project),
    cmocka_unit_test(test_cache),
    cmocka_unit_test(test_kv),
    cmocka_unit_test(test_health_keygen_demo),
    cmocka_unit_test(test_signal_names),
    cmocka_unit_test(test_unknown_option),
    cmocka_unit_test(test_missing_value),
    cmocka_unit_test(test_help_per_command),
    cmocka_unit_test(test_options_after_positionals),
    cmocka_unit_test(test_double_dash),
    cmocka_unit_test(test_parses_are_independent),
    cmocka_unit_test(test_tables),
};
SBX_TEST_MAIN(tests)
