/* blob.h — the embedding blob (the key-value store value), internals.
 * The byte layout is documented in docs/quant.md. */
#ifndef DV365_BLOB_H
#define DV365_BLOB_H

#include "internal.h"

/* Field offsets of the 48-byte little-endian header. */
#define DV_BLOB_MAGIC "DV365Q4B" /* 8 bytes, no terminator stored */
#define DV_BLOB_OFF_MAGIC 0
#define DV_BLOB_OFF_CHECKSUM 8     /* u64 XXH3-64 (seed 0) of bytes [16, size) */
#define DV_BLOB_OFF_VERSION 16     /* u16 */
#define DV_BLOB_OFF_BITS 18        /* u8, 4 */
#define DV_BLOB_OFF_METHOD 19      /* u8, dv365_q4_method */
#define DV_BLOB_OFF_RESERVED 20    /* u32, 0 */
#define DV_BLOB_OFF_K 24           /* u32 */
#define DV_BLOB_OFF_DIM 28         /* u32 */
#define DV_BLOB_OFF_FINGERPRINT 32 /* u64 */
#define DV_BLOB_OFF_CREATED 40     /* i64 unix seconds */
#define DV_BLOB_CHECKED_FROM 16    /* the checksum covers everything after it */

/* A parsed, validated header. */
typedef struct dv_blob_header {
    uint16_t version;
    dv365_q4_method method;
    size_t k, dim;
    uint64_t fingerprint;
    int64_t created;
} dv_blob_header;

/* Validate everything but the caller's expectations (magic, version,
 * fields, exact size, checksum) and parse the header. */
dv365_status dv_blob_parse(const uint8_t *blob, size_t size, dv_blob_header *h);

/* The checksum of a blob of size bytes (size >= DV365_BLOB_HEADER_BYTES). */
uint64_t dv_blob_checksum(const uint8_t *blob, size_t size);

#endif
