/* quant4.c — 4-bit rowwise quantization in FBGEMM's fused layout.
 *
 * The arithmetic follows PyTorch's quantized.embedding_bag_4bit_prepack
 * step by step, so that the bytes are identical (tests/reference/q4_ref.py):
 *   xmin_h = fp16(min)            the bias is rounded to fp16 FIRST,
 *   range  = max - xmin_h         so the codes see the bias actually stored;
 *   scale  = fp16(range / 15)     (1.0 when range is 0, or when the fp16
 *   inv    = 1 / scale             scale is 0 or its inverse overflows)
 *   q      = clamp(lrint((x - xmin_h) * inv), 0, 15)   round half to even.
 * No epsilon is added (that is the 8-bit path).  The greedy method replaces
 * (min, max) by the range found by choose_qparams_optimized.
 *
 * Every implementation does the same IEEE float operations in the same
 * order, so the AVX2 / AVX-512 paths give the reference's bytes exactly;
 * no fused multiply-add is allowed (ISO C mode keeps -ffp-contract=off). */
#include "quant4.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define DV_Q4_X86 1
#else
#define DV_Q4_X86 0
#endif

#define Q4_MAX 15
#define Q4_NBINS 200
#define Q4_RATIO 0.16f
#define F16_ONE 0x3c00u

/* ---------------------------------------------------------------- fp16 --- */

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t dv_f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) /* inf stays inf, NaN stays a quiet NaN */
        return sign | 0x7c00u | (x > 0x7f800000u ? 0x0200u : 0);
    if (x >= 0x477ff000u) /* >= 65520 rounds past the largest half */
        return sign | 0x7c00u;
    if (x >= 0x38800000u) { /* normal half: drop 13 mantissa bits, RNE */
        uint32_t h = (x >> 13) - ((127u - 15u) << 10);
        uint32_t rem = x & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
            h++; /* a carry into the exponent is the right answer */
        return sign | (uint16_t)h;
    }
    /* subnormal half: value / 2^-24 rounded to nearest even */
    uint32_t e = x >> 23;
    if (e < 102) /* below 2^-25: rounds to zero */
        return sign;
    uint32_t m = (x & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e; /* 14 .. 24 */
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u)))
        q++;
    return sign | (uint16_t)q;
}

float dv_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f)
        return bits_f32(sign | 0x7f800000u | (m << 13));
    if (e != 0)
        return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
    /* zero or subnormal: m * 2^-24, exact in float */
    float v = (float)m * 0x1p-24f;
    return sign ? -v : v;
}

static inline float f16_round(float f) { return dv_f16_to_f32(dv_f32_to_f16(f)); }

bool dv_q4_impl_available(dv_q4_impl impl)
{
    switch (impl) {
    case DV_Q4_IMPL_AUTO:
    case DV_Q4_IMPL_REF: return true;
#if DV_Q4_X86
    case DV_Q4_IMPL_AVX2: return __builtin_cpu_supports("avx2");
    case DV_Q4_IMPL_AVX512:
        return __builtin_cpu_supports("avx512f");
#else
    case DV_Q4_IMPL_AVX2:
    case DV_Q4_IMPL_AVX512: return false;
#endif
    }
    return false;
}

static dv_q4_impl resolve(dv_q4_impl impl)
{
    if (impl != DV_Q4_IMPL_AUTO)
        return impl;
    if (dv_q4_impl_available(DV_Q4_IMPL_AVX512))
        return DV_Q4_IMPL_AVX512;
    if (dv_q4_impl_available(DV_Q4_IMPL_AVX2))
        return DV_Q4_IMPL_AVX2;
    return DV_Q4_IMPL_REF;
}

/* ------------------------------------------------------ reference path --- */

/* First minimum and first maximum, as std::min_element / max_element (the
 * sign of a zero minimum ends up in the stored bias, so "first" matters).
 * Returns the first non-finite column, or dim when all are finite. */
