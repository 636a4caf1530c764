/**
 * @file dv365.h
 * dv365.h — the whole public API of libdv365.
 *
 * libdv365 turns a user's year-long unified timeline (UniTi) into the DV365
 * embedding: the timeline is cut into ~200 slices, each slice is pooled over
 * shared embedding tables into one D-dim vector, and an encoder (Funnel
 * Transformer ‖ Linear Compression Encoder) summarizes the N pooled vectors
 * into K tokens of D.  See docs/guide.md for the concepts.
 *
 * Conventions (they hold for every function below):
 *  - Every function that can fail returns a dv365_status: 0 is success,
 *    negative values are errors.  Values never change between releases.
 *  - After a failure, dv365_last_error() gives a readable message for the
 *    calling thread.  A failed call leaves every handle it touched valid and
 *    unchanged (unless the function says otherwise).
 *  - The library never aborts, exits or prints.
 *  - Handles are opaque.  A handle documented as read-only after creation
 *    (config, pooler, model) may be shared by any number of threads; mutable
 *    handles (timeline, workspace, ...) belong to one thread at a time.
 *  - Sizes and indices are size_t; arrays are row-major float32 unless said.
 *  - Output pointers are written only on success.
 */
#ifndef DV365_H
#define DV365_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(DV365_BUILDING_LIBRARY) && defined(__GNUC__)
#define DV365_API __attribute__((visibility("default")))
#else
#define DV365_API
#endif

/* ------------------------------------------------------------------------ */
/* Version                                                                   */
/* ------------------------------------------------------------------------ */

#define DV365_VERSION_MAJOR 0
#define DV365_VERSION_MINOR 1
#define DV365_VERSION_PATCH 0
/** MAJOR*10000 + MINOR*100 + PATCH, comparable with dv365_version_number(). */
#define DV365_VERSION_NUMBER \
    (DV365_VERSION_MAJOR * 10000 + DV365_VERSION_MINOR * 100 + DV365_VERSION_PATCH)

/** The version of the library actually loaded (may differ from the header). */
DV365_API unsigned dv365_version_number(void);
/** The loaded library's version as text, "MAJOR.MINOR.PATCH". */
DV365_API const char *dv365_version_string(void);

/* ------------------------------------------------------------------------ */
/* Status codes and errors                                                   */
/* ------------------------------------------------------------------------ */

/** Pinned values: never renumbered, never reused. */
typedef enum dv365_status {
    DV365_OK = 0,
    DV365_E_NULL = -1,             /**< a required pointer argument is NULL */
    DV365_E_INVALID = -2,          /**< an argument is out of range or inconsistent */
    DV365_E_NONFINITE = -3,        /**< a NaN or infinity where finite values are required */
    DV365_E_NOMEM = -4,            /**< allocation failed or a size overflows */
    DV365_E_IO = -5,               /**< a file could not be opened, read or written */
    DV365_E_PARSE = -6,            /**< malformed YAML (message names line and column) */
    DV365_E_CONFIG = -7,           /**< well-formed YAML that is not a valid config */
    DV365_E_NOT_FOUND = -8,        /**< an unknown name (slice, table, code, tensor, key) */
    DV365_E_FORMAT = -9,           /**< a malformed file or buffer (weights, blob, data) */
    DV365_E_CHECKSUM = -10,        /**< a checksum does not match */
    DV365_E_VERSION = -11,         /**< an unsupported format version */
    DV365_E_MISMATCH = -12,        /**< shapes, sizes or fingerprints disagree */
    DV365_E_TIMESTAMP = -13,       /**< a time before 1970 or after 2100 */
    DV365_E_BUFFER_TOO_SMALL = -14, /**< the caller's buffer is too small */
    DV365_E_THREAD = -15,          /**< a thread could not be started */
    DV365_E_STATE = -16,           /**< the call does not fit the handle's state */
    DV365_E_INTERNAL = -99         /**< a bug in libdv365: please report it */
} dv365_status;

/** A short, static description of a status ("invalid argument", ...). */
DV365_API const char *dv365_status_string(dv365_status status);

/** The message of the last failed call made by this thread; "" if none.
 * Valid until this thread's next call into the library. */
DV365_API const char *dv365_last_error(void);

/* ------------------------------------------------------------------------ */
/* Memory                                                                    */
/* ------------------------------------------------------------------------ */

/** Redirect every allocation of the library.  alloc_fn returns NULL on
 * failure; free_fn is called only with pointers alloc_fn returned.  Each
 * block remembers the allocator that made it, so changing the allocator while
 * handles are alive is safe.  Passing NULL for both restores malloc/free.
 * Not thread-safe: call it before starting threads that use the library. */
typedef void *(*dv365_alloc_fn)(void *opaque, size_t size);
typedef void (*dv365_free_fn)(void *opaque, void *ptr);
/** Install alloc_fn and free_fn (contract at dv365_alloc_fn); both NULL restores malloc/free, one
 * NULL is DV365_E_INVALID. */
DV365_API dv365_status dv365_set_allocator(dv365_alloc_fn alloc_fn, dv365_free_fn free_fn,
                                           void *opaque);

/* ------------------------------------------------------------------------ */
/* Configuration (YAML; format in docs/config.md)                            */
/* ------------------------------------------------------------------------ */

/** Read-only after creation; shareable between threads. */
typedef struct dv365_config dv365_config;

/** The three categorical vocabularies of a timeline event. */
typedef enum dv365_vocab {
    DV365_VOCAB_ACTION = 0,
    DV365_VOCAB_MEDIA_TYPE = 1,
    DV365_VOCAB_SURFACE = 2
} dv365_vocab;

/** Load and validate a YAML config file (docs/config.md); errors name the line and column. */
DV365_API dv365_status dv365_config_load(const char *path, dv365_config **out);
/** Like dv365_config_load, from len bytes of YAML text in memory. */
DV365_API dv365_status dv365_config_parse(const char *yaml, size_t len, dv365_config **out);
/** Free a config (NULL is a no-op), after the timelines, poolers and readers made from it. */
DV365_API void dv365_config_free(dv365_config *cfg);

/** Embedding dimension D. */
DV365_API size_t dv365_config_dim(const dv365_config *cfg);
/** Number of slices N after expansion over id fields and windows. */
DV365_API size_t dv365_config_num_slices(const dv365_config *cfg);
/** Expanded slice name such as "like.media.7d"; NULL when i is out of range. */
DV365_API const char *dv365_config_slice_name(const dv365_config *cfg, size_t i);
/** Index of the expanded slice called name; DV365_E_NOT_FOUND if there is none. */
DV365_API dv365_status dv365_config_slice_index(const dv365_config *cfg, const char *name,
                                                size_t *index);
