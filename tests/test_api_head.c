/* test_api_head.c - linear heads (API.md §8, MATH.md §8) on every endpoint: plain-parameter equivalence, chain rule, finite differences, standard errors, threads, errors. */
#include <cblas.h>

#include "test_api_util.h"

/* An assertion for hot loops: Check's ck_assert records every passing
 * check (a write per call in fork mode), which dominates loops over
 * thousands of values. */
#define CHECK(cond, ...)                                                                        \
    do {                                                                                        \
        if (!(cond)) ck_abort_msg(__VA_ARGS__);                                                 \
    } while (0)

/* ==== cases ============================================================================ */

enum {
    E_ENT_EXACT,
    E_ENT_SCORE,
    E_ENT_REPARAM,
    E_LOG_PROB,
    E_REPARAM,
    E_SCORE,
    E_SACD_EXACT,
    E_SACD_SAMPLED,
    E_SACC,
    E_SAMPLE,
    E_COUNT
};

#define T_CAT (1u << GS_CATEGORICAL)
#define T_NORMAL (1u << GS_NORMAL)
#define T_TANH (1u << GS_TANH_NORMAL)

static const struct {
    const char *op;
    unsigned types; /* distribution types the endpoint takes */
    int mc;         /* a Monte Carlo estimator: stderr when M >= 2 */
    int fd;         /* the gradient is that of a fixed-noise objective */
    int loo;        /* a baseline that needs M >= 2 ("none" is sent for M = 1) */
} EP[E_COUNT] = {
    [E_ENT_EXACT] = {"entropy", T_CAT | T_NORMAL, 0, 1, 0},
    [E_ENT_SCORE] = {"entropy", T_CAT | T_NORMAL | T_TANH, 1, 0, 1},
    [E_ENT_REPARAM] = {"entropy", T_NORMAL | T_TANH, 1, 1, 0},
    [E_LOG_PROB] = {"log_prob", T_CAT | T_NORMAL | T_TANH, 0, 1, 0},
    [E_REPARAM] = {"reparam", T_NORMAL | T_TANH, 1, 1, 0},
    [E_SCORE] = {"score", T_CAT | T_NORMAL | T_TANH, 1, 0, 1},
    [E_SACD_EXACT] = {"sac/discrete/actor", T_CAT, 0, 1, 0},
    [E_SACD_SAMPLED] = {"sac/discrete/actor", T_CAT, 1, 0, 1},
    [E_SACC] = {"sac/continuous/actor", T_TANH, 1, 1, 0},
    [E_SAMPLE] = {"sample", T_CAT | T_NORMAL | T_TANH, 0, 0, 0},
};

enum { RED_DEFAULT, RED_MEAN, RED_SUM };

/* One request with a head: the head, the parameters it produces, and the
 * endpoint's other inputs. */
typedef struct {
    int ep;
    gs_dist_type type;
    int bias, red, single, bounds;
    int none;       /* baseline "none" (always sent for M = 1 where loo needs two) */
    size_t B, M, in, out;
    int nh;         /* 1 (logits) or 2 (loc, log_scale) */
    uint64_t seed;  /* the service's seed, for endpoints that sample */
    double r;       /* 1/B (mean) or 1 (sum) */
    double *F;      /* B x in */
    double *W[2];   /* out x in */
    double *bv[2];  /* out, or NULL */
    double *P[2];   /* B x out: what the head produces (gs_head_forward) */
    double *low, *high;
    int64_t *act;   /* log_prob x (categorical) or the actor's sampled actions */
    double *x, *gx, *glp, *f, *q, *dq;
    double alpha;
} hcase;

static const char *pname(const hcase *c, int i) {
    return c->nh == 1 ? "logits" : i ? "log_scale" : "loc";
}

/* The head layer's path in grad (or stderr.grad): "grad.head" or "grad.head.loc". */
static void layer_path(char *buf, size_t n, const char *base, const hcase *c, int i) {
    if (c->nh == 1) snprintf(buf, n, "%s.head", base);
    else snprintf(buf, n, "%s.head.%s", base, pname(c, i));
}

static void gemm_params(hcase *c) {
    for (int i = 0; i < c->nh; i++) {
        gs_head h = {c->B, c->in, c->out, c->F, c->W[i], c->bv[i]};
        c->P[i] = malloc(c->B * c->out * sizeof(double));
        for (size_t k = 0; k < gs_head_blocks(c->B); k++) gs_head_forward(&h, k, c->P[i]);
    }
}

/* Rows [r0, r1) of head i's parameters by a triple loop, into P (B x out). */
static void naive_params(const hcase *c, int i, size_t r0, size_t r1, double *P,
                         double *absterms) {
    for (size_t b = r0; b < r1; b++)
        for (size_t o = 0; o < c->out; o++) {
            double s = c->bv[i] ? c->bv[i][o] : 0.0, a = fabs(s);
            for (size_t j = 0; j < c->in; j++) {
                double t = c->F[b * c->in + j] * c->W[i][o * c->in + j];
                s += t;
                a += fabs(t);
            }
            P[b * c->out + o] = s;
            if (absterms) absterms[b * c->out + o] = a;
        }
}

static hcase hcase_make(int ep, gs_dist_type type, int bias, int red, size_t B, int single,
                        size_t M, uint64_t seed) {
    uint64_t st = seed * 2654435761u + 99;
    hcase c = {0};
    c.ep = ep;
    c.type = type;
    c.bias = bias;
    c.red = red;
    c.single = single;
    c.bounds = type == GS_TANH_NORMAL && bias; /* both with and without bounds */
    c.B = B;
    c.M = M;
    c.in = 4;
    c.out = 3;
    c.nh = type == GS_CATEGORICAL ? 1 : 2;
    c.seed = 1000 + seed;
    c.r = red == RED_SUM ? 1.0 : 1.0 / (double)B;
    c.alpha = 0.3;
    size_t in = c.in, out = c.out, D = out;
    c.F = rnd_fill(&st, B * in, -1, 1);
    if (type == GS_CATEGORICAL) {
        c.W[0] = rnd_fill(&st, out * in, -0.6, 0.6);
        if (bias) c.bv[0] = rnd_fill(&st, out, -0.5, 0.5);
    } else {
        c.W[0] = rnd_fill(&st, out * in, -0.3, 0.3);
        c.W[1] = rnd_fill(&st, out * in, -0.15, 0.15);
        if (bias) {
            c.bv[0] = rnd_fill(&st, out, -0.3, 0.3);
            c.bv[1] = rnd_fill(&st, out, -0.6, -0.2);
        }
    }
    if (c.bounds) {
        c.low = rnd_fill(&st, D, -3, -1);
        c.high = rnd_fill(&st, D, 1, 3);
    }
    gemm_params(&c);
    /* The service's forward pass (the same call) against a triple loop. */
    double *ref = malloc(B * out * sizeof *ref), *abs_ = malloc(B * out * sizeof *abs_);
    for (int i = 0; i < c.nh; i++) {
        naive_params(&c, i, 0, B, ref, abs_);
        for (size_t k = 0; k < B * out; k++)
            CHECK(fabs(c.P[i][k] - ref[k]) <= 1e-12 * abs_[k],
                  "forward [%zu]: %.17g vs %.17g", k, c.P[i][k], ref[k]);
    }
    free(ref);
    free(abs_);
    switch (ep) {
    case E_LOG_PROB:
        if (type == GS_CATEGORICAL) {
            c.act = malloc(B * M * sizeof *c.act);
            for (size_t k = 0; k < B * M; k++) c.act[k] = (int64_t)rnd(&st, 0, (double)out);
        } else {
            c.x = rnd_fill(&st, B * M * D, -1.5, 1.5);
            if (type == GS_TANH_NORMAL)
                for (size_t k = 0; k < B * M * D; k++) {
                    size_t d = k % D;
                    double lo = c.low ? c.low[d] : -1, hi = c.high ? c.high[d] : 1;
                    c.x[k] = 0.5 * (hi + lo) + 0.5 * (hi - lo) * tanh(c.x[k]);
                }
        }
        break;
    case E_REPARAM:
        c.gx = rnd_fill(&st, B * M * D, -1, 1);
        c.glp = rnd_fill(&st, B * M, -1, 1);
        break;
    case E_SCORE: c.f = rnd_fill(&st, B * M, -2, 2); break;
    case E_SACD_EXACT: c.q = rnd_fill(&st, B * out, -3, 3); break;
    case E_SACD_SAMPLED:
        c.act = malloc(B * M * sizeof *c.act);
        for (size_t k = 0; k < B * M; k++) c.act[k] = (int64_t)rnd(&st, 0, (double)out);
        c.q = rnd_fill(&st, B * M, -3, 3);
        break;
    case E_SACC:
        c.dq = rnd_fill(&st, B * M * D, -1, 1);
        c.q = rnd_fill(&st, B * M, -3, 3);
        break;
    default: break;
    }
    return c;
}

