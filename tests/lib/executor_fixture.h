/* executor_fixture.h: the executor's core and handlers without a gRPC server, for the core and
 * rpc tests (executor_fixture.c): a registry of real sandboxes in a temp data dir with the
 * execution table attached, the background monitor, optionally a port forwarder and an outbox
 * whose records are captured instead of sent, and the service data the handlers take. Needs
 * root: exf_open returns NULL after printing why when this host cannot run sandboxes, and
 * EXF_REQUIRE skips the test then. */
#ifndef SBX_EXECUTOR_FIXTURE_H
#define SBX_EXECUTOR_FIXTURE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "exectab.h"
#include "handlers.h"
#include "outbox.h"
#include "registry.h"
#include "rpc_server.h"
#include "test_main.h"

typedef struct exf_opts {
    size_t max_sandboxes;    /* 0 = 4 */
    int64_t idle_timeout_ms; /* the registry's default (0 = never) */
    bool ports;              /* a forwarder in svc.fwd */
    bool outbox;             /* records captured (exf_records) */
    size_t ring_bytes;       /* per-stream ring of each command; 0 = 1 MiB */
} exf_opts;

typedef struct exf {
    char dir[64];
    exf_opts opts;    /* what it was opened with (exf_restart_registry) */
    const char *init; /* the sbx-init binary */
    sbx_execmon *mon;
    sbx_reg *reg;
    sbx_portfwd *fwd;
    sbx_stores *stores;
    sbx_exsvc svc;
    pthread_mutex_t mu; /* captured records */
    pthread_cond_t cond;
    uint8_t **recs;
    size_t *lens, nrecs;
} exf;

#define EXF_REQUIRE(f)                                                                             \
    do {                                                                                           \
        if (!(f))                                                                                  \
            skip();                                                                                \
    } while (0)

/* A fixture (NULL, with the reason printed, when sandboxes cannot run here; the test fails on
 * other errors). */
exf *exf_open(const exf_opts *o);
void exf_close(exf *f);
/* An executor restart: frees the registry (every sandbox stopped) and opens a new one on the
 * same data dir with the same options. 0, or -1 (printed). */
int exf_restart_registry(exf *f);

/* The tenant's box of project (created on demand) with a use; NULL on failure (printed). */
sbx_box *exf_box(exf *f, const char *tenant, const char *project);
/* Waits up to timeout_ms until at least n records were captured; returns how many there are. */
size_t exf_wait_records(exf *f, size_t n, int timeout_ms);
/* Record i (decoded; free with sbx__v1__record_execution_request__free_unpacked), or NULL. */
Sbx__V1__RecordExecutionRequest *exf_record(exf *f, size_t i);

#endif
