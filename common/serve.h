/* serve.h: what every service binary shares: the server flags (listen, keys, TLS, threads,
 * limits, logging) as config-table rows, building the server from them (the binary's services
 * plus grpc.health.v1.Health), printing "listening on HOST:PORT", and the SIGTERM/SIGINT
 * graceful-stop loop. */
#ifndef SBX_SERVE_H
#define SBX_SERVE_H

#include "config.h"
#include "rpc_server.h"

typedef struct sbx_server_flags {
    const char *listen, *api_keys, *tls_cert, *tls_key, *tls_client_ca, *log_level;
    int64_t poll_threads, max_workers, max_message, grace_ms;
} sbx_server_flags;

#define SBX_SERVER_FLAG_COUNT 10
/* Fills SBX_SERVER_FLAG_COUNT rows into rows[] bound to f. */
void sbx_server_flag_rows(sbx_cfg_opt *rows, sbx_server_flags *f, const char *default_listen);
/* Applies the log level and converts the flags to server options (health_name given). */
void sbx_server_flags_apply(const sbx_server_flags *f, sbx_server_opts *o, const char *health_name);
/* A server for these services plus grpc.health.v1.Health answering for "" and o->health_name
 * (sbx_server_new_bare adds nothing). Returns NULL and logs on error. */
sbx_server *sbx_server_new(const sbx_server_opts *o, const sbx_service_def *services,
                           size_t n_services);
/* "HOST:PORT" with the bound port substituted for the requested one. */
void sbx_listen_addr(const char *listen, int port, char *out, size_t outlen);
/* Start-up check of an address flag (NULL = not given): 0, or 2 after printing
 * "PROG: FLAG: bad address ..." (port 0 = ephemeral allowed for listening flags). */
int sbx_check_addr_flag(const char *prog, const char *flag, const char *value, bool listening);
/* Prints "listening on HOST:PORT", waits for SIGTERM/SIGINT, then stops the server gracefully.
 * Returns the signal number. sbx_signals_block() must have been called before threads started. */
int sbx_serve_until_signal(sbx_server *s, const char *listen, const char *prog);

#endif
