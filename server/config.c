/* config.c - the server's settings from defaults, GRADSERVE_* environment variables and flags. */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server.h"

size_t srv_cpu_count(void) {
    /* The affinity mask, not the machine's CPU count: in a container
     * limited with cpusets, or under taskset, only these CPUs are ours. */
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return (size_t)n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (size_t)n : 1;
}

/* ==== the settings table ==================================================== */

/* One row per setting, so that flags, environment variables, --help and
 * the error messages cannot disagree. */
typedef enum { K_STRING, K_PATH, K_COUNT, K_SIZE } kind;

typedef struct {
    const char *flag; /* without the leading dashes */
    const char *env;
    kind kind;
    uint64_t min, max; /* for numbers */
    size_t offset;     /* into srv_config */
    size_t width;      /* sizeof the field */
    const char *help;
    const char *def;   /* the default in words, where the field's value is not it */
} setting;

#define FIELD(f) offsetof(srv_config, f), sizeof(((srv_config *)0)->f)

static const setting SETTINGS[] = {
    {"host", "GRADSERVE_HOST", K_STRING, 0, 0, FIELD(host),
     "address (or name) to listen on", NULL},
    {"port", "GRADSERVE_PORT", K_COUNT, 0, 65535, FIELD(port),
     "TCP port; 0 lets the kernel pick one (logged at start)", NULL},
    {"threads", "GRADSERVE_THREADS", K_COUNT, 1, 1024, FIELD(threads),
     "HTTP threads (libmicrohttpd's epoll thread pool)", NULL},
    {"workers", "GRADSERVE_WORKERS", K_COUNT, 1, 1024, FIELD(workers),
     "compute threads one large request is split across", NULL},
    {"max-body", "GRADSERVE_MAX_BODY", K_SIZE, 1, (uint64_t)1 << 40, FIELD(max_body),
     "largest request body in bytes (suffixes k, m, g: KiB, MiB, GiB)", NULL},
    {"max-numbers", "GRADSERVE_MAX_NUMBERS", K_SIZE, 1, (uint64_t)1 << 40, FIELD(max_numbers),
     "largest batch x samples x dims of one request", NULL},
    {"drain-timeout", "GRADSERVE_DRAIN_TIMEOUT", K_COUNT, 0, 3600, FIELD(drain_timeout),
     "seconds to let in-flight requests finish after SIGTERM/SIGINT", NULL},
    {"openapi", "GRADSERVE_OPENAPI", K_PATH, 0, 0, FIELD(openapi),
     "file served at /openapi.yaml", "api/openapi.yaml, else <binary dir>/../api/openapi.yaml"},
};
#define N_SETTINGS (sizeof SETTINGS / sizeof *SETTINGS)

static void defaults(srv_config *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->host, sizeof c->host, "127.0.0.1");
    c->port = 8080;
    c->threads = srv_cpu_count();
    c->workers = srv_cpu_count();
    c->max_body = (size_t)64 << 20;
    c->max_numbers = (size_t)1 << 26;
    c->drain_timeout = 10;
}

