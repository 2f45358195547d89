/* gs_lanes_inl.h - the lane layout of the AVX-512 kernels: eight rows at a time, one row per lane (internal; include from files built with -mavx512f). */
#ifndef GS_LANES_INL_H
#define GS_LANES_INL_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

/* Why lanes: a softmax row of K = 18 is three short vectors, and its max,
 * its sum, its entropy and every per-row statistic are serial chains whose
 * latency, not arithmetic, set the time per row. With row l of a group of
 * eight in lane l, every chain runs for eight rows at once and every
 * operation is a full vector. A row's arithmetic is the same whichever lane
 * it lands in and whatever the other lanes hold (no operation mixes lanes),
 * so results do not depend on how a batch is split into row ranges.
 *
 * Layout: a transposed block xt[8 k + l] holds element k of row l. Rows are
 * moved in and out by 8 x 8 transposes in registers (gathers and scatters,
 * and element-by-element copies, measured slower). Lanes past the last
 * row hold zeros (every function here is finite on them) and are never
 * stored. Nothing is allocated: the callers pass scratch (gs_lanes_scratch,
 * gs_lanes_log_prob_scratch, ... doubles), once per kernel call.
 * Used by gs_lanes_avx512.c (categorical) and gs_lanes_cont_avx512.c
 * (normal and tanh_normal). */

static inline __mmask8 lane_mask(size_t n) { return n >= 8 ? 0xff : (__mmask8)((1u << n) - 1u); }

static inline __m512d ld(const double *p) { return _mm512_loadu_pd(p); }
static inline void st(double *p, __m512d v) { _mm512_storeu_pd(p, v); }

/* An 8 x 8 transpose in registers: r[i][j] becomes r[j][i] (unpacks
 * pair the rows, two rounds of 128-bit lane shuffles finish it). */
static inline void tr8(__m512d r[8]) {
    __m512d t0 = _mm512_unpacklo_pd(r[0], r[1]), t1 = _mm512_unpackhi_pd(r[0], r[1]);
    __m512d t2 = _mm512_unpacklo_pd(r[2], r[3]), t3 = _mm512_unpackhi_pd(r[2], r[3]);
    __m512d t4 = _mm512_unpacklo_pd(r[4], r[5]), t5 = _mm512_unpackhi_pd(r[4], r[5]);
    __m512d t6 = _mm512_unpacklo_pd(r[6], r[7]), t7 = _mm512_unpackhi_pd(r[6], r[7]);
    __m512d u0 = _mm512_shuffle_f64x2(t0, t2, 0x88), u1 = _mm512_shuffle_f64x2(t0, t2, 0xdd);
    __m512d u2 = _mm512_shuffle_f64x2(t1, t3, 0x88), u3 = _mm512_shuffle_f64x2(t1, t3, 0xdd);
    __m512d u4 = _mm512_shuffle_f64x2(t4, t6, 0x88), u5 = _mm512_shuffle_f64x2(t4, t6, 0xdd);
    __m512d u6 = _mm512_shuffle_f64x2(t5, t7, 0x88), u7 = _mm512_shuffle_f64x2(t5, t7, 0xdd);
    r[0] = _mm512_shuffle_f64x2(u0, u4, 0x88);
    r[1] = _mm512_shuffle_f64x2(u2, u6, 0x88);
    r[2] = _mm512_shuffle_f64x2(u1, u5, 0x88);
    r[3] = _mm512_shuffle_f64x2(u3, u7, 0x88);
    r[4] = _mm512_shuffle_f64x2(u0, u4, 0xdd);
    r[5] = _mm512_shuffle_f64x2(u2, u6, 0xdd);
    r[6] = _mm512_shuffle_f64x2(u1, u5, 0xdd);
    r[7] = _mm512_shuffle_f64x2(u3, u7, 0xdd);
}

