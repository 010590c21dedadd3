/* test_core_registry.c: the registry of sandboxes (core/registry*.c) on real sandboxes: create
 * and lookup (one live sandbox per project, by id and by project, tenants isolated, the
 * address rules, stopped sandboxes), the sandbox limit with uid-block reuse, limits and
 * templates refused by name, idle expiry (not while a use is held or a command runs), and
 * KillSandbox with and without wiping the home, and the table on disk: after a restart the
 * previous run's sandboxes are STOPPED (by id and in listings), an unreadable entry is dropped.
 * Needs root; skips with the reason otherwise. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "executor_fixture.h"
#include "status.h"

static char err[512];

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

static sbx_reg *reg(void **state)
{
    return ((exf *)*state)->reg;
}

static int create(void **state, const char *tenant, const sbx_box_params *p, sbx_box **b,
                  bool *created)
{
    return sbx_reg_create(reg(state), tenant, p, b, created, err, sizeof err);
}

/* KillSandbox as the handler does it: with a reference, no use (the teardown waits for the
 * last use). */
static void kill_box(void **state, sbx_box *used, bool wipe)
{
    bool killed;
    sbx_box_ref(used);
    sbx_box_release(used);
    assert_int_equal(sbx_reg_kill(reg(state), used, wipe, &killed, err, sizeof err), SBX_OK);
    assert_true(killed);
    sbx_box_unref(used);
}

static sbx_box_state state_of(sbx_box *b)
{
    sbx_box_snap sn;
    sbx_box_snapshot(b, &sn);
    return sn.state;
}

static void test_create_and_lookup(void **state)
{
    EXF_REQUIRE(*state);
    exv_kv env[] = {{"GREETING", "hi"}};
    exv_kv meta[] = {{"owner", "me"}};
    sbx_box_params p = {
        .project_id = "proj", .env = env, .n_env = 1, .metadata = meta, .n_metadata = 1};
    sbx_box *b, *b2;
    bool created;
    assert_int_equal(create(state, "alice", &p, &b, &created), SBX_OK);
    assert_true(created);
    assert_true(sbx_box_running(b));
    assert_non_null(sbx_box_sandbox(b));
    assert_int_equal(strncmp(sbx_box_id(b), "sb-", 3), 0);
    const char *const *kv;
    assert_int_equal(sbx_box_env(b, &kv), 1);
    assert_string_equal(kv[0], "GREETING=hi");
    /* the project's live sandbox, whatever the params */
    assert_int_equal(create(state, "alice", &(sbx_box_params){.project_id = "proj"}, &b2, &created),
                     SBX_OK);
    assert_false(created);
    assert_ptr_equal(b2, b);
    sbx_box_release(b2);
    char id[80];
    snprintf(id, sizeof id, "%s", sbx_box_id(b));
    /* by id and by project; another tenant sees nothing */
    assert_int_equal(sbx_reg_get(reg(state), "alice", id, NULL, REG_USE, &b2, err, sizeof err),
                     SBX_OK);
    assert_ptr_equal(b2, b);
    sbx_box_release(b2);
    assert_int_equal(sbx_reg_get(reg(state), "alice", NULL, "proj", REG_ANY, &b2, err, sizeof err),
                     SBX_OK);
    sbx_box_unref(b2);
    assert_int_equal(sbx_reg_get(reg(state), "bob", id, NULL, REG_ANY, &b2, err, sizeof err),
                     SBX_NOT_FOUND);
    assert_int_equal(sbx_reg_get(reg(state), "bob", NULL, "proj", REG_USE, &b2, err, sizeof err),
                     SBX_NOT_FOUND);
    assert_int_equal(sbx_reg_get(reg(state), "alice", id, "other", REG_ANY, &b2, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "does not belong to project other"));
    sbx_box **v;
    assert_int_equal(sbx_reg_list(reg(state), "alice", "", false, &v), 1);
    sbx_reg_list_free(v, 1);
    /* stopped: still found by id (REG_ANY), refused for use; the project's next call starts a
       new sandbox */
    bool killed;
    sbx_box_release(b);
    assert_int_equal(sbx_reg_get(reg(state), "alice", id, NULL, REG_ANY, &b, err, sizeof err),
                     SBX_OK);
    assert_int_equal(sbx_reg_kill(reg(state), b, false, &killed, err, sizeof err), SBX_OK);
    assert_true(killed);
    assert_int_equal(state_of(b), SBX_BOX_STOPPED);
    assert_int_equal(sbx_reg_get(reg(state), "alice", id, NULL, REG_USE, &b2, err, sizeof err),
                     SBX_FAILED_PRECONDITION);
    assert_int_equal(sbx_reg_get(reg(state), "alice", NULL, "proj", REG_USE, &b2, err, sizeof err),
                     SBX_NOT_FOUND);
    assert_int_equal(sbx_reg_list(reg(state), "alice", "", true, &v), 1);
    sbx_reg_list_free(v, 1);
    assert_int_equal(
        sbx_reg_get(reg(state), "alice", NULL, "proj", REG_CREATE, &b2, err, sizeof err), SBX_OK);
    assert_string_not_equal(sbx_box_id(b2), id);
    sbx_box_release(b2);
    sbx_box_unref(b);
}

