/* outbox.c: the durable, in-order outbox of finished commands (see outbox.h). One append-only
 * log, one acknowledgement offset, one sender thread that delivers the stored bytes as they
 * are (the tenant framed before them).
 *
 * Threads: the sender; appenders and flushers from any thread. Locks: append_mu serializes
 * appends (writes happen under it, not under mu), then mu guards offsets and counters; the
 * sender takes append_mu only with trylock (to compact). */
#include "outbox.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "backoff.h"
#include "clock.h"
#include "log.h"
#include "status.h"

#define MAGIC 0x4f584253u /* "SBXO" little-endian */
#define HDR 12u
#define ENTRY_MAX (8u << 20)
#define REFUSING_MS 30000    /* failing this long: the store "keeps refusing" (error log) */
#define ERROR_EVERY_MS 60000 /* at most one such error line a minute */
#define MARK_EVERY_MS 1000   /* resolution of the oldest record's age */

/* Where the records appended at one moment start: the age of the oldest pending record is the
 * age of the last mark at or before read_off. */
typedef struct mark {
    uint64_t off;
    uint64_t ms;
} mark;

struct sbx_outbox {
    sbx_outbox_cfg cfg;
    char *dir;
    int logfd, ackfd, deadfd;
    pthread_mutex_t mu; /* everything below; appends also hold append_mu */
    pthread_mutex_t append_mu;
    pthread_cond_t cond; /* sender waits for work / flushers wait for empty */
    uint64_t write_off;  /* end of the valid log */
    uint64_t read_off;   /* first undelivered entry */
    uint64_t pending;
    uint64_t delivered, dead, retries;
    int last_code;
    bool stop, kick;
    pthread_t sender;
    mark *marks; /* a queue: marks[mhead .. mhead + nmarks) modulo mcap */
    size_t mhead, nmarks, mcap;
    uint64_t failing_since, error_at; /* mono ms; 0 = not failing / never logged */
};

/* ---------------------------------------------------------------- crc32 (IEEE) */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    for (size_t i = 0; i < n; i++)
        crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* ---------------------------------------------------------------- file helpers */

static int pread_all(int fd, void *buf, size_t n, uint64_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, (uint8_t *)buf + done, n - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -ENODATA;
        done += (size_t)r;
    }
    return 0;
}

static int write_ack(sbx_outbox *ob, uint64_t off, bool sync)
{
    if (pwrite(ob->ackfd, &off, sizeof off, 0) != (ssize_t)sizeof off)
        return -errno;
    if (sync && fdatasync(ob->ackfd) < 0)
        return -errno;
    return 0;
}

/* Reads the entry at off: payload into a malloc'd *buf (caller frees), *next = next offset.
 * -ENODATA at the end, -EBADMSG for a torn/corrupt entry. */
static int read_entry(int fd, uint64_t off, uint8_t **buf, uint32_t *len, uint64_t *next)
{
    uint8_t h[HDR];
    int rc = pread_all(fd, h, HDR, off);
    if (rc < 0)
        return rc;
    uint32_t n = get32(h + 4);
    if (get32(h) != MAGIC || n < 2 || n > ENTRY_MAX)
        return -EBADMSG;
    uint8_t *p = malloc(n);
    if (!p)
        return -ENOMEM;
    if ((rc = pread_all(fd, p, n, off + HDR)) < 0) {
        free(p);
        return rc == -ENODATA ? -EBADMSG : rc;
    }
    if (crc32_update(0, p, n) != get32(h + 8)) {
        free(p);
        return -EBADMSG;
    }
    *buf = p;
    *len = n;
    *next = off + HDR + n;
    return 0;
}

/* ---------------------------------------------------------------- open / recover */

static int mkdir_p(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *s = tmp + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = 0;
        if (mkdir(tmp, 0711) < 0 && errno != EEXIST) /* parents: the data dir sandboxes traverse */
            return -errno;
        *s = '/';
    }
    if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static int open_in(const char *dir, const char *name, int flags)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int fd = open(p, flags | O_CLOEXEC, 0600);
    return fd < 0 ? -errno : fd;
}

