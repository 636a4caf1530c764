/* parallel.h — a static parallel-for over the caller's thread count.
 *
 * Work [0, n) is cut into nthreads contiguous chunks, the same for a given
 * (n, nthreads), so results never depend on scheduling.  Chunk 0 runs on the
 * calling thread; the others on threads started for the call (the library
 * keeps no threads alive between calls). */
#ifndef DV365_PARALLEL_H
#define DV365_PARALLEL_H

#include "internal.h"

/* fn(ctx, begin, end, chunk) for each chunk; chunk < nthreads. */
/* At most this many chunks (threads) per call. */
#define DV_MAX_CHUNKS 256

typedef void (*dv_range_fn)(void *ctx, size_t begin, size_t end, int chunk);

/* If a thread cannot be started its chunk runs on the calling thread
 * instead: the call still completes, only slower. */
void dv_parallel_for(int nthreads, size_t n, dv_range_fn fn, void *ctx);

/* Bounds of chunk c of nthreads over [0, n). */
static inline void dv_chunk(size_t n, int nthreads, int c, size_t *begin, size_t *end)
{
    *begin = n * (size_t)c / (size_t)nthreads;
    *end = n * (size_t)(c + 1) / (size_t)nthreads;
}

#endif
