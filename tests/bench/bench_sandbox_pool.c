/* bench_sandbox_pool.c: sandbox runtime latencies, each against a baseline measured in the same
 * run and interleaved with it (A, B, A, B ... with the order swapped every other round), so a
 * noisy shared machine shifts both sides alike:
 *   spawn   warm-sandbox spawn+wait of /bin/true (sbx_sandbox_spawn + exit event)
 *           vs posix_spawn+waitpid of /bin/true
 *   run     what the executor's Run does: sbx_proc_start + wait finished + read the output
 *           vs posix_spawn with a stdout pipe + read to EOF + waitpid; and bwrap --unshare-all
 *           running /bin/true when bwrap is installed
 *   create  sandbox create from the warm pool (uid_base 0; the pool is refilled between rounds,
 *           untimed) vs a cold create (explicit uid_base); destroy is not timed
 * Not a ctest: prints figures only. Needs root. Built with -DBENCH_NO_POOL it compiles against
 * a runtime without the pool (for before/after comparisons) and skips the pooled creates.
 * Usage: bench_sandbox_pool [rounds] (default 300 spawn/run rounds, 40 create rounds). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "proc.h"
#include "sandbox.h"

extern char **environ;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
    qsort(v, n, sizeof *v, cmp_double);
    return v[(size_t)((double)(n - 1) * p + 0.5)];
}

static void report(const char *what, double *v, size_t n)
{
    double p50 = pct(v, n, 0.5), p90 = pct(v, n, 0.9), p10 = pct(v, n, 0.1);
    printf("BENCH %-44s p10=%8.0fus p50=%8.0fus p90=%8.0fus\n", what, p10, p50, p90);
}

static void ratio(const char *what, double *a, double *b, size_t n)
{
    /* per-round ratio a/b (neighbours in time), then its median; and the ratio of medians */
    double *r = malloc(n * sizeof *r);
    for (size_t i = 0; i < n; i++)
        r[i] = a[i] / b[i];
    double med = pct(r, n, 0.5);
    free(r);
    double *ca = malloc(n * sizeof *ca), *cb = malloc(n * sizeof *cb);
    memcpy(ca, a, n * sizeof *ca);
    memcpy(cb, b, n * sizeof *cb);
    printf("BENCH %-44s p50/p50=%.2f median(per-round ratio)=%.2f\n", what,
           pct(ca, n, 0.5) / pct(cb, n, 0.5), med);
    free(ca);
    free(cb);
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    remove(p);
    return 0;
}

static uint32_t uid_base_for(int n)
{
    /* the range the unit tests use, offset by our pid */
    return 1000000u + (uint32_t)(((unsigned)getpid() * 16u + (unsigned)n) % 50000u) * 65536u;
}

static int make_cfg(sbx_sandbox_cfg *cfg, char *id, size_t idlen, char *home, size_t hlen, int n,
                    uint32_t uid_base)
{
    snprintf(id, idlen, "bench-%d-%d", (int)getpid(), n);
    snprintf(home, hlen, "/tmp/sbx-bench-%d/%d/home", (int)getpid(), n);
    memset(cfg, 0, sizeof *cfg);
    cfg->id = id;
    cfg->init_path = SBX_INIT_BUILD_PATH;
    cfg->home_dir = home;
    cfg->uid_base = uid_base;
    cfg->limits.memory_bytes = 512ull << 20;
    cfg->limits.pids = 256;
    return 0;
}

