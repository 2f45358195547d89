/* gs_estim.c - entropy estimators and the pathwise / score gradients of E[f]. */
#include "gs_estim.h"

#include <assert.h>
#include <math.h>
#include <string.h>

#include "gs_row.h"
#include "gs_vmath.h"
#include "gs_vmath_impl.h"

/* ½ log(2 pi e): the entropy of a standard normal coordinate. */
static const double HALF_LOG_2PIE = 1.41893853320467274178;

gs_estimator gs_entropy_auto(gs_dist_type t) {
    return t == GS_TANH_NORMAL ? GS_EST_REPARAM : GS_EST_EXACT;
}

int gs_entropy_supported(gs_dist_type t, gs_estimator e) {
    if (e == GS_EST_EXACT) return t != GS_TANH_NORMAL;
    if (e == GS_EST_REPARAM) return t != GS_CATEGORICAL;
    return 1;
}

/* ---- shared pieces ---------------------------------------------------------- */

/* Per-sample score terms wt[m] * dl(x_m)/dtheta into w->g0 (and w->g1), x
 * held fixed: categorical e_k - p; continuous eps / sigma and eps^2 - 1. */
static void score_terms(const gs_dist *d, gs_ws *w, const double *wt) {
    size_t M = w->M, D = d->dim;
    if (d->type == GS_CATEGORICAL) {
        for (size_t m = 0; m < M; m++) {
            double *g = w->g0 + m * D;
            for (size_t j = 0; j < D; j++) g[j] = -wt[m] * w->p[j];
            g[w->k[m]] += wt[m];
        }
        return;
    }
    for (size_t m = 0; m < M; m++)
        for (size_t i = 0; i < D; i++) {
            size_t j = m * D + i;
            double e = w->eps[j];
            w->g0[j] = wt[m] * (e / w->sigma[i]);
            w->g1[j] = wt[m] * (e * e - 1.0);
        }
}

/* Reduces the row's terms into grad and se_grad (when wanted), converting
 * the scale gradient to d/dsigma if the caller sent sigma. */
static void reduce_grad(const gs_dist *d, gs_ws *w, size_t b,
                        const gs_pgrad *g, const gs_pgrad *se,
                        const gs_pgrad *terms) {
    size_t D = d->dim, M = w->M;
    gs_export_terms(d, w, b, terms);
    double *se0 = se->p0 ? se->p0 + b * D : NULL;
    if (d->type == GS_CATEGORICAL) {
        gs_reduce_terms(w->g0, M, D, g->p0 + b * D, se0);
        return;
    }
    double *se1 = se->p0 ? se->p1 + b * D : NULL;
    gs_reduce_terms2(w->g0, w->g1, M, D, g->p0 + b * D, se0, g->p1 + b * D, se1);
    gs_scale_to_sigma(d, w, g->p1 + b * D, se1);
}

/* The categorical score gradient, mean of wt[m] (e_{k_m} - p), in closed
 * form; the per-sample terms are formed only when the caller wants them. */
static void cat_score_grad(const gs_dist *d, gs_ws *w, const double *wt,
                           size_t b, const gs_pgrad *g, const gs_pgrad *se,
                           const gs_pgrad *terms) {
    size_t D = d->dim;
    if (terms && terms->p0) {
        score_terms(d, w, wt);
        gs_export_terms(d, w, b, terms);
    }
    gs_cat_score_reduce(wt, w->k, w->M, w->p, D, g->p0 + b * D,
                        se->p0 ? se->p0 + b * D : NULL, w->cscratch);
}

/* Checks a row's per-row scalars and gradients; on a non-finite value fails
 * with the row and column (for a scalar, scol: -1 for none), blaming the
 * scale when its exp over- or underflowed, else `input`. */
static int check_row(gs_error *err, const gs_dist *d, const gs_ws *w,
                     size_t b, gs_input input, long scol, const double *scalar,
                     const double *se_scalar, const gs_pgrad *g,
                     const gs_pgrad *se) {
    size_t D = d->dim;
    const gs_ws *cw = d->type == GS_CATEGORICAL ? NULL : w;
    if ((scalar && !isfinite(scalar[b])) || (se_scalar && !isfinite(se_scalar[b])))
        return gs_fail_row(err, cw, input, b, -1, scol);
    const double *arr[4] = {g->p0, g->p1, se ? se->p0 : NULL, se ? se->p1 : NULL};
    for (int a = 0; a < 4; a++) {
        if (!arr[a]) continue;
        long bad = gs_first_nonfinite(arr[a] + b * D, D);
        if (bad >= 0) return gs_fail_row(err, cw, input, b, -1, bad);
    }
    return 0;
}

