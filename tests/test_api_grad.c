/* test_api_grad.c - the api layer's /v1/reparam and /v1/score against the core: noise sources, shapes, errors and seeds. */
#include "test_api_util.h"

/* ==== /v1/reparam ================================================================ */

typedef struct {
    double *x, *log_prob;
    gs_pgrad grad, se_grad;
} rep_ref;

/* gs_reparam with the caller's eps, or the seed's noise when eps is NULL. */
static rep_ref reparam_ref(const tdist *t, size_t M, const double *eps, uint64_t seed,
                           const double *gx, const double *glp) {
    rep_ref r = {calloc(t->B * M * t->D, sizeof(double)), calloc(t->B * M, sizeof(double)),
                 pgrad_new(t), {0}};
    gs_reparam_job j = {0};
    j.dist = tdist_core(t);
    j.samples = M;
    j.noise.eps = eps;
    gs_rng_init(&j.noise.rng, seed);
    j.grad_x = gx;
    j.grad_log_prob = glp;
    j.x = r.x;
    j.log_prob = r.log_prob;
    j.grad = r.grad;
    if (M >= 2) j.se_grad = r.se_grad = pgrad_new(t);
    gs_error e;
    ck_assert_int_eq(gs_reparam(&j, 0, t->B, &e), 0);
    return r;
}

static void rep_ref_free(rep_ref *r) {
    free(r->x);
    free(r->log_prob);
    pgrad_free(&r->grad);
    pgrad_free(&r->se_grad);
}

/* A /v1/reparam body: noise from eps (when not NULL) or seed (samples sent
 * when send_m), grad_x and optional grad_log_prob, all B x M (x D). */
static char *reparam_body(const tdist *t, int single, size_t M, const double *eps,
                          long long seed, int send_m, const double *gx, const double *glp) {
    size_t dims[3] = {t->B, M, t->D};
    const size_t *d = single ? dims + 1 : dims;
    size_t r = single ? 1 : 0;
    sb s = {0};
    sb_printf(&s, "{\"distribution\":");
    sb_tdist(&s, t, single);
    if (eps) {
        sb_printf(&s, ",\"eps\":");
        sb_arr(&s, eps, NULL, 3 - r, d);
    }
    if (seed >= 0) sb_printf(&s, ",\"seed\":%lld", seed);
    if (send_m) sb_printf(&s, ",\"samples\":%zu", M);
    sb_printf(&s, ",\"grad_x\":");
    sb_arr(&s, gx, NULL, 3 - r, d);
    if (glp) {
        sb_printf(&s, ",\"grad_log_prob\":");
        sb_arr(&s, glp, NULL, 2 - r, d);
    }
    sb_printf(&s, "}");
    return sb_take(&s);
}

static void expect_reparam(json_t *j, const tdist *t, size_t M, const rep_ref *r,
                           long long seed, int single) {
    const char *k[8];
    int n = 0;
    if (seed >= 0) k[n++] = "seed";
    k[n++] = "x";
    k[n++] = "log_prob";
    k[n++] = "grad";
    if (M >= 2) k[n++] = "stderr";
    k[n] = NULL;
    expect_keys(j, k);
    if (seed >= 0) ck_assert(json_integer_value(json_object_get(j, "seed")) == seed);
    size_t dims[3] = {t->B, M, t->D};
    const size_t *d = single ? dims + 1 : dims;
    expect_at(j, "x", r->x, NULL, single ? 2 : 3, d);
    expect_at(j, "log_prob", r->log_prob, NULL, single ? 1 : 2, d);
    expect_pgrad(json_object_get(j, "grad"), t, &r->grad, single, "grad");
    if (M >= 2) {
        const char *ks[] = {"grad", NULL};
        expect_keys(json_object_get(j, "stderr"), ks);
        expect_pgrad(jget(j, "stderr.grad"), t, &r->se_grad, single, "stderr.grad");
    }
}

