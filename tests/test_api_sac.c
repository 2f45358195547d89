/* test_api_sac.c - the api layer's SAC endpoints (discrete actor, Boltzmann policy, continuous actor) against the core. */
#include "test_api_util.h"

/* ==== /v1/sac/discrete/actor ========================================================= */

typedef struct {
    double *loss, *entropy, *se_loss;
    gs_pgrad grad, se_grad;
} actor_ref;

static actor_ref actor_core(const tdist *t, double alpha, const double *q, const int64_t *act,
                            size_t M, gs_baseline bl) {
    actor_ref r = {calloc(t->B, sizeof(double)), calloc(t->B, sizeof(double)), NULL,
                   pgrad_new(t), {0}};
    gs_sac_discrete_job j = {0};
    j.dist = tdist_core(t);
    j.alpha = alpha;
    j.q = q;
    j.actions = act;
    j.samples = act ? M : 1;
    j.baseline = bl;
    j.loss = r.loss;
    j.entropy = r.entropy;
    j.grad = r.grad;
    if (act && M >= 2) {
        j.se_loss = r.se_loss = calloc(t->B, sizeof(double));
        j.se_grad = r.se_grad = pgrad_new(t);
    }
    gs_error e;
    ck_assert_int_eq(gs_sac_discrete(&j, 0, t->B, &e), 0);
    return r;
}

static void actor_ref_free(actor_ref *r) {
    free(r->loss);
    free(r->entropy);
    free(r->se_loss);
    pgrad_free(&r->grad);
    pgrad_free(&r->se_grad);
}

/* A discrete actor body: logits of t, q (B x K, or B x M with actions). */
static char *actor_body(const tdist *t, int single, double alpha, const double *q,
                        const int64_t *act, size_t M, const char *extra) {
    size_t dims[2] = {t->B, act ? M : t->D};
    const size_t *d = single ? dims + 1 : dims;
    size_t rank = single ? 1 : 2;
    sb s = {0};
    sb_printf(&s, "{\"logits\":");
    sb_arr(&s, t->p0, NULL, rank, single ? &t->D : (size_t[]){t->B, t->D});
    sb_printf(&s, ",\"alpha\":");
    sb_dbl(&s, alpha);
    if (act) {
        sb_printf(&s, ",\"actions\":");
        sb_arr(&s, NULL, act, rank, d);
    }
    sb_printf(&s, ",\"q\":");
    sb_arr(&s, q, NULL, rank, d);
    sb_printf(&s, "%s}", extra);
    return sb_take(&s);
}

START_TEST(discrete_actor_matches_core) {
    for (int sampled = 0; sampled < 2; sampled++)
        for (size_t M = 1; M <= 5; M += 4)
            for (int bl = 0; bl < 2; bl++)
                for (int tgt = 0; tgt < 2; tgt++) {
                    if (!sampled && (M > 1 || bl)) continue;
                    if (sampled && !bl && M < 2) continue; /* loo needs two */
                    tdist t = tdist_make(GS_CATEGORICAL, 4, 5, 500 + M, 0, 0);
                    uint64_t st = 9 + M + (uint64_t)bl;
                    size_t nq = t.B * (sampled ? M : t.D);
                    double *q = rnd_fill(&st, nq, -10, 10);
                    int64_t *act = NULL;
                    if (sampled) {
                        act = malloc(nq * sizeof *act);
                        for (size_t k = 0; k < nq; k++) act[k] = (int64_t)(rnd(&st, 0, 1) * 5.0);
                    }
                    double alpha = 0.37, target = -1.25;
                    char extra[96] = "";
                    snprintf(extra, sizeof extra, "%s%s", bl ? ",\"baseline\":\"none\"" : "",
                             tgt ? ",\"target_entropy\":-1.25" : "");
                    char *b = actor_body(&t, 0, alpha, q, act, M, extra);
                    resp r = call("sac/discrete/actor", b);
                    expect_ok(r);
                    actor_ref ref = actor_core(&t, alpha, q, act, M,
                                               bl ? GS_BASELINE_NONE : GS_BASELINE_LOO);
                    int se = sampled && M >= 2;
                    const char *k[9];
                    int n = 0;
                    k[n++] = "estimator";
                    k[n++] = "loss";
                    k[n++] = "entropy";
                    k[n++] = "grad";
                    if (se) k[n++] = "stderr";
                    if (tgt) k[n++] = "alpha_loss", k[n++] = "grad_log_alpha";
                    k[n] = NULL;
                    expect_keys(r.j, k);
                    ck_assert_str_eq(json_string_value(json_object_get(r.j, "estimator")),
                                     sampled ? "sampled" : "exact");
                    size_t B = t.B;
                    expect_at(r.j, "loss", ref.loss, NULL, 1, &B);
                    expect_at(r.j, "entropy", ref.entropy, NULL, 1, &B);
                    expect_pgrad(json_object_get(r.j, "grad"), &t, &ref.grad, 0, "grad");
                    if (se) {
                        const char *ks[] = {"loss", "grad", NULL};
                        expect_keys(json_object_get(r.j, "stderr"), ks);
                        expect_at(r.j, "stderr.loss", ref.se_loss, NULL, 1, &B);
                        expect_pgrad(jget(r.j, "stderr.grad"), &t, &ref.se_grad, 0, "stderr.grad");
                    }
                    if (tgt) {
                        double al = gs_sac_alpha_loss(alpha, target, t.B, ref.entropy, NULL, NULL);
                        expect_at(r.j, "alpha_loss", &al, NULL, 0, NULL);
                        expect_at(r.j, "grad_log_alpha", &al, NULL, 0, NULL);
                    }
                    actor_ref_free(&ref);
                    resp_free(&r);
                    free(b);
                    free(q);
                    free(act);
                    tdist_free(&t);
                }
}
END_TEST

