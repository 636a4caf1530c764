/* backbone.c — the DLRM multi-task backbone (see backbone.h).
 *
 * Layers come from nn.h (Linear), interaction.h (dot interaction) and
 * loss.h; this file owns the parameter table, the item tables, the layout
 * of activations and scratch, and the forward/backward orchestration. */
#include "backbone.h"

#include "config.h"
#include "interaction.h"
#include "nn.h"
#include "parallel.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define BB_SEED_TAG (UINT64_C(0xBB) << 32)

/* The interaction is one small GEMM per example (62 x 62 x 256 at the
 * default sizes): threads split the examples, each running its GEMMs on
 * one BLIS thread, rather than splitting every tiny GEMM.  At most this
 * many chunks, each with its own F x F scratch. */
#define BB_MAX_CHUNKS 16

static const char *const field_name[DV_NUM_FIELDS] = {"media", "author", "topic"};

/* One Linear layer: float offsets of W [out,in] and b [out] in the block. */
typedef struct bb_linear {
    size_t in, out, w, b;
} bb_linear;

struct dv365_backbone {
    size_t D, n_dense, K, T;
    size_t n_items, F, od;  /* item tables, rows of Z, interaction width */
    size_t e0, u0;          /* rows of Z holding the first item embedding / user token */
    size_t n_bottom, n_top; /* Linear layers (bottom: 0 without dense features) */
    bb_linear *lin;         /* [n_bottom + n_top], bottom first */
    size_t max_width;       /* widest hidden activation, at least D */
    dv_task *tasks;         /* [T] */
    float init_std;         /* item tables */
    float *params;
    size_t n_params;
    dv_bb_tensor *tensors;
    size_t n_tensors;
    int item_field[DV_NUM_FIELDS]; /* field of item table i */
    size_t item_rows[DV_NUM_FIELDS];
    float *item[DV_NUM_FIELDS];    /* [rows x D] each */
    char item_name[DV_NUM_FIELDS][32];
};

/* ------------------------------------------------------- parameter table -- */

static size_t add_tensor(dv_backbone *bb, const char *part, size_t i, const char *leaf,
                         size_t rows, size_t cols)
{
    dv_bb_tensor *t = &bb->tensors[bb->n_tensors++];
    snprintf(t->name, sizeof t->name, "backbone.%s.%zu.%s", part, i, leaf);
    t->ndim = cols ? 2 : 1;
    t->shape[0] = rows;
    t->shape[1] = cols;
    t->numel = rows * (cols ? cols : 1);
    t->offset = bb->n_params; /* packed back to back */
    bb->n_params += t->numel;
    return t->offset;
}

/* The Linear layers in order, bottom then top, and their tensors. */
static void build_table(dv_backbone *bb, const dv_backbone_cfg *c)
{
    size_t in = bb->n_dense;
    for (size_t i = 0; i < bb->n_bottom; i++) {
        bb_linear *L = &bb->lin[i];
        L->in = in;
        L->out = i + 1 < bb->n_bottom ? c->bottom[i] : bb->D;
        L->w = add_tensor(bb, "bottom", i, "weight", L->out, L->in);
        L->b = add_tensor(bb, "bottom", i, "bias", L->out, 0);
        in = L->out;
    }
    in = bb->od;
    for (size_t i = 0; i < bb->n_top; i++) {
        bb_linear *L = &bb->lin[bb->n_bottom + i];
        L->in = in;
        L->out = i + 1 < bb->n_top ? c->top[i] : bb->T;
        L->w = add_tensor(bb, "top", i, "weight", L->out, L->in);
        L->b = add_tensor(bb, "top", i, "bias", L->out, 0);
        in = L->out;
    }
    bb->max_width = bb->D;
    for (size_t i = 0; i < bb->n_bottom + bb->n_top; i++)
        bb->max_width = DV_MAX(bb->max_width, bb->lin[i].out);
}

/* Weights U(−1/√fan_in, 1/√fan_in) from one stream in table order, biases 0;
 * item tables N(0, init_std²), one stream per field. */
static void init_params(dv_backbone *bb, uint64_t seed)
{
    dv_rng rng;
    dv_rng_seed(&rng, seed ^ dv_mix64(BB_SEED_TAG));
    memset(bb->params, 0, bb->n_params * sizeof *bb->params);
    for (size_t i = 0; i < bb->n_bottom + bb->n_top; i++) {
        const bb_linear *L = &bb->lin[i];
        double bound = 1.0 / sqrt((double)L->in);
        float *w = bb->params + L->w;
        for (size_t j = 0; j < L->out * L->in; j++)
            w[j] = (float)((2.0 * dv_rng_uniform(&rng) - 1.0) * bound);
    }
    for (size_t i = 0; i < bb->n_items; i++) {
        dv_rng r;
        dv_rng_seed(&r, seed ^ dv_mix64(BB_SEED_TAG + 1 + (uint64_t)bb->item_field[i]));
        dv_fill_normal(&r, bb->item[i], bb->item_rows[i] * bb->D, bb->init_std);
    }
}

