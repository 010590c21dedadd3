/* test_runtime_pool.c: the warm pool of sandbox inits (runtime/pool.c, sbx_sandbox_pool_*): claims
 * give working sandboxes with the pool's uid blocks, the pool refills, two claimed sandboxes do
 * not see each other's homes, uid blocks are distinct, limits and tmpfs sizes are applied at
 * claim, parked inits are not sandboxes, die with the executor (kill -9) and are destroyed by
 * sbx_sandbox_pool_shutdown. No timing assertions (bench_sandbox_pool measures). */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "cgroup.h"
#include "sandbox_fixture.h"

#define POOL_SLOTS 8u

static uint32_t pool_first(void)
{
    /* above every range the other sandbox tests pass as uid_base, one 8-block range per pid */
    return 3400000000u + ((uint32_t)getpid() % 1700u) * POOL_SLOTS * 65536u;
}

static sbx_sandbox_limits pool_limits(void)
{
    sbx_sandbox_limits l = {.memory_bytes = 512ull << 20, .pids = 256};
    return l;
}

static int pool_start(size_t size)
{
    sbx_sandbox_pool_cfg pc = {.size = size,
                               .init_path = SBX_INIT_BUILD_PATH,
                               .uid_first = pool_first(),
                               .uid_count = POOL_SLOTS * 65536u,
                               .limits = pool_limits()};
    int rc = sbx_sandbox_pool_config(&pc);
    if (rc < 0)
        return rc;
    return sbx_sandbox_pool_wait(size, 60000);
}

/* Like tsbx_open, with uid_base 0 (the pool chooses) and optional limits. */
static int pool_open(tsbx *t, const sbx_sandbox_limits *lim, const char *parent)
{
    static int seq;
    int n = ++seq;
    memset(t, 0, sizeof *t);
    snprintf(t->id, sizeof t->id, "p-%d-%d", (int)getpid(), n);
    snprintf(t->dir, sizeof t->dir, "/tmp/sbx-pool-%d-%d", (int)getpid(), n);
    snprintf(t->home, sizeof t->home, "%s/home", t->dir);
    sbx_sandbox_cfg cfg = {.id = t->id,
                           .init_path = SBX_INIT_BUILD_PATH,
                           .home_dir = t->home,
                           .cgroup_parent = parent,
                           .limits = lim ? *lim : pool_limits()};
    int rc = sbx_sandbox_create(&cfg, &t->sb);
    if (rc < 0)
        return rc;
    return sbx_proctab_create(t->sb, NULL, &t->tab);
}

static bool in_pool(uint32_t base)
{
    return base >= pool_first() && base < pool_first() + POOL_SLOTS * 65536u &&
           (base - pool_first()) % 65536u == 0;
}

static bool has_enforced(sbx_sandbox *sb, const char *what)
{
    const char *const *l;
    size_t n = sbx_sandbox_enforced(sb, &l);
    for (size_t i = 0; i < n; i++)
        if (strcmp(l[i], what) == 0)
            return true;
    return false;
}

static bool pid_gone(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return true;
    bool zombie = fgets(buf, sizeof buf, f) && strstr(buf, ") Z ");
    fclose(f);
    return zombie;
}

static void test_pool_requires_config(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    /* uid_base 0 without a pool has no range to choose from */
    sbx_sandbox *sb = NULL;
    sbx_sandbox_cfg cfg = {.id = "nopool", .init_path = SBX_INIT_BUILD_PATH, .uid_base = 0};
    assert_int_equal(sbx_sandbox_create(&cfg, &sb), -EINVAL);
    assert_null(sb);
    sbx_sandbox_pool_cfg pc = {
        .size = 1, .init_path = SBX_INIT_BUILD_PATH, .uid_first = 1000, .uid_count = 65536};
    assert_int_equal(sbx_sandbox_pool_config(&pc), -EINVAL); /* below 65536 */
    pc.uid_first = pool_first();
    pc.uid_count = 1000; /* less than one block */
    assert_int_equal(sbx_sandbox_pool_config(&pc), -EINVAL);
}

