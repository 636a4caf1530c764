/* test_world.c — the synthetic world (tools/world.c) on the tiny preset:
 * reproducibility, volumes, valid and readable files, label consistency,
 * and that the labels follow the ground truth the way docs/world.md says. */
#define _POSIX_C_SOURCE 200809L
#include "testutil.h"

#include "config.h"
#include "timeline.h"
#include "world.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const FILES[] = {"timelines.dvt",   "train.dve",        "eval.dve",
                                    "catalog.csv",     "truth_users.csv",  "truth_states.csv",
                                    "truth_train.csv", "truth_eval.csv",   "world.txt"};
#define N_FILES (sizeof FILES / sizeof *FILES)

typedef struct fixture {
    dv365_config *cfg;
    char catalog[4096];
    char dir[64];
    world_params p;
    world *w;
    world_stats stats;
} fixture;

static void tiny_params(fixture *f, world_params *p, uint64_t seed)
{
    assert_int_equal(world_preset("tiny", p), 0);
    p->seed = seed;
    p->catalog_csv = f->catalog;
}

static void generate(fixture *f, const world_params *p, const char *dir, world **w_out,
                     world_stats *stats)
{
    char err[512] = "";
    world *w = NULL;
    dv365_status st = world_create(p, f->cfg, &w, err, sizeof err);
    if (st != DV365_OK)
        fail_msg("world_create: %d %s", (int)st, err);
    st = world_write(w, dir, NULL, NULL, stats, err, sizeof err);
    if (st != DV365_OK)
        fail_msg("world_write: %d %s", (int)st, err);
    if (w_out)
        *w_out = w;
    else
        world_free(w);
}

