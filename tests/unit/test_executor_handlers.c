/* test_executor_handlers.c: the SandboxExecutor handlers and the registry behind them, called
 * directly with test contexts (no gRPC server): tenant isolation, idempotent creates, the
 * sandbox limit and uid-block reuse, idle expiry, Run and Exec events, validation through the
 * handlers. Creates real sandboxes: needs root, skips otherwise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "exectab.h"
#include "handlers.h"
#include "rpc_server.h"
#include "status.h"
#include "test_main.h"

typedef struct fixture {
    char dir[64];
    sbx_execmon *mon;
    sbx_reg *reg;
    sbx_exsvc svc;
} fixture;

static int setup(void **state)
{
    if (geteuid() != 0) {
        *state = NULL;
        return 0;
    }
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/sbx-exh-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    chmod(f->dir, 0711);
    f->mon = sbx_execmon_new(NULL);
    sbx_reg_cfg c = {
        .data_dir = f->dir,
        /* $SBX_TEST_INIT_PATH: an uninstrumented sbx-init for sanitizer builds */
        .init_path = getenv("SBX_TEST_INIT_PATH") ? getenv("SBX_TEST_INIT_PATH") : SBX_INIT_BUILD_PATH,
        .idle_timeout_ms = 0,
        .defaults = {256 << 20, 128, 1000, 60000, 1 << 20, 1024, 1 << 30},
        .max = {1LL << 32, 4096, 2000, 86400000, 1 << 30, 65536, 1LL << 40},
        .max_sandboxes = 2,
        .reaper_interval_ms = 50,
        .hooks = {sbx_exectab_attach, sbx_exectab_detach, sbx_exectab_running, f->mon},
    };
    char err[256];
    if (sbx_reg_new(&c, &f->reg, err, sizeof err) < 0) {
        fprintf(stderr, "registry: %s\n", err);
        return -1;
    }
    f->svc = (sbx_exsvc){.reg = f->reg, .mon = f->mon};
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (!f)
        return 0;
    sbx_reg_free(f->reg);
    sbx_execmon_free(f->mon);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

#define NEED_ROOT(f)                                                                             \
    do {                                                                                         \
        if (!(f)) {                                                                              \
            skip();                                                                              \
        }                                                                                        \
    } while (0)

static Sbx__V1__Sandbox *create(fixture *f, const char *tenant, const char *project, int *code)
{
    sbx_ctx *ctx = sbx_ctx_new_test(tenant, false);
    Sbx__V1__CreateSandboxRequest r = SBX__V1__CREATE_SANDBOX_REQUEST__INIT;
    r.project_id = (char *)project;
    ProtobufCMessage *resp = NULL;
    *code = exh_create_sandbox(ctx, &r.base, &resp, &f->svc);
    static Sbx__V1__Sandbox copy;
    static char id[80];
    if (*code == SBX_OK) {
        copy = *(Sbx__V1__Sandbox *)resp;
        snprintf(id, sizeof id, "%s", copy.sandbox_id);
        copy.sandbox_id = id;
    }
    sbx_ctx_free_test(ctx);
    return *code == SBX_OK ? &copy : NULL;
}

static void test_tenants_and_idempotence(void **state)
{
    fixture *f = *state;
    NEED_ROOT(f);
    int code;
    Sbx__V1__Sandbox *a = create(f, "alice", "proj", &code);
    assert_int_equal(code, SBX_OK);
    char id[80];
    snprintf(id, sizeof id, "%s", a->sandbox_id);
    a = create(f, "alice", "proj", &code);
    assert_int_equal(code, SBX_OK);
    assert_string_equal(a->sandbox_id, id);
    /* bob sees nothing of alice's */
    sbx_ctx *bob = sbx_ctx_new_test("bob", false);
    Sbx__V1__GetSandboxRequest g = SBX__V1__GET_SANDBOX_REQUEST__INIT;
    g.sandbox_id = id;
    ProtobufCMessage *resp = NULL;
    assert_int_equal(exh_get_sandbox(bob, &g.base, &resp, &f->svc), SBX_NOT_FOUND);
    g.sandbox_id = "";
    g.project_id = "proj";
    assert_int_equal(exh_get_sandbox(bob, &g.base, &resp, &f->svc), SBX_NOT_FOUND);
    Sbx__V1__ListSandboxesRequest l = SBX__V1__LIST_SANDBOXES_REQUEST__INIT;
    assert_int_equal(exh_list_sandboxes(bob, &l.base, &resp, &f->svc), SBX_OK);
    assert_int_equal(((Sbx__V1__ListSandboxesResponse *)resp)->n_sandboxes, 0);
    Sbx__V1__KillSandboxRequest k = SBX__V1__KILL_SANDBOX_REQUEST__INIT;
    k.sandbox_id = id;
    assert_int_equal(exh_kill_sandbox(bob, &k.base, &resp, &f->svc), SBX_NOT_FOUND);
    sbx_ctx_free_test(bob);
    sbx_ctx *alice = sbx_ctx_new_test("alice", false);
    assert_int_equal(exh_kill_sandbox(alice, &k.base, &resp, &f->svc), SBX_OK);
    assert_true(((Sbx__V1__KillSandboxResponse *)resp)->killed);
    sbx_ctx_free_test(alice);
}

