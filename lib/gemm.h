/* gemm.h — the one entry point to BLIS matrix multiplication (internal).
 *
 * Row-major float matrices with explicit leading dimensions, as in the
 * rest of lib/.  Transposition is expressed by swapping BLIS strides, so no
 * data is ever copied.  BLIS always runs on one thread per call (through a
 * runtime object: environment variables such as BLIS_NUM_THREADS are never
 * consulted); with nthreads > 1 the library splits the rows (or columns)
 * of C into bands, one BLIS call per band on its own thread.
 *
 * Determinism: the bands split M or N, never the K (summation) loop, so
 * each element of C is summed in the same order whatever the thread count.
 * tests/test_nn.c checks that bitwise. */
#ifndef DV365_GEMM_H
#define DV365_GEMM_H

#include "internal.h"

/* C[m,n] = alpha * op(A)[m,k] · op(B)[k,n] + beta * C.
 * op(A) = A (stored [m,k], row stride lda) or, when ta, A^T (A stored [k,m]).
 * op(B) = B (stored [k,n], row stride ldb) or, when tb, B^T (B stored [n,k]).
 * With beta == 0 C is not read (NaNs in it do not propagate).
 * nthreads < 1 is treated as 1. */
void dv_sgemm(bool ta, bool tb, size_t m, size_t n, size_t k, float alpha, const float *A,
              size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc,
              int nthreads);

/* Which sgemm microkernel runs (for benchmark reports): "avx512 12x16
 * (libdv365)" or the name of BLIS's own sub-configuration. */
const char *dv_gemm_kernel_name(void);

#endif
