/* model.c — config + pooling tables + encoder, as one loadable model.
 *
 * A model directory is config.yaml (the config text, verbatim) and
 * weights.safetensors ("tables.<name>" [rows, D] for every table, then the
 * "encoder.*" tensors).  Embedding = pool each user's timeline into X, then
 * encode the whole batch at once. */
#include "model.h"

#include "encoder.h"
#include "fileio.h"
#include "parallel.h"
#include "pool.h"
#include "safetensors.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#define CONFIG_FILE "config.yaml"
#define WEIGHTS_FILE "weights.safetensors"
#define MODEL_FORMAT "libdv365-model"

void dv_model_update_fingerprint(dv365_model *m)
{
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, &m->cfg->fingerprint, sizeof m->cfg->fingerprint);
    for (size_t t = 0; t < m->cfg->n_tables; t++)
        XXH3_64bits_update(&st, m->pooler->tables[t],
                           m->cfg->table_rows[t] * m->cfg->dim * sizeof(float));
    XXH3_64bits_update(&st, dv_encoder_params_const(m->enc),
                       dv365_encoder_num_params(m->enc) * sizeof(float));
    /* The backbone is left out: it never changes an embedding. */
    m->fingerprint = XXH3_64bits_digest(&st);
    m->fingerprint_stale = false;
}

/* Takes ownership of cfg (freed on failure). */
static dv365_status model_create(dv365_config *cfg, uint64_t seed, dv365_model **out)
{
    dv365_model *m = dv_calloc(1, sizeof *m);
    if (!m) {
        dv365_config_free(cfg);
        return dv_error(DV365_E_NOMEM, "model: out of memory");
    }
    m->cfg = cfg;
    dv365_status st = dv365_pooler_create(cfg, seed, &m->pooler);
    if (st == DV365_OK)
        st = dv365_encoder_create(cfg, seed + 1, &m->enc);
    if (st == DV365_OK)
        st = dv_backbone_create(cfg, seed + 2, &m->bb);
    if (st != DV365_OK) {
        dv365_model_free(m);
        return st;
    }
    *out = m;
    return DV365_OK;
}

dv365_status dv365_model_init(const char *config_path, uint64_t seed, dv365_model **out)
{
    dv_clear_error();
    DV_CHECK_NULL(config_path);
    DV_CHECK_NULL(out);
    dv365_config *cfg;
    dv365_status st = dv365_config_load(config_path, &cfg);
    if (st)
        return st;
    dv365_model *m;
    if ((st = model_create(cfg, seed, &m)))
        return st;
    dv_model_update_fingerprint(m);
    *out = m;
    return DV365_OK;
}

void dv365_model_free(dv365_model *m)
{
    if (!m)
        return;
    dv_backbone_free(m->bb);
    dv365_encoder_free(m->enc);
    dv365_pooler_free(m->pooler);
    dv365_config_free(m->cfg);
    dv_free(m);
}

/* dir/file into buf; an over-long result is cut (callers bound dir first). */
static void join_path(char *buf, size_t cap, const char *dir, const char *file)
{
    size_t n = strlen(dir);
    if (snprintf(buf, cap, "%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", file) >= (int)cap)
        buf[cap - 1] = '\0';
}

/* A checkpoint directory (lib/trainer.c) holds step-* model directories
 * and a LATEST file naming the newest: follow it when dir has no config. */
dv365_status dv_model_resolve_dir(const char *dir, char *out, size_t cap)
{
    char path[4096];
    struct stat sb;
    join_path(path, sizeof path, dir, CONFIG_FILE);
    if (stat(path, &sb) != 0) {
        join_path(path, sizeof path, dir, DV_LATEST_FILE);
        void *text;
        size_t len;
        if (stat(path, &sb) == 0) {
            /* a LATEST that cannot be read (no memory, I/O) is an error, not
             * a reason to look for the model in dir itself */
            dv365_status st = dv_file_read_all(path, &text, &len);
            if (st != DV365_OK)
                return st;
            char *name = text;
            while (len > 0 && (name[len - 1] == '\n' || name[len - 1] == ' '))
                name[--len] = '\0';
            bool ok = len > 0 && len < 256 && !strchr(name, '/') && strcmp(name, "..");
            if (ok)
                join_path(out, cap, dir, name);
            dv_free(text);
            if (!ok)
                return dv_error(DV365_E_FORMAT, "%s does not name a checkpoint directory", path);
            return DV365_OK;
        }
    }
    snprintf(out, cap, "%s", dir);
    return DV365_OK;
}

