/* backoff.c: the retry schedule of backoff.h. */
#include "backoff.h"

const sbx_backoff sbx_backoff_default = {
    .initial_ms = 100, .max_ms = 5000, .multiplier = 1.6, .jitter = 0.2, .max_attempts = 5};

double sbx_rand01(uint64_t *seed)
{
    uint64_t z = (*seed += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

int64_t sbx_backoff_delay_ms(const sbx_backoff *b, int attempt, uint64_t *seed)
{
    if (attempt < 1)
        attempt = 1;
    double d = (double)b->initial_ms;
    double mult = b->multiplier < 1 ? 1 : b->multiplier;
    for (int i = 1; i < attempt && d < (double)b->max_ms; i++)
        d *= mult;
    if (d > (double)b->max_ms)
        d = (double)b->max_ms;
    double j = b->jitter < 0 ? 0 : b->jitter > 1 ? 1 : b->jitter;
    d *= 1.0 + j * (2.0 * sbx_rand01(seed) - 1.0);
    if (d < 0)
        d = 0;
    if (d > (double)b->max_ms)
        d = (double)b->max_ms;
    return (int64_t)(d + 0.5);
}
