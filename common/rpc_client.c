/* rpc_client.c: synchronous gRPC C core client calls behind rpc_client.h. Each call owns a
 * pluck completion queue; batches are started and plucked one at a time, except the status
 * batch of a stream, which stays outstanding until the stream is finished. */
#include "rpc_client.h"
#include "rpc_util.h"

#include <errno.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

struct sbx_chan {
    grpc_channel *ch;
    char *authz; /* "Bearer <key>" */
    char *tenant;
    uint64_t seed;
};

struct sbx_cstream {
    grpc_call *call;
    grpc_completion_queue *cq;
    grpc_metadata_array initial_md, trailing_md;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
    bool status_pending; /* status batch started, not plucked yet */
    bool failed;
    bool got_initial;
    bool md_pending;     /* a client stream's initial metadata goes with its first message */
    grpc_metadata md[2]; /* ... which is this (values owned by the channel) */
    size_t nmd;
};

sbx_chan *sbx_chan_new(const sbx_chan_opts *o, char *err, size_t errlen)
{
    grpc_channel_credentials *creds;
    if (o->tls_ca || o->tls_cert) {
        char *ca = NULL, *cert = NULL, *key = NULL;
        if (o->tls_ca && !(ca = sbx_read_file(o->tls_ca, err, errlen)))
            return NULL;
        if (o->tls_cert) {
            if (!o->tls_key) {
                snprintf(err, errlen, "a client certificate needs its key (--tls-key)");
                free(ca);
                return NULL;
            }
            if (!(cert = sbx_read_file(o->tls_cert, err, errlen)) ||
                !(key = sbx_read_file(o->tls_key, err, errlen))) {
                free(ca);
                free(cert);
                return NULL;
            }
        }
        grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
        creds = grpc_ssl_credentials_create(ca, cert ? &pair : NULL, NULL, NULL);
        free(ca);
        free(cert);
        free(key);
    } else {
        creds = grpc_insecure_credentials_create();
    }
    grpc_arg args[4];
    memset(args, 0, sizeof args);
    size_t na = 0;
    int maxmsg = o->max_message_bytes > 0 ? o->max_message_bytes : 16 << 20;
    args[na].type = GRPC_ARG_INTEGER;
    args[na].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[na++].value.integer = maxmsg;
    args[na].type = GRPC_ARG_INTEGER;
    args[na].key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[na++].value.integer = maxmsg;
    args[na].type = GRPC_ARG_INTEGER;
    args[na].key = GRPC_ARG_ENABLE_RETRIES; /* we retry ourselves, with our own schedule */
    args[na++].value.integer = 0;
    if (o->tls_server_name) {
        args[na].type = GRPC_ARG_STRING;
        args[na].key = GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
        args[na++].value.string = (char *)o->tls_server_name;
    }
    grpc_channel_args ca = {.num_args = na, .args = args};
    sbx_chan *c = calloc(1, sizeof *c);
    if (!c) {
        grpc_channel_credentials_release(creds);
        return NULL;
    }
    c->ch = grpc_channel_create(o->target, creds, &ca);
    grpc_channel_credentials_release(creds);
    if (o->api_key && *o->api_key && asprintf(&c->authz, "Bearer %s", o->api_key) < 0)
        c->authz = NULL;
    c->tenant = o->tenant && *o->tenant ? strdup(o->tenant) : NULL;
    c->seed = sbx_mono_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)c;
    return c;
}

void sbx_chan_free(sbx_chan *c)
{
    if (!c)
        return;
    grpc_channel_destroy(c->ch);
    free(c->authz);
    free(c->tenant);
    free(c);
}

void sbx_rpc_result_clear(sbx_rpc_result *r)
{
    if (!r)
        return;
    free(r->message);
    r->message = NULL;
}

static void set_result(sbx_rpc_result *r, int code, const char *msg, size_t len)
{
    if (!r)
        return;
    free(r->message);
    r->code = code;
    r->message = strndup(msg ? msg : "", msg ? len : 0);
}

static gpr_timespec deadline_of(int64_t ms)
{
    if (ms <= 0)
        return gpr_inf_future(GPR_CLOCK_MONOTONIC);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

static size_t build_md(sbx_chan *c, grpc_metadata md[2])
{
    size_t n = 0;
    memset(md, 0, 2 * sizeof *md);
    if (c->authz) {
        md[n].key = grpc_slice_from_static_string("authorization");
        md[n].value = grpc_slice_from_static_string(c->authz);
        n++;
    }
    if (c->tenant) {
        md[n].key = grpc_slice_from_static_string("x-sbx-tenant");
        md[n].value = grpc_slice_from_static_string(c->tenant);
        n++;
    }
    return n;
}

static ProtobufCMessage *unpack(const ProtobufCMessageDescriptor *d, grpc_byte_buffer *bb)
{
    grpc_byte_buffer_reader rd;
    if (!grpc_byte_buffer_reader_init(&rd, bb))
        return NULL;
    grpc_slice sl = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    ProtobufCMessage *m =
        protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(sl), GRPC_SLICE_START_PTR(sl));
    grpc_slice_unref(sl);
    return m;
}