/* ---- entropy ------------------------------------------------------------------ */

static void entropy_exact_row(const gs_entropy_job *job, gs_ws *w, size_t b) {
    const gs_dist *d = &job->dist;
    size_t D = d->dim;
    double *g0 = job->grad.p0 + b * D;
    if (d->type == GS_CATEGORICAL) {
        /* dH/dz_j = -p_j (log p_j + H) = p_j (c - x_j), with x = z - max z
         * and c = sum p x = log s - H (gs_vm_cat): no cancellation between
         * log p_j and H. An x of -inf (an overflowed spread of logits) has
         * p = 0 and gets 0, as 0 log 0 = 0 adds 0 to H (MATH.md §2). The
         * lane kernel (gs_lanes_entropy_cat_avx512) computes the same bits. */
        double c, *x = w->cdf;
        job->entropy[b] = gs_vm_cat(D, d->logits + b * D, w->logp, w->p, x, &c);
        for (size_t j = 0; j < D; j++) g0[j] = x[j] == -INFINITY ? 0.0 : w->p[j] * (c - x[j]);
        return;
    }
    /* Normal: H = sum_d (½ log(2 pi e) + rho_d), dH/dmu = 0, dH/drho = 1. */
    double *g1 = job->grad.p1 + b * D, h = 0.0;
    gs_cont_params(d, b, w);
    for (size_t i = 0; i < D; i++) {
        h += HALF_LOG_2PIE + w->rho[i];
        g0[i] = 0.0;
        g1[i] = d->scale_is_sigma ? 1.0 / w->sigma[i] : 1.0;
    }
    job->entropy[b] = h;
}

static void entropy_mc_row(const gs_entropy_job *job, gs_ws *w, size_t b) {
    const gs_dist *d = &job->dist;
    size_t M = job->samples, D = d->dim;
    if (d->type == GS_CATEGORICAL) {
        gs_cat_row(d->logits + b * D, D, w->logp, w->p);
        size_t last = gs_rng_cat_cdf(w->p, D, w->cdf);
        gs_rng_uniforms(&job->rng, b, 0, M, w->tmp);
        for (size_t m = 0; m < M; m++) {
            w->k[m] = (int64_t)gs_rng_cat_draw(w->tmp[m], w->cdf, D, last);
            w->lp[m] = w->logp[w->k[m]];
        }
    } else {
        gs_cont_params(d, b, w);
        gs_cont_noise(d, &job->noise, b, w);
        gs_cont_from_eps(d, b, w);
    }
    /* Entropy terms -l(x_m). */
    for (size_t m = 0; m < M; m++) w->tmp[m] = -w->lp[m];
    job->entropy[b] = gs_mean_se(w->tmp, M, 1,
                                 job->se_entropy ? job->se_entropy + b : NULL);
    if (job->estimator == GS_EST_SCORE) {
        /* g_m = -(l_m + c_m) dl_m/dtheta; with loo, l_m + c_m is l_m minus
         * the mean of the others. */
        gs_baseline_apply(job->baseline, w->lp, M, w->w);
        for (size_t m = 0; m < M; m++) w->w[m] = -w->w[m];
        if (d->type == GS_CATEGORICAL) {
            cat_score_grad(d, w, w->w, b, &job->grad, &job->se_grad, &job->terms);
            return;
        }
        score_terms(d, w, w->w);
    } else {
        /* g_m = -dl(f(eps_m))/dtheta along the path (MATH.md §3-§4):
         * normal mu -> 0, rho -> 1; tanh mu -> -2t, rho -> 1 - 2 t sigma eps. */
        int tanh_ = d->type == GS_TANH_NORMAL;
        if (D <= 8 && gs_vm_have_avx512())
            gs_vm_entropy_reparam_terms_avx512(M, D, tanh_, w->sigma, w->eps, w->t, w->g0, w->g1);
        else
        for (size_t m = 0; m < M; m++)
            for (size_t i = 0; i < D; i++) {
                size_t j = m * D + i;
                double t = tanh_ ? w->t[j] : 0.0;
                w->g0[j] = -2.0 * t;
                /* The normal's term is exactly 1: never form 0 * sigma * eps,
                 * which is NaN when sigma = exp(log_scale) overflowed
                 * (found by tests/test_entropy.c). */
                w->g1[j] = tanh_ ? 1.0 - 2.0 * t * w->sigma[i] * w->eps[j] : 1.0;
            }
    }
    reduce_grad(d, w, b, &job->grad, &job->se_grad, &job->terms);
}

