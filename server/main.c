/* main.c - the gradserve process: configuration, start-up, signals, draining and shutdown. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "gradserve.h"
#include "server.h"

/* The commit the binary was built from; the Makefile passes it. */
#ifndef GS_COMMIT
#define GS_COMMIT "unknown"
#endif

/* ==== signals =============================================================== */

/* The self-pipe: the handler only writes the signal's number, which is
 * async-signal-safe; the main thread reads it and does the work. */
static int sig_pipe[2] = {-1, -1};

static void on_signal(int sig) {
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    ssize_t w = write(sig_pipe[1], &b, 1);
    (void)w; /* a full pipe already holds a wake-up */
    errno = saved;
}

static int install_signals(void) {
    if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK)) return -1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGINT, &sa, NULL) || sigaction(SIGTERM, &sa, NULL)) return -1;
    /* A client that hangs up must not kill the process; libmicrohttpd
     * sends with MSG_NOSIGNAL, this covers everything else. */
    sa.sa_handler = SIG_IGN;
    return sigaction(SIGPIPE, &sa, NULL);
}

/* Waits up to timeout_ms (-1: forever) for a signal; returns its number,
 * or 0 on timeout. */
static int wait_signal(int timeout_ms) {
    struct pollfd p = {sig_pipe[0], POLLIN, 0};
    for (;;) {
        int n = poll(&p, 1, timeout_ms);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return 0;
        unsigned char b;
        if (read(sig_pipe[0], &b, 1) == 1) return b;
    }
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ==== the OpenAPI file ====================================================== */

/* Reads a whole file; NULL (errno set) when it cannot. */
static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *p = malloc(cap);
    while (p) {
        n += fread(p + n, 1, cap - n, f);
        if (n < cap) break;
        char *q = realloc(p, cap *= 2);
        if (!q) {
            free(p);
            p = NULL;
        } else {
            p = q;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (p && bad) {
        free(p);
        errno = EIO;
        return NULL;
    }
    *len = n;
    return p;
}

/* Loads the spec: the configured path (which must exist), else
 * api/openapi.yaml below the working directory, else ../api/openapi.yaml
 * beside the binary. *used names what was loaded. Returns -1 only when a
 * configured path cannot be read. */
static int load_openapi(const srv_config *cfg, srv_app *app, char *used, size_t usedlen,
                        char *err, size_t errlen) {
    snprintf(used, usedlen, "none");
    if (*cfg->openapi) {
        if (!(app->openapi = read_file(cfg->openapi, &app->openapi_len))) {
            snprintf(err, errlen, "cannot read the OpenAPI file \"%.300s\": %s", cfg->openapi,
                     strerror(errno));
            return -1;
        }
        snprintf(used, usedlen, "%s", cfg->openapi);
        return 0;
    }
    char exe[PATH_MAX], alt[PATH_MAX + 32];
    const char *paths[2] = {"api/openapi.yaml", NULL};
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(alt, sizeof alt, "%s/../api/openapi.yaml", exe);
            paths[1] = alt;
        }
    }
    for (int i = 0; i < 2 && paths[i]; i++) {
        if ((app->openapi = read_file(paths[i], &app->openapi_len))) {
            snprintf(used, usedlen, "%s", paths[i]);
            return 0;
        }
    }
    return 0;
}

/* Reads a PEM file for libmicrohttpd, NUL-terminated (the configuration
 * has checked it is one). */
static char *read_pem(const char *path, char *err, size_t errlen) {
    size_t len = 0;
    char *p = read_file(path, &len);
    char *q = p ? realloc(p, len + 1) : NULL;
    if (!q) {
        snprintf(err, errlen, "cannot read \"%.300s\": %s", path, strerror(p ? ENOMEM : errno));
        free(p);
        return NULL;
    }
    q[len] = '\0';
    return q;
}

/* Enough descriptors for max-connections (each is one), plus files and the
 * listening socket: raise the soft limit up to the hard one if needed. */
static void raise_fd_limit(size_t max_connections) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl)) return;
    rlim_t want = (rlim_t)max_connections + 64;
    if (rl.rlim_cur >= want) return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < want)
        srv_log(SRV_LOG_WARN, "only %llu file descriptors for --max-connections %zu: "
                "connections past that are refused by the kernel",
                (unsigned long long)rl.rlim_cur, max_connections);
}

/* ==== main ================================================================== */

