/* safetensors.c — safetensors reader and writer (format: docs/weights.md).
 *
 * The reader is written for hostile input (it is fuzzed): every length is
 * checked before use, every size product is overflow-checked, the JSON parser
 * only knows the shapes the header may take and has no recursion, and names
 * are deduplicated by sorting, not by quadratic search. */
#include "safetensors.h"

#include "fileio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tensor bytes are stored little-endian and handed out as-is. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "safetensors.c assumes a little-endian host");

#define ST_MAX_HEADER ((uint64_t)100 << 20) /* 100 MiB, as the reference reader */
#define ST_METADATA_KEY "__metadata__"

static const struct {
    const char *name;
    size_t size;
} k_dtypes[] = {
    [DV_DTYPE_F32] = {"F32", 4}, [DV_DTYPE_F16] = {"F16", 2}, [DV_DTYPE_U8] = {"U8", 1},
    [DV_DTYPE_I32] = {"I32", 4}, [DV_DTYPE_I64] = {"I64", 8}, [DV_DTYPE_U64] = {"U64", 8},
    [DV_DTYPE_F64] = {"F64", 8},
};
#define ST_N_DTYPES (sizeof k_dtypes / sizeof k_dtypes[0])

size_t dv_dtype_size(dv_dtype t)
{
    return (unsigned)t < ST_N_DTYPES ? k_dtypes[t].size : 0;
}

const char *dv_dtype_name(dv_dtype t)
{
    return (unsigned)t < ST_N_DTYPES ? k_dtypes[t].name : "?";
}

/* Length of the valid UTF-8 sequence starting at s (at most n bytes), or 0
 * if it is invalid (overlong, surrogate, > U+10FFFF, truncated). */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        if (c == 0xED)
            hi = 0x9F; /* UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        if (c == 0xF4)
            hi = 0x8F; /* > U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return len;
}

static bool utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq_len(p + i, n - i);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}

/* ========================================================================== */
/* Reading                                                                    */
/* ========================================================================== */

typedef struct st_meta {
    const char *key, *value; /* in the string pool */
} st_meta;

struct dv_st_file {
    unsigned char *buf;     /* the whole file, 64-byte aligned */
    size_t len;
    dv_tensor_view *views;  /* [n], sorted by data offset */
    size_t n;
    size_t *by_name;        /* [n] indices into views, sorted by name */
    st_meta *meta;          /* [n_meta], sorted by key */
    size_t n_meta;
    char *pool;             /* decoded strings (names, metadata) */
};

/* Parser over the JSON header.  It accepts exactly what a safetensors header
 * may hold: one object of tensor entries and one optional "__metadata__"
 * object of strings.  Positions in messages are byte offsets in the file. */
typedef struct st_parser {
    const unsigned char *s; /* header bytes */
    size_t pos, end;
    char *pool;             /* decoded strings go here */
    size_t pool_used, pool_cap;
} st_parser;

/* A tensor entry while parsing, before it becomes a view. */
typedef struct st_entry {
    const char *name;
    dv_dtype dtype;
    size_t ndim;
    size_t shape[DV_ST_MAX_DIMS];
    uint64_t begin, end;
    size_t order; /* position in the header, for a stable sort */
} st_entry;

static dv365_status syntax_error(const st_parser *p, const char *what)
{
    if (p->pos >= p->end)
        return dv_error(DV365_E_FORMAT,
                        "safetensors: invalid JSON header: %s, but the header ends at byte %zu",
                        what, p->end + 8);
    return dv_error(DV365_E_FORMAT,
                    "safetensors: invalid JSON header at byte offset %zu: %s (found '%c')",
                    p->pos + 8, what,
                    p->s[p->pos] >= 0x20 && p->s[p->pos] < 0x7f ? p->s[p->pos] : '?');
}

