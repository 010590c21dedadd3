/* handlers_files.c: the file RPCs (ReadFile, WriteFile, ListDir, Stat, MakeDir, Remove, Move;
 * UploadFiles is handlers_upload.c) on top of the sandbox file layer (files.h), which resolves
 * every path inside the sandbox root with openat2(RESOLVE_IN_ROOT) and acts as the sandbox
 * user. Here: the request limits of the proto, streaming (the client-stream receive both
 * streaming RPCs use), and the status codes each RPC documents.
 *
 * Threads: the handlers' worker threads. Memory: the arena; received messages a handler keeps
 * pointers into are freed when the call ends. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exec_cmdkey.h"
#include "handlers.h"
#include "status.h"

#define ERRLEN 512

/* Received client-stream messages are ours to free (sbx_stream_recv does not free them with
 * the call yet): the ones handlers keep pointers into are freed when the call ends. */
static void free_msg(void *m)
{
    protobuf_c_message_free_unpacked(m, NULL);
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

int exh_recv_part(sbx_ctx *ctx, const ProtobufCMessageDescriptor *d, ProtobufCMessage **out,
                  bool keep, const char *undecodable)
{
    *out = NULL;
    int rc = sbx_stream_recv(ctx, d, out);
    if (rc < 0)
        return recv_failed(ctx, rc, undecodable);
    if (rc > 0 && keep)
        sbx_ctx_defer(ctx, free_msg, *out);
    return SBX_OK;
}

int exh_recv_header(sbx_ctx *ctx, const ProtobufCMessageDescriptor *d, ProtobufCMessage **out)
{
    int code = exh_recv_part(ctx, d, out, true, "request does not decode");
    if (code != SBX_OK)
        return code;
    const ProtobufCFieldDescriptor *h =
        protobuf_c_message_descriptor_get_field_by_name(d, "header");
    if (!*out || *(const uint32_t *)((const char *)*out + h->quantifier_offset) != h->id)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                             "header: the first message must be a header");
    return SBX_OK;
}

char *exh_norm_path(sbx_ctx *ctx, const char *path)
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
    Sbx__V1__FileInfo *m =
        (Sbx__V1__FileInfo *)sbx_ctx_new_msg(ctx, &sbx__v1__file_info__descriptor);
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

int exh_file_error(sbx_ctx *ctx, int rc, const char *msg, int enoent, int enotdir, int eisdir)
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
    else if ((code = sbx_files_status(rc)) == SBX_OK || code == SBX_UNKNOWN)
        code = SBX_INTERNAL;
    return sbx_ctx_error(ctx, code, "%s", msg && msg[0] ? msg : strerror(e));
}

int exh_disk_full(sbx_ctx *ctx, sbx_box *b, const char *msg)
{
    const exv_limits *l = sbx_box_limits(b);
    sbx_disk_usage u;
    if (!sbx_box_disk_limited(b) || sbx_box_disk_usage(b, &u) < 0)
        return sbx_ctx_error(ctx, SBX_RESOURCE_EXHAUSTED,
                             "no space left on the sandbox's filesystem (%s); the home has no "
                             "total limit on this host, limits.disk_bytes (%lld bytes) bounds "
                             "each file",
                             msg && msg[0] ? msg : "ENOSPC", (long long)l->disk_bytes);
    bool inodes = u.used_inodes >= u.limit_inodes;
    return sbx_ctx_error(
        ctx, SBX_RESOURCE_EXHAUSTED,
        "the sandbox's home is full: limits.%s (%lld %s) reached; it holds "
        "%llu bytes in %llu files, directories and links (%s)",
        inodes ? "disk_inodes" : "disk_bytes", (long long)(inodes ? l->disk_inodes : l->disk_bytes),
        inodes ? "files, directories and links" : "bytes", (unsigned long long)u.used_bytes,
        (unsigned long long)u.used_inodes, msg && msg[0] ? msg : "ENOSPC");
}

