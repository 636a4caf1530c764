/* example_file.c — training examples in one streamable file.
 *
 * Layout (byte tables in docs/data.md):
 *   header (64 B)  magic "DV365EXF", version, n_dense, n_tasks, counts,
 *                  rows per chunk, XXH64 of the header
 *   chunks         tag "DVEC", n rows, XXH64 of the chunk; then n fixed-size
 *                  rows: user id, label time, media, author, topic,
 *                  dense [n_dense], labels [n_tasks]
 * Every chunk but the last holds exactly chunk_rows rows, so example i is
 * found without an index. */
#include "datafile.h"

#include <math.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#define EX_MAGIC "DV365EXF"
#define CHUNK_TAG 0x43455644u /* "DVEC" read as a little-endian u32 */
#define CHUNK_HEADER_BYTES 16
#define ROW_FIXED_BYTES 40 /* user, label time, media, author, topic */
#define EX_MAX_COLS 65536
#define CHUNK_TARGET_BYTES ((size_t)1 << 20)
#define CHUNK_MAX_BYTES ((uint64_t)1 << 28) /* readers refuse larger chunks */

static size_t row_bytes(size_t n_dense, size_t n_tasks)
{
    return ROW_FIXED_BYTES + 4 * (n_dense + n_tasks);
}

/* ======================================================================== */
/* Writer                                                                    */
/* ======================================================================== */

struct dv365_example_writer {
    dv_bwriter out;
    size_t n_dense, n_tasks, row_bytes, chunk_rows;
    unsigned char *chunk; /* [chunk_rows * row_bytes] */
    size_t in_chunk;      /* rows buffered */
    size_t n_examples;
    uint64_t n_chunks;
    bool failed, closed;
};

dv365_status dv_example_writer_open_ex(const char *path, size_t n_dense, size_t n_tasks,
                                       size_t chunk_rows, dv365_example_writer **out)
{
    DV_CHECK_NULL(path);
    DV_CHECK_NULL(out);
    if (n_dense > EX_MAX_COLS)
        return dv_error(DV365_E_INVALID, "dv365_example_writer_open: n_dense = %zu (at most %d)",
                        n_dense, EX_MAX_COLS);
    if (n_tasks < 1 || n_tasks > EX_MAX_COLS)
        return dv_error(DV365_E_INVALID,
                        "dv365_example_writer_open: n_tasks = %zu (must be 1..%d)", n_tasks,
                        EX_MAX_COLS);
    size_t rb = row_bytes(n_dense, n_tasks);
    if (chunk_rows == 0)
        chunk_rows = DV_MAX((size_t)1, CHUNK_TARGET_BYTES / rb);
    if (chunk_rows > UINT32_MAX || (uint64_t)chunk_rows * rb > CHUNK_MAX_BYTES)
        return dv_error(DV365_E_INVALID, "dv365_example_writer_open: chunks of %zu rows are "
                        "too large", chunk_rows);
    dv365_example_writer *w = dv_calloc(1, sizeof *w);
    if (w == NULL)
        return dv_error(DV365_E_NOMEM, "dv365_example_writer_open: out of memory");
    w->out.fd = -1;
    w->n_dense = n_dense;
    w->n_tasks = n_tasks;
    w->row_bytes = rb;
    w->chunk_rows = chunk_rows;
    w->chunk = dv_malloc(chunk_rows * rb);
    dv365_status st = w->chunk ? DV365_OK
                               : dv_error(DV365_E_NOMEM, "dv365_example_writer_open: out of "
                                          "memory for a chunk of %zu bytes", chunk_rows * rb);
    if (st == DV365_OK)
        st = dv_bwriter_open(&w->out, path, DV_DATA_BUFFER_DEFAULT);
    if (st == DV365_OK) {
        unsigned char placeholder[DV_DATA_HEADER_BYTES] = {0}; /* real header at close */
        st = dv_bwriter_write(&w->out, placeholder, sizeof placeholder);
    }
    if (st != DV365_OK) {
        dv365_example_writer_free(w);
        return st;
    }
    *out = w;
    return DV365_OK;
}

