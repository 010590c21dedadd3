/* test_auth.c: keys-file parsing, bearer checks and address classification. */
#include "test_main.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"

/* sha256("secret-a") etc. are computed with the same function the server uses; one known
 * vector pins that function to real SHA-256. */
static void sha256_known_vector(void **state)
{
    (void)state;
    char h[65];
    sbx_sha256_hex("abc", 3, h);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sbx_sha256_hex("", 0, h);
    assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static char *keys_text(void)
{
    char a[65], b[65], s[65];
    sbx_sha256_hex("key-a", 5, a);
    sbx_sha256_hex("key-b", 5, b);
    sbx_sha256_hex("svc", 3, s);
    for (char *p = b; *p; p++) /* uppercase hex is accepted */
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 32);
    char *t = NULL;
    assert_true(asprintf(&t, "# comment\n\nacme:%s\n  globex:%s  \n@service:%s\n", a, b, s) > 0);
    return t;
}

static void parse_and_check(void **state)
{
    (void)state;
    char err[256];
    char *t = keys_text();
    sbx_auth *a = sbx_auth_parse(t, strlen(t), err, sizeof err);
    free(t);
    assert_non_null(a);
    assert_int_equal(sbx_auth_count(a), 3);
    const char *tenant = NULL;
    bool svc = true;
    assert_int_equal(sbx_auth_check(a, "Bearer key-a", 12, &tenant, &svc), 0);
    assert_string_equal(tenant, "acme");
    assert_false(svc);
    assert_int_equal(sbx_auth_check(a, "bearer key-b", 12, &tenant, &svc), 0);
    assert_string_equal(tenant, "globex");
    assert_int_equal(sbx_auth_check(a, "Bearer svc", 10, &tenant, &svc), 0);
    assert_true(svc);
    assert_int_equal(sbx_auth_check(a, "Bearer nope", 11, &tenant, &svc), -2);
    assert_int_equal(sbx_auth_check(a, "Basic key-a", 11, &tenant, &svc), -1);
    assert_int_equal(sbx_auth_check(a, "Bearer ", 7, &tenant, &svc), -1);
    sbx_auth_free(a);
}

static void empty_and_comment_only_files(void **state)
{
    (void)state;
    char err[256];
    sbx_auth *a = sbx_auth_parse("", 0, err, sizeof err);
    assert_non_null(a);
    assert_int_equal(sbx_auth_count(a), 0);
    const char *tenant;
    bool svc;
    assert_int_equal(sbx_auth_check(a, "Bearer x", 8, &tenant, &svc), -2);
    sbx_auth_free(a);
    a = sbx_auth_parse("#\n\n# only comments\n", 19, err, sizeof err);
    assert_non_null(a);
    assert_int_equal(sbx_auth_count(a), 0);
    sbx_auth_free(a);
}

static void malformed_lines_name_the_line(void **state)
{
    (void)state;
    char err[256];
    const char *bad1 = "acme:abc\n";
    assert_null(sbx_auth_parse(bad1, strlen(bad1), err, sizeof err));
    assert_non_null(strstr(err, "line 1"));
    assert_non_null(strstr(err, "64 hex"));
    const char *bad2 = "# ok\nno-colon-here\n";
    assert_null(sbx_auth_parse(bad2, strlen(bad2), err, sizeof err));
    assert_non_null(strstr(err, "line 2"));
    char bad3[200];
    snprintf(bad3, sizeof bad3, "bad tenant:%064d\n", 0);
    assert_null(sbx_auth_parse(bad3, strlen(bad3), err, sizeof err));
    assert_non_null(strstr(err, "tenant"));
    char bad4[200];
    snprintf(bad4, sizeof bad4, "acme:%063dz\n", 0);
    assert_null(sbx_auth_parse(bad4, strlen(bad4), err, sizeof err));
    assert_non_null(strstr(err, "non-hex"));
}

static void load_missing_file(void **state)
{
    (void)state;
    char err[256];
    assert_null(sbx_auth_load("/nonexistent/keys", err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/keys"));
    char path[] = "/tmp/sbx-keys-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    char *t = keys_text();
    assert_int_equal(write(fd, t, strlen(t)), (ssize_t)strlen(t));
    close(fd);
    free(t);
    sbx_auth *a = sbx_auth_load(path, err, sizeof err);
    unlink(path);
    assert_non_null(a);
    assert_int_equal(sbx_auth_count(a), 3);
    sbx_auth_free(a);
}

static void tenant_names(void **state)
{
    (void)state;
    assert_true(sbx_tenant_valid("acme", 4));
    assert_true(sbx_tenant_valid("a.b_c-9", 7));
    assert_false(sbx_tenant_valid("", 0));
    assert_false(sbx_tenant_valid("a b", 3));
    assert_false(sbx_tenant_valid("a\0b", 3));
    char long_name[80];
    memset(long_name, 'a', sizeof long_name);
    assert_true(sbx_tenant_valid(long_name, 64));
    assert_false(sbx_tenant_valid(long_name, 65));
}

static void loopback_addresses(void **state)
{
    (void)state;
    assert_true(sbx_addr_is_loopback("127.0.0.1:50051"));
    assert_true(sbx_addr_is_loopback("127.1.2.3:0"));
    assert_true(sbx_addr_is_loopback("[::1]:80"));
    assert_true(sbx_addr_is_loopback("localhost:1"));
    assert_false(sbx_addr_is_loopback("0.0.0.0:50051"));
    assert_false(sbx_addr_is_loopback("[::]:50051"));
    assert_false(sbx_addr_is_loopback("10.0.0.1:1"));
    assert_false(sbx_addr_is_loopback("localhost.evil.com:1"));
    assert_false(sbx_addr_is_loopback("127.evil.example:50051"));
    assert_false(sbx_addr_is_loopback("127.0.0.1.nip.io:1"));
    assert_true(sbx_addr_is_loopback("ipv4:127.0.0.1:5"));
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(sha256_known_vector),
    cmocka_unit_test(parse_and_check),
    cmocka_unit_test(empty_and_comment_only_files),
    cmocka_unit_test(malformed_lines_name_the_line),
    cmocka_unit_test(load_missing_file),
    cmocka_unit_test(tenant_names),
    cmocka_unit_test(loopback_addresses),
};
SBX_TEST_MAIN(tests)
