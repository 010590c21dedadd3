/* cmd_sandbox.c: `sbx sandbox create|get|list|kill|timeout|net`: sandbox lifecycle and its
 * network egress policy. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char *state_name(int s)
{
    return s == 1 ? "running" : s == 2 ? "stopped" : "unknown";
}

static void json_strv(FILE *f, char *const *v, size_t n)
{
    fputc('[', f);
    for (size_t i = 0; i < n; i++) {
        if (i)
            fputc(',', f);
        json_cstr(f, v[i]);
    }
    fputc(']', f);
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
            ",\"running_processes\":%d,\"from_pool\":%s,\"limits\":{\"memory_bytes\":%" PRId64
            ",\"pids\":%d,\"cpu_millis\":%d,\"command_timeout_ms\":%" PRId64
            ",\"max_output_bytes\":%" PRId64 ",\"open_files\":%d,\"disk_bytes\":%" PRId64
            ",\"disk_inodes\":%" PRId64 "},\"enforced\":[",
            s->idle_timeout_ms, s->running_processes, s->from_pool ? "true" : "false",
            s->memory_bytes, s->pids, s->cpu_millis, s->command_timeout_ms, s->max_output_bytes,
            s->open_files, s->disk_bytes, s->disk_inodes);
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
    fputc(']', f);
    if (s->has_disk) {
        fprintf(f,
                ",\"disk\":{\"used_bytes\":%" PRIu64 ",\"used_inodes\":%" PRIu64
                ",\"limit_bytes\":%" PRIu64 ",\"limit_inodes\":%" PRIu64 ",\"mechanism\":",
                s->disk_used_bytes, s->disk_used_inodes, s->disk_limit_bytes, s->disk_limit_inodes);
        json_cstr(f, s->disk_mechanism ? s->disk_mechanism : "");
        fputc('}', f);
    }
    if (s->has_network) {
        fputs(",\"network\":{\"allow_out\":", f);
        json_strv(f, s->allow_out, s->n_allow_out);
        fputs(",\"deny_out\":", f);
        json_strv(f, s->deny_out, s->n_deny_out);
        fprintf(f,
                ",\"allowed\":%" PRIu64 ",\"denied\":%" PRIu64 ",\"failed\":%" PRIu64
                ",\"bytes_out\":%" PRIu64 ",\"bytes_in\":%" PRIu64 ",\"http_proxy\":",
                s->net_allowed, s->net_denied, s->net_failed, s->net_bytes_out, s->net_bytes_in);
        json_cstr(f, s->http_proxy ? s->http_proxy : "");
        fputc('}', f);
    }
    fputc('}', f);
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
        "sandbox_id: %s\nproject_id: %s\nstate: %s\ncreated_at: %s\nexpires_at: %s\nrunning_processes: %d\n"
        "from_pool: %s\n",
        s->sandbox_id, s->project_id, state_name(s->state), t1, t2, s->running_processes,
        s->from_pool ? "yes" : "no");
    if (s->n_enforced) {
        fputs("enforced:", f);
        for (size_t i = 0; i < s->n_enforced; i++)
            fprintf(f, " %s", s->enforced[i]);
        fputc('\n', f);
    }
    for (size_t i = 0; i < s->n_ports; i++)
        fprintf(f, "port %u: %s\n", s->ports[i].port, s->ports[i].url);
    if (s->has_disk && s->disk_limit_bytes)
        fprintf(f,
                "disk: %" PRIu64 " of %" PRIu64 " bytes, %" PRIu64 " of %" PRIu64 " inodes (%s)\n",
                s->disk_used_bytes, s->disk_limit_bytes, s->disk_used_inodes, s->disk_limit_inodes,
                s->disk_mechanism ? s->disk_mechanism : "");
    if (!s->has_network)
        return;
    fputs("allow_out:", f);
    for (size_t i = 0; i < s->n_allow_out; i++)
        fprintf(f, " %s", s->allow_out[i]);
    fputs(s->n_allow_out ? "\n" : " (none: no network)\n", f);
    if (s->n_deny_out) {
        fputs("deny_out:", f);
        for (size_t i = 0; i < s->n_deny_out; i++)
            fprintf(f, " %s", s->deny_out[i]);
        fputc('\n', f);
    }
    fprintf(f,
            "egress: allowed %" PRIu64 ", denied %" PRIu64 ", failed %" PRIu64
            ", bytes out %" PRIu64 ", in %" PRIu64 "\n",
            s->net_allowed, s->net_denied, s->net_failed, s->net_bytes_out, s->net_bytes_in);
    if (s->http_proxy && s->http_proxy[0])
        fprintf(f, "http_proxy: %s\n", s->http_proxy);
}

/* Whether s has exactly the lists asked for. */
static bool same_policy(const sbx_sandbox *s, const cli_args *a)
{
    if (s->n_allow_out != a->n_allow_out || s->n_deny_out != a->n_deny_out)
        return false;
    for (size_t i = 0; i < a->n_allow_out; i++)
        if (strcmp(s->allow_out[i], a->allow_out[i]) != 0)
            return false;
    for (size_t i = 0; i < a->n_deny_out; i++)
        if (strcmp(s->deny_out[i], a->deny_out[i]) != 0)
            return false;
    return true;
}

