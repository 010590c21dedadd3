/* test_store_codec.c: the stored values (services/store/codec.c): every kind round-trips, a
 * decoder refuses a value of another format version or a truncated one, and cache and kv
 * entries expose their expiry at the one offset the compaction filter and the sweeper read. */
#include "test_main.h"

#include <stdlib.h>
#include <string.h>

#include "storedb_int.h"

#define S(x) sdb_slice_c(x)

static void counter_roundtrip(void **state)
{
    (void)state;
    sdb__buf b;
    sdb__buf_init(&b);
    sdb__counter c = {42, 7, 1700000000123, 1700000000001, -9}, d;
    sdb__counter_encode(&b, &c);
    assert_true(sdb__counter_decode(b.p, b.n, &d));
    assert_int_equal(d.last_seq, 42);
    assert_int_equal(d.exec_count, 7);
    assert_int_equal(d.last_recorded_ms, 1700000000123);
    assert_int_equal(d.last_time_ms, 1700000000001);
    assert_int_equal(d.last_exit_code, -9);
    assert_false(sdb__counter_decode(b.p, b.n - 1, &d));
    b.p[0] = 2; /* another format version */
    assert_false(sdb__counter_decode(b.p, b.n, &d));
    sdb__buf_free(&b);
}

static void history_record_roundtrip(void **state)
{
    (void)state;
    sdb__buf k, v;
    sdb__buf_init(&k);
    sdb__buf_init(&v);
    sdb__key_scope(&k, S("t"), S("p"));
    size_t scope_n = k.n;
    sdb__buf_be64(&k, 77);
    sdb__rec_encode(&v, 1700000000500, 1700000000400, S("rid-1"), sdb_slice_n("a\0b", 3));
    sdb_hist_rec r;
    assert_true(sdb__rec_decode(k.p, k.n, scope_n, v.p, v.n, &r));
    assert_int_equal(r.seq, 77);
    assert_int_equal(r.recorded_ms, 1700000000500);
    assert_int_equal(r.time_ms, 1700000000400);
    assert_int_equal(r.record_id.n, 5);
    assert_memory_equal(r.record_id.p, "rid-1", 5);
    assert_int_equal(r.data.n, 3);
    assert_memory_equal(r.data.p, "a\0b", 3);
    /* a key of another length is not a record of this scope */
    assert_false(sdb__rec_decode(k.p, k.n - 1, scope_n, v.p, v.n, &r));
    /* the record id's length runs past the end */
    assert_false(sdb__rec_decode_value(v.p, 1 + 8 + 8 + 1, &r));
    sdb__buf_free(&k);
    sdb__buf_free(&v);
}

static void record_id_entry_roundtrip(void **state)
{
    (void)state;
    sdb__buf b;
    sdb__buf_init(&b);
    sdb__recid_encode(&b, 5, 1700000000002, 1700000000001);
    sdb_hist_result r = {0};
    assert_true(sdb__recid_decode(b.p, b.n, &r));
    assert_int_equal(r.seq, 5);
    assert_int_equal(r.recorded_ms, 1700000000002);
    assert_int_equal(r.time_ms, 1700000000001);
    assert_false(sdb__recid_decode(b.p, b.n - 1, &r));
    sdb__buf_free(&b);
}

static void project_record_roundtrip(void **state)
{
    (void)state;
    sdb_field f[2] = {{S("a"), S("1")}, {S("bb"), S("")}};
    sdb__projrec p = {3, 1700000000000, 1700000000100, 10, 3600, 2, f}, q;
    sdb__buf b;
    sdb__buf_init(&b);
    sdb__projrec_encode(&b, &p);
    assert_true(sdb__projrec_decode(b.p, b.n, &q));
    assert_int_equal(q.version, 3);
    assert_int_equal(q.created_ms, 1700000000000);
    assert_int_equal(q.updated_ms, 1700000000100);
    assert_int_equal(q.ret_max_records, 10);
    assert_int_equal(q.ret_max_age_s, 3600);
    assert_int_equal(q.n_fields, 2);
    assert_memory_equal(q.fields[1].key.p, "bb", 2);
    assert_int_equal(q.fields[1].value.n, 0);
    free(q.fields);
    assert_false(sdb__projrec_decode(b.p, b.n - 1, &q));
    assert_null(q.fields);
    sdb__buf_free(&b);
}

static void entries_share_the_expiry_offset(void **state)
{
    (void)state;
    sdb__buf b;
    sdb__buf_init(&b);
    sdb__cache_val c = {1700000000000, 1700000009000, 4, S("payload")}, c2;
    sdb__cache_val_encode(&b, &c);
    assert_int_equal(sdb__entry_expiry(b.p, b.n), 1700000009000);
    assert_true(sdb__cache_val_decode(b.p, b.n, &c2));
    assert_int_equal(c2.seq, 4);
    assert_int_equal(c2.data.n, 7);
    assert_memory_equal(c2.data.p, "payload", 7);

    sdb__buf_reset(&b);
    sdb_kv_meta m = {12, 1700000005000, 1700000000000};
    sdb__kv_val_encode(&b, &m, S("v"));
    assert_int_equal(sdb__entry_expiry(b.p, b.n), 1700000005000);
    sdb__kv_val e;
    assert_true(sdb__kv_val_decode(b.p, b.n, 1700000004999, &e));
    assert_true(e.live);
    assert_int_equal(e.meta.version, 12);
    assert_true(sdb__kv_val_decode(b.p, b.n, 1700000005000, &e));
    assert_false(e.live); /* expired at its expiry */
    assert_int_equal(e.value.n, 1);

    assert_int_equal(sdb__entry_expiry(b.p, 16), 0); /* too short to hold one */
    b.p[0] = 2;
    assert_int_equal(sdb__entry_expiry(b.p, b.n), 0); /* another format version */
    assert_false(sdb__kv_val_decode(b.p, b.n, 0, &e));
    sdb__buf_free(&b);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(counter_roundtrip),
    cmocka_unit_test(history_record_roundtrip),
    cmocka_unit_test(record_id_entry_roundtrip),
    cmocka_unit_test(project_record_roundtrip),
    cmocka_unit_test(entries_share_the_expiry_offset),
};
SBX_TEST_MAIN(tests)
