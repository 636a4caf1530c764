/* benchutil.h — the clock, sorting, error exit and peer metadata the
 * benchmarks share. */
#ifndef DV365_BENCHUTIL_H
#define DV365_BENCHUTIL_H

#include "dv365.h"
#include "safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Print a message and the library's last error, and exit.  A program may
 * define its own DIE (with a prefix) before including this header. */
#ifndef DIE
#define DIE(...)                                                                          \
    do {                                                                                  \
        fprintf(stderr, __VA_ARGS__);                                                     \
        fprintf(stderr, " (%s)\n", dv365_last_error());                                   \
        exit(1);                                                                          \
    } while (0)
#endif

/* Seconds on the monotonic clock. */
static inline double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* qsort order of doubles, ascending. */
static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sizes for the peer: metadata keys[i] = vals[i] in decimal. */
static inline void put_sizes(dv_st_writer *w, const char *const *keys, const size_t *vals,
                             size_t n)
{
    char val[32];
    for (size_t i = 0; i < n; i++) {
        snprintf(val, sizeof val, "%zu", vals[i]);
        if (dv_st_writer_set_metadata(w, keys[i], val))
            DIE("metadata");
    }
}

#endif
