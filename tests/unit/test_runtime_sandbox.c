/* test_runtime_sandbox.c: the sandbox API (services/executor/runtime/: sandbox.c, command.c,
 * service.c, with sbx-init) against the real kernel: create/destroy and what is enforced,
 * identity and environment of commands, exit statuses, spawn errors, signals, kill-tree, init
 * death, PDEATHSIG, home persistence across uid ranges. Built with -DSBX_BENCH it is
 * tests/bench's bench_sandbox (warm spawn latency against posix_spawn in the same process). */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "cgroup.h"
#include "clock.h"
#include "sandbox_fixture.h"

static bool has_enforced(sbx_sandbox *sb, const char *what)
{
    const char *const *l;
    size_t n = sbx_sandbox_enforced(sb, &l);
    for (size_t i = 0; i < n; i++)
        if (strcmp(l[i], what) == 0)
            return true;
    return false;
}

static void test_create_enforced(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    sbx_sandbox_limits lim = {.memory_bytes = 128 << 20, .pids = 32, .cpu_millis = 500};
    tsbx t;
    assert_int_equal(tsbx_open(&t, &lim), 0);
    assert_true(sbx_sandbox_init_pid(t.sb) > 1);
    assert_true(sbx_sandbox_alive(t.sb));
    assert_true(has_enforced(t.sb, "userns"));
    assert_true(has_enforced(t.sb, "pid-ns"));
    assert_true(has_enforced(t.sb, "mount-ns"));
    assert_true(has_enforced(t.sb, "net:loopback-only"));
    assert_true(has_enforced(t.sb, "seccomp"));
    assert_true(has_enforced(t.sb, "memory:cgroup-v1") || has_enforced(t.sb, "memory:cgroup-v2"));
    assert_true(has_enforced(t.sb, "pids:cgroup-v1") || has_enforced(t.sb, "pids:cgroup-v2"));
    assert_true(has_enforced(t.sb, "cpu:cgroup-v1") || has_enforced(t.sb, "cpu:cgroup-v2"));
    /* the init's root is the sandbox root: the executor's file API goes through it */
    char path[64];
    struct stat st;
    snprintf(path, sizeof path, "/proc/%d/root/usr", (int)sbx_sandbox_init_pid(t.sb));
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(sbx_sandbox_ping(t.sb), 0);
    tsbx_close(&t);
}

static void test_create_invalid(void **state)
{
    (void)state;
    sbx_sandbox *sb = NULL;
    sbx_sandbox_cfg cfg = {.id = "bad/id", .init_path = SBX_INIT_BUILD_PATH, .uid_base = 200000};
    assert_int_equal(sbx_sandbox_create(&cfg, &sb), -EINVAL);
    cfg.id = "ok";
    cfg.uid_base = 1000; /* would overlap host users */
    assert_int_equal(sbx_sandbox_create(&cfg, &sb), -EINVAL);
    assert_null(sb);
    sbx_sandbox_destroy(NULL);
}

static void test_duplicate_id(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    tsbx t;
    assert_int_equal(tsbx_open(&t, NULL), 0);
    sbx_sandbox *sb2 = NULL;
    sbx_sandbox_cfg cfg = {.id = t.id, .init_path = SBX_INIT_BUILD_PATH, .uid_base = 300000};
    assert_int_equal(sbx_sandbox_create(&cfg, &sb2), -EEXIST);
    tsbx_close(&t);
}

