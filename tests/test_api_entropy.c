/* test_api_entropy.c - the api layer's /v1/entropy, /v1/sample and /v1/log_prob against the core, with their errors and seeds. */
#include "test_api_util.h"

/* ==== references from the core ================================================= */

typedef struct {
    double *entropy, *se_entropy;
    gs_pgrad grad, se_grad;
} ent_ref;

/* gs_entropy on t, as the api should call it for (est, baseline, M, seed);
 * eps, when not NULL, is the noise instead of the seed's. */
static ent_ref entropy_ref(const tdist *t, gs_estimator est, gs_baseline bl, size_t M,
                           uint64_t seed, const double *eps) {
    ent_ref r = {calloc(t->B, sizeof(double)), NULL, pgrad_new(t), {0}};
    gs_entropy_job j = {0};
    j.dist = tdist_core(t);
    j.estimator = est;
    j.baseline = bl;
    j.samples = est == GS_EST_EXACT ? 1 : M;
    gs_rng_init(&j.rng, seed);
    j.noise.rng = j.rng;
    j.noise.eps = eps;
    j.entropy = r.entropy;
    j.grad = r.grad;
    if (est != GS_EST_EXACT && M >= 2) {
        r.se_entropy = calloc(t->B, sizeof(double));
        r.se_grad = pgrad_new(t);
        j.se_entropy = r.se_entropy;
        j.se_grad = r.se_grad;
    }
    gs_error e;
    ck_assert_int_eq(gs_entropy(&j, 0, t->B, &e), 0);
    return r;
}

static void ent_ref_free(ent_ref *r) {
    free(r->entropy);
    free(r->se_entropy);
    pgrad_free(&r->grad);
    pgrad_free(&r->se_grad);
}

static const char *const EST[] = {"auto", "exact", "score", "reparam"};

static char *entropy_body(const tdist *t, int single, const char *extra) {
    sb s = {0};
    sb_printf(&s, "{\"distribution\":");
    sb_tdist(&s, t, single);
    sb_printf(&s, "%s}", extra);
    return sb_take(&s);
}

/* Asserts an /v1/entropy response against the reference, keys included. */
static void expect_entropy(json_t *j, const tdist *t, const char *est, const ent_ref *r,
                           size_t M, uint64_t seed, int single) {
    int mc = strcmp(est, "exact") != 0;
    ck_assert_str_eq(json_string_value(json_object_get(j, "estimator")), est);
    if (mc) {
        ck_assert_int_eq(json_integer_value(json_object_get(j, "samples")), (json_int_t)M);
        ck_assert_int_eq(json_integer_value(json_object_get(j, "seed")), (json_int_t)seed);
    }
    const char *k_exact[] = {"estimator", "entropy", "grad", NULL};
    const char *k_mc1[] = {"estimator", "samples", "seed", "entropy", "grad", NULL};
    const char *k_mc[] = {"estimator", "samples", "seed", "entropy", "grad", "stderr", NULL};
    expect_keys(j, !mc ? k_exact : M >= 2 ? k_mc : k_mc1);
    size_t B = t->B;
    expect_arr(json_object_get(j, "entropy"), r->entropy, NULL, single ? 0 : 1, &B, "entropy");
    expect_pgrad(json_object_get(j, "grad"), t, &r->grad, single, "grad");
    if (mc && M >= 2) {
        json_t *se = json_object_get(j, "stderr");
        const char *k_se[] = {"entropy", "grad", NULL};
        expect_keys(se, k_se);
        expect_arr(json_object_get(se, "entropy"), r->se_entropy, NULL, single ? 0 : 1, &B,
                   "stderr.entropy");
        expect_pgrad(json_object_get(se, "grad"), t, &r->se_grad, single, "stderr.grad");
    }
}

/* ==== /v1/entropy ================================================================ */

START_TEST(entropy_exact_matches_core) {
    struct { gs_dist_type type; int sigma; } cases[] = {
        {GS_CATEGORICAL, 0}, {GS_NORMAL, 0}, {GS_NORMAL, 1}};
    for (size_t c = 0; c < 3; c++)
        for (int e = 0; e < 2; e++) { /* "auto" and "exact" */
            tdist t = tdist_make(cases[c].type, 3, 4, 10 + c, cases[c].sigma, 0);
            char *body = entropy_body(&t, 0,
                                      e ? ",\"estimator\":\"exact\",\"samples\":3" : "");
            resp r = call("entropy", body);
            expect_ok(r);
            ent_ref ref = entropy_ref(&t, GS_EST_EXACT, GS_BASELINE_LOO, 1, 0, NULL);
            expect_entropy(r.j, &t, "exact", &ref, 1, 0, 0);
            ent_ref_free(&ref);
            resp_free(&r);
            free(body);
            tdist_free(&t);
        }
}
END_TEST

