/* adapter_proj.c — y = x·W^T + b for the linear adapter, summed in an
 * order fixed per output element.
 *
 * The linear adapter is K·D = 14848 inputs -> P outputs, and at request
 * time it runs on ONE user: a matrix-vector product that a packed GEMM
 * handles badly (it copies all of W into panels on every call).  Here each
 * output is a dot product kept in 16 partial sums, lane j summing the
 * products of columns j, j+16, j+32, ... in column order; the lanes are
 * then added in lane order and the bias last.  That order depends on
 * nothing but the column count, so a user's output is bitwise the same
 * alone or in any batch, with any thread count, and with any of the
 * AVX-512 / AVX2 / SSE clones (products and sums are rounded one by one:
 * the C11 mode does not contract them into FMAs).
 *
 * For batches, columns are walked in chunks of PROJ_KC so that the chunk of
 * every user and of W stays in L2 while all (user, output) pairs use it;
 * the 16 partial sums of each pair wait in the scratch between chunks. */
#include "adapter.h"
#include "nn_simd.h"
#include "parallel.h"

#include <string.h>

#define PROJ_KC 1024 /* columns per chunk: a multiple of 16 */
#define PROJ_RB 64   /* rows per block: bounds the scratch */

size_t dv_proj_scratch_floats(size_t rows, size_t out)
{
    size_t n;
    return dv_mul_size(DV_MIN(rows, (size_t)PROJ_RB), out, &n) && dv_mul_size(n, 16, &n)
               ? n
               : SIZE_MAX;
}

/* The tiles: acc (16 lanes per (row, output) pair, row stride acc_ld)
 * += x_i · W_j over nv full vectors of 16 columns and a last one of tail
 * (< 16) columns, zero-filled (adding 0·0 changes no lane).  Written out
 * with named accumulators so that they stay in registers. */
#define PROJ_LOADS(i, n, ld) nn_v16 x##i = (n) < 16 ? nn_load_part(x + (i) * ldx + at, n, 0.0f) \
                                                    : nn_load(x + (i) * ldx + at)
#define PROJ_LOADW(j, n) nn_v16 w##j = (n) < 16 ? nn_load_part(W + (j) * ldw + at, n, 0.0f) \
                                                : nn_load(W + (j) * ldw + at)

/* 2 rows x 4 outputs: 8 sums, 6 loads per 16 columns. */
NN_INLINE void proj_tile_2x4(float *acc, size_t acc_ld, const float *x, size_t ldx,
                             const float *W, size_t ldw, size_t nv, size_t tail)
{
    float *r0 = acc, *r1 = acc + acc_ld;
    nn_v16 a00 = nn_load(r0), a01 = nn_load(r0 + 16), a02 = nn_load(r0 + 32),
           a03 = nn_load(r0 + 48), a10 = nn_load(r1), a11 = nn_load(r1 + 16),
           a12 = nn_load(r1 + 32), a13 = nn_load(r1 + 48);
    for (size_t v = 0; v <= nv; v++) {
        size_t at = v * 16, n = v < nv ? 16 : tail;
        if (n == 0)
            break;
        PROJ_LOADS(0, n, ldx);
        PROJ_LOADS(1, n, ldx);
        PROJ_LOADW(0, n);
        PROJ_LOADW(1, n);
        PROJ_LOADW(2, n);
        PROJ_LOADW(3, n);
        a00 += x0 * w0, a01 += x0 * w1, a02 += x0 * w2, a03 += x0 * w3;
        a10 += x1 * w0, a11 += x1 * w1, a12 += x1 * w2, a13 += x1 * w3;
    }
    nn_store(r0, a00), nn_store(r0 + 16, a01), nn_store(r0 + 32, a02), nn_store(r0 + 48, a03);
    nn_store(r1, a10), nn_store(r1 + 16, a11), nn_store(r1 + 32, a12), nn_store(r1 + 48, a13);
}

/* 1 row x 4 outputs (the batch-1 request path: bound by reading W). */
NN_INLINE void proj_tile_1x4(float *acc, const float *x, size_t ldx, const float *W,
                             size_t ldw, size_t nv, size_t tail)
{
    nn_v16 a0 = nn_load(acc), a1 = nn_load(acc + 16), a2 = nn_load(acc + 32),
           a3 = nn_load(acc + 48);
    for (size_t v = 0; v <= nv; v++) {
        size_t at = v * 16, n = v < nv ? 16 : tail;
        if (n == 0)
            break;
        PROJ_LOADS(0, n, ldx);
        PROJ_LOADW(0, n);
        PROJ_LOADW(1, n);
        PROJ_LOADW(2, n);
        PROJ_LOADW(3, n);
        a0 += x0 * w0, a1 += x0 * w1, a2 += x0 * w2, a3 += x0 * w3;
    }
    nn_store(acc, a0), nn_store(acc + 16, a1), nn_store(acc + 32, a2), nn_store(acc + 48, a3);
}

