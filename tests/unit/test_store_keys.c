/* test_store_keys.c: key encoding, input validation, RocksDB error mapping and page tokens
 * (services/store/keys.c). */
#include "test_main.h"

#include <stdio.h>
#include <string.h>

#include "keys.h"

#define S(x) sdb_slice_c(x)

static void keys_successor(void **state)
{
    (void)state;
    sdb__buf b;
    sdb__buf_init(&b);
    sdb__buf_raw(&b, "ab\xff\xff", 4);
    assert_true(sdb__buf_successor(&b));
    assert_int_equal(b.n, 2);
    assert_memory_equal(b.p, "ac", 2);
    sdb__buf_reset(&b);
    sdb__buf_raw(&b, "\xff\xff", 2);
    assert_false(sdb__buf_successor(&b));
    sdb__buf_free(&b);
}

static void keys_tenant_scopes_never_overlap(void **state)
{
    (void)state;
    /* ("a", "bc") vs ("ab", "c"): length-delimited, so neither scope prefixes the other */
    sdb__buf x, y;
    sdb__buf_init(&x);
    sdb__buf_init(&y);
    sdb__key_scope(&x, S("a"), S("bc"));
    sdb__key_scope(&y, S("ab"), S("c"));
    assert_false(x.n == y.n && memcmp(x.p, y.p, x.n) == 0);
    assert_false(memcmp(x.p, y.p, x.n < y.n ? x.n : y.n) == 0);
    /* a project scope is never a prefix of another project's ("p" vs "p1") */
    sdb__key_scope(&x, S("t"), S("p"));
    sdb__key_scope(&y, S("t"), S("p1"));
    assert_false(y.n >= x.n && memcmp(x.p, y.p, x.n) == 0);
    /* history keys sort by big-endian seq */
    sdb__key_hist(&x, S("t"), S("p"), 255);
    sdb__key_hist(&y, S("t"), S("p"), 256);
    assert_true(memcmp(x.p, y.p, x.n) < 0);
    /* every key starts with the tenant */
    sdb__buf t;
    sdb__buf_init(&t);
    sdb__key_tenant(&t, S("t"));
    sdb__key_kv(&x, S("t"), S("k"));
    assert_memory_equal(x.p, t.p, t.n);
    sdb__key_cache(&x, S("t"), S("p"), 3, S("cmd"));
    assert_memory_equal(x.p, t.p, t.n);
    sdb_slice tn, pn, rest;
    assert_true(sdb__key_split_scope(x.p, x.n, &tn, &pn, &rest));
    assert_int_equal(tn.n, 1);
    assert_int_equal(pn.n, 1);
    assert_int_equal(rest.n, 8 + 3);
    sdb__buf_free(&x);
    sdb__buf_free(&y);
    sdb__buf_free(&t);
}

