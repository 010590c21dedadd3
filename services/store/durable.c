/* durable.c: the end of a write's way, from written to acknowledged (GROUP mode).
 *
 * With sync on, a write is acknowledged only once its WAL record is fdatasync'ed, and the sync
 * is the longest part of a write. So the committer (commit.c) writes each group without
 * syncing and hands it here with a snapshot of the state after it; the syncer thread makes one
 * fdatasync of the WAL (walsync.c) for everything handed since its previous one,
 * publishes the newest snapshot to readers (visible.c), wakes the watchers of what was written
 * and runs the operations' done callbacks (the gRPC replies). Meanwhile the committer applies
 * and writes the next groups: the sync of one round overlaps the work of the next, and nothing
 * is seen by a reader or acknowledged before it is durable. A failed sync fails every
 * operation it covered (what they wrote may still reach the disk with a later sync, as after
 * any failed write whose outcome the caller cannot know).
 *
 * With sync off the committer's writes are final: visible at once, and a completer thread runs
 * the done callbacks so the committer never waits for a reply to go out. (With sync on the
 * syncer replies itself: a hand-off to a completer measured slower than the replies' own cost.)
 * Without inotify (walsync.c) the committer syncs each group's write itself, as with sync off
 * but synced. Calls walsync.c, visible.c and watch.c; commit.c starts and stops these threads.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "storedb_int.h"

/* ---- completer ---- */

/* Runs the done callbacks of list; returns how many ran. */
static size_t run_done(sdb__op *list)
{
    size_t n = 0;
    for (sdb__op *op = list, *next; op; op = next, n++) {
        next = op->next;
        op->done(op, op->status); /* may free op */
    }
    return n;
}

static void complete(sdb *db, sdb__op *head, sdb__op *tail)
{
    pthread_mutex_lock(&db->c_mu);
    if (db->c_tail)
        db->c_tail->next = head;
    else
        db->c_head = head;
    db->c_tail = tail;
    bool wake = db->c_waiting;
    pthread_mutex_unlock(&db->c_mu);
    if (wake)
        pthread_cond_signal(&db->c_cv);
}

static void *completer_main(void *arg)
{
    sdb *db = arg;
    pthread_setname_np(pthread_self(), "sbx-complete");
    pthread_mutex_lock(&db->c_mu);
    for (;;) {
        db->c_waiting = true;
        while (!db->c_head && !db->c_stop)
            pthread_cond_wait(&db->c_cv, &db->c_mu);
        db->c_waiting = false;
        sdb__op *list = db->c_head;
        if (!list)
            break; /* stopping and drained */
        db->c_head = db->c_tail = NULL;
        pthread_mutex_unlock(&db->c_mu);
        run_done(list);
        pthread_mutex_lock(&db->c_mu);
    }
    pthread_mutex_unlock(&db->c_mu);
    return NULL;
}

/* ---- syncer ---- */

void sdb__durable_queue(sdb *db, sdb__op *head, sdb__op *tail, uint64_t notify, bool wrote)
{
    if (!db->pipelined) {
        if (wrote)
            sdb__watch_notify(db, notify);
        complete(db, head, tail);
        return;
    }
    /* The snapshot is taken by the committer right after its write: it holds exactly what was
     * written so far, and the syncer publishes it only after a sync that started later. */
    sdb__snap *snap = wrote ? sdb__snap_take(db) : NULL, *old = NULL;
    pthread_mutex_lock(&db->s_mu);
    if (db->s_tail)
        db->s_tail->next = head;
    else
        db->s_head = head;
    db->s_tail = tail;
    db->s_notify |= notify;
    if (snap) {
        old = db->s_snap; /* never published: superseded by a newer state */
        db->s_snap = snap;
    }
    bool wake = db->s_waiting;
    pthread_mutex_unlock(&db->s_mu);
    if (wake)
        pthread_cond_signal(&db->s_cv);
    sdb__snap_drop(db, old);
}

