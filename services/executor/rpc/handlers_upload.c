/* handlers_upload.c: UploadFiles. Receives the header and the entries (a file's content may span
 * several `append` entries, joined here), bounding what the stream may hold in memory (content
 * per message, total bytes against disk_bytes, the number of paths), then hands the tree to the
 * file layer's all-or-nothing upload (upload.h), which validates every entry (path, type, mode,
 * symlink target) and names the one it refuses as entries[i]. Without `replace`, existing
 * non-directories at entry paths are refused first (refuse_existing).
 *
 * Threads: the handler's worker thread. Memory: entries point into the received messages,
 * which live until the call ends; joined contents are freed then too. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"
#include "status.h"
#include "upload.h"

#define ERRLEN 512

/* What was received: entries for the layer, and the joined contents of `append` entries. */
typedef struct upload_rx {
    sbx_upload_entry *ents;
    uint8_t **joined; /* per entry: malloc'd content when it was appended to, else NULL */
    size_t n, cap;
    uint64_t total, max_bytes;
} upload_rx;

static void rx_free(void *arg)
{
    upload_rx *rx = arg;
    for (size_t i = 0; i < rx->n; i++)
        free(rx->joined[i]);
    free(rx->joined);
    free(rx->ents);
}

static int rx_reserve(sbx_ctx *ctx, upload_rx *rx)
{
    if (rx->n >= SBX_UPLOAD_ENTRIES_MAX)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "entries: more than %d paths",
                             SBX_UPLOAD_ENTRIES_MAX);
    if (rx->n < rx->cap)
        return SBX_OK;
    size_t nc = rx->cap ? rx->cap * 2 : 256;
    sbx_upload_entry *ne = realloc(rx->ents, nc * sizeof *ne);
    if (ne)
        rx->ents = ne;
    uint8_t **nj = ne ? realloc(rx->joined, nc * sizeof *nj) : NULL;
    if (!nj)
        return sbx_ctx_error(ctx, SBX_RESOURCE_EXHAUSTED, "out of memory");
    rx->joined = nj;
    rx->cap = nc;
    return SBX_OK;
}

/* An `append` entry: more content for the previous FILE entry of the same path. */
static int rx_append(sbx_ctx *ctx, upload_rx *rx, const Sbx__V1__UploadEntry *e)
{
    sbx_upload_entry *last = rx->n ? &rx->ents[rx->n - 1] : NULL;
    if (!last || last->type != SBX_UPLOAD_FILE || strcmp(last->path, e->path) != 0)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                             "entries[%zu].append: the previous entry "
                             "is not a FILE with the same path",
                             rx->n);
    uint8_t **j = &rx->joined[rx->n - 1];
    uint8_t *np = realloc(*j, last->len + e->content.len);
    if (!np)
        return sbx_ctx_error(ctx, SBX_RESOURCE_EXHAUSTED, "out of memory");
    if (!*j && last->len) /* first continuation: copy the message-owned content */
        memcpy(np, last->data, last->len);
    *j = np;
    if (e->content.len)
        memcpy(np + last->len, e->content.data, e->content.len);
    last->len += e->content.len;
    last->data = np;
    return SBX_OK;
}

/* The layer's type of an entry; 0 (refused by the layer) for OTHER. */
static sbx_upload_type entry_type(Sbx__V1__FileType t)
{
    switch (t) {
    case SBX__V1__FILE_TYPE__FILE_TYPE_UNSPECIFIED:
    case SBX__V1__FILE_TYPE__FILE_TYPE_FILE:
        return SBX_UPLOAD_FILE;
    case SBX__V1__FILE_TYPE__FILE_TYPE_DIRECTORY:
        return SBX_UPLOAD_DIR;
    case SBX__V1__FILE_TYPE__FILE_TYPE_SYMLINK:
        return SBX_UPLOAD_SYMLINK;
    default:
        return (sbx_upload_type)0;
    }
}

