/* files.c: the sandbox file layer (see files.h). Paths are validated, joined to the home when
 * relative, and resolved with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) from the
 * sandbox's root fd. After that only single-component *at() calls on those fds are used, each
 * with its no-follow form, so no step ever resolves a symlink against the executor's own root.
 * Operations run with the thread's fs credentials set to the sandbox user (sbx__creds). */
#include "files.h"

#include "status.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#define SYMLINK_HOPS_MAX 40
#define OPENAT2_RETRIES 32

struct sbx_files {
    int rootfd;
    char *home;
    size_t home_len;
    bool switch_creds, verified;
    uid_t host_uid;
    gid_t host_gid;
    sbx_files_idmap uid_map, gid_map;
    uint64_t max_file_size;
};

struct sbx_files_writer {
    sbx_files *fs;
    int dirfd;     /* O_PATH fd of the target's directory */
    int fd;        /* the unnamed (or hidden temp) file being written */
    char *name;    /* target name in dirfd */
    char *tmpname; /* hidden temp name when O_TMPFILE was not available */
    uint64_t size, max;
    bool sync, failed;
};

/* ---- small helpers ------------------------------------------------------------------------ */

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

/* Records "<what>: <strerror>" and returns rc (a negative errno). */
static int fail(char *err, size_t errlen, int rc, const char *what)
{
    sbx__files_seterr(err, errlen, "%s: %s", what, sbx__files_strerror(rc));
    return rc;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

int sbx_files_status(int err)
{
    if (err < 0)
        err = -err;
    if (err == E2BIG)
        return SBX_RESOURCE_EXHAUSTED;
    if (err == EBUSY)
        return SBX_FAILED_PRECONDITION;
    return sbx_status_from_errno(err);
}

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

/* ---- credentials -------------------------------------------------------------------------- */

int sbx__files_creds_enter(const sbx_files *fs, sbx__creds *c)
{
    c->on = false;
    c->ngroups = 0;
    c->groups = c->groups_buf;
    if (!fs->switch_creds)
        return 0;
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
        return rc;
    }
    c->ngroups = n;
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

/* ---- paths -------------------------------------------------------------------------------- */

int sbx_files_check_path(const char *field, const char *path, size_t len, char *err, size_t errlen)
{
    if (!path || len == 0) {
        sbx__files_seterr(err, errlen, "%s: must not be empty", field);
        return -EINVAL;
    }
    if (memchr(path, '\0', len)) {
        sbx__files_seterr(err, errlen, "%s: contains a NUL byte", field);
        return -EINVAL;
    }
    if (len > SBX_FILES_PATH_MAX) {
        sbx__files_seterr(err, errlen, "%s: longer than %d bytes", field, SBX_FILES_PATH_MAX);
        return -ENAMETOOLONG;
    }
    size_t comp = 0;
    for (size_t i = 0; i < len; i++) {
        comp = path[i] == '/' ? 0 : comp + 1;
        if (comp > SBX_FILES_NAME_MAX) {
            sbx__files_seterr(err, errlen, "%s: a component is longer than %d bytes", field,
                              SBX_FILES_NAME_MAX);
            return -ENAMETOOLONG;
        }
    }
    return 0;
}

int sbx__files_full_path(const sbx_files *fs, const char *field, const char *path, char *buf,
                         char *err, size_t errlen)
{
    size_t len = path ? strnlen(path, SBX_FILES_PATH_MAX + 1) : 0;
    int rc = sbx_files_check_path(field, path, len, err, errlen);
    if (rc < 0)
        return rc;
    if (path[0] == '/') {
        memcpy(buf, path, len + 1);
    } else {
        memcpy(buf, fs->home, fs->home_len);
        buf[fs->home_len] = '/';
        memcpy(buf + fs->home_len + 1, path, len + 1);
    }
    return 0;
}

int sbx__files_open_in_root(const sbx_files *fs, const char *p, int flags)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    for (int i = 0; i < OPENAT2_RETRIES; i++) {
        long fd = syscall(SYS_openat2, fs->rootfd, p, &how, sizeof how);
        if (fd >= 0)
            return (int)fd;
        /* EAGAIN: a concurrent rename raced a `..` walk; the kernel asks for a retry */
        if (errno != EAGAIN && errno != EINTR)
            return -errno;
    }
    return -EAGAIN;
}

/* Splits an in-root path in place into its parent and last component. Trailing slashes are
 * dropped. -EINVAL when the last component is "", "." or ".." (no name to act on). */
static int split_last(char *p, const char **parent, const char **name)
{
    size_t len = strlen(p);
    while (len > 1 && p[len - 1] == '/')
        p[--len] = '\0';
    char *slash = strrchr(p, '/');
    if (!slash) /* cannot happen for in-root absolute paths */
        return -EINVAL;
    *name = slash + 1;
    if (**name == '\0' || strcmp(*name, ".") == 0 || strcmp(*name, "..") == 0)
        return -EINVAL;
    if (slash == p) {
        *parent = "/";
    } else {
        *slash = '\0';
        *parent = p;
    }
    return 0;
}

