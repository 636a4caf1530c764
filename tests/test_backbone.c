/* test_backbone.c — the DLRM backbone: forward against a plain double-precision
 * re-implementation, every gradient by finite differences (dense
 * parameters, item-table rows, dU), thread-count independence, weights
 * save/load, no allocation in steady state, bad inputs.
 *
 * tests/reference/backbone_ref.py checks it against a PyTorch module through
 * `test_backbone --ref IN OUT`. */
#include "testutil.h"

#include "backbone.h"
#include "config.h"
#include "internal.h"
#include "train_refio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A complete config around a backbone section: one pooling table, two
 * slices, an LCE-only encoder of k tokens (so K = k exactly). */
static dv365_config *make_cfg(size_t dim, size_t k, const char *backbone)
{
    char yaml[4096];
    snprintf(yaml, sizeof yaml,
             "dim: %zu\n"
             "vocab:\n"
             "  actions:\n"
             "    - {name: view, explicit: false}\n"
             "  media_types: [video]\n"
             "  surfaces: [feed]\n"
             "tables:\n"
             "  - {name: t, rows: 16}\n"
             "slices:\n"
             "  - name: s\n"
             "    pool: {media: t}\n"
             "    windows: [all, 7d]\n"
             "encoder: {blocks: 0, heads: 1, k_lce: %zu}\n"
             "backbone:\n%s",
             dim, k, backbone);
    dv365_config *cfg = NULL;
    ASSERT_OK(dv365_config_parse(yaml, strlen(yaml), &cfg));
    assert_int_equal(dv_config_num_tokens(cfg), k);
    return cfg;
}

/* D = 4, K = 3, dense 3 -> [5] -> 4, items media (7 rows) and topic (3),
 * F = 6, top 19 -> [6, 5] -> 2 tasks (binary, log1p regression). */
static const char TINY[] = "  dense_features: 3\n"
                           "  bottom: [5]\n"
                           "  top: [6, 5]\n"
                           "  item_tables: {media: 7, topic: 3}\n"
                           "  init_std: 0.5\n"
                           "  tasks:\n"
                           "    - {name: like, type: binary}\n"
                           "    - {name: watch, type: regression, weight: 0.5, log1p: true}\n";

/* No dense features, one item table, no top hidden layer, 3 tasks. */
static const char NODENSE[] = "  dense_features: 0\n"
                              "  bottom: [64]\n"
                              "  top: []\n"
                              "  item_tables: {author: 5}\n"
                              "  init_std: 0.5\n"
                              "  tasks:\n"
                              "    - {name: a, type: binary, weight: 2}\n"
                              "    - {name: b, type: binary}\n"
                              "    - {name: r, type: regression, weight: 0.25}\n";

/* Medium sizes for thread and allocation checks. */
static const char MEDIUM[] = "  dense_features: 8\n"
                             "  bottom: [64, 16]\n"
                             "  top: [128, 64]\n"
                             "  item_tables: {media: 1000, author: 500, topic: 50}\n"
                             "  tasks:\n"
                             "    - {name: like, type: binary}\n"
                             "    - {name: skip, type: binary}\n"
                             "    - {name: watch, type: regression, weight: 0.1, log1p: true}\n";

static void fill(dv_rng *r, float *x, size_t n, double scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(scale * dv_rng_normal(r));
}

/* One batch of inputs for bb. */
typedef struct batch {
    size_t B, n_dense, K, D, T;
    float *dense, *U, *labels;
    uint64_t *ids;
} batch;

static batch make_batch(const dv_backbone *bb, size_t B, uint64_t seed)
{
    batch x = {B, dv_backbone_num_dense(bb), dv_backbone_num_tokens(bb), dv_backbone_dim(bb),
               dv_backbone_num_tasks(bb), NULL, NULL, NULL, NULL};
    dv_rng r;
    dv_rng_seed(&r, seed);
    x.dense = malloc((B * x.n_dense + 1) * sizeof *x.dense);
    x.U = malloc(B * x.K * x.D * sizeof *x.U);
    x.labels = malloc(B * x.T * sizeof *x.labels);
    x.ids = malloc(B * 3 * sizeof *x.ids);
    fill(&r, x.dense, B * x.n_dense, 1.0);
    fill(&r, x.U, B * x.K * x.D, 0.5);
    for (size_t i = 0; i < B * 3; i++)
        x.ids[i] = dv_rng_next(&r);
    if (B > 2) /* examples 0 and 2 share every id: their rows must be merged */
        memcpy(x.ids + 2 * 3, x.ids, 3 * sizeof *x.ids);
    const dv_task *tasks = dv_backbone_tasks(bb);
    for (size_t b = 0; b < B; b++)
        for (size_t t = 0; t < x.T; t++)
            x.labels[b * x.T + t] = tasks[t].kind == DV_TASK_BINARY
                                        ? (float)(dv_rng_uniform(&r) < 0.5)
                                        : (float)(3.0 * dv_rng_uniform(&r));
    return x;
}

static void free_batch(batch *x)
{
    free(x->dense), free(x->U), free(x->labels), free(x->ids);
}

/* ------------------------------------------------ double-precision model -- */

/* Everything the plain re-implementation needs, as doubles. */
typedef struct ref_model {
    const dv_backbone *bb;
    double *P;        /* dense parameters, same layout as the block */
    double *item[3];  /* item tables */
    size_t rows[3], n_items, field[3];
    double *U;        /* [B,K,D] */
} ref_model;

