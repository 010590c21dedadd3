/* test_rpc_server.c: the server layer end to end in one process over real loopback gRPC:
 * method table (handled, unimplemented, unknown), unary / server- / client-streaming, the call
 * context (tenant, metadata, arena), auth, deadlines, cancellation noticed by a streaming
 * handler, client retries, handlers called directly through test contexts, and the Health
 * service sbx_server_new adds (Check, Watch following the serving state, the end of Watch at
 * shutdown). */
#include "test_main.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "grpc/health/v1/health.pb-c.h"
#include "rpc_client.h"
#include "rpc_server.h"
#include "serve.h"
#include "sbx/v1/executor.pb-c.h"

static atomic_int stream_saw_cancel;
static atomic_int stream_running;

/* Run: echoes the shell string to stdout, the tenant to stderr. */
static int h_run(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    (void)data;
    const Sbx__V1__ExecRequest *r = (const void *)req;
    if (r->command_case != SBX__V1__EXEC_REQUEST__COMMAND_SHELL)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "shell: required in this test");
    if (strcmp(r->shell, "fail") == 0)
        return sbx_ctx_error(ctx, SBX_FAILED_PRECONDITION, "asked to fail: version %d", 7);
    Sbx__V1__RunResponse *out = (void *)sbx_ctx_new_msg(ctx, &sbx__v1__run_response__descriptor);
    out->stdout.data = (uint8_t *)sbx_ctx_strdup(ctx, r->shell);
    out->stdout.len = strlen(r->shell);
    const char *t = sbx_ctx_tenant(ctx);
    out->stderr.data = (uint8_t *)sbx_ctx_strdup(ctx, t);
    out->stderr.len = strlen(t);
    const char *x = sbx_ctx_metadata(ctx, "x-test");
    out->sandbox_id = sbx_ctx_strdup(ctx, x ? x : "");
    *resp = &out->base;
    return SBX_OK;
}

/* Exec: streams N stdout events (N = timeout_ms), or forever until cancelled if N < 0. */
static int h_exec(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    (void)resp;
    (void)data;
    const Sbx__V1__ExecRequest *r = (const void *)req;
    atomic_store(&stream_running, 1);
    for (int64_t i = 0; r->timeout_ms < 0 || i < r->timeout_ms; i++) {
        Sbx__V1__ProcessOutput po = SBX__V1__PROCESS_OUTPUT__INIT;
        char buf[32];
        int n = snprintf(buf, sizeof buf, "line %lld\n", (long long)i);
        po.data.data = (uint8_t *)buf;
        po.data.len = (size_t)n;
        po.offset = (uint64_t)i;
        Sbx__V1__ExecEvent ev = SBX__V1__EXEC_EVENT__INIT;
        ev.event_case = SBX__V1__EXEC_EVENT__EVENT_STDOUT;
        ev.stdout = &po;
        if (sbx_stream_send(ctx, &ev.base) != 0) {
            atomic_store(&stream_saw_cancel, 1);
            return sbx_ctx_error(ctx, SBX_CANCELLED, "client went away");
        }
        if (r->timeout_ms < 0)
            usleep(1000);
    }
    return SBX_OK;
}

/* WriteFile: counts the bytes of all data parts after a header. */
static int h_write(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    (void)req;
    (void)data;
    uint64_t total = 0;
    int first = 1;
    for (;;) {
        ProtobufCMessage *m = NULL;
        int r = sbx_stream_recv(ctx, &sbx__v1__write_file_request__descriptor, &m);
        if (r == 0)
            break;
        if (r < 0)
            return sbx_ctx_error(ctx, SBX_CANCELLED, "recv failed");
        Sbx__V1__WriteFileRequest *w = (void *)m;
        if (first && w->part_case != SBX__V1__WRITE_FILE_REQUEST__PART_HEADER) {
            sbx_stream_free(ctx, m);
            return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                                 "header: the first message must be a header");
        }
        if (w->part_case == SBX__V1__WRITE_FILE_REQUEST__PART_DATA)
            total += w->data.len;
        first = 0;
        sbx_stream_free(ctx, m);
    }
    Sbx__V1__WriteFileResponse *out =
        (void *)sbx_ctx_new_msg(ctx, &sbx__v1__write_file_response__descriptor);
    out->bytes_written = total;
    *resp = &out->base;
    return SBX_OK;
}

