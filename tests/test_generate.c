/* test_generate.c — batch generation from a timeline file into the store:
 * same blobs as embedding users one by one, progress, interruption and
 * resume, argument errors. */
#include "testutil.h"

#include "generate.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOW INT64_C(1750000000)
#define N_USERS 45

static char tmpdir[64];
static char pathbuf[256];
static dv365_model *g_model;
static char g_file[256];

static const char *tmp_path(const char *name)
{
    snprintf(pathbuf, sizeof pathbuf, "%s/%s", tmpdir, name);
    return pathbuf;
}

/* n deterministic events over the 200 days before NOW. */
static dv365_timeline *make_timeline(const dv365_config *cfg, size_t n, uint64_t seed)
{
    int64_t *t = malloc((n + 1) * sizeof *t);
    uint64_t *ids = malloc(3 * (n + 1) * sizeof *ids);
    int32_t *codes = malloc(3 * (n + 1) * sizeof *codes);
    float *ms = malloc(2 * (n + 1) * sizeof *ms);
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        s = dv_mix64(s + i);
        t[i] = NOW - 200 * 86400 + (int64_t)(s % (200 * 86400 + 86400)); /* some after NOW */
        ids[i] = (s >> 20) % 5000;
        ids[n + i] = ids[i] / 10;
        ids[2 * n + i] = ids[i] % 97;
        codes[i] = (int32_t)((s >> 40) % 8);
        codes[n + i] = (int32_t)((s >> 44) % 3);
        codes[2 * n + i] = (int32_t)((s >> 48) % 5);
        ms[i] = 1000.0f + (float)((s >> 8) % 60000);
        ms[n + i] = (float)((s >> 30) % 40000);
    }
    dv365_timeline *tl;
    ASSERT_OK(dv365_timeline_create(cfg, &tl));
    if (n)
        ASSERT_OK(dv365_timeline_append(tl, n, t, ids, ids + n, ids + 2 * n, codes, codes + n,
                                        codes + 2 * n, ms, ms + n));
    free(t);
    free(ids);
    free(codes);
    free(ms);
    return tl;
}

/* User i of the test file: a scrambled id, 0..400 events (user 3 has none). */
static uint64_t user_id(size_t i) { return (dv_mix64(i + 1) >> 16) | 1; }
static size_t user_events(size_t i) { return i == 3 ? 0 : (size_t)(dv_mix64(i) % 400); }

static void write_file(const char *path, size_t n_users)
{
    const dv365_config *cfg = dv365_model_config(g_model);
    dv365_timeline_writer *w;
    ASSERT_OK(dv365_timeline_writer_open(path, cfg, &w));
    for (size_t i = 0; i < n_users; i++) {
        dv365_timeline *tl = make_timeline(cfg, user_events(i), i);
        ASSERT_OK(dv365_timeline_writer_add(w, user_id(i), tl));
        dv365_timeline_free(tl);
    }
    ASSERT_OK(dv365_timeline_writer_close(w));
    dv365_timeline_writer_free(w);
}

static int setup(void **state)
{
    (void)state;
    if (test_make_tmpdir(tmpdir, sizeof tmpdir, "gen"))
        return -1;
    if (dv365_model_init(test_source_path("configs/small.yaml"), 11, &g_model) != DV365_OK)
        return -1;
    snprintf(g_file, sizeof g_file, "%s/users.dvt", tmpdir);
    write_file(g_file, N_USERS);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    dv365_model_free(g_model);
    return test_remove_tmpdir(tmpdir);
}

/* Every user's blob in the store equals embedding that user alone (batch
 * 1, one thread) and encoding it with the same fingerprint and time. */
