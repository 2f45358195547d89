/* gs_rng.c - Philox4x32-10 uniforms, normals and categorical draws. */
#include "gs_rng.h"

#include <Random123/philox.h>
#include <math.h>

#include "gs_vmath.h"
#include "gs_vmath_impl.h"

void gs_rng_init(gs_rng *rng, uint64_t seed) {
    rng->key[0] = (uint32_t)seed;
    rng->key[1] = (uint32_t)(seed >> 32);
}

void gs_rng_philox(const uint32_t ctr[4], const uint32_t key[2],
                   uint32_t out[4]) {
    philox4x32_ctr_t c = {{ctr[0], ctr[1], ctr[2], ctr[3]}};
    philox4x32_key_t k = {{key[0], key[1]}};
    philox4x32_ctr_t r = philox4x32_R(10, c, k);
    out[0] = r.v[0];
    out[1] = r.v[1];
    out[2] = r.v[2];
    out[3] = r.v[3];
}

/* 53 bits of two words, centred in their cell: the result is in (0, 1).
 * bits < 2^53 converts exactly from int64 too, and baseline x86-64 has a
 * one-instruction int64 -> double conversion but none for uint64. */
static inline double u53(uint32_t hi, uint32_t lo) {
    uint64_t bits = (((uint64_t)hi << 32) | lo) >> 11;
    return ((double)(int64_t)bits + 0.5) * 0x1p-53;
}

/* Random123's philox4x32_R directly (it is inline), not through the
 * struct-copying gs_rng_philox. */
static inline void block(const gs_rng *rng, uint64_t row, uint32_t m,
                         uint32_t j, uint32_t out[4]) {
    philox4x32_ctr_t c = {{j, m, (uint32_t)row, (uint32_t)(row >> 32)}};
    philox4x32_key_t k = {{rng->key[0], rng->key[1]}};
    philox4x32_ctr_t r = philox4x32_R(10, c, k);
    for (int i = 0; i < 4; i++) out[i] = r.v[i];
}

double gs_rng_uniform(const gs_rng *rng, uint64_t row, uint32_t m) {
    uint32_t w[4], h = 2 * (m & 1);
    block(rng, row, m >> 1, 0, w);
    return u53(w[h], w[h + 1]);
}

size_t gs_rng_normals_scratch(size_t count, size_t d) {
    return 4 * ((d + 1) / 2) * count;
}

void gs_rng_normals(const gs_rng *rng, uint64_t row, uint32_t m0,
                    size_t count, size_t d, double *out, double *scratch) {
    size_t nb = (d + 1) / 2, np = nb * count;
    double *u1 = scratch, *u2 = scratch + np, *s = scratch + 2 * np,
           *c = scratch + 3 * np;
    if (gs_vm_have_avx512()) {
        gs_rng_uniforms_avx512(rng->key, row, m0, nb, count, u1, u2);
    } else {
        for (size_t m = 0; m < count; m++) {
            for (size_t j = 0; j < nb; j++) {
                uint32_t w[4];
                block(rng, row, m0 + (uint32_t)m, (uint32_t)j, w);
                u1[m * nb + j] = u53(w[0], w[1]);
                u2[m * nb + j] = 2.0 * u53(w[2], w[3]);
            }
        }
    }
    /* r = sqrt(-2 log u1) is finite because u1 > 0; sincospi keeps the angle
     * exact instead of multiplying by a rounded 2 pi. */
    gs_vm_box_muller(np, u1, u2, u1, s, c);
    for (size_t m = 0; m < count; m++) {
        double *z = out + m * d;
        for (size_t j = 0; j < nb; j++) {
            size_t i = m * nb + j;
            z[2 * j] = u1[i] * c[i];
            if (2 * j + 1 < d) z[2 * j + 1] = u1[i] * s[i];
        }
    }
}

size_t gs_rng_categorical(const gs_rng *rng, uint64_t row, uint32_t m,
                          const double *p, size_t k) {
    double total = 0.0;
    for (size_t i = 0; i < k; i++) total += p[i];
    /* Scale u by the actual total so that rounding in the sum can never push
     * u past the last bucket; the first k with u < cdf_k is drawn, which
     * skips every zero-probability action. */
    double u = gs_rng_uniform(rng, row, m) * total, cdf = 0.0;
    size_t last = 0;
    for (size_t i = 0; i < k; i++) {
        if (p[i] <= 0.0) continue;
        cdf += p[i];
        last = i;
        if (u < cdf) return i;
    }
    return last;
}

/* Equivalent to gs_rng_categorical: cdf[i] equals its running sum at i
 * (adding a zero probability leaves a sum unchanged) and cdf[k-1] its total.
 * The first i with u < cdf[i] has p[i] > 0, because u >= 0 and the sum
 * grows at i, so it is the action gs_rng_categorical returns; a NaN never
 * compares below, falling through to last in both. */
size_t gs_rng_cat_cdf(const double *p, size_t k, double *cdf) {
    double c = 0.0;
    size_t last = 0;
    for (size_t i = 0; i < k; i++) {
        c += p[i];
        cdf[i] = c;
        if (!(p[i] <= 0.0)) last = i;
    }
    return last;
}

/* Below the total, cdf has no NaN (a NaN propagates to the total) and does
 * not decrease, so the first i with u < cdf[i] is the number of i with
 * cdf[i] <= u: counted without a branch per bucket. */
size_t gs_rng_cat_draw(double u, const double *cdf, size_t k, size_t last) {
    u *= cdf[k - 1];
    if (!(u < cdf[k - 1])) return last;
    size_t n = 0;
    for (size_t i = 0; i < k; i++) n += cdf[i] <= u;
    return n;
}

void gs_rng_uniforms(const gs_rng *rng, uint64_t row, uint32_t m0,
                     size_t count, double *u) {
    if (gs_vm_have_avx512()) {
        gs_rng_uniforms_lanes_avx512(rng->key, row, m0, count, u, 1);
        return;
    }
    for (size_t i = 0; i < count; i++) u[i] = gs_rng_uniform(rng, row, m0 + (uint32_t)i);
}
