/* fuzz_config.c — the YAML config parser (dv365_config_parse) on arbitrary
 * text.  A config that parses must be self-consistent: every name maps back
 * to its index, every vocabulary code to its name; small ones must also
 * build a timeline, a pooler and an encoder. */
#include "fuzz.h"

#include "config.h"

static void check_config(const dv365_config *cfg)
{
    size_t n = dv365_config_num_slices(cfg), d = dv365_config_dim(cfg);
    FUZZ_CHECK(n > 0 && d > 0);
    for (size_t i = 0; i < n; i++) {
        const char *name = dv365_config_slice_name(cfg, i);
        size_t idx = (size_t)-1;
        FUZZ_CHECK(name != NULL);
        FUZZ_CHECK(dv365_config_slice_index(cfg, name, &idx) == DV365_OK && idx == i);
    }
    FUZZ_CHECK(dv365_config_slice_name(cfg, n) == NULL);
    size_t cells = 0;
    for (size_t t = 0; t < dv365_config_num_tables(cfg); t++) {
        FUZZ_CHECK(dv365_config_table_name(cfg, t) != NULL);
        size_t rows = dv365_config_table_rows(cfg, t);
        FUZZ_CHECK(rows > 0);
        cells = rows > SIZE_MAX / 2 - cells ? SIZE_MAX / 2 : cells + rows;
    }
    for (int v = DV365_VOCAB_ACTION; v <= DV365_VOCAB_SURFACE; v++) {
        size_t size = dv365_config_vocab_size(cfg, (dv365_vocab)v);
        for (size_t c = 0; c < size; c++) {
            const char *name = dv365_config_code_name(cfg, (dv365_vocab)v, (int32_t)c);
            int32_t code = -1;
            FUZZ_CHECK(name != NULL);
            FUZZ_CHECK(dv365_config_code(cfg, (dv365_vocab)v, name, &code) == DV365_OK &&
                       code == (int32_t)c);
        }
        FUZZ_CHECK(dv365_config_code_name(cfg, (dv365_vocab)v, (int32_t)size) == NULL);
        FUZZ_CHECK(dv365_config_code_name(cfg, (dv365_vocab)v, -1) == NULL);
    }
    for (size_t t = 0; t < dv365_config_num_tasks(cfg); t++) {
        FUZZ_CHECK(dv365_config_task_name(cfg, t) != NULL);
        FUZZ_CHECK(dv365_config_task_is_binary(cfg, t) >= 0);
    }
    FUZZ_CHECK(dv_config_num_tokens(cfg) > 0);

    dv365_timeline *tl = NULL;
    FUZZ_CHECK(dv365_timeline_create(cfg, &tl) == DV365_OK);
    dv365_timeline_free(tl);

    /* Build the pooler and the encoder only when they are small (the
     * fuzzer must not be stopped by a legitimately huge config). */
    size_t cells_d;
    if (dv_mul_size(cells, d, &cells_d) && cells_d <= ((size_t)1 << 20)) {
        dv365_pooler *pooler = NULL;
        dv365_status st = dv365_pooler_create(cfg, 1, &pooler);
        fuzz_check_status(st);
        FUZZ_CHECK(st == DV365_OK);
        dv365_pooler_free(pooler);
    }
    const dv_encoder_cfg *e = &cfg->encoder;
    size_t layers = e->blocks * e->layers_per_block;
    if (d <= 64 && n <= 256 && e->ffn <= 256 && layers <= 8 && e->k_lce <= 64) {
        dv365_encoder *enc = NULL;
        dv365_status st = dv365_encoder_create(cfg, 1, &enc);
        fuzz_check_status(st);
        FUZZ_CHECK(st == DV365_OK);
        FUZZ_CHECK(dv365_encoder_num_tokens(enc) == dv_config_num_tokens(cfg));
        dv365_encoder_free(enc);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dv365_config *cfg = NULL;
    dv365_status st = dv365_config_parse((const char *)data, size, &cfg);
    fuzz_check_status(st);
    if (st == DV365_OK) {
        FUZZ_CHECK(cfg != NULL);
        check_config(cfg);
        dv365_config_free(cfg);
    } else {
        FUZZ_CHECK(cfg == NULL);
    }
    return 0;
}
