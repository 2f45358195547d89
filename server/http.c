/* http.c - the libmicrohttpd daemon: auth, limits and admission at the headers, bodies, computing on the pool, access log and metrics. */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server.h"

/* The first buffer for a body of unknown length (chunked); it doubles from
 * there. */
#define CHUNKED_START ((size_t)64 << 10)

/* Bodies up to this size are parsed on the connection's thread, and
 * computed there too when their work is small (api_handle_small): a
 * millisecond at most, less than a hand-off to the pool and back costs at
 * B = 1. Larger bodies, and small ones with large work, go to the pool. */
#define INLINE_BODY_MAX ((size_t)64 << 10)

/* Seconds a client refused with 503 overloaded is told to wait. One: the
 * queue turns over in about the time of a request, and clients spread
 * their retries with their own jitter. */
#define RETRY_AFTER 1

#define NS_PER_S 1000000000ull

struct srv_http {
    /* One libmicrohttpd daemon per HTTP thread, each with its own listening
     * socket on the same port (SO_REUSEPORT), so that the kernel spreads
     * connections evenly over the threads. (One daemon with a thread pool
     * shares one socket, and a burst of connections often lands on a
     * single thread, which then serves, and computes, for all of them.) */
    struct MHD_Daemon **daemons;
    size_t ndaemons;
    MHD_socket *quiesced;  /* each daemon's listening socket once quiesced */
    int is_quiesced;
    srv_app *app;
    srv_metrics *metrics;
    srv_gauges *g;
    srv_conns *conns;
    size_t max_body;
    uint64_t conn_timeout_ns, idle_timeout_ns;
    unsigned port;
    atomic_int stopping;   /* queued requests are answered 503, not computed */
    atomic_long outstanding; /* submitted to the pool, not yet handed back */
    atomic_long answering;   /* submitted, not yet completed */
};

/* One request's state, from its first line (the URI callback) to
 * MHD_OPTION_NOTIFY_COMPLETED, which logs, counts and frees it. The
 * connection's thread owns it, except while the connection is suspended
 * for computing: then the pool thread running the task does, until it
 * resumes the connection. */
typedef struct {
    srv_task task;          /* first: the pool hands this back */
    srv_http *h;
    struct MHD_Connection *conn;
    srv_conn *sc;           /* the connection's deadline, or NULL */
    uint64_t t0;            /* srv_now_ns() at the first line */
    int started;            /* the access handler has seen the headers */
    int admitted;           /* holds an admission slot */
    int submitted;          /* handed to the pool; rep is its answer */
    const srv_route *route; /* NULL: a 404 or 405 (or answered on the first call) */
    char *body;
    size_t len, cap;
    uint64_t received;      /* bytes of body seen, kept or not */
    int too_large;          /* over the limit: the rest is counted, not kept */
    srv_reply rep;          /* the answer to send, once has_rep */
    int has_rep;
    int status;             /* the status sent, 0 before */
    uint64_t bytes_out;
    size_t rows, samples;   /* work done, from the answer */
    int path_label;         /* srv_metrics_path() */
    int reject;             /* an srv_reject counted at the end, or -1 */
    char method[16];
    char path[256];
    char id[SRV_REQUEST_ID_MAX + 1];
} request;

/* ==== responses ============================================================= */

/* Queues rep on c; the response owns rep->body from here on. */
static enum MHD_Result send_reply(request *r, srv_reply *rep) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        rep->len, rep->body, rep->owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        if (rep->owned) free(rep->body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, rep->content_type);
    MHD_add_response_header(resp, "X-Request-Id", r->id);
    if (rep->allow) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, rep->allow);
    if (rep->close) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    if (rep->challenge)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"gradserve\"");
    if (rep->retry_after) {
        char s[16];
        snprintf(s, sizeof s, "%u", rep->retry_after);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, s);
    }
    enum MHD_Result ok = MHD_queue_response(r->conn, (unsigned)rep->status, resp);
    MHD_destroy_response(resp);
    if (ok == MHD_YES) {
        r->status = rep->status;
        r->bytes_out = strcmp(r->method, "HEAD") ? rep->len : 0;
        r->rows = rep->rows;
        r->samples = rep->samples;
    }
    /* The response has the body now (or it was freed above). */
    memset(rep, 0, sizeof *rep);
    return ok;
}

