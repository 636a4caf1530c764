/* test_datafile.c — timeline and example files, the CSV converters, and the
 * real KuaiRand slice: round trips, streaming through small buffers, every
 * truncation and byte flip, atomic close, CSV errors naming row and column. */
#include "testutil.h"

#include "datafile.h"
#include "timeline.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The KuaiRand vocabularies (docs/data.md) plus the smallest valid rest. */
static const char *yaml =
    "version: 1\n"
    "dim: 4\n"
    "vocab:\n"
    "  actions: [{name: view, explicit: false}, {name: like, explicit: true},\n"
    "            {name: follow, explicit: true}, {name: comment, explicit: true},\n"
    "            {name: share, explicit: true}, {name: hide, explicit: true},\n"
    "            {name: profile_visit, explicit: true}]\n"
    "  media_types: [normal, ad, unknown]\n"
    "  surfaces: [tab1, tab2, tab11, tab14]\n"
    "tables:\n"
    "  - {name: media, rows: 16}\n"
    "slices:\n"
    "  - {name: all, pool: {media: media}}\n"
    "encoder: {heads: 1}\n";

/* The same tables with other surface names: another vocabulary. */
static const char *yaml_other =
    "version: 1\n"
    "dim: 4\n"
    "vocab:\n"
    "  actions: [{name: view, explicit: false}, {name: like, explicit: true},\n"
    "            {name: follow, explicit: true}, {name: comment, explicit: true},\n"
    "            {name: share, explicit: true}, {name: hide, explicit: true},\n"
    "            {name: profile_visit, explicit: true}]\n"
    "  media_types: [normal, ad, unknown]\n"
    "  surfaces: [feed, reels, explore, search]\n"
    "tables:\n"
    "  - {name: media, rows: 16}\n"
    "slices:\n"
    "  - {name: all, pool: {media: media}}\n"
    "encoder: {heads: 1}\n";

typedef struct fixture {
    dv365_config *cfg;
    char dir[64];
    char paths[8][256]; /* tmp_path's results, reused round robin */
    int next_path;
} fixture;

static char *tmp_path(fixture *f, const char *name)
{
    char *p = f->paths[f->next_path++ % 8];
    snprintf(p, 256, "%s/%s", f->dir, name);
    return p;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (f == NULL || dv365_config_parse(yaml, strlen(yaml), &f->cfg) != DV365_OK) {
        print_error("config: %s\n", dv365_last_error());
        return -1;
    }
    strcpy(f->dir, "/tmp/dv365_datafile_XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    DIR *d = opendir(f->dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", f->dir, e->d_name);
        unlink(p);
    }
    if (d != NULL)
        closedir(d);
    rmdir(f->dir);
    dv365_config_free(f->cfg);
    free(f);
    return 0;
}

/* Number of entries in the fixture's directory (temp files included). */
static int dir_entries(const fixture *f)
{
    int n = 0;
    DIR *d = opendir(f->dir);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* No temporary file of a writer is left in the directory. */
static void assert_no_temp_files(const fixture *f)
{
    DIR *d = opendir(f->dir);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".tmp.") != NULL)
            fail_msg("temporary file left: %s", e->d_name);
    closedir(d);
}

static bool file_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

