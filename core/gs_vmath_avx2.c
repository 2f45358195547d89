/* gs_vmath_avx2.c - AVX2+FMA bodies of the SLEEF array kernels (built with -mavx2 -mfma). */
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

void gs_vm_sincospi_avx2(size_t n, const double *x, double *s, double *c) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        Sleef___m256d_2 r = Sleef_sincospid4_u05avx2(_mm256_loadu_pd(x + i));
        _mm256_storeu_pd(s + i, r.x);
        _mm256_storeu_pd(c + i, r.y);
    }
    if (i < n) {
        double t[4] = {1.0, 1.0, 1.0, 1.0}, ts[4], tc[4];
        memcpy(t, x + i, (n - i) * sizeof *t);
        Sleef___m256d_2 r = Sleef_sincospid4_u05avx2(_mm256_loadu_pd(t));
        _mm256_storeu_pd(ts, r.x);
        _mm256_storeu_pd(tc, r.y);
        memcpy(s + i, ts, (n - i) * sizeof *ts);
        memcpy(c + i, tc, (n - i) * sizeof *tc);
    }
}
#else
#error "gs_vmath_avx2.c must be compiled with -mavx2 -mfma"
#endif
