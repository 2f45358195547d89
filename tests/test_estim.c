/* test_estim.c - Check suite for gs_reparam and gs_score: gradients of E[f(x)]. */
#include "test_core_util.h"

#include "gs_vmath_impl.h" /* gs_stream_batch */

/* ---- fixtures ------------------------------------------------------------------ */

enum { B = 2, K = 4, D = 2, RB = 7, MAXM = 64 };

static const double LOGITS[B * K] = {0.1, 2.0, -1.0, 0.5, -0.8, 0.3, 1.7, 0.0};
static const double VALUES[K] = {1.5, -0.5, 3.0, 0.25}; /* f(k) = v_k */
static const double LOC[B * D] = {0.3, -1.2, 0.8, 0.1};
static const double LOG_SCALE[B * D] = {-0.4, 0.2, 0.1, -0.9};
static const double LOW[D] = {-2.0, 0.0}, HIGH[D] = {2.0, 3.0};
static const double COEF[D] = {0.7, -1.3}; /* f(x) = sum_d c_d x_d^2 */

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
static double centre_at(const gs_dist *d, size_t i) {
    return d->low ? 0.5 * (d->high[i] + d->low[i]) : 0.0;
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

/* The draws of a seed, as /v1/sample gives them. */
typedef struct {
    int64_t act[RB * MAXM];
    double x[RB * MAXM * D], eps[RB * MAXM * D], lp[RB * MAXM];
} draws;

static void draw(const gs_dist *d, size_t M, uint64_t seed, draws *w) {
    gs_sample_job j = {
        .dist = *d, .samples = M, .actions = w->act, .x = w->x, .eps = w->eps, .log_prob = w->lp};
    gs_rng_init(&j.rng, seed);
    ck_assert_int_eq(gs_sample(&j, 0, d->rows, NULL), 0);
}

/* Quadrature over one coordinate's noise: E[h(mu + sigma eps, eps)]. */
typedef struct {
    double mu, sigma;
    int which;
} qctx;

static double q_integrand(double e, void *arg) {
    const qctx *q = arg;
    double u = q->mu + q->sigma * e, t = tanh(u);
    switch (q->which) {
    case 0: return t;                 /* E[tanh u] */
    case 1: return 1.0 - t * t;       /* E[da/dmu] / s */
    case 2: return (1.0 - t * t) * e; /* E[da/drho] / (s sigma) */
    case 3: return -2.0 * t;          /* dH/dmu */
    default: return t * e;            /* (1 - dH/drho) / (2 sigma) */
    }
}

static double qexp(const gs_dist *d, size_t j, int which) {
    qctx q = {d->loc[j], sigma_at(d, j), which};
    return tc_gauss_expect(q_integrand, &q);
}

/* ==== gs_reparam ===================================================================== */

typedef struct {
    double x[RB * MAXM * D], lp[RB * MAXM], g0[RB * D], g1[RB * D], s0[RB * D], s1[RB * D];
    double t0[RB * MAXM * D], t1[RB * MAXM * D];
} routs;

static gs_reparam_job reparam_job(const gs_dist *d, size_t M, uint64_t seed, const double *gx,
                                  const double *glp, routs *o) {
    gs_reparam_job j = {.dist = *d,
                        .samples = M,
                        .grad_x = gx,
                        .grad_log_prob = glp,
                        .x = o->x,
                        .log_prob = o->lp,
                        .grad = {o->g0, o->g1},
                        .se_grad = {o->s0, o->s1}};
    gs_rng_init(&j.noise.rng, seed);
    return j;
}

/* MATH.md §5 term by term, from the draws of the same seed. */
START_TEST(reparam_closed_form) {
    const size_t M = 7;
    for (size_t v = 0; v < NCONT; v++) {
        params P;
        params_init(&P, &CONT[v], B);
        const gs_dist *d = &P.dist;
        draws w;
        draw(d, M, 31 + v, &w);
        double gx[B * 7 * D], glp[B * 7];
        for (size_t k = 0; k < B * M * D; k++) gx[k] = sin(1.7 * k) + 0.3;
        for (size_t k = 0; k < B * M; k++) glp[k] = cos(0.9 * k);
        routs o;
        gs_reparam_job j = reparam_job(d, M, 31 + v, gx, glp, &o);
        j.terms = (gs_pgrad){o.t0, o.t1};
        ck_assert_int_eq(gs_reparam(&j, 0, B, NULL), 0);
        /* the same x and log p as /v1/sample */
        ck_same_bytes(o.x, w.x, B * M * D * sizeof(double));
        ck_same_bytes(o.lp, w.lp, B * M * sizeof(double));
        for (size_t b = 0; b < B; b++)
            for (size_t i = 0; i < D; i++) {
                size_t k = b * D + i;
                double sg = sigma_at(d, k), s = half_at(d, i), a0 = 0, a1 = 0;
                for (size_t m = 0; m < M; m++) {
                    size_t q = (b * M + m) * D + i;
                    double e = w.eps[q], c = glp[b * M + m], t0, t1;
                    if (d->type == GS_NORMAL) {
                        t0 = gx[q];
                        t1 = gx[q] * sg * e - c;
                    } else {
                        double t = tanh(LOC[k] + sg * e), da = s * (1.0 - t * t);
                        t0 = gx[q] * da + c * 2.0 * t;
                        t1 = gx[q] * da * sg * e + c * (-1.0 + 2.0 * t * sg * e);
                    }
                    if (d->scale_is_sigma) t1 /= sg;
                    ck_close(o.t0[q], t0, 1e-12, 1e-13);
                    ck_close(o.t1[q], t1, 1e-12, 1e-13);
                    a0 += t0 / M;
                    a1 += t1 / M;
                }
                ck_close(o.g0[k], a0, 1e-12, 1e-13);
                ck_close(o.g1[k], a1, 1e-12, 1e-13);
            }
    }
}
END_TEST

/* Finite differences of J(theta) = (1/M) sum_m [f(x_m(theta)) + glp_m
 * l_theta(x_m(theta))] with eps held fixed, f(x) = sum_d c_d x_d^2. */
typedef struct {
    gs_reparam_job j;
    const double *glp;
} rctx;

static double reparam_objective(void *arg) {
    rctx *c = arg;
    size_t M = c->j.samples, rows = c->j.dist.rows;
    ck_assert_int_eq(gs_reparam(&c->j, 0, rows, NULL), 0);
    double s = 0.0;
    for (size_t b = 0; b < rows; b++)
        for (size_t m = 0; m < M; m++) {
            double f = 0.0;
            for (size_t i = 0; i < D; i++) f += COEF[i] * pow(c->j.x[(b * M + m) * D + i], 2);
            s += (f + c->glp[b * M + m] * c->j.log_prob[b * M + m]) / (double)M;
        }
    return s;
}

START_TEST(reparam_fd) {
    const size_t M = 5;
    double eps[B * 5 * D], scr[4 * 5];
    gs_rng r;
    gs_rng_init(&r, 99);
    for (size_t b = 0; b < B; b++) gs_rng_normals(&r, b, 0, M, D, eps + b * M * D, scr);
    double glp[B * 5];
    for (size_t k = 0; k < B * M; k++) glp[k] = 0.8 * sin(2.1 * k) - 0.2;
    for (size_t v = 0; v < NCONT; v++) {
        params P;
        params_init(&P, &CONT[v], B);
        routs o;
        double gx[B * 5 * D] = {0};
        rctx c = {reparam_job(&P.dist, M, 0, gx, glp, &o), glp};
        c.j.noise.eps = eps;
        ck_assert_int_eq(gs_reparam(&c.j, 0, B, NULL), 0);
        for (size_t k = 0; k < B * M * D; k++) gx[k] = 2.0 * COEF[k % D] * o.x[k];
        ck_assert_int_eq(gs_reparam(&c.j, 0, B, NULL), 0);
        double g0[B * D], g1[B * D];
        memcpy(g0, o.g0, sizeof g0);
        memcpy(g1, o.g1, sizeof g1);
        for (size_t k = 0; k < B * D; k++) {
            ck_fd(g0[k], reparam_objective, &c, &P.loc[k]);
            ck_fd(g1[k], reparam_objective, &c, &P.scale[k]);
        }
    }
}
END_TEST

/* Over seeds: normal f = sum x^2 has d/dmu = 2 mu, d/drho = 2 sigma^2
 * (d/dsigma = 2 sigma); tanh f = sum a with grad_log_prob = 1/2 has
 * E[s (1 - t^2) da] - (1/2) dH/dtheta, by quadrature. */
START_TEST(reparam_unbiased) {
    const size_t M = 16;
    for (size_t v = 0; v < NCONT; v++) {
        params P;
        params_init(&P, &CONT[v], B);
        const gs_dist *d = &P.dist;
        int tanh_ = d->type == GS_TANH_NORMAL;
        double ex0[B * D], ex1[B * D];
        for (size_t b = 0; b < B; b++)
            for (size_t i = 0; i < D; i++) {
                size_t k = b * D + i;
                double sg = sigma_at(d, k), s = half_at(d, i), dr;
                if (!tanh_) {
                    ex0[k] = 2.0 * LOC[k];
                    dr = 2.0 * sg * sg;
                } else {
                    double dh0 = qexp(d, k, 3), dh1 = 1.0 - 2.0 * sg * qexp(d, k, 4);
                    ex0[k] = s * qexp(d, k, 1) - 0.5 * dh0;
                    dr = s * sg * qexp(d, k, 2) - 0.5 * dh1;
                }
                ex1[k] = d->scale_is_sigma ? dr / sg : dr;
            }
        tc_stat st[2 * B * D];
        memset(st, 0, sizeof st);
        double glp[B * 16];
        for (size_t k = 0; k < B * M; k++) glp[k] = tanh_ ? 0.5 : 0.0;
        for (int s = 0; s < 1000; s++) {
            uint64_t seed = 7919ULL * (uint64_t)s + v;
            draws w;
            draw(d, M, seed, &w);
            double gx[B * 16 * D];
            for (size_t k = 0; k < B * M * D; k++) gx[k] = tanh_ ? 1.0 : 2.0 * w.x[k];
            routs o;
            gs_reparam_job j = reparam_job(d, M, seed, gx, tanh_ ? glp : NULL, &o);
            ck_assert_int_eq(gs_reparam(&j, 0, B, NULL), 0);
            for (size_t k = 0; k < B * D; k++) {
                tc_stat_add(&st[k], o.g0[k], o.s0[k]);
                tc_stat_add(&st[B * D + k], o.g1[k], o.s1[k]);
            }
        }
        for (size_t k = 0; k < B * D; k++) {
            char n0[96], n1[96];
            snprintf(n0, sizeof n0, "%s reparam d/dloc[%zu]", CONT[v].name, k);
            snprintf(n1, sizeof n1, "%s reparam d/dscale[%zu]", CONT[v].name, k);
            ck_unbiased(st[k], ex0[k], n0);
            ck_unbiased(st[B * D + k], ex1[k], n1);
            ck_se_calibrated(st[k], n0);
            ck_se_calibrated(st[B * D + k], n1);
        }
    }
}
END_TEST

/* ==== gs_score ======================================================================= */

typedef struct {
    double val[RB], sval[RB], g0[RB * K], g1[RB * K], s0[RB * K], s1[RB * K];
    double t0[RB * MAXM * K], t1[RB * MAXM * K];
} souts;

static gs_score_job score_job(const gs_dist *d, size_t M, const double *f, gs_baseline bl,
                              souts *o) {
    int cat = d->type == GS_CATEGORICAL;
    return (gs_score_job){.dist = *d,
                          .samples = M,
                          .f = f,
                          .baseline = bl,
                          .value = o->val,
                          .grad = {o->g0, cat ? NULL : o->g1},
                          .se_value = o->sval,
                          .se_grad = {o->s0, cat ? NULL : o->s1}};
}

/* f at the draws: v_k (categorical), sum c_d x_d^2 (normal), sum a_d (tanh). */
static void f_of(const gs_dist *d, size_t M, const draws *w, double *f) {
    for (size_t q = 0; q < d->rows * M; q++) {
        if (d->type == GS_CATEGORICAL) {
            f[q] = VALUES[w->act[q]];
            continue;
        }
        f[q] = 0.0;
        for (size_t i = 0; i < D; i++)
            f[q] += d->type == GS_NORMAL ? COEF[i] * pow(w->x[q * D + i], 2) : w->x[q * D + i];
    }
}

/* MATH.md §5a term by term: g_m = (f_m - b_m) dl(x_m)/dtheta. */
START_TEST(score_closed_form) {
    const size_t M = 6;
    for (size_t v = 0; v <= NCONT; v++) {
        params P;
        gs_dist d = {.type = GS_CATEGORICAL, .rows = B, .dim = K, .logits = LOGITS};
        if (v < NCONT) params_init(&P, &CONT[v], B), d = P.dist;
        size_t n = d.dim;
        draws w;
        draw(&d, M, 400 + v, &w);
        double f[B * 6];
        f_of(&d, M, &w, f);
        for (int bl = 0; bl < 2; bl++) {
            souts o;
            gs_score_job j = score_job(&d, M, f, bl ? GS_BASELINE_NONE : GS_BASELINE_LOO, &o);
            j.terms = (gs_pgrad){o.t0, o.t1};
            if (d.type == GS_CATEGORICAL)
                j.actions = w.act;
            else
                j.x = w.x;
            ck_assert_int_eq(gs_score(&j, 0, B, NULL), 0);
            for (size_t b = 0; b < B; b++) {
                double mean = 0.0, ss = 0.0;
                for (size_t m = 0; m < M; m++) mean += f[b * M + m] / M;
                for (size_t m = 0; m < M; m++) ss += pow(f[b * M + m] - mean, 2);
                ck_close(o.val[b], mean, 1e-13, 1e-14);
                ck_close(o.sval[b], sqrt(ss / (M - 1) / M), 1e-12, 1e-14);
                double logp[K], p[K];
                if (d.type == GS_CATEGORICAL) ref_softmax(LOGITS + b * K, K, logp, p);
                for (size_t i = 0; i < n; i++) {
                    double a0 = 0, a1 = 0;
                    for (size_t m = 0; m < M; m++) {
                        size_t q = b * M + m;
                        double c = f[q] - (bl ? 0.0 : (mean * M - f[q]) / (M - 1)), t0, t1 = 0;
                        if (d.type == GS_CATEGORICAL) {
                            t0 = c * ((w.act[q] == (int64_t)i) - p[i]);
                        } else {
                            double sg = sigma_at(&d, b * D + i), e = w.eps[q * D + i];
                            t0 = c * e / sg;
                            t1 = c * (e * e - 1.0);
                            if (d.scale_is_sigma) t1 /= sg;
                        }
                        /* the x route inverts tanh: agreement to ~1e-12 */
                        ck_close(o.t0[q * n + i], t0, 1e-10, 1e-12);
                        if (d.type != GS_CATEGORICAL) ck_close(o.t1[q * n + i], t1, 1e-10, 1e-12);
                        a0 += t0 / M;
                        a1 += t1 / M;
                    }
                    ck_close(o.g0[b * n + i], a0, 1e-10, 1e-12);
                    if (d.type != GS_CATEGORICAL) ck_close(o.g1[b * n + i], a1, 1e-10, 1e-12);
                }
            }
        }
    }
}
END_TEST

/* The three ways of giving the draws agree: actions == rng (categorical);
 * noise rng == caller eps (bit-identical) ~ x (through atanh). */
START_TEST(score_draw_sources_agree) {
    const size_t M = 8;
    for (size_t v = 0; v <= NCONT; v++) {
        params P;
        gs_dist d = {.type = GS_CATEGORICAL, .rows = B, .dim = K, .logits = LOGITS};
        if (v < NCONT) params_init(&P, &CONT[v], B), d = P.dist;
        size_t n = B * d.dim;
        draws w;
        draw(&d, M, 4711, &w);
        double f[B * 8];
        f_of(&d, M, &w, f);
        souts a, c, e;
        gs_score_job ja = score_job(&d, M, f, GS_BASELINE_LOO, &a);
        gs_score_job jc = score_job(&d, M, f, GS_BASELINE_LOO, &c);
        gs_rng rng;
        gs_rng_init(&rng, 4711);
        gs_noise nz = {NULL, rng}, ne = {w.eps, rng};
        if (d.type == GS_CATEGORICAL) {
            ja.rng = &rng;
            jc.actions = w.act;
        } else {
            ja.noise = &nz;
            jc.x = w.x;
        }
        ck_assert_int_eq(gs_score(&ja, 0, B, NULL), 0);
        ck_assert_int_eq(gs_score(&jc, 0, B, NULL), 0);
        if (d.type == GS_CATEGORICAL) {
            ck_same_bytes(a.g0, c.g0, n * sizeof(double));
            ck_same_bytes(a.s0, c.s0, n * sizeof(double));
            continue;
        }
        for (size_t k = 0; k < n; k++) {
            ck_close(a.g0[k], c.g0[k], 1e-10, 1e-12);
            ck_close(a.g1[k], c.g1[k], 1e-10, 1e-12);
        }
        gs_score_job je = score_job(&d, M, f, GS_BASELINE_LOO, &e);
        je.noise = &ne;
        ck_assert_int_eq(gs_score(&je, 0, B, NULL), 0);
        ck_same_bytes(a.g0, e.g0, n * sizeof(double));
        ck_same_bytes(a.g1, e.g1, n * sizeof(double));
        ck_same_bytes(a.s1, e.s1, n * sizeof(double));
    }
}
END_TEST

/* MATH.md §5a checks, over 1000 seeds each, loo and none:
 * categorical f(k) = v_k: p (v - sum p v); normal f = sum c x^2:
 * d/dmu = 2 c mu, d/drho = 2 c sigma^2 (d/dsigma = 2 c sigma); tanh
 * f = sum a: d/dmu = s E[1 - t^2], d/drho = s sigma E[(1 - t^2) eps]. */
START_TEST(score_unbiased) {
    const size_t M = 32;
    for (size_t v = 0; v <= NCONT; v++) {
        params P;
        gs_dist d = {.type = GS_CATEGORICAL, .rows = B, .dim = K, .logits = LOGITS};
        if (v < NCONT) params_init(&P, &CONT[v], B), d = P.dist;
        int cat = d.type == GS_CATEGORICAL;
        size_t n = d.dim;
        double ev[B], ex0[B * K], ex1[B * K];
        for (size_t b = 0; b < B; b++) {
            ev[b] = 0.0;
            if (cat) {
                double logp[K], p[K], pv = 0.0;
                ref_softmax(LOGITS + b * K, K, logp, p);
                for (size_t k = 0; k < K; k++) pv += p[k] * VALUES[k];
                for (size_t k = 0; k < K; k++) ex0[b * K + k] = p[k] * (VALUES[k] - pv);
                ev[b] = pv;
                continue;
            }
            for (size_t i = 0; i < D; i++) {
                size_t k = b * D + i;
                double sg = sigma_at(&d, k), s = half_at(&d, i), dr;
                if (d.type == GS_NORMAL) {
                    ev[b] += COEF[i] * (LOC[k] * LOC[k] + sg * sg);
                    ex0[k] = 2.0 * COEF[i] * LOC[k];
                    dr = 2.0 * COEF[i] * sg * sg;
                } else {
                    ev[b] += centre_at(&d, i) + s * qexp(&d, k, 0);
                    ex0[k] = s * qexp(&d, k, 1);
                    dr = s * sg * qexp(&d, k, 2);
                }
                ex1[k] = d.scale_is_sigma ? dr / sg : dr;
            }
        }
        for (int bl = 0; bl < 2; bl++) {
            tc_stat sv[B], s0[B * K], s1[B * K];
            memset(sv, 0, sizeof sv), memset(s0, 0, sizeof s0), memset(s1, 0, sizeof s1);
            for (int s = 0; s < 1000; s++) {
                uint64_t seed = 104729ULL * (uint64_t)s + 3 * v + (uint64_t)bl;
                draws w;
                draw(&d, M, seed, &w);
                double f[B * 32];
                f_of(&d, M, &w, f);
                souts o;
                gs_score_job j = score_job(&d, M, f, bl ? GS_BASELINE_NONE : GS_BASELINE_LOO, &o);
                gs_rng rng;
                gs_rng_init(&rng, seed);
                gs_noise nz = {NULL, rng};
                if (cat)
                    j.rng = &rng;
                else
                    j.noise = &nz;
                ck_assert_int_eq(gs_score(&j, 0, B, NULL), 0);
                for (size_t b = 0; b < B; b++) tc_stat_add(&sv[b], o.val[b], o.sval[b]);
                for (size_t k = 0; k < B * n; k++) {
                    tc_stat_add(&s0[k], o.g0[k], o.s0[k]);
                    if (!cat) tc_stat_add(&s1[k], o.g1[k], o.s1[k]);
                }
            }
            const char *vn = cat ? "categorical" : CONT[v].name, *bn = bl ? "none" : "loo";
            char name[128];
            for (size_t b = 0; b < B; b++) {
                snprintf(name, sizeof name, "%s %s value[%zu]", vn, bn, b);
                ck_unbiased(sv[b], ev[b], name);
                ck_se_calibrated(sv[b], name);
            }
            for (size_t k = 0; k < B * n; k++) {
                snprintf(name, sizeof name, "%s %s grad p0[%zu]", vn, bn, k);
                ck_unbiased(s0[k], ex0[k], name);
                ck_se_calibrated(s0[k], name);
                if (cat) continue;
                snprintf(name, sizeof name, "%s %s grad p1[%zu]", vn, bn, k);
                ck_unbiased(s1[k], ex1[k], name);
                ck_se_calibrated(s1[k], name);
            }
        }
    }
}
END_TEST

/* M = 2 with loo: b_m is the other sample's f, so
 * g = 1/2 (f_0 - f_1)(s_0 - s_1); M = 1 with none: f_0 s_0, se 0. */
START_TEST(score_one_and_two_samples) {
    params P;
    params_init(&P, &CONT[1], B);
    for (size_t M = 1; M <= 2; M++) {
        draws w;
        draw(&P.dist, M, 12, &w);
        double f[B * 2];
        f_of(&P.dist, M, &w, f);
        souts o;
        gs_score_job j = score_job(&P.dist, M, f, M == 1 ? GS_BASELINE_NONE : GS_BASELINE_LOO, &o);
        j.x = w.x;
        ck_assert_int_eq(gs_score(&j, 0, B, NULL), 0);
        for (size_t b = 0; b < B; b++)
            for (size_t i = 0; i < D; i++) {
                size_t k = b * D + i;
                double sg = P.scale[k], w0, w1;
                if (M == 1) {
                    double e = w.eps[k];
                    w0 = f[b] * e / sg;
                    w1 = f[b] * (e * e - 1.0) / sg;
                    ck_assert(o.s0[k] == 0.0 && o.s1[k] == 0.0 && o.sval[b] == 0.0);
                } else {
                    double e0 = w.eps[2 * b * D + i], e1 = w.eps[(2 * b + 1) * D + i];
                    double df = f[2 * b] - f[2 * b + 1];
                    w0 = 0.5 * df * (e0 - e1) / sg;
                    w1 = 0.5 * df * (e0 * e0 - e1 * e1) / sg;
                }
                ck_close(o.g0[k], w0, 1e-12, 1e-13);
                ck_close(o.g1[k], w1, 1e-12, 1e-13);
            }
    }
}
END_TEST

/* ==== rows, edges, failures ============================================================ */

static const size_t SPLITS[][2] = {{5, 7}, {0, 1}, {1, 5}};

START_TEST(split_rows_bit_identical) {
    const size_t M = 5;
    double z[RB * K];
    for (size_t i = 0; i < RB * K; i++) z[i] = 2.0 * sin(0.77 * i);
    for (size_t v = 0; v <= NCONT; v++) {
        params P;
        gs_dist d = {.type = GS_CATEGORICAL, .rows = RB, .dim = K, .logits = z};
        if (v < NCONT) params_init(&P, &CONT[v], RB), d = P.dist;
        int cat = d.type == GS_CATEGORICAL;
        size_t n = d.dim;
        draws w;
        draw(&d, M, 61, &w);
        double f[RB * 5], gx[RB * 5 * D], glp[RB * 5];
        f_of(&d, M, &w, f);
        for (size_t k = 0; k < RB * M * D; k++) gx[k] = cos(0.3 * k);
        for (size_t k = 0; k < RB * M; k++) glp[k] = sin(0.3 * k);
        gs_rng rng;
        gs_rng_init(&rng, 61);
        gs_noise nz = {NULL, rng};
        for (int bl = 0; bl < 2; bl++) {
            static souts a, c;
            memset(&c, 0xee, sizeof c);
            gs_score_job ja = score_job(&d, M, f, bl ? GS_BASELINE_NONE : GS_BASELINE_LOO, &a);
            gs_score_job jc = score_job(&d, M, f, bl ? GS_BASELINE_NONE : GS_BASELINE_LOO, &c);
            ja.terms = (gs_pgrad){a.t0, cat ? NULL : a.t1};
            jc.terms = (gs_pgrad){c.t0, cat ? NULL : c.t1};
            if (cat)
                ja.rng = jc.rng = &rng;
            else
                ja.noise = jc.noise = &nz;
            ck_assert_int_eq(gs_score(&ja, 0, RB, NULL), 0);
            for (int k = 0; k < 3; k++)
                ck_assert_int_eq(gs_score(&jc, SPLITS[k][0], SPLITS[k][1], NULL), 0);
            ck_same_bytes(a.val, c.val, RB * sizeof(double));
            ck_same_bytes(a.sval, c.sval, RB * sizeof(double));
            ck_same_bytes(a.g0, c.g0, RB * n * sizeof(double));
            ck_same_bytes(a.s0, c.s0, RB * n * sizeof(double));
            ck_same_bytes(a.t0, c.t0, RB * M * n * sizeof(double));
            if (!cat) {
                ck_same_bytes(a.g1, c.g1, RB * n * sizeof(double));
                ck_same_bytes(a.s1, c.s1, RB * n * sizeof(double));
                ck_same_bytes(a.t1, c.t1, RB * M * n * sizeof(double));
            }
        }
        if (cat) continue;
        static routs ra, rc;
        memset(&rc, 0xee, sizeof rc);
        gs_reparam_job ja = reparam_job(&d, M, 61, gx, glp, &ra),
                       jc = reparam_job(&d, M, 61, gx, glp, &rc);
        ja.terms = (gs_pgrad){ra.t0, ra.t1};
        jc.terms = (gs_pgrad){rc.t0, rc.t1};
        ck_assert_int_eq(gs_reparam(&ja, 0, RB, NULL), 0);
        for (int k = 0; k < 3; k++)
            ck_assert_int_eq(gs_reparam(&jc, SPLITS[k][0], SPLITS[k][1], NULL), 0);
        ck_same_bytes(ra.x, rc.x, RB * M * D * sizeof(double));
        ck_same_bytes(ra.lp, rc.lp, RB * M * sizeof(double));
        ck_same_bytes(ra.g0, rc.g0, RB * D * sizeof(double));
        ck_same_bytes(ra.g1, rc.g1, RB * D * sizeof(double));
        ck_same_bytes(ra.s0, rc.s0, RB * D * sizeof(double));
        ck_same_bytes(ra.s1, rc.s1, RB * D * sizeof(double));
        ck_same_bytes(ra.t0, rc.t0, RB * M * D * sizeof(double));
        ck_same_bytes(ra.t1, rc.t1, RB * M * D * sizeof(double));
    }
}
END_TEST

static int lanes_reparam(const tc_lanes_case *c, size_t r0, size_t r1, const tc_lanes_out *o,
                         gs_error *err) {
    gs_reparam_job j = {.dist = c->dist, .samples = c->M, .noise = {c->eps, c->rng},
                        .grad_x = c->in, .grad_log_prob = c->M == 7 ? NULL : c->in_m,
                        .x = o->x, .log_prob = o->lp, .grad = {o->g0, o->g1},
                        .se_grad = c->M == 2 ? (gs_pgrad){NULL, NULL} : (gs_pgrad){o->s0, o->s1}};
    return gs_reparam(&j, r0, r1, err);
}

START_TEST(reparam_lanes_match_rows) { tc_lanes_vs_rows(lanes_reparam, 0, 1); }
END_TEST

START_TEST(edge_extremes) {
    /* log_scale -20 .. 20, tanh saturated at loc +-40 with and without
     * bounds, M = 1: finite outputs; saturated actions sit on the bounds. */
    enum { R = 6, M = 8 };
    double loc[R] = {0.5, 0.5, 40.0, -40.0, 0.5, 0.5}, ls[R] = {-20.0, 20.0, -3.0, -3.0, 0.0, 3.0};
    static const double lo[1] = {-3.0}, hi[1] = {1.0};
    for (int t = 0; t < 3; t++) {
        gs_dist d = {.type = t ? GS_TANH_NORMAL : GS_NORMAL,
                     .rows = R,
                     .dim = 1,
                     .loc = loc,
                     .scale = ls,
                     .low = t == 2 ? lo : NULL,
                     .high = t == 2 ? hi : NULL};
        if (!t) d.rows = 2; /* loc 40 with sigma e^-3 is an ordinary normal; skip it */
        for (size_t m1 = 0; m1 < 2; m1++) {
            size_t MM = m1 ? 1 : M;
            double gx[R * M], glp[R * M], f[R * M];
            for (int k = 0; k < R * M; k++) gx[k] = 0.5, glp[k] = -0.25, f[k] = sin(k);
            routs o;
            gs_reparam_job j = reparam_job(&d, MM, 5, gx, glp, &o);
            ck_assert_int_eq(gs_reparam(&j, 0, d.rows, NULL), 0);
            ck_all_finite(o.x, d.rows * MM);
            ck_all_finite(o.lp, d.rows * MM);
            ck_all_finite(o.g0, d.rows);
            ck_all_finite(o.g1, d.rows);
            ck_all_finite(o.s0, d.rows);
            if (m1) ck_assert(o.s0[0] == 0.0 && o.s1[0] == 0.0);
            if (t)
                for (size_t q = 2 * MM; q < 4 * MM; q++)
                    ck_assert(o.x[q] == (loc[q / MM] > 0 ? 1.0 : (t == 2 ? -3.0 : -1.0)));
            souts so;
            gs_rng rng;
            gs_rng_init(&rng, 5);
            gs_noise nz = {NULL, rng};
            gs_score_job sj = score_job(&d, MM, f, m1 ? GS_BASELINE_NONE : GS_BASELINE_LOO, &so);
            sj.noise = &nz;
            ck_assert_int_eq(gs_score(&sj, 0, d.rows, NULL), 0);
            ck_all_finite(so.g0, d.rows);
            ck_all_finite(so.g1, d.rows);
            ck_all_finite(so.s1, d.rows);
        }
    }
    /* categorical K = 1 and logits +-1e4 through gs_score */
    double z[2 * 3] = {1e4, -1e4, 0.0, 5.0, 5.0, -1e4};
    gs_dist c = {.type = GS_CATEGORICAL, .rows = 2, .dim = 3, .logits = z};
    double f[2 * 4] = {1, 2, 3, 4, 5, 6, 7, 8};
    souts so;
    gs_rng rng;
    gs_rng_init(&rng, 3);
    gs_score_job sj = score_job(&c, 4, f, GS_BASELINE_LOO, &so);
    sj.rng = &rng;
    ck_assert_int_eq(gs_score(&sj, 0, 2, NULL), 0);
    ck_all_finite(so.g0, 6);
    ck_assert(so.g0[0] == 0.0 && so.g0[1] == 0.0 && so.g0[2] == 0.0); /* p = e_0: the score is 0 */
    ck_assert(so.g0[5] == 0.0);                                       /* p_2 = 0 */
    sj.dist.dim = 1; /* K = 1: p = 1, every score is 0 */
    ck_assert_int_eq(gs_score(&sj, 0, 2, NULL), 0);
    ck_assert(so.g0[0] == 0.0 && so.g0[1] == 0.0);
}
END_TEST

START_TEST(error_reparam) {
    const size_t M = 4;
    /* sigma = exp(800) = inf: the normal's x is infinite; the scale of
     * row 1 column 1 is to blame. */
    for (size_t v = 0; v < NCONT; v++) {
        if (CONT[v].sigma) continue;
        params P;
        params_init(&P, &CONT[v], B + 1);
        P.scale[1 * D + 1] = 800.0;
        double gx[3 * 4 * D], glp[3 * 4];
        for (size_t k = 0; k < 3 * M * D; k++) gx[k] = 0.5;
        for (size_t k = 0; k < 3 * M; k++) glp[k] = 0.5;
        routs o;
        gs_reparam_job j = reparam_job(&P.dist, M, 8, gx, glp, &o);
        gs_error e;
        int rc = gs_reparam(&j, 0, B + 1, &e);
        ck_assert_msg(rc == GS_ENONFINITE && e.input == GS_IN_SCALE && e.row == 1 && e.col == 1,
                      "%s: rc %d input %d row %ld col %ld", CONT[v].name, rc, e.input, e.row,
                      e.col);
    }
    /* grad_x that overflows the mean: blame grad_x, row 1, column 0. */
    params P;
    params_init(&P, &CONT[0], B);
    double gx[B * 4 * D], glp[B * 4] = {0};
    for (size_t k = 0; k < B * M * D; k++) gx[k] = (k >= M * D && k % D == 0) ? 1e308 : 1.0;
    routs o;
    gs_reparam_job j = reparam_job(&P.dist, M, 8, gx, glp, &o);
    gs_error e;
    int rc = gs_reparam(&j, 0, B, &e);
    ck_assert_msg(rc == GS_ENONFINITE && e.input == GS_IN_GRAD_X && e.row == 1 && e.col == 0,
                  "rc %d input %d row %ld col %ld", rc, e.input, e.row, e.col);
    /* Caller noise of 1e200: x is finite but eps^2, hence log p, is not:
     * no infinite log_prob may be returned; the noise is at fault. */
    for (size_t v = 0; v < NCONT; v++) {
        params Q;
        params_init(&Q, &CONT[v], B);
        double eps[B * 4 * D];
        for (size_t k = 0; k < B * M * D; k++) eps[k] = 0.1 * k - 0.3;
        eps[(1 * M + 3) * D + 0] = 1e200;
        for (size_t k = 0; k < B * M * D; k++) gx[k] = 0.0;
        routs r;
        gs_reparam_job jj = reparam_job(&Q.dist, M, 0, gx, NULL, &r);
        jj.noise.eps = eps;
        gs_error ee = {0};
        rc = gs_reparam(&jj, 0, B, &ee);
        ck_error(rc, ee, GS_ENONFINITE, GS_IN_EPS, 1, 3, 0);
    }
    /* A tanh_normal loc of 1e308: the draw saturates (finite x) but
     * log(1 - tanh^2 u) is -inf, so log p is +inf: blame that loc. */
    params_init(&P, &CONT[4], B);
    P.loc[1 * D + 1] = 1e308;
    for (size_t k = 0; k < B * M * D; k++) gx[k] = 0.5;
    j = reparam_job(&P.dist, M, 8, gx, NULL, &o);
    ck_error(gs_reparam(&j, 0, B, &e), e, GS_ENONFINITE, GS_IN_LOC, 1, -1, 1);
    ck_assert(o.x[(1 * M) * D + 1] == HIGH[1]);
}
END_TEST

START_TEST(error_score) {
    const size_t M = 4;
    /* f of 1e308 and -1e308: the mean is finite but the spread is not. */
    for (size_t v = 0; v <= NCONT; v++) {
        params P;
        gs_dist d = {.type = GS_CATEGORICAL, .rows = B, .dim = K, .logits = LOGITS};
        if (v < NCONT) params_init(&P, &CONT[v], B), d = P.dist;
        double f[B * 4] = {1, 2, 3, 4, 1e308, -1e308, 1e308, -1e308};
        souts o;
        gs_score_job j = score_job(&d, M, f, GS_BASELINE_LOO, &o);
        gs_rng rng;
        gs_rng_init(&rng, 3);
        gs_noise nz = {NULL, rng};
        if (d.type == GS_CATEGORICAL)
            j.rng = &rng;
        else
            j.noise = &nz;
        gs_error e;
        int rc = gs_score(&j, 0, B, &e);
        ck_assert_msg(rc == GS_ENONFINITE && e.input == GS_IN_F && e.row == 1,
                      "v %zu: rc %d input %d row %ld", v, rc, e.input, e.row);
        ck_assert_int_eq(gs_score(&j, 0, 1, NULL), 0);
    }
    /* tanh_normal x on or outside its bounds: blame x with sample and col. */
    for (int bnd = 0; bnd < 2; bnd++) {
        params P;
        params_init(&P, &CONT[bnd ? 4 : 2], B);
        double x[B * 4 * D], f[B * 4] = {0};
        for (size_t k = 0; k < B * M * D; k++)
            x[k] = (bnd ? 0.5 * (LOW[k % D] + HIGH[k % D]) : 0.0) + 0.3 * sin(k);
        x[(1 * M + 1) * D + 1] = bnd ? HIGH[1] : -1.0;
        souts o;
        gs_score_job j = score_job(&P.dist, M, f, GS_BASELINE_LOO, &o);
        j.x = x;
        gs_error e;
        ck_error(gs_score(&j, 0, B, &e), e, GS_ENONFINITE, GS_IN_X, 1, 1, 1);
    }
}
END_TEST

/* A batch that moves at least GS_STREAM_BYTES writes its outputs with
 * non-temporal stores (gs_vmath_impl.h): the same bits as a small batch of
 * the same rows, which does not stream, and as a split whose second share
 * starts off a cache line. The reparam kernel (x, log p, gradients, se) of
 * a normal, D = 6, M = 16, the caller's noise; and log_prob, which does not
 * stream, on the same big batch. */
enum { SB = 16387, SD = 6, SM = 16, SW = 67 };

/* Outputs: x (rows x M x D), lp (rows x M), g0, g1, se0, se1 (rows x D). */
enum { NO = 6 };
static const size_t OW[NO] = {SM * SD, SM, SD, SD, SD, SD};

/* Rows [r0, r1) of the batch of `rows` rows from row w0 of the inputs:
 * log_prob of x = in[2] when lp_only, else reparam. */
static void big_run(int lp_only, double *const in[4], size_t w0, size_t rows, size_t r0, size_t r1,
                    double *const o[NO]) {
    gs_dist d = {.type = GS_NORMAL, .rows = rows, .dim = SD, .loc = in[0] + w0 * SD,
                 .scale = in[1] + w0 * SD};
    if (lp_only) {
        gs_log_prob_job j = {.dist = d, .samples = SM, .x = in[2] + w0 * SM * SD,
                             .log_prob = o[1], .grad = {o[2], o[3]}};
        ck_assert_int_eq(gs_log_prob(&j, r0, r1, NULL), 0);
        return;
    }
    gs_reparam_job j = {.dist = d, .samples = SM, .noise = {.eps = in[2] + w0 * SM * SD},
                        .grad_x = in[3] + w0 * SM * SD, .x = o[0], .log_prob = o[1],
                        .grad = {o[2], o[3]}, .se_grad = {o[4], o[5]}};
    ck_assert_int_eq(gs_reparam(&j, r0, r1, NULL), 0);
}

START_TEST(streamed_big_batch) {
    ck_assert(gs_stream_batch(SB, 3 * SM * SD + 2 * SM + 6 * SD) &&
              !gs_stream_batch(SW, 3 * SM * SD + 2 * SM + 6 * SD));
    double *in[4] = {tc_big(SB * SD), tc_big(SB * SD), tc_big(SB * SM * SD), tc_big(SB * SM * SD)};
    for (size_t i = 0; i < SB * SD; i++) in[0][i] = sin(0.37 * i), in[1][i] = 0.5 * cos(0.71 * i);
    for (size_t i = 0; i < SB * SM * SD; i++)
        in[2][i] = 1.3 * sin(0.43 * i + 0.25), in[3][i] = cos(0.29 * i);
    for (int lp_only = 0; lp_only < 2; lp_only++) {
        double *a[NO], *c[NO], *s[NO];
        for (int i = 0; i < NO; i++)
            a[i] = tc_big(SB * OW[i]), c[i] = tc_big(SB * OW[i]), s[i] = tc_big(SW * OW[i]);
        size_t cut = SB / 2 + 3, w0s[] = {0, SB / 2, SB - SW};
        big_run(lp_only, in, 0, SB, 0, SB, a);
        big_run(lp_only, in, 0, SB, 0, cut, c);
        big_run(lp_only, in, 0, SB, cut, SB, c);
        for (int i = 0; i < NO; i++)
            if (!lp_only || (i >= 1 && i <= 3))
                ck_same_bytes(a[i], c[i], SB * OW[i] * sizeof(double));
        for (int w = 0; w < 3; w++) {
            big_run(lp_only, in, w0s[w], SW, 0, SW, s);
            for (int i = 0; i < NO; i++)
                if (!lp_only || (i >= 1 && i <= 3))
                    ck_same_bytes(a[i] + w0s[w] * OW[i], s[i], SW * OW[i] * sizeof(double));
        }
        for (int i = 0; i < NO; i++) free(a[i]), free(c[i]), free(s[i]);
    }
    for (int i = 0; i < 4; i++) free(in[i]);
}
END_TEST

static Suite *estim_suite(void) {
    Suite *s = suite_create("estim");
    TCase *tc = tcase_create("reparam");
    tcase_add_test(tc, reparam_closed_form);
    tcase_add_test(tc, reparam_fd);
    tcase_add_test(tc, reparam_unbiased);
    suite_add_tcase(s, tc);
    tc = tcase_create("score");
    tcase_add_test(tc, score_closed_form);
    tcase_add_test(tc, score_draw_sources_agree);
    tcase_add_test(tc, score_unbiased);
    tcase_add_test(tc, score_one_and_two_samples);
    suite_add_tcase(s, tc);
    tc = tcase_create("edges");
    tcase_add_test(tc, split_rows_bit_identical);
    tcase_add_test(tc, reparam_lanes_match_rows);
    tcase_add_test(tc, streamed_big_batch);
    tcase_add_test(tc, edge_extremes);
    tcase_add_test(tc, error_reparam);
    tcase_add_test(tc, error_score);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tc_run(estim_suite()); }
