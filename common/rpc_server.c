/* rpc_server.c: the gRPC C core server: builds the method table from protobuf-c service
 * descriptors, listens (TLS and API keys as configured), starts one polling thread per
 * completion queue (the calls themselves: rpc_call.c), keeps the serving state that Health
 * reports, and shuts down gracefully. Process-wide gRPC init and the signal helpers of the
 * service binaries live here too. */
#include "rpc_server.h"

#include <errno.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "rpc_ctx.h"
#include "rpc_util.h"

#define ARMED_PER_METHOD 4
#define ARMED_UNKNOWN 2

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
        ca ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
           : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
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
        /* a client stream's messages are read one by one; other requests arrive with the call */
        /* Client streams too: their first message arrives with the call, which saves the
         * first receive's round trip through the polling thread (one small WriteFile is a
         * header and one chunk). */
        e->reg = grpc_server_register_method(s->server, e->path, NULL,
                                             GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
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
            SBX_LOG_ERROR("rpc",
                          "method table names a method the service lacks service=%s method=%s",
                          d->name, def->methods[j].name);
            return -1;
        }
    }
    return 0;
}

static void cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
}

/* Loads the API keys, or checks that the address is loopback when there are none. */
static int setup_auth(sbx_server *s)
{
    char err[512] = "";
    if (s->o.api_keys_file) {
        s->auth = sbx_auth_load(s->o.api_keys_file, err, sizeof err);
        if (!s->auth) {
            SBX_LOG_ERROR("rpc", "cannot load API keys: %s", err);
            return -1;
        }
        SBX_LOG_INFO("rpc", "auth enabled keys=%zu file=%s", sbx_auth_count(s->auth),
                     s->o.api_keys_file);
        return 0;
    }
    if (!sbx_addr_is_loopback(s->o.listen)) {
        SBX_LOG_ERROR("rpc",
                      "refusing to listen on %s without --api-keys: unauthenticated access "
                      "is allowed on loopback addresses only",
                      s->o.listen);
        return -1;
    }
    SBX_LOG_WARN("rpc", "no --api-keys: accepting unauthenticated calls on loopback only addr=%s",
                 s->o.listen);
    return 0;
}

static grpc_server *create_grpc_server(const sbx_server_opts *o)
{
    grpc_arg args[3];
    memset(args, 0, sizeof args);
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = o->max_message_bytes;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[1].value.integer = o->max_message_bytes;
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = GRPC_ARG_ALLOW_REUSEPORT;
    args[2].value.integer = 0;
    grpc_channel_args ca = {.num_args = 3, .args = args};
    return grpc_server_create(&ca, NULL);
}

/* One completion queue per polling thread, then the listening port. */
static int setup_queues_and_port(sbx_server *s)
{
    s->n_cqs = s->o.poll_threads;
    s->cqs = calloc((size_t)s->n_cqs, sizeof *s->cqs);
    if (!s->cqs)
        return -1;
    for (int i = 0; i < s->n_cqs; i++) {
        s->cqs[i].srv = s;
        s->cqs[i].cq = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(s->server, s->cqs[i].cq, NULL);
    }
    char err[512] = "";
    grpc_server_credentials *creds = make_creds(&s->o, err, sizeof err);
    if (!creds) {
        SBX_LOG_ERROR("rpc", "%s", err);
        return -1;
    }
    s->port = grpc_server_add_http2_port(s->server, s->o.listen, creds);
    grpc_server_credentials_release(creds);
    if (s->port <= 0) {
        SBX_LOG_ERROR("rpc", "cannot listen addr=%s (address in use, invalid, or not local)",
                      s->o.listen);
        return -1;
    }
    return 0;
}

sbx_server *sbx_server_new_bare(const sbx_server_opts *opts, const sbx_service_def *services,
                                size_t n_services)
{
    sbx_server *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->o = *opts;
    atomic_init(&s->shutting_down, false);
    pthread_mutex_init(&s->live_mu, NULL);
    cond_init_monotonic(&s->live_cv);
    pthread_mutex_init(&s->state_mu, NULL);
    cond_init_monotonic(&s->state_cv);
    s->state = SBX_STATE_NOT_SERVING;
    if (s->o.poll_threads < 1)
        s->o.poll_threads = 1;
    if (setup_auth(s) != 0)
        goto fail;
    s->server = create_grpc_server(&s->o);
    size_t total = 0;
    for (size_t i = 0; i < n_services; i++)
        total += services[i].desc->n_methods;
    s->methods = calloc(total ? total : 1, sizeof *s->methods);
    if (!s->methods)
        goto fail;
    for (size_t i = 0; i < n_services; i++)
        if (add_service(s, &services[i]) != 0)
            goto fail;
    if (setup_queues_and_port(s) != 0)
        goto fail;
    return s;
fail:
    sbx_server_free(s);
    return NULL;
}

