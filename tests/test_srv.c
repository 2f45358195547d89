/* test_srv.c - unit tests of the server layer without sockets: worker pool, configuration, routing table. */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

/* ==== worker pool =========================================================== */

#define MAX_N 4096

typedef struct {
    atomic_int hits[MAX_N];
    pthread_t caller;
    atomic_int off_caller; /* tasks that ran on another thread */
    srv_pool *pool;
    unsigned sleep_us;
} counts;

static void count_task(void *arg, size_t i) {
    counts *c = arg;
    atomic_fetch_add(&c->hits[i], 1);
    if (!pthread_equal(pthread_self(), c->caller)) atomic_fetch_add(&c->off_caller, 1);
    if (c->sleep_us) usleep(c->sleep_us);
}

static counts *counts_new(srv_pool *p) {
    counts *c = calloc(1, sizeof *c);
    c->caller = pthread_self();
    c->pool = p;
    return c;
}

/* Checks every index in one assertion: Check records each ck_assert with a
 * write(), and thousands per test would dominate the suite's time. */
static void assert_each_once(counts *c, size_t n) {
    for (size_t i = 0; i < MAX_N; i++) {
        int want = i < n, got = atomic_load(&c->hits[i]);
        if (got != want) ck_abort_msg("index %zu of %zu ran %d times", i, n, got);
    }
}

START_TEST(pool_runs_every_index_once) {
    static const size_t workers[] = {1, 2, 3, 8};
    static const size_t ns[] = {0, 1, 2, 3, 7, 64, 1000, MAX_N};
    for (size_t w = 0; w < sizeof workers / sizeof *workers; w++) {
        srv_pool *p = srv_pool_new(workers[w]);
        ck_assert_ptr_nonnull(p);
        api_exec x = srv_pool_exec(p);
        ck_assert_uint_eq(x.workers, workers[w]);
        for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
            counts *c = counts_new(p);
            x.run(x.ctx, ns[k], count_task, c);
            assert_each_once(c, ns[k]);
            free(c);
        }
        srv_pool_free(p);
    }
}
END_TEST

/* n == 1 must run inline: on the calling thread, without a hand-off. */
START_TEST(pool_single_task_runs_on_the_caller) {
    srv_pool *p = srv_pool_new(4);
    for (int r = 0; r < 200; r++) {
        counts *c = counts_new(p);
        srv_pool_run(p, 1, count_task, c);
        assert_each_once(c, 1);
        ck_assert_int_eq(atomic_load(&c->off_caller), 0);
        free(c);
    }
    srv_pool_free(p);
}
END_TEST

START_TEST(pool_of_one_runs_serially_on_the_caller) {
    srv_pool *p = srv_pool_new(1);
    counts *c = counts_new(p);
    srv_pool_run(p, 100, count_task, c);
    assert_each_once(c, 100);
    ck_assert_int_eq(atomic_load(&c->off_caller), 0);
    free(c);
    srv_pool_free(p);
}
END_TEST

START_TEST(pool_uses_its_threads) {
    srv_pool *p = srv_pool_new(4);
    counts *c = counts_new(p);
    c->sleep_us = 2000;
    srv_pool_run(p, 32, count_task, c);
    assert_each_once(c, 32);
    /* The caller cannot have run all 32 two-millisecond tasks while three
     * woken workers stood by. */
    ck_assert_int_gt(atomic_load(&c->off_caller), 0);
    free(c);
    srv_pool_free(p);
}
END_TEST

/* A task that itself runs a parallel loop (a /v1/batch item split by
 * rows). With more outer tasks than workers every worker ends up in a
 * nested run(): the callers taking part is what keeps this from
 * deadlocking. */
typedef struct {
    srv_pool *pool;
    atomic_int inner[64][64];
    size_t depth;
} nested;

typedef struct {
    nested *n;
    size_t outer;
} inner_arg;

static void inner_task(void *arg, size_t i) {
    inner_arg *a = arg;
    atomic_fetch_add(&a->n->inner[a->outer][i], 1);
}

