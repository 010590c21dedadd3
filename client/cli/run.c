/* run.c: `sbx` after parsing: the client built from the global options, then the command's
 * run function (the commands that need no service run without one). */
#include <stdio.h>

#include "cli.h"

int cli_run(cli_args *a)
{
    if (a->cmd == CMD_HELP)
        return cli_cmd_help.run(a, NULL);
    if (a->cmd == CMD_VERSION)
        return cli_cmd_version.run(a, NULL);
    const cli_command *cmd = a->command;
    if (!cmd)
        return cli_usage_error("no command given (try: sbx help)");
    if (cmd->offline)
        return cmd->run(a, NULL);
    sbx_config cfg = {
        .executor = a->executor,
        .store = a->store,
        .api_key = a->api_key,
        .tls_ca = a->tls_ca,
        .tls_cert = a->tls_cert,
        .tls_key = a->tls_key,
        .tls_server_name = a->tls_server_name,
        .deadline_ms = a->deadline_set ? a->deadline_ms : 0,
    };
    sbx_client *c = NULL;
    sbx_error *e = sbx_client_new(&cfg, &c);
    if (e) {
        int rc = cli_usage_error("%s", e->message);
        sbx_error_free(e);
        return rc;
    }
    int rc = cmd->run(a, c);
    fflush(stdout);
    sbx_client_free(c);
    return rc;
}
