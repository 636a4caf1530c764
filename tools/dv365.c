/* dv365 — the command-line tool of libdv365.
 *
 *   dv365 <command> [options]      (dv365 <command> --help for each)
 *
 * Every command returns 0 on success, 1 on a library or I/O error (the
 * library's message is printed), 2 on a usage error. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "dv365.h"
#include "synth_user.h"

int cmd_synth(int argc, char **argv); /* cmd_synth.c */

/* --- inspect ------------------------------------------------------------ */

static const char *inspect_help =
    "usage: dv365 inspect config FILE.yaml\n"
    "       dv365 inspect model DIR\n"
    "       dv365 inspect blob FILE\n"
    "       dv365 inspect store DIR\n"
    "Print what a config, a model directory, an embedding blob or a store holds.\n";

static void print_config(const dv365_config *cfg)
{
    size_t n = dv365_config_num_slices(cfg);
    printf("dim D            %zu\n", dv365_config_dim(cfg));
    printf("slices N         %zu\n", n);
    printf("vocab            %zu actions, %zu media types, %zu surfaces\n",
           dv365_config_vocab_size(cfg, DV365_VOCAB_ACTION),
           dv365_config_vocab_size(cfg, DV365_VOCAB_MEDIA_TYPE),
           dv365_config_vocab_size(cfg, DV365_VOCAB_SURFACE));
    printf("tables           %zu\n", dv365_config_num_tables(cfg));
    double mib = 0;
    for (size_t t = 0; t < dv365_config_num_tables(cfg); t++) {
        size_t rows = dv365_config_table_rows(cfg, t);
        mib += (double)rows * (double)dv365_config_dim(cfg) * 4.0 / 1048576.0;
        printf("  %-22s %10zu rows\n", dv365_config_table_name(cfg, t), rows);
    }
    printf("table memory     %.1f MiB\n", mib);
    printf("slice names     ");
    for (size_t i = 0; i < n; i++)
        printf("%s%s", i % 4 ? "  " : "\n  ", dv365_config_slice_name(cfg, i));
    printf("\n");
}

static int cmd_inspect(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        fputs(inspect_help, stdout);
        return 0;
    }
    if (argc != 2) {
        fputs(inspect_help, stderr);
        return EXIT_USAGE;
    }
    int rc = 0;
    dv365_config *cfg = NULL;
    dv365_model *model = NULL;
    unsigned char *blob = NULL;
    if (!strcmp(argv[0], "config")) {
        TRY("inspect config", dv365_config_load(argv[1], &cfg));
        print_config(cfg);
    } else if (!strcmp(argv[0], "model")) {
        TRY("inspect model", dv365_model_load(argv[1], &model));
        print_config(dv365_model_config(model));
        printf("encoder params   %zu\n", dv365_encoder_num_params(dv365_model_encoder(model)));
        printf("tokens K         %zu\n", dv365_model_num_tokens(model));
        printf("fingerprint      %016" PRIx64 "\n", dv365_model_fingerprint(model));
    } else if (!strcmp(argv[0], "store")) {
        dv365_store *store = NULL;
        uint64_t gen, fp;
        int64_t created;
        size_t count, k, d;
        TRY("inspect store", dv365_store_open(argv[1], DV365_STORE_READONLY, 0, &store));
        dv365_status st = dv365_store_info(store, &gen, &fp, &created, &count, &k, &d);
        if (st == DV365_OK)
            printf("generation       %" PRIu64 "\nusers            %zu\nK x D            %zu x %zu\n"
                   "bytes per user   %zu\nmodel            %016" PRIx64
                   "\ncreated          %" PRId64 "\n",
                   gen, count, k, d, dv365_blob_size(k, d), fp, created);
        dv365_store_close(store);
        TRY("inspect store", st);
    } else if (!strcmp(argv[0], "blob")) {
        FILE *f = fopen(argv[1], "rb");
        if (!f) {
            fprintf(stderr, "dv365: cannot open %s: %s\n", argv[1], strerror(errno));
            return 1;
        }
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fseek(f, 0, SEEK_SET);
        blob = malloc(len > 0 ? (size_t)len : 1);
        size_t got = blob ? fread(blob, 1, (size_t)(len > 0 ? len : 0), f) : 0;
        fclose(f);
        uint64_t fp;
        int64_t created;
        size_t k, d;
        TRY("inspect blob", dv365_blob_inspect(blob, got, &fp, &created, &k, &d));
        printf("bytes            %zu\nK x D            %zu x %zu\nfingerprint      %016" PRIx64
               "\ncreated          %" PRId64 "\n",
               got, k, d, fp, created);
    } else {
        fputs(inspect_help, stderr);
        return EXIT_USAGE;
    }