static bool run_batch(grpc_call *call, grpc_completion_queue *cq, const grpc_op *ops, size_t n,
                      void *tag)
{
    if (grpc_call_start_batch(call, ops, n, tag, NULL) != GRPC_CALL_OK)
        return false;
    grpc_event ev = grpc_completion_queue_pluck(cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    return ev.type == GRPC_OP_COMPLETE && ev.success;
}

static void drain_cq(grpc_completion_queue *cq)
{
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
}

static int unary_once(sbx_chan *c, const char *method, const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                      gpr_timespec dl, sbx_rpc_result *res)
{
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_slice mslice = grpc_slice_from_static_string(method);
    grpc_call *call =
        grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, mslice, NULL, dl, NULL);
    grpc_metadata md[2];
    grpc_metadata_array init_md, trail_md;
    grpc_metadata_array_init(&init_md);
    grpc_metadata_array_init(&trail_md);
    grpc_byte_buffer *out = sbx_rpc_pack(req), *in = NULL;
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    const char *errstr = NULL;
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = build_md(c, md);
    ops[0].data.send_initial_metadata.metadata = md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = out;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &init_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &in;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trail_md;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    ops[5].data.recv_status_on_client.error_string = &errstr;
    int code;
    if (!run_batch(call, cq, ops, 6, call)) {
        set_result(res, SBX_INTERNAL, "call batch failed", 17);
        code = SBX_INTERNAL;
    } else {
        code = (int)status;
        if (code == SBX_OK) {
            *resp = in ? unpack(resp_desc, in) : NULL;
            if (!*resp) {
                code = SBX_INTERNAL;
                set_result(res, code, "response does not decode", 24);
            } else
                set_result(res, code, "", 0);
        } else {
            set_result(res, code, (const char *)GRPC_SLICE_START_PTR(details),
                       GRPC_SLICE_LENGTH(details));
        }
    }
    grpc_slice_unref(details);
    gpr_free((void *)errstr);
    grpc_metadata_array_destroy(&init_md);
    grpc_metadata_array_destroy(&trail_md);
    grpc_byte_buffer_destroy(out);
    if (in)
        grpc_byte_buffer_destroy(in);
    grpc_call_unref(call);
    drain_cq(cq);
    return code;
}

int sbx_call_unary(sbx_chan *c, const char *method, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                   int64_t deadline_ms, const sbx_backoff *retry, sbx_rpc_result *res)
{
    *resp = NULL;
    gpr_timespec dl = deadline_of(deadline_ms);
    int max = retry ? (retry->max_attempts < 1 ? 1 : retry->max_attempts) : 1;
    int code = SBX_UNKNOWN;
    for (int attempt = 1; attempt <= max; attempt++) {
        if (res)
            res->attempts = attempt;
        code = unary_once(c, method, req, resp_desc, resp, dl, res);
        if (code != SBX_UNAVAILABLE || attempt == max)
            break;
        int64_t delay = sbx_backoff_delay_ms(retry, attempt, &c->seed);
        gpr_timespec wake =
            gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(delay, GPR_TIMESPAN));
        if (gpr_time_cmp(wake, dl) >= 0)
            break; /* no time left for another attempt */
        struct timespec ts = {.tv_sec = delay / 1000, .tv_nsec = (delay % 1000) * 1000000};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
    return code;
}

/* ---------------------------------------------------------------- streams */

static sbx_cstream *stream_start(sbx_chan *c, const char *method, int64_t deadline_ms)
{
    sbx_cstream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_slice mslice = grpc_slice_from_static_string(method);
    s->call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq, mslice, NULL,
                                       deadline_of(deadline_ms), NULL);
    grpc_metadata_array_init(&s->initial_md);
    grpc_metadata_array_init(&s->trailing_md);
    s->details = grpc_empty_slice();
    s->status = GRPC_STATUS_UNKNOWN;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op.data.recv_status_on_client.trailing_metadata = &s->trailing_md;
    op.data.recv_status_on_client.status = &s->status;
    op.data.recv_status_on_client.status_details = &s->details;
    op.data.recv_status_on_client.error_string = &s->error_string;
    if (grpc_call_start_batch(s->call, &op, 1, &s->status, NULL) == GRPC_CALL_OK)
        s->status_pending = true;
    return s;
}

int sbx_call_server_stream(sbx_chan *c, const char *method, const ProtobufCMessage *req,
                           int64_t deadline_ms, sbx_cstream **out, sbx_rpc_result *res)
{
    sbx_cstream *s = stream_start(c, method, deadline_ms);
    if (!s) {
        set_result(res, SBX_INTERNAL, "out of memory", 13);
        return SBX_INTERNAL;
    }
    grpc_metadata md[2];
    grpc_byte_buffer *bb = sbx_rpc_pack(req);
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = build_md(c, md);
    ops[0].data.send_initial_metadata.metadata = md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    if (!run_batch(s->call, s->cq, ops, 3, s))
        s->failed = true;
    grpc_byte_buffer_destroy(bb);
    *out = s;
    set_result(res, SBX_OK, "", 0);
    return SBX_OK;
}

