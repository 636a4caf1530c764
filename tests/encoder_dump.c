/* encoder_dump.c — runs the encoder on random inputs and dumps everything a
 * PyTorch reference needs to check it (tests/reference/encoder_ref.py):
 *   DIR/weights.safetensors  the encoder.* tensors (dv365_encoder_save)
 *   DIR/io.safetensors       x, du, u (training forward), u_infer
 *                            (dv365_encode), dx, grad.<tensor name>, and
 *                            act.<b>.<l>.in / .out for every layer.
 * The loss is sum(du * u).  Weights are the seeded init plus N(0, 0.05^2)
 * noise on every parameter, so that biases and layer norms are not trivial.
 *
 * usage: encoder_dump DIR N D blocks layers heads ffn stride k_lce compress batch nthreads seed
 * (compress: tokens of the token-wise compression of the funnel output, 0 = off) */
#include "config.h"
#include "encoder.h"
#include "internal.h"
#include "safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(call)                                                                   \
    do {                                                                              \
        dv365_status st_ = (call);                                                    \
        if (st_ != DV365_OK) {                                                        \
            fprintf(stderr, "%s failed: %s\n", #call, dv365_last_error());            \
            return 1;                                                                 \
        }                                                                             \
    } while (0)

int main(int argc, char **argv)
{
    if (argc != 14) {
        fprintf(stderr, "usage: %s DIR N D blocks layers heads ffn stride k_lce compress "
                        "batch nthreads seed\n", argv[0]);
        return 2;
    }
    size_t v[12];
    for (int i = 0; i < 12; i++)
        v[i] = strtoull(argv[i + 2], NULL, 10);
    struct dv365_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.n_slices = v[0];
    cfg.dim = v[1];
    cfg.encoder = (dv_encoder_cfg){v[2], v[3], v[4], v[5], v[6], v[7], 0.2f, v[8]};
    size_t B = v[9];
    int nt = (int)v[10];
    uint64_t seed = v[11];

    dv365_encoder *e;
    dv365_workspace *ws;
    CHECK(dv365_encoder_create(&cfg, seed, &e));
    CHECK(dv365_workspace_create(&ws));
    dv_rng rng;
    dv_rng_seed(&rng, seed + 1);
    float *P = dv_encoder_params(e);
    size_t np = dv365_encoder_num_params(e), N = cfg.n_slices, D = cfg.dim;
    size_t K = dv365_encoder_num_tokens(e);
    for (size_t i = 0; i < np; i++)
        P[i] += (float)(0.05 * dv_rng_normal(&rng));

    size_t nx = B * N * D, nu = B * K * D, na = dv_encoder_acts_floats(e, B);
    float *X = malloc(nx * 4), *dU = malloc(nu * 4), *U = malloc(nu * 4), *Ui = malloc(nu * 4);
    float *acts = malloc((na ? na : 1) * 4), *G = calloc(np, 4), *dX = calloc(nx, 4);
    if (!X || !dU || !U || !Ui || !acts || !G || !dX)
        return 1;
    for (size_t i = 0; i < nx; i++)
        X[i] = (float)dv_rng_normal(&rng);
    for (size_t i = 0; i < nu; i++)
        dU[i] = (float)dv_rng_normal(&rng);
    CHECK(dv_encoder_forward_train(e, B, X, U, acts, nt));
    CHECK(dv_encoder_backward(e, ws, B, X, acts, dU, G, dX, nt));
    CHECK(dv365_encode(e, ws, B, X, Ui, nt));

    char path[4096];
    snprintf(path, sizeof path, "%s/weights.safetensors", argv[1]);
    CHECK(dv365_encoder_save(e, path));

    dv_st_writer *w;
    CHECK(dv_st_writer_create(&w));
    size_t sx[3] = {B, N, D}, su[3] = {B, K, D};
    CHECK(dv_st_writer_add(w, "x", DV_DTYPE_F32, 3, sx, X));
    CHECK(dv_st_writer_add(w, "du", DV_DTYPE_F32, 3, su, dU));
    CHECK(dv_st_writer_add(w, "u", DV_DTYPE_F32, 3, su, U));
    CHECK(dv_st_writer_add(w, "u_infer", DV_DTYPE_F32, 3, su, Ui));
    CHECK(dv_st_writer_add(w, "dx", DV_DTYPE_F32, 3, sx, dX));
    size_t n;
    const dv_enc_tensor *t = dv_encoder_tensors(e, &n);
    char name[160];
    for (size_t i = 0; i < n; i++) {
        snprintf(name, sizeof name, "grad.%s", t[i].name);
        CHECK(dv_st_writer_add(w, name, DV_DTYPE_F32, t[i].ndim, t[i].shape, G + t[i].offset));
    }
    for (size_t b = 0; b < cfg.encoder.blocks; b++)
        for (size_t l = 0; l < cfg.encoder.layers_per_block; l++) {
            const float *in, *out;
            size_t T;
            dv_encoder_layer_io(e, B, acts, b, l, &in, &out, &T);
            size_t sa[3] = {B, T, D};
            snprintf(name, sizeof name, "act.%zu.%zu.in", b, l);
            CHECK(dv_st_writer_add(w, name, DV_DTYPE_F32, 3, sa, in));
            snprintf(name, sizeof name, "act.%zu.%zu.out", b, l);
            CHECK(dv_st_writer_add(w, name, DV_DTYPE_F32, 3, sa, out));
        }
    snprintf(path, sizeof path, "%s/io.safetensors", argv[1]);
    CHECK(dv_st_writer_write(w, path));
    dv_st_writer_free(w);
    dv365_encoder_free(e);
    dv365_workspace_free(ws);
    free(X), free(dU), free(U), free(Ui), free(acts), free(G), free(dX);
    return 0;
}
