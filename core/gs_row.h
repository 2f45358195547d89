/* gs_row.h - per-row building blocks shared by the kernels (internal). */
#ifndef GS_ROW_H
#define GS_ROW_H

#include <stddef.h>
#include <stdint.h>

#include "gs_dist.h"
#include "gs_vmath_impl.h"

/* Scratch for one row, sized once per kernel call for M samples of a
 * distribution of dimension dim; a single allocation, freed by
 * gs_ws_free (which accepts a zeroed workspace). */
typedef struct {
    size_t M, dim;
    /* continuous, M x D each */
    double *eps, *u, *t, *omt2, *l1mt2, *tmp;
    /* per sample */
    double *lp, *w;
    int64_t *k;
    /* per dimension: sigma, log sigma, tanh centre c, half-width s, log s,
     * and 1 / sigma (0 when sigma is not normal: divide instead) */
    double *sigma, *rho, *c, *s, *logs, *isig;
    /* categorical: log p, p, the cumulative sums of p for draws, sums of
     * weights per action (K each) */
    double *logp, *p, *cdf, *ksum;
    /* per-sample gradient terms, M x dim each */
    double *g0, *g1;
    double *nscratch;
    /* categorical: scratch of gs_cat_score_reduce, and of the lane kernels
     * of gs_lanes_avx512.c (NULL unless they may run); normal: scratch of
     * gs_lanes_log_prob_normal_avx512 (NULL unless it may run) */
    double *cscratch, *lanes, *lp_lanes;
    void *block;
} gs_ws;

int gs_ws_init(gs_ws *w, const gs_dist *d, size_t M);
void gs_ws_free(gs_ws *w);

/* Categorical row: logp = z - logsumexp(z) (max subtracted first), p =
 * exp(logp). Returns the entropy -sum p log p, in which p = 0 adds 0
 * (gs_vm_cat). */
double gs_cat_row(const double *z, size_t K, double *logp, double *p);

/* Continuous row b: fills sigma, rho, c, s, logs from the parameters. */
void gs_cont_params(const gs_dist *d, size_t b, gs_ws *w);

/* The part of gs_cont_params common to every row: c, s and logs (the
 * tanh_normal's centre, half-width and its log; 0, 1, 0 without bounds). */
void gs_cont_bounds(const gs_dist *d, gs_ws *w);

/* Scratch of the continuous lane kernel gs_lanes_cont_avx512 when it may
 * run for a range of `rows` rows (AVX-512, a whole group of eight, not too
 * many points per row), else NULL; gs_cont_rows frees it. Fills lc's
 * distribution and noise fields from d, w (gs_cont_bounds first) and n. */
double *gs_cont_lanes(const gs_dist *d, gs_ws *w, size_t M, const gs_noise *n, size_t rows,
                      gs_lanes_cont *lc);

/* Row b of a kernel's job into its outputs: 0 or the failure's status. */
typedef int (*gs_row_fn)(const void *job, gs_ws *w, size_t b, gs_error *err);

/* Rows [b, r1) of a continuous kernel: with ls (gs_cont_lanes' scratch,
 * which this frees), whole groups of eight rows through the lane kernel lc
 * and a group with an output that is not finite again through row, which
 * names the fault; the other rows through row. The same bits either way
 * (tests/test_core_util.h, tc_lanes_vs_rows). Returns 0 or the status of
 * the first failing row. */
int gs_cont_rows(const gs_lanes_cont *lc, double *ls, gs_row_fn row, const void *job, gs_ws *w,
                 size_t b, size_t r1, gs_error *err);

/* Noise of row b into w->eps (caller's eps, or generated). */
void gs_cont_noise(const gs_dist *d, const gs_noise *n, size_t b, gs_ws *w);

/* From w->eps: u = mu + sigma eps, then gs_cont_finish. */
void gs_cont_from_eps(const gs_dist *d, size_t b, gs_ws *w);

/* From points x of row b (M x D): u (atanh of the rescaled point for
 * tanh_normal), eps = (u - mu) / sigma, then gs_cont_finish. Returns 0, or
 * the flat index m * D + i + 1 of the first point outside the support. */
size_t gs_cont_from_x(const gs_dist *d, size_t b, const double *x, gs_ws *w);

/* From w->u and w->eps: t = tanh u, omt2 = 1 - t^2, l1mt2 = log(1 - t^2)
 * (tanh_normal only) and lp[m] = log p of sample m. */