START_TEST(discrete_actor_single_row_and_errors) {
    const char *pairs[][2] = {
        {"{\"logits\":[0.1,2,-1],\"q\":[1,2,3],\"alpha\":0.2,\"target_entropy\":0.5}",
         "{\"logits\":[[0.1,2,-1]],\"q\":[[1,2,3]],\"alpha\":0.2,\"target_entropy\":0.5}"},
        {"{\"logits\":[0.1,2,-1],\"actions\":[0,1,1,2],\"q\":[1,2,2,3],\"alpha\":0.2}",
         "{\"logits\":[[0.1,2,-1]],\"actions\":[[0,1,1,2]],\"q\":[[1,2,2,3]],\"alpha\":0.2}"}};
    for (int k = 0; k < 2; k++) {
        resp s = call("sac/discrete/actor", pairs[k][0]), b = call("sac/discrete/actor", pairs[k][1]);
        expect_ok(s);
        expect_ok(b);
        ck_assert(json_is_number(json_object_get(s.j, "loss")));
        expect_single_of(s.j, b.j, "actor");
        resp_free(&s);
        resp_free(&b);
    }
    const char *op = "sac/discrete/actor";
    /* mixes */
    call_error(op, "{\"logits\":[1,2,3],\"q\":[[1,2,3]],\"alpha\":0.2}", 400, "invalid_argument", "q");
    call_error(op, "{\"logits\":[[1,2,3]],\"q\":[1,2,3],\"alpha\":0.2}", 400, "invalid_argument", "q");
    call_error(op, "{\"logits\":[1,2,3],\"actions\":[[0]],\"q\":[1],\"alpha\":0.2}", 400,
               "invalid_argument", "actions");
    /* shapes: q against logits, q against actions (the later array is named) */
    call_error(op, "{\"logits\":[[1,2,3]],\"q\":[[1,2]],\"alpha\":0.2}", 400, "invalid_argument", "q[0]");
    call_error(op, "{\"logits\":[[1,2,3]],\"q\":[[1,2,3],[1,2,3]],\"alpha\":0.2}", 400,
               "invalid_argument", "q");
    call_error(op, "{\"logits\":[[1,2,3]],\"actions\":[[0,2]],\"q\":[[1,2,3]],\"alpha\":0.2}", 400,
               "invalid_argument", "q[0]");
    call_error(op, "{\"logits\":[[1,2,3],[1,2]],\"q\":[[1,2,3]],\"alpha\":0.2}", 400,
               "invalid_argument", "logits[1]");
    /* missing, wrong type, out of range */
    call_error(op, "{\"logits\":[[1,2,3]],\"q\":[[1,2,3]]}", 400, "invalid_argument", "alpha");
    call_error(op, "{\"logits\":[[1,2,3]],\"q\":[[1,2,3]],\"alpha\":0}", 400, "invalid_argument", "alpha");
    resp m = call(op, "{\"logits\":[[1,2,3]],\"q\":[[1,2,3]],\"alpha\":-0.2}");
    expect_error(m, 400, "invalid_argument", "alpha");
    ck_assert_str_eq(json_string_value(jget(m.j, "error.message")), "`alpha` must be > 0, got -0.2");
    resp_free(&m);
    call_error(op, "{\"logits\":[[1,2,3]],\"q\":[[1,2,3]],\"alpha\":\"0.2\"}", 400, "invalid_argument", "alpha");
    call_error(op, "{\"logits\":[[1,2,3]],\"alpha\":0.2}", 400, "invalid_argument", "q");
    call_error(op, "{\"q\":[[1,2,3]],\"alpha\":0.2}", 400, "invalid_argument", "logits");
    call_error(op, "{\"logits\":[[1,2,3]],\"q\":[[1,2,3]],\"alpha\":0.2,\"target_entropy\":\"x\"}", 400,
               "invalid_argument", "target_entropy");
    call_error(op, "{\"logits\":[[1,2,3]],\"q\":[[1,2,3]],\"alpha\":0.2,\"distribution\":{}}", 400,
               "invalid_argument", "distribution");
    /* actions: in 0..K-1, integers; loo needs two of them */
    call_error(op, "{\"logits\":[[1,2,3]],\"actions\":[[0,3]],\"q\":[[1,2]],\"alpha\":0.2}", 400,
               "invalid_argument", "actions[0][1]");
    call_error(op, "{\"logits\":[1,2,3],\"actions\":[-1,0],\"q\":[1,2],\"alpha\":0.2}", 400,
               "invalid_argument", "actions[0]");
    call_error(op, "{\"logits\":[[1,2,3]],\"actions\":[[0,1.5]],\"q\":[[1,2]],\"alpha\":0.2}", 400,
               "invalid_argument", "actions[0][1]");
    call_error(op, "{\"logits\":[[1,2,3]],\"actions\":[[1]],\"q\":[[1]],\"alpha\":0.2}", 400,
               "invalid_argument", "baseline");
    call_error(op, "{\"logits\":[[1,2,3]],\"actions\":[[1]],\"q\":[[1]],\"alpha\":0.2,"
                   "\"samples\":1}", 400, "invalid_argument", "samples");
    call_error(op, "{\"logits\":[[1,2,3]],\"actions\":[[1,2]],\"q\":[[1,2]],\"alpha\":0.2,"
                   "\"baseline\":\"mean\"}", 400, "invalid_argument", "baseline");
    resp r = call(op, "{\"logits\":[[1,2,3]],\"actions\":[[1]],\"q\":[[1]],\"alpha\":0.2,"
                      "\"baseline\":\"none\"}");
    expect_ok(r);
    ck_assert_ptr_null(json_object_get(r.j, "stderr"));
    resp_free(&r);
    /* samples: M is the actions' shape, so a samples that agrees is
     * accepted and one that disagrees is named (API.md §0); with all Q
     * values it does not apply: ignored, but range-checked (§11). */
    const char *sam = "{\"logits\":[[1,2,3]],\"actions\":[[0,1]],\"q\":[[1,2]],\"alpha\":0.2}";
    const char *sam2 = "{\"logits\":[[1,2,3]],\"actions\":[[0,1]],\"q\":[[1,2]],\"alpha\":0.2,"
                       "\"samples\":2}";
    expect_same_answer(op, sam, sam2);
    call_error(op, "{\"logits\":[[1,2,3]],\"actions\":[[0,1]],\"q\":[[1,2]],\"alpha\":0.2,"
                   "\"samples\":3}", 400, "invalid_argument", "samples");
    r = call(op, "{\"logits\":[[1,2,3]],\"q\":[[1,2,3]],\"alpha\":0.2,\"samples\":7}");
    expect_ok(r);
    resp_free(&r);
    call_error(op, "{\"logits\":[[1,2,3]],\"q\":[[1,2,3]],\"alpha\":0.2,\"samples\":-5}", 400,
               "invalid_argument", "samples");
}
END_TEST

