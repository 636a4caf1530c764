/* encoder.h — the user encoder, Funnel Transformer ‖ LCE (internal side).
 *
 *   X [N,D] ─┬─ + pos ─► block 0 ─► pool ─► block 1 ─► … ─► ln_f ─► [compress] ─► U[0 .. K_f)
 *            └─ LCE (token axis N → k_lce) ──────────────────────────────────────► U[K_f .. K)
 *
 * A block is layers_per_block pre-LN Transformer layers
 *   x += attn(LN1(x));  x += fc2(GELU(fc1(LN2(x))))
 * and "pool" is the stride-s mean over tokens (lib/nn.h).  With blocks = 0
 * only the LCE runs (no pos, no ln_f tensors); with k_lce = 0 only the funnel.
 * The optional compress (config encoder.compress = C > 0) is the LCE op on
 * the ln_f output, along the token axis T_last → C, so that K_f = C (e.g. a
 * vanilla Transformer, stride 1, with the K of a funnel); otherwise
 * K_f = T_last.
 *
 * All parameters live in ONE contiguous float block, described by a table
 * of named tensors in PyTorch state_dict style (DESIGN.md §3); a gradient
 * block has the same layout, so optimizers and all-reduce treat both as flat
 * arrays.  The public API (dv365.h) encodes; the functions below add what
 * training needs: a forward that keeps activations and its backward. */
#ifndef DV365_ENCODER_H
#define DV365_ENCODER_H

#include "internal.h"

/* One named tensor of the parameter block. */
typedef struct dv_enc_tensor {
    char name[96];   /* e.g. "encoder.blocks.0.layers.0.attn.in_proj_weight" */
    size_t offset;   /* in floats from the start of the block */
    size_t ndim;     /* 1 or 2 */
    size_t shape[2];
    size_t numel;
} dv_enc_tensor;

/* The parameter table, in block order (also the file order and init order). */
const dv_enc_tensor *dv_encoder_tensors(const dv365_encoder *enc, size_t *count);
/* The parameter block (dv365_encoder_num_params floats).  Writable for the
 * trainer's optimizer step; nobody may encode with enc meanwhile. */
float *dv_encoder_params(dv365_encoder *enc);
const float *dv_encoder_params_const(const dv365_encoder *enc);

/* Rows of U from the funnel part, K_f: compress if set, else the tokens
 * after the last block (0 if blocks = 0). */
size_t dv_encoder_funnel_tokens(const dv365_encoder *enc);

/* Floats of activations dv_encoder_forward_train keeps for batch users;
 * SIZE_MAX if that overflows. */
size_t dv_encoder_acts_floats(const dv365_encoder *enc, size_t batch);

/* Training forward: X [batch,N,D] -> U [batch,K,D], keeping in acts (at
 * least dv_encoder_acts_floats floats, 64-byte aligned) everything the
 * backward needs.  X must stay unchanged until the backward.  Same numbers
 * as dv365_encode, but no input validation beyond sizes (the trainer feeds
 * pooled values it produced itself). */
dv365_status dv_encoder_forward_train(const dv365_encoder *enc, size_t batch, const float *X,
                                      float *U, float *acts, int nthreads);

/* For tests and debugging: inside the activations of a training forward,
 * the input and output [batch, T, D] of layer l of block b (T = tokens of
 * block b, returned in *tokens).  The input of a block's first layer is the
 * pooled output of the previous block (X + pos for block 0). */
void dv_encoder_layer_io(const dv365_encoder *enc, size_t batch, const float *acts, size_t b,
                         size_t l, const float **in, const float **out, size_t *tokens);

/* Workspace bytes dv_encoder_backward needs; SIZE_MAX on overflow. */
size_t dv_encoder_backward_workspace_size(const dv365_encoder *enc, size_t batch);

/* Backward of the last dv_encoder_forward_train(X, acts): from dU
 * [batch,K,D], ACCUMULATE the parameter gradients into grads (same layout
 * as the parameter block, dv365_encoder_num_params floats) and dL/dX into
 * dX [batch,N,D] (may be NULL when X needs no gradient).  The sums over
 * users run in a fixed order: bitwise identical for any nthreads. */
dv365_status dv_encoder_backward(const dv365_encoder *enc, dv365_workspace *ws, size_t batch,
                                 const float *X, const float *acts, const float *dU,
                                 float *grads, float *dX, int nthreads);

#endif
