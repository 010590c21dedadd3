/* uidrange.c: the host-wide uid slot locks (see uidrange.h). */
#include "uidrange.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* mkdir -p for an absolute or relative path, each missing component with mode. */
static int mkdir_p(const char *path, mode_t mode)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return -ENAMETOOLONG;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* Locks slot k: returns the lock fd, -EWOULDBLOCK when another process holds it, or -errno. */
static int lock_slot(const char *run_dir, unsigned k, const char *data_dir)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/uid-slot-%02u.lock", run_dir, k) >= (int)sizeof path)
        return -ENAMETOOLONG;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        close(fd);
        return e == EWOULDBLOCK ? -EWOULDBLOCK : -e;
    }
    /* who holds it, for an operator reading the run dir */
    char who[4200];
    int n = snprintf(who, sizeof who, "pid=%ld data_dir=%s\n", (long)getpid(), data_dir);
    if (ftruncate(fd, 0) == 0 && n > 0)
        (void)!pwrite(fd, who, (size_t)n < sizeof who ? (size_t)n : sizeof who - 1, 0);
    return fd;
}

static void note_slot(const char *data_dir, unsigned slot)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/uid-slot", data_dir) >= (int)sizeof path)
        return;
    FILE *f = fopen(path, "we");
    if (!f)
        return;
    fprintf(f, "%u\n", slot);
    fclose(f);
}

static int preferred_slot(const char *data_dir)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/uid-slot", data_dir) >= (int)sizeof path)
        return -1;
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    unsigned v = 0;
    int ok = fscanf(f, "%u", &v) == 1 && v < SBX_UID_SLOTS;
    fclose(f);
    return ok ? (int)v : -1;
}

/* Takes slots [first, first + n) or none. Returns 0, -EWOULDBLOCK or -errno. */
static int take_run(const char *run_dir, const char *data_dir, unsigned first, unsigned n,
                    sbx_uid_range *r)
{
    for (unsigned i = 0; i < n; i++) {
        int fd = lock_slot(run_dir, first + i, data_dir);
        if (fd < 0) {
            for (unsigned j = 0; j < i; j++) {
                close(r->fds[j]);
                r->fds[j] = -1;
            }
            return fd;
        }
        r->fds[i] = fd;
    }
    r->slot = first;
    r->nslots = n;
    r->first = SBX_UID_RANGE_FIRST + first * SBX_UID_SLOT_IDS;
    r->count = (uint64_t)n * SBX_UID_SLOT_IDS;
    return 0;
}

int sbx_uid_range_reserve(const char *run_dir, const char *data_dir, uint64_t need,
                          sbx_uid_range *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    for (unsigned i = 0; i < SBX_UID_SLOTS; i++)
        out->fds[i] = -1;
    uint64_t n64 = (need + SBX_UID_SLOT_IDS - 1) / SBX_UID_SLOT_IDS;
    if (n64 == 0)
        n64 = 1;
    if (n64 > SBX_UID_SLOTS) {
        snprintf(err, errlen, "%llu host uids needed, at most %llu exist for sandboxes",
                 (unsigned long long)need, (unsigned long long)SBX_UID_SLOTS * SBX_UID_SLOT_IDS);
        return -EINVAL;
    }
    unsigned n = (unsigned)n64;
    int rc = mkdir_p(run_dir, 0755);
    if (rc < 0) {
        snprintf(err, errlen, "cannot create the run directory %s: %s", run_dir, strerror(-rc));
        return rc;
    }
    if ((rc = mkdir_p(data_dir, 0711)) < 0) { /* 0711: sandboxes traverse it to their homes */
        snprintf(err, errlen, "cannot create the data directory %s: %s", data_dir, strerror(-rc));
        return rc;
    }
    int pref = preferred_slot(data_dir);
    if (pref >= 0 && (unsigned)pref + n <= SBX_UID_SLOTS) {
        rc = take_run(run_dir, data_dir, (unsigned)pref, n, out);
        if (rc == 0)
            goto taken;
        if (rc != -EWOULDBLOCK)
            goto failed;
    }
    for (unsigned k = 0; k + n <= SBX_UID_SLOTS; k++) {
        if (pref >= 0 && k == (unsigned)pref)
            continue;
        rc = take_run(run_dir, data_dir, k, n, out);
        if (rc == 0)
            goto taken;
        if (rc != -EWOULDBLOCK)
            goto failed;
    }
    snprintf(err, errlen,
             "every host uid slot is held by other executors (lock files in %s): stop one or "
             "lower --max-sandboxes",
             run_dir);
    return -EBUSY;
failed:
    snprintf(err, errlen, "cannot lock a uid slot in %s: %s", run_dir, strerror(-rc));
    return rc;
taken:
    note_slot(data_dir, out->slot);
    return 0;
}

void sbx_uid_range_release(sbx_uid_range *r)
{
    for (unsigned i = 0; i < r->nslots; i++)
        if (r->fds[i] >= 0) {
            close(r->fds[i]);
            r->fds[i] = -1;
        }
    r->nslots = 0;
}
