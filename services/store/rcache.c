/* rcache.c: the group committer's read cache. Every write of the store goes through the
 * committer (commit.c), so the committer can remember what it read and what it wrote. Two
 * tables:
 * - small metadata values (the meta and projects column families: counters, cache
 *   generations, project records): a RecordExecution reads its project's record, counter and
 *   generation from memory instead of RocksDB on every write;
 * - the entries a write reads before it replaces them (the kv and cache column families): a
 *   Set reads the key's previous entry (its version, whether it is live) and a cache fill
 *   whether the command already had an entry. Without the table that read is a memtable
 *   lookup, the costliest part of a Set's apply. Off when the compaction filter is on: the
 *   filter drops expired entries behind the committer's back.
 * Absence is cached too (a project without a cache generation, a new key).
 *
 * The cache always equals the committed state plus the writes of the group being built;
 * commit.c clears it whenever that could stop being true: an operation rolled back after it
 * had written (one that failed before writing cached only what it read), a group whose write
 * failed, an exclusive operation (range deletes). Only the committer thread uses it, so it
 * has no lock. Bounded: a table beyond its entry limit starts over empty (the other table
 * stays); values above SDB__RC_MAX_VALUE bytes are not kept (the entries table still notes
 * that the key is there). Calls keys.c only (the hash).
 */
#include <stdlib.h>
#include <string.h>

#include "storedb_int.h"

#define SDB__RC_MAX_META 8192
#define SDB__RC_MAX_ENTRIES 32768
#define SDB__RC_MAX_VALUE 1024
#define SDB__RC_BUCKETS 16384 /* a power of two */

struct sdb__rc_ent {
    struct sdb__rc_ent *next;
    uint64_t hash;
    uint32_t kn, vn;
    int cf;
    bool present;
    bool kept;    /* the value is here (present and not above SDB__RC_MAX_VALUE) */
    char bytes[]; /* key, then value */
};

static bool is_entry_cf(int cf)
{
    return cf == SDB__CF_KV || cf == SDB__CF_CACHE;
}

bool sdb__rc_cacheable(const sdb__rcache *rc, int cf)
{
    return cf == SDB__CF_META || cf == SDB__CF_PROJECTS || (rc->entries && is_entry_cf(cf));
}

static sdb__rc_tab *tab_of(sdb__rcache *rc, int cf)
{
    return is_entry_cf(cf) ? &rc->ent : &rc->meta;
}

static sdb__rc_ent **rc_slot(sdb__rc_tab *t, int cf, const char *k, size_t n, uint64_t h)
{
    sdb__rc_ent **p = &t->b[h & (SDB__RC_BUCKETS - 1)];
    for (; *p; p = &(*p)->next)
        if ((*p)->hash == h && (*p)->cf == cf && (*p)->kn == n && !memcmp((*p)->bytes, k, n))
            return p;
    return p;
}

static void tab_clear(sdb__rc_tab *t)
{
    if (!t->b)
        return;
    for (size_t i = 0; i < SDB__RC_BUCKETS; i++) {
        while (t->b[i]) {
            sdb__rc_ent *e = t->b[i];
            t->b[i] = e->next;
            free(e);
        }
    }
    t->n = 0;
}

void sdb__rc_clear(sdb__rcache *rc)
{
    tab_clear(&rc->meta);
    tab_clear(&rc->ent);
}

void sdb__rc_free(sdb__rcache *rc)
{
    sdb__rc_clear(rc);
    free(rc->meta.b);
    free(rc->ent.b);
    rc->meta.b = rc->ent.b = NULL;
}

static sdb__rc_ent *rc_find(sdb__rcache *rc, int cf, const sdb__buf *key)
{
    sdb__rc_tab *t = tab_of(rc, cf);
    if (!t->b)
        return NULL;
    return *rc_slot(t, cf, key->p, key->n, sdb__hash_cf(cf, key->p, key->n));
}

int sdb__rc_get(sdb__rcache *rc, int cf, const sdb__buf *key, char **val, size_t *vn)
{
    sdb__rc_ent *e = rc_find(rc, cf, key);
    if (!e)
        return -1;
    if (!e->present)
        return SBX_NOT_FOUND;
    if (!e->kept)
        return -1;
    char *v = malloc(e->vn ? e->vn : 1);
    if (!v)
        return -1;
    memcpy(v, e->bytes + e->kn, e->vn);
    *val = v;
    *vn = e->vn;
    return SBX_OK;
}

int sdb__rc_exists(sdb__rcache *rc, int cf, const sdb__buf *key)
{
    sdb__rc_ent *e = rc_find(rc, cf, key);
    if (!e)
        return -1;
    return e->present ? SBX_OK : SBX_NOT_FOUND;
}

void sdb__rc_set(sdb__rcache *rc, int cf, const sdb__buf *key, const void *v, size_t vn)
{
    sdb__rc_tab *t = tab_of(rc, cf);
    if (!t->b && !(t->b = calloc(SDB__RC_BUCKETS, sizeof *t->b)))
        return;
    uint64_t h = sdb__hash_cf(cf, key->p, key->n);
    sdb__rc_ent **p = rc_slot(t, cf, key->p, key->n, h);
    if (*p) { /* replaced */
        sdb__rc_ent *old = *p;
        *p = old->next;
        free(old);
        t->n--;
    }
    /* a big value: the entries table still remembers that the key is there */
    bool kept = v && vn <= SDB__RC_MAX_VALUE;
    if (v && !kept && t == &rc->meta)
        return;
    if (t->n >= (t == &rc->meta ? SDB__RC_MAX_META : SDB__RC_MAX_ENTRIES)) {
        tab_clear(t);
        p = &t->b[h & (SDB__RC_BUCKETS - 1)];
    }
    sdb__rc_ent *e = malloc(sizeof *e + key->n + (kept ? vn : 0));
    if (!e)
        return;
    e->hash = h;
    e->cf = cf;
    e->kn = (uint32_t)key->n;
    e->vn = kept ? (uint32_t)vn : 0;
    e->present = v != NULL;
    e->kept = kept;
    memcpy(e->bytes, key->p, key->n);
    if (kept && vn)
        memcpy(e->bytes + key->n, v, vn);
    e->next = *p;
    *p = e;
    t->n++;
}
