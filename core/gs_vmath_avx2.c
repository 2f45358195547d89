/* gs_vmath_avx2.c - AVX2+FMA bodies of the SLEEF array kernels (built with -mavx2 -mfma). */
#include <immintrin.h>
#include <math.h>
#include <sleef.h>
#include <string.h>

#include "gs_vmath_impl.h"

#if defined(__AVX2__)
/* A tail shorter than a vector is padded with 1.0 (in every function's
 * domain) and goes through the same vector kernel as the body. */
#define GS_VM_AVX2(name, f4)                                                   \
    void gs_vm_##name##_avx2(size_t n, const double *x, double *y) {          \
        size_t i = 0;                                                          \
        for (; i + 4 <= n; i += 4)                                             \
            _mm256_storeu_pd(y + i, f4(_mm256_loadu_pd(x + i)));               \
        if (i < n) {                                                           \
            double t[4] = {1.0, 1.0, 1.0, 1.0};                                \
            memcpy(t, x + i, (n - i) * sizeof *t);                             \
            _mm256_storeu_pd(t, f4(_mm256_loadu_pd(t)));                       \
            memcpy(y + i, t, (n - i) * sizeof *t);                             \
        }                                                                      \
    }

GS_VM_AVX2(exp, Sleef_expd4_u10avx2)
GS_VM_AVX2(expm1, Sleef_expm1d4_u10avx2)
GS_VM_AVX2(log, Sleef_logd4_u10avx2)
GS_VM_AVX2(log1p, Sleef_log1pd4_u10avx2)

static inline void box_muller4(const double *u1, const double *u2, double *r, double *s,
                               double *c) {
    __m256d l = Sleef_logd4_u35avx2(_mm256_loadu_pd(u1));
    Sleef___m256d_2 sc = Sleef_sincospid4_u35avx2(_mm256_loadu_pd(u2));
    _mm256_storeu_pd(r, _mm256_sqrt_pd(_mm256_mul_pd(_mm256_set1_pd(-2.0), l)));
    _mm256_storeu_pd(s, sc.x);
    _mm256_storeu_pd(c, sc.y);
}

void gs_vm_box_muller_avx2(size_t n, const double *u1, const double *u2, double *r,
                           double *s, double *c) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) box_muller4(u1 + i, u2 + i, r + i, s + i, c + i);
    if (i < n) {
        double a[4] = {1.0, 1.0, 1.0, 1.0}, b[4] = {1.0, 1.0, 1.0, 1.0}, tr[4], ts[4], tc[4];
        memcpy(a, u1 + i, (n - i) * sizeof *a);
        memcpy(b, u2 + i, (n - i) * sizeof *b);
        box_muller4(a, b, tr, ts, tc);
        memcpy(r + i, tr, (n - i) * sizeof *tr);
        memcpy(s + i, ts, (n - i) * sizeof *ts);
        memcpy(c + i, tc, (n - i) * sizeof *tc);
    }
}

/* Fixed-order horizontal folds: (v0 + v2) + (v1 + v3), and the max. */
static inline double hsum4(__m256d v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

static inline double hmax4(__m256d v) {
    __m128d s = _mm_max_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_max_sd(s, _mm_unpackhi_pd(s, s)));
}

/* The softmax row of gs_vm_cat, four logits at a time; sums in four lanes
 * folded by hsum4, an order fixed by K alone. The tail is loaded and stored
 * under a mask and its padding lanes are kept out of every max and sum. */
double gs_vm_cat_avx2(size_t K, const double *z, double *logp, double *p, double *xo, double *co) {
    size_t nf = K & ~(size_t)3;
    __m256i tm = _mm256_cmpgt_epi64(_mm256_set1_epi64x((long long)(K - nf)),
                                    _mm256_setr_epi64x(0, 1, 2, 3));
    __m256d tmd = _mm256_castsi256_pd(tm), ninf = _mm256_set1_pd(-INFINITY);
    __m256d vmax = ninf;
    for (size_t i = 0; i < nf; i += 4) vmax = _mm256_max_pd(vmax, _mm256_loadu_pd(z + i));
    if (nf < K)
        vmax = _mm256_max_pd(vmax, _mm256_blendv_pd(ninf, _mm256_maskload_pd(z + nf, tm), tmd));
    __m256d mx = _mm256_set1_pd(hmax4(vmax));
    /* z is read before logp is written: the two may be the same array.
     * t sums e x; an x of -inf (the logits' spread overflowed) has e = 0
     * and its product is masked: 0 log 0 = 0 (MATH.md §2). */
    __m256d acc = _mm256_setzero_pd(), ta = _mm256_setzero_pd();
    for (size_t i = 0; i < nf; i += 4) {
        __m256d x = _mm256_sub_pd(_mm256_loadu_pd(z + i), mx);
        __m256d e = Sleef_expd4_u10avx2(x);
        _mm256_storeu_pd(logp + i, x);
        if (xo) _mm256_storeu_pd(xo + i, x);
        _mm256_storeu_pd(p + i, e);
        acc = _mm256_add_pd(acc, e);
        __m256d fin = _mm256_cmp_pd(x, ninf, _CMP_NEQ_UQ);
        ta = _mm256_add_pd(ta, _mm256_and_pd(_mm256_mul_pd(e, x), fin));
    }
    if (nf < K) {
        __m256d x = _mm256_and_pd(_mm256_sub_pd(_mm256_maskload_pd(z + nf, tm), mx), tmd);
        __m256d e = Sleef_expd4_u10avx2(x);
        _mm256_maskstore_pd(logp + nf, tm, x);
        if (xo) _mm256_maskstore_pd(xo + nf, tm, x);
        _mm256_maskstore_pd(p + nf, tm, e);
        acc = _mm256_add_pd(acc, _mm256_and_pd(e, tmd));
        __m256d fin = _mm256_and_pd(_mm256_cmp_pd(x, ninf, _CMP_NEQ_UQ), tmd);
        ta = _mm256_add_pd(ta, _mm256_and_pd(_mm256_mul_pd(e, x), fin));
    }
    /* The max term contributes exp(0) = 1: sum >= 1, its log finite. */
    double sum = hsum4(acc), lsum = log(sum), rs = 1.0 / sum, c = rs * hsum4(ta);
    __m256d lse = _mm256_set1_pd(lsum), r = _mm256_set1_pd(rs);
    for (size_t i = 0; i < nf; i += 4) {
        _mm256_storeu_pd(logp + i, _mm256_sub_pd(_mm256_loadu_pd(logp + i), lse));
        _mm256_storeu_pd(p + i, _mm256_mul_pd(_mm256_loadu_pd(p + i), r));
    }
    if (nf < K) {
        _mm256_maskstore_pd(logp + nf, tm, _mm256_sub_pd(_mm256_maskload_pd(logp + nf, tm), lse));
        _mm256_maskstore_pd(p + nf, tm, _mm256_mul_pd(_mm256_maskload_pd(p + nf, tm), r));
    }
    if (co) *co = c;
    return lsum - c;
}
#else
#error "gs_vmath_avx2.c must be compiled with -mavx2 -mfma"
#endif
