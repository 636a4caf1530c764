/* metrics.c — NE, AUC and MSE accumulators (metrics.h). */
#include "metrics.h"

#include <math.h>
#include <string.h>

/* Checks shared by the add functions; nothing is accumulated before they pass. */
static dv365_status check_batch(const char *fn, const float *pred, size_t ps, bool pred_is_prob,
                                const float *label, size_t ls, bool label_is_prob,
                                const float *weight, size_t ws, size_t n)
{
    if (n == 0)
        return DV365_OK;
    DV_CHECK_NULL(pred);
    DV_CHECK_NULL(label);
    if (ps == 0 || ls == 0 || (weight && ws == 0))
        return dv_error(DV365_E_INVALID, "%s: strides must be > 0", fn);
    for (size_t i = 0; i < n; i++) {
        float p = pred[i * ps], y = label[i * ls], w = weight ? weight[i * ws] : 1.0f;
        if (!isfinite(p) || !isfinite(y) || !isfinite(w))
            return dv_error(DV365_E_NONFINITE, "%s: example %zu has a non-finite %s (%g)", fn, i,
                            !isfinite(p) ? "prediction" : !isfinite(y) ? "label" : "weight",
                            (double)(!isfinite(p) ? p : !isfinite(y) ? y : w));
        if (pred_is_prob && !(p >= 0 && p <= 1))
            return dv_error(DV365_E_INVALID, "%s: prediction %zu is %g, not a probability in [0, 1]",
                            fn, i, (double)p);
        if (label_is_prob && !(y >= 0 && y <= 1))
            return dv_error(DV365_E_INVALID, "%s: label %zu is %g, not in [0, 1]", fn, i,
                            (double)y);
        if (w < 0)
            return dv_error(DV365_E_INVALID, "%s: weight %zu is %g, must be >= 0", fn, i,
                            (double)w);
    }
    return DV365_OK;
}

/* --- NE ------------------------------------------------------------------------ */

void dv_ne_reset(dv_ne_acc *a) { memset(a, 0, sizeof *a); }

static double clamp_eta(double x)
{
    return x < DV_NE_ETA ? DV_NE_ETA : x > 1.0 - DV_NE_ETA ? 1.0 - DV_NE_ETA : x;
}

dv365_status dv_ne_add(dv_ne_acc *a, const float *pred, size_t pred_stride, const float *label,
                       size_t label_stride, const float *weight, size_t weight_stride, size_t n)
{
    DV_CHECK_NULL(a);
    dv365_status st = check_batch(__func__, pred, pred_stride, true, label, label_stride, true,
                                  weight, weight_stride, n);
    if (st != DV365_OK)
        return st;
    /* Per batch sums first, then added to the state, as TorchRec does. */
    double ce = 0, wn = 0, pos = 0, neg = 0;
    for (size_t i = 0; i < n; i++) {
        double p = clamp_eta(pred[i * pred_stride]);
        double y = label[i * label_stride], w = weight ? weight[i * weight_stride] : 1.0;
        ce += -w * y * log2(p) - w * (1.0 - y) * log2(1.0 - p);
        wn += w;
        pos += w * y;
        neg += w * (1.0 - y);
    }
    a->ce_sum += ce;
    a->weighted_num += wn;
    a->pos += pos;
    a->neg += neg;
    return DV365_OK;
}

dv365_status dv_ne_value(const dv_ne_acc *a, double *ne)
{
    DV_CHECK_NULL(a);
    DV_CHECK_NULL(ne);
    if (!(a->weighted_num > 0))
        return dv_error(DV365_E_STATE, "NE: no examples (total weight 0)");
    double mean = clamp_eta(a->pos / a->weighted_num);
    double norm = -a->pos * log2(mean) - a->neg * log2(1.0 - mean);
    *ne = a->ce_sum / norm;
    return DV365_OK;
}

/* --- MSE ----------------------------------------------------------------------- */

void dv_mse_reset(dv_mse_acc *a) { memset(a, 0, sizeof *a); }

dv365_status dv_mse_add(dv_mse_acc *a, const float *pred, size_t pred_stride, const float *target,
                        size_t target_stride, const float *weight, size_t weight_stride, size_t n)
{
    DV_CHECK_NULL(a);
    dv365_status st = check_batch(__func__, pred, pred_stride, false, target, target_stride,
                                  false, weight, weight_stride, n);
    if (st != DV365_OK)
        return st;
    double err = 0, wn = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)pred[i * pred_stride] - (double)target[i * target_stride];
        double w = weight ? weight[i * weight_stride] : 1.0;
        err += w * d * d;
        wn += w;
    }
    a->err_sum += err;
    a->weighted_num += wn;
    return DV365_OK;
}

