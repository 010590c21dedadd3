/* backoff.h: retry schedule with jittered exponential backoff (gRFC A6 style):
 * delay(n) = min(initial * multiplier^(n-1), max) * (1 +/- jitter), for attempts n = 1, 2, ... */
#ifndef SBX_BACKOFF_H
#define SBX_BACKOFF_H

#include <stdint.h>

typedef struct sbx_backoff {
    int64_t initial_ms; /* delay before the 2nd attempt, before jitter */
    int64_t max_ms;     /* cap on any delay */
    double multiplier;  /* >= 1 */
    double jitter;      /* 0..1: fraction of the delay randomised either way */
    int max_attempts;   /* total attempts including the first (>= 1) */
} sbx_backoff;

/* 100 ms initial, 5 s max, x1.6, jitter 0.2, 5 attempts. */
extern const sbx_backoff sbx_backoff_default;

/* Delay before attempt number `attempt` + 1 (attempt >= 1). seed: per-caller PRNG state. */
int64_t sbx_backoff_delay_ms(const sbx_backoff *b, int attempt, uint64_t *seed);
/* Uniform double in [0,1) from a splitmix64 state. */
double sbx_rand01(uint64_t *seed);

#endif
