/* world.c — the synthetic UniTi world (see world.h; the model is in
 * docs/world.md, whose equations the constants below follow). */
#define _POSIX_C_SOURCE 200809L
#include "world.h"

#include "internal.h" /* dv_rng, dv_mix64: the library's generator */

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DAY INT64_C(86400)
#define FRESH_MEDIA_BASE UINT64_C(1000000) /* media ids of template copies: base + item index */

/* --- the behaviour model's constants (docs/world.md, "Behaviour") -------- */

/* Interest: I = C_BASE + bias_u + q_i + pref_u[type] + surface effect
 *             + C_LONG * theta_hat_u[topic] + C_FAV * [author favourite]
 *             + C_SHORT * phi_hat_u,t[topic];   E = I + SIGMA_E * N(0,1). */
static const double C_BASE = -1.6, C_LONG = 2.6, C_FAV = 1.6, C_SHORT = 1.6, SIGMA_E = 0.8;
static const double SURFACE_EFFECT[5] = {0.0, 0.1, -0.2, 0.2, 0.3}; /* feed reels explore profile search */

/* Watch: video h = H_MAX * sigmoid(H_SLOPE * E + H_OFFSET + H_NOISE * N);
 *        ln(1 + dwell_s) = h * ln(1 + duration_s)  (the watch score with gamma 1 is h). */
static const double H_MAX = 1.05, H_SLOPE = 0.9, H_OFFSET = 0.3, H_NOISE = 0.2;
/* photos: dwell_s = exp(P_MU + P_SLOPE * E + P_NOISE * N), carousels + P_CAROUSEL */
static const double P_MU = 1.1, P_SLOPE = 0.5, P_NOISE = 0.4, P_CAROUSEL = 0.5;

/* Explicit actions: P(a) = sigmoid(alpha_a + beta_a * E + propensity_u + fav_a * [fav]);
 * hide uses -beta (disliked) and rules out the positive ones. */
enum { A_VIEW, A_LIKE, A_COMMENT, A_SHARE, A_SAVE, A_FOLLOW, A_PROFILE, A_HIDE, N_ACT };
static const char *const ACTION_NAMES[N_ACT] = {"view", "like",   "comment",       "share",
                                                "save", "follow", "profile_visit", "hide"};
static const double ACT_ALPHA[N_ACT] = {0, -3.3, -5.3, -5.4, -5.1, -6.0, -5.1, -4.4};
static const double ACT_BETA[N_ACT] = {0, 1.1, 0.9, 0.9, 0.9, 0.8, 0.7, -1.1};
static const double ACT_FAV[N_ACT] = {0, 0.3, 0.3, 0.2, 0.2, 2.0, 1.3, 0};
/* views = events_target / (1 + x_u), x_u = explicit actions per view of the
 * user, estimated from PILOT_VIEWS impressions at random times (stream 3):
 * keeps each user's total near its target */
enum { PILOT_VIEWS = 400 };

/* Exposure mixtures: timeline views / labelled impressions choose the item
 * from the current short-term topics, long-term topics, favourite authors
 * or global popularity.  Views use only the long-term topics *active* in the
 * current state; labelled impressions (the ranking candidates) use all. */
static const double VIEW_MIX[4] = {0.45, 0.25, 0.05, 0.25};
static const double LABEL_MIX[4] = {0.30, 0.30, 0.05, 0.35};

/* States: a new short-term state every Exp(STATE_DAYS) days (clamped), with
 * 1-3 topics (each a long-term topic with probability STATE_FROM_LONG) and a
 * random subset of the long-term topics active (each with ACTIVE_P). */
static const double STATE_DAYS = 9, STATE_MIN_DAYS = 2, STATE_MAX_DAYS = 30;
static const double STATE_FROM_LONG = 0.3, ACTIVE_P = 0.25;

enum { M_VIDEO, M_PHOTO, M_CAROUSEL, N_MT };
static const char *const MTYPE_NAMES[N_MT] = {"video", "photo", "carousel"};
enum { S_FEED, S_REELS, S_EXPLORE, S_PROFILE, S_SEARCH, N_SURF };
static const char *const SURF_NAMES[N_SURF] = {"feed", "reels", "explore", "profile", "search"};
static const double SURF_ALPHA[N_SURF] = {3.0, 3.0, 1.5, 0.6, 0.6};

/* Labels the world can write (matched by the config's task names). */
enum { T_ACTION, T_COMPLETE, T_SKIP, T_LONG_VIEW, T_WATCH_TIME };
static const char *const TASK_NAMES[] = {"like",     "comment",   "share",      "save",
                                         "follow",   "profile_visit", "hide",   "complete",
                                         "skip",     "long_view", "watch_time", NULL};
static const char *const DEFAULT_TASKS[] = {"like",     "comment", "share",
                                            "complete", "skip",    "watch_time"};

/* --- random numbers: the library's xoshiro256** (seeded by SplitMix64) --- */

typedef dv_rng wrng;

/* Independent stream k of user u (0 = profile, 1 = events, 2 = train and eval
 * examples, 3 = pretrain examples). */
static void rng_user(wrng *r, uint64_t seed, size_t u, unsigned k)
{
    dv_rng_seed(r, dv_mix64(seed ^ UINT64_C(0x5eed5eed)) ^ dv_mix64((uint64_t)u * 4 + k + 1));
}