dv365_status dv_mse_value(const dv_mse_acc *a, double *mse)
{
    DV_CHECK_NULL(a);
    DV_CHECK_NULL(mse);
    if (!(a->weighted_num > 0))
        return dv_error(DV365_E_STATE, "MSE: no examples (total weight 0)");
    *mse = a->err_sum / a->weighted_num;
    return DV365_OK;
}

/* --- AUC ----------------------------------------------------------------------- */

void dv_auc_init(dv_auc_acc *a) { memset(a, 0, sizeof *a); }
void dv_auc_reset(dv_auc_acc *a) { a->n = 0; }

void dv_auc_free(dv_auc_acc *a)
{
    if (a == NULL)
        return;
    dv_free(a->items);
    memset(a, 0, sizeof *a);
}

dv365_status dv_auc_add(dv_auc_acc *a, const float *pred, size_t pred_stride, const float *label,
                        size_t label_stride, const float *weight, size_t weight_stride, size_t n)
{
    DV_CHECK_NULL(a);
    dv365_status st = check_batch(__func__, pred, pred_stride, false, label, label_stride, true,
                                  weight, weight_stride, n);
    if (st != DV365_OK)
        return st;
    if (n > SIZE_MAX / sizeof(dv_auc_item) - a->n)
        return dv_error(DV365_E_NOMEM, "AUC: %zu + %zu items overflow", a->n, n);
    if (a->n + n > a->cap) {
        size_t cap = a->cap ? a->cap : 1024;
        while (cap < a->n + n)
            cap = cap > SIZE_MAX / sizeof(dv_auc_item) / 2 ? a->n + n : cap * 2;
        void *p = a->items;
        if (!dv_grow(&p, a->cap * sizeof(dv_auc_item), cap * sizeof(dv_auc_item)))
            return dv_error(DV365_E_NOMEM, "AUC: cannot grow to %zu items", cap);
        a->items = p;
        a->cap = cap;
    }
    for (size_t i = 0; i < n; i++) {
        float y = label[i * label_stride], w = weight ? weight[i * weight_stride] : 1.0f;
        dv_auc_item *it = &a->items[a->n + i];
        it->pred = pred[i * pred_stride];
        it->label = y;
        it->weight = w;
    }
    a->n += n;
    return DV365_OK;
}

/* In-place heap sort by prediction, ascending: O(n log n), no allocation.
 * It is not stable, which does not matter: tied predictions are handled
 * as one group below. */
static void sift_down(dv_auc_item *x, size_t root, size_t n)
{
    for (;;) {
        size_t child = 2 * root + 1;
        if (child >= n)
            return;
        if (child + 1 < n && x[child].pred < x[child + 1].pred)
            child++;
        if (!(x[root].pred < x[child].pred))
            return;
        dv_auc_item t = x[root];
        x[root] = x[child];
        x[child] = t;
        root = child;
    }
}

static void sort_by_pred(dv_auc_item *x, size_t n)
{
    for (size_t i = n / 2; i-- > 0;)
        sift_down(x, i, n);
    for (size_t end = n; end-- > 1;) {
        dv_auc_item t = x[0];
        x[0] = x[end];
        x[end] = t;
        sift_down(x, 0, end);
    }
}

dv365_status dv_auc_value(dv_auc_acc *a, double *auc)
{
    DV_CHECK_NULL(a);
    DV_CHECK_NULL(auc);
    sort_by_pred(a->items, a->n);
    /* Sweep groups of equal predictions from the lowest score: each positive
     * weight beats the negative weight seen below it and ties half of its
     * own group's negative weight. */
    double area = 0, neg_below = 0, pos_total = 0;
    for (size_t i = 0; i < a->n;) {
        double gp = 0, gn = 0;
        size_t j = i;
        for (; j < a->n && a->items[j].pred == a->items[i].pred; j++) {
            double y = a->items[j].label, w = a->items[j].weight;
            gp += w * y;
            gn += w * (1.0 - y);
        }
        area += gp * (neg_below + 0.5 * gn);
        neg_below += gn;
        pos_total += gp;
        i = j;
    }
    if (!(pos_total > 0 && neg_below > 0))
        return dv_error(DV365_E_STATE,
                        "AUC: undefined with %s weight (%zu examples: positive %g, negative %g)",
                        pos_total > 0 ? "no negative" : "no positive", a->n, pos_total, neg_below);
    *auc = area / (pos_total * neg_below);
    return DV365_OK;
}
