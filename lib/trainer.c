/* trainer.c — training the model inside the DLRM backbone.
 *
 * One step over a batch of B examples:
 *
 *   group the examples by (timeline, cutoff = label time − gap): G groups
 *   pool each group's timeline ─► X [G,N,D] ─► encoder ─► Ug [G,K,D]
 *   gather Ub [B,K,D] = Ug[group(b)] ─► backbone ─► logits [B,T] ─► loss
 *   backward: backbone ─► dUb ─► scatter-sum dUg ─► encoder ─► dX
 *             ─► pooling backward per group ─► table rows, summed over groups
 *   update: AdamW (dense: encoder + backbone MLPs, after global-norm
 *           clipping), row-wise Adagrad (every embedding table)
 *
 * Examples of one user and cutoff share a single pool/encode pass, and
 * their gradients add up in it.  Every sum runs in a fixed order (examples
 * in batch order, groups in group order), so a step is bitwise the same for
 * any thread count, and a resumed run repeats the losses of an unbroken one:
 * the data order is a pure function of (seed, examples consumed). */
#include "backbone.h"
#include "encoder.h"
#include "fileio.h"
#include "metrics.h"
#include "model.h"
#include "parallel.h"
#include "pool.h"
#include "safetensors.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- the summed sparse gradient of one pooling table --------------------- */

/* Rows in first-touch order; slot[row] = index + 1 (0 = untouched). */
typedef struct row_sum {
    size_t n, cap;
    size_t *rows;
    float *grads;
    size_t *slot; /* [table rows] */
} row_sum;

static bool row_sum_add(row_sum *s, size_t D, const size_t *rows, const float *grads, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t r = rows[i];
        float *dst;
        if (s->slot[r]) {
            dst = s->grads + (s->slot[r] - 1) * D;
        } else {
            if (s->n == s->cap) {
                size_t cap = s->cap ? 2 * s->cap : 1024;
                if (!dv_grow((void **)&s->rows, s->cap * sizeof(size_t), cap * sizeof(size_t)) ||
                    !dv_grow((void **)&s->grads, s->cap * D * sizeof(float),
                             cap * D * sizeof(float)))
                    return false;
                s->cap = cap;
            }
            s->rows[s->n] = r;
            s->slot[r] = ++s->n;
            dst = s->grads + (s->n - 1) * D;
            memset(dst, 0, D * sizeof(float));
        }
        const float *src = grads + i * D;
        for (size_t j = 0; j < D; j++)
            dst[j] += src[j];
    }
    return true;
}

static void row_sum_clear(row_sum *s)
{
    for (size_t i = 0; i < s->n; i++)
        s->slot[s->rows[i]] = 0;
    s->n = 0;
}

/* --- the trainer ---------------------------------------------------------- */

struct dv365_trainer {
    dv365_model *m;
    const dv365_config *cfg;
    size_t N, D, K, T, n_dense, n_enc, n_bb, n_tables, n_items;
    size_t E, KB; /* extra tokens from the caller; KB = K + E backbone user tokens */

    dv_adam adam;
    dv_rowwise_adagrad adagrad;
    float *enc_grad, *enc_m, *enc_v; /* [n_enc] */
    float *bb_grad, *bb_m, *bb_v;    /* [n_bb] */
    float **acc;                     /* [n_tables + n_items] Adagrad accumulators */
    uint64_t consumed;               /* examples consumed by train_files */

    /* batch buffers, grown to the largest batch seen */
    size_t cap_b;
    float *X, *Ug, *enc_acts, *Ub, *logits, *dlogits, *bb_acts, *dUb, *dUg, *dX;
    size_t *group;               /* [cap_b] example -> group */
    const dv365_timeline **g_tl; /* [cap_b] */
    int64_t *g_cut;              /* [cap_b] */
    dv365_pool_grad *pg;         /* one group's pooling gradient */
    row_sum *sum;                /* [n_tables] */
    dv365_pool_grad *item_grad;
    dv365_workspace *ws;
    double *task_loss; /* [T] of the last step */

    /* evaluation */
    dv_ne_acc *ne;
    dv_auc_acc *auc;
    dv_mse_acc *mse;
    double eval_loss;
    size_t eval_n;
    float *probs; /* [cap_b * T] */
};

void dv365_trainer_free(dv365_trainer *t)
{
    if (!t)
        return;
    float *blocks[] = {t->enc_grad, t->enc_m,   t->enc_v,  t->bb_grad, t->bb_m,
                       t->bb_v,     t->X,       t->Ug,     t->enc_acts, t->Ub,
                       t->logits,   t->dlogits, t->bb_acts, t->dUb,    t->dUg,
                       t->dX,       t->probs};
    for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++)
        dv_free(blocks[i]);
    if (t->acc)
        for (size_t i = 0; i < t->n_tables + t->n_items; i++)
            dv_free(t->acc[i]);
    dv_free(t->acc);
    if (t->sum)
        for (size_t i = 0; i < t->n_tables; i++) {
            dv_free(t->sum[i].rows);
            dv_free(t->sum[i].grads);
            dv_free(t->sum[i].slot);
        }
    dv_free(t->sum);
    dv_free(t->group);
    dv_free(t->g_tl);
    dv_free(t->g_cut);
    dv_free(t->task_loss);
    dv365_pool_grad_free(t->pg);
    dv365_pool_grad_free(t->item_grad);
    dv365_workspace_free(t->ws);
    if (t->auc)
        for (size_t i = 0; i < t->T; i++)
            dv_auc_free(&t->auc[i]);
    dv_free(t->auc);
    dv_free(t->ne);
    dv_free(t->mse);
    dv_free(t);
}

