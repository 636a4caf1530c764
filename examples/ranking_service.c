/* ranking_service.c — the serving half of DV365 in a C ranking service.
 *
 * Per request: one store lookup (a zero-copy read of the user's 4-bit
 * blob), decode to U [K x D], a linear adapter U -> user vector [P], and a
 * dot product with each candidate item's P-dim embedding; the best items
 * are printed.  In a real service the adapter is trained inside the host
 * ranking model and loaded with dv365_adapter_load, and the candidates'
 * embeddings come from the host's item tower.
 *
 *   cc ranking_service.c $(pkg-config --cflags --libs dv365) -o ranking_service
 *   ./ranking_service --demo CONFIG.yaml WORKDIR
 *       build WORKDIR/users.dvt (synthetic users), run batch generation into
 *       the store WORKDIR/store, save a seeded adapter, then serve requests
 *   ./ranking_service STORE_DIR ADAPTER.safetensors USER_ID
 *       serve one request from an existing store */
#define _POSIX_C_SOURCE 200809L
#include <dv365.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N_CANDIDATES 500
#define TOP 5
#define ADAPTER_NAME "rank"
#define ADAPTER_WIDTH 32 /* P: the host model's embedding width */

static int check(dv365_status st, const char *what)
{
    if (st != DV365_OK)
        fprintf(stderr, "%s failed: %s (%s)\n", what, dv365_last_error(), dv365_status_string(st));
    return st != DV365_OK;
}

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t mix(uint64_t x) /* a small deterministic generator */
{
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

static float unit(uint64_t *s) /* uniform in [-1, 1) */
{
    *s = mix(*s);
    return (float)((double)(*s >> 11) / 4503599627370496.0 - 1.0);
}

/* Everything one serving thread owns, allocated once. */
typedef struct server {
    dv365_store *store;
    dv365_store_reader *reader;
    dv365_adapter *adapter;
    dv365_workspace *ws;
    uint64_t fingerprint;
    size_t K, D, P;
    float *U, *user_vec, *scores;
} server;

static int server_open(server *sv, const char *store_dir, const char *adapter_path)
{
    memset(sv, 0, sizeof *sv);
    uint64_t generation;
    size_t count, out_dim;
    if (check(dv365_store_open(store_dir, DV365_STORE_READONLY, 0, &sv->store), "dv365_store_open") ||
        check(dv365_store_info(sv->store, &generation, &sv->fingerprint, NULL, &count, &sv->K,
                               &sv->D),
              "dv365_store_info") ||
        check(dv365_store_reader_create(sv->store, &sv->reader), "dv365_store_reader_create") ||
        check(dv365_adapter_load(adapter_path, ADAPTER_NAME, &sv->adapter), "dv365_adapter_load") ||
        check(dv365_adapter_info(sv->adapter, NULL, NULL, NULL, &out_dim), "dv365_adapter_info") ||
        check(dv365_workspace_create(&sv->ws), "dv365_workspace_create"))
        return 1;
    if (generation == 0) {
        fprintf(stderr, "store %s has no generation yet\n", store_dir);
        return 1;
    }
    sv->P = dv365_adapter_output_size(sv->adapter);
    sv->U = malloc(sv->K * sv->D * sizeof *sv->U);
    sv->user_vec = malloc(sv->P * sizeof *sv->user_vec);
    sv->scores = malloc(N_CANDIDATES * sizeof *sv->scores);
    if (!sv->U || !sv->user_vec || !sv->scores)
        return 1;
    /* Grow the workspace now: requests then never allocate. */
    if (check(dv365_workspace_reserve(sv->ws, dv365_adapter_workspace_size(sv->adapter, 1)),
              "dv365_workspace_reserve"))
        return 1;
    printf("store %s: generation %llu, %zu users, %zu x %zu tokens, model %016llx; adapter %s "
           "-> %zu\n",
           store_dir, (unsigned long long)generation, count, sv->K, sv->D,
           (unsigned long long)sv->fingerprint, ADAPTER_NAME, sv->P);
    return 0;
}

static void server_close(server *sv)
{
    free(sv->U);
    free(sv->user_vec);
    free(sv->scores);
    dv365_workspace_free(sv->ws);
    dv365_adapter_free(sv->adapter);
    dv365_store_reader_free(sv->reader);
    dv365_store_close(sv->store);
}

/* One request: score n candidates (cand [n x P]) for user_id and write the
 * indices of the best TOP into top[]. */
static dv365_status serve(server *sv, uint64_t user_id, const float *cand, size_t n,
                          size_t top[TOP])
{
    const uint8_t *blob;
    size_t size;
    dv365_status st = dv365_store_reader_begin(sv->reader);
    if (st != DV365_OK)
        return st;
    st = dv365_store_reader_get(sv->reader, user_id, &blob, &size);
    if (st == DV365_OK) /* check the blob was made by the model the store says */
        st = dv365_blob_decode(blob, size, sv->fingerprint, sv->K, sv->D, sv->U);
    dv365_store_reader_end(sv->reader); /* the blob pointer dies here */
    if (st == DV365_OK)
        st = dv365_adapter_forward(sv->adapter, sv->ws, 1, sv->U, sv->user_vec, 1);
    if (st != DV365_OK)
        return st;
    for (size_t i = 0; i < n; i++) {
        float s = 0;
        for (size_t p = 0; p < sv->P; p++)
            s += sv->user_vec[p] * cand[i * sv->P + p];
        sv->scores[i] = s;
    }
    for (size_t t = 0; t < TOP; t++) { /* partial selection of the best */
        size_t best = 0;
        for (size_t i = 1; i < n; i++)
            if (sv->scores[i] > sv->scores[best])
                best = i;
        top[t] = best;
        sv->scores[best] = -1e30f;
    }
    return DV365_OK;
}

static int run_requests(server *sv, const uint64_t *users, size_t n_users, int verbose)
{
    float *cand = malloc(N_CANDIDATES * sv->P * sizeof *cand);
    if (!cand)
        return 1;
    uint64_t seed = 2024;
    for (size_t i = 0; i < N_CANDIDATES * sv->P; i++)
        cand[i] = unit(&seed);
    size_t top[TOP];
    double t0 = seconds();
    for (size_t r = 0; r < n_users; r++) {
        dv365_status st = serve(sv, users[r], cand, N_CANDIDATES, top);
        if (st == DV365_E_NOT_FOUND) { /* a new user: the host falls back to its own features */
            if (verbose)
                printf("user %llu: no DV365 embedding yet\n", (unsigned long long)users[r]);
            continue;
        }
        if (check(st, "serve")) {
            free(cand);
            return 1;
        }
        if (verbose) {
            printf("user %llu: top items", (unsigned long long)users[r]);
            for (size_t t = 0; t < TOP; t++)
                printf(" %zu", top[t]);
            printf("\n");
        }
    }
    double dt = seconds() - t0;
    printf("%zu requests x %d candidates: %.1f us per request (lookup + decode + adapt + score)\n",
           n_users, N_CANDIDATES, 1e6 * dt / (double)n_users);
    free(cand);
    return 0;
}

/* --demo: synthetic users -> timeline file -> batch generation -> store. */
static int build_demo(const char *config, const char *workdir, uint64_t *users, size_t n_users)
{
    char tl_path[4096], store_dir[4096], adapter_path[4096];
    snprintf(tl_path, sizeof tl_path, "%s/users.dvt", workdir);
    snprintf(store_dir, sizeof store_dir, "%s/store", workdir);
    snprintf(adapter_path, sizeof adapter_path, "%s/adapter.safetensors", workdir);
    dv365_model *model = NULL;
    dv365_timeline *tl = NULL;
    dv365_timeline_writer *w = NULL;
    dv365_store *store = NULL;
    dv365_adapter *ad = NULL;
    int rc = 1;
    if (check(dv365_model_init(config, 42, &model), "dv365_model_init"))
        return 1;
    const dv365_config *cfg = dv365_model_config(model);
    const int64_t now = 1767225600; /* 2026-01-01 */
    if (check(dv365_timeline_create(cfg, &tl), "dv365_timeline_create") ||
        check(dv365_timeline_writer_open(tl_path, cfg, &w), "dv365_timeline_writer_open"))
        goto out;
    size_t n_actions = dv365_config_vocab_size(cfg, DV365_VOCAB_ACTION);
    size_t n_mt = dv365_config_vocab_size(cfg, DV365_VOCAB_MEDIA_TYPE);
    size_t n_surf = dv365_config_vocab_size(cfg, DV365_VOCAB_SURFACE);
    for (size_t u = 0; u < n_users; u++) {
        enum { E = 300 }; /* events per user */
        int64_t time[E];
        uint64_t media[E], author[E], topic[E], s = mix(u);
        int32_t action[E], mt[E], surface[E];
        float dur[E], dwell[E];
        for (int e = 0; e < E; e++) {
            s = mix(s);
            time[e] = now - 90 * 86400 + (int64_t)(s % (90 * 86400));
            media[e] = (s >> 8) % 20000;
            author[e] = media[e] / 16;
            topic[e] = (u * 7 + (s >> 40) % 5) % 300; /* each user has a few favourite topics */
            action[e] = (int32_t)((s >> 20) % n_actions);
            mt[e] = (int32_t)((s >> 28) % n_mt);
            surface[e] = (int32_t)((s >> 32) % n_surf);
            dur[e] = 5000.0f + (float)((s >> 12) % 55000);
            dwell[e] = (float)((s >> 44) % 60000);
        }
        users[u] = 1000 + 17 * u;
        dv365_timeline_clear(tl);
        if (check(dv365_timeline_append(tl, E, time, media, author, topic, action, mt, surface,
                                        dur, dwell),
                  "dv365_timeline_append") ||
            check(dv365_timeline_writer_add(w, users[u], tl), "dv365_timeline_writer_add"))
            goto out;
    }
    if (check(dv365_timeline_writer_close(w), "dv365_timeline_writer_close"))
        goto out;

    /* Batch generation: every user embedded, quantized and stored in a new
     * generation that readers see only once it is complete. */
    dv365_generate_options opt;
    dv365_generate_options_init(&opt);
    opt.batch = 32;
    opt.resume = 1; /* after a crash, a rerun continues where it stopped */
    double t0 = seconds();
    if (check(dv365_store_open(store_dir, 0, 0, &store), "dv365_store_open") ||
        check(dv365_generate(model, tl_path, now, store, &opt), "dv365_generate"))
        goto out;
    printf("generated %zu users into %s in %.2f s\n", n_users, store_dir, seconds() - t0);

    /* The host's adapter (trained with the host model in a real service). */
    if (check(dv365_adapter_create(DV365_ADAPTER_LINEAR, ADAPTER_NAME, dv365_model_num_tokens(model),
                                   dv365_model_dim(model), ADAPTER_WIDTH, 7, &ad),
              "dv365_adapter_create") ||
        check(dv365_adapter_save(ad, adapter_path), "dv365_adapter_save"))
        goto out;
    rc = 0;
out:
    dv365_adapter_free(ad);
    dv365_store_close(store); /* the service below opens it read-only */
    dv365_timeline_writer_free(w);
    dv365_timeline_free(tl);
    dv365_model_free(model);
    return rc;
}

int main(int argc, char **argv)
{
    server sv;
    if (argc == 4 && !strcmp(argv[1], "--demo")) {
        enum { N_USERS = 200 };
        uint64_t users[N_USERS + 1];
        if (build_demo(argv[2], argv[3], users, N_USERS))
            return 1;
        users[N_USERS] = 999999; /* not in the store */
        char store_dir[4096], adapter_path[4096];
        snprintf(store_dir, sizeof store_dir, "%s/store", argv[3]);
        snprintf(adapter_path, sizeof adapter_path, "%s/adapter.safetensors", argv[3]);
        int rc = server_open(&sv, store_dir, adapter_path) ||
                 run_requests(&sv, users + N_USERS - 3, 4, 1) || /* 3 users + 1 unknown */
                 run_requests(&sv, users, N_USERS, 0);
        server_close(&sv);
        return rc;
    }
    if (argc == 4) {
        uint64_t user = strtoull(argv[3], NULL, 10);
        int rc = server_open(&sv, argv[1], argv[2]) || run_requests(&sv, &user, 1, 1);
        server_close(&sv);
        return rc;
    }
    fprintf(stderr,
            "usage: %s --demo CONFIG.yaml WORKDIR\n"
            "       %s STORE_DIR ADAPTER.safetensors USER_ID\n",
            argv[0], argv[0]);
    return 2;
}
