/* gs_dist.c - draws (/v1/sample) and log-densities (/v1/log_prob). */
#include "gs_dist.h"

#include <assert.h>
#include <string.h>

#include "gs_row.h"
#include "gs_vmath_impl.h"

/* ---- sampling ------------------------------------------------------------- */

int gs_sample(const gs_sample_job *job, size_t r0, size_t r1, gs_error *err) {
    const gs_dist *d = &job->dist;
    size_t M = job->samples, D = d->dim;
    gs_ws w;
    if (gs_ws_init(&w, d, M)) return gs_fail(err, GS_ENOMEM, GS_IN_NONE, -1, -1, -1);
    int rc = 0;
    for (size_t b = r0; b < r1 && !rc; b++) {
        double *lp = job->log_prob + b * M;
        if (d->type == GS_CATEGORICAL) {
            gs_cat_row(d->logits + b * D, D, w.logp, w.p);
            size_t last = gs_rng_cat_cdf(w.p, D, w.cdf);
            gs_rng_uniforms(&job->rng, b, 0, M, w.tmp);
            for (size_t m = 0; m < M; m++) {
                size_t k = gs_rng_cat_draw(w.tmp[m], w.cdf, D, last);
                job->actions[b * M + m] = (int64_t)k;
                lp[m] = w.logp[k];
            }
            continue;
        }
        gs_noise n = {NULL, job->rng};
        gs_cont_params(d, b, &w);
        gs_cont_noise(d, &n, b, &w);
        gs_cont_from_eps(d, b, &w);
        memcpy(job->eps + b * M * D, w.eps, M * D * sizeof(double));
        memcpy(lp, w.lp, M * sizeof(double));
        gs_cont_points(d, &w, job->x + b * M * D);
        long bad = gs_first_nonfinite(job->x + b * M * D, M * D);
        if (bad >= 0) {
            rc = gs_fail_row(err, &w, GS_IN_LOC, b, bad / (long)D, bad % (long)D);
        } else if ((bad = gs_first_nonfinite(lp, M)) >= 0) {
            /* A log-density is per sample: blame the coordinate that made it
             * infinite (it used to be reported as column 0 of loc, hiding
             * an overflowed scale in column 1; found by tests/test_dist.c). */
            rc = gs_fail_lp(err, d, &w, 0, GS_IN_LOC, b, (size_t)bad);
        }
    }
    gs_ws_free(&w);
    return rc;
}

/* ---- log-density at given points ------------------------------------------ */

/* Row b of gs_log_prob; 0 or the failure's status. */
static int log_prob_row(const gs_log_prob_job *job, gs_ws *w, size_t b, gs_error *err) {
    const gs_dist *d = &job->dist;
    size_t M = job->samples, D = d->dim;
    double *lp = job->log_prob + b * M;
    double *g0 = job->grad.p0 + b * D;
    if (d->type == GS_CATEGORICAL) {
        gs_cat_row(d->logits + b * D, D, w->logp, w->p);
        for (size_t i = 0; i < D; i++) g0[i] = -(double)M * w->p[i];
        for (size_t m = 0; m < M; m++) {
            int64_t k = job->actions[b * M + m];
            assert(k >= 0 && (size_t)k < D);
            lp[m] = w->logp[k];
            g0[k] += 1.0;
        }
        /* log p_k = -inf only when p_k underflowed; the logp of a finite
         * logit is finite, so only an extreme spread can get here. */
        long bad = gs_first_nonfinite(lp, M);
        return bad >= 0 ? gs_fail(err, GS_ENONFINITE, GS_IN_X, (long)b, bad, -1) : 0;
    }
    double *g1 = job->grad.p1 + b * D;
    gs_cont_params(d, b, w);
    size_t out = gs_cont_from_x(d, b, job->x + b * M * D, w);
    if (out)
        return gs_fail(err, GS_ENONFINITE, GS_IN_X, (long)b, (long)((out - 1) / D),
                       (long)((out - 1) % D));
    memcpy(lp, w->lp, M * sizeof(double));
    /* Score with x fixed: dl/dmu = eps / sigma, dl/drho = eps^2 - 1. */
    /* The sum of eps / sigma is formed as (sum of eps) / sigma: one
     * division per dimension instead of one per element. */
    double *restrict s0 = g0, *restrict s1 = g1;
    for (size_t i = 0; i < D; i++) s0[i] = s1[i] = 0.0;
    for (size_t m = 0; m < M; m++) {
        const double *restrict e = w->eps + m * D;
        for (size_t i = 0; i < D; i++) {
            s0[i] += e[i];
            s1[i] += e[i] * e[i] - 1.0;
        }
    }
    for (size_t i = 0; i < D; i++) s0[i] /= w->sigma[i];
    gs_scale_to_sigma(d, w, g1, NULL);
    long bad = gs_first_nonfinite(lp, M);
    /* The point's fault, unless exp(log_scale) over- or underflowed
     * (API.md §11; tests/test_dist.c). */
    if (bad >= 0) return gs_fail_row(err, w, GS_IN_X, b, bad, -1);
    bad = gs_first_nonfinite(g0, D);
    if (bad < 0) bad = gs_first_nonfinite(g1, D);
    return bad >= 0 ? gs_fail_row(err, w, GS_IN_X, b, -1, bad) : 0;
}

int gs_log_prob(const gs_log_prob_job *job, size_t r0, size_t r1,
                gs_error *err) {
    const gs_dist *d = &job->dist;
    size_t M = job->samples, D = d->dim;
    gs_ws w;
    if (gs_ws_init(&w, d, M)) return gs_fail(err, GS_ENOMEM, GS_IN_NONE, -1, -1, -1);
    int rc = 0;
    /* A normal on AVX-512: whole groups of eight rows at a time
     * (gs_lanes_cont_avx512.c); a group with a row that needs the row loop's
     * checks (or its divisions) goes through it again, and so do the last
     * r mod 8 rows: the same bits (tests/test_dist.c). */
    size_t b = r0;
    if (w.lp_lanes)
        for (; b + 8 <= r1 && !rc; b += 8) {
            gs_prefetch_rows(job->x, M * D, b, r1);
            if (gs_lanes_log_prob_normal_avx512(D, M, d->loc + b * D, d->scale + b * D,
                                                d->scale_is_sigma, job->x + b * M * D, 8,
                                                job->log_prob + b * M, job->grad.p0 + b * D,
                                                job->grad.p1 + b * D, w.lp_lanes))
                for (size_t i = b; i < b + 8 && !rc; i++) rc = log_prob_row(job, &w, i, err);
        }
    for (; b < r1 && !rc; b++) rc = log_prob_row(job, &w, b, err);
    gs_ws_free(&w);
    return rc;
}
