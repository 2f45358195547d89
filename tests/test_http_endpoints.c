/* test_http_endpoints.c - every computing endpoint over HTTP, compared with the api layer called in-process. */
#include <check.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"

/* The server under test is started by tests/run-http.sh, which passes its
 * base URL in GRADSERVE_TEST_URL. Its responses must be byte-identical to
 * api_handle() run serially here: the same bytes prove the same doubles,
 * whatever threads the server split the work across. */

static const char *base_url(void) {
    const char *u = getenv("GRADSERVE_TEST_URL");
    return u ? u : "http://127.0.0.1:8080";
}

typedef struct {
    char *p;
    size_t n;
} buf;

static size_t on_data(char *d, size_t s, size_t n, void *arg) {
    buf *b = arg;
    b->p = realloc(b->p, b->n + s * n + 1);
    memcpy(b->p + b->n, d, s * n);
    b->n += s * n;
    b->p[b->n] = '\0';
    return s * n;
}

/* POSTs body to /v1/<op>; returns the status, *out the body (caller frees). */
static long post(CURL *h, const char *op, const char *body, size_t len, buf *out) {
    char url[512];
    snprintf(url, sizeof url, "%s/v1/%s", base_url(), op);
    memset(out, 0, sizeof *out);
    struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)len);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    CURLcode rc = curl_easy_perform(h);
    curl_slist_free_all(hd);
    ck_assert_msg(rc == CURLE_OK, "POST %s: %s", url, curl_easy_strerror(rc));
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

/* Asserts that the server answers op/body exactly as api_handle does. */
static void same_as_api(CURL *h, const char *op, const char *body) {
    api_limits lim;
    api_limits_default(&lim);
    api_result want;
    ck_assert_int_eq(api_handle(op, body, strlen(body), &lim, NULL, &want), 0);
    buf got;
    long status = post(h, op, body, strlen(body), &got);
    ck_assert_msg(status == want.status, "%s: status %ld, want %d (%s)", op, status,
                  want.status, got.p ? got.p : "");
    ck_assert_msg(got.n == want.len && memcmp(got.p, want.body, want.len) == 0,
                  "%s: body differs\n got: %.300s\nwant: %.300s", op, got.p, want.body);
    free(got.p);
    free(want.body);
}

/* One request per endpoint, each replayable (seeds given). */
static const char *const CASES[][2] = {
    {"entropy", "{\"distribution\":{\"type\":\"categorical\",\"logits\":[[0.1,2.0,-1.0],[1,1,1]]}}"},
    {"entropy", "{\"distribution\":{\"type\":\"categorical\",\"logits\":[0.1,2.0,-1.0]},"
                "\"estimator\":\"score\",\"samples\":16,\"seed\":3}"},
    {"entropy", "{\"distribution\":{\"type\":\"normal\",\"loc\":[[0.0,1.0]],\"log_scale\":[[-1.0,0.5]]}}"},
    {"entropy", "{\"distribution\":{\"type\":\"tanh_normal\",\"loc\":[[0.0,1.0]],\"scale\":[[0.3,1.2]],"
                "\"low\":[-2,-1],\"high\":[2,1]},\"samples\":8,\"seed\":7}"},
    {"entropy", "{\"distribution\":{\"type\":\"tanh_normal\",\"loc\":[0.0],\"scale\":[0.3]},"
                "\"estimator\":\"exact\"}"},
    {"sample", "{\"distribution\":{\"type\":\"normal\",\"loc\":[[0.0,1.0]],\"log_scale\":[[-1.0,0.5]]},"
               "\"samples\":3,\"seed\":11}"},
    {"sample", "{\"distribution\":{\"type\":\"categorical\",\"logits\":[[0,1,2]]},\"samples\":4,"
               "\"seed\":11,\"output\":\"base64\"}"},
    {"log_prob", "{\"distribution\":{\"type\":\"categorical\",\"logits\":[[0,1,2]]},\"x\":[[0,2,2]]}"},
    {"log_prob", "{\"distribution\":{\"type\":\"tanh_normal\",\"loc\":[0.5],\"log_scale\":[-1]},"
                 "\"x\":[[0.2],[-0.9]]}"},
    {"reparam", "{\"distribution\":{\"type\":\"tanh_normal\",\"loc\":[[0.0,1.0]],\"log_scale\":[[-1,0]]},"
                "\"seed\":5,\"grad_x\":[[[1,2],[3,4]]],\"grad_log_prob\":[[0.5,-1]]}"},
    {"reparam", "{\"distribution\":{\"type\":\"categorical\",\"logits\":[0,1]},\"seed\":5,\"grad_x\":[[1]]}"},
    {"score", "{\"distribution\":{\"type\":\"categorical\",\"logits\":[[0,1,2]]},\"x\":[[0,1,2,2]],"
              "\"f\":[[1.0,2.0,3.0,4.0]]}"},
    {"score", "{\"distribution\":{\"type\":\"normal\",\"loc\":[0,1],\"log_scale\":[0,0]},\"seed\":9,"
              "\"f\":[1,2,3],\"baseline\":\"none\"}"},
    {"sac/discrete/actor", "{\"logits\":[[0.1,2.0,-1.0]],\"q\":[[1,2,3]],\"alpha\":0.2,"
                           "\"target_entropy\":0.5}"},
    {"sac/discrete/actor", "{\"logits\":[[0.1,2.0,-1.0]],\"actions\":[[0,1,1,2]],"
                           "\"q\":[[1,2,2,3]],\"alpha\":0.2}"},
    {"sac/discrete/policy", "{\"q\":[[1,2,3]],\"alpha\":0.5,\"samples\":5,\"seed\":2}"},
    {"sac/continuous/actor", "{\"distribution\":{\"type\":\"tanh_normal\",\"loc\":[[0.0,1.0]],"
                             "\"log_scale\":[[-1,0]]},\"alpha\":0.2,\"seed\":4,\"samples\":2,"
                             "\"dq_da\":[[[1,0],[0,1]]],\"q\":[[1,2]],\"target_entropy\":-2}"},
    {"batch", "{\"requests\":[{\"op\":\"entropy\",\"body\":{\"distribution\":{\"type\":\"categorical\","
              "\"logits\":[1,2]}}},{\"op\":\"nope\",\"body\":{}},{\"op\":\"batch\",\"body\":{}},"
              "{\"op\":\"sample\",\"body\":{\"bad\":1}},{\"op\":\"sample\",\"body\":{\"distribution\":"
              "{\"type\":\"categorical\",\"logits\":[1,2]},\"seed\":1,\"samples\":3}}],"
              "\"output\":\"base64\"}"},
    {"entropy", "{\"distribution\":{\"type\":\"normal\",\"loc\":[[0.0,1.0]],\"log_scale\":[[-1.0]]}}"},
    {"entropy", "{\"distribution\": [1, 2"},
};
#define N_CASES (sizeof CASES / sizeof *CASES)

