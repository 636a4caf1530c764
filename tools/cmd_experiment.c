/* cmd_experiment.c — `dv365 experiment ranking|staleness|stability|retrieval|
 * ablations`: the paper's experiments on a world written by `dv365 synth`
 * (docs/experiments.md).
 *
 * Every downstream comparison trains its arms on the same examples in the
 * same order from the same seed (exp_run_arm) and repeats over --seeds
 * seeds.  DV365 embeddings come from banks made at each midnight of the
 * label window (exp_bank): an example gets the embedding made at midnight
 * of its label day (daily refresh) or one frozen earlier, never a later
 * one, so no label ever sees its own future. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "exp.h"
#include "internal.h" /* dv_error */

int cmd_experiment(int argc, char **argv);

static const char *experiment_help =
    "usage: dv365 experiment ranking   --data DIR --dv365 MODEL_DIR [options]\n"
    "       dv365 experiment staleness --data DIR --dv365 MODEL_DIR [options]\n"
    "       dv365 experiment stability --data DIR --dv365 MODEL_DIR [options]\n"
    "       dv365 experiment retrieval --data DIR --dv365 MODEL_DIR [options]\n"
    "       dv365 experiment ablations --data DIR [--base FILE.yaml] [options]\n"
    "The paper's experiments on a world of `dv365 synth` (DIR), with the trained DV365\n"
    "model MODEL_DIR (`dv365 train`); each prints markdown tables (docs/experiments.md).\n"
    "  ranking    a downstream DLRM that sees only the recent history (--config) vs the\n"
    "             same model + the DV365 tokens through a linear-projection adapter, and\n"
    "             two controls (an untrained DV365 model, a random vector per user):\n"
    "             NE / MSE per task, on the same users and on held-out users\n"
    "  staleness  + DV365 refreshed daily vs frozen at the first eval day: NE gain by day\n"
    "  stability  cosine similarity of each user's embeddings made 7 days apart\n"
    "  retrieval  a two-tower model without / with DV365 (plain, GateNet): HitRate@1/@10\n"
    "  ablations  DV365 variants of --base trained here (gap 0, mean pooling, LCE only,\n"
    "             vanilla Transformer at equal K) and 4-bit vs float: NE gain of each\n"
    "options:\n"
    "  --config F     downstream ranking config (default configs/downstream.yaml)\n"
    "  --base F       ablations: the DV365 config varied (default configs/small.yaml)\n"
    "  --dv-epochs N  ablations: epochs of DV365 training per variant on DIR/pretrain.dve\n"
    "                 (DIR/train.dve if the world has none; default 1)\n"
    "  --epochs N     downstream epochs over train.dve (ranking) or its positives\n"
    "                 (retrieval) (default 1)\n"
    "  --seeds N      repeat every comparison with seeds S..S+N-1 (default 1)\n"
    "  --seed S       first seed (default 1)\n"
    "  --extra E      DV365 tokens after the adapter (default 4)\n"
    "  --batch B      examples per step (default 64)\n"
    "  --adapter-lr   Adam learning rate of the adapter (default 0.001)\n"
    "  --store DIR    staleness: the frozen arm reads its eval embeddings from this store\n"
    "                 (`dv365 embed --cutoff` at the first eval midnight, by this model)\n"
    "  --threads T    threads (default 1); --progress forces the progress bars\n";

typedef struct exp_opts {
    const char *data, *dv, *config, *base, *store;
    uint64_t dv_epochs, epochs, seeds, seed, extra, batch, threads;
    double lr;
    int progress;
} exp_opts;

