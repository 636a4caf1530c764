/* model.h — the model bundle (internal view; public API in dv365.h). */
#ifndef DV365_MODEL_H
#define DV365_MODEL_H

#include "backbone.h"
#include "config.h"

struct dv365_model {
    dv365_config *cfg; /* owned */
    dv365_pooler *pooler;
    dv365_encoder *enc;
    dv_backbone *bb;      /* the training backbone: saved with the weights, unused when serving */
    uint64_t fingerprint;   /* see dv_model_update_fingerprint */
    bool fingerprint_stale; /* weights changed by training since it was computed */
};

/* The file of a checkpoint directory that names its newest step directory. */
#define DV_LATEST_FILE "LATEST"

/* dir itself, or the directory its LATEST file names when dir holds no
 * config.yaml (a checkpoint directory). */
dv365_status dv_model_resolve_dir(const char *dir, char *out, size_t cap);

/* Recompute the fingerprint from the config and every weight (after the
 * weights changed, e.g. by training). */
void dv_model_update_fingerprint(dv365_model *m);

/* Pool users [0, n) into X [n, N, D] on nthreads threads, each with a slot
 * of slot_bytes (>= dv365_pool_workspace_size for the longest timeline) in
 * slots [nthreads * slot_bytes].  Per-user results do not depend on the
 * thread count.  Errors name the user. */
dv365_status dv_model_pool_users(const dv365_model *m, size_t n, const dv365_timeline *const *tls,
                                 const int64_t *cutoffs, float *X, unsigned char *slots,
                                 size_t slot_bytes, int nthreads);



#endif
