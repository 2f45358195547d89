/* gs_vmath.c - SLEEF array kernels with run-time AVX2/SSE2 dispatch. */
#include "gs_vmath.h"

#include <sleef.h>
#include <string.h>

#include "gs_vmath_impl.h"

/* The build targets baseline x86-64 so the binary runs anywhere. The AVX2
 * bodies live in gs_vmath_avx2.c, the one file compiled with -mavx2 -mfma,
 * and are only called when the CPU reports both features. GS_VM_BASELINE
 * (make VMATH=baseline) forces SSE2, to test that path. */
#if defined(__x86_64__) && !defined(GS_VM_BASELINE)
static int have_avx2(void) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
static int have_avx2(void) { return 0; }
#endif

/* Pad value for a short tail: 1.0 is in the domain of every function here. */
#define GS_VM_UNARY(name, f2)                                                  \
    static void name##_sse2(size_t n, const double *x, double *y) {           \
        size_t i = 0;                                                          \
        for (; i + 2 <= n; i += 2) _mm_storeu_pd(y + i, f2(_mm_loadu_pd(x + i))); \
        if (i < n) {                                                           \
            double t[2] = {x[i], 1.0};                                         \
            _mm_storeu_pd(t, f2(_mm_loadu_pd(t)));                             \
            y[i] = t[0];                                                       \
        }                                                                      \
    }                                                                          \
    void gs_vm_##name(size_t n, const double *x, double *y) {                  \
        if (have_avx2()) gs_vm_##name##_avx2(n, x, y);                         \
        else name##_sse2(n, x, y);                                             \
    }

GS_VM_UNARY(exp, Sleef_expd2_u10sse2)
GS_VM_UNARY(expm1, Sleef_expm1d2_u10sse2)
GS_VM_UNARY(log, Sleef_logd2_u10sse2)
GS_VM_UNARY(log1p, Sleef_log1pd2_u10sse2)

static void sincospi_sse2(size_t n, const double *x, double *s, double *c) {
    size_t i = 0;
    for (; i + 2 <= n; i += 2) {
        Sleef___m128d_2 r = Sleef_sincospid2_u05sse2(_mm_loadu_pd(x + i));
        _mm_storeu_pd(s + i, r.x);
        _mm_storeu_pd(c + i, r.y);
    }
    if (i < n) {
        double t[2] = {x[i], 1.0}, ts[2], tc[2];
        Sleef___m128d_2 r = Sleef_sincospid2_u05sse2(_mm_loadu_pd(t));
        _mm_storeu_pd(ts, r.x);
        _mm_storeu_pd(tc, r.y);
        s[i] = ts[0];
        c[i] = tc[0];
    }
}

void gs_vm_sincospi(size_t n, const double *x, double *s, double *c) {
    if (have_avx2()) gs_vm_sincospi_avx2(n, x, s, c);
    else sincospi_sse2(n, x, s, c);
}

const char *gs_vm_isa(void) { return have_avx2() ? "avx2" : "sse2"; }