/* Whether a path has a "." (dots == 1) or ".." (dots == 2) component. */
static bool has_dots(const char *p, size_t dots)
{
    for (const char *s = p; *s;) {
        size_t l = strcspn(s, "/");
        if (l == dots && strncmp(s, "..", dots) == 0)
            return true;
        s += l + (s[l] == '/');
    }
    return false;
}

/* A new entry, as the layer takes it (the layer validates it). */
static int rx_entry(sbx_ctx *ctx, upload_rx *rx, const Sbx__V1__UploadEntry *e)
{
    if (has_dots(e->path, 1)) /* the layer drops "." components; the contract refuses them */
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                             "entries[%zu].path: %.200s has a \".\" "
                             "component",
                             rx->n, e->path);
    int code = rx_reserve(ctx, rx);
    if (code != SBX_OK)
        return code;
    sbx_upload_entry *d = &rx->ents[rx->n];
    rx->joined[rx->n] = NULL;
    *d = (sbx_upload_entry){.path = e->path, .type = entry_type(e->type)};
    if (d->type == SBX_UPLOAD_SYMLINK) {
        d->target = e->symlink_target;
    } else {
        d->mode = e->mode & ~06000u; /* the sandbox never grants setuid/setgid */
        if (d->type == SBX_UPLOAD_FILE) {
            d->data = e->content.data;
            d->len = e->content.len;
        }
    }
    rx->n++;
    return SBX_OK;
}

/* One received message: an entry within the stream's limits. */
static int rx_part(sbx_ctx *ctx, upload_rx *rx, const Sbx__V1__UploadFilesRequest *x)
{
    if (x->part_case != SBX__V1__UPLOAD_FILES_REQUEST__PART_ENTRY)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                             "header: repeated (only the first "
                             "message is a header)");
    const Sbx__V1__UploadEntry *e = x->entry;
    if (e->content.len > EXV_CHUNK_MAX)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                             "entries[%zu].content: %zu bytes exceeds "
                             "the limit of %d per message",
                             rx->n, e->content.len, EXV_CHUNK_MAX);
    rx->total += e->content.len;
    if (rx->max_bytes && rx->total > rx->max_bytes)
        return sbx_ctx_error(ctx, SBX_RESOURCE_EXHAUSTED,
                             "entries: %llu bytes exceed "
                             "limits.disk_bytes (%llu)",
                             (unsigned long long)rx->total, (unsigned long long)rx->max_bytes);
    return e->append ? rx_append(ctx, rx, e) : rx_entry(ctx, rx, e);
}

static int receive_entries(sbx_ctx *ctx, upload_rx *rx)
{
    for (;;) {
        ProtobufCMessage *m; /* kept until the call ends: entries point into it */
        int code = exh_recv_part(ctx, &sbx__v1__upload_files_request__descriptor, &m, true,
                                 "entry: message does not decode");
        if (code != SBX_OK || !m)
            return code;
        if ((code = rx_part(ctx, rx, (const Sbx__V1__UploadFilesRequest *)m)) != SBX_OK)
            return code;
    }
}

/* Without replace, an existing file or symlink at an entry path fails the upload; existing
 * directories are merged into. This looks before the layer's transaction: the layer has no
 * mode that refuses existing non-directories while merging directories (see the report of
 * the architecture issue); until it has, this check stays here. Entries that do not name a
 * path below dest are left to the layer, which refuses them (INVALID_ARGUMENT). */
static int refuse_existing(sbx_ctx *ctx, sbx_files *fs, const char *dest_abs, const upload_rx *rx)
{
    for (size_t i = 0; i < rx->n; i++) {
        const char *ep = rx->ents[i].path;
        if (!ep[0] || ep[0] == '/' || has_dots(ep, 2) || !rx->ents[i].type)
            continue;
        size_t l = strlen(dest_abs) + strlen(rx->ents[i].path) + 2;
        char *p = sbx_ctx_alloc(ctx, l);
        snprintf(p, l, "%s/%s", dest_abs, rx->ents[i].path);
        sbx_file_info fi = {0};
        bool clash = sbx_files_stat(fs, p, &fi, NULL, 0) == 0 &&
                     !(fi.type == SBX_FILE_DIR && rx->ents[i].type == SBX_UPLOAD_DIR);
        sbx_file_info_clear(&fi);
        if (clash)
            return sbx_ctx_error(ctx, SBX_ALREADY_EXISTS,
                                 "entries[%zu].path: %s exists (set "
                                 "replace)",
                                 i, p);
    }
    return SBX_OK;
}

