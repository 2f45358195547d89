/* api_grad.c - POST /v1/reparam (pathwise) and /v1/score (score-function) gradients of E[f]. */
#include <math.h>
#include <string.h>

#include "api_endpoints.h"

static void dist_error(api_ctx *c, const void *job, const gs_error *e) {
    (void)job;
    api_kernel_error(c, (const api_dist *)c->state, e); /* api_dist comes first */
}

/* "loo" needs two samples; name samples if it was sent, else baseline. */
static int check_loo(api_ctx *c, gs_baseline b, size_t M, int samples_sent) {
    if (b == GS_BASELINE_LOO && M < 2)
        return api_bad(c, samples_sent ? "samples" : "baseline",
                       "baseline \"loo\" needs at least 2 samples per row, got %zu (or send "
                       "baseline \"none\")", M);
    return 0;
}

/* ==== /v1/reparam ============================================================= */

typedef struct {
    api_dist dist;
    gs_reparam_job job;
    api_noise noise;
} reparam_req;

int api_reparam_parse(api_ctx *c, json_t *root) {
    static const char *const keys[] = {"distribution", "eps", "seed", "samples", "grad_x",
                                       "grad_log_prob", "output", NULL};
    reparam_req *r = api_alloc(c, 1, sizeof *r);
    if (!r || api_keys(c, root, NULL, keys) || api_read_output(c, root)) return -1;
    c->state = r;
    if (api_dist_parse(c, root, "distribution", API_ANY, &r->dist)) return -1;
    const api_dist *d = &r->dist;
    if (d->d.type == GS_CATEGORICAL)
        return api_unsupported(c, "distribution.type", "categorical is not reparameterizable: "
                               "use /v1/score for the gradient of E[f] under a categorical");
    api_arr gx, glp;
    int has_glp;
    if (api_read_noise(c, root, d, &r->noise) ||
        api_per_sample(c, root, "grad_x", d, 3, 0, 1, &r->noise, &gx, NULL) ||
        api_per_sample(c, root, "grad_log_prob", d, 2, 0, 0, &r->noise, &glp, &has_glp))
        return -1;
    gs_reparam_job *j = &r->job;
    size_t B = d->d.rows, M = r->noise.M, D = d->d.dim;
    j->dist = d->d;
    j->samples = M;
    j->noise = r->noise.noise;
    j->grad_x = gx.f;
    j->grad_log_prob = has_glp ? glp.f : NULL;
    if (api_charge(c, B, M, D)) return -1;
    if (!(j->x = api_alloc(c, B * M * D, sizeof(double))) ||
        !(j->log_prob = api_alloc(c, B * M, sizeof(double))) || api_pgrad_alloc(c, d, &j->grad))
        return -1;
    if (M >= 2 && (api_pgrad_alloc(c, d, &j->se_grad) || api_terms_alloc(c, d, M, &j->terms)))
        return -1;
    c->rows = B;
    c->samples = B * M;
    return 0;
}

int api_reparam_run(api_ctx *c) {
    reparam_req *r = c->state;
    gs_reparam_job *j = &r->job;
    const api_dist *d = &r->dist;
    size_t B = d->d.rows, M = j->samples;
    if (api_run_rows(c, (api_kernel)gs_reparam, j, B, M * d->d.dim, dist_error)) return -1;
    if (api_dist_backward(c, &r->dist, &j->grad, &j->se_grad, &j->terms, M)) return -1;
    size_t dims[3] = {B, M, d->d.dim};
    api_buf *b = &c->out;
    w_obj_begin(b);
    if (r->noise.from_seed) {
        w_key(b, "seed");
        w_int(b, (int64_t)r->noise.seed);
    }
    w_key(b, "x");
    api_write_rows(c, d->single, j->x, NULL, 3, dims);
    w_key(b, "log_prob");
    api_write_rows(c, d->single, j->log_prob, NULL, 2, dims);
    w_key(b, "grad");
    api_write_pgrad(c, d, &j->grad, 0);
    if (j->se_grad.p0) {
        w_key(b, "stderr");
        w_obj_begin(b);
        w_key(b, "grad");
        api_write_pgrad(c, d, &j->se_grad, 1);
        w_obj_end(b);
    }
    w_obj_end(b);
    return 0;
}

/* ==== /v1/score ================================================================ */

typedef struct {
    api_dist dist;
    gs_score_job job;
    api_noise noise;
} score_req;