/* Outputs that would not be finite: a 400 naming the input at fault. */
START_TEST(discrete_actor_nonfinite) {
    const char *op = "sac/discrete/actor";
    /* q of +-1e308: the leave-one-out terms and the standard error overflow */
    call_error(op, "{\"logits\":[[0,0],[0,0]],\"actions\":[[0,1],[0,1]],\"q\":[[1,2],[1e308,-1e308]],"
                   "\"alpha\":0.1}", 400, "invalid_argument", "q[1]");
    call_error(op, "{\"logits\":[0,0,0],\"actions\":[0,0],\"q\":[-1e308,1e308],\"alpha\":0.1}", 400,
               "invalid_argument", "q");
    /* the exact loss overflows */
    call_error(op, "{\"logits\":[[0,0]],\"q\":[[1.5e308,-1e308]],\"alpha\":1e308}", 400,
               "invalid_argument", "q[0]");
    /* the temperature loss overflows */
    call_error(op, "{\"logits\":[[0,0]],\"q\":[[0,0]],\"alpha\":1e300,\"target_entropy\":-1e300}", 400,
               "invalid_argument", "target_entropy");
    /* Logits spread beyond the largest double: log p = -inf for the action
     * whose p underflows, which adds 0 log 0 = 0 (MATH.md §2). Actions that
     * avoid it get finite answers; one that draws it is named. */
    resp r = call(op, "{\"logits\":[[1,2],[1e308,-1e308]],\"actions\":[[0,1],[0,0]],"
                      "\"q\":[[1,2],[1,2]],\"alpha\":0.1,\"baseline\":\"none\"}");
    expect_ok(r);
    ck_assert(json_number_value(json_array_get(json_object_get(r.j, "loss"), 1)) == -1.5);
    ck_assert(json_number_value(json_array_get(json_object_get(r.j, "entropy"), 1)) == 0.0);
    resp_free(&r);
    r = call(op, "{\"logits\":[[1e308,-1e308]],\"q\":[[1,2]],\"alpha\":0.1}");
    expect_ok(r);
    ck_assert(json_number_value(json_array_get(json_object_get(r.j, "loss"), 0)) == -1.0);
    resp_free(&r);
    call_error(op, "{\"logits\":[[1,2],[1e308,-1e308]],\"actions\":[[0,1],[0,1]],\"q\":[[1,2],[1,2]],"
                   "\"alpha\":0.1,\"baseline\":\"none\"}", 400, "invalid_argument", "actions[1][1]");
}
END_TEST

/* ==== /v1/sac/discrete/policy =========================================================== */

typedef struct {
    double *probs, *log_probs, *entropy, *value;
    int64_t *actions;
} policy_ref;

