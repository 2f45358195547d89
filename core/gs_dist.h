/* gs_dist.h - distributions, draws, log-densities and the shared job types. */
#ifndef GS_DIST_H
#define GS_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "gs_error.h"
#include "gs_rng.h"

/* Conventions of every kernel in core/ (see MATH.md for the formulas):
 *
 * - A batch has `rows` rows; row-major arrays: parameters rows x dim,
 *   per-sample scalars rows x M, per-sample vectors rows x M x dim.
 * - Kernels take a job (inputs and caller-owned output arrays) and a row
 *   range [r0, r1); they write only rows in that range, so disjoint ranges
 *   may run on different threads, and a row's result does not depend on the
 *   range it was computed in (bit-identical however a batch is split).
 * - Preconditions are not checked (the api layer validates every request):
 *   finite parameters, scale > 0, low < high with a half-width
 *   gs_tanh_bounds gives > 0, actions in [0, K), M >= 1,
 *   M >= 2 for the leave-one-out baseline. Debug builds assert() some.
 * - A kernel returns 0, or a gs_status with err locating the first row (in
 *   the range) whose output would not be finite, and the input to blame.
 * - Each kernel allocates one workspace per call (never inside its loops)
 *   and frees it before returning. */

typedef enum { GS_CATEGORICAL = 0, GS_NORMAL, GS_TANH_NORMAL } gs_dist_type;

typedef struct {
    gs_dist_type type;
    size_t rows; /* B */
    size_t dim;  /* K for categorical, D for the others */
    const double *logits; /* rows x K (categorical) */
    const double *loc;    /* rows x D */
    const double *scale;  /* rows x D: log sigma, or sigma if scale_is_sigma */
    int scale_is_sigma;   /* 1: gradients w.r.t. the scale are d/d sigma */
    const double *low, *high; /* D each, tanh_normal bounds, or both NULL */
} gs_dist;

/* The centre c and half-width s of tanh_normal bounds (x = c + s tanh u):
 * 0.5 (high + low) and 0.5 (high - low), or 0.5 high + 0.5 low and
 * 0.5 high - 0.5 low where those overflow (bounds near +-1.8e308). s is 0
 * for bounds too close to halve apart (low 0, high 5e-324): not valid. */
void gs_tanh_bounds(double low, double high, double *c, double *s);

/* Gradient (or standard error) arrays w.r.t. the parameters, rows x dim:
 * p0 is d/dlogits or d/dloc, p1 d/dlog_scale or d/dscale (NULL for
 * categorical). A gs_pgrad whose p0 is NULL means "not wanted". */
typedef struct {
    double *p0;
    double *p1;
} gs_pgrad;

/* Where the standard-normal noise of a continuous row comes from: the
 * caller's eps (rows x M x D), or generated from rng when eps is NULL. */
typedef struct {
    const double *eps;
    gs_rng rng;
} gs_noise;

typedef enum { GS_BASELINE_LOO = 0, GS_BASELINE_NONE } gs_baseline;

/* ---- /v1/sample ------------------------------------------------------- */

typedef struct {
    gs_dist dist;
    size_t samples; /* M */
    gs_rng rng;
    int64_t *actions; /* rows x M, categorical */
    double *x;        /* rows x M x D, continuous (tanh: clipped to bounds) */
    double *eps;      /* rows x M x D, continuous */
    double *log_prob; /* rows x M */
} gs_sample_job;

int gs_sample(const gs_sample_job *job, size_t r0, size_t r1, gs_error *err);

/* ---- /v1/log_prob ----------------------------------------------------- */

typedef struct {
    gs_dist dist;
    size_t samples;          /* M */
    const int64_t *actions;  /* rows x M, categorical */
    const double *x;         /* rows x M x D, continuous */
    double *log_prob;        /* rows x M */
    gs_pgrad grad;           /* sum over m of dlog p(x_m)/dtheta, x fixed */
} gs_log_prob_job;

/* Fails with GS_IN_X when a point has probability zero (a tanh_normal x
 * on or outside its bounds, or a density that underflows), with
 * GS_IN_SCALE when that is because exp(log_scale) over- or underflowed. */
int gs_log_prob(const gs_log_prob_job *job, size_t r0, size_t r1,
                gs_error *err);

#endif