START_TEST(reparam_matches_core) {
    struct { gs_dist_type type; int sigma, bounds; } cases[] = {
        {GS_NORMAL, 0, 0}, {GS_NORMAL, 1, 0}, {GS_TANH_NORMAL, 0, 1}, {GS_TANH_NORMAL, 1, 0}};
    size_t Ms[] = {1, 3};
    for (size_t c = 0; c < 4; c++)
        for (size_t mi = 0; mi < 2; mi++)
            for (int src = 0; src < 3; src++)   /* eps, seed + samples, seed alone */
                for (int g = 0; g < 2; g++) {   /* with grad_log_prob */
                    size_t M = Ms[mi];
                    tdist t = tdist_make(cases[c].type, 3, 2, 200 + c, cases[c].sigma,
                                         cases[c].bounds);
                    uint64_t st = 7 + c * 10 + mi;
                    size_t n = t.B * M;
                    double *eps = src == 0 ? rnd_fill(&st, n * t.D, -2, 2) : NULL;
                    double *gx = rnd_fill(&st, n * t.D, -1, 1);
                    double *glp = g ? rnd_fill(&st, n, -1, 1) : NULL;
                    long long seed = src ? 31337 + (long long)c : -1;
                    char *b = reparam_body(&t, 0, M, eps, seed, src == 1, gx, glp);
                    resp r = call("reparam", b);
                    expect_ok(r);
                    rep_ref ref = reparam_ref(&t, M, eps, (uint64_t)(seed < 0 ? 0 : seed), gx, glp);
                    expect_reparam(r.j, &t, M, &ref, seed, 0);
                    ck_assert_uint_eq(r.samples, n);
                    rep_ref_free(&ref);
                    resp_free(&r);
                    free(b);
                    free(eps);
                    free(gx);
                    free(glp);
                    tdist_free(&t);
                }
}
END_TEST

/* The noise of a seed is /v1/sample's eps for that seed: x and grad agree
 * bit for bit, and the bodies differ only by "seed". */
START_TEST(reparam_seed_is_the_sample_noise) {
    gs_dist_type types[] = {GS_NORMAL, GS_TANH_NORMAL};
    for (int k = 0; k < 2; k++) {
        tdist t = tdist_make(types[k], 4, 3, 210 + k, k, 1);
        size_t M = 5;
        uint64_t st = 1, seed = 4242;
        double *gx = rnd_fill(&st, t.B * M * t.D, -1, 1), *glp = rnd_fill(&st, t.B * M, -1, 1);
        double *eps = sample_eps(&t, seed, M);
        char *bs = reparam_body(&t, 0, M, NULL, (long long)seed, 0, gx, glp);
        char *be = reparam_body(&t, 0, M, eps, -1, 0, gx, glp);
        resp rs = call("reparam", bs), re = call("reparam", be);
        expect_ok(rs);
        expect_ok(re);
        char *want = fmt("{\"seed\":%llu,%s", (unsigned long long)seed, re.body + 1);
        ck_assert_str_eq(rs.body, want);
        /* /v1/reparam's x is /v1/sample's samples */
        sb s = {0};
        sb_printf(&s, "{\"distribution\":");
        sb_tdist(&s, &t, 0);
        sb_printf(&s, ",\"samples\":%zu,\"seed\":%llu}", M, (unsigned long long)seed);
        char *sbody = sb_take(&s);
        resp smp = call("sample", sbody);
        expect_ok(smp);
        ck_assert(json_equal(json_object_get(smp.j, "samples"), json_object_get(rs.j, "x")));
        ck_assert(json_equal(json_object_get(smp.j, "log_prob"), json_object_get(rs.j, "log_prob")));
        resp_free(&smp);
        free(sbody);
        free(want);
        resp_free(&rs);
        resp_free(&re);
        free(bs);
        free(be);
        free(eps);
        free(gx);
        free(glp);
        tdist_free(&t);
    }
}
END_TEST

START_TEST(reparam_single_row) {
    tdist t = tdist_make(GS_TANH_NORMAL, 1, 2, 220, 0, 1);
    size_t M = 3;
    uint64_t st = 5;
    double *eps = rnd_fill(&st, M * 2, -2, 2), *gx = rnd_fill(&st, M * 2, -1, 1),
           *glp = rnd_fill(&st, M, -1, 1);
    for (int src = 0; src < 2; src++) {
        char *b1 = reparam_body(&t, 1, M, src ? NULL : eps, src ? 9 : -1, 0, gx, glp);
        char *b2 = reparam_body(&t, 0, M, src ? NULL : eps, src ? 9 : -1, 0, gx, glp);
        resp s = call("reparam", b1), b = call("reparam", b2);
        expect_ok(s);
        expect_ok(b);
        expect_single_of(s.j, b.j, "reparam");
        resp_free(&s);
        resp_free(&b);
        free(b1);
        free(b2);
    }
    /* a mix: single-row parameters with a batched grad_x, and the reverse */
    const char *d1 = "{\"type\":\"normal\",\"loc\":[0],\"log_scale\":[0]}";
    const char *d2 = "{\"type\":\"normal\",\"loc\":[[0]],\"log_scale\":[[0]]}";
    char b[256];
    snprintf(b, sizeof b, "{\"distribution\":%s,\"seed\":1,\"grad_x\":[[[1]]]}", d1);
    call_error("reparam", b, 400, "invalid_argument", "grad_x");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"seed\":1,\"grad_x\":[[1]]}", d2);
    call_error("reparam", b, 400, "invalid_argument", "grad_x");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"eps\":[[[1]]],\"grad_x\":[[1]]}", d1);
    call_error("reparam", b, 400, "invalid_argument", "eps");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"eps\":[[1]],\"grad_x\":[[1]],"
             "\"grad_log_prob\":[[1]]}", d1);
    call_error("reparam", b, 400, "invalid_argument", "grad_log_prob");
    free(eps);
    free(gx);
    free(glp);
    tdist_free(&t);
}
END_TEST

