/* upload.c: all-or-nothing tree upload (see upload.h). Three phases: validate every entry
 * (limits, normalised relative paths, duplicates), stage the tree in a hidden directory inside
 * the destination, then rename the staged items into place while journalling each rename so a
 * failure can undo them in reverse order. Inside the staging tree only single-component
 * no-follow *at() calls are used; the destination is reached through the sbx_files root. */
#include "upload.h"

#include "files_int.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

struct item {
    size_t idx; /* index into the caller's entries */
    char *path; /* normalised: "a/b/c", no empty/"."/".." components */
};

struct journal_op {
    char *parent; /* relative to dest and staging alike; "" for the top level */
    char *name;
    bool exchanged; /* RENAME_EXCHANGE (an old item now sits in staging) vs a plain move */
};

struct upload {
    sbx_files *fs;
    const sbx_upload_entry *entries;
    sbx_upload_mode mode;
    int destfd, stgfd;
    struct journal_op *ops;
    size_t nops, capops;
    sbx_upload_result res;
    char *err;
    size_t errlen;
};

/* Orders paths component-wise ('/' sorts before every other byte), so a directory's
 * descendants immediately follow it. */
static int path_cmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        int ca = *a == '/' ? 1 : *a ? (unsigned char)*a + 1 : 0;
        int cb = *b == '/' ? 1 : *b ? (unsigned char)*b + 1 : 0;
        if (ca != cb || ca == 0)
            return ca - cb;
    }
}

static int item_cmp(const void *x, const void *y)
{
    return path_cmp(((const struct item *)x)->path, ((const struct item *)y)->path);
}

/* Normalises an entry path: relative, no "..", empty and "." components dropped. */
static int normalise(const sbx_upload_entry *e, size_t i, char **out, char *err, size_t errlen)
{
    char field[48];
    snprintf(field, sizeof field, "entries[%zu].path", i);
    size_t len = e->path_len ? e->path_len : (e->path ? strlen(e->path) : 0);
    int rc = sbx_files_check_path(field, e->path, len, err, errlen);
    if (rc < 0)
        return rc;
    if (e->path[0] == '/') {
        sbx__files_seterr(err, errlen, "%s: must be relative to dest", field);
        return -EINVAL;
    }
    char *p = malloc(len + 1);
    if (!p)
        return -ENOMEM;
    size_t o = 0;
    for (size_t s = 0; s < len;) {
        size_t t = s;
        while (t < len && e->path[t] != '/')
            t++;
        size_t cl = t - s;
        if (cl == 2 && e->path[s] == '.' && e->path[s + 1] == '.') {
            free(p);
            sbx__files_seterr(err, errlen, "%s: must not contain \"..\"", field);
            return -EINVAL;
        }
        if (cl > 0 && !(cl == 1 && e->path[s] == '.')) {
            if (o)
                p[o++] = '/';
            memcpy(p + o, e->path + s, cl);
            o += cl;
        }
        s = t + 1;
    }
    p[o] = '\0';
    if (o == 0) {
        free(p);
        sbx__files_seterr(err, errlen, "%s: names dest itself", field);
        return -EINVAL;
    }
    *out = p;
    return 0;
}

static int validate_entry(const sbx_upload_entry *e, size_t i, char *err, size_t errlen)
{
    switch (e->type) {
    case SBX_UPLOAD_FILE:
        if (e->mode & ~0777u) {
            sbx__files_seterr(err, errlen, "entries[%zu].mode: only 0777 bits", i);
            return -EINVAL;
        }
        if (e->len && !e->data) {
            sbx__files_seterr(err, errlen, "entries[%zu].data: missing", i);
            return -EINVAL;
        }
        return 0;
    case SBX_UPLOAD_DIR:
        if (e->mode & ~01777u) {
            sbx__files_seterr(err, errlen, "entries[%zu].mode: only 01777 bits", i);
            return -EINVAL;
        }
        return 0;
    case SBX_UPLOAD_SYMLINK: {
        size_t tl = e->target ? strnlen(e->target, SBX_FILES_PATH_MAX + 1) : 0;
        if (tl == 0) {
            sbx__files_seterr(err, errlen, "entries[%zu].target: must not be empty", i);
            return -EINVAL;
        }
        if (tl > SBX_FILES_PATH_MAX) {
            sbx__files_seterr(err, errlen, "entries[%zu].target: longer than %d bytes", i,
                              SBX_FILES_PATH_MAX);
            return -ENAMETOOLONG;
        }
        return 0;
    }
    default:
        sbx__files_seterr(err, errlen, "entries[%zu].type: must be file, dir or symlink", i);
        return -EINVAL;
    }
}

