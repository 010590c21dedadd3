/* handlers_files.c: the file RPCs (ReadFile, WriteFile, ListDir, Stat, MakeDir, Remove, Move,
 * UploadFiles) on top of the sandbox file layer (files.h, upload.h), which resolves every path
 * inside the sandbox root with openat2(RESOLVE_IN_ROOT) and acts as the sandbox user. Here: the
 * request limits of the proto, streaming, and the status codes each RPC documents. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exec_cmdkey.h"
#include "handlers.h"
#include "upload.h"
#include "status.h"

#define ERRLEN 512

/* Received client-stream messages are ours to free (sbx_stream_recv does not free them with
 * the call yet): the ones handlers keep pointers into are freed when the call ends. */
static void free_msg(void *m)
{
    protobuf_c_message_free_unpacked(m, NULL);
}

static void keep_until_end(sbx_ctx *ctx, ProtobufCMessage *m)
{
    if (m)
        sbx_ctx_defer(ctx, free_msg, m);
}

/* Status of a failed sbx_stream_recv: the client left, the layer already named a string field
 * holding a NUL byte (-EINVAL: its message stands), or the bytes do not decode (undecodable). */
static int recv_failed(sbx_ctx *ctx, int rc, const char *undecodable)
{
    if (rc == -ECANCELED)
        return SBX_CANCELLED;
    if (rc == -EINVAL)
        return SBX_INVALID_ARGUMENT;
    return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "%s", undecodable);
}

/* ---------------------------------------------------------------- helpers */

static char *norm_path(sbx_ctx *ctx, const char *path)
{
    char *n = exk_normalize_cwd(path);
    char *out = sbx_ctx_strdup(ctx, n ? n : "/");
    free(n);
    return out;
}

static Sbx__V1__FileType ftype(sbx_file_type t)
{
    switch (t) {
    case SBX_FILE_REGULAR:
        return SBX__V1__FILE_TYPE__FILE_TYPE_FILE;
    case SBX_FILE_DIR:
        return SBX__V1__FILE_TYPE__FILE_TYPE_DIRECTORY;
    case SBX_FILE_SYMLINK:
        return SBX__V1__FILE_TYPE__FILE_TYPE_SYMLINK;
    default:
        return SBX__V1__FILE_TYPE__FILE_TYPE_OTHER;
    }
}

static Sbx__V1__FileInfo *info_msg(sbx_ctx *ctx, const char *abs_path, const sbx_file_info *fi)
{
    Sbx__V1__FileInfo *m = (Sbx__V1__FileInfo *)sbx_ctx_new_msg(ctx, &sbx__v1__file_info__descriptor);
    m->path = sbx_ctx_strdup(ctx, abs_path);
    const char *slash = strrchr(abs_path, '/');
    m->name = sbx_ctx_strdup(ctx, strcmp(abs_path, "/") == 0 ? "/" : slash ? slash + 1 : abs_path);
    m->type = ftype(fi->type);
    m->size_bytes = fi->size;
    m->mode = fi->mode & 07777;
    m->mtime_unix_ms = fi->mtime_ms;
    m->symlink_target = sbx_ctx_strdup(ctx, fi->symlink_target ? fi->symlink_target : "");
    m->uid = fi->uid;
    m->gid = fi->gid;
    return m;
}

/* A file-layer error, with per-RPC overrides of the errno mapping. */
static int ferr(sbx_ctx *ctx, int rc, const char *msg, int enoent, int enotdir, int eisdir)
{
    int e = rc < 0 ? -rc : rc;
    int code;
    if (e == ENOENT && enoent)
        code = enoent;
    else if (e == ENOTDIR && enotdir)
        code = enotdir;
    else if (e == EISDIR && eisdir)
        code = eisdir;
    else if (e == EFBIG || e == ENOSPC || e == EDQUOT)
        code = SBX_RESOURCE_EXHAUSTED;
    else
        return exh_files_error(ctx, rc, msg);
    return sbx_ctx_error(ctx, code, "%s", msg && msg[0] ? msg : strerror(e));
}

/* ---------------------------------------------------------------- ReadFile */

