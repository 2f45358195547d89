/* api_sac.c - POST /v1/sac/discrete/actor, /v1/sac/discrete/policy and /v1/sac/continuous/actor. */
#include <math.h>
#include <string.h>

#include "api_endpoints.h"

static void dist_error(api_ctx *c, const void *job, const gs_error *e) {
    (void)job;
    api_kernel_error(c, (const api_dist *)c->state, e); /* api_dist comes first */
}

/* alpha_loss and grad_log_alpha: equal numbers (MATH.md §6). */
static void write_alpha(api_ctx *c, double loss) {
    w_key(&c->out, "alpha_loss");
    w_double(&c->out, loss);
    w_key(&c->out, "grad_log_alpha");
    w_double(&c->out, loss);
}

static int alpha_finite(api_ctx *c, double v) {
    return isfinite(v) ? 0
                       : api_bad(c, "target_entropy", "`target_entropy` makes alpha_loss "
                                 "overflow; use a value of smaller magnitude");
}

/* ==== /v1/sac/discrete/actor ==================================================== */

typedef struct {
    api_dist dist;
    gs_sac_discrete_job job;
    double target;
    int has_target;
    double alpha_loss;
} actor_req;

int api_sac_actor_parse(api_ctx *c, json_t *root) {
    static const char *const keys[] = {"logits", "head", "reduction", "q", "actions", "alpha",
                                       "baseline", "samples", "target_entropy", "output", NULL};
    actor_req *r = api_alloc(c, 1, sizeof *r);
    if (!r || api_keys(c, root, NULL, keys) || api_read_output(c, root)) return -1;
    c->state = r;
    gs_sac_discrete_job *j = &r->job;
    if (api_top_matrix(c, root, "logits", 1, &r->dist) || api_read_alpha(c, root, &j->alpha) ||
        api_read_baseline(c, root, &j->baseline) ||
        api_read_target(c, root, &r->target, &r->has_target))
        return -1;
    const api_dist *d = &r->dist;
    size_t B = d->d.rows, K = d->d.dim;
    int sampled;
    api_arr act, q;
    size_t want[2] = {B, 0};
    if (api_batch_array(c, root, "actions", d->single, 2, want, 1, 0, &act, &sampled)) return -1;
    if (sampled) {
        if (api_check_actions(c, "actions", d->single, &act, K)) return -1;
        want[1] = act.dims[1];
    } else {
        want[1] = K;
    }
    if (api_batch_array(c, root, "q", d->single, 2, want, 0, 1, &q, NULL)) return -1;
    size_t M = sampled ? act.dims[1] : 1;
    /* samples: M is the actions' shape; with all Q values it does not apply
     * (accepted, range-checked, ignored). */
    if (sampled ? api_samples_agree(c, root, M, "actions")
                : api_read_samples(c, root, 1, 0, &(size_t){0}, NULL))
        return -1;
    /* As check_loo (api_grad.c) names it: samples if sent, else baseline. */
    if (sampled && j->baseline == GS_BASELINE_LOO && M < 2)
        return api_bad(c, json_object_get(root, "samples") ? "samples" : "baseline",
                       "baseline \"loo\" needs at least 2 sampled actions per "
                       "row, got 1 (or send baseline \"none\")");
    j->dist = d->d;
    j->q = q.f;
    j->actions = sampled ? act.i : NULL;
    j->samples = M;
    if (api_charge(c, B, M, K)) return -1;
    if (!(j->loss = api_alloc(c, B, sizeof(double))) ||
        !(j->entropy = api_alloc(c, B, sizeof(double))) || api_pgrad_alloc(c, d, &j->grad))
        return -1;
    if (sampled && M >= 2 &&
        (!(j->se_loss = api_alloc(c, B, sizeof(double))) || api_pgrad_alloc(c, d, &j->se_grad) ||
         api_terms_alloc(c, d, M, &j->terms)))
        return -1;
    c->rows = B;
    c->samples = B * M;
    return 0;
}

