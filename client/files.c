/* files.c: file access inside a sandbox: ReadFile (server stream, resumed from the byte reached
 * after UNAVAILABLE), WriteFile (client stream, retried from a rewound source when idempotent),
 * ListDir, Stat, MakeDir, Remove, Move. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sbx/v1/executor.pb-c.h"
#include "sbx_internal.h"

#define M(m) "/sbx.v1.SandboxExecutor/" m
#define WRITE_CHUNK (256 * 1024)

void sbx_file_info_clear(sbx_file_info *fi)
{
    if (!fi)
        return;
    free(fi->path);
    free(fi->name);
    free(fi->symlink_target);
    memset(fi, 0, sizeof *fi);
}

static int info_fill(sbx_file_info *d, const Sbx__V1__FileInfo *s)
{
    memset(d, 0, sizeof *d);
    d->type = (sbx_file_type)s->type;
    d->size = s->size_bytes;
    d->mode = s->mode;
    d->mtime_ms = s->mtime_unix_ms;
    d->uid = s->uid;
    d->gid = s->gid;
    d->path = sbx__strdup(s->path);
    d->name = sbx__strdup(s->name);
    d->symlink_target = sbx__strdup(s->symlink_target);
    return d->path && d->name && d->symlink_target ? 0 : -1;
}

static size_t shard_of(sbx_client *c, const char *project_id)
{
    return sbx__shard_for(c, SBX_SERVICE_EXECUTOR, project_id);
}

/* Where a ReadFile has got to, across resumed attempts. */
typedef struct read_state {
    uint64_t pos, done;
    sbx_file_info *info; /* NULL: not wanted */
    bool info_set;
    sbx_data_fn sink;
    void *ud;
} read_state;

/* Delivers the chunks of one ReadFile stream to the sink, skipping bytes already delivered
 * should a server resend them. Returns the stream's status; *moved when a chunk arrived; *e when
 * the sink stopped us or memory ran out (the stream is then finished too). */
static int read_chunks(read_state *r, sbx_cstream *st, sbx_rpc_result *res, bool *moved,
                       sbx_error **e)
{
    ProtobufCMessage *m = NULL;
    int rc = 0;
    while (!*e && (rc = sbx_cstream_next(st, &sbx__v1__file_chunk__descriptor, &m)) == 1) {
        Sbx__V1__FileChunk *ch = (void *)m;
        *moved = true;
        if (ch->info && r->info && !r->info_set) {
            if (info_fill(r->info, ch->info) != 0)
                *e = sbx__error_oom();
            r->info_set = true;
        }
        size_t skip = ch->offset < r->pos ? (size_t)(r->pos - ch->offset) : 0;
        if (!*e && skip < ch->data.len) {
            size_t n = ch->data.len - skip;
            if (r->sink && r->sink(ch->data.data + skip, n, r->ud) != 0)
                *e = sbx_error_new(SBX_CODE_CANCELLED, "stopped by the caller");
            r->pos += n;
            r->done += n;
        }
        protobuf_c_message_free_unpacked(m, NULL);
    }
    int code = sbx_cstream_finish(st, res);
    return !*e && rc < 0 ? SBX_CODE_INTERNAL : code;
}

sbx_error *sbx_file_read(sbx_client *c, const char *project_id, const char *path, uint64_t offset,
                         uint64_t length, sbx_data_fn sink, void *ud, sbx_file_info *info)
{
    if (info)
        memset(info, 0, sizeof *info);
    sbx__shard *s = &c->shards[SBX_SERVICE_EXECUTOR][shard_of(c, project_id)];
    read_state r = {.pos = offset, .info = info, .sink = sink, .ud = ud};
    int64_t deadline_abs = c->deadline_ms > 0 ? sbx__mono_ms() + c->deadline_ms * 10 : 0;
    for (int attempt = 1;; attempt++) {
        Sbx__V1__ReadFileRequest req = SBX__V1__READ_FILE_REQUEST__INIT;
        req.project_id = (char *)sbx__nz(project_id);
        req.path = (char *)sbx__nz(path);
        req.offset = r.pos;
        req.length = length ? length - r.done : 0;
        sbx_cstream *st = NULL;
        sbx_rpc_result res = {0};
        int64_t left = deadline_abs ? deadline_abs - sbx__mono_ms() : 0;
        int code =
            sbx_call_server_stream(s->ch, M("ReadFile"), &req.base, left > 0 ? left : 1, &st, &res);
        bool moved = false;
        sbx_error *e = NULL;
        if (code == SBX_CODE_OK)
            code = read_chunks(&r, st, &res, &moved, &e);
        if (e || code == SBX_CODE_OK) {
            sbx_rpc_result_clear(&res);
            return e;
        }
        if (moved)
            attempt = 1; /* the stream moved: a fresh retry budget */
        if (!sbx__stream_retry(c, &res, code, s->addr, true, attempt, deadline_abs, &e)) {
            if (info)
                sbx_file_info_clear(info);
            return e;
        }
    }
}

