/* gs_sac.c - SAC actor gradients (discrete, continuous), temperature, policy. */
#include "gs_sac.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gs_row.h"
#include "gs_vmath_impl.h"

/* ---- discrete actor ------------------------------------------------------------ */

/* The checks of row b's outputs: a non-finite entropy is the logits'
 * fault; a non-finite loss is that of a caller's action whose probability
 * is 0 (log p = -inf: logits spread past the largest double), if any, else
 * q's, as is a non-finite se or gradient. w is scratch for the softmax. */
static int sac_discrete_check(const gs_sac_discrete_job *job, size_t b, gs_ws *w,
                              gs_error *err) {
    size_t K = job->dist.dim, M = job->samples;
    if (!isfinite(job->entropy[b])) return gs_fail(err, GS_ENONFINITE, GS_IN_LOGITS, (long)b, -1, -1);
    if (!isfinite(job->loss[b]) && job->actions) {
        gs_cat_row(job->dist.logits + b * K, K, w->logp, w->p);
        for (size_t m = 0; m < M; m++)
            if (w->logp[job->actions[b * M + m]] == -INFINITY)
                return gs_fail(err, GS_ENONFINITE, GS_IN_ACTIONS, (long)b, (long)m, -1);
    }
    if (!isfinite(job->loss[b]) || (job->se_loss && job->actions && !isfinite(job->se_loss[b])))
        return gs_fail(err, GS_ENONFINITE, GS_IN_Q, (long)b, -1, -1);
    long bad = gs_first_nonfinite(job->grad.p0 + b * K, K);
    if (bad < 0 && job->actions && job->se_grad.p0)
        bad = gs_first_nonfinite(job->se_grad.p0 + b * K, K);
    if (bad >= 0) return gs_fail(err, GS_ENONFINITE, GS_IN_Q, (long)b, -1, bad);
    return 0;
}

int gs_sac_discrete(const gs_sac_discrete_job *job, size_t r0, size_t r1,
                    gs_error *err) {
    const gs_dist *d = &job->dist;
    size_t K = d->dim, M = job->actions ? job->samples : 1;
    double a = job->alpha;
    gs_ws w;
    if (gs_ws_init(&w, d, M)) return gs_fail(err, GS_ENOMEM, GS_IN_NONE, -1, -1, -1);
    int rc = 0;
    /* On AVX-512, whole groups of eight rows at a time (gs_lanes_avx512.c),
     * then the same checks row by row; the last r mod 8 rows, and every row
     * when per-sample terms are wanted, go through the row loop, which
     * computes the same bits (tests/test_sac.c). */
    size_t rs = r0, n8 = w.lanes && !job->terms.p0 ? (r1 - r0) & ~(size_t)7 : 0;
    if (n8) {
        int bad;
        if (!job->actions) {
            bad = gs_lanes_sac_exact_avx512(K, d->logits + r0 * K, job->q + r0 * K, a, n8,
                                            job->loss + r0, job->entropy + r0,
                                            job->grad.p0 + r0 * K,
                                            gs_stream_batch(d->rows, 3 * K), w.lanes);
        } else {
            gs_lanes_score s = {.K = K, .M = M, .logits = d->logits, .actions = job->actions,
                                .q = job->q, .alpha = a,
                                .loo = job->baseline != GS_BASELINE_NONE,
                                .entropy = job->entropy, .stat = job->loss,
                                .se_stat = job->se_loss, .grad = job->grad.p0,
                                .se_grad = job->se_grad.p0,
                                .stream = gs_stream_batch(d->rows, 3 * K + 2 * M)};
            bad = gs_lanes_score_avx512(&s, r0, r0 + n8, w.lanes);
        }
        for (size_t b = r0; bad && b < r0 + n8 && !rc; b++) rc = sac_discrete_check(job, b, &w, err);
        rs = r0 + n8;
    }
    for (size_t b = rs; b < r1 && !rc; b++) {
        double *g = job->grad.p0 + b * K;
        job->entropy[b] = gs_cat_row(d->logits + b * K, K, w.logp, w.p);
        /* Logits spread past the largest double (1e308 and -1e308) give a
         * NaN softmax whatever q is: the logits are at fault. */
        if (!isfinite(job->entropy[b])) {
            rc = gs_fail(err, GS_ENONFINITE, GS_IN_LOGITS, (long)b, -1, -1);
            break;
        }
        if (!job->actions) {
            const double *q = job->q + b * K;
            double L = 0.0;
            /* p_k = 0 multiplies a finite alpha log p_k - Q_k: adds 0; and
             * where log p_k is -inf (an overflowed spread of logits), p_k
             * = 0 adds 0 and gets 0, as in the lanes. */
            for (size_t k = 0; k < K; k++)
                L += w.logp[k] == -INFINITY ? 0.0 : w.p[k] * (a * w.logp[k] - q[k]);
            for (size_t k = 0; k < K; k++)
                g[k] = w.logp[k] == -INFINITY ? 0.0 : w.p[k] * (a * w.logp[k] - q[k] - L);
            job->loss[b] = L;
        } else {
            const int64_t *ks = job->actions + b * M;
            const double *q = job->q + b * M;
            for (size_t m = 0; m < M; m++) {
                w.k[m] = ks[m];
                w.lp[m] = a * w.logp[ks[m]] - q[m];
            }
            job->loss[b] = gs_mean_se(w.lp, M, 1, job->se_loss ? job->se_loss + b : NULL);
            gs_baseline_apply(job->baseline, w.lp, M, w.w);
            /* The terms w_m (e_{k_m} - p) are formed only for the caller;
             * their mean and se have closed forms. */
            if (job->terms.p0) {
                for (size_t m = 0; m < M; m++) {
                    double *t = w.g0 + m * K;
                    for (size_t j = 0; j < K; j++) t[j] = -w.w[m] * w.p[j];
                    t[w.k[m]] += w.w[m];
                }
                gs_export_terms(d, &w, b, &job->terms);
            }
            gs_cat_score_reduce(w.w, w.k, M, w.p, K, g,
                                job->se_grad.p0 ? job->se_grad.p0 + b * K : NULL,
                                w.cscratch);
        }
        rc = sac_discrete_check(job, b, &w, err);
    }
    gs_ws_free(&w);
    return rc;
}

