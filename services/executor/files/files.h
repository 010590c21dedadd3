/* files.h: the sandbox file layer. Every path a client names is resolved inside one sandbox's
 * root directory with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS), so `..`, absolute paths
 * and symlinks can never reach the host. Relative paths are relative to the sandbox home
 * (/home/user unless configured).
 *
 * Identity: when the config names the host uid/gid of the sandbox user, every operation runs
 * with the calling thread's filesystem credentials switched to that user (setfsuid/setfsgid and
 * an empty supplementary group list, per thread, restored before returning). So the file API
 * can do exactly what the sandbox user could do: files and directories it creates belong to
 * that user by construction, and a host file bind-mounted into the sandbox (/etc/shadow) is
 * refused with EACCES just as it is to a command. Files on kernel pseudo filesystems (proc,
 * sysfs, cgroupfs, debugfs...) are never read or written through this API (EPERM): the
 * executor holds host capabilities that the sandbox does not. The executor's own /proc must be
 * mounted (reads reopen through /proc/self/fd; unnamed temp files are linked through it).
 *
 * Conventions: functions return 0 or a negative errno. `err`/`errlen` (may be NULL/0) receive
 * a one-line message naming the field and limit or the failed step. Output strings and arrays
 * are malloc'd and owned by the caller; each has a matching free function that accepts NULL.
 * An sbx_files handle is immutable after sbx_files_new and may be used from many threads at
 * once.
 *
 * Limits: a path is at most SBX_FILES_PATH_MAX bytes, each component at most
 * SBX_FILES_NAME_MAX bytes, no NUL bytes, not empty (-EINVAL / -ENAMETOOLONG). */
#ifndef SBX_FILES_H
#define SBX_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SBX_FILES_PATH_MAX 4096
#define SBX_FILES_NAME_MAX 255
#define SBX_FILES_HOME "/home/user"
#define SBX_FILES_USER_ID 1000
#define SBX_FILES_OVERFLOW_ID 65534 /* how an unmapped host id looks inside (kernel's default) */
#define SBX_FILES_LIST_DEPTH_DEFAULT 1
#define SBX_FILES_LIST_DEPTH_MAX 32
#define SBX_FILES_LIST_ENTRIES_DEFAULT 10000
#define SBX_FILES_LIST_ENTRIES_MAX 100000
#define SBX_FILES_REMOVE_DEPTH_MAX 256 /* deeper trees: -ELOOP (use rm -rf inside) */
#define SBX_FILES_MODE_FILE 0644
#define SBX_FILES_MODE_DIR 0755

typedef struct sbx_files sbx_files;

/* One contiguous range of a user namespace id map: inside..inside+count-1 <-> outside... */
typedef struct sbx_files_idmap {
    uint32_t inside, outside, count;
} sbx_files_idmap;

typedef struct sbx_files_config {
    const char *home;                 /* base of relative paths; absolute, <= 255 bytes */
    uint32_t user_uid, user_gid;      /* the sandbox user's ids inside (1000) */
    uid_t host_uid;                   /* host uid the sandbox user maps to; (uid_t)-1: do not switch
                                         credentials (act as the caller; tests/rootless only) */
    gid_t host_gid;                   /* host gid of the sandbox user's group */
    sbx_files_idmap uid_map, gid_map; /* for reporting ids as seen inside; count 0: derived
                                         (65536 ids around host_uid <-> user_uid) */
    uint64_t max_file_size;           /* default cap for one written file; 0 = none */
} sbx_files_config;

/* Fills the defaults: home /home/user, user 1000:1000, no credential switch, no size cap. */
void sbx_files_config_init(sbx_files_config *cfg);

/* Creates a handle over `rootfd` (a directory fd, e.g. open("/proc/<init>/root", O_PATH |
 * O_DIRECTORY)). The fd is duplicated: the caller keeps and closes its own. -EPERM when the
 * config asks for a credential switch the process cannot make; -EINVAL for a bad config.
 * *out is freed with sbx_files_free (NULL is harmless). */
int sbx_files_new(int rootfd, const sbx_files_config *cfg, sbx_files **out);
void sbx_files_free(sbx_files *fs);
/* A second handle on the same sandbox root (its own duplicate of the root fd) with the same
 * config, for a user that outlives the first one's owner (a watch). -ENOMEM / -EMFILE. */
int sbx_files_dup(const sbx_files *fs, sbx_files **out);

/* Checks one client-supplied path of `len` bytes (which may contain NUL bytes, as a protobuf
 * `bytes` field can): -EINVAL for empty or NUL, -ENAMETOOLONG for > 4096 bytes or a component
 * > 255 bytes. The message names `field` and the limit. Every operation below runs it too. */
int sbx_files_check_path(const char *field, const char *path, size_t len, char *err, size_t errlen);

/* The gRPC status for a result of this layer (sbx_status_from_errno plus what it places
 * otherwise: E2BIG -> RESOURCE_EXHAUSTED, EBUSY and ELOOP -> FAILED_PRECONDITION, EXDEV ->
 * INVALID_ARGUMENT). */
int sbx_files_status(int err);

typedef enum {
    SBX_FILE_REGULAR = 1,
    SBX_FILE_DIR = 2,
    SBX_FILE_SYMLINK = 3,
    SBX_FILE_OTHER = 4, /* fifo, socket, device */
} sbx_file_type;