/* One WriteFile call: the header, then the source in chunks. Returns the call's status (*resp
 * set on OK); *src_err is the errno when the source failed (the call is then cancelled). */
static int write_once(sbx__shard *s, int64_t dl, Sbx__V1__WriteFileHeader *h, sbx_source_fn src,
                      void *ud, uint8_t *chunk, ProtobufCMessage **resp, sbx_rpc_result *res,
                      int *src_err)
{
    sbx_cstream *st = NULL;
    int code = sbx_call_client_stream(s->ch, M("WriteFile"), dl, &st, res);
    if (code != SBX_CODE_OK)
        return code;
    Sbx__V1__WriteFileRequest m = SBX__V1__WRITE_FILE_REQUEST__INIT;
    m.part_case = SBX__V1__WRITE_FILE_REQUEST__PART_HEADER;
    m.header = h;
    bool ok = sbx_cstream_write(st, &m.base) == 0;
    while (ok) {
        long n = src(chunk, WRITE_CHUNK, ud);
        if (n < 0) {
            *src_err = errno ? errno : EIO;
            sbx_cstream_cancel(st);
            break;
        }
        if (n == 0)
            break;
        Sbx__V1__WriteFileRequest d = SBX__V1__WRITE_FILE_REQUEST__INIT;
        d.part_case = SBX__V1__WRITE_FILE_REQUEST__PART_DATA;
        d.data.data = chunk;
        d.data.len = (size_t)n;
        ok = sbx_cstream_write(st, &d.base) == 0; /* on failure the status tells why */
    }
    return sbx_cstream_close_and_recv(st, &sbx__v1__write_file_response__descriptor, resp, res);
}

sbx_error *sbx_file_write(sbx_client *c, const char *project_id, const char *path,
                          const sbx_write_opts *opts, sbx_source_fn src, sbx_rewind_fn rewind,
                          void *ud, sbx_file_info *info, uint64_t *bytes)
{
    if (info)
        memset(info, 0, sizeof *info);
    if (bytes)
        *bytes = 0;
    sbx_write_opts zero = {0};
    if (!opts)
        opts = &zero;
    bool idem = !opts->append && !opts->exclusive && rewind;
    sbx__shard *s = &c->shards[SBX_SERVICE_EXECUTOR][shard_of(c, project_id)];
    Sbx__V1__WriteFileHeader h = SBX__V1__WRITE_FILE_HEADER__INIT;
    h.project_id = (char *)sbx__nz(project_id);
    h.path = (char *)sbx__nz(path);
    h.mode = opts->mode;
    h.append = opts->append;
    h.no_create_parents = opts->no_create_parents;
    h.exclusive = opts->exclusive;
    uint8_t *chunk = malloc(WRITE_CHUNK);
    if (!chunk)
        return sbx__error_oom();
    /* a large file may take long: the deadline applies to each call, scaled generously */
    int64_t dl = c->deadline_ms > 0 ? c->deadline_ms * 10 : 0;
    sbx_error *e = NULL;
    for (int attempt = 1;; attempt++) {
        if (attempt > 1 && rewind(ud) != 0) {
            e = sbx__error_errno(errno ? errno : EIO, "rewinding the input for a retry");
            break;
        }
        sbx_rpc_result res = {0};
        ProtobufCMessage *resp = NULL;
        int src_err = 0;
        int code = write_once(s, dl, &h, src, ud, chunk, &resp, &res, &src_err);
        if (src_err || code == SBX_CODE_OK) {
            Sbx__V1__WriteFileResponse *r = (void *)resp;
            if (src_err)
                e = sbx__error_errno(src_err, "reading the input");
            else if (bytes)
                *bytes = r->bytes_written;
            if (!src_err && info && r->info && info_fill(info, r->info) != 0)
                e = sbx__error_oom();
            if (resp)
                protobuf_c_message_free_unpacked(resp, NULL);
            sbx_rpc_result_clear(&res);
            break;
        }
        if (!sbx__stream_retry(c, &res, code, s->addr, idem, attempt, 0, &e))
            break;
    }
    free(chunk);
    return e;
}

void sbx_file_list_free(sbx_file_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->count; i++)
        sbx_file_info_clear(&l->entries[i]);
    free(l->entries);
    free(l);
}