static int recover(sbx_outbox *ob)
{
    uint64_t ack = 0;
    ssize_t r = pread(ob->ackfd, &ack, sizeof ack, 0);
    if (r != (ssize_t)sizeof ack)
        ack = 0;
    uint64_t off = 0, start = 0, pending = 0;
    bool found_ack = ack == 0;
    for (;;) {
        uint8_t *p;
        uint32_t n;
        uint64_t next;
        if (off == ack) {
            found_ack = true;
            start = off;
            pending = 0;
        }
        int rc = read_entry(ob->logfd, off, &p, &n, &next);
        if (rc == -ENODATA)
            break;
        if (rc == -EBADMSG) {
            SBX_LOG_WARN("outbox", "dropping a torn tail offset=%llu", (unsigned long long)off);
            if (ftruncate(ob->logfd, (off_t)off) < 0)
                return -errno;
            break;
        }
        if (rc < 0)
            return rc;
        free(p);
        pending++;
        off = next;
    }
    if (!found_ack) { /* the ack points past the valid end or into an entry: resend all */
        SBX_LOG_WARN("outbox",
                     "acknowledgement offset %llu is not an entry boundary; "
                     "redelivering the whole queue (record ids make that harmless)",
                     (unsigned long long)ack);
        start = 0;
        pending = 0;
        for (uint64_t o = 0; o < off;) {
            uint8_t *p;
            uint32_t n;
            uint64_t next;
            if (read_entry(ob->logfd, o, &p, &n, &next) < 0)
                break;
            free(p);
            pending++;
            o = next;
        }
    }
    ob->write_off = off;
    ob->read_off = start;
    ob->pending = pending;
    return 0;
}

/* ---------------------------------------------------------------- sender */

static bool permanent(int code)
{
    return code == SBX_INVALID_ARGUMENT || code == SBX_OUT_OF_RANGE;
}

static void to_dead(sbx_outbox *ob, const uint8_t *p, uint32_t n)
{
    uint8_t h[HDR];
    put32(h, MAGIC);
    put32(h + 4, n);
    put32(h + 8, crc32_update(0, p, n));
    struct iovec iov[2] = {{h, HDR}, {(void *)p, n}};
    if (writev(ob->deadfd, iov, 2) < 0)
        SBX_LOG_ERRNO(SBX_LOG_ERROR, "outbox", errno, "cannot write dead.log");
}

static void timed_wait(sbx_outbox *ob, int64_t ms)
{
    struct timespec ts;
    sbx_deadline_in(&ts, ms);
    pthread_cond_timedwait(&ob->cond, &ob->mu, &ts);
}

static void maybe_compact(sbx_outbox *ob)
{
    /* caller holds mu and append_mu; everything is delivered */
    if (ob->read_off != ob->write_off || ob->write_off < ob->cfg.compact_bytes)
        return;
    /* ack first (synced): a crash between the two steps only redelivers no-ops */
    if (write_ack(ob, 0, true) < 0 || ftruncate(ob->logfd, 0) < 0) {
        SBX_LOG_ERRNO(SBX_LOG_WARN, "outbox", errno, "cannot compact queue.log");
        return;
    }
    ob->read_off = ob->write_off = 0;
}

/* Hands one entry (tenant, request) to the delivery callback (no lock held). */
static int deliver_entry(sbx_outbox *ob, const uint8_t *p, uint32_t n, char *err, size_t errlen)
{
    uint16_t tl;
    memcpy(&tl, p, 2);
    if (tl == 0 || tl > 64 || (size_t)tl + 2 > n) {
        snprintf(err, errlen, "bad tenant length %u", tl);
        return SBX_INVALID_ARGUMENT;
    }
    char tenant[80];
    memcpy(tenant, p + 2, tl);
    tenant[tl] = 0;
    return ob->cfg.deliver(ob->cfg.deliver_arg, tenant, p + 2 + tl, n - 2u - tl, err, errlen);
}

/* The entry is done with (stored, or refused for good: to dead.log); the queue moves on
 * (caller holds mu). */
static void entry_done(sbx_outbox *ob, int code, const char *err, const uint8_t *p, uint32_t n,
                       uint64_t next)
{
    if (code != SBX_OK) {
        SBX_LOG_ERROR("outbox",
                      "the store refused a record for good; moved to dead.log "
                      "code=%s msg=\"%s\"",
                      sbx_status_name(code), err);
        to_dead(ob, p, n);
        ob->dead++;
    } else {
        ob->delivered++;
    }
    ob->read_off = next;
    ob->pending--;
    write_ack(ob, next, false);
    if (ob->read_off >= ob->write_off && pthread_mutex_trylock(&ob->append_mu) == 0) {
        maybe_compact(ob);
        pthread_mutex_unlock(&ob->append_mu);
    }
}

/* Waits out a backoff of d ms (caller holds mu); appends also signal the cond: only flush and
 * close cut the wait short. */
