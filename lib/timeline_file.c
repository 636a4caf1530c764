/* timeline_file.c — many users' timelines in one streamable file.
 *
 * Layout (byte tables in docs/data.md):
 *   header (64 B)  magic "DV365TLF", version, counts, vocabulary
 *                  fingerprint, index offset, XXH64 of the header
 *   records        per user: tag "DVTR", user id, n events, XXH64 of the
 *                  record; then the event columns (time, media, author,
 *                  topic, action, media_type, surface, duration_ms, dwell_ms)
 *   index          "DV365IDX", n, (user id, record number, offset) sorted by
 *                  user id, XXH64
 * The header is written last (at close), so a file cut short anywhere is
 * caught by its size before any record is read. */
#include "datafile.h"

#include "timeline.h"

#include <stdio.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#define TL_MAGIC "DV365TLF"
#define IDX_MAGIC "DV365IDX"
#define REC_TAG 0x52545644u /* "DVTR" read as a little-endian u32 */
#define REC_HEADER_BYTES 32
#define EVENT_BYTES 52 /* 8 time + 3*8 ids + 3*4 codes + 2*4 floats */
#define IDX_ENTRY_BYTES 24
#define IDX_FIXED_BYTES 24 /* magic + count + trailing checksum */

typedef struct idx_entry {
    uint64_t user_id, record, offset;
} idx_entry;

/* Stable bottom-up merge sort of entries by user id (scratch: [n]). */
static void sort_entries(idx_entry *a, idx_entry *tmp, size_t n)
{
    idx_entry *src = a, *dst = tmp;
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = DV_MIN(lo + width, n), hi = DV_MIN(lo + 2 * width, n);
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                dst[k++] = src[j].user_id < src[i].user_id ? src[j++] : src[i++];
            while (i < mid)
                dst[k++] = src[i++];
            while (j < hi)
                dst[k++] = src[j++];
        }
        idx_entry *t = src;
        src = dst;
        dst = t;
    }
    if (src != a)
        memcpy(a, src, n * sizeof *a);
}

/* ======================================================================== */
/* Writer                                                                    */
/* ======================================================================== */

struct dv365_timeline_writer {
    const dv365_config *cfg;
    uint64_t vocab_fp;
    dv_bwriter out;
    bool failed, closed;
    uint64_t n_events;
    idx_entry *index; /* in record order until close */
    size_t n_users, index_cap;
    size_t *slots; /* open-addressing set of user ids: 1 + index position, 0 = empty */
    size_t n_slots;
};

dv365_status dv365_timeline_writer_open(const char *path, const dv365_config *cfg,
                                        dv365_timeline_writer **out)
{
    dv_clear_error();
    DV_CHECK_NULL(path);
    DV_CHECK_NULL(cfg);
    DV_CHECK_NULL(out);
    dv365_timeline_writer *w = dv_calloc(1, sizeof *w);
    if (w == NULL)
        return dv_error(DV365_E_NOMEM, "dv365_timeline_writer_open: out of memory");
    w->cfg = cfg;
    w->vocab_fp = dv_vocab_fingerprint(cfg);
    dv365_status st = dv_bwriter_open(&w->out, path, DV_DATA_BUFFER_DEFAULT);
    if (st == DV365_OK) {
        unsigned char placeholder[DV_DATA_HEADER_BYTES] = {0}; /* real header at close */
        st = dv_bwriter_write(&w->out, placeholder, sizeof placeholder);
    }
    if (st != DV365_OK) {
        dv_bwriter_abort(&w->out);
        dv_free(w);
        return dv_error_context(st, "dv365_timeline_writer_open");
    }
    *out = w;
    return DV365_OK;
}

/* Is user_id already in the file?  Otherwise (insert) remember it at
 * index position pos. */
