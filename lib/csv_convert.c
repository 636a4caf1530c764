/* csv_convert.c — CSV/TSV text to timeline and example files.
 *
 * Parsing is Debian's libcsv (RFC 4180 quoting, embedded delimiters and
 * newlines, CRLF, strict mode), fed in 64 KiB pieces so any file size
 * streams.  Its buffer goes through the library allocator, capped per field.
 * This file collects each record's fields, numbers rows and lines, and
 * turns the fields into events or examples with errors that name the row,
 * the line, the column and why.  Column names: docs/data.md. */
#include "datafile.h"

#include "config.h"
#include "timeline.h"

#include <csv.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define CSV_READ_BYTES ((size_t)1 << 16)
#define CSV_FIELD_MAX ((size_t)1 << 20) /* longer fields are refused */
#define CSV_MAX_FIELDS ((size_t)1 << 18)

/* --- libcsv's buffer through dv_malloc -------------------------------------
 * libcsv only ever reallocs one buffer and its hook has no user pointer, so
 * each block carries its size in front; a thread-local flag tells a refused
 * over-long field from a real out-of-memory. */
#define CSV_BLOCK_PAD 16
static _Thread_local bool csv_field_too_long;

static void *csv_realloc_hook(void *p, size_t n)
{
    if (n > CSV_FIELD_MAX + 64) {
        csv_field_too_long = true;
        return NULL;
    }
    unsigned char *nb = dv_malloc(n + CSV_BLOCK_PAD);
    if (nb == NULL)
        return NULL;
    if (p != NULL) {
        unsigned char *old = (unsigned char *)p - CSV_BLOCK_PAD;
        size_t old_n;
        memcpy(&old_n, old, sizeof old_n);
        memcpy(nb + CSV_BLOCK_PAD, p, DV_MIN(old_n, n));
        dv_free(old);
    }
    memcpy(nb, &n, sizeof n);
    return nb + CSV_BLOCK_PAD;
}

static void csv_free_hook(void *p)
{
    if (p != NULL)
        dv_free((unsigned char *)p - CSV_BLOCK_PAD);
}

/* Spaces trimmed around unquoted fields (a tab only when it is no delimiter). */
static int space_no_tab(unsigned char c) { return c == ' '; }
static int space_or_tab(unsigned char c) { return c == ' ' || c == '\t'; }

/* --- records --------------------------------------------------------------- */

typedef struct csv_in csv_in;
typedef dv365_status (*record_fn)(csv_in *in, void *user);

struct csv_in {
    const char *path;
    size_t line;     /* physical line being fed (1-based) */
    size_t rec_line; /* line where the current record began */
    size_t row;      /* data rows so far (the header is row 0) */
    /* the current record: NUL-terminated fields packed in text */
    char *text;
    size_t text_len, text_cap;
    size_t *off;
    size_t n_fields, off_cap;
    dv365_status st; /* first error raised inside a callback */
    record_fn on_header, on_row;
    void *user;
};

static const char *fld(const csv_in *in, size_t i) { return in->text + in->off[i]; }

static void cb_field(void *s, size_t len, void *data)
{
    csv_in *in = data;
    if (in->st != DV365_OK)
        return;
    if (in->n_fields == 0)
        in->rec_line = in->line;
    if (in->n_fields >= CSV_MAX_FIELDS) {
        in->st = dv_error(DV365_E_FORMAT, "'%s': line %zu has more than %zu fields", in->path,
                          in->rec_line, CSV_MAX_FIELDS);
        return;
    }
    if (in->n_fields == in->off_cap) {
        size_t cap = DV_MAX((size_t)32, in->off_cap * 2);
        if (!dv_grow((void **)&in->off, in->off_cap * sizeof *in->off, cap * sizeof *in->off)) {
            in->st = dv_error(DV365_E_NOMEM, "'%s': out of memory", in->path);
            return;
        }
        in->off_cap = cap;
    }
    if (in->text_len + len + 1 > in->text_cap) {
        size_t cap = DV_MAX(in->text_len + len + 1, DV_MAX((size_t)1024, in->text_cap * 2));
        if (!dv_grow((void **)&in->text, in->text_cap, cap)) {
            in->st = dv_error(DV365_E_NOMEM, "'%s': out of memory", in->path);
            return;
        }
        in->text_cap = cap;
    }
    in->off[in->n_fields++] = in->text_len;
    if (len > 0)
        memcpy(in->text + in->text_len, s, len);
    in->text[in->text_len + len] = '\0';
    in->text_len += len + 1;
}

