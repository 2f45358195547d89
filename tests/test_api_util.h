/* test_api_util.h - helpers the api unit suites share: calling api_handle, building and reading JSON, a threaded api_exec. */
#ifndef TEST_API_UTIL_H
#define TEST_API_UTIL_H

#include <check.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "gradserve.h"

/* Every helper is static; a suite uses only some of them. */
#define TU static __attribute__((unused))

/* ==== a string builder ==================================================== */

typedef struct {
    char *p;
    size_t len, cap;
} sb;

TU void sb_vprintf(sb *s, const char *fmt, va_list ap) {
    va_list aq;
    va_copy(aq, ap);
    int n = vsnprintf(NULL, 0, fmt, aq);
    va_end(aq);
    if (s->len + (size_t)n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->len + (size_t)n + 1) cap *= 2;
        s->p = realloc(s->p, cap);
        ck_assert_ptr_nonnull(s->p);
        s->cap = cap;
    }
    vsnprintf(s->p + s->len, s->cap - s->len, fmt, ap);
    s->len += (size_t)n;
}

TU void sb_printf(sb *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(s, fmt, ap);
    va_end(ap);
}

/* A double as text that parses back to the same value. */
TU void sb_dbl(sb *s, double v) { sb_printf(s, "%.17g", v); }

static void sb_arr_rec(sb *s, const double *f, const int64_t *i, size_t rank,
                       const size_t *dims, size_t *pos) {
    if (rank == 0) {
        if (f) sb_dbl(s, f[(*pos)++]);
        else sb_printf(s, "%lld", (long long)i[(*pos)++]);
        return;
    }
    sb_printf(s, "[");
    for (size_t k = 0; k < dims[0]; k++) {
        if (k) sb_printf(s, ",");
        sb_arr_rec(s, f, i, rank - 1, dims + 1, pos);
    }
    sb_printf(s, "]");
}

/* A row-major array as nested JSON arrays (exactly one of f, i). */
TU void sb_arr(sb *s, const double *f, const int64_t *i, size_t rank, const size_t *dims) {
    size_t pos = 0;
    sb_arr_rec(s, f, i, rank, dims, &pos);
}

/* Returns the text (caller frees) and resets the builder. */
TU char *sb_take(sb *s) {
    char *p = s->p ? s->p : strdup("");
    memset(s, 0, sizeof *s);
    return p;
}

/* A malloc'd printf. */
TU char *fmt(const char *f, ...) {
    sb s = {0};
    va_list ap;
    va_start(ap, f);
    sb_vprintf(&s, f, ap);
    va_end(ap);
    return sb_take(&s);
}

/* ==== deterministic inputs ================================================= */

