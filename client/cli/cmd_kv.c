/* cmd_kv.c: `sbx kv set|get|del|incr|list|flush`: the tenant's key-value space. `get` prints the
 * value bytes alone (a newline is added only on a terminal); `list` prints KEY<TAB>VALUE lines. */
#include <inttypes.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static void entry_json(FILE *f, const sbx_kv_entry *e, bool with_value)
{
    fputs("{\"key\":", f);
    json_cstr(f, e->key);
    if (with_value) {
        fputs(",\"value\":", f);
        json_str(f, e->value, e->value_len);
    }
    fprintf(f, ",\"version\":%" PRIu64 ",\"expires_at\":", e->version);
    json_time(f, e->expires_at_ms);
    fputc('}', f);
}

static int kv_set(cli_args *a, sbx_client *c, const char *what)
{
    sbx_kv_set_opts o = {
        .ttl_s = a->ttl_s, .check_version = a->has_expect, .expected_version = a->expect_version};
    uint64_t version = 0;
    int64_t exp = 0;
    sbx_error *e = sbx_kv_set(c, a->key, a->value, strlen(a->value), &o, &version, &exp);
    if (e)
        return cli_fail(what, e);
    if (a->json) {
        fputs("{\"key\":", stdout);
        json_cstr(stdout, a->key);
        fprintf(stdout, ",\"version\":%" PRIu64 ",\"expires_at\":", version);
        json_time(stdout, exp);
        fputs("}\n", stdout);
    }
    return 0;
}

static int kv_get(cli_args *a, sbx_client *c, const char *what)
{
    sbx_kv_entry *en = NULL;
    sbx_error *e = sbx_kv_get(c, a->key, &en);
    if (e)
        return cli_fail(what, e);
    if (a->json) {
        entry_json(stdout, en, true);
        fputc('\n', stdout);
    } else {
        fwrite(en->value, 1, en->value_len, stdout);
        if (isatty(STDOUT_FILENO) && (en->value_len == 0 || en->value[en->value_len - 1] != '\n'))
            fputc('\n', stdout);
    }
    sbx_kv_entry_free(en);
    return 0;
}

static int kv_list(cli_args *a, sbx_client *c, const char *what)
{
    char *cursor = NULL;
    int64_t left = a->limit; /* 0 = all */
    bool first = true;
    if (a->json)
        fputc('[', stdout);
    for (;;) {
        int page = left > 0 && left < 1000 ? (int)left : 1000;
        sbx_kv_list *l = NULL;
        sbx_error *e = sbx_kv_list_page(c, a->prefix, cursor, page, a->keys_only, &l);
        free(cursor);
        cursor = NULL;
        if (e) {
            if (a->json)
                fputs("]\n", stdout);
            return cli_fail(what, e);
        }
        for (size_t i = 0; i < l->count && (a->limit == 0 || left > 0); i++, left--) {
            const sbx_kv_entry *en = &l->entries[i];
            if (a->json) {
                if (!first)
                    fputc(',', stdout);
                entry_json(stdout, en, !a->keys_only);
            } else if (a->keys_only) {
                fprintf(stdout, "%s\n", en->key);
            } else {
                fprintf(stdout, "%s\t", en->key);
                fwrite(en->value, 1, en->value_len, stdout);
                fputc('\n', stdout);
            }
            first = false;
        }
        bool more = *l->next_cursor && (a->limit == 0 || left > 0);
        if (more)
            cursor = strdup(l->next_cursor);
        sbx_kv_list_free(l);
        if (!more || !cursor)
            break;
    }
    if (a->json)
        fputs("]\n", stdout);
    return 0;
}

static int kv_del(cli_args *a, sbx_client *c, const char *what)
{
    bool existed = false;
    sbx_error *e = sbx_kv_del(c, a->key, &existed);
    if (e)
        return cli_fail(what, e);
    if (a->json)
        fprintf(stdout, "{\"existed\":%s}\n", existed ? "true" : "false");
    return 0;
}

static int kv_incr(cli_args *a, sbx_client *c, const char *what)
{
    int64_t v = 0;
    uint64_t ver = 0;
    sbx_error *e = sbx_kv_incr(c, a->key, a->delta, &v, &ver);
    if (e)
        return cli_fail(what, e);
    if (a->json)
        fprintf(stdout, "{\"value\":%" PRId64 ",\"version\":%" PRIu64 "}\n", v, ver);
    else
        fprintf(stdout, "%" PRId64 "\n", v);
    return 0;
}

