/* interaction.c — DLRM dot interaction (interaction.h). */
#include "interaction.h"

#include "gemm.h"

#include <string.h>

size_t dv_interaction_out_dim(size_t F, size_t D)
{
    size_t pairs, out;
    if (F == 0)
        return D;
    if (!dv_mul_size(F, F - 1, &pairs) || __builtin_add_overflow(D, pairs / 2, &out))
        return 0;
    return out;
}

size_t dv_interaction_scratch(size_t F)
{
    size_t n;
    return dv_mul_size(F, F, &n) ? n : 0;
}

static dv365_status check_shapes(const char *fn, size_t B, size_t F, size_t D, size_t *out_dim)
{
    if (F == 0 || D == 0)
        return dv_error(DV365_E_INVALID, "%s: F (%zu) and D (%zu) must be > 0", fn, F, D);
    size_t per, total;
    *out_dim = dv_interaction_out_dim(F, D);
    if (*out_dim == 0 || dv_interaction_scratch(F) == 0 || !dv_mul_size(F, D, &per) ||
        !dv_mul_size(B, per, &total) || !dv_mul_size(B, *out_dim, &total))
        return dv_error(DV365_E_NOMEM, "%s: sizes overflow (B %zu, F %zu, D %zu)", fn, B, F, D);
    return DV365_OK;
}

dv365_status dv_interaction_forward(float *out, float *scratch, const float *Z, size_t B,
                                    size_t F, size_t D, int nthreads)
{
    size_t od;
    dv365_status st = check_shapes(__func__, B, F, D, &od);
    if (st != DV365_OK)
        return st;
    if (B == 0)
        return DV365_OK;
    DV_CHECK_NULL(out);
    DV_CHECK_NULL(scratch);
    DV_CHECK_NULL(Z);
    for (size_t b = 0; b < B; b++) {
        const float *z = Z + b * F * D;
        float *o = out + b * od;
        memcpy(o, z, D * sizeof(float));
        /* Gram = Z Z^T [F x F]; only its strict lower triangle is kept. */
        dv_sgemm(false, true, F, F, D, 1.0f, z, D, z, D, 0.0f, scratch, F, nthreads);
        float *pair = o + D;
        for (size_t i = 1; i < F; i++)
            for (size_t j = 0; j < i; j++)
                *pair++ = scratch[i * F + j];
    }
    return DV365_OK;
}

dv365_status dv_interaction_backward(float *dZ, float *scratch, const float *dout, const float *Z,
                                     size_t B, size_t F, size_t D, int nthreads)
{
    size_t od;
    dv365_status st = check_shapes(__func__, B, F, D, &od);
    if (st != DV365_OK)
        return st;
    if (B == 0)
        return DV365_OK;
    DV_CHECK_NULL(dZ);
    DV_CHECK_NULL(scratch);
    DV_CHECK_NULL(dout);
    DV_CHECK_NULL(Z);
    for (size_t b = 0; b < B; b++) {
        const float *z = Z + b * F * D;
        const float *g = dout + b * od;
        float *dz = dZ + b * F * D;
        for (size_t d = 0; d < D; d++)
            dz[d] += g[d];
        /* G symmetric with G[i][j] = G[j][i] = gradient of pair (i, j) and a
         * zero diagonal; then dZ += G Z gives both dz_i += g z_j and
         * dz_j += g z_i. */
        const float *pair = g + D;
        for (size_t i = 0; i < F; i++)
            scratch[i * F + i] = 0.0f;
        for (size_t i = 1; i < F; i++)
            for (size_t j = 0; j < i; j++) {
                scratch[i * F + j] = *pair;
                scratch[j * F + i] = *pair;
                pair++;
            }
        dv_sgemm(false, false, F, D, F, 1.0f, scratch, F, z, D, 1.0f, dz, D, nthreads);
    }
    return DV365_OK;
}
