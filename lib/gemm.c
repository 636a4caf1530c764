/* gemm.c — BLIS sgemm behind a row-major interface (see gemm.h). */
#include "gemm.h"

/* blis.h trips -Wextra in its own inline helpers; silence it for the header only. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wsign-compare"
#include <blis.h>
#pragma GCC diagnostic pop

void dv_sgemm(bool ta, bool tb, size_t m, size_t n, size_t k, float alpha, const float *A,
              size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc,
              int nthreads)
{
    if (m == 0 || n == 0)
        return;
    /* A row-major [r,c] matrix with row stride ld has BLIS strides (ld, 1);
     * its transpose is the same memory read with strides (1, ld). */
    inc_t rsa = ta ? 1 : (inc_t)lda, csa = ta ? (inc_t)lda : 1;
    inc_t rsb = tb ? 1 : (inc_t)ldb, csb = tb ? (inc_t)ldb : 1;
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(nthreads < 1 ? 1 : nthreads, &rntm);
    /* The packed ("conventional") path runs every tile through the same
     * microkernel with the same K blocking, so an element of C does not
     * depend on how M and N are split among threads, nor on M itself.  The
     * small-matrix ("sup") kernels do not promise that: with tiny shapes
     * they pick edge kernels that sum in another order (measured: a 21x21x8
     * product changes in the last bit between 1 and 2 threads). */
    bli_rntm_disable_l3_sup(&rntm);
    /* BLIS takes non-const pointers but does not write A, B, alpha or beta. */
    bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)m, (dim_t)n, (dim_t)k, &alpha,
                 (float *)A, rsa, csa, (float *)B, rsb, csb, &beta, C, (inc_t)ldc, 1, NULL,
                 &rntm);
}