static void cb_record(int c, void *data)
{
    DV_UNUSED(c);
    csv_in *in = data;
    if (in->st == DV365_OK) {
        if (in->row == 0 && in->on_header != NULL) {
            in->st = in->on_header(in, in->user);
            in->on_header = NULL;
        } else {
            in->row++;
            in->st = in->on_row(in, in->user);
        }
    }
    in->n_fields = 0;
    in->text_len = 0;
}

/* The delimiter the header line uses most among , TAB ; | (quotes skipped). */
static unsigned char guess_delimiter(const unsigned char *s, size_t n)
{
    static const unsigned char cand[4] = {',', '\t', ';', '|'};
    size_t count[4] = {0};
    bool quoted = false;
    for (size_t i = 0; i < n && (quoted || (s[i] != '\n' && s[i] != '\r')); i++) {
        if (s[i] == '"')
            quoted = !quoted;
        for (int k = 0; k < 4 && !quoted; k++)
            count[k] += s[i] == cand[k];
    }
    int best = 0;
    for (int k = 1; k < 4; k++)
        if (count[k] > count[best])
            best = k;
    return cand[best];
}

static dv365_status csv_syntax_error(csv_in *in, struct csv_parser *p)
{
    int e = csv_error(p);
    if (e == CSV_EPARSE)
        return dv_error(DV365_E_FORMAT,
                        "'%s': line %zu: malformed CSV (a quote inside an unquoted field, text "
                        "after a closing quote, or an unterminated quote)",
                        in->path, in->line);
    if (csv_field_too_long)
        return dv_error(DV365_E_FORMAT, "'%s': line %zu: a field is longer than %zu bytes",
                        in->path, in->line, CSV_FIELD_MAX);
    return dv_error(DV365_E_NOMEM, "'%s': line %zu: %s", in->path, in->line, csv_strerror(e));
}

/* Read path through libcsv, calling in->on_header for the first record and
 * in->on_row for every other one. */
