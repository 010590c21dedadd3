/* args.c: the command line of `sbx`: global flags, the command table, each command's flags and
 * positional arguments, turned into a cli_args without any I/O. One table of options; each
 * command lists which it accepts, so an error names the command and the flag. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum {
    O_END = 0,
    /* global */
    G_EXECUTOR, G_STORE, G_API_KEY, G_JSON, G_DEADLINE, G_TLS_CA, G_TLS_CERT, G_TLS_KEY, G_TLS_NAME, G_HELP,
    /* per command */
    O_PROJECT, O_CWD, O_ENV, O_TIMEOUT_MS, O_CACHE, O_STDIN, O_BACKGROUND, O_TAG, O_MAX_OUTPUT, O_DEPTH,
    O_RECURSIVE, O_FORCE, O_PARENTS, O_NO_PARENTS, O_OVERWRITE, O_APPEND, O_EXCLUSIVE, O_MODE, O_LONG, O_TO,
    O_INSTALL, O_NO_REPLACE, O_PORT, O_READY_PATH, O_READY_TIMEOUT, O_KEEP_ON_FAILURE, O_SIGNAL, O_FROM_OFFSET,
    O_NO_FOLLOW, O_FOLLOW, O_ALL, O_WIPE_HOME, O_LIMIT, O_OUTPUT, O_EXIT_CODE, O_DURATION_MS, O_STDOUT,
    O_STDERR, O_RECORD_ID, O_EXPECT_VERSION, O_UNSET, O_PREFIX, O_TTL, O_KEYS_ONLY, O_SERVICE, O_TENANT, O_KEEP,
    O_SHELL, O_CACHE_TTL, O_PID,
};

enum { ARG_NONE = 0, ARG_REQ = 1, ARG_OPT = 2 /* only as --name=VALUE */ };

typedef struct opt {
    const char *name;
    char shrt;
    int arg;
    int id;
} opt;

static const opt OPTS[] = {
    {"executor", 0, ARG_REQ, G_EXECUTOR},
    {"store", 0, ARG_REQ, G_STORE},
    {"api-key", 0, ARG_REQ, G_API_KEY},
    {"json", 0, ARG_NONE, G_JSON},
    {"deadline", 0, ARG_REQ, G_DEADLINE},
    {"tls-ca", 0, ARG_REQ, G_TLS_CA},
    {"tls-cert", 0, ARG_REQ, G_TLS_CERT},
    {"tls-key", 0, ARG_REQ, G_TLS_KEY},
    {"tls-server-name", 0, ARG_REQ, G_TLS_NAME},
    {"help", 'h', ARG_NONE, G_HELP},
    {"project", 'p', ARG_REQ, O_PROJECT},
    {"cwd", 0, ARG_REQ, O_CWD},
    {"env", 'e', ARG_REQ, O_ENV},
    {"timeout-ms", 0, ARG_REQ, O_TIMEOUT_MS},
    {"cache", 0, ARG_OPT, O_CACHE},
    {"stdin", 0, ARG_NONE, O_STDIN},
    {"background", 0, ARG_NONE, O_BACKGROUND},
    {"tag", 0, ARG_REQ, O_TAG},
    {"max-output-bytes", 0, ARG_REQ, O_MAX_OUTPUT},
    {"depth", 0, ARG_REQ, O_DEPTH},
    {"recursive", 'r', ARG_NONE, O_RECURSIVE},
    {"force", 'f', ARG_NONE, O_FORCE},
    {"parents", 0, ARG_NONE, O_PARENTS},
    {"no-parents", 0, ARG_NONE, O_NO_PARENTS},
    {"overwrite", 0, ARG_NONE, O_OVERWRITE},
    {"append", 0, ARG_NONE, O_APPEND},
    {"exclusive", 0, ARG_NONE, O_EXCLUSIVE},
    {"mode", 0, ARG_REQ, O_MODE},
    {"long", 'l', ARG_NONE, O_LONG},
    {"to", 0, ARG_REQ, O_TO},
    {"install", 0, ARG_REQ, O_INSTALL},
    {"no-replace", 0, ARG_NONE, O_NO_REPLACE},
    {"port", 0, ARG_REQ, O_PORT},
    {"ready-path", 0, ARG_REQ, O_READY_PATH},
    {"ready-timeout", 0, ARG_REQ, O_READY_TIMEOUT},
    {"keep-on-failure", 0, ARG_NONE, O_KEEP_ON_FAILURE},
    {"signal", 's', ARG_REQ, O_SIGNAL},
    {"from-offset", 0, ARG_REQ, O_FROM_OFFSET},
    {"no-follow", 0, ARG_NONE, O_NO_FOLLOW},
    {"follow", 0, ARG_NONE, O_FOLLOW},
    {"all", 'a', ARG_NONE, O_ALL},
    {"wipe-home", 0, ARG_NONE, O_WIPE_HOME},
    {"limit", 'n', ARG_REQ, O_LIMIT},
    {"output", 0, ARG_NONE, O_OUTPUT},
    {"exit-code", 0, ARG_REQ, O_EXIT_CODE},
    {"duration-ms", 0, ARG_REQ, O_DURATION_MS},
    {"stdout", 0, ARG_REQ, O_STDOUT},
    {"stderr", 0, ARG_REQ, O_STDERR},
    {"record-id", 0, ARG_REQ, O_RECORD_ID},
    {"expect-version", 0, ARG_REQ, O_EXPECT_VERSION},
    {"unset", 0, ARG_REQ, O_UNSET},
    {"prefix", 0, ARG_REQ, O_PREFIX},
    {"ttl", 0, ARG_REQ, O_TTL},
    {"keys-only", 0, ARG_NONE, O_KEYS_ONLY},
    {"service", 0, ARG_REQ, O_SERVICE},
    {"tenant", 0, ARG_REQ, O_TENANT},
    {"keep", 0, ARG_NONE, O_KEEP},
    {"shell", 0, ARG_REQ, O_SHELL},
    {"cache-ttl", 0, ARG_REQ, O_CACHE_TTL},
    {"pid", 0, ARG_REQ, O_PID},
};