/* The config's backbone section and the sizes it implies (the parser checks
 * most of it; a config filled by hand must not crash us).  Every product
 * below is bounded by 2^40 so that later size arithmetic cannot overflow. */
static dv365_status check_config(const dv365_config *cfg, size_t K)
{
    const dv_backbone_cfg *c = &cfg->backbone;
    const size_t lim = (size_t)1 << 40;
    if (cfg->dim == 0 || cfg->dim > lim)
        return dv_error(DV365_E_CONFIG, "backbone: dim must be > 0, got %zu", cfg->dim);
    if (K == 0 || K > lim)
        return dv_error(DV365_E_CONFIG, "backbone: the encoder yields no user tokens");
    if (c->n_tasks == 0 || c->tasks == NULL || c->n_tasks > 4096)
        return dv_error(DV365_E_CONFIG, "backbone: needs 1 to 4096 tasks, got %zu", c->n_tasks);
    if (dv_tasks_check(c->tasks, c->n_tasks) != DV365_OK) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", dv365_last_error());
        return dv_error(DV365_E_CONFIG, "backbone: %s", msg);
    }
    if (!(c->init_std >= 0.0f && c->init_std <= 10.0f))
        return dv_error(DV365_E_CONFIG, "backbone: init_std must be in [0, 10], got %g",
                        (double)c->init_std);
    if (c->n_dense > lim || c->n_bottom > 64 || c->n_top > 64 ||
        (c->n_bottom && c->bottom == NULL) || (c->n_top && c->top == NULL))
        return dv_error(DV365_E_CONFIG, "backbone: bad layer list or dense_features %zu",
                        c->n_dense);
    for (size_t i = 0; i < c->n_bottom + c->n_top; i++) {
        size_t w = i < c->n_bottom ? c->bottom[i] : c->top[i - c->n_bottom];
        if (w == 0 || w > lim)
            return dv_error(DV365_E_CONFIG, "backbone: %s layer %zu has width %zu",
                            i < c->n_bottom ? "bottom" : "top",
                            i < c->n_bottom ? i : i - c->n_bottom, w);
    }
    size_t F = (c->n_dense ? 1 : 0) + K, n;
    for (int f = 0; f < DV_NUM_FIELDS; f++)
        if (c->item_field[f]) {
            if (c->item_rows[f] == 0 || !dv_mul_size(c->item_rows[f], cfg->dim, &n) || n > lim)
                return dv_error(DV365_E_CONFIG, "backbone: item table %s has %zu rows x dim %zu",
                                field_name[f], c->item_rows[f], cfg->dim);
            F++;
        }
    size_t od = dv_interaction_out_dim(F, cfg->dim);
    if (F > (size_t)1 << 16 || od == 0 || od > lim)
        return dv_error(DV365_E_CONFIG, "backbone: %zu interaction features are too many", F);
    /* Each layer's weight matrix and their sum. */
    size_t total = 0, in = c->n_dense, nl = c->n_bottom + c->n_top + 2;
    for (size_t i = 0; i < nl; i++) {
        size_t out;
        if (i <= c->n_bottom) {
            if (c->n_dense == 0)
                continue;
            out = i < c->n_bottom ? c->bottom[i] : cfg->dim;
        } else {
            size_t j = i - c->n_bottom - 1;
            if (j == 0)
                in = od;
            out = j < c->n_top ? c->top[j] : c->n_tasks;
        }
        if (!dv_mul_size(in, out, &n) || n > lim || (total += n + out) > lim)
            return dv_error(DV365_E_CONFIG, "backbone: layer sizes too large (%zu x %zu)", out,
                            in);
        in = out;
    }
    return DV365_OK;
}

