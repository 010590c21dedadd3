/* watch_queue.c: the pending changes of one watch (see watch.h for the rules, watch_int.h for
 * the layout). Changes wait in order of first occurrence until the window of their path ends;
 * an index from path to its newest mergeable change lets a later change of the same path fold
 * into it instead of queueing another one:
 *   CREATE/MODIFY + MODIFY = the first;   CREATE + CREATE = CREATE;   DELETE + DELETE = DELETE;
 *   CREATE + DELETE = nothing (both gone);   MODIFY + DELETE = DELETE (in MODIFY's place);
 *   anything else (DELETE + CREATE, renames) queues a new change.
 * Renames are never merged into, and end the path's merging, so order stays exact around them.
 * The queue holds at most `max` live changes: the first one that does not fit queues an
 * OVERFLOW marker and is dropped, and so is every new change until the marker has been popped
 * (merges into queued changes go on: they lose nothing).
 *
 * Threads: the watch's one thread. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "watch_int.h"

void sbx__wq_init(sbx__wq *q, uint32_t window_ms, size_t max)
{
    memset(q, 0, sizeof *q);
    q->window_ms = window_ms;
    q->max = max;
}

void sbx__wq_free(sbx__wq *q)
{
    for (size_t i = 0; i < q->len; i++)
        free(q->v[q->head + i].path);
    free(q->v);
    free(q->slots);
    free(q->out);
    memset(q, 0, sizeof *q);
}

/* ---------------------------------------------------------------- the path index */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

static wq_slot *slot_find(sbx__wq *q, const char *key)
{
    if (!q->nslots)
        return NULL;
    size_t mask = q->nslots - 1;
    for (size_t i = hash_str(key) & mask;; i = (i + 1) & mask) {
        if (!q->slots[i].key)
            return NULL;
        if (strcmp(q->slots[i].key, key) == 0)
            return &q->slots[i];
    }
}

static int index_grow(sbx__wq *q)
{
    size_t n = q->nslots ? q->nslots * 2 : 256;
    wq_slot *ns = calloc(n, sizeof *ns);
    if (!ns)
        return -ENOMEM;
    for (size_t i = 0; i < q->nslots; i++) {
        if (!q->slots[i].key)
            continue;
        size_t j = hash_str(q->slots[i].key) & (n - 1);
        while (ns[j].key)
            j = (j + 1) & (n - 1);
        ns[j] = q->slots[i];
    }
    free(q->slots);
    q->slots = ns;
    q->nslots = n;
    return 0;
}

static int index_put(sbx__wq *q, const char *key, uint64_t seq)
{
    if ((q->nused + 1) * 2 > q->nslots && index_grow(q) < 0)
        return -ENOMEM;
    size_t mask = q->nslots - 1;
    size_t i = hash_str(key) & mask;
    while (q->slots[i].key)
        i = (i + 1) & mask;
    q->slots[i] = (wq_slot){key, seq};
    q->nused++;
    return 0;
}

/* Deletes a slot, moving later members of its probe run back (no tombstones). */
static void index_del(sbx__wq *q, wq_slot *s)
{
    size_t mask = q->nslots - 1;
    size_t i = (size_t)(s - q->slots);
    q->slots[i].key = NULL;
    q->nused--;
    for (size_t j = (i + 1) & mask; q->slots[j].key; j = (j + 1) & mask) {
        size_t home = hash_str(q->slots[j].key) & mask;
        /* slot j may move to the hole at i when its home is not inside (i, j] */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (stays)
            continue;
        q->slots[i] = q->slots[j];
        q->slots[j].key = NULL;
        i = j;
    }
}

/* ---------------------------------------------------------------- entries */

static wq_entry *at_seq(sbx__wq *q, uint64_t seq)
{
    if (seq < q->base || seq - q->base >= q->len)
        return NULL;
    return &q->v[q->head + (size_t)(seq - q->base)];
}

static void unindex(sbx__wq *q, wq_entry *e)
{
    if (!e->indexed)
        return;
    wq_slot *s = slot_find(q, e->path);
    if (s)
        index_del(q, s);
    e->indexed = false;
}

/* Room for one more entry at the end; 0 or -ENOMEM. */
static int reserve_one(sbx__wq *q)
{
    if (q->head + q->len < q->cap)
        return 0;
    if (q->head > 0 && q->head >= q->cap / 2) { /* slide the live part to the front */
        memmove(q->v, q->v + q->head, q->len * sizeof *q->v);
        q->head = 0;
        return 0;
    }
    size_t n = q->cap ? q->cap * 2 : 1024;
    wq_entry *nv = realloc(q->v, n * sizeof *nv);
    if (!nv)
        return -ENOMEM;
    q->v = nv;
    q->cap = n;
    return 0;
}

