/* test_faults.c — faults from outside the library:
 *  - a trainer process SIGKILLed at seeded moments, many of them inside
 *    dv365_trainer_save: the newest complete checkpoint resumes and continues
 *    with bitwise the losses of an unbroken run;
 *  - a generator process SIGKILLed during a store refresh: a reader process
 *    opening the store afterwards sees the previous generation, complete;
 *  - a full disk (a small tmpfs, else RLIMIT_FSIZE) under every writer:
 *    DV365_E_IO with a readable message, the previous file intact, no
 *    temporary file left, the handle usable once there is room again;
 *  - the n-th allocation failing for every n along whole paths: a clean
 *    DV365_E_NOMEM and no block leaked.
 *
 * The killed processes are this executable started again with
 * "--child <role> ..." (fork + exec, so each child is a fresh process). */
#include "testutil.h"

#include "internal.h"
#include "world.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char g_dir[64];                     /* the tiny world and everything else */
static char g_tl[128], g_train[128];       /* its timeline and train files */
static char g_model_dir[128];              /* a saved small model (seed 11) */
static char g_self[4096];                  /* this executable, for the children */
static char g_cfg_path[4096];              /* configs/small.yaml */
static int64_t g_cutoff;                   /* the world's embed time */
static size_t g_users = 16;                /* users of the world */

