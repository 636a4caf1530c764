/* test_alloc_fail.c — allocation-failure sweep: along each path (config
 * parse, model init, embed, blob encode, timeline append, model save and
 * load, timeline file write and read), fail the n-th allocation for every
 * n until the path completes.  Each time the call must return
 * DV365_E_NOMEM (or succeed, if it recovers) with a message, and once its
 * handles are freed no block of the failing allocator may be left. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static size_t g_live, g_count, g_fail_at, g_faults;

static void *failing_alloc(void *opaque, size_t size)
{
    (void)opaque;
    if (++g_count == g_fail_at) {
        g_faults++;
        return NULL;
    }
    void *p = malloc(size ? size : 1);
    if (p != NULL)
        g_live++;
    return p;
}

static void failing_free(void *opaque, void *p)
{
    (void)opaque;
    g_live--;
    free(p);
}

/* One path: runs under the failing allocator and frees all it made.
 * ctx carries inputs made beforehand with the normal allocator. */
typedef dv365_status (*path_fn)(void *ctx);

/* Sweep n = 1, 2, ... until the path runs without reaching its n-th
 * allocation; returns the number of allocations of a full run. */
static size_t sweep(const char *name, path_fn fn, void *ctx)
{
    for (size_t n = 1;; n++) {
        g_count = 0;
        g_fail_at = n;
        g_live = 0;
        ASSERT_OK(dv365_set_allocator(failing_alloc, failing_free, NULL));
        dv365_status st = fn(ctx);
        char msg[1024]; /* restoring the allocator clears the message */
        snprintf(msg, sizeof msg, "%s", dv365_last_error());
        ASSERT_OK(dv365_set_allocator(NULL, NULL, NULL));
        if (g_live != 0)
            fail_msg("%s: failing allocation %zu leaks %zu blocks (status %d: %s)", name, n,
                     g_live, (int)st, msg);
        if (g_count < n) { /* the n-th allocation never happened: a full run */
            if (st != DV365_OK)
                fail_msg("%s: a full run failed: %s", name, msg);
            printf("%s: %zu allocations, each failed once: clean\n", name, n - 1);
            return n - 1;
        }
        if (st != DV365_OK && st != DV365_E_NOMEM)
            fail_msg("%s: failing allocation %zu gave status %d (%s), expected NOMEM", name, n,
                     (int)st, msg);
        if (st == DV365_E_NOMEM && msg[0] == '\0')
            fail_msg("%s: NOMEM without a message at allocation %zu", name, n);
    }
}

/* ------------------------------------------------------------------ paths */

typedef struct inputs {
    char *yaml;
    size_t yaml_len;
    const char *config_path;
    dv365_model *model; /* made with the normal allocator */
    dv365_timeline *tl[3];
    int64_t cutoff[3];
    float *U;
    char dir[256];
} inputs;

static dv365_status path_config(void *ctx)
{
    inputs *in = ctx;
    dv365_config *cfg = NULL;
    dv365_status st = dv365_config_parse(in->yaml, in->yaml_len, &cfg);
    dv365_config_free(cfg);
    return st;
}

static dv365_status path_model_init(void *ctx)
{
    inputs *in = ctx;
    dv365_model *m = NULL;
    dv365_status st = dv365_model_init(in->config_path, 3, &m);
    dv365_model_free(m);
    return st;
}

static dv365_status path_embed(void *ctx)
{
    inputs *in = ctx;
    dv365_workspace *ws = NULL;
    dv365_status st = dv365_workspace_create(&ws);
    if (st == DV365_OK)
        st = dv365_model_embed(in->model, ws, 3, (const dv365_timeline *const *)in->tl,
                               in->cutoff, in->U, 2);
    dv365_workspace_free(ws);
    return st;
}

static dv365_status path_blob(void *ctx)
{
    inputs *in = ctx;
    size_t K = dv365_model_num_tokens(in->model), D = dv365_model_dim(in->model);
    size_t n = dv365_blob_size(K, D);
    uint8_t buf[8192];
    if (n > sizeof buf)
        return DV365_E_INTERNAL;
    dv365_status st = dv365_blob_encode(in->U, K, D, 1, 1717200000, DV365_Q4_GREEDY, buf, n);
    if (st == DV365_OK)
        st = dv365_blob_decode(buf, n, 1, K, D, in->U);
    return st;
}

static dv365_status path_append(void *ctx)
{
    inputs *in = ctx;
    dv365_timeline *tl = NULL;
    dv365_status st = dv365_timeline_create(dv365_model_config(in->model), &tl);
    enum { n = 300 };
    static int64_t t[n];
    static uint64_t id[n];
    static int32_t code[n];
    static float ms[n];
    for (size_t i = 0; i < n; i++) {
        t[i] = 1717000000 - (int64_t)((i * 7919) % 100000); /* out of order: sorting scratch */
        id[i] = i;
        code[i] = (int32_t)(i % 3);
        ms[i] = (float)i;
    }
    for (int rep = 0; rep < 3 && st == DV365_OK; rep++)
        st = dv365_timeline_append(tl, n, t, id, id, id, code, code, code, ms, ms);
    dv365_timeline_free(tl);
    return st;
}

