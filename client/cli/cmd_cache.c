/* cmd_cache.c: `sbx cache clear|get -p PROJ [-- CMD...]`. A command's cache key is computed
 * with sbx_command_key() and also taken from the project's history records of the same argv,
 * so a key written by an executor that encodes differently is still found. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_KEYS 64

typedef struct keyset {
    char *keys[MAX_KEYS];
    size_t n;
} keyset;

static void keyset_add(keyset *k, const char *key)
{
    if (!key || !*key || k->n >= MAX_KEYS)
        return;
    for (size_t i = 0; i < k->n; i++)
        if (strcmp(k->keys[i], key) == 0)
            return;
    char *d = strdup(key);
    if (d)
        k->keys[k->n++] = d;
}

static void keyset_free(keyset *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->keys[i]);
    k->n = 0;
}

static bool same_argv(const sbx_record *r, const char *const *argv, size_t argc)
{
    if (r->argc != argc)
        return false;
    for (size_t i = 0; i < argc; i++)
        if (strcmp(r->argv[i], argv[i]) != 0)
            return false;
    return true;
}

static bool same_cwd(const char *rec, const char *want)
{
    if (!want)
        return true; /* not given: any working directory */
    char a[65], b[65];
    /* compare normalised forms through the key function's own normalisation */
    const char *x[1] = {""};
    sbx_command_key(x, 1, NULL, rec, NULL, 0, NULL, 0, a);
    sbx_command_key(x, 1, NULL, want, NULL, 0, NULL, 0, b);
    return strcmp(a, b) == 0;
}

/* Collects the keys that name this command. Returns an error only for a failed history read. */
static sbx_error *command_keys(cli_args *a, sbx_client *c, keyset *k)
{
    char key[65];
    const char *sh_argv[3] = {"/bin/sh", "-c", a->shell};
    const char *const *argv = a->shell ? sh_argv : (const char *const *)a->argv;
    size_t argc = a->shell ? 3 : a->argc;
    sbx_command_key((const char *const *)a->argv, a->argc, a->shell, a->cwd, a->env, a->n_env, NULL,
                    0, key);
    keyset_add(k, key);
    if (a->n_env)
        return NULL; /* history does not keep env: only the computed key can match */
    char *token = NULL;
    for (int page = 0; page < 5; page++) {
        sbx_history_query q = {.limit = 1000, .page_token = token};
        sbx_history_page *p = NULL;
        sbx_error *e = sbx_history_list(c, a->project, &q, &p);
        free(token);
        token = NULL;
        if (e)
            return e;
        for (size_t i = 0; i < p->count; i++)
            if (same_argv(&p->records[i], argv, argc) && same_cwd(p->records[i].cwd, a->cwd))
                keyset_add(k, p->records[i].command_key);
        if (*p->next_page_token)
            token = strdup(p->next_page_token);
        sbx_history_page_free(p);
        if (!token)
            break;
    }
    free(token);
    return NULL;
}

static void cached_json(FILE *f, const sbx_cached *r)
{
    fputs("{\"command_key\":", f);
    json_cstr(f, r->command_key);
    fprintf(f,
            ",\"exit_code\":%d,\"signal\":%d,\"timed_out\":%s,\"output_truncated\":%s,\"stdout\":",
            r->exit_code, r->signal, r->timed_out ? "true" : "false",
            r->output_truncated ? "true" : "false");
    json_str(f, r->out, r->out_len);
    fputs(",\"stderr\":", f);
    json_str(f, r->err, r->err_len);
    fputs(",\"duration_ms\":", f);
    json_duration_ms(f, r->duration_us);
    fputs(",\"created_at\":", f);
    json_time(f, r->created_at_ms);
    fputs(",\"expires_at\":", f);
    json_time(f, r->expires_at_ms);
    fprintf(f, ",\"seq\":%" PRIu64 "}\n", r->seq);
}

/* Prints "cleared N" or {"whole_project":…,"cleared":N}. */
static void print_cleared(const cli_args *a, bool whole, uint64_t n)
{
    if (a->json)
        fprintf(stdout, "{\"whole_project\":%s,\"cleared\":%" PRIu64 "}\n",
                whole ? "true" : "false", n);
    else
        fprintf(stdout, "cleared %" PRIu64 "\n", n);
}