static int kv_flush(cli_args *a, sbx_client *c, const char *what)
{
    uint64_t n = 0;
    sbx_error *e = sbx_kv_flush(c, &n);
    if (e)
        return cli_fail(what, e);
    if (a->json)
        fprintf(stdout, "{\"deleted\":%" PRIu64 "}\n", n);
    return 0;
}

static int run_kv(cli_args *a, sbx_client *c)
{
    static const struct {
        const char *sub;
        int (*fn)(cli_args *a, sbx_client *c, const char *what);
    } subs[] = {{"set", kv_set}, {"get", kv_get},   {"list", kv_list},
                {"del", kv_del}, {"incr", kv_incr}, {"flush", kv_flush}};
    char what[1200];
    if (a->key)
        snprintf(what, sizeof what, "kv %s %s", a->sub, a->key);
    else
        snprintf(what, sizeof what, "kv %s", a->sub);
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        if (strcmp(a->sub, subs[i].sub) == 0)
            return subs[i].fn(a, c, what);
    return cli_usage_error("kv: unknown subcommand \"%s\"", a->sub);
}

/* ---- the command line */
static const cli_opt kv_opts[] = {
    CLI_OPT_I64("ttl", 0, ttl_s, 1, 315360000, "S", "want seconds 1..315360000",
                "set: the key expires after S seconds"),
    CLI_OPT_EXPECT_VERSION("set: only if the key is at version N (0: does not exist yet)"),
    CLI_OPT_LIMIT("list: at most N keys"),
    CLI_OPT_FLAG("keys-only", 0, keys_only, "list: keys without values"),
    CLI_OPT_END,
};

/* KEY [VALUE | DELTA] or [PREFIX], by subcommand. */
static int kv_finish(cli_args *a, char **pos, size_t np, cli_err *e)
{
    const char *sub = a->sub;
    if (strcmp(sub, "set") == 0) {
        if (cli_npos(e, np, 2, 2, "sbx kv set KEY VALUE [--ttl S] [--expect-version N]"))
            return -1;
        a->value = pos[1];
    } else if (strcmp(sub, "get") == 0 || strcmp(sub, "del") == 0) {
        if (cli_npos(e, np, 1, 1, "KEY"))
            return -1;
    } else if (strcmp(sub, "incr") == 0) {
        if (cli_npos(e, np, 1, 2, "sbx kv incr KEY [DELTA]"))
            return -1;
        a->delta = 1;
        if (np > 1 && cli_parse_i64(pos[1], INT64_MIN, INT64_MAX, &a->delta) != 0)
            return cli_bad(e, "DELTA must be an integer (got \"%s\")", pos[1]);
    } else if (strcmp(sub, "list") == 0) {
        if (cli_npos(e, np, 0, 1, "sbx kv list [PREFIX] [--limit N] [--keys-only]"))
            return -1;
        a->prefix = np ? pos[0] : NULL;
        return 0;
    } else {
        return cli_npos(e, np, 0, 0, "sbx kv flush");
    }
    a->key = pos[0];
    if (!*a->key)
        return cli_bad(e, "KEY is empty");
    return 0;
}

const cli_command cli_cmd_kv = {
    .name = "kv",
    .brief = "the tenant's key-value space",
    .cmd = CMD_KV,
    .subs = "set|get|del|incr|list|flush",
    .synopsis = "sbx kv set KEY VALUE [--ttl S] [--expect-version N]\n"
                "sbx kv get KEY\n"
                "sbx kv del KEY\n"
                "sbx kv incr KEY [DELTA]\n"
                "sbx kv list [PREFIX] [--limit N] [--keys-only]\n"
                "sbx kv flush",
    .summary = "The key-value space of the caller's tenant. `get` prints the value alone; a "
               "missing or expired key exits 1. `list` prints KEY<TAB>VALUE lines (keys alone "
               "with --keys-only). `incr` adds DELTA (default 1) and prints the new value.",
    .opts = kv_opts,
    .finish = kv_finish,
    .run = run_kv,
};
