/* sandbox_fixture.h: helpers for the sandbox security tests: make a sandbox with a unique id,
 * uid range and home (with sbx_probe copied in), run a shell command or a probe through the
 * process table and collect its output and status, and check a fresh sandbox still works. */
#ifndef SBX_SANDBOX_FIXTURE_H
#define SBX_SANDBOX_FIXTURE_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proc.h"
#include "sandbox.h"
#include "test_main.h"

typedef struct {
    sbx_sandbox *sb;
    sbx_proctab *tab;
    char id[64];
    char dir[256];
    char home[300];
} tsbx;

typedef struct {
    char out[1 << 16];
    size_t len;
    sbx_proc_status st;
} tres;

/* Skips the current test (with the reason printed) when this host cannot run sandboxes. */
static inline bool tsbx_skip_reason(const char **why)
{
    static sbx_sandbox_caps caps;
    if (geteuid() != 0) {
        *why = "needs root (cgroups, uid ranges)";
        return true;
    }
    if (sbx_sandbox_caps_detect(SBX_INIT_BUILD_PATH, &caps) < 0 || !caps.namespaces) {
        *why = "the kernel cannot create user/pid/mount/net namespaces here";
        return true;
    }
    return false;
}

#define TSBX_REQUIRE()                                                                             \
    do {                                                                                           \
        const char *why_;                                                                          \
        if (tsbx_skip_reason(&why_)) {                                                             \
            printf("SKIP: %s\n", why_);                                                            \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

static inline int tsbx_copy(const char *src, const char *dst, uid_t uid)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    if (in < 0 || out < 0)
        return -1;
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t)n) != n)
            return -1;
    close(in);
    if (fchown(out, uid, uid) < 0 || fchmod(out, 0755) < 0)
        return -1;
    close(out);
    return 0;
}

static inline int tsbx_open2(tsbx *t, const sbx_sandbox_limits *lim, const sbx_proctab_cfg *pc)
{
    static int seq;
    int n = __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED);
    memset(t, 0, sizeof *t);
    snprintf(t->id, sizeof t->id, "t-%d-%d", (int)getpid(), n);
    snprintf(t->dir, sizeof t->dir, "/tmp/sbx-sec-%d-%d", (int)getpid(), n);
    snprintf(t->home, sizeof t->home, "%s/home", t->dir);
    sbx_sandbox_cfg cfg = {
        .id = t->id,
        .init_path = SBX_INIT_BUILD_PATH,
        .home_dir = t->home,
        /* a range no other test process uses at the same time */
        .uid_base =
            1000000u + (uint32_t)(((unsigned)getpid() * 16u + (unsigned)n) % 50000u) * 65536u,
    };
    if (lim)
        cfg.limits = *lim;
    if (!cfg.limits.memory_bytes)
        cfg.limits.memory_bytes = 512ull << 20;
    if (!cfg.limits.pids)
        cfg.limits.pids = 256;
    int rc = sbx_sandbox_create(&cfg, &t->sb);
    if (rc < 0)
        return rc;
    if ((rc = sbx_proctab_create(t->sb, pc, &t->tab)) < 0)
        return rc;
#ifdef SBX_PROBE_PATH
    char dst[400];
    snprintf(dst, sizeof dst, "%s/sbx_probe", t->home);
    return tsbx_copy(SBX_PROBE_PATH, dst, sbx_sandbox_user_uid(t->sb));
#else
    return 0;
#endif
}

static inline int tsbx_open(tsbx *t, const sbx_sandbox_limits *lim)
{
    return tsbx_open2(t, lim, NULL);
}

static inline int tsbx_rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(p) < 0 ? 0 : 0;
}

static inline void tsbx_close(tsbx *t)
{
    sbx_proctab_destroy(t->tab);
    sbx_sandbox_destroy(t->sb);
    if (t->dir[0])
        nftw(t->dir, tsbx_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    memset(t, 0, sizeof *t);
}

/* Runs argv (NULL-terminated) to completion; stdout+stderr merged into r->out (first 64 KiB). */
static inline int tsbx_runv(tsbx *t, const char *const *argv, uint32_t timeout_ms, uint64_t max_out,
                            tres *r)
{
    sbx_proc_req req = {.spawn = {.argv = argv, .merge_stderr = true, .timeout_ms = timeout_ms},
                        .max_output_bytes = max_out};
    sbx_proc *p;
    memset(r, 0, sizeof *r);
    int rc = sbx_proc_start(t->tab, &req, &p, NULL);
    if (rc < 0)
        return rc;
    rc = sbx_proc_wait_finished(p, (int)timeout_ms + 30000);
    uint64_t off = 0;
    ssize_t n = sbx_proc_read(p, SBX_STREAM_STDOUT, &off, r->out, sizeof r->out - 1);
    r->len = n > 0 ? (size_t)n : 0;
    r->out[r->len] = '\0';
    sbx_proc_status_get(p, &r->st);
    sbx_proc_unref(p);
    return rc;
}

static inline int tsbx_sh(tsbx *t, const char *cmd, uint32_t timeout_ms, tres *r)
{
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    return tsbx_runv(t, argv, timeout_ms, 0, r);
}

/* Runs /home/user/sbx_probe with up to 3 arguments. */
static inline int tsbx_probe(tsbx *t, const char *op, const char *a1, const char *a2, tres *r)
{
    const char *argv[] = {"/home/user/sbx_probe", op, a1, a2, NULL};
    return tsbx_runv(t, argv, 60000, 0, r);
}

/* After an attack: the host can still make a new sandbox that runs a command. */
static inline void tsbx_assert_fresh_works(void)
{
    tsbx t2;
    tres r;
    assert_int_equal(tsbx_open(&t2, NULL), 0);
    assert_int_equal(tsbx_sh(&t2, "echo alive", 10000, &r), 0);
    assert_string_equal(r.out, "alive\n");
    assert_int_equal(r.st.exit.exit_code, 0);
    tsbx_close(&t2);
}

#endif
