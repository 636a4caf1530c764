/* test_config.c — YAML configuration: parsing, expansion, every error path. */
#include "testutil.h"

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A small valid config; tests splice variations into it. */
#define VOCAB                                                                             \
    "vocab:\n"                                                                            \
    "  actions: [{name: view, explicit: false}, {name: like, explicit: true}]\n"         \
    "  media_types: [video, photo]\n"                                                     \
    "  surfaces: [feed, reels]\n"
#define TABLES                                                                            \
    "tables:\n"                                                                           \
    "  - {name: pos_media, rows: 100}\n"                                                  \
    "  - {name: pos_author, rows: 10}\n"

static const char *small_yaml = "version: 1\n"
                                "dim: 8\n" VOCAB TABLES
                                "slices:\n"
                                "  - name: liked\n"
                                "    timeline: explicit\n"
                                "    actions: [like]\n"
                                "    pool: [media, author]\n"
                                "    table: \"pos_{field}\"\n"
                                "    windows: [all, 7d, {from: 30d, to: 7d}]\n"
                                "  - name: views\n"
                                "    dwell_ms: {min: 1000, max: 2000}\n"
                                "    weight: watch_score\n"
                                "    pool: {author: pos_author}\n"
                                "encoder: {blocks: 2, heads: 2, ffn: 16, stride: 2, k_lce: 3}\n";

static dv365_status parse(const char *yaml, dv365_config **cfg)
{
    return dv365_config_parse(yaml, strlen(yaml), cfg);
}

static void test_small_config(void **state)
{
    (void)state;
    dv365_config *cfg = NULL;
    ASSERT_OK(parse(small_yaml, &cfg));
    assert_int_equal(dv365_config_dim(cfg), 8);
    assert_int_equal(dv365_config_num_slices(cfg), 2 * 3 + 1);
    /* definition-major, then id field, then window */
    assert_string_equal(dv365_config_slice_name(cfg, 0), "liked.media.all");
    assert_string_equal(dv365_config_slice_name(cfg, 1), "liked.media.7d");
    assert_string_equal(dv365_config_slice_name(cfg, 2), "liked.media.30d-7d");
    assert_string_equal(dv365_config_slice_name(cfg, 3), "liked.author.all");
    assert_string_equal(dv365_config_slice_name(cfg, 6), "views.author.all");
    assert_null(dv365_config_slice_name(cfg, 7));
    size_t idx;
    ASSERT_OK(dv365_config_slice_index(cfg, "liked.author.7d", &idx));
    assert_int_equal(idx, 4);
    ASSERT_ERR(dv365_config_slice_index(cfg, "nope", &idx), DV365_E_NOT_FOUND, "nope");

    assert_int_equal(cfg->n_windows, 3);
    assert_true(cfg->windows[cfg->slices[2].window].from_s == 30 * 86400);
    assert_true(cfg->windows[cfg->slices[2].window].to_s == 7 * 86400);
    assert_true(cfg->windows[cfg->slices[0].window].from_s == INT64_MAX);
    const dv_slice_def *liked = &cfg->defs[0], *views = &cfg->defs[1];
    assert_int_equal(liked->kind, DV_KIND_EXPLICIT);
    assert_non_null(liked->action_ok);
    assert_int_equal(liked->action_ok[0], 0);
    assert_int_equal(liked->action_ok[1], 1);
    assert_null(liked->media_type_ok);
    assert_int_equal(cfg->slices[3].table, 1);
    assert_int_equal(views->weight, DV_WEIGHT_WATCH_SCORE);
    assert_true(views->dwell_ms.has_min && views->dwell_ms.has_max);
    assert_true(dv_range_contains(&views->dwell_ms, 1000) && !dv_range_contains(&views->dwell_ms, 2000));

    assert_int_equal(dv365_config_num_tables(cfg), 2);
    assert_string_equal(dv365_config_table_name(cfg, 1), "pos_author");
    assert_int_equal(dv365_config_table_rows(cfg, 0), 100);
    assert_int_equal(dv365_config_vocab_size(cfg, DV365_VOCAB_ACTION), 2);
    assert_int_equal(dv365_config_vocab_size(cfg, DV365_VOCAB_SURFACE), 2);
    int32_t code;
    ASSERT_OK(dv365_config_code(cfg, DV365_VOCAB_ACTION, "like", &code));
    assert_int_equal(code, 1);
    ASSERT_ERR(dv365_config_code(cfg, DV365_VOCAB_MEDIA_TYPE, "reel", &code), DV365_E_NOT_FOUND,
               "media type named 'reel'");
    ASSERT_ERR(dv365_config_code(cfg, (dv365_vocab)9, "x", &code), DV365_E_INVALID, "vocabulary");
    assert_string_equal(dv365_config_code_name(cfg, DV365_VOCAB_SURFACE, 1), "reels");
    assert_null(dv365_config_code_name(cfg, DV365_VOCAB_SURFACE, 2));
    assert_null(dv365_config_code_name(cfg, DV365_VOCAB_SURFACE, -1));
    /* 7 tokens -> 4 after one pooling, plus 3 LCE tokens */
    assert_int_equal(dv_config_num_tokens(cfg), 4 + 3);
    assert_int_equal(cfg->encoder.heads, 2);
    assert_int_equal(cfg->encoder.layers_per_block, 1); /* default */
    dv365_config_free(cfg);
}

