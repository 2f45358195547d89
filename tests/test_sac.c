/* test_sac.c - Check suite for gs_sac: discrete/continuous actors, Boltzmann policy, alpha. */
#include "test_core_util.h"

#include "gs_vmath_impl.h" /* gs_stream_batch */

/* ---- fixtures ------------------------------------------------------------------ */

enum { B = 2, K = 4, D = 2, RB = 7, MAXM = 64 };

static const double LOGITS[B * K] = {0.1, 2.0, -1.0, 0.5, -0.8, 0.3, 1.7, 0.0};
static const double Q[B * K] = {1.0, -0.5, 2.5, 0.3, -1.2, 0.4, 0.9, 3.0};
static const double ALPHA = 0.3;
static const double LOC[B * D] = {0.3, -1.2, 0.8, 0.1};
static const double LOG_SCALE[B * D] = {-0.4, 0.2, 0.1, -0.9};
static const double LOW[D] = {-2.0, 0.0}, HIGH[D] = {2.0, 3.0};
static const double QC[D] = {-0.7, 0.4}, QL[D] = {0.5, -0.2}; /* Q(a) = sum c a^2 + l a */

static void ref_softmax(const double *z, size_t k, double *logp, double *p) {
    double mx = z[0], s = 0.0;
    for (size_t i = 1; i < k; i++) mx = fmax(mx, z[i]);
    for (size_t i = 0; i < k; i++) s += exp(z[i] - mx);
    for (size_t i = 0; i < k; i++) {
        logp[i] = z[i] - mx - log(s);
        p[i] = exp(logp[i]);
    }
}

/* MATH.md §6: L = sum p (alpha log p - Q), dL/dz = p (alpha log p - Q - L). */
static double ref_sac_loss(const double *z, const double *q, size_t k, double alpha, double *g,
                           double *h) {
    double logp[16], p[16], L = 0.0;
    ref_softmax(z, k, logp, p);
    *h = 0.0;
    for (size_t i = 0; i < k; i++) {
        L += p[i] * (alpha * logp[i] - q[i]);
        *h -= p[i] * logp[i];
    }
    for (size_t i = 0; i < k; i++) g[i] = p[i] * (alpha * logp[i] - q[i] - L);
    return L;
}

/* ==== discrete actor ================================================================= */

typedef struct {
    double loss[RB], h[RB], g[RB * K], sl[RB], sg[RB * K], t[RB * MAXM * K];
} douts;

static gs_sac_discrete_job discrete_job(const double *z, size_t rows, const double *q,
                                        const int64_t *act, size_t M, gs_baseline bl, douts *o) {
    return (gs_sac_discrete_job){
        .dist = {.type = GS_CATEGORICAL, .rows = rows, .dim = K, .logits = z},
        .alpha = ALPHA,
        .q = q,
        .actions = act,
        .samples = M,
        .baseline = bl,
        .loss = o->loss,
        .entropy = o->h,
        .grad = {o->g, NULL},
        .se_loss = act ? o->sl : NULL,
        .se_grad = {act ? o->sg : NULL, NULL}};
}

static double discrete_loss_sum(void *arg) {
    gs_sac_discrete_job *j = arg;
    ck_assert_int_eq(gs_sac_discrete(j, 0, j->dist.rows, NULL), 0);
    double s = 0.0;
    for (size_t b = 0; b < j->dist.rows; b++) s += j->loss[b];
    return s;
}

START_TEST(discrete_exact) {
    double z[B * K];
    memcpy(z, LOGITS, sizeof z);
    douts o;
    gs_sac_discrete_job j = discrete_job(z, B, Q, NULL, 0, GS_BASELINE_LOO, &o);
    ck_assert_int_eq(gs_sac_discrete(&j, 0, B, NULL), 0);
    double g[B * K];
    memcpy(g, o.g, sizeof g);
    for (size_t b = 0; b < B; b++) {
        double want[K], h;
        double L = ref_sac_loss(LOGITS + b * K, Q + b * K, K, ALPHA, want, &h);
        ck_close(o.loss[b], L, 1e-12, 1e-12);
        ck_close(o.h[b], h, 1e-12, 1e-12);
        for (size_t k = 0; k < K; k++) ck_close(g[b * K + k], want[k], 1e-12, 1e-12);
    }
    for (size_t i = 0; i < B * K; i++) ck_fd(g[i], discrete_loss_sum, &j, &z[i]);
}
END_TEST

/* The sampled estimator (actions k_m ~ p from /v1/sample, q_m = Q_{k_m})
 * averages to the exact loss and gradient, loo and none, 1000 seeds. */
START_TEST(discrete_sampled_unbiased) {
    const size_t M = 32;
    gs_dist d = {.type = GS_CATEGORICAL, .rows = B, .dim = K, .logits = LOGITS};
    double exL[B], exg[B * K], exh[B];
    for (size_t b = 0; b < B; b++)
        exL[b] = ref_sac_loss(LOGITS + b * K, Q + b * K, K, ALPHA, exg + b * K, &exh[b]);
    for (int bl = 0; bl < 2; bl++) {
        tc_stat sl[B], sg[B * K];
        memset(sl, 0, sizeof sl), memset(sg, 0, sizeof sg);
        for (int s = 0; s < 1000; s++) {
            int64_t act[B * 32];
            double lp[B * 32], q[B * 32];
            gs_sample_job sj = {.dist = d, .samples = M, .actions = act, .log_prob = lp};
            gs_rng_init(&sj.rng, 6151ULL * (uint64_t)s + (uint64_t)bl);
            ck_assert_int_eq(gs_sample(&sj, 0, B, NULL), 0);
            for (size_t i = 0; i < B * M; i++) q[i] = Q[(i / M) * K + (size_t)act[i]];
            douts o;
            gs_sac_discrete_job j =
                discrete_job(LOGITS, B, q, act, M, bl ? GS_BASELINE_NONE : GS_BASELINE_LOO, &o);
            ck_assert_int_eq(gs_sac_discrete(&j, 0, B, NULL), 0);
            for (size_t b = 0; b < B; b++) {
                ck_close(o.h[b], exh[b], 1e-12, 1e-12);
                tc_stat_add(&sl[b], o.loss[b], o.sl[b]);
            }
            for (size_t k = 0; k < B * K; k++) tc_stat_add(&sg[k], o.g[k], o.sg[k]);
        }
        char name[96];
        for (size_t b = 0; b < B; b++) {
            snprintf(name, sizeof name, "sampled %s loss[%zu]", bl ? "none" : "loo", b);
            ck_unbiased(sl[b], exL[b], name);
            ck_se_calibrated(sl[b], name);
        }
        for (size_t k = 0; k < B * K; k++) {
            snprintf(name, sizeof name, "sampled %s grad[%zu]", bl ? "none" : "loo", k);
            ck_unbiased(sg[k], exg[k], name);
            ck_se_calibrated(sg[k], name);
        }
    }
}
END_TEST

/* M = 1 (none): t_0 (e_k - p). M = 2 (loo): 1/2 (t_0 - t_1)(e_k0 - e_k1).
 * General M: the terms average to the gradient. */
START_TEST(discrete_sampled_formula) {
    static const int64_t act[B * 5] = {1, 3, 1, 0, 2, 2, 2, 0, 3, 1};
    double q[B * 5];
    for (size_t i = 0; i < B * 5; i++) q[i] = Q[(i / 5) * K + (size_t)act[i]] + 0.1 * i;
    for (size_t M = 1; M <= 5; M++) {
        int64_t a[B * 5];
        double qq[B * 5];
        for (size_t b = 0; b < B; b++)
            for (size_t m = 0; m < M; m++)
                a[b * M + m] = act[b * 5 + m], qq[b * M + m] = q[b * 5 + m];
        douts o;
        gs_sac_discrete_job j =
            discrete_job(LOGITS, B, qq, a, M, M == 1 ? GS_BASELINE_NONE : GS_BASELINE_LOO, &o);
        j.terms = (gs_pgrad){o.t, NULL};
        ck_assert_int_eq(gs_sac_discrete(&j, 0, B, NULL), 0);
        for (size_t b = 0; b < B; b++) {
            double logp[K], p[K], t[5], mean = 0.0;
            ref_softmax(LOGITS + b * K, K, logp, p);
            for (size_t m = 0; m < M; m++) {
                t[m] = ALPHA * logp[a[b * M + m]] - qq[b * M + m];
                mean += t[m] / M;
            }
            ck_close(o.loss[b], mean, 1e-13, 1e-13);
            for (size_t k = 0; k < K; k++) {
                double want;
                if (M == 1)
                    want = t[0] * ((a[b] == (int64_t)k) - p[k]);
                else if (M == 2)
                    want = 0.5 * (t[0] - t[1]) *
                           ((a[2 * b] == (int64_t)k) - (a[2 * b + 1] == (int64_t)k));
                else {
                    want = 0.0;
                    for (size_t m = 0; m < M; m++) {
                        double bm = (mean * M - t[m]) / (M - 1);
                        want += (t[m] - bm) * ((a[b * M + m] == (int64_t)k) - p[k]) / M;
                    }
                }
                ck_close(o.g[b * K + k], want, 1e-12, 1e-13);
                double tm = 0.0;
                for (size_t m = 0; m < M; m++) tm += o.t[(b * M + m) * K + k] / M;
                ck_close(tm, o.g[b * K + k], 1e-12, 1e-13);
            }
            if (M == 1) ck_assert(o.sl[b] == 0.0);
        }
    }
}
END_TEST