START_TEST(reparam_errors) {
    const char *d = "{\"type\":\"normal\",\"loc\":[[0,1]],\"log_scale\":[[0,0]]}";
    char b[512];
    /* noise: both, neither */
    snprintf(b, sizeof b, "{\"distribution\":%s,\"eps\":[[[0,0]]],\"seed\":3,\"grad_x\":[[[1,1]]]}", d);
    call_error("reparam", b, 400, "invalid_argument", "seed");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"grad_x\":[[[1,1]]]}", d);
    call_error("reparam", b, 400, "invalid_argument", "eps");
    /* categorical: 422 */
    call_error("reparam", "{\"distribution\":{\"type\":\"categorical\",\"logits\":[0,1]},\"seed\":5,"
                          "\"grad_x\":[[1]]}", 422, "unsupported", "distribution.type");
    /* grad_x required, its M must match eps's (the later array is named) */
    snprintf(b, sizeof b, "{\"distribution\":%s,\"seed\":3}", d);
    call_error("reparam", b, 400, "invalid_argument", "grad_x");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"eps\":[[[0,0],[1,1]]],\"grad_x\":[[[1,1]]]}", d);
    call_error("reparam", b, 400, "invalid_argument", "grad_x[0]");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"eps\":[[[0,0]]],\"grad_x\":[[[1,1,1]]]}", d);
    call_error("reparam", b, 400, "invalid_argument", "grad_x[0][0]");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"eps\":[[[0,0]]],\"grad_x\":[[[1,1]]],"
             "\"grad_log_prob\":[[1,2]]}", d);
    call_error("reparam", b, 400, "invalid_argument", "grad_log_prob[0]");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"eps\":[[[0]]],\"grad_x\":[[[1,1]]]}", d);
    call_error("reparam", b, 400, "invalid_argument", "eps[0][0]");
    /* a samples that disagrees with the arrays */
    snprintf(b, sizeof b, "{\"distribution\":%s,\"eps\":[[[0,0]]],\"samples\":2,\"grad_x\":[[[1,1]]]}", d);
    call_error("reparam", b, 400, "invalid_argument", "samples");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"seed\":1,\"samples\":2,\"grad_x\":[[[1,1]]]}", d);
    call_error("reparam", b, 400, "invalid_argument", "samples");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"seed\":1,\"samples\":0,\"grad_x\":[[[1,1]]]}", d);
    call_error("reparam", b, 400, "invalid_argument", "samples");
    /* a samples that agrees is fine */
    snprintf(b, sizeof b, "{\"distribution\":%s,\"eps\":[[[0,0]]],\"samples\":1,\"grad_x\":[[[1,1]]]}", d);
    resp r = call("reparam", b);
    expect_ok(r);
    resp_free(&r);
    /* unknown and misplaced fields */
    snprintf(b, sizeof b, "{\"distribution\":%s,\"seed\":1,\"grad_x\":[[[1,1]]],\"baseline\":\"loo\"}", d);
    call_error("reparam", b, 400, "invalid_argument", "baseline");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"seed\":1,\"grad_x\":[[[1,\"a\"]]]}", d);
    call_error("reparam", b, 400, "invalid_argument", "grad_x[0][0][1]");
}
END_TEST