static bool seen_user(dv365_timeline_writer *w, uint64_t user_id, size_t pos, bool insert)
{
    if (w->n_slots == 0)
        return false;
    size_t mask = w->n_slots - 1;
    for (size_t h = (size_t)dv_mix64(user_id) & mask;; h = (h + 1) & mask) {
        size_t s = w->slots[h];
        if (s == 0) {
            if (insert)
                w->slots[h] = pos + 1;
            return false;
        }
        if (w->index[s - 1].user_id == user_id)
            return true;
    }
}

/* Room for one more user in the index and the set (load factor <= 1/2). */
static dv365_status writer_reserve(dv365_timeline_writer *w)
{
    size_t need = w->n_users + 1;
    if (need > w->index_cap) {
        size_t cap = DV_MAX((size_t)256, w->index_cap * 2), bytes;
        if (!dv_mul_size(cap, sizeof *w->index, &bytes) ||
            !dv_grow((void **)&w->index, w->index_cap * sizeof *w->index, bytes))
            return dv_error(DV365_E_NOMEM, "out of memory for the index of %zu users", need);
        w->index_cap = cap;
    }
    if (2 * need > w->n_slots) {
        size_t n = DV_MAX((size_t)512, w->n_slots * 2);
        size_t *slots = dv_calloc(n, sizeof *slots);
        if (slots == NULL)
            return dv_error(DV365_E_NOMEM, "out of memory for the set of %zu users", need);
        dv_free(w->slots);
        w->slots = slots;
        w->n_slots = n;
        for (size_t i = 0; i < w->n_users; i++)
            seen_user(w, w->index[i].user_id, i, true);
    }
    return DV365_OK;
}

/* Column pointers and byte sizes of the on-disk record payload, in order. */
#define TL_NCOLS 9
static void payload_columns(const dv365_timeline *tl, const void **cols, size_t *elem)
{
    const void *c[TL_NCOLS] = {tl->time,       tl->id[DV_FIELD_MEDIA], tl->id[DV_FIELD_AUTHOR],
                               tl->id[DV_FIELD_TOPIC], tl->action,     tl->media_type,
                               tl->surface,    tl->duration_ms,        tl->dwell_ms};
    const size_t e[TL_NCOLS] = {8, 8, 8, 8, 4, 4, 4, 4, 4};
    memcpy(cols, c, sizeof c);
    memcpy(elem, e, sizeof e);
}

dv365_status dv365_timeline_writer_add(dv365_timeline_writer *w, uint64_t user_id,
                                       const dv365_timeline *tl)
{
    dv_clear_error();
    DV_CHECK_NULL(w);
    DV_CHECK_NULL(tl);
    if (w->closed)
        return dv_error(DV365_E_STATE, "dv365_timeline_writer_add: the writer is closed");
    if (w->failed)
        return dv_error(DV365_E_STATE,
                        "dv365_timeline_writer_add: an earlier write to '%s' failed; free the "
                        "writer",
                        w->out.path);
    if (tl->cfg != w->cfg && dv_vocab_fingerprint(tl->cfg) != w->vocab_fp)
        return dv_error(DV365_E_MISMATCH,
                        "dv365_timeline_writer_add: user %llu: the timeline's config has other "
                        "vocabularies than the writer's",
                        (unsigned long long)user_id);
    if (seen_user(w, user_id, 0, false))
        return dv_error(DV365_E_INVALID,
                        "dv365_timeline_writer_add: user %llu is already in '%s' (each user "
                        "has one record)",
                        (unsigned long long)user_id, w->out.path);
    dv365_status st = writer_reserve(w);
    if (st != DV365_OK)
        return st;

    /* The checksum covers the record header and the payload, so compute it
     * from the columns first, then write them from the timeline's memory. */
    unsigned char h[REC_HEADER_BYTES];
    dv_put_u32(h, REC_TAG);
    dv_put_u32(h + 4, 0);
    dv_put_u64(h + 8, user_id);
    dv_put_u64(h + 16, tl->n);
    const void *cols[TL_NCOLS];
    size_t elem[TL_NCOLS];
    payload_columns(tl, cols, elem);
    XXH64_state_t xs;
    XXH64_reset(&xs, 0);
    XXH64_update(&xs, h, 24);
    for (int c = 0; c < TL_NCOLS; c++)
        if (tl->n > 0)
            XXH64_update(&xs, cols[c], tl->n * elem[c]);
    dv_put_u64(h + 24, XXH64_digest(&xs));

    uint64_t offset = w->out.offset;
    st = dv_bwriter_write(&w->out, h, sizeof h);
    for (int c = 0; c < TL_NCOLS && st == DV365_OK; c++)
        if (tl->n > 0)
            st = dv_bwriter_write(&w->out, cols[c], tl->n * elem[c]);
    if (st != DV365_OK) {
        w->failed = true;
        return dv_error_context(st, "dv365_timeline_writer_add: user %llu",
                                (unsigned long long)user_id);
    }
    w->index[w->n_users] = (idx_entry){user_id, w->n_users, offset};
    seen_user(w, user_id, w->n_users, true);
    w->n_users++;
    w->n_events += tl->n;
    return DV365_OK;
}

