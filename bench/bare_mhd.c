/* bare_mhd.c - a bare libmicrohttpd server that reads the POST body and answers a fixed small JSON: the HTTP ceiling for bench-service.sh. */
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The same daemon a production server would run: an internal thread pool
 * (one epoll loop per thread, as many threads as cores), bound to loopback,
 * the body read in full into a buffer sized from Content-Length and grown by
 * doubling, freed when the request completes (gradserve's flags: epoll pool, error
 * log, ITC for draining). Nothing is parsed or computed:
 * whatever gradserve spends beyond this server's time per request is its own. */

static const char REPLY[] = "{\"status\":\"ok\"}";

typedef struct {
    char *p;
    size_t len, cap;
} body_buf;

static int body_append(body_buf *b, const char *data, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) return -1;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

static enum MHD_Result answer(struct MHD_Connection *conn, unsigned status, const char *body,
                              size_t len) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size,
                                  void **con_cls) {
    (void)cls;
    (void)url;
    (void)version;
    body_buf *b = *con_cls;
    if (!b) {
        /* First call: headers only. Size the buffer from Content-Length. */
        if (!(b = calloc(1, sizeof *b))) return MHD_NO;
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            size_t n = strtoull(cl, NULL, 10);
            if (n > 0 && n < ((size_t)256 << 20) && (b->p = malloc(n))) b->cap = n;
        }
        *con_cls = b;
        return MHD_YES;
    }
    if (*upload_size) {
        if (body_append(b, upload_data, *upload_size)) return MHD_NO;
        *upload_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, "POST") && strcmp(method, "GET")) {
        static const char e[] = "{\"error\":{\"code\":\"method_not_allowed\"}}";
        return answer(conn, MHD_HTTP_METHOD_NOT_ALLOWED, e, sizeof e - 1);
    }
    return answer(conn, MHD_HTTP_OK, REPLY, sizeof REPLY - 1);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)conn;
    (void)toe;
    body_buf *b = *con_cls;
    if (b) {
        free(b->p);
        free(b);
    }
    *con_cls = NULL;
}

static void usage(FILE *f) {
    fprintf(f, "usage: bare_mhd --port N [--threads T]\n"
               "  Serves 127.0.0.1:N; every request gets 200 %s.\n"
               "  --threads  HTTP threads, one MHD daemon each on the shared port (default: the\n"
            "             number of online cores)\n",
            REPLY);
}

int main(int argc, char **argv) {
    long port = -1, threads = sysconf(_SC_NPROCESSORS_ONLN);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc) port = strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (port < 1 || port > 65535 || threads < 1) {
        usage(stderr);
        return 2;
    }
    /* Block the stop signals before MHD starts its threads, so that they
     * inherit the mask and only sigwait() below sees them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* One daemon per thread, each with its own socket on the port
     * (SO_REUSEPORT), as gradserve does: the kernel spreads connections
     * evenly over the threads. (MHD's own thread pool shares one socket,
     * and a burst of connections often lands on one thread.) */
    struct MHD_Daemon *d[256];
    if (threads > 256) threads = 256;
    for (long i = 0; i < threads; i++) {
        d[i] = MHD_start_daemon(
            MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG | MHD_USE_ITC, (uint16_t)port, NULL,
            NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
            MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_CONNECTION_TIMEOUT,
            (unsigned)30, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_END);
        if (!d[i]) {
            fprintf(stderr, "bare_mhd: cannot listen on 127.0.0.1:%ld: %s\n", port,
                    strerror(errno));
            return 1;
        }
    }
    fprintf(stderr, "bare_mhd: 127.0.0.1:%ld, %ld threads\n", port, threads);
    int sig;
    sigwait(&stop, &sig);
    for (long i = 0; i < threads; i++) MHD_stop_daemon(d[i]);
    return 0;
}