int api_sac_actor_run(api_ctx *c) {
    actor_req *r = c->state;
    gs_sac_discrete_job *j = &r->job;
    const api_dist *d = &r->dist;
    size_t B = d->d.rows;
    if (api_run_rows(c, (api_kernel)gs_sac_discrete, j, B, j->samples * d->d.dim, dist_error))
        return -1;
    if (api_dist_backward(c, &r->dist, &j->grad, &j->se_grad, &j->terms, j->samples)) return -1;
    if (r->has_target) {
        r->alpha_loss = gs_sac_alpha_loss(j->alpha, r->target, B, j->entropy, NULL, NULL);
        if (alpha_finite(c, r->alpha_loss)) return -1;
    }
    size_t dims[1] = {B};
    api_buf *b = &c->out;
    w_obj_begin(b);
    w_key(b, "estimator");
    w_string(b, j->actions ? "sampled" : "exact");
    w_key(b, "loss");
    api_write_rows(c, d->single, j->loss, NULL, 1, dims);
    w_key(b, "entropy");
    api_write_rows(c, d->single, j->entropy, NULL, 1, dims);
    w_key(b, "grad");
    api_write_pgrad(c, d, &j->grad, 0);
    if (j->se_loss) {
        w_key(b, "stderr");
        w_obj_begin(b);
        w_key(b, "loss");
        api_write_rows(c, d->single, j->se_loss, NULL, 1, dims);
        w_key(b, "grad");
        api_write_pgrad(c, d, &j->se_grad, 1);
        w_obj_end(b);
    }
    if (r->has_target) write_alpha(c, r->alpha_loss);
    w_obj_end(b);
    return 0;
}

/* ==== /v1/sac/discrete/policy ===================================================== */

typedef struct {
    api_dist dist; /* q, read as a matrix */
    gs_sac_policy_job job;
    uint64_t seed;
} policy_req;

int api_sac_policy_parse(api_ctx *c, json_t *root) {
    static const char *const keys[] = {"q", "alpha", "samples", "seed", "output", NULL};
    policy_req *r = api_alloc(c, 1, sizeof *r);
    if (!r || api_keys(c, root, NULL, keys) || api_read_output(c, root)) return -1;
    c->state = r;
    gs_sac_policy_job *j = &r->job;
    int has_seed;
    if (api_top_matrix(c, root, "q", 0, &r->dist) || api_read_alpha(c, root, &j->alpha) ||
        api_read_samples(c, root, 0, 0, &j->samples, NULL) ||
        api_read_seed(c, root, &r->seed, &has_seed))
        return -1;
    const api_dist *d = &r->dist;
    size_t B = d->d.rows, K = d->d.dim, M = j->samples;
    j->rows = B;
    j->K = K;
    j->q = d->d.logits;
    gs_rng_init(&j->rng, r->seed);
    if (api_charge(c, B, M > 1 ? M : 1, K)) return -1;
    if (!(j->probs = api_alloc(c, B * K, sizeof(double))) ||
        !(j->log_probs = api_alloc(c, B * K, sizeof(double))) ||
        !(j->entropy = api_alloc(c, B, sizeof(double))) ||
        !(j->value = api_alloc(c, B, sizeof(double))) ||
        (M && !(j->actions = api_alloc(c, B * M, sizeof(int64_t)))))
        return -1;
    c->rows = B;
    c->samples = B * M;
    return 0;
}

int api_sac_policy_run(api_ctx *c) {
    policy_req *r = c->state;
    gs_sac_policy_job *j = &r->job;
    const api_dist *d = &r->dist;
    size_t B = j->rows;
    if (api_run_rows(c, (api_kernel)gs_sac_policy, j, B, j->K * (j->samples + 1), dist_error))
        return -1;
    size_t dims[2] = {B, j->K}, mdims[2] = {B, j->samples};
    api_buf *b = &c->out;
    w_obj_begin(b);
    if (j->samples) {
        w_key(b, "seed");
        w_int(b, (int64_t)r->seed);
    }
    w_key(b, "probs");
    api_write_rows(c, d->single, j->probs, NULL, 2, dims);
    w_key(b, "log_probs");
    api_write_rows(c, d->single, j->log_probs, NULL, 2, dims);
    w_key(b, "entropy");
    api_write_rows(c, d->single, j->entropy, NULL, 1, dims);
    w_key(b, "value");
    api_write_rows(c, d->single, j->value, NULL, 1, dims);
    if (j->samples) {
        w_key(b, "actions");
        api_write_rows(c, d->single, NULL, j->actions, 2, mdims);
    }
    w_obj_end(b);
    return 0;
}

/* ==== /v1/sac/continuous/actor ======================================================== */

typedef struct {
    api_dist dist;
    gs_sac_continuous_job job;
    api_noise noise;
    double target;
    int has_target;
    double alpha_loss, se_alpha_loss;
} cont_req;