static unsigned char *slurp(const char *p, size_t *n)
{
    FILE *fp = fopen(p, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    assert_int_equal(fread(b, 1, (size_t)len, fp), (size_t)len);
    fclose(fp);
    *n = (size_t)len;
    return b;
}

static void spit(const char *p, const void *b, size_t n)
{
    FILE *fp = fopen(p, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(b, 1, n, fp), n);
    fclose(fp);
}

/* --- random timelines ------------------------------------------------------ */

static uint64_t rng_state;
static uint64_t rnd(void) { return dv_mix64(++rng_state); }

static dv365_timeline *random_timeline(const dv365_config *cfg, size_t n)
{
    dv365_timeline *tl = NULL;
    ASSERT_OK(dv365_timeline_create(cfg, &tl));
    int64_t *t = malloc((n + 1) * 8);
    uint64_t *m = malloc((n + 1) * 8), *a = malloc((n + 1) * 8), *p = malloc((n + 1) * 8);
    int32_t *ac = malloc((n + 1) * 4), *mt = malloc((n + 1) * 4), *s = malloc((n + 1) * 4);
    float *du = malloc((n + 1) * 4), *dw = malloc((n + 1) * 4);
    for (size_t i = 0; i < n; i++) {
        t[i] = 1600000000 + (int64_t)(rnd() % 31536000);
        m[i] = rnd();
        a[i] = rnd() % 100000;
        p[i] = rnd() % 50;
        ac[i] = (int32_t)(rnd() % 7);
        mt[i] = (int32_t)(rnd() % 3);
        s[i] = (int32_t)(rnd() % 4);
        du[i] = (float)(rnd() % 600000) + 0.25f;
        dw[i] = (float)(rnd() % 100000) * 0.5f;
    }
    ASSERT_OK(dv365_timeline_append(tl, n, t, m, a, p, ac, mt, s, du, dw));
    free(t), free(m), free(a), free(p), free(ac), free(mt), free(s), free(du), free(dw);
    return tl;
}

static void assert_same_timeline(const dv365_timeline *x, const dv365_timeline *y)
{
    assert_int_equal(x->n, y->n);
    size_t n = x->n;
    if (n == 0)
        return;
    assert_memory_equal(x->time, y->time, n * 8);
    for (int k = 0; k < DV_NUM_FIELDS; k++)
        assert_memory_equal(x->id[k], y->id[k], n * 8);
    assert_memory_equal(x->action, y->action, n * 4);
    assert_memory_equal(x->media_type, y->media_type, n * 4);
    assert_memory_equal(x->surface, y->surface, n * 4);
    assert_memory_equal(x->duration_ms, y->duration_ms, n * 4);
    assert_memory_equal(x->dwell_ms, y->dwell_ms, n * 4);
    assert_memory_equal(x->watch_score, y->watch_score, n * 8); /* derived again on read */
}

/* Users 0..n_users-1 with sizes[u] events, user id = 1000 + 7u. */
typedef struct dataset {
    size_t n;
    uint64_t *ids;
    dv365_timeline **tl;
} dataset;

static dataset make_dataset(const dv365_config *cfg, size_t n, const size_t *sizes)
{
    dataset d = {n, malloc(n * 8), malloc(n * sizeof(dv365_timeline *))};
    for (size_t u = 0; u < n; u++) {
        d.ids[u] = 1000 + 7 * u;
        d.tl[u] = random_timeline(cfg, sizes[u]);
    }
    return d;
}

static void free_dataset(dataset *d)
{
    for (size_t u = 0; u < d->n; u++)
        dv365_timeline_free(d->tl[u]);
    free(d->ids);
    free(d->tl);
}

static void write_dataset(const dv365_config *cfg, const dataset *d, const char *path)
{
    dv365_timeline_writer *w = NULL;
    ASSERT_OK(dv365_timeline_writer_open(path, cfg, &w));
    for (size_t u = 0; u < d->n; u++)
        ASSERT_OK(dv365_timeline_writer_add(w, d->ids[u], d->tl[u]));
    assert_int_equal(dv365_timeline_writer_count(w), d->n);
    ASSERT_OK(dv365_timeline_writer_close(w));
    dv365_timeline_writer_free(w);
}

/* Read every user back (through a buf_bytes buffer) and compare. */
static void check_dataset(const dv365_config *cfg, const dataset *d, const char *path,
                          size_t buf_bytes)
{
    dv365_timeline_reader *r = NULL;
    ASSERT_OK(dv_timeline_reader_open_ex(path, cfg, buf_bytes, &r));
    assert_int_equal(dv365_timeline_reader_count(r), d->n);
    size_t total = 0;
    for (size_t u = 0; u < d->n; u++)
        total += d->tl[u]->n;
    assert_int_equal(dv365_timeline_reader_num_events(r), total);
    dv365_timeline *tl = NULL;
    ASSERT_OK(dv365_timeline_create(cfg, &tl));
    for (int pass = 0; pass < 2; pass++) { /* the second pass after a rewind */
        for (size_t u = 0; u < d->n; u++) {
            uint64_t uid = 0;
            int done = -1;
            ASSERT_OK(dv365_timeline_reader_next(r, &uid, tl, &done));
            assert_int_equal(done, 0);
            assert_int_equal(uid, d->ids[u]);
            assert_same_timeline(tl, d->tl[u]);
        }
        uint64_t uid = 99;
        int done = 0;
        ASSERT_OK(dv365_timeline_reader_next(r, &uid, tl, &done));
        assert_int_equal(done, 1);
        assert_int_equal(uid, 0);
        assert_int_equal(dv365_timeline_size(tl), 0);
        ASSERT_OK(dv365_timeline_reader_rewind(r));
    }
    dv365_timeline_free(tl);
    dv365_timeline_reader_free(r);
}

/* --- timeline files ------------------------------------------------------------ */

static void test_timeline_round_trip(void **state)
{
    fixture *f = *state;
    rng_state = 1;
    /* 0, 1 and 70,000 events, then many small users */
    size_t sizes[300];
    sizes[0] = 0, sizes[1] = 1, sizes[2] = 70000;
    for (size_t u = 3; u < 300; u++)
        sizes[u] = rnd() % 60;
    dataset d = make_dataset(f->cfg, 300, sizes);
    char *p = tmp_path(f, "tl.dvt");
    write_dataset(f->cfg, &d, p);
    check_dataset(f->cfg, &d, p, DV_DATA_BUFFER_DEFAULT);
    /* the file is far bigger than these buffers: it streams */
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_true((size_t)sb.st_size > 100 * 4096);
    check_dataset(f->cfg, &d, p, 16);
    check_dataset(f->cfg, &d, p, 100);
    check_dataset(f->cfg, &d, p, 4096);
    assert_no_temp_files(f);
    free_dataset(&d);
}

static void test_timeline_empty_file(void **state)
{
    fixture *f = *state;
    dataset d = {0, NULL, NULL};
    char *p = tmp_path(f, "empty.dvt");
    write_dataset(f->cfg, &d, p);
    check_dataset(f->cfg, &d, p, 64);
    dv365_timeline_reader *r = NULL;
    ASSERT_OK(dv365_timeline_reader_open(p, f->cfg, &r));
    ASSERT_ERR(dv365_timeline_reader_seek(r, 1), DV365_E_NOT_FOUND, "user 1");
    dv365_timeline_reader_free(r);
}

static void test_timeline_seek(void **state)
{
    fixture *f = *state;
    rng_state = 2;
    size_t sizes[50];
    for (size_t u = 0; u < 50; u++)
        sizes[u] = rnd() % 40;
    dataset d = make_dataset(f->cfg, 50, sizes);
    /* ids out of order in the file, so the index must sort them */
    for (size_t u = 0; u < 50; u++)
        d.ids[u] = dv_mix64(u) % 100000;
    char *p = tmp_path(f, "seek.dvt");
    write_dataset(f->cfg, &d, p);

    dv365_timeline_reader *r = NULL;
    dv365_timeline *tl = NULL;
    ASSERT_OK(dv_timeline_reader_open_ex(p, f->cfg, 64, &r));
    ASSERT_OK(dv365_timeline_create(f->cfg, &tl));
    uint64_t uid;
    int done;
    ASSERT_OK(dv365_timeline_reader_next(r, &uid, tl, &done)); /* then jump around */
    const size_t order[] = {37, 0, 49, 12, 12, 5};
    for (size_t k = 0; k < sizeof order / sizeof *order; k++) {
        size_t u = order[k];
        ASSERT_OK(dv365_timeline_reader_seek(r, d.ids[u]));
        ASSERT_OK(dv365_timeline_reader_next(r, &uid, tl, &done));
        assert_int_equal(uid, d.ids[u]);
        assert_same_timeline(tl, d.tl[u]);
        /* reading goes on sequentially from there */
        if (u + 1 < 50) {
            ASSERT_OK(dv365_timeline_reader_next(r, &uid, tl, &done));
            assert_int_equal(uid, d.ids[u + 1]);
            assert_same_timeline(tl, d.tl[u + 1]);
        }
    }
    ASSERT_OK(dv365_timeline_reader_seek(r, d.ids[49]));
    ASSERT_OK(dv365_timeline_reader_next(r, &uid, tl, &done));
    ASSERT_OK(dv365_timeline_reader_next(r, &uid, tl, &done));
    assert_int_equal(done, 1);
    ASSERT_ERR(dv365_timeline_reader_seek(r, 100001), DV365_E_NOT_FOUND, "user 100001");
    dv365_timeline_free(tl);
    dv365_timeline_reader_free(r);
    free_dataset(&d);
}

static void test_timeline_writer_errors(void **state)
{
    fixture *f = *state;
    rng_state = 3;
    dv365_timeline *tl = random_timeline(f->cfg, 5);
    dv365_config *other = NULL;
    ASSERT_OK(dv365_config_parse(yaml_other, strlen(yaml_other), &other));
    dv365_timeline *tl_other = NULL;
    ASSERT_OK(dv365_timeline_create(other, &tl_other));

    dv365_timeline_writer *w = NULL;
    char *p = tmp_path(f, "w.dvt");
    ASSERT_ERR(dv365_timeline_writer_open(NULL, f->cfg, &w), DV365_E_NULL, "path");
    ASSERT_ERR(dv365_timeline_writer_open("", f->cfg, &w), DV365_E_INVALID, "empty");
    ASSERT_ERR(dv365_timeline_writer_open("/nonexistent-dir/x.dvt", f->cfg, &w), DV365_E_IO,
               "nonexistent-dir");
    ASSERT_OK(dv365_timeline_writer_open(p, f->cfg, &w));
    ASSERT_ERR(dv365_timeline_writer_add(w, 1, NULL), DV365_E_NULL, "tl");
    ASSERT_OK(dv365_timeline_writer_add(w, 1, tl));
    ASSERT_ERR(dv365_timeline_writer_add(w, 1, tl), DV365_E_INVALID, "user 1 is already");
    ASSERT_ERR(dv365_timeline_writer_add(w, 2, tl_other), DV365_E_MISMATCH, "vocabularies");
    ASSERT_OK(dv365_timeline_writer_add(w, 2, tl)); /* still usable */
    assert_false(file_exists(p)); /* nothing under the final name before close */
    ASSERT_OK(dv365_timeline_writer_close(w));
    ASSERT_ERR(dv365_timeline_writer_close(w), DV365_E_STATE, "already closed");
    ASSERT_ERR(dv365_timeline_writer_add(w, 3, tl), DV365_E_STATE, "closed");
    dv365_timeline_writer_free(w);
    dv365_timeline_writer_free(NULL);

    /* readers: wrong vocabularies, missing file, directory, NULLs */
    dv365_timeline_reader *r = NULL;
    ASSERT_ERR(dv365_timeline_reader_open(p, other, &r), DV365_E_MISMATCH, "vocabularies");
    ASSERT_ERR(dv365_timeline_reader_open(tmp_path(f, "missing"), f->cfg, &r), DV365_E_IO,
               "missing");
    ASSERT_ERR(dv365_timeline_reader_open(f->dir, f->cfg, &r), DV365_E_IO, "regular");
    assert_null(r);
    ASSERT_OK(dv365_timeline_reader_open(tmp_path(f, "w.dvt"), f->cfg, &r));
    uint64_t uid;
    int done;
    ASSERT_ERR(dv365_timeline_reader_next(r, &uid, tl_other, &done), DV365_E_MISMATCH,
               "vocabularies");
    ASSERT_ERR(dv365_timeline_reader_next(r, NULL, tl, &done), DV365_E_NULL, "user_id");
    ASSERT_OK(dv365_timeline_reader_next(r, &uid, tl, &done)); /* still usable */
    assert_int_equal(uid, 1);
    assert_int_equal(dv365_timeline_reader_count(NULL), 0);
    dv365_timeline_reader_free(r);
    dv365_timeline_reader_free(NULL);

    dv365_timeline_free(tl_other);
    dv365_timeline_free(tl);
    dv365_config_free(other);
}

/* A writer freed without close leaves nothing, and an existing file under
 * the same name stays as it was. */
static void test_timeline_atomic(void **state)
{
    fixture *f = *state;
    rng_state = 4;
    dv365_timeline *tl = random_timeline(f->cfg, 100);
    int before = dir_entries(f);
    char *p = tmp_path(f, "atomic.dvt");
    dv365_timeline_writer *w = NULL;
    ASSERT_OK(dv365_timeline_writer_open(p, f->cfg, &w));
    ASSERT_OK(dv365_timeline_writer_add(w, 7, tl));
    assert_int_equal(dir_entries(f), before + 1); /* the temporary file */
    dv365_timeline_writer_free(w);
    assert_false(file_exists(p));
    assert_int_equal(dir_entries(f), before);

    spit(p, "old contents", 12);
    ASSERT_OK(dv365_timeline_writer_open(p, f->cfg, &w));
    ASSERT_OK(dv365_timeline_writer_add(w, 7, tl));
    dv365_timeline_writer_free(w);
    size_t n;
    unsigned char *b = slurp(p, &n);
    assert_int_equal(n, 12);
    assert_memory_equal(b, "old contents", 12);
    free(b);
    unlink(p);
    dv365_timeline_free(tl);
}

/* Small file of 3 users for the corruption tests; returns its path. */
static char *small_timeline_file(fixture *f, const char *name, size_t *size)
{
    rng_state = 5;
    size_t sizes[3] = {2, 0, 3};
    dataset d = make_dataset(f->cfg, 3, sizes);
    char *p = tmp_path(f, name);
    write_dataset(f->cfg, &d, p);
    free_dataset(&d);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    if (size != NULL)
        *size = (size_t)sb.st_size;
    return p;
}

/* Open, read everything, then seek: the first failure's status. */
static dv365_status read_whole_timeline_file(const dv365_config *cfg, const char *path)
{
    dv365_timeline_reader *r = NULL;
    dv365_status st = dv_timeline_reader_open_ex(path, cfg, 16, &r);
    if (st != DV365_OK)
        return st;
    dv365_timeline *tl = NULL;
    ASSERT_OK(dv365_timeline_create(cfg, &tl));
    uint64_t uid;
    int done = 0;
    while (st == DV365_OK && !done)
        st = dv365_timeline_reader_next(r, &uid, tl, &done);
    if (st == DV365_OK)
        st = dv365_timeline_reader_seek(r, 1000 + 7 * 2);
    dv365_timeline_free(tl);
    dv365_timeline_reader_free(r);
    return st;
}

static void test_timeline_truncated_everywhere(void **state)
{
    fixture *f = *state;
    size_t size;
    char *p = small_timeline_file(f, "small.dvt", &size);
    size_t n;
    unsigned char *b = slurp(p, &n);
    assert_int_equal(n, size);
    ASSERT_OK(read_whole_timeline_file(f->cfg, p));
    char *cut = tmp_path(f, "cut.dvt");
    for (size_t len = 0; len < size; len++) {
        spit(cut, b, len);
        dv365_status st = read_whole_timeline_file(f->cfg, cut);
        if (st != DV365_E_FORMAT)
            fail_msg("cut at %zu of %zu: status %d (%s)", len, size, (int)st,
                     dv365_last_error());
        if (len >= 64) /* the header is whole: the size check speaks */
            test_assert_message_contains("truncated");
    }
    /* one byte too many */
    unsigned char *longer = malloc(size + 1);
    memcpy(longer, b, size);
    longer[size] = 0;
    spit(cut, longer, size + 1);
    ASSERT_ERR(read_whole_timeline_file(f->cfg, cut), DV365_E_FORMAT, "unexpected bytes");
    free(longer);
    free(b);
}

static void test_timeline_flipped_everywhere(void **state)
{
    fixture *f = *state;
    size_t size, n;
    unsigned char *b = slurp(small_timeline_file(f, "small.dvt", &size), &n);
    char *bad = tmp_path(f, "bad.dvt");
    size_t record0_payload = 64 + 32; /* first byte of user 0's events */
    for (size_t i = 0; i < size; i++) {
        for (int bit = 0; bit < 8; bit += 7) { /* lowest and highest bit */
            b[i] ^= (unsigned char)(1u << bit);
            spit(bad, b, size);
            b[i] ^= (unsigned char)(1u << bit);
            dv365_status st = read_whole_timeline_file(f->cfg, bad);
            if (st != DV365_E_FORMAT && st != DV365_E_CHECKSUM && st != DV365_E_VERSION)
                fail_msg("flip of bit %d at byte %zu: status %d (%s)", bit, i, (int)st,
                         dv365_last_error());
            if (i >= 8 && i < 12)
                assert_int_equal(st, DV365_E_VERSION);
            else if (i >= 12 && i < 64)
                assert_int_equal(st, DV365_E_CHECKSUM);
            if (i >= record0_payload && i < record0_payload + 2 * 52) {
                assert_int_equal(st, DV365_E_CHECKSUM);
                test_assert_message_contains("record 0 (user 1000)");
            }
        }
    }
    free(b);
}

/* --- example files ------------------------------------------------------------ */

typedef struct example {
    uint64_t user, media, author, topic;
    int64_t t;
    float dense[3], labels[2];
} example;

static example make_example(size_t i)
{
    example e = {.user = rnd() % 1000, .media = rnd(), .author = rnd() % 99, .topic = i % 7,
                 .t = 1650000000 + (int64_t)i};
    for (int k = 0; k < 3; k++)
        e.dense[k] = (float)(rnd() % 1000) / 7.0f - 50.0f;
    e.labels[0] = (float)(rnd() % 2);
    e.labels[1] = (float)(rnd() % 100000) / 3.0f;
    return e;
}

static void write_examples(const char *p, size_t n, size_t chunk_rows)
{
    dv365_example_writer *w = NULL;
    ASSERT_OK(dv_example_writer_open_ex(p, 3, 2, chunk_rows, &w));
    for (size_t i = 0; i < n; i++) {
        example e = make_example(i);
        ASSERT_OK(dv365_example_writer_add(w, e.user, e.t, e.media, e.author, e.topic, e.dense,
                                           e.labels));
    }
    assert_int_equal(dv365_example_writer_count(w), n);
    ASSERT_OK(dv365_example_writer_close(w));
    dv365_example_writer_free(w);
}

static void assert_example(dv365_example_reader *r, const example *e)
{
    uint64_t u, m, a, t;
    int64_t lt;
    float dense[3], labels[2];
    int done = -1;
    ASSERT_OK(dv365_example_reader_next(r, &u, &lt, &m, &a, &t, dense, labels, &done));
    assert_int_equal(done, 0);
    assert_int_equal(u, e->user);
    assert_int_equal(lt, e->t);
    assert_int_equal(m, e->media);
    assert_int_equal(a, e->author);
    assert_int_equal(t, e->topic);
    assert_memory_equal(dense, e->dense, sizeof dense);
    assert_memory_equal(labels, e->labels, sizeof labels);
}

static void test_examples_round_trip(void **state)
{
    fixture *f = *state;
    const size_t n = 1000;
    const size_t chunks[] = {0, 1, 7, 1000, 5000}; /* default, tiny, odd, exact, larger */
    for (size_t c = 0; c < sizeof chunks / sizeof *chunks; c++) {
        char *p = tmp_path(f, "ex.dve");
        rng_state = 10;
        write_examples(p, n, chunks[c]);
        dv365_example_reader *r = NULL;
        ASSERT_OK(dv365_example_reader_open(p, &r));
        assert_int_equal(dv365_example_reader_count(r), n);
        assert_int_equal(dv365_example_reader_num_dense(r), 3);
        assert_int_equal(dv365_example_reader_num_tasks(r), 2);
        rng_state = 10;
        example *all = malloc(n * sizeof *all);
        for (size_t i = 0; i < n; i++) {
            all[i] = make_example(i);
            assert_example(r, &all[i]);
        }
        uint64_t u, m, a, t;
        int64_t lt;
        float dense[3], labels[2];
        int done = 0;
        ASSERT_OK(dv365_example_reader_next(r, &u, &lt, &m, &a, &t, dense, labels, &done));
        assert_int_equal(done, 1);
        /* random access */
        const size_t at[] = {999, 0, 500, 7, 6, 13};
        for (size_t k = 0; k < sizeof at / sizeof *at; k++) {
            ASSERT_OK(dv365_example_reader_seek(r, at[k]));
            assert_example(r, &all[at[k]]);
        }
        ASSERT_OK(dv365_example_reader_seek(r, n));
        ASSERT_OK(dv365_example_reader_next(r, &u, &lt, &m, &a, &t, dense, labels, &done));
        assert_int_equal(done, 1);
        ASSERT_ERR(dv365_example_reader_seek(r, n + 1), DV365_E_INVALID, "past");
        dv365_example_reader_free(r);
        free(all);
    }
    assert_no_temp_files(f);
}

static void test_examples_no_dense_and_errors(void **state)
{
    fixture *f = *state;
    char *p = tmp_path(f, "nodense.dve");
    dv365_example_writer *w = NULL;
    ASSERT_ERR(dv365_example_writer_open(p, 0, 0, &w), DV365_E_INVALID, "n_tasks");
    ASSERT_ERR(dv365_example_writer_open(p, 70000, 1, &w), DV365_E_INVALID, "n_dense");
    ASSERT_OK(dv365_example_writer_open(p, 0, 1, &w));
    float label = 1.0f, bad[2] = {0.0f, NAN};
    ASSERT_OK(dv365_example_writer_add(w, 5, 100, 1, 2, 3, NULL, &label));
    ASSERT_ERR(dv365_example_writer_add(w, 5, -1, 1, 2, 3, NULL, &label), DV365_E_TIMESTAMP,
               "example 1: label_time = -1");
    ASSERT_ERR(dv365_example_writer_add(w, 5, 100, 1, 2, 3, NULL, bad + 1), DV365_E_NONFINITE,
               "labels[0]");
    ASSERT_ERR(dv365_example_writer_add(w, 5, 100, 1, 2, 3, NULL, NULL), DV365_E_NULL,
               "labels");
    ASSERT_OK(dv365_example_writer_close(w));
    dv365_example_writer_free(w);

    dv365_example_reader *r = NULL;
    ASSERT_OK(dv365_example_reader_open(p, &r));
    uint64_t u, m, a, t;
    int64_t lt;
    float l;
    int done;
    ASSERT_OK(dv365_example_reader_next(r, &u, &lt, &m, &a, &t, NULL, &l, &done));
    assert_int_equal(done, 0);
    assert_int_equal(u, 5);
    assert_int_equal(lt, 100);
    assert_true(l == 1.0f);
    dv365_example_reader_free(r);

    /* dense NaN names the column */
    ASSERT_OK(dv365_example_writer_open(p, 2, 1, &w));
    ASSERT_ERR(dv365_example_writer_add(w, 5, 100, 1, 2, 3, bad, &label), DV365_E_NONFINITE,
               "dense[1]");
    dv365_example_writer_free(w); /* abandoned: the closed file above stays */
    ASSERT_OK(dv365_example_reader_open(p, &r));
    assert_int_equal(dv365_example_reader_count(r), 1);
    dv365_example_reader_free(r);

    /* a timeline file is no example file, and vice versa */
    ASSERT_ERR(dv365_example_reader_open(tmp_path(f, "nothing"), &r), DV365_E_IO, "nothing");
    ASSERT_ERR(dv365_example_reader_open(small_timeline_file(f, "small.dvt", NULL), &r),
               DV365_E_FORMAT, "DV365EXF");
    dv365_timeline_reader *tr = NULL;
    ASSERT_ERR(dv365_timeline_reader_open(p, f->cfg, &tr), DV365_E_FORMAT, "DV365TLF");
}

static dv365_status read_whole_example_file(const char *path)
{
    dv365_example_reader *r = NULL;
    dv365_status st = dv365_example_reader_open(path, &r);
    if (st != DV365_OK)
        return st;
    uint64_t u, m, a, t;
    int64_t lt;
    float dense[3], labels[2];
    int done = 0;
    while (st == DV365_OK && !done)
        st = dv365_example_reader_next(r, &u, &lt, &m, &a, &t, dense, labels, &done);
    dv365_example_reader_free(r);
    return st;
}

static void test_examples_corrupt_everywhere(void **state)
{
    fixture *f = *state;
    char *p = tmp_path(f, "small.dve");
    rng_state = 11;
    write_examples(p, 5, 2); /* chunks of 2, 2, 1 */
    size_t size;
    unsigned char *b = slurp(p, &size);
    assert_int_equal(size, 64 + 3 * 16 + 5 * (40 + 4 * 5));
    ASSERT_OK(read_whole_example_file(p));
    char *cut = tmp_path(f, "cut.dve");
    for (size_t len = 0; len < size; len++) {
        spit(cut, b, len);
        dv365_status st = read_whole_example_file(cut);
        if (st != DV365_E_FORMAT)
            fail_msg("cut at %zu: status %d (%s)", len, (int)st, dv365_last_error());
    }
    for (size_t i = 0; i < size; i++) {
        b[i] ^= 0x01;
        spit(cut, b, size);
        b[i] ^= 0x01;
        dv365_status st = read_whole_example_file(cut);
        if (st != DV365_E_FORMAT && st != DV365_E_CHECKSUM && st != DV365_E_VERSION)
            fail_msg("flip at byte %zu: status %d (%s)", i, (int)st, dv365_last_error());
        size_t chunk1 = 64 + 16 + 2 * 60; /* second chunk's header */
        if (i >= chunk1 + 16 && i < chunk1 + 16 + 120) {
            assert_int_equal(st, DV365_E_CHECKSUM);
            test_assert_message_contains("chunk 1 (examples 2..3)");
        }
    }
    free(b);
}

static void test_examples_atomic(void **state)
{
    fixture *f = *state;
    int before = dir_entries(f);
    dv365_example_writer *w = NULL;
    char *p = tmp_path(f, "gone.dve");
    ASSERT_OK(dv_example_writer_open_ex(p, 3, 2, 2, &w));
    rng_state = 12;
    for (size_t i = 0; i < 9; i++) { /* several chunks already on disk */
        example e = make_example(i);
        ASSERT_OK(dv365_example_writer_add(w, e.user, e.t, e.media, e.author, e.topic, e.dense,
                                           e.labels));
    }
    dv365_example_writer_free(w);
    assert_false(file_exists(p));
    assert_int_equal(dir_entries(f), before);
}

/* --- CSV ---------------------------------------------------------------------- */

static void read_all_users(const dv365_config *cfg, const char *path, size_t max,
                           uint64_t *ids, dv365_timeline **tls, size_t *n_users)
{
    dv365_timeline_reader *r = NULL;
    ASSERT_OK(dv365_timeline_reader_open(path, cfg, &r));
    size_t n = 0;
    for (;;) {
        assert_true(n < max);
        ASSERT_OK(dv365_timeline_create(cfg, &tls[n]));
        int done;
        ASSERT_OK(dv365_timeline_reader_next(r, &ids[n], tls[n], &done));
        if (done) {
            dv365_timeline_free(tls[n]);
            break;
        }
        n++;
    }
    dv365_timeline_reader_free(r);
    *n_users = n;
}

static void test_csv_timelines(void **state)
{
    fixture *f = *state;
    /* BOM, CRLF, quoted fields, names and codes, an ignored extra column,
     * times out of order within a user */
    const char *csv = "\xEF\xBB\xBFuser_id,time,note,media_id,author_id,topic_id,action,"
                      "media_type,surface,duration_ms,dwell_ms\r\n"
                      "7,1650000100,\"hello, world\",11,21,31,view,normal,tab1,1000,500.5\r\n"
                      "7,1650000000,x,12,22,32,like,\"ad\",2,0,0\r\n"
                      "\r\n"
                      "3,1650000200,\"multi\nline\",13,23,33,6,unknown,tab14,2e3,1e2\r\n";
    char src[256];
    snprintf(src, sizeof src, "%s/in.csv", f->dir);
    spit(src, csv, strlen(csv));
    char *out = tmp_path(f, "csv.dvt");
    size_t rows = 0;
    ASSERT_OK(dv365_csv_to_timelines(src, f->cfg, 0, out, &rows));
    assert_int_equal(rows, 3);

    uint64_t ids[4];
    dv365_timeline *tls[4];
    size_t n;
    read_all_users(f->cfg, out, 4, ids, tls, &n);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 7);
    assert_int_equal(ids[1], 3);
    const dv365_timeline *a = tls[0], *b = tls[1];
    assert_int_equal(a->n, 2);
    assert_int_equal(a->time[0], 1650000000); /* sorted */
    assert_int_equal(a->id[DV_FIELD_MEDIA][0], 12);
    assert_int_equal(a->action[0], 1);
    assert_int_equal(a->media_type[0], 1);
    assert_int_equal(a->surface[0], 2);
    assert_int_equal(a->id[DV_FIELD_TOPIC][1], 31);
    assert_true(a->dwell_ms[1] == 500.5f);
    assert_int_equal(b->n, 1);
    assert_int_equal(b->action[0], 6);
    assert_int_equal(b->surface[0], 3);
    assert_true(b->duration_ms[0] == 2000.0f && b->dwell_ms[0] == 100.0f);
    for (size_t u = 0; u < n; u++)
        dv365_timeline_free(tls[u]);

    /* the same as TSV with time_ms, delimiter given and guessed */
    const char *tsv = "user_id\ttime_ms\tmedia_id\tauthor_id\ttopic_id\taction\tmedia_type\t"
                      "surface\tduration_ms\tdwell_ms\n"
                      "9\t1650000000999\t1\t2\t3\tview\tnormal\ttab2\t10\t5\n";
    spit(src, tsv, strlen(tsv));
    for (int k = 0; k < 2; k++) {
        ASSERT_OK(dv365_csv_to_timelines(src, f->cfg, k ? '\t' : 0, out, &rows));
        assert_int_equal(rows, 1);
        read_all_users(f->cfg, out, 4, ids, tls, &n);
        assert_int_equal(n, 1);
        assert_int_equal(tls[0]->time[0], 1650000000); /* floored to seconds */
        assert_int_equal(tls[0]->surface[0], 1);
        dv365_timeline_free(tls[0]);
    }
    /* a header and no rows: an empty file */
    const char *hdr = "user_id,time,media_id,author_id,topic_id,action,media_type,surface,"
                      "duration_ms,dwell_ms\n";
    spit(src, hdr, strlen(hdr));
    ASSERT_OK(dv365_csv_to_timelines(src, f->cfg, ',', out, &rows));
    assert_int_equal(rows, 0);
    read_all_users(f->cfg, out, 4, ids, tls, &n);
    assert_int_equal(n, 0);
    unlink(src);
}