/* Opens a directory below `base` by a relative, symlink-free path ("" is base itself). */
static int open_below(int base, const char *rel)
{
    struct open_how how = {
        .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
    };
    long fd = syscall(SYS_openat2, base, *rel ? rel : ".", &how, sizeof how);
    return fd < 0 ? -errno : (int)fd;
}

/* Creates the staging directories of `rel` ("a/b") one component at a time; *out: O_PATH fd. */
static int stage_dirs(int stgfd, const char *rel, int *out)
{
    int fd = openat(stgfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char comp[SBX_FILES_NAME_MAX + 1];
    for (const char *s = rel; *s;) {
        const char *t = strchr(s, '/');
        size_t cl = t ? (size_t)(t - s) : strlen(s);
        memcpy(comp, s, cl);
        comp[cl] = '\0';
        int rc = 0;
        if (mkdirat(fd, comp, SBX_FILES_MODE_DIR) == 0)
            rc = sbx__files_fix_mode_at(fd, comp, SBX_FILES_MODE_DIR);
        else if (errno != EEXIST)
            rc = -errno;
        int next = rc < 0 ? rc : openat(fd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 && rc == 0)
            rc = -errno;
        close(fd);
        if (rc < 0)
            return rc;
        fd = next;
        s = t ? t + 1 : s + cl;
    }
    *out = fd;
    return 0;
}

/* Creates one entry in staging. `pfd` is its parent there, `name` its last component. */
static int stage_one(struct upload *u, int pfd, const char *name, const sbx_upload_entry *e)
{
    switch (e->type) {
    case SBX_UPLOAD_DIR:
        if (mkdirat(pfd, name, SBX_FILES_MODE_DIR) != 0)
            return -errno;
        u->res.dirs++;
        return sbx__files_fix_mode_at(pfd, name, SBX_FILES_MODE_DIR); /* final mode: later */
    case SBX_UPLOAD_SYMLINK:
        if (symlinkat(e->target, pfd, name) != 0)
            return -errno;
        u->res.symlinks++;
        return 0;
    default: {
        uint32_t mode = e->mode ? e->mode : SBX_FILES_MODE_FILE;
        int fd = openat(pfd, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd < 0)
            return -errno;
        int rc = sbx__files_write_all(fd, e->data, e->len);
        if (rc == 0)
            rc = sbx__files_fix_mode(fd, mode);
        close(fd);
        if (rc == 0) {
            u->res.files++;
            u->res.bytes += e->len;
        }
        return rc;
    }
    }
}

static int journal_add(struct upload *u, const char *parent, const char *name, bool exchanged)
{
    if (u->nops == u->capops) {
        size_t ncap = u->capops ? u->capops * 2 : 64;
        struct journal_op *n = realloc(u->ops, ncap * sizeof *n);
        if (!n)
            return -ENOMEM;
        u->ops = n;
        u->capops = ncap;
    }
    struct journal_op *op = &u->ops[u->nops];
    op->parent = strdup(parent);
    op->name = strdup(name);
    op->exchanged = exchanged;
    if (!op->parent || !op->name) {
        free(op->parent);
        free(op->name);
        return -ENOMEM;
    }
    u->nops++;
    return 0;
}

static int rename_logged(struct upload *u, int sp, int dp, const char *parent, const char *name,
                         bool exchange)
{
    /* journal first: if the rename then fails, undoing a rename that never happened fails
     * harmlessly (ENOENT / the names are where they were) */
    int rc = journal_add(u, parent, name, exchange);
    if (rc < 0)
        return rc;
    if (renameat2(sp, name, dp, name, exchange ? RENAME_EXCHANGE : RENAME_NOREPLACE) != 0) {
        rc = -errno;
        u->nops--;
        free(u->ops[u->nops].parent);
        free(u->ops[u->nops].name);
        return rc;
    }
    if (exchange)
        u->res.replaced++;
    return 0;
}

static char *join(const char *parent, const char *name)
{
    size_t pl = strlen(parent), nl = strlen(name);
    char *s = malloc(pl + nl + 2);
    if (!s)
        return NULL;
    if (pl) {
        memcpy(s, parent, pl);
        s[pl] = '/';
        memcpy(s + pl + 1, name, nl + 1);
    } else {
        memcpy(s, name, nl + 1);
    }
    return s;
}

static int place(struct upload *u, int sp, int dp, const char *parent, const char *name);

/* Merges the staged directory sp/name into the existing dp/name: places each staged child. */
static int merge_dirs(struct upload *u, int sp, int dp, const char *parent, const char *name)
{
    int csp = openat(sp, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (csp < 0)
        return -errno;
    int cdp = openat(dp, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (cdp < 0) {
        int rc = -errno;
        close(csp);
        return rc;
    }
    char *sub = join(parent, name);
    char **names = NULL;
    size_t cnt = 0;
    bool more;
    int rc = sub ? 0 : -ENOMEM;
    /* collect first: placing children changes the directory being read */
    if (rc == 0) {
        int lfd = openat(csp, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        rc = lfd < 0 ? -errno : sbx__files_read_names(lfd, SIZE_MAX, &names, &cnt, &more);
    }
    for (size_t i = 0; i < cnt && rc == 0; i++)
        rc = place(u, csp, cdp, sub, names[i]);
    sbx__files_free_names(names, cnt);
    free(sub);
    close(csp);
    close(cdp);
    return rc;
}

/* Moves staging `parent/name` into dest (sp/dp are the two parent directories): a plain
 * rename when nothing is there, an exchange when something is (merge keeps existing
 * directories and places into them). */
static int place(struct upload *u, int sp, int dp, const char *parent, const char *name)
{
    struct stat dst, sst;
    if (fstatat(dp, name, &dst, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno != ENOENT)
            return -errno;
        return rename_logged(u, sp, dp, parent, name, false);
    }
    if (u->mode == SBX_UPLOAD_CREATE)
        return -EEXIST;
    if (fstatat(sp, name, &sst, AT_SYMLINK_NOFOLLOW) != 0)
        return -errno;
    if (u->mode == SBX_UPLOAD_REPLACE || !S_ISDIR(dst.st_mode) || !S_ISDIR(sst.st_mode))
        return rename_logged(u, sp, dp, parent, name, true);
    return merge_dirs(u, sp, dp, parent, name);
}

static void rollback(struct upload *u)
{
    for (size_t i = u->nops; i-- > 0;) {
        struct journal_op *op = &u->ops[i];
        int sp = open_below(u->stgfd, op->parent);
        int dp = open_below(u->destfd, op->parent);
        int rc = 0;
        if (sp < 0 || dp < 0)
            rc = sp < 0 ? sp : dp;
        else if (op->exchanged)
            rc = renameat2(sp, op->name, dp, op->name, RENAME_EXCHANGE) ? -errno : 0;
        else
            rc = renameat2(dp, op->name, sp, op->name, RENAME_NOREPLACE) ? -errno : 0;
        if (rc < 0)
            SBX_LOG_ERRNO(SBX_LOG_ERROR, "files", rc,
                          "upload rollback step failed parent=\"%s\" name=\"%s\"", op->parent,
                          op->name);
        if (sp >= 0)
            close(sp);
        if (dp >= 0)
            close(dp);
    }
}

/* Removes the directories mkdir -p made for dest (deepest first), only while they are empty. */
static void remove_created(const sbx_files *fs, const char *dest, const char *created)
{
    char buf[SBX__PATHBUF];
    snprintf(buf, sizeof buf, "%s", dest);
    size_t stop = strlen(created);
    for (;;) {
        size_t len = strlen(buf);
        while (len > 1 && buf[len - 1] == '/')
            buf[--len] = '\0';
        if (len < stop)
            return;
        char *slash = strrchr(buf, '/');
        if (!slash)
            return;
        char name[SBX_FILES_NAME_MAX + 1];
        snprintf(name, sizeof name, "%s", slash + 1);
        if (slash == buf)
            slash[1] = '\0';
        else
            *slash = '\0';
        int pfd = sbx__files_open_in_root(fs, buf, O_PATH | O_DIRECTORY);
        if (pfd < 0)
            return;
        int rc = strcmp(name, ".") && strcmp(name, "..") ? unlinkat(pfd, name, AT_REMOVEDIR) : -1;
        close(pfd);
        if (rc != 0)
            return;
    }
}

static int stage_all(struct upload *u, struct item *items, size_t n)
{
    char *cur = NULL; /* staging parent the cached fd points to */
    int curfd = -1, rc = 0;
    for (size_t k = 0; k < n && rc == 0; k++) {
        const sbx_upload_entry *e = &u->entries[items[k].idx];
        char *path = items[k].path;
        char *slash = strrchr(path, '/');
        const char *parent = "", *name = path;
        if (slash) {
            *slash = '\0';
            parent = path;
            name = slash + 1;
        }
        if (!cur || strcmp(cur, parent) != 0) {
            if (curfd >= 0)
                close(curfd);
            free(cur);
            curfd = -1;
            cur = strdup(parent);
            rc = cur ? stage_dirs(u->stgfd, parent, &curfd) : -ENOMEM;
        }
        if (rc == 0)
            rc = stage_one(u, curfd, name, e);
        if (slash)
            *slash = '/';
        if (rc < 0) {
            char what[64];
            snprintf(what, sizeof what, "entries[%zu].path: staging", items[k].idx);
            sbx__files_seterr(u->err, u->errlen, "%s: %s", what, sbx__files_strerror(rc));
        }
    }
    if (curfd >= 0)
        close(curfd);
    free(cur);
    return rc;
}

/* Explicit directory modes, applied in dest once everything is in place (a 0555 directory
 * must still be filled, and a directory moved to another parent must be writable), deepest
 * first. */
static int apply_dir_modes(struct upload *u, struct item *items, size_t n)
{
    int rc = 0;
    for (size_t k = n; rc == 0 && k-- > 0;) {
        const sbx_upload_entry *e = &u->entries[items[k].idx];
        if (e->type != SBX_UPLOAD_DIR || !e->mode)
            continue;
        char *slash = strrchr(items[k].path, '/');
        int pfd = u->destfd;
        if (slash) {
            *slash = '\0';
            pfd = open_below(u->destfd, items[k].path);
            *slash = '/';
        }
        rc =
            pfd < 0 ? pfd : sbx__files_fix_mode_at(pfd, slash ? slash + 1 : items[k].path, e->mode);
        if (slash && pfd >= 0)
            close(pfd);
        if (rc < 0)
            sbx__files_seterr(u->err, u->errlen, "entries[%zu].mode: %s", items[k].idx,
                              sbx__files_strerror(rc));
    }
    return rc;
}

static int commit_all(struct upload *u, struct item *items, size_t n)
{
    const char *prev = NULL;
    size_t prevlen = 0;
    for (size_t k = 0; k < n; k++) {
        const char *p = items[k].path;
        size_t tl = strcspn(p, "/");
        if (prev && tl == prevlen && memcmp(p, prev, tl) == 0)
            continue; /* same top-level item as before */
        prev = p;
        prevlen = tl;
        char top[SBX_FILES_NAME_MAX + 1];
        memcpy(top, p, tl);
        top[tl] = '\0';
        int rc = place(u, u->stgfd, u->destfd, "", top);
        if (rc < 0) {
            if (rc == -EEXIST && u->mode == SBX_UPLOAD_CREATE)
                sbx__files_seterr(u->err, u->errlen, "entries[%zu].path: \"%s\" exists in dest",
                                  items[k].idx, top);
            else
                sbx__files_seterr(u->err, u->errlen, "entries[%zu].path: moving into place: %s",
                                  items[k].idx, sbx__files_strerror(rc));
            return rc;
        }
    }
    return 0;
}

/* Checks the options and every entry (types, modes, count and byte limits) before anything is
 * touched. */
static int check_request(const sbx_upload_opts *opts, const sbx_upload_entry *entries, size_t n,
                         char *err, size_t errlen)
{
    size_t max_entries = opts->max_entries ? opts->max_entries : SBX_UPLOAD_ENTRIES_DEFAULT;
    uint64_t max_bytes = opts->max_bytes ? opts->max_bytes : SBX_UPLOAD_BYTES_DEFAULT;
    if (max_entries > SBX_UPLOAD_ENTRIES_MAX)
        max_entries = SBX_UPLOAD_ENTRIES_MAX;
    if (opts->mode != SBX_UPLOAD_MERGE && opts->mode != SBX_UPLOAD_REPLACE &&
        opts->mode != SBX_UPLOAD_CREATE) {
        sbx__files_seterr(err, errlen, "mode: must be merge, replace or create");
        return -EINVAL;
    }
    if (n == 0) {
        sbx__files_seterr(err, errlen, "entries: must not be empty");
        return -EINVAL;
    }
    if (n > max_entries) {
        sbx__files_seterr(err, errlen, "entries: more than %zu entries", max_entries);
        return -E2BIG;
    }
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = validate_entry(&entries[i], i, err, errlen);
        if (rc < 0)
            return rc;
        if (entries[i].type == SBX_UPLOAD_FILE) {
            total += entries[i].len;
            if (total > max_bytes || entries[i].len > max_bytes) {
                sbx__files_seterr(err, errlen, "entries: more than %llu bytes of file data",
                                  (unsigned long long)max_bytes);
                return -EFBIG;
            }
        }
    }
    return 0;
}

static void free_items(struct item *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(items[i].path);
    free(items);
}

/* Sorted items: no path twice, nothing below an entry that is not a directory. */
static int check_order(const sbx_upload_entry *entries, const struct item *items, size_t n,
                       char *err, size_t errlen)
{
    for (size_t k = 1; k < n; k++) {
        const char *a = items[k - 1].path, *b = items[k].path;
        size_t al = strlen(a);
        if (strcmp(a, b) == 0) {
            sbx__files_seterr(err, errlen, "entries[%zu].path: duplicate of entries[%zu].path",
                              items[k].idx, items[k - 1].idx);
            return -EINVAL;
        }
        if (strncmp(a, b, al) == 0 && b[al] == '/' &&
            entries[items[k - 1].idx].type != SBX_UPLOAD_DIR) {
            sbx__files_seterr(err, errlen,
                              "entries[%zu].path: its parent entries[%zu] is not a directory",
                              items[k].idx, items[k - 1].idx);
            return -EINVAL;
        }
    }
    return 0;
}

/* The entries' normalised paths, sorted so that a directory's descendants follow it. *out is
 * freed with free_items(*out, n). */
static int sort_items(const sbx_upload_entry *entries, size_t n, struct item **out, char *err,
                      size_t errlen)
{
    struct item *items = calloc(n, sizeof *items);
    if (!items)
        return -ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        items[i].idx = i;
        rc = normalise(&entries[i], i, &items[i].path, err, errlen);
    }
    if (rc == 0) {
        qsort(items, n, sizeof *items, item_cmp);
        rc = check_order(entries, items, n, err, errlen);
    }
    if (rc < 0) {
        free_items(items, n);
        return rc;
    }
    *out = items;
    return 0;
}

/* As the sandbox user: makes dest if missing, stages the tree in a hidden directory of it,
 * renames the items into place and sets the directory modes, or undoes all of it (dest too,
 * when this call made it). */
static int upload_into(struct upload *u, const char *dest, struct item *items, size_t n)
{
    char stg[64];
    char *created = NULL;
    bool staged = false;
    int rc = sbx__files_mkdir_p(u->fs, dest, SBX_FILES_MODE_DIR, &u->destfd, &created);
    if (rc == 0)
        rc = sbx__files_check_fs(u->destfd);
    if (rc < 0) {
        sbx__files_seterr(u->err, u->errlen, "dest: %s", sbx__files_strerror(rc));
        goto out_dest;
    }
    sbx__files_random_name(stg, sizeof stg, SBX_UPLOAD_STAGING_PREFIX);
    if (mkdirat(u->destfd, stg, 0700) != 0) {
        rc = -errno;
        sbx__files_seterr(u->err, u->errlen, "dest: creating the staging directory: %s",
                          sbx__files_strerror(rc));
        goto out_dest;
    }
    staged = true;
    u->stgfd = openat(u->destfd, stg, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (u->stgfd < 0) {
        rc = -errno;
        sbx__files_seterr(u->err, u->errlen, "dest: opening the staging directory: %s",
                          sbx__files_strerror(rc));
        goto out_dest;
    }
    rc = stage_all(u, items, n);
    if (rc == 0)
        rc = commit_all(u, items, n);
    if (rc == 0)
        rc = apply_dir_modes(u, items, n);
    if (rc < 0)
        rollback(u);

out_dest:
    if (u->stgfd >= 0)
        close(u->stgfd);
    if (staged) {
        int r2 = sbx__files_rmtree_at(u->destfd, stg, 0);
        if (r2 < 0)
            SBX_LOG_ERRNO(SBX_LOG_WARN, "files", r2, "upload staging not removed name=%s", stg);
    }
    if (u->destfd >= 0)
        close(u->destfd);
    if (rc < 0 && created)
        remove_created(u->fs, dest, created);
    free(created);
    return rc;
}

int sbx_files_upload(sbx_files *fs, const sbx_upload_opts *opts, const sbx_upload_entry *entries,
                     size_t n, sbx_upload_result *res, char *err, size_t errlen)
{
    static const sbx_upload_opts defaults;
    if (!opts)
        opts = &defaults;
    if (res)
        memset(res, 0, sizeof *res);
    int rc = check_request(opts, entries, n, err, errlen);
    if (rc < 0)
        return rc;
    char dest[SBX__PATHBUF];
    rc = sbx__files_full_path(fs, "dest", opts->dest ? opts->dest : ".", dest, err, errlen);
    if (rc < 0)
        return rc;
    struct item *items;
    if ((rc = sort_items(entries, n, &items, err, errlen)) < 0)
        return rc;
    struct upload u = {.fs = fs,
                       .entries = entries,
                       .mode = opts->mode,
                       .destfd = -1,
                       .stgfd = -1,
                       .err = err,
                       .errlen = errlen};
    sbx__creds c;
    rc = sbx__files_creds_enter(fs, &c);
    if (rc < 0) {
        sbx__files_seterr(err, errlen, "upload: switch to the sandbox user: %s",
                          sbx__files_strerror(rc));
    } else {
        rc = upload_into(&u, dest, items, n);
        sbx__files_creds_leave(&c);
    }
    for (size_t i = 0; i < u.nops; i++) {
        free(u.ops[i].parent);
        free(u.ops[i].name);
    }
    free(u.ops);
    if (rc == 0 && res)
        *res = u.res;
    free_items(items, n);
    return rc;
}