dv365_status dv365_trainer_create(dv365_model *m, dv365_trainer **out)
{
    dv_clear_error();
    DV_CHECK_NULL(m);
    DV_CHECK_NULL(out);
    const dv365_config *cfg = m->cfg;
    const dv_training_cfg *tc = &cfg->training;
    dv365_trainer *t = dv_calloc(1, sizeof *t);
    if (!t)
        return dv_error(DV365_E_NOMEM, "dv365_trainer_create: out of memory");
    t->m = m;
    t->cfg = cfg;
    t->N = cfg->n_slices;
    t->D = cfg->dim;
    t->K = dv365_encoder_num_tokens(m->enc);
    t->E = cfg->backbone.extra_tokens;
    t->KB = dv_backbone_num_tokens(m->bb);
    t->T = dv_backbone_num_tasks(m->bb);
    t->n_dense = dv_backbone_num_dense(m->bb);
    t->n_enc = dv365_encoder_num_params(m->enc);
    t->n_bb = dv_backbone_num_params(m->bb);
    t->n_tables = cfg->n_tables;
    t->n_items = dv_backbone_num_item_tables(m->bb);

    dv365_status st = dv_adam_init(&t->adam, tc->adamw, tc->beta1, tc->beta2, tc->eps,
                                   tc->weight_decay);
    if (st == DV365_OK)
        st = dv_rowwise_adagrad_init(&t->adagrad, tc->emb_eps, 0.0, DV_WD_NONE);
    if (st != DV365_OK) {
        dv365_trainer_free(t);
        return st;
    }
    bool ok = (t->enc_grad = dv_calloc(t->n_enc, sizeof(float))) &&
              (t->enc_m = dv_calloc(t->n_enc, sizeof(float))) &&
              (t->enc_v = dv_calloc(t->n_enc, sizeof(float))) &&
              (t->bb_grad = dv_calloc(t->n_bb, sizeof(float))) &&
              (t->bb_m = dv_calloc(t->n_bb, sizeof(float))) &&
              (t->bb_v = dv_calloc(t->n_bb, sizeof(float))) &&
              (t->acc = dv_calloc(t->n_tables + t->n_items, sizeof(float *))) &&
              (t->sum = dv_calloc(t->n_tables, sizeof(row_sum))) &&
              (t->task_loss = dv_calloc(t->T, sizeof(double))) &&
              (t->ne = dv_calloc(t->T, sizeof(dv_ne_acc))) &&
              (t->auc = dv_calloc(t->T, sizeof(dv_auc_acc))) &&
              (t->mse = dv_calloc(t->T, sizeof(dv_mse_acc)));
    for (size_t i = 0; ok && i < t->n_tables; i++)
        ok = (t->acc[i] = dv_calloc(cfg->table_rows[i], sizeof(float))) &&
             (t->sum[i].slot = dv_calloc(cfg->table_rows[i], sizeof(size_t)));
    for (size_t i = 0; ok && i < t->n_items; i++) {
        size_t rows;
        dv_backbone_item_table(m->bb, i, NULL, &rows, NULL, NULL);
        ok = (t->acc[t->n_tables + i] = dv_calloc(rows, sizeof(float))) != NULL;
    }
    if (!ok) {
        dv365_trainer_free(t);
        return dv_error(DV365_E_NOMEM, "dv365_trainer_create: out of memory");
    }
    if (t->auc)
        for (size_t i = 0; i < t->T; i++)
            dv_auc_init(&t->auc[i]);
    if ((st = dv365_pool_grad_create(m->pooler, &t->pg)) ||
        (st = dv_backbone_item_grad_create(m->bb, &t->item_grad)) ||
        (st = dv365_workspace_create(&t->ws))) {
        dv365_trainer_free(t);
        return st;
    }
    dv365_trainer_eval_reset(t);
    *out = t;
    return DV365_OK;
}

/* Grow the batch buffers to B examples (the only allocation of a step). */
static dv365_status reserve_batch(dv365_trainer *t, size_t B)
{
    if (B <= t->cap_b)
        return DV365_OK;
    const size_t ND = t->N * t->D, KD = t->K * t->D, KBD = t->KB * t->D;
    size_t enc_acts = dv_encoder_acts_floats(t->m->enc, B);
    size_t bb_acts = dv_backbone_acts_floats(t->m->bb, B);
    if (enc_acts == SIZE_MAX || bb_acts == SIZE_MAX)
        return dv_error(DV365_E_NOMEM, "trainer: a batch of %zu is too large", B);
    struct {
        float **p;
        size_t n;
    } bufs[] = {{&t->X, B * ND},          {&t->Ug, B * KD},       {&t->enc_acts, enc_acts},
                {&t->Ub, B * KBD},        {&t->logits, B * t->T}, {&t->dlogits, B * t->T},
                {&t->bb_acts, bb_acts},   {&t->dUb, B * KBD},     {&t->dUg, B * KD},
                {&t->dX, B * ND},         {&t->probs, B * t->T}};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        dv_free(*bufs[i].p);
        if (!(*bufs[i].p = dv_malloc(bufs[i].n * sizeof(float)))) {
            t->cap_b = 0;
            return dv_error(DV365_E_NOMEM, "trainer: cannot allocate the buffers of a batch of %zu",
                            B);
        }
    }
    dv_free(t->group);
    dv_free(t->g_tl);
    dv_free(t->g_cut);
    t->group = dv_malloc(B * sizeof(size_t));
    t->g_tl = dv_malloc(B * sizeof(dv365_timeline *));
    t->g_cut = dv_malloc(B * sizeof(int64_t));
    if (!t->group || !t->g_tl || !t->g_cut) {
        t->cap_b = 0;
        return dv_error(DV365_E_NOMEM, "trainer: out of memory");
    }
    t->cap_b = B;
    return DV365_OK;
}

