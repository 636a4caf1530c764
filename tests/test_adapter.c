/* test_adapter.c — downstream adapters: linear projection, GateNet
 * (vector-wise and bit-wise gates), token prefix.
 *
 * Forward is checked against a plain double-precision transcription of the
 * math in docs/adapters.md, backward against central finite differences of
 * that transcription; then thread-count and batch determinism, files and
 * every bad input.  tests/reference/adapter_ref.py drives this program as
 *   test_adapter --create PATH KIND NAME K D OUT_DIM SEED   (create + save)
 *   test_adapter --ref IN OUT NAME NTHREADS                 (load + run)
 * to compare with PyTorch modules. */
#include "testutil.h"

#include "internal.h"
#include "safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const dv365_adapter_kind KINDS[] = {DV365_ADAPTER_LINEAR, DV365_ADAPTER_GATENET_VECTOR,
                                           DV365_ADAPTER_GATENET_BIT, DV365_ADAPTER_PREFIX,
                                           DV365_ADAPTER_PREFIX};
/* out_dim per entry of KINDS: P, -, -, H, unprojected prefix. */
static const size_t OUTS[] = {4, 0, 0, 6, 0};
#define NCASES 5

static char tmpdir[64];

static int setup(void **state)
{
    (void)state;
    return test_make_tmpdir(tmpdir, sizeof tmpdir, "adapter");
}

static int teardown(void **state)
{
    (void)state;
    return test_remove_tmpdir(tmpdir);
}

static void fill_normal(float *x, size_t n, uint64_t seed, double scale)
{
    dv_rng r;
    dv_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(scale * dv_rng_normal(&r));
}

static double sigm(double z) { return 1.0 / (1.0 + exp(-z)); }

/* The math of docs/adapters.md in double precision, straight from the
 * definitions: p is the parameter block (weight then bias). */
static void ref_forward(dv365_adapter_kind kind, size_t K, size_t D, size_t O, size_t B,
                        const double *p, const double *U, double *out)
{
    for (size_t b = 0; b < B; b++) {
        const double *u = U + b * K * D;
        if (kind == DV365_ADAPTER_LINEAR) {
            const double *bias = p + O * K * D;
            for (size_t o = 0; o < O; o++) {
                double s = bias[o];
                for (size_t i = 0; i < K * D; i++)
                    s += p[o * K * D + i] * u[i];
                out[b * O + o] = s;
            }
            continue;
        }
        for (size_t k = 0; k < K; k++) {
            const double *uk = u + k * D;
            if (kind == DV365_ADAPTER_GATENET_VECTOR) {
                double z = p[K * D + k];
                for (size_t d = 0; d < D; d++)
                    z += p[k * D + d] * uk[d];
                for (size_t d = 0; d < D; d++)
                    out[(b * K + k) * D + d] = sigm(z) * uk[d];
            } else if (kind == DV365_ADAPTER_GATENET_BIT) {
                for (size_t i = 0; i < D; i++) {
                    double z = p[K * D * D + k * D + i];
                    for (size_t j = 0; j < D; j++)
                        z += p[(k * D + i) * D + j] * uk[j];
                    out[(b * K + k) * D + i] = sigm(z) * uk[i];
                }
            } else if (O == 0) {
                for (size_t d = 0; d < D; d++)
                    out[(b * K + k) * D + d] = uk[d];
            } else {
                for (size_t h = 0; h < O; h++) {
                    double s = p[O * D + h];
                    for (size_t d = 0; d < D; d++)
                        s += p[h * D + d] * uk[d];
                    out[(b * K + k) * O + h] = s;
                }
            }
        }
    }
}

static double ref_loss(dv365_adapter_kind kind, size_t K, size_t D, size_t O, size_t B,
                       const double *p, const double *U, const double *dout, size_t nout)
{
    double *out = malloc(nout * sizeof *out);
    ref_forward(kind, K, D, O, B, p, U, out);
    double s = 0;
    for (size_t i = 0; i < nout; i++)
        s += out[i] * dout[i];
    free(out);
    return s;
}

static double *to_double(const float *x, size_t n)
{
    double *y = malloc((n ? n : 1) * sizeof *y);
    for (size_t i = 0; i < n; i++)
        y[i] = x[i];
    return y;
}

/* An adapter whose biases are not zero, so that they matter in the checks. */
static dv365_adapter *make(dv365_adapter_kind kind, size_t K, size_t D, size_t O, uint64_t seed)
{
    dv365_adapter *a = NULL;
    ASSERT_OK(dv365_adapter_create(kind, "t", K, D, O, seed, &a));
    float *p = dv365_adapter_params(a);
    size_t np = dv365_adapter_num_params(a);
    dv_rng r;
    dv_rng_seed(&r, seed + 100);
    for (size_t i = 0; i < np; i++)
        p[i] += (float)(0.3 * dv_rng_normal(&r));
    return a;
}

/* ------------------------------------------------------------------ tests */