static void test_default_config(void **state)
{
    (void)state;
    dv365_config *cfg = NULL;
    ASSERT_OK(dv365_config_load(test_source_path("configs/default.yaml"), &cfg));
    assert_int_equal(dv365_config_dim(cfg), 256);
    assert_int_equal(dv365_config_num_slices(cfg), 200);
    assert_int_equal(dv_config_num_tokens(cfg), 58);
    assert_int_equal(dv365_config_num_tables(cfg), 12);
    /* every criterion and every weighting is used by the default config */
    bool kind[3] = {0}, weight[5] = {0}, act = 0, mt = 0, sf = 0, dw = 0, wr = 0, ws = 0,
         span = 0;
    for (size_t i = 0; i < cfg->n_defs; i++) {
        const dv_slice_def *d = &cfg->defs[i];
        kind[d->kind] = weight[d->weight] = true;
        act |= d->action_ok != NULL;
        mt |= d->media_type_ok != NULL;
        sf |= d->surface_ok != NULL;
        dw |= d->dwell_ms.has_min || d->dwell_ms.has_max;
        wr |= d->watch_ratio.has_min || d->watch_ratio.has_max;
        ws |= d->watch_score.has_min || d->watch_score.has_max;
    }
    for (size_t w = 0; w < cfg->n_windows; w++)
        span |= cfg->windows[w].to_s > 0;
    assert_true(kind[1] && kind[2]);
    for (int w = 0; w < 5; w++)
        assert_true(weight[w]);
    assert_true(act && mt && sf && dw && wr && ws && span);
    /* names are unique */
    for (size_t i = 0; i < cfg->n_slices; i++)
        for (size_t j = i + 1; j < cfg->n_slices; j++)
            assert_string_not_equal(cfg->slices[i].name, cfg->slices[j].name);
    assert_true(cfg->fingerprint != 0);

    const dv_backbone_cfg *b = &cfg->backbone;
    assert_int_equal(b->n_tasks, 6);
    assert_string_equal(b->task_names[5], "watch_time");
    assert_int_equal(b->tasks[5].kind, DV_TASK_REGRESSION);
    assert_true(b->tasks[5].log1p_target && b->tasks[5].weight == 0.1);
    assert_int_equal(b->n_top, 2);
    assert_int_equal(b->top[1], 128);
    assert_true(b->item_field[DV_FIELD_TOPIC] && b->item_rows[DV_FIELD_TOPIC] == 1024);
    const dv_training_cfg *t = &cfg->training;
    assert_int_equal(t->gap_s, 86400);
    assert_int_equal(t->dense_lr.decay, DV_LR_COSINE);
    assert_int_equal(t->dense_lr.warmup_steps, 20);
    assert_true(t->adamw && t->clip_norm == 1.0 && t->emb_lr == 0.05);
    dv365_config_free(cfg);
}

