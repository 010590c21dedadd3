/* stores.h: the executor's sbx-store instances (--store A,B,C). Each store has its own client
 * and its own durable outbox (<outbox_root>/store-<address>-<hash>/), and a project's records
 * and cache lookups go to the store libsbx picks for that project (common/route.c), so a dead
 * store delays only its own projects' records. Outboxes left by stores that are no longer
 * listed, and the single outbox of earlier versions (<outbox_root>/queue.log), are drained
 * too: their records go to the current owner of each record's project, and a drained leftover
 * is removed at close. Thread-safe after open. */
#ifndef SBX_EXEC_STORES_H
#define SBX_EXEC_STORES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "outbox.h"
#include "route.h"
#include "sbx/v1/store.pb-c.h"

typedef struct sbx_stores sbx_stores;

typedef struct sbx_stores_cfg {
    const sbx_addr_list *addrs; /* at least one; copied */
    const char *api_key;        /* NULL = none */
    const char *outbox_root;    /* <data-dir>/outbox */
    bool sync;                  /* fdatasync each record (--outbox-sync) */
    /* Tests: records go to deliver(deliver_arg, ...) instead of the stores (NULL = the
     * stores' RecordExecution); retry_initial_ms 0 = the outbox default. */
    sbx_outbox_deliver_fn deliver;
    void *deliver_arg;
    int64_t retry_initial_ms;
} sbx_stores_cfg;

/* Opens a client and an outbox per store, and the leftovers. Returns 0, or -errno with err
 * naming the directory that failed. */
int sbx_stores_open(const sbx_stores_cfg *cfg, sbx_stores **out, char *err, size_t errlen);
/* Gives the outboxes up to flush_ms (in all) to deliver, logs what stays queued for the next
 * start, closes everything. NULL is harmless. */
void sbx_stores_close(sbx_stores *s, int flush_ms);

/* Appends a packed RecordExecutionRequest of project to its store's outbox (see
 * sbx_outbox_append for the return values). */
int sbx_stores_append(sbx_stores *s, const char *tenant, const char *project, const uint8_t *req,
                      size_t len);
/* GetCachedResult at the project's store (see sbx_storecli_cache_get). */
int sbx_stores_cache_get(sbx_stores *s, const char *tenant, const char *project,
                         const char *command_key, int64_t deadline_ms,
                         Sbx__V1__GetCachedResultResponse **out, char *err, size_t errlen);

size_t sbx_stores_count(const sbx_stores *s);
const char *sbx_stores_addr(const sbx_stores *s, size_t i);
/* The address that owns project (owned by s). */
const char *sbx_stores_route(const sbx_stores *s, const char *project);
void sbx_stores_stats(sbx_stores *s, size_t i, sbx_outbox_stats *st);
/* Prometheus lines per store: sbx_outbox_pending_records, sbx_outbox_oldest_record_seconds,
 * sbx_outbox_failing_seconds, sbx_outbox_delivered_total, sbx_outbox_dead_total,
 * sbx_outbox_retries_total, each with store="HOST:PORT". */
void sbx_stores_metrics_write(FILE *out, sbx_stores *s);

#endif
