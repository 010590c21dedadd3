/* rpc_load.c: sbx-bench's load engine (unary calls kept in flight on a completion queue per
 * client thread) and the bare C core echo server used as the same-run baseline. */
#include "rpc_load.h"

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "rpc_server.h"
#include "rpc_util.h"

typedef struct slot {
    grpc_call *call;
    grpc_byte_buffer *send, *recv;
    grpc_metadata_array init_md, trail_md;
    grpc_status_code status;
    grpc_slice details;
    int64_t start;
} slot;

typedef struct worker {
    const sbx_load_opts *o;
    grpc_channel *ch;
    void *reg; /* pre-registered method: no per-call path interning */
    grpc_completion_queue *cq;
    grpc_slice *req_slices;
    grpc_metadata *md;
    slot *slots;
    int64_t *lat; /* ns */
    size_t nlat, caplat;
    uint64_t codes[SBX_STATUS_COUNT];
    uint64_t issued;
    char first_error[256];
    int64_t t0, warm_end, end;
    int64_t quota; /* calls this worker may issue (total mode) */
    pthread_t th;
} worker;

static bool start_call(worker *w, slot *s, size_t idx)
{
    const sbx_load_opts *o = w->o;
    gpr_timespec dl = o->deadline_ms > 0
                          ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                         gpr_time_from_millis(o->deadline_ms, GPR_TIMESPAN))
                          : gpr_inf_future(GPR_CLOCK_MONOTONIC);
    s->call = grpc_channel_create_registered_call(w->ch, NULL, GRPC_PROPAGATE_DEFAULTS, w->cq,
                                                  w->reg, dl, NULL);
    s->send = grpc_raw_byte_buffer_create(&w->req_slices[idx % o->n_reqs], 1);
    s->recv = NULL;
    grpc_metadata_array_init(&s->init_md);
    grpc_metadata_array_init(&s->trail_md);
    s->details = grpc_empty_slice();
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = o->n_md;
    ops[0].data.send_initial_metadata.metadata = w->md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = s->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->init_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &s->recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &s->trail_md;
    ops[5].data.recv_status_on_client.status = &s->status;
    ops[5].data.recv_status_on_client.status_details = &s->details;
    s->start = (int64_t)sbx_mono_ns();
    w->issued++;
    return grpc_call_start_batch(s->call, ops, 6, s, NULL) == GRPC_CALL_OK;
}