static void test_backbone_and_training(void **state)
{
    (void)state;
    dv365_config *cfg = NULL;
    const char *yaml = "dim: 8\n" VOCAB TABLES "slices:\n  - {name: a, pool: {media: pos_media}}\n"
                       "encoder: {heads: 2}\n"
                       "backbone:\n"
                       "  dense_features: 3\n"
                       "  bottom: []\n"
                       "  item_tables: {media: 50}\n"
                       "  extra_tokens: 4\n"
                       "  tasks: [{name: click, type: binary, weight: 2}]\n"
                       "training: {gap: 0s, batch_size: 4, seed: 9,\n"
                       "           optimizer: {type: adam, lr: 0.01}}\n";
    ASSERT_OK(parse(yaml, &cfg));
    const dv_backbone_cfg *b = &cfg->backbone;
    assert_int_equal(b->n_dense, 3);
    assert_int_equal(b->n_bottom, 0);
    assert_int_equal(b->n_top, 2); /* default */
    assert_true(b->item_field[DV_FIELD_MEDIA] && !b->item_field[DV_FIELD_AUTHOR]);
    assert_int_equal(b->item_rows[DV_FIELD_MEDIA], 50);
    assert_int_equal(b->extra_tokens, 4);
    assert_int_equal(b->n_tasks, 1);
    assert_string_equal(b->task_names[0], "click");
    assert_true(b->tasks[0].weight == 2.0);
    assert_int_equal(cfg->training.gap_s, 0);
    assert_int_equal(cfg->training.batch_size, 4);
    assert_int_equal(cfg->training.seed, 9);
    assert_false(cfg->training.adamw);
    assert_true(cfg->training.dense_lr.base_lr == 0.01);
    dv365_config_free(cfg);

    /* without the sections: defaults (six tasks, 24 h gap) */
    ASSERT_OK(parse(small_yaml, &cfg));
    assert_int_equal(cfg->backbone.n_tasks, 6);
    assert_int_equal(cfg->backbone.extra_tokens, 0);
    assert_int_equal(cfg->training.gap_s, 86400);
    dv365_config_free(cfg);
}

/* Each bad config must fail with the code and a message naming the place. */
typedef struct bad_case {
    const char *yaml;
    dv365_status code;
    const char *needle;
} bad_case;

