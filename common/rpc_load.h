/* rpc_load.h: the load-generation engine behind sbx-bench (ghz-like), and the bare gRPC C core
 * echo server used as the baseline that the layer is measured against in the same run.
 * The engine keeps `concurrency` unary calls in flight per client thread on one completion
 * queue, re-issuing each as it completes, and records every latency. */
#ifndef SBX_RPC_LOAD_H
#define SBX_RPC_LOAD_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct sbx_load_md {
    const char *key, *value;
} sbx_load_md;

typedef struct sbx_load_opts {
    const char *target;
    const char *method;         /* full path "/pkg.Service/Method" */
    const uint8_t *const *reqs; /* serialized requests, used round-robin */
    const size_t *req_lens;
    size_t n_reqs;
    int concurrency;     /* calls in flight per thread */
    int threads;         /* client threads, each with its own channel + CQ */
    int64_t total;       /* stop after this many calls (0 = use duration) */
    double duration_s;   /* stop after this long (when total == 0) */
    double warmup_s;     /* calls completing in the first warmup_s are not counted */
    int64_t deadline_ms; /* per call, 0 = none */
    const sbx_load_md *md;
    size_t n_md;
    const char *tls_ca; /* TLS to the target when set */
} sbx_load_opts;

typedef struct sbx_load_result {
    uint64_t count;                   /* counted calls (after warm-up) */
    uint64_t codes[SBX_STATUS_COUNT]; /* by gRPC status */
    double elapsed_s;                 /* measured window */
    double rps;
    double p50_us, p90_us, p99_us, p999_us, max_us, mean_us;
    char first_error[256]; /* first non-OK status message seen */
} sbx_load_result;

/* Runs the load; returns 0, or -1 with a reason in out->first_error. */
int sbx_load_run(const sbx_load_opts *o, sbx_load_result *out);

/* Bare echo server: one completion-queue thread, one registered method "/sbx.bench.Echo/Echo"
 * answering each request with its own bytes, nothing else (no auth, no decode). Serves until
 * SIGINT/SIGTERM; prints "listening on HOST:PORT". Returns the process exit code. */
int sbx_echo_serve(const char *listen);

#endif
