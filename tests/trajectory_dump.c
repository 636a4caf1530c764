/* trajectory_dump.c — train the whole model for a few steps and dump what a
 * PyTorch reference needs to repeat them (tests/reference/trajectory_ref.py).
 *
 * usage: trajectory_dump CONFIG OUTDIR STEPS BATCH SEED NTHREADS
 *
 * The model is dv365_model_init(CONFIG, SEED); six synthetic users
 * (tools/synth_user.c, plus a burst of events in the last two days, some
 * of them inside the 24 h gap) give the timelines; every step draws BATCH
 * examples (user, one of three label times, candidate ids that collide in
 * the item tables, dense features, labels) from a seeded generator, so
 * several examples share a (user, label time) group.  Written:
 *
 *   OUTDIR/init/      the model before training (dv365_model_save)
 *   OUTDIR/final/     the model after STEPS steps
 *   OUTDIR/spec.json  the parsed slice rules (tests/trajectory_spec.h)
 *   OUTDIR/steps.safetensors
 *     user<u>.<column>            the timelines' events
 *     loss [STEPS] F64, task_loss [STEPS, T] F64
 *     s<k>.user [B] I64 (user index), s<k>.label_time [B] I64,
 *     s<k>.items [B,3] U64, s<k>.dense [B,n_dense], s<k>.labels [B,T],
 *     s<k>.group [B] I64 (group of each example, groups = distinct
 *     (user, label time - gap) in order of first appearance),
 *     s<k>.g<g>.{slice,table,row,event} I64 and .w F32: the pooling
 *     membership of group g, one entry per (event, slice) that the slicer
 *     (lib/slice.h) yields for the group's timeline and cutoff, with the
 *     event's raw pooling weight. */
