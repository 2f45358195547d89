/* server.h - the process layer's internal interfaces: configuration, logging, metrics, worker pool, routing, HTTP daemon. */
#ifndef SERVER_H
#define SERVER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "api.h"

/* ==== configuration (config.c) ============================================ */

typedef enum { SRV_LOG_DEBUG, SRV_LOG_INFO, SRV_LOG_WARN, SRV_LOG_ERROR, SRV_LOG_OFF } srv_log_level;
typedef enum { SRV_LOG_JSON, SRV_LOG_TEXT } srv_log_format;

/* Longest token accepted, in bytes. */
#define SRV_TOKEN_MAX 1024

/* Everything the command line and the environment can set. Flags win over
 * GRADSERVE_* variables, which win over the defaults. */
typedef struct {
    char host[256];              /* address or name to bind, default 127.0.0.1 */
    unsigned port;               /* 0 lets the kernel pick a free port */
    size_t threads;              /* HTTP threads (libmicrohttpd's pool) */
    size_t workers;              /* compute threads */
    size_t max_body;             /* bytes per request body */
    size_t max_numbers;          /* batch x samples x dims per request */
    size_t max_connections;      /* open connections at once */
    unsigned connection_timeout; /* seconds to receive one whole request */
    unsigned idle_timeout;       /* seconds a connection may stay silent */
    size_t queue_limit;          /* computing requests waiting beyond workers */
    unsigned drain_timeout;      /* seconds to wait for in-flight requests */
    char token[SRV_TOKEN_MAX + 1];  /* "" means no authentication */
    char token_file[4096];
    char tls_cert[4096];         /* PEM files; both or neither */
    char tls_key[4096];
    unsigned insecure;           /* 1: allow a non-loopback bind without a token */
    unsigned log_level;          /* an srv_log_level */
    unsigned log_format;         /* an srv_log_format */
    char openapi[4096];          /* spec path; "" means the default lookup */
} srv_config;

/* Fills c from the defaults, then the environment, then argv, and checks
 * the settings together (a token file is read into token here). Returns 0
 * to run, 1 when --help was printed to out, -1 on a bad value with a
 * message (one line, no newline) in err. Never exits. */
int srv_config_parse(srv_config *c, int argc, char **argv, FILE *out, char *err,
                     size_t errlen);

/* Number of CPUs this process may run on (its affinity mask), at least 1. */
size_t srv_cpu_count(void);

/* 1 if every address host resolves to is a loopback address. */
int srv_host_is_loopback(const char *host);

/* ==== logging (log.c) ===================================================== */

/* Sets where and how lines are written: fd (2, stderr) in the format given,
 * lines below level dropped. Call once, before any thread logs. */
void srv_log_setup(srv_log_level level, srv_log_format format, int fd);

/* 1 if lines of this level are written. */
int srv_log_enabled(srv_log_level level);

/* One line {"time", "level", "msg"} (or its text form). Each line is one
 * write(2), so lines of concurrent threads never interleave. */
__attribute__((format(printf, 2, 3))) void srv_log(srv_log_level level, const char *fmt, ...);

/* As srv_log at info level, whatever the level: the start-up line, which
 * names the port, must always be there. */
__attribute__((format(printf, 1, 2))) void srv_log_always(const char *fmt, ...);

/* One request, for the access log. */
typedef struct {
    const char *method, *path, *request_id, *remote;
    const char *error;   /* why it ended without an answer, or NULL */
    int status;          /* 0 when no answer was sent */
    uint64_t bytes_in, bytes_out, rows, samples;
    double seconds;
} srv_access;

/* The access line of one request, at info level. */
void srv_log_access(const srv_access *a);

/* Longest request id kept from X-Request-Id. */
#define SRV_REQUEST_ID_MAX 128

/* Copies given into out if it is a usable request id (1 to 128 of
 * A-Z a-z 0-9 - _ . : / + = @), else writes a new unique id. */
void srv_request_id(char out[SRV_REQUEST_ID_MAX + 1], const char *given);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t srv_now_ns(void);

