/* call.c: how libsbx makes a call: pick the shard, apply the default deadline, retry
 * UNAVAILABLE with jittered exponential backoff when (and only when) the method is idempotent,
 * and turn a failed status into an sbx_error. A stream's caller loops over attempts itself and
 * asks sbx__stream_retry after each failed one. */
#include <errno.h>
#include <time.h>

#include "sbx_internal.h"

int64_t sbx__mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sbx__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool sbx__backoff_wait(sbx_client *c, int attempt, int64_t deadline_abs_ms)
{
    if (attempt >= c->backoff.max_attempts)
        return false;
    pthread_mutex_lock(&c->mu);
    int64_t delay = sbx_backoff_delay_ms(&c->backoff, attempt, &c->seed);
    pthread_mutex_unlock(&c->mu);
    if (deadline_abs_ms > 0 && sbx__mono_ms() + delay >= deadline_abs_ms)
        return false;
    struct timespec ts = {.tv_sec = delay / 1000, .tv_nsec = (delay % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    return true;
}

bool sbx__stream_retry(sbx_client *c, sbx_rpc_result *res, int code, const char *addr,
                       bool retryable, int attempt, int64_t deadline_abs_ms, sbx_error **e)
{
    if (code == SBX_CODE_UNAVAILABLE && retryable &&
        sbx__backoff_wait(c, attempt, deadline_abs_ms)) {
        sbx_rpc_result_clear(res);
        return true;
    }
    *e = sbx__error_rpc(res, code, addr);
    if (*e)
        (*e)->attempts = attempt;
    else
        *e = sbx__error_oom();
    sbx_rpc_result_clear(res);
    return false;
}

sbx_error *sbx__unary(sbx_client *c, sbx_service svc, size_t shard, const char *method,
                      const ProtobufCMessage *req, const ProtobufCMessageDescriptor *rd,
                      ProtobufCMessage **resp, bool idempotent)
{
    sbx__shard *s = &c->shards[svc][shard];
    sbx_rpc_result res = {0};
    int code = sbx_call_unary(s->ch, method, req, rd, resp, c->deadline_ms,
                              idempotent ? &c->backoff : NULL, &res);
    if (code == SBX_CODE_OK) {
        sbx_rpc_result_clear(&res);
        return NULL;
    }
    if (*resp) {
        protobuf_c_message_free_unpacked(*resp, NULL);
        *resp = NULL;
    }
    sbx_error *e = sbx__error_rpc(&res, code, s->addr);
    sbx_rpc_result_clear(&res);
    return e ? e : sbx__error_oom();
}

sbx_error *sbx__unary_key(sbx_client *c, sbx_service svc, const char *key, const char *method,
                          const ProtobufCMessage *req, const ProtobufCMessageDescriptor *rd,
                          ProtobufCMessage **resp, bool idempotent)
{
    return sbx__unary(c, svc, sbx__shard_for(c, svc, key), method, req, rd, resp, idempotent);
}
