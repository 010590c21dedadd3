/* visible.c: the state readers see. With group commit and sync on, the committer writes a
 * group without waiting for its fdatasync and goes on with the next group while the syncer
 * (durable.c) makes it durable; until then the group is in RocksDB's memtable but must not be
 * seen by anyone but the committer: a reader that saw it could lose it in a power cut that the
 * writer was never told had succeeded. So the committer takes a snapshot after each group's
 * write, and the syncer publishes it once an fdatasync covered the group. Readers (read.c) read
 * at the published snapshot; before the first publication, and in the other modes, at the
 * latest state. A snapshot lives while it is published or a reader holds it. Calls nothing of
 * the engine.
 */
#include <stdlib.h>

#include "storedb_int.h"

struct sdb__snap {
    const rocksdb_snapshot_t *s;
    rocksdb_readoptions_t *ro;
    unsigned refs; /* readers holding it (under v_mu) */
};

sdb__snap *sdb__snap_take(sdb *db)
{
    sdb__snap *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->s = rocksdb_create_snapshot(db->rdb);
    p->ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_snapshot(p->ro, p->s);
    return p;
}

void sdb__snap_drop(sdb *db, sdb__snap *p)
{
    if (!p)
        return;
    rocksdb_readoptions_destroy(p->ro);
    rocksdb_release_snapshot(db->rdb, p->s);
    free(p);
}

const rocksdb_snapshot_t *sdb__snap_rocks(const sdb__snap *p)
{
    return p ? p->s : NULL;
}

void sdb__visible_publish(sdb *db, sdb__snap *p)
{
    pthread_mutex_lock(&db->v_mu);
    sdb__snap *old = db->v_cur;
    db->v_cur = p;
    bool drop = old && old->refs == 0;
    pthread_mutex_unlock(&db->v_mu);
    if (drop)
        sdb__snap_drop(db, old);
}

sdb__snap *sdb__visible_acquire(sdb *db)
{
    pthread_mutex_lock(&db->v_mu);
    sdb__snap *p = db->v_cur;
    if (p)
        p->refs++;
    pthread_mutex_unlock(&db->v_mu);
    return p;
}

void sdb__visible_release(sdb *db, sdb__snap *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&db->v_mu);
    bool drop = --p->refs == 0 && p != db->v_cur;
    pthread_mutex_unlock(&db->v_mu);
    if (drop)
        sdb__snap_drop(db, p);
}

const rocksdb_readoptions_t *sdb__visible_ro(const sdb *db, const sdb__snap *p)
{
    return p ? p->ro : db->ro;
}

void sdb__visible_close(sdb *db)
{
    sdb__visible_publish(db, NULL);
}
