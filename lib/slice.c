/* slice.c — compiled slice criteria and the per-call event → slice expansion.
 * The rules are in docs/timeline.md ("Slicing"); slice.h explains the terms. */
#include "slice.h"

#include <string.h>

size_t dv_slice_block_events = DV_SLICE_BLOCK_DEFAULT;

static inline bool bit_get(const uint64_t *m, size_t i) { return (m[i >> 6] >> (i & 63)) & 1u; }
static inline void bit_set(uint64_t *m, size_t i) { m[i >> 6] |= UINT64_C(1) << (i & 63); }
static inline void bit_clear(uint64_t *m, size_t i) { m[i >> 6] &= ~(UINT64_C(1) << (i & 63)); }

void dv_slicer_release(dv_slicer *s)
{
    if (s == NULL)
        return;
    dv_free(s->action_mask);
    dv_free(s->media_type_mask);
    dv_free(s->surface_mask);
    dv_free(s->ranged);
    dv_free(s->targets);
    if (s->sources != NULL)
        dv_free(s->sources[0].targets); /* one block shared by all sources */
    dv_free(s->sources);
    dv_free(s->source_mask);
    dv_free(s->table_offset);
    dv_free(s->src_target);
    dv_free(s->def_weight);
    memset(s, 0, sizeof *s);
}

static bool def_has_range(const dv_slice_def *d)
{
    return d->dwell_ms.has_min || d->dwell_ms.has_max || d->watch_ratio.has_min ||
           d->watch_ratio.has_max || d->watch_score.has_min || d->watch_score.has_max;
}

static bool kind_takes(dv_kind kind, bool is_explicit)
{
    return kind == DV_KIND_ALL || (kind == DV_KIND_EXPLICIT) == is_explicit;
}

/* Categorical masks: bit d of mask[code] is set when def d accepts the code. */
static void fill_vocab_mask(uint64_t *mask, size_t n_words, const dv365_config *cfg,
                            size_t n_codes, int which)
{
    for (size_t c = 0; c < n_codes; c++) {
        uint64_t *m = mask + c * n_words;
        for (size_t d = 0; d < cfg->n_defs; d++) {
            const dv_slice_def *def = &cfg->defs[d];
            bool ok;
            if (which == 0)
                ok = kind_takes(def->kind, cfg->action_explicit[c] != 0) &&
                     (def->action_ok == NULL || def->action_ok[c]);
            else if (which == 1)
                ok = def->media_type_ok == NULL || def->media_type_ok[c];
            else
                ok = def->surface_ok == NULL || def->surface_ok[c];
            if (ok)
                bit_set(m, d);
        }
    }
}