/* ==== metrics (metrics.c) ================================================= */

/* Why a request was refused (gradserve_rejected_requests_total{reason}). */
typedef enum {
    SRV_REJECT_OVERLOAD,     /* 503 overloaded: the admission limit */
    SRV_REJECT_TOO_LARGE,    /* 413: the body or the numbers */
    SRV_REJECT_UNAUTHORIZED, /* 401 */
    SRV_REJECT_DRAINING,     /* 503 shutting_down */
    SRV_REJECT_TIMEOUT,      /* connections cut by --connection-timeout */
    SRV_REJECT_N
} srv_reject;

/* The process's counters and gauges. Counters live in per-thread shards of
 * relaxed C11 atomics (no lock, no shared cache line between HTTP threads);
 * gauges are single atomics, moved by the code that owns the state. */
typedef struct srv_metrics srv_metrics;

typedef struct {
    atomic_long in_flight;    /* requests received, not yet completely answered */
    atomic_long admitted;     /* computing requests holding an admission slot */
    atomic_long queued;       /* received whole, waiting for a compute thread */
    atomic_long computing;    /* on a compute thread */
    atomic_long connections;  /* open connections */
    long admission_limit;     /* workers + queue-limit */
    long max_connections;
} srv_gauges;

srv_metrics *srv_metrics_new(const char *version, const char *commit);

/* srv_metrics_free(NULL) is a no-op. */
void srv_metrics_free(srv_metrics *m);

/* The gauges, to move from the outside. */
srv_gauges *srv_metrics_gauges(srv_metrics *m);

/* The label index of a request path: the paths of the routing table, and
 * one "other" for everything else (bounded cardinality). */
int srv_metrics_path(const char *path);

/* One request answered with status after seconds. */
void srv_metrics_request(srv_metrics *m, int path, int status, double seconds,
                         uint64_t bytes_in, uint64_t bytes_out, uint64_t rows,
                         uint64_t samples);

void srv_metrics_reject(srv_metrics *m, srv_reject reason);

/* The Prometheus text exposition (version 0.0.4), malloc'd, *len set;
 * NULL when out of memory. */
char *srv_metrics_render(srv_metrics *m, size_t *len);

/* ==== worker pool (pool.c) ================================================ */

typedef struct srv_pool srv_pool;

/* A unit of work handed to the pool with srv_pool_submit(): run(t) is
 * called once on a pool thread. The caller owns t and keeps it alive until
 * run() has been called; run() may free it. */
typedef struct srv_task {
    void (*run)(struct srv_task *t);
    struct srv_task *next; /* the pool's */
} srv_task;

/* Starts `workers` threads. They run submitted tasks, one each, and take
 * the indices of srv_pool_run() loops, which go first: work already
 * started finishes before new work begins. Returns NULL when threads
 * cannot be created. */
srv_pool *srv_pool_new(size_t workers);

/* Runs the tasks still queued, then joins the threads. No run() may be in
 * progress. srv_pool_free(NULL) is a no-op. */
void srv_pool_free(srv_pool *p);

/* api_exec's run(): task(arg, i) for every i in [0, n), on the pool's
 * threads and the caller, returning when all have returned. Reentrant.
 * ctx is the srv_pool. */
void srv_pool_run(void *ctx, size_t n, void (*task)(void *arg, size_t i), void *arg);

/* Queues t (FIFO) for a pool thread. Never blocks; bounding the queue is
 * the caller's business (the HTTP layer's admission limit). */
void srv_pool_submit(srv_pool *p, srv_task *t);

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
    srv_metrics *metrics;
    srv_pool *pool;      /* runs computing requests; NULL: on the HTTP thread */
    const char *token;   /* NULL: no authentication */
    size_t token_len;
    _Atomic int state;   /* an srv_state */
} srv_app;

