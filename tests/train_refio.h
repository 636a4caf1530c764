/* train_refio.h — tensor exchange between the training-block tests and
 * tests/reference/train_ref.py.
 *
 * The script writes the inputs of each case into a safetensors file and runs
 * `test_X --ref IN OUT`; the program computes with the library, writes its
 * results to OUT, and the script compares them with PyTorch / numpy.  These
 * helpers keep that glue short: reads abort the program with a message
 * (a malformed exchange file is a test failure, not a case to handle). */
#ifndef DV365_TRAIN_REFIO_H
#define DV365_TRAIN_REFIO_H

#include "safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline void ref_die(const char *what, const char *name)
{
    fprintf(stderr, "reference exchange: %s '%s' (%s)\n", what, name, dv365_last_error());
    exit(2);
}

/* A malloc'ed copy of tensor name as doubles (F32, F64 and I64 accepted);
 * *count receives the number of elements, shape (may be NULL) the dims. */
static inline double *ref_read(const dv_st_file *f, const char *name, size_t *count, size_t *ndim,
                        size_t shape[DV_ST_MAX_DIMS])
{
    const dv_tensor_view *v = dv_st_find(f, name);
    if (v == NULL)
        ref_die("missing tensor", name);
    size_t es = dv_dtype_size(v->dtype), n = v->nbytes / (es ? es : 1);
    double *out = malloc((n ? n : 1) * sizeof *out);
    if (out == NULL)
        ref_die("out of memory for", name);
    const unsigned char *p = v->data;
    for (size_t i = 0; i < n; i++) {
        if (v->dtype == DV_DTYPE_F32) {
            float x;
            memcpy(&x, p + 4 * i, 4);
            out[i] = x;
        } else if (v->dtype == DV_DTYPE_F64) {
            memcpy(&out[i], p + 8 * i, 8);
        } else if (v->dtype == DV_DTYPE_I64) {
            int64_t x;
            memcpy(&x, p + 8 * i, 8);
            out[i] = (double)x;
        } else {
            ref_die("unsupported dtype for", name);
        }
    }
    if (count)
        *count = n;
    if (ndim)
        *ndim = v->ndim;
    if (shape)
        memcpy(shape, v->shape, sizeof v->shape);
    return out;
}

/* Float copy (exact for F32 tensors). */
static inline float *ref_read_f32(const dv_st_file *f, const char *name, size_t *count)
{
    size_t n;
    double *d = ref_read(f, name, &n, NULL, NULL);
    float *x = malloc((n ? n : 1) * sizeof *x);
    if (x == NULL)
        ref_die("out of memory for", name);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)d[i];
    free(d);
    if (count)
        *count = n;
    return x;
}

/* Output side: buffers handed to the writer stay alive until ref_out_write. */
typedef struct ref_out {
    dv_st_writer *w;
    void *keep[256];
    size_t n_keep;
} ref_out;

static inline void ref_out_init(ref_out *o)
{
    o->n_keep = 0;
    if (dv_st_writer_create(&o->w) != DV365_OK)
        ref_die("cannot create writer", "");
}

/* Add a tensor; takes ownership of data (malloc'ed). */
static inline void ref_out_add(ref_out *o, const char *name, dv_dtype dt, size_t ndim,
                        const size_t *shape, void *data)
{
    if (o->n_keep == sizeof o->keep / sizeof o->keep[0])
        ref_die("too many outputs at", name);
    o->keep[o->n_keep++] = data;
    if (dv_st_writer_add(o->w, name, dt, ndim, shape, data) != DV365_OK)
        ref_die("cannot add", name);
}

static inline void ref_out_write(ref_out *o, const char *path)
{
    if (dv_st_writer_write(o->w, path) != DV365_OK)
        ref_die("cannot write", path);
    dv_st_writer_free(o->w);
    for (size_t i = 0; i < o->n_keep; i++)
        free(o->keep[i]);
}

/* Was the program started as `test_X --ref IN OUT` (argv[2], argv[3])? */
static inline int ref_mode(int argc, char **argv)
{
    return argc == 4 && strcmp(argv[1], "--ref") == 0;
}

/* Read the input exchange file. */
static inline dv_st_file *ref_open(const char *path)
{
    dv_st_file *in;
    if (dv_st_read_file(path, &in) != DV365_OK)
        ref_die("cannot read", path);
    return in;
}

/* The end of a --ref run: write the results and free the input. */
static inline int ref_finish(ref_out *o, const char *path, dv_st_file *in)
{
    ref_out_write(o, path);
    dv_st_free(in);
    return 0;
}

/* Does tensor name exist? */
static inline int ref_has(const dv_st_file *f, const char *name) { return dv_st_find(f, name) != NULL; }

#endif