static void hcase_free(hcase *c) {
    free(c->F);
    for (int i = 0; i < 2; i++) {
        free(c->W[i]);
        free(c->bv[i]);
        free(c->P[i]);
    }
    free(c->low);
    free(c->high);
    free(c->act);
    free(c->x);
    free(c->gx);
    free(c->glp);
    free(c->f);
    free(c->q);
    free(c->dq);
}

/* ==== request bodies ======================================================================= */

/* sb_arr with one snprintf per number (sb_printf formats twice): the bodies
 * of 1000 rows hold tens of thousands of numbers. */
static void sb_fast_rec(sb *s, const double *f, const int64_t *i, size_t rank, const size_t *dims,
                        size_t *pos) {
    char buf[40];
    if (rank == 0) {
        int n = f ? snprintf(buf, sizeof buf, "%.17g", f[*pos])
                  : snprintf(buf, sizeof buf, "%lld", (long long)i[*pos]);
        (*pos)++;
        if (s->len + (size_t)n + 1 > s->cap) sb_printf(s, "%s", buf);
        else {
            memcpy(s->p + s->len, buf, (size_t)n + 1);
            s->len += (size_t)n;
        }
        return;
    }
    sb_printf(s, "[");
    for (size_t k = 0; k < dims[0]; k++) {
        if (k) sb_printf(s, ",");
        sb_fast_rec(s, f, i, rank - 1, dims + 1, pos);
    }
    sb_printf(s, "]");
}

static void sb_fast(sb *s, const double *f, const int64_t *i, size_t rank, const size_t *dims) {
    size_t pos = 0;
    sb_fast_rec(s, f, i, rank, dims, &pos);
}

/* A batch-indexed array: dims {B, d1, d2} up to rank; single drops the batch axis. */
static void sb_batch(sb *s, const hcase *c, const double *f, const int64_t *i, size_t rank,
                     size_t d1, size_t d2) {
    size_t dims[3] = {c->B, d1, d2};
    if (c->single) sb_fast(s, f, i, rank - 1, dims + 1);
    else sb_fast(s, f, i, rank, dims);
}

static void sb_layer(sb *s, const hcase *c, int i) {
    size_t dw[2] = {c->out, c->in};
    sb_printf(s, "\"weight\":");
    sb_arr(s, c->W[i], NULL, 2, dw);
    if (c->bv[i]) {
        sb_printf(s, ",\"bias\":");
        sb_arr(s, c->bv[i], NULL, 1, &c->out);
    }
}

static void sb_head(sb *s, const hcase *c) {
    sb_printf(s, "\"head\":{\"features\":");
    sb_batch(s, c, c->F, NULL, 2, c->in, 0);
    if (c->nh == 1) {
        sb_printf(s, ",");
        sb_layer(s, c, 0);
    } else {
        for (int i = 0; i < 2; i++) {
            sb_printf(s, ",\"%s\":{", pname(c, i));
            sb_layer(s, c, i);
            sb_printf(s, "}");
        }
    }
    sb_printf(s, "}");
    if (c->red == RED_MEAN) sb_printf(s, ",\"reduction\":\"mean\"");
    if (c->red == RED_SUM) sb_printf(s, ",\"reduction\":\"sum\"");
}

/* The parameters P as plain fields. */
static void sb_params(sb *s, const hcase *c) {
    for (int i = 0; i < c->nh; i++) {
        sb_printf(s, "%s\"%s\":", i ? "," : "", pname(c, i));
        sb_batch(s, c, c->P[i], NULL, 2, c->out, 0);
    }
}

/* The endpoint's fields after the distribution (with a leading comma). */
static void sb_extra(sb *s, const hcase *c) {
    size_t M = c->M, D = c->out;
    const char *none = EP[c->ep].loo && (M < 2 || c->none) ? ",\"baseline\":\"none\"" : "";
    switch (c->ep) {
    case E_ENT_EXACT: sb_printf(s, ",\"estimator\":\"exact\""); break;
    case E_ENT_SCORE:
        sb_printf(s, ",\"estimator\":\"score\",\"samples\":%zu,\"seed\":%llu%s", M,
                  (unsigned long long)c->seed, none);
        break;
    case E_ENT_REPARAM:
        sb_printf(s, ",\"estimator\":\"reparam\",\"samples\":%zu,\"seed\":%llu", M,
                  (unsigned long long)c->seed);
        break;
    case E_LOG_PROB:
        sb_printf(s, ",\"x\":");
        if (c->act) sb_batch(s, c, NULL, c->act, 2, M, 0);
        else sb_batch(s, c, c->x, NULL, 3, M, D);
        break;
    case E_REPARAM:
        sb_printf(s, ",\"seed\":%llu,\"samples\":%zu,\"grad_x\":", (unsigned long long)c->seed, M);
        sb_batch(s, c, c->gx, NULL, 3, M, D);
        sb_printf(s, ",\"grad_log_prob\":");
        sb_batch(s, c, c->glp, NULL, 2, M, 0);
        break;
    case E_SCORE:
        sb_printf(s, ",\"seed\":%llu,\"samples\":%zu%s,\"f\":", (unsigned long long)c->seed, M,
                  none);
        sb_batch(s, c, c->f, NULL, 2, M, 0);
        break;
    case E_SACD_EXACT:
        sb_printf(s, ",\"alpha\":");
        sb_dbl(s, c->alpha);
        sb_printf(s, ",\"q\":");
        sb_batch(s, c, c->q, NULL, 2, c->out, 0);
        break;
    case E_SACD_SAMPLED:
        sb_printf(s, ",\"alpha\":");
        sb_dbl(s, c->alpha);
        sb_printf(s, "%s,\"actions\":", none);
        sb_batch(s, c, NULL, c->act, 2, M, 0);
        sb_printf(s, ",\"q\":");
        sb_batch(s, c, c->q, NULL, 2, M, 0);
        break;
    case E_SACC:
        sb_printf(s, ",\"alpha\":");
        sb_dbl(s, c->alpha);
        sb_printf(s, ",\"seed\":%llu,\"samples\":%zu,\"dq_da\":", (unsigned long long)c->seed, M);
        sb_batch(s, c, c->dq, NULL, 3, M, D);
        sb_printf(s, ",\"q\":");
        sb_batch(s, c, c->q, NULL, 2, M, 0);
        break;
    case E_SAMPLE:
        sb_printf(s, ",\"samples\":%zu,\"seed\":%llu", M, (unsigned long long)c->seed);
        break;
    }
}

/* The request with the head (use_head) or with the parameters it produces;
 * extra: the endpoint's other fields as sb_extra writes them (NULL: write them). */
static char *hcase_body_with(const hcase *c, int use_head, const char *extra) {
    sb s = {0};
    int sacd = c->ep == E_SACD_EXACT || c->ep == E_SACD_SAMPLED;
    if (sacd) {
        sb_printf(&s, "{");
        if (use_head) sb_head(&s, c);
        else sb_params(&s, c);
    } else {
        sb_printf(&s, "{\"distribution\":{\"type\":\"%s\",", tdist_type_name(c->type));
        if (use_head) sb_head(&s, c);
        else sb_params(&s, c);
        if (c->low) {
            sb_printf(&s, ",\"low\":");
            sb_arr(&s, c->low, NULL, 1, &c->out);
            sb_printf(&s, ",\"high\":");
            sb_arr(&s, c->high, NULL, 1, &c->out);
        }
        sb_printf(&s, "}");
    }
    if (extra) sb_printf(&s, "%s", extra);
    else sb_extra(&s, c);
    sb_printf(&s, "}");
    return sb_take(&s);
}

static char *hcase_body(const hcase *c, int use_head) { return hcase_body_with(c, use_head, NULL); }

/* ==== the core as the reference: objectives, per-sample terms ================================= */

typedef struct {
    double *obj;           /* B: the row's objective (fixed-noise endpoints) */
    gs_pgrad g, se, terms; /* B x out, B x out, B x M x out */
    double *s1, *s2, *s3, *s4, *lp, *xs, *xe;
} core_buf;

static core_buf core_alloc(const hcase *c) {
    size_t B = c->B, M = c->M, n = B * c->out, nm = B * M * c->out;
    core_buf o;
    o.obj = calloc(B, sizeof(double));
    o.g.p0 = calloc(n, sizeof(double));
    o.g.p1 = c->nh == 2 ? calloc(n, sizeof(double)) : NULL;
    o.se.p0 = calloc(n, sizeof(double));
    o.se.p1 = c->nh == 2 ? calloc(n, sizeof(double)) : NULL;
    o.terms.p0 = calloc(nm, sizeof(double));
    o.terms.p1 = c->nh == 2 ? calloc(nm, sizeof(double)) : NULL;
    o.s1 = calloc(B, sizeof(double));
    o.s2 = calloc(B, sizeof(double));
    o.s3 = calloc(B, sizeof(double));
    o.s4 = calloc(B, sizeof(double));
    o.lp = calloc(B * M, sizeof(double));
    o.xs = calloc(nm, sizeof(double));
    o.xe = calloc(nm, sizeof(double));
    return o;
}

