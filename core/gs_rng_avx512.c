/* gs_rng_avx512.c - Philox4x32-10 eight blocks at a time, their uniforms and normals (built with -mavx512f). */
#include <immintrin.h>
#include <stdint.h>

#include "gs_vmath_avx512_inl.h"
#include "gs_vmath_impl.h"

#if defined(__AVX512F__)
/* Each 64-bit lane holds one 32-bit Philox word in its low half, so that
 * vpmuludq gives the full 32 x 32 -> 64 product of Random123's mulhilo32;
 * the rounds and key schedule are philox4x32_R(10, ...)'s, word for word.
 * Only the low halves are Philox's words: vpmuludq reads nothing else, so
 * the high halves may carry garbage (a product's high word, xored along)
 * until u53x8 masks them; the three-way xors are one vpternlogq each. */
static inline __m512i xor3(__m512i a, __m512i b, __m512i c) {
    return _mm512_ternarylogic_epi64(a, b, c, 0x96);
}

static inline void philox8(__m512i c[4], uint32_t k0, uint32_t k1) {
    const __m512i m0 = _mm512_set1_epi64(0xD2511F53), m1 = _mm512_set1_epi64(0xCD9E8D57);
    for (int r = 0; r < 10; r++) {
        if (r > 0) k0 += 0x9E3779B9u, k1 += 0xBB67AE85u;
        __m512i p0 = _mm512_mul_epu32(c[0], m0), p1 = _mm512_mul_epu32(c[2], m1);
        __m512i n0 = xor3(_mm512_srli_epi64(p1, 32), c[1], _mm512_set1_epi64(k0));
        __m512i n2 = xor3(_mm512_srli_epi64(p0, 32), c[3], _mm512_set1_epi64(k1));
        c[1] = p1;
        c[3] = p0;
        c[0] = n0;
        c[2] = n2;
    }
}

/* u53 of words (hi, lo), as gs_rng.c's: bits = (hi:lo) >> 11 < 2^53 is
 * converted exactly as (bits >> 32) 2^32 + (bits & 0xffffffff), each half
 * by the magic number 2^52 (an integer below 2^52 in the mantissa of 2^52,
 * minus 2^52, is that integer exactly: AVX-512F has no 64-bit conversion,
 * and its 32-bit ones cross lanes, 2 % slower here), then (bits + 0.5)
 * 2^-53 rounds as the scalar expression does. */
static inline __m512d u53x8(__m512i hi, __m512i lo) {
    lo = _mm512_and_si512(lo, _mm512_set1_epi64(0xffffffff)); /* philox8's garbage */
    __m512i bits = _mm512_srli_epi64(_mm512_or_si512(_mm512_slli_epi64(hi, 32), lo), 11);
    const __m512i magic = _mm512_set1_epi64(0x4330000000000000);
    const __m512d two52 = _mm512_set1_pd(0x1p52);
    __m512d h = _mm512_sub_pd(_mm512_castsi512_pd(_mm512_or_si512(_mm512_srli_epi64(bits, 32), magic)), two52);
    __m512d l = _mm512_sub_pd(
        _mm512_castsi512_pd(_mm512_or_si512(_mm512_and_si512(bits, _mm512_set1_epi64(0xffffffff)), magic)),
        two52);
    __m512d d = _mm512_add_pd(_mm512_mul_pd(h, _mm512_set1_pd(0x1p32)), l);
    return _mm512_mul_pd(_mm512_add_pd(d, _mm512_set1_pd(0.5)), _mm512_set1_pd(0x1p-53));
}

/* Two independent sets of eight blocks, round by round: a round's
 * multiply-xor chain is latency-bound, and two chains fill the pipes that
 * one leaves idle. Word for word philox8's arithmetic on each. */
static inline void philox8x2(__m512i c[4], __m512i d[4], uint32_t k0, uint32_t k1) {
    const __m512i m0 = _mm512_set1_epi64(0xD2511F53), m1 = _mm512_set1_epi64(0xCD9E8D57);
    for (int r = 0; r < 10; r++) {
        if (r > 0) k0 += 0x9E3779B9u, k1 += 0xBB67AE85u;
        __m512i kv0 = _mm512_set1_epi64(k0), kv1 = _mm512_set1_epi64(k1);
        __m512i p0 = _mm512_mul_epu32(c[0], m0), p1 = _mm512_mul_epu32(c[2], m1);
        __m512i q0 = _mm512_mul_epu32(d[0], m0), q1 = _mm512_mul_epu32(d[2], m1);
        __m512i n0 = xor3(_mm512_srli_epi64(p1, 32), c[1], kv0);
        __m512i n2 = xor3(_mm512_srli_epi64(p0, 32), c[3], kv1);
        __m512i o0 = xor3(_mm512_srli_epi64(q1, 32), d[1], kv0);
        __m512i o2 = xor3(_mm512_srli_epi64(q0, 32), d[3], kv1);
        c[1] = p1, c[3] = p0, c[0] = n0, c[2] = n2;
        d[1] = q1, d[3] = q0, d[0] = o0, d[2] = o2;
    }
}

