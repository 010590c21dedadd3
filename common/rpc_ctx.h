/* rpc_ctx.h: internal layout of the server and of a call context, shared by the server's own
 * files only: rpc_server.c (construction, start, serving state, shutdown), rpc_call.c (one call
 * from arrival to final status, streams, the polling threads) and rpc_ctx.c (arena, errors,
 * test contexts). Not part of the handler API. rpc_server.c calls into rpc_call.c, never back.
 */
#ifndef SBX_RPC_CTX_H
#define SBX_RPC_CTX_H

#include <grpc/grpc.h>
#include <pthread.h>
#include <stdatomic.h>

#include "auth.h"
#include "rpc_internal.h"
#include "rpc_server.h"
#include "workpool.h"

/* One polling thread and the completion queue it owns. */
typedef struct sbx_cq_thread {
    sbx_server *srv;
    grpc_completion_queue *cq;
    pthread_t th;
    bool started;
} sbx_cq_thread;

struct sbx_server {
    sbx_server_opts o;
    grpc_server *server;
    sbx_cq_thread *cqs;
    int n_cqs;
    int port;
    sbx_method_entry *methods;
    size_t n_methods;
    sbx_auth *auth;
    sbx_pool *pool;
    grpc_completion_queue *shutdown_cq;
    atomic_bool shutting_down;
    bool started, shut;
    pthread_mutex_t live_mu; /* shutdown waits on live_cv (monotonic) for live to reach 0 */
    pthread_cond_t live_cv;
    atomic_long live;         /* calls that arrived and are not freed yet */
    pthread_mutex_t state_mu; /* guards state and state_gen; state_cv (monotonic) wakes Watch */
    pthread_cond_t state_cv;
    sbx_serving_state state;
    unsigned long state_gen; /* bumped on every change of state */
};

typedef enum {
    SBX_TAG_NEW_CALL = 1,
    SBX_TAG_UNKNOWN_CALL,
    SBX_TAG_FINISH,
    SBX_TAG_CLOSE,
    SBX_TAG_SEND,
    SBX_TAG_RECV,
    SBX_TAG_SHUTDOWN,
} sbx_tag_type;

typedef struct sbx_tag {
    sbx_tag_type type;
    struct sbx_ctx *ctx;
} sbx_tag;

struct sbx_arena_block;
struct sbx_defer;
struct sbx_test_msg;

struct sbx_ctx {
    sbx_server *srv;
    sbx_method_entry *me; /* NULL for unknown methods */
    sbx_cq_thread *cqt;
    atomic_int refs;

    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *payload; /* the request; a client stream's first message (NULL = none) */
    bool payload_taken;        /* a client stream's first sbx_stream_recv took payload */
    grpc_call_details details; /* unknown methods only */

    sbx_tag t_new, t_finish, t_close, t_send, t_recv;
    grpc_byte_buffer *send_buf;   /* owned until its batch completes */
    grpc_byte_buffer *stream_buf; /* the stream message in flight (under mu) */
    grpc_byte_buffer *recv_buf;
    int close_cancelled;

    /* stream hand-off between a worker thread and the polling thread */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int send_state; /* 0 idle, 1 in flight, 2 done ok, 3 done failed */
    int recv_state;
    bool initial_md_sent;
    atomic_bool cancelled;
    atomic_bool closed;

    const ProtobufCMessage *req;
    ProtobufCMessage *resp;
    int code;
    char *errmsg;
    char tenant[72];
    bool is_service;
    int64_t start_ns;
    bool live;

    struct sbx_arena_block *arena;
    struct sbx_defer *defers;

    /* test contexts */
    bool test;
    bool test_done; /* sbx_ctx_finish ran (under mu; cv wakes sbx_ctx_test_wait) */
    int test_code;
    ProtobufCMessage *test_resp;
    struct sbx_test_msg *test_in, *test_out;
};

/* rpc_ctx.c */
void sbx_ctx_init_common(sbx_ctx *ctx);
void sbx_ctx_release_common(sbx_ctx *ctx); /* runs defers, frees arena and error message */
int sbx_ctx_test_send(sbx_ctx *ctx, const ProtobufCMessage *msg);
int sbx_ctx_test_recv(sbx_ctx *ctx, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out);
void sbx_ctx_test_finish(sbx_ctx *ctx, int code, ProtobufCMessage *resp);

/* rpc_call.c */
/* Arms one request for method me (me == NULL: any unknown method) on cqt's queue. */
void sbx_call_arm(sbx_server *s, sbx_method_entry *me, sbx_cq_thread *cqt);
/* The body of a polling thread (arg: its sbx_cq_thread); returns when the queue shuts down. */
void *sbx_call_poll_thread(void *arg);
/* Waits until no call is alive or ms passed (ms < 0: forever); true when none is left. */
bool sbx_calls_wait(sbx_server *s, int64_t ms);

#endif