static ref_model ref_make(dv_backbone *bb, const batch *x)
{
    ref_model m = {bb, NULL, {NULL}, {0}, dv_backbone_num_item_tables(bb), {0}, NULL};
    size_t n = dv_backbone_num_params(bb);
    const float *p = dv_backbone_params(bb);
    m.P = malloc(n * sizeof *m.P);
    for (size_t i = 0; i < n; i++)
        m.P[i] = p[i];
    for (size_t i = 0; i < m.n_items; i++) {
        float *data;
        int field;
        ASSERT_OK(dv_backbone_item_table(bb, i, &data, &m.rows[i], &field, NULL));
        m.field[i] = (size_t)field;
        m.item[i] = malloc(m.rows[i] * x->D * sizeof(double));
        for (size_t j = 0; j < m.rows[i] * x->D; j++)
            m.item[i][j] = data[j];
    }
    m.U = malloc(x->B * x->K * x->D * sizeof *m.U);
    for (size_t j = 0; j < x->B * x->K * x->D; j++)
        m.U[j] = x->U[j];
    return m;
}

static void ref_free(ref_model *m)
{
    free(m->P), free(m->U);
    for (size_t i = 0; i < m->n_items; i++)
        free(m->item[i]);
}

/* y[out] = W x + b, then ReLU unless last. */
static void ref_linear(double *y, const double *x, const double *W, const double *bias,
                       size_t in, size_t out, bool relu)
{
    for (size_t o = 0; o < out; o++) {
        double s = bias[o];
        for (size_t i = 0; i < in; i++)
            s += W[o * in + i] * x[i];
        y[o] = relu && s < 0 ? 0 : s;
    }
}

/* The whole network and loss with plain loops, from the tensor table. */
static double ref_loss(const ref_model *m, const batch *x, double *logits)
{
    size_t nt, D = x->D, K = x->K, T = x->T;
    const dv_bb_tensor *tab = dv_backbone_tensors(m->bb, &nt);
    const dv_task *tasks = dv_backbone_tasks(m->bb);
    size_t F = (x->n_dense ? 1 : 0) + m->n_items + K;
    double *Z = malloc(F * D * sizeof *Z), *h0 = malloc(4096 * sizeof *h0),
           *h1 = malloc(4096 * sizeof *h1);
    double total = 0, *per = calloc(T, sizeof *per);
    for (size_t b = 0; b < x->B; b++) {
        size_t r = 0, li = 0;
        if (x->n_dense) {
            for (size_t j = 0; j < x->n_dense; j++)
                h0[j] = x->dense[b * x->n_dense + j];
            for (; li < nt && strstr(tab[li].name, ".bottom."); li += 2) {
                ref_linear(h1, h0, m->P + tab[li].offset, m->P + tab[li + 1].offset,
                           tab[li].shape[1], tab[li].shape[0], true);
                memcpy(h0, h1, tab[li].shape[0] * sizeof *h0);
            }
            memcpy(Z, h0, D * sizeof *Z);
            r = 1;
        }
        for (size_t i = 0; i < m->n_items; i++, r++) {
            size_t row = dv365_hash_row(x->ids[b * 3 + m->field[i]], m->rows[i]);
            memcpy(Z + r * D, m->item[i] + row * D, D * sizeof *Z);
        }
        memcpy(Z + r * D, m->U + b * K * D, K * D * sizeof *Z);
        size_t k = 0;
        for (size_t d = 0; d < D; d++)
            h0[k++] = Z[d];
        for (size_t i = 1; i < F; i++)
            for (size_t j = 0; j < i; j++) {
                double s = 0;
                for (size_t d = 0; d < D; d++)
                    s += Z[i * D + d] * Z[j * D + d];
                h0[k++] = s;
            }
        for (; li < nt; li += 2) {
            bool last = li + 2 == nt;
            ref_linear(h1, h0, m->P + tab[li].offset, m->P + tab[li + 1].offset,
                       tab[li].shape[1], tab[li].shape[0], !last);
            memcpy(h0, h1, tab[li].shape[0] * sizeof *h0);
        }
        for (size_t t = 0; t < T; t++) {
            double z = h0[t], y = x->labels[b * T + t];
            if (logits)
                logits[b * T + t] = z;
            if (tasks[t].kind == DV_TASK_BINARY)
                per[t] += fmax(z, 0) - z * y + log1p(exp(-fabs(z)));
            else {
                double yt = tasks[t].log1p_target ? log1p(y) : y;
                per[t] += (z - yt) * (z - yt);
            }
        }
    }
    for (size_t t = 0; t < T; t++)
        total += tasks[t].weight * per[t] / (double)x->B;
    free(Z), free(h0), free(h1), free(per);
    return total;
}

/* ------------------------------------------------------------ helpers -- */

/* Forward + loss + backward with fresh buffers; grads start at `g0` to
 * check accumulation. */
typedef struct result {
    float *logits, *acts, *dlogits, *grads, *dU;
    double loss;
    dv365_pool_grad *ig;
} result;

static result run(dv_backbone *bb, const batch *x, int nthreads, float g0)
{
    result r;
    size_t np = dv_backbone_num_params(bb), B = x->B;
    r.logits = malloc(B * x->T * sizeof(float));
    r.dlogits = malloc(B * x->T * sizeof(float));
    r.acts = malloc(dv_backbone_acts_floats(bb, B) * sizeof(float));
    r.grads = malloc(np * sizeof(float));
    r.dU = malloc(B * x->K * x->D * sizeof(float));
    for (size_t i = 0; i < np; i++)
        r.grads[i] = g0;
    for (size_t i = 0; i < B * x->K * x->D; i++)
        r.dU[i] = g0;
    ASSERT_OK(dv_backbone_item_grad_create(bb, &r.ig));
    dv365_workspace *ws;
    ASSERT_OK(dv365_workspace_create(&ws));
    ASSERT_OK(dv_backbone_forward(bb, B, x->dense, x->n_dense, x->ids, x->U, x->K, r.logits,
                                  r.acts, nthreads));
    ASSERT_OK(dv_backbone_loss(bb, B, r.logits, x->labels, &r.loss, NULL, r.dlogits));
    ASSERT_OK(dv_backbone_backward(bb, ws, B, x->dense, x->ids, r.acts, r.dlogits, r.grads, r.ig,
                                   r.dU, nthreads));
    dv365_workspace_free(ws);
    return r;
}

