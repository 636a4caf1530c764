/* test_model.c — model init / save / load, fingerprint, batch embedding. */
#include "testutil.h"

#include "config.h"
#include "model.h"
#include "pool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NOW INT64_C(1750000000)

/* n deterministic events over the 200 days before NOW. */
static dv365_timeline *make_timeline(const dv365_config *cfg, size_t n, uint64_t seed)
{
    int64_t *t = malloc(n * sizeof *t);
    uint64_t *ids = malloc(3 * n * sizeof *ids);
    int32_t *codes = malloc(3 * n * sizeof *codes);
    float *ms = malloc(2 * n * sizeof *ms);
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005u + 1442695040888963407u;
        t[i] = NOW - 200 * 86400 + (int64_t)(i * (200 * 86400 / (n + 1)));
        ids[i] = (s >> 20) % 5000;
        ids[n + i] = ids[i] / 10;
        ids[2 * n + i] = ids[i] % 97;
        codes[i] = (int32_t)((s >> 40) % 8);           /* action */
        codes[n + i] = (int32_t)((s >> 44) % 3);       /* media type */
        codes[2 * n + i] = (int32_t)((s >> 48) % 5);   /* surface */
        ms[i] = 1000.0f + (float)((s >> 8) % 60000);   /* duration */
        ms[n + i] = (float)((s >> 30) % 40000);        /* dwell */
    }
    dv365_timeline *tl;
    ASSERT_OK(dv365_timeline_create(cfg, &tl));
    ASSERT_OK(dv365_timeline_append(tl, n, t, ids, ids + n, ids + 2 * n, codes, codes + n,
                                    codes + 2 * n, ms, ms + n));
    free(t);
    free(ids);
    free(codes);
    free(ms);
    return tl;
}

static char tmpdir[64];

static int setup(void **state)
{
    (void)state;
    return test_make_tmpdir(tmpdir, sizeof tmpdir, "model");
}

static int teardown(void **state)
{
    (void)state;
    return test_remove_tmpdir(tmpdir);
}

static void test_init_save_load(void **state)
{
    (void)state;
    dv365_model *m, *m2, *m3;
    ASSERT_OK(dv365_model_init(test_source_path("configs/small.yaml"), 7, &m));
    assert_int_equal(dv365_model_num_slices(m), 24);
    assert_int_equal(dv365_model_dim(m), 32);
    assert_int_equal(dv365_model_num_tokens(m), 12 + 4);
    assert_true(dv365_model_fingerprint(m) != 0);

    char dir[128];
    snprintf(dir, sizeof dir, "%s/m", tmpdir);
    ASSERT_OK(dv365_model_save(m, dir));
    ASSERT_OK(dv365_model_load(dir, &m2));
    assert_true(dv365_model_fingerprint(m2) == dv365_model_fingerprint(m));
    /* same weights: the tables and the encoder block compare equal */
    for (size_t t = 0; t < m->cfg->n_tables; t++)
        assert_memory_equal(m->pooler->tables[t], m2->pooler->tables[t],
                            m->cfg->table_rows[t] * m->cfg->dim * sizeof(float));
    /* another seed gives another model */
    ASSERT_OK(dv365_model_init(test_source_path("configs/small.yaml"), 8, &m3));
    assert_true(dv365_model_fingerprint(m3) != dv365_model_fingerprint(m));
    dv365_model_free(m3);

    /* saving over an existing model replaces it */
    ASSERT_OK(dv365_model_save(m2, dir));
    dv365_model_free(m2);
    dv365_model_free(m);
}

static void embed(const dv365_model *m, size_t batch, dv365_timeline **tls, const int64_t *cut,
                  float *U, int threads)
{
    dv365_workspace *ws;
    ASSERT_OK(dv365_workspace_create(&ws));
    size_t need = dv365_embed_workspace_size(m, batch, 3000, threads);
    assert_true(need != SIZE_MAX);
    ASSERT_OK(dv365_workspace_reserve(ws, need));
    ASSERT_OK(dv365_model_embed(m, ws, batch, (const dv365_timeline *const *)tls, cut, U,
                                threads));
    /* steady state: the reserved size was enough, no growth */
    assert_int_equal(dv365_workspace_capacity(ws), need);
    dv365_workspace_free(ws);
}

