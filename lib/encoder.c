/* encoder.c — the user encoder: Funnel Transformer ‖ LCE (see encoder.h).
 *
 * Layers come from nn.h; this file owns the parameter table, the layout of
 * activations and scratch, the forward/backward orchestration, and the
 * public encoder API (create, encode, load, save). */
#include "encoder.h"

#include "config.h"
#include "nn.h"
#include "safetensors.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Users encoded together by dv365_encode.  Bigger chunks give BLIS taller
 * matrices, but beyond a few thousand rows nothing is gained and the
 * workspace (2.3 MB per user at the default sizes) keeps growing. */
#define ENC_CHUNK 16

/* Float offsets of one layer's tensors in the parameter (or gradient) block. */
typedef struct enc_layer {
    size_t ln1_w, ln1_b, in_w, in_b, out_w, out_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b;
} enc_layer;

struct dv365_encoder {
    size_t N, D, H, F, blocks, layers, stride, k_lce;
    size_t T_f;    /* tokens after the last block (T_last), 0 without blocks */
    size_t C;      /* token-wise compression T_f -> C of the funnel output; 0 = off */
    size_t K_f, K; /* funnel rows of U (C if compressing, else T_f), total tokens */
    float init_std;
    float *params;
    size_t n_params;
    dv_enc_tensor *tensors;
    size_t n_tensors;
    enc_layer *layer; /* [blocks * layers] */
    size_t pos, lnf_w, lnf_b, cmp_w, cmp_b, lce_w, lce_b; /* offsets; unused ones are 0 */
};

/* Token count entering block b: T_0 = N, T_{b+1} = ceil(T_b / stride). */
static size_t block_tokens(const dv365_encoder *e, size_t b)
{
    size_t t = e->N;
    for (size_t i = 0; i < b; i++)
        t = dv_meanpool_len(t, e->stride);
    return t;
}

/* ------------------------------------------------------- parameter table -- */

enum init_kind { INIT_NORMAL, INIT_ONES, INIT_ZEROS };