static policy_ref policy_core(size_t B, size_t K, const double *q, double alpha, size_t M,
                              uint64_t seed) {
    policy_ref r = {calloc(B * K, sizeof(double)), calloc(B * K, sizeof(double)),
                    calloc(B, sizeof(double)), calloc(B, sizeof(double)),
                    calloc(B * (M ? M : 1), sizeof(int64_t))};
    gs_sac_policy_job j = {0};
    j.rows = B;
    j.K = K;
    j.q = q;
    j.alpha = alpha;
    j.samples = M;
    gs_rng_init(&j.rng, seed);
    j.probs = r.probs;
    j.log_probs = r.log_probs;
    j.entropy = r.entropy;
    j.value = r.value;
    j.actions = r.actions;
    gs_error e;
    ck_assert_int_eq(gs_sac_policy(&j, 0, B, &e), 0);
    return r;
}

static void policy_ref_free(policy_ref *r) {
    free(r->probs);
    free(r->log_probs);
    free(r->entropy);
    free(r->value);
    free(r->actions);
}

static char *policy_body(size_t B, size_t K, const double *q, double alpha, int single,
                         const char *extra) {
    size_t dims[2] = {B, K};
    sb s = {0};
    sb_printf(&s, "{\"q\":");
    sb_arr(&s, q, NULL, single ? 1 : 2, single ? dims + 1 : dims);
    sb_printf(&s, ",\"alpha\":");
    sb_dbl(&s, alpha);
    sb_printf(&s, "%s}", extra);
    return sb_take(&s);
}

START_TEST(policy_matches_core) {
    size_t B = 4, K = 6;
    for (size_t M = 0; M <= 7; M += 7) {
        uint64_t st = 600 + M;
        double *q = rnd_fill(&st, B * K, -20, 20), alpha = 0.8;
        char extra[64] = "";
        if (M) snprintf(extra, sizeof extra, ",\"samples\":%zu,\"seed\":99", M);
        char *b = policy_body(B, K, q, alpha, 0, extra);
        resp r = call("sac/discrete/policy", b);
        expect_ok(r);
        policy_ref ref = policy_core(B, K, q, alpha, M, 99);
        const char *k0[] = {"probs", "log_probs", "entropy", "value", NULL};
        const char *k1[] = {"seed", "probs", "log_probs", "entropy", "value", "actions", NULL};
        expect_keys(r.j, M ? k1 : k0);
        size_t dims[2] = {B, K}, md[2] = {B, M};
        expect_at(r.j, "probs", ref.probs, NULL, 2, dims);
        expect_at(r.j, "log_probs", ref.log_probs, NULL, 2, dims);
        expect_at(r.j, "entropy", ref.entropy, NULL, 1, dims);
        expect_at(r.j, "value", ref.value, NULL, 1, dims);
        if (M) {
            expect_at(r.j, "actions", NULL, ref.actions, 2, md);
            ck_assert_int_eq(json_integer_value(json_object_get(r.j, "seed")), 99);
        }
        policy_ref_free(&ref);
        resp_free(&r);
        free(b);
        free(q);
    }
}
END_TEST

/* The policy's actions for a seed are /v1/sample's for a categorical with
 * logits q / alpha: the same uniforms of (seed, row, sample). */
START_TEST(policy_actions_are_the_sample_draws) {
    size_t B = 3, K = 4, M = 9;
    uint64_t st = 610;
    double *q = rnd_fill(&st, B * K, -3, 3), alpha = 0.5;
    double z[12];
    for (size_t k = 0; k < B * K; k++) z[k] = q[k] / alpha;
    char *b = policy_body(B, K, q, alpha, 0, ",\"samples\":9,\"seed\":31");
    resp r = call("sac/discrete/policy", b);
    expect_ok(r);
    sb s = {0};
    size_t dims[2] = {B, K};
    sb_printf(&s, "{\"distribution\":{\"type\":\"categorical\",\"logits\":");
    sb_arr(&s, z, NULL, 2, dims);
    sb_printf(&s, "},\"samples\":%zu,\"seed\":31}", M);
    char *sbody = sb_take(&s);
    resp smp = call("sample", sbody);
    expect_ok(smp);
    ck_assert(json_equal(json_object_get(smp.j, "samples"), json_object_get(r.j, "actions")));
    resp_free(&smp);
    free(sbody);
    resp_free(&r);
    free(b);
    free(q);
}
END_TEST