dv365_status dv_slicer_init(dv_slicer *s, const dv365_config *cfg)
{
    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    s->n_defs = cfg->n_defs;
    s->n_words = DV_MAX((size_t)1, (cfg->n_defs + 63) / 64);
    size_t W = s->n_words;
    /* slice indices and their per-segment lists are uint32 */
    if (cfg->n_slices > UINT32_MAX / (2 * cfg->n_windows + 1))
        return dv_error(DV365_E_CONFIG, "slicer: %zu slices is too many", cfg->n_slices);

    size_t n_targets = 0;
    for (size_t d = 0; d < cfg->n_defs; d++)
        n_targets += cfg->defs[d].n_pools;

    s->action_mask = dv_calloc(cfg->n_actions * W + 1, sizeof(uint64_t));
    s->media_type_mask = dv_calloc(cfg->n_media_types * W + 1, sizeof(uint64_t));
    s->surface_mask = dv_calloc(cfg->n_surfaces * W + 1, sizeof(uint64_t));
    s->ranged = dv_calloc(cfg->n_defs + 1, sizeof(size_t));
    s->targets = dv_calloc(n_targets + 1, sizeof(dv_target));
    s->sources = dv_calloc(n_targets + 1, sizeof(dv_source));
    size_t *target_lists = dv_calloc(n_targets + 1, sizeof(size_t));
    s->source_mask = dv_calloc((n_targets + 1) * W, sizeof(uint64_t));
    s->table_offset = dv_calloc(cfg->n_tables + 1, sizeof(uint64_t));
    s->src_target = dv_calloc((n_targets + 1) * (cfg->n_defs + 1), sizeof(uint32_t));
    s->def_weight = dv_calloc(cfg->n_defs + 1, 1);
    if (s->sources != NULL)
        s->sources[0].targets = target_lists; /* so that release frees it */
    else
        dv_free(target_lists);
    if (!s->action_mask || !s->media_type_mask || !s->surface_mask || !s->ranged ||
        !s->targets || !s->sources || !target_lists || !s->source_mask || !s->table_offset ||
        !s->src_target || !s->def_weight) {
        dv_slicer_release(s);
        return dv_error(DV365_E_NOMEM, "slicer: out of memory");
    }

    fill_vocab_mask(s->action_mask, W, cfg, cfg->n_actions, 0);
    fill_vocab_mask(s->media_type_mask, W, cfg, cfg->n_media_types, 1);
    fill_vocab_mask(s->surface_mask, W, cfg, cfg->n_surfaces, 2);
    for (size_t d = 0; d < cfg->n_defs; d++)
        if (def_has_range(&cfg->defs[d]))
            s->ranged[s->n_ranged++] = d;

    /* Targets in def order; sources = distinct (field, table) in first-use order. */
    for (size_t d = 0; d < cfg->n_defs; d++) {
        const dv_slice_def *def = &cfg->defs[d];
        for (size_t p = 0; p < def->n_pools; p++) {
            size_t src = 0;
            while (src < s->n_sources &&
                   !(s->sources[src].field == def->field[p] && s->sources[src].table == def->table[p]))
                src++;
            if (src == s->n_sources) {
                s->sources[src].field = def->field[p];
                s->sources[src].table = def->table[p];
                s->n_sources++;
            }
            s->sources[src].n_targets++;
            bit_set(s->source_mask + src * W, d);
            s->targets[s->n_targets++] = (dv_target){.def = d, .pool = p, .source = src};
        }
    }
    for (size_t i = 0; i < s->n_sources * cfg->n_defs; i++)
        s->src_target[i] = UINT32_MAX;
    for (size_t t = 0; t < s->n_targets; t++)
        s->src_target[s->targets[t].source * cfg->n_defs + s->targets[t].def] = (uint32_t)t;
    for (size_t d = 0; d < cfg->n_defs; d++)
        s->def_weight[d] = (uint8_t)cfg->defs[d].weight;
    size_t off = 0;
    for (size_t src = 0; src < s->n_sources; src++) {
        s->sources[src].targets = target_lists + off;
        off += s->sources[src].n_targets;
        s->sources[src].n_targets = 0;
    }
    for (size_t t = 0; t < s->n_targets; t++) {
        dv_source *src = &s->sources[s->targets[t].source];
        src->targets[src->n_targets++] = t;
    }
    s->max_segs = 2 * cfg->n_windows + 1;
    if (s->n_sources > UINT16_MAX || s->max_segs > UINT16_MAX) {
        dv_slicer_release(s);
        return dv_error(DV365_E_CONFIG, "slicer: too many pooled tables or windows");
    }

    /* Global rows: table t's rows follow those of tables 0..t-1. */
    for (size_t t = 0; t < cfg->n_tables; t++)
        if (__builtin_add_overflow(s->table_offset[t], (uint64_t)cfg->table_rows[t],
                                   &s->table_offset[t + 1])) {
            dv_slicer_release(s);
            return dv_error(DV365_E_CONFIG, "slicer: too many table rows");
        }
    while (s->key_bits < 64 && (s->table_offset[cfg->n_tables] >> s->key_bits) != 0)
        s->key_bits++;
    while (s->src_bits < 16 && (s->n_sources >> s->src_bits) != 0)
        s->src_bits++;
    if (s->key_bits + s->src_bits + DV_ITEM_EVENT_BITS > 64) { /* terabytes of tables */
        dv_slicer_release(s);
        return dv_error(DV365_E_CONFIG, "slicer: the tables have too many rows in total");
    }

    /* Bounds of the per-event and per-item work, for sizing the workspace. */
    for (size_t a = 0; a < cfg->n_actions; a++) {
        size_t n = 0;
        for (size_t src = 0; src < s->n_sources; src++) {
            uint64_t hit = 0;
            for (size_t w = 0; w < W; w++)
                hit |= s->action_mask[a * W + w] & s->source_mask[src * W + w];
            n += hit != 0;
        }
        s->max_items = DV_MAX(s->max_items, n);
    }
    for (size_t src = 0; src < s->n_sources; src++) {
        size_t n = 0;
        for (size_t k = 0; k < s->sources[src].n_targets; k++)
            n += cfg->defs[s->targets[s->sources[src].targets[k]].def].n_windows;
        s->max_dests = DV_MAX(s->max_dests, n);
    }
    return DV365_OK;
}

