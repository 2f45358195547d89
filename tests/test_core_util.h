/* test_core_util.h - helpers of the core Check suites: tolerances, FD, seed statistics. */
#ifndef TEST_CORE_UTIL_H
#define TEST_CORE_UTIL_H

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradserve.h"

/* ---- comparisons -------------------------------------------------------------
 * |a - b| <= atol + rtol max(|a|, |b|); NaN never compares close. */
static inline int tc_close(double a, double b, double rtol, double atol) {
    return fabs(a - b) <= atol + rtol * fmax(fabs(a), fabs(b));
}

#define ck_close(a, b, rtol, atol)                                                                 \
    do {                                                                                           \
        double a_ = (a), b_ = (b);                                                                 \
        ck_assert_msg(tc_close(a_, b_, (rtol), (atol)),                                            \
                      "%s = %.17g, want %s = %.17g (diff %.3g, rtol %g, atol %g)", #a, a_, #b, b_, \
                      a_ - b_, (double)(rtol), (double)(atol));                                    \
    } while (0)

/* Same as ck_close with an index in the message, for loops over arrays. */
#define ck_close_i(a, b, rtol, atol, i)                                                            \
    do {                                                                                           \
        double a_ = (a), b_ = (b);                                                                 \
        ck_assert_msg(tc_close(a_, b_, (rtol), (atol)),                                            \
                      "[%zu] %s = %.17g, want %s = %.17g (diff %.3g)", (size_t)(i), #a, a_, #b,    \
                      b_, a_ - b_);                                                                \
    } while (0)

