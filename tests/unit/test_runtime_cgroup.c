/* test_runtime_cgroup.c: per-sandbox cgroups (services/executor/runtime/cgroup.c) on this
 * host's real hierarchies: detection of cgroup v2 and of the v1 controllers (checked against
 * /proc/self/cgroup and the mounts), groups created and removed beneath the process's own
 * cgroup, limits written and read back (and changed by sbx_cg_update), a process moved into a
 * group, counted, and killed, and a stale group left by a dead executor (with a process in it)
 * killed and made again. Needs root; skips, saying why, without root or without any cgroup
 * hierarchy. Each test works under its own parent group "sbx-test-<pid>". */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup.h"
#include "test_main.h"

static const char *const ctrl_names[SBX_CG_NCTRL] = {"memory", "pids", "cpu"};

typedef struct {
    char parent[64];
    sbx_cg_env env;
    const char *skip; /* why this host cannot run the tests, or NULL */
} cgfx;

static bool usable(const sbx_cg_env *env)
{
    if (env->v2_own[0])
        return true;
    for (int c = 0; c < SBX_CG_NCTRL; c++)
        if (env->v1_own[c][0])
            return true;
    return false;
}

static int setup(void **state)
{
    cgfx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    *state = f;
    if (geteuid() != 0) {
        f->skip = "needs root (cgroup directories)";
        return 0;
    }
    snprintf(f->parent, sizeof f->parent, "sbx-test-%d", (int)getpid());
    assert_int_equal(sbx_cg_detect(&f->env, f->parent), 0);
    if (!usable(&f->env))
        f->skip = "no cgroup v2 or v1 memory/pids/cpu hierarchy is mounted here";
    return 0;
}

/* The fixture, or a skip (printing why) on a host that cannot run the tests. */
static cgfx *require(void **state)
{
    cgfx *f = *state;
    if (f->skip) {
        printf("SKIP: %s\n", f->skip);
        skip();
    }
    return f;
}

/* Removes the parent groups made under our own ones. */
static int teardown(void **state)
{
    cgfx *f = *state;
    char dir[PATH_MAX + 80];
    if (f->parent[0] && f->env.v2_own[0]) {
        snprintf(dir, sizeof dir, "%s/%s", f->env.v2_own, f->parent);
        rmdir(dir);
    }
    for (int c = 0; c < SBX_CG_NCTRL; c++)
        if (f->parent[0] && f->env.v1_own[c][0]) {
            snprintf(dir, sizeof dir, "%s/%s", f->env.v1_own[c], f->parent);
            rmdir(dir);
        }
    free(f);
    return 0;
}

/* The path of our cgroup on the /proc/self/cgroup line whose controller list has ctrl (NULL:
 * the "0::" line of cgroup v2), or false. */
static bool own_cgroup(const char *ctrl, char *out, size_t len)
{
    FILE *fp = fopen("/proc/self/cgroup", "re");
    assert_non_null(fp);
    char line[PATH_MAX + 128];
    bool found = false;
    while (!found && fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c1 = *c2 = '\0';
        char ctrls[256];
        snprintf(ctrls, sizeof ctrls, ",%s,", c1 + 1);
        char want[64];
        snprintf(want, sizeof want, ",%s,", ctrl ? ctrl : "");
        found = ctrl ? strstr(ctrls, want) != NULL : strcmp(line, "0") == 0 && !c1[1];
        if (found)
            snprintf(out, len, "%s", c2 + 1);
    }
    fclose(fp);
    return found;
}

static bool ends_with(const char *s, const char *suffix)
{
    if (strcmp(suffix, "/") == 0)
        return true; /* the hierarchy root: the mount point itself */
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static bool exists(const char *dir, const char *file)
{
    char path[PATH_MAX + 80];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    return access(path, F_OK) == 0;
}

static void detects_v2_and_v1_controllers(void **state)
{
    cgfx *f = require(state);
    const sbx_cg_env *env = &f->env;
    char own[PATH_MAX];
    if (env->v2_own[0]) {
        assert_true(own_cgroup(NULL, own, sizeof own));
        assert_true(ends_with(env->v2_own, own));
        assert_true(exists(env->v2_own, "cgroup.controllers"));
        char parent[PATH_MAX + 80];
        snprintf(parent, sizeof parent, "%s/%s", env->v2_own, f->parent);
        assert_int_equal(env->v2_kill, exists(parent, "cgroup.kill"));
    }
    for (int c = 0; c < SBX_CG_NCTRL; c++) {
        if (env->v2_ctrl & (1u << c)) {
            assert_int_equal(env->v1_own[c][0], '\0'); /* v2 wins where it has the controller */
            continue;
        }
        if (!env->v1_own[c][0]) {
            printf("# %s: neither delegated through cgroup v2 nor mounted as v1 here\n",
                   ctrl_names[c]);
            continue;
        }
        assert_true(own_cgroup(ctrl_names[c], own, sizeof own));
        assert_true(ends_with(env->v1_own[c], own));
        assert_true(exists(env->v1_own[c], "cgroup.procs"));
    }
}

/* The directory holding controller c of cg (*v2 says which version), or NULL. */
static const char *ctrl_dir(const sbx_cg_env *env, const sbx_cg *cg, int c, bool *v2)
{
    *v2 = !cg->v1[c][0] && cg->v2[0] && (env->v2_ctrl & (1u << c));
    return cg->v1[c][0] ? cg->v1[c] : *v2 ? cg->v2 : NULL;
}

static uint64_t read_u64(const char *dir, const char *file)
{
    char path[PATH_MAX + 80], buf[64] = "";
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *fp = fopen(path, "re");
    assert_non_null(fp);
    assert_non_null(fgets(buf, sizeof buf, fp));
    fclose(fp);
    if (strncmp(buf, "max", 3) == 0)
        return UINT64_MAX;
    return strtoull(buf, NULL, 10);
}

static void read_str(const char *dir, const char *file, char *buf, size_t len)
{
    char path[PATH_MAX + 80];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *fp = fopen(path, "re");
    assert_non_null(fp);
    assert_non_null(fgets(buf, (int)len, fp));
    buf[strcspn(buf, "\n")] = '\0';
    fclose(fp);
}

static bool has(const char *const *list, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], what) == 0)
            return true;
    return false;
}