static void test_embed_matches_pool_then_encode(void **state)
{
    (void)state;
    dv365_model *m;
    ASSERT_OK(dv365_model_init(test_source_path("configs/small.yaml"), 3, &m));
    const size_t B = 5, N = 24, D = 32, K = 16;
    dv365_timeline *tls[5];
    int64_t cut[5];
    for (size_t b = 0; b < B; b++) {
        tls[b] = make_timeline(m->cfg, 500 + 500 * b, b + 1);
        cut[b] = NOW - (int64_t)b * 86400;
    }
    float *U1 = malloc(B * K * D * sizeof(float)), *U2 = malloc(B * K * D * sizeof(float));
    float *X = malloc(B * N * D * sizeof(float)), *U3 = malloc(B * K * D * sizeof(float));
    embed(m, B, tls, cut, U1, 1);
    embed(m, B, tls, cut, U2, 2);
    assert_memory_equal(U1, U2, B * K * D * sizeof(float)); /* any thread count, same bits */

    dv365_workspace *ws;
    ASSERT_OK(dv365_workspace_create(&ws));
    for (size_t b = 0; b < B; b++)
        ASSERT_OK(dv365_pool_forward(m->pooler, ws, tls[b], cut[b], X + b * N * D, NULL, NULL));
    ASSERT_OK(dv365_encode(m->enc, ws, B, X, U3, 1));
    assert_memory_equal(U1, U3, B * K * D * sizeof(float));
    double norm = 0;
    for (size_t i = 0; i < B * K * D; i++)
        norm += (double)U1[i] * U1[i];
    assert_true(norm > 0 && isfinite(norm));

    /* errors leave everything usable */
    ASSERT_ERR(dv365_model_embed(m, ws, B, (const dv365_timeline *const *)tls, cut, U1, 0),
               DV365_E_INVALID, "nthreads");
    ASSERT_ERR(dv365_model_embed(m, ws, 0, (const dv365_timeline *const *)tls, cut, U1, 1),
               DV365_E_INVALID, "batch");
    int64_t bad[5] = {NOW, NOW, -5, NOW, NOW};
    ASSERT_ERR(dv365_model_embed(m, ws, B, (const dv365_timeline *const *)tls, bad, U1, 1),
               DV365_E_TIMESTAMP, "cutoffs[2]");
    dv365_timeline *saved = tls[1];
    tls[1] = NULL;
    ASSERT_ERR(dv365_model_embed(m, ws, B, (const dv365_timeline *const *)tls, cut, U1, 1),
               DV365_E_NULL, "timelines[1]");
    tls[1] = saved;
    dv365_config *other;
    ASSERT_OK(dv365_config_load(test_source_path("configs/default.yaml"), &other));
    dv365_timeline *foreign = make_timeline(other, 10, 1);
    saved = tls[3];
    tls[3] = foreign;
    ASSERT_ERR(dv365_model_embed(m, ws, B, (const dv365_timeline *const *)tls, cut, U1, 1),
               DV365_E_MISMATCH, "another config");
    tls[3] = saved;
    ASSERT_OK(dv365_model_embed(m, ws, B, (const dv365_timeline *const *)tls, cut, U2, 2));
    assert_memory_equal(U1, U2, B * K * D * sizeof(float));
    dv365_timeline_free(foreign);
    dv365_config_free(other);

    dv365_workspace_free(ws);
    for (size_t b = 0; b < B; b++)
        dv365_timeline_free(tls[b]);
    free(U1);
    free(U2);
    free(U3);
    free(X);
    dv365_model_free(m);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_load_errors(void **state)
{
    (void)state;
    dv365_model *m, *bad = (dv365_model *)(uintptr_t)1;
    char dir[128], path[160];
    ASSERT_ERR(dv365_model_load("/nonexistent/model", &bad), DV365_E_IO, "config.yaml");
    ASSERT_ERR(dv365_model_init("/nonexistent.yaml", 1, &bad), DV365_E_IO, "nonexistent");
    ASSERT_ERR(dv365_model_load(NULL, &bad), DV365_E_NULL, "dir");

    ASSERT_OK(dv365_model_init(test_source_path("configs/small.yaml"), 1, &m));
    snprintf(dir, sizeof dir, "%s/e", tmpdir);
    ASSERT_OK(dv365_model_save(m, dir));
    /* weights that do not belong to the config: a table grows */
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    FILE *f = fopen(test_source_path("configs/small.yaml"), "rb");
    char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    char *p = strstr(text, "rows: 4096");
    memcpy(p, "rows: 4097", 10);
    write_text(path, text);
    ASSERT_ERR(dv365_model_load(dir, &bad), DV365_E_MISMATCH, "tables.exp_pos_media");
    /* truncated weights */
    ASSERT_OK(dv365_model_save(m, dir));
    snprintf(path, sizeof path, "%s/weights.safetensors", dir);
    assert_int_equal(truncate(path, 1000), 0);
    ASSERT_ERR(dv365_model_load(dir, &bad), DV365_E_FORMAT, "weights.safetensors");
    /* missing weights */
    assert_int_equal(unlink(path), 0);
    ASSERT_ERR(dv365_model_load(dir, &bad), DV365_E_IO, "weights.safetensors");
    assert_true(bad == (dv365_model *)(uintptr_t)1);
    /* saving into a path that is a file */
    snprintf(path, sizeof path, "%s/plainfile", tmpdir);
    write_text(path, "x");
    ASSERT_ERR(dv365_model_save(m, path), DV365_E_IO, "not a directory");
    dv365_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_save_load),
        cmocka_unit_test(test_embed_matches_pool_then_encode),
        cmocka_unit_test(test_load_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
