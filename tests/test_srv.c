/* test_srv.c - unit tests of the server layer without sockets: worker pool, configuration, routing table, auth, metrics, log lines. */
#include <check.h>
#include <fcntl.h>
#include <jansson.h>
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

/* Submitted tasks run once each, on the pool's threads, never on the
 * submitter's; srv_pool_free() runs those still queued before it returns. */
typedef struct {
    srv_task t;
    counts *c;
    size_t i;
    atomic_int *ran_on_caller;
    pthread_t submitter;
} sub_task;

static void run_sub(srv_task *t) {
    sub_task *s = (sub_task *)t;
    count_task(s->c, s->i);
    if (pthread_equal(pthread_self(), s->submitter)) atomic_fetch_add(s->ran_on_caller, 1);
}

START_TEST(pool_submitted_tasks_run_once_on_pool_threads) {
    for (size_t w = 1; w <= 3; w++) {
        srv_pool *p = srv_pool_new(w);
        counts *c = counts_new(p);
        c->sleep_us = 100;
        atomic_int on_caller = 0;
        sub_task *tasks = calloc(500, sizeof *tasks);
        for (size_t i = 0; i < 500; i++) {
            tasks[i] = (sub_task){{run_sub, NULL}, c, i, &on_caller, pthread_self()};
            srv_pool_submit(p, &tasks[i].t);
        }
        srv_pool_free(p); /* waits for the queue to empty */
        assert_each_once(c, 500);
        ck_assert_int_eq(atomic_load(&on_caller), 0);
        free(tasks);
        free(c);
    }
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

/* A task that splits its own work (a request split by rows) completes on
 * any pool size, a pool of one included, where it runs inline. */
typedef struct {
    srv_task t;
    nested *n;
    size_t outer;
    atomic_int *done;
} split_task;

static void run_split(srv_task *t) {
    split_task *s = (split_task *)t;
    inner_arg a = {s->n, s->outer};
    srv_pool_run(s->n->pool, 64, inner_task, &a);
    atomic_fetch_add(s->done, 1);
}

START_TEST(pool_submitted_tasks_may_split_their_work) {
    for (size_t w = 1; w <= 3; w++) {
        nested *n = calloc(1, sizeof *n);
        n->pool = srv_pool_new(w);
        atomic_int done = 0;
        split_task tasks[16];
        for (size_t i = 0; i < 16; i++) {
            tasks[i] = (split_task){{run_split, NULL}, n, i, &done};
            srv_pool_submit(n->pool, &tasks[i].t);
        }
        for (int k = 0; k < 2000 && atomic_load(&done) < 16; k++) usleep(1000);
        ck_assert_int_eq(atomic_load(&done), 16);
        srv_pool_free(n->pool);
        for (size_t i = 0; i < 16; i++)
            for (size_t j = 0; j < 64; j++)
                if (atomic_load(&n->inner[i][j]) != 1)
                    ck_abort_msg("workers %zu: [%zu][%zu] ran %d times", w, i, j,
                                 atomic_load(&n->inner[i][j]));
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

static const char *const ENV[] = {
    "GRADSERVE_HOST",           "GRADSERVE_PORT",          "GRADSERVE_THREADS",
    "GRADSERVE_WORKERS",        "GRADSERVE_MAX_BODY",      "GRADSERVE_MAX_NUMBERS",
    "GRADSERVE_DRAIN_TIMEOUT",  "GRADSERVE_OPENAPI",       "GRADSERVE_QUEUE_LIMIT",
    "GRADSERVE_MAX_CONNECTIONS", "GRADSERVE_CONNECTION_TIMEOUT", "GRADSERVE_IDLE_TIMEOUT",
    "GRADSERVE_TOKEN",          "GRADSERVE_TOKEN_FILE",    "GRADSERVE_TLS_CERT",
    "GRADSERVE_TLS_KEY",        "GRADSERVE_INSECURE",      "GRADSERVE_LOG_LEVEL",
    "GRADSERVE_LOG_FORMAT"};

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
    ck_assert_uint_eq(c.queue_limit, 16);
    ck_assert_uint_eq(c.max_connections, 1024);
    ck_assert_uint_eq(c.connection_timeout, 30);
    ck_assert_uint_eq(c.idle_timeout, 60);
    ck_assert_uint_eq(c.drain_timeout, 10);
    ck_assert_str_eq(c.token, "");
    ck_assert_str_eq(c.tls_cert, "");
    ck_assert_uint_eq(c.insecure, 0);
    ck_assert_uint_eq(c.log_level, SRV_LOG_INFO);
    ck_assert_uint_eq(c.log_format, SRV_LOG_JSON);
}
END_TEST

/* Writes text to a new temporary file; returns its name (static storage). */
static const char *temp_file(const char *text) {
    static char names[8][64];
    static int next;
    char *name = names[next++ % 8];
    snprintf(name, 64, "/tmp/gradserve-test-XXXXXX");
    int fd = mkstemp(name);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq((int)write(fd, text, strlen(text)), (int)strlen(text));
    close(fd);
    return name;
}

/* A self-signed P-256 certificate (CN gradserve-test, valid to 2126) and
 * its key, for the TLS settings: GnuTLS loads them at configuration time. */
static const char TEST_CERT[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBiTCCAS+gAwIBAgIUUMLCggHCXZSWZ+GGrxZxh+sk/EkwCgYIKoZIzj0EAwIw\n"
    "GTEXMBUGA1UEAwwOZ3JhZHNlcnZlLXRlc3QwIBcNMjYxMTI4MDQyMTQzWhgPMjEy\n"
    "NjExMDQwNDIxNDNaMBkxFzAVBgNVBAMMDmdyYWRzZXJ2ZS10ZXN0MFkwEwYHKoZI\n"
    "zj0CAQYIKoZIzj0DAQcDQgAEscJL5fhG4d8+zQWBflayXYro2/cH/W/vV9yu6GBt\n"
    "XiZbZzZlMTCKSmFFgzfwJ1ausTIzbuSM8d2tNMMGv5VXrqNTMFEwHQYDVR0OBBYE\n"
    "FOSmvqBUvE6KmFeVfbJi7nTb9bnRMB8GA1UdIwQYMBaAFOSmvqBUvE6KmFeVfbJi\n"
    "7nTb9bnRMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIgL04I4TPl\n"
    "Kx5Qm/RLuTcW4HepQ4U/at4upIenRiAaBeMCIQDBf+QySjW7E7PeCSghSKMSjJNj\n"
    "15z+4x8D+uBqfbmDXA==\n"
    "-----END CERTIFICATE-----\n";
static const char TEST_KEY[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg6L3wxT+0Ms82KevO\n"
    "mq/715qab3S+2DYXYGweXEeThNShRANCAASxwkvl+Ebh3z7NBYF+VrJdiujb9wf9\n"
    "b+9X3K7oYG1eJltnNmUxMIpKYUWDN/AnVq6xMjNu5Izx3a00wwa/lVeu\n"
    "-----END PRIVATE KEY-----\n";

/* Every operations setting, from its variable, then from its flag over a
 * different value of the variable. */
START_TEST(config_operations_settings_env_and_flags) {
    static const struct {
        const char *env, *env_value, *flag, *flag_value;
        size_t offset, width;
        unsigned long long from_env, from_flag;
    } cases[] = {
#define F(f) offsetof(srv_config, f), sizeof(((srv_config *)0)->f)
        {"GRADSERVE_QUEUE_LIMIT", "3", "--queue-limit", "0", F(queue_limit), 3, 0},
        {"GRADSERVE_MAX_CONNECTIONS", "100", "--max-connections", "2000", F(max_connections),
         100, 2000},
        {"GRADSERVE_CONNECTION_TIMEOUT", "5", "--connection-timeout", "7",
         F(connection_timeout), 5, 7},
        {"GRADSERVE_IDLE_TIMEOUT", "9", "--idle-timeout", "11", F(idle_timeout), 9, 11},
        {"GRADSERVE_DRAIN_TIMEOUT", "0", "--drain-timeout", "30", F(drain_timeout), 0, 30},
        {"GRADSERVE_INSECURE", "yes", "--insecure", "false", F(insecure), 1, 0},
        {"GRADSERVE_LOG_LEVEL", "warn", "--log-level", "debug", F(log_level), SRV_LOG_WARN,
         SRV_LOG_DEBUG},
        {"GRADSERVE_LOG_FORMAT", "text", "--log-format", "json", F(log_format), SRV_LOG_TEXT,
         SRV_LOG_JSON},
#undef F
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        clear_env();
        setenv(cases[i].env, cases[i].env_value, 1);
        srv_config c;
        char err[256] = "";
        const char *none[] = {NULL};
        ck_assert_msg(parse(&c, err, none) == 0, "%s: %s", cases[i].env, err);
        const char *field = (const char *)&c + cases[i].offset;
        unsigned long long got = cases[i].width == sizeof(unsigned)
                                     ? *(const unsigned *)(const void *)field
                                     : *(const size_t *)(const void *)field;
        ck_assert_msg(got == cases[i].from_env, "%s: %llu", cases[i].env, got);
        char flag[64];
        snprintf(flag, sizeof flag, "%s=%s", cases[i].flag, cases[i].flag_value);
        const char *args[] = {flag, NULL};
        ck_assert_msg(parse(&c, err, args) == 0, "%s: %s", flag, err);
        got = cases[i].width == sizeof(unsigned) ? *(const unsigned *)(const void *)field
                                                 : *(const size_t *)(const void *)field;
        ck_assert_msg(got == cases[i].from_flag, "%s: %llu", flag, got);
    }
    clear_env();
}
END_TEST

START_TEST(config_tokens_tls_and_insecure) {
    srv_config c;
    char err[256] = "";
    const char *none[] = {NULL};
    /* A token from the environment, one from a file (its newline dropped). */
    clear_env();
    setenv("GRADSERVE_TOKEN", "s3cret-Token_1", 1);
    ck_assert_int_eq(parse(&c, err, none), 0);
    ck_assert_str_eq(c.token, "s3cret-Token_1");
    setenv("GRADSERVE_TOKEN", "", 1); /* empty: no token */
    ck_assert_int_eq(parse(&c, err, none), 0);
    ck_assert_str_eq(c.token, "");
    clear_env();
    const char *file = temp_file("from-a-file\n");
    setenv("GRADSERVE_TOKEN_FILE", file, 1);
    ck_assert_int_eq(parse(&c, err, none), 0);
    ck_assert_str_eq(c.token, "from-a-file");
    /* A flag of either kind wins over the environment of the other. */
    const char *flag_token[] = {"--token", "flag-token", NULL};
    ck_assert_int_eq(parse(&c, err, flag_token), 0);
    ck_assert_str_eq(c.token, "flag-token");
    clear_env();
    setenv("GRADSERVE_TOKEN", "env-token", 1);
    const char *flag_file[] = {"--token-file", file, NULL};
    ck_assert_int_eq(parse(&c, err, flag_file), 0);
    ck_assert_str_eq(c.token, "from-a-file");
    /* Both at the same level: refused. */
    setenv("GRADSERVE_TOKEN_FILE", file, 1);
    ck_assert_int_eq(parse(&c, err, none), -1);
    ck_assert_msg(strstr(err, "GRADSERVE_TOKEN") && strstr(err, "exclusive"), "%s", err);
    clear_env();

    /* Non-loopback hosts need a token or --insecure. */
    const char *open_host[] = {"--host", "0.0.0.0", NULL};
    ck_assert_int_eq(parse(&c, err, open_host), -1);
    ck_assert_msg(strstr(err, "--host") && strstr(err, "--insecure") && strstr(err, "token"),
                  "%s", err);
    const char *insecure[] = {"--host", "0.0.0.0", "--insecure", NULL};
    ck_assert_int_eq(parse(&c, err, insecure), 0);
    ck_assert_uint_eq(c.insecure, 1);
    const char *with_token[] = {"--host", "::", "--token", "t", NULL};
    ck_assert_int_eq(parse(&c, err, with_token), 0);
    setenv("GRADSERVE_INSECURE", "1", 1);
    ck_assert_int_eq(parse(&c, err, open_host), 0);
    clear_env();
    const char *loopback[] = {"--host", "::1", NULL};
    ck_assert_int_eq(parse(&c, err, loopback), 0);
    ck_assert(srv_host_is_loopback("127.0.0.2"));
    ck_assert(srv_host_is_loopback("localhost"));
    ck_assert(!srv_host_is_loopback("0.0.0.0"));
    ck_assert(!srv_host_is_loopback("::"));

    /* TLS: both files, each a PEM block of the right kind. */
    const char *cert = temp_file(TEST_CERT);
    const char *key = temp_file(TEST_KEY);
    const char *tls[] = {"--tls-cert", cert, "--tls-key", key, NULL};
    ck_assert_int_eq(parse(&c, err, tls), 0);
    ck_assert_str_eq(c.tls_cert, cert);
    ck_assert_str_eq(c.tls_key, key);
    setenv("GRADSERVE_TLS_CERT", cert, 1);
    setenv("GRADSERVE_TLS_KEY", key, 1);
    ck_assert_int_eq(parse(&c, err, none), 0);
    ck_assert_str_eq(c.tls_key, key);
    clear_env();
    /* A key that is not the certificate's: a PEM key, but not this one. */
    const char *other = temp_file("-----BEGIN PRIVATE KEY-----\n"
                                  "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgtbyYeg7ZCsGb5hbV\n"
                                  "-----END PRIVATE KEY-----\n");
    const char *mismatch[] = {"--tls-cert", cert, "--tls-key", other, NULL};
    ck_assert_int_eq(parse(&c, err, mismatch), -1);
    ck_assert_msg(strstr(err, "--tls-cert and --tls-key: "), "%s", err);
    unlink(other);
    unlink(file);
    unlink(cert);
    unlink(key);
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
        const char *args[5];
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
        {{"--queue-limit", "-1"}, NULL, NULL, "--queue-limit"},
        {{"--max-connections", "0"}, NULL, NULL, "--max-connections"},
        {{"--max-connections", "1", "--threads", "2"}, NULL, NULL, "--max-connections"},
        {{"--connection-timeout", "0"}, NULL, NULL, "--connection-timeout"},
        {{"--idle-timeout", "1h"}, NULL, NULL, "--idle-timeout"},
        {{"--log-level", "loud"}, NULL, NULL, "--log-level"},
        {{"--log-format", "xml"}, NULL, NULL, "--log-format"},
        {{"--insecure=maybe"}, NULL, NULL, "--insecure"},
        {{"--token", "has space"}, NULL, NULL, "--token"},
        {{"--token-file", "/nonexistent/token"}, NULL, NULL, "--token-file"},
        {{"--tls-cert", "/etc/hostname"}, NULL, NULL, "--tls-cert"},
        {{"--tls-cert", "/etc/hostname", "--tls-key", "/etc/hostname"}, NULL, NULL,
         "--tls-cert"},
        {{"--host", "0.0.0.0"}, NULL, NULL, "--host"},
        {{NULL}, "GRADSERVE_QUEUE_LIMIT", "lots", "GRADSERVE_QUEUE_LIMIT"},
        {{NULL}, "GRADSERVE_MAX_CONNECTIONS", "-5", "GRADSERVE_MAX_CONNECTIONS"},
        {{NULL}, "GRADSERVE_CONNECTION_TIMEOUT", "99999", "GRADSERVE_CONNECTION_TIMEOUT"},
        {{NULL}, "GRADSERVE_IDLE_TIMEOUT", "", "GRADSERVE_IDLE_TIMEOUT"},
        {{NULL}, "GRADSERVE_LOG_LEVEL", "INFO", "GRADSERVE_LOG_LEVEL"},
        {{NULL}, "GRADSERVE_LOG_FORMAT", "yaml", "GRADSERVE_LOG_FORMAT"},
        {{NULL}, "GRADSERVE_INSECURE", "2", "GRADSERVE_INSECURE"},
        {{NULL}, "GRADSERVE_TOKEN", "tab\there", "GRADSERVE_TOKEN"},
        {{NULL}, "GRADSERVE_TOKEN_FILE", "/nonexistent", "GRADSERVE_TOKEN_FILE"},
        {{NULL}, "GRADSERVE_TLS_KEY", "/etc/hostname", "GRADSERVE_TLS_KEY"},
        {{NULL}, "GRADSERVE_HOST", "0.0.0.0", "GRADSERVE_HOST"},
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
    static const char *const want[] = {
        "--host",           "--port",        "--threads",           "--workers",
        "--max-body",       "--max-numbers", "--openapi",           "--drain-timeout",
        "--queue-limit",    "--max-connections", "--connection-timeout", "--idle-timeout",
        "--token",          "--token-file",  "--tls-cert",          "--tls-key",
        "--insecure",       "--log-level",   "--log-format",        "127.0.0.1",
        "8080",             "67108864",      "default 16",          "default 1024",
        "default 30",       "default 60",    "default info",        "default json"};
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
    static const char *const paths[] = {"/healthz", "/readyz", "/v1/info", "/openapi.yaml",
                                        "/metrics"};
    for (size_t i = 0; i < 5; i++) {
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
    srv_request req = {method, path, op, "", 0, 0};
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

START_TEST(routes_metrics_and_flags) {
    srv_app app;
    memset(&app, 0, sizeof app);
    api_limits_default(&app.limits);
    app.metrics = srv_metrics_new("v", "c");
    srv_reply r = call(&app, "GET", "/metrics");
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
    ck_assert_ptr_nonnull(strstr(r.body, "# TYPE gradserve_requests_total counter"));
    reply_free(&r);
    srv_metrics_free(app.metrics);
    /* Only the probes are open; only POSTs compute. */
    static const struct {
        const char *method, *path;
        int open, compute;
    } cases[] = {{"GET", "/healthz", 1, 0},  {"GET", "/readyz", 1, 0},
                 {"GET", "/metrics", 0, 0},  {"GET", "/v1/info", 0, 0},
                 {"GET", "/openapi.yaml", 0, 0}, {"POST", "/v1/entropy", 0, 1},
                 {"POST", "/v1/batch", 0, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        srv_reply rep = {0};
        const char *op;
        const srv_route *rt = srv_route_find(cases[i].method, cases[i].path, &op, &rep);
        ck_assert_ptr_nonnull(rt);
        ck_assert_int_eq(rt->open, cases[i].open);
        ck_assert_int_eq(rt->compute, cases[i].compute);
    }
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


/* ==== auth, metrics, log lines ============================================== */

START_TEST(auth_bearer_token) {
    const char *t = "s3cret";
    size_t n = strlen(t);
    ck_assert(srv_auth_ok(t, n, "Bearer s3cret"));
    ck_assert(srv_auth_ok(t, n, "bearer s3cret"));
    ck_assert(srv_auth_ok(t, n, "  BEARER   s3cret  "));
    static const char *const bad[] = {"",          "s3cret",         "Bearer",
                                      "Bearer ",   "Bearer s3cre",   "Bearer s3cret2",
                                      "Bearer S3cret", "Basic s3cret", "Bearers3cret",
                                      "Bearer s3cret x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(!srv_auth_ok(t, n, bad[i]), "accepted \"%s\"", bad[i]);
    ck_assert(!srv_auth_ok(t, n, NULL));
}
END_TEST

/* The value of one sample line of an exposition ("name{labels} value"). */
static double sample(const char *text, const char *series) {
    size_t n = strlen(series);
    for (const char *p = text; (p = strstr(p, series)); p += n)
        if ((p == text || p[-1] == '\n') && p[n] == ' ') return strtod(p + n + 1, NULL);
    return -1;
}

START_TEST(metrics_exposition) {
    srv_metrics *m = srv_metrics_new("1.2.3", "abc1234");
    ck_assert_int_eq(srv_metrics_path("/v1/entropy"), srv_metrics_path("/v1/entropy"));
    ck_assert_int_eq(srv_metrics_path("/nope"), srv_metrics_path("/also/nope"));
    ck_assert_int_ne(srv_metrics_path("/nope"), srv_metrics_path("/healthz"));
    int entropy = srv_metrics_path("/v1/entropy"), other = srv_metrics_path("/x");
    srv_metrics_request(m, entropy, 200, 0.00005, 100, 200, 4, 256); /* first bucket */
    srv_metrics_request(m, entropy, 200, 0.3, 10, 20, 1, 1);         /* le 0.5 */
    srv_metrics_request(m, entropy, 400, 20.0, 5, 50, 0, 0);         /* +Inf only */
    srv_metrics_request(m, other, 404, 0.001, 0, 60, 0, 0);
    srv_metrics_request(m, other, 418, 0.001, 0, 0, 0, 0);
    srv_metrics_reject(m, SRV_REJECT_OVERLOAD);
    srv_metrics_reject(m, SRV_REJECT_OVERLOAD);
    srv_metrics_reject(m, SRV_REJECT_UNAUTHORIZED);
    srv_gauges *g = srv_metrics_gauges(m);
    atomic_store(&g->in_flight, 3);
    atomic_store(&g->queued, 2);
    g->admission_limit = 18;
    size_t len = 0;
    char *text = srv_metrics_render(m, &len);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(strlen(text), len);
    static const struct {
        const char *series;
        double want;
    } want[] = {
        {"gradserve_requests_total{path=\"/v1/entropy\",status=\"200\"}", 2},
        {"gradserve_requests_total{path=\"/v1/entropy\",status=\"400\"}", 1},
        {"gradserve_requests_total{path=\"other\",status=\"404\"}", 1},
        {"gradserve_requests_total{path=\"other\",status=\"other\"}", 1},
        {"gradserve_request_duration_seconds_bucket{path=\"/v1/entropy\",le=\"0.0001\"}", 1},
        {"gradserve_request_duration_seconds_bucket{path=\"/v1/entropy\",le=\"0.25\"}", 1},
        {"gradserve_request_duration_seconds_bucket{path=\"/v1/entropy\",le=\"0.5\"}", 2},
        {"gradserve_request_duration_seconds_bucket{path=\"/v1/entropy\",le=\"10\"}", 2},
        {"gradserve_request_duration_seconds_bucket{path=\"/v1/entropy\",le=\"+Inf\"}", 3},
        {"gradserve_request_duration_seconds_count{path=\"/v1/entropy\"}", 3},
        {"gradserve_rejected_requests_total{reason=\"overload\"}", 2},
        {"gradserve_rejected_requests_total{reason=\"unauthorized\"}", 1},
        {"gradserve_rejected_requests_total{reason=\"too_large\"}", 0},
        {"gradserve_rows_total", 5},
        {"gradserve_samples_total", 257},
        {"gradserve_received_bytes_total", 115},
        {"gradserve_sent_bytes_total", 330},
        {"gradserve_requests_in_flight", 3},
        {"gradserve_queue_depth", 2},
        {"gradserve_admission_limit", 18},
        {"gradserve_build_info{version=\"1.2.3\",commit=\"abc1234\"}", 1},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        ck_assert_msg(sample(text, want[i].series) == want[i].want, "%s is %g, want %g\n%s",
                      want[i].series, sample(text, want[i].series), want[i].want, text);
    double sum = sample(text, "gradserve_request_duration_seconds_sum{path=\"/v1/entropy\"}");
    ck_assert_msg(sum > 20.29 && sum < 20.31, "sum %g", sum);
    /* No series for a path that saw no request. */
    ck_assert_ptr_null(strstr(text, "path=\"/v1/sample\""));
    /* Every family has its HELP and TYPE. */
    for (const char *p = text; (p = strstr(p, "# TYPE ")); p++) {
        char name[128];
        ck_assert_int_eq(sscanf(p + 7, "%127s", name), 1);
        char help[160];
        snprintf(help, sizeof help, "# HELP %s ", name);
        ck_assert_msg(strstr(text, help), "no HELP for %s", name);
    }
    free(text);
    srv_metrics_free(m);
    srv_metrics_free(NULL);
}
END_TEST

/* Counters from many threads at once lose nothing. */
typedef struct {
    srv_metrics *m;
    int path;
} hammer_m;

static void *hammer_metrics(void *arg) {
    hammer_m *h = arg;
    for (int i = 0; i < 20000; i++) {
        srv_metrics_request(h->m, h->path, 200, 0.001, 1, 2, 3, 4);
        srv_metrics_reject(h->m, SRV_REJECT_TIMEOUT);
    }
    return NULL;
}

START_TEST(metrics_concurrent_counts_are_exact) {
    srv_metrics *m = srv_metrics_new("v", "c");
    pthread_t t[8];
    hammer_m a[8];
    for (int i = 0; i < 8; i++) {
        a[i] = (hammer_m){m, srv_metrics_path(i % 2 ? "/healthz" : "/metrics")};
        pthread_create(&t[i], NULL, hammer_metrics, &a[i]);
    }
    for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
    size_t len;
    char *text = srv_metrics_render(m, &len);
    ck_assert(sample(text, "gradserve_requests_total{path=\"/healthz\",status=\"200\"}") == 80000);
    ck_assert(sample(text, "gradserve_requests_total{path=\"/metrics\",status=\"200\"}") == 80000);
    ck_assert(sample(text, "gradserve_rejected_requests_total{reason=\"timeout\"}") == 160000);
    ck_assert(sample(text, "gradserve_received_bytes_total") == 160000);
    ck_assert(sample(text, "gradserve_samples_total") == 640000);
    free(text);
    srv_metrics_free(m);
}
END_TEST

/* Runs fn with the log going to a pipe; returns what it wrote. */
static char *capture_log(srv_log_level level, srv_log_format format, void (*fn)(void)) {
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    srv_log_setup(level, format, p[1]);
    fn();
    srv_log_setup(SRV_LOG_INFO, SRV_LOG_JSON, 2);
    close(p[1]);
    static char buf[16384];
    size_t n = 0;
    ssize_t r;
    while ((r = read(p[0], buf + n, sizeof buf - 1 - n)) > 0) n += (size_t)r;
    close(p[0]);
    buf[n] = '\0';
    return buf;
}

static void log_some(void) {
    srv_access a = {"POST", "/v1/entropy\"q\\\x01\xff", "req-1", "127.0.0.1:5000", NULL,
                    200, 10, 20, 3, 4, 0.0125};
    srv_log_access(&a);
    srv_log(SRV_LOG_DEBUG, "debug %d", 1);
    srv_log(SRV_LOG_WARN, "careful: \"%s\"\n", "x");
}

START_TEST(log_json_lines) {
    char *out = capture_log(SRV_LOG_INFO, SRV_LOG_JSON, log_some);
    /* Two lines (debug is below the level), each a JSON object. */
    char *nl = strchr(out, '\n');
    ck_assert_ptr_nonnull(nl);
    *nl = '\0';
    json_error_t e;
    json_t *j = json_loads(out, 0, &e);
    ck_assert_msg(j != NULL, "not JSON: %s (%s)", out, e.text);
    ck_assert_str_eq(json_string_value(json_object_get(j, "level")), "info");
    ck_assert_str_eq(json_string_value(json_object_get(j, "msg")), "request");
    ck_assert_str_eq(json_string_value(json_object_get(j, "method")), "POST");
    ck_assert_str_eq(json_string_value(json_object_get(j, "path")),
                     "/v1/entropy\"q\\\x01\xc3\xbf"); /* \u00ff, as UTF-8 */
    ck_assert_int_eq(json_integer_value(json_object_get(j, "status")), 200);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "bytes_in")), 10);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "bytes_out")), 20);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "rows")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "samples")), 4);
    ck_assert(json_real_value(json_object_get(j, "duration_ms")) == 12.5);
    ck_assert_str_eq(json_string_value(json_object_get(j, "request_id")), "req-1");
    ck_assert_str_eq(json_string_value(json_object_get(j, "remote")), "127.0.0.1:5000");
    const char *time = json_string_value(json_object_get(j, "time"));
    ck_assert_msg(time && strlen(time) == 24 && time[10] == 'T' && time[23] == 'Z', "%s", time);
    json_decref(j);
    char *second = nl + 1;
    nl = strchr(second, '\n');
    ck_assert_ptr_nonnull(nl);
    *nl = '\0';
    ck_assert_str_eq(nl + 1, "");
    j = json_loads(second, 0, &e);
    ck_assert_msg(j != NULL, "not JSON: %s", second);
    ck_assert_str_eq(json_string_value(json_object_get(j, "level")), "warn");
    ck_assert_str_eq(json_string_value(json_object_get(j, "msg")), "careful: \"x\"");
    json_decref(j);
}
END_TEST