int api_score_parse(api_ctx *c, json_t *root) {
    static const char *const keys[] = {"distribution", "x", "eps", "seed", "samples", "f",
                                       "baseline", "output", NULL};
    score_req *r = api_alloc(c, 1, sizeof *r);
    if (!r || api_keys(c, root, NULL, keys) || api_read_output(c, root)) return -1;
    c->state = r;
    if (api_dist_parse(c, root, "distribution", API_ANY, &r->dist)) return -1;
    const api_dist *d = &r->dist;
    gs_score_job *j = &r->job;
    int cat = d->d.type == GS_CATEGORICAL;
    /* Exactly one source of draws: the second one sent is named. */
    static const char *const src[] = {"x", "eps", "seed"};
    int n = 0;
    for (int k = 0; k < 3; k++)
        if (json_object_get(root, src[k]) && ++n == 2)
            return api_bad(c, src[k], "send the draws as exactly one of `x`, `eps` or `seed`");
    if (n == 0)
        return api_bad(c, "x", "the draws are required: `x`, `eps` or `seed` (+ `samples`)");
    if (cat && json_object_get(root, "eps"))
        return api_bad(c, "eps", "`eps` is the noise of a continuous distribution; a "
                       "categorical takes its draws as `x` (actions) or `seed`");
    if (api_read_baseline(c, root, &j->baseline)) return -1;
    api_noise *nz = &r->noise;
    api_arr x, f;
    if (json_object_get(root, "x")) {
        size_t want[3] = {d->d.rows, 0, d->d.dim};
        if (api_batch_array(c, root, "x", d->single, cat ? 2 : 3, want, cat, 1, &x, NULL) ||
            api_samples_agree(c, root, x.dims[1], "x"))
            return -1;
        if (cat && api_check_actions(c, "x", d->single, &x, d->d.dim)) return -1;
        nz->M = x.dims[1];
        j->actions = x.i;
        j->x = x.f;
    } else if (api_read_noise(c, root, d, nz)) {
        return -1;
    }
    /* f must match the draws' M: from x or eps it names f; from samples
     * it names samples. */
    int samples_sent = nz->samples_sent;
    if (j->x || j->actions) nz->samples_sent = 0;
    if (api_per_sample(c, root, "f", d, 2, 0, 1, nz, &f, NULL)) return -1;
    size_t B = d->d.rows, M = nz->M;
    if (check_loo(c, j->baseline, M, samples_sent)) return -1;
    j->dist = d->d;
    j->samples = M;
    j->f = f.f;
    if (!j->x && !j->actions) {
        if (cat) j->rng = &nz->noise.rng;
        else j->noise = &nz->noise;
    }
    if (api_charge(c, B, M, d->d.dim)) return -1;
    if (!(j->value = api_alloc(c, B, sizeof(double))) || api_pgrad_alloc(c, d, &j->grad))
        return -1;
    if (M >= 2 && (!(j->se_value = api_alloc(c, B, sizeof(double))) ||
                   api_pgrad_alloc(c, d, &j->se_grad) || api_terms_alloc(c, d, M, &j->terms)))
        return -1;
    c->rows = B;
    c->samples = B * M;
    return 0;
}


int api_score_run(api_ctx *c) {
    score_req *r = c->state;
    gs_score_job *j = &r->job;
    const api_dist *d = &r->dist;
    size_t B = d->d.rows;
    if (api_run_rows(c, (api_kernel)gs_score, j, B, j->samples * d->d.dim, dist_error) ||
        api_dist_backward(c, &r->dist, &j->grad, &j->se_grad, &j->terms, j->samples))
        return -1;
    size_t dims[1] = {B};
    api_buf *b = &c->out;
    w_obj_begin(b);
    if (r->noise.from_seed) {
        w_key(b, "seed");
        w_int(b, (int64_t)r->noise.seed);
    }
    w_key(b, "value");
    api_write_rows(c, d->single, j->value, NULL, 1, dims);
    w_key(b, "grad");
    api_write_pgrad(c, d, &j->grad, 0);
    if (j->se_value) {
        w_key(b, "stderr");
        w_obj_begin(b);
        w_key(b, "value");
        api_write_rows(c, d->single, j->se_value, NULL, 1, dims);
        w_key(b, "grad");
        api_write_pgrad(c, d, &j->se_grad, 1);
        w_obj_end(b);
    }
    w_obj_end(b);
    return 0;
}
