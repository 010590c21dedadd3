/* test_rpc_pending.c: deferred completion in the server layer (SBX_PENDING + sbx_ctx_finish,
 * the path the store's committer ends durable writes with), over real loopback gRPC: a call
 * finished from another thread gets its response or error; a call whose client deadline passes
 * while it is pending is finished late without a crash and its context is freed exactly once;
 * a graceful shutdown waits for pending calls, which are answered, not lost; test contexts
 * wait for the finish with sbx_ctx_test_wait. */
#include "test_main.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "rpc_client.h"
#include "rpc_server.h"
#include "sbx/v1/executor.pb-c.h"
#include "serve.h"

static atomic_int finished; /* sbx_ctx_finish calls made */
static atomic_int freed;    /* contexts freed (a defer registered by the handler) */
static atomic_int started;  /* handler calls */

typedef struct {
    sbx_ctx *ctx;
    int delay_ms;
    bool fail;
} later;

static void count_free(void *arg)
{
    (void)arg;
    atomic_fetch_add(&freed, 1);
}

/* Ends the call after delay_ms from its own thread, as the store's completer does. */
static void *finish_later(void *arg)
{
    later *l = arg;
    usleep((useconds_t)l->delay_ms * 1000);
    atomic_fetch_add(&finished, 1);
    if (l->fail) {
        sbx_ctx_finish(l->ctx, sbx_ctx_error(l->ctx, SBX_ABORTED, "asked to fail late"), NULL);
        return NULL;
    }
    Sbx__V1__RunResponse *out = (void *)sbx_ctx_new_msg(l->ctx, &sbx__v1__run_response__descriptor);
    out->pid = l->delay_ms;
    sbx_ctx_finish(l->ctx, SBX_OK, &out->base);
    return NULL;
}

/* Run: pending; finished timeout_ms later (shell "fail": with ABORTED). */
static int h_run(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    (void)resp;
    (void)data;
    const Sbx__V1__ExecRequest *r = (const void *)req;
    later *l = sbx_ctx_alloc(ctx, sizeof *l);
    l->ctx = ctx;
    l->delay_ms = (int)r->timeout_ms;
    l->fail = r->shell && !strcmp(r->shell, "fail");
    sbx_ctx_defer(ctx, count_free, NULL);
    atomic_fetch_add(&started, 1);
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    assert_int_equal(pthread_create(&t, &at, finish_later, l), 0);
    pthread_attr_destroy(&at);
    return SBX_PENDING;
}

static const sbx_method methods[] = {{"Run", SBX_UNARY, SBX_RUN_INLINE, h_run}};

typedef struct {
    sbx_server *srv;
    sbx_chan *ch;
} fixture;

static void start(fixture *f)
{
    atomic_store(&finished, 0);
    atomic_store(&freed, 0);
    atomic_store(&started, 0);
    sbx_rpc_init();
    sbx_server_opts o;
    sbx_server_opts_default(&o);
    o.grace_ms = 5000;
    sbx_service_def def = {&sbx__v1__sandbox_executor__descriptor, methods, 1, NULL};
    f->srv = sbx_server_new(&o, &def, 1);
    assert_non_null(f->srv);
    assert_int_equal(sbx_server_start(f->srv), 0);
    char target[64], err[128];
    snprintf(target, sizeof target, "127.0.0.1:%d", sbx_server_port(f->srv));
    sbx_chan_opts co = {.target = target};
    f->ch = sbx_chan_new(&co, err, sizeof err);
    assert_non_null(f->ch);
}

static void stop(fixture *f)
{
    sbx_chan_free(f->ch);
    sbx_server_free(f->srv); /* shuts down: waits for every pending call */
    sbx_rpc_shutdown();
}

static int run(sbx_chan *ch, int delay_ms, const char *shell, int64_t deadline_ms, int *echoed)
{
    Sbx__V1__ExecRequest req = SBX__V1__EXEC_REQUEST__INIT;
    req.command_case = SBX__V1__EXEC_REQUEST__COMMAND_SHELL;
    req.shell = (char *)shell;
    req.timeout_ms = delay_ms;
    ProtobufCMessage *resp = NULL;
    sbx_rpc_result res = {0};
    int code = sbx_call_unary(ch, "/sbx.v1.SandboxExecutor/Run", &req.base,
                              &sbx__v1__run_response__descriptor, &resp, deadline_ms, NULL, &res);
    if (code == SBX_OK && echoed)
        *echoed = ((Sbx__V1__RunResponse *)resp)->pid;
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    sbx_rpc_result_clear(&res);
    return code;
}