/* Outputs that would not be finite are refused naming the likely input. */
START_TEST(reparam_nonfinite_names_the_input) {
    /* the mean of huge grad_x overflows */
    call_error("reparam", "{\"distribution\":{\"type\":\"normal\",\"loc\":[[0],[0]],\"log_scale\":[[0],[0]]},"
                          "\"eps\":[[[0],[0]],[[1],[1]]],\"grad_x\":[[[1],[1]],[[1e308],[1e308]]]}",
               400, "invalid_argument", "grad_x[1]");
    call_error("reparam", "{\"distribution\":{\"type\":\"normal\",\"loc\":[0],\"log_scale\":[0]},"
                          "\"eps\":[[1],[1]],\"grad_x\":[[1e308],[1e308]]}",
               400, "invalid_argument", "grad_x");
    /* exp(log_scale) overflows */
    call_error("reparam", "{\"distribution\":{\"type\":\"tanh_normal\",\"loc\":[[0,0]],"
                          "\"log_scale\":[[0,800]]},\"seed\":1,\"grad_x\":[[[1,1],[1,1]]]}",
               400, "invalid_argument", "distribution.log_scale[0][1]");
    /* log_prob would be infinite while x and grad stay finite: a huge eps
     * (its square overflows) or a huge tanh_normal loc (log(1 - tanh^2)) */
    call_error("reparam", "{\"distribution\":{\"type\":\"normal\",\"loc\":[[0]],\"log_scale\":[[0]]},"
                          "\"eps\":[[[1e200]]],\"grad_x\":[[[0]]]}",
               400, "invalid_argument", "eps[0][0][0]");
    call_error("reparam", "{\"distribution\":{\"type\":\"tanh_normal\",\"loc\":[0,0],\"log_scale\":[0,0]},"
                          "\"eps\":[[0,0],[0,-1e200]],\"grad_x\":[[0,0],[0,0]]}",
               400, "invalid_argument", "eps[1][1]");
    call_error("reparam", "{\"distribution\":{\"type\":\"tanh_normal\",\"loc\":[[0,1e308]],"
                          "\"log_scale\":[[0,0]]},\"seed\":1,\"grad_x\":[[[1,1],[1,1]]]}",
               400, "invalid_argument", "distribution.loc[0][1]");
}
END_TEST

/* ==== /v1/score ===================================================================== */

typedef struct {
    double *value, *se_value;
    gs_pgrad grad, se_grad;
} score_ref;

/* gs_score with the draws as actions, x, eps or a seed (all NULL). */
static score_ref score_ref_run(const tdist *t, size_t M, const int64_t *act, const double *x,
                               const double *eps, uint64_t seed, const double *f,
                               gs_baseline bl) {
    score_ref r = {calloc(t->B, sizeof(double)), NULL, pgrad_new(t), {0}};
    gs_score_job j = {0};
    gs_noise nz = {eps, {{0, 0}}};
    gs_rng_init(&nz.rng, seed);
    j.dist = tdist_core(t);
    j.samples = M;
    j.actions = act;
    j.x = x;
    if (!act && !x) {
        if (t->type == GS_CATEGORICAL) j.rng = &nz.rng;
        else j.noise = &nz;
    }
    j.f = f;
    j.baseline = bl;
    j.value = r.value;
    j.grad = r.grad;
    if (M >= 2) {
        j.se_value = r.se_value = calloc(t->B, sizeof(double));
        j.se_grad = r.se_grad = pgrad_new(t);
    }
    gs_error e;
    ck_assert_int_eq(gs_score(&j, 0, t->B, &e), 0);
    return r;
}

static void score_ref_free(score_ref *r) {
    free(r->value);
    free(r->se_value);
    pgrad_free(&r->grad);
    pgrad_free(&r->se_grad);
}

static void expect_score(json_t *j, const tdist *t, size_t M, const score_ref *r,
                         long long seed, int single) {
    const char *k[6];
    int n = 0;
    if (seed >= 0) k[n++] = "seed";
    k[n++] = "value";
    k[n++] = "grad";
    if (M >= 2) k[n++] = "stderr";
    k[n] = NULL;
    expect_keys(j, k);
    if (seed >= 0) ck_assert(json_integer_value(json_object_get(j, "seed")) == seed);
    size_t B = t->B;
    expect_at(j, "value", r->value, NULL, single ? 0 : 1, &B);
    expect_pgrad(json_object_get(j, "grad"), t, &r->grad, single, "grad");
    if (M >= 2) {
        const char *ks[] = {"value", "grad", NULL};
        expect_keys(json_object_get(j, "stderr"), ks);
        expect_at(j, "stderr.value", r->se_value, NULL, single ? 0 : 1, &B);
        expect_pgrad(jget(j, "stderr.grad"), t, &r->se_grad, single, "stderr.grad");
    }
}