static void test_limits_and_uid_reuse(void **state)
{
    EXF_REQUIRE(*state);
    sbx_box *a, *b, *c;
    bool created;
    assert_int_equal(create(state, "t", &(sbx_box_params){.project_id = "one"}, &a, &created),
                     SBX_OK);
    assert_int_equal(create(state, "t", &(sbx_box_params){.project_id = "two"}, &b, &created),
                     SBX_OK);
    assert_int_equal(create(state, "t", &(sbx_box_params){.project_id = "three"}, &c, &created),
                     SBX_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(err, "--max-sandboxes"));
    kill_box(state, a, false);
    /* the stopped sandbox's uid block serves the next one */
    assert_int_equal(create(state, "t", &(sbx_box_params){.project_id = "three"}, &c, &created),
                     SBX_OK);
    sbx_box_release(b);
    sbx_box_release(c);
    /* what a server does not allow is refused by name */
    Sbx__V1__SandboxLimits big = SBX__V1__SANDBOX_LIMITS__INIT;
    big.memory_bytes = 1LL << 40;
    assert_int_equal(
        create(state, "t", &(sbx_box_params){.project_id = "four", .limits = &big}, &a, &created),
        SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "memory_bytes"));
    assert_int_equal(create(state, "t",
                            &(sbx_box_params){.project_id = "four", .template_name = "nope"}, &a,
                            &created),
                     SBX_NOT_FOUND);
    assert_non_null(strstr(err, "template"));
}

/* Waits up to ms for the box to stop. */
static bool stops_within(sbx_box *b, int ms)
{
    for (int i = 0; i < ms / 20 && state_of(b) != SBX_BOX_STOPPED; i++)
        usleep(20000);
    return state_of(b) == SBX_BOX_STOPPED;
}