static void check_store_matches_one_by_one(dv365_store *s, int64_t cutoff, int64_t created)
{
    const dv365_config *cfg = dv365_model_config(g_model);
    size_t K = dv365_model_num_tokens(g_model), D = dv365_model_dim(g_model);
    size_t bs = dv365_blob_size(K, D);
    float *U = malloc(K * D * sizeof *U);
    uint8_t *want = malloc(bs), *got = malloc(bs);
    dv365_workspace *ws;
    ASSERT_OK(dv365_workspace_create(&ws));
    for (size_t i = 0; i < N_USERS; i++) {
        dv365_timeline *tl = make_timeline(cfg, user_events(i), i);
        const dv365_timeline *one[1] = {tl};
        ASSERT_OK(dv365_model_embed(g_model, ws, 1, one, &cutoff, U, 1));
        ASSERT_OK(dv365_blob_encode(U, K, D, dv365_model_fingerprint(g_model), created,
                                    DV365_Q4_MINMAX, want, bs));
        size_t n;
        ASSERT_OK(dv365_store_get(s, user_id(i), got, bs, &n));
        assert_int_equal(n, bs);
        if (memcmp(got, want, bs) != 0)
            fail_msg("user %zu (id %llu): stored blob differs from the one-by-one embedding", i,
                     (unsigned long long)user_id(i));
        dv365_timeline_free(tl);
    }
    dv365_workspace_free(ws);
    free(U);
    free(want);
    free(got);
}

typedef struct progress_log {
    size_t calls, first_done, last_done, total;
    size_t stop_after_calls; /* 0 = never stop */
    int monotonic;
} progress_log;

static int on_progress(void *ctx, size_t done, size_t total)
{
    progress_log *p = ctx;
    if (p->calls == 0)
        p->first_done = done;
    else if (done <= p->last_done)
        p->monotonic = 0;
    p->calls++;
    p->last_done = done;
    p->total = total;
    return p->stop_after_calls && p->calls >= p->stop_after_calls;
}

static void test_generate_matches_one_by_one(void **state)
{
    (void)state;
    const int64_t cutoff = NOW - 86400;
    dv365_store *s;
    ASSERT_OK(dv365_store_open(tmp_path("gen1"), DV365_STORE_NOSYNC, 0, &s));
    dv365_generate_options o;
    dv365_generate_options_init(&o);
    o.batch = 15;
    o.nthreads = 2; /* the blobs do not depend on the thread count */
    progress_log log = {.monotonic = 1};
    o.progress = on_progress;
    o.progress_ctx = &log;
    ASSERT_OK(dv365_generate(g_model, g_file, cutoff, s, &o));
    assert_int_equal(log.calls, 3);
    assert_int_equal(log.last_done, N_USERS);
    assert_int_equal(log.total, N_USERS);
    assert_true(log.monotonic);

    uint64_t gen, fp;
    int64_t created;
    size_t count, k, d;
    ASSERT_OK(dv365_store_info(s, &gen, &fp, &created, &count, &k, &d));
    assert_int_equal(gen, 1);
    assert_true(fp == dv365_model_fingerprint(g_model));
    assert_int_equal(created, cutoff); /* created defaults to the cutoff */
    assert_int_equal(count, N_USERS);
    assert_int_equal(k, dv365_model_num_tokens(g_model));
    assert_int_equal(d, dv365_model_dim(g_model));
    check_store_matches_one_by_one(s, cutoff, cutoff);

    /* A second run (other batch size, one thread, explicit creation time)
     * is the next generation, and its blobs again match. */
    dv365_generate_options_init(&o);
    o.batch = 64;
    o.created = NOW;
    ASSERT_OK(dv365_generate(g_model, g_file, cutoff, s, &o));
    ASSERT_OK(dv365_store_info(s, &gen, NULL, &created, &count, NULL, NULL));
    assert_int_equal(gen, 2);
    assert_int_equal(created, NOW);
    assert_int_equal(count, N_USERS);
    check_store_matches_one_by_one(s, cutoff, NOW);
    int64_t age;
    ASSERT_OK(dv365_store_age(s, user_id(0), NOW + 600, &age));
    assert_int_equal(age, 600);
    dv365_store_close(s);
}