START_TEST(score_matches_core) {
    struct { gs_dist_type type; int sigma, bounds; } cases[] = {
        {GS_CATEGORICAL, 0, 0}, {GS_NORMAL, 0, 0}, {GS_NORMAL, 1, 0},
        {GS_TANH_NORMAL, 0, 1}, {GS_TANH_NORMAL, 1, 0}};
    size_t Ms[] = {1, 4};
    for (size_t c = 0; c < 5; c++)
        for (int src = 0; src < 4; src++)     /* x, eps, seed + samples, seed alone */
            for (size_t mi = 0; mi < 2; mi++)
                for (int bl = 0; bl < 2; bl++) {
                    int cat = cases[c].type == GS_CATEGORICAL;
                    if (cat && src == 1) continue;
                    size_t M = Ms[mi];
                    if (!bl && M < 2) continue; /* loo needs two: below */
                    tdist t = tdist_make(cases[c].type, 3, 3, 300 + c, cases[c].sigma,
                                         cases[c].bounds);
                    uint64_t st = 11 + c * 100 + (uint64_t)src * 10 + mi;
                    size_t n = t.B * M, dims[3] = {t.B, M, t.D};
                    int64_t *act = NULL;
                    double *x = NULL, *eps = NULL;
                    sb s = {0};
                    sb_printf(&s, "{\"distribution\":");
                    sb_tdist(&s, &t, 0);
                    if (src == 0 && cat) {
                        act = malloc(n * sizeof *act);
                        for (size_t k = 0; k < n; k++)
                            act[k] = (int64_t)(rnd(&st, 0, 1) * (double)t.D);
                        sb_printf(&s, ",\"x\":");
                        sb_arr(&s, NULL, act, 2, dims);
                    } else if (src == 0) {
                        x = malloc(n * t.D * sizeof *x);
                        for (size_t k = 0; k < n * t.D; k++) {
                            double lo = t.low ? t.low[k % t.D] : -1,
                                   hi = t.low ? t.high[k % t.D] : 1;
                            x[k] = t.type == GS_NORMAL ? rnd(&st, -3, 3)
                                                       : lo + (hi - lo) * rnd(&st, 0.02, 0.98);
                        }
                        sb_printf(&s, ",\"x\":");
                        sb_arr(&s, x, NULL, 3, dims);
                    } else if (src == 1) {
                        eps = rnd_fill(&st, n * t.D, -2, 2);
                        sb_printf(&s, ",\"eps\":");
                        sb_arr(&s, eps, NULL, 3, dims);
                    }
                    long long seed = src >= 2 ? 555 + (long long)c : -1;
                    if (seed >= 0) sb_printf(&s, ",\"seed\":%lld", seed);
                    if (src == 2) sb_printf(&s, ",\"samples\":%zu", M);
                    double *f = rnd_fill(&st, n, -5, 5);
                    sb_printf(&s, ",\"f\":");
                    sb_arr(&s, f, NULL, 2, dims);
                    sb_printf(&s, "%s}", bl ? ",\"baseline\":\"none\"" : "");
                    char *b = sb_take(&s);
                    resp r = call("score", b);
                    expect_ok(r);
                    score_ref ref = score_ref_run(&t, M, act, x, eps,
                                                  (uint64_t)(seed < 0 ? 0 : seed), f,
                                                  bl ? GS_BASELINE_NONE : GS_BASELINE_LOO);
                    expect_score(r.j, &t, M, &ref, seed, 0);
                    score_ref_free(&ref);
                    resp_free(&r);
                    free(b);
                    free(act);
                    free(x);
                    free(eps);
                    free(f);
                    tdist_free(&t);
                }
}
END_TEST

/* A seed's draws are /v1/sample's: the categorical actions it returns as
 * x, or the continuous eps, give the same body but for "seed". */
