/* auth.h: API keys. A keys file holds one key per line as `TENANT:SHA256HEX` (the SHA-256 of
 * the key, lowercase or uppercase hex); `@service:SHA256HEX` is a service principal that may act
 * for any tenant; `#` starts a comment; blank lines are ignored. Calls carry
 * `authorization: Bearer <key>`. */
#ifndef SBX_AUTH_H
#define SBX_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#define SBX_TENANT_MAX 64

typedef struct sbx_auth sbx_auth;

/* Parses keys-file text. Returns NULL and writes "line N: ..." into err on a malformed line. */
sbx_auth *sbx_auth_parse(const char *text, size_t len, char *err, size_t errlen);
/* Reads and parses a file; NULL with the reason in err. */
sbx_auth *sbx_auth_load(const char *path, char *err, size_t errlen);
void sbx_auth_free(sbx_auth *a);
size_t sbx_auth_count(const sbx_auth *a);

/* Checks an `authorization` header value. Returns 0 and sets *tenant (points into a, valid while
 * a lives; "@service" for service principals) and *is_service; -1 when the value is not
 * "Bearer <key>" (malformed), -2 when the key is unknown. */
int sbx_auth_check(const sbx_auth *a, const char *authorization, size_t len, const char **tenant,
                   bool *is_service);

/* Lowercase hex SHA-256 of data into out (65 bytes with NUL). */
void sbx_sha256_hex(const void *data, size_t len, char out[65]);

/* A tenant name is 1..64 bytes of [A-Za-z0-9._-]. */
bool sbx_tenant_valid(const char *t, size_t len);

/* True when the host of "HOST:PORT" is a loopback address (127.0.0.0/8, ::1, localhost). */
bool sbx_addr_is_loopback(const char *addr);

#endif