/* Row b of gs_entropy; 0 or the failure's status. */
static int entropy_row(const void *arg, gs_ws *w, size_t b, gs_error *err) {
    const gs_entropy_job *job = arg;
    const gs_dist *d = &job->dist;
    gs_input blame = GS_IN_LOGITS;
    int exact = job->estimator == GS_EST_EXACT;
    if (exact) entropy_exact_row(job, w, b);
    else entropy_mc_row(job, w, b);
    /* An infinite log-density makes the entropy infinite: name the
     * coordinate at fault (an overflowed scale, the caller's eps, a
     * huge tanh loc), not the row's loc (found by tests/test_entropy.c). */
    long bad = !exact && d->type != GS_CATEGORICAL ? gs_first_nonfinite(w->lp, w->M) : -1;
    if (bad >= 0) return gs_fail_lp(err, d, w, job->noise.eps != NULL, GS_IN_LOC, b, (size_t)bad);
    /* A per-row result (the entropy, its se) names the column blamed. */
    long at = -1;
    if (d->type != GS_CATEGORICAL) blame = gs_cont_blame(d, w, b, -1, &at);
    return check_row(err, d, w, b, blame, at, job->entropy, exact ? NULL : job->se_entropy,
                     &job->grad, exact || !job->se_entropy ? NULL : &job->se_grad);
}

int gs_entropy(const gs_entropy_job *job, size_t r0, size_t r1, gs_error *err) {
    const gs_dist *d = &job->dist;
    if (!gs_entropy_supported(d->type, job->estimator) || job->estimator == GS_EST_AUTO)
        return gs_fail(err, GS_EUNSUPPORTED, GS_IN_NONE, -1, -1, -1);
    int exact = job->estimator == GS_EST_EXACT;
    gs_ws w;
    if (gs_ws_init(&w, d, exact ? 1 : job->samples))
        return gs_fail(err, GS_ENOMEM, GS_IN_NONE, -1, -1, -1);
    gs_input blame = d->type == GS_CATEGORICAL ? GS_IN_LOGITS : GS_IN_LOC;
    int rc = 0;
    /* Categorical on AVX-512: whole groups of eight rows at a time
     * (gs_lanes_avx512.c), then the same checks row by row; the last r mod
     * 8 rows, and every row when per-sample terms are wanted, go through the
     * row loop, which computes the same bits (tests/test_entropy.c). */
    size_t rs = r0;
    size_t n8 = w.lanes && (exact || !job->terms.p0) ? (r1 - r0) & ~(size_t)7 : 0;
    if (n8) {
        size_t D = d->dim;
        int bad;
        if (exact) {
            bad = gs_lanes_entropy_cat_avx512(D, d->logits + r0 * D, n8, job->entropy + r0,
                                              job->grad.p0 + r0 * D,
                                              gs_stream_batch(d->rows, 2 * D), w.lanes);
        } else {
            gs_lanes_score s = {.K = D, .M = job->samples, .logits = d->logits,
                                .key = {job->rng.key[0], job->rng.key[1]},
                                .loo = job->baseline != GS_BASELINE_NONE,
                                .stat = job->entropy, .se_stat = job->se_entropy,
                                .grad = job->grad.p0, .se_grad = job->se_grad.p0,
                                .stream = gs_stream_batch(d->rows, 3 * D)};
            bad = gs_lanes_score_avx512(&s, r0, r0 + n8, w.lanes);
        }
        for (size_t b = r0; bad && b < r0 + n8 && !rc; b++)
            rc = check_row(err, d, &w, b, blame, -1, job->entropy,
                           exact ? NULL : job->se_entropy, &job->grad,
                           exact || !job->se_entropy ? NULL : &job->se_grad);
        rs = r0 + n8;
    }
    if (rc) {
        gs_ws_free(&w);
        return rc;
    }
    /* The reparam estimator on AVX-512 likewise (gs_lanes_cont_avx512.c). */
    gs_lanes_cont lc;
    double *ls = job->estimator == GS_EST_REPARAM && !job->terms.p0
                     ? gs_cont_lanes(d, &w, job->samples, &job->noise, r1 - r0, &lc)
                     : NULL;
    if (ls) {
        lc.kind = GS_LC_ENTROPY;
        lc.stat = job->entropy, lc.se_stat = job->se_entropy;
        lc.g0 = job->grad.p0, lc.g1 = job->grad.p1;
        lc.se0 = job->se_entropy ? job->se_grad.p0 : NULL;
        lc.se1 = job->se_entropy ? job->se_grad.p1 : NULL;
    }
    rc = gs_cont_rows(&lc, ls, entropy_row, job, &w, rs, r1, err);
    gs_ws_free(&w);
    return rc;
}