START_TEST(score_seed_is_the_sample_draws) {
    gs_dist_type types[] = {GS_CATEGORICAL, GS_NORMAL, GS_TANH_NORMAL};
    for (int k = 0; k < 3; k++) {
        tdist t = tdist_make(types[k], 3, 4, 310 + k, 0, 1);
        size_t M = 6, dims[2] = {t.B, M};
        uint64_t st = 3, seed = 8080;
        double *f = rnd_fill(&st, t.B * M, -1, 1);
        sb s = {0};
        sb_printf(&s, "{\"distribution\":");
        sb_tdist(&s, &t, 0);
        sb_printf(&s, ",\"samples\":%zu,\"seed\":%llu}", M, (unsigned long long)seed);
        char *sbody = sb_take(&s);
        resp smp = call("sample", sbody);
        expect_ok(smp);
        const char *key = types[k] == GS_CATEGORICAL ? "samples" : "eps";
        char *draws = json_dumps(json_object_get(smp.j, key), JSON_COMPACT | JSON_REAL_PRECISION(17));
        sb_printf(&s, "{\"distribution\":");
        sb_tdist(&s, &t, 0);
        sb_printf(&s, ",\"%s\":%s,\"f\":", types[k] == GS_CATEGORICAL ? "x" : "eps", draws);
        sb_arr(&s, f, NULL, 2, dims);
        sb_printf(&s, "}");
        char *bd = sb_take(&s);
        sb_printf(&s, "{\"distribution\":");
        sb_tdist(&s, &t, 0);
        sb_printf(&s, ",\"seed\":%llu,\"f\":", (unsigned long long)seed);
        sb_arr(&s, f, NULL, 2, dims);
        sb_printf(&s, "}");
        char *bs = sb_take(&s);
        resp rd = call("score", bd), rs = call("score", bs);
        expect_ok(rd);
        expect_ok(rs);
        char *want = fmt("{\"seed\":%llu,%s", (unsigned long long)seed, rd.body + 1);
        ck_assert_str_eq(rs.body, want);
        free(want);
        resp_free(&rd);
        resp_free(&rs);
        free(bd);
        free(bs);
        free(draws);
        resp_free(&smp);
        free(sbody);
        free(f);
        tdist_free(&t);
    }
}
END_TEST

START_TEST(score_single_row) {
    const char *pairs[][2] = {
        {"{\"distribution\":{\"type\":\"categorical\",\"logits\":[0.5,1,2]},\"x\":[0,2,2,1],"
         "\"f\":[1,2,3,4.5]}",
         "{\"distribution\":{\"type\":\"categorical\",\"logits\":[[0.5,1,2]]},\"x\":[[0,2,2,1]],"
         "\"f\":[[1,2,3,4.5]]}"},
        {"{\"distribution\":{\"type\":\"normal\",\"loc\":[0.5,1],\"log_scale\":[0,-1]},\"seed\":4,"
         "\"f\":[1,2,3]}",
         "{\"distribution\":{\"type\":\"normal\",\"loc\":[[0.5,1]],\"log_scale\":[[0,-1]]},\"seed\":4,"
         "\"f\":[[1,2,3]]}"},
        {"{\"distribution\":{\"type\":\"tanh_normal\",\"loc\":[0.5,1],\"scale\":[1,2]},"
         "\"eps\":[[0.1,0.2],[0.3,-1]],\"f\":[1,2],\"baseline\":\"none\"}",
         "{\"distribution\":{\"type\":\"tanh_normal\",\"loc\":[[0.5,1]],\"scale\":[[1,2]]},"
         "\"eps\":[[[0.1,0.2],[0.3,-1]]],\"f\":[[1,2]],\"baseline\":\"none\"}"},
        {"{\"distribution\":{\"type\":\"tanh_normal\",\"loc\":[0.5,1],\"scale\":[1,2]},"
         "\"x\":[[0.1,0.2],[0.3,-0.5]],\"f\":[1,2]}",
         "{\"distribution\":{\"type\":\"tanh_normal\",\"loc\":[[0.5,1]],\"scale\":[[1,2]]},"
         "\"x\":[[[0.1,0.2],[0.3,-0.5]]],\"f\":[[1,2]]}"}};
    for (int k = 0; k < 4; k++) {
        resp s = call("score", pairs[k][0]), b = call("score", pairs[k][1]);
        expect_ok(s);
        expect_ok(b);
        ck_assert(json_is_number(json_object_get(s.j, "value")));
        expect_single_of(s.j, b.j, "score");
        resp_free(&s);
        resp_free(&b);
    }
    call_error("score", "{\"distribution\":{\"type\":\"categorical\",\"logits\":[0.5,1,2]},"
                        "\"x\":[0,2],\"f\":[[1,2]]}", 400, "invalid_argument", "f");
    call_error("score", "{\"distribution\":{\"type\":\"categorical\",\"logits\":[0.5,1,2]},"
                        "\"x\":[[0,2]],\"f\":[1,2]}", 400, "invalid_argument", "x");
}
END_TEST

