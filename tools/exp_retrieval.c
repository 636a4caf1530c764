/* exp_retrieval.c — `dv365 experiment retrieval`: the paper's retrieval
 * transfer (a GateNet gate; HitRate@1/@10 +2–8 %) on the synthetic world.
 *
 * A two-tower model trained on the world's positives (examples whose `like`
 * or `complete` label is 1) with an in-batch sampled softmax:
 *   item tower  v = T_media[h(media)] + T_author[h(author)] + T_topic[h(topic)]
 *               (hashed rows, d = the downstream config's dim);
 *   user tower  u = W_u vec(X) + b_u, X [N x D] the user's RECENT history
 *               pooled by the downstream config (configs/downstream.yaml:
 *               windows of at most 14 days) up to label time - training.gap;
 *   + DV365 plain    u += A vec(U_dv)                 (linear adapter);
 *   + DV365 GateNet  u += A vec(GateNet_vector(U_dv))  (gate, then linear).
 * U_dv is the bank's embedding made at midnight of the label's day (events
 * strictly before it: no leakage).  Every arm of one seed starts from the
 * same pooling tables, W_u and item tables and sees the same positives in the
 * same order; only the DV365 part differs.
 *
 * Evaluation: each eval positive's true item is scored against 100 negatives
 * drawn uniformly (the same for every arm of a seed) from the distinct
 * (media, author, topic) triples of train + eval examples; HitRate@k counts
 * the positives with fewer than k negatives scoring at least as high.
 *
 * Two splits, one table each:
 *   same users      train window -> eval window of the same 400 users;
 *   held-out users  a quarter of the users (by id) never trained on.
 * The user tower has no user id, so any per-user vector lets it memorize
 * each user's taste from the train positives: the row "+user id"
 * (one fixed random vector per user, DV365's shape and scale) measures that.
 * On the same users it can beat DV365; on held-out users only what a vector
 * says about the history carries over, and the random vector hurts.
 *
 * Threads pool the batch's histories (one workspace per thread, one sparse
 * gradient per example); gradients are summed on the calling thread in
 * example order, so results are bitwise identical for any thread count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "config.h"   /* training.gap of the downstream config */
#include "exp.h"
#include "internal.h" /* dv_rng, dv_error, dv_mix64 */
#include "nn.h"       /* dv_linear_forward / _backward */
#include "optim.h"    /* dv_adam, dv_rowwise_adagrad */
#include "parallel.h" /* dv_parallel_for */

#define RET_BATCH 256
#define RET_NEG 100
#define RET_DENSE_LR 2e-3
#define RET_ITEM_STD 0.05
static const size_t item_rows[3] = {16384, 4096, 1024}; /* media, author, topic */

/* --- the loss and the metric (pure math, tested in tests/test_retrieval.c) -- */

double exp_inbatch_softmax_forward(float *P, const float *u, const float *v,
                                   const uint64_t *key, size_t B, size_t d)
{
    double loss = 0;
    for (size_t i = 0; i < B; i++) {
        float *p = P + i * B;
        double mx = -INFINITY;
        for (size_t j = 0; j < B; j++) {
            if (j != i && key && key[j] == key[i]) {
                p[j] = NAN; /* masked: the same item is not a negative */
                continue;
            }
            double s = 0;
            for (size_t k = 0; k < d; k++)
                s += (double)u[i * d + k] * v[j * d + k];
            p[j] = (float)s;
            mx = s > mx ? s : mx;
        }
        double z = 0;
        for (size_t j = 0; j < B; j++)
            if (!isnan(p[j]))
                z += exp((double)p[j] - mx);
        const double logz = mx + log(z);
        loss += logz - (double)p[i];
        for (size_t j = 0; j < B; j++)
            p[j] = isnan(p[j]) ? 0.0f : (float)exp((double)p[j] - logz);
    }
    return B ? loss / (double)B : 0.0;
}

void exp_inbatch_softmax_backward(float *du, float *dv, const float *P, const float *u,
                                  const float *v, size_t B, size_t d)
{
    const float inv_b = 1.0f / (float)B;
    for (size_t i = 0; i < B; i++)
        for (size_t j = 0; j < B; j++) {
            /* dL/dS_ij = (P_ij - [i == j]) / B */
            float g = (P[i * B + j] - (i == j ? 1.0f : 0.0f)) * inv_b;
            if (g == 0.0f)
                continue;
            for (size_t k = 0; du && k < d; k++)
                du[i * d + k] += g * v[j * d + k];
            for (size_t k = 0; dv && k < d; k++)
                dv[j * d + k] += g * u[i * d + k];
        }
}

size_t exp_retrieval_rank(float pos, const float *neg, size_t n_neg)
{
    size_t r = 0;
    for (size_t i = 0; i < n_neg; i++)
        r += !(neg[i] < pos); /* ties (and NaN) count against the true item */
    return r;
}

/* --- sparse tables with row-wise Adagrad ------------------------------------- */

/* A [rows x d] table and the gradient of the rows touched since its last
 * update, packed in first-touch order (slot[row] = its place, or SIZE_MAX). */