/* How a command takes its positional arguments. */
enum {
    POS_LIST = 0, /* plain positionals, options may follow them */
    POS_COMMAND,  /* the first positional starts a command: everything after is its argv */
};

typedef struct cmd_spec {
    const char *name;
    cli_cmd cmd;
    const char *subs;  /* "get|set|..." or NULL; "?add" = optional subcommand */
    int pos;
    int opts[24];
} cmd_spec;

#define EXEC_OPTS O_PROJECT, O_CWD, O_ENV, O_TIMEOUT_MS, O_CACHE, O_STDIN, O_BACKGROUND, O_TAG, O_MAX_OUTPUT

static const cmd_spec CMDS[] = {
    {"exec", CMD_EXEC, NULL, POS_COMMAND, {EXEC_OPTS}},
    {"sh", CMD_SH, NULL, POS_LIST, {EXEC_OPTS}},
    {"write", CMD_WRITE, NULL, POS_LIST, {O_PROJECT, O_MODE, O_APPEND, O_EXCLUSIVE, O_NO_PARENTS}},
    {"read", CMD_READ, NULL, POS_LIST, {O_PROJECT}},
    {"ls", CMD_LS, NULL, POS_LIST, {O_PROJECT, O_DEPTH, O_LONG, O_LIMIT}},
    {"stat", CMD_STAT, NULL, POS_LIST, {O_PROJECT}},
    {"mkdir", CMD_MKDIR, NULL, POS_LIST, {O_PROJECT, O_PARENTS, O_NO_PARENTS, O_MODE}},
    {"rm", CMD_RM, NULL, POS_LIST, {O_PROJECT, O_RECURSIVE, O_FORCE}},
    {"mv", CMD_MV, NULL, POS_LIST, {O_PROJECT, O_OVERWRITE, O_FORCE}},
    {"setup", CMD_SETUP, NULL, POS_LIST, {O_PROJECT, O_TO, O_INSTALL, O_NO_REPLACE, O_TIMEOUT_MS}},
    {"serve", CMD_SERVE, NULL, POS_COMMAND,
     {O_PROJECT, O_PORT, O_READY_PATH, O_READY_TIMEOUT, O_TAG, O_CWD, O_ENV, O_KEEP_ON_FAILURE}},
    {"ps", CMD_PS, NULL, POS_LIST, {O_PROJECT, O_ALL}},
    {"kill", CMD_KILL, NULL, POS_LIST, {O_PROJECT, O_TAG, O_SIGNAL, O_PID}},
    {"attach", CMD_ATTACH, NULL, POS_LIST, {O_PROJECT, O_TAG, O_FROM_OFFSET, O_NO_FOLLOW, O_PID}},
    {"sandbox", CMD_SANDBOX, "create|get|list|kill|timeout", POS_LIST, {O_PROJECT, O_ALL, O_WIPE_HOME}},
    {"history", CMD_HISTORY, "?add", POS_COMMAND,
     {O_PROJECT, O_LIMIT, O_FOLLOW, O_OUTPUT, O_EXIT_CODE, O_DURATION_MS, O_STDOUT, O_STDERR, O_RECORD_ID,
      O_CACHE_TTL, O_CWD, O_TAG}},
    {"project", CMD_PROJECT, "get|list|delete|set", POS_LIST,
     {O_PROJECT, O_EXPECT_VERSION, O_UNSET, O_PREFIX, O_LIMIT}},
    {"cache", CMD_CACHE, "clear|get", POS_COMMAND, {O_PROJECT, O_CWD, O_ENV, O_SHELL}},
    {"kv", CMD_KV, "set|get|del|incr|list|flush", POS_LIST, {O_TTL, O_EXPECT_VERSION, O_LIMIT, O_KEYS_ONLY}},
    {"health", CMD_HEALTH, NULL, POS_LIST, {O_SERVICE}},
    {"keygen", CMD_KEYGEN, NULL, POS_LIST, {O_TENANT}},
    {"demo", CMD_DEMO, NULL, POS_LIST, {O_KEEP}},
    {"help", CMD_HELP, NULL, POS_LIST, {0}},
    {"version", CMD_VERSION, NULL, POS_LIST, {0}},
};

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
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