/* GetSandbox: sleeps 2 s (deadline tests). */
static int h_slow(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    (void)req;
    (void)resp;
    (void)data;
    for (int i = 0; i < 200 && !sbx_ctx_cancelled(ctx); i++)
        usleep(10000);
    return sbx_ctx_error(ctx, SBX_INTERNAL, "should have hit the deadline");
}

static const sbx_method methods[] = {
    {"Run", SBX_UNARY, SBX_RUN_INLINE, h_run},           {"Exec", SBX_SERVER_STREAM, 0, h_exec},
    {"WriteFile", SBX_CLIENT_STREAM, 0, h_write},        {"GetSandbox", SBX_UNARY, 0, h_slow},
    {"KillSandbox", SBX_UNARY, SBX_SERVICE_ONLY, h_run},
};

struct fixture {
    sbx_server *srv;
    sbx_chan *ch;
    char target[64];
    char keys[64];
};

static struct fixture *start(const char *keys_text)
{
    struct fixture *f = calloc(1, sizeof *f);
    sbx_rpc_init();
    sbx_server_opts o;
    sbx_server_opts_default(&o);
    o.listen = "127.0.0.1:0";
    o.health_name = "sbx.v1.SandboxExecutor";
    o.grace_ms = 2000;
    if (keys_text) {
        snprintf(f->keys, sizeof f->keys, "/tmp/sbx-test-keys-XXXXXX");
        int fd = mkstemp(f->keys);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, keys_text, strlen(keys_text)), (ssize_t)strlen(keys_text));
        close(fd);
        o.api_keys_file = f->keys;
    }
    sbx_service_def def = {&sbx__v1__sandbox_executor__descriptor, methods,
                           sizeof methods / sizeof methods[0], NULL};
    f->srv = sbx_server_new(&o, &def, 1);
    assert_non_null(f->srv);
    assert_int_equal(sbx_server_start(f->srv), 0);
    snprintf(f->target, sizeof f->target, "127.0.0.1:%d", sbx_server_port(f->srv));
    char err[128];
    sbx_chan_opts co = {.target = f->target};
    f->ch = sbx_chan_new(&co, err, sizeof err);
    assert_non_null(f->ch);
    return f;
}

static void stop(struct fixture *f)
{
    sbx_chan_free(f->ch);
    sbx_server_shutdown(f->srv);
    sbx_server_free(f->srv);
    if (f->keys[0])
        unlink(f->keys);
    sbx_rpc_shutdown();
    free(f);
}

static int run_shell(sbx_chan *ch, const char *shell, Sbx__V1__RunResponse **out,
                     sbx_rpc_result *res)
{
    Sbx__V1__ExecRequest req = SBX__V1__EXEC_REQUEST__INIT;
    req.command_case = SBX__V1__EXEC_REQUEST__COMMAND_SHELL;
    req.shell = (char *)shell;
    return sbx_call_unary(ch, "/sbx.v1.SandboxExecutor/Run", &req.base,
                          &sbx__v1__run_response__descriptor, (ProtobufCMessage **)out, 5000, NULL,
                          res);
}

static void unary_roundtrip_and_errors(void **state)
{
    (void)state;
    struct fixture *f = start(NULL);
    Sbx__V1__RunResponse *r = NULL;
    sbx_rpc_result res = {0};
    assert_int_equal(run_shell(f->ch, "hello", &r, &res), SBX_OK);
    assert_int_equal(r->stdout.len, 5);
    assert_memory_equal(r->stdout.data, "hello", 5);
    assert_int_equal(r->stderr.len, 7); /* no auth: tenant "default" */
    protobuf_c_message_free_unpacked(&r->base, NULL);
    assert_int_equal(run_shell(f->ch, "fail", &r, &res), SBX_FAILED_PRECONDITION);
    assert_string_equal(res.message, "asked to fail: version 7");
    assert_null(r);
    sbx_rpc_result_clear(&res);
    stop(f);
}