static void test_idle_expiry(void **state)
{
    EXF_REQUIRE(*state);
    sbx_box *b;
    bool created;
    sbx_box_params p = {.project_id = "idle", .idle_timeout_ms = 100};
    assert_int_equal(create(state, "t", &p, &b, &created), SBX_OK);
    /* a held use is not idle */
    usleep(400000);
    assert_int_equal(state_of(b), SBX_BOX_RUNNING);
    sbx_box_snap sn;
    sbx_box_snapshot(b, &sn);
    assert_int_equal(sn.idle_timeout_ms, 100);
    /* a running command is not idle either, though no use is held */
    sbx_box_ref(b);
    Sbx__V1__ExecRequest r = SBX__V1__EXEC_REQUEST__INIT;
    r.command_case = SBX__V1__EXEC_REQUEST__COMMAND_SHELL;
    r.shell = "sleep 1";
    r.background = true;
    sbx_exe_spec spec = {.req = &r, .fingerprint = "", .cap = 1000};
    sbx_exe *e, *ex;
    assert_int_equal(sbx_exe_begin(b, &spec, &e, &ex, err, sizeof err), SBX_OK);
    const char *argv[] = {"/bin/sh", "-c", "sleep 1", NULL};
    sbx_proc_req pr = {.spawn = {.argv = argv}};
    assert_int_equal(sbx_exe_spawn(b, e, &pr, err, sizeof err), SBX_OK);
    sbx_exe_follow_in_background(e);
    sbx_box_release(b);
    usleep(500000);
    assert_int_equal(state_of(b), SBX_BOX_RUNNING);
    assert_int_equal(sbx_exe_wait_done(e, 5000), 0);
    sbx_exe_unref(e);
    assert_true(stops_within(b, 3000));
    sbx_box_unref(b);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void test_kill_keeps_or_wipes_home(void **state)
{
    EXF_REQUIRE(*state);
    exf *f = *state;
    char home[256];
    snprintf(home, sizeof home, "%s/sandboxes/t/keep/home", f->dir);
    sbx_box *b;
    bool created;
    assert_int_equal(create(state, "t", &(sbx_box_params){.project_id = "keep"}, &b, &created),
                     SBX_OK);
    assert_true(exists(home));
    kill_box(state, b, false);
    assert_true(exists(home)); /* the next sandbox of the project finds its files */
    assert_int_equal(create(state, "t", &(sbx_box_params){.project_id = "keep"}, &b, &created),
                     SBX_OK);
    assert_true(created);
    kill_box(state, b, true);
    assert_false(exists(home));
    /* the project has no live sandbox now */
    assert_int_equal(sbx_reg_get(reg(state), "t", NULL, "keep", REG_USE, &b, err, sizeof err),
                     SBX_NOT_FOUND);
}

/* A restart on the same data dir (the registry freed as at shutdown, or its entries left as by
 * a kill -9) shows the sandboxes STOPPED, with their project, clocks and limits. */
static void test_table_after_restart(void **state)
{
    EXF_REQUIRE(*state);
    exf *f = *state;
    sbx_box *b;
    bool created;
    exv_kv meta[] = {{"owner", "me too"}, {"empty", ""}};
    sbx_box_params p = {
        .project_id = "kept", .template_name = "", .metadata = meta, .n_metadata = 2};
    assert_int_equal(create(state, "t", &p, &b, &created), SBX_OK);
    char id[80];
    snprintf(id, sizeof id, "%s", sbx_box_id(b));
    sbx_box_snap before;
    sbx_box_snapshot(b, &before);
    int64_t mem = sbx_box_limits(b)->memory_bytes;
    sbx_box_release(b);
    char path[200], junk[200];
    snprintf(path, sizeof path, "%s/boxes/%s", f->dir, id);
    snprintf(junk, sizeof junk, "%s/boxes/sb-junk", f->dir);
    FILE *j = fopen(junk, "w");
    assert_non_null(j);
    fputs("not an entry\n", j);
    fclose(j);
    assert_int_equal(access(path, F_OK), 0);
    assert_int_equal(exf_restart_registry(f), 0);
    assert_int_equal(sbx_reg_get(reg(state), "t", id, NULL, REG_ANY, &b, err, sizeof err), SBX_OK);
    sbx_box_snap after;
    sbx_box_snapshot(b, &after);
    assert_int_equal(after.state, SBX_BOX_STOPPED);
    assert_int_equal(after.created_ms, before.created_ms);
    assert_string_equal(sbx_box_project(b), "kept");
    assert_int_equal(sbx_box_limits(b)->memory_bytes, mem);
    const char *const *mk, *const *mv;
    assert_int_equal(sbx_box_metadata(b, &mk, &mv), 2);
    assert_string_equal(mk[0], "owner");
    assert_string_equal(mv[0], "me too");
    assert_string_equal(mk[1], "empty");
    assert_string_equal(mv[1], "");
    sbx_box_unref(b);
    /* another tenant still cannot see it; the project has no live sandbox */
    assert_int_equal(sbx_reg_get(reg(state), "u", id, NULL, REG_ANY, &b, err, sizeof err),
                     SBX_NOT_FOUND);
    assert_int_equal(sbx_reg_get(reg(state), "t", NULL, "kept", REG_USE, &b, err, sizeof err),
                     SBX_NOT_FOUND);
    sbx_box **v;
    size_t n = sbx_reg_list(reg(state), "t", "", true, &v);
    assert_int_equal(n, 1);
    sbx_reg_list_free(v, n);
    assert_int_not_equal(access(junk, F_OK), 0); /* dropped */
    /* the project starts again: a new sandbox beside the stopped one */
    assert_int_equal(create(state, "t", &p, &b, &created), SBX_OK);
    assert_true(created);
    assert_string_not_equal(sbx_box_id(b), id);
    sbx_box_release(b);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_create_and_lookup, setup, teardown),
    cmocka_unit_test_setup_teardown(test_limits_and_uid_reuse, setup, teardown),
    cmocka_unit_test_setup_teardown(test_idle_expiry, setup, teardown),
    cmocka_unit_test_setup_teardown(test_kill_keeps_or_wipes_home, setup, teardown),
    cmocka_unit_test_setup_teardown(test_table_after_restart, setup, teardown),
};

SBX_TEST_MAIN(tests)
