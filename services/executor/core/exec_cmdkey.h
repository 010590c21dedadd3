/* exec_cmdkey.h: the cache key of an ExecRequest; the encoding is common/cmdkey.h (libsbx uses
 * the same), so `sbx cache clear -- CMD` names the entry the executor stored:
 * SHA-256 (lowercase hex) over length-prefixed items (4-byte big-endian length + bytes):
 *   "sbx.cmdkey.v1" | "argv" N arg... or "shell" str | normalized cwd | M "K=V"... (sorted) | stdin
 * The cwd is made absolute against /home/user and lexically normalized; env is the request's
 * env map (not the sandbox's). */
#ifndef SBX_EXEC_CMDKEY_H
#define SBX_EXEC_CMDKEY_H

#include <stddef.h>

#include "sbx/v1/executor.pb-c.h"

/* Key of an ExecRequest's command into out (65 bytes, NUL-terminated). Returns 0 or -ENOMEM. */
int exk_command_key(const Sbx__V1__ExecRequest *r, char out[65]);

/* "/home/user" joined with cwd and normalized (".", "..", "//"); malloc'd or NULL (ENOMEM). */
char *exk_normalize_cwd(const char *cwd);

#endif
