/* metrics.h: Prometheus text exposition. The server keeps per-method counters
 * (grpc_server_handled_total and a handling-seconds histogram); a service adds its own lines
 * through a callback. sbx_metrics_listen() serves them over HTTP/1.1 (libmicrohttpd: keep-alive,
 * a few threads) on GET /metrics, "ok" on GET /healthz, 404 elsewhere. */
#ifndef SBX_METRICS_H
#define SBX_METRICS_H

#include <stdio.h>

#include "rpc_server.h"

/* Writes a service's own lines. May run on several HTTP threads at once. */
typedef void (*sbx_metrics_extra_fn)(FILE *out, void *arg);

/* Writes the server's gRPC metrics in Prometheus text format. */
void sbx_metrics_write_server(FILE *out, sbx_server *s);

typedef struct sbx_metrics_http sbx_metrics_http;
/* Listens on addr ("127.0.0.1:9090", "[::1]:9090", port 0 = ephemeral) serving the server's
 * metrics plus the extra callback's. Returns NULL and logs on error; *port_out gets the bound
 * port. s must outlive the listener. */
sbx_metrics_http *sbx_metrics_listen(const char *addr, sbx_server *s, sbx_metrics_extra_fn extra,
                                     void *arg, int *port_out);
/* Closes every connection, joins the threads and frees m. NULL is harmless. */
void sbx_metrics_stop(sbx_metrics_http *m);

#endif