static void backoff_wait(sbx_outbox *ob, int64_t d)
{
    ob->kick = false;
    uint64_t t0 = sbx_mono_ms();
    for (;;) {
        int64_t el = (int64_t)(sbx_mono_ms() - t0);
        if (ob->stop || ob->kick || el >= d)
            break;
        timed_wait(ob, d - el);
    }
}

/* ---------------------------------------------------------------- ages (under mu) */

static mark *mark_at(sbx_outbox *ob, size_t i)
{
    return &ob->marks[(ob->mhead + i) % ob->mcap];
}

/* Notes that the records from off on were appended now (one mark per MARK_EVERY_MS). A mark
 * that cannot be stored only makes the age coarser. */
static void mark_push(sbx_outbox *ob, uint64_t off, uint64_t now)
{
    if (ob->nmarks && now - mark_at(ob, ob->nmarks - 1)->ms < MARK_EVERY_MS)
        return;
    if (ob->nmarks == ob->mcap) {
        size_t ncap = ob->mcap ? ob->mcap * 2 : 64;
        mark *nm = malloc(ncap * sizeof *nm);
        if (!nm)
            return;
        for (size_t i = 0; i < ob->nmarks; i++)
            nm[i] = *mark_at(ob, i);
        free(ob->marks);
        ob->marks = nm;
        ob->mcap = ncap;
        ob->mhead = 0;
    }
    *mark_at(ob, ob->nmarks++) = (mark){off, now};
}

static int64_t oldest_age(sbx_outbox *ob, uint64_t now)
{
    if (ob->pending == 0) {
        ob->nmarks = ob->mhead = 0;
        return 0;
    }
    while (ob->nmarks > 1 && mark_at(ob, 1)->off <= ob->read_off) {
        ob->mhead = (ob->mhead + 1) % ob->mcap;
        ob->nmarks--;
    }
    return ob->nmarks ? (int64_t)(now - mark_at(ob, 0)->ms) : 0;
}

/* A failed attempt: warn at the first, error while it keeps failing (once a minute). */
static void note_failure(sbx_outbox *ob, int code, const char *err, int64_t retry_in)
{
    uint64_t now = sbx_mono_ms();
    if (!ob->failing_since) {
        ob->failing_since = now;
        SBX_LOG_WARN("outbox",
                     "delivery failed; will retry %s code=%s msg=\"%s\" pending=%llu "
                     "retry_in_ms=%lld",
                     ob->cfg.label, sbx_status_name(code), err, (unsigned long long)ob->pending,
                     (long long)retry_in);
        return;
    }
    if (now - ob->failing_since < REFUSING_MS ||
        (ob->error_at && now - ob->error_at < ERROR_EVERY_MS))
        return;
    ob->error_at = now;
    SBX_LOG_ERROR("outbox",
                  "the store keeps refusing history records %s code=%s msg=\"%s\" "
                  "failing_for_s=%llu pending=%llu oldest_s=%lld",
                  ob->cfg.label, sbx_status_name(code), err,
                  (unsigned long long)((now - ob->failing_since) / 1000),
                  (unsigned long long)ob->pending, (long long)(oldest_age(ob, now) / 1000));
}

static void *sender_main(void *arg)
{
    sbx_outbox *ob = arg;
    sbx_backoff bo = {.initial_ms = ob->cfg.retry_initial_ms,
                      .max_ms = ob->cfg.retry_max_ms,
                      .multiplier = 2.0,
                      .jitter = 0.2,
                      .max_attempts = 1 << 30};
    uint64_t seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)ob;
    int attempt = 0;
    char err[512];
    pthread_mutex_lock(&ob->mu);
    while (!ob->stop) {
        if (ob->read_off >= ob->write_off) {
            pthread_cond_broadcast(&ob->cond); /* flushers */
            pthread_cond_wait(&ob->cond, &ob->mu);
            continue;
        }
        uint64_t off = ob->read_off, next = 0;
        pthread_mutex_unlock(&ob->mu);
        uint8_t *p = NULL;
        uint32_t n = 0;
        int rc = read_entry(ob->logfd, off, &p, &n, &next);
        err[0] = 0;
        int code = rc < 0 ? SBX_INTERNAL : deliver_entry(ob, p, n, err, sizeof err);
        pthread_mutex_lock(&ob->mu);
        if (rc < 0) {
            SBX_LOG_ERRNO(SBX_LOG_ERROR, "outbox", rc,
                          "unreadable entry offset=%llu; skipping "
                          "the rest",
                          (unsigned long long)off);
            ob->read_off = ob->write_off;
            ob->pending = 0;
            continue;
        }
        ob->last_code = code;
        if (code == SBX_OK || permanent(code)) {
            if (attempt > 0)
                SBX_LOG_INFO("outbox", "store reachable again %s attempts=%d failing_for_ms=%llu",
                             ob->cfg.label, attempt,
                             (unsigned long long)(sbx_mono_ms() - ob->failing_since));
            attempt = 0;
            ob->failing_since = 0;
            entry_done(ob, code, err, p, n, next);
        } else {
            ob->retries++;
            attempt++;
            int64_t d = sbx_backoff_delay_ms(&bo, attempt < 30 ? attempt : 30, &seed);
            note_failure(ob, code, err, d);
            backoff_wait(ob, d);
        }
        free(p);
    }
    pthread_mutex_unlock(&ob->mu);
    return NULL;
}

