/* api.c - the endpoint table, error bodies and /v1/info. */
#include "api.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "gradserve.h"

void api_limits_default(api_limits *l) {
    l->max_numbers = (size_t)1 << 26;
    l->max_batch_items = 1024;
    l->split_min = 16384;
}

char *api_error_body(const char *code, const char *message, const char *field,
                     size_t *len) {
    json_t *e = json_pack("{s:s, s:s}", "code", code, "message", message);
    if (field) json_object_set_new(e, "field", json_string(field));
    json_t *root = json_pack("{s:o}", "error", e);
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (len) *len = s ? strlen(s) : 0;
    return s;
}

/* Placeholder until the endpoint families land. */
int api_is_op(const char *op) {
    static const char *ops[] = {"entropy", "sample", "log_prob", "reparam", "score",
                                "sac/discrete/actor", "sac/discrete/policy",
                                "sac/continuous/actor", "batch"};
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
        if (!strcmp(op, ops[i])) return 1;
    return 0;
}

int api_handle(const char *op, const char *body, size_t len,
               const api_limits *lim, const api_exec *exec, api_result *out) {
    if (!api_is_op(op)) return -1;
    memset(out, 0, sizeof *out);
    out->status = 400;
    out->body = api_error_body("invalid_argument", "not implemented yet", NULL, &out->len);
    return 0;
}

char *api_info_body(const api_limits *lim, size_t threads, size_t *len) {
    json_t *r = json_pack("{s:s, s:s}", "name", "gradserve", "version", GS_VERSION);
    char *s = json_dumps(r, JSON_COMPACT);
    json_decref(r);
    if (len) *len = strlen(s);
    return s;
}
