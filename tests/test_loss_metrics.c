/* test_loss_metrics.c — multi-task loss (BCE + MSE) and NE / AUC / MSE metrics.
 *
 * The cmocka suite checks finite differences of the loss backward and
 * properties of the metrics; tests/reference/train_ref.py compares with
 * PyTorch (losses, gradients) and numpy (TorchRec's NE, sklearn's AUC)
 * through `test_loss_metrics --ref IN OUT`. */
#include "testutil.h"

#include "internal.h"
#include "loss.h"
#include "metrics.h"
#include "train_refio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const dv_task k_tasks[4] = {
    {DV_TASK_BINARY, 1.0f, false},
    {DV_TASK_REGRESSION, 0.5f, true},
    {DV_TASK_BINARY, 0.25f, false},
    {DV_TASK_REGRESSION, 2.0f, false},
};

static void fill(dv_rng *r, float *logits, float *labels, size_t B)
{
    for (size_t b = 0; b < B; b++)
        for (size_t t = 0; t < 4; t++) {
            logits[b * 4 + t] = (float)(3 * dv_rng_normal(r));
            double u = dv_rng_uniform(r);
            labels[b * 4 + t] = (float)(t == 0 ? (u < 0.3) : t == 2 ? u : t == 1 ? 20 * u : u - 0.5);
        }
}

/* --- loss ------------------------------------------------------------------------ */

static void test_loss_finite_differences(void **state)
{
    (void)state;
    enum { B = 7, T = 4 };
    dv_rng r;
    dv_rng_seed(&r, 11);
    float z[B * T], y[B * T], dz[B * T];
    fill(&r, z, y, B);
    for (int i = 0; i < B * T; i++)
        dz[i] = 0.25f; /* backward accumulates: start from a known value */
    ASSERT_OK(dv_loss_backward(dz, z, y, k_tasks, B, T, 1.5f));
    for (int i = 0; i < B * T; i++) {
        float keep = z[i];
        /* Central difference over the float values actually evaluated. */
        float zp = keep + 1e-2f, zm = keep - 1e-2f;
        double lp, lm;
        z[i] = zp;
        ASSERT_OK(dv_loss_forward(&lp, NULL, z, y, k_tasks, B, T));
        z[i] = zm;
        ASSERT_OK(dv_loss_forward(&lm, NULL, z, y, k_tasks, B, T));
        z[i] = keep;
        double fd = 1.5 * (lp - lm) / ((double)zp - (double)zm);
        double got = (double)dz[i] - 0.25;
        if (fabs(got - fd) > 1e-4 * fmax(1.0, fabs(fd)))
            fail_msg("dlogit %d: backward %.8g, finite difference %.8g", i, got, fd);
    }
}

static void test_loss_values_and_stability(void **state)
{
    (void)state;
    /* Hand values: BCE(0, y) = log 2; BCE(z, 1) = log1p(e^-z) even for huge z. */
    float z[4] = {0, 100, -100, 30}, y[4] = {1, 1, 1, 0};
    const dv_task bin = {DV_TASK_BINARY, 1, false};
    double loss, per[4];
    dv_task tasks[4] = {bin, bin, bin, bin};
    ASSERT_OK(dv_loss_forward(&loss, per, z, y, tasks, 1, 4));
    assert_true(fabs(per[0] - log(2.0)) < 1e-15);
    assert_true(per[1] >= 0 && per[1] < 1e-40);
    assert_true(fabs(per[2] - 100.0) < 1e-12);
    assert_true(fabs(per[3] - 30.0) < 1e-12);
    assert_true(fabs(loss - (per[0] + per[1] + per[2] + per[3])) < 1e-12);
    float dz[4] = {0};
    ASSERT_OK(dv_loss_backward(dz, z, y, tasks, 1, 4, 1.0f));
    assert_true(dz[0] == -0.5f && dz[1] == 0.0f && dz[2] == -1.0f && dz[3] == 1.0f);

    /* Regression, log1p target: (z − log1p(y))² with weight, mean over B. */
    const dv_task reg = {DV_TASK_REGRESSION, 3.0f, true};
    float zr[2] = {1, 0}, yr[2] = {(float)(M_E - 1), 0};
    ASSERT_OK(dv_loss_forward(&loss, per, zr, yr, &reg, 2, 1));
    assert_true(fabs(per[0]) < 1e-12 && fabs(loss) < 1e-12);
    zr[1] = 2;
    ASSERT_OK(dv_loss_forward(&loss, per, zr, yr, &reg, 2, 1));
    assert_true(fabs(per[0] - 2.0) < 1e-6 && fabs(loss - 6.0) < 1e-6);
}

