/* test_nn.c — the encoder's layers: BLIS wrapper (values and thread-count
 * determinism), erf accuracy, forward values checked by hand, and every
 * backward against central finite differences of its forward. */
#include "testutil.h"

#include "gemm.h"
#include "internal.h"
#include "nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static dv_rng g_rng;

static float *randv(size_t n, float scale)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(scale * dv_rng_normal(&g_rng));
    return p;
}

static float *zerov(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof *p);
    assert_non_null(p);
    return p;
}

/* ---------------------------------------------------------------- gemm ---- */

/* Naive double reference of C = alpha op(A) op(B) + beta C. */
static void ref_gemm(bool ta, bool tb, size_t m, size_t n, size_t k, float alpha,
                     const float *A, size_t lda, const float *B, size_t ldb, float beta,
                     float *C, size_t ldc)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (size_t p = 0; p < k; p++) {
                double a = ta ? A[p * lda + i] : A[i * lda + p];
                double b = tb ? B[j * ldb + p] : B[p * ldb + j];
                s += a * b;
            }
            double c = beta == 0.0f ? 0.0 : beta * (double)C[i * ldc + j];
            C[i * ldc + j] = (float)(alpha * s + c);
        }
}

static void test_gemm_values(void **state)
{
    (void)state;
    /* Small edge tiles, and sizes crossing the M, N and K blocking. */
    static const size_t sizes[][3] = {{7, 9, 11}, {150, 40, 800}};
    for (int c = 0; c < 8; c++) {
        const size_t m = sizes[c / 4][0], n = sizes[c / 4][1], k = sizes[c / 4][2], pad = 3;
        bool ta = c & 1, tb = c & 2;
        size_t lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
        float *A = randv((ta ? k : m) * lda, 1), *B = randv((tb ? n : k) * ldb, 1);
        float *C = randv(m * ldc, 1), *R = malloc(m * ldc * sizeof *R);
        memcpy(R, C, m * ldc * sizeof *R);
        dv_sgemm(ta, tb, m, n, k, 0.5f, A, lda, B, ldb, 2.0f, C, ldc, 1);
        ref_gemm(ta, tb, m, n, k, 0.5f, A, lda, B, ldb, 2.0f, R, ldc);
        assert_true(test_max_rel_diff(C, R, m * ldc) < 2e-5);
        /* beta 0 must ignore NaNs already in C. */
        for (size_t i = 0; i < m * ldc; i++)
            C[i] = NAN;
        dv_sgemm(ta, tb, m, n, k, 1.0f, A, lda, B, ldb, 0.0f, C, ldc, 2);
        ref_gemm(ta, tb, m, n, k, 1.0f, A, lda, B, ldb, 0.0f, R, ldc);
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++)
                assert_true(fabsf(C[i * ldc + j] - R[i * ldc + j]) < 2e-4f);
        free(A), free(B), free(C), free(R);
    }
}

/* BLIS never splits the K loop between threads, so C must be bitwise the
 * same for 1, 2 and 3 threads; the shapes cover tiny products (where BLIS's
 * small-matrix kernels would break this), large ones, and every transpose
 * the layers use. */
static void test_gemm_thread_determinism(void **state)
{
    (void)state;
    static const size_t shapes[][3] = {
        {200, 64, 200}, {200, 200, 64}, {12800, 768, 256}, {256, 1024, 3200},
        {8, 256, 200},  {200, 256, 8},  {3, 5, 7},         {640, 256, 1024},
        {21, 21, 8},    {37, 37, 8},    {42, 48, 16},      {111, 7, 300},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        for (int t = 0; t < 4; t++) {
            bool ta = t & 1, tb = t & 2;
            size_t lda = ta ? m : k, ldb = tb ? k : n;
            float *A = randv(m * k, 1), *B = randv(k * n, 1);
            float *C1 = randv(m * n, 1), *C2 = malloc(m * n * sizeof *C2),
                  *C3 = malloc(m * n * sizeof *C3);
            memcpy(C2, C1, m * n * sizeof *C2);
            memcpy(C3, C1, m * n * sizeof *C3);
            dv_sgemm(ta, tb, m, n, k, 1.0f, A, lda, B, ldb, 1.0f, C1, n, 1);
            dv_sgemm(ta, tb, m, n, k, 1.0f, A, lda, B, ldb, 1.0f, C2, n, 2);
            dv_sgemm(ta, tb, m, n, k, 1.0f, A, lda, B, ldb, 1.0f, C3, n, 3);
            if (memcmp(C1, C2, m * n * sizeof *C1) != 0 || memcmp(C1, C3, m * n * sizeof *C1))
                fail_msg("gemm %zux%zux%zu ta=%d tb=%d differs across thread counts", m, n, k,
                         ta, tb);
            free(A), free(B), free(C1), free(C2), free(C3);
        }
    }
}

