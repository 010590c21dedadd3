/* rpc_server.c: the gRPC C core server loop. Builds the method table from protobuf-c service
 * descriptors, keeps requests armed on one completion queue per polling thread, checks auth,
 * decodes requests, runs handlers inline or on the worker pool, and sends replies and stream
 * messages. Every pending batch holds a reference on its call context; the context is freed
 * when the last one completes. */
#include "rpc_server.h"

#include <errno.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "health.h"
#include "log.h"
#include "pbcheck.h"
#include "rpc_ctx.h"
#include "rpc_util.h"
#include "rpc_internal.h"
#include "workpool.h"

#define ARMED_PER_METHOD 4
#define ARMED_UNKNOWN 2
#define SBX_STATUS_MESSAGE_MAX 1024 /* bytes of a status message sent to clients */

int sbx_ctx_test_send(sbx_ctx *ctx, const ProtobufCMessage *msg);
int sbx_ctx_test_recv(sbx_ctx *ctx, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out);

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
    sbx_health health;
    grpc_completion_queue *shutdown_cq;
    atomic_bool shutting_down;
    bool started, shut;
    pthread_mutex_t live_mu; /* shutdown waits on live_cv for live to reach 0 */
    pthread_cond_t live_cv;
    atomic_long live;        /* calls that arrived and are not freed yet */
};

static void live_add(sbx_server *s, int d)
{
    long v = atomic_fetch_add(&s->live, d) + d;
    if (v == 0 && atomic_load(&s->shutting_down)) {
        pthread_mutex_lock(&s->live_mu);
        pthread_cond_broadcast(&s->live_cv);
        pthread_mutex_unlock(&s->live_mu);
    }
}

/* Waits until no call is alive or ms passed (ms < 0: forever); true when none is left. Polls
 * in short steps as well, since live_add signals without holding the mutex across its check. */
static bool live_wait(sbx_server *s, int64_t ms)
{
    int64_t deadline = sbx_now_ns() + ms * 1000000;
    pthread_mutex_lock(&s->live_mu);
    while (atomic_load(&s->live) > 0 && (ms < 0 || sbx_now_ns() < deadline)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&s->live_cv, &s->live_mu, &ts);
    }
    bool none = atomic_load(&s->live) == 0;
    pthread_mutex_unlock(&s->live_mu);
    return none;
}

/* ---------------------------------------------------------------- refs, lifetimes */

static void ctx_unref(sbx_ctx *ctx)
{
    int left = atomic_fetch_sub(&ctx->refs, 1) - 1;
    if (left > 0)
        return;
    sbx_server *srv = ctx->srv;
    bool was_live = ctx->live;
    if (ctx->call)
        grpc_call_unref(ctx->call);
    grpc_metadata_array_destroy(&ctx->md);
    if (!ctx->me)
        grpc_call_details_destroy(&ctx->details);
    if (ctx->payload)
        grpc_byte_buffer_destroy(ctx->payload);
    if (ctx->send_buf)
        grpc_byte_buffer_destroy(ctx->send_buf);
    if (ctx->stream_buf)
        grpc_byte_buffer_destroy(ctx->stream_buf);
    if (ctx->recv_buf)
        grpc_byte_buffer_destroy(ctx->recv_buf);
    if (ctx->req)
        protobuf_c_message_free_unpacked((ProtobufCMessage *)ctx->req, NULL);
    sbx_ctx_release_common(ctx);
    free(ctx);
    if (was_live)
        live_add(srv, -1);
}

static void ctx_ref(sbx_ctx *ctx)
{
    atomic_fetch_add(&ctx->refs, 1);
}

static sbx_ctx *ctx_new(sbx_server *s, sbx_method_entry *me, sbx_cq_thread *cqt)
{
    sbx_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        abort();
    sbx_ctx_init_common(ctx);
    ctx->srv = s;
    ctx->me = me;
    ctx->cqt = cqt;
    grpc_metadata_array_init(&ctx->md);
    if (!me)
        grpc_call_details_init(&ctx->details);
    ctx->t_new.type = me ? SBX_TAG_NEW_CALL : SBX_TAG_UNKNOWN_CALL;
    ctx->t_finish.type = SBX_TAG_FINISH;
    ctx->t_close.type = SBX_TAG_CLOSE;
    ctx->t_send.type = SBX_TAG_SEND;
    ctx->t_recv.type = SBX_TAG_RECV;
    ctx->t_new.ctx = ctx->t_finish.ctx = ctx->t_close.ctx = ctx->t_send.ctx = ctx->t_recv.ctx = ctx;
    return ctx;
}