__attribute__((format(printf, 3, 4))) static void fail(char *err, size_t errlen,
                                                       const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Parses a non-negative decimal integer, with a binary suffix for sizes.
 * strtoull alone would accept "-1" (as 2^64-1), " 5" and "5x". */
static int parse_number(const char *s, int suffixes, uint64_t *out) {
    if (*s < '0' || *s > '9') return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno == ERANGE) return -1;
    unsigned shift = 0;
    if (suffixes && *end) {
        switch (*end) {
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        default: return -1;
        }
        end++;
        if (*end == 'i' || *end == 'I') end++;
        if (*end == 'b' || *end == 'B') end++;
    }
    if (*end) return -1;
    if (shift && v > (UINT64_MAX >> shift)) return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

/* Stores value into the setting's field of c; source names it in errors
 * ("--port" or "GRADSERVE_PORT"). */
static int apply(srv_config *c, const setting *s, const char *source, const char *value,
                 char *err, size_t errlen) {
    char *field = (char *)c + s->offset;
    if (s->kind == K_STRING || s->kind == K_PATH) {
        size_t n = strlen(value);
        if ((s->kind == K_STRING && n == 0) || n >= s->width) {
            fail(err, errlen, "%s: expected a non-empty value shorter than %zu bytes, "
                 "got \"%.64s\"", source, s->width, value);
            return -1;
        }
        /* A host that does not resolve is a bad value like any other,
         * better refused here, naming its source, than at bind time. */
        if (s->offset == offsetof(srv_config, host)) {
            struct addrinfo hints = {0}, *ai = NULL;
            hints.ai_socktype = SOCK_STREAM;
            int rc = getaddrinfo(value, NULL, &hints, &ai);
            if (rc) {
                fail(err, errlen, "%s: cannot resolve \"%.64s\": %s", source, value,
                     gai_strerror(rc));
                return -1;
            }
            freeaddrinfo(ai);
        }
        memcpy(field, value, n + 1);
        return 0;
    }
    uint64_t v;
    if (parse_number(value, s->kind == K_SIZE, &v) || v < s->min || v > s->max) {
        fail(err, errlen, "%s: expected an integer from %llu to %llu%s, got \"%.64s\"", source,
             (unsigned long long)s->min, (unsigned long long)s->max,
             s->kind == K_SIZE ? " (k, m, g suffixes allowed)" : "", value);
        return -1;
    }
    /* Numeric fields are unsigned (port, seconds) or size_t (the rest). */
    if (s->width == sizeof(unsigned)) *(unsigned *)(void *)field = (unsigned)v;
    else *(size_t *)(void *)field = (size_t)v;
    return 0;
}

static void usage(FILE *out) {
    srv_config d;
    defaults(&d);
    fprintf(out, "usage: gradserve [options]\n\n"
                 "Serves the gradserve HTTP/JSON API. Every option can also be set by the\n"
                 "environment variable shown; a flag wins over the environment.\n\n");
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const setting *s = &SETTINGS[i];
        const char *field = (const char *)&d + s->offset;
        char def[64];
        if (s->def)
            snprintf(def, sizeof def, "%s", s->def);
        else if (s->kind == K_STRING)
            snprintf(def, sizeof def, "%s", field);
        else if (s->width == sizeof(unsigned))
            snprintf(def, sizeof def, "%u", *(const unsigned *)(const void *)field);
        else
            snprintf(def, sizeof def, "%zu", *(const size_t *)(const void *)field);
        fprintf(out, "  --%s VALUE  (%s, default %s)\n      %s\n", s->flag, s->env, def, s->help);
    }
    fprintf(out, "  --help\n      print this and exit\n\n"
                 "The default thread counts are this process's CPUs (%zu here).\n"
                 "SIGINT or SIGTERM stops accepting connections, lets in-flight requests\n"
                 "finish (a second signal cuts that short) and exits 0.\n",
            d.threads);
}

int srv_config_parse(srv_config *c, int argc, char **argv, FILE *out, char *err,
                     size_t errlen) {
    defaults(c);
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const char *v = getenv(SETTINGS[i].env);
        if (v && apply(c, &SETTINGS[i], SETTINGS[i].env, v, err, errlen)) return -1;
    }

    struct option opts[N_SETTINGS + 2];
    for (size_t i = 0; i < N_SETTINGS; i++)
        opts[i] = (struct option){SETTINGS[i].flag, required_argument, NULL, (int)i + 256};
    opts[N_SETTINGS] = (struct option){"help", no_argument, NULL, 'h'};
    opts[N_SETTINGS + 1] = (struct option){NULL, 0, NULL, 0};

    /* getopt keeps state in globals; reset it so parsing can run twice (the
     * tests do). opterr = 0: our messages, not getopt's. */
    optind = 0;
    opterr = 0;
    for (;;) {
        int prev = optind ? optind : 1;
        int o = getopt_long(argc, argv, ":h", opts, NULL);
        if (o == -1) break;
        if (o == 'h') {
            usage(out);
            return 1;
        }
        if (o == '?' || o == ':') {
            const char *arg = prev < argc ? argv[prev] : "?";
            fail(err, errlen, o == ':' ? "%s needs a value (see --help)"
                                       : "unknown option %s (see --help)", arg);
            return -1;
        }
        const setting *s = &SETTINGS[o - 256];
        char source[32];
        snprintf(source, sizeof source, "--%s", s->flag);
        if (apply(c, s, source, optarg, err, errlen)) return -1;
    }
    if (optind < argc) {
        fail(err, errlen, "unexpected argument \"%.64s\" (see --help)", argv[optind]);
        return -1;
    }
    return 0;
}