/** Number of shared pooling tables. */
DV365_API size_t dv365_config_num_tables(const dv365_config *cfg);
/** Name of table i; NULL when i is out of range. */
DV365_API const char *dv365_config_table_name(const dv365_config *cfg, size_t i);
/** Rows of table i; 0 when i is out of range. */
DV365_API size_t dv365_config_table_rows(const dv365_config *cfg, size_t i);
/** Number of codes in a vocabulary; codes are 0 to size-1. */
DV365_API size_t dv365_config_vocab_size(const dv365_config *cfg, dv365_vocab vocab);
/** The code of a vocabulary name (such as action "like"); DV365_E_NOT_FOUND if unknown. */
DV365_API dv365_status dv365_config_code(const dv365_config *cfg, dv365_vocab vocab,
                                         const char *name, int32_t *code);
/** The name of a vocabulary code; NULL when out of range. */
DV365_API const char *dv365_config_code_name(const dv365_config *cfg, dv365_vocab vocab,
                                             int32_t code);
/** The training tasks of the backbone, in logit order, and the number of
 * dense features of a training example. */
DV365_API size_t dv365_config_num_tasks(const dv365_config *cfg);
/** Name of a task, in logit order; NULL when out of range. */
DV365_API const char *dv365_config_task_name(const dv365_config *cfg, size_t task);
/** 1 for a binary task (sigmoid + BCE), 0 for regression (MSE), -1 if out of range. */
DV365_API int dv365_config_task_is_binary(const dv365_config *cfg, size_t task);
/** Dense features per training example (0 for NULL). */
DV365_API size_t dv365_config_num_dense(const dv365_config *cfg);

/* ------------------------------------------------------------------------ */
/* Timeline: one user's events (docs/timeline.md)                            */
/* ------------------------------------------------------------------------ */

/** One user's events, validated and kept sorted by time; one thread at a time. */
typedef struct dv365_timeline dv365_timeline;

/** Times are unix seconds in [0, DV365_TIME_MAX]. */
#define DV365_TIME_MAX INT64_C(4102444800) /**< 2100-01-01T00:00:00Z */

/** An empty timeline validated against cfg's vocabularies.  The config must
 * outlive the timeline. */
DV365_API dv365_status dv365_timeline_create(const dv365_config *cfg, dv365_timeline **out);
/** Free a timeline; NULL is a no-op. */
DV365_API void dv365_timeline_free(dv365_timeline *tl);
/** Forget all events, keeping the memory (no allocation on reuse). */
DV365_API void dv365_timeline_clear(dv365_timeline *tl);
/** Append n events given as columns.  All n are validated first; on any error
 * nothing is appended and the message names the event index and the field.
 * Events need not be in time order: the timeline keeps itself stably sorted
 * by time. */
DV365_API dv365_status dv365_timeline_append(dv365_timeline *tl, size_t n, const int64_t *time,
                                             const uint64_t *media_id, const uint64_t *author_id,
                                             const uint64_t *topic_id, const int32_t *action,
                                             const int32_t *media_type, const int32_t *surface,
                                             const float *duration_ms, const float *dwell_ms);
/** Number of events (0 for NULL). */
DV365_API size_t dv365_timeline_size(const dv365_timeline *tl);

/* ------------------------------------------------------------------------ */
/* Workspace: per-thread scratch memory                                      */
/* ------------------------------------------------------------------------ */

/** Scratch memory for one thread.  It grows on first use to what a call needs
 * and is then reused, so steady-state calls do not allocate. */
typedef struct dv365_workspace dv365_workspace;
/** An empty workspace; it allocates on first use. */
DV365_API dv365_status dv365_workspace_create(dv365_workspace **out);
/** Free a workspace; NULL is a no-op. */
DV365_API void dv365_workspace_free(dv365_workspace *ws);
/** Grow the workspace to at least bytes now (see the *_workspace_size calls). */
DV365_API dv365_status dv365_workspace_reserve(dv365_workspace *ws, size_t bytes);
/** Bytes the workspace holds now (0 for NULL). */
DV365_API size_t dv365_workspace_capacity(const dv365_workspace *ws);

/* ------------------------------------------------------------------------ */
/* Pooler: shared embedding tables + multi-slice mean / weighted pooling     */
/* ------------------------------------------------------------------------ */

/** Holds the config's embedding tables.  Read-only while pooling: any number
 * of threads may pool through one pooler, each with its own workspace. */
typedef struct dv365_pooler dv365_pooler;

/** Tables initialized from N(0, init_std^2) with a seeded generator (the
 * config's pooling.init_std).  cfg must outlive the pooler. */
DV365_API dv365_status dv365_pooler_create(const dv365_config *cfg, uint64_t seed,
                                           dv365_pooler **out);
/** Free a pooler; NULL is a no-op. */
DV365_API void dv365_pooler_free(dv365_pooler *pooler);
/** Direct access to table i ([rows x D], row-major) for loading, saving and
 * optimizer updates.  Do not write while other threads pool. */
DV365_API dv365_status dv365_pooler_table(dv365_pooler *pooler, size_t i, float **data,
                                          size_t *rows);
/** Row of table i that an id hashes to (docs/hash.md). */
DV365_API size_t dv365_hash_row(uint64_t id, size_t rows);

/** Workspace bytes pool forward/backward need for a timeline of n events. */
DV365_API size_t dv365_pool_workspace_size(const dv365_pooler *pooler, size_t n_events);

/** Pool the events strictly before cutoff (unix seconds) into
 * X [N x D]; counts [N] (events per slice) and weight_sums [N] may be NULL.
 * An empty slice gives a zero row. */
DV365_API dv365_status dv365_pool_forward(const dv365_pooler *pooler, dv365_workspace *ws,
                                          const dv365_timeline *tl, int64_t cutoff, float *X,
                                          uint32_t *counts, float *weight_sums);

/** Sparse gradient of the tables: per table, the distinct rows touched and
 * one gradient row [D] each.  Owned by the caller; reused across calls. */
typedef struct dv365_pool_grad dv365_pool_grad;
/** An empty sparse gradient for the tables of pooler. */
DV365_API dv365_status dv365_pool_grad_create(const dv365_pooler *pooler, dv365_pool_grad **out);
/** Free a gradient; NULL is a no-op. */
DV365_API void dv365_pool_grad_free(dv365_pool_grad *grad);
/** Rows of table t touched by the last backward, distinct and in ascending
 * order; the pointers stay valid until the next backward into grad. */
