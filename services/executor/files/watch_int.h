/* watch_int.h: what the two files of a watch share (private to files/): watch.c (inotify, the
 * directories followed, the kernel's events turned into changes) and watch_queue.c (the queue
 * of pending changes: per-path coalescing within a window, order of first occurrence, the
 * bound and its OVERFLOW marker). Cross-file names carry the sbx__wq_ prefix. One thread. */
#ifndef SBX_FILES_WATCH_INT_H
#define SBX_FILES_WATCH_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "watch.h"

/* One pending change. */
typedef struct wq_entry {
    char *path; /* malloc'd; NULL for OVERFLOW */
    uint8_t kind;
    bool is_dir;
    bool dead;    /* cancelled by a later change (created, then deleted again) */
    bool indexed; /* the path index points at this entry */
    uint32_t cookie;
    int64_t at_ms;
    uint64_t due_ms; /* monotonic: when the window of this path ends */
} wq_entry;

typedef struct wq_slot {
    const char *key; /* an entry's path; NULL = free */
    uint64_t seq;
} wq_slot;

typedef struct sbx__wq {
    wq_entry *v; /* v[head, head + len): entries in order, seq `base` at v[head] */
    size_t head, len, cap;
    uint64_t base;
    wq_slot *slots; /* open addressing: path -> seq of its newest mergeable entry */
    size_t nslots, nused;
    size_t live, max; /* entries not dead; the bound */
    bool dropping;    /* an OVERFLOW marker is queued: new entries are dropped until it leaves */
    uint32_t window_ms;
    char *out; /* the path of the entry returned last (freed by the next pop) */
} sbx__wq;

void sbx__wq_init(sbx__wq *q, uint32_t window_ms, size_t max);
void sbx__wq_free(sbx__wq *q);
/* Adds a change of path (copied) seen at at_ms (wall) / now_ms (monotonic), merged with the
 * pending change of the same path when the rules allow (see watch.h). Returns 0 or -ENOMEM. */
int sbx__wq_push(sbx__wq *q, sbx_watch_kind kind, const char *path, bool is_dir, uint32_t cookie,
                 int64_t at_ms, uint64_t now_ms);
/* Queues an OVERFLOW marker (once while one is pending). */
void sbx__wq_overflow(sbx__wq *q, int64_t at_ms);
/* The oldest change whose window ended by now_ms (all of them with flush): 1 and *ev filled
 * (its path valid until the next pop), or 0. */
int sbx__wq_pop(sbx__wq *q, uint64_t now_ms, bool flush, sbx_watch_event *ev);
/* When the oldest pending change is due (monotonic ms), 0 when nothing is pending. */
uint64_t sbx__wq_next_due(sbx__wq *q);

#endif
