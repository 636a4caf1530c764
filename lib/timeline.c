/* timeline.c — validated, time-sorted event columns (docs/timeline.md). */
#include "timeline.h"

#include <math.h>
#include <string.h>

/* Every column with its element size, so growing and permuting is one loop. */
#define DV_TL_NCOLS 15
static void timeline_columns(dv365_timeline *tl, void ***cols, size_t *sizes)
{
    size_t k = 0;
#define COL(p) (cols[k] = (void **)&(p), sizes[k] = sizeof *(p), k++)
    COL(tl->time);
    COL(tl->id[DV_FIELD_MEDIA]);
    COL(tl->id[DV_FIELD_AUTHOR]);
    COL(tl->id[DV_FIELD_TOPIC]);
    COL(tl->action);
    COL(tl->media_type);
    COL(tl->surface);
    COL(tl->duration_ms);
    COL(tl->dwell_ms);
    COL(tl->is_explicit);
    COL(tl->dwell_s);
    COL(tl->watch_ratio);
    COL(tl->watch_score);
    COL(tl->log_dwell);
#undef COL
    cols[k] = NULL; /* terminator */
    sizes[k] = 0;
}

dv365_status dv365_timeline_create(const dv365_config *cfg, dv365_timeline **out)
{
    dv_clear_error();
    DV_CHECK_NULL(cfg);
    DV_CHECK_NULL(out);
    dv365_timeline *tl = dv_calloc(1, sizeof *tl);
    if (tl == NULL)
        return dv_error(DV365_E_NOMEM, "dv365_timeline_create: out of memory");
    tl->cfg = cfg;
    *out = tl;
    return DV365_OK;
}

void dv365_timeline_free(dv365_timeline *tl)
{
    if (tl == NULL)
        return;
    void **cols[DV_TL_NCOLS];
    size_t sizes[DV_TL_NCOLS];
    timeline_columns(tl, cols, sizes);
    for (size_t c = 0; cols[c] != NULL; c++)
        dv_free(*cols[c]);
    dv_free(tl->scratch);
    dv_free(tl);
}

void dv365_timeline_clear(dv365_timeline *tl)
{
    if (tl != NULL)
        tl->n = 0;
}

size_t dv365_timeline_size(const dv365_timeline *tl) { return tl ? tl->n : 0; }

