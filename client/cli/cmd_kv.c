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
    sbx_kv_set_opts o = {.ttl_s = a->ttl_s, .check_version = a->has_expect, .expected_version = a->expect_version};
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

int cmd_kv(cli_args *a, sbx_client *c)
{
    char what[1200];
    if (a->key)
        snprintf(what, sizeof what, "kv %s %s", a->sub, a->key);
    else
        snprintf(what, sizeof what, "kv %s", a->sub);
    if (strcmp(a->sub, "set") == 0)
        return kv_set(a, c, what);
    if (strcmp(a->sub, "get") == 0)
        return kv_get(a, c, what);
    if (strcmp(a->sub, "list") == 0)
        return kv_list(a, c, what);
    if (strcmp(a->sub, "del") == 0) {
        bool existed = false;
        sbx_error *e = sbx_kv_del(c, a->key, &existed);
        if (e)
            return cli_fail(what, e);
        if (a->json)
            fprintf(stdout, "{\"existed\":%s}\n", existed ? "true" : "false");
        return 0;
    }
    if (strcmp(a->sub, "incr") == 0) {
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
    /* flush */
    uint64_t n = 0;
    sbx_error *e = sbx_kv_flush(c, &n);
    if (e)
        return cli_fail(what, e);
    if (a->json)
        fprintf(stdout, "{\"deleted\":%" PRIu64 "}\n", n);
    return 0;
}
