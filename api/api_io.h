/* api_io.h - request context, error paths, array/tensor reading and JSON writing (internal). */
#ifndef API_IO_H
#define API_IO_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "gradserve.h"

/* ---- output buffer ---------------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;        /* an allocation failed: the body is unusable */
    int nonfinite;  /* a NaN or infinity reached the writer: unusable */
    int need_comma; /* the next key or array element needs a ',' first */
} api_buf;

void api_buf_free(api_buf *b);
void w_raw(api_buf *b, const char *s, size_t n);
void w_str(api_buf *b, const char *s); /* raw text, no quoting */
void w_obj_begin(api_buf *b);
void w_obj_end(api_buf *b);
void w_key(api_buf *b, const char *key);
void w_double(api_buf *b, double v); /* shortest text that parses back to v */
void w_int(api_buf *b, int64_t v);
void w_string(api_buf *b, const char *s); /* a JSON string value */

/* ---- request context ---------------------------------------------------------- */

struct api_lift_s;

typedef struct {
    /* the first error, if any (status 0: none) */
    int status;
    const char *code;
    char message[512];
    char field[256];

    int base64; /* output: "base64" */
    const api_limits *lim;
    const api_exec *exec;

    void **allocs; /* everything api_alloc gave out, freed by api_ctx_free */
    size_t nallocs, capallocs;

    api_buf out;
    size_t rows, samples; /* work done, for metrics */
    size_t cost;          /* numbers the request computes (413 check) */
    size_t defer_above;   /* 0, or a cost above which the request is parsed
                             and checked but not run (api_handle_small) */
    int deferred;         /* it was not run for that reason */
    const struct api_lift_s *lift; /* the body's lifted strings, or NULL */
    void *state;          /* the endpoint's parsed request */
} api_ctx;

void api_ctx_init(api_ctx *c, const api_limits *lim, const api_exec *exec);
void api_ctx_free(api_ctx *c);

/* Zeroed memory owned by the context, on a 64-byte boundary; NULL (with
 * a 500-free error set: 413 payload_too_large) when the allocation fails. */
void *api_alloc(api_ctx *c, size_t n, size_t size);

/* n bytes, not zeroed, owned by the context likewise. */
void *api_alloc_raw(api_ctx *c, size_t n);

/* Records the first error and returns -1. field may be NULL. */
int api_err(api_ctx *c, int status, const char *code, const char *field,
            const char *fmt, ...) __attribute__((format(printf, 5, 6)));
int api_bad(api_ctx *c, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4))); /* 400 invalid_argument */

/* Checks the cost rows x samples x dims (numbers computed) against the
 * limit, without overflow: 413 beyond it. */
int api_charge(api_ctx *c, size_t rows, size_t samples, size_t dims);

/* ---- reading fields ------------------------------------------------------------ */

/* Refuses any key of obj not in allowed (NULL-terminated): 400 naming
 * prefix.key. Also refuses a non-object (naming prefix, or "body"). */
int api_keys(api_ctx *c, json_t *obj, const char *prefix,
             const char *const *allowed);

/* Joins a path: prefix "" gives key, else prefix.key, into buf. */
const char *api_path(char *buf, size_t n, const char *prefix, const char *key);

/* The field path (distribution.logits[0][1], as api_bad names fields) of
 * the value or key that ends at byte pos of the JSON text s, which is
 * valid JSON up to pos: where jansson stops on a number past the largest
 * double or a duplicate key. Returns 0, or -1 when there is none (the top
 * level, or a path too long or too deep to name). */
int api_json_path_at(const char *s, size_t pos, char *out, size_t cap);

/* Optional scalar fields: return 0 when absent (value untouched), 1 when
 * read, -1 on error (type or range, naming path). */
int api_get_double(api_ctx *c, json_t *obj, const char *key, const char *path,
                   double *v);
/* An integer-valued JSON number (2, 2.0, 2e0) within int64 into *v: 1, or
 * 0 for anything else. */
int api_int_value(const json_t *j, int64_t *v);
int api_get_int(api_ctx *c, json_t *obj, const char *key, const char *path,
                int64_t lo, int64_t hi, int64_t *v);
/* A string that must be one of choices (NULL-terminated); *idx its index. */
int api_get_enum(api_ctx *c, json_t *obj, const char *key, const char *path,
                 const char *const *choices, int *idx);

/* A numeric array: data (doubles, or int64 when integer), rank and dims. */
typedef struct {
    size_t rank;
    size_t dims[4];
    size_t n; /* product of dims */
    double *f;
    int64_t *i;
} api_arr;

/* Rank of v as an array (nesting depth of first elements, or a tensor's
 * shape length); 0 for anything else. */
size_t api_rank(json_t *v);

/* Reads v (nested arrays or a tensor object) at path as an array of the
 * given rank. want[k] != 0 requires that length on axis k (400 naming
 * path, as "expected N"); 0 accepts any (non-zero) length. integer: values
 * must be integers (json integers, or an int32/int64 tensor). Every value
 * is finite. */
int api_read(api_ctx *c, json_t *v, const char *path, size_t rank,
             const size_t *want, int integer, api_arr *out);

/* ---- writing outputs ------------------------------------------------------------ */

/* Writes an array of the given rank and dims at the current position:
 * nested JSON arrays, or a tensor object when the request asked for
 * base64 output. Exactly one of f, i is non-NULL. rank 0 writes one plain
 * number (a per-row scalar of a single-row request). */
void api_write(api_ctx *c, const double *f, const int64_t *i, size_t rank,
               const size_t *dims);

/* A fresh random seed in [0, 2^53). */
uint64_t api_random_seed(void);

#endif