/* Arms one request for method me (or for unknown methods when me == NULL) on cqt. */
static void arm(sbx_server *s, sbx_method_entry *me, sbx_cq_thread *cqt)
{
    if (atomic_load(&s->shutting_down))
        return;
    sbx_ctx *ctx = ctx_new(s, me, cqt);
    grpc_call_error e;
    if (me)
        e = grpc_server_request_registered_call(
            s->server, me->reg, &ctx->call, &ctx->deadline, &ctx->md,
            me->kind == SBX_CLIENT_STREAM ? NULL : &ctx->payload, cqt->cq, cqt->cq, &ctx->t_new);
    else
        e = grpc_server_request_call(s->server, &ctx->call, &ctx->details, &ctx->md, cqt->cq, cqt->cq,
                                     &ctx->t_new);
    if (e != GRPC_CALL_OK) {
        SBX_LOG_ERROR("rpc", "request_call failed code=%d", (int)e);
        ctx_unref(ctx);
    }
}

/* ---------------------------------------------------------------- sending */

static const char *grpc_err_name(grpc_call_error e)
{
    switch (e) {
    case GRPC_CALL_OK:
        return "OK";
    case GRPC_CALL_ERROR_TOO_MANY_OPERATIONS:
        return "TOO_MANY_OPERATIONS";
    case GRPC_CALL_ERROR_INVALID_FLAGS:
        return "INVALID_FLAGS";
    default:
        return "CALL_ERROR";
    }
}

/* Waits until no stream send is in flight; returns false when the last one failed. */
static bool stream_drain(sbx_ctx *ctx)
{
    pthread_mutex_lock(&ctx->mu);
    while (ctx->send_state == 1)
        pthread_cond_wait(&ctx->cv, &ctx->mu);
    bool ok = ctx->send_state != 3;
    ctx->send_state = 0;
    grpc_byte_buffer *done = ctx->stream_buf;
    ctx->stream_buf = NULL;
    pthread_mutex_unlock(&ctx->mu);
    if (done)
        grpc_byte_buffer_destroy(done);
    return ok;
}

/* Final batch: status (+ message for a unary OK) (+ initial metadata if not sent yet)
 * (+ close for calls without an early close batch). Consumes the handler's ref via FINISH. */
static void send_final(sbx_ctx *ctx, int code, const ProtobufCMessage *resp, bool with_close)
{
    if (ctx->me && ctx->me->kind == SBX_SERVER_STREAM)
        stream_drain(ctx); /* the last stream message goes out before the status */
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!ctx->initial_md_sent) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        n++;
        ctx->initial_md_sent = true;
    }
    if (code == SBX_OK && resp) {
        ctx->send_buf = sbx_rpc_pack(resp);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = ctx->send_buf;
        n++;
    }
    /* a message can echo request fields: cap it so it always fits the client's metadata limit */
    const char *msg = code == SBX_OK ? "" : sbx_ctx_error_message(ctx);
    size_t mlen = strlen(msg);
    grpc_slice details = mlen > SBX_STATUS_MESSAGE_MAX
                             ? grpc_slice_from_copied_buffer(msg, SBX_STATUS_MESSAGE_MAX)
                             : grpc_slice_from_copied_buffer(msg, mlen);
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)code;
    ops[n].data.send_status_from_server.status_details = code == SBX_OK ? NULL : &details;
    n++;
    if (with_close) {
        ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[n].data.recv_close_on_server.cancelled = &ctx->close_cancelled;
        n++;
    }
    ctx->code = code;
    grpc_call_error e = grpc_call_start_batch(ctx->call, ops, n, &ctx->t_finish, NULL);
    grpc_slice_unref(details);
    if (e != GRPC_CALL_OK) {
        SBX_LOG_ERROR("rpc", "final batch failed method=%s err=%s", sbx_ctx_method(ctx), grpc_err_name(e));
        grpc_call_cancel(ctx->call, NULL);
        sbx_metrics_record(ctx->me, code, sbx_now_ns() - ctx->start_ns);
        ctx_unref(ctx);
    }
}