/* A complete request as a handler sees it (body already accumulated). */
typedef struct {
    const char *method;
    const char *path;
    const char *op;      /* for prefix routes: the path below the prefix */
    const char *body;    /* never NULL; not NUL-terminated */
    size_t len;
    int small_only;      /* on the connection's thread: a computing handler
                            runs only small work, and defers the rest */
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
    unsigned retry_after; /* a Retry-After header in seconds, when > 0 */
    int challenge;       /* send WWW-Authenticate: Bearer (401) */
    size_t rows, samples; /* work done, for the metrics */
    int deferred;        /* small_only and the work is not small: nothing
                            done, run it again on the pool */
} srv_reply;

typedef void (*srv_handler)(srv_app *app, const srv_request *req, srv_reply *rep);

/* One row of the routing table. A prefix route matches path = prefix + op
 * for any op the api layer knows (api_is_op). Routes with a body are
 * answered once the body has arrived; the others on the request's first
 * call, before anything is read. Computing routes run on the worker pool;
 * open routes need no token. */
typedef struct {
    const char *method;
    const char *path;
    int prefix;
    int body;
    int compute;
    int open;
    srv_handler handler;
} srv_route;

/* Finds the route for method and path. HEAD is looked up as GET. On NULL,
 * rep holds the 404 or 405 (with Allow) to send. *op is set for prefix
 * routes (pointing into path). */
const srv_route *srv_route_find(const char *method, const char *path, const char **op,
                                srv_reply *rep);

/* 1 when path is a probe's (open to every caller: no token needed, for
 * any method, so that a wrong method there is a 405, not a 401). */
int srv_path_open(const char *path);

/* Fills rep with the JSON error body of API.md section 0. field may be NULL. */
void srv_reply_error(srv_reply *rep, int status, const char *code, const char *message,
                     const char *field);

/* 1 if the Authorization header value carries the token (scheme Bearer, any
 * case). The comparison takes the same time whatever the bytes compared,
 * so response times leak nothing of the token. */
int srv_auth_ok(const char *token, size_t token_len, const char *authorization);

/* ==== connections and their deadlines (conns.c) ============================ */

/* One open connection, owned by the libmicrohttpd thread serving it. */
typedef struct srv_conn {
    int fd;
    atomic_uint_fast64_t deadline; /* srv_now_ns() by which the request must be
                                      whole; 0: none */
    char remote[64];               /* the client's address, for the log */
    unsigned shard;
    struct srv_conn *prev, *next;  /* under the shard's lock */
} srv_conn;

typedef struct srv_conns srv_conns;

/* Starts the reaper, which shuts down connections past their deadline and
 * counts them (rejected, reason timeout). timeout_s is for its messages.
 * NULL when the thread cannot start. */
srv_conns *srv_conns_new(srv_metrics *m, unsigned timeout_s);

/* Stops the reaper; every connection must have been removed. NULL is a no-op. */
void srv_conns_free(srv_conns *cs);

/* Registers c (fd, deadline and remote set) from the thread owning it. */
void srv_conns_add(srv_conns *cs, srv_conn *c);

/* Unregisters c, before its descriptor is closed. */
void srv_conns_remove(srv_conns *cs, srv_conn *c);

/* ==== HTTP daemon (http.c) ================================================ */

typedef struct srv_http srv_http;

/* Starts libmicrohttpd on cfg's host and port with cfg->threads threads,
 * serving HTTPS when cert_pem and key_pem are given (NULL: plain HTTP).
 * app must outlive the daemon. Returns NULL with a message in err. */
srv_http *srv_http_start(const srv_config *cfg, srv_app *app, const char *cert_pem,
                         const char *key_pem, char *err, size_t errlen);

/* The port actually bound (useful with port 0). */
unsigned srv_http_port(const srv_http *h);

/* Stops accepting new connections; requests on open connections are still
 * read (and answered 503 shutting_down when they would compute). */
void srv_http_quiesce(srv_http *h);

/* Requests received and not yet completely answered. */
size_t srv_http_in_flight(const srv_http *h);

/* Answers requests still waiting for a compute thread with 503
 * shutting_down, waits for those computing, gives these answers up to 5 s
 * to go out, then stops the daemon (closing every connection) and frees h.
 * NULL is a no-op. */
void srv_http_stop(srv_http *h);

#endif