static size_t scan_ref(const float *x, size_t dim, float *mn, float *mx)
{
    float lo = x[0], hi = x[0];
    for (size_t c = 0; c < dim; c++) {
        if (!isfinite(x[c]))
            return c;
        if (x[c] < lo)
            lo = x[c];
        if (hi < x[c])
            hi = x[c];
    }
    *mn = lo;
    *mx = hi;
    return dim;
}

static void codes_ref(const float *x, size_t dim, float xmin, float inv, uint8_t *codes)
{
    for (size_t c = 0; c < dim; c++) {
        long q = lrintf((x[c] - xmin) * inv);
        q = q < 0 ? 0 : (q > Q4_MAX ? Q4_MAX : q);
        if (c % 2 == 0)
            codes[c / 2] = (uint8_t)q;
        else
            codes[c / 2] |= (uint8_t)(q << 4);
    }
}

static void dequant_ref(const uint8_t *codes, size_t dim, float scale, float bias, float *out)
{
    for (size_t c = 0; c < dim; c++) {
        unsigned q = (codes[c / 2] >> ((c % 2) * 4)) & 0xfu;
        out[c] = scale * (float)q + bias;
    }
}

/* Squared error of one element under (scale, xmin), exactly as PyTorch's
 * calculate_quant_loss computes it. */
static inline float loss_term(float x, float xmin, float scale, float inv)
{
    float q = nearbyintf((x - xmin) * inv);
    q = (float)Q4_MAX < q ? (float)Q4_MAX : q;
    q = 0.0f < q ? q : 0.0f;
    float d = x - (q * scale + xmin);
    return d * d;
}

/* The per-candidate parameters of calculate_quant_loss. */
static void loss_params(float xmin, float xmax, float *xmin_h, float *scale, float *inv)
{
    *xmin_h = f16_round(xmin);
    float range = xmax - *xmin_h;
    *scale = range == 0 ? 1.0f : f16_round(range / (float)Q4_MAX);
    *inv = *scale == 0 ? 1.0f : 1.0f / *scale;
}

static float loss_ref(const float *x, size_t dim, float xmin, float xmax)
{
    float xm, scale, inv, norm = 0.0f;
    loss_params(xmin, xmax, &xm, &scale, &inv);
    for (size_t i = 0; i < dim; i++)
        norm += loss_term(x[i], xm, scale, inv);
    return sqrtf(norm);
}

/* ------------------------------------------------------------ x86 SIMD --- */
#if DV_Q4_X86

#define AVX2_TARGET __attribute__((target("avx2")))
#define AVX512_TARGET __attribute__((target("avx512f")))

/* Vector min/max; the exact first-zero sign and the non-finite column are
 * then settled by the scalar code, which the vector pass makes rare. */
static size_t finish_scan(const float *x, size_t dim, float lo, float hi, bool bad, float *mn,
                          float *mx)
{
    if (bad) {
        float a, b;
        return scan_ref(x, dim, &a, &b);
    }
    if (lo == 0.0f) /* +0 and -0 compare equal: take the first zero, like the reference */
        for (size_t c = 0; c < dim; c++)
            if (x[c] == 0.0f) {
                lo = x[c];
                break;
            }
    *mn = lo;
    *mx = hi;
    return dim;
}

/* The two vector losses end here: columns i.. one at a time, each sum in
 * the reference's order, then the two norms. */
static void loss2_tail(const float *x, size_t i, size_t dim, const float *xm, const float *scale,
                       const float *inv, float n0, float n1, float *out)
{
    for (; i < dim; i++) {
        n0 += loss_term(x[i], xm[0], scale[0], inv[0]);
        n1 += loss_term(x[i], xm[1], scale[1], inv[1]);
    }
    out[0] = sqrtf(n0);
    out[1] = sqrtf(n1);
}