START_TEST(discrete_edges) {
    /* K = 1: L = -Q, gradient 0, entropy 0. */
    double z1[2] = {0.3, -1e4}, q1[2] = {2.0, -7.0};
    douts o;
    gs_sac_discrete_job j = discrete_job(z1, 2, q1, NULL, 0, GS_BASELINE_LOO, &o);
    j.dist.dim = 1;
    ck_assert_int_eq(gs_sac_discrete(&j, 0, 2, NULL), 0);
    ck_assert(o.loss[0] == -2.0 && o.loss[1] == 7.0 && o.g[0] == 0.0 && o.g[1] == 0.0);
    ck_assert(o.h[0] == 0.0 && o.h[1] == 0.0);
    /* logits +-1e4: zero-probability actions contribute 0 (their alpha log p
     * is -2e4 alpha, finite), even with a large Q for them. */
    double z[K] = {1e4, -1e4, 0.0, 1e4}, q[K] = {1.0, 1e6, -1e6, 3.0};
    j = discrete_job(z, 1, q, NULL, 0, GS_BASELINE_LOO, &o);
    ck_assert_int_eq(gs_sac_discrete(&j, 0, 1, NULL), 0);
    double L = 0.5 * (ALPHA * -M_LN2 - 1.0) + 0.5 * (ALPHA * -M_LN2 - 3.0);
    ck_close(o.loss[0], L, 1e-15, 0.0);
    ck_close(o.h[0], M_LN2, 1e-15, 0.0);
    ck_close(o.g[0], 0.5 * (ALPHA * -M_LN2 - 1.0 - L), 1e-15, 0.0);
    ck_assert(o.g[1] == 0.0 && o.g[2] == 0.0);
    ck_close(o.g[3], 0.5 * (ALPHA * -M_LN2 - 3.0 - L), 1e-15, 0.0);
    int64_t act[4] = {0, 3, 3, 0};
    double qs[4] = {1.0, 3.0, 3.0, 1.0};
    j = discrete_job(z, 1, qs, act, 4, GS_BASELINE_LOO, &o);
    ck_assert_int_eq(gs_sac_discrete(&j, 0, 1, NULL), 0);
    ck_all_finite(o.g, K);
    ck_assert(o.g[1] == 0.0 && o.g[2] == 0.0);
}
END_TEST

START_TEST(discrete_error_q) {
    /* q of 1e308 and -1e308. Exact: a gradient term p_1 (alpha log p_1 +
     * 1e308 - L) with L ~ -0.96e308 overflows. Sampled: the spread of t (and
     * the loo-centred terms) overflows. Both blame q in row 1. */
    double z[2 * 2] = {0.0, 0.0, 0.0, -4.0}; /* row 1: p = (0.982, 0.018) */
    double q[2 * 2] = {1.0, 2.0, 1e308, -1e308};
    douts o;
    gs_sac_discrete_job j = discrete_job(z, 2, q, NULL, 0, GS_BASELINE_LOO, &o);
    j.dist.dim = 2;
    gs_error e;
    int rc = gs_sac_discrete(&j, 0, 2, &e);
    ck_assert_msg(rc == GS_ENONFINITE && e.input == GS_IN_Q && e.row == 1 && e.col == 1,
                  "exact: rc %d input %d row %ld col %ld", rc, e.input, e.row, e.col);
    /* Sampled, actions (0, 1) with q (1e308, -1e308): t = (~-1e308, ~1e308)
     * has a finite mean; its spread (se_loss) and the loo-centred terms
     * 2 (t_m - mean) overflow. Without a baseline or standard errors every
     * output is finite (the terms' sums are +-1e308): no error. */
    int64_t act[2 * 2] = {0, 1, 0, 1};
    for (int bl = 0; bl < 2; bl++)
        for (int se = 0; se < 2; se++) {
            j = discrete_job(z, 2, q, act, 2, bl ? GS_BASELINE_NONE : GS_BASELINE_LOO, &o);
            j.dist.dim = 2;
            if (!se) j.se_loss = NULL, j.se_grad.p0 = NULL;
            rc = gs_sac_discrete(&j, 0, 2, &e);
            if (bl && !se) {
                ck_assert_int_eq(rc, 0);
                ck_all_finite(o.loss, 2);
                ck_all_finite(o.g, 4);
                continue;
            }
            ck_assert_msg(rc == GS_ENONFINITE && e.input == GS_IN_Q && e.row == 1,
                          "sampled %d se %d: rc %d input %d row %ld", bl, se, rc, e.input, e.row);
            ck_assert_int_eq(gs_sac_discrete(&j, 0, 1, NULL), 0);
        }
    /* Actions (1, 1) with q (-1e308, -1e308): the loss itself overflows. */
    int64_t act1[2 * 2] = {0, 1, 1, 1};
    double q1[2 * 2] = {1.0, 2.0, -1e308, -1e308};
    for (int bl = 0; bl < 2; bl++) {
        j = discrete_job(z, 2, q1, act1, 2, bl ? GS_BASELINE_NONE : GS_BASELINE_LOO, &o);
        j.dist.dim = 2;
        j.se_loss = NULL, j.se_grad.p0 = NULL;
        ck_error(gs_sac_discrete(&j, 0, 2, &e), e, GS_ENONFINITE, GS_IN_Q, 1, -1, -1);
    }
}
END_TEST

/* ==== Boltzmann policy ================================================================== */

typedef struct {
    double p[RB * K], lp[RB * K], h[RB], v[RB];
    int64_t act[RB * MAXM];
} pouts;

static gs_sac_policy_job policy_job(const double *q, size_t rows, size_t k, double alpha, size_t M,
                                    uint64_t seed, pouts *o) {
    gs_sac_policy_job j = {.rows = rows,
                           .K = k,
                           .q = q,
                           .alpha = alpha,
                           .samples = M,
                           .probs = o->p,
                           .log_probs = o->lp,
                           .entropy = o->h,
                           .value = o->v,
                           .actions = M ? o->act : NULL};
    gs_rng_init(&j.rng, seed);
    return j;
}

START_TEST(policy_closed_form) {
    static const double alphas[3] = {0.3, 1.0, 5.0};
    for (int a = 0; a < 3; a++) {
        const size_t M = 16;
        pouts o;
        gs_sac_policy_job j = policy_job(Q, B, K, alphas[a], M, 21, &o);
        ck_assert_int_eq(gs_sac_policy(&j, 0, B, NULL), 0);
        for (size_t b = 0; b < B; b++) {
            double z[K], logp[K], p[K], mx = -INFINITY, s = 0.0, h = 0.0, v2 = 0.0;
            for (size_t k = 0; k < K; k++) z[k] = Q[b * K + k] / alphas[a], mx = fmax(mx, z[k]);
            ref_softmax(z, K, logp, p);
            for (size_t k = 0; k < K; k++) {
                s += exp(z[k] - mx);
                h -= p[k] * logp[k];
                v2 += p[k] * (Q[b * K + k] - alphas[a] * logp[k]);
                ck_close(o.p[b * K + k], p[k], 1e-12, 1e-15);
                ck_close(o.lp[b * K + k], logp[k], 1e-12, 1e-12);
            }
            double V = alphas[a] * (mx + log(s));
            ck_close(o.h[b], h, 1e-12, 1e-12);
            ck_close(o.v[b], V, 1e-12, 1e-12);
            ck_close(o.v[b], v2, 1e-12, 1e-12);
            for (size_t m = 0; m < M; m++)
                ck_assert_int_eq(o.act[b * M + m], (int64_t)gs_rng_categorical(
                                                       &j.rng, b, (uint32_t)m, o.p + b * K, K));
        }
    }
    /* samples = 0: no actions (the array may be NULL). */
    pouts o;
    gs_sac_policy_job j = policy_job(Q, B, K, 1.0, 0, 0, &o);
    ck_assert_int_eq(gs_sac_policy(&j, 0, B, NULL), 0);
}
END_TEST