static void test_loss_errors(void **state)
{
    (void)state;
    float z[4] = {0, 0, 0, 0}, y[4] = {0, 0, 0, 0}, dz[4] = {0};
    double loss;
    ASSERT_ERR(dv_loss_forward(NULL, NULL, z, y, k_tasks, 1, 4), DV365_E_NULL, "loss");
    ASSERT_ERR(dv_loss_forward(&loss, NULL, z, y, k_tasks, 0, 4), DV365_E_INVALID, "batch");
    y[0] = 2;
    ASSERT_ERR(dv_loss_forward(&loss, NULL, z, y, k_tasks, 1, 4), DV365_E_INVALID,
               "[0, task 0] is 2");
    y[0] = 0;
    y[1] = -1;
    ASSERT_ERR(dv_loss_backward(dz, z, y, k_tasks, 1, 4, 1), DV365_E_INVALID, "log1p");
    y[1] = 0;
    z[3] = NAN;
    ASSERT_ERR(dv_loss_forward(&loss, NULL, z, y, k_tasks, 1, 4), DV365_E_NONFINITE,
               "logit [0, task 3]");
    z[3] = 0;
    ASSERT_ERR(dv_loss_backward(dz, z, y, k_tasks, 1, 4, INFINITY), DV365_E_NONFINITE, "dloss");
    for (int i = 0; i < 4; i++)
        assert_true(dz[i] == 0); /* nothing written on error */
    dv_task bad[1] = {{DV_TASK_BINARY, -1, false}};
    ASSERT_ERR(dv_loss_forward(&loss, NULL, z, y, bad, 1, 1), DV365_E_INVALID, "weight");
    bad[0] = (dv_task){DV_TASK_BINARY, 1, true};
    ASSERT_ERR(dv_tasks_check(bad, 1), DV365_E_INVALID, "regression");
    bad[0] = (dv_task){(dv_task_kind)5, 1, false};
    ASSERT_ERR(dv_tasks_check(bad, 1), DV365_E_INVALID, "kind");
}

/* --- metrics ------------------------------------------------------------------------- */

