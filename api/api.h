/* api.h - the JSON boundary: one entry point from the server into the endpoints. */
#ifndef API_H
#define API_H

#include <stddef.h>
#include <stdint.h>

/* How the api layer runs work in parallel, supplied by the server (api/
 * knows no threads of its own). run() calls task(arg, i) for every i in
 * [0, n) and returns when all have returned; it may run them concurrently.
 * run() is reentrant: the calling thread takes part in executing the tasks,
 * so a task may itself call run() without deadlock. A NULL api_exec, or
 * workers <= 1, means "run serially on the calling thread". */
typedef struct {
    void (*run)(void *ctx, size_t n, void (*task)(void *arg, size_t i),
                void *arg);
    void *ctx;
    size_t workers;
} api_exec;

/* Limits a request is checked against (413 beyond them). */
typedef struct {
    size_t max_numbers;     /* batch x samples x dims, default 2^26 */
    size_t max_batch_items; /* /v1/batch items, 1024 */
    size_t split_min;       /* rows x samples x dims below which a request
                               is not split across workers */
    size_t max_body;        /* bytes; enforced by the server, shown by info */
} api_limits;

void api_limits_default(api_limits *l);

/* A response: HTTP status and a malloc'd JSON body (caller frees body).
 * rows and samples count the work done, for metrics. */
typedef struct {
    int status;
    char *body;
    size_t len;
    size_t rows;
    size_t samples;
} api_result;

/* Runs the computing endpoint `op` (a path below /v1/, e.g. "entropy",
 * "sac/discrete/actor", "batch") on a JSON body of len bytes (not
 * NUL-terminated). Returns 0 with *out filled (any status, errors
 * included), or -1 when op is not a computing endpoint (the server
 * answers 404). Thread-safe; allocates only the response and request
 * scratch, which it frees. */
int api_handle(const char *op, const char *body, size_t len,
               const api_limits *lim, const api_exec *exec, api_result *out);

/* api_handle for a caller that wants small requests only, such as a
 * connection's thread that should not be held up: the same, run serially,
 * except that a valid request whose work (batch x samples x dims, a whole
 * /v1/batch counted together) is over lim->split_min numbers is parsed
 * and checked but not run: then it returns 1 with nothing in *out, and
 * the caller runs it with api_handle (on its workers). An invalid request
 * is answered here (0, its error in *out). */
int api_handle_small(const char *op, const char *body, size_t len,
                     const api_limits *lim, api_result *out);

/* 1 if op names a computing endpoint (POST only). */
int api_is_op(const char *op);

/* The error body of API.md §0: {"error": {"code", "message", "field"?}}.
 * field may be NULL. Returns a malloc'd NUL-terminated string, *len set.
 * The server uses this for its own 404/405/413/415/401/503 errors. */
char *api_error_body(const char *code, const char *message, const char *field,
                     size_t *len);

/* GET /v1/info body: name, version, distributions, estimators, limits,
 * threads {http, workers}, simd. malloc'd, *len set. */
char *api_info_body(const api_limits *lim, size_t http_threads, size_t workers,
                    size_t *len);

#endif
