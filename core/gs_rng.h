/* gs_rng.h - counter-based random numbers keyed by (seed, row, sample). */
#ifndef GS_RNG_H
#define GS_RNG_H

#include <stddef.h>
#include <stdint.h>

/* The generator is Random123's Philox4x32-10 (Salmon et al., "Parallel random
 * numbers: as easy as 1, 2, 3", SC'11), used as a pure function of
 *
 *     key     = (seed & 0xffffffff, seed >> 32)
 *     counter = (j, m, row & 0xffffffff, row >> 32)
 *
 * where m is the Monte Carlo sample and j the block within that sample (a
 * categorical draw, one uniform, takes half a block: samples 2i and 2i + 1
 * share counter (0, i, row)). The numbers of (seed, row, m) therefore depend
 * on nothing else: not on the batch size, the thread count or how a batch is
 * split. The state is only the key;
 * it is immutable, so one gs_rng may be shared by any number of threads. */
typedef struct {
    uint32_t key[2];
} gs_rng;

/* Largest seed the API accepts (2^53 - 1, exactly representable in JSON). */
#define GS_SEED_MAX ((uint64_t)9007199254740991ULL)

void gs_rng_init(gs_rng *rng, uint64_t seed);

/* The raw Philox4x32-10 block for counter (c0, c1, c2, c3) under key
 * (k0, k1): exposed for the known-answer tests. */
void gs_rng_philox(const uint32_t ctr[4], const uint32_t key[2],
                   uint32_t out[4]);

/* A uniform double in (0, 1) with 53 random bits, from the block of counter
 * (0, m >> 1, row): words 0-1 for an even m, 2-3 for an odd one (a block
 * serves two samples); u = (bits53 + 0.5) * 2^-53, so neither 0 nor 1 is
 * ever drawn. */
double gs_rng_uniform(const gs_rng *rng, uint64_t row, uint32_t m);

/* Fills out[m * d + i] for m in [0, count) and i in [0, d) with standard
 * normals of row `row`, samples m0 .. m0 + count - 1. Each sample uses
 * ceil(d / 2) blocks; block j gives two uniforms (words 0-1 and 2-3) and the
 * Box-Muller pair z[2j] = r cos(2 pi u2), z[2j+1] = r sin(2 pi u2) with
 * r = sqrt(-2 log u1). scratch must hold 4 * ceil(d / 2) * count doubles.
 * Buffers are caller-owned; nothing is allocated. */
void gs_rng_normals(const gs_rng *rng, uint64_t row, uint32_t m0,
                    size_t count, size_t d, double *out, double *scratch);

/* Size in doubles of the scratch gs_rng_normals needs. */
size_t gs_rng_normals_scratch(size_t count, size_t d);

/* Inverse-CDF draw from probabilities p[0..k) (not checked: p >= 0, finite,
 * summing to about 1) with the uniform of (row, m). An action of
 * probability 0 is never drawn. */
size_t gs_rng_categorical(const gs_rng *rng, uint64_t row, uint32_t m,
                          const double *p, size_t k);

/* For many draws from one row: cdf[i] = p[0] + ... + p[i], summed left to
 * right as gs_rng_categorical sums them. Returns `last`, the draw when u
 * passes every bucket (the last action of positive probability, or 0). */
size_t gs_rng_cat_cdf(const double *p, size_t k, double *cdf);

/* The draw gs_rng_categorical(rng, row, m, p, k) makes, bit for bit, from
 * u = gs_rng_uniform(rng, row, m) and the cdf and last of
 * gs_rng_cat_cdf(p, k, cdf): O(k) once per row instead of once per draw. */
size_t gs_rng_cat_draw(double u, const double *cdf, size_t k, size_t last);

/* u[i] = gs_rng_uniform(rng, row, m0 + i) for i in [0, count), bit for bit,
 * several blocks at a time where the CPU allows. */
void gs_rng_uniforms(const gs_rng *rng, uint64_t row, uint32_t m0,
                     size_t count, double *u);

#endif
