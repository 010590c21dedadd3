/* read.c: the reading operations of the file layer (see files.h): stat (lstat semantics),
 * open for reading (the caller preads the fd it gets), and list (a pre-order walk of a
 * directory, sorted by name, bounded in depth and entries). Paths go through resolve.c; each
 * call runs as the sandbox user (handle.c). A file is reopened for reading through
 * /proc/self/fd of the very inode that was checked, so the check and the open cannot see two
 * different files.
 * Threads: any. Ownership: returned strings and arrays are the caller's (files.h). */
#include "files_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- stat / read -------------------------------------------------------------------------- */

int sbx_files_stat(sbx_files *fs, const char *path, sbx_file_info *out, char *err, size_t errlen)
{
    char full[SBX__PATHBUF];
    memset(out, 0, sizeof *out);
    sbx__creds c;
    int rc = sbx__files_enter(fs, path, full, &c, "stat", err, errlen);
    if (rc < 0)
        return rc;
    /* O_PATH|O_NOFOLLOW opens a final symlink itself: lstat semantics in one resolution */
    int fd = sbx__files_open_in_root(fs, full, O_PATH | O_NOFOLLOW);
    if (fd < 0) {
        rc = sbx__files_fail(err, errlen, fd, "stat path");
        goto out;
    }
    struct stat st;
    if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
        rc = sbx__files_fail(err, errlen, -errno, "stat path");
        goto out_close;
    }
    sbx__files_fill_info(fs, &st, out);
    if (S_ISLNK(st.st_mode) && sbx__files_check_fs(fd) == 0) {
        rc = sbx__files_read_link(fd, "", (size_t)st.st_size, &out->symlink_target);
        if (rc < 0)
            sbx__files_fail(err, errlen, rc, "stat path: readlink");
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
    sbx__creds c;
    int rc = sbx__files_enter(fs, path, full, &c, "read", err, errlen);
    if (rc < 0)
        return rc;
    int pfd = sbx__files_open_in_root(fs, full, O_PATH);
    if (pfd < 0) {
        rc = sbx__files_fail(err, errlen, pfd, "read path");
        goto out;
    }
    struct stat st;
    if (fstat(pfd, &st) != 0) {
        rc = sbx__files_fail(err, errlen, -errno, "read path");
        goto out_close;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = sbx__files_fail(err, errlen, -EISDIR, "read path");
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
        rc = sbx__files_fail(err, errlen, -errno, "read path");
        goto out_close;
    }
    if (info)
        sbx__files_fill_info(fs, &st, info);
    *fdout = fd;
out_close:
    close(pfd);
out:
    sbx__files_creds_leave(&c);
    return rc;
}

/* ---- list ---------------------------------------------------------------------------------- */

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

void sbx__files_free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

int sbx__files_read_names(int fd, size_t limit, char ***out, size_t *n, bool *more)
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
        sbx__files_free_names(names, cnt);
        return rc;
    }
    if (cnt > 1) /* qsort's base may not be NULL, even for zero items */
        qsort(names, cnt, sizeof *names, cmp_names);
    *out = names;
    *n = cnt;
    return 0;
}

/* Appends an entry "prefix/name" (or "name") to the listing; NULL when out of memory. */
static sbx_files_entry *lister_push(struct lister *l, const char *prefix, const char *name)
{
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 64;
        sbx_files_entry *nv = realloc(l->v, ncap * sizeof *nv);
        if (!nv)
            return NULL;
        l->v = nv;
        l->cap = ncap;
    }
    sbx_files_entry *e = &l->v[l->n];
    size_t plen = strlen(prefix), nlen = strlen(name);
    e->path = malloc(plen + nlen + 2);
    if (!e->path)
        return NULL;
    if (plen) {
        memcpy(e->path, prefix, plen);
        e->path[plen] = '/';
        memcpy(e->path + plen + 1, name, nlen + 1);
    } else {
        memcpy(e->path, name, nlen + 1);
    }
    l->n++;
    return e;
}

static int list_dir(struct lister *l, int dirfd, const char *prefix, uint32_t depth,
                    uint32_t max_depth);

/* Lists the subdirectory `name` of dirfd below entry e (never through a symlink). */
static int list_subdir(struct lister *l, int dirfd, const char *name, const sbx_files_entry *e,
                       uint32_t depth, uint32_t max_depth)
{
    int sub = openat(dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0)
        return 0; /* replaced by a symlink, or unreadable: listed, not descended */
    char *sp = strdup(e->path);
    if (!sp) {
        close(sub);
        return -ENOMEM;
    }
    int r = list_dir(l, sub, sp, depth + 1, max_depth);
    free(sp);
    close(sub);
    return r == -ENOMEM ? r : 0; /* an unreadable subdirectory (EACCES) is listed, not fatal */
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
    int rc = sbx__files_read_names(dup, l->max - l->n, &names, &cnt, &more);
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
        sbx_files_entry *e = lister_push(l, prefix, names[i]);
        if (!e) {
            rc = -ENOMEM;
            break;
        }
        e->depth = depth;
        sbx__files_fill_info(l->fs, &st, &e->info);
        if (S_ISLNK(st.st_mode) && !pseudo)
            sbx__files_read_link(dirfd, names[i], (size_t)st.st_size, &e->info.symlink_target);
        if (S_ISDIR(st.st_mode) && depth < max_depth)
            rc = list_subdir(l, dirfd, names[i], e, depth, max_depth);
    }
    sbx__files_free_names(names, cnt);
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
    sbx__creds c;
    int rc = sbx__files_enter(fs, path, full, &c, "list", err, errlen);
    if (rc < 0)
        return rc;
    int fd = sbx__files_open_in_root(fs, full, O_PATH | O_DIRECTORY);
    if (fd < 0) {
        rc = sbx__files_fail(err, errlen, fd, "list path");
        goto out;
    }
    struct lister l = {.fs = fs, .max = max_entries};
    rc = list_dir(&l, fd, "", 1, depth);
    close(fd);
    if (rc < 0) {
        sbx_files_list_free(l.v, l.n);
        sbx__files_fail(err, errlen, rc, "list path");
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