static char pathbuf[192];
static const char *at(const char *name)
{
    snprintf(pathbuf, sizeof pathbuf, "%s/%s", g_dir, name);
    return pathbuf;
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void sleep_us(double us)
{
    if (us <= 0)
        return;
    struct timespec ts = {(time_t)(us / 1e6), (long)(fmod(us, 1e6) * 1e3)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Files whose name holds ".tmp." (the atomic writers' temporaries) under
 * path, recursively. */
static size_t count_temp_files(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char sub[1024];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        if (strstr(e->d_name, ".tmp."))
            n++;
        struct stat sb;
        if (lstat(sub, &sb) == 0 && S_ISDIR(sb.st_mode))
            n += count_temp_files(sub);
    }
    closedir(d);
    return n;
}

/* ------------------------------------------------------------------------ */
/* children: this executable with --child                                    */
/* ------------------------------------------------------------------------ */

/* What a child tells its parent through a pipe (16 bytes: atomic). */
typedef struct msg {
    uint32_t tag;
    uint32_t pad;
    uint64_t value;
} msg;

static void send_msg(int fd, char tag, uint64_t value)
{
    msg m = {(uint32_t)tag, 0, value};
    if (write(fd, &m, sizeof m) != (ssize_t)sizeof m)
        _exit(90);
}

/* Start this executable as a child with args (NULL-terminated); fd stays
 * open in the child (the write end of a pipe, or -1). */
static pid_t spawn(const char *const *args)
{
    const char *argv[16];
    size_t n = 0;
    argv[n++] = g_self;
    argv[n++] = "--child";
    for (size_t i = 0; args[i] && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        execv(g_self, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Train one step at a time up to max_steps, checkpointing after each step
 * into ckpt; "S" before a save, "D" after it.  Resumes when ckpt has a
 * checkpoint. */
static int child_train(const char *dir, const char *ckpt, uint64_t max_steps, int fd)
{
    char tl[256], train[256], latest[300];
    snprintf(tl, sizeof tl, "%s/timelines.dvt", dir);
    snprintf(train, sizeof train, "%s/train.dve", dir);
    snprintf(latest, sizeof latest, "%s/LATEST", ckpt);
    dv365_model *m;
    dv365_trainer *t;
    if (access(latest, F_OK) == 0) {
        if (dv365_trainer_resume(ckpt, &m, &t))
            return 2;
    } else if (dv365_model_init(test_source_path("configs/small.yaml"), 5, &m) ||
               dv365_trainer_create(m, &t)) {
        return 3;
    }
    while (dv365_trainer_steps(t) < max_steps) {
        if (dv365_trainer_train_files(t, tl, train, 1, NULL, NULL, 1))
            return 4;
        send_msg(fd, 'S', dv365_trainer_steps(t));
        if (dv365_trainer_save(t, ckpt))
            return 5;
        send_msg(fd, 'D', dv365_trainer_steps(t));
    }
    dv365_trainer_free(t);
    dv365_model_free(m);
    return 0;
}

static int gen_progress(void *ctx, size_t done, size_t total)
{
    (void)total;
    send_msg(*(int *)ctx, 'P', done);
    return 0;
}

/* Generate a new generation (created) of the store from the world's
 * timelines with the saved model; "P" after each checkpoint, "E" at the end. */
static int child_generate(const char *dir, const char *store, int64_t created, int64_t cutoff,
                          int fd)
{
    char model_dir[256], tl[256];
    snprintf(model_dir, sizeof model_dir, "%s/model", dir);
    snprintf(tl, sizeof tl, "%s/timelines.dvt", dir);
    dv365_model *m;
    dv365_store *s;
    if (dv365_model_load(model_dir, &m) || dv365_store_open(store, 0, 0, &s))
        return 2;
    dv365_generate_options o;
    dv365_generate_options_init(&o);
    o.batch = 3;
    o.created = created;
    o.progress = gen_progress;
    o.progress_ctx = &fd;
    if (dv365_generate(m, tl, cutoff, s, &o))
        return 3;
    uint64_t gen;
    if (dv365_store_info(s, &gen, NULL, NULL, NULL, NULL, NULL))
        return 4;
    send_msg(fd, 'E', gen);
    dv365_store_close(s);
    dv365_model_free(m);
    return 0;
}

/* Open the store read-only and check its current generation blob by blob
 * against embedding every user of the timeline file afresh: sends
 * G (generation), C (created), N (users stored), M (users matching). */
static int child_read(const char *dir, const char *store, int64_t cutoff, int fd)
{
    char model_dir[256], tl[256];
    snprintf(model_dir, sizeof model_dir, "%s/model", dir);
    snprintf(tl, sizeof tl, "%s/timelines.dvt", dir);
    dv365_model *m;
    dv365_store *s;
    if (dv365_model_load(model_dir, &m) || dv365_store_open(store, DV365_STORE_READONLY, 0, &s))
        return 2;
    uint64_t gen, fp;
    int64_t created;
    size_t count, k, d;
    if (dv365_store_info(s, &gen, &fp, &created, &count, &k, &d))
        return 3;
    send_msg(fd, 'G', gen);
    send_msg(fd, 'C', (uint64_t)created);
    send_msg(fd, 'N', count);
    if (fp != dv365_model_fingerprint(m) || k != dv365_model_num_tokens(m) ||
        d != dv365_model_dim(m))
        return 4;
    size_t bs = dv365_blob_size(k, d), matched = 0;
    float *U = malloc(k * d * sizeof *U);
    uint8_t *want = malloc(bs), *got = malloc(bs);
    dv365_workspace *ws;
    dv365_timeline_reader *r;
    dv365_timeline *t;
    if (!U || !want || !got || dv365_workspace_create(&ws) ||
        dv365_timeline_reader_open(tl, dv365_model_config(m), &r) ||
        dv365_timeline_create(dv365_model_config(m), &t))
        return 5;
    for (;;) {
        uint64_t uid;
        int done;
        if (dv365_timeline_reader_next(r, &uid, t, &done))
            return 6;
        if (done)
            break;
        const dv365_timeline *one[1] = {t};
        size_t n;
        if (dv365_model_embed(m, ws, 1, one, &cutoff, U, 1) ||
            dv365_blob_encode(U, k, d, fp, created, DV365_Q4_MINMAX, want, bs))
            return 7;
        if (dv365_store_get(s, uid, got, bs, &n) == DV365_OK && n == bs && !memcmp(got, want, bs))
            matched++;
    }
    send_msg(fd, 'M', matched);
    dv365_timeline_free(t);
    dv365_timeline_reader_free(r);
    dv365_workspace_free(ws);
    free(U);
    free(want);
    free(got);
    dv365_store_close(s);
    dv365_model_free(m);
    return 0;
}

static int child_main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    const char *role = argv[2];
    if (!strcmp(role, "train") && argc == 7)
        return child_train(argv[3], argv[4], strtoull(argv[5], NULL, 10), atoi(argv[6]));
    if (!strcmp(role, "generate") && argc == 8)
        return child_generate(argv[3], argv[4], strtoll(argv[5], NULL, 10),
                              strtoll(argv[6], NULL, 10), atoi(argv[7]));
    if (!strcmp(role, "read") && argc == 7)
        return child_read(argv[3], argv[4], strtoll(argv[5], NULL, 10), atoi(argv[6]));
    return 99;
}

/* Read one message; 0 at end of file (every writer gone). */
static int recv_msg(int fd, msg *m)
{
    size_t got = 0;
    while (got < sizeof *m) {
        ssize_t r = read(fd, (char *)m + got, sizeof *m - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        got += (size_t)r;
    }
    return 1;
}

/* ------------------------------------------------------------------------ */
/* fixture                                                                   */
/* ------------------------------------------------------------------------ */

static int setup(void **state)
{
    (void)state;
    if (test_make_tmpdir(g_dir, sizeof g_dir, "faults"))
        return -1;
    snprintf(g_cfg_path, sizeof g_cfg_path, "%s", test_source_path("configs/small.yaml"));
    dv365_config *cfg;
    if (dv365_config_load(g_cfg_path, &cfg))
        return -1;
    world_params p;
    world_preset("tiny", &p);
    p.n_users = g_users;
    char catalog[512];
    snprintf(catalog, sizeof catalog, "%s",
             test_source_path("data/kuairand/kuairand-pure/video_features_basic_pure.csv"));
    p.catalog_csv = catalog;
    world *w;
    char err[256];
    if (world_create(&p, cfg, &w, err, sizeof err) ||
        world_write(w, g_dir, NULL, NULL, NULL, err, sizeof err)) {
        fprintf(stderr, "world: %s\n", err);
        return -1;
    }
    g_cutoff = world_embed_time(w);
    world_free(w);
    dv365_config_free(cfg);
    snprintf(g_tl, sizeof g_tl, "%s/timelines.dvt", g_dir);
    snprintf(g_train, sizeof g_train, "%s/train.dve", g_dir);
    snprintf(g_model_dir, sizeof g_model_dir, "%s/model", g_dir);
    dv365_model *m;
    if (dv365_model_init(g_cfg_path, 11, &m) || dv365_model_save(m, g_model_dir))
        return -1;
    dv365_model_free(m);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    umount2(at("disk"), MNT_DETACH); /* if a test left it mounted */
    return test_remove_tmpdir(g_dir);
}

/* ------------------------------------------------------------------------ */
/* 1. the trainer killed mid-checkpoint                                      */
/* ------------------------------------------------------------------------ */

#define MAX_STEPS 40

/* train_files progress: keep the loss of the (one) step. */
static int record_loss(void *ctx, uint64_t step, uint64_t total, double loss)
{
    (void)step;
    (void)total;
    *(double *)ctx = loss;
    return 0;
}

static void test_trainer_killed_mid_checkpoint(void **state)
{
    (void)state;
    /* The unbroken run: the loss of step s+1 and the fingerprint after s
     * steps.  A few saves on the way time a checkpoint, to aim the kills
     * (and show that saving does not disturb training). */
    double ref_loss[MAX_STEPS + 1];
    uint64_t ref_fp[MAX_STEPS + 2];
    dv365_model *m;
    dv365_trainer *t;
    ASSERT_OK(dv365_model_init(g_cfg_path, 5, &m));
    ASSERT_OK(dv365_trainer_create(m, &t));
    ref_fp[0] = dv365_model_fingerprint(m);
    double t_step = 0, t_save = 0;
    for (int s = 0; s <= MAX_STEPS; s++) {
        double t0 = now_us();
        ASSERT_OK(dv365_trainer_train_files(t, g_tl, g_train, 1, record_loss, &ref_loss[s], 1));
        t_step += now_us() - t0;
        ref_fp[s + 1] = dv365_model_fingerprint(m);
        if (s < 3) {
            t0 = now_us();
            ASSERT_OK(dv365_trainer_save(t, at("timing_ckpt")));
            t_save += now_us() - t0;
        }
    }
    dv365_trainer_free(t);
    dv365_model_free(m);
    t_step /= MAX_STEPS + 1;
    t_save /= 3;

    const char *ckpt = at("ckpt");
    char ckpt_dir[256];
    snprintf(ckpt_dir, sizeof ckpt_dir, "%s", ckpt);
    dv_rng rng;
    dv_rng_seed(&rng, 2024);
    enum { KILLS = 14 };
    int inside_save = 0, no_checkpoint = 0, kills = 0;
    uint64_t resumed_at = 0;
    for (int round = 0; round <= KILLS; round++) {
        bool last = round == KILLS; /* the last child runs to its end */
        uint64_t target = last ? resumed_at + 3 : MAX_STEPS;
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        char fdarg[16], steps[32];
        snprintf(fdarg, sizeof fdarg, "%d", fds[1]);
        snprintf(steps, sizeof steps, "%llu", (unsigned long long)target);
        const char *args[] = {"train", g_dir, ckpt_dir, steps, fdarg, NULL};
        pid_t pid = spawn(args);
        assert_true(pid > 0);
        close(fds[1]);
        /* kill after the j-th "S" (j = 1 or 2) plus a delay that mostly
         * lands inside the save, sometimes in the next step */
        int j = 1 + (int)(dv_rng_next(&rng) % 2), seen_s = 0;
        double delay = dv_rng_uniform(&rng) * (t_save * 1.15 + (round % 4 == 3 ? t_step : 0));
        uint64_t last_done = resumed_at, in_flight = 0; /* the checkpoint it started from */
        msg mm;
        bool killed = false;
        while (recv_msg(fds[0], &mm)) {
            if (mm.tag == 'S') {
                in_flight = mm.value;
                if (!last && ++seen_s == j) {
                    sleep_us(delay);
                    kill(pid, SIGKILL);
                    killed = true;
                }
            } else if (mm.tag == 'D') {
                last_done = mm.value;
                in_flight = 0;
            }
        }
        close(fds[0]);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (killed) {
            if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
                fail_msg("round %d: child not killed (status 0x%x)", round, status);
            kills++;
            inside_save += in_flight != 0;
        } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fail_msg("round %d: child failed (status 0x%x)", round, status);
        }

        char latest[300];
        snprintf(latest, sizeof latest, "%s/LATEST", ckpt_dir);
        if (access(latest, F_OK) != 0) {
            /* killed before the first checkpoint was complete: nothing to
             * resume, and a clean error says so */
            assert_int_equal(last_done, 0);
            no_checkpoint++;
            dv365_status st = dv365_trainer_resume(ckpt_dir, &m, &t);
            assert_true(st != DV365_OK);
            assert_true(dv365_last_error()[0] != '\0');
            continue;
        }
        ASSERT_OK(dv365_trainer_resume(ckpt_dir, &m, &t));
        uint64_t step = dv365_trainer_steps(t);
        /* the last completed save, or the one in flight if it got as far
         * as writing LATEST before the kill */
        if (step != last_done && !(in_flight && step == in_flight))
            fail_msg("round %d: resumed at step %llu, last complete save %llu, in flight %llu",
                     round, (unsigned long long)step, (unsigned long long)last_done,
                     (unsigned long long)in_flight);
        assert_true(step <= MAX_STEPS);
        if (dv365_model_fingerprint(m) != ref_fp[step])
            fail_msg("round %d: the step-%llu checkpoint differs from the unbroken run", round,
                     (unsigned long long)step);
        dv365_model *lm;
        ASSERT_OK(dv365_model_load(ckpt_dir, &lm));
        assert_true(dv365_model_fingerprint(lm) == ref_fp[step]);
        dv365_model_free(lm);
        /* continuing gives the unbroken run's next step, bit for bit */
        double task0;
        ASSERT_OK(dv365_trainer_train_files(t, g_tl, g_train, 1, record_loss, &task0, 1));
        if (memcmp(&task0, &ref_loss[step], sizeof task0) != 0)
            fail_msg("round %d: step %llu after resume: loss %.9g, unbroken run %.9g", round,
                     (unsigned long long)step + 1, task0, ref_loss[step]);
        assert_true(dv365_model_fingerprint(m) == ref_fp[step + 1]);
        dv365_trainer_free(t);
        dv365_model_free(m);
        resumed_at = step;
        if (last)
            assert_int_equal(step, target);
    }
    size_t temps = count_temp_files(ckpt_dir);
    printf("trainer: %d kills (%d inside dv365_trainer_save, %d before any checkpoint), "
           "resumed at step %llu; %zu temporary files left by the kills, never loaded\n",
           kills, inside_save, no_checkpoint, (unsigned long long)resumed_at, temps);
    assert_int_equal(kills, KILLS);
    assert_true(inside_save > 0);
    assert_true(resumed_at > 0);
}

/* ------------------------------------------------------------------------ */
/* 2. the generator killed mid-refresh, seen by a reader process             */
/* ------------------------------------------------------------------------ */

typedef struct read_result {
    uint64_t gen, count, matched;
    int64_t created;
} read_result;

static read_result read_in_child(const char *store)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    char fdarg[16], cut[32];
    snprintf(fdarg, sizeof fdarg, "%d", fds[1]);
    snprintf(cut, sizeof cut, "%lld", (long long)g_cutoff);
    const char *args[] = {"read", g_dir, store, cut, fdarg, NULL};
    pid_t pid = spawn(args);
    assert_true(pid > 0);
    close(fds[1]);
    read_result r = {0};
    msg mm;
    while (recv_msg(fds[0], &mm)) {
        if (mm.tag == 'G')
            r.gen = mm.value;
        else if (mm.tag == 'C')
            r.created = (int64_t)mm.value;
        else if (mm.tag == 'N')
            r.count = mm.value;
        else if (mm.tag == 'M')
            r.matched = mm.value;
    }
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("reader process failed (status 0x%x)", status);
    return r;
}

static void test_reader_after_killed_refresh(void **state)
{
    (void)state;
    const char *store = at("store");
    char store_dir[256];
    snprintf(store_dir, sizeof store_dir, "%s", store);
    char cut[32];
    snprintf(cut, sizeof cut, "%lld", (long long)g_cutoff);
    const int64_t created0 = g_cutoff + 100;
    dv_rng rng;
    dv_rng_seed(&rng, 77);
    uint64_t good_gen = 0;
    int64_t good_created = 0;
    double t_batch = 0;
    enum { ROUNDS = 10 };
    int kills = 0, committed_anyway = 0, at_commit = 0;
    for (int round = 0; round < ROUNDS; round++) {
        int64_t created = created0 + round;
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        char fdarg[16], cr[32];
        snprintf(fdarg, sizeof fdarg, "%d", fds[1]);
        snprintf(cr, sizeof cr, "%lld", (long long)created);
        const char *args[] = {"generate", g_dir, store_dir, cr, cut, fdarg, NULL};
        pid_t pid = spawn(args);
        assert_true(pid > 0);
        close(fds[1]);
        /* round 0 runs to the end (the generation to keep) and times a
         * batch; later rounds are killed after the p-th checkpoint plus a
         * delay of up to two batches: inside puts or checkpoints; every
         * third round right after the last checkpoint, around the commit */
        int p = 1 + (int)(dv_rng_next(&rng) % 6), seen = 0;
        double delay = dv_rng_uniform(&rng) * 2 * t_batch, t_first = 0;
        if (round % 3 == 2) { /* aim at the commit: right after the last checkpoint */
            p = (int)((g_users + 2) / 3);
            delay = dv_rng_uniform(&rng) * t_batch / 2;
        }
        bool ended = false;
        msg mm;
        while (recv_msg(fds[0], &mm)) {
            if (mm.tag == 'P') {
                seen++;
                if (round == 0 && seen == 1)
                    t_first = now_us();
                if (round == 0 && seen == 3)
                    t_batch = (now_us() - t_first) / 2;
                if (round > 0 && seen == p) {
                    sleep_us(delay);
                    kill(pid, SIGKILL);
                }
            } else if (mm.tag == 'E') {
                ended = true;
            }
        }
        close(fds[0]);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (round == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0 && ended))
            fail_msg("the first generation failed (status 0x%x)", status);
        bool died = WIFSIGNALED(status);
        kills += died;
        at_commit += died && seen == (int)((g_users + 2) / 3); /* all puts checkpointed */

        read_result r = read_in_child(store_dir);
        if (!died) { /* finished before the kill: the new generation */
            assert_int_equal(r.gen, good_gen + 1);
            assert_int_equal(r.created, created);
        } else if (r.gen == good_gen + 1) { /* killed after its commit */
            assert_int_equal(r.created, created);
            committed_anyway++;
        } else { /* the previous generation, untouched */
            assert_int_equal(r.gen, good_gen);
            assert_int_equal(r.created, good_created);
        }
        assert_true(r.count > 0);
        if (r.matched != r.count)
            fail_msg("round %d: generation %llu: %llu of %llu users match", round,
                     (unsigned long long)r.gen, (unsigned long long)r.matched,
                     (unsigned long long)r.count);
        good_gen = r.gen;
        good_created = r.created;
    }
    printf("store: %d generator kills (%d during the commit, %d after it), reader processes "
           "saw a complete generation each time (last: %llu)\n",
           kills, at_commit - committed_anyway, committed_anyway, (unsigned long long)good_gen);
    assert_true(kills - committed_anyway > 0);
}

/* ------------------------------------------------------------------------ */
/* 3. a full disk                                                            */
/* ------------------------------------------------------------------------ */

/* A small tmpfs in a mount namespace of our own (it disappears with the
 * process), filled to leave `room` bytes; or, where mounting is not
 * allowed (or DV365_FAULTS_NO_MOUNT is set), RLIMIT_FSIZE = room (SIGXFSZ
 * ignored) on a plain directory. */
static bool g_tmpfs;
static char g_disk[256];
static struct rlimit g_old_fsize;

static void disk_mount(void)
{
    snprintf(g_disk, sizeof g_disk, "%s", at("disk"));
    assert_int_equal(mkdir(g_disk, 0755), 0);
    g_tmpfs = !getenv("DV365_FAULTS_NO_MOUNT") && unshare(CLONE_NEWNS) == 0 &&
              mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 &&
              mount("tmpfs", g_disk, "tmpfs", 0, "size=64m") == 0;
    printf("full disk: %s\n", g_tmpfs ? "a 64 MiB tmpfs, filled" : "RLIMIT_FSIZE (no mount)");
}

static void disk_fill(size_t room)
{
    if (g_tmpfs) {
        struct statvfs vfs;
        assert_int_equal(statvfs(g_disk, &vfs), 0);
        size_t avail = (size_t)vfs.f_bavail * vfs.f_frsize;
        char filler[300];
        snprintf(filler, sizeof filler, "%s/filler", g_disk);
        int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        assert_true(fd >= 0);
        if (avail > room)
            assert_int_equal(posix_fallocate(fd, 0, (off_t)(avail - room)), 0);
        close(fd);
    } else {
        struct rlimit lim = {room, RLIM_INFINITY};
        assert_int_equal(getrlimit(RLIMIT_FSIZE, &g_old_fsize), 0);
        lim.rlim_max = g_old_fsize.rlim_max;
        signal(SIGXFSZ, SIG_IGN);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    }
}

static void disk_free(void)
{
    if (g_tmpfs) {
        char filler[300];
        snprintf(filler, sizeof filler, "%s/filler", g_disk);
        unlink(filler);
    } else {
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &g_old_fsize), 0);
    }
}

static void disk_unmount(void)
{
    if (g_tmpfs)
        assert_int_equal(umount2(g_disk, 0), 0);
}

/* The error of a write that ran out of room: DV365_E_IO naming why. */
static void assert_disk_error(dv365_status st, const char *what, size_t room)
{
    if (st != DV365_E_IO && !(st == DV365_E_NOMEM && strstr(dv365_last_error(), "map full")))
        fail_msg("%s with %zu bytes of room -> %d: %s", what, room, (int)st, dv365_last_error());
    /* RLIMIT_FSIZE gives EFBIG, or a short write that LMDB reports as EIO */
    const char *e = dv365_last_error();
    bool says = g_tmpfs ? strstr(e, "disk is full") != NULL
                        : strstr(e, "too large") || strstr(e, "Input/output error");
    if (!says)
        fail_msg("%s: message does not say the disk is full: %s", what, dv365_last_error());
}

static size_t file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (size_t)sb.st_size : 0;
}

