/* config.c - the server's settings from defaults, GRADSERVE_* environment variables and flags. */
#include <errno.h>
#include <getopt.h>
#include <gnutls/gnutls.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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
typedef enum {
    K_STRING, /* non-empty text */
    K_PATH,   /* a file name; "" allowed (unset) */
    K_SECRET, /* like K_STRING, never echoed in messages or --help */
    K_COUNT,  /* an integer in [min, max] */
    K_SIZE,   /* an integer with k, m, g suffixes */
    K_BOOL,   /* a flag without value; env 1/true/yes/on or 0/false/no/off */
    K_ENUM    /* one of choices, stored as its index */
} kind;

typedef struct {
    const char *flag; /* without the leading dashes */
    const char *env;
    kind kind;
    uint64_t min, max; /* for numbers */
    size_t offset;     /* into srv_config */
    size_t width;      /* sizeof the field */
    const char *help;
    const char *def;   /* the default in words, where the field's value is not it */
    const char *const *choices; /* K_ENUM, NULL-terminated */
} setting;

#define FIELD(f) offsetof(srv_config, f), sizeof(((srv_config *)0)->f)

static const char *const LOG_LEVELS[] = {"debug", "info", "warn", "error", "off", NULL};
static const char *const LOG_FORMATS[] = {"json", "text", NULL};

static const setting SETTINGS[] = {
    {"host", "GRADSERVE_HOST", K_STRING, 0, 0, FIELD(host),
     "address (or name) to listen on; one that is not loopback needs a token or --insecure",
     NULL, NULL},
    {"port", "GRADSERVE_PORT", K_COUNT, 0, 65535, FIELD(port),
     "TCP port; 0 lets the kernel pick one (logged at start)", NULL, NULL},
    {"threads", "GRADSERVE_THREADS", K_COUNT, 1, 1024, FIELD(threads),
     "HTTP threads (one libmicrohttpd epoll loop each, the port shared with SO_REUSEPORT): "
     "read requests, compute small ones, send answers",
     NULL, NULL},
    {"workers", "GRADSERVE_WORKERS", K_COUNT, 1, 1024, FIELD(workers),
     "compute threads: each runs one larger computing request, and they split large ones by rows",
     NULL, NULL},
    {"queue-limit", "GRADSERVE_QUEUE_LIMIT", K_COUNT, 0, 1000000, FIELD(queue_limit),
     "computing requests admitted beyond workers (receiving, or waiting for a compute "
     "thread); more get 503 overloaded with Retry-After", NULL, NULL},
    {"max-body", "GRADSERVE_MAX_BODY", K_SIZE, 1, (uint64_t)1 << 40, FIELD(max_body),
     "largest request body in bytes (suffixes k, m, g: KiB, MiB, GiB)", NULL, NULL},
    {"max-numbers", "GRADSERVE_MAX_NUMBERS", K_SIZE, 1, (uint64_t)1 << 40, FIELD(max_numbers),
     "largest batch x samples x dims of one request", NULL, NULL},
    {"max-connections", "GRADSERVE_MAX_CONNECTIONS", K_COUNT, 1, 1000000,
     FIELD(max_connections),
     "open connections served at once; more wait in the kernel's listen queue", NULL, NULL},
    {"connection-timeout", "GRADSERVE_CONNECTION_TIMEOUT", K_COUNT, 1, 3600,
     FIELD(connection_timeout),
     "seconds a connection has to deliver each whole request (headers and body); slower "
     "ones (slowloris) are cut", NULL, NULL},
    {"idle-timeout", "GRADSERVE_IDLE_TIMEOUT", K_COUNT, 1, 3600, FIELD(idle_timeout),
     "seconds a connection may stay silent (an idle keep-alive) before it is closed",
     NULL, NULL},
    {"drain-timeout", "GRADSERVE_DRAIN_TIMEOUT", K_COUNT, 0, 3600, FIELD(drain_timeout),
     "seconds to let in-flight requests finish after SIGTERM/SIGINT", NULL, NULL},
    {"token", "GRADSERVE_TOKEN", K_SECRET, 0, 0, FIELD(token),
     "bearer token every path but /healthz and /readyz then needs "
     "(Authorization: Bearer <token>)", "none", NULL},
    {"token-file", "GRADSERVE_TOKEN_FILE", K_PATH, 0, 0, FIELD(token_file),
     "file holding the token (trailing newline ignored); instead of --token", "none", NULL},
    {"tls-cert", "GRADSERVE_TLS_CERT", K_PATH, 0, 0, FIELD(tls_cert),
     "PEM certificate (chain) file: serve HTTPS; needs --tls-key", "none: plain HTTP", NULL},
    {"tls-key", "GRADSERVE_TLS_KEY", K_PATH, 0, 0, FIELD(tls_key),
     "PEM private key file of --tls-cert", "none", NULL},
    {"insecure", "GRADSERVE_INSECURE", K_BOOL, 0, 1, FIELD(insecure),
     "allow listening on a non-loopback address without a token", "off", NULL},
    {"log-level", "GRADSERVE_LOG_LEVEL", K_ENUM, 0, 0, FIELD(log_level),
     "debug, info (one line per request), warn, error or off", NULL, LOG_LEVELS},
    {"log-format", "GRADSERVE_LOG_FORMAT", K_ENUM, 0, 0, FIELD(log_format),
     "json (one object per line) or text (logfmt-style)", NULL, LOG_FORMATS},
    {"openapi", "GRADSERVE_OPENAPI", K_PATH, 0, 0, FIELD(openapi),
     "file served at /openapi.yaml", "api/openapi.yaml, else <binary dir>/../api/openapi.yaml",
     NULL},
};
#define N_SETTINGS (sizeof SETTINGS / sizeof *SETTINGS)

