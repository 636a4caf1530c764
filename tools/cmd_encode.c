/* cmd_encode.c — `dv365 encode`: pooled inputs from a safetensors file
 * through a model's encoder into another safetensors file.  A debugging aid
 * and an interoperability check: any framework that writes `x` can compare
 * its own encoder's `u` with ours. */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "safetensors.h"

int cmd_encode(int argc, char **argv);

static const char *encode_help =
    "usage: dv365 encode --model DIR --in X.safetensors --out U.safetensors [--threads T]\n"
    "Read tensor x [B, N, D] (float32) from X.safetensors, encode it with the\n"
    "model's encoder and write tensor u [B, K, D] (float32) to U.safetensors.\n";

int cmd_encode(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        fputs(encode_help, stdout);
        return 0;
    }
    opt o[] = {{"model", NULL}, {"in", NULL}, {"out", NULL}, {"threads", "1"}};
    const char *pos[1];
    size_t n_pos;
    uint64_t threads;
    if (parse_opts(argc, argv, o, 4, pos, 0, &n_pos) || !o[0].value || !o[1].value ||
        !o[2].value || opt_u64(&o[3], &threads) || threads < 1 || threads > 256) {
        fputs(encode_help, stderr);
        return EXIT_USAGE;
    }
    int rc = 0;
    dv365_model *model = NULL;
    dv_st_file *in = NULL;
    dv_st_writer *w = NULL;
    dv365_workspace *ws = NULL;
    float *X = NULL, *U = NULL;
    TRY("load model", dv365_model_load(o[0].value, &model));
    TRY("read input", dv_st_read_file(o[1].value, &in));
    const dv_tensor_view *x = dv_st_find(in, "x");
    size_t N = dv365_model_num_slices(model), D = dv365_model_dim(model),
           K = dv365_model_num_tokens(model);
    if (!x || x->ndim != 3 || x->shape[1] != N || x->shape[2] != D || x->shape[0] == 0) {
        fprintf(stderr, "dv365: %s needs a tensor x of shape [B, %zu, %zu] (B >= 1)\n",
                o[1].value, N, D);
        rc = 1;
        goto done;
    }
    size_t B = x->shape[0];
    X = malloc(B * N * D * sizeof *X);
    U = malloc(B * K * D * sizeof *U);
    if (!X || !U) {
        fprintf(stderr, "dv365: out of memory\n");
        rc = 1;
        goto done;
    }
    size_t xshape[3] = {B, N, D}, ushape[3] = {B, K, D};
    TRY("read x", dv_st_copy_f32(in, "x", 3, xshape, X));
    TRY("workspace", dv365_workspace_create(&ws));
    double t0 = now_s();
    TRY("encode", dv365_encode(dv365_model_encoder(model), ws, B, X, U, (int)threads));
    double t = now_s() - t0;
    TRY("write", dv_st_writer_create(&w));
    TRY("write", dv_st_writer_add(w, "u", DV_DTYPE_F32, 3, ushape, U));
    TRY("write", dv_st_writer_write(w, o[2].value));
    printf("encoded %zu users [%zu x %zu] -> [%zu x %zu] in %.2f ms; wrote %s\n", B, N, D, K, D,
           1e3 * t, o[2].value);
done:
    dv_st_writer_free(w);
    dv_st_free(in);
    dv365_workspace_free(ws);
    free(X);
    free(U);
    dv365_model_free(model);
    return rc;
}