int exh_read_file(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    (void)resp;
    const Sbx__V1__ReadFileRequest *r = (const Sbx__V1__ReadFileRequest *)req;
    char err[ERRLEN] = "";
    int code = exv_path("path", r->path, false, err, sizeof err);
    if (code != SBX_OK)
        return sbx_ctx_error(ctx, code, "%s", err);
    sbx_box *b;
    if ((code = exh_box(ctx, data, r->sandbox_id, r->project_id, REG_CREATE, &b)) != SBX_OK)
        return code;
    int fd = -1;
    sbx_file_info fi = {0};
    int rc = sbx_files_open_read(sbx_box_files(b), r->path, &fd, &fi, err, sizeof err);
    sbx_box_release(b);
    if (rc < 0) {
        int e = -rc;
        if (e == EISDIR || e == EINVAL)
            return sbx_ctx_error(ctx, SBX_FAILED_PRECONDITION, "path: %s is not a regular file",
                                 r->path);
        return ferr(ctx, rc, err, SBX_NOT_FOUND, SBX_NOT_FOUND, 0);
    }
    size_t chunk = r->chunk_bytes == 0 ? EXV_READ_CHUNK_DEFAULT
                   : r->chunk_bytes > EXV_CHUNK_MAX ? EXV_CHUNK_MAX
                                                    : r->chunk_bytes;
    uint8_t *buf = sbx_ctx_alloc(ctx, chunk);
    uint64_t off = r->offset, left = r->length ? r->length : UINT64_MAX;
    const char *abs = norm_path(ctx, r->path);
    bool first = true;
    code = SBX_OK;
    for (;;) {
        size_t want = left < chunk ? (size_t)left : chunk;
        ssize_t n = want ? pread(fd, buf, want, (off_t)off) : 0;
        if (n < 0) {
            code = sbx_ctx_error(ctx, SBX_INTERNAL, "read: %s", strerror(errno));
            break;
        }
        if (n == 0 && !first)
            break;
        Sbx__V1__FileChunk c = SBX__V1__FILE_CHUNK__INIT;
        c.data.data = buf;
        c.data.len = (size_t)n;
        c.offset = off;
        if (first)
            c.info = info_msg(ctx, abs, &fi);
        first = false;
        if (sbx_stream_send(ctx, &c.base) < 0) {
            code = SBX_CANCELLED;
            break;
        }
        off += (uint64_t)n;
        left -= (uint64_t)n;
        if (n == 0 || left == 0)
            break;
    }
    close(fd);
    sbx_file_info_clear(&fi);
    return code;
}

/* ---------------------------------------------------------------- WriteFile */