static dv365_status path_save_load(void *ctx)
{
    inputs *in = ctx;
    dv365_status st = dv365_model_save(in->model, in->dir);
    dv365_model *m = NULL;
    if (st == DV365_OK)
        st = dv365_model_load(in->dir, &m);
    dv365_model_free(m);
    return st;
}

static dv365_status path_timeline_file(void *ctx)
{
    inputs *in = ctx;
    char path[512];
    snprintf(path, sizeof path, "%s/t.dvt", in->dir);
    const dv365_config *cfg = dv365_model_config(in->model);
    dv365_timeline_writer *w = NULL;
    dv365_status st = dv365_timeline_writer_open(path, cfg, &w);
    for (size_t u = 0; u < 3 && st == DV365_OK; u++)
        st = dv365_timeline_writer_add(w, 10 + u, in->tl[u]);
    if (st == DV365_OK)
        st = dv365_timeline_writer_close(w);
    dv365_timeline_writer_free(w);
    dv365_timeline_reader *r = NULL;
    dv365_timeline *tl = NULL;
    if (st == DV365_OK)
        st = dv365_timeline_reader_open(path, cfg, &r);
    if (st == DV365_OK)
        st = dv365_timeline_create(cfg, &tl);
    if (st == DV365_OK)
        st = dv365_timeline_reader_seek(r, 11);
    for (int done = 0; st == DV365_OK && !done;) {
        uint64_t uid;
        st = dv365_timeline_reader_next(r, &uid, tl, &done);
    }
    dv365_timeline_free(tl);
    dv365_timeline_reader_free(r);
    return st;
}

/* ------------------------------------------------------------------ setup */

static inputs g_in;

static int setup(void **state)
{
    (void)state;
    g_in.config_path = strdup(test_source_path("configs/small.yaml"));
    FILE *f = fopen(g_in.config_path, "rb");
    if (f == NULL)
        return -1;
    g_in.yaml = malloc(1 << 16);
    g_in.yaml_len = fread(g_in.yaml, 1, 1 << 16, f);
    fclose(f);
    if (dv365_model_init(g_in.config_path, 5, &g_in.model) != DV365_OK)
        return -1;
    const dv365_config *cfg = dv365_model_config(g_in.model);
    for (int u = 0; u < 3; u++) {
        if (dv365_timeline_create(cfg, &g_in.tl[u]) != DV365_OK)
            return -1;
        g_in.cutoff[u] = 1717200000;
        for (int i = 0; i < 40 * u; i++) {
            int64_t t = 1717200000 - 3600 * (int64_t)(i * 13 % 500);
            uint64_t m = (uint64_t)i * 31, a = (uint64_t)i % 7, tp = (uint64_t)i % 5;
            int32_t act = i % 8, mt = i % 3, sf = i % 5;
            float du = 10000, dw = (float)(i * 500);
            if (dv365_timeline_append(g_in.tl[u], 1, &t, &m, &a, &tp, &act, &mt, &sf, &du, &dw))
                return -1;
        }
    }
    g_in.U = malloc(3 * dv365_model_num_tokens(g_in.model) * dv365_model_dim(g_in.model) *
                    sizeof(float));
    snprintf(g_in.dir, sizeof g_in.dir, "/tmp/dv365-allocfail-XXXXXX");
    if (mkdtemp(g_in.dir) == NULL)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_in.dir);
    if (system(cmd) != 0)
        return -1;
    for (int u = 0; u < 3; u++)
        dv365_timeline_free(g_in.tl[u]);
    dv365_model_free(g_in.model);
    free(g_in.U);
    free(g_in.yaml);
    free((void *)g_in.config_path);
    printf("allocation failures injected: %zu\n", g_faults);
    return 0;
}

static void test_config_parse(void **state) { (void)state; assert_true(sweep("config parse", path_config, &g_in) > 0); }
static void test_model_init(void **state) { (void)state; assert_true(sweep("model init", path_model_init, &g_in) > 0); }
static void test_embed(void **state) { (void)state; assert_true(sweep("embed", path_embed, &g_in) > 0); }
static void test_append(void **state) { (void)state; assert_true(sweep("timeline append", path_append, &g_in) > 0); }
static void test_save_load(void **state) { (void)state; assert_true(sweep("model save+load", path_save_load, &g_in) > 0); }
static void test_timeline_file(void **state) { (void)state; assert_true(sweep("timeline file", path_timeline_file, &g_in) > 0); }

/* Blob encode/decode work on caller buffers: no allocation at all. */
static void test_blob(void **state)
{
    (void)state;
    ASSERT_OK(path_embed(&g_in));
    assert_int_equal(sweep("blob encode+decode", path_blob, &g_in), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_parse), cmocka_unit_test(test_model_init),
        cmocka_unit_test(test_embed),        cmocka_unit_test(test_blob),
        cmocka_unit_test(test_append),       cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_timeline_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