static void core_free(core_buf *o) {
    free(o->obj);
    pgrad_free(&o->g);
    pgrad_free(&o->se);
    pgrad_free(&o->terms);
    free(o->s1);
    free(o->s2);
    free(o->s3);
    free(o->s4);
    free(o->lp);
    free(o->xs);
    free(o->xe);
}

/* Runs the endpoint's kernel on rows [r0, r1) with parameters P0, P1 (B x
 * out each): the row objectives in o->obj and, with se, the standard
 * errors and per-sample terms (M >= 2). The fixed-noise objectives are
 *   entropy exact/reparam: the entropy (estimate, -mean_m l(f(eps_m)));
 *   log_prob: sum_m log p(x_m);
 *   reparam: mean_m (grad_x_m . x_m + grad_log_prob_m log p(x_m));
 *   discrete actor exact: the loss sum_k p_k (alpha log p_k - Q_k);
 *   continuous actor: mean_m (alpha log p(a_m) - dq_da_m . a_m);
 * with the noise (seed, row, m) held fixed. */
static void core_run(const hcase *c, const double *P0, const double *P1, size_t r0, size_t r1,
                     core_buf *o, int se) {
    gs_dist d = {0};
    d.type = c->type;
    d.rows = c->B;
    d.dim = c->out;
    if (c->type == GS_CATEGORICAL) d.logits = P0;
    else {
        d.loc = P0;
        d.scale = P1;
        d.low = c->low;
        d.high = c->high;
    }
    size_t M = c->M, D = c->out;
    int want_se = se && EP[c->ep].mc && M >= 2;
    gs_baseline bl = M >= 2 && !c->none ? GS_BASELINE_LOO : GS_BASELINE_NONE;
    gs_rng rng;
    gs_rng_init(&rng, c->seed);
    gs_noise noise = {NULL, rng};
    gs_error e;
    int rc = 0;
    switch (c->ep) {
    case E_ENT_EXACT:
    case E_ENT_SCORE:
    case E_ENT_REPARAM: {
        gs_entropy_job j = {0};
        j.dist = d;
        j.estimator = c->ep == E_ENT_EXACT   ? GS_EST_EXACT
                      : c->ep == E_ENT_SCORE ? GS_EST_SCORE
                                             : GS_EST_REPARAM;
        j.baseline = bl;
        j.samples = c->ep == E_ENT_EXACT ? 1 : M;
        j.rng = rng;
        j.noise = noise;
        j.entropy = o->s1;
        j.grad = o->g;
        if (want_se) {
            j.se_entropy = o->s2;
            j.se_grad = o->se;
            j.terms = o->terms;
        }
        rc = gs_entropy(&j, r0, r1, &e);
        for (size_t b = r0; b < r1; b++) o->obj[b] = o->s1[b];
        break;
    }
    case E_LOG_PROB: {
        gs_log_prob_job j = {0};
        j.dist = d;
        j.samples = M;
        j.actions = c->act;
        j.x = c->x;
        j.log_prob = o->lp;
        j.grad = o->g;
        rc = gs_log_prob(&j, r0, r1, &e);
        for (size_t b = r0; b < r1; b++) {
            o->obj[b] = 0.0;
            for (size_t m = 0; m < M; m++) o->obj[b] += o->lp[b * M + m];
        }
        break;
    }
    case E_REPARAM: {
        gs_reparam_job j = {0};
        j.dist = d;
        j.samples = M;
        j.noise = noise;
        j.grad_x = c->gx;
        j.grad_log_prob = c->glp;
        j.x = o->xs;
        j.log_prob = o->lp;
        j.grad = o->g;
        if (want_se) {
            j.se_grad = o->se;
            j.terms = o->terms;
        }
        rc = gs_reparam(&j, r0, r1, &e);
        for (size_t b = r0; b < r1; b++) {
            double s = 0.0;
            for (size_t m = 0; m < M; m++) {
                s += c->glp[b * M + m] * o->lp[b * M + m];
                for (size_t k = 0; k < D; k++)
                    s += c->gx[(b * M + m) * D + k] * o->xs[(b * M + m) * D + k];
            }
            o->obj[b] = s / (double)M;
        }
        break;
    }
    case E_SCORE: {
        gs_score_job j = {0};
        j.dist = d;
        j.samples = M;
        if (c->type == GS_CATEGORICAL) j.rng = &rng;
        else j.noise = &noise;
        j.f = c->f;
        j.baseline = bl;
        j.value = o->s1;
        j.grad = o->g;
        if (want_se) {
            j.se_value = o->s2;
            j.se_grad = o->se;
            j.terms = o->terms;
        }
        rc = gs_score(&j, r0, r1, &e);
        break;
    }
    case E_SACD_EXACT:
    case E_SACD_SAMPLED: {
        gs_sac_discrete_job j = {0};
        j.dist = d;
        j.alpha = c->alpha;
        j.q = c->q;
        j.actions = c->ep == E_SACD_SAMPLED ? c->act : NULL;
        j.samples = c->ep == E_SACD_SAMPLED ? M : 1;
        j.baseline = bl;
        j.loss = o->s1;
        j.entropy = o->s2;
        j.grad = o->g;
        if (want_se) {
            j.se_loss = o->s3;
            j.se_grad = o->se;
            j.terms = o->terms;
        }
        rc = gs_sac_discrete(&j, r0, r1, &e);
        for (size_t b = r0; b < r1; b++) o->obj[b] = o->s1[b];
        break;
    }
    case E_SACC: {
        gs_sac_continuous_job j = {0};
        j.dist = d;
        j.alpha = c->alpha;
        j.samples = M;
        j.noise = noise;
        j.dq_da = c->dq;
        j.q = c->q;
        j.loss = o->s1;
        j.entropy = o->s2;
        j.log_prob = o->lp;
        j.actions = o->xs;
        j.grad = o->g;
        if (want_se) {
            j.se_loss = o->s3;
            j.se_entropy = o->s4;
            j.se_grad = o->se;
            j.terms = o->terms;
        }
        rc = gs_sac_continuous(&j, r0, r1, &e);
        for (size_t b = r0; b < r1; b++) {
            double s = 0.0;
            for (size_t m = 0; m < M; m++) {
                s += c->alpha * o->lp[b * M + m];
                for (size_t k = 0; k < D; k++)
                    s -= c->dq[(b * M + m) * D + k] * o->xs[(b * M + m) * D + k];
            }
            o->obj[b] = s / (double)M;
        }
        break;
    }
    default: ck_abort_msg("no kernel for endpoint %d", c->ep);
    }
    CHECK(rc == 0, "core kernel failed: status %d input %d row %ld", rc, e.input, e.row);
}

/* ==== response checks ========================================================================= */

static void flat_rec(json_t *v, double *out, size_t *pos, size_t n, const char *path) {
    if (json_is_array(v)) {
        for (size_t k = 0; k < json_array_size(v); k++)
            flat_rec(json_array_get(v, k), out, pos, n, path);
        return;
    }
    CHECK(json_is_number(v), "%s: element %zu is not a number", path, *pos);
    CHECK(*pos < n, "%s: more than %zu values", path, n);
    out[(*pos)++] = json_number_value(v);
}

/* The n numbers of the response member at a dotted path, malloc'd. */
static double *resp_arr(json_t *root, const char *path, size_t n) {
    json_t *v = jget(root, path);
    CHECK(v != NULL, "%s missing", path);
    double *out = malloc(n * sizeof *out);
    size_t pos = 0;
    flat_rec(v, out, &pos, n, path);
    CHECK(pos == n, "%s: %zu values, want %zu", path, pos, n);
    return out;
}

/* Asserts v is an array of the given shape (nested JSON arrays). */
static void expect_shape(json_t *v, size_t rank, const size_t *dims, const char *what) {
    for (size_t d = 0; d < rank; d++) {
        ck_assert_msg(json_is_array(v), "%s: not an array at axis %zu", what, d);
        ck_assert_msg(json_array_size(v) == dims[d], "%s: axis %zu has %zu, want %zu", what, d,
                      json_array_size(v), dims[d]);
        v = json_array_get(v, 0);
    }
    ck_assert_msg(json_is_number(v), "%s: rank above %zu", what, rank);
}