START_TEST(policy_single_row_seed_and_errors) {
    const char *op = "sac/discrete/policy";
    resp s = call(op, "{\"q\":[1,2,3],\"alpha\":0.5,\"samples\":4,\"seed\":2}");
    resp b = call(op, "{\"q\":[[1,2,3]],\"alpha\":0.5,\"samples\":4,\"seed\":2}");
    expect_ok(s);
    expect_ok(b);
    ck_assert(json_is_number(json_object_get(s.j, "value")));
    expect_single_of(s.j, b.j, "policy");
    resp_free(&s);
    resp_free(&b);
    /* samples 0 (the default): no actions, no seed, even when a seed is sent */
    resp a = call(op, "{\"q\":[[1,2,3]],\"alpha\":0.5}");
    resp z = call(op, "{\"q\":[[1,2,3]],\"alpha\":0.5,\"samples\":0,\"seed\":5}");
    expect_ok(a);
    const char *k0[] = {"probs", "log_probs", "entropy", "value", NULL};
    expect_keys(a.j, k0);
    expect_same_body(a, z);
    resp_free(&a);
    resp_free(&z);
    /* without a seed, the returned one replays the draws */
    resp f = call(op, "{\"q\":[[1,2,3],[0,0,0]],\"alpha\":0.5,\"samples\":6}");
    expect_ok(f);
    json_int_t seed = json_integer_value(json_object_get(f.j, "seed"));
    ck_assert(seed >= 0 && seed <= 9007199254740991LL);
    char *again = fmt("{\"q\":[[1,2,3],[0,0,0]],\"alpha\":0.5,\"samples\":6,\"seed\":%lld}",
                      (long long)seed);
    resp g = call(op, again);
    expect_same_body(f, g);
    resp_free(&f);
    resp_free(&g);
    free(again);
    call_error(op, "{\"q\":[[1,2,3]],\"alpha\":0.5,\"samples\":-1}", 400, "invalid_argument", "samples");
    call_error(op, "{\"q\":[[1,2,3]],\"alpha\":0}", 400, "invalid_argument", "alpha");
    call_error(op, "{\"q\":[[1,2,3]]}", 400, "invalid_argument", "alpha");
    call_error(op, "{\"alpha\":1}", 400, "invalid_argument", "q");
    call_error(op, "{\"q\":[[1,2,3],[1,2]],\"alpha\":1}", 400, "invalid_argument", "q[1]");
    call_error(op, "{\"q\":[[1,2,3]],\"alpha\":1,\"logits\":[[1,2,3]]}", 400, "invalid_argument",
               "logits");
    call_error(op, "{\"q\":[[1,2,3]],\"alpha\":1,\"samples\":2,\"seed\":-3}", 400,
               "invalid_argument", "seed");
    /* Q / alpha overflows */
    call_error(op, "{\"q\":[[1,2],[1,1e308]],\"alpha\":1e-10}", 400, "invalid_argument", "q[1][1]");
    /* a spread past the largest double: log_probs[1] would be -inf */
    call_error(op, "{\"q\":[1e308,-1e308],\"alpha\":1}", 400, "invalid_argument", "q[1]");
}
END_TEST

/* ==== /v1/sac/continuous/actor ============================================================ */

typedef struct {
    double *loss, *entropy, *log_prob, *actions, *se_loss, *se_entropy;
    gs_pgrad grad, se_grad;
    double alpha_loss, se_alpha_loss;
} cont_ref;

static cont_ref cont_core(const tdist *t, double alpha, size_t M, const double *eps,
                          uint64_t seed, const double *dq, const double *q, int tgt,
                          double target) {
    size_t B = t->B, D = t->D;
    cont_ref r = {0};
    gs_sac_continuous_job j = {0};
    j.dist = tdist_core(t);
    j.alpha = alpha;
    j.samples = M;
    j.noise.eps = eps;
    gs_rng_init(&j.noise.rng, seed);
    j.dq_da = dq;
    j.q = q;
    j.loss = r.loss = q ? calloc(B, sizeof(double)) : NULL;
    j.entropy = r.entropy = calloc(B, sizeof(double));
    j.log_prob = r.log_prob = calloc(B * M, sizeof(double));
    j.actions = r.actions = calloc(B * M * D, sizeof(double));
    j.grad = r.grad = pgrad_new(t);
    if (M >= 2) {
        j.se_entropy = r.se_entropy = calloc(B, sizeof(double));
        j.se_loss = r.se_loss = q ? calloc(B, sizeof(double)) : NULL;
        j.se_grad = r.se_grad = pgrad_new(t);
    }
    gs_error e;
    ck_assert_int_eq(gs_sac_continuous(&j, 0, B, &e), 0);
    if (tgt)
        r.alpha_loss = gs_sac_alpha_loss(alpha, target, B, r.entropy, r.se_entropy,
                                         &r.se_alpha_loss);
    return r;
}

static void cont_ref_free(cont_ref *r) {
    free(r->loss);
    free(r->entropy);
    free(r->log_prob);
    free(r->actions);
    free(r->se_loss);
    free(r->se_entropy);
    pgrad_free(&r->grad);
    pgrad_free(&r->se_grad);
}

static char *cont_body(const tdist *t, int single, double alpha, size_t M, const double *eps,
                       long long seed, int send_m, const double *dq, const double *q,
                       const char *extra) {
    size_t dims[3] = {t->B, M, t->D};
    const size_t *d = single ? dims + 1 : dims;
    size_t r = single ? 1 : 0;
    sb s = {0};
    sb_printf(&s, "{\"distribution\":");
    sb_tdist(&s, t, single);
    sb_printf(&s, ",\"alpha\":");
    sb_dbl(&s, alpha);
    if (eps) {
        sb_printf(&s, ",\"eps\":");
        sb_arr(&s, eps, NULL, 3 - r, d);
    }
    if (seed >= 0) sb_printf(&s, ",\"seed\":%lld", seed);
    if (send_m) sb_printf(&s, ",\"samples\":%zu", M);
    sb_printf(&s, ",\"dq_da\":");
    sb_arr(&s, dq, NULL, 3 - r, d);
    if (q) {
        sb_printf(&s, ",\"q\":");
        sb_arr(&s, q, NULL, 2 - r, d);
    }
    sb_printf(&s, "%s}", extra);
    return sb_take(&s);
}