static int cache_clear(cli_args *a, sbx_client *c, const keyset *k, const char *what)
{
    uint64_t total = 0;
    sbx_error *e = NULL;
    for (size_t i = 0; i < k->n && !e; i++) {
        uint64_t n = 0;
        e = sbx_cache_clear(c, a->project, k->keys[i], &n);
        total += n;
    }
    if (e)
        return cli_fail(what, e);
    print_cleared(a, false, total);
    return 0;
}

/* The freshest cached result under any of the keys. */
static int cache_get(cli_args *a, sbx_client *c, const keyset *k, const char *what)
{
    sbx_cached *best = NULL;
    sbx_error *e = NULL;
    for (size_t i = 0; i < k->n && !e; i++) {
        bool found = false;
        sbx_cached *r = NULL;
        e = sbx_cache_get(c, a->project, k->keys[i], &found, NULL, &r);
        if (found && (!best || r->created_at_ms > best->created_at_ms)) {
            sbx_cached_free(best);
            best = r;
        } else {
            sbx_cached_free(r);
        }
    }
    int rc = 0;
    if (e) {
        rc = cli_fail(what, e);
    } else if (!best) {
        rc = cli_fail(what,
                      sbx_error_new(SBX_CODE_NOT_FOUND, "no fresh cached result for this command"));
    } else if (a->json) {
        cached_json(stdout, best);
    } else {
        fwrite(best->out, 1, best->out_len, stdout);
        fwrite(best->err, 1, best->err_len, stderr);
    }
    sbx_cached_free(best);
    return rc;
}

static int run_cache(cli_args *a, sbx_client *c)
{
    char what[256];
    snprintf(what, sizeof what, "cache %s -p %s", a->sub, a->project);
    bool clear = strcmp(a->sub, "clear") == 0;
    if (clear && !a->argc && !a->shell) {
        uint64_t n = 0;
        sbx_error *e = sbx_cache_clear(c, a->project, NULL, &n);
        if (e)
            return cli_fail(what, e);
        print_cleared(a, true, n);
        return 0;
    }
    keyset k = {0};
    sbx_error *e = command_keys(a, c, &k);
    int rc = e       ? cli_fail(what, e)
             : clear ? cache_clear(a, c, &k, what)
                     : cache_get(a, c, &k, what);
    keyset_free(&k);
    return rc;
}

/* ---- the command line */
static const cli_opt cache_opts[] = {
    CLI_OPT_PROJECT,
    CLI_OPT_CWD("the command's working directory"),
    CLI_OPT_ENV("the command's environment (repeatable)"),
    CLI_OPT_STR("shell", 0, shell, "S", "the command as a shell string (as `sbx sh` runs it)"),
    CLI_OPT_END,
};

static int cache_finish(cli_args *a, char **pos, size_t np, cli_err *e)
{
    (void)pos;
    (void)np; /* a trailing command: no positionals of its own */
    if (cli_need_project(a, e))
        return -1;
    if (a->shell && a->argc)
        return cli_bad(e, "give -- CMD... or --shell, not both");
    if (strcmp(a->sub, "get") == 0 && !a->argc && !a->shell)
        return cli_bad(e, "missing the command (usage: sbx cache get -p PROJ -- CMD...)");
    return 0;
}

const cli_command cli_cmd_cache = {
    .name = "cache",
    .brief = "clear or show a command's cached result",
    .cmd = CMD_CACHE,
    .subs = "clear|get",
    .trailing = true,
    .synopsis = "sbx cache clear -p PROJ [--cwd D] [--env K=V]... [--shell S | [--] CMD...]\n"
                "sbx cache get -p PROJ [--cwd D] [--env K=V]... [--shell S | [--] CMD...]",
    .summary = "Clears one command's cached result (or, without a command, the whole "
               "project's), or prints it.",
    .opts = cache_opts,
    .finish = cache_finish,
    .run = run_cache,
};