static void end_call(worker *w, slot *s)
{
    int64_t t = (int64_t)sbx_mono_ns();
    if (s->start >= w->warm_end && t <= w->end) {
        int code = (int)s->status;
        if (code < 0 || code >= SBX_STATUS_COUNT)
            code = 2;
        w->codes[code]++;
        if (code != 0 && !w->first_error[0])
            snprintf(w->first_error, sizeof w->first_error, "%d: %.*s", code,
                     (int)GRPC_SLICE_LENGTH(s->details),
                     (const char *)GRPC_SLICE_START_PTR(s->details));
        if (w->nlat == w->caplat) {
            w->caplat = w->caplat ? w->caplat * 2 : 65536;
            w->lat = realloc(w->lat, w->caplat * sizeof *w->lat);
            if (!w->lat)
                abort();
        }
        w->lat[w->nlat++] = t - s->start;
    }
    grpc_byte_buffer_destroy(s->send);
    if (s->recv)
        grpc_byte_buffer_destroy(s->recv);
    grpc_slice_unref(s->details);
    grpc_metadata_array_destroy(&s->init_md);
    grpc_metadata_array_destroy(&s->trail_md);
    grpc_call_unref(s->call);
    s->call = NULL;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    const sbx_load_opts *o = w->o;
    int inflight = 0;
    size_t next = 0;
    for (int i = 0; i < o->concurrency; i++) {
        if (o->total && (int64_t)w->issued >= w->quota)
            break;
        if (start_call(w, &w->slots[i], next++))
            inflight++;
    }
    while (inflight > 0) {
        grpc_event ev = grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE)
            break;
        slot *s = ev.tag;
        end_call(w, s);
        inflight--;
        bool more = o->total ? (int64_t)w->issued < w->quota : (int64_t)sbx_mono_ns() < w->end;
        if (more && start_call(w, s, next++))
            inflight++;
    }
    return NULL;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int sbx_load_run(const sbx_load_opts *o, sbx_load_result *out)
{
    memset(out, 0, sizeof *out);
    if (o->concurrency < 1 || o->n_reqs == 0 || (!o->total && o->duration_s <= 0)) {
        snprintf(out->first_error, sizeof out->first_error,
                 "need concurrency >= 1, a request, and -n or -z");
        return -1;
    }
    int nthreads = o->threads < 1 ? 1 : o->threads;
    sbx_rpc_init();
    worker *ws = calloc((size_t)nthreads, sizeof *ws);
    int64_t t0 = (int64_t)sbx_mono_ns();
    int64_t warm_end = t0 + (int64_t)(o->warmup_s * 1e9);
    int64_t end = o->total ? INT64_MAX : warm_end + (int64_t)(o->duration_s * 1e9);
    for (int t = 0; t < nthreads; t++) {
        worker *w = &ws[t];
        w->o = o;
        grpc_channel_credentials *creds = grpc_insecure_credentials_create();
        if (o->tls_ca) {
            grpc_channel_credentials_release(creds);
            char err[256];
            char *pem = sbx_read_file(o->tls_ca, err, sizeof err);
            creds = grpc_ssl_credentials_create(pem, NULL, NULL, NULL);
            free(pem);
        }
        /* a distinct arg per thread keeps channels from sharing one subchannel/connection */
        grpc_arg args[2];
        memset(args, 0, sizeof args);
        args[0].type = GRPC_ARG_INTEGER;
        args[0].key = "sbx.bench.channel_id";
        args[0].value.integer = t;
        args[1].type = GRPC_ARG_INTEGER;
        args[1].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
        args[1].value.integer = 64 << 20;
        grpc_channel_args ca = {.num_args = 2, .args = args};
        w->ch = grpc_channel_create(o->target, creds, &ca);
        grpc_channel_credentials_release(creds);
        w->reg = grpc_channel_register_call(w->ch, o->method, NULL, NULL);
        w->cq = grpc_completion_queue_create_for_next(NULL);
        w->req_slices = calloc(o->n_reqs, sizeof *w->req_slices);
        for (size_t i = 0; i < o->n_reqs; i++)
            w->req_slices[i] =
                grpc_slice_from_copied_buffer((const char *)o->reqs[i], o->req_lens[i]);
        w->md = calloc(o->n_md + 1, sizeof *w->md);
        for (size_t i = 0; i < o->n_md; i++) {
            w->md[i].key = grpc_slice_from_static_string(o->md[i].key);
            w->md[i].value = grpc_slice_from_static_string(o->md[i].value);
        }
        w->slots = calloc((size_t)o->concurrency, sizeof *w->slots);
        w->t0 = t0;
        w->warm_end = warm_end;
        w->end = end;
        w->quota = o->total ? o->total / nthreads + (t < o->total % nthreads) : 0;
    }
    for (int t = 0; t < nthreads; t++)
        pthread_create(&ws[t].th, NULL, worker_main, &ws[t]);
    size_t nlat = 0;
    for (int t = 0; t < nthreads; t++) {
        pthread_join(ws[t].th, NULL);
        nlat += ws[t].nlat;
    }
    int64_t t1 = (int64_t)sbx_mono_ns();
    int64_t *all = malloc((nlat ? nlat : 1) * sizeof *all);
    size_t k = 0;
    double sum = 0;
    for (int t = 0; t < nthreads; t++) {
        worker *w = &ws[t];
        memcpy(all + k, w->lat, w->nlat * sizeof *all);
        k += w->nlat;
        for (int c = 0; c < SBX_STATUS_COUNT; c++)
            out->codes[c] += w->codes[c];
        if (!out->first_error[0] && w->first_error[0])
            memcpy(out->first_error, w->first_error, sizeof out->first_error);
        for (size_t i = 0; i < w->nlat; i++)
            sum += (double)w->lat[i];
        free(w->lat);
        for (size_t i = 0; i < o->n_reqs; i++)
            grpc_slice_unref(w->req_slices[i]);
        free(w->req_slices);
        free(w->md);
        free(w->slots);
        grpc_completion_queue_shutdown(w->cq);
        while (grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
               GRPC_QUEUE_SHUTDOWN)
            ;
        grpc_completion_queue_destroy(w->cq);
        grpc_channel_destroy(w->ch);
    }
    qsort(all, nlat, sizeof *all, cmp64);
    out->count = nlat;
    int64_t wend = o->total ? t1 : (end < t1 ? end : t1);
    out->elapsed_s = (double)(wend - (o->warmup_s > 0 ? warm_end : t0)) / 1e9;
    out->rps = out->elapsed_s > 0 ? (double)nlat / out->elapsed_s : 0;
#define PCT(p)                                                                                     \
    (nlat ? (double)all[(size_t)fmin((double)nlat - 1, ceil((p) * (double)nlat) - 1)] / 1e3 : 0)
    out->p50_us = PCT(0.50);
    out->p90_us = PCT(0.90);
    out->p99_us = PCT(0.99);
    out->p999_us = PCT(0.999);
#undef PCT
    out->max_us = nlat ? (double)all[nlat - 1] / 1e3 : 0;
    out->mean_us = nlat ? sum / (double)nlat / 1e3 : 0;
    free(all);
    free(ws);
    sbx_rpc_shutdown();
    return 0;
}