/* splitmix64: reproducible test inputs, independent of the service's RNG. */
TU double rnd(uint64_t *st, double lo, double hi) {
    uint64_t z = (*st += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return lo + (hi - lo) * (double)(z >> 11) * 0x1.0p-53;
}

TU double *rnd_fill(uint64_t *st, size_t n, double lo, double hi) {
    double *v = malloc((n ? n : 1) * sizeof *v);
    for (size_t k = 0; k < n; k++) v[k] = rnd(st, lo, hi);
    return v;
}

/* ==== calling the api layer ================================================ */

typedef struct {
    int status;
    char *body; /* NUL-terminated copy */
    size_t len;
    size_t rows, samples;
    json_t *j; /* parsed body */
} resp;

/* Every body must be JSON a strict parser accepts: no NaN, no Infinity. */
TU resp call_with(const char *op, const char *body, const api_limits *lim,
                  const api_exec *x) {
    api_result r;
    memset(&r, 0xa5, sizeof r);
    int rc = api_handle(op, body, strlen(body), lim, x, &r);
    ck_assert_msg(rc == 0, "api_handle(%s) returned %d", op, rc);
    ck_assert_ptr_nonnull(r.body);
    resp o = {r.status, malloc(r.len + 1), r.len, r.rows, r.samples, NULL};
    memcpy(o.body, r.body, r.len);
    o.body[r.len] = '\0';
    free(r.body);
    ck_assert_msg(strlen(o.body) == o.len, "%s: the body holds a NUL byte", op);
    json_error_t e;
    o.j = json_loads(o.body, JSON_REJECT_DUPLICATES, &e);
    ck_assert_msg(o.j != NULL, "%s: status %d, the body is not strict JSON (%s at %d:%d): %.400s",
                  op, o.status, e.text, e.line, e.column, o.body);
    ck_assert_msg(json_is_object(o.j), "%s: the body is not an object", op);
    return o;
}

TU const api_limits *default_limits(void) {
    static api_limits lim;
    api_limits_default(&lim);
    return &lim;
}

TU resp call(const char *op, const char *body) {
    return call_with(op, body, default_limits(), NULL);
}

TU void resp_free(resp *r) {
    json_decref(r->j);
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* Asserts a 200 (showing the body otherwise). */
#define expect_ok(r)                                                            \
    ck_assert_msg((r).status == 200, "status %d, want 200: %.600s", (r).status, \
                  (r).body)

/* Asserts an error response: status, code and field (NULL: no field,
 * "*": any or none). */
#define expect_error(r, st, cd, fld) expect_error_at(&(r), st, cd, fld, __LINE__)
TU void expect_error_at(const resp *r, int status, const char *code, const char *field,
                        int line) {
    ck_assert_msg(r->status == status, "line %d: status %d, want %d: %.600s", line,
                  r->status, status, r->body);
    json_t *e = json_object_get(r->j, "error");
    ck_assert_msg(json_is_object(e), "line %d: no error object: %s", line, r->body);
    const char *c = json_string_value(json_object_get(e, "code"));
    const char *m = json_string_value(json_object_get(e, "message"));
    const char *f = json_string_value(json_object_get(e, "field"));
    ck_assert_msg(c && !strcmp(c, code), "line %d: code %s, want %s: %s", line, c, code,
                  r->body);
    ck_assert_msg(m && *m, "line %d: no message: %s", line, r->body);
    if (field && !strcmp(field, "*"))
        ; /* any field, or none */
    else if (field)
        ck_assert_msg(f && !strcmp(f, field), "line %d: field %s, want %s: %s", line,
                      f ? f : "(none)", field, r->body);
    else
        ck_assert_msg(!f, "line %d: field %s, want none: %s", line, f, r->body);
    const char *known[] = {"code", "message", "field", NULL};
    const char *k;
    json_t *v;
    json_object_foreach(e, k, v) {
        int ok = 0;
        for (const char **q = known; *q; q++) ok |= !strcmp(*q, k);
        ck_assert_msg(ok, "line %d: unexpected key %s in the error", line, k);
    }
    ck_assert_int_eq(json_object_size(r->j), 1);
}

/* Runs op/body and asserts the error. */
#define call_error(op, body, st, cd, fld)                                       \
    do {                                                                        \
        resp r_ = call(op, body);                                               \
        expect_error_at(&r_, st, cd, fld, __LINE__);                            \
        resp_free(&r_);                                                         \
    } while (0)

/* ==== reading responses ===================================================== */

/* Dotted path lookup: "grad.logits", "stderr.grad.loc". */
TU json_t *jget(json_t *root, const char *path) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *v = root;
    for (char *save = NULL, *t = strtok_r(buf, ".", &save); t && v;
         t = strtok_r(NULL, ".", &save))
        v = json_object_get(v, t);
    return v;
}

/* Asserts that obj has exactly the keys listed (NULL-terminated). */
TU void expect_keys(json_t *obj, const char *const *keys) {
    ck_assert_msg(json_is_object(obj), "not an object");
    size_t n = 0;
    for (const char *const *k = keys; *k; k++, n++)
        ck_assert_msg(json_object_get(obj, *k) != NULL, "key %s missing in %.300s", *k,
                      json_dumps(obj, JSON_COMPACT));
    ck_assert_msg(json_object_size(obj) == n, "%zu keys, want %zu: %.300s",
                  json_object_size(obj), n, json_dumps(obj, JSON_COMPACT));
}

static void expect_arr_rec(json_t *v, const double *f, const int64_t *i, size_t rank,
                           const size_t *dims, size_t *pos, const char *what) {
    if (rank == 0) {
        if (f) {
            ck_assert_msg(json_is_number(v), "%s: element %zu is not a number", what, *pos);
            double got = json_number_value(v), want = f[*pos];
            /* == is bit equality up to the sign of zero, which "-0" loses
             * in jansson's integer parse. */
            ck_assert_msg(got == want, "%s: element %zu is %.17g, want %.17g", what, *pos,
                          got, want);
        } else {
            ck_assert_msg(json_is_integer(v), "%s: element %zu is not an integer", what,
                          *pos);
            ck_assert_msg(json_integer_value(v) == i[*pos], "%s: element %zu is %lld, want %lld",
                          what, *pos, (long long)json_integer_value(v), (long long)i[*pos]);
        }
        (*pos)++;
        return;
    }
    ck_assert_msg(json_is_array(v), "%s: not an array at depth where %zu axes remain", what,
                  rank);
    ck_assert_msg(json_array_size(v) == dims[0], "%s: length %zu, want %zu", what,
                  json_array_size(v), dims[0]);
    for (size_t k = 0; k < dims[0]; k++)
        expect_arr_rec(json_array_get(v, k), f, i, rank - 1, dims + 1, pos, what);
}

/* Asserts v holds exactly these values with this shape (rank 0: a number). */
TU void expect_arr(json_t *v, const double *f, const int64_t *i, size_t rank,
                   const size_t *dims, const char *what) {
    ck_assert_msg(v != NULL, "%s: missing", what);
    size_t pos = 0;
    expect_arr_rec(v, f, i, rank, dims, &pos, what);
}

/* expect_arr on the response member at a dotted path. */
TU void expect_at(json_t *root, const char *path, const double *f, const int64_t *i,
                  size_t rank, const size_t *dims) {
    expect_arr(jget(root, path), f, i, rank, dims, path);
}

/* Copies a numeric nested array (of known total n) into doubles. */
static void flatten_rec(json_t *v, double *out, size_t *pos, size_t cap) {
    if (json_is_array(v)) {
        for (size_t k = 0; k < json_array_size(v); k++)
            flatten_rec(json_array_get(v, k), out, pos, cap);
        return;
    }
    ck_assert_msg(json_is_number(v), "not a number");
    ck_assert_msg(*pos < cap, "more values than expected");
    out[(*pos)++] = json_number_value(v);
}

/* A malloc'd copy of the n numbers of v (asserting there are n). */
TU double *flatten(json_t *v, size_t n) {
    ck_assert_ptr_nonnull(v);
    double *out = malloc((n ? n : 1) * sizeof *out);
    size_t pos = 0;
    flatten_rec(v, out, &pos, n);
    ck_assert_msg(pos == n, "%zu values, want %zu", pos, n);
    return out;
}

TU int64_t *flatten_int(json_t *v, size_t n) {
    double *d = flatten(v, n);
    int64_t *o = malloc((n ? n : 1) * sizeof *o);
    for (size_t k = 0; k < n; k++) o[k] = (int64_t)d[k];
    free(d);
    return o;
}

/* The value of a single-row request is the batched (one-row) request's
 * value with the batch axis dropped: arrays become their element 0, other
 * values (seed, samples, estimator, alpha_loss) are unchanged. Objects
 * (grad, stderr) recurse. */
TU void expect_single_of(json_t *single, json_t *batched, const char *where) {
    if (json_is_object(batched)) {
        ck_assert_msg(json_is_object(single), "%s: not an object", where);
        ck_assert_msg(json_object_size(single) == json_object_size(batched),
                      "%s: %zu keys, batched has %zu", where, json_object_size(single),
                      json_object_size(batched));
        const char *k;
        json_t *v;
        json_object_foreach(batched, k, v) {
            char w[256];
            snprintf(w, sizeof w, "%s.%s", where, k);
            expect_single_of(json_object_get(single, k), v, w);
        }
        return;
    }
    ck_assert_msg(single != NULL, "%s: missing in the single-row response", where);
    if (json_is_array(batched)) {
        ck_assert_msg(json_array_size(batched) == 1, "%s: the batched value has %zu rows",
                      where, json_array_size(batched));
        batched = json_array_get(batched, 0);
    }
    ck_assert_msg(json_equal(single, batched), "%s: %s vs %s", where,
                  json_dumps(single, JSON_ENCODE_ANY | JSON_COMPACT),
                  json_dumps(batched, JSON_ENCODE_ANY | JSON_COMPACT));
}

/* Asserts two bodies are byte-identical. */
#define expect_same_body(a, b)                                                  \
    ck_assert_msg((a).len == (b).len && !memcmp((a).body, (b).body, (a).len),  \
                  "bodies differ:\n%.500s\n%.500s", (a).body, (b).body)

/* Asserts that two requests to op, written differently, get 200 and the
 * same body byte for byte. */
TU void expect_same_answer(const char *op, const char *body_a, const char *body_b) {
    resp a = call(op, body_a), b = call(op, body_b);
    expect_ok(a);
    expect_ok(b);
    expect_same_body(a, b);
    resp_free(&a);
    resp_free(&b);
}

/* ==== a small threaded api_exec =============================================== */

/* run() starts workers - 1 threads that take task indices from a shared
 * counter; the calling thread takes part, so nested run() calls (a batch
 * item splitting its rows) need no free pool thread. */
typedef struct {
    void (*task)(void *, size_t);
    void *arg;
    size_t n, next;
    pthread_mutex_t mu;
} pool_run;

static void *pool_worker(void *p) {
    pool_run *r = p;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        size_t i = r->next < r->n ? r->next++ : r->n;
        pthread_mutex_unlock(&r->mu);
        if (i >= r->n) return NULL;
        r->task(r->arg, i);
    }
}