static void test_identity_and_env(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    tsbx t;
    tres r;
    assert_int_equal(tsbx_open(&t, NULL), 0);
    assert_int_equal(
        tsbx_sh(&t, "echo $(id -u):$(id -g):$(id -un):$HOME:$(pwd):$PATH:$(hostname)", 10000, &r),
        0);
    char want[256];
    snprintf(want, sizeof want,
             "1000:1000:user:/home/user:/home/user:/usr/local/bin:/usr/bin:/bin:%s\n", t.id);
    assert_string_equal(r.out, want);
    assert_int_equal(tsbx_sh(&t,
                             "grep -E '^(CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' "
                             "/proc/self/status | tr -s '\\t' ' '",
                             10000, &r),
                     0);
    assert_string_equal(r.out, "CapEff: 0000000000000000\nCapBnd: 0000000000000000\n"
                               "CapAmb: 0000000000000000\nNoNewPrivs: 1\nSeccomp: 2\n");
    const char *argv[] = {"/bin/sh", "-c", "echo $FOO:$HOME:$(pwd)", NULL};
    const char *env[] = {"FOO=bar", "HOME=/tmp", NULL};
    sbx_proc_req req = {.spawn = {.argv = argv, .env = env, .cwd = "/tmp", .merge_stderr = true}};
    sbx_proc *p;
    assert_int_equal(sbx_proc_start(t.tab, &req, &p, NULL), 0);
    assert_int_equal(sbx_proc_wait_finished(p, 10000), 0);
    uint64_t off = 0;
    char buf[64] = "";
    assert_int_equal(sbx_proc_read(p, SBX_STREAM_STDOUT, &off, buf, sizeof buf - 1), 14);
    assert_string_equal(buf, "bar:/tmp:/tmp\n");
    sbx_proc_unref(p);
    tsbx_close(&t);
}

static void test_exit_statuses(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    tsbx t;
    tres r;
    assert_int_equal(tsbx_open(&t, NULL), 0);
    assert_int_equal(tsbx_sh(&t, "exit 3", 10000, &r), 0);
    assert_int_equal(r.st.exit.exit_code, 3);
    assert_int_equal(r.st.exit.signal, 0);
    assert_int_equal(tsbx_sh(&t, "kill -TERM $$", 10000, &r), 0);
    assert_int_equal(r.st.exit.signal, SIGTERM);
    assert_false(r.st.exit.timed_out);
    assert_int_equal(tsbx_sh(&t, "sleep 10", 200, &r), 0);
    assert_int_equal(r.st.exit.signal, SIGKILL);
    assert_true(r.st.exit.timed_out);
    assert_true(r.st.exit.duration_us >= 200000 && r.st.exit.duration_us < 5000000);
    tsbx_close(&t);
}

static void test_spawn_errors(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    tsbx t;
    assert_int_equal(tsbx_open(&t, NULL), 0);
    sbx_proctab_destroy(t.tab); /* this test reads the exit queue itself */
    t.tab = NULL;
    sbx_spawned sp;
    const char *nope[] = {"no-such-program", NULL};
    sbx_spawn_req rq = {.argv = nope};
    assert_int_equal(sbx_sandbox_spawn(t.sb, &rq, &sp), -ENOENT);
    assert_string_equal(sp.err_what, "exec");
    const char *etc[] = {"/etc/passwd", NULL};
    rq.argv = etc;
    assert_int_equal(sbx_sandbox_spawn(t.sb, &rq, &sp), -EACCES);
    assert_string_equal(sp.err_what, "exec");
    const char *tru[] = {"true", NULL};
    rq.argv = tru;
    rq.cwd = "/no/such/dir";
    assert_int_equal(sbx_sandbox_spawn(t.sb, &rq, &sp), -ENOENT);
    assert_string_equal(sp.err_what, "cwd");
    const char *empty[] = {NULL};
    rq.argv = empty;
    assert_int_equal(sbx_sandbox_spawn(t.sb, &rq, &sp), -EINVAL);
    /* the sandbox still works after the failures */
    rq.argv = tru;
    rq.cwd = NULL;
    assert_int_equal(sbx_sandbox_spawn(t.sb, &rq, &sp), 0);
    close(sp.stdout_fd);
    close(sp.stderr_fd);
    assert_int_equal(sp.stdin_fd, -1);
    sbx_exit ev;
    struct pollfd pf = {.fd = sbx_sandbox_exit_fd(t.sb), .events = POLLIN};
    assert_int_equal(poll(&pf, 1, 10000), 1);
    assert_int_equal(sbx_sandbox_next_exit(t.sb, &ev), 0);
    assert_int_equal(ev.pid, sp.pid);
    assert_int_equal(ev.exit_code, 0);
    assert_int_equal(sbx_sandbox_next_exit(t.sb, &ev), -EAGAIN);
    tsbx_close(&t);
}

