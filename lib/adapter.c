/* adapter.c — the dv365_adapter handle: a downstream model's view of the
 * DV365 embedding (linear projection, GateNet gates, token prefix).
 *
 * Every kind has at most two tensors, a weight and a bias, stored back to
 * back in one parameter block (weight first), so optimizers and gradient
 * all-reduce see one flat array.  The layers themselves are dv_linear_*
 * (nn.h) and the gates of gatenet.c. */
#include "adapter.h"
#include "gemm.h"
#include "nn.h"
#include "safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADAPTER_NAME_MAX 64
#define ADAPTER_MAX_THREADS 1024

struct dv365_adapter {
    dv365_adapter_kind kind;
    char name[ADAPTER_NAME_MAX + 1];
    size_t k, d, out_dim; /* out_dim: P (linear), H (prefix, 0 = none), 0 (gates) */
    size_t out_size;      /* floats of output per user */
    size_t n_weight, n_bias;
    size_t w_ndim, w_shape[3], b_ndim, b_shape[2];
    size_t fan_in; /* of the weight, for the init bound */
    float *params; /* weight [n_weight] then bias [n_bias]; NULL when none */
};

static const char *const kind_names[] = {"linear", "gatenet_vector", "gatenet_bit", "prefix"};

static bool kind_valid(dv365_adapter_kind kind)
{
    return (int)kind >= 0 && (int)kind < 4;
}

static dv365_status check_name(const char *fn, const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > ADAPTER_NAME_MAX)
        return dv_error(DV365_E_INVALID, "%s: adapter name must have 1..%d characters, got %zu",
                        fn, ADAPTER_NAME_MAX, n);
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
        if (!ok)
            return dv_error(DV365_E_INVALID,
                            "%s: adapter name '%s' has character %zu outside [A-Za-z0-9_-]", fn,
                            name, i);
    }
    return DV365_OK;
}

/* Validate kind and sizes and fill in the shapes; nothing is allocated. */
static dv365_status adapter_shape(dv365_adapter *a, const char *fn, dv365_adapter_kind kind,
                                  size_t k, size_t d, size_t out_dim)
{
    if (!kind_valid(kind))
        return dv_error(DV365_E_INVALID, "%s: unknown adapter kind %d", fn, (int)kind);
    if (k == 0 || d == 0)
        return dv_error(DV365_E_INVALID, "%s: k and dim must be > 0, got k=%zu dim=%zu", fn, k,
                        d);
    size_t kd, w = 0, b = 0, out = 0;
    bool ok = dv_mul_size(k, d, &kd);
    a->kind = kind;
    a->k = k;
    a->d = d;
    a->out_dim = out_dim;
    switch (kind) {
    case DV365_ADAPTER_LINEAR:
        if (out_dim == 0)
            return dv_error(DV365_E_INVALID, "%s: a linear adapter needs out_dim (P) > 0", fn);
        ok = ok && dv_mul_size(out_dim, kd, &w);
        b = out = out_dim;
        a->w_ndim = 2, a->w_shape[0] = out_dim, a->w_shape[1] = kd;
        a->b_ndim = 1, a->b_shape[0] = out_dim;
        a->fan_in = kd;
        break;
    case DV365_ADAPTER_GATENET_VECTOR:
    case DV365_ADAPTER_GATENET_BIT:
        if (out_dim != 0)
            return dv_error(DV365_E_INVALID,
                            "%s: a GateNet adapter keeps the shape of U: out_dim must be 0, "
                            "got %zu", fn, out_dim);
        out = kd;
        a->fan_in = d;
        if (kind == DV365_ADAPTER_GATENET_VECTOR) {
            w = kd, b = k;
            a->w_ndim = 2, a->w_shape[0] = k, a->w_shape[1] = d;
            a->b_ndim = 1, a->b_shape[0] = k;
        } else {
            ok = ok && dv_mul_size(kd, d, &w);
            b = kd;
            a->w_ndim = 3, a->w_shape[0] = k, a->w_shape[1] = d, a->w_shape[2] = d;
            a->b_ndim = 2, a->b_shape[0] = k, a->b_shape[1] = d;
        }
        break;
    case DV365_ADAPTER_PREFIX:
        if (out_dim == 0) { /* the tokens as they are */
            out = kd;
            a->w_ndim = a->b_ndim = 0;
        } else {
            ok = ok && dv_mul_size(out_dim, d, &w) && dv_mul_size(k, out_dim, &out);
            b = out_dim;
            a->w_ndim = 2, a->w_shape[0] = out_dim, a->w_shape[1] = d;
            a->b_ndim = 1, a->b_shape[0] = out_dim;
        }
        a->fan_in = d;
        break;
    }
    size_t total;
    if (!ok || __builtin_add_overflow(w, b, &total) ||
        !dv_mul_size(total, sizeof(float), &total))
        return dv_error(DV365_E_NOMEM, "%s: %s adapter of k=%zu dim=%zu out_dim=%zu is too large",
                        fn, kind_names[kind], k, d, out_dim);
    a->n_weight = w;
    a->n_bias = b;
    a->out_size = out;
    return DV365_OK;
}

