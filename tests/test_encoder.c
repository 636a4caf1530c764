/* test_encoder.c — the whole encoder: parameter table and init, finite
 * differences of every parameter and of X through forward/backward (funnel
 * with stride 2 and 1, LCE only, funnel only, with and without the
 * token-wise output compression), inference = training forward, bitwise
 * determinism across thread counts, input validation, allocation-free
 * steady state, one encoder shared by threads, weight files (round trip,
 * malformed), and the encoder.compress config key. */
#include "testutil.h"

#include "config.h"
#include "encoder.h"
#include "internal.h"
#include "safetensors.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static dv_rng g_rng;
static char g_dir[256];

static float *randv(size_t n, float scale)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(scale * dv_rng_normal(&g_rng));
    return p;
}

/* Only dim, n_slices and encoder matter to the encoder. */
static struct dv365_config make_cfg(size_t N, size_t D, size_t blocks, size_t layers,
                                    size_t heads, size_t ffn, size_t stride, size_t k_lce,
                                    float std)
{
    struct dv365_config c;
    memset(&c, 0, sizeof c);
    c.dim = D;
    c.n_slices = N;
    c.encoder = (dv_encoder_cfg){blocks, layers, heads, ffn, stride, k_lce, std, 0};
    return c;
}

/* make_cfg with the funnel output compressed token-wise to compress tokens. */
static struct dv365_config make_cfg_c(size_t N, size_t D, size_t blocks, size_t layers,
                                      size_t heads, size_t ffn, size_t stride, size_t k_lce,
                                      float std, size_t compress)
{
    struct dv365_config c = make_cfg(N, D, blocks, layers, heads, ffn, stride, k_lce, std);
    c.encoder.compress = compress;
    return c;
}

static const char *tmp_path(const char *name)
{
    static char buf[512];
    snprintf(buf, sizeof buf, "%s/%s", g_dir, name);
    return buf;
}

/* ------------------------------------------------------- table & init -- */

static void test_table_and_init(void **state)
{
    (void)state;
    struct dv365_config cfg = make_cfg(200, 256, 3, 1, 4, 1024, 2, 8, 0.02f);
    assert_int_equal(dv_config_num_tokens(&cfg), 58);
    dv365_encoder *e;
    ASSERT_OK(dv365_encoder_create(&cfg, 7, &e));
    assert_int_equal(dv365_encoder_num_tokens(e), 58);
    assert_int_equal(dv_encoder_funnel_tokens(e), 50);
    size_t per_layer = 4 * 256 + 3 * 256 * 256 + 3 * 256 + 256 * 256 + 256 + 2 * 1024 * 256 +
                       1024 + 256;
    size_t expect = 200 * 256 + 3 * per_layer + 2 * 256 + 8 * 200 + 8;
    assert_int_equal(dv365_encoder_num_params(e), expect);

    size_t n;
    const dv_enc_tensor *t = dv_encoder_tensors(e, &n);
    assert_int_equal(n, 1 + 3 * 12 + 2 + 2);
    assert_string_equal(t[0].name, "encoder.pos");
    assert_string_equal(t[3].name, "encoder.blocks.0.layers.0.attn.in_proj_weight");
    assert_int_equal(t[3].shape[0], 768);
    assert_int_equal(t[3].shape[1], 256);
    assert_string_equal(t[n - 2].name, "encoder.lce.weight");
    assert_int_equal(t[n - 2].shape[0], 8);
    assert_int_equal(t[n - 2].shape[1], 200);
    /* Back to back, covering the block exactly. */
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(t[i].offset, off);
        off += t[i].numel;
    }
    assert_int_equal(off, expect);

    /* Init: LN weights 1, biases 0, matrices N(0, 0.02^2). */
    const float *p = dv_encoder_params_const(e);
    for (size_t i = 0; i < n; i++) {
        const float *v = p + t[i].offset;
        bool ln = strstr(t[i].name, ".ln") != NULL;
        bool weight = strstr(t[i].name, "weight") != NULL && t[i].ndim == 2;
        double s = 0, s2 = 0;
        for (size_t j = 0; j < t[i].numel; j++)
            s += v[j], s2 += (double)v[j] * v[j];
        double mean = s / t[i].numel, sd = sqrt(s2 / t[i].numel - mean * mean);
        if (ln && strstr(t[i].name, ".weight"))
            assert_true(mean == 1.0 && sd == 0.0);
        else if (weight || !strcmp(t[i].name, "encoder.pos"))
            assert_true(fabs(sd - 0.02) < 0.002 && fabs(mean) < 0.002);
        else
            assert_true(s2 == 0.0);
    }
    /* Same seed, same weights; another seed, other weights. */
    dv365_encoder *e2, *e3;
    ASSERT_OK(dv365_encoder_create(&cfg, 7, &e2));
    ASSERT_OK(dv365_encoder_create(&cfg, 8, &e3));
    assert_memory_equal(p, dv_encoder_params_const(e2), expect * sizeof(float));
    assert_true(memcmp(p, dv_encoder_params_const(e3), expect * sizeof(float)) != 0);
    dv365_encoder_free(e), dv365_encoder_free(e2), dv365_encoder_free(e3);

    /* LCE only: no pos, no ln_f; funnel only: no lce. */
    cfg = make_cfg(20, 8, 0, 1, 2, 16, 2, 4, 0.02f);
    ASSERT_OK(dv365_encoder_create(&cfg, 1, &e));
    t = dv_encoder_tensors(e, &n);
    assert_int_equal(n, 2);
    assert_int_equal(dv365_encoder_num_tokens(e), 4);
    assert_string_equal(t[0].name, "encoder.lce.weight");
    dv365_encoder_free(e);
    cfg = make_cfg(20, 8, 2, 1, 2, 16, 3, 0, 0.02f);
    ASSERT_OK(dv365_encoder_create(&cfg, 1, &e));
    t = dv_encoder_tensors(e, &n);
    assert_int_equal(n, 1 + 2 * 12 + 2);
    assert_int_equal(dv365_encoder_num_tokens(e), 7);
    dv365_encoder_free(e);
}

