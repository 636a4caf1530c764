/* world.h — the synthetic UniTi world: a catalog built from the real
 * KuaiRand-Pure videos, users with known long-term interests and drifting
 * short-term interests, a year of events, and labelled impressions.
 *
 * Tool-side code (not part of libdv365's API): it uses the public
 * library (timeline and example writers) and the library's internal random
 * generator (dv_rng), and is linked into the dv365 tool
 * and into tests/test_world.  The model, its equations, the presets and the
 * files are documented in docs/world.md.
 *
 *     world_params p;
 *     world_preset("tiny", &p);
 *     p.seed = 7;
 *     world *w;
 *     if (world_create(&p, cfg, &w, err, sizeof err) == DV365_OK)
 *         st = world_write(w, "out/", NULL, NULL, &stats, err, sizeof err);
 *     world_free(w);
 *
 * Everything is a function of the parameters and the catalog file: the same
 * seed gives bit-identical files.  Users are generated one at a time from
 * their own random streams, so memory stays O(catalog + one user). */
#ifndef DV365_WORLD_H
#define DV365_WORLD_H

#include <stddef.h>
#include <stdint.h>

#include "dv365.h"

#define WORLD_MAX_LONG 24   /* long-term topics per user (at most) */
#define WORLD_MAX_FAV 24    /* favourite authors per user (at most) */
#define WORLD_MAX_SHORT 3   /* topics of one short-term state (at most) */
#define WORLD_N_DENSE 8     /* dense features per example (docs/world.md) */
#define WORLD_MAX_TASKS 16

typedef struct world_params {
    uint64_t seed;
    size_t n_users;
    size_t events_mean;     /* per user (views + explicit); users get 0.3..1.7 x mean */
    size_t n_items;         /* catalog size; real videos first, then template copies */
    size_t niches;          /* topic = tag * niches + niche(author), niches in 1..256 */
    size_t train_per_user;  /* labelled impressions per user, train split */
    size_t eval_per_user;   /* ... eval split */
    size_t pretrain_per_user; /* DV365's own training examples per user (pretrain.dve,
                                 label times in the train window, drawn apart from
                                 train.dve); 0 = no pretrain.dve */
    int64_t now;            /* end of the year of activity (unix seconds) */
    int64_t span_days;      /* days of activity before now (365) */
    int64_t train_days;     /* train labels in [embed_time - train_days, embed_time) */
    int64_t eval_days;      /* eval labels in [embed_time, now); embed_time = now - eval_days */
    const char *catalog_csv; /* KuaiRand-Pure video_features_basic_pure.csv */
    /* Labels written per example, in this order (the config's backbone task
     * names); NULL = the default like, comment, share, complete, skip,
     * watch_time.  Known names: world_task_names(). */
    const char *const *task_names;
    size_t n_tasks;
} world_params;

/* Fill p with a named preset ("tiny", "small", "large"); -1 if unknown. */
int world_preset(const char *name, world_params *p);
/* The preset names, NULL-terminated. */
const char *const *world_preset_names(void);
/* The label names the world can produce, NULL-terminated. */
const char *const *world_task_names(void);

typedef struct world world;

/* Check p, read the catalog CSV and build the catalog; cfg gives the codes
 * (its vocabularies need the action "view" and the media types "video",
 * "photo", "carousel"; other actions and surfaces are used when present)
 * and must outlive the world.  On error *out is untouched and err holds a
 * message. */
dv365_status world_create(const world_params *p, const dv365_config *cfg, world **out,
                          char *err, size_t err_len);
void world_free(world *w);

/* Progress: done out of total users. */
typedef void (*world_progress_fn)(void *ctx, size_t done, size_t total);

/* What world_write measured (also written to world.txt). */
typedef struct world_stats {
    size_t n_users, n_items, n_authors, n_topics;
    size_t events, explicit_events, events_min, events_max;
    size_t action_count[32];         /* by action code */
    size_t n_train, n_eval, n_pretrain;
    size_t n_tasks;
    double train_label_mean[WORLD_MAX_TASKS], eval_label_mean[WORLD_MAX_TASKS];
    size_t short_history;            /* the "recent history" length the diagnostics use */
    double long_mass_unseen_recent;  /* mean over users: long-term interest mass whose topics
                                        are absent from the last short_history events at
                                        embed time */
    double long_mass_unseen_all;     /* ... absent from the whole history before embed time */
    double like_rate_dormant;        /* eval+train like rate: candidates on long-term topics
                                        absent from the last short_history events */
    double like_rate_none;           /* ... candidates on topics with no interest at all */
    double like_rate_short;          /* ... candidates on a current short-term topic */
    size_t n_dormant, n_none, n_short;
    /* like AUC over all examples of three scores: the candidate's topic +
     * author share in the last short_history events, in the whole history
     * before the label, and the true interest I */
    double auc_like_recent, auc_like_full, auc_like_truth;
} world_stats;

/* Generate everything into dir (created if missing): timelines.dvt,
 * train.dve, eval.dve, pretrain.dve (if pretrain_per_user > 0), catalog.csv,
 * truth_users.csv, truth_states.csv,
 * truth_train.csv, truth_eval.csv and world.txt, each written atomically.
 * progress and stats may be NULL. */
dv365_status world_write(world *w, const char *dir, world_progress_fn progress, void *ctx,
                         world_stats *stats, char *err, size_t err_len);

/* The summary text of world.txt for stats (into buf, always terminated). */
void world_summary(const world *w, const world_stats *stats, char *buf, size_t len);

/* --- ground truth, recomputed from the seed (no files needed) ----------- */

typedef struct world_user_truth {
    uint64_t user_id;
    size_t events_target;
    double activity, bias, propensity;
    size_t n_long;
    uint64_t long_topic[WORLD_MAX_LONG]; /* topic ids, by decreasing weight */
    double long_weight[WORLD_MAX_LONG];  /* sums to 1 */
    size_t n_fav;
    uint64_t fav_author[WORLD_MAX_FAV];
} world_user_truth;

size_t world_num_users(const world *w);
size_t world_num_items(const world *w);
/* User ids are 1..n_users (user index + 1). */
dv365_status world_user(const world *w, size_t index, world_user_truth *out);
/* The time embeddings are made for the staleness experiment (= now - eval_days). */
int64_t world_embed_time(const world *w);

#endif