dv365_status dv_backbone_create(const dv365_config *cfg, uint64_t seed, dv_backbone **out)
{
    DV_CHECK_NULL(cfg);
    DV_CHECK_NULL(out);
    /* the encoder's tokens, then the caller's extra tokens (trainer step_ex) */
    size_t K = dv_config_num_tokens(cfg) + cfg->backbone.extra_tokens;
    dv365_status st = check_config(cfg, K);
    if (st != DV365_OK)
        return st;
    const dv_backbone_cfg *c = &cfg->backbone;
    dv_backbone *bb = dv_calloc(1, sizeof *bb);
    if (bb == NULL)
        return dv_error(DV365_E_NOMEM, "backbone: out of memory");
    bb->D = cfg->dim;
    bb->n_dense = c->n_dense;
    bb->K = K;
    bb->T = c->n_tasks;
    bb->init_std = c->init_std;
    for (int f = 0; f < DV_NUM_FIELDS; f++)
        if (c->item_field[f]) {
            size_t i = bb->n_items++;
            bb->item_field[i] = f;
            bb->item_rows[i] = c->item_rows[f];
            snprintf(bb->item_name[i], sizeof bb->item_name[i], "tables.item_%s", field_name[f]);
        }
    bb->e0 = bb->n_dense ? 1 : 0;
    bb->u0 = bb->e0 + bb->n_items;
    bb->F = bb->u0 + K;
    bb->od = dv_interaction_out_dim(bb->F, bb->D);
    bb->n_bottom = bb->n_dense ? c->n_bottom + 1 : 0; /* widths ignored without dense */
    bb->n_top = c->n_top + 1;
    size_t nl = bb->n_bottom + bb->n_top;
    bb->lin = dv_calloc(nl, sizeof *bb->lin);
    bb->tensors = dv_calloc(2 * nl, sizeof *bb->tensors);
    bb->tasks = dv_calloc(bb->T, sizeof *bb->tasks);
    if (bb->lin == NULL || bb->tensors == NULL || bb->tasks == NULL)
        goto nomem;
    memcpy(bb->tasks, c->tasks, bb->T * sizeof *bb->tasks);
    build_table(bb, c);
    if ((bb->params = dv_malloc(bb->n_params * sizeof *bb->params)) == NULL)
        goto nomem;
    for (size_t i = 0; i < bb->n_items; i++)
        if ((bb->item[i] = dv_malloc(bb->item_rows[i] * bb->D * sizeof(float))) == NULL)
            goto nomem;
    init_params(bb, seed);
    *out = bb;
    return DV365_OK;
nomem:
    dv_backbone_free(bb);
    return dv_error(DV365_E_NOMEM, "backbone: out of memory");
}

void dv_backbone_free(dv_backbone *bb)
{
    if (bb == NULL)
        return;
    for (size_t i = 0; i < bb->n_items; i++)
        dv_free(bb->item[i]);
    dv_free(bb->params);
    dv_free(bb->tensors);
    dv_free(bb->tasks);
    dv_free(bb->lin);
    dv_free(bb);
}

/* --------------------------------------------------------- accessors -- */

size_t dv_backbone_dim(const dv_backbone *bb) { return bb->D; }
size_t dv_backbone_num_tokens(const dv_backbone *bb) { return bb->K; }
size_t dv_backbone_num_dense(const dv_backbone *bb) { return bb->n_dense; }
size_t dv_backbone_num_tasks(const dv_backbone *bb) { return bb->T; }
const dv_task *dv_backbone_tasks(const dv_backbone *bb) { return bb->tasks; }
size_t dv_backbone_num_features(const dv_backbone *bb) { return bb->F; }
size_t dv_backbone_num_params(const dv_backbone *bb) { return bb->n_params; }
float *dv_backbone_params(dv_backbone *bb) { return bb->params; }
const float *dv_backbone_params_const(const dv_backbone *bb) { return bb->params; }
size_t dv_backbone_num_item_tables(const dv_backbone *bb) { return bb->n_items; }

const dv_bb_tensor *dv_backbone_tensors(const dv_backbone *bb, size_t *count)
{
    *count = bb->n_tensors;
    return bb->tensors;
}

dv365_status dv_backbone_item_table(dv_backbone *bb, size_t i, float **data, size_t *rows,
                                    int *field, const char **name)
{
    DV_CHECK_NULL(bb);
    if (i >= bb->n_items)
        return dv_error(DV365_E_INVALID, "backbone: item table %zu out of range (%zu tables)", i,
                        bb->n_items);
    if (data)
        *data = bb->item[i];
    if (rows)
        *rows = bb->item_rows[i];
    if (field)
        *field = bb->item_field[i];
    if (name)
        *name = bb->item_name[i];
    return DV365_OK;
}