static bool disk_full(int rc)
{
    return rc == -ENOSPC || rc == -EDQUOT;
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
        return exh_file_error(ctx, rc, err, SBX_NOT_FOUND, SBX_NOT_FOUND, 0);
    }
    size_t chunk = r->chunk_bytes == 0              ? EXV_READ_CHUNK_DEFAULT
                   : r->chunk_bytes > EXV_CHUNK_MAX ? EXV_CHUNK_MAX
                                                    : r->chunk_bytes;
    uint8_t *buf = sbx_ctx_alloc(ctx, chunk);
    uint64_t off = r->offset, left = r->length ? r->length : UINT64_MAX;
    const char *abs = exh_norm_path(ctx, r->path);
    bool first = true;
    code = SBX_OK;
    for (;;) {
        size_t want = left < chunk ? (size_t)left : chunk;
        /* no file reaches past INT64_MAX: an offset there is at or past the end (pread would
           say EINVAL for off + want overflowing a loff_t) */
        uint64_t room = off >= (uint64_t)INT64_MAX ? 0 : (uint64_t)INT64_MAX - off;
        if (want > room)
            want = (size_t)room;
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
        /* a short read is the end of the file as it is now: that chunk goes with the status */
        bool last = (size_t)n < want || (uint64_t)n == left;
        if ((last ? sbx_stream_send_last : sbx_stream_send)(ctx, &c.base) < 0) {
            code = SBX_CANCELLED;
            break;
        }
        off += (uint64_t)n;
        left -= (uint64_t)n;
        if (last || n == 0)
            break;
    }
    close(fd);
    sbx_file_info_clear(&fi);
    return code;
}

/* ---------------------------------------------------------------- WriteFile */

static int check_write_header(sbx_ctx *ctx, const Sbx__V1__WriteFileHeader *h)
{
    char err[ERRLEN] = "";
    int code = exv_path("header.path", h->path, false, err, sizeof err);
    if (code != SBX_OK)
        return sbx_ctx_error(ctx, code, "%s", err);
    if (h->mode > 07777)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "header.mode: %o is outside 0..07777",
                             h->mode);
    return SBX_OK;
}

/* The writer of header h's file, or the status WriteFile documents for why not. */
static int open_writer(sbx_ctx *ctx, sbx_box *b, const Sbx__V1__WriteFileHeader *h, const char *abs,
                       sbx_files_writer **wr)
{
    sbx_files *fs = sbx_box_files(b);
    sbx_file_info fi = {0};
    if (h->exclusive && sbx_files_stat(fs, h->path, &fi, NULL, 0) == 0) {
        sbx_file_info_clear(&fi);
        return sbx_ctx_error(ctx, SBX_ALREADY_EXISTS, "header.path: %s exists (exclusive)", abs);
    }
    sbx_files_write_opts o = {.mode = h->mode ? (h->mode & 01777) : 0644,
                              .append = h->append,
                              .no_parents = h->no_create_parents,
                              .max_size = (uint64_t)sbx_box_limits(b)->disk_bytes};
    char err[ERRLEN] = "";
    int rc = sbx_files_write_begin(fs, h->path, &o, wr, err, sizeof err);
    if (rc == -EISDIR)
        return sbx_ctx_error(ctx, SBX_FAILED_PRECONDITION, "header.path: %s is a directory", abs);
    if (rc == -ENOENT && h->no_create_parents)
        return sbx_ctx_error(ctx, SBX_FAILED_PRECONDITION,
                             "header.path: the parent of %s is "
                             "missing (no_create_parents)",
                             abs);
    if (disk_full(rc))
        return exh_disk_full(ctx, b, err);
    if (rc < 0)
        return exh_file_error(ctx, rc, err, SBX_FAILED_PRECONDITION, SBX_FAILED_PRECONDITION,
                              SBX_FAILED_PRECONDITION);
    return SBX_OK;
}