static double bare_spawn(const char *path, char *const argv[], bool capture)
{
    double t0 = (sbx_mono_ns() / 1e3);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    int pp[2] = {-1, -1};
    if (capture) {
        if (pipe2(pp, O_CLOEXEC) < 0)
            return -1;
        posix_spawn_file_actions_adddup2(&fa, pp[1], 1);
        posix_spawn_file_actions_adddup2(&fa, pp[1], 2);
    }
    pid_t pid;
    int rc = posix_spawn(&pid, path, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (capture) {
        close(pp[1]);
        char buf[4096];
        while (rc == 0 && read(pp[0], buf, sizeof buf) > 0) {
        }
        close(pp[0]);
    }
    int st;
    if (rc == 0)
        waitpid(pid, &st, 0);
    return rc == 0 ? (sbx_mono_ns() / 1e3) - t0 : -1;
}

static double sandbox_spawn(sbx_sandbox *sb)
{
    static const char *const argv[] = {"/bin/true", NULL};
    sbx_spawn_req rq = {.argv = argv, .merge_stderr = true};
    struct pollfd pf = {.fd = sbx_sandbox_exit_fd(sb), .events = POLLIN};
    double t0 = (sbx_mono_ns() / 1e3);
    sbx_spawned sp;
    if (sbx_sandbox_spawn(sb, &rq, &sp) < 0)
        return -1;
    sbx_exit ev;
    while (sbx_sandbox_next_exit(sb, &ev) < 0)
        poll(&pf, 1, 1000);
    double t = (sbx_mono_ns() / 1e3) - t0;
    close(sp.stdout_fd);
    return ev.exit_code == 0 ? t : -1;
}

static double sandbox_run(sbx_proctab *tab)
{
    static const char *const argv[] = {"/bin/true", NULL};
    sbx_proc_req req = {.spawn = {.argv = argv, .merge_stderr = true}};
    double t0 = (sbx_mono_ns() / 1e3);
    sbx_proc *p;
    if (sbx_proc_start(tab, &req, &p, NULL) < 0)
        return -1;
    sbx_proc_wait_finished(p, 10000);
    char buf[256];
    uint64_t off = 0;
    sbx_proc_read(p, SBX_STREAM_STDOUT, &off, buf, sizeof buf);
    sbx_proc_status st;
    sbx_proc_status_get(p, &st);
    double t = (sbx_mono_ns() / 1e3) - t0;
    sbx_proc_unref(p);
    return st.exit.exit_code == 0 && !st.exit.lost ? t : -1;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    size_t rounds = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 300;
    size_t crounds = rounds / 8 < 10 ? 10 : rounds / 8;
    if (geteuid() != 0) {
        printf("SKIP: needs root\n");
        return 0;
    }
    sbx_sandbox_caps caps;
    if (sbx_sandbox_caps_detect(SBX_INIT_BUILD_PATH, &caps) < 0 || !caps.namespaces) {
        printf("SKIP: no namespaces here\n");
        return 0;
    }
    char id[64], home[256];
    sbx_sandbox_cfg cfg;
    make_cfg(&cfg, id, sizeof id, home, sizeof home, 0, uid_base_for(0));
    sbx_sandbox *sb;
    if (sbx_sandbox_create(&cfg, &sb) < 0) {
        printf("FAIL: create\n");
        return 1;
    }
    double *a = calloc(rounds, sizeof *a), *b = calloc(rounds, sizeof *b),
           *c = calloc(rounds, sizeof *c);
    char *true_argv[] = {"/bin/true", NULL};
    for (size_t i = 0; i < 20; i++) { /* warm-up */
        sandbox_spawn(sb);
        bare_spawn("/bin/true", true_argv, false);
    }
    for (size_t i = 0; i < rounds; i++) {
        if (i % 2) {
            a[i] = sandbox_spawn(sb);
            b[i] = bare_spawn("/bin/true", true_argv, false);
        } else {
            b[i] = bare_spawn("/bin/true", true_argv, false);
            a[i] = sandbox_spawn(sb);
        }
        if (a[i] < 0 || b[i] < 0) {
            printf("FAIL: spawn\n");
            return 1;
        }
    }
    ratio("spawn+wait: warm sandbox / posix_spawn", a, b, rounds);
    report("warm-sandbox spawn+wait /bin/true", a, rounds);
    report("posix_spawn+wait /bin/true (baseline)", b, rounds);

    /* Run: through the process table, as the executor does */
    sbx_proctab *tab;
    if (sbx_proctab_create(sb, NULL, &tab) < 0) {
        printf("FAIL: proctab\n");
        return 1;
    }
    char *bwrap_argv[] = {"bwrap",
                          "--unshare-all",
                          "--die-with-parent",
                          "--ro-bind",
                          "/usr",
                          "/usr",
                          "--symlink",
                          "usr/lib",
                          "/lib",
                          "--symlink",
                          "usr/lib64",
                          "/lib64",
                          "--symlink",
                          "usr/bin",
                          "/bin",
                          "--proc",
                          "/proc",
                          "--dev",
                          "/dev",
                          "--tmpfs",
                          "/tmp",
                          "/bin/true",
                          NULL};
    bool bwrap =
        access("/usr/bin/bwrap", X_OK) == 0 && bare_spawn("/usr/bin/bwrap", bwrap_argv, true) > 0;
    for (size_t i = 0; i < 10; i++)
        sandbox_run(tab);
    for (size_t i = 0; i < rounds; i++) {
        if (i % 2) {
            a[i] = sandbox_run(tab);
            b[i] = bare_spawn("/bin/true", true_argv, true);
        } else {
            b[i] = bare_spawn("/bin/true", true_argv, true);
            a[i] = sandbox_run(tab);
        }
        c[i] = bwrap && i < rounds / 4 ? bare_spawn("/usr/bin/bwrap", bwrap_argv, true) : 1;
        if (a[i] < 0 || b[i] < 0 || c[i] < 0) {
            printf("FAIL: run\n");
            return 1;
        }
    }
    ratio("run: sandbox proc table / posix_spawn+pipe", a, b, rounds);
    if (bwrap) {
        double *a4 = malloc(rounds / 4 * sizeof *a4);
        memcpy(a4, a, rounds / 4 * sizeof *a4);
        ratio("run: sandbox proc table / bwrap", a4, c, rounds / 4);
        report("bwrap --unshare-all /bin/true", c, rounds / 4);
        free(a4);
    }
    report("sandbox run /bin/true (proc table)", a, rounds);
    report("posix_spawn+pipe+wait /bin/true (baseline)", b, rounds);
    sbx_proctab_destroy(tab);
    sbx_sandbox_destroy(sb);

    /* create: pooled vs cold, interleaved */
#ifndef BENCH_NO_POOL
    sbx_sandbox_pool_cfg pc = {
        .size = 4,
        .init_path = SBX_INIT_BUILD_PATH,
        .uid_first = 3400000000u + ((uint32_t)getpid() % 1700u) * 8u * 65536u,
        .uid_count = 8u * 65536u, /* 4 parked + 4 in use: a burst of 8 waits for refills */
        .limits = cfg.limits,
    };
    bool pool = sbx_sandbox_pool_config(&pc) == 0 && sbx_sandbox_pool_wait(4, 30000) == 0;
#else
    bool pool = false;
#endif
    for (size_t i = 0; i < crounds; i++) {
        for (int k = 0; k < 2; k++) {
            bool pooled = (k == (int)(i % 2));
            if (pooled && !pool) {
                a[i] = 1;
                continue;
            }
#ifndef BENCH_NO_POOL
            if (pooled)
                sbx_sandbox_pool_wait(4, 30000); /* refilled: untimed */
#endif
            make_cfg(&cfg, id, sizeof id, home, sizeof home, 1 + (int)i * 2 + k,
                     pooled ? 0 : uid_base_for(1 + (int)i * 2 + k));
            double t0 = (sbx_mono_ns() / 1e3);
            int rc = sbx_sandbox_create(&cfg, &sb);
            double t = (sbx_mono_ns() / 1e3) - t0;
            if (rc < 0) {
                printf("FAIL: create rc=%d\n", rc);
                return 1;
            }
            /* it works: one command */
            if (sandbox_spawn(sb) < 0) {
                printf("FAIL: spawn after create\n");
                return 1;
            }
            sbx_sandbox_destroy(sb);
            (pooled ? a : b)[i] = t;
        }
    }
    if (pool) {
        ratio("create: pooled / cold", a, b, crounds);
        report("sandbox create from the warm pool", a, crounds);
    }
    report("sandbox create cold (baseline)", b, crounds);
#ifndef BENCH_NO_POOL
    if (pool) {
        /* a burst: more creates than parked inits, no waiting (later ones may go cold) */
        sbx_sandbox *burst[8];
        size_t nb = 0;
        sbx_sandbox_pool_wait(4, 30000);
        for (size_t i = 0; i < 8; i++) {
            make_cfg(&cfg, id, sizeof id, home, sizeof home, 10000 + (int)i, 0);
            double t0 = (sbx_mono_ns() / 1e3);
            if (sbx_sandbox_create(&cfg, &burst[nb]) == 0)
                a[nb++] = (sbx_mono_ns() / 1e3) - t0;
        }
        report("burst of 8 uid_base-0 creates (pool of 4)", a, nb);
        for (size_t i = 0; i < nb; i++)
            sbx_sandbox_destroy(burst[i]);
        sbx_sandbox_pool_stats st;
        sbx_sandbox_pool_stats_get(&st);
        printf("BENCH pool stats: claimed=%llu cold=%llu built=%llu failures=%llu\n",
               (unsigned long long)st.claimed, (unsigned long long)st.cold_creates,
               (unsigned long long)st.built, (unsigned long long)st.build_failures);
    }
    sbx_sandbox_pool_shutdown();
#endif
    char top[64];
    snprintf(top, sizeof top, "/tmp/sbx-bench-%d", (int)getpid());
    nftw(top, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(a);
    free(b);
    free(c);
    return 0;
}