dv365_status dv_backbone_item_grad_create(const dv_backbone *bb, dv365_pool_grad **out)
{
    DV_CHECK_NULL(bb);
    DV_CHECK_NULL(out);
    dv365_pool_grad *g = dv_calloc(1, sizeof *g);
    if (g != NULL && (g->t = dv_calloc(bb->n_items + 1, sizeof *g->t)) == NULL) {
        dv_free(g);
        g = NULL;
    }
    if (g == NULL)
        return dv_error(DV365_E_NOMEM, "backbone: out of memory for the item gradient");
    g->n_tables = bb->n_items;
    g->dim = bb->D;
    *out = g;
    return DV365_OK;
}

/* ------------------------------------------------------------ layouts -- */

/* A bump layout over a float block: take() returns the offset of a·b floats
 * rounded up to 16 floats (64 bytes) and flags overflow. */
typedef struct layout {
    size_t off;
    bool ovf;
} layout;

static size_t take(layout *L, size_t a, size_t b)
{
    size_t n, o = L->off;
    if (!dv_mul_size(a, b, &n) || n > SIZE_MAX - 15 ||
        __builtin_add_overflow(L->off, (n + 15) & ~(size_t)15, &L->off))
        L->ovf = true;
    return o;
}

/* Interaction scratch slots (one per chunk of examples). */
static size_t inter_slots(size_t B) { return DV_MIN(B, (size_t)BB_MAX_CHUNKS); }

/* Activations of a forward, in floats:
 *   h[i]    [B, out_i] the output of Linear i after its ReLU, for every layer
 *           but the last top one (whose output is the caller's logits); the
 *           last bottom layer's h is z0;
 *   Z       [B, F, D], inter [B, od], scratch [slots, F, F] (interaction). */
typedef struct acts_layout {
    size_t h[130]; /* <= 65 bottom + 65 top layers (check_config) */
    size_t Z, inter, scratch, total;
    bool ovf;
} acts_layout;

static acts_layout layout_acts(const dv_backbone *bb, size_t B)
{
    layout L = {0, false};
    acts_layout a = {{0}, 0, 0, 0, 0, false};
    for (size_t i = 0; i + 1 < bb->n_bottom + bb->n_top; i++) /* z0 included */
        a.h[i] = take(&L, B, bb->lin[i].out);
    a.Z = take(&L, B, bb->F * bb->D);
    a.inter = take(&L, B, bb->od);
    a.scratch = take(&L, inter_slots(B), bb->F * bb->F);
    a.total = L.off;
    a.ovf = L.ovf;
    return a;
}

/* Backward scratch: dZ [B,F,D], dinter [B,od], two ping-pong gradients
 * [B, max_width], interaction scratch [slots,F,F], and 3·B size_t (rows,
 * order, merge buffer) for the item rows. */
typedef struct back_layout {
    size_t dZ, dinter, g0, g1, scratch, idx, total;
    bool ovf;
} back_layout;

static back_layout layout_back(const dv_backbone *bb, size_t B)
{
    layout L = {0, false};
    back_layout t = {0};
    t.dZ = take(&L, B, bb->F * bb->D);
    t.dinter = take(&L, B, bb->od);
    t.g0 = take(&L, B, bb->max_width);
    t.g1 = take(&L, B, bb->max_width);
    t.scratch = take(&L, inter_slots(B), bb->F * bb->F);
    t.idx = take(&L, B, 3 * sizeof(size_t) / sizeof(float));
    t.total = L.off;
    t.ovf = L.ovf;
    return t;
}

size_t dv_backbone_acts_floats(const dv_backbone *bb, size_t B)
{
    if (bb == NULL)
        return SIZE_MAX;
    acts_layout a = layout_acts(bb, B);
    return a.ovf ? SIZE_MAX : a.total;
}

size_t dv_backbone_backward_workspace_size(const dv_backbone *bb, size_t B)
{
    if (bb == NULL)
        return SIZE_MAX;
    back_layout t = layout_back(bb, B);
    return t.ovf || t.total > SIZE_MAX / sizeof(float) ? SIZE_MAX : t.total * sizeof(float);
}

/* ----------------------------------------------------------- forward -- */

static void relu_forward(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

/* dx *= 1[y > 0], y the ReLU's output. */
static void relu_backward(float *dx, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(y[i] > 0.0f))
            dx[i] = 0.0f;
}

