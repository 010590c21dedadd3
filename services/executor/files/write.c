/* write.c: the atomic streaming writer of the file layer (see files.h). The data goes to an
 * unnamed file (O_TMPFILE; a hidden temp name where unsupported) in the target's directory,
 * owned by the sandbox user, and replaces the target only at commit: linked into place when
 * the target is new, else exchanged with it (RENAME_EXCHANGE) and the old file unlinked, so a
 * reader sees the old content or the new, never a mix, and a failed or aborted write leaves
 * the old file (or nothing) in place. The target is found by resolve.c (a final symlink is
 * followed inside the root; parents are created unless asked not to).
 * Threads: a writer is used by one thread at a time (it may move between threads); each call
 * runs as the sandbox user (handle.c). Ownership: commit and abort free the writer. */
#include "files_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct sbx_files_writer {
    sbx_files *fs;
    int dirfd;     /* O_PATH fd of the target's directory */
    int fd;        /* the unnamed (or hidden temp) file being written */
    char *name;    /* target name in dirfd */
    char *tmpname; /* hidden temp name when O_TMPFILE was not available */
    uint64_t size, max;
    bool sync, failed;
};

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
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

/* The file the data goes to: unnamed (O_TMPFILE), else a hidden temp name; its mode exactly
 * `mode`. */
static int writer_open(sbx_files_writer *w, uint32_t mode, char *err, size_t errlen)
{
    w->fd = openat(w->dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, mode);
    if (w->fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
        char tmp[64];
        sbx__files_random_name(tmp, sizeof tmp, ".sbx-tmp-");
        w->tmpname = strdup(tmp);
        if (!w->tmpname)
            return -ENOMEM;
        w->fd = openat(w->dirfd, tmp, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, mode);
        if (w->fd < 0) {
            free(w->tmpname);
            w->tmpname = NULL;
        }
    }
    if (w->fd < 0)
        return sbx__files_fail(err, errlen, -errno, "path: create");
    int rc = sbx__files_fix_mode(w->fd, mode);
    if (rc < 0)
        sbx__files_fail(err, errlen, rc, "path: chmod");
    return rc;
}

/* append: the new file starts as a copy of the regular file `name` (within the size cap). */
static int writer_copy_old(sbx_files_writer *w, const char *name, char *err, size_t errlen)
{
    int src = openat(w->dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (src < 0)
        return sbx__files_fail(err, errlen, -errno, "path: open for append");
    struct stat sst;
    int rc = 0;
    if (fstat(src, &sst) != 0 || !S_ISREG(sst.st_mode)) {
        sbx__files_seterr(err, errlen, "path: append target is not a regular file");
        rc = -EINVAL;
    } else if (w->max && (uint64_t)sst.st_size > w->max) {
        sbx__files_seterr(err, errlen, "path: file would exceed %llu bytes",
                          (unsigned long long)w->max);
        rc = -EFBIG;
    } else if ((rc = copy_content(src, w->fd, (uint64_t)sst.st_size)) < 0) {
        sbx__files_fail(err, errlen, rc, "path: copy for append");
    } else {
        off_t end = lseek(w->fd, 0, SEEK_CUR);
        w->size = end > 0 ? (uint64_t)end : 0;
    }
    close(src);
    return rc;
}

/* Resolves the target and opens the file the data goes to (as the sandbox user). */
static int writer_start(sbx_files_writer *w, char *full, const sbx_files_write_opts *opts,
                        char *err, size_t errlen)
{
    const char *name;
    struct stat st;
    bool exists = false;
    int rc = sbx__files_resolve_target(w->fs, full, !opts->no_parents, &w->dirfd, &name, &st,
                                       &exists, err, errlen);
    if (rc < 0)
        return rc;
    if (exists && S_ISDIR(st.st_mode))
        return sbx__files_fail(err, errlen, -EISDIR, "path");
    w->name = strdup(name);
    if (!w->name)
        return -ENOMEM;
    uint32_t mode = opts->mode ? opts->mode : exists ? (st.st_mode & 0777) : SBX_FILES_MODE_FILE;
    if ((rc = writer_open(w, mode, err, errlen)) < 0)
        return rc;
    if (opts->append && exists)
        rc = writer_copy_old(w, name, err, errlen);
    return rc;
}

int sbx_files_write_begin(sbx_files *fs, const char *path, const sbx_files_write_opts *opts,
                          sbx_files_writer **out, char *err, size_t errlen)
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
        return sbx__files_fail(err, errlen, rc, "write: switch to the sandbox user");
    }
    rc = writer_start(w, full, opts, err, errlen);
    sbx__files_creds_leave(&c);
    if (rc < 0) {
        sbx_files_write_abort(w);
        return rc;
    }
    *out = w;
    return 0;
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
    int rc = sbx__files_write_all(w->fd, buf, len);
    if (rc < 0) {
        w->failed = true;
        return sbx__files_fail(err, errlen, rc, "write data");
    }
    w->size += len;
    return 0;
}

