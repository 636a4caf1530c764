/* nn.h — the neural-network layers of the encoder (internal).
 *
 * Each layer is a pair of plain functions on raw row-major float arrays:
 *   *_forward  writes its outputs (and the statistics backward needs);
 *   *_backward ACCUMULATES (+=) into gradient buffers the caller zeroed,
 *              so a tensor used twice simply receives both contributions.
 * Shapes are explicit arguments; "rows" counts tokens of all users stacked
 * (B users × T tokens), so the linear layers run as one large GEMM.
 * Weights use the PyTorch layout (Linear W [out, in]) so that a state_dict
 * maps onto them one to one.  nthreads is handed to BLIS (gemm.h); all other
 * loops run in a fixed order, so results do not depend on it.
 * Layers never allocate: scratch comes from the caller. */
#ifndef DV365_NN_H
#define DV365_NN_H

#include "internal.h"

/* --- linear (nn_linear.c): y[rows,out] = x[rows,in] · W^T + b -------------- */

/* b may be NULL (no bias). */
void dv_linear_forward(float *y, const float *x, const float *W, const float *b, size_t rows,
                       size_t in, size_t out, int nthreads);
/* dx += dy·W, dW += dy^T·x, db += Σ_rows dy.  dx and db may be NULL. */
void dv_linear_backward(float *dx, float *dW, float *db, const float *dy, const float *x,
                        const float *W, size_t rows, size_t in, size_t out, int nthreads);

/* --- layer norm (nn_layernorm.c), eps 1e-5, over the last axis of [rows,C] - */

#define DV_LAYERNORM_EPS 1e-5f
/* y = (x - mean) * rstd * w + b; mean and rstd [rows] are saved for backward.
 * y may alias x. */
void dv_layernorm_forward(float *y, float *mean, float *rstd, const float *x, const float *w,
                          const float *b, size_t rows, size_t C);
void dv_layernorm_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                           const float *mean, const float *rstd, const float *w, size_t rows,
                           size_t C);

/* --- GELU, erf form (nn_gelu.c): y = x/2 · (1 + erf(x/√2)) ----------------- */

/* y may alias x. */
void dv_gelu_forward(float *y, const float *x, size_t n);
/* h[rows,C] += b (broadcast over rows), then g = GELU(h) (g may alias h):
 * a linear layer's bias folded into its activation, one pass over memory. */
void dv_bias_gelu_forward(float *h, float *g, const float *b, size_t rows, size_t C);
/* dx += dy · gelu'(x). */
void dv_gelu_backward(float *dx, const float *x, const float *dy, size_t n);
/* erf(x) for float, vectorizable, |error| < 5e-7 (exposed for the tests). */
float dv_erf(float x);

/* --- residual add ----------------------------------------------------------- */

/* y = a + r elementwise (y may alias a or r).  Its backward is the identity
 * for both inputs, so the encoder simply lets the gradient flow through. */
static inline void dv_residual_forward(float *y, const float *a, const float *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = a[i] + r[i];
}

/* y[rows,C] = a + r + b (b broadcast over rows; y may alias a or r): the
 * residual add with the bias of the linear layer that produced r folded in. */
void dv_residual_bias_forward(float *y, const float *a, const float *r, const float *b,
                              size_t rows, size_t C);

/* --- multi-head self-attention (nn_attention.c) ------------------------------
 * Exactly nn.MultiheadAttention(D, H) with batch_first inputs, no mask, no
 * dropout: qkv = x·Win^T + bin (Win [3D,D], rows Q,K,V stacked); per user and
 * head h (columns h·hd .. h·hd+hd-1, hd = D/H): P = softmax(Q K^T / √hd),
 * ctx = P V; y = ctx·Wout^T + bout.
 * x, y, ctx are [B·T, D]; qkv is [B·T, 3D]; att holds softmax outputs P:
 * [B, H, T, T] when keep_att (training), otherwise only [T, T] reused for
 * every user and head (inference).  b_out may be NULL (then y lacks that
 * bias: the encoder adds it in the residual add). */
void dv_attention_forward(float *y, float *qkv, float *att, float *ctx, const float *x,
                          const float *w_in, const float *b_in, const float *w_out,
                          const float *b_out, size_t B, size_t T, size_t D, size_t H,
                          bool keep_att, int nthreads);
/* Scratch floats the backward needs: dqkv [B·T,3D] + dctx [B·T,D] + dP [T,T]. */
size_t dv_attention_backward_scratch(size_t B, size_t T, size_t D);
/* From dy, accumulate dx and the weight gradients; att must have been kept. */
void dv_attention_backward(float *dx, float *dw_in, float *db_in, float *dw_out, float *db_out,
                           float *scratch, const float *dy, const float *x, const float *qkv,
                           const float *att, const float *ctx, const float *w_in,
                           const float *w_out, size_t B, size_t T, size_t D, size_t H,
                           int nthreads);

/* --- funnel pooling and LCE (nn_funnel.c) ----------------------------------- */

/* Tokens after mean pooling T tokens with stride s: ceil(T / s). */
static inline size_t dv_meanpool_len(size_t T, size_t s) { return (T + s - 1) / s; }
/* y[b, j] = mean of x[b, j·s .. min(j·s+s, T)-1] (the last window may be
 * shorter: it averages what it has).  x [B,T,D], y [B,ceil(T/s),D]. */
void dv_meanpool_forward(float *y, const float *x, size_t B, size_t T, size_t D, size_t s);
void dv_meanpool_backward(float *dx, const float *dy, size_t B, size_t T, size_t D, size_t s);

/* Linear Compression Encoder: a linear map along the token axis, shared by
 * all D columns.  For each user b: y_b[k,d] = Σ_n W[k,n] x_b[n,d] + bias[k].
 * x [B,N,D] (user stride N·D); y_b starts at y + b·ldy (ldy >= K·D), so the
 * LCE can write straight into its rows of the stacked output. */
void dv_lce_forward(float *y, size_t ldy, const float *x, const float *W, const float *bias,
                    size_t B, size_t N, size_t D, size_t K, int nthreads);
/* dx += W^T dy_b per user (dx may be NULL); dW += Σ_b dy_b x_b^T;
 * dbias[k] += Σ_b Σ_d dy_b[k,d]. */
void dv_lce_backward(float *dx, float *dW, float *dbias, const float *dy, size_t ldy,
                     const float *x, const float *W, size_t B, size_t N, size_t D, size_t K,
                     int nthreads);

#endif
