/* log.c - the process's log on stderr: JSON or text lines, levels, the access line of every request, request ids. */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

/* Set once by srv_log_setup() before any other thread exists, read-only
 * afterwards: no lock is needed to read them. */
static srv_log_level log_level = SRV_LOG_INFO;
static srv_log_format log_format = SRV_LOG_JSON;
static int log_fd = 2;

static const char *const LEVEL_NAMES[] = {"debug", "info", "warn", "error", "off"};

/* One log line is built in a buffer of this size and written with one
 * write(2): pipes and O_APPEND files keep such writes whole (PIPE_BUF is
 * 4096 on Linux), so concurrent lines never interleave. Longer messages
 * are cut. */
#define LINE_MAX_LEN 4096

void srv_log_setup(srv_log_level level, srv_log_format format, int fd) {
    log_level = level;
    log_format = format;
    log_fd = fd;
}

int srv_log_enabled(srv_log_level level) { return level >= log_level && level < SRV_LOG_OFF; }

uint64_t srv_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* ==== a line buffer ========================================================= */

typedef struct {
    char b[LINE_MAX_LEN];
    size_t n;
} line;

static void put(line *l, const char *s, size_t n) {
    /* One byte is kept for the newline. */
    if (n > sizeof l->b - 1 - l->n) n = sizeof l->b - 1 - l->n;
    memcpy(l->b + l->n, s, n);
    l->n += n;
}

static void puts_(line *l, const char *s) { put(l, s, strlen(s)); }

__attribute__((format(printf, 2, 3))) static void putf(line *l, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) put(l, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* s as the inside of a JSON string. Bytes outside printable ASCII become
 * \u00XX: paths arrive percent-decoded and may hold any byte, and the line
 * must stay valid JSON (and valid UTF-8) whatever a client sent. */
static void put_json(line *l, const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            put(l, e, 2);
        } else if (c < 0x20 || c >= 0x7f) {
            putf(l, "\\u%04x", c);
        } else {
            put(l, (const char *)&c, 1);
        }
    }
}

/* s as a logfmt value: bare when it has no blank, quote, '=' or odd byte,
 * else quoted with the JSON escapes. */
static void put_text(line *l, const char *s) {
    int bare = *s != '\0';
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= ' ' || c >= 0x7f || c == '"' || c == '=' || c == '\\') bare = 0;
    }
    if (bare) {
        puts_(l, s);
        return;
    }
    put(l, "\"", 1);
    put_json(l, s);
    put(l, "\"", 1);
}

