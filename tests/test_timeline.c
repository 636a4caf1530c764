/* test_timeline.c — timeline validation, stable time order, derived values. */
#include "testutil.h"

#include "timeline.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *yaml = "version: 1\n"
                          "dim: 4\n"
                          "watch_score_gamma: 0.5\n"
                          "vocab:\n"
                          "  actions: [{name: view, explicit: false}, {name: like, explicit: true},\n"
                          "            {name: skip, explicit: false}]\n"
                          "  media_types: [video, photo]\n"
                          "  surfaces: [feed, reels, explore]\n"
                          "tables:\n"
                          "  - {name: media, rows: 16}\n"
                          "slices:\n"
                          "  - {name: all, pool: {media: media}}\n"
                          "encoder: {heads: 1}\n";

static int setup(void **state)
{
    dv365_config *cfg = NULL;
    if (dv365_config_parse(yaml, strlen(yaml), &cfg) != DV365_OK) {
        print_error("config: %s\n", dv365_last_error());
        return -1;
    }
    *state = cfg;
    return 0;
}

static int teardown(void **state)
{
    dv365_config_free(*state);
    return 0;
}

/* Columns of a batch of events, owned by the test. */
typedef struct batch {
    size_t n;
    int64_t *time;
    uint64_t *media, *author, *topic;
    int32_t *action, *media_type, *surface;
    float *duration, *dwell;
} batch;

static uint64_t rng_state = 1;
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Random valid events; media id = seq0 + index, so order can be traced. */
static batch batch_make(size_t n, uint64_t seq0, int64_t t0, int64_t span)
{
    batch b = {.n = n};
    b.time = calloc(n + 1, sizeof *b.time);
    b.media = calloc(n + 1, sizeof *b.media);
    b.author = calloc(n + 1, sizeof *b.author);
    b.topic = calloc(n + 1, sizeof *b.topic);
    b.action = calloc(n + 1, sizeof *b.action);
    b.media_type = calloc(n + 1, sizeof *b.media_type);
    b.surface = calloc(n + 1, sizeof *b.surface);
    b.duration = calloc(n + 1, sizeof *b.duration);
    b.dwell = calloc(n + 1, sizeof *b.dwell);
    for (size_t i = 0; i < n; i++) {
        b.time[i] = t0 + (span > 0 ? (int64_t)(rnd() % (uint64_t)span) : 0);
        b.media[i] = seq0 + i;
        b.author[i] = rnd();
        b.topic[i] = rnd() % 100;
        b.action[i] = (int32_t)(rnd() % 3);
        b.media_type[i] = (int32_t)(rnd() % 2);
        b.surface[i] = (int32_t)(rnd() % 3);
        b.duration[i] = (rnd() % 5 == 0) ? 0.0f : (float)(rnd() % 60000);
        b.dwell[i] = (float)(rnd() % 90000);
    }
    return b;
}

static void batch_free(batch *b)
{
    free(b->time);
    free(b->media);
    free(b->author);
    free(b->topic);
    free(b->action);
    free(b->media_type);
    free(b->surface);
    free(b->duration);
    free(b->dwell);
}

static dv365_status append(dv365_timeline *tl, const batch *b)
{
    return dv365_timeline_append(tl, b->n, b->time, b->media, b->author, b->topic, b->action,
                                 b->media_type, b->surface, b->duration, b->dwell);
}

static void test_create_free_null(void **state)
{
    const dv365_config *cfg = *state;
    dv365_timeline *tl = NULL;
    ASSERT_ERR(dv365_timeline_create(NULL, &tl), DV365_E_NULL, "'cfg'");
    ASSERT_ERR(dv365_timeline_create(cfg, NULL), DV365_E_NULL, "'out'");
    ASSERT_OK(dv365_timeline_create(cfg, &tl));
    assert_int_equal(dv365_timeline_size(tl), 0);
    assert_int_equal(dv365_timeline_size(NULL), 0);
    dv365_timeline_free(NULL);
    dv365_timeline_clear(NULL);
    /* n == 0 is a no-op, even without columns */
    ASSERT_OK(dv365_timeline_append(tl, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL));
    assert_int_equal(dv365_timeline_size(tl), 0);
    dv365_timeline_free(tl);
}