/* Validate a batch and group its examples by (timeline, cutoff). */
static dv365_status group_batch(dv365_trainer *t, const char *fn, size_t B,
                                const dv365_timeline *const *tls, const int64_t *label_times,
                                const uint64_t *item_ids, const float *labels, size_t *G)
{
    if (B == 0)
        return dv_error(DV365_E_INVALID, "%s: batch must be > 0", fn);
    if (!tls || !label_times || !item_ids || !labels)
        return dv_error(DV365_E_NULL, "%s: timelines, label_times, item_ids and labels are required",
                        fn);
    dv365_status st = reserve_batch(t, B);
    if (st)
        return st;
    const int64_t gap = t->cfg->training.gap_s;
    size_t g = 0;
    for (size_t b = 0; b < B; b++) {
        if (!tls[b])
            return dv_error(DV365_E_NULL, "%s: timelines[%zu] is NULL", fn, b);
        if (tls[b]->cfg->fingerprint != t->cfg->fingerprint)
            return dv_error(DV365_E_MISMATCH, "%s: timelines[%zu] was made for another config", fn,
                            b);
        if (label_times[b] < gap || label_times[b] > DV365_TIME_MAX)
            return dv_error(DV365_E_TIMESTAMP,
                            "%s: label_times[%zu] = %lld must lie in [gap = %lld s, 2100-01-01]",
                            fn, b, (long long)label_times[b], (long long)gap);
        int64_t cut = label_times[b] - gap;
        size_t j = 0;
        /* a user's examples usually sit together: look back from the newest group */
        for (j = g; j > 0; j--)
            if (t->g_tl[j - 1] == tls[b] && t->g_cut[j - 1] == cut)
                break;
        if (j == 0) {
            t->g_tl[g] = tls[b];
            t->g_cut[g] = cut;
            j = ++g;
        }
        t->group[b] = j - 1;
    }
    *G = g;
    return DV365_OK;
}

/* Pool the groups into X, reusing the workspace as one slot per thread. */
static dv365_status pool_groups(dv365_trainer *t, size_t G, int nthreads)
{
    size_t max_events = 0;
    for (size_t g = 0; g < G; g++)
        max_events = DV_MAX(max_events, t->g_tl[g]->n);
    size_t slot = dv_align64(dv365_pool_workspace_size(t->m->pooler, max_events)), total;
    size_t threads = DV_MIN((size_t)nthreads, G);
    if (!dv_mul_size(slot, threads, &total))
        return dv_error(DV365_E_NOMEM, "trainer: pooling workspace overflows");
    unsigned char *mem = dv_workspace_get(t->ws, total);
    if (!mem)
        return DV365_E_NOMEM;
    return dv_model_pool_users(t->m, G, t->g_tl, t->g_cut, t->X, mem, slot, (int)threads);
}

/* Forward of a grouped batch up to the logits; extra [B, E, D] (E > 0 only)
 * follows each example's encoder tokens. */
static dv365_status forward(dv365_trainer *t, size_t B, size_t G, const uint64_t *item_ids,
                            const float *dense, const float *extra, bool train, int nthreads)
{
    const size_t KD = t->K * t->D, ED = t->E * t->D, KBD = KD + ED;
    dv365_status st = pool_groups(t, G, nthreads);
    if (st)
        return st;
    if (train)
        st = dv_encoder_forward_train(t->m->enc, G, t->X, t->Ug, t->enc_acts, nthreads);
    else
        st = dv365_encode(t->m->enc, t->ws, G, t->X, t->Ug, nthreads);
    if (st)
        return st;
    for (size_t b = 0; b < B; b++) {
        memcpy(t->Ub + b * KBD, t->Ug + t->group[b] * KD, KD * sizeof(float));
        if (ED)
            memcpy(t->Ub + b * KBD + KD, extra + b * ED, ED * sizeof(float));
    }
    return dv_backbone_forward(t->m->bb, B, dense, t->n_dense, item_ids, t->Ub, t->KB, t->logits,
                               t->bb_acts, nthreads);
}

static dv365_status check_fn_threads(const char *fn, int nthreads)
{
    if (nthreads < 1 || nthreads > DV_MAX_CHUNKS)
        return dv_error(DV365_E_INVALID, "%s: nthreads must be in [1, %d], got %d", fn,
                        DV_MAX_CHUNKS, nthreads);
    return DV365_OK;
}

/* The extra tokens are required exactly when the config has some. */
static dv365_status check_extra(const dv365_trainer *t, const char *fn, const float *extra)
{
    if (t->E > 0 && extra == NULL)
        return dv_error(DV365_E_INVALID,
                        "%s: the config has backbone.extra_tokens = %zu: pass them with the _ex "
                        "function", fn, t->E);
    return DV365_OK;
}

