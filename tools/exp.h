/* exp.h — what the `dv365 experiment` commands share: the world's examples
 * and timelines in memory, banks of DV365 embeddings made day by day, and
 * downstream ranking "arms" trained and evaluated on the same examples.
 *
 * Tool-side code (links the internal archive for dv_rng, dv_adam).  The
 * experiments and their rules (no leakage, same seed and order for every
 * arm) are documented in docs/experiments.md. */
#ifndef DV365_EXP_H
#define DV365_EXP_H

#include <stddef.h>
#include <stdint.h>

#include "dv365.h"

#define EXP_DAY INT64_C(86400)
#define EXP_MAX_TASKS 16
#define EXP_MAX_DAYS 64

/* Labelled examples of one .dve file, in file order. */
typedef struct exp_examples {
    size_t n, n_dense, T;
    uint64_t *user, *items; /* [n], [n][3] (media, author, topic) */
    int64_t *time;          /* label times */
    float *dense, *labels;  /* [n][n_dense], [n][T] */
} exp_examples;

dv365_status exp_load_examples(const char *path, exp_examples *e);
void exp_examples_free(exp_examples *e);

/* Every user of a timeline file, read for one config (a timeline belongs to
 * the config it was made for). */
typedef struct exp_users {
    size_t n;
    uint64_t *id; /* ascending, as the file stores them */
    dv365_timeline **tl;
} exp_users;

dv365_status exp_load_users(const char *path, const dv365_config *cfg, exp_users *u);
void exp_users_free(exp_users *u);
/* Index of user id in u, or SIZE_MAX. */
size_t exp_user_index(const exp_users *u, uint64_t id);

/* Embeddings of every user made at midnight of day0, day0 + 1 day, ...:
 * what a daily refresh would have put in the store on each day (events
 * strictly before the cutoff only).  With q4 set each embedding went
 * through the 4-bit blob (dv365_blob_encode + _decode, the bytes
 * dv365_generate stores); without it, it is the float encoder output. */
typedef struct exp_bank {
    size_t n_users, n_days, K, D;
    int64_t day0;    /* cutoff of day 0, a midnight (unix seconds) */
    int q4;
    uint64_t *user;  /* [n_users] ids, ascending */
    float *emb;      /* [n_days][n_users][K*D] */
} exp_bank;

dv365_status exp_bank_build(const dv365_model *dv, const char *timelines_path, int64_t day0,
                            size_t n_days, int q4, int nthreads, int progress, exp_bank *b);
/* A one-day bank from the current generation of a store (what a serving
 * reader gets: dv365_store_get + dv365_blob_decode) for the users of like:
 * the generation must come from dv, and day0 is its creation time.  Users
 * the store lacks get zeros (*missing counts them). */
dv365_status exp_bank_from_store(const char *store_dir, const dv365_model *dv,
                                 const exp_bank *like, exp_bank *b, size_t *missing);
void exp_bank_free(exp_bank *b);
/* A bank of one fixed random vector per user (the same every day), with the
 * overall standard deviation of ref: it tells users apart and says nothing
 * else, the control for what any per-user vector gives a downstream model
 * that has no user id of its own. */
dv365_status exp_bank_identity(const exp_bank *ref, uint64_t seed, exp_bank *b);
/* Whether a user is held out of downstream training in the held-out-users
 * split (a quarter of the users, fixed by the id). */
int exp_held_out_user(uint64_t user_id);
/* The embedding of user index u made at the cutoff day index d. */
const float *exp_bank_get(const exp_bank *b, size_t d, size_t u);
/* The day index of a cutoff (floor to a midnight), clamped to the bank. */
size_t exp_bank_day(const exp_bank *b, int64_t t);

/* The world as the experiments see it. */
typedef struct exp_world {
    char timelines[4096], train_path[4096], eval_path[4096];
    exp_examples train, eval;
    int64_t train_from; /* midnight of the first train label */
    int64_t eval_from;  /* midnight of the first eval label */
    size_t n_days;      /* days from train_from through the last eval label */
} exp_world;

dv365_status exp_world_load(const char *dir, exp_world *w);
void exp_world_free(exp_world *w);

/* Which day's embedding an example gets. */
typedef enum exp_policy {
    EXP_DAILY = 0,  /* refreshed daily: the one made at midnight of the label's day */
    EXP_FROZEN = 1  /* one fixed embedding: the one made at `frozen_at` */
} exp_policy;

/* One downstream ranking model: configs/downstream.yaml as given (no bank:
 * the baseline) or with E extra user tokens fed by a bank through a
 * linear-projection adapter trained with the model. */
typedef struct exp_arm {
    const char *name;
    const exp_bank *bank; /* NULL: the baseline */
    const exp_bank *eval_bank; /* for evaluation, if not bank (same K, D and users) */
    exp_policy train_policy, eval_policy;
    int64_t train_frozen_at, eval_frozen_at; /* for EXP_FROZEN (midnights) */
} exp_arm;