static size_t pool_calls; /* run() invocations, to see that work was split */
static pthread_mutex_t pool_calls_mu = PTHREAD_MUTEX_INITIALIZER;

static void pool_exec_run(void *ctx, size_t n, void (*task)(void *, size_t), void *arg) {
    size_t workers = *(size_t *)ctx;
    pthread_mutex_lock(&pool_calls_mu);
    pool_calls++;
    pthread_mutex_unlock(&pool_calls_mu);
    pool_run r = {task, arg, n, 0, PTHREAD_MUTEX_INITIALIZER};
    pthread_t t[8];
    size_t nt = workers - 1 < 8 ? workers - 1 : 8;
    for (size_t k = 0; k < nt; k++)
        ck_assert_int_eq(pthread_create(&t[k], NULL, pool_worker, &r), 0);
    pool_worker(&r);
    for (size_t k = 0; k < nt; k++) pthread_join(t[k], NULL);
}

/* An api_exec of `workers` threads (2-4 in the suites). */
TU api_exec pool_exec(size_t *workers) {
    api_exec x = {pool_exec_run, workers, *workers};
    return x;
}

TU size_t pool_call_count(void) {
    pthread_mutex_lock(&pool_calls_mu);
    size_t n = pool_calls;
    pthread_mutex_unlock(&pool_calls_mu);
    return n;
}