/* Rooms to try: 0, then steps of about total/7 (page-aligned), until a
 * write of `total` bytes fits. */
static size_t next_room(size_t room, size_t total)
{
    size_t step = (total / 7 + 4095) & ~(size_t)4095;
    return room + (step ? step : 4096);
}

/* The data-file writers, driven by full_disk_writes. */
typedef struct data_ctx {
    dv365_config *cfg;
    size_t users;
    dv365_timeline **tls;
    uint64_t *ids;
    dv365_example_reader *ex;
} data_ctx;

typedef dv365_status (*write_fn)(data_ctx *c, const char *path, size_t n);
typedef size_t (*count_fn)(data_ctx *c, const char *path);

static dv365_status write_timelines(data_ctx *c, const char *path, size_t n)
{
    dv365_timeline_writer *w;
    dv365_status st = dv365_timeline_writer_open(path, c->cfg, &w);
    for (size_t i = 0; st == DV365_OK && i < n; i++)
        st = dv365_timeline_writer_add(w, c->ids[i], c->tls[i]);
    if (st == DV365_OK)
        st = dv365_timeline_writer_close(w);
    dv365_timeline_writer_free(w);
    return st;
}

/* Users in the file, every record read (and so checked) and compared. */
static size_t count_timelines(data_ctx *c, const char *path)
{
    dv365_timeline_reader *r;
    dv365_timeline *tl;
    ASSERT_OK(dv365_timeline_reader_open(path, c->cfg, &r));
    ASSERT_OK(dv365_timeline_create(c->cfg, &tl));
    size_t n = 0;
    for (;; n++) {
        uint64_t uid;
        int done;
        ASSERT_OK(dv365_timeline_reader_next(r, &uid, tl, &done));
        if (done)
            break;
        assert_true(uid == c->ids[n] && dv365_timeline_size(tl) == dv365_timeline_size(c->tls[n]));
    }
    assert_int_equal(n, dv365_timeline_reader_count(r));
    dv365_timeline_free(tl);
    dv365_timeline_reader_free(r);
    return n;
}