/* Keeps rep as r's answer, to send on a later call. */
static void hold(request *r, srv_reply *rep) {
    r->rep = *rep;
    r->has_rep = 1;
}

static void error_reply(srv_reply *rep, int status, const char *code, const char *message) {
    memset(rep, 0, sizeof *rep);
    srv_reply_error(rep, status, code, message, NULL);
}

/* ==== request headers ======================================================= */

static const char *header(struct MHD_Connection *c, const char *name) {
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

/* 1 if s, less surrounding blanks, is word (any case). */
static int header_is(const char *s, const char *word) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(word);
    if (strncasecmp(s, word, n)) return 0;
    for (s += n; *s == ' ' || *s == '\t'; s++) {}
    return *s == '\0';
}

/* 1 if the request announces a body. */
static int has_body(struct MHD_Connection *c) {
    const char *cl = header(c, MHD_HTTP_HEADER_CONTENT_LENGTH);
    return header(c, MHD_HTTP_HEADER_TRANSFER_ENCODING) || (cl && strspn(cl, "0 \t") != strlen(cl));
}

/* Checks what can be refused before reading a byte of a computing
 * request's body: a server that is draining, an encoding or media type we
 * do not read, a declared length over the limit, and last the admission
 * limit (so that a request refused for good is not told to retry). Fills
 * rep with the refusal and returns 1, or sizes r's buffer, takes an
 * admission slot and returns 0. A refusal is sent at once: for a request
 * with a body libmicrohttpd then skips the body and closes the
 * connection, so nothing more is read (and no "100 Continue" goes to
 * clients that asked for one). */
/* What every Content-Encoding and Content-Type header of a request says:
 * a header sent twice counts twice (the first one alone would let
 * "identity" then "gzip" through). */
typedef struct {
    int compressed, multipart;
} media;

static enum MHD_Result on_media_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                       const char *value) {
    (void)kind;
    media *m = cls;
    if (!value) return MHD_YES;
    if (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_ENCODING) && !header_is(value, "identity"))
        m->compressed = 1;
    if (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_TYPE)) {
        while (*value == ' ' || *value == '\t') value++;
        if (!strncasecmp(value, "multipart/", 10)) m->multipart = 1;
    }
    return MHD_YES;
}

