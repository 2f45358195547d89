/* gs_vmath_avx512.c - AVX-512F bodies of the SLEEF array kernels, the tanh quantities and the column sweeps (built with -mavx512f). */
#include <immintrin.h>
#include <math.h>
#include <sleef.h>

#include "gs_vmath_avx512_inl.h"
#include "gs_vmath_impl.h"

#if defined(__AVX512F__)
/* The tail is a masked load padded with 1.0 (in every function's domain)
 * and a masked store: the same vector kernel as the body, nothing written
 * past n. SLEEF's AVX-512F and AVX2 kernels share their algorithm and FMA
 * use and give the same bits (checked on 1.6e8 inputs of each 1-ULP function
 * and 4e7 of the 3.5-ULP log and sincospi over the noise's domains; tests/
 * test_vmath.c checks Box-Muller's), so the random streams do not depend on
 * which runs. */
static inline __mmask8 tail_mask(size_t r) { return (__mmask8)((1u << r) - 1u); }

#define GS_VM_AVX512(name, f8)                                                 \
    void gs_vm_##name##_avx512(size_t n, const double *x, double *y) {        \
        size_t i = 0;                                                          \
        for (; i + 8 <= n; i += 8)                                             \
            _mm512_storeu_pd(y + i, f8(_mm512_loadu_pd(x + i)));               \
        if (i < n) {                                                           \
            __mmask8 m = tail_mask(n - i);                                     \
            __m512d v = _mm512_mask_loadu_pd(_mm512_set1_pd(1.0), m, x + i);   \
            _mm512_mask_storeu_pd(y + i, m, f8(v));                            \
        }                                                                      \
    }

GS_VM_AVX512(exp, Sleef_expd8_u10avx512f)
GS_VM_AVX512(expm1, Sleef_expm1d8_u10avx512f)
GS_VM_AVX512(log, Sleef_logd8_u10avx512f)
GS_VM_AVX512(log1p, Sleef_log1pd8_u10avx512f)

void gs_vm_box_muller_avx512(size_t n, const double *u1, const double *u2, double *r,
                             double *s, double *c) {
    for (size_t i = 0; i < n; i += 8) {
        __mmask8 m = n - i >= 8 ? 0xff : tail_mask(n - i);
        const __m512d one = _mm512_set1_pd(1.0);
        __m512d rv, sv, cv;
        box_muller8(_mm512_mask_loadu_pd(one, m, u1 + i), _mm512_mask_loadu_pd(one, m, u2 + i), &rv,
                    &sv, &cv);
        _mm512_mask_storeu_pd(r + i, m, rv);
        _mm512_mask_storeu_pd(s + i, m, sv);
        _mm512_mask_storeu_pd(c + i, m, cv);
    }
}

void gs_vm_tanh_parts_avx512(size_t n, const double *u, double *t, double *omt2,
                             double *l1mt2) {
    for (size_t i = 0; i < n; i += 8) {
        __mmask8 m = n - i >= 8 ? 0xff : tail_mask(n - i);
        __m512d a, b, c;
        tanh8(_mm512_mask_loadu_pd(_mm512_set1_pd(1.0), m, u + i), &a, &b, &c);
        _mm512_mask_storeu_pd(t + i, m, a);
        _mm512_mask_storeu_pd(omt2 + i, m, b);
        _mm512_mask_storeu_pd(l1mt2 + i, m, c);
    }
}

/* gs_reduce_terms eight columns at a time, each column's sums in one
 * register lane, the rows added in order: the per-column arithmetic of the
 * scalar loops, so the same bits. na arrays (1 or 2, a constant after
 * inlining) are swept side by side: their sums are independent chains,
 * which overlap. */