void gs_rng_uniforms_avx512(const uint32_t key[2], uint64_t row, uint32_t m0,
                            size_t nb, size_t count, double *u1, double *u2) {
    size_t np = nb * count;
    const __m512i r0 = _mm512_set1_epi64((uint32_t)row), r1 = _mm512_set1_epi64((uint32_t)(row >> 32));
    /* Counters (j, m) of blocks i .. i + 7, j running fastest, kept in
     * registers: each step adds 8 to j and carries whole multiples of nb
     * into m (8 / nb + 1 masked steps at most). */
    uint64_t cj[8], cm[8];
    for (uint32_t l = 0, j = 0, m = m0; l < 8; l++) {
        cj[l] = j, cm[l] = m;
        if (++j == nb) j = 0, m++;
    }
    __m512i jv = _mm512_loadu_si512(cj), mv = _mm512_loadu_si512(cm);
    const __m512i nbv = _mm512_set1_epi64((long long)nb), eight = _mm512_set1_epi64(8),
                  one = _mm512_set1_epi64(1);
    size_t i = 0;
    for (; i + 16 <= np; i += 16) {
        __m512i c[4] = {jv, _mm512_and_si512(mv, _mm512_set1_epi64(0xffffffff)), r0, r1};
        jv = _mm512_add_epi64(jv, eight);
        for (__mmask8 over; (over = _mm512_cmpge_epu64_mask(jv, nbv));) {
            jv = _mm512_mask_sub_epi64(jv, over, jv, nbv);
            mv = _mm512_mask_add_epi64(mv, over, mv, one);
        }
        __m512i d[4] = {jv, _mm512_and_si512(mv, _mm512_set1_epi64(0xffffffff)), r0, r1};
        jv = _mm512_add_epi64(jv, eight);
        for (__mmask8 over; (over = _mm512_cmpge_epu64_mask(jv, nbv));) {
            jv = _mm512_mask_sub_epi64(jv, over, jv, nbv);
            mv = _mm512_mask_add_epi64(mv, over, mv, one);
        }
        philox8x2(c, d, key[0], key[1]);
        _mm512_storeu_pd(u1 + i, u53x8(c[0], c[1]));
        _mm512_storeu_pd(u1 + i + 8, u53x8(d[0], d[1]));
        _mm512_storeu_pd(u2 + i, _mm512_mul_pd(_mm512_set1_pd(2.0), u53x8(c[2], c[3])));
        _mm512_storeu_pd(u2 + i + 8, _mm512_mul_pd(_mm512_set1_pd(2.0), u53x8(d[2], d[3])));
    }
    for (; i < np; i += 8) {
        __m512i c[4] = {jv, _mm512_and_si512(mv, _mm512_set1_epi64(0xffffffff)), r0, r1};
        jv = _mm512_add_epi64(jv, eight);
        for (__mmask8 over; (over = _mm512_cmpge_epu64_mask(jv, nbv));) {
            jv = _mm512_mask_sub_epi64(jv, over, jv, nbv);
            mv = _mm512_mask_add_epi64(mv, over, mv, one);
        }
        philox8(c, key[0], key[1]);
        __mmask8 k = np - i >= 8 ? 0xff : (__mmask8)((1u << (np - i)) - 1u);
        _mm512_mask_storeu_pd(u1 + i, k, u53x8(c[0], c[1]));
        _mm512_mask_storeu_pd(u2 + i, k, _mm512_mul_pd(_mm512_set1_pd(2.0), u53x8(c[2], c[3])));
    }
}
/* u[8 (m - m0) + l] = the uniform of (row0 + l, m) for m in [m0, m0 + count),
 * l in [0, 8): counter (0, m >> 1, row) gives samples 2i (words 0-1) and
 * 2i + 1 (words 2-3), one row per lane (the layout of gs_lanes_avx512.c);
 * bit-identical to gs_rng_uniform. With one_row, the eight lanes are eight
 * consecutive blocks of row0 instead and u[m - m0] gets the uniforms
 * packed (gs_rng_uniforms). Two sets of blocks per step (philox8x2). */
