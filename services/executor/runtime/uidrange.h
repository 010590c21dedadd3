/* uidrange.h: a host-wide reservation of host uids for one executor. Every sandbox maps its
 * 65536 ids onto a block of host uids; two executors on one machine must never hand out the
 * same block, or their sandboxes would share uids (signals, files, /proc). The host's uid
 * space above FIRST is cut into fixed slots of SBX_UID_SLOT_IDS ids; an executor takes as many
 * consecutive slots as it needs by holding an flock on one lock file per slot under a host-wide
 * run directory (default /run/sbx/uid-slots). The kernel drops the locks when the process
 * dies, so a kill -9 frees its slots. The slot a data directory used last is tried first (its
 * homes are owned by that range's uids) and recorded in DATA_DIR/uid-slot.
 *
 * Threads: main's, at start-up and shutdown. Memory: the lock fds are the range's (release). */
#ifndef SBX_UIDRANGE_H
#define SBX_UIDRANGE_H

#include <stddef.h>
#include <stdint.h>

#define SBX_UID_RANGE_FIRST 200000u /* slot 0 starts here (below: the host's own users) */
#define SBX_UID_SLOT_IDS (1u << 27) /* 134217728 ids = 2048 sandbox blocks a slot */
#define SBX_UID_SLOTS 31u           /* slots that fit below 2^32 - 65536 */

typedef struct {
    uint32_t first; /* first host uid of the range */
    uint64_t count; /* ids reserved (a multiple of SBX_UID_SLOT_IDS) */
    unsigned slot;  /* first slot taken */
    unsigned nslots;
    int fds[SBX_UID_SLOTS]; /* held lock files; -1 beyond nslots */
} sbx_uid_range;

/* Reserves `need` ids (rounded up to whole slots) under run_dir, preferring the slot recorded
 * in data_dir/uid-slot. Returns 0; -EBUSY when every fitting run of slots is held by other
 * processes (err names the run dir and the holders' pids where readable), -EINVAL when need
 * exceeds the host's uid space, or -errno when run_dir cannot be created or locked. */
int sbx_uid_range_reserve(const char *run_dir, const char *data_dir, uint64_t need,
                          sbx_uid_range *out, char *err, size_t errlen);
/* Drops the locks (idempotent; a zeroed range holds none). */
void sbx_uid_range_release(sbx_uid_range *r);

#endif