static void test_ne_properties(void **state)
{
    (void)state;
    enum { N = 400 };
    float p[N], y[N];
    for (int i = 0; i < N; i++) {
        y[i] = (float)(i % 4 == 0); /* mean label 0.25 */
        p[i] = 0.25f;
    }
    /* Predicting the base rate gives NE = 1 exactly (up to rounding). */
    dv_ne_acc a;
    double ne;
    dv_ne_reset(&a);
    ASSERT_ERR(dv_ne_value(&a, &ne), DV365_E_STATE, "no examples");
    ASSERT_OK(dv_ne_add(&a, p, 1, y, 1, NULL, 0, N));
    ASSERT_OK(dv_ne_value(&a, &ne));
    assert_true(fabs(ne - 1.0) < 1e-12);

    /* Better predictions lower it; streaming in chunks matches one batch. */
    for (int i = 0; i < N; i++)
        p[i] = y[i] ? 0.7f : 0.1f;
    dv_ne_acc one, chunks;
    dv_ne_reset(&one);
    dv_ne_reset(&chunks);
    ASSERT_OK(dv_ne_add(&one, p, 1, y, 1, NULL, 0, N));
    for (int at = 0; at < N; at += 37)
        ASSERT_OK(dv_ne_add(&chunks, p + at, 1, y + at, 1, NULL, 0, (size_t)DV_MIN(37, N - at)));
    double ne1, ne2;
    ASSERT_OK(dv_ne_value(&one, &ne1));
    ASSERT_OK(dv_ne_value(&chunks, &ne2));
    assert_true(ne1 < 0.7 && fabs(ne1 - ne2) < 1e-12);

    /* Predictions 0 and 1 are clamped at eta: finite, and huge when wrong. */
    float p2[2] = {1, 0}, y2[2] = {0, 1};
    dv_ne_reset(&a);
    ASSERT_OK(dv_ne_add(&a, p2, 1, y2, 1, NULL, 0, 2));
    ASSERT_OK(dv_ne_value(&a, &ne));
    assert_true(isfinite(ne) && fabs(ne - (-log2(1e-12))) < 1e-3); /* 1-(1-eta) rounds */

    /* Strided columns and weights: a weight of 2 equals a repeated example. */
    float m[6] = {0.2f, 9, 0.9f, 9, 0.6f, 9}, yl[3] = {0, 1, 1}, w[3] = {1, 2, 1};
    float pr[4] = {0.2f, 0.9f, 0.9f, 0.6f}, yr[4] = {0, 1, 1, 1};
    dv_ne_reset(&one);
    dv_ne_reset(&chunks);
    ASSERT_OK(dv_ne_add(&one, m, 2, yl, 1, w, 1, 3));
    ASSERT_OK(dv_ne_add(&chunks, pr, 1, yr, 1, NULL, 0, 4));
    ASSERT_OK(dv_ne_value(&one, &ne1));
    ASSERT_OK(dv_ne_value(&chunks, &ne2));
    assert_true(fabs(ne1 - ne2) < 1e-12);

    /* Errors leave the state unchanged. */
    dv_ne_acc before = one;
    float bad[2] = {0.5f, 1.5f};
    ASSERT_ERR(dv_ne_add(&one, bad, 1, yl, 1, NULL, 0, 2), DV365_E_INVALID, "prediction 1");
    bad[1] = NAN;
    ASSERT_ERR(dv_ne_add(&one, bad, 1, yl, 1, NULL, 0, 2), DV365_E_NONFINITE, "example 1");
    ASSERT_ERR(dv_ne_add(&one, pr, 1, yl, 0, NULL, 0, 2), DV365_E_INVALID, "stride");
    float wneg[1] = {-1};
    ASSERT_ERR(dv_ne_add(&one, pr, 1, yl, 1, wneg, 1, 1), DV365_E_INVALID, "weight 0");
    assert_memory_equal(&before, &one, sizeof one);
}

