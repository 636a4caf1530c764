/* test_quant4.c — 4-bit rowwise quantization: layout, error bounds, fast
 * paths equal to the reference, edge rows, errors.  Byte identity with
 * PyTorch is checked by tests/reference/q4_ref.py. */
#include "testutil.h"

#include "internal.h"
#include "quant4.h"

#include <cpuid.h>
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const dv_q4_impl k_fast[] = {DV_Q4_IMPL_AVX2, DV_Q4_IMPL_AVX512};

static float *gaussian(size_t n, uint64_t seed, double scale, double offset)
{
    dv_rng r;
    dv_rng_seed(&r, seed);
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(offset + scale * dv_rng_normal(&r));
    return x;
}

/* Quantize with impl and dequantize with the reference. */
static float *round_trip(const float *x, size_t rows, size_t dim, dv365_q4_method m,
                         dv_q4_impl impl, uint8_t **q_out)
{
    size_t qb = rows * dv365_q4_row_bytes(dim);
    uint8_t *q = malloc(qb);
    float *y = malloc(rows * dim * sizeof *y);
    assert_non_null(q);
    assert_non_null(y);
    ASSERT_OK(dv_q4_quantize_impl(x, rows, dim, m, q, qb, impl));
    ASSERT_OK(dv_q4_dequantize_impl(q, qb, rows, dim, y, DV_Q4_IMPL_REF));
    if (q_out)
        *q_out = q;
    else
        free(q);
    return y;
}

static void row_error(const float *x, const float *y, size_t dim, double *rmse, double *cosine,
                      double *l2)
{
    double se = 0, xy = 0, xx = 0, yy = 0;
    for (size_t c = 0; c < dim; c++) {
        double d = (double)x[c] - y[c];
        se += d * d;
        xy += (double)x[c] * y[c];
        xx += (double)x[c] * x[c];
        yy += (double)y[c] * y[c];
    }
    if (rmse)
        *rmse = sqrt(se / (double)dim);
    if (cosine)
        *cosine = xy / sqrt(xx * yy);
    if (l2)
        *l2 = sqrt(se);
}

/* The hardware conversions (F16C, round to nearest even) are the oracle. */
__attribute__((target("f16c"))) static uint16_t hw_f32_to_f16(float f)
{
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}

__attribute__((target("f16c"))) static float hw_f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }

static void test_f16_conversion(void **state)
{
    (void)state;
    assert_int_equal(dv_f32_to_f16(65519.0f), 0x7bff);
    assert_int_equal(dv_f32_to_f16(65520.0f), 0x7c00);
    assert_int_equal(dv_f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(dv_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(dv_f32_to_f16(0x1p-25f), 0x0000); /* tie to even: 0 */
    assert_int_equal(dv_f32_to_f16(0x1.8p-25f), 0x0001);
    assert_int_equal(dv_f32_to_f16(0x1.002p0f), 0x3c00); /* tie to even: down */
    assert_int_equal(dv_f32_to_f16(0x1.006p0f), 0x3c02); /* tie to even: up */
    assert_true(dv_f16_to_f32(0x0001) == 0x1p-24f);
    assert_true(dv_f16_to_f32(0xfbff) == -65504.0f);
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_F16C)) {
        printf("# no F16C on this CPU: exhaustive conversion check skipped\n");
        return;
    }
    /* every half converts to the float the hardware gives, and back */
    for (uint32_t h = 0; h < 65536; h++) {
        uint16_t hb = (uint16_t)h;
        float want = hw_f16_to_f32(hb), got = dv_f16_to_f32(hb);
        if (isnan(want)) {
            assert_true(isnan(got));
            continue;
        }
        assert_memory_equal(&want, &got, 4);
        assert_int_equal(dv_f32_to_f16(got), hb);
    }
    /* random floats of every exponent round like the hardware */
    dv_rng r;
    dv_rng_seed(&r, 16);
    for (int i = 0; i < 2000000; i++) {
        uint32_t bits = (uint32_t)dv_rng_next(&r);
        if (i % 2) /* concentrate on the half range and its edges */
            bits = (bits & 0x807fffffu) | ((uint32_t)(96 + (bits >> 24) % 48) << 23);
        float f;
        memcpy(&f, &bits, 4);
        uint16_t got = dv_f32_to_f16(f);
        if (isnan(f))
            assert_true((got & 0x7c00u) == 0x7c00u && (got & 0x3ffu) != 0);
        else
            assert_int_equal(got, hw_f32_to_f16(f));
    }
}