static size_t add_tensor(dv365_encoder *e, const char *name, size_t rows, size_t cols)
{
    dv_enc_tensor *t = &e->tensors[e->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = cols ? 2 : 1;
    t->shape[0] = rows;
    t->shape[1] = cols;
    t->numel = rows * (cols ? cols : 1);
    t->offset = e->n_params; /* tensors are packed back to back */
    e->n_params += t->numel;
    return t->offset;
}

static size_t add_layer_tensor(dv365_encoder *e, size_t b, size_t l, const char *leaf,
                               size_t rows, size_t cols)
{
    char name[96];
    snprintf(name, sizeof name, "encoder.blocks.%zu.layers.%zu.%s", b, l, leaf);
    return add_tensor(e, name, rows, cols);
}

/* Fill the tensor table in block order; the same order is the file order
 * and the initialization order. */
static void build_table(dv365_encoder *e)
{
    size_t D = e->D, F = e->F;
    if (e->blocks) {
        e->pos = add_tensor(e, "encoder.pos", e->N, D);
        for (size_t b = 0; b < e->blocks; b++)
            for (size_t l = 0; l < e->layers; l++) {
                enc_layer *L = &e->layer[b * e->layers + l];
                L->ln1_w = add_layer_tensor(e, b, l, "ln1.weight", D, 0);
                L->ln1_b = add_layer_tensor(e, b, l, "ln1.bias", D, 0);
                L->in_w = add_layer_tensor(e, b, l, "attn.in_proj_weight", 3 * D, D);
                L->in_b = add_layer_tensor(e, b, l, "attn.in_proj_bias", 3 * D, 0);
                L->out_w = add_layer_tensor(e, b, l, "attn.out_proj.weight", D, D);
                L->out_b = add_layer_tensor(e, b, l, "attn.out_proj.bias", D, 0);
                L->ln2_w = add_layer_tensor(e, b, l, "ln2.weight", D, 0);
                L->ln2_b = add_layer_tensor(e, b, l, "ln2.bias", D, 0);
                L->fc1_w = add_layer_tensor(e, b, l, "fc1.weight", F, D);
                L->fc1_b = add_layer_tensor(e, b, l, "fc1.bias", F, 0);
                L->fc2_w = add_layer_tensor(e, b, l, "fc2.weight", D, F);
                L->fc2_b = add_layer_tensor(e, b, l, "fc2.bias", D, 0);
            }
        e->lnf_w = add_tensor(e, "encoder.ln_f.weight", D, 0);
        e->lnf_b = add_tensor(e, "encoder.ln_f.bias", D, 0);
        if (e->C) {
            e->cmp_w = add_tensor(e, "encoder.compress.weight", e->C, e->T_f);
            e->cmp_b = add_tensor(e, "encoder.compress.bias", e->C, 0);
        }
    }
    if (e->k_lce) {
        e->lce_w = add_tensor(e, "encoder.lce.weight", e->k_lce, e->N);
        e->lce_b = add_tensor(e, "encoder.lce.bias", e->k_lce, 0);
    }
}

static enum init_kind tensor_init(const dv_enc_tensor *t)
{
    size_t n = strlen(t->name);
    bool is_ln = strstr(t->name, ".ln1.") || strstr(t->name, ".ln2.") ||
                 strstr(t->name, ".ln_f.");
    if (is_ln)
        return n > 7 && !strcmp(t->name + n - 7, ".weight") ? INIT_ONES : INIT_ZEROS;
    return t->ndim == 2 ? INIT_NORMAL : INIT_ZEROS; /* matrices and pos vs biases */
}

/* The documented initialization: one xoshiro256** stream seeded with seed,
 * walked over the tensors in table order; matrices and pos draw
 * N(0, init_std^2) element by element (row-major), layer-norm weights are 1,
 * biases and layer-norm biases 0 (they draw nothing). */
static void init_params(dv365_encoder *e, uint64_t seed)
{
    dv_rng rng;
    dv_rng_seed(&rng, seed);
    memset(e->params, 0, e->n_params * sizeof *e->params);
    for (size_t i = 0; i < e->n_tensors; i++) {
        const dv_enc_tensor *t = &e->tensors[i];
        float *p = e->params + t->offset;
        switch (tensor_init(t)) {
        case INIT_NORMAL:
            for (size_t j = 0; j < t->numel; j++)
                p[j] = (float)(e->init_std * dv_rng_normal(&rng));
            break;
        case INIT_ONES:
            for (size_t j = 0; j < t->numel; j++)
                p[j] = 1.0f;
            break;
        case INIT_ZEROS:
            break;
        }
    }
}

/* Check the config's encoder section (the parser checks it too; a config
 * filled by hand must not crash us) and the sizes it implies. */
static dv365_status check_config(const dv365_config *cfg)
{
    const dv_encoder_cfg *c = &cfg->encoder;
    if (cfg->dim == 0 || cfg->n_slices == 0)
        return dv_error(DV365_E_CONFIG, "encoder: dim (%zu) and the number of slices (%zu) "
                        "must be > 0", cfg->dim, cfg->n_slices);
    if (c->blocks == 0 && c->k_lce == 0)
        return dv_error(DV365_E_CONFIG, "encoder: needs blocks > 0 or k_lce > 0");
    if (c->blocks > 0) {
        if (c->layers_per_block == 0 || c->heads == 0 || c->ffn == 0 || c->stride == 0)
            return dv_error(DV365_E_CONFIG, "encoder: layers_per_block, heads, ffn and stride "
                            "must be > 0");
        if (cfg->dim % c->heads != 0)
            return dv_error(DV365_E_CONFIG, "encoder: dim (%zu) is not divisible by heads (%zu)",
                            cfg->dim, c->heads);
    }
    if (!(c->init_std >= 0.0f && c->init_std <= 10.0f))
        return dv_error(DV365_E_CONFIG, "encoder: init_std must be in [0, 10]");
    /* Bound every size so that the products below cannot overflow: a user's
     * largest tensor is N·N·heads or N·max(3D, F); 2^40 floats is 4 TiB. */
    const size_t lim = (size_t)1 << 40;
    size_t N = cfg->n_slices, D = cfg->dim, a, b, m;
    if (!dv_mul_size(N, N, &a) || !dv_mul_size(a, c->heads + 1, &a) ||
        !dv_mul_size(N, DV_MAX(3 * D, c->ffn) + c->k_lce, &b) ||
        !dv_mul_size(D, DV_MAX(D, c->ffn), &m) || a > lim || b > lim || m > lim ||
        c->blocks * c->layers_per_block > 4096)
        return dv_error(DV365_E_CONFIG, "encoder: sizes too large (N=%zu, D=%zu, ffn=%zu)",
                        cfg->n_slices, cfg->dim, c->ffn);
    /* the compression maps the funnel's T_last output tokens to compress */
    if (c->compress > 0 && c->blocks == 0)
        return dv_error(DV365_E_CONFIG, "encoder: compress needs blocks > 0");
    if (c->compress > 0 && c->compress > dv_config_funnel_tokens(cfg))
        return dv_error(DV365_E_CONFIG, "encoder: compress (%zu) must be in [1, %zu], the "
                        "funnel's output tokens", c->compress, dv_config_funnel_tokens(cfg));
    return DV365_OK;
}

/* An encoder with its table built and an uninitialized parameter block. */
static dv365_status encoder_alloc(const dv365_config *cfg, dv365_encoder **out)
{
    dv365_status st = check_config(cfg);
    if (st != DV365_OK)
        return st;
    const dv_encoder_cfg *c = &cfg->encoder;
    dv365_encoder *e = dv_calloc(1, sizeof *e);
    if (e == NULL)
        return dv_error(DV365_E_NOMEM, "encoder: out of memory");
    e->N = cfg->n_slices;
    e->D = cfg->dim;
    e->blocks = c->blocks;
    e->layers = c->blocks ? c->layers_per_block : 0;
    e->H = c->heads ? c->heads : 1;
    e->F = c->ffn;
    e->stride = c->stride ? c->stride : 1;
    e->k_lce = c->k_lce;
    e->init_std = c->init_std;
    e->T_f = e->blocks ? block_tokens(e, e->blocks - 1) : 0;
    e->C = c->compress;
    e->K_f = e->C ? e->C : e->T_f;
    e->K = e->K_f + e->k_lce;
    size_t n_layers = e->blocks * e->layers;
    e->tensors = dv_calloc(n_layers * 12 + 7, sizeof *e->tensors);
    e->layer = dv_calloc(n_layers ? n_layers : 1, sizeof *e->layer);
    if (e->tensors == NULL || e->layer == NULL)
        goto nomem;
    build_table(e);
    e->params = dv_malloc(e->n_params * sizeof *e->params);
    if (e->params == NULL)
        goto nomem;
    *out = e;
    return DV365_OK;
nomem:
    dv365_encoder_free(e);
    return dv_error(DV365_E_NOMEM, "encoder: out of memory");
}

/* ------------------------------------------------------- activations -- */

/* Offsets (in floats) of one layer's saved activations.  In inference mode
 * several of them coincide (see layout_infer). */
typedef struct layer_acts {
    float *ln1, *ln1_mean, *ln1_rstd, *qkv, *att, *ctx, *x_mid;
    float *ln2, *ln2_mean, *ln2_rstd, *h, *g, *out;
} layer_acts;

/* A bump layout over a float block: take() returns the offset of n floats
 * (rounded up to 16 floats = 64 bytes) and flags overflow. */
typedef struct layout {
    size_t off;
    bool ovf;
} layout;

static size_t take(layout *L, size_t a, size_t b, size_t c)
{
    size_t n, o = L->off;
    if (!dv_mul_size(a, b, &n) || !dv_mul_size(n, c, &n) || n > SIZE_MAX - 15 ||
        __builtin_add_overflow(L->off, (n + 15) & ~(size_t)15, &L->off))
        L->ovf = true;
    return o;
}

typedef struct layer_off {
    size_t ln1, ln1_mean, ln1_rstd, qkv, att, ctx, x_mid, ln2, ln2_mean, ln2_rstd, h, g, out;
} layer_off;

static void layer_layout(const dv365_encoder *e, layout *L, size_t B, size_t T, layer_off *o)
{
    size_t R = B * T, D = e->D; /* B·T cannot overflow once B·N·D was taken */
    o->ln1 = take(L, R, D, 1);
    o->ln1_mean = take(L, R, 1, 1);
    o->ln1_rstd = take(L, R, 1, 1);
    o->qkv = take(L, R, 3, D);
    o->att = take(L, B * e->H, T, T);
    o->ctx = take(L, R, D, 1);
    o->x_mid = take(L, R, D, 1);
    o->ln2 = take(L, R, D, 1);
    o->ln2_mean = take(L, R, 1, 1);
    o->ln2_rstd = take(L, R, 1, 1);
    o->h = take(L, R, e->F, 1);
    o->g = take(L, R, e->F, 1);
    o->out = take(L, R, D, 1);
}

static layer_acts layer_at(float *base, const layer_off *o)
{
    layer_acts a = {base + o->ln1, base + o->ln1_mean, base + o->ln1_rstd, base + o->qkv,
                    base + o->att, base + o->ctx,      base + o->x_mid,    base + o->ln2,
                    base + o->ln2_mean, base + o->ln2_rstd, base + o->h,   base + o->g,
                    base + o->out};
    return a;
}

/* Training activations, in order:
 *   x0 = X + pos [B·N, D]; tmp [B·N, D] (attention / fc2 output);
 *   per block b: pooled input [B·T_b, D] (b > 0), then per layer layer_off;
 *   ln_f mean, rstd [B·T_f]; with compression also ln_f's output
 *   [B·T_f, D], the input of the compression.
 * The input of layer (b,l) is the previous layer's out, the block's pooled
 * input, or x0; the final block's last out feeds ln_f. */
typedef struct train_layout {
    size_t x0, tmp, lnf_mean, lnf_rstd, lnf_out, total;
    bool ovf;
} train_layout;

/* Walk the training layout; when want_b/want_l name a layer, also return
 * its offsets and the offset of its input.  want_b = SIZE_MAX walks all. */
static train_layout walk_train(const dv365_encoder *e, size_t B, size_t want_b, size_t want_l,
                               layer_off *lo, size_t *in_off, size_t *pooled_off)
{
    layout L = {0, false};
    train_layout t = {0};
    if (e->blocks) {
        t.x0 = take(&L, B, e->N, e->D);
        t.tmp = take(&L, B, e->N, e->D);
        size_t prev_out = t.x0;
        for (size_t b = 0; b < e->blocks; b++) {
            size_t T = block_tokens(e, b);
            size_t in = prev_out;
            if (b > 0) {
                in = take(&L, B, T, e->D);
                if (b == want_b && pooled_off)
                    *pooled_off = in;
            }
            for (size_t l = 0; l < e->layers; l++) {
                layer_off o;
                layer_layout(e, &L, B, T, &o);
                if (b == want_b && l == want_l) {
                    *lo = o;
                    *in_off = in;
                }
                in = o.out;
            }
            prev_out = in;
        }
        if (want_b == e->blocks && in_off) /* the input of ln_f */
            *in_off = prev_out;
        t.lnf_mean = take(&L, B, e->T_f, 1);
        t.lnf_rstd = take(&L, B, e->T_f, 1);
        if (e->C)
            t.lnf_out = take(&L, B, e->T_f, e->D);
    }
    t.total = L.off;
    t.ovf = L.ovf;
    return t;
}

size_t dv_encoder_acts_floats(const dv365_encoder *enc, size_t batch)
{
    train_layout t = walk_train(enc, batch, SIZE_MAX, 0, NULL, NULL, NULL);
    return t.ovf ? SIZE_MAX : t.total;
}

/* Inference scratch for B users: one residual stream and one buffer per
 * kind of intermediate, reused by every layer and block (the first block
 * has the most tokens, so its sizes bound all others). */
typedef struct infer_layout {
    size_t x, tmp, ln, mean, rstd, qkv, att, ctx, h, total;
    bool ovf;
} infer_layout;

static infer_layout layout_infer(const dv365_encoder *e, size_t B)
{
    layout L = {0, false};
    infer_layout t = {0};
    if (e->blocks) {
        size_t N = e->N, D = e->D;
        t.x = take(&L, B, N, D);
        t.tmp = take(&L, B, N, D);
        t.ln = take(&L, B, N, D);
        t.mean = take(&L, B, N, 1);
        t.rstd = take(&L, B, N, 1);
        t.qkv = take(&L, B, N, 3 * D);
        t.att = take(&L, N, N, 1);
        t.ctx = take(&L, B, N, D);
        t.h = take(&L, B, N, e->F);
    }
    t.total = L.off;
    t.ovf = L.ovf;
    return t;
}

/* ----------------------------------------------------------- forward -- */

/* One pre-LN layer on B users of T tokens: out = x + attn(LN1(x)), then
 * out += fc2(GELU(fc1(LN2(out)))).  tmp [B·T, D] receives the branch
 * outputs.  In inference x, a->x_mid and a->out are one buffer.  The biases
 * of out_proj and fc2 are added in the residual adds and fc1's in the GELU
 * pass, which saves a pass over memory each. */
static void layer_forward(const dv365_encoder *e, const enc_layer *w, const layer_acts *a,
                          const float *x, float *tmp, size_t B, size_t T, bool keep,
                          int nthreads)
{
    const float *P = e->params;
    size_t R = B * T, D = e->D, F = e->F;
    dv_layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, x, P + w->ln1_w, P + w->ln1_b, R, D);
    dv_attention_forward(tmp, a->qkv, a->att, a->ctx, a->ln1, P + w->in_w, P + w->in_b,
                         P + w->out_w, NULL, B, T, D, e->H, keep, nthreads);
    dv_residual_bias_forward(a->x_mid, x, tmp, P + w->out_b, R, D);
    dv_layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->x_mid, P + w->ln2_w,
                         P + w->ln2_b, R, D);
    dv_linear_forward(a->h, a->ln2, P + w->fc1_w, NULL, R, D, F, nthreads);
    dv_bias_gelu_forward(a->h, a->g, P + w->fc1_b, R, F);
    dv_linear_forward(tmp, a->g, P + w->fc2_w, NULL, R, F, D, nthreads);
    dv_residual_bias_forward(a->out, a->x_mid, tmp, P + w->fc2_b, R, D);
}

