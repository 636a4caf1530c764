/* test_optim.c — Adam/AdamW, row-wise Adagrad, lr schedules, clipping.
 *
 * The cmocka suite checks properties that follow from the formulas alone;
 * agreement with torch.optim over whole trajectories is checked by
 * tests/reference/train_ref.py, which drives this program as
 *   test_optim --ref IN OUT
 * (inputs and results exchanged as safetensors, see train_refio.h). */
#include "testutil.h"

#include "internal.h"
#include "optim.h"
#include "train_refio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- Adam / AdamW ------------------------------------------------------------ */

static void test_adam_first_step_is_sign(void **state)
{
    (void)state;
    /* At step 1, m̂ = g and v̂ = g², so the move is lr·g/(|g| + eps): −lr·sign(g). */
    dv_adam opt;
    ASSERT_OK(dv_adam_init(&opt, false, 0.9, 0.999, 1e-12, 0.0));
    float p[5] = {1, -2, 3, 0.5f, 0}, g[5] = {0.3f, -7, 1e-3f, -0.25f, 2};
    float m[5] = {0}, v[5] = {0}, p0[5];
    memcpy(p0, p, sizeof p);
    ASSERT_OK(dv_adam_begin_step(&opt));
    ASSERT_OK(dv_adam_update(&opt, 0.01, p, g, m, v, 5));
    for (int i = 0; i < 5; i++) {
        float expect = p0[i] - 0.01f * (g[i] > 0 ? 1.0f : -1.0f);
        assert_true(fabsf(p[i] - expect) < 1e-6f);
        assert_true(fabsf(m[i] - 0.1f * g[i]) <= 1e-7f * fabsf(g[i]));
        assert_true(fabsf(v[i] - 0.001f * g[i] * g[i]) <= 1e-6f * g[i] * g[i]);
    }
}

static void test_adamw_zero_grad_only_decays(void **state)
{
    (void)state;
    /* With g = 0 the Adam part moves nothing (0 / (0 + eps)); AdamW still
     * shrinks p by (1 − lr·wd) each step, while Adam's L2 term acts as a
     * gradient wd·p and moves p by −lr·sign(p) on the first step. */
    dv_adam w, a;
    ASSERT_OK(dv_adam_init(&w, true, 0.9, 0.999, 1e-8, 0.1));
    ASSERT_OK(dv_adam_init(&a, false, 0.9, 0.999, 1e-12, 0.1));
    float pw[3] = {1, -2, 4}, pa[3] = {1, -2, 4}, g[3] = {0}, mw[3] = {0}, vw[3] = {0},
          ma[3] = {0}, va[3] = {0};
    for (int s = 1; s <= 10; s++) {
        ASSERT_OK(dv_adam_begin_step(&w));
        ASSERT_OK(dv_adam_update(&w, 0.5, pw, g, mw, vw, 3));
        if (s == 1) {
            ASSERT_OK(dv_adam_begin_step(&a));
            ASSERT_OK(dv_adam_update(&a, 0.5, pa, g, ma, va, 3));
        }
    }
    const float p0[3] = {1, -2, 4};
    for (int i = 0; i < 3; i++) {
        assert_true(fabs(pw[i] - p0[i] * pow(1 - 0.05, 10)) < 1e-5);
        assert_true(fabsf(pa[i] - (p0[i] - 0.5f * (p0[i] > 0 ? 1.f : -1.f))) < 1e-5f);
    }
    assert_int_equal(w.step, 10);
}

static void test_adam_step_counter_shared_by_blocks(void **state)
{
    (void)state;
    /* Two blocks updated in the same step equal one block holding both. */
    dv_adam o1, o2;
    ASSERT_OK(dv_adam_init(&o1, true, 0.8, 0.99, 1e-8, 0.01));
    o2 = o1;
    float p[6] = {1, 2, 3, 4, 5, 6}, q[6], m[6] = {0}, v[6] = {0}, mq[6] = {0}, vq[6] = {0};
    memcpy(q, p, sizeof p);
    for (int s = 0; s < 4; s++) {
        float g[6];
        for (int i = 0; i < 6; i++)
            g[i] = sinf((float)(s * 6 + i));
        ASSERT_OK(dv_adam_begin_step(&o1));
        ASSERT_OK(dv_adam_update(&o1, 0.1, p, g, m, v, 6));
        ASSERT_OK(dv_adam_begin_step(&o2));
        ASSERT_OK(dv_adam_update(&o2, 0.1, q, g, mq, vq, 2));
        ASSERT_OK(dv_adam_update(&o2, 0.1, q + 2, g + 2, mq + 2, vq + 2, 4));
    }
    assert_memory_equal(p, q, sizeof p);
}