/* The compression's tensors sit between ln_f and the LCE; everything before
 * them is drawn exactly as without compression; K = compress + k_lce. */
static void test_compress_table_and_init(void **state)
{
    (void)state;
    /* a vanilla Transformer (stride 1) on 200 tokens, compressed to 50 */
    struct dv365_config cfg = make_cfg_c(200, 16, 2, 1, 2, 32, 1, 8, 0.02f, 50);
    struct dv365_config plain = make_cfg(200, 16, 2, 1, 2, 32, 1, 8, 0.02f);
    assert_int_equal(dv_config_funnel_tokens(&cfg), 200);
    assert_int_equal(dv_config_num_tokens(&cfg), 58);
    assert_int_equal(dv_config_num_tokens(&plain), 208);
    dv365_encoder *e, *p;
    ASSERT_OK(dv365_encoder_create(&cfg, 7, &e));
    ASSERT_OK(dv365_encoder_create(&plain, 7, &p));
    assert_int_equal(dv365_encoder_num_tokens(e), 58);
    assert_int_equal(dv_encoder_funnel_tokens(e), 50);
    assert_int_equal(dv365_encoder_num_params(e),
                     dv365_encoder_num_params(p) + 50 * 200 + 50);

    size_t n, np;
    const dv_enc_tensor *t = dv_encoder_tensors(e, &n), *tp = dv_encoder_tensors(p, &np);
    assert_int_equal(n, np + 2);
    assert_string_equal(t[n - 5].name, "encoder.ln_f.bias");
    assert_string_equal(t[n - 4].name, "encoder.compress.weight");
    assert_int_equal(t[n - 4].ndim, 2);
    assert_int_equal(t[n - 4].shape[0], 50);
    assert_int_equal(t[n - 4].shape[1], 200);
    assert_string_equal(t[n - 3].name, "encoder.compress.bias");
    assert_int_equal(t[n - 3].ndim, 1);
    assert_int_equal(t[n - 3].shape[0], 50);
    assert_string_equal(t[n - 2].name, "encoder.lce.weight");
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(t[i].offset, off);
        off += t[i].numel;
    }
    assert_int_equal(off, dv365_encoder_num_params(e));

    /* Same tensors and bits as without compression up to ln_f. */
    const float *pe = dv_encoder_params_const(e), *pp = dv_encoder_params_const(p);
    assert_memory_equal(pe, pp, t[n - 4].offset * sizeof(float));
    for (size_t i = 0; i < n - 4; i++)
        assert_string_equal(t[i].name, tp[i].name);
    /* Initialized like the LCE: weight N(0, init_std^2), bias 0. */
    const float *w = pe + t[n - 4].offset, *b = pe + t[n - 3].offset;
    double s = 0, s2 = 0;
    for (size_t j = 0; j < t[n - 4].numel; j++)
        s += w[j], s2 += (double)w[j] * w[j];
    double mean = s / t[n - 4].numel, sd = sqrt(s2 / t[n - 4].numel - mean * mean);
    assert_true(fabs(sd - 0.02) < 0.001 && fabs(mean) < 0.001);
    for (size_t j = 0; j < 50; j++)
        assert_true(b[j] == 0.0f);
    dv365_encoder_free(e);
    dv365_encoder_free(p);

    /* compress = T_last is allowed (a square token map); funnel-only too. */
    cfg = make_cfg_c(20, 8, 3, 1, 2, 16, 2, 0, 0.02f, 5);
    ASSERT_OK(dv365_encoder_create(&cfg, 1, &e));
    assert_int_equal(dv365_encoder_num_tokens(e), 5);
    assert_int_equal(dv365_encoder_num_tokens(e), dv_config_num_tokens(&cfg));
    dv365_encoder_free(e);
}