static void test_null_columns(void **state)
{
    const dv365_config *cfg = *state;
    dv365_timeline *tl = NULL;
    ASSERT_OK(dv365_timeline_create(cfg, &tl));
    batch b = batch_make(3, 0, 1000, 10);
    ASSERT_ERR(dv365_timeline_append(NULL, b.n, b.time, b.media, b.author, b.topic, b.action,
                                     b.media_type, b.surface, b.duration, b.dwell),
               DV365_E_NULL, "'tl'");
    const void *cols[9] = {b.time,       b.media,   b.author,   b.topic, b.action,
                           b.media_type, b.surface, b.duration, b.dwell};
    const char *names[9] = {"'time'",       "'media_id'", "'author_id'",   "'topic_id'", "'action'",
                            "'media_type'", "'surface'",  "'duration_ms'", "'dwell_ms'"};
    for (int c = 0; c < 9; c++) {
        const void *p[9];
        memcpy(p, cols, sizeof p);
        p[c] = NULL;
        ASSERT_ERR(dv365_timeline_append(tl, b.n, p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7],
                                         p[8]),
                   DV365_E_NULL, names[c]);
        assert_int_equal(dv365_timeline_size(tl), 0);
    }
    ASSERT_OK(append(tl, &b));
    assert_int_equal(dv365_timeline_size(tl), 3);
    batch_free(&b);
    dv365_timeline_free(tl);
}

/* Derived columns follow docs/timeline.md. */
static void test_derived_values(void **state)
{
    const dv365_config *cfg = *state;
    dv365_timeline *tl = NULL;
    ASSERT_OK(dv365_timeline_create(cfg, &tl));
    batch b = batch_make(500, 0, 0, 1000000);
    b.duration[0] = 0; /* zero duration: ratio and score are 0 */
    b.dwell[0] = 5000;
    b.duration[1] = 10000;
    b.dwell[1] = 0;
    ASSERT_OK(append(tl, &b));
    for (size_t k = 0; k < tl->n; k++) {
        size_t i = (size_t)tl->id[DV_FIELD_MEDIA][k]; /* media = original index */
        assert_int_equal(tl->time[k], b.time[i]);
        assert_int_equal(tl->action[k], b.action[i]);
        assert_int_equal(tl->is_explicit[k], b.action[i] == 1);
        double dw = b.dwell[i] / 1000.0, du = b.duration[i] / 1000.0;
        assert_true(tl->dwell_s[k] == dw);
        assert_true(fabs(tl->log_dwell[k] - log(1 + dw)) <= 1e-12 * (1 + log(1 + dw)));
        if (b.duration[i] == 0) {
            assert_true(tl->watch_ratio[k] == 0 && tl->watch_score[k] == 0);
        } else {
            double ratio = (double)b.dwell[i] / b.duration[i];
            double score = log(1 + dw) / log(1 + 0.5 * du);
            assert_true(fabs(tl->watch_ratio[k] - ratio) <= 1e-12 * ratio);
            assert_true(fabs(tl->watch_score[k] - score) <= 1e-9 * fmax(1, score));
        }
        /* weights are the documented quantities */
        assert_true(dv_event_weight(tl, k, DV_WEIGHT_NONE) == 1.0f);
        assert_true(dv_event_weight(tl, k, DV_WEIGHT_DWELL) == (float)dw);
        assert_true(dv_event_weight(tl, k, DV_WEIGHT_WATCH_RATIO) == (float)tl->watch_ratio[k]);
    }
    batch_free(&b);
    dv365_timeline_free(tl);
}

/* Check that the timeline equals the stable sort (by time, then append
 * order) of everything appended; media ids encode the append order. */
static void assert_stably_sorted(const dv365_timeline *tl)
{
    for (size_t k = 1; k < tl->n; k++) {
        assert_true(tl->time[k - 1] <= tl->time[k]);
        if (tl->time[k - 1] == tl->time[k])
            assert_true(tl->id[DV_FIELD_MEDIA][k - 1] < tl->id[DV_FIELD_MEDIA][k]);
    }
}