#define ck_all_finite(a, n)                                                                        \
    do {                                                                                           \
        for (size_t i_ = 0; i_ < (size_t)(n); i_++)                                                \
            ck_assert_msg(isfinite((a)[i_]), "%s[%zu] = %g is not finite", #a, i_, (a)[i_]);       \
    } while (0)

#define ck_same_bytes(a, b, nbytes)                                                                \
    ck_assert_msg(memcmp((a), (b), (nbytes)) == 0, "%s and %s differ bitwise", #a, #b)

/* Asserts a kernel's failure: status, input, row, sample and col. */
#define ck_error(rc, e, st, in, r, smp, c)                                                         \
    do {                                                                                           \
        ck_assert_int_eq((rc), (st));                                                              \
        ck_assert_int_eq((e).status, (st));                                                        \
        ck_assert_int_eq((e).input, (in));                                                         \
        ck_assert_int_eq((e).row, (r));                                                            \
        ck_assert_int_eq((e).sample, (smp));                                                       \
        ck_assert_int_eq((e).col, (c));                                                            \
    } while (0)

/* ---- finite differences -------------------------------------------------------
 * Central difference of obj() in the parameter *p, with step h scaled to
 * |*p|; the step actually taken ((p+h) - (p-h), exact in floating point
 * terms) is the divisor. *p is restored. MATH.md §9: h ~ 1e-5, 1e-6 rel. */
#define TC_FD_H 1e-5
#define TC_FD_RTOL 1e-6
#define TC_FD_ATOL 1e-8

static inline double tc_fd(double (*obj)(void *), void *ctx, double *p) {
    double p0 = *p, h = TC_FD_H * fmax(1.0, fabs(p0));
    double hi = p0 + h, lo = p0 - h;
    *p = hi;
    double fp = obj(ctx);
    *p = lo;
    double fm = obj(ctx);
    *p = p0;
    return (fp - fm) / (hi - lo);
}

/* Asserts g agrees with the central difference of obj in *p. */
#define ck_fd(g, obj, ctx, p)                                                                      \
    do {                                                                                           \
        double fd_ = tc_fd((obj), (ctx), (p));                                                     \
        ck_close((g), fd_, TC_FD_RTOL, TC_FD_ATOL);                                                \
    } while (0)

/* ---- statistics over seeds ------------------------------------------------------
 * One estimate (and its reported standard error) per seed. Unbiasedness: the
 * mean over seeds lies within 4 standard errors of the exact value, the
 * standard error of the mean being sqrt(sum se_i^2) / n from the reported
 * errors. Calibration: the reported errors (their root mean square, which
 * estimates the variance without the downward bias of a mean of sample
 * standard deviations) agree with the spread of the estimates across seeds
 * within [0.8, 1.25]. */
typedef struct {
    double n, mean, m2, se2;
} tc_stat;

static inline void tc_stat_add(tc_stat *s, double x, double se) {
    s->n += 1.0;
    double d = x - s->mean;
    s->mean += d / s->n;
    s->m2 += d * (x - s->mean);
    s->se2 += se * se;
}

static inline double tc_stat_sd(const tc_stat *s) { return sqrt(s->m2 / (s->n - 1.0)); }
/* Reported standard error of the mean over seeds. */
static inline double tc_stat_se(const tc_stat *s) { return sqrt(s->se2) / s->n; }
/* Empirical standard error of the mean over seeds. */
static inline double tc_stat_emp_se(const tc_stat *s) { return tc_stat_sd(s) / sqrt(s->n); }

#define ck_unbiased(s, exact, what)                                                                \
    do {                                                                                           \
        double se_ = tc_stat_se(&(s)), ex_ = (exact);                                              \
        ck_assert_msg(fabs((s).mean - ex_) <= 4.0 * se_,                                           \
                      "%s: mean %.10g over %g seeds, exact %.10g: %.2f standard "                  \
                      "errors (se %.3g)",                                                          \
                      (what), (s).mean, (s).n, ex_, ((s).mean - ex_) / se_, se_);                  \
    } while (0)

#define ck_se_calibrated(s, what)                                                                  \
    do {                                                                                           \
        double rep_ = sqrt((s).se2 / (s).n), emp_ = tc_stat_sd(&(s));                              \
        ck_assert_msg(emp_ > 0 && rep_ / emp_ >= 0.8 && rep_ / emp_ <= 1.25,                       \
                      "%s: reported standard error %.4g vs spread across seeds "                   \
                      "%.4g (ratio %.3f)",                                                         \
                      (what), rep_, emp_, rep_ / emp_);                                            \
    } while (0)

/* The mean over seeds is at least k of its standard errors away from v. */
#define ck_far_from(s, v, k, what)                                                                 \
    do {                                                                                           \
        double se_ = tc_stat_se(&(s));                                                             \
        ck_assert_msg(fabs((s).mean - (v)) >= (k)*se_,                                             \
                      "%s: mean %.6g is only %.2f standard errors from %.6g", (what), (s).mean,    \
                      ((s).mean - (v)) / se_, (double)(v));                                        \
    } while (0)

/* ---- densities and quadrature ------------------------------------------------- */

static const double TC_HALF_LOG_2PI = 0.91893853320467274178;

/* log(1 - tanh^2 u) = 2 (log 2 - |u| - log1p(e^{-2|u|})): written
 * independently of core's expm1 form. */
static inline double tc_log1mt2(double u) {
    double a = fabs(u);
    return 2.0 * (log(2.0) - a - log1p(exp(-2.0 * a)));
}

/* E_{eps ~ N(0,1)}[h(eps)] by the trapezoid rule on [-12, 12]: for the
 * smooth integrands of these tests the error is far below 1e-12. */
static inline double tc_gauss_expect(double (*h)(double, void *), void *ctx) {
    const int n = 24000;
    const double a = -12.0, step = 24.0 / n;
    double s = 0.0;
    for (int i = 0; i <= n; i++) {
        double e = a + step * i, wgt = (i == 0 || i == n) ? 0.5 : 1.0;
        s += wgt * exp(-0.5 * e * e - TC_HALF_LOG_2PI) * h(e, ctx);
    }
    return s * step;
}

/* ---- runner --------------------------------------------------------------------
 * Check's fork mode (its default) runs each case in a child with the
 * timeout of CK_DEFAULT_TIMEOUT; the exit status is non-zero on failure. */
static inline int tc_run(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif
