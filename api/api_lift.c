/* api_lift.c - long base64 strings kept out of jansson's lexer: the scan, the tags, the lookup. */
#include "api_lift.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api_b64.h"
#include "api_io.h"

static const char *skip_ws(const char *t, const char *end) {
    while (t < end && (*t == ' ' || *t == '\t' || *t == '\n' || *t == '\r')) t++;
    return t;
}

/* Appends the tag of span i to the copy. */
static void put_tag(api_lift *l, size_t i) {
    memcpy(l->body + l->len, l->tag, l->tag_len);
    l->len += l->tag_len;
    char d[20];
    size_t n = 0;
    do {
        d[n++] = (char)('0' + i % 10);
        i /= 10;
    } while (i);
    while (n) l->body[l->len++] = d[--n];
}

/* Records the string (s, n) and its decoded bytes, and copies the body
 * from *from to s, then the tag. */
static int lift(api_lift *l, const char **from, const char *s, size_t n, unsigned char *bytes,
                size_t nbytes) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        api_span *p = realloc(l->spans, cap * sizeof *p);
        if (!p) return -1;
        l->spans = p;
        l->cap = cap;
    }
    memcpy(l->body + l->len, *from, (size_t)(s - *from));
    l->len += (size_t)(s - *from);
    put_tag(l, l->n);
    l->spans[l->n++] = (api_span){s, n, bytes, nbytes};
    *from = s + n;
    return 0;
}

/* The copy's buffer and the request's tag, before the first lift. */
static int start_copy(api_lift *l, size_t len) {
    /* The copy is never longer than the body: every lifted string is
     * longer than its tag. */
    if (!(l->body = malloc(len))) return -1;
    uint64_t x = api_random_seed(); /* a nonce: random per request */
    memcpy(l->tag, "~gs:", 4);
    for (int k = 0; k < 16; k++) l->tag[4 + k] = "0123456789abcdef"[(x >> (60 - 4 * k)) & 15];
    l->tag[20] = ':';
    l->tag_len = 21;
    return 0;
}

int api_lift_scan(api_lift *l, const char *body, size_t len) {
    memset(l, 0, sizeof *l);
    const char *p = body, *end = body + len, *from = body;
    for (;;) {
        /* Outside strings: the next one starts at a quote. */
        const char *q = memchr(p, '"', (size_t)(end - p));
        if (!q) break;
        /* Its end: the next quote not escaped by a backslash. */
        const char *s = q + 1, *e = s, *bs;
        while ((q = memchr(e, '"', (size_t)(end - e))) && (bs = memchr(e, '\\', (size_t)(q - e))))
            e = bs + 2; /* past the escaped byte */
        if (!q) break;  /* unterminated: jansson will say where */
        e = q;
        p = e + 1;
        if (e - s != 4 || memcmp(s, "data", 4)) continue;
        /* A "data" key: is its value a long string of base64 only? It is
         * decoded here, which checks every byte: a string with anything
         * else (an escape, a control byte, a letter outside base64) is
         * left to jansson and the tensor reader, as if nothing happened. */
        const char *t = skip_ws(p, end);
        if (t == end || *t != ':') continue;
        t = skip_ws(t + 1, end);
        if (t == end || *t != '"') continue;
        /* The first quote ends the string unless an escape comes before
         * it; the decoder refuses a backslash like any byte outside base64,
         * so such a string is never lifted and needs no scan of its own. */
        const char *v = t + 1, *ve = memchr(v, '"', (size_t)(end - v));
        if (!ve || (size_t)(ve - v) < API_LIFT_MIN) continue;
        size_t n = (size_t)(ve - v), cap = n / 4 * 3 + 3;
        unsigned char *bytes = malloc(cap);
        if (!bytes) {
            api_lift_free(l);
            return -1;
        }
        long got = api_b64_decode(v, n, bytes, cap);
        if (got < 0) {
            free(bytes);
            continue;
        }
        if ((!l->body && start_copy(l, len)) || lift(l, &from, v, n, bytes, (size_t)got)) {
            free(bytes);
            api_lift_free(l);
            return -1;
        }
        p = ve + 1;
    }
    if (!l->body) return 0;
    memcpy(l->body + l->len, from, (size_t)(end - from));
    l->len += (size_t)(end - from);
    return 1;
}

const api_span *api_lift_find(const api_lift *l, const char *s, size_t n) {
    if (!l || !l->n || n <= l->tag_len || n > l->tag_len + 19 || memcmp(s, l->tag, l->tag_len))
        return NULL;
    size_t i = 0;
    for (size_t k = l->tag_len; k < n; k++) {
        if (s[k] < '0' || s[k] > '9') return NULL;
        i = 10 * i + (size_t)(s[k] - '0');
    }
    return i < l->n ? &l->spans[i] : NULL;
}

void api_lift_free(api_lift *l) {
    for (size_t i = 0; i < l->n; i++) free(l->spans[i].bytes);
    free(l->body);
    free(l->spans);
    memset(l, 0, sizeof *l);
}