static dv365_status step(dv365_trainer *t, const char *fn, size_t B,
                         const dv365_timeline *const *tls, const int64_t *label_times,
                         const uint64_t *item_ids, const float *dense, const float *labels,
                         const float *extra, float *d_extra, double *loss, int nthreads)
{
    DV_CHECK_NULL(t);
    dv365_status st = check_fn_threads(fn, nthreads);
    size_t G = 0;
    if (st || (st = check_extra(t, fn, extra)) ||
        (st = group_batch(t, fn, B, tls, label_times, item_ids, labels, &G)))
        return st;
    const size_t D = t->D, KD = t->K * D, ND = t->N * D, ED = t->E * D, KBD = KD + ED;
    double total;

    /* forward and loss */
    if ((st = forward(t, B, G, item_ids, dense, extra, true, nthreads)) ||
        (st = dv_backbone_loss(t->m->bb, B, t->logits, labels, &total, t->task_loss, t->dlogits)))
        return dv_error_context(st, "%s", fn);

    /* backward */
    memset(t->enc_grad, 0, t->n_enc * sizeof(float));
    memset(t->bb_grad, 0, t->n_bb * sizeof(float));
    memset(t->dUb, 0, B * KBD * sizeof(float));
    if ((st = dv_backbone_backward(t->m->bb, t->ws, B, dense, item_ids, t->bb_acts, t->dlogits,
                                   t->bb_grad, t->item_grad, t->dUb, nthreads)))
        return dv_error_context(st, "%s", fn);
    memset(t->dUg, 0, G * KD * sizeof(float));
    for (size_t b = 0; b < B; b++) {
        float *dst = t->dUg + t->group[b] * KD;
        const float *src = t->dUb + b * KBD;
        for (size_t i = 0; i < KD; i++)
            dst[i] += src[i];
        if (d_extra && ED)
            memcpy(d_extra + b * ED, src + KD, ED * sizeof(float));
    }
    memset(t->dX, 0, G * ND * sizeof(float));
    if ((st = dv_encoder_backward(t->m->enc, t->ws, G, t->X, t->enc_acts, t->dUg, t->enc_grad,
                                  t->dX, nthreads)))
        return dv_error_context(st, "%s", fn);
    for (size_t i = 0; i < t->n_tables; i++)
        row_sum_clear(&t->sum[i]);
    for (size_t g = 0; g < G; g++) {
        if ((st = dv365_pool_backward(t->m->pooler, t->ws, t->g_tl[g], t->g_cut[g],
                                      t->dX + g * ND, t->pg)))
            return dv_error_context(st, "%s: group %zu", fn, g);
        for (size_t i = 0; i < t->n_tables; i++)
            if (!row_sum_add(&t->sum[i], D, t->pg->t[i].rows, t->pg->t[i].grads, t->pg->t[i].n))
                return dv_error(DV365_E_NOMEM, "%s: out of memory for table gradients", fn);
    }

    /* A non-finite gradient anywhere skips the step: nothing is updated. */
    double sq = dv_grad_sq_sum(t->enc_grad, t->n_enc) + dv_grad_sq_sum(t->bb_grad, t->n_bb);
    for (size_t i = 0; i < t->n_tables; i++)
        sq += dv_grad_sq_sum(t->sum[i].grads, t->sum[i].n * D);
    for (size_t i = 0; i < t->n_items; i++)
        sq += dv_grad_sq_sum(t->item_grad->t[i].grads, t->item_grad->t[i].n * D);
    if (!isfinite(sq))
        return dv_error(DV365_E_NONFINITE, "%s: the gradient is not finite; step skipped", fn);

    /* update: clip and Adam the dense blocks, row-wise Adagrad the tables */
    const dv_training_cfg *tc = &t->cfg->training;
    if (tc->clip_norm > 0) {
        dv_grad_block blocks[2] = {{t->enc_grad, t->n_enc}, {t->bb_grad, t->n_bb}};
        double norm;
        if ((st = dv_clip_grad_norm(blocks, 2, tc->clip_norm, &norm)))
            return dv_error_context(st, "%s: step skipped", fn);
    }
    if ((st = dv_adam_begin_step(&t->adam)))
        return st;
    double lr = dv_lr_at(&tc->dense_lr, t->adam.step);
    if ((st = dv_adam_update(&t->adam, lr, dv_encoder_params(t->m->enc), t->enc_grad, t->enc_m,
                             t->enc_v, t->n_enc)) ||
        (st = dv_adam_update(&t->adam, lr, dv_backbone_params(t->m->bb), t->bb_grad, t->bb_m,
                             t->bb_v, t->n_bb)))
        return st;
    for (size_t i = 0; i < t->n_tables; i++)
        if ((st = dv_rowwise_adagrad_update(&t->adagrad, tc->emb_lr, t->m->pooler->tables[i],
                                            t->acc[i], t->cfg->table_rows[i], D, t->sum[i].rows,
                                            t->sum[i].grads, t->sum[i].n)))
            return st;
    for (size_t i = 0; i < t->n_items; i++) {
        float *table;
        size_t rows, n;
        const size_t *r;
        const float *g;
        dv_backbone_item_table(t->m->bb, i, &table, &rows, NULL, NULL);
        dv365_pool_grad_table(t->item_grad, i, &n, &r, &g);
        if ((st = dv_rowwise_adagrad_update(&t->adagrad, tc->emb_lr, table, t->acc[t->n_tables + i],
                                            rows, D, r, g, n)))
            return st;
    }
    t->m->fingerprint_stale = true;
    if (loss)
        *loss = total;
    return DV365_OK;
}

dv365_status dv365_trainer_step(dv365_trainer *t, size_t B, const dv365_timeline *const *tls,
                                const int64_t *label_times, const uint64_t *item_ids,
                                const float *dense, const float *labels, double *loss,
                                int nthreads)
{
    dv_clear_error();
    return step(t, "dv365_trainer_step", B, tls, label_times, item_ids, dense, labels, NULL, NULL,
                loss, nthreads);
}

dv365_status dv365_trainer_step_ex(dv365_trainer *t, size_t B, const dv365_timeline *const *tls,
                                   const int64_t *label_times, const uint64_t *item_ids,
                                   const float *dense, const float *labels, const float *extra,
                                   float *d_extra, double *loss, int nthreads)
{
    dv_clear_error();
    return step(t, "dv365_trainer_step_ex", B, tls, label_times, item_ids, dense, labels, extra,
                d_extra, loss, nthreads);
}

uint64_t dv365_trainer_steps(const dv365_trainer *t) { return t ? t->adam.step : 0; }

dv365_status dv365_trainer_task_loss(const dv365_trainer *t, size_t task, double *loss)
{
    dv_clear_error();
    DV_CHECK_NULL(t);
    DV_CHECK_NULL(loss);
    if (task >= t->T)
        return dv_error(DV365_E_INVALID, "task %zu out of range (%zu tasks)", task, t->T);
    *loss = t->task_loss[task];
    return DV365_OK;
}

/* --- evaluation ------------------------------------------------------------ */

void dv365_trainer_eval_reset(dv365_trainer *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->T; i++) {
        dv_ne_reset(&t->ne[i]);
        dv_auc_reset(&t->auc[i]);
        dv_mse_reset(&t->mse[i]);
    }
    t->eval_loss = 0;
    t->eval_n = 0;
}

