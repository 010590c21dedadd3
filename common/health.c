/* health.c: the standard health service (Check inline, Watch on a worker thread). */
#include "health.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "grpc/health/v1/health.pb-c.h"

void sbx_health_init(sbx_health *h, const char *name)
{
    memset(h, 0, sizeof *h);
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    snprintf(h->name, sizeof h->name, "%s", name ? name : "");
}

void sbx_health_destroy(sbx_health *h)
{
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
}

void sbx_health_set(sbx_health *h, bool serving)
{
    pthread_mutex_lock(&h->mu);
    if (h->serving != serving) {
        h->serving = serving;
        h->gen++;
        pthread_cond_broadcast(&h->cv);
    }
    pthread_mutex_unlock(&h->mu);
}

void sbx_health_stop(sbx_health *h)
{
    pthread_mutex_lock(&h->mu);
    h->stopping = true;
    h->gen++;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

static bool known(sbx_health *h, const char *svc)
{
    return !svc || !*svc || strcmp(svc, h->name) == 0;
}

static int check(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    sbx_health *h = data;
    const Grpc__Health__V1__HealthCheckRequest *r = (const void *)req;
    if (!known(h, r->service))
        return sbx_ctx_error(ctx, SBX_NOT_FOUND, "unknown service %.200s", r->service);
    Grpc__Health__V1__HealthCheckResponse *out =
        (void *)sbx_ctx_new_msg(ctx, &grpc__health__v1__health_check_response__descriptor);
    pthread_mutex_lock(&h->mu);
    out->status = h->serving ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                             : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    pthread_mutex_unlock(&h->mu);
    *resp = &out->base;
    return SBX_OK;
}

static int watch(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    (void)resp;
    sbx_health *h = data;
    const Grpc__Health__V1__HealthCheckRequest *r = (const void *)req;
    bool is_known = known(h, r->service);
    unsigned long seen = (unsigned long)-1;
    int last = -1;
    for (;;) {
        pthread_mutex_lock(&h->mu);
        while (h->gen == seen && !sbx_ctx_cancelled(ctx)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 200 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&h->cv, &h->mu, &ts);
        }
        seen = h->gen;
        int st = !is_known ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN
                 : h->serving ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                              : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
        bool stopping = h->stopping;
        pthread_mutex_unlock(&h->mu);
        if (sbx_ctx_cancelled(ctx))
            return sbx_ctx_error(ctx, SBX_CANCELLED, "watch cancelled");
        if (st != last) {
            Grpc__Health__V1__HealthCheckResponse out = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
            out.status = st;
            if (sbx_stream_send(ctx, &out.base) != 0)
                return sbx_ctx_error(ctx, SBX_CANCELLED, "watch cancelled");
            last = st;
        }
        if (stopping)
            return sbx_ctx_error(ctx, SBX_UNAVAILABLE, "server is shutting down");
    }
}

static const sbx_method health_methods[] = {
    {"Check", SBX_UNARY, SBX_RUN_INLINE | SBX_NO_AUTH, check},
    {"Watch", SBX_SERVER_STREAM, SBX_NO_AUTH, watch},
};

void sbx_health_service(sbx_health *h, sbx_service_def *out)
{
    out->desc = &grpc__health__v1__health__descriptor;
    out->methods = health_methods;
    out->n_methods = sizeof health_methods / sizeof health_methods[0];
    out->data = h;
}