static void remove_dir(const char *dir)
{
    char path[256];
    for (size_t i = 0; i < N_FILES; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, FILES[i]);
        unlink(path);
    }
    rmdir(dir);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->catalog, sizeof f->catalog, "%s",
             test_source_path("data/kuairand/kuairand-pure/video_features_basic_pure.csv"));
    if (dv365_config_load(test_source_path("configs/default.yaml"), &f->cfg) != DV365_OK)
        return -1;
    strcpy(f->dir, "/tmp/dv365_world_XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    tiny_params(f, &f->p, 3);
    char err[512];
    if (world_create(&f->p, f->cfg, &f->w, err, sizeof err) != DV365_OK ||
        world_write(f->w, f->dir, NULL, NULL, &f->stats, err, sizeof err) != DV365_OK) {
        fprintf(stderr, "world: %s\n", err);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    remove_dir(f->dir);
    world_free(f->w);
    dv365_config_free(f->cfg);
    free(f);
    return 0;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(fp);
    if (buf)
        buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

static int same_file(const char *d1, const char *d2, const char *name)
{
    char p1[256], p2[256];
    snprintf(p1, sizeof p1, "%s/%s", d1, name);
    snprintf(p2, sizeof p2, "%s/%s", d2, name);
    size_t n1, n2;
    char *a = slurp(p1, &n1), *b = slurp(p2, &n2);
    assert_non_null(a);
    assert_non_null(b);
    int same = n1 == n2 && memcmp(a, b, n1) == 0;
    free(a);
    free(b);
    return same;
}

/* --- presets and parameter errors ------------------------------------------ */

static void test_presets(void **state)
{
    (void)state;
    world_params p;
    for (const char *const *n = world_preset_names(); *n; n++) {
        assert_int_equal(world_preset(*n, &p), 0);
        assert_true(p.n_users > 0 && p.events_mean > 0 && p.n_items >= 100);
    }
    assert_int_equal(world_preset("huge", &p), -1);
    assert_int_equal(world_preset("large", &p), 0);
    assert_int_equal(p.events_mean, 40000); /* the paper's mean; max 1.7 x mean ~ 68K */
}

static void test_bad_params(void **state)
{
    fixture *f = *state;
    world_params p;
    world *w = NULL;
    char err[512];

    tiny_params(f, &p, 1);
    p.n_users = 0;
    assert_int_equal(world_create(&p, f->cfg, &w, err, sizeof err), DV365_E_INVALID);
    assert_non_null(strstr(err, "users"));

    tiny_params(f, &p, 1);
    p.eval_days = 400;
    assert_int_equal(world_create(&p, f->cfg, &w, err, sizeof err), DV365_E_INVALID);
    assert_non_null(strstr(err, "eval"));

    tiny_params(f, &p, 1);
    p.catalog_csv = "/nonexistent/videos.csv";
    assert_int_equal(world_create(&p, f->cfg, &w, err, sizeof err), DV365_E_IO);
    assert_non_null(strstr(err, "/nonexistent/videos.csv"));

    tiny_params(f, &p, 1);
    const char *tasks[] = {"like", "dance"};
    p.task_names = tasks;
    p.n_tasks = 2;
    assert_int_equal(world_create(&p, f->cfg, &w, err, sizeof err), DV365_E_NOT_FOUND);
    assert_non_null(strstr(err, "dance"));
    assert_null(w);

    /* a config without the "video" media type */
    size_t len;
    char *yaml = slurp(test_source_path("configs/small.yaml"), &len);
    assert_non_null(yaml);
    for (char *s = yaml; (s = strstr(s, "video")) != NULL; s += 5)
        memcpy(s, "vidxo", 5);
    dv365_config *cfg2;
    ASSERT_OK(dv365_config_parse(yaml, len, &cfg2));
    free(yaml);
    tiny_params(f, &p, 1);
    assert_int_equal(world_create(&p, cfg2, &w, err, sizeof err), DV365_E_CONFIG);
    assert_non_null(strstr(err, "video"));
    dv365_config_free(cfg2);

    /* an output path that cannot be a directory */
    tiny_params(f, &p, 1);
    p.n_users = 2;
    assert_int_equal(world_create(&p, f->cfg, &w, err, sizeof err), DV365_OK);
    assert_int_equal(world_write(w, "/proc/version/x", NULL, NULL, NULL, err, sizeof err),
                     DV365_E_IO);
    world_free(w);
}

/* --- reproducibility ----------------------------------------------------------- */

static void test_reproducible(void **state)
{
    fixture *f = *state;
    char d1[] = "/tmp/dv365_world_XXXXXX", d2[] = "/tmp/dv365_world_XXXXXX";
    assert_non_null(mkdtemp(d1));
    assert_non_null(mkdtemp(d2));
    world_params p;
    tiny_params(f, &p, 3); /* the fixture's seed */
    generate(f, &p, d1, NULL, NULL);
    for (size_t i = 0; i < N_FILES; i++)
        if (!same_file(f->dir, d1, FILES[i]))
            fail_msg("same seed, different %s", FILES[i]);
    tiny_params(f, &p, 4);
    generate(f, &p, d2, NULL, NULL);
    assert_false(same_file(d1, d2, "timelines.dvt"));
    assert_false(same_file(d1, d2, "train.dve"));
    assert_false(same_file(d1, d2, "eval.dve"));
    assert_false(same_file(d1, d2, "truth_users.csv"));
    remove_dir(d1);
    remove_dir(d2);
}

/* pretrain.dve: DV365's own examples, in the train window, from a stream of
 * their own: the other files do not change with their number */
static void test_pretrain_split(void **state)
{
    fixture *f = *state;
    char d1[] = "/tmp/dv365_world_XXXXXX";
    assert_non_null(mkdtemp(d1));
    world_params p;
    tiny_params(f, &p, 3); /* the fixture's seed, no pretrain.dve */
    assert_int_equal(f->p.pretrain_per_user, 0);
    p.pretrain_per_user = 30;
    world_stats s;
    generate(f, &p, d1, NULL, &s);
    assert_int_equal(s.n_pretrain, 50 * 30);
    for (size_t i = 0; i < N_FILES; i++)
        if (strcmp(FILES[i], "world.txt") && !same_file(f->dir, d1, FILES[i]))
            fail_msg("pretrain examples changed %s", FILES[i]);
    char path[300];
    snprintf(path, sizeof path, "%s/pretrain.dve", d1);
    dv365_example_reader *r;
    assert_int_equal(dv365_example_reader_open(path, &r), DV365_OK);
    assert_int_equal(dv365_example_reader_count(r), 50 * 30);
    const int64_t embed = world_embed_time(f->w), from = embed - p.train_days * 86400;
    uint64_t user, ids[3];
    int64_t t;
    float dense[WORLD_N_DENSE], labels[WORLD_MAX_TASKS];
    int done = 0;
    size_t n = 0;
    while (dv365_example_reader_next(r, &user, &t, &ids[0], &ids[1], &ids[2], dense, labels,
                                     &done) == DV365_OK && !done) {
        assert_true(t >= from && t < embed); /* the train window */
        n++;
    }
    assert_int_equal(n, 50 * 30);
    dv365_example_reader_free(r);
    unlink(path);
    /* and the fixture's world has none */
    snprintf(path, sizeof path, "%s/pretrain.dve", f->dir);
    assert_int_not_equal(access(path, F_OK), 0);
    remove_dir(d1);
}

/* --- volumes and timelines --------------------------------------------------------- */

static void test_volumes(void **state)
{
    fixture *f = *state;
    const world_stats *s = &f->stats;
    double mean = (double)s->events / (double)s->n_users;
    print_message("events/user mean %.0f min %zu max %zu, explicit %.3f\n", mean, s->events_min,
                  s->events_max, (double)s->explicit_events / (double)s->events);
    assert_int_equal(s->n_users, 50);
    assert_true(mean > 0.85 * 500 && mean < 1.15 * 500);
    assert_true(s->events_min >= 0.2 * 500 && s->events_max <= 2.0 * 500);
    double expl = (double)s->explicit_events / (double)s->events;
    assert_true(expl > 0.18 && expl < 0.34);
    assert_int_equal(s->n_train, 50 * f->p.train_per_user);
    assert_int_equal(s->n_eval, 50 * f->p.eval_per_user);
    /* every action of the config is used */
    for (size_t a = 0; a < dv365_config_vocab_size(f->cfg, DV365_VOCAB_ACTION); a++)
        assert_true(s->action_count[a] > 0);
}

static void test_timelines(void **state)
{
    fixture *f = *state;
    char path[256];
    snprintf(path, sizeof path, "%s/timelines.dvt", f->dir);
    dv365_timeline_reader *r;
    dv365_timeline *tl;
    ASSERT_OK(dv365_timeline_reader_open(path, f->cfg, &r));
    ASSERT_OK(dv365_timeline_create(f->cfg, &tl));
    assert_int_equal(dv365_timeline_reader_count(r), 50);
    assert_int_equal(dv365_timeline_reader_num_events(r), f->stats.events);
    int32_t video, view;
    ASSERT_OK(dv365_config_code(f->cfg, DV365_VOCAB_MEDIA_TYPE, "video", &video));
    ASSERT_OK(dv365_config_code(f->cfg, DV365_VOCAB_ACTION, "view", &view));
    const int64_t start = f->p.now - f->p.span_days * 86400;
    size_t na = dv365_config_vocab_size(f->cfg, DV365_VOCAB_ACTION),
           nm = dv365_config_vocab_size(f->cfg, DV365_VOCAB_MEDIA_TYPE),
           ns = dv365_config_vocab_size(f->cfg, DV365_VOCAB_SURFACE);
    uint64_t uid, expect = 1;
    int done = 0;
    size_t total = 0;
    for (;;) {
        ASSERT_OK(dv365_timeline_reader_next(r, &uid, tl, &done));
        if (done)
            break;
        assert_int_equal(uid, expect++);
        world_user_truth t;
        ASSERT_OK(world_user(f->w, (size_t)(uid - 1), &t));
        assert_int_equal(t.user_id, uid);
        size_t n = tl->n;
        assert_true(n > 0);
        total += n;
        size_t days_active = 0;
        int64_t last_day = -1;
        for (size_t i = 0; i < n; i++) {
            if (i)
                assert_true(tl->time[i] >= tl->time[i - 1]);
            assert_true(tl->time[i] >= start && tl->time[i] < f->p.now);
            assert_true(tl->action[i] >= 0 && (size_t)tl->action[i] < na);
            assert_true(tl->media_type[i] >= 0 && (size_t)tl->media_type[i] < nm);
            assert_true(tl->surface[i] >= 0 && (size_t)tl->surface[i] < ns);
            assert_true(tl->dwell_ms[i] >= 0);
            /* videos have a duration, photos and carousels none */
            assert_true((tl->media_type[i] == video) == (tl->duration_ms[i] > 0));
            if (tl->time[i] / 86400 != last_day) {
                days_active++;
                last_day = tl->time[i] / 86400;
            }
        }
        /* a year of activity, not a burst (tiny users have ~0.5-2 events a day) */
        assert_true(days_active > (n / 3 < 150 ? n / 3 : 150));
        assert_true(tl->time[0] < start + 30 * 86400);
        assert_true(tl->time[n - 1] > f->p.now - 7 * 86400);
    }
    assert_int_equal(total, f->stats.events);
    dv365_timeline_free(tl);
    dv365_timeline_reader_free(r);
}

/* --- examples ------------------------------------------------------------------------- */

typedef struct ex {
    uint64_t user, media, author, topic;
    int64_t t;
    float dense[WORLD_N_DENSE];
    float labels[6];
} ex;

static ex *read_examples(const fixture *f, const char *name, size_t *n_out)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", f->dir, name);
    dv365_example_reader *r;
    ASSERT_OK(dv365_example_reader_open(path, &r));
    assert_int_equal(dv365_example_reader_num_dense(r), WORLD_N_DENSE);
    assert_int_equal(dv365_example_reader_num_tasks(r), 6);
    size_t n = dv365_example_reader_count(r);
    ex *e = calloc(n + 1, sizeof *e);
    assert_non_null(e);
    for (size_t i = 0;; i++) {
        int done;
        ex x;
        ASSERT_OK(dv365_example_reader_next(r, &x.user, &x.t, &x.media, &x.author, &x.topic,
                                            x.dense, x.labels, &done));
        if (done) {
            assert_int_equal(i, n);
            break;
        }
        e[i] = x;
    }
    dv365_example_reader_free(r);
    *n_out = n;
    return e;
}

enum { L_LIKE, L_COMMENT, L_SHARE, L_COMPLETE, L_SKIP, L_WATCH };

static void test_tasks_match_config(void **state)
{
    fixture *f = *state;
    /* the world's default labels are the default config's backbone tasks */
    const dv_backbone_cfg *b = &f->cfg->backbone;
    static const char *const want[6] = {"like", "comment", "share", "complete", "skip",
                                        "watch_time"};
    assert_int_equal(b->n_tasks, 6);
    assert_int_equal(b->n_dense, WORLD_N_DENSE);
    for (size_t t = 0; t < 6; t++)
        assert_string_equal(b->task_names[t], want[t]);
    assert_int_equal(f->stats.n_tasks, 6);
}

static void test_examples_consistent(void **state)
{
    fixture *f = *state;
    const int64_t embed = world_embed_time(f->w), day = 86400;
    for (int split = 0; split < 2; split++) {
        size_t n;
        ex *e = read_examples(f, split ? "eval.dve" : "train.dve", &n);
        assert_int_equal(n, 50 * (split ? f->p.eval_per_user : f->p.train_per_user));
        int64_t lo = split ? embed : embed - f->p.train_days * day;
        int64_t hi = split ? f->p.now : embed;
        for (size_t i = 0; i < n; i++) {
            const ex *x = &e[i];
            assert_true(x->user >= 1 && x->user <= 50);
            assert_true(x->t >= lo && x->t < hi);
            if (i) /* grouped by user, in time order within a user */
                assert_true(x->user > e[i - 1].user ||
                            (x->user == e[i - 1].user && x->t >= e[i - 1].t));
            for (int t = 0; t < 5; t++)
                assert_true(x->labels[t] == 0.0f || x->labels[t] == 1.0f);
            float watch = x->labels[L_WATCH];
            assert_true(watch >= 0);
            double dur = expm1((double)x->dense[4]);
            bool video = x->dense[5] == 1.0f;
            assert_true(video ? dur > 0.9 : x->dense[4] == 0.0f);
            /* skip <=> dwell < 3 s; complete => a video watched >= 90 % */
            assert_int_equal(x->labels[L_SKIP] == 1.0f, watch < 3.0f);
            if (x->labels[L_COMPLETE] == 1.0f) {
                assert_true(video);
                assert_true(watch >= 0.9 * dur * (1 - 1e-4));
            } else if (video) {
                assert_true(watch < 0.9 * dur * (1 + 1e-4));
            }
            for (int d = 0; d < WORLD_N_DENSE; d++)
                assert_true(isfinite(x->dense[d]));
            assert_true(fabsf(x->dense[1] * x->dense[1] + x->dense[2] * x->dense[2] - 1) < 1e-4);
            assert_true(x->dense[6] >= 0 && x->dense[6] <= 1);
        }
        free(e);
    }
}

/* --- labels against the ground truth ---------------------------------------------------- */

static void test_labels_follow_truth(void **state)
{
    fixture *f = *state;
    size_t nt, ne;
    ex *tr = read_examples(f, "train.dve", &nt);
    ex *ev = read_examples(f, "eval.dve", &ne);
    double like_top = 0, n_top = 0, like_other = 0, n_other = 0;
    for (size_t i = 0; i < nt + ne; i++) {
        const ex *x = i < nt ? &tr[i] : &ev[i - nt];
        world_user_truth t;
        ASSERT_OK(world_user(f->w, (size_t)(x->user - 1), &t));
        bool in_long = false, fav = false;
        for (size_t k = 0; k < t.n_long; k++)
            in_long |= t.long_topic[k] == x->topic;
        for (size_t k = 0; k < t.n_fav; k++)
            fav |= t.fav_author[k] == x->author;
        if (x->topic == t.long_topic[0]) {
            like_top += x->labels[L_LIKE];
            n_top++;
        } else if (!in_long && !fav) {
            like_other += x->labels[L_LIKE];
            n_other++;
        }
    }
    print_message("like rate: top long-term topic %.3f (%.0f), other topics %.3f (%.0f)\n",
                  like_top / n_top, n_top, like_other / n_other, n_other);
    assert_true(n_top >= 100 && n_other >= 500);
    assert_true(like_top / n_top > 2.5 * (like_other / n_other));
    free(tr);
    free(ev);

    /* long-term interest that the recent history does not show still drives
     * the labels, and the whole history predicts them better than the
     * recent window (world.c's diagnostics, docs/world.md) */
    const world_stats *s = &f->stats;
    print_message("like rate dormant %.3f (%zu) none %.3f (%zu); AUC recent %.3f full %.3f "
                  "truth %.3f\n",
                  s->like_rate_dormant, s->n_dormant, s->like_rate_none, s->n_none,
                  s->auc_like_recent, s->auc_like_full, s->auc_like_truth);
    assert_true(s->n_dormant >= 50);
    assert_true(s->like_rate_dormant > 2.0 * s->like_rate_none);
    assert_true(s->auc_like_full > s->auc_like_recent + 0.02);
    assert_true(s->auc_like_truth > s->auc_like_full);
    assert_true(s->auc_like_recent > 0.6); /* recent interest matters too */
}

static double auc(const double *score, const bool *label, size_t n)
{
    /* O(n^2) pairwise: fine for the tiny preset */
    double pairs = 0, wins = 0;
    for (size_t i = 0; i < n; i++)
        if (label[i])
            for (size_t j = 0; j < n; j++)
                if (!label[j]) {
                    pairs++;
                    wins += score[i] > score[j] ? 1.0 : score[i] == score[j] ? 0.5 : 0.0;
                }
    return pairs ? wins / pairs : 0.5;
}

static void test_watch_score_carries_interest(void **state)
{
    fixture *f = *state;
    size_t nt, ne;
    ex *tr = read_examples(f, "train.dve", &nt);
    ex *ev = read_examples(f, "eval.dve", &ne);
    size_t n = 0;
    double *score = malloc((nt + ne) * sizeof *score), *dwell = malloc((nt + ne) * sizeof *dwell),
           *ratio = malloc((nt + ne) * sizeof *ratio);
    bool *liked = malloc((nt + ne) * sizeof *liked);
    assert_true(score && dwell && ratio && liked);
    for (size_t i = 0; i < nt + ne; i++) {
        const ex *x = i < nt ? &tr[i] : &ev[i - nt];
        if (x->dense[5] != 1.0f)
            continue; /* videos only: photos have no duration */
        double dur = expm1((double)x->dense[4]), w = x->labels[L_WATCH];
        score[n] = log1p(w) / log1p(dur); /* gamma = 1, the default config's */
        dwell[n] = w;
        ratio[n] = w / dur;
        liked[n] = x->labels[L_LIKE] == 1.0f;
        n++;
    }
    double a_score = auc(score, liked, n), a_dwell = auc(dwell, liked, n),
           a_ratio = auc(ratio, liked, n);
    print_message("like AUC over %zu video impressions: watch score %.3f, dwell %.3f, ratio "
                  "%.3f\n",
                  n, a_score, a_dwell, a_ratio);
    /* dwell is mostly duration; the ratio penalizes long videos a little
     * (ln ratio ~ -(1 - h) ln duration), the score not at all */
    assert_true(a_score > a_dwell + 0.05);
    assert_true(a_score > a_ratio + 0.003);
    free(score);
    free(dwell);
    free(ratio);
    free(liked);
    free(tr);
    free(ev);
}

static void test_truth_files(void **state)
{
    fixture *f = *state;
    char path[256];
    size_t len;
    snprintf(path, sizeof path, "%s/truth_users.csv", f->dir);
    char *text = slurp(path, &len);
    assert_non_null(text);
    /* header + one line per user, and user 1's long-term topics as world_user says */
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    assert_int_equal(lines, 51);
    world_user_truth t;
    ASSERT_OK(world_user(f->w, 0, &t));
    char expect[64];
    snprintf(expect, sizeof expect, "\n1,");
    char *row = strstr(text, expect);
    assert_non_null(row);
    char topic[32];
    snprintf(topic, sizeof topic, ",%llu;", (unsigned long long)t.long_topic[0]);
    char *eol = strchr(row + 1, '\n');
    assert_non_null(eol);
    *eol = '\0';
    assert_non_null(strstr(row, topic));
    free(text);
    snprintf(path, sizeof path, "%s/world.txt", f->dir);
    text = slurp(path, &len);
    assert_non_null(text);
    assert_non_null(strstr(text, "embed_time: "));
    assert_non_null(strstr(text, "tasks: like comment share complete skip watch_time"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_reproducible),
        cmocka_unit_test(test_pretrain_split),
        cmocka_unit_test(test_volumes),
        cmocka_unit_test(test_timelines),
        cmocka_unit_test(test_tasks_match_config),
        cmocka_unit_test(test_examples_consistent),
        cmocka_unit_test(test_labels_follow_truth),
        cmocka_unit_test(test_watch_score_carries_interest),
        cmocka_unit_test(test_truth_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
