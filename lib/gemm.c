/* gemm.c — BLIS sgemm behind a row-major interface (see gemm.h).
 *
 * All products go through BLIS's typed API with the packed ("conventional")
 * algorithm.  On CPUs with AVX-512 that BLIS runs with its AVX2 kernels
 * (Debian's BLIS 0.9 picks 'haswell' when it cannot tell that an AVX-512
 * CPU has two FMA units, as on many virtual machines), we hand BLIS a copy
 * of its context with one AVX-512 microkernel registered in it, the way
 * BLIS is meant to be extended: BLIS still blocks, packs and threads. */
#include "gemm.h"

#include "parallel.h"

#include <pthread.h>

/* blis.h trips -Wextra in its own inline helpers; silence it for the header only. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wsign-compare"
#include <blis.h>
#pragma GCC diagnostic pop

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define DV_HAVE_AVX512_KERNEL 1
#endif

#ifdef DV_HAVE_AVX512_KERNEL

/* Microkernel: C[12,16] = alpha · A·B + beta · C over one micro-panel pair.
 * A is packed 12 rows per k step, B 16 columns per k step (one zmm).  Each
 * element is one FMA chain in k order, so its value does not depend on how
 * BLIS splits M and N between threads.  Edge tiles (m < 12 or n < 16) and
 * non-unit column strides go through a small buffer; beta == 0 never reads
 * C. */
#define UK_MR 12
#define UK_NR 16
#define UK_FMA(i) c##i = _mm512_fmadd_ps(_mm512_set1_ps(a[i]), bv, c##i)

__attribute__((target("avx512f"))) static void
sgemm_avx512_12x16(dim_t m, dim_t n, dim_t k, float *restrict alpha, float *restrict a,
                   float *restrict b, float *restrict beta, float *restrict c, inc_t rs_c,
                   inc_t cs_c, auxinfo_t *restrict data, cntx_t *restrict cntx)
{
    (void)data;
    (void)cntx;
    __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0,
           c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
    for (dim_t p = 0; p < k; p++) {
        __m512 bv = _mm512_loadu_ps(b);
        UK_FMA(0), UK_FMA(1), UK_FMA(2), UK_FMA(3), UK_FMA(4), UK_FMA(5);
        UK_FMA(6), UK_FMA(7), UK_FMA(8), UK_FMA(9), UK_FMA(10), UK_FMA(11);
        a += UK_MR;
        b += UK_NR;
    }
    __m512 acc[UK_MR] = {c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11};
    __m512 va = _mm512_set1_ps(*alpha);
    float bt = *beta;
    if (m == UK_MR && n == UK_NR && cs_c == 1) {
        for (int i = 0; i < UK_MR; i++) {
            __m512 r = _mm512_mul_ps(va, acc[i]);
            if (bt != 0.0f)
                r = _mm512_fmadd_ps(_mm512_set1_ps(bt), _mm512_loadu_ps(c + i * rs_c), r);
            _mm512_storeu_ps(c + i * rs_c, r);
        }
        return;
    }
    float t[UK_MR][UK_NR];
    for (int i = 0; i < UK_MR; i++)
        _mm512_storeu_ps(t[i], _mm512_mul_ps(va, acc[i]));
    for (dim_t i = 0; i < m; i++)
        for (dim_t j = 0; j < n; j++) {
            float *cij = c + i * rs_c + j * cs_c;
            *cij = bt == 0.0f ? t[i][j] : t[i][j] + bt * *cij;
        }
}

static cntx_t g_cntx;       /* BLIS's context with the kernel above */
static cntx_t *g_cntx_used; /* &g_cntx, or NULL for BLIS's own choice */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void set_blksz(bszid_t id, dim_t v)
{
    bli_blksz_set_def(v, BLIS_FLOAT, &g_cntx.blkszs[id]);
    bli_blksz_set_max(v, BLIS_FLOAT, &g_cntx.blkszs[id]);
}

static void init_cntx(void)
{
    arch_t arch = bli_arch_query_id();
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || arch == BLIS_ARCH_SKX || arch == BLIS_ARCH_KNL)
        return; /* no AVX-512, or BLIS already uses its own AVX-512 kernels */
    g_cntx = *bli_gks_query_cntx();
    /* MR x NR is the kernel's tile; KC·NR floats of B stay in L1, MC·KC
     * floats of A in L2 (measured best on the build machine). */
    set_blksz(BLIS_MR, UK_MR);
    set_blksz(BLIS_NR, UK_NR);
    set_blksz(BLIS_MC, 144);
    set_blksz(BLIS_KC, 384);
    set_blksz(BLIS_NC, 4080);
    bli_func_set_dt((void_fp)sgemm_avx512_12x16, BLIS_FLOAT, &g_cntx.l3_nat_ukrs[BLIS_GEMM_UKR]);
    bli_func_set_dt((void_fp)sgemm_avx512_12x16, BLIS_FLOAT, &g_cntx.l3_vir_ukrs[BLIS_GEMM_UKR]);
    bli_mbool_set_dt(TRUE, BLIS_FLOAT, &g_cntx.l3_nat_ukrs_prefs[BLIS_GEMM_UKR]); /* rows of C */
    g_cntx_used = &g_cntx;
}

