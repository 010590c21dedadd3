/* args.c: the command line of `sbx` turned into a cli_args, without any I/O. The global options
 * come first (and are accepted after the command too), then the command word, its subcommand,
 * and the command's own options and positionals. One getopt_long loop serves every command's
 * option table (in its cmd_*.c file), so an unknown option, a missing value and --help read the
 * same everywhere. Rules kept from the contract (CLI.md):
 *   - options may follow positionals, except in a command that runs a command (exec, serve,
 *     cache, history add): there the first positional starts that command's argv;
 *   - "--" ends the options: what follows is positionals, or the command to run;
 *   - a word like "-5" is a positional (kv incr KEY -5), "-" too;
 *   - long names are taken whole (no abbreviations: a new option cannot make a script's
 *     abbreviation ambiguous).
 * getopt_long keeps its state in globals (glibc): one parse at a time. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

const cli_command *const cli_commands[] = {
    &cli_cmd_exec,    &cli_cmd_sh,      &cli_cmd_term,    &cli_cmd_watch,   &cli_cmd_write,
    &cli_cmd_read,    &cli_cmd_ls,      &cli_cmd_stat,    &cli_cmd_mkdir,   &cli_cmd_rm,
    &cli_cmd_mv,      &cli_cmd_setup,   &cli_cmd_serve,   &cli_cmd_ps,      &cli_cmd_kill,
    &cli_cmd_attach,  &cli_cmd_sandbox, &cli_cmd_history, &cli_cmd_project, &cli_cmd_cache,
    &cli_cmd_kv,      &cli_cmd_health,  &cli_cmd_keygen,  &cli_cmd_demo,    &cli_cmd_help,
    &cli_cmd_version,
};
const size_t cli_n_commands = sizeof cli_commands / sizeof cli_commands[0];

static const char *set_deadline(cli_args *a, const char *v)
{
    int64_t ms;
    if (cli_parse_seconds_ms(v, &ms) != 0 || ms <= 0)
        return "want a positive number of seconds";
    a->deadline_ms = ms;
    a->deadline_set = true;
    return NULL;
}

const cli_opt cli_global_opts[] = {
    CLI_OPT_STR("executor", 0, executor, "ADDR[,ADDR...]",
                "sbx-executor address(es) (SBX_EXECUTOR; default 127.0.0.1:50051)"),
    CLI_OPT_STR("store", 0, store, "ADDR[,ADDR...]",
                "sbx-store address(es) (SBX_STORE; default 127.0.0.1:50052)"),
    CLI_OPT_STR("api-key", 0, api_key, "KEY", "API key sent as a bearer token (SBX_API_KEY)"),
    CLI_OPT_FLAG("json", 0, json, "print one JSON document on stdout"),
    CLI_OPT_CALL("deadline", 0, CLI_VAL, set_deadline, "SECONDS", "deadline of each call"),
    CLI_OPT_STR("tls-ca", 0, tls_ca, "PEM", "TLS: trust these CA certificates"),
    CLI_OPT_STR("tls-cert", 0, tls_cert, "PEM", "TLS: client certificate (with --tls-key)"),
    CLI_OPT_STR("tls-key", 0, tls_key, "PEM", "TLS: client private key"),
    CLI_OPT_STR("tls-server-name", 0, tls_server_name, "NAME", "TLS: expected server name"),
    CLI_OPT_END,
};

/* ---- value parsers */
int cli_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (!s || !*s)
        return -1;
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-')
        return -1;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

int cli_parse_seconds_ms(const char *s, int64_t *ms)
{
    if (!s || !*s)
        return -1;
    errno = 0;
    char *end = NULL;
    double v = strtod(s, &end);
    if (errno || *end || !(v >= 0) || v > 1e9)
        return -1;
    *ms = (int64_t)(v * 1000.0 + 0.5);
    return 0;
}

/* ---- shared setters and checks */
const char *cli_set_project(cli_args *a, const char *v)
{
    if (!*v)
        return "want a project id";
    a->project = v;
    return NULL;
}

const char *cli_set_env(cli_args *a, const char *v)
{
    if (!strchr(v, '=') || *v == '=')
        return "want KEY=VALUE";
    if (a->n_env >= CLI_MAX_LIST)
        return "too many";
    a->env[a->n_env++] = v;
    return NULL;
}

const char *cli_set_expect_version(cli_args *a, const char *v)
{
    if (parse_u64(v, &a->expect_version) != 0)
        return "want a version number";
    a->has_expect = true;
    return NULL;
}

