/* backbone.h — the DLRM multi-task backbone that trains the encoder (internal).
 *
 * Per example b of a batch (D = cfg->dim, K user tokens, T tasks):
 *
 *   dense [n_dense] ─► bottom MLP ─► z0 [D]          Linear+ReLU for every layer,
 *                                                    the last one (→ D) included
 *   item ids (media, author, topic) ─► e_f [D]       row dv365_hash_row(id, rows) of
 *                                                    tables.item_<f>, for each field
 *                                                    that has an item table
 *   U [K, D] (the encoder's output)
 *
 *   Z = [z0 ; e_fields ; U]   (F = 1 + n_items + K rows of D)
 *   top input = interaction(Z) = [Z[0] ; strict lower triangle of Z Z^T]
 *   logits [T] = top MLP (Linear+ReLU per hidden width, then Linear → T)
 *   loss = Σ_t weight_t · mean_b loss_t   (lib/loss.h: BCE or MSE per task)
 *
 * Without dense features (n_dense = 0) there is no bottom MLP and no z0:
 * Z = [e_fields ; U] and the interaction's pass-through row is then Z[0],
 * the first item embedding (media before author before topic), or the first
 * user token when there are no item tables.  (DLRM always has dense
 * features; passing the candidate's embedding through keeps its identity
 * visible to the top MLP, as z0 would.)  The config's bottom widths are
 * then ignored.
 *
 * Parameters, llm.c style: every Linear layer lives in ONE contiguous float
 * block described by a table of named tensors (same struct as the encoder's,
 * PyTorch state_dict names, DESIGN.md §3):
 *   backbone.bottom.{i}.weight [out,in], backbone.bottom.{i}.bias [out]
 *   backbone.top.{i}.weight [out,in],    backbone.top.{i}.bias [out]
 * in that order; a gradient block of the same layout receives the dense
 * gradients, so optimizers and all-reduce see flat arrays.  The item tables
 * tables.item_<field> [rows, D] are separate allocations: their gradient is
 * sparse (distinct rows), in a dv365_pool_grad with one "table" per item
 * table, exactly the structure the pooling backward fills, so the trainer
 * applies row-wise Adagrad to both the same way.
 *
 * Initialization (dv_backbone_create(cfg, seed)), a pure function of
 * (seed, config):
 *   Linear weights  U(−1/√fan_in, +1/√fan_in) (PyTorch's default Linear weight
 *                   distribution), drawn as (2u − 1)/√fan_in with u from one
 *                   xoshiro256** stream seeded with seed ^ mix64(0xBB << 32),
 *                   tensor by tensor in table order, row-major;
 *   biases          0;
 *   tables.item_f   N(0, init_std²) by the pooling's generator (dv_fill_normal),
 *                   one stream per field f (0 media, 1 author, 2 topic) seeded
 *                   with seed ^ mix64((0xBB << 32) + 1 + f), so resizing one
 *                   table never changes the others (mix64 = the SplitMix64
 *                   finalizer; the tags stay clear of the pooling tables'
 *                   seed ^ mix64(t + 1)).
 *
 * Threads: the weights are read-only during forward/backward.  nthreads
 * goes to BLIS for the Linear layers; the interaction (one small GEMM per
 * example) splits the examples between nthreads threads instead, each GEMM
 * on one BLIS thread.  Every other loop runs in a fixed order, so results
 * are bitwise identical for any thread count. */
#ifndef DV365_BACKBONE_H
#define DV365_BACKBONE_H

#include "encoder.h"
#include "internal.h"
#include "loss.h"
#include "pool.h"
#include "safetensors.h"

/* The backbone handle.  Spelled struct dv365_backbone so that the trainer
 * can expose it as the opaque public dv365_backbone later. */
typedef struct dv365_backbone dv_backbone;

/* The tensor table uses the encoder's struct (name, offset, ndim, shape). */
typedef dv_enc_tensor dv_bb_tensor;

/* Build from cfg->backbone, cfg->dim and K = dv_config_num_tokens(cfg) +
 * cfg->backbone.extra_tokens (the encoder's tokens, then E from outside), and
 * initialize as documented above.  The backbone copies what it needs: cfg
 * may be freed afterwards.  DV365_E_CONFIG for an inconsistent section
 * (no task, bad task, dim 0, absurd sizes), DV365_E_NOMEM. */
dv365_status dv_backbone_create(const dv365_config *cfg, uint64_t seed, dv_backbone **out);
void dv_backbone_free(dv_backbone *bb);

/* Sizes. */
size_t dv_backbone_dim(const dv_backbone *bb);        /* D */
size_t dv_backbone_num_tokens(const dv_backbone *bb); /* K, user tokens per example */
size_t dv_backbone_num_dense(const dv_backbone *bb);  /* n_dense */
size_t dv_backbone_num_tasks(const dv_backbone *bb);  /* T, logits per example */
const dv_task *dv_backbone_tasks(const dv_backbone *bb); /* [T], config order */
size_t dv_backbone_num_features(const dv_backbone *bb);  /* F, rows of Z */

