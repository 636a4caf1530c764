/* fuzz_timeline.c — timeline ingestion (dv365_timeline_append) with
 * arbitrary columns, then slicing and pooling (forward and backward) with
 * configs/small.yaml at a cutoff taken from the input.
 *
 * Input: int32 cutoff offset, then events of 28 bytes:
 *   u8 ctl | u32 time | u32 media | u32 author | u32 topic |
 *   i8 action | i8 media_type | i8 surface | u32 duration | u32 dwell
 * ctl bit 0: the time is raw (may be negative / after 2100) instead of
 * within 400 days before the base; bit 1: duration/dwell are raw float bits
 * (NaN, Inf, negative); bit 2: this event ends an append call; bit 3: clear
 * the timeline before the next call.  Appends either add all their events
 * or none; the timeline stays sorted; pooling gives finite rows. */
#include "fuzz.h"

#include "pool.h"
#include "timeline.h"

#include <math.h>

#define BASE INT64_C(1717200000)
#define MAX_EVENTS 2048

static dv365_config *g_cfg;
static dv365_pooler *g_pooler;
static dv365_workspace *g_ws;
static dv365_pool_grad *g_grad;

static void setup(void)
{
    size_t len;
    char *yaml = fuzz_read_source("configs/small.yaml", &len);
    FUZZ_CHECK(yaml != NULL);
    FUZZ_CHECK(dv365_config_parse(yaml, len, &g_cfg) == DV365_OK);
    free(yaml);
    FUZZ_CHECK(dv365_pooler_create(g_cfg, 7, &g_pooler) == DV365_OK);
    FUZZ_CHECK(dv365_workspace_create(&g_ws) == DV365_OK);
    FUZZ_CHECK(dv365_pool_grad_create(g_pooler, &g_grad) == DV365_OK);
}

typedef struct columns {
    int64_t time[MAX_EVENTS];
    uint64_t media[MAX_EVENTS], author[MAX_EVENTS], topic[MAX_EVENTS];
    int32_t action[MAX_EVENTS], media_type[MAX_EVENTS], surface[MAX_EVENTS];
    float duration[MAX_EVENTS], dwell[MAX_EVENTS];
} columns;

static size_t g_total; /* events the timeline should hold */

static void append(dv365_timeline *tl, const columns *c, size_t from, size_t n)
{
    size_t before = dv365_timeline_size(tl);
    dv365_status st = dv365_timeline_append(
        tl, n, c->time + from, c->media + from, c->author + from, c->topic + from,
        c->action + from, c->media_type + from, c->surface + from, c->duration + from,
        c->dwell + from);
    fuzz_check_status(st);
    if (st == DV365_OK)
        g_total = before + n;
    FUZZ_CHECK(dv365_timeline_size(tl) == g_total); /* all or nothing */
    for (size_t i = 1; i < tl->n; i++)
        FUZZ_CHECK(tl->time[i - 1] <= tl->time[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (g_cfg == NULL)
        setup();
    static columns c;
    fuzz_input in = {data, size};
    int64_t cutoff = BASE + (int32_t)fuzz_take_u32(&in);
    dv365_timeline *tl = NULL;
    FUZZ_CHECK(dv365_timeline_create(g_cfg, &tl) == DV365_OK);
    g_total = 0;

    size_t n = 0, start = 0;
    while (in.left > 0 && n < MAX_EVENTS) {
        uint8_t ctl = fuzz_byte(&in);
        uint32_t t = fuzz_take_u32(&in);
        c.time[n] = (ctl & 1) ? (int64_t)(int32_t)t * 1024 : BASE - (int64_t)(t % (400u * 86400u));
        c.media[n] = fuzz_take_u32(&in);
        c.author[n] = fuzz_take_u32(&in) % 64; /* collisions within a slice */
        c.topic[n] = fuzz_take_u32(&in);
        c.action[n] = (int8_t)fuzz_byte(&in);
        c.media_type[n] = (int8_t)fuzz_byte(&in);
        c.surface[n] = (int8_t)fuzz_byte(&in);
        uint32_t du = fuzz_take_u32(&in), dw = fuzz_take_u32(&in);
        if (ctl & 2) {
            memcpy(&c.duration[n], &du, 4);
            memcpy(&c.dwell[n], &dw, 4);
        } else {
            c.duration[n] = (float)(du & 0xffff) * 10.0f;
            c.dwell[n] = (float)(dw & 0xffff) * 10.0f;
        }
        n++;
        if (ctl & 4) {
            append(tl, &c, start, n - start);
            start = n;
        }
        if (ctl & 8) {
            dv365_timeline_clear(tl);
            g_total = 0;
        }
    }
    if (n > start)
        append(tl, &c, start, n - start);

    size_t N = dv365_config_num_slices(g_cfg), D = dv365_config_dim(g_cfg);
    float *X = malloc(N * D * sizeof(float)), *ws = malloc(N * sizeof(float));
    uint32_t *counts = malloc(N * sizeof(uint32_t));
    FUZZ_CHECK(X && ws && counts);
    dv365_status st = dv365_pool_forward(g_pooler, g_ws, tl, cutoff, X, counts, ws);
    fuzz_check_status(st);
    if (cutoff < 0) { /* BASE + a negative offset may reach before 1970 */
        FUZZ_CHECK(st == DV365_E_TIMESTAMP);
        goto done;
    }
    FUZZ_CHECK(st == DV365_OK);
    size_t before_cutoff = dv_timeline_lower_bound(tl, cutoff);
    for (size_t s = 0; s < N; s++) {
        FUZZ_CHECK(counts[s] <= before_cutoff);
        FUZZ_CHECK(isfinite(ws[s]) && ws[s] >= 0);
        for (size_t d = 0; d < D; d++) {
            if (!isfinite(X[s * D + d]))
                fprintf(stderr, "slice %s: count %u, weight sum %g, X[%zu] = %g\n",
                        dv365_config_slice_name(g_cfg, s), (unsigned)counts[s], (double)ws[s],
                        d, (double)X[s * D + d]);
            FUZZ_CHECK(isfinite(X[s * D + d]));
            if (counts[s] == 0)
                FUZZ_CHECK(X[s * D + d] == 0.0f);
        }
    }
    /* backward with dX = X: rows distinct, ascending and inside their table */
    st = dv365_pool_backward(g_pooler, g_ws, tl, cutoff, X, g_grad);
    fuzz_check_status(st);
    FUZZ_CHECK(st == DV365_OK);
    for (size_t t = 0; t < dv365_config_num_tables(g_cfg); t++) {
        size_t nr;
        const size_t *rows;
        const float *g;
        FUZZ_CHECK(dv365_pool_grad_table(g_grad, t, &nr, &rows, &g) == DV365_OK);
        for (size_t i = 0; i < nr; i++) {
            FUZZ_CHECK(rows[i] < dv365_config_table_rows(g_cfg, t));
            FUZZ_CHECK(i == 0 || rows[i - 1] < rows[i]);
            for (size_t d = 0; d < D; d++)
                FUZZ_CHECK(isfinite(g[i * D + d]));
        }
    }
done:
    free(X);
    free(ws);
    free(counts);
    dv365_timeline_free(tl);
    return 0;
}
