/* test_api_io.c - the api layer's JSON and tensor reading, number writing, error bodies, limits, /v1/batch and /v1/info. */
#include "test_api_util.h"
#include "api_b64.h"
#include "api_dtoa.h"
#include "api_b64_impl.h"
#include "api_lift.h"

static const char *CAT = "{\"type\":\"categorical\",\"logits\":[[0.1,2.0,-1.0],[1,1,1]]}";

/* ==== invalid JSON and the shape of errors ======================================= */

START_TEST(invalid_json_reports_line_and_column) {
    struct { const char *body; const char *where; } cases[] = {
        {"{\"distribution\": [1, 2", "line 1, column"},
        {"{\"distribution\": {\"type\": \"categorical\", \"logits\": [NaN]}}", "line 1, column"},
        {"{\n  \"distribution\":\n    {\"type\": \"normal\", \"loc\": [Infinity]}}", "line 3, column"},
        {"{\"samples\": -Infinity}", "line 1, column"},
        {"{\"samples\": nan}", "line 1, column"},
        {"", "line 1, column"},
        {"{} {}", "line 1, column"},
        {"{\"a\": \"\xff\"}", "line 1, column"},
        {"{'a': 1}", "line 1, column"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        resp r = call("entropy", cases[k].body);
        expect_error(r, 400, "invalid_json", NULL);
        const char *m = json_string_value(jget(r.j, "error.message"));
        ck_assert_msg(strstr(m, cases[k].where), "case %zu: %s", k, m);
        resp_free(&r);
    }
    /* the same through every endpoint and the batch */
    const char *ops[] = {"sample", "log_prob", "reparam", "score", "sac/discrete/actor",
                         "sac/discrete/policy", "sac/continuous/actor", "batch"};
    for (int k = 0; k < 8; k++) {
        resp r = call(ops[k], "{\"q\": [NaN]}");
        expect_error(r, 400, "invalid_json", NULL);
        resp_free(&r);
    }
}
END_TEST

START_TEST(valid_json_that_is_not_a_request) {
    call_error("entropy", "[1, 2]", 400, "invalid_argument", NULL);
    call_error("entropy", "\"entropy\"", 400, "invalid_argument", NULL);
    call_error("batch", "[]", 400, "invalid_argument", NULL);
    /* numbers beyond a double; an integer literal beyond 64 bits is a
     * double (JavaScript prints 1e19 so), out of range in an integer field */
    call_error("entropy", "{\"distribution\": {\"type\": \"categorical\", \"logits\": [1e999]}}",
               400, "invalid_argument", "distribution.logits[0]");
    call_error("entropy", "{\"distribution\": {\"type\": \"categorical\", \"logits\": "
                          "[[0, 1], [2, -3e400]]}}", 400, "invalid_argument",
               "distribution.logits[1][1]");
    call_error("batch", "{\"requests\": [{\"op\": \"entropy\", \"body\": {}}, {\"op\": "
                        "\"entropy\", \"body\": {\"distribution\": {\"type\": \"categorical\", "
                        "\"logits\": [0, \"[,{\", 1e999]}}}]}", 400, "invalid_argument",
               "requests[1].body.distribution.logits[2]");
    call_error("entropy", "{\"seed\": 99999999999999999999999}", 400, "invalid_argument",
               "distribution");
    call_error("sample", "{\"distribution\": {\"type\": \"categorical\", \"logits\": [0, 1]}, "
                         "\"seed\": 99999999999999999999999}", 400, "invalid_argument", "seed");
    expect_same_answer("entropy",
                       "{\"distribution\": {\"type\": \"categorical\", "
                       "\"logits\": [0, 10000000000000000000]}}",
                       "{\"distribution\": {\"type\": \"categorical\", \"logits\": [0, 1e19]}}");
    /* JSON has one kind of number: 2.0 is the integer 2 in an integer field */
    const char *ints[][2] = {
        {"{\"distribution\": {\"type\": \"categorical\", \"logits\": [0, 1]}, \"samples\": 3, "
         "\"seed\": 7}",
         "{\"distribution\": {\"type\": \"categorical\", \"logits\": [0, 1]}, \"samples\": 3.0, "
         "\"seed\": 7e0}"},
        {"{\"distribution\": {\"type\": \"categorical\", \"logits\": [0, 1]}, \"x\": [1, 0]}",
         "{\"distribution\": {\"type\": \"categorical\", \"logits\": [0, 1]}, \"x\": [1.0, 0e5]}"}};
    const char *iops[] = {"sample", "log_prob"};
    for (int k = 0; k < 2; k++) expect_same_answer(iops[k], ints[k][0], ints[k][1]);
    /* a key twice */
    call_error("entropy", "{\"samples\": 2, \"samples\": 3}", 400, "invalid_argument", "samples");
    call_error("entropy", "{\"distribution\": {\"type\": \"categorical\", \"logits\": [1], "
                          "\"a\\\"b\": 1, \"a\\\"b\": 2}}", 400, "invalid_argument",
               "distribution.a\"b");
    call_error("entropy", "1e999", 400, "invalid_argument", NULL);
}
END_TEST

/* Unknown, missing and mistyped fields, each with its path. */
START_TEST(field_errors_name_their_path) {
    struct { const char *op, *body, *field; } cases[] = {
        /* unknown fields, at every level */
        {"entropy", "{\"distribution\": %s, \"sample\": 3}", "sample"},
        {"entropy", "{\"distribution\": {\"type\": \"categorical\", \"logits\": [1], \"temp\": 1}}",
         "distribution.temp"},
        {"entropy", "{\"distribution\": {\"type\": \"normal\", \"loc\": [1], \"log_scale\": [0], "
                    "\"logits\": [1]}}", "distribution.logits"},
        {"entropy", "{\"distribution\": {\"type\": \"normal\", \"loc\": [1], \"log_scale\": [0], "
                    "\"low\": [-1], \"high\": [1]}}", "distribution.low"},
        {"entropy", "{\"distribution\": {\"type\": \"tanh_normal\", \"loc\": [1], \"scale\": [1], "
                    "\"logits\": [1, 2]}}", "distribution.logits"},
        {"entropy", "{\"distribution\": {\"type\": \"categorical\", \"logits\": [1, 2], "
                    "\"loc\": [1, 2]}}", "distribution.loc"},
        {"entropy", "{\"distribution\": {\"type\": \"categorical\", \"logits\": {\"dtype\": \"float64\", "
                    "\"shape\": [1], \"data\": \"AAAAAAAAAAA=\", \"order\": \"C\"}}}",
         "distribution.logits.order"},
        /* missing */
        {"entropy", "{}", "distribution"},
        {"entropy", "{\"distribution\": {\"logits\": [1]}}", "distribution.type"},
        {"entropy", "{\"distribution\": {\"type\": \"categorical\"}}", "distribution.logits"},
        {"entropy", "{\"distribution\": {\"type\": \"normal\", \"log_scale\": [1]}}", "distribution.loc"},
        {"entropy", "{\"distribution\": {\"type\": \"normal\", \"loc\": [1]}}", "distribution.log_scale"},
        {"entropy", "{\"distribution\": {\"type\": \"normal\", \"loc\": [1], \"scale\": [1], "
                    "\"log_scale\": [0]}}", "distribution.scale"},
        {"entropy", "{\"distribution\": {\"type\": \"tanh_normal\", \"loc\": [1], \"scale\": [1], "
                    "\"low\": [-1]}}", "distribution.high"},
        {"entropy", "{\"distribution\": {\"type\": \"tanh_normal\", \"loc\": [1], \"scale\": [1], "
                    "\"high\": [1]}}", "distribution.low"},
        /* wrong types */
        {"entropy", "{\"distribution\": [1]}", "distribution"},
        {"entropy", "{\"distribution\": {\"type\": 1, \"logits\": [1]}}", "distribution.type"},
        {"entropy", "{\"distribution\": {\"type\": \"gaussian\", \"logits\": [1]}}", "distribution.type"},
        {"entropy", "{\"distribution\": %s, \"samples\": \"5\"}", "samples"},
        {"entropy", "{\"distribution\": %s, \"samples\": 2.5}", "samples"},
        {"entropy", "{\"distribution\": %s, \"samples\": 1.5e0}", "samples"},
        {"entropy", "{\"distribution\": %s, \"seed\": 1.5}", "seed"},
        {"entropy", "{\"distribution\": %s, \"seed\": true}", "seed"},
        {"entropy", "{\"distribution\": %s, \"estimator\": 3}", "estimator"},
        {"entropy", "{\"distribution\": %s, \"output\": \"xml\"}", "output"},
        {"entropy", "{\"distribution\": %s, \"output\": null}", "output"},
        {"entropy", "{\"distribution\": %s, \"baseline\": 0}", "baseline"},
        {"entropy", "{\"distribution\": {\"type\": \"categorical\", \"logits\": \"1,2\"}}",
         "distribution.logits"},
        {"entropy", "{\"distribution\": {\"type\": \"categorical\", \"logits\": [[0.1, \"2\"]]}}",
         "distribution.logits[0][1]"},
        {"entropy", "{\"distribution\": {\"type\": \"categorical\", \"logits\": [[0.1, null], [1, 2]]}}",
         "distribution.logits[0][1]"},
        {"entropy", "{\"distribution\": {\"type\": \"categorical\", \"logits\": [[0.1, 2], [1, [2]]]}}",
         "distribution.logits[1][1]"},
        {"entropy", "{\"distribution\": {\"type\": \"categorical\", \"logits\": [[0.1, 2], 3]}}",
         "distribution.logits[1]"},
        /* ragged and empty */
        {"entropy", "{\"distribution\": {\"type\": \"categorical\", \"logits\": [[1, 2, 3], [1, 2]]}}",
         "distribution.logits[1]"},
        {"entropy", "{\"distribution\": {\"type\": \"categorical\", \"logits\": [[1, 2], [1, 2, 3]]}}",
         "distribution.logits[1]"},
        {"entropy", "{\"distribution\": {\"type\": \"categorical\", \"logits\": []}}", "distribution.logits"},
        {"entropy", "{\"distribution\": {\"type\": \"categorical\", \"logits\": [[]]}}",
         "distribution.logits[0]"},
        /* out-of-range numbers */
        {"entropy", "{\"distribution\": {\"type\": \"normal\", \"loc\": [1, 2], \"scale\": [1, 0]}}",
         "distribution.scale[1]"},
        {"entropy", "{\"distribution\": {\"type\": \"normal\", \"loc\": [[1, 2], [3, 4]], "
                    "\"scale\": [[1, 1], [-0.5, 1]]}}", "distribution.scale[1][0]"},
        {"entropy", "{\"distribution\": {\"type\": \"tanh_normal\", \"loc\": [1, 2], \"scale\": [1, 1], "
                    "\"low\": [-1, 1], \"high\": [1, 1]}}", "distribution.high[1]"},
        {"entropy", "{\"distribution\": {\"type\": \"tanh_normal\", \"loc\": [1, 2], \"scale\": [1, 1], "
                    "\"low\": [2, -1], \"high\": [1, 1]}}", "distribution.high[0]"},
        {"entropy", "{\"distribution\": {\"type\": \"tanh_normal\", \"loc\": [1, 2], \"scale\": [1, 1], "
                    "\"low\": [-1], \"high\": [1, 1]}}", "distribution.low"},
        {"entropy", "{\"distribution\": {\"type\": \"tanh_normal\", \"loc\": [1], \"scale\": [1], "
                    "\"low\": [[-1]], \"high\": [[1]]}}", "distribution.low[0]"},
        {"entropy", "{\"distribution\": %s, \"samples\": 0}", "samples"},
        {"entropy", "{\"distribution\": %s, \"samples\": -5, \"estimator\": \"exact\"}", "samples"},
        {"entropy", "{\"distribution\": %s, \"seed\": -1}", "seed"},
        {"entropy", "{\"distribution\": %s, \"seed\": 9007199254740992}", "seed"},
        {"sac/discrete/actor", "{\"logits\": [1, 2], \"q\": [1, 2], \"alpha\": -0.2}", "alpha"},
        {"sac/discrete/policy", "{\"q\": [1, 2], \"alpha\": 0}", "alpha"},
        {"sac/discrete/actor", "{\"logits\": [[1, 2]], \"actions\": [[0, 2]], \"q\": [[1, 2]], "
                               "\"alpha\": 1}", "actions[0][1]"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        char *b = fmt(cases[k].body, CAT);
        resp r = call(cases[k].op, b);
        ck_assert_msg(r.status == 400, "case %zu (%s): status %d: %s", k, b, r.status, r.body);
        expect_error(r, 400, "invalid_argument", cases[k].field);
        /* a message a person can act on names the field (or its key) */
        const char *m = json_string_value(jget(r.j, "error.message"));
        const char *last = strrchr(cases[k].field, '.');
        char key[64];
        snprintf(key, sizeof key, "%s", last ? last + 1 : cases[k].field);
        key[strcspn(key, "[")] = '\0';
        ck_assert_msg(strstr(m, cases[k].field) || strstr(m, key), "case %zu: %s", k, m);
        resp_free(&r);
        free(b);
    }
}
END_TEST

START_TEST(error_body_and_ops) {
    size_t len = 0;
    char *b = api_error_body("not_found", "no path \"/v2\"", "x.y[1]", &len);
    ck_assert_uint_eq(strlen(b), len);
    json_t *j = json_loads(b, 0, NULL);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(json_string_value(jget(j, "error.code")), "not_found");
    ck_assert_str_eq(json_string_value(jget(j, "error.message")), "no path \"/v2\"");
    ck_assert_str_eq(json_string_value(jget(j, "error.field")), "x.y[1]");
    json_decref(j);
    free(b);
    b = api_error_body("overloaded", "busy", NULL, &len);
    j = json_loads(b, 0, NULL);
    ck_assert_ptr_nonnull(j);
    ck_assert_ptr_null(jget(j, "error.field"));
    json_decref(j);
    free(b);
    const char *ops[] = {"entropy", "sample", "log_prob", "reparam", "score", "sac/discrete/actor",
                         "sac/discrete/policy", "sac/continuous/actor", "batch"};
    for (int k = 0; k < 9; k++) ck_assert(api_is_op(ops[k]));
    const char *no[] = {"", "v1/entropy", "entropy/", "Entropy", "sac", "info", "healthz", "head"};
    for (int k = 0; k < 8; k++) {
        ck_assert(!api_is_op(no[k]));
        api_result r;
        ck_assert_int_eq(api_handle(no[k], "{}", 2, default_limits(), NULL, &r), -1);
    }
    api_limits l;
    api_limits_default(&l);
    ck_assert_uint_eq(l.max_numbers, (size_t)1 << 26);
    ck_assert_uint_eq(l.max_batch_items, 1024);
}
END_TEST

START_TEST(info_body) {
    api_limits l;
    api_limits_default(&l);
    l.max_numbers = 12345;
    size_t len = 0;
    char *b = api_info_body(&l, 4, 3, &len);
    ck_assert_uint_eq(strlen(b), len);
    json_t *j = json_loads(b, JSON_REJECT_DUPLICATES, NULL);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(json_string_value(json_object_get(j, "name")), "gradserve");
    ck_assert_str_eq(json_string_value(json_object_get(j, "version")), GS_VERSION);
    ck_assert_int_eq(json_integer_value(jget(j, "threads.http")), 4);
    ck_assert_int_eq(json_integer_value(jget(j, "threads.workers")), 3);
    ck_assert_int_eq(json_integer_value(jget(j, "limits.max_numbers")), 12345);
    ck_assert_int_eq(json_integer_value(jget(j, "limits.max_batch_items")), 1024);
    ck_assert_int_eq(json_integer_value(jget(j, "limits.max_body")), (json_int_t)l.max_body);
    json_t *d = json_object_get(j, "distributions");
    ck_assert_uint_eq(json_array_size(d), 3);
    const char *types[] = {"categorical", "normal", "tanh_normal"};
    for (int k = 0; k < 3; k++) {
        ck_assert_str_eq(json_string_value(json_array_get(d, k)), types[k]);
        ck_assert(json_is_array(json_object_get(json_object_get(j, "estimators"), types[k])));
    }
    json_t *ops = json_object_get(j, "operations");
    ck_assert_uint_eq(json_array_size(ops), 9);
    for (size_t k = 0; k < 9; k++) ck_assert(api_is_op(json_string_value(json_array_get(ops, k))));
    json_decref(j);
    free(b);
}
END_TEST

/* Numbers are written as the shortest text that reads back the same. */
/* api_dtoa: every text reads back as its double, no shorter %.Ng does, and
 * the layout is plain digits for decimal points from -5 to 17 places,
 * d.ddde±x beyond; over powers of ten, integers, subnormals and random
 * bit patterns. */
static void expect_dtoa(double v) {
    char out[40];
    int n = api_dtoa(v, out);
    ck_assert_int_eq(n, (int)strlen(out));
    ck_assert_msg(strtod(out, NULL) == v && signbit(strtod(out, NULL)) == signbit(v),
                  "%.17g printed as %s", v, out);
    int digits = 0, seen = 0;
    for (const char *q = out; *q && *q != 'e'; q++) {
        if (*q >= '1' && *q <= '9') seen = 1;
        if (*q >= '0' && *q <= '9' && seen) digits++;
    }
    /* trailing zeros of an integer written out are not significant */
    if (!strchr(out, '.') && !strchr(out, 'e'))
        for (const char *q = out + n - 1; q > out && *q == '0' && digits > 1; q--) digits--;
    if (v != 0) {
        char g[40];
        int p = 1;
        for (; p < 17; p++) {
            snprintf(g, sizeof g, "%.*g", p, v);
            if (strtod(g, NULL) == v) break;
        }
        ck_assert_msg(digits == p, "%.17g printed as %s: %d digits, %d suffice", v, out, digits, p);
    }
    ck_assert_msg(!strchr(out, 'E') && out[0] != '.' && !strstr(out, "-."), "%s", out);
}

START_TEST(dtoa_shortest_and_laid_out) {
    const struct {
        double v;
        const char *s;
    } known[] = {{0.0, "0"},         {-0.0, "-0"},        {0.25, "0.25"},
                 {1.0, "1"},         {-3e-7, "-3e-7"},    {1e-5, "0.00001"},
                 {1.5e-5, "0.000015"}, {123456.75, "123456.75"}, {1e16, "10000000000000000"},
                 {1e17, "1e17"},     {1e21, "1e21"},      {5e-324, "5e-324"},
                 {0.1, "0.1"},       {100, "100"},        {12345678901234567.0, "12345678901234568"}};
    for (size_t k = 0; k < sizeof known / sizeof *known; k++) {
        char out[40];
        api_dtoa(known[k].v, out);
        ck_assert_msg(!strcmp(out, known[k].s), "%.17g: %s, want %s", known[k].v, out, known[k].s);
        expect_dtoa(known[k].v);
    }
    for (int e = -320; e <= 308; e++) {
        expect_dtoa(pow(10, e));
        if (e < 308) expect_dtoa(-3.3 * pow(10, e));
    }
    for (double x = 1; x < 1e17; x = x * 7 + 3) expect_dtoa(x);
    uint64_t st = 7;
    for (int k = 0; k < 20000; k++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t b = st ^ (st >> 29);
        double v;
        memcpy(&v, &b, 8);
        if (isfinite(v)) expect_dtoa(v);
        expect_dtoa((double)(b >> 11) * 0x1p-53); /* in [0, 1) */
    }
}
END_TEST

START_TEST(numbers_are_shortest_round_trip) {
    resp r = call("score", "{\"distribution\": {\"type\": \"categorical\", \"logits\": [0, 0]}, "
                           "\"x\": [0, 1], \"f\": [0.1, 0.1], \"baseline\": \"none\"}");
    expect_ok(r);
    ck_assert_msg(strstr(r.body, "\"value\":0.1,") != NULL, "%s", r.body);
    resp_free(&r);
    r = call("entropy", "{\"distribution\": {\"type\": \"categorical\", \"logits\": [0, 0]}}");
    expect_ok(r);
    ck_assert_msg(strstr(r.body, "\"entropy\":0.6931471805599453,") != NULL, "%s", r.body);
    resp_free(&r);
    /* tiny and huge values, and their round trip */
    double fs[] = {1e-300, 3e-7, 123456.75, 1e21, -2.5e150, 5e-324};
    for (int k = 0; k < 6; k++) {
        char *b = fmt("{\"distribution\": {\"type\": \"categorical\", \"logits\": [0, 0]}, "
                      "\"x\": [0, 1], \"f\": [%.17g, %.17g], \"baseline\": \"none\"}", fs[k], fs[k]);
        r = call("score", b);
        expect_ok(r);
        double v = json_number_value(json_object_get(r.j, "value"));
        ck_assert_msg(v == fs[k], "%.17g printed as %s", fs[k], r.body);
        resp_free(&r);
        free(b);
    }
}
END_TEST

/* ==== base64 tensors in ======================================================= */

/* A request with the parameters as JSON, and with the same values as
 * tensors of each dtype, gives the same bytes. */
/* a and b (request bodies for op) get the same successful answer. */
static void expect_same_answers(const char *op, const char *a, const char *b) {
    resp ra = call(op, a), rb = call(op, b);
    expect_ok(ra);
    expect_same_body(ra, rb);
    resp_free(&ra);
    resp_free(&rb);
}

START_TEST(tensor_inputs_equal_json_inputs) {
    double lg[6] = {0.1, 2.0, -1.0, 1.0, 1.5, -0.25};
    size_t d2[2] = {2, 3};
    char *t64 = tensor_json("float64", 2, d2, lg, sizeof lg);
    char *a = fmt("{\"distribution\": {\"type\": \"categorical\", \"logits\": %s}, \"estimator\": "
                  "\"score\", \"samples\": 4, \"seed\": 3}", t64);
    resp ra = call("entropy", a);
    resp rj = call("entropy", "{\"distribution\": {\"type\": \"categorical\", \"logits\": "
                              "[[0.1, 2.0, -1.0], [1.0, 1.5, -0.25]]}, \"estimator\": \"score\", "
                              "\"samples\": 4, \"seed\": 3}");
    expect_ok(ra);
    expect_same_body(ra, rj);
    resp_free(&ra);
    resp_free(&rj);
    free(a);
    free(t64);
    /* float32: values widened to double */
    float lf[6];
    for (int k = 0; k < 6; k++) lf[k] = (float)lg[k];
    char *t32 = tensor_json("float32", 2, d2, lf, sizeof lf);
    a = fmt("{\"distribution\": {\"type\": \"categorical\", \"logits\": %s}}", t32);
    char *j = fmt("{\"distribution\": {\"type\": \"categorical\", \"logits\": [[%.17g, %.17g, %.17g], "
                  "[%.17g, %.17g, %.17g]]}}", (double)lf[0], (double)lf[1], (double)lf[2],
                  (double)lf[3], (double)lf[4], (double)lf[5]);
    expect_same_answers("entropy", a, j);
    free(a);
    free(j);
    free(t32);
    /* integers: int32 and int64 actions; a 1-D tensor is a single row */
    int32_t x32[4] = {0, 2, 2, 1};
    int64_t x64[4] = {0, 2, 2, 1};
    size_t d1[1] = {4}, d12[2] = {1, 4};
    char *i32 = tensor_json("int32", 2, d12, x32, sizeof x32);
    char *i64 = tensor_json("int64", 2, d12, x64, sizeof x64);
    char *s64 = tensor_json("int64", 1, d1, x64, sizeof x64);
    const char *want = "{\"distribution\": {\"type\": \"categorical\", \"logits\": [[0.5, 1, 2]]}, "
                       "\"x\": [[0, 2, 2, 1]]}";
    rj = call("log_prob", want);
    expect_ok(rj);
    char *ts[2] = {i32, i64};
    for (int k = 0; k < 2; k++) {
        a = fmt("{\"distribution\": {\"type\": \"categorical\", \"logits\": [[0.5, 1, 2]]}, \"x\": %s}",
                ts[k]);
        ra = call("log_prob", a);
        expect_same_body(ra, rj);
        resp_free(&ra);
        free(a);
    }
    resp_free(&rj);
    a = fmt("{\"distribution\": {\"type\": \"categorical\", \"logits\": [0.5, 1, 2]}, \"x\": %s}", s64);
    ra = call("log_prob", a);
    rj = call("log_prob", "{\"distribution\": {\"type\": \"categorical\", \"logits\": [0.5, 1, 2]}, "
                          "\"x\": [0, 2, 2, 1]}");
    expect_ok(ra);
    expect_same_body(ra, rj);
    resp_free(&ra);
    resp_free(&rj);
    free(a);
    /* actions of the sampled discrete actor as int32 */
    a = fmt("{\"logits\": [[0.5, 1, 2]], \"actions\": %s, \"q\": [[1, 2, 3, 4]], \"alpha\": 0.3}", i32);
    ra = call("sac/discrete/actor", a);
    rj = call("sac/discrete/actor", "{\"logits\": [[0.5, 1, 2]], \"actions\": [[0, 2, 2, 1]], "
                                    "\"q\": [[1, 2, 3, 4]], \"alpha\": 0.3}");
    expect_ok(ra);
    expect_same_body(ra, rj);
    resp_free(&ra);
    resp_free(&rj);
    free(a);
    free(i32);
    free(i64);
    free(s64);
}
END_TEST

/* /v1/sample's base64 output fed back as /v1/reparam's eps. */
/* Long base64 tensors skip jansson's string lexer (api_lift.h): the answers
 * must be exactly those of the same numbers as JSON text, and every edge
 * of the lifting must behave as if there were none. */
START_TEST(long_tensors_lifted_out_of_the_lexer) {
    enum { B = 64, K = 5 }; /* 2560 bytes: 3416 base64 characters */
    double lg[B * K];
    for (int k = 0; k < B * K; k++) lg[k] = sin(0.37 * k + 1.0) * 3.0;
    size_t d2[2] = {B, K};
    char *t64 = tensor_json("float64", 2, d2, lg, sizeof lg);
    sb js = {0};
    sb_arr(&js, lg, NULL, 2, d2);
    char *jarr = sb_take(&js);
    const char *tail = "\"estimator\": \"score\", \"samples\": 3, \"seed\": 5";
    char *a = fmt("{\"distribution\": {\"type\": \"categorical\", \"logits\": %s}, %s}", t64, tail);
    char *j = fmt("{\"distribution\": {\"type\": \"categorical\", \"logits\": %s}, %s}", jarr, tail);
    resp ra = call("entropy", a), rj = call("entropy", j);
    expect_ok(ra);
    expect_same_body(ra, rj);
    resp_free(&ra);
    free(a);

    /* the same, with "\/" escapes in the string (not lifted: jansson
     * unescapes it) and with blanks around the colon */
    char *b = b64_encode(lg, sizeof lg);
    sb es = {0};
    for (const char *q = b; *q; q++) sb_printf(&es, *q == '/' ? "\\/" : "%c", *q);
    char *esc = sb_take(&es);
    const char *forms[] = {"{\"dtype\": \"float64\", \"shape\": [64, 5], \"data\": \"%s\"}",
                           "{\"data\"  :\n \"%s\", \"dtype\": \"float64\", \"shape\": [64, 5]}"};
    for (int f = 0; f < 2; f++) {
        char *t = fmt(forms[f], f ? b : esc);
        a = fmt("{\"distribution\": {\"type\": \"categorical\", \"logits\": %s}, %s}", t, tail);
        ra = call("entropy", a);
        expect_same_body(ra, rj);
        resp_free(&ra);
        free(a);
        free(t);
    }
    resp_free(&rj);

    /* in /v1/batch items */
    a = fmt("{\"requests\": [{\"op\": \"entropy\", \"body\": {\"distribution\": {\"type\": "
            "\"categorical\", \"logits\": %s}}}, {\"op\": \"entropy\", \"body\": {\"distribution\": "
            "{\"type\": \"categorical\", \"logits\": %s}}}]}", t64, t64);
    free(j);
    j = fmt("{\"requests\": [{\"op\": \"entropy\", \"body\": {\"distribution\": {\"type\": "
            "\"categorical\", \"logits\": %s}}}, {\"op\": \"entropy\", \"body\": {\"distribution\": "
            "{\"type\": \"categorical\", \"logits\": %s}}}]}", jarr, jarr);
    expect_same_answers("batch", a, j);
    free(a);
    free(j);

    /* invalid JSON after a lifted string: the line and column of the body
     * sent, not of the copy jansson parsed first */
    a = fmt("{\"distribution\": {\"type\": \"categorical\", \"logits\": %s}, \"seed\": 1 x}", t64);
    char *col = fmt("column %zu", strlen(a) - 1);
    ra = call("entropy", a);
    expect_error(ra, 400, "invalid_json", NULL);
    ck_assert_msg(strstr(ra.body, col), "%s does not name %s", ra.body, col);
    resp_free(&ra);
    free(a);
    free(col);
    /* a duplicate key beside a lifted string is still refused */
    a = fmt("{\"distribution\": {\"type\": \"categorical\", \"logits\": {\"dtype\": \"float64\", "
            "\"shape\": [64, 5], \"data\": \"%s\", \"data\": \"%s\"}}}", b, b);
    ra = call("entropy", a);
    expect_error(ra, 400, "invalid_argument", "distribution.logits.data");
    ck_assert_ptr_nonnull(strstr(ra.body, "duplicate"));
    resp_free(&ra);
    free(a);
    /* a tag a client makes up is just a string that is not base64 */
    a = "{\"distribution\": {\"type\": \"categorical\", \"logits\": {\"dtype\": \"float64\", "
        "\"shape\": [1, 1], \"data\": \"~gs:0123456789abcdef:0\"}}}";
    ra = call("entropy", a);
    expect_error(ra, 400, "invalid_argument", "distribution.logits.data");
    resp_free(&ra);
    /* a long string with a byte JSON refuses, or a byte base64 refuses */
    size_t n = strlen(b);
    char bad[2] = {1, '!'};
    const char *codes[2] = {"invalid_json", "invalid_argument"};
    for (int k = 0; k < 2; k++) {
        char *c = strdup(b);
        c[n / 2] = bad[k];
        a = fmt("{\"distribution\": {\"type\": \"categorical\", \"logits\": {\"dtype\": "
                "\"float64\", \"shape\": [64, 5], \"data\": \"%s\"}}}", c);
        ra = call("entropy", a);
        expect_error(ra, 400, codes[k], k ? "distribution.logits.data" : NULL);
        resp_free(&ra);
        free(a);
        free(c);
    }
    /* escapes in a long string are jansson's (an escaped quote before the
     * real end, a backslash at its end): never lifted, so the tensor reader
     * refuses the unescaped text, and the JSON after the string still parses */
    const char *esc_forms[] = {"%.*s\\\"%s", "%.*s%s\\\\"};
    for (int k = 0; k < 2; k++) {
        char *c = fmt(esc_forms[k], (int)(n / 2), b, b + n / 2);
        a = fmt("{\"distribution\": {\"type\": \"categorical\", \"logits\": {\"dtype\": "
                "\"float64\", \"shape\": [64, 5], \"data\": \"%s\"}}, \"seed\": 1}", c);
        ra = call("entropy", a);
        expect_error(ra, 400, "invalid_argument", "distribution.logits.data");
        resp_free(&ra);
        free(a);
        free(c);
    }
    /* a non-finite value anywhere in a long tensor is named by its index */
    size_t at[] = {0, 31, 32, 63, 100, B * K - 1};
    for (int k = 0; k < 6; k++) {
        double saved = lg[at[k]];
        lg[at[k]] = k % 2 ? NAN : -INFINITY;
        char *t = tensor_json("float64", 2, d2, lg, sizeof lg);
        a = fmt("{\"distribution\": {\"type\": \"categorical\", \"logits\": %s}}", t);
        char *field = fmt("distribution.logits[%zu][%zu]", at[k] / K, at[k] % K);
        ra = call("entropy", a);
        expect_error(ra, 400, "invalid_argument", field);
        resp_free(&ra);
        free(field);
        free(a);
        free(t);
        lg[at[k]] = saved;
    }
    free(esc);
    free(b);
    free(jarr);
    free(t64);
}
END_TEST

/* The scan itself: what is lifted, what the copy holds, what maps back. */
START_TEST(lift_scan_and_lookup) {
    char *b1 = malloc(API_LIFT_MIN + 1), *b2 = malloc(API_LIFT_MIN);
    memset(b1, 'A', API_LIFT_MIN + 1);
    memset(b2, 'z', API_LIFT_MIN);
    b1[API_LIFT_MIN] = '\0';
    b2[API_LIFT_MIN - 1] = '\0'; /* one short of the minimum */
    char *body = fmt("{\"a\": {\"data\": \"%s\"}, \"s\": \"x\\\"data\\\"\", \"data\" : \"%s=\", "
                     "\"b\": [\"data\", \"%s\"], \"c\": {\"data\": \"%s\"}}", b1, b1, b1, b2);
    api_lift l;
    ck_assert_int_eq(api_lift_scan(&l, body, strlen(body)), 1);
    ck_assert_uint_eq(l.n, 2); /* the two "data" values; not the list item, not the short one */
    ck_assert_uint_eq(l.spans[0].n, API_LIFT_MIN);
    ck_assert_uint_eq(l.spans[1].n, API_LIFT_MIN + 1);
    ck_assert_int_eq(l.spans[1].p[API_LIFT_MIN], '=');
    ck_assert_uint_lt(l.len, strlen(body) - 2 * API_LIFT_MIN + 100);
    /* the copy is JSON whose "data" strings are the tags */
    json_error_t e;
    json_t *root = json_loadb(l.body, l.len, 0, &e);
    ck_assert_msg(root != NULL, "%s", e.text);
    json_t *d0 = json_object_get(json_object_get(root, "a"), "data");
    json_t *d1 = json_object_get(root, "data");
    ck_assert_ptr_eq(api_lift_find(&l, json_string_value(d0), json_string_length(d0)),
                     &l.spans[0]);
    ck_assert_ptr_eq(api_lift_find(&l, json_string_value(d1), json_string_length(d1)),
                     &l.spans[1]);
    /* decoded: 1024 'A's are 768 zero bytes, and so is the padded one */
    for (int k = 0; k < 2; k++) {
        ck_assert_uint_eq(l.spans[k].nbytes, 768);
        for (size_t j = 0; j < 768; j++) ck_assert_int_eq(l.spans[k].bytes[j], 0);
    }
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(root, "c"), "data")), b2);
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(root, "b"), 1)), b1);
    /* strings that look like tags but are not */
    char fake[64];
    snprintf(fake, sizeof fake, "%.*s9", (int)l.tag_len, l.tag);
    ck_assert_ptr_null(api_lift_find(&l, fake, strlen(fake)));
    snprintf(fake, sizeof fake, "%.*sx", (int)l.tag_len, l.tag);
    ck_assert_ptr_null(api_lift_find(&l, fake, strlen(fake)));
    snprintf(fake, sizeof fake, "%.*s0", (int)l.tag_len, l.tag);
    ck_assert_ptr_null(api_lift_find(NULL, fake, strlen(fake)));
    json_decref(root);
    api_lift_free(&l);
    free(body);
    /* nothing to lift; an unterminated string stops the scan */
    body = fmt("{\"data\": \"%s\\/\"}", b1);
    ck_assert_int_eq(api_lift_scan(&l, body, strlen(body)), 0);
    ck_assert_ptr_null(l.body);
    api_lift_free(&l);
    free(body);
    body = fmt("{\"data\": \"==%s\"}", b1);
    ck_assert_int_eq(api_lift_scan(&l, body, strlen(body)), 0);
    ck_assert_ptr_null(l.body);
    api_lift_free(&l);
    free(body);
    body = fmt("{\"data\": \"%s", b1);
    ck_assert_int_eq(api_lift_scan(&l, body, strlen(body)), 0);
    api_lift_free(&l);
    free(body);
    free(b1);
    free(b2);
}
END_TEST

