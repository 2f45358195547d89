/* gs_vmath.c - SLEEF array kernels with run-time AVX-512/AVX2/SSE2 dispatch. */
#include "gs_vmath.h"

#include <math.h>
#include <sleef.h>
#include <string.h>

#include "gs_vmath_impl.h"

/* The build targets baseline x86-64 so the binary runs anywhere. The AVX2
 * bodies live in gs_vmath_avx2.c, the one file compiled with -mavx2 -mfma,
 * the AVX-512 ones in gs_vmath_avx512.c (-mavx512f), and each is only called
 * when the CPU reports its features. GS_VM_BASELINE (make VMATH=baseline)
 * forces SSE2 and GS_VM_NO_AVX512 (make VMATH=avx2) stops at AVX2, to test
 * those paths on a CPU that has more. */
#if defined(__x86_64__) && !defined(GS_VM_BASELINE)
static int have_avx2(void) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
static int have_avx2(void) { return 0; }
#endif
#if defined(__x86_64__) && !defined(GS_VM_BASELINE) && !defined(GS_VM_NO_AVX512)
static int have_avx512(void) { return __builtin_cpu_supports("avx512f") && have_avx2(); }
#else
static int have_avx512(void) { return 0; }
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
        if (have_avx512()) gs_vm_##name##_avx512(n, x, y);                     \
        else if (have_avx2()) gs_vm_##name##_avx2(n, x, y);                    \
        else name##_sse2(n, x, y);                                             \
    }

GS_VM_UNARY(exp, Sleef_expd2_u10sse2)
GS_VM_UNARY(expm1, Sleef_expm1d2_u10sse2)
GS_VM_UNARY(log, Sleef_logd2_u10sse2)
GS_VM_UNARY(log1p, Sleef_log1pd2_u10sse2)

static inline void box_muller2(const double *u1, const double *u2, double *r, double *s,
                               double *c) {
    __m128d l = Sleef_logd2_u35sse2(_mm_loadu_pd(u1));
    Sleef___m128d_2 sc = Sleef_sincospid2_u35sse2(_mm_loadu_pd(u2));
    _mm_storeu_pd(r, _mm_sqrt_pd(_mm_mul_pd(_mm_set1_pd(-2.0), l)));
    _mm_storeu_pd(s, sc.x);
    _mm_storeu_pd(c, sc.y);
}

void gs_vm_box_muller(size_t n, const double *u1, const double *u2, double *r, double *s,
                      double *c) {
    if (have_avx512()) {
        gs_vm_box_muller_avx512(n, u1, u2, r, s, c);
        return;
    }
    if (have_avx2()) {
        gs_vm_box_muller_avx2(n, u1, u2, r, s, c);
        return;
    }
    size_t i = 0;
    for (; i + 2 <= n; i += 2) box_muller2(u1 + i, u2 + i, r + i, s + i, c + i);
    if (i < n) {
        double a[2] = {u1[i], 1.0}, b[2] = {u2[i], 1.0}, tr[2], ts[2], tc[2];
        box_muller2(a, b, tr, ts, tc);
        r[i] = tr[0], s[i] = ts[0], c[i] = tc[0];
    }
}

/* The SSE2 softmax row: sums left to right. */
static double cat_sse2(size_t K, const double *z, double *logp, double *p, double *xo, double *co) {
    double mx = z[0];
    for (size_t k = 1; k < K; k++) mx = z[k] > mx ? z[k] : mx;
    for (size_t k = 0; k < K; k++) logp[k] = z[k] - mx;
    if (xo) memcpy(xo, logp, K * sizeof *xo);
    exp_sse2(K, logp, p);
    /* The max term contributes exp(0) = 1, so sum >= 1 and its log is
     * finite: logits of +-1e4 cannot overflow. An x of -inf (the logits'
     * spread overflowed) has p = 0 and adds 0: 0 log 0 = 0 (MATH.md §2). */
    double sum = 0.0, t = 0.0;
    for (size_t k = 0; k < K; k++) {
        sum += p[k];
        t += logp[k] == -INFINITY ? 0.0 : p[k] * logp[k];
    }
    double lse = log(sum), c = (1.0 / sum) * t;
    for (size_t k = 0; k < K; k++) {
        logp[k] -= lse;
        p[k] /= sum;
    }
    if (co) *co = c;
    return lse - c;
}

double gs_vm_cat(size_t K, const double *z, double *logp, double *p, double *x, double *c) {
    if (have_avx512()) return gs_vm_cat_avx512(K, z, logp, p, x, c);
    if (have_avx2()) return gs_vm_cat_avx2(K, z, logp, p, x, c);
    return cat_sse2(K, z, logp, p, x, c);
}

/* Without AVX-512: the same arithmetic as tanh8 in gs_vmath_avx512.c, pass
 * by pass through the array kernels. */
void gs_vm_tanh_parts(size_t n, const double *u, double *tmp, double *t,
                      double *omt2, double *l1mt2) {
    if (have_avx512()) {
        gs_vm_tanh_parts_avx512(n, u, t, omt2, l1mt2);
        return;
    }
    for (size_t j = 0; j < n; j++) tmp[j] = -2.0 * fabs(u[j]);
    gs_vm_expm1(n, tmp, t);
    gs_vm_exp(n, tmp, omt2);
    for (size_t j = 0; j < n; j++) l1mt2[j] = 2.0 + t[j];
    gs_vm_log(n, l1mt2, l1mt2);
    for (size_t j = 0; j < n; j++) {
        double a = fabs(u[j]), q = 2.0 + t[j];
        double tt = -t[j] / q;
        t[j] = u[j] < 0 ? -tt : tt;
        omt2[j] = 4.0 * omt2[j] / (q * q);
        l1mt2[j] = 2.0 * (0.69314718055994530942 - a - l1mt2[j]);
    }
}

int gs_vm_have_avx512(void) { return have_avx512(); }

const char *gs_vm_isa(void) {
    return have_avx512() ? "avx512f" : have_avx2() ? "avx2" : "sse2";
}