static void test_row_bytes_and_layout(void **state)
{
    (void)state;
    assert_int_equal(dv365_q4_row_bytes(0), 0);
    assert_int_equal(dv365_q4_row_bytes(1), 5);
    assert_int_equal(dv365_q4_row_bytes(2), 5);
    assert_int_equal(dv365_q4_row_bytes(3), 6);
    assert_int_equal(dv365_q4_row_bytes(256), 132);

    /* x = 0..15 (odd D = 17 with a 15 last): scale 1.0, bias 0, codes = x */
    float x[17];
    for (int c = 0; c < 16; c++)
        x[c] = (float)c;
    x[16] = 15.0f;
    uint8_t q[13];
    ASSERT_OK(dv365_q4_quantize(x, 1, 17, DV365_Q4_MINMAX, q, sizeof q));
    const uint8_t want[13] = {0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe,
                              0x0f, /* last code in the LOW nibble, high nibble 0 */
                              0x00, 0x3c, /* fp16 1.0, little-endian */
                              0x00, 0x00};
    assert_memory_equal(q, want, sizeof want);
    float y[17];
    ASSERT_OK(dv365_q4_dequantize(q, sizeof q, 1, 17, y));
    assert_memory_equal(x, y, sizeof x);

    /* codes on ties round half to even: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2 */
    float t[4] = {0.0f, 15.0f, 0.5f, 2.5f};
    uint8_t q2[6];
    ASSERT_OK(dv365_q4_quantize(t, 1, 4, DV365_Q4_MINMAX, q2, sizeof q2));
    assert_int_equal(q2[0], 0xf0);
    assert_int_equal(q2[1], 0x20);
}

/* ggml-style bounds on Gaussian rows: uniform 4-bit error over a +-3 sigma
 * range is about 0.11 sigma. */
static void check_gaussian_error(size_t dim)
{
    const size_t rows = 512;
    float *x = gaussian(rows * dim, 1000 + dim, 1.0, 0.0);
    float *ym = round_trip(x, rows, dim, DV365_Q4_MINMAX, DV_Q4_IMPL_AUTO, NULL);
    float *yg = round_trip(x, rows, dim, DV365_Q4_GREEDY, DV_Q4_IMPL_AUTO, NULL);
    double sum_m = 0, sum_g = 0, worst_cos = 1;
    for (size_t r = 0; r < rows; r++) {
        double rm, rg, cm, cg, lm, lg;
        row_error(x + r * dim, ym + r * dim, dim, &rm, &cm, &lm);
        row_error(x + r * dim, yg + r * dim, dim, &rg, &cg, &lg);
        /* greedy keeps min/max unless it finds a strictly lower error */
        if (!(lg <= lm * (1 + 1e-5)))
            fail_msg("D=%zu row %zu: greedy error %g > minmax %g", dim, r, lg, lm);
        sum_m += rm;
        sum_g += rg;
        worst_cos = fmin(worst_cos, fmin(cm, cg));
    }
    double mean_m = sum_m / rows, mean_g = sum_g / rows;
    if (dim >= 64) {
        assert_true(mean_m < 0.14);
        assert_true(mean_g < 0.95 * mean_m);
        assert_true(worst_cos > 0.985);
    } else { /* few columns: a smaller range, smaller error */
        assert_true(mean_m < 0.12);
        assert_true(mean_g <= mean_m);
        assert_true(worst_cos > 0.97);
    }
    free(x);
    free(ym);
    free(yg);
}

static void test_round_trip_error(void **state)
{
    (void)state;
    check_gaussian_error(256);
    check_gaussian_error(255);
    check_gaussian_error(257);
    check_gaussian_error(33);
    check_gaussian_error(7);
}

/* Rows exercising every path of the vector code: all lengths around the
 * vector widths, offsets, tiny and huge ranges, ties, signed zeros. */