static inline void reduce_cols_n(int na, const double *const g[2], size_t M, size_t dim,
                                 double *const mean[2], double *const se[2]) {
    __m512d fM = _mm512_set1_pd((double)M), f1 = _mm512_set1_pd((double)(M - 1));
    for (size_t c = 0; c < dim; c += 8) {
        __mmask8 k = dim - c >= 8 ? 0xff : tail_mask(dim - c);
        __m512d s[2] = {_mm512_setzero_pd(), _mm512_setzero_pd()}, mu[2];
        for (size_t m = 0; m < M; m++)
            for (int a = 0; a < na; a++)
                s[a] = _mm512_add_pd(s[a], _mm512_maskz_loadu_pd(k, g[a] + m * dim + c));
        for (int a = 0; a < na; a++) {
            mu[a] = _mm512_div_pd(s[a], fM);
            _mm512_mask_storeu_pd(mean[a] + c, k, mu[a]);
        }
        if (!se[0]) continue;
        __m512d ss[2] = {_mm512_setzero_pd(), _mm512_setzero_pd()};
        for (size_t m = 0; m < M; m++)
            for (int a = 0; a < na; a++) {
                __m512d dv = _mm512_sub_pd(_mm512_maskz_loadu_pd(k, g[a] + m * dim + c), mu[a]);
                ss[a] = _mm512_add_pd(ss[a], _mm512_mul_pd(dv, dv));
            }
        for (int a = 0; a < na; a++) {
            __m512d r = M > 1 ? _mm512_sqrt_pd(_mm512_div_pd(_mm512_div_pd(ss[a], f1), fM))
                              : _mm512_setzero_pd();
            _mm512_mask_storeu_pd(se[a] + c, k, r);
        }
    }
}

void gs_vm_reduce_cols_avx512(const double *g, size_t M, size_t dim,
                              double *mean, double *se) {
    const double *gs[2] = {g, g};
    double *means[2] = {mean, mean}, *ses[2] = {se, se};
    reduce_cols_n(1, gs, M, dim, means, ses);
}

void gs_vm_reduce_cols2_avx512(const double *g0, const double *g1, size_t M, size_t dim,
                               double *mean0, double *se0, double *mean1, double *se1) {
    const double *gs[2] = {g0, g1};
    double *means[2] = {mean0, mean1}, *ses[2] = {se0, se1};
    reduce_cols_n(2, gs, M, dim, means, ses);
}

void gs_vm_affine_avx512(size_t M, size_t D, const double *mu, const double *sigma,
                         const double *eps, double *u) {
    __mmask8 k = D >= 8 ? 0xff : tail_mask(D);
    __m512d mv = _mm512_maskz_loadu_pd(k, mu), sv = _mm512_maskz_loadu_pd(k, sigma);
    for (size_t m = 0; m < M; m++)
        _mm512_mask_storeu_pd(u + m * D, k,
                              _mm512_add_pd(mv, _mm512_mul_pd(sv, _mm512_maskz_loadu_pd(k, eps + m * D))));
}

/* ---- per-sample terms of the continuous kernels, D <= 8 ----------------
 * One sample per vector, its D coordinates in the low lanes: the loops of
 * gs_reparam, gs_sac_continuous and the reparam entropy estimator, element
 * by element the same expressions in the same order, so the same bits as
 * their scalar loops (which run without AVX-512 and for D > 8). */

