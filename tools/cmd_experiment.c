/* cmd_experiment.c — `dv365 experiment ranking`: the paper's ranking transfer
 * experiment on a world written by `dv365 synth`.
 *
 * Two downstream DLRMs (configs/downstream.yaml: a user model of the recent
 * history only) are trained on the same examples in the same order from the
 * same seed:
 *   baseline  the config as written (backbone.extra_tokens: 0);
 *   +DV365    the same config with extra_tokens E: each example also gets the
 *             user's FROZEN DV365 embedding from the store, decoded from its
 *             4-bit blob and mapped by a linear-projection adapter
 *             (K_dv*D_dv -> E*D) to E more user tokens; the adapter trains with
 *             the model (dv365_trainer_step_ex returns dloss/dtokens).
 * Both are evaluated on eval.dve: NE per binary task, MSE for regression.
 *
 * No leakage: the embedding is made once, at the START of the train window
 * (cutoff = the day of the first train label, i.e. world.txt's train_from),
 * and that same frozen embedding serves every train and eval example, so it
 * never holds an event after any label time.  An existing store generation is
 * used only if it was created no later than the first train label. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "internal.h" /* dv_rng, dv_error */
#include "optim.h"    /* dv_adam for the adapter */

int cmd_experiment(int argc, char **argv);

static const char *experiment_help =
    "usage: dv365 experiment ranking --data DIR --dv365 MODEL_DIR --store STORE_DIR\n"
    "                        [--config FILE.yaml] [--extra E] [--steps N] [--batch B]\n"
    "                        [--adapter-lr LR] [--threads T] [--seed S] [--progress]\n"
    "The ranking transfer experiment: a downstream DLRM that sees only the recent\n"
    "history (--config, default configs/downstream.yaml) vs the same model plus the\n"
    "frozen DV365 embedding of MODEL_DIR through a linear-projection adapter to E extra\n"
    "user tokens (--extra, default 4), trained on DIR/train.dve with the same examples,\n"
    "order and seed, evaluated on DIR/eval.dve: NE per binary task (relative change),\n"
    "AUC, and MSE for regression tasks.\n"
    "The embedding is read from STORE_DIR; an empty store is first filled with an\n"
    "embedding at the start of the train window (the day of the first train label),\n"
    "which then serves train and eval alike: it never sees an event after a label.\n"
    "  --steps       steps of B examples (default: one epoch of train.dve)\n"
    "  --batch       examples per step (default 64)\n"
    "  --adapter-lr  Adam learning rate of the adapter (default 0.001)\n";

/* --- data in memory -------------------------------------------------------- */

typedef struct examples {
    size_t n, n_dense, T;
    uint64_t *user, *items; /* [n], [n][3] */
    int64_t *time;
    float *dense, *labels; /* [n][n_dense], [n][T] */
} examples;

static void examples_free(examples *e)
{
    free(e->user);
    free(e->items);
    free(e->time);
    free(e->dense);
    free(e->labels);
}

static dv365_status load_examples(const char *path, examples *e)
{
    memset(e, 0, sizeof *e);
    dv365_example_reader *r;
    dv365_status st = dv365_example_reader_open(path, &r);
    if (st)
        return st;
    e->n = dv365_example_reader_count(r);
    e->n_dense = dv365_example_reader_num_dense(r);
    e->T = dv365_example_reader_num_tasks(r);
    e->user = malloc((e->n + 1) * sizeof *e->user);
    e->items = malloc((3 * e->n + 1) * sizeof *e->items);
    e->time = malloc((e->n + 1) * sizeof *e->time);
    e->dense = malloc((e->n * e->n_dense + 1) * sizeof *e->dense);
    e->labels = malloc((e->n * e->T + 1) * sizeof *e->labels);
    if (!e->user || !e->items || !e->time || !e->dense || !e->labels)
        st = dv_error(DV365_E_NOMEM, "out of memory for the %zu examples of %s", e->n, path);
    for (size_t i = 0; st == DV365_OK && i < e->n; i++) {
        int done = 0;
        st = dv365_example_reader_next(r, &e->user[i], &e->time[i], &e->items[3 * i],
                                       &e->items[3 * i + 1], &e->items[3 * i + 2],
                                       e->dense + i * e->n_dense, e->labels + i * e->T, &done);
        if (st == DV365_OK && done)
            st = dv_error(DV365_E_FORMAT, "%s ended early at example %zu", path, i);
    }
    dv365_example_reader_free(r);
    return st;
}

