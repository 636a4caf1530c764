/* test_trainer.c — training: learning, determinism, resume, the 24 h cut. */
#include "testutil.h"

#include "model.h"
#include "world.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];            /* the tiny world and checkpoints */
static char tl_path[128], train_path[128], eval_path[128];

static int setup(void **state)
{
    (void)state;
    if (test_make_tmpdir(dir, sizeof dir, "trainer"))
        return -1;
    dv365_config *cfg;
    if (dv365_config_load(test_source_path("configs/small.yaml"), &cfg))
        return -1;
    world_params p;
    world_preset("tiny", &p);
    p.n_users = 24;
    p.catalog_csv = test_source_path("data/kuairand/kuairand-pure/video_features_basic_pure.csv");
    char catalog[512];
    snprintf(catalog, sizeof catalog, "%s", p.catalog_csv);
    p.catalog_csv = catalog;
    world *w;
    char err[256];
    if (world_create(&p, cfg, &w, err, sizeof err) ||
        world_write(w, dir, NULL, NULL, NULL, err, sizeof err)) {
        fprintf(stderr, "world: %s\n", err);
        return -1;
    }
    world_free(w);
    dv365_config_free(cfg);
    snprintf(tl_path, sizeof tl_path, "%s/timelines.dvt", dir);
    snprintf(train_path, sizeof train_path, "%s/train.dve", dir);
    snprintf(eval_path, sizeof eval_path, "%s/eval.dve", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return test_remove_tmpdir(dir);
}

static dv365_model *fresh_model(void)
{
    dv365_model *m;
    ASSERT_OK(dv365_model_init(test_source_path("configs/small.yaml"), 5, &m));
    return m;
}

static double eval_loss(dv365_trainer *t)
{
    double loss;
    ASSERT_OK(dv365_trainer_eval_files(t, tl_path, eval_path, 1));
    ASSERT_OK(dv365_trainer_eval_loss(t, &loss, NULL));
    return loss;
}

typedef struct losses {
    double v[64];
    size_t n;
} losses;

static int record(void *ctx, uint64_t step, uint64_t total, double loss)
{
    (void)step;
    (void)total;
    losses *l = ctx;
    l->v[l->n++] = loss;
    return 0;
}

/* Training lowers the held-out loss measurably. */
static void test_training_learns(void **state)
{
    (void)state;
    dv365_model *m = fresh_model();
    dv365_trainer *t;
    ASSERT_OK(dv365_trainer_create(m, &t));
    double before = eval_loss(t);
    uint64_t fp0 = dv365_model_fingerprint(m);
    losses l = {0};
    ASSERT_OK(dv365_trainer_train_files(t, tl_path, train_path, 40, record, &l, 1));
    assert_int_equal(l.n, 40);
    assert_int_equal(dv365_trainer_steps(t), 40);
    double after = eval_loss(t);
    printf("held-out loss %.4f -> %.4f after 40 steps\n", before, after);
    assert_true(after < before * 0.97);
    /* the weights changed, and so did the fingerprint */
    assert_true(dv365_model_fingerprint(m) != fp0);
    double ne, auc, mse;
    ASSERT_OK(dv365_trainer_eval_result(t, 0, &ne, &auc, &mse)); /* like: binary */
    assert_true(ne > 0 && ne < 1.5 && auc > 0.5 && isnan(mse));
    ASSERT_OK(dv365_trainer_eval_result(t, 5, &ne, &auc, &mse)); /* watch_time: regression */
    assert_true(isnan(ne) && mse >= 0);
    ASSERT_ERR(dv365_trainer_eval_result(t, 6, &ne, &auc, &mse), DV365_E_INVALID, "task 6");
    dv365_trainer_free(t);
    dv365_model_free(m);
}

/* Same losses and weights for 1 and 2 threads, bit for bit. */
static void test_thread_count_invariance(void **state)
{
    (void)state;
    dv365_model *m1 = fresh_model(), *m2 = fresh_model();
    dv365_trainer *t1, *t2;
    ASSERT_OK(dv365_trainer_create(m1, &t1));
    ASSERT_OK(dv365_trainer_create(m2, &t2));
    losses a = {0}, b = {0};
    ASSERT_OK(dv365_trainer_train_files(t1, tl_path, train_path, 3, record, &a, 1));
    ASSERT_OK(dv365_trainer_train_files(t2, tl_path, train_path, 3, record, &b, 2));
    assert_memory_equal(a.v, b.v, 3 * sizeof(double));
    assert_true(dv365_model_fingerprint(m1) == dv365_model_fingerprint(m2));
    dv365_trainer_free(t1);
    dv365_trainer_free(t2);
    dv365_model_free(m1);
    dv365_model_free(m2);
}

/* Stop, checkpoint, resume: the losses and weights of an unbroken run. */
static void test_resume_is_exact(void **state)
{
    (void)state;
    dv365_model *m = fresh_model();
    dv365_trainer *t;
    ASSERT_OK(dv365_trainer_create(m, &t));
    losses full = {0};
    ASSERT_OK(dv365_trainer_train_files(t, tl_path, train_path, 6, record, &full, 1));
    uint64_t fp_full = dv365_model_fingerprint(m);
    dv365_trainer_free(t);
    dv365_model_free(m);

    char ckpt[128];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt", dir);
    m = fresh_model();
    ASSERT_OK(dv365_trainer_create(m, &t));
    losses part = {0};
    ASSERT_OK(dv365_trainer_train_files(t, tl_path, train_path, 3, record, &part, 1));
    ASSERT_OK(dv365_trainer_save(t, ckpt));
    /* one more step, never saved: the checkpoint must not see it */
    ASSERT_OK(dv365_trainer_train_files(t, tl_path, train_path, 1, NULL, NULL, 1));
    dv365_trainer_free(t);
    dv365_model_free(m);

    ASSERT_OK(dv365_trainer_resume(ckpt, &m, &t));
    assert_int_equal(dv365_trainer_steps(t), 3);
    ASSERT_OK(dv365_trainer_train_files(t, tl_path, train_path, 3, record, &part, 1));
    assert_memory_equal(full.v, part.v, 6 * sizeof(double));
    assert_true(dv365_model_fingerprint(m) == fp_full);
    /* the checkpoint directory also loads as a model */
    dv365_model *m2;
    ASSERT_OK(dv365_model_load(ckpt, &m2));
    dv365_model_free(m2);
    ASSERT_OK(dv365_trainer_save(t, ckpt)); /* step 6 */
    dv365_trainer_free(t);
    dv365_model_free(m);

    /* Saving step 6 again from a run resumed at step 3 never touches the
     * directory LATEST names: it gets a fresh name, then LATEST moves. */
    char step3[160], latest[160], text[64] = {0};
    snprintf(step3, sizeof step3, "%s/step-000000000003", ckpt);
    ASSERT_OK(dv365_trainer_resume(step3, &m, &t));
    ASSERT_OK(dv365_trainer_train_files(t, tl_path, train_path, 3, NULL, NULL, 1));
    ASSERT_OK(dv365_trainer_save(t, ckpt));
    snprintf(latest, sizeof latest, "%s/LATEST", ckpt);
    FILE *f = fopen(latest, "r");
    assert_non_null(f);
    assert_non_null(fgets(text, sizeof text, f));
    fclose(f);
    assert_string_equal(text, "step-000000000006.r1\n");
    snprintf(latest, sizeof latest, "%s/step-000000000006", ckpt);
    ASSERT_OK(dv365_model_load(latest, &m2)); /* the first step-6 is intact */
    assert_true(dv365_model_fingerprint(m2) == fp_full);
    dv365_model_free(m2);
    dv365_trainer_free(t);
    dv365_model_free(m);
}

/* Events in the last 24 h before a label (and after it) never reach the
 * model: two timelines differing only there give identical steps. */
static void test_gap_hides_last_day(void **state)
{
    (void)state;
    dv365_model *m1 = fresh_model(), *m2 = fresh_model();
    const dv365_config *cfg = dv365_model_config(m1);
    const int64_t label = 1750000000;
    enum { n_old = 200, n_new = 50 };
    int64_t time[n_old + n_new];
    uint64_t media[n_old + n_new], author[n_old + n_new], topic[n_old + n_new];
    int32_t action[n_old + n_new], mtype[n_old + n_new], surface[n_old + n_new];
    float dur[n_old + n_new], dwell[n_old + n_new];
    for (int i = 0; i < n_old + n_new; i++) {
        /* old: 2..200 days before the label; new: within the last 24 h or after */
        time[i] = i < n_old ? label - 2 * 86400 - (int64_t)i * 80000
                            : label - 86400 + (int64_t)(i - n_old) * 3000;
        media[i] = (uint64_t)(i * 37 % 500);
        author[i] = media[i] / 5;
        topic[i] = media[i] % 17;
        action[i] = i % 4 == 0 ? 1 : 0;
        mtype[i] = i % 3;
        surface[i] = i % 5;
        dur[i] = 30000;
        dwell[i] = (float)(i * 997 % 40000);
    }
    dv365_timeline *a, *b;
    ASSERT_OK(dv365_timeline_create(cfg, &a));
    ASSERT_OK(dv365_timeline_create(dv365_model_config(m2), &b));
    ASSERT_OK(dv365_timeline_append(a, n_old, time, media, author, topic, action, mtype, surface,
                                    dur, dwell));
    ASSERT_OK(dv365_timeline_append(b, n_old + n_new, time, media, author, topic, action, mtype,
                                    surface, dur, dwell));
    const dv365_timeline *ta[2] = {a, a}, *tb[2] = {b, b};
    int64_t lt[2] = {label, label};
    uint64_t items[6] = {1, 2, 3, 4, 5, 6};
    float dense[16] = {0.5f, 1, 0, 0, 0, 0, 0, 0, 1, 0.5f, 0, 0, 0, 0, 0, 0};
    float labels[12] = {1, 0, 0, 1, 0, 12.5f, 0, 0, 1, 0, 1, 2.0f};
    dv365_trainer *t1, *t2;
    ASSERT_OK(dv365_trainer_create(m1, &t1));
    ASSERT_OK(dv365_trainer_create(m2, &t2));
    double l1, l2;
    for (int s = 0; s < 3; s++) {
        ASSERT_OK(dv365_trainer_step(t1, 2, ta, lt, items, dense, labels, &l1, 1));
        ASSERT_OK(dv365_trainer_step(t2, 2, tb, lt, items, dense, labels, &l2, 1));
        assert_true(l1 == l2);
    }
    assert_true(dv365_model_fingerprint(m1) == dv365_model_fingerprint(m2));

    /* errors: label before the gap, NULLs, foreign config; the trainer stays usable */
    int64_t early[2] = {3600, label};
    ASSERT_ERR(dv365_trainer_step(t1, 2, ta, early, items, dense, labels, &l1, 1),
               DV365_E_TIMESTAMP, "label_times[0]");
    ASSERT_ERR(dv365_trainer_step(t1, 0, ta, lt, items, dense, labels, &l1, 1), DV365_E_INVALID,
               "batch");
    ASSERT_ERR(dv365_trainer_step(t1, 2, ta, lt, NULL, dense, labels, &l1, 1), DV365_E_NULL,
               "required");
    ASSERT_ERR(dv365_trainer_step(t1, 2, ta, lt, items, dense, labels, &l1, 0), DV365_E_INVALID,
               "nthreads");
    dv365_config *other;
    dv365_timeline *foreign;
    ASSERT_OK(dv365_config_load(test_source_path("configs/default.yaml"), &other));
    ASSERT_OK(dv365_timeline_create(other, &foreign));
    const dv365_timeline *tm[2] = {a, foreign};
    ASSERT_ERR(dv365_trainer_step(t1, 2, tm, lt, items, dense, labels, &l1, 1), DV365_E_MISMATCH,
               "timelines[1] was made for another config");
    dv365_timeline_free(foreign);
    dv365_config_free(other);
    float bad[12];
    memcpy(bad, labels, sizeof bad);
    bad[0] = NAN;
    ASSERT_ERR(dv365_trainer_step(t1, 2, ta, lt, items, dense, bad, &l1, 1), DV365_E_NONFINITE,
               NULL);
    ASSERT_OK(dv365_trainer_step(t1, 2, ta, lt, items, dense, labels, &l1, 1));
    ASSERT_ERR(dv365_trainer_train_files(t1, tl_path, "/nonexistent.dve", 1, NULL, NULL, 1),
               DV365_E_IO, "nonexistent");
    dv365_trainer_free(t1);
    dv365_trainer_free(t2);
    dv365_timeline_free(a);
    dv365_timeline_free(b);
    dv365_model_free(m1);
    dv365_model_free(m2);
}

/* A model of configs/small.yaml with backbone.extra_tokens = E (0: the file as is). */
static dv365_model *model_with_extra(size_t E)
{
    char path[192];
    snprintf(path, sizeof path, "%s/extra%zu.yaml", dir, E);
    FILE *in = fopen(test_source_path("configs/small.yaml"), "rb"), *out = fopen(path, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    if (E)
        fprintf(out, "\nbackbone:\n  extra_tokens: %zu\n", E);
    fclose(in);
    assert_int_equal(fclose(out), 0);
    dv365_model *m;
    ASSERT_OK(dv365_model_init(path, 5, &m));
    return m;
}

/* Two examples of one synthetic user, as in test_gap_hides_last_day. */
static dv365_timeline *small_timeline(const dv365_config *cfg)
{
    enum { n = 120 };
    int64_t time[n];
    uint64_t media[n], author[n], topic[n];
    int32_t action[n], mtype[n], surface[n];
    float dur[n], dwell[n];
    for (int i = 0; i < n; i++) {
        time[i] = 1750000000 - 2 * 86400 - (int64_t)i * 40000;
        media[i] = (uint64_t)(i * 37 % 500);
        author[i] = media[i] / 5;
        topic[i] = media[i] % 17;
        action[i] = i % 4 == 0 ? 1 : 0;
        mtype[i] = i % 3;
        surface[i] = i % 5;
        dur[i] = 30000;
        dwell[i] = (float)(i * 997 % 40000);
    }
    dv365_timeline *tl;
    ASSERT_OK(dv365_timeline_create(cfg, &tl));
    ASSERT_OK(dv365_timeline_append(tl, n, time, media, author, topic, action, mtype, surface, dur,
                                    dwell));
    return tl;
}

static double eval_total(dv365_trainer *t, const dv365_timeline *const *tls, const int64_t *lt,
                         const uint64_t *items, const float *dense, const float *labels,
                         const float *extra)
{
    double loss;
    dv365_trainer_eval_reset(t);
    ASSERT_OK(dv365_trainer_eval_batch_ex(t, 2, tls, lt, items, dense, labels, extra, NULL, 1));
    ASSERT_OK(dv365_trainer_eval_loss(t, &loss, NULL));
    return loss; /* the mean per example of the batch's weighted loss = the batch loss */
}

static void test_extra_tokens(void **state)
{
    (void)state;
    const int64_t lt[2] = {1750000000, 1750000000 - 3600};
    const uint64_t items[6] = {1, 2, 3, 4, 5, 6};
    const float dense[16] = {0.5f, 1, 0, 0, 0, 0, 0, 0, 1, 0.5f, 0, 0, 0, 0, 0, 0};
    const float labels[12] = {1, 0, 0, 1, 0, 12.5f, 0, 1, 1, 0, 1, 2.0f};

    /* E = 0: step_ex without extra is bitwise the old step */
    dv365_model *m1 = model_with_extra(0), *m2 = model_with_extra(0);
    dv365_timeline *tl = small_timeline(dv365_model_config(m1));
    const dv365_timeline *tls[2] = {tl, tl};
    dv365_trainer *t1, *t2;
    ASSERT_OK(dv365_trainer_create(m1, &t1));
    ASSERT_OK(dv365_trainer_create(m2, &t2));
    for (int s = 0; s < 3; s++) {
        double l1, l2;
        ASSERT_OK(dv365_trainer_step(t1, 2, tls, lt, items, dense, labels, &l1, 1));
        ASSERT_OK(dv365_trainer_step_ex(t2, 2, tls, lt, items, dense, labels, NULL, NULL, &l2, 1));
        assert_true(l1 == l2);
    }
    assert_true(dv365_model_fingerprint(m1) == dv365_model_fingerprint(m2));
    dv365_trainer_free(t1);
    dv365_trainer_free(t2);
    dv365_model_free(m1);
    dv365_model_free(m2);
    dv365_timeline_free(tl);

    /* E = 3: the old functions refuse; d_extra matches finite differences */
    enum { E = 3, D = 32, n = 2 * E * D };
    dv365_model *m = model_with_extra(E);
    tl = small_timeline(dv365_model_config(m)); /* timelines belong to one config */
    tls[0] = tls[1] = tl;
    dv365_trainer *t;
    ASSERT_OK(dv365_trainer_create(m, &t));
    double loss;
    ASSERT_ERR(dv365_trainer_step(t, 2, tls, lt, items, dense, labels, &loss, 1), DV365_E_INVALID,
               "extra_tokens");
    ASSERT_ERR(dv365_trainer_eval_batch(t, 2, tls, lt, items, dense, labels, NULL, 1),
               DV365_E_INVALID, "extra_tokens");
    ASSERT_ERR(dv365_trainer_step_ex(t, 2, tls, lt, items, dense, labels, NULL, NULL, &loss, 1),
               DV365_E_INVALID, "extra_tokens");
    float extra[n], dir_v[n], d_extra[n], x[n];
    for (int i = 0; i < n; i++) {
        extra[i] = 0.5f * sinf(0.37f * (float)i);
        dir_v[i] = cosf(1.3f * (float)i);
    }
    float bad[n];
    memcpy(bad, extra, sizeof bad);
    bad[E * D + 5] = NAN;
    ASSERT_ERR(dv365_trainer_eval_batch_ex(t, 2, tls, lt, items, dense, labels, bad, NULL, 1),
               DV365_E_NONFINITE, NULL);

    /* the analytic directional derivative at the current parameters ... */
    double l0 = eval_total(t, tls, lt, items, dense, labels, extra);
    const double h = 1e-2;
    for (int i = 0; i < n; i++)
        x[i] = extra[i] + (float)h * dir_v[i];
    double lp = eval_total(t, tls, lt, items, dense, labels, x);
    for (int i = 0; i < n; i++)
        x[i] = extra[i] - (float)h * dir_v[i];
    double lm = eval_total(t, tls, lt, items, dense, labels, x);
    /* ... from the step, whose gradient is of the pre-update forward */
    memset(d_extra, 0xff, sizeof d_extra); /* overwritten, not accumulated */
    ASSERT_OK(dv365_trainer_step_ex(t, 2, tls, lt, items, dense, labels, extra, d_extra, &loss, 1));
    assert_true(fabs(loss - l0) <= 1e-5 * fabs(l0) + 1e-6);
    double an = 0, gn = 0;
    for (int i = 0; i < n; i++) {
        assert_true(isfinite(d_extra[i]));
        an += (double)d_extra[i] * dir_v[i];
        gn += (double)d_extra[i] * d_extra[i];
    }
    double fd = (lp - lm) / (2 * h);
    assert_true(gn > 0);
    assert_true(fabs(fd - an) <= 0.005 * fabs(an) + 1e-4);
    /* the extra tokens matter: a changed token changes the loss after the step too */
    double a1 = eval_total(t, tls, lt, items, dense, labels, extra);
    double a2 = eval_total(t, tls, lt, items, dense, labels, x);
    assert_true(a1 != a2);
    /* d_extra may be NULL */
    ASSERT_OK(dv365_trainer_step_ex(t, 2, tls, lt, items, dense, labels, extra, NULL, &loss, 1));
    dv365_trainer_free(t);
    dv365_model_free(m);
    dv365_timeline_free(tl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_training_learns),
        cmocka_unit_test(test_thread_count_invariance),
        cmocka_unit_test(test_resume_is_exact),
        cmocka_unit_test(test_gap_hides_last_day),
        cmocka_unit_test(test_extra_tokens),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