/* Seconds as a decimal ("1.5") to ms. */
static int parse_seconds_ms(const char *s, int64_t *ms)
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

int cli_parse_signal(const char *s)
{
    static const struct {
        const char *name;
        int num;
    } sigs[] = {{"HUP", 1},   {"INT", 2},   {"QUIT", 3},  {"ILL", 4},   {"TRAP", 5},  {"ABRT", 6},
                {"BUS", 7},   {"FPE", 8},   {"KILL", 9},  {"USR1", 10}, {"SEGV", 11}, {"USR2", 12},
                {"PIPE", 13}, {"ALRM", 14}, {"TERM", 15}, {"CHLD", 17}, {"CONT", 18}, {"STOP", 19},
                {"TSTP", 20}, {"TTIN", 21}, {"TTOU", 22}, {"URG", 23},  {"XCPU", 24}, {"XFSZ", 25},
                {"VTALRM", 26}, {"PROF", 27}, {"WINCH", 28}, {"IO", 29}, {"PWR", 30}, {"SYS", 31}};
    int64_t n;
    if (parse_i64(s, 1, 64, &n) == 0)
        return (int)n;
    if (!s)
        return -1;
    if (strncasecmp(s, "SIG", 3) == 0)
        s += 3;
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        if (strcasecmp(s, sigs[i].name) == 0)
            return sigs[i].num;
    return -1;
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

static const opt *find_long(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof OPTS / sizeof OPTS[0]; i++)
        if (strlen(OPTS[i].name) == len && strncmp(OPTS[i].name, name, len) == 0)
            return &OPTS[i];
    return NULL;
}

static const opt *find_short(char c)
{
    for (size_t i = 0; i < sizeof OPTS / sizeof OPTS[0]; i++)
        if (OPTS[i].shrt == c)
            return &OPTS[i];
    return NULL;
}

static bool is_global(int id)
{
    return id >= G_EXECUTOR && id <= G_HELP;
}

static bool accepts(const cmd_spec *cs, int id)
{
    if (is_global(id))
        return true;
    if (!cs)
        return false;
    for (size_t i = 0; i < sizeof cs->opts / sizeof cs->opts[0] && cs->opts[i]; i++)
        if (cs->opts[i] == id)
            return true;
    return false;
}