/* Writes one data message. */
static int write_part(sbx_ctx *ctx, sbx_box *b, sbx_files_writer *wr,
                      const Sbx__V1__WriteFileRequest *d)
{
    if (d->part_case != SBX__V1__WRITE_FILE_REQUEST__PART_DATA)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                             "header: repeated (only the first "
                             "message is a header)");
    if (d->data.len > EXV_CHUNK_MAX)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                             "data: chunk of %zu bytes exceeds the "
                             "limit of %d",
                             d->data.len, EXV_CHUNK_MAX);
    char err[ERRLEN] = "";
    int rc =
        d->data.len ? sbx_files_write_chunk(wr, d->data.data, d->data.len, err, sizeof err) : 0;
    if (rc == -EFBIG)
        return sbx_ctx_error(ctx, SBX_RESOURCE_EXHAUSTED,
                             "data: the file exceeds "
                             "limits.disk_bytes (%lld bytes)",
                             (long long)sbx_box_limits(b)->disk_bytes);
    if (disk_full(rc))
        return exh_disk_full(ctx, b, err);
    return rc < 0 ? exh_file_error(ctx, rc, err, 0, 0, 0) : SBX_OK;
}

/* Receives and writes the data messages until the stream ends. */
static int write_parts(sbx_ctx *ctx, sbx_box *b, sbx_files_writer *wr, uint64_t *written)
{
    for (;;) {
        ProtobufCMessage *dm;
        int code = exh_recv_part(ctx, &sbx__v1__write_file_request__descriptor, &dm, false,
                                 "data: message does not decode");
        if (code != SBX_OK || !dm)
            return code;
        const Sbx__V1__WriteFileRequest *d = (const Sbx__V1__WriteFileRequest *)dm;
        code = write_part(ctx, b, wr, d);
        if (code == SBX_OK)
            *written += d->data.len;
        sbx_stream_free(ctx, dm);
        if (code != SBX_OK)
            return code;
    }
}

/* The file itself after the write (a final symlink was followed by the write). */
static Sbx__V1__FileInfo *written_info(sbx_ctx *ctx, sbx_files *fs, const char *path,
                                       const char *abs)
{
    sbx_file_info fi = {0};
    int fd;
    Sbx__V1__FileInfo *m = NULL;
    if (sbx_files_open_read(fs, path, &fd, &fi, NULL, 0) == 0) {
        close(fd);
        m = info_msg(ctx, abs, &fi);
    } else if (sbx_files_stat(fs, path, &fi, NULL, 0) == 0) {
        m = info_msg(ctx, abs, &fi);
    }
    sbx_file_info_clear(&fi);
    return m;
}

static int write_in_box(sbx_ctx *ctx, sbx_box *b, const Sbx__V1__WriteFileHeader *h,
                        ProtobufCMessage **resp)
{
    const char *abs = exh_norm_path(ctx, h->path);
    sbx_files_writer *wr = NULL;
    int code = open_writer(ctx, b, h, abs, &wr);
    if (code != SBX_OK)
        return code;
    uint64_t written = 0;
    if ((code = write_parts(ctx, b, wr, &written)) != SBX_OK) {
        sbx_files_write_abort(wr);
        return code;
    }
    char err[ERRLEN] = "";
    int rc = sbx_files_write_commit(wr, NULL, err, sizeof err);
    if (disk_full(rc))
        return exh_disk_full(ctx, b, err);
    if (rc < 0)
        return exh_file_error(ctx, rc, err, SBX_FAILED_PRECONDITION, SBX_FAILED_PRECONDITION,
                              SBX_FAILED_PRECONDITION);
    Sbx__V1__WriteFileResponse *out = (Sbx__V1__WriteFileResponse *)sbx_ctx_new_msg(
        ctx, &sbx__v1__write_file_response__descriptor);
    out->bytes_written = written;
    out->info = written_info(ctx, sbx_box_files(b), h->path, abs);
    *resp = &out->base;
    return SBX_OK;
}