static void unimplemented_and_unknown_methods(void **state)
{
    (void)state;
    struct fixture *f = start(NULL);
    sbx_rpc_result res = {0};
    Sbx__V1__ListSandboxesRequest req = SBX__V1__LIST_SANDBOXES_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    assert_int_equal(sbx_call_unary(f->ch, "/sbx.v1.SandboxExecutor/ListSandboxes", &req.base,
                                    &sbx__v1__list_sandboxes_response__descriptor, &resp, 5000,
                                    NULL, &res),
                     SBX_UNIMPLEMENTED);
    assert_non_null(strstr(res.message, "ListSandboxes"));
    assert_int_equal(sbx_call_unary(f->ch, "/sbx.v1.Nope/Nothing", &req.base,
                                    &sbx__v1__list_sandboxes_response__descriptor, &resp, 5000,
                                    NULL, &res),
                     SBX_UNIMPLEMENTED);
    assert_non_null(strstr(res.message, "/sbx.v1.Nope/Nothing"));
    sbx_rpc_result_clear(&res);
    stop(f);
}

static void table_naming_a_missing_method_is_rejected(void **state)
{
    (void)state;
    sbx_rpc_init();
    static const sbx_method bad[] = {{"NoSuchRpc", SBX_UNARY, 0, h_run}};
    sbx_service_def def = {&sbx__v1__sandbox_executor__descriptor, bad, 1, NULL};
    sbx_server_opts o;
    sbx_server_opts_default(&o);
    assert_null(sbx_server_new(&o, &def, 1));
    sbx_rpc_shutdown();
}

static void server_stream_delivers_in_order(void **state)
{
    (void)state;
    struct fixture *f = start(NULL);
    Sbx__V1__ExecRequest req = SBX__V1__EXEC_REQUEST__INIT;
    req.timeout_ms = 500;
    sbx_cstream *s = NULL;
    sbx_rpc_result res = {0};
    assert_int_equal(
        sbx_call_server_stream(f->ch, "/sbx.v1.SandboxExecutor/Exec", &req.base, 5000, &s, &res),
        0);
    int n = 0;
    ProtobufCMessage *m;
    while (sbx_cstream_next(s, &sbx__v1__exec_event__descriptor, &m) == 1) {
        Sbx__V1__ExecEvent *ev = (void *)m;
        assert_int_equal(ev->event_case, SBX__V1__EXEC_EVENT__EVENT_STDOUT);
        assert_int_equal(ev->stdout->offset, (uint64_t)n);
        n++;
        protobuf_c_message_free_unpacked(m, NULL);
    }
    assert_int_equal(sbx_cstream_finish(s, &res), SBX_OK);
    assert_int_equal(n, 500);
    sbx_rpc_result_clear(&res);
    stop(f);
}

static void stream_handler_notices_cancel(void **state)
{
    (void)state;
    struct fixture *f = start(NULL);
    atomic_store(&stream_saw_cancel, 0);
    Sbx__V1__ExecRequest req = SBX__V1__EXEC_REQUEST__INIT;
    req.timeout_ms = -1; /* forever */
    sbx_cstream *s = NULL;
    sbx_rpc_result res = {0};
    sbx_call_server_stream(f->ch, "/sbx.v1.SandboxExecutor/Exec", &req.base, 10000, &s, &res);
    ProtobufCMessage *m;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sbx_cstream_next(s, &sbx__v1__exec_event__descriptor, &m), 1);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    sbx_cstream_cancel(s);
    assert_int_equal(sbx_cstream_finish(s, &res), SBX_CANCELLED);
    for (int i = 0; i < 300 && !atomic_load(&stream_saw_cancel); i++)
        usleep(10000);
    assert_int_equal(atomic_load(&stream_saw_cancel), 1);
    sbx_rpc_result_clear(&res);
    stop(f);
}