static void test_shapes_and_init(void **state)
{
    (void)state;
    const size_t K = 58, D = 16;
    /* kind, out_dim -> output floats per user, parameters */
    struct {
        dv365_adapter_kind kind;
        size_t out_dim, out_size, n_params, fan_in, n_weight;
    } c[] = {
        {DV365_ADAPTER_LINEAR, 64, 64, 64 * K * D + 64, K * D, 64 * K * D},
        {DV365_ADAPTER_GATENET_VECTOR, 0, K * D, K * D + K, D, K * D},
        {DV365_ADAPTER_GATENET_BIT, 0, K * D, K * D * D + K * D, D, K * D * D},
        {DV365_ADAPTER_PREFIX, 24, K * 24, 24 * D + 24, D, 24 * D},
        {DV365_ADAPTER_PREFIX, 0, K * D, 0, 1, 0},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        dv365_adapter *a, *b, *e;
        ASSERT_OK(dv365_adapter_create(c[i].kind, "host_ctr-1", K, D, c[i].out_dim, 7, &a));
        ASSERT_OK(dv365_adapter_create(c[i].kind, "x", K, D, c[i].out_dim, 7, &b));
        ASSERT_OK(dv365_adapter_create(c[i].kind, "x", K, D, c[i].out_dim, 8, &e));
        assert_int_equal(dv365_adapter_output_size(a), c[i].out_size);
        assert_int_equal(dv365_adapter_num_params(a), c[i].n_params);
        dv365_adapter_kind kind;
        size_t k, d, o;
        ASSERT_OK(dv365_adapter_info(a, &kind, &k, &d, &o));
        assert_int_equal(kind, c[i].kind);
        assert_int_equal(k, K);
        assert_int_equal(d, D);
        assert_int_equal(o, c[i].out_dim);
        ASSERT_OK(dv365_adapter_info(a, NULL, NULL, NULL, NULL));
        size_t np = c[i].n_params;
        if (np == 0) {
            assert_null(dv365_adapter_params(a));
        } else {
            /* Same seed, same weights; another seed, other weights. */
            const float *p = dv365_adapter_params(a);
            assert_memory_equal(p, dv365_adapter_params(b), np * sizeof(float));
            assert_memory_not_equal(p, dv365_adapter_params(e), c[i].n_weight * sizeof(float));
            /* Weights in U(-1/sqrt(fan_in), 1/sqrt(fan_in)) and spread over
             * it; biases zero. */
            double bound = 1.0 / sqrt((double)c[i].fan_in), lo = 0, hi = 0;
            for (size_t j = 0; j < c[i].n_weight; j++) {
                assert_true(fabs(p[j]) <= bound);
                lo = fmin(lo, p[j]);
                hi = fmax(hi, p[j]);
            }
            assert_true(lo < -0.9 * bound && hi > 0.9 * bound);
            for (size_t j = c[i].n_weight; j < np; j++)
                assert_true(p[j] == 0.0f);
        }
        dv365_adapter_free(a);
        dv365_adapter_free(b);
        dv365_adapter_free(e);
    }
    dv365_adapter_free(NULL);
    assert_int_equal(dv365_adapter_output_size(NULL), 0);
    assert_int_equal(dv365_adapter_num_params(NULL), 0);
    assert_null(dv365_adapter_params(NULL));
    assert_int_equal(dv365_adapter_workspace_size(NULL, 4), 0);
}

/* Forward against the double-precision transcription of the math. */
static void test_forward_matches_math(void **state)
{
    (void)state;
    const size_t K = 7, D = 9, B = 5;
    for (int c = 0; c < NCASES; c++) {
        dv365_adapter *a = make(KINDS[c], K, D, OUTS[c], 11 + (uint64_t)c);
        dv365_workspace *ws;
        ASSERT_OK(dv365_workspace_create(&ws));
        size_t no = B * dv365_adapter_output_size(a), nu = B * K * D;
        size_t np = dv365_adapter_num_params(a);
        float *U = malloc(nu * 4), *out = malloc(no * 4);
        fill_normal(U, nu, 3, 1.0);
        ASSERT_OK(dv365_adapter_forward(a, ws, B, U, out, 1));
        double *pd = to_double(dv365_adapter_params(a), np), *ud = to_double(U, nu);
        double *ref = malloc(no * sizeof *ref);
        ref_forward(KINDS[c], K, D, OUTS[c], B, pd, ud, ref);
        double worst = 0, scale = 0;
        for (size_t i = 0; i < no; i++) {
            worst = fmax(worst, fabs(out[i] - ref[i]));
            scale = fmax(scale, fabs(ref[i]));
        }
        if (!(worst <= 1e-5 * fmax(1.0, scale)))
            fail_msg("case %d: forward max error %g (scale %g)", c, worst, scale);
        assert_true(scale > 0.1); /* the check saw real values */
        free(U), free(out), free(pd), free(ud), free(ref);
        dv365_adapter_free(a);
        dv365_workspace_free(ws);
    }
}

/* Backward against central differences of the double-precision math, for
 * every parameter and every element of U. */
