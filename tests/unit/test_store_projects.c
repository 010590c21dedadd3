/* test_store_projects.c: project metadata (services/store/projects.c): field merge, versions,
 * expected-version CAS, implicit creation, listing with prefix and tokens, DeleteProject,
 * limits, tenant isolation. */
#include "test_main.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_fixture.h"

static const char *field(const sdb_project *p, const char *key)
{
    static char buf[256];
    for (size_t i = 0; i < p->n_fields; i++)
        if (p->fields[i].key.n == strlen(key) && !memcmp(p->fields[i].key.p, key, strlen(key))) {
            snprintf(buf, sizeof buf, "%.*s", (int)p->fields[i].value.n, p->fields[i].value.p);
            return buf;
        }
    return NULL;
}

static void update_merges_fields_and_counts_versions(void **state)
{
    tst_db *t = *state;
    char err[256];
    sdb_field set1[] = {{S("lang"), S("c")}, {S("owner"), S("ann")}};
    sdb_proj_patch u = {.project = S("p"), .set = set1, .n_set = 2};
    sdb_project *p;
    assert_int_equal(sdb_proj_update(t->db, S("t"), &u, &p, err, sizeof err), SBX_OK);
    assert_int_equal(p->version, 1);
    assert_int_equal(p->created_ms, TST_T0);
    assert_int_equal(p->updated_ms, TST_T0);
    assert_int_equal(p->n_fields, 2);
    sdb_project_free(p);

    atomic_fetch_add(&t->now, 1000);
    sdb_field set2[] = {{S("lang"), S("rust")}, {S("ci"), S("yes")}};
    sdb_slice rm[] = {S("owner"), S("missing-is-fine")};
    sdb_proj_patch u2 = {.project = S("p"), .set = set2, .n_set = 2, .remove = rm, .n_remove = 2};
    assert_int_equal(sdb_proj_update(t->db, S("t"), &u2, NULL, err, sizeof err), SBX_OK);
    assert_int_equal(sdb_proj_get(t->db, S("t"), S("p"), &p, err, sizeof err), SBX_OK);
    assert_int_equal(p->version, 2);
    assert_int_equal(p->created_ms, TST_T0);
    assert_int_equal(p->updated_ms, TST_T0 + 1000);
    assert_int_equal(p->n_fields, 2);
    assert_string_equal(field(p, "lang"), "rust");
    assert_string_equal(field(p, "ci"), "yes");
    assert_null(field(p, "owner"));
    /* sorted by key */
    assert_memory_equal(p->fields[0].key.p, "ci", 2);
    sdb_project_free(p);
    /* empty update still bumps the version */
    sdb_proj_patch u3 = {.project = S("p")};
    assert_int_equal(sdb_proj_update(t->db, S("t"), &u3, &p, err, sizeof err), SBX_OK);
    assert_int_equal(p->version, 3);
    sdb_project_free(p);
}

static void update_cas(void **state)
{
    tst_db *t = *state;
    char err[256];
    sdb_proj_patch u = {.project = S("p"), .has_expected_version = true, .expected_version = 1};
    assert_int_equal(sdb_proj_update(t->db, S("t"), &u, NULL, err, sizeof err),
                     SBX_FAILED_PRECONDITION);
    assert_string_equal(err, "version mismatch: expected 1, current 0");
    u.expected_version = 0; /* must not exist */
    assert_int_equal(sdb_proj_update(t->db, S("t"), &u, NULL, err, sizeof err), SBX_OK);
    assert_int_equal(sdb_proj_update(t->db, S("t"), &u, NULL, err, sizeof err),
                     SBX_FAILED_PRECONDITION);
    assert_string_equal(err, "version mismatch: expected 0, current 1");
    u.expected_version = 1;
    assert_int_equal(sdb_proj_update(t->db, S("t"), &u, NULL, err, sizeof err), SBX_OK);
    assert_int_equal(sdb_proj_update(t->db, S("t"), &u, NULL, err, sizeof err),
                     SBX_FAILED_PRECONDITION);
    assert_string_equal(err, "version mismatch: expected 1, current 2");
}

static void project_created_implicitly_by_history(void **state)
{
    tst_db *t = *state;
    char err[256];
    sdb_project *p;
    assert_int_equal(sdb_proj_get(t->db, S("t"), S("p"), &p, err, sizeof err), SBX_NOT_FOUND);
    assert_string_equal(err, "project_id: 'p' not found");
    assert_null(p);
    sdb_hist_entry e = {S("p"), S(""), S("x"), TST_T0 - 10, 42};
    assert_int_equal(sdb_hist_append(t->db, S("t"), &e, NULL, err, sizeof err), SBX_OK);
    e.exit_code = 7;
    assert_int_equal(sdb_hist_append(t->db, S("t"), &e, NULL, err, sizeof err), SBX_OK);
    assert_int_equal(sdb_proj_get(t->db, S("t"), S("p"), &p, err, sizeof err), SBX_OK);
    assert_int_equal(p->version, 0);
    assert_int_equal(p->updated_ms, 0);
    assert_int_equal(p->execution_count, 2);
    assert_int_equal(p->last_seq, 2);
    assert_int_equal(p->last_exit_code, 7);
    assert_int_equal(p->last_execution_ms, TST_T0 - 10);
    sdb_project_free(p);
    /* version 0 = "never updated": expected 0 matches it */
    sdb_proj_patch u = {.project = S("p"), .has_expected_version = true, .expected_version = 0};
    assert_int_equal(sdb_proj_update(t->db, S("t"), &u, &p, err, sizeof err), SBX_OK);
    assert_int_equal(p->version, 1);
    assert_int_equal(p->execution_count, 2);
    sdb_project_free(p);
}

