/* resolve.c: how every path a client names becomes a file descriptor inside one sandbox's
 * root. This is the file to read first when reviewing the file API's security.
 *
 * Guarantees (for every operation of files.h and upload.h):
 *  1. A client path is checked before use: not empty, no NUL byte, at most 4096 bytes, no
 *     component over 255 bytes (the message names the field and the limit). A relative path
 *     is joined to the sandbox home; nothing else is rewritten (no lexical ".." folding).
 *  2. Resolution happens only in the kernel, with openat2(rootfd, path, RESOLVE_IN_ROOT |
 *     RESOLVE_NO_MAGICLINKS): "..", absolute paths and absolute or relative symlinks are
 *     clamped to the sandbox root exactly as for a process chrooted there, and /proc magic
 *     links (/proc/<pid>/root, /proc/self/fd/N) fail with ELOOP. A rename race during a ".."
 *     walk makes the kernel answer EAGAIN; it is retried a bounded number of times.
 *  3. After that, operations use single-component *at() calls on the resolved directory fd,
 *     each in its no-follow form (O_NOFOLLOW, AT_SYMLINK_NOFOLLOW, RENAME_NOREPLACE...), so no
 *     step ever resolves a name against the executor's own root or through a symlink.
 *  4. A final symlink is followed only where files.h says so (read, list, the write target).
 *     Following means reading the link and resolving its target again from step 2 (at most
 *     40 hops, then ELOOP): the target cannot leave the root either.
 *  5. Directories on kernel pseudo filesystems (proc, sysfs, cgroupfs, debugfs, ...) are
 *     refused with EPERM before anything is created, written or removed in them, and their
 *     symlinks are not read: the executor holds host capabilities the sandbox does not.
 *  6. Every call runs with the thread's fs credentials switched to the sandbox user (handle.c),
 *     so the kernel's permission checks are the ones a command in the sandbox would meet.
 * What it does not do: stop a process outside the sandbox (on the host) from moving a
 * directory of the sandbox's tree elsewhere while a call holds its fd.
 *
 * Threads: any; nothing here keeps state. */
#include "files_int.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

#define SYMLINK_HOPS_MAX 40
#define OPENAT2_RETRIES 32

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

int sbx__files_enter(const sbx_files *fs, const char *path, char *full, sbx__creds *c,
                     const char *op, char *err, size_t errlen)
{
    int rc = sbx__files_full_path(fs, "path", path, full, err, errlen);
    if (rc < 0)
        return rc;
    rc = sbx__files_creds_enter(fs, c);
    if (rc < 0)
        sbx__files_seterr(err, errlen, "%s: switch to the sandbox user: %s", op,
                          sbx__files_strerror(rc));
    return rc;
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

int sbx__files_split_last(char *p, const char **parent, const char **name)
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

int sbx__files_open_parent(const sbx_files *fs, const char *parent, bool create)
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

int sbx__files_read_link(int dirfd, const char *name, size_t hint, char **out)
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

/* full := the in-root path a symlink in `parent` with `target` points to (relative targets are
 * relative to the link's directory). */
static int link_target_path(char *full, const char *parent, const char *target)
{
    char next[SBX__PATHBUF];
    int n;
    if (target[0] == '/')
        n = snprintf(next, sizeof next, "%s", target);
    else
        n = snprintf(next, sizeof next, "%s/%s", strcmp(parent, "/") ? parent : "", target);
    if (n < 0 || (size_t)n > SBX_FILES_PATH_MAX)
        return -ENAMETOOLONG;
    memcpy(full, next, (size_t)n + 1);
    return 0;
}

int sbx__files_resolve_target(const sbx_files *fs, char *full, bool parents, int *dirfd,
                              const char **name, struct stat *st, bool *exists, char *err,
                              size_t errlen)
{
    for (int hop = 0;; hop++) {
        const char *parent;
        if (sbx__files_split_last(full, &parent, name) < 0) {
            sbx__files_seterr(err, errlen, "path: does not name a file");
            return -EINVAL;
        }
        int pfd = sbx__files_open_parent(fs, parent, parents);
        if (pfd < 0)
            return sbx__files_fail(err, errlen, pfd, "path: parent directory");
        if (fstatat(pfd, *name, st, AT_SYMLINK_NOFOLLOW) != 0) {
            int rc = -errno;
            if (rc != -ENOENT) {
                close(pfd);
                return sbx__files_fail(err, errlen, rc, "path");
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
        char *target = NULL;
        int rc = hop >= SYMLINK_HOPS_MAX ? -ELOOP : sbx__files_read_link(pfd, *name, 0, &target);
        close(pfd);
        if (rc < 0)
            return sbx__files_fail(err, errlen, rc, "path: symlink");
        rc = link_target_path(full, parent, target);
        free(target);
        if (rc < 0)
            return sbx__files_fail(err, errlen, rc, "path: symlink target");
    }
}