/* A row of C depends only on its row of A: computing 1, 13 or 300 rows at
 * once gives the same bits (so a user's embedding does not depend on the
 * other users of its batch). */
static void test_gemm_row_invariance(void **state)
{
    (void)state;
    const size_t m = 300, n = 72, k = 200;
    float *A = randv(m * k, 1), *B = randv(n * k, 1), *C = malloc(m * n * 4), *R = malloc(n * 4);
    dv_sgemm(false, true, m, n, k, 1.0f, A, k, B, k, 0.0f, C, n, 2);
    static const size_t rows[] = {0, 1, 12, 150, 299};
    for (size_t i = 0; i < 5; i++) {
        dv_sgemm(false, true, 1, n, k, 1.0f, A + rows[i] * k, k, B, k, 0.0f, R, n, 1);
        assert_memory_equal(R, C + rows[i] * n, n * 4);
    }
    float *C13 = malloc(13 * n * 4);
    dv_sgemm(false, true, 13, n, k, 1.0f, A + 100 * k, k, B, k, 0.0f, C13, n, 1);
    assert_memory_equal(C13, C + 100 * n, 13 * n * 4);
    free(A), free(B), free(C), free(R), free(C13);
}

/* ----------------------------------------------------------- forward ----- */

static void test_erf_accuracy(void **state)
{
    (void)state;
    double worst = 0;
    for (int i = -60000; i <= 60000; i++) {
        float x = (float)i * 1e-4f;
        double e = fabs((double)dv_erf(x) - erf((double)x));
        worst = e > worst ? e : worst;
    }
    assert_true(worst < 5e-7); /* a few float ulps of 1 */
    assert_true(dv_erf(100.0f) == 1.0f && dv_erf(-100.0f) == -1.0f);
    float y[3], x[3] = {0.0f, 1.0f, -2.0f};
    dv_gelu_forward(y, x, 3);
    assert_true(y[0] == 0.0f);
    assert_true(fabs(y[1] - 0.8413447460685429) < 1e-6);
    assert_true(fabs(y[2] - -0.04550026389635842) < 1e-6);
}

/* The fused bias ops equal their unfused sequence (C = 21: a vector tail). */
static void test_fused_bias_ops(void **state)
{
    (void)state;
    const size_t R = 3, C = 21;
    float *a = randv(R * C, 1), *r = randv(R * C, 1), *b = randv(C, 1), *y = zerov(R * C);
    float *h = randv(R * C, 2), *h2 = malloc(R * C * 4), *g = zerov(R * C), *g2 = zerov(R * C);
    dv_residual_bias_forward(y, a, r, b, R, C);
    for (size_t i = 0; i < R * C; i++)
        assert_true(y[i] == a[i] + r[i] + b[i % C]);
    for (size_t i = 0; i < R * C; i++)
        h2[i] = h[i] + b[i % C];
    dv_gelu_forward(g2, h2, R * C);
    dv_bias_gelu_forward(h, g, b, R, C);
    assert_memory_equal(h, h2, R * C * 4);
    assert_memory_equal(g, g2, R * C * 4);
    dv_bias_gelu_forward(h2, h2, b, R, C); /* in place */
    for (size_t i = 0; i < R * C; i++)
        h[i] += b[i % C];
    dv_gelu_forward(h, h, R * C);
    assert_memory_equal(h, h2, R * C * 4);
    free(a), free(r), free(b), free(y), free(h), free(h2), free(g), free(g2);
}