/* The vector base64 decoder agrees with the portable one byte for
 * byte: valid strings of every length mod 32, every byte value planted at
 * positions across the blocks, outputs too small; the encoder agrees with
 * the tests' own. */
START_TEST(base64_paths_agree) {
    enum { MAXB = 700 };
    unsigned char data[MAXB], o1[MAXB + 64], o2[MAXB + 64];
    uint64_t st = 42;
    for (size_t k = 0; k < MAXB; k++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        data[k] = (unsigned char)(st >> 56);
    }
    for (size_t n = 0; n <= MAXB; n += (n < 200 ? 1 : 37)) {
        char *e = b64_encode(data, n);
        size_t len = strlen(e);
        char *enc = malloc(len + 1);
        api_b64_encode(enc, data, n);
        ck_assert_int_eq(memcmp(enc, e, len), 0);
        free(enc);
        /* valid, with and without padding, with room and short of it */
        for (int unpad = 0; unpad < 2; unpad++) {
            size_t l = len;
            while (unpad && l && e[l - 1] == '=') l--;
            size_t caps[] = {n, n + 3, n ? n - 1 : 0, n / 2};
            for (int c = 0; c < 4; c++) {
                long a = api_b64_decode(e, l, o1, caps[c]);
                long b = api_b64_decode_portable(e, l, o2, caps[c], 0, 0);
                ck_assert_int_eq(a, b);
                if (a > 0 && (size_t)a <= caps[c]) ck_assert_int_eq(memcmp(o1, o2, (size_t)a), 0);
            }
            long a = api_b64_decode(e, l, o1, n + 3);
            ck_assert_int_eq(a, (long)n);
            ck_assert_int_eq(memcmp(o1, data, n), 0);
        }
        /* every byte value at a few positions */
        if (len >= 96 && n % 3 == 0) {
            size_t pos[] = {0, 31, 32, 45, len - 40, len - 1};
            for (int pi = 0; pi < 6; pi++) {
                for (int v = 0; v < 256; v++) {
                    char saved = e[pos[pi]];
                    e[pos[pi]] = (char)v;
                    long a = api_b64_decode(e, len, o1, n + 3);
                    long b = api_b64_decode_portable(e, len, o2, n + 3, 0, 0);
                    ck_assert_msg(a == b, "n %zu pos %zu byte %d: %ld vs %ld", n, pos[pi], v, a, b);
                    if (a > 0) ck_assert_int_eq(memcmp(o1, o2, (size_t)a), 0);
                    e[pos[pi]] = saved;
                }
            }
        }
        free(e);
    }
}
END_TEST

