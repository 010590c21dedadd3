/* test_status.c: the status table (names, parsing, errno mapping). */
#include "test_main.h"

#include <errno.h>
#include <string.h>

#include "status.h"

static void names_match_grpc_numbers(void **state)
{
    (void)state;
    assert_string_equal(sbx_status_name(0), "OK");
    assert_string_equal(sbx_status_name(5), "NOT_FOUND");
    assert_string_equal(sbx_status_name(8), "RESOURCE_EXHAUSTED");
    assert_string_equal(sbx_status_name(16), "UNAUTHENTICATED");
    assert_int_equal(SBX_UNAVAILABLE, 14);
    assert_int_equal(SBX_DATA_LOSS, 15);
    assert_string_equal(sbx_status_name(99), "UNKNOWN");
    assert_string_equal(sbx_status_name(-1), "UNKNOWN");
}

static void parse_names_and_numbers(void **state)
{
    (void)state;
    assert_int_equal(sbx_status_parse("not_found"), SBX_NOT_FOUND);
    assert_int_equal(sbx_status_parse("FAILED_PRECONDITION"), SBX_FAILED_PRECONDITION);
    assert_int_equal(sbx_status_parse("14"), SBX_UNAVAILABLE);
    assert_int_equal(sbx_status_parse("17"), -1);
    assert_int_equal(sbx_status_parse("NOPE"), -1);
    assert_int_equal(sbx_status_parse(""), -1);
    for (int i = 0; i < SBX_STATUS_COUNT; i++)
        assert_int_equal(sbx_status_parse(sbx_status_name(i)), i);
}

static void errno_mapping(void **state)
{
    (void)state;
    assert_int_equal(sbx_status_from_errno(ENOENT), SBX_NOT_FOUND);
    assert_int_equal(sbx_status_from_errno(-ENOENT), SBX_NOT_FOUND);
    assert_int_equal(sbx_status_from_errno(EROFS), SBX_PERMISSION_DENIED);
    assert_int_equal(sbx_status_from_errno(EACCES), SBX_PERMISSION_DENIED);
    assert_int_equal(sbx_status_from_errno(ENOSPC), SBX_RESOURCE_EXHAUSTED);
    assert_int_equal(sbx_status_from_errno(EDQUOT), SBX_RESOURCE_EXHAUSTED);
    assert_int_equal(sbx_status_from_errno(EEXIST), SBX_ALREADY_EXISTS);
    assert_int_equal(sbx_status_from_errno(ENAMETOOLONG), SBX_INVALID_ARGUMENT);
    assert_int_equal(sbx_status_from_errno(ELOOP), SBX_PERMISSION_DENIED);
    assert_int_equal(sbx_status_from_errno(0), SBX_OK);
    assert_int_equal(sbx_status_from_errno(EHOSTDOWN), SBX_INTERNAL);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(names_match_grpc_numbers),
    cmocka_unit_test(parse_names_and_numbers),
    cmocka_unit_test(errno_mapping),
};
SBX_TEST_MAIN(tests)
