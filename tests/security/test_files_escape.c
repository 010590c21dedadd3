/* test_files_escape.c: escape attempts against the sandbox file layer (services/executor/files/,
 * resolve.c first). A temp directory is the sandbox root (tests/lib files_fixture, with its own
 * /etc/passwd and /etc/shadow sentinels, plus a /proc mount point and a user-owned /usr); the
 * sandbox user is host uid 100999. Each case asserts the exact errno or the exact file that was
 * reached. Cases that need mounts (procfs for magic links, a read-only bind) run in a forked
 * child with a private mount namespace and report back through the exit status. */
#include "files_fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "status.h"
#include "upload.h"

static char err[512];

/* Reads a whole (small) file through the API; returns 0 or -errno. */
static int api_read(sbx_files *fs, const char *path, char *out, size_t cap)
{
    return fx_read(fs, path, out, cap, err, sizeof err);
}

/* The fixture's root plus a /proc mount point and a user-owned /usr (so a read-only bind is
 * the only obstacle there). */
static int setup(void **state)
{
    fx_setup(state);
    files_fx *f = *state;
    fx_mkdir(f, "proc", 0555, 0);
    fx_mkdir(f, "usr", 0755, FX_HOST_UID);
    fx_put(f, "usr/tool", "tool", 0755, FX_HOST_UID);
    return 0;
}

static void dotdot_stays_in_root(void **state)
{
    files_fx *f = *state;
    char b[256];
    assert_int_equal(api_read(f->fs, "../../etc/passwd", b, sizeof b), 0);
    assert_string_equal(b, "sandbox-passwd\n");
    assert_int_equal(api_read(f->fs, "../../../../../../../../etc/passwd", b, sizeof b), 0);
    assert_string_equal(b, "sandbox-passwd\n");
    assert_int_equal(api_read(f->fs, "/../../etc/../../etc/passwd", b, sizeof b), 0);
    assert_string_equal(b, "sandbox-passwd\n");
    /* a host file that does not exist inside the root */
    assert_int_equal(access("/etc/hostname", F_OK) == 0 || access("/etc/os-release", F_OK) == 0, 1);
    assert_int_equal(api_read(f->fs, "../../../etc/os-release", b, sizeof b), -ENOENT);
    assert_int_equal(api_read(f->fs, "/etc/hostname", b, sizeof b), -ENOENT);
    /* writing with .. lands inside the root */
    assert_int_equal(fx_write(f->fs, "../../../../tmp/dropped", "x", 1, NULL, err, sizeof err), 0);
    assert_string_equal(fx_slurp(fx_path(f, "tmp/dropped")), "x");
    assert_int_equal(access("/tmp/dropped", F_OK), -1);
}

static void absolute_etc_shadow_is_the_sandbox_one_and_unreadable(void **state)
{
    files_fx *f = *state;
    char b[256];
    /* the sandbox's own /etc/shadow (root 0640): refused to the sandbox user, as to a command */
    assert_int_equal(api_read(f->fs, "/etc/shadow", b, sizeof b), -EACCES);
    assert_int_equal(sbx_files_status(-EACCES), SBX_PERMISSION_DENIED);
    /* acting as root (no credential switch) it resolves to the sandbox's file, not the host's */
    sbx_files_config cfg;
    sbx_files_config_init(&cfg);
    sbx_files *asroot;
    assert_int_equal(sbx_files_new(f->rootfd, &cfg, &asroot), 0);
    assert_int_equal(api_read(asroot, "/etc/shadow", b, sizeof b), 0);
    assert_string_equal(b, "sandbox-shadow\n");
    assert_int_equal(api_read(asroot, "../../../etc/shadow", b, sizeof b), 0);
    assert_string_equal(b, "sandbox-shadow\n");
    sbx_files_free(asroot);
    /* nor can the sandbox user overwrite it or create next to it */
    assert_int_equal(fx_write(f->fs, "/etc/shadow", "pwn", 3, NULL, err, sizeof err), -EACCES);
    assert_string_equal(fx_slurp(fx_path(f, "etc/shadow")), "sandbox-shadow\n");
}