static int parse(int argc, char **argv, exp_opts *x)
{
    char *args[256];
    int n = take_resume_progress(argc, argv, args, 256, &(int){0}, &x->progress);
    enum { DATA, DV, CONFIG, BASE, DVEP, EPOCHS, SEEDS, SEED, EXTRA, BATCH, LR, THREADS, STORE,
           NOPTS };
    opt o[NOPTS] = {{"data", NULL},       {"dv365", NULL},     {"config", "configs/downstream.yaml"},
                    {"base", "configs/small.yaml"},           {"dv-epochs", "1"},
                    {"epochs", "1"},      {"seeds", "1"},      {"seed", "1"},
                    {"extra", "4"},       {"batch", "64"},     {"adapter-lr", "0.001"},
                    {"threads", "1"},     {"store", NULL}};
    const char *pos[1];
    size_t n_pos;
    char *end = NULL;
    if (parse_opts(n, args, o, NOPTS, pos, 0, &n_pos) || !o[DATA].value ||
        opt_u64(&o[DVEP], &x->dv_epochs) || opt_u64(&o[EPOCHS], &x->epochs) ||
        opt_u64(&o[SEEDS], &x->seeds) || opt_u64(&o[SEED], &x->seed) ||
        opt_u64(&o[EXTRA], &x->extra) || opt_u64(&o[BATCH], &x->batch) ||
        opt_u64(&o[THREADS], &x->threads) || x->extra < 1 || x->extra > 4096 ||
        x->batch < 1 || x->batch > 65536 || x->threads < 1 || x->threads > 256 ||
        x->seeds < 1 || x->seeds > 100 || x->epochs < 1 || x->epochs > 1000 ||
        x->dv_epochs > 1000 ||
        !(x->lr = strtod(o[LR].value, &end), end && *end == '\0' && x->lr > 0 && isfinite(x->lr)))
        return -1;
    x->data = o[DATA].value;
    x->dv = o[DV].value;
    x->config = o[CONFIG].value;
    x->base = o[BASE].value;
    x->store = o[STORE].value;
    return 0;
}

static exp_settings settings_of(const exp_opts *x, const char *config_text)
{
    exp_settings s = {.config_text = config_text,
                      .extra = (size_t)x->extra,
                      .batch = (size_t)x->batch,
                      .epochs = x->epochs,
                      .adapter_lr = x->lr,
                      .nthreads = (int)x->threads,
                      .progress = x->progress};
    return s;
}

/* Relative change in percent of v against the baseline b (negative = better). */
static double rel(double v, double b) { return 100.0 * (v - b) / b; }

/* Relative change of metric m against base over the tasks of r: task k alone,
 * or (k = r->T) the mean over the binary tasks. */
static double change(const exp_result *r, const double *m, const double *base, size_t k)
{
    if (k < r->T)
        return rel(m[k], base[k]);
    double sum = 0;
    size_t n = 0;
    for (size_t t = 0; t < r->T; t++)
        if (r->binary[t]) {
            sum += rel(m[t], base[t]);
            n++;
        }
    return n ? sum / (double)n : NAN;
}

/* Mean and sd over seeds of arm a's change against arm 0 (res[arm * seeds +
 * seed]), on eval day d (d = SIZE_MAX: the whole eval set), for change()'s k. */
static double seed_change(const exp_result *res, size_t seeds, size_t a, size_t d, size_t k,
                          double *sd)
{
    double g[100], m;
    for (size_t i = 0; i < seeds; i++) {
        const exp_result *r = &res[a * seeds + i], *b = &res[i];
        g[i] = d == SIZE_MAX ? change(r, r->metric, b->metric, k)
                             : change(r, r->day_metric[d], b->day_metric[d], k);
    }
    exp_mean_sd(g, seeds, &m, sd);
    return m;
}

static void print_pm(double mean, double sd, size_t n, const char *fmt)
{
    printf(fmt, mean);
    if (n > 1)
        printf(" ± %.2f", sd);
}

/* Run every arm for every seed: res[a * seeds + s]. */
static dv365_status run_arms(const exp_world *w, const exp_settings *s, const exp_arm *arms,
                             size_t n_arms, const exp_opts *x, exp_result *res)
{
    for (size_t a = 0; a < n_arms; a++)
        for (uint64_t k = 0; k < x->seeds; k++) {
            exp_result *r = &res[a * x->seeds + k];
            dv365_status st = exp_run_arm(w, s, &arms[a], x->seed + k, r);
            if (st)
                return st;
            fprintf(stderr, "  %-28s seed %-3" PRIu64 " trained in %.1f s%s\n", arms[a].name,
                    x->seed + k, r->train_s, r->skipped ? " (some steps skipped)" : "");
        }
    return DV365_OK;
}

