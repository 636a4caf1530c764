/* safetensors.h — read and write weight files in the safetensors format
 * (internal; the byte layout and validation rules are in docs/weights.md).
 *
 * Reading loads the whole file into one 64-byte-aligned buffer and validates
 * everything up front, so a successfully opened file never fails later.
 * Tensor views point into that buffer and live until dv_st_free.
 *
 *     dv_st_file *f;
 *     if ((st = dv_st_read_file(path, &f)) != DV365_OK) return st;
 *     size_t shape[2] = {D, D};
 *     st = dv_st_copy_f32(f, "encoder.lce.weight", 2, shape, dst);
 *     dv_st_free(f);
 *
 * Writing collects tensors by pointer (no copy) and writes them in the order
 * added with one atomic dv_file_write_atomic call. */
#ifndef DV365_SAFETENSORS_H
#define DV365_SAFETENSORS_H

#include "internal.h"

/* Element types; the file spells them "F32", "F16", "U8", "I32", "I64",
 * "U64", "F64".  F16 data is raw IEEE half bits (uint16_t). */
typedef enum dv_dtype {
    DV_DTYPE_F32 = 0,
    DV_DTYPE_F16 = 1,
    DV_DTYPE_U8 = 2,
    DV_DTYPE_I32 = 3,
    DV_DTYPE_I64 = 4,
    DV_DTYPE_U64 = 5,
    DV_DTYPE_F64 = 6
} dv_dtype;

#define DV_ST_MAX_DIMS 8

/* One tensor of a loaded file.  data points into the file buffer and is NOT
 * necessarily aligned to the element size (the format packs tensors back to
 * back): read it with memcpy or dv_st_copy_f32.  ndim 0 is a scalar (one
 * element); a zero in shape makes an empty tensor (nbytes 0). */
typedef struct dv_tensor_view {
    const char *name;
    dv_dtype dtype;
    size_t ndim;
    size_t shape[DV_ST_MAX_DIMS];
    const void *data;
    size_t nbytes;
} dv_tensor_view;

/* Bytes per element (0 for an unknown value). */
size_t dv_dtype_size(dv_dtype t);
/* "F32", "F16", ...; "?" for an unknown value. */
const char *dv_dtype_name(dv_dtype t);

/* --- reading -------------------------------------------------------------- */

typedef struct dv_st_file dv_st_file;

/* Whole file into one 64-byte-aligned buffer, fully validated.
 * DV365_E_IO if it cannot be read, DV365_E_FORMAT if malformed (the message
 * says what and where), DV365_E_NOMEM. */
dv365_status dv_st_read_file(const char *path, dv_st_file **out);
/* Same from memory; buf is copied, the caller keeps it. */
dv365_status dv_st_read_buffer(const void *buf, size_t len, dv_st_file **out);
void dv_st_free(dv_st_file *f);

size_t dv_st_count(const dv_st_file *f);
/* Tensor i in file (data offset) order; NULL if i >= count. */
const dv_tensor_view *dv_st_at(const dv_st_file *f, size_t i);
/* NULL if absent (no error message is set). */
const dv_tensor_view *dv_st_find(const dv_st_file *f, const char *name);

/* Checked copy of a float32 tensor into dst (shape[0]*...*shape[ndim-1]
 * floats): DV365_E_NOT_FOUND if absent, DV365_E_FORMAT if its dtype is not
 * F32, DV365_E_MISMATCH if the shape differs (the message shows both). */
dv365_status dv_st_copy_f32(const dv_st_file *f, const char *name, size_t ndim,
                            const size_t *shape, float *dst);

/* Value of a "__metadata__" entry; NULL if absent. */
const char *dv_st_metadata(const dv_st_file *f, const char *key);

/* --- writing -------------------------------------------------------------- */

typedef struct dv_st_writer dv_st_writer;

dv365_status dv_st_writer_create(dv_st_writer **out);
/* Add a tensor.  data (dv_dtype_size * numel bytes) must stay valid until
 * dv_st_writer_write; name is copied.  DV365_E_INVALID for a duplicate or
 * reserved ("__metadata__") name, a name that is not UTF-8 or has a NUL,
 * ndim > DV_ST_MAX_DIMS or an unknown dtype; DV365_E_NOMEM if the size
 * overflows. */
dv365_status dv_st_writer_add(dv_st_writer *w, const char *name, dv_dtype dtype, size_t ndim,
                              const size_t *shape, const void *data);
/* Set (or replace) a "__metadata__" string; key and value are copied. */
dv365_status dv_st_writer_set_metadata(dv_st_writer *w, const char *key, const char *value);
/* Write everything atomically to path (dv_file_write_atomic).  The tensor
 * data is passed to the write as-is, never copied.  The writer stays usable
 * (it can be written again). */
dv365_status dv_st_writer_write(dv_st_writer *w, const char *path);
void dv_st_writer_free(dv_st_writer *w);

#endif
