/* test_pool.c — slicing and pooling against a brute-force double-precision
 * reference, backward against the naive transpose and finite differences,
 * table init, the id hash, edge cases and bad arguments. */
#include "testutil.h"

#include "pool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Every criterion, weight and window kind, with tables shared between
 * definitions and between id fields; D = 19 exercises the 16-wide kernels
 * and their tails. */
static const char *yaml =
    "version: 1\n"
    "dim: 19\n"
    "watch_score_gamma: 0.5\n"
    "pooling: {init_std: 0.5}\n"
    "vocab:\n"
    "  actions: [{name: view, explicit: false}, {name: like, explicit: true},\n"
    "            {name: skip, explicit: false}, {name: share, explicit: true}]\n"
    "  media_types: [video, photo, carousel]\n"
    "  surfaces: [feed, reels, explore]\n"
    "tables:\n"
    "  - {name: media, rows: 257}\n"
    "  - {name: author, rows: 61}\n"
    "  - {name: topic, rows: 17}\n"
    "  - {name: neg_media, rows: 101}\n"
    "slices:\n"
    "  - {name: liked, timeline: explicit, actions: [like], pool: {media: media, author: author},\n"
    "     windows: [all, 7d, 3d, {from: 30d, to: 7d}]}\n"
    "  - {name: explicit_any, timeline: explicit, pool: {media: media}, windows: [all, 1d]}\n"
    "  - {name: mid, timeline: implicit, dwell_ms: {min: 3000, max: 15000}, weight: watch_score,\n"
    "     pool: {topic: topic, author: author}, windows: [all, 1d]}\n"
    "  - {name: photo_reels, media_types: [photo, carousel], surfaces: [reels, explore],\n"
    "     weight: dwell, pool: {media: media}, windows: [all, 12h]}\n"
    "  - {name: ratio, watch_ratio: {min: 0.5}, weight: watch_ratio,\n"
    "     pool: {media: neg_media, topic: topic}, windows: [all]}\n"
    "  - {name: score, watch_score: {min: 0.4, max: 1.2}, weight: log_dwell, pool: {media: media},\n"
    "     windows: [3d, {from: 60d, to: 3d}]}\n"
    "  - {name: skips, timeline: implicit, actions: [skip, like], pool: {media: neg_media},\n"
    "     windows: [7d]}\n"
    "  - {name: scored, weight: watch_score, pool: {author: author}, windows: [all]}\n"
    "  - {name: long, dwell_ms: {min: 20000}, pool: {topic: topic}, windows: [{from: 365d, to: 30d}]}\n"
    /* a table shared by two id fields: rows of both meet in one group */
    "  - {name: cross, timeline: implicit, pool: {topic: author}, windows: [all, 7d]}\n"
    "encoder: {heads: 1}\n";

#define DAY INT64_C(86400)
static const int64_t CUTOFF = INT64_C(1717200000);

typedef struct fixture {
    dv365_config *cfg;
    dv365_pooler *pooler;
    dv365_workspace *ws;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (dv365_config_parse(yaml, strlen(yaml), &f->cfg) != DV365_OK ||
        dv365_pooler_create(f->cfg, 42, &f->pooler) != DV365_OK ||
        dv365_workspace_create(&f->ws) != DV365_OK) {
        print_error("setup: %s\n", dv365_last_error());
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    dv365_workspace_free(f->ws);
    dv365_pooler_free(f->pooler);
    dv365_config_free(f->cfg);
    free(f);
    return 0;
}

/* ------------------------------------------------------------ events */

typedef struct events {
    size_t n;
    int64_t *time;
    uint64_t *id[3];
    int32_t *action, *media_type, *surface;
    float *duration, *dwell;
} events;

static uint64_t rng_state = 7;
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}
static double unif(void) { return (double)(rnd() >> 11) * 0x1.0p-53; }

/* Random events around the cutoff, with many exact boundary values: window
 * edges, the cutoff itself, zero durations, range edges of dwell. */
static events events_make(size_t n, int64_t history)
{
    static const int64_t edges[] = {0, 12 * 3600, DAY, 3 * DAY, 7 * DAY, 30 * DAY, 60 * DAY, 365 * DAY};
    events e = {.n = n};
    e.time = calloc(n + 1, sizeof *e.time);
    for (int f = 0; f < 3; f++)
        e.id[f] = calloc(n + 1, sizeof *e.id[f]);
    e.action = calloc(n + 1, sizeof *e.action);
    e.media_type = calloc(n + 1, sizeof *e.media_type);
    e.surface = calloc(n + 1, sizeof *e.surface);
    e.duration = calloc(n + 1, sizeof *e.duration);
    e.dwell = calloc(n + 1, sizeof *e.dwell);
    for (size_t i = 0; i < n; i++) {
        uint64_t r = rnd() % 100;
        if (r < 10) /* exactly on a window edge */
            e.time[i] = CUTOFF - edges[rnd() % 8];
        else if (r < 15) /* at or after the cutoff */
            e.time[i] = CUTOFF + (int64_t)(rnd() % 1000);
        else if (r < 40) /* recent */
            e.time[i] = CUTOFF - 1 - (int64_t)(rnd() % (uint64_t)(8 * DAY));
        else
            e.time[i] = CUTOFF - 1 - (int64_t)(rnd() % (uint64_t)history);
        if (e.time[i] < 0)
            e.time[i] = 0;
        e.id[0][i] = rnd() % 5000; /* collisions in the 257-row table */
        e.id[1][i] = rnd() % 300;
        e.id[2][i] = rnd() % 40;
        e.action[i] = (int32_t)(rnd() % 4);
        e.media_type[i] = (int32_t)(rnd() % 3);
        e.surface[i] = (int32_t)(rnd() % 3);
        e.duration[i] = rnd() % 8 == 0 ? 0.0f : (float)(1000 + rnd() % 60000);
        r = rnd() % 20;
        e.dwell[i] = r == 0 ? 0.0f : r == 1 ? 3000.0f : r == 2 ? 15000.0f : r == 3 ? 20000.0f
                                                                         : (float)(unif() * 90000);
    }
    return e;
}

