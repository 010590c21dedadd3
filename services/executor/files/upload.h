/* upload.h: UploadFiles — apply a whole tree of files, directories and symlinks inside a sandbox
 * all-or-nothing. Every entry is first staged in a hidden directory inside the destination
 * (same filesystem), then each item is renamed into place; if any step fails, every rename done
 * so far is undone and the staging directory removed, so no partial tree is ever left behind.
 * Uses the sbx_files handle of files.h (same path rules, same sandbox-user identity). */
#ifndef SBX_UPLOAD_H
#define SBX_UPLOAD_H

#include "files.h"

#define SBX_UPLOAD_ENTRIES_DEFAULT 10000
#define SBX_UPLOAD_ENTRIES_MAX 100000
#define SBX_UPLOAD_BYTES_DEFAULT (256ull << 20)
#define SBX_UPLOAD_STAGING_PREFIX ".sbx-upload-"

typedef enum {
    SBX_UPLOAD_FILE = 1,
    SBX_UPLOAD_DIR = 2,
    SBX_UPLOAD_SYMLINK = 3,
} sbx_upload_type;

typedef struct sbx_upload_entry {
    const char *path; /* relative to dest; "a/b.txt"; no "..", not absolute */
    size_t path_len;  /* bytes of path (NUL bytes inside are refused); 0: strlen */
    sbx_upload_type type;
    const void *data; /* FILE content */
    size_t len;
    uint32_t mode;      /* 0777 bits (DIR: 01777); 0: 0644 / 0755 */
    const char *target; /* SYMLINK target, stored as given and never followed by us */
} sbx_upload_entry;

typedef enum {
    /* Directories merge with existing ones; any other uploaded item replaces what is at its
     * path (a file over a directory replaces the directory). Untouched siblings stay. */
    SBX_UPLOAD_MERGE = 0,
    /* Each top-level item replaces whatever is at its name, whole subtree included. */
    SBX_UPLOAD_REPLACE = 1,
    /* Fails with -EEXIST (nothing changed) if any top-level name already exists. */
    SBX_UPLOAD_CREATE = 2,
} sbx_upload_mode;

typedef struct sbx_upload_opts {
    const char *dest; /* directory to apply the tree in (created if missing); NULL: home */
    sbx_upload_mode mode;
    size_t max_entries; /* 0: 10000; more entries: -E2BIG */
    uint64_t max_bytes; /* total FILE bytes; 0: 256 MiB; more: -EFBIG */
} sbx_upload_opts;

typedef struct sbx_upload_result {
    size_t files, dirs, symlinks; /* entries applied (implicit parent dirs not counted) */
    uint64_t bytes;
    size_t replaced; /* existing items that were swapped out and deleted */
} sbx_upload_result;

/* Applies `n` entries. opts and res may be NULL. Returns 0 or a negative errno with `err`
 * naming the entry (`entries[i].path: ...`) or the limit. On failure nothing has changed
 * except, at worst, what a concurrent writer in the sandbox did to the same paths. */
int sbx_files_upload(sbx_files *fs, const sbx_upload_opts *opts, const sbx_upload_entry *entries,
                     size_t n, sbx_upload_result *res, char *err, size_t errlen);

#endif
