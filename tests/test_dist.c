/* test_dist.c - Check suite for gs_sample and gs_log_prob over every distribution. */
#include "test_core_util.h"

/* ---- fixtures ------------------------------------------------------------------ */

enum { B = 3, K = 4, D = 2, M = 5 };

static const double LOGITS[B * K] = {0.1, 2.0, -1.0, 0.5,  -0.3, -0.3,
                                     1.7, 0.0, 3.0,  -2.5, 0.25, 1.0};
static const double LOC[B * D] = {0.3, -1.2, 0.0, 0.7, -0.4, 2.0};
static const double LOG_SCALE[B * D] = {-0.5, 0.2, 0.0, -1.1, 0.4, -0.2};
static const double LOW[D] = {-2.0, 0.0}, HIGH[D] = {2.0, 3.0};

/* Variants of the continuous distributions: normal / tanh_normal, log_scale
 * or scale, tanh with and without bounds. */
typedef struct {
    gs_dist_type type;
    int sigma, bounds;
    const char *name;
} variant;

static const variant VARIANTS[] = {
    {GS_NORMAL, 0, 0, "normal log_scale"},           {GS_NORMAL, 1, 0, "normal scale"},
    {GS_TANH_NORMAL, 0, 0, "tanh log_scale"},        {GS_TANH_NORMAL, 1, 0, "tanh scale"},
    {GS_TANH_NORMAL, 0, 1, "tanh bounds log_scale"}, {GS_TANH_NORMAL, 1, 1, "tanh bounds scale"},
};
#define NVARIANTS (sizeof VARIANTS / sizeof *VARIANTS)

/* Parameters of a variant, in arrays the finite-difference tests perturb. */
typedef struct {
    double loc[B * D], scale[B * D];
    gs_dist dist;
} cont_params;

static void cont_init(cont_params *p, const variant *v) {
    memcpy(p->loc, LOC, sizeof p->loc);
    for (int j = 0; j < B * D; j++) p->scale[j] = v->sigma ? exp(LOG_SCALE[j]) : LOG_SCALE[j];
    p->dist = (gs_dist){.type = v->type,
                        .rows = B,
                        .dim = D,
                        .loc = p->loc,
                        .scale = p->scale,
                        .scale_is_sigma = v->sigma,
                        .low = v->bounds ? LOW : NULL,
                        .high = v->bounds ? HIGH : NULL};
}

static double sigma_of(const gs_dist *d, size_t j) {
    return d->scale_is_sigma ? d->scale[j] : exp(d->scale[j]);
}
static double rho_of(const gs_dist *d, size_t j) {
    return d->scale_is_sigma ? log(d->scale[j]) : d->scale[j];
}
static double centre(const gs_dist *d, size_t i) {
    return d->low ? 0.5 * (d->high[i] + d->low[i]) : 0.0;
}
static double half(const gs_dist *d, size_t i) {
    return d->low ? 0.5 * (d->high[i] - d->low[i]) : 1.0;
}

/* MATH.md §3-§4 written out directly: log p of a point x of row b. */
static double ref_log_prob(const gs_dist *d, size_t b, const double *x) {
    double l = 0.0;
    for (size_t i = 0; i < d->dim; i++) {
        size_t j = b * d->dim + i;
        double u = x[i];
        if (d->type == GS_TANH_NORMAL) u = atanh((x[i] - centre(d, i)) / half(d, i));
        double e = (u - d->loc[j]) / sigma_of(d, j);
        l += -0.5 * e * e - rho_of(d, j) - TC_HALF_LOG_2PI;
        if (d->type == GS_TANH_NORMAL) l -= tc_log1mt2(u) + log(half(d, i));
    }
    return l;
}