static void free_result(result *r)
{
    free(r->logits), free(r->acts), free(r->dlogits), free(r->grads), free(r->dU);
    dv365_pool_grad_free(r->ig);
}

/* Central difference of the double loss with respect to *p. */
static double fd(const ref_model *m, const batch *x, double *p)
{
    const double h = 1e-6;
    double keep = *p;
    *p = keep + h;
    double lp = ref_loss(m, x, NULL);
    *p = keep - h;
    double lm = ref_loss(m, x, NULL);
    *p = keep;
    return (lp - lm) / (2 * h);
}

static void expect_close(const char *what, size_t i, double got, double want, double scale)
{
    if (!(fabs(got - want) <= 2e-4 * (fabs(want) + scale) + 1e-7))
        fail_msg("%s[%zu]: backward %.9g, finite difference %.9g", what, i, got, want);
}

/* Check every gradient of bb on batch x against finite differences. */
static void check_gradients(dv_backbone *bb, const batch *x)
{
    result r = run(bb, x, 1, 1.0f); /* gradients accumulate onto 1 */
    ref_model m = ref_make(bb, x);
    double *logits = malloc(x->B * x->T * sizeof *logits);
    double loss = ref_loss(&m, x, logits);
    for (size_t i = 0; i < x->B * x->T; i++)
        if (fabs(r.logits[i] - logits[i]) > 1e-5 * fmax(1.0, fabs(logits[i])))
            fail_msg("logit %zu: %.9g, double reference %.9g", i, (double)r.logits[i],
                     logits[i]);
    assert_true(fabs(r.loss - loss) <= 1e-5 * fmax(1.0, loss));

    /* dense parameters, tensor by tensor */
    size_t nt;
    const dv_bb_tensor *tab = dv_backbone_tensors(bb, &nt);
    for (size_t t = 0; t < nt; t++) {
        double scale = 0, *want = malloc(tab[t].numel * sizeof *want);
        for (size_t j = 0; j < tab[t].numel; j++) {
            want[j] = fd(&m, x, &m.P[tab[t].offset + j]);
            scale = fmax(scale, fabs(want[j]));
        }
        assert_true(scale > 0); /* every tensor receives some gradient */
        for (size_t j = 0; j < tab[t].numel; j++)
            expect_close(tab[t].name, j, r.grads[tab[t].offset + j] - 1.0, want[j], scale);
        free(want);
    }
    /* item tables: used rows match, distinct and ascending; unused rows have
     * no gradient at all */
    for (size_t i = 0; i < m.n_items; i++) {
        size_t n;
        const size_t *rows;
        const float *g;
        ASSERT_OK(dv365_pool_grad_table(r.ig, i, &n, &rows, &g));
        assert_true(n >= 1 && n <= x->B);
        if (x->B > 2)
            assert_true(n < x->B); /* examples 0 and 2 share their row */
        for (size_t k = 1; k < n; k++)
            assert_true(rows[k - 1] < rows[k]);
        for (size_t row = 0, k = 0; row < m.rows[i]; row++) {
            bool used = k < n && rows[k] == row;
            double scale = 0, want[64];
            for (size_t d = 0; d < x->D; d++) {
                want[d] = fd(&m, x, &m.item[i][row * x->D + d]);
                scale = fmax(scale, fabs(want[d]));
            }
            for (size_t d = 0; d < x->D; d++)
                expect_close("item row", row * x->D + d, used ? g[k * x->D + d] : 0.0, want[d],
                             scale);
            if (used) {
                assert_true(scale > 0);
                k++;
            }
        }
    }
    /* dU */
    double scale = 0, *want = malloc(x->B * x->K * x->D * sizeof *want);
    for (size_t j = 0; j < x->B * x->K * x->D; j++) {
        want[j] = fd(&m, x, &m.U[j]);
        scale = fmax(scale, fabs(want[j]));
    }
    for (size_t j = 0; j < x->B * x->K * x->D; j++)
        expect_close("dU", j, r.dU[j] - 1.0, want[j], scale);
    free(want), free(logits);
    ref_free(&m);
    free_result(&r);
}

/* -------------------------------------------------------------- tests -- */