static void events_free(events *e)
{
    free(e->time);
    for (int f = 0; f < 3; f++)
        free(e->id[f]);
    free(e->action);
    free(e->media_type);
    free(e->surface);
    free(e->duration);
    free(e->dwell);
}

static dv365_timeline *timeline_of(const dv365_config *cfg, const events *e, size_t from, size_t to)
{
    dv365_timeline *tl = NULL;
    ASSERT_OK(dv365_timeline_create(cfg, &tl));
    ASSERT_OK(dv365_timeline_append(tl, to - from, e->time + from, e->id[0] + from, e->id[1] + from,
                                    e->id[2] + from, e->action + from, e->media_type + from,
                                    e->surface + from, e->duration + from, e->dwell + from));
    return tl;
}

/* ------------------------------------------------------------ reference */

static bool ref_in(bool has_min, double min, bool has_max, double max, double v)
{
    return (!has_min || v >= min) && (!has_max || v < max);
}

/* Does slice s take event i, and with which weight?  Written from the rules
 * in docs/timeline.md, directly on the caller's arrays. */
static bool ref_takes(const dv365_config *cfg, const events *e, size_t i, size_t s, int64_t cutoff,
                      double *weight)
{
    const dv_slice *sl = &cfg->slices[s];
    const dv_slice_def *d = &cfg->defs[sl->def];
    const dv_window *win = &cfg->windows[sl->window];
    int64_t t = e->time[i];
    if (t >= cutoff)
        return false;
    if (win->from_s != INT64_MAX && t < cutoff - win->from_s)
        return false;
    if (t >= cutoff - win->to_s)
        return false;
    bool expl = cfg->action_explicit[e->action[i]];
    if ((d->kind == DV_KIND_EXPLICIT && !expl) || (d->kind == DV_KIND_IMPLICIT && expl))
        return false;
    if ((d->action_ok && !d->action_ok[e->action[i]]) ||
        (d->media_type_ok && !d->media_type_ok[e->media_type[i]]) ||
        (d->surface_ok && !d->surface_ok[e->surface[i]]))
        return false;
    double dwell = e->dwell[i], dur = e->duration[i];
    double ratio = dur > 0 ? dwell / dur : 0;
    double score = dur > 0 ? log(1 + dwell / 1000) / log(1 + cfg->gamma * dur / 1000) : 0;
    if (!ref_in(d->dwell_ms.has_min, d->dwell_ms.min, d->dwell_ms.has_max, d->dwell_ms.max, dwell) ||
        !ref_in(d->watch_ratio.has_min, d->watch_ratio.min, d->watch_ratio.has_max,
                d->watch_ratio.max, ratio) ||
        !ref_in(d->watch_score.has_min, d->watch_score.min, d->watch_score.has_max,
                d->watch_score.max, score))
        return false;
    switch (d->weight) {
    case DV_WEIGHT_NONE: *weight = 1; break;
    case DV_WEIGHT_WATCH_SCORE: *weight = score; break;
    case DV_WEIGHT_WATCH_RATIO: *weight = ratio; break;
    case DV_WEIGHT_DWELL: *weight = dwell / 1000; break;
    case DV_WEIGHT_LOG_DWELL: *weight = log(1 + dwell / 1000); break;
    }
    return true;
}

static const float *table_row(const fixture *f, size_t table, uint64_t id, size_t *row)
{
    float *data;
    size_t rows;
    ASSERT_OK(dv365_pooler_table(f->pooler, table, &data, &rows));
    *row = dv365_hash_row(id, rows);
    return data + *row * f->cfg->dim;
}

/* Brute-force pooling in double: X [N x D], counts, weight sums. */
static void ref_forward(const fixture *f, const events *e, int64_t cutoff, double *X,
                        uint32_t *counts, double *wsum)
{
    const dv365_config *cfg = f->cfg;
    size_t N = cfg->n_slices, D = cfg->dim;
    memset(X, 0, N * D * sizeof *X);
    for (size_t s = 0; s < N; s++) {
        counts[s] = 0;
        wsum[s] = 0;
        for (size_t i = 0; i < e->n; i++) {
            double w;
            if (!ref_takes(cfg, e, i, s, cutoff, &w))
                continue;
            size_t row;
            const float *r = table_row(f, cfg->slices[s].table, e->id[cfg->slices[s].field][i], &row);
            counts[s]++;
            wsum[s] += w;
            for (size_t j = 0; j < D; j++)
                X[s * D + j] += w * r[j];
        }
        for (size_t j = 0; j < D; j++)
            X[s * D + j] = wsum[s] > 0 ? X[s * D + j] / wsum[s] : 0;
    }
}

