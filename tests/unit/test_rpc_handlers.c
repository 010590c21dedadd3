/* test_rpc_handlers.c: the SandboxExecutor handlers (rpc/), called directly with test contexts
 * (no gRPC server) on real sandboxes: tenant isolation and idempotent creates, the sandbox limit
 * and uid-block reuse, idle expiry, Run and Exec events and validation, foreground stdin, a
 * background process fed by its initial stdin and SendInput then closed and followed with
 * AttachProcess, request_id replays, and the client-stream RPCs (WriteFile, UploadFiles) with
 * their header and the checks the file layer makes. Needs root; skips with the reason
 * otherwise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "executor_fixture.h"
#include "status.h"

static int setup(void **state)
{
    *state = exf_open(&(exf_opts){.max_sandboxes = 2});
    return 0;
}

static int teardown(void **state)
{
    exf_close(*state);
    return 0;
}

static sbx_exsvc *svc(void **state)
{
    return &((exf *)*state)->svc;
}

/* CreateSandbox; the sandbox_id copied into id (when OK). */
static int create(void **state, const char *tenant, const char *project, char id[80])
{
    sbx_ctx *ctx = sbx_ctx_new_test(tenant, false);
    Sbx__V1__CreateSandboxRequest r = SBX__V1__CREATE_SANDBOX_REQUEST__INIT;
    r.project_id = (char *)project;
    ProtobufCMessage *resp = NULL;
    int code = exh_create_sandbox(ctx, &r.base, &resp, svc(state));
    if (code == SBX_OK && id)
        snprintf(id, 80, "%s", ((Sbx__V1__Sandbox *)resp)->sandbox_id);
    sbx_ctx_free_test(ctx);
    return code;
}

static int kill_project(void **state, const char *tenant, const char *project)
{
    sbx_ctx *ctx = sbx_ctx_new_test(tenant, false);
    Sbx__V1__KillSandboxRequest k = SBX__V1__KILL_SANDBOX_REQUEST__INIT;
    k.project_id = (char *)project;
    ProtobufCMessage *resp = NULL;
    int code = exh_kill_sandbox(ctx, &k.base, &resp, svc(state));
    sbx_ctx_free_test(ctx);
    return code;
}

static void test_tenants_and_idempotence(void **state)
{
    EXF_REQUIRE(*state);
    char id[80], id2[80];
    assert_int_equal(create(state, "alice", "proj", id), SBX_OK);
    assert_int_equal(create(state, "alice", "proj", id2), SBX_OK);
    assert_string_equal(id, id2);
    /* bob sees nothing of alice's */
    sbx_ctx *bob = sbx_ctx_new_test("bob", false);
    Sbx__V1__GetSandboxRequest g = SBX__V1__GET_SANDBOX_REQUEST__INIT;
    g.sandbox_id = id;
    ProtobufCMessage *resp = NULL;
    assert_int_equal(exh_get_sandbox(bob, &g.base, &resp, svc(state)), SBX_NOT_FOUND);
    g.sandbox_id = "";
    g.project_id = "proj";
    assert_int_equal(exh_get_sandbox(bob, &g.base, &resp, svc(state)), SBX_NOT_FOUND);
    Sbx__V1__ListSandboxesRequest l = SBX__V1__LIST_SANDBOXES_REQUEST__INIT;
    assert_int_equal(exh_list_sandboxes(bob, &l.base, &resp, svc(state)), SBX_OK);
    assert_int_equal(((Sbx__V1__ListSandboxesResponse *)resp)->n_sandboxes, 0);
    Sbx__V1__KillSandboxRequest k = SBX__V1__KILL_SANDBOX_REQUEST__INIT;
    k.sandbox_id = id;
    assert_int_equal(exh_kill_sandbox(bob, &k.base, &resp, svc(state)), SBX_NOT_FOUND);
    sbx_ctx_free_test(bob);
    sbx_ctx *alice = sbx_ctx_new_test("alice", false);
    assert_int_equal(exh_kill_sandbox(alice, &k.base, &resp, svc(state)), SBX_OK);
    assert_true(((Sbx__V1__KillSandboxResponse *)resp)->killed);
    sbx_ctx_free_test(alice);
}