int exh_write_file(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    (void)req;
    ProtobufCMessage *m;
    int code = exh_recv_header(ctx, &sbx__v1__write_file_request__descriptor, &m);
    if (code != SBX_OK)
        return code;
    /* m (the header) stays alive until the call ends: h points into it */
    const Sbx__V1__WriteFileHeader *h = ((const Sbx__V1__WriteFileRequest *)m)->header;
    if ((code = check_write_header(ctx, h)) != SBX_OK)
        return code;
    sbx_box *b;
    if ((code = exh_box(ctx, data, h->sandbox_id, h->project_id, REG_CREATE, &b)) != SBX_OK)
        return code;
    code = write_in_box(ctx, b, h, resp);
    sbx_box_release(b);
    return code;
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
    size_t maxe = r->max_entries == 0                           ? SBX_FILES_LIST_ENTRIES_DEFAULT
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
        return exh_file_error(ctx, rc, err, SBX_NOT_FOUND, SBX_FAILED_PRECONDITION, 0);
    if (n > 1)
        qsort(ents, n, sizeof *ents, cmp_entry);
    Sbx__V1__ListDirResponse *out =
        (Sbx__V1__ListDirResponse *)sbx_ctx_new_msg(ctx, &sbx__v1__list_dir_response__descriptor);
    const char *base = exh_norm_path(ctx, path);
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
        return exh_file_error(ctx, rc, err, SBX_NOT_FOUND, SBX_NOT_FOUND, 0);
    *resp = &info_msg(ctx, exh_norm_path(ctx, r->path), &fi)->base;
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
    code = disk_full(rc) ? exh_disk_full(ctx, b, err) : SBX_OK;
    sbx_box_release(b);
    if (code != SBX_OK)
        return code;
    if (rc < 0)
        return exh_file_error(ctx, rc, err, SBX_NOT_FOUND, SBX_ALREADY_EXISTS, 0);
    if (!created && !r->parents)
        return sbx_ctx_error(ctx, SBX_ALREADY_EXISTS,
                             "path: %s exists (set parents to accept an "
                             "existing directory)",
                             exh_norm_path(ctx, r->path));
    Sbx__V1__MakeDirResponse *out =
        (Sbx__V1__MakeDirResponse *)sbx_ctx_new_msg(ctx, &sbx__v1__make_dir_response__descriptor);
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
    if (strcmp(exh_norm_path(ctx, r->path), "/") == 0)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "path: %s resolves to \"/\"", r->path);
    sbx_box *b;
    if ((code = exh_box(ctx, data, r->sandbox_id, r->project_id, REG_CREATE, &b)) != SBX_OK)
        return code;
    bool existed = false;
    int rc = sbx_files_remove(sbx_box_files(b), r->path, r->recursive, &existed, err, sizeof err);
    sbx_box_release(b);
    if (rc == -ENOTEMPTY)
        return sbx_ctx_error(ctx, SBX_FAILED_PRECONDITION,
                             "path: %s is a non-empty directory "
                             "(set recursive)",
                             exh_norm_path(ctx, r->path));
    if (rc < 0)
        return exh_file_error(ctx, rc, err, SBX_NOT_FOUND, SBX_FAILED_PRECONDITION, 0);
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
    code = disk_full(rc) ? exh_disk_full(ctx, b, err) : SBX_OK;
    sbx_box_release(b);
    if (code != SBX_OK)
        return code;
    if (rc == -EEXIST)
        return sbx_ctx_error(ctx, SBX_ALREADY_EXISTS, "dst: %s exists (set overwrite)",
                             exh_norm_path(ctx, r->dst));
    if (rc == -ENOTEMPTY || rc == -EISDIR || rc == -ENOTDIR)
        return sbx_ctx_error(ctx, SBX_FAILED_PRECONDITION, "%s", err[0] ? err : strerror(-rc));
    if (rc == -EXDEV)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                             "src, dst: %s and %s are on different filesystems (a Move cannot "
                             "cross them: write the file at dst and remove src)",
                             exh_norm_path(ctx, r->src), exh_norm_path(ctx, r->dst));
    if (rc < 0)
        return exh_file_error(ctx, rc, err, SBX_NOT_FOUND, 0, 0);
    *resp = sbx_ctx_new_msg(ctx, &sbx__v1__move_response__descriptor);
    return SBX_OK;
}
