/* gs_sac.h - soft actor-critic: actor gradients, temperature, Boltzmann policy. */
#ifndef GS_SAC_H
#define GS_SAC_H

#include "gs_dist.h"

/* ---- discrete actor (MATH.md §6) ---------------------------------------------
 * L = sum_k p_k (alpha log p_k - Q_k) per row, p = softmax(logits).
 * exact:   q is rows x K (every action's value); dL/dz_j = p_j (alpha log p_j
 *          - Q_j - L).
 * sampled: actions and q are rows x M (a critic's values of sampled
 *          actions); t_m = alpha log p_{k_m} - q_m, L = mean t,
 *          g_m = (t_m - b_m)(e_{k_m} - p) with b_m the baseline.
 * entropy is always the exact -sum p log p. A non-finite loss or gradient
 * is blamed on q. */
typedef struct {
    gs_dist dist;            /* categorical */
    double alpha;            /* > 0 */
    const double *q;         /* rows x K (exact) or rows x M (sampled) */
    const int64_t *actions;  /* rows x M: sampled estimator; NULL: exact */
    size_t samples;          /* M, sampled only */
    gs_baseline baseline;    /* sampled only */
    double *loss;            /* rows */
    double *entropy;         /* rows */
    gs_pgrad grad;           /* p0: rows x K */
    double *se_loss;         /* rows, or NULL (sampled, M >= 2) */
    gs_pgrad se_grad;
    gs_pgrad terms;          /* sampled: per-sample terms rows x M x K, or NULL */
} gs_sac_discrete_job;

int gs_sac_discrete(const gs_sac_discrete_job *job, size_t r0, size_t r1,
                    gs_error *err);

/* ---- Boltzmann policy p = softmax(Q / alpha) ----------------------------------
 * log_probs, probs, entropy and the soft value V = alpha logsumexp(Q / alpha);
 * with samples > 0, actions drawn by the categorical sampler of gs_rng. */
typedef struct {
    size_t rows, K;
    const double *q;         /* rows x K */
    double alpha;
    size_t samples;          /* M, may be 0 */
    gs_rng rng;
    double *probs, *log_probs; /* rows x K */
    double *entropy, *value;   /* rows */
    int64_t *actions;          /* rows x M when samples > 0 */
} gs_sac_policy_job;

int gs_sac_policy(const gs_sac_policy_job *job, size_t r0, size_t r1,
                  gs_error *err);

/* ---- continuous actor, tanh_normal (MATH.md §7) --------------------------------
 * Per sample a_m = c + s tanh(mu + sigma eps_m), l_m = log p(a_m):
 * loss = mean(alpha l_m - q_m) (when q), entropy = -mean l_m,
 * grad = mean(alpha dl_m/dtheta - dq_da_m . da_m/dtheta). */
typedef struct {
    gs_dist dist;            /* tanh_normal */
    double alpha;
    size_t samples;          /* M */
    gs_noise noise;
    const double *dq_da;     /* rows x M x D */
    const double *q;         /* rows x M, or NULL */
    double *loss;            /* rows (when q) */
    double *entropy;         /* rows */
    double *log_prob;        /* rows x M */
    double *actions;         /* rows x M x D */
    gs_pgrad grad;
    double *se_loss, *se_entropy; /* NULL: no standard errors */
    gs_pgrad se_grad;
    gs_pgrad terms;          /* per-sample terms rows x M x D, or NULL */
} gs_sac_continuous_job;

int gs_sac_continuous(const gs_sac_continuous_job *job, size_t r0, size_t r1,
                      gs_error *err);

/* ---- temperature (MATH.md §6) ----------------------------------------------------
 * alpha_loss = grad_log_alpha = alpha mean_b(H_b - target) over the batch.
 * When se_entropy is not NULL, *se gets alpha sqrt(sum_b se_b^2) / B, the
 * standard error of that mean for independent rows. Summed in row order. */
double gs_sac_alpha_loss(double alpha, double target, size_t rows,
                         const double *entropy, const double *se_entropy,
                         double *se);

#endif