/* ---- Boltzmann policy ------------------------------------------------------------ */

static int policy_rows(const gs_sac_policy_job *job, size_t r0, size_t r1, gs_error *err);

int gs_sac_policy(const gs_sac_policy_job *job, size_t r0, size_t r1,
                  gs_error *err) {
    size_t K = job->K, M = job->samples;
    double a = job->alpha;
    int rc = 0;
    size_t n8 = gs_vm_have_avx512() ? (r1 - r0) & ~(size_t)7 : 0;
    if (n8) {
        /* Whole groups of eight rows at a time; a row whose entropy, value
         * or log_probs are not all finite (any Q / alpha infinite makes the
         * entropy NaN; a spread of Q / alpha past the largest double, a log
         * p of -inf) is then redone by the row loop, which names the
         * offending column.
         * The last r mod 8 rows go through the row loop, which computes the
         * same bits (tests/test_sac.c). */
        double *scratch = malloc(gs_lanes_scratch(K, 0) * sizeof(double));
        if (!scratch) return gs_fail(err, GS_ENOMEM, GS_IN_NONE, -1, -1, -1);
        int bad = gs_lanes_policy_avx512(K, job->q + r0 * K, a, n8, job->probs + r0 * K,
                                         job->log_probs + r0 * K, job->entropy + r0,
                                         job->value + r0,
                                         gs_stream_batch(job->rows, 3 * K), scratch);
        free(scratch);
        for (size_t b = r0; b < r0 + n8 && !rc; b++) {
            if (bad && (!isfinite(job->entropy[b]) || !isfinite(job->value[b]) ||
                        gs_first_nonfinite(job->log_probs + b * K, K) >= 0)) {
                gs_sac_policy_job one = *job;
                one.samples = 0;
                rc = policy_rows(&one, b, b + 1, err);
                if (!rc) rc = gs_fail(err, GS_ENONFINITE, GS_IN_Q, (long)b, -1, -1);
                break;
            }
            for (size_t m = 0; m < M; m++)
                job->actions[b * M + m] = (int64_t)gs_rng_categorical(
                    &job->rng, b, (uint32_t)m, job->probs + b * K, K);
        }
        if (rc) return rc;
    }
    return policy_rows(job, r0 + n8, r1, err);
}