dv365_status dv365_model_load(const char *dir, dv365_model **out)
{
    dv_clear_error();
    DV_CHECK_NULL(dir);
    DV_CHECK_NULL(out);
    char path[4096];
    if (strlen(dir) > sizeof path - 64)
        return dv_error(DV365_E_INVALID, "dv365_model_load: directory name too long");
    char resolved[4096];
    dv365_status st = dv_model_resolve_dir(dir, resolved, sizeof resolved);
    if (st)
        return st;
    dir = resolved;
    join_path(path, sizeof path, dir, CONFIG_FILE);
    dv365_config *cfg;
    if ((st = dv365_config_load(path, &cfg)))
        return st;
    dv365_model *m;
    if ((st = model_create(cfg, 0, &m)))
        return st;
    join_path(path, sizeof path, dir, WEIGHTS_FILE);
    dv_st_file *f = NULL;
    st = dv_st_read_file(path, &f);
    for (size_t t = 0; st == DV365_OK && t < cfg->n_tables; t++) {
        char name[128];
        size_t shape[2] = {cfg->table_rows[t], cfg->dim};
        snprintf(name, sizeof name, "tables.%s", cfg->table_names[t]);
        st = dv_st_copy_f32(f, name, 2, shape, m->pooler->tables[t]);
    }
    size_t n_tensors = 0;
    const dv_enc_tensor *tensors = dv_encoder_tensors(m->enc, &n_tensors);
    float *params = dv_encoder_params(m->enc);
    for (size_t i = 0; st == DV365_OK && i < n_tensors; i++)
        st = dv_st_copy_f32(f, tensors[i].name, tensors[i].ndim, tensors[i].shape,
                            params + tensors[i].offset);
    /* The backbone is optional: a serving model may have been saved
     * without one; it then keeps its seeded initialization. */
    if (st == DV365_OK && dv_st_find(f, "backbone.top.0.weight"))
        st = dv_backbone_load_tensors(m->bb, f);
    dv_st_free(f);
    if (st != DV365_OK) {
        dv365_model_free(m);
        return dv_error_context(st, "loading model weights %s", path);
    }
    dv_model_update_fingerprint(m);
    *out = m;
    return DV365_OK;
}

dv365_status dv365_model_save(const dv365_model *m, const char *dir)
{
    dv_clear_error();
    DV_CHECK_NULL(m);
    DV_CHECK_NULL(dir);
    char path[4096];
    if (strlen(dir) > sizeof path - 64)
        return dv_error(DV365_E_INVALID, "dv365_model_save: directory name too long");
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return dv_error(DV365_E_IO, "cannot create model directory %s: %s", dir, strerror(errno));
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return dv_error(DV365_E_IO, "%s exists and is not a directory", dir);

    const dv365_config *cfg = m->cfg;
    dv_st_writer *w = NULL;
    dv365_status st = dv_st_writer_create(&w);
    char names[2][64];
    snprintf(names[0], sizeof names[0], "%016llx", (unsigned long long)cfg->fingerprint);
    snprintf(names[1], sizeof names[1], "%016llx",
             (unsigned long long)dv365_model_fingerprint(m));
    if (st == DV365_OK)
        st = dv_st_writer_set_metadata(w, "format", MODEL_FORMAT);
    if (st == DV365_OK)
        st = dv_st_writer_set_metadata(w, "library_version", dv365_version_string());
    if (st == DV365_OK)
        st = dv_st_writer_set_metadata(w, "config_fingerprint", names[0]);
    if (st == DV365_OK)
        st = dv_st_writer_set_metadata(w, "model_fingerprint", names[1]);
    for (size_t t = 0; st == DV365_OK && t < cfg->n_tables; t++) {
        char name[128];
        size_t shape[2] = {cfg->table_rows[t], cfg->dim};
        snprintf(name, sizeof name, "tables.%s", cfg->table_names[t]);
        st = dv_st_writer_add(w, name, DV_DTYPE_F32, 2, shape, m->pooler->tables[t]);
    }
    size_t n_tensors = 0;
    const dv_enc_tensor *tensors = dv_encoder_tensors(m->enc, &n_tensors);
    const float *params = dv_encoder_params_const(m->enc);
    for (size_t i = 0; st == DV365_OK && i < n_tensors; i++)
        st = dv_st_writer_add(w, tensors[i].name, DV_DTYPE_F32, tensors[i].ndim, tensors[i].shape,
                              params + tensors[i].offset);
    if (st == DV365_OK)
        st = dv_backbone_add_tensors(m->bb, w);
    if (st == DV365_OK) {
        join_path(path, sizeof path, dir, WEIGHTS_FILE);
        st = dv_st_writer_write(w, path);
    }
    dv_st_writer_free(w);
    if (st == DV365_OK) {
        /* config last: a directory with a config always has its weights */
        join_path(path, sizeof path, dir, CONFIG_FILE);
        const void *parts[1] = {cfg->yaml_text};
        size_t sizes[1] = {cfg->yaml_len};
        st = dv_file_write_atomic(path, 1, parts, sizes);
    }
    return st;
}