/* grad.head (or stderr.grad.head) mirrors the request: keys and shapes. */
static void expect_head_keys(json_t *h, const hcase *c, const char *what) {
    ck_assert_msg(json_is_object(h), "%s: no head object", what);
    size_t dw[2] = {c->out, c->in}, df[2] = {c->B, c->in};
    const char *k1[] = {"weight", "bias", "features", NULL};
    const char *k1n[] = {"weight", "features", NULL};
    const char *k2[] = {"loc", "log_scale", "features", NULL};
    const char *kl[] = {"weight", "bias", NULL};
    const char *kln[] = {"weight", NULL};
    char w[128];
    snprintf(w, sizeof w, "%s.features", what);
    if (c->single) expect_shape(json_object_get(h, "features"), 1, df + 1, w);
    else expect_shape(json_object_get(h, "features"), 2, df, w);
    if (c->nh == 1) {
        expect_keys(h, c->bias ? k1 : k1n);
        expect_shape(json_object_get(h, "weight"), 2, dw, what);
        if (c->bias) expect_shape(json_object_get(h, "bias"), 1, dw, what);
        return;
    }
    expect_keys(h, k2);
    for (int i = 0; i < 2; i++) {
        json_t *l = json_object_get(h, pname(c, i));
        expect_keys(l, c->bias ? kl : kln);
        expect_shape(json_object_get(l, "weight"), 2, dw, what);
        if (c->bias) expect_shape(json_object_get(l, "bias"), 1, dw, what);
    }
}

/* |got - want| <= 1e-12 of the sum of the absolute terms of want. */
#define ck_terms(got, want, absterms, what, i)                                                  \
    do {                                                                                        \
        double g_ = (got), w_ = (want), a_ = (absterms);                                        \
        CHECK(fabs(g_ - w_) <= 1e-12 * a_ + 1e-300,                                            \
              "%s[%zu] = %.17g, want %.17g (diff %.3g, terms %.3g)", (what), (size_t)(i), g_,  \
              w_, g_ - w_, a_);                                                                 \
    } while (0)

typedef struct {
    double *G[2], *S[2];          /* per-row gradients and standard errors from the response */
    double *dw[2], *db[2], *df;   /* grad.head */
    double *sw[2], *sb[2], *sf;   /* stderr.grad.head */
} head_resp;

static head_resp read_head_resp(json_t *j, const hcase *c, int se) {
    head_resp h = {0};
    size_t B = c->B, in = c->in, out = c->out;
    char p[128];
    for (int i = 0; i < c->nh; i++) {
        snprintf(p, sizeof p, "grad.%s", pname(c, i));
        h.G[i] = resp_arr(j, p, B * out);
        layer_path(p, sizeof p, "grad", c, i);
        strcat(p, ".weight");
        h.dw[i] = resp_arr(j, p, out * in);
        if (c->bias) {
            layer_path(p, sizeof p, "grad", c, i);
            strcat(p, ".bias");
            h.db[i] = resp_arr(j, p, out);
        }
        if (se) {
            snprintf(p, sizeof p, "stderr.grad.%s", pname(c, i));
            h.S[i] = resp_arr(j, p, B * out);
            layer_path(p, sizeof p, "stderr.grad", c, i);
            strcat(p, ".weight");
            h.sw[i] = resp_arr(j, p, out * in);
            if (c->bias) {
                layer_path(p, sizeof p, "stderr.grad", c, i);
                strcat(p, ".bias");
                h.sb[i] = resp_arr(j, p, out);
            }
        }
    }
    h.df = resp_arr(j, "grad.head.features", B * in);
    if (se) h.sf = resp_arr(j, "stderr.grad.head.features", B * in);
    return h;
}

static void head_resp_free(head_resp *h) {
    for (int i = 0; i < 2; i++) {
        free(h->G[i]);
        free(h->S[i]);
        free(h->dw[i]);
        free(h->db[i]);
        free(h->sw[i]);
        free(h->sb[i]);
    }
    free(h->df);
    free(h->sf);
}

/* MATH.md §8 from the response's own per-row gradients: dW = r G^T F,
 * db = r sum G, dF = sum over heads of G W (per row, never scaled); and the
 * standard errors of independent rows: r sqrt(sum S^2 F^2), r sqrt(sum S^2). */
static void expect_chain_rule(const hcase *c, const head_resp *h) {
    size_t B = c->B, in = c->in, out = c->out;
    for (int i = 0; i < c->nh; i++)
        for (size_t o = 0; o < out; o++) {
            for (size_t jj = 0; jj < in; jj++) {
                double s = 0.0, a = 0.0, v = 0.0;
                for (size_t b = 0; b < B; b++) {
                    double t = h->G[i][b * out + o] * c->F[b * in + jj];
                    s += t;
                    a += fabs(t);
                    if (h->S[i]) {
                        double u = h->S[i][b * out + o] * c->F[b * in + jj];
                        v += u * u;
                    }
                }
                ck_terms(h->dw[i][o * in + jj], c->r * s, c->r * a, "weight", o * in + jj);
                if (h->sw[i])
                    ck_terms(h->sw[i][o * in + jj], c->r * sqrt(v), c->r * sqrt(v),
                             "stderr weight", o * in + jj);
            }
            if (c->bias) {
                double s = 0.0, a = 0.0, v = 0.0;
                for (size_t b = 0; b < B; b++) {
                    s += h->G[i][b * out + o];
                    a += fabs(h->G[i][b * out + o]);
                    if (h->S[i]) v += h->S[i][b * out + o] * h->S[i][b * out + o];
                }
                ck_terms(h->db[i][o], c->r * s, c->r * a, "bias", o);
                if (h->sb[i])
                    ck_terms(h->sb[i][o], c->r * sqrt(v), c->r * sqrt(v), "stderr bias", o);
            }
        }
    for (size_t b = 0; b < B; b++)
        for (size_t jj = 0; jj < in; jj++) {
            double s = 0.0, a = 0.0;
            for (int i = 0; i < c->nh; i++)
                for (size_t o = 0; o < out; o++) {
                    double t = h->G[i][b * out + o] * c->W[i][o * in + jj];
                    s += t;
                    a += fabs(t);
                }
            ck_terms(h->df[b * in + jj], s, a, "features", b * in + jj);
        }
}

/* The features' standard errors from the core's per-sample terms: the
 * samples of a row drive both heads, so each sample's feature term is
 * sum_i T_i[m] W_i and se = std over m / sqrt(M). */
static void expect_features_se(const hcase *c, const head_resp *h, core_buf *o) {
    size_t B = c->B, M = c->M, in = c->in, out = c->out;
    core_run(c, c->P[0], c->P[1], 0, B, o, 1);
    const double *T[2] = {o->terms.p0, o->terms.p1};
    double *P = malloc(M * in * sizeof *P);
    for (size_t b = 0; b < B; b++) {
        double scale = 0.0;
        for (size_t m = 0; m < M; m++)
            for (size_t jj = 0; jj < in; jj++) {
                double s = 0.0;
                for (int i = 0; i < c->nh; i++)
                    for (size_t k = 0; k < out; k++)
                        s += T[i][(b * M + m) * out + k] * c->W[i][k * in + jj];
                P[m * in + jj] = s;
                scale = fmax(scale, fabs(s));
            }
        for (size_t jj = 0; jj < in; jj++) {
            double mean = 0.0, ss = 0.0;
            for (size_t m = 0; m < M; m++) mean += P[m * in + jj];
            mean /= (double)M;
            for (size_t m = 0; m < M; m++) ss += (P[m * in + jj] - mean) * (P[m * in + jj] - mean);
            double want = sqrt(ss / (double)(M - 1) / (double)M), got = h->sf[b * in + jj];
            CHECK(fabs(got - want) <= 1e-12 * want + 1e-13 * scale,
                  "stderr features[%zu][%zu] = %.17g, want %.17g", b, jj, got, want);
        }
    }
    free(P);
}

/* ---- finite differences of the fixed-noise objective ------------------------------------ */

#define FD_H 1e-6
#define FD_RTOL 1e-6

/* r sum_b obj_b over every row with parameters P0, P1; *mag gets r sum |obj_b| + r B. */
static double batch_objective(const hcase *c, const double *P0, const double *P1, core_buf *o,
                              double *mag) {
    core_run(c, P0, P1, 0, c->B, o, 0);
    double s = 0.0, a = 0.0;
    for (size_t b = 0; b < c->B; b++) {
        s += o->obj[b];
        a += 1.0 + fabs(o->obj[b]);
    }
    if (mag) *mag = c->r * a;
    return c->r * s;
}

/* Agreement to FD_RTOL relative, plus the rounding noise of the objective
 * (1e-14 of its magnitude, over the step): the objective of 1000 rows summed
 * is known to about that, not to one ulp. */
static void expect_fd(double g, double fd, double mag, double step, const char *what, size_t i) {
    double tol = FD_RTOL * fmax(fabs(g), fabs(fd)) + 1e-14 * mag / step;
    CHECK(fabs(g - fd) <= tol, "%s[%zu]: gradient %.12g, central difference %.12g "
          "(diff %.3g, tol %.3g)", what, i, g, fd, g - fd, tol);
}

/* Central differences in every weight and bias of the batch objective, and
 * in every feature of each row's own objective. */
static void expect_finite_differences(hcase *c, const head_resp *h, core_buf *o) {
    size_t B = c->B, in = c->in, out = c->out;
    double *Pt[2] = {NULL, NULL};
    for (int i = 0; i < c->nh; i++) {
        Pt[i] = malloc(B * out * sizeof(double));
        memcpy(Pt[i], c->P[i], B * out * sizeof(double));
    }
    double mag;
    batch_objective(c, c->P[0], c->P[1], o, &mag);
    for (int i = 0; i < c->nh; i++) {
        /* weight (o, j) then bias o; the parameters of head i recomputed. */
        size_t nparam = out * in + (c->bias ? out : 0);
        for (size_t k = 0; k < nparam; k++) {
            int isb = k >= out * in;
            double *p = isb ? &c->bv[i][k - out * in] : &c->W[i][k];
            double p0 = *p, step = FD_H * fmax(1.0, fabs(p0)), hi = p0 + step, lo = p0 - step;
            *p = hi;
            naive_params(c, i, 0, B, Pt[i], NULL);
            double jp = batch_objective(c, Pt[0], Pt[1], o, NULL);
            *p = lo;
            naive_params(c, i, 0, B, Pt[i], NULL);
            double jm = batch_objective(c, Pt[0], Pt[1], o, NULL);
            *p = p0;
            naive_params(c, i, 0, B, Pt[i], NULL);
            double fd = (jp - jm) / (hi - lo);
            size_t oo = isb ? k - out * in : k / in;
            char w[64];
            snprintf(w, sizeof w, "%s %s", pname(c, i), isb ? "bias" : "weight");
            expect_fd(isb ? h->db[i][oo] : h->dw[i][k], fd, mag, hi - lo, w, isb ? oo : k);
        }
    }
    /* features: row b's own objective, unscaled; on large batches the rows
     * around every block edge and a few others (the chain-rule check covers
     * every row exactly). */
    for (size_t b = 0; b < B; b++) {
        size_t e = b % GS_HEAD_BLOCK;
        if (B > 64 && !(e <= 1 || e >= GS_HEAD_BLOCK - 2 || b + 2 >= B || b % 97 == 0)) continue;
        double m0 = 1.0 + fabs(o->obj[b]);
        for (size_t jj = 0; jj < in; jj++) {
            double *p = &c->F[b * in + jj];
            double p0 = *p, step = FD_H * fmax(1.0, fabs(p0)), hi = p0 + step, lo = p0 - step;
            double v[2];
            for (int s = 0; s < 2; s++) {
                *p = s ? lo : hi;
                for (int i = 0; i < c->nh; i++) naive_params(c, i, b, b + 1, Pt[i], NULL);
                core_run(c, Pt[0], Pt[1], b, b + 1, o, 0);
                v[s] = o->obj[b];
            }
            *p = p0;
            for (int i = 0; i < c->nh; i++) naive_params(c, i, b, b + 1, Pt[i], NULL);
            expect_fd(h->df[b * in + jj], (v[0] - v[1]) / (hi - lo), m0, hi - lo, "features",
                      b * in + jj);
        }
    }
    free(Pt[0]);
    free(Pt[1]);
}

/* ---- one case end to end ----------------------------------------------------------------- */

/* A deep copy of j without grad.head and stderr.grad.head. */
static json_t *strip_head(json_t *j) {
    json_t *s = json_deep_copy(j);
    json_t *g = json_object_get(s, "grad");
    if (g) json_object_del(g, "head");
    g = jget(s, "stderr.grad");
    if (g) json_object_del(g, "head");
    return s;
}

static void run_case(int ep, gs_dist_type type, int bias, int red, size_t B, int single,
                     size_t M, int threads) {
    uint64_t seed = (uint64_t)ep * 1000 + (uint64_t)type * 100 + (uint64_t)bias * 10 +
                    (uint64_t)red + B + M;
    hcase c = hcase_make(ep, type, bias, red, B, single, M, seed);
    const char *op = EP[ep].op;
    sb e = {0};
    sb_extra(&e, &c);
    char *extra = sb_take(&e);
    char *hb = hcase_body_with(&c, 1, extra), *pb = hcase_body_with(&c, 0, extra);
    free(extra);
    resp rh = call(op, hb);
    resp rp = call(op, pb);
    expect_ok(rh);
    expect_ok(rp);
    if (threads) {
        /* The same bytes with the rows split over a pool of `threads`
         * workers and the head's blocks spread over it. */
        api_limits lim;
        api_limits_default(&lim);
        lim.split_min = 1;
        size_t workers = (size_t)threads;
        api_exec x = pool_exec(&workers);
        size_t before = pool_call_count();
        resp par = call_with(op, hb, &lim, &x);
        ck_assert_msg(pool_call_count() >= before + 2, "%s: the rows and the head blocks were "
                      "not both run on the pool", op);
        expect_same_body(rh, par);
        resp_free(&par);
    }
    /* Everything but the head's gradients is the plain request's, to the bit:
     * the per-row parameter gradients, their standard errors, the values. */
    json_t *stripped = strip_head(rh.j);
    ck_assert_msg(json_equal(stripped, rp.j), "%s (%s, bias %d, B %zu): the head response "
                  "differs from the plain one:\n%.400s\n%.400s", op, tdist_type_name(type), bias,
                  B, rh.body, rp.body);
    json_decref(stripped);
    if (ep == E_SAMPLE) {
        ck_assert_ptr_null(json_object_get(rh.j, "grad"));
    } else {
        int se = EP[ep].mc && M >= 2;
        expect_head_keys(jget(rh.j, "grad.head"), &c, "grad.head");
        if (se) expect_head_keys(jget(rh.j, "stderr.grad.head"), &c, "stderr.grad.head");
        else if (json_object_get(rh.j, "stderr"))
            ck_assert_ptr_null(jget(rh.j, "stderr.grad.head"));
        if (EP[ep].mc) /* stderr exactly when M >= 2 */
            ck_assert_msg((json_object_get(rh.j, "stderr") != NULL) == se, "%s M %zu: stderr %s",
                          op, M, se ? "missing" : "present");
        else
            ck_assert_ptr_null(json_object_get(rh.j, "stderr"));
        head_resp h = read_head_resp(rh.j, &c, se);
        expect_chain_rule(&c, &h);
        core_buf o = core_alloc(&c);
        if (se) expect_features_se(&c, &h, &o);
        if (EP[ep].fd) expect_finite_differences(&c, &h, &o);
        core_free(&o);
        head_resp_free(&h);
    }
    resp_free(&rh);
    resp_free(&rp);
    free(hb);
    free(pb);
    hcase_free(&c);
}

/* Every type the endpoint takes, bias present and absent, both reductions,
 * one row (1-D features; M = 1 and M = 8 for Monte Carlo) and 1000 rows
 * (four blocks, the last partial), the latter also on 2, 3 or 4 threads. */
static void run_endpoint(int ep) {
    for (int type = 0; type < 3; type++) {
        if (!(EP[ep].types & (1u << type))) continue;
        for (int bias = 0; bias < 2; bias++)
            for (int red = RED_DEFAULT; red <= RED_SUM; red += 2) {
                if (EP[ep].mc) run_case(ep, (gs_dist_type)type, bias, red, 1, 1, 1, 0);
                run_case(ep, (gs_dist_type)type, bias, red, 1, 1, 8, 0);
                run_case(ep, (gs_dist_type)type, bias, red, 1000, 0, 8,
                         2 + (type + bias + red) % 3);
            }
    }
}

START_TEST(entropy_exact) { run_endpoint(E_ENT_EXACT); }
END_TEST
START_TEST(entropy_score) { run_endpoint(E_ENT_SCORE); }
END_TEST
START_TEST(entropy_reparam) { run_endpoint(E_ENT_REPARAM); }
END_TEST
START_TEST(log_prob) { run_endpoint(E_LOG_PROB); }
END_TEST
START_TEST(reparam) { run_endpoint(E_REPARAM); }
END_TEST
START_TEST(score) { run_endpoint(E_SCORE); }
END_TEST
START_TEST(sac_discrete_exact) { run_endpoint(E_SACD_EXACT); }
END_TEST
START_TEST(sac_discrete_sampled) { run_endpoint(E_SACD_SAMPLED); }
END_TEST
START_TEST(sac_continuous) { run_endpoint(E_SACC); }
END_TEST
START_TEST(sample) { run_endpoint(E_SAMPLE); }
END_TEST

