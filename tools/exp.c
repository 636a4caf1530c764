/* exp.c — the shared parts of the experiments (see exp.h). */
#include "exp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "fileio.h"   /* dv_file_read_all */
#include "internal.h" /* dv_rng, dv_error */
#include "optim.h"    /* dv_adam for the adapter */

/* --- examples and timelines ------------------------------------------------ */

void exp_examples_free(exp_examples *e)
{
    free(e->user);
    free(e->items);
    free(e->time);
    free(e->dense);
    free(e->labels);
    memset(e, 0, sizeof *e);
}

dv365_status exp_load_examples(const char *path, exp_examples *e)
{
    memset(e, 0, sizeof *e);
    dv365_example_reader *r;
    dv365_status st = dv365_example_reader_open(path, &r);
    if (st)
        return st;
    e->n = dv365_example_reader_count(r);
    e->n_dense = dv365_example_reader_num_dense(r);
    e->T = dv365_example_reader_num_tasks(r);
    e->user = malloc((e->n + 1) * sizeof *e->user);
    e->items = malloc((3 * e->n + 1) * sizeof *e->items);
    e->time = malloc((e->n + 1) * sizeof *e->time);
    e->dense = malloc((e->n * e->n_dense + 1) * sizeof *e->dense);
    e->labels = malloc((e->n * e->T + 1) * sizeof *e->labels);
    if (!e->user || !e->items || !e->time || !e->dense || !e->labels)
        st = dv_error(DV365_E_NOMEM, "out of memory for the %zu examples of %s", e->n, path);
    for (size_t i = 0; st == DV365_OK && i < e->n; i++) {
        int done = 0;
        st = dv365_example_reader_next(r, &e->user[i], &e->time[i], &e->items[3 * i],
                                       &e->items[3 * i + 1], &e->items[3 * i + 2],
                                       e->dense + i * e->n_dense, e->labels + i * e->T, &done);
        if (st == DV365_OK && done)
            st = dv_error(DV365_E_FORMAT, "%s ended early at example %zu", path, i);
    }
    dv365_example_reader_free(r);
    return st;
}

void exp_users_free(exp_users *u)
{
    for (size_t i = 0; u->tl && i < u->n; i++)
        dv365_timeline_free(u->tl[i]);
    free(u->tl);
    free(u->id);
    memset(u, 0, sizeof *u);
}

dv365_status exp_load_users(const char *path, const dv365_config *cfg, exp_users *u)
{
    memset(u, 0, sizeof *u);
    dv365_timeline_reader *r;
    dv365_status st = dv365_timeline_reader_open(path, cfg, &r);
    if (st)
        return st;
    size_t n = dv365_timeline_reader_count(r);
    u->id = malloc((n + 1) * sizeof *u->id);
    u->tl = calloc(n + 1, sizeof *u->tl);
    if (!u->id || !u->tl)
        st = dv_error(DV365_E_NOMEM, "out of memory for the %zu users of %s", n, path);
    for (size_t i = 0; st == DV365_OK && i < n; i++) {
        int done = 0;
        if ((st = dv365_timeline_create(cfg, &u->tl[i])))
            break;
        u->n = i + 1;
        st = dv365_timeline_reader_next(r, &u->id[i], u->tl[i], &done);
        if (st == DV365_OK && (done || (i > 0 && u->id[i] <= u->id[i - 1])))
            st = dv_error(DV365_E_FORMAT, "%s: users must be in ascending id order (user %zu)",
                          path, i);
    }
    dv365_timeline_reader_free(r);
    return st;
}