static void creates_and_removes_groups_beneath_our_own(void **state)
{
    cgfx *f = require(state);
    sbx_cg_limits none = {0};
    sbx_cg cg;
    const char *enforced[8];
    size_t n = 0;
    assert_int_equal(sbx_cg_create(&f->env, f->parent, "g1", &none, 1000000, &cg, enforced, &n), 0);
    assert_int_equal(n, 0); /* nothing limited, nothing claimed */
    char want[PATH_MAX + 160];
    struct stat st;
    if (cg.v2[0]) {
        snprintf(want, sizeof want, "%s/%s/g1", f->env.v2_own, f->parent);
        assert_string_equal(cg.v2, want);
        assert_int_equal(stat(cg.v2, &st), 0);
        assert_int_equal(st.st_uid, 1000000); /* delegated to the sandbox's root */
        char procs[PATH_MAX + 80];
        snprintf(procs, sizeof procs, "%s/cgroup.procs", cg.v2);
        assert_int_equal(stat(procs, &st), 0);
        assert_int_equal(st.st_uid, 1000000);
    }
    for (int c = 0; c < SBX_CG_NCTRL; c++) {
        if (!cg.v1[c][0])
            continue;
        snprintf(want, sizeof want, "%s/%s/g1", f->env.v1_own[c], f->parent);
        assert_string_equal(cg.v1[c], want);
        assert_int_equal(stat(cg.v1[c], &st), 0);
        assert_true(S_ISDIR(st.st_mode));
    }
    sbx_cg copy = cg;
    assert_int_equal(sbx_cg_destroy(&cg), 0);
    assert_int_equal(cg.v2[0], '\0');
    if (copy.v2[0])
        assert_int_equal(access(copy.v2, F_OK), -1);
    for (int c = 0; c < SBX_CG_NCTRL; c++) {
        assert_int_equal(cg.v1[c][0], '\0');
        if (copy.v1[c][0])
            assert_int_equal(access(copy.v1[c], F_OK), -1);
    }
    sbx_cg zero;
    memset(&zero, 0, sizeof zero);
    assert_int_equal(sbx_cg_destroy(&zero), 0);
}

/* Checks the limit files of controller c against lim (0 = unlimited). */
static void expect_limits(const sbx_cg_env *env, const sbx_cg *cg, int c, const sbx_cg_limits *lim)
{
    bool v2;
    const char *dir = ctrl_dir(env, cg, c, &v2);
    char buf[64];
    if (c == SBX_CG_MEMORY) {
        uint64_t got = read_u64(dir, v2 ? "memory.max" : "memory.limit_in_bytes");
        if (lim->memory_bytes)
            assert_int_equal(got, lim->memory_bytes);
        else /* v1 shows "unlimited" as a huge page-aligned value */
            assert_true(got >= (1ull << 62));
    } else if (c == SBX_CG_PIDS) {
        assert_int_equal(read_u64(dir, "pids.max"), lim->pids ? lim->pids : UINT64_MAX);
    } else if (v2) {
        read_str(dir, "cpu.max", buf, sizeof buf);
        char want[64];
        if (lim->cpu_millis)
            snprintf(want, sizeof want, "%u 100000", lim->cpu_millis * 100);
        else
            snprintf(want, sizeof want, "max 100000");
        assert_string_equal(buf, want);
        assert_int_equal(read_u64(dir, "cpu.weight"), lim->cpu_weight ? lim->cpu_weight : 100);
    } else {
        read_str(dir, "cpu.cfs_quota_us", buf, sizeof buf);
        assert_int_equal(strtoll(buf, NULL, 10),
                         lim->cpu_millis ? (long long)lim->cpu_millis * 100 : -1);
        uint32_t w = lim->cpu_weight ? lim->cpu_weight : 100;
        assert_int_equal(read_u64(dir, "cpu.shares"), w * 1024 / 100);
    }
}