START_TEST(tensor_output_round_trips_as_input) {
    const char *dist = "{\"type\": \"tanh_normal\", \"loc\": [[0, 1], [0.5, -1]], \"scale\": [[0.3, 1.2], "
                       "[1, 0.5]], \"low\": [-2, -1], \"high\": [2, 1]}";
    char *sb64 = fmt("{\"distribution\": %s, \"samples\": 3, \"seed\": 11, \"output\": \"base64\"}", dist);
    resp s = call("sample", sb64);
    expect_ok(s);
    json_t *eps = json_object_get(s.j, "eps");
    ck_assert_str_eq(json_string_value(json_object_get(eps, "dtype")), "float64");
    char *et = json_dumps(eps, JSON_COMPACT);
    const char *gx = "[[[1, 2], [3, 4], [5, 6]], [[1, 0], [0, 1], [1, 1]]]";
    char *a = fmt("{\"distribution\": %s, \"eps\": %s, \"grad_x\": %s}", dist, et, gx);
    char *b = fmt("{\"distribution\": %s, \"seed\": 11, \"grad_x\": %s}", dist, gx);
    resp ra = call("reparam", a), rb = call("reparam", b);
    expect_ok(ra);
    expect_ok(rb);
    char *want = fmt("{\"seed\":11,%s", ra.body + 1);
    ck_assert_str_eq(rb.body, want);
    free(want);
    resp_free(&ra);
    resp_free(&rb);
    free(a);
    free(b);
    free(et);
    resp_free(&s);
    free(sb64);
}
END_TEST