static void defaults(srv_config *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->host, sizeof c->host, "127.0.0.1");
    c->port = 8080;
    c->threads = srv_cpu_count();
    c->workers = srv_cpu_count();
    c->queue_limit = 16;
    c->max_body = (size_t)64 << 20;
    c->max_numbers = (size_t)1 << 26;
    c->max_connections = 1024;
    c->connection_timeout = 30;
    c->idle_timeout = 60;
    c->drain_timeout = 10;
    c->log_level = SRV_LOG_INFO;
    c->log_format = SRV_LOG_JSON;
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

/* 1 if s is a usable token: visible ASCII only (RFC 6750's b64token is a
 * subset), so that it survives a header, a shell and an environment. */
static int token_chars_ok(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f) return 0;
    return 1;
}

/* Stores value into the setting's field of c; source names it in errors
 * ("--port" or "GRADSERVE_PORT"). value is NULL for a K_BOOL flag given
 * without one. */
static int apply(srv_config *c, const setting *s, const char *source, const char *value,
                 char *err, size_t errlen) {
    char *field = (char *)c + s->offset;
    if (s->kind == K_BOOL) {
        static const char *const yes[] = {"1", "true", "yes", "on"};
        static const char *const no[] = {"0", "false", "no", "off", ""};
        unsigned v = 2;
        if (!value) v = 1;
        for (size_t i = 0; value && v == 2 && i < 4; i++)
            if (!strcasecmp(value, yes[i])) v = 1;
        for (size_t i = 0; value && v == 2 && i < 5; i++)
            if (!strcasecmp(value, no[i])) v = 0;
        if (v == 2) {
            fail(err, errlen, "%s: expected 1, true, yes, on or 0, false, no, off, got \"%.64s\"",
                 source, value);
            return -1;
        }
        *(unsigned *)(void *)field = v;
        return 0;
    }
    if (s->kind == K_ENUM) {
        for (unsigned i = 0; s->choices[i]; i++) {
            if (!strcmp(value, s->choices[i])) {
                *(unsigned *)(void *)field = i;
                return 0;
            }
        }
        char list[128] = "";
        for (size_t i = 0; s->choices[i]; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                     s->choices[i]);
        fail(err, errlen, "%s: expected one of %s, got \"%.64s\"", source, list, value);
        return -1;
    }
    if (s->kind == K_SECRET) {
        /* The value is never repeated: error messages end up in logs. An
         * empty one is no token (GRADSERVE_TOKEN= in an env file, an
         * optional secret left unset); a non-loopback host still refuses
         * to start without one. */
        size_t n = strlen(value);
        if (n >= s->width || !token_chars_ok(value)) {
            fail(err, errlen, "%s: expected at most %zu visible ASCII characters (no blanks)",
                 source, s->width - 1);
            return -1;
        }
        memcpy(field, value, n + 1);
        return 0;
    }
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
        char def[96];
        if (s->def)
            snprintf(def, sizeof def, "%s", s->def);
        else if (s->kind == K_STRING)
            snprintf(def, sizeof def, "%s", field);
        else if (s->kind == K_ENUM)
            snprintf(def, sizeof def, "%s", s->choices[*(const unsigned *)(const void *)field]);
        else if (s->width == sizeof(unsigned))
            snprintf(def, sizeof def, "%u", *(const unsigned *)(const void *)field);
        else
            snprintf(def, sizeof def, "%zu", *(const size_t *)(const void *)field);
        fprintf(out, "  --%s%s  (%s, default %s)\n      %s\n", s->flag,
                s->kind == K_BOOL ? "" : " VALUE", s->env, def, s->help);
    }
    fprintf(out, "  --help\n      print this and exit\n\n"
                 "The default thread counts are this process's CPUs (%zu here). A bad value\n"
                 "is refused at start with exit status 2. Computing requests beyond\n"
                 "workers + queue-limit get 503 overloaded with Retry-After at once.\n"
                 "SIGINT or SIGTERM turns /readyz to 503, stops accepting connections, lets\n"
                 "in-flight requests finish (a second signal cuts that short) and exits 0.\n",
            d.threads);
}

