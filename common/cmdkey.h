/* cmdkey.h: the cache key of a command, one definition for every component (the executor
 * computes it when it caches a result, libsbx when `sbx cache clear -- CMD` names one).
 * SHA-256 (lowercase hex) over length-prefixed items (4-byte big-endian length + bytes):
 *   "sbx.cmdkey.v1" | "argv" N arg... or "shell" str | normalized cwd | M "K=V"... (sorted) | stdin
 * The cwd is made absolute against /home/user and lexically normalized. */
#ifndef SBX_CMDKEY_H
#define SBX_CMDKEY_H

#include <stddef.h>

/* Writes the key into out (64 hex digits + NUL). shell != NULL selects the shell form (argv is
 * then ignored). env holds "K=V" strings in any order. Returns 0 or -ENOMEM. */
int sbx_cmdkey(const char *const *argv, size_t argc, const char *shell, const char *cwd,
               const char *const *env, size_t n_env, const void *stdin_data, size_t stdin_len,
               char out[65]);

/* "/home/user" joined with cwd and normalized ("." and ".." and "//"); malloc'd, NULL on ENOMEM. */
char *sbx_cmdkey_normalize_cwd(const char *cwd);

#endif