START_TEST(continuous_actor_matches_core) {
    struct { int sigma, bounds; } cases[] = {{0, 1}, {1, 0}, {0, 0}, {1, 1}};
    size_t Ms[] = {1, 3};
    for (size_t c = 0; c < 4; c++)
        for (size_t mi = 0; mi < 2; mi++)
            for (int src = 0; src < 3; src++)      /* eps, seed + samples, seed */
                for (int opt = 0; opt < 3; opt++) { /* nothing, q, q + target */
                    size_t M = Ms[mi];
                    tdist t = tdist_make(GS_TANH_NORMAL, 3, 2, 700 + c, cases[c].sigma,
                                         cases[c].bounds);
                    uint64_t st = 70 + c * 9 + mi * 3 + (uint64_t)src;
                    size_t n = t.B * M;
                    double *eps = src == 0 ? rnd_fill(&st, n * t.D, -2, 2) : NULL;
                    double *dq = rnd_fill(&st, n * t.D, -3, 3);
                    double *q = opt ? rnd_fill(&st, n, -5, 5) : NULL;
                    long long seed = src ? 4000 + (long long)c : -1;
                    double alpha = 0.25, target = -2;
                    char *b = cont_body(&t, 0, alpha, M, eps, seed, src == 1, dq, q,
                                        opt == 2 ? ",\"target_entropy\":-2" : "");
                    resp r = call("sac/continuous/actor", b);
                    expect_ok(r);
                    cont_ref ref = cont_core(&t, alpha, M, eps, (uint64_t)(seed < 0 ? 0 : seed),
                                             dq, q, opt == 2, target);
                    const char *k[10];
                    int kn = 0;
                    if (seed >= 0) k[kn++] = "seed";
                    if (q) k[kn++] = "loss";
                    k[kn++] = "entropy";
                    k[kn++] = "log_prob";
                    k[kn++] = "actions";
                    k[kn++] = "grad";
                    if (M >= 2) k[kn++] = "stderr";
                    if (opt == 2) k[kn++] = "alpha_loss", k[kn++] = "grad_log_alpha";
                    k[kn] = NULL;
                    expect_keys(r.j, k);
                    if (seed >= 0)
                        ck_assert(json_integer_value(json_object_get(r.j, "seed")) == seed);
                    size_t dims[3] = {t.B, M, t.D};
                    if (q) expect_at(r.j, "loss", ref.loss, NULL, 1, dims);
                    expect_at(r.j, "entropy", ref.entropy, NULL, 1, dims);
                    expect_at(r.j, "log_prob", ref.log_prob, NULL, 2, dims);
                    expect_at(r.j, "actions", ref.actions, NULL, 3, dims);
                    expect_pgrad(json_object_get(r.j, "grad"), &t, &ref.grad, 0, "grad");
                    if (M >= 2) {
                        const char *ks[6];
                        int sn = 0;
                        if (q) ks[sn++] = "loss";
                        ks[sn++] = "entropy";
                        ks[sn++] = "grad";
                        if (opt == 2) ks[sn++] = "alpha_loss", ks[sn++] = "grad_log_alpha";
                        ks[sn] = NULL;
                        expect_keys(json_object_get(r.j, "stderr"), ks);
                        if (q) expect_at(r.j, "stderr.loss", ref.se_loss, NULL, 1, dims);
                        expect_at(r.j, "stderr.entropy", ref.se_entropy, NULL, 1, dims);
                        expect_pgrad(jget(r.j, "stderr.grad"), &t, &ref.se_grad, 0, "stderr.grad");
                        if (opt == 2) {
                            expect_at(r.j, "stderr.alpha_loss", &ref.se_alpha_loss, NULL, 0, NULL);
                            expect_at(r.j, "stderr.grad_log_alpha", &ref.se_alpha_loss, NULL, 0,
                                      NULL);
                        }
                    }
                    if (opt == 2) {
                        expect_at(r.j, "alpha_loss", &ref.alpha_loss, NULL, 0, NULL);
                        expect_at(r.j, "grad_log_alpha", &ref.alpha_loss, NULL, 0, NULL);
                    }
                    cont_ref_free(&ref);
                    resp_free(&r);
                    free(b);
                    free(eps);
                    free(dq);
                    free(q);
                    tdist_free(&t);
                }
}
END_TEST

/* The seed's noise is /v1/sample's eps: the actor's actions and log_prob are
 * /v1/sample's samples and log_prob, and the eps form gives the same body. */