static void list_with_prefix_and_pages(void **state)
{
    tst_db *t = *state;
    char id[32], err[256];
    for (int i = 0; i < 25; i++) {
        snprintf(id, sizeof id, "app-%02d", i);
        sdb_proj_patch u = {.project = S(id)};
        assert_int_equal(sdb_proj_update(t->db, S("t"), &u, NULL, err, sizeof err), SBX_OK);
    }
    sdb_proj_patch u = {.project = S("zzz")};
    assert_int_equal(sdb_proj_update(t->db, S("t"), &u, NULL, err, sizeof err), SBX_OK);
    assert_int_equal(sdb_proj_update(t->db, S("other"), &u, NULL, err, sizeof err), SBX_OK);

    sdb_page pg;
    assert_int_equal(
        sdb_proj_list(t->db, S("t"), S(""), false, 0, S(""), NULL, NULL, &pg, err, sizeof err),
        SBX_OK);
    assert_int_equal(pg.applied_limit, 100);
    assert_int_equal(pg.count, 26);
    char tok[SDB_TOKEN_MAX] = "";
    int total = 0, pages = 0;
    do {
        assert_int_equal(sdb_proj_list(t->db, S("t"), S("app-"), true, 10, S(tok), NULL, NULL, &pg,
                                       err, sizeof err),
                         SBX_OK);
        total += (int)pg.count;
        pages++;
        snprintf(tok, sizeof tok, "%s", pg.next_token);
    } while (tok[0]);
    assert_int_equal(total, 25);
    assert_int_equal(pages, 3);
    /* a token is bound to its prefix */
    assert_int_equal(
        sdb_proj_list(t->db, S("t"), S("app-"), true, 10, S(""), NULL, NULL, &pg, err, sizeof err),
        SBX_OK);
    snprintf(tok, sizeof tok, "%s", pg.next_token);
    assert_int_equal(
        sdb_proj_list(t->db, S("t"), S("ap"), true, 10, S(tok), NULL, NULL, &pg, err, sizeof err),
        SBX_INVALID_ARGUMENT);
    assert_int_equal(
        sdb_proj_list(t->db, S("other"), S(""), false, 0, S(""), NULL, NULL, &pg, err, sizeof err),
        SBX_OK);
    assert_int_equal(pg.count, 1);
}

static void delete_removes_all_project_data(void **state)
{
    tst_db *t = *state;
    char err[256];
    sdb_field f[] = {{S("a"), S("b")}};
    sdb_proj_patch u = {.project = S("p"), .set = f, .n_set = 1};
    assert_int_equal(sdb_proj_update(t->db, S("t"), &u, NULL, err, sizeof err), SBX_OK);
    for (int i = 0; i < 10; i++) {
        sdb_record_exec r = {.hist = {S("p"), S(""), S("rec"), 0, 0},
                             .command_key = S(i % 2 ? "odd" : "even"),
                             .cache_data = S("res"),
                             .ttl_s = 100};
        assert_int_equal(sdb_record_execution(t->db, S("t"), &r, NULL, NULL, err, sizeof err),
                         SBX_OK);
    }
    /* a neighbour whose id extends ours must survive */
    sdb_hist_entry e = {S("p2"), S("rid"), S("x"), 0, 0};
    assert_int_equal(sdb_hist_append(t->db, S("t"), &e, NULL, err, sizeof err), SBX_OK);
    assert_int_equal(sdb_proj_update(t->db, S("u"), &u, NULL, err, sizeof err), SBX_OK);

    bool existed = false;
    assert_int_equal(sdb_proj_delete(t->db, S("t"), S("p"), &existed, err, sizeof err), SBX_OK);
    assert_true(existed);
    sdb_project *p;
    assert_int_equal(sdb_proj_get(t->db, S("t"), S("p"), &p, err, sizeof err), SBX_NOT_FOUND);
    sdb_page pg;
    sdb_hist_query q = {.project = S("p")};
    assert_int_equal(sdb_hist_list(t->db, S("t"), &q, NULL, NULL, &pg, err, sizeof err), SBX_OK);
    assert_int_equal(pg.count, 0);
    sdb_cache_entry ce;
    assert_int_equal(sdb_cache_get(t->db, S("t"), S("p"), S("odd"), &ce, err, sizeof err), SBX_OK);
    assert_false(ce.found);
    assert_false(ce.expired);
    /* the sequence starts over for a new project of the same id */
    sdb_hist_result res;
    e.project = S("p");
    e.record_id = S("");
    assert_int_equal(sdb_hist_append(t->db, S("t"), &e, &res, err, sizeof err), SBX_OK);
    assert_int_equal(res.seq, 1);
    assert_int_equal(sdb_proj_get(t->db, S("t"), S("p"), &p, err, sizeof err), SBX_OK);
    assert_int_equal(p->n_fields, 0);
    assert_int_equal(p->execution_count, 1);
    assert_int_equal(p->cache_entries, 0);
    sdb_project_free(p);
    /* neighbours untouched */
    e.project = S("p2");
    e.record_id = S("rid");
    assert_int_equal(sdb_hist_append(t->db, S("t"), &e, &res, err, sizeof err), SBX_OK);
    assert_true(res.duplicate);
    assert_int_equal(sdb_proj_get(t->db, S("u"), S("p"), &p, err, sizeof err), SBX_OK);
    sdb_project_free(p);
    /* second delete: nothing there */
    assert_int_equal(sdb_proj_delete(t->db, S("t"), S("nope"), &existed, err, sizeof err), SBX_OK);
    assert_false(existed);
}

