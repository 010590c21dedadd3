/* cmd_keygen.c: `sbx keygen --tenant NAME`: a new random API key on the first line and its
 * keys-file line (NAME:SHA256HEX) on the second. Runs without contacting any service. */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

static int run_keygen(cli_args *a, sbx_client *c)
{
    (void)c; /* offline */
    char *key = NULL, *line = NULL;
    sbx_error *e = sbx_keygen(a->tenant, &key, &line);
    if (e) {
        int rc = e->code == SBX_CODE_INVALID_ARGUMENT ? CLI_EXIT_USAGE : cli_exit_code(e);
        fprintf(stderr, "sbx: keygen: %s\n", e->message);
        sbx_error_free(e);
        return rc;
    }
    if (a->json) {
        fputs("{\"tenant\":", stdout);
        json_cstr(stdout, a->tenant);
        fputs(",\"key\":", stdout);
        json_cstr(stdout, key);
        fputs(",\"keys_file_line\":", stdout);
        json_cstr(stdout, line);
        fputs("}\n", stdout);
    } else {
        fprintf(stdout, "%s\n%s\n", key, line);
    }
    free(key);
    free(line);
    return 0;
}

/* ---- the command line */
static const cli_opt keygen_opts[] = {
    CLI_OPT_STR("tenant", 0, tenant, "NAME", "the tenant the key acts for"),
    CLI_OPT_END,
};

static int keygen_finish(cli_args *a, char **pos, size_t np, cli_err *e)
{
    (void)pos;
    if (cli_npos(e, np, 0, 0, "sbx keygen --tenant NAME"))
        return -1;
    return a->tenant ? 0 : cli_bad(e, "missing --tenant NAME");
}

const cli_command cli_cmd_keygen = {
    .name = "keygen",
    .brief = "make an API key and its keys-file line",
    .cmd = CMD_KEYGEN,
    .offline = true,
    .synopsis = "sbx keygen --tenant NAME",
    .summary = "Prints a new random API key on the first line and its keys-file line "
               "(NAME:SHA256HEX) on the second; no service is contacted.",
    .opts = keygen_opts,
    .finish = keygen_finish,
    .run = run_keygen,
};
