/* api.c - the endpoint table, request dispatch, /v1/batch and /v1/info. */
#include "api.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_arena.h"
#include "api_lift.h"
#include "api_endpoints.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "base64 tensors are little-endian on the wire and copied as is");

static const api_endpoint ENDPOINTS[] = {
    {"entropy", api_entropy_parse, api_entropy_run},
    {"sample", api_sample_parse, api_sample_run},
    {"log_prob", api_log_prob_parse, api_log_prob_run},
    {"reparam", api_reparam_parse, api_reparam_run},
    {"score", api_score_parse, api_score_run},
    {"sac/discrete/actor", api_sac_actor_parse, api_sac_actor_run},
    {"sac/discrete/policy", api_sac_policy_parse, api_sac_policy_run},
    {"sac/continuous/actor", api_sac_continuous_parse, api_sac_continuous_run},
};
#define N_ENDPOINTS (sizeof ENDPOINTS / sizeof *ENDPOINTS)

static const api_endpoint *find_endpoint(const char *op) {
    for (size_t i = 0; i < N_ENDPOINTS; i++)
        if (!strcmp(op, ENDPOINTS[i].op)) return &ENDPOINTS[i];
    return NULL;
}

int api_is_op(const char *op) { return !strcmp(op, "batch") || find_endpoint(op) != NULL; }

void api_limits_default(api_limits *l) {
    l->max_numbers = (size_t)1 << 26;
    l->max_batch_items = 1024;
    l->split_min = 16384;
    l->max_body = (size_t)64 << 20;
}

char *api_error_body(const char *code, const char *message, const char *field,
                     size_t *len) {
    api_buf b = {0};
    w_obj_begin(&b);
    w_key(&b, "error");
    w_obj_begin(&b);
    w_key(&b, "code");
    w_string(&b, code);
    w_key(&b, "message");
    w_string(&b, message);
    if (field && *field) {
        w_key(&b, "field");
        w_string(&b, field);
    }
    w_obj_end(&b);
    w_obj_end(&b);
    if (b.oom) {
        api_buf_free(&b);
        return NULL;
    }
    if (len) *len = b.len;
    return b.p;
}

/* Moves c's outcome into out: the body written, or the error. */
static void finish(api_ctx *c, api_result *out) {
    out->rows = c->rows;
    out->samples = c->samples;
    if (!c->status && c->out.oom)
        api_err(c, 413, "payload_too_large", NULL, "the response does not fit in memory");
    if (!c->status && c->out.nonfinite)
        api_bad(c, NULL, "the result would not be a finite number: use inputs of smaller "
                "magnitude");
    if (c->status) {
        out->status = c->status;
        out->body = api_error_body(c->code, c->message, c->field, &out->len);
        return;
    }
    out->status = 200;
    out->body = c->out.p;
    out->len = c->out.len;
    c->out.p = NULL;
}

/* Parses a body into a JSON value; on failure records invalid_json with
 * line and column. Numbers that overflow a double or a 64-bit integer are
 * valid JSON but not representable: invalid_argument. */
static json_t *load(api_ctx *c, const char *body, size_t len, api_lift *lift) {
    json_error_t e;
    /* With long base64 strings lifted out (api_lift.h), jansson parses the
     * copy; should it refuse the copy, it refuses the body too, and
     * parsing the body itself gives the line and column to report. */
    if (lift) {
        json_t *root =
            json_loadb(lift->body, lift->len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &e);
        free(lift->body);
        lift->body = NULL;
        if (root) {
            c->lift = lift;
            return root;
        }
    }
    /* JSON_DECODE_ANY: a bare string or number is JSON (RFC 8259), just
     * not a request object, so it is an invalid_argument like `[1, 2]`
     * rather than invalid_json ("'[' or '{' expected"), which API.md
     * keeps for bodies that are not JSON. Found by tests/test_api_io.c. */
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &e);
    if (root) return root;
    enum json_error_code code = json_error_code(&e);
    /* An integer literal past 64 bits (JavaScript writes 1e19 as
     * 10000000000000000000) is still a double: read every number as one;
     * the integer fields take integer-valued doubles (api_io.c). Only a
     * number past the largest double is refused then. */
    if (code == json_error_numeric_overflow) {
        root = json_loadb(body, len,
                          JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &e);
        if (root) return root;
        code = json_error_code(&e);
    }
    /* Both are about the token that ends at e.position: name its path. */
    char path[256];
    int named = (code == json_error_numeric_overflow || code == json_error_duplicate_key) &&
                e.position >= 0 && (size_t)e.position <= len &&
                !api_json_path_at(body, (size_t)e.position, path, sizeof path);
    if (code == json_error_numeric_overflow)
        api_bad(c, named ? path : NULL, "a number at line %d, column %d is out of range: %s",
                e.line, e.column, e.text);
    else if (code == json_error_duplicate_key)
        api_bad(c, named ? path : NULL, "%s (line %d, column %d): each field may appear once",
                e.text, e.line, e.column);
    else
        api_err(c, 400, "invalid_json", NULL, "the body is not valid JSON: %s at line %d, "
                "column %d", e.text, e.line, e.column);
    return NULL;
}