/* Arguments shared by forward and backward. */
static dv365_status check_batch(const char *fn, const dv_backbone *bb, size_t B,
                                const float *dense, const uint64_t *item_ids, int nthreads)
{
    if (B == 0)
        return dv_error(DV365_E_INVALID, "%s: batch must be > 0", fn);
    if (nthreads < 1 || nthreads > 1024)
        return dv_error(DV365_E_INVALID, "%s: nthreads must be in [1, 1024], got %d", fn,
                        nthreads);
    size_t n;
    if (!dv_mul_size(B, bb->F * bb->D, &n) || !dv_mul_size(B, bb->od, &n) ||
        dv_backbone_acts_floats(bb, B) == SIZE_MAX ||
        dv_backbone_backward_workspace_size(bb, B) == SIZE_MAX)
        return dv_error(DV365_E_INVALID, "%s: batch %zu is too large", fn, B);
    if (bb->n_dense && dense == NULL)
        return dv_error(DV365_E_NULL, "%s: argument 'dense' is NULL (%zu dense features)", fn,
                        bb->n_dense);
    if (bb->n_items && item_ids == NULL)
        return dv_error(DV365_E_NULL, "%s: argument 'item_ids' is NULL", fn);
    return DV365_OK;
}

/* The interaction over B examples, forward (out from Z) or backward (dZ +=
 * from dout), examples split into chunks that run in parallel.  Examples
 * are independent and every GEMM runs on one BLIS thread, so the result
 * does not depend on the chunking. */
typedef struct inter_job {
    const dv_backbone *bb;
    bool backward;
    float *out, *dZ, *scratch;
    const float *Z, *dout;
    dv365_status st[BB_MAX_CHUNKS];
} inter_job;

static void inter_chunk(void *ctx, size_t begin, size_t end, int chunk)
{
    inter_job *j = ctx;
    size_t F = j->bb->F, D = j->bb->D, od = j->bb->od, n = end - begin;
    float *scratch = j->scratch + (size_t)chunk * F * F;
    const float *Z = j->Z + begin * F * D;
    j->st[chunk] = j->backward ? dv_interaction_backward(j->dZ + begin * F * D, scratch,
                                                         j->dout + begin * od, Z, n, F, D, 1)
                               : dv_interaction_forward(j->out + begin * od, scratch, Z, n, F,
                                                        D, 1);
}

static dv365_status interaction(inter_job *j, size_t B, int nthreads)
{
    int chunks = (int)DV_MIN((size_t)nthreads, inter_slots(B));
    dv_parallel_for(chunks, B, inter_chunk, j);
    for (int c = 0; c < chunks; c++)
        if (j->st[c] != DV365_OK) /* sizes were checked: this cannot happen */
            return dv_error(DV365_E_INTERNAL, "backbone: interaction failed (%d)", (int)j->st[c]);
    return DV365_OK;
}

/* The row of item table i for example b. */
static size_t item_row(const dv_backbone *bb, const uint64_t *item_ids, size_t b, size_t i)
{
    return dv365_hash_row(item_ids[b * DV_NUM_FIELDS + (size_t)bb->item_field[i]],
                          bb->item_rows[i]);
}

dv365_status dv_backbone_forward(const dv_backbone *bb, size_t B, const float *dense,
                                 size_t n_dense, const uint64_t *item_ids, const float *U,
                                 size_t K, float *logits, float *acts, int nthreads)
{
    static const char fn[] = "dv_backbone_forward";
    DV_CHECK_NULL(bb);
    DV_CHECK_NULL(U);
    DV_CHECK_NULL(logits);
    DV_CHECK_NULL(acts);
    dv365_status st = check_batch(fn, bb, B, dense, item_ids, nthreads);
    if (st != DV365_OK)
        return st;
    if (n_dense != bb->n_dense || K != bb->K)
        return dv_error(DV365_E_MISMATCH,
                        "%s: got %zu dense features and %zu user tokens, the backbone takes %zu "
                        "and %zu", fn, n_dense, K, bb->n_dense, bb->K);
    size_t D = bb->D;
    for (size_t b = 0; b < B; b++) {
        for (size_t j = 0; j < n_dense; j++)
            if (!isfinite(dense[b * n_dense + j]))
                return dv_error(DV365_E_NONFINITE, "%s: dense feature %zu of example %zu is %s",
                                fn, j, b, isnan(dense[b * n_dense + j]) ? "NaN" : "infinite");
        for (size_t j = 0; j < K * D; j++)
            if (!isfinite(U[b * K * D + j]))
                return dv_error(DV365_E_NONFINITE,
                                "%s: user token %zu, column %zu of example %zu is not finite", fn,
                                j / D, j % D, b);
    }
    acts_layout a = layout_acts(bb, B);
    const float *P = bb->params;
    float *Z = acts + a.Z;
    size_t F = bb->F;

    /* bottom MLP: dense -> z0, ReLU after every layer. */
    const float *x = dense;
    for (size_t i = 0; i < bb->n_bottom; i++) {
        const bb_linear *L = &bb->lin[i];
        float *h = acts + a.h[i];
        dv_linear_forward(h, x, P + L->w, P + L->b, B, L->in, L->out, nthreads);
        relu_forward(h, B * L->out);
        x = h;
    }
    /* Z = [z0 ; item rows ; U] per example. */
    for (size_t b = 0; b < B; b++) {
        float *z = Z + b * F * D;
        if (bb->n_bottom)
            memcpy(z, x + b * D, D * sizeof *z);
        for (size_t i = 0; i < bb->n_items; i++)
            memcpy(z + (bb->e0 + i) * D, bb->item[i] + item_row(bb, item_ids, b, i) * D,
                   D * sizeof *z);
        memcpy(z + bb->u0 * D, U + b * K * D, K * D * sizeof *z);
    }
    inter_job ij = {.bb = bb, .backward = false, .out = acts + a.inter, .scratch = acts + a.scratch,
                    .Z = Z};
    if ((st = interaction(&ij, B, nthreads)) != DV365_OK)
        return st;
    /* top MLP: ReLU after each hidden layer, raw logits out. */
    x = acts + a.inter;
    for (size_t i = 0; i < bb->n_top; i++) {
        const bb_linear *L = &bb->lin[bb->n_bottom + i];
        bool last = i + 1 == bb->n_top;
        float *y = last ? logits : acts + a.h[bb->n_bottom + i];
        dv_linear_forward(y, x, P + L->w, P + L->b, B, L->in, L->out, nthreads);
        if (!last)
            relu_forward(y, B * L->out);
        x = y;
    }
    return DV365_OK;
}