size_t dv_timeline_lower_bound(const dv365_timeline *tl, int64_t t)
{
    size_t lo = 0, hi = tl->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (tl->time[mid] < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Check all n events before touching the timeline (docs/timeline.md). */
static dv365_status validate(const dv365_config *cfg, size_t n, const int64_t *time,
                             const int32_t *action, const int32_t *media_type,
                             const int32_t *surface, const float *duration_ms,
                             const float *dwell_ms)
{
    static const char *fn = "dv365_timeline_append";
    const struct {
        const char *name;
        const int32_t *codes;
        size_t size;
    } vocab[3] = {{"action", action, cfg->n_actions},
                  {"media_type", media_type, cfg->n_media_types},
                  {"surface", surface, cfg->n_surfaces}};
    for (size_t i = 0; i < n; i++) {
        if (time[i] < 0 || time[i] > DV365_TIME_MAX)
            return dv_error(DV365_E_TIMESTAMP,
                            "%s: event %zu: time = %lld is %s (unix seconds must be in "
                            "[0, %lld], 1970-01-01 to 2100-01-01)",
                            fn, i, (long long)time[i],
                            time[i] < 0 ? "before 1970" : "after 2100",
                            (long long)DV365_TIME_MAX);
        for (int v = 0; v < 3; v++) {
            int32_t c = vocab[v].codes[i];
            if (c < 0 || (size_t)c >= vocab[v].size)
                return dv_error(DV365_E_INVALID,
                                "%s: event %zu: %s = %d is not a known code (the config's "
                                "%s vocabulary has codes 0..%zu)",
                                fn, i, vocab[v].name, (int)c, vocab[v].name,
                                vocab[v].size ? vocab[v].size - 1 : 0);
        }
        const struct {
            const char *name;
            float v;
        } ms[2] = {{"duration_ms", duration_ms[i]}, {"dwell_ms", dwell_ms[i]}};
        for (int k = 0; k < 2; k++) {
            if (!isfinite(ms[k].v))
                return dv_error(DV365_E_NONFINITE, "%s: event %zu: %s = %g is not finite", fn,
                                i, ms[k].name, (double)ms[k].v);
            if (ms[k].v < 0)
                return dv_error(DV365_E_INVALID, "%s: event %zu: %s = %g is negative", fn, i,
                                ms[k].name, (double)ms[k].v);
        }
    }
    return DV365_OK;
}

/* Room for `total` events in every column (each column grows on its own;
 * a failure leaves the old contents and tl->n intact). */
static dv365_status reserve(dv365_timeline *tl, size_t total)
{
    if (total <= tl->cap)
        return DV365_OK;
    size_t cap = DV_MAX(total, DV_MAX(tl->cap + tl->cap / 2, (size_t)64));
    void **cols[DV_TL_NCOLS];
    size_t sizes[DV_TL_NCOLS];
    timeline_columns(tl, cols, sizes);
    for (size_t c = 0; cols[c] != NULL; c++) {
        size_t old_bytes = tl->cap * sizes[c], new_bytes;
        if (!dv_mul_size(cap, sizes[c], &new_bytes) || !dv_grow(cols[c], old_bytes, new_bytes))
            return dv_error(DV365_E_NOMEM, "dv365_timeline_append: cannot grow to %zu events",
                            total);
    }
    tl->cap = cap;
    return DV365_OK;
}

/* The derived per-event quantities (see timeline.h). */
static void derive(dv365_timeline *tl, size_t i)
{
    const dv365_config *cfg = tl->cfg;
    double dwell_s = (double)tl->dwell_ms[i] / 1000.0;
    double dur_s = (double)tl->duration_ms[i] / 1000.0;
    double log_dwell = log1p(dwell_s);
    double ratio = 0, score = 0;
    if (tl->duration_ms[i] > 0) {
        ratio = (double)tl->dwell_ms[i] / (double)tl->duration_ms[i];
        double den = log1p(cfg->gamma * dur_s);
        score = den > 0 ? log_dwell / den : 0;
    }
    tl->is_explicit[i] = cfg->action_explicit[tl->action[i]] ? 1 : 0;
    tl->dwell_s[i] = dwell_s;
    tl->watch_ratio[i] = ratio;
    tl->watch_score[i] = score;
    tl->log_dwell[i] = log_dwell;
}

/* Stable bottom-up merge sort of the indices 0..m-1 by time[index]; a and b
 * are [m] scratch, the result is one of them. */
static size_t *sort_by_time(const int64_t *time, size_t m, size_t *a, size_t *b)
{
    for (size_t i = 0; i < m; i++)
        a[i] = i;
    for (size_t width = 1; width < m; width *= 2) {
        for (size_t lo = 0; lo < m; lo += 2 * width) {
            size_t mid = DV_MIN(lo + width, m), hi = DV_MIN(lo + 2 * width, m);
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                b[k++] = time[a[j]] < time[a[i]] ? a[j++] : a[i++]; /* ties: left first */
            while (i < mid)
                b[k++] = a[i++];
            while (j < hi)
                b[k++] = a[j++];
        }
        size_t *t = a;
        a = b;
        b = t;
    }
    return a;
}

/* dst[i] = src[perm[i]] for elements of sz bytes (typed loops for speed;
 * may_alias because the 8-byte columns hold int64, uint64 and double). */
typedef uint64_t dv_u64a __attribute__((may_alias));
typedef uint32_t dv_u32a __attribute__((may_alias));
static void permute(void *dst, const void *src, const size_t *perm, size_t m, size_t sz)
{
    if (sz == 8) {
        dv_u64a *d = dst;
        const dv_u64a *s = src;
        for (size_t i = 0; i < m; i++)
            d[i] = s[perm[i]];
    } else if (sz == 4) {
        dv_u32a *d = dst;
        const dv_u32a *s = src;
        for (size_t i = 0; i < m; i++)
            d[i] = s[perm[i]];
    } else {
        unsigned char *d = dst;
        const unsigned char *s = src;
        for (size_t i = 0; i < m; i++)
            memcpy(d + i * sz, s + perm[i] * sz, sz);
    }
}

dv365_status dv365_timeline_append(dv365_timeline *tl, size_t n, const int64_t *time,
                                   const uint64_t *media_id, const uint64_t *author_id,
                                   const uint64_t *topic_id, const int32_t *action,
                                   const int32_t *media_type, const int32_t *surface,
                                   const float *duration_ms, const float *dwell_ms)
{
    dv_clear_error();
    DV_CHECK_NULL(tl);
    if (n == 0)
        return DV365_OK;
    DV_CHECK_NULL(time);
    DV_CHECK_NULL(media_id);
    DV_CHECK_NULL(author_id);
    DV_CHECK_NULL(topic_id);
    DV_CHECK_NULL(action);
    DV_CHECK_NULL(media_type);
    DV_CHECK_NULL(surface);
    DV_CHECK_NULL(duration_ms);
    DV_CHECK_NULL(dwell_ms);

    dv365_status st = validate(tl->cfg, n, time, action, media_type, surface, duration_ms,
                               dwell_ms);
    if (st != DV365_OK)
        return st;

    size_t n0 = tl->n, total;
    if (__builtin_add_overflow(n0, n, &total))
        return dv_error(DV365_E_NOMEM, "dv365_timeline_append: %zu + %zu events overflow", n0,
                        n);
    if ((st = reserve(tl, total)) != DV365_OK)
        return st;

    /* In order already?  Then this is a plain O(n) append. */
    int64_t min_new = time[0];
    bool sorted = n0 == 0 || time[0] >= tl->time[n0 - 1];
    for (size_t i = 1; i < n; i++) {
        if (time[i] < time[i - 1])
            sorted = false;
        min_new = DV_MIN(min_new, time[i]);
    }

    /* Otherwise only the old events later than the earliest new one move:
     * [k, total) is re-sorted.  Its scratch is reserved before any write. */
    size_t k = n0, m = 0;
    if (!sorted) {
        size_t lo = 0, hi = n0; /* first old event with time > min_new */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (tl->time[mid] <= min_new)
                lo = mid + 1;
            else
                hi = mid;
        }
        k = lo;
        m = total - k;
        size_t need;
        if (!dv_mul_size(m, 3 * sizeof(size_t), &need))
            return dv_error(DV365_E_NOMEM, "dv365_timeline_append: sort scratch overflows");
        if (need > tl->scratch_cap) {
            if (!dv_grow(&tl->scratch, 0, need))
                return dv_error(DV365_E_NOMEM,
                                "dv365_timeline_append: cannot allocate %zu bytes to sort",
                                need);
            tl->scratch_cap = need;
        }
    }

    /* From here on nothing can fail. */
    memcpy(tl->time + n0, time, n * sizeof *time);
    memcpy(tl->id[DV_FIELD_MEDIA] + n0, media_id, n * sizeof *media_id);
    memcpy(tl->id[DV_FIELD_AUTHOR] + n0, author_id, n * sizeof *author_id);
    memcpy(tl->id[DV_FIELD_TOPIC] + n0, topic_id, n * sizeof *topic_id);
    memcpy(tl->action + n0, action, n * sizeof *action);
    memcpy(tl->media_type + n0, media_type, n * sizeof *media_type);
    memcpy(tl->surface + n0, surface, n * sizeof *surface);
    memcpy(tl->duration_ms + n0, duration_ms, n * sizeof *duration_ms);
    memcpy(tl->dwell_ms + n0, dwell_ms, n * sizeof *dwell_ms);
    for (size_t i = n0; i < total; i++)
        derive(tl, i);

    if (!sorted) {
        /* Old events precede new ones in index order, so a stable sort of the
         * region keeps earlier-appended events first among equal times. */
        size_t *a = tl->scratch, *b = a + m;
        unsigned char *tmp = (unsigned char *)(b + m);
        size_t *perm = sort_by_time(tl->time + k, m, a, b);
        void **cols[DV_TL_NCOLS];
        size_t sizes[DV_TL_NCOLS];
        timeline_columns(tl, cols, sizes);
        for (size_t c = 0; cols[c] != NULL; c++) {
            unsigned char *col = (unsigned char *)*cols[c] + k * sizes[c];
            size_t sz = sizes[c];
            permute(tmp, col, perm, m, sz);
            memcpy(col, tmp, m * sz);
        }
    }
    tl->n = total;
    return DV365_OK;
}