START_TEST(score_errors) {
    const char *c = "{\"type\":\"categorical\",\"logits\":[[0,1,2]]}";
    const char *n = "{\"type\":\"normal\",\"loc\":[[0,1]],\"log_scale\":[[0,0]]}";
    char b[512];
    /* exactly one of x, eps, seed: the second one sent is named, x when none */
    snprintf(b, sizeof b, "{\"distribution\":%s,\"x\":[[[0,0]]],\"eps\":[[[0,0]]],\"f\":[[1]]}", n);
    call_error("score", b, 400, "invalid_argument", "eps");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"x\":[[[0,0]]],\"seed\":1,\"f\":[[1]]}", n);
    call_error("score", b, 400, "invalid_argument", "seed");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"eps\":[[[0,0]]],\"seed\":1,\"f\":[[1]]}", n);
    call_error("score", b, 400, "invalid_argument", "seed");
    snprintf(b, sizeof b, "{\"seed\":1,\"eps\":[[[0,0]]],\"distribution\":%s,\"x\":[[[0,0]]],\"f\":[[1]]}", n);
    call_error("score", b, 400, "invalid_argument", "eps");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"f\":[[1]]}", n);
    call_error("score", b, 400, "invalid_argument", "x");
    /* eps with a categorical */
    snprintf(b, sizeof b, "{\"distribution\":%s,\"eps\":[[[0,0]]],\"f\":[[1]]}", c);
    call_error("score", b, 400, "invalid_argument", "eps");
    /* f must match the draws */
    snprintf(b, sizeof b, "{\"distribution\":%s,\"x\":[[0,1,2]],\"f\":[[1,2]],\"baseline\":\"none\"}", c);
    call_error("score", b, 400, "invalid_argument", "f[0]");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"x\":[[0,1,2]],\"f\":[[1,2,3],[1,2,3]]}", c);
    call_error("score", b, 400, "invalid_argument", "f");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"eps\":[[[0,0],[1,1]]],\"f\":[[1,2,3]]}", n);
    call_error("score", b, 400, "invalid_argument", "f[0]");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"x\":[[0,1,2]]}", c);
    call_error("score", b, 400, "invalid_argument", "f");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"seed\":2,\"samples\":3,\"f\":[[1,2]]}", c);
    call_error("score", b, 400, "invalid_argument", "samples");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"x\":[[0,1,2]],\"samples\":2,\"f\":[[1,2,3]]}", c);
    call_error("score", b, 400, "invalid_argument", "samples");
    /* loo needs two draws */
    snprintf(b, sizeof b, "{\"distribution\":%s,\"x\":[[2]],\"f\":[[1]]}", c);
    call_error("score", b, 400, "invalid_argument", "baseline");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"seed\":1,\"samples\":1,\"f\":[[1]]}", n);
    call_error("score", b, 400, "invalid_argument", "samples");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"x\":[[2]],\"f\":[[1]],\"baseline\":\"none\"}", c);
    resp r = call("score", b);
    expect_ok(r);
    ck_assert_ptr_null(json_object_get(r.j, "stderr"));
    resp_free(&r);
    /* actions out of range, non-integer; x outside a tanh_normal's support */
    snprintf(b, sizeof b, "{\"distribution\":%s,\"x\":[[0,3]],\"f\":[[1,2]]}", c);
    call_error("score", b, 400, "invalid_argument", "x[0][1]");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"x\":[[0,1.5]],\"f\":[[1,2]]}", c);
    call_error("score", b, 400, "invalid_argument", "x[0][1]");
    call_error("score", "{\"distribution\":{\"type\":\"tanh_normal\",\"loc\":[0],\"log_scale\":[0]},"
                        "\"x\":[[0.5],[1]],\"f\":[1,2]}", 400, "invalid_argument", "x[1][0]");
    /* non-finite results */
    snprintf(b, sizeof b, "{\"distribution\":%s,\"x\":[[0,1]],\"f\":[[1e308,1e308]]}", c);
    call_error("score", b, 400, "invalid_argument", "f[0]");
    call_error("score", "{\"distribution\":{\"type\":\"normal\",\"loc\":[[0,0]],\"log_scale\":[[0,-800]]},"
                        "\"seed\":1,\"f\":[[1,2]]}", 400, "invalid_argument",
               "distribution.log_scale[0][1]");
    call_error("score", "{\"distribution\":{\"type\":\"normal\",\"loc\":[[0,0]],\"log_scale\":[[0,0]]},"
                        "\"eps\":[[[0,1],[1,-1e200]]],\"f\":[[1,2]]}", 400, "invalid_argument",
               "eps[0][1][1]");
    call_error("score", "{\"distribution\":{\"type\":\"tanh_normal\",\"loc\":[0],\"log_scale\":[0]},"
                        "\"eps\":[[1e155],[1]],\"f\":[1,2]}", 400, "invalid_argument", "eps[0][0]");
    call_error("score", "{\"distribution\":{\"type\":\"normal\",\"loc\":[0],\"log_scale\":[-800]},"
                        "\"x\":[[1],[2]],\"f\":[1,2]}", 400, "invalid_argument",
               "distribution.log_scale[0]");
}
END_TEST

