/* api_io.c - request context, field readers (JSON and base64 tensors) and the JSON writer. */
#include "api_io.h"
#include "api_b64.h"
#include "api_lift.h"

#include "api_dtoa.h"

#include <math.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* ==== output buffer ======================================================= */

void api_buf_free(api_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* Grows by doubling so that writing n bytes costs O(n) overall. */
static int buf_reserve(api_buf *b, size_t extra) {
    if (b->oom) return -1;
    if (b->len + extra + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void w_raw(api_buf *b, const char *s, size_t n) {
    if (buf_reserve(b, n)) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void w_str(api_buf *b, const char *s) { w_raw(b, s, strlen(s)); }

static void sep(api_buf *b) {
    if (b->need_comma) w_raw(b, ",", 1);
    b->need_comma = 0;
}

void w_obj_begin(api_buf *b) {
    sep(b);
    w_raw(b, "{", 1);
}

void w_obj_end(api_buf *b) {
    w_raw(b, "}", 1);
    b->need_comma = 1;
}

void w_key(api_buf *b, const char *key) {
    sep(b);
    w_string(b, key);
    w_raw(b, ":", 1);
    b->need_comma = 0;
}

void w_double(api_buf *b, double v) {
    char s[32];
    /* Every kernel refuses inputs whose outputs would not be finite; this
     * is the last guard, so that a miss there is a 400, never NaN in a
     * response (nor a failed assertion in Dragonbox, which takes finite
     * values only). */
    if (!isfinite(v)) {
        b->nonfinite = 1;
        v = 0.0;
    }
    sep(b);
    w_raw(b, s, (size_t)api_dtoa(v, s));
    b->need_comma = 1;
}

void w_int(api_buf *b, int64_t v) {
    char s[24];
    sep(b);
    w_raw(b, s, (size_t)snprintf(s, sizeof s, "%lld", (long long)v));
    b->need_comma = 1;
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *s) {
    if (s[0] < 0x80) return 1;
    size_t n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : 0;
    for (size_t k = 1; k < n; k++)
        if ((s[k] & 0xc0) != 0x80) return 0;
    return n;
}

/* A JSON string: quotes, backslashes and control characters escaped, valid
 * UTF-8 copied, and any invalid byte (a message that cut a caller's string
 * in the middle of a character, say) replaced by U+FFFD. */
void w_string(api_buf *b, const char *s) {
    sep(b);
    w_raw(b, "\"", 1);
    const unsigned char *u = (const unsigned char *)s;
    while (*u) {
        size_t run = 0; /* the longest stretch needing no escape */
        while (u[run] >= 0x20 && u[run] < 0x80 && u[run] != '"' && u[run] != '\\') run++;
        if (run) {
            w_raw(b, (const char *)u, run);
            u += run;
            continue;
        }
        if (*u == '"' || *u == '\\') {
            char e[2] = {'\\', (char)*u};
            w_raw(b, e, 2);
            u++;
        } else if (*u < 0x20) {
            char e[8];
            snprintf(e, sizeof e, "\\u%04x", *u);
            w_raw(b, e, 6);
            u++;
        } else {
            size_t n = utf8_len(u);
            if (n) w_raw(b, (const char *)u, n);
            else w_raw(b, "\xef\xbf\xbd", 3);
            u += n ? n : 1;
        }
    }
    w_raw(b, "\"", 1);
    b->need_comma = 1;
}

/* ==== context and errors ==================================================== */

void api_ctx_init(api_ctx *c, const api_limits *lim, const api_exec *exec) {
    memset(c, 0, sizeof *c);
    c->lim = lim;
    c->exec = exec;
}

void api_ctx_free(api_ctx *c) {
    for (size_t i = 0; i < c->nallocs; i++) free(c->allocs[i]);
    free(c->allocs);
    api_buf_free(&c->out);
    c->allocs = NULL;
    c->nallocs = c->capallocs = 0;
}

/* Keeps p (or reports out of memory): the tail of api_alloc and
 * api_alloc_raw. */
static void *keep(api_ctx *c, void *p) {
    if (!p) goto oom;
    if (c->nallocs == c->capallocs) {
        size_t cap = c->capallocs ? 2 * c->capallocs : 16;
        void **a = realloc(c->allocs, cap * sizeof *a);
        if (!a) goto oom;
        c->allocs = a;
        c->capallocs = cap;
    }
    c->allocs[c->nallocs++] = p;
    return p;
oom:
    free(p);
    api_err(c, 413, "payload_too_large", NULL, "the request needs more memory than is available");
    return NULL;
}

void *api_alloc_raw(api_ctx *c, size_t n) { return keep(c, malloc(n ? n : 1)); }

void *api_alloc(api_ctx *c, size_t n, size_t size) {
    if (size && n > SIZE_MAX / size) {
        api_err(c, 413, "payload_too_large", NULL, "the request needs more memory than is available");
        return NULL;
    }
    /* Zeroed, on a cache line: the kernels' big outputs can then be
     * written with streaming stores (core/gs_vmath_impl.h). */
    size_t bytes = (n ? n : 1) * (size ? size : 1);
    if (bytes > SIZE_MAX - 63) return keep(c, NULL);
    void *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (p) memset(p, 0, bytes);
    return keep(c, p);
}

static int verr(api_ctx *c, int status, const char *code, const char *field,
                const char *fmt, va_list ap) {
    if (c->status) return -1; /* the first error is the one reported */
    c->status = status;
    c->code = code;
    vsnprintf(c->message, sizeof c->message, fmt, ap);
    snprintf(c->field, sizeof c->field, "%s", field ? field : "");
    return -1;
}

int api_err(api_ctx *c, int status, const char *code, const char *field,
            const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    verr(c, status, code, field, fmt, ap);
    va_end(ap);
    return -1;
}

int api_bad(api_ctx *c, const char *field, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    verr(c, 400, "invalid_argument", field, fmt, ap);
    va_end(ap);
    return -1;
}

int api_charge(api_ctx *c, size_t rows, size_t samples, size_t dims) {
    size_t numbers;
    if (__builtin_mul_overflow(rows, samples, &numbers) ||
        __builtin_mul_overflow(numbers, dims, &numbers))
        numbers = SIZE_MAX;
    c->cost = numbers;
    if (numbers > c->lim->max_numbers)
        return api_err(c, 413, "payload_too_large", NULL,
                       "the request computes %zu numbers (batch x samples x dims), over "
                       "this server's limit of %zu; split it into smaller requests",
                       numbers, c->lim->max_numbers);
    return 0;
}

/* ==== reading fields ========================================================= */

const char *api_path(char *buf, size_t n, const char *prefix, const char *key) {
    if (!prefix || !*prefix) snprintf(buf, n, "%s", key);
    else snprintf(buf, n, "%s.%s", prefix, key);
    return buf;
}

/* A scan of the JSON text s[0, pos), valid JSON so far, that keeps the path
 * of the value (or key) being read: a stack of containers, each with the
 * path length before its elements and, for arrays, the element's index. */
int api_json_path_at(const char *s, size_t pos, char *out, size_t cap) {
    enum { DEPTH = 64 };
    struct {
        size_t base;
        size_t idx; /* arrays: the element's index; objects: SIZE_MAX */
    } st[DEPTH];
    char p[256];
    size_t n = 0, depth = 0;
    int want_key = 0;
    p[0] = '\0';
    for (size_t i = 0; i < pos; i++) {
        char ch = s[i];
        if (ch == '"') {
            size_t j = i + 1;
            while (j < pos && s[j] != '"') j += s[j] == '\\' ? 2 : 1;
            if (depth && st[depth - 1].idx == SIZE_MAX && want_key) {
                /* a key: the path of its value (\" \\ \/ unescaped, as
                 * jansson reads them; other escapes as written) */
                n = st[depth - 1].base;
                if (n) {
                    if (n + 1 >= sizeof p) return -1;
                    p[n++] = '.';
                }
                for (size_t q = i + 1; q < j && q < pos; q++) {
                    if (s[q] == '\\' && q + 1 < j && s[q + 1] && strchr("\"\\/", s[q + 1])) q++;
                    if (n + 1 >= sizeof p) return -1;
                    p[n++] = s[q];
                }
                p[n] = '\0';
                want_key = 0;
            }
            i = j;
        } else if (ch == '[' || ch == '{') {
            if (depth == DEPTH) return -1;
            st[depth].base = n;
            st[depth].idx = ch == '[' ? 0 : SIZE_MAX;
            depth++;
            want_key = ch == '{';
            if (ch == '[') {
                int w = snprintf(p + n, sizeof p - n, "[0]");
                if (w < 0 || (size_t)w >= sizeof p - n) return -1;
                n += (size_t)w;
            }
        } else if (ch == ']' || ch == '}') {
            if (!depth) return -1;
            n = st[--depth].base;
            p[n] = '\0';
            want_key = 0;
        } else if (ch == ',' && depth) {
            size_t k = st[depth - 1].base;
            if (st[depth - 1].idx == SIZE_MAX) {
                n = k, p[n] = '\0', want_key = 1;
            } else {
                int w = snprintf(p + k, sizeof p - k, "[%zu]", ++st[depth - 1].idx);
                if (w < 0 || (size_t)w >= sizeof p - k) return -1;
                n = k + (size_t)w;
            }
        }
    }
    if (!n) return -1;
    snprintf(out, cap, "%s", p);
    return 0;
}

int api_keys(api_ctx *c, json_t *obj, const char *prefix,
             const char *const *allowed) {
    if (!json_is_object(obj))
        return api_bad(c, prefix && *prefix ? prefix : NULL, "%s must be a JSON object",
                       prefix && *prefix ? prefix : "the request body");
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++) ok = !strcmp(key, *a);
        if (!ok) {
            char p[256];
            return api_bad(c, api_path(p, sizeof p, prefix, key),
                           "unknown field `%s` (unknown fields are refused, not ignored, "
                           "so that a typo cannot change the maths)", key);
        }
    }
    return 0;
}

int api_get_double(api_ctx *c, json_t *obj, const char *key, const char *path,
                   double *v) {
    json_t *j = json_object_get(obj, key);
    if (!j) return 0;
    if (!json_is_number(j)) return api_bad(c, path, "`%s` must be a number", path);
    *v = json_number_value(j);
    return 1;
}

int api_int_value(const json_t *j, int64_t *v) {
    if (json_is_integer(j)) {
        *v = (int64_t)json_integer_value(j);
        return 1;
    }
    /* JSON has one kind of number: 2.0 and 2e0 are the integer 2. */
    double r = json_is_real(j) ? json_real_value(j) : 0.5;
    if (r != floor(r) || !(r >= -0x1p63 && r < 0x1p63)) return 0;
    *v = (int64_t)r;
    return 1;
}

int api_get_int(api_ctx *c, json_t *obj, const char *key, const char *path,
                int64_t lo, int64_t hi, int64_t *v) {
    json_t *j = json_object_get(obj, key);
    if (!j) return 0;
    int64_t x;
    if (!api_int_value(j, &x)) {
        /* an integer past 64 bits (read as a double) is out of range too */
        if (json_is_real(j) && json_real_value(j) == floor(json_real_value(j)))
            return api_bad(c, path, "`%s` must be between %lld and %lld, got %.17g", path,
                           (long long)lo, (long long)hi, json_real_value(j));
        return api_bad(c, path, "`%s` must be an integer between %lld and %lld", path,
                       (long long)lo, (long long)hi);
    }
    if (x < lo || x > hi)
        return api_bad(c, path, "`%s` must be between %lld and %lld, got %lld", path,
                       (long long)lo, (long long)hi, (long long)x);
    *v = x;
    return 1;
}

int api_get_enum(api_ctx *c, json_t *obj, const char *key, const char *path,
                 const char *const *choices, int *idx) {
    json_t *j = json_object_get(obj, key);
    if (!j) return 0;
    char list[256] = "";
    for (const char *const *s = choices; *s; s++) {
        if (json_is_string(j) && !strcmp(json_string_value(j), *s)) {
            *idx = (int)(s - choices);
            return 1;
        }
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s\"%s\"", l ? ", " : "", *s);
    }
    if (json_is_string(j))
        return api_bad(c, path, "`%s` must be one of %s, got \"%.64s\"", path, list,
                       json_string_value(j));
    return api_bad(c, path, "`%s` must be a string, one of %s", path, list);
}

/* ---- arrays ------------------------------------------------------------------ */

static int is_tensor(json_t *v) {
    return json_is_object(v) && json_object_get(v, "dtype") && json_object_get(v, "data");
}

size_t api_rank(json_t *v) {
    if (is_tensor(v)) {
        json_t *s = json_object_get(v, "shape");
        return json_is_array(s) ? json_array_size(s) : 0;
    }
    size_t r = 0;
    while (json_is_array(v) && r < 8) {
        r++;
        v = json_array_get(v, 0);
    }
    return r;
}

/* path[i][j]... for the index prefix idx[0..depth). */
static const char *index_path(char *buf, size_t n, const char *path,
                              const size_t *idx, size_t depth) {
    size_t l = (size_t)snprintf(buf, n, "%s", path);
    for (size_t d = 0; d < depth && l < n; d++)
        l += (size_t)snprintf(buf + l, n - l, "[%zu]", idx[d]);
    return buf;
}

static const char *rank_name(size_t rank) {
    static const char *names[] = {"a number", "a 1-D array", "a 2-D array",
                                  "a 3-D array", "a 4-D array"};
    return names[rank < 5 ? rank : 4];
}

typedef struct {
    api_ctx *c;
    const char *path;
    size_t rank;
    const size_t *dims;
    int integer;
    api_arr *out;
    size_t pos;
    size_t idx[4];
} fill_state;

static int fill(fill_state *s, json_t *v, size_t depth) {
    char p[256];
    if (depth == s->rank) {
        /* The hot path: one element. Its path is only formatted for an
         * error (formatting it for every number was a third of parsing). */
        if (s->integer) {
            if (!api_int_value(v, &s->out->i[s->pos])) {
                index_path(p, sizeof p, s->path, s->idx, depth);
                return api_bad(s->c, p, "`%s` must be an integer", p);
            }
            s->pos++;
        } else if (json_is_real(v)) {
            s->out->f[s->pos++] = json_real_value(v);
        } else if (json_is_integer(v)) {
            s->out->f[s->pos++] = (double)json_integer_value(v);
        } else {
            index_path(p, sizeof p, s->path, s->idx, depth);
            return api_bad(s->c, p, "`%s` must be a number", p);
        }
        return 0;
    }
    if (!json_is_array(v)) {
        index_path(p, sizeof p, s->path, s->idx, depth);
        return api_bad(s->c, p, "`%s` must be %s (%zu more nested level%s)", p,
                       rank_name(s->rank - depth), s->rank - depth,
                       s->rank - depth > 1 ? "s" : "");
    }
    if (json_array_size(v) != s->dims[depth]) {
        index_path(p, sizeof p, s->path, s->idx, depth);
        return api_bad(s->c, p, "`%s` has %zu entries where %zu are expected (ragged or "
                       "mismatched shape)", p, json_array_size(v), s->dims[depth]);
    }
    for (size_t k = 0; k < s->dims[depth]; k++) {
        s->idx[depth] = k;
        if (fill(s, json_array_get(v, k), depth + 1)) return -1;
    }
    return 0;
}

/* The index of the first infinity or NaN of f[0..n), or n: x - x is NaN
 * exactly for those, so blocks of 32 are tested with one unordered
 * compare per pair and a single branch. */
static size_t first_nonfinite(const double *f, size_t n) {
    size_t k = 0;
#ifdef __SSE2__
    for (; k + 32 <= n; k += 32) {
        __m128d bad = _mm_setzero_pd();
        for (size_t j = 0; j < 32; j += 2) {
            __m128d x = _mm_loadu_pd(f + k + j);
            __m128d d = _mm_sub_pd(x, x);
            bad = _mm_or_pd(bad, _mm_cmpunord_pd(d, d));
        }
        if (_mm_movemask_pd(bad)) break;
    }
#endif
    while (k < n && isfinite(f[k])) k++;
    return k;
}

static int read_tensor(api_ctx *c, json_t *v, const char *path, size_t rank,
                       const size_t *want, int integer, api_arr *out) {
    static const char *const keys[] = {"dtype", "shape", "data", NULL};
    static const char *const dtypes[] = {"float64", "float32", "int32", "int64", NULL};
    static const size_t sizes[] = {8, 4, 4, 8};
    char p[256];
    if (api_keys(c, v, path, keys)) return -1;
    int dt = 0;
    if (api_get_enum(c, v, "dtype", api_path(p, sizeof p, path, "dtype"), dtypes, &dt) < 0)
        return -1;
    if (integer && dt < 2)
        return api_bad(c, api_path(p, sizeof p, path, "dtype"),
                       "`%s` holds integers: its dtype must be \"int32\" or \"int64\"", path);
    if (!integer && dt >= 2)
        return api_bad(c, api_path(p, sizeof p, path, "dtype"),
                       "`%s` holds real numbers: its dtype must be \"float64\" or \"float32\"", path);
    json_t *shape = json_object_get(v, "shape");
    api_path(p, sizeof p, path, "shape");
    if (!json_is_array(shape) || json_array_size(shape) != rank)
        return api_bad(c, p, "`%s` must be a list of %zu lengths (%s)", p, rank, rank_name(rank));
    out->rank = rank;
    out->n = 1;
    for (size_t k = 0; k < rank; k++) {
        json_t *d = json_array_get(shape, k);
        int64_t dk;
        if (!api_int_value(d, &dk) || dk < 1) {
            char pk[272];
            snprintf(pk, sizeof pk, "%s[%zu]", p, k);
            return api_bad(c, pk, "`%s` must be a positive integer", pk);
        }
        size_t len = (size_t)dk;
        if (want[k] && len != want[k])
            return api_bad(c, path, "`%s` has length %zu on axis %zu where %zu is expected",
                           path, len, k, want[k]);
        out->dims[k] = len;
        if (out->n > ((size_t)1 << 40) / len)
            return api_err(c, 413, "payload_too_large", p, "`%s` describes too large a tensor", p);
        out->n *= len;
    }
    json_t *data = json_object_get(v, "data");
    api_path(p, sizeof p, path, "data");
    if (!json_is_string(data)) return api_bad(c, p, "`%s` must be a base64 string", p);
    size_t slen = json_string_length(data), nbytes = out->n * sizes[dt];
    const char *text = json_string_value(data);
    /* A long string may have been decoded already (api_lift.h). */
    const api_span *lifted = api_lift_find(c->lift, text, slen);
    if (lifted) slen = lifted->n;
    if (slen / 4 * 3 > nbytes + 3 || nbytes > slen / 4 * 3 + 3)
        return api_bad(c, p, "`%s` holds about %zu bytes, but dtype %s and shape give %zu",
                       p, slen / 4 * 3, dtypes[dt], nbytes);
    unsigned char *raw;
    long got;
    if (lifted) {
        raw = lifted->bytes;
        /* what decoding into nbytes + 3 bytes of room would have said */
        got = lifted->nbytes > nbytes + 3 ? (long)nbytes + 4 : (long)lifted->nbytes;
    } else {
        if (!(raw = api_alloc_raw(c, nbytes + 3))) return -1;
        got = api_b64_decode(text, slen, raw, nbytes + 3);
    }
    if (got < 0) return api_bad(c, p, "`%s` is not valid base64", p);
    if ((size_t)got != nbytes)
        return api_bad(c, p, "`%s` decodes to %ld bytes, but dtype %s and shape give %zu", p,
                       got, dtypes[dt], nbytes);
    /* Little-endian on the wire, as here: float64 and int64 are used where
     * they were decoded (malloc's alignment suits them), float32 and int32
     * are widened. */
    if (dt == 0) out->f = (double *)raw;
    else if (dt == 3) out->i = (int64_t *)raw;
    else if (integer ? !(out->i = api_alloc_raw(c, out->n * sizeof *out->i))
                     : !(out->f = api_alloc_raw(c, out->n * sizeof *out->f)))
        return -1;
    if (dt == 1) {
        for (size_t k = 0; k < out->n; k++) {
            float f;
            memcpy(&f, raw + 4 * k, 4);
            out->f[k] = (double)f;
        }
    } else if (dt == 2) {
        for (size_t k = 0; k < out->n; k++) {
            int32_t x;
            memcpy(&x, raw + 4 * k, 4);
            out->i[k] = x;
        }
    }
    size_t k = integer ? out->n : first_nonfinite(out->f, out->n);
    if (k < out->n) {
        size_t idx[4], rem = k;
        for (size_t d = rank; d-- > 0;) {
            idx[d] = rem % out->dims[d];
            rem /= out->dims[d];
        }
        index_path(p, sizeof p, path, idx, rank);
        return api_bad(c, p, "`%s` must be finite, got %g", p, out->f[k]);
    }
    return 0;
}

int api_read(api_ctx *c, json_t *v, const char *path, size_t rank,
             const size_t *want, int integer, api_arr *out) {
    memset(out, 0, sizeof *out);
    if (is_tensor(v)) return read_tensor(c, v, path, rank, want, integer, out);
    /* Shape from the first element of each level, then a checked fill. */
    json_t *e = v;
    out->rank = rank;
    out->n = 1;
    for (size_t d = 0; d < rank; d++) {
        size_t len = json_is_array(e) ? json_array_size(e) : 0;
        if (!len || (want[d] && len != want[d])) {
            /* The path is formatted on error only. */
            char p[256];
            size_t idx[4] = {0};
            index_path(p, sizeof p, path, idx, d);
            if (!json_is_array(e))
                return api_bad(c, p, "`%s` must be %s", p, rank_name(rank - d));
            if (len == 0) return api_bad(c, p, "`%s` must not be empty", p);
            return api_bad(c, p, "`%s` has %zu entries where %zu are expected (its shape "
                           "must match the arrays before it)", p, len, want[d]);
        }
        out->dims[d] = len;
        out->n *= len;
        e = json_array_get(e, 0);
    }
    if (integer) {
        if (!(out->i = api_alloc(c, out->n, sizeof *out->i))) return -1;
    } else if (!(out->f = api_alloc(c, out->n, sizeof *out->f))) return -1;
    fill_state s = {c, path, rank, out->dims, integer, out, 0, {0}};
    return fill(&s, v, 0);
}

/* ==== writing arrays ============================================================== */

static void write_b64(api_buf *b, const unsigned char *d, size_t n) {
    size_t m = (n + 2) / 3 * 4;
    if (buf_reserve(b, m + 2)) return;
    char *o = b->p + b->len;
    *o++ = '"';
    api_b64_encode(o, d, n);
    o[m] = '"';
    b->len += m + 2;
    b->p[b->len] = '\0';
}

static void write_nested(api_buf *b, const double *f, const int64_t *i,
                         size_t rank, const size_t *dims, size_t *pos) {
    if (rank == 0) {
        if (f) w_double(b, f[(*pos)++]);
        else w_int(b, i[(*pos)++]);
        return;
    }
    sep(b);
    w_raw(b, "[", 1);
    for (size_t k = 0; k < dims[0]; k++) write_nested(b, f, i, rank - 1, dims + 1, pos);
    w_raw(b, "]", 1);
    b->need_comma = 1;
}

void api_write(api_ctx *c, const double *f, const int64_t *i, size_t rank,
               const size_t *dims) {
    api_buf *b = &c->out;
    size_t pos = 0;
    if (!c->base64 || rank == 0) {
        write_nested(b, f, i, rank, dims, &pos);
        return;
    }
    size_t n = 1;
    for (size_t k = 0; k < rank; k++) n *= dims[k];
    w_obj_begin(b);
    w_key(b, "dtype");
    w_string(b, f ? "float64" : "int64");
    w_key(b, "shape");
    sep(b);
    w_raw(b, "[", 1);
    for (size_t k = 0; k < rank; k++) w_int(b, (int64_t)dims[k]);
    w_raw(b, "]", 1);
    b->need_comma = 1;
    w_key(b, "data");
    /* The host is little-endian x86-64/aarch64: the bytes are the wire's. */
    write_b64(b, f ? (const unsigned char *)f : (const unsigned char *)i, n * 8);
    b->need_comma = 1;
    w_obj_end(b);
}

uint64_t api_random_seed(void) {
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, 0) != (ssize_t)sizeof s) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        s = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)ts.tv_sec;
    }
    return s & GS_SEED_MAX;
}