AVX512_TARGET static size_t scan_avx512(const float *x, size_t dim, float *mn, float *mx)
{
    __m512 vlo = _mm512_set1_ps(x[0]), vhi = vlo;
    const __m512 inf = _mm512_set1_ps(INFINITY);
    __mmask16 bad = 0;
    size_t c = 0;
    for (; c + 16 <= dim; c += 16) {
        __m512 v = _mm512_loadu_ps(x + c);
        bad |= _mm512_cmp_ps_mask(_mm512_abs_ps(v), inf, _CMP_NLT_UQ); /* NaN or inf */
        vlo = _mm512_min_ps(vlo, v);
        vhi = _mm512_max_ps(vhi, v);
    }
    float lo = _mm512_reduce_min_ps(vlo), hi = _mm512_reduce_max_ps(vhi);
    bool nonfinite = bad != 0;
    for (; c < dim; c++) {
        nonfinite |= !isfinite(x[c]);
        lo = x[c] < lo ? x[c] : lo;
        hi = hi < x[c] ? x[c] : hi;
    }
    return finish_scan(x, dim, lo, hi, nonfinite, mn, mx);
}

AVX512_TARGET static void codes_avx512(const float *x, size_t dim, float xmin, float inv,
                                       uint8_t *codes)
{
    const __m512 vmin = _mm512_set1_ps(xmin), vinv = _mm512_set1_ps(inv);
    const __m512i zero = _mm512_setzero_si512(), qmax = _mm512_set1_epi32(Q4_MAX);
    size_t c = 0;
    for (; c + 16 <= dim; c += 16) {
        __m512 t = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + c), vmin), vinv);
        __m512i q = _mm512_cvtps_epi32(t); /* round to nearest even, as lrintf */
        q = _mm512_min_epi32(_mm512_max_epi32(q, zero), qmax);
        /* each 64-bit lane holds (even, odd): fold the odd code into bits 4..7 */
        q = _mm512_or_si512(q, _mm512_srli_epi64(q, 28));
        _mm_storel_epi64((__m128i *)(codes + c / 2), _mm512_cvtepi64_epi8(q));
    }
    if (c < dim)
        codes_ref(x + c, dim - c, xmin, inv, codes + c / 2);
}

AVX512_TARGET static void dequant_avx512(const uint8_t *codes, size_t dim, float scale, float bias,
                                         float *out)
{
    const __m512 vs = _mm512_set1_ps(scale), vb = _mm512_set1_ps(bias);
    const __m128i low = _mm_set1_epi8(0x0f);
    size_t c = 0;
    for (; c + 16 <= dim; c += 16) {
        __m128i b = _mm_loadl_epi64((const __m128i *)(codes + c / 2));
        __m128i lo = _mm_and_si128(b, low), hi = _mm_and_si128(_mm_srli_epi16(b, 4), low);
        __m512 q = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi)));
        _mm512_storeu_ps(out + c, _mm512_add_ps(_mm512_mul_ps(vs, q), vb));
    }
    if (c < dim)
        dequant_ref(codes + c / 2, dim - c, scale, bias, out + c);
}

/* Two candidate ranges at once.  The element terms are vectorized; each
 * sum stays sequential, in the reference's order, so the losses are
 * bit-identical; the two independent sums hide each other's add latency. */
AVX512_TARGET static void loss2_avx512(const float *x, size_t dim, const float *xmin,
                                       const float *xmax, float *out)
{
    float xm[2], scale[2], inv[2], n0 = 0.0f, n1 = 0.0f;
    __m512 vxm[2], vs[2], vinv[2];
    for (int k = 0; k < 2; k++) {
        loss_params(xmin[k], xmax[k], &xm[k], &scale[k], &inv[k]);
        vxm[k] = _mm512_set1_ps(xm[k]);
        vs[k] = _mm512_set1_ps(scale[k]);
        vinv[k] = _mm512_set1_ps(inv[k]);
    }
    const __m512 qmax = _mm512_set1_ps((float)Q4_MAX), zero = _mm512_setzero_ps();
    float t[2][16];
    size_t i = 0;
    for (; i + 16 <= dim; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        for (int k = 0; k < 2; k++) {
            __m512 q = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_sub_ps(v, vxm[k]), vinv[k]),
                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            q = _mm512_max_ps(_mm512_min_ps(q, qmax), zero);
            __m512 d = _mm512_sub_ps(v, _mm512_add_ps(_mm512_mul_ps(q, vs[k]), vxm[k]));
            _mm512_storeu_ps(t[k], _mm512_mul_ps(d, d));
        }
        for (int j = 0; j < 16; j++) {
            n0 += t[0][j];
            n1 += t[1][j];
        }
    }
    loss2_tail(x, i, dim, xm, scale, inv, n0, n1, out);
}

