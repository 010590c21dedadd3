/* files_fixture.c: see files_fixture.h. */
#include "files_fixture.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *fx_path(files_fx *f, const char *rel)
{
    snprintf(f->buf, sizeof f->buf, "%s/%s", f->root, rel);
    return f->buf;
}

void fx_put(files_fx *f, const char *rel, const char *content, mode_t mode, uid_t uid)
{
    int fd = open(fx_path(f, rel), O_CREAT | O_TRUNC | O_WRONLY, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(fchown(fd, uid, uid), 0);
    close(fd);
}

void fx_mkdir(files_fx *f, const char *rel, mode_t mode, uid_t uid)
{
    assert_int_equal(mkdir(fx_path(f, rel), mode), 0);
    assert_int_equal(chmod(f->buf, mode), 0);
    assert_int_equal(chown(f->buf, uid, uid), 0);
}

char *fx_slurp(const char *path)
{
    static char out[1 << 16];
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return NULL;
    ssize_t n = read(fd, out, sizeof out - 1);
    close(fd);
    out[n < 0 ? 0 : n] = '\0';
    return out;
}

int fx_files_new(int rootfd, sbx_files **out)
{
    sbx_files_config cfg;
    sbx_files_config_init(&cfg);
    cfg.host_uid = FX_HOST_UID;
    cfg.host_gid = FX_HOST_GID;
    return sbx_files_new(rootfd, &cfg, out);
}

int fx_setup(void **state)
{
    files_fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    const char *tmp = getenv("SBX_TEST_TMPDIR") ? getenv("SBX_TEST_TMPDIR") : "/tmp";
    snprintf(f->root, sizeof f->root, "%s/sbx-files-XXXXXX", tmp);
    assert_non_null(mkdtemp(f->root));
    assert_int_equal(chmod(f->root, 0755), 0);
    fx_mkdir(f, "home", 0755, 0);
    fx_mkdir(f, "home/user", 0755, FX_HOST_UID);
    fx_mkdir(f, "etc", 0755, 0);
    fx_mkdir(f, "tmp", 01777, 0);
    fx_put(f, "etc/passwd", "sandbox-passwd\n", 0644, 0);
    fx_put(f, "etc/shadow", "sandbox-shadow\n", 0640, 0);
    f->rootfd = open(f->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    assert_true(f->rootfd >= 0);
    assert_int_equal(fx_files_new(f->rootfd, &f->fs), 0);
    *state = f;
    return 0;
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

int fx_teardown(void **state)
{
    files_fx *f = *state;
    sbx_files_free(f->fs);
    close(f->rootfd);
    nftw(f->root, rm_cb, 32, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

int fx_write(sbx_files *fs, const char *path, const void *buf, size_t len,
             const sbx_files_write_opts *opts, char *err, size_t errlen)
{
    sbx_files_writer *w;
    int rc = sbx_files_write_begin(fs, path, opts, &w, err, errlen);
    if (rc < 0)
        return rc;
    rc = sbx_files_write_chunk(w, buf, len, err, errlen);
    if (rc < 0) {
        sbx_files_write_abort(w);
        return rc;
    }
    return sbx_files_write_commit(w, NULL, err, errlen);
}

int fx_read(sbx_files *fs, const char *path, char *out, size_t cap, char *err, size_t errlen)
{
    int fd;
    int rc = sbx_files_open_read(fs, path, &fd, NULL, err, errlen);
    if (rc < 0)
        return rc;
    ssize_t n = pread(fd, out, cap - 1, 0);
    close(fd);
    out[n < 0 ? 0 : n] = '\0';
    return 0;
}
