/* test_rpc_devserver.c: StartDevServer through its handler (rpc/handlers_devserver.c), the one
 * implementation the server runs, on real sandboxes with real commands: python's http.server
 * ready (and reused by tag, visible to ListProcesses and AttachProcess), a slow starter, one
 * that never listens (killed, its output in the message), keep_on_failure, servers that exit
 * early or cannot be executed, a daemonising parent, a cancelled call, and the argument checks.
 * Needs root; skips with the reason otherwise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "executor_fixture.h"
#include "ports_fixture.h"
#include "status.h"

static int setup(void **state)
{
    *state = exf_open(&(exf_opts){.ports = true});
    return 0;
}

static int teardown(void **state)
{
    exf_close(*state);
    return 0;
}

typedef struct dev_call {
    int code;
    char msg[4096];
    Sbx__V1__StartDevServerResponse resp; /* valid when code is OK (strings copied) */
    char url[128];
} dev_call;

/* StartDevServer of a shell command (or argv when shell is NULL) on port. */
static dev_call *start_dev(void **state, const char *project, const char *shell, char *const *argv,
                           size_t argc, uint32_t port,
                           void (*tweak)(Sbx__V1__StartDevServerRequest *r))
{
    static dev_call c;
    memset(&c, 0, sizeof c);
    exf *f = *state;
    sbx_ctx *ctx = sbx_ctx_new_test("t", false);
    Sbx__V1__StartDevServerRequest r = SBX__V1__START_DEV_SERVER_REQUEST__INIT;
    Sbx__V1__Argv av = SBX__V1__ARGV__INIT;
    r.project_id = (char *)project;
    r.port = port;
    if (shell) {
        r.command_case = SBX__V1__START_DEV_SERVER_REQUEST__COMMAND_SHELL;
        r.shell = (char *)shell;
    } else if (argv) {
        av.args = (char **)argv;
        av.n_args = argc;
        r.command_case = SBX__V1__START_DEV_SERVER_REQUEST__COMMAND_ARGV;
        r.argv = &av;
    }
    if (tweak)
        tweak(&r);
    ProtobufCMessage *resp = NULL;
    c.code = exh_start_dev_server(ctx, &r.base, &resp, &f->svc);
    snprintf(c.msg, sizeof c.msg, "%s", sbx_ctx_error_message(ctx));
    if (c.code == SBX_OK) {
        c.resp = *(Sbx__V1__StartDevServerResponse *)resp;
        snprintf(c.url, sizeof c.url, "%s", c.resp.url);
        c.resp.url = c.url;
        c.resp.host = c.resp.sandbox_id = NULL;
    }
    if (c.code != SBX_OK)
        fprintf(stderr, "StartDevServer: %s %s\n", sbx_status_name(c.code), c.msg);
    sbx_ctx_free_test(ctx);
    return &c;
}

/* The process of the project whose shell or argv[0] is cmd: running, pid (0 when none). */
static int find_proc(void **state, const char *project, const char *cmd, bool *running)
{
    exf *f = *state;
    sbx_ctx *ctx = sbx_ctx_new_test("t", false);
    Sbx__V1__ListProcessesRequest l = SBX__V1__LIST_PROCESSES_REQUEST__INIT;
    l.project_id = (char *)project;
    l.include_exited = true;
    ProtobufCMessage *resp = NULL;
    assert_int_equal(exh_list_processes(ctx, &l.base, &resp, &f->svc), SBX_OK);
    Sbx__V1__ListProcessesResponse *lr = (Sbx__V1__ListProcessesResponse *)resp;
    int pid = 0;
    for (size_t i = 0; i < lr->n_processes; i++) {
        Sbx__V1__ProcessInfo *pi = lr->processes[i];
        const char *c = pi->n_argv ? pi->argv[0] : pi->shell;
        if (strcmp(c, cmd) == 0) {
            pid = pi->pid;
            *running = pi->running;
            assert_true(pi->background);
        }
    }
    sbx_ctx_free_test(ctx);
    return pid;
}

/* Waits up to 3 s for the process to stop running. */
static bool stops(void **state, const char *project, const char *cmd)
{
    bool running = true;
    for (int i = 0; i < 60 && running; i++) {
        find_proc(state, project, cmd, &running);
        if (running)
            usleep(50000);
    }
    return !running;
}

