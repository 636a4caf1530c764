/* pool.c — embedding tables, multi-slice pooling forward and backward.
 *
 * One pass over the events serves every slice: dv_slice_block turns the
 * events into items (event, source), sorted by table row.  Each distinct row
 * is then fetched once, in address order (rows of the next groups are
 * prefetched), and added into every slice of every event that needs it.
 * Fetching rows is the main cost: a 40K-event user needs ~160K (event, table)
 * rows but only ~70K distinct ones, versus ~470K (event, slice) lookups. */
#include "pool.h"

#include <math.h>
#include <string.h>
#include <sys/mman.h>

/* ---------------------------------------------------------------- kernels */

/* 16 floats, unaligned, allowed to alias float: GCC/Clang vector extension,
 * lowered to AVX-512, AVX2 or SSE by the clones below. */
typedef float dv_v16 __attribute__((vector_size(64), aligned(4), may_alias));

/* y[k] += w[k] * x for k < n: one table row added into n slices. */
DV_SIMD_CLONES static void axpy_multi(size_t D, const float *x, size_t n, float *const *y,
                                      const float *w)
{
    size_t j = 0;
    for (; j + 16 <= D; j += 16) {
        dv_v16 r = *(const dv_v16 *)(x + j);
        for (size_t k = 0; k < n; k++)
            *(dv_v16 *)(y[k] + j) += w[k] * r;
    }
    for (; j < D; j++)
        for (size_t k = 0; k < n; k++)
            y[k][j] += w[k] * x[j];
}

/* g += sum_k c[k] * x[k]: one table row's gradient from n slices. */
DV_SIMD_CLONES static void gather_multi(size_t D, float *g, size_t n, const float *const *x,
                                        const float *c)
{
    size_t j = 0;
    for (; j + 16 <= D; j += 16) {
        dv_v16 acc = *(const dv_v16 *)(g + j);
        for (size_t k = 0; k < n; k++)
            acc += c[k] * *(const dv_v16 *)(x[k] + j);
        *(dv_v16 *)(g + j) = acc;
    }
    for (; j < D; j++) {
        float acc = g[j];
        for (size_t k = 0; k < n; k++)
            acc += c[k] * x[k][j];
        g[j] = acc;
    }
}

static inline void prefetch_row(const float *p, size_t D)
{
    for (size_t o = 0; o < D; o += 16) /* one cache line = 16 floats */
        __builtin_prefetch(p + o, 0, 3);
}

/* Distinct rows ahead that are prefetched (~4 KiB in flight at D = 256). */
#ifndef DV_PREFETCH_ROWS
#define DV_PREFETCH_ROWS 4
#endif
/* Items ahead whose event records are prefetched (they are read in row
 * order, i.e. at random). */
#ifndef DV_PREFETCH_RECS
#define DV_PREFETCH_RECS 16
#endif

/* ---------------------------------------------------------------- normal init */

/* Marsaglia & Tsang's ziggurat (2000) with 128 layers.  Following Doornik
 * (2005), the layer index (low 7 bits) and the value (high 32 bits) come
 * from disjoint bits of one 64-bit draw, so they are independent. */
typedef struct zig {
    int64_t kn[128];
    double wn[128], fn[128];
} zig;

static void zig_setup(zig *z)
{
    const double m1 = 2147483648.0, vn = 9.91256303526217e-3;
    double dn = 3.442619855899, tn = dn;
    double q = vn / exp(-0.5 * dn * dn);
    z->kn[0] = (int64_t)((dn / q) * m1);
    z->kn[1] = 0;
    z->wn[0] = q / m1;
    z->wn[127] = dn / m1;
    z->fn[0] = 1.0;
    z->fn[127] = exp(-0.5 * dn * dn);
    for (int i = 126; i >= 1; i--) {
        dn = sqrt(-2.0 * log(vn / dn + exp(-0.5 * dn * dn)));
        z->kn[i + 1] = (int64_t)((dn / tn) * m1);
        tn = dn;
        z->fn[i] = exp(-0.5 * dn * dn);
        z->wn[i] = dn / m1;
    }
}

