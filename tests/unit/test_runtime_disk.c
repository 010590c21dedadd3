/* test_runtime_disk.c: the homes' disk images (services/executor/runtime/disk.c, diskpool.c) on
 * real loop devices in a temp dir: an image's filesystem holds what it was made for (bytes
 * within 64 KiB, at least the inodes), writes past it fail with ENOSPC and inodes run out with
 * ENOSPC too, an image is kept and mounted again with its files, blank images are made ahead,
 * handed out by rename (the spec recorded) and adopted again by the next setup. Needs root,
 * /dev/loop-control and mke2fs; says SKIP otherwise. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sandbox_int.h"
#include "test_main.h"

#define MIB (1ull << 20)
#define UID_BASE 0x70000000u

typedef struct {
    char dir[64], pool[96], home[96];
    const char *skip;
} dfx;

static int setup(void **state)
{
    dfx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/sbx-disk-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->pool, sizeof f->pool, "%s/disk", f->dir);
    snprintf(f->home, sizeof f->home, "%s/home.img", f->dir);
    if (geteuid() != 0)
        f->skip = "needs root (loop devices, mounts)";
    else if (access("/dev/loop-control", R_OK | W_OK) != 0)
        f->skip = "no /dev/loop-control";
    else if (!sbx__disk_have_mke2fs())
        f->skip = "mke2fs not installed";
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    dfx *f = *state;
    sbx_disk_shutdown();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

#define SKIP_IF(f)                                                                                 \
    do {                                                                                           \
        if ((f)->skip) {                                                                           \
            printf("SKIP: %s\n", (f)->skip);                                                       \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* Writes 1 MiB blocks into name under the mount until it fails; the bytes written. */
static uint64_t fill(int mnt, const char *name, int *err)
{
    int fd = openat(mnt, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    static char block[1 << 20];
    uint64_t total = 0;
    *err = 0;
    for (;;) {
        ssize_t n = write(fd, block, sizeof block);
        if (n < 0) {
            *err = errno;
            break;
        }
        total += (uint64_t)n; /* a short write: the next one says why */
    }
    if (fsync(fd) < 0 && !*err)
        *err = errno;
    close(fd);
    return total;
}

static void an_image_holds_its_limits(void **state)
{
    dfx *f = *state;
    SKIP_IF(f);
    sbx_disk_cfg dc = {.dir = f->pool};
    sbx_disk_caps caps;
    assert_int_equal(sbx_disk_setup(&dc, &caps), 0);
    assert_non_null(caps.mechanism);
    assert_string_equal(caps.mechanism, SBX_DISK_MECH_LOOP);
    char err[512] = "";
    int m = sbx__disk_open(f->home, 10 * MIB, 1024, UID_BASE, err, sizeof err);
    assert_true(m >= 0);
    sbx_disk_usage u;
    assert_int_equal(sbx__disk_usage(m, &u), 0);
    assert_true(u.limit_bytes >= 10 * MIB && u.limit_bytes <= 10 * MIB + 64 * 1024);
    assert_true(u.limit_inodes >= 1024 && u.limit_inodes < 1100);
    assert_int_equal(u.used_inodes, 0); /* the root is one of ext4's own */
    /* the root belongs to the sandbox user of the range, 0700 */
    struct stat st;
    assert_int_equal(fstat(m, &st), 0);
    assert_int_equal(st.st_uid, UID_BASE + 1000);
    assert_int_equal(st.st_mode & 07777, 0700);
    uint64_t b = 0, i = 0;
    assert_int_equal(sbx_disk_image_spec(f->home, &b, &i), 0);
    assert_int_equal(b, 10 * MIB);
    assert_int_equal(i, 1024);
    /* bytes: ENOSPC once the home holds about 10 MiB */
    int e;
    uint64_t wrote = fill(m, "big", &e);
    assert_int_equal(e, ENOSPC);
    /* 1 MiB writes: the last one does not fit whole (ext4 keeps ~2% for its own allocations) */
    assert_true(wrote >= 9 * MIB && wrote <= 10 * MIB + 64 * 1024);
    assert_int_equal(unlinkat(m, "big", 0), 0);
    /* inodes: ENOSPC at the limit, with space left */
    size_t made = 0;
    for (; made < 5000; made++) {
        char n[32];
        snprintf(n, sizeof n, "f%zu", made);
        int fd = openat(m, n, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) {
            assert_int_equal(errno, ENOSPC);
            break;
        }
        close(fd);
    }
    assert_int_equal(sbx__disk_usage(m, &u), 0);
    assert_int_equal(made, u.limit_inodes);
    assert_int_equal(u.used_inodes, u.limit_inodes);
    int fd = openat(m, "kept", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    assert_true(fd < 0); /* no inode left for it */
    assert_int_equal(unlinkat(m, "f0", 0), 0);
    fd = openat(m, "kept", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "home", 4), 4);
    close(fd);
    close(m); /* the last reference: unmounted, the loop device detached */
    /* mounted again (the previous mount may take a moment to go): the files are there */
    m = sbx__disk_open(f->home, 10 * MIB, 1024, UID_BASE, err, sizeof err);
    assert_true(m >= 0);
    char buf[8] = "";
    fd = openat(m, "kept", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, buf, sizeof buf), 4);
    assert_memory_equal(buf, "home", 4);
    close(fd);
    assert_int_equal(fchownat(m, "kept", UID_BASE + 1000, UID_BASE + 1000, 0), 0);
    /* another uid range's sandbox gets the home re-owned */
    close(m);
    m = sbx__disk_open(f->home, 10 * MIB, 1024, UID_BASE + 65536, err, sizeof err);
    assert_true(m >= 0);
    assert_int_equal(fstatat(m, "kept", &st, 0), 0);
    assert_int_equal(st.st_uid, UID_BASE + 65536 + 1000);
    close(m);
}