/* Pool with the library and compare with the reference. */
static void check_forward(const fixture *f, const events *e, const dv365_timeline *tl,
                          int64_t cutoff)
{
    size_t N = f->cfg->n_slices, D = f->cfg->dim;
    float *X = malloc(N * D * sizeof *X), *ws = malloc(N * sizeof *ws);
    uint32_t *counts = malloc(N * sizeof *counts), *rc = malloc(N * sizeof *rc);
    double *rX = malloc(N * D * sizeof *rX), *rw = malloc(N * sizeof *rw);
    for (size_t k = 0; k < N * D; k++)
        X[k] = NAN; /* forward must overwrite every entry */
    ASSERT_OK(dv365_pool_forward(f->pooler, f->ws, tl, cutoff, X, counts, ws));
    ref_forward(f, e, cutoff, rX, rc, rw);
    for (size_t s = 0; s < N; s++) {
        if (counts[s] != rc[s])
            fail_msg("slice %s: count %u, reference %u", f->cfg->slices[s].name, counts[s], rc[s]);
        if (fabs(ws[s] - rw[s]) > 1e-5 * fmax(1, rw[s]))
            fail_msg("slice %s: weight sum %g, reference %g", f->cfg->slices[s].name, ws[s], rw[s]);
        /* X is accumulated in float: the rounding error grows like sqrt(count) */
        double tol = 1e-5 + 1e-6 * sqrt((double)rc[s]);
        for (size_t j = 0; j < D; j++)
            if (!(fabs(X[s * D + j] - rX[s * D + j]) <= tol))
                fail_msg("slice %s dim %zu: %g, reference %g", f->cfg->slices[s].name, j,
                         X[s * D + j], rX[s * D + j]);
    }
    free(X);
    free(ws);
    free(counts);
    free(rc);
    free(rX);
    free(rw);
}

/* ------------------------------------------------------------ tests */

static void test_config_covers_every_criterion(void **state)
{
    fixture *f = *state;
    const dv365_config *cfg = f->cfg;
    bool kind[3] = {0}, weight[5] = {0}, act = 0, mt = 0, su = 0, dw = 0, wr = 0, sc = 0;
    for (size_t d = 0; d < cfg->n_defs; d++) {
        const dv_slice_def *def = &cfg->defs[d];
        kind[def->kind] = weight[def->weight] = true;
        act |= def->action_ok != NULL;
        mt |= def->media_type_ok != NULL;
        su |= def->surface_ok != NULL;
        dw |= def->dwell_ms.has_min && def->dwell_ms.has_max;
        wr |= def->watch_ratio.has_min;
        sc |= def->watch_score.has_min && def->watch_score.has_max;
    }
    for (int k = 0; k < 3; k++)
        assert_true(kind[k]);
    for (int k = 0; k < 5; k++)
        assert_true(weight[k]);
    assert_true(act && mt && su && dw && wr && sc);
    /* all, durations, spans */
    assert_true(cfg->n_windows >= 7);
}

/* Membership event by event: a one-event timeline per event, counts
 * compared slice by slice with the reference. */
static void test_membership_event_by_event(void **state)
{
    fixture *f = *state;
    size_t N = f->cfg->n_slices;
    events e = events_make(3000, 400 * DAY);
    uint32_t *counts = malloc(N * sizeof *counts);
    float *X = malloc(N * f->cfg->dim * sizeof *X);
    size_t taken = 0, slices_hit = 0;
    bool *hit = calloc(N, sizeof *hit);
    for (size_t i = 0; i < e.n; i++) {
        dv365_timeline *tl = timeline_of(f->cfg, &e, i, i + 1);
        ASSERT_OK(dv365_pool_forward(f->pooler, f->ws, tl, CUTOFF, X, counts, NULL));
        events one = e;
        one.n = 1;
        one.time += i;
        for (int k = 0; k < 3; k++)
            one.id[k] += i;
        one.action += i;
        one.media_type += i;
        one.surface += i;
        one.duration += i;
        one.dwell += i;
        for (size_t s = 0; s < N; s++) {
            double w;
            bool ref = ref_takes(f->cfg, &one, 0, s, CUTOFF, &w);
            if (counts[s] != (uint32_t)ref)
                fail_msg("event %zu (t = cutoff%+lld, action %d, mt %d, surface %d, dur %g, "
                         "dwell %g): slice %s count %u, reference %d",
                         i, (long long)(one.time[0] - CUTOFF), one.action[0], one.media_type[0],
                         one.surface[0], one.duration[0], one.dwell[0], f->cfg->slices[s].name,
                         counts[s], ref);
            taken += ref;
            if (ref && !hit[s])
                slices_hit += hit[s] = true;
        }
        dv365_timeline_free(tl);
    }
    /* the events exercise every slice */
    assert_int_equal(slices_hit, N);
    assert_true(taken > e.n);
    free(hit);
    free(counts);
    free(X);
    events_free(&e);
}