/* Sizes of the plan's arrays, in carving order. */
#define DV_PLAN_ARRAYS 10
static void plan_sizes(const dv_slicer *s, size_t n_events, size_t sz[DV_PLAN_ARRAYS])
{
    const dv365_config *cfg = s->cfg;
    size_t S = s->max_segs;
    size_t B = DV_MIN(DV_MIN(n_events, dv_slice_block_events), (size_t)1 << DV_ITEM_EVENT_BITS);
    size_t n_items = B * s->max_items + 1;
    sz[0] = (S + 1) * sizeof(size_t);                  /* seg_begin */
    sz[1] = S * s->n_words * sizeof(uint64_t);         /* seg_live */
    sz[2] = S * (s->n_targets + 1) * sizeof(uint32_t); /* seg_off */
    sz[3] = (S * cfg->n_slices + 1) * sizeof(uint32_t); /* seg_slices */
    sz[4] = (B + 1) * (s->n_words + 3) * sizeof(uint64_t); /* recs */
    sz[5] = n_items * sizeof(dv_item);                 /* items */
    sz[6] = n_items * sizeof(dv_item);                 /* tmp */
    sz[7] = 4 * 2048 * sizeof(size_t);                 /* hist */
    sz[8] = (cfg->n_windows + 1) * sizeof(size_t);     /* window lo */
    sz[9] = (cfg->n_windows + 1) * sizeof(size_t);     /* window hi */
}

size_t dv_slice_plan_bytes(const dv_slicer *s, size_t n_events)
{
    size_t sz[DV_PLAN_ARRAYS], total = 0;
    plan_sizes(s, n_events, sz);
    for (int i = 0; i < DV_PLAN_ARRAYS; i++)
        total += dv_align64(sz[i]);
    return total;
}

/* Window bounds as event indices: [lo, hi) within [0, end). */
static void window_bounds(const dv365_timeline *tl, const dv_window *w, int64_t cutoff,
                          size_t end, size_t *lo, size_t *hi)
{
    int64_t t;
    *hi = end;
    if (w->to_s > 0) /* cutoff - to_s cannot overflow: both are >= 0 */
        *hi = DV_MIN(end, dv_timeline_lower_bound(tl, cutoff - w->to_s));
    *lo = 0;
    if (w->from_s != INT64_MAX) {
        if (__builtin_sub_overflow(cutoff, w->from_s, &t))
            *lo = end; /* a negative span far beyond the cutoff: empty */
        else
            *lo = DV_MIN(end, dv_timeline_lower_bound(tl, t));
    }
    if (*lo > *hi)
        *lo = *hi;
}