static void tag_web(Sbx__V1__StartDevServerRequest *r)
{
    r->tag = "web";
}

/* http.server: ready, the URL answers, the pid is the process ListProcesses shows; the same
 * tag while it runs gives the same process and host port. */
static void test_start_http_server(void **state)
{
    EXF_REQUIRE(*state);
    char *argv[] = {"python3", "-m", "http.server", "8000", "--bind", "127.0.0.1"};
    dev_call *c = start_dev(state, "web", NULL, argv, 6, 8000, tag_web);
    assert_int_equal(c->code, SBX_OK);
    assert_true(c->resp.pid > 1);
    uint32_t hp = c->resp.host_port;
    char want[64];
    snprintf(want, sizeof want, "http://127.0.0.1:%u/", hp);
    assert_string_equal(c->url, want);
    hash64 h;
    assert_int_equal(http_get_hash((uint16_t)hp, "/", &h), 200);
    bool running = false;
    assert_int_equal(find_proc(state, "web", "python3", &running), c->resp.pid);
    assert_true(running);
    int pid = c->resp.pid;
    c = start_dev(state, "web", NULL, argv, 6, 8000, tag_web);
    assert_int_equal(c->code, SBX_OK);
    assert_int_equal(c->resp.pid, pid);
    assert_int_equal(c->resp.host_port, hp);
}

static void slow_starter_opts(Sbx__V1__StartDevServerRequest *r)
{
    r->ready_path = "/ready?probe=1";
    r->ready_timeout_ms = 10000;
}

/* sleep 2, then serve: waited for (any status code counts: /ready is a 404). */
static void test_slow_starter(void **state)
{
    EXF_REQUIRE(*state);
    const char *sh = "echo warming up; sleep 2; exec python3 -m http.server 8100 --bind 127.0.0.1";
    dev_call *c = start_dev(state, "slow", sh, NULL, 0, 8100, slow_starter_opts);
    assert_int_equal(c->code, SBX_OK);
    assert_true(c->resp.ready_after_ms >= 1900); /* it cannot answer before its sleep ends */
    bool running = false;
    find_proc(state, "slow", sh, &running);
    assert_true(running);
}

static void short_wait(Sbx__V1__StartDevServerRequest *r)
{
    r->ready_timeout_ms = 1500;
}

/* Never listens: DEADLINE_EXCEEDED, its output in the message, killed. */
static void test_never_listens(void **state)
{
    EXF_REQUIRE(*state);
    const char *sh = "echo compiling assets; echo 'error: port 8200 is busy' >&2; exec sleep 60";
    dev_call *c = start_dev(state, "never", sh, NULL, 0, 8200, short_wait);
    assert_int_equal(c->code, SBX_DEADLINE_EXCEEDED);
    assert_non_null(strstr(c->msg, "not ready on port 8200 within"));
    assert_non_null(strstr(c->msg, "error: port 8200 is busy"));
    assert_non_null(strstr(c->msg, "killed"));
    assert_true(stops(state, "never", sh));
}

static void keep_opts(Sbx__V1__StartDevServerRequest *r)
{
    r->ready_timeout_ms = 300;
    r->keep_on_failure = true;
}

static void test_keep_on_failure(void **state)
{
    EXF_REQUIRE(*state);
    char *argv[] = {"sleep", "60"};
    dev_call *c = start_dev(state, "keep", NULL, argv, 2, 8300, keep_opts);
    assert_int_equal(c->code, SBX_DEADLINE_EXCEEDED);
    assert_non_null(strstr(c->msg, "left running"));
    bool running = false;
    assert_true(find_proc(state, "keep", "sleep", &running) > 0);
    assert_true(running);
}

/* Exits before it is ready: FAILED_PRECONDITION with the exit code (or signal) and its stderr;
 * a program that cannot be executed exits 127 with the reason. */
static void test_exits_early(void **state)
{
    EXF_REQUIRE(*state);
    dev_call *c =
        start_dev(state, "early", "echo starting; echo 'SyntaxError: unexpected token' >&2; exit 3",
                  NULL, 0, 8400, NULL);
    assert_int_equal(c->code, SBX_FAILED_PRECONDITION);
    assert_non_null(strstr(c->msg, "exited with code 3"));
    assert_non_null(strstr(c->msg, "SyntaxError: unexpected token"));
    c = start_dev(state, "early", "kill -SEGV $$", NULL, 0, 8400, NULL);
    assert_int_equal(c->code, SBX_FAILED_PRECONDITION);
    assert_non_null(strstr(c->msg, "signal 11"));
    char *argv[] = {"no-such-dev-server"};
    c = start_dev(state, "early", NULL, argv, 1, 8400, NULL);
    assert_int_equal(c->code, SBX_FAILED_PRECONDITION);
    assert_non_null(strstr(c->msg, "exited with code 127"));
    assert_non_null(strstr(c->msg, "no-such-dev-server"));
}