static void outer_task(void *arg, size_t i) {
    nested *n = arg;
    inner_arg a = {n, i};
    srv_pool_run(n->pool, 64, inner_task, &a);
}

START_TEST(pool_nested_runs_do_not_deadlock) {
    for (size_t w = 2; w <= 5; w++) {
        nested *n = calloc(1, sizeof *n);
        n->pool = srv_pool_new(w);
        srv_pool_run(n->pool, 64, outer_task, n);
        for (size_t i = 0; i < 64; i++)
            for (size_t j = 0; j < 64; j++)
                if (atomic_load(&n->inner[i][j]) != 1)
                    ck_abort_msg("workers %zu: inner index [%zu][%zu] ran %d times", w, i, j,
                                 atomic_load(&n->inner[i][j]));
        srv_pool_free(n->pool);
        free(n);
    }
}
END_TEST

/* Several connection threads calling run() at once, some nesting. */
typedef struct {
    srv_pool *pool;
    int ok;
} caller_arg;

static void *caller(void *arg) {
    caller_arg *a = arg;
    a->ok = 1;
    for (int r = 0; r < 50; r++) {
        counts *c = counts_new(a->pool);
        size_t n = (size_t)(r * 37 % 200);
        srv_pool_run(a->pool, n, count_task, c);
        for (size_t i = 0; i < n; i++)
            if (atomic_load(&c->hits[i]) != 1) a->ok = 0;
        free(c);
        nested *ns = calloc(1, sizeof *ns);
        ns->pool = a->pool;
        srv_pool_run(a->pool, 8, outer_task, ns);
        for (size_t i = 0; i < 8; i++)
            for (size_t j = 0; j < 64; j++)
                if (atomic_load(&ns->inner[i][j]) != 1) a->ok = 0;
        free(ns);
    }
    return NULL;
}

