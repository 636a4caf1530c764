/*
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
/* MAJOR*10000 + MINOR*100 + PATCH, comparable with dv365_version_number(). */
#define DV365_VERSION_NUMBER \
    (DV365_VERSION_MAJOR * 10000 + DV365_VERSION_MINOR * 100 + DV365_VERSION_PATCH)

/* The version of the library actually loaded (may differ from the header). */
DV365_API unsigned dv365_version_number(void);
DV365_API const char *dv365_version_string(void);

/* ------------------------------------------------------------------------ */
/* Status codes and errors                                                   */
/* ------------------------------------------------------------------------ */

/* Pinned values: never renumbered, never reused. */
typedef enum dv365_status {
    DV365_OK = 0,
    DV365_E_NULL = -1,             /* a required pointer argument is NULL */
    DV365_E_INVALID = -2,          /* an argument is out of range or inconsistent */
    DV365_E_NONFINITE = -3,        /* a NaN or infinity where finite values are required */
    DV365_E_NOMEM = -4,            /* allocation failed or a size overflows */
    DV365_E_IO = -5,               /* a file could not be opened, read or written */
    DV365_E_PARSE = -6,            /* malformed YAML (message names line and column) */
    DV365_E_CONFIG = -7,           /* well-formed YAML that is not a valid config */
    DV365_E_NOT_FOUND = -8,        /* an unknown name (slice, table, code, tensor, key) */
    DV365_E_FORMAT = -9,           /* a malformed file or buffer (weights, blob, data) */
    DV365_E_CHECKSUM = -10,        /* a checksum does not match */
    DV365_E_VERSION = -11,         /* an unsupported format version */
    DV365_E_MISMATCH = -12,        /* shapes, sizes or fingerprints disagree */
    DV365_E_TIMESTAMP = -13,       /* a time before 1970 or after 2100 */
    DV365_E_BUFFER_TOO_SMALL = -14, /* the caller's buffer is too small */
    DV365_E_THREAD = -15,          /* a thread could not be started */
    DV365_E_STATE = -16,           /* the call does not fit the handle's state */
    DV365_E_INTERNAL = -99         /* a bug in libdv365: please report it */
} dv365_status;

/* A short, static description of a status ("invalid argument", ...). */
DV365_API const char *dv365_status_string(dv365_status status);

/* The message of the last failed call made by this thread; "" if none.
 * Valid until this thread's next call into the library. */
DV365_API const char *dv365_last_error(void);

/* ------------------------------------------------------------------------ */
/* Memory                                                                    */
/* ------------------------------------------------------------------------ */

/* Redirect every allocation of the library.  alloc_fn returns NULL on
 * failure; free_fn is called only with pointers alloc_fn returned.  Each
 * block remembers the allocator that made it, so changing the allocator while
 * handles are alive is safe.  Passing NULL for both restores malloc/free.
 * Not thread-safe: call it before starting threads that use the library. */
typedef void *(*dv365_alloc_fn)(void *opaque, size_t size);
typedef void (*dv365_free_fn)(void *opaque, void *ptr);
DV365_API dv365_status dv365_set_allocator(dv365_alloc_fn alloc_fn, dv365_free_fn free_fn,
                                           void *opaque);

/* ------------------------------------------------------------------------ */
/* Configuration (YAML; format in docs/config.md)                            */
/* ------------------------------------------------------------------------ */

/* Read-only after creation; shareable between threads. */
typedef struct dv365_config dv365_config;

/* The three categorical vocabularies of a timeline event. */
typedef enum dv365_vocab {
    DV365_VOCAB_ACTION = 0,
    DV365_VOCAB_MEDIA_TYPE = 1,
    DV365_VOCAB_SURFACE = 2
} dv365_vocab;

DV365_API dv365_status dv365_config_load(const char *path, dv365_config **out);
DV365_API dv365_status dv365_config_parse(const char *yaml, size_t len, dv365_config **out);
DV365_API void dv365_config_free(dv365_config *cfg);

/* Embedding dimension D. */
DV365_API size_t dv365_config_dim(const dv365_config *cfg);
/* Number of slices N after expansion over id fields and windows. */
DV365_API size_t dv365_config_num_slices(const dv365_config *cfg);
/* Expanded slice name, e.g. "like.media.7d"; NULL when i is out of range. */
DV365_API const char *dv365_config_slice_name(const dv365_config *cfg, size_t i);
DV365_API dv365_status dv365_config_slice_index(const dv365_config *cfg, const char *name,
                                                size_t *index);
DV365_API size_t dv365_config_num_tables(const dv365_config *cfg);
DV365_API const char *dv365_config_table_name(const dv365_config *cfg, size_t i);
DV365_API size_t dv365_config_table_rows(const dv365_config *cfg, size_t i);
/* Number of codes in a vocabulary; codes are 0 .. size-1. */
DV365_API size_t dv365_config_vocab_size(const dv365_config *cfg, dv365_vocab vocab);
DV365_API dv365_status dv365_config_code(const dv365_config *cfg, dv365_vocab vocab,
                                         const char *name, int32_t *code);
DV365_API const char *dv365_config_code_name(const dv365_config *cfg, dv365_vocab vocab,
                                             int32_t code);

