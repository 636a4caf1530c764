/* synth_user.h — one synthetic long-history user, for demos and benchmarks.
 * (The full synthetic world with ground truth is tools/world.c.) */
#ifndef DV365_SYNTH_USER_H
#define DV365_SYNTH_USER_H

#include <stddef.h>
#include <stdint.h>

#include "dv365.h"

/* Columns of n events in time order, owned by the struct. */
typedef struct synth_events {
    size_t n;
    int64_t *time;
    uint64_t *media_id, *author_id, *topic_id;
    int32_t *action, *media_type, *surface;
    float *duration_ms, *dwell_ms;
} synth_events;

/* n events over the year before `now`, about a quarter of them explicit,
 * media ids Zipf-like over `catalog` items, codes valid for cfg (actions
 * must include "view"; other names are used when the config has them).
 * Returns 0, or -1 when out of memory. */
int synth_user(const dv365_config *cfg, uint64_t seed, size_t n, int64_t now, uint64_t catalog,
               synth_events *ev);
void synth_events_free(synth_events *ev);
/* Append all events to tl. */
dv365_status synth_events_append(const synth_events *ev, dv365_timeline *tl);

#endif
