/* diskpool.c: whether per-sandbox disk images work here (sbx_disk_setup, probed once at
 * start-up) and the blank images made ahead, so that a new project's home costs a rename
 * instead of mke2fs (~15 ms) and a mount (~2 ms).
 *
 * Job: the probe makes a small image in the pool's directory, formats, attaches, mounts and
 * writes it, and says which step failed when one does. A refill thread then keeps `blanks`
 * images of the server's default size formatted, attached and mounted (detached mounts, root
 * dir empty, owned by root) as blank-<n>.img in that directory; a create of a new home with
 * that size takes one (renamed to the home's path; the mount goes to the sandbox). Blanks
 * left by a previous run (the executor killed) are adopted again; half-made ones removed.
 *
 * Threads: the refill thread (joined by sbx_disk_shutdown) and callers of any thread.
 * Ownership: a taken blank's mount fd is the taker's. Locks: dp.lock alone. */
#include "sandbox_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

#define BLANKS_MAX 64
#define PROBE_BYTES (16ull << 20)
#define PROBE_INODES 1024
#define REFILL_QUIET_MS 30 /* mke2fs waits for the create that took a blank to finish */

typedef struct {
    char name[48]; /* blank-<n>.img in dp.dir */
    int mnt;
} blank;

static struct {
    pthread_mutex_t lock; /* everything below */
    pthread_cond_t cond;  /* a blank was taken, made, or stop */
    bool configured, running, stop;
    pthread_t thread;
    char dir[4096];
    uint64_t bytes, inodes;
    size_t target;
    blank ready[BLANKS_MAX];
    size_t nready, building;
    uint64_t taken, made, failures, seq;
    uint64_t last_take_us; /* refills wait REFILL_QUIET_MS after a take */
    sbx_disk_caps caps;
} dp = {.lock = PTHREAD_MUTEX_INITIALIZER};

__attribute__((constructor)) static void dp_cond_init(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&dp.cond, &ca);
    pthread_condattr_destroy(&ca);
}

/* ---------------------------------------------------------------- the probe */