/* An unnamed file goes into place: linked as the target when that is new (1), else linked
 * under a hidden temp name for commit_replace (0); or -errno. */
static int commit_link(sbx_files_writer *w, char *err, size_t errlen)
{
    char self[64];
    snprintf(self, sizeof self, "/proc/self/fd/%d", w->fd);
    if (linkat(AT_FDCWD, self, w->dirfd, w->name, AT_SYMLINK_FOLLOW) == 0)
        return 1; /* a new file: one atomic link, nothing to replace */
    if (errno != EEXIST)
        return sbx__files_fail(err, errlen, -errno, "write: link into place");
    char tmp[64];
    sbx__files_random_name(tmp, sizeof tmp, ".sbx-tmp-");
    if (linkat(AT_FDCWD, self, w->dirfd, tmp, AT_SYMLINK_FOLLOW) != 0)
        return sbx__files_fail(err, errlen, -errno, "write: link into place");
    w->tmpname = strdup(tmp);
    if (!w->tmpname) {
        unlinkat(w->dirfd, tmp, 0);
        return -ENOMEM;
    }
    return 0;
}

/* The file under the temp name replaces the target. On failure the temp name stays for abort
 * to unlink. */
static int commit_replace(sbx_files_writer *w, char *err, size_t errlen)
{
    if (w->sync || renameat2(w->dirfd, w->tmpname, w->dirfd, w->name, RENAME_EXCHANGE) != 0) {
        /* sync, or the target vanished / the fs lacks RENAME_EXCHANGE: a plain rename */
        if (renameat(w->dirfd, w->tmpname, w->dirfd, w->name) != 0)
            return sbx__files_fail(err, errlen, -errno, "write: rename into place");
    } else if (unlinkat(w->dirfd, w->tmpname, 0) != 0) {
        /* Exchanged: the old file now has the temp name. (Exchange rather than rename-over
         * because ext4 flushes the new file's data on rename-over, ~0.25 ms for 4 KiB; the
         * caller asks for durability with opts.sync.) A directory that raced in place of
         * the target is put back and the write refused. */
        int rc = -errno;
        if (rc == -EISDIR || rc == -EPERM) {
            renameat2(w->dirfd, w->tmpname, w->dirfd, w->name, RENAME_EXCHANGE);
            return sbx__files_fail(err, errlen, -EISDIR, "path");
        }
        /* the new content is in place; only the old copy lingers under a temp name */
        sbx__files_fail(err, errlen, rc, "write: removing the replaced file");
    }
    free(w->tmpname);
    w->tmpname = NULL;
    return 0;
}

static void sync_dir(const sbx_files_writer *w)
{
    int d = openat(w->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d >= 0) {
        fsync(d);
        close(d);
    }
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
        sbx__files_fail(err, errlen, rc, "write: switch to the sandbox user");
        sbx_files_write_abort(w);
        return rc;
    }
    if (w->sync && fdatasync(w->fd) != 0)
        rc = sbx__files_fail(err, errlen, -errno, "write: fdatasync");
    else if (w->tmpname || (rc = commit_link(w, err, errlen)) == 0)
        rc = commit_replace(w, err, errlen);
    if (rc >= 0) {
        rc = 0;
        if (w->sync)
            sync_dir(w);
        if (size)
            *size = w->size;
    }
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
