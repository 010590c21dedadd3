/* test_pbcheck.c: NUL bytes inside string fields are found at any depth, with the field path. */
#include "test_main.h"

#include <string.h>

#include "pbcheck.h"
#include "sbx/v1/store.pb-c.h"

static void top_level_string(void **state)
{
    (void)state;
    char path[64];
    /* KvSetRequest{key = "a\0b" (field 1), value = "\0\0" (field 2, bytes: allowed)} */
    const uint8_t bad[] = {0x0a, 3, 'a', 0, 'b', 0x12, 2, 0, 0};
    assert_int_equal(
        sbx_pb_find_nul(&sbx__v1__kv_set_request__descriptor, bad, sizeof bad, path, sizeof path),
        1);
    assert_string_equal(path, "key");
    const uint8_t ok[] = {0x0a, 3, 'a', 'x', 'b', 0x12, 2, 0, 0};
    assert_int_equal(
        sbx_pb_find_nul(&sbx__v1__kv_set_request__descriptor, ok, sizeof ok, path, sizeof path), 0);
}

static void nested_and_repeated(void **state)
{
    (void)state;
    char path[64];
    /* AppendExecutionRequest{project_id = "p" (1), record (2) = ExecutionRecord{argv (6?) ...}} */
    const ProtobufCFieldDescriptor *argv_f = protobuf_c_message_descriptor_get_field_by_name(
        &sbx__v1__execution_record__descriptor, "argv");
    const ProtobufCFieldDescriptor *rec_f = protobuf_c_message_descriptor_get_field_by_name(
        &sbx__v1__append_execution_request__descriptor, "record");
    assert_non_null(argv_f);
    assert_non_null(rec_f);
    uint8_t inner[] = {(uint8_t)(argv_f->id << 3 | 2),
                       2,
                       'l',
                       's',
                       (uint8_t)(argv_f->id << 3 | 2),
                       3,
                       '-',
                       0,
                       'l'};
    uint8_t msg[64];
    size_t n = 0;
    msg[n++] = 0x0a;
    msg[n++] = 1;
    msg[n++] = 'p';
    msg[n++] = (uint8_t)(rec_f->id << 3 | 2);
    msg[n++] = sizeof inner;
    memcpy(msg + n, inner, sizeof inner);
    n += sizeof inner;
    assert_int_equal(
        sbx_pb_find_nul(&sbx__v1__append_execution_request__descriptor, msg, n, path, sizeof path),
        1);
    assert_string_equal(path, "record.argv");
}

static void garbage_is_left_to_the_decoder(void **state)
{
    (void)state;
    char path[64];
    const uint8_t trunc[] = {0x0a, 50, 'a'};
    assert_int_equal(sbx_pb_find_nul(&sbx__v1__kv_set_request__descriptor, trunc, sizeof trunc,
                                     path, sizeof path),
                     0);
    const uint8_t group[] = {0x0b, 0x0c};
    assert_int_equal(sbx_pb_find_nul(&sbx__v1__kv_set_request__descriptor, group, sizeof group,
                                     path, sizeof path),
                     0);
    assert_int_equal(
        sbx_pb_find_nul(&sbx__v1__kv_set_request__descriptor, NULL, 0, path, sizeof path), 0);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(top_level_string),
    cmocka_unit_test(nested_and_repeated),
    cmocka_unit_test(garbage_is_left_to_the_decoder),
};
SBX_TEST_MAIN(tests)
