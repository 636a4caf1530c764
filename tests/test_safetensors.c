/* test_safetensors.c — safetensors reader/writer and atomic file I/O.
 *
 * Besides the cmocka suite, the program has two modes used by
 * tests/reference/check_safetensors.py to check compatibility with the
 * Python writer/reader (tests/reference/st.py):
 *   test_safetensors --write-canonical PATH   write the canonical file
 *   test_safetensors --check-canonical PATH   verify a file holds it
 * The canonical tensors are defined here and, identically, in the script. */
#include "testutil.h"

#include "fileio.h"
#include "internal.h"
#include "safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* The canonical tensor set (mirrored in check_safetensors.py)              */
/* ------------------------------------------------------------------------ */

#define WEIRD_NAME "name with \"quote\" \\ and \xc3\xa9\n"
#define NOTE_VALUE "h\xc3\xa9llo \"q\"\n\t\x01"

typedef struct canon {
    float pos[12];    /* encoder.pos F32 [3,4] */
    uint16_t f16[5];  /* tables.item_media F16 [5] (raw half bits) */
    uint8_t u8[6];    /* u8 U8 [2,3] */
    int32_t scalar;   /* scalar.i32 I32 [] */
    int64_t i64[4];   /* i64 I64 [4] */
    uint64_t u64[2];  /* u64 U64 [2] */
    double f64[2];    /* f64 F64 [2,1] */
    float weird;      /* WEIRD_NAME F32 [1] */
} canon;

static void canon_fill(canon *c)
{
    for (int i = 0; i < 12; i++)
        c->pos[i] = (float)(i - 5) * 0.375f;
    for (int i = 0; i < 5; i++)
        c->f16[i] = (uint16_t)(0x3C00 + i * 0x0100);
    for (int i = 0; i < 6; i++)
        c->u8[i] = (uint8_t)((i * 37 + 1) & 255);
    c->scalar = -123456;
    for (int i = 0; i < 4; i++)
        c->i64[i] = (int64_t)(i - 2) * INT64_C(1000000000000);
    c->u64[0] = UINT64_MAX;
    c->u64[1] = (UINT64_C(1) << 63) + 5;
    c->f64[0] = 1.0 / 3.0;
    c->f64[1] = -2.5e300;
    c->weird = 42.0f;
}

/* Names, dtypes and shapes in write order. */
static const struct {
    const char *name;
    dv_dtype dtype;
    size_t ndim, shape[2];
} k_canon[] = {
    {"encoder.pos", DV_DTYPE_F32, 2, {3, 4}},
    {"tables.item_media", DV_DTYPE_F16, 1, {5, 0}},
    {"u8", DV_DTYPE_U8, 2, {2, 3}},
    {"scalar.i32", DV_DTYPE_I32, 0, {0, 0}},
    {"i64", DV_DTYPE_I64, 1, {4, 0}},
    {"u64", DV_DTYPE_U64, 1, {2, 0}},
    {"f64", DV_DTYPE_F64, 2, {2, 1}},
    {"empty", DV_DTYPE_F32, 2, {0, 4}},
    {WEIRD_NAME, DV_DTYPE_F32, 1, {1, 0}},
};
#define N_CANON (sizeof k_canon / sizeof k_canon[0])

static const void *canon_data(const canon *c, size_t i)
{
    const void *d[N_CANON] = {c->pos, c->f16, c->u8, &c->scalar, c->i64,
                              c->u64, c->f64, c->pos /* empty: any pointer */, &c->weird};
    return d[i];
}

static dv365_status write_canonical(const char *path)
{
    static canon c; /* must outlive dv_st_writer_write */
    canon_fill(&c);
    dv_st_writer *w = NULL;
    dv365_status st = dv_st_writer_create(&w);
    if (st == DV365_OK)
        st = dv_st_writer_set_metadata(w, "format", "pt");
    if (st == DV365_OK)
        st = dv_st_writer_set_metadata(w, "note", NOTE_VALUE);
    for (size_t i = 0; st == DV365_OK && i < N_CANON; i++)
        st = dv_st_writer_add(w, k_canon[i].name, k_canon[i].dtype, k_canon[i].ndim,
                              k_canon[i].shape, canon_data(&c, i));
    if (st == DV365_OK)
        st = dv_st_writer_write(w, path);
    dv_st_writer_free(w);
    return st;
}

