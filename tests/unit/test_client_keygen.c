/* test_client_keygen.c: new API keys (client/keygen.c): "sbx_" + 256 random bits, the
 * keys-file line TENANT:SHA256HEX that the services' own parser accepts, bad tenant names. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "sbx.h"
#include "test_main.h"

static void test_keygen_format(void **state)
{
    (void)state;
    char *k1 = NULL, *l1 = NULL, *k2 = NULL, *l2 = NULL;
    assert_null(sbx_keygen("alice", &k1, &l1));
    assert_null(sbx_keygen("alice", &k2, &l2));
    /* "sbx_" + 43 base64url chars (256 bits) */
    assert_int_equal(strlen(k1), 4 + 43);
    assert_memory_equal(k1, "sbx_", 4);
    for (const char *p = k1 + 4; *p; p++)
        assert_true((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_');
    assert_string_not_equal(k1, k2);
    /* line 2 is TENANT:SHA256HEX(key), exactly what the services' keys file expects */
    char hex[65];
    sbx_sha256_hex(k1, strlen(k1), hex);
    char want[128];
    snprintf(want, sizeof want, "alice:%s", hex);
    assert_string_equal(l1, want);
    /* and the services' own parser accepts it and maps the key to the tenant */
    char err[128];
    sbx_auth *au = sbx_auth_parse(l1, strlen(l1), err, sizeof err);
    assert_non_null(au);
    char authz[128];
    snprintf(authz, sizeof authz, "Bearer %s", k1);
    const char *tenant = NULL;
    bool svc = false;
    assert_int_equal(sbx_auth_check(au, authz, strlen(authz), &tenant, &svc), 0);
    assert_string_equal(tenant, "alice");
    sbx_auth_free(au);
    free(k1);
    free(l1);
    free(k2);
    free(l2);
}

static void test_keygen_bad_tenant(void **state)
{
    (void)state;
    char *k = NULL, *l = NULL;
    const char *bad[] = {"", "a b", "x/y", "@service"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sbx_error *e = sbx_keygen(bad[i], &k, &l);
        assert_non_null(e);
        assert_int_equal(e->code, SBX_CODE_INVALID_ARGUMENT);
        assert_null(k);
        assert_null(l);
        sbx_error_free(e);
    }
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_keygen_format),
    cmocka_unit_test(test_keygen_bad_tenant),
};
SBX_TEST_MAIN(tests)
