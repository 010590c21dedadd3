/* test_files_resolve.c: path resolution inside a sandbox root (services/executor/files/
 * resolve.c) on a temp directory used as the root (tests/lib files_fixture): path checks name
 * the field and the limit, relative paths join the home, openat2 clamps "..", absolute paths and
 * symlinks to the root, the last component splits off, final symlinks are followed inside the
 * root (relative, absolute, dangling, loops), kernel pseudo filesystems are refused, and
 * mkdir -p reports the top-most directory it made. Escape attempts through the whole API are
 * tests/security/test_files_escape.c. */
#include "files_fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "files_int.h"
#include "status.h"

static char err[512];

static void path_checks_name_field_and_limit(void **state)
{
    (void)state;
    assert_int_equal(sbx_files_check_path("path", "", 0, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "path"));
    assert_int_equal(sbx_files_check_path("path", "a\0b", 3, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "NUL"));
    static char longp[5001];
    memset(longp, 'a', 5000);
    for (int i = 100; i < 5000; i += 100)
        longp[i] = '/';
    assert_int_equal(sbx_files_check_path("dst", longp, 5000, err, sizeof err), -ENAMETOOLONG);
    assert_non_null(strstr(err, "dst"));
    assert_non_null(strstr(err, "4096"));
    char comp[300];
    memset(comp, 'b', 256);
    comp[256] = '\0';
    assert_int_equal(sbx_files_check_path("path", comp, 256, err, sizeof err), -ENAMETOOLONG);
    assert_non_null(strstr(err, "255"));
    assert_int_equal(sbx_files_check_path("path", comp, 255, err, sizeof err), 0);
    assert_int_equal(sbx_files_status(-E2BIG), SBX_RESOURCE_EXHAUSTED);
    assert_int_equal(sbx_files_status(-EROFS), SBX_PERMISSION_DENIED);
    assert_int_equal(sbx_files_status(-EFBIG), SBX_RESOURCE_EXHAUSTED);
    assert_int_equal(sbx_files_status(-EBUSY), SBX_FAILED_PRECONDITION);
    assert_int_equal(sbx_files_status(-ELOOP), SBX_FAILED_PRECONDITION); /* issue 9 */
    assert_int_equal(sbx_files_status(-EXDEV), SBX_INVALID_ARGUMENT);
    assert_int_equal(sbx_files_status(-ENOENT), SBX_NOT_FOUND);
}

static void relative_paths_join_the_home(void **state)
{
    files_fx *f = *state;
    char buf[SBX__PATHBUF];
    assert_int_equal(sbx__files_full_path(f->fs, "path", "a/b", buf, err, sizeof err), 0);
    assert_string_equal(buf, "/home/user/a/b");
    assert_int_equal(sbx__files_full_path(f->fs, "path", "/etc/x", buf, err, sizeof err), 0);
    assert_string_equal(buf, "/etc/x");
    /* no lexical folding: ".." is left to the kernel, which stops at the root */
    assert_int_equal(sbx__files_full_path(f->fs, "path", "../x", buf, err, sizeof err), 0);
    assert_string_equal(buf, "/home/user/../x");
    assert_int_equal(sbx__files_full_path(f->fs, "dest", "", buf, err, sizeof err), -EINVAL);
    assert_string_equal(err, "dest: must not be empty");
    /* a configured home loses its trailing slashes; it must be absolute */
    sbx_files_config cfg;
    sbx_files_config_init(&cfg);
    cfg.home = "/work//";
    sbx_files *w;
    assert_int_equal(sbx_files_new(f->rootfd, &cfg, &w), 0);
    assert_int_equal(sbx__files_full_path(w, "path", "x", buf, err, sizeof err), 0);
    assert_string_equal(buf, "/work/x");
    sbx_files_free(w);
    cfg.home = "work";
    assert_int_equal(sbx_files_new(f->rootfd, &cfg, &w), -EINVAL);
}

/* Reads what fd names (a small file) into b. */
static const char *read_fd(int fd, char *b, size_t cap)
{
    ssize_t n = pread(fd, b, cap - 1, 0);
    b[n < 0 ? 0 : n] = '\0';
    close(fd);
    return b;
}

static void open_in_root_clamps_to_the_root(void **state)
{
    files_fx *f = *state;
    assert_int_equal(symlink("/", fx_path(f, "home/user/slash")), 0);
    assert_int_equal(symlink("../../../..", fx_path(f, "home/user/up")), 0);
    const char *paths[] = {"/../../etc/passwd", "/home/user/slash/etc/passwd",
                           "/home/user/up/etc/passwd", "/home/../../../etc/passwd",
                           "home/user/slash/etc/passwd"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        char b[64];
        int fd = sbx__files_open_in_root(f->fs, paths[i], O_RDONLY);
        assert_true(fd >= 0);
        assert_string_equal(read_fd(fd, b, sizeof b), "sandbox-passwd\n");
    }
    /* /usr exists on the host, not in this root */
    assert_int_equal(sbx__files_open_in_root(f->fs, "/usr", O_PATH), -ENOENT);
    assert_int_equal(sbx__files_open_in_root(f->fs, "/home/user/slash/usr", O_PATH), -ENOENT);
}