static void test_forward_matches_reference(void **state)
{
    fixture *f = *state;
    events e = events_make(5000, 400 * DAY);
    dv365_timeline *tl = timeline_of(f->cfg, &e, 0, e.n);
    check_forward(f, &e, tl, CUTOFF);
    /* other cutoffs move every window */
    check_forward(f, &e, tl, CUTOFF - 2 * DAY - 17);
    check_forward(f, &e, tl, CUTOFF + 5 * DAY);
    check_forward(f, &e, tl, 0);
    check_forward(f, &e, tl, DV365_TIME_MAX);
    dv365_timeline_free(tl);
    events_free(&e);
}

/* Appending in shuffled batches gives the same timeline order (stable),
 * hence bitwise the same pooled output. */
static void test_out_of_order_same_result(void **state)
{
    fixture *f = *state;
    size_t N = f->cfg->n_slices, D = f->cfg->dim;
    events e = events_make(4000, 100 * DAY);
    dv365_timeline *a = timeline_of(f->cfg, &e, 0, e.n);
    dv365_timeline *b = NULL;
    ASSERT_OK(dv365_timeline_create(f->cfg, &b));
    for (size_t k = 0; k < 40; k++) {
        dv365_timeline *one = timeline_of(f->cfg, &e, k * 100, (k + 1) * 100);
        dv365_timeline_free(one);
        size_t from = k * 100;
        ASSERT_OK(dv365_timeline_append(b, 100, e.time + from, e.id[0] + from, e.id[1] + from,
                                        e.id[2] + from, e.action + from, e.media_type + from,
                                        e.surface + from, e.duration + from, e.dwell + from));
    }
    float *Xa = malloc(N * D * sizeof *Xa), *Xb = malloc(N * D * sizeof *Xb);
    ASSERT_OK(dv365_pool_forward(f->pooler, f->ws, a, CUTOFF, Xa, NULL, NULL));
    ASSERT_OK(dv365_pool_forward(f->pooler, f->ws, b, CUTOFF, Xb, NULL, NULL));
    assert_memory_equal(Xa, Xb, N * D * sizeof *Xa);
    check_forward(f, &e, b, CUTOFF);
    free(Xa);
    free(Xb);
    dv365_timeline_free(a);
    dv365_timeline_free(b);
    events_free(&e);
}

static void test_empty_and_after_cutoff(void **state)
{
    fixture *f = *state;
    size_t N = f->cfg->n_slices, D = f->cfg->dim;
    float *X = malloc(N * D * sizeof *X), *ws = malloc(N * sizeof *ws);
    uint32_t *counts = malloc(N * sizeof *counts);
    dv365_timeline *tl = NULL;
    ASSERT_OK(dv365_timeline_create(f->cfg, &tl));
    for (int pass = 0; pass < 2; pass++) {
        for (size_t k = 0; k < N * D; k++)
            X[k] = 1;
        ASSERT_OK(dv365_pool_forward(f->pooler, f->ws, tl, CUTOFF, X, counts, ws));
        for (size_t k = 0; k < N * D; k++)
            assert_true(X[k] == 0);
        for (size_t s = 0; s < N; s++)
            assert_true(counts[s] == 0 && ws[s] == 0);
        /* second pass: every event at or after the cutoff */
        events e = events_make(500, 10 * DAY);
        for (size_t i = 0; i < e.n; i++)
            e.time[i] = CUTOFF + (int64_t)(i % 3);
        ASSERT_OK(dv365_timeline_append(tl, e.n, e.time, e.id[0], e.id[1], e.id[2], e.action,
                                        e.media_type, e.surface, e.duration, e.dwell));
        events_free(&e);
    }
    dv365_timeline_free(tl);
    free(X);
    free(ws);
    free(counts);
}

/* Zero durations: watch ratio and score are 0, so a watch-score weighted
 * slice has events but a zero weight sum and pools to a zero row. */
static void test_zero_duration(void **state)
{
    fixture *f = *state;
    size_t N = f->cfg->n_slices, D = f->cfg->dim;
    events e = events_make(300, 30 * DAY);
    for (size_t i = 0; i < e.n; i++) {
        e.duration[i] = 0;
        e.dwell[i] = (float)(1000 * (i % 40));
    }
    dv365_timeline *tl = timeline_of(f->cfg, &e, 0, e.n);
    float *X = malloc(N * D * sizeof *X), *ws = malloc(N * sizeof *ws);
    uint32_t *counts = malloc(N * sizeof *counts);
    ASSERT_OK(dv365_pool_forward(f->pooler, f->ws, tl, CUTOFF, X, counts, ws));
    size_t s;
    ASSERT_OK(dv365_config_slice_index(f->cfg, "scored.author.all", &s));
    assert_true(counts[s] > 0);
    assert_true(ws[s] == 0);
    for (size_t j = 0; j < D; j++)
        assert_true(X[s * D + j] == 0);
    ASSERT_OK(dv365_config_slice_index(f->cfg, "ratio.media.all", &s));
    assert_int_equal(counts[s], 0); /* ratio 0 < 0.5 */
    check_forward(f, &e, tl, CUTOFF);
    free(X);
    free(ws);
    free(counts);
    dv365_timeline_free(tl);
    events_free(&e);
}