static dv365_status write_examples(data_ctx *c, const char *path, size_t n)
{
    size_t nd = dv365_example_reader_num_dense(c->ex), nt = dv365_example_reader_num_tasks(c->ex);
    float dense[64], labels[64];
    assert_true(nd <= 64 && nt <= 64);
    ASSERT_OK(dv365_example_reader_seek(c->ex, 0));
    dv365_example_writer *w;
    dv365_status st = dv365_example_writer_open(path, nd, nt, &w);
    for (size_t i = 0; st == DV365_OK && i < n; i++) {
        uint64_t uid, media, author, topic;
        int64_t lt;
        int done;
        ASSERT_OK(dv365_example_reader_next(c->ex, &uid, &lt, &media, &author, &topic, dense,
                                            labels, &done));
        st = dv365_example_writer_add(w, uid, lt, media, author, topic, dense, labels);
    }
    if (st == DV365_OK)
        st = dv365_example_writer_close(w);
    dv365_example_writer_free(w);
    return st;
}

static size_t count_examples(data_ctx *c, const char *path)
{
    (void)c;
    dv365_example_reader *r;
    ASSERT_OK(dv365_example_reader_open(path, &r));
    size_t n = 0;
    for (;; n++) {
        uint64_t uid, media, author, topic;
        int64_t lt;
        int done;
        float dense[64], labels[64];
        ASSERT_OK(dv365_example_reader_next(r, &uid, &lt, &media, &author, &topic, dense, labels,
                                            &done));
        if (done)
            break;
    }
    assert_int_equal(n, dv365_example_reader_count(r));
    dv365_example_reader_free(r);
    return n;
}