static void test_pool_claim(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    assert_int_equal(pool_start(2), 0);
    /* parked inits are not sandboxes */
    assert_int_equal(sbx_sandbox_count(), 0);
    pid_t parked[8];
    assert_int_equal(sbx_sandbox_pool_pids(parked, 8), 2);
    tsbx t;
    tres r;
    assert_int_equal(pool_open(&t, NULL, NULL), 0);
    assert_int_equal(sbx_sandbox_count(), 1);
    uint32_t base = sbx_sandbox_uid_base(t.sb);
    assert_true(in_pool(base));
    assert_int_equal(sbx_sandbox_user_uid(t.sb), base + 1000);
    /* the claimed init is one of the parked ones */
    pid_t ip = sbx_sandbox_init_pid(t.sb);
    assert_true(ip == parked[0] || ip == parked[1]);
    /* the same isolation as a cold create */
    assert_true(has_enforced(t.sb, "userns"));
    assert_true(has_enforced(t.sb, "pid-ns"));
    assert_true(has_enforced(t.sb, "mount-ns"));
    assert_true(has_enforced(t.sb, "net:loopback-only"));
    assert_true(has_enforced(t.sb, "seccomp"));
    assert_true(has_enforced(t.sb, "memory:cgroup-v1") || has_enforced(t.sb, "memory:cgroup-v2"));
    assert_true(has_enforced(t.sb, "pids:cgroup-v1") || has_enforced(t.sb, "pids:cgroup-v2"));
    assert_true(has_enforced(t.sb, "rlimits:nofile,core,fsize"));
    assert_int_equal(
        tsbx_sh(&t, "echo $(id -u):$(id -g):$(id -un):$HOME:$(pwd):$(hostname)", 10000, &r), 0);
    char want[256];
    snprintf(want, sizeof want, "1000:1000:user:/home/user:/home/user:%s\n", t.id);
    assert_string_equal(r.out, want);
    assert_int_equal(tsbx_sh(&t,
                             "grep -E '^(CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' "
                             "/proc/self/status | tr -s '\\t' ' '",
                             10000, &r),
                     0);
    assert_string_equal(r.out, "CapEff: 0000000000000000\nCapBnd: 0000000000000000\n"
                               "CapAmb: 0000000000000000\nNoNewPrivs: 1\nSeccomp: 2\n");
    /* the root is read-only, the home writable and bound from the host dir */
    assert_int_equal(
        tsbx_sh(&t, "touch /x 2>/dev/null || echo ro; echo hi > f && cat f", 10000, &r), 0);
    assert_string_equal(r.out, "ro\nhi\n");
    char path[400];
    snprintf(path, sizeof path, "%s/f", t.home);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_uid, base + 1000);
    /* the host is not visible */
    assert_int_equal(tsbx_sh(&t, "ls /tmp/sbx-pool-* 2>&1 | head -1; ps -e | wc -l", 10000, &r), 0);
    assert_non_null(strstr(r.out, "No such file"));
    /* the home bind does not propagate mounts from the host */
    assert_int_equal(tsbx_sh(&t,
                             "grep -c ' /home/user ' /proc/self/mountinfo; "
                             "grep ' /home/user ' /proc/self/mountinfo | grep -c shared:",
                             10000, &r),
                     0);
    assert_string_equal(r.out, "1\n0\n");
    tsbx_close(&t);
    assert_int_equal(sbx_sandbox_count(), 0);
    sbx_sandbox_pool_shutdown();
}

static void test_pool_refill(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    assert_int_equal(pool_start(2), 0);
    tsbx a, b;
    assert_int_equal(pool_open(&a, NULL, NULL), 0);
    assert_int_equal(pool_open(&b, NULL, NULL), 0);
    /* both were parked; the pool makes two more in the background */
    assert_int_equal(sbx_sandbox_pool_wait(2, 60000), 0);
    sbx_sandbox_pool_stats st;
    assert_int_equal(sbx_sandbox_pool_stats_get(&st), 0);
    assert_int_equal(st.target, 2);
    assert_int_equal(st.ready, 2);
    assert_true(st.claimed >= 2);
    assert_true(st.built >= 4);
    assert_int_equal(st.slots_used, 4);
    assert_int_equal(sbx_sandbox_count(), 2);
    tsbx_close(&a);
    tsbx_close(&b);
    assert_int_equal(sbx_sandbox_pool_stats_get(&st), 0);
    assert_int_equal(st.slots_used, 2); /* the destroyed ones gave their blocks back */
    sbx_sandbox_pool_shutdown();
}