dv365_status dv_slice_plan_init(dv_slice_plan *p, const dv_slicer *s, const dv365_timeline *tl,
                                int64_t cutoff, dv_arena *a)
{
    const dv365_config *cfg = s->cfg;
    size_t sz[DV_PLAN_ARRAYS];
    plan_sizes(s, tl->n, sz);
    void *ptr[DV_PLAN_ARRAYS];
    for (int i = 0; i < DV_PLAN_ARRAYS; i++)
        if ((ptr[i] = dv_arena_take(a, sz[i])) == NULL)
            return dv_error(DV365_E_INTERNAL, "slice plan: workspace too small");
    p->seg_begin = ptr[0];
    p->seg_live = ptr[1];
    p->seg_off = ptr[2];
    p->seg_slices = ptr[3];
    p->recs = ptr[4];
    p->rec_words = s->n_words + 3;
    p->items = ptr[5];
    p->tmp = ptr[6];
    p->hist = ptr[7];
    p->block = DV_MIN(DV_MIN(tl->n, dv_slice_block_events), (size_t)1 << DV_ITEM_EVENT_BITS);
    size_t *win_lo = ptr[8], *win_hi = ptr[9];

    /* Segment boundaries: 0, end and every window edge, sorted and unique. */
    size_t end = dv_timeline_lower_bound(tl, cutoff);
    p->end = end;
    size_t *b = p->seg_begin, nb = 0;
    b[nb++] = 0;
    for (size_t w = 0; w < cfg->n_windows; w++) {
        window_bounds(tl, &cfg->windows[w], cutoff, end, &win_lo[w], &win_hi[w]);
        size_t edge[2] = {win_lo[w], win_hi[w]};
        for (int e = 0; e < 2; e++) {
            bool dup = false;
            for (size_t k = 0; k < nb; k++)
                dup |= b[k] == edge[e];
            if (dup || edge[e] >= end)
                continue;
            size_t j = nb++; /* insertion into the sorted prefix */
            while (j > 0 && b[j - 1] > edge[e]) {
                b[j] = b[j - 1];
                j--;
            }
            b[j] = edge[e];
        }
    }
    /* b[0..nb) are distinct segment starts < end (or just 0 when end == 0). */
    p->n_segs = end == 0 ? 0 : nb;
    b[p->n_segs] = end;

    /* For each segment and target, the slices (windows of the def) covering it. */
    uint32_t n = 0;
    memset(p->seg_live, 0, sz[1]);
    for (size_t k = 0; k < p->n_segs; k++) {
        uint32_t *off = p->seg_off + k * (s->n_targets + 1);
        uint64_t *live = p->seg_live + k * s->n_words;
        for (size_t t = 0; t < s->n_targets; t++) {
            off[t] = n;
            const dv_slice_def *def = &cfg->defs[s->targets[t].def];
            for (size_t wi = 0; wi < def->n_windows; wi++) {
                size_t cw = def->window[wi];
                if (win_lo[cw] <= b[k] && b[k + 1] <= win_hi[cw]) {
                    p->seg_slices[n++] =
                        (uint32_t)(def->first_slice + s->targets[t].pool * def->n_windows + wi);
                    bit_set(live, s->targets[t].def);
                }
            }
        }
        off[s->n_targets] = n;
    }
    return DV365_OK;
}

static bool ranges_take(const dv_slice_def *d, const dv365_timeline *tl, size_t i)
{
    return dv_range_contains(&d->dwell_ms, (double)tl->dwell_ms[i]) &&
           dv_range_contains(&d->watch_ratio, tl->watch_ratio[i]) &&
           dv_range_contains(&d->watch_score, tl->watch_score[i]);
}

/* LSD radix sort of items on their key bits (above `shift0`); stable, so
 * ties keep the event order they were made in.  Digits of at most 11 bits,
 * as few passes as key_bits needs, all histograms from one read; hist holds
 * 4 x 2048 counts.  Returns the buffer holding the result. */