static void update_validates_fields(void **state)
{
    tst_db *t = *state;
    char err[256];
    sdb_field *many = calloc(257, sizeof *many);
    char(*keys)[8] = calloc(257, 8);
    for (int i = 0; i < 257; i++) {
        snprintf(keys[i], 8, "f%d", i);
        many[i].key = S(keys[i]);
        many[i].value = S("v");
    }
    sdb_proj_patch u = {.project = S("p"), .set = many, .n_set = 257};
    assert_int_equal(sdb_proj_update(t->db, S("t"), &u, NULL, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "limit of 256"));
    u.n_set = 256;
    assert_int_equal(sdb_proj_update(t->db, S("t"), &u, NULL, err, sizeof err), SBX_OK);
    /* the limit is checked on the merged result */
    sdb_field one[] = {{S("new"), S("v")}};
    sdb_proj_patch u2 = {.project = S("p"), .set = one, .n_set = 1};
    assert_int_equal(sdb_proj_update(t->db, S("t"), &u2, NULL, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_string_equal(err, "fields: 257 exceeds the limit of 256 fields per project");
    sdb_slice rm[] = {S("new")};
    u2.remove = rm;
    u2.n_remove = 1;
    assert_int_equal(sdb_proj_update(t->db, S("t"), &u2, NULL, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_string_equal(err, "remove[0]: field 'new' is also in set");
    sdb_field nul[] = {{sdb_slice_n("a\0b", 3), S("v")}};
    sdb_proj_patch u3 = {.project = S("q"), .set = nul, .n_set = 1};
    assert_int_equal(sdb_proj_update(t->db, S("t"), &u3, NULL, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_string_equal(err, "set[0].key: contains a NUL byte at offset 1");
    char *big = calloc(1, 65537);
    memset(big, 'x', 65537);
    sdb_field bigf[] = {{S("k"), sdb_slice_n(big, 65537)}};
    u3.set = bigf;
    assert_int_equal(sdb_proj_update(t->db, S("t"), &u3, NULL, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_string_equal(err, "set[0].value: 65537 bytes exceeds the limit of 65536 bytes");
    free(big);
    free(many);
    free(keys);
}

static void projects_tenants_are_isolated(void **state)
{
    tst_db *t = *state;
    char err[256];
    sdb_proj_patch u = {.project = S("p")};
    assert_int_equal(sdb_proj_update(t->db, S("alice"), &u, NULL, err, sizeof err), SBX_OK);
    sdb_project *p;
    assert_int_equal(sdb_proj_get(t->db, S("bob"), S("p"), &p, err, sizeof err), SBX_NOT_FOUND);
    bool existed = true;
    assert_int_equal(sdb_proj_delete(t->db, S("bob"), S("p"), &existed, err, sizeof err), SBX_OK);
    assert_false(existed);
    assert_int_equal(sdb_proj_get(t->db, S("alice"), S("p"), &p, err, sizeof err), SBX_OK);
    sdb_project_free(p);
    int64_t inc = 0;
    assert_int_equal(sdb_proj_incarnation(t->db, S("alice"), S("p"), &inc, err, sizeof err),
                     SBX_OK);
    assert_int_equal(inc, TST_T0);
    assert_int_equal(sdb_proj_incarnation(t->db, S("bob"), S("p"), &inc, err, sizeof err), SBX_OK);
    assert_int_equal(inc, 0);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(update_merges_fields_and_counts_versions, tst_setup,
                                    tst_teardown),
    cmocka_unit_test_setup_teardown(update_cas, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(project_created_implicitly_by_history, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(list_with_prefix_and_pages, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(delete_removes_all_project_data, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(update_validates_fields, tst_setup, tst_teardown),
    cmocka_unit_test_setup_teardown(projects_tenants_are_isolated, tst_setup, tst_teardown),
};
SBX_TEST_MAIN(tests)