START_TEST(entropy_monte_carlo_matches_core) {
    struct { gs_dist_type type; int sigma, bounds; gs_estimator est; } cases[] = {
        {GS_CATEGORICAL, 0, 0, GS_EST_SCORE}, {GS_NORMAL, 0, 0, GS_EST_SCORE},
        {GS_NORMAL, 1, 0, GS_EST_REPARAM},    {GS_NORMAL, 0, 0, GS_EST_REPARAM},
        {GS_TANH_NORMAL, 0, 1, GS_EST_REPARAM}, {GS_TANH_NORMAL, 1, 0, GS_EST_SCORE},
        {GS_TANH_NORMAL, 0, 0, GS_EST_SCORE},   {GS_TANH_NORMAL, 1, 1, GS_EST_REPARAM}};
    size_t Ms[] = {1, 2, 7};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (size_t mi = 0; mi < 3; mi++)
            for (int bl = 0; bl < 2; bl++) {
                size_t M = Ms[mi];
                gs_estimator est = cases[c].est;
                if (est == GS_EST_SCORE && bl == 0 && M < 2) continue; /* a 400, below */
                tdist t = tdist_make(cases[c].type, 3, 3, 20 + c, cases[c].sigma,
                                     cases[c].bounds);
                uint64_t seed = 1000 + 7 * c + mi;
                char extra[160];
                snprintf(extra, sizeof extra,
                         ",\"estimator\":\"%s\",\"samples\":%zu,\"seed\":%llu%s", EST[est], M,
                         (unsigned long long)seed, bl ? ",\"baseline\":\"none\"" : "");
                char *body = entropy_body(&t, 0, extra);
                resp r = call("entropy", body);
                expect_ok(r);
                ent_ref ref = entropy_ref(&t, est, bl ? GS_BASELINE_NONE : GS_BASELINE_LOO, M,
                                          seed, NULL);
                expect_entropy(r.j, &t, EST[est], &ref, M, seed, 0);
                ck_assert_uint_eq(r.rows, 3);
                ck_assert_uint_eq(r.samples, 3 * M);
                ent_ref_free(&ref);
                resp_free(&r);
                free(body);
                tdist_free(&t);
            }
}
END_TEST

/* auto is exact for categorical and normal, reparam for tanh_normal, with
 * 64 samples by default. */
START_TEST(entropy_auto_and_defaults) {
    tdist t = tdist_make(GS_TANH_NORMAL, 2, 2, 5, 0, 1);
    char *body = entropy_body(&t, 0, ",\"seed\":42");
    resp r = call("entropy", body);
    expect_ok(r);
    ent_ref ref = entropy_ref(&t, GS_EST_REPARAM, GS_BASELINE_LOO, 64, 42, NULL);
    expect_entropy(r.j, &t, "reparam", &ref, 64, 42, 0);
    ent_ref_free(&ref);
    resp_free(&r);
    free(body);
    /* score defaults to the loo baseline */
    body = entropy_body(&t, 0, ",\"seed\":42,\"estimator\":\"score\",\"samples\":5");
    r = call("entropy", body);
    expect_ok(r);
    ref = entropy_ref(&t, GS_EST_SCORE, GS_BASELINE_LOO, 5, 42, NULL);
    expect_entropy(r.j, &t, "score", &ref, 5, 42, 0);
    ent_ref_free(&ref);
    resp_free(&r);
    free(body);
    tdist_free(&t);
}
END_TEST

START_TEST(entropy_unsupported_and_bad_arguments) {
    const char *tanh = "{\"type\":\"tanh_normal\",\"loc\":[[0.0,1.0]],\"scale\":[[0.3,1.2]]}";
    const char *cat = "{\"type\":\"categorical\",\"logits\":[[0.1,2.0,-1.0]]}";
    char b[512];
    snprintf(b, sizeof b, "{\"distribution\":%s,\"estimator\":\"exact\"}", tanh);
    call_error("entropy", b, 422, "unsupported", "estimator");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"estimator\":\"reparam\"}", cat);
    call_error("entropy", b, 422, "unsupported", "estimator");
    /* loo needs two samples */
    snprintf(b, sizeof b, "{\"distribution\":%s,\"estimator\":\"score\",\"samples\":1}", cat);
    call_error("entropy", b, 400, "invalid_argument", "samples");
    /* fields that do not apply are still checked (API.md §11) */
    snprintf(b, sizeof b, "{\"distribution\":%s,\"estimator\":\"exact\",\"samples\":-5}", cat);
    call_error("entropy", b, 400, "invalid_argument", "samples");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"estimator\":\"exact\",\"baseline\":\"mean\"}", cat);
    call_error("entropy", b, 400, "invalid_argument", "baseline");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"estimator\":\"exact\",\"seed\":-1}", cat);
    call_error("entropy", b, 400, "invalid_argument", "seed");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"samples\":0,\"estimator\":\"score\"}", cat);
    call_error("entropy", b, 400, "invalid_argument", "samples");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"estimator\":\"naive\"}", cat);
    call_error("entropy", b, 400, "invalid_argument", "estimator");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"estimator\":\"score\",\"samples\":2.5}", cat);
    call_error("entropy", b, 400, "invalid_argument", "samples");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"samples\":4,\"bogus\":1}", cat);
    call_error("entropy", b, 400, "invalid_argument", "bogus");
    /* baseline none with one sample: fine, and no stderr */
    snprintf(b, sizeof b, "{\"distribution\":%s,\"estimator\":\"score\",\"samples\":1,"
             "\"baseline\":\"none\",\"seed\":3}", cat);
    resp r = call("entropy", b);
    expect_ok(r);
    ck_assert_ptr_null(json_object_get(r.j, "stderr"));
    resp_free(&r);
    /* baseline with reparam is accepted and ignored */
    snprintf(b, sizeof b, "{\"distribution\":%s,\"estimator\":\"reparam\",\"samples\":3,"
             "\"baseline\":\"none\",\"seed\":3}", tanh);
    resp r1 = call("entropy", b);
    snprintf(b, sizeof b, "{\"distribution\":%s,\"estimator\":\"reparam\",\"samples\":3,"
             "\"seed\":3}", tanh);
    resp r2 = call("entropy", b);
    expect_ok(r1);
    expect_same_body(r1, r2);
    resp_free(&r1);
    resp_free(&r2);
}
END_TEST

/* A tanh_normal whose exp(log_scale) overflows makes the entropy infinite:
 * a 400 naming that log_scale (API.md §11), for either estimator. */