AVX2_TARGET static size_t scan_avx2(const float *x, size_t dim, float *mn, float *mx)
{
    __m256 vlo = _mm256_set1_ps(x[0]), vhi = vlo;
    const __m256 inf = _mm256_set1_ps(INFINITY);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 bad = _mm256_setzero_ps();
    size_t c = 0;
    for (; c + 8 <= dim; c += 8) {
        __m256 v = _mm256_loadu_ps(x + c);
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_and_ps(v, absmask), inf, _CMP_NLT_UQ));
        vlo = _mm256_min_ps(vlo, v);
        vhi = _mm256_max_ps(vhi, v);
    }
    float l[8], h[8];
    _mm256_storeu_ps(l, vlo);
    _mm256_storeu_ps(h, vhi);
    float lo = l[0], hi = h[0];
    for (int j = 1; j < 8; j++) {
        lo = l[j] < lo ? l[j] : lo;
        hi = hi < h[j] ? h[j] : hi;
    }
    bool nonfinite = _mm256_movemask_ps(bad) != 0;
    for (; c < dim; c++) {
        nonfinite |= !isfinite(x[c]);
        lo = x[c] < lo ? x[c] : lo;
        hi = hi < x[c] ? x[c] : hi;
    }
    return finish_scan(x, dim, lo, hi, nonfinite, mn, mx);
}

AVX2_TARGET static void codes_avx2(const float *x, size_t dim, float xmin, float inv,
                                   uint8_t *codes)
{
    const __m256 vmin = _mm256_set1_ps(xmin), vinv = _mm256_set1_ps(inv);
    const __m256i zero = _mm256_setzero_si256(), qmax = _mm256_set1_epi32(Q4_MAX);
    /* per 128-bit lane, gather bytes 0 and 8 (the folded pairs) */
    const __m256i pick = _mm256_setr_epi8(0, 8, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                          -1, -1, 0, 8, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                          -1, -1, -1, -1);
    size_t c = 0;
    for (; c + 8 <= dim; c += 8) {
        __m256 t = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + c), vmin), vinv);
        __m256i q = _mm256_cvtps_epi32(t);
        q = _mm256_min_epi32(_mm256_max_epi32(q, zero), qmax);
        q = _mm256_or_si256(q, _mm256_srli_epi64(q, 28));
        q = _mm256_shuffle_epi8(q, pick);
        uint16_t a = (uint16_t)_mm_extract_epi16(_mm256_castsi256_si128(q), 0);
        uint16_t b = (uint16_t)_mm_extract_epi16(_mm256_extracti128_si256(q, 1), 0);
        memcpy(codes + c / 2, &a, 2);
        memcpy(codes + c / 2 + 2, &b, 2);
    }
    if (c < dim)
        codes_ref(x + c, dim - c, xmin, inv, codes + c / 2);
}

AVX2_TARGET static void dequant_avx2(const uint8_t *codes, size_t dim, float scale, float bias,
                                     float *out)
{
    const __m256 vs = _mm256_set1_ps(scale), vb = _mm256_set1_ps(bias);
    const __m128i low = _mm_set1_epi8(0x0f);
    size_t c = 0;
    for (; c + 16 <= dim; c += 16) {
        __m128i b = _mm_loadl_epi64((const __m128i *)(codes + c / 2));
        __m128i lo = _mm_and_si128(b, low), hi = _mm_and_si128(_mm_srli_epi16(b, 4), low);
        __m128i q8 = _mm_unpacklo_epi8(lo, hi); /* 16 codes in column order */
        __m256 q0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q8));
        __m256 q1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(q8, 8)));
        _mm256_storeu_ps(out + c, _mm256_add_ps(_mm256_mul_ps(vs, q0), vb));
        _mm256_storeu_ps(out + c + 8, _mm256_add_ps(_mm256_mul_ps(vs, q1), vb));
    }
    if (c < dim)
        dequant_ref(codes + c / 2, dim - c, scale, bias, out + c);
}