/* x0 [B·N, D] = X + pos, user by user. */
static void add_pos(const dv365_encoder *e, float *x0, const float *X, size_t B)
{
    const float *pos = e->params + e->pos;
    size_t nd = e->N * e->D;
    for (size_t b = 0; b < B; b++)
        dv_residual_forward(x0 + b * nd, X + b * nd, pos, nd);
}

/* The funnel's rows of U [B, K, D] from the last block's output xf
 * [B, T_f, D]: ln_f, then the optional token-wise compression T_f -> C (the
 * LCE op, on the normalized tokens).  Without compression ln_f writes
 * straight into U; with it, into z [B, T_f, D] (kept for the backward in
 * training, scratch in inference). */
static void funnel_out_forward(const dv365_encoder *e, float *U, float *z, const float *xf,
                               float *mean, float *rstd, size_t B, int nthreads)
{
    size_t T = e->T_f, D = e->D;
    float *y = e->C ? z : U;
    size_t ldy = e->C ? T * D : e->K * D;
    for (size_t b = 0; b < B; b++)
        dv_layernorm_forward(y + b * ldy, mean + b * T, rstd + b * T, xf + b * T * D,
                             e->params + e->lnf_w, e->params + e->lnf_b, T, D);
    if (e->C)
        dv_lce_forward(U, e->K * D, z, e->params + e->cmp_w, e->params + e->cmp_b, B, T, D,
                       e->C, nthreads);
}

