/* watch.h: watching a sandbox directory for changes (WatchDir). A watch is an inotify instance
 * of the executor holding one inotify watch per directory it follows (the directory, and with
 * `recursive` every directory below it, including those created or moved in later), that turns
 * the kernel's events into coalesced, ordered change events named by absolute path inside the
 * sandbox.
 *
 * Why in the executor and not in the sandbox's init: inotify is per inode, so the executor sees
 * the sandbox's changes whatever mount namespace it is in, and the init stays small (it links
 * no more than it needs to start commands). What makes it safe to follow paths the sandbox
 * controls is the file layer's resolution (resolve.c): every directory is opened with openat2
 * RESOLVE_IN_ROOT (`..`, absolute paths and symlinks clamped to the sandbox root, /proc magic
 * links refused), as an O_PATH fd, with the thread's fs credentials switched to the sandbox user;
 * inotify_add_watch then names that fd through /proc/self/fd/N (a magic link to exactly that
 * directory: no second path walk) with IN_ONLYDIR, so the kernel checks read permission as the
 * sandbox user would meet it. Directories on pseudo filesystems (proc, sysfs, devpts, ...) are
 * never watched. A directory whose name a sandbox process swaps for a symlink between the event
 * and the watch is skipped (O_NOFOLLOW) or, for a swapped parent, watched under its old name:
 * confusing only to a watcher of that sandbox, never a way out of it.
 *
 * Events (kinds numbered as WatchEventKind): CREATE, MODIFY (written, closed after writing, or
 * attributes changed), DELETE, RENAME_FROM + RENAME_TO (same cookie; a rename out of the tree is
 * RENAME_FROM alone, into it RENAME_TO alone) and OVERFLOW (events were lost: the kernel queue
 * or this watch's queue was full; everything before it is exact, the watcher must re-list).
 * Events of one path within `coalesce_ms` of its first pending event are merged (a created file
 * written and closed is one CREATE; a file created and deleted again is nothing; MODIFY then
 * DELETE is DELETE), so a tree of 10,000 new files is 10,000 events. The contents of a
 * directory created later are reported as CREATE events when its watch is added (files made
 * before the watch existed are not missed; a file may then be reported twice, merged when both
 * fall in one window). Events come out in the order of their first occurrence.
 *
 * Limits: the directories a watch holds count against a budget shared by the watches of one
 * sandbox (opts.budget); when a new directory does not fit, sbx_watch_next fails with -ENOSPC
 * and a message naming the limit. The kernel's own limits (fs.inotify.max_user_instances,
 * max_user_watches of the executor's user) are reported the same way.
 *
 * Threads: a watch belongs to one thread at a time. Ownership: the watch keeps its own copy of
 * the file handle (the sandbox root), so it outlives the caller's use of the sandbox; close it
 * when the sandbox stops. Functions return 0 / a count or a negative errno, with a message in
 * err where they take one. */
#ifndef SBX_FILES_WATCH_H
#define SBX_FILES_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "files.h"

#define SBX_WATCH_COALESCE_MS_DEFAULT 50
#define SBX_WATCH_COALESCE_MS_MAX 10000
#define SBX_WATCH_QUEUE_DEFAULT 65536 /* events held before OVERFLOW */

typedef enum {
    SBX_WATCH_CREATE = 2,
    SBX_WATCH_MODIFY = 3,
    SBX_WATCH_DELETE = 4,
    SBX_WATCH_RENAME_FROM = 5,
    SBX_WATCH_RENAME_TO = 6,
    SBX_WATCH_OVERFLOW = 7,
} sbx_watch_kind;

typedef struct sbx_watch_event {
    sbx_watch_kind kind;
    bool is_dir;
    uint32_t cookie;  /* RENAME_FROM / RENAME_TO pairs; 0 otherwise */
    int64_t at_ms;    /* wall clock when the change was read from the kernel */
    const char *path; /* absolute inside the sandbox ("" for OVERFLOW); owned by the watch,
                         valid until its next call */
} sbx_watch_event;

/* Directories the watches of one sandbox hold together (an atomic counter the caller keeps for
 * as long as any of them is open). */
typedef struct sbx_watch_budget {
    int used; /* atomic */
    int max;
    const char *limit_name; /* how the message names the limit, e.g. "--watch-max-dirs" */
} sbx_watch_budget;

typedef struct sbx_watch_opts {
    bool recursive;
    uint32_t coalesce_ms;     /* 0 = SBX_WATCH_COALESCE_MS_DEFAULT */
    size_t max_queued;        /* events held before OVERFLOW; 0 = SBX_WATCH_QUEUE_DEFAULT */
    sbx_watch_budget *budget; /* required */
} sbx_watch_opts;

typedef struct sbx_watch sbx_watch;

/* Starts watching `path` (relative paths are relative to the sandbox home; a final symlink is
 * followed inside the root). Events are reported under `display` (the absolute, normalised form
 * of path the client sees). Errors: -ENOENT, -ENOTDIR, -EACCES (the sandbox user may not read
 * it), -EPERM (a pseudo filesystem), -EINVAL/-ENAMETOOLONG (path), -ENOSPC (the budget or the
 * kernel's watch limit), -EMFILE (the kernel's instance limit). *out is freed with
 * sbx_watch_close. */
int sbx_watch_open(sbx_files *fs, const char *path, const char *display, const sbx_watch_opts *o,
                   sbx_watch **out, char *err, size_t errlen);
/* Waits up to timeout_ms (< 0: forever) for the next event that is due (its coalescing window
 * over). Returns 1 with *ev filled, 0 when none is due yet, -ENOENT once the watched directory
 * was deleted or moved away and every event before that was returned, -ENOSPC when a new
 * directory did not fit the budget (err names the limit), other -errno on inotify failures. */
int sbx_watch_next(sbx_watch *w, sbx_watch_event *ev, int timeout_ms, char *err, size_t errlen);
/* Directories held now. */
size_t sbx_watch_dirs(const sbx_watch *w);
/* Removes every inotify watch, gives the budget back, frees w. NULL is harmless. */
void sbx_watch_close(sbx_watch *w);

#endif