AVX2_TARGET static void loss2_avx2(const float *x, size_t dim, const float *xmin,
                                   const float *xmax, float *out)
{
    float xm[2], scale[2], inv[2], n0 = 0.0f, n1 = 0.0f;
    __m256 vxm[2], vs[2], vinv[2];
    for (int k = 0; k < 2; k++) {
        loss_params(xmin[k], xmax[k], &xm[k], &scale[k], &inv[k]);
        vxm[k] = _mm256_set1_ps(xm[k]);
        vs[k] = _mm256_set1_ps(scale[k]);
        vinv[k] = _mm256_set1_ps(inv[k]);
    }
    const __m256 qmax = _mm256_set1_ps((float)Q4_MAX), zero = _mm256_setzero_ps();
    float t[2][8];
    size_t i = 0;
    for (; i + 8 <= dim; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        for (int k = 0; k < 2; k++) {
            __m256 q = _mm256_round_ps(_mm256_mul_ps(_mm256_sub_ps(v, vxm[k]), vinv[k]),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            q = _mm256_max_ps(_mm256_min_ps(q, qmax), zero);
            __m256 d = _mm256_sub_ps(v, _mm256_add_ps(_mm256_mul_ps(q, vs[k]), vxm[k]));
            _mm256_storeu_ps(t[k], _mm256_mul_ps(d, d));
        }
        for (int j = 0; j < 8; j++) {
            n0 += t[0][j];
            n1 += t[1][j];
        }
    }
    loss2_tail(x, i, dim, xm, scale, inv, n0, n1, out);
}
#endif /* DV_Q4_X86 */

/* ------------------------------------------------------------ dispatch --- */

static size_t scan(dv_q4_impl impl, const float *x, size_t dim, float *mn, float *mx)
{
#if DV_Q4_X86
    if (impl == DV_Q4_IMPL_AVX512)
        return scan_avx512(x, dim, mn, mx);
    if (impl == DV_Q4_IMPL_AVX2)
        return scan_avx2(x, dim, mn, mx);
#endif
    DV_UNUSED(impl);
    return scan_ref(x, dim, mn, mx);
}

static void codes(dv_q4_impl impl, const float *x, size_t dim, float xmin, float inv, uint8_t *out)
{
#if DV_Q4_X86
    if (impl == DV_Q4_IMPL_AVX512)
        codes_avx512(x, dim, xmin, inv, out);
    else if (impl == DV_Q4_IMPL_AVX2)
        codes_avx2(x, dim, xmin, inv, out);
    else
#endif
        codes_ref(x, dim, xmin, inv, out);
}

static void dequant(dv_q4_impl impl, const uint8_t *q, size_t dim, float s, float b, float *out)
{
#if DV_Q4_X86
    if (impl == DV_Q4_IMPL_AVX512)
        dequant_avx512(q, dim, s, b, out);
    else if (impl == DV_Q4_IMPL_AVX2)
        dequant_avx2(q, dim, s, b, out);
    else
#endif
        dequant_ref(q, dim, s, b, out);
}

/* The losses of two candidate ranges (xmin[k], xmax[k]), k = 0, 1. */
static void loss_pair(dv_q4_impl impl, const float *x, size_t dim, const float *xmin,
                  const float *xmax, float *out)
{
#if DV_Q4_X86
    if (impl == DV_Q4_IMPL_AVX512) {
        loss2_avx512(x, dim, xmin, xmax, out);
        return;
    }
    if (impl == DV_Q4_IMPL_AVX2) {
        loss2_avx2(x, dim, xmin, xmax, out);
        return;
    }
#endif
    DV_UNUSED(impl);
    out[0] = loss_ref(x, dim, xmin[0], xmax[0]);
    out[1] = loss_ref(x, dim, xmin[1], xmax[1]);
}

/* -------------------------------------------------------- greedy search --- */

/* choose_qparams_optimized: start from [min, max] and move one end inwards
 * by range/nbins at a time (whichever gives the lower L2 error) until the
 * range is (1 - ratio) of the original; keep the best local optimum. */
static void greedy_range(dv_q4_impl impl, const float *x, size_t dim, float *pmin, float *pmax)
{
    float xmin = *pmin, xmax = *pmax;
    float stepsize = (xmax - xmin) / (float)Q4_NBINS;
    int min_bins = (int)(Q4_NBINS * (1.0 - (double)Q4_RATIO)); /* 168, as PyTorch computes it */
    float thr = (float)min_bins * stepsize;
    float best_loss = loss_ref(x, dim, xmin, xmax);
    float cur_min = xmin, cur_max = xmax, cur_loss = best_loss;
    while (cur_min + thr < cur_max) {
        float next_min = cur_min + stepsize, next_max = cur_max - stepsize;
        /* loss1: move the minimum up; loss2: move the maximum down */
        float lo[2] = {next_min, cur_min}, hi[2] = {cur_max, next_max}, l[2];
        loss_pair(impl, x, dim, lo, hi, l);
        float loss1 = l[0], loss2 = l[1];
        if (cur_loss < loss1 && cur_loss < loss2 && cur_loss < best_loss) {
            best_loss = cur_loss;
            xmin = cur_min;
            xmax = cur_max;
        }
        /* When the step is below half an ulp the end does not move and
         * PyTorch would loop forever; every later iteration would repeat
         * this one, so stopping here gives the result it never reaches. */
        if (loss1 < loss2) {
            if (next_min == cur_min)
                break;
            cur_min = next_min;
            cur_loss = loss1;
        } else {
            if (next_max == cur_max)
                break;
            cur_max = next_max;
            cur_loss = loss2;
        }
    }
    *pmin = xmin;
    *pmax = xmax;
}

void dv_q4_greedy_range(const float *x, size_t dim, dv_q4_impl impl, float *xmin, float *xmax)
{
    impl = resolve(impl);
    scan(impl, x, dim, xmin, xmax);
    greedy_range(impl, x, dim, xmin, xmax);
}

/* -------------------------------------------------------- public calls --- */

size_t dv365_q4_row_bytes(size_t dim) { return dim == 0 ? 0 : dim / 2 + dim % 2 + 4; }

static dv365_status check_shape(size_t rows, size_t dim, size_t *total_bytes)
{
    size_t n;
    if (dim == 0)
        return dv_error(DV365_E_INVALID, "dim must be > 0");
    if (!dv_mul_size(rows, dim, &n) || !dv_mul_size(rows, dv365_q4_row_bytes(dim), total_bytes))
        return dv_error(DV365_E_NOMEM, "%zu rows of %zu columns overflow size_t", rows, dim);
    return DV365_OK;
}

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xffu);
    p[1] = (uint8_t)(v >> 8);
}