static void test_long_history(void **state)
{
    fixture *f = *state;
    events e = events_make(72000, 365 * DAY);
    dv365_timeline *tl = timeline_of(f->cfg, &e, 0, e.n);
    assert_int_equal(dv365_timeline_size(tl), 72000);
    check_forward(f, &e, tl, CUTOFF);
    dv365_timeline_free(tl);
    events_free(&e);
}

static void test_workspace_steady_state(void **state)
{
    fixture *f = *state;
    size_t N = f->cfg->n_slices, D = f->cfg->dim;
    events e = events_make(2000, 100 * DAY);
    dv365_timeline *tl = timeline_of(f->cfg, &e, 0, e.n);
    dv365_workspace *ws = NULL;
    ASSERT_OK(dv365_workspace_create(&ws));
    size_t need = dv365_pool_workspace_size(f->pooler, e.n);
    assert_true(need > 0);
    ASSERT_OK(dv365_workspace_reserve(ws, need));
    float *X = malloc(N * D * sizeof *X);
    ASSERT_OK(dv365_pool_forward(f->pooler, ws, tl, CUTOFF, X, NULL, NULL));
    ASSERT_OK(dv365_pool_forward(f->pooler, ws, tl, CUTOFF - DAY, X, NULL, NULL));
    assert_int_equal(dv365_workspace_capacity(ws), need); /* no growth past the query */
    free(X);
    dv365_workspace_free(ws);
    dv365_timeline_free(tl);
    events_free(&e);
}

/* ------------------------------------------------------------ backward */

/* Dense reference gradient of every table: sum (w / wsum) dX[s]. */
static double **ref_backward(const fixture *f, const events *e, int64_t cutoff, const float *dX)
{
    const dv365_config *cfg = f->cfg;
    size_t N = cfg->n_slices, D = cfg->dim;
    double **g = calloc(cfg->n_tables, sizeof *g);
    for (size_t t = 0; t < cfg->n_tables; t++)
        g[t] = calloc(cfg->table_rows[t] * D, sizeof **g);
    for (size_t s = 0; s < N; s++) {
        double wsum = 0, w;
        for (size_t i = 0; i < e->n; i++)
            if (ref_takes(cfg, e, i, s, cutoff, &w))
                wsum += w;
        if (!(wsum > 0))
            continue;
        for (size_t i = 0; i < e->n; i++) {
            if (!ref_takes(cfg, e, i, s, cutoff, &w))
                continue;
            size_t row;
            table_row(f, cfg->slices[s].table, e->id[cfg->slices[s].field][i], &row);
            for (size_t j = 0; j < D; j++)
                g[cfg->slices[s].table][row * D + j] += w / wsum * dX[s * D + j];
        }
    }
    return g;
}

static void test_backward_matches_transpose(void **state)
{
    fixture *f = *state;
    const dv365_config *cfg = f->cfg;
    size_t N = cfg->n_slices, D = cfg->dim;
    events e = events_make(3000, 200 * DAY);
    dv365_timeline *tl = timeline_of(cfg, &e, 0, e.n);
    float *dX = malloc(N * D * sizeof *dX);
    for (size_t k = 0; k < N * D; k++)
        dX[k] = (float)(unif() * 2 - 1);
    dv365_pool_grad *grad = NULL;
    ASSERT_OK(dv365_pool_grad_create(f->pooler, &grad));
    double **ref = ref_backward(f, &e, CUTOFF, dX);

    for (int rep = 0; rep < 2; rep++) { /* a second call replaces the first */
        ASSERT_OK(dv365_pool_backward(f->pooler, f->ws, tl, CUTOFF, dX, grad));
        for (size_t t = 0; t < cfg->n_tables; t++) {
            size_t n;
            const size_t *rows;
            const float *g;
            ASSERT_OK(dv365_pool_grad_table(grad, t, &n, &rows, &g));
            assert_true(n > 0);
            bool *seen = calloc(cfg->table_rows[t], 1);
            for (size_t k = 0; k < n; k++) {
                assert_true(rows[k] < cfg->table_rows[t]);
                assert_true(k == 0 || rows[k - 1] < rows[k]); /* distinct, ascending */
                assert_false(seen[rows[k]]);
                seen[rows[k]] = true;
                for (size_t j = 0; j < D; j++)
                    if (!(fabs(g[k * D + j] - ref[t][rows[k] * D + j]) <= 1e-5))
                        fail_msg("table %zu row %zu dim %zu: %g, reference %g", t, rows[k], j,
                                 g[k * D + j], ref[t][rows[k] * D + j]);
            }
            /* rows not listed have no gradient */
            for (size_t r = 0; r < cfg->table_rows[t]; r++)
                if (!seen[r])
                    for (size_t j = 0; j < D; j++)
                        assert_true(ref[t][r * D + j] == 0);
            free(seen);
        }
    }
    for (size_t t = 0; t < cfg->n_tables; t++)
        free(ref[t]);
    free(ref);

    /* deterministic: same rows in the same order, same values */
    dv365_pool_grad *g2 = NULL;
    ASSERT_OK(dv365_pool_grad_create(f->pooler, &g2));
    ASSERT_OK(dv365_pool_backward(f->pooler, f->ws, tl, CUTOFF, dX, g2));
    for (size_t t = 0; t < cfg->n_tables; t++) {
        size_t n1, n2;
        const size_t *r1, *r2;
        const float *v1, *v2;
        ASSERT_OK(dv365_pool_grad_table(grad, t, &n1, &r1, &v1));
        ASSERT_OK(dv365_pool_grad_table(g2, t, &n2, &r2, &v2));
        assert_int_equal(n1, n2);
        assert_memory_equal(r1, r2, n1 * sizeof *r1);
        assert_memory_equal(v1, v2, n1 * D * sizeof *v1);
    }
    dv365_pool_grad_free(g2);
    dv365_pool_grad_free(grad);
    free(dX);
    dv365_timeline_free(tl);
    events_free(&e);
}

