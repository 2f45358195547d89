/* test_entropy.c - Check suite for gs_entropy: exact, score and reparam entropy gradients. */
#include "test_core_util.h"

#include "gs_vmath_impl.h" /* gs_stream_batch */

/* ---- fixtures and references ------------------------------------------------- */

enum { B = 2, K = 4, D = 2, MAXM = 64, RB = 7 };

static const double LOGITS[B * K] = {0.1, 2.0, -1.0, 0.5, -0.8, 0.3, 1.7, 0.0};
static const double LOC[B * D] = {0.3, -1.2, 0.8, 0.1};
static const double LOG_SCALE[B * D] = {-0.4, 0.2, 0.1, -0.9};
static const double LOW[D] = {-2.0, 0.0}, HIGH[D] = {2.0, 3.0};

typedef struct {
    gs_dist_type type;
    int sigma, bounds;
    const char *name;
} variant;

static const variant CONT[] = {
    {GS_NORMAL, 0, 0, "normal log_scale"},           {GS_NORMAL, 1, 0, "normal scale"},
    {GS_TANH_NORMAL, 0, 0, "tanh log_scale"},        {GS_TANH_NORMAL, 1, 0, "tanh scale"},
    {GS_TANH_NORMAL, 0, 1, "tanh bounds log_scale"}, {GS_TANH_NORMAL, 1, 1, "tanh bounds scale"},
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
static double rho_at(const gs_dist *d, size_t j) {
    return d->scale_is_sigma ? log(d->scale[j]) : d->scale[j];
}
static double half_at(const gs_dist *d, size_t i) {
    return d->low ? 0.5 * (d->high[i] - d->low[i]) : 1.0;
}

static void ref_softmax(const double *z, size_t k, double *logp, double *p) {
    double mx = z[0], s = 0.0;
    for (size_t i = 1; i < k; i++) mx = fmax(mx, z[i]);
    for (size_t i = 0; i < k; i++) s += exp(z[i] - mx);
    for (size_t i = 0; i < k; i++) {
        logp[i] = z[i] - mx - log(s);
        p[i] = exp(logp[i]);
    }
}

/* Exact entropy of row b and its gradient (MATH.md §2-§4). For the
 * tanh_normal, which has no closed form, by quadrature over the noise of
 * each coordinate (the entropy is a sum over coordinates):
 *   H_d = 1/2 + rho + log(2 pi)/2 + log s + E[log(1 - tanh^2 u)],
 *   dH/dmu = E[-2 tanh u], dH/drho = 1 - 2 sigma E[tanh(u) eps]. */
typedef struct {
    double mu, sigma;
    int which;
} qctx;

static double q_integrand(double e, void *arg) {
    const qctx *q = arg;
    double u = q->mu + q->sigma * e;
    switch (q->which) {
    case 0: return tc_log1mt2(u);
    case 1: return -2.0 * tanh(u);
    default: return tanh(u) * e;
    }
}

static double ref_entropy(const gs_dist *d, size_t b, double *g0, double *g1) {
    size_t n = d->dim;
    if (d->type == GS_CATEGORICAL) {
        double logp[16], p[16], h = 0.0;
        ref_softmax(d->logits + b * n, n, logp, p);
        for (size_t k = 0; k < n; k++) h -= p[k] > 0 ? p[k] * logp[k] : 0.0;
        for (size_t k = 0; k < n; k++) g0[k] = -p[k] * (logp[k] + h);
        return h;
    }
    double h = 0.0;
    for (size_t i = 0; i < n; i++) {
        size_t j = b * n + i;
        double sg = sigma_at(d, j), dr;
        h += 0.5 + TC_HALF_LOG_2PI + rho_at(d, j);
        if (d->type == GS_NORMAL) {
            g0[i] = 0.0;
            dr = 1.0;
        } else {
            qctx q = {d->loc[j], sg, 0};
            h += log(half_at(d, i)) + tc_gauss_expect(q_integrand, &q);
            q.which = 1;
            g0[i] = tc_gauss_expect(q_integrand, &q);
            q.which = 2;
            dr = 1.0 - 2.0 * sg * tc_gauss_expect(q_integrand, &q);
        }
        g1[i] = d->scale_is_sigma ? dr / sg : dr;
    }
    return h;
}

/* Output arrays of one gs_entropy call: up to 16 rows of up to 16 columns. */
typedef struct {
    double h[16], sh[16], g0[16 * 16], g1[16 * 16], s0[16 * 16], s1[16 * 16];
} outs;

static gs_entropy_job make_job(const gs_dist *d, gs_estimator est, gs_baseline bl, size_t M,
                               uint64_t seed, outs *o) {
    gs_entropy_job j = {.dist = *d,
                        .estimator = est,
                        .baseline = bl,
                        .samples = M,
                        .entropy = o->h,
                        .grad = {o->g0, d->type == GS_CATEGORICAL ? NULL : o->g1},
                        .se_entropy = o->sh,
                        .se_grad = {o->s0, d->type == GS_CATEGORICAL ? NULL : o->s1}};
    gs_rng_init(&j.rng, seed);
    gs_rng_init(&j.noise.rng, seed);
    return j;
}

/* ---- exact ---------------------------------------------------------------------- */

static double sum_entropy(void *arg) {
    gs_entropy_job *j = arg;
    ck_assert_int_eq(gs_entropy(j, 0, j->dist.rows, NULL), 0);
    double s = 0.0;
    for (size_t b = 0; b < j->dist.rows; b++) s += j->entropy[b];
    return s;
}

START_TEST(exact_categorical) {
    double z[B * K];
    memcpy(z, LOGITS, sizeof z);
    gs_dist d = {.type = GS_CATEGORICAL, .rows = B, .dim = K, .logits = z};
    outs o;
    gs_entropy_job j = make_job(&d, GS_EST_EXACT, GS_BASELINE_LOO, 0, 0, &o);
    j.se_entropy = NULL;
    ck_assert_int_eq(gs_entropy(&j, 0, B, NULL), 0);
    double g[B * K];
    memcpy(g, o.g0, sizeof g);
    for (size_t b = 0; b < B; b++) {
        double want[K];
        ck_close(o.h[b], ref_entropy(&d, b, want, NULL), 1e-12, 1e-12);
        for (size_t k = 0; k < K; k++) ck_close(g[b * K + k], want[k], 1e-12, 1e-12);
    }
    for (size_t i = 0; i < B * K; i++) ck_fd(g[i], sum_entropy, &j, &z[i]);
}
END_TEST

START_TEST(exact_normal) {
    for (int v = 0; v < 2; v++) {
        params P;
        params_init(&P, &CONT[v], B);
        outs o;
        gs_entropy_job j = make_job(&P.dist, GS_EST_EXACT, GS_BASELINE_LOO, 0, 0, &o);
        j.se_entropy = NULL;
        ck_assert_int_eq(gs_entropy(&j, 0, B, NULL), 0);
        double g0[B * D], g1[B * D];
        memcpy(g0, o.g0, sizeof g0);
        memcpy(g1, o.g1, sizeof g1);
        for (size_t b = 0; b < B; b++) {
            double h = 0.0;
            for (size_t i = 0; i < D; i++) {
                size_t k = b * D + i;
                h += 0.5 * log(2.0 * M_PI * M_E) + LOG_SCALE[k];
                ck_assert(g0[k] == 0.0);
                ck_close(g1[k], v ? 1.0 / exp(LOG_SCALE[k]) : 1.0, 1e-12, 0.0);
            }
            ck_close(o.h[b], h, 1e-12, 1e-12);
        }
        for (size_t i = 0; i < B * D; i++) {
            ck_fd(g0[i], sum_entropy, &j, &P.loc[i]);
            ck_fd(g1[i], sum_entropy, &j, &P.scale[i]);
        }
    }
}
END_TEST

START_TEST(unsupported_combinations) {
    ck_assert_int_eq(gs_entropy_auto(GS_CATEGORICAL), GS_EST_EXACT);
    ck_assert_int_eq(gs_entropy_auto(GS_NORMAL), GS_EST_EXACT);
    ck_assert_int_eq(gs_entropy_auto(GS_TANH_NORMAL), GS_EST_REPARAM);
    ck_assert(!gs_entropy_supported(GS_TANH_NORMAL, GS_EST_EXACT));
    ck_assert(!gs_entropy_supported(GS_CATEGORICAL, GS_EST_REPARAM));
    ck_assert(gs_entropy_supported(GS_CATEGORICAL, GS_EST_SCORE));
    ck_assert(gs_entropy_supported(GS_TANH_NORMAL, GS_EST_SCORE));
    ck_assert(gs_entropy_supported(GS_NORMAL, GS_EST_REPARAM));
    params P;
    params_init(&P, &CONT[2], B);
    outs o;
    gs_entropy_job j = make_job(&P.dist, GS_EST_EXACT, GS_BASELINE_LOO, 8, 1, &o);
    gs_error e;
    ck_assert_int_eq(gs_entropy(&j, 0, B, &e), GS_EUNSUPPORTED);
    ck_assert_int_eq(e.status, GS_EUNSUPPORTED);
    j.estimator = GS_EST_AUTO;
    ck_assert_int_eq(gs_entropy(&j, 0, B, &e), GS_EUNSUPPORTED);
    gs_dist c = {.type = GS_CATEGORICAL, .rows = B, .dim = K, .logits = LOGITS};
    j = make_job(&c, GS_EST_REPARAM, GS_BASELINE_LOO, 8, 1, &o);
    ck_assert_int_eq(gs_entropy(&j, 0, B, &e), GS_EUNSUPPORTED);
}
END_TEST

/* ---- Monte Carlo: unbiasedness and standard errors over seeds --------------------- */

/* Runs `seeds` seeds of an estimator and checks, for the entropy and every
 * gradient component of every row, that the mean over seeds is within 4
 * standard errors of the exact value and that the reported standard errors
 * match the spread across seeds. */
static void check_estimator(const gs_dist *d, gs_estimator est, gs_baseline bl, size_t M, int seeds,
                            const char *what) {
    size_t n = d->dim, nst = d->rows * (1 + 2 * n);
    tc_stat st[B * (1 + 2 * 16)];
    memset(st, 0, sizeof st);
    double exact[B * (1 + 2 * 16)];
    for (size_t b = 0; b < d->rows; b++)
        exact[b * (1 + 2 * n)] =
            ref_entropy(d, b, exact + b * (1 + 2 * n) + 1, exact + b * (1 + 2 * n) + 1 + n);
    for (int s = 0; s < seeds; s++) {
        outs o;
        gs_entropy_job j = make_job(d, est, bl, M, 1000003ULL * (uint64_t)s + 17, &o);
        gs_error e;
        ck_assert_int_eq(gs_entropy(&j, 0, d->rows, &e), 0);
        for (size_t b = 0; b < d->rows; b++) {
            tc_stat *t = st + b * (1 + 2 * n);
            tc_stat_add(&t[0], o.h[b], o.sh[b]);
            for (size_t i = 0; i < n; i++) {
                tc_stat_add(&t[1 + i], o.g0[b * n + i], o.s0[b * n + i]);
                if (d->type != GS_CATEGORICAL)
                    tc_stat_add(&t[1 + n + i], o.g1[b * n + i], o.s1[b * n + i]);
            }
        }
    }
    for (size_t k = 0; k < nst; k++) {
        size_t c = k % (1 + 2 * n);
        if (d->type == GS_CATEGORICAL && c > n) continue;
        char name[160];
        snprintf(name, sizeof name, "%s row %zu %s %zu", what, k / (1 + 2 * n),
                 c == 0   ? "entropy"
                 : c <= n ? "grad p0"
                          : "grad p1",
                 c == 0 ? 0 : (c - 1) % n);
        /* Zero variance (the normal's reparam gradient) is checked exactly elsewhere. */
        if (st[k].m2 == 0.0 && st[k].se2 == 0.0) {
            ck_close(st[k].mean, exact[k], 1e-12, 1e-12);
            continue;
        }
        ck_unbiased(st[k], exact[k], name);
        ck_se_calibrated(st[k], name);
    }
}

START_TEST(score_categorical_unbiased) {
    gs_dist d = {.type = GS_CATEGORICAL, .rows = B, .dim = K, .logits = LOGITS};
    check_estimator(&d, GS_EST_SCORE, GS_BASELINE_LOO, 32, 1000, "categorical score loo");
    check_estimator(&d, GS_EST_SCORE, GS_BASELINE_NONE, 32, 1000, "categorical score none");
}
END_TEST

START_TEST(score_continuous_unbiased) {
    for (size_t v = 0; v < NCONT; v++) {
        params P;
        params_init(&P, &CONT[v], B);
        char name[96];
        snprintf(name, sizeof name, "%s score loo", CONT[v].name);
        check_estimator(&P.dist, GS_EST_SCORE, GS_BASELINE_LOO, 32, 1000, name);
        snprintf(name, sizeof name, "%s score none", CONT[v].name);
        check_estimator(&P.dist, GS_EST_SCORE, GS_BASELINE_NONE, 32, 1000, name);
    }
}
END_TEST

START_TEST(reparam_continuous_unbiased) {
    for (size_t v = 0; v < NCONT; v++) {
        params P;
        params_init(&P, &CONT[v], B);
        char name[96];
        snprintf(name, sizeof name, "%s reparam", CONT[v].name);
        check_estimator(&P.dist, GS_EST_REPARAM, GS_BASELINE_LOO, 32, 1000, name);
    }
}
END_TEST

/* MATH.md §3: the normal's pathwise entropy gradient is exact, every seed. */
START_TEST(reparam_normal_exact_zero_variance) {
    for (int v = 0; v < 2; v++) {
        params P;
        params_init(&P, &CONT[v], B);
        for (uint64_t s = 0; s < 20; s++) {
            outs o;
            gs_entropy_job j = make_job(&P.dist, GS_EST_REPARAM, GS_BASELINE_LOO, 16, s, &o);
            ck_assert_int_eq(gs_entropy(&j, 0, B, NULL), 0);
            for (size_t k = 0; k < B * D; k++) {
                ck_assert(o.g0[k] == 0.0 && o.s0[k] == 0.0 && o.s1[k] == 0.0);
                ck_close(o.g1[k], v ? 1.0 / exp(LOG_SCALE[k]) : 1.0, 1e-12, 0.0);
            }
        }
    }
}
END_TEST

/* ---- the naive estimator is not what is returned (MATH.md §1) ------------------------ */

/* Over seeds: the naive -dl/dtheta with the draw held fixed (from
 * gs_sample + gs_log_prob with the same seed) averages to 0, while the
 * returned estimate averages to the true gradient, many standard errors
 * from both 0 and the naive average. */
static void check_not_naive(const gs_dist *d, gs_estimator est, size_t comp, int p1,
                            const char *what) {
    const size_t M = 32, n = d->dim;
    tc_stat got = {0}, naive = {0};
    for (int s = 0; s < 400; s++) {
        uint64_t seed = 77 + (uint64_t)s;
        outs o;
        gs_entropy_job j = make_job(d, est, GS_BASELINE_LOO, M, seed, &o);
        ck_assert_int_eq(gs_entropy(&j, 0, d->rows, NULL), 0);
        tc_stat_add(&got, (p1 ? o.g1 : o.g0)[comp], (p1 ? o.s1 : o.s0)[comp]);
        /* the same draws */
        int64_t act[B * 64];
        double x[B * 64 * D], eps[B * 64 * D], lp[B * 64], g0[B * K], g1[B * K];
        gs_sample_job sj = {
            .dist = *d, .samples = M, .actions = act, .x = x, .eps = eps, .log_prob = lp};
        gs_rng_init(&sj.rng, seed);
        ck_assert_int_eq(gs_sample(&sj, 0, d->rows, NULL), 0);
        gs_log_prob_job lj = {.dist = *d,
                              .samples = M,
                              .actions = act,
                              .x = x,
                              .log_prob = lp,
                              .grad = {g0, d->type == GS_CATEGORICAL ? NULL : g1}};
        ck_assert_int_eq(gs_log_prob(&lj, 0, d->rows, NULL), 0);
        /* the standard error of the naive mean comes from its spread */
        tc_stat_add(&naive, -(p1 ? g1 : g0)[comp] / (double)M, 0.0);
    }
    double exact0[16], exact1[16];
    ref_entropy(d, comp / n, exact0, exact1);
    double exact = (p1 ? exact1 : exact0)[comp % n];
    ck_assert_msg(fabs(naive.mean) <= 4.0 * tc_stat_emp_se(&naive), "%s: naive mean %g (se %g)",
                  what, naive.mean, tc_stat_emp_se(&naive));
    ck_unbiased(got, exact, what);
    ck_far_from(got, 0.0, 10.0, what);
    ck_far_from(got, naive.mean, 10.0, what);
}

START_TEST(not_the_naive_estimator) {
    gs_dist c = {.type = GS_CATEGORICAL, .rows = B, .dim = K, .logits = LOGITS};
    check_not_naive(&c, GS_EST_SCORE, 1, 0, "categorical score d/dlogits[0][1]");
    params P;
    params_init(&P, &CONT[0], B);
    check_not_naive(&P.dist, GS_EST_SCORE, 1, 1, "normal score d/dlog_scale[0][1]");
    check_not_naive(&P.dist, GS_EST_REPARAM, 1, 1, "normal reparam d/dlog_scale[0][1]");
    params_init(&P, &CONT[2], B);
    check_not_naive(&P.dist, GS_EST_SCORE, 2, 0, "tanh score d/dloc[1][0]");
    check_not_naive(&P.dist, GS_EST_REPARAM, 2, 0, "tanh reparam d/dloc[1][0]");
    check_not_naive(&P.dist, GS_EST_REPARAM, 3, 1, "tanh reparam d/dlog_scale[1][1]");
}
END_TEST

/* ---- the pathwise gradient is the derivative along the path ------------------------- */

/* With the noise held fixed (caller's eps), the reparam gradient is the
 * exact derivative of the entropy estimate -mean_m l_theta(f_theta(eps_m)). */
START_TEST(reparam_fd_with_fixed_eps) {
    const size_t M = 6;
    double eps[B * 6 * D];
    double scr[4 * 6];
    gs_rng r;
    gs_rng_init(&r, 4242);
    for (size_t b = 0; b < B; b++) gs_rng_normals(&r, b, 0, M, D, eps + b * M * D, scr);
    for (size_t v = 0; v < NCONT; v++) {
        params P;
        params_init(&P, &CONT[v], B);
        outs o;
        gs_entropy_job j = make_job(&P.dist, GS_EST_REPARAM, GS_BASELINE_LOO, M, 0, &o);
        j.noise.eps = eps;
        ck_assert_int_eq(gs_entropy(&j, 0, B, NULL), 0);
        double g0[B * D], g1[B * D];
        memcpy(g0, o.g0, sizeof g0);
        memcpy(g1, o.g1, sizeof g1);
        for (size_t k = 0; k < B * D; k++) {
            ck_fd(g0[k], sum_entropy, &j, &P.loc[k]);
            ck_fd(g1[k], sum_entropy, &j, &P.scale[k]);
        }
    }
}
END_TEST

/* ---- the same noise as /v1/sample --------------------------------------------------- */

START_TEST(same_noise_as_sample) {
    const size_t M = 9;
    for (size_t v = 0; v < NCONT; v++) {
        params P;
        params_init(&P, &CONT[v], B);
        double x[B * 9 * D], eps[B * 9 * D], lp[B * 9];
        gs_sample_job sj = {.dist = P.dist, .samples = M, .x = x, .eps = eps, .log_prob = lp};
        gs_rng_init(&sj.rng, 555);
        ck_assert_int_eq(gs_sample(&sj, 0, B, NULL), 0);
        for (int est = 0; est < 2; est++) {
            gs_estimator e = est ? GS_EST_REPARAM : GS_EST_SCORE;
            outs a, c;
            gs_entropy_job ja = make_job(&P.dist, e, GS_BASELINE_LOO, M, 555, &a);
            gs_entropy_job jc = make_job(&P.dist, e, GS_BASELINE_LOO, M, 0, &c);
            jc.noise.eps = eps;
            ck_assert_int_eq(gs_entropy(&ja, 0, B, NULL), 0);
            ck_assert_int_eq(gs_entropy(&jc, 0, B, NULL), 0);
            ck_same_bytes(a.h, c.h, B * sizeof(double));
            ck_same_bytes(a.g0, c.g0, B * D * sizeof(double));
            ck_same_bytes(a.g1, c.g1, B * D * sizeof(double));
            ck_same_bytes(a.s1, c.s1, B * D * sizeof(double));
            for (size_t b = 0; b < B; b++) {
                double s = 0.0;
                for (size_t m = 0; m < M; m++) s -= lp[b * M + m];
                ck_close(a.h[b], s / (double)M, 1e-14, 1e-14);
            }
        }
    }
}
END_TEST

/* ---- per-sample terms ----------------------------------------------------------------- */

START_TEST(terms_average_to_grad) {
    const size_t M = 8;
    for (size_t v = 0; v < NCONT + 1; v++) {
        params P;
        gs_dist d = {.type = GS_CATEGORICAL, .rows = B, .dim = K, .logits = LOGITS};
        if (v < NCONT) params_init(&P, &CONT[v], B), d = P.dist;
        size_t n = d.dim;
        for (int est = 0; est < 2; est++) {
            if (est && d.type == GS_CATEGORICAL) continue;
            outs o;
            double t0[B * 8 * K], t1[B * 8 * K];
            gs_entropy_job j =
                make_job(&d, est ? GS_EST_REPARAM : GS_EST_SCORE, GS_BASELINE_LOO, M, 31, &o);
            j.terms = (gs_pgrad){t0, d.type == GS_CATEGORICAL ? NULL : t1};
            ck_assert_int_eq(gs_entropy(&j, 0, B, NULL), 0);
            for (size_t b = 0; b < B; b++)
                for (size_t i = 0; i < n; i++) {
                    double m0 = 0, m1 = 0, v0 = 0;
                    for (size_t m = 0; m < M; m++) {
                        m0 += t0[(b * M + m) * n + i] / M;
                        if (d.type != GS_CATEGORICAL) m1 += t1[(b * M + m) * n + i] / M;
                    }
                    for (size_t m = 0; m < M; m++) v0 += pow(t0[(b * M + m) * n + i] - m0, 2);
                    ck_close(o.g0[b * n + i], m0, 1e-12, 1e-12);
                    ck_close(o.s0[b * n + i], sqrt(v0 / (M - 1) / M), 1e-12, 1e-12);
                    if (d.type != GS_CATEGORICAL) ck_close(o.g1[b * n + i], m1, 1e-12, 1e-12);
                }
        }
    }
}
END_TEST

/* ---- bit equality across row splits -------------------------------------------------- */

static const size_t SPLITS[][2] = {{5, 7}, {0, 1}, {1, 5}};

static void check_split(const gs_dist *d, gs_estimator est, gs_baseline bl) {
    const size_t M = 6, n = d->dim;
    int cat = d->type == GS_CATEGORICAL, mc = est != GS_EST_EXACT;
    outs a, c;
    double ta0[RB * 6 * 8], ta1[RB * 6 * 8], tc0[RB * 6 * 8], tc1[RB * 6 * 8];
    gs_entropy_job ja = make_job(d, est, bl, M, 2718, &a), jc = make_job(d, est, bl, M, 2718, &c);
    if (mc) {
        ja.terms = (gs_pgrad){ta0, cat ? NULL : ta1};
        jc.terms = (gs_pgrad){tc0, cat ? NULL : tc1};
    }
    memset(&c, 0xee, sizeof c);
    memset(tc0, 0xee, sizeof tc0), memset(tc1, 0xee, sizeof tc1);
    ck_assert_int_eq(gs_entropy(&ja, 0, RB, NULL), 0);
    for (int k = 0; k < 3; k++)
        ck_assert_int_eq(gs_entropy(&jc, SPLITS[k][0], SPLITS[k][1], NULL), 0);
    ck_same_bytes(a.h, c.h, RB * sizeof(double));
    ck_same_bytes(a.g0, c.g0, RB * n * sizeof(double));
    if (!cat) ck_same_bytes(a.g1, c.g1, RB * n * sizeof(double));
    if (mc) {
        ck_same_bytes(a.sh, c.sh, RB * sizeof(double));
        ck_same_bytes(a.s0, c.s0, RB * n * sizeof(double));
        if (!cat) ck_same_bytes(a.s1, c.s1, RB * n * sizeof(double));
        ck_same_bytes(ta0, tc0, RB * M * n * sizeof(double));
        if (!cat) ck_same_bytes(ta1, tc1, RB * M * n * sizeof(double));
    }
}

START_TEST(split_rows_bit_identical) {
    double z[RB * K];
    for (size_t i = 0; i < RB * K; i++) z[i] = 2.0 * sin(0.77 * i);
    gs_dist c = {.type = GS_CATEGORICAL, .rows = RB, .dim = K, .logits = z};
    check_split(&c, GS_EST_EXACT, GS_BASELINE_LOO);
    check_split(&c, GS_EST_SCORE, GS_BASELINE_LOO);
    check_split(&c, GS_EST_SCORE, GS_BASELINE_NONE);
    for (size_t v = 0; v < NCONT; v++) {
        params P;
        params_init(&P, &CONT[v], RB);
        if (P.dist.type == GS_NORMAL) check_split(&P.dist, GS_EST_EXACT, GS_BASELINE_LOO);
        check_split(&P.dist, GS_EST_SCORE, GS_BASELINE_LOO);
        check_split(&P.dist, GS_EST_SCORE, GS_BASELINE_NONE);
        check_split(&P.dist, GS_EST_REPARAM, GS_BASELINE_LOO);
    }
}
END_TEST

/* ---- edge cases ----------------------------------------------------------------------- */

START_TEST(edge_categorical) {
    /* K = 1: H = 0, gradient 0, whatever the estimator. */
    double z1[2] = {0.0, 1e4};
    gs_dist d1 = {.type = GS_CATEGORICAL, .rows = 2, .dim = 1, .logits = z1};
    for (int est = 0; est < 2; est++) {
        outs o;
        gs_entropy_job j =
            make_job(&d1, est ? GS_EST_SCORE : GS_EST_EXACT, GS_BASELINE_LOO, 4, 1, &o);
        ck_assert_int_eq(gs_entropy(&j, 0, 2, NULL), 0);
        for (int b = 0; b < 2; b++) ck_assert(o.h[b] == 0.0 && o.g0[b] == 0.0);
    }
    /* logits of +-1e4: p = (1/2, 0, 0, 1/2); the zeros contribute 0, no NaN. */
    double z[2 * K] = {1e4, -1e4, 0.0, 1e4, -1e4, -1e4, 1e4, -5e3};
    gs_dist d = {.type = GS_CATEGORICAL, .rows = 2, .dim = K, .logits = z};
    outs o;
    gs_entropy_job j = make_job(&d, GS_EST_EXACT, GS_BASELINE_LOO, 0, 0, &o);
    ck_assert_int_eq(gs_entropy(&j, 0, 2, NULL), 0);
    ck_close(o.h[0], M_LN2, 1e-15, 0.0);
    ck_assert(o.h[1] == 0.0);
    for (int k = 0; k < 2 * K; k++) ck_assert(o.g0[k] == 0.0);
    for (int bl = 0; bl < 2; bl++)
        for (size_t M = 1 + (size_t)(1 - bl); M <= 64; M *= 4) {
            j = make_job(&d, GS_EST_SCORE, bl ? GS_BASELINE_NONE : GS_BASELINE_LOO, M, 3, &o);
            ck_assert_int_eq(gs_entropy(&j, 0, 2, NULL), 0);
            ck_all_finite(o.h, 2);
            ck_all_finite(o.g0, 2 * K);
            ck_all_finite(o.sh, 2);
            ck_all_finite(o.s0, 2 * K);
            /* every draw has log p = -log 2 (row 0) or 0 (row 1) */
            ck_close(o.h[0], M_LN2, 1e-15, 0.0);
            ck_assert(o.h[1] == 0.0);
            ck_close(o.sh[0], 0.0, 0.0, 1e-15);
            for (int k = 0; k < K; k++) ck_assert(o.g0[K + k] == 0.0);
        }
}
END_TEST

START_TEST(edge_one_and_two_samples) {
    /* M = 1 (no baseline): the one term -l(x) dl(x)/dtheta, standard error 0.
     * M = 2 (loo): g = -1/2 (l_0 - l_1)(s_0 - s_1) with s_m the score. */
    params P;
    params_init(&P, &CONT[0], B);
    for (size_t M = 1; M <= 2; M++) {
        double x[B * 2 * D], eps[B * 2 * D], lp[B * 2];
        gs_sample_job sj = {.dist = P.dist, .samples = M, .x = x, .eps = eps, .log_prob = lp};
        gs_rng_init(&sj.rng, 808);
        ck_assert_int_eq(gs_sample(&sj, 0, B, NULL), 0);
        outs o;
        gs_entropy_job j = make_job(&P.dist, GS_EST_SCORE,
                                    M == 1 ? GS_BASELINE_NONE : GS_BASELINE_LOO, M, 808, &o);
        ck_assert_int_eq(gs_entropy(&j, 0, B, NULL), 0);
        for (size_t b = 0; b < B; b++) {
            ck_close(o.h[b], M == 1 ? -lp[b] : -0.5 * (lp[2 * b] + lp[2 * b + 1]), 1e-14, 1e-14);
            if (M == 1)
                ck_assert(o.sh[b] == 0.0);
            else
                ck_close(o.sh[b], 0.5 * fabs(lp[2 * b] - lp[2 * b + 1]), 1e-13, 1e-14);
            for (size_t i = 0; i < D; i++) {
                double sg = exp(LOG_SCALE[b * D + i]), w0, w1;
                if (M == 1) {
                    double e = eps[b * D + i];
                    w0 = -lp[b] * e / sg;
                    w1 = -lp[b] * (e * e - 1.0);
                    ck_assert(o.s0[b * D + i] == 0.0 && o.s1[b * D + i] == 0.0);
                } else {
                    double e0 = eps[(2 * b) * D + i], e1 = eps[(2 * b + 1) * D + i];
                    double dl = lp[2 * b] - lp[2 * b + 1];
                    w0 = -0.5 * dl * (e0 - e1) / sg;
                    w1 = -0.5 * dl * (e0 * e0 - e1 * e1);
                }
                ck_close(o.g0[b * D + i], w0, 1e-12, 1e-13);
                ck_close(o.g1[b * D + i], w1, 1e-12, 1e-13);
            }
        }
    }
}
END_TEST

START_TEST(edge_extreme_scales_and_saturation) {
    /* log_scale from -20 to 20, and tanh saturation (loc +-40, small and
     * moderate scales): every estimator's outputs are finite. */
    enum { R = 8 };
    double loc[R * 1] = {0.5, 0.5, 0.5, 0.5, 40.0, -40.0, 40.0, -40.0};
    double ls[R * 1] = {-20.0, -5.0, 5.0, 20.0, -3.0, -3.0, 0.5, 0.5};
    static const double lo[1] = {-3.0}, hi[1] = {1.0};
    for (int t = 0; t < 3; t++) {
        gs_dist d = {.type = t ? GS_TANH_NORMAL : GS_NORMAL,
                     .rows = R,
                     .dim = 1,
                     .loc = loc,
                     .scale = ls,
                     .low = t == 2 ? lo : NULL,
                     .high = t == 2 ? hi : NULL};
        for (int est = 0; est < 4; est++) {
            gs_estimator e = est == 0 ? GS_EST_EXACT : est == 3 ? GS_EST_REPARAM : GS_EST_SCORE;
            if (e == GS_EST_EXACT && t) continue;
            outs o;
            gs_entropy_job j =
                make_job(&d, e, est == 2 ? GS_BASELINE_NONE : GS_BASELINE_LOO, 32, 9, &o);
            gs_error err;
            int rc = gs_entropy(&j, 0, R, &err);
            ck_assert_msg(rc == 0, "type %d estimator %d: rc %d row %ld input %d", t, e, rc,
                          err.row, err.input);
            ck_all_finite(o.h, R);
            ck_all_finite(o.g0, R);
            ck_all_finite(o.g1, R);
            if (e != GS_EST_EXACT) {
                ck_all_finite(o.sh, R);
                ck_all_finite(o.s0, R);
                ck_all_finite(o.s1, R);
            }
            if (!t && e == GS_EST_EXACT)
                for (int r = 0; r < R; r++)
                    ck_close(o.h[r], 0.5 * log(2 * M_PI * M_E) + ls[r], 1e-14, 0.0);
            /* Saturated: tanh u = +-1, so the reparam mu-gradient is -2 tanh u. */
            if (t && e == GS_EST_REPARAM)
                for (int r = 4; r < 6; r++) ck_assert(o.g0[r] == (loc[r] > 0 ? -2.0 : 2.0));
        }
    }
}
END_TEST

/* ---- failures ----------------------------------------------------------------------- */

START_TEST(error_scale_overflow) {
    /* log_scale = 800: sigma = inf. The normal's entropy and score
     * gradients stay finite (sigma enters as 1/sigma and log sigma); the
     * tanh_normal's log-density is infinite: blame the scale, row 1 col 1. */
    for (size_t v = 0; v < NCONT; v++) {
        if (CONT[v].sigma) continue;
        params P;
        params_init(&P, &CONT[v], B + 1);
        P.scale[1 * D + 1] = 800.0;
        for (int est = 0; est < 3; est++) {
            gs_estimator e = est == 2 ? GS_EST_REPARAM : GS_EST_SCORE;
            outs o;
            gs_entropy_job j =
                make_job(&P.dist, e, est == 1 ? GS_BASELINE_NONE : GS_BASELINE_LOO, 16, 4, &o);
            gs_error err = {0};
            int rc = gs_entropy(&j, 0, B + 1, &err);
            if (P.dist.type == GS_NORMAL) {
                ck_assert_int_eq(rc, 0);
                ck_all_finite(o.h, B + 1);
                ck_all_finite(o.g1, (B + 1) * D);
                continue;
            }
            ck_assert_msg(rc == GS_ENONFINITE && err.input == GS_IN_SCALE && err.row == 1 &&
                              err.col == 1,
                          "%s estimator %d: rc %d input %d row %ld col %ld", CONT[v].name, e, rc,
                          err.input, err.row, err.col);
        }
    }
    /* log_scale = -800: sigma = 0, so the score eps / sigma is infinite. */
    params P;
    params_init(&P, &CONT[0], B + 1);
    P.scale[2 * D + 0] = -800.0;
    outs o;
    gs_entropy_job j = make_job(&P.dist, GS_EST_SCORE, GS_BASELINE_LOO, 16, 4, &o);
    gs_error err;
    int rc = gs_entropy(&j, 0, B + 1, &err);
    ck_assert_msg(rc == GS_ENONFINITE && err.input == GS_IN_SCALE && err.row == 2 && err.col == 0,
                  "rc %d input %d row %ld col %ld", rc, err.input, err.row, err.col);
}
END_TEST

START_TEST(error_caller_noise_overflow) {
    /* eps of 1e200 from the caller: eps^2 overflows, the log-density is
     * -inf, the entropy estimate +inf: the noise is at fault, at row 1,
     * sample 2, column 1. */
    const size_t M = 4;
    for (size_t v = 0; v < NCONT; v++) {
        params P;
        params_init(&P, &CONT[v], B);
        double eps[B * 4 * D];
        for (size_t k = 0; k < B * M * D; k++) eps[k] = 0.1 * (double)k - 0.5;
        eps[(1 * M + 2) * D + 1] = 1e200;
        for (int est = 0; est < 2; est++) {
            outs o;
            gs_entropy_job j =
                make_job(&P.dist, est ? GS_EST_REPARAM : GS_EST_SCORE, GS_BASELINE_LOO, M, 0, &o);
            j.noise.eps = eps;
            gs_error err = {0};
            int rc = gs_entropy(&j, 0, B, &err);
            ck_assert_msg(rc == GS_ENONFINITE && err.input == GS_IN_EPS && err.row == 1 &&
                              err.sample == 2 && err.col == 1,
                          "%s estimator %d: rc %d input %d row %ld sample %ld col %ld",
                          CONT[v].name, est, rc, err.input, err.row, err.sample, err.col);
            ck_assert_int_eq(gs_entropy(&j, 0, 1, NULL), 0);
        }
    }
}
END_TEST

/* ---- many rows: the lane kernels -------------------------------------------------
 * On AVX-512 categorical entropies run eight rows at a time, one row per
 * lane (core/gs_lanes_avx512.c); the score estimator falls back to the row
 * loop when per-sample terms are wanted. Row counts not a multiple of
 * eight, K = 1 and K not a multiple of eight, logits of +-1e4: the closed
 * form, bit equality across row ranges cutting lane groups anywhere, the
 * lane path (no terms) bit-identical to the row path (terms), and the
 * actions drawn the ones gs_sample draws. */

enum { LB = 21, LK = 33, LM = 24 }; /* LM > 16: the lanes' division path */
static const size_t LSPLITS[][2] = {{0, 5}, {5, 13}, {13, 14}, {14, 21}};
/* 17, 27: log p picked from the third and fourth vectors of a row; 33: too
 * many columns to pick from registers (the lanes then gather). */
static const size_t LKS[] = {1, 3, 8, 9, 17, 18, 19, 27, 33};

typedef struct {
    double h[LB], sh[LB], g[LB * LK], sg[LB * LK], t[LB * LM * LK];
} louts;

static void lane_logits(size_t k, double *z) {
    for (size_t i = 0; i < LB * k; i++) z[i] = 3.0 * sin(0.37 * i + 1.0);
    for (size_t j = 0; j < k; j++) {
        z[3 * k + j] = j % 2 ? -1e4 : 1e4;
        z[11 * k + j] = j == k / 2 ? 1e4 : -1e4;
    }
}

static gs_entropy_job lane_job(const double *z, size_t k, gs_estimator est, gs_baseline bl,
                               size_t M, louts *o) {
    gs_entropy_job j = {.dist = {.type = GS_CATEGORICAL, .rows = LB, .dim = k, .logits = z},
                        .estimator = est, .baseline = bl, .samples = M, .entropy = o->h,
                        .grad = {o->g, NULL}, .se_entropy = est == GS_EST_EXACT ? NULL : o->sh,
                        .se_grad = {est == GS_EST_EXACT ? NULL : o->sg, NULL}};
    gs_rng_init(&j.rng, 4242);
    return j;
}

static void same_louts(const louts *a, const louts *c, size_t k, int mc) {
    ck_same_bytes(a->h, c->h, LB * sizeof(double));
    ck_same_bytes(a->g, c->g, LB * k * sizeof(double));
    if (mc) {
        ck_same_bytes(a->sh, c->sh, LB * sizeof(double));
        ck_same_bytes(a->sg, c->sg, LB * k * sizeof(double));
    }
}

START_TEST(lanes_categorical) {
    static double z[LB * LK], lp[LB * LM];
    static int64_t act[LB * LM];
    static louts a, c;
    for (size_t ik = 0; ik < sizeof LKS / sizeof *LKS; ik++) {
        size_t k = LKS[ik];
        lane_logits(k, z);
        gs_entropy_job ja = lane_job(z, k, GS_EST_EXACT, GS_BASELINE_LOO, 0, &a);
        ck_assert_int_eq(gs_entropy(&ja, 0, LB, NULL), 0);
        for (size_t b = 0; b < LB; b++) {
            double logp[LK], p[LK], h = 0.0;
            ref_softmax(z + b * k, k, logp, p);
            for (size_t i = 0; i < k; i++) h -= p[i] * logp[i];
            ck_close(a.h[b], h, 1e-13, 1e-13);
            for (size_t i = 0; i < k; i++) ck_close_i(a.g[b * k + i], -p[i] * (logp[i] + h), 1e-12, 1e-13, i);
        }
        gs_entropy_job jc = lane_job(z, k, GS_EST_EXACT, GS_BASELINE_LOO, 0, &c);
        memset(&c, 0xee, sizeof c);
        for (int s = 0; s < 4; s++)
            ck_assert_int_eq(gs_entropy(&jc, LSPLITS[s][0], LSPLITS[s][1], NULL), 0);
        same_louts(&a, &c, k, 0);
        memset(&c, 0xee, sizeof c);
        for (size_t b = 0; b < LB; b++) ck_assert_int_eq(gs_entropy(&jc, b, b + 1, NULL), 0);
        same_louts(&a, &c, k, 0);
        /* A row failing inside a lane group: reported as alone. */
        if (k > 1) {
            double z0 = z[10 * k], z1 = z[10 * k + 1];
            z[10 * k] = 1e308, z[10 * k + 1] = -1e308;
            for (int est = 0; est < 2; est++) {
                gs_error e1, e2;
                gs_entropy_job je = lane_job(z, k, est ? GS_EST_SCORE : GS_EST_EXACT,
                                             GS_BASELINE_LOO, est ? LM : 0, &c);
                int rc1 = gs_entropy(&je, 0, LB, &e1);
                double h10 = c.h[10], g10[LK];
                memcpy(g10, c.g + 10 * k, k * sizeof *g10);
                int rc2 = gs_entropy(&je, 10, 11, &e2);
                /* exact: the p that underflowed, whose log p is -inf, adds
                 * 0 log 0 = 0 (MATH.md §2): H = 0 and a zero gradient, in
                 * lanes as alone; the score estimator never draws p = 0 */
                ck_assert_int_eq(rc1, 0);
                ck_assert_int_eq(rc2, 0);
                ck_assert(c.h[10] == h10 && isfinite(h10));
                for (size_t i = 0; i < k; i++) ck_assert(c.g[10 * k + i] == g10[i]);
                if (est) continue;
                ck_assert(h10 == 0.0);
                for (size_t i = 0; i < k; i++) ck_assert(g10[i] == 0.0);
            }
            z[10 * k] = z0, z[10 * k + 1] = z1;
        }
        static const size_t MS[] = {1, 2, 5, 16, LM};
        for (size_t im = 0; im < sizeof MS / sizeof *MS; im++)
            for (int bl = 0; bl < 2; bl++) {
                size_t M = MS[im];
                gs_baseline base = bl ? GS_BASELINE_NONE : GS_BASELINE_LOO;
                ja = lane_job(z, k, GS_EST_SCORE, base, M, &a);
                jc = lane_job(z, k, GS_EST_SCORE, base, M, &c);
                jc.terms.p0 = c.t;
                memset(&c, 0xee, sizeof c);
                ck_assert_int_eq(gs_entropy(&ja, 0, LB, NULL), 0);
                ck_assert_int_eq(gs_entropy(&jc, 0, LB, NULL), 0);
                same_louts(&a, &c, k, 1);
                jc.terms.p0 = NULL;
                memset(&c, 0xee, sizeof c);
                for (int s = 0; s < 4; s++)
                    ck_assert_int_eq(gs_entropy(&jc, LSPLITS[s][0], LSPLITS[s][1], NULL), 0);
                same_louts(&a, &c, k, 1);
                /* The actions are gs_sample's: the entropy estimate is the
                 * mean of its -log p, summed in the same order. */
                gs_sample_job sj = {.dist = ja.dist, .samples = M, .rng = ja.rng,
                                    .actions = act, .log_prob = lp};
                ck_assert_int_eq(gs_sample(&sj, 0, LB, NULL), 0);
                for (size_t b = 0; b < LB; b++) {
                    double sum = 0.0;
                    for (size_t m = 0; m < M; m++) sum += -lp[b * M + m];
                    ck_assert_msg(a.h[b] == sum / (double)M, "K %zu M %zu row %zu: %.17g vs %.17g",
                                  k, M, b, a.h[b], sum / (double)M);
                }
            }
    }
}
END_TEST

/* The reparam estimator in lanes against the row loop (tc_lanes_vs_rows). */
static int lanes_reparam_run(const tc_lanes_case *c, size_t r0, size_t r1, const tc_lanes_out *o,
                             gs_error *err) {
    int se = c->M != 2;
    gs_entropy_job j = {.dist = c->dist, .estimator = GS_EST_REPARAM, .samples = c->M,
                        .noise = {c->eps, c->rng}, .entropy = o->r0, .grad = {o->g0, o->g1},
                        .se_entropy = se ? o->r1 : NULL,
                        .se_grad = se ? (gs_pgrad){o->s0, o->s1} : (gs_pgrad){NULL, NULL}};
    return gs_entropy(&j, r0, r1, err);
}

START_TEST(lanes_reparam) { tc_lanes_vs_rows(lanes_reparam_run, 0, 0); }
END_TEST

/* A batch that moves at least GS_STREAM_BYTES writes its K-column outputs
 * with non-temporal stores (gs_vmath_impl.h): the same bits as a small
 * batch of the same rows, which does not stream, and as a split whose
 * second share starts off a cache line (stored as usual). */
enum { SB = 40963, SK = 18, SM = 16, SW = 67 };

/* Rows [r0, r1) of the entropy of the `rows` rows from row w0 of z into
 * o (h, sh: rows; g, sg: rows x SK). */
static void big_run(int score, const double *z, size_t w0, size_t rows, size_t r0, size_t r1,
                    double *const o[4]) {
    gs_entropy_job j = {.dist = {.type = GS_CATEGORICAL, .rows = rows, .dim = SK,
                                 .logits = z + w0 * SK},
                        .estimator = score ? GS_EST_SCORE : GS_EST_EXACT,
                        .baseline = GS_BASELINE_LOO, .samples = score ? SM : 0, .entropy = o[0],
                        .grad = {o[2], NULL}, .se_entropy = score ? o[1] : NULL,
                        .se_grad = {score ? o[3] : NULL, NULL}};
    gs_rng_init(&j.rng, 4242);
    ck_assert_int_eq(gs_entropy(&j, r0, r1, NULL), 0);
}

START_TEST(streamed_big_batch) {
    ck_assert(gs_stream_batch(SB, 3 * SK) && !gs_stream_batch(SW, 3 * SK));
    double *z = tc_big(SB * SK);
    for (size_t i = 0; i < SB * SK; i++) z[i] = 3.0 * sin(0.37 * i + 1.0);
    for (int score = 0; score < 2; score++) {
        double *a[4] = {tc_big(SB), tc_big(SB), tc_big(SB * SK), tc_big(SB * SK)};
        double *c[4] = {tc_big(SB), tc_big(SB), tc_big(SB * SK), tc_big(SB * SK)};
        double *s[4] = {tc_big(SW), tc_big(SW), tc_big(SW * SK), tc_big(SW * SK)};
        size_t cut = SB / 2 + 3, w0s[] = {0, SB / 2, SB - SW};
        big_run(score, z, 0, SB, 0, SB, a);
        big_run(score, z, 0, SB, 0, cut, c);
        big_run(score, z, 0, SB, cut, SB, c);
        for (int i = 0; i < 4; i++)
            ck_same_bytes(a[i], c[i], SB * (i < 2 ? 1 : SK) * sizeof(double));
        /* Row b draws from (seed, b): a window of the score estimator's
         * rows draws the same samples only where it starts at row 0. */
        for (int w = 0; w < (score ? 1 : 3); w++) {
            big_run(score, z, w0s[w], SW, 0, SW, s);
            for (int i = 0; i < 4; i++)
                if (score || i % 2 == 0)
                    ck_same_bytes(a[i] + w0s[w] * (i < 2 ? 1 : SK), s[i],
                                  SW * (i < 2 ? 1 : SK) * sizeof(double));
        }
        for (int i = 0; i < 4; i++) free(a[i]), free(c[i]), free(s[i]);
    }
    free(z);
}
END_TEST

static Suite *entropy_suite(void) {
    Suite *s = suite_create("entropy");
    TCase *tc = tcase_create("exact");
    tcase_add_test(tc, exact_categorical);
    tcase_add_test(tc, exact_normal);
    tcase_add_test(tc, unsupported_combinations);
    suite_add_tcase(s, tc);
    tc = tcase_create("monte_carlo");
    tcase_add_test(tc, score_categorical_unbiased);
    tcase_add_test(tc, score_continuous_unbiased);
    tcase_add_test(tc, reparam_continuous_unbiased);
    tcase_add_test(tc, reparam_normal_exact_zero_variance);
    tcase_add_test(tc, not_the_naive_estimator);
    tcase_add_test(tc, reparam_fd_with_fixed_eps);
    tcase_add_test(tc, same_noise_as_sample);
    tcase_add_test(tc, terms_average_to_grad);
    suite_add_tcase(s, tc);
    tc = tcase_create("rows");
    tcase_add_test(tc, split_rows_bit_identical);
    tcase_add_test(tc, lanes_categorical);
    tcase_add_test(tc, lanes_reparam);
    tcase_add_test(tc, streamed_big_batch);
    suite_add_tcase(s, tc);
    tc = tcase_create("edges");
    tcase_add_test(tc, edge_categorical);
    tcase_add_test(tc, edge_one_and_two_samples);
    tcase_add_test(tc, edge_extreme_scales_and_saturation);
    tcase_add_test(tc, error_scale_overflow);
    tcase_add_test(tc, error_caller_noise_overflow);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tc_run(entropy_suite()); }
