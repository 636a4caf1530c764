/* gatenet.c — GateNet feature-embedding gates (Huang et al., "GateNet:
 * Gating-Enhanced Deep Network for Click-Through Rate Prediction", 2020),
 * "field private": every DV365 token k is a field with its own gate
 * weights.  The paper's gate is g_k = sigmoid(W_k u_k) with W_k a vector
 * (vector-wise) or a [D, D] matrix (bit-wise); we add a bias b_k, which
 * starts at 0 so a fresh gate is exactly the paper's. */
#include "adapter.h"
#include "gemm.h"

#include <string.h>

void dv_gate_vector_forward(float *out, const float *U, const float *w, const float *bias,
                            size_t B, size_t K, size_t D)
{
    for (size_t b = 0; b < B; b++)
        for (size_t k = 0; k < K; k++) {
            const float *u = U + (b * K + k) * D, *wk = w + k * D;
            float z = bias[k];
            for (size_t d = 0; d < D; d++)
                z += wk[d] * u[d];
            float g = dv_sigmoid(z);
            float *o = out + (b * K + k) * D;
            for (size_t d = 0; d < D; d++)
                o[d] = g * u[d];
        }
}

void dv_gate_vector_backward(float *dw, float *dbias, float *dU, const float *dout,
                             const float *U, const float *w, const float *bias, size_t B,
                             size_t K, size_t D)
{
    /* Users in order, so each dw[k] sums over b in a fixed order. */
    for (size_t b = 0; b < B; b++)
        for (size_t k = 0; k < K; k++) {
            size_t at = (b * K + k) * D;
            const float *u = U + at, *dy = dout + at, *wk = w + k * D;
            float z = bias[k], dg = 0.0f;
            for (size_t d = 0; d < D; d++) {
                z += wk[d] * u[d];
                dg += dy[d] * u[d];
            }
            float g = dv_sigmoid(z), dz = dg * g * (1.0f - g);
            if (dw != NULL)
                for (size_t d = 0; d < D; d++)
                    dw[k * D + d] += dz * u[d];
            if (dbias != NULL)
                dbias[k] += dz;
            if (dU != NULL)
                for (size_t d = 0; d < D; d++)
                    dU[at + d] += g * dy[d] + dz * wk[d];
        }
}

/* z[b,k,:] = W[k] U[b,k,:] + bias[k] for all users: per token one GEMM
 * [B, D] x [D, D]^T whose rows are K*D floats apart. */
static void gate_bit_preact(float *z, const float *U, const float *W, const float *bias,
                            size_t B, size_t K, size_t D, int nthreads)
{
    size_t ld = K * D;
    for (size_t b = 0; b < B; b++)
        for (size_t k = 0; k < K; k++)
            memcpy(z + b * ld + k * D, bias + k * D, D * sizeof *z);
    for (size_t k = 0; k < K; k++)
        dv_sgemm(false, true, B, D, D, 1.0f, U + k * D, ld, W + k * D * D, D, 1.0f, z + k * D,
                 ld, nthreads);
}

void dv_gate_bit_forward(float *out, const float *U, const float *W, const float *bias, size_t B,
                         size_t K, size_t D, int nthreads)
{
    gate_bit_preact(out, U, W, bias, B, K, D, nthreads);
    size_t n = B * K * D;
    for (size_t i = 0; i < n; i++)
        out[i] = dv_sigmoid(out[i]) * U[i];
}

void dv_gate_bit_backward(float *dW, float *dbias, float *dU, float *scratch, const float *dout,
                          const float *U, const float *W, const float *bias, size_t B, size_t K,
                          size_t D, int nthreads)
{
    size_t ld = K * D, n = B * ld;
    float *dz = scratch;
    gate_bit_preact(dz, U, W, bias, B, K, D, nthreads);
    /* The direct path g ⊙ dout, then turn each pre-activation into dz. */
    for (size_t i = 0; i < n; i++) {
        float g = dv_sigmoid(dz[i]);
        if (dU != NULL)
            dU[i] += g * dout[i];
        dz[i] = dout[i] * U[i] * g * (1.0f - g);
    }
    for (size_t k = 0; k < K; k++) {
        const float *dzk = dz + k * D, *uk = U + k * D;
        if (dbias != NULL)
            for (size_t b = 0; b < B; b++)
                for (size_t d = 0; d < D; d++)
                    dbias[k * D + d] += dzk[b * ld + d];
        /* dW[k] [D,D] += dz_k^T [D,B] · U_k [B,D]: the sum over users runs
         * inside the GEMM, independent of the thread count. */
        if (dW != NULL)
            dv_sgemm(true, false, D, D, B, 1.0f, dzk, ld, uk, ld, 1.0f, dW + k * D * D, D,
                     nthreads);
        /* dU_k [B,D] += dz_k [B,D] · W[k] [D,D]. */
        if (dU != NULL)
            dv_sgemm(false, false, B, D, D, 1.0f, dzk, ld, W + k * D * D, D, 1.0f, dU + k * D,
                     ld, nthreads);
    }
}
