/* embed_user.c — the smallest complete use of libdv365: one user's events
 * in, the DV365 embedding (K x D floats) and its 4-bit blob out.
 *
 *   cc embed_user.c $(pkg-config --cflags --libs dv365) -o embed_user
 *   ./embed_user MODEL_DIR            (a directory from `dv365 init`)
 *   ./embed_user --config FILE.yaml   (a fresh seeded model) */
#include <dv365.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check(dv365_status st, const char *what)
{
    if (st != DV365_OK)
        fprintf(stderr, "%s failed: %s (%s)\n", what, dv365_last_error(), dv365_status_string(st));
    return st != DV365_OK;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR | --config FILE.yaml\n", argv[0]);
        return 2;
    }
    dv365_model *model = NULL;
    if (!strcmp(argv[1], "--config") && argc > 2) {
        if (check(dv365_model_init(argv[2], 42, &model), "dv365_model_init"))
            return 1;
    } else if (check(dv365_model_load(argv[1], &model), "dv365_model_load")) {
        return 1;
    }
    const dv365_config *cfg = dv365_model_config(model);

    /* Four events of one user, as columns (a real service reads them from
     * its log).  Codes come from the config's vocabularies. */
    int32_t view, like, video, reels;
    if (check(dv365_config_code(cfg, DV365_VOCAB_ACTION, "view", &view), "code") ||
        check(dv365_config_code(cfg, DV365_VOCAB_ACTION, "like", &like), "code") ||
        check(dv365_config_code(cfg, DV365_VOCAB_MEDIA_TYPE, "video", &video), "code") ||
        check(dv365_config_code(cfg, DV365_VOCAB_SURFACE, "reels", &reels), "code"))
        return 1;
    const int64_t now = 1767225600; /* 2026-01-01T00:00:00Z */
    int64_t time[4] = {now - 30 * 86400, now - 6 * 86400, now - 2 * 86400, now - 3600};
    uint64_t media[4] = {1001, 1002, 1001, 1003}, author[4] = {7, 8, 7, 9}, topic[4] = {3, 3, 3, 4};
    int32_t action[4] = {view, view, like, view};
    int32_t media_type[4] = {video, video, video, video}, surface[4] = {reels, reels, reels, reels};
    float duration_ms[4] = {30000, 15000, 30000, 60000}, dwell_ms[4] = {28000, 1000, 0, 45000};

    dv365_timeline *tl = NULL;
    dv365_workspace *ws = NULL;
    int rc = 1;
    size_t K = dv365_model_num_tokens(model), D = dv365_model_dim(model);
    float *U = malloc(K * D * sizeof *U);
    size_t blob_size = dv365_blob_size(K, D);
    uint8_t *blob = malloc(blob_size);
    if (!U || !blob ||
        check(dv365_timeline_create(cfg, &tl), "dv365_timeline_create") ||
        check(dv365_timeline_append(tl, 4, time, media, author, topic, action, media_type,
                                    surface, duration_ms, dwell_ms),
              "dv365_timeline_append") ||
        check(dv365_workspace_create(&ws), "dv365_workspace_create"))
        goto out;

    /* Embed with the history strictly before `now` (1 user, 1 thread). */
    const dv365_timeline *users[1] = {tl};
    int64_t cutoff[1] = {now};
    if (check(dv365_model_embed(model, ws, 1, users, cutoff, U, 1), "dv365_model_embed"))
        goto out;
    /* The key-value store value: K rows of 4-bit codes + a checked header. */
    if (check(dv365_blob_encode(U, K, D, dv365_model_fingerprint(model), now, DV365_Q4_MINMAX,
                                blob, blob_size),
              "dv365_blob_encode"))
        goto out;
    printf("libdv365 %s: embedded %zu events into %zu x %zu; U[0][0..3] = %.4f %.4f %.4f %.4f; "
           "blob %zu bytes\n",
           dv365_version_string(), dv365_timeline_size(tl), K, D, U[0], U[1], U[2], U[3],
           blob_size);
    rc = 0;
out:
    free(U);
    free(blob);
    dv365_workspace_free(ws);
    dv365_timeline_free(tl);
    dv365_model_free(model);
    return rc;
}