static void client_stream_counts_bytes(void **state)
{
    (void)state;
    struct fixture *f = start(NULL);
    sbx_cstream *s = NULL;
    sbx_rpc_result res = {0};
    assert_int_equal(
        sbx_call_client_stream(f->ch, "/sbx.v1.SandboxExecutor/WriteFile", 10000, &s, &res), 0);
    Sbx__V1__WriteFileHeader h = SBX__V1__WRITE_FILE_HEADER__INIT;
    h.path = "x";
    Sbx__V1__WriteFileRequest w = SBX__V1__WRITE_FILE_REQUEST__INIT;
    w.part_case = SBX__V1__WRITE_FILE_REQUEST__PART_HEADER;
    w.header = &h;
    assert_int_equal(sbx_cstream_write(s, &w.base), 0);
    static uint8_t chunk[1 << 20];
    memset(chunk, 'a', sizeof chunk);
    for (int i = 0; i < 20; i++) { /* 20 MiB: more than one message may carry */
        Sbx__V1__WriteFileRequest d = SBX__V1__WRITE_FILE_REQUEST__INIT;
        d.part_case = SBX__V1__WRITE_FILE_REQUEST__PART_DATA;
        d.data.data = chunk;
        d.data.len = sizeof chunk;
        assert_int_equal(sbx_cstream_write(s, &d.base), 0);
    }
    ProtobufCMessage *resp = NULL;
    assert_int_equal(
        sbx_cstream_close_and_recv(s, &sbx__v1__write_file_response__descriptor, &resp, &res),
        SBX_OK);
    assert_int_equal(((Sbx__V1__WriteFileResponse *)resp)->bytes_written, 20u << 20);
    protobuf_c_message_free_unpacked(resp, NULL);

    /* a stream that breaks the handler's rule gets its error */
    assert_int_equal(
        sbx_call_client_stream(f->ch, "/sbx.v1.SandboxExecutor/WriteFile", 10000, &s, &res), 0);
    Sbx__V1__WriteFileRequest d = SBX__V1__WRITE_FILE_REQUEST__INIT;
    d.part_case = SBX__V1__WRITE_FILE_REQUEST__PART_DATA;
    sbx_cstream_write(s, &d.base);
    assert_int_equal(
        sbx_cstream_close_and_recv(s, &sbx__v1__write_file_response__descriptor, &resp, &res),
        SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(res.message, "header"));
    sbx_rpc_result_clear(&res);
    stop(f);
}

static void deadline_exceeded(void **state)
{
    (void)state;
    struct fixture *f = start(NULL);
    Sbx__V1__GetSandboxRequest req = SBX__V1__GET_SANDBOX_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    sbx_rpc_result res = {0};
    assert_int_equal(sbx_call_unary(f->ch, "/sbx.v1.SandboxExecutor/GetSandbox", &req.base,
                                    &sbx__v1__sandbox__descriptor, &resp, 200, NULL, &res),
                     SBX_DEADLINE_EXCEEDED);
    sbx_rpc_result_clear(&res);
    stop(f);
}

static void auth_tenants_and_service_principals(void **state)
{
    (void)state;
    char a[65], s[65], keys[256];
    sbx_sha256_hex("key-acme", 8, a);
    sbx_sha256_hex("key-svc", 7, s);
    snprintf(keys, sizeof keys, "acme:%s\n@service:%s\n", a, s);
    struct fixture *f = start(keys);
    Sbx__V1__RunResponse *r = NULL;
    sbx_rpc_result res = {0};
    /* no key */
    assert_int_equal(run_shell(f->ch, "x", &r, &res), SBX_UNAUTHENTICATED);
    assert_non_null(strstr(res.message, "authorization"));
    char err[128];
    sbx_chan_opts bad = {.target = f->target, .api_key = "wrong"};
    sbx_chan *cb = sbx_chan_new(&bad, err, sizeof err);
    assert_int_equal(run_shell(cb, "x", &r, &res), SBX_UNAUTHENTICATED);
    assert_non_null(strstr(res.message, "unknown API key"));
    sbx_chan_free(cb);
    /* a tenant key acts as its tenant, and not as another */
    sbx_chan_opts good = {.target = f->target, .api_key = "key-acme"};
    sbx_chan *cg = sbx_chan_new(&good, err, sizeof err);
    assert_int_equal(run_shell(cg, "x", &r, &res), SBX_OK);
    assert_int_equal(r->stderr.len, 4);
    assert_memory_equal(r->stderr.data, "acme", 4);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    Sbx__V1__KillSandboxRequest kreq = SBX__V1__KILL_SANDBOX_REQUEST__INIT;
    ProtobufCMessage *kresp = NULL;
    assert_int_equal(sbx_call_unary(cg, "/sbx.v1.SandboxExecutor/KillSandbox", &kreq.base,
                                    &sbx__v1__kill_sandbox_response__descriptor, &kresp, 5000, NULL,
                                    &res),
                     SBX_PERMISSION_DENIED);
    sbx_chan_free(cg);
    sbx_chan_opts other = {.target = f->target, .api_key = "key-acme", .tenant = "globex"};
    sbx_chan *co = sbx_chan_new(&other, err, sizeof err);
    assert_int_equal(run_shell(co, "x", &r, &res), SBX_PERMISSION_DENIED);
    sbx_chan_free(co);
    /* a service principal names the tenant it acts for */
    sbx_chan_opts svc = {.target = f->target, .api_key = "key-svc", .tenant = "globex"};
    sbx_chan *cs = sbx_chan_new(&svc, err, sizeof err);
    assert_int_equal(run_shell(cs, "x", &r, &res), SBX_OK);
    assert_int_equal(r->stderr.len, 6);
    assert_memory_equal(r->stderr.data, "globex", 6);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    sbx_chan_free(cs);
    sbx_rpc_result_clear(&res);
    stop(f);
}