START_TEST(log_text_lines_and_levels) {
    char *out = capture_log(SRV_LOG_DEBUG, SRV_LOG_TEXT, log_some);
    ck_assert_msg(strstr(out, " info  request method=POST path=\"/v1/entropy\\\"q\\\\\\u0001\\u00ff\" "
                              "status=200 bytes_in=10 bytes_out=20 duration_ms=12.500 rows=3 "
                              "samples=4 request_id=req-1 remote=127.0.0.1:5000\n"),
                  "%s", out);
    ck_assert_msg(strstr(out, " debug debug 1\n"), "%s", out);
    ck_assert_msg(strstr(out, " warn  careful: \"x\"\n"), "%s", out);
    out = capture_log(SRV_LOG_ERROR, SRV_LOG_JSON, log_some);
    ck_assert_str_eq(out, "");
    out = capture_log(SRV_LOG_OFF, SRV_LOG_TEXT, log_some);
    ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(request_ids) {
    char id[SRV_REQUEST_ID_MAX + 1];
    srv_request_id(id, "abc-123_X.y:z/+=@");
    ck_assert_str_eq(id, "abc-123_X.y:z/+=@");
    char longest[SRV_REQUEST_ID_MAX + 2];
    memset(longest, 'a', sizeof longest);
    longest[SRV_REQUEST_ID_MAX] = '\0';
    srv_request_id(id, longest);
    ck_assert_str_eq(id, longest);
    longest[SRV_REQUEST_ID_MAX] = 'a';
    longest[SRV_REQUEST_ID_MAX + 1] = '\0';
    static char seen[2000][SRV_REQUEST_ID_MAX + 1];
    const char *given[] = {NULL, "", "has space", "quote\"", longest, "nl\n"};
    for (size_t i = 0; i < 2000; i++) {
        srv_request_id(seen[i], given[i % 6]);
        ck_assert_uint_eq(strlen(seen[i]), 16);
        ck_assert_uint_eq(strspn(seen[i], "0123456789abcdef"), 16);
    }
    for (size_t i = 0; i < 2000; i++)
        for (size_t j = i + 1; j < 2000; j++)
            if (!strcmp(seen[i], seen[j])) ck_abort_msg("id %s given twice", seen[i]);
}
END_TEST

int main(void) {
    Suite *s = suite_create("srv");
    TCase *pool = tcase_create("pool");
    tcase_set_timeout(pool, 60);
    tcase_add_test(pool, pool_runs_every_index_once);
    tcase_add_test(pool, pool_single_task_runs_on_the_caller);
    tcase_add_test(pool, pool_submitted_tasks_run_once_on_pool_threads);
    tcase_add_test(pool, pool_submitted_tasks_may_split_their_work);
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
    tcase_add_test(config, config_operations_settings_env_and_flags);
    tcase_add_test(config, config_tokens_tls_and_insecure);
    suite_add_tcase(s, config);
    TCase *routes = tcase_create("routes");
    tcase_add_test(routes, routes_every_operation_is_a_post);
    tcase_add_test(routes, routes_unknown_paths_and_methods);
    tcase_add_test(routes, routes_head_is_get);
    tcase_add_test(routes, routes_probes_follow_the_state);
    tcase_add_test(routes, routes_openapi_and_info);
    tcase_add_test(routes, routes_error_body_has_code_message_field);
    tcase_add_test(routes, routes_metrics_and_flags);
    suite_add_tcase(s, routes);
    TCase *ops = tcase_create("ops");
    tcase_set_timeout(ops, 60);
    tcase_add_test(ops, auth_bearer_token);
    tcase_add_test(ops, metrics_exposition);
    tcase_add_test(ops, metrics_concurrent_counts_are_exact);
    tcase_add_test(ops, log_json_lines);
    tcase_add_test(ops, log_text_lines_and_levels);
    tcase_add_test(ops, request_ids);
    suite_add_tcase(s, ops);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