static void wait_freed(int n)
{
    for (int i = 0; i < 500 && atomic_load(&freed) < n; i++)
        usleep(10000);
    assert_int_equal(atomic_load(&freed), n);
}

static void finished_from_another_thread(void **state)
{
    (void)state;
    fixture f;
    start(&f);
    int echoed = -1;
    assert_int_equal(run(f.ch, 30, "ok", 5000, &echoed), SBX_OK);
    assert_int_equal(echoed, 30);
    assert_int_equal(run(f.ch, 0, "ok", 5000, &echoed), SBX_OK);
    assert_int_equal(echoed, 0);
    assert_int_equal(run(f.ch, 10, "fail", 5000, NULL), SBX_ABORTED);
    wait_freed(3);
    assert_int_equal(atomic_load(&finished), 3);
    stop(&f);
}

static void deadline_passes_while_pending(void **state)
{
    (void)state;
    fixture f;
    start(&f);
    int echoed = -1;
    assert_int_equal(run(f.ch, 0, "ok", 5000, &echoed), SBX_OK); /* connected */
    wait_freed(1);
    /* the client gives up at 50 ms; the finish comes at 1500 ms, into a call gRPC already
     * ended: no crash, the context is freed once, after the finish */
    uint64_t t0 = sbx_mono_ms();
    assert_int_equal(run(f.ch, 1500, "ok", 50, NULL), SBX_DEADLINE_EXCEEDED);
    assert_true(sbx_mono_ms() - t0 < 1400);
    assert_int_equal(atomic_load(&freed), 1); /* still pending: the context lives */
    wait_freed(2);
    assert_int_equal(atomic_load(&finished), 2);
    /* the server goes on serving */
    assert_int_equal(run(f.ch, 5, "ok", 5000, &echoed), SBX_OK);
    assert_int_equal(echoed, 5);
    wait_freed(3);
    stop(&f);
}

typedef struct {
    sbx_chan *ch;
    int code, echoed;
} client_arg;

static void *client(void *arg)
{
    client_arg *c = arg;
    c->code = run(c->ch, 1000, "ok", 20000, &c->echoed);
    return NULL;
}

static void shutdown_waits_for_pending_calls(void **state)
{
    (void)state;
    fixture f;
    start(&f);
    client_arg c = {f.ch, -1, -1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, client, &c), 0);
    for (int i = 0; i < 1000 && atomic_load(&started) == 0; i++)
        usleep(10000);
    assert_int_equal(atomic_load(&started), 1); /* pending now: finished 1 s later */
    assert_int_equal(atomic_load(&finished), 0);
    sbx_server_shutdown(f.srv); /* graceful: waits for the pending call */
    assert_int_equal(atomic_load(&finished), 1);
    pthread_join(t, NULL);
    assert_int_equal(c.code, SBX_OK); /* answered, not lost */
    assert_int_equal(c.echoed, 1000);
    wait_freed(1);
    stop(&f);
}

static void test_context_waits_for_the_finish(void **state)
{
    (void)state;
    atomic_store(&freed, 0);
    sbx_ctx *ctx = sbx_ctx_new_test("acme", false);
    for (int i = 0; i < 2; i++) { /* one context, two calls */
        Sbx__V1__ExecRequest req = SBX__V1__EXEC_REQUEST__INIT;
        req.timeout_ms = 20 + i;
        ProtobufCMessage *resp = NULL;
        assert_int_equal(h_run(ctx, &req.base, &resp, NULL), SBX_PENDING);
        assert_int_equal(sbx_ctx_test_wait(ctx, &resp), SBX_OK);
        assert_non_null(resp);
        assert_int_equal(((Sbx__V1__RunResponse *)resp)->pid, 20 + i);
    }
    sbx_ctx_free_test(ctx);
    assert_int_equal(atomic_load(&freed), 2);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(finished_from_another_thread),
    cmocka_unit_test(deadline_passes_while_pending),
    cmocka_unit_test(shutdown_waits_for_pending_calls),
    cmocka_unit_test(test_context_waits_for_the_finish),
};
SBX_TEST_MAIN(tests)