typedef struct sparse_table {
    float *w, *acc, *g;
    size_t *slot, *list;
    size_t rows, d, n;
    int own; /* w allocated here (item tables), else borrowed (pooling tables) */
} sparse_table;

static void sparse_free(sparse_table *t)
{
    if (t->own)
        free(t->w);
    free(t->acc);
    free(t->g);
    free(t->slot);
    free(t->list);
    memset(t, 0, sizeof *t);
}

/* w NULL: a new table of N(0, std^2) drawn from rng. */
static dv365_status sparse_init(sparse_table *t, float *w, size_t rows, size_t d, dv_rng *rng,
                                double std)
{
    memset(t, 0, sizeof *t);
    t->rows = rows;
    t->d = d;
    t->own = w == NULL;
    t->w = w ? w : malloc(rows * d * sizeof *t->w);
    t->acc = calloc(rows, sizeof *t->acc);
    t->g = malloc(rows * d * sizeof *t->g);
    t->slot = malloc(rows * sizeof *t->slot);
    t->list = malloc(rows * sizeof *t->list);
    if (!t->w || !t->acc || !t->g || !t->slot || !t->list)
        return dv_error(DV365_E_NOMEM, "out of memory for a %zu x %zu table", rows, d);
    for (size_t r = 0; r < rows; r++)
        t->slot[r] = SIZE_MAX;
    for (size_t i = 0; !w && i < rows * d; i++)
        t->w[i] = (float)(std * dv_rng_normal(rng));
    return DV365_OK;
}

static void sparse_add(sparse_table *t, size_t row, const float *g)
{
    if (t->slot[row] == SIZE_MAX) {
        t->slot[row] = t->n;
        t->list[t->n] = row;
        memset(t->g + t->n * t->d, 0, t->d * sizeof *t->g);
        t->n++;
    }
    float *dst = t->g + t->slot[row] * t->d;
    for (size_t k = 0; k < t->d; k++)
        dst[k] += g[k];
}

static dv365_status sparse_update(sparse_table *t, const dv_rowwise_adagrad *opt, double lr)
{
    dv365_status st = dv_rowwise_adagrad_update(opt, lr, t->w, t->acc, t->rows, t->d, t->list,
                                                t->g, t->n);
    for (size_t i = 0; i < t->n; i++)
        t->slot[t->list[i]] = SIZE_MAX;
    t->n = 0;
    return st;
}

/* --- the experiment's shared data -------------------------------------------- */

/* The positives of one split. */
typedef struct positives {
    size_t n;
    size_t *user;    /* timeline index */
    int64_t *time;   /* label time */
    uint64_t *items; /* [n][3] */
} positives;

struct exp_retrieval_data {
    const exp_world *w;
    const char *config_text;
    dv365_config *cfg;
    exp_users users;
    size_t N, D, ND, d, n_tables, max_events;
    int64_t gap;
    positives tr, ev;
    uint64_t *triples; /* [n_triples][3] distinct, ascending */
    size_t n_triples;
    progress_bar *bar; /* may be NULL */
    size_t done, total;
};

static void positives_free(positives *p)
{
    free(p->user);
    free(p->time);
    free(p->items);
}

static dv365_status positives_alloc(positives *p, size_t cap)
{
    memset(p, 0, sizeof *p);
    p->user = malloc((cap + 1) * sizeof *p->user);
    p->time = malloc((cap + 1) * sizeof *p->time);
    p->items = malloc((3 * cap + 1) * sizeof *p->items);
    return p->user && p->time && p->items
               ? DV365_OK
               : dv_error(DV365_E_NOMEM, "out of memory for %zu examples", cap);
}

/* Append the positives of e to p: every user's (held < 0), only the held-out
 * users' (held = 1) or only the others' (held = 0). */
static dv365_status take_positives(exp_retrieval_data *r, const exp_examples *e, size_t like,
                                   size_t complete, int held, positives *p)
{
    for (size_t i = 0; i < e->n; i++) {
        const float *y = e->labels + i * e->T;
        if (!(y[like] == 1.0f || y[complete] == 1.0f) ||
            (held >= 0 && exp_held_out_user(e->user[i]) != held))
            continue;
        size_t u = exp_user_index(&r->users, e->user[i]);
        if (u == SIZE_MAX)
            return dv_error(DV365_E_NOT_FOUND, "user %llu of an example has no timeline",
                            (unsigned long long)e->user[i]);
        p->user[p->n] = u;
        p->time[p->n] = e->time[i];
        memcpy(p->items + 3 * p->n, e->items + 3 * i, 3 * sizeof *p->items);
        p->n++;
    }
    return DV365_OK;
}

static int triple_cmp(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    for (int k = 0; k < 3; k++)
        if (x[k] != y[k])
            return x[k] < y[k] ? -1 : 1;
    return 0;
}

void exp_retrieval_close(exp_retrieval_data *r)
{
    if (!r)
        return;
    exp_users_free(&r->users);
    dv365_config_free(r->cfg);
    positives_free(&r->tr);
    positives_free(&r->ev);
    free(r->triples);
    free(r);
}