/* A first file of 3 records with room; then rewrite it with n or n-1
 * records on a disk filled to leave 0, step, 2 step, ... bytes until it
 * fits.  After each try: no temporary file, and the file at path is the
 * last one written whole.  Returns the failures. */
static size_t full_disk_writes(const char *what, const char *path, size_t total, size_t n,
                               write_fn write, count_fn count, data_ctx *c)
{
    ASSERT_OK(write(c, path, 3));
    size_t good = 3, failures = 0;
    for (size_t room = 0, i = 0;; room = next_room(room, total), i++) {
        size_t want = n - (i % 2);
        disk_fill(room);
        dv365_status st = write(c, path, want);
        disk_free();
        assert_int_equal(count_temp_files(g_disk), 0);
        if (st == DV365_OK) {
            good = want;
        } else {
            assert_disk_error(st, what, room);
            failures++;
        }
        assert_int_equal(count(c, path), good);
        if (st == DV365_OK)
            break;
        if (room > 2 * total + 65536)
            fail_msg("%s never succeeded", what);
    }
    printf("  %s: %zu full-disk failures (file %zu bytes)\n", what, failures, total);
    return failures;
}

/* Remove the step directories of ckpt but the one of step keep (failed
 * saves leave partial ones behind; they take room but are never loaded). */
static void prune_checkpoints(const char *ckpt, uint64_t keep)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "find '%s' -mindepth 1 -maxdepth 1 -name 'step-*' ! -name 'step-%012llu' "
             "-exec rm -rf {} +",
             ckpt, (unsigned long long)keep);
    assert_int_equal(system(cmd), 0);
}