static void retries_unavailable_with_backoff(void **state)
{
    (void)state;
    sbx_rpc_init();
    char err[128];
    sbx_chan_opts o = {.target = "127.0.0.1:1"}; /* nothing listens on port 1 */
    sbx_chan *ch = sbx_chan_new(&o, err, sizeof err);
    sbx_backoff b = {
        .initial_ms = 20, .max_ms = 50, .multiplier = 2, .jitter = 0.1, .max_attempts = 4};
    Sbx__V1__RunResponse *r = NULL;
    sbx_rpc_result res = {0};
    Sbx__V1__ExecRequest req = SBX__V1__EXEC_REQUEST__INIT;
    assert_int_equal(sbx_call_unary(ch, "/sbx.v1.SandboxExecutor/Run", &req.base,
                                    &sbx__v1__run_response__descriptor, (ProtobufCMessage **)&r,
                                    10000, &b, &res),
                     SBX_UNAVAILABLE);
    assert_int_equal(res.attempts, 4);
    /* without retry: one attempt */
    assert_int_equal(sbx_call_unary(ch, "/sbx.v1.SandboxExecutor/Run", &req.base,
                                    &sbx__v1__run_response__descriptor, (ProtobufCMessage **)&r,
                                    10000, NULL, &res),
                     SBX_UNAVAILABLE);
    assert_int_equal(res.attempts, 1);
    sbx_rpc_result_clear(&res);
    sbx_chan_free(ch);
    sbx_rpc_shutdown();
}

static void handlers_run_without_a_server(void **state)
{
    (void)state;
    sbx_ctx *ctx = sbx_ctx_new_test("acme", false);
    Sbx__V1__ExecRequest req = SBX__V1__EXEC_REQUEST__INIT;
    req.command_case = SBX__V1__EXEC_REQUEST__COMMAND_SHELL;
    req.shell = "direct";
    ProtobufCMessage *resp = NULL;
    assert_int_equal(h_run(ctx, &req.base, &resp, NULL), SBX_OK);
    assert_int_equal(((Sbx__V1__RunResponse *)resp)->stdout.len, 6);
    req.shell = "fail";
    assert_int_equal(h_run(ctx, &req.base, &resp, NULL), SBX_FAILED_PRECONDITION);
    assert_string_equal(sbx_ctx_error_message(ctx), "asked to fail: version 7");
    /* streaming through a test context */
    req.timeout_ms = 3;
    assert_int_equal(h_exec(ctx, &req.base, &resp, NULL), SBX_OK);
    ProtobufCMessage **sent;
    assert_int_equal(sbx_ctx_test_sent(ctx, &sent, &sbx__v1__exec_event__descriptor), 3);
    assert_int_equal(((Sbx__V1__ExecEvent *)sent[2])->stdout->offset, 2);
    sbx_ctx_free_test(ctx);
}

/* A client-streaming handler fed through a test context: the queued messages, then the end. */
static void client_stream_handler_without_a_server(void **state)
{
    (void)state;
    sbx_ctx *ctx = sbx_ctx_new_test("acme", false);
    Sbx__V1__WriteFileHeader h = SBX__V1__WRITE_FILE_HEADER__INIT;
    h.path = "x";
    Sbx__V1__WriteFileRequest w = SBX__V1__WRITE_FILE_REQUEST__INIT;
    w.part_case = SBX__V1__WRITE_FILE_REQUEST__PART_HEADER;
    w.header = &h;
    sbx_ctx_test_push_recv(ctx, &w.base);
    Sbx__V1__WriteFileRequest d = SBX__V1__WRITE_FILE_REQUEST__INIT;
    d.part_case = SBX__V1__WRITE_FILE_REQUEST__PART_DATA;
    d.data.data = (uint8_t *)"hello";
    d.data.len = 5;
    sbx_ctx_test_push_recv(ctx, &d.base);
    sbx_ctx_test_push_recv(ctx, &d.base);
    ProtobufCMessage *resp = NULL;
    assert_int_equal(h_write(ctx, NULL, &resp, NULL), SBX_OK);
    assert_int_equal(((Sbx__V1__WriteFileResponse *)resp)->bytes_written, 10);
    sbx_ctx_free_test(ctx);

    /* without the header first: the handler's own error */
    ctx = sbx_ctx_new_test("acme", false);
    sbx_ctx_test_push_recv(ctx, &d.base);
    assert_int_equal(h_write(ctx, NULL, &resp, NULL), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(sbx_ctx_error_message(ctx), "header"));
    sbx_ctx_free_test(ctx);
}