done:
    free(blob);
    dv365_model_free(model);
    dv365_config_free(cfg);
    return rc;
}

/* --- init --------------------------------------------------------------- */

static const char *init_help =
    "usage: dv365 init --config FILE.yaml --out DIR [--seed S]\n"
    "Create a model directory with freshly initialized (seeded) weights.\n";

static int cmd_init(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        fputs(init_help, stdout);
        return 0;
    }
    opt o[] = {{"config", NULL}, {"out", NULL}, {"seed", "1"}};
    const char *pos[1];
    size_t n_pos;
    uint64_t seed;
    if (parse_opts(argc, argv, o, 3, pos, 0, &n_pos) || !o[0].value || !o[1].value ||
        opt_u64(&o[2], &seed)) {
        fputs(init_help, stderr);
        return EXIT_USAGE;
    }
    int rc = 0;
    dv365_model *model = NULL;
    TRY("init", dv365_model_init(o[0].value, seed, &model));
    TRY("save", dv365_model_save(model, o[1].value));
    printf("wrote %s (fingerprint %016" PRIx64 ")\n", o[1].value, dv365_model_fingerprint(model));
done:
    dv365_model_free(model);
    return rc;
}

/* --- demo: one synthetic user through the whole serving path ------------ */

static const char *demo_help =
    "usage: dv365 demo [--config FILE.yaml | --model DIR] [--events N] [--seed S]\n"
    "                  [--threads T]\n"
    "Generate one synthetic user with a year of history (default 40000 events),\n"
    "slice and pool it, encode it into K tokens, quantize them into a 4-bit blob\n"
    "and decode it again; print what came out of each stage and how long it took.\n"
    "Without --model a fresh seeded model is made from the config\n"
    "(default configs/default.yaml).\n";

