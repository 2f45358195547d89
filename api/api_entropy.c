/* api_entropy.c - POST /v1/entropy, /v1/sample and /v1/log_prob. */
#include <string.h>

#include "api_endpoints.h"

static void dist_error(api_ctx *c, const void *job, const gs_error *e);

/* ==== /v1/entropy ========================================================= */

typedef struct {
    api_dist dist;
    gs_entropy_job job;
    uint64_t seed;
    size_t M;
} entropy_req;

static const char *const EST_NAMES[] = {"auto", "exact", "score", "reparam", NULL};

int api_entropy_parse(api_ctx *c, json_t *root) {
    static const char *const keys[] = {"distribution", "estimator", "samples", "seed",
                                       "baseline", "output", NULL};
    entropy_req *r = api_alloc(c, 1, sizeof *r);
    if (!r || api_keys(c, root, NULL, keys) || api_read_output(c, root)) return -1;
    c->state = r;
    int est = 0, has_seed;
    gs_entropy_job *j = &r->job;
    if (api_dist_parse(c, root, "distribution", API_ANY, &r->dist) ||
        api_get_enum(c, root, "estimator", "estimator", EST_NAMES, &est) < 0 ||
        api_read_samples(c, root, 1, 64, &r->M, NULL) ||
        api_read_seed(c, root, &r->seed, &has_seed) ||
        api_read_baseline(c, root, &j->baseline))
        return -1;
    const gs_dist *d = &r->dist.d;
    j->dist = *d;
    j->estimator = est ? (gs_estimator)est : gs_entropy_auto(d->type);
    if (!gs_entropy_supported(d->type, j->estimator))
        return api_unsupported(c, "estimator",
                               d->type == GS_TANH_NORMAL
                                   ? "tanh_normal has no closed-form entropy: use estimator "
                                     "\"reparam\" (the default) or \"score\""
                                   : "categorical is not reparameterizable: use estimator "
                                     "\"exact\" (the default) or \"score\"");
    int mc = j->estimator != GS_EST_EXACT;
    if (mc && j->estimator == GS_EST_SCORE && j->baseline == GS_BASELINE_LOO && r->M < 2)
        return api_bad(c, "samples", "baseline \"loo\" needs samples >= 2, got %zu (or send "
                       "baseline \"none\")", r->M);
    if (api_charge(c, d->rows, mc ? r->M : 1, d->dim)) return -1;
    j->samples = mc ? r->M : 1;
    gs_rng_init(&j->rng, r->seed);
    j->noise.eps = NULL;
    j->noise.rng = j->rng;
    size_t B = d->rows;
    if (!(j->entropy = api_alloc(c, B, sizeof(double))) || api_pgrad_alloc(c, &r->dist, &j->grad))
        return -1;
    if (mc && r->M >= 2) {
        if (!(j->se_entropy = api_alloc(c, B, sizeof(double))) ||
            api_pgrad_alloc(c, &r->dist, &j->se_grad) ||
            api_terms_alloc(c, &r->dist, r->M, &j->terms))
            return -1;
    }
    c->rows = B;
    c->samples = B * j->samples;
    return 0;
}

int api_entropy_run(api_ctx *c) {
    entropy_req *r = c->state;
    gs_entropy_job *j = &r->job;
    const api_dist *d = &r->dist;
    if (api_run_rows(c, (api_kernel)gs_entropy, j, d->d.rows, j->samples * d->d.dim, dist_error) ||
        api_dist_backward(c, &r->dist, &j->grad, &j->se_grad, &j->terms, j->samples))
        return -1;
    size_t dims[1] = {d->d.rows};
    api_buf *b = &c->out;
    w_obj_begin(b);
    w_key(b, "estimator");
    w_string(b, EST_NAMES[j->estimator]);
    int mc = j->estimator != GS_EST_EXACT;
    if (mc) {
        w_key(b, "samples");
        w_int(b, (int64_t)r->M);
        w_key(b, "seed");
        w_int(b, (int64_t)r->seed);
    }
    w_key(b, "entropy");
    api_write_rows(c, d->single, j->entropy, NULL, 1, dims);
    w_key(b, "grad");
    api_write_pgrad(c, d, &j->grad, 0);
    if (j->se_entropy) {
        w_key(b, "stderr");
        w_obj_begin(b);
        w_key(b, "entropy");
        api_write_rows(c, d->single, j->se_entropy, NULL, 1, dims);
        w_key(b, "grad");
        api_write_pgrad(c, d, &j->se_grad, 1);
        w_obj_end(b);
    }
    w_obj_end(b);
    return 0;
}

/* Every kernel job of this file starts with its gs_dist, whose api_dist is
 * the first member of the request state: recover it from the context. */
static void dist_error(api_ctx *c, const void *job, const gs_error *e) {
    (void)job;
    api_kernel_error(c, (const api_dist *)c->state, e);
}

/* ==== /v1/sample =========================================================== */

typedef struct {
    api_dist dist;
    gs_sample_job job;
    uint64_t seed;
} sample_req;