/* NULL if f holds exactly the canonical set, else what differs. */
static const char *canonical_mismatch(const dv_st_file *f)
{
    static char why[256];
    canon c;
    canon_fill(&c);
    if (dv_st_count(f) != N_CANON)
        return "tensor count";
    const char *fmt = dv_st_metadata(f, "format"), *note = dv_st_metadata(f, "note");
    if (fmt == NULL || strcmp(fmt, "pt") != 0 || note == NULL || strcmp(note, NOTE_VALUE) != 0)
        return "metadata";
    for (size_t i = 0; i < N_CANON; i++) {
        const dv_tensor_view *v = dv_st_find(f, k_canon[i].name);
        snprintf(why, sizeof why, "tensor %zu", i);
        if (v == NULL || strcmp(v->name, k_canon[i].name) != 0 || v->dtype != k_canon[i].dtype ||
            v->ndim != k_canon[i].ndim)
            return why;
        size_t numel = 1;
        for (size_t d = 0; d < v->ndim; d++) {
            if (v->shape[d] != k_canon[i].shape[d])
                return why;
            numel *= v->shape[d];
        }
        if (v->nbytes != numel * dv_dtype_size(v->dtype))
            return why;
        if (v->nbytes && memcmp(v->data, canon_data(&c, i), v->nbytes) != 0)
            return why;
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

static char g_dir[64];

static int setup_dir(void **state)
{
    (void)state;
    return test_make_tmpdir(g_dir, sizeof g_dir, "st");
}

static int teardown_dir(void **state)
{
    (void)state;
    return test_remove_tmpdir(g_dir);
}

static const char *tmp_path(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

/* Number of leftover temporary files (".tmp.") in the test directory. */
static int count_temp_files(void)
{
    DIR *d = opendir(g_dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".tmp.") != NULL)
            n++;
    closedir(d);
    return n;
}

static void write_plain(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static void assert_file_is(const char *path, const char *text)
{
    void *data;
    size_t len;
    ASSERT_OK(dv_file_read_all(path, &data, &len));
    assert_int_equal(len, strlen(text));
    assert_memory_equal(data, text, len);
    dv_free(data);
}

/* A safetensors buffer: length prefix + header + n_data bytes (0, 1, 2, ...). */
static unsigned char *make_st(const char *header, size_t n_data, size_t *len)
{
    size_t h = strlen(header);
    *len = 8 + h + n_data;
    unsigned char *b = malloc(*len);
    assert_non_null(b);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    for (size_t i = 0; i < n_data; i++)
        b[8 + h + i] = (unsigned char)i;
    return b;
}

/* Parse header + data; assert the status and that the message holds needle. */
static void expect_st(const char *header, size_t n_data, dv365_status code, const char *needle)
{
    size_t len;
    unsigned char *b = make_st(header, n_data, &len);
    dv_st_file *f = NULL;
    dv365_status st = dv_st_read_buffer(b, len, &f);
    if (st != code)
        fail_msg("header %s -> %d, expected %d: %s", header, (int)st, (int)code,
                 dv365_last_error());
    if (code != DV365_OK)
        test_assert_message_contains(needle);
    assert_true((f != NULL) == (code == DV365_OK));
    dv_st_free(f);
    free(b);
}

/* ------------------------------------------------------------------------ */
/* Round trips                                                               */
/* ------------------------------------------------------------------------ */

static void test_roundtrip_canonical(void **state)
{
    (void)state;
    const char *path = tmp_path("canon.safetensors");
    ASSERT_OK(write_canonical(path));
    assert_int_equal(count_temp_files(), 0);

    dv_st_file *f = NULL;
    ASSERT_OK(dv_st_read_file(path, &f));
    const char *why = canonical_mismatch(f);
    if (why)
        fail_msg("round trip differs: %s", why);

    /* dv_st_at is in file order, which is the order added. */
    for (size_t i = 0; i < N_CANON; i++)
        assert_string_equal(dv_st_at(f, i)->name, k_canon[i].name);
    assert_null(dv_st_at(f, N_CANON));
    assert_null(dv_st_find(f, "nope"));
    assert_null(dv_st_find(f, "encoder.po"));
    assert_null(dv_st_metadata(f, "nope"));

    /* 0-dim and empty tensors. */
    const dv_tensor_view *s = dv_st_find(f, "scalar.i32");
    assert_int_equal(s->ndim, 0);
    assert_int_equal(s->nbytes, 4);
    const dv_tensor_view *e = dv_st_find(f, "empty");
    assert_int_equal(e->nbytes, 0);

    /* Checked float copies. */
    float dst[12];
    size_t good[2] = {3, 4}, swapped[2] = {4, 3}, flat[1] = {12};
    canon c;
    canon_fill(&c);
    ASSERT_OK(dv_st_copy_f32(f, "encoder.pos", 2, good, dst));
    assert_memory_equal(dst, c.pos, sizeof dst);
    ASSERT_ERR(dv_st_copy_f32(f, "encoder.pos", 2, swapped, dst), DV365_E_MISMATCH,
               "has shape [3, 4], expected [4, 3]");
    ASSERT_ERR(dv_st_copy_f32(f, "encoder.pos", 1, flat, dst), DV365_E_MISMATCH, "[12]");
    ASSERT_ERR(dv_st_copy_f32(f, "missing.weight", 2, good, dst), DV365_E_NOT_FOUND,
               "missing.weight");
    ASSERT_ERR(dv_st_copy_f32(f, "i64", 1, (size_t[]){4}, dst), DV365_E_FORMAT, "I64");
    ASSERT_OK(dv_st_copy_f32(f, "empty", 2, (size_t[]){0, 4}, NULL));
    ASSERT_ERR(dv_st_copy_f32(f, "encoder.pos", 2, good, NULL), DV365_E_NULL, "dst");
    dv_st_free(f);

    /* Same bytes through dv_st_read_buffer. */
    void *bytes;
    size_t len;
    ASSERT_OK(dv_file_read_all(path, &bytes, &len));
    ASSERT_OK(dv_st_read_buffer(bytes, len, &f));
    assert_null(canonical_mismatch(f));
    dv_st_free(f);

    /* The header is padded with spaces so the data starts 8-byte aligned. */
    uint64_t hlen;
    memcpy(&hlen, bytes, 8);
    assert_int_equal(hlen % 8, 0);
    assert_true(hlen + 8 <= len);
    assert_int_equal(((const char *)bytes)[8], '{');
    dv_free(bytes);
}

static void test_roundtrip_many_and_empty(void **state)
{
    (void)state;
    const char *path = tmp_path("many.safetensors");
    /* A file without tensors or metadata. */
    dv_st_writer *w;
    ASSERT_OK(dv_st_writer_create(&w));
    ASSERT_OK(dv_st_writer_write(w, path));
    dv_st_file *f;
    ASSERT_OK(dv_st_read_file(path, &f));
    assert_int_equal(dv_st_count(f), 0);
    assert_null(dv_st_at(f, 0));
    assert_null(dv_st_metadata(f, "format"));
    dv_st_free(f);

    /* Many tensors added in non-sorted name order: find must still work, and
     * file order must stay the order added.  Rewriting the same writer to
     * the same path replaces the file. */
    enum { N = 300 };
    static float vals[N][3];
    char name[32];
    for (int i = 0; i < N; i++) {
        int k = (i * 7919) % N; /* a permutation */
        for (int j = 0; j < 3; j++)
            vals[i][j] = (float)(k * 3 + j);
        snprintf(name, sizeof name, "layer.%d.w", k);
        ASSERT_OK(dv_st_writer_add(w, name, DV_DTYPE_F32, 1, (size_t[]){3}, vals[i]));
    }
    ASSERT_OK(dv_st_writer_set_metadata(w, "k", "v1"));
    ASSERT_OK(dv_st_writer_set_metadata(w, "k", "v2")); /* replaces */
    ASSERT_OK(dv_st_writer_write(w, path));
    ASSERT_OK(dv_st_writer_write(w, path)); /* idempotent */
    dv_st_writer_free(w);

    ASSERT_OK(dv_st_read_file(path, &f));
    assert_int_equal(dv_st_count(f), N);
    assert_string_equal(dv_st_metadata(f, "k"), "v2");
    for (int i = 0; i < N; i++) {
        int k = (i * 7919) % N;
        snprintf(name, sizeof name, "layer.%d.w", k);
        assert_string_equal(dv_st_at(f, (size_t)i)->name, name);
        float got[3];
        ASSERT_OK(dv_st_copy_f32(f, name, 1, (size_t[]){3}, got));
        assert_memory_equal(got, vals[i], sizeof got);
    }
    dv_st_free(f);
    assert_int_equal(count_temp_files(), 0);
}

static void test_writer_errors(void **state)
{
    (void)state;
    float x[4] = {0};
    size_t shape9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    dv_st_writer *w;
    ASSERT_ERR(dv_st_writer_create(NULL), DV365_E_NULL, "out");
    ASSERT_OK(dv_st_writer_create(&w));
    ASSERT_OK(dv_st_writer_add(w, "a", DV_DTYPE_F32, 1, (size_t[]){4}, x));
    ASSERT_ERR(dv_st_writer_add(w, "a", DV_DTYPE_F32, 1, (size_t[]){4}, x), DV365_E_INVALID,
               "already added");
    ASSERT_ERR(dv_st_writer_add(w, "__metadata__", DV_DTYPE_F32, 1, (size_t[]){4}, x),
               DV365_E_INVALID, "reserved");
    ASSERT_ERR(dv_st_writer_add(w, "b", DV_DTYPE_F32, 9, shape9, x), DV365_E_INVALID,
               "9 dims");
    ASSERT_ERR(dv_st_writer_add(w, "b", (dv_dtype)7, 1, (size_t[]){4}, x), DV365_E_INVALID,
               "dtype");
    ASSERT_ERR(dv_st_writer_add(w, "b", DV_DTYPE_F32, 1, (size_t[]){4}, NULL), DV365_E_NULL,
               "data");
    ASSERT_ERR(dv_st_writer_add(w, "b", DV_DTYPE_F32, 1, NULL, x), DV365_E_NULL, "shape");
    ASSERT_ERR(dv_st_writer_add(w, "b\xff", DV_DTYPE_F32, 1, (size_t[]){4}, x),
               DV365_E_INVALID, "UTF-8");
    ASSERT_ERR(dv_st_writer_add(w, NULL, DV_DTYPE_F32, 1, (size_t[]){4}, x), DV365_E_NULL,
               "name");
    ASSERT_ERR(dv_st_writer_add(w, "big", DV_DTYPE_F64, 2, (size_t[]){SIZE_MAX / 4, 4}, x),
               DV365_E_NOMEM, "overflow");
    ASSERT_OK(dv_st_writer_add(w, "nodata", DV_DTYPE_F32, 2, (size_t[]){0, 7}, NULL));
    ASSERT_ERR(dv_st_writer_set_metadata(w, "k", "\xc0\xaf"), DV365_E_INVALID, "UTF-8");
    ASSERT_ERR(dv_st_writer_set_metadata(w, "k", NULL), DV365_E_NULL, "value");
    ASSERT_ERR(dv_st_writer_write(w, NULL), DV365_E_NULL, "path");
    /* The writer is still usable after all these errors. */
    const char *path = tmp_path("after_errors.safetensors");
    ASSERT_OK(dv_st_writer_write(w, path));
    dv_st_writer_free(w);
    dv_st_file *f;
    ASSERT_OK(dv_st_read_file(path, &f));
    assert_int_equal(dv_st_count(f), 2);
    assert_int_equal(dv_st_find(f, "nodata")->nbytes, 0);
    dv_st_free(f);
    dv_st_writer_free(NULL);
    dv_st_free(NULL);
    assert_int_equal(dv_dtype_size((dv_dtype)99), 0);
    assert_int_equal(dv_dtype_size(DV_DTYPE_F16), 2);
}

/* ------------------------------------------------------------------------ */
/* Malformed input                                                           */
/* ------------------------------------------------------------------------ */

static void test_malformed_framing(void **state)
{
    (void)state;
    dv_st_file *f = NULL;
    unsigned char tiny[5] = {1, 0, 0, 0, 0};
    ASSERT_ERR(dv_st_read_buffer(tiny, sizeof tiny, &f), DV365_E_FORMAT, "shorter than");
    ASSERT_ERR(dv_st_read_buffer(NULL, 0, &f), DV365_E_FORMAT, "shorter than");
    ASSERT_ERR(dv_st_read_buffer(NULL, 9, &f), DV365_E_NULL, "NULL");
    ASSERT_ERR(dv_st_read_buffer(tiny, 5, NULL), DV365_E_NULL, "out");

    unsigned char b[16] = {0};
    b[0] = 9; /* header of 9 bytes, only 8 follow */
    ASSERT_ERR(dv_st_read_buffer(b, sizeof b, &f), DV365_E_FORMAT, "larger than");
    memset(b, 0, 8);
    b[3] = 0x07; /* 112 MiB: over the limit, checked before the file size */
    ASSERT_ERR(dv_st_read_buffer(b, sizeof b, &f), DV365_E_FORMAT, "100 MiB");
    memset(b, 0xff, 8);
    ASSERT_ERR(dv_st_read_buffer(b, sizeof b, &f), DV365_E_FORMAT, "100 MiB");
    assert_null(f);

    const char *path = tmp_path("short.safetensors");
    write_plain(path, "abc");
    ASSERT_ERR(dv_st_read_file(path, &f), DV365_E_FORMAT, "short.safetensors");
    ASSERT_ERR(dv_st_read_file(tmp_path("missing.safetensors"), &f), DV365_E_IO,
               "No such file");
    test_assert_message_contains("missing.safetensors");
}

#define T(dtype, shape, offs) "{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" offs "}"

static void test_malformed_json(void **state)
{
    (void)state;
    /* Accepted forms. */
    expect_st("{}", 0, DV365_OK, NULL);
    expect_st("{}      ", 0, DV365_OK, NULL);
    expect_st(" { \"a\" : { \"shape\" : [ 2 ] , \"data_offsets\" : [ 0 , 8 ] , \"dtype\" : \"F32\" } }",
              8, DV365_OK, NULL);
    expect_st("{\"__metadata__\":{},\"a\":" T("U8", "[]", "[0,1]") "}", 1, DV365_OK, NULL);

    /* Syntax: the message names the byte offset (header offset + 8). */
    expect_st("{\"a\" 1}", 0, DV365_E_FORMAT, "at byte offset 13: expected ':'");
    expect_st("", 0, DV365_E_FORMAT, "must be a JSON object");
    expect_st("[]", 0, DV365_E_FORMAT, "must be a JSON object");
    expect_st("{\"a\":", 0, DV365_E_FORMAT, "header ends");
    expect_st("{\"a\":" T("F32", "[1]", "[0,4]"), 4, DV365_E_FORMAT, "header ends");
    expect_st("{\"a\":" T("F32", "[1]", "[0,4]") ",}", 4, DV365_E_FORMAT, "expected a string");
    expect_st("{\"a\":{\"dtype\":\"F32\",}}", 0, DV365_E_FORMAT, "expected a string");
    expect_st("{\"a", 0, DV365_E_FORMAT, "unterminated string");
    expect_st("{\"a\\q\":{}}", 0, DV365_E_FORMAT, "unknown escape");
    expect_st("{\"a\\u12\":{}}", 0, DV365_E_FORMAT, "four hex digits");
    expect_st("{\"a\\ud800\":{}}", 0, DV365_E_FORMAT, "unpaired high surrogate");
    expect_st("{\"a\\udc00\":{}}", 0, DV365_E_FORMAT, "unpaired low surrogate");
    expect_st("{\"a\\ud800\\u0041\":{}}", 0, DV365_E_FORMAT, "unpaired high surrogate");
    expect_st("{\"a\\u0000\":{}}", 0, DV365_E_FORMAT, "NUL");
    expect_st("{\"a\tb\":{}}", 0, DV365_E_FORMAT, "control character");
    expect_st("{\"a\xff\":{}}", 0, DV365_E_FORMAT, "UTF-8");
    expect_st("{\"a\xed\xa0\x80\":{}}", 0, DV365_E_FORMAT, "UTF-8"); /* surrogate */
    expect_st("{\"a\xe2\x82\":{}}", 0, DV365_E_FORMAT, "UTF-8");     /* truncated */
    expect_st("{\"a\":" T("F32", "[-1]", "[0,0]") "}", 0, DV365_E_FORMAT, "negative");
    expect_st("{\"a\":" T("F32", "[01]", "[0,4]") "}", 4, DV365_E_FORMAT, "leading zeros");
    expect_st("{\"a\":" T("F32", "[1.0]", "[0,4]") "}", 4, DV365_E_FORMAT, "fraction");
    expect_st("{\"a\":" T("F32", "[1e2]", "[0,4]") "}", 4, DV365_E_FORMAT, "exponent");
    expect_st("{\"a\":" T("F32", "[18446744073709551616]", "[0,4]") "}", 4, DV365_E_FORMAT,
              "64 bits");
    expect_st("{\"a\":" T("F32", "[1 2]", "[0,4]") "}", 4, DV365_E_FORMAT, "',' or ']'");
    expect_st("{\"a\":" T("F32", "{}", "[0,4]") "}", 4, DV365_E_FORMAT, "expected '['");
    expect_st("{\"a\":" T("F32", "[true]", "[0,4]") "}", 4, DV365_E_FORMAT,
              "non-negative integer");

    /* Trailing garbage after the object: only spaces may pad. */
    expect_st("{} x", 0, DV365_E_FORMAT, "only space padding");
    expect_st("{}\n", 0, DV365_E_FORMAT, "0x0a");
    expect_st("{}{}", 0, DV365_E_FORMAT, "after the JSON header at byte offset 10");
}

static void test_malformed_entries(void **state)
{
    (void)state;
    /* Unknown dtype, dims, sizes. */
    expect_st("{\"a\":" T("BF16", "[2]", "[0,4]") "}", 4, DV365_E_FORMAT, "unsupported dtype \"BF16\"");
    expect_st("{\"a\":" T("F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]") "}", 4, DV365_E_FORMAT,
              "more than 8");
    expect_st("{\"a\":" T("F32", "[1,1,1,1,1,1,1,1]", "[0,4]") "}", 4, DV365_OK, NULL);
    expect_st("{\"a\":" T("U8", "[4294967296,4294967296,2]", "[0,0]") "}", 0, DV365_E_FORMAT,
              "overflows");
    expect_st("{\"a\":" T("F64", "[4611686018427387904]", "[0,0]") "}", 0, DV365_E_FORMAT,
              "overflows");
    expect_st("{\"a\":" T("F32", "[2]", "[0,4]") "}", 4, DV365_E_FORMAT,
              "span 4 bytes but F32 x 2 elements need 8");
    expect_st("{\"a\":" T("F32", "[]", "[4,0]") "}", 4, DV365_E_FORMAT, "end before");
    expect_st("{\"a\":" T("F32", "[2]", "[0,8]") "}", 4, DV365_E_FORMAT, "out of bounds");
    expect_st("{\"a\":" T("F32", "[2]", "[18446744073709551608,0]") "}", 4, DV365_E_FORMAT,
              "end before");
    expect_st("{\"a\":" T("F32", "[2]", "[0]") "}", 8, DV365_E_FORMAT, "[begin, end]");
    expect_st("{\"a\":" T("F32", "[2]", "[0,8,8]") "}", 8, DV365_E_FORMAT, "more than 2");

    /* Layout of the data section: exact tiling. */
    expect_st("{\"a\":" T("F32", "[2]", "[0,8]") ",\"b\":" T("F32", "[2]", "[4,12]") "}", 12,
              DV365_E_FORMAT, "overlaps tensor 'a'");
    expect_st("{\"a\":" T("F32", "[2]", "[0,8]") ",\"b\":" T("F32", "[2]", "[0,8]") "}", 8,
              DV365_E_FORMAT, "overlaps");
    expect_st("{\"a\":" T("F32", "[1]", "[0,4]") ",\"b\":" T("F32", "[1]", "[8,12]") "}", 12,
              DV365_E_FORMAT, "4 unused bytes before tensor 'b'");
    expect_st("{\"a\":" T("F32", "[1]", "[0,4]") "}", 6, DV365_E_FORMAT, "2 bytes of trailing data");
    expect_st("{}", 1, DV365_E_FORMAT, "trailing data");
    /* Out of header order is fine; empty tensors may sit anywhere on the tiling. */
    expect_st("{\"b\":" T("F32", "[1]", "[4,8]") ",\"e\":" T("U8", "[0]", "[4,4]")
              ",\"a\":" T("F32", "[1]", "[0,4]") "}", 8, DV365_OK, NULL);

    /* Names and fields. */
    expect_st("{\"a\":" T("F32", "[1]", "[0,4]") ",\"a\":" T("F32", "[1]", "[4,8]") "}", 8,
              DV365_E_FORMAT, "duplicate tensor name 'a'");
    expect_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, DV365_E_FORMAT, "lacks \"data_offsets\"");
    expect_st("{\"a\":{}}", 0, DV365_E_FORMAT, "lacks \"dtype\"");
    expect_st("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\"}}", 0, DV365_E_FORMAT,
              "repeats field \"dtype\"");
    expect_st("{\"a\":{\"dtype\":\"F32\",\"strides\":[1]}}", 0, DV365_E_FORMAT,
              "unknown field \"strides\"");
    expect_st("{\"a\":{\"dtype\":5}}", 0, DV365_E_FORMAT, "expected a string");
    expect_st("{\"a\":[]}", 0, DV365_E_FORMAT, "expected '{'");

    /* Metadata. */
    expect_st("{\"__metadata__\":{\"k\":1}}", 0, DV365_E_FORMAT, "must be strings");
    expect_st("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, DV365_E_FORMAT,
              "duplicate __metadata__ key \"k\"");
    expect_st("{\"__metadata__\":{},\"__metadata__\":{}}", 0, DV365_E_FORMAT, "appears twice");
    expect_st("{\"__metadata__\":[]}", 0, DV365_E_FORMAT, "expected '{'");
}

static void test_escapes_decoded(void **state)
{
    (void)state;
    size_t len;
    unsigned char *b = make_st(
        "{\"a\\u00e9\\ud83d\\ude00\\/\\\"\\\\\\b\\f\\n\\r\\t\":" T("U8", "[1]", "[0,1]")
        ",\"__metadata__\":{\"\\u004b\":\"caf\\u00E9\"}}",
        1, &len);
    dv_st_file *f;
    ASSERT_OK(dv_st_read_buffer(b, len, &f));
    free(b);
    assert_non_null(dv_st_find(f, "a\xc3\xa9\xf0\x9f\x98\x80/\"\\\b\f\n\r\t"));
    assert_string_equal(dv_st_metadata(f, "K"), "caf\xc3\xa9");
    dv_st_free(f);
}

/* Every truncation and many one-byte corruptions of a valid file: each must
 * either load (and then be self-consistent) or fail with DV365_E_FORMAT. */
static void test_corruptions_never_crash(void **state)
{
    (void)state;
    const char *path = tmp_path("fuzz.safetensors");
    ASSERT_OK(write_canonical(path));
    unsigned char *good;
    size_t len;
    ASSERT_OK(dv_file_read_all(path, (void **)&good, &len));
    unsigned char *b = malloc(len);
    assert_non_null(b);

    for (size_t cut = 0; cut < len; cut++) {
        dv_st_file *f = NULL;
        ASSERT_ERR(dv_st_read_buffer(good, cut, &f), DV365_E_FORMAT, "safetensors");
        assert_null(f);
    }
    static const unsigned char subst[] = {0x00, ' ', '"', '\\', '{', '}', '[', ']', ',', ':',
                                          '0', '9', 0x80, 0xff};
    size_t loaded = 0, rejected = 0;
    for (size_t pos = 0; pos < len && pos < 8 + 1024; pos++) {
        for (size_t s = 0; s < sizeof subst; s++) {
            if (good[pos] == subst[s])
                continue;
            memcpy(b, good, len);
            b[pos] = subst[s];
            dv_st_file *f = NULL;
            dv365_status st = dv_st_read_buffer(b, len, &f);
            if (st == DV365_OK) {
                loaded++;
                for (size_t i = 0; i < dv_st_count(f); i++) {
                    const dv_tensor_view *v = dv_st_at(f, i);
                    assert_ptr_equal(dv_st_find(f, v->name), v);
                    size_t numel = 1;
                    for (size_t d = 0; d < v->ndim; d++)
                        numel *= v->shape[d];
                    assert_int_equal(v->nbytes, numel * dv_dtype_size(v->dtype));
                }
                dv_st_free(f);
            } else {
                if (st != DV365_E_FORMAT)
                    fail_msg("byte %zu -> 0x%02x: status %d (%s)", pos, subst[s], (int)st,
                             dv365_last_error());
                rejected++;
            }
        }
    }
    /* Corrupting the data section or a name still loads; most others fail. */
    assert_true(loaded > 0);
    assert_true(rejected > loaded);
    free(b);
    dv_free(good);
}

/* ------------------------------------------------------------------------ */
/* File I/O                                                                  */
/* ------------------------------------------------------------------------ */

static void test_read_all(void **state)
{
    (void)state;
    void *data = NULL;
    size_t len = 99;
    ASSERT_ERR(dv_file_read_all(tmp_path("nope.bin"), &data, &len), DV365_E_IO,
               "No such file or directory");
    test_assert_message_contains("nope.bin");
    assert_null(data);
    assert_int_equal(len, 99);
    ASSERT_ERR(dv_file_read_all(g_dir, &data, &len), DV365_E_IO, "is a directory");
    ASSERT_ERR(dv_file_read_all(NULL, &data, &len), DV365_E_NULL, "path");

    const char *path = tmp_path("empty.bin");
    write_plain(path, "");
    ASSERT_OK(dv_file_read_all(path, &data, &len));
    assert_int_equal(len, 0);
    assert_non_null(data);
    assert_int_equal(((char *)data)[0], '\0');
    dv_free(data);

    write_plain(path, "hello");
    ASSERT_OK(dv_file_read_all(path, &data, &len));
    assert_int_equal(len, 5);
    assert_string_equal(data, "hello"); /* NUL-terminated */
    assert_int_equal((uintptr_t)data % 64, 0);
    dv_free(data);

    /* Files without a size (pipes, /proc) are read to EOF. */
    ASSERT_OK(dv_file_read_all("/proc/self/status", &data, &len));
    assert_true(len > 0);
    assert_non_null(strstr(data, "Pid:"));
    dv_free(data);
}

static void test_write_atomic(void **state)
{
    (void)state;
    const char *path = tmp_path("atomic.bin");
    const char *a = "abc", *b = "", *c = "defgh";
    const void *parts[3] = {a, NULL, c};
    size_t sizes[3] = {3, 0, 5};
    ASSERT_OK(dv_file_write_atomic(path, 3, parts, sizes));
    assert_file_is(path, "abcdefgh");
    parts[1] = b;
    ASSERT_OK(dv_file_write_atomic(path, 1, parts, sizes)); /* replaces */
    assert_file_is(path, "abc");
    ASSERT_OK(dv_file_write_atomic(path, 0, NULL, NULL));
    assert_file_is(path, "");
    assert_int_equal(count_temp_files(), 0);

    parts[1] = NULL;
    sizes[1] = 4;
    ASSERT_ERR(dv_file_write_atomic(path, 3, parts, sizes), DV365_E_NULL, "part 1");
    ASSERT_ERR(dv_file_write_atomic(NULL, 0, NULL, NULL), DV365_E_NULL, "path");
    ASSERT_ERR(dv_file_write_atomic(path, 1, NULL, sizes), DV365_E_NULL, "parts");
    ASSERT_ERR(dv_file_write_atomic("", 0, NULL, NULL), DV365_E_INVALID, "empty path");

    /* A directory that does not exist. */
    ASSERT_ERR(dv_file_write_atomic(tmp_path("no/such/dir/x.bin"), 1, parts, sizes), DV365_E_IO,
               "no/such/dir/x.bin");
    test_assert_message_contains("No such file");
}

/* The rename fails (the target is a directory) after the data was written:
 * the temporary file must go and the target must stay as it was. */
static void test_write_atomic_rename_fails(void **state)
{
    (void)state;
    const char *dir = tmp_path("a_dir");
    assert_int_equal(mkdir(dir, 0755), 0);
    const void *parts[1] = {"data"};
    size_t sizes[1] = {4};
    ASSERT_ERR(dv_file_write_atomic(dir, 1, parts, sizes), DV365_E_IO, "cannot rename");
    struct stat sb;
    assert_int_equal(stat(dir, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(count_temp_files(), 0);
    assert_int_equal(rmdir(dir), 0);
}

/* A write that fails half-way (file size limit → EFBIG, which works even as
 * root): the old file stays intact and no temporary file is left. */
static void test_write_atomic_keeps_old_file(void **state)
{
    (void)state;
    const char *path = tmp_path("keep.safetensors");
    ASSERT_OK(write_canonical(path));
    void *before;
    size_t before_len;
    ASSERT_OK(dv_file_read_all(path, &before, &before_len));

    enum { BIG = 1 << 16 };
    static float big[BIG];
    dv_st_writer *w;
    ASSERT_OK(dv_st_writer_create(&w));
    ASSERT_OK(dv_st_writer_add(w, "big", DV_DTYPE_F32, 1, (size_t[]){BIG}, big));

    struct rlimit old_lim, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old_lim), 0);
    lim = old_lim;
    lim.rlim_cur = 4096;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    dv365_status st = dv_st_writer_write(w, path);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old_lim), 0);
    signal(SIGXFSZ, old_handler);
    if (st != DV365_E_IO)
        fail_msg("write past RLIMIT_FSIZE -> %d: %s", (int)st, dv365_last_error());
    test_assert_message_contains("File too large");
    test_assert_message_contains("keep.safetensors.tmp.");
    dv_st_writer_free(w);

    void *after;
    size_t after_len;
    ASSERT_OK(dv_file_read_all(path, &after, &after_len));
    assert_int_equal(after_len, before_len);
    assert_memory_equal(after, before, before_len);
    dv_free(before);
    dv_free(after);
    assert_int_equal(count_temp_files(), 0);

    /* Same through the writer into a missing directory. */
    ASSERT_OK(dv_st_writer_create(&w));
    ASSERT_ERR(dv_st_writer_write(w, tmp_path("missing/x.safetensors")), DV365_E_IO,
               "missing/x.safetensors");
    dv_st_writer_free(w);
}

