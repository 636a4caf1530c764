/* adapter.h — the layers of the downstream adapters (internal; the public
 * handle is in adapter.c, the math in docs/adapters.md).
 *
 * The prefix projection and every backward GEMM are plain dv_linear_* /
 * dv_sgemm (nn.h, gemm.h); the linear adapter's forward has its own
 * matrix-vector-friendly kernel, and the GateNet gates are new layers.  As everywhere in lib/, shapes
 * are explicit, U is [B, K, D] row-major (B users of K tokens), and the
 * backward functions ACCUMULATE into gradient buffers the caller zeroed. */
#ifndef DV365_ADAPTER_H
#define DV365_ADAPTER_H

#include "internal.h"

#include <math.h>

static inline float dv_sigmoid(float z) { return 1.0f / (1.0f + expf(-z)); }

/* y[rows, out] = x[rows, in] · W^T + b (W [out, in], b may be NULL) for the
 * linear adapter (adapter_proj.c): each element summed in an order fixed by
 * `in` alone, so a row's result does not depend on the other rows, the
 * thread count or the CPU's vector width.  scratch holds
 * dv_proj_scratch_floats(rows, out) floats (SIZE_MAX on overflow). */
size_t dv_proj_scratch_floats(size_t rows, size_t out);
void dv_proj_forward(float *y, float *scratch, const float *x, const float *W, const float *b,
                     size_t rows, size_t in, size_t out, int nthreads);

/* Vector-wise gate, one scalar per token k (w [K, D], b [K]):
 *   out[b,k,:] = sigmoid(w[k] . U[b,k,:] + b[k]) * U[b,k,:]. */
void dv_gate_vector_forward(float *out, const float *U, const float *w, const float *bias,
                            size_t B, size_t K, size_t D);
/* dw += Σ_b dz u, dbias += Σ_b dz, dU += g·dout + dz·w (each may be NULL),
 * where dz = (dout . u) g (1 - g).  Needs no scratch. */
void dv_gate_vector_backward(float *dw, float *dbias, float *dU, const float *dout,
                             const float *U, const float *w, const float *bias, size_t B,
                             size_t K, size_t D);

/* Bit-wise gate, one scalar per element (W [K, D, D], b [K, D]):
 *   out[b,k,:] = sigmoid(W[k] U[b,k,:] + b[k]) ⊙ U[b,k,:].
 * One GEMM per token over all B users (rows strided by K*D). */
void dv_gate_bit_forward(float *out, const float *U, const float *W, const float *bias, size_t B,
                         size_t K, size_t D, int nthreads);
/* dW[k] += dz_k^T U_k, dbias[k] += Σ_b dz_k, dU_k += g ⊙ dout_k + dz_k W[k]
 * (each may be NULL) with dz = dout ⊙ u ⊙ g (1 - g).  scratch holds B*K*D
 * floats (the gate pre-activations, then dz). */
void dv_gate_bit_backward(float *dW, float *dbias, float *dU, float *scratch, const float *dout,
                          const float *U, const float *W, const float *bias, size_t B, size_t K,
                          size_t D, int nthreads);

#endif
