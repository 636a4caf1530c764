/* nn_simd.h — 16-float vectors for the elementwise parts of the layers
 * (internal to nn_*.c).
 *
 * GCC/Clang vector extensions: one source, lowered to AVX-512, AVX2 or SSE
 * by the target_clones of the functions that use them (picked once per
 * process by the CPU, so every thread runs the same code and results do
 * not depend on the thread count).  Reductions keep 16 partial sums and
 * fold them in a fixed order: deterministic, if not bitwise equal to a
 * sequential loop. */
#ifndef DV365_NN_SIMD_H
#define DV365_NN_SIMD_H

#include "internal.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>

typedef float nn_v16 __attribute__((vector_size(64), aligned(4), may_alias));
typedef int32_t nn_v16i __attribute__((vector_size(64), aligned(4), may_alias));

/* The helpers below must be inlined into each clone: called out of line,
 * a 64-byte vector would cross between code built for different ISAs, whose
 * calling conventions for it differ (hence also the -Wpsabi silence). */
#define NN_INLINE static inline __attribute__((always_inline))
#pragma GCC diagnostic ignored "-Wpsabi"

/* The functions using these helpers carry DV_SIMD_CLONES (lib/internal.h). */
#define DV_NN_CLONES DV_SIMD_CLONES

NN_INLINE nn_v16 nn_splat(float x) { return (nn_v16){0} + x; }
NN_INLINE nn_v16 nn_load(const float *p) { return *(const nn_v16 *)p; }
NN_INLINE void nn_store(float *p, nn_v16 v) { *(nn_v16 *)p = v; }

/* m ? a : b per lane, m a comparison result (all ones or all zeros). */
NN_INLINE nn_v16 nn_select(nn_v16i m, nn_v16 a, nn_v16 b)
{
    return (nn_v16)((m & (nn_v16i)a) | (~m & (nn_v16i)b));
}
NN_INLINE nn_v16 nn_min(nn_v16 a, nn_v16 b) { return nn_select(a < b, a, b); }
NN_INLINE nn_v16 nn_max(nn_v16 a, nn_v16 b) { return nn_select(a > b, a, b); }

/* Lane sum / max, folded in lane order. */
NN_INLINE float nn_hsum(nn_v16 v)
{
    float s = 0.0f;
    for (int k = 0; k < 16; k++)
        s += v[k];
    return s;
}
NN_INLINE float nn_hmax(nn_v16 v)
{
    float m = v[0];
    for (int k = 1; k < 16; k++)
        m = v[k] > m ? v[k] : m;
    return m;
}

/* exp(x), relative error ~2 ulp on [-87, 88] (inputs are clamped there):
 * x = n·ln2 + r with |r| <= ln2/2, exp(r) by the Cephes expf polynomial,
 * 2^n by building the float exponent. */
NN_INLINE nn_v16 nn_exp(nn_v16 x)
{
    x = nn_min(nn_max(x, nn_splat(-87.0f)), nn_splat(88.0f));
    nn_v16 y = x * 1.44269504088896341f + 0.5f;
    nn_v16 n = __builtin_convertvector(__builtin_convertvector(y, nn_v16i), nn_v16);
    n += __builtin_convertvector(n > y, nn_v16); /* truncation -> floor: true is -1 */
    nn_v16 r = x - n * 0.693359375f - n * -2.12194440e-4f;
    nn_v16 p = r * 1.9875691500e-4f + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    nn_v16i e = (__builtin_convertvector(n, nn_v16i) + 127) << 23;
    return p * (nn_v16)e;
}

/* erf(x), absolute error < 5e-7: a rational approximation on [-4, 4]
 * (odd numerator of degree 13 over an even denominator of degree 8, the
 * coefficients of Eigen's generic_fast_erf_float); beyond, erf is ±1 in
 * float. */
NN_INLINE nn_v16 nn_erf(nn_v16 x)
{
    x = nn_min(nn_max(x, nn_splat(-4.0f)), nn_splat(4.0f));
    nn_v16 x2 = x * x;
    nn_v16 p = x2 * -2.72614225801306e-10f + 2.77068142495902e-08f;
    p = x2 * p + -2.10102402082508e-06f;
    p = x2 * p + -5.69250639462346e-05f;
    p = x2 * p + -7.34990630326855e-04f;
    p = x2 * p + -2.95459980854025e-03f;
    p = x2 * p + -1.60960333262415e-02f;
    p = x * p;
    nn_v16 q = x2 * -1.45660718464996e-05f + -2.13374055278905e-04f;
    q = x2 * q + -1.68282697438203e-03f;
    q = x2 * q + -7.37332916720468e-03f;
    q = x2 * q + -1.42647390514189e-02f;
    return p / q;
}

/* Load / store the first n < 16 floats of a vector; other lanes get fill. */
NN_INLINE nn_v16 nn_load_part(const float *p, size_t n, float fill)
{
    nn_v16 v = nn_splat(fill);
    for (size_t k = 0; k < n; k++)
        v[k] = p[k];
    return v;
}
NN_INLINE void nn_store_part(float *p, size_t n, nn_v16 v)
{
    for (size_t k = 0; k < n; k++)
        p[k] = v[k];
}

#endif