DV365_API dv365_status dv365_pool_grad_table(const dv365_pool_grad *grad, size_t t,
                                             size_t *n_rows, const size_t **rows,
                                             const float **grad_rows);

/** Backward of dv365_pool_forward for the same timeline and cutoff:
 * from dX [N x D], write the deduplicated table-row gradients into grad
 * (its previous contents are replaced). */
DV365_API dv365_status dv365_pool_backward(const dv365_pooler *pooler, dv365_workspace *ws,
                                           const dv365_timeline *tl, int64_t cutoff,
                                           const float *dX, dv365_pool_grad *grad);

/* ------------------------------------------------------------------------ */
/* Encoder: Funnel Transformer ‖ Linear Compression Encoder (docs/encoder.md) */
/* ------------------------------------------------------------------------ */

/** The user encoder: pooled slices X [N x D] -> the DV365 embedding U [K x D]
 * (K = funnel tokens after the last block + k_lce; 58 x 256 by default).
 * Its weights are read-only after creation: any number of threads may
 * encode with one encoder, each with its own workspace.  The encoder copies
 * what it needs from the config, which may be freed afterwards. */
typedef struct dv365_encoder dv365_encoder;

/** Seeded initialization (the same seed gives the same weights everywhere):
 * weight matrices and encoder.pos N(0, init_std^2), layer-norm weights 1,
 * all biases 0 (the exact draw order is in docs/encoder.md). */
DV365_API dv365_status dv365_encoder_create(const dv365_config *cfg, uint64_t seed,
                                            dv365_encoder **out);
/** Free an encoder; NULL is a no-op. */
DV365_API void dv365_encoder_free(dv365_encoder *enc);
/** K, the number of output tokens; 0 for NULL. */
DV365_API size_t dv365_encoder_num_tokens(const dv365_encoder *enc);
/** Number of float parameters (all encoder tensors); 0 for NULL. */
DV365_API size_t dv365_encoder_num_params(const dv365_encoder *enc);
/** Workspace bytes dv365_encode needs for a batch (reserve them up front to
 * make the first call allocation-free); SIZE_MAX if the size overflows. */
DV365_API size_t dv365_encode_workspace_size(const dv365_encoder *enc, size_t batch);
/** X [batch, N, D] -> U [batch, K, D].  Users are packed into large GEMMs;
 * nthreads (>= 1) threads work on the call.  U is bitwise identical for any
 * nthreads.  Every value of X must be finite (DV365_E_NONFINITE names the
 * first bad user, token and column).  No allocation once ws is large enough. */
DV365_API dv365_status dv365_encode(const dv365_encoder *enc, dv365_workspace *ws,
                                    size_t batch, const float *X, float *U, int nthreads);
/** Weights as safetensors with the tensor names of docs/encoder.md (PyTorch
 * state_dict style).  Load reads the encoder.* tensors for cfg's sizes and
 * ignores other tensors in the file; a missing tensor (DV365_E_NOT_FOUND), a
 * wrong dtype (DV365_E_FORMAT), shape (DV365_E_MISMATCH) or a non-finite
 * value (DV365_E_NONFINITE) is an error naming the tensor.  Save writes the
 * file atomically. */
DV365_API dv365_status dv365_encoder_load(const dv365_config *cfg, const char *path,
                                          dv365_encoder **out);
/** Write the encoder's tensors to a safetensors file, atomically. */
DV365_API dv365_status dv365_encoder_save(const dv365_encoder *enc, const char *path);

/* ------------------------------------------------------------------------ */
/* Model: config + pooling tables + encoder, saved as a directory            */
/* ------------------------------------------------------------------------ */

/** A model directory holds config.yaml and weights.safetensors
 * (docs/weights.md).  Its tensors are `tables.<name>` and `encoder.*`.  A model is read-only
 * while it embeds: any number of threads may share one, each with its own
 * workspace. */
typedef struct dv365_model dv365_model;

/** A fresh model: the config at config_path, tables and encoder initialized
 * from seed (the pooler gets seed, the encoder seed + 1). */
DV365_API dv365_status dv365_model_init(const char *config_path, uint64_t seed,
                                        dv365_model **out);
/** Load dir/config.yaml and dir/weights.safetensors.  Missing, misshapen or
 * mistyped tensors -> DV365_E_NOT_FOUND / DV365_E_MISMATCH / DV365_E_FORMAT. */
DV365_API dv365_status dv365_model_load(const char *dir, dv365_model **out);
/** Create dir if needed and write both files atomically (each replaced
 * whole or not at all). */
DV365_API dv365_status dv365_model_save(const dv365_model *model, const char *dir);
/** Free a model with its config, tables and encoder; NULL is a no-op. */
DV365_API void dv365_model_free(dv365_model *model);

/** Borrowed parts; valid as long as the model. */
DV365_API const dv365_config *dv365_model_config(const dv365_model *model);
/** The model's pooler (its tables), borrowed. */
DV365_API dv365_pooler *dv365_model_pooler(dv365_model *model);
/** The model's encoder, borrowed. */
DV365_API dv365_encoder *dv365_model_encoder(dv365_model *model);
/** N, D and K of the model (0 for NULL). */
DV365_API size_t dv365_model_num_slices(const dv365_model *model);
/** D, the embedding dimension (0 for NULL). */
DV365_API size_t dv365_model_dim(const dv365_model *model);
/** K, the tokens of one embedding (0 for NULL). */
DV365_API size_t dv365_model_num_tokens(const dv365_model *model);
/** XXH64 of the config text and every weight, in file order: blobs carry it
 * so that readers can tell which model made an embedding.  Computed when
 * the model is created, loaded or saved. */
DV365_API uint64_t dv365_model_fingerprint(const dv365_model *model);

/** Workspace bytes dv365_model_embed needs for batch users of at most
 * max_events events each with nthreads threads (SIZE_MAX on overflow). */
DV365_API size_t dv365_embed_workspace_size(const dv365_model *model, size_t batch,
                                            size_t max_events, int nthreads);
/** Pool and encode batch users: timelines[b] with events strictly before
 * cutoffs[b] -> U [batch, K, D].  Pooling runs users in parallel and the
 * encoder packs all users into large GEMMs; bitwise identical for any
 * nthreads >= 1. */
DV365_API dv365_status dv365_model_embed(const dv365_model *model, dv365_workspace *ws,
                                         size_t batch, const dv365_timeline *const *timelines,
                                         const int64_t *cutoffs, float *U, int nthreads);