int sbx_cstream_next(sbx_cstream *s, const ProtobufCMessageDescriptor *d, ProtobufCMessage **msg)
{
    *msg = NULL;
    if (s->failed)
        return 0;
    grpc_byte_buffer *in = NULL;
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!s->got_initial) {
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n].data.recv_initial_metadata.recv_initial_metadata = &s->initial_md;
        n++;
        s->got_initial = true;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n].data.recv_message.recv_message = &in;
    n++;
    if (!run_batch(s->call, s->cq, ops, n, s) || !in) {
        if (in)
            grpc_byte_buffer_destroy(in);
        s->failed = true;
        return 0;
    }
    *msg = unpack(d, in);
    grpc_byte_buffer_destroy(in);
    if (!*msg) {
        grpc_call_cancel_with_status(s->call, GRPC_STATUS_INTERNAL, "response does not decode",
                                     NULL);
        s->failed = true;
        return -1;
    }
    return 1;
}

int sbx_call_client_stream(sbx_chan *c, const char *method, int64_t deadline_ms, sbx_cstream **out,
                           sbx_rpc_result *res)
{
    sbx_cstream *s = stream_start(c, method, deadline_ms);
    if (!s) {
        set_result(res, SBX_INTERNAL, "out of memory", 13);
        return SBX_INTERNAL;
    }
    s->nmd = build_md(c, s->md); /* sent with the first message: one batch less */
    s->md_pending = true;
    *out = s;
    set_result(res, SBX_OK, "", 0);
    return SBX_OK;
}

/* Adds the deferred initial metadata of a client stream to a batch; returns the ops used. */
static size_t take_md(sbx_cstream *s, grpc_op *op)
{
    if (!s->md_pending)
        return 0;
    s->md_pending = false;
    op->op = GRPC_OP_SEND_INITIAL_METADATA;
    op->data.send_initial_metadata.count = s->nmd;
    op->data.send_initial_metadata.metadata = s->md;
    return 1;
}

int sbx_cstream_write(sbx_cstream *s, const ProtobufCMessage *msg)
{
    if (s->failed)
        return -1;
    grpc_byte_buffer *bb = sbx_rpc_pack(msg);
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = take_md(s, &ops[0]);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n].data.send_message.send_message = bb;
    bool ok = run_batch(s->call, s->cq, ops, n + 1, s);
    grpc_byte_buffer_destroy(bb);
    if (!ok)
        s->failed = true;
    return ok ? 0 : -1;
}

static int finish_status(sbx_cstream *s, sbx_rpc_result *res)
{
    if (s->status_pending) {
        grpc_completion_queue_pluck(s->cq, &s->status, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        s->status_pending = false;
    }
    int code = (int)s->status;
    set_result(res, code, (const char *)GRPC_SLICE_START_PTR(s->details),
               GRPC_SLICE_LENGTH(s->details));
    return code;
}

static void stream_free(sbx_cstream *s)
{
    grpc_slice_unref(s->details);
    gpr_free((void *)s->error_string);
    grpc_metadata_array_destroy(&s->initial_md);
    grpc_metadata_array_destroy(&s->trailing_md);
    grpc_call_unref(s->call);
    drain_cq(s->cq);
    free(s);
}

int sbx_cstream_close_and_recv(sbx_cstream *s, const ProtobufCMessageDescriptor *d,
                               ProtobufCMessage **resp, sbx_rpc_result *res)
{
    *resp = NULL;
    grpc_byte_buffer *in = NULL;
    if (!s->failed) {
        grpc_op ops[4];
        memset(ops, 0, sizeof ops);
        size_t n = take_md(s, &ops[0]);
        ops[n].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        ops[n + 1].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n + 1].data.recv_initial_metadata.recv_initial_metadata = &s->initial_md;
        ops[n + 2].op = GRPC_OP_RECV_MESSAGE;
        ops[n + 2].data.recv_message.recv_message = &in;
        run_batch(s->call, s->cq, ops, n + 3, s);
    } else {
        grpc_call_cancel(s->call, NULL);
    }
    int code = finish_status(s, res);
    if (code == SBX_OK) {
        *resp = in ? unpack(d, in) : NULL;
        if (!*resp) {
            code = SBX_INTERNAL;
            set_result(res, code, "response missing or does not decode", 35);
        }
    }
    if (in)
        grpc_byte_buffer_destroy(in);
    stream_free(s);
    return code;
}

void sbx_cstream_cancel(sbx_cstream *s)
{
    grpc_call_cancel(s->call, NULL);
}

int sbx_cstream_finish(sbx_cstream *s, sbx_rpc_result *res)
{
    if (!s)
        return SBX_OK;
    if (s->status_pending && !s->failed) {
        /* the caller stopped reading early: cancel so the status arrives */
        grpc_event ev =
            grpc_completion_queue_pluck(s->cq, &s->status, gpr_time_0(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_OP_COMPLETE)
            s->status_pending = false;
        else
            grpc_call_cancel(s->call, NULL);
    }
    int code = finish_status(s, res);
    stream_free(s);
    return code;
}
