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
    size_t ncs = d->type == GS_CATEGORICAL ? gs_cat_score_scratch(M, dim) : 0;
    size_t nl = !gs_vm_have_avx512()           ? 0
                : d->type == GS_CATEGORICAL    ? gs_lanes_scratch(dim, M)
                : d->type == GS_NORMAL         ? gs_lanes_log_prob_scratch(dim, M)
                                               : 0;
    size_t nd = 6 * md + 2 * M + 6 * dim + 4 * dim + 2 * md +
                gs_rng_normals_scratch(M, dim) + ncs + nl;
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
    w->cscratch = ncs ? p : NULL, p += ncs;
    w->lanes = nl && d->type == GS_CATEGORICAL ? p : NULL;
    w->lp_lanes = nl && d->type == GS_NORMAL ? p : NULL;
    p += nl;
    w->k = (int64_t *)p;
    return 0;
}

void gs_ws_free(gs_ws *w) {
    free(w->block);
    w->block = NULL;
}

/* ---- categorical ---------------------------------------------------------- */

double gs_cat_row(const double *z, size_t K, double *logp, double *p) {
    return gs_vm_cat(K, z, logp, p, NULL, NULL);
}

/* ---- continuous ----------------------------------------------------------- */

void gs_cont_params(const gs_dist *d, size_t b, gs_ws *w) {
    size_t D = d->dim;
    const double *sc = d->scale + b * D;
    /* The row's D scales at once through the vector exp or log. */
    if (d->scale_is_sigma) {
        memcpy(w->sigma, sc, D * sizeof *sc);
        gs_vm_log(D, sc, w->rho);
    } else {
        memcpy(w->rho, sc, D * sizeof *sc);
        gs_vm_exp(D, sc, w->sigma);
    }
    for (size_t i = 0; i < D; i++) {
        /* A multiply instead of a division per element; a sigma that over-
         * or underflowed keeps the division, whose inf/0 cases the error
         * paths rely on (1 / subnormal is inf, and 0 * inf NaN). */
        double r = 1.0 / w->sigma[i];
        w->isig[i] = isnormal(w->sigma[i]) && isnormal(r) ? r : 0.0;
    }
    gs_cont_bounds(d, w);
}

void gs_tanh_bounds(double low, double high, double *c, double *s) {
    double cc = 0.5 * (high + low), ss = 0.5 * (high - low);
    *c = isfinite(cc) ? cc : 0.5 * high + 0.5 * low;
    *s = isfinite(ss) ? ss : 0.5 * high - 0.5 * low;
}

void gs_cont_bounds(const gs_dist *d, gs_ws *w) {
    for (size_t i = 0; i < d->dim; i++) {
        if (d->type == GS_TANH_NORMAL && d->low) {
            gs_tanh_bounds(d->low[i], d->high[i], &w->c[i], &w->s[i]);
            w->logs[i] = log(w->s[i]);
        } else {
            w->c[i] = 0.0;
            w->s[i] = 1.0;
            w->logs[i] = 0.0;
        }
    }
}

/* Rows of up to this many points go through the lane kernel: its five
 * blocks of 8 M D doubles then stay within L2. */
enum { LANES_MAX_POINTS = 1024 };

double *gs_cont_lanes(const gs_dist *d, gs_ws *w, size_t M, const gs_noise *n, size_t rows,
                      gs_lanes_cont *lc) {
    size_t D = d->dim;
    if (d->type == GS_CATEGORICAL || !gs_vm_have_avx512() || rows < 8 || M * D > LANES_MAX_POINTS)
        return NULL;
    /* Without scratch the rows still go through the row loop. */
    double *p = malloc(gs_lanes_cont_scratch(D, M) * sizeof(double));
    if (!p) return NULL;
    gs_cont_bounds(d, w);
    int tanh_ = d->type == GS_TANH_NORMAL;
    *lc = (gs_lanes_cont){.D = D,
                          .M = M,
                          .tanh_ = tanh_,
                          .scale_is_sigma = d->scale_is_sigma,
                          .loc = d->loc,
                          .scale = d->scale,
                          .c = w->c,
                          .s = w->s,
                          .logs = w->logs,
                          .low = tanh_ ? d->low : NULL,
                          .high = tanh_ ? d->high : NULL,
                          .eps = n->eps,
                          .key = {n->rng.key[0], n->rng.key[1]},
                          /* in: loc, scale, eps, df/dx or dQ/da; out: x, the gradients, their se */
                          .stream = gs_stream_batch(d->rows, 3 * M * D + 2 * M + 6 * D)};
    return p;
}