/* Makes, mounts and writes a small image in dir; 0, or -errno with the failed step in why. */
static int probe(const char *dir, char *why, size_t whylen)
{
    if (!sbx__disk_have_mke2fs()) {
        snprintf(why, whylen, "mke2fs not found (install e2fsprogs)");
        return -ENOENT;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        int rc = -errno;
        snprintf(why, whylen, "cannot open %s: %s", dir, strerror(-rc));
        return rc;
    }
    char name[64];
    snprintf(name, sizeof name, ".probe-%d.img", (int)getpid());
    unlinkat(dfd, name, 0);
    int rc = sbx__disk_format(dfd, dir, name, PROBE_BYTES, PROBE_INODES, 0, why, whylen);
    int img = rc < 0 ? -1 : openat(dfd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    int m = img < 0 ? -1 : sbx__disk_mount_fd(img, dfd, why, whylen);
    if (img >= 0)
        close(img);
    if (rc == 0 && img < 0)
        rc = -errno;
    if (rc == 0 && m < 0)
        rc = m;
    if (m >= 0) {
        int f = openat(m, "probe", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        char block[4096] = {0};
        if (f < 0 || write(f, block, sizeof block) != (ssize_t)sizeof block || fsync(f) < 0) {
            rc = -errno;
            snprintf(why, whylen, "write to a mounted image: %s", strerror(-rc));
        }
        if (f >= 0)
            close(f);
        close(m);
    }
    unlinkat(dfd, name, 0);
    close(dfd);
    return rc;
}

/* ---------------------------------------------------------------- blanks */

/* The root of a fresh blank: lost+found gone (e2fsck remakes it when it needs one), 0700. */
static int blank_prepare(int mnt)
{
    int root = openat(mnt, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return -errno;
    int rc = 0;
    if (unlinkat(root, "lost+found", AT_REMOVEDIR) < 0 && errno != ENOENT)
        rc = -errno;
    if (rc == 0 && fchmod(root, 0700) < 0)
        rc = -errno;
    close(root);
    return rc;
}

/* Mounts the image name of dir_fd (made now or adopted). Returns the mount fd or -errno. */
static int blank_mount(int dir_fd, const char *name)
{
    char err[256] = "";
    int img = openat(dir_fd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (img < 0)
        return -errno;
    int m = sbx__disk_mount_fd(img, dir_fd, err, sizeof err);
    close(img);
    if (m < 0)
        SBX_LOG_ERRNO(SBX_LOG_WARN, "disk", m, "cannot mount a blank image name=%s err=\"%s\"",
                      name, err);
    return m;
}

/* Makes one blank (formatted under a temporary name, mounted, emptied, renamed). */
static int blank_make(int dir_fd, const char *dir, uint64_t bytes, uint64_t inodes, uint64_t seq,
                      blank *out)
{
    char tmp[64], err[512] = "";
    snprintf(tmp, sizeof tmp, ".blank-%llu.tmp", (unsigned long long)seq);
    snprintf(out->name, sizeof out->name, "blank-%llu.img", (unsigned long long)seq);
    int rc = sbx__disk_format(dir_fd, dir, tmp, bytes, inodes, 0, err, sizeof err);
    if (rc < 0) {
        SBX_LOG_ERRNO(SBX_LOG_WARN, "disk", rc, "cannot make a blank image err=\"%s\"", err);
        return rc;
    }
    int m = blank_mount(dir_fd, tmp);
    if (m >= 0 && (rc = blank_prepare(m)) == 0 &&
        renameat2(dir_fd, tmp, dir_fd, out->name, RENAME_NOREPLACE) < 0)
        rc = -errno;
    if (m < 0 || rc < 0) {
        if (m >= 0)
            close(m);
        unlinkat(dir_fd, tmp, 0);
        return m < 0 ? m : rc;
    }
    out->mnt = m;
    return 0;
}

/* Adopts the blanks a previous run left (right size: mounted again; else removed) and removes
 * half-made ones. Runs on the refill thread before it makes new ones. */
static void adopt(int dir_fd, uint64_t bytes, uint64_t inodes)
{
    int dfd = dup(dir_fd);
    DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        return;
    }
    uint64_t want = sbx__disk_image_bytes(bytes, inodes);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        size_t len = strlen(n);
        bool tmp = n[0] == '.' && len > 4 && strcmp(n + len - 4, ".tmp") == 0;
        bool img = strncmp(n, "blank-", 6) == 0 && len > 4 && strcmp(n + len - 4, ".img") == 0;
        if (tmp) {
            unlinkat(dir_fd, n, 0);
            continue;
        }
        if (!img || len >= sizeof dp.ready[0].name)
            continue;
        struct stat st;
        pthread_mutex_lock(&dp.lock);
        bool room = dp.nready < dp.target && !dp.stop;
        pthread_mutex_unlock(&dp.lock);
        if (!room || fstatat(dir_fd, n, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
            (uint64_t)st.st_size != want) {
            unlinkat(dir_fd, n, 0);
            continue;
        }
        int m = blank_mount(dir_fd, n);
        if (m < 0) {
            unlinkat(dir_fd, n, 0);
            continue;
        }
        pthread_mutex_lock(&dp.lock);
        blank *b = &dp.ready[dp.nready++];
        snprintf(b->name, sizeof b->name, "%s", n);
        b->mnt = m;
        uint64_t k = strtoull(n + 6, NULL, 10);
        if (k >= dp.seq)
            dp.seq = k + 1;
        pthread_cond_broadcast(&dp.cond);
        pthread_mutex_unlock(&dp.lock);
    }
    closedir(d);
}

static void *refill_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&dp.lock);
    char dir[sizeof dp.dir];
    snprintf(dir, sizeof dir, "%s", dp.dir);
    uint64_t bytes = dp.bytes, inodes = dp.inodes;
    pthread_mutex_unlock(&dp.lock);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        SBX_LOG_ERRNO(SBX_LOG_ERROR, "disk", errno, "blank images off: cannot open dir=%s", dir);
        return NULL;
    }
    adopt(dfd, bytes, inodes);
    pthread_mutex_lock(&dp.lock);
    while (!dp.stop) {
        if (dp.nready + dp.building >= dp.target) {
            pthread_cond_wait(&dp.cond, &dp.lock);
            continue;
        }
        uint64_t quiet = dp.last_take_us + REFILL_QUIET_MS * 1000ull, now = sbx_mono_us();
        if (dp.nready > 0 && now < quiet) { /* none ready: refill at once */
            struct timespec dl;
            sbx_deadline_in(&dl, (int)((quiet - now) / 1000) + 1);
            pthread_cond_timedwait(&dp.cond, &dp.lock, &dl);
            continue;
        }
        uint64_t seq = dp.seq++;
        dp.building++;
        pthread_mutex_unlock(&dp.lock);
        blank b;
        int rc = blank_make(dfd, dir, bytes, inodes, seq, &b);
        pthread_mutex_lock(&dp.lock);
        dp.building--;
        if (rc == 0 && !dp.stop && dp.nready < BLANKS_MAX) {
            dp.ready[dp.nready++] = b;
            dp.made++;
        } else if (rc == 0) {
            close(b.mnt); /* stopping: it stays on disk for the next start */
        } else {
            dp.failures++;
            struct timespec dl; /* do not spin on a persistent failure */
            sbx_deadline_in(&dl, 1000);
            pthread_cond_timedwait(&dp.cond, &dp.lock, &dl);
        }
        pthread_cond_broadcast(&dp.cond);
    }
    pthread_mutex_unlock(&dp.lock);
    close(dfd);
    return NULL;
}