static int check_headers(srv_http *h, struct MHD_Connection *c, request *r, srv_reply *rep) {
    if (atomic_load(&h->app->state) == SRV_DRAINING) {
        error_reply(rep, 503, "shutting_down",
                    "the server is shutting down; retry on another replica");
        rep->close = 1;
        r->reject = SRV_REJECT_DRAINING;
        return 1;
    }
    media m = {0, 0};
    MHD_get_connection_values(c, MHD_HEADER_KIND, on_media_header, &m);
    if (m.compressed) {
        error_reply(rep, 415, "unsupported_media_type",
                    "compressed bodies are not accepted: send the JSON as is "
                    "(no Content-Encoding)");
        return 1;
    }
    if (m.multipart) {
        error_reply(rep, 415, "unsupported_media_type",
                    "multipart bodies are not accepted: send the JSON object as "
                    "the body (Content-Type: application/json)");
        return 1;
    }
    const char *cl = header(c, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te = header(c, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    size_t cap = 0;
    if (cl && !te) {
        /* libmicrohttpd has already refused a malformed Content-Length. */
        errno = 0;
        unsigned long long n = strtoull(cl, NULL, 10);
        if (errno == ERANGE || n > h->max_body) {
            char msg[128];
            snprintf(msg, sizeof msg, "the body is %s bytes, over this server's limit of %zu",
                     errno == ERANGE ? "too many" : cl, h->max_body);
            error_reply(rep, 413, "payload_too_large", msg);
            return 1;
        }
        cap = (size_t)n;
    } else if (te) {
        cap = CHUNKED_START < h->max_body ? CHUNKED_START : h->max_body;
    }
    /* Admission: a slot from the headers to the end of the computation,
     * so that bodies being received count too, and memory stays within
     * (workers + queue-limit) requests' worth however many clients send. */
    if (atomic_fetch_add(&h->g->admitted, 1) >= h->g->admission_limit) {
        atomic_fetch_sub(&h->g->admitted, 1);
        error_reply(rep, 503, "overloaded",
                    "the server is busy (its compute queue is full); retry after the "
                    "Retry-After delay, or on another replica");
        rep->retry_after = RETRY_AFTER;
        r->reject = SRV_REJECT_OVERLOAD;
        return 1;
    }
    r->admitted = 1;
    if (cap && !(r->body = malloc(cap))) {
        error_reply(rep, 503, "overloaded", "the server is out of memory; retry later");
        rep->retry_after = RETRY_AFTER;
        r->reject = SRV_REJECT_OVERLOAD;
        return 1;
    }
    r->cap = cap;
    return 0;
}

static void release_slot(srv_http *h, request *r) {
    if (!r->admitted) return;
    r->admitted = 0;
    atomic_fetch_sub(&h->g->admitted, 1);
}

/* ==== bodies ================================================================ */

/* Bytes of an over-limit chunked body read and dropped before giving up:
 * one more limit's worth, at least 64 MiB (a fraction of a second on a
 * local network). */
static uint64_t discard_allowance(const srv_http *h) {
    return h->max_body > ((size_t)64 << 20) ? h->max_body : ((size_t)64 << 20);
}

/* Appends data to r's body, doubling the buffer (capped at the limit) when
 * it is full. Past the limit the buffer is freed and the bytes are only
 * counted: libmicrohttpd (0.9.75) refuses to queue a response while a
 * body is still arriving, so the 413 goes out once the client has
 * finished sending (a declared Content-Length over the limit is refused
 * from the headers, before any of it is read). */
static void append(srv_http *h, request *r, const char *data, size_t n) {
    r->received += n;
    if (r->too_large) return;
    if (r->received > h->max_body) {
        r->too_large = 1;
        free(r->body);
        r->body = NULL;
        r->len = r->cap = 0;
        return;
    }
    if (r->len + n > r->cap) {
        size_t cap = r->cap ? r->cap : CHUNKED_START;
        while (cap < r->len + n) cap = cap > h->max_body / 2 ? h->max_body : cap * 2;
        char *p = realloc(r->body, cap);
        if (!p) {
            /* Treated as too large: the only answer that tells the client
             * a smaller body may work. */
            r->too_large = 1;
            free(r->body);
            r->body = NULL;
            r->len = r->cap = 0;
            return;
        }
        r->body = p;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
}

/* ==== computing on the pool ================================================= */

/* A pool thread: computes r's answer, gives back the admission slot and
 * the body's memory, and resumes the connection, whose thread then sends
 * the answer. After MHD_resume_connection() r belongs to that thread
 * again, so it is the last thing done here. */
static void compute(srv_task *t) {
    request *r = (request *)t;
    srv_http *h = r->h;
    atomic_fetch_sub(&h->g->queued, 1);
    srv_reply rep = {0};
    if (atomic_load(&h->stopping)) {
        /* Past the drain timeout: answer rather than compute. */
        error_reply(&rep, 503, "shutting_down",
                    "the server is shutting down; retry on another replica");
        rep.close = 1;
        r->reject = SRV_REJECT_DRAINING;
    } else {
        atomic_fetch_add(&h->g->computing, 1);
        srv_request req = {r->method, r->path, r->path + strlen(r->route->path),
                           r->body ? r->body : "", r->len, 0};
        r->route->handler(h->app, &req, &rep);
        atomic_fetch_sub(&h->g->computing, 1);
    }
    free(r->body);
    r->body = NULL;
    r->len = r->cap = 0;
    hold(r, &rep);
    release_slot(h, r);
    /* Counted out only once resumed: srv_http_stop() may stop the daemon
     * as soon as nothing is outstanding, and a connection still suspended
     * then would abort the process. */
    MHD_resume_connection(r->conn);
    atomic_fetch_sub(&h->outstanding, 1);
}

/* ==== the access handler ==================================================== */

/* s into out[n], cut to n - 1 bytes. */
static void copy_cut(char *out, size_t n, const char *s) {
    size_t l = strnlen(s, n - 1);
    memcpy(out, s, l);
    out[l] = '\0';
}

/* Records what the request is and what the first call decides. Returns
 * MHD_YES with nothing queued when the request goes on. */
static enum MHD_Result first_call(srv_http *h, struct MHD_Connection *c, request *r,
                                  const char *url, const char *method) {
    r->started = 1;
    copy_cut(r->method, sizeof r->method, method);
    copy_cut(r->path, sizeof r->path, url);
    r->path_label = srv_metrics_path(url);
    srv_request_id(r->id, header(c, "X-Request-Id"));

    srv_reply rep = {0};
    const char *op;
    r->route = strlen(url) < sizeof r->path ? srv_route_find(method, url, &op, &rep) : NULL;
    if (!r->route && !rep.body)
        srv_reply_error(&rep, 404, "not_found", "no such path (see /openapi.yaml)", NULL);

    /* With a token, everything but the probes' paths needs it, unknown
     * paths included: a stranger learns nothing, not even which paths
     * exist. A probe's path with a wrong method stays a 405. */
    srv_app *app = h->app;
    if (app->token && !(r->route ? r->route->open : srv_path_open(r->path)) &&
        !srv_auth_ok(app->token, app->token_len, header(c, MHD_HTTP_HEADER_AUTHORIZATION))) {
        if (rep.owned) free(rep.body);
        error_reply(&rep, 401, "unauthorized",
                    "this server needs Authorization: Bearer <token>");
        rep.challenge = 1;
        r->route = NULL;
        r->reject = SRV_REJECT_UNAUTHORIZED;
    }
    if (r->route && r->route->body) {
        if (!check_headers(h, c, r, &rep)) return MHD_YES;
        return send_reply(r, &rep);
    }
    /* An answer queued now makes libmicrohttpd skip the body and close the
     * connection afterwards: right for a body we refuse, wasteful for a
     * bodiless GET on a keep-alive connection, which is therefore answered
     * on the next call. A GET with a body has it read and ignored. */
    if (!r->route && has_body(c)) return send_reply(r, &rep);
    if (r->route) {
        if (rep.owned) free(rep.body);
    } else {
        hold(r, &rep);
    }
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size,
                                  void **req_cls) {
    srv_http *h = cls;
    request *r = *req_cls;
    if (!r) {
        /* The URI callback could not allocate; a second try here. */
        if (!(r = calloc(1, sizeof *r))) return MHD_NO;
        r->h = h;
        r->conn = c;
        r->t0 = srv_now_ns();
        r->reject = -1;
        atomic_fetch_add(&h->g->in_flight, 1);
        *req_cls = r;
    }
    if (!r->started) return first_call(h, c, r, url, method);

    if (*upload_size) {
        /* A request answered on its first call has its body skipped by
         * libmicrohttpd; should any arrive, it is only counted. */
        if (r->route && r->route->body && !r->status) append(h, r, upload_data, *upload_size);
        else r->received += *upload_size; /* a body no handler reads */
        *upload_size = 0;
        /* A body over the limit whose length was not announced is read
         * and dropped so that the 413 can be sent at its end, but not
         * forever: past the allowance the connection is closed without an
         * answer. */
        if (r->received > h->max_body && r->received - h->max_body > discard_allowance(h))
            return MHD_NO;
        return MHD_YES;
    }

    /* The request is complete (or its answer is back from the pool). */
    if (r->sc) atomic_store(&r->sc->deadline, 0);
    if (r->status) return MHD_YES; /* answered on the first call */
    if (r->has_rep) {
        r->has_rep = 0;
        return send_reply(r, &r->rep);
    }
    srv_reply rep = {0};
    if (r->too_large) {
        char msg[128];
        snprintf(msg, sizeof msg, "the body is over this server's limit of %zu bytes",
                 h->max_body);
        release_slot(h, r);
        error_reply(&rep, 413, "payload_too_large", msg);
        return send_reply(r, &rep);
    }
    if (!r->route) {
        /* Not reached: a request without a route holds its 404, 405 or
         * 401 from the first call. */
        error_reply(&rep, 404, "not_found", "no such path (see /openapi.yaml)");
        return send_reply(r, &rep);
    }
    if (r->route->compute && h->app->pool && r->len <= INLINE_BODY_MAX &&
        !atomic_load(&h->stopping)) {
        srv_request req = {method, url, url + strlen(r->route->path),
                           r->body ? r->body : "", r->len, 1};
        atomic_fetch_add(&h->g->computing, 1);
        r->route->handler(h->app, &req, &rep);
        atomic_fetch_sub(&h->g->computing, 1);
        if (!rep.deferred) {
            free(r->body);
            r->body = NULL;
            r->len = r->cap = 0;
            release_slot(h, r);
            return send_reply(r, &rep);
        }
        memset(&rep, 0, sizeof rep);
    }
    if (r->route->compute && h->app->pool) {
        /* Suspended before it is queued, so that the pool's resume can
         * never come first. */
        MHD_suspend_connection(c);
        r->submitted = 1;
        r->task.run = compute;
        atomic_fetch_add(&h->outstanding, 1);
        atomic_fetch_add(&h->answering, 1);
        atomic_fetch_add(&h->g->queued, 1);
        srv_pool_submit(h->app->pool, &r->task);
        return MHD_YES;
    }
    srv_request req = {method, url, r->route->prefix ? url + strlen(r->route->path) : NULL,
                       r->body ? r->body : "", r->len, 0};
    r->route->handler(h->app, &req, &rep);
    release_slot(h, r);
    return send_reply(r, &rep);
}

/* The request's first line has arrived: its clock and its deadline start. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c) {
    srv_http *h = cls;
    request *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->h = h;
    r->conn = c;
    r->t0 = srv_now_ns();
    r->reject = -1;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    r->sc = ci ? ci->socket_context : NULL;
    if (r->sc) {
        /* The earlier of the connection's deadline (set at accept, or
         * after the previous answer) and a full timeout from now. */
        uint64_t d = r->t0 + h->conn_timeout_ns, old = atomic_load(&r->sc->deadline);
        atomic_store(&r->sc->deadline, old && old < d ? old : d);
    }
    atomic_fetch_add(&h->g->in_flight, 1);
    return r;
}

static const char *termination(enum MHD_RequestTerminationCode toe) {
    switch (toe) {
    case MHD_REQUEST_TERMINATED_COMPLETED_OK: return NULL;
    case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED: return "idle timeout";
    case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN: return "server stopped";
    case MHD_REQUEST_TERMINATED_READ_ERROR: return "connection closed while reading";
    case MHD_REQUEST_TERMINATED_CLIENT_ABORT: return "client closed the connection";
    default: return "connection error";
    }
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe) {
    srv_http *h = cls;
    request *r = *req_cls;
    if (!r) return;
    *req_cls = NULL;
    double seconds = 1e-9 * (double)(srv_now_ns() - r->t0);
    const char *error = termination(toe);
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && r->status == 0 && !error)
        error = "no answer";
    if (r->status) {
        srv_metrics_request(h->metrics, r->path_label, r->status, seconds, r->received,
                            r->bytes_out, r->rows, r->samples);
        int reason = r->reject;
        if (reason < 0 && r->status == 413) reason = SRV_REJECT_TOO_LARGE;
        if (reason >= 0) srv_metrics_reject(h->metrics, (srv_reject)reason);
    }
    if (r->started || r->status) {
        srv_access a = {r->method, r->path, r->id, r->sc ? r->sc->remote : NULL,
                        error, r->status, r->received,
                        r->bytes_out, r->rows, r->samples, seconds};
        srv_log_access(&a);
    } else {
        srv_log(SRV_LOG_DEBUG, "a request from %s ended before its headers: %s",
                r->sc ? r->sc->remote : "?", error ? error : "done");
    }
    /* The next request on this connection must arrive whole within the
     * idle timeout (libmicrohttpd's, which fires first) plus the request
     * timeout: a hard bound even for a client that trickles bytes. */
    if (r->sc && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
        atomic_store(&r->sc->deadline, srv_now_ns() + h->idle_timeout_ns + h->conn_timeout_ns);
    release_slot(h, r);
    if (r->has_rep && r->rep.owned) free(r->rep.body);
    if (r->submitted) atomic_fetch_sub(&h->answering, 1);
    free(r->body);
    free(r);
    atomic_fetch_sub(&h->g->in_flight, 1);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    srv_http *h = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        srv_conn *sc = calloc(1, sizeof *sc);
        if (!sc) return; /* served without a deadline */
        const union MHD_ConnectionInfo *fd = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *ad = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        sc->fd = fd ? fd->connect_fd : -1;
        if (ad && ad->client_addr) {
            const struct sockaddr *sa = ad->client_addr;
            char ip[INET6_ADDRSTRLEN] = "?";
            unsigned port = 0;
            if (sa->sa_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
                inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
                port = ntohs(in->sin_port);
                snprintf(sc->remote, sizeof sc->remote, "%s:%u", ip, port);
            } else if (sa->sa_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
                inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
                port = ntohs(in6->sin6_port);
                snprintf(sc->remote, sizeof sc->remote, "[%s]:%u", ip, port);
            }
        }
        atomic_store(&sc->deadline, srv_now_ns() + h->conn_timeout_ns);
        if (sc->fd >= 0) srv_conns_add(h->conns, sc);
        *socket_context = sc;
        atomic_fetch_add(&h->g->connections, 1);
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        srv_conn *sc = *socket_context;
        if (!sc) return;
        if (sc->fd >= 0) srv_conns_remove(h->conns, sc);
        free(sc);
        *socket_context = NULL;
        atomic_fetch_sub(&h->g->connections, 1);
    }
}

