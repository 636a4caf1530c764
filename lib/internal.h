/* internal.h — helpers shared by every file of lib/ (never installed). */
#ifndef DV365_INTERNAL_H
#define DV365_INTERNAL_H

#include "dv365.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DV_UNUSED(x) ((void)(x))
#define DV_MIN(a, b) ((a) < (b) ? (a) : (b))
#define DV_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Compile a hot function for AVX-512, AVX2 and baseline x86-64, picked once
 * per process by the CPU (so every thread runs the same code).  Not with
 * clang, whose vector extensions reject 64-byte vectors in the baseline
 * clone, nor under ThreadSanitizer, whose runtime is not up yet when the
 * clones' ifunc resolvers run; -DDV365_NO_CLONES turns them off too. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__ELF__) && \
    !defined(__SANITIZE_THREAD__) && !defined(DV365_NO_CLONES)
#define DV_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define DV_SIMD_CLONES
#endif

/* --- errors (error.c) ---------------------------------------------------- */

/* Record a formatted message for this thread and return st.  Use as
 *   return dv_error(DV365_E_INVALID, "dim must be > 0, got %zu", d); */
dv365_status dv_error(dv365_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prefix the current thread message with "what: " (keeps the status). */
dv365_status dv_error_context(dv365_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Clear this thread's message (public entry points call it on entry). */
void dv_clear_error(void);

/* Argument checks that return from the calling function. */
#define DV_CHECK_NULL(p)                                                           \
    do {                                                                           \
        if ((p) == NULL)                                                           \
            return dv_error(DV365_E_NULL, "%s: argument '%s' is NULL", __func__, #p); \
    } while (0)

/* --- memory (alloc.c) ---------------------------------------------------- */

/* All library memory goes through these.  Blocks are 64-byte aligned and
 * freed by the allocator that made them.  dv_malloc(0) returns a valid
 * block.  They do not set an error message: callers report DV365_E_NOMEM. */
void *dv_malloc(size_t size);
void *dv_calloc(size_t count, size_t size); /* zeroed; NULL on overflow */
void dv_free(void *ptr);
/* Grow *ptr (holding old_size bytes) to new_size bytes; on failure *ptr is
 * untouched and false is returned. */
bool dv_grow(void **ptr, size_t old_size, size_t new_size);
char *dv_strdup(const char *s);

/* a*b without overflow; false when it would overflow. */
static inline bool dv_mul_size(size_t a, size_t b, size_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

/* The low n bytes of v, little-endian, at p (record and checkpoint fields). */
static inline void dv_put_le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* n little-endian bytes at p. */
static inline uint64_t dv_get_le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* --- workspace (workspace.c) --------------------------------------------- */

struct dv365_workspace {
    void *mem;
    size_t cap;
    bool borrowed; /* a view into another workspace's memory: never grows */
};

/* Make view lend [mem, mem + cap) of another workspace, so that one call can
 * keep its own arrays at the start of a workspace and hand the rest to a
 * callee that takes a workspace. */
void dv_workspace_view(dv365_workspace *view, void *mem, size_t cap);

/* The workspace's memory, at least bytes long; NULL (with DV365_E_NOMEM
 * recorded) when it cannot grow.  Contents are not preserved across calls. */
void *dv_workspace_get(dv365_workspace *ws, size_t bytes);

/* Bump allocator over a workspace block, for carving arrays out of it. */
typedef struct dv_arena {
    unsigned char *base;
    size_t used, cap;
} dv_arena;
/* Round a size up to the 64-byte alignment every carved array gets. */
static inline size_t dv_align64(size_t n) { return (n + 63u) & ~(size_t)63u; }
void *dv_arena_take(dv_arena *a, size_t bytes);

/* --- numbers ------------------------------------------------------------- */

/* SplitMix64 finalizer: the documented id hash (docs/hash.md). */
static inline uint64_t dv_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return x;
}

/* Seeded random numbers (rng.c): xoshiro256** seeded by SplitMix64. */
typedef struct dv_rng {
    uint64_t s[4];
} dv_rng;
void dv_rng_seed(dv_rng *r, uint64_t seed);
uint64_t dv_rng_next(dv_rng *r);
double dv_rng_uniform(dv_rng *r); /* [0, 1) with 53 bits */
double dv_rng_normal(dv_rng *r);  /* standard normal (Box-Muller, no caching) */

#endif
