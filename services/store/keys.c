/* keys.c: how the store lays out bytes. A growable byte builder and a bounds-checked reader,
 * the tenant-prefixed, length-delimited key encoding (see keys.h), input validation
 * with messages that name the field and the limit, RocksDB error mapping, and the opaque page
 * tokens: base64url of (version, kind, binding to tenant + listing, cursor, checksum), so a
 * token is rejected when tampered with, truncated, or replayed by another tenant or listing.
 * The bottom of the engine: no state, no handle, calls no other engine file.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keys.h"

/* ---- byte builder ---- */

void sdb__buf_init(sdb__buf *b)
{
    b->p = b->inl;
    b->n = 0;
    b->cap = sizeof b->inl;
}

void sdb__buf_free(sdb__buf *b)
{
    if (b->p != b->inl)
        free(b->p);
    sdb__buf_init(b);
}

void sdb__buf_reset(sdb__buf *b)
{
    b->n = 0;
}

static void buf_reserve(sdb__buf *b, size_t extra)
{
    if (b->n + extra <= b->cap)
        return;
    size_t cap = b->cap * 2;
    while (cap < b->n + extra)
        cap *= 2;
    char *p;
    if (b->p == b->inl) {
        p = malloc(cap);
        if (p)
            memcpy(p, b->inl, b->n);
    } else {
        p = realloc(b->p, cap);
    }
    if (!p)
        abort(); /* out of memory: like the rest of the process (sbx_ctx_alloc aborts too) */
    b->p = p;
    b->cap = cap;
}

