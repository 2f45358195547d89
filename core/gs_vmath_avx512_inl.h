/* gs_vmath_avx512_inl.h - vector maths shared by the AVX-512 files: Box-Muller and the tanh quantities, eight at a time (internal; include from files built with -mavx512f). */
#ifndef GS_VMATH_AVX512_INL_H
#define GS_VMATH_AVX512_INL_H

#include <immintrin.h>
#include <sleef.h>

/* Box-Muller of gs_vm_box_muller: r = sqrt(-2 log u1) with SLEEF's 3.5-ULP
 * log, (s, c) = (sin, cos)(pi u2) with its 3.5-ULP sincospi. */
static inline void box_muller8(__m512d u1, __m512d u2, __m512d *r, __m512d *s, __m512d *c) {
    __m512d l = Sleef_logd8_u35avx512f(u1);
    Sleef___m512d_2 sc = Sleef_sincospid8_u35avx512f(u2);
    *r = _mm512_sqrt_pd(_mm512_mul_pd(_mm512_set1_pd(-2.0), l));
    *s = sc.x;
    *c = sc.y;
}

/* glibc's libmvec (linked through libm.so): its expm1 is three times as fast
 * as SLEEF's 1-ULP one, within 1.5 ulp over tanh's domain (checked against
 * long double on 2e7 inputs; glibc's bound is 4). */
__m512d _ZGVeN8v_expm1(__m512d x);

/* gs_vm_tanh_parts eight at a time, in one pass: x = -2|u|, em = expm1 x,
 * q = 2 + em; t = -em / q with u's sign (negated when u < 0, as the scalar
 * -t is: u = -0 keeps +0), 1 - t^2 = 4 e^x / (q q), log(1 - t^2) =
 * 2 (log 2 - |u| - log q). omt2 may be NULL: then e^x is not computed. */
static inline void tanh8(__m512d u, __m512d *t, __m512d *omt2, __m512d *l1mt2) {
    const __m512d two = _mm512_set1_pd(2.0);
    __m512d a = _mm512_abs_pd(u), x = _mm512_mul_pd(_mm512_set1_pd(-2.0), a);
    __m512d em = _ZGVeN8v_expm1(x);
    __m512d q = _mm512_add_pd(two, em), lg = Sleef_logd8_u35avx512f(q);
    __m512d tt = _mm512_div_pd(_mm512_sub_pd(_mm512_setzero_pd(), em), q);
    __mmask8 neg = _mm512_cmp_pd_mask(u, _mm512_setzero_pd(), _CMP_LT_OQ);
    tt = _mm512_castsi512_pd(_mm512_mask_xor_epi64(_mm512_castpd_si512(tt), neg,
                                                   _mm512_castpd_si512(tt),
                                                   _mm512_set1_epi64((long long)0x8000000000000000ULL)));
    *t = tt;
    if (omt2)
        *omt2 = _mm512_div_pd(_mm512_mul_pd(_mm512_set1_pd(4.0), Sleef_expd8_u10avx512f(x)),
                              _mm512_mul_pd(q, q));
    *l1mt2 = _mm512_mul_pd(two, _mm512_sub_pd(_mm512_sub_pd(_mm512_set1_pd(0.69314718055994530942), a), lg));
}

#endif