int exh_write_file(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    (void)req;
    ProtobufCMessage *m = NULL;
    int rc = sbx_stream_recv(ctx, &sbx__v1__write_file_request__descriptor, &m);
    if (rc > 0)
        keep_until_end(ctx, m);
    if (rc < 0)
        return recv_failed(ctx, rc, "request does not decode");
    Sbx__V1__WriteFileRequest *w = (Sbx__V1__WriteFileRequest *)m;
    if (rc == 0 || w->part_case != SBX__V1__WRITE_FILE_REQUEST__PART_HEADER)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "header: the first message must be a header");
    const Sbx__V1__WriteFileHeader *h = w->header;
    char err[ERRLEN] = "";
    int code = exv_path("header.path", h->path, false, err, sizeof err);
    if (code != SBX_OK)
        return sbx_ctx_error(ctx, code, "%s", err);
    if (h->mode > 07777)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "header.mode: %o is outside 0..07777",
                             h->mode);
    sbx_box *b;
    if ((code = exh_box(ctx, data, h->sandbox_id, h->project_id, REG_CREATE, &b)) != SBX_OK)
        return code;
    sbx_files *fs = sbx_box_files(b);
    const char *abs = norm_path(ctx, h->path);
    sbx_file_info fi = {0};
    if (h->exclusive && sbx_files_stat(fs, h->path, &fi, NULL, 0) == 0) {
        sbx_file_info_clear(&fi);
        sbx_box_release(b);
        return sbx_ctx_error(ctx, SBX_ALREADY_EXISTS, "header.path: %s exists (exclusive)", abs);
    }
    sbx_files_write_opts o = {.mode = h->mode ? (h->mode & 01777) : 0644,
                              .append = h->append,
                              .no_parents = h->no_create_parents,
                              .max_size = (uint64_t)sbx_box_limits(b)->disk_bytes};
    sbx_files_writer *wr = NULL;
    rc = sbx_files_write_begin(fs, h->path, &o, &wr, err, sizeof err);
    if (rc < 0) {
        sbx_box_release(b);
        if (rc == -EISDIR)
            return sbx_ctx_error(ctx, SBX_FAILED_PRECONDITION, "header.path: %s is a directory", abs);
        if (rc == -ENOENT && h->no_create_parents)
            return sbx_ctx_error(ctx, SBX_FAILED_PRECONDITION, "header.path: the parent of %s is "
                                 "missing (no_create_parents)", abs);
        return ferr(ctx, rc, err, SBX_FAILED_PRECONDITION, SBX_FAILED_PRECONDITION,
                    SBX_FAILED_PRECONDITION);
    }
    /* m (the header) stays alive until the call ends: h points into it */
    uint64_t written = 0;
    code = SBX_OK;
    for (;;) {
        ProtobufCMessage *dm = NULL;
        rc = sbx_stream_recv(ctx, &sbx__v1__write_file_request__descriptor, &dm);
        if (rc == 0)
            break;
        if (rc < 0) {
            code = recv_failed(ctx, rc, "data: message does not decode");
            break;
        }
        Sbx__V1__WriteFileRequest *d = (Sbx__V1__WriteFileRequest *)dm;
        if (d->part_case != SBX__V1__WRITE_FILE_REQUEST__PART_DATA) {
            code = sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "header: repeated (only the first "
                                 "message is a header)");
            sbx_stream_free(ctx, dm);
            break;
        }
        if (d->data.len > EXV_CHUNK_MAX) {
            code = sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "data: chunk of %zu bytes exceeds the "
                                 "limit of %d", d->data.len, EXV_CHUNK_MAX);
            sbx_stream_free(ctx, dm);
            break;
        }
        if (d->data.len) {
            rc = sbx_files_write_chunk(wr, d->data.data, d->data.len, err, sizeof err);
            if (rc < 0) {
                code = rc == -EFBIG ? sbx_ctx_error(ctx, SBX_RESOURCE_EXHAUSTED, "data: the file "
                                                    "exceeds limits.disk_bytes (%lld bytes)",
                                                    (long long)sbx_box_limits(b)->disk_bytes)
                                    : ferr(ctx, rc, err, 0, 0, 0);
                sbx_stream_free(ctx, dm);
                break;
            }
            written += d->data.len;
        }
        sbx_stream_free(ctx, dm);
    }
    if (code != SBX_OK) {
        sbx_files_write_abort(wr);
        sbx_box_release(b);
        return code;
    }
    rc = sbx_files_write_commit(wr, NULL, err, sizeof err);
    if (rc < 0) {
        sbx_box_release(b);
        return ferr(ctx, rc, err, SBX_FAILED_PRECONDITION, SBX_FAILED_PRECONDITION,
                    SBX_FAILED_PRECONDITION);
    }
    Sbx__V1__WriteFileResponse *out = (Sbx__V1__WriteFileResponse *)sbx_ctx_new_msg(
        ctx, &sbx__v1__write_file_response__descriptor);
    out->bytes_written = written;
    /* report the file itself (a final symlink was followed by the write) */
    int sfd;
    if (sbx_files_open_read(fs, h->path, &sfd, &fi, NULL, 0) == 0) {
        close(sfd);
        out->info = info_msg(ctx, abs, &fi);
        sbx_file_info_clear(&fi);
    } else if (sbx_files_stat(fs, h->path, &fi, NULL, 0) == 0) {
        out->info = info_msg(ctx, abs, &fi);
        sbx_file_info_clear(&fi);
    }
    sbx_box_release(b);
    *resp = &out->base;
    return SBX_OK;
}

/* ---------------------------------------------------------------- ListDir / Stat */

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const sbx_files_entry *)a)->path, ((const sbx_files_entry *)b)->path);
}

