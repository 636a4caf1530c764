/* test_retrieval.c — the retrieval experiment (tools/exp_retrieval.c): the
 * in-batch softmax loss against a hand computation and finite differences,
 * the HitRate rank on hand-made scores, and whole arms on the tiny world
 * (bitwise the same for 1 and 2 threads, rates in range, better than chance). */
#define _POSIX_C_SOURCE 200809L
#include "testutil.h"

#include "exp.h"
#include "world.h"
#include "internal.h" /* dv_free: exp_read_text's buffer */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- the loss ----------------------------------------------------------------- */

static void test_softmax_by_hand(void **state)
{
    (void)state;
    /* d = 1: S = [[3, -1], [6, -2]] */
    const float u[2] = {1, 2}, v[2] = {3, -1};
    float P[4];
    double loss = exp_inbatch_softmax_forward(P, u, v, NULL, 2, 1);
    double l0 = log(exp(3.0) + exp(-1.0)) - 3.0, l1 = log(exp(6.0) + exp(-2.0)) + 2.0;
    assert_true(fabs(loss - (l0 + l1) / 2) < 1e-6);
    assert_true(fabs(P[0] - exp(3.0) / (exp(3.0) + exp(-1.0))) < 1e-6);
    assert_true(fabs(P[1] + P[0] - 1.0) < 1e-6);
    assert_true(fabs(P[3] - exp(-2.0) / (exp(6.0) + exp(-2.0))) < 1e-6);

    /* the same item twice: left out of each other's row */
    const float u3[3] = {1, 2, 3}, v3[3] = {1, 1, 5};
    const uint64_t key[3] = {7, 7, 9};
    float P3[9];
    loss = exp_inbatch_softmax_forward(P3, u3, v3, key, 3, 1);
    assert_true(P3[0 * 3 + 1] == 0.0f && P3[1 * 3 + 0] == 0.0f);
    assert_true(P3[2 * 3 + 0] > 0.0f && P3[2 * 3 + 1] > 0.0f); /* row 2 keeps both */
    double r0 = log(exp(1.0) + exp(5.0)) - 1.0, r1 = log(exp(2.0) + exp(10.0)) - 2.0,
           r2 = log(exp(3.0) + exp(3.0) + exp(15.0)) - 15.0;
    assert_true(fabs(loss - (r0 + r1 + r2) / 3) < 1e-5);
    for (int i = 0; i < 3; i++)
        assert_true(fabs(P3[3 * i] + P3[3 * i + 1] + P3[3 * i + 2] - 1.0) < 1e-6);
}

/* dL/du and dL/dv against central differences of the loss. */
static void test_softmax_gradients(void **state)
{
    (void)state;
    enum { B = 6, D = 5 };
    float u[B * D], v[B * D], P[B * B], du[B * D] = {0}, dv[B * D] = {0};
    const uint64_t key[B] = {1, 2, 3, 2, 5, 6}; /* rows 1 and 3: the same item */
    uint64_t x = 12345;
    for (int i = 0; i < B * D; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        u[i] = (float)((double)(x >> 11) / 9007199254740992.0 * 2 - 1);
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        v[i] = (float)((double)(x >> 11) / 9007199254740992.0 * 2 - 1);
    }
    exp_inbatch_softmax_forward(P, u, v, key, B, D);
    exp_inbatch_softmax_backward(du, dv, P, u, v, B, D);
    /* backward accumulates: a second call doubles */
    float du2[B * D], dv2[B * D];
    memcpy(du2, du, sizeof du);
    memcpy(dv2, dv, sizeof dv);
    exp_inbatch_softmax_backward(du2, NULL, P, u, v, B, D);
    exp_inbatch_softmax_backward(NULL, dv2, P, u, v, B, D);
    for (int i = 0; i < B * D; i++) {
        assert_true(fabsf(du2[i] - 2 * du[i]) <= 1e-6f * (1 + fabsf(du[i])));
        assert_true(fabsf(dv2[i] - 2 * dv[i]) <= 1e-6f * (1 + fabsf(dv[i])));
    }
    const float h = 1e-2f;
    double worst = 0, norm = 0;
    for (int w = 0; w < 2; w++) {
        float *p = w ? v : u;
        const float *g = w ? dv : du;
        for (int i = 0; i < B * D; i++) {
            float keep = p[i];
            p[i] = keep + h;
            double lp = exp_inbatch_softmax_forward(P, u, v, key, B, D);
            p[i] = keep - h;
            double lm = exp_inbatch_softmax_forward(P, u, v, key, B, D);
            p[i] = keep;
            double fd = (lp - lm) / (2.0 * (double)h);
            double err = fabs(fd - g[i]);
            worst = err > worst ? err : worst;
            norm += fabs(g[i]);
        }
    }
    assert_true(norm > 0.1); /* the gradient is not trivially zero */
    if (worst > 1e-4)
        fail_msg("softmax gradient vs finite differences: max abs error %g", worst);
}