static void test_signals_and_kill_tree(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    tsbx t;
    tres r;
    assert_int_equal(tsbx_open(&t, NULL), 0);
    const char *argv[] = {"/bin/sh", "-c", "setsid sleep 1000 & exec sleep 1000", NULL};
    sbx_proc_req req = {.spawn = {.argv = argv}, .tag = "daemon"};
    sbx_proc *p;
    assert_int_equal(sbx_proc_start(t.tab, &req, &p, NULL), 0);
    sbx_proc_status st;
    sbx_proc_status_get(p, &st);
    assert_int_equal(sbx_sandbox_signal(t.sb, 1, SIGKILL), -EPERM);
    assert_int_equal(sbx_sandbox_signal(t.sb, 4242, SIGTERM), -ESRCH);
    assert_int_equal(sbx_sandbox_signal(t.sb, st.pid, 0), 0);
    usleep(100 * 1000);
    assert_int_equal(sbx_proc_kill_tree(p), 0);
    assert_int_equal(sbx_proc_wait_finished(p, 10000), 0);
    sbx_proc_status_get(p, &st);
    assert_int_equal(st.exit.signal, SIGKILL);
    assert_false(st.exit.timed_out);
    sbx_proc_unref(p);
    /* the setsid'd grandchild died with the tree */
    assert_int_equal(tsbx_sh(&t, "ps -e -o comm= | grep -c sleep", 10000, &r), 0);
    assert_string_equal(r.out, "0\n");
    /* kill-all */
    const char *bg[] = {"sleep", "1000", NULL};
    req.spawn.argv = bg;
    assert_int_equal(sbx_proc_start(t.tab, &req, &p, NULL), 0);
    assert_int_equal(sbx_sandbox_kill_all(t.sb), 0);
    assert_int_equal(sbx_proc_wait_finished(p, 10000), 0);
    sbx_proc_status_get(p, &st);
    assert_int_equal(st.exit.signal, SIGKILL);
    sbx_proc_unref(p);
    tsbx_close(&t);
}

static void test_init_death(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    tsbx t;
    assert_int_equal(tsbx_open(&t, NULL), 0);
    const char *argv[] = {"sleep", "1000", NULL};
    sbx_proc_req req = {.spawn = {.argv = argv}};
    sbx_proc *p;
    assert_int_equal(sbx_proc_start(t.tab, &req, &p, NULL), 0);
    kill(sbx_sandbox_init_pid(t.sb), SIGKILL);
    assert_int_equal(sbx_proc_wait_finished(p, 10000), 0);
    sbx_proc_status st;
    sbx_proc_status_get(p, &st);
    assert_true(st.exit.lost || st.exit.signal == SIGKILL);
    sbx_proc_unref(p);
    for (int i = 0; i < 100 && sbx_sandbox_alive(t.sb); i++)
        usleep(10000);
    assert_false(sbx_sandbox_alive(t.sb));
    assert_int_equal(sbx_sandbox_ping(t.sb), -EPIPE);
    tsbx_close(&t);
}