/* Runs op/body serially, then on 2, 3 and 4 threads with every request split
 * (split_min 1): the bodies must be byte-identical, and the split must have
 * happened. Returns the serial response. */
TU resp expect_parallel_identical(const char *op, const char *body) {
    resp serial = call(op, body);
    for (size_t w = 2; w <= 4; w++) {
        api_limits lim;
        api_limits_default(&lim);
        lim.split_min = 1;
        size_t workers = w;
        api_exec x = pool_exec(&workers);
        size_t before = pool_call_count();
        resp par = call_with(op, body, &lim, &x);
        ck_assert_msg(serial.status != 200 || pool_call_count() > before,
                      "%s: the request was not split across workers", op);
        ck_assert_int_eq(par.status, serial.status);
        expect_same_body(serial, par);
        resp_free(&par);
    }
    return serial;
}

/* ==== base64 ================================================================== */

TU char *b64_encode(const void *data, size_t n) {
    static const char T[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *d = data;
    char *o = malloc((n + 2) / 3 * 4 + 1), *p = o;
    size_t k = 0;
    for (; k + 3 <= n; k += 3) {
        unsigned v = (unsigned)d[k] << 16 | (unsigned)d[k + 1] << 8 | d[k + 2];
        *p++ = T[v >> 18], *p++ = T[(v >> 12) & 63], *p++ = T[(v >> 6) & 63], *p++ = T[v & 63];
    }
    if (k < n) {
        unsigned v = (unsigned)d[k] << 16 | (k + 1 < n ? (unsigned)d[k + 1] << 8 : 0);
        *p++ = T[v >> 18], *p++ = T[(v >> 12) & 63];
        *p++ = k + 1 < n ? T[(v >> 6) & 63] : '=';
        *p++ = '=';
    }
    *p = '\0';
    return o;
}

/* Decodes standard padded base64; *n gets the byte count. */
TU unsigned char *b64_decode_all(const char *s, size_t *n) {
    size_t len = strlen(s);
    ck_assert_msg(len % 4 == 0, "base64 length %zu is not a multiple of 4", len);
    unsigned char *o = malloc(len / 4 * 3 + 1);
    size_t k = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '=') break;
        const char *T = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const char *q = strchr(T, s[i]);
        ck_assert_msg(q && s[i], "bad base64 character %c", s[i]);
        acc = (acc << 6) | (unsigned)(q - T);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[k++] = (unsigned char)(acc >> bits);
        }
    }
    *n = k;
    return o;
}