/* The upload itself, all or nothing. */
static int apply(sbx_ctx *ctx, sbx_box *b, const char *dest, const upload_rx *rx,
                 sbx_upload_result *res)
{
    sbx_files *fs = sbx_box_files(b);
    sbx_upload_opts o = {.dest = dest,
                         .mode = SBX_UPLOAD_MERGE,
                         .max_entries = SBX_UPLOAD_ENTRIES_MAX,
                         .max_bytes = rx->max_bytes ? rx->max_bytes : SBX_UPLOAD_BYTES_DEFAULT};
    char err[ERRLEN] = "";
    int rc = sbx_files_upload(fs, &o, rx->ents, rx->n, res, err, sizeof err);
    if (rc == -EFBIG || rc == -E2BIG)
        return sbx_ctx_error(ctx, SBX_RESOURCE_EXHAUSTED, "%s", err);
    if (rc == -ENOSPC || rc == -EDQUOT)
        return exh_disk_full(ctx, b, err);
    if (rc == -EINVAL || rc == -ENAMETOOLONG)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "%s", err);
    if (rc < 0)
        return exh_file_error(ctx, rc, err, SBX_NOT_FOUND, SBX_FAILED_PRECONDITION,
                              SBX_FAILED_PRECONDITION);
    return SBX_OK;
}

static int upload_in_box(sbx_ctx *ctx, sbx_box *b, const Sbx__V1__UploadHeader *h,
                         ProtobufCMessage **resp)
{
    upload_rx *rx = sbx_ctx_alloc(ctx, sizeof *rx);
    memset(rx, 0, sizeof *rx);
    rx->max_bytes = (uint64_t)sbx_box_limits(b)->disk_bytes;
    sbx_ctx_defer(ctx, rx_free, rx);
    int code = receive_entries(ctx, rx);
    const char *dest = h->dest_dir[0] ? h->dest_dir : SBX_FILES_HOME;
    const char *dest_abs = exh_norm_path(ctx, dest);
    sbx_files *fs = sbx_box_files(b);
    if (code == SBX_OK && !h->replace)
        code = refuse_existing(ctx, fs, dest_abs, rx);
    sbx_upload_result res = {0};
    if (code == SBX_OK)
        code = apply(ctx, b, dest, rx, &res);
    if (code != SBX_OK)
        return code;
    Sbx__V1__UploadFilesResponse *out = (Sbx__V1__UploadFilesResponse *)sbx_ctx_new_msg(
        ctx, &sbx__v1__upload_files_response__descriptor);
    out->files_written = (uint32_t)(res.files + res.symlinks);
    out->bytes_written = res.bytes;
    out->dest_dir = sbx_ctx_strdup(ctx, dest_abs);
    *resp = &out->base;
    return SBX_OK;
}

int exh_upload_files(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    (void)req;
    ProtobufCMessage *m;
    int code = exh_recv_header(ctx, &sbx__v1__upload_files_request__descriptor, &m);
    if (code != SBX_OK)
        return code;
    const Sbx__V1__UploadHeader *h = ((const Sbx__V1__UploadFilesRequest *)m)->header;
    char err[ERRLEN] = "";
    if ((code = exv_path("header.dest_dir", h->dest_dir, true, err, sizeof err)) != SBX_OK)
        return sbx_ctx_error(ctx, code, "%s", err);
    sbx_box *b;
    if ((code = exh_box(ctx, data, h->sandbox_id, h->project_id, REG_CREATE, &b)) != SBX_OK)
        return code;
    code = upload_in_box(ctx, b, h, resp);
    sbx_box_release(b);
    return code;
}