static inline double uniform_open(dv_rng *r) { return 1.0 - dv_rng_uniform(r); } /* (0, 1] */

/* The slow path: wedges and the tail beyond r. */
static double zig_fix(const zig *z, dv_rng *r, int64_t hz, int iz)
{
    const double tail = 3.442619855899;
    for (;;) {
        double x = (double)hz * z->wn[iz];
        if (iz == 0) {
            double xx, y;
            do {
                xx = -log(uniform_open(r)) / tail;
                y = -log(uniform_open(r));
            } while (y + y < xx * xx);
            return hz > 0 ? tail + xx : -tail - xx;
        }
        if (z->fn[iz] + dv_rng_uniform(r) * (z->fn[iz - 1] - z->fn[iz]) < exp(-0.5 * x * x))
            return x;
        uint64_t u = dv_rng_next(r);
        hz = (int32_t)(u >> 32);
        iz = (int)(u & 127);
        if ((hz < 0 ? -hz : hz) < z->kn[iz])
            return (double)hz * z->wn[iz];
    }
}

void dv_fill_normal(dv_rng *r, float *x, size_t n, float std)
{
    zig z;
    zig_setup(&z);
    for (size_t i = 0; i < n; i++) {
        uint64_t u = dv_rng_next(r);
        int64_t hz = (int32_t)(u >> 32);
        int iz = (int)(u & 127);
        double v = (hz < 0 ? -hz : hz) < z.kn[iz] ? (double)hz * z.wn[iz] : zig_fix(&z, r, hz, iz);
        x[i] = (float)(std * v);
    }
}

/* ---------------------------------------------------------------- pooler */

size_t dv365_hash_row(uint64_t id, size_t rows) { return rows ? dv_mix64(id) % rows : 0; }

/* Large tables are aligned to 2 MiB and marked for transparent huge pages:
 * random row fetches then miss the TLB far less (a hint; ignored where not
 * supported or when the allocator's memory is not eligible). */
#define DV_HUGE ((size_t)2 << 20)
static float *table_alloc(size_t bytes, void **block)
{
    size_t extra = bytes >= 2 * DV_HUGE ? DV_HUGE : 0, total;
    if (__builtin_add_overflow(bytes, extra, &total) || (*block = dv_malloc(total)) == NULL)
        return NULL;
    uintptr_t p = (uintptr_t)*block;
    if (extra == 0)
        return *block;
    p = (p + DV_HUGE - 1) & ~(uintptr_t)(DV_HUGE - 1);
#if defined(MADV_HUGEPAGE)
    (void)madvise((void *)p, bytes & ~(DV_HUGE - 1), MADV_HUGEPAGE);
#endif
    return (float *)p;
}

void dv365_pooler_free(dv365_pooler *pooler)
{
    if (pooler == NULL)
        return;
    if (pooler->blocks != NULL)
        for (size_t t = 0; t < pooler->n_tables; t++)
            dv_free(pooler->blocks[t]);
    dv_free(pooler->blocks);
    dv_free(pooler->tables);
    dv_slicer_release(&pooler->slicer);
    dv_free(pooler);
}