static dv365_status csv_run(csv_in *in, char delimiter)
{
    if (delimiter != 0 && delimiter != ',' && delimiter != '\t' && delimiter != ';' &&
        delimiter != '|')
        return dv_error(DV365_E_INVALID,
                        "'%s': delimiter must be ',', '\\t', ';', '|' or 0 (auto), got 0x%02x",
                        in->path, (unsigned)(unsigned char)delimiter);
    int fd;
    do
        fd = open(in->path, O_RDONLY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return dv_error(DV365_E_IO, "cannot open '%s': %s", in->path, strerror(errno));
    unsigned char *buf = dv_malloc(CSV_READ_BYTES);
    if (buf == NULL) {
        close(fd);
        return dv_error(DV365_E_NOMEM, "out of memory reading '%s'", in->path);
    }

    struct csv_parser p;
    csv_init(&p, CSV_STRICT | CSV_STRICT_FINI);
    csv_set_realloc_func(&p, csv_realloc_hook);
    csv_set_free_func(&p, csv_free_hook);
    csv_set_blk_size(&p, 4096);
    csv_field_too_long = false;

    dv365_status st = DV365_OK;
    bool first = true;
    in->line = 1;
    for (;;) {
        ssize_t got = read(fd, buf, CSV_READ_BYTES);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            st = dv_error(DV365_E_IO, "cannot read '%s': %s", in->path, strerror(errno));
            break;
        }
        if (got == 0)
            break;
        size_t n = (size_t)got, pos = 0;
        if (first) {
            first = false;
            if (n >= 3 && buf[0] == 0xEF && buf[1] == 0xBB && buf[2] == 0xBF)
                pos = 3; /* UTF-8 byte order mark */
            unsigned char d = delimiter ? (unsigned char)delimiter : guess_delimiter(buf + pos, n - pos);
            csv_set_delim(&p, d);
            csv_set_space_func(&p, d == '\t' ? space_no_tab : space_or_tab);
        }
        /* feed line by line so that callbacks know the line number */
        while (pos < n && st == DV365_OK) {
            const unsigned char *nl = memchr(buf + pos, '\n', n - pos);
            size_t end = nl ? (size_t)(nl - buf) + 1 : n;
            if (csv_parse(&p, buf + pos, end - pos, cb_field, cb_record, in) != end - pos)
                st = in->st != DV365_OK ? in->st : csv_syntax_error(in, &p);
            else
                st = in->st;
            if (nl)
                in->line++;
            pos = end;
        }
        if (st != DV365_OK)
            break;
    }
    if (st == DV365_OK) {
        if (csv_fini(&p, cb_field, cb_record, in) != 0)
            st = csv_syntax_error(in, &p);
        else
            st = in->st;
    }
    if (st == DV365_OK && in->on_header != NULL)
        st = dv_error(DV365_E_FORMAT, "'%s' has no header row", in->path);
    csv_free(&p);
    dv_free(buf);
    close(fd);
    return st;
}

/* --- values ------------------------------------------------------------------ */

/* "'file': row R (line L), column 'name': " */
#define ROWFMT "'%s': row %zu (line %zu), column '%s': "
#define ROWARGS(in, col) (in)->path, (in)->row, (in)->rec_line, (col)

static dv365_status parse_u64(const csv_in *in, const char *col, const char *s, uint64_t *out)
{
    if (*s == '\0')
        return dv_error(DV365_E_FORMAT, ROWFMT "empty value", ROWARGS(in, col));
    if (*s == '-' || *s == '+' || *s == ' ')
        return dv_error(DV365_E_FORMAT, ROWFMT "'%.40s' is not an unsigned integer",
                        ROWARGS(in, col), s);
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0')
        return dv_error(DV365_E_FORMAT, ROWFMT "'%.40s' is not an unsigned integer",
                        ROWARGS(in, col), s);
    if (errno == ERANGE)
        return dv_error(DV365_E_FORMAT, ROWFMT "'%.40s' does not fit in 64 bits",
                        ROWARGS(in, col), s);
    *out = v;
    return DV365_OK;
}

static dv365_status parse_i64(const csv_in *in, const char *col, const char *s, int64_t *out)
{
    if (*s == '\0')
        return dv_error(DV365_E_FORMAT, ROWFMT "empty value", ROWARGS(in, col));
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end != '\0' || *s == ' ')
        return dv_error(DV365_E_FORMAT, ROWFMT "'%.40s' is not an integer", ROWARGS(in, col),
                        s);
    if (errno == ERANGE)
        return dv_error(DV365_E_FORMAT, ROWFMT "'%.40s' does not fit in 64 bits",
                        ROWARGS(in, col), s);
    *out = v;
    return DV365_OK;
}

