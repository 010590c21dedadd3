/* read.c: reads of the committed state (what is durable: visible.c's snapshot): point reads
 * and range iterators over one column family, bounded to a key prefix so RocksDB never steps into a
 * neighbour's keys (another project, another tenant). Reads inside a write go through the
 * transaction instead (commit.c), which sees the operation's own group as well. Thread-safe: an
 * iterator belongs to the thread that opened it. Calls keys.c and visible.c.
 */
#include <stdlib.h>

#include "storedb_int.h"

static int get_at(sdb *db, const rocksdb_readoptions_t *ro, int cf, const sdb__buf *key, char **val,
                  size_t *vn, char *err, size_t errlen)
{
    char *rerr = NULL;
    size_t n = 0;
    char *v = rocksdb_get_cf(db->rdb, ro, db->cf[cf], key->p, key->n, &n, &rerr);
    if (rerr)
        return sdb__rocks_err("read", rerr, err, errlen);
    if (!v)
        return SBX_NOT_FOUND;
    *val = v;
    *vn = n;
    return SBX_OK;
}

int sdb__get(sdb *db, int cf, const sdb__buf *key, char **val, size_t *vn, char *err, size_t errlen)
{
    sdb__snap *s = sdb__visible_acquire(db);
    int rc = get_at(db, sdb__visible_ro(db, s), cf, key, val, vn, err, errlen);
    sdb__visible_release(db, s);
    return rc;
}

int sdb__get_latest(sdb *db, int cf, const sdb__buf *key, char **val, size_t *vn, char *err,
                    size_t errlen)
{
    return get_at(db, db->ro, cf, key, val, vn, err, errlen);
}

void sdb__iter_open(sdb *db, sdb__iter *i, int cf, const sdb__buf *prefix)
{
    sdb__buf_init(&i->lo);
    sdb__buf_init(&i->hi);
    i->ro = rocksdb_readoptions_create();
    i->db = db;
    i->snap = sdb__visible_acquire(db);
    if (i->snap)
        rocksdb_readoptions_set_snapshot(i->ro, sdb__snap_rocks(i->snap));
    if (prefix) {
        sdb__buf_copy(&i->lo, prefix);
        sdb__buf_copy(&i->hi, prefix);
        rocksdb_readoptions_set_iterate_lower_bound(i->ro, i->lo.p, i->lo.n);
        if (sdb__buf_successor(&i->hi))
            rocksdb_readoptions_set_iterate_upper_bound(i->ro, i->hi.p, i->hi.n);
    }
    i->it = rocksdb_create_iterator_cf(db->rdb, i->ro, db->cf[cf]);
}

void sdb__iter_seek_first(sdb__iter *i)
{
    rocksdb_iter_seek_to_first(i->it);
}

void sdb__iter_seek(sdb__iter *i, const void *key, size_t n)
{
    rocksdb_iter_seek(i->it, key, n);
}

void sdb__iter_seek_for_prev(sdb__iter *i, const void *key, size_t n)
{
    rocksdb_iter_seek_for_prev(i->it, key, n);
}

bool sdb__iter_valid(const sdb__iter *i)
{
    return rocksdb_iter_valid(i->it);
}

void sdb__iter_next(sdb__iter *i)
{
    rocksdb_iter_next(i->it);
}

void sdb__iter_prev(sdb__iter *i)
{
    rocksdb_iter_prev(i->it);
}

const char *sdb__iter_key(const sdb__iter *i, size_t *n)
{
    return rocksdb_iter_key(i->it, n);
}

const char *sdb__iter_value(const sdb__iter *i, size_t *n)
{
    return rocksdb_iter_value(i->it, n);
}

int sdb__iter_close(sdb__iter *i, char *err, size_t errlen)
{
    char *rerr = NULL;
    rocksdb_iter_get_error(i->it, &rerr);
    rocksdb_iter_destroy(i->it);
    rocksdb_readoptions_destroy(i->ro);
    sdb__visible_release(i->db, i->snap);
    sdb__buf_free(&i->lo);
    sdb__buf_free(&i->hi);
    return rerr ? sdb__rocks_err("read", rerr, err, errlen) : SBX_OK;
}

int sdb__iter_open_page(sdb *db, sdb__iter *i, int cf, int kind, const char *field,
                        sdb_slice tenant, sdb_slice prefix, sdb_slice token, char *err,
                        size_t errlen)
{
    char cur[SDB_TOKEN_MAX];
    size_t cn = 0;
    int rc;
    if (token.n &&
        (rc = sdb__token_decode(field, kind, tenant, prefix, token, cur, &cn, err, errlen)))
        return rc;
    sdb__buf k;
    sdb__buf_init(&k);
    sdb__key_project(&k, tenant, prefix); /* the same layout as sdb__key_kv */
    sdb__iter_open(db, i, cf, &k);
    if (cn) {
        /* resume after the cursor, the last name returned: the smallest key greater than it */
        sdb__key_project(&k, tenant, sdb_slice_n(cur, cn));
        sdb__buf_u8(&k, 0);
    }
    sdb__iter_seek(i, k.p, k.n);
    sdb__buf_free(&k);
    return SBX_OK;
}