static void test_adam_errors(void **state)
{
    (void)state;
    dv_adam opt;
    ASSERT_ERR(dv_adam_init(NULL, false, 0.9, 0.999, 1e-8, 0), DV365_E_NULL, "opt");
    ASSERT_ERR(dv_adam_init(&opt, false, 1.0, 0.999, 1e-8, 0), DV365_E_INVALID, "betas");
    ASSERT_ERR(dv_adam_init(&opt, false, 0.9, NAN, 1e-8, 0), DV365_E_INVALID, "betas");
    ASSERT_ERR(dv_adam_init(&opt, false, 0.9, 0.999, -1, 0), DV365_E_INVALID, "eps");
    ASSERT_ERR(dv_adam_init(&opt, true, 0.9, 0.999, 1e-8, INFINITY), DV365_E_INVALID,
               "weight_decay");
    ASSERT_OK(dv_adam_init(&opt, false, 0.9, 0.999, 1e-8, 0));
    float p[1] = {1}, g[1] = {1}, m[1] = {0}, v[1] = {0};
    ASSERT_ERR(dv_adam_update(&opt, 0.1, p, g, m, v, 1), DV365_E_STATE, "before the first");
    ASSERT_OK(dv_adam_begin_step(&opt));
    ASSERT_ERR(dv_adam_update(&opt, NAN, p, g, m, v, 1), DV365_E_INVALID, "learning rate");
    ASSERT_ERR(dv_adam_update(&opt, 0.1, p, NULL, m, v, 1), DV365_E_NULL, "'g'");
    assert_true(p[0] == 1 && m[0] == 0 && v[0] == 0); /* nothing moved on error */
    ASSERT_OK(dv_adam_update(&opt, 0.1, NULL, NULL, NULL, NULL, 0)); /* empty block */
}

/* --- row-wise Adagrad ---------------------------------------------------------- */

static void test_rowwise_adagrad_formula(void **state)
{
    (void)state;
    /* A row whose gradient is c in every column: after k steps acc = k·c²
     * and each step moves by lr·c/(sqrt(acc)+eps); other rows never move. */
    enum { R = 4, D = 3 };
    float table[R * D], acc[R] = {0}, t0[R * D];
    for (int i = 0; i < R * D; i++)
        table[i] = t0[i] = (float)i * 0.1f;
    dv_rowwise_adagrad opt;
    ASSERT_OK(dv_rowwise_adagrad_init(&opt, 1e-8, 0, DV_WD_NONE));
    size_t rows[2] = {2, 0};
    float grads[2 * D] = {0.5f, 0.5f, 0.5f, -2, -2, -2};
    double expect2 = t0[2 * D], expect0 = t0[0];
    for (int k = 1; k <= 3; k++) {
        ASSERT_OK(dv_rowwise_adagrad_update(&opt, 0.1, table, acc, R, D, rows, grads, 2));
        expect2 -= 0.1 * 0.5 / (sqrt(k * 0.25) + 1e-8);
        expect0 -= 0.1 * -2.0 / (sqrt(k * 4.0) + 1e-8);
    }
    assert_true(fabsf(acc[2] - 0.75f) < 1e-6f);
    assert_true(fabsf(acc[0] - 12.0f) < 1e-5f);
    assert_true(acc[1] == 0 && acc[3] == 0);
    assert_true(fabs(table[2 * D] - expect2) < 1e-6);
    assert_true(fabs(table[0] - expect0) < 1e-6);
    assert_memory_equal(table + D, t0 + D, D * sizeof(float));
    assert_memory_equal(table + 3 * D, t0 + 3 * D, D * sizeof(float));
}

