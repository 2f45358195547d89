/* routes.c - the routing table {method, path, handler}, the handlers of every path, and the bearer token check. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server.h"

#define JSON "application/json"

/* Bodies the handlers answer with as they are; never freed. */
static void reply_static(srv_reply *rep, int status, const char *body) {
    rep->status = status;
    rep->body = (char *)body;
    rep->len = strlen(body);
    rep->owned = 0;
    rep->content_type = JSON;
}

void srv_reply_error(srv_reply *rep, int status, const char *code, const char *message,
                     const char *field) {
    size_t len = 0;
    char *body = api_error_body(code, message, field, &len);
    if (!body) {
        /* Out of memory: still a JSON error, if not the precise one. */
        reply_static(rep, 500, "{\"error\":{\"code\":\"internal\",\"message\":"
                               "\"the server is out of memory\"}}");
        return;
    }
    rep->status = status;
    rep->body = body;
    rep->len = len;
    rep->owned = 1;
    rep->content_type = JSON;
}

/* ==== handlers ============================================================== */

static void h_compute(srv_app *app, const srv_request *req, srv_reply *rep) {
    api_result r;
    int rc = req->small_only
                 ? api_handle_small(req->op, req->body, req->len, &app->limits, &r)
                 : api_handle(req->op, req->body, req->len, &app->limits, &app->exec, &r);
    if (rc == 1) {
        rep->deferred = 1;
        return;
    }
    if (rc != 0) {
        /* The route matched only ops api_is_op() knows, so this is a
         * disagreement between the two: treat it as the 404 it would be. */
        srv_reply_error(rep, 404, "not_found", "no such operation", NULL);
        return;
    }
    if (!r.body) {
        srv_reply_error(rep, 500, "internal", "the response could not be written", NULL);
        return;
    }
    rep->status = r.status;
    rep->body = r.body;
    rep->len = r.len;
    rep->owned = 1;
    rep->content_type = JSON;
    rep->rows = r.rows;
    rep->samples = r.samples;
}

static void h_healthz(srv_app *app, const srv_request *req, srv_reply *rep) {
    reply_static(rep, 200, "{\"status\":\"ok\"}");
}

static void h_readyz(srv_app *app, const srv_request *req, srv_reply *rep) {
    switch (atomic_load(&app->state)) {
    case SRV_READY: reply_static(rep, 200, "{\"status\":\"ready\"}"); break;
    case SRV_DRAINING: reply_static(rep, 503, "{\"status\":\"draining\"}"); break;
    default: reply_static(rep, 503, "{\"status\":\"starting\"}"); break;
    }
}

static void h_info(srv_app *app, const srv_request *req, srv_reply *rep) {
    size_t len = 0;
    char *body = api_info_body(&app->limits, app->http_threads, app->exec.workers, &len);
    if (!body) {
        srv_reply_error(rep, 500, "internal", "the response could not be written", NULL);
        return;
    }
    rep->status = 200;
    rep->body = body;
    rep->len = len;
    rep->owned = 1;
    rep->content_type = JSON;
}

static void h_metrics(srv_app *app, const srv_request *req, srv_reply *rep) {
    size_t len = 0;
    char *body = app->metrics ? srv_metrics_render(app->metrics, &len) : NULL;
    if (!body) {
        srv_reply_error(rep, 500, "internal", "the metrics could not be written", NULL);
        return;
    }
    rep->status = 200;
    rep->body = body;
    rep->len = len;
    rep->owned = 1;
    rep->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

static void h_openapi(srv_app *app, const srv_request *req, srv_reply *rep) {
    if (!app->openapi) {
        srv_reply_error(rep, 404, "not_found", "this server was started without an OpenAPI "
                        "file (see --openapi)", NULL);
        return;
    }
    rep->status = 200;
    rep->body = app->openapi;
    rep->len = app->openapi_len;
    rep->owned = 0;
    rep->content_type = "application/yaml";
}

/* ==== the table ============================================================= */

/* Computing endpoints share one prefix row: which ops exist is the api
 * layer's knowledge (api_is_op), not repeated here. */
/* The probes are open: a load balancer or kubelet has no token, and they
 * tell nothing but up and ready. */
static const srv_route ROUTES[] = {
    /* method, path, prefix, body, compute, open, handler */
    {"POST", "/v1/", 1, 1, 1, 0, h_compute},
    {"GET", "/healthz", 0, 0, 0, 1, h_healthz},
    {"GET", "/readyz", 0, 0, 0, 1, h_readyz},
    {"GET", "/metrics", 0, 0, 0, 0, h_metrics},
    {"GET", "/v1/info", 0, 0, 0, 0, h_info},
    {"GET", "/openapi.yaml", 0, 0, 0, 0, h_openapi},
};
#define N_ROUTES (sizeof ROUTES / sizeof *ROUTES)

static int path_matches(const srv_route *r, const char *path, const char **op) {
    if (!r->prefix) return strcmp(r->path, path) == 0;
    size_t n = strlen(r->path);
    if (strncmp(r->path, path, n) || !api_is_op(path + n)) return 0;
    *op = path + n;
    return 1;
}

int srv_path_open(const char *path) {
    const char *o;
    for (size_t i = 0; i < N_ROUTES; i++)
        if (ROUTES[i].open && path_matches(&ROUTES[i], path, &o)) return 1;
    return 0;
}

const srv_route *srv_route_find(const char *method, const char *path, const char **op,
                                srv_reply *rep) {
    /* HEAD is GET without the body, which libmicrohttpd leaves out itself. */
    const char *m = strcmp(method, "HEAD") ? method : "GET";
    /* Every method the path answers, for the 405's Allow header; the
     * longest is "GET, HEAD, POST". */
    static const char *const ALLOW[] = {NULL, "POST", "GET, HEAD", "GET, HEAD, POST"};
    int allow = 0;
    *op = NULL;
    for (size_t i = 0; i < N_ROUTES; i++) {
        const char *o = NULL;
        if (!path_matches(&ROUTES[i], path, &o)) continue;
        if (!strcmp(ROUTES[i].method, m)) {
            *op = o;
            return &ROUTES[i];
        }
        allow |= strcmp(ROUTES[i].method, "POST") ? 2 : 1;
    }
    if (!allow) {
        srv_reply_error(rep, 404, "not_found", "no such path (see /openapi.yaml)", NULL);
        return NULL;
    }
    char msg[96];
    snprintf(msg, sizeof msg, "%.16s is not allowed here; allowed: %s", method, ALLOW[allow]);
    srv_reply_error(rep, 405, "method_not_allowed", msg, NULL);
    rep->allow = ALLOW[allow];
    return NULL;
}

/* ==== the bearer token ====================================================== */

int srv_auth_ok(const char *token, size_t token_len, const char *authorization) {
    if (!authorization) return 0;
    const char *v = authorization;
    while (*v == ' ' || *v == '\t') v++;
    /* RFC 7235: the scheme is case-insensitive; RFC 6750 names it Bearer. */
    if (strncasecmp(v, "Bearer", 6) || (v[6] != ' ' && v[6] != '\t')) return 0;
    for (v += 6; *v == ' ' || *v == '\t'; v++) {}
    size_t n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
    /* Every byte of the token is compared, whatever the given value's
     * length or contents, and differences are OR-ed rather than returned
     * at the first one: the time depends on the token's length only. */
    size_t diff = n ^ token_len;
    for (size_t i = 0; i < token_len; i++) {
        unsigned char g = i < n ? (unsigned char)v[i] : 0;
        diff |= (size_t)(g ^ (unsigned char)token[i]);
    }
    return diff == 0;
}
