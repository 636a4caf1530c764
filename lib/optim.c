/* optim.c — Adam/AdamW, row-wise Adagrad, lr schedules, clipping (optim.h).
 *
 * Element-wise updates are written in float with the operations in the order
 * PyTorch's CPU kernels use (scalars computed in double, then rounded to
 * float once), so trajectories track torch.optim within float rounding. */
#include "optim.h"

#include <math.h>

static bool finite_nonneg(double x) { return isfinite(x) && x >= 0; }

/* --- Adam / AdamW ------------------------------------------------------------ */

dv365_status dv_adam_init(dv_adam *opt, bool decoupled, double beta1, double beta2, double eps,
                          double weight_decay)
{
    DV_CHECK_NULL(opt);
    if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1))
        return dv_error(DV365_E_INVALID, "adam: betas must be in [0, 1), got %g and %g", beta1,
                        beta2);
    if (!finite_nonneg(eps))
        return dv_error(DV365_E_INVALID, "adam: eps must be finite and >= 0, got %g", eps);
    if (!finite_nonneg(weight_decay))
        return dv_error(DV365_E_INVALID, "adam: weight_decay must be finite and >= 0, got %g",
                        weight_decay);
    opt->beta1 = beta1;
    opt->beta2 = beta2;
    opt->eps = eps;
    opt->weight_decay = weight_decay;
    opt->decoupled = decoupled;
    opt->step = 0;
    return DV365_OK;
}

dv365_status dv_adam_begin_step(dv_adam *opt)
{
    DV_CHECK_NULL(opt);
    if (opt->step == UINT64_MAX)
        return dv_error(DV365_E_STATE, "adam: step counter overflow");
    opt->step++;
    return DV365_OK;
}

dv365_status dv_adam_update(const dv_adam *opt, double lr, float *p, const float *g, float *m,
                            float *v, size_t n)
{
    DV_CHECK_NULL(opt);
    if (n > 0) {
        DV_CHECK_NULL(p);
        DV_CHECK_NULL(g);
        DV_CHECK_NULL(m);
        DV_CHECK_NULL(v);
    }
    if (opt->step == 0)
        return dv_error(DV365_E_STATE, "adam: update before the first dv_adam_begin_step");
    if (!finite_nonneg(lr))
        return dv_error(DV365_E_INVALID, "adam: learning rate must be finite and >= 0, got %g",
                        lr);
    /* Bias corrections in double, as torch computes them in Python floats.
     * pow() of a step count beyond 2^53 is still well defined. */
    double t = (double)opt->step;
    double bc1 = 1.0 - pow(opt->beta1, t);
    double bc2 = 1.0 - pow(opt->beta2, t);
    const float b1 = (float)opt->beta1, one_b1 = (float)(1.0 - opt->beta1);
    const float b2 = (float)opt->beta2, one_b2 = (float)(1.0 - opt->beta2);
    const float neg_step = (float)(-(lr / bc1));
    const float bc2_sqrt = (float)sqrt(bc2);
    const float eps = (float)opt->eps;
    const float wd = (float)opt->weight_decay;
    const float decay = (float)(1.0 - lr * opt->weight_decay); /* AdamW: p *= 1 - lr*wd */
    const bool l2 = !opt->decoupled && opt->weight_decay != 0;
    const bool shrink = opt->decoupled && opt->weight_decay != 0;

    for (size_t i = 0; i < n; i++) {
        float pi = p[i], gi = g[i];
        if (shrink)
            pi = pi * decay;
        if (l2)
            gi = gi + wd * pi;
        float mi = m[i] * b1 + one_b1 * gi;
        float vi = v[i] * b2 + (one_b2 * gi) * gi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[i] = pi + (neg_step * mi) / denom;
        m[i] = mi;
        v[i] = vi;
    }
    return DV365_OK;
}

/* --- row-wise Adagrad -------------------------------------------------------- */

dv365_status dv_rowwise_adagrad_init(dv_rowwise_adagrad *opt, double eps, double weight_decay,
                                     dv_wd_mode mode)
{
    DV_CHECK_NULL(opt);
    if (!finite_nonneg(eps))
        return dv_error(DV365_E_INVALID, "rowwise adagrad: eps must be finite and >= 0, got %g",
                        eps);
    if (!finite_nonneg(weight_decay))
        return dv_error(DV365_E_INVALID,
                        "rowwise adagrad: weight_decay must be finite and >= 0, got %g",
                        weight_decay);
    if (mode != DV_WD_NONE && mode != DV_WD_L2 && mode != DV_WD_DECOUPLED)
        return dv_error(DV365_E_INVALID, "rowwise adagrad: unknown weight decay mode %d",
                        (int)mode);
    opt->eps = eps;
    opt->weight_decay = weight_decay;
    opt->wd_mode = mode;
    return DV365_OK;
}

