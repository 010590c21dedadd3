/* execmon.c: the background monitor (see exectab.h). One thread follows every background
 * execution (Exec/Run with background, StartDevServer) and finishes it, which records it, once
 * its process finished; it checks every 25 ms and whenever a new execution is handed over.
 * At shutdown it finishes what it still follows (the sandboxes are gone by then).
 *
 * Threads: the monitor thread; sbx_exe_follow_in_background from any thread. The monitor's mu
 * guards its list only and is never held while an execution is finished. */
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "exectab_int.h"
#include "log.h"

#define POLL_MS 25

void sbx_exe_follow_in_background(sbx_exe *e)
{
    sbx_execmon *m = e->priv->mon;
    if (!m)
        return;
    sbx__exe_journal_add(e); /* before the monitor can finish it */
    pthread_mutex_lock(&m->mu);
    if (m->n == m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 32;
        sbx_exe **nv = realloc(m->v, nc * sizeof *nv);
        if (!nv) {
            pthread_mutex_unlock(&m->mu);
            SBX_LOG_ERROR("exec", "cannot follow a background command (out of memory) id=%s",
                          e->id);
            return;
        }
        m->v = nv;
        m->cap = nc;
    }
    sbx_exe_ref(e);
    m->v[m->n++] = e;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->mu);
}

/* Stops following e (its reference in the list is dropped). */
static void unfollow(sbx_execmon *m, sbx_exe *e)
{
    pthread_mutex_lock(&m->mu);
    for (size_t k = 0; k < m->n; k++)
        if (m->v[k] == e) {
            m->v[k] = m->v[--m->n];
            sbx_exe_unref(e);
            break;
        }
    pthread_mutex_unlock(&m->mu);
}

/* One round over what is followed (called without m->mu). */
static void check_all(sbx_execmon *m, sbx_exe **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (sbx_exe_finish(v[i], false, -1))
            unfollow(m, v[i]);
        sbx_exe_unref(v[i]);
    }
}

static void *monitor_main(void *arg)
{
    sbx_execmon *m = arg;
    pthread_mutex_lock(&m->mu);
    while (!m->stop) {
        if (m->n == 0) {
            pthread_cond_wait(&m->cond, &m->mu);
            continue;
        }
        size_t n = m->n;
        sbx_exe **v = malloc(n * sizeof *v);
        for (size_t i = 0; v && i < n; i++) {
            v[i] = m->v[i];
            sbx_exe_ref(v[i]);
        }
        pthread_mutex_unlock(&m->mu);
        if (v)
            check_all(m, v, n);
        free(v);
        pthread_mutex_lock(&m->mu);
        if (m->stop)
            break;
        struct timespec dl;
        sbx_deadline_in(&dl, POLL_MS);
        pthread_cond_timedwait(&m->cond, &m->mu, &dl);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

sbx_execmon *sbx_execmon_new(sbx_stores *stores)
{
    sbx_execmon *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->stores = stores;
    pthread_mutex_init(&m->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&m->thr, NULL, monitor_main, m) != 0) {
        pthread_mutex_destroy(&m->mu);
        pthread_cond_destroy(&m->cond);
        free(m);
        return NULL;
    }
    return m;
}

void sbx_execmon_free(sbx_execmon *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    m->stop = true;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->thr, NULL);
    for (size_t i = 0; i < m->n; i++) {
        sbx_exe_finish(m->v[i], true, -1); /* the sandboxes are gone: record what is known */
        sbx_exe_unref(m->v[i]);
    }
    free(m->v);
    free(m->journal);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cond);
    free(m);
}
