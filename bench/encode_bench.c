/* encode_bench.c — the encoder against PyTorch eager and against bare BLIS.
 *
 * usage: encode_bench PEER_SCRIPT PYTHON [NTHREADS]
 *
 * Default encoder sizes (N=200, D=256, 3 blocks x 1 layer, 4 heads, FFN
 * 1024, stride 2, K_lce=8 -> 58 tokens).  Measured in one run, same weights,
 * same inputs, same thread count (default 1):
 *   - encode, batch 1: latency of dv365_encode vs the PyTorch module
 *   - encode, batch 64: users/s
 *   - forward + backward, batch 64 (gradients of every weight and of X)
 *   - GFLOP/s of the batch-64 encode against the same list of GEMMs run
 *     alone, through dv_sgemm and through bare BLIS sgemm (its defaults).
 * Times are the fastest of several runs on both sides (see fastest()).
 * The peer (bench/encode_peer.py) loads the weights this program saves.
 * Last line: {"bench": "encode", "unit": "users/s", "ours", "peer", "ratio"}
 * for batch 64. */
#include "benchutil.h"
#include "config.h"
#include "encoder.h"
#include "gemm.h"
#include "internal.h"
#include "safetensors.h"

/* blis.h trips -Wextra in its own inline helpers. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wsign-compare"
#include <blis.h>
#pragma GCC diagnostic pop

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define CHUNK 16 /* users per GEMM group in dv365_encode (ENC_CHUNK) */

/* The fastest of n runs: on a shared machine other processes only ever add
 * time, so the minimum is the most repeatable figure (the peer does the same). */
static double fastest(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[0];
}

/* The GEMMs of one dv365_encode call on B users, as (m, n, k, transB). */
typedef struct gemm_shape {
    size_t m, n, k;
    bool tb;
} gemm_shape;

static size_t list_gemms(const struct dv365_config *c, size_t B, gemm_shape *out)
{
    const dv_encoder_cfg *e = &c->encoder;
    size_t N = c->n_slices, D = c->dim, F = e->ffn, hd = D / e->heads, n = 0;
    for (size_t b0 = 0; b0 < B; b0 += CHUNK) {
        size_t nb = DV_MIN((size_t)CHUNK, B - b0), T = N;
        for (size_t blk = 0; blk < e->blocks; blk++) {
            if (blk > 0)
                T = (T + e->stride - 1) / e->stride;
            for (size_t l = 0; l < e->layers_per_block; l++) {
                size_t R = nb * T;
                out[n++] = (gemm_shape){R, 3 * D, D, true};
                for (size_t u = 0; u < nb * e->heads; u++) {
                    out[n++] = (gemm_shape){T, T, hd, true};
                    out[n++] = (gemm_shape){T, hd, T, false};
                }
                out[n++] = (gemm_shape){R, D, D, true};
                out[n++] = (gemm_shape){R, F, D, true};
                out[n++] = (gemm_shape){R, D, F, true};
            }
        }
        for (size_t u = 0; u < nb && e->k_lce; u++)
            out[n++] = (gemm_shape){e->k_lce, D, N, false};
    }
    return n;
}

/* Run the list through dv_sgemm, as the encoder does. */
static double dv_sgemm_seconds(const gemm_shape *g, size_t n, float *A, float *Bm, float *C,
                               int nt)
{
    double t = now();
    for (size_t i = 0; i < n; i++)
        dv_sgemm(false, g[i].tb, g[i].m, g[i].n, g[i].k, 1.0f, A, g[i].k, Bm,
                 g[i].tb ? g[i].k : g[i].n, 0.0f, C, g[i].n, nt);
    return now() - t;
}

/* Run the list with bare BLIS (default runtime: its own kernels, small-matrix
 * path on). */