/* Timelines longer than one slicing block: same results (within float
 * rounding), gradient rows still distinct and ascending. */
static void test_several_blocks(void **state)
{
    dv_slice_block_events = 333;
    test_forward_matches_reference(state);
    test_backward_matches_transpose(state);
    dv_slice_block_events = DV_SLICE_BLOCK_DEFAULT;
}

/* L = sum(dX .* X) is linear in the tables, so central differences are
 * exact up to float rounding. */
static double loss(const fixture *f, const dv365_timeline *tl, const float *dX, float *X)
{
    size_t N = f->cfg->n_slices, D = f->cfg->dim;
    ASSERT_OK(dv365_pool_forward(f->pooler, f->ws, tl, CUTOFF, X, NULL, NULL));
    double l = 0;
    for (size_t k = 0; k < N * D; k++)
        l += (double)dX[k] * X[k];
    return l;
}

static void test_backward_finite_differences(void **state)
{
    fixture *f = *state;
    const dv365_config *cfg = f->cfg;
    size_t N = cfg->n_slices, D = cfg->dim;
    events e = events_make(800, 100 * DAY);
    dv365_timeline *tl = timeline_of(cfg, &e, 0, e.n);
    float *dX = malloc(N * D * sizeof *dX), *X = malloc(N * D * sizeof *X);
    for (size_t k = 0; k < N * D; k++)
        dX[k] = (float)(unif() * 2 - 1);
    dv365_pool_grad *grad = NULL;
    ASSERT_OK(dv365_pool_grad_create(f->pooler, &grad));
    ASSERT_OK(dv365_pool_backward(f->pooler, f->ws, tl, CUTOFF, dX, grad));
    const float eps = 0.05f;
    int checked = 0;
    for (size_t t = 0; t < cfg->n_tables; t++) {
        size_t n;
        const size_t *rows;
        const float *g;
        ASSERT_OK(dv365_pool_grad_table(grad, t, &n, &rows, &g));
        float *data;
        size_t nrows;
        ASSERT_OK(dv365_pooler_table(f->pooler, t, &data, &nrows));
        for (int probe = 0; probe < 12; probe++) {
            /* a touched row, or (every fourth probe) any row, untouched rows having 0 */
            size_t r = probe % 4 == 3 ? rnd() % nrows : rows[rnd() % n];
            size_t j = rnd() % D;
            double analytic = 0;
            for (size_t k = 0; k < n; k++)
                if (rows[k] == r)
                    analytic = g[k * D + j];
            float keep = data[r * D + j];
            data[r * D + j] = keep + eps;
            double lp = loss(f, tl, dX, X);
            data[r * D + j] = keep - eps;
            double lm = loss(f, tl, dX, X);
            data[r * D + j] = keep;
            double fd = (lp - lm) / (2 * (double)eps);
            if (!(fabs(fd - analytic) <= 2e-3 + 1e-2 * fabs(analytic)))
                fail_msg("table %zu row %zu dim %zu: finite difference %g, backward %g", t, r, j,
                         fd, analytic);
            checked++;
        }
    }
    assert_int_equal(checked, 12 * (int)cfg->n_tables);
    dv365_pool_grad_free(grad);
    free(dX);
    free(X);
    dv365_timeline_free(tl);
    events_free(&e);
}

/* ------------------------------------------------------------ tables, hash */

static void test_hash_vectors(void **state)
{
    (void)state;
    /* From the Python one-liner in docs/hash.md. */
    static const struct {
        uint64_t id;
        size_t rows, row;
    } v[] = {
        {0, 262144, 0},
        {1, 262144, 198117},
        {42, 262144, 161314},
        {123456789, 1000, 584},
        {UINT64_C(18446744073709551615), 65536, 48507},
        {UINT64_C(9876543210123), 4096, 2275},
    };
    for (size_t k = 0; k < sizeof v / sizeof v[0]; k++)
        assert_int_equal(dv365_hash_row(v[k].id, v[k].rows), v[k].row);
    assert_int_equal(dv365_hash_row(77, 1), 0);
    assert_int_equal(dv365_hash_row(77, 0), 0);
    /* rows are spread: 100k consecutive ids over 64 rows, each near 1/64 */
    size_t hist[64] = {0};
    for (uint64_t id = 0; id < 100000; id++)
        hist[dv365_hash_row(id, 64)]++;
    for (int r = 0; r < 64; r++)
        assert_true(hist[r] > 1400 && hist[r] < 1725);
}