int exh_list_dir(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    const Sbx__V1__ListDirRequest *r = (const Sbx__V1__ListDirRequest *)req;
    char err[ERRLEN] = "";
    int code = exv_path("path", r->path, true, err, sizeof err);
    if (code != SBX_OK)
        return sbx_ctx_error(ctx, code, "%s", err);
    if (r->depth < 0 || r->depth > SBX_FILES_LIST_DEPTH_MAX)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "depth: %d is outside 0..%d", r->depth,
                             SBX_FILES_LIST_DEPTH_MAX);
    if (r->max_entries < 0)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "max_entries: %d is negative",
                             r->max_entries);
    size_t maxe = r->max_entries == 0 ? SBX_FILES_LIST_ENTRIES_DEFAULT
                  : r->max_entries > SBX_FILES_LIST_ENTRIES_MAX ? SBX_FILES_LIST_ENTRIES_MAX
                                                                : (size_t)r->max_entries;
    sbx_box *b;
    if ((code = exh_box(ctx, data, r->sandbox_id, r->project_id, REG_CREATE, &b)) != SBX_OK)
        return code;
    const char *path = r->path[0] ? r->path : SBX_FILES_HOME;
    sbx_files_entry *ents = NULL;
    size_t n = 0;
    bool trunc = false;
    int rc = sbx_files_list(sbx_box_files(b), path, (uint32_t)r->depth, maxe, &ents, &n, &trunc,
                            err, sizeof err);
    sbx_box_release(b);
    if (rc < 0)
        return ferr(ctx, rc, err, SBX_NOT_FOUND, SBX_FAILED_PRECONDITION, 0);
    qsort(ents, n, sizeof *ents, cmp_entry);
    Sbx__V1__ListDirResponse *out = (Sbx__V1__ListDirResponse *)sbx_ctx_new_msg(
        ctx, &sbx__v1__list_dir_response__descriptor);
    const char *base = norm_path(ctx, path);
    out->entries = n ? sbx_ctx_alloc(ctx, n * sizeof(Sbx__V1__FileInfo *)) : NULL;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(base) + strlen(ents[i].path) + 2;
        char *p = sbx_ctx_alloc(ctx, l);
        snprintf(p, l, "%s/%s", strcmp(base, "/") == 0 ? "" : base, ents[i].path);
        out->entries[out->n_entries++] = info_msg(ctx, p, &ents[i].info);
    }
    out->truncated = trunc;
    sbx_files_list_free(ents, n);
    *resp = &out->base;
    return SBX_OK;
}

int exh_stat(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    const Sbx__V1__StatRequest *r = (const Sbx__V1__StatRequest *)req;
    char err[ERRLEN] = "";
    int code = exv_path("path", r->path, false, err, sizeof err);
    if (code != SBX_OK)
        return sbx_ctx_error(ctx, code, "%s", err);
    sbx_box *b;
    if ((code = exh_box(ctx, data, r->sandbox_id, r->project_id, REG_CREATE, &b)) != SBX_OK)
        return code;
    sbx_file_info fi = {0};
    int rc = sbx_files_stat(sbx_box_files(b), r->path, &fi, err, sizeof err);
    sbx_box_release(b);
    if (rc < 0)
        return ferr(ctx, rc, err, SBX_NOT_FOUND, SBX_NOT_FOUND, 0);
    *resp = &info_msg(ctx, norm_path(ctx, r->path), &fi)->base;
    sbx_file_info_clear(&fi);
    return SBX_OK;
}

/* ---------------------------------------------------------------- MakeDir / Remove / Move */

int exh_make_dir(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    const Sbx__V1__MakeDirRequest *r = (const Sbx__V1__MakeDirRequest *)req;
    char err[ERRLEN] = "";
    int code = exv_path("path", r->path, false, err, sizeof err);
    if (code != SBX_OK)
        return sbx_ctx_error(ctx, code, "%s", err);
    if (r->mode > 07777)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "mode: %o is outside 0..07777", r->mode);
    sbx_box *b;
    if ((code = exh_box(ctx, data, r->sandbox_id, r->project_id, REG_CREATE, &b)) != SBX_OK)
        return code;
    bool created = false;
    int rc = sbx_files_mkdir(sbx_box_files(b), r->path, r->mode & 01777, r->parents, &created, err,
                             sizeof err);
    sbx_box_release(b);
    if (rc < 0)
        return ferr(ctx, rc, err, SBX_NOT_FOUND, SBX_ALREADY_EXISTS, 0);
    if (!created && !r->parents)
        return sbx_ctx_error(ctx, SBX_ALREADY_EXISTS, "path: %s exists (set parents to accept an "
                             "existing directory)", norm_path(ctx, r->path));
    Sbx__V1__MakeDirResponse *out = (Sbx__V1__MakeDirResponse *)sbx_ctx_new_msg(
        ctx, &sbx__v1__make_dir_response__descriptor);
    out->created = created;
    *resp = &out->base;
    return SBX_OK;
}