/* A finite float; nonneg also refuses negatives. */
static dv365_status parse_f32(const csv_in *in, const char *col, const char *s, bool nonneg,
                              float *out)
{
    if (*s == '\0')
        return dv_error(DV365_E_FORMAT, ROWFMT "empty value", ROWARGS(in, col));
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (*end != '\0' || end == s || *s == ' ')
        return dv_error(DV365_E_FORMAT, ROWFMT "'%.40s' is not a number", ROWARGS(in, col), s);
    if (!isfinite(v))
        return dv_error(DV365_E_NONFINITE, ROWFMT "'%.40s' is not finite%s", ROWARGS(in, col), s,
                        isnan(v) || strchr(s, 'i') || strchr(s, 'I') ? "" :
                                                                        " (beyond float range)");
    if (nonneg && v < 0)
        return dv_error(DV365_E_INVALID, ROWFMT "%g is negative", ROWARGS(in, col), (double)v);
    *out = v;
    return DV365_OK;
}

/* Unix seconds from a "time" (seconds) or "time_ms" (milliseconds) field. */
static dv365_status parse_time(const csv_in *in, const char *col, const char *s, bool ms,
                               int64_t *out)
{
    int64_t v = 0;
    dv365_status st = parse_i64(in, col, s, &v);
    if (st != DV365_OK)
        return st;
    if (v < 0 || (ms ? v / 1000 : v) > DV365_TIME_MAX)
        return dv_error(DV365_E_TIMESTAMP,
                        ROWFMT "%lld is %s (times are unix %s in 1970-01-01..2100-01-01)",
                        ROWARGS(in, col), (long long)v, v < 0 ? "before 1970" : "after 2100",
                        ms ? "milliseconds" : "seconds");
    *out = ms ? v / 1000 : v;
    return DV365_OK;
}

/* A vocabulary value: one of the config's names, or an integer code. */
static dv365_status parse_code(const csv_in *in, const char *col, const char *s,
                               const dv365_config *cfg, dv365_vocab vocab, int32_t *out)
{
    size_t size = dv365_config_vocab_size(cfg, vocab);
    if (*s == '\0')
        return dv_error(DV365_E_FORMAT, ROWFMT "empty value", ROWARGS(in, col));
    if (*s >= '0' && *s <= '9') {
        uint64_t c;
        dv365_status st = parse_u64(in, col, s, &c);
        if (st != DV365_OK)
            return st;
        if (c >= size)
            return dv_error(DV365_E_INVALID, ROWFMT "code %llu is out of range (the config's %s "
                            "codes are 0..%zu)", ROWARGS(in, col), (unsigned long long)c, col,
                            size - 1);
        *out = (int32_t)c;
        return DV365_OK;
    }
    if (dv365_config_code(cfg, vocab, s, out) == DV365_OK)
        return DV365_OK;
    char names[200];
    size_t k = 0;
    names[0] = '\0';
    for (size_t i = 0; i < size && k < sizeof names - 1; i++)
        k += (size_t)snprintf(names + k, sizeof names - k, "%s%s", i ? ", " : "",
                              dv365_config_code_name(cfg, vocab, (int32_t)i));
    return dv_error(DV365_E_NOT_FOUND, ROWFMT "unknown name '%.64s' (the config has: %s)",
                    ROWARGS(in, col), s, names);
}

/* --- header ------------------------------------------------------------------- */

/* Find each wanted column once; roles[i] = wanted index or -1 (ignored). */
static dv365_status map_columns(csv_in *in, const char *const *want, int n_want, int *col_of,
                                int alt_a, int alt_b)
{
    for (int k = 0; k < n_want; k++)
        col_of[k] = -1;
    for (size_t i = 0; i < in->n_fields; i++) {
        for (int k = 0; k < n_want; k++) {
            if (strcmp(fld(in, i), want[k]) != 0)
                continue;
            if (col_of[k] >= 0)
                return dv_error(DV365_E_FORMAT, "'%s': header (line %zu): column '%s' appears "
                                "twice (fields %d and %zu)", in->path, in->rec_line, want[k],
                                col_of[k] + 1, i + 1);
            col_of[k] = (int)i;
        }
    }
    /* alt_a / alt_b: two spellings of one column (time / time_ms): exactly one */
    if (alt_a >= 0 && col_of[alt_a] >= 0 && col_of[alt_b] >= 0)
        return dv_error(DV365_E_FORMAT, "'%s': header (line %zu): give '%s' or '%s', not both",
                        in->path, in->rec_line, want[alt_a], want[alt_b]);
    for (int k = 0; k < n_want; k++) {
        if (col_of[k] >= 0 || k == alt_b || (k == alt_a && col_of[alt_b] >= 0))
            continue;
        if (k == alt_a && alt_a >= 0)
            return dv_error(DV365_E_FORMAT, "'%s': header (line %zu): missing column '%s' (or "
                            "'%s')", in->path, in->rec_line, want[alt_a], want[alt_b]);
        return dv_error(DV365_E_FORMAT, "'%s': header (line %zu): missing column '%s'",
                        in->path, in->rec_line, want[k]);
    }
    return DV365_OK;
}

