/* watch.c: how a WatchExecutions stream learns that a project got a record. 64 stripes, each a
 * mutex, a condition variable (CLOCK_MONOTONIC) and a generation; a project hashes to one
 * stripe. Every commit that touched a project bumps its stripe's generation once the write is
 * durable (commit.c calls sdb__watch_notify). A watcher takes a ticket (the generation), reads,
 * and when nothing new arrived waits until the generation moves past its ticket: an append
 * between the read and the wait is never missed, and a stripe shared by other projects costs
 * only a spurious re-read. Closing wakes everyone. Thread-safe; calls keys.c only.
 */
#include <errno.h>

#include "clock.h"
#include "storedb_int.h"

void sdb__watch_init(sdb *db)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    for (int i = 0; i < SDB__WATCH_STRIPES; i++) {
        pthread_mutex_init(&db->watch[i].mu, NULL);
        pthread_cond_init(&db->watch[i].cv, &ca);
        db->watch[i].gen = 0;
    }
    pthread_condattr_destroy(&ca);
}

void sdb__watch_destroy(sdb *db)
{
    for (int i = 0; i < SDB__WATCH_STRIPES; i++) {
        pthread_mutex_destroy(&db->watch[i].mu);
        pthread_cond_destroy(&db->watch[i].cv);
    }
}

void sdb__watch_notify(sdb *db, uint64_t mask)
{
    for (int i = 0; mask && i < SDB__WATCH_STRIPES; i++) {
        if (!(mask & (1ull << i)))
            continue;
        mask &= ~(1ull << i);
        sdb__watch *w = &db->watch[i];
        pthread_mutex_lock(&w->mu);
        w->gen++;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
}

void sdb__watch_close(sdb *db)
{
    for (int i = 0; i < SDB__WATCH_STRIPES; i++) {
        pthread_mutex_lock(&db->watch[i].mu);
        pthread_cond_broadcast(&db->watch[i].cv);
        pthread_mutex_unlock(&db->watch[i].mu);
    }
}

uint64_t sdb_hist_watch_ticket(sdb *db, sdb_slice tenant, sdb_slice project)
{
    sdb__watch *w = &db->watch[sdb__watch_stripe(tenant, project)];
    pthread_mutex_lock(&w->mu);
    uint64_t g = w->gen;
    pthread_mutex_unlock(&w->mu);
    return g;
}

int sdb_hist_watch_wait(sdb *db, sdb_slice tenant, sdb_slice project, uint64_t ticket,
                        int timeout_ms)
{
    sdb__watch *w = &db->watch[sdb__watch_stripe(tenant, project)];
    struct timespec dl;
    sbx_deadline_in(&dl, timeout_ms < 0 ? 0 : timeout_ms);
    int rc = SBX_OK;
    pthread_mutex_lock(&w->mu);
    while (w->gen == ticket && !atomic_load(&db->closing)) {
        if (pthread_cond_timedwait(&w->cv, &w->mu, &dl) == ETIMEDOUT) {
            rc = SBX_DEADLINE_EXCEEDED;
            break;
        }
    }
    if (atomic_load(&db->closing))
        rc = SBX_UNAVAILABLE;
    else if (w->gen != ticket)
        rc = SBX_OK;
    pthread_mutex_unlock(&w->mu);
    return rc;
}