void sdb__buf_raw(sdb__buf *b, const void *p, size_t n)
{
    if (!n)
        return;
    buf_reserve(b, n);
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

void sdb__buf_u8(sdb__buf *b, uint8_t v)
{
    sdb__buf_raw(b, &v, 1);
}

static void buf_be16(sdb__buf *b, uint16_t v)
{
    unsigned char x[2] = {(unsigned char)(v >> 8), (unsigned char)v};
    sdb__buf_raw(b, x, 2);
}

void sdb__buf_be32(sdb__buf *b, uint32_t v)
{
    unsigned char x[4];
    for (int i = 0; i < 4; i++)
        x[i] = (unsigned char)(v >> (24 - 8 * i));
    sdb__buf_raw(b, x, 4);
}

void sdb__buf_be64(sdb__buf *b, uint64_t v)
{
    unsigned char x[8];
    sdb__be64_put(x, v);
    sdb__buf_raw(b, x, 8);
}

void sdb__buf_str(sdb__buf *b, sdb_slice s)
{
    buf_be16(b, (uint16_t)s.n);
    sdb__buf_raw(b, s.p, s.n);
}

void sdb__buf_copy(sdb__buf *dst, const sdb__buf *src)
{
    sdb__buf_reset(dst);
    sdb__buf_raw(dst, src->p, src->n);
}

bool sdb__buf_successor(sdb__buf *b)
{
    while (b->n > 0) {
        unsigned char c = (unsigned char)b->p[b->n - 1];
        if (c != 0xff) {
            b->p[b->n - 1] = (char)(c + 1);
            return true;
        }
        b->n--;
    }
    return false;
}

/* ---- reader ---- */

static const char *rd_take(sdb__rd *r, size_t n)
{
    if (r->bad || r->n < n) {
        r->bad = true;
        return NULL;
    }
    const char *p = r->p;
    r->p += n;
    r->n -= n;
    return p;
}

uint8_t sdb__rd_u8(sdb__rd *r)
{
    const char *p = rd_take(r, 1);
    return p ? (uint8_t)p[0] : 0;
}

static uint16_t rd_be16(sdb__rd *r)
{
    const unsigned char *p = (const unsigned char *)rd_take(r, 2);
    return p ? (uint16_t)((p[0] << 8) | p[1]) : 0;
}

uint32_t sdb__rd_be32(sdb__rd *r)
{
    const unsigned char *p = (const unsigned char *)rd_take(r, 4);
    if (!p)
        return 0;
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

uint64_t sdb__rd_be64(sdb__rd *r)
{
    const char *p = rd_take(r, 8);
    return p ? sdb__be64(p) : 0;
}

sdb_slice sdb__rd_bytes(sdb__rd *r, size_t n)
{
    const char *p = rd_take(r, n);
    sdb_slice s = {p ? p : "", p ? n : 0};
    return s;
}

sdb_slice sdb__rd_str(sdb__rd *r)
{
    uint16_t n = rd_be16(r);
    return sdb__rd_bytes(r, n);
}

/* ---- keys ---- */

void sdb__key_tenant(sdb__buf *b, sdb_slice tenant)
{
    sdb__buf_reset(b);
    sdb__buf_str(b, tenant);
}

void sdb__key_project(sdb__buf *b, sdb_slice tenant, sdb_slice project)
{
    sdb__key_tenant(b, tenant);
    sdb__buf_raw(b, project.p, project.n);
}

void sdb__key_scope(sdb__buf *b, sdb_slice tenant, sdb_slice project)
{
    sdb__key_tenant(b, tenant);
    sdb__buf_str(b, project);
}

void sdb__key_hist(sdb__buf *b, sdb_slice tenant, sdb_slice project, uint64_t seq)
{
    sdb__key_scope(b, tenant, project);
    sdb__buf_be64(b, seq);
}

void sdb__key_meta(sdb__buf *b, sdb_slice tenant, sdb_slice project, char tag, sdb_slice suffix)
{
    sdb__key_scope(b, tenant, project);
    sdb__buf_u8(b, (uint8_t)tag);
    sdb__buf_raw(b, suffix.p, suffix.n);
}

void sdb__key_cache(sdb__buf *b, sdb_slice tenant, sdb_slice project, uint64_t gen, sdb_slice cmd)
{
    sdb__key_scope(b, tenant, project);
    sdb__buf_be64(b, gen);
    sdb__buf_raw(b, cmd.p, cmd.n);
}

void sdb__key_kv(sdb__buf *b, sdb_slice tenant, sdb_slice key)
{
    sdb__key_tenant(b, tenant);
    sdb__buf_raw(b, key.p, key.n);
}

bool sdb__key_split(const char *k, size_t n, sdb_slice *tenant, sdb_slice *rest)
{
    sdb__rd r = sdb__rd_init(k, n);
    *tenant = sdb__rd_str(&r);
    rest->p = r.p;
    rest->n = r.n;
    return !r.bad;
}

bool sdb__key_split_scope(const char *k, size_t n, sdb_slice *tenant, sdb_slice *project,
                          sdb_slice *rest)
{
    sdb__rd r = sdb__rd_init(k, n);
    *tenant = sdb__rd_str(&r);
    *project = sdb__rd_str(&r);
    rest->p = r.p;
    rest->n = r.n;
    return !r.bad;
}

/* FNV-1a 64 over a, a separator, b. */
uint64_t sdb__hash(sdb_slice a, sdb_slice b)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < a.n; i++)
        h = (h ^ (unsigned char)a.p[i]) * 1099511628211ull;
    h = (h ^ 0xffu) * 1099511628211ull;
    for (size_t i = 0; i < b.n; i++)
        h = (h ^ (unsigned char)b.p[i]) * 1099511628211ull;
    /* final avalanche so that the low bits (stripe index) depend on every byte */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

/* ---- validation and errors ---- */

int sdb__err(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

int sdb__check_bytes(const char *field, sdb_slice s, size_t max, bool allow_empty, char *err,
                     size_t errlen)
{
    if (s.n == 0 && !allow_empty)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT, "%s: must not be empty", field);
    if (s.n > max)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                        "%s: %zu bytes exceeds the limit of %zu bytes", field, s.n, max);
    if (s.n && !s.p)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT, "%s: NULL data", field);
    const char *z = s.n ? memchr(s.p, '\0', s.n) : NULL;
    if (z)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT, "%s: contains a NUL byte at offset %zu",
                        field, (size_t)(z - s.p));
    return SBX_OK;
}