static void lce_forward(const dv365_encoder *e, float *U, const float *X, size_t B, int nthreads)
{
    if (e->k_lce)
        dv_lce_forward(U + e->K_f * e->D, e->K * e->D, X, e->params + e->lce_w,
                       e->params + e->lce_b, B, e->N, e->D, e->k_lce, nthreads);
}

dv365_status dv_encoder_forward_train(const dv365_encoder *enc, size_t batch, const float *X,
                                      float *U, float *acts, int nthreads)
{
    DV_CHECK_NULL(enc);
    DV_CHECK_NULL(X);
    DV_CHECK_NULL(U);
    if (enc->blocks && acts == NULL)
        return dv_error(DV365_E_NULL, "dv_encoder_forward_train: argument 'acts' is NULL");
    const dv365_encoder *e = enc;
    if (e->blocks) {
        train_layout t = walk_train(e, batch, SIZE_MAX, 0, NULL, NULL, NULL);
        if (t.ovf)
            return dv_error(DV365_E_NOMEM, "encoder: batch %zu is too large", batch);
        add_pos(e, acts + t.x0, X, batch);
        for (size_t b = 0; b < e->blocks; b++) {
            size_t T = block_tokens(e, b);
            for (size_t l = 0; l < e->layers; l++) {
                layer_off o;
                size_t in = 0, pooled = 0;
                walk_train(e, batch, b, l, &o, &in, &pooled);
                if (b > 0 && l == 0) { /* pool the previous block's output */
                    layer_off po;
                    size_t pin = 0;
                    walk_train(e, batch, b - 1, e->layers - 1, &po, &pin, NULL);
                    dv_meanpool_forward(acts + pooled, acts + po.out, batch,
                                        block_tokens(e, b - 1), e->D, e->stride);
                }
                layer_acts a = layer_at(acts, &o);
                layer_forward(e, &e->layer[b * e->layers + l], &a, acts + in, acts + t.tmp,
                              batch, T, true, nthreads);
            }
        }
        size_t fin = 0;
        walk_train(e, batch, e->blocks, 0, NULL, &fin, NULL);
        funnel_out_forward(e, U, acts + t.lnf_out, acts + fin, acts + t.lnf_mean,
                           acts + t.lnf_rstd, batch, nthreads);
    }
    lce_forward(e, U, X, batch, nthreads);
    return DV365_OK;
}

