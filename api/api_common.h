/* api_common.h - pieces every endpoint family shares: distributions, common fields, row splitting (internal). */
#ifndef API_COMMON_H
#define API_COMMON_H

#include "api_head.h"
#include "api_io.h"

/* A parsed distribution with its owned parameter arrays. */
typedef struct {
    gs_dist d;
    int single;         /* 1-D parameters: the request is one row */
    char path[64];      /* "distribution" */
    const char *p0name; /* "logits" or "loc" */
    const char *p1name; /* "log_scale" or "scale", NULL for categorical */
    api_head *head;     /* the linear head that produced the parameters, or NULL */
} api_dist;

/* Bit mask of accepted types for api_dist_parse. */
#define API_CATEGORICAL (1 << GS_CATEGORICAL)
#define API_NORMAL (1 << GS_NORMAL)
#define API_TANH (1 << GS_TANH_NORMAL)
#define API_ANY (API_CATEGORICAL | API_NORMAL | API_TANH)

/* Reads the required object `key` of root as a distribution of one of the
 * accepted types (400 naming path.type otherwise). */
int api_dist_parse(api_ctx *c, json_t *root, const char *key, int accept,
                   api_dist *out);

/* Reads the batch-indexed array `key` of root: its full rank is `rank`
 * with the batch axis first; a single-row request drops it (a mix is a
 * 400). want gives the full-rank lengths (0 = free). *present is 0 when
 * the field is absent and not required. */
int api_batch_array(api_ctx *c, json_t *root, const char *key, int single,
                    size_t rank, const size_t *want, int integer, int required,
                    api_arr *out, int *present);

/* Common optional fields. */
int api_read_output(api_ctx *c, json_t *root);
/* seed: *has is 1 when sent; otherwise a fresh seed is drawn into *seed. */
int api_read_seed(api_ctx *c, json_t *root, uint64_t *seed, int *has);
/* samples: integer in [lo, max_numbers]; *has is 1 when sent. */
int api_read_samples(api_ctx *c, json_t *root, int64_t lo, int64_t def,
                     size_t *m, int *has);
/* samples where the draws arrive as the array `key` with M per row (API.md
 * §0): optional, and when sent it must be M (else a 400 naming samples). */
int api_samples_agree(api_ctx *c, json_t *root, size_t M, const char *key);
int api_read_baseline(api_ctx *c, json_t *root, gs_baseline *b);
/* alpha: required, finite, > 0. */
int api_read_alpha(api_ctx *c, json_t *root, double *alpha);
/* target_entropy: optional finite number; *has is 1 when sent. */
int api_read_target(api_ctx *c, json_t *root, double *t, int *has);

/* Checks that every action of a rows x M integer array lies in [0, K). */
int api_check_actions(api_ctx *c, const char *key, int single, const api_arr *a,
                      size_t K);

/* The noise of /v1/reparam and /v1/sac/continuous/actor: `eps` [B][M][D]
 * or `seed` (+ optional `samples`), exactly one (400 naming `seed` for
 * both, `eps` for neither). M comes from eps, else samples, else stays 0
 * for the caller to read from its per-sample array. */
typedef struct {
    gs_noise noise;
    size_t M;
    uint64_t seed;
    int from_seed;
    int samples_sent;
} api_noise;
int api_read_noise(api_ctx *c, json_t *root, const api_dist *d, api_noise *n);

/* Reads a per-sample array (rank 2 [B][M] or 3 [B][M][D]) whose M must
 * agree with n->M: when M came from `samples` a disagreement names
 * `samples`, when it came from `eps` it names this later array; when M is
 * still 0 (seed without samples) it is taken from this array. */
int api_per_sample(api_ctx *c, json_t *root, const char *key, const api_dist *d,
                   size_t rank, int integer, int required, api_noise *n,
                   api_arr *out, int *present);

/* The row kernel signature of every core kernel. */
typedef int (*api_kernel)(const void *job, size_t r0, size_t r1, gs_error *err);

/* Runs kernel over rows [0, rows), split across the worker pool when
 * rows x per_row numbers reach the split threshold (else inline). On a
 * kernel failure the error of the lowest failing row is reported through
 * name_error. Returns 0 or -1. */
typedef void (*api_name_error)(api_ctx *c, const void *job, const gs_error *e);
int api_run_rows(api_ctx *c, api_kernel kernel, const void *job, size_t rows,
                 size_t per_row, api_name_error name_error);

/* The standard naming of a kernel's non-finite result (see gs_input). */
void api_kernel_error(api_ctx *c, const api_dist *d, const gs_error *e);

/* Writes a gradient object {p0name: ..., p1name: ..., head?: ...} of a
 * distribution (rows x dim each, the batch axis dropped for a single row);
 * se selects the head's standard errors rather than its gradients. */
void api_write_pgrad(api_ctx *c, const api_dist *d, const gs_pgrad *g, int se);

/* With a head and M >= 2 Monte Carlo samples, allocates the per-sample
 * gradient terms (rows x M x dim) the features' standard errors need;
 * otherwise leaves terms empty. */
int api_terms_alloc(api_ctx *c, const api_dist *d, size_t M, gs_pgrad *terms);

/* With a head, takes the parameter gradients (and standard errors, and
 * terms) back to the head's weight, bias and features. */
int api_dist_backward(api_ctx *c, api_dist *d, const gs_pgrad *g, const gs_pgrad *se,
                      const gs_pgrad *terms, size_t M);

/* A top-level matrix (logits or q) of rank 1 (one row) or 2, read as a
 * categorical api_dist; with allow_head, a top-level `head` (and
 * `reduction`) may produce it instead. */
int api_top_matrix(api_ctx *c, json_t *root, const char *key, int allow_head,
                   api_dist *d);
/* Writes per-row (rank 1 full) or per-sample arrays honouring single. */
void api_write_rows(api_ctx *c, int single, const double *f, const int64_t *i,
                    size_t rank, const size_t *dims);

/* Allocates a gradient pair for a distribution (p1 NULL for categorical). */
int api_pgrad_alloc(api_ctx *c, const api_dist *d, gs_pgrad *g);

/* 422 for an estimator the maths refuses. */
int api_unsupported(api_ctx *c, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