/* ---- pathwise gradient of E[f] ---------------------------------------------- */

/* Row b of gs_reparam; 0 or the failure's status. */
static int reparam_row(const void *arg, gs_ws *w, size_t b, gs_error *err) {
    const gs_reparam_job *job = arg;
    const gs_dist *d = &job->dist;
    size_t M = job->samples, D = d->dim;
    int tanh_ = d->type == GS_TANH_NORMAL;
    gs_cont_params(d, b, w);
    gs_cont_noise(d, &job->noise, b, w);
    gs_cont_from_eps(d, b, w);
    double *x = job->x + b * M * D;
    gs_cont_points(d, w, x);
    memcpy(job->log_prob + b * M, w->lp, M * sizeof(double));
    long bad = gs_first_nonfinite(x, M * D);
    if (bad >= 0) return gs_fail_row(err, w, GS_IN_LOC, b, bad / (long)D, bad % (long)D);
    /* log_prob is an output too: an infinite log-density (a caller's
     * eps of 1e200, whose square overflows) used to be returned
     * unchecked (found by tests/test_estim.c). */
    if ((bad = gs_first_nonfinite(w->lp, M)) >= 0)
        return gs_fail_lp(err, d, w, job->noise.eps != NULL, GS_IN_LOC, b, (size_t)bad);
    const double *gx = job->grad_x + b * M * D;
    const double *glp = job->grad_log_prob ? job->grad_log_prob + b * M : NULL;
    /* term = gx . dx/dtheta + glp . dl(f(eps))/dtheta, per coordinate:
     * dx/dmu = s (1 - t^2) (1 for normal), dx/drho = dx/dmu sigma eps;
     * dl/dmu = 2t (0), dl/drho = -1 + 2 t sigma eps (-1). */
    if (D <= 8 && gs_vm_have_avx512())
        gs_vm_reparam_terms_avx512(M, D, tanh_, w->sigma, w->s, w->eps, w->omt2, w->t, gx, glp,
                                   w->g0, w->g1);
    else
        for (size_t m = 0; m < M; m++) {
            double c = glp ? glp[m] : 0.0;
            for (size_t i = 0; i < D; i++) {
                size_t j = m * D + i;
                double se = w->sigma[i] * w->eps[j];
                double dxdmu = tanh_ ? w->s[i] * w->omt2[j] : 1.0;
                double t = tanh_ ? w->t[j] : 0.0;
                w->g0[j] = gx[j] * dxdmu + c * 2.0 * t;
                w->g1[j] = gx[j] * dxdmu * se + c * (-1.0 + 2.0 * t * se);
            }
        }
    reduce_grad(d, w, b, &job->grad, &job->se_grad, &job->terms);
    return check_row(err, d, w, b, GS_IN_GRAD_X, -1, NULL, NULL, &job->grad,
                     job->se_grad.p0 ? &job->se_grad : NULL);
}

