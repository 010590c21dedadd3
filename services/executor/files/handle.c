/* handle.c: the sbx_files handle (see files.h) and what every operation shares: the switch of
 * the calling thread's filesystem credentials to the sandbox user (setfsuid/setfsgid and an
 * empty supplementary group list, by raw syscalls so only this thread changes; restored before
 * the operation returns), ids reported as seen inside the sandbox, and error messages.
 *
 * Threads: a handle is immutable after sbx_files_new and used from any number of threads at
 * once; credentials are per thread. Ownership: the handle owns a duplicate of the root fd. */
#include "files_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "status.h"

/* ---- errors ------------------------------------------------------------------------------- */

const char *sbx__files_strerror(int err)
{
    const char *s = strerrordesc_np(err < 0 ? -err : err);
    return s ? s : "unknown error";
}

void sbx__files_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int sbx__files_fail(char *err, size_t errlen, int rc, const char *what)
{
    sbx__files_seterr(err, errlen, "%s: %s", what, sbx__files_strerror(rc));
    return rc;
}

int sbx_files_status(int err)
{
    if (err < 0)
        err = -err;
    if (err == E2BIG)
        return SBX_RESOURCE_EXHAUSTED;
    if (err == EBUSY || err == ELOOP) /* ELOOP: symlinks loop, or nest over 40 deep */
        return SBX_FAILED_PRECONDITION;
    if (err == EXDEV) /* a rename across mounts, a path leaving the root */
        return SBX_INVALID_ARGUMENT;
    return sbx_status_from_errno(err);
}

/* ---- small helpers ------------------------------------------------------------------------ */

void sbx__files_random_name(char *buf, size_t len, const char *prefix)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        r ^= (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ULL ^ (uint64_t)getpid();
    }
    snprintf(buf, len, "%s%016llx", prefix, (unsigned long long)r);
}

int sbx__files_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* ---- ids ---------------------------------------------------------------------------------- */

static uint32_t map_id(const sbx_files_idmap *m, uint32_t host)
{
    if (m->count == 0)
        return host;
    if (host >= m->outside && host - m->outside < m->count)
        return m->inside + (host - m->outside);
    return SBX_FILES_OVERFLOW_ID;
}

static void derive_map(sbx_files_idmap *m, uint32_t user, uint32_t host)
{
    if (m->count)
        return;
    if (host == (uint32_t)-1)
        return; /* no switch: report host ids as they are */
    if (host >= user) {
        m->inside = 0;
        m->outside = host - user;
        m->count = 65536;
    } else {
        m->inside = user;
        m->outside = host;
        m->count = 1;
    }
}

static sbx_file_type type_of(mode_t m)
{
    if (S_ISREG(m))
        return SBX_FILE_REGULAR;
    if (S_ISDIR(m))
        return SBX_FILE_DIR;
    if (S_ISLNK(m))
        return SBX_FILE_SYMLINK;
    return SBX_FILE_OTHER;
}

void sbx__files_fill_info(const sbx_files *fs, const struct stat *st, sbx_file_info *out)
{
    out->type = type_of(st->st_mode);
    out->size = (uint64_t)st->st_size;
    out->mode = st->st_mode & 07777;
    out->mtime_ms = (int64_t)st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000;
    out->uid = map_id(&fs->uid_map, st->st_uid);
    out->gid = map_id(&fs->gid_map, st->st_gid);
    out->symlink_target = NULL;
}

void sbx_file_info_clear(sbx_file_info *info)
{
    if (!info)
        return;
    free(info->symlink_target);
    memset(info, 0, sizeof *info);
}

/* ---- credentials -------------------------------------------------------------------------- */

/* Saves the thread's supplementary groups into c (0 or -errno). */
static int save_groups(sbx__creds *c)
{
    int n = getgroups(0, NULL);
    if (n < 0)
        return -errno;
    if (n > (int)(sizeof c->groups_buf / sizeof c->groups_buf[0])) {
        c->groups = malloc((size_t)n * sizeof(gid_t));
        if (!c->groups)
            return -ENOMEM;
    }
    if (n > 0)
        n = getgroups(n, c->groups);
    if (n < 0) {
        int rc = -errno;
        if (c->groups != c->groups_buf)
            free(c->groups);
        c->groups = c->groups_buf;
        return rc;
    }
    c->ngroups = n;
    return 0;
}

