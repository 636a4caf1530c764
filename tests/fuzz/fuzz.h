/* fuzz.h — helpers shared by the libFuzzer targets of tests/fuzz.
 *
 * Every target defines LLVMFuzzerTestOneInput.  It is linked either with
 * libFuzzer (clang, -Dfuzz=true) or with replay.c, a plain main() that feeds
 * it the files of a corpus (any compiler: the committed corpora and crash
 * regressions run in every test run).  Targets check the library's
 * contract, not only that it does not crash: FUZZ_CHECK aborts, which both
 * libFuzzer and the replay test report as a failure. */
#ifndef DV365_FUZZ_H
#define DV365_FUZZ_H

#include "dv365.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                              \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed; last error: %s\n", __FILE__, \
                    __LINE__, #cond, dv365_last_error());                             \
            abort();                                                                  \
        }                                                                             \
    } while (0)

/* A failed call must return one of the documented codes and say why. */
static inline void fuzz_check_status(dv365_status st)
{
    if (st == DV365_OK)
        return;
    FUZZ_CHECK((st <= DV365_E_NULL && st >= DV365_E_STATE) || st == DV365_E_INTERNAL);
    FUZZ_CHECK(st != DV365_E_INTERNAL);
    FUZZ_CHECK(dv365_last_error()[0] != '\0');
}

/* Little-endian field access on the fuzz input. */
static inline uint32_t fuzz_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t fuzz_u64(const uint8_t *p)
{
    return (uint64_t)fuzz_u32(p) | (uint64_t)fuzz_u32(p + 4) << 32;
}
static inline void fuzz_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* A consumer of the fuzz input: fields are taken from the front; past the
 * end everything reads as zero. */
typedef struct fuzz_input {
    const uint8_t *p;
    size_t left;
} fuzz_input;

static inline void fuzz_take(fuzz_input *in, void *dst, size_t n)
{
    size_t k = n < in->left ? n : in->left;
    memcpy(dst, in->p, k);
    memset((uint8_t *)dst + k, 0, n - k);
    in->p += k;
    in->left -= k;
}
static inline uint8_t fuzz_byte(fuzz_input *in)
{
    uint8_t b;
    fuzz_take(in, &b, 1);
    return b;
}
static inline uint32_t fuzz_take_u32(fuzz_input *in)
{
    uint8_t b[4];
    fuzz_take(in, b, 4);
    return fuzz_u32(b);
}
static inline uint64_t fuzz_take_u64(fuzz_input *in)
{
    uint8_t b[8];
    fuzz_take(in, b, 8);
    return fuzz_u64(b);
}

/* A per-process scratch directory under $TMPDIR (made once; the files in
 * it are overwritten by every input and removed at exit). */
const char *fuzz_tmpdir(void);
/* Write data to dir/name (plain write: the harness, not the library);
 * returns the path (static buffer). */
const char *fuzz_write_file(const char *name, const void *data, size_t size);
/* The data-file targets' input: after one flags byte, the file itself.
 * Writes it to dir/name, first repairing its checksums with fix(file, n)
 * when flags bit 0 is set (so that mutations reach the checks past them);
 * returns the path (as fuzz_write_file). */
const char *fuzz_write_data_file(const char *name, uint8_t flags, const uint8_t *file, size_t n,
                                 void (*fix)(uint8_t *f, size_t size));
/* The text of a file of the source tree, e.g. "configs/small.yaml"
 * (NUL-terminated, owned by the caller, NULL on error). */
char *fuzz_read_source(const char *relative, size_t *len);

#endif