/* Each bad CSV fails with code and a message naming row/line/column; no
 * output file appears. */
static void test_csv_errors(void **state)
{
    fixture *f = *state;
#define HDR "user_id,time,media_id,author_id,topic_id,action,media_type,surface,duration_ms,dwell_ms\n"
#define OK1 "1,1650000000,1,2,3,view,normal,tab1,10,5\n"
    const struct {
        const char *csv;
        char delim;
        dv365_status code;
        const char *needle;
    } cases[] = {
        {HDR OK1 "1,1650000001,1,2,3,lik,normal,tab1,10,5\n", ',', DV365_E_NOT_FOUND,
         "row 2 (line 3), column 'action': unknown name 'lik' (the config has: view, like"},
        {HDR OK1 "1,1650000001,1,2,3,view,photo,tab1,10,5\n", ',', DV365_E_NOT_FOUND,
         "column 'media_type': unknown name 'photo'"},
        {HDR OK1 "1,1650000001,1,2,3,9,normal,tab1,10,5\n", ',', DV365_E_INVALID,
         "row 2 (line 3), column 'action': code 9 is out of range"},
        {HDR "1,1650000000,abc,2,3,view,normal,tab1,10,5\n", ',', DV365_E_FORMAT,
         "row 1 (line 2), column 'media_id': 'abc' is not an unsigned integer"},
        {HDR "1,1650000000,-4,2,3,view,normal,tab1,10,5\n", ',', DV365_E_FORMAT,
         "column 'media_id': '-4'"},
        {HDR "1,1650000000,99999999999999999999,2,3,view,normal,tab1,10,5\n", ',',
         DV365_E_FORMAT, "does not fit in 64 bits"},
        {HDR OK1 OK1 "1,1650000000,1,2,3,view,normal,tab1,10,nan\n", ',', DV365_E_NONFINITE,
         "row 3 (line 4), column 'dwell_ms': 'nan' is not finite"},
        {HDR "1,1650000000,1,2,3,view,normal,tab1,1e39,5\n", ',', DV365_E_NONFINITE,
         "column 'duration_ms': '1e39' is not finite (beyond float range)"},
        {HDR "1,1650000000,1,2,3,view,normal,tab1,-10,5\n", ',', DV365_E_INVALID,
         "column 'duration_ms': -10 is negative"},
        {HDR "1,1650000000,1,2,3,view,normal,tab1,10,\n", ',', DV365_E_FORMAT,
         "column 'dwell_ms': empty value"},
        {HDR "1,1650000000,1,2,3,view,normal,tab1,10,5x\n", ',', DV365_E_FORMAT,
         "column 'dwell_ms': '5x' is not a number"},
        {HDR "1,-5,1,2,3,view,normal,tab1,10,5\n", ',', DV365_E_TIMESTAMP,
         "column 'time': -5 is before 1970"},
        {HDR "1,5000000000,1,2,3,view,normal,tab1,10,5\n", ',', DV365_E_TIMESTAMP,
         "column 'time': 5000000000 is after 2100"},
        {HDR "1,1650000000,1,2,3,view,normal,tab1,10\n", ',', DV365_E_FORMAT,
         "row 1 (line 2) has 9 fields, the header has 10"},
        {HDR "1,1650000000,1,2,3,view,normal,tab1,10,5,6\n", ',', DV365_E_FORMAT,
         "row 1 (line 2) has 11 fields"},
        {"user_id,time,media_id,author_id,topic_id,action,media_type,surface,duration_ms\n"
         "1,1,1,1,1,view,normal,tab1,1\n", ',', DV365_E_FORMAT,
         "header (line 1): missing column 'dwell_ms'"},
        {"user_id,media_id,author_id,topic_id,action,media_type,surface,duration_ms,dwell_ms\n",
         ',', DV365_E_FORMAT, "missing column 'time' (or 'time_ms')"},
        {"user_id,time,time_ms,media_id,author_id,topic_id,action,media_type,surface,"
         "duration_ms,dwell_ms\n", ',', DV365_E_FORMAT, "'time' or 'time_ms', not both"},
        {"user_id,user_id,time,media_id,author_id,topic_id,action,media_type,surface,"
         "duration_ms,dwell_ms\n", ',', DV365_E_FORMAT, "column 'user_id' appears twice"},
        {HDR OK1 "2,1650000000,1,2,3,view,normal,tab1,10,5\n" OK1, ',', DV365_E_FORMAT,
         "row 3 (line 4), column 'user_id': user 1 already had rows"},
        {HDR OK1 "1,1650000000,\"1\"2,2,3,view,normal,tab1,10,5\n", ',', DV365_E_FORMAT,
         "line 3: malformed CSV"},
        {HDR OK1 "1,1650000000,\"1,2,3,view,normal,tab1,10,5\n", ',', DV365_E_FORMAT,
         "malformed CSV"},
        {"", ',', DV365_E_FORMAT, "no header row"},
        {HDR OK1, 'x', DV365_E_INVALID, "delimiter"},
        {HDR OK1, '\t', DV365_E_FORMAT, "missing column"}, /* wrong delimiter given */
    };
    char src[256];
    snprintf(src, sizeof src, "%s/bad.csv", f->dir);
    char *out = tmp_path(f, "never.dvt");
    spit(src, "", 0);
    int base = dir_entries(f);
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        spit(src, cases[k].csv, strlen(cases[k].csv));
        size_t rows = 12345;
        dv365_status st = dv365_csv_to_timelines(src, f->cfg, cases[k].delim, out, &rows);
        if (st != cases[k].code || strstr(dv365_last_error(), cases[k].needle) == NULL)
            fail_msg("case %zu: status %d, message \"%s\"; expected %d with \"%s\"", k, (int)st,
                     dv365_last_error(), (int)cases[k].code, cases[k].needle);
        test_assert_message_contains("bad.csv");
        assert_int_equal(rows, 12345); /* written only on success */
        assert_false(file_exists(out));
        assert_int_equal(dir_entries(f), base); /* no temporary file left */
    }
    /* a field longer than the 1 MiB limit */
    size_t big = ((size_t)1 << 20) + 100;
    char *long_csv = malloc(strlen(HDR) + big + 64);
    strcpy(long_csv, HDR "1,1650000000,1,2,3,view,normal,tab1,10,");
    size_t len = strlen(long_csv);
    memset(long_csv + len, '1', big);
    strcpy(long_csv + len + big, "\n");
    spit(src, long_csv, strlen(long_csv));
    free(long_csv);
    ASSERT_ERR(dv365_csv_to_timelines(src, f->cfg, ',', out, NULL), DV365_E_FORMAT,
               "longer than");
    ASSERT_ERR(dv365_csv_to_timelines(tmp_path(f, "absent.csv"), f->cfg, ',', out, NULL),
               DV365_E_IO, "absent.csv");
    unlink(src);
