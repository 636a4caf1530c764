/* nn_gelu.c — GELU in its exact (erf) form, as PyTorch's default. */
#include "nn.h"
#include "nn_simd.h"

#define SQRT1_2 0.70710678118654752f
#define INV_SQRT_2PI 0.39894228040143268f

float dv_erf(float x) { return nn_erf(nn_splat(x))[0]; }

NN_INLINE nn_v16 gelu(nn_v16 x) { return 0.5f * x * (1.0f + nn_erf(x * SQRT1_2)); }

/* d/dx [x·Φ(x)] = Φ(x) + x·φ(x) */
NN_INLINE nn_v16 gelu_grad(nn_v16 x)
{
    nn_v16 cdf = 0.5f * (1.0f + nn_erf(x * SQRT1_2));
    return cdf + x * (INV_SQRT_2PI * nn_exp(-0.5f * x * x));
}

DV_NN_CLONES void dv_gelu_forward(float *y, const float *x, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        nn_store(y + i, gelu(nn_load(x + i)));
    if (i < n)
        nn_store_part(y + i, n - i, gelu(nn_load_part(x + i, n - i, 0.0f)));
}

DV_NN_CLONES void dv_gelu_backward(float *dx, const float *x, const float *dy, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        nn_store(dx + i, nn_load(dx + i) + nn_load(dy + i) * gelu_grad(nn_load(x + i)));
    if (i < n) {
        size_t r = n - i;
        nn_v16 g = nn_load_part(dy + i, r, 0.0f) * gelu_grad(nn_load_part(x + i, r, 0.0f));
        nn_store_part(dx + i, r, nn_load_part(dx + i, r, 0.0f) + g);
    }
}

DV_NN_CLONES void dv_bias_gelu_forward(float *h, float *g, const float *b, size_t rows, size_t C)
{
    for (size_t r = 0; r < rows; r++) {
        float *hr = h + r * C, *gr = g + r * C;
        size_t i = 0;
        for (; i + 16 <= C; i += 16) {
            nn_v16 v = nn_load(hr + i) + nn_load(b + i);
            nn_store(hr + i, v);
            nn_store(gr + i, gelu(v));
        }
        if (i < C) {
            size_t n = C - i;
            nn_v16 v = nn_load_part(hr + i, n, 0.0f) + nn_load_part(b + i, n, 0.0f);
            nn_store_part(hr + i, n, v);
            nn_store_part(gr + i, n, gelu(v));
        }
    }
}