/* ---------------------------------------------------------- backward -- */

/* Make room for n rows in a sparse gradient table (grows, never shrinks). */
static bool grad_reserve(dv_grad_table *g, size_t D, size_t n)
{
    if (n <= g->cap)
        return true;
    size_t rbytes, gbytes;
    if (!dv_mul_size(n, sizeof(size_t), &rbytes) || !dv_mul_size(n, D * sizeof(float), &gbytes) ||
        !dv_grow((void **)&g->rows, g->cap * sizeof(size_t), rbytes) ||
        !dv_grow((void **)&g->grads, g->cap * D * sizeof(float), gbytes))
        return false;
    g->cap = n;
    return true;
}

/* Sort idx[0..n) by key[idx] ascending, stably (bottom-up merge sort). */
static void sort_by_key(size_t *idx, size_t *tmp, const size_t *key, size_t n)
{
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = DV_MIN(lo + width, n), hi = DV_MIN(lo + 2 * width, n);
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                tmp[k++] = key[idx[j]] < key[idx[i]] ? idx[j++] : idx[i++];
            while (i < mid)
                tmp[k++] = idx[i++];
            while (j < hi)
                tmp[k++] = idx[j++];
        }
        memcpy(idx, tmp, n * sizeof *idx);
    }
}

/* Item table i's sparse gradient from dZ: distinct rows ascending, each the
 * sum of its examples' rows of dZ in example order.  rows/idx/tmp: [B]. */
static void item_grad_table(const dv_backbone *bb, dv_grad_table *g, const float *dZ,
                            const uint64_t *item_ids, size_t B, size_t i, size_t *rows,
                            size_t *idx, size_t *tmp)
{
    size_t D = bb->D, zr = bb->e0 + i;
    for (size_t b = 0; b < B; b++) {
        rows[b] = item_row(bb, item_ids, b, i);
        idx[b] = b;
    }
    sort_by_key(idx, tmp, rows, B);
    g->n = 0;
    for (size_t k = 0; k < B; k++) {
        size_t b = idx[k];
        const float *src = dZ + (b * bb->F + zr) * D;
        if (g->n > 0 && g->rows[g->n - 1] == rows[b]) {
            float *dst = g->grads + (g->n - 1) * D;
            for (size_t d = 0; d < D; d++)
                dst[d] += src[d];
        } else {
            g->rows[g->n] = rows[b];
            memcpy(g->grads + g->n * D, src, D * sizeof *src);
            g->n++;
        }
    }
}

