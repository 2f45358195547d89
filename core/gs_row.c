/* gs_row.c - per-row building blocks: workspace, categorical and tanh maths. */
#include "gs_row.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gs_vmath.h"
#include "gs_vmath_impl.h"

static const double HALF_LOG_2PI = 0.91893853320467274178;

/* ---- workspace ------------------------------------------------------------ */

int gs_ws_init(gs_ws *w, const gs_dist *d, size_t M) {
    memset(w, 0, sizeof *w);
    size_t dim = d->dim, md = M * dim;
    size_t nd = 6 * md + 2 * M + 6 * dim + 4 * dim + 2 * md +
                gs_rng_normals_scratch(M, dim);
    double *p = malloc(nd * sizeof(double) + M * sizeof(int64_t) + 64);
    if (!p) return GS_ENOMEM;
    w->block = p;
    w->M = M;
    w->dim = dim;
    double **slots[] = {&w->eps, &w->u, &w->t, &w->omt2, &w->l1mt2, &w->tmp};
    for (size_t i = 0; i < sizeof slots / sizeof *slots; i++, p += md)
        *slots[i] = p;
    w->lp = p, p += M;
    w->w = p, p += M;
    double **dims[] = {&w->sigma, &w->rho, &w->c, &w->s, &w->logs, &w->isig,
                       &w->logp, &w->p, &w->cdf, &w->ksum};
    for (size_t i = 0; i < sizeof dims / sizeof *dims; i++, p += dim)
        *dims[i] = p;
    w->g0 = p, p += md;
    w->g1 = p, p += md;
    w->nscratch = p, p += gs_rng_normals_scratch(M, dim);
    w->k = (int64_t *)p;
    return 0;
}

void gs_ws_free(gs_ws *w) {
    free(w->block);
    w->block = NULL;
}

/* ---- categorical ---------------------------------------------------------- */

double gs_cat_row(const double *z, size_t K, double *logp, double *p) {
    return gs_vm_cat(K, z, logp, p);
}

/* ---- continuous ----------------------------------------------------------- */

void gs_cont_params(const gs_dist *d, size_t b, gs_ws *w) {
    size_t D = d->dim;
    const double *sc = d->scale + b * D;
    for (size_t i = 0; i < D; i++) {
        if (d->scale_is_sigma) {
            w->sigma[i] = sc[i];
            w->rho[i] = log(sc[i]);
        } else {
            w->rho[i] = sc[i];
            w->sigma[i] = exp(sc[i]);
        }
        /* A multiply instead of a division per element; a sigma that over-
         * or underflowed keeps the division, whose inf/0 cases the error
         * paths rely on (1 / subnormal is inf, and 0 * inf NaN). */
        double r = 1.0 / w->sigma[i];
        w->isig[i] = isnormal(w->sigma[i]) && isnormal(r) ? r : 0.0;
        if (d->type == GS_TANH_NORMAL && d->low) {
            w->c[i] = 0.5 * (d->high[i] + d->low[i]);
            w->s[i] = 0.5 * (d->high[i] - d->low[i]);
            w->logs[i] = log(w->s[i]);
        } else {
            w->c[i] = 0.0;
            w->s[i] = 1.0;
            w->logs[i] = 0.0;
        }
    }
}

void gs_cont_noise(const gs_dist *d, const gs_noise *n, size_t b, gs_ws *w) {
    size_t md = w->M * d->dim;
    if (n->eps)
        memcpy(w->eps, n->eps + b * md, md * sizeof(double));
    else
        gs_rng_normals(&n->rng, b, 0, w->M, d->dim, w->eps, w->nscratch);
}

void gs_cont_from_eps(const gs_dist *d, size_t b, gs_ws *w) {
    size_t D = d->dim;
    const double *mu = d->loc + b * D;
    for (size_t m = 0; m < w->M; m++)
        for (size_t i = 0; i < D; i++)
            w->u[m * D + i] = mu[i] + w->sigma[i] * w->eps[m * D + i];
    gs_cont_finish(d, w);
}