/* The per-task table of a ranking run: every arm's NE (MSE), and for arm
 * a > 0 its relative change against arm 0 (paired by seed). */
static void print_ranking_table(const exp_arm *arms, size_t n_arms, const exp_result *res,
                                size_t seeds)
{
    const exp_result *r0 = &res[0];
    printf("| task | metric | %s |", arms[0].name);
    for (size_t a = 1; a < n_arms; a++)
        printf(" %s | Δ %% vs %s |", arms[a].name, arms[0].name);
    printf("\n|---|---|---:|");
    for (size_t a = 1; a < n_arms; a++)
        printf("---:|---:|");
    printf("\n");
    for (size_t k = 0; k <= r0->T; k++) { /* row T: the mean over the binary tasks */
        if (k == r0->T)
            printf("| **mean over binary tasks** | NE | |");
        else
            printf("| %s | %s |", r0->name[k], r0->binary[k] ? "NE" : "MSE");
        for (size_t a = 0; a < n_arms; a++) {
            double v[100], m, sd, dsd, dm = a ? seed_change(res, seeds, a, SIZE_MAX, k, &dsd) : 0;
            if (k == r0->T) {
                if (a > 0) {
                    printf(" | **");
                    print_pm(dm, dsd, seeds, "%+.2f");
                    printf("** |");
                }
                continue;
            }
            for (size_t i = 0; i < seeds; i++)
                v[i] = res[a * seeds + i].metric[k];
            exp_mean_sd(v, seeds, &m, &sd);
            printf(" %.4f |", m);
            if (a > 0) {
                print_pm(dm, dsd, seeds, " %+.2f");
                printf(" |");
            }
        }
        printf("\n");
    }
}

/* The trained model of x->dv and its untrained twin (same config, fresh weights). */
static dv365_status load_dv(const exp_opts *x, dv365_model **dv, dv365_model **control)
{
    if (!x->dv)
        return dv_error(DV365_E_INVALID, "--dv365 MODEL_DIR is required");
    dv365_status st = dv365_model_load(x->dv, dv);
    if (st || !control)
        return st;
    /* a checkpoint directory names its newest step in LATEST */
    char path[4200], step[256] = "";
    snprintf(path, sizeof path, "%s/LATEST", x->dv);
    FILE *f = fopen(path, "r");
    if (f) {
        if (!fgets(step, sizeof step, f))
            step[0] = '\0';
        fclose(f);
        step[strcspn(step, "\r\n")] = '\0';
    }
    snprintf(path, sizeof path, "%s/%s%sconfig.yaml", x->dv, step, step[0] ? "/" : "");
    return dv365_model_init(path, x->seed + 1000, control);
}

