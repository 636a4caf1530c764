/* quant4.h — 4-bit rowwise quantization internals (FBGEMM fused layout).
 *
 * A row of dim floats becomes ceil(dim/2) bytes of codes (even column in the
 * low nibble), then the fp16 scale, then the fp16 bias, little-endian;
 * x ~= scale * q + bias.  docs/quant.md has the details. */
#ifndef DV365_QUANT4_H
#define DV365_QUANT4_H

#include "internal.h"

/* The implementations; tests compare each available one to the reference. */
typedef enum dv_q4_impl {
    DV_Q4_IMPL_AUTO = 0,   /* the fastest the CPU supports */
    DV_Q4_IMPL_REF = 1,    /* plain C, the definition */
    DV_Q4_IMPL_AVX2 = 2,
    DV_Q4_IMPL_AVX512 = 3
} dv_q4_impl;

bool dv_q4_impl_available(dv_q4_impl impl);

/* IEEE binary16 conversions, round to nearest even (as c10::Half). */
uint16_t dv_f32_to_f16(float f);
float dv_f16_to_f32(uint16_t h);

/* The greedy range search of PyTorch's choose_qparams_optimized (FBGEMM's
 * param_search_greedy) for one finite row: nbins 200, ratio 0.16. */
void dv_q4_greedy_range(const float *x, size_t dim, dv_q4_impl impl, float *xmin, float *xmax);

/* quantize / dequantize with an explicit implementation (public calls use
 * DV_Q4_IMPL_AUTO).  Same contract as dv365_q4_quantize / _dequantize. */
dv365_status dv_q4_quantize_impl(const float *x, size_t rows, size_t dim, dv365_q4_method method,
                                 uint8_t *out, size_t out_size, dv_q4_impl impl);
dv365_status dv_q4_dequantize_impl(const uint8_t *q, size_t q_size, size_t rows, size_t dim,
                                   float *out, dv_q4_impl impl);

#endif
