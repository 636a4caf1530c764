/* slice.h — the compiled slicer: which slices take each event.
 *
 * Compiled once per config (dv_slicer), then per call (timeline + cutoff) a
 * plan (dv_slice_plan) is laid out in the workspace.  Slicing a block of
 * events yields "items": one per (event, source) whose table row is needed,
 * sorted by table row, so that pooling fetches each distinct row once per
 * block, in address order, and adds it into every slice that takes it.
 * Pooling forward and backward both walk these items, so the slicing rules
 * live only here (docs/timeline.md, "Slicing").
 *
 * Terms:
 *  - target: one (slice def, pooled field) pair; it owns n_windows slices.
 *  - source: a distinct (id field, table) pair; several targets may share it
 *    (table sharing).
 *  - segment: a maximal run of events [begin, end) of the time-sorted
 *    timeline lying in the same set of windows.  Windows are contiguous index
 *    ranges, found by binary search, so a call has at most 2W+1 segments. */
#ifndef DV365_SLICE_H
#define DV365_SLICE_H

#include "config.h"
#include "timeline.h"

typedef struct dv_target {
    size_t def, pool;
    size_t source;
} dv_target;

typedef struct dv_source {
    dv_field field;
    size_t table;
    size_t n_targets;
    size_t *targets; /* target indices, ascending */
} dv_source;

typedef struct dv_slicer {
    const dv365_config *cfg;
    size_t n_defs, n_words; /* def bitsets are n_words uint64 */
    /* Categorical criteria as def bitsets: a def takes an event only if its
     * bit is set in all three (the action mask includes the def's kind). */
    uint64_t *action_mask;     /* [n_actions][n_words] */
    uint64_t *media_type_mask; /* [n_media_types][n_words] */
    uint64_t *surface_mask;    /* [n_surfaces][n_words] */
    size_t n_ranged;
    size_t *ranged; /* defs with a dwell / watch ratio / watch score range */
    size_t n_targets;
    dv_target *targets;
    size_t n_sources;
    dv_source *sources;
    uint64_t *source_mask;     /* [n_sources][n_words]: defs pooling from the source */
    uint32_t *src_target;      /* [n_sources][n_defs]: the def's target on the source, or UINT32_MAX */
    uint8_t *def_weight;       /* [n_defs] dv_weight of each def */
    uint64_t *table_offset;    /* [n_tables + 1]: first global row of each table */
    unsigned key_bits;         /* bits of the largest global row */
    unsigned src_bits;         /* bits of the largest source index */
    size_t max_items;          /* most sources one event can need */
    size_t max_dests;          /* most slices one item can feed */
    size_t max_segs;           /* 2 * cfg->n_windows + 1 */
} dv_slicer;

dv365_status dv_slicer_init(dv_slicer *s, const dv365_config *cfg);
void dv_slicer_release(dv_slicer *s);

/* Events sliced at once: bounds the workspace (item event offsets have 20
 * bits).  A variable only so that tests can make it smaller. */
#define DV_SLICE_BLOCK_DEFAULT ((size_t)1 << 20)
extern size_t dv_slice_block_events;

/* One (event, source) pair packed in 64 bits, from the top:
 *   key    (key_bits)  = table_offset[table] + row, the global table row
 *   source (src_bits)  index into sources
 *   event  (20 bits)   offset from the block's first event
 * Sorting on the key bits alone (stably) groups the items by row and keeps
 * time order within a row. */
typedef uint64_t dv_item;
#define DV_ITEM_EVENT_BITS 20
static inline size_t dv_item_event(dv_item it) { return (size_t)(it & ((1u << DV_ITEM_EVENT_BITS) - 1)); }
static inline size_t dv_item_source(const dv_slicer *s, dv_item it)
{
    return (size_t)((it >> DV_ITEM_EVENT_BITS) & (((uint64_t)1 << s->src_bits) - 1));
}
static inline uint64_t dv_item_key(const dv_slicer *s, dv_item it)
{
    return it >> (DV_ITEM_EVENT_BITS + s->src_bits);
}

/* The per-call plan, carved from the workspace. */
typedef struct dv_slice_plan {
    size_t end;          /* events [0, end) are before the cutoff */
    size_t n_segs;
    size_t *seg_begin;   /* [n_segs + 1] */
    uint64_t *seg_live;  /* [n_segs][n_words]: defs with a window covering the segment */
    uint32_t *seg_off;   /* [n_segs][n_targets + 1]: offsets into seg_slices */
    uint32_t *seg_slices;
    size_t block;        /* events per block */
    /* Per event of the block, one record of rec_words uint64: the bitset of
     * defs taking the event, its 4 weights as floats (watch score, watch
     * ratio, dwell s, log dwell) and its segment, so that one cache line
     * serves an item. */
    uint64_t *recs;
    size_t rec_words;    /* n_words + 3 */
    dv_item *items, *tmp; /* [block * max_items] each (radix sort ping-pong) */
    size_t *hist;        /* [2048] */
} dv_slice_plan;

/* Workspace bytes of a plan for up to n_events events. */
size_t dv_slice_plan_bytes(const dv_slicer *s, size_t n_events);

/* Lay out the plan for (tl, cutoff) in arena a. */
dv365_status dv_slice_plan_init(dv_slice_plan *p, const dv_slicer *s, const dv365_timeline *tl,
                                int64_t cutoff, dv_arena *a);

/* Slice events [begin, end) (end - begin <= p->block, end <= p->end) into
 * items sorted by key, ties in event order; *items points at them.  Returns
 * the number of items. */
size_t dv_slice_block(dv_slice_plan *p, const dv_slicer *s, const dv365_timeline *tl, size_t begin,
                      size_t end, const dv_item **items);

/* The slices item `it` feeds and the event's weight in each; returns their
 * number (<= s->max_dests). */
static inline size_t dv_item_dests(const dv_slice_plan *p, const dv_slicer *s, dv_item it,
                                   uint32_t *slices, float *w)
{
    const size_t W = s->n_words, src = dv_item_source(s, it);
    const uint64_t *rec = p->recs + dv_item_event(it) * p->rec_words;
    const float *wv = (const float *)(rec + W); /* [4], indexed by dv_weight - 1 */
    const uint64_t *sm = s->source_mask + src * W;
    const uint32_t *tgt = s->src_target + src * s->n_defs;
    const uint32_t *off = p->seg_off + (size_t)rec[W + 2] * (s->n_targets + 1);
    size_t n = 0;
    for (size_t k = 0; k < W; k++) {
        for (uint64_t bits = rec[k] & sm[k]; bits != 0; bits &= bits - 1) {
            size_t d = k * 64 + (size_t)__builtin_ctzll(bits);
            uint32_t t = tgt[d];
            float wt = s->def_weight[d] == DV_WEIGHT_NONE ? 1.0f : wv[s->def_weight[d] - 1];
            for (uint32_t j = off[t]; j < off[t + 1]; j++) {
                slices[n] = p->seg_slices[j];
                w[n++] = wt;
            }
        }
    }
    return n;
}

#endif