sbx_error *sbx_file_list_dir(sbx_client *c, const char *project_id, const char *path, int depth,
                             int max_entries, sbx_file_list **out)
{
    *out = NULL;
    Sbx__V1__ListDirRequest req = SBX__V1__LIST_DIR_REQUEST__INIT;
    req.project_id = (char *)sbx__nz(project_id);
    req.path = (char *)sbx__nz(path);
    req.depth = depth;
    req.max_entries = max_entries;
    ProtobufCMessage *resp = NULL;
    sbx_error *e = sbx__unary_key(c, SBX_SERVICE_EXECUTOR, req.project_id, M("ListDir"), &req.base,
                                  &sbx__v1__list_dir_response__descriptor, &resp, true);
    if (e)
        return e;
    Sbx__V1__ListDirResponse *r = (void *)resp;
    sbx_file_list *l = calloc(1, sizeof *l);
    bool ok = l != NULL;
    if (ok && r->n_entries)
        ok = (l->entries = calloc(r->n_entries, sizeof *l->entries)) != NULL;
    for (size_t i = 0; ok && i < r->n_entries; i++) {
        l->count++;
        ok = info_fill(&l->entries[i], r->entries[i]) == 0;
    }
    if (l)
        l->truncated = r->truncated;
    protobuf_c_message_free_unpacked(resp, NULL);
    if (!ok) {
        sbx_file_list_free(l);
        return sbx__error_oom();
    }
    *out = l;
    return NULL;
}

sbx_error *sbx_file_stat(sbx_client *c, const char *project_id, const char *path,
                         sbx_file_info *out)
{
    memset(out, 0, sizeof *out);
    Sbx__V1__StatRequest req = SBX__V1__STAT_REQUEST__INIT;
    req.project_id = (char *)sbx__nz(project_id);
    req.path = (char *)sbx__nz(path);
    ProtobufCMessage *resp = NULL;
    sbx_error *e = sbx__unary_key(c, SBX_SERVICE_EXECUTOR, req.project_id, M("Stat"), &req.base,
                                  &sbx__v1__file_info__descriptor, &resp, true);
    if (e)
        return e;
    int rc = info_fill(out, (const Sbx__V1__FileInfo *)resp);
    protobuf_c_message_free_unpacked(resp, NULL);
    if (rc != 0) {
        sbx_file_info_clear(out);
        return sbx__error_oom();
    }
    return NULL;
}

sbx_error *sbx_file_mkdir(sbx_client *c, const char *project_id, const char *path, uint32_t mode,
                          bool parents, bool *created)
{
    if (created)
        *created = false;
    Sbx__V1__MakeDirRequest req = SBX__V1__MAKE_DIR_REQUEST__INIT;
    req.project_id = (char *)sbx__nz(project_id);
    req.path = (char *)sbx__nz(path);
    req.mode = mode;
    req.parents = parents;
    ProtobufCMessage *resp = NULL;
    sbx_error *e = sbx__unary_key(c, SBX_SERVICE_EXECUTOR, req.project_id, M("MakeDir"), &req.base,
                                  &sbx__v1__make_dir_response__descriptor, &resp, parents);
    if (e)
        return e;
    if (created)
        *created = ((Sbx__V1__MakeDirResponse *)resp)->created;
    protobuf_c_message_free_unpacked(resp, NULL);
    return NULL;
}

sbx_error *sbx_file_remove(sbx_client *c, const char *project_id, const char *path, bool recursive,
                           bool *existed)
{
    if (existed)
        *existed = false;
    Sbx__V1__RemoveRequest req = SBX__V1__REMOVE_REQUEST__INIT;
    req.project_id = (char *)sbx__nz(project_id);
    req.path = (char *)sbx__nz(path);
    req.recursive = recursive;
    ProtobufCMessage *resp = NULL;
    sbx_error *e = sbx__unary_key(c, SBX_SERVICE_EXECUTOR, req.project_id, M("Remove"), &req.base,
                                  &sbx__v1__remove_response__descriptor, &resp, true);
    if (e)
        return e;
    if (existed)
        *existed = ((Sbx__V1__RemoveResponse *)resp)->existed;
    protobuf_c_message_free_unpacked(resp, NULL);
    return NULL;
}

sbx_error *sbx_file_move(sbx_client *c, const char *project_id, const char *src, const char *dst,
                         bool overwrite)
{
    Sbx__V1__MoveRequest req = SBX__V1__MOVE_REQUEST__INIT;
    req.project_id = (char *)sbx__nz(project_id);
    req.src = (char *)sbx__nz(src);
    req.dst = (char *)sbx__nz(dst);
    req.overwrite = overwrite;
    ProtobufCMessage *resp = NULL;
    sbx_error *e = sbx__unary_key(c, SBX_SERVICE_EXECUTOR, req.project_id, M("Move"), &req.base,
                                  &sbx__v1__move_response__descriptor, &resp, false);
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    return e;
}