static void symlinks_to_slash_and_dotdot_stay_in_root(void **state)
{
    files_fx *f = *state;
    char b[256];
    assert_int_equal(symlink("/", fx_path(f, "home/user/esc")), 0);
    assert_int_equal(symlink("../../..", fx_path(f, "home/user/up")), 0);
    assert_int_equal(symlink("/etc/passwd", fx_path(f, "home/user/pw")), 0);
    assert_int_equal(symlink("../../../../../../../../../../etc", fx_path(f, "home/user/etcl")), 0);
    assert_int_equal(api_read(f->fs, "esc/etc/passwd", b, sizeof b), 0);
    assert_string_equal(b, "sandbox-passwd\n");
    assert_int_equal(api_read(f->fs, "up/etc/passwd", b, sizeof b), 0);
    assert_string_equal(b, "sandbox-passwd\n");
    assert_int_equal(api_read(f->fs, "pw", b, sizeof b), 0);
    assert_string_equal(b, "sandbox-passwd\n");
    assert_int_equal(api_read(f->fs, "etcl/passwd", b, sizeof b), 0);
    assert_string_equal(b, "sandbox-passwd\n");
    /* writes through such links land inside the root */
    assert_int_equal(fx_write(f->fs, "esc/tmp/via-link", "v", 1, NULL, err, sizeof err), 0);
    assert_string_equal(fx_slurp(fx_path(f, "tmp/via-link")), "v");
    assert_int_equal(access("/tmp/via-link", F_OK), -1);
    /* a final symlink to an absolute path is followed inside the root too */
    assert_int_equal(symlink("/tmp/final-target", fx_path(f, "home/user/fl")), 0);
    assert_int_equal(fx_write(f->fs, "fl", "w", 1, NULL, err, sizeof err), 0);
    assert_string_equal(fx_slurp(fx_path(f, "tmp/final-target")), "w");
    assert_int_equal(access("/tmp/final-target", F_OK), -1);
    /* list does not descend through them; remove removes only the link */
    sbx_files_entry *e;
    size_t n;
    bool trunc;
    assert_int_equal(sbx_files_list(f->fs, ".", 32, 0, &e, &n, &trunc, err, sizeof err), 0);
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(e[i].info.type, SBX_FILE_SYMLINK);
    sbx_files_list_free(e, n);
    bool existed;
    assert_int_equal(sbx_files_remove(f->fs, "esc", true, &existed, err, sizeof err), 0);
    assert_true(existed);
    assert_string_equal(fx_slurp(fx_path(f, "etc/passwd")), "sandbox-passwd\n");
    /* stat reports the link, with its target as stored */
    sbx_file_info i;
    assert_int_equal(sbx_files_stat(f->fs, "up", &i, err, sizeof err), 0);
    assert_int_equal(i.type, SBX_FILE_SYMLINK);
    assert_string_equal(i.symlink_target, "../../..");
    sbx_file_info_clear(&i);
    /* move of a link moves the link */
    assert_int_equal(sbx_files_move(f->fs, "up", "up2", false, err, sizeof err), 0);
    assert_int_equal(access(fx_path(f, "etc/passwd"), F_OK), 0);
}

/* Runs fn in a child with a private mount namespace and fails the test when fn fails; skips
 * it, printing why, when the child cannot set up its mounts (fn returns 99). fn returns 0 for
 * pass, >0 for fail, with the reason in why. */
static void in_private_mounts(files_fx *f, int (*fn)(files_fx *f, char *why))
{
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        char why[256] = "";
        int rc;
        if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
            snprintf(why, sizeof why, "SKIP: private mount namespace: %s", strerror(errno));
            rc = 99;
        } else {
            rc = fn(f, why);
        }
        if (write(pfd[1], why, strlen(why)) < 0)
            rc = 98;
        _exit(rc);
    }
    close(pfd[1]);
    char why[256] = "";
    ssize_t n = read(pfd[0], why, sizeof why - 1);
    why[n < 0 ? 0 : n] = '\0';
    close(pfd[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 99) {
        printf("# %s\n", why);
        skip();
    }
    if (WEXITSTATUS(status) != 0)
        fail_msg("child: %s", why);
}