static void test_meanpool_values(void **state)
{
    (void)state;
    /* T = 5, s = 2: windows {0,1}, {2,3}, {4}; the last averages only one. */
    float x[2 * 5 * 2], y[2 * 3 * 2];
    for (int i = 0; i < 20; i++)
        x[i] = (float)i;
    dv_meanpool_forward(y, x, 2, 5, 2, 2);
    const float expect[12] = {1, 2, 5, 6, 8, 9, 11, 12, 15, 16, 18, 19};
    for (int i = 0; i < 12; i++)
        assert_true(y[i] == expect[i]);
    /* s = 1 is the identity; s >= T averages everything. */
    float y1[20];
    dv_meanpool_forward(y1, x, 2, 5, 2, 1);
    assert_memory_equal(y1, x, sizeof x);
    float yall[4];
    dv_meanpool_forward(yall, x, 2, 5, 2, 7);
    assert_true(yall[0] == 4 && yall[1] == 5 && yall[2] == 14 && yall[3] == 15);
    assert_int_equal(dv_meanpool_len(200, 2), 100);
    assert_int_equal(dv_meanpool_len(25, 2), 13);
}

static void test_layernorm_values(void **state)
{
    (void)state;
    float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 2, 1}, b[4] = {0, 0, 0, 1}, y[4], m, r;
    dv_layernorm_forward(y, &m, &r, x, w, b, 1, 4);
    double s = 1.0 / sqrt(1.25 + 1e-5);
    assert_true(fabs(m - 2.5) < 1e-6 && fabs(r - s) < 1e-5);
    assert_true(fabs(y[0] - -1.5 * s) < 1e-5 && fabs(y[2] - 1.0 * s) < 1e-5);
    assert_true(fabs(y[3] - (1.5 * s + 1)) < 1e-5);
}

static void test_lce_values(void **state)
{
    (void)state;
    /* N=3 tokens, D=2, K=2: y[k,d] = Σ_n W[k,n] x[n,d] + b[k], written with a
     * user stride of 5 rows so the rows in between stay untouched. */
    float x[2 * 3 * 2] = {1, 2, 3, 4, 5, 6, -1, -2, -3, -4, -5, -6};
    float W[6] = {1, 0, -1, 0.5f, 0.5f, 0.5f}, bias[2] = {10, 20};
    float y[2 * 10];
    for (int i = 0; i < 20; i++)
        y[i] = 99;
    dv_lce_forward(y, 10, x, W, bias, 2, 3, 2, 2, 1);
    const float e0[4] = {6, 6, 24.5f, 26}, e1[4] = {14, 14, 15.5f, 14};
    assert_memory_equal(y, e0, sizeof e0);
    assert_memory_equal(y + 10, e1, sizeof e1);
    assert_true(y[4] == 99 && y[9] == 99);
}

/* Naive attention for one user (double), to check the BLIS-based forward. */
static void ref_attention(double *y, const float *x, const float *wi, const float *bi,
                          const float *wo, const float *bo, size_t T, size_t D, size_t H)
{
    size_t hd = D / H;
    double *qkv = calloc(T * 3 * D, sizeof *qkv), *ctx = calloc(T * D, sizeof *ctx),
           *s = calloc(T, sizeof *s);
    for (size_t t = 0; t < T; t++)
        for (size_t o = 0; o < 3 * D; o++) {
            double a = bi[o];
            for (size_t i = 0; i < D; i++)
                a += (double)x[t * D + i] * wi[o * D + i];
            qkv[t * 3 * D + o] = a;
        }
    for (size_t h = 0; h < H; h++)
        for (size_t i = 0; i < T; i++) {
            double mx = -INFINITY, sum = 0;
            for (size_t j = 0; j < T; j++) {
                double a = 0;
                for (size_t c = 0; c < hd; c++)
                    a += qkv[i * 3 * D + h * hd + c] * qkv[j * 3 * D + D + h * hd + c];
                s[j] = a / sqrt((double)hd);
                mx = s[j] > mx ? s[j] : mx;
            }
            for (size_t j = 0; j < T; j++)
                sum += (s[j] = exp(s[j] - mx));
            for (size_t c = 0; c < hd; c++) {
                double a = 0;
                for (size_t j = 0; j < T; j++)
                    a += s[j] / sum * qkv[j * 3 * D + 2 * D + h * hd + c];
                ctx[i * D + h * hd + c] = a;
            }
        }
    for (size_t t = 0; t < T; t++)
        for (size_t o = 0; o < D; o++) {
            double a = bo[o];
            for (size_t i = 0; i < D; i++)
                a += ctx[t * D + i] * wo[o * D + i];
            y[t * D + o] = a;
        }
    free(qkv), free(ctx), free(s);
}

