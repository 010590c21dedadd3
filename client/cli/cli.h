/* cli.h: the parts of the `sbx` command-line tool (built only on the public libsbx API).
 * Parsing is separate from running: cli_parse() turns argv into a cli_args without any I/O, so
 * unit tests can check every command's flags; cli_run() executes a parsed command.
 * Each command is a cli_command in its cmd_*.c file: its option table, positional checks, usage
 * text and run function. args.c drives getopt_long over those tables (and the global options),
 * help.c prints usage from them. Single-threaded: getopt_long keeps its state in globals. */
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
    CMD_TERM,
    CMD_WATCH,
} cli_cmd;

#define CLI_MAX_LIST 256

typedef struct cli_command cli_command;

typedef struct cli_args {
    /* global */
    const char *executor, *store, *api_key;
    const char *tls_ca, *tls_cert, *tls_key, *tls_server_name;
    bool json;
    int64_t deadline_ms; /* 0 = unset */
    bool deadline_set;

    cli_cmd cmd;
    const cli_command *command;    /* the parsed command (NULL before a command word) */
    const cli_command *help_topic; /* CMD_HELP: the command to describe, NULL = all */
    const char *cmd_name;          /* "kv", "exec", ... */
    const char *sub;               /* subcommand: "get", "set", ... ("" if none) */
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
    bool pty; /* exec --pty */

    /* files */
    const char *path, *path2; /* PATH; mv DST / write LOCAL_FILE */
    int depth;
    int64_t coalesce_ms; /* watch */
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
    const char *allow_out[CLI_MAX_LIST]; /* sandbox create / net */
    size_t n_allow_out;
    const char *deny_out[CLI_MAX_LIST];
    size_t n_deny_out;
    bool net_none;

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

/* ---- options: one table per command (args.c drives them through getopt_long) */
typedef enum {
    CLI_FLAG,   /* bool field := true */
    CLI_UNFLAG, /* bool field := false */
    CLI_STR,    /* const char * field := the value (points into argv) */
    CLI_I64,    /* int64_t field := an integer in [min, max] */
    CLI_INT,    /* int field := an integer in [min, max] */
    CLI_U32,    /* uint32_t field := an integer in [min, max] */
    CLI_U64,    /* uint64_t field := any non-negative integer */
    CLI_CALL,   /* set(a, value) */
} cli_opt_kind;

/* What a CLI_CALL option takes: nothing, a value, or a value only as --name=VALUE. */
typedef enum { CLI_NOVAL, CLI_VAL, CLI_OPTVAL } cli_opt_val;

/* A CLI_CALL option's setter: NULL when v was taken, else what was wanted ("want KEY=VALUE"). */
typedef const char *(*cli_setter)(cli_args *a, const char *v);

typedef struct cli_opt {
    const char *name; /* long name, without "--" */
    char shrt;        /* short letter, 0 = none */
    cli_opt_kind kind;
    size_t off; /* the field in cli_args */
    int64_t min, max;
    cli_setter set;
    cli_opt_val val;  /* CLI_CALL only */
    const char *want; /* numeric kinds: the error text when the value is out of range */
    const char *arg;  /* the value's name in --help ("N"); NULL for flags */
    const char *help; /* one line */
} cli_opt;

/* offsetof(cli_args, field), refusing to compile unless the field has that type. */
#define CLI_FIELD(field, type) _Generic(((cli_args *)0)->field, type : offsetof(cli_args, field))

#define CLI_OPT_FLAG(name_, shrt_, field, help_)                                                   \
    {                                                                                              \
        .name = name_, .shrt = shrt_, .kind = CLI_FLAG, .off = CLI_FIELD(field, bool),             \
        .help = help_                                                                              \
    }
#define CLI_OPT_UNFLAG(name_, shrt_, field, help_)                                                 \
    {                                                                                              \
        .name = name_, .shrt = shrt_, .kind = CLI_UNFLAG, .off = CLI_FIELD(field, bool),           \
        .help = help_                                                                              \
    }
#define CLI_OPT_STR(name_, shrt_, field, arg_, help_)                                              \
    {                                                                                              \
        .name = name_, .shrt = shrt_, .kind = CLI_STR, .off = CLI_FIELD(field, const char *),      \
        .arg = arg_, .help = help_                                                                 \
    }
#define CLI_OPT_NUM_(kind_, type, name_, shrt_, field, lo, hi, arg_, want_, help_)                 \
    {                                                                                              \
        .name = name_, .shrt = shrt_, .kind = kind_, .off = CLI_FIELD(field, type), .min = lo,     \
        .max = hi, .want = want_, .arg = arg_, .help = help_                                       \
    }
#define CLI_OPT_I64(...) CLI_OPT_NUM_(CLI_I64, int64_t, __VA_ARGS__)
#define CLI_OPT_INT(...) CLI_OPT_NUM_(CLI_INT, int, __VA_ARGS__)
#define CLI_OPT_U32(...) CLI_OPT_NUM_(CLI_U32, uint32_t, __VA_ARGS__)
#define CLI_OPT_U64(name_, shrt_, field, arg_, want_, help_)                                       \
    CLI_OPT_NUM_(CLI_U64, uint64_t, name_, shrt_, field, 0, 0, arg_, want_, help_)
#define CLI_OPT_CALL(name_, shrt_, val_, set_, arg_, help_)                                        \
    {                                                                                              \
        .name = name_, .shrt = shrt_, .kind = CLI_CALL, .set = set_, .val = val_, .arg = arg_,     \
        .help = help_                                                                              \
    }
#define CLI_OPT_END                                                                                \
    {                                                                                              \
        .name = NULL                                                                               \
    }

/* Options several commands share (the setters are in args.c). */
const char *cli_set_project(cli_args *a, const char *v);
const char *cli_set_env(cli_args *a, const char *v);
const char *cli_set_expect_version(cli_args *a, const char *v);
#define CLI_OPT_PROJECT CLI_OPT_CALL("project", 'p', CLI_VAL, cli_set_project, "PROJ", "project id")
#define CLI_OPT_ENV(help_) CLI_OPT_CALL("env", 'e', CLI_VAL, cli_set_env, "K=V", help_)
#define CLI_OPT_CWD(help_) CLI_OPT_STR("cwd", 0, cwd, "DIR", help_)
#define CLI_OPT_TAG(help_) CLI_OPT_STR("tag", 0, tag, "T", help_)
#define CLI_OPT_LIMIT(help_)                                                                       \
    CLI_OPT_I64("limit", 'n', limit, 1, 1000000, "N", "want 1..1000000", help_)
#define CLI_OPT_TIMEOUT_MS(help_)                                                                  \
    CLI_OPT_I64("timeout-ms", 0, timeout_ms, 0, 86400000, "MS", "want milliseconds 0..86400000",   \
                help_)
#define CLI_OPT_EXPECT_VERSION(help_)                                                              \
    CLI_OPT_CALL("expect-version", 0, CLI_VAL, cli_set_expect_version, "N", help_)

/* ---- commands */
/* Where a usage error is reported: "sbx: <where>: <what>". */
typedef struct cli_err {
    char *buf;
    size_t len;
    const char *where; /* "kv get"; NULL before the command word */
} cli_err;

struct cli_command {
    const char *name;
    cli_cmd cmd;
    const char *subs;     /* "get|set|...": a subcommand must follow; "?add": optional; or NULL */
    bool trailing;        /* the first positional (or all after "--") is a command: a->argv */
    bool offline;         /* runs without a client (c is NULL) */
    const char *synopsis; /* usage lines, '\n'-separated, each "sbx NAME ..." */
    const char *brief;    /* one line for the list of `sbx --help` */
    const char *summary;  /* what it does, for `sbx COMMAND --help` */
    const cli_opt *opts;  /* ends with CLI_OPT_END; the global options are added to it */
    /* Checks and stores the positionals; 0, or -1 after cli_bad(). */
    int (*finish)(cli_args *a, char **pos, size_t np, cli_err *e);
    int (*run)(cli_args *a, sbx_client *c);
};

/* Every command in the order of `sbx --help` (args.c). */
extern const cli_command *const cli_commands[];
extern const size_t cli_n_commands;
/* The global options (--executor, --store, ...), accepted before and after the command. */
extern const cli_opt cli_global_opts[];
const cli_command *cli_find_command(const char *name);

extern const cli_command cli_cmd_exec, cli_cmd_sh, cli_cmd_write, cli_cmd_read, cli_cmd_ls,
    cli_cmd_stat, cli_cmd_mkdir, cli_cmd_rm, cli_cmd_mv, cli_cmd_setup, cli_cmd_serve, cli_cmd_ps,
    cli_cmd_kill, cli_cmd_attach, cli_cmd_sandbox, cli_cmd_history, cli_cmd_project, cli_cmd_cache,
    cli_cmd_kv, cli_cmd_health, cli_cmd_keygen, cli_cmd_demo, cli_cmd_help, cli_cmd_version,
    cli_cmd_term, cli_cmd_watch;

/* Formats "<where>: <fmt>" into e; returns -1. */
int cli_bad(cli_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* -1 (after cli_bad) unless -p was given. */
int cli_need_project(const cli_args *a, cli_err *e);
/* -1 (after cli_bad, naming usage) unless min <= np <= max. */
int cli_npos(cli_err *e, size_t np, size_t min, size_t max, const char *usage);
/* A finish for commands that take no positionals and no -p. */
int cli_no_positionals(cli_args *a, char **pos, size_t np, cli_err *e);

/* Decimal integer in [min, max]; 0, or -1 for anything else. */
int cli_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);
/* Decimal seconds ("1.5") as milliseconds; 0, or -1. */
int cli_parse_seconds_ms(const char *s, int64_t *ms);
/* Parses a signal number or name ("9", "KILL", "SIGKILL"); -1 if neither. */
int cli_parse_signal(const char *s);

/* Sets the defaults and applies SBX_EXECUTOR / SBX_STORE / SBX_API_KEY through get (getenv in
 * main; a fake in tests). */
void cli_defaults(cli_args *a, const char *(*get)(const char *name));
/* Parses argv[1..]. Returns 0, or -1 with a one-line reason in err (a usage error: exit 2).
 * Strings in *a point into argv. */
int cli_parse(int argc, char **argv, cli_args *a, char *err, size_t errlen);
/* Runs a parsed command; returns the process exit status. */
int cli_run(cli_args *a);
/* `sbx --help`: the global options and every command (help.c). */
void cli_usage(FILE *out);
/* `sbx COMMAND --help`: its synopsis, what it does, its options (help.c). */
void cli_command_usage(const cli_command *c, FILE *out);

/* ---- output helpers (out.c) */
/* Exit status for an error: 0 for NULL, 69 for UNAVAILABLE, 1 otherwise. */
int cli_exit_code(const sbx_error *e);
/* Prints "sbx: <what>: <STATUS_NAME>: <message>" to stderr, frees e, returns cli_exit_code. */
int cli_fail(const char *what, sbx_error *e);
/* Prints "sbx: <message>" and returns 2. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Exit status of a finished command: its code, 128+N for signal N, 124 after its timeout. */
int cli_command_status(const sbx_exec_result *r);
/* Writes all n bytes to fd, retrying on EINTR; 0, or -1 with errno (EPIPE: the reader left). */
int cli_write_all(int fd, const void *d, size_t n);
/* Writes one item of a list (a JSON value, or a text line with its newline). */
typedef void (*cli_item_fn)(FILE *f, const void *item);
/* Prints items[0..n) (size bytes apart) on stdout: with --json one array of json(item), else
 * text(item) for each. */
void cli_print_items(const cli_args *a, const void *items, size_t n, size_t size, cli_item_fn json,
                     cli_item_fn text);
/* An sbx_output_fn that copies stdout/stderr of a remote process to ours. */
int cli_copy_output(sbx_stream_id s, const void *d, size_t n, uint64_t off, void *ud);

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

/* Blocks SIGINT/SIGTERM/SIGHUP in the calling thread; call in main() before any thread starts
 * when running exec/sh, whose signal thread then forwards them into the sandbox (cmd_exec.c). */
void cli_block_signals(void);
/* The same for `sbx term`, whose signal thread takes SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH,
 * SIGTSTP (and SIGUSR2 to stop) (cmd_term.c). */
void cli_term_block_signals(void);
/* Our terminal's size (stdout's, else stdin's; 80x24 when neither is a terminal), at most
 * 1000x1000. */
void cli_local_size(uint32_t *cols, uint32_t *rows);

#endif