static void blanks_are_made_ahead_and_adopted(void **state)
{
    dfx *f = *state;
    SKIP_IF(f);
    sbx_disk_cfg dc = {.dir = f->pool, .blanks = 2, .bytes = 16 * MIB, .inodes = 1024};
    sbx_disk_caps caps;
    assert_int_equal(sbx_disk_setup(&dc, &caps), 0);
    assert_non_null(caps.mechanism);
    assert_int_equal(sbx_disk_setup(&dc, &caps), -EALREADY);
    assert_int_equal(sbx_disk_wait(2, 20000), 0);
    sbx_disk_stats s;
    sbx_disk_stats_get(&s);
    assert_int_equal(s.ready, 2);
    assert_true(s.made >= 2);
    /* another size formats on demand; the default size takes a blank */
    char err[512] = "", other[128];
    snprintf(other, sizeof other, "%s/other.img", f->dir);
    int m = sbx__disk_open(other, 8 * MIB, 1024, UID_BASE, err, sizeof err);
    assert_true(m >= 0);
    close(m);
    sbx_disk_stats_get(&s);
    assert_int_equal(s.taken, 0);
    m = sbx__disk_open(f->home, 16 * MIB, 1024, UID_BASE, err, sizeof err);
    assert_true(m >= 0);
    sbx_disk_stats_get(&s);
    assert_int_equal(s.taken, 1);
    uint64_t b = 0, i = 0;
    assert_int_equal(sbx_disk_image_spec(f->home, &b, &i), 0);
    assert_int_equal(b, 16 * MIB);
    struct stat st;
    assert_int_equal(fstat(m, &st), 0);
    assert_int_equal(st.st_uid, UID_BASE + 1000);
    assert_int_equal(faccessat(m, "lost+found", F_OK, 0), -1); /* an empty home */
    close(m);
    assert_int_equal(sbx_disk_wait(2, 20000), 0); /* refilled */
    sbx_disk_shutdown();
    /* the blanks' files stay and the next setup mounts them again instead of making new ones */
    assert_int_equal(sbx_disk_setup(&dc, &caps), 0);
    assert_int_equal(sbx_disk_wait(2, 20000), 0);
    sbx_disk_stats_get(&s);
    assert_int_equal(s.made, 0);
    assert_int_equal(s.ready, 2);
}

static void a_missing_mechanism_says_why(void **state)
{
    dfx *f = *state;
    SKIP_IF(f);
    char bad[128];
    snprintf(bad, sizeof bad, "%s/file", f->dir);
    int fd = open(bad, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
    char under[160];
    snprintf(under, sizeof under, "%s/disk", bad);
    sbx_disk_cfg dc = {.dir = under};
    sbx_disk_caps caps;
    assert_int_equal(sbx_disk_setup(&dc, &caps), 0);
    assert_null(caps.mechanism);
    assert_non_null(strstr(caps.why, under));
    assert_null(sbx__disk_mechanism());
    dc.blanks = 65;
    assert_int_equal(sbx_disk_setup(&dc, &caps), -EINVAL);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(an_image_holds_its_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(blanks_are_made_ahead_and_adopted, setup, teardown),
        cmocka_unit_test_setup_teardown(a_missing_mechanism_says_why, setup, teardown),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