START_TEST(entropy_nonfinite_names_the_input) {
    const char *ests[] = {"score", "reparam"};
    for (int e = 0; e < 2; e++) {
        char *b = fmt("{\"distribution\":{\"type\":\"tanh_normal\",\"loc\":[[0,0],[0,0]],"
                      "\"log_scale\":[[0,0],[0,800]]},\"estimator\":\"%s\",\"samples\":4,"
                      "\"seed\":1}", ests[e]);
        call_error("entropy", b, 400, "invalid_argument", "distribution.log_scale[1][1]");
        free(b);
    }
    /* an underflowing scale: sigma = 0 makes the score eps / sigma infinite */
    call_error("entropy",
               "{\"distribution\":{\"type\":\"normal\",\"loc\":[0,0],\"log_scale\":[0,-800]},"
               "\"estimator\":\"score\",\"samples\":4,\"seed\":1}",
               400, "invalid_argument", "distribution.log_scale[1]");
    call_error("entropy",
               "{\"distribution\":{\"type\":\"normal\",\"loc\":[[0,0]],\"scale\":[[1,1e-320]]}}",
               400, "invalid_argument", "distribution.scale[0][1]");
    /* Standard errors that overflow while exp(log_scale) does not: the
     * scale is named, not loc (found by an audit). */
    call_error("entropy",
               "{\"distribution\":{\"type\":\"normal\",\"loc\":[[0,0]],\"log_scale\":[[0,-400]]},"
               "\"estimator\":\"score\",\"samples\":4,\"seed\":1}",
               400, "invalid_argument", "distribution.log_scale[0][1]");
    call_error("entropy",
               "{\"distribution\":{\"type\":\"tanh_normal\",\"loc\":[[0]],\"log_scale\":[[356]]},"
               "\"samples\":4,\"seed\":1}",
               400, "invalid_argument", "distribution.log_scale[0][0]");
    call_error("entropy",
               "{\"distribution\":{\"type\":\"tanh_normal\",\"loc\":[0,0],\"log_scale\":[0,356]},"
               "\"samples\":4,\"seed\":1}",
               400, "invalid_argument", "distribution.log_scale[1]");
    /* a tanh u past the largest double through the scale, not loc */
    call_error("sample",
               "{\"distribution\":{\"type\":\"tanh_normal\",\"loc\":[0],\"log_scale\":[709.7]},"
               "\"samples\":4,\"seed\":1}",
               400, "invalid_argument", "distribution.log_scale[0]");
    call_error("sac/continuous/actor",
               "{\"distribution\":{\"type\":\"tanh_normal\",\"loc\":[0],\"log_scale\":[356]},"
               "\"alpha\":1,\"seed\":1,\"samples\":2,\"dq_da\":[[1],[1]]}",
               400, "invalid_argument", "distribution.log_scale[0]");
    /* Logits spread wider than the largest double: the p that underflows
     * adds 0 log 0 = 0 (MATH.md §2), so the exact answer is finite, H = 0
     * and a zero gradient, on the actor too (L = -Q of the certain action);
     * the policy's log_probs would hold -inf: a 400 naming that q. */
    {
        resp r = call("entropy", "{\"distribution\":{\"type\":\"categorical\","
                                 "\"logits\":[[1,2],[1e308,-1e308]]}}");
        expect_ok(r);
        ck_assert(json_number_value(json_array_get(json_object_get(r.j, "entropy"), 1)) == 0.0);
        json_t *g1 = json_array_get(jget(r.j, "grad.logits"), 1);
        for (size_t i = 0; i < 2; i++) ck_assert(json_number_value(json_array_get(g1, i)) == 0.0);
        resp_free(&r);
        r = call("sac/discrete/actor", "{\"logits\":[1e308,-1e308],\"q\":[1,1],\"alpha\":1}");
        expect_ok(r);
        ck_assert(json_number_value(json_object_get(r.j, "loss")) == -1.0);
        resp_free(&r);
    }
    call_error("sac/discrete/policy", "{\"q\":[[1,2],[1e308,-1e308]],\"alpha\":1}",
               400, "invalid_argument", "q[1][1]");
}
END_TEST

/* The single-row form: 1-D parameters, per-row outputs drop the batch axis. */
START_TEST(entropy_single_row) {
    const char *extras[] = {"", ",\"estimator\":\"score\",\"samples\":6,\"seed\":9",
                            ",\"estimator\":\"reparam\",\"samples\":1,\"seed\":9"};
    gs_dist_type types[] = {GS_CATEGORICAL, GS_NORMAL, GS_TANH_NORMAL};
    for (int k = 0; k < 3; k++)
        for (int e = 0; e < 3; e++) {
            if (types[k] == GS_CATEGORICAL && e == 2) continue;
            tdist t = tdist_make(types[k], 1, 3, 30 + k, k == 2, k == 2);
            const char *extra = types[k] == GS_TANH_NORMAL && e == 0
                                    ? ",\"seed\":9,\"samples\":3" : extras[e];
            char *b1 = entropy_body(&t, 1, extra), *b2 = entropy_body(&t, 0, extra);
            resp single = call("entropy", b1), batched = call("entropy", b2);
            expect_ok(single);
            expect_ok(batched);
            ck_assert(json_is_number(json_object_get(single.j, "entropy")));
            expect_single_of(single.j, batched.j, "entropy");
            resp_free(&single);
            resp_free(&batched);
            free(b1);
            free(b2);
            tdist_free(&t);
        }
    /* a mix of 1-D and 2-D parameters is a 400 naming the later one */
    call_error("entropy",
               "{\"distribution\":{\"type\":\"normal\",\"loc\":[0,1],\"log_scale\":[[0,1]]}}",
               400, "invalid_argument", "distribution.log_scale");
    call_error("entropy",
               "{\"distribution\":{\"type\":\"normal\",\"loc\":[0,1],\"log_scale\":[[0],[1]]}}",
               400, "invalid_argument", "distribution.log_scale[0]");
    call_error("entropy",
               "{\"distribution\":{\"type\":\"normal\",\"loc\":[[0,1]],\"log_scale\":[0,1]}}",
               400, "invalid_argument", "distribution.log_scale");
    call_error("entropy",
               "{\"distribution\":{\"type\":\"normal\",\"loc\":[[0,1],[2,3]],\"log_scale\":[0,1]}}",
               400, "invalid_argument", "distribution.log_scale[0]");
}
END_TEST