/* ==== checks across settings =============================================== */

int srv_host_is_loopback(const char *host) {
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, NULL, &hints, &ai)) return 0;
    int loopback = ai != NULL;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        if (a->ai_family == AF_INET) {
            const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)a->ai_addr;
            if ((ntohl(in->sin_addr.s_addr) >> 24) != 127) loopback = 0;
        } else if (a->ai_family == AF_INET6) {
            const struct sockaddr_in6 *in6 =
                (const struct sockaddr_in6 *)(const void *)a->ai_addr;
            if (!IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) loopback = 0;
        } else {
            loopback = 0;
        }
    }
    freeaddrinfo(ai);
    return loopback;
}

/* Reads the token file into c->token. */
static int read_token_file(srv_config *c, const char *source, char *err, size_t errlen) {
    FILE *f = fopen(c->token_file, "r");
    if (!f) {
        fail(err, errlen, "%s: cannot read \"%.300s\": %s", source, c->token_file,
             strerror(errno));
        return -1;
    }
    char buf[SRV_TOKEN_MAX + 3];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    int bad = ferror(f);
    fclose(f);
    buf[n] = '\0';
    /* The newline an editor or `echo` leaves is not part of the token. */
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
                 buf[n - 1] == '\t'))
        buf[--n] = '\0';
    if (bad || n == 0 || n > SRV_TOKEN_MAX || strlen(buf) != n || !token_chars_ok(buf)) {
        fail(err, errlen, "%s: \"%.300s\" must hold one token of 1 to %d visible ASCII "
             "characters (no blanks)", source, c->token_file, SRV_TOKEN_MAX);
        return -1;
    }
    memcpy(c->token, buf, n + 1);
    return 0;
}

/* Checks that a file can be read and holds a PEM block naming what,
 * naming its setting: libmicrohttpd's own refusal would not say which file
 * is wrong. */
static int pem_file(const char *path, const char *what, const char *source, char *err,
                    size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fail(err, errlen, "%s: cannot read \"%.300s\": %s", source, path, strerror(errno));
        return -1;
    }
    char buf[256];
    int begin = 0, named = 0;
    while (fgets(buf, sizeof buf, f))
        if (!strncmp(buf, "-----BEGIN ", 11)) {
            begin = 1;
            if (strstr(buf, what)) named = 1;
        }
    fclose(f);
    if (!begin || !named) {
        fail(err, errlen, "%s: \"%.300s\" is not a PEM file holding a %s", source, path, what);
        return -1;
    }
    return 0;
}

static int index_of(const char *flag) {
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (!strcmp(SETTINGS[i].flag, flag)) return (int)i;
    return -1;
}