/* ------------------------------------------------------------------------ */
/* Data files: timelines and training examples on disk (docs/data.md)        */
/* ------------------------------------------------------------------------ */

/** Versioned little-endian binary files with XXH64 checksums per record (or
 * per chunk) that are read sequentially through a small fixed buffer, so
 * files larger than memory work.  Writers write a temporary file in the
 * same directory and rename it over the final name only in *_close (after
 * fsync): a crash, an error or a *_free without close never leaves a
 * partial file under the final name.  Readers validate everything (magic,
 * version, sizes, counts, checksums, the values themselves) and fail with
 * DV365_E_FORMAT, DV365_E_VERSION or DV365_E_CHECKSUM naming the record.
 * After a failed *_next the reader stays on the failed record (the next
 * call fails the same way); rewind or seek to go on.  Writers and readers
 * belong to one thread at a time. */
#define DV365_TIMELINE_FILE_VERSION 1
#define DV365_EXAMPLE_FILE_VERSION 1 /**< format of example files */

/** Timeline files: one record per user (user id + all its events).  The
 * file records a fingerprint of cfg's vocabularies (action, media type and
 * surface names): reading it with other vocabularies is DV365_E_MISMATCH. */
typedef struct dv365_timeline_writer dv365_timeline_writer;
/** Reads a timeline file sequentially or by user id. */
typedef struct dv365_timeline_reader dv365_timeline_reader;

/** cfg must outlive the writer. */
DV365_API dv365_status dv365_timeline_writer_open(const char *path, const dv365_config *cfg,
                                                  dv365_timeline_writer **out);
/** Append one user's whole timeline (0 events allowed).  Each user id may
 * appear once per file (DV365_E_INVALID).  tl must use the writer's
 * vocabularies.  After an I/O error the writer only accepts _free. */
DV365_API dv365_status dv365_timeline_writer_add(dv365_timeline_writer *w, uint64_t user_id,
                                                 const dv365_timeline *tl);
/** Users added so far. */
DV365_API size_t dv365_timeline_writer_count(const dv365_timeline_writer *w);
/** Finish the file (index, header, fsync) and rename it into place.  On
 * failure nothing is left under path.  Call _free afterwards either way. */
DV365_API dv365_status dv365_timeline_writer_close(dv365_timeline_writer *w);
/** Free the writer; if it was not closed, the file is abandoned. */
DV365_API void dv365_timeline_writer_free(dv365_timeline_writer *w);

/** Open and check the header and the file size; cfg must outlive the
 * reader.  Errors: DV365_E_IO, DV365_E_FORMAT (foreign or truncated file),
 * DV365_E_VERSION, DV365_E_CHECKSUM (header), DV365_E_MISMATCH (vocabularies). */
DV365_API dv365_status dv365_timeline_reader_open(const char *path, const dv365_config *cfg,
                                                  dv365_timeline_reader **out);
/** Read the next user: *user_id and tl (cleared, then filled with the
 * user's events) and *done = 0; at the end of the file *done = 1, *user_id
 * = 0 and tl is cleared.  On failure tl is either unchanged or empty. */
DV365_API dv365_status dv365_timeline_reader_next(dv365_timeline_reader *r, uint64_t *user_id,
                                                  dv365_timeline *tl, int *done);
/** Make the next _next return user_id (binary search in the file's index,
 * read and checked on first use); DV365_E_NOT_FOUND if absent. */
DV365_API dv365_status dv365_timeline_reader_seek(dv365_timeline_reader *r, uint64_t user_id);
/** Go back to the first user. */
DV365_API dv365_status dv365_timeline_reader_rewind(dv365_timeline_reader *r);
/** Users and events in the file (0 for NULL). */
DV365_API size_t dv365_timeline_reader_count(const dv365_timeline_reader *r);
/** Events of all users in the file (0 for NULL). */
DV365_API size_t dv365_timeline_reader_num_events(const dv365_timeline_reader *r);
/** Free a reader; NULL is a no-op. */
DV365_API void dv365_timeline_reader_free(dv365_timeline_reader *r);

/** Example files: training examples (user id, label time in unix seconds,
 * the candidate's media/author/topic ids, n_dense dense features, n_tasks
 * labels), in checksummed chunks of fixed-size rows. */
typedef struct dv365_example_writer dv365_example_writer;
/** Reads an example file sequentially or from any index. */
typedef struct dv365_example_reader dv365_example_reader;

/** n_dense in 0..65536, n_tasks in 1..65536. */
DV365_API dv365_status dv365_example_writer_open(const char *path, size_t n_dense,
                                                 size_t n_tasks, dv365_example_writer **out);
/** Append one example.  dense [n_dense] (NULL allowed when n_dense is 0)
 * and labels [n_tasks] must be finite (DV365_E_NONFINITE naming the
 * column); label_time in [0, DV365_TIME_MAX] (DV365_E_TIMESTAMP). */
DV365_API dv365_status dv365_example_writer_add(dv365_example_writer *w, uint64_t user_id,
                                                int64_t label_time, uint64_t media_id,
                                                uint64_t author_id, uint64_t topic_id,
                                                const float *dense, const float *labels);
/** Examples added so far. */
DV365_API size_t dv365_example_writer_count(const dv365_example_writer *w);
/** Finish the file and rename it into place, as dv365_timeline_writer_close. */
DV365_API dv365_status dv365_example_writer_close(dv365_example_writer *w);
/** Free the writer; if it was not closed, the file is abandoned. */
DV365_API void dv365_example_writer_free(dv365_example_writer *w);

/** Open an example file and check its header (DV365_E_IO, _FORMAT, _VERSION, _CHECKSUM). */
DV365_API dv365_status dv365_example_reader_open(const char *path,
                                                 dv365_example_reader **out);
/** Examples in the file (0 for NULL). */
DV365_API size_t dv365_example_reader_count(const dv365_example_reader *r);
/** Dense features per example. */
DV365_API size_t dv365_example_reader_num_dense(const dv365_example_reader *r);
/** Labels per example. */
DV365_API size_t dv365_example_reader_num_tasks(const dv365_example_reader *r);
/** Read the next example into the caller's variables and arrays (dense
 * [n_dense], may be NULL when n_dense is 0; labels [n_tasks]); *done = 1
 * at the end of the file (nothing else written). */
DV365_API dv365_status dv365_example_reader_next(dv365_example_reader *r, uint64_t *user_id,
                                                 int64_t *label_time, uint64_t *media_id,
                                                 uint64_t *author_id, uint64_t *topic_id,
                                                 float *dense, float *labels, int *done);
