/* pool_bench.c — slice + pool a synthetic 40K-event and a 70K-event user with
 * the default config, against the same work in PyTorch (bench/pool_peer.py:
 * boolean masks per slice + EmbeddingBag), one thread each, in one run.
 *
 * usage: pool_bench [config.yaml [pool_peer.py [python]]]
 *
 * The C side writes the events and the parsed slice rules to a temporary
 * folder, runs the peer on them, and checks that the peer's per-slice event
 * counts equal ours (so both sides did the same slicing).  Ours is timed
 * from raw columns: timeline build (validation, sort, derived values) +
 * slicing + pooling.  Last line: the JSON summary for the 40K user. */
#include "benchutil.h"
#include "config.h"
#include "dv365.h"
#include "internal.h"
#include "trajectory_spec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef DV365_SOURCE_ROOT
#define DV365_SOURCE_ROOT "."
#endif

/* ------------------------------------------------------------ synthetic user */

typedef struct user {
    size_t n;
    int64_t *time;
    uint64_t *id[3];
    int32_t *action, *media_type, *surface;
    float *duration, *dwell;
} user;

static uint64_t g_state = 12345;
static uint64_t rnd(void)
{
    uint64_t z = (g_state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}
static double unif(void) { return ((double)(rnd() >> 11) + 0.5) * 0x1.0p-53; }
static double normal(void) { return sqrt(-2 * log(unif())) * cos(6.283185307179586 * unif()); }

/* Zipf-like (density ~ 1/x) over [1, n], scrambled so popular ids are not small. */
static uint64_t zipf_id(double n, uint64_t salt)
{
    uint64_t rank = (uint64_t)exp(unif() * log(n));
    return rank * UINT64_C(0x9e3779b97f4a7c15) + salt;
}

static int32_t code_or(const dv365_config *cfg, dv365_vocab v, const char *name, int32_t dflt)
{
    int32_t c;
    return dv365_config_code(cfg, v, name, &c) == DV365_OK ? c : dflt;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* ~25% explicit events, a year of history before the cutoff (the last 24 h
 * after it, as in training), in time order as a history log is; videos with
 * log-normal durations, photos with none, dwell as a fraction of the
 * duration. */
static user make_user(const dv365_config *cfg, size_t n, int64_t cutoff)
{
    user u = {.n = n};
    u.time = malloc(n * sizeof *u.time);
    for (int f = 0; f < 3; f++)
        u.id[f] = malloc(n * sizeof *u.id[f]);
    u.action = malloc(n * sizeof *u.action);
    u.media_type = malloc(n * sizeof *u.media_type);
    u.surface = malloc(n * sizeof *u.surface);
    u.duration = malloc(n * sizeof *u.duration);
    u.dwell = malloc(n * sizeof *u.dwell);

    /* explicit codes with decreasing frequency, implicit ones uniform */
    int32_t expl[64], impl[64];
    size_t ne = 0, ni = 0, na = dv365_config_vocab_size(cfg, DV365_VOCAB_ACTION);
    for (size_t a = 0; a < na && a < 64; a++) {
        if (cfg->action_explicit[a])
            expl[ne++] = (int32_t)a;
        else
            impl[ni++] = (int32_t)a;
    }
    int32_t video = code_or(cfg, DV365_VOCAB_MEDIA_TYPE, "video", 0);
    size_t nm = dv365_config_vocab_size(cfg, DV365_VOCAB_MEDIA_TYPE);
    size_t ns = dv365_config_vocab_size(cfg, DV365_VOCAB_SURFACE);
    const int64_t year = 365 * 86400;
    for (size_t i = 0; i < n; i++) {
        u.time[i] = cutoff + 86400 - 1 - (int64_t)(unif() * (double)year);
        bool is_expl = ne > 0 && (ni == 0 || unif() < 0.25);
        if (is_expl) {
            size_t k = 0;
            while (k + 1 < ne && unif() < 0.45) /* like >> comment > share > ... */
                k++;
            u.action[i] = expl[k];
        } else {
            u.action[i] = impl[rnd() % ni];
        }
        uint64_t media = zipf_id(2e7, 1);
        uint64_t author = dv_mix64(media) % 2000000 + 1; /* each media has one author */
        u.id[DV_FIELD_MEDIA][i] = media;
        u.id[DV_FIELD_AUTHOR][i] = author;
        u.id[DV_FIELD_TOPIC][i] = dv_mix64(author) % 20000;
        double r = unif();
        u.media_type[i] = r < 0.6 ? video : (int32_t)(rnd() % nm);
        r = unif();
        u.surface[i] = r < 0.4 ? 0 : (int32_t)(rnd() % ns);
        if (u.media_type[i] == video) {
            double dur = exp(log(25000.0) + 0.9 * normal());
            double frac = pow(unif(), 1.5) * 1.3; /* sometimes watched more than once */
            u.duration[i] = (float)fmin(dur, 600000.0);
            u.dwell[i] = (float)(frac * u.duration[i]);
        } else {
            u.duration[i] = 0;
            u.dwell[i] = (float)exp(log(3000.0) + 0.8 * normal());
        }
    }
    qsort(u.time, n, sizeof *u.time, cmp_i64);
    return u;
}

static void free_user(user *u)
{
    free(u->time);
    for (int f = 0; f < 3; f++)
        free(u->id[f]);
    free(u->action);
    free(u->media_type);
    free(u->surface);
    free(u->duration);
    free(u->dwell);
}

/* ------------------------------------------------------------ export for the peer */

static bool write_spec(const char *dir, const dv365_config *cfg, int64_t cutoff,
                       const user *users, size_t n_users)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/spec.json", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return false;
    fprintf(f, "{\"dim\": %zu, \"gamma\": %.17g, \"cutoff\": %lld,\n", cfg->dim, cfg->gamma,
            (long long)cutoff);
    spec_rules(f, cfg);
    fputs(",\n\"users\": [", f);
    for (size_t k = 0; k < n_users; k++)
        fprintf(f, "%s%zu", k ? "," : "", users[k].n);
    fputs("]}\n", f);
    if (fclose(f) != 0)
        return false;

    for (size_t k = 0; k < n_users; k++) {
        const user *u = &users[k];
        snprintf(path, sizeof path, "%s/user%zu.bin", dir, k);
        f = fopen(path, "wb");
        if (!f)
            return false;
        size_t n = u->n;
        bool ok = fwrite(u->time, 8, n, f) == n && fwrite(u->id[0], 8, n, f) == n &&
                  fwrite(u->id[1], 8, n, f) == n && fwrite(u->id[2], 8, n, f) == n &&
                  fwrite(u->action, 4, n, f) == n && fwrite(u->media_type, 4, n, f) == n &&
                  fwrite(u->surface, 4, n, f) == n && fwrite(u->duration, 4, n, f) == n &&
                  fwrite(u->dwell, 4, n, f) == n;
        if (fclose(f) != 0 || !ok)
            return false;
    }
    return true;
}

/* ------------------------------------------------------------ main */

#define N_USERS 2
#define REPS 7

int main(int argc, char **argv)
{
    const char *cfg_path = argc > 1 ? argv[1] : DV365_SOURCE_ROOT "/configs/default.yaml";
    const char *peer_path = argc > 2 ? argv[2] : DV365_SOURCE_ROOT "/bench/pool_peer.py";
    const char *python = argc > 3 ? argv[3] : "/usr/bin/python3";
    const size_t sizes[N_USERS] = {40000, 70000};
    const int64_t cutoff = INT64_C(1735689600); /* 2025-01-01 */

    dv365_config *cfg = NULL;
    if (dv365_config_load(cfg_path, &cfg) != DV365_OK) {
        fprintf(stderr, "pool_bench: %s\n", dv365_last_error());
        return 1;
    }
    size_t N = dv365_config_num_slices(cfg), D = dv365_config_dim(cfg), max_rows = 0;
    for (size_t t = 0; t < cfg->n_tables; t++)
        max_rows = DV_MAX(max_rows, cfg->table_rows[t]);
    printf("pool_bench: %s: N = %zu slices from %zu definitions, D = %zu, %zu tables "
           "(largest %zu rows)\n",
           cfg_path, N, cfg->n_defs, D, cfg->n_tables, max_rows);

    double t0 = now();
    dv365_pooler *pooler = NULL;
    dv365_workspace *ws = NULL;
    dv365_timeline *tl = NULL;
    if (dv365_pooler_create(cfg, 1, &pooler) != DV365_OK || dv365_workspace_create(&ws) != DV365_OK ||
        dv365_timeline_create(cfg, &tl) != DV365_OK) {
        fprintf(stderr, "pool_bench: %s\n", dv365_last_error());
        return 1;
    }
    printf("tables initialized in %.2f s\n", now() - t0);

    user users[N_USERS];
    for (int k = 0; k < N_USERS; k++)
        users[k] = make_user(cfg, sizes[k], cutoff);

    float *X = malloc(N * D * sizeof *X);
    uint32_t *counts[N_USERS];
    double ours[N_USERS], ours_pool[N_USERS], lookups[N_USERS];
    for (int k = 0; k < N_USERS; k++) {
        const user *u = &users[k];
        counts[k] = malloc(N * sizeof(uint32_t));
        double full[REPS], pool[REPS];
        for (int r = -1; r < REPS; r++) { /* r = -1 warms up */
            double a = now();
            dv365_timeline_clear(tl);
            dv365_status st = dv365_timeline_append(tl, u->n, u->time, u->id[0], u->id[1], u->id[2],
                                                    u->action, u->media_type, u->surface,
                                                    u->duration, u->dwell);
            double b = now();
            if (st == DV365_OK)
                st = dv365_pool_forward(pooler, ws, tl, cutoff, X, counts[k], NULL);
            double c = now();
            if (st != DV365_OK) {
                fprintf(stderr, "pool_bench: %s\n", dv365_last_error());
                return 1;
            }
            if (r >= 0) {
                full[r] = c - a;
                pool[r] = c - b;
            }
        }
        qsort(full, REPS, sizeof(double), cmp_double);
        qsort(pool, REPS, sizeof(double), cmp_double);
        ours[k] = full[REPS / 2];
        ours_pool[k] = pool[REPS / 2];
        lookups[k] = 0;
        for (size_t s = 0; s < N; s++)
            lookups[k] += counts[k][s];
    }

    /* ---- the peer, on the same events ---- */
    char dir[] = "/tmp/dv365_pool_bench_XXXXXX";
    double peer[N_USERS] = {0};
    bool peer_ok = false, agree = true;
    if (mkdtemp(dir) != NULL && write_spec(dir, cfg, cutoff, users, N_USERS)) {
        char cmd[8192];
        snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' %d", python, peer_path, dir, REPS);
        fflush(stdout);
        FILE *p = popen(cmd, "r");
        if (p != NULL) {
            char *line = NULL;
            size_t cap = 0;
            int got = 0;
            while (getline(&line, &cap, p) > 0) {
                int k;
                double sec;
                int off;
                if (sscanf(line, "time %d %lf", &k, &sec) == 2 && k >= 0 && k < N_USERS) {
                    peer[k] = sec;
                    got++;
                } else if (sscanf(line, "counts %d%n", &k, &off) == 1 && k >= 0 && k < N_USERS) {
                    const char *q = line + off;
                    for (size_t s = 0; s < N; s++) {
                        char *endp;
                        unsigned long c = strtoul(q, &endp, 10);
                        if (endp == q || c != counts[k][s]) {
                            if (agree)
                                fprintf(stderr, "pool_bench: user %d slice %s: peer count %lu, ours %u\n",
                                        k, cfg->slices[s].name, c, counts[k][s]);
                            agree = false;
                            break;
                        }
                        q = endp;
                    }
                } else {
                    fputs(line, stdout); /* the peer's own notes */
                }
            }
            free(line);
            peer_ok = pclose(p) == 0 && got == N_USERS;
        }
        for (int k = 0; k < N_USERS; k++) {
            char path[4200];
            snprintf(path, sizeof path, "%s/user%d.bin", dir, k);
            unlink(path);
        }
        char path[4200];
        snprintf(path, sizeof path, "%s/spec.json", dir);
        unlink(path);
        rmdir(dir);
    }
    if (!peer_ok)
        fprintf(stderr, "pool_bench: the PyTorch peer did not run (%s %s)\n", python, peer_path);

    printf("\n%-10s %10s %12s | %12s %12s %12s | %12s %9s\n", "user", "events", "lookups",
           "ours ms", "(pool only)", "events/s", "torch ms", "ratio");
    for (int k = 0; k < N_USERS; k++)
        printf("%-10s %10zu %12.0f | %12.2f %12.2f %12.3g | %12.2f %9.2f\n",
               k == 0 ? "40K" : "70K", users[k].n, lookups[k], 1e3 * ours[k], 1e3 * ours_pool[k],
               (double)users[k].n / ours[k], 1e3 * peer[k], peer_ok ? peer[k] / ours[k] : 0.0);
    printf("one thread each; medians of %d runs; ours = timeline build + slice + pool from raw "
           "columns; peer per-slice counts %s ours\n",
           REPS, !peer_ok ? "not checked against" : agree ? "equal" : "DIFFER FROM");

    double o = 1.0 / ours[0], pr = peer_ok ? 1.0 / peer[0] : 0.0;
    printf("{\"bench\": \"pool\", \"unit\": \"users/s\", \"ours\": %.3f, \"peer\": %.3f, "
           "\"ratio\": %.3f}\n",
           o, pr, pr > 0 ? o / pr : 0.0);

    for (int k = 0; k < N_USERS; k++) {
        free(counts[k]);
        free_user(&users[k]);
    }
    free(X);
    dv365_timeline_free(tl);
    dv365_workspace_free(ws);
    dv365_pooler_free(pooler);
    dv365_config_free(cfg);
    return peer_ok && agree ? 0 : 1;
}