/* Inference forward of B users with scratch from layout_infer. */
static void forward_infer(const dv365_encoder *e, size_t B, const float *X, float *U,
                          float *scratch, int nthreads)
{
    if (e->blocks) {
        infer_layout t = layout_infer(e, B);
        float *x = scratch + t.x, *ln = scratch + t.ln, *h = scratch + t.h;
        float *mean = scratch + t.mean, *rstd = scratch + t.rstd;
        /* Both layer norms share buffers: LN1's output is dead once the
         * attention ran.  GELU runs in place.  The residual stream x is
         * updated in place, and pooled in place (it only writes rows it
         * has already read). */
        layer_acts a = {ln, mean, rstd, scratch + t.qkv, scratch + t.att, scratch + t.ctx, x,
                        ln, mean, rstd, h, h, x};
        add_pos(e, x, X, B);
        size_t T = e->N;
        for (size_t b = 0; b < e->blocks; b++) {
            if (b > 0) {
                dv_meanpool_forward(x, x, B, T, e->D, e->stride);
                T = dv_meanpool_len(T, e->stride);
            }
            for (size_t l = 0; l < e->layers; l++)
                layer_forward(e, &e->layer[b * e->layers + l], &a, x, scratch + t.tmp, B, T,
                              false, nthreads);
        }
        /* ln is free again: it takes ln_f's output when compressing */
        funnel_out_forward(e, U, ln, x, mean, rstd, B, nthreads);
    }
    lce_forward(e, U, X, B, nthreads);
}