static void test_backward_finite_differences(void **state)
{
    (void)state;
    const size_t K = 3, D = 5, B = 3;
    const double eps = 1e-5;
    for (int c = 0; c < NCASES; c++) {
        dv365_adapter *a = make(KINDS[c], K, D, OUTS[c], 21 + (uint64_t)c);
        dv365_workspace *ws;
        ASSERT_OK(dv365_workspace_create(&ws));
        size_t no = B * dv365_adapter_output_size(a), nu = B * K * D;
        size_t np = dv365_adapter_num_params(a);
        float *U = malloc(nu * 4), *dout = malloc(no * 4), *dU = calloc(nu, 4);
        float *G = calloc(np ? np : 1, 4);
        fill_normal(U, nu, 5, 1.0);
        fill_normal(dout, no, 6, 1.0);
        ASSERT_OK(dv365_adapter_backward(a, ws, B, U, dout, G, dU, 1));
        double *pd = to_double(dv365_adapter_params(a), np), *ud = to_double(U, nu);
        double *dd = to_double(dout, no);
        double worst = 0, gmax = 0;
        for (size_t i = 0; i < np + nu; i++) {
            double *x = i < np ? &pd[i] : &ud[i - np];
            double analytic = i < np ? G[i] : dU[i - np], keep = *x;
            *x = keep + eps;
            double lp = ref_loss(KINDS[c], K, D, OUTS[c], B, pd, ud, dd, no);
            *x = keep - eps;
            double lm = ref_loss(KINDS[c], K, D, OUTS[c], B, pd, ud, dd, no);
            *x = keep;
            double numeric = (lp - lm) / (2 * eps);
            worst = fmax(worst, fabs(analytic - numeric) / fmax(1.0, fabs(numeric)));
            gmax = fmax(gmax, fabs(numeric));
        }
        if (!(worst < 1e-4))
            fail_msg("case %d: gradient max error %g", c, worst);
        assert_true(gmax > 0.1);
        free(U), free(dout), free(dU), free(G), free(pd), free(ud), free(dd);
        dv365_adapter_free(a);
        dv365_workspace_free(ws);
    }
}

/* Backward accumulates, and each of grad_params / dU can be skipped
 * without changing the other. */
static void test_backward_accumulates(void **state)
{
    (void)state;
    const size_t K = 4, D = 6, B = 3;
    for (int c = 0; c < NCASES; c++) {
        dv365_adapter *a = make(KINDS[c], K, D, OUTS[c], 31 + (uint64_t)c);
        dv365_workspace *ws;
        ASSERT_OK(dv365_workspace_create(&ws));
        size_t no = B * dv365_adapter_output_size(a), nu = B * K * D;
        size_t np = dv365_adapter_num_params(a), ng = np ? np : 1;
        float *U = malloc(nu * 4), *dout = malloc(no * 4);
        float *G1 = calloc(ng, 4), *G2 = calloc(ng, 4), *G3 = calloc(ng, 4);
        float *d1 = calloc(nu, 4), *d2 = calloc(nu, 4), *d3 = calloc(nu, 4);
        fill_normal(U, nu, 8, 1.0);
        fill_normal(dout, no, 9, 1.0);
        ASSERT_OK(dv365_adapter_backward(a, ws, B, U, dout, G1, d1, 1));
        ASSERT_OK(dv365_adapter_backward(a, ws, B, U, dout, G2, NULL, 1));
        ASSERT_OK(dv365_adapter_backward(a, ws, B, U, dout, NULL, d2, 1));
        assert_memory_equal(G1, G2, ng * 4);
        assert_memory_equal(d1, d2, nu * 4);
        /* Twice into the same buffers: twice the values (up to rounding,
         * since sums over users continue from what the buffer holds). */
        ASSERT_OK(dv365_adapter_backward(a, ws, B, U, dout, G3, d3, 1));
        ASSERT_OK(dv365_adapter_backward(a, ws, B, U, dout, G3, d3, 1));
        for (size_t i = 0; i < np; i++)
            G1[i] *= 2;
        for (size_t i = 0; i < nu; i++)
            d1[i] *= 2;
        assert_true(test_max_rel_diff(G3, G1, np) < 1e-5);
        assert_true(test_max_rel_diff(d3, d1, nu) < 1e-5);
        free(U), free(dout), free(G1), free(G2), free(G3), free(d1), free(d2), free(d3);
        dv365_adapter_free(a);
        dv365_workspace_free(ws);
    }
}

/* Bitwise identical outputs and gradients for 1, 2 and 3 threads, and a
 * user's output does not depend on the other users of the batch. */
static void test_determinism(void **state)
{
    (void)state;
    const size_t K = 58, D = 32, B = 9;
    const size_t outs[] = {64, 0, 0, 48, 0};
    for (int c = 0; c < NCASES; c++) {
        dv365_adapter *a = make(KINDS[c], K, D, outs[c], 41 + (uint64_t)c);
        dv365_workspace *ws;
        ASSERT_OK(dv365_workspace_create(&ws));
        size_t os = dv365_adapter_output_size(a), no = B * os, nu = B * K * D;
        size_t np = dv365_adapter_num_params(a), ng = np ? np : 1;
        float *U = malloc(nu * 4), *dout = malloc(no * 4), *y[3], *G[3], *dU[3];
        fill_normal(U, nu, 10, 1.0);
        fill_normal(dout, no, 11, 1.0);
        for (int t = 0; t < 3; t++) {
            y[t] = malloc(no * 4);
            G[t] = calloc(ng, 4);
            dU[t] = calloc(nu, 4);
            ASSERT_OK(dv365_adapter_forward(a, ws, B, U, y[t], t + 1));
            ASSERT_OK(dv365_adapter_backward(a, ws, B, U, dout, G[t], dU[t], t + 1));
        }
        for (int t = 1; t < 3; t++) {
            assert_memory_equal(y[0], y[t], no * 4);
            assert_memory_equal(G[0], G[t], ng * 4);
            assert_memory_equal(dU[0], dU[t], nu * 4);
        }
        /* Users one at a time give the same bits as the whole batch. */
        float *one = malloc(os * 4);
        for (size_t b = 0; b < B; b++) {
            ASSERT_OK(dv365_adapter_forward(a, ws, 1, U + b * K * D, one, 2));
            assert_memory_equal(one, y[0] + b * os, os * 4);
        }
        free(one);
        for (int t = 0; t < 3; t++)
            free(y[t]), free(G[t]), free(dU[t]);
        free(U), free(dout);
        dv365_adapter_free(a);
        dv365_workspace_free(ws);
    }
}

