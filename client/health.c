/* health.c: grpc.health.v1.Health/Check against one address of a service. */
#include "grpc/health/v1/health.pb-c.h"
#include "sbx_internal.h"

sbx_error *sbx_health_check(sbx_client *c, sbx_service svc, size_t index, int *status)
{
    *status = 0;
    if (index >= c->n[svc])
        return sbx_error_new(SBX_CODE_INVALID_ARGUMENT, "no address number %zu", index);
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)"";
    ProtobufCMessage *resp = NULL;
    sbx_error *e = sbx__unary(c, svc, index, "/grpc.health.v1.Health/Check", &req.base,
                              &grpc__health__v1__health_check_response__descriptor, &resp, true);
    if (e)
        return e;
    *status = (int)((Grpc__Health__V1__HealthCheckResponse *)resp)->status;
    protobuf_c_message_free_unpacked(resp, NULL);
    return NULL;
}