static cntx_t *gemm_cntx(void)
{
    pthread_once(&g_once, init_cntx);
    return g_cntx_used;
}

#else
static cntx_t *gemm_cntx(void) { return NULL; }
#endif

const char *dv_gemm_kernel_name(void)
{
    return gemm_cntx() ? "avx512 12x16 (libdv365)" : bli_arch_string(bli_arch_query_id());
}

/* One BLIS call on one thread. */
static void sgemm_1(bool ta, bool tb, size_t m, size_t n, size_t k, float alpha, const float *A,
                    size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc)
{
    /* A row-major [r,c] matrix with row stride ld has BLIS strides (ld, 1);
     * its transpose is the same memory read with strides (1, ld). */
    inc_t rsa = ta ? 1 : (inc_t)lda, csa = ta ? (inc_t)lda : 1;
    inc_t rsb = tb ? 1 : (inc_t)ldb, csb = tb ? (inc_t)ldb : 1;
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(1, &rntm);
    /* The packed path runs every tile through the same microkernel with the
     * same K blocking, so an element of C does not depend on how M and N
     * are split, nor on M itself.  The small-matrix ("sup") kernels do not
     * promise that: with tiny shapes they pick edge kernels that sum in
     * another order (measured: a 21x21x8 product changed in the last bit). */
    bli_rntm_disable_l3_sup(&rntm);
    /* BLIS takes non-const pointers but does not write A, B, alpha or beta. */
    bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)m, (dim_t)n, (dim_t)k, &alpha,
                 (float *)A, rsa, csa, (float *)B, rsb, csb, &beta, C, (inc_t)ldc, 1,
                 gemm_cntx(), &rntm);
}

typedef struct gemm_job {
    bool ta, tb, split_m;
    size_t m, n, k, lda, ldb, ldc, align;
    float alpha, beta;
    const float *A, *B;
    float *C;
} gemm_job;

/* Chunk c of the split dimension, in whole blocks of `align`. */
static void gemm_chunk(void *ctx, size_t begin, size_t end, int chunk)
{
    (void)chunk;
    const gemm_job *j = ctx;
    size_t total = j->split_m ? j->m : j->n;
    size_t lo = DV_MIN(begin * j->align, total), hi = DV_MIN(end * j->align, total);
    if (lo >= hi)
        return;
    if (j->split_m) /* rows lo..hi of op(A) and C */
        sgemm_1(j->ta, j->tb, hi - lo, j->n, j->k, j->alpha,
                j->A + (j->ta ? lo : lo * j->lda), j->lda, j->B, j->ldb, j->beta,
                j->C + lo * j->ldc, j->ldc);
    else /* columns lo..hi of op(B) and C */
        sgemm_1(j->ta, j->tb, j->m, hi - lo, j->k, j->alpha, j->A, j->lda,
                j->B + (j->tb ? lo * j->ldb : lo), j->ldb, j->beta, j->C + lo, j->ldc);
}

/* Work below this many multiply-adds runs on the calling thread: starting
 * threads would cost more than it saves. */
#define DV_GEMM_PARALLEL_MIN ((size_t)1 << 21)

void dv_sgemm(bool ta, bool tb, size_t m, size_t n, size_t k, float alpha, const float *A,
              size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc,
              int nthreads)
{
    if (m == 0 || n == 0)
        return;
    /* Threads are ours, not BLIS's: each takes a band of rows (or columns)
     * of C and calls BLIS on one thread.  BLIS's own threads spin while
     * they wait, which starves everything else on a busy machine; ours
     * sleep in pthread_join.  The split never changes an element's sum. */
    if (nthreads <= 1 || (double)m * (double)n * (double)k < (double)DV_GEMM_PARALLEL_MIN) {
        sgemm_1(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    gemm_job j = {.ta = ta, .tb = tb, .split_m = m >= n, .m = m, .n = n, .k = k, .lda = lda,
                  .ldb = ldb, .ldc = ldc, .align = 16, .alpha = alpha, .beta = beta, .A = A,
                  .B = B, .C = C};
    size_t blocks = ((j.split_m ? m : n) + j.align - 1) / j.align;
    dv_parallel_for(nthreads, blocks, gemm_chunk, &j);
}