/* Immediate error reply for a call that never reached a handler. */
static void reply_error(sbx_ctx *ctx, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void reply_error(sbx_ctx *ctx, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    sbx_ctx_error(ctx, code, "%s", buf);
    bool early_close = ctx->me && ctx->me->kind != SBX_UNARY && atomic_load(&ctx->closed);
    send_final(ctx, code, NULL, !early_close);
}

/* One message may be in flight while the handler prepares the next: a send waits only for
 * the previous one, so producing output overlaps with the transport. */
int sbx_stream_send(sbx_ctx *ctx, const ProtobufCMessage *msg)
{
    if (ctx->test)
        return sbx_ctx_test_send(ctx, msg);
    if (!stream_drain(ctx) || atomic_load(&ctx->cancelled)) {
        atomic_store(&ctx->cancelled, true);
        return -ECANCELED;
    }
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!ctx->initial_md_sent) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        ctx->initial_md_sent = true;
    }
    grpc_byte_buffer *bb = sbx_rpc_pack(msg);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n].data.send_message.send_message = bb;
    n++;
    pthread_mutex_lock(&ctx->mu);
    ctx->send_state = 1;
    ctx->stream_buf = bb;
    pthread_mutex_unlock(&ctx->mu);
    ctx_ref(ctx);
    grpc_call_error e = grpc_call_start_batch(ctx->call, ops, n, &ctx->t_send, NULL);
    if (e != GRPC_CALL_OK) {
        SBX_LOG_ERROR("rpc", "send batch failed method=%s err=%s", sbx_ctx_method(ctx), grpc_err_name(e));
        pthread_mutex_lock(&ctx->mu);
        ctx->send_state = 0;
        ctx->stream_buf = NULL;
        pthread_mutex_unlock(&ctx->mu);
        ctx_unref(ctx);
        grpc_byte_buffer_destroy(bb);
        atomic_store(&ctx->cancelled, true);
        grpc_call_cancel(ctx->call, NULL);
        return -ECANCELED;
    }
    return 0;
}

int sbx_stream_recv(sbx_ctx *ctx, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out)
{
    *out = NULL;
    if (ctx->test)
        return sbx_ctx_test_recv(ctx, desc, out);
    if (atomic_load(&ctx->cancelled))
        return -ECANCELED;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &ctx->recv_buf;
    pthread_mutex_lock(&ctx->mu);
    ctx->recv_state = 1;
    pthread_mutex_unlock(&ctx->mu);
    ctx_ref(ctx);
    grpc_call_error e = grpc_call_start_batch(ctx->call, &op, 1, &ctx->t_recv, NULL);
    if (e != GRPC_CALL_OK) {
        SBX_LOG_ERROR("rpc", "recv batch failed method=%s err=%s", sbx_ctx_method(ctx), grpc_err_name(e));
        ctx_unref(ctx);
        atomic_store(&ctx->cancelled, true);
        return -ECANCELED;
    }
    pthread_mutex_lock(&ctx->mu);
    while (ctx->recv_state == 1)
        pthread_cond_wait(&ctx->cv, &ctx->mu);
    int ok = ctx->recv_state == 2;
    ctx->recv_state = 0;
    grpc_byte_buffer *bb = ctx->recv_buf;
    ctx->recv_buf = NULL;
    pthread_mutex_unlock(&ctx->mu);
    if (!ok) {
        if (bb)
            grpc_byte_buffer_destroy(bb);
        atomic_store(&ctx->cancelled, true);
        return -ECANCELED;
    }
    if (!bb)
        return 0; /* client half-closed */
    grpc_byte_buffer_reader rd;
    if (!grpc_byte_buffer_reader_init(&rd, bb)) {
        grpc_byte_buffer_destroy(bb);
        return -EBADMSG;
    }
    grpc_slice sl = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    grpc_byte_buffer_destroy(bb);
    char field[256];
    if (sbx_pb_find_nul(desc, GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl), field, sizeof field)) {
        grpc_slice_unref(sl);
        sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "%s: contains a NUL byte", field);
        return -EINVAL;
    }
    *out = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(sl), GRPC_SLICE_START_PTR(sl));
    grpc_slice_unref(sl);
    return *out ? 1 : -EBADMSG;
}