int sbx__files_check_fs(int fd)
{
    struct statfs s;
    if (fstatfs(fd, &s) != 0)
        return -errno;
    switch ((unsigned long)s.f_type) {
    case PROC_SUPER_MAGIC:
    case SYSFS_MAGIC:
    case DEBUGFS_MAGIC:
    case TRACEFS_MAGIC:
    case SECURITYFS_MAGIC:
    case CGROUP_SUPER_MAGIC:
    case CGROUP2_SUPER_MAGIC:
    case BPF_FS_MAGIC:
    case DEVPTS_SUPER_MAGIC:
    case EFIVARFS_MAGIC:
    case PSTOREFS_MAGIC:
    case SELINUX_MAGIC:
    case SMACK_MAGIC:
    case BINFMTFS_MAGIC:
    case NSFS_MAGIC:
    case 0x62656570UL: /* configfs */
        return -EPERM;
    default:
        return 0;
    }
}

int sbx__files_fix_mode(int fd, uint32_t mode)
{
    struct stat st;
    if (fstat(fd, &st) == 0 && (st.st_mode & 07777) == mode)
        return 0; /* the common case: the umask took nothing away, no journaled chmod */
    return fchmod(fd, mode) == 0 ? 0 : -errno;
}

int sbx__files_fix_mode_at(int dirfd, const char *name, uint32_t mode)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode) &&
        (st.st_mode & 07777) == mode)
        return 0;
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fchmod(fd, mode) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

int sbx__files_mkdir_p(const sbx_files *fs, const char *p, uint32_t mode, int *out, char **created)
{
    if (created)
        *created = NULL;
    int fd = sbx__files_open_in_root(fs, p, O_PATH | O_DIRECTORY);
    if (fd != -ENOENT) {
        *out = fd;
        return fd < 0 ? fd : 0;
    }
    size_t len = strlen(p);
    char *buf = malloc(len + 1);
    if (!buf)
        return -ENOMEM;
    memcpy(buf, p, len + 1);
    /* walk back to the deepest ancestor that exists */
    size_t end = len;
    for (;;) {
        while (end > 1 && buf[end - 1] == '/')
            end--;
        while (end > 1 && buf[end - 1] != '/')
            end--;
        if (end <= 1) {
            end = 1;
            fd = sbx__files_open_in_root(fs, "/", O_PATH | O_DIRECTORY);
            break;
        }
        char c = buf[end];
        buf[end] = '\0';
        fd = sbx__files_open_in_root(fs, buf, O_PATH | O_DIRECTORY);
        buf[end] = c;
        if (fd != -ENOENT)
            break;
    }
    if (fd < 0)
        goto out;
    /* create forward, one component at a time, re-resolving each prefix inside the root */
    while (end < len) {
        while (end < len && buf[end] == '/')
            end++;
        size_t start = end;
        while (end < len && buf[end] != '/')
            end++;
        if (start == end)
            break;
        char c = buf[end];
        buf[end] = '\0';
        const char *comp = buf + start;
        int rc = 0;
        bool dots = strcmp(comp, ".") == 0 || strcmp(comp, "..") == 0;
        if (!dots) {
            if (mkdirat(fd, comp, mode) == 0) {
                rc = sbx__files_fix_mode_at(fd, comp, mode);
                if (created && !*created && rc == 0)
                    *created = strdup(buf);
            } else if (errno != EEXIST) {
                rc = -errno;
            }
        }
        int next = rc < 0 ? rc : sbx__files_open_in_root(fs, buf, O_PATH | O_DIRECTORY);
        buf[end] = c;
        close(fd);
        fd = next;
        if (fd < 0)
            goto out;
    }
out:
    free(buf);
    if (fd < 0 && created) {
        free(*created);
        *created = NULL;
    }
    *out = fd;
    return fd < 0 ? fd : 0;
}