static dv365_status check_width(const csv_in *in, size_t n_header)
{
    if (in->n_fields != n_header)
        return dv_error(DV365_E_FORMAT, "'%s': row %zu (line %zu) has %zu fields, the header has "
                        "%zu", in->path, in->row, in->rec_line, in->n_fields, n_header);
    return DV365_OK;
}

/* ============================================================================ */
/* CSV -> timelines                                                             */
/* ============================================================================ */

enum { T_USER, T_TIME, T_TIME_MS, T_MEDIA, T_AUTHOR, T_TOPIC, T_ACTION, T_MEDIA_TYPE,
       T_SURFACE, T_DURATION, T_DWELL, T_NCOLS };
static const char *const tl_cols[T_NCOLS] = {
    "user_id", "time", "time_ms", "media_id", "author_id", "topic_id",
    "action", "media_type", "surface", "duration_ms", "dwell_ms"};

typedef struct tl_conv {
    const dv365_config *cfg;
    const char *out_path;
    dv365_timeline_writer *w;
    dv365_timeline *tl;
    int col[T_NCOLS];
    size_t n_header;
    /* the current user's events */
    bool have_user;
    uint64_t user;
    size_t first_row, n, cap;
    int64_t *time;
    uint64_t *ids[3];
    int32_t *codes[3];
    float *dur, *dwell;
} tl_conv;

static dv365_status tl_header(csv_in *in, void *user)
{
    tl_conv *c = user;
    dv365_status st = map_columns(in, tl_cols, T_NCOLS, c->col, T_TIME, T_TIME_MS);
    if (st != DV365_OK)
        return st;
    c->n_header = in->n_fields;
    st = dv365_timeline_writer_open(c->out_path, c->cfg, &c->w);
    if (st == DV365_OK)
        st = dv365_timeline_create(c->cfg, &c->tl);
    return st;
}

static dv365_status tl_grow(tl_conv *c)
{
    if (c->n < c->cap)
        return DV365_OK;
    size_t cap = DV_MAX((size_t)1024, c->cap * 2);
    void **cols[9] = {(void **)&c->time,     (void **)&c->ids[0],   (void **)&c->ids[1],
                      (void **)&c->ids[2],   (void **)&c->codes[0], (void **)&c->codes[1],
                      (void **)&c->codes[2], (void **)&c->dur,      (void **)&c->dwell};
    const size_t elem[9] = {8, 8, 8, 8, 4, 4, 4, 4, 4};
    for (int k = 0; k < 9; k++) {
        size_t bytes;
        if (!dv_mul_size(cap, elem[k], &bytes) || !dv_grow(cols[k], c->cap * elem[k], bytes))
            return dv_error(DV365_E_NOMEM, "out of memory for a user of %zu events", cap);
    }
    c->cap = cap;
    return DV365_OK;
}