int sdb__check_size(const char *field, size_t n, size_t max, char *err, size_t errlen)
{
    if (n > max)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                        "%s: %zu bytes exceeds the limit of %zu bytes", field, n, max);
    return SBX_OK;
}

int sdb__check_tenant(sdb_slice tenant, char *err, size_t errlen)
{
    return sdb__check_bytes("tenant", tenant, SDB_TENANT_MAX, false, err, errlen);
}

static bool id_char(char c, bool first)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
        return true;
    return !first && (c == '.' || c == '_' || c == '-');
}

int sdb__check_project(sdb_slice project, char *err, size_t errlen)
{
    int rc = sdb__check_bytes("project_id", project, SDB_PROJECT_ID_MAX, false, err, errlen);
    if (rc)
        return rc;
    for (size_t i = 0; i < project.n; i++)
        if (!id_char(project.p[i], i == 0))
            return sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                            "project_id: byte %zu (0x%02x) is not allowed: 1..%d bytes of "
                            "[A-Za-z0-9][A-Za-z0-9._-]*",
                            i, (unsigned char)project.p[i], SDB_PROJECT_ID_MAX);
    return SBX_OK;
}

int sdb__check_limit(bool has, int64_t limit, uint32_t def, sdb_page *page, char *err,
                     size_t errlen)
{
    memset(page, 0, sizeof *page);
    if (!has) {
        page->applied_limit = def;
        return SBX_OK;
    }
    if (limit < 1)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT, "limit: %lld must be 1..%d",
                        (long long)limit, SDB_LIST_MAX);
    if (limit > SDB_LIST_MAX) {
        page->applied_limit = SDB_LIST_MAX;
        page->clamped = true;
    } else {
        page->applied_limit = (uint32_t)limit;
    }
    return SBX_OK;
}

int sdb__rocks_status(const char *e)
{
    if (!e)
        return SBX_OK;
    if (strstr(e, "No space left") || strstr(e, "Disk quota") || strstr(e, "ENOSPC"))
        return SBX_RESOURCE_EXHAUSTED;
    if (strncmp(e, "Corruption", 10) == 0 || strstr(e, "checksum mismatch") ||
        strstr(e, "Corruption:"))
        return SBX_DATA_LOSS;
    if (strncmp(e, "Invalid argument", 16) == 0)
        return SBX_INVALID_ARGUMENT;
    if (strncmp(e, "NotFound", 8) == 0 || strncmp(e, "Not found", 9) == 0)
        return SBX_NOT_FOUND;
    if (strncmp(e, "Not implemented", 15) == 0)
        return SBX_UNIMPLEMENTED;
    if (strncmp(e, "Operation aborted", 17) == 0)
        return SBX_ABORTED;
    if (strncmp(e, "IO error", 8) == 0 || strncmp(e, "Resource busy", 13) == 0 ||
        strncmp(e, "Operation timed out", 19) == 0 ||
        strncmp(e, "Operation failed. Try again", 27) == 0 ||
        strncmp(e, "Shutdown in progress", 20) == 0 || strncmp(e, "Result incomplete", 17) == 0)
        return SBX_UNAVAILABLE;
    return SBX_INTERNAL;
}

int sdb__rocks_err(const char *what, char *rerr, char *err, size_t errlen)
{
    int code = sdb__rocks_status(rerr);
    const char *why = "";
    switch (code) {
    case SBX_RESOURCE_EXHAUSTED:
        why = " (the disk is full)";
        break;
    case SBX_DATA_LOSS:
        why = " (the database is corrupted)";
        break;
    case SBX_UNAVAILABLE:
        if (rerr && (strstr(rerr, "lock") || strstr(rerr, "LOCK")))
            why = " (the data dir is in use by another process)";
        else
            why = " (storage I/O failed)";
        break;
    default:
        break;
    }
    if (code == SBX_OK)
        code = SBX_INTERNAL;
    sdb__err(err, errlen, code, "store %s failed%s: %s", what, why, rerr ? rerr : "unknown error");
    free(rerr);
    return code;
}