dv365_status dv_backbone_backward(const dv_backbone *bb, dv365_workspace *ws, size_t B,
                                  const float *dense, const uint64_t *item_ids, const float *acts,
                                  const float *dlogits, float *grads, dv365_pool_grad *item_grad,
                                  float *dU, int nthreads)
{
    static const char fn[] = "dv_backbone_backward";
    DV_CHECK_NULL(bb);
    DV_CHECK_NULL(ws);
    DV_CHECK_NULL(acts);
    DV_CHECK_NULL(dlogits);
    DV_CHECK_NULL(grads);
    DV_CHECK_NULL(item_grad);
    dv365_status st = check_batch(fn, bb, B, dense, item_ids, nthreads);
    if (st != DV365_OK)
        return st;
    if (item_grad->n_tables != bb->n_items || item_grad->dim != bb->D)
        return dv_error(DV365_E_MISMATCH,
                        "%s: item_grad was made for %zu tables of dim %zu, the backbone has %zu "
                        "item tables of dim %zu", fn, item_grad->n_tables, item_grad->dim,
                        bb->n_items, bb->D);
    for (size_t i = 0; i < bb->n_items; i++)
        if (!grad_reserve(&item_grad->t[i], bb->D, B)) {
            for (size_t j = 0; j < bb->n_items; j++)
                item_grad->t[j].n = 0;
            return dv_error(DV365_E_NOMEM, "%s: cannot grow the item gradient to %zu rows", fn,
                            B);
        }
    back_layout bl = layout_back(bb, B);
    float *s = dv_workspace_get(ws, bl.total * sizeof(float));
    if (s == NULL)
        return DV365_E_NOMEM;
    acts_layout a = layout_acts(bb, B);
    const float *P = bb->params;
    float *G = grads;
    size_t D = bb->D, F = bb->F;
    float *g0 = s + bl.g0, *g1 = s + bl.g1;

    /* top MLP, last layer first; dy ping-pongs between g0 and g1. */
    const float *dy = dlogits;
    for (size_t i = bb->n_top; i-- > 0;) {
        const bb_linear *L = &bb->lin[bb->n_bottom + i];
        const float *x = i ? acts + a.h[bb->n_bottom + i - 1] : acts + a.inter;
        float *dx = i ? (dy == g0 ? g1 : g0) : s + bl.dinter;
        memset(dx, 0, B * L->in * sizeof *dx);
        dv_linear_backward(dx, G + L->w, G + L->b, dy, x, P + L->w, B, L->in, L->out, nthreads);
        if (i)
            relu_backward(dx, x, B * L->in);
        dy = dx;
    }
    /* interaction -> dZ */
    float *dZ = s + bl.dZ;
    memset(dZ, 0, B * F * D * sizeof *dZ);
    inter_job ij = {.bb = bb, .backward = true, .dZ = dZ, .scratch = s + bl.scratch,
                    .Z = acts + a.Z, .dout = s + bl.dinter};
    if ((st = interaction(&ij, B, nthreads)) != DV365_OK)
        return st;
    if (dU != NULL)
        for (size_t b = 0; b < B; b++) {
            const float *src = dZ + (b * F + bb->u0) * D;
            float *dst = dU + b * bb->K * D;
            for (size_t j = 0; j < bb->K * D; j++)
                dst[j] += src[j];
        }
    size_t *rows = (size_t *)(s + bl.idx), *idx = rows + B, *tmp = idx + B;
    for (size_t i = 0; i < bb->n_items; i++)
        item_grad_table(bb, &item_grad->t[i], dZ, item_ids, B, i, rows, idx, tmp);
    if (bb->n_bottom == 0)
        return DV365_OK;

    /* bottom MLP from dz0 = dZ[:, 0, :] through the final ReLU. */
    const float *z0 = acts + a.h[bb->n_bottom - 1];
    for (size_t b = 0; b < B; b++)
        memcpy(g1 + b * D, dZ + b * F * D, D * sizeof *g1);
    relu_backward(g1, z0, B * D);
    dy = g1;
    for (size_t i = bb->n_bottom; i-- > 0;) {
        const bb_linear *L = &bb->lin[i];
        const float *x = i ? acts + a.h[i - 1] : dense;
        float *dx = NULL;
        if (i) {
            dx = dy == g0 ? g1 : g0;
            memset(dx, 0, B * L->in * sizeof *dx);
        }
        dv_linear_backward(dx, G + L->w, G + L->b, dy, x, P + L->w, B, L->in, L->out, nthreads);
        if (i)
            relu_backward(dx, x, B * L->in);
        dy = dx;
    }
    return DV365_OK;
}

/* -------------------------------------------------------------- loss -- */