/* ---------------------------------------------------------- backward -- */

typedef struct back_layout {
    size_t dres, dres2, dln, dz, att, dg, dh, total;
    bool ovf;
} back_layout;

static back_layout layout_back(const dv365_encoder *e, size_t B)
{
    layout L = {0, false};
    back_layout t = {0};
    if (e->blocks) {
        size_t N = e->N, D = e->D;
        t.dres = take(&L, B, N, D);
        t.dres2 = take(&L, B, N, D);
        t.dln = take(&L, B, N, D);
        if (e->C) /* dL/d(ln_f output) when compressing */
            t.dz = take(&L, B, e->T_f, D);
        /* dv_attention_backward_scratch, in three overflow-checked parts */
        t.att = take(&L, B, N, 3 * D);
        take(&L, B, N, D);
        take(&L, N, N, 1);
        t.dg = take(&L, B, N, e->F);
        t.dh = take(&L, B, N, e->F);
    }
    t.total = L.off;
    t.ovf = L.ovf;
    return t;
}

static size_t floats_to_bytes(size_t n)
{
    return n > SIZE_MAX / sizeof(float) ? SIZE_MAX : n * sizeof(float);
}

size_t dv_encoder_backward_workspace_size(const dv365_encoder *enc, size_t batch)
{
    back_layout t = layout_back(enc, batch);
    return t.ovf ? SIZE_MAX : floats_to_bytes(t.total);
}

dv365_status dv_encoder_backward(const dv365_encoder *enc, dv365_workspace *ws, size_t batch,
                                 const float *X, const float *acts, const float *dU,
                                 float *grads, float *dX, int nthreads)
{
    DV_CHECK_NULL(enc);
    DV_CHECK_NULL(ws);
    DV_CHECK_NULL(X);
    DV_CHECK_NULL(dU);
    DV_CHECK_NULL(grads);
    const dv365_encoder *e = enc;
    const float *P = e->params;
    float *G = grads;
    size_t B = batch, D = e->D, F = e->F, N = e->N;
    if (e->k_lce)
        dv_lce_backward(dX, G + e->lce_w, G + e->lce_b, dU + e->K_f * D, e->K * D, X,
                        P + e->lce_w, B, N, D, e->k_lce, nthreads);
    if (e->blocks == 0)
        return DV365_OK;
    if (acts == NULL)
        return dv_error(DV365_E_NULL, "dv_encoder_backward: argument 'acts' is NULL");
    back_layout bl = layout_back(e, B);
    if (bl.ovf)
        return dv_error(DV365_E_NOMEM, "encoder backward: batch %zu is too large", B);
    float *s = dv_workspace_get(ws, floats_to_bytes(bl.total));
    if (s == NULL)
        return DV365_E_NOMEM;
    train_layout tl = walk_train(e, B, SIZE_MAX, 0, NULL, NULL, NULL);
    float *dres = s + bl.dres, *dres2 = s + bl.dres2, *dln = s + bl.dln;
    float *dg = s + bl.dg, *dh = s + bl.dh;

    /* The funnel rows of dU flow back through the compression (if any)
     * and ln_f into the last block's output. */
    size_t Tf = e->T_f, fin = 0;
    walk_train(e, B, e->blocks, 0, NULL, &fin, NULL);
    const float *dy = dU;
    size_t ldy = e->K * D;
    if (e->C) {
        float *dz = s + bl.dz;
        memset(dz, 0, B * Tf * D * sizeof *dz);
        dv_lce_backward(dz, G + e->cmp_w, G + e->cmp_b, dU, e->K * D, acts + tl.lnf_out,
                        P + e->cmp_w, B, Tf, D, e->C, nthreads);
        dy = dz;
        ldy = Tf * D;
    }
    memset(dres, 0, B * Tf * D * sizeof *dres);
    for (size_t b = 0; b < B; b++)
        dv_layernorm_backward(dres + b * Tf * D, G + e->lnf_w, G + e->lnf_b, dy + b * ldy,
                              acts + fin + b * Tf * D, acts + tl.lnf_mean + b * Tf,
                              acts + tl.lnf_rstd + b * Tf, P + e->lnf_w, Tf, D);

    /* dres holds dL/d(residual stream) and is updated in place through each
     * layer: the residual paths pass it on, the branches add to it. */
    for (size_t b = e->blocks; b-- > 0;) {
        size_t T = block_tokens(e, b), R = B * T;
        for (size_t l = e->layers; l-- > 0;) {
            const enc_layer *w = &e->layer[b * e->layers + l];
            layer_off o;
            size_t in = 0;
            walk_train(e, B, b, l, &o, &in, NULL);
            layer_acts a = layer_at((float *)acts, &o);
            memset(dg, 0, R * F * sizeof *dg);
            dv_linear_backward(dg, G + w->fc2_w, G + w->fc2_b, dres, a.g, P + w->fc2_w, R, F, D,
                               nthreads);
            memset(dh, 0, R * F * sizeof *dh);
            dv_gelu_backward(dh, a.h, dg, R * F);
            memset(dln, 0, R * D * sizeof *dln);
            dv_linear_backward(dln, G + w->fc1_w, G + w->fc1_b, dh, a.ln2, P + w->fc1_w, R, D, F,
                               nthreads);
            dv_layernorm_backward(dres, G + w->ln2_w, G + w->ln2_b, dln, a.x_mid, a.ln2_mean,
                                  a.ln2_rstd, P + w->ln2_w, R, D);
            memset(dln, 0, R * D * sizeof *dln);
            dv_attention_backward(dln, G + w->in_w, G + w->in_b, G + w->out_w, G + w->out_b,
                                  s + bl.att, dres, a.ln1, a.qkv, a.att, a.ctx, P + w->in_w,
                                  P + w->out_w, B, T, D, e->H, nthreads);
            dv_layernorm_backward(dres, G + w->ln1_w, G + w->ln1_b, dln, acts + in, a.ln1_mean,
                                  a.ln1_rstd, P + w->ln1_w, R, D);
        }
        if (b > 0) { /* through the pooling into the previous block */
            size_t Tp = block_tokens(e, b - 1);
            memset(dres2, 0, B * Tp * D * sizeof *dres2);
            dv_meanpool_backward(dres2, dres, B, Tp, D, e->stride);
            float *t = dres;
            dres = dres2;
            dres2 = t;
        }
    }
    /* x0 = X + pos: pos collects the sum over users, in user order. */
    float *gpos = G + e->pos;
    for (size_t b = 0; b < B; b++) {
        const float *d = dres + b * N * D;
        for (size_t i = 0; i < N * D; i++)
            gpos[i] += d[i];
        if (dX != NULL)
            for (size_t i = 0; i < N * D; i++)
                dX[b * N * D + i] += d[i];
    }
    return DV365_OK;
}

