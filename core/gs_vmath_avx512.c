/* gs_vmath_avx512.c - AVX-512F bodies of the SLEEF array kernels and the softmax row (built with -mavx512f). */
#include <immintrin.h>
#include <math.h>
#include <sleef.h>

#include "gs_vmath_impl.h"

#if defined(__AVX512F__)
/* The tail is a masked load padded with 1.0 (in every function's domain)
 * and a masked store: the same vector kernel as the body, nothing written
 * past n. SLEEF's AVX-512F and AVX2 kernels share their algorithm and FMA
 * use and give the same bits (checked on 1.6e8 inputs of each function over
 * the noise's domains), so the random streams do not depend on which runs. */
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

void gs_vm_sincospi_avx512(size_t n, const double *x, double *s, double *c) {
    for (size_t i = 0; i < n; i += 8) {
        __mmask8 m = n - i >= 8 ? 0xff : tail_mask(n - i);
        __m512d v = _mm512_mask_loadu_pd(_mm512_set1_pd(1.0), m, x + i);
        Sleef___m512d_2 r = Sleef_sincospid8_u05avx512f(v);
        _mm512_mask_storeu_pd(s + i, m, r.x);
        _mm512_mask_storeu_pd(c + i, m, r.y);
    }
}

/* gs_vm_tanh_parts eight at a time, in one pass: x = -2|u|, em = expm1 x,
 * q = 2 + em; t = -em / q with u's sign (negated when u < 0, as the scalar
 * -t is: u = -0 keeps +0), 1 - t^2 = 4 e^x / (q q), log(1 - t^2) =
 * 2 (log 2 - |u| - log q). */
