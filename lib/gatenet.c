/* gatenet.c — GateNet feature-embedding gates (Huang et al., "GateNet:
 * Gating-Enhanced Deep Network for Click-Through Rate Prediction", 2020),
 * "field private": every DV365 token k is a field with its own gate
 * weights.  The paper's gate is g_k = sigmoid(W_k u_k) with W_k a vector
 * (vector-wise) or a [D, D] matrix (bit-wise); we add a bias b_k, which
 * starts at 0 so a fresh gate is exactly the paper's. */
#include "adapter.h"
#include "gemm.h"
#include "parallel.h"

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

/* The bit-wise gate works token by token: per token one GEMM over all
 * users, [B, D] x [D, D]^T, whose rows are K*D floats apart.  Tokens are
 * independent, so threads take whole tokens (each GEMM single-threaded):
 * that avoids a BLIS thread team per small GEMM, and the result is the
 * same for any split. */
typedef struct gate_bit_job {
    float *out, *dW, *dbias, *dU, *scratch;
    const float *dout, *U, *W, *bias;
    size_t B, K, D;
} gate_bit_job;

/* z[b,k,:] = W[k] U[b,k,:] + bias[k] for every user b. */
static void gate_bit_preact(float *z, const gate_bit_job *j, size_t k)
{
    size_t ld = j->K * j->D, D = j->D;
    for (size_t b = 0; b < j->B; b++)
        memcpy(z + b * ld + k * D, j->bias + k * D, D * sizeof *z);
    dv_sgemm(false, true, j->B, D, D, 1.0f, j->U + k * D, ld, j->W + k * D * D, D, 1.0f,
             z + k * D, ld, 1);
}

static void gate_bit_forward_tokens(void *ctx, size_t k0, size_t k1, int chunk)
{
    DV_UNUSED(chunk);
    const gate_bit_job *j = ctx;
    size_t ld = j->K * j->D, D = j->D;
    for (size_t k = k0; k < k1; k++) {
        gate_bit_preact(j->out, j, k);
        for (size_t b = 0; b < j->B; b++) {
            float *o = j->out + b * ld + k * D;
            const float *u = j->U + b * ld + k * D;
            for (size_t d = 0; d < D; d++)
                o[d] = dv_sigmoid(o[d]) * u[d];
        }
    }
}

void dv_gate_bit_forward(float *out, const float *U, const float *W, const float *bias, size_t B,
                         size_t K, size_t D, int nthreads)
{
    gate_bit_job j = {.out = out, .U = U, .W = W, .bias = bias, .B = B, .K = K, .D = D};
    dv_parallel_for(nthreads, K, gate_bit_forward_tokens, &j);
}

static void gate_bit_backward_tokens(void *ctx, size_t k0, size_t k1, int chunk)
{
    DV_UNUSED(chunk);
    const gate_bit_job *j = ctx;
    size_t ld = j->K * j->D, D = j->D, B = j->B;
    for (size_t k = k0; k < k1; k++) {
        float *dz = j->scratch + k * D; /* token k of user b at dz + b * ld */
        gate_bit_preact(j->scratch, j, k);
        /* The direct path g ⊙ dout, then turn each pre-activation into dz. */
        for (size_t b = 0; b < B; b++)
            for (size_t d = 0; d < D; d++) {
                size_t i = b * ld + k * D + d;
                float g = dv_sigmoid(dz[b * ld + d]);
                if (j->dU != NULL)
                    j->dU[i] += g * j->dout[i];
                dz[b * ld + d] = j->dout[i] * j->U[i] * g * (1.0f - g);
            }
        if (j->dbias != NULL)
            for (size_t b = 0; b < B; b++)
                for (size_t d = 0; d < D; d++)
                    j->dbias[k * D + d] += dz[b * ld + d];
        /* dW[k] [D,D] += dz_k^T [D,B] · U_k [B,D]: the sum over users runs
         * inside one GEMM. */
        if (j->dW != NULL)
            dv_sgemm(true, false, D, D, B, 1.0f, dz, ld, j->U + k * D, ld, 1.0f,
                     j->dW + k * D * D, D, 1);
        /* dU_k [B,D] += dz_k [B,D] · W[k] [D,D]. */
        if (j->dU != NULL)
            dv_sgemm(false, false, B, D, D, 1.0f, dz, ld, j->W + k * D * D, D, 1.0f,
                     j->dU + k * D, ld, 1);
    }
}

void dv_gate_bit_backward(float *dW, float *dbias, float *dU, float *scratch, const float *dout,
                          const float *U, const float *W, const float *bias, size_t B, size_t K,
                          size_t D, int nthreads)
{
    gate_bit_job j = {.dW = dW, .dbias = dbias, .dU = dU, .scratch = scratch, .dout = dout,
                      .U = U, .W = W, .bias = bias, .B = B, .K = K, .D = D};
    dv_parallel_for(nthreads, K, gate_bit_backward_tokens, &j);
}