static void test_create_errors(void **state)
{
    (void)state;
    dv365_encoder *e = NULL;
    struct dv365_config cfg = make_cfg(20, 8, 0, 1, 2, 16, 2, 0, 0.02f);
    ASSERT_ERR(dv365_encoder_create(&cfg, 1, &e), DV365_E_CONFIG, "blocks > 0 or k_lce > 0");
    cfg = make_cfg(20, 10, 1, 1, 4, 16, 2, 0, 0.02f);
    ASSERT_ERR(dv365_encoder_create(&cfg, 1, &e), DV365_E_CONFIG, "divisible");
    cfg = make_cfg(20, 8, 1, 1, 2, 16, 0, 0, 0.02f);
    ASSERT_ERR(dv365_encoder_create(&cfg, 1, &e), DV365_E_CONFIG, "stride");
    cfg = make_cfg(20, 8, 1, 1, 2, 16, 2, 0, NAN);
    ASSERT_ERR(dv365_encoder_create(&cfg, 1, &e), DV365_E_CONFIG, "init_std");
    cfg = make_cfg((size_t)1 << 31, 8, 1, 1, 2, 16, 2, 0, 0.02f);
    ASSERT_ERR(dv365_encoder_create(&cfg, 1, &e), DV365_E_CONFIG, "too large");
    /* compress: at most T_last (20 -> 10 -> 5 here), and only with a funnel */
    cfg = make_cfg_c(20, 8, 3, 1, 2, 16, 2, 2, 0.02f, 6);
    ASSERT_ERR(dv365_encoder_create(&cfg, 1, &e), DV365_E_CONFIG, "compress (6) must be in [1, 5]");
    cfg = make_cfg_c(20, 8, 0, 1, 2, 16, 2, 2, 0.02f, 2);
    ASSERT_ERR(dv365_encoder_create(&cfg, 1, &e), DV365_E_CONFIG, "compress needs blocks > 0");
    ASSERT_ERR(dv365_encoder_create(NULL, 1, &e), DV365_E_NULL, "cfg");
    ASSERT_ERR(dv365_encoder_create(&cfg, 1, NULL), DV365_E_NULL, "out");
    assert_null(e);
    assert_int_equal(dv365_encoder_num_tokens(NULL), 0);
    assert_int_equal(dv365_encode_workspace_size(NULL, 4), 0);
    dv365_encoder_free(NULL);
}

/* --------------------------------------------------- finite differences -- */

typedef struct enc_case {
    dv365_encoder *e;
    dv365_workspace *ws;
    size_t B, N, D, K;
    float *X, *U, *w; /* w = dL/dU */
} enc_case;

static double enc_loss(enc_case *c)
{
    ASSERT_OK(dv365_encode(c->e, c->ws, c->B, c->X, c->U, 1));
    double L = 0;
    for (size_t i = 0; i < c->B * c->K * c->D; i++)
        L += (double)c->w[i] * c->U[i];
    return L;
}

/* Central differences at up to 25 entries of p (see test_nn.c for the
 * tolerance); returns the number of entries compared. */
static void fd_check(enc_case *c, const char *name, float *p, const float *g, size_t n)
{
    double gmax = 0;
    for (size_t i = 0; i < n; i++)
        gmax = fmax(gmax, fabs(g[i]));
    size_t step = n > 25 ? n / 25 : 1;
    for (size_t i = 0; i < n; i += step) {
        float save = p[i], h = 1e-2f;
        p[i] = save + h;
        double lp = enc_loss(c);
        p[i] = save - h;
        double lm = enc_loss(c);
        p[i] = save;
        double fd = (lp - lm) / (2.0 * h);
        if (!(fabs(fd - g[i]) <= 1e-2 * (fabs(g[i]) + gmax) + 1e-6))
            fail_msg("%s[%zu]: analytic %.7g vs finite difference %.7g (scale %.3g)", name, i,
                     g[i], fd, gmax);
    }
    assert_true(gmax > 0); /* every parameter must receive some gradient */
}

static void run_fd(struct dv365_config *cfg, size_t B)
{
    enc_case c = {0};
    ASSERT_OK(dv365_encoder_create(cfg, 3, &c.e));
    ASSERT_OK(dv365_workspace_create(&c.ws));
    c.B = B, c.N = cfg->n_slices, c.D = cfg->dim, c.K = dv365_encoder_num_tokens(c.e);
    size_t nx = B * c.N * c.D, nu = B * c.K * c.D, np = dv365_encoder_num_params(c.e);
    c.X = randv(nx, 1);
    c.U = calloc(nu, sizeof *c.U);
    c.w = randv(nu, 1);
    /* Non-zero biases and LN parameters, so that their gradients matter. */
    float *P = dv_encoder_params(c.e);
    for (size_t i = 0; i < np; i++)
        P[i] += (float)(0.1 * dv_rng_normal(&g_rng));

    size_t na = dv_encoder_acts_floats(c.e, B);
    float *acts = calloc(na ? na : 1, sizeof *acts), *U2 = calloc(nu, sizeof *U2);
    float *G = calloc(np, sizeof *G), *dX = calloc(nx, sizeof *dX);
    ASSERT_OK(dv_encoder_forward_train(c.e, B, c.X, U2, acts, 1));
    enc_loss(&c);
    /* The training forward computes exactly what dv365_encode computes. */
    assert_memory_equal(U2, c.U, nu * sizeof *U2);
    ASSERT_OK(dv_encoder_backward(c.e, c.ws, B, c.X, acts, c.w, G, dX, 1));

    size_t n;
    const dv_enc_tensor *t = dv_encoder_tensors(c.e, &n);
    for (size_t i = 0; i < n; i++)
        fd_check(&c, t[i].name, P + t[i].offset, G + t[i].offset, t[i].numel);
    fd_check(&c, "X", c.X, dX, nx);

    /* Backward accumulates: a second pass doubles the gradients. */
    float *G2 = malloc(np * sizeof *G2);
    memcpy(G2, G, np * sizeof *G2);
    ASSERT_OK(dv_encoder_backward(c.e, c.ws, B, c.X, acts, c.w, G2, NULL, 1));
    for (size_t i = 0; i < np; i++)
        assert_true(fabsf(G2[i] - 2 * G[i]) <= 1e-5f * (1 + fabsf(G[i])));

    dv365_encoder_free(c.e);
    dv365_workspace_free(c.ws);
    free(c.X), free(c.U), free(c.w), free(acts), free(U2), free(G), free(dX), free(G2);
}