static void test_limit_and_uid_reuse(void **state)
{
    EXF_REQUIRE(*state);
    assert_int_equal(create(state, "t", "one", NULL), SBX_OK);
    assert_int_equal(create(state, "t", "two", NULL), SBX_OK);
    assert_int_equal(create(state, "t", "three", NULL), SBX_RESOURCE_EXHAUSTED);
    assert_int_equal(kill_project(state, "t", "one"), SBX_OK);
    assert_int_equal(create(state, "t", "three", NULL), SBX_OK); /* the freed block is reused */
    kill_project(state, "t", "two");
    kill_project(state, "t", "three");
}

/* An ExecRequest for argv (static storage; one at a time). */
static Sbx__V1__ExecRequest *exec_req(const char *project, char **args, size_t n)
{
    static Sbx__V1__ExecRequest r;
    static Sbx__V1__Argv av;
    sbx__v1__exec_request__init(&r);
    sbx__v1__argv__init(&av);
    av.args = args;
    av.n_args = n;
    r.project_id = (char *)project;
    r.command_case = SBX__V1__EXEC_REQUEST__COMMAND_ARGV;
    r.argv = &av;
    return &r;
}

static void test_run_exec_and_validation(void **state)
{
    EXF_REQUIRE(*state);
    sbx_ctx *ctx = sbx_ctx_new_test("t", false);
    char *args[] = {"sh", "-c", "echo hi; echo err >&2; exit 4"};
    Sbx__V1__ExecRequest *r = exec_req("run", args, 3);
    ProtobufCMessage *resp = NULL;
    assert_int_equal(exh_run(ctx, &r->base, &resp, svc(state)), SBX_OK);
    Sbx__V1__RunResponse *rr = (Sbx__V1__RunResponse *)resp;
    assert_int_equal(rr->stdout.len, 3);
    assert_memory_equal(rr->stdout.data, "hi\n", 3);
    assert_int_equal(rr->exit->exit_code, 4);
    assert_int_equal(rr->exit->stderr_bytes, 4);
    sbx_ctx_free_test(ctx);

    ctx = sbx_ctx_new_test("t", false);
    assert_int_equal(exh_exec(ctx, &r->base, &resp, svc(state)), SBX_OK);
    ProtobufCMessage **sent;
    size_t n = sbx_ctx_test_sent(ctx, &sent, &sbx__v1__exec_event__descriptor);
    assert_true(n >= 3);
    Sbx__V1__ExecEvent *first = (Sbx__V1__ExecEvent *)sent[0];
    Sbx__V1__ExecEvent *last = (Sbx__V1__ExecEvent *)sent[n - 1];
    assert_int_equal(first->event_case, SBX__V1__EXEC_EVENT__EVENT_STARTED);
    assert_int_equal(last->event_case, SBX__V1__EXEC_EVENT__EVENT_EXITED);
    assert_int_equal(last->exited->exit_code, 4);
    sbx_ctx_free_test(ctx);

    ctx = sbx_ctx_new_test("t", false);
    Sbx__V1__ExecRequest__EnvEntry e = SBX__V1__EXEC_REQUEST__ENV_ENTRY__INIT;
    e.key = "BAD=KEY";
    e.value = "x";
    Sbx__V1__ExecRequest__EnvEntry *ev[] = {&e};
    r->env = ev;
    r->n_env = 1;
    assert_int_equal(exh_run(ctx, &r->base, &resp, svc(state)), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(sbx_ctx_error_message(ctx), "env"));
    r->n_env = 0;
    r->project_id = "";
    assert_int_equal(exh_run(ctx, &r->base, &resp, svc(state)), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(sbx_ctx_error_message(ctx), "set one of them"));
    r->sandbox_id = "sb-nonexistent";
    assert_int_equal(exh_run(ctx, &r->base, &resp, svc(state)), SBX_NOT_FOUND);
    sbx_ctx_free_test(ctx);
    assert_int_equal(kill_project(state, "t", "run"), SBX_OK);
}