/* 1 row x 1 output (the last outputs when out is not a multiple of 4). */
NN_INLINE void proj_tile_1x1(float *acc, const float *x, size_t ldx, const float *W,
                             size_t ldw, size_t nv, size_t tail)
{
    nn_v16 a0 = nn_load(acc);
    for (size_t v = 0; v <= nv; v++) {
        size_t at = v * 16, n = v < nv ? 16 : tail;
        if (n == 0)
            break;
        PROJ_LOADS(0, n, ldx);
        PROJ_LOADW(0, n);
        a0 += x0 * w0;
    }
    nn_store(acc, a0);
    DV_UNUSED(ldx), DV_UNUSED(ldw);
}

/* One chunk of columns [k0, k0+kn) for rows [0, nu) and outputs [p0, p1). */
DV_NN_CLONES static void proj_chunk(float *acc, size_t out, const float *x, size_t in,
                                    const float *W, size_t nu, size_t p0, size_t p1, size_t k0,
                                    size_t kn)
{
    size_t nv = kn / 16, tail = kn % 16, acc_ld = out * 16;
    size_t p = p0;
    for (; p + 4 <= p1; p += 4) {
        const float *w = W + p * in + k0;
        size_t u = 0;
        for (; u + 2 <= nu; u += 2)
            proj_tile_2x4(acc + (u * out + p) * 16, acc_ld, x + u * in + k0, in, w, in, nv,
                          tail);
        for (; u < nu; u++)
            proj_tile_1x4(acc + (u * out + p) * 16, x + u * in + k0, in, w, in, nv, tail);
    }
    for (; p < p1; p++)
        for (size_t u = 0; u < nu; u++)
            proj_tile_1x1(acc + (u * out + p) * 16, x + u * in + k0, in, W + p * in + k0, in,
                          nv, tail);
}

typedef struct proj_job {
    float *y, *acc;
    const float *x, *W, *b;
    size_t nu, in, out;
} proj_job;

/* Outputs [p0, p1) of every row of the block: all chunks, then the fold. */
static void proj_range(void *ctx, size_t p0, size_t p1, int chunk)
{
    DV_UNUSED(chunk);
    const proj_job *j = ctx;
    for (size_t u = 0; u < j->nu; u++)
        memset(j->acc + (u * j->out + p0) * 16, 0, (p1 - p0) * 16 * sizeof(float));
    for (size_t k0 = 0; k0 < j->in; k0 += PROJ_KC)
        proj_chunk(j->acc, j->out, j->x, j->in, j->W, j->nu, p0, p1, k0,
                   DV_MIN((size_t)PROJ_KC, j->in - k0));
    for (size_t u = 0; u < j->nu; u++)
        for (size_t p = p0; p < p1; p++) {
            const float *a = j->acc + (u * j->out + p) * 16;
            float s = 0.0f;
            for (int l = 0; l < 16; l++)
                s += a[l];
            j->y[u * j->out + p] = j->b ? s + j->b[p] : s;
        }
}

/* Groups [g0, g1) of 4 outputs (so that threads keep the tiles whole; the
 * result does not depend on the split). */
static void proj_groups(void *ctx, size_t g0, size_t g1, int chunk)
{
    const proj_job *j = ctx;
    proj_range(ctx, g0 * 4, DV_MIN(g1 * 4, j->out), chunk);
}

void dv_proj_forward(float *y, float *scratch, const float *x, const float *W, const float *b,
                     size_t rows, size_t in, size_t out, int nthreads)
{
    for (size_t r0 = 0; r0 < rows; r0 += PROJ_RB) {
        proj_job j = {.y = y + r0 * out, .acc = scratch, .x = x + r0 * in, .W = W, .b = b,
                      .nu = DV_MIN((size_t)PROJ_RB, rows - r0), .in = in, .out = out};
        size_t groups = (out + 3) / 4;
        if (nthreads <= 1 || groups < 2)
            proj_range(&j, 0, out, 0);
        else
            dv_parallel_for(nthreads, groups, proj_groups, &j);
    }
}