static void test_fd_funnel(void **state)
{
    (void)state;
    /* 7 tokens, stride 2: 7 -> 4 -> 2 (partial windows at both steps). */
    struct dv365_config cfg = make_cfg(7, 8, 3, 2, 2, 12, 2, 3, 0.5f);
    run_fd(&cfg, 3);
}

static void test_fd_vanilla(void **state)
{
    (void)state;
    struct dv365_config cfg = make_cfg(5, 8, 2, 1, 4, 6, 1, 2, 0.5f); /* stride 1 */
    run_fd(&cfg, 2);
}

static void test_fd_lce_only_and_funnel_only(void **state)
{
    (void)state;
    struct dv365_config cfg = make_cfg(9, 4, 0, 1, 1, 4, 2, 3, 0.5f);
    run_fd(&cfg, 2);
    cfg = make_cfg(6, 8, 2, 1, 2, 8, 3, 0, 0.5f);
    run_fd(&cfg, 2);
}

static void test_fd_compress(void **state)
{
    (void)state;
    /* vanilla (stride 1): 6 tokens through 2 blocks, compressed to 3, + LCE */
    struct dv365_config cfg = make_cfg_c(6, 8, 2, 1, 2, 8, 1, 2, 0.5f, 3);
    run_fd(&cfg, 2);
    /* funnel 7 -> 4 -> 2 with 2 layers per block, compressed to 1, no LCE
     * (init_std 0.4: at 0.5 the curvature of this net makes a central
     * difference with h = 1e-2 miss by 3 %; PyTorch agrees to 1e-6) */
    cfg = make_cfg_c(7, 8, 3, 2, 2, 12, 2, 0, 0.4f, 1);
    run_fd(&cfg, 3);
}

/* -------------------------------------------------------- determinism -- */

static void run_determinism(const struct dv365_config *cfg, size_t K)
{
    dv365_encoder *e;
    dv365_workspace *ws;
    ASSERT_OK(dv365_encoder_create(cfg, 11, &e));
    ASSERT_OK(dv365_workspace_create(&ws));
    assert_int_equal(dv365_encoder_num_tokens(e), K);
    const size_t B = 3, N = cfg->n_slices, D = cfg->dim, nx = B * N * D, nu = B * K * D;
    float *X = randv(nx, 1), *U1 = malloc(nu * 4), *U2 = malloc(nu * 4), *U0 = malloc(K * D * 4);
    ASSERT_OK(dv365_encode(e, ws, B, X, U1, 1));
    ASSERT_OK(dv365_encode(e, ws, B, X, U2, 2));
    assert_memory_equal(U1, U2, nu * 4);
    /* Users are independent: the last user encoded alone gives the same bits. */
    ASSERT_OK(dv365_encode(e, ws, 1, X + 2 * N * D, U0, 2));
    assert_memory_equal(U0, U1 + 2 * K * D, K * D * 4);

    /* Training forward + backward: bitwise equal gradients. */
    size_t np = dv365_encoder_num_params(e), na = dv_encoder_acts_floats(e, B);
    float *acts = malloc(na * 4), *G1 = calloc(np, 4), *G2 = calloc(np, 4);
    float *dX1 = calloc(nx, 4), *dX2 = calloc(nx, 4), *dU = randv(nu, 1);
    ASSERT_OK(dv_encoder_forward_train(e, B, X, U1, acts, 1));
    ASSERT_OK(dv_encoder_backward(e, ws, B, X, acts, dU, G1, dX1, 1));
    ASSERT_OK(dv_encoder_forward_train(e, B, X, U2, acts, 2));
    ASSERT_OK(dv_encoder_backward(e, ws, B, X, acts, dU, G2, dX2, 2));
    assert_memory_equal(U1, U2, nu * 4);
    assert_memory_equal(G1, G2, np * 4);
    assert_memory_equal(dX1, dX2, nx * 4);
    dv365_encoder_free(e);
    dv365_workspace_free(ws);
    free(X), free(U1), free(U2), free(U0), free(acts), free(G1), free(G2), free(dX1),
        free(dX2), free(dU);
}

static void test_thread_determinism(void **state)
{
    (void)state;
    struct dv365_config cfg = make_cfg(200, 256, 3, 1, 4, 1024, 2, 8, 0.02f);
    run_determinism(&cfg, 58);
    /* a vanilla Transformer compressed to the funnel's 50 tokens */
    cfg = make_cfg_c(200, 64, 2, 1, 4, 128, 1, 8, 0.02f, 50);
    run_determinism(&cfg, 58);
}

/* More users than one internal chunk (16), not a multiple of it: every user
 * equals the same user encoded alone, bit for bit. */
