/* rng.c — the seeded generator behind every random initialization. */
#include "internal.h"

#include <math.h>

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void dv_rng_seed(dv_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) {
        x += UINT64_C(0x9e3779b97f4a7c15);
        r->s[i] = dv_mix64(x);
    }
}

uint64_t dv_rng_next(dv_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double dv_rng_uniform(dv_rng *r) { return (double)(dv_rng_next(r) >> 11) * 0x1.0p-53; }

double dv_rng_normal(dv_rng *r)
{
    double u1 = dv_rng_uniform(r), u2 = dv_rng_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