/* Applies one option. where: "sbx" or "sbx kv" for messages. */
static int apply(cli_args *a, const opt *o, const char *v, const char *where, char *err, size_t el)
{
    int64_t n;
    uint64_t u;
#define BAD(what) fail(err, el, "%s: --%s: %s (got \"%s\")", where, o->name, what, v ? v : "")
    switch (o->id) {
    case G_EXECUTOR: a->executor = v; break;
    case G_STORE: a->store = v; break;
    case G_API_KEY: a->api_key = v; break;
    case G_JSON: a->json = true; break;
    case G_DEADLINE:
        if (parse_seconds_ms(v, &n) != 0 || n <= 0)
            return BAD("want a positive number of seconds");
        a->deadline_ms = n;
        a->deadline_set = true;
        break;
    case G_TLS_CA: a->tls_ca = v; break;
    case G_TLS_CERT: a->tls_cert = v; break;
    case G_TLS_KEY: a->tls_key = v; break;
    case G_TLS_NAME: a->tls_server_name = v; break;
    case G_HELP: a->cmd = CMD_HELP; break;
    case O_PROJECT:
        if (!*v)
            return BAD("want a project id");
        a->project = v;
        break;
    case O_CWD: a->cwd = v; break;
    case O_ENV:
        if (!strchr(v, '=') || *v == '=')
            return BAD("want KEY=VALUE");
        if (a->n_env >= CLI_MAX_LIST)
            return BAD("too many");
        a->env[a->n_env++] = v;
        break;
    case O_TIMEOUT_MS:
        if (parse_i64(v, 0, 86400000, &n) != 0)
            return BAD("want milliseconds 0..86400000");
        a->timeout_ms = n;
        break;
    case O_CACHE:
        a->cache = true;
        a->cache_ttl_s = 3600;
        if (v && (parse_i64(v, 1, 2592000, &n) != 0))
            return BAD("want a TTL in seconds 1..2592000");
        if (v)
            a->cache_ttl_s = n;
        break;
    case O_STDIN: a->use_stdin = true; break;
    case O_BACKGROUND: a->background = true; break;
    case O_TAG: a->tag = v; break;
    case O_MAX_OUTPUT:
        if (parse_i64(v, 0, INT64_MAX, &n) != 0)
            return BAD("want a byte count");
        a->max_output_bytes = n;
        break;
    case O_DEPTH:
        if (parse_i64(v, 1, 32, &n) != 0)
            return BAD("want 1..32");
        a->depth = (int)n;
        break;
    case O_RECURSIVE: a->recursive = true; break;
    case O_FORCE: a->force = true; a->overwrite = true; break;
    case O_PARENTS: a->parents = true; break;
    case O_NO_PARENTS: a->parents = false; break;
    case O_OVERWRITE: a->overwrite = true; break;
    case O_APPEND: a->append = true; break;
    case O_EXCLUSIVE: a->exclusive = true; break;
    case O_MODE: {
        char *end = NULL;
        errno = 0;
        unsigned long m = strtoul(v, &end, 8);
        if (!*v || errno || *end || m > 07777)
            return BAD("want octal permission bits like 0644");
        a->mode = (uint32_t)m;
        break;
    }
    case O_LONG: a->long_format = true; break;
    case O_TO: a->to = v; break;
    case O_INSTALL: a->install = v; break;
    case O_NO_REPLACE: a->replace = false; break;
    case O_PORT:
        if (parse_i64(v, 1, 65535, &n) != 0)
            return BAD("want a TCP port 1..65535");
        a->port = (uint32_t)n;
        break;
    case O_READY_PATH:
        if (v[0] != '/')
            return BAD("must start with /");
        a->ready_path = v;
        break;
    case O_READY_TIMEOUT:
        if (parse_seconds_ms(v, &n) != 0 || n <= 0 || n > 600000)
            return BAD("want seconds, at most 600");
        a->ready_timeout_ms = n;
        break;
    case O_KEEP_ON_FAILURE: a->keep_on_failure = true; break;
    case O_SIGNAL: {
        int s = cli_parse_signal(v);
        if (s < 0)
            return BAD("want a signal number 1..64 or a name like TERM");
        a->signal = s;
        break;
    }
    case O_PID:
        if (parse_i64(v, 1, INT_MAX, &n) != 0)
            return BAD("want a pid > 0");
        a->pid = (int)n;
        break;
    case O_FROM_OFFSET:
        if (parse_u64(v, &u) != 0)
            return BAD("want a byte offset");
        a->from_offset = u;
        break;
    case O_NO_FOLLOW: a->no_follow = true; break;
    case O_FOLLOW: a->follow = true; break;
    case O_ALL: a->all = true; break;
    case O_WIPE_HOME: a->wipe_home = true; break;
    case O_LIMIT:
        if (parse_i64(v, 1, 1000000, &n) != 0)
            return BAD("want 1..1000000");
        a->limit = n;
        break;
    case O_OUTPUT: a->include_output = true; break;
    case O_EXIT_CODE:
        if (parse_i64(v, 0, 255, &n) != 0)
            return BAD("want 0..255");
        a->exit_code = (int)n;
        break;
    case O_DURATION_MS:
        if (parse_i64(v, 0, INT64_MAX / 1000, &n) != 0)
            return BAD("want milliseconds");
        a->duration_ms = n;
        break;
    case O_STDOUT: a->out_text = v; break;
    case O_STDERR: a->err_text = v; break;
    case O_RECORD_ID: a->record_id = v; break;
    case O_EXPECT_VERSION:
        if (parse_u64(v, &u) != 0)
            return BAD("want a version number");
        a->has_expect = true;
        a->expect_version = u;
        break;
    case O_UNSET:
        if (a->n_unset >= CLI_MAX_LIST)
            return BAD("too many");
        a->unset[a->n_unset++] = v;
        break;
    case O_PREFIX: a->prefix = v; break;
    case O_TTL:
        if (parse_i64(v, 1, 315360000, &n) != 0)
            return BAD("want seconds 1..315360000");
        a->ttl_s = n;
        break;
    case O_KEYS_ONLY: a->keys_only = true; break;
    case O_SERVICE:
        if (strcmp(v, "executor") != 0 && strcmp(v, "store") != 0)
            return BAD("want executor or store");
        a->service = v;
        break;
    case O_TENANT: a->tenant = v; break;
    case O_KEEP: a->keep = true; break;
    case O_SHELL: a->shell = v; break;
    case O_CACHE_TTL:
        if (parse_i64(v, 0, 2592000, &n) != 0)
            return BAD("want seconds 0..2592000");
        a->cache_ttl_s = n;
        break;
    default:
        return fail(err, el, "%s: --%s: not handled", where, o->name);
    }
#undef BAD
    return 0;
}

