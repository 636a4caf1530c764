/* generate.h — batch generation (timeline file -> store generation), internals.
 *
 * A run writes, after every batch and in the same store transaction as the
 * batch's blobs, a checkpoint saying how far it got in which input; a
 * resumed run checks the checkpoint and continues after its last user. */
#ifndef DV365_GENERATE_H
#define DV365_GENERATE_H

#include "internal.h"

#define DV_GEN_CKPT_MAGIC "DV365GCK"
#define DV_GEN_CKPT_VERSION 1u
#define DV_GEN_CKPT_BYTES 80

/* The checkpoint, little-endian: magic[8], version u32, method u32, then
 * the u64s below in order. */
typedef struct dv_gen_checkpoint {
    uint32_t method;       /* dv365_q4_method of the blobs */
    uint64_t input_id;     /* XXH64 of the timeline file's header and index */
    uint64_t input_size;   /* its size in bytes */
    uint64_t fingerprint;  /* the model's */
    int64_t cutoff;
    int64_t created;
    uint64_t total;        /* users in the file */
    uint64_t done;         /* users written, in file order */
    uint64_t last_user;    /* id of the last user written (done > 0) */
} dv_gen_checkpoint;

void dv_gen_checkpoint_write(const dv_gen_checkpoint *c, unsigned char out[DV_GEN_CKPT_BYTES]);
/* DV365_E_FORMAT / DV365_E_VERSION when the bytes are not a checkpoint. */
dv365_status dv_gen_checkpoint_read(const void *data, size_t size, dv_gen_checkpoint *c);

/* The identity of a timeline file: XXH64 of its 64-byte header and of its
 * index (user ids and offsets), and its size.  Cheap for any file size. */
dv365_status dv_timeline_file_identity(const char *path, uint64_t *id, uint64_t *size);

#endif
