/* test_workpool.c: the worker pool runs every job, grows for blocked jobs, drains on free. */
#include "test_main.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "workpool.h"

static atomic_int ran;

static void count_job(void *arg)
{
    (void)arg;
    atomic_fetch_add(&ran, 1);
}

static void runs_every_job(void **state)
{
    (void)state;
    atomic_store(&ran, 0);
    sbx_pool *p = sbx_pool_new(2, 8);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(sbx_pool_submit(p, count_job, NULL), 0);
    sbx_pool_free(p);
    assert_int_equal(atomic_load(&ran), 1000);
}

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int waiting, open_gate;

static void blocking_job(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&gate_mu);
    waiting++;
    pthread_cond_broadcast(&gate_cv);
    while (!open_gate)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
}

/* 16 jobs that all block until all 16 are running: only possible if the pool grows to 16. */
static void grows_for_blocking_jobs(void **state)
{
    (void)state;
    sbx_pool *p = sbx_pool_new(1, 32);
    for (int i = 0; i < 16; i++)
        sbx_pool_submit(p, blocking_job, NULL);
    pthread_mutex_lock(&gate_mu);
    for (int spins = 0; waiting < 16 && spins < 500; spins++) {
        pthread_mutex_unlock(&gate_mu);
        usleep(10000);
        pthread_mutex_lock(&gate_mu);
    }
    assert_int_equal(waiting, 16);
    open_gate = 1;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
    sbx_pool_free(p);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(runs_every_job),
    cmocka_unit_test(grows_for_blocking_jobs),
};
SBX_TEST_MAIN(tests)
