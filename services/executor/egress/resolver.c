/* resolver.c: name resolution off the event loop. A few threads take lookups from a queue, call
 * getaddrinfo (which may block for seconds on a slow DNS server) and post the results to a done
 * list, waking the loop through its eventfd. The loop keeps each sandbox to a few lookups at a
 * time (EG_LOOKUPS_PER_SB), so one sandbox flooding slow names cannot take every thread.
 *
 * Threads: the resolver threads (signals blocked) and the loop. Lock: r->mu guards both
 * queues. A lookup belongs to the queue it is in; its conn field is only touched by the loop. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "egress_int.h"

struct eg_resolver {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    eg_lookup *todo, **todo_tail;
    eg_lookup *done, **done_tail;
    bool stop;
    int wakefd;
    pthread_t *thr;
    unsigned n;
};

void sbx__eg_lookup_free(eg_lookup *l)
{
    if (!l)
        return;
    if (l->res)
        freeaddrinfo(l->res);
    free(l);
}

static void *resolver_main(void *arg)
{
    eg_resolver *r = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->stop && !r->todo)
            pthread_cond_wait(&r->cv, &r->mu);
        if (r->stop)
            break;
        eg_lookup *l = r->todo;
        r->todo = l->next;
        if (!r->todo)
            r->todo_tail = &r->todo;
        pthread_mutex_unlock(&r->mu);
        struct addrinfo hints = {
            .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
        l->gai_err = getaddrinfo(l->name, NULL, &hints, &l->res);
        if (l->gai_err)
            l->res = NULL;
        pthread_mutex_lock(&r->mu);
        l->next = NULL;
        *r->done_tail = l;
        r->done_tail = &l->next;
        uint64_t one = 1;
        ssize_t w = write(r->wakefd, &one, sizeof one);
        (void)w;
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

int sbx__eg_resolver_new(unsigned threads, int wakefd, eg_resolver **out)
{
    eg_resolver *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->todo_tail = &r->todo;
    r->done_tail = &r->done;
    r->wakefd = wakefd;
    r->thr = calloc(threads, sizeof *r->thr);
    if (!r->thr) {
        sbx__eg_resolver_free(r);
        return -ENOMEM;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 512 * 1024);
    for (unsigned i = 0; i < threads; i++) {
        int rc = pthread_create(&r->thr[i], &attr, resolver_main, r);
        if (rc != 0) {
            pthread_attr_destroy(&attr);
            sbx__eg_resolver_free(r);
            return -rc;
        }
        r->n++;
    }
    pthread_attr_destroy(&attr);
    *out = r;
    return 0;
}

static void free_list(eg_lookup *l)
{
    while (l) {
        eg_lookup *next = l->next;
        sbx__eg_lookup_free(l);
        l = next;
    }
}

void sbx__eg_resolver_free(eg_resolver *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->stop = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    for (unsigned i = 0; i < r->n; i++)
        pthread_join(r->thr[i], NULL);
    free(r->thr);
    free_list(r->todo);
    free_list(r->done);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

void sbx__eg_resolver_submit(eg_resolver *r, eg_lookup *l)
{
    l->next = NULL;
    pthread_mutex_lock(&r->mu);
    *r->todo_tail = l;
    r->todo_tail = &l->next;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

eg_lookup *sbx__eg_resolver_take(eg_resolver *r)
{
    pthread_mutex_lock(&r->mu);
    eg_lookup *l = r->done;
    r->done = NULL;
    r->done_tail = &r->done;
    pthread_mutex_unlock(&r->mu);
    return l;
}
