/* rcache.c: the group committer's read cache of small metadata values (the meta and projects
 * column families: counters, cache generations, project records). Every write of the store
 * goes through the committer (commit.c), so the committer can remember what it read and what
 * it wrote: a RecordExecution then reads its project's record, counter and generation from
 * memory instead of RocksDB (memtable and bloom filters) on every write. Absence is cached
 * too (a project without a cache generation is the common case).
 *
 * The cache always equals the committed state plus the writes of the group being built;
 * commit.c clears it whenever that could stop being true: an operation rolled back, a group
 * whose write failed, an exclusive operation (range deletes). Only the committer thread uses
 * it, so it has no lock. Bounded: beyond SDB__RC_MAX entries it starts over empty; values
 * above SDB__RC_MAX_VALUE bytes are not kept. Calls keys.c only (the hash).
 */
#include <stdlib.h>
#include <string.h>

#include "storedb_int.h"

#define SDB__RC_MAX 8192
#define SDB__RC_MAX_VALUE 1024
#define SDB__RC_BUCKETS 16384 /* a power of two */

struct sdb__rc_ent {
    struct sdb__rc_ent *next;
    uint64_t hash;
    uint32_t kn, vn;
    int cf;
    bool present;
    char bytes[]; /* key, then value */
};

bool sdb__rc_cacheable(int cf)
{
    return cf == SDB__CF_META || cf == SDB__CF_PROJECTS;
}

static sdb__rc_ent **rc_slot(sdb__rcache *rc, int cf, const char *k, size_t n, uint64_t h)
{
    sdb__rc_ent **p = &rc->b[h & (SDB__RC_BUCKETS - 1)];
    for (; *p; p = &(*p)->next)
        if ((*p)->hash == h && (*p)->cf == cf && (*p)->kn == n && !memcmp((*p)->bytes, k, n))
            return p;
    return p;
}

void sdb__rc_clear(sdb__rcache *rc)
{
    if (!rc->b)
        return;
    for (size_t i = 0; i < SDB__RC_BUCKETS; i++) {
        while (rc->b[i]) {
            sdb__rc_ent *e = rc->b[i];
            rc->b[i] = e->next;
            free(e);
        }
    }
    rc->n = 0;
}

void sdb__rc_free(sdb__rcache *rc)
{
    sdb__rc_clear(rc);
    free(rc->b);
    rc->b = NULL;
}

int sdb__rc_get(sdb__rcache *rc, int cf, const sdb__buf *key, char **val, size_t *vn)
{
    if (!rc->b)
        return -1;
    sdb__rc_ent *e = *rc_slot(rc, cf, key->p, key->n, sdb__hash_cf(cf, key->p, key->n));
    if (!e)
        return -1;
    if (!e->present)
        return SBX_NOT_FOUND;
    char *v = malloc(e->vn ? e->vn : 1);
    if (!v)
        return -1;
    memcpy(v, e->bytes + e->kn, e->vn);
    *val = v;
    *vn = e->vn;
    return SBX_OK;
}

void sdb__rc_set(sdb__rcache *rc, int cf, const sdb__buf *key, const void *v, size_t vn)
{
    if (!rc->b && !(rc->b = calloc(SDB__RC_BUCKETS, sizeof *rc->b)))
        return;
    uint64_t h = sdb__hash_cf(cf, key->p, key->n);
    sdb__rc_ent **p = rc_slot(rc, cf, key->p, key->n, h);
    if (*p) { /* replaced (or dropped when the new value is too big) */
        sdb__rc_ent *old = *p;
        *p = old->next;
        free(old);
        rc->n--;
    }
    if (vn > SDB__RC_MAX_VALUE)
        return;
    if (rc->n >= SDB__RC_MAX) {
        sdb__rc_clear(rc);
        p = &rc->b[h & (SDB__RC_BUCKETS - 1)];
    }
    sdb__rc_ent *e = malloc(sizeof *e + key->n + (v ? vn : 0));
    if (!e)
        return;
    e->hash = h;
    e->cf = cf;
    e->kn = (uint32_t)key->n;
    e->vn = v ? (uint32_t)vn : 0;
    e->present = v != NULL;
    memcpy(e->bytes, key->p, key->n);
    if (v && vn)
        memcpy(e->bytes + key->n, v, vn);
    e->next = *p;
    *p = e;
    rc->n++;
}