static void test_full_disk(void **state)
{
    (void)state;
    disk_mount();
    char path[400], path2[512];
    size_t faults = 0;

    /* model save: the previous model directory stays loadable */
    {
        dv365_model *a, *b;
        ASSERT_OK(dv365_model_init(g_cfg_path, 21, &a));
        ASSERT_OK(dv365_model_init(g_cfg_path, 22, &b));
        snprintf(path, sizeof path, "%s/model", g_disk);
        ASSERT_OK(dv365_model_save(a, path));
        snprintf(path2, sizeof path2, "%s/weights.safetensors", path);
        size_t total = file_size(path2);
        uint64_t good = dv365_model_fingerprint(a);
        size_t n = 0;
        for (size_t room = 0; room < total; room = next_room(room, total), n++) {
            /* save the model that is not on disk */
            dv365_model *src = dv365_model_fingerprint(a) == good ? b : a;
            disk_fill(room);
            dv365_status st = dv365_model_save(src, path);
            disk_free();
            assert_true(st != DV365_OK);
            assert_disk_error(st, "model save", room);
            faults++;
            assert_int_equal(count_temp_files(g_disk), 0);
            dv365_model *l;
            ASSERT_OK(dv365_model_load(path, &l));
            assert_true(dv365_model_fingerprint(l) == good);
            dv365_model_free(l);
            /* with room again, the same handle saves */
            ASSERT_OK(dv365_model_save(src, path));
            ASSERT_OK(dv365_model_load(path, &l));
            assert_true(dv365_model_fingerprint(l) == dv365_model_fingerprint(src));
            good = dv365_model_fingerprint(src);
            dv365_model_free(l);
        }
        printf("  model save: %zu full-disk failures\n", n);
        dv365_model_free(a);
        dv365_model_free(b);
    }

    /* trainer save: LATEST keeps naming the previous checkpoint */
    {
        dv365_model *m;
        dv365_trainer *t;
        ASSERT_OK(dv365_model_init(g_cfg_path, 5, &m));
        ASSERT_OK(dv365_trainer_create(m, &t));
        snprintf(path, sizeof path, "%s/ckpt", g_disk);
        ASSERT_OK(dv365_trainer_save(t, path));
        snprintf(path2, sizeof path2, "%s/step-000000000000", path);
        char cmd[700];
        snprintf(cmd, sizeof cmd, "du -sb '%s' > '%s/du.txt'", path2, g_dir);
        assert_int_equal(system(cmd), 0);
        size_t total = 0;
        FILE *f = fopen(at("du.txt"), "r");
        assert_true(f && fscanf(f, "%zu", &total) == 1);
        fclose(f);
        uint64_t good_step = 0;
        size_t n = 0;
        for (size_t room = 0; room < total; room = next_room(room, total), n++) {
            ASSERT_OK(dv365_trainer_train_files(t, g_tl, g_train, 1, NULL, NULL, 1));
            disk_fill(room);
            dv365_status st = dv365_trainer_save(t, path);
            disk_free();
            assert_true(st != DV365_OK);
            assert_disk_error(st, "trainer save", room);
            faults++;
            assert_int_equal(count_temp_files(g_disk), 0);
            dv365_model *rm;
            dv365_trainer *rt;
            ASSERT_OK(dv365_trainer_resume(path, &rm, &rt));
            assert_int_equal(dv365_trainer_steps(rt), good_step);
            dv365_trainer_free(rt);
            dv365_model_free(rm);
            ASSERT_OK(dv365_trainer_save(t, path));
            ASSERT_OK(dv365_trainer_resume(path, &rm, &rt));
            good_step = dv365_trainer_steps(t);
            assert_int_equal(dv365_trainer_steps(rt), good_step);
            assert_true(dv365_model_fingerprint(rm) == dv365_model_fingerprint(m));
            dv365_trainer_free(rt);
            dv365_model_free(rm);
            prune_checkpoints(path, good_step); /* as a user would: keep the newest */
        }
        printf("  trainer save: %zu full-disk failures (checkpoint %zu bytes)\n", n, total);
        dv365_trainer_free(t);
        dv365_model_free(m);
    }

    /* timeline and example writers: the previous file stays whole */
    {
        data_ctx c = {0};
        ASSERT_OK(dv365_config_load(g_cfg_path, &c.cfg));
        dv365_timeline_reader *r;
        ASSERT_OK(dv365_timeline_reader_open(g_tl, c.cfg, &r));
        c.users = dv365_timeline_reader_count(r);
        c.tls = calloc(c.users, sizeof *c.tls);
        c.ids = calloc(c.users, sizeof *c.ids);
        for (size_t i = 0; i < c.users; i++) {
            int done;
            ASSERT_OK(dv365_timeline_create(c.cfg, &c.tls[i]));
            ASSERT_OK(dv365_timeline_reader_next(r, &c.ids[i], c.tls[i], &done));
        }
        dv365_timeline_reader_free(r);
        ASSERT_OK(dv365_example_reader_open(g_train, &c.ex));
        snprintf(path, sizeof path, "%s/tl.dvt", g_disk);
        faults += full_disk_writes("timeline writer", path, file_size(g_tl), c.users,
                                   write_timelines, count_timelines, &c);
        snprintf(path, sizeof path, "%s/ex.dve", g_disk);
        faults += full_disk_writes("example writer", path, file_size(g_train),
                                   dv365_example_reader_count(c.ex), write_examples,
                                   count_examples, &c);
        dv365_example_reader_free(c.ex);
        for (size_t i = 0; i < c.users; i++)
            dv365_timeline_free(c.tls[i]);
        free(c.tls);
        free(c.ids);
        dv365_config_free(c.cfg);
    }

    /* store generation: readers keep the previous generation; the same
     * store handle generates again once there is room */
    {
        dv365_model *m;
        ASSERT_OK(dv365_model_load(g_model_dir, &m));
        snprintf(path, sizeof path, "%s/store", g_disk);
        dv365_store *s;
        ASSERT_OK(dv365_store_open(path, 0, 4u << 20, &s));
        dv365_generate_options o;
        dv365_generate_options_init(&o);
        o.batch = 4;
        o.created = g_cutoff;
        ASSERT_OK(dv365_generate(m, g_tl, g_cutoff, s, &o));
        snprintf(path2, sizeof path2, "%s/data.mdb", path);
        size_t total = file_size(path2), n = 0;
        uint64_t good_gen = 1;
        int64_t good_created = g_cutoff;
        for (size_t room = 0;; room += 4096, n++) {
            o.created = g_cutoff + 1 + (int64_t)n;
            disk_fill(room);
            dv365_status st = dv365_generate(m, g_tl, g_cutoff, s, &o);
            disk_free();
            if (st == DV365_OK) {
                good_gen++;
                good_created = o.created;
            } else {
                assert_disk_error(st, "store generation", room);
                faults++;
            }
            uint64_t gen;
            int64_t created;
            size_t count;
            ASSERT_OK(dv365_store_info(s, &gen, NULL, &created, &count, NULL, NULL));
            assert_true(gen == good_gen && created == good_created && count > 0);
            /* every blob readable, of the current generation */
            dv365_store_reader *rd;
            ASSERT_OK(dv365_store_reader_create(s, &rd));
            ASSERT_OK(dv365_store_reader_begin(rd));
            for (uint64_t uid = 1; uid <= count; uid++) {
                const uint8_t *blob;
                size_t size;
                int64_t bc;
                ASSERT_OK(dv365_store_reader_get(rd, uid, &blob, &size));
                ASSERT_OK(dv365_blob_inspect(blob, size, NULL, &bc, NULL, NULL));
                assert_true(bc == good_created);
            }
            dv365_store_reader_end(rd);
            dv365_store_reader_free(rd);
            if (st == DV365_OK)
                break;
            if (room > 4 * total + (1u << 20))
                fail_msg("store generation never succeeded");
        }
        printf("  store generation: %zu full-disk failures (data.mdb %zu bytes)\n", n, total);
        /* and the store handle keeps working */
        o.created = g_cutoff + 999;
        ASSERT_OK(dv365_generate(m, g_tl, g_cutoff, s, &o));
        dv365_store_close(s);
        dv365_model_free(m);
    }
    disk_unmount();
    printf("full disk: %zu write failures injected\n", faults);
}

/* ------------------------------------------------------------------------ */
/* 4. the n-th allocation failing, for every n, along whole paths            */
/* ------------------------------------------------------------------------ */

static size_t g_count, g_fail_at;
static long g_live;

static void *failing_alloc(void *o, size_t n)
{
    (void)o;
    if (++g_count == g_fail_at)
        return NULL;
    void *p = malloc(n);
    if (p)
        g_live++;
    return p;
}

static void counting_free(void *o, void *p)
{
    (void)o;
    g_live--;
    free(p);
}

typedef dv365_status (*path_fn)(void *ctx);

/* Run fn with allocation n failing, for n = 1, 2, ... until fn makes no
 * more than n-1 allocations.  Each run must give DV365_E_NOMEM with a
 * message (or succeed, if the failure was absorbed) and leave no block
 * alive.  Returns the number of failures injected. */
static size_t sweep(const char *name, path_fn fn, void *ctx)
{
    size_t faults = 0, absorbed = 0, allocs = 0;
    for (g_fail_at = 1;; g_fail_at++) {
        g_count = 0;
        g_live = 0;
        ASSERT_OK(dv365_set_allocator(failing_alloc, counting_free, NULL));
        dv365_status st = fn(ctx);
        char err[512];
        snprintf(err, sizeof err, "%s", dv365_last_error());
        ASSERT_OK(dv365_set_allocator(NULL, NULL, NULL));
        if (g_live != 0)
            fail_msg("%s: allocation %zu failing: %ld blocks leaked (status %d: %s)", name,
                     g_fail_at, g_live, (int)st, err);
        bool injected = g_count >= g_fail_at;
        if (!injected) {
            if (st != DV365_OK)
                fail_msg("%s: fails without an injected fault: %d: %s", name, (int)st, err);
            allocs = g_count;
            break;
        }
        faults++;
        if (st == DV365_OK) {
            absorbed++;
            continue;
        }
        if (st != DV365_E_NOMEM || err[0] == '\0')
            fail_msg("%s: allocation %zu failing -> %d (%s): %s", name, g_fail_at, (int)st,
                     dv365_status_string(st), err);
    }
    printf("  %-26s %5zu allocations, %5zu faults injected (%zu absorbed)\n", name, allocs, faults,
           absorbed);
    return faults;
}

typedef struct oom_ctx {
    char *yaml;
    size_t yaml_len;
    dv365_model *model;    /* read-only paths */
    dv365_model *train;    /* trained in place by the trainer path */
    const dv365_timeline *tls[2];
    int64_t cutoffs[2];
    float *X, *U;
    uint8_t *blob;
    size_t blob_size;
    char dir[256];
} oom_ctx;

