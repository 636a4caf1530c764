/* adapt_bench.c — the request-time read path of a ranking model: decode a
 * user's 4-bit blob (58 x 256) and project it with the linear adapter
 * (K*D = 14848 -> P = 64), against PyTorch eager doing the same work.
 *
 * usage: adapt_bench PEER_SCRIPT PYTHON [NTHREADS]
 *
 * 512 users with random embeddings are encoded into blobs (MINMAX).  We time
 * dv365_blob_decode + dv365_adapter_forward
 *   - batch 1: one user per call, over many users (latency p50 / p99);
 *   - batch 64: 64 blobs decoded into one U [64, K, D] and one forward
 *     (per-user latency = batch time / 64, p50 / p99 over batches).
 * The peer (bench/adapt_peer.py) reads the same blob bytes and weights and
 * runs torch.ops.quantized.embedding_bag_4bit_unpack on each blob's rows +
 * nn.Linear, same thread count.  Outputs of both sides are compared.
 * Last line: {"bench": "adapt", "unit": "users/s", ...} for batch 1 (the
 * per-request path): users/s = 1 / p50 latency. */
#include "benchutil.h"
#include "internal.h"
#include "safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define K 58
#define D 256
#define P 64
#define USERS 512
#define BATCH 64
#define REPS1 4000 /* batch-1 calls timed */
#define REPS64 300 /* batch-64 calls timed */