/* ------------------------------------------------------------------------ */
/* Timeline: one user's events (docs/timeline.md)                            */
/* ------------------------------------------------------------------------ */

typedef struct dv365_timeline dv365_timeline;

/* Times are unix seconds in [0, DV365_TIME_MAX]. */
#define DV365_TIME_MAX INT64_C(4102444800) /* 2100-01-01T00:00:00Z */

/* An empty timeline validated against cfg's vocabularies.  The config must
 * outlive the timeline. */
DV365_API dv365_status dv365_timeline_create(const dv365_config *cfg, dv365_timeline **out);
DV365_API void dv365_timeline_free(dv365_timeline *tl);
/* Forget all events, keeping the memory (no allocation on reuse). */
DV365_API void dv365_timeline_clear(dv365_timeline *tl);
/* Append n events given as columns.  All n are validated first; on any error
 * nothing is appended and the message names the event index and the field.
 * Events need not be in time order: the timeline keeps itself stably sorted
 * by time. */
DV365_API dv365_status dv365_timeline_append(dv365_timeline *tl, size_t n, const int64_t *time,
                                             const uint64_t *media_id, const uint64_t *author_id,
                                             const uint64_t *topic_id, const int32_t *action,
                                             const int32_t *media_type, const int32_t *surface,
                                             const float *duration_ms, const float *dwell_ms);
DV365_API size_t dv365_timeline_size(const dv365_timeline *tl);

/* ------------------------------------------------------------------------ */
/* Workspace: per-thread scratch memory                                      */
/* ------------------------------------------------------------------------ */

/* Scratch memory for one thread.  It grows on first use to what a call needs
 * and is then reused, so steady-state calls do not allocate. */
typedef struct dv365_workspace dv365_workspace;
DV365_API dv365_status dv365_workspace_create(dv365_workspace **out);
DV365_API void dv365_workspace_free(dv365_workspace *ws);
/* Grow the workspace to at least bytes now (see the *_workspace_size calls). */
DV365_API dv365_status dv365_workspace_reserve(dv365_workspace *ws, size_t bytes);
DV365_API size_t dv365_workspace_capacity(const dv365_workspace *ws);

/* ------------------------------------------------------------------------ */
/* Pooler: shared embedding tables + multi-slice mean / weighted pooling     */
/* ------------------------------------------------------------------------ */

/* Holds the config's embedding tables.  Read-only while pooling: any number
 * of threads may pool through one pooler, each with its own workspace. */
typedef struct dv365_pooler dv365_pooler;

/* Tables initialized from N(0, init_std^2) with a seeded generator (the
 * config's pooling.init_std).  cfg must outlive the pooler. */
DV365_API dv365_status dv365_pooler_create(const dv365_config *cfg, uint64_t seed,
                                           dv365_pooler **out);
DV365_API void dv365_pooler_free(dv365_pooler *pooler);
/* Direct access to table i ([rows x D], row-major) for loading, saving and
 * optimizer updates.  Do not write while other threads pool. */
DV365_API dv365_status dv365_pooler_table(dv365_pooler *pooler, size_t i, float **data,
                                          size_t *rows);
/* Row of table i that an id hashes to (docs/hash.md). */
DV365_API size_t dv365_hash_row(uint64_t id, size_t rows);

/* Workspace bytes pool forward/backward need for a timeline of n events. */
DV365_API size_t dv365_pool_workspace_size(const dv365_pooler *pooler, size_t n_events);

/* Pool the events strictly before cutoff (unix seconds) into
 * X [N x D]; counts [N] (events per slice) and weight_sums [N] may be NULL.
 * An empty slice gives a zero row. */
DV365_API dv365_status dv365_pool_forward(const dv365_pooler *pooler, dv365_workspace *ws,
                                          const dv365_timeline *tl, int64_t cutoff, float *X,
                                          uint32_t *counts, float *weight_sums);

/* Sparse gradient of the tables: per table, the distinct rows touched and
 * one gradient row [D] each.  Owned by the caller; reused across calls. */
typedef struct dv365_pool_grad dv365_pool_grad;
DV365_API dv365_status dv365_pool_grad_create(const dv365_pooler *pooler, dv365_pool_grad **out);
DV365_API void dv365_pool_grad_free(dv365_pool_grad *grad);
/* Rows of table t touched by the last backward, in first-touch order; the
 * pointers stay valid until the next backward into grad. */
DV365_API dv365_status dv365_pool_grad_table(const dv365_pool_grad *grad, size_t t,
                                             size_t *n_rows, const size_t **rows,
                                             const float **grad_rows);

/* Backward of dv365_pool_forward for the same timeline and cutoff:
 * from dX [N x D], write the deduplicated table-row gradients into grad
 * (its previous contents are replaced). */
DV365_API dv365_status dv365_pool_backward(const dv365_pooler *pooler, dv365_workspace *ws,
                                           const dv365_timeline *tl, int64_t cutoff,
                                           const float *dX, dv365_pool_grad *grad);

/* @@ encoder API (issue 3) goes here @@ */

/* @@ 4-bit quantization and blob API (issue 5) go here @@ */

#ifdef __cplusplus
}
#endif

#endif /* DV365_H */
