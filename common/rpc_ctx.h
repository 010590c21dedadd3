/* rpc_ctx.h: internal layout of a server call context, shared by rpc_server.c (the gRPC side)
 * and rpc_ctx.c (arena, errors, test contexts). Not part of the handler API. */
#ifndef SBX_RPC_CTX_H
#define SBX_RPC_CTX_H

#include <grpc/grpc.h>
#include <pthread.h>
#include <stdatomic.h>

#include "rpc_server.h"

struct sbx_method_entry;
struct sbx_cq_thread;

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
    struct sbx_method_entry *me; /* NULL for unknown methods */
    struct sbx_cq_thread *cqt;
    atomic_int refs;

    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *payload;
    grpc_call_details details; /* unknown methods only */

    sbx_tag t_new, t_finish, t_close, t_send, t_recv;
    grpc_byte_buffer *send_buf;  /* owned until its batch completes */
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
    char *peer;
    int64_t start_ns;
    bool live;

    struct sbx_arena_block *arena;
    struct sbx_defer *defers;

    /* test contexts */
    bool test;
    struct sbx_test_msg *test_in, *test_out;
};

/* rpc_ctx.c */
void sbx_ctx_init_common(sbx_ctx *ctx);
void sbx_ctx_release_common(sbx_ctx *ctx); /* runs defers, frees arena and error message */
int64_t sbx_now_ns(void);

#endif
