/* cmdkey.c: libsbx's name for a command's cache key; the definition is common/cmdkey.c, shared
 * with the executor so both name the same cache entry. */
#include "cmdkey.h"
#include "sbx_internal.h"

void sbx_command_key(const char *const *argv, size_t argc, const char *shell, const char *cwd,
                     const char *const *env, size_t n_env, const void *stdin_data, size_t stdin_len,
                     char out[65])
{
    sbx_cmdkey(argv, argc, shell, cwd, env, n_env, stdin_data, stdin_len, out);
}