static void test_table_and_init(void **state)
{
    (void)state;
    dv365_config *cfg = make_cfg(4, 3, TINY);
    dv_backbone *bb, *same, *other;
    ASSERT_OK(dv_backbone_create(cfg, 7, &bb));
    ASSERT_OK(dv_backbone_create(cfg, 7, &same));
    ASSERT_OK(dv_backbone_create(cfg, 8, &other));
    dv365_config_free(cfg); /* the backbone keeps its own copy of what it needs */

    size_t nt;
    const dv_bb_tensor *t = dv_backbone_tensors(bb, &nt);
    const char *names[] = {"backbone.bottom.0.weight", "backbone.bottom.0.bias",
                           "backbone.bottom.1.weight", "backbone.bottom.1.bias",
                           "backbone.top.0.weight",    "backbone.top.0.bias",
                           "backbone.top.1.weight",    "backbone.top.1.bias",
                           "backbone.top.2.weight",    "backbone.top.2.bias"};
    /* F = 1 + 2 + 3 = 6: top input 4 + 15 = 19 */
    const size_t shapes[][2] = {{5, 3}, {5, 0}, {4, 5},  {4, 0}, {6, 19},
                                {6, 0}, {5, 6}, {5, 0}, {2, 5}, {2, 0}};
    assert_int_equal(nt, 10);
    size_t off = 0;
    for (size_t i = 0; i < nt; i++) {
        assert_string_equal(t[i].name, names[i]);
        assert_int_equal(t[i].shape[0], shapes[i][0]);
        assert_int_equal(t[i].ndim, shapes[i][1] ? 2 : 1);
        if (shapes[i][1])
            assert_int_equal(t[i].shape[1], shapes[i][1]);
        assert_int_equal(t[i].offset, off);
        off += t[i].numel;
    }
    assert_int_equal(dv_backbone_num_params(bb), off);
    assert_int_equal(dv_backbone_num_features(bb), 6);

    /* weights within ±1/sqrt(fan_in) and not all equal; biases 0 */
    const float *p = dv_backbone_params(bb);
    for (size_t i = 0; i < nt; i++) {
        double bound = t[i].ndim == 2 ? 1.0 / sqrt((double)t[i].shape[1]) : 0.0;
        for (size_t j = 0; j < t[i].numel; j++)
            assert_true(fabs(p[t[i].offset + j]) <= bound);
        if (t[i].ndim == 2)
            assert_true(p[t[i].offset] != p[t[i].offset + 1]);
    }
    assert_memory_equal(p, dv_backbone_params(same), off * sizeof *p);
    assert_memory_not_equal(p, dv_backbone_params(other), off * sizeof *p);

    /* item tables in field order, named, seeded */
    assert_int_equal(dv_backbone_num_item_tables(bb), 2);
    float *d0, *d1, *e0;
    size_t rows;
    int field;
    const char *name;
    ASSERT_OK(dv_backbone_item_table(bb, 0, &d0, &rows, &field, &name));
    assert_int_equal(rows, 7);
    assert_int_equal(field, DV_FIELD_MEDIA);
    assert_string_equal(name, "tables.item_media");
    ASSERT_OK(dv_backbone_item_table(bb, 1, &d1, &rows, &field, &name));
    assert_int_equal(rows, 3);
    assert_int_equal(field, DV_FIELD_TOPIC);
    assert_string_equal(name, "tables.item_topic");
    ASSERT_OK(dv_backbone_item_table(same, 0, &e0, NULL, NULL, NULL));
    assert_memory_equal(d0, e0, 7 * 4 * sizeof *d0);
    ASSERT_ERR(dv_backbone_item_table(bb, 2, &d0, NULL, NULL, NULL), DV365_E_INVALID,
               "out of range");
    dv_backbone_free(bb);
    dv_backbone_free(same);
    dv_backbone_free(other);

    /* a big table's values have the configured spread */
    cfg = make_cfg(16, 2, MEDIUM);
    ASSERT_OK(dv_backbone_create(cfg, 1, &bb));
    ASSERT_OK(dv_backbone_item_table(bb, 0, &d0, &rows, NULL, NULL));
    double ss = 0;
    for (size_t j = 0; j < rows * 16; j++)
        ss += (double)d0[j] * d0[j];
    double std = sqrt(ss / (double)(rows * 16));
    assert_true(fabs(std - cfg->backbone.init_std) < 0.03 * cfg->backbone.init_std);
    dv_backbone_free(bb);
    dv365_config_free(cfg);
}

static void test_gradients_tiny(void **state)
{
    (void)state;
    dv365_config *cfg = make_cfg(4, 3, TINY);
    dv_backbone *bb;
    ASSERT_OK(dv_backbone_create(cfg, 3, &bb));
    batch x = make_batch(bb, 4, 11);
    check_gradients(bb, &x);
    free_batch(&x);
    dv_backbone_free(bb);
    dv365_config_free(cfg);
}

static void test_gradients_no_dense(void **state)
{
    (void)state;
    dv365_config *cfg = make_cfg(3, 2, NODENSE);
    dv_backbone *bb;
    ASSERT_OK(dv_backbone_create(cfg, 5, &bb));
    /* no bottom MLP: Z = [e_author ; U], F = 3, top = one Linear 3+3 -> 3 */
    size_t nt;
    const dv_bb_tensor *t = dv_backbone_tensors(bb, &nt);
    assert_int_equal(nt, 2);
    assert_string_equal(t[0].name, "backbone.top.0.weight");
    assert_int_equal(t[0].shape[0], 3);
    assert_int_equal(t[0].shape[1], 3 + 3);
    assert_int_equal(dv_backbone_num_features(bb), 3);
    batch x = make_batch(bb, 5, 12);
    float *logits = malloc(5 * 3 * sizeof *logits);
    float *acts = malloc(dv_backbone_acts_floats(bb, 5) * sizeof *acts);
    /* dense may be NULL without dense features */
    ASSERT_OK(dv_backbone_forward(bb, 5, NULL, 0, x.ids, x.U, 2, logits, acts, 1));
    free(logits), free(acts);
    check_gradients(bb, &x);
    free_batch(&x);
    dv_backbone_free(bb);
    dv365_config_free(cfg);
}

static void test_threads_bitwise(void **state)
{
    (void)state;
    dv365_config *cfg = make_cfg(32, 16, MEDIUM);
    dv_backbone *bb;
    ASSERT_OK(dv_backbone_create(cfg, 2, &bb));
    batch x = make_batch(bb, 16, 4);
    for (int nth = 2; nth <= 3; nth++) { /* 1 vs 2 and 3 threads */
        result a = run(bb, &x, 1, 0.0f), b = run(bb, &x, nth, 0.0f);
        assert_memory_equal(a.logits, b.logits, 16 * x.T * sizeof(float));
        assert_memory_equal(a.grads, b.grads, dv_backbone_num_params(bb) * sizeof(float));
        assert_memory_equal(a.dU, b.dU, 16 * x.K * x.D * sizeof(float));
        assert_true(a.loss == b.loss);
        for (size_t i = 0; i < 3; i++) {
            size_t na, nb;
            const size_t *ra, *rb;
            const float *ga, *gb;
            ASSERT_OK(dv365_pool_grad_table(a.ig, i, &na, &ra, &ga));
            ASSERT_OK(dv365_pool_grad_table(b.ig, i, &nb, &rb, &gb));
            assert_int_equal(na, nb);
            assert_memory_equal(ra, rb, na * sizeof *ra);
            assert_memory_equal(ga, gb, na * x.D * sizeof *ga);
        }
        free_result(&a);
        free_result(&b);
    }
    free_batch(&x);
    dv_backbone_free(bb);
    dv365_config_free(cfg);
}