/* Tries argv[*i] as an option. Returns 1 if it was one (and consumed its value), 0 if it is
 * not an option, -1 on error. */
static int take_option(cli_args *a, const cmd_spec *cs, int argc, char **argv, int *i, const char *where, char *err,
                       size_t el)
{
    const char *t = argv[*i];
    if (t[0] != '-' || t[1] == 0)
        return 0;
    if (t[1] != '-' && t[1] >= '0' && t[1] <= '9')
        return 0; /* a negative number ("kv incr K -5") */
    const opt *o;
    const char *val = NULL;
    if (t[1] == '-') {
        const char *name = t + 2;
        const char *eq = strchr(name, '=');
        o = find_long(name, eq ? (size_t)(eq - name) : strlen(name));
        if (!o || !accepts(cs, o->id))
            return fail(err, el, "%s: unknown option --%.*s", where, (int)(eq ? eq - name : (long)strlen(name)), name);
        if (eq) {
            if (o->arg == ARG_NONE)
                return fail(err, el, "%s: --%s takes no value", where, o->name);
            val = eq + 1;
        } else if (o->arg == ARG_REQ) {
            if (*i + 1 >= argc)
                return fail(err, el, "%s: --%s needs a value", where, o->name);
            val = argv[++*i];
        }
    } else {
        o = find_short(t[1]);
        if (!o || !accepts(cs, o->id))
            return fail(err, el, "%s: unknown option -%c", where, t[1]);
        if (o->arg == ARG_REQ) {
            if (t[2])
                val = t + 2;
            else if (*i + 1 >= argc)
                return fail(err, el, "%s: -%c needs a value", where, t[1]);
            else
                val = argv[++*i];
        } else if (t[2]) {
            return fail(err, el, "%s: -%c takes no value (got \"%s\")", where, t[1], t);
        }
    }
    return apply(a, o, val, where, err, el) == 0 ? 1 : -1;
}