static dv365_status p_config(void *vc)
{
    oom_ctx *c = vc;
    dv365_config *cfg;
    dv365_status st = dv365_config_parse(c->yaml, c->yaml_len, &cfg);
    if (st == DV365_OK)
        dv365_config_free(cfg);
    return st;
}

static dv365_status p_model_init(void *vc)
{
    (void)vc;
    dv365_model *m;
    dv365_status st = dv365_model_init(g_cfg_path, 3, &m);
    if (st == DV365_OK)
        dv365_model_free(m);
    return st;
}

static dv365_status p_model_save_load(void *vc)
{
    oom_ctx *c = vc;
    char dir[300];
    snprintf(dir, sizeof dir, "%s/oom_model", c->dir);
    dv365_model *m;
    dv365_status st = dv365_model_save(c->model, dir);
    if (st == DV365_OK && (st = dv365_model_load(dir, &m)) == DV365_OK) {
        if (dv365_model_fingerprint(m) != dv365_model_fingerprint(c->model))
            st = dv_error(DV365_E_INTERNAL, "loaded model differs");
        dv365_model_free(m);
    }
    if (count_temp_files(dir) != 0)
        return dv_error(DV365_E_INTERNAL, "temporary file left in %s", dir);
    return st;
}

static dv365_status p_timeline(void *vc)
{
    oom_ctx *c = vc;
    enum { n = 700 };
    static int64_t t[n];
    static uint64_t ids[3 * n];
    static int32_t codes[3 * n];
    static float ms[2 * n];
    for (size_t i = 0; i < n; i++) {
        t[i] = 1700000000 - (int64_t)((i * 7919) % n) * 600;
        ids[i] = i * 31;
        ids[n + i] = i % 50;
        ids[2 * n + i] = i % 13;
        codes[i] = (int32_t)(i % 8);
        codes[n + i] = (int32_t)(i % 3);
        codes[2 * n + i] = (int32_t)(i % 5);
        ms[i] = 30000;
        ms[n + i] = (float)(i * 97 % 40000);
    }
    dv365_timeline *tl;
    dv365_status st = dv365_timeline_create(dv365_model_config(c->model), &tl);
    if (st)
        return st;
    /* three appends: the timeline grows and merges out-of-order events */
    for (size_t k = 0; k < 3 && st == DV365_OK; k++) {
        size_t a = k * n / 3, b = (k + 1) * n / 3;
        st = dv365_timeline_append(tl, b - a, t + a, ids + a, ids + n + a, ids + 2 * n + a,
                                   codes + a, codes + n + a, codes + 2 * n + a, ms + a,
                                   ms + n + a);
    }
    if (st == DV365_OK && dv365_timeline_size(tl) != n)
        st = dv_error(DV365_E_INTERNAL, "timeline lost events");
    dv365_timeline_free(tl);
    return st;
}

static dv365_status p_pool(void *vc)
{
    oom_ctx *c = vc;
    dv365_pooler *pl = dv365_model_pooler(c->model);
    size_t N = dv365_model_num_slices(c->model), D = dv365_model_dim(c->model);
    dv365_workspace *ws = NULL;
    dv365_pool_grad *g = NULL;
    dv365_status st;
    if ((st = dv365_workspace_create(&ws)) || (st = dv365_pool_grad_create(pl, &g)) ||
        (st = dv365_pool_forward(pl, ws, c->tls[0], c->cutoffs[0], c->X, NULL, NULL)))
        goto out;
    for (size_t i = 0; i < N * D; i++) /* dX: anything finite */
        c->U[i] = (float)(i % 7) - 3;
    st = dv365_pool_backward(pl, ws, c->tls[0], c->cutoffs[0], c->U, g);
out:
    dv365_pool_grad_free(g);
    dv365_workspace_free(ws);
    return st;
}

static dv365_status p_encode(void *vc)
{
    oom_ctx *c = vc;
    dv365_workspace *ws;
    dv365_status st = dv365_workspace_create(&ws);
    if (st)
        return st;
    st = dv365_encode(dv365_model_encoder(c->model), ws, 2, c->X, c->U, 1);
    dv365_workspace_free(ws);
    return st;
}

static dv365_status p_embed(void *vc)
{
    oom_ctx *c = vc;
    dv365_workspace *ws;
    dv365_status st = dv365_workspace_create(&ws);
    if (st)
        return st;
    st = dv365_model_embed(c->model, ws, 2, c->tls, c->cutoffs, c->U, 2);
    dv365_workspace_free(ws);
    return st;
}

static dv365_status p_blob(void *vc)
{
    oom_ctx *c = vc;
    size_t K = dv365_model_num_tokens(c->model), D = dv365_model_dim(c->model);
    dv365_status st = dv365_blob_encode(c->U, K, D, 7, 1700000000, DV365_Q4_GREEDY, c->blob,
                                        c->blob_size);
    if (st == DV365_OK)
        st = dv365_blob_decode(c->blob, c->blob_size, 7, K, D, c->X);
    return st;
}

static dv365_status p_trainer_step(void *vc)
{
    oom_ctx *c = vc;
    uint64_t fp = dv365_model_fingerprint(c->train);
    dv365_trainer *t;
    dv365_status st = dv365_trainer_create(c->train, &t);
    if (st)
        return st;
    uint64_t items[6] = {1, 2, 3, 4, 5, 6};
    float dense[2 * WORLD_N_DENSE] = {0.5f, 1};
    float labels[12] = {1, 0, 0, 1, 0, 12.5f, 0, 0, 1, 0, 1, 2.0f};
    int64_t lt[2] = {c->cutoffs[0], c->cutoffs[1]};
    double loss;
    st = dv365_trainer_step(t, 2, c->tls, lt, items, dense, labels, &loss, 1);
    dv365_trainer_free(t);
    /* a failed step leaves the model as it was */
    if (st != DV365_OK && dv365_model_fingerprint(c->train) != fp)
        return dv_error(DV365_E_INTERNAL, "a failed step changed the model");
    return st;
}

static dv365_status p_trainer_save_resume(void *vc)
{
    oom_ctx *c = vc;
    char dir[300];
    snprintf(dir, sizeof dir, "%s/oom_ckpt", c->dir);
    dv365_trainer *t, *rt;
    dv365_model *rm;
    dv365_status st = dv365_trainer_create(c->train, &t);
    if (st)
        return st;
    st = dv365_trainer_save(t, dir);
    dv365_trainer_free(t);
    if (st == DV365_OK && (st = dv365_trainer_resume(dir, &rm, &rt)) == DV365_OK) {
        dv365_trainer_free(rt);
        dv365_model_free(rm);
    }
    if (count_temp_files(dir) != 0)
        return dv_error(DV365_E_INTERNAL, "temporary file left in %s", dir);
    return st;
}