static void on_log(void *cls, const char *fmt, va_list ap) {
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    srv_log(SRV_LOG_WARN, "libmicrohttpd: %s", msg);
}

/* ==== the daemon ============================================================ */

/* The port of a socket address. */
static void set_port(struct sockaddr *sa, unsigned port) {
    if (sa->sa_family == AF_INET6) ((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
    else ((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
}

/* 0 if nothing listens on the address yet. The daemons' sockets allow
 * SO_REUSEPORT, which would let them join another process's listener on
 * the same port (another gradserve's, say) and share its connections
 * silently: a plain bind first (SO_REUSEADDR only, as the daemons have)
 * fails in that case, as a single socket would. */
static int port_taken(const struct addrinfo *ai) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) return errno;
    int one = 1, rc = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ai->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen)) rc = errno;
    close(fd);
    return rc;
}

static void stop_daemons(srv_http *h) {
    for (size_t i = 0; i < h->ndaemons; i++) {
        if (h->daemons[i]) MHD_stop_daemon(h->daemons[i]);
        /* The thread is gone, so the quiesced socket is no longer polled. */
        if (h->quiesced[i] != MHD_INVALID_SOCKET) close(h->quiesced[i]);
    }
}

static void http_free(srv_http *h) {
    if (h->conns) srv_conns_free(h->conns);
    free(h->daemons);
    free(h->quiesced);
    free(h);
}