dv365_status dv365_pooler_create(const dv365_config *cfg, uint64_t seed, dv365_pooler **out)
{
    dv_clear_error();
    DV_CHECK_NULL(cfg);
    DV_CHECK_NULL(out);
    if (cfg->dim == 0)
        return dv_error(DV365_E_CONFIG, "dv365_pooler_create: dim is 0");
    if (!isfinite(cfg->init_std) || cfg->init_std < 0)
        return dv_error(DV365_E_CONFIG, "dv365_pooler_create: pooling.init_std = %g is invalid",
                        (double)cfg->init_std);
    dv365_pooler *p = dv_calloc(1, sizeof *p);
    if (p == NULL)
        return dv_error(DV365_E_NOMEM, "dv365_pooler_create: out of memory");
    p->cfg = cfg;
    p->dim = cfg->dim;
    p->n_tables = cfg->n_tables;
    dv365_status st = dv_slicer_init(&p->slicer, cfg);
    if (st != DV365_OK) {
        dv_free(p);
        return st;
    }
    p->tables = dv_calloc(cfg->n_tables + 1, sizeof(float *));
    p->blocks = dv_calloc(cfg->n_tables + 1, sizeof(void *));
    if (p->tables == NULL || p->blocks == NULL) {
        dv365_pooler_free(p);
        return dv_error(DV365_E_NOMEM, "dv365_pooler_create: out of memory");
    }
    for (size_t t = 0; t < cfg->n_tables; t++) {
        size_t n, bytes;
        if (!dv_mul_size(cfg->table_rows[t], cfg->dim, &n) ||
            !dv_mul_size(n, sizeof(float), &bytes) ||
            (p->tables[t] = table_alloc(bytes, &p->blocks[t])) == NULL) {
            dv365_pooler_free(p);
            return dv_error(DV365_E_NOMEM,
                            "dv365_pooler_create: cannot allocate table '%s' (%zu x %zu floats)",
                            cfg->table_names[t], cfg->table_rows[t], cfg->dim);
        }
        /* Each table its own stream, so adding a table never changes the others. */
        dv_rng r;
        dv_rng_seed(&r, seed ^ dv_mix64((uint64_t)t + 1));
        dv_fill_normal(&r, p->tables[t], n, cfg->init_std);
    }
    *out = p;
    return DV365_OK;
}

dv365_status dv365_pooler_table(dv365_pooler *pooler, size_t i, float **data, size_t *rows)
{
    dv_clear_error();
    DV_CHECK_NULL(pooler);
    DV_CHECK_NULL(data);
    DV_CHECK_NULL(rows);
    if (i >= pooler->n_tables)
        return dv_error(DV365_E_INVALID, "dv365_pooler_table: table %zu out of range (%zu tables)",
                        i, pooler->n_tables);
    *data = pooler->tables[i];
    *rows = pooler->cfg->table_rows[i];
    return DV365_OK;
}

/* ---------------------------------------------------------------- workspace */

/* Arrays after the slice plan. */
static size_t extra_bytes(const dv_slicer *s, size_t N)
{
    return dv_align64(N * sizeof(uint64_t)) + dv_align64(N * sizeof(double)) +
           dv_align64((s->max_dests + 1) * sizeof(uint32_t)) +
           dv_align64((s->max_dests + 1) * sizeof(float)) +
           dv_align64((N + 1) * sizeof(float)) +     /* gw */
           dv_align64((N + 1) * sizeof(uint32_t)) +  /* touched */
           dv_align64((N + 1) * sizeof(float)) +     /* tw */
           dv_align64((N + 1) * sizeof(float *));    /* ptr */
}

size_t dv365_pool_workspace_size(const dv365_pooler *pooler, size_t n_events)
{
    if (pooler == NULL)
        return 0;
    return dv_slice_plan_bytes(&pooler->slicer, n_events) +
           extra_bytes(&pooler->slicer, pooler->cfg->n_slices);
}

/* Scratch of one forward / backward call. */
typedef struct pool_call {
    dv_slice_plan plan;
    uint64_t *counts; /* [N] */
    double *wsum;     /* [N] */
    uint32_t *slices; /* [max_dests]: one item's slices */
    float *w;         /* [max_dests]: and weights */
    /* One row group's total weight per slice: gw[slice] (0 = untouched, kept
     * zeroed between groups), the touched slices, their weights, pointers. */
    float *gw;
    uint32_t *touched;
    float *tw;
    const float **ptr;
} pool_call;

