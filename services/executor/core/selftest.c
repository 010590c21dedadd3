/* selftest.c: the executor's start-up proof that it can run sandboxes. It builds one sandbox
 * exactly as a request would (the warm pool when it is on, else a cold create in a reserved uid
 * block), checks the root and network namespace the init handed over, runs `/bin/sh -c 'id -u'`
 * in it, expects "1000" and exit 0, and tears it down. main.c reports NOT_SERVING while it
 * fails, so compose and Kubernetes see an unhealthy executor instead of a healthy one that fails
 * every call (in a container: a masked /proc, missing capabilities, a read-only cgroup tree).
 *
 * Threads: sbx_selftest_run runs on the caller's thread; the retry monitor has one thread of its
 * own that calls the callback; everything it uses is thread-safe (the runtime). */
#include "selftest.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "sandbox.h"

#define SELFTEST_WAIT_MS 10000

static int fail(char *why, size_t len, const char *step, int rc, const char *detail)
{
    snprintf(why, len, "%s: %s%s%s", step, strerror(rc < 0 ? -rc : rc), detail ? ": " : "",
             detail ? detail : "");
    return rc < 0 ? rc : -rc;
}

/* Reads the command's stdout to EOF (bounded by the deadline) into buf. */
static int read_all(int fd, char *buf, size_t cap, uint64_t deadline_ms)
{
    size_t n = 0;
    for (;;) {
        uint64_t now = sbx_mono_ms();
        if (now >= deadline_ms)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(deadline_ms - now)) < 0 && errno != EINTR)
            return -errno;
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r == 0)
            break;
        if (r < 0 && errno != EINTR && errno != EAGAIN)
            return -errno;
        if (r > 0 && (n += (size_t)r) >= cap - 1)
            break;
    }
    buf[n] = 0;
    return 0;
}

/* Waits for the exit of pid (exits of nothing else can be queued: the sandbox is ours). */
static int wait_exit(sbx_sandbox *sb, int pid, uint64_t deadline_ms, sbx_exit *ev)
{
    for (;;) {
        if (sbx_sandbox_next_exit(sb, ev) == 0 && ev->pid == pid)
            return 0;
        uint64_t now = sbx_mono_ms();
        if (now >= deadline_ms)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = sbx_sandbox_exit_fd(sb), .events = POLLIN};
        poll(&p, 1, (int)(deadline_ms - now));
    }
}

/* Runs `id -u` as the sandbox user; 0 when it printed 1000 and exited 0. */
static int run_probe(sbx_sandbox *sb, char *why, size_t len)
{
    static const char *const argv[] = {"/bin/sh", "-c", "id -u", NULL};
    sbx_spawn_req rq = {.argv = argv, .merge_stderr = true, .timeout_ms = SELFTEST_WAIT_MS};
    sbx_spawned sp;
    int rc = sbx_sandbox_spawn(sb, &rq, &sp);
    if (rc < 0)
        return fail(why, len, "spawn", rc, sp.err_what);
    uint64_t deadline = sbx_mono_ms() + SELFTEST_WAIT_MS;
    char out[256];
    rc = read_all(sp.stdout_fd, out, sizeof out, deadline);
    close(sp.stdout_fd);
    if (sp.stdin_fd >= 0)
        close(sp.stdin_fd);
    sbx_exit ev;
    if (rc == 0)
        rc = wait_exit(sb, sp.pid, deadline, &ev);
    if (rc < 0)
        return fail(why, len, "run", rc, NULL);
    if (ev.signal != 0 || ev.exit_code != 0 || strcmp(out, "1000\n") != 0) {
        snprintf(why, len, "run: `id -u` gave exit=%d signal=%d output=\"%.40s\"", ev.exit_code,
                 ev.signal, out);
        return -EPROTO;
    }
    return 0;
}

/* The root and network namespace handed over by the init are usable. */
static int check_handles(sbx_sandbox *sb, char *why, size_t len)
{
    struct stat st;
    int root = sbx_sandbox_root_fd(sb);
    if (root < 0)
        return fail(why, len, "root", EBADF, "the init sent no root");
    if (fstatat(root, "home/user", &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
        return fail(why, len, "root", errno ? errno : ENOTDIR, "no /home/user");
    if (sbx_sandbox_netns_fd(sb) < 0)
        return fail(why, len, "netns", EBADF, "the init sent no network namespace");
    return 0;
}

int sbx_selftest_run(const sbx_selftest_cfg *cfg, char *why, size_t len)
{
    uint64_t t0 = sbx_mono_us();
    char id[64];
    snprintf(id, sizeof id, "selftest-%d", (int)getpid());
    sbx_sandbox_cfg sc = {.id = id,
                          .init_path = cfg->init_path,
                          .cgroup_parent = cfg->cgroup_parent,
                          .uid_base = cfg->use_pool ? 0 : cfg->uid_base,
                          .limits = cfg->limits};
    sbx_sandbox *sb = NULL;
    int rc = sbx_sandbox_create(&sc, &sb);
    if (rc < 0)
        return fail(why, len, "create", rc, "see the sandbox log line above for the init's step");
    rc = check_handles(sb, why, len);
    if (rc == 0)
        rc = run_probe(sb, why, len);
    sbx_sandbox_destroy(sb);
    if (rc == 0)
        SBX_LOG_INFO("executor", "self-test passed: a sandbox ran `id -u` as 1000 elapsed_us=%llu",
                     (unsigned long long)(sbx_mono_us() - t0));
    return rc;
}

/* ---------------------------------------------------------------- retry monitor */

struct sbx_selftest_mon {
    sbx_selftest_cfg cfg;
    void (*on_pass)(void *);
    void *arg;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    bool stop;
};

static void *mon_main(void *p)
{
    sbx_selftest_mon *m = p;
    pthread_mutex_lock(&m->mu);
    while (!m->stop) {
        struct timespec dl;
        sbx_deadline_in(&dl, m->cfg.retry_ms);
        while (!m->stop && pthread_cond_timedwait(&m->cv, &m->mu, &dl) == 0)
            ;
        if (m->stop)
            break;
        pthread_mutex_unlock(&m->mu);
        char why[256];
        int rc = sbx_selftest_run(&m->cfg, why, sizeof why);
        if (rc == 0)
            m->on_pass(m->arg);
        else
            SBX_LOG_ERROR("executor", "self-test still failing, NOT_SERVING reason=\"%s\"", why);
        pthread_mutex_lock(&m->mu);
        if (rc == 0)
            break;
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

sbx_selftest_mon *sbx_selftest_retry(const sbx_selftest_cfg *cfg, void (*on_pass)(void *),
                                     void *arg)
{
    sbx_selftest_mon *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->cfg = *cfg;
    if (m->cfg.retry_ms <= 0)
        m->cfg.retry_ms = 10000;
    m->on_pass = on_pass;
    m->arg = arg;
    pthread_mutex_init(&m->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&m->th, NULL, mon_main, m) != 0) {
        pthread_cond_destroy(&m->cv);
        pthread_mutex_destroy(&m->mu);
        free(m);
        return NULL;
    }
    return m;
}

void sbx_selftest_retry_stop(sbx_selftest_mon *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    m->stop = true;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->th, NULL);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m);
}