/* A validated adapter with an uninitialized parameter block. */
static dv365_status adapter_alloc(const char *fn, dv365_adapter_kind kind, const char *name,
                                  size_t k, size_t d, size_t out_dim, dv365_adapter **out)
{
    dv365_status st = check_name(fn, name);
    if (st != DV365_OK)
        return st;
    dv365_adapter shape;
    memset(&shape, 0, sizeof shape);
    if ((st = adapter_shape(&shape, fn, kind, k, d, out_dim)) != DV365_OK)
        return st;
    dv365_adapter *a = dv_calloc(1, sizeof *a);
    if (a == NULL)
        return dv_error(DV365_E_NOMEM, "%s: out of memory", fn);
    *a = shape;
    memcpy(a->name, name, strlen(name) + 1);
    size_t n = a->n_weight + a->n_bias;
    if (n > 0 && (a->params = dv_malloc(n * sizeof(float))) == NULL) {
        dv_free(a);
        return dv_error(DV365_E_NOMEM, "%s: cannot allocate %zu parameters", fn, n);
    }
    *out = a;
    return DV365_OK;
}

dv365_status dv365_adapter_create(dv365_adapter_kind kind, const char *name, size_t k,
                                  size_t dim, size_t out_dim, uint64_t seed,
                                  dv365_adapter **out)
{
    dv_clear_error();
    DV_CHECK_NULL(name);
    DV_CHECK_NULL(out);
    dv365_adapter *a;
    dv365_status st = adapter_alloc(__func__, kind, name, k, dim, out_dim, &a);
    if (st != DV365_OK)
        return st;
    /* PyTorch's nn.Linear rule for the weight, in row-major order; zero
     * biases, so that a fresh gate is the paper's bias-free one. */
    dv_rng rng;
    dv_rng_seed(&rng, seed);
    double bound = 1.0 / sqrt((double)a->fan_in);
    for (size_t i = 0; i < a->n_weight; i++)
        a->params[i] = (float)((2.0 * dv_rng_uniform(&rng) - 1.0) * bound);
    for (size_t i = 0; i < a->n_bias; i++)
        a->params[a->n_weight + i] = 0.0f;
    *out = a;
    return DV365_OK;
}

void dv365_adapter_free(dv365_adapter *a)
{
    if (a == NULL)
        return;
    dv_free(a->params);
    dv_free(a);
}

dv365_status dv365_adapter_info(const dv365_adapter *a, dv365_adapter_kind *kind, size_t *k,
                                size_t *dim, size_t *out_dim)
{
    dv_clear_error();
    DV_CHECK_NULL(a);
    if (kind)
        *kind = a->kind;
    if (k)
        *k = a->k;
    if (dim)
        *dim = a->d;
    if (out_dim)
        *out_dim = a->out_dim;
    return DV365_OK;
}