static int ranking(const exp_opts *x, const exp_world *w, exp_settings *s)
{
    enum { NA = 4 };
    int rc = 0;
    dv365_model *dv = NULL, *ctl = NULL;
    exp_bank bank = {0}, bank_ctl = {0}, ident = {0};
    exp_result *res = NULL;
    TRY("DV365 model", load_dv(x, &dv, &ctl));
    TRY("embed", exp_bank_build(dv, w->timelines, w->train_from, w->n_days, 1, s->nthreads,
                                x->progress, &bank));
    TRY("embed (untrained)", exp_bank_build(ctl, w->timelines, w->train_from, w->n_days, 1,
                                            s->nthreads, x->progress, &bank_ctl));
    TRY("identity control", exp_bank_identity(&bank, x->seed, &ident));
    const exp_arm arms[NA] = {{.name = "baseline"},
                              {.name = "+DV365", .bank = &bank},
                              {.name = "+untrained DV365", .bank = &bank_ctl},
                              {.name = "+user id", .bank = &ident}};
    if (!(res = calloc(NA * x->seeds, sizeof *res))) {
        rc = fail_status("results", dv_error(DV365_E_NOMEM, "out of memory"));
        goto done;
    }
    printf("## Ranking transfer\n\n");
    printf("Downstream `%s` (recent history only) trained %" PRIu64 " epoch(s). +DV365: the "
           "K=%zu x D=%zu tokens (4-bit, refreshed daily) through a linear adapter to %zu "
           "tokens. Controls: +untrained DV365, the tokens of the same DV365 config never "
           "trained; +user id, one fixed random vector per user through the same adapter: it "
           "tells users apart and nothing else, as a user-id feature would, and shows how much "
           "of a same-users gain is memorizing users. Δ = relative change "
           "(negative = better), mean%s over seeds %" PRIu64 "..%" PRIu64 ".\n",
           x->config, x->epochs, bank.K, bank.D, s->extra, x->seeds > 1 ? " ± sd" : "",
           x->seed, x->seed + x->seeds - 1);
    for (int h = 0; h < 2; h++) {
        s->held_out = h;
        TRY("ranking", run_arms(w, s, arms, NA, x, res));
        printf("\n### %s: %zu train / %zu eval examples\n\n",
               h ? "Held-out users (a quarter of the users, never seen downstream; all their "
                   "train.dve and eval.dve examples evaluated)"
                 : "Same users (train window, then eval window)",
               res[0].n_train, res[0].n_eval);
        print_ranking_table(arms, NA, res, (size_t)x->seeds);
    }
done:
    free(res);
    exp_bank_free(&bank);
    exp_bank_free(&bank_ctl);
    exp_bank_free(&ident);
    dv365_model_free(dv);
    dv365_model_free(ctl);
    return rc;
}

static int staleness(const exp_opts *x, const exp_world *w, exp_settings *s)
{
    int rc = 0;
    dv365_model *dv = NULL;
    exp_bank bank = {0}, stored = {0};
    exp_result *res = NULL;
    size_t missing = 0;
    TRY("DV365 model", load_dv(x, &dv, NULL));
    TRY("embed", exp_bank_build(dv, w->timelines, w->train_from, w->n_days, 1, s->nthreads,
                                x->progress, &bank));
    if (x->store) {
        TRY("store", exp_bank_from_store(x->store, dv, &bank, &stored, &missing));
        if (stored.day0 != w->eval_from) {
            fprintf(stderr, "dv365: experiment: the store's embedding was made at %" PRId64
                    "; the frozen arm wants the one made at the first eval midnight, %" PRId64
                    " (dv365 embed --cutoff %" PRId64 ")\n", stored.day0, w->eval_from,
                    w->eval_from);
            rc = 1;
            goto done;
        }
    }
    exp_arm arms[3] = {{.name = "baseline"},
                       {.name = "+DV365 daily", .bank = &bank},
                       {.name = "+DV365 frozen", .bank = &bank, .eval_policy = EXP_FROZEN,
                        .eval_frozen_at = w->eval_from, .eval_bank = x->store ? &stored : NULL}};
    if (!(res = calloc(3 * x->seeds, sizeof *res))) {
        rc = fail_status("results", dv_error(DV365_E_NOMEM, "out of memory"));
        goto done;
    }
    s->per_day = 1;
    printf("## Staleness\n\n");
    printf("Both DV365 arms train with daily-refreshed embeddings; on the eval days the "
           "\"frozen\" arm keeps the embedding made at the start of eval day 0, so on day d it "
           "is d days older than the daily one. NE gain = mean over the binary tasks of the "
           "relative NE change vs the baseline on that day (negative = better); seeds %" PRIu64
           "..%" PRIu64 ".", x->seed, x->seed + x->seeds - 1);
    if (x->store)
        printf(" The frozen arm's eval embeddings are read from the store %s (%zu of %zu users "
               "missing).", x->store, missing, stored.n_users);
    printf("\n\n");
    TRY("staleness", run_arms(w, s, arms, 3, x, res));
    printf("| eval day | frozen embedding age (days) | NE gain, daily %% | NE gain, frozen %% |\n"
           "|---:|---:|---:|---:|\n");
    const size_t seeds = (size_t)x->seeds, T = res[0].T;
    for (size_t d = 0; d <= res[0].n_days; d++) { /* the last row: the whole eval set */
        if (d < res[0].n_days)
            printf("| %zu | %zu |", d, d);
        else
            printf("| **all** | |");
        for (size_t a = 1; a <= 2; a++) {
            double sd, g = seed_change(res, seeds, a, d < res[0].n_days ? d : SIZE_MAX, T, &sd);
            printf(d < res[0].n_days ? " " : " **");
            print_pm(g, sd, seeds, "%+.2f");
            printf(d < res[0].n_days ? " |" : "** |");
        }
        printf("\n");
    }
done:
    free(res);
    exp_bank_free(&bank);
    exp_bank_free(&stored);
    dv365_model_free(dv);
    return rc;
}

