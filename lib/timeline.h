/* timeline.h — one user's UniTi events as columns, kept sorted by time.
 *
 * Besides the caller's columns the timeline stores, per event, the derived
 * quantities that slicing and weighting read (computed once at append), so
 * that pooling never recomputes a logarithm.  Rules: docs/timeline.md. */
#ifndef DV365_TIMELINE_H
#define DV365_TIMELINE_H

#include "config.h"

/* Pooling weights are capped here so that w * row and the weight sums stay
 * finite for any valid event (a 1 ms video watched for hours has a huge
 * watch score). */
#define DV_WEIGHT_CAP 1e30

struct dv365_timeline {
    const dv365_config *cfg;
    size_t n, cap;

    /* caller columns, sorted by time (stable) */
    int64_t *time;
    uint64_t *id[DV_NUM_FIELDS]; /* indexed by dv_field: media, author, topic */
    int32_t *action, *media_type, *surface;
    float *duration_ms, *dwell_ms;

    /* derived at append */
    uint8_t *is_explicit; /* cfg->action_explicit[action] */
    double *dwell_s;      /* dwell_ms / 1000 */
    double *watch_ratio;  /* dwell / duration; 0 when duration is 0 */
    double *watch_score;  /* ln(1+dwell_s) / ln(1+gamma*duration_s); 0 when duration is 0 */
    double *log_dwell;    /* ln(1 + dwell_s) */

    /* reusable scratch for out-of-order appends */
    void *scratch;
    size_t scratch_cap;
};

/* First index i in [0, tl->n] with time[i] >= t (time is sorted). */
size_t dv_timeline_lower_bound(const dv365_timeline *tl, int64_t t);

/* The pooling weight of event i under rule w, in [0, DV_WEIGHT_CAP]. */
static inline float dv_event_weight(const dv365_timeline *tl, size_t i, dv_weight w)
{
    double v;
    switch (w) {
    case DV_WEIGHT_WATCH_SCORE: v = tl->watch_score[i]; break;
    case DV_WEIGHT_WATCH_RATIO: v = tl->watch_ratio[i]; break;
    case DV_WEIGHT_DWELL: v = tl->dwell_s[i]; break;
    case DV_WEIGHT_LOG_DWELL: v = tl->log_dwell[i]; break;
    case DV_WEIGHT_NONE:
    default: return 1.0f;
    }
    return (float)(v < DV_WEIGHT_CAP ? v : DV_WEIGHT_CAP);
}

#endif
