/* files_int.h: what the files of the file layer share with each other and with nothing else
 * (the doors are files.h and upload.h). The layer, one concern per file:
 *   handle.c   the handle, the sandbox-user credentials (sbx__creds), id mapping, errors
 *   resolve.c  path checks and resolution inside the sandbox root (openat2 RESOLVE_IN_ROOT):
 *              the file a security review starts with
 *   read.c     stat, open for reading, list
 *   write.c    the atomic streaming writer
 *   tree.c     mkdir (and mkdir -p), remove (and rm -rf), move, exact modes
 *   upload.c   the all-or-nothing tree upload
 * Internal names carry the sbx__files_ prefix. */
#ifndef SBX_FILES_INT_H
#define SBX_FILES_INT_H

#include <sys/stat.h>

#include "files.h"

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

/* ---- handle.c */
/* Saved per-thread filesystem credentials while an operation runs as the sandbox user. */
typedef struct sbx__creds {
    bool on;
    uid_t fsuid;
    gid_t fsgid;
    int ngroups;
    gid_t *groups;
    gid_t groups_buf[16];
} sbx__creds;

/* Switches the calling thread's fs uid/gid to the sandbox user with no supplementary groups
 * (nothing when the handle does not switch); -EPERM when it cannot. Always pair with leave. */
int sbx__files_creds_enter(const sbx_files *fs, sbx__creds *c);
void sbx__files_creds_leave(sbx__creds *c);
/* Fills *out from st, with ids as seen inside the sandbox (no symlink target). */
void sbx__files_fill_info(const sbx_files *fs, const struct stat *st, sbx_file_info *out);
void sbx__files_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *sbx__files_strerror(int err);
/* Records "<what>: <strerror>" and returns rc (a negative errno). */
int sbx__files_fail(char *err, size_t errlen, int rc, const char *what);
/* A hidden name "<prefix><16 hex digits>", random. */
void sbx__files_random_name(char *buf, size_t len, const char *prefix);
/* write(2) until all of buf is written (EINTR retried); 0 or -errno. */
int sbx__files_write_all(int fd, const void *buf, size_t len);

/* ---- resolve.c */
#define SBX__PATHBUF (SBX_FILES_PATH_MAX + 512)
/* Validates `path` and writes the in-root absolute form into buf[SBX__PATHBUF]. */
int sbx__files_full_path(const sbx_files *fs, const char *field, const char *path, char *buf,
                         char *err, size_t errlen);
/* openat2(rootfd, p, flags, RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS); returns fd or -errno. */
int sbx__files_open_in_root(const sbx_files *fs, const char *p, int flags);
/* Splits an in-root path in place into its parent and last component. Trailing slashes are
 * dropped. -EINVAL when the last component is "", "." or ".." (no name to act on). */
int sbx__files_split_last(char *p, const char **parent, const char **name);
/* The prologue of an operation on one client path: validates `path` into full[SBX__PATHBUF]
 * and switches the thread to the sandbox user (*c: leave it after). op names the operation in
 * the message ("stat: switch to the sandbox user: ..."). */
int sbx__files_enter(const sbx_files *fs, const char *path, char *full, sbx__creds *c,
                     const char *op, char *err, size_t errlen);
/* Opens (O_PATH) the directory an in-root path's last component lives in, creating missing
 * directories when `create`; -EPERM on a pseudo filesystem. */
int sbx__files_open_parent(const sbx_files *fs, const char *parent, bool create);
/* -EPERM when fd is on a kernel pseudo filesystem, 0 otherwise. */
int sbx__files_check_fs(int fd);
/* Reads the target of the symlink dirfd/name ("" with an O_PATH fd of the link itself);
 * hint: its size when known, else 0. *out is malloc'd. */
int sbx__files_read_link(int dirfd, const char *name, size_t hint, char **out);
/* Follows final symlinks (inside the root) until `full` names a non-symlink or nothing.
 * On success *dirfd is the O_PATH parent, *name points into full, *st is filled when the
 * target exists (*exists). `parents` creates missing directories on the way. */
int sbx__files_resolve_target(const sbx_files *fs, char *full, bool parents, int *dirfd,
                              const char **name, struct stat *st, bool *exists, char *err,
                              size_t errlen);

/* ---- read.c */
/* Reads up to `limit` names of the directory fd (consumed), sorted, "." and ".." left out;
 * *more says whether more exist. Free *out with sbx__files_free_names(*out, *n). */
int sbx__files_read_names(int fd, size_t limit, char ***out, size_t *n, bool *more);
void sbx__files_free_names(char **names, size_t n);

/* ---- tree.c */
/* mkdir -p of an in-root absolute path; *fd gets an O_PATH fd of it. *created (may be NULL)
 * gets the in-root path of the top-most directory created (malloc'd; NULL if none). */
int sbx__files_mkdir_p(const sbx_files *fs, const char *p, uint32_t mode, int *fd, char **created);
/* Makes a new file's (fd) or directory's (dirfd/name, no-follow) mode exactly `mode`; the
 * chmod (a journaled write on ext4) only when the umask changed it. */
int sbx__files_fix_mode(int fd, uint32_t mode);
int sbx__files_fix_mode_at(int dirfd, const char *name, uint32_t mode);
/* rm -rf of dirfd/name without following symlinks or crossing mounts. */
int sbx__files_rmtree_at(int dirfd, const char *name, int depth);

#endif