/** Make the next _next return example index (0-based; index == count
 * means the end).  Rows are fixed-size, so this is O(1): data-parallel
 * workers can each read their own range of one file. */
DV365_API dv365_status dv365_example_reader_seek(dv365_example_reader *r, size_t index);
/** Free a reader; NULL is a no-op. */
DV365_API void dv365_example_reader_free(dv365_example_reader *r);

/* CSV/TSV converters (column names in docs/data.md).  delimiter is ',',
 * '\t', ';' or '|', or 0 to take the one the header row uses.  Fields may
 * be quoted (RFC 4180).  A bad row stops the conversion with an error that
 * names the file, the row, its line, the column and why (DV365_E_FORMAT
 * for syntax, missing columns and non-numbers, DV365_E_NOT_FOUND for an
 * unknown action/media type/surface name, DV365_E_NONFINITE, ...); then no
 * output file is written.  *rows_read (may be NULL) counts the data rows. */

/** Timelines: one row per event; the rows of a user must be contiguous
 * (time order within a user does not matter).  Vocabulary columns take the
 * config's names or integer codes. */
DV365_API dv365_status dv365_csv_to_timelines(const char *csv_path, const dv365_config *cfg,
                                              char delimiter, const char *out_path,
                                              size_t *rows_read);
/** Examples: one row per example; n_dense and n_tasks are the numbers of
 * `dense_<i>` and `label_<i>` columns. */
DV365_API dv365_status dv365_csv_to_examples(const char *csv_path, char delimiter,
                                             const char *out_path, size_t *rows_read);

/* ------------------------------------------------------------------------ */
/* Training (docs/training.md)                                               */
/* ------------------------------------------------------------------------ */

/** Trains a model in place: its pooling tables and encoder, inside the DLRM
 * backbone it carries (config sections "backbone" and "training").  A
 * trainer belongs to one thread; nobody else may use the model during a
 * step.  Steps and evaluations are bitwise identical for any nthreads. */
typedef struct dv365_trainer dv365_trainer;

/** A trainer for model (fresh optimizer state); the model must outlive it. */
DV365_API dv365_status dv365_trainer_create(dv365_model *model, dv365_trainer **out);
/** Free a trainer (not its model); NULL is a no-op. */
DV365_API void dv365_trainer_free(dv365_trainer *trainer);
/** Optimizer steps taken (including those before a resume). */
DV365_API uint64_t dv365_trainer_steps(const dv365_trainer *trainer);

/** One optimizer step on batch examples.  Example b: the user's timeline
 * timelines[b] (events strictly before label_times[b] - training.gap are
 * used), the candidate item_ids[3b..3b+2] (media, author, topic),
 * dense[b * n_dense ..] (may be NULL without dense features) and
 * labels[b * n_tasks ..] in config task order.  Examples with the same
 * timeline and label time share one pooling and encoding pass.  *loss
 * (may be NULL) receives the weighted multi-task loss of the batch.  A
 * non-finite gradient norm skips the step (DV365_E_NONFINITE). */
DV365_API dv365_status dv365_trainer_step(dv365_trainer *trainer, size_t batch,
                                          const dv365_timeline *const *timelines,
                                          const int64_t *label_times, const uint64_t *item_ids,
                                          const float *dense, const float *labels, double *loss,
                                          int nthreads);
/** Per-task loss (unweighted batch mean) of the last step. */
DV365_API dv365_status dv365_trainer_task_loss(const dv365_trainer *trainer, size_t task,
                                               double *loss);

/** Evaluation: forward passes whose metrics accumulate until _eval_reset.
 * logits [batch * n_tasks] may be NULL. */
DV365_API void dv365_trainer_eval_reset(dv365_trainer *trainer);
/** Forward pass over batch examples (arguments as dv365_trainer_step), adding to the metrics. */
DV365_API dv365_status dv365_trainer_eval_batch(dv365_trainer *trainer, size_t batch,
                                                const dv365_timeline *const *timelines,
                                                const int64_t *label_times,
                                                const uint64_t *item_ids, const float *dense,
                                                const float *labels, float *logits, int nthreads);
/** Metrics of task since the reset: NE (TorchRec's definition) and AUC for
 * a binary task, MSE (on log1p of the target when the task fits it) for a
 * regression task; the others, and an AUC with one class only, are NaN.
 * Any output pointer may be NULL. */
DV365_API dv365_status dv365_trainer_eval_result(dv365_trainer *trainer, size_t task, double *ne,
                                                 double *auc, double *mse);
/** Mean loss per example and the number of examples since the reset. */
DV365_API dv365_status dv365_trainer_eval_loss(const dv365_trainer *trainer, double *loss,
                                               size_t *n_examples);
/** dv365_trainer_step with E = backbone.extra_tokens user tokens per example
 * from the caller (e.g. frozen DV365 tokens through an adapter): extra
 * [batch, E, dim] follows the encoder's tokens in the backbone, and d_extra
 * [batch, E, dim] (may be NULL) is OVERWRITTEN with dloss/dextra of the
 * step's forward.  extra may be NULL only when E = 0 (then this is exactly
 * dv365_trainer_step); with E > 0 the functions without _ex return
 * DV365_E_INVALID. */
DV365_API dv365_status dv365_trainer_step_ex(dv365_trainer *trainer, size_t batch,
                                             const dv365_timeline *const *timelines,
                                             const int64_t *label_times, const uint64_t *item_ids,
                                             const float *dense, const float *labels,
                                             const float *extra, float *d_extra, double *loss,
                                             int nthreads);
/** dv365_trainer_eval_batch with extra tokens, as dv365_trainer_step_ex. */
DV365_API dv365_status dv365_trainer_eval_batch_ex(dv365_trainer *trainer, size_t batch,
                                                   const dv365_timeline *const *timelines,
                                                   const int64_t *label_times,
                                                   const uint64_t *item_ids, const float *dense,
                                                   const float *labels, const float *extra,
                                                   float *logits, int nthreads);

/** Train from files (docs/data.md): `steps` steps of training.batch_size
 * examples (0 = to the end of the current epoch), in an order that is a
 * pure function of training.seed and the examples consumed so far (windows
 * of 65,536 examples shuffled; epochs wrap around the file), so a resumed
 * trainer continues exactly.  progress (may be NULL) is called after each
 * step; a nonzero return stops (DV365_E_STATE). */
DV365_API dv365_status dv365_trainer_train_files(
    dv365_trainer *trainer, const char *timelines_path, const char *examples_path,
    uint64_t steps, int (*progress)(void *ctx, uint64_t step, uint64_t total, double loss),
    void *ctx, int nthreads);