/* Write the buffered user (rows first_row..last_row) as one record. */
static dv365_status tl_flush(csv_in *in, tl_conv *c, size_t last_row)
{
    if (!c->have_user)
        return DV365_OK;
    dv365_timeline_clear(c->tl);
    dv365_status st = dv365_timeline_append(c->tl, c->n, c->time, c->ids[0], c->ids[1],
                                            c->ids[2], c->codes[0], c->codes[1], c->codes[2],
                                            c->dur, c->dwell);
    if (st == DV365_OK)
        st = dv365_timeline_writer_add(c->w, c->user, c->tl);
    if (st != DV365_OK)
        return dv_error_context(st, "'%s': user %llu (rows %zu..%zu)", in->path,
                                (unsigned long long)c->user, c->first_row, last_row);
    c->have_user = false;
    c->n = 0;
    return DV365_OK;
}

static dv365_status tl_row(csv_in *in, void *user)
{
    tl_conv *c = user;
    dv365_status st = check_width(in, c->n_header);
    if (st != DV365_OK)
        return st;
    uint64_t uid;
    if ((st = parse_u64(in, "user_id", fld(in, (size_t)c->col[T_USER]), &uid)) != DV365_OK)
        return st;
    if (!c->have_user || uid != c->user) {
        if ((st = tl_flush(in, c, in->row - 1)) != DV365_OK)
            return st;
        if (dv_timeline_writer_has_user(c->w, uid))
            return dv_error(DV365_E_FORMAT,
                            "'%s': row %zu (line %zu), column 'user_id': user %llu already had "
                            "rows before other users' rows; the rows of a user must be "
                            "contiguous (sort the file by user_id)",
                            in->path, in->row, in->rec_line, (unsigned long long)uid);
        c->have_user = true;
        c->user = uid;
        c->first_row = in->row;
    }
    if ((st = tl_grow(c)) != DV365_OK)
        return st;
    size_t i = c->n;
    bool ms = c->col[T_TIME] < 0;
    int tcol = ms ? c->col[T_TIME_MS] : c->col[T_TIME];
    static const dv365_vocab vocab[3] = {DV365_VOCAB_ACTION, DV365_VOCAB_MEDIA_TYPE,
                                         DV365_VOCAB_SURFACE};
    if ((st = parse_time(in, ms ? "time_ms" : "time", fld(in, (size_t)tcol), ms, &c->time[i])))
        return st;
    for (int k = 0; k < 3; k++)
        if ((st = parse_u64(in, tl_cols[T_MEDIA + k], fld(in, (size_t)c->col[T_MEDIA + k]),
                            &c->ids[k][i])))
            return st;
    for (int k = 0; k < 3; k++)
        if ((st = parse_code(in, tl_cols[T_ACTION + k], fld(in, (size_t)c->col[T_ACTION + k]),
                             c->cfg, vocab[k], &c->codes[k][i])))
            return st;
    if ((st = parse_f32(in, "duration_ms", fld(in, (size_t)c->col[T_DURATION]), true,
                        &c->dur[i])) ||
        (st = parse_f32(in, "dwell_ms", fld(in, (size_t)c->col[T_DWELL]), true, &c->dwell[i])))
        return st;
    c->n++;
    return DV365_OK;
}

dv365_status dv365_csv_to_timelines(const char *csv_path, const dv365_config *cfg,
                                    char delimiter, const char *out_path, size_t *rows_read)
{
    dv_clear_error();
    DV_CHECK_NULL(csv_path);
    DV_CHECK_NULL(cfg);
    DV_CHECK_NULL(out_path);
    tl_conv c = {.cfg = cfg, .out_path = out_path};
    csv_in in = {.path = csv_path, .on_header = tl_header, .on_row = tl_row, .user = &c};
    dv365_status st = csv_run(&in, delimiter);
    if (st == DV365_OK)
        st = tl_flush(&in, &c, in.row);
    if (st == DV365_OK)
        st = dv365_timeline_writer_close(c.w);
    dv365_timeline_writer_free(c.w); /* abandons the file if not closed */
    dv365_timeline_free(c.tl);
    void *cols[9] = {c.time, c.ids[0], c.ids[1], c.ids[2], c.codes[0],
                     c.codes[1], c.codes[2], c.dur, c.dwell};
    for (int k = 0; k < 9; k++)
        dv_free(cols[k]);
    dv_free(in.text);
    dv_free(in.off);
    if (st == DV365_OK && rows_read != NULL)
        *rows_read = in.row;
    return st;
}