/* A tensor object {"dtype","shape","data"} as JSON text (malloc'd). */
TU char *tensor_json(const char *dtype, size_t rank, const size_t *dims, const void *data,
                     size_t nbytes) {
    sb s = {0};
    char *b = b64_encode(data, nbytes);
    sb_printf(&s, "{\"dtype\":\"%s\",\"shape\":[", dtype);
    for (size_t k = 0; k < rank; k++) sb_printf(&s, "%s%zu", k ? "," : "", dims[k]);
    sb_printf(&s, "],\"data\":\"%s\"}", b);
    free(b);
    return sb_take(&s);
}

/* Asserts that b64 (a response with "output": "base64") is plain (the same
 * request's JSON response) with every array replaced by a tensor object
 * whose bytes decode to the same values: float64 for reals, int64 for
 * integers. Scalars are unchanged. */
TU void expect_b64_of(json_t *b64, json_t *plain, const char *where) {
    if (json_is_object(plain)) {
        ck_assert_msg(json_is_object(b64), "%s: not an object", where);
        ck_assert_msg(json_object_size(b64) == json_object_size(plain), "%s: key count", where);
        const char *k;
        json_t *v;
        json_object_foreach(plain, k, v) {
            char w[256];
            snprintf(w, sizeof w, "%s.%s", where, k);
            expect_b64_of(json_object_get(b64, k), v, w);
        }
        return;
    }
    if (!json_is_array(plain)) {
        ck_assert_msg(json_equal(b64, plain), "%s: scalar differs", where);
        return;
    }
    ck_assert_msg(json_is_object(b64), "%s: an array was not sent as a tensor", where);
    const char *keys[] = {"dtype", "shape", "data", NULL};
    expect_keys(b64, keys);
    /* Shape of the plain array, and whether its leaves are integers. */
    size_t dims[4], rank = 0, n = 1;
    json_t *e = plain;
    while (json_is_array(e)) {
        ck_assert(rank < 4);
        dims[rank++] = json_array_size(e);
        n *= json_array_size(e);
        e = json_array_get(e, 0);
    }
    /* Integer arrays (actions) come as int64; a real array whose values
     * happen to print as integers ("0") is still float64. */
    const char *leaf = strrchr(where, '.');
    leaf = leaf ? leaf + 1 : where;
    int integer = !strcmp(leaf, "actions") || !strcmp(leaf, "samples");
    for (size_t k = 0; integer && k < n; k++) {
        /* walk to leaf k: only categorical samples are integers */
        json_t *x = plain;
        size_t rem = k;
        for (size_t d = 0; d < rank; d++) {
            size_t stride = 1;
            for (size_t q = d + 1; q < rank; q++) stride *= dims[q];
            x = json_array_get(x, rem / stride);
            rem %= stride;
        }
        integer = json_is_integer(x);
    }
    json_t *shape = json_object_get(b64, "shape");
    ck_assert_msg(json_array_size(shape) == rank, "%s: rank", where);
    for (size_t k = 0; k < rank; k++)
        ck_assert_msg((size_t)json_integer_value(json_array_get(shape, k)) == dims[k],
                      "%s: shape[%zu]", where, k);
    const char *dt = json_string_value(json_object_get(b64, "dtype"));
    size_t nb;
    unsigned char *raw = b64_decode_all(json_string_value(json_object_get(b64, "data")), &nb);
    ck_assert_msg(nb == n * 8, "%s: %zu bytes, want %zu", where, nb, n * 8);
    double *want = flatten(plain, n);
    if (integer) {
        ck_assert_msg(!strcmp(dt, "int64"), "%s: dtype %s, want int64", where, dt);
        for (size_t k = 0; k < n; k++) {
            int64_t x;
            memcpy(&x, raw + 8 * k, 8);
            ck_assert_msg((double)x == want[k], "%s[%zu]", where, k);
        }
    } else {
        ck_assert_msg(!strcmp(dt, "float64"), "%s: dtype %s, want float64", where, dt);
        for (size_t k = 0; k < n; k++) {
            double x;
            memcpy(&x, raw + 8 * k, 8);
            ck_assert_msg(x == want[k], "%s[%zu]: %.17g vs %.17g", where, k, x, want[k]);
        }
    }
    free(want);
    free(raw);
}