/* --- stability ------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double cosine(const float *a, const float *b, size_t n)
{
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0.0;
}

/* One row of the stability table: the distribution of c[0..n). */
static void print_dist(const char *what, double *c, size_t n)
{
    qsort(c, n, sizeof *c, cmp_double);
    double mean, sd, ge90 = 0;
    exp_mean_sd(c, n, &mean, &sd);
    for (size_t i = 0; i < n; i++)
        ge90 += c[i] >= 0.9;
#define Q(p) c[(size_t)((p) * (double)(n - 1) + 0.5)]
    printf("| %s | %zu | %.4f | %.4f | %.4f | %.4f | %.4f | %.4f | %.1f |\n", what, n, mean,
           Q(0.05), Q(0.25), Q(0.5), Q(0.75), Q(0.95), 100.0 * ge90 / (double)n);
#undef Q
}

static int stability(const exp_opts *x, const exp_world *w, const exp_settings *s)
{
    int rc = 0;
    dv365_model *dv = NULL, *ctl = NULL;
    exp_bank bank = {0}, bank_ctl = {0};
    double *c = NULL;
    const int64_t day0 = w->eval_from - 7 * EXP_DAY;
    TRY("DV365 model", load_dv(x, &dv, &ctl));
    TRY("embed", exp_bank_build(dv, w->timelines, day0, 8, 1, s->nthreads, x->progress, &bank));
    TRY("embed (untrained)", exp_bank_build(ctl, w->timelines, day0, 8, 1, s->nthreads,
                                            x->progress, &bank_ctl));
    const size_t n = bank.n_users, KD = bank.K * bank.D;
    if (n < 2 || !(c = malloc(n * sizeof *c))) {
        rc = fail_status("stability", n < 2 ? dv_error(DV365_E_INVALID, "needs 2 users or more")
                                            : dv_error(DV365_E_NOMEM, "out of memory"));
        goto done;
    }
    printf("## Stability\n\n");
    printf("Cosine similarity of each user's embedding (all K x D = %zu x %zu values, 4-bit) "
           "made at the start of eval day 0 (%" PRId64 ") and 7 days earlier; for scale, the "
           "same for two different users (user i vs i+1) and for an untrained model.\n\n",
           bank.K, bank.D, w->eval_from);
    printf("| pair | users | mean | p5 | p25 | median | p75 | p95 | ≥ 0.9 %% |\n"
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (size_t u = 0; u < n; u++)
        c[u] = cosine(exp_bank_get(&bank, 7, u), exp_bank_get(&bank, 0, u), KD);
    print_dist("same user, 7 days apart", c, n);
    for (size_t u = 0; u < n; u++)
        c[u] = cosine(exp_bank_get(&bank, 7, u), exp_bank_get(&bank, 7, (u + 1) % n), KD);
    print_dist("different users, same day", c, n);
    for (size_t u = 0; u < n; u++)
        c[u] = cosine(exp_bank_get(&bank_ctl, 7, u), exp_bank_get(&bank_ctl, 0, u), KD);
    print_dist("untrained model, same user, 7 days apart", c, n);
done:
    free(c);
    exp_bank_free(&bank);
    exp_bank_free(&bank_ctl);
    dv365_model_free(dv);
    dv365_model_free(ctl);
    return rc;
}

/* --- retrieval ---------------------------------------------------------------- */

static int retrieval(const exp_opts *x, const exp_world *w, const exp_settings *s)
{
    int rc = 0;
    dv365_model *dv = NULL, *ctl = NULL;
    exp_bank bank = {0}, bank_ctl = {0};
    TRY("DV365 model", load_dv(x, &dv, &ctl));
    TRY("embed", exp_bank_build(dv, w->timelines, w->train_from, w->n_days, 1, s->nthreads,
                                x->progress, &bank));
    TRY("embed (untrained)", exp_bank_build(ctl, w->timelines, w->train_from, w->n_days, 1,
                                            s->nthreads, x->progress, &bank_ctl));
    rc = exp_retrieval(w, s->config_text, &bank, &bank_ctl, x->seed, (size_t)x->seeds,
                       x->epochs, s->nthreads, x->progress);
done:
    exp_bank_free(&bank);
    exp_bank_free(&bank_ctl);
    dv365_model_free(dv);
    dv365_model_free(ctl);
    return rc;
}

/* --- ablations ----------------------------------------------------------------- */

/* The value of "  key:" in the top-level block "section:" of YAML text, or NULL.
 * (The configs this edits are the project's own block-style files.) */
static const char *find_key(const char *text, const char *section, const char *key,
                            const char **line_end)
{
    size_t ls = strlen(section), lk = strlen(key);
    const char *p = text;
    int in = 0;
    for (; *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p)) {
        if (p[0] != ' ' && p[0] != '\n' && p[0] != '#')
            in = !strncmp(p, section, ls) && p[ls] == ':';
        else if (in && !strncmp(p, "  ", 2) && !strncmp(p + 2, key, lk) && p[2 + lk] == ':') {
            const char *e = strchr(p, '\n');
            *line_end = e ? e : p + strlen(p);
            return p;
        }
    }
    return NULL;
}