static int health_check(sbx_chan *ch, const char *name, sbx_rpc_result *res)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)name;
    ProtobufCMessage *resp = NULL;
    int code = sbx_call_unary(ch, "/grpc.health.v1.Health/Check", &req.base,
                              &grpc__health__v1__health_check_response__descriptor, &resp, 5000,
                              NULL, res);
    if (code != SBX_OK)
        return -code;
    int st = ((Grpc__Health__V1__HealthCheckResponse *)resp)->status;
    protobuf_c_message_free_unpacked(resp, NULL);
    return st;
}

static int next_status(sbx_cstream *s)
{
    ProtobufCMessage *m = NULL;
    if (sbx_cstream_next(s, &grpc__health__v1__health_check_response__descriptor, &m) != 1)
        return -1;
    int st = ((Grpc__Health__V1__HealthCheckResponse *)m)->status;
    protobuf_c_message_free_unpacked(m, NULL);
    return st;
}

static sbx_cstream *open_watch(sbx_chan *ch, const char *name)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)name;
    sbx_cstream *w = NULL;
    sbx_rpc_result res = {0};
    assert_int_equal(
        sbx_call_server_stream(ch, "/grpc.health.v1.Health/Watch", &req.base, 20000, &w, &res), 0);
    sbx_rpc_result_clear(&res);
    return w;
}

static void health_follows_the_serving_state(void **state)
{
    (void)state;
    enum {
        SERVING = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING,
        NOT_SERVING = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING,
        UNKNOWN = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN,
    };
    struct fixture *f = start(NULL);
    sbx_rpc_result res = {0};
    assert_int_equal(health_check(f->ch, "", &res), SERVING);
    assert_int_equal(health_check(f->ch, "sbx.v1.SandboxExecutor", &res), SERVING);
    assert_int_equal(health_check(f->ch, "sbx.v1.Other", &res), -SBX_NOT_FOUND);

    sbx_cstream *w = open_watch(f->ch, "");
    assert_int_equal(next_status(w), SERVING);
    sbx_server_set_serving(f->srv, false);
    assert_int_equal(next_status(w), NOT_SERVING);
    assert_int_equal(health_check(f->ch, "", &res), NOT_SERVING);
    sbx_server_set_serving(f->srv, true);
    assert_int_equal(next_status(w), SERVING);

    sbx_cstream *wu = open_watch(f->ch, "sbx.v1.Other");
    assert_int_equal(next_status(wu), UNKNOWN);

    /* shutdown: the watch of a known name reports NOT_SERVING, and both end with UNAVAILABLE
     * long before the grace period would cancel them */
    sbx_server_shutdown(f->srv);
    assert_int_equal(next_status(w), NOT_SERVING);
    assert_int_equal(next_status(w), -1);
    assert_int_equal(sbx_cstream_finish(w, &res), SBX_UNAVAILABLE);
    assert_int_equal(next_status(wu), -1);
    assert_int_equal(sbx_cstream_finish(wu, &res), SBX_UNAVAILABLE);
    sbx_rpc_result_clear(&res);
    stop(f);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(unary_roundtrip_and_errors),
    cmocka_unit_test(unimplemented_and_unknown_methods),
    cmocka_unit_test(table_naming_a_missing_method_is_rejected),
    cmocka_unit_test(server_stream_delivers_in_order),
    cmocka_unit_test(stream_handler_notices_cancel),
    cmocka_unit_test(client_stream_counts_bytes),
    cmocka_unit_test(deadline_exceeded),
    cmocka_unit_test(auth_tenants_and_service_principals),
    cmocka_unit_test(retries_unavailable_with_backoff),
    cmocka_unit_test(handlers_run_without_a_server),
    cmocka_unit_test(client_stream_handler_without_a_server),
    cmocka_unit_test(health_follows_the_serving_state),
};
SBX_TEST_MAIN(tests)
