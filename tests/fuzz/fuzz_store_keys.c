/* fuzz_store_keys.c: the store engine's byte-level decoding (services/store/keys.c). Page
 * tokens come back from clients verbatim, so sdb__token_decode sees anything; keys read back
 * from RocksDB are split with the u16-length reader. Modes (byte 0 % 4):
 *   0  the rest is a token as a client sends it; a token that decodes must re-encode to the
 *      very same text (the encoding is canonical) for its tenant/scope/kind
 *   1  the rest is a raw token body that gets a valid checksum (and, with bit 7, the right
 *      tenant binding) before base64url: reaches the cursor parser behind the checksum
 *   2  the rest is a stored key: split/split_scope must stay inside it and rebuild it exactly;
 *      sdb__buf_successor must give the smallest key above every key with that prefix
 *   3  the rest is a cursor: encode then decode must give it back
 * Byte 1 picks the tenant, scope and kind. Field validators see every piece. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keys.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_store_keys: %s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const char *const TENANTS[] = {"default", "t1", "@service", ""};
static const char *const SCOPES[] = {"", "proj-1", "p", "a/b"};

static size_t b64u(const uint8_t *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = tab[(v >> 6) & 63];
        out[o++] = tab[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = tab[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

/* The token checksum as documented in keys.c: FNV-1a of a public salt and the body. */
static uint32_t tok_check(const uint8_t *p, size_t n)
{
    sdb_slice salt = {"sbx-store-token", 15}, s = {(const char *)p, n};
    return (uint32_t)(sdb__hash(salt, s) >> 16);
}

static void mode_token(int kind, sdb_slice tenant, sdb_slice scope, const uint8_t *p, size_t n)
{
    char *tok = malloc(n ? n : 1); /* exact size, not NUL-terminated */
    CHECK(tok);
    memcpy(tok, p, n);
    char cur[SDB_TOKEN_MAX], err[256];
    size_t cn = (size_t)-1;
    int rc = sdb__token_decode("page_token", kind, tenant, scope, sdb_slice_n(tok, n), cur, &cn,
                               err, sizeof err);
    if (rc == SBX_OK) {
        CHECK(cn < SDB_TOKEN_MAX);
        char again[SDB_TOKEN_MAX];
        sdb__token_encode(kind, tenant, scope, cur, cn, again);
        if (strlen(again) != n || memcmp(again, tok, n) != 0) {
            fprintf(stderr, "fuzz_store_keys: token decodes but is not canonical\n");
            abort();
        }
    } else {
        CHECK(rc == SBX_INVALID_ARGUMENT && err[0]);
    }
    free(tok);
}

static void mode_forge(int kind, bool bind, sdb_slice tenant, sdb_slice scope, const uint8_t *p,
                       size_t n)
{
    if (n > 3000)
        return;
    uint8_t *raw = malloc(n + 4);
    CHECK(raw);
    memcpy(raw, p, n);
    if (bind && n >= 10) {
        uint64_t h = sdb__hash(tenant, scope);
        for (int i = 0; i < 8; i++)
            raw[2 + i] = (uint8_t)(h >> (56 - 8 * i));
        raw[1] = (uint8_t)kind;
    }
    uint32_t c = tok_check(raw, n);
    raw[n] = (uint8_t)(c >> 24);
    raw[n + 1] = (uint8_t)(c >> 16);
    raw[n + 2] = (uint8_t)(c >> 8);
    raw[n + 3] = (uint8_t)c;
    char *tok = malloc(((n + 4) * 4) / 3 + 4);
    CHECK(tok);
    size_t tn = b64u(raw, n + 4, tok);
    char cur[SDB_TOKEN_MAX], err[256];
    size_t cn = 0;
    int rc = sdb__token_decode("page_token", kind, tenant, scope, sdb_slice_n(tok, tn), cur, &cn,
                               err, sizeof err);
    if (rc == SBX_OK) {
        /* ver, kind, bind(8), u16 length, cursor */
        CHECK(n >= 12 && raw[0] == 1 && raw[1] == (uint8_t)kind);
        size_t want = ((size_t)raw[10] << 8) | raw[11];
        CHECK(want == n - 12 && cn == want && memcmp(cur, raw + 12, cn) == 0);
    } else {
        CHECK(rc == SBX_INVALID_ARGUMENT && err[0]);
    }
    free(tok);
    free(raw);
}