dv365_status dv_backbone_loss(const dv_backbone *bb, size_t B, const float *logits,
                              const float *labels, double *loss, double *task_loss,
                              float *dlogits)
{
    DV_CHECK_NULL(bb);
    DV_CHECK_NULL(logits);
    DV_CHECK_NULL(labels);
    DV_CHECK_NULL(loss);
    size_t n;
    if (B == 0 || !dv_mul_size(B, bb->T, &n))
        return dv_error(DV365_E_INVALID, "dv_backbone_loss: bad batch size %zu", B);
    dv365_status st = dv_loss_forward(loss, task_loss, logits, labels, bb->tasks, B, bb->T);
    if (st != DV365_OK || dlogits == NULL)
        return st;
    memset(dlogits, 0, n * sizeof *dlogits);
    return dv_loss_backward(dlogits, logits, labels, bb->tasks, B, bb->T, 1.0f);
}

/* ----------------------------------------------------------- weights -- */

dv365_status dv_backbone_add_tensors(const dv_backbone *bb, dv_st_writer *w)
{
    DV_CHECK_NULL(bb);
    DV_CHECK_NULL(w);
    dv365_status st = DV365_OK;
    for (size_t i = 0; i < bb->n_tensors && st == DV365_OK; i++) {
        const dv_bb_tensor *t = &bb->tensors[i];
        st = dv_st_writer_add(w, t->name, DV_DTYPE_F32, t->ndim, t->shape, bb->params + t->offset);
    }
    for (size_t i = 0; i < bb->n_items && st == DV365_OK; i++) {
        size_t shape[2] = {bb->item_rows[i], bb->D};
        st = dv_st_writer_add(w, bb->item_name[i], DV_DTYPE_F32, 2, shape, bb->item[i]);
    }
    return st;
}

/* Is f's tensor `name` an all-finite F32 tensor of the given shape? */
static dv365_status check_tensor(const dv_st_file *f, const char *name, size_t ndim,
                                 const size_t *shape, const dv_tensor_view **out)
{
    const dv_tensor_view *v = dv_st_find(f, name);
    if (v == NULL)
        return dv_error(DV365_E_NOT_FOUND, "backbone weights: tensor '%s' is missing", name);
    if (v->dtype != DV_DTYPE_F32)
        return dv_error(DV365_E_FORMAT, "backbone weights: tensor '%s' is %s, expected F32",
                        name, dv_dtype_name(v->dtype));
    bool same = v->ndim == ndim;
    for (size_t d = 0; same && d < ndim; d++)
        same = v->shape[d] == shape[d];
    if (!same) {
        char got[96] = "", want[96] = "";
        for (size_t d = 0; d < v->ndim && d < DV_ST_MAX_DIMS; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%zu", d ? "," : "",
                     v->shape[d]);
        for (size_t d = 0; d < ndim; d++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%zu", d ? "," : "",
                     shape[d]);
        return dv_error(DV365_E_MISMATCH, "backbone weights: tensor '%s' has shape [%s], "
                        "expected [%s]", name, got, want);
    }
    const unsigned char *p = v->data;
    for (size_t j = 0; j < v->nbytes / sizeof(float); j++) {
        float x;
        memcpy(&x, p + j * sizeof x, sizeof x); /* file data need not be aligned */
        if (!isfinite(x))
            return dv_error(DV365_E_NONFINITE, "backbone weights: %s[%zu] is not finite", name,
                            j);
    }
    *out = v;
    return DV365_OK;
}

dv365_status dv_backbone_load_tensors(dv_backbone *bb, const dv_st_file *f)
{
    DV_CHECK_NULL(bb);
    DV_CHECK_NULL(f);
    size_t n = bb->n_tensors + bb->n_items;
    const dv_tensor_view *v;
    dv365_status st;
    /* First check everything, so that a bad file leaves bb untouched. */
    for (size_t i = 0; i < n; i++) {
        const char *name;
        size_t ndim = 2, shape[2];
        if (i < bb->n_tensors) {
            const dv_bb_tensor *t = &bb->tensors[i];
            name = t->name;
            ndim = t->ndim;
            shape[0] = t->shape[0];
            shape[1] = t->shape[1];
        } else {
            name = bb->item_name[i - bb->n_tensors];
            shape[0] = bb->item_rows[i - bb->n_tensors];
            shape[1] = bb->D;
        }
        if ((st = check_tensor(f, name, ndim, shape, &v)) != DV365_OK)
            return st;
    }
    for (size_t i = 0; i < bb->n_tensors; i++) {
        const dv_bb_tensor *t = &bb->tensors[i];
        v = dv_st_find(f, t->name);
        memcpy(bb->params + t->offset, v->data, v->nbytes);
    }
    for (size_t i = 0; i < bb->n_items; i++) {
        v = dv_st_find(f, bb->item_name[i]);
        memcpy(bb->item[i], v->data, v->nbytes);
    }
    return DV365_OK;
}