static void skip_ws(st_parser *p)
{
    while (p->pos < p->end && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                               p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

/* Skip whitespace, then consume c if it is next. */
static bool accept(st_parser *p, unsigned char c)
{
    skip_ws(p);
    if (p->pos < p->end && p->s[p->pos] == c) {
        p->pos++;
        return true;
    }
    return false;
}

static dv365_status expect(st_parser *p, unsigned char c, const char *what)
{
    return accept(p, c) ? DV365_OK : syntax_error(p, what);
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Four hex digits at p->pos (after "\u"). */
static dv365_status read_hex4(st_parser *p, unsigned *out)
{
    if (p->end - p->pos < 4)
        return syntax_error(p, "\\u needs four hex digits");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_value(p->s[p->pos]);
        if (h < 0)
            return syntax_error(p, "\\u needs four hex digits");
        v = v * 16 + (unsigned)h;
        p->pos++;
    }
    *out = v;
    return DV365_OK;
}

static void put_utf8(char *dst, size_t *n, unsigned cp)
{
    if (cp < 0x80) {
        dst[(*n)++] = (char)cp;
    } else if (cp < 0x800) {
        dst[(*n)++] = (char)(0xC0 | (cp >> 6));
        dst[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        dst[(*n)++] = (char)(0xE0 | (cp >> 12));
        dst[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        dst[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        dst[(*n)++] = (char)(0xF0 | (cp >> 18));
        dst[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        dst[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        dst[(*n)++] = (char)(0x80 | (cp & 0x3F));
    }
}

/* A JSON string, decoded into the pool as a NUL-terminated UTF-8 string.
 * The decoded form (plus NUL) is never longer than the quoted source, so a
 * pool as large as the header always suffices. */
static dv365_status parse_string(st_parser *p, const char **out)
{
    dv365_status st = expect(p, '"', "expected a string");
    if (st != DV365_OK)
        return st;
    char *dst = p->pool + p->pool_used;
    size_t n = 0;
    for (;;) {
        if (p->pos >= p->end)
            return syntax_error(p, "unterminated string");
        unsigned char c = p->s[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c < 0x20)
            return syntax_error(p, "control character in a string (must be escaped)");
        if (c == '\\') {
            p->pos++;
            if (p->pos >= p->end)
                return syntax_error(p, "unterminated escape");
            unsigned char e = p->s[p->pos++];
            unsigned cp;
            switch (e) {
            case '"': dst[n++] = '"'; continue;
            case '\\': dst[n++] = '\\'; continue;
            case '/': dst[n++] = '/'; continue;
            case 'b': dst[n++] = '\b'; continue;
            case 'f': dst[n++] = '\f'; continue;
            case 'n': dst[n++] = '\n'; continue;
            case 'r': dst[n++] = '\r'; continue;
            case 't': dst[n++] = '\t'; continue;
            case 'u': break;
            default:
                p->pos--;
                return syntax_error(p, "unknown escape");
            }
            if ((st = read_hex4(p, &cp)) != DV365_OK)
                return st;
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return syntax_error(p, "unpaired low surrogate in \\u escape");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (p->end - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
                    return syntax_error(p, "unpaired high surrogate in \\u escape");
                p->pos += 2;
                if ((st = read_hex4(p, &lo)) != DV365_OK)
                    return st;
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return syntax_error(p, "unpaired high surrogate in \\u escape");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp == 0)
                return syntax_error(p, "\\u0000 (NUL) is not allowed in names");
            put_utf8(dst, &n, cp);
            continue;
        }
        size_t k = utf8_seq_len(p->s + p->pos, p->end - p->pos);
        if (k == 0)
            return syntax_error(p, "invalid UTF-8 in a string");
        memcpy(dst + n, p->s + p->pos, k);
        n += k;
        p->pos += k;
    }
    dst[n++] = '\0';
    p->pool_used += n;
    if (p->pool_used > p->pool_cap) /* cannot happen (see above); stay safe */
        return dv_error(DV365_E_INTERNAL, "safetensors: string pool overflow");
    *out = dst;
    return DV365_OK;
}

/* A non-negative JSON integer that fits in 64 bits. */
static dv365_status parse_uint(st_parser *p, uint64_t *out)
{
    skip_ws(p);
    if (p->pos < p->end && p->s[p->pos] == '-')
        return syntax_error(p, "negative numbers are not allowed here");
    if (p->pos >= p->end || p->s[p->pos] < '0' || p->s[p->pos] > '9')
        return syntax_error(p, "expected a non-negative integer");
    size_t start = p->pos;
    uint64_t v = 0;
    while (p->pos < p->end && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
        if (__builtin_mul_overflow(v, 10, &v) ||
            __builtin_add_overflow(v, (uint64_t)(p->s[p->pos] - '0'), &v))
            return syntax_error(p, "integer does not fit in 64 bits");
        p->pos++;
    }
    if (p->s[start] == '0' && p->pos - start > 1) {
        p->pos = start;
        return syntax_error(p, "leading zeros are not allowed in JSON numbers");
    }
    if (p->pos < p->end &&
        (p->s[p->pos] == '.' || p->s[p->pos] == 'e' || p->s[p->pos] == 'E'))
        return syntax_error(p, "expected an integer, not a fraction or exponent");
    *out = v;
    return DV365_OK;
}

/* "[u, u, ...]" with at most max values; *n receives the count.  Returns
 * DV365_E_FORMAT with too_many as message when there are more. */
static dv365_status parse_uint_array(st_parser *p, uint64_t *vals, size_t max, size_t *n,
                                     const char *name, const char *field)
{
    dv365_status st = expect(p, '[', "expected '['");
    if (st != DV365_OK)
        return st;
    *n = 0;
    if (accept(p, ']'))
        return DV365_OK;
    for (;;) {
        uint64_t v = 0;
        if ((st = parse_uint(p, &v)) != DV365_OK)
            return st;
        if (*n == max)
            return dv_error(DV365_E_FORMAT, "safetensors: tensor '%s': %s has more than %zu entries",
                            name, field, max);
        vals[(*n)++] = v;
        if (accept(p, ']'))
            return DV365_OK;
        if ((st = expect(p, ',', "expected ',' or ']' in an array")) != DV365_OK)
            return st;
    }
}

static dv365_status parse_dtype(st_parser *p, const char *name, dv_dtype *out)
{
    size_t at = p->pos;
    const char *s;
    dv365_status st = parse_string(p, &s);
    if (st != DV365_OK)
        return st;
    for (size_t t = 0; t < ST_N_DTYPES; t++)
        if (strcmp(s, k_dtypes[t].name) == 0) {
            *out = (dv_dtype)t;
            return DV365_OK;
        }
    return dv_error(DV365_E_FORMAT,
                    "safetensors: tensor '%s' has unsupported dtype \"%.40s\" at byte offset %zu "
                    "(supported: F32 F16 U8 I32 I64 U64 F64)",
                    name, s, at + 8);
}

/* {"dtype": .., "shape": [..], "data_offsets": [b, e]} in any key order. */
static dv365_status parse_tensor(st_parser *p, st_entry *e)
{
    dv365_status st = expect(p, '{', "expected '{' to start a tensor entry");
    if (st != DV365_OK)
        return st;
    bool have_dtype = false, have_shape = false, have_offsets = false;
    if (!accept(p, '}')) {
        for (;;) {
            size_t key_at = p->pos;
            const char *key;
            if ((st = parse_string(p, &key)) != DV365_OK)
                return st;
            if ((st = expect(p, ':', "expected ':' after a key")) != DV365_OK)
                return st;
            bool *seen = strcmp(key, "dtype") == 0          ? &have_dtype
                         : strcmp(key, "shape") == 0        ? &have_shape
                         : strcmp(key, "data_offsets") == 0 ? &have_offsets
                                                            : NULL;
            if (seen == NULL)
                return dv_error(DV365_E_FORMAT,
                                "safetensors: tensor '%s' has unknown field \"%.40s\" at byte "
                                "offset %zu",
                                e->name, key, key_at + 8);
            if (*seen)
                return dv_error(DV365_E_FORMAT,
                                "safetensors: tensor '%s' repeats field \"%s\" at byte offset %zu",
                                e->name, key, key_at + 8);
            if (seen == &have_dtype) {
                st = parse_dtype(p, e->name, &e->dtype);
            } else if (seen == &have_shape) {
                uint64_t dims[DV_ST_MAX_DIMS];
                st = parse_uint_array(p, dims, DV_ST_MAX_DIMS, &e->ndim, e->name, "shape");
                for (size_t i = 0; st == DV365_OK && i < e->ndim; i++) {
                    e->shape[i] = (size_t)dims[i];
                    if (e->shape[i] != dims[i])
                        return dv_error(DV365_E_FORMAT, "safetensors: tensor '%s': dim too large",
                                        e->name);
                }
            } else {
                uint64_t off[2];
                size_t n = 0;
                st = parse_uint_array(p, off, 2, &n, e->name, "data_offsets");
                if (st == DV365_OK && n != 2)
                    return dv_error(DV365_E_FORMAT,
                                    "safetensors: tensor '%s': data_offsets must be [begin, end]",
                                    e->name);
                if (st == DV365_OK) {
                    e->begin = off[0];
                    e->end = off[1];
                }
            }
            if (st != DV365_OK)
                return st;
            *seen = true;
            if (accept(p, '}'))
                break;
            if ((st = expect(p, ',', "expected ',' or '}' in a tensor entry")) != DV365_OK)
                return st;
        }
    }
    if (!have_dtype || !have_shape || !have_offsets)
        return dv_error(DV365_E_FORMAT, "safetensors: tensor '%s' lacks \"%s\"", e->name,
                        !have_dtype ? "dtype" : !have_shape ? "shape" : "data_offsets");
    return DV365_OK;
}

static dv365_status grow_array(void **arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return DV365_OK;
    size_t new_cap = *cap ? *cap * 2 : 16, old_bytes, new_bytes;
    if (!dv_mul_size(*cap, elem, &old_bytes) || !dv_mul_size(new_cap, elem, &new_bytes) ||
        !dv_grow(arr, old_bytes, new_bytes))
        return dv_error(DV365_E_NOMEM, "safetensors: out of memory");
    *cap = new_cap;
    return DV365_OK;
}

static int cmp_meta(const void *a, const void *b)
{
    return strcmp(((const st_meta *)a)->key, ((const st_meta *)b)->key);
}

/* {"key": "value", ...}; keys unique. */
static dv365_status parse_metadata(st_parser *p, dv_st_file *f)
{
    dv365_status st = expect(p, '{', "expected '{' after \"__metadata__\"");
    if (st != DV365_OK)
        return st;
    size_t cap = 0;
    if (!accept(p, '}')) {
        for (;;) {
            st_meta m;
            if ((st = parse_string(p, &m.key)) != DV365_OK ||
                (st = expect(p, ':', "expected ':' after a key")) != DV365_OK)
                return st;
            skip_ws(p);
            if (p->pos < p->end && p->s[p->pos] != '"')
                return syntax_error(p, "__metadata__ values must be strings");
            if ((st = parse_string(p, &m.value)) != DV365_OK)
                return st;
            if ((st = grow_array((void **)&f->meta, &cap, f->n_meta, sizeof m)) != DV365_OK)
                return st;
            f->meta[f->n_meta++] = m;
            if (accept(p, '}'))
                break;
            if ((st = expect(p, ',', "expected ',' or '}' in __metadata__")) != DV365_OK)
                return st;
        }
    }
    if (f->n_meta > 1)
        qsort(f->meta, f->n_meta, sizeof *f->meta, cmp_meta);
    for (size_t i = 1; i < f->n_meta; i++)
        if (strcmp(f->meta[i - 1].key, f->meta[i].key) == 0)
            return dv_error(DV365_E_FORMAT, "safetensors: duplicate __metadata__ key \"%.100s\"",
                            f->meta[i].key);
    return DV365_OK;
}

static int cmp_entry_offset(const void *a, const void *b)
{
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* qsort has no context argument: by_name sorting reads the views via this
 * per-thread pointer. */
static _Thread_local const dv_tensor_view *tl_sort_views;
static int cmp_index_name(const void *a, const void *b)
{
    return strcmp(tl_sort_views[*(const size_t *)a].name, tl_sort_views[*(const size_t *)b].name);
}

/* Check one entry's sizes against its dtype, shape and the data section. */
static dv365_status check_entry(const st_entry *e, uint64_t data_len)
{
    size_t numel = 1, nbytes;
    for (size_t d = 0; d < e->ndim; d++)
        if (!dv_mul_size(numel, e->shape[d], &numel))
            return dv_error(DV365_E_FORMAT,
                            "safetensors: tensor '%s': the element count of its shape overflows",
                            e->name);
    if (!dv_mul_size(numel, dv_dtype_size(e->dtype), &nbytes))
        return dv_error(DV365_E_FORMAT, "safetensors: tensor '%s': its byte size overflows",
                        e->name);
    if (e->end < e->begin)
        return dv_error(DV365_E_FORMAT,
                        "safetensors: tensor '%s': data_offsets [%llu, %llu] end before they begin",
                        e->name, (unsigned long long)e->begin, (unsigned long long)e->end);
    if (e->end - e->begin != nbytes)
        return dv_error(DV365_E_FORMAT,
                        "safetensors: tensor '%s': data_offsets [%llu, %llu] span %llu bytes but "
                        "%s x %zu elements need %zu",
                        e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                        (unsigned long long)(e->end - e->begin), dv_dtype_name(e->dtype), numel,
                        nbytes);
    if (e->end > data_len)
        return dv_error(DV365_E_FORMAT,
                        "safetensors: tensor '%s': data_offsets [%llu, %llu] are out of bounds "
                        "(the data section has %llu bytes)",
                        e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                        (unsigned long long)data_len);
    return DV365_OK;
}

/* Parse and validate f->buf; fills views, by_name and meta. */
static dv365_status st_parse(dv_st_file *f)
{
    if (f->len < 8)
        return dv_error(DV365_E_FORMAT,
                        "safetensors: file is %zu bytes, shorter than the 8-byte header length",
                        f->len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | f->buf[i];
    if (hlen > ST_MAX_HEADER)
        return dv_error(DV365_E_FORMAT,
                        "safetensors: header length %llu exceeds the 100 MiB limit",
                        (unsigned long long)hlen);
    if (hlen > f->len - 8)
        return dv_error(DV365_E_FORMAT,
                        "safetensors: header length %llu is larger than the %zu bytes after it",
                        (unsigned long long)hlen, f->len - 8);

    st_parser p = {.s = f->buf + 8, .pos = 0, .end = (size_t)hlen};
    f->pool = dv_malloc(p.end + 1);
    if (f->pool == NULL)
        return dv_error(DV365_E_NOMEM, "safetensors: out of memory for a %zu-byte header", p.end);
    p.pool = f->pool;
    p.pool_cap = p.end + 1;

    st_entry *ents = NULL;
    size_t n = 0, cap = 0;
    bool have_meta = false;
    dv365_status st = expect(&p, '{', "the header must be a JSON object");
    if (st == DV365_OK && !accept(&p, '}')) {
        for (;;) {
            size_t key_at = p.pos;
            const char *name;
            if ((st = parse_string(&p, &name)) != DV365_OK ||
                (st = expect(&p, ':', "expected ':' after a key")) != DV365_OK)
                break;
            if (strcmp(name, ST_METADATA_KEY) == 0) {
                skip_ws(&p);
                key_at = p.pos;
                if (have_meta) {
                    st = dv_error(DV365_E_FORMAT,
                                  "safetensors: \"__metadata__\" appears twice (byte offset %zu)",
                                  key_at + 8);
                    break;
                }
                have_meta = true;
                if ((st = parse_metadata(&p, f)) != DV365_OK)
                    break;
            } else {
                if ((st = grow_array((void **)&ents, &cap, n, sizeof *ents)) != DV365_OK)
                    break;
                st_entry *e = &ents[n];
                memset(e, 0, sizeof *e);
                e->name = name;
                e->order = n;
                if ((st = parse_tensor(&p, e)) != DV365_OK)
                    break;
                n++;
            }
            if (accept(&p, '}'))
                break;
            if ((st = expect(&p, ',', "expected ',' or '}' after an entry")) != DV365_OK)
                break;
        }
    }
    if (st == DV365_OK) {
        /* The reference writer pads the header with spaces; nothing else may
         * follow the object. */
        while (p.pos < p.end && p.s[p.pos] == ' ')
            p.pos++;
        if (p.pos < p.end)
            st = dv_error(DV365_E_FORMAT,
                          "safetensors: unexpected byte 0x%02x after the JSON header at byte "
                          "offset %zu (only space padding may follow)",
                          p.s[p.pos], p.pos + 8);
    }

    /* Sizes, bounds, then the data section must be tiled exactly: sorted by
     * offset, each tensor starts where the previous one ends. */
    uint64_t data_len = f->len - 8 - hlen;
    for (size_t i = 0; st == DV365_OK && i < n; i++)
        st = check_entry(&ents[i], data_len);
    if (st == DV365_OK && n > 1)
        qsort(ents, n, sizeof *ents, cmp_entry_offset);
    uint64_t at = 0;
    for (size_t i = 0; st == DV365_OK && i < n; i++) {
        if (ents[i].begin < at)
            st = dv_error(DV365_E_FORMAT,
                          "safetensors: tensor '%s' (bytes %llu..%llu) overlaps tensor '%s'",
                          ents[i].name, (unsigned long long)ents[i].begin,
                          (unsigned long long)ents[i].end, ents[i - 1].name);
        else if (ents[i].begin > at)
            st = dv_error(DV365_E_FORMAT,
                          "safetensors: %llu unused bytes before tensor '%s' in the data section",
                          (unsigned long long)(ents[i].begin - at), ents[i].name);
        else
            at = ents[i].end;
    }
    if (st == DV365_OK && at != data_len)
        st = dv_error(DV365_E_FORMAT,
                      "safetensors: %llu bytes of trailing data after the last tensor",
                      (unsigned long long)(data_len - at));

    if (st == DV365_OK && n > 0) {
        f->views = dv_calloc(n, sizeof *f->views);
        f->by_name = dv_calloc(n, sizeof *f->by_name);
        if (f->views == NULL || f->by_name == NULL)
            st = dv_error(DV365_E_NOMEM, "safetensors: out of memory for %zu tensors", n);
    }
    if (st == DV365_OK) {
        const unsigned char *data = f->buf + 8 + hlen;
        for (size_t i = 0; i < n; i++) {
            dv_tensor_view *v = &f->views[i];
            v->name = ents[i].name;
            v->dtype = ents[i].dtype;
            v->ndim = ents[i].ndim;
            memcpy(v->shape, ents[i].shape, sizeof v->shape);
            v->data = data + ents[i].begin;
            v->nbytes = (size_t)(ents[i].end - ents[i].begin);
            f->by_name[i] = i;
        }
        f->n = n;
        tl_sort_views = f->views;
        if (n > 1)
            qsort(f->by_name, n, sizeof *f->by_name, cmp_index_name);
        for (size_t i = 1; i < n; i++)
            if (strcmp(f->views[f->by_name[i - 1]].name, f->views[f->by_name[i]].name) == 0) {
                st = dv_error(DV365_E_FORMAT, "safetensors: duplicate tensor name '%.200s'",
                              f->views[f->by_name[i]].name);
                break;
            }
    }
    dv_free(ents);
    return st;
}

void dv_st_free(dv_st_file *f)
{
    if (f == NULL)
        return;
    dv_free(f->buf);
    dv_free(f->views);
    dv_free(f->by_name);
    dv_free(f->meta);
    dv_free(f->pool);
    dv_free(f);
}

/* Takes ownership of buf (freed on failure too). */
static dv365_status st_open(unsigned char *buf, size_t len, dv_st_file **out)
{
    dv_st_file *f = dv_calloc(1, sizeof *f);
    if (f == NULL) {
        dv_free(buf);
        return dv_error(DV365_E_NOMEM, "safetensors: out of memory");
    }
    f->buf = buf;
    f->len = len;
    dv365_status st = st_parse(f);
    if (st != DV365_OK) {
        dv_st_free(f);
        return st;
    }
    *out = f;
    return DV365_OK;
}

dv365_status dv_st_read_file(const char *path, dv_st_file **out)
{
    DV_CHECK_NULL(path);
    DV_CHECK_NULL(out);
    void *buf;
    size_t len;
    dv365_status st = dv_file_read_all(path, &buf, &len);
    if (st != DV365_OK)
        return st;
    st = st_open(buf, len, out);
    if (st != DV365_OK)
        return dv_error_context(st, "%s", path);
    return DV365_OK;
}

dv365_status dv_st_read_buffer(const void *buf, size_t len, dv_st_file **out)
{
    DV_CHECK_NULL(out);
    if (buf == NULL && len > 0)
        return dv_error(DV365_E_NULL, "dv_st_read_buffer: buf is NULL but len is %zu", len);
    unsigned char *copy = dv_malloc(len);
    if (copy == NULL)
        return dv_error(DV365_E_NOMEM, "safetensors: out of memory copying %zu bytes", len);
    if (len > 0)
        memcpy(copy, buf, len);
    return st_open(copy, len, out);
}

size_t dv_st_count(const dv_st_file *f) { return f ? f->n : 0; }

const dv_tensor_view *dv_st_at(const dv_st_file *f, size_t i)
{
    return f && i < f->n ? &f->views[i] : NULL;
}

const dv_tensor_view *dv_st_find(const dv_st_file *f, const char *name)
{
    if (f == NULL || name == NULL)
        return NULL;
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const dv_tensor_view *v = &f->views[f->by_name[mid]];
        int c = strcmp(name, v->name);
        if (c == 0)
            return v;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *dv_st_metadata(const dv_st_file *f, const char *key)
{
    if (f == NULL || key == NULL)
        return NULL;
    size_t lo = 0, hi = f->n_meta;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(key, f->meta[mid].key);
        if (c == 0)
            return f->meta[mid].value;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* "[2, 3]" into buf. */
static const char *format_shape(char *buf, size_t cap, size_t ndim, const size_t *shape)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (size_t d = 0; d < ndim && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, d ? ", %zu" : "%zu", shape[d]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
    return buf;
}

dv365_status dv_st_copy_f32(const dv_st_file *f, const char *name, size_t ndim,
                            const size_t *shape, float *dst)
{
    DV_CHECK_NULL(f);
    DV_CHECK_NULL(name);
    if (ndim > 0)
        DV_CHECK_NULL(shape);
    const dv_tensor_view *v = dv_st_find(f, name);
    if (v == NULL)
        return dv_error(DV365_E_NOT_FOUND, "safetensors: no tensor named '%s'", name);
    if (v->dtype != DV_DTYPE_F32)
        return dv_error(DV365_E_FORMAT, "safetensors: tensor '%s' is %s, expected F32", name,
                        dv_dtype_name(v->dtype));
    bool same = v->ndim == ndim;
    for (size_t d = 0; same && d < ndim; d++)
        same = v->shape[d] == shape[d];
    if (!same) {
        char want[160], have[160];
        return dv_error(DV365_E_MISMATCH, "safetensors: tensor '%s' has shape %s, expected %s",
                        name, format_shape(have, sizeof have, v->ndim, v->shape),
                        format_shape(want, sizeof want, DV_MIN(ndim, 16), shape));
    }
    if (v->nbytes > 0) {
        DV_CHECK_NULL(dst);
        memcpy(dst, v->data, v->nbytes); /* memcpy: v->data may be unaligned */
    }
    return DV365_OK;
}

/* ========================================================================== */
/* Writing                                                                    */
/* ========================================================================== */

typedef struct st_out {
    char *name;
    dv_dtype dtype;
    size_t ndim;
    size_t shape[DV_ST_MAX_DIMS];
    const void *data;
    size_t nbytes;
} st_out;

struct dv_st_writer {
    st_out *t;
    size_t n, cap;
    char **meta; /* key, value, key, value, ... in the order first set */
    size_t n_meta, cap_meta;
};

dv365_status dv_st_writer_create(dv_st_writer **out)
{
    DV_CHECK_NULL(out);
    dv_st_writer *w = dv_calloc(1, sizeof *w);
    if (w == NULL)
        return dv_error(DV365_E_NOMEM, "safetensors: out of memory");
    *out = w;
    return DV365_OK;
}

void dv_st_writer_free(dv_st_writer *w)
{
    if (w == NULL)
        return;
    for (size_t i = 0; i < w->n; i++)
        dv_free(w->t[i].name);
    for (size_t i = 0; i < 2 * w->n_meta; i++)
        dv_free(w->meta[i]);
    dv_free(w->t);
    dv_free(w->meta);
    dv_free(w);
}

dv365_status dv_st_writer_add(dv_st_writer *w, const char *name, dv_dtype dtype, size_t ndim,
                              const size_t *shape, const void *data)
{
    DV_CHECK_NULL(w);
    DV_CHECK_NULL(name);
    if (dv_dtype_size(dtype) == 0)
        return dv_error(DV365_E_INVALID, "safetensors: tensor '%s': unknown dtype %d", name,
                        (int)dtype);
    if (ndim > DV_ST_MAX_DIMS)
        return dv_error(DV365_E_INVALID, "safetensors: tensor '%s' has %zu dims, at most %d",
                        name, ndim, DV_ST_MAX_DIMS);
    if (ndim > 0)
        DV_CHECK_NULL(shape);
    if (!utf8_valid(name))
        return dv_error(DV365_E_INVALID, "safetensors: tensor name is not valid UTF-8");
    if (strcmp(name, ST_METADATA_KEY) == 0)
        return dv_error(DV365_E_INVALID, "safetensors: '%s' is reserved, not a tensor name",
                        name);
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return dv_error(DV365_E_INVALID, "safetensors: tensor '%s' was already added", name);
    size_t nbytes = dv_dtype_size(dtype);
    for (size_t d = 0; d < ndim; d++)
        if (!dv_mul_size(nbytes, shape[d], &nbytes))
            return dv_error(DV365_E_NOMEM, "safetensors: tensor '%s': size overflows", name);
    if (nbytes > 0 && data == NULL)
        return dv_error(DV365_E_NULL, "safetensors: tensor '%s': data is NULL", name);

    dv365_status st = grow_array((void **)&w->t, &w->cap, w->n, sizeof *w->t);
    if (st != DV365_OK)
        return st;
    st_out *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    t->name = dv_strdup(name);
    if (t->name == NULL)
        return dv_error(DV365_E_NOMEM, "safetensors: out of memory");
    t->dtype = dtype;
    t->ndim = ndim;
    for (size_t d = 0; d < ndim; d++)
        t->shape[d] = shape[d];
    t->data = data;
    t->nbytes = nbytes;
    w->n++;
    return DV365_OK;
}

dv365_status dv_st_writer_set_metadata(dv_st_writer *w, const char *key, const char *value)
{
    DV_CHECK_NULL(w);
    DV_CHECK_NULL(key);
    DV_CHECK_NULL(value);
    if (!utf8_valid(key) || !utf8_valid(value))
        return dv_error(DV365_E_INVALID, "safetensors: metadata '%.100s' is not valid UTF-8",
                        key);
    char *v = dv_strdup(value);
    if (v == NULL)
        return dv_error(DV365_E_NOMEM, "safetensors: out of memory");
    for (size_t i = 0; i < w->n_meta; i++)
        if (strcmp(w->meta[2 * i], key) == 0) {
            dv_free(w->meta[2 * i + 1]);
            w->meta[2 * i + 1] = v;
            return DV365_OK;
        }
    char *k = dv_strdup(key);
    size_t pairs = w->cap_meta / 2;
    dv365_status st = k ? grow_array((void **)&w->meta, &pairs, w->n_meta, 2 * sizeof(char *))
                        : dv_error(DV365_E_NOMEM, "safetensors: out of memory");
    if (st != DV365_OK) {
        dv_free(k);
        dv_free(v);
        return st;
    }
    w->cap_meta = 2 * pairs;
    w->meta[2 * w->n_meta] = k;
    w->meta[2 * w->n_meta + 1] = v;
    w->n_meta++;
    return DV365_OK;
}

/* A growing string for the JSON header. */
typedef struct st_buf {
    char *s;
    size_t n, cap;
    bool failed;
} st_buf;

static void sb_put(st_buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->cap - b->n < n + 1) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n < n + 1)
            if (!dv_mul_size(cap, 2, &cap)) {
                b->failed = true;
                return;
            }
        if (!dv_grow((void **)&b->s, b->n, cap)) {
            b->failed = true;
            return;
        }
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void sb_str(st_buf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_u64(st_buf *b, uint64_t v)
{
    char tmp[24];
    sb_put(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v));
}

/* A JSON string literal, escaped exactly as Python's json.dumps with
 * ensure_ascii=False, so both writers produce the same bytes. */
static void sb_json_string(st_buf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        switch (*p) {
        case '"': sb_put(b, "\\\"", 2); break;
        case '\\': sb_put(b, "\\\\", 2); break;
        case '\b': sb_put(b, "\\b", 2); break;
        case '\f': sb_put(b, "\\f", 2); break;
        case '\n': sb_put(b, "\\n", 2); break;
        case '\r': sb_put(b, "\\r", 2); break;
        case '\t': sb_put(b, "\\t", 2); break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                sb_put(b, esc, 6);
            } else {
                sb_put(b, (const char *)p, 1);
            }
        }
    }
    sb_put(b, "\"", 1);
}

dv365_status dv_st_writer_write(dv_st_writer *w, const char *path)
{
    DV_CHECK_NULL(w);
    DV_CHECK_NULL(path);

    /* Header: {"__metadata__":{..},"name":{"dtype":..,"shape":[..],
     * "data_offsets":[b,e]},...} with no spaces, then space padding. */
    st_buf b = {0};
    sb_str(&b, "{");
    if (w->n_meta > 0) {
        sb_str(&b, "\"" ST_METADATA_KEY "\":{");
        for (size_t i = 0; i < w->n_meta; i++) {
            if (i)
                sb_str(&b, ",");
            sb_json_string(&b, w->meta[2 * i]);
            sb_str(&b, ":");
            sb_json_string(&b, w->meta[2 * i + 1]);
        }
        sb_str(&b, "}");
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < w->n; i++) {
        const st_out *t = &w->t[i];
        if (i || w->n_meta)
            sb_str(&b, ",");
        sb_json_string(&b, t->name);
        sb_str(&b, ":{\"dtype\":\"");
        sb_str(&b, dv_dtype_name(t->dtype));
        sb_str(&b, "\",\"shape\":[");
        for (size_t d = 0; d < t->ndim; d++) {
            if (d)
                sb_str(&b, ",");
            sb_u64(&b, t->shape[d]);
        }
        sb_str(&b, "],\"data_offsets\":[");
        sb_u64(&b, offset);
        sb_str(&b, ",");
        if (__builtin_add_overflow(offset, (uint64_t)t->nbytes, &offset))
            b.failed = true;
        sb_u64(&b, offset);
        sb_str(&b, "]}");
    }
    sb_str(&b, "}");
    while (!b.failed && b.n % 8 != 0)
        sb_str(&b, " ");
    if (b.failed) {
        dv_free(b.s);
        return dv_error(DV365_E_NOMEM, "safetensors: out of memory building the header");
    }
    if (b.n > ST_MAX_HEADER) {
        dv_free(b.s);
        return dv_error(DV365_E_INVALID,
                        "safetensors: the header would be %zu bytes, over the 100 MiB limit", b.n);
    }

    unsigned char len_bytes[8];
    for (int i = 0; i < 8; i++)
        len_bytes[i] = (unsigned char)((uint64_t)b.n >> (8 * i));

    /* One part per tensor: the data goes to the file straight from the
     * caller's arrays. */
    size_t n_parts = w->n + 2;
    const void **parts = dv_calloc(n_parts, sizeof *parts);
    size_t *sizes = dv_calloc(n_parts, sizeof *sizes);
    dv365_status st;
    if (parts == NULL || sizes == NULL) {
        st = dv_error(DV365_E_NOMEM, "safetensors: out of memory");
    } else {
        parts[0] = len_bytes;
        sizes[0] = 8;
        parts[1] = b.s;
        sizes[1] = b.n;
        for (size_t i = 0; i < w->n; i++) {
            parts[i + 2] = w->t[i].data;
            sizes[i + 2] = w->t[i].nbytes;
        }
        st = dv_file_write_atomic(path, n_parts, parts, sizes);
    }
    dv_free(parts);
    dv_free(sizes);
    dv_free(b.s);
    return st;
}