static void test_bad_configs(void **state)
{
    (void)state;
    static const bad_case cases[] = {
        {"dim: [1\n", DV365_E_PARSE, "<string>:2:1"},
        {"dim: 8\n  x: : :\n", DV365_E_PARSE, "<string>:"},
        {"", DV365_E_CONFIG, "empty"},
        {"- 1\n- 2\n", DV365_E_CONFIG, "must be a mapping"},
        {"version: 2\ndim: 8\n", DV365_E_VERSION, "version must be 1"},
        {"dim: 8\n" VOCAB TABLES "slices: []\n", DV365_E_CONFIG, "1 to"},
        {"dimm: 8\n", DV365_E_CONFIG, "<string>:1:1: unknown key 'dimm'"},
        {"dim: 0\n", DV365_E_CONFIG, "dim must be in"},
        {"dim: eight\n", DV365_E_CONFIG, "whole number"},
        {"dim: -8\n", DV365_E_CONFIG, "whole number"},
        {"dim: 8\n" VOCAB TABLES, DV365_E_CONFIG, "needs the key 'slices'"},
        {"dim: 8\nwatch_score_gamma: nan\n", DV365_E_NONFINITE, "finite"},
        {"dim: 8\nwatch_score_gamma: 0\n", DV365_E_CONFIG, "gamma must be > 0"},
        {"dim: 8\ndim: 8\n", DV365_E_CONFIG, "appears twice"},
        {"dim: 8\n" VOCAB TABLES "slices:\n  - {name: a, pool: {media: nope}}\n", DV365_E_NOT_FOUND,
         "<string>:10:29: unknown table 'nope'"},
        {"dim: 8\n" VOCAB TABLES "slices:\n  - {name: a, actions: [love], pool: {media: pos_media}}\n",
         DV365_E_NOT_FOUND, "unknown name 'love' in actions"},
        {"dim: 8\n" VOCAB TABLES "slices:\n  - {name: a, pool: {isbn: pos_media}}\n", DV365_E_CONFIG,
         "unknown id field 'isbn'"},
        {"dim: 8\n" VOCAB TABLES "slices:\n  - {name: a, pool: [media]}\n", DV365_E_CONFIG,
         "needs 'table'"},
        {"dim: 8\n" VOCAB TABLES "slices:\n  - {name: a, pool: {media: pos_media}, windows: [7x]}\n",
         DV365_E_CONFIG, "duration like"},
        {"dim: 8\n" VOCAB TABLES
         "slices:\n  - {name: a, pool: {media: pos_media}, windows: [{from: 7d, to: 30d}]}\n",
         DV365_E_CONFIG, "from > to"},
        {"dim: 8\n" VOCAB TABLES "slices:\n  - {name: a, pool: {media: pos_media}, windows: [7d, 1w]}\n",
         DV365_E_CONFIG, "listed twice"},
        {"dim: 8\n" VOCAB TABLES
         "slices:\n  - {name: a, pool: {media: pos_media}, dwell_ms: {min: 5, max: 5}}\n",
         DV365_E_CONFIG, "min < max"},
        {"dim: 8\n" VOCAB TABLES "slices:\n  - {name: a, pool: {media: pos_media}, weight: heavy}\n",
         DV365_E_CONFIG, "weight must be"},
        {"dim: 8\n" VOCAB TABLES "slices:\n  - {name: a, pool: {media: pos_media}, timeline: loud}\n",
         DV365_E_CONFIG, "timeline must be"},
        {"dim: 8\n" VOCAB TABLES
         "slices:\n  - {name: a, pool: {media: pos_media}}\n  - {name: a, pool: {media: pos_media}}\n",
         DV365_E_CONFIG, "used twice"},
        {"dim: 8\n" VOCAB TABLES "slices:\n  - {name: 'a b', pool: {media: pos_media}}\n",
         DV365_E_CONFIG, "letters, digits"},
        {"dim: 8\n" VOCAB TABLES "slices:\n  - {name: a, pool: {media: pos_media, media: pos_media}}\n",
         DV365_E_CONFIG, "pooled twice"},
        {"dim: 8\n" VOCAB TABLES "slices:\n  - {name: a, pool: {media: pos_media}, colour: red}\n",
         DV365_E_CONFIG, "unknown key 'colour' in a slice"},
        {"dim: 8\nvocab:\n  actions: [{name: v, explicit: maybe}]\n  media_types: [a]\n  surfaces: [b]\n",
         DV365_E_CONFIG, "true or false"},
        {"dim: 8\nvocab:\n  actions: [{name: v, explicit: true}, {name: v, explicit: true}]\n"
         "  media_types: [a]\n  surfaces: [b]\n",
         DV365_E_CONFIG, "listed twice"},
        {"dim: 8\n" VOCAB "tables:\n  - {name: t, rows: 0}\n", DV365_E_CONFIG, "table rows must be in"},
        {"dim: 6\n" VOCAB TABLES "slices:\n  - {name: a, pool: {media: pos_media}}\n"
         "encoder: {heads: 4}\n",
         DV365_E_CONFIG, "divisible by encoder.heads"},
        {"dim: 6\n" VOCAB TABLES "slices:\n  - {name: a, pool: {media: pos_media}}\n",
         DV365_E_CONFIG, "add an encoder section"},
        {"dim: 8\n" VOCAB TABLES "slices:\n  - {name: a, pool: {media: pos_media}}\n"
         "encoder: {blocks: 0, k_lce: 0}\n",
         DV365_E_CONFIG, "blocks > 0 or k_lce > 0"},
        {"dim: 8\n" VOCAB TABLES "slices:\n  - {name: a, pool: {media: pos_media}}\n"
         "encoder: {init_std: -1}\n",
         DV365_E_CONFIG, "init_std"},
        {"dim: 8\n" VOCAB TABLES "slices:\n  - {name: a, pool: {media: pos_media}}\n"
         "pooling: {init_std: inf}\n",
         DV365_E_NONFINITE, "finite"},
#define BASE "dim: 8\n" VOCAB TABLES "slices:\n  - {name: a, pool: {media: pos_media}}\nencoder: {heads: 2}\n"
        {BASE "backbone: {tasks: [{name: x, type: ordinal}]}\n", DV365_E_CONFIG, "binary or regression"},
        {BASE "backbone: {tasks: [{name: x, type: binary, log1p: true}]}\n", DV365_E_CONFIG,
         "regression tasks only"},
        {BASE "backbone: {tasks: [{name: x, type: binary}, {name: x, type: binary}]}\n",
         DV365_E_CONFIG, "listed twice"},
        {BASE "backbone: {tasks: [{name: x, type: binary, weight: -1}]}\n", DV365_E_CONFIG, ">= 0"},
        {BASE "backbone: {tasks: []}\n", DV365_E_CONFIG, "1 to 256"},
        {BASE "backbone: {item_tables: {isbn: 5}}\n", DV365_E_CONFIG, "unknown id field 'isbn'"},
        {BASE "backbone: {top: [0]}\n", DV365_E_CONFIG, "backbone.top must be in"},
        {BASE "backbone: {wide: 1}\n", DV365_E_CONFIG, "unknown key 'wide' in backbone"},
        {BASE "backbone: {extra_tokens: 5000}\n", DV365_E_CONFIG, "backbone.extra_tokens must be in"},
        {BASE "backbone: {extra_tokens: -1}\n", DV365_E_CONFIG, "whole number"},
        {BASE "training: {gap: yesterday}\n", DV365_E_CONFIG, "duration like"},
        {BASE "training: {optimizer: {type: sgd}}\n", DV365_E_CONFIG, "adam or adamw"},
        {BASE "training: {optimizer: {lr: 0}}\n", DV365_E_CONFIG, "lr must be > 0"},
        {BASE "training: {optimizer: {beta1: 1.0}}\n", DV365_E_CONFIG, "[0, 1)"},
        {BASE "training: {optimizer: {decay: cosine, warmup: 10, total_steps: 5}}\n", DV365_E_CONFIG,
         "schedule"},
        {BASE "training: {embedding_optimizer: {type: sgd}}\n", DV365_E_CONFIG, "rowwise_adagrad"},
        {BASE "training: {clip_grad_norm: -1}\n", DV365_E_CONFIG, ">= 0"},
        {BASE "training: {batch_size: 0}\n", DV365_E_CONFIG, "batch_size must be in"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dv365_config *cfg = (dv365_config *)(uintptr_t)1; /* must stay untouched */
        dv365_status st = parse(cases[i].yaml, &cfg);
        if (st != cases[i].code)
            fail_msg("case %zu: got %d, expected %d: %s", i, (int)st, (int)cases[i].code,
                     dv365_last_error());
        if (!strstr(dv365_last_error(), cases[i].needle))
            fail_msg("case %zu: message \"%s\" lacks \"%s\"", i, dv365_last_error(),
                     cases[i].needle);
        assert_true(cfg == (dv365_config *)(uintptr_t)1);
    }
}

static void test_bad_arguments(void **state)
{
    (void)state;
    dv365_config *cfg;
    ASSERT_ERR(dv365_config_parse(NULL, 0, &cfg), DV365_E_NULL, "yaml");
    ASSERT_ERR(dv365_config_parse("dim: 8", 6, NULL), DV365_E_NULL, "out");
    ASSERT_ERR(dv365_config_parse("dim: 8\0x", 8, &cfg), DV365_E_PARSE, "NUL");
    ASSERT_ERR(dv365_config_load("/nonexistent/dv365.yaml", &cfg), DV365_E_IO,
               "/nonexistent/dv365.yaml");
    /* the error message names the file and the place */
    char path[] = "/tmp/dv365_cfg_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("dim: 8\nbogus: 1\n", f);
    fclose(f);
    char needle[64];
    snprintf(needle, sizeof needle, "%s:2:1: unknown key 'bogus'", path);
    ASSERT_ERR(dv365_config_load(path, &cfg), DV365_E_CONFIG, needle);
    remove(path);
    assert_int_equal(dv365_config_dim(NULL), 0);
    assert_int_equal(dv365_config_num_slices(NULL), 0);
    assert_null(dv365_config_slice_name(NULL, 0));
    dv365_config_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_config),
        cmocka_unit_test(test_default_config),
        cmocka_unit_test(test_backbone_and_training),
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
