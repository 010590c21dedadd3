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
    char *rel; /* path relative to the root */
    int type;  /* SBX_FILE_* */
    uint32_t mode;
    uint64_t size;
    char *target; /* symlink target */
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

static sbx_error *scan_push(scan *s, item it)
{
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        item *ni = realloc(s->items, nc * sizeof *ni);
        if (!ni)
            return sbx__error_oom();
        s->items = ni;
        s->cap = nc;
    }
    s->items[s->n++] = it;
    return NULL;
}

/* What lstat says of full (rel to the root): a directory, a regular file or a symlink (with
 * its target); anything else is an error. Counts files and bytes into s. */
static sbx_error *scan_one(scan *s, const char *full, item *it)
{
    struct stat st;
    if (lstat(full, &st) != 0)
        return sbx__error_errno(errno, full);
    it->mode = (uint32_t)(st.st_mode & 07777);
    if (S_ISDIR(st.st_mode)) {
        it->type = SBX_FILE_DIRECTORY;
        return NULL;
    }
    if (S_ISREG(st.st_mode)) {
        it->type = SBX_FILE_REGULAR;
        it->size = (uint64_t)st.st_size;
        s->bytes += it->size;
        s->files++;
        return NULL;
    }
    if (!S_ISLNK(st.st_mode))
        return sbx_error_new(SBX_CODE_INVALID_ARGUMENT,
                             "%s: not a regular file, directory or symlink", full);
    it->type = SBX_FILE_SYMLINK;
    char buf[4097];
    ssize_t n = readlink(full, buf, sizeof buf - 1);
    if (n < 0)
        return sbx__error_errno(errno, full);
    buf[n] = 0;
    it->target = strdup(buf);
    s->files++;
    return NULL;
}

/* Adds the entry name of directory rel (and, for a directory, its tree) to s. */
static sbx_error *scan_dir(scan *s, const char *root, const char *rel, int depth);
static sbx_error *scan_entry(scan *s, const char *root, const char *rel, const char *name,
                             int depth)
{
    char *full = NULL;
    item it = {0};
    if (asprintf(&it.rel, "%s%s%s", rel, *rel ? "/" : "", name) < 0) {
        it.rel = NULL;
        return sbx__error_oom();
    }
    if (asprintf(&full, "%s/%s", root, it.rel) < 0) {
        free(it.rel);
        return sbx__error_oom();
    }
    sbx_error *e = scan_one(s, full, &it);
    free(full);
    if (!e)
        e = scan_push(s, it);
    if (e) {
        free(it.rel);
        free(it.target);
        return e;
    }
    return it.type == SBX_FILE_DIRECTORY ? scan_dir(s, root, it.rel, depth + 1) : NULL;
}

