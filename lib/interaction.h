/* interaction.h — DLRM dot interaction, forward and backward (internal).
 *
 * Per example the F feature vectors of D floats are stacked as Z [F x D]:
 * row 0 is the bottom-MLP output, then the item embeddings, then the K user
 * tokens.  The output row is
 *   [ Z[0] (D floats) ; (Z Z^T)[i][j] for i = 1..F−1, j = 0..i−1 ]
 * of D + F(F−1)/2 floats: the strict lower triangle of the Gram matrix in
 * row-major order, exactly facebookresearch/dlrm's interact_features with
 * arch_interaction_op="dot", arch_interaction_itself=False
 * (li/lj = [(i, j) for i in range(F) for j in range(i)]).
 *
 * A batch is Z [B x F x D] and out [B x (D + F(F−1)/2)], contiguous.
 * The Gram products run through BLIS (gemm.h): with K = 58 tokens F ≈ 62, so
 * each example is a 62 x 62 x D product.  scratch holds F·F floats. */
#ifndef DV365_INTERACTION_H
#define DV365_INTERACTION_H

#include "internal.h"

/* Output width D + F(F−1)/2; 0 if it overflows size_t. */
size_t dv_interaction_out_dim(size_t F, size_t D);

/* Floats of scratch forward and backward need: F·F (0 on overflow). */
size_t dv_interaction_scratch(size_t F);

/* out = interaction(Z).  DV365_E_INVALID unless F >= 1 and D >= 1. */
dv365_status dv_interaction_forward(float *out, float *scratch, const float *Z, size_t B,
                                    size_t F, size_t D, int nthreads);

/* dZ += ∂out/∂Z · dout: for each pair (i > j) with upstream gradient g,
 * dz_i += g·z_j and dz_j += g·z_i (one GEMM with the symmetric matrix of
 * the g's), and dz_0 += dout[0..D) for the pass-through bottom output. */
dv365_status dv_interaction_backward(float *dZ, float *scratch, const float *dout, const float *Z,
                                     size_t B, size_t F, size_t D, int nthreads);

#endif
