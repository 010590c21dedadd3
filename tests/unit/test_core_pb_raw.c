/* test_core_pb_raw.c: packed bytes through a message unchanged (core/pb_raw.c), as the store
 * client sends the outbox's RecordExecutionRequest: a real record (nested message, bytes,
 * negative and large varints) and fields of every wire type pack back byte for byte; bytes that
 * are not protobuf wire format are refused. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pb_raw.h"
#include "sbx/v1/store.pb-c.h"
#include "test_main.h"

/* Wraps bytes in an empty RecordExecutionRequest and packs it again. */
static uint8_t *repack(const uint8_t *bytes, size_t len, size_t *out_len)
{
    Sbx__V1__RecordExecutionRequest m = SBX__V1__RECORD_EXECUTION_REQUEST__INIT;
    assert_int_equal(sbx_pb_raw_wrap(&m.base, bytes, len), 0);
    *out_len = sbx__v1__record_execution_request__get_packed_size(&m);
    uint8_t *buf = malloc(*out_len ? *out_len : 1);
    assert_int_equal(sbx__v1__record_execution_request__pack(&m, buf), *out_len);
    sbx_pb_raw_clear(&m.base);
    return buf;
}

static void test_record_passes_through(void **state)
{
    (void)state;
    Sbx__V1__RecordExecutionRequest req = SBX__V1__RECORD_EXECUTION_REQUEST__INIT;
    Sbx__V1__ExecutionRecord rec = SBX__V1__EXECUTION_RECORD__INIT;
    char *argv[] = {"sh", "-c", "echo hi"};
    req.project_id = "proj";
    req.record = &rec;
    req.cache_ttl_s = 3600;
    rec.record_id = "sb-1.7";
    rec.command = "echo hi";
    rec.argv = argv;
    rec.n_argv = 3;
    rec.exit_code = -1; /* a ten-byte varint */
    rec.stdout.data = (uint8_t *)"hi\n";
    rec.stdout.len = 3;
    rec.started_at_unix_ms = 1700000000123;
    rec.duration_us = 5;
    size_t len = sbx__v1__record_execution_request__get_packed_size(&req);
    uint8_t *bytes = malloc(len);
    sbx__v1__record_execution_request__pack(&req, bytes);
    size_t n;
    uint8_t *again = repack(bytes, len, &n);
    assert_int_equal(n, len);
    assert_memory_equal(again, bytes, len);
    /* and the store would read the same record */
    Sbx__V1__RecordExecutionRequest *got =
        sbx__v1__record_execution_request__unpack(NULL, n, again);
    assert_non_null(got);
    assert_string_equal(got->record->record_id, "sb-1.7");
    assert_int_equal(got->record->exit_code, -1);
    assert_int_equal(got->cache_ttl_s, 3600);
    sbx__v1__record_execution_request__free_unpacked(got, NULL);
    free(again);
    free(bytes);
}

static void test_every_wire_type(void **state)
{
    (void)state;
    /* field 1 varint 300, field 99 fixed64, field 100 fixed32, field 7 length-delimited "ab",
       field 536870911 (the largest number) varint 0 */
    static const uint8_t b[] = {0x08, 0xac, 0x02,                              /* 1 */
                                0x99, 0x06, 1,    2,    3,    4,   5, 6, 7, 8, /* 99 */
                                0xa5, 0x06, 9,    8,    7,    6,               /* 100 */
                                0x3a, 0x02, 'a',  'b',                         /* 7 */
                                0xf8, 0xff, 0xff, 0xff, 0x0f, 0x00};           /* max */
    size_t n;
    uint8_t *again = repack(b, sizeof b, &n);
    assert_int_equal(n, sizeof b);
    assert_memory_equal(again, b, sizeof b);
    free(again);
    again = repack(b, 0, &n); /* nothing */
    assert_int_equal(n, 0);
    free(again);
}

static void test_not_wire_format(void **state)
{
    (void)state;
    static const uint8_t truncated_len[] = {0x0a, 0x05, 'a', 'b'};
    static const uint8_t group[] = {0x0b, 0x0c};
    static const uint8_t field_zero[] = {0x00, 0x01};
    static const uint8_t long_varint[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff,
                                          0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    static const uint8_t cut_fixed64[] = {0x09, 1, 2, 3};
    const struct {
        const uint8_t *b;
        size_t n;
    } bad[] = {{truncated_len, sizeof truncated_len},
               {group, sizeof group},
               {field_zero, sizeof field_zero},
               {long_varint, sizeof long_varint},
               {cut_fixed64, sizeof cut_fixed64}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        Sbx__V1__RecordExecutionRequest m = SBX__V1__RECORD_EXECUTION_REQUEST__INIT;
        assert_int_equal(sbx_pb_raw_wrap(&m.base, bad[i].b, bad[i].n), -EBADMSG);
        assert_int_equal(m.base.n_unknown_fields, 0);
    }
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_record_passes_through),
    cmocka_unit_test(test_every_wire_type),
    cmocka_unit_test(test_not_wire_format),
};

SBX_TEST_MAIN(tests)
