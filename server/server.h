/* server.h - the process layer's internal interfaces: configuration, worker pool, routing, HTTP daemon. */
#ifndef SERVER_H
#define SERVER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>

#include "api.h"

/* ==== configuration (config.c) ============================================ */

/* Everything the command line and the environment can set. Flags win over
 * GRADSERVE_* variables, which win over the defaults. */
typedef struct {
    char host[256];          /* address or name to bind, default 127.0.0.1 */
    unsigned port;           /* 0 lets the kernel pick a free port */
    size_t threads;          /* HTTP threads (libmicrohttpd's pool) */
    size_t workers;          /* threads computing one large request */
    size_t max_body;         /* bytes per request body */
    size_t max_numbers;      /* batch x samples x dims per request */
    unsigned drain_timeout;  /* seconds to wait for in-flight requests */
    char openapi[4096];      /* spec path; "" means the default lookup */
} srv_config;

/* Fills c from the defaults, then the environment, then argv. Returns 0 to
 * run, 1 when --help was printed to out, -1 on a bad value with a message
 * (one line, no newline) in err. Never exits. */
int srv_config_parse(srv_config *c, int argc, char **argv, FILE *out, char *err,
                     size_t errlen);

/* Number of CPUs this process may run on (its affinity mask), at least 1. */
size_t srv_cpu_count(void);

/* ==== worker pool (pool.c) ================================================ */

typedef struct srv_pool srv_pool;

/* Starts workers - 1 threads: the thread calling srv_pool_run() is the
 * workers-th. Returns NULL when threads cannot be created. */
srv_pool *srv_pool_new(size_t workers);

/* Joins the threads. No run() may be in progress. srv_pool_free(NULL) is a
 * no-op. */
void srv_pool_free(srv_pool *p);

/* api_exec's run(): task(arg, i) for every i in [0, n), on the pool's
 * threads and the caller, returning when all have returned. Reentrant.
 * ctx is the srv_pool. */
void srv_pool_run(void *ctx, size_t n, void (*task)(void *arg, size_t i), void *arg);

/* The api_exec that runs on p. */
api_exec srv_pool_exec(srv_pool *p);

/* ==== application state and routing (routes.c) ============================ */

typedef enum { SRV_STARTING, SRV_READY, SRV_DRAINING } srv_state;

/* What the handlers share; read-only once the daemon runs, except state. */
typedef struct {
    api_limits limits;
    api_exec exec;
    size_t http_threads; /* libmicrohttpd's pool, for /v1/info */
    char *openapi;       /* the spec's bytes, or NULL: /openapi.yaml is a 404 */
    size_t openapi_len;
    _Atomic int state;   /* an srv_state */
} srv_app;

/* A complete request as a handler sees it (body already accumulated). */
typedef struct {
    const char *method;
    const char *path;
    const char *op;      /* for prefix routes: the path below the prefix */
    const char *body;    /* never NULL; not NUL-terminated */
    size_t len;
} srv_request;

/* A handler's answer. body is freed with free() after sending when owned. */
typedef struct {
    int status;
    char *body;
    size_t len;
    int owned;
    const char *content_type;
    const char *allow;   /* an Allow header value, or NULL */
    int close;           /* ask the client to close the connection */
} srv_reply;

typedef void (*srv_handler)(srv_app *app, const srv_request *req, srv_reply *rep);

/* One row of the routing table. A prefix route matches path = prefix + op
 * for any op the api layer knows (api_is_op). Routes with a body are
 * answered once the body has arrived; the others on the request's first
 * call, before anything is read. */
typedef struct {
    const char *method;
    const char *path;
    int prefix;
    int body;
    srv_handler handler;
} srv_route;

/* Finds the route for method and path. HEAD is looked up as GET. On NULL,
 * rep holds the 404 or 405 (with Allow) to send. *op is set for prefix
 * routes (pointing into path). */
const srv_route *srv_route_find(const char *method, const char *path, const char **op,
                                srv_reply *rep);

/* Fills rep with the JSON error body of API.md section 0. field may be NULL. */
void srv_reply_error(srv_reply *rep, int status, const char *code, const char *message,
                     const char *field);

/* ==== HTTP daemon (http.c) ================================================ */

typedef struct srv_http srv_http;

/* Starts libmicrohttpd on cfg's host and port with cfg->threads threads.
 * app must outlive the daemon. Returns NULL with a message in err. */
srv_http *srv_http_start(const srv_config *cfg, srv_app *app, char *err, size_t errlen);

/* The port actually bound (useful with port 0). */
unsigned srv_http_port(const srv_http *h);

/* Stops accepting new connections; requests on open connections are still
 * read (and answered 503 shutting_down when they would compute). */
void srv_http_quiesce(srv_http *h);

/* Requests received and not yet completely answered. */
size_t srv_http_in_flight(const srv_http *h);

/* Stops the daemon (closing every connection) and frees h. NULL is a no-op. */
void srv_http_stop(srv_http *h);

#endif
