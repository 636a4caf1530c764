/* cmd_bench.c — `dv365 bench`: how many users per second this machine
 * embeds with a model, end to end (timeline -> pool -> encode -> blob).
 * For sizing a fleet; the peer comparisons live in bench/ (meson test
 * --benchmark). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "synth_user.h"

int cmd_bench(int argc, char **argv);

static const char *bench_help =
    "usage: dv365 bench [--config FILE.yaml | --model DIR] [--users N] [--events E]\n"
    "                   [--batch B] [--threads T] [--seed S]\n"
    "Embed N synthetic users of E events each (defaults 128 x 40000) in batches of B\n"
    "(default 64) with T threads (default 1) and print users/s for pooling alone and\n"
    "for the whole path: pool + encode + 4-bit blob.  The first batch warms up and\n"
    "is not timed.  Default model: a fresh one from configs/default.yaml.\n";

int cmd_bench(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        fputs(bench_help, stdout);
        return 0;
    }
    opt o[] = {{"config", "configs/default.yaml"}, {"model", NULL}, {"users", "128"},
               {"events", "40000"}, {"batch", "64"}, {"threads", "1"}, {"seed", "1"}};
    const char *pos[1];
    size_t n_pos;
    uint64_t users, events, batch, threads, seed;
    if (parse_opts(argc, argv, o, 7, pos, 0, &n_pos) || opt_u64(&o[2], &users) ||
        opt_u64(&o[3], &events) || opt_u64(&o[4], &batch) || opt_u64(&o[5], &threads) ||
        opt_u64(&o[6], &seed) || users < 1 || batch < 1 || threads < 1 || threads > 256) {
        fputs(bench_help, stderr);
        return EXIT_USAGE;
    }
    if (batch > users)
        batch = users;
    int rc = 0;
    dv365_model *model = NULL;
    dv365_workspace *ws = NULL;
    dv365_timeline **tls = NULL;
    int64_t *cutoffs = NULL;
    float *U = NULL, *X = NULL;
    uint8_t *blobs = NULL;
    const int64_t now = 1767225600;
    if (o[1].value)
        TRY("load model", dv365_model_load(o[1].value, &model));
    else
        TRY("init model", dv365_model_init(o[0].value, seed, &model));
    const dv365_config *cfg = dv365_model_config(model);
    size_t N = dv365_model_num_slices(model), D = dv365_model_dim(model),
           K = dv365_model_num_tokens(model), blob_size = dv365_blob_size(K, D);
    tls = calloc(users, sizeof *tls);
    cutoffs = malloc(users * sizeof *cutoffs);
    U = malloc(batch * K * D * sizeof *U);
    X = malloc(N * D * sizeof *X);
    blobs = malloc(batch * blob_size);
    if (!tls || !cutoffs || !U || !X || !blobs) {
        fprintf(stderr, "dv365: out of memory\n");
        rc = 1;
        goto done;
    }
    for (size_t u = 0; u < users; u++) {
        synth_events ev;
        if (synth_user(cfg, seed * 1000003 + u, (size_t)events, now, 1000000, &ev)) {
            fprintf(stderr, "dv365: out of memory\n");
            rc = 1;
            goto done;
        }
        dv365_status st = dv365_timeline_create(cfg, &tls[u]);
        if (st == DV365_OK)
            st = synth_events_append(&ev, tls[u]);
        synth_events_free(&ev);
        TRY("timeline", st);
        cutoffs[u] = now;
    }
    TRY("workspace", dv365_workspace_create(&ws));
    TRY("workspace", dv365_workspace_reserve(ws, dv365_embed_workspace_size(
                                                     model, batch, events, (int)threads)));
    /* warm-up: page in the tables, grow nothing afterwards */
    TRY("embed", dv365_model_embed(model, ws, batch, (const dv365_timeline *const *)tls, cutoffs,
                                   U, (int)threads));
    double t0 = now_s();
    for (size_t u = 0; u < users; u++)
        TRY("pool", dv365_pool_forward(dv365_model_pooler(model), ws, tls[u], now, X, NULL, NULL));
    double t_pool = now_s() - t0;
    t0 = now_s();
    for (size_t u = 0; u < users; u += batch) {
        size_t b = users - u < batch ? users - u : batch;
        TRY("embed", dv365_model_embed(model, ws, b, (const dv365_timeline *const *)tls + u,
                                       cutoffs + u, U, (int)threads));
        for (size_t i = 0; i < b; i++)
            TRY("blob", dv365_blob_encode(U + i * K * D, K, D, dv365_model_fingerprint(model), now,
                                          DV365_Q4_MINMAX, blobs + i * blob_size, blob_size));
    }
    double t_all = now_s() - t0;
    printf("model N=%zu D=%zu K=%zu; %" PRIu64 " users x %" PRIu64 " events, batch %" PRIu64
           ", %" PRIu64 " thread%s\n",
           N, D, K, users, events, batch, threads, threads > 1 ? "s" : "");
    printf("%-28s %10s %12s\n", "stage", "users/s", "ms/user");
    printf("%-28s %10.1f %12.2f\n", "pool (1 thread)", (double)users / t_pool,
           1e3 * t_pool / (double)users);
    printf("%-28s %10.1f %12.2f\n", "pool + encode + blob", (double)users / t_all,
           1e3 * t_all / (double)users);
    printf("%zu bytes per user in the store; %.1f GB per million users\n", blob_size,
           (double)blob_size * 1e6 / 1e9);
done:
    if (tls)
        for (size_t u = 0; u < users; u++)
            dv365_timeline_free(tls[u]);
    free(tls);
    free(cutoffs);
    free(U);
    free(X);
    free(blobs);
    dv365_workspace_free(ws);
    dv365_model_free(model);
    return rc;
}