/* The linear kernel's edges: more users than one block (64), columns over
 * two chunks with a partial last vector, outputs not a multiple of 4. */
static void test_linear_blocks(void **state)
{
    (void)state;
    const size_t K = 41, D = 29, P = 7, B = 70, KD = K * D;
    dv365_adapter *a = make(DV365_ADAPTER_LINEAR, K, D, P, 91);
    dv365_workspace *ws;
    ASSERT_OK(dv365_workspace_create(&ws));
    float *U = malloc(B * KD * 4), *y = malloc(B * P * 4), one[7];
    fill_normal(U, B * KD, 16, 1.0);
    ASSERT_OK(dv365_adapter_forward(a, ws, B, U, y, 2));
    double *pd = to_double(dv365_adapter_params(a), dv365_adapter_num_params(a));
    double *ud = to_double(U, B * KD), *ref = malloc(B * P * sizeof *ref);
    ref_forward(DV365_ADAPTER_LINEAR, K, D, P, B, pd, ud, ref);
    for (size_t i = 0; i < B * P; i++)
        if (!(fabs(y[i] - ref[i]) <= 1e-5 * fmax(1.0, fabs(ref[i]))))
            fail_msg("y[%zu] = %.9g, expected %.9g", i, y[i], ref[i]);
    for (size_t b = 0; b < B; b += 23) {
        ASSERT_OK(dv365_adapter_forward(a, ws, 1, U + b * KD, one, 1));
        assert_memory_equal(one, y + b * P, P * 4);
    }
    free(U), free(y), free(pd), free(ud), free(ref);
    dv365_adapter_free(a);
    dv365_workspace_free(ws);
}

/* Once the workspace holds dv365_adapter_workspace_size bytes, forward and
 * backward do not grow it. */
static void test_workspace(void **state)
{
    (void)state;
    const size_t K = 5, D = 8, B = 6;
    dv365_adapter *a = make(DV365_ADAPTER_GATENET_BIT, K, D, 0, 51);
    assert_int_equal(dv365_adapter_workspace_size(a, B), B * K * D * sizeof(float));
    assert_int_equal(dv365_adapter_workspace_size(a, SIZE_MAX / 2), SIZE_MAX);
    dv365_workspace *ws;
    ASSERT_OK(dv365_workspace_create(&ws));
    ASSERT_OK(dv365_workspace_reserve(ws, dv365_adapter_workspace_size(a, B)));
    size_t cap = dv365_workspace_capacity(ws), nu = B * K * D;
    float *U = malloc(nu * 4), *y = malloc(nu * 4), *dU = calloc(nu, 4);
    float *G = calloc(dv365_adapter_num_params(a), 4);
    fill_normal(U, nu, 12, 1.0);
    ASSERT_OK(dv365_adapter_forward(a, ws, B, U, y, 1));
    ASSERT_OK(dv365_adapter_backward(a, ws, B, U, y, G, dU, 2));
    assert_int_equal(dv365_workspace_capacity(ws), cap);
    dv365_adapter_free(a);
    /* The linear adapter's forward keeps 16 partial sums per user and
     * output, for at most 64 users at a time. */
    a = make(DV365_ADAPTER_LINEAR, K, D, 3, 52);
    assert_int_equal(dv365_adapter_workspace_size(a, B), B * 3 * 16 * sizeof(float));
    assert_int_equal(dv365_adapter_workspace_size(a, 1000), 64 * 3 * 16 * sizeof(float));
    dv365_workspace_free(ws);
    ASSERT_OK(dv365_workspace_create(&ws));
    ASSERT_OK(dv365_workspace_reserve(ws, dv365_adapter_workspace_size(a, B)));
    cap = dv365_workspace_capacity(ws);
    ASSERT_OK(dv365_adapter_forward(a, ws, B, U, y, 2));
    assert_int_equal(dv365_workspace_capacity(ws), cap);
    for (int c = 1; c < NCASES; c++) { /* the other kinds need none */
        dv365_adapter *o = make(KINDS[c], K, D, OUTS[c], 53);
        assert_int_equal(dv365_adapter_workspace_size(o, B),
                         KINDS[c] == DV365_ADAPTER_GATENET_BIT ? B * K * D * 4 : 0);
        dv365_adapter_free(o);
    }
    free(U), free(y), free(dU), free(G);
    dv365_adapter_free(a);
    dv365_workspace_free(ws);
}

