/* test_runtime_uidrange.c: host-wide uid slots (services/executor/runtime/uidrange.c) on real
 * lock files in a temp run directory: two reservations never overlap, a data dir gets its slot
 * back after a release (its homes' owners stay valid), a holder that dies frees its slots, a
 * full host is refused with -EBUSY naming the run dir, and a need larger than the uid space is
 * -EINVAL. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_main.h"
#include "uidrange.h"

typedef struct {
    char dir[64], run[96], a[96], b[96];
} ufx;

static int setup(void **state)
{
    ufx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/sbx-uidrange-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->run, sizeof f->run, "%s/run/sbx", f->dir);
    snprintf(f->a, sizeof f->a, "%s/data-a", f->dir);
    snprintf(f->b, sizeof f->b, "%s/data-b", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    ufx *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

static void two_reservations_never_overlap(void **state)
{
    ufx *f = *state;
    sbx_uid_range a, b;
    char err[256];
    uint64_t need = 3ull * SBX_UID_SLOT_IDS / 2; /* two slots each */
    assert_int_equal(sbx_uid_range_reserve(f->run, f->a, need, &a, err, sizeof err), 0);
    assert_int_equal(sbx_uid_range_reserve(f->run, f->b, need, &b, err, sizeof err), 0);
    assert_int_equal(a.nslots, 2);
    assert_int_equal(b.nslots, 2);
    assert_true(a.count >= need && b.count >= need);
    assert_true(a.first + a.count <= b.first || b.first + b.count <= a.first);
    assert_true(a.first >= SBX_UID_RANGE_FIRST && b.first >= SBX_UID_RANGE_FIRST);
    assert_true((uint64_t)b.first + b.count <= 0xffffffffull - 65536u);
    sbx_uid_range_release(&a);
    sbx_uid_range_release(&b);
    sbx_uid_range_release(&b); /* idempotent */
}

static void a_data_dir_gets_its_slot_back(void **state)
{
    ufx *f = *state;
    sbx_uid_range a, b, again;
    char err[256];
    assert_int_equal(sbx_uid_range_reserve(f->run, f->a, 65536, &a, err, sizeof err), 0);
    assert_int_equal(sbx_uid_range_reserve(f->run, f->b, 65536, &b, err, sizeof err), 0);
    unsigned b_slot = b.slot;
    sbx_uid_range_release(&a);
    sbx_uid_range_release(&b);
    /* b first this time: it still gets its own slot, not the lowest free one */
    assert_int_equal(sbx_uid_range_reserve(f->run, f->b, 65536, &again, err, sizeof err), 0);
    assert_int_equal(again.slot, b_slot);
    sbx_uid_range_release(&again);
}

static void a_dead_holder_frees_its_slots(void **state)
{
    ufx *f = *state;
    int go[2], done[2];
    assert_int_equal(pipe(go), 0);
    assert_int_equal(pipe(done), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        sbx_uid_range r;
        char err[256];
        int ok = sbx_uid_range_reserve(f->run, f->a, (uint64_t)SBX_UID_SLOTS * SBX_UID_SLOT_IDS, &r,
                                       err, sizeof err) == 0;
        char c = ok ? 'y' : 'n';
        (void)!write(done[1], &c, 1);
        (void)!read(go[0], &c, 1); /* hold the locks until told to die */
        _exit(0);
    }
    char c = 0;
    assert_int_equal(read(done[0], &c, 1), 1);
    assert_int_equal(c, 'y');
    sbx_uid_range r;
    char err[256] = "";
    assert_int_equal(sbx_uid_range_reserve(f->run, f->b, 65536, &r, err, sizeof err), -EBUSY);
    assert_non_null(strstr(err, f->run));
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    assert_int_equal(sbx_uid_range_reserve(f->run, f->b, 65536, &r, err, sizeof err), 0);
    sbx_uid_range_release(&r);
    close(go[0]);
    close(go[1]);
    close(done[0]);
    close(done[1]);
}

static void more_than_the_uid_space_is_refused(void **state)
{
    ufx *f = *state;
    sbx_uid_range r;
    char err[256] = "";
    assert_int_equal(sbx_uid_range_reserve(f->run, f->a,
                                           ((uint64_t)SBX_UID_SLOTS + 1) * SBX_UID_SLOT_IDS, &r,
                                           err, sizeof err),
                     -EINVAL);
    assert_non_null(strstr(err, "host uids"));
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(two_reservations_never_overlap, setup, teardown),
    cmocka_unit_test_setup_teardown(a_data_dir_gets_its_slot_back, setup, teardown),
    cmocka_unit_test_setup_teardown(a_dead_holder_frees_its_slots, setup, teardown),
    cmocka_unit_test_setup_teardown(more_than_the_uid_space_is_refused, setup, teardown),
};

SBX_TEST_MAIN(tests)