static bool sub_ok(const char *subs, const char *s)
{
    const char *p = subs[0] == '?' ? subs + 1 : subs;
    size_t n = strlen(s);
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t l = bar ? (size_t)(bar - p) : strlen(p);
        if (l == n && strncmp(p, s, n) == 0)
            return true;
        if (!bar)
            break;
        p = bar + 1;
    }
    return false;
}

static int need_project(cli_args *a, const char *where, char *err, size_t el)
{
    if (!a->project)
        return fail(err, el, "%s: missing -p PROJECT", where);
    return 0;
}

static int npos_check(size_t n, size_t min, size_t max, const char *where, const char *usage, char *err, size_t el)
{
    if (n < min)
        return fail(err, el, "%s: missing arguments (usage: %s)", where, usage);
    if (n > max)
        return fail(err, el, "%s: too many arguments (usage: %s)", where, usage);
    return 0;
}

/* Validates positionals per command and stores them. */
static int finish(cli_args *a, char **pos, size_t np, char *err, size_t el, const char *where)
{
    int64_t n;
    switch (a->cmd) {
    case CMD_EXEC:
        if (need_project(a, where, err, el))
            return -1;
        if (a->argc == 0)
            return fail(err, el, "%s: missing the command (usage: sbx exec -p PROJ [flags] -- CMD [ARG...])", where);
        return 0;
    case CMD_SH: {
        if (need_project(a, where, err, el) ||
            npos_check(np, 1, 1, where, "sbx sh -p PROJ 'SHELL STRING'", err, el))
            return -1;
        a->shell = pos[0];
        if (!*a->shell)
            return fail(err, el, "%s: the shell string is empty", where);
        return 0;
    }
    case CMD_WRITE:
        if (need_project(a, where, err, el) || npos_check(np, 1, 2, where, "sbx write -p PROJ PATH [LOCAL_FILE]", err, el))
            return -1;
        a->path = pos[0];
        a->path2 = np > 1 ? pos[1] : NULL;
        return 0;
    case CMD_READ:
    case CMD_STAT:
        if (need_project(a, where, err, el) || npos_check(np, 1, 1, where, "PATH", err, el))
            return -1;
        a->path = pos[0];
        return 0;
    case CMD_LS:
        if (need_project(a, where, err, el) || npos_check(np, 0, 1, where, "sbx ls -p PROJ [PATH] [--depth N]", err, el))
            return -1;
        a->path = np ? pos[0] : "";
        return 0;
    case CMD_MKDIR:
        if (need_project(a, where, err, el) || npos_check(np, 1, 1, where, "sbx mkdir -p PROJ PATH", err, el))
            return -1;
        a->path = pos[0];
        return 0;
    case CMD_RM:
        if (need_project(a, where, err, el) || npos_check(np, 1, 1, where, "sbx rm -p PROJ [-r] PATH", err, el))
            return -1;
        a->path = pos[0];
        return 0;
    case CMD_MV:
        if (need_project(a, where, err, el) || npos_check(np, 2, 2, where, "sbx mv -p PROJ SRC DST", err, el))
            return -1;
        a->path = pos[0];
        a->path2 = pos[1];
        return 0;
    case CMD_SETUP:
        if (need_project(a, where, err, el) ||
            npos_check(np, 1, 1, where, "sbx setup -p PROJ LOCAL_DIR [--to PATH] [--install 'CMD']", err, el))
            return -1;
        a->local_dir = pos[0];
        return 0;
    case CMD_SERVE:
        if (need_project(a, where, err, el))
            return -1;
        if (!a->port)
            return fail(err, el, "%s: missing --port N", where);
        if (a->argc == 0)
            return fail(err, el, "%s: missing the command (usage: sbx serve -p PROJ --port N -- CMD...)", where);
        return 0;
    case CMD_PS:
        if (need_project(a, where, err, el) || npos_check(np, 0, 0, where, "sbx ps -p PROJ", err, el))
            return -1;
        return 0;
    case CMD_KILL:
    case CMD_ATTACH: {
        const char *u = a->cmd == CMD_KILL ? "sbx kill -p PROJ PID|--tag T [--signal N]"
                                           : "sbx attach -p PROJ PID|--tag T [--from-offset N]";
        if (need_project(a, where, err, el) || npos_check(np, 0, 1, where, u, err, el))
            return -1;
        if (np) {
            if (parse_i64(pos[0], 1, INT_MAX, &n) != 0)
                return fail(err, el, "%s: bad PID \"%s\"", where, pos[0]);
            a->pid = (int)n;
        }
        if (!a->pid && !a->tag)
            return fail(err, el, "%s: give a PID or --tag T (usage: %s)", where, u);
        if (a->pid && a->tag)
            return fail(err, el, "%s: give a PID or --tag T, not both", where);
        return 0;
    }
    case CMD_SANDBOX:
        if (strcmp(a->sub, "list") != 0 && need_project(a, where, err, el))
            return -1;
        if (strcmp(a->sub, "timeout") == 0) {
            if (npos_check(np, 1, 1, where, "sbx sandbox timeout -p PROJ SECONDS", err, el))
                return -1;
            if (parse_i64(pos[0], 0, 604800, &n) != 0)
                return fail(err, el, "%s: SECONDS must be 0..604800 (got \"%s\")", where, pos[0]);
            a->seconds = n;
            return 0;
        }
        return npos_check(np, 0, 0, where, "sbx sandbox create|get|list|kill -p PROJ", err, el);
    case CMD_HISTORY:
        if (need_project(a, where, err, el))
            return -1;
        if (strcmp(a->sub, "add") == 0) {
            if (a->argc == 0)
                return fail(err, el, "%s: missing the command (usage: sbx history add -p PROJ [flags] -- CMD...)", where);
            return 0;
        }
        if (a->argc)
            return fail(err, el, "%s: unexpected argument \"%s\"", where, a->argv[0]);
        return 0;
    case CMD_PROJECT:
        if (strcmp(a->sub, "list") == 0)
            return npos_check(np, 0, 1, where, "sbx project list [PREFIX]", err, el) ? -1
                   : (np ? (a->prefix = pos[0], 0) : 0);
        if (need_project(a, where, err, el))
            return -1;
        if (strcmp(a->sub, "set") == 0) {
            if (np == 0 && a->n_unset == 0)
                return fail(err, el, "%s: nothing to set (usage: sbx project set -p PROJ KEY=VALUE... [--expect-version N])", where);
            for (size_t i = 0; i < np; i++) {
                char *eq = strchr(pos[i], '=');
                if (!eq || eq == pos[i])
                    return fail(err, el, "%s: \"%s\" is not KEY=VALUE", where, pos[i]);
                if (a->n_set >= CLI_MAX_LIST)
                    return fail(err, el, "%s: too many fields", where);
                *eq = 0; /* split in place: argv is ours */
                a->set_keys[a->n_set] = pos[i];
                a->set_values[a->n_set++] = eq + 1;
            }
            return 0;
        }
        return npos_check(np, 0, 0, where, "sbx project get|delete -p PROJ", err, el);
    case CMD_CACHE:
        if (need_project(a, where, err, el))
            return -1;
        if (a->shell && a->argc)
            return fail(err, el, "%s: give -- CMD... or --shell, not both", where);
        if (strcmp(a->sub, "get") == 0 && !a->argc && !a->shell)
            return fail(err, el, "%s: missing the command (usage: sbx cache get -p PROJ -- CMD...)", where);
        return 0;
    case CMD_KV:
        if (strcmp(a->sub, "set") == 0) {
            if (npos_check(np, 2, 2, where, "sbx kv set KEY VALUE [--ttl S] [--expect-version N]", err, el))
                return -1;
            a->key = pos[0];
            a->value = pos[1];
        } else if (strcmp(a->sub, "get") == 0 || strcmp(a->sub, "del") == 0) {
            if (npos_check(np, 1, 1, where, "KEY", err, el))
                return -1;
            a->key = pos[0];
        } else if (strcmp(a->sub, "incr") == 0) {
            if (npos_check(np, 1, 2, where, "sbx kv incr KEY [DELTA]", err, el))
                return -1;
            a->key = pos[0];
            a->delta = 1;
            if (np > 1 && parse_i64(pos[1], INT64_MIN, INT64_MAX, &a->delta) != 0)
                return fail(err, el, "%s: DELTA must be an integer (got \"%s\")", where, pos[1]);
        } else if (strcmp(a->sub, "list") == 0) {
            if (npos_check(np, 0, 1, where, "sbx kv list [PREFIX] [--limit N] [--keys-only]", err, el))
                return -1;
            a->prefix = np ? pos[0] : NULL;
        } else {
            return npos_check(np, 0, 0, where, "sbx kv flush", err, el);
        }
        if (a->key && !*a->key)
            return fail(err, el, "%s: KEY is empty", where);
        return 0;
    case CMD_HEALTH:
        return npos_check(np, 0, 0, where, "sbx health [--service executor|store]", err, el);
    case CMD_KEYGEN:
        if (npos_check(np, 0, 0, where, "sbx keygen --tenant NAME", err, el))
            return -1;
        if (!a->tenant)
            return fail(err, el, "%s: missing --tenant NAME", where);
        return 0;
    case CMD_DEMO:
        return npos_check(np, 0, 0, where, "sbx demo [--keep]", err, el);
    default:
        return 0;
    }
}