/* Opens the directory an in-root path's last component lives in. */
static int open_parent(const sbx_files *fs, const char *parent, bool create)
{
    int fd;
    if (create) {
        int rc = sbx__files_mkdir_p(fs, parent, SBX_FILES_MODE_DIR, &fd, NULL);
        if (rc < 0)
            return rc;
    } else {
        fd = sbx__files_open_in_root(fs, parent, O_PATH | O_DIRECTORY);
        if (fd < 0)
            return fd;
    }
    int rc = sbx__files_check_fs(fd);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

/* ---- stat --------------------------------------------------------------------------------- */

void sbx_file_info_clear(sbx_file_info *info)
{
    if (!info)
        return;
    free(info->symlink_target);
    memset(info, 0, sizeof *info);
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

static void fill_info(const sbx_files *fs, const struct stat *st, sbx_file_info *out)
{
    out->type = type_of(st->st_mode);
    out->size = (uint64_t)st->st_size;
    out->mode = st->st_mode & 07777;
    out->mtime_ms = (int64_t)st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000;
    out->uid = map_id(&fs->uid_map, st->st_uid);
    out->gid = map_id(&fs->gid_map, st->st_gid);
    out->symlink_target = NULL;
}

/* Reads the target of the symlink dirfd/name ("" with an O_PATH fd of the link itself). */
static int read_link(int dirfd, const char *name, size_t hint, char **out)
{
    size_t cap = hint > 0 && hint < SBX_FILES_PATH_MAX ? hint + 1 : SBX_FILES_PATH_MAX + 1;
    char *buf = malloc(cap);
    if (!buf)
        return -ENOMEM;
    ssize_t n = readlinkat(dirfd, name, buf, cap);
    if (n < 0 || (size_t)n >= cap) {
        int rc = n < 0 ? -errno : -ENAMETOOLONG;
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *out = buf;
    return 0;
}

int sbx_files_stat(sbx_files *fs, const char *path, sbx_file_info *out, char *err, size_t errlen)
{
    char full[SBX__PATHBUF];
    memset(out, 0, sizeof *out);
    int rc = sbx__files_full_path(fs, "path", path, full, err, errlen);
    if (rc < 0)
        return rc;
    sbx__creds c;
    rc = sbx__files_creds_enter(fs, &c);
    if (rc < 0)
        return fail(err, errlen, rc, "stat: switch to the sandbox user");
    /* O_PATH|O_NOFOLLOW opens a final symlink itself: lstat semantics in one resolution */
    int fd = sbx__files_open_in_root(fs, full, O_PATH | O_NOFOLLOW);
    if (fd < 0) {
        rc = fail(err, errlen, fd, "stat path");
        goto out;
    }
    struct stat st;
    if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
        rc = fail(err, errlen, -errno, "stat path");
        goto out_close;
    }
    fill_info(fs, &st, out);
    if (S_ISLNK(st.st_mode) && sbx__files_check_fs(fd) == 0) {
        rc = read_link(fd, "", (size_t)st.st_size, &out->symlink_target);
        if (rc < 0)
            fail(err, errlen, rc, "stat path: readlink");
    }
out_close:
    close(fd);
out:
    sbx__files_creds_leave(&c);
    return rc;
}

/* ---- read --------------------------------------------------------------------------------- */

int sbx_files_open_read(sbx_files *fs, const char *path, int *fdout, sbx_file_info *info, char *err,
                        size_t errlen)
{
    char full[SBX__PATHBUF];
    *fdout = -1;
    if (info)
        memset(info, 0, sizeof *info);
    int rc = sbx__files_full_path(fs, "path", path, full, err, errlen);
    if (rc < 0)
        return rc;
    sbx__creds c;
    rc = sbx__files_creds_enter(fs, &c);
    if (rc < 0)
        return fail(err, errlen, rc, "read: switch to the sandbox user");
    int pfd = sbx__files_open_in_root(fs, full, O_PATH);
    if (pfd < 0) {
        rc = fail(err, errlen, pfd, "read path");
        goto out;
    }
    struct stat st;
    if (fstat(pfd, &st) != 0) {
        rc = fail(err, errlen, -errno, "read path");
        goto out_close;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = fail(err, errlen, -EISDIR, "read path");
        goto out_close;
    }
    if (!S_ISREG(st.st_mode)) {
        sbx__files_seterr(err, errlen, "read path: not a regular file");
        rc = -EINVAL;
        goto out_close;
    }
    rc = sbx__files_check_fs(pfd);
    if (rc < 0) {
        sbx__files_seterr(err, errlen, "read path: on a kernel pseudo filesystem");
        goto out_close;
    }
    /* reopen the very inode we checked; permission is checked now, as the sandbox user */
    char self[64];
    snprintf(self, sizeof self, "/proc/self/fd/%d", pfd);
    int fd = open(self, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        rc = fail(err, errlen, -errno, "read path");
        goto out_close;
    }
    if (info)
        fill_info(fs, &st, info);
    *fdout = fd;
out_close:
    close(pfd);
out:
    sbx__files_creds_leave(&c);
    return rc;
}

/* ---- write -------------------------------------------------------------------------------- */

static void random_name(char *buf, size_t len, const char *prefix)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        r ^= (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ULL ^ (uint64_t)getpid();
    }
    snprintf(buf, len, "%s%016llx", prefix, (unsigned long long)r);
}

static int copy_content(int from, int to, uint64_t len)
{
    uint64_t done = 0;
    bool cfr = true;
    char buf[65536];
    while (done < len) {
        ssize_t n;
        if (cfr) {
            n = copy_file_range(from, NULL, to, NULL, len - done, 0);
            if (n < 0 &&
                (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
                cfr = false;
                continue;
            }
        } else {
            n = read(from, buf, sizeof buf);
            if (n > 0) {
                for (ssize_t off = 0; off < n;) {
                    ssize_t w = write(to, buf + off, (size_t)(n - off));
                    if (w < 0 && errno == EINTR)
                        continue;
                    if (w < 0)
                        return -errno;
                    off += w;
                }
            }
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break; /* the file shrank meanwhile: keep what was there */
        done += (uint64_t)n;
    }
    return 0;
}

/* Follows final symlinks (inside the root) until `full` names a non-symlink or nothing.
 * On success *dirfd is the O_PATH parent, *name points into full, *st is filled when the
 * target exists (*exists). */
static int resolve_target(const sbx_files *fs, char *full, bool parents, int *dirfd,
                          const char **name, struct stat *st, bool *exists, char *err,
                          size_t errlen)
{
    for (int hop = 0;; hop++) {
        const char *parent;
        if (split_last(full, &parent, name) < 0) {
            sbx__files_seterr(err, errlen, "path: does not name a file");
            return -EINVAL;
        }
        int pfd = open_parent(fs, parent, parents);
        if (pfd < 0)
            return fail(err, errlen, pfd, "path: parent directory");
        if (fstatat(pfd, *name, st, AT_SYMLINK_NOFOLLOW) != 0) {
            int rc = -errno;
            if (rc != -ENOENT) {
                close(pfd);
                return fail(err, errlen, rc, "path");
            }
            *exists = false;
            *dirfd = pfd;
            return 0;
        }
        if (!S_ISLNK(st->st_mode)) {
            *exists = true;
            *dirfd = pfd;
            return 0;
        }
        char *target;
        int rc = hop >= SYMLINK_HOPS_MAX ? -ELOOP : read_link(pfd, *name, 0, &target);
        close(pfd);
        if (rc < 0)
            return fail(err, errlen, rc, "path: symlink");
        /* relative targets are relative to the link's directory, resolved in-root again */
        char next[SBX__PATHBUF];
        int n;
        if (target[0] == '/')
            n = snprintf(next, sizeof next, "%s", target);
        else
            n = snprintf(next, sizeof next, "%s/%s", strcmp(parent, "/") ? parent : "", target);
        free(target);
        if (n < 0 || (size_t)n > SBX_FILES_PATH_MAX)
            return fail(err, errlen, -ENAMETOOLONG, "path: symlink target");
        memcpy(full, next, (size_t)n + 1);
    }
}

/* `named`: write to a hidden temp name rather than an unnamed O_TMPFILE. One journaled
 * operation fewer on ext4 (no orphan-list add/remove), worth it when begin and commit follow
 * each other at once (sbx_files_write); a streaming upload keeps the unnamed file, which
 * nothing can see and which vanishes by itself if the executor dies mid-upload. */
static int write_begin(sbx_files *fs, const char *path, const sbx_files_write_opts *opts,
                       bool named, sbx_files_writer **out, char *err, size_t errlen)
{
    static const sbx_files_write_opts defaults;
    if (!opts)
        opts = &defaults;
    *out = NULL;
    if (opts->mode & ~0777u) {
        sbx__files_seterr(err, errlen, "mode: only permission bits (0777) are allowed");
        return -EINVAL;
    }
    char full[SBX__PATHBUF];
    int rc = sbx__files_full_path(fs, "path", path, full, err, errlen);
    if (rc < 0)
        return rc;
    sbx_files_writer *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->fs = fs;
    w->dirfd = w->fd = -1;
    w->sync = opts->sync;
    w->max = opts->max_size ? opts->max_size : fs->max_file_size;
    sbx__creds c;
    rc = sbx__files_creds_enter(fs, &c);
    if (rc < 0) {
        free(w);
        return fail(err, errlen, rc, "write: switch to the sandbox user");
    }
    const char *name;
    struct stat st;
    bool exists = false;
    rc = resolve_target(fs, full, !opts->no_parents, &w->dirfd, &name, &st, &exists, err, errlen);
    if (rc < 0)
        goto out_fail;
    if (exists && S_ISDIR(st.st_mode)) {
        rc = fail(err, errlen, -EISDIR, "path");
        goto out_fail;
    }
    w->name = strdup(name);
    if (!w->name) {
        rc = -ENOMEM;
        goto out_fail;
    }
    uint32_t mode = opts->mode ? opts->mode : exists ? (st.st_mode & 0777) : SBX_FILES_MODE_FILE;
    w->fd = named ? -1 : openat(w->dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, mode);
    if (named || (w->fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL))) {
        char tmp[64];
        random_name(tmp, sizeof tmp, ".sbx-tmp-");
        w->tmpname = strdup(tmp);
        if (!w->tmpname) {
            rc = -ENOMEM;
            goto out_fail;
        }
        w->fd = openat(w->dirfd, tmp, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, mode);
        if (w->fd < 0) {
            free(w->tmpname);
            w->tmpname = NULL;
        }
    }
    if (w->fd < 0) {
        rc = fail(err, errlen, -errno, "path: create");
        goto out_fail;
    }
    rc = sbx__files_fix_mode(w->fd, mode);
    if (rc < 0) {
        fail(err, errlen, rc, "path: chmod");
        goto out_fail;
    }
    if (opts->append && exists) {
        int src = openat(w->dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (src < 0) {
            rc = fail(err, errlen, -errno, "path: open for append");
            goto out_fail;
        }
        struct stat sst;
        if (fstat(src, &sst) != 0 || !S_ISREG(sst.st_mode)) {
            close(src);
            sbx__files_seterr(err, errlen, "path: append target is not a regular file");
            rc = -EINVAL;
            goto out_fail;
        }
        if (w->max && (uint64_t)sst.st_size > w->max) {
            close(src);
            sbx__files_seterr(err, errlen, "path: file would exceed %llu bytes",
                              (unsigned long long)w->max);
            rc = -EFBIG;
            goto out_fail;
        }
        rc = copy_content(src, w->fd, (uint64_t)sst.st_size);
        close(src);
        if (rc < 0) {
            fail(err, errlen, rc, "path: copy for append");
            goto out_fail;
        }
        off_t end = lseek(w->fd, 0, SEEK_CUR);
        w->size = end > 0 ? (uint64_t)end : 0;
    }
    sbx__files_creds_leave(&c);
    *out = w;
    return 0;

out_fail:
    sbx__files_creds_leave(&c);
    sbx_files_write_abort(w);
    return rc;
}

int sbx_files_write_begin(sbx_files *fs, const char *path, const sbx_files_write_opts *opts,
                          sbx_files_writer **out, char *err, size_t errlen)
{
    return write_begin(fs, path, opts, false, out, err, errlen);
}

int sbx_files_write_chunk(sbx_files_writer *w, const void *buf, size_t len, char *err,
                          size_t errlen)
{
    if (w->failed) {
        sbx__files_seterr(err, errlen, "write: an earlier chunk failed");
        return -EINVAL;
    }
    if (w->max && (len > w->max || w->size > w->max - len)) {
        w->failed = true;
        sbx__files_seterr(err, errlen, "data: file would exceed %llu bytes",
                          (unsigned long long)w->max);
        return -EFBIG;
    }
    const char *p = buf;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(w->fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            w->failed = true;
            return fail(err, errlen, -errno, "write data");
        }
        p += n;
        left -= (size_t)n;
    }
    w->size += len;
    return 0;
}

int sbx_files_write_commit(sbx_files_writer *w, uint64_t *size, char *err, size_t errlen)
{
    int rc;
    if (w->failed) {
        sbx__files_seterr(err, errlen, "write: an earlier chunk failed");
        sbx_files_write_abort(w);
        return -EINVAL;
    }
    sbx__creds c;
    rc = sbx__files_creds_enter(w->fs, &c);
    if (rc < 0) {
        fail(err, errlen, rc, "write: switch to the sandbox user");
        sbx_files_write_abort(w);
        return rc;
    }
    if (w->sync && fdatasync(w->fd) != 0) {
        rc = fail(err, errlen, -errno, "write: fdatasync");
        goto out;
    }
    if (!w->tmpname) {
        char self[64];
        snprintf(self, sizeof self, "/proc/self/fd/%d", w->fd);
        if (linkat(AT_FDCWD, self, w->dirfd, w->name, AT_SYMLINK_FOLLOW) == 0)
            goto out_synced; /* a new file: one atomic link, nothing to replace */
        if (errno != EEXIST) {
            rc = fail(err, errlen, -errno, "write: link into place");
            goto out;
        }
        char tmp[64];
        random_name(tmp, sizeof tmp, ".sbx-tmp-");
        if (linkat(AT_FDCWD, self, w->dirfd, tmp, AT_SYMLINK_FOLLOW) != 0) {
            rc = fail(err, errlen, -errno, "write: link into place");
            goto out;
        }
        w->tmpname = strdup(tmp);
        if (!w->tmpname) {
            unlinkat(w->dirfd, tmp, 0);
            rc = -ENOMEM;
            goto out;
        }
    }
    if (w->sync || renameat2(w->dirfd, w->tmpname, w->dirfd, w->name, RENAME_EXCHANGE) != 0) {
        /* sync, or the target vanished / the fs lacks RENAME_EXCHANGE: a plain rename */
        if (renameat(w->dirfd, w->tmpname, w->dirfd, w->name) != 0) {
            rc = fail(err, errlen, -errno, "write: rename into place");
            goto out; /* abort unlinks the temp name */
        }
    } else if (unlinkat(w->dirfd, w->tmpname, 0) != 0) {
        /* Exchanged: the old file now has the temp name. (Exchange rather than rename-over
         * because ext4 flushes the new file's data on rename-over, ~0.25 ms for 4 KiB; the
         * caller asks for durability with opts.sync.) A directory that raced in place of
         * the target is put back and the write refused. */
        rc = -errno;
        if (rc == -EISDIR || rc == -EPERM) {
            renameat2(w->dirfd, w->tmpname, w->dirfd, w->name, RENAME_EXCHANGE);
            rc = fail(err, errlen, -EISDIR, "path");
            goto out;
        }
        fail(err, errlen, rc, "write: removing the replaced file");
        rc = 0; /* the new content is in place; only the old copy lingers under a temp name */
    }
    free(w->tmpname);
    w->tmpname = NULL;
out_synced:
    if (w->sync) {
        int d = openat(w->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (d >= 0) {
            fsync(d);
            close(d);
        }
    }
    if (size)
        *size = w->size;
out:
    sbx__files_creds_leave(&c);
    sbx_files_write_abort(w);
    return rc;
}

void sbx_files_write_abort(sbx_files_writer *w)
{
    if (!w)
        return;
    if (w->tmpname && w->dirfd >= 0) {
        sbx__creds c;
        if (sbx__files_creds_enter(w->fs, &c) == 0)
            unlinkat(w->dirfd, w->tmpname, 0);
        sbx__files_creds_leave(&c);
    }
    close_fd(&w->fd);
    close_fd(&w->dirfd);
    free(w->tmpname);
    free(w->name);
    free(w);
}

int sbx_files_write(sbx_files *fs, const char *path, const void *buf, size_t len,
                    const sbx_files_write_opts *opts, char *err, size_t errlen)
{
    sbx_files_writer *w;
    int rc = write_begin(fs, path, opts, true, &w, err, errlen);
    if (rc < 0)
        return rc;
    rc = sbx_files_write_chunk(w, buf, len, err, errlen);
    if (rc < 0) {
        sbx_files_write_abort(w);
        return rc;
    }
    return sbx_files_write_commit(w, NULL, err, errlen);
}

/* ---- list --------------------------------------------------------------------------------- */

struct lister {
    const sbx_files *fs;
    sbx_files_entry *v;
    size_t n, cap, max;
    bool truncated;
};

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Reads up to `limit` names of the directory fd (consumed); *more says whether more exist. */
static int read_names(int fd, size_t limit, char ***out, size_t *n, bool *more)
{
    *out = NULL;
    *n = 0;
    *more = false;
    DIR *d = fdopendir(fd);
    if (!d) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    char **names = NULL;
    size_t cnt = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (cnt == limit) {
            *more = true;
            break;
        }
        if (cnt == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            char **nn = realloc(names, ncap * sizeof *nn);
            if (!nn) {
                rc = -ENOMEM;
                break;
            }
            names = nn;
            cap = ncap;
        }
        if (!(names[cnt] = strdup(de->d_name))) {
            rc = -ENOMEM;
            break;
        }
        cnt++;
        errno = 0;
    }
    if (rc == 0 && !de && errno)
        rc = -errno;
    closedir(d);
    if (rc < 0) {
        free_names(names, cnt);
        return rc;
    }
    qsort(names, cnt, sizeof *names, cmp_names);
    *out = names;
    *n = cnt;
    return 0;
}

static int list_dir(struct lister *l, int dirfd, const char *prefix, uint32_t depth,
                    uint32_t max_depth)
{
    int dup = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dup < 0)
        return -errno;
    bool pseudo = sbx__files_check_fs(dirfd) < 0;
    char **names;
    size_t cnt;
    bool more;
    int rc = read_names(dup, l->max - l->n, &names, &cnt, &more);
    if (rc < 0)
        return rc;
    if (more)
        l->truncated = true;
    for (size_t i = 0; i < cnt && rc == 0; i++) {
        if (l->n == l->max) {
            l->truncated = true;
            break;
        }
        struct stat st;
        if (fstatat(dirfd, names[i], &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue; /* vanished meanwhile */
        if (l->n == l->cap) {
            size_t ncap = l->cap ? l->cap * 2 : 64;
            sbx_files_entry *nv = realloc(l->v, ncap * sizeof *nv);
            if (!nv) {
                rc = -ENOMEM;
                break;
            }
            l->v = nv;
            l->cap = ncap;
        }
        sbx_files_entry *e = &l->v[l->n];
        size_t plen = strlen(prefix), nlen = strlen(names[i]);
        e->path = malloc(plen + nlen + 2);
        if (!e->path) {
            rc = -ENOMEM;
            break;
        }
        if (plen) {
            memcpy(e->path, prefix, plen);
            e->path[plen] = '/';
            memcpy(e->path + plen + 1, names[i], nlen + 1);
        } else {
            memcpy(e->path, names[i], nlen + 1);
        }
        e->depth = depth;
        fill_info(l->fs, &st, &e->info);
        l->n++;
        if (S_ISLNK(st.st_mode) && !pseudo)
            read_link(dirfd, names[i], (size_t)st.st_size, &e->info.symlink_target);
        if (S_ISDIR(st.st_mode) && depth < max_depth) {
            int sub = openat(dirfd, names[i], O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0)
                continue; /* replaced by a symlink, or unreadable: listed, not descended */
            char *sp = strdup(e->path);
            if (!sp) {
                close(sub);
                rc = -ENOMEM;
                break;
            }
            int r = list_dir(l, sub, sp, depth + 1, max_depth);
            free(sp);
            close(sub);
            if (r == -ENOMEM)
                rc = r; /* an unreadable subdirectory (EACCES) is listed, not fatal */
        }
    }
    free_names(names, cnt);
    return rc;
}

void sbx_files_list_free(sbx_files_entry *entries, size_t n)
{
    if (!entries)
        return;
    for (size_t i = 0; i < n; i++) {
        free(entries[i].path);
        sbx_file_info_clear(&entries[i].info);
    }
    free(entries);
}

int sbx_files_list(sbx_files *fs, const char *path, uint32_t depth, size_t max_entries,
                   sbx_files_entry **out, size_t *n, bool *truncated, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    if (truncated)
        *truncated = false;
    if (depth == 0)
        depth = SBX_FILES_LIST_DEPTH_DEFAULT;
    if (depth > SBX_FILES_LIST_DEPTH_MAX) {
        sbx__files_seterr(err, errlen, "depth: at most %d", SBX_FILES_LIST_DEPTH_MAX);
        return -EINVAL;
    }
    if (max_entries == 0)
        max_entries = SBX_FILES_LIST_ENTRIES_DEFAULT;
    if (max_entries > SBX_FILES_LIST_ENTRIES_MAX) {
        sbx__files_seterr(err, errlen, "max_entries: at most %d", SBX_FILES_LIST_ENTRIES_MAX);
        return -EINVAL;
    }
    char full[SBX__PATHBUF];
    int rc = sbx__files_full_path(fs, "path", path, full, err, errlen);
    if (rc < 0)
        return rc;
    sbx__creds c;
    rc = sbx__files_creds_enter(fs, &c);
    if (rc < 0)
        return fail(err, errlen, rc, "list: switch to the sandbox user");
    int fd = sbx__files_open_in_root(fs, full, O_PATH | O_DIRECTORY);
    if (fd < 0) {
        rc = fail(err, errlen, fd, "list path");
        goto out;
    }
    struct lister l = {.fs = fs, .max = max_entries};
    rc = list_dir(&l, fd, "", 1, depth);
    close(fd);
    if (rc < 0) {
        sbx_files_list_free(l.v, l.n);
        fail(err, errlen, rc, "list path");
        goto out;
    }
    *out = l.v;
    *n = l.n;
    if (truncated)
        *truncated = l.truncated;
out:
    sbx__files_creds_leave(&c);
    return rc;
}

/* ---- mkdir, remove, move ------------------------------------------------------------------ */

int sbx_files_mkdir(sbx_files *fs, const char *path, uint32_t mode, bool parents, bool *created,
                    char *err, size_t errlen)
{
    if (created)
        *created = false;
    if (mode & ~01777u) {
        sbx__files_seterr(err, errlen, "mode: only permission bits and sticky (01777)");
        return -EINVAL;
    }
    if (!mode)
        mode = SBX_FILES_MODE_DIR;
    char full[SBX__PATHBUF];
    int rc = sbx__files_full_path(fs, "path", path, full, err, errlen);
    if (rc < 0)
        return rc;
    sbx__creds c;
    rc = sbx__files_creds_enter(fs, &c);
    if (rc < 0)
        return fail(err, errlen, rc, "mkdir: switch to the sandbox user");
    const char *parent, *name;
    if (split_last(full, &parent, &name) < 0) {
        /* "/", "x/." or "x/..": an existing directory or nothing to create */
        int fd = sbx__files_open_in_root(fs, full, O_PATH | O_DIRECTORY);
        rc = fd < 0 ? fail(err, errlen, fd, "mkdir path") : 0;
        if (fd >= 0)
            close(fd);
        goto out;
    }
    int pfd = open_parent(fs, parent, parents);
    if (pfd < 0) {
        rc = fail(err, errlen, pfd, "mkdir path: parent directory");
        goto out;
    }
    if (mkdirat(pfd, name, mode) == 0) {
        rc = sbx__files_fix_mode_at(pfd, name, mode);
        if (rc < 0)
            fail(err, errlen, rc, "mkdir path: chmod");
        else if (created)
            *created = true;
    } else if (errno == EEXIST) {
        struct stat st;
        if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
            rc = 0;
        else
            rc = fail(err, errlen, -EEXIST, "mkdir path: exists and is not a directory");
    } else {
        rc = fail(err, errlen, -errno, "mkdir path");
    }
    close(pfd);
out:
    sbx__files_creds_leave(&c);
    return rc;
}

int sbx__files_rmtree_at(int pfd, const char *name, int depth)
{
    if (depth > SBX_FILES_REMOVE_DEPTH_MAX)
        return -ELOOP;
    for (int pass = 0; pass < 4; pass++) {
        int fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOTDIR || errno == ELOOP) /* not (any more) a directory */
                return unlinkat(pfd, name, 0) == 0 || errno == ENOENT ? 0 : -errno;
            return errno == ENOENT ? 0 : -errno;
        }
        struct statx sx;
        if (statx(fd, "", AT_EMPTY_PATH, STATX_TYPE | STATX_MODE, &sx) == 0) {
            if ((sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
                (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT)) {
                close(fd);
                return -EBUSY;
            }
            /* a directory of ours made read-only (0555) still goes, as its owner may chmod */
            if ((sx.stx_mode & 0300) != 0300)
                fchmod(fd, (sx.stx_mode & 07777) | 0700);
        }
        DIR *d = fdopendir(fd);
        if (!d) {
            int rc = -errno;
            close(fd);
            return rc;
        }
        int rc = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            int r;
            if (de->d_type == DT_DIR || de->d_type == DT_UNKNOWN) {
                r = sbx__files_rmtree_at(dirfd(d), de->d_name, depth + 1);
            } else if (unlinkat(dirfd(d), de->d_name, 0) == 0 || errno == ENOENT) {
                r = 0;
            } else if (errno == EISDIR) {
                r = sbx__files_rmtree_at(dirfd(d), de->d_name, depth + 1);
            } else {
                r = -errno;
            }
            if (r < 0) {
                rc = r;
                break;
            }
        }
        closedir(d);
        if (rc < 0)
            return rc;
        if (unlinkat(pfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
            return 0;
        if (errno != ENOTEMPTY)
            return -errno;
        /* entries appeared meanwhile (or readdir missed some): another pass */
    }
    return -ENOTEMPTY;
}

int sbx_files_remove(sbx_files *fs, const char *path, bool recursive, bool *existed, char *err,
                     size_t errlen)
{
    if (existed)
        *existed = false;
    char full[SBX__PATHBUF];
    int rc = sbx__files_full_path(fs, "path", path, full, err, errlen);
    if (rc < 0)
        return rc;
    const char *parent, *name;
    if (split_last(full, &parent, &name) < 0) {
        sbx__files_seterr(err, errlen, "path: cannot remove \"/\", \".\" or \"..\"");
        return -EINVAL;
    }
    sbx__creds c;
    rc = sbx__files_creds_enter(fs, &c);
    if (rc < 0)
        return fail(err, errlen, rc, "remove: switch to the sandbox user");
    int pfd = open_parent(fs, parent, false);
    if (pfd == -ENOENT)
        goto out; /* rc 0, existed false */
    if (pfd < 0) {
        rc = fail(err, errlen, pfd, "remove path: parent directory");
        goto out;
    }
    struct stat st;
    if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno != ENOENT)
            rc = fail(err, errlen, -errno, "remove path");
        goto out_close;
    }
    if (existed)
        *existed = true;
    if (!S_ISDIR(st.st_mode))
        rc = unlinkat(pfd, name, 0) == 0 || errno == ENOENT ? 0 : -errno;
    else if (recursive)
        rc = sbx__files_rmtree_at(pfd, name, 0);
    else
        rc = unlinkat(pfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT ? 0 : -errno;
    if (rc == -EBUSY)
        sbx__files_seterr(err, errlen, "remove path: contains a mount point");
    else if (rc == -ELOOP)
        sbx__files_seterr(err, errlen, "remove path: nested deeper than %d levels",
                          SBX_FILES_REMOVE_DEPTH_MAX);
    else if (rc < 0)
        fail(err, errlen, rc, "remove path");
out_close:
    close(pfd);
out:
    sbx__files_creds_leave(&c);
    return rc;
}

int sbx_files_move(sbx_files *fs, const char *src, const char *dst, bool overwrite, char *err,
                   size_t errlen)
{
    char sfull[SBX__PATHBUF], dfull[SBX__PATHBUF];
    int rc = sbx__files_full_path(fs, "src", src, sfull, err, errlen);
    if (rc < 0)
        return rc;
    rc = sbx__files_full_path(fs, "dst", dst, dfull, err, errlen);
    if (rc < 0)
        return rc;
    const char *sparent, *sname, *dparent, *dname;
    if (split_last(sfull, &sparent, &sname) < 0) {
        sbx__files_seterr(err, errlen, "src: does not name a file");
        return -EINVAL;
    }
    if (split_last(dfull, &dparent, &dname) < 0) {
        sbx__files_seterr(err, errlen, "dst: does not name a file");
        return -EINVAL;
    }
    sbx__creds c;
    rc = sbx__files_creds_enter(fs, &c);
    if (rc < 0)
        return fail(err, errlen, rc, "move: switch to the sandbox user");
    int sfd = -1, dfd = -1;
    sfd = open_parent(fs, sparent, false);
    if (sfd < 0) {
        rc = fail(err, errlen, sfd, "move src: parent directory");
        goto out;
    }
    dfd = open_parent(fs, dparent, false);
    if (dfd < 0) {
        rc = fail(err, errlen, dfd, "move dst: parent directory");
        goto out;
    }
    if (renameat2(sfd, sname, dfd, dname, overwrite ? 0 : RENAME_NOREPLACE) != 0)
        rc = fail(err, errlen, -errno, "move");
out:
    close_fd(&sfd);
    close_fd(&dfd);
    sbx__files_creds_leave(&c);
    return rc;
}
