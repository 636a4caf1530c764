/* test_interaction.c — DLRM dot interaction forward/backward.
 *
 * cmocka: the output layout by hand, the GEMM path against plain loops,
 * finite differences of the backward.  tests/reference/train_ref.py checks
 * against PyTorch (facebookresearch/dlrm's interact_features) through
 * `test_interaction --ref IN OUT`. */
#include "testutil.h"

#include "interaction.h"
#include "internal.h"
#include "train_refio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fill_normal(dv_rng *r, float *x, size_t n, double scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(scale * dv_rng_normal(r));
}

static void test_layout_by_hand(void **state)
{
    (void)state;
    /* F = 3, D = 2: out = [z0 ; z1·z0, z2·z0, z2·z1]. */
    const float Z[6] = {1, 2, 3, 4, 5, 6};
    float out[5], scratch[9];
    assert_int_equal(dv_interaction_out_dim(3, 2), 5);
    ASSERT_OK(dv_interaction_forward(out, scratch, Z, 1, 3, 2, 1));
    const float expect[5] = {1, 2, 3 * 1 + 4 * 2, 5 * 1 + 6 * 2, 5 * 3 + 6 * 4};
    assert_memory_equal(out, expect, sizeof expect);

    /* F = 1: the bottom output passes through, no pairs. */
    assert_int_equal(dv_interaction_out_dim(1, 2), 2);
    ASSERT_OK(dv_interaction_forward(out, scratch, Z, 1, 1, 2, 1));
    assert_true(out[0] == 1 && out[1] == 2);
}

/* Plain-loop reference in double. */
static void naive_forward(double *out, const float *Z, size_t B, size_t F, size_t D)
{
    size_t od = D + F * (F - 1) / 2;
    for (size_t b = 0; b < B; b++) {
        const float *z = Z + b * F * D;
        double *o = out + b * od;
        for (size_t d = 0; d < D; d++)
            o[d] = z[d];
        size_t k = D;
        for (size_t i = 1; i < F; i++)
            for (size_t j = 0; j < i; j++) {
                double s = 0;
                for (size_t d = 0; d < D; d++)
                    s += (double)z[i * D + d] * z[j * D + d];
                o[k++] = s;
            }
    }
}

static void test_gemm_matches_loops(void **state)
{
    (void)state;
    /* The production shape: 1 bottom + 3 item + 58 user tokens. */
    enum { B = 3, F = 62, D = 64 };
    size_t od = dv_interaction_out_dim(F, D);
    assert_int_equal(od, D + F * (F - 1) / 2);
    dv_rng r;
    dv_rng_seed(&r, 5);
    float *Z = malloc(B * F * D * sizeof *Z), *out = malloc(B * od * sizeof *out);
    float *out2 = malloc(B * od * sizeof *out2), *scratch = malloc(F * F * sizeof *scratch);
    double *ref = malloc(B * od * sizeof *ref);
    fill_normal(&r, Z, B * F * D, 1.0);
    ASSERT_OK(dv_interaction_forward(out, scratch, Z, B, F, D, 1));
    naive_forward(ref, Z, B, F, D);
    for (size_t i = 0; i < B * od; i++)
        if (fabs(out[i] - ref[i]) > 1e-5 * fmax(1.0, fabs(ref[i]) + sqrt((double)D)))
            fail_msg("out[%zu] = %.8g, loops %.8g", i, (double)out[i], ref[i]);
    /* Bitwise the same with 2 threads (BLIS never splits the sum). */
    ASSERT_OK(dv_interaction_forward(out2, scratch, Z, B, F, D, 2));
    assert_memory_equal(out, out2, B * od * sizeof *out);
    free(Z), free(out), free(out2), free(scratch), free(ref);
}

