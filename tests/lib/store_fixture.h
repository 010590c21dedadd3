/* store_fixture.h: the store engine test fixture (implemented in store_fixture.c): a RocksDB
 * in a temp dir with an injected clock, reopened or freed on demand. */
#ifndef SBX_TEST_STORE_FIXTURE_H
#define SBX_TEST_STORE_FIXTURE_H

#include <stdatomic.h>

#include "status.h"
#include "storedb.h"

#define TST_T0 1700000000000ll /* the injected clock starts here (ms) */
typedef struct tst_db {
    char *dir;
    char path[256];
    sdb *db;
    _Atomic int64_t now;
    sdb_opts o;
} tst_db;
tst_db *tst_db_new(void);
tst_db *tst_db_new_mode(int commit_mode);
void tst_db_reopen(tst_db *t);
void tst_db_free(tst_db *t);
void tst_rmrf(const char *path);
char *tst_tmpdir(void);
int tst_setup(void **state);
int tst_setup_direct(void **state);
int tst_teardown(void **state);
#define S(x) sdb_slice_c(x)

#endif