static void test_pool_home_isolation(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    assert_int_equal(pool_start(2), 0);
    tsbx a, b;
    tres r;
    assert_int_equal(pool_open(&a, NULL, NULL), 0);
    assert_int_equal(pool_open(&b, NULL, NULL), 0);
    assert_int_equal(tsbx_sh(&a, "echo secret-a > mine && ls", 10000, &r), 0);
    assert_string_equal(r.out, "mine\n");
    /* b's home is its own dir: empty, and a's file is nowhere in b */
    assert_int_equal(tsbx_sh(&b,
                             "ls -A /home/user; echo mine-b > mine; "
                             "grep -rs secret-a /home /tmp /run 2>/dev/null | wc -l",
                             10000, &r),
                     0);
    assert_string_equal(r.out, "0\n");
    assert_int_equal(tsbx_sh(&a, "cat mine", 10000, &r), 0);
    assert_string_equal(r.out, "secret-a\n");
    /* on the host each file belongs to its own sandbox's user */
    char pa[400], pb[400];
    snprintf(pa, sizeof pa, "%s/mine", a.home);
    snprintf(pb, sizeof pb, "%s/mine", b.home);
    struct stat sa, sb;
    assert_int_equal(stat(pa, &sa), 0);
    assert_int_equal(stat(pb, &sb), 0);
    assert_int_equal(sa.st_uid, sbx_sandbox_user_uid(a.sb));
    assert_int_equal(sb.st_uid, sbx_sandbox_user_uid(b.sb));
    assert_int_not_equal(sa.st_uid, sb.st_uid);
    /* nor by its host path */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cat %s/mine 2>&1", b.home);
    assert_int_equal(tsbx_sh(&a, cmd, 10000, &r), 0);
    assert_null(strstr(r.out, "mine-b"));
    assert_non_null(strstr(r.out, "No such file"));
    /* a process of a cannot signal b's processes (other pid namespace, other uid) */
    assert_int_equal(tsbx_sh(&b, "sleep 30 & echo $!", 10000, &r), 0);
    assert_int_equal(tsbx_sh(&a, "kill -0 -1 2>&1; ps -e -o comm= | grep -c sleep", 10000, &r), 0);
    assert_non_null(strstr(r.out, "0\n"));
    tsbx_close(&a);
    tsbx_close(&b);
    sbx_sandbox_pool_shutdown();
}

static void test_pool_uid_ranges_distinct(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    assert_int_equal(pool_start(2), 0);
    tsbx t[4];
    uint32_t bases[4];
    for (int i = 0; i < 4; i++) { /* more than the pool holds: later ones may go cold */
        assert_int_equal(pool_open(&t[i], NULL, NULL), 0);
        bases[i] = sbx_sandbox_uid_base(t[i].sb);
        assert_true(in_pool(bases[i]));
        for (int j = 0; j < i; j++)
            assert_int_not_equal(bases[i], bases[j]);
    }
    pid_t parked[8];
    size_t np = sbx_sandbox_pool_pids(parked, 8);
    for (int i = 0; i < 4; i++)
        for (size_t k = 0; k < np; k++)
            assert_int_not_equal(sbx_sandbox_init_pid(t[i].sb), parked[k]);
    /* a caller's own uid_base may not overlap the pool's range */
    sbx_sandbox *sb = NULL;
    sbx_sandbox_cfg cfg = {
        .id = "overlap", .init_path = SBX_INIT_BUILD_PATH, .uid_base = pool_first() + 65536u};
    assert_int_equal(sbx_sandbox_create(&cfg, &sb), -EINVAL);
    cfg.uid_base = pool_first() - 1000; /* straddles its start */
    assert_int_equal(sbx_sandbox_create(&cfg, &sb), -EINVAL);
    /* a duplicate id is refused without using up a parked init */
    sbx_sandbox_cfg dup = {.id = t[0].id, .init_path = SBX_INIT_BUILD_PATH};
    sbx_sandbox_pool_wait(1, 60000);
    sbx_sandbox_pool_stats before, after;
    sbx_sandbox_pool_stats_get(&before);
    assert_int_equal(sbx_sandbox_create(&dup, &sb), -EEXIST);
    sbx_sandbox_pool_stats_get(&after);
    assert_int_equal(after.claimed, before.claimed);
    /* the range is fixed while blocks are in use */
    sbx_sandbox_pool_cfg pc = {.size = 2,
                               .init_path = SBX_INIT_BUILD_PATH,
                               .uid_first = pool_first() + 65536u,
                               .uid_count = 65536u};
    assert_int_equal(sbx_sandbox_pool_config(&pc), -EBUSY);
    for (int i = 0; i < 4; i++)
        tsbx_close(&t[i]);
    sbx_sandbox_pool_shutdown();
}

