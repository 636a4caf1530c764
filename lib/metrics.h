/* metrics.h — streaming evaluation metrics (internal).
 *
 * Each metric is an accumulator: reset, add batches, read the value at any
 * time.  Inputs are strided columns (stride = T to read task t of a
 * [B x T] matrix), optional weights (NULL = 1).  All sums are in double and
 * run in input order, so a value depends only on the data and its order.
 *
 * NE (normalized entropy) is TorchRec's (torchrec/metrics/ne.py): with
 * predictions p (probabilities) clamped to [eta, 1−eta], eta = 1e-12, in
 * double,
 *   ce_sum = Σ −w·y·log2(p) − w·(1−y)·log2(1−p)
 *   pos = Σ w·y,  neg = Σ w·(1−y),  n = Σ w
 *   ŷ = clamp(pos / n, eta, 1−eta)
 *   NE = ce_sum / (−pos·log2(ŷ) − neg·log2(1−ŷ))
 * i.e. the mean cross entropy over the entropy of the mean label.  (The log
 * base cancels; TorchRec's log2 is kept so ce_sum means the same thing.)
 *
 * AUC is exact: triples (prediction, label y, weight w) are kept (the only
 * metric that stores its inputs, 12 bytes each, in a growable array), sorted
 * when read; a positive weighs w·y and a negative w·(1−y) (soft labels
 * allowed), and tied predictions count one half — the area
 * under the ROC curve with its ties drawn as a straight segment (trapezoid),
 * as sklearn.metrics.roc_auc_score computes it.
 *
 * MSE is TorchRec's (torchrec/metrics/mse.py): Σ w·(p − y)² / Σ w. */
#ifndef DV365_METRICS_H
#define DV365_METRICS_H

#include "internal.h"

#define DV_NE_ETA 1e-12

typedef struct dv_ne_acc {
    double ce_sum, weighted_num, pos, neg;
} dv_ne_acc;

void dv_ne_reset(dv_ne_acc *a);
/* Add n examples: pred[i·pred_stride] in [0,1], label[i·label_stride] in
 * [0,1], weight[i·weight_stride] >= 0 (weight may be NULL).  Non-finite
 * values give DV365_E_NONFINITE, out-of-range ones DV365_E_INVALID (naming
 * the index); the accumulator is unchanged on error. */
dv365_status dv_ne_add(dv_ne_acc *a, const float *pred, size_t pred_stride, const float *label,
                       size_t label_stride, const float *weight, size_t weight_stride, size_t n);
/* DV365_E_STATE while no weight has been added. */
dv365_status dv_ne_value(const dv_ne_acc *a, double *ne);

typedef struct dv_mse_acc {
    double err_sum, weighted_num;
} dv_mse_acc;

void dv_mse_reset(dv_mse_acc *a);
dv365_status dv_mse_add(dv_mse_acc *a, const float *pred, size_t pred_stride, const float *target,
                        size_t target_stride, const float *weight, size_t weight_stride,
                        size_t n);
dv365_status dv_mse_value(const dv_mse_acc *a, double *mse);

typedef struct dv_auc_item {
    float pred, label, weight; /* positive weight w·y, negative w·(1−y), in double */
} dv_auc_item;

typedef struct dv_auc_acc {
    dv_auc_item *items;
    size_t n, cap;
} dv_auc_acc;

/* A zeroed struct is a valid empty accumulator too. */
void dv_auc_init(dv_auc_acc *a);
/* Forget the examples, keeping the memory. */
void dv_auc_reset(dv_auc_acc *a);
void dv_auc_free(dv_auc_acc *a);
/* Same inputs and checks as dv_ne_add (pred may be any finite score);
 * DV365_E_NOMEM if the array cannot grow (nothing is added then). */
dv365_status dv_auc_add(dv_auc_acc *a, const float *pred, size_t pred_stride, const float *label,
                        size_t label_stride, const float *weight, size_t weight_stride, size_t n);
/* Sorts the stored items in place (no allocation).  DV365_E_STATE unless
 * both the positive and the negative weights are > 0 (AUC is undefined
 * with one class). */
dv365_status dv_auc_value(dv_auc_acc *a, double *auc);

#endif