static int cmd_demo(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        fputs(demo_help, stdout);
        return 0;
    }
    opt o[] = {{"config", "configs/default.yaml"}, {"model", NULL}, {"events", "40000"},
               {"seed", "1"}, {"threads", "1"}};
    const char *pos[1];
    size_t n_pos;
    uint64_t n_events, seed, threads;
    if (parse_opts(argc, argv, o, 5, pos, 0, &n_pos) || opt_u64(&o[2], &n_events) ||
        opt_u64(&o[3], &seed) || opt_u64(&o[4], &threads) || threads < 1 || threads > 256) {
        fputs(demo_help, stderr);
        return EXIT_USAGE;
    }
    int rc = 0;
    dv365_model *model = NULL;
    dv365_timeline *tl = NULL;
    dv365_workspace *ws = NULL;
    synth_events ev = {0};
    float *X = NULL, *U = NULL, *U2 = NULL;
    uint32_t *counts = NULL;
    uint8_t *blob = NULL;
    const int64_t now = 1767225600; /* 2026-01-01 */

    double t0 = now_s();
    if (o[1].value)
        TRY("load model", dv365_model_load(o[1].value, &model));
    else
        TRY("init model", dv365_model_init(o[0].value, seed, &model));
    double t_model = now_s() - t0;
    const dv365_config *cfg = dv365_model_config(model);
    size_t N = dv365_model_num_slices(model), D = dv365_model_dim(model),
           K = dv365_model_num_tokens(model);
    printf("model            N=%zu slices, D=%zu, K=%zu tokens, fingerprint %016" PRIx64
           " (%.2f s)\n",
           N, D, K, dv365_model_fingerprint(model), t_model);

    if (synth_user(cfg, seed, (size_t)n_events, now, 1000000, &ev)) {
        fprintf(stderr, "dv365: out of memory\n");
        rc = 1;
        goto done;
    }
    TRY("timeline", dv365_timeline_create(cfg, &tl));
    TRY("timeline", synth_events_append(&ev, tl));
    size_t explicit_n = 0;
    for (size_t i = 0; i < ev.n; i++) {
        int32_t view;
        if (dv365_config_code(cfg, DV365_VOCAB_ACTION, "view", &view) == DV365_OK &&
            ev.action[i] != view)
            explicit_n++;
    }
    printf("timeline         %zu events over 365 days, %zu explicit\n", dv365_timeline_size(tl),
           explicit_n);

    X = malloc(N * D * sizeof *X);
    U = malloc(K * D * sizeof *U);
    U2 = malloc(K * D * sizeof *U2);
    counts = malloc(N * sizeof *counts);
    size_t blob_size = dv365_blob_size(K, D);
    blob = malloc(blob_size);
    if (!X || !U || !U2 || !counts || !blob) {
        fprintf(stderr, "dv365: out of memory\n");
        rc = 1;
        goto done;
    }
    TRY("workspace", dv365_workspace_create(&ws));
    TRY("workspace", dv365_workspace_reserve(
                         ws, dv365_embed_workspace_size(model, 1, ev.n, (int)threads)));

    /* pooling alone, to show the slices */
    t0 = now_s();
    TRY("pool", dv365_pool_forward(dv365_model_pooler(model), ws, tl, now, X, counts, NULL));
    double t_pool = now_s() - t0;
    size_t empty = 0, total = 0, busiest = 0;
    for (size_t s = 0; s < N; s++) {
        empty += counts[s] == 0;
        total += counts[s];
        if (counts[s] > counts[busiest])
            busiest = s;
    }
    printf("pool             %.2f ms: %zu slices, %zu (event, slice) memberships, %zu empty;\n"
           "                 busiest slice %s (%u events)\n",
           1e3 * t_pool, N, total, empty, dv365_config_slice_name(cfg, busiest), counts[busiest]);

    /* pool + encode */
    const dv365_timeline *tls[1] = {tl};
    int64_t cutoff[1] = {now};
    t0 = now_s();
    TRY("embed", dv365_model_embed(model, ws, 1, tls, cutoff, U, (int)threads));
    double t_embed = now_s() - t0;
    double norm = 0;
    for (size_t i = 0; i < K * D; i++)
        norm += (double)U[i] * U[i];
    printf("embed            %.2f ms (pool + encode, %d thread%s): U is %zu x %zu, |U| = %.3f\n",
           1e3 * t_embed, (int)threads, threads > 1 ? "s" : "", K, D, sqrt(norm));

    t0 = now_s();
    TRY("blob", dv365_blob_encode(U, K, D, dv365_model_fingerprint(model), now, DV365_Q4_MINMAX,
                                  blob, blob_size));
    TRY("blob", dv365_blob_decode(blob, blob_size, dv365_model_fingerprint(model), K, D, U2));
    double t_blob = now_s() - t0;
    double err = 0, dot = 0, n2 = 0;
    for (size_t i = 0; i < K * D; i++) {
        err += ((double)U[i] - U2[i]) * ((double)U[i] - U2[i]);
        dot += (double)U[i] * U2[i];
        n2 += (double)U2[i] * U2[i];
    }
    printf("4-bit blob       %zu bytes (%.2f ms encode + decode): RMSE %.4f, cosine %.5f\n",
           blob_size, 1e3 * t_blob, sqrt(err / (double)(K * D)), dot / sqrt(norm * n2));
done:
    free(X);
    free(U);
    free(U2);
    free(counts);
    free(blob);
    synth_events_free(&ev);
    dv365_workspace_free(ws);
    dv365_timeline_free(tl);
    dv365_model_free(model);
    return rc;
}

/* --- main ---------------------------------------------------------------- */

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_encode(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_experiment(int argc, char **argv);

static const command commands[] = {
    {"bench", cmd_bench, "users/s this machine embeds with a model, end to end"},
    {"demo", cmd_demo, "one synthetic user through pool, encode and the 4-bit blob"},
    {"embed", cmd_embed, "embed every user of a timeline file into the store"},
    {"encode", cmd_encode, "encode pooled inputs x from safetensors into tokens u"},
    {"eval", cmd_eval, "evaluate a model in its backbone on labelled examples"},
    {"experiment", cmd_experiment, "the paper's experiments (ranking, staleness, stability, retrieval, ablations)"},
    {"init", cmd_init, "create a model directory with seeded weights"},
    {"inspect", cmd_inspect, "show a config, a model directory or a blob"},
    {"synth", cmd_synth, "generate the synthetic world (timelines, examples, truth)"},
    {"train", cmd_train, "train the model from a data directory, checkpointing"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: dv365 <command> [options]   (libdv365 %s)\n\ncommands:\n",
            dv365_version_string());
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "  %-10s %s\n", "version", "print the library version");
    fprintf(f, "\n'dv365 <command> --help' explains each command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("libdv365 %s\n", dv365_version_string());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 2, argv + 2);
    fprintf(stderr, "dv365: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