static void test_pool_limits_at_claim(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    assert_int_equal(pool_start(1), 0);
    /* other limits than the pool's: written at claim */
    sbx_sandbox_limits lim = {.memory_bytes = 96ull << 20, .pids = 48, .tmp_bytes = 8u << 20};
    tsbx t;
    tres r;
    assert_int_equal(pool_open(&t, &lim, NULL), 0);
    sbx_sandbox_pool_stats st;
    sbx_sandbox_pool_stats_get(&st);
    assert_int_equal(st.claimed, 1);
    assert_int_equal(tsbx_sh(&t, "df -k /tmp /dev/shm | tail -n 2 | awk '{print $2}'", 10000, &r),
                     0);
    assert_string_equal(r.out, "8192\n8192\n");
    sbx_cg_env env;
    sbx_cg_detect(&env, "sbx");
    char path[PATH_MAX + 128], buf[64];
    if (env.v1_own[SBX_CG_PIDS][0]) {
        snprintf(path, sizeof path, "%.3000s/sbx/@pool-%u/pids.max", env.v1_own[SBX_CG_PIDS],
                 sbx_sandbox_uid_base(t.sb));
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        assert_non_null(fgets(buf, sizeof buf, f));
        fclose(f);
        assert_string_equal(buf, "48\n");
    }
    if (env.v1_own[SBX_CG_MEMORY][0]) {
        snprintf(path, sizeof path, "%.3000s/sbx/@pool-%u/memory.limit_in_bytes",
                 env.v1_own[SBX_CG_MEMORY], sbx_sandbox_uid_base(t.sb));
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        assert_non_null(fgets(buf, sizeof buf, f));
        fclose(f);
        assert_int_equal(strtoull(buf, NULL, 10), 96ull << 20);
    }
    /* pids.max is enforced: more than 48 processes cannot be started */
    assert_int_equal(tsbx_sh(&t,
                             "for i in $(seq 60); do sleep 5 & done 2>/dev/null; "
                             "ps -e -o comm= | grep -c sleep",
                             20000, &r),
                     0);
    assert_true(strtol(r.out, NULL, 10) < 48);
    tsbx_close(&t);
    /* no limits at all: the pool's are taken back out */
    sbx_sandbox_pool_wait(1, 60000);
    sbx_sandbox_limits none = {0};
    assert_int_equal(pool_open(&t, &none, NULL), 0);
    if (env.v1_own[SBX_CG_PIDS][0]) {
        snprintf(path, sizeof path, "%.3000s/sbx/@pool-%u/pids.max", env.v1_own[SBX_CG_PIDS],
                 sbx_sandbox_uid_base(t.sb));
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        assert_non_null(fgets(buf, sizeof buf, f));
        fclose(f);
        assert_string_equal(buf, "max\n");
    }
    assert_false(has_enforced(t.sb, "pids:cgroup-v1") || has_enforced(t.sb, "pids:cgroup-v2"));
    tsbx_close(&t);
    sbx_sandbox_pool_shutdown();
}

static void test_pool_cold_fallback(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    assert_int_equal(pool_start(1), 0);
    /* another cgroup parent than the pool's: a cold create, still in the pool's range */
    tsbx t;
    tres r;
    assert_int_equal(pool_open(&t, NULL, "sbx-pooltest"), 0);
    sbx_sandbox_pool_stats st;
    sbx_sandbox_pool_stats_get(&st);
    assert_int_equal(st.claimed, 0);
    assert_int_equal(st.cold_creates, 1);
    assert_true(in_pool(sbx_sandbox_uid_base(t.sb)));
    assert_int_equal(tsbx_sh(&t, "id -u", 10000, &r), 0);
    assert_string_equal(r.out, "1000\n");
    tsbx_close(&t);
    sbx_sandbox_pool_shutdown();
}