/* Dense parameters: the table (block order = file order = init order) and
 * the block of dv_backbone_num_params floats.  Writable for the optimizer;
 * nobody may run the backbone meanwhile. */
const dv_bb_tensor *dv_backbone_tensors(const dv_backbone *bb, size_t *count);
size_t dv_backbone_num_params(const dv_backbone *bb);
float *dv_backbone_params(dv_backbone *bb);
const float *dv_backbone_params_const(const dv_backbone *bb);

/* Item tables, i < dv_backbone_num_item_tables, in field order (media,
 * author, topic; fields without a table are skipped).  *name is
 * "tables.item_<field>"; any output pointer may be NULL.  data [rows, D] is
 * writable for the optimizer and for loading. */
size_t dv_backbone_num_item_tables(const dv_backbone *bb);
dv365_status dv_backbone_item_table(dv_backbone *bb, size_t i, float **data, size_t *rows,
                                    int *field, const char **name);

/* A sparse gradient for the item tables: a dv365_pool_grad with
 * n_tables = dv_backbone_num_item_tables (table i = item table i) and dim D.
 * Free it with dv365_pool_grad_free; read it with dv365_pool_grad_table. */
dv365_status dv_backbone_item_grad_create(const dv_backbone *bb, dv365_pool_grad **out);

/* Floats of activations a forward of B examples keeps (a block from the
 * caller, which the backward reads); SIZE_MAX if that overflows. */
size_t dv_backbone_acts_floats(const dv_backbone *bb, size_t B);
/* Workspace bytes dv_backbone_backward needs for B examples; SIZE_MAX on
 * overflow. */
size_t dv_backbone_backward_workspace_size(const dv_backbone *bb, size_t B);

/* Forward of B >= 1 examples:
 *   dense    [B, n_dense]  (may be NULL when n_dense = 0), finite
 *   item_ids [B, 3]        candidate ids media, author, topic (a field
 *                          without an item table is ignored)
 *   U        [B, K, D]     user tokens, finite
 *   logits   [B, T]        written
 *   acts     dv_backbone_acts_floats(bb, B) floats, kept for the backward.
 * n_dense and K are the caller's sizes, checked against the backbone
 * (DV365_E_MISMATCH).  A non-finite dense feature or user-token value is
 * DV365_E_NONFINITE naming the example, feature / token and column. */
dv365_status dv_backbone_forward(const dv_backbone *bb, size_t B, const float *dense,
                                 size_t n_dense, const uint64_t *item_ids, const float *U,
                                 size_t K, float *logits, float *acts, int nthreads);

/* Backward of the last forward with the same B, dense, item_ids and acts:
 * from dlogits [B, T],
 *   grads      [dv_backbone_num_params]  ACCUMULATES the dense gradients;
 *   item_grad  (dv_backbone_item_grad_create) REPLACED by the item-table
 *              gradient: per table, the distinct rows the batch used,
 *              ascending, each the sum over its examples in example order
 *              (as dv365_pool_backward replaces its gradient);
 *   dU         [B, K, D] ACCUMULATES dL/dU (may be NULL).
 * Bitwise identical for any nthreads.  The only allocation is the growth of
 * item_grad's row buffers up to B rows per table (then reused). */
dv365_status dv_backbone_backward(const dv_backbone *bb, dv365_workspace *ws, size_t B,
                                  const float *dense, const uint64_t *item_ids, const float *acts,
                                  const float *dlogits, float *grads, dv365_pool_grad *item_grad,
                                  float *dU, int nthreads);

/* The multi-task loss of logits against labels [B, T] (lib/loss.h): *loss
 * the weighted total, task_loss [T] (may be NULL) each task's batch mean,
 * and dlogits [B, T] (may be NULL) OVERWRITTEN with ∂loss/∂logits. */
dv365_status dv_backbone_loss(const dv_backbone *bb, size_t B, const float *logits,
                              const float *labels, double *loss, double *task_loss,
                              float *dlogits);

/* --- weights ---------------------------------------------------------------- */

/* Add backbone.* (table order) then tables.item_<field> to w, by pointer:
 * bb must stay alive and unchanged until the writer has written. */
dv365_status dv_backbone_add_tensors(const dv_backbone *bb, dv_st_writer *w);

/* Replace every backbone.* tensor and item table with the one in f.
 * All-or-nothing: everything is checked first (present: DV365_E_NOT_FOUND,
 * F32: DV365_E_FORMAT, shape: DV365_E_MISMATCH, finite: DV365_E_NONFINITE,
 * each naming the tensor), and bb is modified only when all are valid.
 * Other tensors in f are ignored. */
dv365_status dv_backbone_load_tensors(dv_backbone *bb, const dv_st_file *f);

#endif