/* "reduction": "mean" is the default: the same bytes with and without it;
 * "sum" is B times the mean for weight and bias, features unchanged. */
START_TEST(reduction_mean_is_the_default) {
    hcase c = hcase_make(E_ENT_EXACT, GS_NORMAL, 1, RED_DEFAULT, 300, 0, 1, 5);
    char *b0 = hcase_body(&c, 1);
    c.red = RED_MEAN;
    char *b1 = hcase_body(&c, 1);
    c.red = RED_SUM;
    char *b2 = hcase_body(&c, 1);
    resp r0 = call("entropy", b0), r1 = call("entropy", b1), r2 = call("entropy", b2);
    expect_ok(r0);
    expect_ok(r2);
    expect_same_body(r0, r1);
    const char *paths[] = {"grad.head.loc.weight", "grad.head.loc.bias",
                           "grad.head.log_scale.weight", "grad.head.log_scale.bias"};
    size_t ns[] = {12, 3, 12, 3};
    for (int k = 0; k < 4; k++) {
        double *m = resp_arr(r0.j, paths[k], ns[k]), *s = resp_arr(r2.j, paths[k], ns[k]);
        for (size_t i = 0; i < ns[k]; i++)
            ck_assert_msg(fabs(s[i] - 300.0 * m[i]) <= 1e-12 * fabs(s[i]) + 1e-300,
                          "%s[%zu]: sum %.17g, 300 x mean %.17g", paths[k], i, s[i], 300 * m[i]);
        free(m);
        free(s);
    }
    ck_assert(json_equal(jget(r0.j, "grad.head.features"), jget(r2.j, "grad.head.features")));
    /* A reduction without a head is a known field that does not apply. */
    resp p0 = call("entropy", "{\"distribution\":{\"type\":\"categorical\",\"logits\":[0.5,1]}}");
    resp p1 = call("entropy", "{\"distribution\":{\"type\":\"categorical\",\"logits\":[0.5,1],"
                              "\"reduction\":\"sum\"}}");
    expect_ok(p0);
    expect_same_body(p0, p1);
    resp_free(&p0);
    resp_free(&p1);
    resp_free(&r0);
    resp_free(&r1);
    resp_free(&r2);
    free(b0);
    free(b1);
    free(b2);
    hcase_free(&c);
}
END_TEST

/* Head arrays may be binary tensors too, and base64 output carries the head. */
START_TEST(tensors_in_and_out) {
    hcase c = hcase_make(E_SACD_EXACT, GS_CATEGORICAL, 1, RED_SUM, 5, 0, 1, 8);
    char *plain = hcase_body(&c, 1);
    float w32[12];
    for (int k = 0; k < 12; k++) w32[k] = (float)c.W[0][k];
    size_t df[2] = {5, 4}, dw[2] = {3, 4};
    char *ft = tensor_json("float64", 2, df, c.F, sizeof(double) * 20);
    char *wt = tensor_json("float32", 2, dw, w32, sizeof w32);
    /* The same request with tensors; float32 weights are widened, so compare
     * against a JSON request holding the widened values. */
    for (int k = 0; k < 12; k++) c.W[0][k] = (double)w32[k];
    free(c.P[0]);
    gemm_params(&c);
    char *widened = hcase_body(&c, 1);
    sb s = {0};
    sb_printf(&s, "{\"head\":{\"features\":%s,\"weight\":%s,\"bias\":", ft, wt);
    sb_arr(&s, c.bv[0], NULL, 1, &c.out);
    sb_printf(&s, "},\"reduction\":\"sum\",\"alpha\":");
    sb_dbl(&s, c.alpha);
    sb_printf(&s, ",\"q\":");
    size_t dq[2] = {5, 3};
    sb_arr(&s, c.q, NULL, 2, dq);
    sb_printf(&s, "}");
    char *tb = sb_take(&s);
    resp a = call("sac/discrete/actor", tb), b = call("sac/discrete/actor", widened);
    expect_ok(a);
    expect_same_body(a, b);
    expect_b64_matches("sac/discrete/actor", plain);
    resp_free(&a);
    resp_free(&b);
    free(plain);
    free(widened);
    free(ft);
    free(wt);
    free(tb);
    hcase_free(&c);
}
END_TEST

/* Head items in /v1/batch: each item's body is its direct response, also
 * when the items run on the pool and their head blocks run on it inside
 * them (nested run()). */
START_TEST(batch_items_with_heads) {
    hcase cs[3] = {hcase_make(E_ENT_REPARAM, GS_TANH_NORMAL, 1, RED_SUM, 600, 0, 4, 21),
                   hcase_make(E_SACD_SAMPLED, GS_CATEGORICAL, 0, RED_DEFAULT, 300, 0, 4, 22),
                   hcase_make(E_LOG_PROB, GS_NORMAL, 1, RED_DEFAULT, 1, 1, 3, 23)};
    char *bodies[3];
    sb s = {0};
    sb_printf(&s, "{\"requests\":[");
    for (int k = 0; k < 3; k++) {
        bodies[k] = hcase_body(&cs[k], 1);
        sb_printf(&s, "%s{\"op\":\"%s\",\"body\":%s}", k ? "," : "", EP[cs[k].ep].op, bodies[k]);
    }
    sb_printf(&s, "]}");
    char *batch = sb_take(&s);
    resp serial = call("batch", batch);
    expect_ok(serial);
    api_limits lim;
    api_limits_default(&lim);
    lim.split_min = 1;
    size_t workers = 3;
    api_exec x = pool_exec(&workers);
    resp par = call_with("batch", batch, &lim, &x);
    expect_same_body(serial, par);
    json_t *items = json_object_get(serial.j, "responses");
    ck_assert_uint_eq(json_array_size(items), 3);
    for (int k = 0; k < 3; k++) {
        resp one = call(EP[cs[k].ep].op, bodies[k]);
        expect_ok(one);
        json_t *it = json_array_get(items, (size_t)k);
        ck_assert_int_eq(json_integer_value(json_object_get(it, "status")), 200);
        ck_assert_msg(json_equal(json_object_get(it, "body"), one.j), "batch item %d differs", k);
        resp_free(&one);
        free(bodies[k]);
        hcase_free(&cs[k]);
    }
    resp_free(&serial);
    resp_free(&par);
    free(batch);
}
END_TEST

/* ==== the features' standard errors across seeds ============================================== */

/* Over many seeds, the spread of each features-gradient estimate agrees with
 * the reported standard error (root mean square over seeds) within
 * [0.8, 1.25]: tanh_normal reparam entropy through two heads (the loc and
 * log_scale terms of a sample are correlated), and categorical score with
 * baseline "none". (With "loo" the terms of a row share the baseline, so
 * std(terms)/sqrt(M) - the per-row logits' standard error as much as the
 * features' - is not the spread of their mean: ratios near 0.7 occur at
 * M = 16; that is MATH.md §1's definition, not the head's.) */
static void features_se_calibrated(int ep, gs_dist_type type, size_t M, int none) {
    enum { NSEEDS = 300, BR = 3 };
    hcase c = hcase_make(ep, type, 1, RED_DEFAULT, BR, 0, M, 77);
    c.none = none;
    size_t n = BR * c.in;
    double *sum = calloc(n, sizeof *sum), *sum2 = calloc(n, sizeof *sum2),
           *se2 = calloc(n, sizeof *se2);
    for (int s = 0; s < NSEEDS; s++) {
        c.seed = 5000 + (uint64_t)s;
        char *b = hcase_body(&c, 1);
        resp r = call(EP[ep].op, b);
        expect_ok(r);
        double *g = resp_arr(r.j, "grad.head.features", n);
        double *e = resp_arr(r.j, "stderr.grad.head.features", n);
        for (size_t k = 0; k < n; k++) {
            sum[k] += g[k];
            sum2[k] += g[k] * g[k];
            se2[k] += e[k] * e[k];
        }
        free(g);
        free(e);
        resp_free(&r);
        free(b);
    }
    for (size_t k = 0; k < n; k++) {
        double mean = sum[k] / NSEEDS;
        double sd = sqrt((sum2[k] - NSEEDS * mean * mean) / (NSEEDS - 1));
        double rep = sqrt(se2[k] / NSEEDS);
        ck_assert_msg(sd > 0 && rep / sd >= 0.8 && rep / sd <= 1.25,
                      "%s %s features[%zu][%zu]: reported se %.4g vs spread %.4g (ratio %.3f)",
                      EP[ep].op, tdist_type_name(type), k / c.in, k % c.in, rep, sd, rep / sd);
    }
    free(sum);
    free(sum2);
    free(se2);
    hcase_free(&c);
}