size_t gs_cont_from_x(const gs_dist *d, size_t b, const double *x, gs_ws *w) {
    size_t D = d->dim;
    const double *mu = d->loc + b * D;
    double *restrict u = w->u, *restrict eps = w->eps;
    if (d->type == GS_TANH_NORMAL) {
        for (size_t m = 0; m < w->M; m++)
            for (size_t i = 0; i < D; i++) {
                size_t j = m * D + i;
                double y = (x[j] - w->c[i]) / w->s[i];
                /* a on or past a bound has density 0 (log p = -inf). */
                if (!(y > -1.0 && y < 1.0)) return j + 1;
                u[j] = atanh(y);
            }
    } else {
        memcpy(u, x, w->M * D * sizeof *u);
    }
    /* One test per row, not per element, keeps the inner loops branch-free
     * (vectorised): multiply when every sigma has a finite reciprocal. */
    int mul = 1;
    for (size_t i = 0; i < D; i++) mul &= w->isig[i] != 0.0;
    const double *restrict is = w->isig, *restrict sg = w->sigma;
    for (size_t m = 0; m < w->M; m++) {
        const double *restrict um = u + m * D;
        double *restrict em = eps + m * D;
        if (mul)
            for (size_t i = 0; i < D; i++) em[i] = (um[i] - mu[i]) * is[i];
        else
            for (size_t i = 0; i < D; i++) em[i] = (um[i] - mu[i]) / sg[i];
    }
    gs_cont_finish(d, w);
    return 0;
}

/* tanh_normal: t, 1 - t^2 and log(1 - t^2) of u by gs_vm_tanh_parts (the
 * forms that keep precision at both ends), then the log-densities. */
void gs_cont_finish(const gs_dist *d, gs_ws *w) {
    size_t D = d->dim, md = w->M * D;
    if (d->type == GS_TANH_NORMAL)
        gs_vm_tanh_parts(md, w->u, w->tmp, w->t, w->omt2, w->l1mt2);
    double base = 0.0;
    for (size_t i = 0; i < D; i++) base -= w->rho[i] + HALF_LOG_2PI;
    if (d->type == GS_TANH_NORMAL)
        for (size_t i = 0; i < D; i++) base -= w->logs[i];
    for (size_t m = 0; m < w->M; m++) {
        const double *e = w->eps + m * D;
        double l = 0.0;
        for (size_t i = 0; i < D; i++) l -= 0.5 * e[i] * e[i];
        if (d->type == GS_TANH_NORMAL)
            for (size_t i = 0; i < D; i++) l -= w->l1mt2[m * D + i];
        w->lp[m] = l + base;
    }
}

void gs_cont_points(const gs_dist *d, const gs_ws *w, double *x) {
    size_t D = d->dim, md = w->M * D;
    if (d->type != GS_TANH_NORMAL) {
        memcpy(x, w->u, md * sizeof(double));
        return;
    }
    for (size_t m = 0; m < w->M; m++)
        for (size_t i = 0; i < D; i++) {
            size_t j = m * D + i;
            double a = w->c[i] + w->s[i] * w->t[j];
            /* c + s tanh u can round one ulp past a bound (API.md §11). */
            if (d->low) {
                a = a < d->low[i] ? d->low[i] : a;
                a = a > d->high[i] ? d->high[i] : a;
            }
            x[j] = a;
        }
}

/* ---- statistics ----------------------------------------------------------- */

double gs_mean_se(const double *v, size_t n, size_t stride, double *se) {
    double s = 0.0;
    for (size_t m = 0; m < n; m++) s += v[m * stride];
    double mean = s / (double)n;
    if (se) {
        double ss = 0.0;
        for (size_t m = 0; m < n; m++) {
            double dv = v[m * stride] - mean;
            ss += dv * dv;
        }
        *se = n > 1 ? sqrt(ss / (double)(n - 1) / (double)n) : 0.0;
    }
    return mean;
}