/* ==== threads and base64 output ======================================================= */

START_TEST(split_and_base64) {
    tdist t = tdist_make(GS_TANH_NORMAL, 40, 3, 400, 0, 1);
    size_t M = 8;
    uint64_t st = 77;
    double *gx = rnd_fill(&st, t.B * M * t.D, -1, 1), *glp = rnd_fill(&st, t.B * M, -1, 1);
    double *f = rnd_fill(&st, t.B * M, -1, 1);
    char *b1 = reparam_body(&t, 0, M, NULL, 12, 1, gx, glp);
    resp r = expect_parallel_identical("reparam", b1);
    expect_ok(r);
    resp_free(&r);
    expect_b64_matches("reparam", b1);
    size_t dims[2] = {t.B, M};
    sb s = {0};
    sb_printf(&s, "{\"distribution\":");
    sb_tdist(&s, &t, 0);
    sb_printf(&s, ",\"seed\":3,\"f\":");
    sb_arr(&s, f, NULL, 2, dims);
    sb_printf(&s, "}");
    char *b2 = sb_take(&s);
    r = expect_parallel_identical("score", b2);
    expect_ok(r);
    resp_free(&r);
    expect_b64_matches("score", b2);
    tdist c = tdist_make(GS_CATEGORICAL, 40, 5, 401, 0, 0);
    sb_printf(&s, "{\"distribution\":");
    sb_tdist(&s, &c, 0);
    sb_printf(&s, ",\"seed\":3,\"f\":");
    sb_arr(&s, f, NULL, 2, dims);
    sb_printf(&s, "}");
    char *b3 = sb_take(&s);
    r = expect_parallel_identical("score", b3);
    expect_ok(r);
    resp_free(&r);
    expect_b64_matches("score", b3);
    /* split across workers, a failure still names the lowest failing row */
    tdist n = tdist_make(GS_NORMAL, 40, 2, 402, 0, 0);
    double *gx2 = rnd_fill(&st, n.B * 2 * n.D, -1, 1);
    for (size_t k = 0; k < 2 * n.D; k++) {
        gx2[33 * 2 * n.D + k] = 1e308;
        gx2[17 * 2 * n.D + k] = -1e308;
    }
    char *b4 = reparam_body(&n, 0, 2, NULL, 5, 0, gx2, NULL);
    r = expect_parallel_identical("reparam", b4);
    expect_error(r, 400, "invalid_argument", "grad_x[17]");
    resp_free(&r);
    free(b4);
    free(gx2);
    tdist_free(&n);
    /* single-row base64: per-row scalars stay plain numbers */
    expect_b64_matches("score", "{\"distribution\":{\"type\":\"categorical\",\"logits\":[0.5,1,2]},"
                                "\"x\":[0,2,2,1],\"f\":[1,2,3,4.5]}");
    expect_b64_matches("reparam", "{\"distribution\":{\"type\":\"normal\",\"loc\":[0.5],"
                                  "\"log_scale\":[0.1]},\"eps\":[[0.3],[2]],\"grad_x\":[[1],[2]]}");
    free(b1);
    free(b2);
    free(b3);
    free(gx);
    free(glp);
    free(f);
    tdist_free(&t);
    tdist_free(&c);
}
END_TEST

int main(void) {
    Suite *s = suite_create("api_grad");
    TCase *tc = tcase_create("reparam");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, reparam_matches_core);
    tcase_add_test(tc, reparam_seed_is_the_sample_noise);
    tcase_add_test(tc, reparam_single_row);
    tcase_add_test(tc, reparam_errors);
    tcase_add_test(tc, reparam_nonfinite_names_the_input);
    suite_add_tcase(s, tc);
    tc = tcase_create("score");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, score_matches_core);
    tcase_add_test(tc, score_seed_is_the_sample_draws);
    tcase_add_test(tc, score_single_row);
    tcase_add_test(tc, score_errors);
    tcase_add_test(tc, split_and_base64);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