int api_sac_continuous_parse(api_ctx *c, json_t *root) {
    static const char *const keys[] = {"distribution", "alpha", "eps", "seed", "samples",
                                       "dq_da", "q", "target_entropy", "output", NULL};
    cont_req *r = api_alloc(c, 1, sizeof *r);
    if (!r || api_keys(c, root, NULL, keys) || api_read_output(c, root)) return -1;
    c->state = r;
    gs_sac_continuous_job *j = &r->job;
    if (api_dist_parse(c, root, "distribution", API_TANH, &r->dist) ||
        api_read_alpha(c, root, &j->alpha) ||
        api_read_target(c, root, &r->target, &r->has_target))
        return -1;
    const api_dist *d = &r->dist;
    api_arr dq, q;
    int has_q;
    if (api_read_noise(c, root, d, &r->noise) ||
        api_per_sample(c, root, "dq_da", d, 3, 0, 1, &r->noise, &dq, NULL) ||
        api_per_sample(c, root, "q", d, 2, 0, 0, &r->noise, &q, &has_q))
        return -1;
    size_t B = d->d.rows, M = r->noise.M, D = d->d.dim;
    j->dist = d->d;
    j->samples = M;
    j->noise = r->noise.noise;
    j->dq_da = dq.f;
    j->q = has_q ? q.f : NULL;
    if (api_charge(c, B, M, D)) return -1;
    if (!(j->entropy = api_alloc(c, B, sizeof(double))) ||
        !(j->log_prob = api_alloc(c, B * M, sizeof(double))) ||
        !(j->actions = api_alloc(c, B * M * D, sizeof(double))) ||
        (has_q && !(j->loss = api_alloc(c, B, sizeof(double)))) ||
        api_pgrad_alloc(c, d, &j->grad))
        return -1;
    if (M >= 2 && (!(j->se_entropy = api_alloc(c, B, sizeof(double))) ||
                   (has_q && !(j->se_loss = api_alloc(c, B, sizeof(double)))) ||
                   api_pgrad_alloc(c, d, &j->se_grad) || api_terms_alloc(c, d, M, &j->terms)))
        return -1;
    c->rows = B;
    c->samples = B * M;
    return 0;
}

int api_sac_continuous_run(api_ctx *c) {
    cont_req *r = c->state;
    gs_sac_continuous_job *j = &r->job;
    const api_dist *d = &r->dist;
    size_t B = d->d.rows, M = j->samples;
    if (api_run_rows(c, (api_kernel)gs_sac_continuous, j, B, M * d->d.dim, dist_error) ||
        api_dist_backward(c, &r->dist, &j->grad, &j->se_grad, &j->terms, M))
        return -1;
    if (r->has_target) {
        r->alpha_loss = gs_sac_alpha_loss(j->alpha, r->target, B, j->entropy, j->se_entropy,
                                          &r->se_alpha_loss);
        if (alpha_finite(c, r->alpha_loss) || alpha_finite(c, r->se_alpha_loss)) return -1;
    }
    size_t dims[3] = {B, M, d->d.dim};
    api_buf *b = &c->out;
    w_obj_begin(b);
    if (r->noise.from_seed) {
        w_key(b, "seed");
        w_int(b, (int64_t)r->noise.seed);
    }
    if (j->loss) {
        w_key(b, "loss");
        api_write_rows(c, d->single, j->loss, NULL, 1, dims);
    }
    w_key(b, "entropy");
    api_write_rows(c, d->single, j->entropy, NULL, 1, dims);
    w_key(b, "log_prob");
    api_write_rows(c, d->single, j->log_prob, NULL, 2, dims);
    w_key(b, "actions");
    api_write_rows(c, d->single, j->actions, NULL, 3, dims);
    w_key(b, "grad");
    api_write_pgrad(c, d, &j->grad, 0);
    if (j->se_entropy) {
        w_key(b, "stderr");
        w_obj_begin(b);
        if (j->se_loss) {
            w_key(b, "loss");
            api_write_rows(c, d->single, j->se_loss, NULL, 1, dims);
        }
        w_key(b, "entropy");
        api_write_rows(c, d->single, j->se_entropy, NULL, 1, dims);
        w_key(b, "grad");
        api_write_pgrad(c, d, &j->se_grad, 1);
        if (r->has_target) {
            /* the same Monte Carlo number twice, as alpha_loss and
             * grad_log_alpha are (API.md §11: every MC estimate's se) */
            w_key(b, "alpha_loss");
            w_double(b, r->se_alpha_loss);
            w_key(b, "grad_log_alpha");
            w_double(b, r->se_alpha_loss);
        }
        w_obj_end(b);
    }
    if (r->has_target) write_alpha(c, r->alpha_loss);
    w_obj_end(b);
    return 0;
}
