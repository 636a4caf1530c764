/* test_concurrency.c — one shared model, many threads: every thread embeds
 * the same users (each with its own workspace, with 1 or 2 inner threads)
 * and gets bitwise the embedding and the blob bytes of a single-threaded
 * run.  Run under TSan (scripts/sanitize.sh tsan) it also checks that
 * sharing a model is race-free. */
#include "testutil.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define USERS 6
#define THREADS 4
#define ROUNDS 3

static dv365_model *g_model;
static dv365_timeline *g_tl[USERS];
static int64_t g_cut[USERS];
static float *g_ref;
static uint8_t *g_ref_blobs;
static size_t g_u_floats, g_blob_bytes;

static dv365_status embed_and_encode(dv365_workspace *ws, float *U, uint8_t *blobs, int inner)
{
    dv365_status st = dv365_model_embed(g_model, ws, USERS, (const dv365_timeline *const *)g_tl,
                                        g_cut, U, inner);
    size_t K = dv365_model_num_tokens(g_model), D = dv365_model_dim(g_model);
    for (size_t u = 0; st == DV365_OK && u < USERS; u++)
        st = dv365_blob_encode(U + u * K * D, K, D, dv365_model_fingerprint(g_model), g_cut[u],
                               DV365_Q4_GREEDY, blobs + u * g_blob_bytes, g_blob_bytes);
    return st;
}

typedef struct worker {
    pthread_t th;
    int id, mismatches;
    dv365_status st;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    dv365_workspace *ws = NULL;
    float *U = malloc(g_u_floats * sizeof(float));
    uint8_t *blobs = malloc(USERS * g_blob_bytes);
    w->st = U && blobs ? dv365_workspace_create(&ws) : DV365_E_NOMEM;
    for (int r = 0; r < ROUNDS && w->st == DV365_OK; r++) {
        w->st = embed_and_encode(ws, U, blobs, 1 + (w->id + r) % 2);
        if (w->st == DV365_OK && (memcmp(U, g_ref, g_u_floats * sizeof(float)) != 0 ||
                                  memcmp(blobs, g_ref_blobs, USERS * g_blob_bytes) != 0))
            w->mismatches++;
    }
    dv365_workspace_free(ws);
    free(U);
    free(blobs);
    return NULL;
}

static void test_shared_model_bitwise(void **state)
{
    (void)state;
    ASSERT_OK(dv365_model_init(test_source_path("configs/small.yaml"), 17, &g_model));
    const dv365_config *cfg = dv365_model_config(g_model);
    for (int u = 0; u < USERS; u++) {
        ASSERT_OK(dv365_timeline_create(cfg, &g_tl[u]));
        g_cut[u] = 1717200000 + 3600 * u;
        for (int i = 0; i < 200 * u + 10; i++) {
            int64_t t = 1717200000 - 1800 * (int64_t)((i * 37 + u) % 4000);
            uint64_t m = (uint64_t)(i * 7 + u), a = (uint64_t)(i % 13), tp = (uint64_t)(i % 5);
            int32_t act = (i + u) % 8, mt = i % 3, sf = (i / 3) % 5;
            float du = 1000.0f + (float)(i % 50) * 700.0f, dw = (float)((i * 911) % 40000);
            ASSERT_OK(dv365_timeline_append(g_tl[u], 1, &t, &m, &a, &tp, &act, &mt, &sf, &du, &dw));
        }
    }
    size_t K = dv365_model_num_tokens(g_model), D = dv365_model_dim(g_model);
    g_u_floats = USERS * K * D;
    g_blob_bytes = dv365_blob_size(K, D);
    g_ref = malloc(g_u_floats * sizeof(float));
    g_ref_blobs = malloc(USERS * g_blob_bytes);
    assert_non_null(g_ref);
    assert_non_null(g_ref_blobs);
    dv365_workspace *ws;
    ASSERT_OK(dv365_workspace_create(&ws));
    ASSERT_OK(embed_and_encode(ws, g_ref, g_ref_blobs, 1)); /* the single-threaded reference */
    dv365_workspace_free(ws);

    worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){.id = i};
        assert_int_equal(pthread_create(&w[i].th, NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(w[i].th, NULL), 0);
        if (w[i].st != DV365_OK)
            fail_msg("thread %d: status %d", i, (int)w[i].st);
        assert_int_equal(w[i].mismatches, 0);
    }
    for (int u = 0; u < USERS; u++)
        dv365_timeline_free(g_tl[u]);
    dv365_model_free(g_model);
    free(g_ref);
    free(g_ref_blobs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_model_bitwise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