/* ---------------------------------------------------------------- public */

static void apply_defaults(sbx_outbox_cfg *c, const sbx_outbox_cfg *given)
{
    *c = *given;
    if (!c->retry_initial_ms)
        c->retry_initial_ms = 200;
    if (!c->retry_max_ms)
        c->retry_max_ms = 10000;
    if (!c->max_bytes)
        c->max_bytes = 1ull << 30;
    if (!c->compact_bytes)
        c->compact_bytes = 4ull << 20;
}

static int open_files(sbx_outbox *ob)
{
    if ((ob->logfd = open_in(ob->dir, "queue.log", O_RDWR | O_CREAT)) < 0)
        return ob->logfd;
    if ((ob->ackfd = open_in(ob->dir, "queue.ack", O_RDWR | O_CREAT)) < 0)
        return ob->ackfd;
    if ((ob->deadfd = open_in(ob->dir, "dead.log", O_WRONLY | O_CREAT | O_APPEND)) < 0)
        return ob->deadfd;
    return 0;
}

int sbx_outbox_open(const sbx_outbox_cfg *cfg, sbx_outbox **out)
{
    *out = NULL;
    if (!cfg || !cfg->dir || !cfg->deliver)
        return -EINVAL;
    pthread_once(&crc_once, crc_init);
    sbx_outbox *ob = calloc(1, sizeof *ob);
    if (!ob)
        return -ENOMEM;
    apply_defaults(&ob->cfg, cfg);
    ob->logfd = ob->ackfd = ob->deadfd = -1;
    int rc;
    if (!(ob->dir = strdup(cfg->dir))) {
        rc = -ENOMEM;
        goto out_free;
    }
    ob->cfg.dir = ob->dir;
    if (!ob->cfg.label)
        ob->cfg.label = "";
    if ((rc = mkdir_p(ob->dir)) < 0)
        goto out_free;
    if ((rc = open_files(ob)) < 0 || (rc = recover(ob)) < 0)
        goto out_close;
    pthread_mutex_init(&ob->mu, NULL);
    pthread_mutex_init(&ob->append_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ob->cond, &ca);
    pthread_condattr_destroy(&ca);
    if ((rc = -pthread_create(&ob->sender, NULL, sender_main, ob)) < 0) {
        pthread_mutex_destroy(&ob->mu);
        pthread_mutex_destroy(&ob->append_mu);
        pthread_cond_destroy(&ob->cond);
        goto out_close;
    }
    if (ob->pending)
        mark_push(ob, ob->read_off, sbx_mono_ms()); /* their age counts from this start */
    if (ob->pending)
        SBX_LOG_INFO("outbox", "resuming queue pending=%llu dir=%s",
                     (unsigned long long)ob->pending, ob->dir);
    *out = ob;
    return 0;

out_close:
    if (ob->logfd >= 0)
        close(ob->logfd);
    if (ob->ackfd >= 0)
        close(ob->ackfd);
    if (ob->deadfd >= 0)
        close(ob->deadfd);
out_free:
    free(ob->dir);
    free(ob);
    return rc;
}

