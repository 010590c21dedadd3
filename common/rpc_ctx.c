/* rpc_ctx.c: the parts of a call context that do not touch gRPC: the per-call arena, error
 * messages, deferred cleanups, and test contexts that let handlers run without a server. */
#include "rpc_ctx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sbx_arena_block {
    struct sbx_arena_block *next;
    size_t used, cap;
    max_align_t data[];
};

struct sbx_defer {
    void (*fn)(void *);
    void *arg;
    struct sbx_defer *next;
};

struct sbx_test_msg {
    uint8_t *buf;
    size_t len;
    struct sbx_test_msg *next;
};

void sbx_ctx_init_common(sbx_ctx *ctx)
{
    pthread_mutex_init(&ctx->mu, NULL);
    pthread_cond_init(&ctx->cv, NULL);
    atomic_init(&ctx->refs, 1);
    atomic_init(&ctx->cancelled, false);
    atomic_init(&ctx->closed, false);
    ctx->deadline = gpr_inf_future(GPR_CLOCK_MONOTONIC);
}

void sbx_ctx_release_common(sbx_ctx *ctx)
{
    /* defers run newest first, like a stack of cleanups */
    while (ctx->defers) {
        struct sbx_defer *d = ctx->defers;
        ctx->defers = d->next;
        d->fn(d->arg);
        free(d);
    }
    while (ctx->arena) {
        struct sbx_arena_block *b = ctx->arena;
        ctx->arena = b->next;
        free(b);
    }
    free(ctx->errmsg);
    ctx->errmsg = NULL;
    pthread_mutex_destroy(&ctx->mu);
    pthread_cond_destroy(&ctx->cv);
}