/* ---------------------------------------------------------------- bare echo server */

typedef struct echo_call {
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *payload;
    int cancelled;
    int phase; /* 0 = requested, 1 = replying */
} echo_call;

static void echo_arm(grpc_server *srv, void *reg, grpc_completion_queue *cq)
{
    echo_call *c = calloc(1, sizeof *c);
    grpc_metadata_array_init(&c->md);
    if (grpc_server_request_registered_call(srv, reg, &c->call, &c->deadline, &c->md, &c->payload,
                                            cq, cq, c) != GRPC_CALL_OK) {
        grpc_metadata_array_destroy(&c->md);
        free(c);
    }
}

static void echo_free(echo_call *c)
{
    if (c->payload)
        grpc_byte_buffer_destroy(c->payload);
    grpc_metadata_array_destroy(&c->md);
    if (c->call)
        grpc_call_unref(c->call);
    free(c);
}

struct echo_loop {
    grpc_server *srv;
    void *reg;
    grpc_completion_queue *cq;
    volatile int stopping;
};

static void *echo_thread(void *arg)
{
    struct echo_loop *l = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(l->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        echo_call *c = ev.tag;
        if (c->phase == 1 || !ev.success) {
            echo_free(c);
            continue;
        }
        if (!c->payload) {
            grpc_call_cancel(c->call, NULL);
            echo_free(c);
            if (!l->stopping)
                echo_arm(l->srv, l->reg, l->cq);
            continue;
        }
        if (!l->stopping)
            echo_arm(l->srv, l->reg, l->cq);
        c->phase = 1;
        grpc_op ops[4];
        memset(ops, 0, sizeof ops);
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[1].op = GRPC_OP_SEND_MESSAGE;
        ops[1].data.send_message.send_message = c->payload;
        ops[2].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[2].data.send_status_from_server.status = GRPC_STATUS_OK;
        ops[3].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[3].data.recv_close_on_server.cancelled = &c->cancelled;
        if (grpc_call_start_batch(c->call, ops, 4, c, NULL) != GRPC_CALL_OK)
            echo_free(c);
    }
    return NULL;
}

int sbx_echo_serve(const char *listen)
{
    sbx_signals_block();
    sbx_rpc_init();
    struct echo_loop l = {0};
    l.srv = grpc_server_create(NULL, NULL);
    l.reg = grpc_server_register_method(l.srv, "/sbx.bench.Echo/Echo", NULL,
                                        GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    l.cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(l.srv, l.cq, NULL);
    grpc_server_credentials *cr = grpc_insecure_server_credentials_create();
    int port = grpc_server_add_http2_port(l.srv, listen, cr);
    grpc_server_credentials_release(cr);
    if (port <= 0) {
        fprintf(stderr, "sbx-bench: cannot listen on %s\n", listen);
        grpc_server_destroy(l.srv);
        grpc_completion_queue_shutdown(l.cq);
        grpc_completion_queue_destroy(l.cq);
        sbx_rpc_shutdown();
        return 1;
    }
    grpc_server_start(l.srv);
    for (int i = 0; i < 64; i++)
        echo_arm(l.srv, l.reg, l.cq);
    pthread_t th;
    pthread_create(&th, NULL, echo_thread, &l);
    const char *colon = strrchr(listen, ':');
    printf("listening on %.*s:%d\n", (int)(colon - listen), listen, port);
    fflush(stdout);
    sbx_signals_wait();
    l.stopping = 1;
    grpc_completion_queue *scq = grpc_completion_queue_create_for_pluck(NULL);
    int tag;
    grpc_server_shutdown_and_notify(l.srv, scq, &tag);
    grpc_server_cancel_all_calls(l.srv);
    grpc_completion_queue_pluck(scq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    grpc_server_destroy(l.srv);
    grpc_completion_queue_shutdown(l.cq);
    pthread_join(th, NULL);
    grpc_completion_queue_destroy(l.cq);
    grpc_completion_queue_shutdown(scq);
    grpc_completion_queue_destroy(scq);
    sbx_rpc_shutdown();
    return 0;
}