int exh_remove(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    const Sbx__V1__RemoveRequest *r = (const Sbx__V1__RemoveRequest *)req;
    char err[ERRLEN] = "";
    int code = exv_path("path", r->path, false, err, sizeof err);
    if (code != SBX_OK)
        return sbx_ctx_error(ctx, code, "%s", err);
    if (strcmp(norm_path(ctx, r->path), "/") == 0)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "path: %s resolves to \"/\"", r->path);
    sbx_box *b;
    if ((code = exh_box(ctx, data, r->sandbox_id, r->project_id, REG_CREATE, &b)) != SBX_OK)
        return code;
    bool existed = false;
    int rc = sbx_files_remove(sbx_box_files(b), r->path, r->recursive, &existed, err, sizeof err);
    sbx_box_release(b);
    if (rc == -ENOTEMPTY)
        return sbx_ctx_error(ctx, SBX_FAILED_PRECONDITION, "path: %s is a non-empty directory "
                             "(set recursive)", norm_path(ctx, r->path));
    if (rc < 0)
        return ferr(ctx, rc, err, SBX_NOT_FOUND, SBX_FAILED_PRECONDITION, 0);
    Sbx__V1__RemoveResponse *out =
        (Sbx__V1__RemoveResponse *)sbx_ctx_new_msg(ctx, &sbx__v1__remove_response__descriptor);
    out->existed = existed;
    *resp = &out->base;
    return SBX_OK;
}

int exh_move(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    const Sbx__V1__MoveRequest *r = (const Sbx__V1__MoveRequest *)req;
    char err[ERRLEN] = "";
    int code;
    if ((code = exv_path("src", r->src, false, err, sizeof err)) != SBX_OK ||
        (code = exv_path("dst", r->dst, false, err, sizeof err)) != SBX_OK)
        return sbx_ctx_error(ctx, code, "%s", err);
    sbx_box *b;
    if ((code = exh_box(ctx, data, r->sandbox_id, r->project_id, REG_CREATE, &b)) != SBX_OK)
        return code;
    int rc = sbx_files_move(sbx_box_files(b), r->src, r->dst, r->overwrite, err, sizeof err);
    sbx_box_release(b);
    if (rc == -EEXIST)
        return sbx_ctx_error(ctx, SBX_ALREADY_EXISTS, "dst: %s exists (set overwrite)",
                             norm_path(ctx, r->dst));
    if (rc == -ENOTEMPTY || rc == -EISDIR || rc == -ENOTDIR)
        return sbx_ctx_error(ctx, SBX_FAILED_PRECONDITION, "%s", err[0] ? err : strerror(-rc));
    if (rc < 0)
        return ferr(ctx, rc, err, SBX_NOT_FOUND, 0, 0);
    *resp = sbx_ctx_new_msg(ctx, &sbx__v1__move_response__descriptor);
    return SBX_OK;
}

/* ---------------------------------------------------------------- UploadFiles */

typedef struct upbuf {
    uint8_t *p;
    size_t len;
} upbuf;

static void free_upbufs(void *arg)
{
    upbuf *v = arg;
    for (size_t i = 0; v && v[i].p != (uint8_t *)-1; i++)
        free(v[i].p);
    free(v);
}

static int entry_path_ok(const char *p, char *err, size_t errlen, size_t idx)
{
    size_t n = strlen(p);
    if (n == 0 || n > SBX_FILES_PATH_MAX) {
        snprintf(err, errlen, "entry[%zu].path: must be 1..%d bytes", idx, SBX_FILES_PATH_MAX);
        return SBX_INVALID_ARGUMENT;
    }
    if (p[0] == '/') {
        snprintf(err, errlen, "entry[%zu].path: %.200s is absolute (must be relative to dest_dir)",
                 idx, p);
        return SBX_INVALID_ARGUMENT;
    }
    const char *s = p;
    while (*s) {
        const char *e = strchr(s, '/');
        size_t l = e ? (size_t)(e - s) : strlen(s);
        if ((l == 1 && s[0] == '.') || (l == 2 && s[0] == '.' && s[1] == '.')) {
            snprintf(err, errlen, "entry[%zu].path: %.200s has a \".\" or \"..\" component", idx, p);
            return SBX_INVALID_ARGUMENT;
        }
        s += l;
        if (*s == '/')
            s++;
    }
    return SBX_OK;
}