/* Shared argument checks and set-up of forward and backward. */
static dv365_status pool_begin(const char *fn, const dv365_pooler *pooler, dv365_workspace *ws,
                               const dv365_timeline *tl, int64_t cutoff, pool_call *c)
{
    if (cutoff < 0 || cutoff > DV365_TIME_MAX)
        return dv_error(DV365_E_TIMESTAMP, "%s: cutoff = %lld is outside [0, %lld]", fn,
                        (long long)cutoff, (long long)DV365_TIME_MAX);
    const dv365_config *a = pooler->cfg, *b = tl->cfg;
    if (a != b && (a->fingerprint != b->fingerprint || a->n_actions != b->n_actions ||
                   a->n_media_types != b->n_media_types || a->n_surfaces != b->n_surfaces))
        return dv_error(DV365_E_MISMATCH,
                        "%s: the timeline was made with a different config than the pooler", fn);
    const dv_slicer *s = &pooler->slicer;
    size_t N = pooler->cfg->n_slices;
    size_t bytes = dv365_pool_workspace_size(pooler, tl->n);
    void *mem = dv_workspace_get(ws, bytes);
    if (mem == NULL)
        return dv_error_context(DV365_E_NOMEM, "%s", fn);
    dv_arena arena = {.base = mem, .used = 0, .cap = bytes};
    dv365_status st = dv_slice_plan_init(&c->plan, s, tl, cutoff, &arena);
    if (st != DV365_OK)
        return st;
    c->counts = dv_arena_take(&arena, N * sizeof(uint64_t));
    c->wsum = dv_arena_take(&arena, N * sizeof(double));
    c->slices = dv_arena_take(&arena, (s->max_dests + 1) * sizeof(uint32_t));
    c->w = dv_arena_take(&arena, (s->max_dests + 1) * sizeof(float));
    c->gw = dv_arena_take(&arena, (N + 1) * sizeof(float));
    c->touched = dv_arena_take(&arena, (N + 1) * sizeof(uint32_t));
    c->tw = dv_arena_take(&arena, (N + 1) * sizeof(float));
    c->ptr = dv_arena_take(&arena, (N + 1) * sizeof(float *));
    if (!c->counts || !c->wsum || !c->slices || !c->w || !c->gw || !c->touched || !c->tw ||
        !c->ptr)
        return dv_error(DV365_E_INTERNAL, "%s: workspace layout", fn);
    memset(c->gw, 0, N * sizeof(float));
    memset(c->counts, 0, N * sizeof(uint64_t));
    memset(c->wsum, 0, N * sizeof(double));
    return DV365_OK;
}

/* The table row of an item. */
static inline const float *item_row(const dv365_pooler *pooler, dv_item it)
{
    const dv_slicer *s = &pooler->slicer;
    size_t t = s->sources[dv_item_source(s, it)].table;
    return pooler->tables[t] + (size_t)(dv_item_key(s, it) - s->table_offset[t]) * pooler->dim;
}

/* The event record of an item (items come in row order: records at random). */
static inline void prefetch_rec(const dv_slice_plan *p, dv_item it)
{
    __builtin_prefetch(p->recs + dv_item_event(it) * p->rec_words);
}

/* End of the group of items sharing items[g]'s row. */
static inline size_t group_end(const dv_slicer *s, const dv_item *items, size_t n, size_t g)
{
    uint64_t key = dv_item_key(s, items[g]);
    size_t e = g + 1;
    while (e < n && dv_item_key(s, items[e]) == key)
        e++;
    return e;
}

/* ---------------------------------------------------------------- forward */