static void run_one(api_ctx *c, const api_endpoint *ep, json_t *root) {
    if (!json_is_object(root)) {
        api_bad(c, NULL, "the request body must be a JSON object");
        return;
    }
    if (ep->parse(c, root)) return;
    if (c->defer_above && c->cost > c->defer_above) c->deferred = 1;
    else ep->run(c);
}

/* ==== /v1/batch ============================================================ */

typedef struct {
    json_t *items;
    api_ctx *ctx;
    const api_endpoint **ep;
    json_t **bodies;
} batch_state;

/* Phase 1 of an item: shape checks and the endpoint's parse. */
static void batch_parse_item(void *arg, size_t i) {
    batch_state *s = arg;
    api_ctx *c = &s->ctx[i];
    json_t *it = json_array_get(s->items, i);
    /* Field paths inside an item are relative to the item, as if it had
     * been sent on its own. */
    static const char *const keys[] = {"op", "body", NULL};
    if (api_keys(c, it, NULL, keys)) return;
    json_t *op = json_object_get(it, "op"), *body = json_object_get(it, "body");
    if (!json_is_string(op)) {
        api_bad(c, "op", "`op` (a path below /v1/, such as \"entropy\") is required");
        return;
    }
    if (!(s->ep[i] = find_endpoint(json_string_value(op)))) {
        api_err(c, 404, "not_found", "op", "no operation \"%.64s\" (batches cannot nest)",
                json_string_value(op));
        return;
    }
    if (!json_is_object(body)) {
        api_bad(c, "body", "`body` (the request of the operation, a JSON object) is required");
        return;
    }
    s->ep[i]->parse(c, body);
}

static void batch_run_item(void *arg, size_t i) {
    batch_state *s = arg;
    if (!s->ctx[i].status) s->ep[i]->run(&s->ctx[i]);
}

static void run_batch(api_ctx *c, json_t *root, api_result *out) {
    static const char *const keys[] = {"requests", "output", NULL};
    if (api_keys(c, root, NULL, keys) || api_read_output(c, root)) return;
    json_t *items = json_object_get(root, "requests");
    if (!json_is_array(items)) {
        api_bad(c, "requests", "`requests` (a list of {\"op\", \"body\"}) is required");
        return;
    }
    size_t n = json_array_size(items);
    if (n > c->lim->max_batch_items) {
        api_err(c, 413, "payload_too_large", "requests", "a batch takes at most %zu requests, "
                "got %zu", c->lim->max_batch_items, n);
        return;
    }
    batch_state s = {items, api_alloc(c, n, sizeof(api_ctx)),
                     api_alloc(c, n, sizeof(api_endpoint *)), NULL};
    if (n && (!s.ctx || !s.ep)) return;
    for (size_t i = 0; i < n; i++) {
        api_ctx_init(&s.ctx[i], c->lim, c->exec);
        s.ctx[i].base64 = c->base64; /* an item's own output wins */
        s.ctx[i].lift = c->lift;
    }
    const api_exec *x = c->exec;
    int par = x && x->run && x->workers > 1 && n > 1;
    if (par) x->run(x->ctx, n, batch_parse_item, &s);
    else for (size_t i = 0; i < n; i++) batch_parse_item(&s, i);
    /* The whole batch is one request for the numbers limit. */
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (!s.ctx[i].status) total += s.ctx[i].cost;
    if (total > c->lim->max_numbers) {
        api_err(c, 413, "payload_too_large", "requests", "the batch computes %zu numbers in all, "
                "over this server's limit of %zu per request", total, c->lim->max_numbers);
    } else if (c->defer_above && total > c->defer_above) {
        c->deferred = 1;
    } else {
        if (par) x->run(x->ctx, n, batch_run_item, &s);
        else for (size_t i = 0; i < n; i++) batch_run_item(&s, i);
        api_buf *b = &c->out;
        w_obj_begin(b);
        w_key(b, "responses");
        w_raw(b, "[", 1);
        b->need_comma = 0;
        for (size_t i = 0; i < n; i++) {
            api_result r = {0};
            finish(&s.ctx[i], &r);
            c->rows += r.rows;
            c->samples += r.samples;
            w_obj_begin(b);
            w_key(b, "status");
            w_int(b, r.status);
            w_key(b, "body");
            if (r.body) w_raw(b, r.body, r.len);
            else b->oom = 1;
            b->need_comma = 1;
            w_obj_end(b);
            free(r.body);
        }
        w_raw(b, "]", 1);
        b->need_comma = 1;
        w_obj_end(b);
    }
    for (size_t i = 0; i < n; i++) api_ctx_free(&s.ctx[i]);
    (void)out;
}