static void test_batch_chunks(void **state)
{
    (void)state;
    struct dv365_config cfg = make_cfg(23, 16, 2, 1, 2, 32, 2, 3, 0.3f);
    dv365_encoder *e;
    dv365_workspace *ws;
    ASSERT_OK(dv365_encoder_create(&cfg, 9, &e));
    ASSERT_OK(dv365_workspace_create(&ws));
    const size_t B = 37, K = dv365_encoder_num_tokens(e), nx = 23 * 16, nu = K * 16;
    float *X = randv(B * nx, 1), *U = malloc(B * nu * 4), *U1 = malloc(nu * 4);
    ASSERT_OK(dv365_encode(e, ws, B, X, U, 2));
    for (size_t b = 0; b < B; b++) {
        ASSERT_OK(dv365_encode(e, ws, 1, X + b * nx, U1, 1));
        assert_memory_equal(U1, U + b * nu, nu * 4);
    }
    dv365_encoder_free(e);
    dv365_workspace_free(ws);
    free(X), free(U), free(U1);
}

/* One encoder shared by threads, each with its own workspace. */
typedef struct job {
    const dv365_encoder *e;
    const float *X;
    float *U;
    size_t B;
    dv365_status st;
} job;

static void *encode_job(void *arg)
{
    job *j = arg;
    dv365_workspace *ws;
    j->st = dv365_workspace_create(&ws);
    for (int rep = 0; rep < 5 && j->st == DV365_OK; rep++)
        j->st = dv365_encode(j->e, ws, j->B, j->X, j->U, 1);
    dv365_workspace_free(ws);
    return NULL;
}