START_TEST(features_se_matches_spread) {
    features_se_calibrated(E_ENT_REPARAM, GS_TANH_NORMAL, 16, 0);
    features_se_calibrated(E_ENT_SCORE, GS_CATEGORICAL, 16, 1);
}
END_TEST

/* ==== errors ================================================================================== */

/* A categorical head over two rows of two features, and a normal one. */
#define FEAT "\"features\":[[1,2],[3,4]]"
#define W3 "\"weight\":[[0.1,0.2],[0.3,0.4],[0.5,0.6]]"
#define LAYER "{\"weight\":[[0.1,0.2]],\"bias\":[0.3]}"
/* CAT and NRM are whole bodies; the ..._OPEN forms leave the body open for
 * more top-level fields (close with "}"). */
#define CAT_OPEN(head_, rest_)                                                                   \
    "{\"distribution\":{\"type\":\"categorical\",\"head\":{" head_ "}" rest_ "}"
#define NRM_OPEN(head_, rest_)                                                                   \
    "{\"distribution\":{\"type\":\"normal\",\"head\":{" head_ "}" rest_ "}"
#define CAT(head_, rest_) CAT_OPEN(head_, rest_) "}"
#define NRM(head_, rest_) NRM_OPEN(head_, rest_) "}"
#define ACTOR(head_, rest_) "{\"head\":{" head_ "}" rest_ ",\"alpha\":1,\"q\":[[1,2,3],[4,5,6]]}"

START_TEST(errors_both_head_and_parameters) {
    call_error("entropy", CAT(FEAT "," W3, ",\"logits\":[[1,2,3],[1,2,3]]"), 400,
               "invalid_argument", "distribution.logits");
    call_error("entropy", NRM(FEAT ",\"loc\":" LAYER ",\"log_scale\":" LAYER,
                              ",\"loc\":[[1],[2]]"),
               400, "invalid_argument", "distribution.loc");
    call_error("entropy", NRM(FEAT ",\"loc\":" LAYER ",\"log_scale\":" LAYER,
                              ",\"log_scale\":[[1],[2]]"),
               400, "invalid_argument", "distribution.log_scale");
    /* a head never produces scale, and scale beside it is the same conflict */
    call_error("entropy", NRM(FEAT ",\"loc\":" LAYER ",\"log_scale\":" LAYER,
                              ",\"scale\":[[1],[2]]"),
               400, "invalid_argument", "distribution.scale");
    call_error("sac/discrete/actor", ACTOR(FEAT "," W3, ",\"logits\":[[1,2,3],[1,2,3]]"), 400,
               "invalid_argument", "logits");
    /* the discrete policy takes no head */
    call_error("sac/discrete/policy", "{\"head\":{" FEAT "," W3 "},\"alpha\":1}", 400,
               "invalid_argument", "head");
    /* a reduction beside a distribution's head belongs inside it */
    call_error("entropy", CAT_OPEN(FEAT "," W3, "") ",\"reduction\":\"sum\"}", 400,
               "invalid_argument", "reduction");
}
END_TEST

START_TEST(errors_missing_and_unknown) {
    call_error("entropy", CAT(W3, ""), 400, "invalid_argument", "distribution.head.features");
    call_error("entropy", CAT(FEAT, ""), 400, "invalid_argument", "distribution.head.weight");
    call_error("entropy", NRM(FEAT ",\"log_scale\":" LAYER, ""), 400, "invalid_argument",
               "distribution.head.loc");
    call_error("entropy", NRM(FEAT ",\"loc\":" LAYER, ""), 400, "invalid_argument",
               "distribution.head.log_scale");
    call_error("entropy", NRM(FEAT ",\"loc\":{\"bias\":[1]},\"log_scale\":" LAYER, ""), 400,
               "invalid_argument", "distribution.head.loc.weight");
    call_error("entropy", NRM(FEAT ",\"loc\":" LAYER ",\"log_scale\":{\"bias\":[1]}", ""), 400,
               "invalid_argument", "distribution.head.log_scale.weight");
    call_error("sac/discrete/actor", ACTOR(FEAT, ""), 400, "invalid_argument", "head.weight");
    call_error("sac/discrete/actor", ACTOR(W3, ""), 400, "invalid_argument", "head.features");
    /* unknown keys: inside the head, inside a layer, and the other form's keys */
    call_error("entropy", CAT(FEAT "," W3 ",\"foo\":1", ""), 400, "invalid_argument",
               "distribution.head.foo");
    call_error("entropy", CAT(FEAT "," W3 ",\"loc\":" LAYER, ""), 400, "invalid_argument",
               "distribution.head.loc");
    call_error("entropy", NRM(FEAT ",\"weight\":[[1,2]],\"loc\":" LAYER ",\"log_scale\":" LAYER, ""),
               400, "invalid_argument", "distribution.head.weight");
    call_error("entropy", NRM(FEAT ",\"loc\":" LAYER ",\"scale\":" LAYER, ""), 400,
               "invalid_argument", "distribution.head.scale");
    call_error("entropy", NRM(FEAT ",\"loc\":{\"weight\":[[1,2]],\"scale\":[1]},\"log_scale\":" LAYER, ""),
               400, "invalid_argument", "distribution.head.loc.scale");
    call_error("sac/discrete/actor", ACTOR(FEAT "," W3 ",\"foo\":1", ""), 400, "invalid_argument",
               "head.foo");
    /* wrong types */
    call_error("entropy", "{\"distribution\":{\"type\":\"categorical\",\"head\":[1,2]}}", 400,
               "invalid_argument", "distribution.head");
    call_error("entropy", NRM(FEAT ",\"loc\":[1],\"log_scale\":" LAYER, ""), 400,
               "invalid_argument", "distribution.head.loc");
    call_error("entropy", CAT("\"features\":[[[1,2]]]," W3, ""), 400, "invalid_argument",
               "distribution.head.features[0][0]");
    call_error("entropy", CAT("\"features\":[]," W3, ""), 400, "invalid_argument",
               "distribution.head.features");
}
END_TEST

START_TEST(errors_shapes) {
    /* weight columns against the features */
    call_error("entropy", CAT(FEAT ",\"weight\":[[1,2,3],[4,5,6]]", ""), 400, "invalid_argument",
               "distribution.head.weight[0]");
    call_error("entropy", NRM(FEAT ",\"loc\":{\"weight\":[[1,2,3]]},\"log_scale\":" LAYER, ""),
               400, "invalid_argument", "distribution.head.loc.weight[0]");
    call_error("entropy", NRM(FEAT ",\"loc\":" LAYER ",\"log_scale\":{\"weight\":[[1]]}", ""), 400,
               "invalid_argument", "distribution.head.log_scale.weight[0]");
    call_error("sac/discrete/actor", ACTOR(FEAT ",\"weight\":[[1],[2],[3]]", ""), 400,
               "invalid_argument", "head.weight[0]");
    /* log_scale rows against loc rows */
    call_error("entropy", NRM(FEAT ",\"loc\":" LAYER ",\"log_scale\":{\"weight\":[[1,2],[3,4]]}", ""),
               400, "invalid_argument", "distribution.head.log_scale.weight");
    /* bias length */
    call_error("entropy", CAT(FEAT "," W3 ",\"bias\":[1,2]", ""), 400, "invalid_argument",
               "distribution.head.bias");
    call_error("entropy", NRM(FEAT ",\"loc\":{\"weight\":[[1,2]],\"bias\":[1,2]},\"log_scale\":" LAYER, ""),
               400, "invalid_argument", "distribution.head.loc.bias");
    call_error("entropy", NRM(FEAT ",\"loc\":" LAYER ",\"log_scale\":{\"weight\":[[1,2]],\"bias\":[]}", ""),
               400, "invalid_argument", "distribution.head.log_scale.bias");
    call_error("sac/discrete/actor", ACTOR(FEAT "," W3 ",\"bias\":[1,2,3,4]", ""), 400,
               "invalid_argument", "head.bias");
    /* ragged features */
    call_error("entropy", CAT("\"features\":[[1,2],[3]]," W3, ""), 400, "invalid_argument",
               "distribution.head.features[1]");
    /* batch-indexed inputs follow the head's rows: q against 2 rows of 3 logits */
    call_error("sac/discrete/actor", "{\"head\":{" FEAT "," W3 "},\"alpha\":1,\"q\":[[1,2],[3,4]]}",
               400, "invalid_argument", "q[0]");
    call_error("log_prob", CAT_OPEN(FEAT "," W3, "") ",\"x\":[[0],[1],[2]]}", 400, "invalid_argument",
               "x");
    /* 1-D features make one row: a 2-D x is a mix */
    call_error("log_prob", CAT_OPEN("\"features\":[1,2]," W3, "") ",\"x\":[[0]]}", 400,
               "invalid_argument", "x");
    call_error("sac/discrete/actor", "{\"head\":{\"features\":[1,2]," W3 "},\"alpha\":1,"
               "\"q\":[[1,2,3]]}", 400, "invalid_argument", "q");
}
END_TEST

