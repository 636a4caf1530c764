/* fuzz_safetensors.c — the safetensors reader (dv_st_read_buffer) on
 * arbitrary bytes.  A file that opens must be fully valid: every tensor's
 * bytes lie in the buffer (read all of them), names are unique and found
 * by dv_st_find, sizes agree with dtype and shape, and F32 tensors copy. */
#include "fuzz.h"

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dv_st_file *f = NULL;
    dv365_status st = dv_st_read_buffer(data, size, &f);
    fuzz_check_status(st);
    if (st != DV365_OK) {
        FUZZ_CHECK(f == NULL);
        return 0;
    }
    size_t n = dv_st_count(f);
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < n; i++) {
        const dv_tensor_view *v = dv_st_at(f, i);
        FUZZ_CHECK(v != NULL && v->name != NULL);
        FUZZ_CHECK(dv_st_find(f, v->name) == v);
        FUZZ_CHECK(v->ndim <= DV_ST_MAX_DIMS);
        size_t numel = 1;
        for (size_t k = 0; k < v->ndim; k++)
            FUZZ_CHECK(dv_mul_size(numel, v->shape[k], &numel));
        size_t bytes;
        FUZZ_CHECK(dv_mul_size(numel, dv_dtype_size(v->dtype), &bytes) && bytes == v->nbytes);
        FUZZ_CHECK(v->nbytes <= size);
        for (size_t b = 0; b < v->nbytes; b++) /* ASan: in bounds */
            sink ^= ((const uint8_t *)v->data)[b];
        if (v->dtype == DV_DTYPE_F32) {
            float *dst = malloc(v->nbytes ? v->nbytes : 1);
            FUZZ_CHECK(dst != NULL);
            FUZZ_CHECK(dv_st_copy_f32(f, v->name, v->ndim, v->shape, dst) == DV365_OK);
            FUZZ_CHECK(v->nbytes == 0 || memcmp(dst, v->data, v->nbytes) == 0);
            size_t wrong[DV_ST_MAX_DIMS + 1] = {0};
            memcpy(wrong, v->shape, v->ndim * sizeof(size_t));
            wrong[v->ndim] = 2; /* one more dimension: always a mismatch */
            if (v->ndim < DV_ST_MAX_DIMS)
                FUZZ_CHECK(dv_st_copy_f32(f, v->name, v->ndim + 1, wrong, dst) ==
                           DV365_E_MISMATCH);
            free(dst);
        } else {
            float one;
            size_t shape1 = 1;
            FUZZ_CHECK(dv_st_copy_f32(f, v->name, 1, &shape1, &one) == DV365_E_FORMAT);
        }
    }
    FUZZ_CHECK(dv_st_at(f, n) == NULL);
    FUZZ_CHECK(dv_st_find(f, "no such tensor \x01") == NULL);
    (void)dv_st_metadata(f, "format");
    (void)sink;
    dv_st_free(f);
    return 0;
}
