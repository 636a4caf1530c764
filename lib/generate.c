/* generate.c — batch generation: every user of a timeline file is embedded
 * (dv365_model_embed, in batches), encoded as a blob and put into a new
 * store generation, committed at the end.  After each batch the blobs and
 * a checkpoint go into the store in one transaction, so an interrupted run
 * resumes exactly after the last batch it wrote. */
#include "generate.h"

#include "parallel.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define MAX_BATCH 65536

void dv_gen_checkpoint_write(const dv_gen_checkpoint *c, unsigned char out[DV_GEN_CKPT_BYTES])
{
    memcpy(out, DV_GEN_CKPT_MAGIC, 8);
    dv_put_le(out + 8, DV_GEN_CKPT_VERSION, 4);
    dv_put_le(out + 12, c->method, 4);
    const uint64_t f[8] = {c->input_id, c->input_size, c->fingerprint, (uint64_t)c->cutoff,
                           (uint64_t)c->created, c->total, c->done, c->last_user};
    for (int i = 0; i < 8; i++)
        dv_put_le(out + 16 + 8 * i, f[i], 8);
}

dv365_status dv_gen_checkpoint_read(const void *data, size_t size, dv_gen_checkpoint *c)
{
    const unsigned char *p = data;
    if (size != DV_GEN_CKPT_BYTES || memcmp(p, DV_GEN_CKPT_MAGIC, 8) != 0)
        return dv_error(DV365_E_FORMAT, "the pending generation's checkpoint (%zu bytes) was not "
                        "written by dv365_generate", size);
    if (dv_get_le(p + 8, 4) != DV_GEN_CKPT_VERSION)
        return dv_error(DV365_E_VERSION, "generation checkpoint version %u is not %u",
                        (unsigned)dv_get_le(p + 8, 4), DV_GEN_CKPT_VERSION);
    dv_gen_checkpoint r = {.method = (uint32_t)dv_get_le(p + 12, 4)};
    r.input_id = dv_get_le(p + 16, 8);
    r.input_size = dv_get_le(p + 24, 8);
    r.fingerprint = dv_get_le(p + 32, 8);
    r.cutoff = (int64_t)dv_get_le(p + 40, 8);
    r.created = (int64_t)dv_get_le(p + 48, 8);
    r.total = dv_get_le(p + 56, 8);
    r.done = dv_get_le(p + 64, 8);
    r.last_user = dv_get_le(p + 72, 8);
    if (r.done > r.total)
        return dv_error(DV365_E_FORMAT, "generation checkpoint: %llu of %llu users done",
                        (unsigned long long)r.done, (unsigned long long)r.total);
    *c = r;
    return DV365_OK;
}