size_t dv365_timeline_writer_count(const dv365_timeline_writer *w)
{
    return w ? w->n_users : 0;
}

bool dv_timeline_writer_has_user(dv365_timeline_writer *w, uint64_t user_id)
{
    return seen_user(w, user_id, 0, false);
}

dv365_status dv365_timeline_writer_close(dv365_timeline_writer *w)
{
    dv_clear_error();
    DV_CHECK_NULL(w);
    dv365_status st = dv_data_close_begin(&w->out, &w->closed, w->failed,
                                          "dv365_timeline_writer_close");
    if (st != DV365_OK)
        return st;

    idx_entry *tmp = dv_malloc(DV_MAX(w->n_users, (size_t)1) * sizeof *tmp);
    if (tmp == NULL)
        st = dv_error(DV365_E_NOMEM, "out of memory sorting the index of %zu users",
                      w->n_users);
    else
        sort_entries(w->index, tmp, w->n_users);
    dv_free(tmp);

    /* index section */
    uint64_t index_offset = w->out.offset;
    XXH64_state_t xs;
    XXH64_reset(&xs, 0);
    unsigned char buf[IDX_ENTRY_BYTES];
    if (st == DV365_OK) {
        memcpy(buf, IDX_MAGIC, 8);
        dv_put_u64(buf + 8, w->n_users);
        XXH64_update(&xs, buf, 16);
        st = dv_bwriter_write(&w->out, buf, 16);
    }
    for (size_t i = 0; i < w->n_users && st == DV365_OK; i++) {
        dv_put_u64(buf, w->index[i].user_id);
        dv_put_u64(buf + 8, w->index[i].record);
        dv_put_u64(buf + 16, w->index[i].offset);
        XXH64_update(&xs, buf, IDX_ENTRY_BYTES);
        st = dv_bwriter_write(&w->out, buf, IDX_ENTRY_BYTES);
    }
    if (st == DV365_OK) {
        dv_put_u64(buf, XXH64_digest(&xs));
        st = dv_bwriter_write(&w->out, buf, 8);
    }

    if (st != DV365_OK) {
        dv_bwriter_abort(&w->out);
        return dv_error_context(st, "dv365_timeline_writer_close");
    }
    unsigned char h[DV_DATA_HEADER_BYTES];
    dv_data_header_start(h, TL_MAGIC, DV365_TIMELINE_FILE_VERSION);
    dv_put_u64(h + 16, w->n_users);
    dv_put_u64(h + 24, w->n_events);
    dv_put_u64(h + 32, w->vocab_fp);
    dv_put_u64(h + 40, index_offset);
    return dv_data_commit(&w->out, h, "dv365_timeline_writer_close");
}

void dv365_timeline_writer_free(dv365_timeline_writer *w)
{
    if (w == NULL)
        return;
    dv_bwriter_abort(&w->out); /* no-op after a successful close */
    dv_free(w->index);
    dv_free(w->slots);
    dv_free(w);
}

/* ======================================================================== */
/* Reader                                                                    */
/* ======================================================================== */

