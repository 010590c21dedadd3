/* bench_term.c (sbx-bench-term): what an editor's terminal and file tree feel, measured against
 * baselines taken in the same run on the same executor (ratios; never pass/fail).
 *
 * Keystroke echo round trip (one byte typed until its echo is read back), p50/p99 of ROUNDS:
 *   unary   - a Health round trip to the executor (the floor of any remote keystroke)
 *   local   - a local pseudo-terminal running /bin/cat (what a terminal emulator itself costs)
 *   pipes   - SendInput to a background `cat` on pipes, the byte read back from AttachProcess
 *             (how an editor without terminals fakes one)
 *   pty     - SendInput to `cat` on a sandbox terminal (ExecRequest.pty), the echo of its line
 *             discipline read from the Exec stream (libsbx)
 *   term    - the shipped `sbx term -p P -- cat` under a local pseudo-terminal (forkpty): a byte
 *             written to its master until the echo comes back to it: the whole user-visible path
 * Watch event latency: from the start of a WriteFile of a new file until its event reaches a
 * WatchDir client (coalesce_ms 1, and the default 50), against the WriteFile round trip alone.
 *
 * Usage: sbx-bench-term --executor ADDR --sbx PATH [--rounds N] (bench_term.sh starts the
 * services). Needs an executor that can run sandboxes. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sbx.h"

static const char *g_project = "bench-term";
static sbx_client *g_c;

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct stats {
    double p50, p99;
} stats;

static stats summarize(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    stats s = {v[n / 2], v[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1]};
    return s;
}

static void report(const char *name, stats s)
{
    printf("  %-8s p50 %8.1f us   p99 %8.1f us\n", name, s.p50, s.p99);
}

static void die(const char *what, sbx_error *e)
{
    fprintf(stderr, "sbx-bench-term: %s: %s\n", what, e ? e->message : strerror(errno));
    exit(1);
}

/* ---- an output sink that a waiting thread can watch for a byte count */
typedef struct sink {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t bytes;
    int pid;
    bool ended;
} sink;

static void sink_init(sink *s)
{
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->bytes = 0;
    s->pid = 0;
    s->ended = false;
}