void gs_rng_uniforms_lanes_avx512(const uint32_t key[2], uint64_t row0, uint32_t m0,
                                  size_t count, double *u, int one_row) {
    if (!count) return;
    uint64_t lo[8], hi[8], bl[8];
    for (int l = 0; l < 8; l++) {
        uint64_t r = row0 + (uint64_t)(one_row ? 0 : l);
        lo[l] = (uint32_t)r, hi[l] = (uint32_t)(r >> 32), bl[l] = one_row ? (uint64_t)l : 0;
    }
    const __m512i r0 = _mm512_loadu_si512(lo), r1 = _mm512_loadu_si512(hi), lanes = _mm512_loadu_si512(bl);
    /* Blocks b0 .. b1 hold samples 2 b0 .. 2 b1 + 1, a superset of m0 ..
     * m0 + count - 1; a step makes blocks (b, b + s) (s = 1 in lanes, 8
     * for one row, whose lanes run along the blocks). */
    uint64_t b0 = m0 >> 1, b1 = ((uint64_t)m0 + count - 1) >> 1, s = one_row ? 8 : 1;
    uint64_t end = (uint64_t)m0 + count;
    for (uint64_t b = b0; b <= b1; b += 2 * s) {
        __m512i c[4] = {_mm512_setzero_si512(), _mm512_add_epi64(_mm512_set1_epi64((long long)b), lanes), r0, r1};
        __m512i d[4] = {_mm512_setzero_si512(), _mm512_add_epi64(_mm512_set1_epi64((long long)(b + s)), lanes), r0, r1};
        philox8x2(c, d, key[0], key[1]);
        __m512d v[4] = {u53x8(c[0], c[1]), u53x8(c[2], c[3]), u53x8(d[0], d[1]), u53x8(d[2], d[3])};
        if (!one_row) {
            /* v[k] is sample 2 b + k of every lane. */
            for (uint64_t k = 0; k < 4; k++) {
                uint64_t m = 2 * b + k;
                if (m >= m0 && m < end) _mm512_storeu_pd(u + 8 * (m - m0), v[k]);
            }
            continue;
        }
        /* Lane l of v[0] and v[1] is block b + l's two samples, of v[2]
         * and v[3] block b + 8 + l's: sample m is in v[2 (i >> 3) + (m & 1)],
         * lane i & 7, with i = (m >> 1) - b. */
        double t[32] __attribute__((aligned(64)));
        for (int k = 0; k < 4; k++) _mm512_store_pd(t + 8 * k, v[k]);
        uint64_t lo_m = 2 * b > m0 ? 2 * b : m0, hi_m = 2 * (b + 16) < end ? 2 * (b + 16) : end;
        for (uint64_t m = lo_m; m < hi_m; m++) {
            uint64_t i = (m >> 1) - b;
            u[m - m0] = t[8 * (2 * (i >> 3) + (m & 1)) + (i & 7)];
        }
    }
}

/* eps[8 (m D + i) + l] = gs_rng_normals' normal i of sample m of row row0 +
 * l (m < M, i < D): block (j, m) of each lane's row gives u1 and u2, and
 * Box-Muller normals 2j (r cos) and 2j + 1 (r sin), bit for bit. Blocks are
 * made two at a time (philox8x2) along the flat (m, j) order. */
void gs_rng_normals_lanes_avx512(const uint32_t key[2], uint64_t row0, size_t M, size_t D,
                                 double *eps) {
    uint64_t lo[8], hi[8];
    for (int l = 0; l < 8; l++) {
        uint64_t r = row0 + (uint64_t)l;
        lo[l] = (uint32_t)r, hi[l] = (uint32_t)(r >> 32);
    }
    const __m512i r0 = _mm512_loadu_si512(lo), r1 = _mm512_loadu_si512(hi);
    size_t nb = (D + 1) / 2, np = M * nb;
    for (size_t i = 0; i < np; i += 2) {
        int two = i + 1 < np;
        size_t m[2] = {i / nb, (i + 1) / nb}, j[2] = {i % nb, (i + 1) % nb};
        __m512i c[2][4];
        for (int k = 0; k < 2; k++) {
            c[k][0] = _mm512_set1_epi64((uint32_t)j[k]);
            c[k][1] = _mm512_set1_epi64((uint32_t)m[k]);
            c[k][2] = r0, c[k][3] = r1;
        }
        if (two) philox8x2(c[0], c[1], key[0], key[1]);
        else philox8(c[0], key[0], key[1]);
        for (int k = 0; k < 1 + two; k++) {
            __m512d r, sn, cs;
            box_muller8(u53x8(c[k][0], c[k][1]),
                        _mm512_mul_pd(_mm512_set1_pd(2.0), u53x8(c[k][2], c[k][3])), &r, &sn, &cs);
            double *z = eps + 8 * (m[k] * D + 2 * j[k]);
            _mm512_storeu_pd(z, _mm512_mul_pd(r, cs));
            if (2 * j[k] + 1 < D) _mm512_storeu_pd(z + 8, _mm512_mul_pd(r, sn));
        }
    }
}
#else
#error "gs_rng_avx512.c must be compiled with -mavx512f"
#endif