static void test_attention_values(void **state)
{
    (void)state;
    const size_t B = 3, T = 6, D = 8, H = 2;
    float *x = randv(B * T * D, 1), *wi = randv(3 * D * D, 0.5f), *bi = randv(3 * D, 0.1f);
    float *wo = randv(D * D, 0.5f), *bo = randv(D, 0.1f);
    float *y = zerov(B * T * D), *y2 = zerov(B * T * D), *qkv = zerov(B * T * 3 * D),
          *att = zerov(B * H * T * T), *ctx = zerov(B * T * D);
    double ref[6 * 8];
    dv_attention_forward(y, qkv, att, ctx, x, wi, bi, wo, bo, B, T, D, H, true, 1);
    for (size_t b = 0; b < B; b++) {
        ref_attention(ref, x + b * T * D, wi, bi, wo, bo, T, D, H);
        for (size_t i = 0; i < T * D; i++)
            assert_true(fabs(y[b * T * D + i] - ref[i]) < 1e-5 * (1 + fabs(ref[i])));
    }
    /* Rows of P sum to one; the inference mode (one [T,T] scratch) and two
     * threads give the very same bits. */
    for (size_t r = 0; r < B * H * T; r++) {
        double s = 0;
        for (size_t j = 0; j < T; j++)
            s += att[r * T + j];
        assert_true(fabs(s - 1) < 1e-6);
    }
    dv_attention_forward(y2, qkv, att, ctx, x, wi, bi, wo, bo, B, T, D, H, false, 2);
    assert_memory_equal(y, y2, B * T * D * sizeof *y);
    free(x), free(wi), free(bi), free(wo), free(bo), free(y), free(y2), free(qkv), free(att),
        free(ctx);
}

/* ------------------------------------------------- finite differences ---- */

/* A layer under test: run() recomputes out[n_out] from the current inputs;
 * the loss is Σ w_i·out_i in double, so dL/dout = w. */
typedef struct fd_case {
    void (*run)(struct fd_case *c);
    float *out, *w;
    size_t n_out;
    void *ctx;
} fd_case;

static double fd_loss(fd_case *c)
{
    c->run(c);
    double L = 0;
    for (size_t i = 0; i < c->n_out; i++)
        L += (double)c->w[i] * c->out[i];
    return L;
}

/* Compare the analytic gradient g of parameter p[n] with central differences
 * at up to 60 entries.  Float forwards limit the FD precision, hence a
 * tolerance of 1e-2 relative to the gradient scale: a wrong sign, factor or
 * missing term still fails by orders of magnitude. */
static void fd_check(fd_case *c, const char *name, float *p, const float *g, size_t n, float h)
{
    double gmax = 0;
    for (size_t i = 0; i < n; i++)
        gmax = fmax(gmax, fabs(g[i]));
    size_t step = n > 60 ? n / 60 : 1;
    double worst = 0;
    size_t worst_i = 0;
    double worst_fd = 0;
    for (size_t i = 0; i < n; i += step) {
        float save = p[i];
        p[i] = save + h;
        double lp = fd_loss(c);
        p[i] = save - h;
        double lm = fd_loss(c);
        p[i] = save;
        double fd = (lp - lm) / (2.0 * ((double)(save + h) - (double)save));
        double err = fabs(fd - g[i]) / (1e-2 * fabs(g[i]) + 1e-2 * gmax + 1e-6);
        if (!(err <= worst)) {
            worst = err, worst_i = i, worst_fd = fd;
        }
    }
    if (!(worst <= 1.0))
        fail_msg("%s[%zu]: analytic %.7g vs finite difference %.7g (grad scale %.3g)", name,
                 worst_i, g[worst_i], worst_fd, gmax);
    assert_true(gmax > 0); /* a gradient of all zeros would test nothing */
}

/* linear */
typedef struct { float *x, *W, *b; size_t rows, in, out; } lin_ctx;
static void lin_run(fd_case *c)
{
    lin_ctx *l = c->ctx;
    dv_linear_forward(c->out, l->x, l->W, l->b, l->rows, l->in, l->out, 1);
}