START_TEST(policy_edges) {
    /* K = 1: p = 1, log p = 0, H = 0, V = Q. */
    double q1[2] = {3.5, -1e6};
    pouts o;
    gs_sac_policy_job j = policy_job(q1, 2, 1, 0.1, 3, 1, &o);
    ck_assert_int_eq(gs_sac_policy(&j, 0, 2, NULL), 0);
    ck_assert(o.p[0] == 1.0 && o.lp[0] == 0.0 && o.h[0] == 0.0 && o.act[0] == 0);
    ck_close(o.v[0], 3.5, 1e-15, 0.0);
    ck_close(o.v[1], -1e6, 1e-15, 0.0);
    /* Q of +-1e4 with a small alpha: Q / alpha = +-1e6; one-hot p, finite
     * log p, V = max Q, H = 0; ties split evenly. */
    double q[2 * K] = {1e4, -1e4, 0.0, 9999.0, 1e4, 1e4, -1e4, -1e4};
    j = policy_job(q, 2, K, 0.01, 50, 2, &o);
    ck_assert_int_eq(gs_sac_policy(&j, 0, 2, NULL), 0);
    ck_all_finite(o.lp, 2 * K);
    ck_all_finite(o.p, 2 * K);
    /* row 0: Q / alpha = (1e6, -1e6, 0, 999900): p_3 = e^-100, the rest 0 */
    ck_assert(o.p[0] == 1.0 && o.p[1] == 0.0 && o.p[2] == 0.0);
    ck_close(o.lp[3], -100.0, 1e-9, 0.0);
    ck_close(o.p[3], exp(-100.0), 1e-7, 0.0);
    ck_close(o.lp[1], -2e6, 1e-15, 0.0);
    ck_close(o.h[0], 101.0 * exp(-100.0), 0.0, 1e-43); /* log p_0 rounds to 0 */
    ck_close(o.v[0], 1e4, 1e-15, 0.0);
    ck_close(o.h[1], M_LN2, 1e-15, 0.0);
    ck_close(o.v[1], 1e4 + 0.01 * M_LN2, 1e-15, 0.0);
    for (int m = 0; m < 50; m++)
        ck_assert(o.act[m] == 0 && (o.act[50 + m] == 0 || o.act[50 + m] == 1));
}
END_TEST

START_TEST(policy_error_q) {
    /* Q / alpha overflows: blame q with its column. */
    double q[2 * K] = {1, 2, 3, 4, 1.0, 1e308, -2.0, 0.0};
    pouts o;
    gs_sac_policy_job j = policy_job(q, 2, K, 0.5, 0, 0, &o);
    gs_error e;
    ck_error(gs_sac_policy(&j, 0, 2, &e), e, GS_ENONFINITE, GS_IN_Q, 1, -1, 1);
    q[5] = 1.0, q[6] = -1e308;
    ck_error(gs_sac_policy(&j, 0, 2, &e), e, GS_ENONFINITE, GS_IN_Q, 1, -1, 2);
    ck_assert_int_eq(gs_sac_policy(&j, 0, 1, NULL), 0);
}
END_TEST

/* ==== continuous actor =================================================================== */

typedef struct {
    gs_dist_type type;
    int sigma, bounds;
    const char *name;
} variant;

static const variant CONT[] = {
    {GS_TANH_NORMAL, 0, 0, "tanh log_scale"},
    {GS_TANH_NORMAL, 1, 0, "tanh scale"},
    {GS_TANH_NORMAL, 0, 1, "tanh bounds log_scale"},
    {GS_TANH_NORMAL, 1, 1, "tanh bounds scale"},
};
#define NCONT (sizeof CONT / sizeof *CONT)

typedef struct {
    double loc[RB * D], scale[RB * D];
    gs_dist dist;
} params;

static void params_init(params *p, const variant *v, size_t rows) {
    for (size_t j = 0; j < rows * D; j++) {
        double ls = j < B * D ? LOG_SCALE[j] : 0.4 * sin(0.9 * j);
        p->loc[j] = j < B * D ? LOC[j] : cos(1.3 * j);
        p->scale[j] = v->sigma ? exp(ls) : ls;
    }
    p->dist = (gs_dist){.type = v->type,
                        .rows = rows,
                        .dim = D,
                        .loc = p->loc,
                        .scale = p->scale,
                        .scale_is_sigma = v->sigma,
                        .low = v->bounds ? LOW : NULL,
                        .high = v->bounds ? HIGH : NULL};
}

static double sigma_at(const gs_dist *d, size_t j) {
    return d->scale_is_sigma ? d->scale[j] : exp(d->scale[j]);
}
static double centre_at(const gs_dist *d, size_t i) {
    return d->low ? 0.5 * (d->high[i] + d->low[i]) : 0.0;
}
static double half_at(const gs_dist *d, size_t i) {
    return d->low ? 0.5 * (d->high[i] - d->low[i]) : 1.0;
}

typedef struct {
    double loss[RB], h[RB], lp[RB * MAXM], a[RB * MAXM * D], g0[RB * D], g1[RB * D];
    double sl[RB], sh[RB], s0[RB * D], s1[RB * D], t0[RB * MAXM * D], t1[RB * MAXM * D];
} couts;

static gs_sac_continuous_job cont_job(const gs_dist *d, size_t M, uint64_t seed, const double *dq,
                                      const double *q, couts *o) {
    gs_sac_continuous_job j = {.dist = *d,
                               .alpha = ALPHA,
                               .samples = M,
                               .dq_da = dq,
                               .q = q,
                               .loss = o->loss,
                               .entropy = o->h,
                               .log_prob = o->lp,
                               .actions = o->a,
                               .grad = {o->g0, o->g1},
                               .se_loss = o->sl,
                               .se_entropy = o->sh,
                               .se_grad = {o->s0, o->s1}};
    gs_rng_init(&j.noise.rng, seed);
    return j;
}

static void q_of(const double *a, size_t n, double *q, double *dq) {
    for (size_t m = 0; m < n; m++) {
        q[m] = 0.0;
        for (size_t i = 0; i < D; i++) {
            double x = a[m * D + i];
            q[m] += QC[i] * x * x + QL[i] * x;
            dq[m * D + i] = 2.0 * QC[i] * x + QL[i];
        }
    }
}

/* MATH.md §7 sample by sample; and the same noise, entropy and pathwise
 * gradient as gs_sample, gs_entropy (reparam) and gs_reparam. */
START_TEST(continuous_closed_form_and_consistency) {
    const size_t M = 9;
    for (size_t v = 0; v < NCONT; v++) {
        params P;
        params_init(&P, &CONT[v], B);
        const gs_dist *d = &P.dist;
        double x[B * 9 * D], eps[B * 9 * D], lp[B * 9], q[B * 9], dq[B * 9 * D];
        gs_sample_job sj = {.dist = *d, .samples = M, .x = x, .eps = eps, .log_prob = lp};
        gs_rng_init(&sj.rng, 333 + v);
        ck_assert_int_eq(gs_sample(&sj, 0, B, NULL), 0);
        q_of(x, B * M, q, dq);
        couts o;
        gs_sac_continuous_job j = cont_job(d, M, 333 + v, dq, q, &o);
        j.terms = (gs_pgrad){o.t0, o.t1};
        ck_assert_int_eq(gs_sac_continuous(&j, 0, B, NULL), 0);
        ck_same_bytes(o.a, x, sizeof x);
        ck_same_bytes(o.lp, lp, sizeof lp);
        for (size_t b = 0; b < B; b++) {
            double h = 0.0, L = 0.0;
            for (size_t m = 0; m < M; m++) {
                h -= lp[b * M + m] / M;
                L += (ALPHA * lp[b * M + m] - q[b * M + m]) / M;
            }
            ck_close(o.h[b], h, 1e-13, 1e-13);
            ck_close(o.loss[b], L, 1e-13, 1e-13);
            for (size_t i = 0; i < D; i++) {
                size_t k = b * D + i;
                double sg = sigma_at(d, k), s = half_at(d, i), a0 = 0, a1 = 0;
                for (size_t m = 0; m < M; m++) {
                    size_t r = (b * M + m) * D + i;
                    double e = eps[r], t = tanh(LOC[k] + sg * e), da = s * (1.0 - t * t);
                    double t0 = ALPHA * 2.0 * t - dq[r] * da;
                    double t1 = ALPHA * (-1.0 + 2.0 * t * sg * e) - dq[r] * da * sg * e;
                    if (d->scale_is_sigma) t1 /= sg;
                    ck_close(o.t0[r], t0, 1e-12, 1e-13);
                    ck_close(o.t1[r], t1, 1e-12, 1e-13);
                    a0 += t0 / M;
                    a1 += t1 / M;
                }
                ck_close(o.g0[k], a0, 1e-12, 1e-13);
                ck_close(o.g1[k], a1, 1e-12, 1e-13);
            }
        }
        /* grad = -alpha dH_reparam - pathwise grad of E[Q] with grad_x = dq_da */
        double h[B], sh[B], e0[B * D], e1[B * D], es0[B * D], es1[B * D];
        gs_entropy_job ej = {.dist = *d,
                             .estimator = GS_EST_REPARAM,
                             .samples = M,
                             .entropy = h,
                             .grad = {e0, e1},
                             .se_entropy = sh,
                             .se_grad = {es0, es1}};
        gs_rng_init(&ej.noise.rng, 333 + v);
        ck_assert_int_eq(gs_entropy(&ej, 0, B, NULL), 0);
        ck_same_bytes(h, o.h, sizeof h);
        ck_same_bytes(sh, o.sh, sizeof sh);
        double rx[B * 9 * D], rlp[B * 9], r0[B * D], r1[B * D];
        gs_reparam_job rj = {
            .dist = *d, .samples = M, .grad_x = dq, .x = rx, .log_prob = rlp, .grad = {r0, r1}};
        gs_rng_init(&rj.noise.rng, 333 + v);
        ck_assert_int_eq(gs_reparam(&rj, 0, B, NULL), 0);
        for (size_t k = 0; k < B * D; k++) {
            ck_close(o.g0[k], -ALPHA * e0[k] - r0[k], 1e-12, 1e-13);
            ck_close(o.g1[k], -ALPHA * e1[k] - r1[k], 1e-12, 1e-13);
        }
    }
}
END_TEST