static void fail_all(sdb__op *head, int code, const char *msg)
{
    for (sdb__op *op = head; op; op = op->next)
        if (op->status == SBX_OK) {
            op->status = code;
            sdb__err(op->err, op->errlen, code, "%s", msg);
        }
}

static void *syncer_main(void *arg)
{
    sdb *db = arg;
    pthread_setname_np(pthread_self(), "sbx-sync");
    pthread_mutex_lock(&db->s_mu);
    for (;;) {
        db->s_waiting = true;
        while (!db->s_head && !db->s_stop)
            pthread_cond_wait(&db->s_cv, &db->s_mu);
        db->s_waiting = false;
        sdb__op *head = db->s_head, *tail = db->s_tail;
        if (!head)
            break; /* stopping and drained */
        uint64_t notify = db->s_notify;
        sdb__snap *snap = db->s_snap;
        db->s_head = db->s_tail = NULL;
        db->s_notify = 0;
        db->s_snap = NULL;
        pthread_mutex_unlock(&db->s_mu);

        if (db->o.before_sync)
            db->o.before_sync(db->o.before_sync_arg);
        char msg[512];
        int src = sdb__walsync_sync(db, msg, sizeof msg);
        SDB__STAT_ADD(db, commit_syncs, 1);
        if (src != SBX_OK) {
            SDB__STAT_ADD(db, commit_failures, 1);
            fail_all(head, src, msg);
            sdb__snap_drop(db, snap);
        } else {
            if (snap)
                sdb__visible_publish(db, snap);
            sdb__watch_notify(db, notify);
        }
        tail->next = NULL;
        atomic_store_explicit(&db->s_last_round, run_done(head), memory_order_relaxed);
        pthread_mutex_lock(&db->s_mu);
    }
    pthread_mutex_unlock(&db->s_mu);
    return NULL;
}

int sdb__durable_start(sdb *db)
{
    pthread_mutex_init(&db->c_mu, NULL);
    pthread_cond_init(&db->c_cv, NULL);
    pthread_mutex_init(&db->s_mu, NULL);
    pthread_cond_init(&db->s_cv, NULL);
    char err[512];
    db->pipelined = db->o.sync;
    if (db->pipelined && sdb__walsync_open(db, err, sizeof err) != SBX_OK) {
        /* the committer then makes each group's write synced itself */
        SBX_LOG_INFO("store",
                     "wal sync by the committer, not overlapped with the next group "
                     "reason=\"%s\"",
                     err);
        db->pipelined = false;
    }
    int e;
    if (db->pipelined) {
        db->wo_nosync = rocksdb_writeoptions_create();
        rocksdb_writeoptions_set_sync(db->wo_nosync, 0);
        if ((e = pthread_create(&db->syncer, NULL, syncer_main, db)))
            return e;
        db->syncer_started = true;
    } else {
        if ((e = pthread_create(&db->completer, NULL, completer_main, db)))
            return e;
        db->completer_started = true;
    }
    return 0;
}

/* After the committer stopped: the syncer once it synced and acknowledged everything handed to
 * it, or the completer once every reply went out. */
void sdb__durable_stop(sdb *db)
{
    if (db->syncer_started) {
        pthread_mutex_lock(&db->s_mu);
        db->s_stop = true;
        pthread_cond_signal(&db->s_cv);
        pthread_mutex_unlock(&db->s_mu);
        pthread_join(db->syncer, NULL);
        db->syncer_started = false;
    }
    if (db->completer_started) {
        pthread_mutex_lock(&db->c_mu);
        db->c_stop = true;
        pthread_cond_signal(&db->c_cv);
        pthread_mutex_unlock(&db->c_mu);
        pthread_join(db->completer, NULL);
        db->completer_started = false;
    }
    if (db->wo_nosync) {
        rocksdb_writeoptions_destroy(db->wo_nosync);
        db->wo_nosync = NULL;
        sdb__walsync_close(db);
    }
    sdb__visible_close(db);
    pthread_mutex_destroy(&db->s_mu);
    pthread_cond_destroy(&db->s_cv);
    pthread_mutex_destroy(&db->c_mu);
    pthread_cond_destroy(&db->c_cv);
}