/* ==== /v1/sample ===================================================================== */

typedef struct {
    int64_t *actions;
    double *x, *eps, *log_prob;
} sample_ref;

static sample_ref sample_core(const tdist *t, size_t M, uint64_t seed) {
    size_t n = t->B * M;
    sample_ref r = {NULL, NULL, NULL, calloc(n, sizeof(double))};
    gs_sample_job j = {0};
    j.dist = tdist_core(t);
    j.samples = M;
    gs_rng_init(&j.rng, seed);
    j.log_prob = r.log_prob;
    if (t->type == GS_CATEGORICAL) j.actions = r.actions = calloc(n, sizeof(int64_t));
    else {
        j.x = r.x = calloc(n * t->D, sizeof(double));
        j.eps = r.eps = calloc(n * t->D, sizeof(double));
    }
    gs_error e;
    ck_assert_int_eq(gs_sample(&j, 0, t->B, &e), 0);
    return r;
}

static void sample_ref_free(sample_ref *r) {
    free(r->actions);
    free(r->x);
    free(r->eps);
    free(r->log_prob);
}

static char *sample_body(const tdist *t, int single, size_t M, long long seed) {
    sb s = {0};
    sb_printf(&s, "{\"distribution\":");
    sb_tdist(&s, t, single);
    if (M) sb_printf(&s, ",\"samples\":%zu", M);
    if (seed >= 0) sb_printf(&s, ",\"seed\":%lld", seed);
    sb_printf(&s, "}");
    return sb_take(&s);
}

START_TEST(sample_matches_core) {
    struct { gs_dist_type type; int sigma, bounds; } cases[] = {
        {GS_CATEGORICAL, 0, 0}, {GS_NORMAL, 0, 0}, {GS_NORMAL, 1, 0},
        {GS_TANH_NORMAL, 0, 1}, {GS_TANH_NORMAL, 1, 0}};
    for (size_t c = 0; c < 5; c++)
        for (size_t M = 0; M <= 4; M += 4) { /* 0: the default, 1 */
            tdist t = tdist_make(cases[c].type, 3, 3, 40 + c, cases[c].sigma, cases[c].bounds);
            uint64_t seed = 77 + c;
            char *b = sample_body(&t, 0, M, (long long)seed);
            resp r = call("sample", b);
            expect_ok(r);
            size_t m = M ? M : 1;
            sample_ref ref = sample_core(&t, m, seed);
            size_t dims[3] = {t.B, m, t.D};
            int cat = t.type == GS_CATEGORICAL;
            const char *k_cat[] = {"seed", "samples", "log_prob", NULL};
            const char *k_cont[] = {"seed", "samples", "log_prob", "eps", NULL};
            expect_keys(r.j, cat ? k_cat : k_cont);
            ck_assert_int_eq(json_integer_value(json_object_get(r.j, "seed")), (json_int_t)seed);
            if (cat) expect_at(r.j, "samples", NULL, ref.actions, 2, dims);
            else {
                expect_at(r.j, "samples", ref.x, NULL, 3, dims);
                expect_at(r.j, "eps", ref.eps, NULL, 3, dims);
            }
            expect_at(r.j, "log_prob", ref.log_prob, NULL, 2, dims);
            /* tanh_normal draws lie in [low, high] */
            if (t.type == GS_TANH_NORMAL)
                for (size_t k = 0; k < t.B * m * t.D; k++) {
                    double lo = t.low ? t.low[k % t.D] : -1, hi = t.low ? t.high[k % t.D] : 1;
                    ck_assert(ref.x[k] >= lo && ref.x[k] <= hi);
                }
            sample_ref_free(&ref);
            resp_free(&r);
            free(b);
            tdist_free(&t);
        }
}
END_TEST