static float *mixed_rows(size_t rows, size_t dim, uint64_t seed)
{
    dv_rng r;
    dv_rng_seed(&r, seed);
    float *x = malloc(rows * dim * sizeof *x);
    assert_non_null(x);
    for (size_t i = 0; i < rows; i++) {
        float *row = x + i * dim;
        double scale = pow(10.0, -6 + 9.5 * dv_rng_uniform(&r));
        double offset = (dv_rng_uniform(&r) - 0.5) * pow(10.0, 4 * dv_rng_uniform(&r));
        int kind = (int)(i % 6);
        for (size_t c = 0; c < dim; c++) {
            double v = offset + scale * dv_rng_normal(&r);
            if (kind == 1)
                v = (double)(int)(dv_rng_uniform(&r) * 16) * 0.5; /* exact ties */
            if (kind == 2)
                v = (c % 3 == 0) ? -0.0 : (c % 3 == 1 ? 0.0 : fabs(v)); /* signed zeros */
            if (kind == 3)
                v = 1.25; /* constant */
            v = fmax(-60000.0, fmin(60000.0, v));
            row[c] = (float)v;
        }
        if (kind == 4)
            row[dim - 1] = 5000.0f; /* outlier in the scalar tail */
    }
    return x;
}

static void test_fast_equals_reference(void **state)
{
    (void)state;
    size_t dims[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 100, 255, 256, 257};
    for (size_t f = 0; f < sizeof k_fast / sizeof k_fast[0]; f++) {
        dv_q4_impl impl = k_fast[f];
        if (!dv_q4_impl_available(impl)) {
            printf("# implementation %d not available on this CPU: skipped\n", (int)impl);
            continue;
        }
        for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
            size_t dim = dims[d], rows = 60, rb = dv365_q4_row_bytes(dim);
            float *x = mixed_rows(rows, dim, 77 + dim);
            uint8_t *a = malloc(rows * rb), *b = malloc(rows * rb);
            float *ya = malloc(rows * dim * 4), *yb = malloc(rows * dim * 4);
            for (int m = 0; m <= 1; m++) {
                ASSERT_OK(dv_q4_quantize_impl(x, rows, dim, (dv365_q4_method)m, a, rows * rb,
                                              DV_Q4_IMPL_REF));
                ASSERT_OK(dv_q4_quantize_impl(x, rows, dim, (dv365_q4_method)m, b, rows * rb,
                                              impl));
                if (memcmp(a, b, rows * rb) != 0)
                    fail_msg("impl %d, D=%zu, method %d: bytes differ from the reference",
                             (int)impl, dim, m);
                ASSERT_OK(dv_q4_dequantize_impl(a, rows * rb, rows, dim, ya, DV_Q4_IMPL_REF));
                ASSERT_OK(dv_q4_dequantize_impl(a, rows * rb, rows, dim, yb, impl));
                assert_memory_equal(ya, yb, rows * dim * 4);
            }
            for (size_t i = 0; i < rows; i++) {
                float lo1, hi1, lo2, hi2;
                dv_q4_greedy_range(x + i * dim, dim, DV_Q4_IMPL_REF, &lo1, &hi1);
                dv_q4_greedy_range(x + i * dim, dim, impl, &lo2, &hi2);
                assert_memory_equal(&lo1, &lo2, 4);
                assert_memory_equal(&hi1, &hi2, 4);
            }
            free(x);
            free(a);
            free(b);
            free(ya);
            free(yb);
        }
    }
}

