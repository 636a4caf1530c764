/* config.h — the parsed configuration, as the rest of lib/ sees it.
 * The YAML format is documented in docs/config.md; config.c builds this. */
#ifndef DV365_CONFIG_H
#define DV365_CONFIG_H

#include "internal.h"
#include "loss.h"
#include "optim.h"

/* Id fields of an event that a slice can pool. */
typedef enum dv_field { DV_FIELD_MEDIA = 0, DV_FIELD_AUTHOR = 1, DV_FIELD_TOPIC = 2 } dv_field;
#define DV_NUM_FIELDS 3

/* Which events a slice may take by action class. */
typedef enum dv_kind { DV_KIND_ALL = 0, DV_KIND_EXPLICIT = 1, DV_KIND_IMPLICIT = 2 } dv_kind;

/* Per-event pooling weight. */
typedef enum dv_weight {
    DV_WEIGHT_NONE = 0,        /* plain mean */
    DV_WEIGHT_WATCH_SCORE = 1, /* ln(1+dwell_s) / ln(1+gamma*duration_s) */
    DV_WEIGHT_WATCH_RATIO = 2, /* dwell / duration */
    DV_WEIGHT_DWELL = 3,       /* dwell in seconds */
    DV_WEIGHT_LOG_DWELL = 4    /* ln(1 + dwell_s) */
} dv_weight;

/* A half-open interval min <= v < max; a missing end is unbounded. */
typedef struct dv_range {
    bool has_min, has_max;
    double min, max;
} dv_range;

static inline bool dv_range_contains(const dv_range *r, double v)
{
    return (!r->has_min || v >= r->min) && (!r->has_max || v < r->max);
}

/* A time window: events with cutoff - from_s <= time < cutoff - to_s.
 * "all" has from_s = INT64_MAX (no lower bound). */
typedef struct dv_window {
    char *name; /* "all", "7d", "30d-7d", ... */
    int64_t from_s, to_s;
} dv_window;

/* One slice definition as written, before expansion. */
typedef struct dv_slice_def {
    char *name;
    dv_kind kind;
    uint8_t *action_ok;     /* [n_actions] 0/1, NULL = any action */
    uint8_t *media_type_ok; /* [n_media_types], NULL = any */
    uint8_t *surface_ok;    /* [n_surfaces], NULL = any */
    dv_range dwell_ms, watch_ratio, watch_score;
    dv_weight weight;
    size_t n_pools;                  /* id fields pooled (1..3) */
    dv_field field[DV_NUM_FIELDS];   /* in the order written */
    size_t table[DV_NUM_FIELDS];     /* table index for each pooled field */
    size_t n_windows;
    size_t *window;                  /* [n_windows] indices into cfg->windows */
    size_t first_slice;              /* expanded: first_slice + p*n_windows + w */
} dv_slice_def;

/* One expanded slice = one row of X. */
typedef struct dv_slice {
    char *name; /* "<def>.<field>.<window>" */
    size_t def, pool, window; /* def index, pool index within def, index into cfg->windows */
    dv_field field;
    size_t table;
} dv_slice;

/* Encoder sizes (N = n_slices, D = dim). */
typedef struct dv_encoder_cfg {
    size_t blocks;           /* funnel blocks; 0 = LCE only */
    size_t layers_per_block; /* pre-LN Transformer layers per block */
    size_t heads;
    size_t ffn;              /* hidden width F of the feed-forward */
    size_t stride;           /* funnel pooling stride between blocks; 1 = vanilla */
    size_t k_lce;            /* LCE output tokens */
    float init_std;          /* std of the seeded normal init of weight matrices */
    size_t compress;         /* token-wise compression of the funnel output
                              * T_last -> compress tokens; 0 = off */
} dv_encoder_cfg;

/* The DLRM backbone that trains the encoder (section "backbone"). */
typedef struct dv_backbone_cfg {
    size_t n_dense;                    /* dense features per example */
    size_t n_bottom, *bottom;          /* bottom MLP hidden widths (output D is appended) */
    size_t n_top, *top;                /* top MLP hidden widths (output n_tasks is appended) */
    bool item_field[DV_NUM_FIELDS];    /* candidate id fields with an item table */
    size_t item_rows[DV_NUM_FIELDS];   /* rows of tables.item_<field> */
    size_t n_tasks;
    char **task_names;                 /* [n_tasks] */
    dv_task *tasks;                    /* [n_tasks] kind, weight, log1p_target */
    float init_std;                    /* item tables: N(0, init_std^2) */
    size_t extra_tokens;               /* E user tokens from outside (dv365_trainer_step_ex) */
} dv_backbone_cfg;

/* How the model is trained (section "training"). */
typedef struct dv_training_cfg {
    int64_t gap_s;           /* history ends this long before each label (24 h) */
    size_t batch_size;
    uint64_t seed;
    bool adamw;              /* dense optimizer: AdamW (true) or Adam */
    double beta1, beta2, eps, weight_decay;
    dv_lr_schedule dense_lr;
    double emb_lr, emb_eps;  /* row-wise Adagrad of every embedding table */
    double clip_norm;        /* global gradient-norm clipping; 0 = off */
} dv_training_cfg;

struct dv365_config {
    size_t dim;
    double gamma;    /* watch-score duration factor */
    float init_std;  /* pooling tables: N(0, init_std^2) */

    char **action_names;
    uint8_t *action_explicit; /* [n_actions] */
    size_t n_actions;
    char **media_type_names;
    size_t n_media_types;
    char **surface_names;
    size_t n_surfaces;

    char **table_names;
    size_t *table_rows;
    size_t n_tables;

    dv_window *windows; /* distinct windows used by any slice */
    size_t n_windows;

    dv_slice_def *defs;
    size_t n_defs;
    dv_slice *slices;
    size_t n_slices;

    dv_encoder_cfg encoder;
    dv_backbone_cfg backbone;
    dv_training_cfg training;

    char *yaml_text; /* the source text, saved verbatim with a model */
    size_t yaml_len;
    uint64_t fingerprint; /* XXH64 of yaml_text */
};

/* dv365_config_parse with a source name for messages ("path:line:col: ..."). */
dv365_status dv_config_parse_named(const char *yaml, size_t len, const char *source,
                                   dv365_config **out);

/* Funnel token counts: T_0 = N, T_{b+1} = ceil(T_b / stride); T_last =
 * T_{blocks-1} (0 when blocks = 0).  Number of output tokens
 * K = (compress ? compress : T_last) + k_lce. */
size_t dv_config_funnel_tokens(const dv365_config *cfg);
size_t dv_config_num_tokens(const dv365_config *cfg);

#endif