static void test_rowwise_adagrad_weight_decay(void **state)
{
    (void)state;
    /* Zero gradient: mode NONE does nothing; DECOUPLED shrinks by 1 − lr·wd;
     * L2 sees g' = wd·p (acc grows) and moves the row toward 0. */
    enum { D = 2 };
    size_t row = 0;
    float g[D] = {0, 0};
    for (int mode = 0; mode < 3; mode++) {
        float t[D] = {1, -3}, acc[1] = {0};
        dv_rowwise_adagrad opt;
        ASSERT_OK(dv_rowwise_adagrad_init(&opt, 1e-8, 0.5, (dv_wd_mode)mode));
        ASSERT_OK(dv_rowwise_adagrad_update(&opt, 0.1, t, acc, 1, D, &row, g, 1));
        if (mode == DV_WD_NONE) {
            assert_true(t[0] == 1 && t[1] == -3 && acc[0] == 0);
        } else if (mode == DV_WD_DECOUPLED) {
            assert_true(fabsf(t[0] - 0.95f) < 1e-6f && fabsf(t[1] + 2.85f) < 1e-6f);
            assert_true(acc[0] == 0);
        } else {
            float a = (0.25f + 2.25f) / 2; /* mean of (0.5·p)² */
            assert_true(fabsf(acc[0] - a) < 1e-6f);
            float mult = 0.1f / sqrtf(a);
            assert_true(fabsf(t[0] - (1 - mult * 0.5f)) < 1e-6f);
            assert_true(fabsf(t[1] - (-3 * (1 - mult * 0.5f))) < 1e-6f);
        }
    }
}

static void test_rowwise_adagrad_errors(void **state)
{
    (void)state;
    dv_rowwise_adagrad opt;
    ASSERT_ERR(dv_rowwise_adagrad_init(&opt, -1, 0, DV_WD_NONE), DV365_E_INVALID, "eps");
    ASSERT_ERR(dv_rowwise_adagrad_init(&opt, 1e-8, 0, (dv_wd_mode)7), DV365_E_INVALID, "mode");
    ASSERT_OK(dv_rowwise_adagrad_init(&opt, 1e-8, 0, DV_WD_NONE));
    float t[4] = {1, 2, 3, 4}, acc[2] = {0}, g[4] = {1, 1, 1, 1};
    size_t rows[2] = {0, 2}; /* 2 is out of range for 2 rows */
    ASSERT_ERR(dv_rowwise_adagrad_update(&opt, 0.1, t, acc, 2, 2, rows, g, 2), DV365_E_INVALID,
               "row id 2");
    assert_true(t[0] == 1 && acc[0] == 0); /* the valid first row was not updated either */
    ASSERT_ERR(dv_rowwise_adagrad_update(&opt, -0.1, t, acc, 2, 2, rows, g, 1), DV365_E_INVALID,
               "learning rate");
    ASSERT_ERR(dv_rowwise_adagrad_update(&opt, 0.1, t, acc, 2, 0, rows, g, 1), DV365_E_INVALID,
               "D must be");
    ASSERT_ERR(dv_rowwise_adagrad_update(&opt, 0.1, t, NULL, 2, 2, rows, g, 1), DV365_E_NULL,
               "acc");
}

/* --- schedules ------------------------------------------------------------------- */

