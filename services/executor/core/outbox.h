/* outbox.h: the executor's durable outbox of finished commands. Each record (a packed
 * RecordExecutionRequest plus the tenant it belongs to) is appended to a file-backed queue under
 * the data dir and fdatasync'ed before sbx_outbox_append returns, so a result the executor has
 * answered is never lost to a crash. A sender thread delivers the queue in order through a
 * delivery callback (the store's RecordExecution); a failure it may recover from (UNAVAILABLE,
 * DEADLINE_EXCEEDED, ...) is retried with jittered exponential backoff while new records keep
 * queueing, so the store being down never blocks a command. The first failure is logged at
 * warn; a store that keeps failing for REFUSING_MS is logged at error at most once a minute,
 * with the backlog and the age of its oldest record. A record the store refuses for
 * good (INVALID_ARGUMENT) is moved to dead.log with a log line. After a restart the queue resumes
 * where the last acknowledgement left it; records carry a record_id, so delivering one twice is a
 * no-op at the store.
 *
 * Files: <dir>/queue.log (entries: "SBXO", u32 length, u32 crc32, u16 tenant length, tenant,
 * request), <dir>/queue.ack (u64 offset of the first undelivered entry), <dir>/dead.log. When
 * everything is delivered and the log is larger than compact_bytes it is truncated to zero.
 * All functions are thread-safe. */
#ifndef SBX_EXEC_OUTBOX_H
#define SBX_EXEC_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sbx_outbox sbx_outbox;

/* Delivers one record; returns a gRPC status code (SBX_OK = stored or duplicate). */
typedef int (*sbx_outbox_deliver_fn)(void *arg, const char *tenant, const uint8_t *req, size_t len,
                                     char *err, size_t errlen);

typedef struct sbx_outbox_cfg {
    const char *dir;   /* created (0700) if missing */
    const char *label; /* names the destination in log lines ("store=HOST:PORT"); NULL = ""; kept */
    bool sync;         /* fdatasync each append (default true in the executor) */
    sbx_outbox_deliver_fn deliver;
    void *deliver_arg;
    int64_t retry_initial_ms; /* 0 = 200 */
    int64_t retry_max_ms;     /* 0 = 10000 */
    uint64_t max_bytes;       /* queue.log cap; appends beyond it fail with -ENOSPC; 0 = 1 GiB */
    uint64_t compact_bytes;   /* truncate a fully delivered log larger than this; 0 = 4 MiB */
} sbx_outbox_cfg;

typedef struct sbx_outbox_stats {
    uint64_t pending;   /* records queued, not yet delivered */
    uint64_t delivered; /* delivered since open */
    uint64_t dead;      /* refused for good since open */
    uint64_t retries;   /* failed attempts since open */
    int last_code;      /* status of the last attempt */
    int64_t oldest_ms;  /* age of the oldest pending record (1 s resolution); 0 = none */
    int64_t failing_ms; /* how long deliveries have been failing; 0 = the last one worked */
} sbx_outbox_stats;

/* Opens (recovering a torn tail) and starts the sender. Returns 0 or -errno. */
int sbx_outbox_open(const sbx_outbox_cfg *cfg, sbx_outbox **out);
/* Appends one record durably. tenant: 1..64 bytes. Returns 0, -ENOSPC (queue full), -EINVAL,
 * or -errno of the write/fsync. */
int sbx_outbox_append(sbx_outbox *ob, const char *tenant, const uint8_t *req, size_t len);
void sbx_outbox_get_stats(sbx_outbox *ob, sbx_outbox_stats *st);
/* Waits up to timeout_ms until nothing is pending; 0 or -ETIMEDOUT. Wakes a sender that is
 * backing off so it tries again now. */
int sbx_outbox_flush(sbx_outbox *ob, int timeout_ms);
/* Stops the sender (an attempt in flight finishes first) and closes the files; what is still
 * pending stays queued for the next open. NULL is harmless. */
void sbx_outbox_close(sbx_outbox *ob);

#endif