static void test_normal_fill(void **state)
{
    (void)state;
    size_t n = 2000000;
    float *x = malloc(n * sizeof *x);
    dv_rng r;
    dv_rng_seed(&r, 1);
    dv_fill_normal(&r, x, n, 2.0f);
    double m1 = 0, m2 = 0, m4 = 0;
    size_t beyond3 = 0, tail = 0, neg = 0;
    for (size_t i = 0; i < n; i++) {
        double z = x[i] / 2.0;
        m1 += z;
        m2 += z * z;
        m4 += z * z * z * z;
        beyond3 += fabs(z) > 3;
        tail += fabs(z) > 3.442619855899; /* the ziggurat's slow tail path */
        neg += z < 0;
    }
    m1 /= n;
    m2 /= n;
    m4 /= n;
    assert_true(fabs(m1) < 0.003);
    assert_true(fabs(m2 - 1) < 0.005);
    assert_true(fabs(m4 - 3) < 0.05);
    /* P(|z| > 3) = 0.0026998, P(|z| > 3.4426) = 0.000576 */
    assert_true(fabs((double)beyond3 / n - 0.0026998) < 0.0003);
    assert_true(fabs((double)tail / n - 0.000576) < 0.0001);
    assert_true(fabs((double)neg / n - 0.5) < 0.002);
    free(x);
}

static void test_tables_init(void **state)
{
    fixture *f = *state;
    const dv365_config *cfg = f->cfg;
    dv365_pooler *p2 = NULL, *p3 = NULL;
    ASSERT_OK(dv365_pooler_create(cfg, 42, &p2));
    ASSERT_OK(dv365_pooler_create(cfg, 43, &p3));
    float *a, *b, *c, *other;
    size_t ra, rb, rc, ro;
    for (size_t t = 0; t < cfg->n_tables; t++) {
        ASSERT_OK(dv365_pooler_table(f->pooler, t, &a, &ra));
        ASSERT_OK(dv365_pooler_table(p2, t, &b, &rb));
        ASSERT_OK(dv365_pooler_table(p3, t, &c, &rc));
        assert_int_equal(ra, cfg->table_rows[t]);
        size_t n = ra * cfg->dim;
        assert_memory_equal(a, b, n * sizeof *a); /* same seed: same tables */
        assert_memory_not_equal(a, c, n * sizeof *a);
        ASSERT_OK(dv365_pooler_table(f->pooler, (t + 1) % cfg->n_tables, &other, &ro));
        assert_memory_not_equal(a, other, DV_MIN(n, ro * cfg->dim) * sizeof *a);
        /* table t is the documented stream: seed ^ mix64(t + 1) */
        float *expect = malloc(n * sizeof *expect);
        dv_rng r;
        dv_rng_seed(&r, UINT64_C(42) ^ dv_mix64((uint64_t)t + 1));
        dv_fill_normal(&r, expect, n, cfg->init_std);
        assert_memory_equal(a, expect, n * sizeof *a);
        free(expect);
        double m2 = 0;
        for (size_t k = 0; k < n; k++)
            m2 += (double)a[k] * a[k];
        assert_true(fabs(sqrt(m2 / n) / 0.5 - 1) < 0.1);
    }
    dv365_pooler_free(p2);
    dv365_pooler_free(p3);
}

/* ------------------------------------------------------------ bad arguments */