START_TEST(tensor_errors_name_the_field) {
    double v[6] = {1, 2, 3, 4, 5, 6};
    int32_t iv[2] = {0, 1};
    size_t d23[2] = {2, 3}, d22[2] = {2, 2}, d3[1] = {3}, d12[2] = {1, 2};
    char *good = tensor_json("float64", 2, d23, v, sizeof v);
    char *short_ = tensor_json("float64", 2, d23, v, 5 * sizeof(double));
    char *long_ = tensor_json("float64", 2, d22, v, 6 * sizeof(double));
    char *ints = tensor_json("int32", 2, d12, iv, sizeof iv);
    char *flt = tensor_json("float64", 2, d12, v, 2 * sizeof(double));
    char *flat = tensor_json("float64", 1, d3, v, 3 * sizeof(double));
    double bad[6] = {1, 2, 3, 4, INFINITY, 6};
    char *inf = tensor_json("float64", 2, d23, bad, sizeof bad);
    float fbad[6] = {1, 2, 3, 4, 5, NAN};
    char *nan32 = tensor_json("float32", 2, d23, fbad, sizeof fbad);
    struct { const char *op; char *body; const char *field; } cases[] = {
        {"entropy", fmt("{\"distribution\": {\"type\": \"categorical\", \"logits\": %s}}", short_),
         "distribution.logits.data"},
        {"entropy", fmt("{\"distribution\": {\"type\": \"categorical\", \"logits\": %s}}", long_),
         "distribution.logits.data"},
        {"entropy", fmt("{\"distribution\": {\"type\": \"normal\", \"loc\": %s, \"log_scale\": [[1, 2, 3]]}}",
                        good), "distribution.log_scale"},
        {"entropy", fmt("{\"distribution\": {\"type\": \"normal\", \"loc\": [[1, 2], [3, 4]], "
                        "\"log_scale\": %s}}", good), "distribution.log_scale"},
        {"entropy", fmt("{\"distribution\": {\"type\": \"normal\", \"loc\": [[1, 2, 3]], "
                        "\"log_scale\": %s}}", good), "distribution.log_scale"},
        {"entropy", fmt("{\"distribution\": {\"type\": \"categorical\", \"logits\": %s}}", ints),
         "distribution.logits.dtype"},
        {"log_prob", fmt("{\"distribution\": {\"type\": \"categorical\", \"logits\": [[1, 2]]}, \"x\": %s}",
                         flt), "x.dtype"},
        {"log_prob", fmt("{\"distribution\": {\"type\": \"categorical\", \"logits\": [[1, 2], [3, 4]]}, "
                         "\"x\": %s}", ints), "x"},
        {"log_prob", fmt("{\"distribution\": {\"type\": \"normal\", \"loc\": [[1, 2]], \"log_scale\": "
                         "[[1, 2]]}, \"x\": %s}", flat), "x.shape"},
        {"entropy", fmt("{\"distribution\": {\"type\": \"categorical\", \"logits\": %s}}", inf),
         "distribution.logits[1][1]"},
        {"entropy", fmt("{\"distribution\": {\"type\": \"categorical\", \"logits\": %s}}", nan32),
         "distribution.logits[1][2]"},
        {"entropy", strdup("{\"distribution\": {\"type\": \"categorical\", \"logits\": {\"dtype\": "
                           "\"float64\", \"shape\": [1], \"data\": \"AAAA*AAAAAA=\"}}}"),
         "distribution.logits.data"},
        {"entropy", strdup("{\"distribution\": {\"type\": \"categorical\", \"logits\": {\"dtype\": "
                           "\"float16\", \"shape\": [1], \"data\": \"AAA=\"}}}"),
         "distribution.logits.dtype"},
        {"entropy", strdup("{\"distribution\": {\"type\": \"categorical\", \"logits\": {\"dtype\": "
                           "\"float64\", \"shape\": [0], \"data\": \"\"}}}"),
         "distribution.logits.shape[0]"},
        {"entropy", strdup("{\"distribution\": {\"type\": \"categorical\", \"logits\": {\"dtype\": "
                           "\"float64\", \"shape\": 1, \"data\": \"AAAAAAAAAAA=\"}}}"),
         "distribution.logits.shape"},
        {"entropy", strdup("{\"distribution\": {\"type\": \"categorical\", \"logits\": {\"dtype\": "
                           "\"float64\", \"data\": \"AAAAAAAAAAA=\"}}}"),
         "distribution.logits.shape"},
        {"entropy", strdup("{\"distribution\": {\"type\": \"categorical\", \"logits\": {\"dtype\": "
                           "\"float64\", \"shape\": [1], \"data\": 5}}}"),
         "distribution.logits.data"},
        {"entropy", strdup("{\"distribution\": {\"type\": \"categorical\", \"logits\": {\"dtype\": "
                           "\"float64\", \"shape\": [1, 1, 1], \"data\": \"AAAAAAAAAAA=\"}}}"),
         "distribution.logits.shape"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        resp r = call(cases[k].op, cases[k].body);
        ck_assert_msg(r.status == 400, "case %zu: %d %s", k, r.status, r.body);
        expect_error(r, 400, "invalid_argument", cases[k].field);
        resp_free(&r);
        free(cases[k].body);
    }
    /* a tensor that claims to be enormous */
    call_error("entropy", "{\"distribution\": {\"type\": \"categorical\", \"logits\": {\"dtype\": "
                          "\"float64\", \"shape\": [1073741824, 1048576], \"data\": \"\"}}}",
               413, "payload_too_large", "*");
    free(good);
    free(short_);
    free(long_);
    free(ints);
    free(flt);
    free(flat);
    free(inf);
    free(nan32);
}
END_TEST

/* ==== limits ====================================================================== */

START_TEST(requests_over_the_limits_are_413) {
    api_limits lim;
    api_limits_default(&lim);
    lim.max_numbers = 1000;
    struct { const char *op, *body; int status; const char *field; } cases[] = {
        /* 10 rows x 11 samples x 10 logits */
        {"entropy", "{\"distribution\": {\"type\": \"categorical\", \"logits\": %s}, \"estimator\": "
                    "\"score\", \"samples\": 11}", 413, "*"},
        {"entropy", "{\"distribution\": {\"type\": \"categorical\", \"logits\": %s}, \"estimator\": "
                    "\"score\", \"samples\": 10}", 200, NULL},
        /* exact: 100 numbers, samples ignored (but bounded) */
        {"entropy", "{\"distribution\": {\"type\": \"categorical\", \"logits\": %s}, \"samples\": 10}",
         200, NULL},
        {"entropy", "{\"distribution\": {\"type\": \"categorical\", \"logits\": %s}, \"samples\": 1001}",
         413, "samples"},
        {"sample", "{\"distribution\": {\"type\": \"categorical\", \"logits\": %s}, \"samples\": 11}",
         413, "*"},
        {"sample", "{\"distribution\": {\"type\": \"categorical\", \"logits\": %s}, \"samples\": 10}",
         200, NULL},
        {"sac/discrete/policy", "{\"q\": %s, \"alpha\": 1, \"samples\": 11}", 413, "*"},
        {"sac/discrete/policy", "{\"q\": %s, \"alpha\": 1, \"samples\": 5000000000}", 413, "samples"},
    };
    double z[100];
    for (int k = 0; k < 100; k++) z[k] = k % 7;
    sb s = {0};
    size_t d[2] = {10, 10};
    sb_arr(&s, z, NULL, 2, d);
    char *m = sb_take(&s);
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        char *b = fmt(cases[k].body, m);
        resp r = call_with(cases[k].op, b, &lim, NULL);
        if (cases[k].status == 200) expect_ok(r);
        else expect_error(r, 413, "payload_too_large", cases[k].field);
        resp_free(&r);
        free(b);
    }
    free(m);
    /* the default limit: samples beyond 2^26 */
    call_error("sample", "{\"distribution\": {\"type\": \"categorical\", \"logits\": [1, 2]}, "
                         "\"samples\": 4294967296}", 413, "payload_too_large", "samples");
    call_error("sample", "{\"distribution\": {\"type\": \"normal\", \"loc\": [[1, 2], [1, 2]], "
                         "\"log_scale\": [[0, 0], [0, 0]]}, \"samples\": 20000000}", 413,
               "payload_too_large", "*");
}
END_TEST

