/* fuzz_blob.c — the embedding blob decoder (dv365_blob_inspect / _decode)
 * and the raw 4-bit dequantizer on arbitrary bytes.
 * Input: one flag byte, then the blob.  Flag bit 0 recomputes the checksum
 * so that mutations get past it and reach the field and row checks. */
#include "fuzz.h"

#include "blob.h"

#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    size_t n = size - 1;
    uint8_t *blob = malloc(n ? n : 1);
    FUZZ_CHECK(blob != NULL);
    memcpy(blob, data + 1, n);
    if ((flags & 1) && n >= DV365_BLOB_HEADER_BYTES)
        fuzz_put_u64(blob + DV_BLOB_OFF_CHECKSUM, dv_blob_checksum(blob, n));

    uint64_t fp = 0;
    int64_t created = -1;
    size_t k = 0, dim = 0;
    dv365_status st = dv365_blob_inspect(blob, n, &fp, &created, &k, &dim);
    fuzz_check_status(st);
    if (st == DV365_OK) {
        FUZZ_CHECK(k > 0 && dim > 0 && dv365_blob_size(k, dim) == n);
        FUZZ_CHECK(created >= 0 && created <= DV365_TIME_MAX);
        float *U = malloc(k * dim * sizeof(float));
        FUZZ_CHECK(U != NULL);
        /* wrong expectations are refused before any row is read */
        FUZZ_CHECK(dv365_blob_decode(blob, n, fp ^ 1, k, dim, U) == DV365_E_MISMATCH || fp == 1);
        FUZZ_CHECK(dv365_blob_decode(blob, n, 0, k + 1, dim, U) == DV365_E_MISMATCH);
        st = dv365_blob_decode(blob, n, fp, k, dim, U);
        fuzz_check_status(st);
        FUZZ_CHECK(st == DV365_OK || st == DV365_E_FORMAT); /* FORMAT: a non-finite scale */
        if (st == DV365_OK) {
            for (size_t i = 0; i < k * dim; i++)
                FUZZ_CHECK(isfinite(U[i]));
            /* what decodes must encode again (or be refused as too large for fp16) */
            uint8_t *again = malloc(n);
            FUZZ_CHECK(again != NULL);
            st = dv365_blob_encode(U, k, dim, fp, created, DV365_Q4_MINMAX, again, n);
            fuzz_check_status(st);
            FUZZ_CHECK(st == DV365_OK || st == DV365_E_INVALID);
            if (st == DV365_OK)
                FUZZ_CHECK(dv365_blob_inspect(again, n, NULL, NULL, NULL, NULL) == DV365_OK);
            free(again);
        }
        free(U);
    }

    /* The same bytes as raw 4-bit rows of a dim taken from the flags. */
    size_t rdim = (size_t)(flags >> 1) + 1, row = dv365_q4_row_bytes(rdim);
    size_t rows = n / row;
    if (rows > 0) {
        float *out = malloc((rows + 1) * rdim * sizeof(float)); /* room for the bad call */
        FUZZ_CHECK(out != NULL);
        st = dv365_q4_dequantize(blob, n, rows, rdim, out);
        fuzz_check_status(st);
        FUZZ_CHECK(st == DV365_OK || st == DV365_E_FORMAT);
        FUZZ_CHECK(dv365_q4_dequantize(blob, n, rows + 1, rdim, out) != DV365_OK);
        free(out);
    }
    free(blob);
    return 0;
}