size_t dv365_adapter_output_size(const dv365_adapter *a) { return a ? a->out_size : 0; }

size_t dv365_adapter_num_params(const dv365_adapter *a)
{
    return a ? a->n_weight + a->n_bias : 0;
}

float *dv365_adapter_params(dv365_adapter *a) { return a ? a->params : NULL; }

size_t dv365_adapter_workspace_size(const dv365_adapter *a, size_t batch)
{
    size_t n = 0;
    if (a == NULL)
        return 0;
    if (a->kind == DV365_ADAPTER_LINEAR) /* the forward's partial sums */
        n = dv_proj_scratch_floats(batch, a->out_dim);
    else if (a->kind == DV365_ADAPTER_GATENET_BIT) /* the backward's [B, K, D] */
        n = dv_mul_size(batch, a->k * a->d, &n) ? n : SIZE_MAX;
    if (n == SIZE_MAX || !dv_mul_size(n, sizeof(float), &n))
        return SIZE_MAX;
    return n;
}

/* ------------------------------------------------------------- checks -- */

/* The first non-finite value of x [batch, rows, cols], named by user, row
 * and column. */
static dv365_status check_finite(const char *fn, const char *what, const char *row_name,
                                 const float *x, size_t batch, size_t rows, size_t cols)
{
    for (size_t b = 0; b < batch; b++)
        for (size_t r = 0; r < rows; r++) {
            const float *p = x + (b * rows + r) * cols;
            for (size_t c = 0; c < cols; c++)
                if (!isfinite(p[c]))
                    return dv_error(DV365_E_NONFINITE, "%s: %s[user %zu, %s %zu, column %zu] is %s",
                                    fn, what, b, row_name, r, c,
                                    isnan(p[c]) ? "NaN" : "infinite");
        }
    return DV365_OK;
}

/* Common argument checks of forward and backward. */
static dv365_status check_call(const char *fn, const dv365_adapter *a, size_t batch,
                               const float *U, int nthreads)
{
    if (batch == 0)
        return dv_error(DV365_E_INVALID, "%s: batch must be > 0", fn);
    if (nthreads < 1 || nthreads > ADAPTER_MAX_THREADS)
        return dv_error(DV365_E_INVALID, "%s: nthreads must be in [1, %d], got %d", fn,
                        ADAPTER_MAX_THREADS, nthreads);
    size_t t;
    if (!dv_mul_size(batch, a->k * a->d, &t) || !dv_mul_size(batch, a->out_size, &t) ||
        !dv_mul_size(t, sizeof(float), &t))
        return dv_error(DV365_E_INVALID, "%s: batch %zu is too large", fn, batch);
    return check_finite(fn, "U", "token", U, batch, a->k, a->d);
}

/* The call's scratch from ws; only for kinds that need some (NULL with the
 * error recorded on failure). */
static float *adapter_scratch(const dv365_adapter *a, dv365_workspace *ws, size_t batch)
{
    size_t bytes = dv365_adapter_workspace_size(a, batch);
    if (bytes == 0 || bytes == SIZE_MAX) {
        dv_error(DV365_E_NOMEM, "adapter: workspace size overflows for batch %zu", batch);
        return NULL;
    }
    return dv_workspace_get(ws, bytes);
}

/* ---------------------------------------------------- forward/backward -- */

