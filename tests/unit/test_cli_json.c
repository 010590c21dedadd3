/* test_client_json.c: the CLI's JSON writers: escaping of quotes, control bytes, valid UTF-8
 * kept as is, invalid bytes as \udcXX; RFC 3339 times; durations. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "test_main.h"

static char *render(const void *s, size_t n)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    json_str(f, s, n);
    fclose(f);
    return buf;
}

#define CHECK(in, want)                                                                            \
    do {                                                                                           \
        char *got = render(in, sizeof(in) - 1);                                                    \
        assert_string_equal(got, want);                                                            \
        free(got);                                                                                 \
    } while (0)

static void test_json_plain(void **state)
{
    (void)state;
    CHECK("hello", "\"hello\"");
    CHECK("", "\"\"");
}

static void test_json_specials(void **state)
{
    (void)state;
    CHECK("a\"b\\c", "\"a\\\"b\\\\c\"");
    CHECK("l1\nl2\r\t", "\"l1\\nl2\\r\\t\"");
    CHECK("\x01\x1f\x7f", "\"\\u0001\\u001f\\u007f\"");
    CHECK("\b\f", "\"\\b\\f\"");
    CHECK("nul\0byte", "\"nul\\u0000byte\"");
}

static void test_json_utf8_kept(void **state)
{
    (void)state;
    CHECK("caf\xc3\xa9", "\"caf\xc3\xa9\"");
    CHECK("\xe2\x82\xac", "\"\xe2\x82\xac\"");         /* euro sign */
    CHECK("\xf0\x9f\x98\x80", "\"\xf0\x9f\x98\x80\""); /* emoji */
    CHECK("\xe2\x80\xa8", "\"\\u2028\"");              /* line separator escaped */
}

static void test_json_invalid_bytes(void **state)
{
    (void)state;
    CHECK("\xff", "\"\\udcff\"");
    CHECK("a\x80z", "\"a\\udc80z\"");
    CHECK("\xc3", "\"\\udcc3\"");                                  /* truncated sequence */
    CHECK("\xc0\xaf", "\"\\udcc0\\udcaf\"");                       /* overlong */
    CHECK("\xed\xa0\x80", "\"\\udced\\udca0\\udc80\"");            /* encoded surrogate */
    CHECK("\xf4\x90\x80\x80", "\"\\udcf4\\udc90\\udc80\\udc80\""); /* > U+10FFFF */
}

static void test_rfc3339(void **state)
{
    (void)state;
    char b[48];
    cli_rfc3339(0, b, sizeof b);
    assert_string_equal(b, "1970-01-01T00:00:00.000Z");
    cli_rfc3339(1767323045678LL, b, sizeof b);
    assert_string_equal(b, "2026-01-02T03:04:05.678Z");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    json_time(f, 0);
    fputc(' ', f);
    json_time(f, 1000);
    fputc(' ', f);
    json_duration_ms(f, 1234);
    fputc(' ', f);
    json_duration_ms(f, 5);
    fclose(f);
    assert_string_equal(buf, "null \"1970-01-01T00:00:01.000Z\" 1.234 0.005");
    free(buf);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_json_plain),     cmocka_unit_test(test_json_specials),
    cmocka_unit_test(test_json_utf8_kept), cmocka_unit_test(test_json_invalid_bytes),
    cmocka_unit_test(test_rfc3339),
};
SBX_TEST_MAIN(tests)