/* Foreground stdin: queued at the start, written by the relay while the output streams. */
static void test_foreground_stdin(void **state)
{
    EXF_REQUIRE(*state);
    char *args[] = {"cat"};
    Sbx__V1__ExecRequest *r = exec_req("stdin", args, 1);
    size_t len = 300000;
    uint8_t *in = malloc(len);
    for (size_t i = 0; i < len; i++)
        in[i] = (uint8_t)('a' + i % 26);
    r->stdin.data = in;
    r->stdin.len = len;
    sbx_ctx *ctx = sbx_ctx_new_test("t", false);
    ProtobufCMessage *resp = NULL;
    assert_int_equal(exh_run(ctx, &r->base, &resp, svc(state)), SBX_OK);
    Sbx__V1__RunResponse *rr = (Sbx__V1__RunResponse *)resp;
    assert_int_equal(rr->stdout.len, len);
    assert_memory_equal(rr->stdout.data, in, len);
    assert_int_equal(rr->exit->exit_code, 0);
    sbx_ctx_free_test(ctx);

    /* Exec: the stream carries every byte, offsets contiguous */
    ctx = sbx_ctx_new_test("t", false);
    assert_int_equal(exh_exec(ctx, &r->base, &resp, svc(state)), SBX_OK);
    ProtobufCMessage **sent;
    size_t n = sbx_ctx_test_sent(ctx, &sent, &sbx__v1__exec_event__descriptor);
    uint64_t next = 0;
    for (size_t i = 0; i < n; i++) {
        Sbx__V1__ExecEvent *ev = (Sbx__V1__ExecEvent *)sent[i];
        if (ev->event_case != SBX__V1__EXEC_EVENT__EVENT_STDOUT)
            continue;
        assert_int_equal(ev->stdout->offset, next);
        assert_true(ev->stdout->data.len <= 64 * 1024);
        assert_memory_equal(ev->stdout->data.data, in + next, ev->stdout->data.len);
        next += ev->stdout->data.len;
    }
    assert_int_equal(next, len);
    sbx_ctx_free_test(ctx);
    free(in);
    kill_project(state, "t", "stdin");
}

static int send_input(void **state, const char *project, const char *tag, const char *data)
{
    sbx_ctx *ctx = sbx_ctx_new_test("t", false);
    Sbx__V1__ProcessSelector sel = SBX__V1__PROCESS_SELECTOR__INIT;
    sel.sel_case = SBX__V1__PROCESS_SELECTOR__SEL_TAG;
    sel.tag = (char *)tag;
    Sbx__V1__SendInputRequest in = SBX__V1__SEND_INPUT_REQUEST__INIT;
    in.project_id = (char *)project;
    in.process = &sel;
    in.data.data = (uint8_t *)data;
    in.data.len = strlen(data);
    ProtobufCMessage *resp = NULL;
    int code = exh_send_input(ctx, &in.base, &resp, svc(state));
    sbx_ctx_free_test(ctx);
    return code;
}

/* AttachProcess by tag; the stdout bytes into out (NUL-terminated); the last event's case. */
static int attach(void **state, const char *project, const char *tag, uint64_t from, bool follow,
                  char *out, size_t outlen)
{
    sbx_ctx *ctx = sbx_ctx_new_test("t", false);
    Sbx__V1__ProcessSelector sel = SBX__V1__PROCESS_SELECTOR__INIT;
    sel.sel_case = SBX__V1__PROCESS_SELECTOR__SEL_TAG;
    sel.tag = (char *)tag;
    Sbx__V1__AttachProcessRequest a = SBX__V1__ATTACH_PROCESS_REQUEST__INIT;
    a.project_id = (char *)project;
    a.process = &sel;
    a.stdout_offset = from;
    a.follow = follow;
    ProtobufCMessage *resp = NULL;
    assert_int_equal(exh_attach_process(ctx, &a.base, &resp, svc(state)), SBX_OK);
    ProtobufCMessage **sent;
    size_t n = sbx_ctx_test_sent(ctx, &sent, &sbx__v1__exec_event__descriptor);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        Sbx__V1__ExecEvent *ev = (Sbx__V1__ExecEvent *)sent[i];
        if (ev->event_case == SBX__V1__EXEC_EVENT__EVENT_STDOUT &&
            o + ev->stdout->data.len < outlen) {
            memcpy(out + o, ev->stdout->data.data, ev->stdout->data.len);
            o += ev->stdout->data.len;
        }
    }
    out[o] = 0;
    int last = n ? (int)((Sbx__V1__ExecEvent *)sent[n - 1])->event_case : 0;
    sbx_ctx_free_test(ctx);
    return last;
}

