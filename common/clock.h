/* clock.h: the one place that reads clocks for timeouts, durations and deadlines. Monotonic
 * time (never jumps) for measuring and waiting; wall-clock time only for timestamps that leave
 * the process (history records, RFC 3339 output). Header-only, no gRPC: sbx-init uses it too.
 *
 * Condition variables that wait with sbx_deadline_in must be created with
 * pthread_condattr_setclock(CLOCK_MONOTONIC). */
#ifndef SBX_CLOCK_H
#define SBX_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t sbx_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t sbx_mono_us(void)
{
    return sbx_mono_ns() / 1000u;
}

static inline uint64_t sbx_mono_ms(void)
{
    return sbx_mono_ns() / 1000000u;
}

/* Milliseconds since the Unix epoch (wall clock). */
static inline int64_t sbx_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* *ts = CLOCK_MONOTONIC now + ms (ms >= 0), for pthread_cond_timedwait on a monotonic cond. */
static inline void sbx_deadline_in(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

#endif