int gs_reparam(const gs_reparam_job *job, size_t r0, size_t r1, gs_error *err) {
    const gs_dist *d = &job->dist;
    assert(d->type != GS_CATEGORICAL);
    gs_ws w;
    if (gs_ws_init(&w, d, job->samples)) return gs_fail(err, GS_ENOMEM, GS_IN_NONE, -1, -1, -1);
    /* On AVX-512, groups of eight rows in lanes (gs_cont_rows), unless
     * per-sample terms are wanted. */
    gs_lanes_cont lc;
    double *ls = job->terms.p0 ? NULL : gs_cont_lanes(d, &w, job->samples, &job->noise, r1 - r0, &lc);
    if (ls) {
        lc.kind = GS_LC_REPARAM;
        lc.gx = job->grad_x, lc.glp = job->grad_log_prob;
        lc.x = job->x, lc.lp = job->log_prob;
        lc.g0 = job->grad.p0, lc.g1 = job->grad.p1;
        lc.se0 = job->se_grad.p0, lc.se1 = job->se_grad.p0 ? job->se_grad.p1 : NULL;
    }
    int rc = gs_cont_rows(&lc, ls, reparam_row, job, &w, r0, r1, err);
    gs_ws_free(&w);
    return rc;
}

/* ---- score-function gradient of E[f] ----------------------------------------- */

int gs_score(const gs_score_job *job, size_t r0, size_t r1, gs_error *err) {
    const gs_dist *d = &job->dist;
    size_t M = job->samples, D = d->dim;
    gs_ws w;
    if (gs_ws_init(&w, d, M)) return gs_fail(err, GS_ENOMEM, GS_IN_NONE, -1, -1, -1);
    int rc = 0;
    for (size_t b = r0; b < r1 && !rc; b++) {
        if (d->type == GS_CATEGORICAL) {
            gs_cat_row(d->logits + b * D, D, w.logp, w.p);
            if (job->actions) {
                for (size_t m = 0; m < M; m++) w.k[m] = job->actions[b * M + m];
            } else {
                size_t last = gs_rng_cat_cdf(w.p, D, w.cdf);
                gs_rng_uniforms(job->rng, b, 0, M, w.tmp);
                for (size_t m = 0; m < M; m++)
                    w.k[m] = (int64_t)gs_rng_cat_draw(w.tmp[m], w.cdf, D, last);
            }
        } else {
            gs_cont_params(d, b, &w);
            if (job->x) {
                size_t out = gs_cont_from_x(d, b, job->x + b * M * D, &w);
                if (out) {
                    rc = gs_fail(err, GS_ENONFINITE, GS_IN_X, (long)b,
                                 (long)((out - 1) / D), (long)((out - 1) % D));
                    break;
                }
            } else {
                gs_cont_noise(d, job->noise, b, &w);
                gs_cont_from_eps(d, b, &w);
            }
        }
        /* The score eps^2 - 1 overflows when a caller's eps (or an x far
         * out, through (x - mu) / sigma) is huge: blame that draw, not f. */
        if (d->type != GS_CATEGORICAL)
            for (size_t j = 0; j < M * D && !rc; j++)
                if (!isfinite(w.eps[j] * w.eps[j]) && isnormal(w.sigma[j % D]))
                    rc = gs_fail(err, GS_ENONFINITE, job->x ? GS_IN_X : GS_IN_EPS, (long)b,
                                 (long)(j / D), (long)(j % D));
        if (rc) break;
        const double *f = job->f + b * M;
        job->value[b] = gs_mean_se(f, M, 1, job->se_value ? job->se_value + b : NULL);
        /* g_m = (f_m - b_m) dl(x_m)/dtheta; loo b_m = mean of the others. */
        gs_baseline_apply(job->baseline, f, M, w.w);
        if (d->type == GS_CATEGORICAL) {
            cat_score_grad(d, &w, w.w, b, &job->grad, &job->se_grad, &job->terms);
        } else {
            score_terms(d, &w, w.w);
            reduce_grad(d, &w, b, &job->grad, &job->se_grad, &job->terms);
        }
        rc = check_row(err, d, &w, b, GS_IN_F, -1, job->value, job->se_value,
                       &job->grad, job->se_grad.p0 ? &job->se_grad : NULL);
    }
    gs_ws_free(&w);
    return rc;
}
