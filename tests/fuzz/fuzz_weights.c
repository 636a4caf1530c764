/* fuzz_weights.c — the weight loaders on an arbitrary safetensors file:
 * flag byte % 3 selects dv365_encoder_load (tiny config), dv365_adapter_load
 * (adapter "a") or dv365_model_load (a model directory with the tiny
 * config, so the tables, encoder and backbone tensors are all looked up).
 * A loaded encoder / adapter / model must then run. */
#include "fuzz.h"

#include "config.h"
#include "tiny_config.h"

static dv365_config *g_cfg;
static dv365_workspace *g_ws;

static void run_encoder(const dv365_encoder *enc, size_t n, size_t d)
{
    size_t k = dv365_encoder_num_tokens(enc);
    float *X = calloc(n * d, sizeof(float)), *U = malloc(k * d * sizeof(float));
    FUZZ_CHECK(X && U);
    for (size_t i = 0; i < n * d; i++)
        X[i] = (float)(i % 7) - 3.0f;
    fuzz_check_status(dv365_encode(enc, g_ws, 1, X, U, 1));
    free(X);
    free(U);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (g_cfg == NULL) {
        FUZZ_CHECK(dv365_config_parse(tiny_config_yaml, sizeof tiny_config_yaml - 1, &g_cfg) ==
                   DV365_OK);
        FUZZ_CHECK(dv365_workspace_create(&g_ws) == DV365_OK);
        fuzz_write_file("config.yaml", tiny_config_yaml, sizeof tiny_config_yaml - 1);
    }
    if (size < 1)
        return 0;
    const char *path = fuzz_write_file("weights.safetensors", data + 1, size - 1);
    size_t n = dv365_config_num_slices(g_cfg), d = dv365_config_dim(g_cfg);
    dv365_status st;
    switch (data[0] % 3) {
    case 0: {
        dv365_encoder *enc = NULL;
        st = dv365_encoder_load(g_cfg, path, &enc);
        fuzz_check_status(st);
        FUZZ_CHECK((st == DV365_OK) == (enc != NULL));
        if (enc != NULL) {
            FUZZ_CHECK(dv365_encoder_num_tokens(enc) == dv_config_num_tokens(g_cfg));
            run_encoder(enc, n, d);
            dv365_encoder_free(enc);
        }
        break;
    }
    case 1: {
        dv365_adapter *a = NULL;
        st = dv365_adapter_load(path, "a", &a);
        fuzz_check_status(st);
        FUZZ_CHECK((st == DV365_OK) == (a != NULL));
        if (a != NULL) {
            size_t k, dim, out_dim;
            dv365_adapter_kind kind;
            FUZZ_CHECK(dv365_adapter_info(a, &kind, &k, &dim, &out_dim) == DV365_OK);
            size_t in_n = k * dim, out_n = dv365_adapter_output_size(a);
            if (in_n <= 4096 && out_n <= 4096) { /* the file may describe a huge adapter */
                float *U = calloc(in_n, sizeof(float)), *out = malloc(out_n * sizeof(float));
                FUZZ_CHECK(U && out);
                fuzz_check_status(dv365_adapter_forward(a, g_ws, 1, U, out, 1));
                free(U);
                free(out);
            }
            dv365_adapter_free(a);
        }
        break;
    }
    default: {
        dv365_model *m = NULL;
        st = dv365_model_load(fuzz_tmpdir(), &m);
        fuzz_check_status(st);
        FUZZ_CHECK((st == DV365_OK) == (m != NULL));
        if (m != NULL) {
            run_encoder(dv365_model_encoder(m), n, d);
            dv365_model_free(m);
        }
        break;
    }
    }
    return 0;
}
