/* rpc_internal.h: the method-table entry the server builds per registered method, and the
 * per-method metrics it keeps. Shared by rpc_server.c, health.c and metrics.c only. */
#ifndef SBX_RPC_INTERNAL_H
#define SBX_RPC_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>

#include "rpc_server.h"

#define SBX_LAT_BUCKETS 16
extern const double sbx_lat_bounds[SBX_LAT_BUCKETS]; /* seconds; a final +Inf bucket is implied */

typedef struct sbx_method_entry {
    char path[192];    /* "/sbx.v1.StateStore/Get" */
    char service[128]; /* "sbx.v1.StateStore" */
    const char *name;  /* "Get" */
    const sbx_method *m;
    sbx_stream_kind kind;
    const ProtobufCMessageDescriptor *in, *out;
    void *data;
    void *reg;
    atomic_uint_fast64_t handled[17];
    atomic_uint_fast64_t lat[SBX_LAT_BUCKETS + 1];
    atomic_uint_fast64_t lat_sum_ns;
} sbx_method_entry;

void sbx_metrics_record(sbx_method_entry *me, int code, int64_t ns);
size_t sbx_server_methods(sbx_server *s, sbx_method_entry **out);

#endif