static size_t task_index(const dv365_config *cfg, const char *name)
{
    for (size_t t = 0; t < dv365_config_num_tasks(cfg); t++)
        if (!strcmp(dv365_config_task_name(cfg, t), name))
            return t;
    return SIZE_MAX;
}

dv365_status exp_retrieval_open(const exp_world *w, const char *config_text, int heldout_users,
                                exp_retrieval_data **out)
{
    *out = NULL;
    exp_retrieval_data *r = calloc(1, sizeof *r);
    if (!r)
        return dv_error(DV365_E_NOMEM, "out of memory");
    r->w = w;
    r->config_text = config_text;
    dv365_status st = dv365_config_parse(config_text, strlen(config_text), &r->cfg);
    if (st)
        goto fail;
    const dv365_config *cfg = r->cfg;
    const size_t like = task_index(cfg, "like"), complete = task_index(cfg, "complete");
    if (like == SIZE_MAX || complete == SIZE_MAX) {
        st = dv_error(DV365_E_CONFIG, "the downstream config needs backbone tasks 'like' and "
                      "'complete' (a positive has either)");
        goto fail;
    }
    if (dv365_config_num_tasks(cfg) != w->train.T || w->eval.T != w->train.T) {
        st = dv_error(DV365_E_MISMATCH, "the examples have %zu labels; the downstream config "
                      "names %zu tasks", w->train.T, dv365_config_num_tasks(cfg));
        goto fail;
    }
    r->N = dv365_config_num_slices(cfg);
    r->D = dv365_config_dim(cfg);
    r->ND = r->N * r->D;
    r->d = r->D;
    r->n_tables = dv365_config_num_tables(cfg);
    r->gap = cfg->training.gap_s;
    if ((st = exp_load_users(w->timelines, cfg, &r->users)))
        goto fail;
    for (size_t i = 0; i < r->users.n; i++) {
        size_t n = dv365_timeline_size(r->users.tl[i]);
        r->max_events = n > r->max_events ? n : r->max_events;
    }
    /* same users: train on the train window, evaluate on the eval window;
     * held-out users: train on the others' train window, evaluate on every
     * positive of the held-out users (never trained on, so no id to memorize) */
    const size_t n_all = w->train.n + w->eval.n;
    if ((st = positives_alloc(&r->tr, w->train.n)) || (st = positives_alloc(&r->ev, n_all)))
        goto fail;
    if (heldout_users)
        st = take_positives(r, &w->train, like, complete, 0, &r->tr);
    else
        st = take_positives(r, &w->train, like, complete, -1, &r->tr);
    if (st == DV365_OK && heldout_users)
        st = take_positives(r, &w->train, like, complete, 1, &r->ev);
    if (st == DV365_OK)
        st = take_positives(r, &w->eval, like, complete, heldout_users ? 1 : -1, &r->ev);
    if (st)
        goto fail;
    if (r->tr.n < 2 || r->ev.n < 1) {
        st = dv_error(DV365_E_INVALID, "%zu train and %zu eval positives (like or complete): "
                      "too few for retrieval", r->tr.n, r->ev.n);
        goto fail;
    }
    /* the candidate pool: distinct triples of every example */
    if (!(r->triples = malloc(3 * n_all * sizeof *r->triples))) {
        st = dv_error(DV365_E_NOMEM, "out of memory");
        goto fail;
    }
    memcpy(r->triples, w->train.items, 3 * w->train.n * sizeof *r->triples);
    memcpy(r->triples + 3 * w->train.n, w->eval.items, 3 * w->eval.n * sizeof *r->triples);
    qsort(r->triples, n_all, 3 * sizeof *r->triples, triple_cmp);
    for (size_t i = 0; i < n_all; i++)
        if (r->n_triples == 0 ||
            triple_cmp(r->triples + 3 * i, r->triples + 3 * (r->n_triples - 1)))
            memmove(r->triples + 3 * r->n_triples++, r->triples + 3 * i,
                    3 * sizeof *r->triples);
    if (r->n_triples < 2) {
        st = dv_error(DV365_E_INVALID, "the examples hold a single item: no negatives to draw");
        goto fail;
    }
    *out = r;
    return DV365_OK;
fail:
    exp_retrieval_close(r);
    return st;
}

size_t exp_retrieval_num_positives(const exp_retrieval_data *r, int eval)
{
    return eval ? r->ev.n : r->tr.n;
}

/* --- one two-tower model ----------------------------------------------------- */

typedef struct tower {
    dv365_model *m; /* the downstream config: its pooler holds the history tables */
    dv365_pooler *pooler;
    sparse_table pool[64], item[3];
    size_t n_pool;
    float *wu, *gwu, *mwu, *vwu; /* W_u [d x ND] then b_u [d]: one Adam block */
    size_t n_wu;
    dv365_adapter *lin, *gate; /* NULL without DV365; gate NULL for "plain" */
    float *glin, *mlin, *vlin, *ggate, *mgate, *vgate;
    size_t n_lin, n_gate;
    dv_adam adam;
    dv_rowwise_adagrad adagrad;
    double emb_lr;
} tower;

