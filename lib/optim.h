/* optim.h — optimizers, learning-rate schedules and gradient clipping
 * (internal; the trainer exposes them).
 *
 * Everything works on raw float arrays with explicit sizes, in a fixed loop
 * order, so results are deterministic; no function here allocates.
 *
 *   dense parameters     Adam / AdamW, exactly torch.optim.Adam / AdamW
 *                        (PyTorch 1.13 single-tensor path):
 *                          g' = g + wd·p                       (Adam: L2)
 *                          p  = p·(1 − lr·wd)                  (AdamW: decoupled)
 *                          m  = β1·m + (1−β1)·g'
 *                          v  = β2·v + (1−β2)·g'²
 *                          p -= lr/(1−β1^t) · m / (sqrt(v)/sqrt(1−β2^t) + eps)
 *   embedding tables     row-wise Adagrad on sparse rows, FBGEMM's
 *                        EXACT_ROWWISE_ADAGRAD (TorchRec's default for
 *                        embedding tables), CPU kernel formula
 *                        (fbgemm_gpu/codegen/genscript/optimizers.py,
 *                        rowwise_adagrad, split_weight_update_cpu):
 *                          g'   = g + wd·p                      (mode L2 only)
 *                          acc += Σ_d g'_d² / D                 (float, d ascending)
 *                          mult = lr / (sqrt(acc) + eps)
 *                          corr = 1                (none)
 *                                 1 − mult·wd      (L2)
 *                                 1 − lr·wd        (decoupled)
 *                          p    = corr·p − mult·g  (the raw g, as FBGEMM does)
 *                        This is lr·g/(sqrt(acc)+eps) up to rounding, the
 *                        formula of torchrec.optim.RowWiseAdagrad; we follow
 *                        FBGEMM's association (one multiplier per row) because
 *                        that is what production TorchRec training runs.
 *   schedules            lr(step) as a pure function (warm-up, then constant,
 *                        linear or cosine decay to a floor).
 *   clipping             torch.nn.utils.clip_grad_norm_ over several blocks,
 *                        the norm summed in double. */
#ifndef DV365_OPTIM_H
#define DV365_OPTIM_H

#include "internal.h"

/* --- Adam / AdamW ------------------------------------------------------------ */

typedef struct dv_adam {
    double beta1, beta2, eps, weight_decay;
    bool decoupled; /* true: AdamW (decoupled decay); false: Adam (L2 in the gradient) */
    uint64_t step;  /* optimizer steps begun so far: PyTorch's state['step'] */
} dv_adam;

/* Validate and set the hyper-parameters; step starts at 0.  PyTorch's
 * defaults are beta1 0.9, beta2 0.999, eps 1e-8, weight_decay 0 (Adam) or
 * 0.01 (AdamW).  DV365_E_INVALID for betas outside [0,1), eps or
 * weight_decay negative or not finite. */
dv365_status dv_adam_init(dv_adam *opt, bool decoupled, double beta1, double beta2, double eps,
                          double weight_decay);

/* Begin an optimizer step: advances opt->step (so the first step is 1).
 * Call once per step, then dv_adam_update for each parameter block. */
dv365_status dv_adam_begin_step(dv_adam *opt);

/* Update one contiguous block of n parameters p with gradients g and moment
 * buffers m, v (zero before the first step), using step opt->step and
 * learning rate lr.  DV365_E_STATE before the first dv_adam_begin_step,
 * DV365_E_INVALID for a negative or non-finite lr. */
dv365_status dv_adam_update(const dv_adam *opt, double lr, float *p, const float *g, float *m,
                            float *v, size_t n);

/* --- row-wise Adagrad for embedding tables ----------------------------------- */

typedef enum dv_wd_mode {
    DV_WD_NONE = 0,      /* FBGEMM weight_decay_mode 0 */
    DV_WD_L2 = 1,        /* 1: wd·p added to the gradient before the accumulator */
    DV_WD_DECOUPLED = 2  /* 2: p scaled by (1 − lr·wd) */
} dv_wd_mode;