#undef HDR
#undef OK1
}

static void test_csv_examples(void **state)
{
    fixture *f = *state;
    const char *csv = "label_1;user_id;label_time;media_id;author_id;topic_id;dense_1;dense_0;"
                      "label_0;extra\n"
                      "2.5;4;1650000000;10;20;30;0.5;-1.5;1;x\n"
                      "0;5;1650000001;11;21;31;1e-3;2;0;y\n";
    char src[256];
    snprintf(src, sizeof src, "%s/ex.csv", f->dir);
    spit(src, csv, strlen(csv));
    char *out = tmp_path(f, "csv.dve");
    int base = dir_entries(f);
    size_t rows = 0;
    ASSERT_OK(dv365_csv_to_examples(src, 0, out, &rows));
    assert_int_equal(rows, 2);
    dv365_example_reader *r = NULL;
    ASSERT_OK(dv365_example_reader_open(out, &r));
    assert_int_equal(dv365_example_reader_num_dense(r), 2);
    assert_int_equal(dv365_example_reader_num_tasks(r), 2);
    uint64_t u, m, a, t;
    int64_t lt;
    float dense[2], labels[2];
    int done;
    ASSERT_OK(dv365_example_reader_next(r, &u, &lt, &m, &a, &t, dense, labels, &done));
    assert_int_equal(u, 4);
    assert_int_equal(lt, 1650000000);
    assert_int_equal(m, 10);
    assert_int_equal(a, 20);
    assert_int_equal(t, 30);
    assert_true(dense[0] == -1.5f && dense[1] == 0.5f);
    assert_true(labels[0] == 1.0f && labels[1] == 2.5f);
    ASSERT_OK(dv365_example_reader_next(r, &u, &lt, &m, &a, &t, dense, labels, &done));
    assert_true(dense[0] == 2.0f && dense[1] == 1e-3f);
    ASSERT_OK(dv365_example_reader_next(r, &u, &lt, &m, &a, &t, dense, labels, &done));
    assert_int_equal(done, 1);
    dv365_example_reader_free(r);
    unlink(out);

#define EHDR "user_id,label_time_ms,media_id,author_id,topic_id,dense_0,label_0\n"
    const struct {
        const char *csv;
        dv365_status code;
        const char *needle;
    } cases[] = {
        {EHDR "1,1650000000000,1,2,3,0.5,nan\n", DV365_E_NONFINITE,
         "row 1 (line 2), column 'label_0': 'nan' is not finite"},
        {EHDR "1,1650000000000,1,2,3,inf,1\n", DV365_E_NONFINITE, "column 'dense_0'"},
        {EHDR "1,1650000000000,1,2,3,1,1\n1,-1,1,2,3,1,1\n", DV365_E_TIMESTAMP,
         "row 2 (line 3), column 'label_time_ms'"},
        {"user_id,label_time,media_id,author_id,topic_id,dense_0,dense_2,label_0\n",
         DV365_E_FORMAT, "column 'dense_1' is missing"},
        {"user_id,label_time,media_id,author_id,topic_id,dense_0\n", DV365_E_FORMAT,
         "missing column 'label_0'"},
        {"user_id,label_time,media_id,author_id,topic_id,label_01\n", DV365_E_FORMAT,
         "column 'label_01'"},
        {"user_id,label_time,media_id,author_id,topic_id,label_0,label_0\n", DV365_E_FORMAT,
         "'label_0' appears twice"},
        {"user_id,media_id,author_id,topic_id,label_0\n", DV365_E_FORMAT,
         "missing column 'label_time' (or 'label_time_ms')"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        spit(src, cases[k].csv, strlen(cases[k].csv));
        dv365_status st = dv365_csv_to_examples(src, ',', out, NULL);
        if (st != cases[k].code || strstr(dv365_last_error(), cases[k].needle) == NULL)
            fail_msg("case %zu: status %d, message \"%s\"; expected %d with \"%s\"", k, (int)st,
                     dv365_last_error(), (int)cases[k].code, cases[k].needle);
        assert_false(file_exists(out));
        assert_int_equal(dir_entries(f), base);
    }
    unlink(src);
#undef EHDR
}

/* --- real data: a KuaiRand-1K slice through the CSV path ------------------------
 * tests/data/kuairand_1k_slice.csv was made by data/kuairand/to_uniti_csv.py
 * from the real log.  Here the converted file is checked against the raw log
 * and the video table, parsed independently, row by row. */

#define MAX_VIDEOS 8000
typedef struct video {
    uint64_t author, topic;
    bool known;
} video;

static void load_videos(video *v)
{
    FILE *fp = fopen(test_source_path("data/kuairand/kuairand-pure/video_features_basic_pure.csv"),
                     "r");
    assert_non_null(fp);
    char line[1024];
    assert_non_null(fgets(line, sizeof line, fp)); /* header */
    while (fgets(line, sizeof line, fp)) {
        unsigned long id, author;
        assert_int_equal(sscanf(line, "%lu,%lu,", &id, &author), 2);
        assert_true(id < MAX_VIDEOS);
        /* tag is the last field: "12,62" (quoted) or 12 or empty */
        char *end = line + strcspn(line, "\r\n");
        *end = '\0';
        char *q = strchr(line, '"');
        char *tag = q ? q + 1 : strrchr(line, ',') + 1;
        v[id] = (video){author, *tag ? strtoull(tag, NULL, 10) : 0, true};
    }
    fclose(fp);
}

static void test_kuairand_slice(void **state)
{
    fixture *f = *state;
    char *out = tmp_path(f, "kuairand.dvt");
    size_t rows = 0;
    ASSERT_OK(dv365_csv_to_timelines(test_source_path("tests/data/kuairand_1k_slice.csv"), f->cfg,
                                     0, out, &rows));
    video *videos = calloc(MAX_VIDEOS, sizeof *videos);
    load_videos(videos);

    uint64_t ids[16];
    dv365_timeline *tls[16];
    size_t n_users;
    read_all_users(f->cfg, out, 16, ids, tls, &n_users);
    assert_true(n_users >= 5);

    /* raw log: user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,
     * is_comment,is_forward,is_hate,long_view,play_time_ms,duration_ms,
     * profile_stay_time,comment_stay_time,is_profile_enter,is_rand,tab */
    FILE *fp = fopen(test_source_path("data/kuairand/kuairand-1k/log_random_4_22_to_5_08_1k.csv"),
                     "r");
    assert_non_null(fp);
    char line[512];
    assert_non_null(fgets(line, sizeof line, fp));
    size_t pos[16] = {0}, expected_rows = 0, explicit_events = 0;
    const char *tabs[] = {"tab1", "tab2", "tab11", "tab14"};
    while (fgets(line, sizeof line, fp)) {
        unsigned long long c[19];
        int k = sscanf(line,
                       "%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,"
                       "%llu,%llu,%llu,%llu,%llu",
                       &c[0], &c[1], &c[2], &c[3], &c[4], &c[5], &c[6], &c[7], &c[8], &c[9],
                       &c[10], &c[11], &c[12], &c[13], &c[14], &c[15], &c[16], &c[17], &c[18]);
        assert_int_equal(k, 19);
        size_t u = 0;
        while (u < n_users && ids[u] != c[0])
            u++;
        if (u == n_users)
            continue;
        /* one view, then like, follow, comment, share, hide, profile_visit for
         * is_like, is_follow, is_comment, is_forward, is_hate, is_profile_enter */
        const int flag_col[7] = {-1, 6, 7, 8, 9, 10, 16};
        const char *names[7] = {"view", "like", "follow", "comment", "share", "hide",
                                "profile_visit"};
        char tabname[16];
        snprintf(tabname, sizeof tabname, "tab%llu", c[18]);
        int32_t surface = -1;
        for (int s = 0; s < 4; s++)
            if (strcmp(tabs[s], tabname) == 0)
                surface = s;
        for (int a = 0; a < 7; a++) {
            if (flag_col[a] >= 0 && c[flag_col[a]] == 0)
                continue;
            const dv365_timeline *tl = tls[u];
            size_t i = pos[u]++;
            assert_true(i < tl->n);
            int32_t code;
            ASSERT_OK(dv365_config_code(f->cfg, DV365_VOCAB_ACTION, names[a], &code));
            assert_int_equal(tl->action[i], code);
            assert_int_equal(tl->time[i], (int64_t)(c[4] / 1000));
            assert_int_equal(tl->id[DV_FIELD_MEDIA][i], c[1]);
            assert_true(videos[c[1]].known);
            assert_int_equal(tl->id[DV_FIELD_AUTHOR][i], videos[c[1]].author);
            assert_int_equal(tl->id[DV_FIELD_TOPIC][i], videos[c[1]].topic);
            assert_true(tl->dwell_ms[i] == (float)c[12]);
            assert_true(tl->duration_ms[i] == (float)c[13]);
            assert_int_equal(tl->surface[i], surface);
            expected_rows++;
            explicit_events += a != 0;
        }
    }
    fclose(fp);
    for (size_t u = 0; u < n_users; u++) {
        assert_int_equal(pos[u], tls[u]->n); /* every event accounted for */
        dv365_timeline_free(tls[u]);
    }
    assert_int_equal(rows, expected_rows);
    assert_true(explicit_events > 10); /* the slice was chosen to hold every kind */
    free(videos);
}

/* --- out of memory at every allocation ---------------------------------------- */

static long g_allocs_left;
static long g_live;
static void *failing_alloc(void *opaque, size_t n)
{
    (void)opaque;
    if (g_allocs_left-- <= 0)
        return NULL;
    g_live++;
    return malloc(n);
}
static void counting_free(void *opaque, void *p)
{
    (void)opaque;
    g_live--;
    free(p);
}

/* Convert a CSV and read the result back with the k-th allocation failing,
 * for every k: DV365_E_NOMEM or success, nothing leaked, no file left. */
static void test_out_of_memory_everywhere(void **state)
{
    fixture *f = *state;
    const char *csv = "user_id,time,media_id,author_id,topic_id,action,media_type,surface,"
                      "duration_ms,dwell_ms\n"
                      "1,1650000000,1,2,3,view,normal,tab1,10,5\n"
                      "1,1650000001,1,2,3,like,normal,tab1,10,5\n"
                      "2,1650000002,1,2,3,view,ad,tab2,10,5\n";
    char *src = tmp_path(f, "oom.csv");
    spit(src, csv, strlen(csv));
    char *out = tmp_path(f, "oom.dvt");
    int base = dir_entries(f);
    bool succeeded = false;
    for (long k = 0; k < 200 && !succeeded; k++) {
        unlink(out);
        g_allocs_left = k;
        g_live = 0;
        ASSERT_OK(dv365_set_allocator(failing_alloc, counting_free, NULL));
        dv365_status st = dv365_csv_to_timelines(src, f->cfg, 0, out, NULL);
        dv365_timeline_reader *r = NULL;
        dv365_timeline *tl = NULL;
        if (st == DV365_OK)
            st = dv365_timeline_reader_open(out, f->cfg, &r);
        if (st == DV365_OK)
            st = dv365_timeline_create(f->cfg, &tl);
        int done = 0;
        uint64_t uid;
        while (st == DV365_OK && !done)
            st = dv365_timeline_reader_next(r, &uid, tl, &done);
        if (st == DV365_OK)
            st = dv365_timeline_reader_seek(r, 2);
        dv365_timeline_free(tl);
        dv365_timeline_reader_free(r);
        ASSERT_OK(dv365_set_allocator(NULL, NULL, NULL));
        if (st != DV365_OK && st != DV365_E_NOMEM)
            fail_msg("allocation %ld failing: status %d (%s)", k, (int)st, dv365_last_error());
        assert_int_equal(g_live, 0);
        assert_no_temp_files(f);
        succeeded = st == DV365_OK;
    }
    assert_true(succeeded);
    unlink(out);
    assert_int_equal(dir_entries(f), base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timeline_round_trip),
        cmocka_unit_test(test_timeline_empty_file),
        cmocka_unit_test(test_timeline_seek),
        cmocka_unit_test(test_timeline_writer_errors),
        cmocka_unit_test(test_timeline_atomic),
        cmocka_unit_test(test_timeline_truncated_everywhere),
        cmocka_unit_test(test_timeline_flipped_everywhere),
        cmocka_unit_test(test_examples_round_trip),
        cmocka_unit_test(test_examples_no_dense_and_errors),
        cmocka_unit_test(test_examples_corrupt_everywhere),
        cmocka_unit_test(test_examples_atomic),
        cmocka_unit_test(test_csv_timelines),
        cmocka_unit_test(test_csv_errors),
        cmocka_unit_test(test_csv_examples),
        cmocka_unit_test(test_kuairand_slice),
        cmocka_unit_test(test_out_of_memory_everywhere),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