static inline void tanh8(__m512d u, __m512d *t, __m512d *omt2, __m512d *l1mt2) {
    const __m512d two = _mm512_set1_pd(2.0);
    __m512d a = _mm512_abs_pd(u), x = _mm512_mul_pd(_mm512_set1_pd(-2.0), a);
    __m512d em = Sleef_expm1d8_u10avx512f(x), e = Sleef_expd8_u10avx512f(x);
    __m512d q = _mm512_add_pd(two, em), lg = Sleef_logd8_u10avx512f(q);
    __m512d tt = _mm512_div_pd(_mm512_sub_pd(_mm512_setzero_pd(), em), q);
    __mmask8 neg = _mm512_cmp_pd_mask(u, _mm512_setzero_pd(), _CMP_LT_OQ);
    tt = _mm512_castsi512_pd(_mm512_mask_xor_epi64(_mm512_castpd_si512(tt), neg,
                                                   _mm512_castpd_si512(tt),
                                                   _mm512_set1_epi64((long long)0x8000000000000000ULL)));
    *t = tt;
    *omt2 = _mm512_div_pd(_mm512_mul_pd(_mm512_set1_pd(4.0), e), _mm512_mul_pd(q, q));
    *l1mt2 = _mm512_mul_pd(two, _mm512_sub_pd(_mm512_sub_pd(_mm512_set1_pd(0.69314718055994530942), a), lg));
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
 * scalar loops, so the same bits. */
void gs_vm_reduce_cols_avx512(const double *g, size_t M, size_t dim,
                              double *mean, double *se) {
    __m512d fM = _mm512_set1_pd((double)M), f1 = _mm512_set1_pd((double)(M - 1));
    for (size_t c = 0; c < dim; c += 8) {
        __mmask8 k = dim - c >= 8 ? 0xff : tail_mask(dim - c);
        __m512d s = _mm512_setzero_pd();
        for (size_t m = 0; m < M; m++)
            s = _mm512_add_pd(s, _mm512_maskz_loadu_pd(k, g + m * dim + c));
        __m512d mu = _mm512_div_pd(s, fM);
        _mm512_mask_storeu_pd(mean + c, k, mu);
        if (!se) continue;
        __m512d ss = _mm512_setzero_pd();
        for (size_t m = 0; m < M; m++) {
            __m512d dv = _mm512_sub_pd(_mm512_maskz_loadu_pd(k, g + m * dim + c), mu);
            ss = _mm512_add_pd(ss, _mm512_mul_pd(dv, dv));
        }
        __m512d r = M > 1 ? _mm512_sqrt_pd(_mm512_div_pd(_mm512_div_pd(ss, f1), fM))
                          : _mm512_setzero_pd();
        _mm512_mask_storeu_pd(se + c, k, r);
    }
}

/* The squared-deviation sweep of gs_cat_score_reduce eight columns at a
 * time: ss[j] = sum_m ((w_m if k_m = j else 0) - c_j - p_j dev_m)^2, rows in
 * order, the same expression per column as the scalar loop; then, as there,
 * se[j] = sqrt(ss[j] / f), or 0 for M < 2. */
void gs_vm_cat_sq_avx512(const double *w, const int64_t *k, const double *dev,
                         size_t M, const double *c, const double *p, size_t K,
                         double f, double *se) {
    __m512d fv = _mm512_set1_pd(f);
    for (size_t j0 = 0; j0 < K; j0 += 8) {
        __mmask8 km = K - j0 >= 8 ? 0xff : tail_mask(K - j0);
        __m512d cv = _mm512_maskz_loadu_pd(km, c + j0), pv = _mm512_maskz_loadu_pd(km, p + j0);
        __m512d acc = _mm512_setzero_pd();
        for (size_t m = 0; m < M; m++) {
            size_t h = (size_t)k[m] - j0;
            __mmask8 hit = h < 8 ? (__mmask8)(1u << h) : 0;
            __m512d a = _mm512_maskz_mov_pd(hit, _mm512_set1_pd(w[m]));
            __m512d v = _mm512_sub_pd(_mm512_sub_pd(a, cv),
                                      _mm512_mul_pd(pv, _mm512_set1_pd(dev[m])));
            acc = _mm512_add_pd(acc, _mm512_mul_pd(v, v));
        }
        acc = M > 1 ? _mm512_sqrt_pd(_mm512_div_pd(acc, fv)) : _mm512_setzero_pd();
        _mm512_mask_storeu_pd(se + j0, km, acc);
    }
}

/* The softmax row of gs_vm_cat, eight logits at a time. Sums run in eight
 * lanes (lane l adds elements l, l + 8, ...) and are then folded by
 * _mm512_reduce_add_pd: an order fixed by K alone. Tail lanes are masked
 * out of every max and sum. */
double gs_vm_cat_avx512(size_t K, const double *z, double *logp, double *p) {
    size_t nf = K & ~(size_t)7;
    __mmask8 tm = tail_mask(K - nf);
    __m512d ninf = _mm512_set1_pd(-INFINITY), vmax = ninf;
    for (size_t i = 0; i < nf; i += 8) vmax = _mm512_max_pd(vmax, _mm512_loadu_pd(z + i));
    if (tm) vmax = _mm512_max_pd(vmax, _mm512_mask_loadu_pd(ninf, tm, z + nf));
    __m512d mx = _mm512_set1_pd(_mm512_reduce_max_pd(vmax));
    /* logp = z - max, p = exp(logp): z is read before logp is written, so
     * the two may be the same array. */
    __m512d acc = _mm512_setzero_pd();
    for (size_t i = 0; i < nf; i += 8) {
        __m512d x = _mm512_sub_pd(_mm512_loadu_pd(z + i), mx);
        __m512d e = Sleef_expd8_u10avx512f(x);
        _mm512_storeu_pd(logp + i, x);
        _mm512_storeu_pd(p + i, e);
        acc = _mm512_add_pd(acc, e);
    }
    if (tm) {
        __m512d x = _mm512_maskz_sub_pd(tm, _mm512_maskz_loadu_pd(tm, z + nf), mx);
        __m512d e = Sleef_expd8_u10avx512f(x);
        _mm512_mask_storeu_pd(logp + nf, tm, x);
        _mm512_mask_storeu_pd(p + nf, tm, e);
        acc = _mm512_mask_add_pd(acc, tm, acc, e);
    }
    /* The max term contributes exp(0) = 1, so sum >= 1 and its log is
     * finite. */
    double sum = _mm512_reduce_add_pd(acc);
    __m512d lse = _mm512_set1_pd(log(sum)), r = _mm512_set1_pd(1.0 / sum);
    __m512d h = _mm512_setzero_pd();
    for (size_t i = 0; i < nf; i += 8) {
        __m512d l = _mm512_sub_pd(_mm512_loadu_pd(logp + i), lse);
        __m512d q = _mm512_mul_pd(_mm512_loadu_pd(p + i), r);
        _mm512_storeu_pd(logp + i, l);
        _mm512_storeu_pd(p + i, q);
        h = _mm512_add_pd(h, _mm512_mul_pd(q, l));
    }
    if (tm) {
        __m512d l = _mm512_maskz_sub_pd(tm, _mm512_maskz_loadu_pd(tm, logp + nf), lse);
        __m512d q = _mm512_maskz_mul_pd(tm, _mm512_maskz_loadu_pd(tm, p + nf), r);
        _mm512_mask_storeu_pd(logp + nf, tm, l);
        _mm512_mask_storeu_pd(p + nf, tm, q);
        h = _mm512_mask_add_pd(h, tm, h, _mm512_mul_pd(q, l));
    }
    /* p = 0 (underflow) adds 0: its logp is finite. */
    return -_mm512_reduce_add_pd(h);
}
#else
#error "gs_vmath_avx512.c must be compiled with -mavx512f"
#endif