static void test_linear_backward(void **state)
{
    (void)state;
    lin_ctx l = {randv(5 * 7, 1), randv(4 * 7, 1), randv(4, 1), 5, 7, 4};
    fd_case c = {lin_run, zerov(5 * 4), randv(5 * 4, 1), 5 * 4, &l};
    float *dx = zerov(5 * 7), *dW = zerov(4 * 7), *db = zerov(4);
    dv_linear_forward(c.out, l.x, l.W, l.b, 5, 7, 4, 1);
    dv_linear_backward(dx, dW, db, c.w, l.x, l.W, 5, 7, 4, 1);
    fd_check(&c, "linear dx", l.x, dx, 5 * 7, 1e-2f);
    fd_check(&c, "linear dW", l.W, dW, 4 * 7, 1e-2f);
    fd_check(&c, "linear db", l.b, db, 4, 1e-2f);
    /* Backward accumulates: a second call doubles every gradient. */
    float *dW2 = malloc(4 * 7 * sizeof *dW2);
    memcpy(dW2, dW, 4 * 7 * sizeof *dW2);
    dv_linear_backward(dx, dW2, db, c.w, l.x, l.W, 5, 7, 4, 1);
    for (size_t i = 0; i < 4 * 7; i++)
        assert_true(fabsf(dW2[i] - 2 * dW[i]) <= 1e-6f * (1 + fabsf(dW[i])));
    free(l.x), free(l.W), free(l.b), free(c.out), free(c.w), free(dx), free(dW), free(db),
        free(dW2);
}

/* layer norm */
typedef struct { float *x, *w, *b, *mean, *rstd; size_t rows, C; } ln_ctx;
static void ln_run(fd_case *c)
{
    ln_ctx *l = c->ctx;
    dv_layernorm_forward(c->out, l->mean, l->rstd, l->x, l->w, l->b, l->rows, l->C);
}

static void test_layernorm_backward(void **state)
{
    (void)state;
    const size_t R = 4, C = 16;
    ln_ctx l = {randv(R * C, 2), randv(C, 1), randv(C, 1), zerov(R), zerov(R), R, C};
    fd_case c = {ln_run, zerov(R * C), randv(R * C, 1), R * C, &l};
    float *dx = zerov(R * C), *dw = zerov(C), *db = zerov(C);
    ln_run(&c);
    dv_layernorm_backward(dx, dw, db, c.w, l.x, l.mean, l.rstd, l.w, R, C);
    fd_check(&c, "layernorm dx", l.x, dx, R * C, 1e-2f);
    fd_check(&c, "layernorm dw", l.w, dw, C, 1e-2f);
    fd_check(&c, "layernorm db", l.b, db, C, 1e-2f);
    free(l.x), free(l.w), free(l.b), free(l.mean), free(l.rstd), free(c.out), free(c.w),
        free(dx), free(dw), free(db);
}

/* GELU */
typedef struct { float *x; size_t n; } gelu_ctx;
static void gelu_run(fd_case *c)
{
    gelu_ctx *g = c->ctx;
    dv_gelu_forward(c->out, g->x, g->n);
}

static void test_gelu_backward(void **state)
{
    (void)state;
    const size_t n = 64;
    gelu_ctx g = {randv(n, 2), n};
    fd_case c = {gelu_run, zerov(n), randv(n, 1), n, &g};
    float *dx = zerov(n);
    dv_gelu_backward(dx, g.x, c.w, n);
    fd_check(&c, "gelu dx", g.x, dx, n, 1e-2f);
    free(g.x), free(c.out), free(c.w), free(dx);
}

/* attention */
typedef struct {
    float *x, *wi, *bi, *wo, *bo, *qkv, *att, *ctx;
    size_t B, T, D, H;
} att_ctx;
static void att_run(fd_case *c)
{
    att_ctx *a = c->ctx;
    dv_attention_forward(c->out, a->qkv, a->att, a->ctx, a->x, a->wi, a->bi, a->wo, a->bo,
                         a->B, a->T, a->D, a->H, true, 1);
}