int sbx__files_creds_enter(const sbx_files *fs, sbx__creds *c)
{
    c->on = false;
    c->ngroups = 0;
    c->groups = c->groups_buf;
    if (!fs->switch_creds)
        return 0;
    int rc = save_groups(c);
    if (rc < 0)
        return rc;
    int n = c->ngroups;
    /* raw syscalls: glibc's setgroups() would apply to every thread of the process */
    if (n > 0 && syscall(SYS_setgroups, 0, NULL) != 0)
        goto out_perm;
    /* setfs[ug]id report the previous id, never an error: the switch itself is verified once,
     * in sbx_files_new (fs->verified), as the process's capabilities do not change */
    c->fsgid = (gid_t)setfsgid(fs->host_gid);
    if (!fs->verified && (gid_t)setfsgid((gid_t)-1) != fs->host_gid)
        goto out_restore_gid;
    c->fsuid = (uid_t)setfsuid(fs->host_uid);
    if (!fs->verified && (uid_t)setfsuid((uid_t)-1) != fs->host_uid) {
        setfsuid(c->fsuid);
        goto out_restore_gid;
    }
    c->on = true;
    return 0;

out_restore_gid:
    setfsgid(c->fsgid);
    if (n > 0)
        syscall(SYS_setgroups, (size_t)n, c->groups);
out_perm:
    if (c->groups != c->groups_buf)
        free(c->groups);
    c->groups = c->groups_buf;
    return -EPERM;
}

void sbx__files_creds_leave(sbx__creds *c)
{
    if (c->on) {
        setfsuid(c->fsuid); /* first: regains the fs capabilities */
        setfsgid(c->fsgid);
        if (c->ngroups > 0)
            syscall(SYS_setgroups, (size_t)c->ngroups, c->groups);
        c->on = false;
    }
    if (c->groups != c->groups_buf)
        free(c->groups);
    c->groups = c->groups_buf;
}

/* ---- handle ------------------------------------------------------------------------------- */

void sbx_files_config_init(sbx_files_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->home = SBX_FILES_HOME;
    cfg->user_uid = SBX_FILES_USER_ID;
    cfg->user_gid = SBX_FILES_USER_ID;
    cfg->host_uid = (uid_t)-1;
    cfg->host_gid = (gid_t)-1;
}

int sbx_files_new(int rootfd, const sbx_files_config *cfg, sbx_files **out)
{
    *out = NULL;
    const char *home = cfg->home ? cfg->home : SBX_FILES_HOME;
    size_t hl = strlen(home);
    if (home[0] != '/' || hl > 255)
        return -EINVAL;
    if ((cfg->host_uid == (uid_t)-1) != (cfg->host_gid == (gid_t)-1))
        return -EINVAL;
    sbx_files *fs = calloc(1, sizeof *fs);
    if (!fs)
        return -ENOMEM;
    fs->home = strdup(home);
    fs->rootfd = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
    if (!fs->home || fs->rootfd < 0) {
        int rc = fs->home ? -errno : -ENOMEM;
        sbx_files_free(fs);
        return rc;
    }
    while (hl > 1 && fs->home[hl - 1] == '/')
        fs->home[--hl] = '\0';
    fs->home_len = hl;
    fs->switch_creds = cfg->host_uid != (uid_t)-1;
    fs->host_uid = cfg->host_uid;
    fs->host_gid = cfg->host_gid;
    fs->uid_map = cfg->uid_map;
    fs->gid_map = cfg->gid_map;
    derive_map(&fs->uid_map, cfg->user_uid, (uint32_t)cfg->host_uid);
    derive_map(&fs->gid_map, cfg->user_gid, (uint32_t)cfg->host_gid);
    fs->max_file_size = cfg->max_file_size;
    sbx__creds c;
    int rc = sbx__files_creds_enter(fs, &c);
    sbx__files_creds_leave(&c);
    if (rc < 0) {
        sbx_files_free(fs);
        return rc;
    }
    fs->verified = true;
    *out = fs;
    return 0;
}

void sbx_files_free(sbx_files *fs)
{
    if (!fs)
        return;
    if (fs->rootfd >= 0)
        close(fs->rootfd);
    free(fs->home);
    free(fs);
}

int sbx_files_dup(const sbx_files *fs, sbx_files **out)
{
    *out = NULL;
    sbx_files *d = calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    *d = *fs;
    d->home = strdup(fs->home);
    d->rootfd = fcntl(fs->rootfd, F_DUPFD_CLOEXEC, 3);
    if (!d->home || d->rootfd < 0) {
        int rc = d->home ? -errno : -ENOMEM;
        sbx_files_free(d);
        return rc;
    }
    *out = d;
    return 0;
}