static void test_auc_properties(void **state)
{
    (void)state;
    dv_auc_acc a;
    dv_auc_init(&a);
    double auc;
    /* sklearn's roc_auc_score documentation example: 0.75. */
    float p[4] = {0.1f, 0.4f, 0.35f, 0.8f}, y[4] = {0, 0, 1, 1};
    ASSERT_OK(dv_auc_add(&a, p, 1, y, 1, NULL, 0, 4));
    ASSERT_OK(dv_auc_value(&a, &auc));
    assert_true(auc == 0.75);

    /* All scores tied: one half. */
    dv_auc_reset(&a);
    float t[6] = {3, 3, 3, 3, 3, 3}, yt[6] = {1, 0, 0, 1, 1, 0};
    ASSERT_OK(dv_auc_add(&a, t, 1, yt, 1, NULL, 0, 6));
    ASSERT_OK(dv_auc_value(&a, &auc));
    assert_true(auc == 0.5);

    /* A tie between one positive and one negative among separated ones:
     * pairs (pos, neg): 2 positives × 2 negatives, one pair tied → 3.5/4. */
    dv_auc_reset(&a);
    float q[4] = {0.1f, 0.5f, 0.5f, 0.9f}, yq[4] = {0, 0, 1, 1};
    ASSERT_OK(dv_auc_add(&a, q, 1, yq, 1, NULL, 0, 4));
    ASSERT_OK(dv_auc_value(&a, &auc));
    assert_true(auc == 0.875);

    /* Growth across many batches, scores perfectly separating: 1; reversed: 0. */
    dv_auc_reset(&a);
    dv_auc_acc rev;
    dv_auc_init(&rev);
    for (int batch = 0; batch < 30; batch++) {
        float s[200], l[200], ns[200];
        for (int i = 0; i < 200; i++) {
            int k = batch * 200 + i;
            l[i] = (float)(k % 3 == 0);
            s[i] = l[i] + (float)((k * 7919) % 1000) / 2000.0f;
            ns[i] = -s[i];
        }
        ASSERT_OK(dv_auc_add(&a, s, 1, l, 1, NULL, 0, 200));
        ASSERT_OK(dv_auc_add(&rev, ns, 1, l, 1, NULL, 0, 200));
    }
    assert_int_equal(a.n, 6000);
    ASSERT_OK(dv_auc_value(&a, &auc));
    assert_true(auc == 1.0);
    ASSERT_OK(dv_auc_value(&rev, &auc));
    assert_true(auc == 0.0);
    dv_auc_free(&rev);

    /* One class only: undefined. */
    dv_auc_reset(&a);
    float ones[2] = {1, 1};
    ASSERT_OK(dv_auc_add(&a, p, 1, ones, 1, NULL, 0, 2));
    ASSERT_ERR(dv_auc_value(&a, &auc), DV365_E_STATE, "no negative");
    ASSERT_ERR(dv_auc_add(&a, p, 1, t, 1, NULL, 0, 2), DV365_E_INVALID, "label 0 is 3");
    assert_int_equal(a.n, 2);
    dv_auc_free(&a);
    dv_auc_free(&a); /* idempotent */
}

static void test_mse_metric(void **state)
{
    (void)state;
    dv_mse_acc a;
    double v;
    dv_mse_reset(&a);
    ASSERT_ERR(dv_mse_value(&a, &v), DV365_E_STATE, "no examples");
    float p[3] = {1, 2, 3}, y[3] = {1, 0, 6}, w[3] = {1, 1, 2};
    ASSERT_OK(dv_mse_add(&a, p, 1, y, 1, NULL, 0, 3));
    ASSERT_OK(dv_mse_value(&a, &v));
    assert_true(fabs(v - 13.0 / 3.0) < 1e-15);
    dv_mse_reset(&a);
    ASSERT_OK(dv_mse_add(&a, p, 1, y, 1, w, 1, 3));
    ASSERT_OK(dv_mse_value(&a, &v));
    assert_true(fabs(v - 22.0 / 4.0) < 1e-15);
    p[0] = INFINITY;
    ASSERT_ERR(dv_mse_add(&a, p, 1, y, 1, w, 1, 3), DV365_E_NONFINITE, "prediction");
}

/* --- reference mode -------------------------------------------------------------------- */

/* loss.logits / loss.labels [B, T], loss.tasks [T, 3] = kind, weight, log1p
 * -> loss.value [1+T] (total, per task), loss.grad [B, T] (dloss = 1).
 * ne{i}.pred / .label / .weight [n], ne{i}.chunk [1] -> ne{i}.value [1];
 * auc{i}.pred / .label (/ .weight) -> auc{i}.value; mse.pred / .target -> mse.value. */