typedef struct sbx_file_info {
    sbx_file_type type;
    uint64_t size;
    uint32_t mode; /* permission bits, 07777 */
    int64_t mtime_ms;
    uint32_t uid, gid;    /* as seen inside the sandbox */
    char *symlink_target; /* SYMLINK only (not on pseudo filesystems); malloc'd, else NULL */
} sbx_file_info;

/* Frees info->symlink_target and zeroes *info. NULL is harmless. */
void sbx_file_info_clear(sbx_file_info *info);

/* lstat semantics: a final symlink is reported, not followed. */
int sbx_files_stat(sbx_files *fs, const char *path, sbx_file_info *out, char *err, size_t errlen);

/* Opens a regular file for reading (symlinks are followed, inside the root). On success *fd is
 * an O_RDONLY|O_CLOEXEC fd the caller owns (pread it at any offset; close it) and *info (may be
 * NULL) describes the opened file. -EISDIR for a directory, -EINVAL for a fifo/socket/device,
 * -EPERM on a pseudo filesystem, -EACCES if the sandbox user may not read it. */
int sbx_files_open_read(sbx_files *fs, const char *path, int *fd, sbx_file_info *info, char *err,
                        size_t errlen);

typedef struct sbx_files_write_opts {
    uint32_t mode;     /* 0777 bits; 0: the replaced file's mode, else 0644 */
    bool append;       /* start from the current content (copied; still atomic) */
    bool no_parents;   /* do not create missing parent directories (-ENOENT) */
    bool sync;         /* fdatasync the file and fsync its directory at commit */
    uint64_t max_size; /* cap on the final size; 0: the handle's max_file_size */
} sbx_files_write_opts;

/* Streaming, atomic write. The data goes to an unnamed file (O_TMPFILE; a hidden temp name
 * where unsupported) in the target's directory and replaces the target only at commit, so a
 * failed or cancelled write leaves the old file (or nothing) in place. A final symlink is
 * followed inside the root (the file it names is replaced); an existing hard link is broken
 * (the other names keep the old content). Owner: the sandbox user. Parents are created (mode
 * 0755, owned by the sandbox user) unless opts->no_parents. opts may be NULL.
 *
 * The writer may move between threads but must not be used by two at once; `fs` must outlive
 * it. _chunk returns -EFBIG past the size cap (the writer then only accepts abort). _commit and
 * _abort always free the writer; abort(NULL) is harmless. */
typedef struct sbx_files_writer sbx_files_writer;
int sbx_files_write_begin(sbx_files *fs, const char *path, const sbx_files_write_opts *opts,
                          sbx_files_writer **out, char *err, size_t errlen);
int sbx_files_write_chunk(sbx_files_writer *w, const void *buf, size_t len, char *err,
                          size_t errlen);
/* *size (may be NULL) gets the final file size. */
int sbx_files_write_commit(sbx_files_writer *w, uint64_t *size, char *err, size_t errlen);
void sbx_files_write_abort(sbx_files_writer *w);

typedef struct sbx_files_entry {
    char *path;     /* relative to the listed directory, e.g. "src/main.c"; malloc'd */
    uint32_t depth; /* 1 for direct children */
    sbx_file_info info;
} sbx_files_entry;

/* Lists `path` (a final symlink to a directory is followed inside the root; nothing below it
 * ever is) down to `depth` levels (0: 1; > 32: -EINVAL), pre-order, each directory's entries
 * sorted by name. At most `max_entries` (0: 10000; > 100000: -EINVAL) are returned; *truncated
 * says whether some were left out (which ones is then unspecified). Free *out with
 * sbx_files_list_free(*out, *n). */
int sbx_files_list(sbx_files *fs, const char *path, uint32_t depth, size_t max_entries,
                   sbx_files_entry **out, size_t *n, bool *truncated, char *err, size_t errlen);
void sbx_files_list_free(sbx_files_entry *entries, size_t n);

/* Creates a directory (mode 0: 0755; 0777 bits and sticky only). An existing directory is
 * success with *created = false; an existing non-directory is -EEXIST. `parents` creates
 * missing parents (0755). created may be NULL. */
int sbx_files_mkdir(sbx_files *fs, const char *path, uint32_t mode, bool parents, bool *created,
                    char *err, size_t errlen);

/* Removes a file, symlink (never its target) or directory (`recursive` for a non-empty one;
 * without it -ENOTEMPTY). Never follows symlinks and never descends into another mount
 * (-EBUSY); trees deeper than 256 levels: -ELOOP. A read-only directory of the sandbox user's
 * is made writable to be emptied (its owner could do the same). A missing path is success with
 * *existed = false (existed may be NULL). */
int sbx_files_remove(sbx_files *fs, const char *path, bool recursive, bool *existed, char *err,
                     size_t errlen);

/* Renames src to dst (final symlinks are moved, not followed). Without `overwrite` an existing
 * dst is -EEXIST (RENAME_NOREPLACE). Across mounts: -EXDEV. */
int sbx_files_move(sbx_files *fs, const char *src, const char *dst, bool overwrite, char *err,
                   size_t errlen);

#endif