/* ============================================================================ */
/* CSV -> examples                                                              */
/* ============================================================================ */

enum { E_USER, E_TIME, E_TIME_MS, E_MEDIA, E_AUTHOR, E_TOPIC, E_NCOLS };
static const char *const ex_cols[E_NCOLS] = {"user_id",  "label_time", "label_time_ms",
                                             "media_id", "author_id",  "topic_id"};

/* One of the fixed columns? (label_time starts like a label_<i>) */
static bool fixed_example_column(const char *name)
{
    for (int k = 0; k < E_NCOLS; k++)
        if (strcmp(name, ex_cols[k]) == 0)
            return true;
    return false;
}

typedef struct ex_conv {
    const char *out_path;
    dv365_example_writer *w;
    int col[E_NCOLS];
    size_t n_header, n_dense, n_tasks;
    int *dense_col, *label_col; /* field index of dense_i / label_i */
    float *dense, *labels;
    char name[32];
} ex_conv;

/* "dense_12" -> 12 for prefix "dense_"; -1 if the name has another form,
 * -2 if it has the prefix but no canonical index. */
static long indexed_name(const char *s, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(s, prefix, n) != 0)
        return -1;
    s += n;
    if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] != '\0') || strlen(s) > 6)
        return -2;
    for (const char *q = s; *q; q++)
        if (*q < '0' || *q > '9')
            return -2;
    return atol(s);
}

/* Collect the prefix_<i> columns into a dense 0..n-1 map. */
static dv365_status indexed_columns(csv_in *in, const char *prefix, int **map, size_t *n_out)
{
    long max = -1;
    for (size_t i = 0; i < in->n_fields; i++) {
        if (fixed_example_column(fld(in, i)))
            continue;
        long k = indexed_name(fld(in, i), prefix);
        if (k == -2)
            return dv_error(DV365_E_FORMAT, "'%s': header (line %zu): column '%.64s': %s columns "
                            "are named %s0, %s1, ... (at most 65536)", in->path, in->rec_line,
                            fld(in, i), prefix, prefix, prefix);
        max = DV_MAX(max, k);
    }
    size_t n = (size_t)(max + 1);
    if (n > 65536)
        return dv_error(DV365_E_FORMAT, "'%s': header: more than 65536 %s columns", in->path,
                        prefix);
    int *m = dv_malloc(DV_MAX(n, (size_t)1) * sizeof *m);
    if (m == NULL)
        return dv_error(DV365_E_NOMEM, "out of memory");
    for (size_t k = 0; k < n; k++)
        m[k] = -1;
    for (size_t i = 0; i < in->n_fields; i++) {
        long k = fixed_example_column(fld(in, i)) ? -1 : indexed_name(fld(in, i), prefix);
        if (k < 0)
            continue;
        if (m[k] >= 0) {
            dv_free(m);
            return dv_error(DV365_E_FORMAT, "'%s': header (line %zu): column '%s%ld' appears "
                            "twice", in->path, in->rec_line, prefix, k);
        }
        m[k] = (int)i;
    }
    for (size_t k = 0; k < n; k++)
        if (m[k] < 0) {
            dv_free(m);
            return dv_error(DV365_E_FORMAT, "'%s': header (line %zu): column '%s%zu' is missing "
                            "(columns %s0..%s%zu must all be present)", in->path, in->rec_line,
                            prefix, k, prefix, prefix, n - 1);
        }
    *map = m;
    *n_out = n;
    return DV365_OK;
}

