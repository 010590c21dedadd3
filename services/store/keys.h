/* keys.h: the bottom of the engine (keys.c): byte builder and bounds-checked reader, the key
 * layout, the stripe hash, input validation and error messages, RocksDB error mapping and the
 * opaque page tokens. Knows nothing of the database handle; every other engine file builds on
 * it. Not for use outside services/store.
 *
 * Key layout (every key starts with the tenant; "str" = u16 big-endian length + bytes):
 *   projects: str(tenant) raw(project_id)                       -> project record
 *   history:  str(tenant) str(project) be64(seq)                -> history record
 *   cache:    str(tenant) str(project) be64(generation) raw(cmd) -> cache entry
 *   meta:     str(tenant) str(project) 'c'                      -> counter (last seq, stats)
 *             str(tenant) str(project) 'g'                      -> cache generation (be64)
 *             str(tenant) str(project) 'n'                      -> cache entries (be64)
 *             str(tenant) str(project) 'i' raw(record_id)       -> record-id entry (codec.c)
 *             str(tenant) str("") 'v'                           -> kv revision (be64)
 *             str(tenant) str("") 'n'                           -> kv keys (be64)
 *   kv:       str(tenant) raw(key)                              -> kv entry
 * The project scope str(tenant) str(project) is a prefix of exactly that project's history,
 * cache and meta keys, so DeleteProject is three range deletes (project ids are never
 * empty, so the tenant-wide meta keys under str("") are outside every project scope). The
 * values are encoded by codec.c.
 */
#ifndef SBX_STORE_KEYS_H
#define SBX_STORE_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "storedb.h"

/* ---- byte builder ---- */
typedef struct sdb__buf {
    char *p;
    size_t n, cap;
    char inl[240];
} sdb__buf;

void sdb__buf_init(sdb__buf *b);
void sdb__buf_free(sdb__buf *b);
void sdb__buf_reset(sdb__buf *b);
void sdb__buf_raw(sdb__buf *b, const void *p, size_t n);
void sdb__buf_u8(sdb__buf *b, uint8_t v);
void sdb__buf_be32(sdb__buf *b, uint32_t v);
void sdb__buf_be64(sdb__buf *b, uint64_t v);
void sdb__buf_str(sdb__buf *b, sdb_slice s); /* u16 length + bytes (s.n <= 65535) */
void sdb__buf_copy(sdb__buf *dst, const sdb__buf *src);
/* Turns b into the smallest key greater than every key having b as a prefix. Returns false
 * when there is none (all bytes 0xff). */
bool sdb__buf_successor(sdb__buf *b);

/* ---- reader ---- */
typedef struct sdb__rd {
    const char *p;
    size_t n;
    bool bad;
} sdb__rd;
static inline sdb__rd sdb__rd_init(const void *p, size_t n)
{
    sdb__rd r = {(const char *)p, n, false};
    return r;
}
uint8_t sdb__rd_u8(sdb__rd *r);
uint32_t sdb__rd_be32(sdb__rd *r);
uint64_t sdb__rd_be64(sdb__rd *r);
sdb_slice sdb__rd_bytes(sdb__rd *r, size_t n);
sdb_slice sdb__rd_str(sdb__rd *r); /* u16 length + bytes */

/* Writes v big-endian into p[0..8). */
static inline void sdb__be64_put(void *p, uint64_t v)
{
    unsigned char *b = p;
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (56 - 8 * i));
}

static inline uint64_t sdb__be64(const void *p)
{
    const unsigned char *b = p;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | b[i];
    return v;
}

/* ---- key builders ---- */
void sdb__key_tenant(sdb__buf *b, sdb_slice tenant);
void sdb__key_project(sdb__buf *b, sdb_slice tenant, sdb_slice project); /* projects CF */
void sdb__key_scope(sdb__buf *b, sdb_slice tenant, sdb_slice project);   /* history/cache/meta */
void sdb__key_hist(sdb__buf *b, sdb_slice tenant, sdb_slice project, uint64_t seq);
void sdb__key_meta(sdb__buf *b, sdb_slice tenant, sdb_slice project, char tag, sdb_slice suffix);
void sdb__key_cache(sdb__buf *b, sdb_slice tenant, sdb_slice project, uint64_t gen, sdb_slice cmd);
void sdb__key_kv(sdb__buf *b, sdb_slice tenant, sdb_slice key);
/* Splits a projects-CF or kv-CF key into tenant and the raw rest. */
bool sdb__key_split(const char *k, size_t n, sdb_slice *tenant, sdb_slice *rest);
/* Splits a scope-prefixed key (history/cache/meta) into tenant, project and the rest. */
bool sdb__key_split_scope(const char *k, size_t n, sdb_slice *tenant, sdb_slice *project,
                          sdb_slice *rest);

/* FNV-1a 64 over a, a separator, b, with a final avalanche: picks lock and watch stripes and
 * binds page tokens. */
uint64_t sdb__hash(sdb_slice a, sdb_slice b);

/* ---- validation and errors ---- */
int sdb__err(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* field: must not be empty (unless allow_empty), at most max bytes, no NUL byte. */
int sdb__check_bytes(const char *field, sdb_slice s, size_t max, bool allow_empty, char *err,
                     size_t errlen);
/* field: a payload of n bytes, at most max. */
int sdb__check_size(const char *field, size_t n, size_t max, char *err, size_t errlen);
int sdb__check_tenant(sdb_slice tenant, char *err, size_t errlen);
int sdb__check_project(sdb_slice project, char *err, size_t errlen);
/* Applies the list-limit rule: def when !has; < 1 -> INVALID_ARGUMENT; > max clamped. */
int sdb__check_limit(bool has, int64_t limit, uint32_t def, sdb_page *page, char *err,
                     size_t errlen);
/* Maps a RocksDB error string to a status with a clear message; frees rerr. */
int sdb__rocks_err(const char *what, char *rerr, char *err, size_t errlen);
int sdb__rocks_status(const char *rerr);

/* ---- page tokens ---- */
enum { SDB__TOK_HIST = 1, SDB__TOK_PROJ = 2, SDB__TOK_KV = 3 };
/* base64url(ver, kind, bind(tenant, scope), u16 len, cursor, check). */
void sdb__token_encode(int kind, sdb_slice tenant, sdb_slice scope, const void *cur, size_t n,
                       char out[SDB_TOKEN_MAX]);
/* Validates and decodes; cur must hold SDB_TOKEN_MAX bytes. INVALID_ARGUMENT on any defect. */
int sdb__token_decode(const char *field, int kind, sdb_slice tenant, sdb_slice scope, sdb_slice tok,
                      char *cur, size_t *n, char *err, size_t errlen);

#endif