void gs_baseline_apply(gs_baseline b, const double *v, size_t n, double *w) {
    if (b == GS_BASELINE_NONE || n < 2) {
        if (w != v) memcpy(w, v, n * sizeof *w);
        return;
    }
    double mean = gs_mean_se(v, n, 1, NULL), f = (double)n / (double)(n - 1);
    for (size_t m = 0; m < n; m++) w[m] = f * (v[m] - mean);
}

void gs_reduce_terms(const double *restrict g, size_t M, size_t dim,
                     double *restrict mean, double *restrict se) {
    if (gs_vm_have_avx512()) {
        gs_vm_reduce_cols_avx512(g, M, dim, mean, se);
        return;
    }
    for (size_t i = 0; i < dim; i++) mean[i] = 0.0;
    for (size_t m = 0; m < M; m++)
        for (size_t i = 0; i < dim; i++) mean[i] += g[m * dim + i];
    for (size_t i = 0; i < dim; i++) mean[i] /= (double)M;
    if (!se) return;
    /* se[] accumulates the centred sums of squares, then becomes the se. */
    for (size_t i = 0; i < dim; i++) se[i] = 0.0;
    for (size_t m = 0; m < M; m++)
        for (size_t i = 0; i < dim; i++) {
            double dv = g[m * dim + i] - mean[i];
            se[i] += dv * dv;
        }
    for (size_t i = 0; i < dim; i++)
        se[i] = M > 1 ? sqrt(se[i] / (double)(M - 1) / (double)M) : 0.0;
}

/* ss[j] += (0 - c[j] - p[j] dm)^2 for j in [j0, j1): the squared deviation
 * of a column sample m did not draw. */
static inline void cat_sq_acc(double *restrict ss, const double *restrict c,
                              const double *restrict p, double dm, size_t j0,
                              size_t j1) {
    for (size_t j = j0; j < j1; j++) {
        double v = 0.0 - c[j] - p[j] * dm;
        ss[j] += v * v;
    }
}

/* With W = sum_m w_m, S_j = the sum of w_m over the samples that drew j,
 * and d_m = w_m - W / M:
 *   mean_j          = (S_j - p_j W) / M
 *   g_mj - mean_j   = w_m [k_m = j] - S_j / M - p_j d_m
 * The centred squares are summed term by term, as gs_reduce_terms would,
 * the columns side by side (vectorised): expanding the square into O(M + K)
 * moments instead cancels badly when p_j is near 1 and most samples drew
 * j, a common state of a trained policy. */
void gs_cat_score_reduce(const double *restrict w, const int64_t *restrict k,
                         size_t M, const double *restrict p, size_t K,
                         double *restrict mean, double *restrict se,
                         double *restrict ksum, double *restrict dev) {
    double W = 0.0, fM = (double)M;
    for (size_t j = 0; j < K; j++) ksum[j] = 0.0;
    for (size_t m = 0; m < M; m++) {
        W += w[m];
        ksum[k[m]] += w[m];
    }
    for (size_t j = 0; j < K; j++) mean[j] = (ksum[j] - p[j] * W) / fM;
    if (!se) return;
    double wbar = W / fM;
    for (size_t m = 0; m < M; m++) dev[m] = w[m] - wbar;
    /* ksum becomes S_j / M; se accumulates the sums of squares, divided
     * once by (M - 1) M where gs_mean_se divides twice. */
    double f = M > 1 ? (double)(M - 1) * fM : 1.0;
    for (size_t j = 0; j < K; j++) ksum[j] /= fM;
    if (gs_vm_have_avx512()) {
        gs_vm_cat_sq_avx512(w, k, dev, M, ksum, p, K, f, se);
        return;
    }
    for (size_t j = 0; j < K; j++) se[j] = 0.0;
    for (size_t m = 0; m < M; m++) {
        size_t km = (size_t)k[m];
        double wm = w[m], dm = dev[m];
        /* The drawn column apart: no per-column test in the vector loops
         * (SSE2 has no 64-bit compare). */
        cat_sq_acc(se, ksum, p, dm, 0, km);
        double v = wm - ksum[km] - p[km] * dm;
        se[km] += v * v;
        cat_sq_acc(se, ksum, p, dm, km + 1, K);
    }
    for (size_t j = 0; j < K; j++) se[j] = sqrt(se[j] / f);
    if (M < 2)
        for (size_t j = 0; j < K; j++) se[j] = 0.0;
}