/* Points strictly inside the support of every variant, M per row. */
static void test_points(const gs_dist *d, double *x) {
    for (size_t b = 0; b < B; b++)
        for (size_t m = 0; m < M; m++)
            for (size_t i = 0; i < D; i++) {
                double y = 0.9 * sin(1.3 * (double)(b * M * D + m * D + i) + 0.4);
                x[(b * M + m) * D + i] = d->type == GS_TANH_NORMAL ? centre(d, i) + half(d, i) * y
                                                                   : 2.5 * y + 0.1 * (double)b;
            }
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

/* ---- gs_sample -------------------------------------------------------------------- */

START_TEST(sample_categorical) {
    int64_t act[B * M];
    double lp[B * M];
    gs_sample_job job = {.dist = {.type = GS_CATEGORICAL, .rows = B, .dim = K, .logits = LOGITS},
                         .samples = M,
                         .actions = act,
                         .log_prob = lp};
    gs_rng_init(&job.rng, 99);
    gs_error e;
    ck_assert_int_eq(gs_sample(&job, 0, B, &e), 0);
    for (size_t b = 0; b < B; b++) {
        double logp[K], p[K];
        ref_softmax(LOGITS + b * K, K, logp, p);
        for (size_t m = 0; m < M; m++) {
            int64_t k = act[b * M + m];
            ck_assert(k >= 0 && k < K);
            ck_assert_int_eq(k, (int64_t)gs_rng_categorical(&job.rng, b, (uint32_t)m, p, K));
            ck_close(lp[b * M + m], logp[k], 1e-12, 1e-12);
        }
    }
}
END_TEST

START_TEST(sample_continuous) {
    for (size_t v = 0; v < NVARIANTS; v++) {
        cont_params P;
        cont_init(&P, &VARIANTS[v]);
        double x[B * M * D], eps[B * M * D], lp[B * M], z[M * D], scr[4 * M];
        gs_sample_job job = {.dist = P.dist, .samples = M, .x = x, .eps = eps, .log_prob = lp};
        gs_rng_init(&job.rng, 1234 + v);
        gs_error e;
        ck_assert_int_eq(gs_sample(&job, 0, B, &e), 0);
        const gs_dist *d = &P.dist;
        for (size_t b = 0; b < B; b++) {
            /* The noise of row b is gs_rng_normals of (seed, b, 0..M). */
            gs_rng_normals(&job.rng, b, 0, M, D, z, scr);
            ck_same_bytes(z, eps + b * M * D, sizeof z);
            for (size_t m = 0; m < M; m++) {
                const double *xm = x + (b * M + m) * D;
                double l = 0.0;
                for (size_t i = 0; i < D; i++) {
                    size_t j = b * D + i;
                    double ep = eps[(b * M + m) * D + i], u = d->loc[j] + sigma_of(d, j) * ep;
                    l += -0.5 * ep * ep - rho_of(d, j) - TC_HALF_LOG_2PI;
                    if (d->type == GS_TANH_NORMAL) {
                        double want = centre(d, i) + half(d, i) * tanh(u);
                        ck_close(xm[i], want, 1e-15, 4e-16 * half(d, i));
                        if (d->low)
                            ck_assert(xm[i] >= d->low[i] && xm[i] <= d->high[i]);
                        else
                            ck_assert(xm[i] >= -1.0 && xm[i] <= 1.0);
                        l -= tc_log1mt2(u) + log(half(d, i));
                    } else {
                        ck_close(xm[i], u, 1e-15, 1e-15);
                    }
                }
                ck_close(lp[b * M + m], l, 1e-12, 1e-12);
                /* gs_log_prob at the drawn point agrees (through atanh). */
                ck_close(ref_log_prob(d, b, xm), l, 1e-9, 1e-9);
            }
        }
    }
}
END_TEST

/* ---- gs_log_prob ------------------------------------------------------------------- */

START_TEST(log_prob_categorical_values_and_grad) {
    static const int64_t act[B * M] = {0, 1, 1, 3, 2, 2, 2, 0, 1, 3, 3, 3, 3, 0, 2};
    double lp[B * M], g[B * K];
    gs_log_prob_job job = {.dist = {.type = GS_CATEGORICAL, .rows = B, .dim = K, .logits = LOGITS},
                           .samples = M,
                           .actions = act,
                           .log_prob = lp,
                           .grad = {g, NULL}};
    gs_error e;
    ck_assert_int_eq(gs_log_prob(&job, 0, B, &e), 0);
    for (size_t b = 0; b < B; b++) {
        double logp[K], p[K], cnt[K] = {0};
        ref_softmax(LOGITS + b * K, K, logp, p);
        for (size_t m = 0; m < M; m++) {
            ck_close(lp[b * M + m], logp[act[b * M + m]], 1e-12, 1e-12);
            cnt[act[b * M + m]] += 1.0;
        }
        /* sum_m (e_{k_m} - p) */
        for (size_t k = 0; k < K; k++) ck_close(g[b * K + k], cnt[k] - M * p[k], 1e-12, 1e-12);
    }
}
END_TEST

typedef struct {
    gs_log_prob_job job;
} lp_ctx;

static double lp_objective(void *arg) {
    lp_ctx *c = arg;
    size_t n = c->job.dist.rows * c->job.samples;
    ck_assert_int_eq(gs_log_prob(&c->job, 0, c->job.dist.rows, NULL), 0);
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += c->job.log_prob[i];
    return s;
}

START_TEST(log_prob_categorical_fd) {
    static const int64_t act[B * M] = {0, 1, 1, 3, 2, 2, 2, 0, 1, 3, 3, 3, 3, 0, 2};
    double z[B * K], lp[B * M], g[B * K], g2[B * K];
    memcpy(z, LOGITS, sizeof z);
    lp_ctx c = {{.dist = {.type = GS_CATEGORICAL, .rows = B, .dim = K, .logits = z},
                 .samples = M,
                 .actions = act,
                 .log_prob = lp,
                 .grad = {g2, NULL}}};
    ck_assert_int_eq(gs_log_prob(&c.job, 0, B, NULL), 0);
    memcpy(g, g2, sizeof g);
    for (size_t j = 0; j < B * K; j++) ck_fd(g[j], lp_objective, &c, &z[j]);
}
END_TEST

START_TEST(log_prob_continuous_values_grad_fd) {
    for (size_t v = 0; v < NVARIANTS; v++) {
        cont_params P;
        cont_init(&P, &VARIANTS[v]);
        double x[B * M * D], lp[B * M], g0[B * D], g1[B * D], w0[B * D], w1[B * D];
        test_points(&P.dist, x);
        lp_ctx c = {{.dist = P.dist, .samples = M, .x = x, .log_prob = lp, .grad = {w0, w1}}};
        gs_error e;
        ck_assert_int_eq(gs_log_prob(&c.job, 0, B, &e), 0);
        memcpy(g0, w0, sizeof g0);
        memcpy(g1, w1, sizeof g1);
        const gs_dist *d = &P.dist;
        for (size_t b = 0; b < B; b++) {
            double s0[D] = {0}, s1[D] = {0};
            for (size_t m = 0; m < M; m++) {
                const double *xm = x + (b * M + m) * D;
                ck_close(lp[b * M + m], ref_log_prob(d, b, xm), 1e-12, 1e-12);
                for (size_t i = 0; i < D; i++) {
                    size_t j = b * D + i;
                    double u = xm[i];
                    if (d->type == GS_TANH_NORMAL) u = atanh((xm[i] - centre(d, i)) / half(d, i));
                    double sg = sigma_of(d, j), ep = (u - d->loc[j]) / sg;
                    s0[i] += ep / sg;
                    s1[i] += d->scale_is_sigma ? (ep * ep - 1.0) / sg : ep * ep - 1.0;
                }
            }
            for (size_t i = 0; i < D; i++) {
                ck_close(g0[b * D + i], s0[i], 1e-12, 1e-12);
                ck_close(g1[b * D + i], s1[i], 1e-12, 1e-12);
            }
        }
        /* Finite differences of sum_m log p_theta(x_m), x held fixed. */
        for (size_t j = 0; j < B * D; j++) {
            ck_fd(g0[j], lp_objective, &c, &P.loc[j]);
            ck_fd(g1[j], lp_objective, &c, &P.scale[j]);
        }
    }
}
END_TEST

/* ---- bit equality across row splits --------------------------------------------- */

enum { RB = 7 };
static const size_t SPLITS[][2] = {{5, 7}, {0, 1}, {1, 5}};

START_TEST(split_rows_bit_identical) {
    double z[RB * K], loc[RB * D], sc[RB * D];
    for (size_t j = 0; j < RB * K; j++) z[j] = sin(0.7 * j) * 3.0;
    for (size_t j = 0; j < RB * D; j++) loc[j] = cos(1.1 * j), sc[j] = 0.3 * sin(0.5 * j);
    /* categorical: sample, then log_prob of the draws */
    {
        int64_t a1[RB * M], a2[RB * M];
        double l1[RB * M], l2[RB * M], g1[RB * K], g2[RB * K];
        gs_sample_job s = {.dist = {.type = GS_CATEGORICAL, .rows = RB, .dim = K, .logits = z},
                           .samples = M,
                           .actions = a1,
                           .log_prob = l1};
        gs_rng_init(&s.rng, 5);
        ck_assert_int_eq(gs_sample(&s, 0, RB, NULL), 0);
        s.actions = a2, s.log_prob = l2;
        memset(a2, 0xee, sizeof a2), memset(l2, 0xee, sizeof l2);
        for (int k = 0; k < 3; k++)
            ck_assert_int_eq(gs_sample(&s, SPLITS[k][0], SPLITS[k][1], NULL), 0);
        ck_same_bytes(a1, a2, sizeof a1);
        ck_same_bytes(l1, l2, sizeof l1);
        gs_log_prob_job p = {
            .dist = s.dist, .samples = M, .actions = a1, .log_prob = l1, .grad = {g1, NULL}};
        ck_assert_int_eq(gs_log_prob(&p, 0, RB, NULL), 0);
        p.log_prob = l2, p.grad.p0 = g2;
        memset(l2, 0xee, sizeof l2), memset(g2, 0xee, sizeof g2);
        for (int k = 0; k < 3; k++)
            ck_assert_int_eq(gs_log_prob(&p, SPLITS[k][0], SPLITS[k][1], NULL), 0);
        ck_same_bytes(l1, l2, sizeof l1);
        ck_same_bytes(g1, g2, sizeof g1);
    }
    for (size_t v = 0; v < NVARIANTS; v++) {
        const variant *var = &VARIANTS[v];
        double scv[RB * D];
        for (size_t j = 0; j < RB * D; j++) scv[j] = var->sigma ? exp(sc[j]) : sc[j];
        gs_dist d = {.type = var->type,
                     .rows = RB,
                     .dim = D,
                     .loc = loc,
                     .scale = scv,
                     .scale_is_sigma = var->sigma,
                     .low = var->bounds ? LOW : NULL,
                     .high = var->bounds ? HIGH : NULL};
        double x1[RB * M * D], x2[RB * M * D], e1[RB * M * D], e2[RB * M * D];
        double l1[RB * M], l2[RB * M], p1[RB * D], p2[RB * D], q1[RB * D], q2[RB * D];
        gs_sample_job s = {.dist = d, .samples = M, .x = x1, .eps = e1, .log_prob = l1};
        gs_rng_init(&s.rng, 6 + v);
        ck_assert_int_eq(gs_sample(&s, 0, RB, NULL), 0);
        s.x = x2, s.eps = e2, s.log_prob = l2;
        memset(x2, 0xee, sizeof x2), memset(e2, 0xee, sizeof e2), memset(l2, 0xee, sizeof l2);
        for (int k = 0; k < 3; k++)
            ck_assert_int_eq(gs_sample(&s, SPLITS[k][0], SPLITS[k][1], NULL), 0);
        ck_same_bytes(x1, x2, sizeof x1);
        ck_same_bytes(e1, e2, sizeof e1);
        ck_same_bytes(l1, l2, sizeof l1);
        /* log_prob at points inside the support (the draws may sit on a
         * bound after rounding, which has density 0) */
        for (size_t j = 0; j < RB * M * D; j++)
            x1[j] = var->type == GS_TANH_NORMAL
                        ? 0.9 * sin(0.37 * j) + (var->bounds ? centre(&d, j % D) : 0.0)
                        : 3.0 * sin(0.37 * j);
        gs_log_prob_job p = {.dist = d, .samples = M, .x = x1, .log_prob = l1, .grad = {p1, q1}};
        ck_assert_int_eq(gs_log_prob(&p, 0, RB, NULL), 0);
        p.log_prob = l2, p.grad = (gs_pgrad){p2, q2};
        memset(l2, 0xee, sizeof l2), memset(p2, 0xee, sizeof p2), memset(q2, 0xee, sizeof q2);
        for (int k = 0; k < 3; k++)
            ck_assert_int_eq(gs_log_prob(&p, SPLITS[k][0], SPLITS[k][1], NULL), 0);
        ck_same_bytes(l1, l2, sizeof l1);
        ck_same_bytes(p1, p2, sizeof p1);
        ck_same_bytes(q1, q2, sizeof q1);
    }
}
END_TEST

/* On AVX-512 a normal's log_prob runs whole groups of eight rows in lanes
 * (gs_lanes_avx512.c) and single rows through the row loop: the two agree
 * bit for bit, with D and M that do not fill a vector, extreme scales and
 * points, and a row that fails (exp(log_scale) underflows) inside a group. */
START_TEST(log_prob_normal_lanes_match_rows) {
    enum { LB = 21, LD = 3, LM = 7 };
    static const double ext[] = {-20.0, -5.0, 0.0, 5.0, 20.0, -700.0, 700.0};
    for (int sig = 0; sig < 2; sig++)
        for (int fail = 0; fail < 2; fail++) {
            double loc[LB * LD], sc[LB * LD], x[LB * LM * LD];
            double l1[LB * LM], l2[LB * LM], a1[LB * LD], a2[LB * LD], b1[LB * LD], b2[LB * LD];
            for (size_t j = 0; j < LB * LD; j++) {
                double ls = j % 5 == 0 ? ext[j % 7] * 0.05 : 0.8 * sin(0.9 * j);
                if (j % 11 == 3) ls = ext[j % 5];
                loc[j] = 2.0 * cos(0.3 * j);
                sc[j] = sig ? exp(ls) : ls;
            }
            for (size_t j = 0; j < LB * LM * LD; j++) x[j] = 5.0 * sin(0.37 * j) * (j % 13 ? 1 : 1e3);
            /* Row 10 (inside the second group): sigma underflows to 0. */
            if (fail) sc[10 * LD + 1] = sig ? 0.0 : -800.0;
            gs_log_prob_job p = {.dist = {.type = GS_NORMAL, .rows = LB, .dim = LD, .loc = loc,
                                          .scale = sc, .scale_is_sigma = sig},
                                 .samples = LM, .x = x, .log_prob = l1, .grad = {a1, b1}};
            memset(l1, 0xee, sizeof l1), memset(a1, 0xee, sizeof a1), memset(b1, 0xee, sizeof b1);
            memcpy(l2, l1, sizeof l1), memcpy(a2, a1, sizeof a1), memcpy(b2, b1, sizeof b1);
            gs_error e1 = {0}, e2 = {0};
            int rc1 = gs_log_prob(&p, 0, LB, &e1), rc2 = 0;
            p.log_prob = l2, p.grad = (gs_pgrad){a2, b2};
            for (size_t b = 0; b < LB && !rc2; b++) rc2 = gs_log_prob(&p, b, b + 1, &e2);
            ck_assert_int_eq(rc1, rc2);
            ck_assert_int_eq(rc1, fail ? GS_ENONFINITE : 0);
            if (fail) {
                ck_assert_int_eq(e1.row, 10);
                ck_assert(e1.input == e2.input && e1.row == e2.row && e1.sample == e2.sample &&
                          e1.col == e2.col);
                ck_assert_int_eq(e1.input, GS_IN_SCALE);
            }
            /* Rows before the failure (all of them without one) agree. */
            size_t nb = fail ? 10 : LB;
            ck_same_bytes(l1, l2, nb * LM * sizeof(double));
            ck_same_bytes(a1, a2, nb * LD * sizeof(double));
            ck_same_bytes(b1, b2, nb * LD * sizeof(double));
            if (!fail) ck_all_finite(l1, LB * LM);
        }
}
END_TEST

/* ---- edge cases --------------------------------------------------------------------- */

START_TEST(edge_categorical_k1_and_extreme_logits) {
    /* K = 1: always action 0, log p = 0, gradient 0. */
    double z1[2] = {3.0, -1e4};
    int64_t a[2 * M];
    double lp[2 * M], g[2];
    gs_sample_job s = {.dist = {.type = GS_CATEGORICAL, .rows = 2, .dim = 1, .logits = z1},
                       .samples = M,
                       .actions = a,
                       .log_prob = lp};
    gs_rng_init(&s.rng, 3);
    ck_assert_int_eq(gs_sample(&s, 0, 2, NULL), 0);
    for (int i = 0; i < 2 * M; i++) ck_assert(a[i] == 0 && lp[i] == 0.0);
    gs_log_prob_job p = {
        .dist = s.dist, .samples = M, .actions = a, .log_prob = lp, .grad = {g, NULL}};
    ck_assert_int_eq(gs_log_prob(&p, 0, 2, NULL), 0);
    ck_assert(g[0] == 0.0 && g[1] == 0.0);
    /* logits of +-1e4: probabilities underflow to exactly 0 and such
     * actions are never drawn; their log p is finite (-2e4 - log 2). */
    double z[K] = {1e4, -1e4, 0.0, 1e4};
    int64_t ak[400];
    double lk[400], gk[K];
    s = (gs_sample_job){.dist = {.type = GS_CATEGORICAL, .rows = 1, .dim = K, .logits = z},
                        .samples = 400,
                        .actions = ak,
                        .log_prob = lk};
    gs_rng_init(&s.rng, 4);
    ck_assert_int_eq(gs_sample(&s, 0, 1, NULL), 0);
    int seen[K] = {0};
    for (int m = 0; m < 400; m++) {
        seen[ak[m]]++;
        ck_close(lk[m], -M_LN2, 1e-15, 0.0);
    }
    ck_assert(seen[1] == 0 && seen[2] == 0 && seen[0] > 150 && seen[3] > 150);
    int64_t every[K] = {0, 1, 2, 3};
    p = (gs_log_prob_job){
        .dist = s.dist, .samples = K, .actions = every, .log_prob = lk, .grad = {gk, NULL}};
    ck_assert_int_eq(gs_log_prob(&p, 0, 1, NULL), 0);
    ck_close(lk[0], -M_LN2, 1e-15, 0.0);
    ck_close(lk[1], -2e4 - M_LN2, 1e-15, 0.0);
    ck_close(lk[2], -1e4 - M_LN2, 1e-15, 0.0);
    /* sum_m (e_{k_m} - p) with p = (1/2, 0, 0, 1/2) */
    ck_close(gk[0], -1.0, 1e-15, 0.0);
    ck_close(gk[1], 1.0, 1e-15, 0.0);
    ck_close(gk[2], 1.0, 1e-15, 0.0);
    ck_close(gk[3], -1.0, 1e-15, 0.0);
}
END_TEST

START_TEST(edge_extreme_scales_and_saturation) {
    /* log_scale from -20 to 20 (normal and tanh), and tanh saturation with
     * |u| up to 40: every output finite, actions within the bounds. */
    enum { R = 5, N = 64 };
    static const double ls[R] = {-20.0, -5.0, 0.0, 5.0, 20.0};
    for (int t = 0; t < 2; t++) {
        double loc[R], sc[R], x[R * N], eps[R * N], lp[R * N];
        for (int r = 0; r < R; r++) loc[r] = 0.5, sc[r] = ls[r];
        gs_sample_job s = {.dist = {.type = t ? GS_TANH_NORMAL : GS_NORMAL,
                                    .rows = R,
                                    .dim = 1,
                                    .loc = loc,
                                    .scale = sc},
                           .samples = N,
                           .x = x,
                           .eps = eps,
                           .log_prob = lp};
        gs_rng_init(&s.rng, 10);
        ck_assert_int_eq(gs_sample(&s, 0, R, NULL), 0);
        ck_all_finite(x, R * N);
        ck_all_finite(lp, R * N);
        for (int r = 0; r < R; r++)
            for (int m = 0; m < N; m++) {
                double l = -0.5 * eps[r * N + m] * eps[r * N + m] - ls[r] - TC_HALF_LOG_2PI;
                double u = 0.5 + exp(ls[r]) * eps[r * N + m];
                if (t) l -= tc_log1mt2(u);
                ck_close(lp[r * N + m], l, 1e-12, 1e-12);
                if (!t) ck_close(x[r * N + m], u, 1e-15, 0.0);
            }
    }
    /* Saturated tanh: loc = +-40 (and +-20), small scale, with bounds. */
    double loc[4] = {40.0, -40.0, 20.0, -20.0}, sc[4] = {-3.0, -3.0, -3.0, -3.0};
    double lo[1] = {-2.0}, hi[1] = {5.0}, x[4 * N], eps[4 * N], lp[4 * N];
    for (int bnd = 0; bnd < 2; bnd++) {
        gs_sample_job s = {.dist = {.type = GS_TANH_NORMAL,
                                    .rows = 4,
                                    .dim = 1,
                                    .loc = loc,
                                    .scale = sc,
                                    .low = bnd ? lo : NULL,
                                    .high = bnd ? hi : NULL},
                           .samples = N,
                           .x = x,
                           .eps = eps,
                           .log_prob = lp};
        gs_rng_init(&s.rng, 11);
        ck_assert_int_eq(gs_sample(&s, 0, 4, NULL), 0);
        ck_all_finite(x, 4 * N);
        ck_all_finite(lp, 4 * N);
        double l = bnd ? -2.0 : -1.0, h = bnd ? 5.0 : 1.0;
        for (int j = 0; j < 4 * N; j++) {
            ck_assert(x[j] >= l && x[j] <= h);
            ck_assert(j / N % 2 == 0 ? x[j] == h : x[j] == l); /* saturated at the bound */
            /* log p grows like 2|u|: about 2 * 40 - log(2 pi)/2 + 3 at |u| = 40 */
            double u = loc[j / N] + exp(-3.0) * eps[j];
            double want = -0.5 * eps[j] * eps[j] + 3.0 - TC_HALF_LOG_2PI - tc_log1mt2(u) -
                          (bnd ? log(3.5) : 0.0);
            ck_close(lp[j], want, 1e-12, 0.0);
        }
        /* log_prob just inside the bound, where tanh saturates: finite. */
        double pts[4] = {h - 1e-15 * (h - l), l + 1e-15 * (h - l), 0.5 * (h + l), h - 1e-9};
        double plp[4], g0[1], g1[1];
        gs_log_prob_job p = {
            .dist = s.dist, .samples = 4, .x = pts, .log_prob = plp, .grad = {g0, g1}};
        p.dist.rows = 1;
        ck_assert_int_eq(gs_log_prob(&p, 0, 1, NULL), 0);
        ck_all_finite(plp, 4);
        ck_assert(isfinite(g0[0]) && isfinite(g1[0]));
    }
}
END_TEST

START_TEST(edge_one_sample) {
    cont_params P;
    cont_init(&P, &VARIANTS[4]);
    double x[B * D], eps[B * D], lp[B], g0[B * D], g1[B * D];
    gs_sample_job s = {.dist = P.dist, .samples = 1, .x = x, .eps = eps, .log_prob = lp};
    gs_rng_init(&s.rng, 12);
    ck_assert_int_eq(gs_sample(&s, 0, B, NULL), 0);
    for (size_t b = 0; b < B; b++) ck_close(lp[b], ref_log_prob(&P.dist, b, x + b * D), 1e-9, 1e-9);
    gs_log_prob_job p = {.dist = P.dist, .samples = 1, .x = x, .log_prob = lp, .grad = {g0, g1}};
    ck_assert_int_eq(gs_log_prob(&p, 0, B, NULL), 0);
    for (size_t j = 0; j < B * D; j++) {
        ck_close(g0[j], eps[j] / exp(LOG_SCALE[j]), 1e-9, 1e-9);
        ck_close(g1[j], eps[j] * eps[j] - 1.0, 1e-9, 1e-9);
    }
}
END_TEST

/* ---- failures ------------------------------------------------------------------------ */

START_TEST(error_log_prob_outside_support) {
    /* A tanh_normal point on or past a bound has density 0. */
    for (int bnd = 0; bnd < 2; bnd++) {
        cont_params P;
        cont_init(&P, &VARIANTS[bnd ? 4 : 2]);
        double hi = bnd ? HIGH[1] : 1.0, lo = bnd ? LOW[1] : -1.0;
        double bad[4] = {hi, lo, hi + 0.5, nextafter(lo, -INFINITY)};
        for (int t = 0; t < 4; t++) {
            double x[B * M * D], lp[B * M], g0[B * D], g1[B * D];
            test_points(&P.dist, x);
            x[(1 * M + 2) * D + 1] = bad[t]; /* row 1, sample 2, col 1 */
            gs_log_prob_job p = {
                .dist = P.dist, .samples = M, .x = x, .log_prob = lp, .grad = {g0, g1}};
            gs_error e;
            int rc = gs_log_prob(&p, 0, B, &e);
            ck_error(rc, e, GS_ENONFINITE, GS_IN_X, 1, 2, 1);
            /* The rows before it were computed; a range without it is fine. */
            ck_assert_int_eq(gs_log_prob(&p, 2, B, NULL), 0);
            ck_assert_int_eq(gs_log_prob(&p, 0, 1, NULL), 0);
        }
    }
    /* A normal point whose density underflows: log p = -inf. */
    cont_params P;
    cont_init(&P, &VARIANTS[0]);
    double x[B * M * D], lp[B * M], g0[B * D], g1[B * D];
    test_points(&P.dist, x);
    x[(2 * M + 3) * D + 0] = 1e200;
    gs_log_prob_job p = {.dist = P.dist, .samples = M, .x = x, .log_prob = lp, .grad = {g0, g1}};
    gs_error e;
    ck_error(gs_log_prob(&p, 0, B, &e), e, GS_ENONFINITE, GS_IN_X, 2, 3, -1);
    /* ... unless exp(log_scale) underflowed to 0 (log_scale -800), which
     * makes every point but the mean impossible: blame the scale. */
    test_points(&P.dist, x);
    P.scale[1 * D + 1] = -800.0;
    ck_error(gs_log_prob(&p, 0, B, &e), e, GS_ENONFINITE, GS_IN_SCALE, 1, -1, 1);
}
END_TEST

START_TEST(error_sample_scale_overflow) {
    /* exp(800) = inf: sigma is infinite. The normal's draws are infinite;
     * the tanh's draws saturate but their log-density is infinite. Either
     * way the scale of row 1, column 1 is to blame. */
    for (size_t v = 0; v < NVARIANTS; v++) {
        if (VARIANTS[v].sigma) continue;
        cont_params P;
        cont_init(&P, &VARIANTS[v]);
        P.scale[1 * D + 1] = 800.0;
        double x[B * M * D], eps[B * M * D], lp[B * M];
        gs_sample_job s = {.dist = P.dist, .samples = M, .x = x, .eps = eps, .log_prob = lp};
        gs_rng_init(&s.rng, 13);
        gs_error e;
        int rc = gs_sample(&s, 0, B, &e);
        ck_assert_msg(rc == GS_ENONFINITE && e.input == GS_IN_SCALE && e.row == 1 &&
                          e.sample == -1 && e.col == 1,
                      "%s: rc %d input %d row %ld sample %ld col %ld", VARIANTS[v].name, rc,
                      e.input, e.row, e.sample, e.col);
    }
    /* A tanh_normal loc of 1e308: the draws saturate to the bound, but
     * log(1 - tanh^2 u) = -inf makes log p infinite: blame that loc. */
    cont_params P;
    cont_init(&P, &VARIANTS[4]);
    P.loc[2 * D + 1] = 1e308;
    double x[B * M * D], eps[B * M * D], lp[B * M];
    gs_sample_job s = {.dist = P.dist, .samples = M, .x = x, .eps = eps, .log_prob = lp};
    gs_rng_init(&s.rng, 14);
    gs_error e;
    ck_error(gs_sample(&s, 0, B, &e), e, GS_ENONFINITE, GS_IN_LOC, 2, -1, 1);
}
END_TEST

static Suite *dist_suite(void) {
    Suite *s = suite_create("dist");
    TCase *tc = tcase_create("sample");
    tcase_add_test(tc, sample_categorical);
    tcase_add_test(tc, sample_continuous);
    suite_add_tcase(s, tc);
    tc = tcase_create("log_prob");
    tcase_add_test(tc, log_prob_categorical_values_and_grad);
    tcase_add_test(tc, log_prob_categorical_fd);
    tcase_add_test(tc, log_prob_continuous_values_grad_fd);
    suite_add_tcase(s, tc);
    tc = tcase_create("rows");
    tcase_add_test(tc, split_rows_bit_identical);
    tcase_add_test(tc, log_prob_normal_lanes_match_rows);
    suite_add_tcase(s, tc);
    tc = tcase_create("edges");
    tcase_add_test(tc, edge_categorical_k1_and_extreme_logits);
    tcase_add_test(tc, edge_extreme_scales_and_saturation);
    tcase_add_test(tc, edge_one_sample);
    tcase_add_test(tc, error_log_prob_outside_support);
    tcase_add_test(tc, error_sample_scale_overflow);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tc_run(dist_suite()); }