/* 128-bit lane i of v (AVX-512F has the 32x4 form only). */
#define lane128(v, i) _mm_castps_pd(_mm512_extractf32x4_ps(_mm512_castpd_ps(v), i))
#define put128(v, x, i) \
    _mm512_castps_pd(_mm512_insertf32x4(_mm512_castpd_ps(v), _mm_castpd_ps(x), i))

/* A last block of one or two columns (K = 18 ends with two): rows 2i and
 * 2i + 1 fill 128-bit lane i of two registers, and one unpack of the two
 * makes each column; a third of tr8's shuffles, and only the columns that
 * exist are stored. Its columns past K are left as they were. */
static inline void load_t2(const double *src, size_t lds, size_t n, size_t nc, double *xt) {
    __m128d p[8];
#pragma GCC unroll 8
    for (size_t l = 0; l < 8; l++)
        p[l] = l >= n ? _mm_setzero_pd() : nc == 2 ? _mm_loadu_pd(src + l * lds) : _mm_load_sd(src + l * lds);
    __m512d v0 = _mm512_castpd128_pd512(p[0]), v1 = _mm512_castpd128_pd512(p[1]);
    v0 = put128(v0, p[2], 1), v1 = put128(v1, p[3], 1);
    v0 = put128(v0, p[4], 2), v1 = put128(v1, p[5], 2);
    v0 = put128(v0, p[6], 3), v1 = put128(v1, p[7], 3);
    st(xt, _mm512_unpacklo_pd(v0, v1));
    if (nc == 2) st(xt + 8, _mm512_unpackhi_pd(v0, v1));
}

/* The store of load_t2's block: dst[l * ldd + c] = xt[8 c + l], c < nc <= 2. */
static inline void store_t2(const double *xt, double *dst, size_t ldd, size_t n, size_t nc) {
    __m512d a = ld(xt), b = nc == 2 ? ld(xt + 8) : a;
    __m512d v0 = _mm512_unpacklo_pd(a, b), v1 = _mm512_unpackhi_pd(a, b);
    __m128d p[8] = {_mm512_castpd512_pd128(v0), _mm512_castpd512_pd128(v1), lane128(v0, 1),
                    lane128(v1, 1), lane128(v0, 2), lane128(v1, 2), lane128(v0, 3), lane128(v1, 3)};
#pragma GCC unroll 8
    for (size_t l = 0; l < 8; l++)
        if (l < n) {
            if (nc == 2) _mm_storeu_pd(dst + l * ldd, p[l]);
            else _mm_store_sd(dst + l * ldd, p[l]);
        }
}

/* xt[8 k + l] = src[l * lds + k] for l < n, 0 for l >= n (k < K): eight
 * columns at a time, masked loads for the last ones (nothing is read past
 * a row or past row n - 1). With want_max, returns mx = max(x_{K-1}, max(...,
 * max(x_1, x_0))) lane by lane, taken in registers (a softmax's max:
 * _mm512_max_pd keeps its second operand on ties, so the first of equal
 * columns wins, as in the row loops); else 0. */
static inline __m512d load_t_(size_t K, const double *src, size_t lds, size_t n, double *xt,
                              int want_max) {
    __m512d mx = _mm512_setzero_pd();
    for (size_t k0 = 0; k0 < K; k0 += 8) {
        size_t nc = K - k0 < 8 ? K - k0 : 8;
        if (nc <= 2) {
            load_t2(src + k0, lds, n, nc, xt + 8 * k0);
            for (size_t c = 0; want_max && c < nc; c++)
                mx = k0 + c ? _mm512_max_pd(ld(xt + 8 * (k0 + c)), mx) : ld(xt);
            break;
        }
        __mmask8 cm = lane_mask(nc);
        __m512d r[8];
#pragma GCC unroll 8
        for (size_t l = 0; l < 8; l++)
            r[l] = l < n ? _mm512_maskz_loadu_pd(cm, src + l * lds + k0) : _mm512_setzero_pd();
        tr8(r);
        /* Blocks are padded to a multiple of eight columns (kpad). */
#pragma GCC unroll 8
        for (size_t c = 0; c < 8; c++) {
            st(xt + 8 * (k0 + c), r[c]);
            if (want_max && c < nc) mx = k0 + c ? _mm512_max_pd(r[c], mx) : r[0];
        }
    }
    return mx;
}

