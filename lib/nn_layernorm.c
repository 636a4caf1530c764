/* nn_layernorm.c — layer normalization over the last axis (eps 1e-5). */
#include "nn.h"
#include "nn_simd.h"

/* Σ x[i] over C floats: 16 lane sums, then the scalar tail, in fixed order. */
NN_INLINE float sum_row(const float *x, size_t C)
{
    nn_v16 acc = nn_splat(0.0f);
    size_t i = 0;
    for (; i + 16 <= C; i += 16)
        acc += nn_load(x + i);
    float s = nn_hsum(acc);
    for (; i < C; i++)
        s += x[i];
    return s;
}

DV_NN_CLONES void dv_layernorm_forward(float *y, float *mean, float *rstd, const float *x,
                                       const float *w, const float *b, size_t rows, size_t C)
{
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        /* Two passes (mean, then centered variance): exact enough in float
         * for C in the hundreds, and immune to a large common offset. */
        float m = sum_row(xr, C) / (float)C;
        nn_v16 acc = nn_splat(0.0f);
        size_t i = 0;
        for (; i + 16 <= C; i += 16) {
            nn_v16 d = nn_load(xr + i) - m;
            acc += d * d;
        }
        float v = nn_hsum(acc);
        for (; i < C; i++)
            v += (xr[i] - m) * (xr[i] - m);
        v /= (float)C; /* biased variance, as PyTorch */
        float s = 1.0f / sqrtf(v + DV_LAYERNORM_EPS);
        for (i = 0; i + 16 <= C; i += 16)
            nn_store(yr + i, (nn_load(xr + i) - m) * s * nn_load(w + i) + nn_load(b + i));
        for (; i < C; i++)
            yr[i] = (xr[i] - m) * s * w[i] + b[i];
        mean[r] = m;
        rstd[r] = s;
    }
}

DV_NN_CLONES void dv_layernorm_backward(float *dx, float *dw, float *db, const float *dy,
                                        const float *x, const float *mean, const float *rstd,
                                        const float *w, size_t rows, size_t C)
{
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * C, *dyr = dy + r * C;
        float *dxr = dx + r * C;
        float m = mean[r], s = rstd[r];
        /* With n = normalized x and g = w·dy:
         * dx = s · (g - mean(g) - n · mean(g·n)). */
        nn_v16 ag = nn_splat(0.0f), agn = nn_splat(0.0f);
        size_t i = 0;
        for (; i + 16 <= C; i += 16) {
            nn_v16 n = (nn_load(xr + i) - m) * s, g = nn_load(w + i) * nn_load(dyr + i);
            ag += g;
            agn += g * n;
        }
        float g_mean = nn_hsum(ag), gn_mean = nn_hsum(agn);
        for (; i < C; i++) {
            float n = (xr[i] - m) * s, g = w[i] * dyr[i];
            g_mean += g;
            gn_mean += g * n;
        }
        g_mean /= (float)C;
        gn_mean /= (float)C;
        for (i = 0; i + 16 <= C; i += 16) {
            nn_v16 n = (nn_load(xr + i) - m) * s, d = nn_load(dyr + i);
            nn_store(db + i, nn_load(db + i) + d);
            nn_store(dw + i, nn_load(dw + i) + n * d);
            nn_store(dxr + i, nn_load(dxr + i) + (nn_load(w + i) * d - g_mean - n * gn_mean) * s);
        }
        for (; i < C; i++) {
            float n = (xr[i] - m) * s;
            db[i] += dyr[i];
            dw[i] += n * dyr[i];
            dxr[i] += (w[i] * dyr[i] - g_mean - n * gn_mean) * s;
        }
    }
}