int gs_cont_rows(const gs_lanes_cont *lc, double *ls, gs_row_fn row, const void *job, gs_ws *w,
                 size_t b, size_t r1, gs_error *err) {
    int rc = 0;
    if (ls) {
        size_t D = lc->D, MD = lc->M * lc->D;
        for (; b + 8 <= r1 && !rc; b += 8) {
            gs_prefetch_rows(lc->loc, D, b, r1);
            gs_prefetch_rows(lc->scale, D, b, r1);
            gs_prefetch_rows(lc->eps, MD, b, r1);
            gs_prefetch_rows(lc->gx, MD, b, r1);
            gs_prefetch_rows(lc->glp, lc->M, b, r1);
            gs_prefetch_rows(lc->dq, MD, b, r1);
            gs_prefetch_rows(lc->q, lc->M, b, r1);
            if (gs_lanes_cont_avx512(lc, b, 8, ls))
                for (size_t i = b; i < b + 8 && !rc; i++) rc = row(job, w, i, err);
        }
        if (lc->stream) gs_stream_fence();
        free(ls);
    }
    for (; b < r1 && !rc; b++) rc = row(job, w, b, err);
    return rc;
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
    if (D <= 8 && gs_vm_have_avx512())
        gs_vm_affine_avx512(w->M, D, mu, w->sigma, w->eps, w->u);
    else
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
    /* l = 0 - 0.5 e_0 e_0 [- log(1 - t_0^2)] - 0.5 e_1 e_1 ..., coordinate
     * by coordinate (the lanes, gs_lanes_cont_avx512.c, add each term as
     * they make it). */
    int tanh_ = d->type == GS_TANH_NORMAL;
    for (size_t m = 0; m < w->M; m++) {
        const double *e = w->eps + m * D;
        double l = 0.0;
        for (size_t i = 0; i < D; i++) {
            l -= 0.5 * e[i] * e[i];
            if (tanh_) l -= w->l1mt2[m * D + i];
        }
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

void gs_reduce_terms2(const double *g0, const double *g1, size_t M, size_t dim,
                      double *mean0, double *se0, double *mean1, double *se1) {
    if (gs_vm_have_avx512()) {
        gs_vm_reduce_cols2_avx512(g0, g1, M, dim, mean0, se0, mean1, se1);
        return;
    }
    gs_reduce_terms(g0, M, dim, mean0, se0);
    gs_reduce_terms(g1, M, dim, mean1, se1);
}

/* The mean and standard errors of g_mj = w_m (e_{k_m} - p)_j in O(M + K).
 * With W = sum_m w_m, wbar = W / M, d_m = w_m - wbar, and for column j the
 * samples S_j that drew j (n_j of them) and the others T_j (M - n_j):
 *   mean_j = (S_j's sum of w - p_j W) / M = (q_j ks_j - p_j Tw_j) / M,
 * where ks_j = sum over S_j of w, Tw_j = sum over T_j of w and q_j = 1 - p_j
 * = sum of the other p_i, and the deviation of g_mj from mean_j is
 *   q_j d_m + e_j    on S_j,  e_j = wbar - ks_j / M = Tw_j / M,
 *   -(c_j + p_j d_m) on T_j,  c_j = ks_j / M,
 * so the centred sum of squares of column j is, with a set's count n, the
 * mean mu and the centred sum of squares V of its d,
 *   n_S (q_j mu_S + e_j)^2 + q_j^2 V_S + n_T (c_j + p_j mu_T)^2 + p_j^2 V_T.
 * Every part is a sum of non-negative terms, and q_j, Tw_j and T_j's sums
 * are formed as sums over the other columns (suffix plus prefix), never as
 * a total minus column j. So nothing cancels where a trained policy lives,
 * p_j near 1 with most samples drawing j: q_j keeps its relative precision
 * (1 - p_j itself would be off by up to eps / q_j), a column no sample drew
 * gets exactly p_j^2 (sum of d^2), and one every sample drew exactly its
 * S part. (Expanding the square as sum g^2 - M mean^2 instead cancels
 * catastrophically there.) The only expansion left is V = sum d^2 - n mu^2
 * within a set, whose error is eps times that set's own sum of d^2, clamped
 * at 0. gs_lanes_avx512.c does the same operations in the same order, lane
 * by lane. */
size_t gs_cat_score_scratch(size_t M, size_t K) { return 7 * K + M; }

void gs_cat_score_reduce(const double *restrict w, const int64_t *restrict k,
                         size_t M, const double *restrict p, size_t K,
                         double *restrict mean, double *restrict se,
                         double *restrict scratch) {
    double *ks = scratch, *nn = ks + K, *qd = nn + K, *sks = qd + K, *ssd = sks + K,
           *sqd = ssd + K, *sp = sqd + K, *dev = sp + K;
    double W = 0.0, fM = (double)M;
    for (size_t m = 0; m < M; m++) W += w[m];
    double wbar = W / fM;
    for (size_t m = 0; m < M; m++) dev[m] = w[m] - wbar;
    for (size_t j = 0; j < 3 * K; j++) ks[j] = 0.0;
    for (size_t m = 0; m < M; m++) {
        size_t j = (size_t)k[m];
        ks[j] += w[m];
        nn[j] += 1.0;
        qd[j] += dev[m] * dev[m];
    }
    double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
    for (size_t j = K; j-- > 0;) {
        sks[j] = a0, ssd[j] = a1, sqd[j] = a2, sp[j] = a3;
        a0 += ks[j];
        a1 += ks[j] - nn[j] * wbar;
        a2 += qd[j];
        a3 += p[j];
    }
    /* Multiplications by 1 / M, 1 / ((M - 1) M), 1 / n_S and 1 / n_T (the
     * lane kernels look the last two up, the same correctly rounded values). */
    double iM = 1.0 / fM, iF = 1.0 / (M > 1 ? (double)(M - 1) * fM : 1.0);
    a0 = a1 = a2 = a3 = 0.0;
    for (size_t j = 0; j < K; j++) {
        double pj = p[j], kj = ks[j], n = nn[j];
        double sd = kj - n * wbar, q2 = qd[j];
        double Tw = a0 + sks[j], q = a3 + sp[j];
        mean[j] = (q * kj - pj * Tw) * iM;
        if (se) {
            double sT = a1 + ssd[j], qT = a2 + sqd[j];
            double nT = fM - n, c = kj * iM, e0 = Tw * iM;
            double muS = n > 0.0 ? sd * (1.0 / n) : 0.0, muT = nT > 0.0 ? sT * (1.0 / nT) : 0.0;
            double xS = q * muS + e0, xT = pj * muT + c;
            double vS = q2 - sd * muS, vT = qT - sT * muT;
            vS = vS > 0.0 ? vS : 0.0;
            vT = vT > 0.0 ? vT : 0.0;
            double ss = (n * (xS * xS) + (q * q) * vS) + (nT * (xT * xT) + (pj * pj) * vT);
            se[j] = M > 1 ? sqrt(ss * iF) : 0.0;
            a1 += sd;
            a2 += q2;
        }
        a0 += kj;
        a3 += pj;
    }
}

long gs_first_nonfinite(const double *a, size_t n) {
    /* Almost always everything is finite: first a branch-free pass that
     * vectorises even on SSE2 (no 64-bit compare there): an exponent field
     * plus one carries into the sign bit exactly when it is all ones (inf
     * or NaN). Only if that found something, the scan for the first index. */
    const uint64_t EXP = 0x7ff0000000000000ULL, ONE = 0x0010000000000000ULL;
    uint64_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t b;
        memcpy(&b, a + i, sizeof b);
        bad |= (b & EXP) + ONE;
    }
    if (!(bad >> 63)) return -1;
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

gs_input gs_cont_blame(const gs_dist *d, const gs_ws *w, size_t b, long col, long *at) {
    size_t D = d->dim, i0 = col < 0 ? 0 : (size_t)col, i1 = col < 0 ? D : (size_t)col + 1;
    double ml = 0.0, ms = 0.0;
    long il = (long)i0, is = (long)i0;
    for (size_t i = i0; i < i1; i++) {
        double l = d->type == GS_TANH_NORMAL ? fabs(d->loc[b * D + i]) : 0.0;
        if (l > ml) ml = l, il = (long)i;
        if (w->sigma[i] > ms) ms = w->sigma[i], is = (long)i;
    }
    /* A tiny sigma (1 / sigma large) counts through the blame on the scale. */
    int loc = ml > ms && ml > 1.0;
    if (at) *at = loc ? il : is;
    return loc ? GS_IN_LOC : GS_IN_SCALE;
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
                return gs_fail(err, GS_ENONFINITE,
                               input == GS_IN_LOC ? gs_cont_blame(d, w, b, (long)i, NULL) : input,
                               (long)b, -1, (long)i);
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