typedef struct dv_rowwise_adagrad {
    double eps, weight_decay;
    dv_wd_mode wd_mode;
} dv_rowwise_adagrad;

/* FBGEMM's defaults are eps 1e-8, weight_decay 0, mode NONE. */
dv365_status dv_rowwise_adagrad_init(dv_rowwise_adagrad *opt, double eps, double weight_decay,
                                     dv_wd_mode mode);

/* Update the n rows rows[0..n) of table [n_rows x D] with the gradient rows
 * grads [n x D] (row i of grads belongs to table row rows[i]); acc [n_rows]
 * holds one accumulator per table row (zero at the start).  Rows must be
 * distinct (the pooling backward deduplicates them): a repeated row would be
 * updated twice.  DV365_E_INVALID for a row id >= n_rows or a bad lr. */
dv365_status dv_rowwise_adagrad_update(const dv_rowwise_adagrad *opt, double lr, float *table,
                                       float *acc, size_t n_rows, size_t D, const size_t *rows,
                                       const float *grads, size_t n);

/* --- learning-rate schedules ------------------------------------------------- */

typedef enum dv_lr_decay {
    DV_LR_CONSTANT = 0, /* base_lr after the warm-up */
    DV_LR_LINEAR = 1,   /* linear from base_lr to min_lr over the decay steps */
    DV_LR_COSINE = 2    /* half cosine from base_lr to min_lr over the decay steps */
} dv_lr_decay;

typedef struct dv_lr_schedule {
    dv_lr_decay decay;
    double base_lr, min_lr; /* min_lr: the floor of a decay; ignored by CONSTANT */
    uint64_t warmup_steps;  /* 0: no warm-up */
    uint64_t total_steps;   /* end of the decay (LINEAR/COSINE); ignored by CONSTANT */
} dv_lr_schedule;

/* DV365_E_INVALID unless 0 <= min_lr <= base_lr (finite) and, for a decay,
 * total_steps > warmup_steps. */
dv365_status dv_lr_schedule_check(const dv_lr_schedule *s);

/* Learning rate of optimizer step `step` (1-based, as dv_adam.step):
 *   step <= warmup:          base·step/warmup   (reaches base at step = warmup)
 *   warmup < step <= total:  min + (base−min)·f(q), q = (step−warmup)/(total−warmup),
 *                            f = 1 (constant), 1−q (linear), (1+cos(πq))/2 (cosine)
 *   step > total:            min_lr (decays), base_lr (constant)
 * Step 0 (no step taken yet) gives the value of step 1.  The schedule must
 * have passed dv_lr_schedule_check. */
double dv_lr_at(const dv_lr_schedule *s, uint64_t step);

/* --- gradient clipping ------------------------------------------------------- */

/* One gradient block of n floats. */
typedef struct dv_grad_block {
    float *g;
    size_t n;
} dv_grad_block;

/* Σ g² in double, in index order (exposed so a caller can add blocks that
 * are not contiguous, such as sparse table gradients). */
double dv_grad_sq_sum(const float *g, size_t n);

/* torch.nn.utils.clip_grad_norm_(params, max_norm) with the L2 norm:
 * total = sqrt(Σ over all blocks of g²) (computed in double), then every
 * gradient is multiplied by coef = max_norm / (total + 1e-6) when coef < 1.
 * *total_norm (may be NULL) receives the norm before clipping.  A NaN or
 * infinite norm returns DV365_E_NONFINITE and leaves the gradients untouched
 * (PyTorch would scale them to NaN), so the caller can skip the step.
 * max_norm must be > 0 and finite. */
dv365_status dv_clip_grad_norm(dv_grad_block *blocks, size_t n_blocks, double max_norm,
                               double *total_norm);

/* Multiply n gradients by scale (the second half of clipping when the caller
 * computes the norm itself with dv_grad_sq_sum). */
void dv_grad_scale(float *g, size_t n, float scale);

#endif