/* Counting allocator: the steady state must not allocate. */
static size_t n_allocs;
static void *count_alloc(void *opaque, size_t size)
{
    (void)opaque;
    n_allocs++;
    return malloc(size);
}
static void count_free(void *opaque, void *p)
{
    (void)opaque;
    free(p);
}

static void test_no_allocation_in_steady_state(void **state)
{
    (void)state;
    dv365_config *cfg = make_cfg(32, 16, MEDIUM);
    dv_backbone *bb;
    ASSERT_OK(dv_backbone_create(cfg, 2, &bb));
    batch x = make_batch(bb, 16, 4);
    size_t np = dv_backbone_num_params(bb);
    float *logits = malloc(16 * x.T * sizeof *logits), *dl = malloc(16 * x.T * sizeof *dl);
    float *acts = malloc(dv_backbone_acts_floats(bb, 16) * sizeof *acts);
    float *grads = calloc(np, sizeof *grads), *dU = calloc(16 * x.K * x.D, sizeof *dU);
    dv365_pool_grad *ig;
    dv365_workspace *ws;
    ASSERT_OK(dv365_set_allocator(count_alloc, count_free, NULL));
    ASSERT_OK(dv_backbone_item_grad_create(bb, &ig));
    ASSERT_OK(dv365_workspace_create(&ws));
    for (int step = 0; step < 3; step++) {
        if (step == 2)
            n_allocs = 0;
        double loss;
        ASSERT_OK(dv_backbone_forward(bb, 16, x.dense, x.n_dense, x.ids, x.U, x.K, logits, acts,
                                      2));
        ASSERT_OK(dv_backbone_loss(bb, 16, logits, x.labels, &loss, NULL, dl));
        ASSERT_OK(dv_backbone_backward(bb, ws, 16, x.dense, x.ids, acts, dl, grads, ig, dU, 2));
    }
    assert_int_equal(n_allocs, 0);
    /* a smaller batch reuses the buffers too */
    ASSERT_OK(dv_backbone_forward(bb, 8, x.dense, x.n_dense, x.ids, x.U, x.K, logits, acts, 1));
    ASSERT_OK(dv_backbone_backward(bb, ws, 8, x.dense, x.ids, acts, dl, grads, ig, dU, 1));
    assert_int_equal(n_allocs, 0);
    dv365_workspace_free(ws);
    dv365_pool_grad_free(ig);
    ASSERT_OK(dv365_set_allocator(NULL, NULL, NULL));
    free(logits), free(dl), free(acts), free(grads), free(dU);
    free_batch(&x);
    dv_backbone_free(bb);
    dv365_config_free(cfg);
}