/* ==== /v1/batch ====================================================================== */

/* The items of the batch test, and what each gives alone. */
static const char *const ITEMS[][2] = {
    {"entropy", "{\"distribution\": {\"type\": \"categorical\", \"logits\": [[1, 2], [0, 0]]}}"},
    {"sample", "{\"distribution\": {\"type\": \"normal\", \"loc\": [0, 1], \"log_scale\": [0, 0]}, "
               "\"samples\": 3, \"seed\": 8}"},
    {"score", "{\"distribution\": {\"type\": \"categorical\", \"logits\": [0, 1, 2]}, \"seed\": 2, "
              "\"f\": [1, 2, 3, 4]}"},
    {"entropy", "{\"distribution\": {\"type\": \"tanh_normal\", \"loc\": [0], \"scale\": [1]}, "
                "\"estimator\": \"exact\"}"},
    {"sac/discrete/actor", "{\"logits\": [[0.1, 2.0, -1.0]], \"q\": [[1, 2, 3]], \"alpha\": 0.2}"},
    {"sac/continuous/actor", "{\"distribution\": {\"type\": \"tanh_normal\", \"loc\": [[0, 1]], "
                             "\"log_scale\": [[-1, 0]]}, \"alpha\": 0.2, \"seed\": 4, \"dq_da\": "
                             "[[[1, 0], [0, 1]]], \"q\": [[1, 2]], \"target_entropy\": -2}"},
    {"sample", "{\"distribution\": {\"type\": \"categorical\", \"logits\": [1, 2]}, \"bogus\": 1}"},
    {"reparam", "{\"distribution\": {\"type\": \"normal\", \"loc\": [0], \"log_scale\": [0]}, "
                "\"eps\": [[1]], \"grad_x\": [[1]], \"output\": \"json\"}"},
    {"log_prob", "{\"distribution\": {\"type\": \"normal\", \"loc\": [0], \"log_scale\": [0]}, "
                 "\"x\": [[1e200]]}"},
    {"sac/discrete/policy", "{\"q\": [1, 2, 3], \"alpha\": 0.5, \"samples\": 2, \"seed\": 1}"},
};
#define N_ITEMS (sizeof ITEMS / sizeof *ITEMS)

