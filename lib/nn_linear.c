/* nn_linear.c — fully connected layer, y = x·W^T + b with W [out, in]. */
#include "gemm.h"
#include "nn.h"
#include "nn_simd.h"

#include <string.h>

void dv_linear_forward(float *y, const float *x, const float *W, const float *b, size_t rows,
                       size_t in, size_t out, int nthreads)
{
    /* Start from the bias and let the GEMM add x·W^T onto it (beta = 1). */
    float beta = 0.0f;
    if (b != NULL) {
        for (size_t r = 0; r < rows; r++)
            memcpy(y + r * out, b, out * sizeof *b);
        beta = 1.0f;
    }
    dv_sgemm(false, true, rows, out, in, 1.0f, x, in, W, in, beta, y, out, nthreads);
}

/* db[o] += Σ_r dy[r, o], rows in order (16 columns at a time). */
DV_NN_CLONES static void sum_rows(float *db, const float *dy, size_t rows, size_t out)
{
    size_t o = 0;
    for (; o + 16 <= out; o += 16) {
        nn_v16 acc = nn_load(db + o);
        for (size_t r = 0; r < rows; r++)
            acc += nn_load(dy + r * out + o);
        nn_store(db + o, acc);
    }
    for (; o < out; o++)
        for (size_t r = 0; r < rows; r++)
            db[o] += dy[r * out + o];
}

DV_NN_CLONES void dv_residual_bias_forward(float *y, const float *a, const float *r,
                                           const float *b, size_t rows, size_t C)
{
    for (size_t row = 0; row < rows; row++) {
        size_t o = row * C, i = 0;
        for (; i + 16 <= C; i += 16)
            nn_store(y + o + i, nn_load(a + o + i) + nn_load(r + o + i) + nn_load(b + i));
        for (; i < C; i++)
            y[o + i] = a[o + i] + r[o + i] + b[i];
    }
}

void dv_linear_backward(float *dx, float *dW, float *db, const float *dy, const float *x,
                        const float *W, size_t rows, size_t in, size_t out, int nthreads)
{
    if (dx != NULL) /* dx[rows,in] += dy[rows,out] · W[out,in] */
        dv_sgemm(false, false, rows, in, out, 1.0f, dy, out, W, in, 1.0f, dx, in, nthreads);
    /* dW[out,in] += dy^T · x: the sum runs over rows, inside one GEMM, so its
     * order does not depend on the thread count. */
    dv_sgemm(true, false, out, in, rows, 1.0f, dy, out, x, in, 1.0f, dW, in, nthreads);
    if (db != NULL)
        sum_rows(db, dy, rows, out);
}