/* Runs body as is and with "output": "base64" appended (body must end in
 * '}'), asserting both are 200 and agree. */
TU void expect_b64_matches(const char *op, const char *body) {
    resp plain = call(op, body);
    expect_ok(plain);
    size_t l = strlen(body);
    char *b = fmt("%.*s,\"output\":\"base64\"}", (int)(l - 1), body);
    resp enc = call(op, b);
    expect_ok(enc);
    expect_b64_of(enc.j, plain.j, op);
    free(b);
    resp_free(&plain);
    resp_free(&enc);
}

/* ==== test distributions ====================================================== */

/* A distribution with owned parameter arrays, written into requests and
 * handed to the core for the reference values. */
typedef struct {
    gs_dist_type type;
    size_t B, D;
    double *p0, *p1; /* logits or loc; log_scale or scale (B x D) */
    int sigma;       /* p1 is scale */
    double *low, *high;
} tdist;

/* Random parameters: logits in [-3, 3], loc in [-1, 1], log_scale in
 * [-1, 0.5] or scale in [0.3, 1.5], bounds low in [-3, -1], high in [1, 3]. */
TU tdist tdist_make(gs_dist_type type, size_t B, size_t D, uint64_t seed, int sigma,
                    int bounds) {
    uint64_t st = seed * 1000003u + 17;
    tdist t = {type, B, D, NULL, NULL, sigma, NULL, NULL};
    if (type == GS_CATEGORICAL) {
        t.p0 = rnd_fill(&st, B * D, -3, 3);
        return t;
    }
    t.p0 = rnd_fill(&st, B * D, -1, 1);
    t.p1 = sigma ? rnd_fill(&st, B * D, 0.3, 1.5) : rnd_fill(&st, B * D, -1, 0.5);
    if (type == GS_TANH_NORMAL && bounds) {
        t.low = rnd_fill(&st, D, -3, -1);
        t.high = rnd_fill(&st, D, 1, 3);
    }
    return t;
}

TU void tdist_free(tdist *t) {
    free(t->p0);
    free(t->p1);
    free(t->low);
    free(t->high);
    memset(t, 0, sizeof *t);
}

TU const char *tdist_type_name(gs_dist_type t) {
    return t == GS_CATEGORICAL ? "categorical" : t == GS_NORMAL ? "normal" : "tanh_normal";
}

/* Appends the distribution object; single drops the batch axis (B must be 1). */
TU void sb_tdist(sb *s, const tdist *t, int single) {
    size_t dims[2] = {t->B, t->D};
    const size_t *d = single ? dims + 1 : dims;
    size_t r = single ? 1 : 2;
    sb_printf(s, "{\"type\":\"%s\",\"%s\":", tdist_type_name(t->type),
              t->type == GS_CATEGORICAL ? "logits" : "loc");
    sb_arr(s, t->p0, NULL, r, d);
    if (t->p1) {
        sb_printf(s, ",\"%s\":", t->sigma ? "scale" : "log_scale");
        sb_arr(s, t->p1, NULL, r, d);
    }
    if (t->low) {
        sb_printf(s, ",\"low\":");
        sb_arr(s, t->low, NULL, 1, &t->D);
        sb_printf(s, ",\"high\":");
        sb_arr(s, t->high, NULL, 1, &t->D);
    }
    sb_printf(s, "}");
}