/** Evaluate every example of a file (resets the metrics first). */
DV365_API dv365_status dv365_trainer_eval_files(dv365_trainer *trainer, const char *timelines_path,
                                                const char *examples_path, int nthreads);

/** Checkpoint into dir: `dir/step-<N>/` is a complete model directory (with
 * the backbone) plus trainer_state.safetensors (optimizer state, step,
 * data position); dir/LATEST names the newest step, written last, so a
 * crash never loses the previous checkpoint.  dv365_model_load(dir) loads
 * the newest model. */
DV365_API dv365_status dv365_trainer_save(dv365_trainer *trainer, const char *dir);
/** Load the newest checkpoint of dir (or a step directory): the model and a
 * trainer that continues with bitwise the same steps. */
DV365_API dv365_status dv365_trainer_resume(const char *dir, dv365_model **model,
                                            dv365_trainer **trainer);


/* ------------------------------------------------------------------------ */
/* 4-bit rowwise quantization (docs/quant.md)                                */
/* ------------------------------------------------------------------------ */

/** FBGEMM's fused 4-bit rowwise layout: per row ceil(dim/2) bytes of codes
 * (even column in the low nibble), then the fp16 scale, then the fp16 bias,
 * little-endian; x ~= scale * q + bias with q in 0..15.  MINMAX gives bytes
 * identical to PyTorch's quantized.embedding_bag_4bit_prepack; GREEDY is
 * its optimized_qparams=True (nbins 200, ratio 0.16): lower error, slower. */
typedef enum dv365_q4_method { DV365_Q4_MINMAX = 0, DV365_Q4_GREEDY = 1 } dv365_q4_method;

/** Bytes of one quantized row: ceil(dim/2) + 4; 0 when dim is 0. */
DV365_API size_t dv365_q4_row_bytes(size_t dim);

/** Quantize x [rows x dim] into out (rows * dv365_q4_row_bytes(dim) bytes).
 * NaN/Inf -> DV365_E_NONFINITE naming the row and column; a row whose
 * minimum or scale does not fit in fp16 (|x| beyond 65504) ->
 * DV365_E_INVALID.  On failure the contents of out are unspecified.
 * Thread-safe; deterministic. */
DV365_API dv365_status dv365_q4_quantize(const float *x, size_t rows, size_t dim,
                                         dv365_q4_method method, uint8_t *out, size_t out_size);

/** Dequantize q (at least rows * row_bytes bytes) into out [rows x dim].
 * A row with a non-finite stored scale or bias -> DV365_E_FORMAT. */
DV365_API dv365_status dv365_q4_dequantize(const uint8_t *q, size_t q_size, size_t rows,
                                           size_t dim, float *out);

/* ------------------------------------------------------------------------ */
/* Embedding blob: the key-value store value (layout in docs/quant.md)       */
/* ------------------------------------------------------------------------ */

/** A 48-byte little-endian header (magic "DV365Q4B", XXH3-64 checksum,
 * format version, method, K, D, model fingerprint, creation time) followed
 * by K 4-bit rows of D. */
#define DV365_BLOB_VERSION 1
#define DV365_BLOB_HEADER_BYTES 48 /**< bytes before the rows */

/** Total blob bytes for k rows of dim; 0 when k or dim is 0 or above
 * UINT32_MAX, or the size overflows. */
DV365_API size_t dv365_blob_size(size_t k, size_t dim);

/** Quantize U [k x dim] and write the blob into out (dv365_blob_size bytes;
 * out_size smaller -> DV365_E_BUFFER_TOO_SMALL).  created is unix seconds
 * in [0, DV365_TIME_MAX] (else DV365_E_TIMESTAMP).  Errors of
 * dv365_q4_quantize are passed on.  On failure out holds no valid blob. */
DV365_API dv365_status dv365_blob_encode(const float *U, size_t k, size_t dim,
                                         uint64_t fingerprint, int64_t created,
                                         dv365_q4_method method, uint8_t *out, size_t out_size);

/** Validate a blob completely (magic, version, fields, size, checksum) and
 * report its header; any output pointer may be NULL.  Errors:
 * DV365_E_FORMAT (foreign, truncated, trailing bytes or bad fields),
 * DV365_E_VERSION, DV365_E_CHECKSUM. */
DV365_API dv365_status dv365_blob_inspect(const uint8_t *blob, size_t size,
                                          uint64_t *fingerprint, int64_t *created, size_t *k,
                                          size_t *dim);

/** Validate like dv365_blob_inspect, then check the blob is k x dim and
 * (unless expect_fingerprint is 0) was made by that model, else
 * DV365_E_MISMATCH; then dequantize into U [k x dim]. */
DV365_API dv365_status dv365_blob_decode(const uint8_t *blob, size_t size,
                                         uint64_t expect_fingerprint, size_t k, size_t dim,
                                         float *U);

/* ------------------------------------------------------------------------ */
/* Adapters: the DV365 embedding inside a downstream model (docs/adapters.md) */
/* ------------------------------------------------------------------------ */

/** An adapter turns the embedding U [K x D] of each user (for instance decoded from
 * a blob with dv365_blob_decode) into what a downstream model consumes:
 *   LINEAR          y = W vec(U) + b, W [P, K*D]: P floats per user, for a
 *                   ranking model to concatenate with its own embeddings;
 *   GATENET_VECTOR  GateNet feature-embedding gate, one gate per token:
 *                   out_k = sigmoid(w_k . u_k + b_k) * u_k  (K*D floats);
 *   GATENET_BIT     one gate per element: out_k = sigmoid(W_k u_k + b_k) ⊙ u_k
 *                   with W_k [D, D] per token (K*D floats);
 *   PREFIX          the K tokens to prepend to a sequence model's input,
 *                   optionally projected to its width H: U W^T + b with
 *                   W [H, D] shared by all tokens (K*H floats; K*D when
 *                   out_dim is 0, the identity).
 * Parameters live in one contiguous float block (weight, then bias) and are
 * saved as safetensors tensors `adapter.<name>.weight` / `.bias`.
 * Forward and backward only read the adapter: any number of threads may
 * share one, each with its own workspace.  Results are bitwise identical
 * for any nthreads. */
typedef struct dv365_adapter dv365_adapter;

