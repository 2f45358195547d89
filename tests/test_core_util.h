/* test_core_util.h - helpers of the core Check suites: tolerances, FD, seed statistics. */
#ifndef TEST_CORE_UTIL_H
#define TEST_CORE_UTIL_H

#include <check.h>
#include <float.h>
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

/* n doubles on a cache line (as the server's buffers are, so that big
 * batches stream their outputs), every byte 0xee (no kernel writes that
 * value); free() them. */
static inline double *tc_big(size_t n) {
    double *p = aligned_alloc(64, (n * sizeof(double) + 63) & ~(size_t)63);
    ck_assert_ptr_nonnull(p);
    memset(p, 0xee, n * sizeof(double));
    return p;
}

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

/* ---- lanes against rows ---------------------------------------------------------
 * On AVX-512 the continuous kernels take whole groups of eight rows in
 * vector lanes (gs_lanes_cont_avx512.c) and single rows through the row
 * loop. tc_lanes_vs_rows runs a kernel over TC_LB rows at once (groups from
 * row 0, five rows left to the row loop), as rows 0-2 then 3-20 (groups
 * from row 3) and row by row (all in the row loop), over normal and
 * tanh_normal (bounds or not), log_scale and scale, D of 1, 3, 6 and 9, M
 * of 1, 2, 7 and 16, noise from the seed and the caller's (with zeros of
 * both signs), locs of -0 and +-40 (tanh saturated), extreme scales: every
 * output byte for byte; and with row 10 failing (its scale overflows, and
 * with the caller's noise a sample's eps too; or the inputs of its points
 * and samples are the largest double), the same error from all three. */
enum { TC_LB = 21, TC_FAIL_ROW = 10 };

typedef struct {
    gs_dist dist;
    size_t M;
    const double *eps; /* the caller's noise, TC_LB x M x D, or NULL: the seed's */
    gs_rng rng;
    const double *in, *in_m; /* an input per point (TC_LB x M x D) and per sample (TC_LB x M) */
} tc_lanes_case;

/* Outputs, each array large enough for TC_LB rows; a runner fills those its kernel makes. */
typedef struct {
    double *x, *lp, *r0, *r1, *r2, *r3, *g0, *g1, *s0, *s1;
} tc_lanes_out;

typedef int (*tc_lanes_run)(const tc_lanes_case *c, size_t r0, size_t r1, const tc_lanes_out *o,
                            gs_error *err);

