/* selftest.h: proof at start-up that this executor can build and run a sandbox (selftest.c). */
#ifndef SBX_EXEC_SELFTEST_H
#define SBX_EXEC_SELFTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sandbox.h"

typedef struct {
    const char *init_path;
    const char *cgroup_parent; /* NULL = "sbx" */
    bool use_pool;             /* claim from the warm pool (uid_base 0) */
    uint32_t uid_base;         /* without the pool: a 65536-id block reserved for the self-test */
    sbx_sandbox_limits limits;
    int retry_ms; /* sbx_selftest_retry: interval between attempts; 0 = 10 s */
} sbx_selftest_cfg;

/* Builds a sandbox, checks its root and net namespace handles, runs `id -u` (expects 1000, exit
 * 0) and destroys it. Returns 0, or -errno with why = "<step>: <reason>". */
int sbx_selftest_run(const sbx_selftest_cfg *cfg, char *why, size_t len);

/* Retries sbx_selftest_run every retry_ms on a thread of its own until it passes, then calls
 * on_pass(arg) once and ends. Stop (and free) it with sbx_selftest_retry_stop. */
typedef struct sbx_selftest_mon sbx_selftest_mon;
sbx_selftest_mon *sbx_selftest_retry(const sbx_selftest_cfg *cfg, void (*on_pass)(void *),
                                     void *arg);
void sbx_selftest_retry_stop(sbx_selftest_mon *m); /* NULL is harmless */

#endif
