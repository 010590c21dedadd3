/* files_fixture.h: the file layer's test fixture. A temp directory (under $SBX_TEST_TMPDIR, else
 * /tmp) plays a sandbox root: /home (root) and /home/user (the sandbox user), /etc (root) with
 * its own passwd (0644) and shadow (0640) sentinels, /tmp (01777); an sbx_files handle over it
 * acts as the sandbox user, host uid/gid FX_HOST_UID (1000 inside). Needs root (chown).
 * Used as a cmocka setup/teardown pair: *state is the files_fx. */
#ifndef SBX_FILES_FIXTURE_H
#define SBX_FILES_FIXTURE_H

#include <stddef.h>
#include <sys/types.h>

#include "files.h"
#include "test_main.h"

#define FX_HOST_UID 100999 /* the sandbox user (1000 inside) on the host */
#define FX_HOST_GID 100999

typedef struct files_fx {
    char root[64]; /* the sandbox root on the host */
    int rootfd;
    sbx_files *fs; /* acting as the sandbox user */
    char buf[8192];
} files_fx;

int fx_setup(void **state);
int fx_teardown(void **state);
/* A handle over rootfd acting as the sandbox user: 0 or -errno. */
int fx_files_new(int rootfd, sbx_files **out);

/* root + "/" + rel, in f->buf (valid until the next call). */
const char *fx_path(files_fx *f, const char *rel);
/* Creates (or truncates) root/rel with content, mode and owner uid:uid; asserts. */
void fx_put(files_fx *f, const char *rel, const char *content, mode_t mode, uid_t uid);
/* mkdir root/rel with mode and owner uid:uid; asserts. */
void fx_mkdir(files_fx *f, const char *rel, mode_t mode, uid_t uid);
/* The first 64 KiB of a host file as a string (static buffer), or NULL. */
char *fx_slurp(const char *path);

/* Writes a whole file through the API the way WriteFile does: begin, one chunk, commit. */
int fx_write(sbx_files *fs, const char *path, const void *buf, size_t len,
             const sbx_files_write_opts *opts, char *err, size_t errlen);
/* Reads a whole (small) file through the API into out (NUL-terminated): 0 or -errno. */
int fx_read(sbx_files *fs, const char *path, char *out, size_t cap, char *err, size_t errlen);

#endif