/* ENOSPC is reported as a full disk (/dev/full fails every write with it). */
static void test_write_disk_full(void **state)
{
    (void)state;
    int fd = open("/dev/full", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        skip();
    char buf[100] = {0};
    ASSERT_ERR(dv_write_all(fd, buf, sizeof buf, "/dev/full"), DV365_E_IO, "disk is full");
    test_assert_message_contains("/dev/full");
    ASSERT_OK(dv_write_all(fd, buf, 0, "/dev/full")); /* nothing to write */
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-canonical") == 0) {
        dv365_status st = write_canonical(argv[2]);
        if (st != DV365_OK)
            fprintf(stderr, "write failed: %s\n", dv365_last_error());
        return st == DV365_OK ? 0 : 1;
    }
    if (argc == 3 && strcmp(argv[1], "--check-canonical") == 0) {
        dv_st_file *f;
        if (dv_st_read_file(argv[2], &f) != DV365_OK) {
            fprintf(stderr, "read failed: %s\n", dv365_last_error());
            return 1;
        }
        const char *why = canonical_mismatch(f);
        dv_st_free(f);
        if (why)
            fprintf(stderr, "%s: not the canonical set (%s differs)\n", argv[2], why);
        return why ? 1 : 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_canonical),
        cmocka_unit_test(test_roundtrip_many_and_empty),
        cmocka_unit_test(test_writer_errors),
        cmocka_unit_test(test_malformed_framing),
        cmocka_unit_test(test_malformed_json),
        cmocka_unit_test(test_malformed_entries),
        cmocka_unit_test(test_escapes_decoded),
        cmocka_unit_test(test_corruptions_never_crash),
        cmocka_unit_test(test_read_all),
        cmocka_unit_test(test_write_atomic),
        cmocka_unit_test(test_write_atomic_rename_fails),
        cmocka_unit_test(test_write_atomic_keeps_old_file),
        cmocka_unit_test(test_write_disk_full),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