START_TEST(sample_single_row_and_errors) {
    gs_dist_type types[] = {GS_CATEGORICAL, GS_NORMAL, GS_TANH_NORMAL};
    for (int k = 0; k < 3; k++) {
        tdist t = tdist_make(types[k], 1, 2, 50 + k, 0, 1);
        char *b1 = sample_body(&t, 1, 3, 5), *b2 = sample_body(&t, 0, 3, 5);
        resp s = call("sample", b1), bt = call("sample", b2);
        expect_ok(s);
        expect_ok(bt);
        expect_single_of(s.j, bt.j, "sample");
        resp_free(&s);
        resp_free(&bt);
        free(b1);
        free(b2);
        tdist_free(&t);
    }
    const char *d = "{\"type\":\"normal\",\"loc\":[0],\"log_scale\":[0]}";
    char b[256];
    snprintf(b, sizeof b, "{\"distribution\":%s,\"samples\":0}", d);
    call_error("sample", b, 400, "invalid_argument", "samples");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"seed\":9007199254740992}", d);
    call_error("sample", b, 400, "invalid_argument", "seed");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"seed\":1.5}", d);
    call_error("sample", b, 400, "invalid_argument", "seed");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"seed\":\"7\"}", d);
    call_error("sample", b, 400, "invalid_argument", "seed");
    snprintf(b, sizeof b, "{\"distribution\":%s,\"estimator\":\"exact\"}", d);
    call_error("sample", b, 400, "invalid_argument", "estimator");
    /* Bounds of +-1e308: high - low overflows, half of each does not, and
     * the draws stay finite inside them. Bounds too close to halve apart
     * are refused, naming high (found by an audit: loc was blamed). */
    {
        resp r = call("sample", "{\"distribution\":{\"type\":\"tanh_normal\",\"loc\":[0.5],"
                                "\"log_scale\":[0],\"low\":[-1e308],\"high\":[1e308]},"
                                "\"samples\":3,\"seed\":1}");
        expect_ok(r);
        json_t *eps = json_object_get(r.j, "eps"), *x = json_object_get(r.j, "samples");
        for (size_t m = 0; m < 3; m++) {
            double e = json_number_value(json_array_get(json_array_get(eps, m), 0));
            double v = json_number_value(json_array_get(json_array_get(x, m), 0));
            ck_assert_double_eq_tol(v, 1e308 * tanh(0.5 + e), 1e293);
            ck_assert(isfinite(json_number_value(json_array_get(json_object_get(r.j, "log_prob"), m))));
        }
        resp_free(&r);
    }
    call_error("sample", "{\"distribution\":{\"type\":\"tanh_normal\",\"loc\":[0,0],"
                         "\"log_scale\":[0,0],\"low\":[-1,0],\"high\":[1,5e-324]},\"seed\":1}",
               400, "invalid_argument", "distribution.high[1]");
    /* a scale whose exp over- or underflows is named, whatever the result
     * it spoils (the draws of a normal, the log-density of a tanh_normal) */
    call_error("sample", "{\"distribution\":{\"type\":\"normal\",\"loc\":[[0,0]],"
                         "\"log_scale\":[[0,800]]},\"seed\":1}",
               400, "invalid_argument", "distribution.log_scale[0][1]");
    call_error("sample", "{\"distribution\":{\"type\":\"tanh_normal\",\"loc\":[0,0],"
                         "\"log_scale\":[0,800]},\"seed\":1}",
               400, "invalid_argument", "distribution.log_scale[1]");
    /* the extreme seeds are accepted */
    snprintf(b, sizeof b, "{\"distribution\":%s,\"seed\":9007199254740991}", d);
    resp r = call("sample", b);
    expect_ok(r);
    ck_assert(json_integer_value(json_object_get(r.j, "seed")) == 9007199254740991LL);
    resp_free(&r);
    snprintf(b, sizeof b, "{\"distribution\":%s,\"seed\":0}", d);
    r = call("sample", b);
    expect_ok(r);
    resp_free(&r);
}
END_TEST

/* ==== /v1/log_prob ===================================================================== */

START_TEST(log_prob_matches_core) {
    struct { gs_dist_type type; int sigma, bounds; } cases[] = {
        {GS_CATEGORICAL, 0, 0}, {GS_NORMAL, 0, 0}, {GS_NORMAL, 1, 0},
        {GS_TANH_NORMAL, 0, 1}, {GS_TANH_NORMAL, 1, 0}};
    for (size_t c = 0; c < 5; c++) {
        tdist t = tdist_make(cases[c].type, 3, 4, 60 + c, cases[c].sigma, cases[c].bounds);
        size_t M = 3, n = t.B * M;
        int cat = t.type == GS_CATEGORICAL;
        uint64_t st = 99 + c;
        int64_t *act = NULL;
        double *x = NULL;
        size_t dims[3] = {t.B, M, t.D};
        sb s = {0};
        sb_printf(&s, "{\"distribution\":");
        sb_tdist(&s, &t, 0);
        sb_printf(&s, ",\"x\":");
        if (cat) {
            act = malloc(n * sizeof *act);
            for (size_t k = 0; k < n; k++) act[k] = (int64_t)(rnd(&st, 0, 1) * (double)t.D);
            sb_arr(&s, NULL, act, 2, dims);
        } else {
            x = malloc(n * t.D * sizeof *x);
            for (size_t k = 0; k < n * t.D; k++) {
                double lo = t.low ? t.low[k % t.D] : -1, hi = t.low ? t.high[k % t.D] : 1;
                x[k] = t.type == GS_NORMAL ? rnd(&st, -3, 3)
                                           : lo + (hi - lo) * rnd(&st, 0.02, 0.98);
            }
            sb_arr(&s, x, NULL, 3, dims);
        }
        sb_printf(&s, "}");
        char *b = sb_take(&s);
        resp r = call("log_prob", b);
        expect_ok(r);
        double *lp = calloc(n, sizeof *lp);
        gs_log_prob_job j = {0};
        j.dist = tdist_core(&t);
        j.samples = M;
        j.actions = act;
        j.x = x;
        j.log_prob = lp;
        j.grad = pgrad_new(&t);
        gs_error e;
        ck_assert_int_eq(gs_log_prob(&j, 0, t.B, &e), 0);
        const char *keys[] = {"log_prob", "grad", NULL};
        expect_keys(r.j, keys);
        expect_at(r.j, "log_prob", lp, NULL, 2, dims);
        expect_pgrad(json_object_get(r.j, "grad"), &t, &j.grad, 0, "grad");
        pgrad_free(&j.grad);
        free(lp);
        free(act);
        free(x);
        resp_free(&r);
        free(b);
        tdist_free(&t);
    }
}
END_TEST

