/* synth_user.c — see synth_user.h. */
#include "synth_user.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t next(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static double uniform(uint64_t *s) { return (double)(next(s) >> 11) * 0x1.0p-53; }

/* Zipf-like rank in [0, n): inverse CDF of a continuous power law (s = 1.1). */
static uint64_t zipf(uint64_t *s, uint64_t n)
{
    double u = uniform(s), a = 1.0 - 1.1;
    double r = pow(1.0 + u * (pow((double)n, a) - 1.0), 1.0 / a);
    uint64_t k = (uint64_t)r - 1;
    return k < n ? k : n - 1;
}

static int32_t code_or(const dv365_config *cfg, dv365_vocab v, const char *name, int32_t dflt)
{
    int32_t c;
    return dv365_config_code(cfg, v, name, &c) == DV365_OK ? c : dflt;
}

void synth_events_free(synth_events *ev)
{
    free(ev->time);
    free(ev->media_id);
    free(ev->author_id);
    free(ev->topic_id);
    free(ev->action);
    free(ev->media_type);
    free(ev->surface);
    free(ev->duration_ms);
    free(ev->dwell_ms);
    memset(ev, 0, sizeof *ev);
}

int synth_user(const dv365_config *cfg, uint64_t seed, size_t n, int64_t now, uint64_t catalog,
               synth_events *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->n = n;
    size_t m = n ? n : 1;
    ev->time = malloc(m * sizeof *ev->time);
    ev->media_id = malloc(m * sizeof(uint64_t));
    ev->author_id = malloc(m * sizeof(uint64_t));
    ev->topic_id = malloc(m * sizeof(uint64_t));
    ev->action = malloc(m * sizeof(int32_t));
    ev->media_type = malloc(m * sizeof(int32_t));
    ev->surface = malloc(m * sizeof(int32_t));
    ev->duration_ms = malloc(m * sizeof(float));
    ev->dwell_ms = malloc(m * sizeof(float));
    if (!ev->time || !ev->media_id || !ev->author_id || !ev->topic_id || !ev->action ||
        !ev->media_type || !ev->surface || !ev->duration_ms || !ev->dwell_ms) {
        synth_events_free(ev);
        return -1;
    }
    size_t n_actions = dv365_config_vocab_size(cfg, DV365_VOCAB_ACTION);
    size_t n_media = dv365_config_vocab_size(cfg, DV365_VOCAB_MEDIA_TYPE);
    size_t n_surf = dv365_config_vocab_size(cfg, DV365_VOCAB_SURFACE);
    int32_t view = code_or(cfg, DV365_VOCAB_ACTION, "view", 0);
    uint64_t s = seed * UINT64_C(0x2545f4914f6cdd1d) + 1;
    const int64_t year = 365 * 86400;
    for (size_t i = 0; i < n; i++) {
        /* times evenly spread over the year, jittered, strictly in order */
        ev->time[i] = now - year + (int64_t)((double)year * ((double)i + uniform(&s)) / (double)m);
        uint64_t item = zipf(&s, catalog);
        ev->media_id[i] = item;
        ev->author_id[i] = item / 16;       /* 16 media per author */
        ev->topic_id[i] = (item * 7) % 997; /* ~1000 topics */
        ev->media_type[i] = (int32_t)(item % n_media);
        ev->surface[i] = (int32_t)(next(&s) % n_surf);
        double dur = 5000.0 + (double)(item % 120) * 1000.0;
        double ratio = -log(1.0 - uniform(&s) * 0.999) * 0.6; /* exponential watch ratio */
        ev->duration_ms[i] = (float)dur;
        ev->dwell_ms[i] = (float)(dur * ratio);
        /* a quarter explicit: any non-view action */
        if (n_actions > 1 && uniform(&s) < 0.25) {
            int32_t a = (int32_t)(next(&s) % (n_actions - 1));
            ev->action[i] = a >= view ? a + 1 : a;
        } else {
            ev->action[i] = view;
        }
    }
    return 0;
}

dv365_status synth_events_append(const synth_events *ev, dv365_timeline *tl)
{
    return dv365_timeline_append(tl, ev->n, ev->time, ev->media_id, ev->author_id, ev->topic_id,
                                 ev->action, ev->media_type, ev->surface, ev->duration_ms,
                                 ev->dwell_ms);
}