dv365_status dv365_pool_forward(const dv365_pooler *pooler, dv365_workspace *ws,
                                const dv365_timeline *tl, int64_t cutoff, float *X,
                                uint32_t *counts, float *weight_sums)
{
    dv_clear_error();
    DV_CHECK_NULL(pooler);
    DV_CHECK_NULL(ws);
    DV_CHECK_NULL(tl);
    DV_CHECK_NULL(X);
    pool_call c;
    dv365_status st = pool_begin("dv365_pool_forward", pooler, ws, tl, cutoff, &c);
    if (st != DV365_OK)
        return st;

    const dv_slicer *s = &pooler->slicer;
    const size_t D = pooler->dim, N = pooler->cfg->n_slices;
    memset(X, 0, N * D * sizeof(float));
    float **y = (float **)c.ptr;

    for (size_t begin = 0; begin < c.plan.end; begin += c.plan.block) {
        size_t end = DV_MIN(begin + c.plan.block, c.plan.end);
        const dv_item *items;
        size_t n = dv_slice_block(&c.plan, s, tl, begin, end, &items);
        size_t ahead = 0; /* start of the next group to prefetch */
        for (int q = 0; q < DV_PREFETCH_ROWS && ahead < n; q++) {
            prefetch_row(item_row(pooler, items[ahead]), D);
            ahead = group_end(s, items, n, ahead);
        }
        for (size_t g = 0, ge; g < n; g = ge) {
            ge = group_end(s, items, n, g);
            if (ahead < n) {
                prefetch_row(item_row(pooler, items[ahead]), D);
                ahead = group_end(s, items, n, ahead);
            }
            /* Sum the group's weights per slice first (a popular row often
             * recurs in a slice), then add the row once into each slice. */
            size_t nt = 0;
            for (size_t k = g; k < ge; k++) {
                if (k + DV_PREFETCH_RECS < n)
                    prefetch_rec(&c.plan, items[k + DV_PREFETCH_RECS]);
                size_t nd = dv_item_dests(&c.plan, s, items[k], c.slices, c.w);
                for (size_t j = 0; j < nd; j++) {
                    uint32_t sl = c.slices[j];
                    c.counts[sl]++;
                    c.wsum[sl] += c.w[j];
                    if (c.w[j] == 0)
                        continue; /* counts, adds nothing */
                    if (c.gw[sl] == 0)
                        c.touched[nt++] = sl;
                    c.gw[sl] += c.w[j];
                }
            }
            for (size_t q = 0; q < nt; q++) {
                uint32_t sl = c.touched[q];
                y[q] = X + (size_t)sl * D;
                c.tw[q] = c.gw[sl];
                c.gw[sl] = 0;
            }
            axpy_multi(D, item_row(pooler, items[g]), nt, y, c.tw);
        }
    }

    for (size_t i = 0; i < N; i++) {
        float *x = X + i * D;
        if (c.counts[i] == 0 || !(c.wsum[i] > 0)) {
            memset(x, 0, D * sizeof(float));
        } else {
            double invd = 1.0 / c.wsum[i];
            float inv = (float)invd;
            if (isfinite(inv)) {
                for (size_t j = 0; j < D; j++)
                    x[j] *= inv;
            } else {
                /* A weight sum below FLT_MIN (e.g. denormal dwell times,
                 * found by fuzzing): 1/sum overflows a float, scale in double. */
                for (size_t j = 0; j < D; j++)
                    x[j] = (float)(x[j] * invd);
            }
        }
        if (counts != NULL)
            counts[i] = c.counts[i] > UINT32_MAX ? UINT32_MAX : (uint32_t)c.counts[i];
        if (weight_sums != NULL)
            weight_sums[i] = (float)c.wsum[i];
    }
    return DV365_OK;
}

/* ---------------------------------------------------------------- gradients */

dv365_status dv365_pool_grad_create(const dv365_pooler *pooler, dv365_pool_grad **out)
{
    dv_clear_error();
    DV_CHECK_NULL(pooler);
    DV_CHECK_NULL(out);
    dv365_pool_grad *g = dv_calloc(1, sizeof *g);
    if (g != NULL && (g->t = dv_calloc(pooler->n_tables + 1, sizeof *g->t)) == NULL) {
        dv_free(g);
        g = NULL;
    }
    if (g == NULL)
        return dv_error(DV365_E_NOMEM, "dv365_pool_grad_create: out of memory");
    g->n_tables = pooler->n_tables;
    g->dim = pooler->dim;
    *out = g;
    return DV365_OK;
}

void dv365_pool_grad_free(dv365_pool_grad *grad)
{
    if (grad == NULL)
        return;
    for (size_t t = 0; t < grad->n_tables; t++) {
        dv_free(grad->t[t].rows);
        dv_free(grad->t[t].grads);
    }
    dv_free(grad->t);
    dv_free(grad);
}