/* `sandbox create`: with --allow-out/--deny-out the sandbox has that policy, also when it was
 * already running with another one (then replaced, as `sandbox net` does). */
static sbx_error *create(cli_args *a, sbx_client *c, sbx_sandbox **s)
{
    bool net = a->n_allow_out || a->n_deny_out;
    sbx_sandbox_create o = {.set_network = net,
                            .allow_out = a->allow_out,
                            .n_allow_out = a->n_allow_out,
                            .deny_out = a->deny_out,
                            .n_deny_out = a->n_deny_out};
    sbx_error *e = sbx_sandbox_new(c, a->project, &o, s);
    if (e || !net || same_policy(*s, a))
        return e;
    sbx_sandbox_free(*s);
    *s = NULL;
    return sbx_sandbox_set_network(c, a->project, a->allow_out, a->n_allow_out, a->deny_out,
                                   a->n_deny_out, s);
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
        e = create(a, c, &s);
    else if (strcmp(a->sub, "net") == 0)
        e = sbx_sandbox_set_network(c, a->project, a->allow_out, a->n_allow_out, a->deny_out,
                                    a->n_deny_out, &s);
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
static const char *set_allow_out(cli_args *a, const char *v)
{
    if (a->n_allow_out >= CLI_MAX_LIST)
        return "at most 256 --allow-out";
    a->allow_out[a->n_allow_out++] = v;
    return NULL;
}

static const char *set_deny_out(cli_args *a, const char *v)
{
    if (a->n_deny_out >= CLI_MAX_LIST)
        return "at most 256 --deny-out";
    a->deny_out[a->n_deny_out++] = v;
    return NULL;
}

static const cli_opt sandbox_opts[] = {
    CLI_OPT_PROJECT,
    CLI_OPT_FLAG("all", 'a', all, "list: stopped sandboxes too"),
    CLI_OPT_FLAG("wipe-home", 0, wipe_home, "kill: delete the home directory too"),
    CLI_OPT_CALL("allow-out", 0, CLI_VAL, set_allow_out, "PATTERN",
                 "create, net: a destination the sandbox may reach (host, *.host, IP, CIDR, *; "
                 "optional :PORT); repeatable"),
    CLI_OPT_CALL("deny-out", 0, CLI_VAL, set_deny_out, "PATTERN",
                 "create, net: a destination it may not reach (wins over --allow-out); repeatable"),
    CLI_OPT_FLAG("none", 0, net_none, "net: no egress at all"),
    CLI_OPT_END,
};

static int sandbox_finish(cli_args *a, char **pos, size_t np, cli_err *e)
{
    if (strcmp(a->sub, "list") != 0 && cli_need_project(a, e))
        return -1;
    bool lists = a->n_allow_out || a->n_deny_out;
    bool is_net = strcmp(a->sub, "net") == 0;
    if (lists && !is_net && strcmp(a->sub, "create") != 0)
        return cli_bad(e, "--allow-out/--deny-out go with create or net");
    if (a->net_none && !is_net)
        return cli_bad(e, "--none goes with net");
    if (is_net && a->net_none == lists)
        return cli_bad(e, a->net_none ? "--none and --allow-out/--deny-out exclude each other"
                                      : "net needs --allow-out/--deny-out PATTERN... or --none");
    if (is_net)
        return cli_npos(e, np, 0, 0,
                        "sbx sandbox net -p PROJ [--allow-out P]... [--deny-out P]... | --none");
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
    .subs = "create|get|list|kill|timeout|net",
    .synopsis = "sbx sandbox create -p PROJ [--allow-out PATTERN]... [--deny-out PATTERN]...\n"
                "sbx sandbox get|kill -p PROJ [--wipe-home]\n"
                "sbx sandbox list [-p PROJ] [--all]\n"
                "sbx sandbox timeout -p PROJ SECONDS\n"
                "sbx sandbox net -p PROJ [--allow-out PATTERN]... [--deny-out PATTERN]... | --none",
    .summary = "Sandbox lifecycle: create (or return) the project's sandbox, show it, list "
               "them, kill it, or set its idle timeout (0..604800 seconds). Network egress: a "
               "sandbox reaches nothing but its loopback unless its policy allows destinations "
               "(--allow-out; --deny-out wins); commands then find HTTP(S)_PROXY and ALL_PROXY "
               "set to the executor's filtering proxies. `net` replaces the policy of the running "
               "sandbox (new connections follow it); `net --none` removes all egress.",
    .opts = sandbox_opts,
    .finish = sandbox_finish,
    .run = run_sandbox,
};