int api_sample_parse(api_ctx *c, json_t *root) {
    static const char *const keys[] = {"distribution", "samples", "seed", "output", NULL};
    sample_req *r = api_alloc(c, 1, sizeof *r);
    if (!r || api_keys(c, root, NULL, keys) || api_read_output(c, root)) return -1;
    c->state = r;
    int has_seed;
    gs_sample_job *j = &r->job;
    if (api_dist_parse(c, root, "distribution", API_ANY, &r->dist) ||
        api_read_samples(c, root, 1, 1, &j->samples, NULL) ||
        api_read_seed(c, root, &r->seed, &has_seed))
        return -1;
    const gs_dist *d = &r->dist.d;
    j->dist = *d;
    gs_rng_init(&j->rng, r->seed);
    size_t B = d->rows, M = j->samples, D = d->dim;
    if (api_charge(c, B, M, D)) return -1;
    if (!(j->log_prob = api_alloc(c, B * M, sizeof(double)))) return -1;
    if (d->type == GS_CATEGORICAL) {
        if (!(j->actions = api_alloc(c, B * M, sizeof(int64_t)))) return -1;
    } else if (!(j->x = api_alloc(c, B * M * D, sizeof(double))) ||
               !(j->eps = api_alloc(c, B * M * D, sizeof(double)))) {
        return -1;
    }
    c->rows = B;
    c->samples = B * M;
    return 0;
}

int api_sample_run(api_ctx *c) {
    sample_req *r = c->state;
    gs_sample_job *j = &r->job;
    const api_dist *d = &r->dist;
    size_t B = d->d.rows, M = j->samples;
    if (api_run_rows(c, (api_kernel)gs_sample, j, B, M * d->d.dim, dist_error)) return -1;
    size_t dims[3] = {B, M, d->d.dim};
    api_buf *b = &c->out;
    w_obj_begin(b);
    w_key(b, "seed");
    w_int(b, (int64_t)r->seed);
    w_key(b, "samples");
    if (d->d.type == GS_CATEGORICAL) api_write_rows(c, d->single, NULL, j->actions, 2, dims);
    else api_write_rows(c, d->single, j->x, NULL, 3, dims);
    w_key(b, "log_prob");
    api_write_rows(c, d->single, j->log_prob, NULL, 2, dims);
    if (d->d.type != GS_CATEGORICAL) {
        w_key(b, "eps");
        api_write_rows(c, d->single, j->eps, NULL, 3, dims);
    }
    w_obj_end(b);
    return 0;
}

/* ==== /v1/log_prob ========================================================== */

typedef struct {
    api_dist dist;
    gs_log_prob_job job;
} log_prob_req;

int api_check_actions(api_ctx *c, const char *key, int single, const api_arr *a, size_t K) {
    size_t M = a->dims[1];
    for (size_t k = 0; k < a->n; k++)
        if (a->i[k] < 0 || (uint64_t)a->i[k] >= K) {
            char p[128];
            if (single) snprintf(p, sizeof p, "%s[%zu]", key, k % M);
            else snprintf(p, sizeof p, "%s[%zu][%zu]", key, k / M, k % M);
            return api_bad(c, p, "`%s` must be an action in 0..%zu, got %lld", p, K - 1,
                           (long long)a->i[k]);
        }
    return 0;
}

int api_log_prob_parse(api_ctx *c, json_t *root) {
    static const char *const keys[] = {"distribution", "x", "samples", "output", NULL};
    log_prob_req *r = api_alloc(c, 1, sizeof *r);
    if (!r || api_keys(c, root, NULL, keys) || api_read_output(c, root)) return -1;
    c->state = r;
    if (api_dist_parse(c, root, "distribution", API_ANY, &r->dist)) return -1;
    const gs_dist *d = &r->dist.d;
    gs_log_prob_job *j = &r->job;
    j->dist = *d;
    int cat = d->type == GS_CATEGORICAL;
    size_t want[3] = {d->rows, 0, d->dim};
    api_arr x;
    if (api_batch_array(c, root, "x", r->dist.single, cat ? 2 : 3, want, cat, 1, &x, NULL) ||
        api_samples_agree(c, root, x.dims[1], "x"))
        return -1;
    if (cat && api_check_actions(c, "x", r->dist.single, &x, d->dim)) return -1;
    j->samples = x.dims[1];
    j->actions = x.i;
    j->x = x.f;
    size_t B = d->rows, M = j->samples;
    if (api_charge(c, B, M, d->dim)) return -1;
    if (!(j->log_prob = api_alloc(c, B * M, sizeof(double))) || api_pgrad_alloc(c, &r->dist, &j->grad))
        return -1;
    c->rows = B;
    c->samples = B * M;
    return 0;
}

int api_log_prob_run(api_ctx *c) {
    log_prob_req *r = c->state;
    gs_log_prob_job *j = &r->job;
    const api_dist *d = &r->dist;
    size_t B = d->d.rows, M = j->samples;
    if (api_run_rows(c, (api_kernel)gs_log_prob, j, B, M * d->d.dim, dist_error) ||
        api_dist_backward(c, &r->dist, &j->grad, NULL, NULL, M))
        return -1;
    size_t dims[2] = {B, M};
    api_buf *b = &c->out;
    w_obj_begin(b);
    w_key(b, "log_prob");
    api_write_rows(c, d->single, j->log_prob, NULL, 2, dims);
    w_key(b, "grad");
    api_write_pgrad(c, d, &j->grad, 0);
    w_obj_end(b);
    return 0;
}