START_TEST(pool_concurrent_callers) {
    srv_pool *p = srv_pool_new(3);
    pthread_t t[8];
    caller_arg a[8];
    for (int i = 0; i < 8; i++) {
        a[i].pool = p;
        ck_assert_int_eq(pthread_create(&t[i], NULL, caller, &a[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        ck_assert_msg(a[i].ok, "caller %d saw an index run other than once", i);
    }
    srv_pool_free(p);
}
END_TEST

START_TEST(pool_free_null_and_null_exec) {
    srv_pool_free(NULL);
    api_exec x = srv_pool_exec(NULL);
    ck_assert_uint_eq(x.workers, 1);
    counts *c = counts_new(NULL);
    x.run(x.ctx, 10, count_task, c); /* a NULL pool runs serially */
    assert_each_once(c, 10);
    free(c);
}
END_TEST

/* ==== configuration ========================================================= */

static const char *const ENV[] = {"GRADSERVE_HOST", "GRADSERVE_PORT", "GRADSERVE_THREADS",
                                  "GRADSERVE_WORKERS", "GRADSERVE_MAX_BODY",
                                  "GRADSERVE_MAX_NUMBERS", "GRADSERVE_DRAIN_TIMEOUT",
                                  "GRADSERVE_OPENAPI"};

static void clear_env(void) {
    for (size_t i = 0; i < sizeof ENV / sizeof *ENV; i++) unsetenv(ENV[i]);
}

/* Parses a NULL-terminated argument list (argv[0] added). */
static int parse(srv_config *c, char *err, const char *const *args) {
    char *argv[32] = {"gradserve"};
    int argc = 1;
    for (; args[argc - 1]; argc++) argv[argc] = (char *)args[argc - 1];
    FILE *out = fopen("/dev/null", "w");
    int rc = srv_config_parse(c, argc, argv, out, err, 256);
    fclose(out);
    return rc;
}

START_TEST(config_defaults) {
    clear_env();
    srv_config c;
    char err[256];
    const char *args[] = {NULL};
    ck_assert_int_eq(parse(&c, err, args), 0);
    ck_assert_str_eq(c.host, "127.0.0.1");
    ck_assert_uint_eq(c.port, 8080);
    ck_assert_uint_eq(c.threads, srv_cpu_count());
    ck_assert_uint_eq(c.workers, srv_cpu_count());
    ck_assert_uint_eq(c.max_body, (size_t)64 << 20);
    ck_assert_uint_eq(c.max_numbers, (size_t)1 << 26);
    ck_assert_str_eq(c.openapi, "");
}
END_TEST

START_TEST(config_flags_win_over_environment) {
    clear_env();
    setenv("GRADSERVE_PORT", "9000", 1);
    setenv("GRADSERVE_MAX_BODY", "2m", 1);
    setenv("GRADSERVE_WORKERS", "3", 1);
    setenv("GRADSERVE_HOST", "::1", 1);
    srv_config c;
    char err[256];
    const char *args[] = {"--port", "9001", "--max-body=1k", "--threads", "5",
                          "--max-numbers", "12345", "--openapi", "/x.yaml", NULL};
    ck_assert_int_eq(parse(&c, err, args), 0);
    ck_assert_uint_eq(c.port, 9001);
    ck_assert_uint_eq(c.max_body, 1024);
    ck_assert_uint_eq(c.workers, 3); /* from the environment */
    ck_assert_uint_eq(c.threads, 5);
    ck_assert_uint_eq(c.max_numbers, 12345);
    ck_assert_str_eq(c.host, "::1");
    ck_assert_str_eq(c.openapi, "/x.yaml");
    clear_env();
}
END_TEST

START_TEST(config_bad_values_name_their_source) {
    static const struct {
        const char *args[4];
        const char *env, *env_value, *want;
    } cases[] = {
        {{"--port", "70000"}, NULL, NULL, "--port"},
        {{"--port", "80x"}, NULL, NULL, "--port"},
        {{"--threads", "0"}, NULL, NULL, "--threads"},
        {{"--workers", "-1"}, NULL, NULL, "--workers"},
        {{"--max-body", "12q"}, NULL, NULL, "--max-body"},
        {{"--max-numbers", " 5"}, NULL, NULL, "--max-numbers"},
        {{"--max-body", "99999999999999999999"}, NULL, NULL, "--max-body"},
        {{"--host", ""}, NULL, NULL, "--host"},
        {{"--host", "no-such-host.invalid"}, NULL, NULL, "--host"},
        {{"--bogus"}, NULL, NULL, "--bogus"},
        {{"--port"}, NULL, NULL, "--port"},
        {{"stray"}, NULL, NULL, "stray"},
        {{NULL}, "GRADSERVE_PORT", "http", "GRADSERVE_PORT"},
        {{NULL}, "GRADSERVE_MAX_BODY", "0", "GRADSERVE_MAX_BODY"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        clear_env();
        if (cases[i].env) setenv(cases[i].env, cases[i].env_value, 1);
        srv_config c;
        char err[256] = "";
        ck_assert_msg(parse(&c, err, cases[i].args) == -1, "case %zu accepted", i);
        ck_assert_msg(strstr(err, cases[i].want), "case %zu: \"%s\" does not name %s", i, err,
                      cases[i].want);
    }
    clear_env();
}
END_TEST

START_TEST(config_help_lists_every_setting) {
    clear_env();
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    char *argv[] = {"gradserve", "--help", NULL};
    srv_config c;
    char err[256];
    ck_assert_int_eq(srv_config_parse(&c, 2, argv, out, err, sizeof err), 1);
    fclose(out);
    static const char *const want[] = {"--host", "--port", "--threads", "--workers",
                                       "--max-body", "--max-numbers", "--openapi",
                                       "--drain-timeout", "127.0.0.1", "8080", "67108864"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        ck_assert_msg(strstr(text, want[i]), "--help lacks %s", want[i]);
    for (size_t i = 0; i < sizeof ENV / sizeof *ENV; i++)
        ck_assert_msg(strstr(text, ENV[i]), "--help lacks %s", ENV[i]);
    free(text);
}
END_TEST

START_TEST(config_size_suffixes) {
    clear_env();
    static const struct {
        const char *v;
        size_t want;
    } cases[] = {{"1000", 1000}, {"1k", 1024}, {"64M", (size_t)64 << 20},
                 {"64MiB", (size_t)64 << 20}, {"2g", (size_t)2 << 30}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        srv_config c;
        char err[256];
        const char *args[] = {"--max-body", cases[i].v, NULL};
        ck_assert_int_eq(parse(&c, err, args), 0);
        ck_assert_uint_eq(c.max_body, cases[i].want);
    }
}
END_TEST

/* ==== routing =============================================================== */

static void reply_free(srv_reply *r) {
    if (r->owned) free(r->body);
    memset(r, 0, sizeof *r);
}

START_TEST(routes_every_operation_is_a_post) {
    static const char *const ops[] = {"entropy", "sample", "log_prob", "reparam", "score",
                                      "sac/discrete/actor", "sac/discrete/policy",
                                      "sac/continuous/actor", "batch"};
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
        char path[64];
        snprintf(path, sizeof path, "/v1/%s", ops[i]);
        srv_reply rep = {0};
        const char *op;
        const srv_route *r = srv_route_find("POST", path, &op, &rep);
        ck_assert_msg(r != NULL, "POST %s not routed", path);
        ck_assert(r->body);
        ck_assert_str_eq(op, ops[i]);
        /* Any other method is a 405 allowing POST. */
        r = srv_route_find("GET", path, &op, &rep);
        ck_assert_ptr_null(r);
        ck_assert_int_eq(rep.status, 405);
        ck_assert_str_eq(rep.allow, "POST");
        ck_assert_str_eq(rep.content_type, "application/json");
        ck_assert_ptr_nonnull(strstr(rep.body, "\"method_not_allowed\""));
        reply_free(&rep);
    }
}
END_TEST

START_TEST(routes_unknown_paths_and_methods) {
    static const struct {
        const char *method, *path;
        int status;
        const char *allow;
    } cases[] = {
        {"GET", "/", 404, NULL},
        {"POST", "/v1/", 404, NULL},
        {"POST", "/v1/nope", 404, NULL},
        {"POST", "/v1/entropy/", 404, NULL},
        {"POST", "/v1/sac", 404, NULL},
        {"POST", "/v2/entropy", 404, NULL},
        {"GET", "/healthz/", 404, NULL},
        {"POST", "/healthz", 405, "GET, HEAD"},
        {"DELETE", "/readyz", 405, "GET, HEAD"},
        {"POST", "/v1/info", 405, "GET, HEAD"},
        {"PUT", "/openapi.yaml", 405, "GET, HEAD"},
        {"PUT", "/v1/batch", 405, "POST"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        srv_reply rep = {0};
        const char *op;
        ck_assert_ptr_null(srv_route_find(cases[i].method, cases[i].path, &op, &rep));
        ck_assert_msg(rep.status == cases[i].status, "%s %s: %d", cases[i].method,
                      cases[i].path, rep.status);
        if (cases[i].allow) ck_assert_str_eq(rep.allow, cases[i].allow);
        else ck_assert_ptr_null(rep.allow);
        ck_assert_ptr_nonnull(strstr(rep.body, cases[i].status == 404 ? "\"not_found\""
                                                                     : "\"method_not_allowed\""));
        reply_free(&rep);
    }
}
END_TEST

START_TEST(routes_head_is_get) {
    static const char *const paths[] = {"/healthz", "/readyz", "/v1/info", "/openapi.yaml"};
    for (size_t i = 0; i < 4; i++) {
        srv_reply rep = {0};
        const char *op;
        const srv_route *g = srv_route_find("GET", paths[i], &op, &rep);
        ck_assert_ptr_nonnull(g);
        ck_assert(!g->body);
        ck_assert_ptr_eq(srv_route_find("HEAD", paths[i], &op, &rep), g);
    }
}
END_TEST

static srv_reply call(srv_app *app, const char *method, const char *path) {
    srv_reply rep = {0};
    const char *op;
    const srv_route *r = srv_route_find(method, path, &op, &rep);
    ck_assert_ptr_nonnull(r);
    srv_request req = {method, path, op, "", 0};
    r->handler(app, &req, &rep);
    return rep;
}

START_TEST(routes_probes_follow_the_state) {
    srv_app app;
    memset(&app, 0, sizeof app);
    api_limits_default(&app.limits);
    static const struct {
        int state, status;
        const char *body;
    } cases[] = {{SRV_STARTING, 503, "{\"status\":\"starting\"}"},
                 {SRV_READY, 200, "{\"status\":\"ready\"}"},
                 {SRV_DRAINING, 503, "{\"status\":\"draining\"}"}};
    for (size_t i = 0; i < 3; i++) {
        atomic_store(&app.state, cases[i].state);
        srv_reply r = call(&app, "GET", "/readyz");
        ck_assert_int_eq(r.status, cases[i].status);
        ck_assert_str_eq(r.content_type, "application/json");
        ck_assert_int_eq((int)r.len, (int)strlen(cases[i].body));
        ck_assert(!memcmp(r.body, cases[i].body, r.len));
        reply_free(&r);
        r = call(&app, "GET", "/healthz");
        ck_assert_int_eq(r.status, 200); /* alive whatever the state */
        reply_free(&r);
    }
}
END_TEST

START_TEST(routes_openapi_and_info) {
    srv_app app;
    memset(&app, 0, sizeof app);
    api_limits_default(&app.limits);
    srv_reply r = call(&app, "GET", "/openapi.yaml");
    ck_assert_int_eq(r.status, 404);
    ck_assert_str_eq(r.content_type, "application/json");
    reply_free(&r);
    app.openapi = "openapi: 3.0.3\n";
    app.openapi_len = strlen(app.openapi);
    r = call(&app, "GET", "/openapi.yaml");
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.content_type, "application/yaml");
    ck_assert_int_eq(r.owned, 0); /* the app's copy, not freed per request */
    ck_assert_ptr_eq(r.body, app.openapi);
    r = call(&app, "GET", "/v1/info");
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.content_type, "application/json");
    ck_assert_ptr_nonnull(strstr(r.body, "\"gradserve\""));
    reply_free(&r);
}
END_TEST

START_TEST(routes_error_body_has_code_message_field) {
    srv_reply r = {0};
    srv_reply_error(&r, 413, "payload_too_large", "too big", "requests");
    ck_assert_int_eq(r.status, 413);
    ck_assert(r.owned);
    char want[] = "{\"error\":{\"code\":\"payload_too_large\",\"message\":\"too big\","
                  "\"field\":\"requests\"}}";
    ck_assert_int_eq((int)r.len, (int)strlen(want));
    ck_assert(!memcmp(r.body, want, r.len));
    reply_free(&r);
}
END_TEST

int main(void) {
    Suite *s = suite_create("srv");
    TCase *pool = tcase_create("pool");
    tcase_set_timeout(pool, 60);
    tcase_add_test(pool, pool_runs_every_index_once);
    tcase_add_test(pool, pool_single_task_runs_on_the_caller);
    tcase_add_test(pool, pool_of_one_runs_serially_on_the_caller);
    tcase_add_test(pool, pool_uses_its_threads);
    tcase_add_test(pool, pool_nested_runs_do_not_deadlock);
    tcase_add_test(pool, pool_concurrent_callers);
    tcase_add_test(pool, pool_free_null_and_null_exec);
    suite_add_tcase(s, pool);
    TCase *config = tcase_create("config");
    tcase_add_test(config, config_defaults);
    tcase_add_test(config, config_flags_win_over_environment);
    tcase_add_test(config, config_bad_values_name_their_source);
    tcase_add_test(config, config_help_lists_every_setting);
    tcase_add_test(config, config_size_suffixes);
    suite_add_tcase(s, config);
    TCase *routes = tcase_create("routes");
    tcase_add_test(routes, routes_every_operation_is_a_post);
    tcase_add_test(routes, routes_unknown_paths_and_methods);
    tcase_add_test(routes, routes_head_is_get);
    tcase_add_test(routes, routes_probes_follow_the_state);
    tcase_add_test(routes, routes_openapi_and_info);
    tcase_add_test(routes, routes_error_body_has_code_message_field);
    suite_add_tcase(s, routes);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