dv365_status dv365_example_writer_open(const char *path, size_t n_dense, size_t n_tasks,
                                       dv365_example_writer **out)
{
    dv_clear_error();
    return dv_example_writer_open_ex(path, n_dense, n_tasks, 0, out);
}

static dv365_status flush_chunk(dv365_example_writer *w)
{
    if (w->in_chunk == 0)
        return DV365_OK;
    unsigned char h[CHUNK_HEADER_BYTES];
    dv_put_u32(h, CHUNK_TAG);
    dv_put_u32(h + 4, (uint32_t)w->in_chunk);
    size_t bytes = w->in_chunk * w->row_bytes;
    XXH64_state_t xs;
    XXH64_reset(&xs, 0);
    XXH64_update(&xs, h, 8);
    XXH64_update(&xs, w->chunk, bytes);
    dv_put_u64(h + 8, XXH64_digest(&xs));
    dv365_status st = dv_bwriter_write(&w->out, h, sizeof h);
    if (st == DV365_OK)
        st = dv_bwriter_write(&w->out, w->chunk, bytes);
    if (st != DV365_OK) {
        w->failed = true;
        return st;
    }
    w->in_chunk = 0;
    w->n_chunks++;
    return DV365_OK;
}

/* First non-finite value of x [n], or n. */
static size_t first_nonfinite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return i;
    return n;
}

dv365_status dv365_example_writer_add(dv365_example_writer *w, uint64_t user_id,
                                      int64_t label_time, uint64_t media_id, uint64_t author_id,
                                      uint64_t topic_id, const float *dense, const float *labels)
{
    dv_clear_error();
    static const char *fn = "dv365_example_writer_add";
    DV_CHECK_NULL(w);
    if (w->n_dense > 0)
        DV_CHECK_NULL(dense);
    DV_CHECK_NULL(labels);
    if (w->closed)
        return dv_error(DV365_E_STATE, "%s: the writer is closed", fn);
    if (w->failed)
        return dv_error(DV365_E_STATE, "%s: an earlier write to '%s' failed; free the writer",
                        fn, w->out.path);
    size_t ex = w->n_examples;
    if (label_time < 0 || label_time > DV365_TIME_MAX)
        return dv_error(DV365_E_TIMESTAMP,
                        "%s: example %zu: label_time = %lld is outside [0, %lld] (unix seconds)",
                        fn, ex, (long long)label_time, (long long)DV365_TIME_MAX);
    size_t bad = first_nonfinite(dense, w->n_dense);
    if (bad < w->n_dense)
        return dv_error(DV365_E_NONFINITE, "%s: example %zu: dense[%zu] = %g is not finite", fn,
                        ex, bad, (double)dense[bad]);
    if ((bad = first_nonfinite(labels, w->n_tasks)) < w->n_tasks)
        return dv_error(DV365_E_NONFINITE, "%s: example %zu: labels[%zu] = %g is not finite",
                        fn, ex, bad, (double)labels[bad]);

    unsigned char *row = w->chunk + w->in_chunk * w->row_bytes;
    dv_put_u64(row, user_id);
    dv_put_u64(row + 8, (uint64_t)label_time);
    dv_put_u64(row + 16, media_id);
    dv_put_u64(row + 24, author_id);
    dv_put_u64(row + 32, topic_id);
    if (w->n_dense > 0)
        memcpy(row + ROW_FIXED_BYTES, dense, 4 * w->n_dense);
    memcpy(row + ROW_FIXED_BYTES + 4 * w->n_dense, labels, 4 * w->n_tasks);
    w->in_chunk++;
    w->n_examples++;
    if (w->in_chunk == w->chunk_rows) {
        dv365_status st = flush_chunk(w);
        if (st != DV365_OK)
            return dv_error_context(st, "%s: example %zu", fn, ex);
    }
    return DV365_OK;
}