static void tower_free(tower *t)
{
    for (size_t i = 0; i < t->n_pool; i++)
        sparse_free(&t->pool[i]);
    for (int f = 0; f < 3; f++)
        sparse_free(&t->item[f]);
    dv365_model_free(t->m);
    dv365_adapter_free(t->lin);
    dv365_adapter_free(t->gate);
    free(t->wu);
    free(t->gwu);
    free(t->mwu);
    free(t->vwu);
    free(t->glin);
    free(t->mlin);
    free(t->vlin);
    free(t->ggate);
    free(t->mgate);
    free(t->vgate);
    memset(t, 0, sizeof *t);
}

static dv365_status adam_block(size_t n, float **g, float **m, float **v)
{
    *g = calloc(n + 1, sizeof **g);
    *m = calloc(n + 1, sizeof **m);
    *v = calloc(n + 1, sizeof **v);
    return *g && *m && *v ? DV365_OK : dv_error(DV365_E_NOMEM, "out of memory");
}

/* Everything but the DV365 part is a function of the seed alone, so every
 * arm of a seed starts from the same towers. */
static dv365_status tower_init(tower *t, const exp_retrieval_data *r, const exp_bank *bank,
                               int gatenet, uint64_t seed)
{
    memset(t, 0, sizeof *t);
    dv365_status st = exp_model_from_text(r->config_text, seed, &t->m);
    if (st)
        return st;
    t->pooler = dv365_model_pooler(t->m);
    if (r->n_tables > sizeof t->pool / sizeof t->pool[0])
        return dv_error(DV365_E_CONFIG, "the downstream config has %zu tables (at most %zu)",
                        r->n_tables, sizeof t->pool / sizeof t->pool[0]);
    for (size_t i = 0; i < r->n_tables; i++) {
        float *data;
        size_t rows;
        if ((st = dv365_pooler_table(t->pooler, i, &data, &rows)) ||
            (st = sparse_init(&t->pool[i], data, rows, r->D, NULL, 0)))
            return st;
        t->n_pool = i + 1;
    }
    dv_rng rng;
    dv_rng_seed(&rng, dv_mix64(seed ^ UINT64_C(0x7265747269657661))); /* "retrieva" */
    for (int f = 0; f < 3; f++)
        if ((st = sparse_init(&t->item[f], NULL, item_rows[f], r->d, &rng, RET_ITEM_STD)))
            return st;
    /* W_u as torch.nn.Linear: U(-1/sqrt(in), 1/sqrt(in)), b_u = 0 */
    t->n_wu = r->d * r->ND + r->d;
    if (!(t->wu = calloc(t->n_wu, sizeof *t->wu)) ||
        (st = adam_block(t->n_wu, &t->gwu, &t->mwu, &t->vwu)))
        return st ? st : dv_error(DV365_E_NOMEM, "out of memory");
    const double bound = 1.0 / sqrt((double)r->ND);
    for (size_t i = 0; i < r->d * r->ND; i++)
        t->wu[i] = (float)(bound * (2.0 * dv_rng_uniform(&rng) - 1.0));
    if ((st = dv_adam_init(&t->adam, false, 0.9, 0.999, 1e-8, 0.0)) ||
        (st = dv_rowwise_adagrad_init(&t->adagrad, r->cfg->training.emb_eps, 0.0, DV_WD_NONE)))
        return st;
    t->emb_lr = r->cfg->training.emb_lr;
    if (!bank)
        return DV365_OK;
    if ((st = dv365_adapter_create(DV365_ADAPTER_LINEAR, "retrieval_linear", bank->K, bank->D,
                                   r->d, dv_mix64(seed + 1), &t->lin)) ||
        (st = adam_block(t->n_lin = dv365_adapter_num_params(t->lin), &t->glin, &t->mlin,
                         &t->vlin)))
        return st;
    if (!gatenet)
        return DV365_OK;
    if ((st = dv365_adapter_create(DV365_ADAPTER_GATENET_VECTOR, "retrieval_gate", bank->K,
                                   bank->D, 0, dv_mix64(seed + 2), &t->gate)))
        return st;
    return adam_block(t->n_gate = dv365_adapter_num_params(t->gate), &t->ggate, &t->mgate,
                      &t->vgate);
}

/* v = the sum of the item's three table rows. */
static void item_vec(const tower *t, const uint64_t *triple, float *v, size_t d)
{
    memset(v, 0, d * sizeof *v);
    for (int f = 0; f < 3; f++) {
        const float *row = t->item[f].w + dv365_hash_row(triple[f], t->item[f].rows) * d;
        for (size_t k = 0; k < d; k++)
            v[k] += row[k];
    }
}

/* --- pooling the batch's histories on threads --------------------------------- */

typedef struct pool_job {
    const dv365_pooler *pooler;
    dv365_workspace **ws; /* one per chunk */
    const dv365_timeline **tl;
    const int64_t *cut;
    float *X;
    const float *dX; /* NULL: forward */
    dv365_pool_grad **grad;
    dv365_status *st;
    size_t ND;
} pool_job;