struct dv365_timeline_reader {
    const dv365_config *cfg;
    uint64_t vocab_fp;
    char *path;
    dv_breader in;
    size_t n_users;
    uint64_t n_events, index_offset;
    size_t next_record; /* number of the record at the read position */

    /* one record's columns, reused */
    void *col[TL_NCOLS];
    size_t cap;

    idx_entry *index; /* sorted by user id; loaded on the first seek */
    bool index_loaded;
    bool expect_user; /* after a seek: the record read next must be this user */
    uint64_t expected_user;
};

void dv365_timeline_reader_free(dv365_timeline_reader *r)
{
    if (r == NULL)
        return;
    dv_breader_close(&r->in);
    for (int c = 0; c < TL_NCOLS; c++)
        dv_free(r->col[c]);
    dv_free(r->index);
    dv_free(r->path);
    dv_free(r);
}

/* Check the header against the file size (truncation, trailing bytes,
 * counts that cannot fit). */
static dv365_status reader_check(dv365_timeline_reader *r, const unsigned char *h, size_t got)
{
    const char *p = r->path;
    dv365_status st = dv_check_header(h, got, TL_MAGIC, DV365_TIMELINE_FILE_VERSION, p);
    if (st != DV365_OK)
        return st;
    uint64_t n_users = dv_get_u64(h + 16), n_events = dv_get_u64(h + 24);
    uint64_t fp = dv_get_u64(h + 32), index_offset = dv_get_u64(h + 40);
    uint64_t size = r->in.file_size;
    if (dv_get_u64(h + 48) != 0)
        return dv_error(DV365_E_FORMAT, "'%s': reserved header bytes 48..55 are not zero", p);
    if (n_users > size / IDX_ENTRY_BYTES || n_users > SIZE_MAX)
        return dv_error(DV365_E_FORMAT, "'%s' is truncated or damaged: %llu users cannot fit "
                        "in %llu bytes", p,
                        (unsigned long long)n_users, (unsigned long long)size);
    uint64_t index_bytes = IDX_FIXED_BYTES + n_users * IDX_ENTRY_BYTES;
    if (index_offset < DV_DATA_HEADER_BYTES || index_offset > UINT64_MAX - index_bytes)
        return dv_error(DV365_E_FORMAT, "'%s': index offset %llu is out of range", p,
                        (unsigned long long)index_offset);
    uint64_t expect = index_offset + index_bytes;
    if (size < expect)
        return dv_error(DV365_E_FORMAT,
                        "'%s' is truncated: %llu bytes, its header says %llu", p,
                        (unsigned long long)size, (unsigned long long)expect);
    if (size > expect)
        return dv_error(DV365_E_FORMAT, "'%s' has %llu unexpected bytes after its end", p,
                        (unsigned long long)(size - expect));
    /* every record is 32 bytes + 52 per event */
    uint64_t body = index_offset - DV_DATA_HEADER_BYTES;
    if (n_users * REC_HEADER_BYTES > body ||
        n_events > (body - n_users * REC_HEADER_BYTES) / EVENT_BYTES ||
        n_events * EVENT_BYTES + n_users * REC_HEADER_BYTES != body)
        return dv_error(DV365_E_FORMAT,
                        "'%s': %llu users with %llu events do not fill the %llu bytes of "
                        "records",
                        p, (unsigned long long)n_users, (unsigned long long)n_events,
                        (unsigned long long)body);
    if (fp != r->vocab_fp)
        return dv_error(DV365_E_MISMATCH,
                        "'%s' was written with other vocabularies (action, media type, "
                        "surface names) than the config's",
                        p);
    r->n_users = (size_t)n_users;
    r->n_events = n_events;
    r->index_offset = index_offset;
    return DV365_OK;
}