static char *batch_body(const char *output) {
    sb s = {0};
    sb_printf(&s, "{\"requests\": [");
    for (size_t k = 0; k < N_ITEMS; k++)
        sb_printf(&s, "%s{\"op\": \"%s\", \"body\": %s}", k ? ", " : "", ITEMS[k][0], ITEMS[k][1]);
    /* the malformed ones */
    sb_printf(&s, ", {\"op\": \"nope\", \"body\": {}}, {\"op\": \"batch\", \"body\": {\"requests\": []}}, "
                  "{\"op\": \"entropy\"}, {\"body\": {}}, 7, {\"op\": \"entropy\", \"body\": [1]}, "
                  "{\"op\": \"entropy\", \"body\": {}, \"extra\": 1}, {\"op\": 5, \"body\": {}}]");
    if (output) sb_printf(&s, ", \"output\": \"%s\"", output);
    sb_printf(&s, "}");
    return sb_take(&s);
}

static void expect_batch(const resp *r, int base64) {
    json_t *items = json_object_get(r->j, "responses");
    const char *k1[] = {"responses", NULL};
    expect_keys(r->j, k1);
    ck_assert_uint_eq(json_array_size(items), N_ITEMS + 8);
    for (size_t k = 0; k < N_ITEMS; k++) {
        json_t *it = json_array_get(items, k);
        const char *ki[] = {"status", "body", NULL};
        expect_keys(it, ki);
        /* an item's own "output" wins over the batch's */
        const char *body = ITEMS[k][1];
        char *b = base64 && !strstr(body, "\"output\"")
                      ? fmt("%.*s, \"output\": \"base64\"}", (int)strlen(body) - 1, body)
                      : strdup(body);
        resp alone = call(ITEMS[k][0], b);
        ck_assert_int_eq(json_integer_value(json_object_get(it, "status")), alone.status);
        ck_assert_msg(json_equal(json_object_get(it, "body"), alone.j), "item %zu: %s vs %s", k,
                      json_dumps(json_object_get(it, "body"), JSON_COMPACT), alone.body);
        resp_free(&alone);
        free(b);
    }
    /* unknown op and nested batch: 404 naming op; the malformed: 400 */
    int want[] = {404, 404, 400, 400, 400, 400, 400, 400};
    const char *fields[] = {"op", "op", "body", "op", NULL, "body", "extra", "op"};
    for (size_t k = 0; k < 8; k++) {
        json_t *it = json_array_get(items, N_ITEMS + k);
        ck_assert_int_eq(json_integer_value(json_object_get(it, "status")), want[k]);
        json_t *e = jget(json_object_get(it, "body"), "error");
        ck_assert_str_eq(json_string_value(json_object_get(e, "code")),
                         want[k] == 404 ? "not_found" : "invalid_argument");
        const char *f = json_string_value(json_object_get(e, "field"));
        if (fields[k]) ck_assert_msg(f && !strcmp(f, fields[k]), "item %zu: field %s", k, f);
        else ck_assert_ptr_null(f);
    }
}