static int run_ref(const char *in_path, const char *out_path)
{
    dv_st_file *in = ref_open(in_path);
    ref_out out;
    ref_out_init(&out);
    char key[64];
    for (int c = 0;; c++) {
        snprintf(key, sizeof key, "loss%d.logits", c);
        if (!ref_has(in, key))
            break;
        size_t nd, shape[DV_ST_MAX_DIMS], nt;
        free(ref_read(in, key, NULL, &nd, shape));
        size_t B = shape[0], T = shape[1];
        float *z = ref_read_f32(in, key, NULL);
        snprintf(key, sizeof key, "loss%d.labels", c);
        float *y = ref_read_f32(in, key, NULL);
        snprintf(key, sizeof key, "loss%d.tasks", c);
        double *td = ref_read(in, key, &nt, NULL, NULL);
        dv_task *tasks = malloc(T * sizeof *tasks);
        for (size_t t = 0; t < T; t++)
            tasks[t] = (dv_task){(dv_task_kind)td[3 * t], td[3 * t + 1], td[3 * t + 2] != 0};
        double *val = malloc((1 + T) * sizeof *val);
        float *grad = calloc(B * T, sizeof *grad);
        if (dv_loss_forward(&val[0], val + 1, z, y, tasks, B, T) != DV365_OK ||
            dv_loss_backward(grad, z, y, tasks, B, T, 1.0f) != DV365_OK)
            ref_die("loss", key);
        size_t sh1[1] = {1 + T}, sh2[2] = {B, T};
        snprintf(key, sizeof key, "loss%d.value", c);
        ref_out_add(&out, key, DV_DTYPE_F64, 1, sh1, val);
        snprintf(key, sizeof key, "loss%d.grad", c);
        ref_out_add(&out, key, DV_DTYPE_F32, 2, sh2, grad);
        free(z), free(y), free(td), free(tasks);
    }
    for (int kind = 0; kind < 3; kind++) {
        const char *pfx = kind == 0 ? "ne" : kind == 1 ? "auc" : "mse";
        for (int c = 0;; c++) {
            snprintf(key, sizeof key, "%s%d.pred", pfx, c);
            if (!ref_has(in, key))
                break;
            size_t n, nc;
            float *p = ref_read_f32(in, key, &n);
            snprintf(key, sizeof key, "%s%d.label", pfx, c);
            float *y = ref_read_f32(in, key, NULL);
            snprintf(key, sizeof key, "%s%d.weight", pfx, c);
            float *w = ref_has(in, key) ? ref_read_f32(in, key, NULL) : NULL;
            snprintf(key, sizeof key, "%s%d.chunk", pfx, c);
            double *chunk = ref_read(in, key, &nc, NULL, NULL);
            size_t step = (size_t)chunk[0];
            double *v = malloc(sizeof *v);
            dv_ne_acc ne;
            dv_mse_acc mse;
            dv_auc_acc auc;
            dv_ne_reset(&ne);
            dv_mse_reset(&mse);
            dv_auc_init(&auc);
            /* Streamed in chunks, as an evaluation over a held-out set would. */
            for (size_t at = 0; at < n; at += step) {
                size_t k = DV_MIN(step, n - at);
                const float *wa = w ? w + at : NULL;
                dv365_status st = kind == 0   ? dv_ne_add(&ne, p + at, 1, y + at, 1, wa, 1, k)
                                  : kind == 1 ? dv_auc_add(&auc, p + at, 1, y + at, 1, wa, 1, k)
                                              : dv_mse_add(&mse, p + at, 1, y + at, 1, wa, 1, k);
                if (st != DV365_OK)
                    ref_die("metric add", key);
            }
            dv365_status st = kind == 0   ? dv_ne_value(&ne, v)
                              : kind == 1 ? dv_auc_value(&auc, v)
                                          : dv_mse_value(&mse, v);
            if (st != DV365_OK)
                ref_die("metric value", key);
            dv_auc_free(&auc);
            size_t sh[1] = {1};
            snprintf(key, sizeof key, "%s%d.value", pfx, c);
            ref_out_add(&out, key, DV_DTYPE_F64, 1, sh, v);
            free(p), free(y), free(w), free(chunk);
        }
    }
    return ref_finish(&out, out_path, in);
}

int main(int argc, char **argv)
{
    if (ref_mode(argc, argv))
        return run_ref(argv[2], argv[3]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss_finite_differences),
        cmocka_unit_test(test_loss_values_and_stability),
        cmocka_unit_test(test_loss_errors),
        cmocka_unit_test(test_ne_properties),
        cmocka_unit_test(test_auc_properties),
        cmocka_unit_test(test_mse_metric),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
