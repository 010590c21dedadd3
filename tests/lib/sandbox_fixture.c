/* sandbox_fixture.c: see sandbox_fixture.h. */
#include "sandbox_fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *tsbx_probe_path;

bool tsbx_skip_reason(const char **why)
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

/* Copies src to dst (0755, owned by uid): 0 or -1. */
static int copy_file(const char *src, const char *dst, uid_t uid)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    int rc = in >= 0 && out >= 0 ? 0 : -1;
    char buf[65536];
    ssize_t n;
    while (rc == 0 && (n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t)n) != n)
            rc = -1;
    if (rc == 0 && (fchown(out, uid, uid) < 0 || fchmod(out, 0755) < 0))
        rc = -1;
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    return rc;
}

int tsbx_open2(tsbx *t, const sbx_sandbox_limits *lim, const sbx_proctab_cfg *pc)
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
    if (!tsbx_probe_path)
        return 0;
    char dst[400];
    snprintf(dst, sizeof dst, "%s/sbx_probe", t->home);
    return copy_file(tsbx_probe_path, dst, sbx_sandbox_user_uid(t->sb));
}

int tsbx_open(tsbx *t, const sbx_sandbox_limits *lim)
{
    return tsbx_open2(t, lim, NULL);
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    remove(p);
    return 0;
}

void tsbx_rm_tree(const char *dir)
{
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

void tsbx_close(tsbx *t)
{
    sbx_proctab_destroy(t->tab);
    sbx_sandbox_destroy(t->sb);
    if (t->dir[0])
        tsbx_rm_tree(t->dir);
    memset(t, 0, sizeof *t);
}

int tsbx_runv(tsbx *t, const char *const *argv, uint32_t timeout_ms, uint64_t max_out, tres *r)
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

int tsbx_sh(tsbx *t, const char *cmd, uint32_t timeout_ms, tres *r)
{
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    return tsbx_runv(t, argv, timeout_ms, 0, r);
}

int tsbx_probe(tsbx *t, const char *op, const char *a1, const char *a2, tres *r)
{
    const char *argv[] = {"/home/user/sbx_probe", op, a1, a2, NULL};
    return tsbx_runv(t, argv, 60000, 0, r);
}

void tsbx_assert_fresh_works(void)
{
    tsbx t2;
    tres r;
    assert_int_equal(tsbx_open(&t2, NULL), 0);
    assert_int_equal(tsbx_sh(&t2, "echo alive", 10000, &r), 0);
    assert_string_equal(r.out, "alive\n");
    assert_int_equal(r.st.exit.exit_code, 0);
    tsbx_close(&t2);
}