int cli_bad(cli_err *e, const char *fmt, ...)
{
    int n = e->where ? snprintf(e->buf, e->len, "%s: ", e->where) : 0;
    if (n < 0 || (size_t)n >= e->len)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->buf + n, e->len - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

int cli_need_project(const cli_args *a, cli_err *e)
{
    return a->project ? 0 : cli_bad(e, "missing -p PROJECT");
}

int cli_npos(cli_err *e, size_t np, size_t min, size_t max, const char *usage)
{
    if (np < min)
        return cli_bad(e, "missing arguments (usage: %s)", usage);
    if (np > max)
        return cli_bad(e, "too many arguments (usage: %s)", usage);
    return 0;
}

int cli_no_positionals(cli_args *a, char **pos, size_t np, cli_err *e)
{
    (void)pos;
    return cli_npos(e, np, 0, 0, a->command->synopsis);
}

void cli_defaults(cli_args *a, const char *(*get)(const char *name))
{
    memset(a, 0, sizeof *a);
    a->sub = "";
    a->parents = true;
    a->replace = true;
    a->ready_path = "/";
    a->executor = get ? get("SBX_EXECUTOR") : NULL;
    a->store = get ? get("SBX_STORE") : NULL;
    a->api_key = get ? get("SBX_API_KEY") : NULL;
    if (!a->executor || !*a->executor)
        a->executor = "127.0.0.1:50051";
    if (!a->store || !*a->store)
        a->store = "127.0.0.1:50052";
    if (a->api_key && !*a->api_key)
        a->api_key = NULL;
}

const cli_command *cli_find_command(const char *name)
{
    for (size_t i = 0; i < cli_n_commands; i++)
        if (strcmp(cli_commands[i]->name, name) == 0)
            return cli_commands[i];
    return NULL;
}

/* ---- the getopt_long tables of one scan: the command's options, the global ones, --help
 * (and --version before the command) */
enum { VAL_OPT = 256, VAL_HELP = 1000, VAL_VERSION = 1001 };
#define MAX_OPTS 64

typedef struct optset {
    struct option lo[MAX_OPTS + 3];
    const cli_opt *opt[MAX_OPTS];
    size_t n;
    char shorts[3 * MAX_OPTS + 8];
    size_t ns;
} optset;

static int has_arg(const cli_opt *o)
{
    switch (o->kind) {
    case CLI_FLAG:
    case CLI_UNFLAG:
        return no_argument;
    case CLI_CALL:
        return o->val == CLI_NOVAL ? no_argument
               : o->val == CLI_VAL ? required_argument
                                   : optional_argument;
    default:
        return required_argument;
    }
}

static void optset_add(optset *s, const cli_opt *tab)
{
    for (const cli_opt *o = tab; o && o->name && s->n < MAX_OPTS; o++) {
        int ha = has_arg(o);
        s->lo[s->n] = (struct option){o->name, ha, NULL, VAL_OPT + (int)s->n};
        s->opt[s->n++] = o;
        if (o->shrt) {
            s->shorts[s->ns++] = o->shrt;
            if (ha == required_argument)
                s->shorts[s->ns++] = ':';
        }
    }
}

/* "+": stop at the first non-option (we look at every word before getopt does anyway);
 * ":": a missing value is reported as ':' rather than printed. */
static void optset_build(optset *s, const cli_opt *cmd_opts, bool global_phase)
{
    memset(s, 0, sizeof *s);
    memcpy(s->shorts, "+:h", 3);
    s->ns = 3;
    optset_add(s, cmd_opts);
    optset_add(s, cli_global_opts);
    size_t n = s->n;
    s->lo[n++] = (struct option){"help", no_argument, NULL, VAL_HELP};
    if (global_phase)
        s->lo[n++] = (struct option){"version", no_argument, NULL, VAL_VERSION};
    s->lo[n] = (struct option){0};
}

/* ---- one scan over the words of a command (argv[0] is the command's own word) */
typedef struct scan {
    cli_args *a;
    cli_err *err;
    const cli_command *cmd; /* NULL: the global options before the command word */
    char **pos;             /* positionals, in order */
    size_t np;
    int rest;      /* index of the first word not scanned: the command to run, or after "--" */
    bool dashdash; /* the scan ended at "--" */
} scan;

/* A word getopt should see: "-x...", "--x...", but not "-", "--" or a negative number. */
static bool is_option_word(const char *w)
{
    if (w[0] != '-' || w[1] == 0)
        return false;
    if (w[1] != '-' && w[1] >= '0' && w[1] <= '9')
        return false;
    return w[1] != '-' || w[2] != 0;
}

/* getopt_long starts over only when optind is 0; this forgets any half-read cluster of short
 * options a previous (failed) parse left behind. */
static void getopt_reset(void)
{
    static char *none[] = {(char *)"sbx", NULL};
    static const struct option no_long[] = {{0}};
    optind = 0;
    opterr = 0;
    (void)getopt_long(1, none, "+", no_long, NULL);
    optind = 1;
}

/* "(try: sbx kv --help)": the usage hint after an option error. */
static void hint(const scan *s, char *buf, size_t len)
{
    snprintf(buf, len, "(try: sbx %s%s--help)", s->cmd ? s->cmd->name : "", s->cmd ? " " : "");
}

/* The error for getopt's '?' (unknown option, value given to a flag) or ':' (value missing). */
static int option_error(scan *s, const optset *os, int c, const char *word)
{
    char h[64];
    hint(s, h, sizeof h);
    if (word[1] != '-') {
        if (c == ':')
            return cli_bad(s->err, "-%c needs a value %s", optopt, h);
        return cli_bad(s->err, "unknown option -%c %s", optopt, h);
    }
    const char *name = word + 2;
    size_t len = strcspn(name, "=");
    if (c == ':')
        return cli_bad(s->err, "--%.*s needs a value %s", (int)len, name, h);
    for (size_t i = 0; i < os->n; i++)
        if (strlen(os->lo[i].name) == len && strncmp(os->lo[i].name, name, len) == 0 &&
            name[len] == '=')
            return cli_bad(s->err, "--%.*s takes no value %s", (int)len, name, h);
    return cli_bad(s->err, "unknown option --%.*s %s", (int)len, name, h);
}

static int apply(cli_args *a, const cli_opt *o, const char *v, cli_err *e)
{
    char *field = (char *)a + o->off;
    const char *want = o->want;
    int64_t n;
    switch (o->kind) {
    case CLI_FLAG:
        *(bool *)field = true;
        return 0;
    case CLI_UNFLAG:
        *(bool *)field = false;
        return 0;
    case CLI_STR:
        *(const char **)field = v;
        return 0;
    case CLI_CALL:
        want = o->set(a, v);
        if (!want)
            return 0;
        break;
    case CLI_U64:
        if (parse_u64(v, (uint64_t *)field) == 0)
            return 0;
        break;
    default:
        if (cli_parse_i64(v, o->min, o->max, &n) != 0)
            break;
        if (o->kind == CLI_I64)
            *(int64_t *)field = n;
        else if (o->kind == CLI_INT)
            *(int *)field = (int)n;
        else
            *(uint32_t *)field = (uint32_t)n;
        return 0;
    }
    return cli_bad(e, "--%s: %s (got \"%s\")", o->name, want, v ? v : "");
}

/* Takes what getopt_long returned for word. Returns 0 to go on, 1 when --help or --version
 * ends the parse, -1 on an error. */
static int take(scan *s, const optset *os, int c, int li, const char *word)
{
    if (c == '?' || c == ':')
        return option_error(s, os, c, word);
    if (li >= 0 && word[1] == '-') { /* a long name must be given whole */
        size_t len = strcspn(word + 2, "=");
        if (strlen(os->lo[li].name) != len)
            return option_error(s, os, '?', word);
    }
    if (c == VAL_HELP || c == 'h' || c == VAL_VERSION) {
        s->a->cmd = c == VAL_VERSION ? CMD_VERSION : CMD_HELP;
        s->a->help_topic = s->cmd;
        return 1;
    }
    const cli_opt *o = NULL;
    if (c >= VAL_OPT && c < VAL_OPT + (int)os->n)
        o = os->opt[c - VAL_OPT];
    for (size_t i = 0; !o && i < os->n; i++)
        if (os->opt[i]->shrt == c)
            o = os->opt[i];
    if (!o)
        return option_error(s, os, '?', word);
    return apply(s->a, o, optarg, s->err) == 0 ? 0 : -1;
}

/* Scans argv[1..argc): options through getopt_long, positionals into s->pos. Stops at "--",
 * or at the first positional when trailing (a command to run follows). */
static int scan_words(scan *s, int argc, char **argv, bool trailing)
{
    optset os;
    optset_build(&os, s->cmd ? s->cmd->opts : NULL, !s->cmd);
    getopt_reset();
    bool in_cluster = false; /* getopt is inside a word like "-rf" */
    for (;;) {
        int i = optind;
        if (!in_cluster) {
            if (i >= argc) {
                s->rest = argc;
                return 0;
            }
            if (strcmp(argv[i], "--") == 0) {
                s->rest = i + 1;
                s->dashdash = true;
                return 0;
            }
            if (!is_option_word(argv[i])) {
                if (trailing) {
                    s->rest = i;
                    return 0;
                }
                s->pos[s->np++] = argv[i];
                optind = i + 1;
                continue;
            }
        }
        int li = -1;
        int c = getopt_long(argc, argv, os.shorts, os.lo, &li);
        if (c == -1) { /* not reached: we only call it on an option word */
            s->rest = optind;
            return 0;
        }
        in_cluster = optind == i;
        int r = take(s, &os, c, li, argv[i]);
        if (r != 0)
            return r;
    }
}

static bool sub_ok(const char *subs, const char *w)
{
    const char *p = subs[0] == '?' ? subs + 1 : subs;
    size_t n = strlen(w);
    while (*p) {
        size_t l = strcspn(p, "|");
        if (l == n && strncmp(p, w, n) == 0)
            return true;
        if (!p[l])
            break;
        p += l + 1;
    }
    return false;
}

/* The subcommand after the command word, if the command has them. Moves *k onto it. Returns 0,
 * 1 for "COMMAND --help", -1 on an error. */
static int take_sub(cli_args *a, int argc, char **argv, int *k, cli_err *e)
{
    const cli_command *c = a->command;
    const char *w = *k + 1 < argc ? argv[*k + 1] : NULL;
    if (!c->subs)
        return 0;
    if (w && sub_ok(c->subs, w)) {
        a->sub = w;
        ++*k;
        return 0;
    }
    if (c->subs[0] == '?')
        return 0;
    if (w && (strcmp(w, "--help") == 0 || strcmp(w, "-h") == 0)) {
        a->cmd = CMD_HELP;
        a->help_topic = c;
        return 1;
    }
    if (!w)
        return cli_bad(e, "want a subcommand: %s (try: sbx %s --help)", c->subs, c->name);
    return cli_bad(e, "want a subcommand: %s (got \"%s\"; try: sbx %s --help)", c->subs, w,
                   c->name);
}

/* The command's words after its name (and subcommand): options, positionals, the command to
 * run; then its own checks. */
static int parse_command(cli_args *a, int argc, char **argv, cli_err *e)
{
    const cli_command *c = a->command;
    char **pos = calloc((size_t)argc + 1, sizeof *pos);
    if (!pos)
        return cli_bad(e, "out of memory");
    scan s = {.a = a, .err = e, .cmd = c, .pos = pos};
    int rc = scan_words(&s, argc, argv, c->trailing);
    if (rc == 0 && c->trailing) {
        a->argv = argv + s.rest;
        a->argc = (size_t)(argc - s.rest);
    } else if (rc == 0) {
        for (int i = s.rest; i < argc; i++)
            pos[s.np++] = argv[i];
    }
    if (rc == 0)
        rc = c->finish(a, pos, s.np, e);
    free(pos);
    return rc < 0 ? -1 : 0;
}

int cli_parse(int argc, char **argv, cli_args *a, char *err, size_t errlen)
{
    cli_err e = {.buf = err, .len = errlen};
    if (errlen)
        err[0] = 0;
    scan g = {.a = a, .err = &e};
    int r = scan_words(&g, argc, argv, true);
    if (r != 0)
        return r < 0 ? -1 : 0;
    int k = g.rest;
    if (k >= argc)
        return cli_bad(&e, "no command given (try: sbx help)");
    a->command = cli_find_command(argv[k]);
    if (!a->command)
        return cli_bad(&e, "unknown command \"%s\" (try: sbx help)", argv[k]);
    a->cmd = a->command->cmd;
    a->cmd_name = a->command->name;
    e.where = a->cmd_name;
    r = take_sub(a, argc, argv, &k, &e);
    if (r != 0)
        return r < 0 ? -1 : 0;
    char where[64];
    if (*a->sub) {
        snprintf(where, sizeof where, "%s %s", a->cmd_name, a->sub);
        e.where = where;
    }
    return parse_command(a, argc - k, argv + k, &e);
}