/* FD of sum_b mean_m (alpha l_m(theta) - Q(a_m(theta))) with eps fixed. */
static double actor_objective(void *arg) {
    gs_sac_continuous_job *j = arg;
    size_t M = j->samples, rows = j->dist.rows;
    ck_assert_int_eq(gs_sac_continuous(j, 0, rows, NULL), 0);
    double s = 0.0, q[MAXM], dq[MAXM * D];
    for (size_t b = 0; b < rows; b++) {
        q_of(j->actions + b * M * D, M, q, dq);
        for (size_t m = 0; m < M; m++) s += (j->alpha * j->log_prob[b * M + m] - q[m]) / (double)M;
    }
    return s;
}

START_TEST(continuous_fd) {
    const size_t M = 5;
    double eps[B * 5 * D], scr[4 * 5];
    gs_rng r;
    gs_rng_init(&r, 1001);
    for (size_t b = 0; b < B; b++) gs_rng_normals(&r, b, 0, M, D, eps + b * M * D, scr);
    for (size_t v = 0; v < NCONT; v++) {
        params P;
        params_init(&P, &CONT[v], B);
        double dq[B * 5 * D] = {0}, q[B * 5];
        couts o;
        gs_sac_continuous_job j = cont_job(&P.dist, M, 0, dq, NULL, &o);
        j.noise.eps = eps;
        ck_assert_int_eq(gs_sac_continuous(&j, 0, B, NULL), 0);
        q_of(o.a, B * M, q, dq);
        ck_assert_int_eq(gs_sac_continuous(&j, 0, B, NULL), 0);
        double g0[B * D], g1[B * D];
        memcpy(g0, o.g0, sizeof g0);
        memcpy(g1, o.g1, sizeof g1);
        for (size_t k = 0; k < B * D; k++) {
            ck_fd(g0[k], actor_objective, &j, &P.loc[k]);
            ck_fd(g1[k], actor_objective, &j, &P.scale[k]);
        }
    }
}
END_TEST

/* Quadrature per coordinate of E over eps of functions of u = mu + sigma eps. */
typedef struct {
    double mu, sigma, c, s, qc, ql;
    int which;
} qctx;

static double q_integrand(double e, void *arg) {
    const qctx *q = arg;
    double u = q->mu + q->sigma * e, t = tanh(u), a = q->c + q->s * t, da = q->s * (1.0 - t * t);
    switch (q->which) {
    case 0: return tc_log1mt2(u);                  /* entropy part */
    case 1: return -2.0 * t;                       /* dH/dmu */
    case 2: return t * e;                          /* dH/drho = 1 - 2 sigma E[t eps] */
    case 3: return q->qc * a * a + q->ql * a;      /* E[Q_d] */
    case 4: return (2.0 * q->qc * a + q->ql) * da; /* dE[Q_d]/dmu */
    default: return (2.0 * q->qc * a + q->ql) * da * q->sigma * e; /* dE[Q_d]/drho */
    }
}

/* Over 1000 seeds the actor's loss, entropy and gradient average to the
 * exact J = -alpha H - E[Q(a)] and its gradient (quadrature, per coordinate),
 * with calibrated standard errors. */
START_TEST(continuous_unbiased) {
    const size_t M = 16;
    for (size_t v = 0; v < NCONT; v++) {
        params P;
        params_init(&P, &CONT[v], B);
        const gs_dist *d = &P.dist;
        double exL[B], exH[B], ex0[B * D], ex1[B * D];
        for (size_t b = 0; b < B; b++) {
            double H = 0.0, EQ = 0.0;
            for (size_t i = 0; i < D; i++) {
                size_t k = b * D + i;
                double sg = sigma_at(d, k), rho = log(sg);
                qctx c = {LOC[k], sg, centre_at(d, i), half_at(d, i), QC[i], QL[i], 0};
                H += 0.5 + TC_HALF_LOG_2PI + rho + log(c.s) + tc_gauss_expect(q_integrand, &c);
                c.which = 1;
                double dh0 = tc_gauss_expect(q_integrand, &c);
                c.which = 2;
                double dh1 = 1.0 - 2.0 * sg * tc_gauss_expect(q_integrand, &c);
                c.which = 3;
                EQ += tc_gauss_expect(q_integrand, &c);
                c.which = 4;
                ex0[k] = -ALPHA * dh0 - tc_gauss_expect(q_integrand, &c);
                c.which = 5;
                double dr = -ALPHA * dh1 - tc_gauss_expect(q_integrand, &c);
                ex1[k] = d->scale_is_sigma ? dr / sg : dr;
            }
            exH[b] = H;
            exL[b] = -ALPHA * H - EQ;
        }
        tc_stat sl[B], sh[B], s0[B * D], s1[B * D];
        memset(sl, 0, sizeof sl), memset(sh, 0, sizeof sh), memset(s0, 0, sizeof s0),
            memset(s1, 0, sizeof s1);
        for (int s = 0; s < 1000; s++) {
            uint64_t seed = 15485863ULL * (uint64_t)s + v;
            double x[B * 16 * D], eps[B * 16 * D], lp[B * 16], q[B * 16], dq[B * 16 * D];
            gs_sample_job sj = {.dist = *d, .samples = M, .x = x, .eps = eps, .log_prob = lp};
            gs_rng_init(&sj.rng, seed);
            ck_assert_int_eq(gs_sample(&sj, 0, B, NULL), 0);
            q_of(x, B * M, q, dq);
            couts o;
            gs_sac_continuous_job j = cont_job(d, M, seed, dq, q, &o);
            ck_assert_int_eq(gs_sac_continuous(&j, 0, B, NULL), 0);
            for (size_t b = 0; b < B; b++) {
                tc_stat_add(&sl[b], o.loss[b], o.sl[b]);
                tc_stat_add(&sh[b], o.h[b], o.sh[b]);
            }
            for (size_t k = 0; k < B * D; k++) {
                tc_stat_add(&s0[k], o.g0[k], o.s0[k]);
                tc_stat_add(&s1[k], o.g1[k], o.s1[k]);
            }
        }
        char name[96];
        for (size_t b = 0; b < B; b++) {
            snprintf(name, sizeof name, "%s loss[%zu]", CONT[v].name, b);
            ck_unbiased(sl[b], exL[b], name);
            ck_se_calibrated(sl[b], name);
            snprintf(name, sizeof name, "%s entropy[%zu]", CONT[v].name, b);
            ck_unbiased(sh[b], exH[b], name);
            ck_se_calibrated(sh[b], name);
        }
        for (size_t k = 0; k < B * D; k++) {
            snprintf(name, sizeof name, "%s grad loc[%zu]", CONT[v].name, k);
            ck_unbiased(s0[k], ex0[k], name);
            ck_se_calibrated(s0[k], name);
            snprintf(name, sizeof name, "%s grad scale[%zu]", CONT[v].name, k);
            ck_unbiased(s1[k], ex1[k], name);
            ck_se_calibrated(s1[k], name);
        }
    }
}
END_TEST