/* The policy row by row (without AVX-512, and for a row that failed). */
static int policy_rows(const gs_sac_policy_job *job, size_t r0, size_t r1, gs_error *err) {
    size_t K = job->K, M = job->samples;
    double a = job->alpha;
    int rc = 0;
    for (size_t b = r0; b < r1 && !rc; b++) {
        const double *q = job->q + b * K;
        double *lp = job->log_probs + b * K, *p = job->probs + b * K;
        /* Q / alpha goes through log_probs as scratch; gs_cat_row reads z
         * before writing logp, element by element in place. */
        double mx = -INFINITY;
        for (size_t k = 0; k < K; k++) {
            lp[k] = q[k] / a;
            mx = lp[k] > mx ? lp[k] : mx;
        }
        if (!isfinite(mx)) {
            long bad = gs_first_nonfinite(lp, K);
            rc = gs_fail(err, GS_ENONFINITE, GS_IN_Q, (long)b, -1, bad < 0 ? -1 : bad);
            break;
        }
        long bad = gs_first_nonfinite(lp, K);
        if (bad >= 0) {
            rc = gs_fail(err, GS_ENONFINITE, GS_IN_Q, (long)b, -1, bad);
            break;
        }
        /* V = alpha logsumexp(Q / alpha) = alpha (z_k - log p_k) for any k;
         * the argmax k keeps it exact: log p_max = -log sum exp(z - max). */
        size_t kmax = 0;
        for (size_t k = 1; k < K; k++) kmax = lp[k] > lp[kmax] ? k : kmax;
        double zmax = lp[kmax];
        job->entropy[b] = gs_cat_row(lp, K, lp, p);
        job->value[b] = a * (zmax - lp[kmax]);
        /* Q / alpha spread past the largest double: an action's log p is
         * -inf (its p, 0, is fine; the entropy is finite). */
        bad = gs_first_nonfinite(lp, K);
        if (bad >= 0) {
            rc = gs_fail(err, GS_ENONFINITE, GS_IN_Q, (long)b, -1, bad);
            break;
        }
        for (size_t m = 0; m < M; m++)
            job->actions[b * M + m] =
                (int64_t)gs_rng_categorical(&job->rng, b, (uint32_t)m, p, K);
        if (!isfinite(job->value[b]) || !isfinite(job->entropy[b]))
            rc = gs_fail(err, GS_ENONFINITE, GS_IN_Q, (long)b, -1, -1);
    }
    return rc;
}

/* ---- continuous actor --------------------------------------------------------------- */