static dv365_status eval_batch(dv365_trainer *t, const char *fn, size_t B,
                               const dv365_timeline *const *tls, const int64_t *label_times,
                               const uint64_t *item_ids, const float *dense, const float *labels,
                               const float *extra, float *logits, int nthreads)
{
    DV_CHECK_NULL(t);
    dv365_status st = check_fn_threads(fn, nthreads);
    size_t G = 0;
    double total;
    if (st || (st = check_extra(t, fn, extra)) ||
        (st = group_batch(t, fn, B, tls, label_times, item_ids, labels, &G)) ||
        (st = forward(t, B, G, item_ids, dense, extra, false, nthreads)) ||
        (st = dv_backbone_loss(t->m->bb, B, t->logits, labels, &total, NULL, NULL)))
        return st ? dv_error_context(st, "%s", fn) : st;
    const dv_task *tasks = dv_backbone_tasks(t->m->bb);
    for (size_t i = 0; i < B * t->T; i++)
        t->probs[i] = tasks[i % t->T].kind == DV_TASK_BINARY ? (float)dv_sigmoid(t->logits[i])
                                                             : t->logits[i];
    /* regression metrics compare in the space the loss fits (log1p or raw) */
    for (size_t k = 0; k < t->T; k++) {
        if (tasks[k].kind == DV_TASK_BINARY) {
            if ((st = dv_ne_add(&t->ne[k], t->probs + k, t->T, labels + k, t->T, NULL, 0, B)) ||
                (st = dv_auc_add(&t->auc[k], t->probs + k, t->T, labels + k, t->T, NULL, 0, B)))
                return st;
        } else {
            for (size_t b = 0; b < B; b++) {
                float y = labels[b * t->T + k];
                float target = tasks[k].log1p_target ? (float)log1p(y) : y;
                if ((st = dv_mse_add(&t->mse[k], t->probs + b * t->T + k, 1, &target, 1, NULL, 0,
                                     1)))
                    return st;
            }
        }
    }
    t->eval_loss += total * (double)B;
    t->eval_n += B;
    if (logits)
        memcpy(logits, t->logits, B * t->T * sizeof(float));
    return DV365_OK;
}

dv365_status dv365_trainer_eval_batch(dv365_trainer *t, size_t B, const dv365_timeline *const *tls,
                                      const int64_t *label_times, const uint64_t *item_ids,
                                      const float *dense, const float *labels, float *logits,
                                      int nthreads)
{
    dv_clear_error();
    return eval_batch(t, "dv365_trainer_eval_batch", B, tls, label_times, item_ids, dense, labels,
                      NULL, logits, nthreads);
}

dv365_status dv365_trainer_eval_batch_ex(dv365_trainer *t, size_t B,
                                         const dv365_timeline *const *tls,
                                         const int64_t *label_times, const uint64_t *item_ids,
                                         const float *dense, const float *labels,
                                         const float *extra, float *logits, int nthreads)
{
    dv_clear_error();
    return eval_batch(t, "dv365_trainer_eval_batch_ex", B, tls, label_times, item_ids, dense,
                      labels, extra, logits, nthreads);
}

dv365_status dv365_trainer_eval_result(dv365_trainer *t, size_t task, double *ne, double *auc,
                                       double *mse)
{
    dv_clear_error();
    DV_CHECK_NULL(t);
    if (task >= t->T)
        return dv_error(DV365_E_INVALID, "task %zu out of range (%zu tasks)", task, t->T);
    if (t->eval_n == 0)
        return dv_error(DV365_E_STATE, "no example has been evaluated since the last reset");
    const dv_task *k = &dv_backbone_tasks(t->m->bb)[task];
    dv365_status st = DV365_OK;
    if (ne)
        *ne = NAN;
    if (auc)
        *auc = NAN;
    if (mse)
        *mse = NAN;
    if (k->kind == DV_TASK_BINARY) {
        if (ne && (st = dv_ne_value(&t->ne[task], ne)) == DV365_E_STATE)
            st = DV365_OK, *ne = NAN;
        if (st == DV365_OK && auc && (st = dv_auc_value(&t->auc[task], auc)) == DV365_E_STATE)
            st = DV365_OK, *auc = NAN; /* one class only: AUC undefined */
    } else if (mse) {
        st = dv_mse_value(&t->mse[task], mse);
    }
    return st;
}

dv365_status dv365_trainer_eval_loss(const dv365_trainer *t, double *loss, size_t *n)
{
    dv_clear_error();
    DV_CHECK_NULL(t);
    if (loss)
        *loss = t->eval_n ? t->eval_loss / (double)t->eval_n : NAN;
    if (n)
        *n = t->eval_n;
    return DV365_OK;
}

/* --- file-driven training ----------------------------------------------------- */

/* Examples are read in windows of DV_TRAIN_WINDOW, each shuffled by a
 * permutation seeded with (seed, epoch, window): the order is a pure
 * function of the seed and the examples consumed so far. */
#define DV_TRAIN_WINDOW ((size_t)65536)

typedef struct example_window {
    size_t first, n; /* example indices [first, first + n) of the file */
    uint64_t epoch;
    uint32_t *perm;
    uint64_t *user, *items; /* [n], [n][3] */
    int64_t *time;
    float *dense, *labels; /* [n][n_dense], [n][T] */
    bool loaded;
} example_window;

typedef struct file_batch {
    dv365_example_reader *er;
    dv365_timeline_reader *tr;
    size_t n_examples;
    example_window w;
    /* per batch */
    uint64_t *user;            /* [B] */
    int64_t *time;             /* [B] */
    uint64_t *items;           /* [B][3] */
    float *dense, *labels;     /* [B][n_dense], [B][T] */
    dv365_timeline **tl;       /* [B] pool of timelines, one per distinct user */
    uint64_t *tl_user;         /* [B] */
    const dv365_timeline **ex_tl; /* [B] */
    size_t cap;
} file_batch;