void sbx_stream_free(sbx_ctx *ctx, ProtobufCMessage *msg)
{
    (void)ctx;
    if (msg)
        protobuf_c_message_free_unpacked(msg, NULL);
}

/* ---------------------------------------------------------------- dispatch */

bool sbx_ctx_server_stopping(const sbx_ctx *ctx)
{
    return ctx->srv && atomic_load(&ctx->srv->shutting_down);
}

const char *sbx_ctx_method(const sbx_ctx *ctx)
{
    return ctx->me ? ctx->me->path : "(unknown)";
}

const char *sbx_ctx_metadata(sbx_ctx *ctx, const char *key)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i < ctx->md.count; i++) {
        grpc_slice k = ctx->md.metadata[i].key;
        if (GRPC_SLICE_LENGTH(k) == kl && memcmp(GRPC_SLICE_START_PTR(k), key, kl) == 0) {
            grpc_slice v = ctx->md.metadata[i].value;
            char *s = sbx_ctx_alloc(ctx, GRPC_SLICE_LENGTH(v) + 1);
            memcpy(s, GRPC_SLICE_START_PTR(v), GRPC_SLICE_LENGTH(v));
            return s;
        }
    }
    return NULL;
}

static void run_handler(sbx_ctx *ctx)
{
    sbx_method_entry *me = ctx->me;
    ProtobufCMessage *resp = NULL;
    int code = me->m->handler(ctx, ctx->req, &resp, me->data);
    if (code < 0 || code >= SBX_STATUS_COUNT) {
        SBX_LOG_ERROR("rpc", "handler returned an invalid status method=%s code=%d", me->path, code);
        code = sbx_ctx_error(ctx, SBX_INTERNAL, "handler returned invalid status %d", code);
    }
    if (code != SBX_OK && !ctx->errmsg)
        sbx_ctx_error(ctx, code, "%s", sbx_status_desc(code));
    if (code == SBX_OK && me->kind != SBX_SERVER_STREAM && !resp)
        resp = sbx_ctx_new_msg(ctx, me->out);
    if (me->kind == SBX_SERVER_STREAM)
        resp = NULL;
    send_final(ctx, code, resp, me->kind == SBX_UNARY);
}

static void worker_job(void *arg)
{
    run_handler(arg);
}

static bool authenticate(sbx_ctx *ctx)
{
    sbx_server *s = ctx->srv;
    const char *want_tenant = NULL;
    size_t want_len = 0;
    const grpc_slice *authz = NULL;
    for (size_t i = 0; i < ctx->md.count; i++) {
        grpc_slice k = ctx->md.metadata[i].key;
        if (grpc_slice_str_cmp(k, "authorization") == 0)
            authz = &ctx->md.metadata[i].value;
        else if (grpc_slice_str_cmp(k, "x-sbx-tenant") == 0) {
            want_tenant = (const char *)GRPC_SLICE_START_PTR(ctx->md.metadata[i].value);
            want_len = GRPC_SLICE_LENGTH(ctx->md.metadata[i].value);
        }
    }
    if (want_tenant && !sbx_tenant_valid(want_tenant, want_len)) {
        reply_error(ctx, SBX_INVALID_ARGUMENT,
                    "x-sbx-tenant: must be 1..%d characters of [A-Za-z0-9._-]", SBX_TENANT_MAX);
        return false;
    }
    const char *tenant = "default";
    size_t tlen = 7;
    if (!s->auth) {
        /* no keys file: loopback only, the caller is trusted */
        ctx->is_service = true;
        if (want_tenant) {
            tenant = want_tenant;
            tlen = want_len;
        }
    } else if (!(ctx->me->m->flags & SBX_NO_AUTH)) {
        if (!authz) {
            reply_error(ctx, SBX_UNAUTHENTICATED,
                        "missing authorization metadata: send 'authorization: Bearer <api key>'");
            return false;
        }
        const char *t = NULL;
        bool svc = false;
        int r = sbx_auth_check(s->auth, (const char *)GRPC_SLICE_START_PTR(*authz), GRPC_SLICE_LENGTH(*authz),
                               &t, &svc);
        if (r == -1) {
            reply_error(ctx, SBX_UNAUTHENTICATED, "authorization: expected 'Bearer <api key>'");
            return false;
        }
        if (r == -2) {
            reply_error(ctx, SBX_UNAUTHENTICATED, "authorization: unknown API key");
            return false;
        }
        ctx->is_service = svc;
        if (svc) {
            if (want_tenant) {
                tenant = want_tenant;
                tlen = want_len;
            }
        } else {
            tenant = t;
            tlen = strlen(t);
            if (want_tenant && (want_len != tlen || memcmp(want_tenant, t, tlen) != 0)) {
                reply_error(ctx, SBX_PERMISSION_DENIED,
                            "x-sbx-tenant: this API key belongs to tenant %s and cannot act for another", t);
                return false;
            }
        }
    }
    memcpy(ctx->tenant, tenant, tlen);
    ctx->tenant[tlen] = '\0';
    if ((ctx->me->m->flags & SBX_SERVICE_ONLY) && !ctx->is_service) {
        reply_error(ctx, SBX_PERMISSION_DENIED, "%s is for service principals only", ctx->me->path);
        return false;
    }
    return true;
}