/* ==== entry point =========================================================== */

static int handle(const char *op, const char *body, size_t len, const api_limits *lim,
                  const api_exec *exec, size_t defer_above, api_result *out) {
    const api_endpoint *ep = find_endpoint(op);
    int batch = !strcmp(op, "batch");
    if (!ep && !batch) return -1;
    memset(out, 0, sizeof *out);
    api_ctx c;
    api_ctx_init(&c, lim, exec);
    c.defer_above = defer_above;
    api_lift lift = {0};
    int lifted = len >= API_LIFT_MIN && api_lift_scan(&lift, body, len) == 1;
    /* The JSON tree lives in an arena: no malloc per node while parsing,
     * and no walk to free it afterwards. */
    api_arena arena;
    api_arena_begin(&arena);
    json_t *root = load(&c, body, len, lifted ? &lift : NULL);
    if (root) {
        if (!batch) run_one(&c, ep, root);
        else if (!json_is_object(root)) api_bad(&c, NULL, "the request body must be a JSON object");
        else run_batch(&c, root, out);
    }
    int deferred = c.deferred && !c.status;
    if (!deferred) finish(&c, out);
    api_arena_end(&arena);
    api_ctx_free(&c);
    api_lift_free(&lift);
    return deferred;
}

int api_handle(const char *op, const char *body, size_t len,
               const api_limits *lim, const api_exec *exec, api_result *out) {
    return handle(op, body, len, lim, exec, 0, out);
}

int api_handle_small(const char *op, const char *body, size_t len,
                     const api_limits *lim, api_result *out) {
    return handle(op, body, len, lim, NULL, lim->split_min, out);
}

/* ==== /v1/info =============================================================== */

char *api_info_body(const api_limits *lim, size_t http_threads, size_t workers,
                    size_t *len) {
    api_buf b = {0};
    w_obj_begin(&b);
    w_key(&b, "name");
    w_string(&b, "gradserve");
    w_key(&b, "version");
    w_string(&b, GS_VERSION);
    w_key(&b, "api");
    w_string(&b, "v1");
    w_key(&b, "distributions");
    w_str(&b, "[\"categorical\",\"normal\",\"tanh_normal\"]");
    b.need_comma = 1;
    w_key(&b, "estimators");
    w_str(&b, "{\"categorical\":[\"exact\",\"score\"],\"normal\":[\"exact\",\"score\","
              "\"reparam\"],\"tanh_normal\":[\"score\",\"reparam\"]}");
    b.need_comma = 1;
    w_key(&b, "operations");
    w_raw(&b, "[", 1);
    b.need_comma = 0;
    for (size_t i = 0; i < N_ENDPOINTS; i++) w_string(&b, ENDPOINTS[i].op);
    w_string(&b, "batch");
    w_raw(&b, "]", 1);
    b.need_comma = 1;
    w_key(&b, "limits");
    w_obj_begin(&b);
    w_key(&b, "max_body");
    w_int(&b, (int64_t)lim->max_body);
    w_key(&b, "max_numbers");
    w_int(&b, (int64_t)lim->max_numbers);
    w_key(&b, "max_batch_items");
    w_int(&b, (int64_t)lim->max_batch_items);
    w_obj_end(&b);
    w_key(&b, "threads");
    w_obj_begin(&b);
    w_key(&b, "http");
    w_int(&b, (int64_t)http_threads);
    w_key(&b, "workers");
    w_int(&b, (int64_t)workers);
    w_obj_end(&b);
    w_key(&b, "simd");
    w_string(&b, gs_vm_isa());
    w_obj_end(&b);
    if (len) *len = b.len;
    return b.p;
}