static void split_last_names_the_last_component(void **state)
{
    (void)state;
    char p[64];
    const char *parent, *name;
    snprintf(p, sizeof p, "/home/user/f.txt");
    assert_int_equal(sbx__files_split_last(p, &parent, &name), 0);
    assert_string_equal(parent, "/home/user");
    assert_string_equal(name, "f.txt");
    snprintf(p, sizeof p, "/top//");
    assert_int_equal(sbx__files_split_last(p, &parent, &name), 0);
    assert_string_equal(parent, "/");
    assert_string_equal(name, "top");
    const char *none[] = {"/", "/a/..", "/a/.", "/a/./"};
    for (size_t i = 0; i < sizeof none / sizeof *none; i++) {
        snprintf(p, sizeof p, "%s", none[i]);
        assert_int_equal(sbx__files_split_last(p, &parent, &name), -EINVAL);
    }
}

/* sbx__files_resolve_target on `path` (as root, no credential switch needed here). */
static int target(files_fx *f, const char *path, bool parents, const char **name, bool *exists)
{
    static char full[SBX__PATHBUF];
    snprintf(full, sizeof full, "%s", path);
    struct stat st;
    int dfd = -1;
    int rc =
        sbx__files_resolve_target(f->fs, full, parents, &dfd, name, &st, exists, err, sizeof err);
    if (rc == 0) {
        assert_true(dfd >= 0);
        close(dfd);
    }
    return rc;
}

static void final_symlinks_are_followed_inside_the_root(void **state)
{
    files_fx *f = *state;
    const char *name;
    bool exists;
    fx_put(f, "home/user/real.txt", "r", 0644, FX_HOST_UID);
    assert_int_equal(symlink("real.txt", fx_path(f, "home/user/rel")), 0);
    assert_int_equal(symlink("/home/user/real.txt", fx_path(f, "home/user/abs")), 0);
    assert_int_equal(symlink("../../../../etc/passwd", fx_path(f, "home/user/up")), 0);
    assert_int_equal(symlink("sub/new.txt", fx_path(f, "home/user/dangling")), 0);
    assert_int_equal(symlink("loop2", fx_path(f, "home/user/loop1")), 0);
    assert_int_equal(symlink("loop1", fx_path(f, "home/user/loop2")), 0);

    assert_int_equal(target(f, "/home/user/rel", false, &name, &exists), 0);
    assert_true(exists);
    assert_string_equal(name, "real.txt");
    assert_int_equal(target(f, "/home/user/abs", false, &name, &exists), 0);
    assert_string_equal(name, "real.txt");
    assert_int_equal(target(f, "/home/user/up", false, &name, &exists), 0);
    assert_true(exists);
    assert_string_equal(name, "passwd"); /* the sandbox's /etc/passwd, not the host's */
    /* a dangling link names a file to create; its directory only with parents */
    assert_int_equal(target(f, "/home/user/dangling", false, &name, &exists), -ENOENT);
    assert_int_equal(target(f, "/home/user/dangling", true, &name, &exists), 0);
    assert_false(exists);
    assert_string_equal(name, "new.txt");
    struct stat st;
    assert_int_equal(stat(fx_path(f, "home/user/sub"), &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(target(f, "/home/user/loop1", false, &name, &exists), -ELOOP);
    assert_non_null(strstr(err, "symlink"));
    assert_int_equal(target(f, "/home/user/..", false, &name, &exists), -EINVAL);
}

static void pseudo_filesystems_are_refused(void **state)
{
    files_fx *f = *state;
    int fd = open("/proc/self", O_PATH | O_DIRECTORY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(sbx__files_check_fs(fd), -EPERM);
    close(fd);
    assert_int_equal(sbx__files_check_fs(f->rootfd), 0);
    fd = sbx__files_open_parent(f->fs, "/etc", false);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(sbx__files_open_parent(f->fs, "/nope", false), -ENOENT);
}

static void mkdir_p_reports_the_top_directory_it_made(void **state)
{
    files_fx *f = *state;
    int fd;
    char *created;
    assert_int_equal(sbx__files_mkdir_p(f->fs, "/home/user/a/b/c", 0755, &fd, &created), 0);
    close(fd);
    assert_string_equal(created, "/home/user/a");
    free(created);
    assert_int_equal(sbx__files_mkdir_p(f->fs, "/home/user/a/b/c", 0755, &fd, &created), 0);
    close(fd);
    assert_null(created);
    /* "." and ".." components are walked, not created, and stay inside the root */
    assert_int_equal(sbx__files_mkdir_p(f->fs, "/../home/user/a/./b/../d", 0700, &fd, &created), 0);
    close(fd);
    assert_non_null(created);
    free(created);
    struct stat st;
    assert_int_equal(stat(fx_path(f, "home/user/a/d"), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    fx_put(f, "home/user/file", "x", 0644, FX_HOST_UID);
    assert_int_equal(sbx__files_mkdir_p(f->fs, "/home/user/file/x", 0755, &fd, &created), -ENOTDIR);
    assert_null(created);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(path_checks_name_field_and_limit),
    cmocka_unit_test_setup_teardown(relative_paths_join_the_home, fx_setup, fx_teardown),
    cmocka_unit_test_setup_teardown(open_in_root_clamps_to_the_root, fx_setup, fx_teardown),
    cmocka_unit_test(split_last_names_the_last_component),
    cmocka_unit_test_setup_teardown(final_symlinks_are_followed_inside_the_root, fx_setup,
                                    fx_teardown),
    cmocka_unit_test_setup_teardown(pseudo_filesystems_are_refused, fx_setup, fx_teardown),
    cmocka_unit_test_setup_teardown(mkdir_p_reports_the_top_directory_it_made, fx_setup,
                                    fx_teardown),
};

SBX_TEST_MAIN(tests)