dv365_status dv365_pool_grad_table(const dv365_pool_grad *grad, size_t t, size_t *n_rows,
                                   const size_t **rows, const float **grad_rows)
{
    dv_clear_error();
    DV_CHECK_NULL(grad);
    DV_CHECK_NULL(n_rows);
    DV_CHECK_NULL(rows);
    DV_CHECK_NULL(grad_rows);
    if (t >= grad->n_tables)
        return dv_error(DV365_E_INVALID,
                        "dv365_pool_grad_table: table %zu out of range (%zu tables)", t,
                        grad->n_tables);
    *n_rows = grad->t[t].n;
    *rows = grad->t[t].rows;
    *grad_rows = grad->t[t].grads;
    return DV365_OK;
}

/* A zeroed gradient row for `row`, appended (capacity doubles when full). */
static float *grad_append(dv_grad_table *g, size_t D, size_t row)
{
    if (g->n == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 256, rbytes, gbytes;
        if (!dv_mul_size(cap, sizeof(size_t), &rbytes) ||
            !dv_mul_size(cap, D * sizeof(float), &gbytes) ||
            !dv_grow((void **)&g->rows, g->cap * sizeof(size_t), rbytes) ||
            !dv_grow((void **)&g->grads, g->cap * D * sizeof(float), gbytes))
            return NULL;
        g->cap = cap;
    }
    g->rows[g->n] = row;
    float *out = g->grads + g->n * D;
    memset(out, 0, D * sizeof(float));
    g->n++;
    return out;
}

/* Several blocks each give ascending rows: sort all slots by row (stable)
 * and sum the repeats, so every row appears once, ascending. */
static bool grad_merge(dv_grad_table *g, size_t D)
{
    size_t n = g->n, gbytes;
    if (n < 2)
        return true;
    size_t *a = dv_malloc(n * sizeof *a), *b = dv_malloc(n * sizeof *b);
    float *out = dv_mul_size(g->cap, D * sizeof(float), &gbytes) ? dv_malloc(gbytes) : NULL;
    if (a == NULL || b == NULL || out == NULL) {
        dv_free(a);
        dv_free(b);
        dv_free(out);
        return false;
    }
    for (size_t i = 0; i < n; i++)
        a[i] = i;
    for (size_t width = 1; width < n; width *= 2) { /* bottom-up merge sort */
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = DV_MIN(lo + width, n), hi = DV_MIN(lo + 2 * width, n);
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                b[k++] = g->rows[a[j]] < g->rows[a[i]] ? a[j++] : a[i++];
            while (i < mid)
                b[k++] = a[i++];
            while (j < hi)
                b[k++] = a[j++];
        }
        size_t *t = a;
        a = b;
        b = t;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const float *src = g->grads + a[i] * D;
        if (m > 0 && b[m - 1] == g->rows[a[i]]) {
            for (size_t j = 0; j < D; j++)
                out[(m - 1) * D + j] += src[j];
        } else {
            b[m] = g->rows[a[i]];
            memcpy(out + m * D, src, D * sizeof(float));
            m++;
        }
    }
    memcpy(g->rows, b, m * sizeof *b);
    dv_free(g->grads);
    g->grads = out;
    g->n = m;
    dv_free(a);
    dv_free(b);
    return true;
}

static void grad_reset(dv365_pool_grad *grad)
{
    for (size_t t = 0; t < grad->n_tables; t++)
        grad->t[t].n = 0;
}

/* ---------------------------------------------------------------- backward */

