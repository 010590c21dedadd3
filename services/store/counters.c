/* counters.c: the group committer's counters, written once per group.
 *
 * Counters (small values in the meta column family: a tenant's kv revision and key count, a
 * project's cache entry count as be64, a project's history counter of SDB__DC_MAX_VALUE bytes
 * at most) change with nearly every write, often several times in one group. Putting each new
 * value into the group's batch costs a batch index insert and a memtable insert per change;
 * only the last value of a group matters. So commit.c keeps a group's counter changes here and
 * puts each changed counter into the batch once, just before the group's write. An operation that
 * fails is rolled back here too (the undo log); a direct put or delete of a counter's key makes the
 * table forget it (the batch then holds the truth). Only the committer thread uses it. Calls keys.c
 * only.
 */
#include <stdlib.h>
#include <string.h>

#include "storedb_int.h"

struct sdb__dc_ent {
    uint64_t h;
    int cf;
    bool live; /* false: forgotten or rolled back (the batch or the database holds the value) */
    unsigned char vn;
    char v[SDB__DC_MAX_VALUE];
    size_t kn;
    char *k;
};

struct sdb__dc_undo {
    size_t i;
    bool live;
    unsigned char vn;
    char v[SDB__DC_MAX_VALUE];
};

/* The slot of key (holding index + 1, or 0 where it would go). */
static size_t *dc_slot(sdb__dcount *d, int cf, const char *k, size_t n, uint64_t h)
{
    size_t mask = d->nslots - 1;
    for (size_t s = h & mask;; s = (s + 1) & mask) {
        size_t i = d->slots[s];
        if (!i)
            return &d->slots[s];
        sdb__dc_ent *e = &d->e[i - 1];
        if (e->h == h && e->cf == cf && e->kn == n && !memcmp(e->k, k, n))
            return &d->slots[s];
    }
}

static bool dc_grow(sdb__dcount *d)
{
    if (d->n + 1 > d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 64;
        sdb__dc_ent *e = realloc(d->e, cap * sizeof *e);
        if (!e)
            return false;
        d->e = e;
        d->cap = cap;
    }
    if ((d->n + 1) * 2 > d->nslots) {
        size_t ns = d->nslots ? d->nslots * 2 : 128;
        size_t *s = calloc(ns, sizeof *s);
        if (!s)
            return false;
        free(d->slots);
        d->slots = s;
        d->nslots = ns;
        for (size_t i = 0; i < d->n; i++)
            *dc_slot(d, d->e[i].cf, d->e[i].k, d->e[i].kn, d->e[i].h) = i + 1;
    }
    return true;
}

static bool dc_log(sdb__dcount *d, size_t i)
{
    if (d->un == d->ucap) {
        size_t cap = d->ucap ? d->ucap * 2 : 64;
        sdb__dc_undo *u = realloc(d->u, cap * sizeof *u);
        if (!u)
            return false;
        d->u = u;
        d->ucap = cap;
    }
    sdb__dc_undo *u = &d->u[d->un++];
    u->i = i;
    u->live = d->e[i].live;
    u->vn = d->e[i].vn;
    memcpy(u->v, d->e[i].v, u->vn);
    return true;
}

static sdb__dc_ent *dc_find(sdb__dcount *d, int cf, const sdb__buf *key)
{
    if (!d->n)
        return NULL;
    size_t i = *dc_slot(d, cf, key->p, key->n, sdb__hash_cf(cf, key->p, key->n));
    return i ? &d->e[i - 1] : NULL;
}

bool sdb__dc_get(sdb__dcount *d, int cf, const sdb__buf *key, const char **v, size_t *vn)
{
    sdb__dc_ent *e = dc_find(d, cf, key);
    if (!e || !e->live)
        return false;
    *v = e->v;
    *vn = e->vn;
    return true;
}

bool sdb__dc_set(sdb__dcount *d, int cf, const sdb__buf *key, const void *v, size_t vn)
{
    if (vn > SDB__DC_MAX_VALUE)
        return false;
    sdb__dc_ent *e = dc_find(d, cf, key);
    if (!e) {
        if (!dc_grow(d))
            return false;
        char *k = malloc(key->n ? key->n : 1);
        if (!k)
            return false;
        memcpy(k, key->p, key->n);
        uint64_t h = sdb__hash_cf(cf, key->p, key->n);
        d->e[d->n] = (sdb__dc_ent){.h = h, .cf = cf, .kn = key->n, .k = k};
        *dc_slot(d, cf, key->p, key->n, h) = d->n + 1;
        e = &d->e[d->n++];
    }
    if (!dc_log(d, (size_t)(e - d->e)))
        return false;
    e->live = true;
    e->vn = (unsigned char)vn;
    memcpy(e->v, v, vn);
    return true;
}

void sdb__dc_forget(sdb__dcount *d, int cf, const sdb__buf *key)
{
    sdb__dc_ent *e = dc_find(d, cf, key);
    if (!e || !e->live)
        return;
    if (!dc_log(d, (size_t)(e - d->e)))
        abort(); /* out of memory with an undo to record: cannot stay consistent */
    e->live = false;
}

size_t sdb__dc_mark(const sdb__dcount *d)
{
    return d->un;
}

void sdb__dc_rollback(sdb__dcount *d, size_t mark)
{
    while (d->un > mark) {
        sdb__dc_undo *u = &d->u[--d->un];
        d->e[u->i].live = u->live;
        d->e[u->i].vn = u->vn;
        memcpy(d->e[u->i].v, u->v, u->vn);
    }
}

void sdb__dc_drain(sdb__dcount *d,
                   void (*put)(void *arg, int cf, const char *k, size_t kn, const char *v,
                               size_t vn),
                   void *arg)
{
    for (size_t i = 0; i < d->n; i++) {
        if (d->e[i].live)
            put(arg, d->e[i].cf, d->e[i].k, d->e[i].kn, d->e[i].v, d->e[i].vn);
        free(d->e[i].k);
    }
    d->n = 0;
    d->un = 0;
    if (d->slots)
        memset(d->slots, 0, d->nslots * sizeof *d->slots);
}

void sdb__dc_free(sdb__dcount *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->e[i].k);
    free(d->e);
    free(d->slots);
    free(d->u);
    memset(d, 0, sizeof *d);
}