/* q-quantile (0..1) of v (sorted in place), nearest rank. */
static double quantile(double *v, size_t n, double q)
{
    qsort(v, n, sizeof *v, cmp_double);
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

int main(int argc, char **argv)
{
    if (argc < 3)
        DIE("usage: %s PEER_SCRIPT PYTHON [NTHREADS]", argv[0]);
    int nt = argc > 3 ? atoi(argv[3]) : 1;
    if (nt < 1)
        nt = 1;

    /* --- users, blobs, adapter ------------------------------------------ */
    const uint64_t fp = UINT64_C(0x5eed0d365); /* a model fingerprint */
    size_t bs = dv365_blob_size(K, D);
    uint8_t *blobs = malloc(USERS * bs);
    float *U = malloc((size_t)BATCH * K * D * sizeof *U);
    float *y = malloc((size_t)BATCH * P * sizeof *y);
    float *y_first = malloc((size_t)BATCH * P * sizeof *y_first);
    if (!blobs || !U || !y || !y_first)
        DIE("out of memory");
    dv_rng rng;
    dv_rng_seed(&rng, 2025);
    for (size_t u = 0; u < USERS; u++) {
        for (size_t i = 0; i < (size_t)K * D; i++)
            U[i] = (float)dv_rng_normal(&rng);
        if (dv365_blob_encode(U, K, D, fp, 1750000000, DV365_Q4_MINMAX, blobs + u * bs, bs))
            DIE("blob encode");
    }
    dv365_adapter *ad;
    dv365_workspace *ws;
    if (dv365_adapter_create(DV365_ADAPTER_LINEAR, "rank", K, D, P, 7, &ad) ||
        dv365_workspace_create(&ws) ||
        dv365_workspace_reserve(ws, dv365_adapter_workspace_size(ad, BATCH)))
        DIE("adapter");
    /* Non-zero biases, as after training. */
    float *par = dv365_adapter_params(ad);
    for (size_t i = (size_t)P * K * D; i < (size_t)P * K * D + P; i++)
        par[i] = (float)(0.1 * dv_rng_normal(&rng));

    /* Reference outputs of the first BATCH users (also the peer's check). */
    for (size_t b = 0; b < BATCH; b++)
        if (dv365_blob_decode(blobs + b * bs, bs, fp, K, D, U + b * K * D))
            DIE("decode");
    if (dv365_adapter_forward(ad, ws, BATCH, U, y_first, nt))
        DIE("forward");

    /* --- batch 1 ------------------------------------------------------- */
    double *lat1 = malloc(REPS1 * sizeof *lat1), *lat64 = malloc(REPS64 * sizeof *lat64);
    if (!lat1 || !lat64)
        DIE("out of memory");
    for (size_t r = 0; r < REPS1 + 200; r++) { /* 200 warm-up calls */
        size_t u = r % USERS;
        double t = now();
        if (dv365_blob_decode(blobs + u * bs, bs, fp, K, D, U) ||
            dv365_adapter_forward(ad, ws, 1, U, y, nt))
            DIE("batch 1");
        t = now() - t;
        if (r >= 200)
            lat1[r - 200] = t;
    }
    double b1_p50 = quantile(lat1, REPS1, 0.5), b1_p99 = quantile(lat1, REPS1, 0.99);
    /* The two halves alone (p50), to see where the time goes. */
    for (size_t r = 0; r < REPS1; r++) {
        size_t u = r % USERS;
        double t = now();
        if (dv365_blob_decode(blobs + u * bs, bs, fp, K, D, U))
            DIE("decode");
        lat1[r] = now() - t;
    }
    double dec_p50 = quantile(lat1, REPS1, 0.5);
    for (size_t r = 0; r < REPS1; r++) {
        double t = now();
        if (dv365_adapter_forward(ad, ws, 1, U, y, nt))
            DIE("forward");
        lat1[r] = now() - t;
    }
    double fwd_p50 = quantile(lat1, REPS1, 0.5);

    /* --- batch 64 ------------------------------------------------------ */
    for (size_t r = 0; r < REPS64 + 10; r++) {
        size_t u0 = (r * BATCH) % USERS;
        double t = now();
        for (size_t b = 0; b < BATCH; b++)
            if (dv365_blob_decode(blobs + ((u0 + b) % USERS) * bs, bs, fp, K, D,
                                  U + b * K * D))
                DIE("decode");
        if (dv365_adapter_forward(ad, ws, BATCH, U, y, nt))
            DIE("batch 64");
        t = now() - t;
        if (r >= 10)
            lat64[r - 10] = t / BATCH;
    }
    double b64_p50 = quantile(lat64, REPS64, 0.5), b64_p99 = quantile(lat64, REPS64, 0.99);

    /* --- the peer -------------------------------------------------------- */
    char dir[] = "/tmp/dv365_adapt_bench_XXXXXX", path[4200], cmd[8192];
    if (!mkdtemp(dir))
        DIE("mkdtemp");
    dv_st_writer *w;
    size_t sb[2] = {USERS, bs}, sw[2] = {P, (size_t)K * D}, sbias[1] = {P},
           sy[2] = {BATCH, P};
    if (dv_st_writer_create(&w) || dv_st_writer_add(w, "blobs", DV_DTYPE_U8, 2, sb, blobs) ||
        dv_st_writer_add(w, "weight", DV_DTYPE_F32, 2, sw, par) ||
        dv_st_writer_add(w, "bias", DV_DTYPE_F32, 1, sbias, par + (size_t)P * K * D) ||
        dv_st_writer_add(w, "y_first", DV_DTYPE_F32, 2, sy, y_first))
        DIE("writer");
    const char *keys[] = {"K", "D", "header", "reps1", "reps64", "batch"};
    size_t vals[] = {K, D, DV365_BLOB_HEADER_BYTES, REPS1, REPS64, BATCH};
    put_sizes(w, keys, vals, 6);
    snprintf(path, sizeof path, "%s/inputs.safetensors", dir);
    if (dv_st_writer_write(w, path))
        DIE("write inputs");
    dv_st_writer_free(w);
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' %d", argv[2], argv[1], path, nt);
    FILE *p = popen(cmd, "r");
    double pb1_p50 = 0, pb1_p99 = 0, pb64_p50 = 0, pb64_p99 = 0, maxdiff = -1;
    char line[256];
    while (p && fgets(line, sizeof line, p)) {
        sscanf(line, "batch1 %lf %lf", &pb1_p50, &pb1_p99);
        sscanf(line, "batch64 %lf %lf", &pb64_p50, &pb64_p99);
        sscanf(line, "maxdiff %lf", &maxdiff);
    }
    int rc = p ? pclose(p) : -1;
    unlink(path);
    rmdir(dir);
    if (rc != 0 || pb1_p50 <= 0 || pb64_p50 <= 0)
        DIE("peer failed (%s)", cmd);

    /* --- report ---------------------------------------------------------- */
    printf("decode a %dx%d 4-bit blob (%zu B) + linear adapter %d -> %d; %d thread(s); "
           "%d users\n", K, D, bs, K * D, P, nt, USERS);
    printf("PyTorch output vs ours (first %d users): max rel diff %.2e\n\n", BATCH, maxdiff);
    printf("%-30s %11s %11s %11s %11s %8s\n", "per-user latency (us)", "ours p50", "ours p99",
           "torch p50", "torch p99", "p50 x");
    printf("%-30s %11.2f %11.2f %11.2f %11.2f %8.2f\n", "batch 1", b1_p50 * 1e6, b1_p99 * 1e6,
           pb1_p50 * 1e6, pb1_p99 * 1e6, pb1_p50 / b1_p50);
    printf("%-30s %11.2f %11.2f %11.2f %11.2f %8.2f\n", "batch 64 (batch time / 64)",
           b64_p50 * 1e6, b64_p99 * 1e6, pb64_p50 * 1e6, pb64_p99 * 1e6, pb64_p50 / b64_p50);
    printf("%-30s %11.2f\n", "  of which blob decode", dec_p50 * 1e6);
    printf("%-30s %11.2f\n", "  of which adapter forward", fwd_p50 * 1e6);
    printf("%-30s %11.0f %11s %11.0f %11s\n", "users/s batch 1 (1/p50)", 1 / b1_p50, "",
           1 / pb1_p50, "");
    printf("%-30s %11.0f %11s %11.0f %11s\n", "users/s batch 64 (1/p50)", 1 / b64_p50, "",
           1 / pb64_p50, "");
    printf("{\"bench\": \"adapt\", \"unit\": \"users/s\", \"ours\": %.1f, \"peer\": %.1f, "
           "\"ratio\": %.3f}\n",
           1 / b1_p50, 1 / pb1_p50, pb1_p50 / b1_p50);

    dv365_adapter_free(ad);
    dv365_workspace_free(ws);
    free(blobs), free(U), free(y), free(y_first), free(lat1), free(lat64);
    return 0;
}
