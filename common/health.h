/* health.h: grpc.health.v1.Health as a service like any other, built on the server's handler
 * API. Check answers for "" and the server's service name (others: NOT_FOUND); Watch streams
 * the status now and on every change (unknown names get SERVICE_UNKNOWN, per the spec) and ends
 * with UNAVAILABLE when the server shuts down. The status is the server's serving state
 * (sbx_server_set_serving); sbx_server_new (serve.h) registers this service. */
#ifndef SBX_HEALTH_H
#define SBX_HEALTH_H

#include "rpc_server.h"

/* The service definition; name ("sbx.v1.StateStore", NULL = none) is borrowed and must outlive
 * the server. */
sbx_service_def sbx_health_service(const char *name);

#endif
