/* train_bench.c — training examples/s of the whole model (slice + pool +
 * encode + backbone + loss + backward + clipping + AdamW + row-wise Adagrad)
 * against the same model in PyTorch eager (bench/train_peer.py), same
 * config, weights, batch and thread count, in one run.
 *
 * usage: train_bench CONFIG PEER.py PYTHON [NTHREADS [EVENTS [USERS [BATCH]]]]
 *
 * USERS synthetic users (tools/synth_user.c) of EVENTS events each; a batch
 * of BATCH examples, BATCH/USERS per user at one label time (examples of a
 * user share one pool/encode pass on both sides).  The C side saves the
 * initial model, takes one step (warm-up; its loss is the check value) and
 * then times REPS steps on the same batch; the peer loads the same weights,
 * slices the raw events with boolean masks, pools with EmbeddingBag (sparse
 * gradients), runs the reference encoder and backbone of tests/reference/,
 * and must reproduce the first loss (same work) before it is timed.  Each
 * side reports its fastest step (other processes only ever add time).
 * Last line: the JSON summary. */
#include "config.h"
#include "dv365.h"
#include "internal.h"
#include "safetensors.h"
#include "synth_user.h"
#include "timeline.h"
#include "trajectory_spec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DIE(...)                                                                     \
    do {                                                                             \
        fprintf(stderr, "train_bench: " __VA_ARGS__);                                \
        fprintf(stderr, " (%s)\n", dv365_last_error());                              \
        exit(1);                                                                     \
    } while (0)

#include "benchutil.h" /* after DIE: keeps this one */

