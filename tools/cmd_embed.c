/* cmd_embed.c — `dv365 embed`: every user of a timeline file through the
 * model into a new generation of the embedding store. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cmd_embed(int argc, char **argv);

static const char *embed_help =
    "usage: dv365 embed --model DIR --timelines FILE.dvt --store DIR --cutoff UNIX_SECONDS\n"
    "                   [--threads T] [--batch B] [--resume] [--progress]\n"
    "Embed every user of FILE.dvt with the history strictly before the cutoff, quantize\n"
    "the tokens to 4-bit blobs and write them as a new generation of the store (LMDB,\n"
    "created if missing), switched in atomically when complete.  --resume continues a\n"
    "generation an interrupted run left behind.  The output does not depend on\n"
    "--threads or --batch.\n";

static int on_progress(void *ctx, size_t done, size_t total)
{
    progress_show(ctx, done, total);
    return 0;
}

int cmd_embed(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        fputs(embed_help, stdout);
        return 0;
    }
    int resume = 0, force = 0;
    char *args[256];
    int n = take_resume_progress(argc, argv, args, 256, &resume, &force);
    opt o[] = {{"model", NULL},  {"timelines", NULL}, {"store", NULL},
               {"cutoff", NULL}, {"threads", "1"},    {"batch", "64"}};
    const char *pos[1];
    size_t n_pos;
    uint64_t cutoff, threads, batch;
    if (parse_opts(n, args, o, 6, pos, 0, &n_pos) || !o[0].value || !o[1].value || !o[2].value ||
        !o[3].value || opt_u64(&o[3], &cutoff) || opt_u64(&o[4], &threads) ||
        opt_u64(&o[5], &batch) || threads < 1 || threads > 256 || batch < 1) {
        fputs(embed_help, stderr);
        return EXIT_USAGE;
    }
    int rc = 0;
    dv365_model *model = NULL;
    dv365_store *store = NULL;
    uint8_t *blob = NULL;
    TRY("load model", dv365_model_load(o[0].value, &model));
    TRY("open store", dv365_store_open(o[2].value, 0, 0, &store));

    progress_bar bar;
    progress_init(&bar, "embed", "users", force);
    dv365_generate_options opt;
    dv365_generate_options_init(&opt);
    opt.nthreads = (int)threads;
    opt.batch = (size_t)batch;
    opt.resume = resume;
    opt.progress = on_progress;
    opt.progress_ctx = &bar;
    double t0 = now_s();
    TRY("embed", dv365_generate(model, o[1].value, (int64_t)cutoff, store, &opt));
    double t = now_s() - t0;

    uint64_t gen, fp;
    int64_t created;
    size_t count, k, d;
    TRY("store info", dv365_store_info(store, &gen, &fp, &created, &count, &k, &d));
    size_t blob_size = dv365_blob_size(k, d);
    printf("embedded %zu users in %.1f s (%.1f users/s, %d thread%s)\n", count, t,
           (double)count / t, (int)threads, threads > 1 ? "s" : "");
    printf("store %s: generation %" PRIu64 ", model %016" PRIx64 ", created %" PRId64
           ", %zu x %zu tokens, %zu bytes per user (the paper: 7,888)\n",
           o[2].value, gen, fp, created, k, d, blob_size);
done:
    free(blob);
    dv365_store_close(store);
    dv365_model_free(model);
    return rc;
}
