/* nn_attention.c — multi-head self-attention, as nn.MultiheadAttention. */
#include "gemm.h"
#include "nn.h"
#include "nn_simd.h"

#include <math.h>
#include <string.h>

/* Row-wise softmax of a [T,T] block, in place, stabilized by the row max. */
DV_NN_CLONES static void softmax_rows(float *p, size_t T)
{
    for (size_t i = 0; i < T; i++) {
        float *row = p + i * T;
        size_t j = 0, r = T % 16, n16 = T - r;
        nn_v16 vm = nn_splat(-INFINITY);
        for (j = 0; j < n16; j += 16)
            vm = nn_max(vm, nn_load(row + j));
        float mx = nn_hmax(vm);
        for (j = n16; j < T; j++)
            mx = row[j] > mx ? row[j] : mx;
        nn_v16 vs = nn_splat(0.0f);
        for (j = 0; j < n16; j += 16) {
            nn_v16 e = nn_exp(nn_load(row + j) - mx);
            nn_store(row + j, e);
            vs += e;
        }
        float sum = nn_hsum(vs);
        if (r) {
            nn_v16 e = nn_exp(nn_load_part(row + n16, r, 0.0f) - mx);
            nn_store_part(row + n16, r, e);
            for (size_t k = 0; k < r; k++)
                sum += e[k];
        }
        float inv = 1.0f / sum;
        for (j = 0; j < n16; j += 16)
            nn_store(row + j, nn_load(row + j) * inv);
        for (j = n16; j < T; j++)
            row[j] *= inv;
    }
}

/* Softmax backward, row by row, in place on dp: dS = P ⊙ (dP - Σ_j dP·P). */
DV_NN_CLONES static void softmax_backward_rows(float *dp, const float *p, size_t T)
{
    for (size_t i = 0; i < T; i++) {
        const float *pr = p + i * T;
        float *dr = dp + i * T;
        size_t j, n16 = T - T % 16;
        nn_v16 acc = nn_splat(0.0f);
        for (j = 0; j < n16; j += 16)
            acc += nn_load(pr + j) * nn_load(dr + j);
        float dot = nn_hsum(acc);
        for (j = n16; j < T; j++)
            dot += pr[j] * dr[j];
        for (j = 0; j < n16; j += 16)
            nn_store(dr + j, nn_load(pr + j) * (nn_load(dr + j) - dot));
        for (j = n16; j < T; j++)
            dr[j] = pr[j] * (dr[j] - dot);
    }
}

void dv_attention_forward(float *y, float *qkv, float *att, float *ctx, const float *x,
                          const float *w_in, const float *b_in, const float *w_out,
                          const float *b_out, size_t B, size_t T, size_t D, size_t H,
                          bool keep_att, int nthreads)
{
    size_t hd = D / H, ld = 3 * D;
    float scale = 1.0f / sqrtf((float)hd);
    /* One GEMM projects the tokens of every user to Q, K and V at once. */
    dv_linear_forward(qkv, x, w_in, b_in, B * T, D, 3 * D, nthreads);
    for (size_t b = 0; b < B; b++) {
        for (size_t h = 0; h < H; h++) {
            const float *q = qkv + b * T * ld + h * hd;
            const float *k = q + D, *v = q + 2 * D;
            float *p = keep_att ? att + (b * H + h) * T * T : att;
            /* P = softmax(scale · Q K^T), then ctx_h = P V. */
            dv_sgemm(false, true, T, T, hd, scale, q, ld, k, ld, 0.0f, p, T, nthreads);
            softmax_rows(p, T);
            dv_sgemm(false, false, T, hd, T, 1.0f, p, T, v, ld, 0.0f, ctx + b * T * D + h * hd,
                     D, nthreads);
        }
    }
    dv_linear_forward(y, ctx, w_out, b_out, B * T, D, D, nthreads);
}

size_t dv_attention_backward_scratch(size_t B, size_t T, size_t D)
{
    return B * T * 3 * D + B * T * D + T * T;
}

void dv_attention_backward(float *dx, float *dw_in, float *db_in, float *dw_out, float *db_out,
                           float *scratch, const float *dy, const float *x, const float *qkv,
                           const float *att, const float *ctx, const float *w_in,
                           const float *w_out, size_t B, size_t T, size_t D, size_t H,
                           int nthreads)
{
    size_t hd = D / H, ld = 3 * D, rows = B * T;
    float scale = 1.0f / sqrtf((float)hd);
    float *dqkv = scratch, *dctx = dqkv + rows * ld, *dp = dctx + rows * D;
    memset(dqkv, 0, rows * ld * sizeof *dqkv);
    memset(dctx, 0, rows * D * sizeof *dctx);

    dv_linear_backward(dctx, dw_out, db_out, dy, ctx, w_out, rows, D, D, nthreads);
    for (size_t b = 0; b < B; b++) {
        for (size_t h = 0; h < H; h++) {
            size_t off = b * T * ld + h * hd;
            const float *q = qkv + off, *k = q + D, *v = q + 2 * D;
            float *dq = dqkv + off, *dk = dq + D, *dv = dq + 2 * D;
            const float *p = att + (b * H + h) * T * T;
            const float *dc = dctx + b * T * D + h * hd;
            /* ctx = P V:  dP = dctx V^T,  dV += P^T dctx. */
            dv_sgemm(false, true, T, T, hd, 1.0f, dc, D, v, ld, 0.0f, dp, T, nthreads);
            dv_sgemm(true, false, T, hd, T, 1.0f, p, T, dc, D, 1.0f, dv, ld, nthreads);
            softmax_backward_rows(dp, p, T);
            /* S = scale · Q K^T:  dQ += scale · dS K,  dK += scale · dS^T Q. */
            dv_sgemm(false, false, T, hd, T, scale, dp, T, k, ld, 1.0f, dq, ld, nthreads);
            dv_sgemm(true, false, T, hd, T, scale, dp, T, q, ld, 1.0f, dk, ld, nthreads);
        }
    }
    dv_linear_backward(dx, dw_in, db_in, dqkv, x, w_in, rows, D, 3 * D, nthreads);
}
