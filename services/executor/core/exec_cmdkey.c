/* exec_cmdkey.c: the cache key of an ExecRequest, through the one definition in common/cmdkey.c
 * (libsbx uses the same, so `sbx cache clear -- CMD` names the entry the executor stored). */
#include "exec_cmdkey.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmdkey.h"

char *exk_normalize_cwd(const char *cwd)
{
    return sbx_cmdkey_normalize_cwd(cwd);
}

int exk_command_key(const Sbx__V1__ExecRequest *r, char out[65])
{
    bool shell = r->command_case == SBX__V1__EXEC_REQUEST__COMMAND_SHELL;
    size_t argc = !shell && r->argv ? r->argv->n_args : 0;
    char **env = r->n_env ? calloc(r->n_env, sizeof *env) : NULL;
    int rc = 0;
    if (r->n_env && !env)
        return -ENOMEM;
    for (size_t i = 0; i < r->n_env; i++) {
        if (asprintf(&env[i], "%s=%s", r->env[i]->key, r->env[i]->value) < 0) {
            env[i] = NULL;
            rc = -ENOMEM;
            break;
        }
    }
    if (rc == 0)
        rc = sbx_cmdkey((const char *const *)(argc ? r->argv->args : NULL), argc,
                        shell ? r->shell : NULL, r->cwd, (const char *const *)env, r->n_env,
                        r->stdin.data, r->stdin.data ? r->stdin.len : 0, out);
    for (size_t i = 0; i < r->n_env; i++)
        free(env[i]);
    free(env);
    return rc;
}
