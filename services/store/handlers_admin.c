/* handlers_admin.c: the Admin RPC of sbx.v1.StateStore: Checkpoint (service principals
 * only) on the engine's sdb_checkpoint.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers_int.h"

#define DIR_MAX 4096

int sh_checkpoint(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    sdb *db = data;
    const Sbx__V1__CheckpointRequest *q = (const void *)req;
    if (!sbx_ctx_is_service(ctx))
        return sbx_ctx_error(ctx, SBX_PERMISSION_DENIED,
                             "Checkpoint: only a service principal may call it");
    int rc = sh_check_len(ctx, "dir", q->dir, DIR_MAX);
    if (rc)
        return rc;
    uint64_t seq = 0;
    int64_t us = 0;
    char err[SH_ERRLEN] = "";
    rc = sdb_checkpoint(db, sh_str(q->dir), &seq, &us, err, sizeof err);
    if (rc)
        return sh_fail(ctx, rc, err);
    Sbx__V1__CheckpointResponse *r =
        (void *)sbx_ctx_new_msg(ctx, &sbx__v1__checkpoint_response__descriptor);
    r->dir = sbx_ctx_strdup(ctx, q->dir);
    r->sequence_number = seq;
    r->took_us = us;
    *resp = &r->base;
    return SBX_OK;
}