/* A background reader: its initial stdin, SendInput, CloseInput (EOF after what is queued),
 * then AttachProcess follows it to its exit. */
static void test_background_stdin_and_attach(void **state)
{
    EXF_REQUIRE(*state);
    char *args[] = {"sh", "-c", "while read l; do echo got:$l; done; echo bye"};
    Sbx__V1__ExecRequest *r = exec_req("bg", args, 3);
    r->background = true;
    r->tag = "reader";
    r->stdin.data = (uint8_t *)"one\n";
    r->stdin.len = 4;
    sbx_ctx *ctx = sbx_ctx_new_test("t", false);
    ProtobufCMessage *resp = NULL;
    assert_int_equal(exh_run(ctx, &r->base, &resp, svc(state)), SBX_OK);
    assert_null(((Sbx__V1__RunResponse *)resp)->exit);
    sbx_ctx_free_test(ctx);
    assert_int_equal(send_input(state, "bg", "reader", "two\n"), SBX_OK);
    char out[256] = "";
    for (int i = 0; i < 100 && strcmp(out, "got:one\ngot:two\n") != 0; i++) {
        usleep(20000);
        attach(state, "bg", "reader", 0, false, out, sizeof out);
    }
    assert_string_equal(out, "got:one\ngot:two\n");

    ctx = sbx_ctx_new_test("t", false);
    Sbx__V1__ProcessSelector sel = SBX__V1__PROCESS_SELECTOR__INIT;
    sel.sel_case = SBX__V1__PROCESS_SELECTOR__SEL_TAG;
    sel.tag = "reader";
    Sbx__V1__CloseInputRequest c = SBX__V1__CLOSE_INPUT_REQUEST__INIT;
    c.project_id = "bg";
    c.process = &sel;
    assert_int_equal(exh_close_input(ctx, &c.base, &resp, svc(state)), SBX_OK);
    sbx_ctx_free_test(ctx);
    assert_int_equal(attach(state, "bg", "reader", 8, true, out, sizeof out),
                     SBX__V1__EXEC_EVENT__EVENT_EXITED);
    assert_string_equal(out, "got:two\nbye\n");
    assert_int_equal(send_input(state, "bg", "reader", "x"), SBX_FAILED_PRECONDITION);
    kill_project(state, "t", "bg");
}

/* A request_id retry replays the first result; the same id for another command is refused. */
static void test_request_id_replay(void **state)
{
    EXF_REQUIRE(*state);
    char *args[] = {"sh", "-c", "echo $$; echo once >> /tmp/count"};
    Sbx__V1__ExecRequest *r = exec_req("rid", args, 3);
    r->request_id = "req-1";
    ProtobufCMessage *resp = NULL;
    char first[32] = "";
    for (int i = 0; i < 2; i++) {
        sbx_ctx *ctx = sbx_ctx_new_test("t", false);
        assert_int_equal(exh_run(ctx, &r->base, &resp, svc(state)), SBX_OK);
        Sbx__V1__RunResponse *rr = (Sbx__V1__RunResponse *)resp;
        char got[32];
        snprintf(got, sizeof got, "%.*s", (int)rr->stdout.len, (const char *)rr->stdout.data);
        if (i == 0)
            snprintf(first, sizeof first, "%s", got);
        assert_string_equal(got, first);
        sbx_ctx_free_test(ctx);
    }
    /* the Exec replay streams the same output */
    sbx_ctx *ctx = sbx_ctx_new_test("t", false);
    assert_int_equal(exh_exec(ctx, &r->base, &resp, svc(state)), SBX_OK);
    ProtobufCMessage **sent;
    size_t n = sbx_ctx_test_sent(ctx, &sent, &sbx__v1__exec_event__descriptor);
    assert_true(n >= 3);
    Sbx__V1__ExecEvent *out = (Sbx__V1__ExecEvent *)sent[1];
    assert_int_equal(out->event_case, SBX__V1__EXEC_EVENT__EVENT_STDOUT);
    assert_int_equal(out->stdout->data.len, strlen(first));
    sbx_ctx_free_test(ctx);
    /* it ran once */
    char *cat[] = {"cat", "/tmp/count"};
    r = exec_req("rid", cat, 2);
    ctx = sbx_ctx_new_test("t", false);
    assert_int_equal(exh_run(ctx, &r->base, &resp, svc(state)), SBX_OK);
    assert_int_equal(((Sbx__V1__RunResponse *)resp)->stdout.len, 5);
    r->request_id = "req-1";
    assert_int_equal(exh_run(ctx, &r->base, &resp, svc(state)), SBX_ALREADY_EXISTS);
    sbx_ctx_free_test(ctx);
    kill_project(state, "t", "rid");
}