START_TEST(every_endpoint_matches_the_api_layer) {
    CURL *h = curl_easy_init();
    for (size_t i = 0; i < N_CASES; i++) same_as_api(h, CASES[i][0], CASES[i][1]);
    curl_easy_cleanup(h);
}
END_TEST

/* A batch large enough for the server to split it across its workers
 * (rows x dims well above the split threshold) must still give exactly
 * the serial bytes. */
static char *big_request(const char *op, size_t B, size_t K) {
    size_t cap = B * K * 24 + 256, n = 0;
    char *s = malloc(cap);
    if (!strcmp(op, "entropy"))
        n += (size_t)snprintf(s + n, cap - n, "{\"estimator\":\"score\",\"samples\":4,\"seed\":1,"
                              "\"distribution\":{\"type\":\"categorical\",\"logits\":[");
    else
        n += (size_t)snprintf(s + n, cap - n, "{\"alpha\":0.3,\"logits\":[");
    for (int pass = 0; pass < (strcmp(op, "entropy") ? 2 : 1); pass++) {
        if (pass) n += (size_t)snprintf(s + n, cap - n, "],\"q\":[");
        for (size_t b = 0; b < B; b++) {
            s[n++] = b ? ',' : '[';
            if (b) s[n++] = '[';
            for (size_t k = 0; k < K; k++)
                n += (size_t)snprintf(s + n, cap - n, "%s%.3f", k ? "," : "",
                                      (double)((b * 7 + k * 13 + pass) % 29) / 7.0 - 2.0);
            s[n++] = ']';
        }
    }
    snprintf(s + n, cap - n, "%s", strcmp(op, "entropy") ? "]}" : "]}}");
    return s;
}

START_TEST(split_batches_are_byte_identical) {
    CURL *h = curl_easy_init();
    char *a = big_request("entropy", 4096, 18);
    same_as_api(h, "entropy", a);
    char *b = big_request("sac/discrete/actor", 4096, 18);
    same_as_api(h, "sac/discrete/actor", b);
    free(a);
    free(b);
    curl_easy_cleanup(h);
}
END_TEST

static void *hammer(void *arg) {
    size_t id = (size_t)arg;
    CURL *h = curl_easy_init();
    for (size_t r = 0; r < 20; r++) {
        size_t i = (id * 5 + r) % N_CASES;
        same_as_api(h, CASES[i][0], CASES[i][1]);
    }
    curl_easy_cleanup(h);
    return NULL;
}

START_TEST(concurrent_requests_all_answered_exactly) {
    pthread_t t[6];
    for (size_t i = 0; i < 6; i++) pthread_create(&t[i], NULL, hammer, (void *)i);
    for (size_t i = 0; i < 6; i++) pthread_join(t[i], NULL);
}
END_TEST

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    Suite *s = suite_create("http_endpoints");
    TCase *tc = tcase_create("endpoints");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, every_endpoint_matches_the_api_layer);
    tcase_add_test(tc, split_batches_are_byte_identical);
    tcase_add_test(tc, concurrent_requests_all_answered_exactly);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    curl_global_cleanup();
    return failed ? 1 : 0;
}