static void test_shared_between_threads(void **state)
{
    (void)state;
    struct dv365_config cfg = make_cfg(40, 32, 2, 1, 4, 64, 2, 4, 0.3f);
    dv365_encoder *e;
    ASSERT_OK(dv365_encoder_create(&cfg, 4, &e));
    const size_t B = 5, nu = B * dv365_encoder_num_tokens(e) * 32;
    float *X = randv(B * 40 * 32, 1), *U[4], *R = malloc(nu * 4);
    dv365_workspace *ws;
    ASSERT_OK(dv365_workspace_create(&ws));
    ASSERT_OK(dv365_encode(e, ws, B, X, R, 1));
    pthread_t th[4];
    job jobs[4];
    for (int i = 0; i < 4; i++) {
        U[i] = malloc(nu * 4);
        jobs[i] = (job){e, X, U[i], B, DV365_OK};
        assert_int_equal(pthread_create(&th[i], NULL, encode_job, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ASSERT_OK(jobs[i].st);
        assert_memory_equal(U[i], R, nu * 4);
        free(U[i]);
    }
    dv365_workspace_free(ws);
    dv365_encoder_free(e);
    free(X), free(R);
}

/* ---------------------------------------------------------- validation -- */

static size_t g_allocs;
static void *count_alloc(void *o, size_t n)
{
    (void)o;
    g_allocs++;
    return malloc(n);
}
static void count_free(void *o, void *p)
{
    (void)o;
    free(p);
}

static void test_encode_validation(void **state)
{
    (void)state;
    struct dv365_config cfg = make_cfg(10, 8, 2, 1, 2, 16, 2, 2, 0.1f);
    dv365_encoder *e;
    dv365_workspace *ws;
    ASSERT_OK(dv365_encoder_create(&cfg, 1, &e));
    ASSERT_OK(dv365_workspace_create(&ws));
    size_t K = dv365_encoder_num_tokens(e);
    float *X = randv(4 * 10 * 8, 1), *U = calloc(4 * K * 8, 4);
    ASSERT_ERR(dv365_encode(NULL, ws, 1, X, U, 1), DV365_E_NULL, "enc");
    ASSERT_ERR(dv365_encode(e, NULL, 1, X, U, 1), DV365_E_NULL, "ws");
    ASSERT_ERR(dv365_encode(e, ws, 1, NULL, U, 1), DV365_E_NULL, "X");
    ASSERT_ERR(dv365_encode(e, ws, 1, X, NULL, 1), DV365_E_NULL, "U");
    ASSERT_ERR(dv365_encode(e, ws, 0, X, U, 1), DV365_E_INVALID, "batch");
    ASSERT_ERR(dv365_encode(e, ws, 1, X, U, 0), DV365_E_INVALID, "nthreads");
    ASSERT_ERR(dv365_encode(e, ws, SIZE_MAX / 8, X, U, 1), DV365_E_INVALID, "too large");
    X[(2 * 10 + 7) * 8 + 3] = NAN;
    ASSERT_ERR(dv365_encode(e, ws, 4, X, U, 1), DV365_E_NONFINITE, "user 2, token 7, column 3");
    X[(2 * 10 + 7) * 8 + 3] = -INFINITY;
    ASSERT_ERR(dv365_encode(e, ws, 4, X, U, 1), DV365_E_NONFINITE, "infinite");
    X[(2 * 10 + 7) * 8 + 3] = 0;
    for (size_t i = 0; i < 4 * K * 8; i++)
        assert_true(U[i] == 0.0f); /* failed calls wrote nothing */

    /* Steady state: after the workspace has grown, no allocation at all. */
    ASSERT_OK(dv365_workspace_reserve(ws, dv365_encode_workspace_size(e, 4)));
    ASSERT_OK(dv365_set_allocator(count_alloc, count_free, NULL));
    g_allocs = 0;
    ASSERT_OK(dv365_encode(e, ws, 4, X, U, 1));
    ASSERT_OK(dv365_encode(e, ws, 3, X, U, 2));
    assert_int_equal(g_allocs, 0);
    ASSERT_OK(dv365_set_allocator(NULL, NULL, NULL));
    dv365_encoder_free(e);
    dv365_workspace_free(ws);
    free(X), free(U);
}

/* -------------------------------------------------------------- files -- */

static void test_save_load(void **state)
{
    (void)state;
    struct dv365_config cfg = make_cfg(12, 8, 2, 2, 2, 16, 2, 3, 0.1f);
    dv365_encoder *e, *e2;
    dv365_workspace *ws;
    ASSERT_OK(dv365_encoder_create(&cfg, 5, &e));
    ASSERT_OK(dv365_workspace_create(&ws));
    const char *path = strdup(tmp_path("enc.safetensors"));
    ASSERT_OK(dv365_encoder_save(e, path));
    ASSERT_OK(dv365_encoder_load(&cfg, path, &e2));
    size_t np = dv365_encoder_num_params(e), K = dv365_encoder_num_tokens(e);
    assert_memory_equal(dv_encoder_params_const(e), dv_encoder_params_const(e2), np * 4);
    float *X = randv(2 * 12 * 8, 1), *U = malloc(2 * K * 8 * 4), *U2 = malloc(2 * K * 8 * 4);
    ASSERT_OK(dv365_encode(e, ws, 2, X, U, 1));
    ASSERT_OK(dv365_encode(e2, ws, 2, X, U2, 1));
    assert_memory_equal(U, U2, 2 * K * 8 * 4);
    dv365_encoder_free(e2);

    /* The file is plain safetensors with the documented names. */
    dv_st_file *f;
    ASSERT_OK(dv_st_read_file(path, &f));
    const dv_tensor_view *v = dv_st_find(f, "encoder.blocks.1.layers.1.fc2.weight");
    assert_non_null(v);
    assert_int_equal(v->shape[0], 8);
    assert_int_equal(v->shape[1], 16);
    dv_st_free(f);

    /* Another config: shapes disagree. */
    struct dv365_config other = make_cfg(13, 8, 2, 2, 2, 16, 2, 3, 0.1f);
    ASSERT_ERR(dv365_encoder_load(&other, path, &e2), DV365_E_MISMATCH, "encoder.pos");
    other = make_cfg(12, 8, 3, 2, 2, 16, 2, 3, 0.1f);
    ASSERT_ERR(dv365_encoder_load(&other, path, &e2), DV365_E_NOT_FOUND, "encoder.blocks.2");
    ASSERT_ERR(dv365_encoder_load(&cfg, tmp_path("missing.safetensors"), &e2), DV365_E_IO,
               "missing.safetensors");

    /* Hand-made files: a tensor missing, F64 instead of F32, a NaN weight,
     * and extra tensors (ignored). */
    size_t n;
    const dv_enc_tensor *t = dv_encoder_tensors(e, &n);
    const float *P = dv_encoder_params_const(e);
    float *nan_copy = malloc(np * 4);
    memcpy(nan_copy, P, np * 4);
    double *f64 = calloc(t[5].numel, sizeof *f64);
    for (int mode = 0; mode < 4; mode++) {
        dv_st_writer *w;
        ASSERT_OK(dv_st_writer_create(&w));
        for (size_t i = 0; i < n; i++) {
            if (mode == 0 && i == 5)
                continue;
            if (mode == 1 && i == 5) {
                ASSERT_OK(dv_st_writer_add(w, t[i].name, DV_DTYPE_F64, t[i].ndim, t[i].shape,
                                           f64));
                continue;
            }
            const float *src = mode == 2 ? nan_copy : P;
            ASSERT_OK(dv_st_writer_add(w, t[i].name, DV_DTYPE_F32, t[i].ndim, t[i].shape,
                                       src + t[i].offset));
        }
        if (mode == 2)
            nan_copy[t[7].offset + 3] = NAN;
        if (mode == 3) {
            size_t shape[1] = {4};
            ASSERT_OK(dv_st_writer_add(w, "tables.media", DV_DTYPE_F32, 1, shape, P));
        }
        ASSERT_OK(dv_st_writer_write(w, path));
        dv_st_writer_free(w);
        dv365_status st = dv365_encoder_load(&cfg, path, &e2);
        if (mode == 0)
            ASSERT_ERR(st, DV365_E_NOT_FOUND, t[5].name);
        else if (mode == 1)
            ASSERT_ERR(st, DV365_E_FORMAT, t[5].name);
        else if (mode == 2)
            ASSERT_ERR(st, DV365_E_NONFINITE, t[7].name);
        else {
            ASSERT_OK(st);
            assert_memory_equal(dv_encoder_params_const(e2), P, np * 4);
            dv365_encoder_free(e2);
        }
    }

    /* A truncated file. */
    ASSERT_OK(dv365_encoder_save(e, path));
    assert_int_equal(truncate(path, 100), 0);
    ASSERT_ERR(dv365_encoder_load(&cfg, path, &e2), DV365_E_FORMAT, NULL);
    ASSERT_ERR(dv365_encoder_save(e, tmp_path("no/such/dir/x.safetensors")), DV365_E_IO, NULL);
    ASSERT_ERR(dv365_encoder_save(NULL, path), DV365_E_NULL, "enc");
    unlink(path);
    dv365_encoder_free(e);
    dv365_workspace_free(ws);
    free(X), free(U), free(U2), free(nan_copy), free(f64), free((void *)path);
}

/* Weight files with the compression: round trip, and the compression's
 * tensors missing or misshaped; encoding is allocation-free once the
 * workspace has grown. */
static void test_compress_files_and_alloc(void **state)
{
    (void)state;
    struct dv365_config cfg = make_cfg_c(12, 8, 2, 1, 2, 16, 1, 3, 0.1f, 5);
    dv365_encoder *e, *e2;
    dv365_workspace *ws;
    ASSERT_OK(dv365_encoder_create(&cfg, 5, &e));
    ASSERT_OK(dv365_workspace_create(&ws));
    /* random biases too, so that a lost tensor would show in the outputs */
    float *P = dv_encoder_params(e);
    size_t np = dv365_encoder_num_params(e), K = dv365_encoder_num_tokens(e);
    assert_int_equal(K, 8);
    for (size_t i = 0; i < np; i++)
        P[i] += (float)(0.1 * dv_rng_normal(&g_rng));
    char *path = strdup(tmp_path("cmp.safetensors"));
    ASSERT_OK(dv365_encoder_save(e, path));
    ASSERT_OK(dv365_encoder_load(&cfg, path, &e2));
    assert_memory_equal(dv_encoder_params_const(e), dv_encoder_params_const(e2), np * 4);
    float *X = randv(3 * 12 * 8, 1), *U = malloc(3 * K * 8 * 4), *U2 = malloc(3 * K * 8 * 4);
    ASSERT_OK(dv365_encode(e, ws, 3, X, U, 1));
    ASSERT_OK(dv365_encode(e2, ws, 3, X, U2, 2));
    assert_memory_equal(U, U2, 3 * K * 8 * 4);
    dv365_encoder_free(e2);

    dv_st_file *f;
    ASSERT_OK(dv_st_read_file(path, &f));
    const dv_tensor_view *v = dv_st_find(f, "encoder.compress.weight");
    assert_non_null(v);
    assert_int_equal(v->shape[0], 5);
    assert_int_equal(v->shape[1], 12);
    assert_non_null(dv_st_find(f, "encoder.compress.bias"));
    dv_st_free(f);

    /* Another compress: the shape disagrees.  A file without compression
     * lacks the tensors. */
    struct dv365_config other = make_cfg_c(12, 8, 2, 1, 2, 16, 1, 3, 0.1f, 4);
    ASSERT_ERR(dv365_encoder_load(&other, path, &e2), DV365_E_MISMATCH,
               "encoder.compress.weight");
    other = make_cfg(12, 8, 2, 1, 2, 16, 1, 3, 0.1f);
    dv365_encoder *plain;
    ASSERT_OK(dv365_encoder_create(&other, 5, &plain));
    ASSERT_OK(dv365_encoder_save(plain, path));
    dv365_encoder_free(plain);
    ASSERT_ERR(dv365_encoder_load(&cfg, path, &e2), DV365_E_NOT_FOUND,
               "encoder.compress.weight");
    /* The bias alone missing, and of the wrong shape. */
    size_t n;
    const dv_enc_tensor *t = dv_encoder_tensors(e, &n);
    for (int mode = 0; mode < 2; mode++) {
        dv_st_writer *w;
        ASSERT_OK(dv_st_writer_create(&w));
        for (size_t i = 0; i < n; i++) {
            bool bias = !strcmp(t[i].name, "encoder.compress.bias");
            if (bias && mode == 0)
                continue;
            size_t shape[2] = {t[i].shape[0] + (bias ? 1 : 0), t[i].shape[1]};
            ASSERT_OK(dv_st_writer_add(w, t[i].name, DV_DTYPE_F32, t[i].ndim, shape,
                                       P + t[i].offset - (bias ? 1 : 0)));
        }
        ASSERT_OK(dv_st_writer_write(w, path));
        dv_st_writer_free(w);
        ASSERT_ERR(dv365_encoder_load(&cfg, path, &e2),
                   mode == 0 ? DV365_E_NOT_FOUND : DV365_E_MISMATCH, "encoder.compress.bias");
    }
    unlink(path);

    /* Steady state: no allocation after the workspace has grown. */
    ASSERT_OK(dv365_workspace_reserve(ws, dv365_encode_workspace_size(e, 3)));
    ASSERT_OK(dv365_set_allocator(count_alloc, count_free, NULL));
    g_allocs = 0;
    ASSERT_OK(dv365_encode(e, ws, 3, X, U, 1));
    ASSERT_OK(dv365_encode(e, ws, 2, X, U, 2));
    assert_int_equal(g_allocs, 0);
    ASSERT_OK(dv365_set_allocator(NULL, NULL, NULL));
    assert_memory_equal(U, U2, 2 * K * 8 * 4);
    dv365_encoder_free(e);
    dv365_workspace_free(ws);
    free(X), free(U), free(U2), free(path);
}

/* ------------------------------------------------------------- config -- */

/* configs/small.yaml (24 slices, 2 blocks, stride 2, k_lce 4, K = 12 + 4)
 * with its encoder section (the last one) edited: stride, blocks, and an
 * appended compress line when compress_line is not NULL, which is then line
 * g_small_lines + 1. */
static size_t g_small_lines;

static dv365_status parse_small(const char *stride, const char *blocks,
                                const char *compress_line, dv365_config **out)
{
    FILE *fp = fopen(test_source_path("configs/small.yaml"), "rb");
    assert_non_null(fp);
    static char text[16384];
    size_t len = fread(text, 1, sizeof text - 256, fp);
    fclose(fp);
    text[len] = '\0';
    char *enc = strstr(text, "\nencoder:\n");
    assert_non_null(enc);
    char *st = strstr(enc, "  stride: 2\n"), *bl = strstr(enc, "  blocks: 2\n");
    assert_non_null(st);
    assert_non_null(bl);
    st[10] = stride[0];
    bl[10] = blocks[0];
    assert_true(text[len - 1] == '\n');
    g_small_lines = 0;
    for (size_t i = 0; i < len; i++)
        g_small_lines += text[i] == '\n';
    if (compress_line)
        strcat(text, compress_line);
    *out = NULL;
    return dv365_config_parse(text, strlen(text), out);
}

static void test_compress_config(void **state)
{
    (void)state;
    dv365_config *cfg;
    ASSERT_OK(parse_small("2", "2", NULL, &cfg));
    assert_int_equal(cfg->encoder.compress, 0);
    assert_int_equal(dv_config_num_tokens(cfg), 16);
    uint64_t fp0 = cfg->fingerprint;
    dv365_config_free(cfg);
    ASSERT_OK(parse_small("2", "2", "  compress: 0\n", &cfg));
    assert_int_equal(dv_config_num_tokens(cfg), 16);
    assert_true(cfg->fingerprint != fp0); /* the text changed */
    dv365_config_free(cfg);

    /* The ablation's vanilla Transformer: stride 1, 24 tokens compressed to
     * 12, K = 12 + 4 = 16, the funnel's K. */
    ASSERT_OK(parse_small("1", "2", "  compress: 12\n", &cfg));
    assert_int_equal(cfg->encoder.compress, 12);
    assert_int_equal(dv_config_funnel_tokens(cfg), 24);
    assert_int_equal(dv_config_num_tokens(cfg), 16);
    dv365_encoder *e;
    ASSERT_OK(dv365_encoder_create(cfg, 1, &e));
    assert_int_equal(dv365_encoder_num_tokens(e), 16);
    dv365_encoder_free(e);
    dv365_config_free(cfg);
    ASSERT_OK(parse_small("1", "2", "  compress: 24\n", &cfg)); /* = T_last */
    assert_int_equal(dv_config_num_tokens(cfg), 28);
    dv365_config_free(cfg);
    ASSERT_OK(parse_small("2", "2", "  compress: 1\n", &cfg));
    assert_int_equal(dv_config_num_tokens(cfg), 5);
    dv365_config_free(cfg);

    /* Errors name the key and its place: more than T_last (12 with stride
     * 2, 24 with stride 1), no funnel, not a whole number. */
    ASSERT_ERR(parse_small("2", "2", "  compress: 13\n", &cfg), DV365_E_CONFIG,
               "encoder.compress must be in [1, 12]");
    assert_null(cfg);
    char where[64];
    snprintf(where, sizeof where, "<string>:%zu:13:", g_small_lines + 1);
    ASSERT_ERR(parse_small("2", "2", "  compress: 13\n", &cfg), DV365_E_CONFIG, where);
    ASSERT_ERR(parse_small("1", "2", "  compress: 25\n", &cfg), DV365_E_CONFIG,
               "encoder.compress must be in [1, 24]");
    ASSERT_ERR(parse_small("2", "0", "  compress: 2\n", &cfg), DV365_E_CONFIG,
               "encoder.compress needs blocks > 0");
    ASSERT_ERR(parse_small("2", "2", "  compress: -1\n", &cfg), DV365_E_CONFIG,
               "encoder.compress must be a whole number");
    ASSERT_ERR(parse_small("2", "2", "  compress: 2\n  compress: 3\n", &cfg), DV365_E_CONFIG,
               "'compress' appears twice");
    /* blocks 0 without compress stays valid (LCE only) */
    ASSERT_OK(parse_small("2", "0", NULL, &cfg));
    assert_int_equal(dv_config_num_tokens(cfg), 4);
    dv365_config_free(cfg);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/dv365_test_encoder_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return rmdir(g_dir);
}

int main(void)
{
    dv_rng_seed(&g_rng, 1234);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_and_init),
        cmocka_unit_test(test_compress_table_and_init),
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_fd_funnel),
        cmocka_unit_test(test_fd_vanilla),
        cmocka_unit_test(test_fd_lce_only_and_funnel_only),
        cmocka_unit_test(test_fd_compress),
        cmocka_unit_test(test_thread_determinism),
        cmocka_unit_test(test_batch_chunks),
        cmocka_unit_test(test_shared_between_threads),
        cmocka_unit_test(test_encode_validation),
        cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_compress_files_and_alloc),
        cmocka_unit_test(test_compress_config),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