static void test_save_load(void **state)
{
    (void)state;
    const size_t K = 6, D = 4, B = 2;
    char path[128];
    for (int c = 0; c < NCASES; c++) {
        dv365_adapter *a = make(KINDS[c], K, D, OUTS[c], 61 + (uint64_t)c), *b = NULL;
        snprintf(path, sizeof path, "%s/a%d.safetensors", tmpdir, c);
        /* The handle is named "t" by make(). */
        ASSERT_OK(dv365_adapter_save(a, path));
        ASSERT_OK(dv365_adapter_load(path, "t", &b));
        dv365_adapter_kind kind;
        size_t k, d, o, np = dv365_adapter_num_params(a);
        ASSERT_OK(dv365_adapter_info(b, &kind, &k, &d, &o));
        assert_int_equal(kind, KINDS[c]);
        assert_int_equal(k, K);
        assert_int_equal(d, D);
        assert_int_equal(o, OUTS[c]);
        assert_int_equal(dv365_adapter_num_params(b), np);
        if (np)
            assert_memory_equal(dv365_adapter_params(a), dv365_adapter_params(b), np * 4);
        /* The file holds the documented tensors and metadata. */
        dv_st_file *f;
        ASSERT_OK(dv_st_read_file(path, &f));
        static const char *const kinds[] = {"linear", "gatenet_vector", "gatenet_bit",
                                            "prefix"};
        assert_string_equal(dv_st_metadata(f, "adapter.t.kind"), kinds[KINDS[c]]);
        assert_string_equal(dv_st_metadata(f, "adapter.t.k"), "6");
        assert_string_equal(dv_st_metadata(f, "adapter.t.dim"), "4");
        assert_int_equal(dv_st_count(f), np ? 2 : 0);
        if (np) {
            const dv_tensor_view *w = dv_st_find(f, "adapter.t.weight");
            const dv_tensor_view *bi = dv_st_find(f, "adapter.t.bias");
            assert_non_null(w);
            assert_non_null(bi);
            assert_int_equal((w->nbytes + bi->nbytes) / 4, np);
        }
        dv_st_free(f);
        /* Same outputs from the loaded copy. */
        dv365_workspace *ws;
        ASSERT_OK(dv365_workspace_create(&ws));
        size_t nu = B * K * D, no = B * dv365_adapter_output_size(a);
        float *U = malloc(nu * 4), *y1 = malloc(no * 4), *y2 = malloc(no * 4);
        fill_normal(U, nu, 13, 1.0);
        ASSERT_OK(dv365_adapter_forward(a, ws, B, U, y1, 1));
        ASSERT_OK(dv365_adapter_forward(b, ws, B, U, y2, 1));
        assert_memory_equal(y1, y2, no * 4);
        free(U), free(y1), free(y2);
        dv365_workspace_free(ws);
        dv365_adapter_free(a);
        dv365_adapter_free(b);
    }
}

/* A hand-made adapter file: metadata (kind, k, dim, out_dim) and tensors. */
static void write_file(const char *path, const char *kind, const char *k, const char *dim,
                       const char *out_dim, const char *wname, size_t wndim,
                       const size_t *wshape, dv_dtype wtype, const void *w, const char *bname,
                       size_t bn, const float *bias)
{
    dv_st_writer *wr;
    ASSERT_OK(dv_st_writer_create(&wr));
    if (kind)
        ASSERT_OK(dv_st_writer_set_metadata(wr, "adapter.f.kind", kind));
    if (k)
        ASSERT_OK(dv_st_writer_set_metadata(wr, "adapter.f.k", k));
    if (dim)
        ASSERT_OK(dv_st_writer_set_metadata(wr, "adapter.f.dim", dim));
    if (out_dim)
        ASSERT_OK(dv_st_writer_set_metadata(wr, "adapter.f.out_dim", out_dim));
    if (wname)
        ASSERT_OK(dv_st_writer_add(wr, wname, wtype, wndim, wshape, w));
    if (bname)
        ASSERT_OK(dv_st_writer_add(wr, bname, DV_DTYPE_F32, 1, &bn, bias));
    ASSERT_OK(dv_st_writer_write(wr, path));
    dv_st_writer_free(wr);
}