size_t exp_user_index(const exp_users *u, uint64_t id)
{
    size_t lo = 0, hi = u->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (u->id[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < u->n && u->id[lo] == id ? lo : SIZE_MAX;
}

static int64_t midnight(int64_t t) { return t - t % EXP_DAY; }

void exp_world_free(exp_world *w)
{
    exp_examples_free(&w->train);
    exp_examples_free(&w->eval);
}

dv365_status exp_world_load(const char *dir, exp_world *w)
{
    memset(w, 0, sizeof *w);
    snprintf(w->timelines, sizeof w->timelines, "%s/timelines.dvt", dir);
    snprintf(w->train_path, sizeof w->train_path, "%s/train.dve", dir);
    snprintf(w->eval_path, sizeof w->eval_path, "%s/eval.dve", dir);
    dv365_status st;
    if ((st = exp_load_examples(w->train_path, &w->train)) ||
        (st = exp_load_examples(w->eval_path, &w->eval)))
        return st;
    const exp_examples *a = &w->train, *b = &w->eval;
    if (a->n == 0 || b->n == 0 || a->T != b->T || a->n_dense != b->n_dense || a->T == 0 ||
        a->T > EXP_MAX_TASKS)
        return dv_error(DV365_E_FORMAT,
                        "%s and %s must be non-empty, with the same labels (1..%d) and dense "
                        "features", w->train_path, w->eval_path, EXP_MAX_TASKS);
    int64_t t0 = INT64_MAX, e0 = INT64_MAX, t1 = INT64_MIN;
    for (size_t i = 0; i < a->n; i++) {
        t0 = a->time[i] < t0 ? a->time[i] : t0;
        t1 = a->time[i] > t1 ? a->time[i] : t1;
    }
    for (size_t i = 0; i < b->n; i++) {
        e0 = b->time[i] < e0 ? b->time[i] : e0;
        t1 = b->time[i] > t1 ? b->time[i] : t1;
    }
    w->train_from = midnight(t0);
    w->eval_from = midnight(e0);
    if (w->eval_from < w->train_from || t1 < 0)
        return dv_error(DV365_E_FORMAT, "%s: eval labels start before the train labels",
                        w->eval_path);
    w->n_days = (size_t)((midnight(t1) - w->train_from) / EXP_DAY) + 1;
    if (w->n_days > EXP_MAX_DAYS)
        return dv_error(DV365_E_FORMAT, "the labels span %zu days; at most %d are supported",
                        w->n_days, EXP_MAX_DAYS);
    return DV365_OK;
}

/* --- config text ------------------------------------------------------------ */

char *exp_read_text(const char *path)
{
    void *data;
    size_t len;
    return dv_file_read_all(path, &data, &len) == DV365_OK ? data : NULL;
}

char *exp_config_with_extra(const char *text, size_t E)
{
    const char *key = "extra_tokens: 0";
    const char *at = strstr(text, key);
    if (!at)
        return NULL;
    size_t head = (size_t)(at - text), n = strlen(text) + 32;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%.*sextra_tokens: %zu%s", (int)head, text, E, at + strlen(key));
    return out;
}

dv365_status exp_model_from_text(const char *text, uint64_t seed, dv365_model **out)
{
    char path[] = "/tmp/dv365_experiment_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return dv_error(DV365_E_IO, "cannot create a temporary config file in /tmp");
    FILE *f = fdopen(fd, "w");
    int ok = f && fputs(text, f) >= 0;
    ok = (f ? fclose(f) == 0 : (close(fd), 0)) && ok;
    dv365_status st = ok ? dv365_model_init(path, seed, out)
                         : dv_error(DV365_E_IO, "cannot write the temporary config %s", path);
    unlink(path);
    return st;
}

/* --- banks of daily embeddings ---------------------------------------------- */

void exp_bank_free(exp_bank *b)
{
    free(b->user);
    free(b->emb);
    memset(b, 0, sizeof *b);
}

const float *exp_bank_get(const exp_bank *b, size_t d, size_t u)
{
    return b->emb + (d * b->n_users + u) * b->K * b->D;
}

size_t exp_bank_day(const exp_bank *b, int64_t t)
{
    if (t < b->day0)
        return 0;
    size_t d = (size_t)((t - b->day0) / EXP_DAY);
    return d < b->n_days ? d : b->n_days - 1;
}

static int bank_progress(progress_bar *bar, size_t done, size_t total)
{
    progress_show(bar, done, total);
    return 0;
}

dv365_status exp_bank_build(const dv365_model *dv, const char *timelines_path, int64_t day0,
                            size_t n_days, int q4, int nthreads, int progress, exp_bank *b)
{
    memset(b, 0, sizeof *b);
    enum { CHUNK = 64 };
    exp_users u;
    dv365_status st = exp_load_users(timelines_path, dv365_model_config(dv), &u);
    dv365_workspace *ws = NULL;
    const size_t K = dv365_model_num_tokens(dv), D = dv365_model_dim(dv), KD = K * D;
    const size_t blob_size = dv365_blob_size(K, D);
    uint8_t *blob = malloc(blob_size + 1);
    int64_t cut[CHUNK];
    b->n_users = u.n;
    b->n_days = n_days;
    b->K = K;
    b->D = D;
    b->day0 = day0;
    b->q4 = q4;
    b->user = malloc((u.n + 1) * sizeof *b->user);
    b->emb = malloc((n_days * u.n * KD + 1) * sizeof *b->emb);
    if (st == DV365_OK && (!blob || !b->user || !b->emb))
        st = dv_error(DV365_E_NOMEM, "out of memory for %zu days x %zu users x %zu floats",
                      n_days, u.n, KD);
    if (st == DV365_OK)
        st = dv365_workspace_create(&ws);
    if (st == DV365_OK)
        memcpy(b->user, u.id, u.n * sizeof *b->user);
    progress_bar bar;
    progress_init(&bar, q4 ? "embed (4-bit)" : "embed (float)", "user-days", progress);
    for (size_t d = 0; st == DV365_OK && d < n_days; d++) {
        const int64_t cutoff = day0 + (int64_t)d * EXP_DAY;
        for (size_t c = 0; c < CHUNK; c++)
            cut[c] = cutoff;
        for (size_t i = 0; st == DV365_OK && i < u.n; i += CHUNK) {
            size_t nb = u.n - i < CHUNK ? u.n - i : CHUNK;
            float *U = b->emb + (d * u.n + i) * KD;
            st = dv365_model_embed(dv, ws, nb, (const dv365_timeline *const *)u.tl + i, cut, U,
                                   nthreads);
            for (size_t j = 0; q4 && st == DV365_OK && j < nb; j++) {
                /* the bytes the store would hold, and what a reader decodes */
                st = dv365_blob_encode(U + j * KD, K, D, dv365_model_fingerprint(dv), cutoff,
                                       DV365_Q4_MINMAX, blob, blob_size);
                if (st == DV365_OK)
                    st = dv365_blob_decode(blob, blob_size, dv365_model_fingerprint(dv), K, D,
                                           U + j * KD);
            }
            bank_progress(&bar, d * u.n + i + nb, n_days * u.n);
        }
    }
    free(blob);
    dv365_workspace_free(ws);
    exp_users_free(&u);
    if (st)
        exp_bank_free(b);
    return st;
}

dv365_status exp_bank_from_store(const char *store_dir, const dv365_model *dv,
                                 const exp_bank *like, exp_bank *b, size_t *missing)
{
    memset(b, 0, sizeof *b);
    *missing = 0;
    dv365_store *store;
    uint64_t gen, fp;
    int64_t created;
    size_t count, K, D, size;
    dv365_status st = dv365_store_open(store_dir, DV365_STORE_READONLY, 0, &store);
    if (st)
        return st;
    if ((st = dv365_store_info(store, &gen, &fp, &created, &count, &K, &D)) == DV365_OK &&
        (gen == 0 || fp != dv365_model_fingerprint(dv) || K != like->K || D != like->D))
        st = dv_error(DV365_E_MISMATCH,
                      "%s: generation %llu holds %zu x %zu embeddings of model %016llx; "
                      "wanted %zu x %zu of model %016llx", store_dir, (unsigned long long)gen,
                      K, D, (unsigned long long)fp, like->K, like->D,
                      (unsigned long long)dv365_model_fingerprint(dv));
    const size_t KD = like->K * like->D, cap = dv365_blob_size(like->K, like->D);
    uint8_t *blob = st ? NULL : malloc(cap);
    b->n_users = like->n_users;
    b->n_days = 1;
    b->K = like->K;
    b->D = like->D;
    b->day0 = created;
    b->q4 = 1;
    b->user = st ? NULL : malloc((like->n_users + 1) * sizeof *b->user);
    b->emb = st ? NULL : malloc((like->n_users * KD + 1) * sizeof *b->emb);
    if (st == DV365_OK && (!blob || !b->user || !b->emb))
        st = dv_error(DV365_E_NOMEM, "out of memory");
    for (size_t u = 0; st == DV365_OK && u < like->n_users; u++) {
        b->user[u] = like->user[u];
        float *dst = b->emb + u * KD;
        st = dv365_store_get(store, like->user[u], blob, cap, &size);
        if (st == DV365_E_NOT_FOUND) {
            memset(dst, 0, KD * sizeof *dst);
            ++*missing;
            st = DV365_OK;
        } else if (st == DV365_OK) {
            st = dv365_blob_decode(blob, size, fp, like->K, like->D, dst);
        }
    }
    free(blob);
    dv365_store_close(store);
    if (st)
        exp_bank_free(b);
    return st;
}

dv365_status exp_bank_identity(const exp_bank *ref, uint64_t seed, exp_bank *b)
{
    const size_t n = ref->n_users * ref->K * ref->D;
    *b = *ref;
    b->n_days = 1;
    b->user = malloc((ref->n_users + 1) * sizeof *b->user);
    b->emb = malloc((n + 1) * sizeof *b->emb);
    if (!b->user || !b->emb) {
        exp_bank_free(b);
        return dv_error(DV365_E_NOMEM, "out of memory");
    }
    memcpy(b->user, ref->user, ref->n_users * sizeof *b->user);
    double ss = 0;
    for (size_t i = 0; i < n; i++)
        ss += (double)ref->emb[i] * ref->emb[i];
    const double sd = n ? sqrt(ss / (double)n) : 1.0;
    dv_rng rng;
    dv_rng_seed(&rng, dv_mix64(seed ^ UINT64_C(0x6964656e74697479))); /* "identity" */
    for (size_t i = 0; i < n; i++)
        b->emb[i] = (float)(sd * dv_rng_normal(&rng));
    return DV365_OK;
}

int exp_held_out_user(uint64_t user)
{
    return dv_mix64(user ^ UINT64_C(0x686f6c646f7574)) % 4 == 0; /* "holdout" */
}

/* --- one downstream arm ------------------------------------------------------ */

void exp_mean_sd(const double *x, size_t n, double *mean, double *sd)
{
    double s = 0, q = 0;
    for (size_t i = 0; i < n; i++)
        s += x[i];
    *mean = n ? s / (double)n : NAN;
    for (size_t i = 0; i < n; i++)
        q += (x[i] - *mean) * (x[i] - *mean);
    *sd = n > 1 ? sqrt(q / (double)(n - 1)) : 0.0;
}

/* What an arm holds while it trains. */
typedef struct arm_state {
    dv365_model *m;
    dv365_trainer *t;
    exp_users u;
    size_t *bank_user; /* [u.n] index of each user in the bank, SIZE_MAX if absent */
    dv365_adapter *ad;
    dv365_workspace *ws;
    dv_adam adam;
    size_t np, KD, ED;
    double lr;
    /* one batch */
    const dv365_timeline **tls;
    int64_t *time;
    uint64_t *items;
    float *dense, *labels, *U, *extra, *d_extra, *grad, *mom, *var;
} arm_state;

static void arm_state_free(arm_state *a)
{
    dv365_trainer_free(a->t);
    exp_users_free(&a->u);
    dv365_model_free(a->m);
    dv365_adapter_free(a->ad);
    dv365_workspace_free(a->ws);
    free(a->bank_user);
    free(a->tls);
    free(a->time);
    free(a->items);
    free(a->dense);
    free(a->labels);
    free(a->U);
    free(a->extra);
    free(a->d_extra);
    free(a->grad);
    free(a->mom);
    free(a->var);
}

static dv365_status arm_state_init(arm_state *a, const exp_world *w, const exp_settings *s,
                                   const exp_arm *arm, uint64_t seed)
{
    memset(a, 0, sizeof *a);
    const size_t B = s->batch, T = w->train.T, nd = w->train.n_dense;
    char *text = arm->bank ? exp_config_with_extra(s->config_text, s->extra) : NULL;
    if (arm->bank && !text)
        return dv_error(DV365_E_CONFIG,
                        "the downstream config must set 'extra_tokens: 0' in its backbone "
                        "section (the baseline; the +DV365 arms set it to E)");
    dv365_status st = exp_model_from_text(text ? text : s->config_text, seed, &a->m);
    free(text);
    if (st || (st = dv365_trainer_create(a->m, &a->t)) ||
        (st = exp_load_users(w->timelines, dv365_model_config(a->m), &a->u)))
        return st;
    const dv365_config *cfg = dv365_model_config(a->m);
    if (dv365_config_num_tasks(cfg) != T || dv365_config_num_dense(cfg) != nd)
        return dv_error(DV365_E_MISMATCH,
                        "the examples have %zu labels and %zu dense features; the downstream "
                        "config wants %zu and %zu", T, nd, dv365_config_num_tasks(cfg),
                        dv365_config_num_dense(cfg));
    a->tls = malloc(B * sizeof *a->tls);
    a->time = malloc(B * sizeof *a->time);
    a->items = malloc(3 * B * sizeof *a->items);
    a->dense = malloc((B * nd + 1) * sizeof *a->dense);
    a->labels = malloc(B * T * sizeof *a->labels);
    if (!a->tls || !a->time || !a->items || !a->dense || !a->labels)
        return dv_error(DV365_E_NOMEM, "out of memory");
    if (!arm->bank)
        return DV365_OK;
    const exp_bank *bk = arm->bank;
    a->KD = bk->K * bk->D;
    a->ED = s->extra * dv365_model_dim(a->m);
    if ((st = dv365_adapter_create(DV365_ADAPTER_LINEAR, "dv365_ranking", bk->K, bk->D, a->ED,
                                   seed + 7, &a->ad)) ||
        (st = dv_adam_init(&a->adam, true, 0.9, 0.999, 1e-8, 0.0)) ||
        (st = dv365_workspace_create(&a->ws)))
        return st;
    a->np = dv365_adapter_num_params(a->ad);
    a->lr = s->adapter_lr;
    a->bank_user = malloc((a->u.n + 1) * sizeof *a->bank_user);
    a->U = malloc(B * a->KD * sizeof *a->U);
    a->extra = malloc(B * a->ED * sizeof *a->extra);
    a->d_extra = malloc(B * a->ED * sizeof *a->d_extra);
    a->grad = malloc(a->np * sizeof *a->grad);
    a->mom = calloc(a->np, sizeof *a->mom);
    a->var = calloc(a->np, sizeof *a->var);
    if (!a->bank_user || !a->U || !a->extra || !a->d_extra || !a->grad || !a->mom || !a->var)
        return dv_error(DV365_E_NOMEM, "out of memory");
    exp_users bu = {.n = bk->n_users, .id = bk->user};
    for (size_t i = 0; i < a->u.n; i++)
        a->bank_user[i] = exp_user_index(&bu, a->u.id[i]);
    return DV365_OK;
}

/* Gather examples idx[0..nb) of e into the batch (and their embeddings). */
static dv365_status arm_fill(arm_state *a, const exp_examples *e, const size_t *idx, size_t nb,
                             const exp_bank *bank, exp_policy policy, int64_t frozen_at)
{
    for (size_t j = 0; j < nb; j++) {
        size_t i = idx[j];
        a->time[j] = e->time[i];
        memcpy(a->items + 3 * j, e->items + 3 * i, 3 * sizeof *a->items);
        memcpy(a->dense + j * e->n_dense, e->dense + i * e->n_dense,
               e->n_dense * sizeof *a->dense);
        memcpy(a->labels + j * e->T, e->labels + i * e->T, e->T * sizeof *a->labels);
        size_t u = exp_user_index(&a->u, e->user[i]);
        if (u == SIZE_MAX)
            return dv_error(DV365_E_NOT_FOUND, "user %llu of an example has no timeline",
                            (unsigned long long)e->user[i]);
        a->tls[j] = a->u.tl[u];
        if (!bank)
            continue;
        float *dst = a->U + j * a->KD;
        if (a->bank_user[u] == SIZE_MAX) { /* a user the bank lacks: zeros */
            memset(dst, 0, a->KD * sizeof *dst);
            continue;
        }
        size_t d = exp_bank_day(bank, policy == EXP_DAILY ? e->time[i] : frozen_at);
        int64_t made = bank->day0 + (int64_t)d * EXP_DAY;
        if (made > e->time[i])
            return dv_error(DV365_E_INVALID, "an embedding made at %lld would leak into a "
                            "label at %lld", (long long)made, (long long)e->time[i]);
        memcpy(dst, exp_bank_get(bank, d, a->bank_user[u]), a->KD * sizeof *dst);
    }
    return DV365_OK;
}

static dv365_status arm_step(arm_state *a, size_t nb, int nthreads)
{
    double loss;
    dv365_status st;
    if (!a->ad)
        return dv365_trainer_step(a->t, nb, a->tls, a->time, a->items, a->dense, a->labels,
                                  &loss, nthreads);
    if ((st = dv365_adapter_forward(a->ad, a->ws, nb, a->U, a->extra, nthreads)) ||
        (st = dv365_trainer_step_ex(a->t, nb, a->tls, a->time, a->items, a->dense, a->labels,
                                    a->extra, a->d_extra, &loss, nthreads)))
        return st;
    memset(a->grad, 0, a->np * sizeof *a->grad);
    if ((st = dv365_adapter_backward(a->ad, a->ws, nb, a->U, a->d_extra, a->grad, NULL,
                                     nthreads)) ||
        (st = dv_adam_begin_step(&a->adam)))
        return st;
    return dv_adam_update(&a->adam, a->lr, dv365_adapter_params(a->ad), a->grad, a->mom, a->var,
                          a->np);
}

/* Add examples idx[0..n) of e to the trainer's eval metrics. */
static dv365_status arm_eval(arm_state *a, const exp_examples *e, const size_t *idx, size_t n,
                             const exp_settings *s, const exp_arm *arm)
{
    dv365_status st = DV365_OK;
    for (size_t i = 0; st == DV365_OK && i < n; i += s->batch) {
        size_t nb = n - i < s->batch ? n - i : s->batch;
        if ((st = arm_fill(a, e, idx + i, nb, arm->eval_bank ? arm->eval_bank : arm->bank,
                           arm->eval_policy, arm->eval_frozen_at)))
            break;
        if (!a->ad)
            st = dv365_trainer_eval_batch(a->t, nb, a->tls, a->time, a->items, a->dense,
                                          a->labels, NULL, s->nthreads);
        else if ((st = dv365_adapter_forward(a->ad, a->ws, nb, a->U, a->extra, s->nthreads)) ==
                 DV365_OK)
            st = dv365_trainer_eval_batch_ex(a->t, nb, a->tls, a->time, a->items, a->dense,
                                             a->labels, a->extra, NULL, s->nthreads);
    }
    return st;
}

/* The trainer's metrics since the reset into metric[] / auc[]. */
static dv365_status arm_metrics(arm_state *a, size_t T, double *metric, double *auc)
{
    const dv365_config *cfg = dv365_model_config(a->m);
    for (size_t k = 0; k < T; k++) {
        double ne, au, mse;
        dv365_status st = dv365_trainer_eval_result(a->t, k, &ne, &au, &mse);
        if (st)
            return st;
        metric[k] = dv365_config_task_is_binary(cfg, k) ? ne : mse;
        if (auc)
            auc[k] = au;
    }
    return DV365_OK;
}

dv365_status exp_run_arm(const exp_world *w, const exp_settings *s, const exp_arm *arm,
                         uint64_t seed, exp_result *out)
{
    memset(out, 0, sizeof *out);
    const exp_examples *tr = &w->train, *ev = &w->eval;
    arm_state a;
    size_t *order = malloc((tr->n + ev->n + 1) * sizeof *order);
    dv365_status st = order ? arm_state_init(&a, w, s, arm, seed)
                            : dv_error(DV365_E_NOMEM, "out of memory");
    if (!order)
        memset(&a, 0, sizeof a);
    /* the examples of the split, in file order: train[0..n_tr), eval[0..n_ev), then the
     * held-out users' train examples [0..n_ho) */
    size_t *tr_idx = NULL, *ev_idx = NULL, n_tr = 0, n_ev = 0;
    if (st == DV365_OK && !(tr_idx = malloc((tr->n + ev->n + 1) * sizeof *tr_idx)))
        st = dv_error(DV365_E_NOMEM, "out of memory");
    for (size_t i = 0; st == DV365_OK && i < tr->n; i++)
        if (!s->held_out || !exp_held_out_user(tr->user[i]))
            tr_idx[n_tr++] = i;
    ev_idx = tr_idx ? tr_idx + n_tr : NULL;
    for (size_t i = 0; st == DV365_OK && i < ev->n; i++)
        if (!s->held_out || exp_held_out_user(ev->user[i]))
            ev_idx[n_ev++] = i;
    /* held out: their train-window examples are unseen downstream too, so they
     * are evaluated as well (4x the examples, as retrieval evaluates all of a
     * held-out user's positives) */
    size_t *ho_idx = ev_idx ? ev_idx + n_ev : NULL, n_ho = 0;
    for (size_t i = 0; st == DV365_OK && s->held_out && i < tr->n; i++)
        if (exp_held_out_user(tr->user[i]))
            ho_idx[n_ho++] = i;
    if (st == DV365_OK && (n_tr == 0 || n_ev == 0))
        st = dv_error(DV365_E_INVALID, "the split leaves %zu train and %zu eval examples", n_tr,
                      n_ev);
    out->n_train = n_tr;
    out->n_eval = n_ev + n_ho;
    const size_t B = s->batch, T = tr->T;
    const uint64_t steps_per_epoch = (n_tr + B - 1) / B, steps = s->epochs * steps_per_epoch;
    char label[96];
    snprintf(label, sizeof label, "train %s (seed %llu)", arm->name, (unsigned long long)seed);
    progress_bar bar;
    progress_init(&bar, label, "steps", s->progress);
    dv_rng rng;
    dv_rng_seed(&rng, seed);
    double t0 = now_s();
    /* the same shuffled order for every arm of a seed: a pure function of the seed */
    for (uint64_t step = 0; st == DV365_OK && step < steps; step++) {
        size_t at = (size_t)(step % steps_per_epoch) * B;
        if (at == 0) { /* a new epoch: reshuffle (Fisher-Yates) */
            memcpy(order, tr_idx, n_tr * sizeof *order);
            for (size_t i = n_tr - 1; i > 0; i--) {
                size_t j = (size_t)(dv_rng_next(&rng) % (i + 1)), tmp = order[i];
                order[i] = order[j];
                order[j] = tmp;
            }
        }
        size_t nb = n_tr - at < B ? n_tr - at : B;
        if ((st = arm_fill(&a, tr, order + at, nb, arm->bank, arm->train_policy,
                           arm->train_frozen_at)) == DV365_OK &&
            (st = arm_step(&a, nb, s->nthreads)) == DV365_E_NONFINITE) {
            out->skipped++; /* the trainer skipped a step with a non-finite gradient */
            st = DV365_OK;
        }
        progress_show(&bar, (size_t)step + 1, (size_t)steps);
    }
    out->train_s = now_s() - t0;
    out->T = T;
    if (st == DV365_OK) {
        const dv365_config *cfg = dv365_model_config(a.m);
        for (size_t k = 0; k < T; k++) {
            snprintf(out->name[k], sizeof out->name[k], "%s", dv365_config_task_name(cfg, k));
            out->binary[k] = dv365_config_task_is_binary(cfg, k);
        }
        /* overall, in file order */
        dv365_trainer_eval_reset(a.t);
        if ((st = arm_eval(&a, tr, ho_idx, n_ho, s, arm)) == DV365_OK &&
            (st = arm_eval(&a, ev, ev_idx, n_ev, s, arm)) == DV365_OK)
            st = arm_metrics(&a, T, out->metric, out->auc);
    }
    /* day by day from eval_from */
    out->n_days = (size_t)((w->n_days * EXP_DAY - (w->eval_from - w->train_from)) / EXP_DAY);
    for (size_t d = 0; st == DV365_OK && s->per_day && d < out->n_days; d++) {
        size_t n = 0;
        int64_t from = w->eval_from + (int64_t)d * EXP_DAY;
        for (size_t j = 0; j < n_ev; j++)
            if (ev->time[ev_idx[j]] >= from && ev->time[ev_idx[j]] < from + EXP_DAY)
                order[n++] = ev_idx[j];
        dv365_trainer_eval_reset(a.t);
        if ((st = arm_eval(&a, ev, order, n, s, arm)) == DV365_OK)
            st = arm_metrics(&a, T, out->day_metric[d], NULL);
    }
    arm_state_free(&a);
    free(order);
    free(tr_idx);
    return st;
}
