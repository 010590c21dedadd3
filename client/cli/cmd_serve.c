/* cmd_serve.c: `sbx serve -p PROJ --port N -- CMD...`: start a dev server in the background,
 * wait (in the executor) until HTTP on the port answers, print its URL. */
#include <stdio.h>

#include "cli.h"

int cmd_serve(cli_args *a, sbx_client *c)
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