/* Every user of a timeline file, for one config (timelines belong to one). */
typedef struct users {
    size_t n;
    uint64_t *id; /* ascending, as the file stores them */
    dv365_timeline **tl;
} users;

static void users_free(users *u)
{
    for (size_t i = 0; u->tl && i < u->n; i++)
        dv365_timeline_free(u->tl[i]);
    free(u->tl);
    free(u->id);
}

static dv365_status load_users(const char *path, const dv365_config *cfg, users *u)
{
    memset(u, 0, sizeof *u);
    dv365_timeline_reader *r;
    dv365_status st = dv365_timeline_reader_open(path, cfg, &r);
    if (st)
        return st;
    size_t n = dv365_timeline_reader_count(r);
    u->id = malloc((n + 1) * sizeof *u->id);
    u->tl = calloc(n + 1, sizeof *u->tl);
    if (!u->id || !u->tl)
        st = dv_error(DV365_E_NOMEM, "out of memory for the %zu users of %s", n, path);
    for (size_t i = 0; st == DV365_OK && i < n; i++) {
        int done = 0;
        if ((st = dv365_timeline_create(cfg, &u->tl[i])))
            break;
        u->n = i + 1;
        st = dv365_timeline_reader_next(r, &u->id[i], u->tl[i], &done);
        if (st == DV365_OK && (done || (i > 0 && u->id[i] <= u->id[i - 1])))
            st = dv_error(DV365_E_FORMAT, "%s: users must be in ascending id order (user %zu)",
                          path, i);
    }
    dv365_timeline_reader_free(r);
    return st;
}

