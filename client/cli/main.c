/* main.c (sbx): parse the command line, run the command, exit with its status. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

static const char *env_get(const char *name)
{
    return getenv(name);
}

int main(int argc, char **argv)
{
    /* a closed pipe (sbx ... | head) must end us quietly, as for any Unix filter */
    signal(SIGPIPE, SIG_DFL);
    cli_args a;
    cli_defaults(&a, env_get);
    char err[512];
    if (cli_parse(argc, argv, &a, err, sizeof err) != 0) {
        fprintf(stderr, "sbx: %s\n", err);
        return CLI_EXIT_USAGE;
    }
    if (a.cmd == CMD_HELP || a.cmd == CMD_VERSION || a.command->offline)
        return cli_run(&a); /* no service: no gRPC */
    if ((a.cmd == CMD_EXEC || a.cmd == CMD_SH) && !a.background)
        cli_block_signals(); /* before gRPC starts its threads: they inherit the mask */
    if (a.cmd == CMD_TERM)
        cli_term_block_signals();
    sbx_global_init();
    int rc = cli_run(&a);
    fflush(stdout);
    sbx_global_cleanup();
    return rc;
}