static void test_schedules(void **state)
{
    (void)state;
    dv_lr_schedule c = {DV_LR_CONSTANT, 0.01, 0, 0, 0};
    ASSERT_OK(dv_lr_schedule_check(&c));
    assert_true(dv_lr_at(&c, 0) == 0.01 && dv_lr_at(&c, 1) == 0.01 && dv_lr_at(&c, 99) == 0.01);

    dv_lr_schedule w = {DV_LR_CONSTANT, 0.01, 0, 4, 0};
    ASSERT_OK(dv_lr_schedule_check(&w));
    assert_true(fabs(dv_lr_at(&w, 1) - 0.0025) < 1e-15);
    assert_true(fabs(dv_lr_at(&w, 3) - 0.0075) < 1e-15);
    assert_true(dv_lr_at(&w, 4) == 0.01 && dv_lr_at(&w, 5) == 0.01);

    for (int kind = DV_LR_LINEAR; kind <= DV_LR_COSINE; kind++) {
        dv_lr_schedule s = {(dv_lr_decay)kind, 1.0, 0.1, 10, 110};
        ASSERT_OK(dv_lr_schedule_check(&s));
        assert_true(fabs(dv_lr_at(&s, 5) - 0.5) < 1e-15);
        assert_true(dv_lr_at(&s, 10) == 1.0);
        assert_true(fabs(dv_lr_at(&s, 60) - 0.55) < 1e-12); /* midpoint for both shapes */
        assert_true(dv_lr_at(&s, 110) == 0.1 && dv_lr_at(&s, 1000) == 0.1);
        for (uint64_t t = 11; t <= 110; t++)
            assert_true(dv_lr_at(&s, t) <= dv_lr_at(&s, t - 1));
    }
    dv_lr_schedule cs = {DV_LR_COSINE, 1.0, 0.0, 0, 100};
    assert_true(fabs(dv_lr_at(&cs, 25) - 0.5 * (1 + cos(M_PI / 4))) < 1e-15);

    dv_lr_schedule bad = {DV_LR_LINEAR, 1.0, 2.0, 0, 10};
    ASSERT_ERR(dv_lr_schedule_check(&bad), DV365_E_INVALID, "min_lr");
    bad.min_lr = 0;
    bad.warmup_steps = 10;
    ASSERT_ERR(dv_lr_schedule_check(&bad), DV365_E_INVALID, "total_steps");
    bad.base_lr = NAN;
    ASSERT_ERR(dv_lr_schedule_check(&bad), DV365_E_INVALID, "base_lr");
    bad = (dv_lr_schedule){(dv_lr_decay)9, 1, 0, 0, 10};
    ASSERT_ERR(dv_lr_schedule_check(&bad), DV365_E_INVALID, "decay");
}

/* --- clipping -------------------------------------------------------------------- */

static void test_clip(void **state)
{
    (void)state;
    float a[2] = {3, 0}, b[1] = {4};
    dv_grad_block blocks[2] = {{a, 2}, {b, 1}};
    double norm = 0;
    ASSERT_OK(dv_clip_grad_norm(blocks, 2, 10.0, &norm)); /* below the limit: untouched */
    assert_true(norm == 5.0 && a[0] == 3 && b[0] == 4);
    ASSERT_OK(dv_clip_grad_norm(blocks, 2, 1.0, &norm));
    assert_true(norm == 5.0);
    float s = (float)(1.0 / (5.0 + 1e-6));
    assert_true(a[0] == 3 * s && a[1] == 0 && b[0] == 4 * s);
    double after = sqrt(dv_grad_sq_sum(a, 2) + dv_grad_sq_sum(b, 1));
    assert_true(fabs(after - 1.0) < 1e-6);

    b[0] = NAN;
    a[0] = 3;
    ASSERT_ERR(dv_clip_grad_norm(blocks, 2, 1.0, &norm), DV365_E_NONFINITE, "not finite");
    assert_true(a[0] == 3);
    ASSERT_ERR(dv_clip_grad_norm(blocks, 2, 0.0, NULL), DV365_E_INVALID, "max_norm");
    blocks[1].g = NULL;
    ASSERT_ERR(dv_clip_grad_norm(blocks, 2, 1.0, NULL), DV365_E_NULL, "block 1");
    ASSERT_OK(dv_clip_grad_norm(NULL, 0, 1.0, &norm));
    assert_true(norm == 0);
}

/* --- reference mode ---------------------------------------------------------------- */

/* Adam cases "adam{i}": hp = [beta1, beta2, eps, wd, decoupled], p0 [n],
 * grads [S, n], lrs [S]  ->  traj [S, n] (params after each step), m, v. */