/* Index of user id, or SIZE_MAX. */
static size_t user_index(const users *u, uint64_t id)
{
    size_t lo = 0, hi = u->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (u->id[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < u->n && u->id[lo] == id ? lo : SIZE_MAX;
}

/* --- the two arms ------------------------------------------------------------ */

typedef struct arm {
    dv365_model *m;
    dv365_trainer *t;
    users u;
    const dv365_timeline **tls; /* [B] the batch's timelines */
} arm;

static void arm_free(arm *a)
{
    dv365_trainer_free(a->t);
    users_free(&a->u);
    dv365_model_free(a->m);
    free(a->tls);
}

/* A model of the config text (written to a temporary file for dv365_model_init). */
static dv365_status arm_init(arm *a, const char *yaml, const char *tl_path, uint64_t seed,
                             size_t B)
{
    memset(a, 0, sizeof *a);
    char path[] = "/tmp/dv365_experiment_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return dv_error(DV365_E_IO, "cannot create a temporary config file in /tmp");
    FILE *f = fdopen(fd, "w");
    int ok = f && fputs(yaml, f) >= 0;
    ok = (f ? fclose(f) == 0 : (close(fd), 0)) && ok;
    dv365_status st = ok ? dv365_model_init(path, seed, &a->m)
                         : dv_error(DV365_E_IO, "cannot write the temporary config %s", path);
    unlink(path);
    if (st || (st = dv365_trainer_create(a->m, &a->t)) ||
        (st = load_users(tl_path, dv365_model_config(a->m), &a->u)))
        return st;
    if (!(a->tls = malloc(B * sizeof *a->tls)))
        return dv_error(DV365_E_NOMEM, "out of memory");
    return DV365_OK;
}

/* The batch of examples idx[0..B) of e: the arrays the trainer takes. */
typedef struct batch {
    size_t B;
    int64_t *time;
    uint64_t *items;
    float *dense, *labels;
    size_t *user; /* user indices */
} batch;

static int fill_batch(batch *b, const examples *e, const size_t *idx, size_t B, arm *arms)
{
    b->B = B;
    for (size_t j = 0; j < B; j++) {
        size_t i = idx[j];
        b->time[j] = e->time[i];
        memcpy(b->items + 3 * j, e->items + 3 * i, 3 * sizeof *b->items);
        memcpy(b->dense + j * e->n_dense, e->dense + i * e->n_dense,
               e->n_dense * sizeof *b->dense);
        memcpy(b->labels + j * e->T, e->labels + i * e->T, e->T * sizeof *b->labels);
        size_t u = user_index(&arms[0].u, e->user[i]);
        if (u == SIZE_MAX) {
            fprintf(stderr, "dv365: experiment: user %" PRIu64 " of an example has no timeline\n",
                    e->user[i]);
            return 1;
        }
        b->user[j] = u;
        arms[0].tls[j] = arms[0].u.tl[u];
        arms[1].tls[j] = arms[1].u.tl[u]; /* same file, same order */
    }
    return 0;
}

/* Replace the first "extra_tokens: 0" of text by "extra_tokens: E". */
static char *with_extra(const char *text, size_t E)
{
    const char *key = "extra_tokens: 0";
    const char *at = strstr(text, key);
    if (!at)
        return NULL;
    size_t head = (size_t)(at - text), n = strlen(text) + 32;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%.*sextra_tokens: %zu%s", (int)head, text, E, at + strlen(key));
    return out;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0, got;
    char chunk[4096];
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (n + got + 1 > cap) {
            cap = 2 * (n + got + 1);
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        memcpy(buf + n, chunk, got);
        n += got;
    }
    fclose(f);
    if (buf)
        buf[n] = '\0';
    return buf;
}

static int on_progress(void *ctx, size_t done, size_t total)
{
    progress_show(ctx, done, total);
    return 0;
}

/* The frozen DV365 tokens [n_users, K*D] of every user of u from the store
 * (zeros for a user the store lacks; *missing counts them). */
static dv365_status load_embeddings(dv365_store *s, const dv365_model *dv, const users *u,
                                    float *emb, size_t *missing)
{
    const size_t K = dv365_model_num_tokens(dv), D = dv365_model_dim(dv);
    size_t cap = dv365_blob_size(K, D), size;
    uint8_t *blob = malloc(cap ? cap : 1);
    if (!blob)
        return dv_error(DV365_E_NOMEM, "out of memory");
    dv365_status st = DV365_OK;
    *missing = 0;
    for (size_t i = 0; st == DV365_OK && i < u->n; i++) {
        float *dst = emb + i * K * D;
        st = dv365_store_get(s, u->id[i], blob, cap, &size);
        if (st == DV365_E_NOT_FOUND) {
            memset(dst, 0, K * D * sizeof *dst);
            ++*missing;
            st = DV365_OK;
        } else if (st == DV365_OK) {
            st = dv365_blob_decode(blob, size, dv365_model_fingerprint(dv), K, D, dst);
        }
    }
    free(blob);
    return st;
}

int cmd_experiment(int argc, char **argv)
{
    if (wants_help(argc, argv) || argc < 1) {
        fputs(experiment_help, argc < 1 ? stderr : stdout);
        return argc < 1 ? EXIT_USAGE : 0;
    }
    if (strcmp(argv[0], "ranking")) {
        fprintf(stderr, "dv365: experiment: unknown experiment '%s' (ranking)\n", argv[0]);
        return EXIT_USAGE;
    }
    int force = 0, n = 0;
    char *args[256];
    for (int i = 1; i < argc && n < 256; i++) {
        if (!strcmp(argv[i], "--progress"))
            force = 1;
        else
            args[n++] = argv[i];
    }
    enum { DATA, DV, STORE, CONFIG, EXTRA, STEPS, BATCH, LR, THREADS, SEED, NOPTS };
    opt o[NOPTS] = {{"data", NULL},    {"dv365", NULL},  {"store", NULL},
                    {"config", "configs/downstream.yaml"}, {"extra", "4"},
                    {"steps", "0"},    {"batch", "64"},  {"adapter-lr", "0.001"},
                    {"threads", "1"},  {"seed", "1"}};
    const char *pos[1];
    size_t n_pos;
    uint64_t E, steps, B, threads, seed;
    char *end = NULL;
    double lr = 0;
    if (parse_opts(n, args, o, NOPTS, pos, 0, &n_pos) || !o[DATA].value || !o[DV].value ||
        !o[STORE].value || opt_u64(&o[EXTRA], &E) || opt_u64(&o[STEPS], &steps) ||
        opt_u64(&o[BATCH], &B) || opt_u64(&o[THREADS], &threads) || opt_u64(&o[SEED], &seed) ||
        E < 1 || E > 4096 || B < 1 || B > 65536 || threads < 1 || threads > 256 ||
        !(lr = strtod(o[LR].value, &end), end && *end == '\0' && lr > 0 && isfinite(lr))) {
        fputs(experiment_help, stderr);
        return EXIT_USAGE;
    }
    int rc = 0;
    char tl_path[4096], train_path[4096], eval_path[4096];
    snprintf(tl_path, sizeof tl_path, "%s/timelines.dvt", o[DATA].value);
    snprintf(train_path, sizeof train_path, "%s/train.dve", o[DATA].value);
    snprintf(eval_path, sizeof eval_path, "%s/eval.dve", o[DATA].value);

    arm arms[2];
    memset(arms, 0, sizeof arms);
    examples train = {0}, eval = {0};
    batch b = {0};
    dv365_model *dv = NULL;
    dv365_store *store = NULL;
    dv365_adapter *ad = NULL;
    dv365_workspace *ws = NULL;
    char *text = NULL, *text_e = NULL;
    size_t *order = NULL;
    float *emb = NULL, *U = NULL, *extra = NULL, *d_extra = NULL, *grad = NULL, *mom = NULL,
          *var = NULL;

    /* the downstream configs: as written, and with E extra tokens */
    if (!(text = read_text(o[CONFIG].value))) {
        fprintf(stderr, "dv365: experiment: cannot read %s\n", o[CONFIG].value);
        rc = 1;
        goto done;
    }
    if (!(text_e = with_extra(text, (size_t)E))) {
        fprintf(stderr,
                "dv365: experiment: %s must set 'extra_tokens: 0' in its backbone section "
                "(the baseline; the +DV365 variant sets it to --extra)\n",
                o[CONFIG].value);
        rc = 1;
        goto done;
    }
    TRY("train examples", load_examples(train_path, &train));
    TRY("eval examples", load_examples(eval_path, &eval));
    if (train.n == 0 || eval.n == 0 || train.T != eval.T || train.n_dense != eval.n_dense) {
        fprintf(stderr, "dv365: experiment: %s and %s must be non-empty and alike\n", train_path,
                eval_path);
        rc = 1;
        goto done;
    }
    TRY("baseline model", arm_init(&arms[0], text, tl_path, seed, (size_t)B));
    TRY("+DV365 model", arm_init(&arms[1], text_e, tl_path, seed, (size_t)B));
    const dv365_config *cfg = dv365_model_config(arms[0].m);
    const size_t T = dv365_config_num_tasks(cfg), Dd = dv365_model_dim(arms[0].m);
    if (T != train.T || dv365_config_num_dense(cfg) != train.n_dense ||
        arms[0].u.n != arms[1].u.n) {
        fprintf(stderr, "dv365: experiment: the examples have %zu labels and %zu dense "
                "features; %s wants %zu and %zu\n", train.T, train.n_dense, o[CONFIG].value, T,
                dv365_config_num_dense(cfg));
        rc = 1;
        goto done;
    }

    /* the frozen DV365 embedding, from the start of the train window */
    int64_t first = INT64_MAX;
    for (size_t i = 0; i < train.n; i++)
        first = train.time[i] < first ? train.time[i] : first;
    TRY("load DV365 model", dv365_model_load(o[DV].value, &dv));
    TRY("open store", dv365_store_open(o[STORE].value, 0, 0, &store));
    uint64_t gen;
    int64_t created;
    size_t count;
    TRY("store info", dv365_store_info(store, &gen, NULL, &created, &count, NULL, NULL));
    if (gen == 0) {
        int64_t cutoff = first - first % 86400; /* the day of the first label: train_from */
        progress_bar bar;
        progress_init(&bar, "embed", "users", force);
        dv365_generate_options gopt;
        dv365_generate_options_init(&gopt);
        gopt.nthreads = (int)threads;
        gopt.progress = on_progress;
        gopt.progress_ctx = &bar;
        TRY("embed", dv365_generate(dv, tl_path, cutoff, store, &gopt));
        TRY("store info", dv365_store_info(store, &gen, NULL, &created, &count, NULL, NULL));
        printf("embedded %zu users into %s at the start of the train window (%" PRId64 ")\n",
               count, o[STORE].value, created);
    }
    if (created > first) {
        fprintf(stderr,
                "dv365: experiment: the store's embedding (created %" PRId64 ") is newer than "
                "the first train label (%" PRId64 "): it would leak future events; use an "
                "empty store or embed with --cutoff %" PRId64 "\n",
                created, first, first - first % 86400);
        rc = 1;
        goto done;
    }
    const size_t Kv = dv365_model_num_tokens(dv), Dv = dv365_model_dim(dv), KDv = Kv * Dv;
    const size_t ED = (size_t)E * Dd;
    size_t missing = 0;
    if (!(emb = malloc((arms[0].u.n * KDv + 1) * sizeof *emb))) {
        rc = fail_status("embeddings", dv_error(DV365_E_NOMEM, "out of memory"));
        goto done;
    }
    TRY("read embeddings", load_embeddings(store, dv, &arms[0].u, emb, &missing));

    /* the adapter and its optimizer */
    TRY("adapter", dv365_adapter_create(DV365_ADAPTER_LINEAR, "dv365_ranking", Kv, Dv, ED,
                                        seed + 7, &ad));
    const size_t np = dv365_adapter_num_params(ad);
    dv_adam adam;
    TRY("adapter optimizer", dv_adam_init(&adam, true, 0.9, 0.999, 1e-8, 0.0)); /* no decay */
    TRY("workspace", dv365_workspace_create(&ws));
    b.time = malloc(B * sizeof *b.time);
    b.items = malloc(3 * B * sizeof *b.items);
    b.dense = malloc((B * train.n_dense + 1) * sizeof *b.dense);
    b.labels = malloc(B * T * sizeof *b.labels);
    b.user = malloc(B * sizeof *b.user);
    order = malloc(train.n * sizeof *order);
    U = malloc(B * KDv * sizeof *U);
    extra = malloc(B * ED * sizeof *extra);
    d_extra = malloc(B * ED * sizeof *d_extra);
    grad = malloc(np * sizeof *grad);
    mom = calloc(np, sizeof *mom);
    var = calloc(np, sizeof *var);
    if (!b.time || !b.items || !b.dense || !b.labels || !b.user || !order || !U || !extra ||
        !d_extra || !grad || !mom || !var) {
        rc = fail_status("buffers", dv_error(DV365_E_NOMEM, "out of memory"));
        goto done;
    }
    printf("ranking transfer: downstream %s (D=%zu, K=%zu own tokens) vs +%zu DV365 tokens "
           "(K=%zu x D=%zu frozen, linear adapter); %zu train / %zu eval examples; "
           "%zu of %zu users without an embedding\n",
           o[CONFIG].value, Dd, dv365_model_num_tokens(arms[0].m), (size_t)E, Kv, Dv, train.n,
           eval.n, missing, arms[0].u.n);

    /* train both arms on the same shuffled examples */
    if (steps == 0)
        steps = (train.n + B - 1) / B;
    dv_rng rng;
    dv_rng_seed(&rng, seed);
    size_t pos_in = train.n;
    progress_bar bar;
    progress_init(&bar, "train", "steps", force);
    double t0 = now_s(), loss0 = 0, loss1 = 0;
    for (uint64_t s = 0; s < steps; s++) {
        if (pos_in + B > train.n) { /* a new epoch: reshuffle (Fisher-Yates) */
            for (size_t i = 0; i < train.n; i++)
                order[i] = i;
            for (size_t i = train.n - 1; i > 0; i--) {
                size_t j = (size_t)(dv_rng_next(&rng) % (i + 1)), tmp = order[i];
                order[i] = order[j];
                order[j] = tmp;
            }
            pos_in = 0;
        }
        size_t nb = train.n < B ? train.n : (size_t)B;
        if ((rc = fill_batch(&b, &train, order + pos_in, nb, arms)))
            goto done;
        pos_in += nb;
        TRY("baseline step", dv365_trainer_step(arms[0].t, nb, arms[0].tls, b.time, b.items,
                                                b.dense, b.labels, &loss0, (int)threads));
        for (size_t j = 0; j < nb; j++)
            memcpy(U + j * KDv, emb + b.user[j] * KDv, KDv * sizeof *U);
        TRY("adapter", dv365_adapter_forward(ad, ws, nb, U, extra, (int)threads));
        TRY("+DV365 step", dv365_trainer_step_ex(arms[1].t, nb, arms[1].tls, b.time, b.items,
                                                 b.dense, b.labels, extra, d_extra, &loss1,
                                                 (int)threads));
        memset(grad, 0, np * sizeof *grad);
        TRY("adapter", dv365_adapter_backward(ad, ws, nb, U, d_extra, grad, NULL, (int)threads));
        TRY("adapter update", dv_adam_begin_step(&adam));
        TRY("adapter update",
            dv_adam_update(&adam, lr, dv365_adapter_params(ad), grad, mom, var, np));
        snprintf(bar.extra, sizeof bar.extra, "loss %.4f / %.4f", loss0, loss1);
        progress_show(&bar, (size_t)s + 1, (size_t)steps);
    }
    printf("trained %" PRIu64 " steps of %" PRIu64 " in %.1f s (last loss: baseline %.4f, "
           "+DV365 %.4f)\n", steps, B, now_s() - t0, loss0, loss1);

    /* evaluate both on eval.dve, in file order */
    dv365_trainer_eval_reset(arms[0].t);
    dv365_trainer_eval_reset(arms[1].t);
    for (size_t i = 0; i < eval.n; i += B) {
        size_t nb = eval.n - i < B ? eval.n - i : (size_t)B;
        for (size_t j = 0; j < nb; j++)
            order[j] = i + j;
        if ((rc = fill_batch(&b, &eval, order, nb, arms)))
            goto done;
        TRY("baseline eval", dv365_trainer_eval_batch(arms[0].t, nb, arms[0].tls, b.time,
                                                      b.items, b.dense, b.labels, NULL,
                                                      (int)threads));
        for (size_t j = 0; j < nb; j++)
            memcpy(U + j * KDv, emb + b.user[j] * KDv, KDv * sizeof *U);
        TRY("adapter", dv365_adapter_forward(ad, ws, nb, U, extra, (int)threads));
        TRY("+DV365 eval", dv365_trainer_eval_batch_ex(arms[1].t, nb, arms[1].tls, b.time,
                                                       b.items, b.dense, b.labels, extra, NULL,
                                                       (int)threads));
    }

    printf("\neval.dve (%zu examples), seed %" PRIu64 ":\n", eval.n, seed);
    printf("  %-12s %-6s %10s %10s %9s %9s %9s\n", "task", "metric", "baseline", "+DV365",
           "change %", "AUC base", "AUC +DV");
    for (size_t k = 0; k < T; k++) {
        double ne0, ne1, auc0, auc1, mse0, mse1;
        TRY("eval", dv365_trainer_eval_result(arms[0].t, k, &ne0, &auc0, &mse0));
        TRY("eval", dv365_trainer_eval_result(arms[1].t, k, &ne1, &auc1, &mse1));
        int bin = dv365_config_task_is_binary(cfg, k);
        double v0 = bin ? ne0 : mse0, v1 = bin ? ne1 : mse1;
        printf("  %-12s %-6s %10.4f %10.4f %+9.2f", dv365_config_task_name(cfg, k),
               bin ? "NE" : "MSE", v0, v1, 100.0 * (v1 - v0) / v0);
        if (bin)
            printf(" %9.4f %9.4f\n", auc0, auc1);
        else
            printf(" %9s %9s\n", "-", "-");
    }
done:
    free(emb);
    free(U);
    free(extra);
    free(d_extra);
    free(grad);
    free(mom);
    free(var);
    free(order);
    free(b.time);
    free(b.items);
    free(b.dense);
    free(b.labels);
    free(b.user);
    dv365_adapter_free(ad);
    dv365_workspace_free(ws);
    dv365_store_close(store);
    dv365_model_free(dv);
    arm_free(&arms[0]);
    arm_free(&arms[1]);
    examples_free(&train);
    examples_free(&eval);
    free(text);
    free(text_e);
    return rc;
}