size_t dv365_example_writer_count(const dv365_example_writer *w)
{
    return w ? w->n_examples : 0;
}

dv365_status dv365_example_writer_close(dv365_example_writer *w)
{
    dv_clear_error();
    DV_CHECK_NULL(w);
    dv365_status st = dv_data_close_begin(&w->out, &w->closed, w->failed,
                                          "dv365_example_writer_close");
    if (st != DV365_OK)
        return st;
    st = flush_chunk(w);
    if (st != DV365_OK) {
        dv_bwriter_abort(&w->out);
        return dv_error_context(st, "dv365_example_writer_close");
    }
    unsigned char h[DV_DATA_HEADER_BYTES];
    dv_data_header_start(h, EX_MAGIC, DV365_EXAMPLE_FILE_VERSION);
    dv_put_u32(h + 16, (uint32_t)w->n_dense);
    dv_put_u32(h + 20, (uint32_t)w->n_tasks);
    dv_put_u64(h + 24, w->n_examples);
    dv_put_u32(h + 32, (uint32_t)w->chunk_rows);
    dv_put_u64(h + 40, w->n_chunks);
    return dv_data_commit(&w->out, h, "dv365_example_writer_close");
}

void dv365_example_writer_free(dv365_example_writer *w)
{
    if (w == NULL)
        return;
    dv_bwriter_abort(&w->out);
    dv_free(w->chunk);
    dv_free(w);
}

/* ======================================================================== */
/* Reader                                                                    */
/* ======================================================================== */

struct dv365_example_reader {
    char *path;
    dv_breader in;
    size_t n_dense, n_tasks, row_bytes, chunk_rows;
    size_t n_examples;
    uint64_t n_chunks;
    unsigned char *chunk;
    uint64_t loaded; /* chunk held in `chunk`, UINT64_MAX = none */
    size_t next;     /* index of the example _next returns */
};

void dv365_example_reader_free(dv365_example_reader *r)
{
    if (r == NULL)
        return;
    dv_breader_close(&r->in);
    dv_free(r->chunk);
    dv_free(r->path);
    dv_free(r);
}

static dv365_status reader_check(dv365_example_reader *r, const unsigned char *h, size_t got)
{
    const char *p = r->path;
    dv365_status st = dv_check_header(h, got, EX_MAGIC, DV365_EXAMPLE_FILE_VERSION, p);
    if (st != DV365_OK)
        return st;
    uint64_t n_dense = dv_get_u32(h + 16), n_tasks = dv_get_u32(h + 20);
    uint64_t n_ex = dv_get_u64(h + 24), chunk_rows = dv_get_u32(h + 32);
    uint64_t n_chunks = dv_get_u64(h + 40);
    if (dv_get_u32(h + 36) != 0 || dv_get_u64(h + 48) != 0)
        return dv_error(DV365_E_FORMAT, "'%s': reserved header bytes are not zero", p);
    if (n_dense > EX_MAX_COLS || n_tasks < 1 || n_tasks > EX_MAX_COLS)
        return dv_error(DV365_E_FORMAT, "'%s': n_dense = %llu, n_tasks = %llu are out of range "
                        "(0..%d, 1..%d)", p, (unsigned long long)n_dense,
                        (unsigned long long)n_tasks, EX_MAX_COLS, EX_MAX_COLS);
    uint64_t rb = row_bytes((size_t)n_dense, (size_t)n_tasks);
    if (chunk_rows < 1 || chunk_rows * rb > CHUNK_MAX_BYTES)
        return dv_error(DV365_E_FORMAT, "'%s': %llu rows per chunk is out of range", p,
                        (unsigned long long)chunk_rows);
    uint64_t size = r->in.file_size;
    if (n_ex > size / rb || n_ex > SIZE_MAX)
        return dv_error(DV365_E_FORMAT, "'%s' is truncated or damaged: %llu examples cannot "
                        "fit in %llu bytes", p,
                        (unsigned long long)n_ex, (unsigned long long)size);
    if (n_chunks != (n_ex + chunk_rows - 1) / chunk_rows)
        return dv_error(DV365_E_FORMAT, "'%s': %llu chunks cannot hold %llu examples of %llu "
                        "per chunk", p, (unsigned long long)n_chunks,
                        (unsigned long long)n_ex, (unsigned long long)chunk_rows);
    uint64_t expect = DV_DATA_HEADER_BYTES + n_chunks * CHUNK_HEADER_BYTES + n_ex * rb;
    if (size < expect)
        return dv_error(DV365_E_FORMAT, "'%s' is truncated: %llu bytes, its header says %llu",
                        p, (unsigned long long)size, (unsigned long long)expect);
    if (size > expect)
        return dv_error(DV365_E_FORMAT, "'%s' has %llu unexpected bytes after its end", p,
                        (unsigned long long)(size - expect));
    r->n_dense = (size_t)n_dense;
    r->n_tasks = (size_t)n_tasks;
    r->row_bytes = (size_t)rb;
    r->chunk_rows = (size_t)chunk_rows;
    r->n_examples = (size_t)n_ex;
    r->n_chunks = n_chunks;
    return DV365_OK;
}

