/* test_client_util.c: request ids (client/util.c): UUID version 4, fresh each time. */
#include <string.h>

#include "sbx.h"
#include "test_main.h"

static void test_request_id(void **state)
{
    (void)state;
    char a[37], b[37];
    sbx_request_id_new(a);
    sbx_request_id_new(b);
    assert_int_equal(strlen(a), 36);
    assert_string_not_equal(a, b);
    assert_int_equal(a[8], '-');
    assert_int_equal(a[14], '4'); /* version 4 */
    assert_true(strchr("89ab", a[19]) != NULL);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_request_id),
};
SBX_TEST_MAIN(tests)