static void test_load_errors(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/bad.safetensors", tmpdir);
    /* A valid linear adapter k=2 dim=3 out_dim=2: weight [2, 6], bias [2]. */
    float w[12] = {0}, bias[2] = {0.5f, -0.5f};
    double wd[12] = {0};
    size_t ws2[2] = {2, 6}, bad_shape[2] = {2, 5};
    dv365_adapter *a = NULL;
    const char *W = "adapter.f.weight", *Bn = "adapter.f.bias";
    write_file(path, "linear", "2", "3", "2", W, 2, ws2, DV_DTYPE_F32, w, Bn, 2, bias);
    ASSERT_OK(dv365_adapter_load(path, "f", &a));
    assert_true(dv365_adapter_params(a)[12] == 0.5f);
    dv365_adapter_free(a);
    a = NULL;

    ASSERT_ERR(dv365_adapter_load(path, "other", &a), DV365_E_NOT_FOUND, "other");
    ASSERT_ERR(dv365_adapter_load(path, "bad.name", &a), DV365_E_INVALID, "name");
    snprintf(path, sizeof path, "%s/missing.safetensors", tmpdir);
    ASSERT_ERR(dv365_adapter_load(path, "f", &a), DV365_E_IO, "missing");
    snprintf(path, sizeof path, "%s/bad.safetensors", tmpdir);

    write_file(path, "conv", "2", "3", "2", W, 2, ws2, DV_DTYPE_F32, w, Bn, 2, bias);
    ASSERT_ERR(dv365_adapter_load(path, "f", &a), DV365_E_FORMAT, "conv");
    write_file(path, "linear", "2", NULL, "2", W, 2, ws2, DV_DTYPE_F32, w, Bn, 2, bias);
    ASSERT_ERR(dv365_adapter_load(path, "f", &a), DV365_E_FORMAT, "adapter.f.dim");
    write_file(path, "linear", "2", "-3", "2", W, 2, ws2, DV_DTYPE_F32, w, Bn, 2, bias);
    ASSERT_ERR(dv365_adapter_load(path, "f", &a), DV365_E_FORMAT, "not a size");
    write_file(path, "linear", "0", "3", "2", W, 2, ws2, DV_DTYPE_F32, w, Bn, 2, bias);
    ASSERT_ERR(dv365_adapter_load(path, "f", &a), DV365_E_FORMAT, "k and dim");
    write_file(path, "gatenet_vector", "2", "3", "2", W, 2, ws2, DV_DTYPE_F32, w, Bn, 2, bias);
    ASSERT_ERR(dv365_adapter_load(path, "f", &a), DV365_E_FORMAT, "out_dim must be 0");
    write_file(path, "linear", "99999999999", "99999999999", "99999999", W, 2, ws2,
               DV_DTYPE_F32, w, Bn, 2, bias);
    ASSERT_ERR(dv365_adapter_load(path, "f", &a), DV365_E_NOMEM, "too large");
    /* Huge but representable sizes: refused by the tensor sizes before any
     * allocation. */
    write_file(path, "linear", "100000", "100000", "1000", W, 2, ws2, DV_DTYPE_F32, w, Bn, 2,
               bias);
    ASSERT_ERR(dv365_adapter_load(path, "f", &a), DV365_E_MISMATCH, "metadata sizes need");
    write_file(path, "linear", "2", "3", "2", W, 2, bad_shape, DV_DTYPE_F32, w, Bn, 2, bias);
    ASSERT_ERR(dv365_adapter_load(path, "f", &a), DV365_E_MISMATCH, "adapter.f.weight");
    write_file(path, "linear", "2", "3", "2", W, 2, ws2, DV_DTYPE_F64, wd, Bn, 2, bias);
    ASSERT_ERR(dv365_adapter_load(path, "f", &a), DV365_E_FORMAT, "adapter.f.weight");
    write_file(path, "linear", "2", "3", "2", W, 2, ws2, DV_DTYPE_F32, w, NULL, 0, NULL);
    ASSERT_ERR(dv365_adapter_load(path, "f", &a), DV365_E_NOT_FOUND, "adapter.f.bias");
    w[7] = NAN;
    write_file(path, "linear", "2", "3", "2", W, 2, ws2, DV_DTYPE_F32, w, Bn, 2, bias);
    ASSERT_ERR(dv365_adapter_load(path, "f", &a), DV365_E_NONFINITE, "adapter.f.weight[7]");
    /* Not a safetensors file at all. */
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    fputs("hello, not weights", fp);
    fclose(fp);
    ASSERT_ERR(dv365_adapter_load(path, "f", &a), DV365_E_FORMAT, "");
    assert_null(a);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    dv365_adapter *a = NULL;
    ASSERT_ERR(dv365_adapter_create(DV365_ADAPTER_LINEAR, NULL, 2, 3, 4, 1, &a), DV365_E_NULL,
               "name");
    ASSERT_ERR(dv365_adapter_create(DV365_ADAPTER_LINEAR, "x", 2, 3, 4, 1, NULL), DV365_E_NULL,
               "out");
    ASSERT_ERR(dv365_adapter_create((dv365_adapter_kind)4, "x", 2, 3, 4, 1, &a),
               DV365_E_INVALID, "kind 4");
    ASSERT_ERR(dv365_adapter_create((dv365_adapter_kind)-1, "x", 2, 3, 4, 1, &a),
               DV365_E_INVALID, "kind -1");
    ASSERT_ERR(dv365_adapter_create(DV365_ADAPTER_LINEAR, "x", 0, 3, 4, 1, &a), DV365_E_INVALID,
               "k=0");
    ASSERT_ERR(dv365_adapter_create(DV365_ADAPTER_PREFIX, "x", 2, 0, 4, 1, &a), DV365_E_INVALID,
               "dim=0");
    ASSERT_ERR(dv365_adapter_create(DV365_ADAPTER_LINEAR, "x", 2, 3, 0, 1, &a), DV365_E_INVALID,
               "out_dim");
    ASSERT_ERR(dv365_adapter_create(DV365_ADAPTER_GATENET_BIT, "x", 2, 3, 5, 1, &a),
               DV365_E_INVALID, "out_dim must be 0");
    ASSERT_ERR(dv365_adapter_create(DV365_ADAPTER_GATENET_VECTOR, "", 2, 3, 0, 1, &a),
               DV365_E_INVALID, "1..64");
    ASSERT_ERR(dv365_adapter_create(DV365_ADAPTER_GATENET_VECTOR, "a.b", 2, 3, 0, 1, &a),
               DV365_E_INVALID, "character 1");
    ASSERT_ERR(dv365_adapter_create(DV365_ADAPTER_GATENET_BIT, "x", SIZE_MAX / 4, 1 << 20, 0, 1,
                                    &a),
               DV365_E_NOMEM, "too large");
    assert_null(a);
    ASSERT_ERR(dv365_adapter_info(NULL, NULL, NULL, NULL, NULL), DV365_E_NULL, "'a'");
    ASSERT_ERR(dv365_adapter_save(NULL, "x"), DV365_E_NULL, "'a'");
    ASSERT_ERR(dv365_adapter_load(NULL, "x", &a), DV365_E_NULL, "path");

    const size_t K = 3, D = 4, B = 2, nu = B * K * D;
    a = make(DV365_ADAPTER_GATENET_BIT, K, D, 0, 71);
    ASSERT_ERR(dv365_adapter_save(a, NULL), DV365_E_NULL, "path");
    ASSERT_ERR(dv365_adapter_save(a, "/nonexistent-dir/x.safetensors"), DV365_E_IO,
               "dv365_adapter_save");
    dv365_workspace *ws;
    ASSERT_OK(dv365_workspace_create(&ws));
    float U[24], y[24], dout[24], dU[24] = {0}, G[64] = {0};
    assert_true(dv365_adapter_num_params(a) <= 64);
    fill_normal(U, nu, 14, 1.0);
    fill_normal(dout, nu, 15, 1.0);
    ASSERT_ERR(dv365_adapter_forward(NULL, ws, B, U, y, 1), DV365_E_NULL, "'a'");
    ASSERT_ERR(dv365_adapter_forward(a, NULL, B, U, y, 1), DV365_E_NULL, "'ws'");
    ASSERT_ERR(dv365_adapter_forward(a, ws, B, NULL, y, 1), DV365_E_NULL, "'U'");
    ASSERT_ERR(dv365_adapter_forward(a, ws, B, U, NULL, 1), DV365_E_NULL, "'out'");
    ASSERT_ERR(dv365_adapter_forward(a, ws, 0, U, y, 1), DV365_E_INVALID, "batch");
    ASSERT_ERR(dv365_adapter_forward(a, ws, SIZE_MAX / 8, U, y, 1), DV365_E_INVALID,
               "too large");
    ASSERT_ERR(dv365_adapter_forward(a, ws, B, U, y, 0), DV365_E_INVALID, "nthreads");
    ASSERT_ERR(dv365_adapter_forward(a, ws, B, U, y, 5000), DV365_E_INVALID, "nthreads");
    ASSERT_ERR(dv365_adapter_backward(a, ws, B, U, dout, NULL, NULL, 1), DV365_E_NULL,
               "both NULL");
    ASSERT_ERR(dv365_adapter_backward(a, ws, B, U, NULL, G, dU, 1), DV365_E_NULL, "'dout'");
    U[1 * K * D + 2 * D + 3] = NAN; /* user 1, token 2, column 3 */
    ASSERT_ERR(dv365_adapter_forward(a, ws, B, U, y, 1), DV365_E_NONFINITE,
               "U[user 1, token 2, column 3] is NaN");
    ASSERT_ERR(dv365_adapter_backward(a, ws, B, U, dout, G, dU, 1), DV365_E_NONFINITE,
               "U[user 1, token 2, column 3]");
    U[1 * K * D + 2 * D + 3] = 0.5f;
    U[5] = -INFINITY;
    ASSERT_ERR(dv365_adapter_forward(a, ws, B, U, y, 1), DV365_E_NONFINITE,
               "U[user 0, token 1, column 1] is infinite");
    U[5] = 0.25f;
    dout[D + 1] = INFINITY;
    ASSERT_ERR(dv365_adapter_backward(a, ws, B, U, dout, G, dU, 1), DV365_E_NONFINITE,
               "dout[user 0, token 1, column 1]");
    dout[D + 1] = 1.0f;
    /* Failed calls wrote nothing into the gradients; the handle still works. */
    for (size_t i = 0; i < nu; i++)
        assert_true(dU[i] == 0.0f);
    ASSERT_OK(dv365_adapter_forward(a, ws, B, U, y, 1));
    ASSERT_OK(dv365_adapter_backward(a, ws, B, U, dout, G, dU, 1));
    dv365_adapter_free(a);

    /* A linear adapter names the bad output index as a row column. */
    a = make(DV365_ADAPTER_LINEAR, K, D, 2, 72);
    float dl[4] = {0, 0, 0, NAN};
    ASSERT_ERR(dv365_adapter_backward(a, ws, B, U, dl, G, NULL, 1), DV365_E_NONFINITE,
               "dout[user 1, row 0, column 1]");
    dv365_adapter_free(a);
    dv365_workspace_free(ws);
}

