/* tree.c: the operations of the file layer that change the directory tree (see files.h):
 * mkdir (and the mkdir -p that writes and uploads use), remove (and an rm -rf that never
 * follows a symlink nor crosses into another mount), move (rename, RENAME_NOREPLACE unless
 * overwriting), and the exact modes of new files and directories whatever the umask. Paths go
 * through resolve.c; each call runs as the sandbox user (handle.c).
 * Threads: any; nothing here keeps state. */
#include "files_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* ---- modes, mkdir -p ------------------------------------------------------------------------ */

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

/* The deepest existing ancestor of buf[0, len): its O_PATH fd (or -errno); *from: where the
 * missing part starts. */
static int open_deepest(const sbx_files *fs, char *buf, size_t len, size_t *from)
{
    size_t end = len;
    for (;;) {
        while (end > 1 && buf[end - 1] == '/')
            end--;
        while (end > 1 && buf[end - 1] != '/')
            end--;
        if (end <= 1) {
            *from = 1;
            return sbx__files_open_in_root(fs, "/", O_PATH | O_DIRECTORY);
        }
        char c = buf[end];
        buf[end] = '\0';
        int fd = sbx__files_open_in_root(fs, buf, O_PATH | O_DIRECTORY);
        buf[end] = c;
        if (fd != -ENOENT) {
            *from = end;
            return fd;
        }
    }
}

/* Creates buf's components from `end` on below fd (consumed), one at a time, re-resolving each
 * prefix inside the root. Returns the O_PATH fd of the whole path or -errno. */
static int create_forward(const sbx_files *fs, char *buf, size_t len, size_t end, int fd,
                          uint32_t mode, char **created)
{
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
            return fd;
    }
    return fd;
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
    char *buf = strdup(p);
    if (!buf)
        return -ENOMEM;
    size_t from;
    fd = open_deepest(fs, buf, len, &from);
    if (fd >= 0)
        fd = create_forward(fs, buf, len, from, fd, mode, created);
    free(buf);
    if (fd < 0 && created) {
        free(*created);
        *created = NULL;
    }
    *out = fd;
    return fd < 0 ? fd : 0;
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
    sbx__creds c;
    int rc = sbx__files_enter(fs, path, full, &c, "mkdir", err, errlen);
    if (rc < 0)
        return rc;
    const char *parent, *name;
    if (sbx__files_split_last(full, &parent, &name) < 0) {
        /* "/", "x/." or "x/..": an existing directory or nothing to create */
        int fd = sbx__files_open_in_root(fs, full, O_PATH | O_DIRECTORY);
        rc = fd < 0 ? sbx__files_fail(err, errlen, fd, "mkdir path") : 0;
        if (fd >= 0)
            close(fd);
        goto out;
    }
    int pfd = sbx__files_open_parent(fs, parent, parents);
    if (pfd < 0) {
        rc = sbx__files_fail(err, errlen, pfd, "mkdir path: parent directory");
        goto out;
    }
    if (mkdirat(pfd, name, mode) == 0) {
        rc = sbx__files_fix_mode_at(pfd, name, mode);
        if (rc < 0)
            sbx__files_fail(err, errlen, rc, "mkdir path: chmod");
        else if (created)
            *created = true;
    } else if (errno == EEXIST) {
        struct stat st;
        if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
            rc = 0;
        else
            rc = sbx__files_fail(err, errlen, -EEXIST, "mkdir path: exists and is not a directory");
    } else {
        rc = sbx__files_fail(err, errlen, -errno, "mkdir path");
    }
    close(pfd);
out:
    sbx__files_creds_leave(&c);
    return rc;
}

/* Removes every entry of the open directory fd (consumed), recursively: 0 or -errno. */
static int empty_dir(int fd, int depth)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (de->d_type == DT_DIR || de->d_type == DT_UNKNOWN)
            rc = sbx__files_rmtree_at(dirfd(d), de->d_name, depth + 1);
        else if (unlinkat(dirfd(d), de->d_name, 0) == 0 || errno == ENOENT)
            rc = 0;
        else if (errno == EISDIR)
            rc = sbx__files_rmtree_at(dirfd(d), de->d_name, depth + 1);
        else
            rc = -errno;
    }
    closedir(d);
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
        int rc = empty_dir(fd, depth);
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
    if (sbx__files_split_last(full, &parent, &name) < 0) {
        sbx__files_seterr(err, errlen, "path: cannot remove \"/\", \".\" or \"..\"");
        return -EINVAL;
    }
    sbx__creds c;
    rc = sbx__files_creds_enter(fs, &c);
    if (rc < 0)
        return sbx__files_fail(err, errlen, rc, "remove: switch to the sandbox user");
    int pfd = sbx__files_open_parent(fs, parent, false);
    if (pfd == -ENOENT)
        goto out; /* rc 0, existed false */
    if (pfd < 0) {
        rc = sbx__files_fail(err, errlen, pfd, "remove path: parent directory");
        goto out;
    }
    struct stat st;
    if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno != ENOENT)
            rc = sbx__files_fail(err, errlen, -errno, "remove path");
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
        sbx__files_fail(err, errlen, rc, "remove path");
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
    if (sbx__files_split_last(sfull, &sparent, &sname) < 0) {
        sbx__files_seterr(err, errlen, "src: does not name a file");
        return -EINVAL;
    }
    if (sbx__files_split_last(dfull, &dparent, &dname) < 0) {
        sbx__files_seterr(err, errlen, "dst: does not name a file");
        return -EINVAL;
    }
    sbx__creds c;
    rc = sbx__files_creds_enter(fs, &c);
    if (rc < 0)
        return sbx__files_fail(err, errlen, rc, "move: switch to the sandbox user");
    int sfd = -1, dfd = -1;
    sfd = sbx__files_open_parent(fs, sparent, false);
    if (sfd < 0) {
        rc = sbx__files_fail(err, errlen, sfd, "move src: parent directory");
        goto out;
    }
    dfd = sbx__files_open_parent(fs, dparent, false);
    if (dfd < 0) {
        rc = sbx__files_fail(err, errlen, dfd, "move dst: parent directory");
        goto out;
    }
    if (renameat2(sfd, sname, dfd, dname, overwrite ? 0 : RENAME_NOREPLACE) != 0)
        rc = sbx__files_fail(err, errlen, -errno, "move");
out:
    close_fd(&sfd);
    close_fd(&dfd);
    sbx__files_creds_leave(&c);
    return rc;
}