static dv_item *sort_items(dv_item *a, dv_item *b, size_t n, unsigned shift0, unsigned key_bits,
                           size_t *hist)
{
    unsigned passes = (key_bits + 10) / 11; /* key_bits <= 44: dv_slicer_init */
    if (passes == 0)
        return a;
    unsigned width = (key_bits + passes - 1) / passes;
    uint64_t mask = ((uint64_t)1 << width) - 1;
    memset(hist, 0, 4 * 2048 * sizeof *hist);
    for (size_t i = 0; i < n; i++)
        for (unsigned p = 0; p < passes; p++)
            hist[p * 2048 + ((a[i] >> (shift0 + p * width)) & mask)]++;
    for (unsigned p = 0; p < passes; p++) {
        size_t *h = hist + p * 2048, sum = 0;
        unsigned shift = shift0 + p * width;
        for (size_t d = 0; d <= mask; d++) {
            size_t c = h[d];
            h[d] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++)
            b[h[(a[i] >> shift) & mask]++] = a[i];
        dv_item *t = a;
        a = b;
        b = t;
    }
    return a;
}

size_t dv_slice_block(dv_slice_plan *p, const dv_slicer *s, const dv365_timeline *tl, size_t begin,
                      size_t end, const dv_item **items)
{
    const dv365_config *cfg = s->cfg;
    const size_t W = s->n_words;
    size_t n_items = 0, seg = 0;
    while (seg + 1 < p->n_segs && p->seg_begin[seg + 1] <= begin)
        seg++;

    for (size_t i = begin; i < end; i++) {
        while (i >= p->seg_begin[seg + 1])
            seg++;
        /* 1. the defs that take event i */
        uint64_t *m = p->recs + (i - begin) * p->rec_words;
        const uint64_t *live = p->seg_live + seg * W;
        const uint64_t *am = s->action_mask + (size_t)tl->action[i] * W;
        const uint64_t *mm = s->media_type_mask + (size_t)tl->media_type[i] * W;
        const uint64_t *sm = s->surface_mask + (size_t)tl->surface[i] * W;
        uint64_t any = 0;
        for (size_t w = 0; w < W; w++)
            any |= m[w] = am[w] & mm[w] & sm[w] & live[w];
        if (any == 0)
            continue;
        for (size_t r = 0; r < s->n_ranged; r++) {
            size_t d = s->ranged[r];
            if (bit_get(m, d) && !ranges_take(&cfg->defs[d], tl, i))
                bit_clear(m, d);
        }
        m[W + 2] = seg;
        float *wv = (float *)(m + W); /* indexed by dv_weight - 1 */
        wv[0] = dv_event_weight(tl, i, DV_WEIGHT_WATCH_SCORE);
        wv[1] = dv_event_weight(tl, i, DV_WEIGHT_WATCH_RATIO);
        wv[2] = dv_event_weight(tl, i, DV_WEIGHT_DWELL);
        wv[3] = dv_event_weight(tl, i, DV_WEIGHT_LOG_DWELL);

        /* 2. one item per source that some taking def pools from */
        for (size_t src = 0; src < s->n_sources; src++) {
            const uint64_t *srcm = s->source_mask + src * W;
            uint64_t hit = 0;
            for (size_t w = 0; w < W; w++)
                hit |= m[w] & srcm[w];
            if (hit == 0)
                continue;
            const dv_source *so = &s->sources[src];
            size_t row = dv365_hash_row(tl->id[so->field][i], cfg->table_rows[so->table]);
            uint64_t key = s->table_offset[so->table] + row;
            p->items[n_items++] = (key << (DV_ITEM_EVENT_BITS + s->src_bits)) |
                                  ((uint64_t)src << DV_ITEM_EVENT_BITS) | (uint64_t)(i - begin);
        }
    }
    *items = sort_items(p->items, p->tmp, n_items, DV_ITEM_EVENT_BITS + s->src_bits, s->key_bits,
                        p->hist);
    return n_items;
}