static void test_interrupt_and_resume(void **state)
{
    (void)state;
    const int64_t cutoff = NOW;
    dv365_store *s;
    ASSERT_OK(dv365_store_open(tmp_path("resume"), DV365_STORE_NOSYNC, 0, &s));
    dv365_generate_options o;
    dv365_generate_options_init(&o);
    o.batch = 5;
    o.resume = 1; /* nothing pending yet: a fresh run */
    progress_log log = {.monotonic = 1, .stop_after_calls = 3};
    o.progress = on_progress;
    o.progress_ctx = &log;
    ASSERT_ERR(dv365_generate(g_model, g_file, cutoff, s, &o), DV365_E_STATE,
               "stopped by the progress callback after 15 of 45 users");
    /* nothing visible to readers */
    uint64_t gen;
    ASSERT_OK(dv365_store_info(s, &gen, NULL, NULL, NULL, NULL, NULL));
    assert_int_equal(gen, 0);
    dv365_store_close(s); /* as if the process ended */

    /* A resumed run with another cutoff is refused and changes nothing. */
    ASSERT_OK(dv365_store_open(tmp_path("resume"), DV365_STORE_NOSYNC, 0, &s));
    log = (progress_log){.monotonic = 1};
    ASSERT_ERR(dv365_generate(g_model, g_file, cutoff - 1, s, &o), DV365_E_MISMATCH, "cutoff");
    assert_int_equal(log.calls, 0);

    /* The resumed run continues after user 15, with another batch size,
     * and ends with the same blobs. */
    o.batch = 4;
    ASSERT_OK(dv365_generate(g_model, g_file, cutoff, s, &o));
    assert_int_equal(log.first_done, 15 + 4);
    assert_int_equal(log.last_done, N_USERS);
    assert_true(log.monotonic);
    size_t count;
    ASSERT_OK(dv365_store_info(s, &gen, NULL, NULL, &count, NULL, NULL));
    assert_int_equal(gen, 1);
    assert_int_equal(count, N_USERS);
    check_store_matches_one_by_one(s, cutoff, cutoff);

    /* Resume with nothing pending runs afresh: generation 2. */
    log = (progress_log){.monotonic = 1};
    ASSERT_OK(dv365_generate(g_model, g_file, cutoff, s, &o));
    assert_int_equal(log.first_done, 4);
    ASSERT_OK(dv365_store_info(s, &gen, NULL, NULL, &count, NULL, NULL));
    assert_int_equal(gen, 2);

    /* Stopped after the last batch: the resumed run only commits. */
    log = (progress_log){.monotonic = 1, .stop_after_calls = 12};
    o.batch = 4; /* 45 users = 12 batches */
    ASSERT_ERR(dv365_generate(g_model, g_file, cutoff, s, &o), DV365_E_STATE, "45 of 45");
    log = (progress_log){.monotonic = 1};
    ASSERT_OK(dv365_generate(g_model, g_file, cutoff, s, &o));
    assert_int_equal(log.calls, 0);
    ASSERT_OK(dv365_store_info(s, &gen, NULL, NULL, &count, NULL, NULL));
    assert_int_equal(gen, 3);
    assert_int_equal(count, N_USERS);
    check_store_matches_one_by_one(s, cutoff, cutoff);

    /* A pending run over another file is refused; without resume the
     * pending generation is discarded and a new one written. */
    log = (progress_log){.monotonic = 1, .stop_after_calls = 1};
    ASSERT_ERR(dv365_generate(g_model, g_file, cutoff, s, &o), DV365_E_STATE, "stopped");
    char other[256];
    snprintf(other, sizeof other, "%s/other.dvt", tmpdir);
    write_file(other, N_USERS - 1);
    log = (progress_log){.monotonic = 1};
    ASSERT_ERR(dv365_generate(g_model, other, cutoff, s, &o), DV365_E_MISMATCH,
               "another timeline file");
    o.resume = 0;
    ASSERT_OK(dv365_generate(g_model, other, cutoff, s, &o));
    ASSERT_OK(dv365_store_info(s, &gen, NULL, NULL, &count, NULL, NULL));
    assert_int_equal(gen, 4);
    assert_int_equal(count, N_USERS - 1);
    dv365_store_close(s);
}