static sbx_error *scan_dir(scan *s, const char *root, const char *rel, int depth)
{
    if (depth > 64)
        return sbx_error_new(SBX_CODE_INVALID_ARGUMENT,
                             "%s/%s: directory tree deeper than 64 levels", root, rel);
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
    while (!e && (de = readdir(d)))
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            e = scan_entry(s, root, rel, de->d_name, depth);
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

/* One upload: the tree and where it goes, then the state of the current attempt. */
typedef struct upload {
    const char *project_id, *root, *dest;
    bool replace;
    scan s;
    uint8_t *buf; /* UPLOAD_CHUNK bytes */
    sbx_progress_fn progress;
    void *ud;
    sbx_cstream *st;
    uint64_t done;
    size_t files_done;
    sbx_error *local; /* a local read error: the attempt is cancelled, the upload fails */
} upload;

static void report(upload *u)
{
    if (u->progress)
        u->progress(u->done, u->s.bytes, u->files_done, u->s.files, u->ud);
}

/* Reads up to UPLOAD_CHUNK bytes (fewer only at the end of the file); 0, or -1 with errno. */
static int read_chunk(int fd, uint8_t *buf, size_t *got)
{
    *got = 0;
    while (*got < UPLOAD_CHUNK) {
        ssize_t r = read(fd, buf + *got, UPLOAD_CHUNK - *got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return 0;
}

/* Streams a regular file as entries of at most UPLOAD_CHUNK bytes (continuations carry
 * `append`; an empty file is one empty entry). False when the stream broke or u->local is set. */
static bool send_file(upload *u, Sbx__V1__UploadFilesRequest *em, const char *full)
{
    Sbx__V1__UploadEntry *en = em->entry;
    int fd = open(full, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        u->local = sbx__error_errno(errno, full);
        return false;
    }
    bool ok = true;
    for (bool first = true;; first = false) {
        size_t got;
        if (read_chunk(fd, u->buf, &got) != 0) {
            u->local = sbx__error_errno(errno, full);
            break;
        }
        if (got == 0 && !first)
            break;
        en->content.data = u->buf;
        en->content.len = got;
        en->append = !first;
        ok = sbx_cstream_write(u->st, &em->base) == 0;
        u->done += got;
        report(u);
        if (!ok || got < UPLOAD_CHUNK)
            break;
    }
    close(fd);
    u->files_done++;
    if (ok && !u->local)
        report(u);
    return ok && !u->local;
}

/* Sends one scanned item: a directory, a symlink, or a file's content. */
static bool send_item(upload *u, const item *it)
{
    Sbx__V1__UploadEntry en = SBX__V1__UPLOAD_ENTRY__INIT;
    Sbx__V1__UploadFilesRequest em = SBX__V1__UPLOAD_FILES_REQUEST__INIT;
    em.part_case = SBX__V1__UPLOAD_FILES_REQUEST__PART_ENTRY;
    em.entry = &en;
    en.path = it->rel;
    en.mode = it->mode;
    if (it->type == SBX_FILE_DIRECTORY) {
        en.type = SBX__V1__FILE_TYPE__FILE_TYPE_DIRECTORY;
        return sbx_cstream_write(u->st, &em.base) == 0;
    }
    if (it->type == SBX_FILE_SYMLINK) {
        en.type = SBX__V1__FILE_TYPE__FILE_TYPE_SYMLINK;
        en.symlink_target = it->target;
        bool ok = sbx_cstream_write(u->st, &em.base) == 0;
        u->files_done++;
        report(u);
        return ok;
    }
    en.type = SBX__V1__FILE_TYPE__FILE_TYPE_FILE;
    char *full = NULL;
    if (asprintf(&full, "%s/%s", u->root, it->rel) < 0) {
        u->local = sbx__error_oom();
        return false;
    }
    bool ok = send_file(u, &em, full);
    free(full);
    return ok;
}

/* One attempt: returns the status code (a local error is left in u->local). */
static int upload_once(sbx_client *c, sbx__shard *sh, upload *u, sbx_upload_result *res,
                       sbx_rpc_result *rr)
{
    int64_t dl = c->deadline_ms > 0 ? c->deadline_ms * 10 : 0;
    u->st = NULL;
    u->done = 0;
    u->files_done = 0;
    int code = sbx_call_client_stream(sh->ch, M("UploadFiles"), dl, &u->st, rr);
    if (code != SBX_CODE_OK)
        return code;
    Sbx__V1__UploadHeader h = SBX__V1__UPLOAD_HEADER__INIT;
    h.project_id = (char *)sbx__nz(u->project_id);
    h.dest_dir = (char *)sbx__nz(u->dest);
    h.replace = u->replace;
    Sbx__V1__UploadFilesRequest m = SBX__V1__UPLOAD_FILES_REQUEST__INIT;
    m.part_case = SBX__V1__UPLOAD_FILES_REQUEST__PART_HEADER;
    m.header = &h;
    bool ok = sbx_cstream_write(u->st, &m.base) == 0;
    for (size_t i = 0; ok && i < u->s.n; i++)
        ok = send_item(u, &u->s.items[i]);
    if (u->local) {
        sbx_cstream_cancel(u->st);
        sbx_cstream_finish(u->st, NULL);
        return SBX_CODE_CANCELLED;
    }
    ProtobufCMessage *resp = NULL;
    code =
        sbx_cstream_close_and_recv(u->st, &sbx__v1__upload_files_response__descriptor, &resp, rr);
    if (code == SBX_CODE_OK) {
        Sbx__V1__UploadFilesResponse *r = (void *)resp;
        res->files_written = r->files_written;
        res->bytes_written = r->bytes_written;
        res->dest_dir = sbx__strdup(r->dest_dir);
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    return code;
}

sbx_error *sbx_upload_dir(sbx_client *c, const char *project_id, const char *local_dir,
                          const char *dest_dir, bool replace, sbx_progress_fn progress, void *ud,
                          sbx_upload_result *res)
{
    memset(res, 0, sizeof *res);
    struct stat st;
    if (stat(local_dir, &st) != 0)
        return sbx__error_errno(errno, local_dir);
    if (!S_ISDIR(st.st_mode))
        return sbx_error_new(SBX_CODE_INVALID_ARGUMENT, "%s: not a directory", local_dir);
    upload u = {.project_id = project_id,
                .root = local_dir,
                .dest = dest_dir,
                .replace = replace,
                .progress = progress,
                .ud = ud};
    sbx_error *e = scan_dir(&u.s, local_dir, "", 0);
    if (!e && u.s.n > 1) /* parents sort before their children */
        qsort(u.s.items, u.s.n, sizeof *u.s.items, cmp_item);
    if (!e && !(u.buf = malloc(UPLOAD_CHUNK)))
        e = sbx__error_oom();
    sbx__shard *sh =
        &c->shards[SBX_SERVICE_EXECUTOR][sbx__shard_for(c, SBX_SERVICE_EXECUTOR, project_id)];
    for (int attempt = 1; !e; attempt++) {
        sbx_rpc_result rr = {0};
        int code = upload_once(c, sh, &u, res, &rr);
        if (u.local || code == SBX_CODE_OK) {
            sbx_rpc_result_clear(&rr);
            e = u.local ? u.local : res->dest_dir ? NULL : sbx__error_oom();
            break;
        }
        if (!sbx__stream_retry(c, &rr, code, sh->addr, replace, attempt, 0, &e))
            break;
    }
    free(u.buf);
    scan_free(&u.s);
    return e;
}
