/* main.c - the gradserve process: configuration, start-up, signals, draining and shutdown. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gradserve.h"
#include "server.h"

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

/* ==== main ================================================================== */

int main(int argc, char **argv) {
    srv_config cfg;
    char err[512];
    int rc = srv_config_parse(&cfg, argc, argv, stdout, err, sizeof err);
    if (rc == 1) return 0;
    if (rc < 0) {
        fprintf(stderr, "gradserve: %s\n", err);
        return 2;
    }

    static srv_app app; /* static: the daemon's threads hold it to the end */
    api_limits_default(&app.limits);
    app.limits.max_body = cfg.max_body;
    app.limits.max_numbers = cfg.max_numbers;
    app.http_threads = cfg.threads;
    atomic_init(&app.state, SRV_STARTING);
    char openapi[PATH_MAX + 64];
    if (load_openapi(&cfg, &app, openapi, sizeof openapi, err, sizeof err)) {
        fprintf(stderr, "gradserve: %s\n", err);
        return 2;
    }

    /* Debian's OpenBLAS starts threads of its own; the worker pool already
     * splits the rows, so each GEMM of a linear head runs on its caller's
     * thread and the cores are not oversubscribed. */
    gs_head_blas_threads(1);
    srv_pool *pool = srv_pool_new(cfg.workers);
    if (!pool) {
        fprintf(stderr, "gradserve: cannot start %zu worker threads\n", cfg.workers);
        free(app.openapi);
        return 1;
    }
    app.exec = srv_pool_exec(pool);
    if (install_signals()) {
        fprintf(stderr, "gradserve: cannot install signal handlers: %s\n", strerror(errno));
        srv_pool_free(pool);
        free(app.openapi);
        return 1;
    }
    srv_http *http = srv_http_start(&cfg, &app, err, sizeof err);
    if (!http) {
        fprintf(stderr, "gradserve: %s\n", err);
        srv_pool_free(pool);
        free(app.openapi);
        return 1;
    }
    atomic_store(&app.state, SRV_READY);
    int v6 = strchr(cfg.host, ':') != NULL;
    fprintf(stderr, "gradserve %s: listening on http://%s%s%s:%u (%zu HTTP threads, %zu workers, "
            "max body %zu bytes, max numbers %zu, openapi %s)\n",
            GS_VERSION, v6 ? "[" : "", cfg.host, v6 ? "]" : "", srv_http_port(http),
            cfg.threads, cfg.workers, cfg.max_body, cfg.max_numbers, openapi);

    int sig = wait_signal(-1);

    /* Draining: /readyz turns 503 so load balancers stop sending, no new
     * connection is accepted, and requests already received finish. A
     * second signal, or the timeout, cuts the wait short. */
    atomic_store(&app.state, SRV_DRAINING);
    srv_http_quiesce(http);
    size_t left = srv_http_in_flight(http);
    fprintf(stderr, "gradserve: %s, draining %zu request%s\n", strsignal(sig), left,
            left == 1 ? "" : "s");
    double deadline = now() + cfg.drain_timeout;
    while ((left = srv_http_in_flight(http)) > 0 && now() < deadline) {
        if (wait_signal(10)) {
            fprintf(stderr, "gradserve: second signal, stopping now\n");
            break;
        }
    }
    if (left) fprintf(stderr, "gradserve: %zu request%s cut short\n", left, left == 1 ? "" : "s");

    srv_http_stop(http);
    srv_pool_free(pool);
    free(app.openapi);
    close(sig_pipe[0]);
    close(sig_pipe[1]);
    fprintf(stderr, "gradserve: stopped\n");
    return 0;
}