static void test_bad_inputs(void **state)
{
    (void)state;
    dv365_config *cfg = make_cfg(4, 3, TINY);
    dv_backbone *bb;
    ASSERT_OK(dv_backbone_create(cfg, 3, &bb));
    batch x = make_batch(bb, 4, 11);
    float logits[8], dl[8] = {0};
    float *acts = malloc(dv_backbone_acts_floats(bb, 4) * sizeof *acts);
    float *grads = calloc(dv_backbone_num_params(bb), sizeof *grads);
    dv365_pool_grad *ig;
    ASSERT_OK(dv_backbone_item_grad_create(bb, &ig));
    dv365_workspace *ws;
    ASSERT_OK(dv365_workspace_create(&ws));

    x.dense[1 * 3 + 2] = NAN;
    ASSERT_ERR(dv_backbone_forward(bb, 4, x.dense, 3, x.ids, x.U, 3, logits, acts, 1),
               DV365_E_NONFINITE, "dense feature 2 of example 1 is NaN");
    x.dense[1 * 3 + 2] = 0.5f;
    x.U[3 * 12 + 5] = INFINITY;
    ASSERT_ERR(dv_backbone_forward(bb, 4, x.dense, 3, x.ids, x.U, 3, logits, acts, 1),
               DV365_E_NONFINITE, "user token 1, column 1 of example 3");
    x.U[3 * 12 + 5] = 0.5f;
    ASSERT_ERR(dv_backbone_forward(bb, 4, x.dense, 2, x.ids, x.U, 3, logits, acts, 1),
               DV365_E_MISMATCH, "2 dense features");
    ASSERT_ERR(dv_backbone_forward(bb, 4, x.dense, 3, x.ids, x.U, 58, logits, acts, 1),
               DV365_E_MISMATCH, "58 user tokens");
    ASSERT_ERR(dv_backbone_forward(bb, 0, x.dense, 3, x.ids, x.U, 3, logits, acts, 1),
               DV365_E_INVALID, "batch must be > 0");
    ASSERT_ERR(dv_backbone_forward(bb, SIZE_MAX / 2, x.dense, 3, x.ids, x.U, 3, logits, acts, 1),
               DV365_E_INVALID, "too large");
    ASSERT_ERR(dv_backbone_forward(bb, 4, x.dense, 3, x.ids, x.U, 3, logits, acts, 0),
               DV365_E_INVALID, "nthreads");
    ASSERT_ERR(dv_backbone_forward(bb, 4, NULL, 3, x.ids, x.U, 3, logits, acts, 1), DV365_E_NULL,
               "dense");
    ASSERT_ERR(dv_backbone_forward(bb, 4, x.dense, 3, NULL, x.U, 3, logits, acts, 1),
               DV365_E_NULL, "item_ids");
    ASSERT_ERR(dv_backbone_forward(bb, 4, x.dense, 3, x.ids, NULL, 3, logits, acts, 1),
               DV365_E_NULL, "U");
    ASSERT_ERR(dv_backbone_forward(bb, 4, x.dense, 3, x.ids, x.U, 3, logits, NULL, 1),
               DV365_E_NULL, "acts");

    /* still usable after the errors */
    ASSERT_OK(dv_backbone_forward(bb, 4, x.dense, 3, x.ids, x.U, 3, logits, acts, 1));
    ASSERT_ERR(dv_backbone_backward(bb, ws, 4, x.dense, x.ids, acts, dl, NULL, ig, NULL, 1),
               DV365_E_NULL, "grads");
    ASSERT_ERR(dv_backbone_backward(bb, ws, 4, x.dense, x.ids, acts, dl, grads, NULL, NULL, 1),
               DV365_E_NULL, "item_grad");
    /* an item gradient of another shape */
    dv365_config *cfg2 = make_cfg(3, 2, NODENSE);
    dv_backbone *bb2;
    dv365_pool_grad *ig2;
    ASSERT_OK(dv_backbone_create(cfg2, 1, &bb2));
    ASSERT_OK(dv_backbone_item_grad_create(bb2, &ig2));
    ASSERT_ERR(dv_backbone_backward(bb, ws, 4, x.dense, x.ids, acts, dl, grads, ig2, NULL, 1),
               DV365_E_MISMATCH, "item_grad was made for 1 tables of dim 3");
    dv365_pool_grad_free(ig2);
    dv_backbone_free(bb2);
    dv365_config_free(cfg2);
    ASSERT_OK(dv_backbone_backward(bb, ws, 4, x.dense, x.ids, acts, dl, grads, ig, NULL, 1));

    /* loss: labels outside [0,1] for a binary task */
    double loss;
    x.labels[2 * 2] = 2.0f;
    ASSERT_ERR(dv_backbone_loss(bb, 4, logits, x.labels, &loss, NULL, dl), DV365_E_INVALID,
               "label [2, task 0]");
    ASSERT_ERR(dv_backbone_loss(bb, 0, logits, x.labels, &loss, NULL, dl), DV365_E_INVALID,
               "batch");

    /* config errors */
    cfg->backbone.init_std = NAN;
    ASSERT_ERR(dv_backbone_create(cfg, 1, &bb2), DV365_E_CONFIG, "init_std");
    cfg->backbone.init_std = 0.1f;
    cfg->backbone.tasks[0].weight = -1;
    ASSERT_ERR(dv_backbone_create(cfg, 1, &bb2), DV365_E_CONFIG, "backbone");
    cfg->backbone.tasks[0].weight = 1;
    size_t n_tasks = cfg->backbone.n_tasks;
    cfg->backbone.n_tasks = 0;
    ASSERT_ERR(dv_backbone_create(cfg, 1, &bb2), DV365_E_CONFIG, "tasks");
    cfg->backbone.n_tasks = n_tasks;
    cfg->backbone.n_dense = SIZE_MAX / 2;
    ASSERT_ERR(dv_backbone_create(cfg, 1, &bb2), DV365_E_CONFIG, "dense_features");
    cfg->backbone.n_dense = 3;
    ASSERT_ERR(dv_backbone_create(NULL, 1, &bb2), DV365_E_NULL, "cfg");
    ASSERT_ERR(dv_backbone_create(cfg, 1, NULL), DV365_E_NULL, "out");

    dv365_workspace_free(ws);
    dv365_pool_grad_free(ig);
    free(acts), free(grads);
    free_batch(&x);
    dv_backbone_free(bb);
    dv365_config_free(cfg);
}

/* A temporary file name in the build directory. */
static const char *tmp_path(const char *tag)
{
    static char buf[256];
    snprintf(buf, sizeof buf, "test_backbone_%d_%s.safetensors", (int)getpid(), tag);
    return buf;
}

static void save(const dv_backbone *bb, const char *path)
{
    dv_st_writer *w;
    ASSERT_OK(dv_st_writer_create(&w));
    ASSERT_OK(dv_backbone_add_tensors(bb, w));
    ASSERT_OK(dv_st_writer_write(w, path));
    dv_st_writer_free(w);
}

