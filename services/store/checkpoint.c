/* checkpoint.c: consistent on-disk copies of the database (RocksDB checkpoints: hard links to
 * the immutable SST files plus a copy of the live WAL/manifest, taken after a memtable flush).
 * The target must be a new directory whose parent exists; the copy opens like any data dir.
 * Calls keys.c only.
 */
#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clock.h"
#include "log.h"
#include "storedb_int.h"

#define CHECKPOINT_DIR_MAX 4096

int sdb_checkpoint(sdb *db, sdb_slice dir, uint64_t *sequence, int64_t *took_us, char *err,
                   size_t errlen)
{
    if (sequence)
        *sequence = 0;
    if (took_us)
        *took_us = 0;
    int rc = sdb__check_bytes("dir", dir, CHECKPOINT_DIR_MAX, false, err, errlen);
    if (rc)
        return rc;
    if (dir.p[0] != '/')
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT, "dir: '%.*s' must be an absolute path",
                        (int)dir.n, dir.p);
    char path[CHECKPOINT_DIR_MAX + 1], parent[CHECKPOINT_DIR_MAX + 1];
    memcpy(path, dir.p, dir.n);
    path[dir.n] = '\0';
    while (strlen(path) > 1 && path[strlen(path) - 1] == '/')
        path[strlen(path) - 1] = '\0';
    struct stat st;
    if (lstat(path, &st) == 0)
        return sdb__err(err, errlen, SBX_ALREADY_EXISTS,
                        "dir: %s already exists (a checkpoint needs a new directory)", path);
    memcpy(parent, path, strlen(path) + 1);
    char *pd = dirname(parent);
    if (stat(pd, &st) != 0 || !S_ISDIR(st.st_mode))
        return sdb__err(err, errlen, SBX_FAILED_PRECONDITION,
                        "dir: parent directory %s does not exist", pd);

    uint64_t t0 = sbx_mono_us();
    char *rerr = NULL;
    /* the sequence number taken before the checkpoint is covered by it (it flushes first) */
    uint64_t seqno = rocksdb_get_latest_sequence_number(db->rdb);
    rocksdb_checkpoint_t *cp = rocksdb_checkpoint_object_create(db->rdb, &rerr);
    if (rerr)
        return sdb__rocks_err("checkpoint", rerr, err, errlen);
    /* log_size_for_flush = 0: always flush the memtables first */
    rocksdb_checkpoint_create(cp, path, 0, &rerr);
    rocksdb_checkpoint_object_destroy(cp);
    if (rerr)
        return sdb__rocks_err("checkpoint", rerr, err, errlen);
    int64_t us = (int64_t)(sbx_mono_us() - t0);
    if (sequence)
        *sequence = seqno;
    if (took_us)
        *took_us = us;
    SBX_LOG_INFO("store", "checkpoint created dir=%s seq=%llu us=%lld", path,
                 (unsigned long long)seqno, (long long)us);
    return SBX_OK;
}

const char *sdb_path(const sdb *db)
{
    return db->path;
}