static int write_file(void **state, const ProtobufCMessage *first, const char *data)
{
    sbx_ctx *ctx = sbx_ctx_new_test("t", false);
    sbx_ctx_test_push_recv(ctx, first);
    Sbx__V1__WriteFileRequest d = SBX__V1__WRITE_FILE_REQUEST__INIT;
    d.part_case = SBX__V1__WRITE_FILE_REQUEST__PART_DATA;
    d.data.data = (uint8_t *)data;
    d.data.len = strlen(data);
    sbx_ctx_test_push_recv(ctx, &d.base);
    ProtobufCMessage *resp = NULL;
    int code = exh_write_file(ctx, NULL, &resp, svc(state));
    if (code == SBX_OK)
        assert_int_equal(((Sbx__V1__WriteFileResponse *)resp)->bytes_written, strlen(data));
    sbx_ctx_free_test(ctx);
    return code;
}

static void test_write_file_stream(void **state)
{
    EXF_REQUIRE(*state);
    Sbx__V1__WriteFileHeader h = SBX__V1__WRITE_FILE_HEADER__INIT;
    h.project_id = "files";
    h.path = "notes/a.txt";
    Sbx__V1__WriteFileRequest first = SBX__V1__WRITE_FILE_REQUEST__INIT;
    first.part_case = SBX__V1__WRITE_FILE_REQUEST__PART_HEADER;
    first.header = &h;
    assert_int_equal(write_file(state, &first.base, "hello"), SBX_OK);
    h.exclusive = true;
    assert_int_equal(write_file(state, &first.base, "again"), SBX_ALREADY_EXISTS);
    h.exclusive = false;
    h.mode = 010000;
    assert_int_equal(write_file(state, &first.base, "x"), SBX_INVALID_ARGUMENT);
    /* the first message must be the header */
    Sbx__V1__WriteFileRequest data = SBX__V1__WRITE_FILE_REQUEST__INIT;
    data.part_case = SBX__V1__WRITE_FILE_REQUEST__PART_DATA;
    assert_int_equal(write_file(state, &data.base, "x"), SBX_INVALID_ARGUMENT);
    kill_project(state, "t", "files");
}

/* UploadFiles of entries (path, type, content); the status. */
static int upload(void **state, bool replace, const char *const *paths, const int *types, size_t n,
                  const char **msg)
{
    sbx_ctx *ctx = sbx_ctx_new_test("t", false);
    Sbx__V1__UploadHeader h = SBX__V1__UPLOAD_HEADER__INIT;
    h.project_id = "up";
    h.dest_dir = "tree";
    h.replace = replace;
    Sbx__V1__UploadFilesRequest m = SBX__V1__UPLOAD_FILES_REQUEST__INIT;
    m.part_case = SBX__V1__UPLOAD_FILES_REQUEST__PART_HEADER;
    m.header = &h;
    sbx_ctx_test_push_recv(ctx, &m.base);
    for (size_t i = 0; i < n; i++) {
        Sbx__V1__UploadEntry e = SBX__V1__UPLOAD_ENTRY__INIT;
        e.path = (char *)paths[i];
        e.type = types[i];
        e.content.data = (uint8_t *)"data";
        e.content.len = types[i] == SBX__V1__FILE_TYPE__FILE_TYPE_FILE ? 4 : 0;
        e.symlink_target = types[i] == SBX__V1__FILE_TYPE__FILE_TYPE_SYMLINK ? "a" : "";
        Sbx__V1__UploadFilesRequest x = SBX__V1__UPLOAD_FILES_REQUEST__INIT;
        x.part_case = SBX__V1__UPLOAD_FILES_REQUEST__PART_ENTRY;
        x.entry = &e;
        sbx_ctx_test_push_recv(ctx, &x.base);
    }
    ProtobufCMessage *resp = NULL;
    int code = exh_upload_files(ctx, NULL, &resp, svc(state));
    static char last[512];
    snprintf(last, sizeof last, "%s", sbx_ctx_error_message(ctx));
    *msg = last;
    sbx_ctx_free_test(ctx);
    return code;
}