int main(int argc, char **argv) {
    static srv_config cfg; /* static: 16 KiB of paths */
    char err[512];
    int rc = srv_config_parse(&cfg, argc, argv, stdout, err, sizeof err);
    if (rc == 1) return 0;
    if (rc < 0) {
        fprintf(stderr, "gradserve: %s\n", err);
        return 2;
    }
    /* Bodies, arrays and answers of a megabyte or more come and go with
     * every request. By default glibc maps each such block afresh, or
     * trims the heap once it is freed, and every request then pays for
     * zeroed pages again (a sixth of a base64 request's time, perf).
     * Freed memory is kept for the next request instead: no more than the
     * peak, which the admission limit bounds. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    static srv_app app; /* static: the daemon's threads hold it to the end */
    api_limits_default(&app.limits);
    app.limits.max_body = cfg.max_body;
    app.limits.max_numbers = cfg.max_numbers;
    app.http_threads = cfg.threads;
    if (*cfg.token) {
        app.token = cfg.token;
        app.token_len = strlen(cfg.token);
    }
    atomic_init(&app.state, SRV_STARTING);
    char openapi[PATH_MAX + 64];
    if (load_openapi(&cfg, &app, openapi, sizeof openapi, err, sizeof err)) {
        fprintf(stderr, "gradserve: %s\n", err);
        return 2;
    }
    char *cert = NULL, *key = NULL;
    if (*cfg.tls_cert) {
        if (!(cert = read_pem(cfg.tls_cert, err, sizeof err)) ||
            !(key = read_pem(cfg.tls_key, err, sizeof err))) {
            fprintf(stderr, "gradserve: %s\n", err);
            free(cert);
            free(app.openapi);
            return 2;
        }
    }
    /* A bad setting is one plain line above (exit status 2), for the person
     * starting the server; from here on every line on stderr is in the
     * configured format, and nothing goes to stdout. */
    srv_log_setup((srv_log_level)cfg.log_level, (srv_log_format)cfg.log_format, 2);
    raise_fd_limit(cfg.max_connections);

    /* Debian's OpenBLAS starts threads of its own; the worker pool already
     * splits the rows, so each GEMM of a linear head runs on its caller's
     * thread and the cores are not oversubscribed. */
    gs_head_blas_threads(1);
    app.metrics = srv_metrics_new(GS_VERSION, GS_COMMIT);
    srv_pool *pool = app.metrics ? srv_pool_new(cfg.workers) : NULL;
    if (!pool) {
        srv_log(SRV_LOG_ERROR, "cannot start %zu worker threads", cfg.workers);
        srv_metrics_free(app.metrics);
        free(app.openapi);
        free(cert);
        free(key);
        return 1;
    }
    app.exec = srv_pool_exec(pool);
    app.pool = pool;
    if (install_signals()) {
        srv_log(SRV_LOG_ERROR, "cannot install signal handlers: %s", strerror(errno));
        srv_pool_free(pool);
        srv_metrics_free(app.metrics);
        free(app.openapi);
        free(cert);
        free(key);
        return 1;
    }
    srv_http *http = srv_http_start(&cfg, &app, cert, key, err, sizeof err);
    /* GnuTLS has parsed the PEM data during the start; it is not read again. */
    free(cert);
    free(key);
    if (!http) {
        srv_log(SRV_LOG_ERROR, "%s", err);
        srv_pool_free(pool);
        srv_metrics_free(app.metrics);
        free(app.openapi);
        return 1;
    }
    atomic_store(&app.state, SRV_READY);
    int v6 = strchr(cfg.host, ':') != NULL;
    srv_log_always("gradserve %s (%s): listening on %s://%s%s%s:%u (%zu HTTP threads, %zu "
                   "workers, queue limit %zu, max body %zu bytes, max numbers %zu, max "
                   "connections %zu, auth %s, openapi %s)",
                   GS_VERSION, GS_COMMIT, *cfg.tls_cert ? "https" : "http", v6 ? "[" : "",
                   cfg.host, v6 ? "]" : "", srv_http_port(http), cfg.threads, cfg.workers,
                   cfg.queue_limit, cfg.max_body, cfg.max_numbers, cfg.max_connections,
                   app.token ? "bearer token" : cfg.insecure ? "none (--insecure)" : "none",
                   openapi);

    int sig = wait_signal(-1);

    /* Draining: /readyz turns 503 so load balancers stop sending, no new
     * connection is accepted, and requests already received finish. A
     * second signal, or the timeout, cuts the wait short. */
    atomic_store(&app.state, SRV_DRAINING);
    srv_http_quiesce(http);
    size_t left = srv_http_in_flight(http);
    srv_log_always("%s: draining %zu request%s", strsignal(sig), left, left == 1 ? "" : "s");
    double deadline = now() + cfg.drain_timeout;
    while ((left = srv_http_in_flight(http)) > 0 && now() < deadline) {
        if (wait_signal(10)) {
            srv_log(SRV_LOG_WARN, "second signal, stopping now");
            break;
        }
    }
    if (left)
        srv_log(SRV_LOG_WARN, "%zu request%s cut short", left, left == 1 ? "" : "s");

    srv_http_stop(http);
    srv_pool_free(pool);
    srv_metrics_free(app.metrics);
    free(app.openapi);
    close(sig_pipe[0]);
    close(sig_pipe[1]);
    srv_log_always("stopped");
    return 0;
}