START_TEST(continuous_edges) {
    /* Saturation (loc +-40), log_scale -20 .. 20, bounds, M = 1 and 2. */
    enum { R = 6 };
    double loc[R] = {40.0, -40.0, 0.5, 0.5, 0.5, -0.5}, ls[R] = {-3.0, -3.0, -20.0, 20.0, 0.0, 1.0};
    static const double lo[1] = {-1.0}, hi[1] = {4.0};
    for (int bnd = 0; bnd < 2; bnd++)
        for (size_t M = 1; M <= 32; M = M == 2 ? 32 : M + 1) {
            gs_dist d = {.type = GS_TANH_NORMAL,
                         .rows = R,
                         .dim = 1,
                         .loc = loc,
                         .scale = ls,
                         .low = bnd ? lo : NULL,
                         .high = bnd ? hi : NULL};
            double dq[R * 32], q[R * 32];
            for (size_t k = 0; k < R * M; k++) dq[k] = 0.3, q[k] = 1.0;
            couts o;
            gs_sac_continuous_job j = cont_job(&d, M, 17, dq, q, &o);
            gs_error e;
            int rc = gs_sac_continuous(&j, 0, R, &e);
            ck_assert_msg(rc == 0, "bounds %d M %zu: rc %d input %d row %ld", bnd, M, rc, e.input,
                          e.row);
            ck_all_finite(o.loss, R);
            ck_all_finite(o.h, R);
            ck_all_finite(o.lp, R * M);
            ck_all_finite(o.g0, R);
            ck_all_finite(o.g1, R);
            ck_all_finite(o.s0, R);
            ck_all_finite(o.s1, R);
            double l = bnd ? -1.0 : -1.0, h = bnd ? 4.0 : 1.0;
            for (size_t k = 0; k < R * M; k++) ck_assert(o.a[k] >= l && o.a[k] <= h);
            for (size_t m = 0; m < M; m++) ck_assert(o.a[m] == h && o.a[M + m] == l);
            if (M == 1) ck_assert(o.sl[0] == 0.0 && o.sh[0] == 0.0 && o.s0[0] == 0.0);
            /* saturated rows: the mu-gradient is alpha 2 tanh u = +-2 alpha
             * (da/dmu underflows to 0) */
            ck_close(o.g0[0], 2.0 * ALPHA, 1e-15, 0.0);
            ck_close(o.g0[1], -2.0 * ALPHA, 1e-15, 0.0);
        }
}
END_TEST

START_TEST(continuous_errors) {
    const size_t M = 4;
    double dq[3 * 4 * D], q[3 * 4];
    for (size_t k = 0; k < 3 * M * D; k++) dq[k] = 0.2;
    for (size_t k = 0; k < 3 * M; k++) q[k] = 1.0;
    /* sigma = exp(800): the log-density (and the entropy) is infinite. */
    params P;
    params_init(&P, &CONT[0], 3);
    P.scale[1 * D + 1] = 800.0;
    couts o;
    gs_sac_continuous_job j = cont_job(&P.dist, M, 5, dq, q, &o);
    gs_error e;
    int rc = gs_sac_continuous(&j, 0, 3, &e);
    ck_error(rc, e, GS_ENONFINITE, GS_IN_SCALE, 1, -1, 1);
    /* dq_da that overflows the gradient: blame dq_da in row 2, column 0. */
    params_init(&P, &CONT[0], 3);
    j = cont_job(&P.dist, M, 5, dq, q, &o);
    for (size_t m = 0; m < M; m++) dq[(2 * M + m) * D] = m % 2 ? 1e308 : -1e308;
    rc = gs_sac_continuous(&j, 0, 3, &e);
    ck_assert_msg(rc == GS_ENONFINITE && e.input == GS_IN_DQ_DA && e.row == 2 && e.col == 0,
                  "dq_da: rc %d input %d row %ld col %ld", rc, e.input, e.row, e.col);
    for (size_t k = 0; k < 3 * M * D; k++) dq[k] = 0.2;
    /* q of +-1e308: the loss's standard error overflows: blame q. */
    q[4] = 1e308, q[5] = -1e308, q[6] = 1e308, q[7] = -1e308;
    rc = gs_sac_continuous(&j, 0, 3, &e);
    ck_assert_msg(rc == GS_ENONFINITE && e.input == GS_IN_Q && e.row == 1,
                  "q: rc %d input %d row %ld", rc, e.input, e.row);
    for (size_t k = 0; k < 3 * M; k++) q[k] = 1.0;
    /* caller noise of 1e200: the log-density is -inf: blame eps. */
    double eps[3 * 4 * D];
    for (size_t k = 0; k < 3 * M * D; k++) eps[k] = 0.1 * k - 1.0;
    eps[(1 * M + 2) * D + 1] = -1e200;
    j.noise.eps = eps;
    rc = gs_sac_continuous(&j, 0, 3, &e);
    ck_error(rc, e, GS_ENONFINITE, GS_IN_EPS, 1, 2, 1);
}
END_TEST

/* ==== temperature ========================================================================= */

START_TEST(alpha_loss) {
    double h[3] = {1.0, 0.5, -0.25}, se[3] = {0.1, 0.2, 0.3}, s;
    double want = 0.7 * ((1.0 + 2.0) + (0.5 + 2.0) + (-0.25 + 2.0)) / 3.0;
    ck_close(gs_sac_alpha_loss(0.7, -2.0, 3, h, se, &s), want, 1e-15, 0.0);
    ck_close(s, 0.7 * sqrt(0.01 + 0.04 + 0.09) / 3.0, 1e-15, 0.0);
    ck_close(gs_sac_alpha_loss(0.7, -2.0, 3, h, NULL, &s), want, 1e-15, 0.0);
    ck_assert(s == 0.0);
    ck_close(gs_sac_alpha_loss(2.0, 1.0, 1, h, NULL, NULL), 0.0, 0.0, 0.0);
    /* With the exact discrete entropies of the actor kernel. */
    douts o;
    gs_sac_discrete_job j = discrete_job(LOGITS, B, Q, NULL, 0, GS_BASELINE_LOO, &o);
    ck_assert_int_eq(gs_sac_discrete(&j, 0, B, NULL), 0);
    ck_close(gs_sac_alpha_loss(ALPHA, 0.5, B, o.h, NULL, NULL),
             ALPHA * ((o.h[0] - 0.5) + (o.h[1] - 0.5)) / 2, 1e-15, 0.0);
}
END_TEST

/* ==== bit equality across row splits ====================================================== */

static const size_t SPLITS[][2] = {{5, 7}, {0, 1}, {1, 5}};

START_TEST(split_rows_bit_identical) {
    const size_t M = 6;
    double z[RB * K], qk[RB * K], qm[RB * 6], dq[RB * 6 * D];
    int64_t act[RB * 6];
    for (size_t i = 0; i < RB * K; i++) z[i] = 2.0 * sin(0.77 * i), qk[i] = cos(0.5 * i);
    for (size_t i = 0; i < RB * M; i++) act[i] = (int64_t)((i * 7) % K), qm[i] = sin(1.1 * i);
    for (size_t i = 0; i < RB * M * D; i++) dq[i] = cos(0.3 * i);
    static douts a, c;
    for (int mode = 0; mode < 3; mode++) {
        const int64_t *ac = mode ? act : NULL;
        gs_baseline bl = mode == 2 ? GS_BASELINE_NONE : GS_BASELINE_LOO;
        memset(&c, 0xee, sizeof c);
        gs_sac_discrete_job ja = discrete_job(z, RB, mode ? qm : qk, ac, M, bl, &a);
        gs_sac_discrete_job jc = discrete_job(z, RB, mode ? qm : qk, ac, M, bl, &c);
        if (mode) ja.terms.p0 = a.t, jc.terms.p0 = c.t;
        ck_assert_int_eq(gs_sac_discrete(&ja, 0, RB, NULL), 0);
        for (int k = 0; k < 3; k++)
            ck_assert_int_eq(gs_sac_discrete(&jc, SPLITS[k][0], SPLITS[k][1], NULL), 0);
        ck_same_bytes(a.loss, c.loss, RB * sizeof(double));
        ck_same_bytes(a.h, c.h, RB * sizeof(double));
        ck_same_bytes(a.g, c.g, RB * K * sizeof(double));
        if (mode) {
            ck_same_bytes(a.sl, c.sl, RB * sizeof(double));
            ck_same_bytes(a.sg, c.sg, RB * K * sizeof(double));
            ck_same_bytes(a.t, c.t, RB * M * K * sizeof(double));
        }
    }
    static pouts pa, pc;
    memset(&pc, 0xee, sizeof pc);
    gs_sac_policy_job pja = policy_job(qk, RB, K, 0.4, M, 8, &pa),
                      pjc = policy_job(qk, RB, K, 0.4, M, 8, &pc);
    ck_assert_int_eq(gs_sac_policy(&pja, 0, RB, NULL), 0);
    for (int k = 0; k < 3; k++)
        ck_assert_int_eq(gs_sac_policy(&pjc, SPLITS[k][0], SPLITS[k][1], NULL), 0);
    ck_same_bytes(pa.p, pc.p, RB * K * sizeof(double));
    ck_same_bytes(pa.lp, pc.lp, RB * K * sizeof(double));
    ck_same_bytes(pa.h, pc.h, RB * sizeof(double));
    ck_same_bytes(pa.v, pc.v, RB * sizeof(double));
    ck_same_bytes(pa.act, pc.act, RB * M * sizeof(int64_t));
    for (size_t v = 0; v < NCONT; v++) {
        params P;
        params_init(&P, &CONT[v], RB);
        static couts ca, cc;
        memset(&cc, 0xee, sizeof cc);
        gs_sac_continuous_job ja = cont_job(&P.dist, M, 9, dq, qm, &ca),
                              jc = cont_job(&P.dist, M, 9, dq, qm, &cc);
        ja.terms = (gs_pgrad){ca.t0, ca.t1};
        jc.terms = (gs_pgrad){cc.t0, cc.t1};
        ck_assert_int_eq(gs_sac_continuous(&ja, 0, RB, NULL), 0);
        for (int k = 0; k < 3; k++)
            ck_assert_int_eq(gs_sac_continuous(&jc, SPLITS[k][0], SPLITS[k][1], NULL), 0);
        ck_same_bytes(ca.loss, cc.loss, RB * sizeof(double));
        ck_same_bytes(ca.h, cc.h, RB * sizeof(double));
        ck_same_bytes(ca.lp, cc.lp, RB * M * sizeof(double));
        ck_same_bytes(ca.a, cc.a, RB * M * D * sizeof(double));
        ck_same_bytes(ca.g0, cc.g0, RB * D * sizeof(double));
        ck_same_bytes(ca.g1, cc.g1, RB * D * sizeof(double));
        ck_same_bytes(ca.sl, cc.sl, RB * sizeof(double));
        ck_same_bytes(ca.sh, cc.sh, RB * sizeof(double));
        ck_same_bytes(ca.s0, cc.s0, RB * D * sizeof(double));
        ck_same_bytes(ca.s1, cc.s1, RB * D * sizeof(double));
        ck_same_bytes(ca.t0, cc.t0, RB * M * D * sizeof(double));
        ck_same_bytes(ca.t1, cc.t1, RB * M * D * sizeof(double));
    }
}
END_TEST