/* New mounts are seen only through a root fd opened in the child's own mount namespace. */
static int child_reopen(files_fx *f, char *why)
{
    int fd = open(f->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fx_files_new(fd, &f->fs) != 0) {
        snprintf(why, 256, "reopen root: %s", strerror(errno));
        return 1;
    }
    close(fd);
    return 0;
}

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            snprintf(why, 256, __VA_ARGS__);                                                       \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

static int magic_links_child(files_fx *f, char *why)
{
    if (mount("proc", fx_path(f, "proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) {
        snprintf(why, 256, "SKIP: mount proc: %s", strerror(errno));
        return 99;
    }
    if (child_reopen(f, why))
        return 1;
    if (symlink("/proc/self/root", fx_path(f, "home/user/m")) != 0 ||
        symlink("/proc/1/root", fx_path(f, "home/user/m1")) != 0)
        return 2;
    char b[256];
    int rc = api_read(f->fs, "m/etc/passwd", b, sizeof b);
    CHECK(rc == -ELOOP || rc == -EXDEV, "via /proc/self/root link: rc=%d", rc);
    rc = api_read(f->fs, "/proc/self/root/etc/passwd", b, sizeof b);
    CHECK(rc == -ELOOP || rc == -EXDEV, "/proc/self/root path: rc=%d", rc);
    rc = api_read(f->fs, "/proc/1/root/etc/passwd", b, sizeof b);
    CHECK(rc == -ELOOP || rc == -EXDEV || rc == -EACCES, "/proc/1/root path: rc=%d", rc);
    rc = api_read(f->fs, "m1/etc/passwd", b, sizeof b);
    CHECK(rc == -ELOOP || rc == -EXDEV || rc == -EACCES, "via /proc/1/root link: rc=%d", rc);
    rc = api_read(f->fs, "/proc/self/cwd/x", b, sizeof b);
    CHECK(rc == -ELOOP || rc == -EXDEV, "/proc/self/cwd: rc=%d", rc);
    rc = fx_write(f->fs, "m/tmp/x", "x", 1, NULL, err, sizeof err);
    CHECK(rc == -ELOOP || rc == -EXDEV, "write via magic link: rc=%d", rc);
    rc = sbx_files_list(f->fs, "/proc/self/root", 1, 0, &(sbx_files_entry *){NULL}, &(size_t){0},
                        NULL, err, sizeof err);
    CHECK(rc == -ELOOP || rc == -EXDEV, "list via magic link: rc=%d", rc);
    /* the sandbox's procfs is refused for content: the executor holds host privileges there */
    rc = api_read(f->fs, "/proc/version", b, sizeof b);
    CHECK(rc == -EPERM, "/proc/version: rc=%d", rc);
    rc = api_read(f->fs, "/proc/sys/kernel/hostname", b, sizeof b);
    CHECK(rc == -EPERM, "/proc/sys/kernel/hostname: rc=%d", rc);
    rc = fx_write(f->fs, "/proc/sys/kernel/core_pattern", "|/pwn", 5, NULL, err, sizeof err);
    CHECK(rc == -EPERM, "write core_pattern: rc=%d", rc);
    sbx_files_write_opts ap = {.append = true};
    rc = fx_write(f->fs, "/proc/sys/kernel/core_pattern", "|/pwn", 5, &ap, err, sizeof err);
    CHECK(rc == -EPERM, "append core_pattern: rc=%d", rc);
    rc = sbx_files_mkdir(f->fs, "/proc/x", 0, false, NULL, err, sizeof err);
    CHECK(rc == -EPERM, "mkdir in proc: rc=%d", rc);
    rc = sbx_files_remove(f->fs, "/proc/self/comm", false, NULL, err, sizeof err);
    CHECK(rc == -EPERM, "remove in proc: rc=%d", rc);
    /* the proc magic link stats as a symlink, without leaking the host path behind it */
    sbx_file_info i;
    rc = sbx_files_stat(f->fs, "/proc/self/cwd", &i, err, sizeof err);
    CHECK(rc == 0 && i.type == SBX_FILE_SYMLINK && !i.symlink_target, "stat magic: rc=%d", rc);
    return 0;
}

static void magic_links_are_blocked(void **state)
{
    in_private_mounts(*state, magic_links_child);
}

static int ro_bind_child(files_fx *f, char *why)
{
    const char *usr = fx_path(f, "usr");
    if (mount(usr, usr, NULL, MS_BIND, NULL) != 0 ||
        mount(NULL, usr, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) != 0) {
        snprintf(why, 256, "SKIP: read-only bind mount: %s", strerror(errno));
        return 99;
    }
    if (child_reopen(f, why))
        return 1;
    int rc = fx_write(f->fs, "/usr/evil", "x", 1, NULL, err, sizeof err);
    CHECK(rc == -EROFS, "write new: rc=%d", rc);
    CHECK(sbx_files_status(rc) == SBX_PERMISSION_DENIED, "status");
    rc = fx_write(f->fs, "/usr/tool", "x", 1, NULL, err, sizeof err);
    CHECK(rc == -EROFS, "overwrite: rc=%d", rc);
    sbx_files_write_opts ap = {.append = true};
    rc = fx_write(f->fs, "/usr/tool", "x", 1, &ap, err, sizeof err);
    CHECK(rc == -EROFS, "append: rc=%d", rc);
    rc = fx_write(f->fs, "/usr/a/b/c", "x", 1, NULL, err, sizeof err);
    CHECK(rc == -EROFS, "write with parents: rc=%d", rc);
    rc = sbx_files_mkdir(f->fs, "/usr/d", 0, true, NULL, err, sizeof err);
    CHECK(rc == -EROFS, "mkdir: rc=%d", rc);
    rc = sbx_files_remove(f->fs, "/usr/tool", false, NULL, err, sizeof err);
    CHECK(rc == -EROFS, "remove: rc=%d", rc);
    rc = sbx_files_remove(f->fs, "/usr", true, NULL, err, sizeof err);
    CHECK(rc == -EBUSY || rc == -EROFS, "remove -r of the mount: rc=%d", rc);
    if (fx_write(f->fs, "f", "x", 1, NULL, err, sizeof err) != 0)
        return 3;
    rc = sbx_files_move(f->fs, "f", "/usr/f", false, err, sizeof err);
    CHECK(rc == -EXDEV, "move into: rc=%d", rc);
    rc = sbx_files_move(f->fs, "/usr/tool", "/usr/tool2", false, err, sizeof err);
    CHECK(rc == -EROFS, "move within: rc=%d", rc);
    sbx_upload_entry e = {.path = "x", .type = SBX_UPLOAD_FILE, .data = "x", .len = 1};
    sbx_upload_opts o = {.dest = "/usr"};
    rc = sbx_files_upload(f->fs, &o, &e, 1, NULL, err, sizeof err);
    CHECK(rc == -EROFS, "upload: rc=%d", rc);
    char b[16];
    rc = api_read(f->fs, "/usr/tool", b, sizeof b);
    CHECK(rc == 0 && strcmp(b, "tool") == 0, "read still works: rc=%d", rc);
    CHECK(strcmp(fx_slurp(fx_path(f, "usr/tool")), "tool") == 0, "content changed");
    return 0;
}

static void read_only_bind_is_refused_cleanly(void **state)
{
    in_private_mounts(*state, ro_bind_child);
}

static void hardlinks_cannot_reach_outside(void **state)
{
    files_fx *f = *state;
    /* a host file on the same filesystem (next to the root), hard-linked into the sandbox by
       someone */
    char outside[128];
    snprintf(outside, sizeof outside, "%s-outside-XXXXXX", f->root);
    int ofd = mkstemp(outside);
    assert_true(ofd >= 0);
    assert_int_equal(write(ofd, "host-secret", 11), 11);
    fchmod(ofd, 0644);
    close(ofd);
    assert_int_equal(link(outside, fx_path(f, "home/user/hl")), 0);
    /* writing through the API replaces the name: the host inode is never written */
    assert_int_equal(fx_write(f->fs, "hl", "changed", 7, NULL, err, sizeof err), 0);
    assert_string_equal(fx_slurp(outside), "host-secret");
    assert_string_equal(fx_slurp(fx_path(f, "home/user/hl")), "changed");
    struct stat a, b;
    assert_int_equal(stat(outside, &a), 0);
    assert_int_equal(stat(fx_path(f, "home/user/hl"), &b), 0);
    assert_true(a.st_ino != b.st_ino);
    assert_int_equal(a.st_nlink, 1);
    /* append copies too */
    assert_int_equal(link(outside, fx_path(f, "home/user/hl2")), 0);
    sbx_files_write_opts ap = {.append = true};
    assert_int_equal(fx_write(f->fs, "hl2", "+", 1, &ap, err, sizeof err), 0);
    assert_string_equal(fx_slurp(outside), "host-secret");
    /* removing the link leaves the host file */
    assert_int_equal(sbx_files_remove(f->fs, "hl2", false, NULL, err, sizeof err), 0);
    assert_int_equal(access(outside, F_OK), 0);
    /* a hard link to a root-only file keeps the inode's permissions */
    fx_put(f, "etc/secret", "root-only", 0600, 0);
    char secret[8192];
    snprintf(secret, sizeof secret, "%s", fx_path(f, "etc/secret"));
    assert_int_equal(link(secret, fx_path(f, "home/user/hs")), 0);
    char buf[64];
    assert_int_equal(api_read(f->fs, "hs", buf, sizeof buf), -EACCES);
    /* the API has no way to create hard links: uploads refuse anything but file/dir/symlink */
    sbx_upload_entry e = {.path = "x", .type = (sbx_upload_type)4, .target = "/etc/shadow"};
    assert_int_equal(sbx_files_upload(f->fs, NULL, &e, 1, NULL, err, sizeof err), -EINVAL);
    unlink(outside);
}

static void nul_and_oversized_paths_are_invalid(void **state)
{
    files_fx *f = *state;
    assert_int_equal(sbx_files_check_path("path", "etc\0/shadow", 11, err, sizeof err), -EINVAL);
    assert_string_equal(err, "path: contains a NUL byte");
    assert_int_equal(sbx_files_status(-EINVAL), SBX_INVALID_ARGUMENT);
    sbx_upload_entry e = {.path = "ok\0/../../x", .path_len = 11, .type = SBX_UPLOAD_FILE};
    assert_int_equal(sbx_files_upload(f->fs, NULL, &e, 1, NULL, err, sizeof err), -EINVAL);
    assert_string_equal(err, "entries[0].path: contains a NUL byte");

    static char p[5001];
    memset(p, 'a', 5000);
    for (int i = 200; i < 5000; i += 200)
        p[i] = '/';
    int fd;
    sbx_file_info info;
    assert_int_equal(sbx_files_open_read(f->fs, p, &fd, NULL, err, sizeof err), -ENAMETOOLONG);
    assert_string_equal(err, "path: longer than 4096 bytes");
    assert_int_equal(fx_write(f->fs, p, "x", 1, NULL, err, sizeof err), -ENAMETOOLONG);
    assert_int_equal(sbx_files_stat(f->fs, p, &info, err, sizeof err), -ENAMETOOLONG);
    assert_int_equal(sbx_files_mkdir(f->fs, p, 0, true, NULL, err, sizeof err), -ENAMETOOLONG);
    assert_int_equal(sbx_files_remove(f->fs, p, true, NULL, err, sizeof err), -ENAMETOOLONG);
    assert_int_equal(sbx_files_move(f->fs, "x", p, false, err, sizeof err), -ENAMETOOLONG);
    assert_string_equal(err, "dst: longer than 4096 bytes");
    assert_int_equal(sbx_files_status(-ENAMETOOLONG), SBX_INVALID_ARGUMENT);
    /* 4096 bytes of "../": at the limit, still resolves inside the root */
    static char dots[4097];
    size_t o = 0;
    while (o + 3 <= 4096 - 11) {
        memcpy(dots + o, "../", 3);
        o += 3;
    }
    memcpy(dots + o, "etc/passwd", 11);
    char b[64];
    assert_int_equal(api_read(f->fs, dots, b, sizeof b), -ENAMETOOLONG); /* + home > PATH_MAX */
    dots[0] = '/';
    assert_int_equal(api_read(f->fs, dots, b, sizeof b), 0);
    assert_string_equal(b, "sandbox-passwd\n");
}

static void sandbox_root_owned_places_are_refused(void **state)
{
    files_fx *f = *state;
    /* what the sandbox user may not do, the API may not do either */
    assert_int_equal(fx_write(f->fs, "/evil", "x", 1, NULL, err, sizeof err), -EACCES);
    assert_int_equal(fx_write(f->fs, "/etc/cron.d/x", "x", 1, NULL, err, sizeof err), -EACCES);
    assert_int_equal(sbx_files_remove(f->fs, "/etc", true, NULL, err, sizeof err), -EACCES);
    assert_string_equal(fx_slurp(fx_path(f, "etc/passwd")), "sandbox-passwd\n");
    assert_int_equal(sbx_files_move(f->fs, "/etc/passwd", "/tmp/p", false, err, sizeof err),
                     -EACCES);
    sbx_upload_entry e = {.path = "x", .type = SBX_UPLOAD_FILE, .data = "x", .len = 1};
    sbx_upload_opts o = {.dest = "../../.."};
    assert_int_equal(sbx_files_upload(f->fs, &o, &e, 1, NULL, err, sizeof err), -EACCES);
    assert_int_equal(access(fx_path(f, "x"), F_OK), -1);
    /* an uploaded symlink is stored as given and never followed by a later upload */
    sbx_upload_entry l = {.path = "lnk", .type = SBX_UPLOAD_SYMLINK, .target = "/etc"};
    assert_int_equal(sbx_files_upload(f->fs, NULL, &l, 1, NULL, err, sizeof err), 0);
    sbx_upload_entry through = {
        .path = "lnk/passwd", .type = SBX_UPLOAD_FILE, .data = "p", .len = 1};
    assert_int_equal(sbx_files_upload(f->fs, NULL, &through, 1, NULL, err, sizeof err), 0);
    assert_string_equal(fx_slurp(fx_path(f, "etc/passwd")), "sandbox-passwd\n");
    struct stat st;
    assert_int_equal(lstat(fx_path(f, "home/user/lnk"), &st), 0);
    assert_true(S_ISDIR(st.st_mode)); /* the link was replaced by the uploaded directory */
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(dotdot_stays_in_root, setup, fx_teardown),
    cmocka_unit_test_setup_teardown(absolute_etc_shadow_is_the_sandbox_one_and_unreadable, setup,
                                    fx_teardown),
    cmocka_unit_test_setup_teardown(symlinks_to_slash_and_dotdot_stay_in_root, setup, fx_teardown),
    cmocka_unit_test_setup_teardown(magic_links_are_blocked, setup, fx_teardown),
    cmocka_unit_test_setup_teardown(read_only_bind_is_refused_cleanly, setup, fx_teardown),
    cmocka_unit_test_setup_teardown(hardlinks_cannot_reach_outside, setup, fx_teardown),
    cmocka_unit_test_setup_teardown(nul_and_oversized_paths_are_invalid, setup, fx_teardown),
    cmocka_unit_test_setup_teardown(sandbox_root_owned_places_are_refused, setup, fx_teardown),
};

SBX_TEST_MAIN(tests)