static void test_out_of_order_appends_are_stable(void **state)
{
    const dv365_config *cfg = *state;
    dv365_timeline *tl = NULL;
    ASSERT_OK(dv365_timeline_create(cfg, &tl));
    uint64_t seq = 0;
    size_t total = 0;
    /* batches with few distinct times (many ties), overlapping each other */
    for (int rep = 0; rep < 40; rep++) {
        size_t n = 1 + rnd() % 300;
        batch b = batch_make(n, seq, (int64_t)(rnd() % 50), 40);
        seq += n;
        total += n;
        ASSERT_OK(append(tl, &b));
        assert_int_equal(dv365_timeline_size(tl), total);
        assert_stably_sorted(tl);
        /* the other columns moved with the time column */
        for (size_t k = 0; k < tl->n; k++)
            if (tl->id[DV_FIELD_MEDIA][k] >= seq - n) {
                size_t i = (size_t)(tl->id[DV_FIELD_MEDIA][k] - (seq - n));
                assert_int_equal(tl->time[k], b.time[i]);
                assert_int_equal(tl->id[DV_FIELD_AUTHOR][k], b.author[i]);
                assert_int_equal(tl->surface[k], b.surface[i]);
                assert_true(tl->dwell_ms[k] == b.dwell[i]);
            }
        batch_free(&b);
    }
    /* an in-order append after that */
    batch b = batch_make(100, seq, 100, 0);
    ASSERT_OK(append(tl, &b));
    assert_stably_sorted(tl);
    batch_free(&b);
    dv365_timeline_free(tl);
}

static void test_clear_and_reuse(void **state)
{
    const dv365_config *cfg = *state;
    dv365_timeline *tl = NULL;
    ASSERT_OK(dv365_timeline_create(cfg, &tl));
    batch b = batch_make(1000, 0, 0, 100000);
    ASSERT_OK(append(tl, &b));
    size_t cap = tl->cap;
    int64_t *time_col = tl->time;
    dv365_timeline_clear(tl);
    assert_int_equal(dv365_timeline_size(tl), 0);
    ASSERT_OK(append(tl, &b));
    assert_int_equal(dv365_timeline_size(tl), 1000);
    assert_int_equal(tl->cap, cap);
    assert_ptr_equal(tl->time, time_col); /* memory kept */
    assert_stably_sorted(tl);
    batch_free(&b);
    dv365_timeline_free(tl);
}

static void test_lower_bound(void **state)
{
    const dv365_config *cfg = *state;
    dv365_timeline *tl = NULL;
    ASSERT_OK(dv365_timeline_create(cfg, &tl));
    assert_int_equal(dv_timeline_lower_bound(tl, 5), 0);
    batch b = batch_make(2000, 0, 0, 300);
    ASSERT_OK(append(tl, &b));
    for (int64_t t = -1; t <= 301; t++) {
        size_t lb = dv_timeline_lower_bound(tl, t), ref = 0;
        while (ref < tl->n && tl->time[ref] < t)
            ref++;
        assert_int_equal(lb, ref);
    }
    batch_free(&b);
    dv365_timeline_free(tl);
}

/* One bad field in event 2 of 4: the right code, a message naming the
 * event, the field and the value, and the timeline unchanged and usable. */
typedef struct bad_case {
    const char *field;
    int64_t time;
    int32_t action, media_type, surface;
    float duration, dwell;
    dv365_status code;
    const char *needle;
} bad_case;