dv365_status dv365_example_reader_open(const char *path, dv365_example_reader **out)
{
    dv_clear_error();
    DV_CHECK_NULL(path);
    DV_CHECK_NULL(out);
    dv365_example_reader *r = dv_calloc(1, sizeof *r);
    if (r == NULL || (r->path = dv_strdup(path)) == NULL) {
        dv_free(r);
        return dv_error(DV365_E_NOMEM, "dv365_example_reader_open: out of memory");
    }
    r->in.fd = -1;
    r->loaded = UINT64_MAX;
    /* chunks are read straight into r->chunk: the buffer only serves headers */
    unsigned char h[DV_DATA_HEADER_BYTES];
    size_t got = 0;
    dv365_status st = dv_data_open(&r->in, r->path, 4096, h, &got);
    if (st == DV365_OK)
        st = reader_check(r, h, got);
    if (st == DV365_OK && (r->chunk = dv_malloc(r->chunk_rows * r->row_bytes)) == NULL)
        st = dv_error(DV365_E_NOMEM, "dv365_example_reader_open: out of memory for a chunk of "
                      "%zu bytes", r->chunk_rows * r->row_bytes);
    if (st != DV365_OK) {
        dv365_example_reader_free(r);
        return st;
    }
    *out = r;
    return DV365_OK;
}

size_t dv365_example_reader_count(const dv365_example_reader *r) { return r ? r->n_examples : 0; }
size_t dv365_example_reader_num_dense(const dv365_example_reader *r) { return r ? r->n_dense : 0; }
size_t dv365_example_reader_num_tasks(const dv365_example_reader *r) { return r ? r->n_tasks : 0; }

/* Read and check chunk c into r->chunk. */
static dv365_status load_chunk(dv365_example_reader *r, uint64_t c)
{
    const char *p = r->path;
    r->loaded = UINT64_MAX;
    uint64_t at = DV_DATA_HEADER_BYTES + c * (CHUNK_HEADER_BYTES + r->chunk_rows * r->row_bytes);
    size_t rows = c + 1 < r->n_chunks ? r->chunk_rows
                                      : r->n_examples - (size_t)c * r->chunk_rows;
    dv_breader_seek(&r->in, at);
    unsigned char h[CHUNK_HEADER_BYTES];
    size_t got;
    dv365_status st = dv_breader_read(&r->in, h, sizeof h, &got);
    if (st != DV365_OK)
        return st;
    if (got < sizeof h)
        return dv_error(DV365_E_FORMAT, "'%s': chunk %llu at byte %llu is truncated", p,
                        (unsigned long long)c, (unsigned long long)at);
    if (dv_get_u32(h) != CHUNK_TAG || dv_get_u32(h + 4) != rows)
        return dv_error(DV365_E_FORMAT,
                        "'%s': chunk %llu at byte %llu is damaged (bad tag or a row count "
                        "other than %zu)",
                        p, (unsigned long long)c, (unsigned long long)at, rows);
    size_t bytes = rows * r->row_bytes;
    if ((st = dv_breader_read(&r->in, r->chunk, bytes, &got)) != DV365_OK)
        return st;
    if (got < bytes)
        return dv_error(DV365_E_FORMAT, "'%s': chunk %llu is truncated", p,
                        (unsigned long long)c);
    XXH64_state_t xs;
    XXH64_reset(&xs, 0);
    XXH64_update(&xs, h, 8);
    XXH64_update(&xs, r->chunk, bytes);
    if (XXH64_digest(&xs) != dv_get_u64(h + 8))
        return dv_error(DV365_E_CHECKSUM,
                        "'%s': chunk %llu (examples %llu..%llu) at byte %llu: checksum mismatch",
                        p, (unsigned long long)c, (unsigned long long)(c * r->chunk_rows),
                        (unsigned long long)(c * r->chunk_rows + rows - 1),
                        (unsigned long long)at);
    r->loaded = c;
    return DV365_OK;
}