const dv365_config *dv365_model_config(const dv365_model *m) { return m ? m->cfg : NULL; }
dv365_pooler *dv365_model_pooler(dv365_model *m) { return m ? m->pooler : NULL; }
dv365_encoder *dv365_model_encoder(dv365_model *m) { return m ? m->enc : NULL; }
size_t dv365_model_num_slices(const dv365_model *m) { return m ? m->cfg->n_slices : 0; }
size_t dv365_model_dim(const dv365_model *m) { return m ? m->cfg->dim : 0; }
size_t dv365_model_num_tokens(const dv365_model *m)
{
    return m ? dv365_encoder_num_tokens(m->enc) : 0;
}
uint64_t dv365_model_fingerprint(const dv365_model *m)
{
    if (!m)
        return 0;
    if (m->fingerprint_stale) /* trained since: only the training thread uses m */
        dv_model_update_fingerprint((dv365_model *)m);
    return m->fingerprint;
}

/* ------------------------------------------------------------ embed ---- */

/* Workspace layout: X [batch, N, D] first, then a region that pooling
 * threads share out (one slot each) and the encoder reuses afterwards. */
static bool embed_layout(const dv365_model *m, size_t batch, size_t max_events, int nthreads,
                         size_t *x_bytes, size_t *slot_bytes, size_t *total)
{
    size_t x, slots, enc = dv365_encode_workspace_size(m->enc, batch);
    size_t slot = dv_align64(dv365_pool_workspace_size(m->pooler, max_events));
    size_t threads = DV_MIN((size_t)nthreads, batch ? batch : 1);
    if (!dv_mul_size(batch, m->cfg->n_slices * m->cfg->dim * sizeof(float), &x) ||
        !dv_mul_size(slot, threads, &slots) || enc == SIZE_MAX || slot == 0)
        return false;
    x = dv_align64(x);
    *x_bytes = x;
    *slot_bytes = slot;
    size_t region = DV_MAX(slots, enc);
    return !__builtin_add_overflow(x, region, total);
}

size_t dv365_embed_workspace_size(const dv365_model *m, size_t batch, size_t max_events,
                                  int nthreads)
{
    size_t x, slot, total;
    if (!m || nthreads < 1 || !embed_layout(m, batch, max_events, nthreads, &x, &slot, &total))
        return SIZE_MAX;
    return total;
}

typedef struct pool_job {
    const dv365_model *m;
    const dv365_timeline *const *tls;
    const int64_t *cutoffs;
    float *X;
    unsigned char *slots;
    size_t slot_bytes;
    dv365_status st[DV_MAX_CHUNKS];
    size_t failed_user[DV_MAX_CHUNKS];
    char msg[DV_MAX_CHUNKS][256];
} pool_job;