static void ref_adam(const dv_st_file *in, ref_out *out)
{
    char key[64];
    for (int c = 0;; c++) {
        snprintf(key, sizeof key, "adam%d.hp", c);
        if (!ref_has(in, key))
            break;
        size_t n, ng, S;
        double *hp = ref_read(in, key, NULL, NULL, NULL);
        snprintf(key, sizeof key, "adam%d.p0", c);
        float *p = ref_read_f32(in, key, &n);
        snprintf(key, sizeof key, "adam%d.grads", c);
        float *g = ref_read_f32(in, key, &ng);
        snprintf(key, sizeof key, "adam%d.lrs", c);
        double *lrs = ref_read(in, key, &S, NULL, NULL);
        if (ng != S * n)
            ref_die("inconsistent sizes in", key);
        float *traj = malloc(S * n * sizeof *traj), *m = calloc(n, 4), *v = calloc(n, 4);
        dv_adam opt;
        if (dv_adam_init(&opt, hp[4] != 0, hp[0], hp[1], hp[2], hp[3]) != DV365_OK)
            ref_die("adam init", key);
        for (size_t s = 0; s < S; s++) {
            if (dv_adam_begin_step(&opt) != DV365_OK ||
                dv_adam_update(&opt, lrs[s], p, g + s * n, m, v, n) != DV365_OK)
                ref_die("adam step", key);
            memcpy(traj + s * n, p, n * sizeof *p);
        }
        size_t sh2[2] = {S, n}, sh1[1] = {n};
        snprintf(key, sizeof key, "adam%d.traj", c);
        ref_out_add(out, key, DV_DTYPE_F32, 2, sh2, traj);
        snprintf(key, sizeof key, "adam%d.m", c);
        ref_out_add(out, key, DV_DTYPE_F32, 1, sh1, m);
        snprintf(key, sizeof key, "adam%d.v", c);
        ref_out_add(out, key, DV_DTYPE_F32, 1, sh1, v);
        free(hp), free(p), free(g), free(lrs);
    }
}

/* Row-wise Adagrad cases "adagrad{i}": hp = [eps, wd, mode], table0 [R, D],
 * rows [S, k] (I64), grads [S, k, D], lrs [S]  ->  table [R, D], acc [R]. */
static void ref_adagrad(const dv_st_file *in, ref_out *out)
{
    char key[64];
    for (int c = 0;; c++) {
        snprintf(key, sizeof key, "adagrad%d.hp", c);
        if (!ref_has(in, key))
            break;
        double *hp = ref_read(in, key, NULL, NULL, NULL);
        size_t nd, shape[DV_ST_MAX_DIMS], nr, rshape[DV_ST_MAX_DIMS], ng, S;
        snprintf(key, sizeof key, "adagrad%d.table0", c);
        free(ref_read(in, key, NULL, &nd, shape));
        float *table = ref_read_f32(in, key, NULL);
        size_t R = shape[0], D = shape[1];
        snprintf(key, sizeof key, "adagrad%d.rows", c);
        double *rows_d = ref_read(in, key, &nr, &nd, rshape);
        size_t k = rshape[1];
        snprintf(key, sizeof key, "adagrad%d.grads", c);
        float *g = ref_read_f32(in, key, &ng);
        snprintf(key, sizeof key, "adagrad%d.lrs", c);
        double *lrs = ref_read(in, key, &S, NULL, NULL);
        if (nr != S * k || ng != S * k * D)
            ref_die("inconsistent sizes in", key);
        float *acc = calloc(R, sizeof *acc);
        size_t *rows = malloc(k * sizeof *rows);
        dv_rowwise_adagrad opt;
        if (dv_rowwise_adagrad_init(&opt, hp[0], hp[1], (dv_wd_mode)hp[2]) != DV365_OK)
            ref_die("adagrad init", key);
        for (size_t s = 0; s < S; s++) {
            for (size_t i = 0; i < k; i++)
                rows[i] = (size_t)rows_d[s * k + i];
            if (dv_rowwise_adagrad_update(&opt, lrs[s], table, acc, R, D, rows, g + s * k * D,
                                          k) != DV365_OK)
                ref_die("adagrad step", key);
        }
        size_t sh2[2] = {R, D}, sh1[1] = {R};
        snprintf(key, sizeof key, "adagrad%d.table", c);
        ref_out_add(out, key, DV_DTYPE_F32, 2, sh2, table);
        snprintf(key, sizeof key, "adagrad%d.acc", c);
        ref_out_add(out, key, DV_DTYPE_F32, 1, sh1, acc);
        free(hp), free(rows_d), free(g), free(lrs), free(rows);
    }
}

