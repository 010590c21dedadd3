/* bench_scenarios.h: named request sets for sbx-bench (serialized protobuf bytes, several
 * distinct requests per scenario so writes do not all hit one key). */
#ifndef SBX_BENCH_SCENARIOS_H
#define SBX_BENCH_SCENARIOS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct sbx_bench_reqs {
    uint8_t **bufs;
    size_t *lens;
    size_t n, cap;
    const char *method; /* default method of the scenario */
} sbx_bench_reqs;

int sbx_bench_build(const char *scenario, sbx_bench_reqs *out);
void sbx_bench_reqs_add(sbx_bench_reqs *r, const uint8_t *buf, size_t len);
void sbx_bench_reqs_free(sbx_bench_reqs *r);
void sbx_bench_list_scenarios(FILE *out);

#endif