START_TEST(continuous_actor_uses_the_sample_noise) {
    tdist t = tdist_make(GS_TANH_NORMAL, 3, 2, 720, 0, 1);
    size_t M = 4;
    uint64_t st = 5, seed = 271828;
    double *dq = rnd_fill(&st, t.B * M * t.D, -1, 1), *q = rnd_fill(&st, t.B * M, -1, 1);
    double *eps = sample_eps(&t, seed, M);
    char *bs = cont_body(&t, 0, 0.2, M, NULL, (long long)seed, 0, dq, q, "");
    char *be = cont_body(&t, 0, 0.2, M, eps, -1, 0, dq, q, "");
    resp rs = call("sac/continuous/actor", bs), re = call("sac/continuous/actor", be);
    expect_ok(rs);
    expect_ok(re);
    char *want = fmt("{\"seed\":%llu,%s", (unsigned long long)seed, re.body + 1);
    ck_assert_str_eq(rs.body, want);
    sb s = {0};
    sb_printf(&s, "{\"distribution\":");
    sb_tdist(&s, &t, 0);
    sb_printf(&s, ",\"samples\":%zu,\"seed\":%llu}", M, (unsigned long long)seed);
    char *sbody = sb_take(&s);
    resp smp = call("sample", sbody);
    expect_ok(smp);
    ck_assert(json_equal(json_object_get(smp.j, "samples"), json_object_get(rs.j, "actions")));
    ck_assert(json_equal(json_object_get(smp.j, "log_prob"), json_object_get(rs.j, "log_prob")));
    /* row 0 of this 3-row request is the 1-row request's row */
    tdist t1 = tdist_head(&t, 1);
    char *b1 = cont_body(&t1, 0, 0.2, M, NULL, (long long)seed, 0, dq, q, "");
    resp r1 = call("sac/continuous/actor", b1);
    expect_ok(r1);
    const char *keys[] = {"actions", "log_prob", "entropy", "loss", NULL};
    for (const char **k = keys; *k; k++)
        ck_assert(json_equal(json_array_get(json_object_get(r1.j, *k), 0),
                             json_array_get(json_object_get(rs.j, *k), 0)));
    ck_assert(json_equal(json_array_get(jget(r1.j, "grad.loc"), 0),
                         json_array_get(jget(rs.j, "grad.loc"), 0)));
    resp_free(&r1);
    free(b1);
    tdist_free(&t1);
    resp_free(&smp);
    free(sbody);
    free(want);
    resp_free(&rs);
    resp_free(&re);
    free(bs);
    free(be);
    free(eps);
    free(dq);
    free(q);
    tdist_free(&t);
}
END_TEST

START_TEST(continuous_actor_single_row_and_errors) {
    tdist t = tdist_make(GS_TANH_NORMAL, 1, 2, 730, 1, 1);
    size_t M = 3;
    uint64_t st = 8;
    double *dq = rnd_fill(&st, M * 2, -1, 1), *q = rnd_fill(&st, M, -1, 1);
    char *b1 = cont_body(&t, 1, 0.3, M, NULL, 6, 1, dq, q, ",\"target_entropy\":-1");
    char *b2 = cont_body(&t, 0, 0.3, M, NULL, 6, 1, dq, q, ",\"target_entropy\":-1");
    resp s = call("sac/continuous/actor", b1), b = call("sac/continuous/actor", b2);
    expect_ok(s);
    expect_ok(b);
    ck_assert(json_is_number(json_object_get(s.j, "entropy")));
    expect_single_of(s.j, b.j, "continuous");
    resp_free(&s);
    resp_free(&b);
    free(b1);
    free(b2);
    free(dq);
    free(q);
    tdist_free(&t);

    const char *op = "sac/continuous/actor";
    const char *d = "{\"type\":\"tanh_normal\",\"loc\":[[0,1]],\"log_scale\":[[0,0]]}";
    char bb[512];
    /* only tanh_normal */
    call_error(op, "{\"distribution\":{\"type\":\"normal\",\"loc\":[[0]],\"log_scale\":[[0]]},"
                   "\"alpha\":1,\"seed\":1,\"dq_da\":[[[1]]]}", 400, "invalid_argument",
               "distribution.type");
    call_error(op, "{\"distribution\":{\"type\":\"categorical\",\"logits\":[[0]]},"
                   "\"alpha\":1,\"seed\":1,\"dq_da\":[[[1]]]}", 400, "invalid_argument",
               "distribution.type");
    /* noise: both, neither */
    snprintf(bb, sizeof bb, "{\"distribution\":%s,\"alpha\":1,\"eps\":[[[0,0]]],\"seed\":1,"
             "\"dq_da\":[[[1,1]]]}", d);
    call_error(op, bb, 400, "invalid_argument", "seed");
    snprintf(bb, sizeof bb, "{\"distribution\":%s,\"alpha\":1,\"dq_da\":[[[1,1]]]}", d);
    call_error(op, bb, 400, "invalid_argument", "eps");
    /* dq_da required and shaped like the noise; q like its samples */
    snprintf(bb, sizeof bb, "{\"distribution\":%s,\"alpha\":1,\"seed\":1}", d);
    call_error(op, bb, 400, "invalid_argument", "dq_da");
    snprintf(bb, sizeof bb, "{\"distribution\":%s,\"alpha\":1,\"eps\":[[[0,0]]],\"dq_da\":[[[1,1],[1,1]]]}", d);
    call_error(op, bb, 400, "invalid_argument", "dq_da[0]");
    snprintf(bb, sizeof bb, "{\"distribution\":%s,\"alpha\":1,\"seed\":1,\"dq_da\":[[[1,1],[1,1]]],"
             "\"q\":[[1,2,3]]}", d);
    call_error(op, bb, 400, "invalid_argument", "q[0]");
    snprintf(bb, sizeof bb, "{\"distribution\":%s,\"alpha\":1,\"seed\":1,\"samples\":3,"
             "\"dq_da\":[[[1,1],[1,1]]]}", d);
    call_error(op, bb, 400, "invalid_argument", "samples");
    snprintf(bb, sizeof bb, "{\"distribution\":%s,\"alpha\":1,\"seed\":1,\"dq_da\":[[1,1]]}", d);
    call_error(op, bb, 400, "invalid_argument", "dq_da");
    snprintf(bb, sizeof bb, "{\"distribution\":%s,\"alpha\":0,\"seed\":1,\"dq_da\":[[[1,1]]]}", d);
    call_error(op, bb, 400, "invalid_argument", "alpha");
    snprintf(bb, sizeof bb, "{\"distribution\":%s,\"seed\":1,\"dq_da\":[[[1,1]]]}", d);
    call_error(op, bb, 400, "invalid_argument", "alpha");
    snprintf(bb, sizeof bb, "{\"distribution\":%s,\"alpha\":1,\"seed\":1,\"dq_da\":[[[1,1]]],"
             "\"baseline\":\"none\"}", d);
    call_error(op, bb, 400, "invalid_argument", "baseline");
    /* non-finite outputs */
    snprintf(bb, sizeof bb, "{\"distribution\":%s,\"alpha\":1,\"eps\":[[[0,0],[0,0]]],"
             "\"dq_da\":[[[1e308,1],[1e308,1]]]}", d);
    call_error(op, bb, 400, "invalid_argument", "dq_da[0]");
    snprintf(bb, sizeof bb, "{\"distribution\":%s,\"alpha\":1,\"eps\":[[[0,0],[0,0]]],"
             "\"dq_da\":[[[1,1],[1,1]]],\"q\":[[1e308,-1e308]]}", d);
    call_error(op, bb, 400, "invalid_argument", "q[0]");
    snprintf(bb, sizeof bb, "{\"distribution\":%s,\"alpha\":1e300,\"seed\":1,"
             "\"dq_da\":[[[1,1]]],\"target_entropy\":1e300}", d);
    call_error(op, bb, 400, "invalid_argument", "target_entropy");
    call_error(op, "{\"distribution\":{\"type\":\"tanh_normal\",\"loc\":[0,0],\"log_scale\":[0,800]},"
                   "\"alpha\":1,\"seed\":1,\"dq_da\":[[1,1]]}", 400, "invalid_argument",
               "distribution.log_scale[1]");
}
END_TEST