/* Row b of gs_sac_continuous; 0 or the failure's status. */
static int sac_continuous_row(const void *arg, gs_ws *w, size_t b, gs_error *err) {
    const gs_sac_continuous_job *job = arg;
    const gs_dist *d = &job->dist;
    size_t M = job->samples, D = d->dim;
    double a = job->alpha;
    gs_cont_params(d, b, w);
    gs_cont_noise(d, &job->noise, b, w);
    gs_cont_from_eps(d, b, w);
    gs_cont_points(d, w, job->actions + b * M * D);
    memcpy(job->log_prob + b * M, w->lp, M * sizeof(double));
    for (size_t m = 0; m < M; m++) w->w[m] = -w->lp[m];
    job->entropy[b] = gs_mean_se(w->w, M, 1, job->se_entropy ? job->se_entropy + b : NULL);
    if (job->q) {
        const double *q = job->q + b * M;
        for (size_t m = 0; m < M; m++) w->w[m] = a * w->lp[m] - q[m];
        job->loss[b] = gs_mean_se(w->w, M, 1, job->se_loss ? job->se_loss + b : NULL);
    }
    const double *dq = job->dq_da + b * M * D;
    /* mu: alpha 2t - dq s (1 - t^2);
     * rho: alpha (-1 + 2 t sigma eps) - dq s (1 - t^2) sigma eps. */
    if (D <= 8 && gs_vm_have_avx512())
        gs_vm_sac_cont_terms_avx512(M, D, a, w->sigma, w->s, w->eps, w->omt2, w->t, dq, w->g0,
                                    w->g1);
    else
        for (size_t m = 0; m < M; m++)
            for (size_t i = 0; i < D; i++) {
                size_t j = m * D + i;
                double se = w->sigma[i] * w->eps[j], t = w->t[j];
                double dadmu = w->s[i] * w->omt2[j];
                w->g0[j] = a * 2.0 * t - dq[j] * dadmu;
                w->g1[j] = a * (-1.0 + 2.0 * t * se) - dq[j] * dadmu * se;
            }
    gs_export_terms(d, w, b, &job->terms);
    double *se0 = job->se_grad.p0 ? job->se_grad.p0 + b * D : NULL;
    double *se1 = job->se_grad.p0 ? job->se_grad.p1 + b * D : NULL;
    gs_reduce_terms2(w->g0, w->g1, M, D, job->grad.p0 + b * D, se0, job->grad.p1 + b * D, se1);
    gs_scale_to_sigma(d, w, job->grad.p1 + b * D, se1);

    /* An infinite log-density: name the coordinate at fault (an
     * overflowed scale, the caller's eps, a huge loc), not the row's
     * loc (found by tests/test_sac.c). */
    long lbad = gs_first_nonfinite(w->lp, M);
    if (lbad >= 0)
        return gs_fail_lp(err, d, w, job->noise.eps != NULL, GS_IN_LOC, b, (size_t)lbad);
    if (!isfinite(job->entropy[b]) || (job->se_entropy && !isfinite(job->se_entropy[b]))) {
        long at;
        gs_input in = gs_cont_blame(d, w, b, -1, &at);
        return gs_fail_row(err, w, in, b, -1, at);
    }
    if (job->q && (!isfinite(job->loss[b]) || (job->se_loss && !isfinite(job->se_loss[b]))))
        return gs_fail(err, GS_ENONFINITE, GS_IN_Q, (long)b, -1, -1);
    const double *arr[4] = {job->grad.p0 + b * D, job->grad.p1 + b * D, se0, se1};
    for (int k = 0; k < 4; k++) {
        long bad = arr[k] ? gs_first_nonfinite(arr[k], D) : -1;
        if (bad >= 0) return gs_fail_row(err, w, GS_IN_DQ_DA, b, -1, bad);
    }
    return 0;
}

int gs_sac_continuous(const gs_sac_continuous_job *job, size_t r0, size_t r1,
                      gs_error *err) {
    const gs_dist *d = &job->dist;
    assert(d->type == GS_TANH_NORMAL);
    gs_ws w;
    if (gs_ws_init(&w, d, job->samples)) return gs_fail(err, GS_ENOMEM, GS_IN_NONE, -1, -1, -1);
    /* On AVX-512, groups of eight rows in lanes (gs_cont_rows), unless
     * per-sample terms are wanted. */
    gs_lanes_cont lc;
    double *ls = job->terms.p0 ? NULL : gs_cont_lanes(d, &w, job->samples, &job->noise, r1 - r0, &lc);
    if (ls) {
        lc.kind = GS_LC_SAC;
        lc.dq = job->dq_da, lc.q = job->q, lc.alpha = job->alpha;
        lc.x = job->actions, lc.lp = job->log_prob;
        lc.stat = job->q ? job->loss : NULL, lc.se_stat = job->q ? job->se_loss : NULL;
        lc.ent = job->entropy, lc.se_ent = job->se_entropy;
        lc.g0 = job->grad.p0, lc.g1 = job->grad.p1;
        lc.se0 = job->se_grad.p0, lc.se1 = job->se_grad.p0 ? job->se_grad.p1 : NULL;
    }
    int rc = gs_cont_rows(&lc, ls, sac_continuous_row, job, &w, r0, r1, err);
    gs_ws_free(&w);
    return rc;
}

/* ---- temperature -------------------------------------------------------------------- */

double gs_sac_alpha_loss(double alpha, double target, size_t rows,
                         const double *entropy, const double *se_entropy,
                         double *se) {
    double s = 0.0, v = 0.0;
    for (size_t b = 0; b < rows; b++) {
        s += entropy[b] - target;
        if (se_entropy) v += se_entropy[b] * se_entropy[b];
    }
    if (se) *se = se_entropy ? alpha * sqrt(v) / (double)rows : 0.0;
    return alpha * (s / (double)rows);
}
