/* workpool.h: a growing pool of worker threads for blocking handlers. A job never waits for a
 * free thread while the pool is below its cap: a new thread starts instead (streaming handlers
 * may hold a thread for the life of a stream). Idle threads above the floor exit after 10 s. */
#ifndef SBX_WORKPOOL_H
#define SBX_WORKPOOL_H

typedef struct sbx_pool sbx_pool;

sbx_pool *sbx_pool_new(int min_threads, int max_threads);
/* Queues fn(arg). Returns 0, or -EAGAIN after sbx_pool_free started. */
int sbx_pool_submit(sbx_pool *p, void (*fn)(void *), void *arg);
/* Runs the queued jobs to completion, then joins every thread and frees the pool. */
void sbx_pool_free(sbx_pool *p);

#endif
