/* cmd_synth.c — `dv365 synth`: generate the synthetic world (tools/world.c). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "dv365.h"
#include "world.h"

int cmd_synth(int argc, char **argv);

static const char *synth_help =
    "usage: dv365 synth --out DIR [--preset tiny|small|large] [--seed S] [--users N]\n"
    "                   [--events MEAN] [--items N] [--train-per-user N] [--eval-per-user N]\n"
    "                   [--niches K] [--train-days D] [--eval-days D] [--now UNIX_SECONDS]\n"
    "                   [--config FILE.yaml] [--catalog FILE.csv] [--tasks A,B,...]\n"
    "                   [--progress]\n"
    "Generate the synthetic UniTi world (docs/world.md) into DIR:\n"
    "  timelines.dvt    a year of events per user (timeline file, docs/data.md)\n"
    "  train.dve        labelled impressions before the embedding day\n"
    "  eval.dve         labelled impressions in the last --eval-days days\n"
    "  catalog.csv      the items (built from the real KuaiRand-Pure videos)\n"
    "  truth_*.csv      ground truth: users' long-term interests, short-term states,\n"
    "                   per-example affinities\n"
    "  world.txt        a summary (volumes, label rates, time windows)\n"
    "Presets (default small):\n"
    "  tiny    50 users x ~500 events, 10K items (tests)\n"
    "  small   400 users x ~3,000 events, 50K items (the main job, minutes on 2 cores)\n"
    "  large   1,000 users x ~40,000 events (max ~70,000), 200K items, 32 niches\n"
    "          (the paper's volumes)\n"
    "Each size option overrides the preset.  --events sets the mean; users get 0.3x..1.7x.\n"
    "The config (default configs/default.yaml) gives the vocabularies; the catalog\n"
    "defaults to data/kuairand/kuairand-pure/video_features_basic_pure.csv.\n"
    "--tasks names the labels, in the config's backbone task order (default\n"
    "like,comment,share,complete,skip,watch_time = configs/default.yaml); known:\n"
    "like comment share save follow profile_visit hide complete skip long_view watch_time.\n"
    "Same seed and options -> identical files.  Exit status 0 ok, 1 error, 2 usage.\n";

static int parse_size(const char *name, const char *v, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-' || x > max) {
        fprintf(stderr, "dv365 synth: --%s needs a whole number up to %" PRIu64 ", got '%s'\n",
                name, max, v);
        return -1;
    }
    *out = x;
    return 0;
}

static void synth_progress(void *ctx, size_t done, size_t total)
{
    progress_show(ctx, done, total);
}

int cmd_synth(int argc, char **argv)
{
    const char *out = NULL, *preset = "small", *config = "configs/default.yaml";
    const char *catalog = NULL, *tasks = NULL;
    enum { NS = 11 };
    const char *sizes[NS] = {NULL};
    static const char *const size_names[NS] = {"seed",       "users",          "events",
                                               "items",      "train-per-user", "eval-per-user",
                                               "train-days", "eval-days",      "now",
                                               "niches",     "pretrain-per-user"};
    int progress_flag = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(synth_help, stdout);
            return 0;
        }
        if (!strcmp(a, "--progress")) {
            progress_flag = 1;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "dv365 synth: unexpected argument '%s'\n\n%s", a, synth_help);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "dv365 synth: missing value for %s\n", a);
            return 2;
        }
        const char *v = argv[++i], *n = a + 2;
        if (!strcmp(n, "out"))
            out = v;
        else if (!strcmp(n, "preset"))
            preset = v;
        else if (!strcmp(n, "config"))
            config = v;
        else if (!strcmp(n, "catalog"))
            catalog = v;
        else if (!strcmp(n, "tasks"))
            tasks = v;
        else {
            int k = 0;
            while (k < NS && strcmp(n, size_names[k]) != 0)
                k++;
            if (k == NS) {
                fprintf(stderr, "dv365 synth: unknown option %s (see dv365 synth --help)\n", a);
                return 2;
            }
            sizes[k] = v;
        }
    }
    if (!out) {
        fprintf(stderr, "dv365 synth: --out DIR is required\n\n%s", synth_help);
        return 2;
    }
    world_params p;
    if (world_preset(preset, &p) != 0) {
        fprintf(stderr, "dv365 synth: unknown preset '%s' (tiny, small or large)\n", preset);
        return 2;
    }
    uint64_t v[NS];
    static const uint64_t max[NS] = {UINT64_MAX, 100000000, 10000000, 100000000, 1000000, 1000000,
                                     3650,       3650,      (uint64_t)DV365_TIME_MAX, 256,
                                     1000000};
    for (int k = 0; k < NS; k++)
        if (sizes[k] && parse_size(size_names[k], sizes[k], max[k], &v[k]))
            return 2;
    if (sizes[0]) p.seed = v[0];
    if (sizes[1]) p.n_users = (size_t)v[1];
    if (sizes[2]) p.events_mean = (size_t)v[2];
    if (sizes[3]) p.n_items = (size_t)v[3];
    if (sizes[4]) p.train_per_user = (size_t)v[4];
    if (sizes[5]) p.eval_per_user = (size_t)v[5];
    if (sizes[6]) p.train_days = (int64_t)v[6];
    if (sizes[7]) p.eval_days = (int64_t)v[7];
    if (sizes[8]) p.now = (int64_t)v[8];
    if (sizes[9]) p.niches = (size_t)v[9];
    if (sizes[10]) p.pretrain_per_user = (size_t)v[10];
    if (catalog)
        p.catalog_csv = catalog;
    /* --tasks: split a copy of the list at the commas */
    char task_buf[512];
    const char *task_names[WORLD_MAX_TASKS];
    if (tasks) {
        if (strlen(tasks) >= sizeof task_buf) {
            fprintf(stderr, "dv365 synth: --tasks is too long\n");
            return 2;
        }
        strcpy(task_buf, tasks);
        size_t nt = 0;
        for (char *s = task_buf; s; nt++) {
            if (nt == WORLD_MAX_TASKS) {
                fprintf(stderr, "dv365 synth: --tasks: at most %d labels\n", WORLD_MAX_TASKS);
                return 2;
            }
            task_names[nt] = s;
            s = strchr(s, ',');
            if (s)
                *s++ = '\0';
        }
        p.task_names = task_names;
        p.n_tasks = nt;
    }

    int rc = 0;
    char err[512];
    dv365_config *cfg = NULL;
    world *w = NULL;
    dv365_status st = dv365_config_load(config, &cfg);
    if (st != DV365_OK) {
        fprintf(stderr, "dv365 synth: config: %s (%s)\n", dv365_last_error(),
                dv365_status_string(st));
        return 1;
    }
    progress_bar prog;
    progress_init(&prog, "synth", "users", progress_flag);
    st = world_create(&p, cfg, &w, err, sizeof err);
    if (st == DV365_OK) {
        world_stats stats;
        st = world_write(w, out, synth_progress, &prog, &stats, err, sizeof err);
        if (st == DV365_OK) {
            static char text[8192];
            world_summary(w, &stats, text, sizeof text);
            printf("wrote %s/{timelines.dvt,train.dve,eval.dve,catalog.csv,truth_*.csv,world.txt}"
                   " in %.1f s\n%s",
                   out, now_s() - prog.t0, text);
        }
    }
    if (st != DV365_OK) {
        if (prog.on && prog.last_pct != (size_t)-1)
            fputc('\n', stderr);
        fprintf(stderr, "dv365 synth: %s (%s)\n", err, dv365_status_string(st));
        rc = st == DV365_E_INVALID || st == DV365_E_NOT_FOUND ? 2 : 1;
    }
    world_free(w);
    dv365_config_free(cfg);
    return rc;
}
