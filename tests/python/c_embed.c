/* c_embed.c — the C side of the Python binding's "same numbers" test.
 *
 *   c_embed MODEL_DIR | --config FILE.yaml SEED
 *
 * Builds the deterministic timelines of tests/python/test_c_python.py
 * (events from a 64-bit LCG, below), embeds users 0..2 in one batch, and
 * prints as hex floats (%a) / hex bytes, one item per line:
 *   fingerprint <hex>
 *   U <b> <k> <d values>      per user and token
 *   X <slice> <d values>      pooled slices of user 0
 *   counts <N values>         events per slice of user 0
 *   q4 <k> <row bytes>        minmax 4-bit rows of user 0's U
 *   q4g <k> <row bytes>       greedy 4-bit rows of user 0's U
 *   blob <bytes>              blob of user 0 (created = the cutoff)
 * Only the public API, linked against the shared library. */
#include <dv365.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USERS 3
#define CUTOFF INT64_C(1767225600)

static uint64_t lcg(uint64_t *s)
{
    *s = *s * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
    return *s >> 33;
}

static int fail(const char *what, dv365_status st)
{
    fprintf(stderr, "c_embed: %s: %s (%d)\n", what, dv365_last_error(), (int)st);
    return 1;
}

/* User u: 50 + 40u events; each field a function of the LCG stream seeded
 * with u (the Python test mirrors this exactly). */
static dv365_status make_timeline(const dv365_config *cfg, unsigned u, dv365_timeline **out)
{
    size_t n = 50 + 40 * (size_t)u;
    size_t na = dv365_config_vocab_size(cfg, DV365_VOCAB_ACTION);
    size_t nm = dv365_config_vocab_size(cfg, DV365_VOCAB_MEDIA_TYPE);
    size_t ns = dv365_config_vocab_size(cfg, DV365_VOCAB_SURFACE);
    int64_t *time = malloc(n * sizeof *time);
    uint64_t *ids = malloc(3 * n * sizeof *ids);
    int32_t *codes = malloc(3 * n * sizeof *codes);
    float *ms = malloc(2 * n * sizeof *ms);
    dv365_status st = DV365_E_NOMEM;
    if (time && ids && codes && ms) {
        uint64_t s = u + 1;
        for (size_t i = 0; i < n; i++) {
            time[i] = CUTOFF - (int64_t)(lcg(&s) % (120 * 86400)) + 3600;
            ids[i] = lcg(&s) % 5000;
            ids[n + i] = lcg(&s) % 700;
            ids[2 * n + i] = lcg(&s) % 90;
            codes[i] = (int32_t)(lcg(&s) % na);
            codes[n + i] = (int32_t)(lcg(&s) % nm);
            codes[2 * n + i] = (int32_t)(lcg(&s) % ns);
            ms[i] = (float)(1000 + lcg(&s) % 60000);
            ms[n + i] = (float)(lcg(&s) % 90000);
        }
        if ((st = dv365_timeline_create(cfg, out)) == DV365_OK) {
            st = dv365_timeline_append(*out, n, time, ids, ids + n, ids + 2 * n, codes, codes + n,
                                       codes + 2 * n, ms, ms + n);
            if (st != DV365_OK) {
                dv365_timeline_free(*out);
                *out = NULL;
            }
        }
    }
    free(time);
    free(ids);
    free(codes);
    free(ms);
    return st;
}

static void print_floats(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        printf(" %a", (double)x[i]);
    printf("\n");
}

static void print_bytes(const uint8_t *b, size_t n)
{
    printf(" ");
    for (size_t i = 0; i < n; i++)
        printf("%02x", b[i]);
    printf("\n");
}

int main(int argc, char **argv)
{
    dv365_model *model = NULL;
    dv365_status st;
    if (argc == 4 && !strcmp(argv[1], "--config"))
        st = dv365_model_init(argv[2], strtoull(argv[3], NULL, 10), &model);
    else if (argc == 2)
        st = dv365_model_load(argv[1], &model);
    else {
        fprintf(stderr, "usage: c_embed MODEL_DIR | --config FILE.yaml SEED\n");
        return 2;
    }
    if (st != DV365_OK)
        return fail("model", st);
    const dv365_config *cfg = dv365_model_config(model);
    size_t N = dv365_model_num_slices(model), D = dv365_model_dim(model);
    size_t K = dv365_model_num_tokens(model), rb = dv365_q4_row_bytes(D);
    size_t blob_n = dv365_blob_size(K, D);
    dv365_timeline *tl[USERS] = {NULL};
    dv365_workspace *ws = NULL;
    float *U = malloc(USERS * K * D * sizeof *U), *X = malloc(N * D * sizeof *X);
    uint32_t *counts = malloc(N * sizeof *counts);
    uint8_t *q = malloc(K * rb), *blob = malloc(blob_n);
    int rc = 1;
    if (!U || !X || !counts || !q || !blob) {
        fprintf(stderr, "c_embed: out of memory\n");
        goto out;
    }
    for (unsigned u = 0; u < USERS; u++)
        if ((st = make_timeline(cfg, u, &tl[u])) != DV365_OK) {
            rc = fail("timeline", st);
            goto out;
        }
    if ((st = dv365_workspace_create(&ws)) != DV365_OK) {
        rc = fail("workspace", st);
        goto out;
    }
    int64_t cutoffs[USERS] = {CUTOFF, CUTOFF, CUTOFF - 86400};
    if ((st = dv365_model_embed(model, ws, USERS, (const dv365_timeline *const *)tl, cutoffs, U,
                                1)) != DV365_OK) {
        rc = fail("embed", st);
        goto out;
    }
    printf("fingerprint %016" PRIx64 "\n", dv365_model_fingerprint(model));
    for (size_t b = 0; b < USERS; b++)
        for (size_t k = 0; k < K; k++) {
            printf("U %zu %zu", b, k);
            print_floats(U + (b * K + k) * D, D);
        }
    if ((st = dv365_pool_forward(dv365_model_pooler(model), ws, tl[0], CUTOFF, X, counts,
                                 NULL)) != DV365_OK) {
        rc = fail("pool", st);
        goto out;
    }
    for (size_t i = 0; i < N; i++) {
        printf("X %zu", i);
        print_floats(X + i * D, D);
    }
    printf("counts");
    for (size_t i = 0; i < N; i++)
        printf(" %" PRIu32, counts[i]);
    printf("\n");
    const char *tags[2] = {"q4", "q4g"};
    for (int m = 0; m < 2; m++) {
        if ((st = dv365_q4_quantize(U, K, D, (dv365_q4_method)m, q, K * rb)) != DV365_OK) {
            rc = fail("q4", st);
            goto out;
        }
        for (size_t k = 0; k < K; k++) {
            printf("%s %zu", tags[m], k);
            print_bytes(q + k * rb, rb);
        }
    }
    if ((st = dv365_blob_encode(U, K, D, dv365_model_fingerprint(model), CUTOFF, DV365_Q4_MINMAX,
                                blob, blob_n)) != DV365_OK) {
        rc = fail("blob", st);
        goto out;
    }
    printf("blob");
    print_bytes(blob, blob_n);
    rc = 0;
out:
    for (unsigned u = 0; u < USERS; u++)
        dv365_timeline_free(tl[u]);
    dv365_workspace_free(ws);
    dv365_model_free(model);
    free(U);
    free(X);
    free(counts);
    free(q);
    free(blob);
    return rc;
}