static void pool_range(void *ctx, size_t begin, size_t end, int chunk)
{
    pool_job *j = ctx;
    for (size_t i = begin; i < end; i++)
        j->st[i] = j->dX ? dv365_pool_backward(j->pooler, j->ws[chunk], j->tl[i], j->cut[i],
                                               j->dX + i * j->ND, j->grad[i])
                         : dv365_pool_forward(j->pooler, j->ws[chunk], j->tl[i], j->cut[i],
                                              j->X + i * j->ND, NULL, NULL);
}

static dv365_status pool_run(pool_job *j, size_t nb, int nthreads)
{
    dv_parallel_for(nthreads, nb, pool_range, j);
    for (size_t i = 0; i < nb; i++)
        if (j->st[i])
            return dv_error(j->st[i], "pooling the history of batch example %zu failed (%s)", i,
                            dv365_status_string(j->st[i]));
    return DV365_OK;
}

/* --- one arm of one seed ----------------------------------------------------- */

/* Scratch for one batch, shared by the arms of a run. */
typedef struct scratch {
    int nthreads;
    dv365_workspace *ws[DV_MAX_CHUNKS], *ws_ad;
    dv365_pool_grad *grad[RET_BATCH];
    dv365_status st[RET_BATCH];
    const dv365_timeline *tl[RET_BATCH];
    int64_t cut[RET_BATCH];
    uint64_t key[RET_BATCH];
    float *X, *dX, *U, *G, *dG, *a, *u, *v, *du, *dv, *P, *neg;
    size_t *order;
    uint32_t *negs; /* [eval positives][RET_NEG] indices into the triples */
} scratch;

static void scratch_free(scratch *s)
{
    for (int c = 0; c < DV_MAX_CHUNKS; c++)
        dv365_workspace_free(s->ws[c]);
    dv365_workspace_free(s->ws_ad);
    for (size_t i = 0; i < RET_BATCH; i++)
        dv365_pool_grad_free(s->grad[i]);
    free(s->X);
    free(s->dX);
    free(s->U);
    free(s->G);
    free(s->dG);
    free(s->a);
    free(s->u);
    free(s->v);
    free(s->du);
    free(s->dv);
    free(s->P);
    free(s->neg);
    free(s->order);
    free(s->negs);
    memset(s, 0, sizeof *s);
}

static dv365_status scratch_init(scratch *s, const exp_retrieval_data *r, const tower *t,
                                 size_t KD, int nthreads)
{
    memset(s, 0, sizeof *s);
    const size_t B = RET_BATCH, d = r->d;
    s->nthreads = nthreads < 1 ? 1 : nthreads > DV_MAX_CHUNKS ? DV_MAX_CHUNKS : nthreads;
    dv365_status st = dv365_workspace_create(&s->ws_ad);
    const size_t pool_bytes = dv365_pool_workspace_size(t->pooler, r->max_events);
    for (int c = 0; st == DV365_OK && c < s->nthreads; c++)
        if ((st = dv365_workspace_create(&s->ws[c])) == DV365_OK)
            st = dv365_workspace_reserve(s->ws[c], pool_bytes);
    for (size_t i = 0; st == DV365_OK && i < B; i++)
        st = dv365_pool_grad_create(t->pooler, &s->grad[i]);
    if (st)
        return st;
    s->X = malloc(B * r->ND * sizeof *s->X);
    s->dX = malloc(B * r->ND * sizeof *s->dX);
    s->U = malloc((B * KD + 1) * sizeof *s->U);
    s->G = malloc((B * KD + 1) * sizeof *s->G);
    s->dG = malloc((B * KD + 1) * sizeof *s->dG);
    s->a = malloc(B * d * sizeof *s->a);
    s->u = malloc(B * d * sizeof *s->u);
    s->v = malloc(B * d * sizeof *s->v);
    s->du = malloc(B * d * sizeof *s->du);
    s->dv = malloc(B * d * sizeof *s->dv);
    s->P = malloc(B * B * sizeof *s->P);
    s->neg = malloc(RET_NEG * d * sizeof *s->neg);
    s->order = malloc((r->tr.n > B ? r->tr.n : B) * sizeof *s->order); /* eval batches too */
    s->negs = malloc(r->ev.n * RET_NEG * sizeof *s->negs);
    if (!s->X || !s->dX || !s->U || !s->G || !s->dG || !s->a || !s->u || !s->v || !s->du ||
        !s->dv || !s->P || !s->neg || !s->order || !s->negs)
        return dv_error(DV365_E_NOMEM, "out of memory for the retrieval batch");
    return DV365_OK;
}

/* The user vectors u [nb x d] of positives idx[0..nb) of p (X, U, G kept for
 * backward). */