static void test_backward_finite_differences(void **state)
{
    (void)state;
    enum { B = 2, F = 5, D = 4 };
    size_t od = dv_interaction_out_dim(F, D);
    dv_rng r;
    dv_rng_seed(&r, 9);
    float Z[B * F * D], dZ[B * F * D], dout[B * 10 + B * D], scratch[F * F];
    double out[B * (D + 10)];
    assert_int_equal(od, D + 10);
    fill_normal(&r, Z, B * F * D, 1.0);
    fill_normal(&r, dout, B * od, 1.0);
    for (size_t i = 0; i < B * F * D; i++)
        dZ[i] = 1.0f; /* accumulation check: start from 1 */
    ASSERT_OK(dv_interaction_backward(dZ, scratch, dout, Z, B, F, D, 1));
    /* L = Σ dout · out is quadratic in Z, so central differences are exact
     * up to rounding; out is evaluated in double for a clean difference. */
    for (size_t i = 0; i < B * F * D; i++) {
        float keep = Z[i], zp = keep + 0.05f, zm = keep - 0.05f;
        double lp = 0, lm = 0;
        Z[i] = zp;
        naive_forward(out, Z, B, F, D);
        for (size_t k = 0; k < B * od; k++)
            lp += dout[k] * out[k];
        Z[i] = zm;
        naive_forward(out, Z, B, F, D);
        for (size_t k = 0; k < B * od; k++)
            lm += dout[k] * out[k];
        Z[i] = keep;
        double fd = (lp - lm) / ((double)zp - (double)zm);
        double got = (double)dZ[i] - 1.0;
        if (fabs(got - fd) > 1e-5 * fmax(1.0, fabs(fd)))
            fail_msg("dZ[%zu]: backward %.8g, finite difference %.8g", i, got, fd);
    }
    /* And the forward agrees with the loops used above. */
    float outf[B * (D + 10)];
    ASSERT_OK(dv_interaction_forward(outf, scratch, Z, B, F, D, 1));
    naive_forward(out, Z, B, F, D);
    for (size_t k = 0; k < B * od; k++)
        assert_true(fabs(outf[k] - out[k]) < 1e-5 * fmax(1.0, fabs(out[k])));
}

static void test_errors(void **state)
{
    (void)state;
    float Z[4] = {0}, out[4], scratch[4], dZ[4] = {0};
    ASSERT_ERR(dv_interaction_forward(out, scratch, Z, 1, 0, 2, 1), DV365_E_INVALID, "F (0)");
    ASSERT_ERR(dv_interaction_forward(out, scratch, Z, 1, 2, 0, 1), DV365_E_INVALID, "D (0)");
    ASSERT_ERR(dv_interaction_forward(out, NULL, Z, 1, 2, 2, 1), DV365_E_NULL, "scratch");
    ASSERT_ERR(dv_interaction_backward(dZ, scratch, NULL, Z, 1, 2, 2, 1), DV365_E_NULL, "dout");
    ASSERT_ERR(dv_interaction_forward(out, scratch, Z, SIZE_MAX / 2, 2, 2, 1), DV365_E_NOMEM,
               "overflow");
    assert_int_equal(dv_interaction_out_dim(SIZE_MAX, 1), 0);
    ASSERT_OK(dv_interaction_forward(NULL, NULL, NULL, 0, 2, 2, 1)); /* empty batch */
}

/* --- reference mode -------------------------------------------------------------- */

/* inter{i}.Z [B, F, D], inter{i}.dout [B, D + F(F-1)/2]
 * -> inter{i}.out, inter{i}.dZ (accumulated from zero). */
static int run_ref(const char *in_path, const char *out_path)
{
    dv_st_file *in = ref_open(in_path);
    ref_out out;
    ref_out_init(&out);
    char key[64];
    for (int c = 0;; c++) {
        snprintf(key, sizeof key, "inter%d.Z", c);
        if (!ref_has(in, key))
            break;
        size_t nd, shape[DV_ST_MAX_DIMS];
        free(ref_read(in, key, NULL, &nd, shape));
        size_t B = shape[0], F = shape[1], D = shape[2], od = dv_interaction_out_dim(F, D);
        float *Z = ref_read_f32(in, key, NULL);
        snprintf(key, sizeof key, "inter%d.dout", c);
        float *dout = ref_read_f32(in, key, NULL);
        float *o = malloc(B * od * sizeof *o), *dZ = calloc(B * F * D, sizeof *dZ);
        float *scratch = malloc(F * F * sizeof *scratch);
        if (dv_interaction_forward(o, scratch, Z, B, F, D, 1) != DV365_OK ||
            dv_interaction_backward(dZ, scratch, dout, Z, B, F, D, 1) != DV365_OK)
            ref_die("interaction", key);
        size_t sho[2] = {B, od}, shz[3] = {B, F, D};
        snprintf(key, sizeof key, "inter%d.out", c);
        ref_out_add(&out, key, DV_DTYPE_F32, 2, sho, o);
        snprintf(key, sizeof key, "inter%d.dZ", c);
        ref_out_add(&out, key, DV_DTYPE_F32, 3, shz, dZ);
        free(Z), free(dout), free(scratch);
    }
    return ref_finish(&out, out_path, in);
}

int main(int argc, char **argv)
{
    if (ref_mode(argc, argv))
        return run_ref(argv[2], argv[3]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_by_hand),
        cmocka_unit_test(test_gemm_matches_loops),
        cmocka_unit_test(test_backward_finite_differences),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