long gs_first_nonfinite(const double *a, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(a[i])) return (long)i;
    return -1;
}

int gs_fail_row(gs_error *err, const gs_ws *w, gs_input input, size_t b,
                long sample, long col) {
    if (w && col >= 0 && (size_t)col < w->dim && w->sigma) {
        double s = w->sigma[col];
        if (!isnormal(s)) return gs_fail(err, GS_ENONFINITE, GS_IN_SCALE, (long)b, -1, col);
    }
    /* A result without a column (an entropy, a log-density) is blamed on
     * the first column whose sigma over- or underflowed, if any: with
     * log_scale 800 a tanh_normal's draws saturate to finite values but
     * its log-density is infinite (found by tests/test_dist.c and
     * tests/test_entropy.c, which saw `loc` blamed, or column 0). */
    if (w && col < 0 && w->sigma)
        for (size_t i = 0; i < w->dim; i++)
            if (!isnormal(w->sigma[i]))
                return gs_fail(err, GS_ENONFINITE, GS_IN_SCALE, (long)b, -1, (long)i);
    return gs_fail(err, GS_ENONFINITE, input, (long)b, sample, col);
}

int gs_fail_lp(gs_error *err, const gs_dist *d, const gs_ws *w, int caller_eps,
               gs_input input, size_t b, size_t m) {
    size_t D = w->dim;
    for (size_t i = 0; i < D; i++)
        if (!isnormal(w->sigma[i]))
            return gs_fail(err, GS_ENONFINITE, GS_IN_SCALE, (long)b, -1, (long)i);
    for (size_t i = 0; i < D; i++) {
        double e = w->eps[m * D + i];
        if (!isfinite(e * e))
            return gs_fail(err, GS_ENONFINITE, caller_eps ? GS_IN_EPS : input, (long)b,
                           caller_eps ? (long)m : -1, (long)i);
    }
    if (d->type == GS_TANH_NORMAL)
        for (size_t i = 0; i < D; i++)
            if (!isfinite(w->l1mt2[m * D + i]))
                return gs_fail(err, GS_ENONFINITE, input, (long)b, -1, (long)i);
    return gs_fail(err, GS_ENONFINITE, input, (long)b, (long)m, -1);
}

void gs_scale_to_sigma(const gs_dist *d, const gs_ws *w, double *g1,
                       double *se1) {
    if (!d->scale_is_sigma || !g1) return;
    for (size_t i = 0; i < d->dim; i++) {
        g1[i] /= w->sigma[i];
        if (se1) se1[i] /= w->sigma[i];
    }
}

void gs_export_terms(const gs_dist *d, const gs_ws *w, size_t b,
                     const gs_pgrad *terms) {
    if (!terms || !terms->p0) return;
    size_t D = d->dim, md = w->M * D;
    memcpy(terms->p0 + b * md, w->g0, md * sizeof(double));
    if (d->type == GS_CATEGORICAL) return;
    double *t1 = terms->p1 + b * md;
    memcpy(t1, w->g1, md * sizeof(double));
    if (d->scale_is_sigma)
        for (size_t j = 0; j < md; j++) t1[j] /= w->sigma[j % D];
}