dv365_status dv_timeline_reader_open_ex(const char *path, const dv365_config *cfg,
                                        size_t buf_bytes, dv365_timeline_reader **out)
{
    DV_CHECK_NULL(path);
    DV_CHECK_NULL(cfg);
    DV_CHECK_NULL(out);
    dv365_timeline_reader *r = dv_calloc(1, sizeof *r);
    if (r == NULL || (r->path = dv_strdup(path)) == NULL) {
        dv_free(r);
        return dv_error(DV365_E_NOMEM, "dv365_timeline_reader_open: out of memory");
    }
    r->in.fd = -1;
    r->cfg = cfg;
    r->vocab_fp = dv_vocab_fingerprint(cfg);
    unsigned char h[DV_DATA_HEADER_BYTES];
    size_t got = 0;
    dv365_status st = dv_data_open(&r->in, r->path, buf_bytes, h, &got);
    if (st == DV365_OK)
        st = reader_check(r, h, got);
    if (st != DV365_OK) {
        dv365_timeline_reader_free(r);
        return st;
    }
    *out = r;
    return DV365_OK;
}

dv365_status dv365_timeline_reader_open(const char *path, const dv365_config *cfg,
                                        dv365_timeline_reader **out)
{
    dv_clear_error();
    return dv_timeline_reader_open_ex(path, cfg, DV_DATA_BUFFER_DEFAULT, out);
}

size_t dv365_timeline_reader_count(const dv365_timeline_reader *r) { return r ? r->n_users : 0; }

size_t dv365_timeline_reader_num_events(const dv365_timeline_reader *r)
{
    return r ? (size_t)r->n_events : 0;
}

static dv365_status reader_grow(dv365_timeline_reader *r, size_t n)
{
    if (n <= r->cap)
        return DV365_OK;
    size_t cap = DV_MAX(n, r->cap + r->cap / 2);
    const size_t elem[TL_NCOLS] = {8, 8, 8, 8, 4, 4, 4, 4, 4};
    for (int c = 0; c < TL_NCOLS; c++) {
        void *p = dv_malloc(cap * elem[c]); /* cap * 8 cannot overflow: n is file-bounded */
        if (p == NULL)
            return dv_error(DV365_E_NOMEM, "out of memory for a record of %zu events", n);
        dv_free(r->col[c]);
        r->col[c] = p;
    }
    r->cap = cap;
    return DV365_OK;
}

/* Read and check the record at the read position into r->col. */
static dv365_status read_record(dv365_timeline_reader *r, uint64_t *user_id, size_t *n_out)
{
    const char *p = r->path;
    size_t k = r->next_record;
    uint64_t at = dv_breader_tell(&r->in);
    unsigned char h[REC_HEADER_BYTES];
    size_t got;
    dv365_status st = dv_breader_read(&r->in, h, sizeof h, &got);
    if (st != DV365_OK)
        return st;
    if (got < sizeof h || at + REC_HEADER_BYTES > r->index_offset)
        return dv_error(DV365_E_FORMAT, "'%s': record %zu at byte %llu is truncated", p, k,
                        (unsigned long long)at);
    if (dv_get_u32(h) != REC_TAG || dv_get_u32(h + 4) != 0)
        return dv_error(DV365_E_FORMAT,
                        "'%s': record %zu at byte %llu does not start with the record tag "
                        "'DVTR'",
                        p, k, (unsigned long long)at);
    uint64_t uid = dv_get_u64(h + 8), n = dv_get_u64(h + 16);
    uint64_t left = r->index_offset - at - REC_HEADER_BYTES;
    if (n > left / EVENT_BYTES)
        return dv_error(DV365_E_FORMAT,
                        "'%s': record %zu (user %llu) at byte %llu: %llu events do not fit in "
                        "the %llu bytes left before the index",
                        p, k, (unsigned long long)uid, (unsigned long long)at,
                        (unsigned long long)n, (unsigned long long)left);
    if ((st = reader_grow(r, (size_t)n)) != DV365_OK)
        return st;

    XXH64_state_t xs;
    XXH64_reset(&xs, 0);
    XXH64_update(&xs, h, 24);
    const size_t elem[TL_NCOLS] = {8, 8, 8, 8, 4, 4, 4, 4, 4};
    for (int c = 0; c < TL_NCOLS && n > 0; c++) {
        size_t bytes = (size_t)n * elem[c];
        if ((st = dv_breader_read(&r->in, r->col[c], bytes, &got)) != DV365_OK)
            return st;
        if (got < bytes)
            return dv_error(DV365_E_FORMAT, "'%s': record %zu (user %llu) is truncated", p, k,
                            (unsigned long long)uid);
        XXH64_update(&xs, r->col[c], bytes);
    }
    if (XXH64_digest(&xs) != dv_get_u64(h + 24))
        return dv_error(DV365_E_CHECKSUM,
                        "'%s': record %zu (user %llu) at byte %llu: checksum mismatch", p, k,
                        (unsigned long long)uid, (unsigned long long)at);
    if (r->expect_user && uid != r->expected_user)
        return dv_error(DV365_E_FORMAT,
                        "'%s': the index points user %llu to record %zu, which holds user %llu",
                        p, (unsigned long long)r->expected_user, k, (unsigned long long)uid);
    const int64_t *time = r->col[0];
    for (size_t i = 1; i < n; i++)
        if (time[i] < time[i - 1])
            return dv_error(DV365_E_FORMAT,
                            "'%s': record %zu (user %llu): event %zu is earlier than event %zu "
                            "(records are sorted by time)",
                            p, k, (unsigned long long)uid, i, i - 1);
    *user_id = uid;
    *n_out = (size_t)n;
    return DV365_OK;
}