static void file_batch_free(file_batch *f)
{
    dv365_example_reader_free(f->er);
    dv365_timeline_reader_free(f->tr);
    dv_free(f->w.perm);
    dv_free(f->w.user);
    dv_free(f->w.items);
    dv_free(f->w.time);
    dv_free(f->w.dense);
    dv_free(f->w.labels);
    dv_free(f->user);
    dv_free(f->time);
    dv_free(f->items);
    dv_free(f->dense);
    dv_free(f->labels);
    if (f->tl)
        for (size_t i = 0; i < f->cap; i++)
            dv365_timeline_free(f->tl[i]);
    dv_free(f->tl);
    dv_free(f->tl_user);
    dv_free(f->ex_tl);
}

static dv365_status file_batch_open(file_batch *f, const dv365_trainer *t, const char *timelines,
                                    const char *examples, size_t B)
{
    memset(f, 0, sizeof *f);
    dv365_status st;
    if ((st = dv365_example_reader_open(examples, &f->er)) ||
        (st = dv365_timeline_reader_open(timelines, t->cfg, &f->tr)))
        return st;
    if (dv365_example_reader_num_dense(f->er) != t->n_dense ||
        dv365_example_reader_num_tasks(f->er) != t->T)
        return dv_error(DV365_E_MISMATCH,
                        "%s has %zu dense features and %zu labels; the model wants %zu and %zu",
                        examples, dv365_example_reader_num_dense(f->er),
                        dv365_example_reader_num_tasks(f->er), t->n_dense, t->T);
    f->n_examples = dv365_example_reader_count(f->er);
    if (f->n_examples == 0)
        return dv_error(DV365_E_INVALID, "%s holds no example", examples);
    size_t W = DV_MIN(DV_TRAIN_WINDOW, f->n_examples);
    f->cap = B;
    bool ok = (f->w.perm = dv_malloc(W * sizeof(uint32_t))) &&
              (f->w.user = dv_malloc(W * sizeof(uint64_t))) &&
              (f->w.items = dv_malloc(3 * W * sizeof(uint64_t))) &&
              (f->w.time = dv_malloc(W * sizeof(int64_t))) &&
              (f->w.dense = dv_malloc((W * t->n_dense + 1) * sizeof(float))) &&
              (f->w.labels = dv_malloc(W * t->T * sizeof(float))) &&
              (f->user = dv_malloc(B * sizeof(uint64_t))) &&
              (f->time = dv_malloc(B * sizeof(int64_t))) &&
              (f->items = dv_malloc(3 * B * sizeof(uint64_t))) &&
              (f->dense = dv_malloc((B * t->n_dense + 1) * sizeof(float))) &&
              (f->labels = dv_malloc(B * t->T * sizeof(float))) &&
              (f->tl = dv_calloc(B, sizeof(dv365_timeline *))) &&
              (f->tl_user = dv_malloc(B * sizeof(uint64_t))) &&
              (f->ex_tl = dv_malloc(B * sizeof(dv365_timeline *)));
    if (!ok)
        return dv_error(DV365_E_NOMEM, "trainer: out of memory for the data buffers");
    for (size_t i = 0; i < B; i++)
        if ((st = dv365_timeline_create(t->cfg, &f->tl[i])))
            return st;
    return DV365_OK;
}

/* Make window w of epoch e current: read its examples and shuffle. */
static dv365_status load_window(file_batch *f, const dv365_trainer *t, uint64_t epoch,
                                size_t first, bool shuffle)
{
    example_window *w = &f->w;
    if (w->loaded && w->first == first && w->epoch == epoch)
        return DV365_OK;
    w->loaded = false;
    w->first = first;
    w->epoch = epoch;
    w->n = DV_MIN(DV_TRAIN_WINDOW, f->n_examples - first);
    dv365_status st = dv365_example_reader_seek(f->er, first);
    for (size_t i = 0; st == DV365_OK && i < w->n; i++) {
        int done = 0;
        st = dv365_example_reader_next(f->er, &w->user[i], &w->time[i], &w->items[3 * i],
                                       &w->items[3 * i + 1], &w->items[3 * i + 2],
                                       w->dense + i * t->n_dense, w->labels + i * t->T, &done);
        if (st == DV365_OK && done)
            st = dv_error(DV365_E_FORMAT, "the example file ended early at %zu", first + i);
    }
    if (st)
        return st;
    for (size_t i = 0; i < w->n; i++)
        w->perm[i] = (uint32_t)i;
    if (shuffle) {
        dv_rng r;
        dv_rng_seed(&r, t->cfg->training.seed ^ dv_mix64(epoch * 0x100000000ull + first));
        for (size_t i = w->n; i > 1; i--) {
            size_t j = (size_t)(dv_rng_next(&r) % i);
            uint32_t tmp = w->perm[i - 1];
            w->perm[i - 1] = w->perm[j];
            w->perm[j] = tmp;
        }
    }
    w->loaded = true;
    return DV365_OK;
}

/* Fill the batch with examples pos .. pos+B-1 of the stream (epochs wrap
 * around the file) and load their users' timelines. */
static dv365_status fill_batch(file_batch *f, const dv365_trainer *t, uint64_t pos, size_t B,
                               bool shuffle)
{
    dv365_status st;
    size_t n_users = 0;
    for (size_t b = 0; b < B; b++, pos++) {
        uint64_t epoch = pos / f->n_examples;
        size_t idx = (size_t)(pos % f->n_examples);
        size_t first = idx - idx % DV_TRAIN_WINDOW;
        if ((st = load_window(f, t, epoch, first, shuffle)))
            return st;
        size_t i = f->w.perm[idx - first];
        f->user[b] = f->w.user[i];
        f->time[b] = f->w.time[i];
        memcpy(&f->items[3 * b], &f->w.items[3 * i], 3 * sizeof(uint64_t));
        memcpy(f->dense + b * t->n_dense, f->w.dense + i * t->n_dense, t->n_dense * sizeof(float));
        memcpy(f->labels + b * t->T, f->w.labels + i * t->T, t->T * sizeof(float));
        size_t u = 0;
        while (u < n_users && f->tl_user[u] != f->user[b])
            u++;
        if (u == n_users) {
            uint64_t got;
            int done = 0;
            if ((st = dv365_timeline_reader_seek(f->tr, f->user[b])) ||
                (st = dv365_timeline_reader_next(f->tr, &got, f->tl[u], &done)))
                return dv_error_context(st, "example %zu (user %llu)", idx,
                                        (unsigned long long)f->user[b]);
            f->tl_user[u] = f->user[b];
            n_users++;
        }
        f->ex_tl[b] = f->tl[u];
    }
    return DV365_OK;
}