static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

/* Quantize one finite row given its (min, max) or greedy range. */
static dv365_status quantize_row(dv_q4_impl impl, const float *x, size_t dim, size_t row,
                                 dv365_q4_method method, uint8_t *out)
{
    float xmin, xmax;
    size_t bad = scan(impl, x, dim, &xmin, &xmax);
    if (bad < dim)
        return dv_error(DV365_E_NONFINITE, "row %zu, column %zu is %s", row, bad,
                        isnan(x[bad]) ? "NaN" : (x[bad] > 0 ? "+Inf" : "-Inf"));
    if (method == DV365_Q4_GREEDY)
        greedy_range(impl, x, dim, &xmin, &xmax);

    uint16_t bias_h = dv_f32_to_f16(xmin);
    float bias = dv_f16_to_f32(bias_h);
    float range = xmax - bias;
    uint16_t scale_h = dv_f32_to_f16(range == 0 ? 1.0f : range / (float)Q4_MAX);
    float scale = dv_f16_to_f32(scale_h);
    float inv = scale == 0 ? 1.0f : 1.0f / scale;
    if (scale == 0 || isinf(inv)) { /* any scale works when all codes are 0 */
        scale_h = F16_ONE;
        inv = 1.0f;
    }
    /* FBGEMM would store an infinite bias or scale here; we refuse. */
    if (isinf(bias))
        return dv_error(DV365_E_INVALID,
                        "row %zu: minimum %g does not fit in the fp16 bias (|min| < 65520)", row,
                        (double)xmin);
    if (isinf(scale))
        return dv_error(DV365_E_INVALID,
                        "row %zu: range [%g, %g] is too wide for the fp16 scale "
                        "((max - min) / 15 < 65520)",
                        row, (double)xmin, (double)xmax);
    /* |(x - bias) * inv| stays far below 2^31 (|x - bias| <= 32 when the
     * bias rounds past x, |inv| <= 2^24), so the vector conversions agree
     * with lrintf. */
    codes(impl, x, dim, bias, inv, out);
    size_t nb = dim / 2 + dim % 2;
    put_u16(out + nb, scale_h);
    put_u16(out + nb + 2, bias_h);
    return DV365_OK;
}