/* --------------------------------------------------------- accessors -- */

void dv_encoder_layer_io(const dv365_encoder *enc, size_t batch, const float *acts, size_t b,
                         size_t l, const float **in, const float **out, size_t *tokens)
{
    layer_off o;
    size_t in_off = 0;
    walk_train(enc, batch, b, l, &o, &in_off, NULL);
    *in = acts + in_off;
    *out = acts + o.out;
    *tokens = block_tokens(enc, b);
}

const dv_enc_tensor *dv_encoder_tensors(const dv365_encoder *enc, size_t *count)
{
    *count = enc->n_tensors;
    return enc->tensors;
}

float *dv_encoder_params(dv365_encoder *enc) { return enc->params; }
const float *dv_encoder_params_const(const dv365_encoder *enc) { return enc->params; }
size_t dv_encoder_funnel_tokens(const dv365_encoder *enc) { return enc->K_f; }

/* -------------------------------------------------------- public API -- */

dv365_status dv365_encoder_create(const dv365_config *cfg, uint64_t seed, dv365_encoder **out)
{
    dv_clear_error();
    DV_CHECK_NULL(cfg);
    DV_CHECK_NULL(out);
    dv365_encoder *e;
    dv365_status st = encoder_alloc(cfg, &e);
    if (st != DV365_OK)
        return st;
    init_params(e, seed);
    *out = e;
    return DV365_OK;
}

void dv365_encoder_free(dv365_encoder *enc)
{
    if (enc == NULL)
        return;
    dv_free(enc->params);
    dv_free(enc->tensors);
    dv_free(enc->layer);
    dv_free(enc);
}

size_t dv365_encoder_num_tokens(const dv365_encoder *enc) { return enc ? enc->K : 0; }

size_t dv365_encoder_num_params(const dv365_encoder *enc) { return enc ? enc->n_params : 0; }

size_t dv365_encode_workspace_size(const dv365_encoder *enc, size_t batch)
{
    if (enc == NULL)
        return 0;
    infer_layout t = layout_infer(enc, DV_MIN(batch, (size_t)ENC_CHUNK));
    return t.ovf ? SIZE_MAX : floats_to_bytes(t.total);
}