static int kill_after_two(void *ctx, size_t done, size_t total)
{
    (void)ctx;
    (void)total;
    if (done >= 10)
        raise(SIGKILL); /* no cleanup at all, as a crash or kill -9 */
    return 0;
}

static void test_killed_process_resumes(void **state)
{
    (void)state;
    const int64_t cutoff = NOW - 3600;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) { /* the child generates until it is killed */
        dv365_store *s;
        dv365_generate_options o;
        dv365_generate_options_init(&o);
        o.batch = 5;
        o.progress = kill_after_two;
        if (dv365_store_open(tmp_path("killed"), 0, 0, &s) == DV365_OK)
            dv365_generate(g_model, g_file, cutoff, s, &o);
        _exit(1); /* not reached when the kill happens */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    dv365_store *s;
    ASSERT_OK(dv365_store_open(tmp_path("killed"), 0, 0, &s));
    uint64_t gen;
    ASSERT_OK(dv365_store_info(s, &gen, NULL, NULL, NULL, NULL, NULL));
    assert_int_equal(gen, 0); /* readers never saw the half-written generation */
    dv365_generate_options o;
    dv365_generate_options_init(&o);
    o.batch = 5;
    o.resume = 1;
    progress_log log = {.monotonic = 1};
    o.progress = on_progress;
    o.progress_ctx = &log;
    ASSERT_OK(dv365_generate(g_model, g_file, cutoff, s, &o));
    assert_int_equal(log.first_done, 15); /* continued after the 10 users written */
    size_t count;
    ASSERT_OK(dv365_store_info(s, &gen, NULL, NULL, &count, NULL, NULL));
    assert_int_equal(gen, 1);
    assert_int_equal(count, N_USERS);
    check_store_matches_one_by_one(s, cutoff, cutoff);
    dv365_store_close(s);
}

static void test_checkpoint_format(void **state)
{
    (void)state;
    dv_gen_checkpoint c = {.method = 1, .input_id = 2, .input_size = 3, .fingerprint = 4,
                           .cutoff = 5, .created = 6, .total = 8, .done = 7, .last_user = 9};
    unsigned char b[DV_GEN_CKPT_BYTES];
    dv_gen_checkpoint_write(&c, b);
    dv_gen_checkpoint r;
    ASSERT_OK(dv_gen_checkpoint_read(b, sizeof b, &r));
    assert_true(r.method == 1 && r.input_id == 2 && r.input_size == 3 && r.fingerprint == 4 &&
                r.cutoff == 5 && r.created == 6 && r.total == 8 && r.done == 7 &&
                r.last_user == 9);
    ASSERT_ERR(dv_gen_checkpoint_read(b, sizeof b - 1, &r), DV365_E_FORMAT, "not written");
    b[8] = 9;
    ASSERT_ERR(dv_gen_checkpoint_read(b, sizeof b, &r), DV365_E_VERSION, "version 9");
    c.done = 10; /* more done than total */
    dv_gen_checkpoint_write(&c, b);
    ASSERT_ERR(dv_gen_checkpoint_read(b, sizeof b, &r), DV365_E_FORMAT, "10 of 8");

    /* The file identity sees a change of content, not only of size. */
    uint64_t id1, id2, sz1, sz2;
    ASSERT_OK(dv_timeline_file_identity(g_file, &id1, &sz1));
    char copy[256];
    snprintf(copy, sizeof copy, "%s/ids.dvt", tmpdir);
    const dv365_config *cfg = dv365_model_config(g_model);
    dv365_timeline_writer *w;
    ASSERT_OK(dv365_timeline_writer_open(copy, cfg, &w));
    for (size_t i = 0; i < N_USERS; i++) { /* same events, other user ids */
        dv365_timeline *tl = make_timeline(cfg, user_events(i), i);
        ASSERT_OK(dv365_timeline_writer_add(w, user_id(i) + 2, tl));
        dv365_timeline_free(tl);
    }
    ASSERT_OK(dv365_timeline_writer_close(w));
    dv365_timeline_writer_free(w);
    ASSERT_OK(dv_timeline_file_identity(copy, &id2, &sz2));
    assert_int_equal(sz1, sz2);
    assert_true(id1 != id2);
    ASSERT_ERR(dv_timeline_file_identity(tmp_path("nope.dvt"), &id2, &sz2), DV365_E_IO, "nope");
}

