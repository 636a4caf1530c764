/* loss.h — the multi-task training loss of the backbone (internal).
 *
 * logits and labels are [B x T] row-major (one column per task, config
 * order).  Task t contributes weight_t × (mean over the batch of its loss):
 *   binary       BCE with logits, exactly
 *                torch.nn.functional.binary_cross_entropy_with_logits:
 *                  l = max(z,0) − z·y + log1p(exp(−|z|))   (stable for any z)
 *                labels in [0, 1] (soft labels allowed);
 *   regression   squared error l = (z − y')², y' = log1p(y) when the task
 *                sets log1p_target (watch time: heavy-tailed), else y'= y;
 *                with log1p labels must be > −1.
 * total = Σ_t weight_t · mean_b l[b,t].  Everything is summed in double. */
#ifndef DV365_LOSS_H
#define DV365_LOSS_H

#include "internal.h"

typedef enum dv_task_kind {
    DV_TASK_BINARY = 0,
    DV_TASK_REGRESSION = 1
} dv_task_kind;

typedef struct dv_task {
    dv_task_kind kind;
    double weight;     /* >= 0, finite (double: the config gives decimals) */
    bool log1p_target; /* regression only: fit log1p(label) */
} dv_task;

/* DV365_E_INVALID for an unknown kind, a negative/non-finite weight or
 * log1p_target on a binary task (names the task index). */
dv365_status dv_tasks_check(const dv_task *tasks, size_t T);

/* *loss = the weighted total; task_loss [T] (may be NULL) receives each
 * task's unweighted batch mean.  B must be > 0.  DV365_E_NONFINITE for a
 * non-finite logit or label, DV365_E_INVALID for a binary label outside
 * [0,1] or a log1p label <= −1 (the message names row and task). */
dv365_status dv_loss_forward(double *loss, double *task_loss, const float *logits,
                             const float *labels, const dv_task *tasks, size_t B, size_t T);

/* dlogits [B x T] += dloss · weight_t / B · ∂l/∂z, with
 * ∂l/∂z = sigmoid(z) − y (binary) or 2(z − y') (regression).
 * Same checks as the forward. */
dv365_status dv_loss_backward(float *dlogits, const float *logits, const float *labels,
                              const dv_task *tasks, size_t B, size_t T, float dloss);

/* Numerically stable logistic function in double (exposed for metrics). */
double dv_sigmoid(double z);

#endif
