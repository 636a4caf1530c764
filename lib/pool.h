/* pool.h — shared embedding tables and multi-slice pooling (internal view).
 *
 * pool_forward:  X[s] = sum_i w_i T[row_i] / sum_i w_i over the events i of
 *                slice s (zero row when the slice is empty or its weights
 *                sum to 0).
 * pool_backward: dT[row_i] += (w_i / sum_s w) dX[s] for each (event, slice),
 *                collected as deduplicated sparse rows per table. */
#ifndef DV365_POOL_H
#define DV365_POOL_H

#include "slice.h"

struct dv365_pooler {
    const dv365_config *cfg;
    size_t dim, n_tables;
    float **tables; /* [n_tables] -> [rows x dim], one allocation each */
    void **blocks;  /* [n_tables] the allocations (tables may sit 2 MiB-aligned inside) */
    dv_slicer slicer;
};

/* Per-table sparse gradient: distinct rows in ascending order. */
typedef struct dv_grad_table {
    size_t n, cap; /* rows touched, capacity of rows/grads */
    size_t *rows;  /* [cap] */
    float *grads;  /* [cap x dim] */
} dv_grad_table;

struct dv365_pool_grad {
    size_t n_tables, dim;
    dv_grad_table *t;
};

/* Fill n floats with N(0, std^2) from r (ziggurat; docs/hash.md). */
void dv_fill_normal(dv_rng *r, float *x, size_t n, float std);

#endif