/* The core's view of it. */
TU gs_dist tdist_core(const tdist *t) {
    gs_dist d = {0};
    d.type = t->type;
    d.rows = t->B;
    d.dim = t->D;
    if (t->type == GS_CATEGORICAL) d.logits = t->p0;
    else {
        d.loc = t->p0;
        d.scale = t->p1;
        d.scale_is_sigma = t->sigma;
        d.low = t->low;
        d.high = t->high;
    }
    return d;
}

/* The first `rows` rows of t, as a distribution of its own. */
TU tdist tdist_head(const tdist *t, size_t rows) {
    tdist h = *t;
    h.B = rows;
    size_t n = rows * t->D;
    h.p0 = malloc(n * sizeof(double));
    memcpy(h.p0, t->p0, n * sizeof(double));
    if (t->p1) {
        h.p1 = malloc(n * sizeof(double));
        memcpy(h.p1, t->p1, n * sizeof(double));
    }
    if (t->low) {
        h.low = malloc(t->D * sizeof(double));
        h.high = malloc(t->D * sizeof(double));
        memcpy(h.low, t->low, t->D * sizeof(double));
        memcpy(h.high, t->high, t->D * sizeof(double));
    }
    return h;
}

/* Asserts the response's gradient object: keys named as the caller sent
 * them, values equal to g (B x D, batch axis dropped when single). */
TU void expect_pgrad(json_t *obj, const tdist *t, const gs_pgrad *g, int single,
                     const char *what) {
    ck_assert_msg(json_is_object(obj), "%s: not an object", what);
    size_t dims[2] = {t->B, t->D};
    const char *n0 = t->type == GS_CATEGORICAL ? "logits" : "loc";
    const char *n1 = t->sigma ? "scale" : "log_scale";
    char w[128];
    snprintf(w, sizeof w, "%s.%s", what, n0);
    expect_arr(json_object_get(obj, n0), g->p0, NULL, single ? 1 : 2, single ? dims + 1 : dims, w);
    if (t->type == GS_CATEGORICAL) {
        ck_assert_int_eq(json_object_size(obj), 1);
        return;
    }
    snprintf(w, sizeof w, "%s.%s", what, n1);
    expect_arr(json_object_get(obj, n1), g->p1, NULL, single ? 1 : 2, single ? dims + 1 : dims, w);
    ck_assert_int_eq(json_object_size(obj), 2);
}

/* Gradient arrays for t (p1 only for continuous types). */
TU gs_pgrad pgrad_new(const tdist *t) {
    gs_pgrad g = {calloc(t->B * t->D, sizeof(double)), NULL};
    if (t->type != GS_CATEGORICAL) g.p1 = calloc(t->B * t->D, sizeof(double));
    return g;
}

TU void pgrad_free(gs_pgrad *g) {
    free(g->p0);
    free(g->p1);
    g->p0 = g->p1 = NULL;
}

/* The noise /v1/sample returns for (seed, B rows of t, M): the eps array
 * (B x M x D), malloc'd. */
TU double *sample_eps(const tdist *t, uint64_t seed, size_t M) {
    sb s = {0};
    sb_printf(&s, "{\"distribution\":");
    sb_tdist(&s, t, 0);
    sb_printf(&s, ",\"samples\":%zu,\"seed\":%llu}", M, (unsigned long long)seed);
    char *b = sb_take(&s);
    resp r = call("sample", b);
    expect_ok(r);
    double *eps = flatten(json_object_get(r.j, "eps"), t->B * M * t->D);
    resp_free(&r);
    free(b);
    return eps;
}

/* ==== suite runner ============================================================== */

/* Runs one suite in fork mode; returns the process exit status. */
TU int run_suite(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

#endif