static dv365_status p_store(void *vc)
{
    oom_ctx *c = vc;
    char dir[300];
    snprintf(dir, sizeof dir, "%s/oom_store", c->dir);
    dv365_store *s;
    dv365_store_gen *g;
    dv365_status st = dv365_store_open(dir, DV365_STORE_NOSYNC, 1u << 20, &s);
    if (st)
        return st;
    if ((st = dv365_store_begin_generation(s, 7, 1700000000, &g)) == DV365_OK) {
        for (uint64_t u = 1; u <= 3 && st == DV365_OK; u++)
            st = dv365_store_put(g, u, c->blob, c->blob_size);
        if (st == DV365_OK)
            st = dv365_store_commit_generation(g);
        dv365_store_generation_free(g);
    }
    if (st == DV365_OK) {
        size_t size;
        uint8_t *buf = malloc(c->blob_size);
        st = dv365_store_get(s, 2, buf, c->blob_size, &size);
        if (st == DV365_OK && memcmp(buf, c->blob, size))
            st = dv_error(DV365_E_INTERNAL, "stored blob differs");
        free(buf);
        dv365_store_reader *r;
        const uint8_t *p;
        if (st == DV365_OK && (st = dv365_store_reader_create(s, &r)) == DV365_OK) {
            if ((st = dv365_store_reader_begin(r)) == DV365_OK) {
                st = dv365_store_reader_get(r, 3, &p, &size);
                dv365_store_reader_end(r);
            }
            dv365_store_reader_free(r);
        }
    }
    dv365_store_close(s);
    return st;
}

static dv365_status p_generate(void *vc)
{
    oom_ctx *c = vc;
    char dir[300];
    snprintf(dir, sizeof dir, "%s/oom_gen", c->dir);
    dv365_store *s;
    dv365_status st = dv365_store_open(dir, DV365_STORE_NOSYNC, 1u << 20, &s);
    if (st)
        return st;
    dv365_generate_options o;
    dv365_generate_options_init(&o);
    o.batch = 5;
    st = dv365_generate(c->model, g_tl, g_cutoff, s, &o);
    dv365_store_close(s);
    return st;
}

static dv365_status p_data_files(void *vc)
{
    oom_ctx *c = vc;
    char path[300];
    snprintf(path, sizeof path, "%s/oom.dvt", c->dir);
    const dv365_config *cfg = dv365_model_config(c->model);
    dv365_timeline_writer *w;
    dv365_status st = dv365_timeline_writer_open(path, cfg, &w);
    if (st)
        return st;
    for (uint64_t u = 0; u < 2 && st == DV365_OK; u++)
        st = dv365_timeline_writer_add(w, u + 1, c->tls[u]);
    if (st == DV365_OK)
        st = dv365_timeline_writer_close(w);
    dv365_timeline_writer_free(w);
    dv365_timeline_reader *r;
    dv365_timeline *tl;
    if (st == DV365_OK && (st = dv365_timeline_reader_open(path, cfg, &r)) == DV365_OK) {
        if ((st = dv365_timeline_create(cfg, &tl)) == DV365_OK) {
            uint64_t uid;
            int done = 0;
            while (st == DV365_OK && !done)
                st = dv365_timeline_reader_next(r, &uid, tl, &done);
            if (st == DV365_OK)
                st = dv365_timeline_reader_seek(r, 2);
            dv365_timeline_free(tl);
        }
        dv365_timeline_reader_free(r);
    }
    if (count_temp_files(c->dir) != 0)
        return dv_error(DV365_E_INTERNAL, "temporary file left in %s", c->dir);
    return st;
}

static void test_allocation_failures(void **state)
{
    (void)state;
    oom_ctx c = {0};
    snprintf(c.dir, sizeof c.dir, "%s", at("oom"));
    assert_int_equal(mkdir(c.dir, 0755), 0);
    FILE *f = fopen(g_cfg_path, "rb");
    assert_non_null(f);
    c.yaml = calloc(1, 1 << 16);
    c.yaml_len = fread(c.yaml, 1, (1 << 16) - 1, f);
    fclose(f);
    ASSERT_OK(dv365_model_load(g_model_dir, &c.model));
    ASSERT_OK(dv365_model_init(g_cfg_path, 5, &c.train));
    /* two users of the world */
    dv365_timeline_reader *r;
    dv365_timeline *tl[2];
    ASSERT_OK(dv365_timeline_reader_open(g_tl, dv365_model_config(c.model), &r));
    for (int i = 0; i < 2; i++) {
        uint64_t uid;
        int done;
        ASSERT_OK(dv365_timeline_create(dv365_model_config(c.model), &tl[i]));
        ASSERT_OK(dv365_timeline_reader_next(r, &uid, tl[i], &done));
        c.tls[i] = tl[i];
        c.cutoffs[i] = g_cutoff;
    }
    dv365_timeline_reader_free(r);
    size_t N = dv365_model_num_slices(c.model), D = dv365_model_dim(c.model);
    size_t K = dv365_model_num_tokens(c.model);
    c.X = calloc(2 * (K > N ? K : N) * D, sizeof *c.X);
    c.U = calloc(2 * (K > N ? K : N) * D, sizeof *c.U);
    c.blob_size = dv365_blob_size(K, D);
    c.blob = calloc(1, c.blob_size);
    for (size_t i = 0; i < 2 * N * D; i++)
        c.X[i] = sinf((float)i);
    ASSERT_OK(p_blob(&c)); /* a valid blob for the store path */

    static const struct {
        const char *name;
        path_fn fn;
    } paths[] = {
        {"config parse", p_config},
        {"model init", p_model_init},
        {"model save + load", p_model_save_load},
        {"timeline append", p_timeline},
        {"pool forward + backward", p_pool},
        {"encode", p_encode},
        {"embed (2 threads)", p_embed},
        {"blob encode + decode", p_blob},
        {"trainer create + step", p_trainer_step},
        {"trainer save + resume", p_trainer_save_resume},
        {"timeline file write + read", p_data_files},
        {"store put + get", p_store},
        {"generate", p_generate},
    };
    size_t total = 0;
    printf("allocation failures:\n");
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        total += sweep(paths[i].name, paths[i].fn, &c);
    printf("allocation failures: %zu faults injected in total\n", total);
    assert_true(total > 0);

    dv365_timeline_free(tl[0]);
    dv365_timeline_free(tl[1]);
    dv365_model_free(c.model);
    dv365_model_free(c.train);
    free(c.yaml);
    free(c.X);
    free(c.U);
    free(c.blob);
}

int main(int argc, char **argv)
{
    if (argc >= 3 && !strcmp(argv[1], "--child"))
        return child_main(argc, argv);
    ssize_t n = readlink("/proc/self/exe", g_self, sizeof g_self - 1);
    if (n <= 0)
        return 1;
    g_self[n] = '\0';
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trainer_killed_mid_checkpoint),
        cmocka_unit_test(test_reader_after_killed_refresh),
        cmocka_unit_test(test_full_disk),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