dv365_status dv_timeline_file_identity(const char *path, uint64_t *id, uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dv_error(DV365_E_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    unsigned char buf[1 << 16];
    dv365_status status = DV365_OK;
    XXH64_state_t *h = XXH64_createState();
    if (!h) {
        close(fd);
        return dv_error(DV365_E_NOMEM, "hashing '%s': out of memory", path);
    }
    XXH64_reset(h, 0);
    if (fstat(fd, &st) != 0 || pread(fd, buf, 64, 0) != 64) {
        status = dv_error(DV365_E_FORMAT, "'%s' is not a timeline file (no 64-byte header)", path);
        goto out;
    }
    XXH64_update(h, buf, 64);
    /* The index runs from the offset in header bytes 40..47 to the end. */
    uint64_t off = dv_get_le(buf + 40, 8);
    if (off < 64 || off > (uint64_t)st.st_size) {
        status = dv_error(DV365_E_FORMAT, "'%s': index offset %llu is outside the file", path,
                          (unsigned long long)off);
        goto out;
    }
    while (off < (uint64_t)st.st_size) {
        size_t want = (size_t)DV_MIN((uint64_t)sizeof buf, (uint64_t)st.st_size - off);
        ssize_t got = pread(fd, buf, want, (off_t)off);
        if (got <= 0) {
            status = dv_error(DV365_E_IO, "reading '%s': %s", path,
                              got < 0 ? strerror(errno) : "unexpected end of file");
            goto out;
        }
        XXH64_update(h, buf, (size_t)got);
        off += (uint64_t)got;
    }
    *id = XXH64_digest(h);
    *size = (uint64_t)st.st_size;
out:
    XXH64_freeState(h);
    close(fd);
    return status;
}

void dv365_generate_options_init(dv365_generate_options *opt)
{
    if (opt == NULL)
        return;
    memset(opt, 0, sizeof *opt);
    opt->struct_size = sizeof *opt;
    opt->nthreads = 1;
    opt->batch = 64;
    opt->resume = 0;
    opt->method = DV365_Q4_MINMAX;
    opt->created = 0;
}

/* Everything a run allocates, freed in one place. */
typedef struct run {
    dv365_timeline_reader *reader;
    dv365_store_gen *gen;
    dv365_workspace *ws;
    dv365_timeline **tls;
    uint64_t *ids;
    int64_t *cutoffs;
    float *U;
    uint8_t *blob;
    size_t batch;
} run;

static void run_free(run *r)
{
    dv365_timeline_reader_free(r->reader);
    dv365_store_generation_free(r->gen); /* uncommitted: stays pending */
    dv365_workspace_free(r->ws);
    if (r->tls)
        for (size_t b = 0; b < r->batch; b++)
            dv365_timeline_free(r->tls[b]);
    dv_free(r->tls);
    dv_free(r->ids);
    dv_free(r->cutoffs);
    dv_free(r->U);
    dv_free(r->blob);
}

static dv365_status run_alloc(run *r, const dv365_config *cfg, size_t batch, size_t K, size_t D,
                              size_t blob_size, int64_t cutoff)
{
    size_t u_floats, u_bytes;
    if (!dv_mul_size(batch, K, &u_floats) || !dv_mul_size(u_floats, D, &u_floats) ||
        !dv_mul_size(u_floats, sizeof(float), &u_bytes))
        return dv_error(DV365_E_NOMEM, "dv365_generate: batch of %zu users overflows", batch);
    r->batch = batch;
    r->tls = dv_calloc(batch, sizeof *r->tls);
    r->ids = dv_calloc(batch, sizeof *r->ids);
    r->cutoffs = dv_calloc(batch, sizeof *r->cutoffs);
    r->U = dv_malloc(u_bytes);
    r->blob = dv_malloc(blob_size);
    if (!r->tls || !r->ids || !r->cutoffs || !r->U || !r->blob)
        return dv_error(DV365_E_NOMEM, "dv365_generate: out of memory for a batch of %zu", batch);
    for (size_t b = 0; b < batch; b++) {
        dv365_status st = dv365_timeline_create(cfg, &r->tls[b]);
        if (st != DV365_OK)
            return st;
        r->cutoffs[b] = cutoff;
    }
    return dv365_workspace_create(&r->ws);
}

/* Continue the store's pending generation if it was a run over the same
 * input; *resumed = false when there is nothing to resume. */
static dv365_status try_resume(run *r, dv365_store *store, const dv_gen_checkpoint *want,
                               dv_gen_checkpoint *got, bool *resumed)
{
    *resumed = false;
    dv365_status st = dv365_store_resume_generation(store, &r->gen);
    if (st == DV365_E_NOT_FOUND)
        return DV365_OK;
    if (st != DV365_OK)
        return st;
    unsigned char buf[DV_GEN_CKPT_BYTES + 1];
    size_t n;
    st = dv365_store_generation_checkpoint(r->gen, buf, sizeof buf, &n);
    if (st == DV365_E_NOT_FOUND) { /* stopped before its first batch: start over */
        dv365_store_generation_free(r->gen);
        r->gen = NULL;
        return DV365_OK;
    }
    if (st == DV365_E_BUFFER_TOO_SMALL)
        st = dv_error(DV365_E_FORMAT, "the pending generation's checkpoint was not written by "
                      "dv365_generate");
    if (st == DV365_OK)
        st = dv_gen_checkpoint_read(buf, n, got);
    if (st != DV365_OK)
        return dv_error_context(st, "dv365_generate: cannot resume");
    const char *what = NULL;
    if (got->input_id != want->input_id || got->input_size != want->input_size ||
        got->total != want->total)
        what = "another timeline file";
    else if (got->fingerprint != want->fingerprint)
        what = "another model";
    else if (got->cutoff != want->cutoff)
        what = "another cutoff";
    else if (got->created != want->created || got->method != want->method)
        what = "another creation time or quantization method";
    if (what)
        return dv_error(DV365_E_MISMATCH,
                        "dv365_generate: the store's pending generation was made from %s; abort "
                        "it or run without resume",
                        what);
    *resumed = true;
    return DV365_OK;
}

dv365_status dv365_generate(const dv365_model *model, const char *timelines_path, int64_t cutoff,
                            dv365_store *store, const dv365_generate_options *opt)
{
    dv_clear_error();
    DV_CHECK_NULL(model);
    DV_CHECK_NULL(timelines_path);
    DV_CHECK_NULL(store);
    dv365_generate_options o;
    dv365_generate_options_init(&o);
    if (opt) {
        if (opt->struct_size != sizeof o)
            return dv_error(DV365_E_INVALID,
                            "dv365_generate: opt->struct_size is %zu, expected %zu (set it with "
                            "dv365_generate_options_init)",
                            opt->struct_size, sizeof o);
        o = *opt;
    }
    if (o.nthreads < 1 || o.nthreads > DV_MAX_CHUNKS)
        return dv_error(DV365_E_INVALID, "dv365_generate: nthreads must be in [1, %d], got %d",
                        DV_MAX_CHUNKS, o.nthreads);
    if (o.batch < 1 || o.batch > MAX_BATCH)
        return dv_error(DV365_E_INVALID, "dv365_generate: batch must be in [1, %d], got %zu",
                        MAX_BATCH, o.batch);
    if (o.method != DV365_Q4_MINMAX && o.method != DV365_Q4_GREEDY)
        return dv_error(DV365_E_INVALID, "dv365_generate: unknown quantization method %d",
                        (int)o.method);
    if (cutoff < 0 || cutoff > DV365_TIME_MAX)
        return dv_error(DV365_E_TIMESTAMP, "dv365_generate: cutoff %lld is outside [0, 2100-01-01]",
                        (long long)cutoff);
    if (o.created < 0 || o.created > DV365_TIME_MAX)
        return dv_error(DV365_E_TIMESTAMP,
                        "dv365_generate: created %lld is outside [0, 2100-01-01]",
                        (long long)o.created);
    const int64_t created = o.created ? o.created : cutoff;
    const size_t K = dv365_model_num_tokens(model), D = dv365_model_dim(model);
    const size_t blob_size = dv365_blob_size(K, D);
    const uint64_t fp = dv365_model_fingerprint(model);
    if (blob_size == 0)
        return dv_error(DV365_E_INVALID, "dv365_generate: the model's %zu x %zu tokens cannot be "
                        "stored", K, D);

    run r = {0};
    dv_gen_checkpoint ck = {.method = (uint32_t)o.method, .fingerprint = fp, .cutoff = cutoff,
                            .created = created};
    dv365_status st = dv_timeline_file_identity(timelines_path, &ck.input_id, &ck.input_size);
    if (st == DV365_OK)
        st = dv365_timeline_reader_open(timelines_path, dv365_model_config(model), &r.reader);
    if (st != DV365_OK)
        goto out;
    ck.total = dv365_timeline_reader_count(r.reader);

    bool resumed = false;
    dv_gen_checkpoint prev;
    if (o.resume && (st = try_resume(&r, store, &ck, &prev, &resumed)) != DV365_OK)
        goto out;
    if (resumed) {
        ck.done = prev.done;
        ck.last_user = prev.last_user;
        if (ck.done > 0 && ck.done < ck.total) {
            /* Skip to just after the last user written. */
            uint64_t id;
            dv365_timeline *tl;
            int eof;
            if ((st = dv365_timeline_create(dv365_model_config(model), &tl)) != DV365_OK)
                goto out;
            st = dv365_timeline_reader_seek(r.reader, ck.last_user);
            if (st == DV365_OK)
                st = dv365_timeline_reader_next(r.reader, &id, tl, &eof);
            dv365_timeline_free(tl);
            if (st != DV365_OK) {
                st = dv_error_context(st, "dv365_generate: resuming after user %llu",
                                      (unsigned long long)ck.last_user);
                goto out;
            }
        }
    } else if ((st = dv365_store_begin_generation(store, fp, created, &r.gen)) != DV365_OK) {
        goto out;
    }
    if ((st = run_alloc(&r, dv365_model_config(model), o.batch, K, D, blob_size, cutoff)) !=
        DV365_OK)
        goto out;

    const size_t row = K * D;
    while (ck.done < ck.total) {
        size_t n = 0;
        int eof = 0;
        while (n < o.batch && !eof) {
            st = dv365_timeline_reader_next(r.reader, &r.ids[n], r.tls[n], &eof);
            if (st != DV365_OK)
                goto out;
            n += !eof;
        }
        if (n == 0) {
            st = dv_error(DV365_E_FORMAT, "'%s' ended after %llu of its %llu users", timelines_path,
                          (unsigned long long)ck.done, (unsigned long long)ck.total);
            goto out;
        }
        st = dv365_model_embed(model, r.ws, n, (const dv365_timeline *const *)r.tls, r.cutoffs,
                               r.U, o.nthreads);
        if (st != DV365_OK) {
            st = dv_error_context(st, "dv365_generate: users %llu..%llu of '%s'",
                                  (unsigned long long)ck.done,
                                  (unsigned long long)(ck.done + n - 1), timelines_path);
            goto out;
        }
        for (size_t b = 0; b < n; b++) {
            st = dv365_blob_encode(r.U + b * row, K, D, fp, created, o.method, r.blob, blob_size);
            if (st == DV365_OK)
                st = dv365_store_put(r.gen, r.ids[b], r.blob, blob_size);
            if (st != DV365_OK) {
                st = dv_error_context(st, "dv365_generate: user %llu",
                                      (unsigned long long)r.ids[b]);
                goto out;
            }
        }
        ck.done += n;
        ck.last_user = r.ids[n - 1];
        unsigned char buf[DV_GEN_CKPT_BYTES];
        dv_gen_checkpoint_write(&ck, buf);
        if ((st = dv365_store_checkpoint(r.gen, buf, sizeof buf)) != DV365_OK)
            goto out;
        if (o.progress && o.progress(o.progress_ctx, (size_t)ck.done, (size_t)ck.total) != 0) {
            uint64_t number = 0;
            dv365_store_generation_info(r.gen, &number, NULL, NULL, NULL);
            st = dv_error(DV365_E_STATE,
                          "dv365_generate: stopped by the progress callback after %llu of %llu "
                          "users; generation %llu stays pending (run again with resume)",
                          (unsigned long long)ck.done, (unsigned long long)ck.total,
                          (unsigned long long)number);
            goto out;
        }
    }
    st = dv365_store_commit_generation(r.gen);
out:
    run_free(&r);
    return st;
}
