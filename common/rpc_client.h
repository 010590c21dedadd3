/* rpc_client.h: the client half of the gRPC layer. Channels (insecure or TLS/mTLS, with an API
 * key and tenant sent as metadata), unary calls with deadlines and retries with jittered
 * exponential backoff on UNAVAILABLE for idempotent methods, server-streaming reads and
 * client-streaming writes. Synchronous: each call uses its own pluck completion queue, so any
 * thread may call at any time. */
#ifndef SBX_RPC_CLIENT_H
#define SBX_RPC_CLIENT_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

#include "backoff.h"
#include "status.h"

typedef struct sbx_chan sbx_chan;

typedef struct sbx_chan_opts {
    const char *target;   /* "127.0.0.1:50051" */
    const char *api_key;  /* sent as "authorization: Bearer <key>"; NULL = none */
    const char *tenant;   /* sent as "x-sbx-tenant" (service principals); NULL = none */
    const char *tls_ca;   /* PEM file: enables TLS and verifies the server against it */
    const char *tls_cert; /* PEM files: client certificate for mTLS */
    const char *tls_key;
    const char *tls_server_name; /* override of the name checked in the server certificate */
    int max_message_bytes;       /* 0 = 16 MiB */
} sbx_chan_opts;

/* Returns NULL with a reason in err (unreadable TLS files). The channel connects lazily. */
sbx_chan *sbx_chan_new(const sbx_chan_opts *o, char *err, size_t errlen);
void sbx_chan_free(sbx_chan *c);

/* Result of a call: a gRPC status code and a message (malloc'd; free with sbx_rpc_result_clear). */
typedef struct sbx_rpc_result {
    int code;
    char *message;
    int attempts;
} sbx_rpc_result;

void sbx_rpc_result_clear(sbx_rpc_result *r);

/* Unary call. method is the full path "/sbx.v1.StateStore/Get". deadline_ms <= 0 means none.
 * retry == NULL: one attempt. With retry, UNAVAILABLE is retried with backoff while time is
 * left before the deadline (only pass retry for idempotent methods). On OK *resp is the
 * unpacked response (free with protobuf_c_message_free_unpacked(*resp, NULL)). Returns the code. */
int sbx_call_unary(sbx_chan *c, const char *method, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                   int64_t deadline_ms, const sbx_backoff *retry, sbx_rpc_result *res);

/* Server streaming: starts the call (one attempt, wait-for-ready off). */
typedef struct sbx_cstream sbx_cstream;
int sbx_call_server_stream(sbx_chan *c, const char *method, const ProtobufCMessage *req,
                           int64_t deadline_ms, sbx_cstream **out, sbx_rpc_result *res);
/* Next message: 1 with *msg set (caller frees with protobuf_c_message_free_unpacked), 0 at the end
 * of the stream (then sbx_cstream_finish gives the status), -1 on a decode error. */
int sbx_cstream_next(sbx_cstream *s, const ProtobufCMessageDescriptor *d, ProtobufCMessage **msg);
/* Client streaming: open the call, write messages, then close and read the single response. */
int sbx_call_client_stream(sbx_chan *c, const char *method, int64_t deadline_ms, sbx_cstream **out,
                           sbx_rpc_result *res);
/* Returns 0, or -1 when the call already failed (finish to learn why). */
int sbx_cstream_write(sbx_cstream *s, const ProtobufCMessage *msg);
int sbx_cstream_close_and_recv(sbx_cstream *s, const ProtobufCMessageDescriptor *d,
                               ProtobufCMessage **resp, sbx_rpc_result *res);
/* Cancels the call (if still running), waits for its status and frees the stream. Returns the code.
 */
int sbx_cstream_finish(sbx_cstream *s, sbx_rpc_result *res);
void sbx_cstream_cancel(sbx_cstream *s);

#endif