/* The executor is kill -9'd: its sandboxes die with it (PR_SET_PDEATHSIG on the init). */
static void test_executor_death_kills_sandbox(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    int pp[2];
    assert_int_equal(pipe(pp), 0);
    /* a fresh process (re-exec of this binary) plays the executor */
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        char fdarg[16];
        snprintf(fdarg, sizeof fdarg, "%d", pp[1]);
        execl("/proc/self/exe", "test_runtime_sandbox", "--executor-child", fdarg, (char *)NULL);
        _exit(127);
    }
    close(pp[1]);
    int init_pid = 0;
    assert_int_equal(read(pp[0], &init_pid, sizeof init_pid), sizeof init_pid);
    assert_true(init_pid > 1);
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", init_pid);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    bool gone = false;
    for (int i = 0; i < 200 && !gone; i++) {
        FILE *f = fopen(path, "r");
        gone = !f;
        if (f) {
            /* a zombie waiting for its new parent to reap it is dead too */
            gone = fgets(buf, sizeof buf, f) && strstr(buf, ") Z ");
            fclose(f);
        }
        if (!gone)
            usleep(10000);
    }
    assert_true(gone);
    close(pp[0]);
    /* a kill -9'd executor cannot remove its groups: do it for it (the processes are gone) */
    sbx_cg_env env;
    sbx_cg_detect(&env, "sbx");
    sbx_cg cg;
    memset(&cg, 0, sizeof cg);
    char id[64];
    snprintf(id, sizeof id, "t-%d-1", (int)child);
    if (env.v2_own[0])
        snprintf(cg.v2, sizeof cg.v2, "%.3000s/sbx/%s", env.v2_own, id);
    for (int c = 0; c < SBX_CG_NCTRL; c++)
        if (env.v1_own[c][0])
            snprintf(cg.v1[c], sizeof cg.v1[c], "%.3000s/sbx/%s", env.v1_own[c], id);
    assert_int_equal(sbx_cg_destroy(&cg), 0);
    char home[128];
    snprintf(home, sizeof home, "/tmp/sbx-sec-%d-1", (int)child);
    tsbx_rm_tree(home);
}

static void test_home_persists_across_uid_ranges(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    tsbx t;
    tres r;
    assert_int_equal(tsbx_open(&t, NULL), 0);
    assert_int_equal(tsbx_sh(&t, "mkdir -p d && echo kept > d/f && ln -s d/f link", 10000, &r), 0);
    assert_int_equal(r.st.exit.exit_code, 0);
    sbx_proctab_destroy(t.tab);
    sbx_sandbox_destroy(t.sb);
    /* same home, another uid range: the files are re-owned into it */
    sbx_sandbox_cfg cfg = {.id = t.id,
                           .init_path = SBX_INIT_BUILD_PATH,
                           .home_dir = t.home,
                           .uid_base = 3000000u + ((uint32_t)getpid() % 1000u) * 65536u};
    assert_int_equal(sbx_sandbox_create(&cfg, &t.sb), 0);
    assert_int_equal(sbx_proctab_create(t.sb, NULL, &t.tab), 0);
    assert_int_equal(tsbx_sh(&t, "cat link && stat -c %U:%G d/f && echo more >> d/f", 10000, &r),
                     0);
    assert_string_equal(r.out, "kept\nuser:user\n");
    assert_int_equal(r.st.exit.exit_code, 0);
    tsbx_close(&t);
}

static void test_many_concurrent_commands(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    tsbx t;
    assert_int_equal(tsbx_open(&t, NULL), 0);
    sbx_proc *ps[40];
    for (int i = 0; i < 40; i++) {
        char cmd[64];
        snprintf(cmd, sizeof cmd, "sleep 0.2; echo %d", i);
        const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
        sbx_proc_req req = {.spawn = {.argv = argv}};
        assert_int_equal(sbx_proc_start(t.tab, &req, &ps[i], NULL), 0);
    }
    for (int i = 0; i < 40; i++) {
        assert_int_equal(sbx_proc_wait_finished(ps[i], 20000), 0);
        char buf[16] = "", want[16];
        uint64_t off = 0;
        sbx_proc_read(ps[i], SBX_STREAM_STDOUT, &off, buf, sizeof buf - 1);
        snprintf(want, sizeof want, "%d\n", i);
        assert_string_equal(buf, want);
        sbx_proc_unref(ps[i]);
    }
    tsbx_close(&t);
}