srv_http *srv_http_start(const srv_config *cfg, srv_app *app, const char *cert_pem,
                         const char *key_pem, char *err, size_t errlen) {
    if (cert_pem && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        snprintf(err, errlen, "this libmicrohttpd was built without TLS: cannot serve HTTPS");
        return NULL;
    }
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    char port[8];
    snprintf(port, sizeof port, "%u", cfg->port);
    int rc = getaddrinfo(cfg->host, port, &hints, &ai);
    if (rc) {
        snprintf(err, errlen, "cannot resolve host \"%s\": %s", cfg->host, gai_strerror(rc));
        return NULL;
    }
    size_t n = cfg->threads > 0 ? cfg->threads : 1;
    srv_http *h = calloc(1, sizeof *h);
    if (!h || !(h->daemons = calloc(n, sizeof *h->daemons)) ||
        !(h->quiesced = malloc(n * sizeof *h->quiesced))) {
        freeaddrinfo(ai);
        if (h) http_free(h);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) h->quiesced[i] = MHD_INVALID_SOCKET;
    h->app = app;
    h->metrics = app->metrics;
    h->g = srv_metrics_gauges(app->metrics);
    h->g->admission_limit = (long)(cfg->workers + cfg->queue_limit);
    h->g->max_connections = (long)cfg->max_connections;
    h->max_body = cfg->max_body;
    h->conn_timeout_ns = (uint64_t)cfg->connection_timeout * NS_PER_S;
    h->idle_timeout_ns = (uint64_t)cfg->idle_timeout * NS_PER_S;
    if (!(h->conns = srv_conns_new(app->metrics, cfg->connection_timeout))) {
        freeaddrinfo(ai);
        http_free(h);
        snprintf(err, errlen, "cannot start the connection reaper thread");
        return NULL;
    }
    if (n > 1 && cfg->port && (rc = port_taken(ai))) {
        freeaddrinfo(ai);
        http_free(h);
        snprintf(err, errlen, "cannot listen on %s port %u: %s", cfg->host, cfg->port,
                 strerror(rc));
        return NULL;
    }

    /* MHD_USE_ITC: MHD_quiesce_daemon() needs it with internal threads,
     * as does resuming a connection from a pool thread. */
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG | MHD_USE_ITC |
                     MHD_ALLOW_SUSPEND_RESUME;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    if (cert_pem) flags |= MHD_USE_TLS;
    struct MHD_OptionItem opts[3], *o = opts;
    if (cert_pem) {
        *o++ = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)cert_pem};
        *o++ = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)key_pem};
    }
    *o = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    for (size_t i = 0; i < n; i++) {
        /* The first daemon binds the port asked for (0: any); the others
         * join it. Each serves its share of max-connections. */
        if (i) set_port(ai->ai_addr, h->port);
        unsigned limit = (unsigned)(cfg->max_connections / n + (i < cfg->max_connections % n));
        h->daemons[i] = MHD_start_daemon(
            flags, (uint16_t)(i ? h->port : cfg->port), NULL, NULL, on_request, h,
            /* The logger first, so that no message goes to MHD's own. */
            MHD_OPTION_EXTERNAL_LOGGER, on_log, NULL,
            MHD_OPTION_SOCK_ADDR, ai->ai_addr,
            MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)(n > 1),
            MHD_OPTION_CONNECTION_LIMIT, limit,
            MHD_OPTION_CONNECTION_TIMEOUT, cfg->idle_timeout,
            MHD_OPTION_URI_LOG_CALLBACK, on_uri, h,
            MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
            MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
            MHD_OPTION_ARRAY, opts,
            MHD_OPTION_END);
        int saved = errno;
        h->ndaemons = i + 1;
        if (!h->daemons[i]) {
            snprintf(err, errlen, "cannot %s on %s port %u: %s",
                     cert_pem ? "serve HTTPS (is --tls-key the key of --tls-cert?)" : "listen",
                     cfg->host, i ? h->port : cfg->port,
                     saved ? strerror(saved) : "libmicrohttpd refused to start");
            freeaddrinfo(ai);
            stop_daemons(h);
            http_free(h);
            return NULL;
        }
        if (!i) {
            const union MHD_DaemonInfo *info =
                MHD_get_daemon_info(h->daemons[0], MHD_DAEMON_INFO_BIND_PORT);
            h->port = info ? info->port : cfg->port;
        }
    }
    freeaddrinfo(ai);
    return h;
}