/* A parent that daemonises its server and exits 0 counts as ready (the last probe answers). */
static void test_daemonised_server(void **state)
{
    EXF_REQUIRE(*state);
    dev_call *c = start_dev(state, "daemon",
                            "python3 -m http.server 8500 --bind 127.0.0.1 >/dev/null 2>&1 & "
                            "sleep 1; exit 0",
                            NULL, 0, 8500, NULL);
    assert_int_equal(c->code, SBX_OK);
}

/* The client left: CANCELLED, the server killed. */
static void test_cancelled(void **state)
{
    EXF_REQUIRE(*state);
    exf *f = *state;
    sbx_ctx *ctx = sbx_ctx_new_test("t", false);
    Sbx__V1__StartDevServerRequest r = SBX__V1__START_DEV_SERVER_REQUEST__INIT;
    r.project_id = "cancel";
    r.port = 8600;
    r.command_case = SBX__V1__START_DEV_SERVER_REQUEST__COMMAND_SHELL;
    r.shell = "exec sleep 60";
    sbx_ctx_test_cancel(ctx);
    ProtobufCMessage *resp = NULL;
    assert_int_equal(exh_start_dev_server(ctx, &r.base, &resp, &f->svc), SBX_CANCELLED);
    assert_non_null(strstr(sbx_ctx_error_message(ctx), "cancelled"));
    assert_non_null(strstr(sbx_ctx_error_message(ctx), "killed"));
    sbx_ctx_free_test(ctx);
    assert_true(stops(state, "cancel", "exec sleep 60"));
}

static void bad_path(Sbx__V1__StartDevServerRequest *r)
{
    r->ready_path = "no-slash";
}

static void bad_timeout(Sbx__V1__StartDevServerRequest *r)
{
    r->ready_timeout_ms = 600001;
}

static void test_bad_arguments(void **state)
{
    EXF_REQUIRE(*state);
    char *argv[] = {"true"};
    dev_call *c = start_dev(state, "bad", NULL, argv, 1, 0, NULL);
    assert_int_equal(c->code, SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(c->msg, "port"));
    c = start_dev(state, "bad", NULL, argv, 1, 80, bad_path);
    assert_int_equal(c->code, SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(c->msg, "ready_path"));
    c = start_dev(state, "bad", NULL, argv, 1, 80, bad_timeout);
    assert_int_equal(c->code, SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(c->msg, "ready_timeout_ms"));
    c = start_dev(state, "bad", NULL, NULL, 0, 80, NULL);
    assert_int_equal(c->code, SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(c->msg, "command"));
    c = start_dev(state, "", NULL, argv, 1, 80, NULL);
    assert_int_equal(c->code, SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(c->msg, "set one of them"));
    /* nothing was started: not even the sandbox */
    sbx_ctx *ctx = sbx_ctx_new_test("t", false);
    Sbx__V1__GetSandboxRequest g = SBX__V1__GET_SANDBOX_REQUEST__INIT;
    g.project_id = "bad";
    ProtobufCMessage *resp = NULL;
    assert_int_equal(exh_get_sandbox(ctx, &g.base, &resp, &((exf *)*state)->svc), SBX_NOT_FOUND);
    sbx_ctx_free_test(ctx);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_start_http_server, setup, teardown),
    cmocka_unit_test_setup_teardown(test_slow_starter, setup, teardown),
    cmocka_unit_test_setup_teardown(test_never_listens, setup, teardown),
    cmocka_unit_test_setup_teardown(test_keep_on_failure, setup, teardown),
    cmocka_unit_test_setup_teardown(test_exits_early, setup, teardown),
    cmocka_unit_test_setup_teardown(test_daemonised_server, setup, teardown),
    cmocka_unit_test_setup_teardown(test_cancelled, setup, teardown),
    cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
};

SBX_TEST_MAIN(tests)