__attribute__((unused)) static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Measures warm spawn+wait of /bin/true through the init vs posix_spawn+wait here (a bench:
 * built only into tests/bench's bench_sandbox, never a timed assertion in ctest). */
#ifdef SBX_BENCH
static void test_bench_spawn_latency(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    enum { N = 200 };
    static double warm[N], bare[N], create[10];
    tsbx t;
    for (int i = 0; i < 10; i++) {
        double t0 = (sbx_mono_ns() / 1e3);
        assert_int_equal(tsbx_open(&t, NULL), 0);
        create[i] = (sbx_mono_ns() / 1e3) - t0;
        if (i < 9)
            tsbx_close(&t);
    }
    sbx_proctab_destroy(t.tab);
    t.tab = NULL;
    const char *argv[] = {"/bin/true", NULL};
    sbx_spawn_req rq = {.argv = argv, .merge_stderr = true};
    struct pollfd pf = {.fd = sbx_sandbox_exit_fd(t.sb), .events = POLLIN};
    for (int i = 0; i < N; i++) {
        double t0 = (sbx_mono_ns() / 1e3);
        sbx_spawned sp;
        assert_int_equal(sbx_sandbox_spawn(t.sb, &rq, &sp), 0);
        sbx_exit ev;
        while (sbx_sandbox_next_exit(t.sb, &ev) < 0)
            poll(&pf, 1, 1000);
        warm[i] = (sbx_mono_ns() / 1e3) - t0;
        close(sp.stdout_fd);
        assert_int_equal(ev.exit_code, 0);
    }
    for (int i = 0; i < N; i++) {
        double t0 = (sbx_mono_ns() / 1e3);
        pid_t pid;
        char *av[] = {"/bin/true", NULL};
        assert_int_equal(posix_spawn(&pid, "/bin/true", NULL, NULL, av, NULL), 0);
        int st;
        waitpid(pid, &st, 0);
        bare[i] = (sbx_mono_ns() / 1e3) - t0;
    }
    qsort(warm, N, sizeof *warm, cmp_double);
    qsort(bare, N, sizeof *bare, cmp_double);
    qsort(create, 10, sizeof *create, cmp_double);
    printf("BENCH warm-sandbox spawn+wait /bin/true p50=%.0fus p90=%.0fus\n", warm[N / 2],
           warm[N * 9 / 10]);
    printf("BENCH posix_spawn+wait /bin/true        p50=%.0fus p90=%.0fus ratio=%.2f\n",
           bare[N / 2], bare[N * 9 / 10], warm[N / 2] / bare[N / 2]);
    printf("BENCH sandbox create (cgroups+init+namespaces+rootfs) p50=%.2fms max=%.2fms\n",
           create[5] / 1000, create[9] / 1000);
    tsbx_close(&t);
}
#endif

/* test_executor_death_kills_sandbox's executor: make a sandbox, report its init pid, wait. */
static int executor_child(int fd)
{
    tsbx t;
    if (tsbx_open(&t, NULL) < 0)
        return 1;
    const char *argv[] = {"sleep", "1000", NULL};
    sbx_proc_req req = {.spawn = {.argv = argv}};
    sbx_proc *p;
    if (sbx_proc_start(t.tab, &req, &p, NULL) < 0)
        return 1;
    int pid = sbx_sandbox_init_pid(t.sb);
    if (write(fd, &pid, sizeof pid) != sizeof pid)
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
        cmocka_unit_test(test_create_enforced),
        cmocka_unit_test(test_create_invalid),
        cmocka_unit_test(test_duplicate_id),
        cmocka_unit_test(test_identity_and_env),
        cmocka_unit_test(test_exit_statuses),
        cmocka_unit_test(test_spawn_errors),
        cmocka_unit_test(test_signals_and_kill_tree),
        cmocka_unit_test(test_init_death),
        cmocka_unit_test(test_executor_death_kills_sandbox),
        cmocka_unit_test(test_home_persists_across_uid_ranges),
        cmocka_unit_test(test_many_concurrent_commands),
#ifdef SBX_BENCH
        cmocka_unit_test(test_bench_spawn_latency),
#endif
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