/* ==== many rows: the lane kernels ========================================================
 * On AVX-512 the categorical kernels run eight rows at a time, one row per
 * lane (core/gs_lanes_avx512.c), and fall back to the row loop when the
 * per-sample terms are wanted. These cases use row counts that are not a
 * multiple of eight, K = 1, K not a multiple of eight and logits of +-1e4,
 * and check: the closed forms; bit equality of the whole batch with row
 * ranges that cut lane groups anywhere (and with each row alone); bit
 * equality of the lane path (no terms) with the row path (terms). */

enum { LB = 21, LK = 33, LM = 24 }; /* LM > 16: the lanes' division path */
static const size_t LSPLITS[][2] = {{0, 5}, {5, 13}, {13, 14}, {14, 21}};
/* 17, 27: columns picked from the third and fourth vectors; 33: too many
 * to pick from registers (the lanes then gather). */
static const size_t LKS[] = {1, 3, 8, 9, 17, 18, 19, 27, 33};

/* Logits and Q values of LB rows of k columns; rows 3 and 11 extreme. */
static void lane_inputs(size_t k, double *z, double *q, double *qm, int64_t *act) {
    for (size_t i = 0; i < LB * k; i++) z[i] = 3.0 * sin(0.37 * i + 1.0), q[i] = 1.0 + 2.0 * cos(0.71 * i);
    for (size_t j = 0; j < k; j++) {
        z[3 * k + j] = j % 2 ? -1e4 : 1e4;
        z[11 * k + j] = j == k / 2 ? 1e4 : -1e4;
    }
    for (size_t i = 0; i < LB * LM; i++) {
        qm[i] = 0.5 + 1.5 * sin(0.43 * i + 0.25);
        act[i] = (int64_t)((7 * i + i / 3) % k);
    }
}

typedef struct {
    double loss[LB], h[LB], g[LB * LK], sl[LB], sg[LB * LK], t[LB * LM * LK];
} lanes_out;

static gs_sac_discrete_job lane_job(const double *z, size_t k, const double *q,
                                    const int64_t *act, size_t M, gs_baseline bl, lanes_out *o) {
    return (gs_sac_discrete_job){.dist = {.type = GS_CATEGORICAL, .rows = LB, .dim = k, .logits = z},
                                 .alpha = ALPHA, .q = q, .actions = act, .samples = M,
                                 .baseline = bl, .loss = o->loss, .entropy = o->h,
                                 .grad = {o->g, NULL}, .se_loss = act ? o->sl : NULL,
                                 .se_grad = {act ? o->sg : NULL, NULL}};
}

static void same_discrete(const lanes_out *a, const lanes_out *c, size_t k, int sampled) {
    ck_same_bytes(a->loss, c->loss, LB * sizeof(double));
    ck_same_bytes(a->h, c->h, LB * sizeof(double));
    ck_same_bytes(a->g, c->g, LB * k * sizeof(double));
    if (sampled) {
        ck_same_bytes(a->sl, c->sl, LB * sizeof(double));
        ck_same_bytes(a->sg, c->sg, LB * k * sizeof(double));
    }
}

START_TEST(lanes_discrete) {
    static double z[LB * LK], q[LB * LK], qm[LB * LM];
    static int64_t act[LB * LM];
    static lanes_out a, c;
    for (size_t ik = 0; ik < sizeof LKS / sizeof *LKS; ik++) {
        size_t k = LKS[ik];
        lane_inputs(k, z, q, qm, act);
        /* exact: the closed form, then any split of the rows */
        gs_sac_discrete_job ja = lane_job(z, k, q, NULL, 0, GS_BASELINE_LOO, &a);
        ck_assert_int_eq(gs_sac_discrete(&ja, 0, LB, NULL), 0);
        for (size_t b = 0; b < LB; b++) {
            double want[LK], h, logp[LK], p[LK], L = 0.0;
            ref_softmax(z + b * k, k, logp, p);
            h = 0.0;
            for (size_t i = 0; i < k; i++) L += p[i] * (ALPHA * logp[i] - q[b * k + i]), h -= p[i] * logp[i];
            for (size_t i = 0; i < k; i++) want[i] = p[i] * (ALPHA * logp[i] - q[b * k + i] - L);
            ck_close(a.loss[b], L, 1e-13, 1e-13);
            ck_close(a.h[b], h, 1e-13, 1e-13);
            for (size_t i = 0; i < k; i++) ck_close_i(a.g[b * k + i], want[i], 1e-12, 1e-13, i);
        }
        gs_sac_discrete_job jc = lane_job(z, k, q, NULL, 0, GS_BASELINE_LOO, &c);
        memset(&c, 0xee, sizeof c);
        for (int s = 0; s < 4; s++)
            ck_assert_int_eq(gs_sac_discrete(&jc, LSPLITS[s][0], LSPLITS[s][1], NULL), 0);
        same_discrete(&a, &c, k, 0);
        memset(&c, 0xee, sizeof c);
        for (size_t b = 0; b < LB; b++) ck_assert_int_eq(gs_sac_discrete(&jc, b, b + 1, NULL), 0);
        same_discrete(&a, &c, k, 0);
        /* sampled: lanes (no terms) against rows (terms), and splits */
        static const size_t MS[] = {1, 2, 5, 16, LM};
        for (size_t im = 0; im < sizeof MS / sizeof *MS; im++)
            for (int bl = 0; bl < 2; bl++) {
                size_t M = MS[im];
                gs_baseline base = bl ? GS_BASELINE_NONE : GS_BASELINE_LOO;
                ja = lane_job(z, k, qm, act, M, base, &a);
                jc = lane_job(z, k, qm, act, M, base, &c);
                jc.terms.p0 = c.t;
                memset(&c, 0xee, sizeof c);
                ck_assert_int_eq(gs_sac_discrete(&ja, 0, LB, NULL), 0);
                ck_assert_int_eq(gs_sac_discrete(&jc, 0, LB, NULL), 0);
                same_discrete(&a, &c, k, 1);
                for (size_t i = 0; i < LB * k; i++) ck_assert(isfinite(a.g[i]) && isfinite(a.sg[i]));
                memset(&c, 0xee, sizeof c);
                jc.terms.p0 = NULL;
                for (int s = 0; s < 4; s++)
                    ck_assert_int_eq(gs_sac_discrete(&jc, LSPLITS[s][0], LSPLITS[s][1], NULL), 0);
                same_discrete(&a, &c, k, 1);
            }
    }
}
END_TEST

