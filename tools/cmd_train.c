/* cmd_train.c — `dv365 train` and `dv365 eval`: the foundation model in its
 * DLRM backbone, trained and evaluated from a data directory written by
 * `dv365 synth` (timelines.dvt, train.dve, eval.dve). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);

static void data_path(char *buf, size_t cap, const char *dir, const char *file)
{
    snprintf(buf, cap, "%s/%s", dir, file);
}

/* Print the metrics table of the trainer's last evaluation. */
static int print_eval(dv365_trainer *t, const dv365_config *cfg, const char *what)
{
    double loss;
    size_t n;
    dv365_status st = dv365_trainer_eval_loss(t, &loss, &n);
    if (st)
        return fail_status("eval", st);
    printf("%s: %zu examples, mean loss %.5f\n", what, n, loss);
    printf("  %-12s %-10s %8s %8s %10s\n", "task", "kind", "NE", "AUC", "MSE");
    for (size_t k = 0; k < dv365_config_num_tasks(cfg); k++) {
        double ne, auc, mse;
        if ((st = dv365_trainer_eval_result(t, k, &ne, &auc, &mse)))
            return fail_status("eval", st);
        int binary = dv365_config_task_is_binary(cfg, k);
        if (binary)
            printf("  %-12s %-10s %8.4f %8.4f %10s\n", dv365_config_task_name(cfg, k), "binary",
                   ne, auc, "-");
        else
            printf("  %-12s %-10s %8s %8s %10.4f\n", dv365_config_task_name(cfg, k),
                   "regression", "-", "-", mse);
    }
    return 0;
}

typedef struct train_progress {
    progress_bar bar;
    double loss_ema;
} train_progress;

static int on_step(void *ctx, uint64_t step, uint64_t total, double loss)
{
    train_progress *p = ctx;
    p->loss_ema = step == 1 ? loss : 0.9 * p->loss_ema + 0.1 * loss;
    snprintf(p->bar.extra, sizeof p->bar.extra, "loss %.4f", p->loss_ema);
    progress_show(&p->bar, (size_t)step, (size_t)total);
    return 0;
}

static const char *train_help =
    "usage: dv365 train --data DIR --out CHECKPOINT_DIR [--config FILE.yaml | --model DIR]\n"
    "                   [--resume] [--steps N] [--threads T] [--seed S] [--progress]\n"
    "                   [--examples NAME]\n"
    "Train the DV365 model (pooling tables + encoder) inside its DLRM backbone on\n"
    "DIR/timelines.dvt + DIR/train.dve (the history of each example ends\n"
    "training.gap before its label), evaluate it on DIR/eval.dve and write a\n"
    "checkpoint to CHECKPOINT_DIR (a model directory per step and a LATEST file;\n"
    "`dv365 embed --model CHECKPOINT_DIR` uses the newest).\n"
    "  --config   a fresh model from this config (default configs/default.yaml)\n"
    "  --model    start from a saved model instead\n"
    "  --resume   continue the newest checkpoint in CHECKPOINT_DIR exactly\n"
    "  --steps    optimizer steps of training.batch_size examples (default: one epoch)\n"
    "  --threads  threads per step (default 1); results do not depend on it\n"
    "  --seed     initialization seed of a fresh model (default 1)\n"
    "  --examples the example file in DIR to train on (default train.dve; `dv365 synth`\n"
    "             also writes pretrain.dve, DV365's own larger set in the same window)\n";

