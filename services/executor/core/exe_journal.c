/* exe_journal.c: the journal of running background executions, so that one the executor's
 * death ended (kill -9, a crash) still gets its history record. When the monitor takes a
 * background execution over, its record as if killed (exit by SIGKILL, 137, output lost) is
 * written to <data-dir>/running/<record_id>; when its real record is queued in the outbox the
 * entry goes. At the next start every entry left is completed (its duration: from its start to
 * now, the latest the command can have ended) and queued for the store the way every record is
 * (sbx__exe_record_queue: the outbox's public append), then removed. The record keeps the
 * execution's record_id, so an entry whose real record was queued just before the death is a
 * duplicate the store ignores.
 *
 * Entry file: u16 tenant length (little endian), tenant, the packed RecordExecutionRequest.
 * Written to a temporary name and renamed, without fsync (it must survive the executor, not
 * the host).
 *
 * Threads: any handler (add), the monitor (done), main's at start-up (recovery). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "exectab_int.h"
#include "log.h"

#define ENTRY_MAX (4u << 20) /* a record is at most a few hundred KiB (argv) */

static char *entry_path(const char *dir, const char *name, const char *suffix)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s%s", dir, name, suffix) < 0)
        return NULL;
    return p;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Writes tenant + req to path through a temporary file. 0 or -errno. */
static int write_entry(const char *path, const char *tenant, const uint8_t *req, size_t len)
{
    char *tmp = NULL;
    if (asprintf(&tmp, "%s.tmp", path) < 0)
        return -ENOMEM;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int rc = fd < 0 ? -errno : 0;
    size_t tl = strlen(tenant);
    uint8_t hdr[2] = {(uint8_t)(tl & 0xff), (uint8_t)(tl >> 8)};
    if (rc == 0 && (rc = write_all(fd, hdr, 2)) == 0 && (rc = write_all(fd, tenant, tl)) == 0)
        rc = write_all(fd, req, len);
    if (fd >= 0 && close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0)
        unlink(tmp);
    free(tmp);
    return rc;
}

void sbx__exe_journal_add(sbx_exe *e)
{
    sbx_execmon *m = e->priv->mon;
    if (!m || !m->journal)
        return;
    size_t len = 0;
    uint8_t *buf = sbx__exe_record_pack(e, true, &len);
    char *path = entry_path(m->journal, e->id, "");
    int rc = buf && path ? write_entry(path, e->tenant, buf, len) : -ENOMEM;
    if (rc < 0)
        SBX_LOG_ERRNO(SBX_LOG_WARN, "exec", rc,
                      "cannot journal a background command (if the executor dies now it gets "
                      "no history record) id=%s",
                      e->id);
    free(path);
    free(buf);
}

void sbx__exe_journal_done(sbx_exe *e)
{
    sbx_execmon *m = e->priv->mon;
    if (!m || !m->journal)
        return;
    char *path = entry_path(m->journal, e->id, "");
    if (path && unlink(path) < 0 && errno != ENOENT)
        SBX_LOG_ERRNO(SBX_LOG_WARN, "exec", -errno, "cannot remove a journal entry path=%s", path);
    free(path);
}

/* Reads a whole entry file (malloc'd, *len bytes), or NULL. */
static uint8_t *read_entry(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return NULL;
    struct stat st;
    uint8_t *buf = NULL;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 2 &&
        (uint64_t)st.st_size <= ENTRY_MAX && (buf = malloc((size_t)st.st_size))) {
        size_t got = 0;
        while (got < (size_t)st.st_size) {
            ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        if (got != (size_t)st.st_size) {
            free(buf);
            buf = NULL;
        }
        *len = got;
    }
    close(fd);
    return buf;
}

/* Completes one entry (its duration) and queues it: 0, -EINVAL (malformed: dropped) or the
 * -errno of the append (kept for the next start). */
static int recover_entry(sbx_execmon *m, const char *path, int64_t now_ms)
{
    size_t len = 0;
    uint8_t *buf = read_entry(path, &len);
    if (!buf)
        return -EINVAL;
    size_t tl = (size_t)buf[0] | (size_t)buf[1] << 8;
    char tenant[72];
    Sbx__V1__RecordExecutionRequest *req = NULL;
    if (tl >= 1 && tl < sizeof tenant && 2 + tl < len)
        req = sbx__v1__record_execution_request__unpack(NULL, len - 2 - tl, buf + 2 + tl);
    int rc = -EINVAL;
    if (req && req->record) {
        memcpy(tenant, buf + 2, tl);
        tenant[tl] = 0;
        Sbx__V1__ExecutionRecord *rec = req->record;
        if (rec->started_at_unix_ms > 0 && now_ms > rec->started_at_unix_ms)
            rec->duration_us = (now_ms - rec->started_at_unix_ms) * 1000;
        size_t plen = sbx__v1__record_execution_request__get_packed_size(req);
        uint8_t *packed = malloc(plen ? plen : 1);
        rc = packed ? 0 : -ENOMEM;
        if (packed) {
            sbx__v1__record_execution_request__pack(req, packed);
            rc = sbx__exe_record_queue(m, tenant, req->project_id, packed, plen);
            free(packed);
        }
    }
    sbx__v1__record_execution_request__free_unpacked(req, NULL);
    free(buf);
    return rc;
}

/* Queues every entry a previous run left; returns how many. */
static size_t recover_all(sbx_execmon *m)
{
    DIR *d = opendir(m->journal);
    if (!d)
        return 0;
    int64_t now = sbx_wall_ms();
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char *path = entry_path(m->journal, de->d_name, "");
        if (!path)
            break;
        size_t l = strlen(de->d_name);
        int rc = l > 4 && strcmp(de->d_name + l - 4, ".tmp") == 0 ? -EINVAL
                                                                  : recover_entry(m, path, now);
        if (rc == 0)
            n++;
        else if (rc != -EINVAL)
            SBX_LOG_ERRNO(SBX_LOG_ERROR, "exec", rc,
                          "cannot queue the record of a command the previous run left "
                          "running; kept for the next start path=%s",
                          path);
        if (rc == 0 || rc == -EINVAL)
            unlink(path);
        free(path);
    }
    closedir(d);
    return n;
}

int sbx_execmon_journal(sbx_execmon *m, const char *dir, size_t *recovered)
{
    *recovered = 0;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return -errno;
    char *copy = strdup(dir);
    if (!copy)
        return -ENOMEM;
    free(m->journal);
    m->journal = copy; /* before serving: read without a lock afterwards */
    if (m->stores)
        *recovered = recover_all(m);
    return 0;
}