dv365_status dv365_pool_backward(const dv365_pooler *pooler, dv365_workspace *ws,
                                 const dv365_timeline *tl, int64_t cutoff, const float *dX,
                                 dv365_pool_grad *grad)
{
    dv_clear_error();
    DV_CHECK_NULL(pooler);
    DV_CHECK_NULL(ws);
    DV_CHECK_NULL(tl);
    DV_CHECK_NULL(dX);
    DV_CHECK_NULL(grad);
    static const char *fn = "dv365_pool_backward";
    if (grad->n_tables != pooler->n_tables || grad->dim != pooler->dim)
        return dv_error(DV365_E_MISMATCH,
                        "%s: grad was made for %zu tables of dim %zu, the pooler has %zu of dim %zu",
                        fn, grad->n_tables, grad->dim, pooler->n_tables, pooler->dim);
    pool_call c;
    dv365_status st = pool_begin(fn, pooler, ws, tl, cutoff, &c);
    if (st != DV365_OK)
        return st;
    grad_reset(grad);

    const dv_slicer *s = &pooler->slicer;
    const size_t D = pooler->dim, N = pooler->cfg->n_slices;

    /* Pass 1: the weight sums (no table access). */
    for (size_t begin = 0; begin < c.plan.end; begin += c.plan.block) {
        size_t end = DV_MIN(begin + c.plan.block, c.plan.end);
        const dv_item *items;
        size_t n = dv_slice_block(&c.plan, s, tl, begin, end, &items);
        for (size_t k = 0; k < n; k++) {
            if (k + DV_PREFETCH_RECS < n)
                prefetch_rec(&c.plan, items[k + DV_PREFETCH_RECS]);
            size_t nd = dv_item_dests(&c.plan, s, items[k], c.slices, c.w);
            for (size_t j = 0; j < nd; j++)
                c.wsum[c.slices[j]] += c.w[j];
        }
    }
    /* wsum now holds 1 / weight sum (0 for slices that pool to a zero row). */
    for (size_t i = 0; i < N; i++)
        c.wsum[i] = c.wsum[i] > 0 ? 1.0 / c.wsum[i] : 0.0;

    /* Pass 2: per distinct row, dT[row] = sum over its (event, slice) pairs
     * of (w / wsum) dX[slice].  Items come sorted by row, so rows are unique
     * and ascending per table within a block; timelines of several blocks
     * are merged at the end. */
    for (size_t begin = 0; begin < c.plan.end; begin += c.plan.block) {
        size_t end = DV_MIN(begin + c.plan.block, c.plan.end);
        const dv_item *items;
        size_t n = dv_slice_block(&c.plan, s, tl, begin, end, &items);
        for (size_t g = 0, ge; g < n; g = ge) {
            ge = group_end(s, items, n, g);
            size_t t = s->sources[dv_item_source(s, items[g])].table;
            size_t nt = 0;
            for (size_t k = g; k < ge; k++) {
                if (k + DV_PREFETCH_RECS < n)
                    prefetch_rec(&c.plan, items[k + DV_PREFETCH_RECS]);
                size_t nd = dv_item_dests(&c.plan, s, items[k], c.slices, c.w);
                for (size_t j = 0; j < nd; j++) {
                    uint32_t sl = c.slices[j];
                    float cj = (float)((double)c.w[j] * c.wsum[sl]);
                    if (cj == 0)
                        continue; /* zero weight: this membership has no gradient */
                    if (c.gw[sl] == 0)
                        c.touched[nt++] = sl;
                    c.gw[sl] += cj;
                }
            }
            if (nt == 0)
                continue; /* the row has no gradient: not listed */
            for (size_t q = 0; q < nt; q++) {
                uint32_t sl = c.touched[q];
                c.ptr[q] = dX + (size_t)sl * D;
                c.tw[q] = c.gw[sl];
                c.gw[sl] = 0;
            }
            float *gr = grad_append(&grad->t[t], D,
                                    (size_t)(dv_item_key(s, items[g]) - s->table_offset[t]));
            if (gr == NULL) {
                grad_reset(grad);
                return dv_error(DV365_E_NOMEM, "%s: cannot grow the gradient", fn);
            }
            gather_multi(D, gr, nt, c.ptr, c.tw);
        }
    }
    if (c.plan.end > c.plan.block)
        for (size_t t = 0; t < grad->n_tables; t++)
            if (!grad_merge(&grad->t[t], D)) {
                grad_reset(grad);
                return dv_error(DV365_E_NOMEM, "%s: cannot merge the gradient rows", fn);
            }
    return DV365_OK;
}