static void validate_messages_name_field_and_limit(void **state)
{
    (void)state;
    char err[256];
    char big[1500];
    memset(big, 'k', sizeof big);
    assert_int_equal(sdb__check_bytes("key", sdb_slice_n(big, 1500), 1024, false, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_string_equal(err, "key: 1500 bytes exceeds the limit of 1024 bytes");
    assert_int_equal(sdb__check_bytes("key", sdb_slice_n("a\0b", 3), 1024, false, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_string_equal(err, "key: contains a NUL byte at offset 1");
    assert_int_equal(sdb__check_bytes("key", S(""), 1024, false, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_string_equal(err, "key: must not be empty");
    assert_int_equal(sdb__check_bytes("record_id", S(""), 10, true, err, sizeof err), SBX_OK);

    assert_int_equal(sdb__check_project(S("my-proj_1.x"), err, sizeof err), SBX_OK);
    assert_int_equal(sdb__check_project(S("-x"), err, sizeof err), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "project_id"));
    assert_int_equal(sdb__check_project(S("a/b"), err, sizeof err), SBX_INVALID_ARGUMENT);
    memset(big, 'p', 129);
    assert_int_equal(sdb__check_project(sdb_slice_n(big, 129), err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_string_equal(err, "project_id: 129 bytes exceeds the limit of 128 bytes");

    sdb_page pg;
    assert_int_equal(sdb__check_limit(false, 0, 50, &pg, err, sizeof err), SBX_OK);
    assert_int_equal(pg.applied_limit, 50);
    assert_int_equal(sdb__check_limit(true, 0, 50, &pg, err, sizeof err), SBX_INVALID_ARGUMENT);
    assert_string_equal(err, "limit: 0 must be 1..1000");
    assert_int_equal(sdb__check_limit(true, -3, 50, &pg, err, sizeof err), SBX_INVALID_ARGUMENT);
    assert_int_equal(sdb__check_limit(true, 5000, 50, &pg, err, sizeof err), SBX_OK);
    assert_int_equal(pg.applied_limit, 1000);
    assert_true(pg.clamped);
}

static void rocksdb_errors_map_to_status(void **state)
{
    (void)state;
    assert_int_equal(sdb__rocks_status("IO error: No space left on device: While appending"),
                     SBX_RESOURCE_EXHAUSTED);
    assert_int_equal(sdb__rocks_status("IO error: Input/output error"), SBX_UNAVAILABLE);
    assert_int_equal(sdb__rocks_status("Corruption: block checksum mismatch"), SBX_DATA_LOSS);
    assert_int_equal(sdb__rocks_status("Invalid argument: Column families not opened"),
                     SBX_INVALID_ARGUMENT);
    assert_int_equal(sdb__rocks_status("Shutdown in progress"), SBX_UNAVAILABLE);
    assert_int_equal(sdb__rocks_status("Something else"), SBX_INTERNAL);
    char err[256];
    assert_int_equal(
        sdb__rocks_err("write", strdup("IO error: No space left on device"), err, sizeof err),
        SBX_RESOURCE_EXHAUSTED);
    assert_string_equal(err, "store write failed (the disk is full): IO error: No space left on "
                             "device");
    assert_int_equal(sdb__rocks_err("open",
                                    strdup("IO error: While lock file: /x/LOCK: Resource "
                                           "temporarily unavailable"),
                                    err, sizeof err),
                     SBX_UNAVAILABLE);
    assert_non_null(strstr(err, "in use by another process"));
}

static void tokens_roundtrip(void **state)
{
    (void)state;
    char tok[SDB_TOKEN_MAX], cur[SDB_TOKEN_MAX], err[256];
    size_t n = 0;
    sdb__token_encode(SDB__TOK_KV, S("t1"), S("pre"), "last-key", 8, tok);
    assert_true(strlen(tok) > 0);
    for (const char *c = tok; *c; c++) /* base64url alphabet, no padding */
        assert_non_null(
            strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", *c));
    assert_int_equal(sdb__token_decode("page_token", SDB__TOK_KV, S("t1"), S("pre"), S(tok), cur,
                                       &n, err, sizeof err),
                     SBX_OK);
    assert_int_equal(n, 8);
    assert_memory_equal(cur, "last-key", 8);
}

static void tokens_reject_bad_input(void **state)
{
    (void)state;
    char tok[SDB_TOKEN_MAX], bad[SDB_TOKEN_MAX], cur[SDB_TOKEN_MAX], err[256];
    size_t n;
    sdb__token_encode(SDB__TOK_HIST, S("t1"), S("proj"), "\0\0\0\0\0\0\0\x07", 8, tok);
    /* another tenant, another listing, another kind */
    assert_int_equal(sdb__token_decode("page_token", SDB__TOK_HIST, S("t2"), S("proj"), S(tok), cur,
                                       &n, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "page_token"));
    assert_int_equal(sdb__token_decode("page_token", SDB__TOK_HIST, S("t1"), S("other"), S(tok),
                                       cur, &n, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    assert_int_equal(sdb__token_decode("page_token", SDB__TOK_KV, S("t1"), S("proj"), S(tok), cur,
                                       &n, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    /* every single-character change is caught */
    size_t len = strlen(tok);
    for (size_t i = 0; i < len; i++) {
        snprintf(bad, sizeof bad, "%s", tok);
        bad[i] = bad[i] == 'A' ? 'B' : 'A';
        assert_int_equal(sdb__token_decode("page_token", SDB__TOK_HIST, S("t1"), S("proj"), S(bad),
                                           cur, &n, err, sizeof err),
                         SBX_INVALID_ARGUMENT);
    }
    /* truncated, padded, foreign characters, garbage */
    snprintf(bad, sizeof bad, "%s", tok);
    bad[len - 2] = '\0';
    assert_int_equal(sdb__token_decode("page_token", SDB__TOK_HIST, S("t1"), S("proj"), S(bad), cur,
                                       &n, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    memcpy(bad, tok, len);
    bad[len] = '=';
    bad[len + 1] = '\0';
    assert_int_equal(sdb__token_decode("page_token", SDB__TOK_HIST, S("t1"), S("proj"), S(bad), cur,
                                       &n, err, sizeof err),
                     SBX_INVALID_ARGUMENT);
    const char *garbage[] = {"x", "!!!!", "AAAA", "not a token", "////"};
    for (size_t i = 0; i < sizeof garbage / sizeof *garbage; i++)
        assert_int_equal(sdb__token_decode("page_token", SDB__TOK_HIST, S("t1"), S("proj"),
                                           S(garbage[i]), cur, &n, err, sizeof err),
                         SBX_INVALID_ARGUMENT);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(keys_successor),
    cmocka_unit_test(keys_tenant_scopes_never_overlap),
    cmocka_unit_test(validate_messages_name_field_and_limit),
    cmocka_unit_test(rocksdb_errors_map_to_status),
    cmocka_unit_test(tokens_roundtrip),
    cmocka_unit_test(tokens_reject_bad_input),
};
SBX_TEST_MAIN(tests)