dv365_status dv365_timeline_reader_next(dv365_timeline_reader *r, uint64_t *user_id,
                                        dv365_timeline *tl, int *done)
{
    dv_clear_error();
    DV_CHECK_NULL(r);
    DV_CHECK_NULL(user_id);
    DV_CHECK_NULL(tl);
    DV_CHECK_NULL(done);
    if (tl->cfg != r->cfg && dv_vocab_fingerprint(tl->cfg) != r->vocab_fp)
        return dv_error(DV365_E_MISMATCH,
                        "dv365_timeline_reader_next: the timeline's config has other "
                        "vocabularies than the reader's");
    uint64_t at = dv_breader_tell(&r->in);
    if (r->next_record >= r->n_users) {
        if (at != r->index_offset) /* cannot happen: record sizes add up (checked at open) */
            return dv_error(DV365_E_FORMAT, "'%s': the records end at byte %llu, not at the "
                            "index (byte %llu)", r->path, (unsigned long long)at,
                            (unsigned long long)r->index_offset);
        dv365_timeline_clear(tl);
        *user_id = 0;
        *done = 1;
        return DV365_OK;
    }

    uint64_t uid = 0;
    size_t n = 0;
    dv365_status st = read_record(r, &uid, &n);
    if (st == DV365_OK) {
        dv365_timeline_clear(tl);
        st = dv365_timeline_append(tl, n, r->col[0], r->col[1], r->col[2], r->col[3],
                                   r->col[4], r->col[5], r->col[6], r->col[7], r->col[8]);
        if (st != DV365_OK && st != DV365_E_NOMEM) {
            /* the checksum matched, yet the values are invalid: a bad writer */
            char why[512];
            snprintf(why, sizeof why, "%s", dv365_last_error());
            st = dv_error(DV365_E_FORMAT, "'%s': record %zu (user %llu): %.400s", r->path,
                          r->next_record, (unsigned long long)uid, why);
            dv365_timeline_clear(tl);
        }
    }
    if (st != DV365_OK) {
        dv_breader_seek(&r->in, at); /* stay on the failed record */
        return st;
    }
    r->next_record++;
    r->expect_user = false;
    *user_id = uid;
    *done = 0;
    return DV365_OK;
}

dv365_status dv365_timeline_reader_rewind(dv365_timeline_reader *r)
{
    dv_clear_error();
    DV_CHECK_NULL(r);
    dv_breader_seek(&r->in, DV_DATA_HEADER_BYTES);
    r->next_record = 0;
    r->expect_user = false;
    return DV365_OK;
}