/* Where each setting came from: 0 default, 1 environment, 2 flag. */
static void source_name(const unsigned char *from, const char *flag, char *out, size_t n) {
    int i = index_of(flag);
    if (i >= 0 && from[i] == 1) snprintf(out, n, "%s", SETTINGS[i].env);
    else snprintf(out, n, "--%s", flag);
}

static int check(srv_config *c, const unsigned char *from, char *err, size_t errlen) {
    char a[48], b[48];
    int tok = index_of("token"), file = index_of("token-file");
    if (*c->token && *c->token_file) {
        /* A flag wins over the environment; two at the same level are
         * a contradiction to refuse, not to settle silently. */
        if (from[tok] == from[file]) {
            source_name(from, "token", a, sizeof a);
            source_name(from, "token-file", b, sizeof b);
            fail(err, errlen, "%s and %s are exclusive: give one of them", a, b);
            return -1;
        }
        if (from[tok] > from[file]) c->token_file[0] = '\0';
        else c->token[0] = '\0';
    }
    if (*c->token_file) {
        source_name(from, "token-file", a, sizeof a);
        if (read_token_file(c, a, err, errlen)) return -1;
    }
    if (!*c->tls_cert != !*c->tls_key) {
        source_name(from, *c->tls_cert ? "tls-cert" : "tls-key", a, sizeof a);
        fail(err, errlen, "%s needs %s too: HTTPS takes a certificate and its key", a,
             *c->tls_cert ? "--tls-key" : "--tls-cert");
        return -1;
    }
    if (*c->tls_cert) {
        source_name(from, "tls-cert", a, sizeof a);
        source_name(from, "tls-key", b, sizeof b);
        if (pem_file(c->tls_cert, "CERTIFICATE", a, err, errlen) ||
            pem_file(c->tls_key, "PRIVATE KEY", b, err, errlen))
            return -1;
        /* Loaded once here, by the GnuTLS that libmicrohttpd uses, so that
         * a key of another certificate (or an unreadable PEM) is a bad
         * value with a message, not a failure to start. */
        gnutls_certificate_credentials_t cred;
        if (gnutls_certificate_allocate_credentials(&cred) == GNUTLS_E_SUCCESS) {
            int rc = gnutls_certificate_set_x509_key_file(cred, c->tls_cert, c->tls_key,
                                                          GNUTLS_X509_FMT_PEM);
            gnutls_certificate_free_credentials(cred);
            if (rc < 0) {
                fail(err, errlen, "%s and %s: %s", a, b, gnutls_strerror(rc));
                return -1;
            }
        }
    }
    if (c->max_connections < c->threads) {
        source_name(from, "max-connections", a, sizeof a);
        fail(err, errlen, "%s: %zu is fewer than the %zu HTTP threads (each serves its share "
             "of the connections)", a, c->max_connections, c->threads);
        return -1;
    }
    if (!*c->token && !c->insecure && !srv_host_is_loopback(c->host)) {
        source_name(from, "host", a, sizeof a);
        fail(err, errlen, "%s: refusing to listen on %.64s, which is not a loopback address, "
             "without a token: anyone who can reach it could use it. Set --token, "
             "--token-file or GRADSERVE_TOKEN, or pass --insecure (GRADSERVE_INSECURE=1) "
             "when something else guards the network", a, c->host);
        return -1;
    }
    return 0;
}

int srv_config_parse(srv_config *c, int argc, char **argv, FILE *out, char *err,
                     size_t errlen) {
    unsigned char from[N_SETTINGS] = {0};
    defaults(c);
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const char *v = getenv(SETTINGS[i].env);
        if (!v) continue;
        if (apply(c, &SETTINGS[i], SETTINGS[i].env, v, err, errlen)) return -1;
        from[i] = 1;
    }

    struct option opts[N_SETTINGS + 2];
    for (size_t i = 0; i < N_SETTINGS; i++)
        opts[i] = (struct option){SETTINGS[i].flag,
                                  SETTINGS[i].kind == K_BOOL ? optional_argument
                                                             : required_argument,
                                  NULL, (int)i + 256};
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
        from[o - 256] = 2;
    }
    if (optind < argc) {
        fail(err, errlen, "unexpected argument \"%.64s\" (see --help)", argv[optind]);
        return -1;
    }
    return check(c, from, err, errlen);
}