static void test_save_load(void **state)
{
    (void)state;
    dv365_config *cfg = make_cfg(4, 3, TINY);
    dv_backbone *a, *b;
    ASSERT_OK(dv_backbone_create(cfg, 1, &a));
    ASSERT_OK(dv_backbone_create(cfg, 2, &b));
    char path[256];
    snprintf(path, sizeof path, "%s", tmp_path("ok"));
    save(a, path);
    dv_st_file *f;
    ASSERT_OK(dv_st_read_file(path, &f));
    assert_int_equal(dv_st_count(f), 10 + 2);
    assert_non_null(dv_st_find(f, "tables.item_media"));
    ASSERT_OK(dv_backbone_load_tensors(b, f));
    dv_st_free(f);
    unlink(path);
    size_t np = dv_backbone_num_params(a);
    assert_memory_equal(dv_backbone_params(a), dv_backbone_params(b), np * sizeof(float));
    for (size_t i = 0; i < 2; i++) {
        float *ta, *tb;
        size_t rows;
        ASSERT_OK(dv_backbone_item_table(a, i, &ta, &rows, NULL, NULL));
        ASSERT_OK(dv_backbone_item_table(b, i, &tb, NULL, NULL, NULL));
        assert_memory_equal(ta, tb, rows * 4 * sizeof(float));
    }
    /* and they compute the same */
    batch x = make_batch(a, 3, 9);
    result ra = run(a, &x, 1, 0.0f), rb = run(b, &x, 1, 0.0f);
    assert_memory_equal(ra.logits, rb.logits, 3 * x.T * sizeof(float));
    free_result(&ra), free_result(&rb), free_batch(&x);

    /* bad files leave the backbone untouched */
    float *before = malloc(np * sizeof *before);
    memcpy(before, dv_backbone_params(b), np * sizeof *before);
    dv_backbone *c;
    ASSERT_OK(dv_backbone_create(cfg, 3, &c));
    float *item0;
    ASSERT_OK(dv_backbone_item_table(c, 0, &item0, NULL, NULL, NULL));

    /* a missing item table: the dense tensors come first in the file */
    dv_st_writer *w;
    ASSERT_OK(dv_st_writer_create(&w));
    size_t nt;
    const dv_bb_tensor *t = dv_backbone_tensors(c, &nt);
    for (size_t i = 0; i < nt; i++)
        ASSERT_OK(dv_st_writer_add(w, t[i].name, DV_DTYPE_F32, t[i].ndim, t[i].shape,
                                   dv_backbone_params(c) + t[i].offset));
    ASSERT_OK(dv_st_writer_write(w, path));
    dv_st_writer_free(w);
    ASSERT_OK(dv_st_read_file(path, &f));
    ASSERT_ERR(dv_backbone_load_tensors(b, f), DV365_E_NOT_FOUND, "tables.item_media");
    dv_st_free(f);
    assert_memory_equal(before, dv_backbone_params(b), np * sizeof *before);

    /* a non-finite value in the last tensor */
    item0[5] = NAN;
    save(c, path);
    ASSERT_OK(dv_st_read_file(path, &f));
    ASSERT_ERR(dv_backbone_load_tensors(b, f), DV365_E_NONFINITE, "tables.item_media[5]");
    dv_st_free(f);
    assert_memory_equal(before, dv_backbone_params(b), np * sizeof *before);
    item0[5] = 0;

    /* other widths: a shape mismatch naming the tensor */
    dv365_config *cfg2 = make_cfg(4, 3, "  dense_features: 3\n"
                                        "  bottom: [6]\n"
                                        "  top: [6, 5]\n"
                                        "  item_tables: {media: 7, topic: 3}\n"
                                        "  tasks:\n"
                                        "    - {name: like, type: binary}\n"
                                        "    - {name: watch, type: regression}\n");
    dv_backbone *d;
    ASSERT_OK(dv_backbone_create(cfg2, 1, &d));
    save(d, path);
    ASSERT_OK(dv_st_read_file(path, &f));
    ASSERT_ERR(dv_backbone_load_tensors(b, f), DV365_E_MISMATCH,
               "'backbone.bottom.0.weight' has shape [6,3], expected [5,3]");
    dv_st_free(f);
    assert_memory_equal(before, dv_backbone_params(b), np * sizeof *before);

    /* a wrong dtype */
    ASSERT_OK(dv_st_writer_create(&w));
    uint16_t half[5] = {0};
    size_t shp[1] = {5};
    ASSERT_OK(dv_st_writer_add(w, "backbone.bottom.0.bias", DV_DTYPE_F16, 1, shp, half));
    ASSERT_OK(dv_st_writer_write(w, path));
    dv_st_writer_free(w);
    ASSERT_OK(dv_st_read_file(path, &f));
    /* the weight is missing before the bias is looked at */
    ASSERT_ERR(dv_backbone_load_tensors(b, f), DV365_E_NOT_FOUND, "backbone.bottom.0.weight");
    dv_st_free(f);
    ASSERT_OK(dv_st_writer_create(&w));
    ASSERT_OK(dv_st_writer_add(w, t[0].name, DV_DTYPE_F32, 2, t[0].shape, dv_backbone_params(c)));
    ASSERT_OK(dv_st_writer_add(w, "backbone.bottom.0.bias", DV_DTYPE_F16, 1, shp, half));
    ASSERT_OK(dv_st_writer_write(w, path));
    dv_st_writer_free(w);
    ASSERT_OK(dv_st_read_file(path, &f));
    ASSERT_ERR(dv_backbone_load_tensors(b, f), DV365_E_FORMAT, "F16");
    dv_st_free(f);
    assert_memory_equal(before, dv_backbone_params(b), np * sizeof *before);
    unlink(path);

    free(before);
    dv_backbone_free(a), dv_backbone_free(b), dv_backbone_free(c), dv_backbone_free(d);
    dv365_config_free(cfg), dv365_config_free(cfg2);
}

/* --- reference mode -------------------------------------------------------------- */

/* IN: metadata "config" (YAML), "seed", "nthreads"; tensors dense [B,n_dense]
 * (absent when n_dense = 0), ids [B,3] U64, U [B,K,D], labels [B,T].
 * OUT: the weights (backbone.*, tables.item_*), logits, loss [1] F64,
 * task_loss [T] F64, grad.<tensor> per dense tensor, grad.<item table>.rows
 * U64 [n] and grad.<item table> [n,D], dU; the same computed with nthreads
 * threads under "t2." (logits, grads (flat), dU, item rows/grads) to be
 * compared bitwise. */