static void on_new_call(sbx_ctx *ctx)
{
    sbx_method_entry *me = ctx->me;
    ctx->start_ns = sbx_now_ns();
    ctx->live = true;
    live_add(ctx->srv, 1);
    arm(ctx->srv, me, ctx->cqt); /* keep the method armed */
    if (ctx->deadline.clock_type != GPR_CLOCK_MONOTONIC) /* gpr_time_cmp asserts equal clocks */
        ctx->deadline = gpr_convert_clock_type(ctx->deadline, GPR_CLOCK_MONOTONIC);

    if (me->kind != SBX_UNARY) {
        /* early close batch: tells a streaming handler when the client goes away */
        grpc_op op;
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        op.data.recv_close_on_server.cancelled = &ctx->close_cancelled;
        ctx_ref(ctx);
        if (grpc_call_start_batch(ctx->call, &op, 1, &ctx->t_close, NULL) != GRPC_CALL_OK) {
            ctx_unref(ctx);
            grpc_call_cancel(ctx->call, NULL);
            ctx_unref(ctx);
            return;
        }
        atomic_store(&ctx->closed, true);
    }
    if (!authenticate(ctx))
        return;
    if (!me->m->handler) {
        reply_error(ctx, SBX_UNIMPLEMENTED, "%s is not implemented by this server yet", me->path);
        return;
    }
    if (me->kind != SBX_CLIENT_STREAM) {
        if (!ctx->payload) {
            reply_error(ctx, SBX_INVALID_ARGUMENT, "request message missing");
            return;
        }
        grpc_byte_buffer_reader rd;
        if (!grpc_byte_buffer_reader_init(&rd, ctx->payload)) {
            reply_error(ctx, SBX_INTERNAL, "cannot read request payload");
            return;
        }
        grpc_slice sl = grpc_byte_buffer_reader_readall(&rd);
        grpc_byte_buffer_reader_destroy(&rd);
        char field[256];
        if (sbx_pb_find_nul(me->in, GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl), field, sizeof field)) {
            grpc_slice_unref(sl);
            reply_error(ctx, SBX_INVALID_ARGUMENT, "%s: contains a NUL byte", field);
            return;
        }
        ctx->req = protobuf_c_message_unpack(me->in, NULL, GRPC_SLICE_LENGTH(sl), GRPC_SLICE_START_PTR(sl));
        grpc_slice_unref(sl);
        grpc_byte_buffer_destroy(ctx->payload);
        ctx->payload = NULL;
        if (!ctx->req) {
            reply_error(ctx, SBX_INVALID_ARGUMENT, "request does not decode as %s", me->in->name);
            return;
        }
    }
    if ((me->m->flags & SBX_RUN_INLINE) && me->kind == SBX_UNARY) {
        run_handler(ctx);
        return;
    }
    if (sbx_pool_submit(ctx->srv->pool, worker_job, ctx) != 0)
        reply_error(ctx, SBX_UNAVAILABLE, "server is shutting down");
}

