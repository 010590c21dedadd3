/* upload.c: uploads a local directory tree into a sandbox with one UploadFiles call, which the
 * executor applies all-or-nothing. The tree is scanned first (so unsupported file types fail
 * before anything is sent and progress has a total), then streamed: directories, symlinks, and
 * files in chunks of at most 1 MiB (continuations carry `append`). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sbx/v1/executor.pb-c.h"
#include "sbx_internal.h"

#define M(m) "/sbx.v1.SandboxExecutor/" m
#define UPLOAD_CHUNK (1024 * 1024)

typedef struct item {
    char *rel;      /* path relative to the root */
    int type;       /* SBX_FILE_* */
    uint32_t mode;
    uint64_t size;
    char *target;   /* symlink target */
} item;

typedef struct scan {
    item *items;
    size_t n, cap;
    uint64_t bytes;
    size_t files;
} scan;

static void scan_free(scan *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->items[i].rel);
        free(s->items[i].target);
    }
    free(s->items);
}

static int cmp_item(const void *a, const void *b)
{
    return strcmp(((const item *)a)->rel, ((const item *)b)->rel);
}

static sbx_error *scan_dir(scan *s, const char *root, const char *rel, int depth)
{
    if (depth > 64)
        return sbx_error_new(SBX_CODE_INVALID_ARGUMENT, "%s/%s: directory tree deeper than 64 levels", root, rel);
    char *dpath = NULL;
    if (asprintf(&dpath, "%s%s%s", root, *rel ? "/" : "", rel) < 0)
        return sbx__error_oom();
    DIR *d = opendir(dpath);
    if (!d) {
        sbx_error *e = sbx__error_errno(errno, dpath);
        free(dpath);
        return e;
    }
    sbx_error *e = NULL;
    struct dirent *de;
    while (!e && (de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char *crel = NULL, *full = NULL;
        if (asprintf(&crel, "%s%s%s", rel, *rel ? "/" : "", de->d_name) < 0) {
            e = sbx__error_oom();
            break;
        }
        if (asprintf(&full, "%s/%s", root, crel) < 0) {
            free(crel);
            e = sbx__error_oom();
            break;
        }
        struct stat st;
        if (lstat(full, &st) != 0) {
            e = sbx__error_errno(errno, full);
            free(crel);
            free(full);
            break;
        }
        item it = {.rel = crel, .mode = (uint32_t)(st.st_mode & 07777)};
        if (S_ISDIR(st.st_mode)) {
            it.type = SBX_FILE_DIRECTORY;
        } else if (S_ISREG(st.st_mode)) {
            it.type = SBX_FILE_REGULAR;
            it.size = (uint64_t)st.st_size;
            s->bytes += it.size;
            s->files++;
        } else if (S_ISLNK(st.st_mode)) {
            it.type = SBX_FILE_SYMLINK;
            char buf[4097];
            ssize_t n = readlink(full, buf, sizeof buf - 1);
            if (n < 0) {
                e = sbx__error_errno(errno, full);
                free(crel);
                free(full);
                break;
            }
            buf[n] = 0;
            it.target = strdup(buf);
            s->files++;
        } else {
            e = sbx_error_new(SBX_CODE_INVALID_ARGUMENT, "%s: not a regular file, directory or symlink", full);
            free(crel);
            free(full);
            break;
        }
        if (s->n == s->cap) {
            size_t nc = s->cap ? s->cap * 2 : 64;
            item *ni = realloc(s->items, nc * sizeof *ni);
            if (!ni) {
                free(crel);
                free(it.target);
                free(full);
                e = sbx__error_oom();
                break;
            }
            s->items = ni;
            s->cap = nc;
        }
        s->items[s->n++] = it;
        if (it.type == SBX_FILE_DIRECTORY)
            e = scan_dir(s, root, crel, depth + 1);
        free(full);
    }
    closedir(d);
    free(dpath);
    return e;
}

void sbx_upload_result_clear(sbx_upload_result *r)
{
    if (!r)
        return;
    free(r->dest_dir);
    memset(r, 0, sizeof *r);
}

/* One attempt: returns the status code; a local error is returned in *local. */
static int upload_once(sbx_client *c, sbx__shard *sh, const char *project_id, const char *root, const char *dest,
                       bool replace, scan *s, uint8_t *buf, sbx_progress_fn progress, void *ud,
                       sbx_upload_result *res, sbx_rpc_result *rr, sbx_error **local)
{
    int64_t dl = c->deadline_ms > 0 ? c->deadline_ms * 10 : 0;
    sbx_cstream *st = NULL;
    int code = sbx_call_client_stream(sh->ch, M("UploadFiles"), dl, &st, rr);
    if (code != SBX_CODE_OK)
        return code;
    Sbx__V1__UploadHeader h = SBX__V1__UPLOAD_HEADER__INIT;
    h.project_id = (char *)sbx__nz(project_id);
    h.dest_dir = (char *)sbx__nz(dest);
    h.replace = replace;
    Sbx__V1__UploadFilesRequest m = SBX__V1__UPLOAD_FILES_REQUEST__INIT;
    m.part_case = SBX__V1__UPLOAD_FILES_REQUEST__PART_HEADER;
    m.header = &h;
    bool ok = sbx_cstream_write(st, &m.base) == 0;
    uint64_t done = 0;
    size_t files_done = 0;
    for (size_t i = 0; ok && i < s->n && !*local; i++) {
        item *it = &s->items[i];
        Sbx__V1__UploadEntry en = SBX__V1__UPLOAD_ENTRY__INIT;
        Sbx__V1__UploadFilesRequest em = SBX__V1__UPLOAD_FILES_REQUEST__INIT;
        em.part_case = SBX__V1__UPLOAD_FILES_REQUEST__PART_ENTRY;
        em.entry = &en;
        en.path = it->rel;
        en.mode = it->mode;
        if (it->type == SBX_FILE_DIRECTORY) {
            en.type = SBX__V1__FILE_TYPE__FILE_TYPE_DIRECTORY;
            ok = sbx_cstream_write(st, &em.base) == 0;
            continue;
        }
        if (it->type == SBX_FILE_SYMLINK) {
            en.type = SBX__V1__FILE_TYPE__FILE_TYPE_SYMLINK;
            en.symlink_target = it->target;
            ok = sbx_cstream_write(st, &em.base) == 0;
            files_done++;
            if (progress)
                progress(done, s->bytes, files_done, s->files, ud);
            continue;
        }
        en.type = SBX__V1__FILE_TYPE__FILE_TYPE_FILE;
        char *full = NULL;
        if (asprintf(&full, "%s/%s", root, it->rel) < 0) {
            *local = sbx__error_oom();
            break;
        }
        int fd = open(full, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
            *local = sbx__error_errno(errno, full);
            free(full);
            break;
        }
        bool first = true;
        for (;;) {
            size_t got = 0;
            while (got < UPLOAD_CHUNK) {
                ssize_t r = read(fd, buf + got, UPLOAD_CHUNK - got);
                if (r < 0 && errno == EINTR)
                    continue;
                if (r < 0) {
                    *local = sbx__error_errno(errno, full);
                    break;
                }
                if (r == 0)
                    break;
                got += (size_t)r;
            }
            if (*local || (got == 0 && !first))
                break;
            en.content.data = buf;
            en.content.len = got;
            en.append = !first;
            ok = sbx_cstream_write(st, &em.base) == 0;
            first = false;
            done += got;
            if (progress)
                progress(done, s->bytes, files_done, s->files, ud);
            if (!ok || got < UPLOAD_CHUNK)
                break;
        }
        close(fd);
        free(full);
        files_done++;
        if (progress && ok && !*local)
            progress(done, s->bytes, files_done, s->files, ud);
    }
    if (*local) {
        sbx_cstream_cancel(st);
        sbx_cstream_finish(st, NULL);
        return SBX_CODE_CANCELLED;
    }
    ProtobufCMessage *resp = NULL;
    code = sbx_cstream_close_and_recv(st, &sbx__v1__upload_files_response__descriptor, &resp, rr);
    if (code == SBX_CODE_OK) {
        Sbx__V1__UploadFilesResponse *r = (void *)resp;
        res->files_written = r->files_written;
        res->bytes_written = r->bytes_written;
        res->dest_dir = sbx__strdup(r->dest_dir);
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    return code;
}

sbx_error *sbx_upload_dir(sbx_client *c, const char *project_id, const char *local_dir, const char *dest_dir,
                          bool replace, sbx_progress_fn progress, void *ud, sbx_upload_result *res)
{
    memset(res, 0, sizeof *res);
    struct stat st;
    if (stat(local_dir, &st) != 0)
        return sbx__error_errno(errno, local_dir);
    if (!S_ISDIR(st.st_mode))
        return sbx_error_new(SBX_CODE_INVALID_ARGUMENT, "%s: not a directory", local_dir);
    scan s = {0};
    sbx_error *e = scan_dir(&s, local_dir, "", 0);
    if (e) {
        scan_free(&s);
        return e;
    }
    if (s.n > 1)
        qsort(s.items, s.n, sizeof *s.items, cmp_item); /* parents sort before their children */
    uint8_t *buf = malloc(UPLOAD_CHUNK);
    if (!buf) {
        scan_free(&s);
        return sbx__error_oom();
    }
    sbx__shard *sh = &c->shards[SBX_SERVICE_EXECUTOR][sbx__shard_for(c, SBX_SERVICE_EXECUTOR, project_id)];
    for (int attempt = 1;; attempt++) {
        sbx_rpc_result rr = {0};
        sbx_error *local = NULL;
        int code = upload_once(c, sh, project_id, local_dir, dest_dir, replace, &s, buf, progress, ud, res, &rr,
                               &local);
        if (local) {
            e = local;
            sbx_rpc_result_clear(&rr);
            break;
        }
        if (code == SBX_CODE_OK) {
            sbx_rpc_result_clear(&rr);
            if (!res->dest_dir)
                e = sbx__error_oom();
            break;
        }
        if (code != SBX_CODE_UNAVAILABLE || !replace || !sbx__backoff_wait(c, attempt, 0)) {
            e = sbx__error_rpc(&rr, code, sh->addr);
            if (e)
                e->attempts = attempt;
            sbx_rpc_result_clear(&rr);
            break;
        }
        sbx_rpc_result_clear(&rr);
    }
    free(buf);
    scan_free(&s);
    return e;
}