dv365_status dv_q4_quantize_impl(const float *x, size_t rows, size_t dim, dv365_q4_method method,
                                 uint8_t *out, size_t out_size, dv_q4_impl impl)
{
    DV_CHECK_NULL(x);
    DV_CHECK_NULL(out);
    if (method != DV365_Q4_MINMAX && method != DV365_Q4_GREEDY)
        return dv_error(DV365_E_INVALID, "unknown 4-bit method %d (0 = minmax, 1 = greedy)",
                        (int)method);
    if (!dv_q4_impl_available(impl))
        return dv_error(DV365_E_INVALID, "4-bit implementation %d is not available on this CPU",
                        (int)impl);
    size_t need;
    dv365_status st = check_shape(rows, dim, &need);
    if (st != DV365_OK)
        return st;
    if (out_size < need)
        return dv_error(DV365_E_BUFFER_TOO_SMALL,
                        "out has %zu bytes, %zu rows of %zu need %zu", out_size, rows, dim, need);
    impl = resolve(impl);
    size_t rb = dv365_q4_row_bytes(dim);
    for (size_t r = 0; r < rows; r++) {
        st = quantize_row(impl, x + r * dim, dim, r, method, out + r * rb);
        if (st != DV365_OK)
            return st;
    }
    return DV365_OK;
}

dv365_status dv_q4_dequantize_impl(const uint8_t *q, size_t q_size, size_t rows, size_t dim,
                                   float *out, dv_q4_impl impl)
{
    DV_CHECK_NULL(q);
    DV_CHECK_NULL(out);
    if (!dv_q4_impl_available(impl))
        return dv_error(DV365_E_INVALID, "4-bit implementation %d is not available on this CPU",
                        (int)impl);
    size_t need;
    dv365_status st = check_shape(rows, dim, &need);
    if (st != DV365_OK)
        return st;
    if (q_size < need)
        return dv_error(DV365_E_BUFFER_TOO_SMALL,
                        "q has %zu bytes, %zu rows of %zu need %zu", q_size, rows, dim, need);
    impl = resolve(impl);
    size_t rb = dv365_q4_row_bytes(dim), nb = rb - 4;
    for (size_t r = 0; r < rows; r++) {
        const uint8_t *row = q + r * rb;
        float scale = dv_f16_to_f32(get_u16(row + nb));
        float bias = dv_f16_to_f32(get_u16(row + nb + 2));
        if (!isfinite(scale) || !isfinite(bias))
            return dv_error(DV365_E_FORMAT, "row %zu: stored %s is not finite", r,
                            isfinite(scale) ? "bias" : "scale");
        dequant(impl, row, dim, scale, bias, out + r * dim);
    }
    return DV365_OK;
}

dv365_status dv365_q4_quantize(const float *x, size_t rows, size_t dim, dv365_q4_method method,
                               uint8_t *out, size_t out_size)
{
    dv_clear_error();
    return dv_q4_quantize_impl(x, rows, dim, method, out, out_size, DV_Q4_IMPL_AUTO);
}

dv365_status dv365_q4_dequantize(const uint8_t *q, size_t q_size, size_t rows, size_t dim,
                                 float *out)
{
    dv_clear_error();
    return dv_q4_dequantize_impl(q, q_size, rows, dim, out, DV_Q4_IMPL_AUTO);
}