dv365_status dv365_example_reader_next(dv365_example_reader *r, uint64_t *user_id,
                                       int64_t *label_time, uint64_t *media_id,
                                       uint64_t *author_id, uint64_t *topic_id, float *dense,
                                       float *labels, int *done)
{
    dv_clear_error();
    DV_CHECK_NULL(r);
    DV_CHECK_NULL(user_id);
    DV_CHECK_NULL(label_time);
    DV_CHECK_NULL(media_id);
    DV_CHECK_NULL(author_id);
    DV_CHECK_NULL(topic_id);
    if (r->n_dense > 0)
        DV_CHECK_NULL(dense);
    DV_CHECK_NULL(labels);
    DV_CHECK_NULL(done);
    if (r->next >= r->n_examples) {
        *done = 1;
        return DV365_OK;
    }
    uint64_t c = r->next / r->chunk_rows;
    dv365_status st;
    if (r->loaded != c && (st = load_chunk(r, c)) != DV365_OK)
        return st;
    const unsigned char *row = r->chunk + (r->next % r->chunk_rows) * r->row_bytes;
    const float *d = (const float *)(const void *)(row + ROW_FIXED_BYTES);
    const float *l = d + r->n_dense;
    int64_t t = (int64_t)dv_get_u64(row + 8);
    /* the checksum matched, so bad values mean a bad writer: still refuse */
    if (t < 0 || t > DV365_TIME_MAX)
        return dv_error(DV365_E_FORMAT, "'%s': example %zu: label time %lld is out of range",
                        r->path, r->next, (long long)t);
    size_t bad;
    if ((bad = first_nonfinite(d, r->n_dense)) < r->n_dense)
        return dv_error(DV365_E_FORMAT, "'%s': example %zu: dense[%zu] is not finite", r->path,
                        r->next, bad);
    if ((bad = first_nonfinite(l, r->n_tasks)) < r->n_tasks)
        return dv_error(DV365_E_FORMAT, "'%s': example %zu: labels[%zu] is not finite", r->path,
                        r->next, bad);
    *user_id = dv_get_u64(row);
    *label_time = t;
    *media_id = dv_get_u64(row + 16);
    *author_id = dv_get_u64(row + 24);
    *topic_id = dv_get_u64(row + 32);
    if (r->n_dense > 0)
        memcpy(dense, d, 4 * r->n_dense);
    memcpy(labels, l, 4 * r->n_tasks);
    *done = 0;
    r->next++;
    return DV365_OK;
}

dv365_status dv365_example_reader_seek(dv365_example_reader *r, size_t index)
{
    dv_clear_error();
    DV_CHECK_NULL(r);
    if (index > r->n_examples)
        return dv_error(DV365_E_INVALID,
                        "dv365_example_reader_seek: index %zu is past the %zu examples of '%s'",
                        index, r->n_examples, r->path);
    r->next = index;
    return DV365_OK;
}