/* api_handle_small answers small work exactly as api_handle does, answers
 * refusals itself, and hands back (1, nothing written) a valid request whose
 * work is over split_min, a whole batch counted together. */
START_TEST(small_only_defers_large_work) {
    api_limits lim;
    api_limits_default(&lim);
    lim.split_min = 100;
    const char *small = "{\"distribution\": {\"type\": \"normal\", \"loc\": [[0.5, 1]], "
                        "\"log_scale\": [[0, -1]]}, \"estimator\": \"reparam\", "
                        "\"samples\": 50, \"seed\": 7}"; /* 1 x 50 x 2 = 100 */
    const char *large = "{\"distribution\": {\"type\": \"normal\", \"loc\": [[0.5, 1]], "
                        "\"log_scale\": [[0, -1]]}, \"estimator\": \"reparam\", "
                        "\"samples\": 51, \"seed\": 7}"; /* 102 */
    const char *bad = "{\"distribution\": {\"type\": \"normal\", \"loc\": [[0.5, 1]], "
                      "\"log_scale\": [[0, -1]]}, \"samples\": 0, \"seed\": 7}";
    struct {
        const char *op, *body;
        int deferred;
    } cases[] = {
        {"entropy", small, 0},
        {"entropy", large, 1},
        {"entropy", bad, 0},
        {"entropy", "{", 0},
        {"batch", "{\"requests\": [{\"op\": \"entropy\", \"body\": {\"distribution\": "
                  "{\"type\": \"normal\", \"loc\": [[0.5, 1]], \"log_scale\": [[0, -1]]}, "
                  "\"estimator\": \"reparam\", \"samples\": 30, \"seed\": 1}}, {\"op\": \"entropy\", \"body\": "
                  "{\"distribution\": {\"type\": \"normal\", \"loc\": [[0.5, 1]], "
                  "\"log_scale\": [[0, -1]]}, \"estimator\": \"reparam\", \"samples\": 30, \"seed\": 2}}]}", 1},
        {"batch", "{\"requests\": [{\"op\": \"entropy\", \"body\": {\"distribution\": "
                  "{\"type\": \"normal\", \"loc\": [[0.5, 1]], \"log_scale\": [[0, -1]]}, "
                  "\"estimator\": \"reparam\", \"samples\": 30, \"seed\": 1}}]}", 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        size_t len = strlen(cases[k].body);
        api_result a, b;
        memset(&a, 0xa5, sizeof a);
        int rc = api_handle_small(cases[k].op, cases[k].body, len, &lim, &a);
        ck_assert_int_eq(api_handle(cases[k].op, cases[k].body, len, &lim, NULL, &b), 0);
        if (cases[k].deferred) {
            ck_assert_msg(rc == 1, "case %zu: rc %d, want deferred", k, rc);
            ck_assert_ptr_null(a.body);
            ck_assert_int_eq(a.status, 0);
            ck_assert_int_eq(b.status, 200);
        } else {
            ck_assert_msg(rc == 0, "case %zu: rc %d, want an answer", k, rc);
            ck_assert_int_eq(a.status, b.status);
            ck_assert_uint_eq(a.len, b.len);
            ck_assert_int_eq(memcmp(a.body, b.body, a.len), 0);
            ck_assert_uint_eq(a.rows, b.rows);
            ck_assert_uint_eq(a.samples, b.samples);
            free(a.body);
        }
        free(b.body);
    }
    ck_assert_int_eq(api_handle_small("nope", "{}", 2, &lim, &(api_result){0}), -1);
}
END_TEST

START_TEST(batch_items_in_order_and_isolated) {
    char *b = batch_body(NULL);
    resp r = call("batch", b);
    expect_ok(r);
    expect_batch(&r, 0);
    /* rows and samples of the items add up */
    size_t rows = 0;
    for (size_t k = 0; k < N_ITEMS; k++) {
        resp a = call(ITEMS[k][0], ITEMS[k][1]);
        rows += a.rows;
        resp_free(&a);
    }
    ck_assert_uint_eq(r.rows, rows);
    resp_free(&r);
    free(b);
    b = batch_body("base64");
    r = call("batch", b);
    expect_ok(r);
    expect_batch(&r, 1);
    resp_free(&r);
    free(b);
    b = batch_body("json");
    r = call("batch", b);
    expect_ok(r);
    expect_batch(&r, 0);
    resp_free(&r);
    free(b);
}
END_TEST

START_TEST(batch_on_threads_is_byte_identical) {
    char *b = batch_body("base64");
    resp r = expect_parallel_identical("batch", b);
    expect_ok(r);
    resp_free(&r);
    free(b);
    /* items large enough to be split across the workers themselves */
    tdist t = tdist_make(GS_TANH_NORMAL, 32, 3, 900, 0, 1);
    tdist c = tdist_make(GS_CATEGORICAL, 32, 6, 901, 0, 0);
    sb s = {0};
    sb_printf(&s, "{\"requests\": [");
    for (int k = 0; k < 6; k++) {
        sb_printf(&s, "%s{\"op\": \"%s\", \"body\": {\"distribution\": ", k ? ", " : "",
                  k % 2 ? "sample" : "entropy");
        sb_tdist(&s, k % 3 ? &t : &c, 0);
        sb_printf(&s, ", \"samples\": %d, \"seed\": %d%s}}", 4 + k, k,
                  k % 3 ? "" : ", \"estimator\": \"score\"");
    }
    sb_printf(&s, "]}");
    b = sb_take(&s);
    r = expect_parallel_identical("batch", b);
    expect_ok(r);
    resp_free(&r);
    free(b);
    tdist_free(&t);
    tdist_free(&c);
}
END_TEST

START_TEST(batch_errors_and_limits) {
    call_error("batch", "{}", 400, "invalid_argument", "requests");
    call_error("batch", "{\"requests\": {}}", 400, "invalid_argument", "requests");
    call_error("batch", "{\"requests\": [], \"mode\": 1}", 400, "invalid_argument", "mode");
    call_error("batch", "{\"requests\": [], \"output\": \"hex\"}", 400, "invalid_argument", "output");
    resp r = call("batch", "{\"requests\": []}");
    expect_ok(r);
    ck_assert_str_eq(r.body, "{\"responses\":[]}");
    resp_free(&r);
    api_limits lim;
    api_limits_default(&lim);
    lim.max_batch_items = 3;
    const char *item = "{\"op\": \"entropy\", \"body\": {\"distribution\": {\"type\": \"categorical\", "
                       "\"logits\": [1, 2]}}}";
    char *b3 = fmt("{\"requests\": [%s, %s, %s]}", item, item, item);
    char *b4 = fmt("{\"requests\": [%s, %s, %s, %s]}", item, item, item, item);
    r = call_with("batch", b3, &lim, NULL);
    expect_ok(r);
    resp_free(&r);
    r = call_with("batch", b4, &lim, NULL);
    expect_error(r, 413, "payload_too_large", "requests");
    resp_free(&r);
    free(b3);
    free(b4);
    /* the numbers limit: each item fits, the batch does not; an item over
     * it alone is a 413 item */
    api_limits_default(&lim);
    lim.max_numbers = 100;
    const char *i60 = "{\"op\": \"sample\", \"body\": {\"distribution\": {\"type\": \"categorical\", "
                      "\"logits\": [1, 2]}, \"samples\": 30}}";
    const char *i200 = "{\"op\": \"sample\", \"body\": {\"distribution\": {\"type\": \"categorical\", "
                       "\"logits\": [1, 2]}, \"samples\": 100}}";
    char *b = fmt("{\"requests\": [%s, %s]}", i60, i60);
    r = call_with("batch", b, &lim, NULL);
    expect_error(r, 413, "payload_too_large", "requests");
    resp_free(&r);
    free(b);
    b = fmt("{\"requests\": [%s, %s]}", i60, i200);
    r = call_with("batch", b, &lim, NULL);
    expect_ok(r);
    json_t *items = json_object_get(r.j, "responses");
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(items, 0), "status")), 200);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(items, 1), "status")), 413);
    resp_free(&r);
    free(b);
}
END_TEST

/* ==== extreme values ================================================================ */

/* Values at the edges of the doubles, for parameters and per-sample inputs. */
static const double EXTREME[] = {0, 1, -1, 0.5, -2, 1e-300, -1e-300, 5e-324, 1e-10, 1e154,
                                 -1e154, 1e200, -1e200, 1e300, -1e300, 1.7e308, -1.7e308,
                                 800, -800, 709, -745, 40, -40, 1e16};
#define N_EXTREME (sizeof EXTREME / sizeof *EXTREME)