/* The first non-finite value of X, named by user, token and column. */
static dv365_status check_finite(const float *X, size_t batch, size_t N, size_t D)
{
    for (size_t b = 0; b < batch; b++)
        for (size_t n = 0; n < N; n++) {
            const float *row = X + (b * N + n) * D;
            for (size_t d = 0; d < D; d++)
                if (!isfinite(row[d]))
                    return dv_error(DV365_E_NONFINITE,
                                    "dv365_encode: X[user %zu, token %zu, column %zu] is %s", b,
                                    n, d, isnan(row[d]) ? "NaN" : "infinite");
        }
    return DV365_OK;
}

dv365_status dv365_encode(const dv365_encoder *enc, dv365_workspace *ws, size_t batch,
                          const float *X, float *U, int nthreads)
{
    dv_clear_error();
    DV_CHECK_NULL(enc);
    DV_CHECK_NULL(ws);
    DV_CHECK_NULL(X);
    DV_CHECK_NULL(U);
    if (batch == 0)
        return dv_error(DV365_E_INVALID, "dv365_encode: batch must be > 0");
    if (nthreads < 1 || nthreads > 1024)
        return dv_error(DV365_E_INVALID, "dv365_encode: nthreads must be in [1, 1024], got %d",
                        nthreads);
    size_t nd = enc->N * enc->D, kd = enc->K * enc->D, tmp;
    if (!dv_mul_size(batch, nd, &tmp) || !dv_mul_size(batch, kd, &tmp))
        return dv_error(DV365_E_INVALID, "dv365_encode: batch %zu is too large", batch);
    dv365_status st = check_finite(X, batch, enc->N, enc->D);
    if (st != DV365_OK)
        return st;
    size_t bytes = dv365_encode_workspace_size(enc, batch);
    if (bytes == SIZE_MAX)
        return dv_error(DV365_E_NOMEM, "dv365_encode: workspace size overflows");
    float *scratch = dv_workspace_get(ws, bytes);
    if (scratch == NULL)
        return DV365_E_NOMEM;
    for (size_t b0 = 0; b0 < batch; b0 += ENC_CHUNK) {
        size_t nb = DV_MIN((size_t)ENC_CHUNK, batch - b0);
        forward_infer(enc, nb, X + b0 * nd, U + b0 * kd, scratch, nthreads);
    }
    return DV365_OK;
}

/* ------------------------------------------------------------ weights -- */

dv365_status dv365_encoder_load(const dv365_config *cfg, const char *path, dv365_encoder **out)
{
    dv_clear_error();
    DV_CHECK_NULL(cfg);
    DV_CHECK_NULL(path);
    DV_CHECK_NULL(out);
    dv365_encoder *e;
    dv365_status st = encoder_alloc(cfg, &e);
    if (st != DV365_OK)
        return st;
    dv_st_file *f = NULL;
    if ((st = dv_st_read_file(path, &f)) != DV365_OK) {
        dv365_encoder_free(e);
        return dv_error_context(st, "encoder weights");
    }
    memset(e->params, 0, e->n_params * sizeof *e->params);
    for (size_t i = 0; i < e->n_tensors && st == DV365_OK; i++) {
        const dv_enc_tensor *t = &e->tensors[i];
        float *p = e->params + t->offset;
        st = dv_st_copy_f32(f, t->name, t->ndim, t->shape, p);
        if (st != DV365_OK) {
            dv_error_context(st, "encoder weights %s", path);
            break;
        }
        for (size_t j = 0; j < t->numel; j++)
            if (!isfinite(p[j])) {
                st = dv_error(DV365_E_NONFINITE, "encoder weights %s: %s[%zu] is not finite",
                              path, t->name, j);
                break;
            }
    }
    dv_st_free(f);
    if (st != DV365_OK) {
        dv365_encoder_free(e);
        return st;
    }
    *out = e;
    return DV365_OK;
}

dv365_status dv365_encoder_save(const dv365_encoder *enc, const char *path)
{
    dv_clear_error();
    DV_CHECK_NULL(enc);
    DV_CHECK_NULL(path);
    dv_st_writer *w = NULL;
    dv365_status st = dv_st_writer_create(&w);
    if (st != DV365_OK)
        return st;
    for (size_t i = 0; i < enc->n_tensors && st == DV365_OK; i++) {
        const dv_enc_tensor *t = &enc->tensors[i];
        st = dv_st_writer_add(w, t->name, DV_DTYPE_F32, t->ndim, t->shape,
                              enc->params + t->offset);
    }
    if (st == DV365_OK)
        st = dv_st_writer_write(w, path);
    dv_st_writer_free(w);
    return st;
}
