/* cmd_serve.c: `sbx serve -p PROJ --port N -- CMD...`: start a dev server in the background,
 * wait (in the executor) until HTTP on the port answers, print its URL. */
#include <stdio.h>

#include "cli.h"

static int run_serve(cli_args *a, sbx_client *c)
{
    sbx_dev_server_req r = {
        .project_id = a->project,
        .argv = (const char *const *)a->argv,
        .argc = a->argc,
        .cwd = a->cwd,
        .env = a->env,
        .n_env = a->n_env,
        .port = a->port,
        .ready_path = a->ready_path,
        .ready_timeout_ms = a->ready_timeout_ms,
        .tag = a->tag,
        .keep_on_failure = a->keep_on_failure,
    };
    sbx_dev_server *d = NULL;
    sbx_error *e = sbx_dev_server_start(c, &r, &d);
    if (e)
        return cli_fail("serve", e);
    if (a->json) {
        fputs("{\"url\":", stdout);
        json_cstr(stdout, d->url);
        fprintf(stdout, ",\"pid\":%d}\n", d->pid);
    } else {
        fprintf(stdout, "%s\n", d->url);
    }
    sbx_dev_server_free(d);
    return 0;
}

/* ---- the command line */
static const char *set_ready_path(cli_args *a, const char *v)
{
    if (v[0] != '/')
        return "must start with /";
    a->ready_path = v;
    return NULL;
}

static const char *set_ready_timeout(cli_args *a, const char *v)
{
    int64_t ms;
    if (cli_parse_seconds_ms(v, &ms) != 0 || ms <= 0 || ms > 600000)
        return "want seconds, at most 600";
    a->ready_timeout_ms = ms;
    return NULL;
}

static const cli_opt serve_opts[] = {
    CLI_OPT_PROJECT,
    CLI_OPT_U32("port", 0, port, 1, 65535, "N", "want a TCP port 1..65535",
                "the port the server listens on inside the sandbox"),
    CLI_OPT_CALL("ready-path", 0, CLI_VAL, set_ready_path, "PATH",
                 "HTTP path that must answer (default /)"),
    CLI_OPT_CALL("ready-timeout", 0, CLI_VAL, set_ready_timeout, "S",
                 "seconds to wait for it to answer (at most 600)"),
    CLI_OPT_TAG("name the server process (the same tag: the same server)"),
    CLI_OPT_CWD("working directory"),
    CLI_OPT_ENV("an environment variable (repeatable)"),
    CLI_OPT_FLAG("keep-on-failure", 0, keep_on_failure,
                 "leave the process running when it does not become ready"),
    CLI_OPT_END,
};

static int serve_finish(cli_args *a, char **pos, size_t np, cli_err *e)
{
    (void)pos;
    (void)np; /* a trailing command: no positionals of its own */
    if (cli_need_project(a, e))
        return -1;
    if (!a->port)
        return cli_bad(e, "missing --port N");
    if (a->argc == 0)
        return cli_bad(e, "missing the command (usage: sbx serve -p PROJ --port N -- CMD...)");
    return 0;
}

const cli_command cli_cmd_serve = {
    .name = "serve",
    .brief = "start a dev server and print its URL",
    .cmd = CMD_SERVE,
    .trailing = true,
    .synopsis = "sbx serve -p PROJ --port N [--ready-path /] [--ready-timeout S] [--tag T]\n"
                "  [--cwd D] [--env K=V]... [--keep-on-failure] [--] CMD [ARG...]",
    .summary = "Starts a dev server in the background, waits until HTTP on that port answers, "
               "prints its URL (http://HOST:PORT/) on stdout.",
    .opts = serve_opts,
    .finish = serve_finish,
    .run = run_serve,
};