/* Decimal digits of v. */
static void put_u64(line *l, uint64_t v) {
    char d[20];
    size_t i = sizeof d;
    do {
        d[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(l, d + i, sizeof d - i);
}

/* v right-aligned in width digits, zero-padded (v < 10^width). */
static void put_u64_pad(line *l, uint64_t v, size_t width) {
    char d[20];
    for (size_t i = width; i-- > 0; v /= 10) d[i] = (char)('0' + v % 10);
    put(l, d, width);
}

/* The time as 2026-11-28T08:36:31.123Z. The part down to the second is
 * formatted once a second per thread (strftime is most of a line's cost). */
static void put_time(line *l) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    static _Thread_local time_t cached_sec = -1;
    static _Thread_local char cached[32];
    static _Thread_local size_t cached_len;
    if (t.tv_sec != cached_sec) {
        struct tm tm;
        gmtime_r(&t.tv_sec, &tm);
        cached_len = strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S.", &tm);
        cached_sec = t.tv_sec;
    }
    put(l, cached, cached_len);
    put_u64_pad(l, (uint64_t)t.tv_nsec / 1000000, 3);
    put(l, "Z", 1);
}

/* Starts a line: the time, the level and the message. */
static void begin(line *l, srv_log_level level, const char *msg) {
    l->n = 0;
    if (log_format == SRV_LOG_JSON) {
        puts_(l, "{\"time\":\"");
        put_time(l);
        puts_(l, "\",\"level\":\"");
        puts_(l, LEVEL_NAMES[level]);
        puts_(l, "\",\"msg\":\"");
        put_json(l, msg);
        puts_(l, "\"");
    } else {
        put_time(l);
        putf(l, " %-5s ", LEVEL_NAMES[level]);
        /* The message is free text: only control bytes are escaped. */
        for (const char *p = msg; *p; p++) {
            if ((unsigned char)*p < 0x20) putf(l, "\\x%02x", (unsigned char)*p);
            else put(l, p, 1);
        }
    }
}

/* Ends the line and writes it. */
static void end(line *l) {
    if (log_format == SRV_LOG_JSON) put(l, "}", 1);
    l->b[l->n++] = '\n'; /* put() kept room for it */
    const char *p = l->b;
    size_t n = l->n;
    while (n) {
        ssize_t w = write(log_fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return; /* nowhere to report it */
        p += w;
        n -= (size_t)w;
    }
}

/* Starts a field: ,"key": (JSON) or  key= (text). */
static void put_key(line *l, const char *key) {
    if (log_format == SRV_LOG_JSON) {
        put(l, ",\"", 2);
        puts_(l, key);
        put(l, "\":", 2);
    } else {
        put(l, " ", 1);
        puts_(l, key);
        put(l, "=", 1);
    }
}

static void put_field_str(line *l, const char *key, const char *value) {
    put_key(l, key);
    if (log_format == SRV_LOG_JSON) {
        put(l, "\"", 1);
        put_json(l, value);
        put(l, "\"", 1);
    } else {
        put_text(l, value);
    }
}

static void put_field_u64(line *l, const char *key, uint64_t v) {
    put_key(l, key);
    put_u64(l, v);
}

/* seconds as milliseconds with three decimals (rounded to the
 * microsecond), e.g. 1.234. */
static void put_field_ms(line *l, const char *key, double seconds) {
    put_key(l, key);
    double us = seconds * 1e6 + 0.5;
    uint64_t v = us > 0 && us < 1.8e19 ? (uint64_t)us : 0;
    put_u64(l, v / 1000);
    put(l, ".", 1);
    put_u64_pad(l, v % 1000, 3);
}

/* ==== messages ============================================================== */

static void vlog(srv_log_level level, const char *fmt, va_list ap) {
    char msg[LINE_MAX_LEN / 2];
    vsnprintf(msg, sizeof msg, fmt, ap);
    /* Messages passed through (libmicrohttpd's) may end with a newline. */
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
    line l;
    begin(&l, level, msg);
    end(&l);
}

void srv_log(srv_log_level level, const char *fmt, ...) {
    if (!srv_log_enabled(level)) return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
}

void srv_log_always(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog(SRV_LOG_INFO, fmt, ap);
    va_end(ap);
}

void srv_log_access(const srv_access *a) {
    if (!srv_log_enabled(SRV_LOG_INFO)) return;
    line l;
    begin(&l, SRV_LOG_INFO, "request");
    put_field_str(&l, "method", a->method ? a->method : "");
    put_field_str(&l, "path", a->path ? a->path : "");
    put_field_u64(&l, "status", (uint64_t)(a->status > 0 ? a->status : 0));
    put_field_u64(&l, "bytes_in", a->bytes_in);
    put_field_u64(&l, "bytes_out", a->bytes_out);
    put_field_ms(&l, "duration_ms", a->seconds);
    put_field_u64(&l, "rows", a->rows);
    put_field_u64(&l, "samples", a->samples);
    put_field_str(&l, "request_id", a->request_id ? a->request_id : "");
    if (a->remote && *a->remote) put_field_str(&l, "remote", a->remote);
    if (a->error) put_field_str(&l, "error", a->error);
    end(&l);
}

/* ==== request ids =========================================================== */

static int id_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("-_.:/+=@", c);
}

/* splitmix64's finaliser: a bijection on 64 bits, so distinct counters give
 * distinct ids, and ids do not reveal how many requests came before. */
static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void srv_request_id(char out[SRV_REQUEST_ID_MAX + 1], const char *given) {
    if (given) {
        size_t n = strlen(given);
        int ok = n > 0 && n <= SRV_REQUEST_ID_MAX;
        for (size_t i = 0; ok && i < n; i++) ok = id_char(given[i]) && given[i] != '\0';
        if (ok) {
            memcpy(out, given, n + 1);
            return;
        }
    }
    /* A random key per process (so replicas do not collide), then a
     * counter through the bijection. */
    static atomic_uint_fast64_t counter;
    static atomic_uint_fast64_t key;
    uint64_t k = atomic_load_explicit(&key, memory_order_relaxed);
    if (!k) {
        uint64_t r = 0;
        if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
            r = srv_now_ns() ^ ((uint64_t)getpid() << 32);
        r |= 1; /* never 0, the "unset" mark */
        uint64_t expected = 0;
        atomic_compare_exchange_strong(&key, &expected, r);
        k = atomic_load(&key);
    }
    uint64_t id = mix(k + atomic_fetch_add_explicit(&counter, 1, memory_order_relaxed));
    for (int i = 15; i >= 0; i--, id >>= 4) out[i] = "0123456789abcdef"[id & 15];
    out[16] = '\0';
}