START_TEST(lanes_policy) {
    static double z[LB * LK], q[LB * LK], qm[LB * LM];
    static int64_t act[LB * LM];
    static double p[LB * LK], lp[LB * LK], h[LB], v[LB], p2[LB * LK], lp2[LB * LK], h2[LB],
        v2[LB];
    static int64_t ac[LB * 4], ac2[LB * 4];
    for (size_t ik = 0; ik < sizeof LKS / sizeof *LKS; ik++) {
        size_t k = LKS[ik];
        lane_inputs(k, z, q, qm, act);
        for (size_t i = 0; i < LB * k; i++) q[i] = z[i] * 0.25; /* Q of +-2500 too */
        gs_sac_policy_job j = {.rows = LB, .K = k, .q = q, .alpha = 0.25, .samples = 4,
                               .probs = p, .log_probs = lp, .entropy = h, .value = v, .actions = ac};
        gs_rng_init(&j.rng, 77);
        gs_sac_policy_job j2 = j;
        j2.probs = p2, j2.log_probs = lp2, j2.entropy = h2, j2.value = v2, j2.actions = ac2;
        ck_assert_int_eq(gs_sac_policy(&j, 0, LB, NULL), 0);
        for (int s = 0; s < 4; s++)
            ck_assert_int_eq(gs_sac_policy(&j2, LSPLITS[s][0], LSPLITS[s][1], NULL), 0);
        ck_same_bytes(p, p2, LB * k * sizeof(double));
        ck_same_bytes(lp, lp2, LB * k * sizeof(double));
        ck_same_bytes(h, h2, sizeof h);
        ck_same_bytes(v, v2, sizeof v);
        ck_same_bytes(ac, ac2, sizeof ac);
        for (size_t b = 0; b < LB; b++) {
            double rl[LK], rp[LK], rh = 0.0, mx = z[b * k];
            ref_softmax(z + b * k, k, rl, rp);
            for (size_t i = 0; i < k; i++) rh -= rp[i] * rl[i], mx = fmax(mx, z[b * k + i]);
            double se = 0.0;
            for (size_t i = 0; i < k; i++) se += exp(z[b * k + i] - mx);
            ck_close(v[b], 0.25 * (mx + log(se)), 1e-14, 1e-14);
            ck_close(h[b], rh, 1e-13, 1e-13);
            for (size_t i = 0; i < k; i++) {
                ck_close_i(lp[b * k + i], rl[i], 1e-14, 1e-13, i);
                ck_close_i(p[b * k + i], rp[i], 1e-13, 1e-300, i);
            }
            for (size_t m = 0; m < 4; m++)
                ck_assert_int_eq(ac[b * 4 + m], (int64_t)gs_rng_categorical(&j.rng, b, (uint32_t)m,
                                                                           p + b * k, k));
        }
    }
}
END_TEST

/* A failing row inside a lane group is reported as the row loop reports it
 * (status, input, row, column), and rows before it are computed. */
START_TEST(lanes_errors) {
    static double z[LB * LK], q[LB * LK], qm[LB * LM];
    static int64_t act[LB * LM];
    static lanes_out a;
    size_t k = 18;
    lane_inputs(k, z, q, qm, act);
    gs_error e1, e2;
    /* exact: q of +-1e308 in row 13 overflows the gradient */
    size_t top = 0, other;
    for (size_t i = 1; i < k; i++) top = z[13 * k + i] > z[13 * k + top] ? i : top;
    other = (top + 1) % k;
    z[13 * k + top] += 5.0; /* p_top ~ 0.99: L ~ -1e308, and Q_other - L overflows */
    q[13 * k + top] = 1e308, q[13 * k + other] = -1e308;
    gs_sac_discrete_job j = lane_job(z, k, q, NULL, 0, GS_BASELINE_LOO, &a);
    int rc1 = gs_sac_discrete(&j, 0, LB, &e1), rc2 = gs_sac_discrete(&j, 13, 14, &e2);
    ck_assert_int_eq(rc1, GS_ENONFINITE);
    ck_error(rc2, e2, rc1, e1.input, e1.row, e1.sample, e1.col);
    ck_assert_int_eq(e1.row, 13);
    /* Logits spread past the largest double in row 9: p = 1 on column 2
     * and 0 elsewhere, where 0 log 0 = 0 (MATH.md §2; log p is -inf on
     * column 3): H = 0, L = -Q_2, a zero gradient, in lanes as alone. The
     * first failure is still row 13's (it was row 9, blamed on the logits). */
    z[9 * k + 2] = 1e308, z[9 * k + 3] = -1e308;
    rc1 = gs_sac_discrete(&j, 0, LB, &e1);
    ck_error(rc1, e1, GS_ENONFINITE, e1.input, 13, e1.sample, e1.col);
    double h9 = a.h[9], l9 = a.loss[9], g9[LK];
    memcpy(g9, a.g + 9 * k, k * sizeof *g9);
    ck_assert_int_eq(gs_sac_discrete(&j, 9, 10, &e2), 0);
    ck_assert(h9 == 0.0 && a.h[9] == 0.0);
    ck_assert(l9 == -q[9 * k + 2] && a.loss[9] == l9);
    for (size_t i = 0; i < k; i++) ck_assert(g9[i] == 0.0 && a.g[9 * k + i] == 0.0);
    lane_inputs(k, z, q, qm, act);
    /* sampled: q of +-1e308 for two samples of row 10 */
    qm[10 * LM + 2] = 1e308, qm[10 * LM + 7] = -1e308;
    j = lane_job(z, k, qm, act, LM, GS_BASELINE_LOO, &a);
    rc1 = gs_sac_discrete(&j, 0, LB, &e1);
    rc2 = gs_sac_discrete(&j, 10, 11, &e2);
    ck_assert_int_eq(rc1, GS_ENONFINITE);
    ck_assert_int_eq(e1.row, 10);
    ck_error(rc2, e2, rc1, e1.input, e1.row, e1.sample, e1.col);
    /* policy: Q / alpha overflows in row 12, column 6 */
    static double p[LB * LK], lp[LB * LK], h[LB], v[LB];
    for (size_t i = 0; i < LB * k; i++) q[i] = z[i];
    q[12 * k + 6] = 1e308;
    gs_sac_policy_job pj = {.rows = LB, .K = k, .q = q, .alpha = 0.25, .probs = p,
                            .log_probs = lp, .entropy = h, .value = v};
    gs_rng_init(&pj.rng, 5);
    rc1 = gs_sac_policy(&pj, 0, LB, &e1);
    ck_error(rc1, e1, GS_ENONFINITE, GS_IN_Q, 12, -1, 6);
    rc2 = gs_sac_policy(&pj, 12, 13, &e2);
    ck_error(rc2, e2, GS_ENONFINITE, GS_IN_Q, 12, -1, 6);
    /* Q / alpha spread past the largest double in row 11: the entropy is
     * finite (0 log 0 = 0) but column 4's log p is -inf, an output: q's
     * fault, with its column, in lanes as alone. */
    for (size_t i = 0; i < LB * k; i++) q[i] = z[i];
    pj.alpha = 1.0;
    q[11 * k + 3] = 1e308, q[11 * k + 4] = -1e308;
    rc1 = gs_sac_policy(&pj, 0, LB, &e1);
    ck_error(rc1, e1, GS_ENONFINITE, GS_IN_Q, 11, -1, 4);
    rc2 = gs_sac_policy(&pj, 11, 12, &e2);
    ck_error(rc2, e2, GS_ENONFINITE, GS_IN_Q, 11, -1, 4);
}
END_TEST

/* The standard errors of the sampled estimator where a trained policy
 * lives: p_0 = 1 - 1.5e-11 (logit 27.6 against 17 zeros), nearly every
 * sample drawing action 0. The reference forms the terms w_m (e_k - p) in
 * long double, with 1 - p_0 as the sum of the other p (exactly what it is;
 * 1 - p_0 from a double p_0 is off by ~1e-5 relative), and reduces them
 * two-pass. A naive expanded square (sum g^2 - M mean^2) fails this by many
 * orders; so does taking 1 - p_0 from p_0. */
START_TEST(sampled_se_near_one) {
    enum { KK = 18, MM = 16, RR = 3 };
    double z[RR * KK], qv[RR * MM];
    int64_t acts[RR * MM];
    for (size_t r = 0; r < RR; r++) {
        for (size_t j = 0; j < KK; j++) z[r * KK + j] = j == 0 ? (r == 2 ? 1e4 : 27.6) : 0.0;
        for (size_t m = 0; m < MM; m++) {
            qv[r * MM + m] = 2.0 * sin(1.3 * m + r) + 0.1 * m;
            /* row 0: every sample drew 0; rows 1 and 2: samples 3 and 9 drew 5 and 11 */
            acts[r * MM + m] = r == 0 ? 0 : m == 3 ? 5 : m == 9 ? 11 : 0;
        }
    }
    double g[RR * KK], sg[RR * KK], loss[RR], sl[RR], h[RR];
    for (int bl = 0; bl < 2; bl++) {
        gs_sac_discrete_job j = {.dist = {.type = GS_CATEGORICAL, .rows = RR, .dim = KK, .logits = z},
                                 .alpha = ALPHA, .q = qv, .actions = acts, .samples = MM,
                                 .baseline = bl ? GS_BASELINE_NONE : GS_BASELINE_LOO,
                                 .loss = loss, .entropy = h, .grad = {g, NULL}, .se_loss = sl,
                                 .se_grad = {sg, NULL}};
        ck_assert_int_eq(gs_sac_discrete(&j, 0, RR, NULL), 0);
        for (size_t r = 0; r < RR; r++) {
            long double mx = z[r * KK], s = 0.0L, lp[KK], p[KK], w[MM], t[MM], tm = 0.0L;
            for (size_t i = 0; i < KK; i++) s += expl((long double)z[r * KK + i] - mx);
            for (size_t i = 0; i < KK; i++) {
                lp[i] = (long double)z[r * KK + i] - mx - logl(s);
                p[i] = expl(lp[i]);
            }
            for (size_t m = 0; m < MM; m++) {
                t[m] = (long double)ALPHA * lp[acts[r * MM + m]] - qv[r * MM + m];
                tm += t[m] / MM;
            }
            for (size_t m = 0; m < MM; m++) w[m] = bl ? t[m] : (t[m] - tm) * MM / (MM - 1);
            for (size_t j2 = 0; j2 < KK; j2++) {
                long double q = 0.0L, mean = 0.0L, ss = 0.0L, gm[MM], mag = 0.0L;
                for (size_t i = 0; i < KK; i++)
                    if (i != j2) q += p[i];
                for (size_t m = 0; m < MM; m++) {
                    gm[m] = acts[r * MM + m] == (int64_t)j2 ? w[m] * q : -w[m] * p[j2];
                    mean += gm[m] / MM;
                    mag += fabsl(gm[m]) / MM;
                }
                for (size_t m = 0; m < MM; m++) ss += (gm[m] - mean) * (gm[m] - mean);
                double se = (double)sqrtl(ss / (MM - 1) / MM);
                /* The mean of loo-centred terms can be 0 exactly: its error is
                 * measured against the terms' own size. */
                ck_assert_msg(tc_close(g[r * KK + j2], (double)mean, 1e-10, 1e-14 * (double)mag),
                              "row %zu col %zu baseline %d: grad %.17g, want %.17g", r, j2, bl,
                              g[r * KK + j2], (double)mean);
                ck_assert_msg(tc_close(sg[r * KK + j2], se, 1e-10, 1e-300),
                              "row %zu col %zu baseline %d: se %.17g, want %.17g", r, j2, bl,
                              sg[r * KK + j2], se);
            }
        }
    }
}
END_TEST

