/* cmd_sandbox.c: `sbx sandbox create|get|list|kill|timeout`: sandbox lifecycle. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char *state_name(int s)
{
    return s == 1 ? "running" : s == 2 ? "stopped" : "unknown";
}

static void sandbox_json(FILE *f, const void *item)
{
    const sbx_sandbox *s = item;
    fputs("{\"sandbox_id\":", f);
    json_cstr(f, s->sandbox_id);
    fputs(",\"project_id\":", f);
    json_cstr(f, s->project_id);
    fprintf(f, ",\"state\":\"%s\",\"template\":", state_name(s->state));
    json_cstr(f, s->template_name);
    fprintf(f, ",\"init_pid\":%d,\"created_at\":", s->init_pid);
    json_time(f, s->created_at_ms);
    fputs(",\"last_used_at\":", f);
    json_time(f, s->last_used_at_ms);
    fputs(",\"expires_at\":", f);
    json_time(f, s->expires_at_ms);
    fprintf(f,
            ",\"idle_timeout_ms\":%" PRId64
            ",\"running_processes\":%d,\"limits\":{\"memory_bytes\":%" PRId64
            ",\"pids\":%d,\"cpu_millis\":%d,\"command_timeout_ms\":%" PRId64
            ",\"max_output_bytes\":%" PRId64 ",\"open_files\":%d,\"disk_bytes\":%" PRId64
            "},\"enforced\":[",
            s->idle_timeout_ms, s->running_processes, s->memory_bytes, s->pids, s->cpu_millis,
            s->command_timeout_ms, s->max_output_bytes, s->open_files, s->disk_bytes);
    for (size_t i = 0; i < s->n_enforced; i++) {
        if (i)
            fputc(',', f);
        json_cstr(f, s->enforced[i]);
    }
    fputs("],\"ports\":[", f);
    for (size_t i = 0; i < s->n_ports; i++) {
        fprintf(f, "%s{\"port\":%u,\"url\":", i ? "," : "", s->ports[i].port);
        json_cstr(f, s->ports[i].url);
        fputc('}', f);
    }
    fputs("]}", f);
}

static void sandbox_text(FILE *f, const sbx_sandbox *s)
{
    char t1[48] = "-", t2[48] = "never";
    if (s->created_at_ms)
        cli_rfc3339(s->created_at_ms, t1, sizeof t1);
    if (s->expires_at_ms)
        cli_rfc3339(s->expires_at_ms, t2, sizeof t2);
    fprintf(
        f,
        "sandbox_id: %s\nproject_id: %s\nstate: %s\ncreated_at: %s\nexpires_at: %s\nrunning_processes: %d\n",
        s->sandbox_id, s->project_id, state_name(s->state), t1, t2, s->running_processes);
    if (s->n_enforced) {
        fputs("enforced:", f);
        for (size_t i = 0; i < s->n_enforced; i++)
            fprintf(f, " %s", s->enforced[i]);
        fputc('\n', f);
    }
    for (size_t i = 0; i < s->n_ports; i++)
        fprintf(f, "port %u: %s\n", s->ports[i].port, s->ports[i].url);
}

/* `sandbox list`: ID PROJECT STATE */
static void sandbox_line(FILE *f, const void *item)
{
    const sbx_sandbox *s = item;
    fprintf(f, "%s\t%s\t%s\n", s->sandbox_id, s->project_id, state_name(s->state));
}

static int sandbox_list(cli_args *a, sbx_client *c, const char *what)
{
    sbx_sandbox_list *l = NULL;
    sbx_error *e = sbx_sandbox_list_all(c, a->project, a->all, &l);
    if (e)
        return cli_fail(what, e);
    cli_print_items(a, l->sandboxes, l->count, sizeof *l->sandboxes, sandbox_json, sandbox_line);
    sbx_sandbox_list_free(l);
    return 0;
}

static int sandbox_kill(cli_args *a, sbx_client *c, const char *what)
{
    bool killed = false;
    sbx_error *e = sbx_sandbox_kill(c, a->project, a->wipe_home, &killed);
    if (e)
        return cli_fail(what, e);
    if (a->json)
        fprintf(stdout, "{\"killed\":%s}\n", killed ? "true" : "false");
    else if (!killed)
        fprintf(stdout, "already stopped\n");
    return 0;
}

static int run_sandbox(cli_args *a, sbx_client *c)
{
    char what[256];
    snprintf(what, sizeof what, "sandbox %s%s%s", a->sub, a->project ? " -p " : "",
             a->project ? a->project : "");
    if (strcmp(a->sub, "list") == 0)
        return sandbox_list(a, c, what);
    if (strcmp(a->sub, "kill") == 0)
        return sandbox_kill(a, c, what);
    sbx_sandbox *s = NULL;
    sbx_error *e;
    if (strcmp(a->sub, "create") == 0)
        e = sbx_sandbox_new(c, a->project, NULL, &s);
    else if (strcmp(a->sub, "get") == 0)
        e = sbx_sandbox_get(c, a->project, &s);
    else
        e = sbx_sandbox_set_timeout(c, a->project, a->seconds * 1000, &s);
    if (e)
        return cli_fail(what, e);
    if (a->json) {
        sandbox_json(stdout, s);
        fputc('\n', stdout);
    } else if (strcmp(a->sub, "create") == 0) {
        fprintf(stdout, "%s\n", s->sandbox_id);
    } else {
        sandbox_text(stdout, s);
    }
    sbx_sandbox_free(s);
    return 0;
}

/* ---- the command line */
static const cli_opt sandbox_opts[] = {
    CLI_OPT_PROJECT,
    CLI_OPT_FLAG("all", 'a', all, "list: stopped sandboxes too"),
    CLI_OPT_FLAG("wipe-home", 0, wipe_home, "kill: delete the home directory too"),
    CLI_OPT_END,
};

static int sandbox_finish(cli_args *a, char **pos, size_t np, cli_err *e)
{
    if (strcmp(a->sub, "list") != 0 && cli_need_project(a, e))
        return -1;
    if (strcmp(a->sub, "timeout") != 0)
        return cli_npos(e, np, 0, 0, "sbx sandbox create|get|list|kill -p PROJ");
    if (cli_npos(e, np, 1, 1, "sbx sandbox timeout -p PROJ SECONDS"))
        return -1;
    if (cli_parse_i64(pos[0], 0, 604800, &a->seconds) != 0)
        return cli_bad(e, "SECONDS must be 0..604800 (got \"%s\")", pos[0]);
    return 0;
}

const cli_command cli_cmd_sandbox = {
    .name = "sandbox",
    .brief = "create, show, list, kill a sandbox; set its timeout",
    .cmd = CMD_SANDBOX,
    .subs = "create|get|list|kill|timeout",
    .synopsis = "sbx sandbox create|get|kill -p PROJ [--wipe-home]\n"
                "sbx sandbox list [-p PROJ] [--all]\n"
                "sbx sandbox timeout -p PROJ SECONDS",
    .summary = "Sandbox lifecycle: create (or return) the project's sandbox, show it, list "
               "them, kill it, or set its idle timeout (0..604800 seconds).",
    .opts = sandbox_opts,
    .finish = sandbox_finish,
    .run = run_sandbox,
};