/* The checks and set-up shared by train_files and eval_files. */
static dv365_status open_files(const dv365_trainer *t, const char *fn, const char *timelines_path,
                               const char *examples_path, int nthreads, file_batch *f)
{
    DV_CHECK_NULL(t);
    DV_CHECK_NULL(timelines_path);
    DV_CHECK_NULL(examples_path);
    dv365_status st = check_fn_threads(fn, nthreads);
    if (st == DV365_OK &&
        (st = file_batch_open(f, t, timelines_path, examples_path, t->cfg->training.batch_size)))
        file_batch_free(f);
    return st;
}

dv365_status dv365_trainer_train_files(dv365_trainer *t, const char *timelines_path,
                                       const char *examples_path, uint64_t steps,
                                       int (*progress)(void *ctx, uint64_t step, uint64_t total,
                                                       double loss),
                                       void *ctx, int nthreads)
{
    dv_clear_error();
    static const char *fn = "dv365_trainer_train_files";
    const size_t B = t ? t->cfg->training.batch_size : 0;
    file_batch f;
    dv365_status st = open_files(t, fn, timelines_path, examples_path, nthreads, &f);
    if (st)
        return st;
    if (steps == 0) /* the rest of the current epoch */
        steps = (f.n_examples - t->consumed % f.n_examples + B - 1) / B;
    for (uint64_t s = 0; s < steps; s++) {
        double loss = 0;
        if ((st = fill_batch(&f, t, t->consumed, B, true)) ||
            (st = dv365_trainer_step(t, B, f.ex_tl, f.time, f.items, f.dense, f.labels, &loss,
                                     nthreads)))
            break;
        t->consumed += B;
        if (progress && progress(ctx, s + 1, steps, loss)) {
            st = dv_error(DV365_E_STATE, "%s: stopped by the progress callback after %llu steps",
                          fn, (unsigned long long)(s + 1));
            break;
        }
    }
    file_batch_free(&f);
    return st;
}

dv365_status dv365_trainer_eval_files(dv365_trainer *t, const char *timelines_path,
                                      const char *examples_path, int nthreads)
{
    dv_clear_error();
    static const char *fn = "dv365_trainer_eval_files";
    const size_t B = t ? t->cfg->training.batch_size : 0;
    file_batch f;
    dv365_status st = open_files(t, fn, timelines_path, examples_path, nthreads, &f);
    if (st)
        return st;
    dv365_trainer_eval_reset(t);
    for (size_t pos = 0; pos < f.n_examples && st == DV365_OK; pos += B) {
        size_t n = DV_MIN(B, f.n_examples - pos);
        st = fill_batch(&f, t, pos, n, false);
        if (st == DV365_OK)
            st = dv365_trainer_eval_batch(t, n, f.ex_tl, f.time, f.items, f.dense, f.labels, NULL,
                                          nthreads);
    }
    file_batch_free(&f);
    return st;
}

/* --- checkpoints -------------------------------------------------------------- */

#define STATE_FILE "trainer_state.safetensors"
#define STATE_FORMAT "libdv365-trainer-state"

/* Name and rows of Adagrad accumulator i: pooling tables, then item tables. */
static void acc_tensor(const dv365_trainer *t, size_t i, char *name, size_t cap, size_t *rows)
{
    if (i < t->n_tables) {
        *rows = t->cfg->table_rows[i];
        snprintf(name, cap, "adagrad.tables.%s", t->cfg->table_names[i]);
    } else {
        const char *tname;
        dv_backbone_item_table(t->m->bb, i - t->n_tables, NULL, rows, NULL, &tname);
        snprintf(name, cap, "adagrad.%s", tname);
    }
}

static dv365_status add_state_tensors(const dv365_trainer *t, dv_st_writer *w)
{
    dv365_status st;
    size_t n_enc[1] = {t->n_enc}, n_bb[1] = {t->n_bb};
    if ((st = dv_st_writer_add(w, "adam.encoder.m", DV_DTYPE_F32, 1, n_enc, t->enc_m)) ||
        (st = dv_st_writer_add(w, "adam.encoder.v", DV_DTYPE_F32, 1, n_enc, t->enc_v)) ||
        (st = dv_st_writer_add(w, "adam.backbone.m", DV_DTYPE_F32, 1, n_bb, t->bb_m)) ||
        (st = dv_st_writer_add(w, "adam.backbone.v", DV_DTYPE_F32, 1, n_bb, t->bb_v)))
        return st;
    for (size_t i = 0; i < t->n_tables + t->n_items; i++) {
        char name[160];
        size_t rows[1];
        acc_tensor(t, i, name, sizeof name, &rows[0]);
        if ((st = dv_st_writer_add(w, name, DV_DTYPE_F32, 1, rows, t->acc[i])))
            return st;
    }
    return DV365_OK;
}

static void step_dir_name(char *buf, size_t cap, uint64_t step)
{
    snprintf(buf, cap, "step-%012llu", (unsigned long long)step);
}