static void test_pool_shutdown_destroys_parked(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    assert_int_equal(pool_start(3), 0);
    pid_t parked[8];
    size_t n = sbx_sandbox_pool_pids(parked, 8);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++)
        assert_false(pid_gone(parked[i]));
    tsbx t;
    assert_int_equal(pool_open(&t, NULL, NULL), 0); /* a claimed one survives the shutdown */
    assert_int_equal(sbx_sandbox_pool_wait(3, 60000), 0);
    n = sbx_sandbox_pool_pids(parked, 8);
    sbx_sandbox_pool_shutdown();
    for (size_t i = 0; i < n; i++)
        assert_true(pid_gone(parked[i]));
    sbx_sandbox_pool_stats st;
    sbx_sandbox_pool_stats_get(&st);
    assert_int_equal(st.ready, 0);
    assert_int_equal(st.building, 0);
    assert_int_equal(st.slots_used, 1);
    /* their cgroups are gone */
    sbx_cg_env env;
    sbx_cg_detect(&env, "sbx");
    char path[PATH_MAX + 64];
    for (uint32_t k = 0; k < POOL_SLOTS; k++) {
        uint32_t base = pool_first() + k * 65536u;
        if (base == sbx_sandbox_uid_base(t.sb))
            continue;
        snprintf(path, sizeof path, "%.3000s/sbx/@pool-%u", env.v2_own, base);
        assert_int_equal(access(path, F_OK), -1);
    }
    tres r;
    assert_int_equal(tsbx_sh(&t, "echo alive", 10000, &r), 0);
    assert_string_equal(r.out, "alive\n");
    tsbx_close(&t);
    assert_int_equal(sbx_sandbox_count(), 0);
}

/* The executor is kill -9'd: its parked and claimed inits die with it (PR_SET_PDEATHSIG,
 * which setresuid in the init clears unless re-armed). */
static void test_pool_dies_with_executor(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    int pp[2];
    assert_int_equal(pipe(pp), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        char fdarg[16];
        snprintf(fdarg, sizeof fdarg, "%d", pp[1]);
        execl("/proc/self/exe", "test_runtime_pool", "--executor-child", fdarg, (char *)NULL);
        _exit(127);
    }
    close(pp[1]);
    pid_t pids[4];
    ssize_t got = read(pp[0], pids, sizeof pids);
    assert_int_equal(got, (ssize_t)sizeof pids);
    for (int i = 0; i < 4; i++) {
        assert_false(pid_gone(pids[i]));
        /* stopped, they cannot notice the closed socket: only PR_SET_PDEATHSIG can end them */
        assert_int_equal(kill(pids[i], SIGSTOP), 0);
    }
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    for (int i = 0; i < 4; i++) {
        bool gone = false;
        for (int k = 0; k < 200 && !gone; k++) {
            gone = pid_gone(pids[i]);
            if (!gone)
                usleep(10000);
        }
        assert_true(gone);
    }
    close(pp[0]);
    /* a kill -9'd executor cannot remove the groups: do it for it */
    sbx_cg_env env;
    sbx_cg_detect(&env, "sbx");
    uint32_t first = 3400000000u + ((uint32_t)child % 1700u) * POOL_SLOTS * 65536u;
    for (uint32_t k = 0; k < POOL_SLOTS; k++) {
        sbx_cg cg;
        memset(&cg, 0, sizeof cg);
        uint32_t base = first + k * 65536u;
        if (env.v2_own[0])
            snprintf(cg.v2, sizeof cg.v2, "%.3000s/sbx/@pool-%u", env.v2_own, base);
        for (int c = 0; c < SBX_CG_NCTRL; c++)
            if (env.v1_own[c][0])
                snprintf(cg.v1[c], sizeof cg.v1[c], "%.3000s/sbx/@pool-%u", env.v1_own[c], base);
        sbx_cg_destroy(&cg);
    }
}

/* test_pool_dies_with_executor's executor: a pool of 3 plus one claimed sandbox; reports the
 * four init pids and waits to be killed. */
static int executor_child(int fd)
{
    if (pool_start(3) < 0)
        return 1;
    tsbx t;
    if (pool_open(&t, NULL, NULL) < 0 || sbx_sandbox_pool_wait(3, 60000) < 0)
        return 1;
    pid_t pids[4];
    if (sbx_sandbox_pool_pids(pids, 3) != 3)
        return 1;
    pids[3] = sbx_sandbox_init_pid(t.sb);
    if (write(fd, pids, sizeof pids) != sizeof pids)
        return 1;
    pause();
    return 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc > 2 && strcmp(argv[1], "--executor-child") == 0)
        return executor_child((int)strtol(argv[2], NULL, 10));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_requires_config),
        cmocka_unit_test(test_pool_claim),
        cmocka_unit_test(test_pool_refill),
        cmocka_unit_test(test_pool_home_isolation),
        cmocka_unit_test(test_pool_uid_ranges_distinct),
        cmocka_unit_test(test_pool_limits_at_claim),
        cmocka_unit_test(test_pool_cold_fallback),
        cmocka_unit_test(test_pool_shutdown_destroys_parked),
        cmocka_unit_test(test_pool_dies_with_executor),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    sbx_sandbox_pool_shutdown();
    return rc;
}
