/* test_files_upload.c: UploadFiles (services/executor/files/upload.c): staging, the three
 * modes, rollback on a failure half-way through the renames, validation and limits. A temp
 * directory is the sandbox root (tests/lib files_fixture), sandbox user = host 100999. Built
 * with -DSBX_BENCH it is tests/bench's bench_files_upload (1000 files / 10 MB). */
#include "files_fixture.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "upload.h"

static char err[512];

/* No hidden staging directory left anywhere directly in `dir`. */
static void assert_no_staging(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)))
        assert_null(strstr(de->d_name, SBX_UPLOAD_STAGING_PREFIX));
    closedir(d);
}

#define FILE_E(p, s)                                                                               \
    {                                                                                              \
        .path = (p), .type = SBX_UPLOAD_FILE, .data = (s), .len = sizeof(s) - 1                    \
    }

static void uploads_files_dirs_symlinks(void **state)
{
    files_fx *f = *state;
    sbx_upload_entry e[] = {
        FILE_E("src/main.c", "int main(void){return 0;}\n"),
        FILE_E("README.md", "# hi\n"),
        {.path = "bin", .type = SBX_UPLOAD_DIR, .mode = 0700},
        {.path = "bin/run.sh",
         .type = SBX_UPLOAD_FILE,
         .data = "#!/bin/sh\n",
         .len = 10,
         .mode = 0755},
        {.path = "ro", .type = SBX_UPLOAD_DIR, .mode = 0555},
        FILE_E("ro/inside.txt", "still written"),
        {.path = "link", .type = SBX_UPLOAD_SYMLINK, .target = "/etc/shadow"},
    };
    size_t n = sizeof e / sizeof e[0];
    sbx_upload_result res;
    assert_int_equal(sbx_files_upload(f->fs, NULL, e, n, &res, err, sizeof err), 0);
    assert_int_equal(res.files, 4);
    assert_int_equal(res.dirs, 2);
    assert_int_equal(res.symlinks, 1);
    assert_int_equal(res.replaced, 0);
    assert_string_equal(fx_slurp(fx_path(f, "home/user/src/main.c")),
                        "int main(void){return 0;}\n");
    assert_string_equal(fx_slurp(fx_path(f, "home/user/ro/inside.txt")), "still written");
    struct stat st;
    assert_int_equal(stat(fx_path(f, "home/user/bin"), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_int_equal(st.st_uid, FX_HOST_UID);
    assert_int_equal(stat(fx_path(f, "home/user/bin/run.sh"), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0755);
    assert_int_equal(st.st_uid, FX_HOST_UID);
    assert_int_equal(st.st_gid, FX_HOST_GID);
    assert_int_equal(stat(fx_path(f, "home/user/ro"), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0555);
    assert_int_equal(stat(fx_path(f, "home/user/src"), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0755);
    assert_int_equal(st.st_uid, FX_HOST_UID);
    char target[64] = {0};
    assert_int_equal(readlink(fx_path(f, "home/user/link"), target, sizeof target - 1), 11);
    assert_string_equal(target, "/etc/shadow");
    assert_no_staging(fx_path(f, "home/user"));
}

static void merge_keeps_siblings_and_replaces_files(void **state)
{
    files_fx *f = *state;
    fx_mkdir(f, "home/user/src", 0755, FX_HOST_UID);
    fx_put(f, "home/user/src/old.c", "old", 0644, FX_HOST_UID);
    fx_put(f, "home/user/src/main.c", "old main", 0644, FX_HOST_UID);
    fx_mkdir(f, "home/user/docs", 0755, FX_HOST_UID); /* becomes a file */
    sbx_upload_entry e[] = {
        FILE_E("src/main.c", "new main"),
        FILE_E("src/new.c", "new"),
        FILE_E("docs", "docs is a file now"),
    };
    sbx_upload_result res;
    assert_int_equal(sbx_files_upload(f->fs, NULL, e, 3, &res, err, sizeof err), 0);
    assert_int_equal(res.replaced, 2);
    assert_string_equal(fx_slurp(fx_path(f, "home/user/src/old.c")), "old");
    assert_string_equal(fx_slurp(fx_path(f, "home/user/src/main.c")), "new main");
    assert_string_equal(fx_slurp(fx_path(f, "home/user/src/new.c")), "new");
    assert_string_equal(fx_slurp(fx_path(f, "home/user/docs")), "docs is a file now");
    assert_no_staging(fx_path(f, "home/user"));
}

static void replace_swaps_top_level(void **state)
{
    files_fx *f = *state;
    fx_mkdir(f, "home/user/proj", 0755, FX_HOST_UID);
    fx_put(f, "home/user/proj/stale.c", "stale", 0644, FX_HOST_UID);
    fx_put(f, "home/user/other", "untouched", 0644, FX_HOST_UID);
    sbx_upload_entry e[] = {FILE_E("proj/fresh.c", "fresh")};
    sbx_upload_opts o = {.mode = SBX_UPLOAD_REPLACE};
    sbx_upload_result res;
    assert_int_equal(sbx_files_upload(f->fs, &o, e, 1, &res, err, sizeof err), 0);
    assert_int_equal(res.replaced, 1);
    assert_int_equal(access(fx_path(f, "home/user/proj/stale.c"), F_OK), -1);
    assert_string_equal(fx_slurp(fx_path(f, "home/user/proj/fresh.c")), "fresh");
    assert_string_equal(fx_slurp(fx_path(f, "home/user/other")), "untouched");
    assert_no_staging(fx_path(f, "home/user"));
}

static void create_mode_fails_whole_when_one_exists(void **state)
{
    files_fx *f = *state;
    fx_put(f, "home/user/z", "mine", 0644, FX_HOST_UID);
    sbx_upload_entry e[] = {FILE_E("a", "A"), FILE_E("b/c", "C"), FILE_E("z", "Z")};
    sbx_upload_opts o = {.mode = SBX_UPLOAD_CREATE};
    assert_int_equal(sbx_files_upload(f->fs, &o, e, 3, NULL, err, sizeof err), -EEXIST);
    assert_non_null(strstr(err, "entries[2].path"));
    /* "a" and "b" were renamed in before "z" failed: both rolled back */
    assert_int_equal(access(fx_path(f, "home/user/a"), F_OK), -1);
    assert_int_equal(access(fx_path(f, "home/user/b"), F_OK), -1);
    assert_string_equal(fx_slurp(fx_path(f, "home/user/z")), "mine");
    assert_no_staging(fx_path(f, "home/user"));
}

static void failure_mid_commit_rolls_back_everything(void **state)
{
    files_fx *f = *state;
    fx_put(f, "home/user/a.txt", "old a", 0644, FX_HOST_UID);
    fx_mkdir(f, "home/user/m", 0755, FX_HOST_UID);
    fx_put(f, "home/user/m/k", "old k", 0644, FX_HOST_UID);
    fx_mkdir(f, "home/user/n", 0755, 0); /* root-owned: the sandbox user cannot add to it */
    sbx_upload_entry e[] = {
        FILE_E("a.txt", "new a"),
        FILE_E("m/k", "new k"),
        FILE_E("m/l", "new l"),
        FILE_E("n/x", "cannot land"),
    };
    assert_int_equal(sbx_files_upload(f->fs, NULL, e, 4, NULL, err, sizeof err), -EACCES);
    assert_non_null(strstr(err, "entries[3].path"));
    assert_string_equal(fx_slurp(fx_path(f, "home/user/a.txt")), "old a");
    assert_string_equal(fx_slurp(fx_path(f, "home/user/m/k")), "old k");
    assert_int_equal(access(fx_path(f, "home/user/m/l"), F_OK), -1);
    assert_int_equal(access(fx_path(f, "home/user/n/x"), F_OK), -1);
    assert_no_staging(fx_path(f, "home/user"));
}

static void dest_is_created_and_removed_on_failure(void **state)
{
    files_fx *f = *state;
    sbx_upload_entry e[] = {FILE_E("f", "x")};
    sbx_upload_opts o = {.dest = "work/proj"};
    assert_int_equal(sbx_files_upload(f->fs, &o, e, 1, NULL, err, sizeof err), 0);
    assert_string_equal(fx_slurp(fx_path(f, "home/user/work/proj/f")), "x");
    struct stat st;
    assert_int_equal(stat(fx_path(f, "home/user/work"), &st), 0);
    assert_int_equal(st.st_uid, FX_HOST_UID);
    /* create mode conflict in a new dest: the created dest dirs go again */
    sbx_upload_entry e2[] = {FILE_E("f", "x"), FILE_E("g", "y")};
    o.dest = "/home/user/new1/new2";
    o.mode = SBX_UPLOAD_CREATE;
    fx_mkdir(f, "home/user/new1", 0755, FX_HOST_UID);
    fx_mkdir(f, "home/user/new1/new2", 0755, FX_HOST_UID);
    fx_put(f, "home/user/new1/new2/g", "there", 0644, FX_HOST_UID);
    assert_int_equal(sbx_files_upload(f->fs, &o, e2, 2, NULL, err, sizeof err), -EEXIST);
    assert_int_equal(access(fx_path(f, "home/user/new1/new2/f"), F_OK), -1);
    /* a failure while staging (RLIMIT_FSIZE, in a child) in a dest that did not exist */
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {1000, 1000};
        setrlimit(RLIMIT_FSIZE, &rl);
        static char big[2000];
        sbx_upload_entry e3[] = {
            FILE_E("f", "x"),
            {.path = "g", .type = SBX_UPLOAD_FILE, .data = big, .len = sizeof big}};
        sbx_upload_opts o3 = {.dest = "/home/user/fresh/dir"};
        int rc = sbx_files_upload(f->fs, &o3, e3, 2, NULL, err, sizeof err);
        _exit(rc == -EFBIG && strstr(err, "entries[1].path") ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(access(fx_path(f, "home/user/fresh"), F_OK), -1);
    assert_no_staging(fx_path(f, "home/user"));
}

static void validation_names_the_entry(void **state)
{
    files_fx *f = *state;
    sbx_upload_entry bad[][2] = {
        {FILE_E("ok", "x"), FILE_E("../escape", "x")},
        {FILE_E("ok", "x"), FILE_E("a/../../b", "x")},
        {FILE_E("ok", "x"), FILE_E("/abs", "x")},
        {FILE_E("a/b", "x"), FILE_E("./a//b/", "y")},
        {FILE_E("a", "x"), FILE_E("a/b", "y")},
        {FILE_E("ok", "x"), FILE_E(".", "y")},
        {FILE_E("ok", "x"), {.path = "s", .type = SBX_UPLOAD_SYMLINK, .target = ""}},
        {FILE_E("ok", "x"), {.path = "h", .type = 4}},
        {FILE_E("ok", "x"), {.path = "a\0b", .path_len = 3, .type = SBX_UPLOAD_FILE}},
        {FILE_E("ok", "x"), {.path = "m", .type = SBX_UPLOAD_FILE, .mode = 04755}},
    };
    const char *want[] = {"\"..\"",      "\"..\"", "relative", "duplicate", "not a directory",
                          "dest itself", "target", "type",     "NUL",       "mode"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = sbx_files_upload(f->fs, NULL, bad[i], 2, NULL, err, sizeof err);
        if (rc != -EINVAL || !strstr(err, want[i]) || !strstr(err, "entries["))
            fail_msg("case %zu: rc=%d err=%s", i, rc, err);
    }
    assert_int_equal(sbx_files_upload(f->fs, NULL, bad[0], 0, NULL, err, sizeof err), -EINVAL);
    assert_int_equal(access(fx_path(f, "home/user/ok"), F_OK), -1); /* nothing applied */
    assert_no_staging(fx_path(f, "home/user"));
}

static void limits_on_count_and_bytes(void **state)
{
    files_fx *f = *state;
    sbx_upload_entry e[3] = {FILE_E("a", "123"), FILE_E("b", "456"), FILE_E("c", "789")};
    sbx_upload_opts o = {.max_entries = 2};
    assert_int_equal(sbx_files_upload(f->fs, &o, e, 3, NULL, err, sizeof err), -E2BIG);
    assert_non_null(strstr(err, "more than 2 entries"));
    o = (sbx_upload_opts){.max_bytes = 8};
    assert_int_equal(sbx_files_upload(f->fs, &o, e, 3, NULL, err, sizeof err), -EFBIG);
    assert_non_null(strstr(err, "8 bytes"));
    o.max_bytes = 9;
    assert_int_equal(sbx_files_upload(f->fs, &o, e, 3, NULL, err, sizeof err), 0);
}

__attribute__((unused)) static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#ifdef SBX_BENCH
static void perf_1000_files_10mb(void **state)
{
    files_fx *f = *state;
    enum { N = 1000, SZ = 10 * 1000 * 1000 / N, RUNS = 5 };
    sbx_upload_entry *e = calloc(N, sizeof *e);
    char(*paths)[48] = calloc(N, 48);
    char *data = malloc(SZ);
    memset(data, 'd', SZ);
    for (int i = 0; i < N; i++) {
        snprintf(paths[i], 48, "pkg%02d/sub%d/file%04d.txt", i / 50, i % 5, i);
        e[i] =
            (sbx_upload_entry){.path = paths[i], .type = SBX_UPLOAD_FILE, .data = data, .len = SZ};
    }
    /* interleaved with a baseline in the same run: the same tree written plainly (mkdir +
     * open/write/close) as root, no staging, no rename, no identity switch */
    double t[RUNS], tb[RUNS];
    for (int r = 0; r < RUNS; r++) {
        char bd[128];
        snprintf(bd, sizeof bd, "%s/home/user/base%d", f->root, r);
        double t0b = (sbx_mono_ns() / 1e6);
        mkdir(bd, 0755);
        for (int i = 0; i < N; i++) {
            char p[200], d[160];
            snprintf(d, sizeof d, "%s/pkg%02d", bd, i / 50);
            mkdir(d, 0755);
            snprintf(d + strlen(d), sizeof d - strlen(d), "/sub%d", i % 5);
            mkdir(d, 0755);
            snprintf(p, sizeof p, "%s/file%04d.txt", d, i);
            int fd = open(p, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
            assert_true(fd >= 0);
            assert_int_equal(write(fd, data, SZ), SZ);
            close(fd);
        }
        tb[r] = (sbx_mono_ns() / 1e6) - t0b;

        char dest[32];
        snprintf(dest, sizeof dest, "run%d", r);
        sbx_upload_opts o = {.dest = dest};
        sbx_upload_result res;
        double t0 = (sbx_mono_ns() / 1e6);
        assert_int_equal(sbx_files_upload(f->fs, &o, e, N, &res, err, sizeof err), 0);
        t[r] = (sbx_mono_ns() / 1e6) - t0;
        assert_int_equal(res.files, N);
        assert_int_equal(res.bytes, (uint64_t)N * SZ);
    }
    /* and once more over an existing tree: every file replaced (merge) */
    sbx_upload_opts o = {.dest = "run0"};
    sbx_upload_result res;
    double t0 = (sbx_mono_ns() / 1e6);
    assert_int_equal(sbx_files_upload(f->fs, &o, e, N, &res, err, sizeof err), 0);
    double tover = (sbx_mono_ns() / 1e6) - t0;
    assert_int_equal(res.replaced, N);
    qsort(t, RUNS, sizeof t[0], cmp_d);
    qsort(tb, RUNS, sizeof tb[0], cmp_d);
    printf("# upload 1000 files / 10 MB: median %.1f ms (min %.1f, max %.1f); "
           "over an existing tree (1000 swaps) %.1f ms; baseline plain writes median %.1f ms\n",
           t[RUNS / 2], t[0], t[RUNS - 1], tover, tb[RUNS / 2]);
    printf("# goal <= 200 ms; upload / plain-writes baseline = %.2f\n", t[RUNS / 2] / tb[RUNS / 2]);
    free(data);
    free(paths);
    free(e);
}
#endif

/* Timing cases are benchmarks, not unit tests: they build only into the bench binary
 * (tests/bench/files.cmake, -DSBX_BENCH) and print figures with a same-run baseline. */
#ifdef SBX_BENCH
#define SBX_BENCH_CASE(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown),
#else
#define SBX_BENCH_CASE(f)
#endif

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(uploads_files_dirs_symlinks, fx_setup, fx_teardown),
    cmocka_unit_test_setup_teardown(merge_keeps_siblings_and_replaces_files, fx_setup, fx_teardown),
    cmocka_unit_test_setup_teardown(replace_swaps_top_level, fx_setup, fx_teardown),
    cmocka_unit_test_setup_teardown(create_mode_fails_whole_when_one_exists, fx_setup, fx_teardown),
    cmocka_unit_test_setup_teardown(failure_mid_commit_rolls_back_everything, fx_setup,
                                    fx_teardown),
    cmocka_unit_test_setup_teardown(dest_is_created_and_removed_on_failure, fx_setup, fx_teardown),
    cmocka_unit_test_setup_teardown(validation_names_the_entry, fx_setup, fx_teardown),
    cmocka_unit_test_setup_teardown(limits_on_count_and_bytes, fx_setup, fx_teardown),
    SBX_BENCH_CASE(perf_1000_files_10mb)};

SBX_TEST_MAIN(tests)