#define REPS 5
#define NOW INT64_C(1750000000)

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s CONFIG PEER.py PYTHON [NTHREADS [EVENTS [USERS [BATCH]]]]\n",
                argv[0]);
        return 2;
    }
    int nt = argc > 4 ? atoi(argv[4]) : 1;
    size_t events = argc > 5 ? strtoull(argv[5], NULL, 10) : 20000;
    size_t n_users = argc > 6 ? strtoull(argv[6], NULL, 10) : 16;
    size_t B = argc > 7 ? strtoull(argv[7], NULL, 10) : 64;
    if (nt < 1 || events == 0 || n_users == 0 || B < n_users)
        DIE("bad arguments");

    dv365_model *m;
    if (dv365_model_init(argv[1], 1, &m))
        DIE("model_init %s", argv[1]);
    const dv365_config *cfg = dv365_model_config(m);
    const size_t T = dv365_config_num_tasks(cfg), n_dense = dv365_config_num_dense(cfg);

    /* users and the batch */
    dv365_timeline **tl = calloc(n_users, sizeof *tl);
    const dv365_timeline **tls = calloc(B, sizeof *tls);
    int64_t *label = calloc(B, 8), *user = calloc(B, 8);
    uint64_t *items = calloc(3 * B, 8);
    float *dense = calloc(B * n_dense + 1, 4), *labels = calloc(B * T, 4);
    if (!tl || !tls || !label || !user || !items || !dense || !labels)
        DIE("out of memory");
    size_t total_events = 0;
    for (size_t u = 0; u < n_users; u++) {
        synth_events ev;
        if (dv365_timeline_create(cfg, &tl[u]) ||
            synth_user(cfg, 1000 + u, events, NOW, 200000, &ev) ||
            synth_events_append(&ev, tl[u]))
            DIE("user %zu", u);
        synth_events_free(&ev);
        total_events += events;
    }
    dv_rng rng;
    dv_rng_seed(&rng, 77);
    for (size_t b = 0; b < B; b++) {
        size_t u = b * n_users / B; /* B / n_users consecutive examples per user */
        user[b] = (int64_t)u;
        tls[b] = tl[u];
        label[b] = NOW - (int64_t)(u % 4) * 3600;
        uint64_t media = dv_rng_next(&rng) % 200000;
        items[3 * b] = media;
        items[3 * b + 1] = media / 16;
        items[3 * b + 2] = media * 7 % 997;
        for (size_t i = 0; i < n_dense; i++)
            dense[b * n_dense + i] = (float)dv_rng_normal(&rng);
        for (size_t i = 0; i < T; i++)
            labels[b * T + i] = dv365_config_task_is_binary(cfg, i)
                                    ? (dv_rng_uniform(&rng) < 0.3 ? 1.0f : 0.0f)
                                    : (float)(-20.0 * log(1.0 - dv_rng_uniform(&rng)));
    }

    /* everything the peer needs, before any step changes the weights */
    char dir[] = "/tmp/dv365_train_bench_XXXXXX", path[512], mdir[512], cmd[2048];
    if (!mkdtemp(dir))
        DIE("mkdtemp");
    snprintf(mdir, sizeof mdir, "%s/model", dir);
    if (dv365_model_save(m, mdir))
        DIE("model_save");
    snprintf(path, sizeof path, "%s/spec.json", dir);
    if (write_slice_spec(path, cfg))
        DIE("spec");

    /* the model's sizes and training settings (the peer rebuilds the model) */
    snprintf(path, sizeof path, "%s/train.json", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        DIE("cannot write %s", path);
    const dv_encoder_cfg *ec = &cfg->encoder;
    const dv_backbone_cfg *bc = &cfg->backbone;
    const dv_training_cfg *tc = &cfg->training;
    static const char *decay[] = {"constant", "linear", "cosine"};
    fprintf(f, "{\"encoder\": [%zu, %zu, %zu, %zu, %zu, %zu],\n", ec->blocks,
            ec->layers_per_block, ec->heads, ec->ffn, ec->stride, ec->k_lce);
    fprintf(f, "\"n_dense\": %zu, \"bottom\": [", bc->n_dense);
    for (size_t i = 0; i < bc->n_bottom; i++)
        fprintf(f, "%s%zu", i ? ", " : "", bc->bottom[i]);
    fputs("], \"top\": [", f);
    for (size_t i = 0; i < bc->n_top; i++)
        fprintf(f, "%s%zu", i ? ", " : "", bc->top[i]);
    fputs("],\n\"tasks\": [", f);
    for (size_t i = 0; i < bc->n_tasks; i++)
        fprintf(f, "%s[\"%s\", \"%s\", %.17g, %s]", i ? ", " : "", bc->task_names[i],
                bc->tasks[i].kind == DV_TASK_BINARY ? "binary" : "regression",
                bc->tasks[i].weight, bc->tasks[i].log1p_target ? "true" : "false");
    fprintf(f, "],\n\"optimizer\": {\"type\": \"%s\", \"lr\": %.17g, \"beta1\": %.17g, "
               "\"beta2\": %.17g, \"eps\": %.17g, \"weight_decay\": %.17g, \"warmup\": %llu, "
               "\"decay\": \"%s\", \"total_steps\": %llu, \"min_lr\": %.17g},\n",
            tc->adamw ? "adamw" : "adam", tc->dense_lr.base_lr, tc->beta1, tc->beta2, tc->eps,
            tc->weight_decay, (unsigned long long)tc->dense_lr.warmup_steps,
            decay[tc->dense_lr.decay], (unsigned long long)tc->dense_lr.total_steps,
            tc->dense_lr.min_lr);
    fprintf(f, "\"embedding\": {\"lr\": %.17g, \"eps\": %.17g}, \"clip\": %.17g}\n",
            tc->emb_lr, tc->emb_eps, tc->clip_norm);
    if (fclose(f))
        DIE("cannot write %s", path);

    /* ours: one warm-up step (the check loss), then REPS timed steps */
    dv365_trainer *t;
    if (dv365_trainer_create(m, &t))
        DIE("trainer_create");
    double loss1, loss, best = INFINITY;
    double t0 = now();
    if (dv365_trainer_step(t, B, tls, label, items, dense, labels, &loss1, nt))
        DIE("step");
    double first = now() - t0;
    for (int r = 0; r < REPS; r++) {
        t0 = now();
        if (dv365_trainer_step(t, B, tls, label, items, dense, labels, &loss, nt))
            DIE("step");
        best = DV_MIN(best, now() - t0);
    }

    dv_st_writer *w;
    size_t sb[1] = {B}, s3[2] = {B, 3}, sd[2] = {B, n_dense}, st[2] = {B, T};
    char val[64];
    if (dv_st_writer_create(&w))
        DIE("writer");
    for (size_t u = 0; u < n_users; u++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "user%zu", u);
        if (add_timeline(w, prefix, tl[u]))
            DIE("timeline tensors");
    }
    snprintf(val, sizeof val, "%.17g", loss1);
    if (dv_st_writer_add(w, "user", DV_DTYPE_I64, 1, sb, user) ||
        dv_st_writer_add(w, "label_time", DV_DTYPE_I64, 1, sb, label) ||
        dv_st_writer_add(w, "items", DV_DTYPE_U64, 2, s3, items) ||
        dv_st_writer_add(w, "dense", DV_DTYPE_F32, 2, sd, dense) ||
        dv_st_writer_add(w, "labels", DV_DTYPE_F32, 2, st, labels) ||
        dv_st_writer_set_metadata(w, "loss1", val))
        DIE("batch tensors");
    snprintf(path, sizeof path, "%s/batch.safetensors", dir);
    if (dv_st_writer_write(w, path))
        DIE("write batch");
    dv_st_writer_free(w);
    /* sizes for the report, then free everything: the peer's memory should
     * not compete with ours */
    const size_t N = cfg->n_slices, D = cfg->dim, K = dv_config_num_tokens(cfg);
    for (size_t u = 0; u < n_users; u++)
        dv365_timeline_free(tl[u]);
    dv365_trainer_free(t);
    dv365_model_free(m);

    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' %d %d", argv[3], argv[2], dir, nt, REPS);
    FILE *p = popen(cmd, "r");
    /* [0] dedup (distinct rows once, sparse.mm), [1] EmbeddingBag */
    double peer_loss1[2] = {NAN, NAN}, peer_best[2] = {0, 0}, peer_first[2] = {0, 0};
    char line[256];
    while (p && fgets(line, sizeof line, p)) {
        sscanf(line, "dedup loss1 %lf first %lf step %lf", &peer_loss1[0], &peer_first[0],
               &peer_best[0]);
        sscanf(line, "bag loss1 %lf first %lf step %lf", &peer_loss1[1], &peer_first[1],
               &peer_best[1]);
    }
    int rc = p ? pclose(p) : -1;
    const char *files[] = {"model/config.yaml", "model/weights.safetensors", "spec.json",
                           "batch.safetensors", "train.json"};
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(mdir);
    rmdir(dir);
    if (rc != 0 || !(peer_best[0] > 0) || !(peer_best[1] > 0))
        DIE("peer failed (%s)", cmd);
    double diff[2];
    for (int i = 0; i < 2; i++) {
        diff[i] = fabs(peer_loss1[i] - loss1) / fabs(loss1);
        if (!(diff[i] <= 1e-3))
            DIE("the peer's first loss %.6f differs from ours %.6f: not the same work",
                peer_loss1[i], loss1);
    }
    /* the faster PyTorch variant is the peer */
    int k = peer_best[0] <= peer_best[1] ? 0 : 1;
    double ours = (double)B / best, peer = (double)B / peer_best[k];
    printf("train step: N=%zu D=%zu K=%zu, %zu tasks, %d thread(s); batch %zu examples over %zu "
           "users (%zu pool/encode groups), %zu events per user (%zu in all)\n",
           N, D, K, T, nt, B, n_users, n_users, events, total_events);
    printf("first-step loss: ours %.6f, PyTorch %.6f / %.6f (rel diff %.1e / %.1e)\n\n", loss1,
           peer_loss1[0], peer_loss1[1], diff[0], diff[1]);
    printf("%-52s %10s %10s %8s\n", "work (seconds unless said)", "libdv365", "PyTorch", "ratio");
    static const char *name[2] = {"distinct rows + sparse.mm", "EmbeddingBag"};
    for (int i = 0; i < 2; i++) {
        char what[96];
        snprintf(what, sizeof what, "first step, peer %s", name[i]);
        printf("%-52s %10.3f %10.3f %8.2f\n", what, first, peer_first[i], peer_first[i] / first);
        snprintf(what, sizeof what, "step (fastest of %d), peer %s", REPS, name[i]);
        printf("%-52s %10.3f %10.3f %8.2f\n", what, best, peer_best[i], peer_best[i] / best);
    }
    printf("%-52s %10.1f %10.1f %8.2f\n", "training (examples/s), the faster peer", ours, peer,
           ours / peer);
    printf("{\"bench\": \"train\", \"unit\": \"examples/s\", \"ours\": %.2f, \"peer\": %.2f, "
           "\"ratio\": %.3f}\n",
           ours, peer, ours / peer);

    free(tl), free(tls), free(label), free(user), free(items), free(dense), free(labels);
    return 0;
}
