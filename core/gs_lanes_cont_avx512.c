/* gs_lanes_cont_avx512.c - the normal and tanh_normal kernels eight rows at a time, one row per AVX-512 lane (built with -mavx512f). */
#include <immintrin.h>
#include <math.h>
#include <sleef.h>
#include <stdint.h>
#include <string.h>

#include "gs_lanes_inl.h"
#include "gs_vmath_impl.h"

#if defined(__AVX512F__)
/* ---- normal log-density at given points ----------------------------------------- */

/* gs_log_prob's normal row (gs_dist.c, gs_row.c) lane by lane: sigma =
 * exp(log_scale) (or log_scale = log sigma), 1 / sigma, eps = (x - mu)
 * (1 / sigma); l_m = 0 - 0.5 eps_0 eps_0 - ..., base = 0 - (rho_0 +
 * log(2 pi) / 2) - ..., lp_m = l_m + base; g0 = (sum_m eps) / sigma, g1 =
 * sum_m (eps^2 - 1) (divided by sigma when the scale is sigma). A row's M
 * x D points are one row of M D columns, moved in eight columns at a time;
 * the sums run in the row loop's order. A lane whose sigma or 1 / sigma is
 * not a normal number (the row loop divides there instead) counts as bad. */
int gs_lanes_log_prob_normal_avx512(size_t D, size_t M, const double *loc, const double *scale,
                                    int scale_is_sigma, const double *x, size_t n, double *lp,
                                    double *g0, double *g1, double *scratch) {
    size_t Dp = kpad(D), L = M * D;
    double *mut = scratch, *sgt = mut + 8 * Dp, *ist = sgt + 8 * Dp, *s0t = ist + 8 * Dp,
           *s1t = s0t + 8 * Dp, *lpt = s1t + 8 * Dp;
    const __m512d zero = _mm512_setzero_pd(), one = _mm512_set1_pd(1.0),
                  half = _mm512_set1_pd(0.5), h2pi = _mm512_set1_pd(0.91893853320467274178),
                  tiny = _mm512_set1_pd(0x1p-1022), inf = _mm512_set1_pd(INFINITY);
    __mmask8 bad = 0;
    for (size_t b = 0; b < n; b += 8) {
        size_t nl = n - b < 8 ? n - b : 8;
        __mmask8 lm = lane_mask(nl), nf = 0;
        prefetch_ahead(x, b, n, L);
        load_t(D, loc + b * D, D, nl, mut);
        load_t(D, scale + b * D, D, nl, sgt);
        __m512d base = zero;
        for (size_t i = 0; i < D; i++) {
            __m512d sc = ld(sgt + 8 * i), sg, rho;
            if (scale_is_sigma) sg = sc, rho = Sleef_logd8_u10avx512f(sc);
            else rho = sc, sg = Sleef_expd8_u10avx512f(sc);
            __m512d r = _mm512_div_pd(one, sg);
            /* isnormal(sigma) && isnormal(1 / sigma), else the row loop. */
            __m512d as = _mm512_abs_pd(sg), ar = _mm512_abs_pd(r);
            nf |= (__mmask8)~(_mm512_cmp_pd_mask(as, tiny, _CMP_GE_OQ) &
                              _mm512_cmp_pd_mask(as, inf, _CMP_LT_OQ) &
                              _mm512_cmp_pd_mask(ar, tiny, _CMP_GE_OQ) &
                              _mm512_cmp_pd_mask(ar, inf, _CMP_LT_OQ));
            base = _mm512_sub_pd(base, _mm512_add_pd(rho, h2pi));
            st(sgt + 8 * i, sg);
            st(ist + 8 * i, r);
            st(s0t + 8 * i, zero);
            st(s1t + 8 * i, zero);
        }
        const double *xb = x + b * L;
        __m512d l = zero;
        for (size_t k0 = 0, i = 0, m = 0; k0 < L; k0 += 8) {
            __mmask8 cm = lane_mask(L - k0);
            __m512d r[8];
#pragma GCC unroll 8
            for (size_t j = 0; j < 8; j++)
                r[j] = j < nl ? _mm512_maskz_loadu_pd(cm, xb + j * L + k0) : zero;
            tr8(r);
            size_t nc = L - k0 < 8 ? L - k0 : 8;
            for (size_t j = 0; j < nc; j++) {
                __m512d e = _mm512_mul_pd(_mm512_sub_pd(r[j], ld(mut + 8 * i)), ld(ist + 8 * i));
                __m512d e2 = _mm512_mul_pd(e, e);
                l = _mm512_sub_pd(l, _mm512_mul_pd(_mm512_mul_pd(half, e), e));
                st(s0t + 8 * i, _mm512_add_pd(ld(s0t + 8 * i), e));
                st(s1t + 8 * i, _mm512_add_pd(ld(s1t + 8 * i), _mm512_sub_pd(e2, one)));
                if (++i == D) {
                    __m512d v = _mm512_add_pd(l, base);
                    nf |= nonfinite(v);
                    st(lpt + 8 * m, v);
                    l = zero, i = 0, m++;
                }
            }
        }
        for (size_t i = 0; i < D; i++) {
            __m512d sg = ld(sgt + 8 * i);
            __m512d a = _mm512_div_pd(ld(s0t + 8 * i), sg), c = ld(s1t + 8 * i);
            if (scale_is_sigma) c = _mm512_div_pd(c, sg);
            nf |= nonfinite(a) | nonfinite(c);
            st(s0t + 8 * i, a);
            st(s1t + 8 * i, c);
        }
        bad |= nf & lm;
        store_t(M, lpt, lp + b * M, M, nl);
        store_t(D, s0t, g0 + b * D, D, nl);
        store_t(D, s1t, g1 + b * D, D, nl);
    }
    return bad != 0;
}

size_t gs_lanes_log_prob_scratch(size_t D, size_t M) { return 8 * (5 * kpad(D) + kpad(M)); }

#else
#error "gs_lanes_cont_avx512.c must be compiled with -mavx512f"
#endif