dv365_status dv365_adapter_forward(const dv365_adapter *a, dv365_workspace *ws, size_t batch,
                                   const float *U, float *out, int nthreads)
{
    dv_clear_error();
    DV_CHECK_NULL(a);
    DV_CHECK_NULL(ws);
    DV_CHECK_NULL(U);
    DV_CHECK_NULL(out);
    dv365_status st = check_call(__func__, a, batch, U, nthreads);
    if (st != DV365_OK)
        return st;
    const float *W = a->params, *bias = a->params ? a->params + a->n_weight : NULL;
    size_t K = a->k, D = a->d;
    switch (a->kind) {
    case DV365_ADAPTER_LINEAR: { /* vec(U) of all users [B, K*D] · W^T */
        float *scratch = adapter_scratch(a, ws, batch);
        if (scratch == NULL)
            return DV365_E_NOMEM;
        dv_proj_forward(out, scratch, U, W, bias, batch, K * D, a->out_dim, nthreads);
        break;
    }
    case DV365_ADAPTER_GATENET_VECTOR:
        dv_gate_vector_forward(out, U, W, bias, batch, K, D);
        break;
    case DV365_ADAPTER_GATENET_BIT:
        dv_gate_bit_forward(out, U, W, bias, batch, K, D, nthreads);
        break;
    case DV365_ADAPTER_PREFIX:
        if (a->out_dim == 0) /* the tokens as they are */
            memcpy(out, U, batch * K * D * sizeof *out);
        else /* all tokens of all users as rows of one GEMM */
            dv_linear_forward(out, U, W, bias, batch * K, D, a->out_dim, nthreads);
        break;
    }
    return DV365_OK;
}

/* dx += dy·W and, when dW is given, the weight and bias gradients. */
static void linear_backward(float *dx, float *dW, float *db, const float *dy, const float *x,
                            const float *W, size_t rows, size_t in, size_t out, int nthreads)
{
    if (dW != NULL)
        dv_linear_backward(dx, dW, db, dy, x, W, rows, in, out, nthreads);
    else if (dx != NULL)
        dv_sgemm(false, false, rows, in, out, 1.0f, dy, out, W, in, 1.0f, dx, in, nthreads);
}

dv365_status dv365_adapter_backward(const dv365_adapter *a, dv365_workspace *ws, size_t batch,
                                    const float *U, const float *dout, float *grad_params,
                                    float *dU, int nthreads)
{
    dv_clear_error();
    DV_CHECK_NULL(a);
    DV_CHECK_NULL(ws);
    DV_CHECK_NULL(U);
    DV_CHECK_NULL(dout);
    if (grad_params == NULL && dU == NULL)
        return dv_error(DV365_E_NULL, "%s: grad_params and dU are both NULL: nothing to compute",
                        __func__);
    dv365_status st = check_call(__func__, a, batch, U, nthreads);
    if (st != DV365_OK)
        return st;
    size_t K = a->k, D = a->d;
    bool per_token = a->kind != DV365_ADAPTER_LINEAR;
    st = check_finite(__func__, "dout", per_token ? "token" : "row", dout, batch,
                      per_token ? K : 1, per_token ? a->out_size / K : a->out_size);
    if (st != DV365_OK)
        return st;
    const float *W = a->params, *bias = a->params ? a->params + a->n_weight : NULL;
    float *dW = a->params ? grad_params : NULL;
    float *db = dW ? dW + a->n_weight : NULL;
    switch (a->kind) {
    case DV365_ADAPTER_LINEAR:
        linear_backward(dU, dW, db, dout, U, W, batch, K * D, a->out_dim, nthreads);
        break;
    case DV365_ADAPTER_GATENET_VECTOR:
        dv_gate_vector_backward(dW, db, dU, dout, U, W, bias, batch, K, D);
        break;
    case DV365_ADAPTER_GATENET_BIT: {
        float *scratch = adapter_scratch(a, ws, batch);
        if (scratch == NULL)
            return DV365_E_NOMEM;
        dv_gate_bit_backward(dW, db, dU, scratch, dout, U, W, bias, batch, K, D, nthreads);
        break;
    }
    case DV365_ADAPTER_PREFIX:
        if (a->out_dim == 0) {
            if (dU != NULL)
                for (size_t i = 0, n = batch * K * D; i < n; i++)
                    dU[i] += dout[i];
        } else {
            linear_backward(dU, dW, db, dout, U, W, batch * K, D, a->out_dim, nthreads);
        }
        break;
    }
    return DV365_OK;
}