static void test_limit_and_uid_reuse(void **state)
{
    fixture *f = *state;
    NEED_ROOT(f);
    int code;
    create(f, "t", "one", &code);
    assert_int_equal(code, SBX_OK);
    create(f, "t", "two", &code);
    assert_int_equal(code, SBX_OK);
    create(f, "t", "three", &code);
    assert_int_equal(code, SBX_RESOURCE_EXHAUSTED);
    sbx_ctx *ctx = sbx_ctx_new_test("t", false);
    Sbx__V1__KillSandboxRequest k = SBX__V1__KILL_SANDBOX_REQUEST__INIT;
    k.project_id = "one";
    ProtobufCMessage *resp = NULL;
    assert_int_equal(exh_kill_sandbox(ctx, &k.base, &resp, &f->svc), SBX_OK);
    sbx_ctx_free_test(ctx);
    create(f, "t", "three", &code); /* the freed uid block is reused */
    assert_int_equal(code, SBX_OK);
    ctx = sbx_ctx_new_test("t", false);
    k.project_id = "two";
    exh_kill_sandbox(ctx, &k.base, &resp, &f->svc);
    k.project_id = "three";
    exh_kill_sandbox(ctx, &k.base, &resp, &f->svc);
    sbx_ctx_free_test(ctx);
}

static void test_run_exec_and_validation(void **state)
{
    fixture *f = *state;
    NEED_ROOT(f);
    sbx_ctx *ctx = sbx_ctx_new_test("t", false);
    Sbx__V1__ExecRequest r = SBX__V1__EXEC_REQUEST__INIT;
    Sbx__V1__Argv av = SBX__V1__ARGV__INIT;
    char *args[] = {"sh", "-c", "echo hi; echo err >&2; exit 4"};
    av.args = args;
    av.n_args = 3;
    r.project_id = "run";
    r.command_case = SBX__V1__EXEC_REQUEST__COMMAND_ARGV;
    r.argv = &av;
    ProtobufCMessage *resp = NULL;
    assert_int_equal(exh_run(ctx, &r.base, &resp, &f->svc), SBX_OK);
    Sbx__V1__RunResponse *rr = (Sbx__V1__RunResponse *)resp;
    assert_int_equal(rr->stdout.len, 3);
    assert_memory_equal(rr->stdout.data, "hi\n", 3);
    assert_int_equal(rr->exit->exit_code, 4);
    assert_int_equal(rr->exit->stderr_bytes, 4);
    sbx_ctx_free_test(ctx);

    ctx = sbx_ctx_new_test("t", false);
    assert_int_equal(exh_exec(ctx, &r.base, &resp, &f->svc), SBX_OK);
    ProtobufCMessage **sent;
    size_t n = sbx_ctx_test_sent(ctx, &sent, &sbx__v1__exec_event__descriptor);
    assert_true(n >= 3);
    assert_int_equal(((Sbx__V1__ExecEvent *)sent[0])->event_case, SBX__V1__EXEC_EVENT__EVENT_STARTED);
    assert_int_equal(((Sbx__V1__ExecEvent *)sent[n - 1])->event_case, SBX__V1__EXEC_EVENT__EVENT_EXITED);
    assert_int_equal(((Sbx__V1__ExecEvent *)sent[n - 1])->exited->exit_code, 4);
    sbx_ctx_free_test(ctx);

    ctx = sbx_ctx_new_test("t", false);
    Sbx__V1__ExecRequest__EnvEntry e = SBX__V1__EXEC_REQUEST__ENV_ENTRY__INIT;
    e.key = "BAD=KEY";
    e.value = "x";
    Sbx__V1__ExecRequest__EnvEntry *ev[] = {&e};
    r.env = ev;
    r.n_env = 1;
    assert_int_equal(exh_run(ctx, &r.base, &resp, &f->svc), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(sbx_ctx_error_message(ctx), "env"));
    r.n_env = 0;
    r.sandbox_id = "sb-nonexistent";
    r.project_id = "";
    assert_int_equal(exh_run(ctx, &r.base, &resp, &f->svc), SBX_NOT_FOUND);
    sbx_ctx_free_test(ctx);

    ctx = sbx_ctx_new_test("t", false);
    Sbx__V1__KillSandboxRequest k = SBX__V1__KILL_SANDBOX_REQUEST__INIT;
    k.project_id = "run";
    assert_int_equal(exh_kill_sandbox(ctx, &k.base, &resp, &f->svc), SBX_OK);
    sbx_ctx_free_test(ctx);
}

static void test_idle_expiry(void **state)
{
    fixture *f = *state;
    NEED_ROOT(f);
    int code;
    Sbx__V1__Sandbox *s = create(f, "t", "idle", &code);
    assert_int_equal(code, SBX_OK);
    char id[80];
    snprintf(id, sizeof id, "%s", s->sandbox_id);
    sbx_ctx *ctx = sbx_ctx_new_test("t", false);
    Sbx__V1__SetSandboxTimeoutRequest t = SBX__V1__SET_SANDBOX_TIMEOUT_REQUEST__INIT;
    t.sandbox_id = id;
    t.idle_timeout_ms = 200;
    ProtobufCMessage *resp = NULL;
    assert_int_equal(exh_set_sandbox_timeout(ctx, &t.base, &resp, &f->svc), SBX_OK);
    sbx_ctx_free_test(ctx);
    int state_now = 0;
    for (int i = 0; i < 40 && state_now != SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED; i++) {
        usleep(100000);
        ctx = sbx_ctx_new_test("t", false);
        Sbx__V1__GetSandboxRequest g = SBX__V1__GET_SANDBOX_REQUEST__INIT;
        g.sandbox_id = id;
        assert_int_equal(exh_get_sandbox(ctx, &g.base, &resp, &f->svc), SBX_OK);
        state_now = ((Sbx__V1__Sandbox *)resp)->state;
        sbx_ctx_free_test(ctx);
    }
    assert_int_equal(state_now, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tenants_and_idempotence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limit_and_uid_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_exec_and_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_expiry, setup, teardown),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