static void limits_are_written_and_read_back(void **state)
{
    cgfx *f = require(state);
    sbx_cg_limits lim = {
        .memory_bytes = 64ull << 20, .pids = 32, .cpu_millis = 500, .cpu_weight = 200};
    sbx_cg cg;
    const char *enforced[8];
    size_t n = 0;
    assert_int_equal(sbx_cg_create(&f->env, f->parent, "lim", &lim, 1000000, &cg, enforced, &n), 0);
    size_t checked = 0;
    for (int c = 0; c < SBX_CG_NCTRL; c++) {
        bool v2;
        if (!ctrl_dir(&f->env, &cg, c, &v2)) {
            printf("# %s: not available here, not checked\n", ctrl_names[c]);
            continue;
        }
        char name[32];
        snprintf(name, sizeof name, "%s:cgroup-%s", ctrl_names[c], v2 ? "v2" : "v1");
        assert_true(has(enforced, n, name));
        expect_limits(&f->env, &cg, c, &lim);
        checked++;
    }
    /* new limits: only what differs is written; 0 lifts a limit */
    sbx_cg_limits next = {.memory_bytes = 0, .pids = 64, .cpu_millis = 0, .cpu_weight = 0};
    size_t n2 = 0;
    assert_int_equal(sbx_cg_update(&f->env, &cg, &lim, &next, enforced, &n2), 0);
    for (int c = 0; c < SBX_CG_NCTRL; c++) {
        bool v2;
        if (ctrl_dir(&f->env, &cg, c, &v2))
            expect_limits(&f->env, &cg, c, &next);
    }
    assert_int_equal(sbx_cg_destroy(&cg), 0);
    if (checked == 0) {
        printf("SKIP: no memory, pids or cpu controller is usable here\n");
        skip();
    }
}

/* A child that waits to be killed. */
static pid_t sleeper(void)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        for (;;)
            pause();
    }
    return pid;
}

/* Is pid listed in dir/cgroup.procs? */
static bool listed(const char *dir, pid_t pid)
{
    char path[PATH_MAX + 80];
    snprintf(path, sizeof path, "%s/cgroup.procs", dir);
    FILE *fp = fopen(path, "re");
    if (!fp)
        return false;
    int p;
    bool found = false;
    while (!found && fscanf(fp, "%d", &p) == 1)
        found = p == pid;
    fclose(fp);
    return found;
}

static void expect_killed(pid_t pid)
{
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
}

static void attached_processes_are_counted_and_killed(void **state)
{
    cgfx *f = require(state);
    sbx_cg_limits lim = {.pids = 16};
    sbx_cg cg;
    const char *enforced[8];
    size_t n = 0;
    assert_int_equal(sbx_cg_create(&f->env, f->parent, "kill", &lim, 1000000, &cg, enforced, &n),
                     0);
    pid_t pid = sleeper();
    assert_int_equal(sbx_cg_attach(&cg, pid), 0);
    if (cg.v2[0])
        assert_true(listed(cg.v2, pid));
    for (int c = 0; c < SBX_CG_NCTRL; c++)
        if (cg.v1[c][0])
            assert_true(listed(cg.v1[c], pid));
    bool v2;
    if (ctrl_dir(&f->env, &cg, SBX_CG_PIDS, &v2)) {
        sbx_cg_stats st;
        assert_int_equal(sbx_cg_stats_read(&cg, &st), 0);
        assert_int_equal(st.pids_current, 1);
    }
    assert_int_equal(sbx_cg_kill(&cg), 0);
    expect_killed(pid);
    assert_int_equal(sbx_cg_destroy(&cg), 0);
}

static void a_stale_group_is_killed_and_made_again(void **state)
{
    cgfx *f = require(state);
    sbx_cg_limits none = {0};
    sbx_cg old, fresh;
    const char *enforced[8];
    size_t n = 0;
    assert_int_equal(sbx_cg_create(&f->env, f->parent, "stale", &none, 1000000, &old, enforced, &n),
                     0);
    pid_t pid = sleeper();
    assert_int_equal(sbx_cg_attach(&old, pid), 0);
    /* an executor that died left "stale" behind with a process in it: the next create of the
       same id kills the process, removes the group and makes it again */
    n = 0;
    assert_int_equal(
        sbx_cg_create(&f->env, f->parent, "stale", &none, 1000000, &fresh, enforced, &n), 0);
    expect_killed(pid);
    assert_string_equal(fresh.v2, old.v2);
    if (fresh.v2[0])
        assert_false(listed(fresh.v2, pid));
    assert_int_equal(sbx_cg_destroy(&fresh), 0);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(detects_v2_and_v1_controllers, setup, teardown),
    cmocka_unit_test_setup_teardown(creates_and_removes_groups_beneath_our_own, setup, teardown),
    cmocka_unit_test_setup_teardown(limits_are_written_and_read_back, setup, teardown),
    cmocka_unit_test_setup_teardown(attached_processes_are_counted_and_killed, setup, teardown),
    cmocka_unit_test_setup_teardown(a_stale_group_is_killed_and_made_again, setup, teardown),
};

SBX_TEST_MAIN(tests)