/* -------------------------------------------------------------- files -- */

static void tensor_name(char *buf, size_t cap, const char *name, const char *what)
{
    snprintf(buf, cap, "adapter.%s.%s", name, what);
}

dv365_status dv365_adapter_save(const dv365_adapter *a, const char *path)
{
    dv_clear_error();
    DV_CHECK_NULL(a);
    DV_CHECK_NULL(path);
    dv_st_writer *w = NULL;
    dv365_status st = dv_st_writer_create(&w);
    if (st != DV365_OK)
        return st;
    char key[ADAPTER_NAME_MAX + 32], val[32];
    const char *keys[] = {"k", "dim", "out_dim"};
    size_t vals[] = {a->k, a->d, a->out_dim};
    tensor_name(key, sizeof key, a->name, "kind");
    st = dv_st_writer_set_metadata(w, key, kind_names[a->kind]);
    for (int i = 0; i < 3 && st == DV365_OK; i++) {
        tensor_name(key, sizeof key, a->name, keys[i]);
        snprintf(val, sizeof val, "%zu", vals[i]);
        st = dv_st_writer_set_metadata(w, key, val);
    }
    if (st == DV365_OK && a->n_weight > 0) {
        tensor_name(key, sizeof key, a->name, "weight");
        st = dv_st_writer_add(w, key, DV_DTYPE_F32, a->w_ndim, a->w_shape, a->params);
    }
    if (st == DV365_OK && a->n_bias > 0) {
        tensor_name(key, sizeof key, a->name, "bias");
        st = dv_st_writer_add(w, key, DV_DTYPE_F32, a->b_ndim, a->b_shape,
                              a->params + a->n_weight);
    }
    if (st == DV365_OK)
        st = dv_st_writer_write(w, path);
    dv_st_writer_free(w);
    if (st != DV365_OK)
        dv_error_context(st, "dv365_adapter_save %s", path);
    return st;
}

/* A metadata entry adapter.<name>.<what> as a size (plain decimal). */
static dv365_status meta_size(const dv_st_file *f, const char *path, const char *name,
                              const char *what, size_t *out)
{
    char key[ADAPTER_NAME_MAX + 32];
    tensor_name(key, sizeof key, name, what);
    const char *v = dv_st_metadata(f, key);
    if (v == NULL)
        return dv_error(DV365_E_FORMAT, "dv365_adapter_load %s: metadata '%s' is missing", path,
                        key);
    bool digits = v[0] != '\0' && strlen(v) <= 19;
    for (const char *p = v; *p && digits; p++)
        digits = *p >= '0' && *p <= '9';
    if (!digits)
        return dv_error(DV365_E_FORMAT,
                        "dv365_adapter_load %s: metadata '%s' = '%s' is not a size", path, key,
                        v);
    *out = (size_t)strtoull(v, NULL, 10);
    return DV365_OK;
}

/* The tensor exists and holds n floats (its exact shape is checked when
 * it is copied). */
static dv365_status precheck(const dv_st_file *f, const char *path, const char *name,
                             const char *what, size_t n)
{
    char key[ADAPTER_NAME_MAX + 32];
    tensor_name(key, sizeof key, name, what);
    const dv_tensor_view *v = dv_st_find(f, key);
    if (v == NULL)
        return dv_error(DV365_E_NOT_FOUND, "dv365_adapter_load %s: tensor '%s' is missing",
                        path, key);
    if (v->dtype != DV_DTYPE_F32)
        return dv_error(DV365_E_FORMAT, "dv365_adapter_load %s: tensor '%s' is %s, not F32",
                        path, key, dv_dtype_name(v->dtype));
    if (v->nbytes / sizeof(float) != n)
        return dv_error(DV365_E_MISMATCH,
                        "dv365_adapter_load %s: tensor '%s' has %zu values, the metadata "
                        "sizes need %zu", path, key, v->nbytes / sizeof(float), n);
    return DV365_OK;
}

