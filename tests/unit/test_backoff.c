/* test_backoff.c: the retry schedule. */
#include "test_main.h"

#include "backoff.h"

static void grows_and_caps_without_jitter(void **state)
{
    (void)state;
    sbx_backoff b = {
        .initial_ms = 100, .max_ms = 1000, .multiplier = 2, .jitter = 0, .max_attempts = 10};
    uint64_t seed = 1;
    assert_int_equal(sbx_backoff_delay_ms(&b, 1, &seed), 100);
    assert_int_equal(sbx_backoff_delay_ms(&b, 2, &seed), 200);
    assert_int_equal(sbx_backoff_delay_ms(&b, 3, &seed), 400);
    assert_int_equal(sbx_backoff_delay_ms(&b, 4, &seed), 800);
    assert_int_equal(sbx_backoff_delay_ms(&b, 5, &seed), 1000);
    assert_int_equal(sbx_backoff_delay_ms(&b, 50, &seed), 1000);
}

static void jitter_stays_in_band_and_varies(void **state)
{
    (void)state;
    sbx_backoff b = {
        .initial_ms = 1000, .max_ms = 100000, .multiplier = 1.6, .jitter = 0.2, .max_attempts = 5};
    uint64_t seed = 42;
    int64_t lo = 1 << 30, hi = 0;
    for (int i = 0; i < 2000; i++) {
        int64_t d = sbx_backoff_delay_ms(&b, 1, &seed);
        assert_in_range(d, 800, 1200);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    assert_true(lo < 850);
    assert_true(hi > 1150);
    for (int i = 0; i < 200; i++)
        assert_in_range(sbx_backoff_delay_ms(&b, 3, &seed), 2048, 3072); /* 2560 +/- 20% */
}

static void multiplier_below_one_is_flat(void **state)
{
    (void)state;
    sbx_backoff b = {
        .initial_ms = 50, .max_ms = 500, .multiplier = 0.5, .jitter = 0, .max_attempts = 3};
    uint64_t seed = 7;
    assert_int_equal(sbx_backoff_delay_ms(&b, 4, &seed), 50);
    assert_int_equal(sbx_backoff_delay_ms(&b, 0, &seed), 50);
}

static void defaults_are_sane(void **state)
{
    (void)state;
    assert_true(sbx_backoff_default.initial_ms > 0);
    assert_true(sbx_backoff_default.max_ms >= sbx_backoff_default.initial_ms);
    assert_true(sbx_backoff_default.multiplier >= 1);
    assert_true(sbx_backoff_default.max_attempts > 1);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(grows_and_caps_without_jitter),
    cmocka_unit_test(jitter_stays_in_band_and_varies),
    cmocka_unit_test(multiplier_below_one_is_flat),
    cmocka_unit_test(defaults_are_sane),
};
SBX_TEST_MAIN(tests)
