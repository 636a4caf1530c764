/* trajectory_spec.h — what a PyTorch reference needs to slice and pool like
 * libdv365, shared by tests/trajectory_dump.c, bench/train_bench.c and
 * bench/pool_bench.c.
 *
 *   write_slice_spec   the parsed slice rules of a config as JSON, read by
 *                      tests/reference/trajectory_ref.py (spec_rules writes
 *                      the rules alone: bench/pool_bench.c adds cutoff and
 *                      users for bench/pool_peer.py);
 *   add_timeline       a timeline's caller columns as safetensors tensors
 *                      "<prefix>.time", ".media", ... (by pointer: the
 *                      timeline must outlive the writer's write).
 *
 * Test and bench code: it aborts on failure instead of reporting. */
#ifndef DV365_TRAJECTORY_SPEC_H
#define DV365_TRAJECTORY_SPEC_H

#include "config.h"
#include "safetensors.h"
#include "timeline.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static inline void spec_list(FILE *f, const uint8_t *ok, size_t n)
{
    if (ok == NULL) {
        fputs("null", f);
        return;
    }
    fputc('[', f);
    int first = 1;
    for (size_t i = 0; i < n; i++)
        if (ok[i]) {
            fprintf(f, "%s%zu", first ? "" : ",", i);
            first = 0;
        }
    fputc(']', f);
}

static inline void spec_range(FILE *f, const dv_range *r)
{
    fputc('[', f);
    if (r->has_min)
        fprintf(f, "%.17g", r->min);
    else
        fputs("null", f);
    fputc(',', f);
    if (r->has_max)
        fprintf(f, "%.17g", r->max);
    else
        fputs("null", f);
    fputc(']', f);
}

/* The JSON fields from "explicit" to "slices" (the caller writes the
 * others and the braces): explicit [n_actions], vocab sizes, tables [rows],
 * table_names, defs (kind, weight, category lists, ranges), windows
 * [from_s (-1 = unbounded), to_s], slices [def, field, table, window]. */
static inline void spec_rules(FILE *f, const dv365_config *cfg)
{
    fputs("\"explicit\": [", f);
    for (size_t a = 0; a < cfg->n_actions; a++)
        fprintf(f, "%s%d", a ? "," : "", cfg->action_explicit[a] ? 1 : 0);
    fprintf(f, "],\n\"vocab\": {\"actions\": %zu, \"media_types\": %zu, \"surfaces\": %zu},\n",
            cfg->n_actions, cfg->n_media_types, cfg->n_surfaces);
    fputs("\"tables\": [", f);
    for (size_t t = 0; t < cfg->n_tables; t++)
        fprintf(f, "%s%zu", t ? "," : "", cfg->table_rows[t]);
    fputs("],\n\"table_names\": [", f);
    for (size_t t = 0; t < cfg->n_tables; t++)
        fprintf(f, "%s\"%s\"", t ? "," : "", cfg->table_names[t]);
    fputs("],\n\"defs\": [\n", f);
    for (size_t d = 0; d < cfg->n_defs; d++) {
        const dv_slice_def *def = &cfg->defs[d];
        fprintf(f, "%s {\"kind\": %d, \"weight\": %d, \"actions\": ", d ? "," : "",
                (int)def->kind, (int)def->weight);
        spec_list(f, def->action_ok, cfg->n_actions);
        fputs(", \"media_types\": ", f);
        spec_list(f, def->media_type_ok, cfg->n_media_types);
        fputs(", \"surfaces\": ", f);
        spec_list(f, def->surface_ok, cfg->n_surfaces);
        fputs(", \"dwell_ms\": ", f);
        spec_range(f, &def->dwell_ms);
        fputs(", \"watch_ratio\": ", f);
        spec_range(f, &def->watch_ratio);
        fputs(", \"watch_score\": ", f);
        spec_range(f, &def->watch_score);
        fputs("}\n", f);
    }
    fputs("],\n\"windows\": [", f);
    for (size_t w = 0; w < cfg->n_windows; w++)
        fprintf(f, "%s[%lld,%lld]", w ? "," : "",
                cfg->windows[w].from_s == INT64_MAX ? -1LL : (long long)cfg->windows[w].from_s,
                (long long)cfg->windows[w].to_s);
    fputs("],\n\"slices\": [", f);
    for (size_t s = 0; s < cfg->n_slices; s++)
        fprintf(f, "%s[%zu,%d,%zu,%zu]", s ? "," : "", cfg->slices[s].def,
                (int)cfg->slices[s].field, cfg->slices[s].table, cfg->slices[s].window);
    fputc(']', f);
}

/* JSON: dim, gamma, gap and the slice rules (spec_rules). */
static inline int write_slice_spec(const char *path, const dv365_config *cfg)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "{\"dim\": %zu, \"gamma\": %.17g, \"gap\": %lld,\n", cfg->dim, cfg->gamma,
            (long long)cfg->training.gap_s);
    spec_rules(f, cfg);
    fputs("}\n", f);
    return fclose(f) == 0 ? 0 : -1;
}

/* The timeline's caller columns as "<prefix>.<column>" tensors. */
static inline dv365_status add_timeline(dv_st_writer *w, const char *prefix,
                                        const dv365_timeline *tl)
{
    static const char *ids[3] = {"media", "author", "topic"};
    size_t n[1] = {tl->n};
    char name[128];
    dv365_status st;
#define ADD_COL(col, dtype, ptr)                                                    \
    do {                                                                            \
        snprintf(name, sizeof name, "%s.%s", prefix, col);                          \
        if ((st = dv_st_writer_add(w, name, dtype, 1, n, ptr)) != DV365_OK)         \
            return st;                                                              \
    } while (0)
    ADD_COL("time", DV_DTYPE_I64, tl->time);
    for (int f = 0; f < 3; f++)
        ADD_COL(ids[f], DV_DTYPE_U64, tl->id[f]);
    ADD_COL("action", DV_DTYPE_I32, tl->action);
    ADD_COL("media_type", DV_DTYPE_I32, tl->media_type);
    ADD_COL("surface", DV_DTYPE_I32, tl->surface);
    ADD_COL("duration_ms", DV_DTYPE_F32, tl->duration_ms);
    ADD_COL("dwell_ms", DV_DTYPE_F32, tl->dwell_ms);
#undef ADD_COL
    return DV365_OK;
}

#endif