/* Clipping: clip.sizes [nb] (I64), clip.grads [total], clip.max [K]
 * -> clip.out [K, total] (clipped copies), clip.norm [K]. */
static void ref_clip(const dv_st_file *in, ref_out *out)
{
    if (!ref_has(in, "clip.sizes"))
        return;
    size_t nb, total, K;
    double *sizes = ref_read(in, "clip.sizes", &nb, NULL, NULL);
    float *g = ref_read_f32(in, "clip.grads", &total);
    double *maxn = ref_read(in, "clip.max", &K, NULL, NULL);
    float *res = malloc(K * total * sizeof *res);
    double *norms = malloc(K * sizeof *norms);
    dv_grad_block *blocks = malloc(nb * sizeof *blocks);
    for (size_t k = 0; k < K; k++) {
        float *x = res + k * total;
        memcpy(x, g, total * sizeof *x);
        size_t at = 0;
        for (size_t b = 0; b < nb; b++) {
            blocks[b].g = x + at;
            blocks[b].n = (size_t)sizes[b];
            at += blocks[b].n;
        }
        if (at != total || dv_clip_grad_norm(blocks, nb, maxn[k], &norms[k]) != DV365_OK)
            ref_die("clip", "clip.grads");
    }
    size_t sh2[2] = {K, total}, sh1[1] = {K};
    ref_out_add(out, "clip.out", DV_DTYPE_F32, 2, sh2, res);
    ref_out_add(out, "clip.norm", DV_DTYPE_F64, 1, sh1, norms);
    free(sizes), free(g), free(maxn), free(blocks);
}

/* Schedules: sched.hp [M, 5] = decay, base, min, warmup, total; sched.steps [L]
 * (I64) -> sched.lrs [M, L]. */
static void ref_sched(const dv_st_file *in, ref_out *out)
{
    if (!ref_has(in, "sched.hp"))
        return;
    size_t nh, L;
    double *hp = ref_read(in, "sched.hp", &nh, NULL, NULL);
    double *steps = ref_read(in, "sched.steps", &L, NULL, NULL);
    size_t M = nh / 5;
    double *lrs = malloc(M * L * sizeof *lrs);
    for (size_t i = 0; i < M; i++) {
        const double *h = hp + 5 * i;
        dv_lr_schedule s = {(dv_lr_decay)h[0], h[1], h[2], (uint64_t)h[3], (uint64_t)h[4]};
        if (dv_lr_schedule_check(&s) != DV365_OK)
            ref_die("schedule check", "sched.hp");
        for (size_t t = 0; t < L; t++)
            lrs[i * L + t] = dv_lr_at(&s, (uint64_t)steps[t]);
    }
    size_t sh[2] = {M, L};
    ref_out_add(out, "sched.lrs", DV_DTYPE_F64, 2, sh, lrs);
    free(hp), free(steps);
}

static int run_ref(const char *in_path, const char *out_path)
{
    dv_st_file *in = ref_open(in_path);
    ref_out out;
    ref_out_init(&out);
    ref_adam(in, &out);
    ref_adagrad(in, &out);
    ref_clip(in, &out);
    ref_sched(in, &out);
    return ref_finish(&out, out_path, in);
}

int main(int argc, char **argv)
{
    if (ref_mode(argc, argv))
        return run_ref(argv[2], argv[3]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adam_first_step_is_sign),
        cmocka_unit_test(test_adamw_zero_grad_only_decays),
        cmocka_unit_test(test_adam_step_counter_shared_by_blocks),
        cmocka_unit_test(test_adam_errors),
        cmocka_unit_test(test_rowwise_adagrad_formula),
        cmocka_unit_test(test_rowwise_adagrad_weight_decay),
        cmocka_unit_test(test_rowwise_adagrad_errors),
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_clip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