static void test_attention_backward(void **state)
{
    (void)state;
    const size_t B = 2, T = 5, D = 8, H = 2, R = B * T;
    att_ctx a = {randv(R * D, 1),     randv(3 * D * D, 0.5f), randv(3 * D, 0.2f),
                 randv(D * D, 0.5f),  randv(D, 0.2f),         zerov(R * 3 * D),
                 zerov(B * H * T * T), zerov(R * D),           B, T, D, H};
    fd_case c = {att_run, zerov(R * D), randv(R * D, 1), R * D, &a};
    float *dx = zerov(R * D), *dwi = zerov(3 * D * D), *dbi = zerov(3 * D),
          *dwo = zerov(D * D), *dbo = zerov(D);
    float *scratch = zerov(dv_attention_backward_scratch(B, T, D));
    att_run(&c);
    dv_attention_backward(dx, dwi, dbi, dwo, dbo, scratch, c.w, a.x, a.qkv, a.att, a.ctx, a.wi,
                          a.wo, B, T, D, H, 1);
    fd_check(&c, "attention dx", a.x, dx, R * D, 1e-2f);
    fd_check(&c, "attention d in_proj_weight", a.wi, dwi, 3 * D * D, 1e-2f);
    fd_check(&c, "attention d in_proj_bias", a.bi, dbi, 3 * D, 1e-2f);
    fd_check(&c, "attention d out_proj.weight", a.wo, dwo, D * D, 1e-2f);
    fd_check(&c, "attention d out_proj.bias", a.bo, dbo, D, 1e-2f);
    free(a.x), free(a.wi), free(a.bi), free(a.wo), free(a.bo), free(a.qkv), free(a.att),
        free(a.ctx), free(c.out), free(c.w), free(dx), free(dwi), free(dbi), free(dwo),
        free(dbo), free(scratch);
}

/* mean pooling (T = 7, s = 3: windows of 3, 3 and 1) */
typedef struct { float *x; size_t B, T, D, s; } pool_ctx;
static void pool_run(fd_case *c)
{
    pool_ctx *p = c->ctx;
    dv_meanpool_forward(c->out, p->x, p->B, p->T, p->D, p->s);
}

static void test_meanpool_backward(void **state)
{
    (void)state;
    pool_ctx p = {randv(2 * 7 * 3, 1), 2, 7, 3, 3};
    size_t no = 2 * dv_meanpool_len(7, 3) * 3;
    fd_case c = {pool_run, zerov(no), randv(no, 1), no, &p};
    float *dx = zerov(2 * 7 * 3);
    dv_meanpool_backward(dx, c.w, 2, 7, 3, 3);
    fd_check(&c, "meanpool dx", p.x, dx, 2 * 7 * 3, 1e-2f);
    free(p.x), free(c.out), free(c.w), free(dx);
}

/* LCE, with a user stride larger than K·D */
typedef struct { float *x, *W, *b; size_t B, N, D, K, ldy; } lce_ctx;
static void lce_run(fd_case *c)
{
    lce_ctx *l = c->ctx;
    dv_lce_forward(c->out, l->ldy, l->x, l->W, l->b, l->B, l->N, l->D, l->K, 1);
}

static void test_lce_backward(void **state)
{
    (void)state;
    const size_t B = 3, N = 9, D = 4, K = 2, ldy = 5 * D;
    lce_ctx l = {randv(B * N * D, 1), randv(K * N, 1), randv(K, 1), B, N, D, K, ldy};
    /* Rows not written by the LCE get weight 0 in the loss. */
    fd_case c = {lce_run, zerov(B * ldy), randv(B * ldy, 1), B * ldy, &l};
    for (size_t b = 0; b < B; b++)
        for (size_t i = K * D; i < ldy; i++)
            c.w[b * ldy + i] = 0;
    float *dx = zerov(B * N * D), *dW = zerov(K * N), *db = zerov(K);
    dv_lce_backward(dx, dW, db, c.w, ldy, l.x, l.W, B, N, D, K, 1);
    fd_check(&c, "lce dx", l.x, dx, B * N * D, 1e-2f);
    fd_check(&c, "lce dW", l.W, dW, K * N, 1e-2f);
    fd_check(&c, "lce dbias", l.b, db, K, 1e-2f);
    free(l.x), free(l.W), free(l.b), free(c.out), free(c.w), free(dx), free(dW), free(db);
}

int main(void)
{
    dv_rng_seed(&g_rng, 42);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_values),
        cmocka_unit_test(test_gemm_thread_determinism),
        cmocka_unit_test(test_gemm_row_invariance),
        cmocka_unit_test(test_erf_accuracy),
        cmocka_unit_test(test_fused_bias_ops),
        cmocka_unit_test(test_meanpool_values),
        cmocka_unit_test(test_layernorm_values),
        cmocka_unit_test(test_lce_values),
        cmocka_unit_test(test_attention_values),
        cmocka_unit_test(test_linear_backward),
        cmocka_unit_test(test_layernorm_backward),
        cmocka_unit_test(test_gelu_backward),
        cmocka_unit_test(test_attention_backward),
        cmocka_unit_test(test_meanpool_backward),
        cmocka_unit_test(test_lce_backward),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
