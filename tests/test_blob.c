/* test_blob.c — the embedding blob: layout, round trip, every corruption. */
#include "testutil.h"

#include "blob.h"
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define K 58
#define D 256
#define FP UINT64_C(0x9e3779b97f4a7c15)
#define CREATED INT64_C(1735689600) /* 2025-01-01 */

static float *random_tokens(size_t n, uint64_t seed)
{
    dv_rng r;
    dv_rng_seed(&r, seed);
    float *u = malloc(n * sizeof *u);
    assert_non_null(u);
    for (size_t i = 0; i < n; i++)
        u[i] = (float)dv_rng_normal(&r);
    return u;
}

static uint8_t *make_blob(const float *u, size_t k, size_t dim, dv365_q4_method m, size_t *size)
{
    *size = dv365_blob_size(k, dim);
    assert_true(*size > 0);
    uint8_t *blob = malloc(*size);
    assert_non_null(blob);
    ASSERT_OK(dv365_blob_encode(u, k, dim, FP, CREATED, m, blob, *size));
    return blob;
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void test_size_and_layout(void **state)
{
    (void)state;
    /* the paper's 58 x 256 user: 58 rows of 132 B (fp16 scale/bias) + header */
    assert_int_equal(dv365_blob_size(K, D), 48 + 58 * 132);
    assert_int_equal(dv365_blob_size(K, D), 7704);
    assert_int_equal(dv365_blob_size(1, 1), 48 + 5);
    assert_int_equal(dv365_blob_size(0, D), 0);
    assert_int_equal(dv365_blob_size(K, 0), 0);
    assert_int_equal(dv365_blob_size((size_t)UINT32_MAX + 1, 4), 0);

    float *u = random_tokens(3 * 5, 1);
    size_t size;
    uint8_t *blob = make_blob(u, 3, 5, DV365_Q4_GREEDY, &size);
    assert_memory_equal(blob, "DV365Q4B", 8);
    assert_int_equal(le64(blob + 8), dv_blob_checksum(blob, size));
    const uint8_t fixed[] = {1, 0, 4, 1, 0, 0, 0, 0, 3, 0, 0, 0, 5, 0, 0, 0};
    assert_memory_equal(blob + 16, fixed, sizeof fixed);
    assert_int_equal(le64(blob + 32), FP);
    assert_int_equal(le64(blob + 40), (uint64_t)CREATED);
    /* the rows are exactly dv365_q4_quantize's */
    uint8_t rows[3 * 7];
    ASSERT_OK(dv365_q4_quantize(u, 3, 5, DV365_Q4_GREEDY, rows, sizeof rows));
    assert_memory_equal(blob + 48, rows, sizeof rows);
    free(u);
    free(blob);
}

static void test_round_trip(void **state)
{
    (void)state;
    float *u = random_tokens(K * D, 2);
    float *v = malloc(K * D * sizeof *v), *w = malloc(K * D * sizeof *w);
    for (int m = 0; m <= 1; m++) {
        size_t size;
        uint8_t *blob = make_blob(u, K, D, (dv365_q4_method)m, &size);
        uint64_t fp = 0;
        int64_t created = 0;
        size_t k = 0, dim = 0;
        ASSERT_OK(dv365_blob_inspect(blob, size, &fp, &created, &k, &dim));
        assert_int_equal(fp, FP);
        assert_int_equal(created, CREATED);
        assert_int_equal(k, K);
        assert_int_equal(dim, D);
        ASSERT_OK(dv365_blob_inspect(blob, size, NULL, NULL, NULL, NULL));
        ASSERT_OK(dv365_blob_decode(blob, size, FP, K, D, v));
        ASSERT_OK(dv365_blob_decode(blob, size, 0, K, D, w)); /* 0 = any model */
        assert_memory_equal(v, w, K * D * sizeof *v);
        /* decode == dequantize(quantize) */
        uint8_t *q = malloc(K * dv365_q4_row_bytes(D));
        ASSERT_OK(dv365_q4_quantize(u, K, D, (dv365_q4_method)m, q, K * dv365_q4_row_bytes(D)));
        ASSERT_OK(dv365_q4_dequantize(q, K * dv365_q4_row_bytes(D), K, D, w));
        assert_memory_equal(v, w, K * D * sizeof *v);
        double se = 0;
        for (size_t i = 0; i < K * D; i++)
            se += ((double)u[i] - v[i]) * ((double)u[i] - v[i]);
        assert_true(sqrt(se / (K * D)) < 0.14);
        /* the caller's expectations */
        ASSERT_ERR(dv365_blob_decode(blob, size, FP + 1, K, D, v), DV365_E_MISMATCH, "model");
        ASSERT_ERR(dv365_blob_decode(blob, size, FP, K - 1, D, v), DV365_E_MISMATCH,
                   "58 x 256, the caller expects 57 x 256");
        ASSERT_ERR(dv365_blob_decode(blob, size, FP, K, 128, v), DV365_E_MISMATCH, "128");
        free(q);
        free(blob);
    }
    free(u);
    free(v);
    free(w);
}

static void test_encode_errors(void **state)
{
    (void)state;
    float *u = random_tokens(K * D, 3);
    size_t size = dv365_blob_size(K, D);
    uint8_t *blob = malloc(size);
    ASSERT_ERR(dv365_blob_encode(NULL, K, D, FP, CREATED, 0, blob, size), DV365_E_NULL, "'U'");
    ASSERT_ERR(dv365_blob_encode(u, K, D, FP, CREATED, 0, NULL, size), DV365_E_NULL, "'out'");
    ASSERT_ERR(dv365_blob_encode(u, 0, D, FP, CREATED, 0, blob, size), DV365_E_INVALID, "k > 0");
    ASSERT_ERR(dv365_blob_encode(u, K, D, FP, -1, 0, blob, size), DV365_E_TIMESTAMP, "-1");
    ASSERT_ERR(dv365_blob_encode(u, K, D, FP, DV365_TIME_MAX + 1, 0, blob, size),
               DV365_E_TIMESTAMP, "4102444801");
    ASSERT_OK(dv365_blob_encode(u, K, D, FP, DV365_TIME_MAX, 0, blob, size));
    ASSERT_OK(dv365_blob_encode(u, K, D, FP, 0, 0, blob, size));
    ASSERT_ERR(dv365_blob_encode(u, K, D, FP, CREATED, 0, blob, size - 1),
               DV365_E_BUFFER_TOO_SMALL, "needs 7704");
    ASSERT_ERR(dv365_blob_encode(u, K, D, FP, CREATED, (dv365_q4_method)2, blob, size),
               DV365_E_INVALID, "method 2");
    u[5 * D + 9] = NAN;
    ASSERT_ERR(dv365_blob_encode(u, K, D, FP, CREATED, 0, blob, size), DV365_E_NONFINITE,
               "blob encode: row 5, column 9 is NaN");
    /* a failed encode leaves nothing that decodes */
    float *v = malloc(K * D * sizeof *v);
    ASSERT_ERR(dv365_blob_decode(blob, size, 0, K, D, v), DV365_E_FORMAT, "magic");
    free(v);
    free(u);
    free(blob);
}

static void test_foreign_truncated_version(void **state)
{
    (void)state;
    float *u = random_tokens(K * D, 4), *v = malloc(K * D * sizeof *v);
    size_t size;
    uint8_t *blob = make_blob(u, K, D, DV365_Q4_MINMAX, &size);
    ASSERT_ERR(dv365_blob_inspect(NULL, size, NULL, NULL, NULL, NULL), DV365_E_NULL, "'blob'");
    ASSERT_ERR(dv365_blob_decode(blob, size, 0, K, D, NULL), DV365_E_NULL, "'U'");
    /* every truncation, and one trailing byte */
    for (size_t n = 0; n < size; n++) {
        dv365_status st = dv365_blob_decode(blob, n, 0, K, D, v);
        assert_int_equal(st, DV365_E_FORMAT);
    }
    ASSERT_ERR(dv365_blob_inspect(blob, 47, NULL, NULL, NULL, NULL), DV365_E_FORMAT,
               "truncated: 47 bytes");
    ASSERT_ERR(dv365_blob_inspect(blob, size - 1, NULL, NULL, NULL, NULL), DV365_E_FORMAT,
               "truncated: 7703 bytes, a 58 x 256 blob has 7704");
    uint8_t *longer = malloc(size + 1);
    memcpy(longer, blob, size);
    longer[size] = 0;
    ASSERT_ERR(dv365_blob_inspect(longer, size + 1, NULL, NULL, NULL, NULL), DV365_E_FORMAT,
               "trailing bytes");
    free(longer);
    /* foreign data */
    const char *json = "{\"user\": 42, \"embedding\": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]}";
    ASSERT_ERR(dv365_blob_inspect((const uint8_t *)json, strlen(json), NULL, NULL, NULL, NULL),
               DV365_E_FORMAT, "not a dv365 embedding blob (wrong magic)");
    /* a future version, even with a valid checksum */
    blob[16] = 2;
    uint64_t c = dv_blob_checksum(blob, size);
    for (int i = 0; i < 8; i++)
        blob[8 + i] = (uint8_t)(c >> (8 * i));
    ASSERT_ERR(dv365_blob_decode(blob, size, 0, K, D, v), DV365_E_VERSION, "version 2");
    free(blob);
    free(u);
    free(v);
}

/* Flip every byte, and every bit of the header, in turn: each corruption is
 * rejected; inside the rows it is the checksum that catches it. */
static void test_every_corruption(void **state)
{
    (void)state;
    float *u = random_tokens(K * D, 5), *v = malloc(K * D * sizeof *v);
    size_t size;
    uint8_t *blob = make_blob(u, K, D, DV365_Q4_GREEDY, &size);
    size_t counts[5] = {0}; /* format, version, checksum, mismatch, other */
    for (size_t i = 0; i < size; i++) {
        for (int bit = -1; bit < (i < DV365_BLOB_HEADER_BYTES ? 8 : 0); bit++) {
            uint8_t flip = bit < 0 ? 0xff : (uint8_t)(1u << bit);
            blob[i] ^= flip;
            dv365_status st = dv365_blob_decode(blob, size, FP, K, D, v);
            blob[i] ^= flip;
            if (st == DV365_OK)
                fail_msg("flipping byte %zu with %02x was not detected", i, flip);
            if (i >= DV365_BLOB_HEADER_BYTES && st != DV365_E_CHECKSUM)
                fail_msg("row byte %zu: got %d, expected the checksum to catch it", i, (int)st);
            switch (st) {
            case DV365_E_FORMAT: counts[0]++; break;
            case DV365_E_VERSION: counts[1]++; break;
            case DV365_E_CHECKSUM: counts[2]++; break;
            case DV365_E_MISMATCH: counts[3]++; break;
            default: counts[4]++; break;
            }
        }
    }
    assert_true(counts[0] > 0 && counts[1] > 0 && counts[2] > 0);
    assert_int_equal(counts[3], 0); /* integrity is checked before expectations */
    assert_int_equal(counts[4], 0);
    ASSERT_OK(dv365_blob_decode(blob, size, FP, K, D, v)); /* restored intact */
    free(blob);
    free(u);
    free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size_and_layout),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_encode_errors),
        cmocka_unit_test(test_foreign_truncated_version),
        cmocka_unit_test(test_every_corruption),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