static dv365_status user_forward(const exp_retrieval_data *r, tower *t, scratch *s,
                                 const exp_bank *bank, const size_t *bank_user,
                                 const positives *p, const size_t *idx, size_t nb)
{
    const size_t d = r->d;
    for (size_t j = 0; j < nb; j++) {
        size_t i = idx[j];
        s->tl[j] = r->users.tl[p->user[i]];
        s->cut[j] = p->time[i] - r->gap > 0 ? p->time[i] - r->gap : 0;
        s->key[j] = p->items[3 * i];
    }
    pool_job job = {.pooler = t->pooler, .ws = s->ws, .tl = s->tl, .cut = s->cut, .X = s->X,
                    .st = s->st, .ND = r->ND};
    dv365_status st = pool_run(&job, nb, s->nthreads);
    if (st)
        return st;
    dv_linear_forward(s->u, s->X, t->wu, t->wu + d * r->ND, nb, r->ND, d, s->nthreads);
    if (!bank)
        return DV365_OK;
    const size_t KD = bank->K * bank->D;
    for (size_t j = 0; j < nb; j++) {
        size_t i = idx[j], bu = bank_user[p->user[i]];
        if (bu == SIZE_MAX) /* a user the bank lacks: zeros */
            memset(s->U + j * KD, 0, KD * sizeof *s->U);
        else /* made at midnight of the label's day: only events before it */
            memcpy(s->U + j * KD, exp_bank_get(bank, exp_bank_day(bank, p->time[i]), bu),
                   KD * sizeof *s->U);
    }
    if (t->gate && (st = dv365_adapter_forward(t->gate, s->ws_ad, nb, s->U, s->G, s->nthreads)))
        return st;
    if ((st = dv365_adapter_forward(t->lin, s->ws_ad, nb, t->gate ? s->G : s->U, s->a,
                                    s->nthreads)))
        return st;
    for (size_t k = 0; k < nb * d; k++)
        s->u[k] += s->a[k];
    return DV365_OK;
}

/* One step on positives idx[0..nb) of the train split. */
static dv365_status train_step(const exp_retrieval_data *r, tower *t, scratch *s,
                               const exp_bank *bank, const size_t *bank_user, const size_t *idx,
                               size_t nb, double *loss)
{
    const size_t d = r->d, ND = r->ND;
    dv365_status st = user_forward(r, t, s, bank, bank_user, &r->tr, idx, nb);
    if (st)
        return st;
    for (size_t j = 0; j < nb; j++)
        item_vec(t, r->tr.items + 3 * idx[j], s->v + j * d, d);
    *loss = exp_inbatch_softmax_forward(s->P, s->u, s->v, s->key, nb, d);
    memset(s->du, 0, nb * d * sizeof *s->du);
    memset(s->dv, 0, nb * d * sizeof *s->dv);
    exp_inbatch_softmax_backward(s->du, s->dv, s->P, s->u, s->v, nb, d);

    /* user tower: W_u, the DV365 adapters, then the pooling tables */
    memset(s->dX, 0, nb * ND * sizeof *s->dX);
    memset(t->gwu, 0, t->n_wu * sizeof *t->gwu);
    dv_linear_backward(s->dX, t->gwu, t->gwu + d * ND, s->du, s->X, t->wu, nb, ND, d,
                       s->nthreads);
    if (bank) {
        memset(t->glin, 0, t->n_lin * sizeof *t->glin);
        if (t->gate)
            memset(s->dG, 0, nb * bank->K * bank->D * sizeof *s->dG);
        if ((st = dv365_adapter_backward(t->lin, s->ws_ad, nb, t->gate ? s->G : s->U, s->du,
                                         t->glin, t->gate ? s->dG : NULL, s->nthreads)))
            return st;
        if (t->gate) {
            memset(t->ggate, 0, t->n_gate * sizeof *t->ggate);
            if ((st = dv365_adapter_backward(t->gate, s->ws_ad, nb, s->U, s->dG, t->ggate, NULL,
                                             s->nthreads)))
                return st;
        }
    }
    pool_job job = {.pooler = t->pooler, .ws = s->ws, .tl = s->tl, .cut = s->cut, .dX = s->dX,
                    .grad = s->grad, .st = s->st, .ND = ND};
    if ((st = pool_run(&job, nb, s->nthreads)))
        return st;
    for (size_t j = 0; j < nb; j++) /* summed in example order: thread-count independent */
        for (size_t k = 0; k < t->n_pool; k++) {
            size_t n;
            const size_t *rows;
            const float *g;
            if ((st = dv365_pool_grad_table(s->grad[j], k, &n, &rows, &g)))
                return st;
            for (size_t q = 0; q < n; q++)
                sparse_add(&t->pool[k], rows[q], g + q * r->D);
        }
    /* item tower */
    for (size_t j = 0; j < nb; j++)
        for (int f = 0; f < 3; f++)
            sparse_add(&t->item[f],
                       dv365_hash_row(r->tr.items[3 * idx[j] + f], t->item[f].rows),
                       s->dv + j * d);

    /* updates: Adam for the dense blocks, row-wise Adagrad for the tables */
    if ((st = dv_adam_begin_step(&t->adam)) ||
        (st = dv_adam_update(&t->adam, RET_DENSE_LR, t->wu, t->gwu, t->mwu, t->vwu, t->n_wu)))
        return st;
    if (bank && (st = dv_adam_update(&t->adam, RET_DENSE_LR, dv365_adapter_params(t->lin),
                                     t->glin, t->mlin, t->vlin, t->n_lin)))
        return st;
    if (t->gate && (st = dv_adam_update(&t->adam, RET_DENSE_LR, dv365_adapter_params(t->gate),
                                        t->ggate, t->mgate, t->vgate, t->n_gate)))
        return st;
    for (size_t k = 0; k < t->n_pool; k++)
        if ((st = sparse_update(&t->pool[k], &t->adagrad, t->emb_lr)))
            return st;
    for (int f = 0; f < 3; f++)
        if ((st = sparse_update(&t->item[f], &t->adagrad, t->emb_lr)))
            return st;
    return DV365_OK;
}