int cli_parse(int argc, char **argv, cli_args *a, char *err, size_t el)
{
    int i = 1;
    /* global flags before the command */
    for (; i < argc; i++) {
        int r = take_option(a, NULL, argc, argv, &i, "sbx", err, el);
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        if (a->cmd == CMD_HELP)
            return 0;
    }
    if (i >= argc) {
        if (a->cmd == CMD_HELP)
            return 0;
        return fail(err, el, "no command given (try: sbx help)");
    }
    if (strcmp(argv[i], "--version") == 0) {
        a->cmd = CMD_VERSION;
        return 0;
    }
    const cmd_spec *cs = NULL;
    for (size_t k = 0; k < sizeof CMDS / sizeof CMDS[0]; k++)
        if (strcmp(CMDS[k].name, argv[i]) == 0)
            cs = &CMDS[k];
    if (!cs)
        return fail(err, el, "unknown command \"%s\" (try: sbx help)", argv[i]);
    a->cmd = cs->cmd;
    a->cmd_name = cs->name;
    i++;
    char where[64];
    snprintf(where, sizeof where, "%s", cs->name);
    if (cs->subs) {
        bool optional = cs->subs[0] == '?';
        if (i < argc && sub_ok(cs->subs, argv[i])) {
            a->sub = argv[i++];
        } else if (!optional) {
            if (i < argc && (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)) {
                a->cmd = CMD_HELP;
                return 0;
            }
            return fail(err, el, "%s: want a subcommand: %s%s%s", cs->name, cs->subs, i < argc ? " (got " : "",
                        i < argc ? argv[i] : "");
        }
        if (*a->sub)
            snprintf(where, sizeof where, "%s %s", cs->name, a->sub);
    }
    /* take_command: this command has a trailing command */
    bool takes_cmd = cs->pos == POS_COMMAND &&
                     !(a->cmd == CMD_HISTORY && strcmp(a->sub, "add") != 0);
    char **pos = calloc((size_t)argc, sizeof *pos);
    if (!pos)
        return fail(err, el, "out of memory");
    size_t np = 0;
    int rc = 0;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            if (takes_cmd) {
                a->argv = argv + i;
                a->argc = (size_t)(argc - i);
            } else {
                for (; i < argc; i++)
                    pos[np++] = argv[i];
            }
            break;
        }
        int r = take_option(a, cs, argc, argv, &i, where, err, el);
        if (r < 0) {
            rc = -1;
            break;
        }
        if (a->cmd == CMD_HELP)
            break;
        if (r == 1)
            continue;
        if (takes_cmd) {
            a->argv = argv + i;
            a->argc = (size_t)(argc - i);
            break;
        }
        pos[np++] = argv[i];
    }
    if (rc == 0 && a->cmd != CMD_HELP) {
        if (a->cmd == CMD_HISTORY && strcmp(a->sub, "add") != 0 && np)
            rc = fail(err, el, "%s: unexpected argument \"%s\"", where, pos[0]);
        else if (a->cmd == CMD_CACHE || a->cmd == CMD_HISTORY || a->cmd == CMD_EXEC || a->cmd == CMD_SERVE) {
            if (np && !(a->cmd == CMD_HISTORY))
                rc = fail(err, el, "%s: unexpected argument \"%s\"", where, pos[0]);
        }
        if (rc == 0)
            rc = finish(a, pos, np, err, el, where);
    }
    free(pos);
    return rc;
}