static void test_edge_rows(void **state)
{
    (void)state;
    const size_t dim = 37;
    float x[37], y[37];
    uint8_t q[23];
    /* constant rows come back within fp16 rounding of the constant */
    const float consts[] = {0.0f, 1.0f, -3.7f, 0.1f, 1e-8f, 65504.0f, -65504.0f, 1000.3f};
    for (size_t i = 0; i < sizeof consts / sizeof consts[0]; i++) {
        for (size_t c = 0; c < dim; c++)
            x[c] = consts[i];
        for (int m = 0; m <= 1; m++) {
            ASSERT_OK(dv365_q4_quantize(x, 1, dim, (dv365_q4_method)m, q, sizeof q));
            ASSERT_OK(dv365_q4_dequantize(q, sizeof q, 1, dim, y));
            for (size_t c = 0; c < dim; c++)
                assert_true(fabsf(y[c] - x[c]) <= fabsf(x[c]) * 0x1p-11f + 1e-7f);
        }
    }
    /* zeros stay exact zeros */
    memset(x, 0, sizeof x);
    ASSERT_OK(dv365_q4_quantize(x, 1, dim, DV365_Q4_MINMAX, q, sizeof q));
    ASSERT_OK(dv365_q4_dequantize(q, sizeof q, 1, dim, y));
    for (size_t c = 0; c < dim; c++)
        assert_true(y[c] == 0.0f);
    /* a single column */
    float one = 3.3f, back;
    uint8_t q1[5];
    ASSERT_OK(dv365_q4_quantize(&one, 1, 1, DV365_Q4_GREEDY, q1, sizeof q1));
    assert_int_equal(q1[0] & 0xf0, 0);
    ASSERT_OK(dv365_q4_dequantize(q1, sizeof q1, 1, 1, &back));
    assert_true(fabsf(back - one) < 2e-3f);
    /* huge magnitudes within fp16: error stays within half a step */
    for (size_t c = 0; c < dim; c++)
        x[c] = -65504.0f + 131008.0f * (float)c / (float)(dim - 1);
    ASSERT_OK(dv365_q4_quantize(x, 1, dim, DV365_Q4_MINMAX, q, sizeof q));
    ASSERT_OK(dv365_q4_dequantize(q, sizeof q, 1, dim, y));
    for (size_t c = 0; c < dim; c++)
        assert_true(fabsf(y[c] - x[c]) <= 131008.0f / 15.0f * 0.5f * 1.01f);
    /* a max far beyond fp16 is fine while the scale fits: [0, 900000] */
    x[0] = 0.0f;
    x[1] = 900000.0f;
    ASSERT_OK(dv365_q4_quantize(x, 1, 2, DV365_Q4_MINMAX, q, sizeof q));
    ASSERT_OK(dv365_q4_dequantize(q, sizeof q, 1, 2, y));
    assert_true(fabsf(y[1] - 900000.0f) < 900000.0f * 1e-3f);
    /* beyond fp16: the bias or the scale would be infinite -> refused */
    x[0] = -70000.0f;
    x[1] = 1.0f;
    ASSERT_ERR(dv365_q4_quantize(x, 1, 2, DV365_Q4_MINMAX, q, sizeof q), DV365_E_INVALID,
               "fp16 bias");
    x[0] = 0.0f;
    x[1] = 1e6f;
    ASSERT_ERR(dv365_q4_quantize(x, 1, 2, DV365_Q4_GREEDY, q, sizeof q), DV365_E_INVALID,
               "fp16 scale");
    /* a range of a few ulps (PyTorch's greedy search never ends on it):
     * terminates, and no worse than min/max */
    float a = 1000.0f, b = a;
    for (int i = 0; i < 10; i++)
        b = nextafterf(b, 2000.0f);
    for (size_t c = 0; c < dim; c++)
        x[c] = c % 3 ? a : b;
    uint8_t qg[23];
    ASSERT_OK(dv365_q4_quantize(x, 1, dim, DV365_Q4_GREEDY, qg, sizeof qg));
    ASSERT_OK(dv365_q4_dequantize(qg, sizeof qg, 1, dim, y));
    double lg, lm;
    row_error(x, y, dim, NULL, NULL, &lg);
    ASSERT_OK(dv365_q4_quantize(x, 1, dim, DV365_Q4_MINMAX, q, sizeof q));
    ASSERT_OK(dv365_q4_dequantize(q, sizeof q, 1, dim, y));
    row_error(x, y, dim, NULL, NULL, &lm);
    assert_true(lg <= lm);
}