void gs_cont_finish(const gs_dist *d, gs_ws *w);

/* The sample points: u (normal) or c + s tanh u clipped to [low, high]. */
void gs_cont_points(const gs_dist *d, const gs_ws *w, double *x);

/* Mean of n values with stride, and (if se) the standard error
 * std / sqrt(n) with the n - 1 sample variance, two-pass. */
double gs_mean_se(const double *v, size_t n, size_t stride, double *se);

/* Leave-one-out centring: w[m] = v[m] - mean of the others
 * = n / (n - 1) (v[m] - mean(v)). With baseline NONE w = v. */
void gs_baseline_apply(gs_baseline b, const double *v, size_t n, double *w);

/* Reduces M x dim terms to their mean (into mean[0..dim)) and, when se is
 * not NULL, standard errors: per column exactly gs_mean_se's arithmetic
 * (same sums in the same order), but swept row by row so the columns'
 * sums run side by side in vector registers instead of down a stride. */
void gs_reduce_terms(const double *restrict g, size_t M, size_t dim,
                     double *restrict mean, double *restrict se);
/* gs_reduce_terms of g0 into (mean0, se0) and of g1 into (mean1, se1), the
 * same bits as two calls; se0 and se1 are both NULL or both not. On AVX-512
 * the two arrays' sums run in one sweep, whose independent chains overlap. */
void gs_reduce_terms2(const double *g0, const double *g1, size_t M, size_t dim,
                      double *mean0, double *se0, double *mean1, double *se1);

/* Mean (into mean[0..K)) and, when se is not NULL, standard errors of the
 * categorical score terms g_mj = w[m] (e_{k[m]} - p)_j of M samples, in
 * O(M + K) without forming the M x K terms, and without the cancellation of
 * an expanded square (gs_row.c derives it). scratch holds
 * gs_cat_score_scratch(M, K) doubles. */
size_t gs_cat_score_scratch(size_t M, size_t K);
void gs_cat_score_reduce(const double *restrict w, const int64_t *restrict k,
                         size_t M, const double *restrict p, size_t K,
                         double *restrict mean, double *restrict se,
                         double *restrict scratch);

/* Index of the first non-finite value of a[0..n), or -1. */
long gs_first_nonfinite(const double *a, size_t n);

/* Blames a non-finite result of row b, column col: the scale when that
 * column's sigma is zero, subnormal or infinite (exp(log_scale) over- or
 * underflowed), else `input`. For col < 0 (a per-row or per-sample
 * result) the first column of the row with such a sigma is blamed. */
int gs_fail_row(gs_error *err, const gs_ws *w, gs_input input, size_t b,
                long sample, long col);

/* The input to blame when a continuous row's results overflow with no
 * other cause found: they grow with sigma and 1 / sigma (a normal's never
 * with loc), and a tanh_normal's also with |loc| through u = loc + sigma
 * eps. Column i (col < 0: every column) is loc's when |loc_i| is larger
 * than every sigma considered, else the scale's; *at (may be NULL) gets
 * the column of the largest of them. w holds row b's sigma. */
gs_input gs_cont_blame(const gs_dist *d, const gs_ws *w, size_t b, long col, long *at);

/* Blames the non-finite log-density w->lp[m] of row b on the coordinate
 * that made it so: a sigma that over- or underflowed (GS_IN_SCALE), an eps
 * whose square overflows (GS_IN_EPS with sample m when caller_eps, the
 * noise being the caller's, else `input`), a tanh_normal u so large that
 * log(1 - tanh^2 u) is -inf (that column's loc or scale, gs_cont_blame,
 * when `input` is GS_IN_LOC); else `input`, no column. */
int gs_fail_lp(gs_error *err, const gs_dist *d, const gs_ws *w, int caller_eps,
               gs_input input, size_t b, size_t m);

/* Copies the row's per-sample terms w->g0 (and g1) into terms (rows x M x
 * dim) when terms->p0 is set, the scale's converted to d/dsigma. */
void gs_export_terms(const gs_dist *d, const gs_ws *w, size_t b,
                     const gs_pgrad *terms);

/* Divides the scale gradient (and se) by sigma when the caller sent sigma. */
void gs_scale_to_sigma(const gs_dist *d, const gs_ws *w, double *g1,
                       double *se1);

#endif