static double pick(uint64_t *st) {
    /* half the time an ordinary value, else an extreme one */
    if (rnd(st, 0, 1) < 0.5) return rnd(st, -3, 3);
    return EXTREME[(size_t)(rnd(st, 0, 1) * N_EXTREME) % N_EXTREME];
}

static void sb_pick_arr(sb *s, uint64_t *st, size_t rank, const size_t *dims, int positive) {
    size_t n = 1;
    for (size_t k = 0; k < rank; k++) n *= dims[k];
    double *v = malloc(n * sizeof *v);
    for (size_t k = 0; k < n; k++) {
        v[k] = pick(st);
        if (positive) v[k] = v[k] == 0 ? 1 : fabs(v[k]);
    }
    sb_arr(s, v, NULL, rank, dims);
    free(v);
}

/* Random requests with extreme numbers on every endpoint: each answer is a
 * 200 whose body a strict JSON parser accepts (no NaN, no Infinity), or an
 * error naming the field at fault; nothing crashes. */
START_TEST(extreme_values_never_leak_nonfinite) {
    uint64_t st = 20261128;
    size_t counts[600] = {0};
    for (int it = 0; it < 2500; it++) {
        size_t B = 1 + (size_t)(rnd(&st, 0, 1) * 2), D = 1 + (size_t)(rnd(&st, 0, 1) * 2),
               M = 1 + (size_t)(rnd(&st, 0, 1) * 3);
        int op = (int)(rnd(&st, 0, 1) * 8) % 8, type = (int)(rnd(&st, 0, 1) * 3) % 3;
        int sigma = rnd(&st, 0, 1) < 0.5, bounds = rnd(&st, 0, 1) < 0.5;
        size_t pd[2] = {B, D}, sd[3] = {B, M, D}, qd[2] = {B, M};
        sb s = {0};
        const char *ops[] = {"entropy", "sample", "log_prob", "reparam", "score",
                             "sac/discrete/actor", "sac/discrete/policy", "sac/continuous/actor"};
        if (op == 3 || op == 7) type = 2 - (rnd(&st, 0, 1) < 0.5 && op == 3);
        if (op == 5 || op == 6) {
            sb_printf(&s, "{\"%s\":", op == 5 ? "logits" : "q");
            sb_pick_arr(&s, &st, 2, pd, 0);
            sb_printf(&s, ",\"alpha\":");
            sb_dbl(&s, fabs(pick(&st)) + 5e-324);
        } else {
            sb_printf(&s, "{\"distribution\":{\"type\":\"%s\",\"%s\":",
                      tdist_type_name((gs_dist_type)type), type ? "loc" : "logits");
            sb_pick_arr(&s, &st, 2, pd, 0);
            if (type) {
                sb_printf(&s, ",\"%s\":", sigma ? "scale" : "log_scale");
                sb_pick_arr(&s, &st, 2, pd, sigma);
            }
            if (type == 2 && bounds) {
                double lo = -fabs(pick(&st)) - 1e-3, hi = fabs(pick(&st)) + 1e-3;
                sb_printf(&s, ",\"low\":[");
                for (size_t k = 0; k < D; k++) sb_printf(&s, "%s%.17g", k ? "," : "", lo);
                sb_printf(&s, "],\"high\":[");
                for (size_t k = 0; k < D; k++) sb_printf(&s, "%s%.17g", k ? "," : "", hi);
                sb_printf(&s, "]");
            }
            sb_printf(&s, "}");
        }
        int use_eps = rnd(&st, 0, 1) < 0.5 && type != 0;
        switch (op) {
        case 0:
            sb_printf(&s, ",\"estimator\":\"%s\",\"samples\":%zu,\"seed\":%d,\"baseline\":\"none\"",
                      type == 0 || rnd(&st, 0, 1) < 0.3 ? "score" : "reparam", M, it);
            break;
        case 1:
            sb_printf(&s, ",\"samples\":%zu,\"seed\":%d", M, it);
            break;
        case 2:
        case 4:
            sb_printf(&s, ",\"x\":");
            if (type == 0) {
                sb_printf(&s, "[");
                for (size_t b = 0; b < B; b++) {
                    sb_printf(&s, "%s[", b ? "," : "");
                    for (size_t m = 0; m < M; m++)
                        sb_printf(&s, "%s%d", m ? "," : "", (int)(rnd(&st, 0, 1) * (double)D) % (int)D);
                    sb_printf(&s, "]");
                }
                sb_printf(&s, "]");
            } else {
                sb_pick_arr(&s, &st, 3, sd, 0);
            }
            if (op == 4) {
                sb_printf(&s, ",\"baseline\":\"none\",\"f\":");
                sb_pick_arr(&s, &st, 2, qd, 0);
            }
            break;
        case 3:
        case 7:
            if (use_eps) {
                sb_printf(&s, ",\"eps\":");
                sb_pick_arr(&s, &st, 3, sd, 0);
            } else {
                sb_printf(&s, ",\"seed\":%d,\"samples\":%zu", it, M);
            }
            sb_printf(&s, op == 3 ? ",\"grad_x\":" : ",\"alpha\":0.5,\"dq_da\":");
            sb_pick_arr(&s, &st, 3, sd, 0);
            sb_printf(&s, op == 3 ? ",\"grad_log_prob\":" : ",\"target_entropy\":-1,\"q\":");
            sb_pick_arr(&s, &st, 2, qd, 0);
            break;
        case 5:
            sb_printf(&s, ",\"target_entropy\":");
            sb_dbl(&s, pick(&st));
            if (rnd(&st, 0, 1) < 0.5) {
                sb_printf(&s, ",\"q\":");
                sb_pick_arr(&s, &st, 2, pd, 0);
            } else {
                sb_printf(&s, ",\"baseline\":\"none\",\"actions\":[");
                for (size_t b = 0; b < B; b++) {
                    sb_printf(&s, "%s[", b ? "," : "");
                    for (size_t m = 0; m < M; m++)
                        sb_printf(&s, "%s%d", m ? "," : "", (int)(rnd(&st, 0, 1) * (double)D) % (int)D);
                    sb_printf(&s, "]");
                }
                sb_printf(&s, "],\"q\":");
                sb_pick_arr(&s, &st, 2, qd, 0);
            }
            break;
        case 6:
            sb_printf(&s, ",\"samples\":%zu,\"seed\":%d", M, it);
            break;
        }
        sb_printf(&s, "}");
        char *b = sb_take(&s);
        resp r = call(ops[op], b); /* strict JSON, or the test fails */
        ck_assert_msg(r.status == 200 || r.status == 400 || r.status == 422, "%s %s: %d %s",
                      ops[op], b, r.status, r.body);
        if (r.status == 400) {
            /* an input whose result would not be finite is named */
            const char *f = json_string_value(jget(r.j, "error.field"));
            ck_assert_msg(f && *f, "%s %s: no field: %s", ops[op], b, r.body);
            ck_assert_str_eq(json_string_value(jget(r.j, "error.code")), "invalid_argument");
        }
        counts[op * 3 + (r.status == 200 ? 0 : r.status == 400 ? 1 : 2)]++;
        resp_free(&r);
        free(b);
    }
    /* both outcomes were exercised on every endpoint */
    for (int op = 0; op < 8; op++)
        ck_assert_msg(counts[op * 3] > 10 && counts[op * 3 + 1] > 10, "op %d: %zu ok, %zu refused",
                      op, counts[op * 3], counts[op * 3 + 1]);
}
END_TEST

int main(void) {
    Suite *s = suite_create("api_io");
    TCase *tc = tcase_create("json");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, invalid_json_reports_line_and_column);
    tcase_add_test(tc, valid_json_that_is_not_a_request);
    tcase_add_test(tc, field_errors_name_their_path);
    tcase_add_test(tc, error_body_and_ops);
    tcase_add_test(tc, info_body);
    tcase_add_test(tc, numbers_are_shortest_round_trip);
    tcase_add_test(tc, dtoa_shortest_and_laid_out);
    suite_add_tcase(s, tc);
    tc = tcase_create("tensors_limits");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, tensor_inputs_equal_json_inputs);
    tcase_add_test(tc, tensor_output_round_trips_as_input);
    tcase_add_test(tc, long_tensors_lifted_out_of_the_lexer);
    tcase_add_test(tc, lift_scan_and_lookup);
    tcase_add_test(tc, base64_paths_agree);
    tcase_add_test(tc, tensor_errors_name_the_field);
    tcase_add_test(tc, requests_over_the_limits_are_413);
    suite_add_tcase(s, tc);
    tc = tcase_create("batch");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, batch_items_in_order_and_isolated);
    tcase_add_test(tc, small_only_defers_large_work);
    tcase_add_test(tc, batch_on_threads_is_byte_identical);
    tcase_add_test(tc, batch_errors_and_limits);
    suite_add_tcase(s, tc);
    tc = tcase_create("extremes");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, extreme_values_never_leak_nonfinite);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