static void test_rank(void **state)
{
    (void)state;
    const float neg[5] = {0.1f, 0.5f, 0.7f, 0.2f, -3.0f};
    assert_int_equal(exp_retrieval_rank(0.5f, neg, 5), 2); /* the tie counts against it */
    assert_int_equal(exp_retrieval_rank(0.8f, neg, 5), 0);
    assert_int_equal(exp_retrieval_rank(-4.0f, neg, 5), 5);
    assert_int_equal(exp_retrieval_rank(0.0f, neg, 0), 0);
    const float nan_neg[2] = {NAN, 0.0f};
    assert_int_equal(exp_retrieval_rank(1.0f, nan_neg, 2), 1);
    /* HitRate@k: rank < k */
    size_t hit1 = 0, hit3 = 0;
    const float pos[4] = {0.8f, 0.5f, 0.15f, -4.0f}; /* ranks 0, 2, 3, 5 */
    for (int i = 0; i < 4; i++) {
        size_t r = exp_retrieval_rank(pos[i], neg, 5);
        hit1 += r < 1;
        hit3 += r < 3;
    }
    assert_int_equal(hit1, 1);
    assert_int_equal(hit3, 2);
}

/* --- whole arms on the tiny world ---------------------------------------------- */

typedef struct fixture {
    char dir[128];
    exp_world w;
    exp_bank bank;
    char *config_text;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f || test_make_tmpdir(f->dir, sizeof f->dir, "retrieval"))
        return -1;
    *state = f;
    dv365_config *cfg = NULL;
    world *wd = NULL;
    world_params p;
    char err[512] = "", catalog[4096];
    snprintf(catalog, sizeof catalog, "%s",
             test_source_path("data/kuairand/kuairand-pure/video_features_basic_pure.csv"));
    if (world_preset("tiny", &p) || dv365_config_load(test_source_path("configs/default.yaml"),
                                                      &cfg) != DV365_OK)
        return -1;
    p.seed = 5;
    p.catalog_csv = catalog;
    dv365_status st = world_create(&p, cfg, &wd, err, sizeof err);
    if (st == DV365_OK)
        st = world_write(wd, f->dir, NULL, NULL, NULL, err, sizeof err);
    world_free(wd);
    dv365_config_free(cfg);
    if (st != DV365_OK) {
        fprintf(stderr, "world: %s\n", err);
        return -1;
    }
    /* an untrained DV365 model's daily embeddings: enough to run the arms */
    dv365_model *dv = NULL;
    if (exp_world_load(f->dir, &f->w) != DV365_OK ||
        dv365_model_init(test_source_path("configs/small.yaml"), 3, &dv) != DV365_OK ||
        exp_bank_build(dv, f->w.timelines, f->w.train_from, f->w.n_days, 1, 2, 0, &f->bank) !=
            DV365_OK ||
        !(f->config_text = exp_read_text(test_source_path("configs/downstream.yaml")))) {
        fprintf(stderr, "setup: %s\n", dv365_last_error());
        dv365_model_free(dv);
        return -1;
    }
    dv365_model_free(dv);
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (!f)
        return 0;
    exp_bank_free(&f->bank);
    exp_world_free(&f->w);
    dv_free(f->config_text);
    int rc = test_remove_tmpdir(f->dir);
    free(f);
    return rc;
}