dv365_status exp_retrieval_arm(exp_retrieval_data *r, const exp_bank *bank, int gatenet,
                               uint64_t seed, uint64_t epochs, int nthreads, double *hr1,
                               double *hr10)
{
    *hr1 = *hr10 = NAN;
    const size_t d = r->d, B = RET_BATCH, P = r->tr.n;
    tower t;
    scratch s;
    memset(&s, 0, sizeof s);
    size_t *bank_user = NULL;
    dv365_status st = tower_init(&t, r, bank, gatenet, seed);
    if (st == DV365_OK)
        st = scratch_init(&s, r, &t, bank ? bank->K * bank->D : 0, nthreads);
    if (st == DV365_OK && bank) {
        if (!(bank_user = malloc((r->users.n + 1) * sizeof *bank_user)))
            st = dv_error(DV365_E_NOMEM, "out of memory");
        exp_users bu = {.n = bank->n_users, .id = bank->user};
        for (size_t i = 0; st == DV365_OK && i < r->users.n; i++)
            bank_user[i] = exp_user_index(&bu, r->users.id[i]);
    }
    /* the same order and negatives for every arm of a seed */
    dv_rng rng;
    dv_rng_seed(&rng, seed);
    double loss = 0;
    for (uint64_t e = 0; st == DV365_OK && e < epochs; e++) {
        for (size_t i = 0; i < P; i++)
            s.order[i] = i;
        for (size_t i = P - 1; i > 0; i--) { /* Fisher-Yates */
            size_t j = (size_t)(dv_rng_next(&rng) % (i + 1)), tmp = s.order[i];
            s.order[i] = s.order[j];
            s.order[j] = tmp;
        }
        for (size_t at = 0; st == DV365_OK && at < P; at += B) {
            size_t nb = P - at < B ? P - at : B;
            if (nb >= 2) /* a softmax over one item teaches nothing */
                st = train_step(r, &t, &s, bank, bank_user, s.order + at, nb, &loss);
            if (r->bar) {
                snprintf(r->bar->extra, sizeof r->bar->extra, "loss %.4f", loss);
                progress_show(r->bar, ++r->done, r->total);
            }
        }
    }
    /* evaluation */
    dv_rng_seed(&rng, dv_mix64(seed ^ UINT64_C(0x6e65676174697665))); /* "negative" */
    for (size_t i = 0; st == DV365_OK && i < r->ev.n; i++)
        for (size_t k = 0; k < RET_NEG; k++) {
            size_t j;
            do /* any item but the true one */
                j = (size_t)(dv_rng_next(&rng) % r->n_triples);
            while (!triple_cmp(r->triples + 3 * j, r->ev.items + 3 * i));
            s.negs[i * RET_NEG + k] = (uint32_t)j;
        }
    size_t hit1 = 0, hit10 = 0;
    for (size_t at = 0; st == DV365_OK && at < r->ev.n; at += B) {
        size_t nb = r->ev.n - at < B ? r->ev.n - at : B;
        for (size_t j = 0; j < nb; j++)
            s.order[j] = at + j;
        if ((st = user_forward(r, &t, &s, bank, bank_user, &r->ev, s.order, nb)))
            break;
        for (size_t j = 0; j < nb; j++) {
            const float *u = s.u + j * d;
            float scores[RET_NEG], pos = 0;
            item_vec(&t, r->ev.items + 3 * (at + j), s.v, d);
            for (size_t k = 0; k < d; k++)
                pos += u[k] * s.v[k];
            for (size_t q = 0; q < RET_NEG; q++) {
                item_vec(&t, r->triples + 3 * (size_t)s.negs[(at + j) * RET_NEG + q], s.neg, d);
                float sc = 0;
                for (size_t k = 0; k < d; k++)
                    sc += u[k] * s.neg[k];
                scores[q] = sc;
            }
            size_t rank = exp_retrieval_rank(pos, scores, RET_NEG);
            hit1 += rank < 1;
            hit10 += rank < 10;
        }
    }
    if (st == DV365_OK) {
        *hr1 = (double)hit1 / (double)r->ev.n;
        *hr10 = (double)hit10 / (double)r->ev.n;
    }
    free(bank_user);
    scratch_free(&s);
    tower_free(&t);
    return st;
}

/* --- the command's tables ---------------------------------------------------- */

typedef struct ret_arm {
    const char *name;
    const exp_bank *bank;
    int gatenet;
} ret_arm;

