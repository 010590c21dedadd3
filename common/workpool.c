/* workpool.c: the worker pool behind workpool.h (mutex + condition variable + job list). Workers
 * are detached; sbx_pool_free waits on done_cv until the last one left. */
#include "workpool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "clock.h"

#define IDLE_EXIT_MS 10000 /* an idle thread above the floor exits after this long */

struct job {
    void (*fn)(void *);
    void *arg;
    struct job *next;
};

struct sbx_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv, done_cv;
    struct job *head, *tail;
    int threads, idle, min, max;
    bool stopping;
};

static void *worker(void *arg)
{
    sbx_pool *p = arg;
    pthread_setname_np(pthread_self(), "sbx-worker");
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->stopping) {
            struct timespec ts;
            sbx_deadline_in(&ts, IDLE_EXIT_MS);
            p->idle++;
            int rc = pthread_cond_timedwait(&p->cv, &p->mu, &ts);
            p->idle--;
            if (rc == ETIMEDOUT && !p->head && p->threads > p->min)
                goto out;
        }
        if (!p->head && p->stopping)
            goto out;
        struct job *j = p->head;
        p->head = j->next;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->mu);
        j->fn(j->arg);
        free(j);
        pthread_mutex_lock(&p->mu);
    }
out:
    p->threads--;
    pthread_cond_broadcast(&p->done_cv);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static int spawn_locked(sbx_pool *p)
{
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&at, 512 * 1024);
    int rc = pthread_create(&t, &at, worker, p);
    pthread_attr_destroy(&at);
    if (rc == 0)
        p->threads++;
    return -rc;
}

sbx_pool *sbx_pool_new(int min_threads, int max_threads)
{
    sbx_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca; /* cv waits with sbx_deadline_in: monotonic */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&p->done_cv, NULL);
    p->min = min_threads < 0 ? 0 : min_threads;
    p->max = max_threads < 1 ? 1 : max_threads;
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->min; i++)
        spawn_locked(p);
    pthread_mutex_unlock(&p->mu);
    return p;
}

int sbx_pool_submit(sbx_pool *p, void (*fn)(void *), void *arg)
{
    struct job *j = malloc(sizeof *j);
    if (!j)
        return -ENOMEM;
    j->fn = fn;
    j->arg = arg;
    j->next = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->stopping) {
        pthread_mutex_unlock(&p->mu);
        free(j);
        return -EAGAIN;
    }
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    /* idle threads that are already signalled may be fewer than queued jobs: count the queue */
    int queued = 0;
    for (struct job *q = p->head; q && queued <= p->idle; q = q->next)
        queued++;
    if (queued > p->idle && p->threads < p->max)
        spawn_locked(p);
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

void sbx_pool_free(sbx_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->cv);
    while (p->threads > 0)
        pthread_cond_wait(&p->done_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    pthread_cond_destroy(&p->done_cv);
    free(p);
}