static double unif(wrng *r) { return dv_rng_uniform(r); }
/* Uniform in [0, n) without modulo bias worth caring about (n < 2^32 here). */
static size_t below(wrng *r, size_t n) { return (size_t)(((dv_rng_next(r) >> 32) * (uint64_t)n) >> 32); }
static double normal(wrng *r)
{
    double u1 = 1.0 - unif(r), u2 = unif(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
static unsigned poisson(wrng *r, double mean)
{
    double l = exp(-mean), p = unif(r);
    unsigned k = 0;
    while (p > l && k < 1000) {
        p *= unif(r);
        k++;
    }
    return k;
}
/* Gamma(k, 1) by Marsaglia-Tsang (k < 1 boosted by U^(1/k)). */
static double gamma_draw(wrng *r, double k)
{
    if (k < 1.0)
        return gamma_draw(r, k + 1.0) * pow(1.0 - unif(r), 1.0 / k);
    double d = k - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = normal(r), v = 1.0 + c * x;
        if (v <= 0)
            continue;
        v = v * v * v;
        double u = 1.0 - unif(r);
        if (log(u) < 0.5 * x * x + d - d * v + d * log(v))
            return d * v;
    }
}
static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* Index drawn from cumulative weights cum[0..n) (cum[n-1] = total). */
static size_t draw_cum(wrng *r, const double *cum, size_t n)
{
    double x = unif(r) * cum[n - 1];
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cum[mid] > x)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* --- the world ------------------------------------------------------------ */

typedef struct witem {
    uint64_t media_id;
    uint32_t author, topic; /* dense indices */
    uint32_t template_row;  /* row of the KuaiRand table it copies */
    uint8_t mtype;
    float duration_ms; /* 0 for photos and carousels */
    float pop, quality;
} witem;

typedef struct wseg {
    int64_t start, end;
    uint32_t n_short;
    uint32_t short_topic[WORLD_MAX_SHORT];
    double short_w[WORLD_MAX_SHORT];
    uint32_t active; /* bit k: long-term topic k exposed in this state */
} wseg;

typedef struct wuser {
    world_user_truth t;
    uint32_t long_idx[WORLD_MAX_LONG];
    double long_cum[WORLD_MAX_LONG]; /* cumulative theta (all long-term topics) */
    uint32_t fav_idx[WORLD_MAX_FAV];
    double media_pref[N_MT];
    double surf_cum[N_SURF];
    double hour0;
    wseg *seg;
    size_t n_seg, cap_seg;
} wuser;

/* One labelled impression while it is being made. */
typedef struct wexample {
    int64_t t;
    uint32_t item;
    int32_t surface;
    float dense[WORLD_N_DENSE];
    float labels[WORLD_MAX_TASKS];
    double long_aff, short_aff, engagement, p_like;
    bool fav, long_topic, dormant, none;
    bool like;
} wexample;

typedef struct outcome {
    double I, E;
    double dwell_s;
    bool act[N_ACT];
    double p_like;
} outcome;

struct world {
    world_params p;
    const dv365_config *cfg;
    char err[512];

    int32_t act_code[N_ACT]; /* -1: not in the config (never emitted) */
    int32_t mt_code[N_MT];
    int32_t surf_code[N_SURF];
    size_t n_tasks;
    int task_kind[WORLD_MAX_TASKS];
    int task_action[WORLD_MAX_TASKS];
    const char *task_name[WORLD_MAX_TASKS];

    /* catalog */
    size_t n_real_rows; /* rows of the CSV */
    size_t n_real;      /* real videos in the catalog */
    witem *item;
    size_t n_items;
    uint64_t *author_id;
    size_t n_authors;
    size_t *a_start; /* [n_authors + 1] CSR of items per author */
    uint32_t *a_items;
    uint64_t *topic_id;
    uint32_t *topic_tag;
    size_t n_topics;
    size_t *t_start; /* [n_topics + 1] CSR of items per topic */
    uint32_t *t_items;
    float *t_prob; /* alias tables per topic, in CSR order (local indices) */
    uint32_t *t_alias;
    double *topic_cum; /* topic choice weights (items^0.5), cumulative */
    float *g_prob;
    uint32_t *g_alias;

    /* per-user scratch, reused */
    float *long_hat, *short_hat; /* [n_topics] */
    uint8_t *fav_mark, *follow_mark; /* [n_authors] */
    uint32_t *follow_list;
    size_t n_follow;
    double active_cum[WORLD_MAX_LONG];
    uint32_t active_idx[WORLD_MAX_LONG];
    size_t n_active;
    wuser user;
    /* event columns */
    size_t cap, n;
    int64_t *ev_time;
    uint64_t *ev_media, *ev_author, *ev_topic;
    int32_t *ev_action, *ev_mtype, *ev_surface;
    float *ev_duration, *ev_dwell;
    uint32_t *ev_tidx, *ev_aidx; /* dense topic / author index */
    /* events by topic and by author (CSR of event indices, ascending) */
    size_t *by_t_start, *by_a_start; /* [n_topics + 1], [n_authors + 1] */
    uint32_t *by_t, *by_a;           /* [cap] */
    /* diagnostics over all examples: history-frequency scores vs the like label */
    size_t diag_n, diag_cap;
    float *diag_recent, *diag_full, *diag_truth;
    uint8_t *diag_like;
    uint8_t *ev_kind; /* internal action index */
    double *pre_views, *pre_likes, *pre_score, *pre_scored; /* prefix sums [n + 1] */
    size_t *last_seen; /* [n_topics] */
    wexample *ex;
    size_t ex_cap, ex_n;
};

static dv365_status werr(world *w, dv365_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static dv365_status werr(world *w, dv365_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->err, sizeof w->err, fmt, ap);
    va_end(ap);
    return st;
}

static void copy_err(char *dst, size_t len, const char *src)
{
    if (dst && len) {
        strncpy(dst, src, len - 1);
        dst[len - 1] = '\0';
    }
}

/* --- presets ------------------------------------------------------------- */

static const char *const PRESETS[] = {"tiny", "small", "large", NULL};

const char *const *world_preset_names(void) { return PRESETS; }
const char *const *world_task_names(void) { return TASK_NAMES; }

int world_preset(const char *name, world_params *p)
{
    memset(p, 0, sizeof *p);
    p->seed = 1;
    p->now = INT64_C(1735689600); /* 2025-01-01T00:00:00Z */
    p->span_days = 365;
    p->eval_days = 7;
    p->catalog_csv = "data/kuairand/kuairand-pure/video_features_basic_pure.csv";
    if (!name)
        return -1;
    if (!strcmp(name, "tiny")) { /* unit tests: well under a second */
        p->n_users = 50;
        p->events_mean = 500;
        p->n_items = 10000;
        p->niches = 8;
        p->train_per_user = 40;
        p->eval_per_user = 20;
        p->train_days = 21;
    } else if (!strcmp(name, "small")) { /* the main job: train -> embed -> eval in minutes */
        p->n_users = 400;
        p->events_mean = 3000;
        p->n_items = 50000;
        p->niches = 8;
        p->train_per_user = 50;
        p->eval_per_user = 25;
        p->pretrain_per_user = 200;
        p->train_days = 21;
    } else if (!strcmp(name, "large")) { /* the paper's volumes: mean 40K, max 70K events */
        p->n_users = 1000;
        p->events_mean = 40000;
        p->n_items = 200000;
        p->niches = 32;
        p->train_per_user = 200;
        p->eval_per_user = 100;
        p->pretrain_per_user = 400;
        p->train_days = 28;
    } else {
        return -1;
    }
    return 0;
}

/* --- catalog ------------------------------------------------------------- */

typedef struct real_row {
    uint64_t video_id, author_id;
    unsigned tag;
    uint8_t mtype;
    float duration_ms;
} real_row;

/* Split one CSV line (no embedded newlines in this table) into fields in
 * place; quotes are removed.  Returns the number of fields. */
static size_t split_csv(char *line, char **field, size_t max)
{
    size_t n = 0;
    char *p = line;
    while (n < max) {
        if (*p == '"') {
            field[n++] = ++p;
            char *o = p;
            while (*p && !(*p == '"' && p[1] != '"')) {
                if (*p == '"')
                    p++;
                *o++ = *p++;
            }
            if (*p == '"')
                p++;
            *o = '\0';
            if (*p == ',')
                p++;
            else
                break;
            /* (o <= p, so writing the terminator never clobbers unread text) */
        } else {
            field[n++] = p;
            char *c = strchr(p, ',');
            if (!c)
                break;
            *c = '\0';
            p = c + 1;
        }
    }
    return n;
}

static dv365_status read_catalog_csv(world *w, real_row **out, size_t *n_out)
{
    const char *path = w->p.catalog_csv;
    FILE *f = fopen(path, "rb");
    if (!f)
        return werr(w, DV365_E_IO, "cannot open the catalog '%s': %s (run from the repository "
                                   "root or pass the path)", path, strerror(errno));
    size_t cap = 8192, n = 0, line_no = 0;
    real_row *rows = malloc(cap * sizeof *rows);
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t len;
    int col[6] = {-1, -1, -1, -1, -1, -1};
    static const char *const want[6] = {"video_id",    "author_id",      "video_type",
                                        "upload_type", "video_duration", "tag"};
    dv365_status st = DV365_OK;
    if (!rows) {
        fclose(f);
        return werr(w, DV365_E_NOMEM, "out of memory reading the catalog");
    }
    while ((len = getline(&line, &line_cap, f)) >= 0) {
        line_no++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        char *fld[64];
        size_t nf = split_csv(line, fld, 64);
        if (line_no == 1) {
            for (size_t i = 0; i < nf; i++)
                for (int k = 0; k < 6; k++)
                    if (!strcmp(fld[i], want[k]))
                        col[k] = (int)i;
            for (int k = 0; k < 6; k++)
                if (col[k] < 0) {
                    st = werr(w, DV365_E_FORMAT, "'%s': header has no column '%s'", path,
                              want[k]);
                    goto done;
                }
            continue;
        }
        for (int k = 0; k < 6; k++)
            if ((size_t)col[k] >= nf) {
                st = werr(w, DV365_E_FORMAT, "'%s': line %zu has %zu fields", path, line_no, nf);
                goto done;
            }
        real_row r;
        char *end;
        errno = 0;
        r.video_id = strtoull(fld[col[0]], &end, 10);
        if (*end || end == fld[col[0]] || errno)
            goto bad;
        r.author_id = strtoull(fld[col[1]], &end, 10);
        if (*end || end == fld[col[1]] || errno)
            goto bad;
        const char *dur = fld[col[4]];
        double d = 0;
        if (*dur) {
            d = strtod(dur, &end);
            if (*end || !isfinite(d) || d < 0)
                goto bad;
        }
        /* the first tag of the list; 0 for untagged videos */
        r.tag = (unsigned)strtoul(fld[col[5]], &end, 10);
        if (end == fld[col[5]])
            r.tag = 0;
        if (r.tag > 4095)
            goto bad;
        if (!strcmp(fld[col[3]], "PictureSet"))
            r.mtype = M_CAROUSEL;
        else if (d <= 0 || !strcmp(fld[col[3]], "LongPicture"))
            r.mtype = M_PHOTO;
        else
            r.mtype = M_VIDEO;
        r.duration_ms = r.mtype == M_VIDEO ? (float)d : 0.0f;
        if (n == cap) {
            real_row *g = realloc(rows, 2 * cap * sizeof *rows);
            if (!g) {
                st = werr(w, DV365_E_NOMEM, "out of memory reading the catalog");
                goto done;
            }
            rows = g;
            cap *= 2;
        }
        rows[n++] = r;
        continue;
    bad:
        st = werr(w, DV365_E_FORMAT, "'%s': line %zu: bad video_id, author_id, video_duration "
                                     "or tag", path, line_no);
        goto done;
    }
    if (ferror(f))
        st = werr(w, DV365_E_IO, "'%s': read error", path);
    else if (n == 0)
        st = werr(w, DV365_E_FORMAT, "'%s': no videos", path);
done:
    free(line);
    fclose(f);
    if (st != DV365_OK) {
        free(rows);
        return st;
    }
    *out = rows;
    *n_out = n;
    return DV365_OK;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static uint32_t find_u64(const uint64_t *sorted, size_t n, uint64_t v)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (sorted[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (uint32_t)lo;
}

/* Vose's alias table over w[0..n) into prob/alias (local indices); p and
 * stack are [n] scratch. */
static void alias_build(const double *wt, size_t n, float *prob, uint32_t *alias, double *p,
                        uint32_t *stack)
{
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += wt[i];
    size_t ns = 0, nl = n; /* small grows up from 0, large down from n */
    for (size_t i = 0; i < n; i++) {
        p[i] = wt[i] * (double)n / sum;
        if (p[i] < 1.0)
            stack[ns++] = (uint32_t)i;
        else
            stack[--nl] = (uint32_t)i;
    }
    while (ns > 0 && nl < n) {
        uint32_t s = stack[--ns], l = stack[nl++];
        prob[s] = (float)p[s];
        alias[s] = l;
        p[l] = (p[l] + p[s]) - 1.0;
        if (p[l] < 1.0)
            stack[ns++] = l;
        else
            stack[--nl] = l;
    }
    while (ns > 0) {
        uint32_t s = stack[--ns];
        prob[s] = 1.0f;
        alias[s] = s;
    }
    while (nl < n) {
        uint32_t l = stack[nl++];
        prob[l] = 1.0f;
        alias[l] = l;
    }
}

static uint32_t alias_draw(wrng *r, const float *prob, const uint32_t *alias, size_t n)
{
    size_t i = below(r, n);
    return (float)unif(r) < prob[i] ? (uint32_t)i : alias[i];
}

static uint32_t topic_item(const world *w, wrng *r, uint32_t z)
{
    size_t s = w->t_start[z], n = w->t_start[z + 1] - s;
    return w->t_items[s + alias_draw(r, w->t_prob + s, w->t_alias + s, n)];
}

static dv365_status build_catalog(world *w)
{
    real_row *rows = NULL;
    size_t R;
    dv365_status st = read_catalog_csv(w, &rows, &R);
    if (st != DV365_OK)
        return st;
    w->n_real_rows = R;
    size_t M = w->p.n_items;
    wrng r;
    dv_rng_seed(&r, dv_mix64(w->p.seed ^ UINT64_C(0xca7a1096)));

    w->item = calloc(M, sizeof *w->item);
    uint32_t *perm = malloc((R > M ? R : M) * sizeof *perm);
    double *scratch = malloc(M * sizeof *scratch), *wt = malloc(M * sizeof *wt);
    uint32_t *stack = malloc(M * sizeof *stack);
    uint64_t *ids = malloc(M * sizeof *ids);
    if (!w->item || !perm || !scratch || !wt || !stack || !ids) {
        st = werr(w, DV365_E_NOMEM, "out of memory building a catalog of %zu items", M);
        goto done;
    }
    /* Real videos first (a seeded subset when the catalog is smaller than
     * the table), then copies of uniformly drawn real rows under fresh ids. */
    for (size_t i = 0; i < R; i++)
        perm[i] = (uint32_t)i;
    w->n_real = R < M ? R : M;
    if (R > M)
        for (size_t i = 0; i < M; i++) {
            size_t j = i + below(&r, R - i);
            uint32_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
    for (size_t j = 0; j < M; j++) {
        uint32_t row = j < w->n_real ? perm[j] : (uint32_t)below(&r, R);
        const real_row *rr = &rows[row];
        witem *it = &w->item[j];
        it->template_row = row;
        it->media_id = j < w->n_real ? rr->video_id : FRESH_MEDIA_BASE + j;
        it->mtype = rr->mtype;
        it->duration_ms = rr->duration_ms;
        if (j >= w->n_real && rr->mtype == M_VIDEO) { /* a copy: the duration varies a little */
            double d = rr->duration_ms * exp(0.15 * normal(&r));
            it->duration_ms = (float)(d < 1000 ? 1000 : d > 1800000 ? 1800000 : d);
        }
    }
    /* authors: dense indices over the distinct real author ids */
    for (size_t j = 0; j < M; j++)
        ids[j] = rows[w->item[j].template_row].author_id;
    qsort(ids, M, sizeof *ids, cmp_u64);
    size_t A = 0;
    for (size_t j = 0; j < M; j++)
        if (j == 0 || ids[j] != ids[j - 1])
            ids[A++] = ids[j];
    w->author_id = malloc(A * sizeof *w->author_id);
    if (!w->author_id) {
        st = werr(w, DV365_E_NOMEM, "out of memory");
        goto done;
    }
    memcpy(w->author_id, ids, A * sizeof *ids);
    w->n_authors = A;
    /* topics: tag * NICHES + niche, the niche a hash of the author (an
     * author works in one niche of each tag) */
    for (size_t j = 0; j < M; j++) {
        const real_row *rr = &rows[w->item[j].template_row];
        w->item[j].author = find_u64(w->author_id, A, rr->author_id);
        ids[j] = (uint64_t)rr->tag * w->p.niches + dv_mix64(rr->author_id) % w->p.niches;
    }
    uint64_t *tid = malloc(M * sizeof *tid);
    if (!tid) {
        st = werr(w, DV365_E_NOMEM, "out of memory");
        goto done;
    }
    memcpy(tid, ids, M * sizeof *ids);
    qsort(ids, M, sizeof *ids, cmp_u64);
    size_t T = 0;
    for (size_t j = 0; j < M; j++)
        if (j == 0 || ids[j] != ids[j - 1])
            ids[T++] = ids[j];
    w->topic_id = malloc(T * sizeof *w->topic_id);
    w->topic_tag = malloc(T * sizeof *w->topic_tag);
    if (!w->topic_id || !w->topic_tag) {
        free(tid);
        st = werr(w, DV365_E_NOMEM, "out of memory");
        goto done;
    }
    memcpy(w->topic_id, ids, T * sizeof *ids);
    for (size_t z = 0; z < T; z++)
        w->topic_tag[z] = (uint32_t)(w->topic_id[z] / w->p.niches);
    w->n_topics = T;
    for (size_t j = 0; j < M; j++)
        w->item[j].topic = find_u64(w->topic_id, T, tid[j]);
    free(tid);

    /* popularity: Zipf-like over a random ranking, pop = (rank + 10)^-0.9;
     * quality follows popularity loosely */
    for (size_t i = 0; i < M; i++)
        perm[i] = (uint32_t)i;
    for (size_t i = M; i > 1; i--) {
        size_t j = below(&r, i);
        uint32_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
    double mean_lp = 0, var_lp = 0;
    for (size_t k = 0; k < M; k++) {
        double pop = pow((double)k + 10.0, -0.9);
        w->item[perm[k]].pop = (float)pop;
        mean_lp += log(pop);
    }
    mean_lp /= (double)M;
    for (size_t j = 0; j < M; j++)
        var_lp += (log(w->item[j].pop) - mean_lp) * (log(w->item[j].pop) - mean_lp);
    double sd_lp = sqrt(var_lp / (double)M) + 1e-12;
    for (size_t j = 0; j < M; j++)
        w->item[j].quality =
            (float)(0.3 * (log(w->item[j].pop) - mean_lp) / sd_lp + 0.3 * normal(&r));

    /* CSR lists per author and per topic, alias tables */
    w->a_start = calloc(A + 1, sizeof *w->a_start);
    w->a_items = malloc(M * sizeof *w->a_items);
    w->t_start = calloc(T + 1, sizeof *w->t_start);
    w->t_items = malloc(M * sizeof *w->t_items);
    w->t_prob = malloc(M * sizeof *w->t_prob);
    w->t_alias = malloc(M * sizeof *w->t_alias);
    w->topic_cum = malloc(T * sizeof *w->topic_cum);
    w->g_prob = malloc(M * sizeof *w->g_prob);
    w->g_alias = malloc(M * sizeof *w->g_alias);
    if (!w->a_start || !w->a_items || !w->t_start || !w->t_items || !w->t_prob || !w->t_alias ||
        !w->topic_cum || !w->g_prob || !w->g_alias) {
        st = werr(w, DV365_E_NOMEM, "out of memory");
        goto done;
    }
    for (size_t j = 0; j < M; j++) {
        w->a_start[w->item[j].author + 1]++;
        w->t_start[w->item[j].topic + 1]++;
    }
    for (size_t a = 0; a < A; a++)
        w->a_start[a + 1] += w->a_start[a];
    for (size_t z = 0; z < T; z++)
        w->t_start[z + 1] += w->t_start[z];
    size_t *fill = calloc((A > T ? A : T) + 1, sizeof *fill);
    if (!fill) {
        st = werr(w, DV365_E_NOMEM, "out of memory");
        goto done;
    }
    for (size_t j = 0; j < M; j++) {
        uint32_t a = w->item[j].author;
        w->a_items[w->a_start[a] + fill[a]++] = (uint32_t)j;
    }
    memset(fill, 0, ((A > T ? A : T) + 1) * sizeof *fill);
    for (size_t j = 0; j < M; j++) {
        uint32_t z = w->item[j].topic;
        w->t_items[w->t_start[z] + fill[z]++] = (uint32_t)j;
    }
    free(fill);
    double cum = 0;
    for (size_t z = 0; z < T; z++) {
        size_t s = w->t_start[z], n = w->t_start[z + 1] - s;
        for (size_t k = 0; k < n; k++)
            wt[k] = w->item[w->t_items[s + k]].pop;
        alias_build(wt, n, w->t_prob + s, w->t_alias + s, scratch, stack);
        cum += pow((double)n, 0.5);
        w->topic_cum[z] = cum;
    }
    for (size_t j = 0; j < M; j++)
        wt[j] = w->item[j].pop;
    alias_build(wt, M, w->g_prob, w->g_alias, scratch, stack);
done:
    free(rows);
    free(perm);
    free(scratch);
    free(wt);
    free(stack);
    free(ids);
    return st;
}

/* --- creation -------------------------------------------------------------- */

static dv365_status check_params(world *w)
{
    const world_params *p = &w->p;
    if (p->n_users < 1 || p->n_users > 100000000)
        return werr(w, DV365_E_INVALID, "users must be in 1..100000000, got %zu", p->n_users);
    if (p->events_mean < 4 || p->events_mean > 10000000)
        return werr(w, DV365_E_INVALID, "events per user must be in 4..10000000, got %zu",
                    p->events_mean);
    if (p->n_items < 100 || p->n_items > 100000000)
        return werr(w, DV365_E_INVALID, "items must be in 100..100000000, got %zu", p->n_items);
    if (p->niches < 1 || p->niches > 256)
        return werr(w, DV365_E_INVALID, "niches must be in 1..256, got %zu", p->niches);
    if (p->train_per_user > 1000000 || p->eval_per_user > 1000000 ||
        p->pretrain_per_user > 1000000)
        return werr(w, DV365_E_INVALID, "examples per user must be at most 1000000");
    if (p->span_days < 14 || p->span_days > 3650)
        return werr(w, DV365_E_INVALID, "span must be 14..3650 days, got %" PRId64, p->span_days);
    if (p->eval_days < 1 || p->train_days < 1 || p->eval_days + p->train_days >= p->span_days)
        return werr(w, DV365_E_INVALID,
                    "need 1 <= eval days, 1 <= train days and eval + train days < span (%" PRId64
                    " + %" PRId64 " vs %" PRId64 ")",
                    p->eval_days, p->train_days, p->span_days);
    if (p->now - p->span_days * DAY < 0 || p->now > DV365_TIME_MAX)
        return werr(w, DV365_E_INVALID, "now = %" PRId64 " is out of range", p->now);
    if (!p->catalog_csv)
        return werr(w, DV365_E_NULL, "no catalog path");
    return DV365_OK;
}

static dv365_status resolve_codes(world *w)
{
    const dv365_config *cfg = w->cfg;
    for (int a = 0; a < N_ACT; a++) {
        int32_t c;
        w->act_code[a] = dv365_config_code(cfg, DV365_VOCAB_ACTION, ACTION_NAMES[a], &c) == DV365_OK
                             ? c
                             : -1;
    }
    if (w->act_code[A_VIEW] < 0)
        return werr(w, DV365_E_CONFIG, "the config's actions need 'view' (the implicit event)");
    for (int m = 0; m < N_MT; m++)
        if (dv365_config_code(cfg, DV365_VOCAB_MEDIA_TYPE, MTYPE_NAMES[m], &w->mt_code[m]) !=
            DV365_OK)
            return werr(w, DV365_E_CONFIG, "the config's media types need '%s'", MTYPE_NAMES[m]);
    int32_t fallback = 0;
    dv365_config_code(cfg, DV365_VOCAB_SURFACE, "feed", &fallback);
    for (int s = 0; s < N_SURF; s++)
        if (dv365_config_code(cfg, DV365_VOCAB_SURFACE, SURF_NAMES[s], &w->surf_code[s]) !=
            DV365_OK)
            w->surf_code[s] = fallback; /* a surface the config lacks falls back to feed */
    /* the labels */
    const char *const *names = w->p.task_names ? w->p.task_names : DEFAULT_TASKS;
    size_t nt = w->p.task_names ? w->p.n_tasks : sizeof DEFAULT_TASKS / sizeof *DEFAULT_TASKS;
    if (nt < 1 || nt > WORLD_MAX_TASKS)
        return werr(w, DV365_E_INVALID, "tasks: need 1..%d, got %zu", WORLD_MAX_TASKS, nt);
    w->n_tasks = nt;
    for (size_t t = 0; t < nt; t++) {
        const char *n = names[t];
        w->task_name[t] = n;
        w->task_action[t] = -1;
        if (!n)
            return werr(w, DV365_E_NULL, "task %zu has no name", t);
        if (!strcmp(n, "complete"))
            w->task_kind[t] = T_COMPLETE;
        else if (!strcmp(n, "skip"))
            w->task_kind[t] = T_SKIP;
        else if (!strcmp(n, "long_view"))
            w->task_kind[t] = T_LONG_VIEW;
        else if (!strcmp(n, "watch_time"))
            w->task_kind[t] = T_WATCH_TIME;
        else {
            w->task_kind[t] = T_ACTION;
            for (int a = 1; a < N_ACT; a++)
                if (!strcmp(n, ACTION_NAMES[a]))
                    w->task_action[t] = a;
            if (w->task_action[t] < 0)
                return werr(w, DV365_E_NOT_FOUND,
                            "task '%s': the world has no such label (it has like, comment, "
                            "share, save, follow, profile_visit, hide, complete, skip, "
                            "long_view, watch_time)",
                            n);
        }
    }
    return DV365_OK;
}

void world_free(world *w)
{
    if (!w)
        return;
    free(w->item);
    free(w->author_id);
    free(w->a_start);
    free(w->a_items);
    free(w->topic_id);
    free(w->topic_tag);
    free(w->t_start);
    free(w->t_items);
    free(w->t_prob);
    free(w->t_alias);
    free(w->topic_cum);
    free(w->g_prob);
    free(w->g_alias);
    free(w->long_hat);
    free(w->short_hat);
    free(w->fav_mark);
    free(w->follow_mark);
    free(w->follow_list);
    free(w->user.seg);
    free(w->ev_time);
    free(w->ev_media);
    free(w->ev_author);
    free(w->ev_topic);
    free(w->ev_action);
    free(w->ev_mtype);
    free(w->ev_surface);
    free(w->ev_duration);
    free(w->ev_dwell);
    free(w->ev_tidx);
    free(w->ev_aidx);
    free(w->by_t_start);
    free(w->by_a_start);
    free(w->by_t);
    free(w->by_a);
    free(w->diag_recent);
    free(w->diag_full);
    free(w->diag_truth);
    free(w->diag_like);
    free(w->ev_kind);
    free(w->pre_views);
    free(w->pre_likes);
    free(w->pre_score);
    free(w->pre_scored);
    free(w->last_seen);
    free(w->ex);
    free(w);
}

dv365_status world_create(const world_params *p, const dv365_config *cfg, world **out,
                          char *err, size_t err_len)
{
    if (!p || !cfg || !out) {
        copy_err(err, err_len, "world_create: NULL argument");
        return DV365_E_NULL;
    }
    world *w = calloc(1, sizeof *w);
    if (!w) {
        copy_err(err, err_len, "out of memory");
        return DV365_E_NOMEM;
    }
    w->p = *p;
    w->cfg = cfg;
    dv365_status st = check_params(w);
    if (st == DV365_OK)
        st = resolve_codes(w);
    if (st == DV365_OK)
        st = build_catalog(w);
    if (st == DV365_OK) {
        w->n_items = p->n_items;
        w->long_hat = calloc(w->n_topics, sizeof *w->long_hat);
        w->short_hat = calloc(w->n_topics, sizeof *w->short_hat);
        w->last_seen = calloc(w->n_topics, sizeof *w->last_seen);
        w->fav_mark = calloc(w->n_authors, 1);
        w->follow_mark = calloc(w->n_authors, 1);
        w->follow_list = calloc(w->n_authors, sizeof *w->follow_list);
        w->by_t_start = calloc(w->n_topics + 1, sizeof *w->by_t_start);
        w->by_a_start = calloc(w->n_authors + 1, sizeof *w->by_a_start);
        if (!w->by_t_start || !w->by_a_start)
            st = werr(w, DV365_E_NOMEM, "out of memory");
        if (!w->long_hat || !w->short_hat || !w->last_seen || !w->fav_mark || !w->follow_mark ||
            !w->follow_list)
            st = werr(w, DV365_E_NOMEM, "out of memory");
    }
    if (st != DV365_OK) {
        copy_err(err, err_len, w->err);
        world_free(w);
        return st;
    }
    *out = w;
    return DV365_OK;
}

size_t world_num_users(const world *w) { return w ? w->p.n_users : 0; }
size_t world_num_items(const world *w) { return w ? w->n_items : 0; }
int64_t world_embed_time(const world *w) { return w ? w->p.now - w->p.eval_days * DAY : 0; }

/* --- users: the profile (stream 0) ------------------------------------------ */

static uint32_t draw_topic(const world *w, wrng *r)
{
    return (uint32_t)draw_cum(r, w->topic_cum, w->n_topics);
}

static dv365_status make_profile(world *w, size_t u, wuser *us)
{
    wrng r;
    rng_user(&r, w->p.seed, u, 0);
    world_user_truth *t = &us->t;
    memset(t, 0, sizeof *t);
    t->user_id = (uint64_t)u + 1;
    /* volume: mean * (0.3 + 1.4 B), B ~ Beta(2,2) (the median of 3 uniforms) */
    double a = unif(&r), b = unif(&r), c = unif(&r);
    double med = a > b ? (b > c ? b : (a > c ? c : a)) : (a > c ? a : (b > c ? c : b));
    t->events_target = (size_t)llround((double)w->p.events_mean * (0.3 + 1.4 * med));
    if (t->events_target < 1)
        t->events_target = 1;
    t->activity = (double)t->events_target / (double)w->p.events_mean;
    t->bias = 0.35 * normal(&r);
    t->propensity = 0.4 * normal(&r);
    for (int m = 0; m < N_MT; m++)
        us->media_pref[m] = 0.3 * normal(&r);
    us->hour0 = fmod(19.0 + 3.0 * normal(&r) + 48.0, 24.0);
    double cum = 0;
    for (int s = 0; s < N_SURF; s++) {
        cum += gamma_draw(&r, SURF_ALPHA[s]);
        us->surf_cum[s] = cum;
    }
    /* long-term topics: distinct, by catalog weight; Dirichlet(0.8) weights */
    size_t nl = 5 + poisson(&r, 5.0);
    if (nl > WORLD_MAX_LONG)
        nl = WORLD_MAX_LONG;
    if (nl > w->n_topics)
        nl = w->n_topics;
    size_t got = 0;
    for (size_t tries = 0; got < nl && tries < 1000; tries++) {
        uint32_t z = draw_topic(w, &r);
        bool dup = false;
        for (size_t k = 0; k < got; k++)
            dup |= us->long_idx[k] == z;
        if (!dup)
            us->long_idx[got++] = z;
    }
    nl = got;
    double sum = 0;
    for (size_t k = 0; k < nl; k++) {
        t->long_weight[k] = gamma_draw(&r, 0.8) + 1e-9;
        sum += t->long_weight[k];
    }
    for (size_t k = 0; k < nl; k++)
        t->long_weight[k] /= sum;
    for (size_t k = 1; k < nl; k++) /* decreasing weight */
        for (size_t j = k; j > 0 && t->long_weight[j] > t->long_weight[j - 1]; j--) {
            double tw = t->long_weight[j];
            t->long_weight[j] = t->long_weight[j - 1];
            t->long_weight[j - 1] = tw;
            uint32_t tz = us->long_idx[j];
            us->long_idx[j] = us->long_idx[j - 1];
            us->long_idx[j - 1] = tz;
        }
    t->n_long = nl;
    cum = 0;
    for (size_t k = 0; k < nl; k++) {
        t->long_topic[k] = w->topic_id[us->long_idx[k]];
        cum += t->long_weight[k];
        us->long_cum[k] = cum;
    }
    /* favourite authors: authors of popular items in the long-term topics */
    size_t nf = 2 + poisson(&r, 4.0);
    if (nf > WORLD_MAX_FAV)
        nf = WORLD_MAX_FAV;
    got = 0;
    for (size_t tries = 0; got < nf && tries < 200; tries++) {
        uint32_t z = us->long_idx[draw_cum(&r, us->long_cum, nl)];
        uint32_t au = w->item[topic_item(w, &r, z)].author;
        bool dup = false;
        for (size_t k = 0; k < got; k++)
            dup |= us->fav_idx[k] == au;
        if (!dup)
            us->fav_idx[got++] = au;
    }
    t->n_fav = got;
    for (size_t k = 0; k < got; k++)
        t->fav_author[k] = w->author_id[us->fav_idx[k]];
    /* short-term states over the span */
    us->n_seg = 0;
    int64_t start = w->p.now - w->p.span_days * DAY, tt = start;
    while (tt < w->p.now) {
        if (us->n_seg == us->cap_seg) {
            size_t nc = us->cap_seg ? 2 * us->cap_seg : 64;
            wseg *g = realloc(us->seg, nc * sizeof *g);
            if (!g)
                return werr(w, DV365_E_NOMEM, "out of memory");
            us->seg = g;
            us->cap_seg = nc;
        }
        wseg *s = &us->seg[us->n_seg++];
        memset(s, 0, sizeof *s);
        double days = STATE_DAYS * -log(1.0 - unif(&r));
        days = days < STATE_MIN_DAYS ? STATE_MIN_DAYS : days > STATE_MAX_DAYS ? STATE_MAX_DAYS : days;
        s->start = tt;
        s->end = tt + (int64_t)(days * (double)DAY);
        tt = s->end;
        size_t ns = 1 + (unif(&r) < 0.5) + (unif(&r) < 0.2);
        size_t k = 0;
        for (size_t tries = 0; k < ns && tries < 100; tries++) {
            uint32_t z = unif(&r) < STATE_FROM_LONG ? us->long_idx[draw_cum(&r, us->long_cum, nl)]
                                                    : draw_topic(w, &r);
            bool dup = false;
            for (size_t j = 0; j < k; j++)
                dup |= s->short_topic[j] == z;
            if (!dup)
                s->short_topic[k++] = z;
        }
        s->n_short = (uint32_t)k;
        sum = 0;
        for (size_t j = 0; j < k; j++)
            sum += (s->short_w[j] = gamma_draw(&r, 1.0) + 1e-9);
        for (size_t j = 0; j < k; j++)
            s->short_w[j] /= sum;
        for (size_t j = 0; j < nl; j++)
            if (unif(&r) < ACTIVE_P)
                s->active |= 1u << j;
        if (!s->active)
            s->active = 1u << draw_cum(&r, us->long_cum, nl);
    }
    us->seg[us->n_seg - 1].end = INT64_MAX; /* the last state lasts past now */
    return DV365_OK;
}

dv365_status world_user(const world *w, size_t index, world_user_truth *out)
{
    if (!w || !out)
        return DV365_E_NULL;
    if (index >= w->p.n_users)
        return DV365_E_INVALID;
    wuser us = {0};
    dv365_status st = make_profile((world *)w, index, &us);
    if (st == DV365_OK)
        *out = us.t;
    free(us.seg);
    return st;
}

/* Set the per-topic / per-author lookups of the current user. */
static void user_enter(world *w)
{
    wuser *us = &w->user;
    double top = us->t.n_long ? us->t.long_weight[0] : 1;
    for (size_t k = 0; k < us->t.n_long; k++)
        w->long_hat[us->long_idx[k]] = (float)(us->t.long_weight[k] / top);
    for (size_t k = 0; k < us->t.n_fav; k++)
        w->fav_mark[us->fav_idx[k]] = 1;
}

static void user_leave(world *w)
{
    wuser *us = &w->user;
    for (size_t k = 0; k < us->t.n_long; k++)
        w->long_hat[us->long_idx[k]] = 0;
    for (size_t k = 0; k < us->t.n_fav; k++)
        w->fav_mark[us->fav_idx[k]] = 0;
    for (size_t k = 0; k < w->n_follow; k++)
        w->follow_mark[w->follow_list[k]] = 0;
    w->n_follow = 0;
}

static void seg_enter(world *w, const wseg *s)
{
    double top = 0;
    for (size_t j = 0; j < s->n_short; j++)
        top = s->short_w[j] > top ? s->short_w[j] : top;
    for (size_t j = 0; j < s->n_short; j++)
        w->short_hat[s->short_topic[j]] = (float)(s->short_w[j] / top);
    /* exposure over the active long-term topics */
    const wuser *us = &w->user;
    double cum = 0;
    w->n_active = 0;
    for (size_t k = 0; k < us->t.n_long; k++)
        if (s->active >> k & 1) {
            cum += us->t.long_weight[k];
            w->active_cum[w->n_active] = cum;
            w->active_idx[w->n_active++] = us->long_idx[k];
        }
}

static void seg_leave(world *w, const wseg *s)
{
    for (size_t j = 0; j < s->n_short; j++)
        w->short_hat[s->short_topic[j]] = 0;
}

/* --- behaviour ---------------------------------------------------------------- */

static double interest(const world *w, uint32_t item, int surface)
{
    const witem *it = &w->item[item];
    const wuser *us = &w->user;
    return C_BASE + us->t.bias + it->quality + us->media_pref[it->mtype] + SURFACE_EFFECT[surface] +
           C_LONG * w->long_hat[it->topic] + C_FAV * w->fav_mark[it->author] +
           C_SHORT * w->short_hat[it->topic];
}

/* One impression of item on surface: dwell and explicit actions. */
static void impress(world *w, wrng *r, uint32_t item, int surface, outcome *o)
{
    const witem *it = &w->item[item];
    const wuser *us = &w->user;
    o->I = interest(w, item, surface);
    o->E = o->I + SIGMA_E * normal(r);
    if (it->mtype == M_VIDEO) {
        double h = H_MAX * sigmoid(H_SLOPE * o->E + H_OFFSET + H_NOISE * normal(r));
        o->dwell_s = pow(1.0 + it->duration_ms / 1000.0, h) - 1.0;
    } else {
        o->dwell_s = exp(P_MU + P_SLOPE * o->E + P_NOISE * normal(r) +
                         (it->mtype == M_CAROUSEL ? P_CAROUSEL : 0));
    }
    bool fav = w->fav_mark[it->author] != 0;
    memset(o->act, 0, sizeof o->act);
    o->p_like = sigmoid(ACT_ALPHA[A_LIKE] + ACT_BETA[A_LIKE] * o->I + us->t.propensity +
                        ACT_FAV[A_LIKE] * fav);
    o->act[A_HIDE] = unif(r) < sigmoid(ACT_ALPHA[A_HIDE] + ACT_BETA[A_HIDE] * o->E);
    for (int a = A_LIKE; a < A_HIDE; a++) {
        double logit = ACT_ALPHA[a] + ACT_BETA[a] * o->E + us->t.propensity + ACT_FAV[a] * fav;
        if (a == A_PROFILE && surface == S_PROFILE)
            logit += 1.0;
        bool x = unif(r) < sigmoid(logit); /* drawn always: keeps the stream aligned */
        o->act[a] = x && !o->act[A_HIDE];
    }
    if (w->follow_mark[it->author])
        o->act[A_FOLLOW] = false; /* one follow per author */
}

static int draw_surface(const world *w, wrng *r, uint32_t item, bool from_fav)
{
    if (from_fav && unif(r) < 0.5)
        return S_PROFILE;
    int s = (int)draw_cum(r, w->user.surf_cum, N_SURF);
    if (s == S_REELS && w->item[item].mtype != M_VIDEO)
        s = S_FEED; /* reels show videos only */
    return s;
}

/* An item by the exposure mixture mix (VIEW_MIX or LABEL_MIX); all_long
 * selects from every long-term topic rather than the active ones. */
static uint32_t expose(const world *w, wrng *r, const wseg *s, const double *mix, bool all_long,
                       bool *from_fav)
{
    const wuser *us = &w->user;
    double x = unif(r);
    *from_fav = false;
    if (x < mix[0] && s->n_short) {
        double y = unif(r), c = 0;
        size_t j = 0;
        for (; j + 1 < s->n_short; j++)
            if (y < (c += s->short_w[j]))
                break;
        return topic_item(w, r, s->short_topic[j]);
    }
    x -= mix[0];
    if (x < mix[1] && us->t.n_long) {
        uint32_t z = all_long ? us->long_idx[draw_cum(r, us->long_cum, us->t.n_long)]
                              : w->active_idx[draw_cum(r, w->active_cum, w->n_active)];
        return topic_item(w, r, z);
    }
    x -= mix[1];
    if (x < mix[2] && us->t.n_fav) {
        uint32_t a = us->fav_idx[below(r, us->t.n_fav)];
        size_t s0 = w->a_start[a], n = w->a_start[a + 1] - s0;
        *from_fav = true;
        return w->a_items[s0 + below(r, n)];
    }
    return alias_draw(r, w->g_prob, w->g_alias, w->n_items);
}

/* --- events (stream 1) --------------------------------------------------------- */

static dv365_status reserve_events(world *w, size_t need)
{
    if (need <= w->cap)
        return DV365_OK;
    size_t cap = w->cap ? w->cap : 4096;
    while (cap < need)
        cap *= 2;
#define GROW(p)                                                       \
    do {                                                              \
        void *g_ = realloc(p, cap * sizeof *(p));                     \
        if (!g_)                                                      \
            return werr(w, DV365_E_NOMEM, "out of memory (events)"); \
        p = g_;                                                       \
    } while (0)
    GROW(w->ev_time);
    GROW(w->ev_media);
    GROW(w->ev_author);
    GROW(w->ev_topic);
    GROW(w->ev_action);
    GROW(w->ev_mtype);
    GROW(w->ev_surface);
    GROW(w->ev_duration);
    GROW(w->ev_dwell);
    GROW(w->ev_tidx);
    GROW(w->ev_aidx);
    GROW(w->by_t);
    GROW(w->by_a);
    GROW(w->ev_kind);
    size_t cap1 = cap + 1;
    {
        size_t c = cap;
        cap = cap1;
        GROW(w->pre_views);
        GROW(w->pre_likes);
        GROW(w->pre_score);
        GROW(w->pre_scored);
        cap = c;
    }
#undef GROW
    w->cap = cap;
    return DV365_OK;
}

static dv365_status emit(world *w, int64_t t, uint32_t item, int kind, int surface, double dwell_s)
{
    if (w->n == w->cap) {
        dv365_status st = reserve_events(w, w->n + 1);
        if (st != DV365_OK)
            return st;
    }
    const witem *it = &w->item[item];
    size_t i = w->n++;
    w->ev_time[i] = t;
    w->ev_media[i] = it->media_id;
    w->ev_author[i] = w->author_id[it->author];
    w->ev_topic[i] = w->topic_id[it->topic];
    w->ev_tidx[i] = it->topic;
    w->ev_aidx[i] = it->author;
    w->ev_action[i] = w->act_code[kind];
    w->ev_kind[i] = (uint8_t)kind;
    w->ev_mtype[i] = w->mt_code[it->mtype];
    w->ev_surface[i] = w->surf_code[surface];
    w->ev_duration[i] = it->duration_ms;
    w->ev_dwell[i] = (float)(dwell_s * 1000.0);
    return DV365_OK;
}

static void sort_i64(int64_t *a, size_t n)
{
    for (size_t k = 1; k < n; k++)
        for (size_t j = k; j > 0 && a[j] < a[j - 1]; j--) {
            int64_t t = a[j];
            a[j] = a[j - 1];
            a[j - 1] = t;
        }
}

static size_t seg_at(const wuser *us, int64_t t)
{
    size_t lo = 0, hi = us->n_seg - 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (us->seg[mid].end > t)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* The user's expected explicit actions per view, from a pilot sample. */
static double explicit_per_view(world *w, size_t u)
{
    const wuser *us = &w->user;
    wrng r;
    rng_user(&r, w->p.seed, u, 3);
    const int64_t start = w->p.now - w->p.span_days * DAY;
    size_t count = 0;
    for (int k = 0; k < PILOT_VIEWS; k++) {
        const wseg *s = &us->seg[seg_at(us, start + (int64_t)below(&r, (size_t)(w->p.span_days * DAY)))];
        seg_enter(w, s);
        bool from_fav;
        uint32_t item = expose(w, &r, s, VIEW_MIX, false, &from_fav);
        outcome o;
        impress(w, &r, item, draw_surface(w, &r, item, from_fav), &o);
        for (int a = A_LIKE; a < N_ACT; a++)
            count += o.act[a] && w->act_code[a] >= 0;
        seg_leave(w, s);
    }
    return (double)count / PILOT_VIEWS;
}

static dv365_status make_events(world *w, size_t u)
{
    wuser *us = &w->user;
    wrng r;
    rng_user(&r, w->p.seed, u, 1);
    w->n = 0;
    const int64_t start = w->p.now - w->p.span_days * DAY, now = w->p.now;
    const size_t days = (size_t)w->p.span_days;
    dv365_status st = reserve_events(w, (size_t)(1.2 * (double)us->t.events_target) + 64);
    if (st != DV365_OK)
        return st;
    /* day weights: weekly rhythm x Gamma(2)/2 day-to-day variation x a few
     * days away */
    static const double weekly[7] = {1.0, 1.05, 1.2, 1.15, 0.95, 0.9, 0.95}; /* Thu..Wed */
    double *dw = malloc(days * sizeof *dw), W = 0;
    if (!dw)
        return werr(w, DV365_E_NOMEM, "out of memory");
    for (size_t d = 0; d < days; d++) {
        int64_t dn = (start / DAY) + (int64_t)d;
        dw[d] = weekly[dn % 7] * gamma_draw(&r, 2.0) * 0.5 * (unif(&r) < 0.07 ? 0.05 : 1.0);
        W += dw[d];
    }
    double views_target = (double)us->t.events_target / (1.0 + explicit_per_view(w, u));
    size_t cur = 0;
    seg_enter(w, &us->seg[0]);
    int64_t cursor = start;
    int64_t planned[24];
    bool stop = false;
    for (size_t d = 0; d < days && !stop && st == DV365_OK; d++) {
        double x = views_target * dw[d] / W;
        size_t V = (size_t)x + (unif(&r) < x - floor(x));
        if (V == 0)
            continue;
        size_t ns = 1 + poisson(&r, (double)V / 25.0 < 20 ? (double)V / 25.0 : 20);
        if (ns > 24)
            ns = 24;
        int64_t day0 = start + (int64_t)d * DAY;
        for (size_t k = 0; k < ns; k++)
            planned[k] = day0 + (int64_t)(fmod(us->hour0 + 3.5 * normal(&r) + 48.0, 24.0) * 3600);
        sort_i64(planned, ns);
        for (size_t k = 0; k < ns && !stop && st == DV365_OK; k++) {
            size_t nv = (V * (k + 1)) / ns - (V * k) / ns;
            int64_t t = planned[k] > cursor + 60 ? planned[k] : cursor + 60;
            for (size_t v = 0; v < nv; v++) {
                if (t >= now) {
                    stop = true;
                    break;
                }
                while (t >= us->seg[cur].end && cur + 1 < us->n_seg) {
                    seg_leave(w, &us->seg[cur]);
                    seg_enter(w, &us->seg[++cur]);
                }
                bool from_fav;
                uint32_t item = expose(w, &r, &us->seg[cur], VIEW_MIX, false, &from_fav);
                int surface = draw_surface(w, &r, item, from_fav);
                outcome o;
                impress(w, &r, item, surface, &o);
                if ((st = emit(w, t, item, A_VIEW, surface, o.dwell_s)) != DV365_OK)
                    break;
                /* explicit actions during the view, in time order */
                int64_t span = (int64_t)o.dwell_s + 1;
                for (int a = A_LIKE; a < N_ACT && st == DV365_OK; a++)
                    if (o.act[a] && w->act_code[a] >= 0) {
                        int64_t ta = t + 1 + (int64_t)below(&r, (size_t)span);
                        if (ta >= now)
                            continue;
                        st = emit(w, ta, item, a, surface, o.dwell_s);
                        if (a == A_FOLLOW) {
                            uint32_t au = w->item[item].author;
                            w->follow_mark[au] = 1;
                            w->follow_list[w->n_follow++] = au;
                        }
                    }
                /* explicit events of one view were appended in action order:
                 * restore time order among them (at most 7) */
                size_t first = w->n, last = w->n;
                while (first > 0 && w->ev_time[first - 1] >= t && w->ev_kind[first - 1] != A_VIEW)
                    first--;
                for (size_t k2 = first + 1; k2 < last; k2++)
                    for (size_t j = k2; j > first && w->ev_time[j] < w->ev_time[j - 1]; j--) {
#define SWAP(T, arr)            \
    do {                        \
        T tmp_ = arr[j];        \
        arr[j] = arr[j - 1];    \
        arr[j - 1] = tmp_;      \
    } while (0)
                        SWAP(int64_t, w->ev_time);
                        SWAP(int32_t, w->ev_action);
                        SWAP(uint8_t, w->ev_kind);
#undef SWAP
                    }
                t += span + 1 + (int64_t)below(&r, 4);
            }
            cursor = t;
        }
    }
    seg_leave(w, &us->seg[cur]);
    free(dw);
    return st;
}

/* --- labelled impressions (stream 2) ------------------------------------------ */

static size_t events_before(const world *w, int64_t t)
{
    size_t lo = 0, hi = w->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (w->ev_time[mid] < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void build_prefix(world *w)
{
    w->pre_views[0] = w->pre_likes[0] = w->pre_score[0] = w->pre_scored[0] = 0;
    for (size_t i = 0; i < w->n; i++) {
        bool view = w->ev_kind[i] == A_VIEW;
        bool scored = view && w->ev_duration[i] > 0;
        double s = scored ? log1p(w->ev_dwell[i] / 1000.0) / log1p(w->ev_duration[i] / 1000.0) : 0;
        w->pre_views[i + 1] = w->pre_views[i] + view;
        w->pre_likes[i + 1] = w->pre_likes[i] + (w->ev_kind[i] == A_LIKE);
        w->pre_score[i + 1] = w->pre_score[i] + s;
        w->pre_scored[i + 1] = w->pre_scored[i] + scored;
    }
}

static int cmp_example(const void *a, const void *b)
{
    const wexample *x = a, *y = b;
    return (x->t > y->t) - (x->t < y->t);
}

/* Make n examples with label days in [day_from, day_from + n_days). */
static dv365_status make_examples(world *w, wrng *r, size_t n, int64_t day_from, int64_t n_days)
{
    wuser *us = &w->user;
    if (n > w->ex_cap) {
        wexample *g = realloc(w->ex, n * sizeof *g);
        if (!g)
            return werr(w, DV365_E_NOMEM, "out of memory (examples)");
        w->ex = g;
        w->ex_cap = n;
    }
    for (size_t k = 0; k < n; k++) {
        memset(&w->ex[k], 0, sizeof w->ex[k]);
        int64_t day = day_from + (int64_t)below(r, (size_t)n_days) * DAY;
        w->ex[k].t = day + (int64_t)(fmod(us->hour0 + 3.5 * normal(r) + 48.0, 24.0) * 3600);
    }
    qsort(w->ex, n, sizeof *w->ex, cmp_example); /* times may tie: fine, ties keep no order */
    size_t cur = 0;
    while (cur + 1 < us->n_seg && n && w->ex[0].t >= us->seg[cur].end)
        cur++;
    seg_enter(w, &us->seg[cur]);
    for (size_t k = 0; k < n; k++) {
        wexample *e = &w->ex[k];
        while (e->t >= us->seg[cur].end && cur + 1 < us->n_seg) {
            seg_leave(w, &us->seg[cur]);
            seg_enter(w, &us->seg[++cur]);
        }
        bool from_fav;
        e->item = expose(w, r, &us->seg[cur], LABEL_MIX, true, &from_fav);
        e->surface = draw_surface(w, r, e->item, from_fav);
        outcome o;
        impress(w, r, e->item, e->surface, &o);
        const witem *it = &w->item[e->item];
        double dur_s = it->duration_ms / 1000.0;
        for (size_t t = 0; t < w->n_tasks; t++) {
            float v = 0;
            switch (w->task_kind[t]) {
            case T_ACTION: v = o.act[w->task_action[t]]; break;
            case T_COMPLETE: v = it->mtype == M_VIDEO && o.dwell_s >= 0.9 * dur_s; break;
            case T_SKIP: v = o.dwell_s < 3.0; break;
            case T_LONG_VIEW: v = o.dwell_s >= 15.0; break;
            case T_WATCH_TIME: v = (float)o.dwell_s; break;
            }
            e->labels[t] = v;
        }
        /* dense features from the user's history strictly before the label */
        size_t i1 = events_before(w, e->t), i0 = events_before(w, e->t - 30 * DAY);
        double hour = (double)((e->t % DAY + DAY) % DAY) / 3600.0;
        double views = w->pre_views[i1] - w->pre_views[i0];
        double scored = w->pre_scored[i1] - w->pre_scored[i0];
        e->dense[0] = (float)log1p((double)(i1 - i0));
        e->dense[1] = (float)sin(6.283185307179586 * hour / 24.0);
        e->dense[2] = (float)cos(6.283185307179586 * hour / 24.0);
        e->dense[3] = (float)log((double)it->pop * (double)w->n_items);
        e->dense[4] = (float)log1p(dur_s);
        e->dense[5] = it->mtype == M_VIDEO ? 1.0f : 0.0f;
        e->dense[6] = (float)((w->pre_likes[i1] - w->pre_likes[i0]) / (views > 1 ? views : 1));
        e->dense[7] = (float)(scored > 0 ? (w->pre_score[i1] - w->pre_score[i0]) / scored : 0);
        /* ground truth */
        e->long_aff = C_LONG * w->long_hat[it->topic];
        e->short_aff = C_SHORT * w->short_hat[it->topic];
        e->fav = w->fav_mark[it->author] != 0;
        e->long_topic = w->long_hat[it->topic] > 0;
        e->none = !e->long_topic && w->short_hat[it->topic] == 0 && !e->fav;
        e->engagement = o.I;
        e->p_like = o.p_like;
        e->like = o.act[A_LIKE];
    }
    seg_leave(w, &us->seg[cur]);
    return DV365_OK;
}

/* CSR of the user's events by topic and by author. */
static void build_by(world *w)
{
    size_t T = w->n_topics, A = w->n_authors;
    memset(w->by_t_start, 0, (T + 1) * sizeof *w->by_t_start);
    memset(w->by_a_start, 0, (A + 1) * sizeof *w->by_a_start);
    for (size_t i = 0; i < w->n; i++) {
        w->by_t_start[w->ev_tidx[i] + 1]++;
        w->by_a_start[w->ev_aidx[i] + 1]++;
    }
    for (size_t z = 0; z < T; z++)
        w->by_t_start[z + 1] += w->by_t_start[z];
    for (size_t a = 0; a < A; a++)
        w->by_a_start[a + 1] += w->by_a_start[a];
    /* fill in event order (ascending); the starts are shifted back after */
    for (size_t i = 0; i < w->n; i++) {
        w->by_t[w->by_t_start[w->ev_tidx[i]]++] = (uint32_t)i;
        w->by_a[w->by_a_start[w->ev_aidx[i]]++] = (uint32_t)i;
    }
    for (size_t z = T; z > 0; z--)
        w->by_t_start[z] = w->by_t_start[z - 1];
    w->by_t_start[0] = 0;
    for (size_t a = A; a > 0; a--)
        w->by_a_start[a] = w->by_a_start[a - 1];
    w->by_a_start[0] = 0;
}

/* Events with index in [lo, hi) among the sorted list l[0..n). */
static size_t count_range(const uint32_t *l, size_t n, size_t lo, size_t hi)
{
    size_t a = 0, b = n;
    while (a < b) {
        size_t m = (a + b) / 2;
        if (l[m] < lo)
            a = m + 1;
        else
            b = m;
    }
    size_t c = a;
    b = n;
    while (c < b) {
        size_t m = (c + b) / 2;
        if (l[m] < hi)
            c = m + 1;
        else
            b = m;
    }
    return c - a;
}

/* Share of the events in [lo, hi) on the candidate's topic plus share on
 * its author: what a model could read off a history window. */
static float history_score(const world *w, uint32_t item, size_t lo, size_t hi)
{
    if (hi <= lo)
        return 0;
    uint32_t z = w->item[item].topic, a = w->item[item].author;
    size_t nt = count_range(w->by_t + w->by_t_start[z], w->by_t_start[z + 1] - w->by_t_start[z],
                            lo, hi);
    size_t na = count_range(w->by_a + w->by_a_start[a], w->by_a_start[a + 1] - w->by_a_start[a],
                            lo, hi);
    return (float)((double)(nt + na) / (double)(hi - lo));
}

static dv365_status add_diag(world *w, size_t S)
{
    size_t n = w->diag_n;
    for (size_t k = 0; k < w->ex_n; k++) {
        if (n == w->diag_cap) {
            size_t cap = w->diag_cap ? 2 * w->diag_cap : 4096;
            float *a = realloc(w->diag_recent, cap * sizeof *a);
            if (a) w->diag_recent = a;
            float *b = realloc(w->diag_full, cap * sizeof *b);
            if (b) w->diag_full = b;
            float *c = realloc(w->diag_truth, cap * sizeof *c);
            if (c) w->diag_truth = c;
            uint8_t *d = realloc(w->diag_like, cap);
            if (d) w->diag_like = d;
            if (!a || !b || !c || !d)
                return werr(w, DV365_E_NOMEM, "out of memory (diagnostics)");
            w->diag_cap = cap;
        }
        const wexample *e = &w->ex[k];
        size_t hi = events_before(w, e->t), lo = hi > S ? hi - S : 0;
        w->diag_recent[n] = history_score(w, e->item, lo, hi);
        w->diag_full[n] = history_score(w, e->item, 0, hi);
        w->diag_truth[n] = (float)e->engagement;
        w->diag_like[n] = e->like;
        n++;
    }
    w->diag_n = n;
    return DV365_OK;
}

static const float *g_auc_score;
static int cmp_by_score(const void *a, const void *b)
{
    float x = g_auc_score[*(const uint32_t *)a], y = g_auc_score[*(const uint32_t *)b];
    return (x > y) - (x < y);
}

/* ROC AUC of score for the 0/1 labels (ties count one half). */
static double auc(const float *score, const uint8_t *label, size_t n, uint32_t *idx)
{
    for (size_t i = 0; i < n; i++)
        idx[i] = (uint32_t)i;
    g_auc_score = score;
    qsort(idx, n, sizeof *idx, cmp_by_score);
    double pos = 0, rank_sum = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && score[idx[j]] == score[idx[i]])
            j++;
        double mid = 0.5 * (double)(i + 1 + j); /* average 1-based rank of the tie group */
        for (size_t k = i; k < j; k++)
            if (label[idx[k]]) {
                pos++;
                rank_sum += mid;
            }
        i = j;
    }
    double neg = (double)n - pos;
    return pos > 0 && neg > 0 ? (rank_sum - pos * (pos + 1) / 2) / (pos * neg) : 0.5;
}

/* dormant: the candidate's topic is a long-term one that the last S events
 * before the label do not show.  Sweeps the events once (examples sorted). */
static void mark_dormant(world *w, size_t n, size_t S)
{
    for (size_t z = 0; z < w->n_topics; z++)
        w->last_seen[z] = SIZE_MAX;
    size_t e = 0;
    for (size_t k = 0; k < n; k++) {
        wexample *x = &w->ex[k];
        while (e < w->n && w->ev_time[e] < x->t) {
            w->last_seen[w->ev_tidx[e]] = e;
            e++;
        }
        size_t ls = w->last_seen[w->item[x->item].topic];
        x->dormant = x->long_topic && (ls == SIZE_MAX || e - ls > S);
    }
}

/* Long-term interest mass whose topics are absent from the last S events
 * before t (and from all events before t). */
static void unseen_mass(world *w, int64_t t, size_t S, double *recent, double *all)
{
    const wuser *us = &w->user;
    size_t e = events_before(w, t), from = e > S ? e - S : 0;
    *recent = *all = 0;
    for (size_t k = 0; k < us->t.n_long; k++) {
        uint32_t z = us->long_idx[k];
        bool seen_recent = false, seen = false;
        for (size_t i = e; i-- > 0;)
            if (w->ev_tidx[i] == z) {
                seen = true;
                seen_recent = i >= from;
                break;
            }
        if (!seen_recent)
            *recent += us->t.long_weight[k];
        if (!seen)
            *all += us->t.long_weight[k];
    }
}

/* --- files ------------------------------------------------------------------------ */

/* A text file written atomically: temp name, then fsync + rename on close. */
typedef struct afile {
    FILE *f;
    char path[1024], tmp[1100];
} afile;

static dv365_status afile_open(world *w, afile *a, const char *dir, const char *name)
{
    snprintf(a->path, sizeof a->path, "%s/%s", dir, name);
    snprintf(a->tmp, sizeof a->tmp, "%s.tmp.%ld", a->path, (long)getpid());
    a->f = fopen(a->tmp, "wb");
    if (!a->f)
        return werr(w, DV365_E_IO, "cannot create '%s': %s", a->tmp, strerror(errno));
    return DV365_OK;
}

static dv365_status afile_close(world *w, afile *a)
{
    if (!a->f)
        return DV365_OK;
    int bad = ferror(a->f) || fflush(a->f) != 0 || fsync(fileno(a->f)) != 0;
    bad |= fclose(a->f) != 0;
    a->f = NULL;
    if (bad || rename(a->tmp, a->path) != 0) {
        int e = errno;
        unlink(a->tmp);
        return werr(w, DV365_E_IO, "cannot write '%s': %s", a->path, strerror(e));
    }
    return DV365_OK;
}

static void afile_abandon(afile *a)
{
    if (a->f) {
        fclose(a->f);
        a->f = NULL;
        unlink(a->tmp);
    }
}

static dv365_status make_dir(world *w, const char *dir)
{
    char buf[1024];
    if (strlen(dir) >= sizeof buf)
        return werr(w, DV365_E_INVALID, "output path too long");
    strcpy(buf, dir);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return werr(w, DV365_E_IO, "cannot create directory '%s': %s", buf,
                            strerror(errno));
            *p = c;
            if (!c)
                break;
        }
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return werr(w, DV365_E_IO, "'%s' is not a directory", dir);
    return DV365_OK;
}

static void write_catalog(world *w, FILE *f)
{
    fprintf(f, "media_id,author_id,topic_id,tag,media_type,duration_ms,popularity,quality,"
               "kuairand_video_id\n");
    for (size_t j = 0; j < w->n_items; j++) {
        const witem *it = &w->item[j];
        fprintf(f, "%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%u,%s,%.0f,%.6g,%.4f,%u\n", it->media_id,
                w->author_id[it->author], w->topic_id[it->topic], w->topic_tag[it->topic],
                MTYPE_NAMES[it->mtype], (double)it->duration_ms, (double)it->pop * (double)w->n_items,
                (double)it->quality, it->template_row);
    }
}

static void write_user_truth(world *w, FILE *fu, FILE *fs, size_t n_events, size_t n_explicit)
{
    const wuser *us = &w->user;
    const world_user_truth *t = &us->t;
    fprintf(fu, "%" PRIu64 ",%zu,%zu,%.4f,%.4f,%.4f,", t->user_id, n_events, n_explicit,
            t->activity, t->bias, t->propensity);
    for (size_t k = 0; k < t->n_long; k++)
        fprintf(fu, "%s%" PRIu64, k ? ";" : "", t->long_topic[k]);
    fputc(',', fu);
    for (size_t k = 0; k < t->n_long; k++)
        fprintf(fu, "%s%.4f", k ? ";" : "", t->long_weight[k]);
    fputc(',', fu);
    for (size_t k = 0; k < t->n_fav; k++)
        fprintf(fu, "%s%" PRIu64, k ? ";" : "", t->fav_author[k]);
    fputc('\n', fu);
    for (size_t s = 0; s < us->n_seg; s++) {
        const wseg *g = &us->seg[s];
        int64_t end = g->end == INT64_MAX ? w->p.now : g->end;
        fprintf(fs, "%" PRIu64 ",%zu,%" PRId64 ",%" PRId64 ",", t->user_id, s, g->start, end);
        for (size_t j = 0; j < g->n_short; j++)
            fprintf(fs, "%s%" PRIu64, j ? ";" : "", w->topic_id[g->short_topic[j]]);
        fputc(',', fs);
        for (size_t j = 0; j < g->n_short; j++)
            fprintf(fs, "%s%.4f", j ? ";" : "", g->short_w[j]);
        fputc(',', fs);
        bool first = true;
        for (size_t k = 0; k < t->n_long; k++)
            if (g->active >> k & 1) {
                fprintf(fs, "%s%" PRIu64, first ? "" : ";", t->long_topic[k]);
                first = false;
            }
        fputc('\n', fs);
    }
}

static const char *TRUTH_EX_HEADER =
    "user_id,label_time,media_id,topic_id,long_affinity,short_affinity,fav_author,"
    "long_topic,dormant,engagement,p_like\n";

static size_t short_history(const world *w)
{
    double s = 1500.0 * (double)w->p.events_mean / 40000.0;
    return s < 50 ? 50 : (size_t)llround(s);
}

/* The tool and tests share this: per-split accumulators for the summary. */
typedef struct label_acc {
    double sum[WORLD_MAX_TASKS];
    size_t n;
} label_acc;

dv365_status world_write(world *w, const char *dir, world_progress_fn progress, void *ctx,
                         world_stats *stats_out, char *err, size_t err_len)
{
    if (!w || !dir) {
        copy_err(err, err_len, "world_write: NULL argument");
        return DV365_E_NULL;
    }
    world_stats S;
    memset(&S, 0, sizeof S);
    S.n_users = w->p.n_users;
    S.n_items = w->n_items;
    S.n_authors = w->n_authors;
    S.n_topics = w->n_topics;
    S.n_tasks = w->n_tasks;
    S.events_min = SIZE_MAX;
    w->diag_n = 0;
    S.short_history = short_history(w);
    const size_t SH = S.short_history;
    const int64_t embed = world_embed_time(w);
    const int64_t train_from = embed - w->p.train_days * DAY;
    label_acc acc[2];
    memset(acc, 0, sizeof acc);
    double like_dormant = 0, like_none = 0, like_short = 0;

    dv365_timeline *tl = NULL;
    dv365_timeline_writer *tw = NULL;
    dv365_example_writer *xw[3] = {NULL, NULL, NULL};
    afile fcat = {0}, fusers = {0}, fstates = {0}, ftruth[2] = {{0}, {0}}, fsum = {0};
    char path[1100];
    dv365_status st = make_dir(w, dir);
#define LIB(call)                                                                   \
    do {                                                                            \
        if (st == DV365_OK && (st = (call)) != DV365_OK)                            \
            werr(w, st, "%s", dv365_last_error());                                 \
    } while (0)
    LIB(dv365_timeline_create(w->cfg, &tl));
    if (st == DV365_OK)
        snprintf(path, sizeof path, "%s/timelines.dvt", dir);
    LIB(dv365_timeline_writer_open(path, w->cfg, &tw));
    if (st == DV365_OK)
        snprintf(path, sizeof path, "%s/train.dve", dir);
    LIB(dv365_example_writer_open(path, WORLD_N_DENSE, w->n_tasks, &xw[0]));
    if (st == DV365_OK)
        snprintf(path, sizeof path, "%s/eval.dve", dir);
    LIB(dv365_example_writer_open(path, WORLD_N_DENSE, w->n_tasks, &xw[1]));
    if (st == DV365_OK && w->p.pretrain_per_user) {
        snprintf(path, sizeof path, "%s/pretrain.dve", dir);
        LIB(dv365_example_writer_open(path, WORLD_N_DENSE, w->n_tasks, &xw[2]));
    }
    if (st == DV365_OK)
        st = afile_open(w, &fcat, dir, "catalog.csv");
    if (st == DV365_OK)
        st = afile_open(w, &fusers, dir, "truth_users.csv");
    if (st == DV365_OK)
        st = afile_open(w, &fstates, dir, "truth_states.csv");
    if (st == DV365_OK)
        st = afile_open(w, &ftruth[0], dir, "truth_train.csv");
    if (st == DV365_OK)
        st = afile_open(w, &ftruth[1], dir, "truth_eval.csv");
    if (st == DV365_OK) {
        write_catalog(w, fcat.f);
        fputs("user_id,events,explicit,activity,bias,propensity,long_topics,long_weights,"
              "fav_authors\n",
              fusers.f);
        fputs("user_id,state,start,end,short_topics,short_weights,active_long_topics\n",
              fstates.f);
        fputs(TRUTH_EX_HEADER, ftruth[0].f);
        fputs(TRUTH_EX_HEADER, ftruth[1].f);
    }
    for (size_t u = 0; u < w->p.n_users && st == DV365_OK; u++) {
        if ((st = make_profile(w, u, &w->user)) != DV365_OK)
            break;
        user_enter(w);
        st = make_events(w, u);
        if (st == DV365_OK) {
            build_prefix(w);
            build_by(w);
            dv365_timeline_clear(tl);
            LIB(dv365_timeline_append(tl, w->n, w->ev_time, w->ev_media, w->ev_author,
                                      w->ev_topic, w->ev_action, w->ev_mtype, w->ev_surface,
                                      w->ev_duration, w->ev_dwell));
            LIB(dv365_timeline_writer_add(tw, w->user.t.user_id, tl));
        }
        size_t n_expl = 0;
        for (size_t i = 0; i < w->n; i++) {
            S.action_count[w->ev_action[i] & 31]++;
            n_expl += w->ev_kind[i] != A_VIEW;
        }
        S.events += w->n;
        S.explicit_events += n_expl;
        S.events_min = w->n < S.events_min ? w->n : S.events_min;
        S.events_max = w->n > S.events_max ? w->n : S.events_max;
        double rec, all;
        unseen_mass(w, embed, SH, &rec, &all);
        S.long_mass_unseen_recent += rec;
        S.long_mass_unseen_all += all;
        if (st == DV365_OK)
            write_user_truth(w, fusers.f, fstates.f, w->n, n_expl);
        /* the two splits, from one stream so that the split sizes do not
         * change each other's draws more than necessary */
        wrng r;
        rng_user(&r, w->p.seed, u, 2);
        for (int split = 0; split < 2 && st == DV365_OK; split++) {
            size_t n = split ? w->p.eval_per_user : w->p.train_per_user;
            int64_t from = split ? embed : train_from;
            int64_t ndays = split ? w->p.eval_days : w->p.train_days;
            if ((st = make_examples(w, &r, n, from, ndays)) != DV365_OK)
                break;
            mark_dormant(w, n, SH);
            w->ex_n = n;
            if ((st = add_diag(w, SH)) != DV365_OK)
                break;
            for (size_t k = 0; k < n && st == DV365_OK; k++) {
                const wexample *e = &w->ex[k];
                const witem *it = &w->item[e->item];
                LIB(dv365_example_writer_add(xw[split], w->user.t.user_id, e->t, it->media_id,
                                             w->author_id[it->author], w->topic_id[it->topic],
                                             e->dense, e->labels));
                fprintf(ftruth[split].f,
                        "%" PRIu64 ",%" PRId64 ",%" PRIu64 ",%" PRIu64 ",%.4f,%.4f,%d,%d,%d,%.4f,"
                        "%.5f\n",
                        w->user.t.user_id, e->t, it->media_id, w->topic_id[it->topic], e->long_aff,
                        e->short_aff, e->fav, e->long_topic, e->dormant, e->engagement, e->p_like);
                for (size_t t = 0; t < w->n_tasks; t++)
                    acc[split].sum[t] += e->labels[t];
                acc[split].n++;
                if (e->dormant) {
                    S.n_dormant++;
                    like_dormant += e->like;
                }
                if (e->none) {
                    S.n_none++;
                    like_none += e->like;
                }
                if (e->short_aff > 0) {
                    S.n_short++;
                    like_short += e->like;
                }
            }
        }
        /* DV365's own examples: the train window again, from a stream of their
         * own, so that train.dve and eval.dve do not depend on their number */
        if (st == DV365_OK && w->p.pretrain_per_user) {
            rng_user(&r, w->p.seed, u, 3);
            st = make_examples(w, &r, w->p.pretrain_per_user, train_from, w->p.train_days);
            for (size_t k = 0; k < w->p.pretrain_per_user && st == DV365_OK; k++) {
                const wexample *e = &w->ex[k];
                const witem *it = &w->item[e->item];
                LIB(dv365_example_writer_add(xw[2], w->user.t.user_id, e->t, it->media_id,
                                             w->author_id[it->author], w->topic_id[it->topic],
                                             e->dense, e->labels));
            }
            S.n_pretrain += w->p.pretrain_per_user;
        }
        user_leave(w);
        if (progress && st == DV365_OK)
            progress(ctx, u + 1, w->p.n_users);
    }
    LIB(dv365_timeline_writer_close(tw));
    LIB(dv365_example_writer_close(xw[0]));
    LIB(dv365_example_writer_close(xw[1]));
    if (xw[2])
        LIB(dv365_example_writer_close(xw[2]));
    if (st == DV365_OK)
        st = afile_close(w, &fcat);
    if (st == DV365_OK)
        st = afile_close(w, &fusers);
    if (st == DV365_OK)
        st = afile_close(w, &fstates);
    if (st == DV365_OK)
        st = afile_close(w, &ftruth[0]);
    if (st == DV365_OK)
        st = afile_close(w, &ftruth[1]);
#undef LIB
    if (st == DV365_OK) {
        S.n_train = acc[0].n;
        S.n_eval = acc[1].n;
        for (size_t t = 0; t < w->n_tasks; t++) {
            S.train_label_mean[t] = acc[0].n ? acc[0].sum[t] / (double)acc[0].n : 0;
            S.eval_label_mean[t] = acc[1].n ? acc[1].sum[t] / (double)acc[1].n : 0;
        }
        S.long_mass_unseen_recent /= (double)w->p.n_users;
        S.long_mass_unseen_all /= (double)w->p.n_users;
        S.like_rate_dormant = S.n_dormant ? like_dormant / (double)S.n_dormant : 0;
        S.like_rate_none = S.n_none ? like_none / (double)S.n_none : 0;
        S.like_rate_short = S.n_short ? like_short / (double)S.n_short : 0;
        uint32_t *idx = malloc((w->diag_n ? w->diag_n : 1) * sizeof *idx);
        if (!idx)
            st = werr(w, DV365_E_NOMEM, "out of memory");
        else {
            S.auc_like_recent = auc(w->diag_recent, w->diag_like, w->diag_n, idx);
            S.auc_like_full = auc(w->diag_full, w->diag_like, w->diag_n, idx);
            S.auc_like_truth = auc(w->diag_truth, w->diag_like, w->diag_n, idx);
            free(idx);
        }
    }
    if (st == DV365_OK) {
        static char text[8192];
        world_summary(w, &S, text, sizeof text);
        st = afile_open(w, &fsum, dir, "world.txt");
        if (st == DV365_OK) {
            fputs(text, fsum.f);
            st = afile_close(w, &fsum);
        }
    }
    afile_abandon(&fcat);
    afile_abandon(&fusers);
    afile_abandon(&fstates);
    afile_abandon(&ftruth[0]);
    afile_abandon(&ftruth[1]);
    afile_abandon(&fsum);
    dv365_timeline_writer_free(tw);
    dv365_example_writer_free(xw[0]);
    dv365_example_writer_free(xw[1]);
    dv365_example_writer_free(xw[2]);
    dv365_timeline_free(tl);
    if (st != DV365_OK) {
        copy_err(err, err_len, w->err);
        return st;
    }
    if (stats_out)
        *stats_out = S;
    return DV365_OK;
}

/* --- summary ---------------------------------------------------------------------- */

#define PUT(...)                                                        \
    do {                                                                \
        if (used < len) {                                               \
            int k_ = snprintf(buf + used, len - used, __VA_ARGS__);     \
            used += k_ > 0 ? (size_t)k_ : 0;                            \
        }                                                               \
    } while (0)

static void fmt_time(int64_t t, char *out, size_t n)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void world_summary(const world *w, const world_stats *s, char *buf, size_t len)
{
    size_t used = 0;
    if (!buf || !len)
        return;
    buf[0] = '\0';
    if (!w || !s)
        return;
    const world_params *p = &w->p;
    int64_t embed = world_embed_time(w), train_from = embed - p->train_days * DAY;
    char t0[32], t1[32], t2[32], t3[32];
    fmt_time(p->now - p->span_days * DAY, t0, sizeof t0);
    fmt_time(train_from, t1, sizeof t1);
    fmt_time(embed, t2, sizeof t2);
    fmt_time(p->now, t3, sizeof t3);
    PUT("# dv365 synthetic world (model and files: docs/world.md)\n");
    PUT("seed: %" PRIu64 "\n", p->seed);
    PUT("users: %zu\n", s->n_users);
    PUT("events: %zu\n", s->events);
    PUT("events_per_user: mean %.0f, min %zu, max %zu (target mean %zu)\n",
        s->n_users ? (double)s->events / (double)s->n_users : 0.0, s->events_min, s->events_max,
        p->events_mean);
    PUT("explicit_share: %.4f\n", s->events ? (double)s->explicit_events / (double)s->events : 0);
    PUT("actions:");
    for (size_t a = 0; a < dv365_config_vocab_size(w->cfg, DV365_VOCAB_ACTION) && a < 32; a++)
        PUT(" %s %.4f", dv365_config_code_name(w->cfg, DV365_VOCAB_ACTION, (int32_t)a),
            s->events ? (double)s->action_count[a] / (double)s->events : 0);
    PUT("\n");
    PUT("items: %zu (%zu real KuaiRand-Pure videos of %zu, the rest template copies)\n",
        s->n_items, w->n_real, w->n_real_rows);
    PUT("authors: %zu\n", s->n_authors);
    PUT("topics: %zu (topic = tag * %zu + niche of the author)\n", s->n_topics, p->niches);
    PUT("start: %" PRId64 " (%s)\n", p->now - p->span_days * DAY, t0);
    PUT("train_from: %" PRId64 " (%s)\n", train_from, t1);
    PUT("embed_time: %" PRId64 " (%s)\n", embed, t2);
    PUT("now: %" PRId64 " (%s)\n", p->now, t3);
    PUT("train_examples: %zu (label times in [train_from, embed_time))\n", s->n_train);
    PUT("pretrain_examples: %zu (pretrain.dve, DV365's own: the same window, other draws)\n",
        s->n_pretrain);
    PUT("eval_examples: %zu (label times in [embed_time, now))\n", s->n_eval);
    PUT("n_dense: %d\n", WORLD_N_DENSE);
    PUT("tasks:");
    for (size_t t = 0; t < w->n_tasks; t++)
        PUT(" %s", w->task_name[t]);
    PUT("\ntrain_label_means:");
    for (size_t t = 0; t < w->n_tasks; t++)
        PUT(" %.4f", s->train_label_mean[t]);
    PUT("\neval_label_means:");
    for (size_t t = 0; t < w->n_tasks; t++)
        PUT(" %.4f", s->eval_label_mean[t]);
    PUT("\nshort_history: %zu (events a recent-history model sees: 1500 x mean / 40000)\n",
        s->short_history);
    PUT("long_mass_unseen_recent: %.4f (long-term interest mass absent from the last "
        "short_history events at embed_time)\n",
        s->long_mass_unseen_recent);
    PUT("long_mass_unseen_all: %.4f (... absent from the whole history)\n",
        s->long_mass_unseen_all);
    PUT("like_rate_dormant_long_topic: %.4f (%zu candidates)\n", s->like_rate_dormant,
        s->n_dormant);
    PUT("like_rate_short_term_topic: %.4f (%zu candidates)\n", s->like_rate_short, s->n_short);
    PUT("like_rate_no_interest: %.4f (%zu candidates)\n", s->like_rate_none, s->n_none);
    PUT("like_auc_recent_history: %.4f (candidate's topic + author share of the last "
        "short_history events)\n",
        s->auc_like_recent);
    PUT("like_auc_full_history: %.4f (... of all events before the label)\n", s->auc_like_full);
    PUT("like_auc_true_interest: %.4f (the model's noise-free interest I)\n", s->auc_like_truth);
}
#undef PUT
