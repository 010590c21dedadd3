/* store_metrics.h: the store's own Prometheus lines (cache, history, commit groups, RocksDB
 * size and compaction figures), appended to the gRPC server's on /metrics. */
#ifndef SBX_STORE_METRICS_H
#define SBX_STORE_METRICS_H

#include <stdio.h>

/* arg is the sdb *. */
void sbx_store_metrics_write(FILE *out, void *arg);

#endif