static void mode_keys(const uint8_t *p, size_t n)
{
    char *k = malloc(n ? n : 1);
    CHECK(k);
    memcpy(k, p, n);
    sdb_slice t, pr, rest;
    sdb__buf b;
    sdb__buf_init(&b);
    if (sdb__key_split(k, n, &t, &rest)) {
        CHECK(t.n + rest.n + 2 == n && rest.p == k + n - rest.n);
        sdb__key_project(&b, t, rest);
        CHECK(b.n == n && memcmp(b.p, k, n) == 0);
    }
    if (sdb__key_split_scope(k, n, &t, &pr, &rest)) {
        CHECK(t.n + pr.n + rest.n + 4 == n && rest.p == k + n - rest.n);
        sdb__key_meta(&b, t, pr, 0, rest); /* rebuild as scope + raw rest (tag byte cut) */
        CHECK(b.n == n + 1);
        b.n--;
        CHECK(memcmp(b.p, k, 2 + t.n + 2 + pr.n) == 0);
    }
    /* successor: greater than the prefix and than any extension of it */
    sdb__buf_reset(&b);
    sdb__buf_raw(&b, k, n);
    if (sdb__buf_successor(&b)) {
        CHECK(b.n >= 1 && b.n <= n);
        size_t m = b.n < n ? b.n : n;
        int c = memcmp(b.p, k, m);
        CHECK(c > 0); /* differs within the common length, so greater than every extension */
        CHECK(memcmp(b.p, k, b.n - 1) == 0);
        CHECK((uint8_t)b.p[b.n - 1] == (uint8_t)k[b.n - 1] + 1);
        for (size_t i = b.n; i < n; i++)
            CHECK((uint8_t)k[i] == 0xff);
    } else {
        for (size_t i = 0; i < n; i++)
            CHECK((uint8_t)k[i] == 0xff);
    }
    sdb__buf_free(&b);

    char err[256];
    sdb_slice s = sdb_slice_n(k, n);
    bool nul = n && memchr(k, 0, n);
    int rc = sdb__check_tenant(s, err, sizeof err);
    CHECK((rc == SBX_OK) == (n >= 1 && n <= SDB_TENANT_MAX && !nul));
    rc = sdb__check_project(s, err, sizeof err);
    bool ok = n >= 1 && n <= SDB_PROJECT_ID_MAX;
    for (size_t i = 0; ok && i < n; i++) {
        char c = k[i];
        bool alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        ok = alnum || (i > 0 && (c == '.' || c == '_' || c == '-'));
    }
    CHECK((rc == SBX_OK) == ok);
    free(k);
}

static void mode_roundtrip(int kind, sdb_slice tenant, sdb_slice scope, const uint8_t *p, size_t n)
{
    if (n > 2048)
        return;
    char tok[SDB_TOKEN_MAX], cur[SDB_TOKEN_MAX], err[256];
    sdb__token_encode(kind, tenant, scope, p, n, tok);
    CHECK(tok[0]);
    size_t cn = 0;
    int rc = sdb__token_decode("page_token", kind, tenant, scope, sdb_slice_c(tok), cur, &cn, err,
                               sizeof err);
    CHECK(rc == SBX_OK && cn == n && memcmp(cur, p, n) == 0);
    /* a token is bound to its listing */
    if (strcmp(tenant.p, "t1") != 0) {
        rc = sdb__token_decode("page_token", kind, sdb_slice_c("t1"), scope, sdb_slice_c(tok), cur,
                               &cn, err, sizeof err);
        CHECK(rc == SBX_INVALID_ARGUMENT);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > 8192)
        return 0;
    int mode = data[0] % 4;
    uint8_t sel = data[1];
    sdb_slice tenant = sdb_slice_c(TENANTS[sel & 3]);
    sdb_slice scope = sdb_slice_c(SCOPES[(sel >> 2) & 3]);
    int kind = 1 + ((sel >> 4) % 3);
    const uint8_t *p = data + 2;
    size_t n = size - 2;
    switch (mode) {
    case 0:
        mode_token(kind, tenant, scope, p, n);
        break;
    case 1:
        mode_forge(kind, (sel & 0x80) != 0, tenant, scope, p, n);
        break;
    case 2:
        mode_keys(p, n);
        break;
    case 3:
        mode_roundtrip(kind, tenant, scope, p, n);
        break;
    }
    return 0;
}
