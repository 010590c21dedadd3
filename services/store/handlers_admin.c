/* handlers_admin.c: the Admin RPC of sbx.v1.StateStore: Checkpoint (service principals
 * only) on the engine's sdb_checkpoint. A store without --api-keys trusts every loopback caller
 * as a service principal, so there a checkpoint goes only under its own --data-dir: no local
 * caller can make the store write a copy of its database, as its user, anywhere else.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers_int.h"

#define DIR_MAX 4096

/* Without keys: dir's parent, resolved (symlinks, ..), must be the data dir or under it, and
 * the last component a plain name. The resolved path goes to *out (PATH_MAX bytes). Returns 0
 * or the status (already replied). */
static int confine(sbx_ctx *ctx, sdb *db, const char *dir, char *out)
{
    char data[PATH_MAX], path[DIR_MAX + 1], parent[PATH_MAX];
    if (!realpath(sdb_path(db), data))
        return sbx_ctx_error(ctx, SBX_INTERNAL, "dir: cannot resolve the data dir");
    snprintf(path, sizeof path, "%s", dir);
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        path[--n] = '\0';
    char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : "";
    if (slash)
        *slash = '\0';
    bool named = name[0] && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
    bool inside = false;
    if (named && realpath(path[0] ? path : "/", parent)) {
        size_t dl = strlen(data);
        inside = strncmp(parent, data, dl) == 0 && (parent[dl] == '\0' || parent[dl] == '/');
    }
    if (!inside)
        return sbx_ctx_error(ctx, SBX_PERMISSION_DENIED,
                             "dir: %s is not under the store's --data-dir %s; without --api-keys "
                             "a checkpoint goes only there (run with keys and a @service key to "
                             "choose any directory)",
                             dir, data);
    if ((size_t)snprintf(out, PATH_MAX, "%s/%s", parent, name) >= PATH_MAX)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "dir: longer than %d bytes resolved",
                             PATH_MAX - 1);
    return SBX_OK;
}

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
    sdb_slice dir = sh_str(q->dir);
    char resolved[PATH_MAX];
    /* relative and empty dirs are sdb_checkpoint's INVALID_ARGUMENT */
    if (sbx_ctx_keyless(ctx) && q->dir[0] == '/') {
        if ((rc = confine(ctx, db, q->dir, resolved)) != SBX_OK)
            return rc;
        dir = sdb_slice_n(resolved, strlen(resolved));
    }
    uint64_t seq = 0;
    int64_t us = 0;
    char err[SH_ERRLEN] = "";
    rc = sdb_checkpoint(db, dir, &seq, &us, err, sizeof err);
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
