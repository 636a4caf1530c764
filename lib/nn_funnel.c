/* nn_funnel.c — the two token-axis compressions of the encoder: funnel mean
 * pooling between blocks, and the Linear Compression Encoder (LCE). */
#include "gemm.h"
#include "nn.h"

void dv_meanpool_forward(float *y, const float *x, size_t B, size_t T, size_t D, size_t s)
{
    size_t To = dv_meanpool_len(T, s);
    for (size_t b = 0; b < B; b++) {
        for (size_t j = 0; j < To; j++) {
            size_t t0 = j * s, t1 = DV_MIN(t0 + s, T);
            float *yr = y + (b * To + j) * D;
            const float *xr = x + (b * T + t0) * D;
            for (size_t d = 0; d < D; d++)
                yr[d] = xr[d];
            for (size_t t = t0 + 1; t < t1; t++) {
                xr = x + (b * T + t) * D;
                for (size_t d = 0; d < D; d++)
                    yr[d] += xr[d];
            }
            float inv = 1.0f / (float)(t1 - t0);
            for (size_t d = 0; d < D; d++)
                yr[d] *= inv;
        }
    }
}

void dv_meanpool_backward(float *dx, const float *dy, size_t B, size_t T, size_t D, size_t s)
{
    size_t To = dv_meanpool_len(T, s);
    for (size_t b = 0; b < B; b++) {
        for (size_t j = 0; j < To; j++) {
            size_t t0 = j * s, t1 = DV_MIN(t0 + s, T);
            float inv = 1.0f / (float)(t1 - t0);
            const float *dyr = dy + (b * To + j) * D;
            for (size_t t = t0; t < t1; t++) {
                float *dxr = dx + (b * T + t) * D;
                for (size_t d = 0; d < D; d++)
                    dxr[d] += dyr[d] * inv;
            }
        }
    }
}

void dv_lce_forward(float *y, size_t ldy, const float *x, const float *W, const float *bias,
                    size_t B, size_t N, size_t D, size_t K, int nthreads)
{
    for (size_t b = 0; b < B; b++) {
        float *yb = y + b * ldy;
        for (size_t k = 0; k < K; k++)
            for (size_t d = 0; d < D; d++)
                yb[k * D + d] = bias[k];
        /* y_b[K,D] += W[K,N] · x_b[N,D] */
        dv_sgemm(false, false, K, D, N, 1.0f, W, N, x + b * N * D, D, 1.0f, yb, D, nthreads);
    }
}

void dv_lce_backward(float *dx, float *dW, float *dbias, const float *dy, size_t ldy,
                     const float *x, const float *W, size_t B, size_t N, size_t D, size_t K,
                     int nthreads)
{
    /* Users in a fixed order, so the sums over users are deterministic. */
    for (size_t b = 0; b < B; b++) {
        const float *dyb = dy + b * ldy, *xb = x + b * N * D;
        /* dW[K,N] += dy_b[K,D] · x_b^T[D,N] */
        dv_sgemm(false, true, K, N, D, 1.0f, dyb, D, xb, D, 1.0f, dW, N, nthreads);
        if (dx != NULL) /* dx_b[N,D] += W^T[N,K] · dy_b[K,D] */
            dv_sgemm(true, false, N, D, K, 1.0f, W, N, dyb, D, 1.0f, dx + b * N * D, D,
                     nthreads);
        for (size_t k = 0; k < K; k++) {
            float s = 0.0f;
            for (size_t d = 0; d < D; d++)
                s += dyb[k * D + d];
            dbias[k] += s;
        }
    }
}
