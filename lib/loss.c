/* loss.c — weighted BCE-with-logits + MSE over tasks (loss.h). */
#include "loss.h"

#include <math.h>

double dv_sigmoid(double z)
{
    /* exp of a non-positive number never overflows. */
    if (z >= 0)
        return 1.0 / (1.0 + exp(-z));
    double e = exp(z);
    return e / (1.0 + e);
}

dv365_status dv_tasks_check(const dv_task *tasks, size_t T)
{
    if (T > 0)
        DV_CHECK_NULL(tasks);
    for (size_t t = 0; t < T; t++) {
        if (tasks[t].kind != DV_TASK_BINARY && tasks[t].kind != DV_TASK_REGRESSION)
            return dv_error(DV365_E_INVALID, "task %zu: unknown kind %d", t, (int)tasks[t].kind);
        if (!(isfinite(tasks[t].weight) && tasks[t].weight >= 0))
            return dv_error(DV365_E_INVALID, "task %zu: weight must be finite and >= 0, got %g", t,
                            (double)tasks[t].weight);
        if (tasks[t].kind == DV_TASK_BINARY && tasks[t].log1p_target)
            return dv_error(DV365_E_INVALID, "task %zu: log1p_target is for regression tasks", t);
    }
    return DV365_OK;
}

/* Shared argument and value checks of forward and backward. */
static dv365_status check_inputs(const char *fn, const float *logits, const float *labels,
                                 const dv_task *tasks, size_t B, size_t T)
{
    DV_CHECK_NULL(logits);
    DV_CHECK_NULL(labels);
    DV_CHECK_NULL(tasks);
    if (B == 0 || T == 0)
        return dv_error(DV365_E_INVALID, "%s: batch (%zu) and task count (%zu) must be > 0", fn,
                        B, T);
    size_t n;
    if (!dv_mul_size(B, T, &n))
        return dv_error(DV365_E_NOMEM, "%s: %zu x %zu overflows", fn, B, T);
    dv365_status st = dv_tasks_check(tasks, T);
    if (st != DV365_OK)
        return st;
    for (size_t b = 0; b < B; b++)
        for (size_t t = 0; t < T; t++) {
            float z = logits[b * T + t], y = labels[b * T + t];
            if (!isfinite(z))
                return dv_error(DV365_E_NONFINITE, "%s: logit [%zu, task %zu] is %g", fn, b, t,
                                (double)z);
            if (!isfinite(y))
                return dv_error(DV365_E_NONFINITE, "%s: label [%zu, task %zu] is %g", fn, b, t,
                                (double)y);
            if (tasks[t].kind == DV_TASK_BINARY && !(y >= 0 && y <= 1))
                return dv_error(DV365_E_INVALID,
                                "%s: label [%zu, task %zu] is %g; binary labels must be in [0, 1]",
                                fn, b, t, (double)y);
            if (tasks[t].log1p_target && !(y > -1))
                return dv_error(DV365_E_INVALID,
                                "%s: label [%zu, task %zu] is %g; log1p targets must be > -1", fn,
                                b, t, (double)y);
        }
    return DV365_OK;
}

static double target(const dv_task *task, float y)
{
    return task->log1p_target ? log1p((double)y) : (double)y;
}

dv365_status dv_loss_forward(double *loss, double *task_loss, const float *logits,
                             const float *labels, const dv_task *tasks, size_t B, size_t T)
{
    DV_CHECK_NULL(loss);
    dv365_status st = check_inputs(__func__, logits, labels, tasks, B, T);
    if (st != DV365_OK)
        return st;
    double total = 0;
    for (size_t t = 0; t < T; t++) {
        double sum = 0;
        for (size_t b = 0; b < B; b++) {
            double z = logits[b * T + t], y = labels[b * T + t];
            if (tasks[t].kind == DV_TASK_BINARY) {
                sum += fmax(z, 0.0) - z * y + log1p(exp(-fabs(z)));
            } else {
                double d = z - target(&tasks[t], labels[b * T + t]);
                sum += d * d;
            }
        }
        double mean = sum / (double)B;
        if (task_loss)
            task_loss[t] = mean;
        total += tasks[t].weight * mean;
    }
    *loss = total;
    return DV365_OK;
}

dv365_status dv_loss_backward(float *dlogits, const float *logits, const float *labels,
                              const dv_task *tasks, size_t B, size_t T, float dloss)
{
    DV_CHECK_NULL(dlogits);
    dv365_status st = check_inputs(__func__, logits, labels, tasks, B, T);
    if (st != DV365_OK)
        return st;
    if (!isfinite(dloss))
        return dv_error(DV365_E_NONFINITE, "dv_loss_backward: dloss is %g", (double)dloss);
    for (size_t t = 0; t < T; t++) {
        double scale = (double)dloss * tasks[t].weight / (double)B;
        for (size_t b = 0; b < B; b++) {
            double z = logits[b * T + t], g;
            if (tasks[t].kind == DV_TASK_BINARY)
                g = dv_sigmoid(z) - (double)labels[b * T + t];
            else
                g = 2.0 * (z - target(&tasks[t], labels[b * T + t]));
            dlogits[b * T + t] += (float)(scale * g);
        }
    }
    return DV365_OK;
}