static dv365_status ex_header(csv_in *in, void *user)
{
    ex_conv *c = user;
    dv365_status st = map_columns(in, ex_cols, E_NCOLS, c->col, E_TIME, E_TIME_MS);
    if (st == DV365_OK)
        st = indexed_columns(in, "dense_", &c->dense_col, &c->n_dense);
    if (st == DV365_OK)
        st = indexed_columns(in, "label_", &c->label_col, &c->n_tasks);
    if (st == DV365_OK && c->n_tasks == 0)
        st = dv_error(DV365_E_FORMAT, "'%s': header (line %zu): missing column 'label_0' (one "
                      "label_<i> column per task)", in->path, in->rec_line);
    if (st != DV365_OK)
        return st;
    c->n_header = in->n_fields;
    c->dense = dv_malloc(DV_MAX(c->n_dense, (size_t)1) * sizeof(float));
    c->labels = dv_malloc(c->n_tasks * sizeof(float));
    if (c->dense == NULL || c->labels == NULL)
        return dv_error(DV365_E_NOMEM, "out of memory");
    return dv365_example_writer_open(c->out_path, c->n_dense, c->n_tasks, &c->w);
}

static dv365_status ex_row(csv_in *in, void *user)
{
    ex_conv *c = user;
    dv365_status st = check_width(in, c->n_header);
    if (st != DV365_OK)
        return st;
    uint64_t uid, ids[3];
    int64_t t;
    bool ms = c->col[E_TIME] < 0;
    if ((st = parse_u64(in, "user_id", fld(in, (size_t)c->col[E_USER]), &uid)) ||
        (st = parse_time(in, ex_cols[ms ? E_TIME_MS : E_TIME],
                         fld(in, (size_t)c->col[ms ? E_TIME_MS : E_TIME]), ms, &t)))
        return st;
    for (int k = 0; k < 3; k++)
        if ((st = parse_u64(in, ex_cols[E_MEDIA + k], fld(in, (size_t)c->col[E_MEDIA + k]),
                            &ids[k])))
            return st;
    for (size_t k = 0; k < c->n_dense; k++) {
        snprintf(c->name, sizeof c->name, "dense_%zu", k);
        if ((st = parse_f32(in, c->name, fld(in, (size_t)c->dense_col[k]), false, &c->dense[k])))
            return st;
    }
    for (size_t k = 0; k < c->n_tasks; k++) {
        snprintf(c->name, sizeof c->name, "label_%zu", k);
        if ((st = parse_f32(in, c->name, fld(in, (size_t)c->label_col[k]), false,
                            &c->labels[k])))
            return st;
    }
    st = dv365_example_writer_add(c->w, uid, t, ids[0], ids[1], ids[2], c->dense, c->labels);
    if (st != DV365_OK)
        return dv_error_context(st, "'%s': row %zu (line %zu)", in->path, in->row, in->rec_line);
    return DV365_OK;
}

dv365_status dv365_csv_to_examples(const char *csv_path, char delimiter, const char *out_path,
                                   size_t *rows_read)
{
    dv_clear_error();
    DV_CHECK_NULL(csv_path);
    DV_CHECK_NULL(out_path);
    ex_conv c = {.out_path = out_path};
    csv_in in = {.path = csv_path, .on_header = ex_header, .on_row = ex_row, .user = &c};
    dv365_status st = csv_run(&in, delimiter);
    if (st == DV365_OK)
        st = dv365_example_writer_close(c.w);
    dv365_example_writer_free(c.w); /* abandons the file if not closed */
    dv_free(c.dense_col);
    dv_free(c.label_col);
    dv_free(c.dense);
    dv_free(c.labels);
    dv_free(in.text);
    dv_free(in.off);
    if (st == DV365_OK && rows_read != NULL)
        *rows_read = in.row;
    return st;
}