unsigned srv_http_port(const srv_http *h) { return h->port; }

void srv_http_quiesce(srv_http *h) {
    if (h->is_quiesced) return;
    h->is_quiesced = 1;
    for (size_t i = 0; i < h->ndaemons; i++) {
        h->quiesced[i] = MHD_quiesce_daemon(h->daemons[i]);
        /* The socket stays open until MHD_stop_daemon() (its thread may
         * still hold it), and meanwhile new connections would wait in its
         * backlog for an accept that never comes. shutdown() makes the
         * kernel refuse them at once, so clients and load balancers move
         * on to another replica; the descriptor stays valid until closed
         * at stop. */
        if (h->quiesced[i] != MHD_INVALID_SOCKET) shutdown(h->quiesced[i], SHUT_RDWR);
    }
}

size_t srv_http_in_flight(const srv_http *h) {
    long n = atomic_load(&h->g->in_flight);
    return n > 0 ? (size_t)n : 0;
}

void srv_http_stop(srv_http *h) {
    if (!h) return;
    /* libmicrohttpd cannot stop with a connection suspended: every request
     * handed to the pool must come back first. Those still queued are
     * answered 503 at once; those computing finish. */
    atomic_store(&h->stopping, 1);
    while (atomic_load(&h->outstanding) > 0) usleep(1000);
    /* Stopping the daemon closes every connection, answered or not: give
     * the answers just handed back (503s for the queue, mostly) up to 5 s
     * to go out. A client too slow to read its answer in that time loses
     * it, as it would have past the drain timeout. */
    for (int i = 0; i < 5000 && atomic_load(&h->answering) > 0; i++) usleep(1000);
    stop_daemons(h);
    http_free(h);
}