dv365_status dv_rowwise_adagrad_update(const dv_rowwise_adagrad *opt, double lr, float *table,
                                       float *acc, size_t n_rows, size_t D, const size_t *rows,
                                       const float *grads, size_t n)
{
    DV_CHECK_NULL(opt);
    if (n == 0)
        return DV365_OK;
    DV_CHECK_NULL(table);
    DV_CHECK_NULL(acc);
    DV_CHECK_NULL(rows);
    DV_CHECK_NULL(grads);
    if (D == 0)
        return dv_error(DV365_E_INVALID, "rowwise adagrad: dimension D must be > 0");
    if (!finite_nonneg(lr))
        return dv_error(DV365_E_INVALID,
                        "rowwise adagrad: learning rate must be finite and >= 0, got %g", lr);
    /* Validate every id before touching anything, so an error changes nothing. */
    for (size_t i = 0; i < n; i++)
        if (rows[i] >= n_rows)
            return dv_error(DV365_E_INVALID,
                            "rowwise adagrad: row id %zu (entry %zu) out of range for a table "
                            "of %zu rows",
                            rows[i], i, n_rows);

    const float wd = (float)opt->weight_decay;
    const float lr_f = (float)lr, eps = (float)opt->eps;
    const bool l2 = opt->wd_mode == DV_WD_L2 && opt->weight_decay != 0;
    for (size_t i = 0; i < n; i++) {
        float *w = table + rows[i] * D;
        const float *g = grads + i * D;
        /* FBGEMM accumulates the squares in float (acc_type<float, true>). */
        float sq = 0;
        for (size_t d = 0; d < D; d++) {
            float gd = l2 ? g[d] + wd * w[d] : g[d];
            sq += gd * gd;
        }
        float a = acc[rows[i]] + sq / (float)D;
        acc[rows[i]] = a;
        float mult = lr_f / (sqrtf(a) + eps);
        float corr = 1.0f;
        if (opt->wd_mode == DV_WD_L2)
            corr = 1.0f - mult * wd;
        else if (opt->wd_mode == DV_WD_DECOUPLED)
            corr = 1.0f - lr_f * wd;
        for (size_t d = 0; d < D; d++)
            w[d] = corr * w[d] - g[d] * mult;
    }
    return DV365_OK;
}

/* --- schedules ----------------------------------------------------------------- */

dv365_status dv_lr_schedule_check(const dv_lr_schedule *s)
{
    DV_CHECK_NULL(s);
    if (s->decay != DV_LR_CONSTANT && s->decay != DV_LR_LINEAR && s->decay != DV_LR_COSINE)
        return dv_error(DV365_E_INVALID, "lr schedule: unknown decay %d", (int)s->decay);
    if (!finite_nonneg(s->base_lr))
        return dv_error(DV365_E_INVALID, "lr schedule: base_lr must be finite and >= 0, got %g",
                        s->base_lr);
    if (s->decay != DV_LR_CONSTANT) {
        if (!finite_nonneg(s->min_lr) || s->min_lr > s->base_lr)
            return dv_error(DV365_E_INVALID,
                            "lr schedule: min_lr must be in [0, base_lr = %g], got %g",
                            s->base_lr, s->min_lr);
        if (s->total_steps <= s->warmup_steps)
            return dv_error(DV365_E_INVALID,
                            "lr schedule: total_steps (%llu) must exceed warmup_steps (%llu)",
                            (unsigned long long)s->total_steps,
                            (unsigned long long)s->warmup_steps);
    }
    return DV365_OK;
}

double dv_lr_at(const dv_lr_schedule *s, uint64_t step)
{
    if (step == 0)
        step = 1;
    if (step <= s->warmup_steps)
        return s->base_lr * (double)step / (double)s->warmup_steps;
    if (s->decay == DV_LR_CONSTANT)
        return s->base_lr;
    if (step >= s->total_steps)
        return s->min_lr;
    double q = (double)(step - s->warmup_steps) / (double)(s->total_steps - s->warmup_steps);
    double f = s->decay == DV_LR_LINEAR ? 1.0 - q : 0.5 * (1.0 + cos(M_PI * q));
    return s->min_lr + (s->base_lr - s->min_lr) * f;
}

/* --- clipping -------------------------------------------------------------------- */

double dv_grad_sq_sum(const float *g, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)g[i] * (double)g[i];
    return s;
}

void dv_grad_scale(float *g, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        g[i] *= scale;
}

dv365_status dv_clip_grad_norm(dv_grad_block *blocks, size_t n_blocks, double max_norm,
                               double *total_norm)
{
    if (n_blocks > 0)
        DV_CHECK_NULL(blocks);
    if (!(isfinite(max_norm) && max_norm > 0))
        return dv_error(DV365_E_INVALID, "clip_grad_norm: max_norm must be finite and > 0, got %g",
                        max_norm);
    double sq = 0;
    for (size_t b = 0; b < n_blocks; b++) {
        if (blocks[b].n > 0 && blocks[b].g == NULL)
            return dv_error(DV365_E_NULL, "clip_grad_norm: block %zu has NULL data", b);
        sq += dv_grad_sq_sum(blocks[b].g, blocks[b].n);
    }
    double norm = sqrt(sq);
    if (!isfinite(norm))
        return dv_error(DV365_E_NONFINITE,
                        "clip_grad_norm: the gradient norm is not finite (a NaN or infinite "
                        "gradient); gradients left unscaled");
    if (total_norm)
        *total_norm = norm;
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0)
        for (size_t b = 0; b < n_blocks; b++)
            dv_grad_scale(blocks[b].g, blocks[b].n, (float)coef);
    return DV365_OK;
}
