/* walsync.c: makes RocksDB's write-ahead log durable from the syncer thread (durable.c), with
 * descriptors of its own.
 *
 * The committer writes groups without syncing: RocksDB has then handed every byte of them to
 * the kernel (write(2) at the end of each write; manual WAL flush is off). fdatasync on any
 * descriptor of the log file makes those bytes durable, so the syncer opens the log files
 * itself and never touches RocksDB's log writer, which belongs to the committer: RocksDB's
 * SyncWAL would race the committer's appends, and this Debian build aborts on an assertion
 * when it syncs a writer whose append failed (a full disk). New log files (RocksDB switches
 * to one when a memtable fills) are seen through inotify on the data dir; the event is queued
 * before RocksDB's open(2) returns, so before the committer's write that switched hands its
 * group over. Their directory entry is made durable too (fsync of the dir). An older log
 * gets its last sync in the first round after a newer one appeared, then is closed.
 *
 * A failed fdatasync is final: the kernel reports a lost write-back once, so the log can no
 * longer be trusted and every later sync fails until the store is restarted.
 * Calls keys.c only.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "log.h"
#include "storedb_int.h"

/* The number of a log file name ("000012.log"), or 0. */
static uint64_t log_number(const char *name)
{
    const char *p = name;
    uint64_t n = 0;
    for (; *p >= '0' && *p <= '9'; p++)
        n = n * 10 + (uint64_t)(*p - '0');
    return p != name && strcmp(p, ".log") == 0 ? n : 0;
}

static void add_log(sdb__walsync *w, const char *name)
{
    uint64_t num = log_number(name);
    if (!num)
        return;
    for (int i = 0; i < w->n; i++)
        if (w->logs[i].num == num)
            return;
    int fd = openat(w->dir_fd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return; /* already deleted: nothing of it to sync */
    if (w->n == SDB__WAL_FILES) {
        /* more new logs than rounds: sync and close the oldest now */
        int oldest = 0;
        for (int i = 1; i < w->n; i++)
            if (w->logs[i].num < w->logs[oldest].num)
                oldest = i;
        if (fdatasync(w->logs[oldest].fd) != 0 && !w->failed_errno)
            w->failed_errno = errno;
        close(w->logs[oldest].fd);
        w->logs[oldest] = w->logs[--w->n];
    }
    w->logs[w->n].num = num;
    w->logs[w->n].fd = fd;
    w->n++;
    w->dir_dirty = true;
}

static void scan_dir(sdb__walsync *w)
{
    int fd = dup(w->dir_fd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return;
    }
    rewinddir(d);
    for (struct dirent *e; (e = readdir(d));)
        add_log(w, e->d_name);
    closedir(d);
}

/* New log files since the last round. */
static void drain_events(sdb__walsync *w)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t n = read(w->ino_fd, buf, sizeof buf);
        if (n <= 0)
            return; /* EAGAIN: nothing more */
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *ev = (struct inotify_event *)p;
            if (ev->mask & IN_Q_OVERFLOW)
                scan_dir(w);
            else if (ev->len)
                add_log(w, ev->name);
            p += sizeof *ev + ev->len;
        }
    }
}

int sdb__walsync_open(sdb *db, char *err, size_t errlen)
{
    sdb__walsync *w = &db->wal;
    w->ino_fd = w->dir_fd = -1;
    w->dir_fd = open(db->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w->dir_fd < 0)
        return sdb__err(err, errlen, sbx_status_from_errno(errno), "open %s: %s", db->path,
                        strerror(errno));
    w->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->ino_fd < 0 || inotify_add_watch(w->ino_fd, db->path, IN_CREATE | IN_MOVED_TO) < 0) {
        int e = errno;
        sdb__walsync_close(db);
        return sdb__err(err, errlen, sbx_status_from_errno(e), "inotify on %s: %s", db->path,
                        strerror(e));
    }
    scan_dir(w); /* after the watch: a log created in between is seen twice, not missed */
    return SBX_OK;
}

int sdb__walsync_sync(sdb *db, char *err, size_t errlen)
{
    sdb__walsync *w = &db->wal;
    drain_events(w);
    if (!w->failed_errno && w->dir_dirty) {
        if (fsync(w->dir_fd) != 0)
            w->failed_errno = errno;
        w->dir_dirty = false;
    }
    uint64_t newest = 0;
    for (int i = 0; i < w->n; i++) {
        if (w->logs[i].num > newest)
            newest = w->logs[i].num;
        if (!w->failed_errno && fdatasync(w->logs[i].fd) != 0)
            w->failed_errno = errno;
    }
    if (w->failed_errno) {
        if (!w->failed_logged) {
            w->failed_logged = true;
            SBX_LOG_ERROR("store",
                          "wal sync failed, no write is acknowledged until a restart "
                          "err=\"%s\"",
                          strerror(w->failed_errno));
        }
        int e = w->failed_errno;
        int code = e == ENOSPC || e == EDQUOT ? SBX_RESOURCE_EXHAUSTED : SBX_UNAVAILABLE;
        return sdb__err(err, errlen, code,
                        "store sync failed (%s): fdatasync of the write-ahead log: %s",
                        code == SBX_RESOURCE_EXHAUSTED ? "the disk is full" : "storage I/O failed",
                        strerror(e));
    }
    /* older logs got their last sync: nothing is written to them after a newer one exists */
    for (int i = 0; i < w->n;) {
        if (w->logs[i].num < newest) {
            close(w->logs[i].fd);
            w->logs[i] = w->logs[--w->n];
        } else {
            i++;
        }
    }
    return SBX_OK;
}

void sdb__walsync_close(sdb *db)
{
    sdb__walsync *w = &db->wal;
    for (int i = 0; i < w->n; i++)
        close(w->logs[i].fd);
    w->n = 0;
    if (w->ino_fd >= 0)
        close(w->ino_fd);
    if (w->dir_fd >= 0)
        close(w->dir_fd);
    w->ino_fd = w->dir_fd = -1;
}
