/* rpc_call.c: one server call from arrival to final status. The polling threads take
 * completions off their queue; a new call is re-armed, authenticated, decoded and handed to its
 * handler (inline on the polling thread, or on the worker pool); the final batch carries the
 * status (sent by the handler's thread, or by whichever thread calls sbx_ctx_finish for a
 * handler that returned SBX_PENDING); streaming handlers send and receive through sbx_stream_*.
 * Every pending batch holds a reference on its call context, which is freed when the last one
 * completes; the per-method counters are recorded then. Threads: polling threads and pool workers;
 * a context's stream hand-off is under its mu. */
#include <errno.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "pbcheck.h"
#include "rpc_ctx.h"
#include "rpc_util.h"

#define SBX_STATUS_MESSAGE_MAX 1024 /* bytes of a status message sent to clients */

/* ---------------------------------------------------------------- per-method counters */

const double sbx_lat_bounds[SBX_LAT_BUCKETS] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                0.005,   0.01,   0.025,   0.05,   0.1,   0.25,
                                                0.5,     1,      5,       30};

static void stats_record(sbx_method_entry *me, int code, int64_t ns)
{
    if (!me)
        return;
    if (code < 0 || code >= SBX_STATUS_COUNT)
        code = SBX_UNKNOWN;
    atomic_fetch_add_explicit(&me->handled[code], 1, memory_order_relaxed);
    double sec = (double)ns / 1e9;
    int b = 0;
    while (b < SBX_LAT_BUCKETS && sec > sbx_lat_bounds[b])
        b++;
    atomic_fetch_add_explicit(&me->lat[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&me->lat_sum_ns, (uint64_t)(ns > 0 ? ns : 0), memory_order_relaxed);
}

/* ---------------------------------------------------------------- calls alive */

static void live_add(sbx_server *s, int d)
{
    long v = atomic_fetch_add(&s->live, d) + d;
    if (v == 0 && atomic_load(&s->shutting_down)) {
        pthread_mutex_lock(&s->live_mu);
        pthread_cond_broadcast(&s->live_cv);
        pthread_mutex_unlock(&s->live_mu);
    }
}

/* Polls in short steps as well, since live_add signals without holding the mutex across its
 * check. live_cv waits on the monotonic clock. */
bool sbx_calls_wait(sbx_server *s, int64_t ms)
{
    int64_t deadline = (int64_t)sbx_mono_ns() + ms * 1000000;
    pthread_mutex_lock(&s->live_mu);
    while (atomic_load(&s->live) > 0 && (ms < 0 || (int64_t)sbx_mono_ns() < deadline)) {
        struct timespec ts;
        sbx_deadline_in(&ts, 10);
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

void sbx_call_arm(sbx_server *s, sbx_method_entry *me, sbx_cq_thread *cqt)
{
    if (atomic_load(&s->shutting_down))
        return;
    sbx_ctx *ctx = ctx_new(s, me, cqt);
    grpc_call_error e;
    if (me)
        e = grpc_server_request_registered_call(s->server, me->reg, &ctx->call, &ctx->deadline,
                                                &ctx->md, &ctx->payload, cqt->cq, cqt->cq,
                                                &ctx->t_new);
    else
        e = grpc_server_request_call(s->server, &ctx->call, &ctx->details, &ctx->md, cqt->cq,
                                     cqt->cq, &ctx->t_new);
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

/* Final batch: status (+ message for a unary OK, or the stream's last message) (+ initial
 * metadata if not sent yet) (+ close for calls without an early close batch). Consumes the
 * handler's ref via FINISH. */
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
    if (code == SBX_OK && resp && !ctx->send_buf)
        ctx->send_buf = sbx_rpc_pack(resp);
    if (ctx->send_buf) { /* a unary OK's response, or a stream's last message */
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
        SBX_LOG_ERROR("rpc", "final batch failed method=%s err=%s", sbx_ctx_method(ctx),
                      grpc_err_name(e));
        grpc_call_cancel(ctx->call, NULL);
        stats_record(ctx->me, code, (int64_t)sbx_mono_ns() - ctx->start_ns);
        ctx_unref(ctx);
    }
}

/* Immediate error reply for a call that never reached a handler. */
static void reply_error(sbx_ctx *ctx, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
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
        SBX_LOG_ERROR("rpc", "send batch failed method=%s err=%s", sbx_ctx_method(ctx),
                      grpc_err_name(e));
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

/* The next message of the client's stream into *bb (NULL = the client half-closed): a client
 * stream's first message came with the call; the others take a receive batch. 0 or
 * -ECANCELED. */
static int recv_next(sbx_ctx *ctx, grpc_byte_buffer **bb)
{
    *bb = NULL;
    if (ctx->me && ctx->me->kind == SBX_CLIENT_STREAM && !ctx->payload_taken) {
        ctx->payload_taken = true;
        *bb = ctx->payload;
        ctx->payload = NULL;
        return 0;
    }
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
        SBX_LOG_ERROR("rpc", "recv batch failed method=%s err=%s", sbx_ctx_method(ctx),
                      grpc_err_name(e));
        ctx_unref(ctx);
        atomic_store(&ctx->cancelled, true);
        return -ECANCELED;
    }
    pthread_mutex_lock(&ctx->mu);
    while (ctx->recv_state == 1)
        pthread_cond_wait(&ctx->cv, &ctx->mu);
    int ok = ctx->recv_state == 2;
    ctx->recv_state = 0;
    *bb = ctx->recv_buf;
    ctx->recv_buf = NULL;
    pthread_mutex_unlock(&ctx->mu);
    if (!ok) {
        if (*bb)
            grpc_byte_buffer_destroy(*bb);
        *bb = NULL;
        atomic_store(&ctx->cancelled, true);
        return -ECANCELED;
    }
    return 0;
}

int sbx_stream_send_last(sbx_ctx *ctx, const ProtobufCMessage *msg)
{
    if (ctx->test)
        return sbx_ctx_test_send(ctx, msg);
    if (atomic_load(&ctx->cancelled) || ctx->send_buf)
        return -ECANCELED;
    ctx->send_buf = sbx_rpc_pack(msg); /* send_final sends it before the status */
    return 0;
}

int sbx_stream_recv(sbx_ctx *ctx, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out)
{
    *out = NULL;
    if (ctx->test)
        return sbx_ctx_test_recv(ctx, desc, out);
    if (atomic_load(&ctx->cancelled))
        return -ECANCELED;
    grpc_byte_buffer *bb;
    if (recv_next(ctx, &bb) < 0)
        return -ECANCELED;
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
    if (sbx_pb_find_nul(desc, GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl), field,
                        sizeof field)) {
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

/* The end of a unary or server-streaming call: the handler's status and response go out. */
static void finish_call(sbx_ctx *ctx, int code, ProtobufCMessage *resp)
{
    sbx_method_entry *me = ctx->me;
    if (code < 0 || code >= SBX_STATUS_COUNT) {
        SBX_LOG_ERROR("rpc", "handler returned an invalid status method=%s code=%d", me->path,
                      code);
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

void sbx_ctx_finish(sbx_ctx *ctx, int code, ProtobufCMessage *resp)
{
    if (ctx->test) {
        if (code != SBX_OK && !ctx->errmsg)
            sbx_ctx_error(ctx, code, "%s", sbx_status_desc(code));
        sbx_ctx_test_finish(ctx, code, code == SBX_OK ? resp : NULL);
        return;
    }
    finish_call(ctx, code, resp);
}

static void run_handler(sbx_ctx *ctx)
{
    sbx_method_entry *me = ctx->me;
    ProtobufCMessage *resp = NULL;
    int code = me->m->handler(ctx, ctx->req, &resp, me->data);
    if (code == SBX_PENDING && me->kind == SBX_UNARY)
        return; /* another thread owns the call now: ctx may already be gone */
    finish_call(ctx, code, resp);
}

static void worker_job(void *arg)
{
    run_handler(arg);
}

/* With a keys file: checks the caller's API key and picks the tenant it acts for (*tenant,
 * *tlen; a service principal names it in x-sbx-tenant). Replies and returns false when the key
 * is missing, unknown, or a tenant key asks to act for another tenant. */
static bool check_key(sbx_ctx *ctx, const grpc_slice *authz, const char *want_tenant,
                      size_t want_len, const char **tenant, size_t *tlen)
{
    if (!authz) {
        reply_error(ctx, SBX_UNAUTHENTICATED,
                    "missing authorization metadata: send 'authorization: Bearer <api key>'");
        return false;
    }
    const char *t = NULL;
    bool svc = false;
    int r = sbx_auth_check(ctx->srv->auth, (const char *)GRPC_SLICE_START_PTR(*authz),
                           GRPC_SLICE_LENGTH(*authz), &t, &svc);
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
            *tenant = want_tenant;
            *tlen = want_len;
        }
        return true;
    }
    *tenant = t;
    *tlen = strlen(t);
    if (want_tenant && (want_len != *tlen || memcmp(want_tenant, t, *tlen) != 0)) {
        reply_error(ctx, SBX_PERMISSION_DENIED,
                    "x-sbx-tenant: this API key belongs to tenant %s and cannot act for another",
                    t);
        return false;
    }
    return true;
}

/* Sets the call's tenant and principal from its metadata; replies and returns false when the
 * caller may not make this call. */
static bool authenticate(sbx_ctx *ctx)
{
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
    if (!ctx->srv->auth) {
        /* no keys file: loopback only, the caller is trusted */
        ctx->is_service = true;
        if (want_tenant) {
            tenant = want_tenant;
            tlen = want_len;
        }
    } else if (!(ctx->me->m->flags & SBX_NO_AUTH)) {
        if (!check_key(ctx, authz, want_tenant, want_len, &tenant, &tlen))
            return false;
    }
    memcpy(ctx->tenant, tenant, tlen);
    ctx->tenant[tlen] = '\0';
    if ((ctx->me->m->flags & SBX_SERVICE_ONLY) && !ctx->is_service) {
        reply_error(ctx, SBX_PERMISSION_DENIED, "%s is for service principals only", ctx->me->path);
        return false;
    }
    return true;
}

/* Unpacks the request payload into ctx->req (strings checked for NUL bytes first); replies and
 * returns false when it is missing or does not decode. */
static bool decode_request(sbx_ctx *ctx)
{
    sbx_method_entry *me = ctx->me;
    if (!ctx->payload) {
        reply_error(ctx, SBX_INVALID_ARGUMENT, "request message missing");
        return false;
    }
    grpc_byte_buffer_reader rd;
    if (!grpc_byte_buffer_reader_init(&rd, ctx->payload)) {
        reply_error(ctx, SBX_INTERNAL, "cannot read request payload");
        return false;
    }
    grpc_slice sl = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    char field[256];
    if (sbx_pb_find_nul(me->in, GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl), field,
                        sizeof field)) {
        grpc_slice_unref(sl);
        reply_error(ctx, SBX_INVALID_ARGUMENT, "%s: contains a NUL byte", field);
        return false;
    }
    ctx->req =
        protobuf_c_message_unpack(me->in, NULL, GRPC_SLICE_LENGTH(sl), GRPC_SLICE_START_PTR(sl));
    grpc_slice_unref(sl);
    grpc_byte_buffer_destroy(ctx->payload);
    ctx->payload = NULL;
    if (!ctx->req) {
        reply_error(ctx, SBX_INVALID_ARGUMENT, "request does not decode as %s", me->in->name);
        return false;
    }
    return true;
}

/* A call arrived for a registered method: re-arm the method, then authenticate, decode and run
 * the handler (inline or on the pool). */
static void on_new_call(sbx_ctx *ctx)
{
    sbx_method_entry *me = ctx->me;
    ctx->start_ns = (int64_t)sbx_mono_ns();
    ctx->live = true;
    live_add(ctx->srv, 1);
    sbx_call_arm(ctx->srv, me, ctx->cqt);                /* keep the method armed */
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
    if (me->kind != SBX_CLIENT_STREAM && !decode_request(ctx))
        return;
    if ((me->m->flags & SBX_RUN_INLINE) && me->kind == SBX_UNARY) {
        run_handler(ctx);
        return;
    }
    if (sbx_pool_submit(ctx->srv->pool, worker_job, ctx) != 0)
        reply_error(ctx, SBX_UNAVAILABLE, "server is shutting down");
}

static void on_unknown_call(sbx_ctx *ctx)
{
    ctx->start_ns = (int64_t)sbx_mono_ns();
    ctx->live = true;
    live_add(ctx->srv, 1);
    sbx_call_arm(ctx->srv, NULL, ctx->cqt);
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

void *sbx_call_poll_thread(void *arg)
{
    sbx_cq_thread *cqt = arg;
    pthread_setname_np(pthread_self(), "sbx-poll");
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(cqt->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
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
                stats_record(ctx->me, ctx->code, (int64_t)sbx_mono_ns() - ctx->start_ns);
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