/* Read and check the index: magic, count, checksum, order, ranges. */
static dv365_status load_index(dv365_timeline_reader *r)
{
    const char *p = r->path;
    size_t n = r->n_users, bytes;
    if (!dv_mul_size(DV_MAX(n, (size_t)1), sizeof(idx_entry), &bytes))
        return dv_error(DV365_E_NOMEM, "'%s': the index of %zu users is too large", p, n);
    idx_entry *e = dv_malloc(bytes);
    if (e == NULL)
        return dv_error(DV365_E_NOMEM, "'%s': out of memory for the index of %zu users", p, n);

    /* The sequential read position is restored afterwards. */
    uint64_t keep = dv_breader_tell(&r->in);
    dv_breader_seek(&r->in, r->index_offset);
    XXH64_state_t xs;
    XXH64_reset(&xs, 0);
    unsigned char b[IDX_ENTRY_BYTES];
    size_t got;
    dv365_status st = dv_breader_read(&r->in, b, 16, &got);
    if (st == DV365_OK && (got < 16 || memcmp(b, IDX_MAGIC, 8) != 0 || dv_get_u64(b + 8) != n))
        st = dv_error(DV365_E_FORMAT, "'%s': the index at byte %llu is damaged (bad magic or "
                      "count)", p, (unsigned long long)r->index_offset);
    if (st == DV365_OK)
        XXH64_update(&xs, b, 16);
    for (size_t i = 0; i < n && st == DV365_OK; i++) {
        st = dv_breader_read(&r->in, b, IDX_ENTRY_BYTES, &got);
        if (st != DV365_OK)
            break;
        if (got < IDX_ENTRY_BYTES) {
            st = dv_error(DV365_E_FORMAT, "'%s': the index is truncated", p);
            break;
        }
        XXH64_update(&xs, b, IDX_ENTRY_BYTES);
        e[i] = (idx_entry){dv_get_u64(b), dv_get_u64(b + 8), dv_get_u64(b + 16)};
    }
    if (st == DV365_OK) {
        st = dv_breader_read(&r->in, b, 8, &got);
        if (st == DV365_OK && (got < 8 || XXH64_digest(&xs) != dv_get_u64(b)))
            st = dv_error(DV365_E_CHECKSUM, "'%s': the index's checksum does not match", p);
    }
    for (size_t i = 0; i < n && st == DV365_OK; i++) {
        if ((i > 0 && e[i].user_id <= e[i - 1].user_id) || e[i].record >= n ||
            e[i].offset < DV_DATA_HEADER_BYTES ||
            e[i].offset + REC_HEADER_BYTES > r->index_offset)
            st = dv_error(DV365_E_FORMAT, "'%s': index entry %zu (user %llu) is invalid", p, i,
                          (unsigned long long)e[i].user_id);
    }
    dv_breader_seek(&r->in, keep);
    if (st != DV365_OK) {
        dv_free(e);
        return st;
    }
    r->index = e;
    r->index_loaded = true;
    return DV365_OK;
}

dv365_status dv365_timeline_reader_seek(dv365_timeline_reader *r, uint64_t user_id)
{
    dv_clear_error();
    DV_CHECK_NULL(r);
    dv365_status st;
    if (!r->index_loaded && (st = load_index(r)) != DV365_OK)
        return st;
    size_t lo = 0, hi = r->n_users;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->index[mid].user_id < user_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == r->n_users || r->index[lo].user_id != user_id)
        return dv_error(DV365_E_NOT_FOUND, "dv365_timeline_reader_seek: user %llu is not in '%s'",
                        (unsigned long long)user_id, r->path);
    /* the record itself is checked (tag, user, checksum) when it is read */
    dv_breader_seek(&r->in, r->index[lo].offset);
    r->next_record = (size_t)r->index[lo].record;
    r->expect_user = true;
    r->expected_user = user_id;
    return DV365_OK;
}
