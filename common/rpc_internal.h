/* rpc_internal.h: what the server exposes to the add-ons built on it inside common/ (metrics.c
 * renders the per-method counters, health.c reports the serving state). The server never calls
 * either of them: the arrows run from health and metrics to the server, not back. */
#ifndef SBX_RPC_INTERNAL_H
#define SBX_RPC_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>

#include "rpc_server.h"

#define SBX_LAT_BUCKETS 16
extern const double sbx_lat_bounds[SBX_LAT_BUCKETS]; /* seconds; a final +Inf bucket is implied */

/* One registered method and its counters (written by the call path with relaxed atomics). */
typedef struct sbx_method_entry {
    char path[192];    /* "/sbx.v1.StateStore/Get" */
    char service[128]; /* "sbx.v1.StateStore" */
    const char *name;  /* "Get" */
    const sbx_method *m;
    sbx_stream_kind kind;
    const ProtobufCMessageDescriptor *in, *out;
    void *data;
    void *reg;
    atomic_uint_fast64_t handled[SBX_STATUS_COUNT];
    atomic_uint_fast64_t lat[SBX_LAT_BUCKETS + 1];
    atomic_uint_fast64_t lat_sum_ns;
} sbx_method_entry;

/* The method table, in registration order; valid until sbx_server_free. */
size_t sbx_server_methods(sbx_server *s, sbx_method_entry **out);

typedef enum {
    SBX_STATE_NOT_SERVING = 0,
    SBX_STATE_SERVING,
    SBX_STATE_STOPPING, /* shutdown began: not serving, and it stays so */
} sbx_serving_state;

/* The serving state of the server ctx's call arrived on. When *gen equals the state's
 * generation, first waits up to ms for it to change (callers re-check sbx_ctx_cancelled after);
 * then stores the current generation in *gen and returns the state. Pass *gen = ~0UL to read
 * at once. A test context (no server) is always SERVING, generation 0. */
sbx_serving_state sbx_ctx_serving_wait(sbx_ctx *ctx, unsigned long *gen, int64_t ms);

#endif