static void test_generate_errors(void **state)
{
    (void)state;
    dv365_store *s;
    ASSERT_OK(dv365_store_open(tmp_path("errs"), DV365_STORE_NOSYNC, 0, &s));
    dv365_generate_options o;
    dv365_generate_options_init(&o);
    ASSERT_ERR(dv365_generate(NULL, g_file, NOW, s, &o), DV365_E_NULL, "model");
    ASSERT_ERR(dv365_generate(g_model, NULL, NOW, s, &o), DV365_E_NULL, "timelines_path");
    ASSERT_ERR(dv365_generate(g_model, g_file, NOW, NULL, &o), DV365_E_NULL, "store");
    ASSERT_ERR(dv365_generate(g_model, g_file, -1, s, &o), DV365_E_TIMESTAMP, "cutoff");
    o.batch = 0;
    ASSERT_ERR(dv365_generate(g_model, g_file, NOW, s, &o), DV365_E_INVALID, "batch");
    dv365_generate_options_init(&o);
    o.nthreads = 0;
    ASSERT_ERR(dv365_generate(g_model, g_file, NOW, s, &o), DV365_E_INVALID, "nthreads");
    dv365_generate_options_init(&o);
    o.struct_size = 8;
    ASSERT_ERR(dv365_generate(g_model, g_file, NOW, s, &o), DV365_E_INVALID, "struct_size");
    dv365_generate_options_init(&o);
    o.method = (dv365_q4_method)7;
    ASSERT_ERR(dv365_generate(g_model, g_file, NOW, s, &o), DV365_E_INVALID, "method");
    ASSERT_ERR(dv365_generate(g_model, tmp_path("missing.dvt"), NOW, s, NULL), DV365_E_IO,
               "missing.dvt");
    /* a file that is not a timeline file */
    FILE *f = fopen(tmp_path("junk.dvt"), "w");
    for (int i = 0; i < 100; i++)
        fputs("not a timeline file ", f);
    fclose(f);
    ASSERT_ERR(dv365_generate(g_model, tmp_path("junk.dvt"), NOW, s, NULL), DV365_E_FORMAT, "");
    uint64_t gen;
    ASSERT_OK(dv365_store_info(s, &gen, NULL, NULL, NULL, NULL, NULL));
    assert_int_equal(gen, 0);
    /* the store is still usable: NULL options = the defaults */
    ASSERT_OK(dv365_generate(g_model, g_file, NOW, s, NULL));
    dv365_store_close(s);

    ASSERT_OK(dv365_store_open(tmp_path("errs"), DV365_STORE_READONLY, 0, &s));
    ASSERT_ERR(dv365_generate(g_model, g_file, NOW, s, NULL), DV365_E_STATE, "read-only");
    dv365_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_matches_one_by_one),
        cmocka_unit_test(test_interrupt_and_resume),
        cmocka_unit_test(test_killed_process_resumes),
        cmocka_unit_test(test_checkpoint_format),
        cmocka_unit_test(test_generate_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