/* ==== threads and base64 output =========================================================== */

START_TEST(split_and_base64) {
    tdist c = tdist_make(GS_CATEGORICAL, 48, 6, 800, 0, 0);
    uint64_t st = 1;
    size_t M = 8;
    double *qk = rnd_fill(&st, c.B * c.D, -3, 3), *qm = rnd_fill(&st, c.B * M, -3, 3);
    int64_t *act = malloc(c.B * M * sizeof *act);
    for (size_t k = 0; k < c.B * M; k++) act[k] = (int64_t)(rnd(&st, 0, 1) * 6.0);
    char *bodies[5];
    bodies[0] = actor_body(&c, 0, 0.3, qk, NULL, 0, ",\"target_entropy\":1");
    bodies[1] = actor_body(&c, 0, 0.3, qm, act, M, ",\"target_entropy\":1");
    bodies[2] = policy_body(c.B, c.D, qk, 0.7, 0, ",\"samples\":5,\"seed\":3");
    tdist t = tdist_make(GS_TANH_NORMAL, 40, 3, 801, 0, 1);
    double *dq = rnd_fill(&st, t.B * M * t.D, -1, 1), *q = rnd_fill(&st, t.B * M, -1, 1);
    bodies[3] = cont_body(&t, 0, 0.2, M, NULL, 17, 0, dq, q, ",\"target_entropy\":-3");
    bodies[4] = cont_body(&t, 0, 0.2, M, NULL, 17, 1, dq, NULL, "");
    const char *ops[] = {"sac/discrete/actor", "sac/discrete/actor", "sac/discrete/policy",
                         "sac/continuous/actor", "sac/continuous/actor"};
    for (int k = 0; k < 5; k++) {
        resp r = expect_parallel_identical(ops[k], bodies[k]);
        expect_ok(r);
        resp_free(&r);
        expect_b64_matches(ops[k], bodies[k]);
        free(bodies[k]);
    }
    expect_b64_matches("sac/discrete/policy", "{\"q\":[1,2,3],\"alpha\":0.5,\"samples\":4,\"seed\":2}");
    expect_b64_matches("sac/discrete/actor", "{\"logits\":[0.1,2,-1],\"actions\":[0,1,1,2],"
                                             "\"q\":[1,2,2,3],\"alpha\":0.2}");
    free(qk);
    free(qm);
    free(act);
    free(dq);
    free(q);
    tdist_free(&c);
    tdist_free(&t);
}
END_TEST

int main(void) {
    Suite *s = suite_create("api_sac");
    TCase *tc = tcase_create("discrete");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, discrete_actor_matches_core);
    tcase_add_test(tc, discrete_actor_single_row_and_errors);
    tcase_add_test(tc, discrete_actor_nonfinite);
    tcase_add_test(tc, policy_matches_core);
    tcase_add_test(tc, policy_actions_are_the_sample_draws);
    tcase_add_test(tc, policy_single_row_seed_and_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("continuous");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, continuous_actor_matches_core);
    tcase_add_test(tc, continuous_actor_uses_the_sample_noise);
    tcase_add_test(tc, continuous_actor_single_row_and_errors);
    tcase_add_test(tc, split_and_base64);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