/* The model and the trainer state of t into the directory sub. */
static dv365_status save_step(dv365_trainer *t, const char *sub)
{
    dv365_status st = dv365_model_save(t->m, sub);
    if (st)
        return st;
    dv_st_writer *w;
    if ((st = dv_st_writer_create(&w)))
        return st;
    char num[2][32], path[4300];
    snprintf(num[0], sizeof num[0], "%llu", (unsigned long long)t->adam.step);
    snprintf(num[1], sizeof num[1], "%llu", (unsigned long long)t->consumed);
    snprintf(path, sizeof path, "%s/%s", sub, STATE_FILE);
    if ((st = dv_st_writer_set_metadata(w, "format", STATE_FORMAT)) == DV365_OK &&
        (st = dv_st_writer_set_metadata(w, "step", num[0])) == DV365_OK &&
        (st = dv_st_writer_set_metadata(w, "consumed", num[1])) == DV365_OK &&
        (st = add_state_tensors(t, w)) == DV365_OK)
        st = dv_st_writer_write(w, path);
    dv_st_writer_free(w);
    return st;
}

/* Remove a directory of plain files (a step directory that failed). */
static void remove_dir(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        char file[4400];
        for (struct dirent *e; (e = readdir(d)) != NULL;)
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                if (snprintf(file, sizeof file, "%s/%s", path, e->d_name) < (int)sizeof file)
                    unlink(file);
            }
        closedir(d);
    }
    rmdir(path);
}

/* A step directory is written under a temporary name, then renamed to a
 * name that does not exist yet (step-N, or step-N.r1, .r2, ... when a
 * resumed run saves a step again), and only then named by LATEST: every
 * name LATEST ever holds is a complete checkpoint, whenever a crash hits. */
dv365_status dv365_trainer_save(dv365_trainer *t, const char *dir)
{
    dv_clear_error();
    DV_CHECK_NULL(t);
    DV_CHECK_NULL(dir);
    char tmp[4200], sub[4200], path[4300], name[64], unique[80];
    if (strlen(dir) > 4000)
        return dv_error(DV365_E_INVALID, "dv365_trainer_save: directory name too long");
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return dv_error(DV365_E_IO, "cannot create checkpoint directory %s: %s", dir,
                        strerror(errno));
    step_dir_name(name, sizeof name, t->adam.step);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp.%ld", dir, name, (long)getpid());
    dv365_status st = save_step(t, tmp);
    if (st) {
        remove_dir(tmp);
        return st;
    }
    struct stat sb;
    snprintf(unique, sizeof unique, "%s", name);
    for (int r = 1; snprintf(sub, sizeof sub, "%s/%s", dir, unique), stat(sub, &sb) == 0; r++)
        snprintf(unique, sizeof unique, "%s.r%d", name, r);
    if (rename(tmp, sub) != 0)
        return dv_error(DV365_E_IO, "cannot rename %s to %s: %s", tmp, sub, strerror(errno));
    if ((st = dv_sync_parent_dir(sub)))
        return st;
    snprintf(path, sizeof path, "%s/%s", dir, DV_LATEST_FILE);
    char line[96];
    int len = snprintf(line, sizeof line, "%s\n", unique);
    const void *parts[1] = {line};
    size_t sizes[1] = {(size_t)len};
    return dv_file_write_atomic(path, 1, parts, sizes);
}

static dv365_status meta_u64(const dv_st_file *f, const char *key, const char *path, uint64_t *out)
{
    const char *v = dv_st_metadata(f, key);
    char *end;
    if (!v || !*v || (*out = strtoull(v, &end, 10), *end))
        return dv_error(DV365_E_FORMAT, "%s: metadata '%s' is missing or not a number", path, key);
    return DV365_OK;
}

dv365_status dv365_trainer_resume(const char *dir, dv365_model **model_out,
                                  dv365_trainer **trainer_out)
{
    dv_clear_error();
    DV_CHECK_NULL(dir);
    DV_CHECK_NULL(model_out);
    DV_CHECK_NULL(trainer_out);
    char resolved[4200], path[4300];
    dv365_status st = dv_model_resolve_dir(dir, resolved, sizeof resolved);
    if (st)
        return st;
    dv365_model *m = NULL;
    dv365_trainer *t = NULL;
    dv_st_file *f = NULL;
    if ((st = dv365_model_load(resolved, &m)) || (st = dv365_trainer_create(m, &t)))
        goto fail;
    snprintf(path, sizeof path, "%s/%s", resolved, STATE_FILE);
    if ((st = dv_st_read_file(path, &f)))
        goto fail;
    const char *format = dv_st_metadata(f, "format");
    if (!format || strcmp(format, STATE_FORMAT)) {
        st = dv_error(DV365_E_FORMAT, "%s is not a trainer state file", path);
        goto fail;
    }
    uint64_t step, consumed;
    size_t n_enc[1] = {t->n_enc}, n_bb[1] = {t->n_bb};
    if ((st = meta_u64(f, "step", path, &step)) ||
        (st = meta_u64(f, "consumed", path, &consumed)) ||
        (st = dv_st_copy_f32(f, "adam.encoder.m", 1, n_enc, t->enc_m)) ||
        (st = dv_st_copy_f32(f, "adam.encoder.v", 1, n_enc, t->enc_v)) ||
        (st = dv_st_copy_f32(f, "adam.backbone.m", 1, n_bb, t->bb_m)) ||
        (st = dv_st_copy_f32(f, "adam.backbone.v", 1, n_bb, t->bb_v)))
        goto fail;
    for (size_t i = 0; i < t->n_tables + t->n_items; i++) {
        char name[160];
        size_t rows[1];
        acc_tensor(t, i, name, sizeof name, &rows[0]);
        if ((st = dv_st_copy_f32(f, name, 1, rows, t->acc[i])))
            goto fail;
    }
    t->adam.step = step;
    t->consumed = consumed;
    dv_st_free(f);
    *model_out = m;
    *trainer_out = t;
    return DV365_OK;
fail:
    dv_st_free(f);
    dv365_trainer_free(t);
    dv365_model_free(m);
    return st;
}