#include "config.h"
#include "model.h"
#include "pool.h"
#include "safetensors.h"
#include "slice.h"
#include "synth_user.h"
#include "timeline.h"
#include "trajectory_spec.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CHECK(call)                                                                   \
    do {                                                                              \
        dv365_status st_ = (call);                                                    \
        if (st_ != DV365_OK) {                                                        \
            fprintf(stderr, "%s failed: %s\n", #call, dv365_last_error());            \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

#define N_USERS 6
#define NOW INT64_C(1750000000)

/* Every array handed to the writer must live until it writes: keep them. */
static void *keep[1 << 16];
static size_t n_keep;
static void *xalloc(size_t bytes)
{
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p || n_keep == sizeof keep / sizeof keep[0]) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return keep[n_keep++] = p;
}

/* Add a tensor named by fmt, ... (the writer copies the name). */
__attribute__((format(printf, 6, 7))) static void add(dv_st_writer *w, dv_dtype dt, size_t ndim,
                                                      const size_t *shape, const void *data,
                                                      const char *fmt, ...)
{
    char name[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    CHECK(dv_st_writer_add(w, name, dt, ndim, shape, data));
}

/* The slicer's (event, slice) entries for tl before cutoff, written as the
 * tensors "<prefix>.slice/.table/.row/.event/.w". */
static void dump_membership(dv_st_writer *w, const char *prefix, const dv365_pooler *pooler,
                            const dv365_timeline *tl, int64_t cutoff)
{
    const dv_slicer *s = &pooler->slicer;
    size_t bytes = dv_slice_plan_bytes(s, tl->n);
    void *mem = dv_malloc(bytes);
    uint32_t *sl = malloc((s->max_dests + 1) * sizeof *sl);
    float *wt = malloc((s->max_dests + 1) * sizeof *wt);
    if (!mem || !sl || !wt)
        exit(1);
    dv_arena arena = {.base = mem, .used = 0, .cap = bytes};
    dv_slice_plan plan;
    CHECK(dv_slice_plan_init(&plan, s, tl, cutoff, &arena));
    /* first pass counts, second fills */
    size_t cap = 0, n = 0;
    int64_t *e_slice = NULL, *e_table = NULL, *e_row = NULL, *e_event = NULL;
    float *e_w = NULL;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            cap = n;
            n = 0;
            e_slice = xalloc(cap * 8), e_table = xalloc(cap * 8), e_row = xalloc(cap * 8);
            e_event = xalloc(cap * 8), e_w = xalloc(cap * 4);
        }
        for (size_t begin = 0; begin < plan.end; begin += plan.block) {
            size_t end = DV_MIN(begin + plan.block, plan.end);
            const dv_item *items;
            size_t ni = dv_slice_block(&plan, s, tl, begin, end, &items);
            for (size_t k = 0; k < ni; k++) {
                size_t table = s->sources[dv_item_source(s, items[k])].table;
                size_t row = (size_t)(dv_item_key(s, items[k]) - s->table_offset[table]);
                size_t nd = dv_item_dests(&plan, s, items[k], sl, wt);
                for (size_t j = 0; j < nd; j++, n++) {
                    if (pass == 0)
                        continue;
                    e_slice[n] = sl[j];
                    e_table[n] = (int64_t)table;
                    e_row[n] = (int64_t)row;
                    e_event[n] = (int64_t)(begin + dv_item_event(items[k]));
                    e_w[n] = wt[j];
                }
            }
        }
    }
    size_t shape[1] = {n};
    add(w, DV_DTYPE_I64, 1, shape, e_slice, "%s.slice", prefix);
    add(w, DV_DTYPE_I64, 1, shape, e_table, "%s.table", prefix);
    add(w, DV_DTYPE_I64, 1, shape, e_row, "%s.row", prefix);
    add(w, DV_DTYPE_I64, 1, shape, e_event, "%s.event", prefix);
    add(w, DV_DTYPE_F32, 1, shape, e_w, "%s.w", prefix);
    dv_free(mem);
    free(sl);
    free(wt);
}

static double normal(dv_rng *r) { return dv_rng_normal(r); }

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s CONFIG OUTDIR STEPS BATCH SEED NTHREADS\n", argv[0]);
        return 2;
    }
    const char *out = argv[2];
    size_t steps = strtoull(argv[3], NULL, 10), B = strtoull(argv[4], NULL, 10);
    uint64_t seed = strtoull(argv[5], NULL, 10);
    int nthreads = atoi(argv[6]);
    if (steps == 0 || B == 0 || nthreads < 1) {
        fprintf(stderr, "STEPS, BATCH and NTHREADS must be > 0\n");
        return 2;
    }
    char path[4096];

    dv365_model *m;
    CHECK(dv365_model_init(argv[1], seed, &m));
    const dv365_config *cfg = dv365_model_config(m);
    snprintf(path, sizeof path, "%s/init", out);
    CHECK(dv365_model_save(m, path));
    snprintf(path, sizeof path, "%s/spec.json", out);
    if (write_slice_spec(path, cfg)) {
        fprintf(stderr, "cannot write %s\n", path);
        return 1;
    }
    const size_t T = dv365_config_num_tasks(cfg), n_dense = dv365_config_num_dense(cfg);
    const int64_t gap = cfg->training.gap_s;

    dv_st_writer *w;
    CHECK(dv_st_writer_create(&w));

    /* users: a year of synthetic history, then a burst over the last 2 days */
    dv365_timeline *tl[N_USERS];
    for (size_t u = 0; u < N_USERS; u++) {
        CHECK(dv365_timeline_create(cfg, &tl[u]));
        synth_events ev;
        if (synth_user(cfg, seed * 131 + u, 150 + 90 * u, NOW - 2 * 86400, 2500, &ev))
            return 1;
        CHECK(synth_events_append(&ev, tl[u]));
        synth_events_free(&ev);
        if (synth_user(cfg, seed * 131 + 1000 + u, 30, NOW, 2500, &ev))
            return 1;
        for (size_t i = 0; i < ev.n; i++) /* squeeze into [NOW - 2 d, NOW) */
            ev.time[i] = NOW - 2 * 86400 + (ev.time[i] - (NOW - 365 * 86400)) / 183;
        CHECK(synth_events_append(&ev, tl[u]));
        synth_events_free(&ev);
        char prefix[32];
        snprintf(prefix, sizeof prefix, "user%zu", u);
        CHECK(add_timeline(w, prefix, tl[u]));
    }

    dv365_trainer *t;
    CHECK(dv365_trainer_create(m, &t));
    double *loss = xalloc(steps * sizeof(double)), *task_loss = xalloc(steps * T * sizeof(double));
    dv_rng rng;
    dv_rng_seed(&rng, seed ^ 0x7a7a);
    const int64_t label_offsets[3] = {0, 12 * 3600, 36 * 3600};
    for (size_t k = 0; k < steps; k++) {
        int64_t *user = xalloc(B * 8), *label = xalloc(B * 8), *group = xalloc(B * 8);
        uint64_t *items = xalloc(B * 3 * 8);
        float *dense = xalloc((B * n_dense + 1) * 4), *labels = xalloc(B * T * 4);
        const dv365_timeline **tls = xalloc(B * sizeof *tls);
        for (size_t b = 0; b < B; b++) {
            user[b] = (int64_t)(dv_rng_next(&rng) % N_USERS);
            label[b] = NOW - label_offsets[dv_rng_next(&rng) % 3];
            tls[b] = tl[user[b]];
            uint64_t media = dv_rng_next(&rng) % 300; /* repeats inside a batch */
            items[3 * b] = media;
            items[3 * b + 1] = media / 4;
            items[3 * b + 2] = media % 23;
            for (size_t i = 0; i < n_dense; i++)
                dense[b * n_dense + i] = (float)normal(&rng);
            for (size_t i = 0; i < T; i++)
                labels[b * T + i] = dv365_config_task_is_binary(cfg, i)
                                        ? (dv_rng_uniform(&rng) < 0.3 ? 1.0f : 0.0f)
                                        : (float)(-20.0 * log(1.0 - dv_rng_uniform(&rng)));
        }
        /* groups as the trainer forms them; dump each one's membership */
        size_t G = 0;
        int64_t g_user[4096], g_cut[4096];
        for (size_t b = 0; b < B; b++) {
            size_t g = 0;
            while (g < G && !(g_user[g] == user[b] && g_cut[g] == label[b] - gap))
                g++;
            if (g == G) {
                if (G == 4096)
                    return 1;
                g_user[G] = user[b];
                g_cut[G++] = label[b] - gap;
            }
            group[b] = (int64_t)g;
        }
        char name[128];
        for (size_t g = 0; g < G; g++) {
            snprintf(name, sizeof name, "s%zu.g%zu", k, g);
            dump_membership(w, name, m->pooler, tl[g_user[g]], g_cut[g]);
        }
        size_t sb[1] = {B}, s3[2] = {B, 3}, sd[2] = {B, n_dense}, st[2] = {B, T};
        add(w, DV_DTYPE_I64, 1, sb, user, "s%zu.user", k);
        add(w, DV_DTYPE_I64, 1, sb, label, "s%zu.label_time", k);
        add(w, DV_DTYPE_I64, 1, sb, group, "s%zu.group", k);
        add(w, DV_DTYPE_U64, 2, s3, items, "s%zu.items", k);
        add(w, DV_DTYPE_F32, 2, sd, dense, "s%zu.dense", k);
        add(w, DV_DTYPE_F32, 2, st, labels, "s%zu.labels", k);

        CHECK(dv365_trainer_step(t, B, tls, label, items, n_dense ? dense : NULL, labels,
                                 &loss[k], nthreads));
        for (size_t i = 0; i < T; i++)
            CHECK(dv365_trainer_task_loss(t, i, &task_loss[k * T + i]));
    }
    size_t sl[1] = {steps}, stl[2] = {steps, T};
    add(w, DV_DTYPE_F64, 1, sl, loss, "loss");
    add(w, DV_DTYPE_F64, 2, stl, task_loss, "task_loss");
    char num[32];
    snprintf(num, sizeof num, "%zu", steps);
    CHECK(dv_st_writer_set_metadata(w, "steps", num));
    snprintf(path, sizeof path, "%s/steps.safetensors", out);
    CHECK(dv_st_writer_write(w, path));
    dv_st_writer_free(w);
    snprintf(path, sizeof path, "%s/final", out);
    CHECK(dv365_model_save(m, path));

    dv365_trainer_free(t);
    for (size_t u = 0; u < N_USERS; u++)
        dv365_timeline_free(tl[u]);
    dv365_model_free(m);
    for (size_t i = 0; i < n_keep; i++)
        free(keep[i]);
    return 0;
}
