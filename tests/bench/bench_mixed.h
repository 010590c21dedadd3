/* bench_mixed.h: `sbx-bench --scenario mixed`, a realistic many-project load through libsbx
 * (both services, every configured instance), and its exactly-once check of the history. */
#ifndef SBX_BENCH_MIXED_H
#define SBX_BENCH_MIXED_H

#include <stddef.h>

/* Options shared by the load and the check. */
typedef struct sbx_mixed_opts {
    const char *executor; /* "A,B"; NULL = SBX_EXECUTOR or the default */
    const char *store;    /* "A,B,C"; NULL = SBX_STORE or the default */
    const char *api_key;
    const char *prefix; /* project ids are PREFIX-NNN */
    const char *acked;  /* file of "project k" lines: written by the load, read by the check */
    size_t projects;    /* default 64 */
    size_t concurrency; /* worker threads, default min(projects, 16) */
    double duration_s;  /* run time (default 10 s) unless loops is set */
    size_t loops;       /* loops per project (0 = until duration_s) */
    int json;
} sbx_mixed_opts;

/* Parses argv (after the program name); exits 2 naming the flag on a bad value. check is set
 * when --check was given. */
void sbx_mixed_parse(int argc, char **argv, sbx_mixed_opts *o, int *check);
/* Runs the load and prints per-operation p50/p99, rps and errors by status. Returns 0, or 1
 * when an operation failed with a status other than UNAVAILABLE/DEADLINE_EXCEEDED. */
int sbx_mixed_run(const sbx_mixed_opts *o);
/* Reads o->acked and checks every acknowledged command is in its project's history exactly
 * once (and nothing is there twice). Prints the counts; returns 0 or 1. */
int sbx_mixed_check(const sbx_mixed_opts *o);

#endif
