/* auth.c: keys-file parsing and bearer-key lookup. Keys are compared by their SHA-256 so the
 * file never holds a usable secret. Lookup is a sorted array + binary search. */
#include "auth.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct entry {
    char hash[65];
    char tenant[SBX_TENANT_MAX + 1];
    bool service;
};

struct sbx_auth {
    struct entry *e;
    size_t n;
};

void sbx_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

bool sbx_tenant_valid(const char *t, size_t len)
{
    if (len == 0 || len > SBX_TENANT_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)t[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-')
            return false;
    }
    return true;
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const struct entry *)a)->hash, ((const struct entry *)b)->hash);
}

sbx_auth *sbx_auth_parse(const char *text, size_t len, char *err, size_t errlen)
{
    sbx_auth *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    size_t cap = 0;
    int lineno = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        lineno++;
        /* trim */
        const char *s = p, *e = le;
        while (s < e && isspace((unsigned char)*s))
            s++;
        while (e > s && isspace((unsigned char)e[-1]))
            e--;
        p = nl ? nl + 1 : end;
        if (s == e || *s == '#')
            continue;
        const char *colon = memchr(s, ':', (size_t)(e - s));
        if (!colon) {
            snprintf(err, errlen, "line %d: expected TENANT:SHA256HEX", lineno);
            goto fail;
        }
        size_t tlen = (size_t)(colon - s), hlen = (size_t)(e - colon - 1);
        bool service = tlen == 8 && memcmp(s, "@service", 8) == 0;
        if (!service && !sbx_tenant_valid(s, tlen)) {
            snprintf(err, errlen,
                     "line %d: tenant must be 1..%d characters of [A-Za-z0-9._-] or @service",
                     lineno, SBX_TENANT_MAX);
            goto fail;
        }
        if (hlen != 64) {
            snprintf(err, errlen,
                     "line %d: hash must be 64 hex digits (SHA-256), got %zu characters", lineno,
                     hlen);
            goto fail;
        }
        if (a->n == cap) {
            cap = cap ? cap * 2 : 16;
            struct entry *ne = realloc(a->e, cap * sizeof *ne);
            if (!ne) {
                snprintf(err, errlen, "out of memory");
                goto fail;
            }
            a->e = ne;
        }
        struct entry *en = &a->e[a->n];
        for (size_t i = 0; i < 64; i++) {
            char c = colon[1 + i];
            if (!isxdigit((unsigned char)c)) {
                snprintf(err, errlen, "line %d: hash has a non-hex character at position %zu",
                         lineno, i + 1);
                goto fail;
            }
            en->hash[i] = (char)tolower((unsigned char)c);
        }
        en->hash[64] = '\0';
        memcpy(en->tenant, s, tlen);
        en->tenant[tlen] = '\0';
        en->service = service;
        a->n++;
    }
    if (a->n > 1)
        qsort(a->e, a->n, sizeof *a->e, cmp_entry);
    for (size_t i = 1; i < a->n; i++)
        if (strcmp(a->e[i - 1].hash, a->e[i].hash) == 0 &&
            strcmp(a->e[i - 1].tenant, a->e[i].tenant) != 0) {
            snprintf(err, errlen, "the same key hash is listed for tenants %s and %s",
                     a->e[i - 1].tenant, a->e[i].tenant);
            goto fail;
        }
    return a;
fail:
    sbx_auth_free(a);
    return NULL;
}

sbx_auth *sbx_auth_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 8192;
            if (cap > (64u << 20)) {
                snprintf(err, errlen, "%s: larger than 64 MiB", path);
                goto fail;
            }
            char *nb = realloc(buf, cap);
            if (!nb) {
                snprintf(err, errlen, "out of memory");
                goto fail;
            }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0)
            break;
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: read error", path);
        goto fail;
    }
    fclose(f);
    char perr[200];
    sbx_auth *a = sbx_auth_parse(buf ? buf : "", len, perr, sizeof perr);
    free(buf);
    if (!a)
        snprintf(err, errlen, "%s: %s", path, perr);
    return a;
fail:
    fclose(f);
    free(buf);
    return NULL;
}

void sbx_auth_free(sbx_auth *a)
{
    if (!a)
        return;
    free(a->e);
    free(a);
}

size_t sbx_auth_count(const sbx_auth *a)
{
    return a ? a->n : 0;
}

int sbx_auth_check(const sbx_auth *a, const char *v, size_t len, const char **tenant,
                   bool *is_service)
{
    if (len < 8 || strncasecmp(v, "Bearer ", 7) != 0)
        return -1;
    const char *k = v + 7;
    size_t klen = len - 7;
    while (klen && *k == ' ') {
        k++;
        klen--;
    }
    if (klen == 0)
        return -1;
    struct entry key;
    sbx_sha256_hex(k, klen, key.hash);
    const struct entry *e = a && a->n ? bsearch(&key, a->e, a->n, sizeof *a->e, cmp_entry) : NULL;
    if (!e)
        return -2;
    *tenant = e->tenant;
    *is_service = e->service;
    return 0;
}

bool sbx_addr_is_loopback(const char *addr)
{
    if (!addr)
        return false;
    if (strncmp(addr, "ipv4:", 5) == 0 || strncmp(addr, "ipv6:", 5) == 0)
        addr += 5;
    if (strncmp(addr, "unix:", 5) == 0)
        return true;
    /* split HOST:PORT ([V6]:PORT) and look at the host only: a name that merely starts with
     * "127." is not a loopback address */
    char host[256];
    const char *end;
    if (addr[0] == '[') {
        end = strchr(addr, ']');
        if (!end || (size_t)(end - addr - 1) >= sizeof host)
            return false;
        memcpy(host, addr + 1, (size_t)(end - addr - 1));
        host[end - addr - 1] = '\0';
    } else {
        end = strrchr(addr, ':');
        size_t n = end ? (size_t)(end - addr) : strlen(addr);
        if (n >= sizeof host)
            return false;
        memcpy(host, addr, n);
        host[n] = '\0';
    }
    if (strcmp(host, "localhost") == 0)
        return true;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}