/* Writes the iovecs at off (all of them, or an error). */
static int pwritev_all(int fd, struct iovec *iov, int n, uint64_t off, size_t total)
{
    for (size_t done = 0; done < total;) {
        ssize_t w = pwritev(fd, iov, n, (off_t)(off + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        done += (size_t)w;
        size_t skip = (size_t)w; /* advance the iovecs past what was written */
        for (int i = 0; i < n && skip; i++) {
            size_t k = iov[i].iov_len < skip ? iov[i].iov_len : skip;
            iov[i].iov_base = (uint8_t *)iov[i].iov_base + k;
            iov[i].iov_len -= k;
            skip -= k;
        }
    }
    return 0;
}

int sbx_outbox_append(sbx_outbox *ob, const char *tenant, const uint8_t *req, size_t len)
{
    size_t tl = tenant ? strlen(tenant) : 0;
    if (tl == 0 || tl > 64 || len + tl + 2 > ENTRY_MAX)
        return -EINVAL;
    uint32_t n = (uint32_t)(2 + tl + len);
    uint8_t h[HDR + 2];
    uint16_t t16 = (uint16_t)tl;
    memcpy(h + HDR, &t16, 2);
    uint32_t crc = crc32_update(0, h + HDR, 2);
    crc = crc32_update(crc, (const uint8_t *)tenant, tl);
    crc = crc32_update(crc, req, len);
    put32(h, MAGIC);
    put32(h + 4, n);
    put32(h + 8, crc);
    struct iovec iov[3] = {{h, HDR + 2}, {(void *)tenant, tl}, {(void *)req, len}};
    pthread_mutex_lock(&ob->append_mu);
    pthread_mutex_lock(&ob->mu);
    uint64_t off = ob->write_off;
    pthread_mutex_unlock(&ob->mu);
    int rc =
        off + HDR + n > ob->cfg.max_bytes ? -ENOSPC : pwritev_all(ob->logfd, iov, 3, off, HDR + n);
    if (rc == 0 && ob->cfg.sync && fdatasync(ob->logfd) < 0)
        rc = -errno;
    if (rc < 0 && rc != -ENOSPC && ftruncate(ob->logfd, (off_t)off) < 0) /* keep it parseable */
        SBX_LOG_ERRNO(SBX_LOG_ERROR, "outbox", errno, "cannot undo a failed append");
    if (rc == 0) {
        pthread_mutex_lock(&ob->mu);
        ob->write_off = off + HDR + n;
        ob->pending++;
        mark_push(ob, off, sbx_mono_ms());
        pthread_cond_broadcast(&ob->cond);
        pthread_mutex_unlock(&ob->mu);
    }
    pthread_mutex_unlock(&ob->append_mu);
    return rc;
}

void sbx_outbox_get_stats(sbx_outbox *ob, sbx_outbox_stats *st)
{
    pthread_mutex_lock(&ob->mu);
    st->pending = ob->pending;
    st->delivered = ob->delivered;
    st->dead = ob->dead;
    st->retries = ob->retries;
    st->last_code = ob->last_code;
    uint64_t now = sbx_mono_ms();
    st->oldest_ms = oldest_age(ob, now);
    st->failing_ms = ob->failing_since ? (int64_t)(now - ob->failing_since) : 0;
    pthread_mutex_unlock(&ob->mu);
}

int sbx_outbox_flush(sbx_outbox *ob, int timeout_ms)
{
    uint64_t t0 = sbx_mono_ms();
    pthread_mutex_lock(&ob->mu);
    ob->kick = true;
    pthread_cond_broadcast(&ob->cond);
    int rc = 0;
    while (ob->pending > 0 && !ob->stop) {
        int64_t el = (int64_t)(sbx_mono_ms() - t0);
        if (el >= timeout_ms) {
            rc = -ETIMEDOUT;
            break;
        }
        timed_wait(ob, timeout_ms - el < 50 ? timeout_ms - el : 50);
        ob->kick = true;
        pthread_cond_broadcast(&ob->cond);
    }
    pthread_mutex_unlock(&ob->mu);
    return rc;
}

void sbx_outbox_close(sbx_outbox *ob)
{
    if (!ob)
        return;
    pthread_mutex_lock(&ob->mu);
    ob->stop = true;
    pthread_cond_broadcast(&ob->cond);
    pthread_mutex_unlock(&ob->mu);
    pthread_join(ob->sender, NULL);
    if (ob->pending)
        SBX_LOG_INFO("outbox",
                     "closing with records still queued pending=%llu (sent after the "
                     "next start)",
                     (unsigned long long)ob->pending);
    write_ack(ob, ob->read_off, true);
    close(ob->logfd);
    close(ob->ackfd);
    close(ob->deadfd);
    pthread_mutex_destroy(&ob->mu);
    pthread_mutex_destroy(&ob->append_mu);
    pthread_cond_destroy(&ob->cond);
    free(ob->marks);
    free(ob->dir);
    free(ob);
}