/* Settings shared by every arm of a run. */
typedef struct exp_settings {
    const char *config_text; /* the downstream config, with "extra_tokens: 0" */
    size_t extra;            /* E */
    size_t batch;
    uint64_t epochs;
    double adapter_lr;
    int nthreads;
    int progress;
    int per_day; /* also evaluate each eval day alone (exp_result.day_metric) */
    int held_out; /* 0: train on every user's train examples, evaluate on eval.dve;
                     1: train on the users exp_held_out_user() keeps, evaluate on every
                     example (train.dve and eval.dve) of the held-out quarter, which
                     downstream training never sees */
} exp_settings;

/* NE (binary) or MSE (regression) and AUC per task, overall and per eval
 * day (day 0 = eval_from). */
typedef struct exp_result {
    size_t T, n_days;
    size_t n_train, n_eval; /* examples used */
    char name[EXP_MAX_TASKS][32];
    int binary[EXP_MAX_TASKS];
    double metric[EXP_MAX_TASKS], auc[EXP_MAX_TASKS];
    double day_metric[EXP_MAX_DAYS][EXP_MAX_TASKS];
    double train_s;
    size_t skipped; /* steps skipped for a non-finite gradient */
} exp_result;

/* Train the arm on w->train from seed (same examples and order for every
 * arm of one seed) and evaluate it on w->eval. */
dv365_status exp_run_arm(const exp_world *w, const exp_settings *s, const exp_arm *arm,
                         uint64_t seed, exp_result *out);

/* The downstream config with E extra tokens (malloc'd), or NULL with a
 * message if text lacks "extra_tokens: 0". */
char *exp_config_with_extra(const char *text, size_t E);
/* The whole file as a NUL-terminated string (free with dv_free), or NULL with
 * dv365_last_error() saying why. */
char *exp_read_text(const char *path);
/* A model of config text (via a temporary file), initialized from seed. */
dv365_status exp_model_from_text(const char *text, uint64_t seed, dv365_model **out);

/* Mean and sample standard deviation of x[0..n). */
void exp_mean_sd(const double *x, size_t n, double *mean, double *sd);

/* The retrieval experiment: a two-tower model without DV365, with the
 * DV365 embedding added through a linear adapter ("plain"), and through a
 * GateNet gate + linear adapter ("GateNet"); for each bank given (trained,
 * and an untrained control that may be NULL).  Prints a markdown table of
 * HitRate@1 / @10 (mean over seeds, relative change vs without).  Returns 0,
 * or 1 after printing the error. */
int exp_retrieval(const exp_world *w, const char *config_text, const exp_bank *trained,
                  const exp_bank *control, uint64_t seed0, size_t n_seeds, uint64_t epochs,
                  int nthreads, int progress);

/* Its parts (exp_retrieval.c), for tests.  The experiment's data: the
 * world's positives (like or complete), their users' timelines for the
 * downstream config, the distinct (media, author, topic) candidate triples.
 * heldout_users 0: train on the train window's positives, evaluate on the
 * eval window's (the same users); 1: a quarter of the users (by id) is held
 * out: train on the others' train window, evaluate on all the held-out
 * users' positives. */
typedef struct exp_retrieval_data exp_retrieval_data;
dv365_status exp_retrieval_open(const exp_world *w, const char *config_text, int heldout_users,
                                exp_retrieval_data **out);
void exp_retrieval_close(exp_retrieval_data *r);
size_t exp_retrieval_num_positives(const exp_retrieval_data *r, int eval);
/* Train one two-tower arm (bank NULL: without DV365; gatenet: GateNet then
 * linear adapter, else linear) from seed; HitRate@1 / @10 on the eval positives. */
dv365_status exp_retrieval_arm(exp_retrieval_data *r, const exp_bank *bank, int gatenet,
                               uint64_t seed, uint64_t epochs, int nthreads, double *hr1,
                               double *hr10);
/* In-batch sampled softmax over B (user, item) pairs, logits S_ij = u_i . v_j
 * (u, v [B x d]), the target of row i is column i; a column j != i whose key
 * equals key[i] (the same item twice in a batch; key may be NULL) is left
 * out of row i.  Writes the probabilities P [B x B] (0 where left out) and
 * returns the mean cross-entropy. */
double exp_inbatch_softmax_forward(float *P, const float *u, const float *v,
                                   const uint64_t *key, size_t B, size_t d);
/* ACCUMULATES dL/du and dL/dv [B x d] (either may be NULL) from forward's P. */
void exp_inbatch_softmax_backward(float *du, float *dv, const float *P, const float *u,
                                  const float *v, size_t B, size_t d);
/* How many of n_neg negative scores are >= the true item's (ties count
 * against it): HitRate@k counts the positives whose rank is < k. */
size_t exp_retrieval_rank(float pos, const float *neg, size_t n_neg);

#endif