static int run_ref(const char *in_path, const char *out_path)
{
    dv_st_file *in = ref_open(in_path);
    const char *yaml = dv_st_metadata(in, "config"), *seed = dv_st_metadata(in, "seed");
    const char *nth = dv_st_metadata(in, "nthreads");
    if (!yaml || !seed || !nth)
        ref_die("missing metadata", "config/seed/nthreads");
    dv365_config *cfg;
    dv_backbone *bb;
    if (dv365_config_parse(yaml, strlen(yaml), &cfg) != DV365_OK)
        ref_die("bad config", in_path);
    if (dv_backbone_create(cfg, strtoull(seed, NULL, 10), &bb) != DV365_OK)
        ref_die("cannot create backbone", in_path);
    size_t nd, shape[DV_ST_MAX_DIMS], n;
    free(ref_read(in, "U", NULL, &nd, shape));
    size_t B = shape[0], K = shape[1], D = shape[2], T = dv_backbone_num_tasks(bb);
    size_t nd_dense = dv_backbone_num_dense(bb), np = dv_backbone_num_params(bb);
    float *dense = nd_dense ? ref_read_f32(in, "dense", NULL) : NULL;
    float *U = ref_read_f32(in, "U", NULL), *labels = ref_read_f32(in, "labels", NULL);
    const dv_tensor_view *iv = dv_st_find(in, "ids");
    if (iv == NULL || iv->dtype != DV_DTYPE_U64 || iv->nbytes != B * 3 * 8)
        ref_die("bad tensor", "ids");
    uint64_t *ids = malloc(B * 3 * sizeof *ids);
    memcpy(ids, iv->data, B * 3 * sizeof *ids);

    ref_out out;
    ref_out_init(&out);
    if (dv_backbone_add_tensors(bb, out.w) != DV365_OK)
        ref_die("cannot add weights", out_path);
    int threads[2] = {1, atoi(nth)};
    for (int pass = 0; pass < 2; pass++) {
        const char *pre = pass ? "t2." : "";
        char key[160];
        float *logits = malloc(B * T * sizeof *logits), *dl = malloc(B * T * sizeof *dl);
        float *acts = malloc(dv_backbone_acts_floats(bb, B) * sizeof *acts);
        float *grads = calloc(np, sizeof *grads), *dU = calloc(B * K * D, sizeof *dU);
        double *loss = malloc(sizeof *loss), *task_loss = malloc(T * sizeof *task_loss);
        dv365_pool_grad *ig;
        dv365_workspace *ws;
        if (dv_backbone_item_grad_create(bb, &ig) != DV365_OK ||
            dv365_workspace_create(&ws) != DV365_OK ||
            dv_backbone_forward(bb, B, dense, nd_dense, ids, U, K, logits, acts, threads[pass]) ||
            dv_backbone_loss(bb, B, logits, labels, loss, task_loss, dl) ||
            dv_backbone_backward(bb, ws, B, dense, ids, acts, dl, grads, ig, dU, threads[pass]))
            ref_die("backbone", in_path);
        size_t sl[2] = {B, T}, su[3] = {B, K, D}, s1[1] = {1}, sT[1] = {T}, sp[1] = {np};
        snprintf(key, sizeof key, "%slogits", pre);
        ref_out_add(&out, key, DV_DTYPE_F32, 2, sl, logits);
        snprintf(key, sizeof key, "%sdU", pre);
        ref_out_add(&out, key, DV_DTYPE_F32, 3, su, dU);
        if (pass == 0) {
            ref_out_add(&out, "loss", DV_DTYPE_F64, 1, s1, loss);
            ref_out_add(&out, "task_loss", DV_DTYPE_F64, 1, sT, task_loss);
            size_t nt;
            const dv_bb_tensor *t = dv_backbone_tensors(bb, &nt);
            for (size_t i = 0; i < nt; i++) {
                float *g = malloc(t[i].numel * sizeof *g);
                memcpy(g, grads + t[i].offset, t[i].numel * sizeof *g);
                snprintf(key, sizeof key, "grad.%s", t[i].name);
                ref_out_add(&out, key, DV_DTYPE_F32, t[i].ndim, t[i].shape, g);
            }
            free(grads);
        } else {
            free(loss), free(task_loss);
            snprintf(key, sizeof key, "%sgrads", pre);
            ref_out_add(&out, key, DV_DTYPE_F32, 1, sp, grads);
        }
        for (size_t i = 0; i < dv_backbone_num_item_tables(bb); i++) {
            const char *name;
            const size_t *rows;
            const float *g;
            dv_backbone_item_table(bb, i, NULL, NULL, NULL, &name);
            dv365_pool_grad_table(ig, i, &n, &rows, &g);
            uint64_t *r64 = malloc((n + 1) * sizeof *r64);
            float *gc = malloc((n * D + 1) * sizeof *gc);
            for (size_t k = 0; k < n; k++)
                r64[k] = rows[k];
            memcpy(gc, g, n * D * sizeof *gc);
            size_t sr[1] = {n}, sg[2] = {n, D};
            snprintf(key, sizeof key, "%sgrad.%s.rows", pre, name);
            ref_out_add(&out, key, DV_DTYPE_U64, 1, sr, r64);
            snprintf(key, sizeof key, "%sgrad.%s", pre, name);
            ref_out_add(&out, key, DV_DTYPE_F32, 2, sg, gc);
        }
        free(acts), free(dl);
        dv365_pool_grad_free(ig);
        dv365_workspace_free(ws);
    }
    ref_out_write(&out, out_path);
    free(dense), free(U), free(labels), free(ids);
    dv_backbone_free(bb);
    dv365_config_free(cfg);
    dv_st_free(in);
    return 0;
}

int main(int argc, char **argv)
{
    if (ref_mode(argc, argv))
        return run_ref(argv[2], argv[3]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_and_init),
        cmocka_unit_test(test_gradients_tiny),
        cmocka_unit_test(test_gradients_no_dense),
        cmocka_unit_test(test_threads_bitwise),
        cmocka_unit_test(test_no_allocation_in_steady_state),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_save_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