static void test_arms(void **state)
{
    fixture *f = *state;
    exp_retrieval_data *r = NULL;
    ASSERT_OK(exp_retrieval_open(&f->w, f->config_text, 0, &r));
    const size_t n_tr = exp_retrieval_num_positives(r, 0), n_ev = exp_retrieval_num_positives(r, 1);
    /* the positives: like or complete */
    size_t want_tr = 0, want_ev = 0;
    for (size_t i = 0; i < f->w.train.n; i++) /* tasks: like comment share complete ... */
        want_tr += f->w.train.labels[i * f->w.train.T] == 1.0f ||
                   f->w.train.labels[i * f->w.train.T + 3] == 1.0f;
    for (size_t i = 0; i < f->w.eval.n; i++)
        want_ev += f->w.eval.labels[i * f->w.eval.T] == 1.0f ||
                   f->w.eval.labels[i * f->w.eval.T + 3] == 1.0f;
    assert_int_equal(n_tr, want_tr);
    assert_int_equal(n_ev, want_ev);
    assert_true(n_tr > 100 && n_ev > 50);

    /* held-out users: the others' train window / every positive of theirs */
    exp_retrieval_data *rh = NULL;
    ASSERT_OK(exp_retrieval_open(&f->w, f->config_text, 1, &rh));
    size_t held_tr = 0, held_ev = 0, n_held = 0, n_users = 0;
    const exp_examples *ex[2] = {&f->w.train, &f->w.eval};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < ex[k]->n; i++) {
            const float *y = ex[k]->labels + i * ex[k]->T;
            if (y[0] != 1.0f && y[3] != 1.0f)
                continue;
            int held = exp_held_out_user(ex[k]->user[i]);
            held_tr += k == 0 && !held;
            held_ev += held;
        }
    for (size_t i = 0; i < f->bank.n_users; i++, n_users++)
        n_held += exp_held_out_user(f->bank.user[i]);
    assert_true(n_held * 8 > n_users && n_held * 8 < 3 * n_users); /* about a quarter */
    assert_int_equal(exp_retrieval_num_positives(rh, 0), held_tr);
    assert_int_equal(exp_retrieval_num_positives(rh, 1), held_ev);
    double g1, g10;
    ASSERT_OK(exp_retrieval_arm(rh, &f->bank, 1, 11, 1, 2, &g1, &g10));
    assert_true(g1 >= 0 && g1 <= g10 && g10 <= 1);
    exp_retrieval_close(rh);

    double hr[3][2][2]; /* [arm][threads 1, 2][@1, @10] */
    const exp_bank *banks[3] = {NULL, &f->bank, &f->bank};
    for (int a = 0; a < 3; a++)
        for (int t = 0; t < 2; t++)
            ASSERT_OK(exp_retrieval_arm(r, banks[a], a == 2, 11, 3, t + 1, &hr[a][t][0],
                                        &hr[a][t][1]));
    for (int a = 0; a < 3; a++) {
        /* bitwise the same for any thread count */
        assert_memory_equal(hr[a][0], hr[a][1], sizeof hr[a][0]);
        assert_true(hr[a][0][0] >= 0 && hr[a][0][0] <= hr[a][0][1] && hr[a][0][1] <= 1);
        /* trained: well above the chance rate of 10 in 101 */
        if (hr[a][0][1] < 0.2)
            fail_msg("arm %d: HitRate@10 %.3f is near chance (0.099)", a, hr[a][0][1]);
    }
    /* an untrained two-tower model ranks at chance */
    double h1, h10;
    ASSERT_OK(exp_retrieval_arm(r, NULL, 0, 11, 0, 1, &h1, &h10));
    assert_true(h10 < hr[0][0][1]);
    exp_retrieval_close(r);
}

static void test_errors(void **state)
{
    fixture *f = *state;
    exp_retrieval_data *r = NULL;
    /* the downstream config (backbone is its last section) with `complete` renamed */
    static const char tasks[] = "\n  tasks:\n"
                                "    - {name: like, type: binary}\n"
                                "    - {name: comment, type: binary}\n"
                                "    - {name: share, type: binary}\n"
                                "    - {name: finish, type: binary}\n"
                                "    - {name: skip, type: binary}\n"
                                "    - {name: watch_time, type: regression, log1p: true}\n";
    size_t n = strlen(f->config_text) + sizeof tasks;
    char *text = malloc(n);
    assert_non_null(text);
    snprintf(text, n, "%s%s", f->config_text, tasks);
    ASSERT_ERR(exp_retrieval_open(&f->w, text, 0, &r), DV365_E_CONFIG, "'complete'");
    assert_null(r);
    /* with the right name it opens */
    char *fix = malloc(n + 8);
    assert_non_null(fix);
    const char *at = strstr(text, "finish");
    snprintf(fix, n + 8, "%.*scomplete%s", (int)(at - text), text, at + strlen("finish"));
    ASSERT_OK(exp_retrieval_open(&f->w, fix, 0, &r));
    exp_retrieval_close(r);
    r = NULL;
    free(fix);
    free(text);
    ASSERT_ERR(exp_retrieval_open(&f->w, "version: [", 0, &r), DV365_E_PARSE, "flow node");
    assert_null(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_softmax_by_hand),
        cmocka_unit_test(test_softmax_gradients),
        cmocka_unit_test(test_rank),
        cmocka_unit_test(test_arms),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
