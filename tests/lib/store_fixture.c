/* store_fixture.c: fixtures shared by the store engine tests: a database in a fresh temp
 * dir (removed afterwards), an injectable clock, reopen for restart tests. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store_fixture.h"

static int64_t tst_clock(void *arg)
{
    return atomic_load((_Atomic int64_t *)arg);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(p);
}

void tst_rmrf(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *tst_tmpdir(void)
{
    char tmpl[] = "/tmp/sbx-store-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    if (!d)
        abort();
    return strdup(d);
}

tst_db *tst_db_new_mode(int mode)
{
    tst_db *t = calloc(1, sizeof *t);
    t->dir = tst_tmpdir();
    snprintf(t->path, sizeof t->path, "%s/db", t->dir);
    atomic_store(&t->now, TST_T0);
    sdb_opts_default(&t->o);
    t->o.path = t->path;
    t->o.commit_mode = mode;
    t->o.sweep_interval_ms = 0; /* tests sweep by hand */
    t->o.clock = tst_clock;
    t->o.clock_arg = &t->now;
    t->o.block_cache_bytes = 8u << 20;
    char err[512] = "";
    int rc = sdb_open(&t->o, &t->db, err, sizeof err);
    if (rc) {
        fprintf(stderr, "open failed: %d %s\n", rc, err);
        abort();
    }
    return t;
}

tst_db *tst_db_new(void)
{
    return tst_db_new_mode(SDB_COMMIT_GROUP);
}

void tst_db_reopen(tst_db *t)
{
    sdb_close(t->db);
    t->db = NULL;
    char err[512] = "";
    int rc = sdb_open(&t->o, &t->db, err, sizeof err);
    if (rc) {
        fprintf(stderr, "reopen failed: %d %s\n", rc, err);
        abort();
    }
}

void tst_db_free(tst_db *t)
{
    if (!t)
        return;
    sdb_close(t->db);
    tst_rmrf(t->dir);
    free(t->dir);
    free(t);
}

int tst_setup(void **state)
{
    *state = tst_db_new();
    return 0;
}

int tst_setup_direct(void **state)
{
    *state = tst_db_new_mode(SDB_COMMIT_DIRECT);
    return 0;
}

int tst_teardown(void **state)
{
    tst_db_free(*state);
    return 0;
}