/* Train and evaluate every arm for every seed on one split; print its table. */
static dv365_status split_table(exp_retrieval_data *r, int heldout, const ret_arm *arms,
                                size_t n_arms, uint64_t seed0, size_t n_seeds, uint64_t epochs,
                                int nthreads)
{
    double *hr = calloc(2 * n_arms * n_seeds + 1, sizeof *hr); /* [arm][seed][@1, @10] */
    if (!hr)
        return dv_error(DV365_E_NOMEM, "out of memory");
    dv365_status st = DV365_OK;
    const double t0 = now_s();
    for (size_t sd = 0; st == DV365_OK && sd < n_seeds; sd++)
        for (size_t a = 0; st == DV365_OK && a < n_arms; a++) {
            double *h = hr + 2 * (a * n_seeds + sd);
            st = exp_retrieval_arm(r, arms[a].bank, arms[a].gatenet, seed0 + sd, epochs,
                                   nthreads, &h[0], &h[1]);
        }
    if (st == DV365_OK) {
        printf("\n### %s: %zu train / %zu eval positives (like or complete)\n\n",
               heldout ? "Held-out users (a quarter of the users, never seen downstream; all "
                         "their positives evaluated)"
                       : "Same users (train window, then eval window)",
               r->tr.n, r->ev.n);
        fprintf(stderr, "  retrieval, %s: %.1f s\n", heldout ? "held-out users" : "same users",
                now_s() - t0);
        printf("| arm | HR@1 | HR@10 | ΔHR@1 %% | ΔHR@10 %% |\n|---|---|---|---|---|\n");
        for (size_t a = 0; a < n_arms; a++) {
            printf("| %s |", arms[a].name);
            for (int k = 0; k < 4; k++) { /* HR@1, HR@10, then their changes vs without */
                double x[64], m, sdv;
                if (k >= 2 && a == 0) {
                    printf(" — |");
                    continue;
                }
                for (size_t i = 0; i < n_seeds; i++) {
                    double v = hr[2 * (a * n_seeds + i) + k % 2], base = hr[2 * i + k % 2];
                    /* the change is paired: each seed against its own baseline */
                    x[i] = k < 2 ? v : base > 0 ? 100.0 * (v - base) / base : NAN;
                }
                exp_mean_sd(x, n_seeds, &m, &sdv);
                if (k < 2)
                    printf(n_seeds > 1 ? " %.4f ± %.4f |" : " %.4f |", m, sdv);
                else
                    printf(n_seeds > 1 ? " %+.2f ± %.2f |" : " %+.2f |", m, sdv);
            }
            printf("\n");
        }
    }
    free(hr);
    return st;
}

int exp_retrieval(const exp_world *w, const char *config_text, const exp_bank *trained,
                  const exp_bank *control, uint64_t seed0, size_t n_seeds, uint64_t epochs,
                  int nthreads, int progress)
{
    if (!trained || n_seeds < 1 || n_seeds > 64) {
        fprintf(stderr, "dv365: experiment retrieval: needs a bank of DV365 embeddings and "
                        "1..64 seeds\n");
        return 1;
    }
    exp_bank ident = {0};
    exp_retrieval_data *r[2] = {NULL, NULL};
    dv365_status st = exp_bank_identity(trained, seed0, &ident);
    const ret_arm all[6] = {{"without DV365", NULL, 0},
                            {"+DV365 plain", trained, 0},
                            {"+DV365 GateNet", trained, 1},
                            {"+untrained DV365 plain", control, 0},
                            {"+untrained DV365 GateNet", control, 1},
                            {"+user id plain (identity control)", &ident, 0}};
    ret_arm arms[6];
    size_t n_arms = 0;
    for (size_t a = 0; a < 6; a++)
        if (a == 0 || all[a].bank)
            arms[n_arms++] = all[a];
    for (int h = 0; st == DV365_OK && h < 2; h++)
        st = exp_retrieval_open(w, config_text, h, &r[h]);
    if (st == DV365_OK) {
        progress_bar bar;
        progress_init(&bar, "retrieval", "steps", progress);
        size_t total = 0;
        for (int h = 0; h < 2; h++)
            total += n_arms * n_seeds * (size_t)epochs * ((r[h]->tr.n + RET_BATCH - 1) / RET_BATCH);
        printf("## Retrieval\n\nA two-tower model, in-batch softmax (B = %d), d = %zu; user tower: the recent "
               "history (%zu x %zu pooled by the downstream config) + DV365 %zu x %zu through "
               "an adapter; %d negatives per eval positive from %zu items; epochs %llu; "
               "seeds %llu..%llu.\n",
               RET_BATCH, r[0]->d, r[0]->N, r[0]->D, trained->K, trained->D, RET_NEG,
               r[0]->n_triples, (unsigned long long)epochs, (unsigned long long)seed0,
               (unsigned long long)(seed0 + n_seeds - 1));
        for (int h = 0; st == DV365_OK && h < 2; h++) {
            r[h]->bar = &bar;
            r[h]->total = total;
            r[h]->done = h ? r[0]->done : 0;
            st = split_table(r[h], h, arms, n_arms, seed0, n_seeds, epochs, nthreads);
        }
    }
    exp_retrieval_close(r[0]);
    exp_retrieval_close(r[1]);
    exp_bank_free(&ident);
    return st ? fail_status("experiment retrieval", st) : 0;
}