static void test_nonfinite(void **state)
{
    (void)state;
    const size_t rows = 4, dim = 70;
    float *x = gaussian(rows * dim, 5, 1.0, 0.0);
    uint8_t *q = malloc(rows * dv365_q4_row_bytes(dim));
    size_t qb = rows * dv365_q4_row_bytes(dim);
    const size_t cols[] = {0, 37, 69}; /* vector body and scalar tail */
    const float bad[] = {NAN, INFINITY, -INFINITY};
    const char *names[] = {"row 2, column %zu is NaN", "row 2, column %zu is +Inf",
                           "row 2, column %zu is -Inf"};
    for (int impl = DV_Q4_IMPL_REF; impl <= DV_Q4_IMPL_AVX512; impl++) {
        if (!dv_q4_impl_available((dv_q4_impl)impl))
            continue;
        for (size_t i = 0; i < 3; i++)
            for (size_t j = 0; j < 3; j++) {
                float keep = x[2 * dim + cols[i]];
                x[2 * dim + cols[i]] = bad[j];
                char needle[64];
                snprintf(needle, sizeof needle, names[j], cols[i]);
                for (int m = 0; m <= 1; m++)
                    ASSERT_ERR(dv_q4_quantize_impl(x, rows, dim, (dv365_q4_method)m, q, qb,
                                                   (dv_q4_impl)impl),
                               DV365_E_NONFINITE, needle);
                x[2 * dim + cols[i]] = keep;
            }
    }
    ASSERT_OK(dv365_q4_quantize(x, rows, dim, DV365_Q4_MINMAX, q, qb));
    free(x);
    free(q);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, y[8];
    uint8_t q[16];
    ASSERT_ERR(dv365_q4_quantize(NULL, 1, 8, DV365_Q4_MINMAX, q, sizeof q), DV365_E_NULL, "'x'");
    ASSERT_ERR(dv365_q4_quantize(x, 1, 8, DV365_Q4_MINMAX, NULL, 8), DV365_E_NULL, "'out'");
    ASSERT_ERR(dv365_q4_quantize(x, 1, 0, DV365_Q4_MINMAX, q, sizeof q), DV365_E_INVALID, "dim");
    ASSERT_ERR(dv365_q4_quantize(x, 1, 8, (dv365_q4_method)7, q, sizeof q), DV365_E_INVALID,
               "method 7");
    ASSERT_ERR(dv365_q4_quantize(x, 2, 4, DV365_Q4_MINMAX, q, 11), DV365_E_BUFFER_TOO_SMALL,
               "need 12");
    ASSERT_ERR(dv365_q4_quantize(x, SIZE_MAX / 2, 4, DV365_Q4_MINMAX, q, sizeof q), DV365_E_NOMEM,
               "overflow");
    ASSERT_OK(dv365_q4_quantize(x, 0, 8, DV365_Q4_MINMAX, q, 0)); /* nothing to do */
    ASSERT_OK(dv365_q4_quantize(x, 1, 8, DV365_Q4_MINMAX, q, sizeof q));
    ASSERT_ERR(dv365_q4_dequantize(NULL, 8, 1, 8, y), DV365_E_NULL, "'q'");
    ASSERT_ERR(dv365_q4_dequantize(q, 8, 1, 8, NULL), DV365_E_NULL, "'out'");
    ASSERT_ERR(dv365_q4_dequantize(q, 7, 1, 8, y), DV365_E_BUFFER_TOO_SMALL, "need 8");
    ASSERT_ERR(dv365_q4_dequantize(q, 8, 1, 0, y), DV365_E_INVALID, "dim");
    q[4] = 0x00; /* scale = +Inf (0x7c00) */
    q[5] = 0x7c;
    ASSERT_ERR(dv365_q4_dequantize(q, 8, 1, 8, y), DV365_E_FORMAT, "row 0: stored scale");
    q[5] = 0x3c;
    q[7] = 0xfe; /* bias = NaN */
    ASSERT_ERR(dv365_q4_dequantize(q, 8, 1, 8, y), DV365_E_FORMAT, "bias");
    assert_string_equal(dv365_last_error(), "row 0: stored bias is not finite");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_conversion),
        cmocka_unit_test(test_row_bytes_and_layout),
        cmocka_unit_test(test_round_trip_error),
        cmocka_unit_test(test_fast_equals_reference),
        cmocka_unit_test(test_edge_rows),
        cmocka_unit_test(test_nonfinite),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