static inline void load_t(size_t K, const double *src, size_t lds, size_t n, double *xt) {
    (void)load_t_(K, src, lds, n, xt, 0);
}

static inline __m512d load_t_max(size_t K, const double *src, size_t lds, size_t n, double *xt) {
    return load_t_(K, src, lds, n, xt, 1);
}

/* Eight columns r[c] (lane l = row l) to rows: dst[l * ldd + c] = lane l
 * of r[c] for l < n and the columns in cm (r is transposed in place). */
static inline void store_cols8(__m512d r[8], double *dst, size_t ldd, size_t n, __mmask8 cm) {
    tr8(r);
    if (n == 8) {
#pragma GCC unroll 8
        for (size_t l = 0; l < 8; l++) _mm512_mask_storeu_pd(dst + l * ldd, cm, r[l]);
    } else {
        for (size_t l = 0; l < n; l++) _mm512_mask_storeu_pd(dst + l * ldd, cm, r[l]);
    }
}

/* dst[l * ldd + k] = xt[8 k + l] for l < n (nothing else is written). */
static inline void store_t(size_t K, const double *xt, double *dst, size_t ldd, size_t n) {
    for (size_t k0 = 0; k0 < K; k0 += 8) {
        if (K - k0 <= 2) {
            store_t2(xt + 8 * k0, dst + k0, ldd, n, K - k0);
            break;
        }
        __m512d r[8];
#pragma GCC unroll 8
        for (size_t c = 0; c < 8; c++) r[c] = ld(xt + 8 * (k0 + c));
        store_cols8(r, dst + k0, ldd, n, lane_mask(K - k0));
    }
}

/* Whether a kernel told to stream (gs_stream_batch) can stream to dst:
 * dst on a cache line, and rows of a multiple of 8 columns (each row then
 * starts on a cache line) or of at most 64 (a group's 8 K doubles, K
 * cache lines, staged in L1 below). */
static inline int stream_ok(int stream, const double *dst, size_t K) {
    return stream && dst && (K % 8 == 0 || K <= 64) && !((uintptr_t)dst & 63);
}

/* store_t(K, xt, dst, K, n); with nt (stream_ok) a whole group goes out by
 * non-temporal stores, whole cache lines each. The kernel (or its caller)
 * issues an sfence after its last one. */
static inline void store_rows(size_t K, const double *xt, double *dst, size_t n, int nt) {
    if (!nt || n != 8) {
        store_t(K, xt, dst, K, n);
    } else if (K % 8 == 0) {
        for (size_t k0 = 0; k0 < K; k0 += 8) {
            __m512d r[8];
#pragma GCC unroll 8
            for (size_t c = 0; c < 8; c++) r[c] = ld(xt + 8 * (k0 + c));
            tr8(r);
#pragma GCC unroll 8
            for (size_t l = 0; l < 8; l++) _mm512_stream_pd(dst + l * K + k0, r[l]);
        }
    } else {
        double stage[8 * 64] __attribute__((aligned(64)));
        store_t(K, xt, stage, K, 8);
        for (size_t i = 0; i < 8 * K; i += 8) _mm512_stream_pd(dst + i, _mm512_load_pd(stage + i));
    }
}

/* Blocks of K columns are allocated with kpad(K) columns, a multiple of 8. */
static inline size_t kpad(size_t K) { return (K + 7) & ~(size_t)7; }

/* Lanes of v that are not finite (v - v is NaN exactly for inf and NaN). */
static inline __mmask8 nonfinite(__m512d v) {
    return _mm512_cmp_pd_mask(_mm512_sub_pd(v, v), _mm512_setzero_pd(), _CMP_NEQ_UQ);
}

#endif