/** What an adapter computes (see dv365_adapter). */
typedef enum dv365_adapter_kind {
    DV365_ADAPTER_LINEAR = 0,
    DV365_ADAPTER_GATENET_VECTOR = 1,
    DV365_ADAPTER_GATENET_BIT = 2,
    DV365_ADAPTER_PREFIX = 3
} dv365_adapter_kind;

/** A new adapter for embeddings of k tokens of dim.  name (1..64 of
 * [A-Za-z0-9_-]) names its tensors.  out_dim is P for LINEAR (> 0), H for
 * PREFIX (0 = no projection, no parameters) and must be 0 for the GateNet
 * kinds.  Weights are drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with a
 * seeded generator; biases start at 0. */
DV365_API dv365_status dv365_adapter_create(dv365_adapter_kind kind, const char *name, size_t k,
                                            size_t dim, size_t out_dim, uint64_t seed,
                                            dv365_adapter **out);
/** Free an adapter; NULL is a no-op. */
DV365_API void dv365_adapter_free(dv365_adapter *a);
/** Kind and sizes; any output pointer may be NULL. */
DV365_API dv365_status dv365_adapter_info(const dv365_adapter *a, dv365_adapter_kind *kind,
                                          size_t *k, size_t *dim, size_t *out_dim);
/** Floats of output per user (P, K*D or K*H); 0 for NULL. */
DV365_API size_t dv365_adapter_output_size(const dv365_adapter *a);
/** The parameter block (weight then bias, docs/adapters.md), for loading,
 * optimizers and gradient all-reduce; NULL when there are none. */
DV365_API size_t dv365_adapter_num_params(const dv365_adapter *a);
/** The parameter block itself, [dv365_adapter_num_params] floats; NULL when there are none. */
DV365_API float *dv365_adapter_params(dv365_adapter *a);
/** Workspace bytes forward and backward need for batch users (SIZE_MAX on
 * overflow); reserve them to make the calls allocation-free. */
DV365_API size_t dv365_adapter_workspace_size(const dv365_adapter *a, size_t batch);

/** U [batch, K, D] -> out [batch, output_size].  Every value of U must be
 * finite (DV365_E_NONFINITE names the user, token and column).
 * nthreads in [1, 1024]. */
DV365_API dv365_status dv365_adapter_forward(const dv365_adapter *a, dv365_workspace *ws,
                                             size_t batch, const float *U, float *out,
                                             int nthreads);
/** Backward of dv365_adapter_forward for the same U, given dout [batch,
 * output_size]: ACCUMULATES (+=) the parameter gradients into grad_params
 * [num_params] and dL/dU into dU [batch, K, D].  Either may be NULL (not
 * both); U and dout must be finite. */
DV365_API dv365_status dv365_adapter_backward(const dv365_adapter *a, dv365_workspace *ws,
                                              size_t batch, const float *U, const float *dout,
                                              float *grad_params, float *dU, int nthreads);

/** Save as safetensors, atomically.  The file holds the tensors plus __metadata__
 * entries `adapter.<name>.{kind,k,dim,out_dim}`.  Load finds adapter `name` in a file
 * (other tensors are ignored): no such adapter -> DV365_E_NOT_FOUND; bad
 * metadata -> DV365_E_FORMAT; a tensor of the wrong shape ->
 * DV365_E_MISMATCH; a non-finite weight -> DV365_E_NONFINITE. */
DV365_API dv365_status dv365_adapter_save(const dv365_adapter *a, const char *path);
/** Load adapter name from a safetensors file (errors as listed at dv365_adapter_save). */
DV365_API dv365_status dv365_adapter_load(const char *path, const char *name,
                                          dv365_adapter **out);

/* ------------------------------------------------------------------------ */
/* Store and batch generation (docs/store.md)                                */
/* ------------------------------------------------------------------------ */

/** The embedded key-value store of embeddings: user id -> blob, in an LMDB
 * environment (a directory holding data.mdb and lock.mdb).  Readers are
 * lock-free and read memory-mapped pages; one writer at a time writes a
 * whole new *generation* (every user's blob) and switches to it in one
 * transaction, so a reader sees either the old generation or the complete
 * new one, never a mix.  The store records each generation's number, model
 * fingerprint, creation time, K, D and user count.
 *
 * Threads: a store handle may be shared by any number of threads for
 * reads (dv365_store_get, _info, _age, readers).  A generation handle and a
 * reader handle belong to one thread at a time.  Open a store at most once
 * per process (a second open of the same directory is DV365_E_STATE: share
 * the handle); other processes may open it at the same time.  Close a
 * store only after freeing its readers and generation. */
typedef struct dv365_store dv365_store;

/* dv365_store_open flags (bitwise or). */
#define DV365_STORE_READONLY 1u /**< read only; the store must exist */
#define DV365_STORE_NOSYNC 2u   /**< no fsync on commit: faster bulk loads, but a
                                   system crash may lose or damage recent
                                   generations (tests, scratch stores) */
/** The map size used when map_size is 0 on a new store: the most bytes the
 * store can hold (address space is reserved, disk is used as written).
 * 16 GiB holds about a million 58 x 256 users with room for a refresh. */
#define DV365_STORE_DEFAULT_MAP_SIZE ((size_t)16 << 30)

/** Open (and unless READONLY, create) the store in directory path.
 * map_size caps the store's bytes (0: the store's recorded size, or
 * DV365_STORE_DEFAULT_MAP_SIZE for a new store; at least 1 MiB); a refresh
 * needs room for two generations.  Errors: DV365_E_IO (no store at path for
 * READONLY, permissions), DV365_E_FORMAT (not a dv365 store),
 * DV365_E_VERSION, DV365_E_STATE (already open in this process). */
DV365_API dv365_status dv365_store_open(const char *path, unsigned flags, size_t map_size,
                                        dv365_store **out);
/** Close the store after freeing its readers and generation; NULL is a no-op. */
DV365_API void dv365_store_close(dv365_store *s);

/** The current (last committed) generation; any pointer may be NULL.  A
 * store without a committed generation reports generation 0 and zeros. */
DV365_API dv365_status dv365_store_info(dv365_store *s, uint64_t *generation,
                                        uint64_t *fingerprint, int64_t *created, size_t *count,
                                        size_t *k, size_t *dim);

/** Copy user_id's blob of the current generation into buf (cap bytes) and
 * set *size.  The blob is validated (dv365_blob_inspect) first.  Errors:
 * DV365_E_NOT_FOUND (no such user, or no generation yet),
 * DV365_E_BUFFER_TOO_SMALL (the message gives the size needed; see
 * dv365_blob_size with the k and dim of dv365_store_info),
 * DV365_E_FORMAT / DV365_E_CHECKSUM (a corrupt value, naming the user). */