int sbx_server_port(const sbx_server *s)
{
    return s->port;
}

static void set_state(sbx_server *s, sbx_serving_state st)
{
    pthread_mutex_lock(&s->state_mu);
    if (s->state != st && s->state != SBX_STATE_STOPPING) {
        s->state = st;
        s->state_gen++;
        pthread_cond_broadcast(&s->state_cv);
    }
    pthread_mutex_unlock(&s->state_mu);
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
                sbx_call_arm(s, &s->methods[m], &s->cqs[i]);
        for (int k = 0; k < ARMED_UNKNOWN; k++)
            sbx_call_arm(s, NULL, &s->cqs[i]);
    }
    for (int i = 0; i < s->n_cqs; i++) {
        if (pthread_create(&s->cqs[i].th, NULL, sbx_call_poll_thread, &s->cqs[i]) != 0)
            return -EAGAIN;
        s->cqs[i].started = true;
    }
    set_state(s, SBX_STATE_SERVING);
    return 0;
}

void sbx_server_set_serving(sbx_server *s, bool serving)
{
    set_state(s, serving ? SBX_STATE_SERVING : SBX_STATE_NOT_SERVING);
}

sbx_serving_state sbx_ctx_serving_wait(sbx_ctx *ctx, unsigned long *gen, int64_t ms)
{
    sbx_server *s = ctx->srv;
    if (!s) {
        if (*gen == 0) {
            struct timespec ts = {.tv_sec = (time_t)(ms / 1000),
                                  .tv_nsec = (long)(ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
        *gen = 0;
        return SBX_STATE_SERVING;
    }
    pthread_mutex_lock(&s->state_mu);
    if (s->state_gen == *gen) {
        struct timespec dl;
        sbx_deadline_in(&dl, ms);
        while (s->state_gen == *gen && pthread_cond_timedwait(&s->state_cv, &s->state_mu, &dl) == 0)
            ;
    }
    *gen = s->state_gen;
    sbx_serving_state st = s->state;
    pthread_mutex_unlock(&s->state_mu);
    return st;
}

void sbx_server_shutdown(sbx_server *s)
{
    if (!s || s->shut)
        return;
    s->shut = true;
    set_state(s, SBX_STATE_STOPPING); /* Health: NOT_SERVING, and Watch streams end */
    atomic_store(&s->shutting_down, true);
    if (s->started) {
        s->shutdown_cq = grpc_completion_queue_create_for_pluck(NULL);
        sbx_tag t = {.type = SBX_TAG_SHUTDOWN};
        grpc_server_shutdown_and_notify(s->server, s->shutdown_cq, &t);
        /* in-flight calls get the grace period; then whatever is left (calls that did not
         * finish, and idle client connections, which would otherwise hold the notify until
         * the client closes them) is cancelled and disconnected */
        bool clean = sbx_calls_wait(s, s->o.grace_ms);
        if (!clean)
            SBX_LOG_WARN("rpc", "grace period over: cancelling remaining calls grace_ms=%d",
                         s->o.grace_ms);
        grpc_server_cancel_all_calls(s->server);
        sbx_calls_wait(s, -1);
        grpc_completion_queue_pluck(s->shutdown_cq, &t, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    }
}

static void drain_queue(grpc_completion_queue *cq, bool pluck)
{
    grpc_completion_queue_shutdown(cq);
    for (;;) {
        gpr_timespec forever = gpr_inf_future(GPR_CLOCK_REALTIME);
        grpc_event ev = pluck ? grpc_completion_queue_pluck(cq, NULL, forever, NULL)
                              : grpc_completion_queue_next(cq, forever, NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
    }
    grpc_completion_queue_destroy(cq);
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
        if (s->cqs[i].started) {
            grpc_completion_queue_shutdown(s->cqs[i].cq);
            pthread_join(s->cqs[i].th, NULL);
            grpc_completion_queue_destroy(s->cqs[i].cq);
        } else {
            drain_queue(s->cqs[i].cq, false);
        }
    }
    if (s->shutdown_cq)
        drain_queue(s->shutdown_cq, true);
    sbx_pool_free(s->pool);
    pthread_mutex_destroy(&s->live_mu);
    pthread_cond_destroy(&s->live_cv);
    pthread_mutex_destroy(&s->state_mu);
    pthread_cond_destroy(&s->state_cv);
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