static int sink_out(sbx_stream_id sid, const void *d, size_t n, uint64_t off, void *ud)
{
    (void)sid;
    (void)d;
    (void)off;
    sink *s = ud;
    pthread_mutex_lock(&s->mu);
    s->bytes += n;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static void sink_started(int pid, const char *sandbox_id, void *ud)
{
    (void)sandbox_id;
    sink *s = ud;
    pthread_mutex_lock(&s->mu);
    s->pid = pid;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Waits until the sink holds at least want bytes; false when the stream ended first. */
static bool sink_wait(sink *s, uint64_t want)
{
    pthread_mutex_lock(&s->mu);
    while (s->bytes < want && !s->ended)
        pthread_cond_wait(&s->cv, &s->mu);
    bool ok = s->bytes >= want;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

/* Types one byte per round into pid and waits for one more output byte each time. */
static stats echo_rounds(sink *s, int pid, int rounds, double *v)
{
    sbx_proc_sel sel = {.pid = pid};
    for (int i = -10; i < rounds; i++) { /* 10 warm-up rounds */
        pthread_mutex_lock(&s->mu);
        uint64_t have = s->bytes;
        pthread_mutex_unlock(&s->mu);
        double t0 = now_us();
        sbx_error *e = sbx_proc_send_input(g_c, g_project, sel, "a", 1);
        if (e)
            die("SendInput", e);
        if (!sink_wait(s, have + 1))
            die("echo: the stream ended", NULL);
        if (i >= 0)
            v[i] = now_us() - t0;
    }
    return summarize(v, rounds);
}

/* ---- unary baseline */
static stats bench_unary(int rounds, double *v)
{
    for (int i = -10; i < rounds; i++) {
        int st = 0;
        double t0 = now_us();
        sbx_error *e = sbx_health_check(g_c, SBX_SERVICE_EXECUTOR, 0, &st);
        if (e)
            die("Health", e);
        if (i >= 0)
            v[i] = now_us() - t0;
    }
    return summarize(v, rounds);
}

/* ---- pipes: a background cat followed with AttachProcess */
typedef struct attach_arg {
    sink *s;
    int pid;
} attach_arg;

static void *attach_main(void *arg)
{
    attach_arg *a = arg;
    sbx_exec_result res;
    sbx_error *e =
        sbx_attach(g_c, g_project, (sbx_proc_sel){.pid = a->pid}, 0, 0, true, sink_out, a->s, &res);
    sbx_error_free(e);
    sbx_exec_result_clear(&res);
    pthread_mutex_lock(&a->s->mu);
    a->s->ended = true;
    pthread_cond_broadcast(&a->s->cv);
    pthread_mutex_unlock(&a->s->mu);
    return NULL;
}

static stats bench_pipes(int rounds, double *v)
{
    const char *argv[] = {"/bin/cat"};
    sbx_exec_req r = {.project_id = g_project, .argv = argv, .argc = 1, .background = true};
    sbx_exec_result res;
    sbx_error *e = sbx_exec(g_c, &r, NULL, NULL, NULL, &res);
    if (e)
        die("Exec cat (background)", e);
    sink s;
    sink_init(&s);
    attach_arg a = {.s = &s, .pid = res.pid};
    pthread_t th;
    pthread_create(&th, NULL, attach_main, &a);
    stats st = echo_rounds(&s, res.pid, rounds, v);
    sbx_error_free(sbx_proc_signal(g_c, g_project, (sbx_proc_sel){.pid = res.pid}, SIGKILL));
    pthread_join(th, NULL);
    sbx_exec_result_clear(&res);
    return st;
}

/* ---- pty: cat on a sandbox terminal, the Exec stream in a thread */
typedef struct exec_arg {
    sink *s;
} exec_arg;

static void *pty_main(void *arg)
{
    sink *s = arg;
    const char *argv[] = {"/bin/cat"};
    sbx_exec_req r = {
        .project_id = g_project, .argv = argv, .argc = 1, .pty_cols = 80, .pty_rows = 24};
    sbx_exec_result res;
    sbx_error_free(sbx_exec(g_c, &r, sink_started, sink_out, s, &res));
    sbx_exec_result_clear(&res);
    pthread_mutex_lock(&s->mu);
    s->ended = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static stats bench_pty(int rounds, double *v)
{
    sink s;
    sink_init(&s);
    pthread_t th;
    pthread_create(&th, NULL, pty_main, &s);
    pthread_mutex_lock(&s.mu);
    while (!s.pid && !s.ended)
        pthread_cond_wait(&s.cv, &s.mu);
    int pid = s.pid;
    pthread_mutex_unlock(&s.mu);
    if (!pid)
        die("Exec cat on a terminal", NULL);
    stats st = echo_rounds(&s, pid, rounds, v);
    sbx_error_free(sbx_proc_close_input(g_c, g_project, (sbx_proc_sel){.pid = pid}));
    pthread_join(th, NULL);
    return st;
}

/* ---- a program under a local pseudo-terminal: bytes written to the master, echo read back */
static int read_until(int fd, char want, int timeout_ms)
{
    char buf[256];
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, timeout_ms);
        if (r <= 0)
            return -1;
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            return -1;
        if (memchr(buf, want, (size_t)n))
            return 0;
    }
}

static stats bench_local_pty(char *const argv[], int rounds, double *v)
{
    int master = -1;
    struct winsize ws = {.ws_row = 24, .ws_col = 80};
    pid_t pid = forkpty(&master, NULL, NULL, &ws);
    if (pid < 0)
        die("forkpty", NULL);
    if (pid == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    /* up when a byte comes back (the remote side may take a sandbox start) */
    for (int tries = 0;; tries++) {
        if (write(master, "s", 1) != 1)
            die("write", NULL);
        if (read_until(master, 's', 1000) == 0)
            break;
        if (tries > 60)
            die("no echo from the program under the pseudo-terminal", NULL);
    }
    usleep(200000);
    char drain[4096];
    while (poll(&(struct pollfd){.fd = master, .events = POLLIN}, 1, 0) > 0 &&
           read(master, drain, sizeof drain) > 0)
        ;
    for (int i = -10; i < rounds; i++) {
        double t0 = now_us();
        if (write(master, "k", 1) != 1 || read_until(master, 'k', 10000) != 0)
            die("echo under the pseudo-terminal", NULL);
        if (i >= 0)
            v[i] = now_us() - t0;
    }
    if (write(master, "\x04", 1) != 1) { /* ^D: cat ends */
    }
    usleep(100000);
    kill(pid, SIGTERM);
    int st;
    waitpid(pid, &st, 0);
    close(master);
    return summarize(v, rounds);
}

/* ---- watch latency */
typedef struct watch_bench {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool ready, ended;
    char want[256]; /* the path being waited for */
    double seen_at;
} watch_bench;

static int on_watch(const sbx_watch_event *ev, void *ud)
{
    watch_bench *w = ud;
    double t = now_us();
    pthread_mutex_lock(&w->mu);
    if (ev->kind == SBX_WATCH_READY)
        w->ready = true;
    else if (w->want[0] && strcmp(ev->path, w->want) == 0 && w->seen_at == 0)
        w->seen_at = t;
    pthread_cond_broadcast(&w->cv);
    bool stop = w->ended;
    pthread_mutex_unlock(&w->mu);
    return stop;
}

typedef struct watch_arg {
    watch_bench *w;
    uint32_t coalesce_ms;
} watch_arg;

static void *watch_main(void *arg)
{
    watch_arg *a = arg;
    sbx_watch_opts o = {.coalesce_ms = a->coalesce_ms};
    sbx_error *e = sbx_watch_dir(g_c, g_project, "bw", &o, on_watch, a->w);
    if (e)
        fprintf(stderr, "sbx-bench-term: WatchDir: %s\n", e->message);
    sbx_error_free(e);
    pthread_mutex_lock(&a->w->mu);
    a->w->ended = true;
    pthread_cond_broadcast(&a->w->cv);
    pthread_mutex_unlock(&a->w->mu);
    return NULL;
}

static long one_byte(void *buf, size_t cap, void *ud)
{
    int *left = ud;
    if (!*left || !cap)
        return 0;
    *left = 0;
    *(char *)buf = 'w';
    return 1;
}

static void bench_watch(uint32_t coalesce_ms, int rounds, double *lat, double *wr, stats *s_lat,
                        stats *s_wr)
{
    watch_bench w = {.ready = false};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    watch_arg a = {.w = &w, .coalesce_ms = coalesce_ms};
    pthread_t th;
    pthread_create(&th, NULL, watch_main, &a);
    pthread_mutex_lock(&w.mu);
    while (!w.ready && !w.ended)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    if (!w.ready)
        die("WatchDir did not become ready", NULL);
    for (int i = -5; i < rounds; i++) {
        char path[64];
        snprintf(path, sizeof path, "bw/c%u-%d", coalesce_ms, i + 5);
        pthread_mutex_lock(&w.mu);
        snprintf(w.want, sizeof w.want, "/home/user/%s", path);
        w.seen_at = 0;
        pthread_mutex_unlock(&w.mu);
        int left = 1;
        double t0 = now_us();
        sbx_error *e =
            sbx_file_write(g_c, g_project, path, NULL, one_byte, NULL, &left, NULL, NULL);
        double t1 = now_us();
        if (e)
            die("WriteFile", e);
        pthread_mutex_lock(&w.mu);
        while (w.seen_at == 0 && !w.ended)
            pthread_cond_wait(&w.cv, &w.mu);
        double seen = w.seen_at;
        pthread_mutex_unlock(&w.mu);
        if (seen == 0)
            die("the watch ended", NULL);
        if (i >= 0) {
            lat[i] = seen - t0;
            wr[i] = t1 - t0;
        }
    }
    pthread_mutex_lock(&w.mu);
    w.ended = true; /* the next event stops the watch */
    pthread_mutex_unlock(&w.mu);
    int left = 1;
    sbx_error_free(
        sbx_file_write(g_c, g_project, "bw/stop", NULL, one_byte, NULL, &left, NULL, NULL));
    pthread_join(th, NULL);
    *s_lat = summarize(lat, rounds);
    *s_wr = summarize(wr, rounds);
}

int main(int argc, char **argv)
{
    const char *executor = NULL, *sbx_bin = NULL;
    int rounds = 300;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--executor") && i + 1 < argc)
            executor = argv[++i];
        else if (!strcmp(argv[i], "--sbx") && i + 1 < argc)
            sbx_bin = argv[++i];
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = (int)strtol(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: sbx-bench-term --executor ADDR --sbx PATH [--rounds N]\n");
            return 2;
        }
    }
    if (!executor || !sbx_bin || rounds < 10) {
        fprintf(stderr, "usage: sbx-bench-term --executor ADDR --sbx PATH [--rounds N>=10]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    sbx_global_init();
    sbx_config cfg = {.executor = executor};
    sbx_error *e = sbx_client_new(&cfg, &g_c);
    if (e)
        die("client", e);
    /* the sandbox up, and the watched directory */
    e = sbx_file_mkdir(g_c, g_project, "bw", 0755, true, NULL);
    if (e)
        die("MkDir", e);
    double *v = calloc((size_t)rounds, sizeof *v), *v2 = calloc((size_t)rounds, sizeof *v2);
    if (!v || !v2)
        die("calloc", NULL);

    printf("keystroke echo round trip, %d rounds each (same run, same executor)\n", rounds);
    stats unary = bench_unary(rounds, v);
    report("unary", unary);
    char *cat_argv[] = {"/bin/cat", NULL};
    stats local = bench_local_pty(cat_argv, rounds, v);
    report("local", local);
    stats pipes = bench_pipes(rounds, v);
    report("pipes", pipes);
    stats pty = bench_pty(rounds, v);
    report("pty", pty);
    setenv("SBX_EXECUTOR", executor, 1);
    char *term_argv[] = {(char *)sbx_bin, "term", "-p", (char *)g_project, "--", "/bin/cat", NULL};
    stats term = bench_local_pty(term_argv, rounds, v);
    report("term", term);
    printf("  ratios (p50): term/unary %.2f  term/pipes %.2f  pty/pipes %.2f  term-local %.1f "
           "us\n",
           term.p50 / unary.p50, term.p50 / pipes.p50, pty.p50 / pipes.p50, term.p50 - local.p50);

    printf("watch event latency: WriteFile start -> event at the WatchDir client, %d rounds\n",
           rounds);
    stats lat1, wr1, lat50, wr50;
    bench_watch(1, rounds, v, v2, &lat1, &wr1);
    report("write", wr1);
    report("event/1", lat1);
    int r50 = rounds < 100 ? rounds : 100;
    bench_watch(0, r50, v, v2, &lat50, &wr50);
    report("event/50", lat50);
    printf("  ratios (p50): event(coalesce 1 ms)/write %.2f  event(default 50 ms)/write %.2f\n",
           lat1.p50 / wr1.p50, lat50.p50 / wr1.p50);
    free(v);
    free(v2);
    sbx_client_free(g_c);
    sbx_global_cleanup();
    return 0;
}