void *sbx_ctx_alloc(sbx_ctx *ctx, size_t n)
{
    size_t need = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
    if (need == 0)
        need = sizeof(max_align_t);
    struct sbx_arena_block *b = ctx->arena;
    if (!b || b->cap - b->used < need) {
        size_t cap = need > 8192 ? need : 8192;
        b = malloc(sizeof *b + cap);
        if (!b)
            abort();
        b->cap = cap;
        b->used = 0;
        b->next = ctx->arena;
        ctx->arena = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += need;
    memset(p, 0, n);
    return p;
}

char *sbx_ctx_strdup(sbx_ctx *ctx, const char *s)
{
    if (!s)
        return NULL;
    return sbx_ctx_memdup(ctx, s, strlen(s) + 1);
}

void *sbx_ctx_memdup(sbx_ctx *ctx, const void *p, size_t n)
{
    void *d = sbx_ctx_alloc(ctx, n);
    if (n)
        memcpy(d, p, n);
    return d;
}

ProtobufCMessage *sbx_ctx_new_msg(sbx_ctx *ctx, const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = sbx_ctx_alloc(ctx, d->sizeof_message);
    d->message_init(m);
    return m;
}

void sbx_ctx_defer(sbx_ctx *ctx, void (*fn)(void *), void *arg)
{
    struct sbx_defer *d = malloc(sizeof *d);
    if (!d)
        abort();
    d->fn = fn;
    d->arg = arg;
    d->next = ctx->defers;
    ctx->defers = d;
}

int sbx_ctx_error(sbx_ctx *ctx, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *m = NULL;
    if (vasprintf(&m, fmt, ap) < 0)
        m = NULL;
    va_end(ap);
    free(ctx->errmsg);
    ctx->errmsg = m;
    ctx->code = code;
    return code;
}

const char *sbx_ctx_error_message(const sbx_ctx *ctx)
{
    return ctx->errmsg ? ctx->errmsg : "";
}

const char *sbx_ctx_tenant(const sbx_ctx *ctx)
{
    return ctx->tenant;
}

bool sbx_ctx_is_service(const sbx_ctx *ctx)
{
    return ctx->is_service;
}

bool sbx_ctx_keyless(const sbx_ctx *ctx)
{
    return ctx->srv && !ctx->srv->auth;
}

bool sbx_ctx_cancelled(const sbx_ctx *ctx)
{
    if (atomic_load(&ctx->cancelled))
        return true;
    if (ctx->test)
        return false;
    gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
    return gpr_time_cmp(now, ctx->deadline) > 0;
}

int64_t sbx_ctx_remaining_ms(const sbx_ctx *ctx)
{
    if (ctx->test || gpr_time_cmp(ctx->deadline, gpr_inf_future(GPR_CLOCK_MONOTONIC)) == 0)
        return INT64_MAX;
    gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
    gpr_timespec d = gpr_time_sub(ctx->deadline, now);
    int64_t ms = (int64_t)d.tv_sec * 1000 + d.tv_nsec / 1000000;
    return ms < 0 ? 0 : ms;
}

/* ---- test contexts ---- */

sbx_ctx *sbx_ctx_new_test(const char *tenant, bool is_service)
{
    sbx_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        abort();
    sbx_ctx_init_common(ctx);
    ctx->test = true;
    snprintf(ctx->tenant, sizeof ctx->tenant, "%s", tenant ? tenant : "default");
    ctx->is_service = is_service;
    return ctx;
}

static void push_msg(struct sbx_test_msg **list, const ProtobufCMessage *msg)
{
    struct sbx_test_msg *t = calloc(1, sizeof *t);
    if (!t)
        abort();
    t->len = protobuf_c_message_get_packed_size(msg);
    t->buf = malloc(t->len ? t->len : 1);
    if (!t->buf)
        abort();
    protobuf_c_message_pack(msg, t->buf);
    struct sbx_test_msg **pp = list;
    while (*pp)
        pp = &(*pp)->next;
    *pp = t;
}

void sbx_ctx_test_push_recv(sbx_ctx *ctx, const ProtobufCMessage *msg)
{
    push_msg(&ctx->test_in, msg);
}

void sbx_ctx_test_cancel(sbx_ctx *ctx)
{
    atomic_store(&ctx->cancelled, true);
}

void sbx_ctx_test_finish(sbx_ctx *ctx, int code, ProtobufCMessage *resp)
{
    pthread_mutex_lock(&ctx->mu);
    if (ctx->test_done)
        abort(); /* a pending call is finished exactly once */
    ctx->test_done = true;
    ctx->test_code = code;
    ctx->test_resp = resp;
    pthread_cond_broadcast(&ctx->cv);
    pthread_mutex_unlock(&ctx->mu);
}

int sbx_ctx_test_wait(sbx_ctx *ctx, ProtobufCMessage **resp)
{
    pthread_mutex_lock(&ctx->mu);
    while (!ctx->test_done)
        pthread_cond_wait(&ctx->cv, &ctx->mu);
    int code = ctx->test_code;
    if (resp)
        *resp = ctx->test_resp;
    ctx->test_done = false; /* a test may run several calls on one context */
    pthread_mutex_unlock(&ctx->mu);
    return code;
}

static void free_unpacked(void *m)
{
    protobuf_c_message_free_unpacked(m, NULL);
}

size_t sbx_ctx_test_sent(sbx_ctx *ctx, ProtobufCMessage ***msgs,
                         const ProtobufCMessageDescriptor *d)
{
    size_t n = 0;
    for (struct sbx_test_msg *t = ctx->test_out; t; t = t->next)
        n++;
    ProtobufCMessage **arr = sbx_ctx_alloc(ctx, (n + 1) * sizeof *arr);
    size_t i = 0;
    for (struct sbx_test_msg *t = ctx->test_out; t; t = t->next) {
        arr[i] = protobuf_c_message_unpack(d, NULL, t->len, t->buf);
        if (arr[i])
            sbx_ctx_defer(ctx, free_unpacked, arr[i]);
        i++;
    }
    *msgs = arr;
    return n;
}

void sbx_ctx_free_test(sbx_ctx *ctx)
{
    if (!ctx)
        return;
    for (struct sbx_test_msg **l = &ctx->test_in; l;
         l = l == &ctx->test_in ? &ctx->test_out : NULL) {
        while (*l) {
            struct sbx_test_msg *t = *l;
            *l = t->next;
            free(t->buf);
            free(t);
        }
    }
    sbx_ctx_release_common(ctx);
    free(ctx);
}

/* test-context halves of the stream API; rpc_call.c calls these when ctx->test is set */
int sbx_ctx_test_send(sbx_ctx *ctx, const ProtobufCMessage *msg)
{
    if (atomic_load(&ctx->cancelled))
        return -ECANCELED;
    push_msg(&ctx->test_out, msg);
    return 0;
}

int sbx_ctx_test_recv(sbx_ctx *ctx, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out)
{
    if (atomic_load(&ctx->cancelled))
        return -ECANCELED;
    struct sbx_test_msg *t = ctx->test_in;
    if (!t)
        return 0;
    ctx->test_in = t->next;
    *out = protobuf_c_message_unpack(desc, NULL, t->len, t->buf);
    free(t->buf);
    free(t);
    return *out ? 1 : -EBADMSG;
}