START_TEST(log_prob_single_row_and_errors) {
    resp s = call("log_prob", "{\"distribution\":{\"type\":\"categorical\",\"logits\":[0.5,1,2]},"
                              "\"x\":[0,2,2,1]}");
    resp b = call("log_prob", "{\"distribution\":{\"type\":\"categorical\",\"logits\":[[0.5,1,2]]},"
                              "\"x\":[[0,2,2,1]]}");
    expect_ok(s);
    expect_ok(b);
    expect_single_of(s.j, b.j, "log_prob");
    resp_free(&s);
    resp_free(&b);
    s = call("log_prob", "{\"distribution\":{\"type\":\"tanh_normal\",\"loc\":[0.5,0],"
                         "\"scale\":[1,2],\"low\":[-1,0],\"high\":[1,3]},\"x\":[[0.2,1],[-0.5,2.5]]}");
    b = call("log_prob", "{\"distribution\":{\"type\":\"tanh_normal\",\"loc\":[[0.5,0]],"
                         "\"scale\":[[1,2]],\"low\":[-1,0],\"high\":[1,3]},\"x\":[[[0.2,1],[-0.5,2.5]]]}");
    expect_ok(s);
    expect_ok(b);
    expect_single_of(s.j, b.j, "log_prob");
    resp_free(&s);
    resp_free(&b);
    /* mixes */
    call_error("log_prob", "{\"distribution\":{\"type\":\"normal\",\"loc\":[0],\"log_scale\":[0]},"
                           "\"x\":[[[1]]]}", 400, "invalid_argument", "x");
    call_error("log_prob", "{\"distribution\":{\"type\":\"normal\",\"loc\":[[0]],\"log_scale\":[[0]]},"
                           "\"x\":[[1]]}", 400, "invalid_argument", "x");
    call_error("log_prob", "{\"distribution\":{\"type\":\"categorical\",\"logits\":[0,1]},"
                           "\"x\":[[1]]}", 400, "invalid_argument", "x");
    /* samples: optional, and M is x's shape (API.md §0) */
    expect_same_answer("log_prob",
                       "{\"distribution\":{\"type\":\"categorical\",\"logits\":[0,1]},\"x\":[0,1,1]}",
                       "{\"distribution\":{\"type\":\"categorical\",\"logits\":[0,1]},\"x\":[0,1,1],"
                       "\"samples\":3}");
    call_error("log_prob", "{\"distribution\":{\"type\":\"categorical\",\"logits\":[0,1]},"
                           "\"x\":[0,1,1],\"samples\":2}", 400, "invalid_argument", "samples");
    /* actions out of range, not integers; x missing; rows disagree */
    call_error("log_prob", "{\"distribution\":{\"type\":\"categorical\",\"logits\":[[0,1],[1,0]]},"
                           "\"x\":[[0,1],[2,0]]}", 400, "invalid_argument", "x[1][0]");
    call_error("log_prob", "{\"distribution\":{\"type\":\"categorical\",\"logits\":[0,1]},"
                           "\"x\":[0,-1]}", 400, "invalid_argument", "x[1]");
    call_error("log_prob", "{\"distribution\":{\"type\":\"categorical\",\"logits\":[[0,1]]},"
                           "\"x\":[[0,1.5]]}", 400, "invalid_argument", "x[0][1]");
    call_error("log_prob", "{\"distribution\":{\"type\":\"categorical\",\"logits\":[[0,1]]}}",
               400, "invalid_argument", "x");
    call_error("log_prob", "{\"distribution\":{\"type\":\"categorical\",\"logits\":[[0,1]]},"
                           "\"x\":[[0],[1]]}", 400, "invalid_argument", "x");
    call_error("log_prob", "{\"distribution\":{\"type\":\"normal\",\"loc\":[[0,0]],\"log_scale\":[[0,0]]},"
                           "\"x\":[[[1,2],[1]]]}", 400, "invalid_argument", "x[0][1]");
    /* a point on or outside the tanh bounds has density 0 */
    call_error("log_prob", "{\"distribution\":{\"type\":\"tanh_normal\",\"loc\":[[0,0]],\"log_scale\":[[0,0]],"
                           "\"low\":[-1,0],\"high\":[1,3]},\"x\":[[[0,1],[0.5,3]]]}",
               400, "invalid_argument", "x[0][1][1]");
    call_error("log_prob", "{\"distribution\":{\"type\":\"tanh_normal\",\"loc\":[0],\"log_scale\":[0]},"
                           "\"x\":[[0.5],[-1]]}", 400, "invalid_argument", "x[1][0]");
    call_error("log_prob", "{\"distribution\":{\"type\":\"normal\",\"loc\":[[0,0]],"
                           "\"log_scale\":[[0,-800]]},\"x\":[[[1,1]]]}",
               400, "invalid_argument", "distribution.log_scale[0][1]");
    /* a density that underflows to 0 */
    call_error("log_prob", "{\"distribution\":{\"type\":\"normal\",\"loc\":[[0]],\"log_scale\":[[0]]},"
                           "\"x\":[[[1e200]]]}", 400, "invalid_argument", "x[0][0]");
}
END_TEST

/* ==== seeds and noise ======================================================================= */

/* The same request and seed give the same bytes; without a seed the
 * response carries one that replays it. */
