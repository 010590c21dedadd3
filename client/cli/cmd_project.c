/* cmd_project.c: `sbx project get|list|delete|set`: project metadata with compare-and-set. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void project_json(FILE *f, const void *item)
{
    const sbx_project *p = item;
    fputs("{\"project_id\":", f);
    json_cstr(f, p->project_id);
    fprintf(f, ",\"version\":%" PRIu64 ",\"fields\":{", p->version);
    for (size_t i = 0; i < p->n_fields; i++) {
        if (i)
            fputc(',', f);
        json_cstr(f, p->fields[i].key);
        fputc(':', f);
        json_cstr(f, p->fields[i].value);
    }
    fputs("},\"created_at\":", f);
    json_time(f, p->created_at_ms);
    fputs(",\"updated_at\":", f);
    json_time(f, p->updated_at_ms);
    fputc('}', f);
}

static void project_text(FILE *f, const sbx_project *p)
{
    char t1[48] = "-", t2[48] = "-", t3[48] = "-";
    if (p->created_at_ms)
        cli_rfc3339(p->created_at_ms, t1, sizeof t1);
    if (p->updated_at_ms)
        cli_rfc3339(p->updated_at_ms, t2, sizeof t2);
    if (p->last_execution_at_ms)
        cli_rfc3339(p->last_execution_at_ms, t3, sizeof t3);
    fprintf(f, "project_id: %s\nversion: %" PRIu64 "\ncreated_at: %s\nupdated_at: %s\n",
            p->project_id, p->version, t1, t2);
    fprintf(f, "executions: %" PRIu64 "\n", p->execution_count);
    if (p->last_execution_seq)
        fprintf(f, "last_execution: seq %" PRIu64 " at %s, exit %d\n", p->last_execution_seq, t3,
                p->last_exit_code);
    if (p->n_fields) {
        fputs("fields:\n", f);
        for (size_t i = 0; i < p->n_fields; i++)
            fprintf(f, "  %s=%s\n", p->fields[i].key, p->fields[i].value);
    }
}

/* `project list`: one id per line */
static void project_id_line(FILE *f, const void *item)
{
    fprintf(f, "%s\n", ((const sbx_project *)item)->project_id);
}

/* get and set --json: the project as one document */
static void project_json_doc(const sbx_project *p)
{
    project_json(stdout, p);
    fputc('\n', stdout);
}

static int project_get(cli_args *a, sbx_client *c, const char *what)
{
    sbx_project *p = NULL;
    sbx_error *e = sbx_project_get(c, a->project, &p);
    if (e)
        return cli_fail(what, e);
    if (a->json)
        project_json_doc(p);
    else
        project_text(stdout, p);
    sbx_project_free(p);
    return 0;
}

static int project_list(cli_args *a, sbx_client *c, const char *what)
{
    sbx_project_list *l = NULL;
    sbx_error *e = sbx_project_list_all(c, a->prefix, (size_t)a->limit, &l);
    if (e)
        return cli_fail(what, e);
    cli_print_items(a, l->projects, l->count, sizeof *l->projects, project_json, project_id_line);
    sbx_project_list_free(l);
    return 0;
}

static int project_delete(cli_args *a, sbx_client *c, const char *what)
{
    bool existed = false;
    sbx_error *e = sbx_project_delete(c, a->project, &existed);
    if (e)
        return cli_fail(what, e);
    if (a->json)
        fprintf(stdout, "{\"existed\":%s}\n", existed ? "true" : "false");
    return 0;
}

static int project_set(cli_args *a, sbx_client *c, const char *what)
{
    sbx_field set[CLI_MAX_LIST];
    for (size_t i = 0; i < a->n_set; i++) {
        set[i].key = (char *)a->set_keys[i];
        set[i].value = (char *)a->set_values[i];
    }
    sbx_project_update u = {
        .set = set,
        .n_set = a->n_set,
        .remove = a->unset,
        .n_remove = a->n_unset,
        .check_version = a->has_expect,
        .expected_version = a->expect_version,
    };
    sbx_project *p = NULL;
    sbx_error *e = sbx_project_update_fields(c, a->project, &u, &p);
    if (e)
        return cli_fail(what, e);
    if (a->json)
        project_json_doc(p);
    else
        fprintf(stdout, "%" PRIu64 "\n", p->version);
    sbx_project_free(p);
    return 0;
}

static int run_project(cli_args *a, sbx_client *c)
{
    char what[256];
    snprintf(what, sizeof what, "project %s%s%s", a->sub, a->project ? " " : "",
             a->project ? a->project : "");
    if (strcmp(a->sub, "get") == 0)
        return project_get(a, c, what);
    if (strcmp(a->sub, "list") == 0)
        return project_list(a, c, what);
    if (strcmp(a->sub, "delete") == 0)
        return project_delete(a, c, what);
    return project_set(a, c, what);
}

/* ---- the command line */
static const char *set_unset(cli_args *a, const char *v)
{
    if (a->n_unset >= CLI_MAX_LIST)
        return "too many";
    a->unset[a->n_unset++] = v;
    return NULL;
}

static const cli_opt project_opts[] = {
    CLI_OPT_PROJECT,
    CLI_OPT_EXPECT_VERSION("set: only if the project is at version N (0: does not exist yet)"),
    CLI_OPT_CALL("unset", 0, CLI_VAL, set_unset, "KEY", "set: remove a field (repeatable)"),
    CLI_OPT_STR("prefix", 0, prefix, "P", "list: only ids starting with P"),
    CLI_OPT_LIMIT("list: at most N projects"),
    CLI_OPT_END,
};

/* set's KEY=VALUE words, split in place (argv is ours). */
static int take_fields(cli_args *a, char **pos, size_t np, cli_err *e)
{
    if (np == 0 && a->n_unset == 0)
        return cli_bad(e, "nothing to set (usage: sbx project set -p PROJ KEY=VALUE... "
                          "[--expect-version N])");
    for (size_t i = 0; i < np; i++) {
        char *eq = strchr(pos[i], '=');
        if (!eq || eq == pos[i])
            return cli_bad(e, "\"%s\" is not KEY=VALUE", pos[i]);
        if (a->n_set >= CLI_MAX_LIST)
            return cli_bad(e, "too many fields");
        *eq = 0;
        a->set_keys[a->n_set] = pos[i];
        a->set_values[a->n_set++] = eq + 1;
    }
    return 0;
}

static int project_finish(cli_args *a, char **pos, size_t np, cli_err *e)
{
    if (strcmp(a->sub, "list") == 0) {
        if (cli_npos(e, np, 0, 1, "sbx project list [PREFIX]"))
            return -1;
        if (np)
            a->prefix = pos[0];
        return 0;
    }
    if (cli_need_project(a, e))
        return -1;
    if (strcmp(a->sub, "set") == 0)
        return take_fields(a, pos, np, e);
    return cli_npos(e, np, 0, 0, "sbx project get|delete -p PROJ");
}

const cli_command cli_cmd_project = {
    .name = "project",
    .brief = "project metadata",
    .cmd = CMD_PROJECT,
    .subs = "get|list|delete|set",
    .synopsis = "sbx project get|delete -p PROJ\n"
                "sbx project list [PREFIX] [--limit N]\n"
                "sbx project set -p PROJ KEY=VALUE... [--unset KEY]... [--expect-version N]",
    .summary = "Project metadata. `set` prints the new version; with --expect-version a version "
               "mismatch exits 1 and says the current version.",
    .opts = project_opts,
    .finish = project_finish,
    .run = run_project,
};