/* Allocation failures give DV365_E_NOMEM and leak nothing. */
static size_t g_live, g_count, g_fail_at;
static void *failing_alloc(void *o, size_t n)
{
    (void)o;
    if (++g_count == g_fail_at)
        return NULL;
    g_live++;
    return malloc(n);
}
static void counting_free(void *o, void *p)
{
    (void)o;
    g_live--;
    free(p);
}

static void test_out_of_memory(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/oom.safetensors", tmpdir);
    dv365_adapter *a = make(DV365_ADAPTER_PREFIX, 3, 4, 5, 81);
    ASSERT_OK(dv365_adapter_save(a, path));
    dv365_adapter_free(a);
    for (int what = 0; what < 2; what++) {
        bool succeeded = false;
        for (g_fail_at = 1; !succeeded && g_fail_at < 50; g_fail_at++) {
            g_live = g_count = 0;
            ASSERT_OK(dv365_set_allocator(failing_alloc, counting_free, NULL));
            a = NULL;
            dv365_status st = what == 0
                                  ? dv365_adapter_create(DV365_ADAPTER_PREFIX, "t", 3, 4, 5, 1, &a)
                                  : dv365_adapter_load(path, "t", &a);
            if (st == DV365_OK) {
                succeeded = true;
                dv365_adapter_free(a);
            } else {
                assert_int_equal(st, DV365_E_NOMEM);
                assert_null(a);
            }
            assert_int_equal(g_live, 0);
            ASSERT_OK(dv365_set_allocator(NULL, NULL, NULL));
        }
        assert_true(succeeded);
    }
}

