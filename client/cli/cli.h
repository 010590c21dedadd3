/* cli.h: the parts of the `sbx` command-line tool (built only on the public libsbx API).
 * Parsing is separate from running: cli_parse() turns argv into a cli_args without any I/O, so
 * unit tests can check every command's flags; cli_run() executes a parsed command. */
#ifndef SBX_CLI_H
#define SBX_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sbx.h"

/* Exit statuses (CLI.md). */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_REQUEST = 1,     /* a request failed */
    CLI_EXIT_USAGE = 2,       /* bad command line */
    CLI_EXIT_UNAVAILABLE = 69 /* EX_UNAVAILABLE: a service could not be reached */
};

typedef enum {
    CMD_NONE = 0,
    CMD_HELP,
    CMD_VERSION,
    CMD_EXEC,
    CMD_SH,
    CMD_WRITE,
    CMD_READ,
    CMD_LS,
    CMD_STAT,
    CMD_MKDIR,
    CMD_RM,
    CMD_MV,
    CMD_SETUP,
    CMD_SERVE,
    CMD_PS,
    CMD_KILL,
    CMD_ATTACH,
    CMD_SANDBOX,
    CMD_HISTORY,
    CMD_PROJECT,
    CMD_CACHE,
    CMD_KV,
    CMD_HEALTH,
    CMD_KEYGEN,
    CMD_DEMO,
} cli_cmd;

#define CLI_MAX_LIST 256

typedef struct cli_args {
    /* global */
    const char *executor, *store, *api_key;
    const char *tls_ca, *tls_cert, *tls_key, *tls_server_name;
    bool json;
    int64_t deadline_ms; /* 0 = unset */
    bool deadline_set;

    cli_cmd cmd;
    const char *cmd_name; /* "kv", "exec", ... */
    const char *sub;      /* subcommand: "get", "set", ... ("" if none) */
    const char *project;

    /* exec / sh / serve / cache: the command */
    char **argv; /* points into the process argv */
    size_t argc;
    const char *shell;
    const char *cwd;
    const char *env[CLI_MAX_LIST];
    size_t n_env;
    int64_t timeout_ms;
    int64_t max_output_bytes;
    bool cache;
    int64_t cache_ttl_s;
    bool use_stdin;
    bool background;
    const char *tag;

    /* files */
    const char *path, *path2; /* PATH; mv DST / write LOCAL_FILE */
    int depth;
    bool recursive, force, parents, overwrite, append, exclusive, long_format;
    uint32_t mode;

    /* setup / serve */
    const char *local_dir, *to, *install;
    bool replace;
    uint32_t port;
    const char *ready_path;
    int64_t ready_timeout_ms;
    bool keep_on_failure;

    /* processes */
    int pid;
    int signal;
    uint64_t from_offset;
    bool follow;    /* history --follow */
    bool no_follow; /* attach --no-follow */
    bool all;

    /* sandbox */
    int64_t seconds;
    bool wipe_home;

    /* history / lists */
    int64_t limit;
    bool include_output;
    /* history add */
    int exit_code;
    int64_t duration_ms;
    const char *out_text, *err_text, *record_id;

    /* project set */
    const char *set_keys[CLI_MAX_LIST];
    const char *set_values[CLI_MAX_LIST];
    size_t n_set;
    const char *unset[CLI_MAX_LIST];
    size_t n_unset;
    bool has_expect;
    uint64_t expect_version;
    const char *prefix;

    /* kv */
    const char *key, *value;
    int64_t ttl_s;
    int64_t delta;
    bool keys_only;

    /* health / keygen / demo */
    const char *service; /* NULL = both */
    const char *tenant;
    bool keep;
} cli_args;

/* Sets the defaults and applies SBX_EXECUTOR / SBX_STORE / SBX_API_KEY through get (getenv in
 * main; a fake in tests). */
void cli_defaults(cli_args *a, const char *(*get)(const char *name));
/* Parses argv[1..]. Returns 0, or -1 with a one-line reason in err (a usage error: exit 2).
 * Strings in *a point into argv. */
int cli_parse(int argc, char **argv, cli_args *a, char *err, size_t errlen);
/* Runs a parsed command; returns the process exit status. */
int cli_run(cli_args *a);
void cli_usage(FILE *out);

/* ---- output helpers (out.c) */
/* Exit status for an error: 0 for NULL, 69 for UNAVAILABLE, 1 otherwise. */
int cli_exit_code(const sbx_error *e);
/* Prints "sbx: <what>: <STATUS_NAME>: <message>" to stderr, frees e, returns cli_exit_code. */
int cli_fail(const char *what, sbx_error *e);
/* Prints "sbx: <message>" and returns 2. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Exit status of a finished command: its code, 128+N for signal N, 124 after its timeout. */
int cli_command_status(const sbx_exec_result *r);
/* Parses a signal number or name ("9", "KILL", "SIGKILL"); -1 if neither. */
int cli_parse_signal(const char *s);

/* ---- JSON (json.c) */
/* Writes s[0..n) as a JSON string literal. Valid UTF-8 is kept; each byte of an invalid
 * sequence is written as the lone surrogate escape \udcXX (PEP 383 "surrogateescape"), so the
 * original bytes can be recovered and the output is still one parseable JSON document. */
void json_str(FILE *f, const void *s, size_t n);
void json_cstr(FILE *f, const char *s);
/* RFC 3339 UTC time with milliseconds, "2026-01-02T03:04:05.678Z"; ms 0 -> JSON null. */
void json_time(FILE *f, int64_t ms);
/* Formats ms since the epoch as RFC 3339 into out (at least 32 bytes). */
void cli_rfc3339(int64_t ms, char *out, size_t outlen);
/* duration in microseconds as a JSON number of milliseconds ("1.234"). */
void json_duration_ms(FILE *f, int64_t us);

/* ---- commands (one file per group) */
int cmd_exec(cli_args *a, sbx_client *c);
/* Blocks SIGINT/SIGTERM/SIGHUP in the calling thread; call in main() before any thread starts
 * when running exec/sh, whose signal thread then forwards them into the sandbox. */
void cli_block_signals(void);
int cmd_files(cli_args *a, sbx_client *c);
int cmd_setup(cli_args *a, sbx_client *c);
int cmd_serve(cli_args *a, sbx_client *c);
int cmd_procs(cli_args *a, sbx_client *c);
int cmd_sandbox(cli_args *a, sbx_client *c);
int cmd_history(cli_args *a, sbx_client *c);
int cmd_project(cli_args *a, sbx_client *c);
int cmd_cache(cli_args *a, sbx_client *c);
int cmd_kv(cli_args *a, sbx_client *c);
int cmd_health(cli_args *a, sbx_client *c);
int cmd_keygen(cli_args *a);
int cmd_demo(cli_args *a, sbx_client *c);

#endif