static void on_unknown_call(sbx_ctx *ctx)
{
    ctx->start_ns = sbx_now_ns();
    ctx->live = true;
    live_add(ctx->srv, 1);
    arm(ctx->srv, NULL, ctx->cqt);
    char method[256];
    size_t ml = GRPC_SLICE_LENGTH(ctx->details.method);
    if (ml >= sizeof method)
        ml = sizeof method - 1;
    memcpy(method, GRPC_SLICE_START_PTR(ctx->details.method), ml);
    method[ml] = '\0';
    for (size_t i = 0; i < ml; i++)
        if ((unsigned char)method[i] < 0x20 || (unsigned char)method[i] > 0x7e)
            method[i] = '?';
    reply_error(ctx, SBX_UNIMPLEMENTED, "unknown method %s", method);
}

static void *poll_thread(void *arg)
{
    sbx_cq_thread *cqt = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cqt->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        sbx_tag *t = ev.tag;
        sbx_ctx *ctx = t->ctx;
        switch (t->type) {
        case SBX_TAG_NEW_CALL:
        case SBX_TAG_UNKNOWN_CALL:
            if (!ev.success) { /* server shutting down: the armed request is void */
                ctx_unref(ctx);
                break;
            }
            if (t->type == SBX_TAG_NEW_CALL)
                on_new_call(ctx);
            else
                on_unknown_call(ctx);
            break;
        case SBX_TAG_FINISH:
            if (ctx->me)
                sbx_metrics_record(ctx->me, ctx->code, sbx_now_ns() - ctx->start_ns);
            ctx_unref(ctx);
            break;
        case SBX_TAG_CLOSE:
            if (ctx->close_cancelled)
                atomic_store(&ctx->cancelled, true);
            pthread_mutex_lock(&ctx->mu);
            pthread_cond_broadcast(&ctx->cv);
            pthread_mutex_unlock(&ctx->mu);
            ctx_unref(ctx);
            break;
        case SBX_TAG_SEND:
        case SBX_TAG_RECV:
            pthread_mutex_lock(&ctx->mu);
            if (t->type == SBX_TAG_SEND)
                ctx->send_state = ev.success ? 2 : 3;
            else
                ctx->recv_state = ev.success ? 2 : 3;
            pthread_cond_broadcast(&ctx->cv);
            pthread_mutex_unlock(&ctx->mu);
            ctx_unref(ctx);
            break;
        default:
            break;
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------- construction */

void sbx_server_opts_default(sbx_server_opts *o)
{
    memset(o, 0, sizeof *o);
    o->listen = "127.0.0.1:0";
    o->poll_threads = 1;
    o->max_workers = 256;
    o->max_message_bytes = 16 << 20;
    o->grace_ms = 10000;
    o->health_name = "";
}

static grpc_server_credentials *make_creds(const sbx_server_opts *o, char *err, size_t errlen)
{
    if (!o->tls_cert && !o->tls_key && !o->tls_client_ca)
        return grpc_insecure_server_credentials_create();
    if (!o->tls_cert || !o->tls_key) {
        snprintf(err, errlen, "--tls-cert and --tls-key must be given together");
        return NULL;
    }
    char *cert = sbx_read_file(o->tls_cert, err, errlen);
    if (!cert)
        return NULL;
    char *key = sbx_read_file(o->tls_key, err, errlen);
    if (!key) {
        free(cert);
        return NULL;
    }
    char *ca = NULL;
    if (o->tls_client_ca && !(ca = sbx_read_file(o->tls_client_ca, err, errlen))) {
        free(cert);
        free(key);
        return NULL;
    }
    grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
    grpc_server_credentials *c = grpc_ssl_server_credentials_create_ex(
        ca, &pair, 1,
        ca ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
        NULL);
    free(cert);
    free(key);
    free(ca);
    if (!c)
        snprintf(err, errlen, "TLS credentials could not be created from --tls-cert/--tls-key");
    return c;
}

static int add_service(sbx_server *s, const sbx_service_def *def)
{
    const ProtobufCServiceDescriptor *d = def->desc;
    for (unsigned i = 0; i < d->n_methods; i++) {
        const ProtobufCMethodDescriptor *md = &d->methods[i];
        const sbx_method *m = NULL;
        for (size_t j = 0; j < def->n_methods; j++)
            if (strcmp(def->methods[j].name, md->name) == 0)
                m = &def->methods[j];
        sbx_method_entry *e = &s->methods[s->n_methods++];
        memset(e, 0, sizeof *e);
        snprintf(e->path, sizeof e->path, "/%s/%s", d->name, md->name);
        snprintf(e->service, sizeof e->service, "%s", d->name);
        e->name = md->name;
        e->in = md->input;
        e->out = md->output;
        e->data = def->data;
        static const sbx_method unimpl = {0};
        e->m = m ? m : &unimpl;
        e->kind = m ? m->kind : SBX_UNARY;
        e->reg = grpc_server_register_method(
            s->server, e->path, NULL,
            e->kind == SBX_CLIENT_STREAM ? GRPC_SRM_PAYLOAD_NONE : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
        if (!e->reg) {
            SBX_LOG_ERROR("rpc", "register_method failed path=%s", e->path);
            return -1;
        }
    }
    for (size_t j = 0; j < def->n_methods; j++) {
        bool found = false;
        for (unsigned i = 0; i < d->n_methods; i++)
            found |= strcmp(def->methods[j].name, d->methods[i].name) == 0;
        if (!found) {
            SBX_LOG_ERROR("rpc", "method table names a method the service lacks service=%s method=%s",
                          d->name, def->methods[j].name);
            return -1;
        }
    }
    return 0;
}

sbx_server *sbx_server_new(const sbx_server_opts *opts, const sbx_service_def *services, size_t n_services)
{
    char err[512] = "";
    sbx_server *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->o = *opts;
    atomic_init(&s->shutting_down, false);
    pthread_mutex_init(&s->live_mu, NULL);
    pthread_cond_init(&s->live_cv, NULL);
    if (s->o.poll_threads < 1)
        s->o.poll_threads = 1;
    if (opts->api_keys_file) {
        s->auth = sbx_auth_load(opts->api_keys_file, err, sizeof err);
        if (!s->auth) {
            SBX_LOG_ERROR("rpc", "cannot load API keys: %s", err);
            goto fail;
        }
        SBX_LOG_INFO("rpc", "auth enabled keys=%zu file=%s", sbx_auth_count(s->auth), opts->api_keys_file);
    } else {
        if (!sbx_addr_is_loopback(opts->listen)) {
            SBX_LOG_ERROR("rpc", "refusing to listen on %s without --api-keys: unauthenticated access "
                                 "is allowed on loopback addresses only", opts->listen);
            goto fail;
        }
        SBX_LOG_WARN("rpc", "no --api-keys: accepting unauthenticated calls on loopback only addr=%s",
                     opts->listen);
    }

    grpc_arg args[3];
    memset(args, 0, sizeof args);
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = s->o.max_message_bytes;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[1].value.integer = s->o.max_message_bytes;
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = GRPC_ARG_ALLOW_REUSEPORT;
    args[2].value.integer = 0;
    grpc_channel_args ca = {.num_args = 3, .args = args};
    s->server = grpc_server_create(&ca, NULL);

    size_t total = 0;
    sbx_service_def health_def;
    sbx_health_init(&s->health, s->o.health_name);
    sbx_health_service(&s->health, &health_def);
    total += health_def.desc->n_methods;
    for (size_t i = 0; i < n_services; i++)
        total += services[i].desc->n_methods;
    s->methods = calloc(total, sizeof *s->methods);
    if (!s->methods)
        goto fail;
    if (add_service(s, &health_def) != 0)
        goto fail;
    for (size_t i = 0; i < n_services; i++)
        if (add_service(s, &services[i]) != 0)
            goto fail;

    s->n_cqs = s->o.poll_threads;
    s->cqs = calloc((size_t)s->n_cqs, sizeof *s->cqs);
    if (!s->cqs)
        goto fail;
    for (int i = 0; i < s->n_cqs; i++) {
        s->cqs[i].srv = s;
        s->cqs[i].cq = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(s->server, s->cqs[i].cq, NULL);
    }
    grpc_server_credentials *creds = make_creds(&s->o, err, sizeof err);
    if (!creds) {
        SBX_LOG_ERROR("rpc", "%s", err);
        goto fail;
    }
    s->port = grpc_server_add_http2_port(s->server, s->o.listen, creds);
    grpc_server_credentials_release(creds);
    if (s->port <= 0) {
        SBX_LOG_ERROR("rpc", "cannot listen addr=%s (address in use, invalid, or not local)", s->o.listen);
        goto fail;
    }
    return s;
fail:
    sbx_server_free(s);
    return NULL;
}

int sbx_server_port(const sbx_server *s)
{
    return s->port;
}

int sbx_server_start(sbx_server *s)
{
    s->pool = sbx_pool_new(2, s->o.max_workers);
    if (!s->pool)
        return -ENOMEM;
    grpc_server_start(s->server);
    s->started = true;
    for (int i = 0; i < s->n_cqs; i++) {
        for (size_t m = 0; m < s->n_methods; m++)
            for (int k = 0; k < ARMED_PER_METHOD; k++)
                arm(s, &s->methods[m], &s->cqs[i]);
        for (int k = 0; k < ARMED_UNKNOWN; k++)
            arm(s, NULL, &s->cqs[i]);
    }
    for (int i = 0; i < s->n_cqs; i++) {
        if (pthread_create(&s->cqs[i].th, NULL, poll_thread, &s->cqs[i]) != 0)
            return -EAGAIN;
        s->cqs[i].started = true;
    }
    sbx_health_set(&s->health, true);
    return 0;
}

void sbx_server_set_serving(sbx_server *s, bool serving)
{
    sbx_health_set(&s->health, serving);
}

void sbx_server_shutdown(sbx_server *s)
{
    if (!s || s->shut)
        return;
    s->shut = true;
    sbx_health_set(&s->health, false);
    sbx_health_stop(&s->health);
    atomic_store(&s->shutting_down, true);
    if (s->started) {
        s->shutdown_cq = grpc_completion_queue_create_for_pluck(NULL);
        sbx_tag t = {.type = SBX_TAG_SHUTDOWN};
        grpc_server_shutdown_and_notify(s->server, s->shutdown_cq, &t);
        /* in-flight calls get the grace period; then whatever is left (calls that did not
         * finish, and idle client connections, which would otherwise hold the notify until
         * the client closes them) is cancelled and disconnected */
        bool clean = live_wait(s, s->o.grace_ms);
        if (!clean)
            SBX_LOG_WARN("rpc", "grace period over: cancelling remaining calls grace_ms=%d", s->o.grace_ms);
        grpc_server_cancel_all_calls(s->server);
        live_wait(s, -1);
        grpc_completion_queue_pluck(s->shutdown_cq, &t, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    }
}

void sbx_server_free(sbx_server *s)
{
    if (!s)
        return;
    if (s->started && !s->shut)
        sbx_server_shutdown(s);
    if (s->server)
        grpc_server_destroy(s->server);
    for (int i = 0; i < s->n_cqs; i++) {
        grpc_completion_queue_shutdown(s->cqs[i].cq);
        if (s->cqs[i].started)
            pthread_join(s->cqs[i].th, NULL);
        else
            while (grpc_completion_queue_next(s->cqs[i].cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
                   GRPC_QUEUE_SHUTDOWN)
                ;
        grpc_completion_queue_destroy(s->cqs[i].cq);
    }
    if (s->shutdown_cq) {
        grpc_completion_queue_shutdown(s->shutdown_cq);
        while (grpc_completion_queue_pluck(s->shutdown_cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
               GRPC_QUEUE_SHUTDOWN)
            ;
        grpc_completion_queue_destroy(s->shutdown_cq);
    }
    sbx_pool_free(s->pool);
    sbx_health_destroy(&s->health);
    pthread_mutex_destroy(&s->live_mu);
    pthread_cond_destroy(&s->live_cv);
    free(s->cqs);
    free(s->methods);
    sbx_auth_free(s->auth);
    free(s);
}

size_t sbx_server_methods(sbx_server *s, sbx_method_entry **out)
{
    *out = s->methods;
    return s->n_methods;
}

/* ---------------------------------------------------------------- process-wide */

static pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;
static int init_refs;

void sbx_rpc_init(void)
{
    pthread_mutex_lock(&init_mu);
    if (init_refs++ == 0)
        grpc_init();
    pthread_mutex_unlock(&init_mu);
}

void sbx_rpc_shutdown(void)
{
    pthread_mutex_lock(&init_mu);
    if (init_refs > 0 && --init_refs == 0)
        grpc_shutdown_blocking();
    pthread_mutex_unlock(&init_mu);
}

void sbx_signals_block(void)
{
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGINT);
    sigaddset(&ss, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &ss, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int sbx_signals_wait(void)
{
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGINT);
    sigaddset(&ss, SIGTERM);
    int sig = 0;
    sigwait(&ss, &sig);
    return sig;
}
