/* model.h — the model bundle (internal view; public API in dv365.h). */
#ifndef DV365_MODEL_H
#define DV365_MODEL_H

#include "config.h"

struct dv365_model {
    dv365_config *cfg; /* owned */
    dv365_pooler *pooler;
    dv365_encoder *enc;
    uint64_t fingerprint; /* see dv_model_update_fingerprint */
};

/* Recompute the fingerprint from the config and every weight (after the
 * weights changed, e.g. by training). */
void dv_model_update_fingerprint(dv365_model *m);

#endif