static void test_bad_arguments(void **state)
{
    fixture *f = *state;
    size_t N = f->cfg->n_slices, D = f->cfg->dim;
    events e = events_make(200, 10 * DAY);
    dv365_timeline *tl = timeline_of(f->cfg, &e, 0, e.n);
    float *X = malloc(N * D * sizeof *X), *dX = calloc(N * D, sizeof *dX);
    dv365_pool_grad *grad = NULL;
    ASSERT_OK(dv365_pool_grad_create(f->pooler, &grad));
    dv365_pooler *p = NULL;

    ASSERT_ERR(dv365_pooler_create(NULL, 1, &p), DV365_E_NULL, "'cfg'");
    ASSERT_ERR(dv365_pooler_create(f->cfg, 1, NULL), DV365_E_NULL, "'out'");
    float *data;
    size_t rows;
    ASSERT_ERR(dv365_pooler_table(NULL, 0, &data, &rows), DV365_E_NULL, "'pooler'");
    ASSERT_ERR(dv365_pooler_table(f->pooler, 0, NULL, &rows), DV365_E_NULL, "'data'");
    ASSERT_ERR(dv365_pooler_table(f->pooler, 0, &data, NULL), DV365_E_NULL, "'rows'");
    ASSERT_ERR(dv365_pooler_table(f->pooler, 4, &data, &rows), DV365_E_INVALID, "table 4");
    assert_int_equal(dv365_pool_workspace_size(NULL, 10), 0);

    ASSERT_ERR(dv365_pool_forward(NULL, f->ws, tl, CUTOFF, X, NULL, NULL), DV365_E_NULL, "'pooler'");
    ASSERT_ERR(dv365_pool_forward(f->pooler, NULL, tl, CUTOFF, X, NULL, NULL), DV365_E_NULL, "'ws'");
    ASSERT_ERR(dv365_pool_forward(f->pooler, f->ws, NULL, CUTOFF, X, NULL, NULL), DV365_E_NULL, "'tl'");
    ASSERT_ERR(dv365_pool_forward(f->pooler, f->ws, tl, CUTOFF, NULL, NULL, NULL), DV365_E_NULL, "'X'");
    ASSERT_ERR(dv365_pool_forward(f->pooler, f->ws, tl, -1, X, NULL, NULL), DV365_E_TIMESTAMP,
               "cutoff = -1");
    ASSERT_ERR(dv365_pool_forward(f->pooler, f->ws, tl, DV365_TIME_MAX + 1, X, NULL, NULL),
               DV365_E_TIMESTAMP, "cutoff");
    ASSERT_ERR(dv365_pool_backward(f->pooler, f->ws, tl, INT64_MIN, dX, grad), DV365_E_TIMESTAMP,
               "cutoff");
    ASSERT_ERR(dv365_pool_backward(NULL, f->ws, tl, CUTOFF, dX, grad), DV365_E_NULL, "'pooler'");
    ASSERT_ERR(dv365_pool_backward(f->pooler, NULL, tl, CUTOFF, dX, grad), DV365_E_NULL, "'ws'");
    ASSERT_ERR(dv365_pool_backward(f->pooler, f->ws, NULL, CUTOFF, dX, grad), DV365_E_NULL, "'tl'");
    ASSERT_ERR(dv365_pool_backward(f->pooler, f->ws, tl, CUTOFF, NULL, grad), DV365_E_NULL, "'dX'");
    ASSERT_ERR(dv365_pool_backward(f->pooler, f->ws, tl, CUTOFF, dX, NULL), DV365_E_NULL, "'grad'");

    ASSERT_ERR(dv365_pool_grad_create(NULL, &grad), DV365_E_NULL, "'pooler'");
    ASSERT_ERR(dv365_pool_grad_create(f->pooler, NULL), DV365_E_NULL, "'out'");
    size_t n;
    const size_t *r;
    const float *g;
    ASSERT_ERR(dv365_pool_grad_table(NULL, 0, &n, &r, &g), DV365_E_NULL, "'grad'");
    ASSERT_ERR(dv365_pool_grad_table(grad, 0, NULL, &r, &g), DV365_E_NULL, "'n_rows'");
    ASSERT_ERR(dv365_pool_grad_table(grad, 0, &n, NULL, &g), DV365_E_NULL, "'rows'");
    ASSERT_ERR(dv365_pool_grad_table(grad, 0, &n, &r, NULL), DV365_E_NULL, "'grad_rows'");
    ASSERT_ERR(dv365_pool_grad_table(grad, 9, &n, &r, &g), DV365_E_INVALID, "table 9");
    dv365_pooler_free(NULL);
    dv365_pool_grad_free(NULL);

    /* a timeline or gradient of another config */
    static const char *other = "version: 1\ndim: 3\n"
                               "vocab: {actions: [{name: a, explicit: true}], media_types: [m],"
                               " surfaces: [s]}\n"
                               "tables: [{name: t, rows: 5}]\n"
                               "slices: [{name: x, pool: {media: t}}]\n"
                               "encoder: {heads: 1}\n";
    dv365_config *cfg2 = NULL;
    ASSERT_OK(dv365_config_parse(other, strlen(other), &cfg2));
    dv365_timeline *tl2 = NULL;
    dv365_pooler *p2 = NULL;
    dv365_pool_grad *grad2 = NULL;
    ASSERT_OK(dv365_timeline_create(cfg2, &tl2));
    ASSERT_OK(dv365_pooler_create(cfg2, 1, &p2));
    ASSERT_OK(dv365_pool_grad_create(p2, &grad2));
    ASSERT_ERR(dv365_pool_forward(f->pooler, f->ws, tl2, CUTOFF, X, NULL, NULL), DV365_E_MISMATCH,
               "different config");
    ASSERT_ERR(dv365_pool_backward(f->pooler, f->ws, tl, CUTOFF, dX, grad2), DV365_E_MISMATCH,
               "grad was made for 1 tables");

    /* everything still works */
    check_forward(f, &e, tl, CUTOFF);
    ASSERT_OK(dv365_pool_backward(f->pooler, f->ws, tl, CUTOFF, dX, grad));

    dv365_pool_grad_free(grad2);
    dv365_pooler_free(p2);
    dv365_timeline_free(tl2);
    dv365_config_free(cfg2);
    dv365_pool_grad_free(grad);
    free(X);
    free(dX);
    dv365_timeline_free(tl);
    events_free(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_covers_every_criterion),
        cmocka_unit_test(test_membership_event_by_event),
        cmocka_unit_test(test_forward_matches_reference),
        cmocka_unit_test(test_out_of_order_same_result),
        cmocka_unit_test(test_empty_and_after_cutoff),
        cmocka_unit_test(test_zero_duration),
        cmocka_unit_test(test_long_history),
        cmocka_unit_test(test_workspace_steady_state),
        cmocka_unit_test(test_backward_matches_transpose),
        cmocka_unit_test(test_backward_finite_differences),
        cmocka_unit_test(test_several_blocks),
        cmocka_unit_test(test_hash_vectors),
        cmocka_unit_test(test_normal_fill),
        cmocka_unit_test(test_tables_init),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
