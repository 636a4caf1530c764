/* blob.c — encode, validate and decode the embedding blob.
 *
 * A blob is a 48-byte header followed by K 4-bit rows of D (quant4.c).
 * Everything is little-endian and read byte by byte, so blobs move between
 * machines and need no alignment.  Validation goes from the cheapest, most
 * telling check to the most expensive: magic (is it ours at all), version,
 * header fields, exact size, checksum; the caller's expectations (K, D,
 * fingerprint) come last, so a corrupt blob is reported as corrupt. */
#include "blob.h"

#include "quant4.h"

#include <string.h>
#include <xxhash.h>

static void put_u16(uint8_t *p, uint16_t v)
{
    for (int i = 0; i < 2; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

size_t dv365_blob_size(size_t k, size_t dim)
{
    size_t rows;
    if (k == 0 || dim == 0 || k > UINT32_MAX || dim > UINT32_MAX)
        return 0;
    if (!dv_mul_size(k, dv365_q4_row_bytes(dim), &rows) ||
        rows > SIZE_MAX - DV365_BLOB_HEADER_BYTES)
        return 0;
    return DV365_BLOB_HEADER_BYTES + rows;
}

uint64_t dv_blob_checksum(const uint8_t *blob, size_t size)
{
    return XXH3_64bits(blob + DV_BLOB_CHECKED_FROM, size - DV_BLOB_CHECKED_FROM);
}

dv365_status dv365_blob_encode(const float *U, size_t k, size_t dim, uint64_t fingerprint,
                               int64_t created, dv365_q4_method method, uint8_t *out,
                               size_t out_size)
{
    dv_clear_error();
    DV_CHECK_NULL(U);
    DV_CHECK_NULL(out);
    if (k == 0 || dim == 0)
        return dv_error(DV365_E_INVALID, "blob needs k > 0 and dim > 0, got k=%zu dim=%zu", k,
                        dim);
    if (k > UINT32_MAX || dim > UINT32_MAX)
        return dv_error(DV365_E_INVALID, "blob k=%zu, dim=%zu: both must fit in 32 bits", k,
                        dim);
    if (created < 0 || created > DV365_TIME_MAX)
        return dv_error(DV365_E_TIMESTAMP,
                        "blob creation time %lld is outside [0, %lld] (1970 .. 2100)",
                        (long long)created, (long long)DV365_TIME_MAX);
    size_t size = dv365_blob_size(k, dim);
    if (size == 0)
        return dv_error(DV365_E_NOMEM, "blob of %zu x %zu overflows size_t", k, dim);
    if (out_size < size)
        return dv_error(DV365_E_BUFFER_TOO_SMALL, "out has %zu bytes, a %zu x %zu blob needs %zu",
                        out_size, k, dim, size);

    /* Rows first, header last: a failed encode leaves no valid-looking blob. */
    memset(out, 0, DV365_BLOB_HEADER_BYTES);
    dv365_status st = dv_q4_quantize_impl(U, k, dim, method, out + DV365_BLOB_HEADER_BYTES,
                                          size - DV365_BLOB_HEADER_BYTES, DV_Q4_IMPL_AUTO);
    if (st != DV365_OK)
        return dv_error_context(st, "blob encode");

    memcpy(out + DV_BLOB_OFF_MAGIC, DV_BLOB_MAGIC, 8);
    put_u16(out + DV_BLOB_OFF_VERSION, DV365_BLOB_VERSION);
    out[DV_BLOB_OFF_BITS] = 4;
    out[DV_BLOB_OFF_METHOD] = (uint8_t)method;
    put_u32(out + DV_BLOB_OFF_RESERVED, 0);
    put_u32(out + DV_BLOB_OFF_K, (uint32_t)k);
    put_u32(out + DV_BLOB_OFF_DIM, (uint32_t)dim);
    put_u64(out + DV_BLOB_OFF_FINGERPRINT, fingerprint);
    put_u64(out + DV_BLOB_OFF_CREATED, (uint64_t)created);
    put_u64(out + DV_BLOB_OFF_CHECKSUM, dv_blob_checksum(out, size));
    return DV365_OK;
}

dv365_status dv_blob_parse(const uint8_t *blob, size_t size, dv_blob_header *h)
{
    if (size < 8 || memcmp(blob + DV_BLOB_OFF_MAGIC, DV_BLOB_MAGIC, 8) != 0)
        return dv_error(DV365_E_FORMAT, "not a dv365 embedding blob (%s)",
                        size < 8 ? "shorter than the magic" : "wrong magic");
    if (size < DV365_BLOB_HEADER_BYTES)
        return dv_error(DV365_E_FORMAT, "blob truncated: %zu bytes, the header alone is %d",
                        size, DV365_BLOB_HEADER_BYTES);
    h->version = get_u16(blob + DV_BLOB_OFF_VERSION);
    if (h->version != DV365_BLOB_VERSION)
        return dv_error(DV365_E_VERSION, "blob format version %u is not supported (this is %d)",
                        (unsigned)h->version, DV365_BLOB_VERSION);
    unsigned bits = blob[DV_BLOB_OFF_BITS], method = blob[DV_BLOB_OFF_METHOD];
    uint32_t reserved = get_u32(blob + DV_BLOB_OFF_RESERVED);
    if (bits != 4)
        return dv_error(DV365_E_FORMAT, "blob has %u-bit rows, only 4 is defined", bits);
    if (method > DV365_Q4_GREEDY)
        return dv_error(DV365_E_FORMAT, "blob quantization method %u is unknown", method);
    if (reserved != 0)
        return dv_error(DV365_E_FORMAT, "blob reserved field is 0x%08x, must be 0",
                        (unsigned)reserved);
    h->method = (dv365_q4_method)method;
    h->k = get_u32(blob + DV_BLOB_OFF_K);
    h->dim = get_u32(blob + DV_BLOB_OFF_DIM);
    if (h->k == 0 || h->dim == 0)
        return dv_error(DV365_E_FORMAT, "blob header has k=%zu, dim=%zu: both must be > 0",
                        h->k, h->dim);
    h->fingerprint = get_u64(blob + DV_BLOB_OFF_FINGERPRINT);
    h->created = (int64_t)get_u64(blob + DV_BLOB_OFF_CREATED);
    if (h->created < 0 || h->created > DV365_TIME_MAX)
        return dv_error(DV365_E_FORMAT, "blob creation time %lld is outside [0, %lld]",
                        (long long)h->created, (long long)DV365_TIME_MAX);
    size_t expect = dv365_blob_size(h->k, h->dim);
    if (expect == 0 || size != expect)
        return dv_error(DV365_E_FORMAT, "blob %s: %zu bytes, a %zu x %zu blob has %zu",
                        size < expect ? "truncated" : "has trailing bytes", size, h->k, h->dim,
                        expect);
    uint64_t stored = get_u64(blob + DV_BLOB_OFF_CHECKSUM), actual = dv_blob_checksum(blob, size);
    if (stored != actual)
        return dv_error(DV365_E_CHECKSUM,
                        "blob checksum mismatch: stored %016llx, computed %016llx (corrupt)",
                        (unsigned long long)stored, (unsigned long long)actual);
    return DV365_OK;
}

dv365_status dv365_blob_inspect(const uint8_t *blob, size_t size, uint64_t *fingerprint,
                                int64_t *created, size_t *k, size_t *dim)
{
    dv_clear_error();
    DV_CHECK_NULL(blob);
    dv_blob_header h;
    dv365_status st = dv_blob_parse(blob, size, &h);
    if (st != DV365_OK)
        return st;
    if (fingerprint)
        *fingerprint = h.fingerprint;
    if (created)
        *created = h.created;
    if (k)
        *k = h.k;
    if (dim)
        *dim = h.dim;
    return DV365_OK;
}

dv365_status dv365_blob_decode(const uint8_t *blob, size_t size, uint64_t expect_fingerprint,
                               size_t k, size_t dim, float *U)
{
    dv_clear_error();
    DV_CHECK_NULL(blob);
    DV_CHECK_NULL(U);
    dv_blob_header h;
    dv365_status st = dv_blob_parse(blob, size, &h);
    if (st != DV365_OK)
        return st;
    if (expect_fingerprint != 0 && h.fingerprint != expect_fingerprint)
        return dv_error(DV365_E_MISMATCH,
                        "blob was made by model %016llx, expected %016llx (stale or foreign)",
                        (unsigned long long)h.fingerprint, (unsigned long long)expect_fingerprint);
    if (h.k != k || h.dim != dim)
        return dv_error(DV365_E_MISMATCH, "blob is %zu x %zu, the caller expects %zu x %zu", h.k,
                        h.dim, k, dim);
    st = dv_q4_dequantize_impl(blob + DV365_BLOB_HEADER_BYTES, size - DV365_BLOB_HEADER_BYTES, k,
                               dim, U, DV_Q4_IMPL_AUTO);
    if (st != DV365_OK)
        return dv_error_context(st, "blob decode");
    return DV365_OK;
}