static dv365_status load_tensor(const dv_st_file *f, const char *path, const char *name,
                                const char *what, size_t ndim, const size_t *shape, float *dst,
                                size_t n)
{
    char key[ADAPTER_NAME_MAX + 32];
    tensor_name(key, sizeof key, name, what);
    dv365_status st = dv_st_copy_f32(f, key, ndim, shape, dst);
    if (st != DV365_OK)
        return dv_error_context(st, "dv365_adapter_load %s", path);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(dst[i]))
            return dv_error(DV365_E_NONFINITE, "dv365_adapter_load %s: %s[%zu] is not finite",
                            path, key, i);
    return DV365_OK;
}

dv365_status dv365_adapter_load(const char *path, const char *name, dv365_adapter **out)
{
    dv_clear_error();
    DV_CHECK_NULL(path);
    DV_CHECK_NULL(name);
    DV_CHECK_NULL(out);
    dv365_status st = check_name(__func__, name);
    if (st != DV365_OK)
        return st;
    dv_st_file *f = NULL;
    if ((st = dv_st_read_file(path, &f)) != DV365_OK)
        return dv_error_context(st, "dv365_adapter_load");
    char key[ADAPTER_NAME_MAX + 32];
    tensor_name(key, sizeof key, name, "kind");
    const char *kind_s = dv_st_metadata(f, key);
    int kind = -1;
    size_t k = 0, d = 0, out_dim = 0;
    dv365_adapter *a = NULL;
    if (kind_s == NULL) {
        st = dv_error(DV365_E_NOT_FOUND, "dv365_adapter_load %s: no adapter named '%s' "
                      "(metadata '%s' is missing)", path, name, key);
        goto done;
    }
    for (int i = 0; i < 4; i++)
        if (strcmp(kind_s, kind_names[i]) == 0)
            kind = i;
    if (kind < 0) {
        st = dv_error(DV365_E_FORMAT, "dv365_adapter_load %s: unknown adapter kind '%s' in '%s'",
                      path, kind_s, key);
        goto done;
    }
    if ((st = meta_size(f, path, name, "k", &k)) != DV365_OK ||
        (st = meta_size(f, path, name, "dim", &d)) != DV365_OK ||
        (st = meta_size(f, path, name, "out_dim", &out_dim)) != DV365_OK)
        goto done;
    dv365_adapter shape;
    memset(&shape, 0, sizeof shape);
    if ((st = adapter_shape(&shape, __func__, (dv365_adapter_kind)kind, k, d, out_dim)) !=
        DV365_OK) {
        /* Sizes come from the file: a bad combination is a bad file. */
        if (st == DV365_E_INVALID)
            st = dv_error_context(DV365_E_FORMAT, "%s", path);
        goto done;
    }
    /* Check the tensors before allocating, so that the sizes a file claims
     * are bounded by the file itself. */
    if ((shape.n_weight > 0 &&
         (st = precheck(f, path, name, "weight", shape.n_weight)) != DV365_OK) ||
        (shape.n_bias > 0 && (st = precheck(f, path, name, "bias", shape.n_bias)) != DV365_OK))
        goto done;
    if ((st = adapter_alloc(__func__, (dv365_adapter_kind)kind, name, k, d, out_dim, &a)) !=
        DV365_OK)
        goto done;
    if (a->n_weight > 0)
        st = load_tensor(f, path, name, "weight", a->w_ndim, a->w_shape, a->params,
                         a->n_weight);
    if (st == DV365_OK && a->n_bias > 0)
        st = load_tensor(f, path, name, "bias", a->b_ndim, a->b_shape, a->params + a->n_weight,
                         a->n_bias);
done:
    dv_st_free(f);
    if (st != DV365_OK) {
        dv365_adapter_free(a);
        return st;
    }
    *out = a;
    return DV365_OK;
}
