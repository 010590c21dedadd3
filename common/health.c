/* health.c: the standard health service (Check inline, Watch on a worker thread). Stateless:
 * both read the serving state of the server the call arrived on. */
#include "health.h"

#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "rpc_internal.h"

#define WATCH_POLL_MS 200 /* how often a quiet Watch checks that its client is still there */

static bool known(const char *name, const char *svc)
{
    return !svc || !*svc || (name && strcmp(svc, name) == 0);
}

static int status_of(sbx_serving_state st)
{
    return st == SBX_STATE_SERVING
               ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
               : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
}

static int check(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    const Grpc__Health__V1__HealthCheckRequest *r = (const void *)req;
    if (!known(data, r->service))
        return sbx_ctx_error(ctx, SBX_NOT_FOUND, "unknown service %.200s", r->service);
    Grpc__Health__V1__HealthCheckResponse *out =
        (void *)sbx_ctx_new_msg(ctx, &grpc__health__v1__health_check_response__descriptor);
    unsigned long gen = ~0UL;
    out->status = status_of(sbx_ctx_serving_wait(ctx, &gen, 0));
    *resp = &out->base;
    return SBX_OK;
}

static int watch(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    (void)resp;
    const Grpc__Health__V1__HealthCheckRequest *r = (const void *)req;
    bool is_known = known(data, r->service);
    unsigned long gen = ~0UL;
    int last = -1;
    for (;;) {
        sbx_serving_state st = sbx_ctx_serving_wait(ctx, &gen, WATCH_POLL_MS);
        if (sbx_ctx_cancelled(ctx))
            return sbx_ctx_error(ctx, SBX_CANCELLED, "watch cancelled");
        int status = is_known
                         ? status_of(st)
                         : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
        if (status != last) {
            Grpc__Health__V1__HealthCheckResponse out =
                GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
            out.status = status;
            if (sbx_stream_send(ctx, &out.base) != 0)
                return sbx_ctx_error(ctx, SBX_CANCELLED, "watch cancelled");
            last = status;
        }
        if (st == SBX_STATE_STOPPING)
            return sbx_ctx_error(ctx, SBX_UNAVAILABLE, "server is shutting down");
    }
}

static const sbx_method health_methods[] = {
    {"Check", SBX_UNARY, SBX_RUN_INLINE | SBX_NO_AUTH, check},
    {"Watch", SBX_SERVER_STREAM, SBX_NO_AUTH, watch},
};

sbx_service_def sbx_health_service(const char *name)
{
    sbx_service_def def = {
        .desc = &grpc__health__v1__health__descriptor,
        .methods = health_methods,
        .n_methods = sizeof health_methods / sizeof health_methods[0],
        .data = (void *)name,
    };
    return def;
}