static void test_bad_inputs(void **state)
{
    const dv365_config *cfg = *state;
    const float inf = INFINITY, nan = NAN;
    const bad_case cases[] = {
        {"time", -1, 0, 0, 0, 1, 1, DV365_E_TIMESTAMP, "before 1970"},
        {"time", INT64_MIN, 0, 0, 0, 1, 1, DV365_E_TIMESTAMP, "before 1970"},
        {"time", DV365_TIME_MAX + 1, 0, 0, 0, 1, 1, DV365_E_TIMESTAMP, "after 2100"},
        {"time", INT64_MAX, 0, 0, 0, 1, 1, DV365_E_TIMESTAMP, "after 2100"},
        {"action", 10, -1, 0, 0, 1, 1, DV365_E_INVALID, "action = -1"},
        {"action", 10, 3, 0, 0, 1, 1, DV365_E_INVALID, "action = 3"},
        {"media_type", 10, 0, 2, 0, 1, 1, DV365_E_INVALID, "media_type = 2"},
        {"media_type", 10, 0, -7, 0, 1, 1, DV365_E_INVALID, "media_type = -7"},
        {"surface", 10, 0, 0, 3, 1, 1, DV365_E_INVALID, "surface = 3"},
        {"surface", 10, 0, 0, INT32_MIN, 1, 1, DV365_E_INVALID, "surface ="},
        {"duration_ms", 10, 0, 0, 0, nan, 1, DV365_E_NONFINITE, "duration_ms = nan"},
        {"duration_ms", 10, 0, 0, 0, inf, 1, DV365_E_NONFINITE, "duration_ms = inf"},
        {"duration_ms", 10, 0, 0, 0, -1, 1, DV365_E_INVALID, "duration_ms = -1 is negative"},
        {"dwell_ms", 10, 0, 0, 0, 1, nan, DV365_E_NONFINITE, "dwell_ms = nan"},
        {"dwell_ms", 10, 0, 0, 0, 1, -inf, DV365_E_NONFINITE, "dwell_ms = -inf"},
        {"dwell_ms", 10, 0, 0, 0, 1, -0.5f, DV365_E_INVALID, "dwell_ms = -0.5 is negative"},
    };
    dv365_timeline *tl = NULL;
    ASSERT_OK(dv365_timeline_create(cfg, &tl));
    batch good = batch_make(50, 1000, 100, 1000);
    ASSERT_OK(append(tl, &good));

    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        batch b = batch_make(4, 0, 0, 1000);
        b.time[2] = cases[c].time;
        b.action[2] = cases[c].action;
        b.media_type[2] = cases[c].media_type;
        b.surface[2] = cases[c].surface;
        b.duration[2] = cases[c].duration;
        b.dwell[2] = cases[c].dwell;
        ASSERT_ERR(append(tl, &b), cases[c].code, cases[c].needle);
        test_assert_message_contains("event 2");
        test_assert_message_contains(cases[c].field);
        /* unchanged: same size, same events */
        assert_int_equal(dv365_timeline_size(tl), 50);
        for (size_t k = 0; k < 50; k++)
            assert_true(tl->id[DV_FIELD_MEDIA][k] >= 1000);
        batch_free(&b);
    }
    /* boundary values are accepted */
    batch b = batch_make(4, 5000, 0, 10);
    b.time[0] = 0;
    b.time[1] = DV365_TIME_MAX;
    b.duration[2] = 0;
    b.dwell[2] = 0;
    b.dwell[3] = 3.0e38f;
    b.action[3] = 2;
    b.media_type[3] = 1;
    b.surface[3] = 2;
    ASSERT_OK(append(tl, &b));
    assert_int_equal(dv365_timeline_size(tl), 54);
    assert_int_equal(tl->time[0], 0);
    assert_int_equal(tl->time[53], DV365_TIME_MAX);
    assert_stably_sorted(tl);
    batch_free(&b);
    batch_free(&good);
    dv365_timeline_free(tl);
}

/* A 75,000-event user appended in shuffled batches of 1,000. */
static void test_long_history(void **state)
{
    const dv365_config *cfg = *state;
    dv365_timeline *tl = NULL;
    ASSERT_OK(dv365_timeline_create(cfg, &tl));
    const int64_t t0 = 1700000000, year = 365 * 86400;
    uint64_t seq = 0;
    for (int k = 0; k < 75; k++) {
        int64_t start = t0 + (int64_t)((k * 37) % 75) * (year / 75);
        batch b = batch_make(1000, seq, start, year / 75 + 1000);
        seq += 1000;
        ASSERT_OK(append(tl, &b));
        batch_free(&b);
    }
    assert_int_equal(dv365_timeline_size(tl), 75000);
    assert_stably_sorted(tl);
    dv365_timeline_free(tl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_free_null),
        cmocka_unit_test(test_null_columns),
        cmocka_unit_test(test_derived_values),
        cmocka_unit_test(test_out_of_order_appends_are_stable),
        cmocka_unit_test(test_clear_and_reuse),
        cmocka_unit_test(test_lower_bound),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_long_history),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
