/* keygen.c: new API keys. A key is "sbx_" + 256 random bits in base64url; the services store
 * only its SHA-256 (the "TENANT:SHA256HEX" keys-file line). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "sbx_internal.h"

static void b64url(const uint8_t *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = tab[v >> 6 & 63];
        out[o++] = tab[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = tab[v >> 6 & 63];
    }
    out[o] = 0;
}

sbx_error *sbx_keygen(const char *tenant, char **key, char **keys_line)
{
    *key = NULL;
    *keys_line = NULL;
    if (!tenant || !sbx_tenant_valid(tenant, strlen(tenant)))
        return sbx_error_new(SBX_CODE_INVALID_ARGUMENT,
                             "tenant \"%s\" must be 1..64 bytes of [A-Za-z0-9._-]",
                             tenant ? tenant : "");
    uint8_t raw[32];
    FILE *f = fopen("/dev/urandom", "re");
    size_t got = f ? fread(raw, 1, sizeof raw, f) : 0;
    if (f)
        fclose(f);
    if (got != sizeof raw && sbx__random(raw, sizeof raw) != 0)
        return sbx_error_new(SBX_CODE_INTERNAL, "cannot read /dev/urandom");
    char enc[48];
    b64url(raw, sizeof raw, enc);
    char *k = NULL, *line = NULL;
    if (asprintf(&k, "sbx_%s", enc) < 0)
        return sbx__error_oom();
    char hex[65];
    sbx_sha256_hex(k, strlen(k), hex);
    if (asprintf(&line, "%s:%s", tenant, hex) < 0) {
        free(k);
        return sbx__error_oom();
    }
    *key = k;
    *keys_line = line;
    return NULL;
}