/* ---------------------------------------------- PyTorch reference glue -- */

static int die(const char *what)
{
    fprintf(stderr, "test_adapter: %s: %s\n", what, dv365_last_error());
    return 1;
}

/* --create PATH KIND NAME K D OUT_DIM SEED: dv365_adapter_create + save. */
static int run_create(char **argv)
{
    dv365_adapter *a;
    if (dv365_adapter_create((dv365_adapter_kind)atoi(argv[0]), argv[1], strtoull(argv[2], 0, 10),
                             strtoull(argv[3], 0, 10), strtoull(argv[4], 0, 10),
                             strtoull(argv[5], 0, 10), &a) != DV365_OK)
        return die("create");
    if (dv365_adapter_save(a, argv[6]) != DV365_OK)
        return die("save");
    dv365_adapter_free(a);
    return 0;
}

/* --ref IN OUT NAME NTHREADS: load adapter NAME from IN (which also holds
 * "u" [B, K, D] and "dout" [B, output]), write "out", "grad" [num_params]
 * and "du" to OUT. */
static int run_ref(char **argv)
{
    const char *in = argv[0], *outp = argv[1], *name = argv[2];
    int nt = atoi(argv[3]);
    dv365_adapter *a;
    if (dv365_adapter_load(in, name, &a) != DV365_OK)
        return die("load");
    size_t K, D;
    dv365_adapter_info(a, NULL, &K, &D, NULL);
    dv_st_file *f;
    if (dv_st_read_file(in, &f) != DV365_OK)
        return die("read");
    const dv_tensor_view *vu = dv_st_find(f, "u"), *vd = dv_st_find(f, "dout");
    if (vu == NULL || vd == NULL || vu->ndim != 3)
        return die("u/dout missing");
    size_t B = vu->shape[0], os = dv365_adapter_output_size(a), np = dv365_adapter_num_params(a);
    size_t su[3] = {B, K, D}, sd[2] = {B, os}, sg[1] = {np};
    float *U = malloc(B * K * D * 4), *dout = malloc(B * os * 4), *y = malloc(B * os * 4);
    float *G = calloc(np ? np : 1, 4), *dU = calloc(B * K * D, 4);
    dv365_workspace *ws;
    if (dv_st_copy_f32(f, "u", 3, su, U) || dv_st_copy_f32(f, "dout", 2, sd, dout))
        return die("u/dout shape");
    if (dv365_workspace_create(&ws) || dv365_adapter_forward(a, ws, B, U, y, nt) ||
        dv365_adapter_backward(a, ws, B, U, dout, G, dU, nt))
        return die("forward/backward");
    dv_st_writer *w;
    if (dv_st_writer_create(&w) || dv_st_writer_add(w, "out", DV_DTYPE_F32, 2, sd, y) ||
        dv_st_writer_add(w, "grad", DV_DTYPE_F32, 1, sg, G) ||
        dv_st_writer_add(w, "du", DV_DTYPE_F32, 3, su, dU) || dv_st_writer_write(w, outp))
        return die("write");
    dv_st_writer_free(w);
    dv_st_free(f);
    dv365_workspace_free(ws);
    dv365_adapter_free(a);
    free(U), free(dout), free(y), free(G), free(dU);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 9 && strcmp(argv[1], "--create") == 0) {
        char *args[7] = {argv[3], argv[4], argv[5], argv[6], argv[7], argv[8], argv[2]};
        return run_create(args);
    }
    if (argc == 6 && strcmp(argv[1], "--ref") == 0)
        return run_ref(argv + 2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shapes_and_init),
        cmocka_unit_test(test_forward_matches_math),
        cmocka_unit_test(test_backward_finite_differences),
        cmocka_unit_test(test_backward_accumulates),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_linear_blocks),
        cmocka_unit_test(test_workspace),
        cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