DV365_API dv365_status dv365_store_get(dv365_store *s, uint64_t user_id, uint8_t *buf,
                                       size_t cap, size_t *size);

/** now - the creation time in user_id's blob (seconds; negative if the blob
 * is from the future).  Errors as dv365_store_get. */
DV365_API dv365_status dv365_store_age(dv365_store *s, uint64_t user_id, int64_t now,
                                       int64_t *age_seconds);

/** A reader: a read snapshot of one generation, for the request path.
 * _begin takes a snapshot of the current generation; _get returns a
 * pointer into the memory map (no copy), valid until _end; _end releases
 * the snapshot.  Keep snapshots short (per request): an open snapshot keeps
 * the pages of its generation from being reused. */
typedef struct dv365_store_reader dv365_store_reader;
/** A reader of store s, without a snapshot yet. */
DV365_API dv365_status dv365_store_reader_create(dv365_store *s, dv365_store_reader **out);
/** Free a reader (ending its snapshot); NULL is a no-op. */
DV365_API void dv365_store_reader_free(dv365_store_reader *r);
/** Take a snapshot of the current generation. */
DV365_API dv365_status dv365_store_reader_begin(dv365_store_reader *r);
/** Release the snapshot; blobs from dv365_store_reader_get become invalid. */
DV365_API void dv365_store_reader_end(dv365_store_reader *r);
/** The snapshot's generation, as dv365_store_info (DV365_E_STATE outside
 * _begin/_end). */
DV365_API dv365_status dv365_store_reader_info(const dv365_store_reader *r, uint64_t *generation,
                                               uint64_t *fingerprint, int64_t *created,
                                               size_t *count, size_t *k, size_t *dim);
/** Validated blob of user_id in the snapshot.  Errors as dv365_store_get. */
DV365_API dv365_status dv365_store_reader_get(dv365_store_reader *r, uint64_t user_id,
                                              const uint8_t **blob, size_t *size);

/** Writing a generation.  _begin starts generation current+1 (discarding an
 * uncommitted one left behind by an interrupted writer); fingerprint (0 =
 * do not check) and created describe it: every blob put must carry that
 * fingerprint, and all blobs must share one K and D (DV365_E_MISMATCH).
 * Puts are buffered and written in large transactions; a user put twice
 * keeps its last blob.  _commit writes what is buffered and makes the
 * generation current in one transaction, dropping the previous one.
 * _abort discards the generation.  Only one generation can be written at a
 * time (in any process): DV365_E_STATE otherwise.  A generation whose
 * write failed (e.g. a full map: DV365_E_NOMEM "map full") accepts only
 * _abort and _free; what was written before stays pending. */
typedef struct dv365_store_gen dv365_store_gen;
/** Start writing generation current+1 (see dv365_store_gen). */
DV365_API dv365_status dv365_store_begin_generation(dv365_store *s, uint64_t fingerprint,
                                                    int64_t created, dv365_store_gen **out);
/** Continue the uncommitted generation left by an interrupted writer, with
 * everything written up to its last checkpoint (or large transaction).
 * DV365_E_NOT_FOUND if there is none. */
DV365_API dv365_status dv365_store_resume_generation(dv365_store *s, dv365_store_gen **out);
/** Buffer user_id's blob for the generation; the last put of a user wins. */
DV365_API dv365_status dv365_store_put(dv365_store_gen *g, uint64_t user_id, const uint8_t *blob,
                                       size_t size);
/** Write the buffered puts and data (size <= 65536 bytes: the writer's
 * progress, such as which input users are done) in one transaction, so that a
 * resumed generation holds exactly the puts its checkpoint describes. */
DV365_API dv365_status dv365_store_checkpoint(dv365_store_gen *g, const void *data, size_t size);
/** The last checkpoint's data (DV365_E_NOT_FOUND if none was written). */
DV365_API dv365_status dv365_store_generation_checkpoint(dv365_store_gen *g, void *buf,
                                                         size_t cap, size_t *size);
/** The generation's number, fingerprint, creation time and the users
 * written to disk so far (buffered puts not counted). */
DV365_API dv365_status dv365_store_generation_info(const dv365_store_gen *g, uint64_t *generation,
                                                   uint64_t *fingerprint, int64_t *created,
                                                   size_t *stored);
/** Write what is buffered and make the generation current. */
DV365_API dv365_status dv365_store_commit_generation(dv365_store_gen *g);
/** Discard the generation. */
DV365_API dv365_status dv365_store_abort_generation(dv365_store_gen *g);
/** Release the handle.  Unless committed or aborted, the generation stays
 * pending with what was written (buffered puts are dropped): resume it. */
DV365_API void dv365_store_generation_free(dv365_store_gen *g);

/** Batch generation: embed every user of a timeline file (with the history
 * strictly before cutoff) and write their blobs into a new generation of
 * the store, committed at the end.  Options are a versioned struct: set
 * them up with dv365_generate_options_init, then change fields. */
typedef struct dv365_generate_options {
    size_t struct_size;     /**< sizeof(dv365_generate_options); set by _init */
    int nthreads;           /**< threads for dv365_model_embed (default 1) */
    size_t batch;           /**< users embedded per call and per checkpoint (default 64) */
    int resume;             /**< nonzero: continue the store's pending generation if it
                               was made from the same file, model and cutoff */
    dv365_q4_method method; /**< blob quantization (default DV365_Q4_MINMAX) */
    int64_t created;        /**< blob and generation time; 0 = the cutoff (default) */
    /** Called after each checkpoint with the users done and the total; a
     * nonzero return stops the run (DV365_E_STATE "stopped"), leaving the
     * generation pending for a resumed run.  May be NULL. */
    int (*progress)(void *ctx, size_t done, size_t total);
    void *progress_ctx; /**< passed to progress */
} dv365_generate_options;

/** Set struct_size and the defaults (1 thread, batch 64, minmax, created = cutoff). */
DV365_API void dv365_generate_options_init(dv365_generate_options *opt);

/** The output depends only on the model, the file, cutoff, created and
 * method (not on nthreads, batch or interruptions).  opt may be NULL for
 * the defaults.  Errors of the reader, the model and the store pass on;
 * a resumed run over another file, model or cutoff is DV365_E_MISMATCH. */
DV365_API dv365_status dv365_generate(const dv365_model *model, const char *timelines_path,
                                      int64_t cutoff, dv365_store *store,
                                      const dv365_generate_options *opt);


#ifdef __cplusplus
}
#endif

#endif /* DV365_H */