/* The continuous actor in lanes against the row loop (tc_lanes_vs_rows):
 * with and without Q and standard errors. */
static int lanes_continuous_run(const tc_lanes_case *c, size_t r0, size_t r1,
                                const tc_lanes_out *o, gs_error *err) {
    int se = c->M != 2, q = c->M != 7;
    gs_sac_continuous_job j = {.dist = c->dist, .alpha = 0.3, .samples = c->M,
                               .noise = {c->eps, c->rng}, .dq_da = c->in,
                               .q = q ? c->in_m : NULL, .loss = o->r0, .entropy = o->r1,
                               .log_prob = o->lp, .actions = o->x, .grad = {o->g0, o->g1},
                               .se_loss = se ? o->r2 : NULL, .se_entropy = se ? o->r3 : NULL,
                               .se_grad = se ? (gs_pgrad){o->s0, o->s1} : (gs_pgrad){NULL, NULL}};
    return gs_sac_continuous(&j, r0, r1, err);
}

START_TEST(lanes_continuous) { tc_lanes_vs_rows(lanes_continuous_run, 1, 1); }
END_TEST

/* A batch that moves at least GS_STREAM_BYTES writes its K-column outputs
 * with non-temporal stores (gs_vmath_impl.h): the same bits as a small
 * batch of the same rows, which does not stream, and as a split whose
 * second share starts off a cache line (stored as usual). */
enum { SB = 40963, SK = 18, SM = 16, SW = 67 };

typedef struct {
    double *loss, *h, *g, *sl, *sg, *p, *lp;
} big_out;

static big_out big_outs(size_t rows) {
    return (big_out){tc_big(rows), tc_big(rows), tc_big(rows * SK), tc_big(rows), tc_big(rows * SK),
                     tc_big(rows * SK), tc_big(rows * SK)};
}

static void big_free(big_out *o) {
    free(o->loss), free(o->h), free(o->g), free(o->sl), free(o->sg), free(o->p), free(o->lp);
}

/* kind 0: exact actor, 1: sampled actor (loo), 2: the policy; rows
 * [r0, r1) of the batch starting at row w0 of the inputs, of `rows` rows. */
static void big_run(int kind, const double *z, const double *q, const double *qm,
                    const int64_t *act, size_t w0, size_t rows, size_t r0, size_t r1,
                    const big_out *o) {
    if (kind == 2) {
        gs_sac_policy_job j = {.rows = rows, .K = SK, .q = q + w0 * SK, .alpha = ALPHA,
                               .probs = o->p, .log_probs = o->lp, .entropy = o->h,
                               .value = o->loss};
        ck_assert_int_eq(gs_sac_policy(&j, r0, r1, NULL), 0);
        return;
    }
    gs_sac_discrete_job j = {
        .dist = {.type = GS_CATEGORICAL, .rows = rows, .dim = SK, .logits = z + w0 * SK},
        .alpha = ALPHA, .q = kind ? qm + w0 * SM : q + w0 * SK,
        .actions = kind ? act + w0 * SM : NULL, .samples = kind ? SM : 0,
        .baseline = GS_BASELINE_LOO, .loss = o->loss, .entropy = o->h, .grad = {o->g, NULL},
        .se_loss = kind ? o->sl : NULL, .se_grad = {kind ? o->sg : NULL, NULL}};
    ck_assert_int_eq(gs_sac_discrete(&j, r0, r1, NULL), 0);
}

/* Rows [at, at + n) of a against rows [0, n) of c (outputs at offset). */
static void big_same(int kind, const big_out *a, size_t at, const big_out *c, size_t n) {
    ck_same_bytes(a->h + at, c->h, n * sizeof(double));
    ck_same_bytes(a->loss + at, c->loss, n * sizeof(double));
    if (kind == 2) {
        ck_same_bytes(a->p + at * SK, c->p, n * SK * sizeof(double));
        ck_same_bytes(a->lp + at * SK, c->lp, n * SK * sizeof(double));
        return;
    }
    ck_same_bytes(a->g + at * SK, c->g, n * SK * sizeof(double));
    if (kind == 1) {
        ck_same_bytes(a->sl + at, c->sl, n * sizeof(double));
        ck_same_bytes(a->sg + at * SK, c->sg, n * SK * sizeof(double));
    }
}

START_TEST(streamed_big_batch) {
    ck_assert(gs_stream_batch(SB, 3 * SK) && !gs_stream_batch(SW, 3 * SK + 2 * SM));
    double *z = tc_big(SB * SK), *q = tc_big(SB * SK), *qm = tc_big(SB * SM);
    int64_t *act = malloc(SB * SM * sizeof *act);
    ck_assert_ptr_nonnull(act);
    for (size_t i = 0; i < SB * SK; i++)
        z[i] = 3.0 * sin(0.37 * i + 1.0), q[i] = 1.0 + 2.0 * cos(0.71 * i);
    for (size_t i = 0; i < SB * SM; i++) {
        qm[i] = 0.5 + 1.5 * sin(0.43 * i + 0.25);
        act[i] = (int64_t)((7 * i + i / 3) % SK);
    }
    for (int kind = 0; kind < 3; kind++) {
        big_out a = big_outs(SB), c = big_outs(SB), s = big_outs(SW);
        big_run(kind, z, q, qm, act, 0, SB, 0, SB, &a);
        size_t cut = SB / 2 + 3;
        big_run(kind, z, q, qm, act, 0, SB, 0, cut, &c);
        big_run(kind, z, q, qm, act, 0, SB, cut, SB, &c);
        big_same(kind, &a, 0, &c, SB);
        const size_t w0s[] = {0, SB / 2, SB - SW};
        for (int w = 0; w < 3; w++) {
            big_run(kind, z, q, qm, act, w0s[w], SW, 0, SW, &s);
            big_same(kind, &a, w0s[w], &s, SW);
        }
        big_free(&a), big_free(&c), big_free(&s);
    }
    free(z), free(q), free(qm), free(act);
}
END_TEST

static Suite *sac_suite(void) {
    Suite *s = suite_create("sac");
    TCase *tc = tcase_create("discrete");
    tcase_add_test(tc, discrete_exact);
    tcase_add_test(tc, discrete_sampled_unbiased);
    tcase_add_test(tc, discrete_sampled_formula);
    tcase_add_test(tc, discrete_edges);
    tcase_add_test(tc, discrete_error_q);
    suite_add_tcase(s, tc);
    tc = tcase_create("policy");
    tcase_add_test(tc, policy_closed_form);
    tcase_add_test(tc, policy_edges);
    tcase_add_test(tc, policy_error_q);
    suite_add_tcase(s, tc);
    tc = tcase_create("continuous");
    tcase_add_test(tc, continuous_closed_form_and_consistency);
    tcase_add_test(tc, continuous_fd);
    tcase_add_test(tc, continuous_unbiased);
    tcase_add_test(tc, continuous_edges);
    tcase_add_test(tc, continuous_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("misc");
    tcase_add_test(tc, alpha_loss);
    tcase_add_test(tc, split_rows_bit_identical);
    suite_add_tcase(s, tc);
    tc = tcase_create("lanes");
    tcase_add_test(tc, lanes_discrete);
    tcase_add_test(tc, lanes_policy);
    tcase_add_test(tc, sampled_se_near_one);
    tcase_add_test(tc, lanes_errors);
    tcase_add_test(tc, lanes_continuous);
    tcase_add_test(tc, streamed_big_batch);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tc_run(sac_suite()); }