int exh_upload_files(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                     void *data)
{
    (void)req;
    ProtobufCMessage *m = NULL;
    int rc = sbx_stream_recv(ctx, &sbx__v1__upload_files_request__descriptor, &m);
    if (rc > 0)
        keep_until_end(ctx, m);
    if (rc < 0)
        return recv_failed(ctx, rc, "request does not decode");
    Sbx__V1__UploadFilesRequest *u = (Sbx__V1__UploadFilesRequest *)m;
    if (rc == 0 || u->part_case != SBX__V1__UPLOAD_FILES_REQUEST__PART_HEADER)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "header: the first message must be a header");
    const Sbx__V1__UploadHeader *h = u->header;
    char err[ERRLEN] = "";
    int code = exv_path("header.dest_dir", h->dest_dir, true, err, sizeof err);
    if (code != SBX_OK)
        return sbx_ctx_error(ctx, code, "%s", err);
    sbx_box *b;
    if ((code = exh_box(ctx, data, h->sandbox_id, h->project_id, REG_CREATE, &b)) != SBX_OK)
        return code;
    uint64_t max_bytes = (uint64_t)sbx_box_limits(b)->disk_bytes;
    size_t cap = 256, n = 0;
    sbx_upload_entry *ents = calloc(cap, sizeof *ents);
    upbuf *bufs = calloc(cap + 1, sizeof *bufs);
    uint64_t total = 0;
    code = SBX_OK;
    while (ents && bufs) {
        ProtobufCMessage *em = NULL;
        rc = sbx_stream_recv(ctx, &sbx__v1__upload_files_request__descriptor, &em);
        if (rc > 0)
            keep_until_end(ctx, em); /* entries point into it */
        if (rc == 0)
            break;
        if (rc < 0) {
            code = recv_failed(ctx, rc, "entry: message does not decode");
            break;
        }
        Sbx__V1__UploadFilesRequest *x = (Sbx__V1__UploadFilesRequest *)em;
        if (x->part_case != SBX__V1__UPLOAD_FILES_REQUEST__PART_ENTRY) {
            code = sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "header: repeated (only the first "
                                 "message is a header)");
            break;
        }
        const Sbx__V1__UploadEntry *e = x->entry;
        if (e->content.len > EXV_CHUNK_MAX) {
            code = sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "entry[%zu].content: %zu bytes exceeds "
                                 "the limit of %d per message", n, e->content.len, EXV_CHUNK_MAX);
            break;
        }
        total += e->content.len;
        if (max_bytes && total > max_bytes) {
            code = sbx_ctx_error(ctx, SBX_RESOURCE_EXHAUSTED, "entries: %llu bytes exceed "
                                 "limits.disk_bytes (%llu)", (unsigned long long)total,
                                 (unsigned long long)max_bytes);
            break;
        }
        if (e->append) {
            if (n == 0 || ents[n - 1].type != SBX_UPLOAD_FILE || strcmp(ents[n - 1].path, e->path)) {
                code = sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "entry[%zu].append: the previous "
                                     "entry is not a FILE with the same path", n);
                break;
            }
            upbuf *ub = &bufs[n - 1];
            if (!ub->p) { /* first continuation: copy the message-owned content */
                ub->p = malloc(ents[n - 1].len + e->content.len);
                if (ub->p && ents[n - 1].len)
                    memcpy(ub->p, ents[n - 1].data, ents[n - 1].len);
            } else {
                uint8_t *np = realloc(ub->p, ents[n - 1].len + e->content.len);
                if (!np)
                    free(ub->p);
                ub->p = np;
            }
            if (!ub->p) {
                code = sbx_ctx_error(ctx, SBX_RESOURCE_EXHAUSTED, "out of memory");
                break;
            }
            if (e->content.len)
                memcpy(ub->p + ents[n - 1].len, e->content.data, e->content.len);
            ents[n - 1].len += e->content.len;
            ents[n - 1].data = ub->p;
            continue;
        }
        if ((code = entry_path_ok(e->path, err, sizeof err, n)) != SBX_OK) {
            code = sbx_ctx_error(ctx, code, "%s", err);
            break;
        }
        if (e->mode > 07777) {
            code = sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "entry[%zu].mode: %o is outside "
                                 "0..07777", n, e->mode);
            break;
        }
        if (n >= SBX_UPLOAD_ENTRIES_MAX) {
            code = sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "entries: more than %d paths",
                                 SBX_UPLOAD_ENTRIES_MAX);
            break;
        }
        if (n == cap) {
            size_t nc = cap * 2;
            sbx_upload_entry *ne = realloc(ents, nc * sizeof *ne);
            if (ne)
                ents = ne;
            upbuf *nb = ne ? realloc(bufs, (nc + 1) * sizeof *nb) : NULL;
            if (!ne || !nb) {
                code = sbx_ctx_error(ctx, SBX_RESOURCE_EXHAUSTED, "out of memory");
                break;
            }
            memset(nb + cap, 0, (nc + 1 - cap) * sizeof *nb);
            bufs = nb;
            cap = nc;
        }
        sbx_upload_entry *d = &ents[n];
        memset(d, 0, sizeof *d);
        d->path = e->path;
        switch (e->type) {
        case SBX__V1__FILE_TYPE__FILE_TYPE_UNSPECIFIED:
        case SBX__V1__FILE_TYPE__FILE_TYPE_FILE:
            d->type = SBX_UPLOAD_FILE;
            d->data = e->content.data;
            d->len = e->content.len;
            d->mode = e->mode & 01777;
            break;
        case SBX__V1__FILE_TYPE__FILE_TYPE_DIRECTORY:
            d->type = SBX_UPLOAD_DIR;
            d->mode = e->mode & 01777;
            break;
        case SBX__V1__FILE_TYPE__FILE_TYPE_SYMLINK:
            d->type = SBX_UPLOAD_SYMLINK;
            if (!e->symlink_target[0] || strlen(e->symlink_target) > SBX_FILES_PATH_MAX) {
                code = sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "entry[%zu].symlink_target: must "
                                     "be 1..%d bytes", n, SBX_FILES_PATH_MAX);
                break;
            }
            d->target = e->symlink_target;
            break;
        default:
            code = sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "entry[%zu].type: %d is not FILE, "
                                 "DIRECTORY or SYMLINK", n, (int)e->type);
            break;
        }
        if (code != SBX_OK)
            break;
        n++;
    }
    if (!ents || !bufs)
        code = sbx_ctx_error(ctx, SBX_RESOURCE_EXHAUSTED, "out of memory");
    if (bufs) {
        bufs[n].p = (uint8_t *)-1; /* terminator for free_upbufs */
        for (size_t i = n + 1; i <= cap; i++)
            bufs[i].p = (uint8_t *)-1;
        sbx_ctx_defer(ctx, free_upbufs, bufs);
    }
    const char *dest = h->dest_dir[0] ? h->dest_dir : SBX_FILES_HOME;
    const char *dest_abs = norm_path(ctx, dest);
    sbx_files *fs = sbx_box_files(b);
    if (code == SBX_OK && !h->replace) {
        /* without replace, an existing file or symlink at an entry path fails the upload;
           existing directories are merged into */
        for (size_t i = 0; i < n && code == SBX_OK; i++) {
            size_t l = strlen(dest_abs) + strlen(ents[i].path) + 2;
            char *p = malloc(l);
            if (!p) {
                code = sbx_ctx_error(ctx, SBX_RESOURCE_EXHAUSTED, "out of memory");
                break;
            }
            snprintf(p, l, "%s/%s", dest_abs, ents[i].path);
            sbx_file_info fi = {0};
            if (sbx_files_stat(fs, p, &fi, NULL, 0) == 0 &&
                !(fi.type == SBX_FILE_DIR && ents[i].type == SBX_UPLOAD_DIR))
                code = sbx_ctx_error(ctx, SBX_ALREADY_EXISTS, "entry[%zu].path: %s exists (set "
                                     "replace)", i, p);
            sbx_file_info_clear(&fi);
            free(p);
        }
    }
    sbx_upload_result res = {0};
    if (code == SBX_OK) {
        sbx_upload_opts o = {.dest = dest, .mode = SBX_UPLOAD_MERGE, .max_entries = SBX_UPLOAD_ENTRIES_MAX,
                             .max_bytes = max_bytes ? max_bytes : SBX_UPLOAD_BYTES_DEFAULT};
        rc = sbx_files_upload(fs, &o, ents, n, &res, err, sizeof err);
        if (rc == -EFBIG || rc == -E2BIG)
            code = sbx_ctx_error(ctx, SBX_RESOURCE_EXHAUSTED, "%s", err);
        else if (rc == -EINVAL || rc == -ENAMETOOLONG)
            code = sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "%s", err);
        else if (rc < 0)
            code = ferr(ctx, rc, err, SBX_NOT_FOUND, SBX_FAILED_PRECONDITION, SBX_FAILED_PRECONDITION);
    }
    free(ents);
    sbx_box_release(b);
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