START_TEST(errors_reduction) {
    call_error("entropy", CAT(FEAT "," W3, ",\"reduction\":\"avg\""), 400, "invalid_argument",
               "distribution.reduction");
    call_error("entropy", CAT(FEAT "," W3, ",\"reduction\":\"none\""), 400, "invalid_argument",
               "distribution.reduction");
    call_error("entropy", CAT(FEAT "," W3, ",\"reduction\":1"), 400, "invalid_argument",
               "distribution.reduction");
    call_error("entropy", CAT(FEAT "," W3, ",\"reduction\":\"Mean\""), 400, "invalid_argument",
               "distribution.reduction");
    call_error("sac/discrete/actor", ACTOR(FEAT "," W3, ",\"reduction\":\"max\""), 400,
               "invalid_argument", "reduction");
    /* checked even without a head (a known field that does not apply) */
    call_error("entropy", "{\"distribution\":{\"type\":\"categorical\",\"logits\":[1,2],"
               "\"reduction\":\"avg\"}}", 400, "invalid_argument", "distribution.reduction");
    call_error("sac/discrete/actor", "{\"logits\":[1,2],\"reduction\":null,\"alpha\":1,\"q\":[1,2]}",
               400, "invalid_argument", "reduction");
}
END_TEST

/* Overflow: a head output, a log_scale whose exp over- or underflows, a
 * gradient of the layer; every one a 400 naming the head. */
START_TEST(errors_overflow) {
    call_error("entropy", CAT("\"features\":[[1,2],[1e200,4]],\"weight\":[[1e200,0],[0,1],[1,1]]", ""),
               400, "invalid_argument", "distribution.head.features[1]");
    call_error("entropy", CAT("\"features\":[1e200,4],\"weight\":[[1e200,0],[0,1],[1,1]]", ""), 400,
               "invalid_argument", "distribution.head.features");
    call_error("entropy", NRM("\"features\":[[1,2],[3,4],[5,-1e300]],\"loc\":" LAYER
                              ",\"log_scale\":{\"weight\":[[1,1e10]]}", ""),
               400, "invalid_argument", "distribution.head.features[2]");
    call_error("sac/discrete/actor", ACTOR("\"features\":[[1,2],[1e200,4]],\"weight\":[[1e200,0],[0,1],[1,1]]", ""),
               400, "invalid_argument", "head.features[1]");
    /* exp(log_scale) overflows (log_scale 1200 and 2800) or underflows */
    const char *over = "\"features\":[[1,2],[3,4]],\"loc\":{\"weight\":[[0.1,0.2]]},"
                       "\"log_scale\":{\"weight\":[[400,400]]}";
    const char *under = "\"features\":[[1,2],[3,4]],\"loc\":{\"weight\":[[0.1,0.2]]},"
                        "\"log_scale\":{\"weight\":[[-400,-400]]}";
    const char *types[] = {"normal", "tanh_normal"};
    for (int t = 0; t < 2; t++)
        for (int u = 0; u < 2; u++) {
            const char *h = u ? under : over;
            char *b[5];
            b[0] = fmt("{\"distribution\":{\"type\":\"%s\",\"head\":{%s}},\"seed\":1}", types[t], h);
            b[1] = fmt("{\"distribution\":{\"type\":\"%s\",\"head\":{%s}},\"seed\":1,"
                       "\"grad_x\":[[[1]],[[1]]]}", types[t], h);
            b[2] = fmt("{\"distribution\":{\"type\":\"%s\",\"head\":{%s}},\"x\":[[[0]],[[0.5]]]}",
                       types[t], h);
            b[3] = fmt("{\"distribution\":{\"type\":\"tanh_normal\",\"head\":{%s}},\"seed\":1,"
                       "\"alpha\":1,\"dq_da\":[[[1]],[[1]]]}", h);
            b[4] = fmt("{\"distribution\":{\"type\":\"%s\",\"head\":{%s}},\"seed\":1,"
                       "\"estimator\":\"reparam\"}", types[t], h);
            const char *ops[] = {"sample", "reparam", "log_prob", "sac/continuous/actor", "entropy"};
            for (int k = 0; k < 5; k++) {
                resp r = call(ops[k], b[k]);
                /* Where the maths stays finite (a normal's log-density at a
                 * point with an infinite scale, its exact-path entropy) the
                 * answer is a 200; otherwise the 400 names the layer. */
                if (r.status != 200)
                    expect_error(r, 400, "invalid_argument", "distribution.head.log_scale");
                resp_free(&r);
                free(b[k]);
            }
        }
    /* at least these refuse: draws with an infinite or zero scale */
    call_error("sample", NRM_OPEN("\"features\":[[1,2],[3,4]],\"loc\":{\"weight\":[[0.1,0.2]]},"
                             "\"log_scale\":{\"weight\":[[400,400]]}", "") ",\"seed\":1}",
               400, "invalid_argument", "distribution.head.log_scale");
    call_error("reparam", NRM_OPEN("\"features\":[[1,2],[3,4]],\"loc\":{\"weight\":[[0.1,0.2]]},"
                              "\"log_scale\":{\"weight\":[[400,400]]}", "")
               ",\"seed\":1,\"grad_x\":[[[1]],[[1]]]}",
               400, "invalid_argument", "distribution.head.log_scale");
    call_error("log_prob", NRM_OPEN("\"features\":[[1,2],[3,4]],\"loc\":{\"weight\":[[0.1,0.2]]},"
                               "\"log_scale\":{\"weight\":[[-400,-400]]}", "")
               ",\"x\":[[[0]],[[0]]]}",
               400, "invalid_argument", "distribution.head.log_scale");
    call_error("sac/continuous/actor",
               "{\"distribution\":{\"type\":\"tanh_normal\",\"head\":{\"features\":[[1,2],[3,4]],"
               "\"loc\":{\"weight\":[[0.1,0.2]]},\"log_scale\":{\"weight\":[[400,400]]}}},"
               "\"seed\":1,\"alpha\":1,\"dq_da\":[[[1]],[[1]]]}",
               400, "invalid_argument", "distribution.head.log_scale");
    call_error("entropy",
               "{\"distribution\":{\"type\":\"tanh_normal\",\"head\":{\"features\":[[1,2],[3,4]],"
               "\"loc\":{\"weight\":[[0.1,0.2]]},\"log_scale\":{\"weight\":[[400,400]]}}},\"seed\":1}",
               400, "invalid_argument", "distribution.head.log_scale");
    /* the layer's gradient overflows: 10 rows of features 1.5e308 summed */
    sb s = {0};
    sb_printf(&s, "{\"distribution\":{\"type\":\"categorical\",\"head\":{\"features\":[");
    for (int k = 0; k < 10; k++) sb_printf(&s, "%s[1.5e308,1.5e308]", k ? "," : "");
    sb_printf(&s, "],\"weight\":[[1e-308,0],[0,1e-308],[0,0]]},\"reduction\":\"sum\"}}");
    char *b = sb_take(&s);
    call_error("entropy", b, 400, "invalid_argument", "distribution.head");
    free(b);
}
END_TEST

static Suite *head_suite(void) {
    Suite *s = suite_create("api_head");
    TCase *tc = tcase_create("endpoints");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, entropy_exact);
    tcase_add_test(tc, entropy_score);
    tcase_add_test(tc, entropy_reparam);
    tcase_add_test(tc, log_prob);
    tcase_add_test(tc, reparam);
    tcase_add_test(tc, score);
    tcase_add_test(tc, sac_discrete_exact);
    tcase_add_test(tc, sac_discrete_sampled);
    tcase_add_test(tc, sac_continuous);
    tcase_add_test(tc, sample);
    tcase_add_test(tc, reduction_mean_is_the_default);
    tcase_add_test(tc, tensors_in_and_out);
    tcase_add_test(tc, batch_items_with_heads);
    suite_add_tcase(s, tc);
    tc = tcase_create("standard_errors");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, features_se_matches_spread);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, errors_both_head_and_parameters);
    tcase_add_test(tc, errors_missing_and_unknown);
    tcase_add_test(tc, errors_shapes);
    tcase_add_test(tc, errors_reduction);
    tcase_add_test(tc, errors_overflow);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    /* As the server does: the worker pool is the parallelism, not OpenBLAS's threads. */
    openblas_set_num_threads(1);
    return run_suite(head_suite());
}
