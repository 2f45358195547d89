/* fuzz_api.c - libFuzzer harness: any bytes to any endpoint give one JSON answer, 200 or 4xx, never a crash, a leak, NaN or a 5xx. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"

/* The first byte picks the endpoint; the rest is the body. */
static const char *const OPS[] = {"entropy", "sample", "log_prob", "reparam", "score",
                                  "sac/discrete/actor", "sac/discrete/policy",
                                  "sac/continuous/actor", "batch"};
#define N_OPS (sizeof OPS / sizeof *OPS)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    api_limits lim;
    api_limits_default(&lim);
    lim.max_numbers = 1 << 16; /* keeps each run fast; the 413 path is exercised too */
    lim.max_batch_items = 64;
    api_result r;
    const char *op = OPS[data[0] % N_OPS];
    if (api_handle(op, (const char *)data + 1, size - 1, &lim, NULL, &r) != 0) abort();
    int ok = r.status == 200 || r.status == 400 || r.status == 404 || r.status == 413 ||
             r.status == 422;
    if (!ok || !r.body) {
        fprintf(stderr, "status %d for %s\n", r.status, op);
        abort();
    }
    /* Strict JSON: jansson refuses NaN and Infinity literals. */
    json_error_t e;
    json_t *j = json_loadb(r.body, r.len, JSON_REJECT_DUPLICATES, &e);
    if (!j) {
        fprintf(stderr, "%s answered invalid JSON (%s): %.200s\n", op, e.text, r.body);
        abort();
    }
    if (r.status != 200 && !json_object_get(j, "error")) abort();
    json_decref(j);
    /* The connection thread's entry point agrees: the same status when it
     * answers, nothing written when it defers (split_min lowered so that
     * it often does). */
    lim.split_min = 64;
    api_result s;
    int rc = api_handle_small(op, (const char *)data + 1, size - 1, &lim, &s);
    if (rc == 0) {
        if (s.status != r.status) {
            fprintf(stderr, "%s: api_handle_small %d, api_handle %d\n", op, s.status, r.status);
            abort();
        }
        free(s.body);
    } else if (rc != 1 || s.body) {
        abort();
    }
    free(r.body);
    return 0;
}