static void pool_chunk(void *ctx, size_t begin, size_t end, int chunk)
{
    pool_job *j = ctx;
    dv365_workspace view;
    dv_workspace_view(&view, j->slots + (size_t)chunk * j->slot_bytes, j->slot_bytes);
    size_t row = j->m->cfg->n_slices * j->m->cfg->dim;
    for (size_t b = begin; b < end; b++) {
        dv365_status st = dv365_pool_forward(j->m->pooler, &view, j->tls[b], j->cutoffs[b],
                                             j->X + b * row, NULL, NULL);
        if (st != DV365_OK) {
            j->st[chunk] = st;
            j->failed_user[chunk] = b;
            snprintf(j->msg[chunk], sizeof j->msg[chunk], "%s", dv365_last_error());
            return;
        }
    }
}

dv365_status dv_model_pool_users(const dv365_model *m, size_t n, const dv365_timeline *const *tls,
                                 const int64_t *cutoffs, float *X, unsigned char *slots,
                                 size_t slot_bytes, int nthreads)
{
    pool_job job = {.m = m, .tls = tls, .cutoffs = cutoffs, .X = X, .slots = slots,
                    .slot_bytes = slot_bytes};
    dv_parallel_for(nthreads, n, pool_chunk, &job);
    for (int c = 0; c < nthreads && c < DV_MAX_CHUNKS; c++)
        if (job.st[c] != DV365_OK)
            return dv_error(job.st[c], "user %zu: %s", job.failed_user[c], job.msg[c]);
    return DV365_OK;
}

dv365_status dv365_model_embed(const dv365_model *m, dv365_workspace *ws, size_t batch,
                               const dv365_timeline *const *timelines, const int64_t *cutoffs,
                               float *U, int nthreads)
{
    dv_clear_error();
    DV_CHECK_NULL(m);
    DV_CHECK_NULL(ws);
    DV_CHECK_NULL(timelines);
    DV_CHECK_NULL(cutoffs);
    DV_CHECK_NULL(U);
    if (batch == 0)
        return dv_error(DV365_E_INVALID, "dv365_model_embed: batch must be > 0");
    if (nthreads < 1 || nthreads > DV_MAX_CHUNKS)
        return dv_error(DV365_E_INVALID, "dv365_model_embed: nthreads must be in [1, %d], got %d",
                        DV_MAX_CHUNKS, nthreads);
    size_t max_events = 0;
    for (size_t b = 0; b < batch; b++) {
        if (!timelines[b])
            return dv_error(DV365_E_NULL, "dv365_model_embed: timelines[%zu] is NULL", b);
        if (timelines[b]->cfg->fingerprint != m->cfg->fingerprint)
            return dv_error(DV365_E_MISMATCH,
                            "dv365_model_embed: timelines[%zu] was made for another config", b);
        if (cutoffs[b] < 0 || cutoffs[b] > DV365_TIME_MAX)
            return dv_error(DV365_E_TIMESTAMP,
                            "dv365_model_embed: cutoffs[%zu] = %lld is outside [0, 2100-01-01]", b,
                            (long long)cutoffs[b]);
        max_events = DV_MAX(max_events, timelines[b]->n);
    }
    size_t x_bytes, slot_bytes, total;
    if (!embed_layout(m, batch, max_events, nthreads, &x_bytes, &slot_bytes, &total))
        return dv_error(DV365_E_NOMEM, "dv365_model_embed: workspace size overflows");
    unsigned char *mem = dv_workspace_get(ws, total);
    if (!mem)
        return DV365_E_NOMEM;

    dv365_status st = dv_model_pool_users(m, batch, timelines, cutoffs, (float *)mem,
                                          mem + x_bytes, slot_bytes, nthreads);
    if (st != DV365_OK)
        return dv_error_context(st, "dv365_model_embed");

    dv365_workspace view;
    dv_workspace_view(&view, mem + x_bytes, total - x_bytes);
    return dv365_encode(m->enc, &view, batch, (const float *)mem, U, nthreads);
}