void gs_vm_reparam_terms_avx512(size_t M, size_t D, int tanh_, const double *sigma,
                                const double *s, const double *eps, const double *omt2,
                                const double *t, const double *gx, const double *glp,
                                double *g0, double *g1) {
    __mmask8 k = D >= 8 ? 0xff : tail_mask(D);
    __m512d sig = _mm512_maskz_loadu_pd(k, sigma), sv = _mm512_maskz_loadu_pd(k, s);
    const __m512d two = _mm512_set1_pd(2.0), mone = _mm512_set1_pd(-1.0), one = _mm512_set1_pd(1.0);
    for (size_t m = 0; m < M; m++) {
        size_t o = m * D;
        __m512d se = _mm512_mul_pd(sig, _mm512_maskz_loadu_pd(k, eps + o));
        __m512d dxdmu = tanh_ ? _mm512_mul_pd(sv, _mm512_maskz_loadu_pd(k, omt2 + o)) : one;
        __m512d tt = tanh_ ? _mm512_maskz_loadu_pd(k, t + o) : _mm512_setzero_pd();
        __m512d c = _mm512_set1_pd(glp ? glp[m] : 0.0), gv = _mm512_maskz_loadu_pd(k, gx + o);
        __m512d gd = _mm512_mul_pd(gv, dxdmu);
        _mm512_mask_storeu_pd(g0 + o, k, _mm512_add_pd(gd, _mm512_mul_pd(_mm512_mul_pd(c, two), tt)));
        __m512d r = _mm512_add_pd(mone, _mm512_mul_pd(_mm512_mul_pd(two, tt), se));
        _mm512_mask_storeu_pd(g1 + o, k, _mm512_add_pd(_mm512_mul_pd(gd, se), _mm512_mul_pd(c, r)));
    }
}

void gs_vm_sac_cont_terms_avx512(size_t M, size_t D, double alpha, const double *sigma,
                                 const double *s, const double *eps, const double *omt2,
                                 const double *t, const double *dq, double *g0, double *g1) {
    __mmask8 k = D >= 8 ? 0xff : tail_mask(D);
    __m512d sig = _mm512_maskz_loadu_pd(k, sigma), sv = _mm512_maskz_loadu_pd(k, s);
    const __m512d two = _mm512_set1_pd(2.0), mone = _mm512_set1_pd(-1.0), a = _mm512_set1_pd(alpha);
    const __m512d a2 = _mm512_mul_pd(a, two);
    for (size_t m = 0; m < M; m++) {
        size_t o = m * D;
        __m512d se = _mm512_mul_pd(sig, _mm512_maskz_loadu_pd(k, eps + o));
        __m512d tt = _mm512_maskz_loadu_pd(k, t + o);
        __m512d dadmu = _mm512_mul_pd(sv, _mm512_maskz_loadu_pd(k, omt2 + o));
        __m512d dqd = _mm512_mul_pd(_mm512_maskz_loadu_pd(k, dq + o), dadmu);
        _mm512_mask_storeu_pd(g0 + o, k, _mm512_sub_pd(_mm512_mul_pd(a2, tt), dqd));
        __m512d r = _mm512_add_pd(mone, _mm512_mul_pd(_mm512_mul_pd(two, tt), se));
        _mm512_mask_storeu_pd(g1 + o, k, _mm512_sub_pd(_mm512_mul_pd(a, r), _mm512_mul_pd(dqd, se)));
    }
}

void gs_vm_entropy_reparam_terms_avx512(size_t M, size_t D, int tanh_, const double *sigma,
                                        const double *eps, const double *t, double *g0,
                                        double *g1) {
    __mmask8 k = D >= 8 ? 0xff : tail_mask(D);
    __m512d sig = _mm512_maskz_loadu_pd(k, sigma);
    const __m512d two = _mm512_set1_pd(2.0), mtwo = _mm512_set1_pd(-2.0), one = _mm512_set1_pd(1.0);
    for (size_t m = 0; m < M; m++) {
        size_t o = m * D;
        __m512d tt = tanh_ ? _mm512_maskz_loadu_pd(k, t + o) : _mm512_setzero_pd();
        _mm512_mask_storeu_pd(g0 + o, k, _mm512_mul_pd(mtwo, tt));
        __m512d r = one;
        if (tanh_)
            r = _mm512_sub_pd(one, _mm512_mul_pd(_mm512_mul_pd(_mm512_mul_pd(two, tt), sig),
                                                 _mm512_maskz_loadu_pd(k, eps + o)));
        _mm512_mask_storeu_pd(g1 + o, k, r);
    }
}

#else
#error "gs_vmath_avx512.c must be compiled with -mavx512f"
#endif
