/* health.h: grpc.health.v1.Health served through the same method table as every service.
 * Check answers for "" and the server's service name (others: NOT_FOUND); Watch streams the
 * status now and on every change (unknown names get SERVICE_UNKNOWN, per the spec). */
#ifndef SBX_HEALTH_H
#define SBX_HEALTH_H

#include <pthread.h>
#include <stdbool.h>

#include "rpc_server.h"

typedef struct sbx_health {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool serving;
    bool stopping;
    unsigned long gen;
    char name[128];
} sbx_health;

void sbx_health_init(sbx_health *h, const char *service_name);
void sbx_health_destroy(sbx_health *h);
void sbx_health_set(sbx_health *h, bool serving);
/* Wakes Watch streams so they end (shutdown). */
void sbx_health_stop(sbx_health *h);
void sbx_health_service(sbx_health *h, sbx_service_def *out);

#endif
