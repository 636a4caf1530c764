/* store.h — the LMDB store of embedding blobs, internals.
 *
 * Layout of the LMDB environment (docs/store.md):
 *   meta   "format"     16 B: "DV365STO", u32 DV_STORE_FORMAT, u32 0
 *          "current"    a dv_gen_record: the generation readers see
 *          "pending"    a dv_gen_record: the generation being written
 *          "checkpoint" the pending generation's last checkpoint data
 *   slot0, slot1        user id (8 B big-endian) -> blob
 * The current generation lives in one slot, a pending one in the other. */
#ifndef DV365_STORE_H
#define DV365_STORE_H

#include "internal.h"

#define DV_STORE_MAGIC "DV365STO"
#define DV_STORE_FORMAT 1u
#define DV_STORE_RECORD_BYTES 48
#define DV_STORE_MAX_CHECKPOINT 65536u
#define DV_STORE_MIN_MAP ((size_t)1 << 20)
#define DV_STORE_DB_META "meta"
#define DV_STORE_DB_SLOT0 "slot0"
#define DV_STORE_DB_SLOT1 "slot1"

/* One generation, stored little-endian in DV_STORE_RECORD_BYTES bytes:
 * number u64, fingerprint u64, created i64, count u64, k u32, dim u32,
 * slot u32, reserved u32 (0). */
typedef struct dv_gen_record {
    uint64_t number;
    uint64_t fingerprint;
    int64_t created;
    uint64_t count;
    uint32_t k, dim;
    uint32_t slot;
} dv_gen_record;

void dv_gen_record_write(const dv_gen_record *g, unsigned char out[DV_STORE_RECORD_BYTES]);
/* DV365_E_FORMAT (naming what) when the bytes are not a valid record. */
dv365_status dv_gen_record_read(const void *data, size_t size, const char *what,
                                dv_gen_record *g);

/* Keys are user ids in big-endian, so LMDB's default byte order is numeric
 * order: ascending ids append, and any LMDB tool reads the keys. */
static inline void dv_store_key(uint64_t user_id, unsigned char key[8])
{
    for (int i = 0; i < 8; i++)
        key[i] = (unsigned char)(user_id >> (56 - 8 * i));
}

#endif
