/* gs_estim.h - entropy and its gradient; pathwise and score-function gradients of E[f]. */
#ifndef GS_ESTIM_H
#define GS_ESTIM_H

#include "gs_dist.h"

typedef enum {
    GS_EST_AUTO = 0,
    GS_EST_EXACT,
    GS_EST_SCORE,
    GS_EST_REPARAM
} gs_estimator;

/* The estimator `auto` stands for (MATH.md §1, API.md §1): exact where a
 * closed form exists (categorical, normal), else reparam (tanh_normal). */
gs_estimator gs_entropy_auto(gs_dist_type t);

/* 1 if the estimator applies to the distribution: exact has no closed form
 * for tanh_normal, reparam does not exist for categorical. */
int gs_entropy_supported(gs_dist_type t, gs_estimator e);

/* ---- entropy (MATH.md §1-§4) ------------------------------------------------ */

typedef struct {
    gs_dist dist;
    gs_estimator estimator; /* EXACT, SCORE or REPARAM (resolve AUTO first) */
    gs_baseline baseline;   /* SCORE only */
    size_t samples;         /* M, Monte Carlo only */
    gs_noise noise;         /* continuous Monte Carlo only */
    gs_rng rng;             /* categorical SCORE draws */
    double *entropy;        /* rows */
    gs_pgrad grad;          /* rows x dim */
    double *se_entropy;     /* rows, or NULL: no standard errors */
    gs_pgrad se_grad;       /* with se_entropy */
    gs_pgrad terms;         /* Monte Carlo: per-sample gradient terms,
                               rows x M x dim, or p0 NULL: not wanted */
} gs_entropy_job;

/* Entropy and an unbiased estimate of its gradient per row:
 * exact: closed forms; score: mean of -(l(x_m) + c_m) dl(x_m)/dtheta with x
 * held fixed and c_m the baseline; reparam: mean of -dl(f(eps_m))/dtheta
 * along the path. Never the naive -dl/dtheta with x fixed, whose mean is 0.
 * GS_EUNSUPPORTED for an estimator that does not apply. */
int gs_entropy(const gs_entropy_job *job, size_t r0, size_t r1, gs_error *err);

/* ---- pathwise gradient of E[f(x)] (MATH.md §5) ----------------------------- */

typedef struct {
    gs_dist dist;                /* normal or tanh_normal */
    size_t samples;              /* M */
    gs_noise noise;
    const double *grad_x;        /* rows x M x D: df/dx at x_m */
    const double *grad_log_prob; /* rows x M, or NULL (0) */
    double *x;                   /* rows x M x D */
    double *log_prob;            /* rows x M */
    gs_pgrad grad;
    gs_pgrad se_grad;            /* p0 NULL: not wanted */
    gs_pgrad terms;              /* per-sample terms, rows x M x D, or NULL */
} gs_reparam_job;

int gs_reparam(const gs_reparam_job *job, size_t r0, size_t r1, gs_error *err);

/* ---- score-function gradient of E[f(x)] (MATH.md §5a) ---------------------- */

typedef struct {
    gs_dist dist;
    size_t samples;          /* M */
    /* The draws, exactly one of: actions (categorical), x (continuous),
     * noise (continuous: caller's eps or rng), rng (categorical draws). */
    const int64_t *actions;
    const double *x;
    const gs_noise *noise;
    const gs_rng *rng;
    const double *f;         /* rows x M */
    gs_baseline baseline;
    double *value;           /* rows: mean of f */
    gs_pgrad grad;
    double *se_value;        /* rows, or NULL */
    gs_pgrad se_grad;
    gs_pgrad terms;          /* per-sample terms, rows x M x dim, or NULL */
} gs_score_job;

int gs_score(const gs_score_job *job, size_t r0, size_t r1, gs_error *err);

#endif