static inline void tc_lanes_vs_rows(tc_lanes_run run, int tanh_only, int has_inputs) {
    static const double ext[] = {-20.0, -5.0, 0.0, 5.0, 20.0};
    static const double LOW[9] = {-2.0, 0.0, -1.0, -3.0, 1.0, -0.5, -2.0, 0.0, -8.0};
    static const double HIGH[9] = {2.0, 3.0, 1.0, 0.5, 4.0, 0.5, 6.0, 1e-3, 8.0};
    static const size_t DS[] = {1, 3, 6, 9}, MS[] = {1, 2, 7, 16};
    enum { MD = 9 * 16, N = TC_LB * MD };
    static double loc[TC_LB * 9], sc[TC_LB * 9], eps[N], in[N], in_m[TC_LB * 16];
    static double a[3][10][N];
    int nfail = 0, ninput = 0;
    for (int v = tanh_only ? 2 : 0; v < 6; v++)
        for (size_t di = 0; di < 4; di++)
            for (size_t mi = 0; mi < 4; mi++)
                for (int caller = 0; caller < 2; caller++)
                    for (int fail = 0; fail < 3; fail++) {
                        size_t D = DS[di], M = MS[mi], L = M * D;
                        int sig = v & 1, tanh_ = v >= 2, bounds = v >= 4;
                        for (size_t j = 0; j < TC_LB * D; j++) {
                            double ls = j % 7 == 3 ? ext[j % 5] : 0.8 * sin(0.9 * j);
                            loc[j] = j % 11 == 5 ? 40.0 * cos(1.0 * j)
                                     : j % 13 == 4 ? -0.0
                                                   : 2.0 * cos(0.3 * j);
                            sc[j] = sig ? exp(ls) : ls;
                        }
                        for (size_t j = 0; j < TC_LB * L; j++) {
                            eps[j] = j % 17 == 1 ? 0.0 : j % 19 == 2 ? -0.0 : 2.5 * sin(0.61 * j);
                            in[j] = cos(0.23 * j);
                        }
                        for (size_t j = 0; j < TC_LB * M; j++) in_m[j] = 0.5 * sin(0.7 * j);
                        if (fail == 1) {
                            sc[TC_FAIL_ROW * D + D / 2] = sig ? INFINITY : 800.0;
                            /* The caller's noise fails too (its square overflows). */
                            if (caller) eps[(TC_FAIL_ROW * M + M - 1) * D] = 1e200;
                        }
                        if (fail == 2) {
                            for (size_t j = 0; j < L; j++) in[TC_FAIL_ROW * L + j] = DBL_MAX;
                            for (size_t m = 0; m < M; m++) in_m[TC_FAIL_ROW * M + m] = DBL_MAX;
                        }
                        tc_lanes_case c = {
                            .dist = {.type = tanh_ ? GS_TANH_NORMAL : GS_NORMAL, .rows = TC_LB,
                                     .dim = D, .loc = loc, .scale = sc, .scale_is_sigma = sig,
                                     .low = bounds ? LOW : NULL, .high = bounds ? HIGH : NULL},
                            .M = M, .eps = caller ? eps : NULL, .in = in, .in_m = in_m};
                        gs_rng_init(&c.rng, 40 + (uint64_t)v);
                        /* Runs: all rows at once (groups from row 0), rows 0-2
                         * then 3-20 (groups from row 3), row by row. */
                        gs_error e[3] = {{0}, {0}, {0}};
                        int rc[3] = {0, 0, 0};
                        for (int k = 0; k < 3; k++) {
                            memset(a[k], 0xee, sizeof a[k]);
                            tc_lanes_out o = {a[k][0], a[k][1], a[k][2], a[k][3], a[k][4],
                                              a[k][5], a[k][6], a[k][7], a[k][8], a[k][9]};
                            if (k == 0) rc[0] = run(&c, 0, TC_LB, &o, &e[0]);
                            if (k == 1 && !(rc[1] = run(&c, 0, 3, &o, &e[1])))
                                rc[1] = run(&c, 3, TC_LB, &o, &e[1]);
                            for (size_t b = 0; k == 2 && b < TC_LB && !rc[2]; b++)
                                rc[2] = run(&c, b, b + 1, &o, &e[2]);
                        }
                        /* A normal's log_scale of 800 is no fault without the
                         * caller's noise: its entropy is finite; nor are inputs
                         * at the largest double for a kernel without inputs,
                         * or one whose terms stay finite. */
                        ck_assert_msg(rc[0] == rc[2] && rc[1] == rc[2] &&
                                          (rc[0] == 0 || (fail && rc[0] == GS_ENONFINITE)),
                                      "v %d D %zu M %zu caller %d fail %d: rc %d, %d and %d", v,
                                      D, M, caller, fail, rc[0], rc[1], rc[2]);
                        nfail += fail == 1 && rc[0] != 0;
                        ninput += fail == 2 && rc[0] != 0;
                        for (int k = 0; k < 2; k++) {
                            if (rc[0]) {
                                ck_assert_int_eq(e[k].row, TC_FAIL_ROW);
                                ck_assert(e[k].status == e[2].status && e[k].input == e[2].input &&
                                          e[k].row == e[2].row && e[k].sample == e[2].sample &&
                                          e[k].col == e[2].col);
                                continue;
                            }
                            for (int j = 0; j < 10; j++)
                                ck_assert_msg(memcmp(a[k][j], a[2][j], sizeof a[k][j]) == 0,
                                              "v %d D %zu M %zu caller %d: output %d of run %d "
                                              "differs from the row loop's",
                                              v, D, M, caller, j, k);
                        }
                    }
    /* Most failing cases fail (all but the normal's log_scale overflow
     * with the seed's noise, for the entropy). */
    ck_assert_int_ge(nfail, (tanh_only ? 4 : 6) * 4 * 4 * 2 - 4 * 4);
    if (has_inputs) ck_assert_int_gt(ninput, 0);
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