/* text with section.key set to value (the line replaced, added after the
 * section line, or the section appended); malloc'd. */
static char *set_key(const char *text, const char *section, const char *key, const char *value)
{
    const char *end, *at = find_key(text, section, key, &end);
    size_t n = strlen(text) + strlen(section) + strlen(key) + strlen(value) + 16;
    char *out = malloc(n);
    if (!out)
        return NULL;
    if (at) {
        snprintf(out, n, "%.*s  %s: %s%s", (int)(at - text), text, key, value, end);
        return out;
    }
    size_t ls = strlen(section);
    for (const char *p = text; *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p))
        if (!strncmp(p, section, ls) && p[ls] == ':') {
            const char *e = strchr(p, '\n');
            size_t head = e ? (size_t)(e - text) + 1 : strlen(text);
            snprintf(out, n, "%.*s%s  %s: %s\n%s", (int)head, text, e ? "" : "\n", key, value,
                     text + head);
            return out;
        }
    size_t len = strlen(text);
    snprintf(out, n, "%s%s%s:\n  %s: %s\n", text, len && text[len - 1] != '\n' ? "\n" : "",
             section, key, value);
    return out;
}

/* text without its slices' "weight:" lines: every slice pools a plain mean. */
static char *without_weights(const char *text)
{
    char *out = malloc(strlen(text) + 1), *o = out;
    if (!out)
        return NULL;
    for (const char *p = text; *p;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) + 1 : strlen(p);
        const char *q = p;
        while (*q == ' ')
            q++;
        if (strncmp(q, "weight:", 7) || q == p) {
            memcpy(o, p, len);
            o += len;
        }
        p += len;
    }
    *o = '\0';
    return out;
}

static int ablations(const exp_opts *x, const exp_world *w, const exp_settings *s)
{
    enum { NV = 5 };
    int rc = 0;
    char *base = exp_read_text(x->base), *text[NV] = {0}, *tmp = NULL, num[32];
    dv365_model *m[NV] = {0};
    dv365_trainer *tr = NULL;
    exp_bank bank[NV + 1];
    exp_result *res = NULL;
    double train_s[NV] = {0};
    const char *names[NV + 1] = {"FSA (base)", "gap 0", "mean pooling", "LCE only",
                                 "vanilla Transformer", "FSA (base), float"};
    memset(bank, 0, sizeof bank);
    /* DV365's own examples when the world has them (dv365 synth writes pretrain.dve) */
    char dv_examples[4200];
    snprintf(dv_examples, sizeof dv_examples, "%.*spretrain.dve",
             (int)(strlen(w->train_path) - strlen("train.dve")), w->train_path);
    if (access(dv_examples, R_OK) != 0)
        snprintf(dv_examples, sizeof dv_examples, "%s", w->train_path);
    if (!base) {
        fprintf(stderr, "dv365: experiment: %s\n", dv365_last_error());
        return 1;
    }
    /* K of the base, to keep it in the encoder variants */
    TRY("base config", exp_model_from_text(base, x->seed, &m[0]));
    const size_t K = dv365_model_num_tokens(m[0]), N = dv365_model_num_slices(m[0]);
    const char *kl_end, *kl = find_key(base, "encoder", "k_lce", &kl_end);
    const size_t k_lce = kl ? strtoul(kl + 8, NULL, 10) : 0;
    dv365_model_free(m[0]);
    m[0] = NULL;
    text[0] = strdup(base);
    text[1] = set_key(base, "training", "gap", "0s");
    text[2] = without_weights(base);
    snprintf(num, sizeof num, "%zu", K);
    tmp = set_key(base, "encoder", "blocks", "0");
    text[3] = tmp ? set_key(tmp, "encoder", "k_lce", num) : NULL;
    free(tmp);
    snprintf(num, sizeof num, "%zu", K > k_lce ? K - k_lce : 1);
    tmp = set_key(base, "encoder", "stride", "1");
    text[4] = tmp ? set_key(tmp, "encoder", "compress", num) : NULL;
    free(tmp);
    tmp = NULL;
    for (size_t v = 0; v < NV; v++)
        if (!text[v]) {
            rc = fail_status("ablations", dv_error(DV365_E_NOMEM, "out of memory"));
            goto done;
        }
    printf("## Ablations\n\n");
    printf("DV365 variants of `%s` (N = %zu slices, K = %zu tokens), each trained here for "
           "%" PRIu64 " epoch(s) on %s from seed %" PRIu64 ", embedded daily (4-bit "
           "unless marked float) and fed to the same downstream ranking model as in the "
           "ranking experiment. NE gain = mean over the binary tasks of the relative NE change "
           "vs the downstream baseline (negative = better); seeds %" PRIu64 "..%" PRIu64 ".\n\n",
           x->base, N, K, x->dv_epochs, strrchr(dv_examples, '/') + 1, x->seed, x->seed,
           x->seed + x->seeds - 1);
    for (size_t v = 0; v < NV; v++) {
        TRY(names[v], exp_model_from_text(text[v], x->seed, &m[v]));
        TRY(names[v], dv365_trainer_create(m[v], &tr));
        double t0 = now_s();
        for (uint64_t e = 0; e < x->dv_epochs; e++)
            TRY(names[v], dv365_trainer_train_files(tr, w->timelines, dv_examples, 0, NULL,
                                                    NULL, s->nthreads));
        train_s[v] = now_s() - t0;
        dv365_trainer_free(tr);
        tr = NULL;
        fprintf(stderr, "  DV365 %-22s K=%zu trained in %.1f s\n", names[v],
                dv365_model_num_tokens(m[v]), train_s[v]);
        TRY("embed", exp_bank_build(m[v], w->timelines, w->train_from, w->n_days, 1,
                                    s->nthreads, x->progress, &bank[v]));
    }
    TRY("embed", exp_bank_build(m[0], w->timelines, w->train_from, w->n_days, 0, s->nthreads,
                                x->progress, &bank[NV]));
    exp_arm arms[NV + 2] = {{.name = "baseline"}};
    for (size_t v = 0; v <= NV; v++)
        arms[v + 1] = (exp_arm){.name = names[v], .bank = &bank[v]};
    if (!(res = calloc((NV + 2) * x->seeds, sizeof *res))) {
        rc = fail_status("results", dv_error(DV365_E_NOMEM, "out of memory"));
        goto done;
    }
    TRY("ablations", run_arms(w, s, arms, NV + 2, x, res));
    printf("| DV365 variant | K | DV365 training s | NE gain %% | Δ vs base (points) | "
           "watch-time MSE Δ %% |\n|---|---:|---:|---:|---:|---:|\n");
    double base_gain = 0;
    for (size_t a = 1; a < NV + 2; a++) {
        double gsd, msd = 0, gm = seed_change(res, (size_t)x->seeds, a, SIZE_MAX, res[0].T, &gsd);
        double mm = NAN; /* the regression task (watch time), if any */
        for (size_t k = 0; k < res[0].T; k++)
            if (!res[0].binary[k])
                mm = seed_change(res, (size_t)x->seeds, a, SIZE_MAX, k, &msd);
        if (a == 1)
            base_gain = gm;
        size_t v = a - 1;
        printf("| %s | %zu | %.1f |", names[v], bank[v].K, train_s[v < NV ? v : 0]);
        print_pm(gm, gsd, (size_t)x->seeds, " %+.2f");
        printf(" | %+.2f |", gm - base_gain);
        print_pm(mm, msd, (size_t)x->seeds, " %+.2f");
        printf(" |\n");
    }
done:
    free(res);
    dv365_trainer_free(tr);
    for (size_t v = 0; v <= NV; v++)
        exp_bank_free(&bank[v]);
    for (size_t v = 0; v < NV; v++) {
        dv365_model_free(m[v]);
        free(text[v]);
    }
    free(tmp);
    dv_free(base);
    return rc;
}

int cmd_experiment(int argc, char **argv)
{
    if (wants_help(argc, argv) || argc < 1) {
        fputs(experiment_help, argc < 1 ? stderr : stdout);
        return argc < 1 ? EXIT_USAGE : 0;
    }
    static const char *const names[] = {"ranking", "staleness", "stability", "retrieval",
                                        "ablations"};
    size_t which = 0;
    while (which < 5 && strcmp(argv[0], names[which]))
        which++;
    if (which == 5) {
        fprintf(stderr, "dv365: experiment: unknown experiment '%s' (ranking, staleness, "
                "stability, retrieval, ablations)\n", argv[0]);
        return EXIT_USAGE;
    }
    exp_opts x = {0};
    if (parse(argc - 1, argv + 1, &x) || (which != 4 && !x.dv)) {
        fputs(experiment_help, stderr);
        return EXIT_USAGE;
    }
    int rc = 0;
    exp_world w;
    char *text = exp_read_text(x.config);
    if (!text) {
        fprintf(stderr, "dv365: experiment: %s\n", dv365_last_error());
        return 1;
    }
    exp_settings s = settings_of(&x, text);
    TRY("world", exp_world_load(x.data, &w));
    switch (which) {
    case 0: rc = ranking(&x, &w, &s); break;
    case 1: rc = staleness(&x, &w, &s); break;
    case 2: rc = stability(&x, &w, &s); break;
    case 3: rc = retrieval(&x, &w, &s); break;
    default: rc = ablations(&x, &w, &s); break;
    }
done:
    exp_world_free(&w);
    dv_free(text);
    return rc;
}