static wq_entry *append(sbx__wq *q)
{
    if (reserve_one(q) < 0)
        return NULL;
    wq_entry *e = &q->v[q->head + q->len++];
    memset(e, 0, sizeof *e);
    return e;
}

void sbx__wq_overflow(sbx__wq *q, int64_t at_ms)
{
    if (q->dropping)
        return;
    wq_entry *e = append(q);
    if (!e)
        return; /* out of memory: the next pop cannot tell; nothing better to do */
    e->kind = SBX_WATCH_OVERFLOW;
    e->at_ms = at_ms;
    q->live++;
    q->dropping = true;
}

/* Folds a change into the pending one of its path: true when nothing more is to be queued. */
static bool merge(sbx__wq *q, wq_entry *e, sbx_watch_kind kind, bool is_dir)
{
    switch (kind) {
    case SBX_WATCH_MODIFY:
        return e->kind == SBX_WATCH_CREATE || e->kind == SBX_WATCH_MODIFY;
    case SBX_WATCH_CREATE:
        return e->kind == SBX_WATCH_CREATE;
    case SBX_WATCH_DELETE:
        if (e->kind == SBX_WATCH_CREATE) { /* it came and went within the window */
            unindex(q, e);
            e->dead = true;
            q->live--;
            return true;
        }
        if (e->kind == SBX_WATCH_MODIFY) {
            e->kind = SBX_WATCH_DELETE;
            e->is_dir = is_dir;
            return true;
        }
        return e->kind == SBX_WATCH_DELETE;
    default:
        return false;
    }
}

int sbx__wq_push(sbx__wq *q, sbx_watch_kind kind, const char *path, bool is_dir, uint32_t cookie,
                 int64_t at_ms, uint64_t now_ms)
{
    bool rename = kind == SBX_WATCH_RENAME_FROM || kind == SBX_WATCH_RENAME_TO;
    wq_slot *s = slot_find(q, path);
    if (s) {
        wq_entry *e = at_seq(q, s->seq);
        if (e && !rename && merge(q, e, kind, is_dir))
            return 0;
        if (e)
            e->indexed = false;
        index_del(q, s);
    }
    if (q->dropping)
        return 0;
    if (q->live >= q->max) {
        sbx__wq_overflow(q, at_ms);
        return 0;
    }
    char *copy = strdup(path);
    wq_entry *e = copy ? append(q) : NULL;
    if (!e) {
        free(copy);
        return -ENOMEM;
    }
    e->path = copy;
    e->kind = (uint8_t)kind;
    e->is_dir = is_dir;
    e->cookie = cookie;
    e->at_ms = at_ms;
    e->due_ms = now_ms + q->window_ms;
    q->live++;
    if (!rename && index_put(q, e->path, q->base + q->len - 1) == 0)
        e->indexed = true;
    return 0;
}

/* Frees the first entry and moves past it. */
static void drop_front(sbx__wq *q)
{
    wq_entry *e = &q->v[q->head];
    unindex(q, e);
    free(e->path);
    q->head++;
    q->len--;
    q->base++;
    if (q->len == 0)
        q->head = 0;
}

int sbx__wq_pop(sbx__wq *q, uint64_t now_ms, bool flush, sbx_watch_event *ev)
{
    while (q->len && q->v[q->head].dead)
        drop_front(q);
    if (!q->len)
        return 0;
    wq_entry *e = &q->v[q->head];
    if (e->kind != SBX_WATCH_OVERFLOW && e->due_ms > now_ms && !flush)
        return 0;
    unindex(q, e);
    free(q->out);
    q->out = e->path;
    e->path = NULL;
    ev->kind = (sbx_watch_kind)e->kind;
    ev->is_dir = e->is_dir;
    ev->cookie = e->cookie;
    ev->at_ms = e->at_ms;
    ev->path = q->out ? q->out : "";
    if (e->kind == SBX_WATCH_OVERFLOW)
        q->dropping = false;
    q->live--;
    drop_front(q);
    return 1;
}

uint64_t sbx__wq_next_due(sbx__wq *q)
{
    while (q->len && q->v[q->head].dead)
        drop_front(q);
    if (!q->len)
        return 0;
    const wq_entry *e = &q->v[q->head];
    return e->kind == SBX_WATCH_OVERFLOW ? 1 : e->due_ms;
}