START_TEST(seed_replay) {
    tdist t = tdist_make(GS_TANH_NORMAL, 2, 2, 70, 0, 1);
    tdist c = tdist_make(GS_CATEGORICAL, 2, 4, 71, 0, 0);
    const tdist *ds[] = {&t, &c};
    for (int k = 0; k < 2; k++) {
        const char *ops[] = {"entropy", "sample"};
        for (int o = 0; o < 2; o++) {
            char *nos = o ? sample_body(ds[k], 0, 3, -1)
                          : entropy_body(ds[k], 0, ",\"estimator\":\"score\",\"samples\":5");
            resp a = call(ops[o], nos);
            expect_ok(a);
            json_t *sj = json_object_get(a.j, "seed");
            ck_assert(json_is_integer(sj));
            json_int_t seed = json_integer_value(sj);
            ck_assert(seed >= 0 && seed <= 9007199254740991LL);
            /* replay with the returned seed */
            char *with = fmt("%.*s,\"seed\":%lld}", (int)strlen(nos) - 1, nos, (long long)seed);
            resp b = call(ops[o], with), b2 = call(ops[o], with);
            expect_same_body(a, b);
            expect_same_body(b, b2);
            /* a fresh call draws a fresh seed */
            resp d = call(ops[o], nos);
            ck_assert(json_integer_value(json_object_get(d.j, "seed")) != seed);
            resp_free(&a);
            resp_free(&b);
            resp_free(&b2);
            resp_free(&d);
            free(nos);
            free(with);
        }
    }
    tdist_free(&t);
    tdist_free(&c);
}
END_TEST

/* The eps /v1/sample returns for a seed is the noise /v1/entropy uses with
 * that seed; the entropy estimate is the mean of -log_prob of those draws. */
START_TEST(entropy_uses_the_sample_noise) {
    struct { gs_dist_type type; int sigma, bounds; gs_estimator est; } cases[] = {
        {GS_NORMAL, 0, 0, GS_EST_SCORE}, {GS_NORMAL, 1, 0, GS_EST_REPARAM},
        {GS_TANH_NORMAL, 0, 1, GS_EST_REPARAM}, {GS_TANH_NORMAL, 1, 0, GS_EST_SCORE},
        {GS_CATEGORICAL, 0, 0, GS_EST_SCORE}};
    for (size_t c = 0; c < 5; c++) {
        tdist t = tdist_make(cases[c].type, 3, 3, 80 + c, cases[c].sigma, cases[c].bounds);
        size_t M = 6;
        uint64_t seed = 123456789 + c;
        char extra[128];
        snprintf(extra, sizeof extra, ",\"estimator\":\"%s\",\"samples\":%zu,\"seed\":%llu",
                 EST[cases[c].est], M, (unsigned long long)seed);
        char *b = entropy_body(&t, 0, extra);
        resp r = call("entropy", b);
        expect_ok(r);
        if (t.type != GS_CATEGORICAL) {
            double *eps = sample_eps(&t, seed, M);
            ent_ref ref = entropy_ref(&t, cases[c].est, GS_BASELINE_LOO, M, 0, eps);
            expect_entropy(r.j, &t, EST[cases[c].est], &ref, M, seed, 0);
            ent_ref_free(&ref);
            free(eps);
        }
        /* mean of -log_prob of /v1/sample's draws */
        char *sb_ = sample_body(&t, 0, M, (long long)seed);
        resp s = call("sample", sb_);
        expect_ok(s);
        double *lp = flatten(json_object_get(s.j, "log_prob"), t.B * M);
        double *h = flatten(json_object_get(r.j, "entropy"), t.B);
        for (size_t row = 0; row < t.B; row++) {
            double sum = 0;
            for (size_t m = 0; m < M; m++) sum += -lp[row * M + m];
            ck_assert_msg(h[row] == sum / (double)M, "row %zu: %.17g vs %.17g", row, h[row],
                          sum / (double)M);
        }
        free(lp);
        free(h);
        resp_free(&s);
        free(sb_);
        resp_free(&r);
        free(b);
        tdist_free(&t);
    }
}
END_TEST

/* Row b's draws depend on (seed, b, m) only: row 0 of a 1-row request is
 * row 0 of a 5-row one; rows with equal parameters still get their own noise. */
START_TEST(draws_do_not_depend_on_batch_size) {
    gs_dist_type types[] = {GS_CATEGORICAL, GS_NORMAL, GS_TANH_NORMAL};
    for (int k = 0; k < 3; k++) {
        tdist t5 = tdist_make(types[k], 5, 3, 90 + k, 0, 1);
        tdist t1 = tdist_head(&t5, 1);
        const char *key = types[k] == GS_CATEGORICAL ? "samples" : "eps";
        char *b5 = sample_body(&t5, 0, 4, 2024), *b1 = sample_body(&t1, 0, 4, 2024);
        resp r5 = call("sample", b5), r1 = call("sample", b1);
        expect_ok(r5);
        expect_ok(r1);
        ck_assert(json_equal(json_array_get(json_object_get(r5.j, key), 0),
                             json_array_get(json_object_get(r1.j, key), 0)));
        ck_assert(json_equal(json_array_get(json_object_get(r5.j, "log_prob"), 0),
                             json_array_get(json_object_get(r1.j, "log_prob"), 0)));
        resp_free(&r5);
        resp_free(&r1);
        free(b5);
        free(b1);
        /* the entropy estimates too */
        const char *ex = types[k] == GS_CATEGORICAL
                             ? ",\"estimator\":\"score\",\"samples\":8,\"seed\":5"
                             : ",\"estimator\":\"reparam\",\"samples\":8,\"seed\":5";
        b5 = entropy_body(&t5, 0, ex);
        b1 = entropy_body(&t1, 0, ex);
        r5 = call("entropy", b5);
        r1 = call("entropy", b1);
        expect_ok(r5);
        expect_ok(r1);
        ck_assert(json_equal(json_array_get(json_object_get(r5.j, "entropy"), 0),
                             json_array_get(json_object_get(r1.j, "entropy"), 0)));
        ck_assert(json_equal(json_array_get(jget(r5.j, "grad.logits") ? jget(r5.j, "grad.logits")
                                                                      : jget(r5.j, "grad.loc"), 0),
                             json_array_get(jget(r1.j, "grad.logits") ? jget(r1.j, "grad.logits")
                                                                      : jget(r1.j, "grad.loc"), 0)));
        resp_free(&r5);
        resp_free(&r1);
        free(b5);
        free(b1);
        tdist_free(&t5);
        tdist_free(&t1);
    }
    /* equal rows, different noise */
    resp r = call("sample", "{\"distribution\":{\"type\":\"normal\",\"loc\":[[0,0],[0,0]],"
                            "\"log_scale\":[[0,0],[0,0]]},\"samples\":2,\"seed\":1}");
    expect_ok(r);
    json_t *eps = json_object_get(r.j, "eps");
    ck_assert(!json_equal(json_array_get(eps, 0), json_array_get(eps, 1)));
    resp_free(&r);
}
END_TEST

