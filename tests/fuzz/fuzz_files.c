/* fuzz_files.c: client-supplied paths in the executor's file layer (services/executor/files.c).
 * sbx_files_check_path must agree exactly with the documented limits (non-empty, no NUL, at
 * most 4096 bytes, components at most 255). Paths it accepts are then used for real against a
 * scratch sandbox root (a temp dir with symlinks pointing out of it: "up" -> "../outside",
 * "abs" -> "/", "loop" -> "loop"): stat, read, list, mkdir, write, move and remove must keep
 * every effect inside the root. A sibling "outside" directory is the canary: after each input
 * it must still hold exactly its one file with its original content, and the scratch parent
 * nothing but root/ and outside/.
 *
 * Input: byte 0 selects the operations; the rest is the path, and when it holds a 0xff byte,
 * the part after it is a second path (the move destination). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "files.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_files: %s:%d: check failed: %s\n", __FILE__, __LINE__, #c);      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define CANARY "canary: must never change\n"

static char scratch[256], rootdir[300], outside[300];
static sbx_files *fs;
static int rootfd = -1;

static int rm_one(const char *p, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (type == FTW_DP || type == FTW_D)
        rmdir(p);
    else
        unlink(p);
    return 0;
}

static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    CHECK(fd >= 0);
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
}

/* Fresh sandbox root: home, a file, escape symlinks. */
static void reset_root(void)
{
    nftw(rootdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    CHECK(mkdir(rootdir, 0755) == 0);
    char p[512];
    snprintf(p, sizeof p, "%s/home", rootdir);
    CHECK(mkdir(p, 0755) == 0);
    snprintf(p, sizeof p, "%s/home/user", rootdir);
    CHECK(mkdir(p, 0755) == 0);
    snprintf(p, sizeof p, "%s/home/user/a.txt", rootdir);
    write_file(p, "hello\n");
    snprintf(p, sizeof p, "%s/home/user/up", rootdir);
    CHECK(symlink("../../../outside", p) == 0);
    snprintf(p, sizeof p, "%s/abs", rootdir);
    CHECK(symlink("/", p) == 0);
    snprintf(p, sizeof p, "%s/home/user/loop", rootdir);
    CHECK(symlink("loop", p) == 0);
    snprintf(p, sizeof p, "%s/home/user/out", rootdir);
    CHECK(symlink(outside, p) == 0);
    if (rootfd >= 0)
        close(rootfd);
    rootfd = open(rootdir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    CHECK(rootfd >= 0);
    sbx_files_free(fs);
    fs = NULL;
    sbx_files_config cfg;
    sbx_files_config_init(&cfg);
    cfg.max_file_size = 1 << 20;
    CHECK(sbx_files_new(rootfd, &cfg, &fs) == 0);
}

static void cleanup(void)
{
    sbx_files_free(fs);
    if (rootfd >= 0)
        close(rootfd);
    nftw(scratch, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
    if (fs)
        return;
    const char *tmp = getenv("TMPDIR");
    snprintf(scratch, sizeof scratch, "%s/sbx-fuzz-files.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECK(mkdtemp(scratch));
    snprintf(rootdir, sizeof rootdir, "%s/root", scratch);
    snprintf(outside, sizeof outside, "%s/outside", scratch);
    CHECK(mkdir(outside, 0755) == 0);
    char p[512];
    snprintf(p, sizeof p, "%s/secret", outside);
    write_file(p, CANARY);
    reset_root();
    atexit(cleanup);
}

static void check_canary(void)
{
    DIR *d = opendir(scratch);
    CHECK(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (strcmp(e->d_name, "root") && strcmp(e->d_name, "outside")) {
            fprintf(stderr, "fuzz_files: escaped the root: created %s/%s\n", scratch, e->d_name);
            abort();
        }
    }
    closedir(d);
    d = opendir(outside);
    CHECK(d);
    int n = 0;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (strcmp(e->d_name, "secret")) {
            fprintf(stderr, "fuzz_files: escaped the root: created %s/%s\n", outside, e->d_name);
            abort();
        }
        n++;
    }
    closedir(d);
    if (n != 1) {
        fprintf(stderr, "fuzz_files: escaped the root: %s/secret removed\n", outside);
        abort();
    }
    char p[512], buf[128];
    snprintf(p, sizeof p, "%s/secret", outside);
    int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    CHECK(fd >= 0);
    ssize_t r = read(fd, buf, sizeof buf);
    close(fd);
    if (r != (ssize_t)strlen(CANARY) || memcmp(buf, CANARY, (size_t)r) != 0) {
        fprintf(stderr, "fuzz_files: escaped the root: %s/secret changed\n", outside);
        abort();
    }
}

/* The documented rule, written independently. */
static int ref_check(const uint8_t *p, size_t n)
{
    if (n == 0 || memchr(p, 0, n))
        return -EINVAL;
    if (n > SBX_FILES_PATH_MAX)
        return -ENAMETOOLONG;
    size_t comp = 0;
    for (size_t i = 0; i < n; i++) {
        comp = p[i] == '/' ? 0 : comp + 1;
        if (comp > SBX_FILES_NAME_MAX)
            return -ENAMETOOLONG;
    }
    return 0;
}

static void use_path(uint8_t ops, const char *path, const char *path2)
{
    char err[256];
    sbx_file_info info;
    memset(&info, 0, sizeof info);
    if (sbx_files_stat(fs, path, &info, err, sizeof err) == 0)
        CHECK(info.type >= SBX_FILE_REGULAR && info.type <= SBX_FILE_OTHER);
    sbx_file_info_clear(&info);

    int fd = -1;
    if (sbx_files_open_read(fs, path, &fd, &info, err, sizeof err) == 0) {
        CHECK(fd >= 0);
        char buf[64];
        if (pread(fd, buf, sizeof buf, 0) < 0)
            CHECK(!"pread of an opened file failed");
        close(fd);
    } else {
        CHECK(fd == -1);
    }
    sbx_file_info_clear(&info);

    if (ops & 1) {
        sbx_files_entry *ents = NULL;
        size_t n = 0;
        bool trunc = false;
        if (sbx_files_list(fs, path, 1 + (ops >> 6), 64, &ents, &n, &trunc, err, sizeof err) == 0)
            CHECK(n <= 64);
        sbx_files_list_free(ents, n);
    }
    if (ops & 2) {
        bool created;
        sbx_files_mkdir(fs, path, 0, (ops & 0x20) != 0, &created, err, sizeof err);
    }
    if (ops & 4) {
        sbx_files_write_opts wo = {.append = (ops & 0x20) != 0, .no_parents = (ops & 0x40) != 0};
        sbx_files_writer *w;
        if (sbx_files_write_begin(fs, path, &wo, &w, err, sizeof err) == 0) {
            if (sbx_files_write_chunk(w, "pwned\n", 6, err, sizeof err) == 0)
                sbx_files_write_commit(w, NULL, err, sizeof err);
            else
                sbx_files_write_abort(w);
        }
    }
    if ((ops & 8) && path2)
        sbx_files_move(fs, path, path2, (ops & 0x20) != 0, err, sizeof err);
    if (ops & 0x10) {
        bool existed;
        sbx_files_remove(fs, path, (ops & 0x20) != 0, &existed, err, sizeof err);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 2 * SBX_FILES_PATH_MAX + 16)
        return 0;
    setup();
    uint8_t ops = data[0];
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    const uint8_t *sep = memchr(p, 0xff, n);
    size_t n1 = sep ? (size_t)(sep - p) : n;

    char err[64];
    /* exact-size copy: the check must not read past len */
    char *raw = malloc(n ? n : 1);
    CHECK(raw);
    memcpy(raw, p, n);
    int rc = sbx_files_check_path("path", raw, n, err, sizeof err);
    CHECK(rc == ref_check(p, n));
    if (rc < 0)
        CHECK(err[0] && memchr(err, 0, sizeof err));
    free(raw);

    char *path = strndup((const char *)p, n1);
    char *path2 = sep ? strndup((const char *)sep + 1, n - n1 - 1) : NULL;
    CHECK(path && (!sep || path2));
    if (ref_check((const uint8_t *)path, strlen(path)) == 0 ||
        (ops & 0x80)) /* invalid ones too: every operation must reject them itself */
        use_path(ops, path, path2);
    free(path);
    free(path2);
    check_canary();
    if (ops & 0x1e)
        reset_root(); /* keep inputs independent */
    return 0;
}