int cmd_train(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        fputs(train_help, stdout);
        return 0;
    }
    opt o[] = {{"data", NULL},  {"out", NULL},   {"config", "configs/default.yaml"},
               {"model", NULL}, {"steps", "0"},  {"threads", "1"},
               {"seed", "1"},   {"resume", NULL}, {"progress", NULL},
               {"examples", "train.dve"}};
    enum { DATA, OUT, CONFIG, MODEL, STEPS, THREADS, SEED, RESUME, PROGRESS, EXAMPLES, NOPTS };
    /* --resume and --progress are flags: accept them without a value */
    int resume = 0, force = 0;
    char *args[256];
    int n = take_resume_progress(argc, argv, args, 256, &resume, &force);
    const char *pos[1];
    size_t n_pos;
    uint64_t steps, threads, seed;
    if (parse_opts(n, args, o, NOPTS, pos, 0, &n_pos) || !o[DATA].value || !o[OUT].value ||
        opt_u64(&o[STEPS], &steps) || opt_u64(&o[THREADS], &threads) ||
        opt_u64(&o[SEED], &seed) || threads < 1 || threads > 256) {
        fputs(train_help, stderr);
        return EXIT_USAGE;
    }
    int rc = 0;
    dv365_model *model = NULL;
    dv365_trainer *t = NULL;
    char tl[4096], train[4096], eval[4096];
    data_path(tl, sizeof tl, o[DATA].value, "timelines.dvt");
    data_path(train, sizeof train, o[DATA].value, o[EXAMPLES].value);
    data_path(eval, sizeof eval, o[DATA].value, "eval.dve");

    double t0 = now_s();
    if (resume) {
        TRY("resume", dv365_trainer_resume(o[OUT].value, &model, &t));
        printf("resumed %s at step %" PRIu64 "\n", o[OUT].value, dv365_trainer_steps(t));
    } else {
        if (o[MODEL].value)
            TRY("load model", dv365_model_load(o[MODEL].value, &model));
        else
            TRY("init model", dv365_model_init(o[CONFIG].value, seed, &model));
        TRY("trainer", dv365_trainer_create(model, &t));
    }
    const dv365_config *cfg = dv365_model_config(model);
    printf("model: N=%zu slices, D=%zu, K=%zu tokens, %zu tasks\n", dv365_model_num_slices(model),
           dv365_model_dim(model), dv365_model_num_tokens(model), dv365_config_num_tasks(cfg));

    train_progress prog;
    progress_init(&prog.bar, "train", "steps", force);
    uint64_t before = dv365_trainer_steps(t);
    double t_train = now_s();
    TRY("train", dv365_trainer_train_files(t, tl, train, steps, on_step, &prog, (int)threads));
    t_train = now_s() - t_train;
    uint64_t done_steps = dv365_trainer_steps(t) - before;
    printf("trained %" PRIu64 " steps in %.1f s (%.1f steps/s), step %" PRIu64 " in all\n",
           done_steps, t_train, (double)done_steps / t_train, dv365_trainer_steps(t));

    TRY("eval", dv365_trainer_eval_files(t, tl, eval, (int)threads));
    if ((rc = print_eval(t, cfg, "held-out (eval.dve)")))
        goto done;
    TRY("save", dv365_trainer_save(t, o[OUT].value));
    printf("checkpoint %s (model fingerprint %016" PRIx64 ") in %.1f s in all\n", o[OUT].value,
           dv365_model_fingerprint(model), now_s() - t0);
done:
    dv365_trainer_free(t);
    dv365_model_free(model);
    return rc;
}

static const char *eval_help =
    "usage: dv365 eval --model DIR --data DIR [--split eval|train] [--threads T]\n"
    "Evaluate a model (with its backbone) on DIR/<split>.dve: mean loss, NE (as\n"
    "TorchRec computes it) and AUC per binary task, MSE per regression task.\n";

int cmd_eval(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        fputs(eval_help, stdout);
        return 0;
    }
    opt o[] = {{"model", NULL}, {"data", NULL}, {"split", "eval"}, {"threads", "1"}};
    const char *pos[1];
    size_t n_pos;
    uint64_t threads;
    if (parse_opts(argc, argv, o, 4, pos, 0, &n_pos) || !o[0].value || !o[1].value ||
        opt_u64(&o[3], &threads) || threads < 1 || threads > 256 ||
        (strcmp(o[2].value, "eval") && strcmp(o[2].value, "train"))) {
        fputs(eval_help, stderr);
        return EXIT_USAGE;
    }
    int rc = 0;
    dv365_model *model = NULL;
    dv365_trainer *t = NULL;
    char tl[4096], ex[4096], file[16];
    snprintf(file, sizeof file, "%s.dve", o[2].value);
    data_path(tl, sizeof tl, o[1].value, "timelines.dvt");
    data_path(ex, sizeof ex, o[1].value, file);
    TRY("load model", dv365_model_load(o[0].value, &model));
    TRY("trainer", dv365_trainer_create(model, &t));
    TRY("eval", dv365_trainer_eval_files(t, tl, ex, (int)threads));
    rc = print_eval(t, dv365_model_config(model), ex);
done:
    dv365_trainer_free(t);
    dv365_model_free(model);
    return rc;
}