static void test_upload_checks(void **state)
{
    EXF_REQUIRE(*state);
    const int F = SBX__V1__FILE_TYPE__FILE_TYPE_FILE, D = SBX__V1__FILE_TYPE__FILE_TYPE_DIRECTORY,
              O = SBX__V1__FILE_TYPE__FILE_TYPE_OTHER;
    const char *msg;
    const char *ok[] = {"d", "d/a.txt", "b.txt"};
    const int okt[] = {D, F, F};
    assert_int_equal(upload(state, false, ok, okt, 3, &msg), SBX_OK);
    /* existing files without replace; directories merge */
    assert_int_equal(upload(state, false, ok, okt, 3, &msg), SBX_ALREADY_EXISTS);
    assert_non_null(strstr(msg, "entries[1].path"));
    const char *dir_only[] = {"d", "d/new.txt"};
    assert_int_equal(upload(state, false, dir_only, okt, 2, &msg), SBX_OK);
    assert_int_equal(upload(state, true, ok, okt, 3, &msg), SBX_OK);
    /* the entry checks, each named: ".", "..", absolute, empty, a bad type */
    const char *dot[] = {"a/./b"}, *up[] = {"../b.txt"}, *abs[] = {"/b.txt"}, *empty[] = {""};
    const int f1[] = {F}, o1[] = {O};
    assert_int_equal(upload(state, false, dot, f1, 1, &msg), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(msg, "entries[0].path"));
    assert_int_equal(upload(state, false, up, f1, 1, &msg), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(msg, "entries[0].path"));
    assert_int_equal(upload(state, false, abs, f1, 1, &msg), SBX_INVALID_ARGUMENT);
    assert_int_equal(upload(state, false, empty, f1, 1, &msg), SBX_INVALID_ARGUMENT);
    assert_int_equal(upload(state, false, ok + 2, o1, 1, &msg), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(msg, "entries[0].type"));
    kill_project(state, "t", "up");
}

static void test_idle_expiry(void **state)
{
    EXF_REQUIRE(*state);
    char id[80];
    assert_int_equal(create(state, "t", "idle", id), SBX_OK);
    sbx_ctx *ctx = sbx_ctx_new_test("t", false);
    Sbx__V1__SetSandboxTimeoutRequest t = SBX__V1__SET_SANDBOX_TIMEOUT_REQUEST__INIT;
    t.sandbox_id = id;
    t.idle_timeout_ms = 200;
    ProtobufCMessage *resp = NULL;
    assert_int_equal(exh_set_sandbox_timeout(ctx, &t.base, &resp, svc(state)), SBX_OK);
    sbx_ctx_free_test(ctx);
    int state_now = 0;
    for (int i = 0; i < 40 && state_now != SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED; i++) {
        usleep(100000);
        ctx = sbx_ctx_new_test("t", false);
        Sbx__V1__GetSandboxRequest g = SBX__V1__GET_SANDBOX_REQUEST__INIT;
        g.sandbox_id = id;
        assert_int_equal(exh_get_sandbox(ctx, &g.base, &resp, svc(state)), SBX_OK);
        state_now = ((Sbx__V1__Sandbox *)resp)->state;
        sbx_ctx_free_test(ctx);
    }
    assert_int_equal(state_now, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_tenants_and_idempotence, setup, teardown),
    cmocka_unit_test_setup_teardown(test_limit_and_uid_reuse, setup, teardown),
    cmocka_unit_test_setup_teardown(test_run_exec_and_validation, setup, teardown),
    cmocka_unit_test_setup_teardown(test_foreground_stdin, setup, teardown),
    cmocka_unit_test_setup_teardown(test_background_stdin_and_attach, setup, teardown),
    cmocka_unit_test_setup_teardown(test_request_id_replay, setup, teardown),
    cmocka_unit_test_setup_teardown(test_write_file_stream, setup, teardown),
    cmocka_unit_test_setup_teardown(test_upload_checks, setup, teardown),
    cmocka_unit_test_setup_teardown(test_idle_expiry, setup, teardown),
};

SBX_TEST_MAIN(tests)