static double bare_blis_seconds(const gemm_shape *g, size_t n, float *A, float *Bm, float *C,
                                int nt)
{
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(nt, &rntm);
    float one = 1.0f, zero = 0.0f;
    double t = now();
    for (size_t i = 0; i < n; i++) {
        dim_t m = (dim_t)g[i].m, nn = (dim_t)g[i].n, k = (dim_t)g[i].k;
        if (g[i].tb) /* B stored [n, k] as a weight matrix */
            bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, m, nn, k, &one, A, k, 1, Bm, 1, k,
                         &zero, C, nn, 1, NULL, &rntm);
        else
            bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, m, nn, k, &one, A, k, 1, Bm, nn, 1,
                         &zero, C, nn, 1, NULL, &rntm);
    }
    return now() - t;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s PEER_SCRIPT PYTHON [NTHREADS]\n", argv[0]);
        return 2;
    }
    int nt = argc > 3 ? atoi(argv[3]) : 1;
    if (nt < 1)
        nt = 1;
    struct dv365_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.dim = 256;
    cfg.n_slices = 200;
    cfg.encoder = (dv_encoder_cfg){3, 1, 4, 1024, 2, 8, 0.02f, 0};
    const size_t N = cfg.n_slices, D = cfg.dim;

    dv365_encoder *enc;
    dv365_workspace *ws;
    if (dv365_encoder_create(&cfg, 1, &enc) || dv365_workspace_create(&ws))
        DIE("encoder_create");
    size_t K = dv365_encoder_num_tokens(enc), np = dv365_encoder_num_params(enc);
    size_t nx = BATCH * N * D, nu = BATCH * K * D;
    float *X = malloc(nx * 4), *U = malloc(nu * 4), *dU = malloc(nu * 4);
    float *G = malloc(np * 4), *dX = malloc(nx * 4);
    float *acts = malloc(dv_encoder_acts_floats(enc, BATCH) * 4);
    if (!X || !U || !dU || !G || !dX || !acts)
        DIE("out of memory");
    dv_rng rng;
    dv_rng_seed(&rng, 2);
    for (size_t i = 0; i < nx; i++)
        X[i] = (float)dv_rng_normal(&rng);
    for (size_t i = 0; i < nu; i++)
        dU[i] = (float)dv_rng_normal(&rng);

    /* --- ours ------------------------------------------------------------ */
    double t[30];
    for (int i = 0; i < 3; i++)
        if (dv365_encode(enc, ws, 1, X, U, nt))
            DIE("encode");
    for (int i = 0; i < 30; i++) {
        double t0 = now();
        dv365_encode(enc, ws, 1, X, U, nt);
        t[i] = now() - t0;
    }
    double ours_b1 = fastest(t, 30);
    dv365_encode(enc, ws, BATCH, X, U, nt);
    for (int i = 0; i < 5; i++) {
        double t0 = now();
        dv365_encode(enc, ws, BATCH, X, U, nt);
        t[i] = now() - t0;
    }
    double ours_b64 = fastest(t, 5);
    for (int i = 0; i < 4; i++) { /* the first one warms up */
        double t0 = now();
        memset(G, 0, np * 4);
        memset(dX, 0, nx * 4);
        if (dv_encoder_forward_train(enc, BATCH, X, U, acts, nt) ||
            dv_encoder_backward(enc, ws, BATCH, X, acts, dU, G, dX, nt))
            DIE("train step");
        t[i] = now() - t0;
    }
    double ours_train = fastest(t + 1, 3);
    dv365_encode(enc, ws, BATCH, X, U, nt); /* the output the peer compares with */

    /* --- bare BLIS on the same GEMMs ------------------------------------ */
    gemm_shape *g = malloc(20000 * sizeof *g);
    size_t ng = list_gemms(&cfg, BATCH, g);
    double flops = 0;
    size_t big = 0;
    for (size_t i = 0; i < ng; i++) {
        flops += 2.0 * (double)g[i].m * (double)g[i].n * (double)g[i].k;
        big = DV_MAX(big, DV_MAX(g[i].m * g[i].k, DV_MAX(g[i].k * g[i].n, g[i].m * g[i].n)));
    }
    float *A = calloc(big, 4), *Bm = calloc(big, 4), *C = calloc(big, 4);
    bare_blis_seconds(g, ng, A, Bm, C, nt);
    for (int i = 0; i < 5; i++)
        t[i] = bare_blis_seconds(g, ng, A, Bm, C, nt);
    double blis_s = fastest(t, 5);
    for (int i = 0; i < 5; i++)
        t[i] = dv_sgemm_seconds(g, ng, A, Bm, C, nt);
    double dvg_s = fastest(t, 5);

    /* --- peer ------------------------------------------------------------ */
    char dir[] = "/tmp/dv365_encode_bench_XXXXXX", path[512], cmd[2048];
    if (!mkdtemp(dir))
        DIE("mkdtemp");
    snprintf(path, sizeof path, "%s/weights.safetensors", dir);
    if (dv365_encoder_save(enc, path))
        DIE("save");
    dv_st_writer *w;
    size_t sx[3] = {BATCH, N, D}, su[3] = {BATCH, K, D};
    if (dv_st_writer_create(&w) || dv_st_writer_add(w, "x", DV_DTYPE_F32, 3, sx, X) ||
        dv_st_writer_add(w, "du", DV_DTYPE_F32, 3, su, dU))
        DIE("writer");
    const char *keys[] = {"N", "D", "blocks", "layers", "heads", "ffn", "stride", "k_lce"};
    size_t vals[] = {N, D, cfg.encoder.blocks, cfg.encoder.layers_per_block, cfg.encoder.heads,
                     cfg.encoder.ffn, cfg.encoder.stride, cfg.encoder.k_lce};
    put_sizes(w, keys, vals, 8);
    snprintf(path, sizeof path, "%s/inputs.safetensors", dir);
    if (dv_st_writer_write(w, path))
        DIE("write inputs");
    dv_st_writer_free(w);
    if (dv_st_writer_create(&w) || dv_st_writer_add(w, "u", DV_DTYPE_F32, 3, su, U))
        DIE("writer");
    snprintf(path, sizeof path, "%s/u.safetensors", dir);
    if (dv_st_writer_write(w, path))
        DIE("write u");
    dv_st_writer_free(w);

    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' %d", argv[2], argv[1], dir, nt);
    FILE *p = popen(cmd, "r");
    double peer_b1 = 0, peer_b64 = 0, peer_train = 0, maxdiff = -1;
    char line[256];
    while (p && fgets(line, sizeof line, p)) {
        sscanf(line, "batch1 %lf", &peer_b1);
        sscanf(line, "batch64 %lf", &peer_b64);
        sscanf(line, "train64 %lf", &peer_train);
        sscanf(line, "maxdiff %lf", &maxdiff);
    }
    int rc = p ? pclose(p) : -1;
    const char *files[] = {"weights", "inputs", "u"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s.safetensors", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
    if (rc != 0 || peer_b64 <= 0)
        DIE("peer failed (%s)", cmd);

    /* --- report ----------------------------------------------------------- */
    double ours_b1_ms = ours_b1 * 1e3, ours_ups = BATCH / ours_b64;
    double ours_tr = BATCH / ours_train;
    printf("encoder N=%zu D=%zu blocks=%zu heads=%zu ffn=%zu stride=%zu k_lce=%zu -> K=%zu; "
           "%d thread(s); sgemm kernel %s\n",
           N, D, cfg.encoder.blocks, cfg.encoder.heads, cfg.encoder.ffn, cfg.encoder.stride,
           cfg.encoder.k_lce, K, nt, dv_gemm_kernel_name());
    printf("PyTorch output vs ours: max rel diff %.2e\n\n", maxdiff);
    printf("%-34s %12s %12s %8s\n", "work", "libdv365", "PyTorch", "ratio");
    printf("%-34s %12.3f %12.3f %8.2f\n", "encode batch 1 latency (ms)", ours_b1_ms, peer_b1,
           peer_b1 / ours_b1_ms);
    printf("%-34s %12.1f %12.1f %8.2f\n", "encode batch 64 (users/s)", ours_ups, peer_b64,
           ours_ups / peer_b64);
    printf("%-34s %12.1f %12.1f %8.2f\n", "forward+backward batch 64 (users/s)", ours_tr,
           peer_train, ours_tr / peer_train);
    printf("\nGEMM work of a batch-64 encode: %zu GEMMs, %.2f GFLOP\n", ng, flops * 1e-9);
    printf("%-34s %12.1f\n", "encode, whole (GFLOP/s)", flops / ours_b64 * 1e-9);
    printf("%-34s %12.1f\n", "same GEMMs through dv_sgemm", flops / dvg_s * 1e-9);
    printf("%-34s %12.1f\n", "same GEMMs, bare BLIS sgemm", flops / blis_s * 1e-9);
    printf("%-34s %12.0f %%\n", "whole encode / dv_sgemm GEMMs", 100.0 * dvg_s / ours_b64);
    printf("%-34s %12.0f %%\n", "whole encode / bare BLIS GEMMs", 100.0 * blis_s / ours_b64);
    printf("{\"bench\": \"encode\", \"unit\": \"users/s\", \"ours\": %.2f, \"peer\": %.2f, "
           "\"ratio\": %.3f}\n",
           ours_ups, peer_b64, ours_ups / peer_b64);

    dv365_encoder_free(enc);
    dv365_workspace_free(ws);
    free(X), free(U), free(dU), free(G), free(dX), free(acts), free(g), free(A), free(Bm),
        free(C);
    return 0;
}