int sbx__diskpool_take(const char *path, uint64_t bytes, uint64_t inodes)
{
    pthread_mutex_lock(&dp.lock);
    if (!dp.configured || dp.nready == 0 || bytes != dp.bytes || inodes != dp.inodes) {
        pthread_mutex_unlock(&dp.lock);
        return -ENOENT;
    }
    blank b = dp.ready[--dp.nready];
    char from[sizeof dp.dir + 64];
    snprintf(from, sizeof from, "%s/%s", dp.dir, b.name);
    pthread_mutex_unlock(&dp.lock);
    int rc = renameat2(AT_FDCWD, from, AT_FDCWD, path, RENAME_NOREPLACE) < 0 ? -errno : 0;
    pthread_mutex_lock(&dp.lock);
    if (rc < 0 && dp.nready < BLANKS_MAX) {
        dp.ready[dp.nready++] = b; /* still a good blank (e.g. EXDEV: the home is elsewhere) */
        b.mnt = -1;
    } else if (rc == 0) {
        dp.taken++;
        dp.last_take_us = sbx_mono_us();
    }
    pthread_cond_broadcast(&dp.cond);
    pthread_mutex_unlock(&dp.lock);
    if (rc < 0) {
        SBX_LOG_ERRNO(SBX_LOG_DEBUG, "disk", rc, "blank image not usable for path=%s", path);
        if (b.mnt >= 0)
            close(b.mnt);
        return rc;
    }
    return b.mnt;
}

/* ---------------------------------------------------------------- configuration */

static int start_refill_locked(void)
{
    if (dp.running || dp.target == 0)
        return 0;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 256 * 1024);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    dp.stop = false;
    int rc = -pthread_create(&dp.thread, &a, refill_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&a);
    dp.running = rc == 0;
    return rc;
}

int sbx_disk_setup(const sbx_disk_cfg *cfg, sbx_disk_caps *out)
{
    memset(out, 0, sizeof *out);
    if (!cfg || !cfg->dir || strlen(cfg->dir) >= sizeof dp.dir || cfg->blanks > BLANKS_MAX ||
        (cfg->blanks && (!cfg->bytes || !cfg->inodes)))
        return -EINVAL;
    pthread_mutex_lock(&dp.lock);
    bool done = dp.configured;
    pthread_mutex_unlock(&dp.lock);
    if (done)
        return -EALREADY;
    if (mkdir(cfg->dir, 0700) < 0 && errno != EEXIST) {
        int rc = -errno;
        snprintf(out->why, sizeof out->why, "cannot create %s: %s", cfg->dir, strerror(-rc));
        return 0;
    }
    uint64_t t0 = sbx_mono_us();
    int rc = probe(cfg->dir, out->why, sizeof out->why);
    out->probe_us = sbx_mono_us() - t0;
    if (rc < 0)
        return 0; /* no mechanism; out->why says why */
    out->mechanism = SBX_DISK_MECH_LOOP;
    pthread_mutex_lock(&dp.lock);
    snprintf(dp.dir, sizeof dp.dir, "%s", cfg->dir);
    dp.bytes = cfg->bytes;
    dp.inodes = cfg->inodes;
    dp.target = cfg->blanks;
    dp.taken = dp.made = dp.failures = 0; /* this configuration's */
    dp.caps = *out;
    dp.configured = true;
    rc = start_refill_locked();
    pthread_mutex_unlock(&dp.lock);
    return rc;
}

const char *sbx__disk_mechanism(void)
{
    pthread_mutex_lock(&dp.lock);
    const char *m = dp.configured ? dp.caps.mechanism : NULL;
    pthread_mutex_unlock(&dp.lock);
    return m;
}

void sbx_disk_shutdown(void)
{
    pthread_mutex_lock(&dp.lock);
    bool join = dp.running;
    dp.stop = true;
    pthread_cond_broadcast(&dp.cond);
    pthread_mutex_unlock(&dp.lock);
    if (join)
        pthread_join(dp.thread, NULL);
    pthread_mutex_lock(&dp.lock);
    for (size_t i = 0; i < dp.nready; i++)
        close(dp.ready[i].mnt); /* unmounted; the files stay for the next start */
    dp.nready = 0;
    dp.running = false;
    dp.configured = false;
    pthread_mutex_unlock(&dp.lock);
}

int sbx_disk_stats_get(sbx_disk_stats *st)
{
    memset(st, 0, sizeof *st);
    pthread_mutex_lock(&dp.lock);
    st->target = dp.target;
    st->ready = dp.nready;
    st->building = dp.building;
    st->taken = dp.taken;
    st->made = dp.made;
    st->failures = dp.failures;
    pthread_mutex_unlock(&dp.lock);
    return 0;
}

int sbx_disk_wait(size_t ready, int timeout_ms)
{
    struct timespec dl;
    sbx_deadline_in(&dl, timeout_ms < 0 ? 0 : timeout_ms);
    int rc = 0;
    pthread_mutex_lock(&dp.lock);
    while (dp.nready < ready && rc == 0) {
        if (timeout_ms < 0)
            pthread_cond_wait(&dp.cond, &dp.lock);
        else if (pthread_cond_timedwait(&dp.cond, &dp.lock, &dl) == ETIMEDOUT && dp.nready < ready)
            rc = -ETIMEDOUT;
    }
    pthread_mutex_unlock(&dp.lock);
    return rc;
}
