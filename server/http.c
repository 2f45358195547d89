/* http.c - the libmicrohttpd daemon: request bodies under a size limit, dispatch to the routing table. */
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

/* Idle keep-alive connections are closed after this many seconds, so
 * clients that vanish do not hold a slot forever. */
#define IDLE_TIMEOUT 60

/* The first buffer for a body of unknown length (chunked); it doubles from
 * there. */
#define CHUNKED_START ((size_t)64 << 10)

struct srv_http {
    struct MHD_Daemon *daemon;
    srv_app *app;
    size_t max_body;
    unsigned port;
    MHD_socket quiesced; /* the listening socket once quiesced, closed at stop */
    atomic_size_t in_flight;
};

/* One request's state, from the first call of the access handler to
 * MHD_OPTION_NOTIFY_COMPLETED, which frees it. Only the connection's
 * thread touches it. */
typedef struct {
    const srv_route *route; /* NULL: a 404 or 405 (or answered on the first call) */
    char *body;
    size_t len, cap;
    uint64_t received;      /* bytes of body seen, kept or not */
    int too_large;          /* over the limit: the rest is counted, not kept */
} request;

/* ==== responses ============================================================= */

/* Queues rep on c; the response owns rep->body from here on. */
static enum MHD_Result send_reply(struct MHD_Connection *c, srv_reply *rep) {
    struct MHD_Response *r = MHD_create_response_from_buffer(
        rep->len, rep->body, rep->owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        if (rep->owned) free(rep->body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, rep->content_type);
    if (rep->allow) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, rep->allow);
    if (rep->close) MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)rep->status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result send_error(struct MHD_Connection *c, int status, const char *code,
                                  const char *message) {
    srv_reply rep = {0};
    srv_reply_error(&rep, status, code, message, NULL);
    return send_reply(c, &rep);
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

/* Checks what can be refused before reading a byte of the body: a server
 * that is draining, an encoding or media type we do not read, a declared
 * length over the limit. Queues the error, or sizes r's buffer for the
 * body to come. For a refused body libmicrohttpd sends the answer at once
 * and closes the connection, so nothing more is read (and no "100
 * Continue" goes to clients that asked for one). */
static enum MHD_Result check_headers(srv_http *h, struct MHD_Connection *c, request *r) {
    if (atomic_load(&h->app->state) == SRV_DRAINING) {
        srv_reply rep = {0};
        srv_reply_error(&rep, 503, "shutting_down", "the server is shutting down; retry on "
                        "another replica", NULL);
        rep.close = 1;
        return send_reply(c, &rep);
    }
    const char *enc = header(c, MHD_HTTP_HEADER_CONTENT_ENCODING);
    if (enc && !header_is(enc, "identity"))
        return send_error(c, 415, "unsupported_media_type",
                          "compressed bodies are not accepted: send the JSON as is "
                          "(no Content-Encoding)");
    const char *type = header(c, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (type) {
        while (*type == ' ' || *type == '\t') type++;
        if (!strncasecmp(type, "multipart/", 10))
            return send_error(c, 415, "unsupported_media_type",
                              "multipart bodies are not accepted: send the JSON object as "
                              "the body (Content-Type: application/json)");
    }
    const char *cl = header(c, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te = header(c, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if (cl && !te) {
        /* libmicrohttpd has already refused a malformed Content-Length. */
        errno = 0;
        unsigned long long n = strtoull(cl, NULL, 10);
        if (errno == ERANGE || n > h->max_body) {
            char msg[128];
            snprintf(msg, sizeof msg, "the body is %s bytes, over this server's limit of %zu",
                     errno == ERANGE ? "too many" : cl, h->max_body);
            return send_error(c, 413, "payload_too_large", msg);
        }
        r->cap = (size_t)n;
    } else if (te) {
        r->cap = CHUNKED_START < h->max_body ? CHUNKED_START : h->max_body;
    }
    if (r->cap && !(r->body = malloc(r->cap)))
        return send_error(c, 503, "overloaded", "the server is out of memory; retry later");
    return MHD_YES;
}

/* ==== the access handler ==================================================== */

/* 1 if the request announces a body. */
static int has_body(struct MHD_Connection *c) {
    const char *cl = header(c, MHD_HTTP_HEADER_CONTENT_LENGTH);
    return header(c, MHD_HTTP_HEADER_TRANSFER_ENCODING) || (cl && strspn(cl, "0 \t") != strlen(cl));
}

/* Bytes of an over-limit chunked body read and dropped before giving up:
 * one more limit's worth, at least 64 MiB (a fraction of a second on a
 * local network). */
static uint64_t discard_allowance(const srv_http *h) {
    return h->max_body > ((size_t)64 << 20) ? h->max_body : ((size_t)64 << 20);
}

/* Appends data to r's body, doubling the buffer (capped at the limit) when
 * it is full. Past the limit the bytes are only counted, and the 413 goes
 * out once the client has finished sending, because libmicrohttpd (0.9.75)
 * refuses to queue a response while a body is still arriving. */
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

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size,
                                  void **req_cls) {
    srv_http *h = cls;
    request *r = *req_cls;

    if (!r) {
        /* First call: headers only. The state is counted in flight until
         * NOTIFY_COMPLETED, so draining waits for responses still being
         * sent. An answer queued now makes libmicrohttpd skip the body and
         * close the connection afterwards: right for a body we refuse,
         * wasteful for a bodiless GET on a keep-alive connection, which is
         * therefore answered on the next call. */
        if (!(r = calloc(1, sizeof *r))) return MHD_NO;
        *req_cls = r;
        atomic_fetch_add(&h->in_flight, 1);
        srv_reply rep = {0};
        const char *op;
        r->route = srv_route_find(method, url, &op, &rep);
        if (!r->route || !r->route->body) {
            if (has_body(c)) {
                if (!r->route) return send_reply(c, &rep);
                /* A GET with a body: the body is read and ignored. */
            }
            if (rep.owned) free(rep.body);
            return MHD_YES;
        }
        return check_headers(h, c, r);
    }

    if (*upload_size) {
        if (r->route && r->route->body) append(h, r, upload_data, *upload_size);
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

    /* The request is complete. */
    srv_reply rep = {0};
    const char *op;
    if (!r->route) {
        /* The 404 or 405 found on the first call, found again. */
        srv_route_find(method, url, &op, &rep);
        return send_reply(c, &rep);
    }
    if (r->too_large) {
        char msg[128];
        snprintf(msg, sizeof msg, "the body is over this server's limit of %zu bytes",
                 h->max_body);
        return send_error(c, 413, "payload_too_large", msg);
    }
    srv_request req = {method, url, r->route->prefix ? url + strlen(r->route->path) : NULL,
                       r->body ? r->body : "", r->len};
    r->route->handler(h->app, &req, &rep);
    return send_reply(c, &rep);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe) {
    srv_http *h = cls;
    request *r = *req_cls;
    if (!r) return;
    free(r->body);
    free(r);
    *req_cls = NULL;
    atomic_fetch_sub(&h->in_flight, 1);
}

static void on_log(void *cls, const char *fmt, va_list ap) {
    /* libmicrohttpd's messages end with a newline of their own. */
    fputs("gradserve: libmicrohttpd: ", stderr);
    vfprintf(stderr, fmt, ap);
}

/* ==== the daemon ============================================================ */

srv_http *srv_http_start(const srv_config *cfg, srv_app *app, char *err, size_t errlen) {
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
    srv_http *h = calloc(1, sizeof *h);
    if (!h) {
        freeaddrinfo(ai);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->app = app;
    h->max_body = cfg->max_body;
    h->quiesced = MHD_INVALID_SOCKET;
    atomic_init(&h->in_flight, 0);

    /* MHD_USE_ITC: MHD_quiesce_daemon() needs it with internal threads. */
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG | MHD_USE_ITC;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    /* A pool of one is MHD's single internal thread. */
    unsigned pool = cfg->threads > 1 ? (unsigned)cfg->threads : 0;
    h->daemon = MHD_start_daemon(
        flags, (uint16_t)cfg->port, NULL, NULL, on_request, h,
        /* The logger first, so that no message goes to MHD's own. */
        MHD_OPTION_EXTERNAL_LOGGER, on_log, NULL,
        MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_THREAD_POOL_SIZE, pool,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)IDLE_TIMEOUT,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_END);
    int saved = errno;
    freeaddrinfo(ai);
    if (!h->daemon) {
        snprintf(err, errlen, "cannot listen on %s port %u: %s", cfg->host, cfg->port,
                 saved ? strerror(saved) : "libmicrohttpd refused to start");
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : cfg->port;
    return h;
}

unsigned srv_http_port(const srv_http *h) { return h->port; }

void srv_http_quiesce(srv_http *h) {
    if (h->quiesced != MHD_INVALID_SOCKET) return;
    h->quiesced = MHD_quiesce_daemon(h->daemon);
    /* The socket stays open until MHD_stop_daemon() (its threads may still
     * hold it), and meanwhile new connections would wait in its backlog
     * for an accept that never comes. shutdown() makes the kernel refuse
     * them at once, so clients and load balancers move on to another
     * replica; the descriptor itself stays valid until closed at stop. */
    if (h->quiesced != MHD_INVALID_SOCKET) shutdown(h->quiesced, SHUT_RDWR);
}

size_t srv_http_in_flight(const srv_http *h) {
    return atomic_load(&((srv_http *)h)->in_flight);
}

void srv_http_stop(srv_http *h) {
    if (!h) return;
    MHD_stop_daemon(h->daemon);
    /* The threads are gone, so the quiesced socket is no longer polled. */
    if (h->quiesced != MHD_INVALID_SOCKET) close(h->quiesced);
    free(h);
}