/* ==== threads and base64 output ================================================================ */

START_TEST(split_requests_are_byte_identical) {
    tdist c = tdist_make(GS_CATEGORICAL, 64, 5, 100, 0, 0);
    tdist n = tdist_make(GS_NORMAL, 48, 3, 101, 1, 0);
    tdist t = tdist_make(GS_TANH_NORMAL, 48, 3, 102, 0, 1);
    char *bodies[6];
    bodies[0] = entropy_body(&c, 0, ",\"estimator\":\"score\",\"samples\":8,\"seed\":4");
    bodies[1] = entropy_body(&n, 0, "");
    bodies[2] = entropy_body(&t, 0, ",\"samples\":8,\"seed\":4");
    bodies[3] = sample_body(&t, 0, 4, 8);
    bodies[4] = sample_body(&c, 0, 4, 8);
    /* log_prob at the draws of bodies[3] */
    resp s = call("sample", bodies[3]);
    expect_ok(s);
    sb x = {0};
    sb_printf(&x, "{\"distribution\":");
    sb_tdist(&x, &t, 0);
    char *xs = json_dumps(json_object_get(s.j, "samples"), JSON_COMPACT | JSON_REAL_PRECISION(17));
    sb_printf(&x, ",\"x\":%s}", xs);
    free(xs);
    bodies[5] = sb_take(&x);
    resp_free(&s);
    const char *ops[] = {"entropy", "entropy", "entropy", "sample", "sample", "log_prob"};
    for (int k = 0; k < 6; k++) {
        resp r = expect_parallel_identical(ops[k], bodies[k]);
        expect_ok(r);
        resp_free(&r);
        free(bodies[k]);
    }
    tdist_free(&c);
    tdist_free(&n);
    tdist_free(&t);
}
END_TEST

START_TEST(base64_output_matches_json) {
    tdist c = tdist_make(GS_CATEGORICAL, 3, 4, 110, 0, 0);
    tdist t = tdist_make(GS_TANH_NORMAL, 2, 3, 111, 1, 1);
    tdist c1 = tdist_make(GS_CATEGORICAL, 1, 4, 112, 0, 0);
    char *b;
    b = entropy_body(&c, 0, ",\"estimator\":\"score\",\"samples\":3,\"seed\":1");
    expect_b64_matches("entropy", b);
    free(b);
    b = entropy_body(&c1, 1, ",\"estimator\":\"score\",\"samples\":3,\"seed\":1");
    expect_b64_matches("entropy", b);
    free(b);
    b = entropy_body(&t, 0, ",\"samples\":3,\"seed\":1");
    expect_b64_matches("entropy", b);
    free(b);
    b = sample_body(&c, 0, 5, 3);
    expect_b64_matches("sample", b);
    free(b);
    b = sample_body(&c1, 1, 5, 3);
    expect_b64_matches("sample", b);
    free(b);
    b = sample_body(&t, 0, 5, 3);
    expect_b64_matches("sample", b);
    free(b);
    expect_b64_matches("log_prob", "{\"distribution\":{\"type\":\"categorical\",\"logits\":[[0.5,1,2]]},"
                                   "\"x\":[[0,2,2,1]]}");
    expect_b64_matches("log_prob", "{\"distribution\":{\"type\":\"normal\",\"loc\":[[0.5,1]],"
                                   "\"log_scale\":[[0.1,-0.3]]},\"x\":[[[0,2],[2,1]]]}");
    /* "output": "json" is the default */
    resp a = call("sample", "{\"distribution\":{\"type\":\"categorical\",\"logits\":[0,1]},\"seed\":1}");
    resp j = call("sample", "{\"distribution\":{\"type\":\"categorical\",\"logits\":[0,1]},\"seed\":1,"
                            "\"output\":\"json\"}");
    expect_same_body(a, j);
    resp_free(&a);
    resp_free(&j);
    tdist_free(&c);
    tdist_free(&t);
    tdist_free(&c1);
}
END_TEST

int main(void) {
    Suite *s = suite_create("api_entropy");
    TCase *tc = tcase_create("entropy");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, entropy_exact_matches_core);
    tcase_add_test(tc, entropy_monte_carlo_matches_core);
    tcase_add_test(tc, entropy_auto_and_defaults);
    tcase_add_test(tc, entropy_unsupported_and_bad_arguments);
    tcase_add_test(tc, entropy_nonfinite_names_the_input);
    tcase_add_test(tc, entropy_single_row);
    suite_add_tcase(s, tc);
    tc = tcase_create("sample_log_prob");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, sample_matches_core);
    tcase_add_test(tc, sample_single_row_and_errors);
    tcase_add_test(tc, log_prob_matches_core);
    tcase_add_test(tc, log_prob_single_row_and_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("seeds_threads_output");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, seed_replay);
    tcase_add_test(tc, entropy_uses_the_sample_noise);
    tcase_add_test(tc, draws_do_not_depend_on_batch_size);
    tcase_add_test(tc, split_requests_are_byte_identical);
    tcase_add_test(tc, base64_output_matches_json);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