/* ---- page tokens ---- */

static const char b64u[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t b64u_encode(const unsigned char *in, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
        if (o + 4 >= cap)
            return 0;
        out[o++] = b64u[(v >> 18) & 63];
        out[o++] = b64u[(v >> 12) & 63];
        out[o++] = b64u[(v >> 6) & 63];
        out[o++] = b64u[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (o + 4 >= cap)
            return 0;
        out[o++] = b64u[(v >> 18) & 63];
        out[o++] = b64u[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = b64u[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

static int b64u_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Strict: no padding, no other characters, unused trailing bits must be zero. Returns the
 * decoded length or -1. */
static long b64u_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
    if (n % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64u_val(in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap)
                return -1;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0)
        return -1;
    return (long)o;
}

#define TOKEN_VERSION 1

static uint32_t tok_check(const unsigned char *p, size_t n)
{
    sdb_slice s = {(const char *)p, n}, salt = {"sbx-store-token", 15};
    return (uint32_t)(sdb__hash(salt, s) >> 16);
}

void sdb__token_encode(int kind, sdb_slice tenant, sdb_slice scope, const void *cur, size_t n,
                       char out[SDB_TOKEN_MAX])
{
    sdb__buf b;
    sdb__buf_init(&b);
    sdb__buf_u8(&b, TOKEN_VERSION);
    sdb__buf_u8(&b, (uint8_t)kind);
    sdb__buf_be64(&b, sdb__hash(tenant, scope));
    buf_be16(&b, (uint16_t)n);
    sdb__buf_raw(&b, cur, n);
    sdb__buf_be32(&b, tok_check((const unsigned char *)b.p, b.n));
    if (!b64u_encode((const unsigned char *)b.p, b.n, out, SDB_TOKEN_MAX))
        out[0] = '\0'; /* cannot happen with the key limits enforced at open */
    sdb__buf_free(&b);
}

int sdb__token_decode(const char *field, int kind, sdb_slice tenant, sdb_slice scope, sdb_slice tok,
                      char *cur, size_t *n, char *err, size_t errlen)
{
    unsigned char raw[SDB_TOKEN_MAX];
    if (tok.n >= SDB_TOKEN_MAX)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                        "%s: %zu bytes exceeds the limit of %d bytes", field, tok.n,
                        SDB_TOKEN_MAX - 1);
    long len = b64u_decode(tok.p, tok.n, raw, sizeof raw);
    if (len < 1 + 1 + 8 + 2 + 4)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                        "%s: malformed (not a token returned by this listing)", field);
    const unsigned char *t = raw + len - 4;
    uint32_t chk = ((uint32_t)t[0] << 24) | ((uint32_t)t[1] << 16) | ((uint32_t)t[2] << 8) | t[3];
    if (chk != tok_check(raw, (size_t)len - 4))
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                        "%s: checksum mismatch (corrupted or altered token)", field);
    sdb__rd r = sdb__rd_init(raw, (size_t)len - 4);
    uint8_t ver = sdb__rd_u8(&r), k = sdb__rd_u8(&r);
    uint64_t bind = sdb__rd_be64(&r);
    uint16_t cn = rd_be16(&r);
    sdb_slice c = sdb__rd_bytes(&r, cn);
    if (r.bad || r.n != 0)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT, "%s: malformed cursor", field);
    if (ver != TOKEN_VERSION)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                        "%s: version %u is not supported (expected %d)", field, ver, TOKEN_VERSION);
    if (k != kind || bind != sdb__hash(tenant, scope))
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                        "%s: was issued for a different listing (other tenant, "
                        "project, prefix or method)",
                        field);
    memcpy(cur, c.p, c.n);
    *n = c.n;
    return SBX_OK;
}
