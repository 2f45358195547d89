/* test_http.c - the server-level HTTP contract: routing, limits, media types, probes, connections, draining. */
#include <arpa/inet.h>
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* tests/run-http.sh starts the server under test and passes its base URL
 * in GRADSERVE_TEST_URL, and the binary in GRADSERVE_TEST_BIN: the cases
 * that need other flags (a small body limit) or kill the server (draining)
 * start their own from it. Nothing here asserts what the computing
 * endpoints compute; test_http_endpoints.c does. */

static const char *base_url(void) {
    const char *u = getenv("GRADSERVE_TEST_URL");
    return u ? u : "http://127.0.0.1:8080";
}

static const char *server_bin(void) {
    const char *b = getenv("GRADSERVE_TEST_BIN");
    return b ? b : "build/gradserve";
}

/* ==== a small curl client =================================================== */

typedef struct {
    long status;
    char *body;       /* NUL-terminated */
    size_t len;
    char type[128];   /* Content-Type */
    char allow[128];  /* Allow */
    char conn[64];    /* Connection */
    long connects;    /* new connections this request opened */
} resp;

static size_t on_body(char *d, size_t s, size_t n, void *arg) {
    resp *r = arg;
    char *p = realloc(r->body, r->len + s * n + 1);
    if (!p) return 0;
    r->body = p;
    memcpy(r->body + r->len, d, s * n);
    r->len += s * n;
    r->body[r->len] = '\0';
    return s * n;
}

/* Copies the value of header `name` from line into out, trimmed. */
static void grab(const char *line, size_t n, const char *name, char *out, size_t outlen) {
    size_t k = strlen(name);
    if (n <= k || strncasecmp(line, name, k) || line[k] != ':') return;
    const char *v = line + k + 1, *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ')) end--;
    snprintf(out, outlen, "%.*s", (int)(end - v), v);
}

static size_t on_header(char *d, size_t s, size_t n, void *arg) {
    resp *r = arg;
    grab(d, s * n, "Content-Type", r->type, sizeof r->type);
    grab(d, s * n, "Allow", r->allow, sizeof r->allow);
    grab(d, s * n, "Connection", r->conn, sizeof r->conn);
    return s * n;
}

/* One request on handle h (reusing its connection when it can). body may
 * be NULL (no body); headers are "Name: value" strings, NULL-terminated. */
static resp request_on(CURL *h, const char *method, const char *url, const char *body,
                       long len, const char *const *headers) {
    resp r;
    memset(&r, 0, sizeof r);
    struct curl_slist *hd = NULL;
    for (size_t i = 0; headers && headers[i]; i++) hd = curl_slist_append(hd, headers[i]);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(h, CURLOPT_NOBODY, !strcmp(method, "HEAD") ? 1L : 0L);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, len);
    } else if (!strcmp(method, "GET")) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST,
                     strcmp(method, "GET") && strcmp(method, "HEAD") && strcmp(method, "POST")
                         ? method : NULL);
    CURLcode rc = curl_easy_perform(h);
    curl_slist_free_all(hd);
    ck_assert_msg(rc == CURLE_OK, "%s %s: %s", method, url, curl_easy_strerror(rc));
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &r.connects);
    if (!r.body) r.body = calloc(1, 1);
    return r;
}

static resp request(const char *method, const char *base, const char *path, const char *body,
                    const char *const *headers) {
    char url[512];
    snprintf(url, sizeof url, "%s%s", base, path);
    CURL *h = curl_easy_init();
    resp r = request_on(h, method, url, body, body ? (long)strlen(body) : 0, headers);
    curl_easy_cleanup(h);
    return r;
}

/* Asserts r is a JSON error of API.md section 0 with this status and code. */
static void assert_error(const resp *r, long status, const char *code) {
    ck_assert_msg(r->status == status, "status %ld, want %ld (%s)", r->status, status, r->body);
    ck_assert_str_eq(r->type, "application/json");
    json_error_t e;
    json_t *j = json_loads(r->body, 0, &e);
    ck_assert_msg(j != NULL, "not JSON: %s (%s)", r->body, e.text);
    json_t *err = json_object_get(j, "error");
    ck_assert_msg(json_is_object(err), "no error object: %s", r->body);
    ck_assert_msg(json_is_string(json_object_get(err, "message")), "no message: %s", r->body);
    const char *got = json_string_value(json_object_get(err, "code"));
    ck_assert_msg(got != NULL, "no code: %s", r->body);
    if (code) ck_assert_str_eq(got, code);
    json_decref(j);
}

/* ==== raw sockets =========================================================== */

/* Connects to base's host:port (http://127.0.0.1:N) with a receive timeout. */
static int connect_to(const char *base) {
    unsigned port = 0;
    ck_assert_msg(sscanf(base, "http://127.0.0.1:%u", &port) == 1, "base URL %s", base);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static void send_all(int fd, const char *s) {
    size_t n = strlen(s);
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        ck_assert_msg(w > 0, "send: %s", strerror(errno));
        s += w;
        n -= (size_t)w;
    }
}

/* Reads until the peer closes, the timeout, or a complete response (headers
 * and Content-Length bytes of body) has arrived. Returns a malloc'd string. */
static char *read_response(int fd) {
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    for (;;) {
        if (n + 1 >= cap) b = realloc(b, cap *= 2);
        ssize_t r = recv(fd, b + n, cap - n - 1, 0);
        if (r <= 0) break;
        n += (size_t)r;
        b[n] = '\0';
        char *end = strstr(b, "\r\n\r\n");
        if (!end) continue;
        char *cl = strcasestr(b, "\r\nContent-Length:");
        if (cl && cl < end && n >= (size_t)(end + 4 - b) + strtoul(cl + 17, NULL, 10)) break;
    }
    b[n] = '\0';
    return b;
}

/* ==== servers of our own ==================================================== */

typedef struct {
    pid_t pid;
    int err;          /* the read end of its stderr */
    char url[64];
    char log[8192];   /* its stderr so far */
    size_t loglen;
} server;

/* Reads what the server wrote to stderr for up to ms milliseconds (until
 * EOF when ms < 0). */
static void read_log(server *s, int ms) {
    for (;;) {
        struct pollfd p = {s->err, POLLIN, 0};
        if (poll(&p, 1, ms < 0 ? 30000 : ms) <= 0) return;
        ssize_t r = read(s->err, s->log + s->loglen, sizeof s->log - 1 - s->loglen);
        if (r <= 0) return;
        s->loglen += (size_t)r;
        s->log[s->loglen] = '\0';
        if (ms >= 0) return;
    }
}

/* Runs the server binary with args (NULL-terminated) and extra environment
 * ("NAME=value", NULL-terminated). It dies with this process (a failing
 * test must not leave servers behind). */
static void spawn(server *s, const char *const *args, const char *const *env, int out_fd) {
    memset(s, 0, sizeof *s);
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t parent = getpid();
    s->pid = fork();
    ck_assert_int_ge(s->pid, 0);
    if (s->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        dup2(p[1], 2);
        if (out_fd >= 0) dup2(out_fd, 1);
        close(p[0]);
        close(p[1]);
        for (size_t i = 0; env && env[i]; i++) putenv((char *)env[i]);
        char *argv[32] = {(char *)server_bin()};
        for (size_t i = 0; args[i] && i < 30; i++) argv[i + 1] = (char *)args[i];
        execv(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    s->err = p[0];
}

/* Starts a server on a kernel-chosen port and waits for its start-up line. */
static void start(server *s, const char *const *args, const char *const *env) {
    const char *base[24] = {"--host", "127.0.0.1", "--port", "0"};
    size_t n = 4;
    for (size_t i = 0; args && args[i] && n < 23; i++) base[n++] = args[i];
    base[n] = NULL;
    spawn(s, base, env, -1);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        read_log(s, 200);
        const char *at = strstr(s->log, "listening on http://127.0.0.1:");
        if (at && strchr(at, '\n')) {
            unsigned port = (unsigned)atoi(at + strlen("listening on http://127.0.0.1:"));
            snprintf(s->url, sizeof s->url, "http://127.0.0.1:%u", port);
            return;
        }
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid)
            ck_abort_msg("%s exited at start: %s", server_bin(), s->log);
        if (t.tv_sec - t0.tv_sec > 20) ck_abort_msg("no start-up line: %s", s->log);
    }
}

/* Waits up to seconds for the server to exit; returns its wait status, or
 * -1 (after killing it) when it did not. */
static int wait_exit(server *s, int seconds) {
    for (int i = 0; i < seconds * 100; i++) {
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            read_log(s, -1);
            close(s->err);
            return status;
        }
        read_log(s, 0);
        usleep(10000);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    close(s->err);
    return -1;
}

static void stop(server *s) {
    kill(s->pid, SIGTERM);
    int status = wait_exit(s, 20);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "server exit status %d: %s", status, s->log);
}

/* ==== routing =============================================================== */

START_TEST(unknown_path_is_404_json) {
    static const char *const paths[] = {"/", "/nope", "/v1/nope", "/v1/entropy/", "/v2/info"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        resp r = request("GET", base_url(), paths[i], NULL, NULL);
        assert_error(&r, 404, "not_found");
        free(r.body);
        r = request("POST", base_url(), paths[i], "{}", NULL);
        assert_error(&r, 404, "not_found");
        free(r.body);
    }
}
END_TEST

START_TEST(wrong_method_is_405_with_allow) {
    static const struct {
        const char *method, *path, *allow;
    } cases[] = {
        {"GET", "/v1/entropy", "POST"},
        {"PUT", "/v1/sac/discrete/actor", "POST"},
        {"DELETE", "/v1/batch", "POST"},
        {"POST", "/healthz", "GET, HEAD"},
        {"POST", "/v1/info", "GET, HEAD"},
        {"PUT", "/openapi.yaml", "GET, HEAD"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        resp r = request(cases[i].method, base_url(), cases[i].path,
                         strcmp(cases[i].method, "GET") ? "{}" : NULL, NULL);
        assert_error(&r, 405, "method_not_allowed");
        ck_assert_str_eq(r.allow, cases[i].allow);
        free(r.body);
    }
}
END_TEST

START_TEST(invalid_json_is_a_json_error) {
    resp r = request("POST", base_url(), "/v1/entropy", "{\"distribution\": [1, 2", NULL);
    ck_assert_int_ge(r.status, 400);
    ck_assert_int_lt(r.status, 500);
    assert_error(&r, r.status, NULL);
    free(r.body);
}
END_TEST

/* ==== probes, info, spec ==================================================== */

START_TEST(healthz_and_readyz) {
    resp r = request("GET", base_url(), "/healthz", NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.type, "application/json");
    ck_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    free(r.body);
    r = request("GET", base_url(), "/readyz", NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.type, "application/json");
    ck_assert_str_eq(r.body, "{\"status\":\"ready\"}");
    free(r.body);
    r = request("HEAD", base_url(), "/healthz", NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.type, "application/json");
    ck_assert_uint_eq(r.len, 0);
    free(r.body);
}
END_TEST

START_TEST(info_is_json) {
    resp r = request("GET", base_url(), "/v1/info", NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.type, "application/json");
    json_error_t e;
    json_t *j = json_loads(r.body, 0, &e);
    ck_assert_msg(json_is_object(j), "not a JSON object: %s", r.body);
    ck_assert_str_eq(json_string_value(json_object_get(j, "name")), "gradserve");
    json_t *lim = json_object_get(j, "limits");
    ck_assert(json_is_integer(json_object_get(lim, "max_body")));
    ck_assert(json_is_integer(json_object_get(lim, "max_numbers")));
    json_decref(j);
    free(r.body);
}
END_TEST

/* The default lookup from the working directory (run-http.sh runs from the
 * checkout): the bytes of api/openapi.yaml, or a 404 while there is none. */
START_TEST(openapi_is_the_file) {
    size_t len = 0;
    char *want = NULL;
    FILE *f = fopen("api/openapi.yaml", "rb");
    if (f) {
        want = malloc(1 << 22);
        len = fread(want, 1, 1 << 22, f);
        fclose(f);
    }
    resp r = request("GET", base_url(), "/openapi.yaml", NULL, NULL);
    if (want) {
        ck_assert_int_eq(r.status, 200);
        ck_assert_str_eq(r.type, "application/yaml");
        ck_assert_uint_eq(r.len, len);
        ck_assert(!memcmp(r.body, want, len));
    } else {
        assert_error(&r, 404, "not_found");
    }
    free(want);
    free(r.body);
}
END_TEST

/* ==== limits and media types ================================================ */

/* Headers announcing a gigabyte, and no body: the 413 must come back
 * without the server waiting for (or reading) the body. */
START_TEST(huge_content_length_is_413_before_the_body) {
    int fd = connect_to(base_url());
    ck_assert_int_ge(fd, 0);
    send_all(fd, "POST /v1/entropy HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                 "Content-Length: 1073741824\r\n\r\n");
    char *got = read_response(fd);
    ck_assert_msg(!strncmp(got, "HTTP/1.1 413 ", 13), "got: %.200s", got);
    ck_assert_ptr_nonnull(strcasestr(got, "\r\nContent-Type: application/json"));
    ck_assert_ptr_nonnull(strstr(got, "\"payload_too_large\""));
    free(got);
    /* And the connection is closed rather than left waiting for a body. */
    char c;
    ck_assert_int_eq((int)recv(fd, &c, 1, 0), 0);
    close(fd);
}
END_TEST

/* 64 KiB of spaces around an object: a body that really arrives. */
static char *padded_body(size_t n) {
    char *b = malloc(n + 1);
    memset(b, ' ', n);
    memcpy(b, "{}", 2);
    b[n] = '\0';
    return b;
}

START_TEST(bodies_over_a_small_limit_are_413) {
    /* The environment says 5000, the flag 1000: the flag wins. */
    const char *args[] = {"--max-body", "1000", "--threads", "1", "--workers", "1", NULL};
    const char *env[] = {"GRADSERVE_MAX_BODY=5000", "GRADSERVE_MAX_NUMBERS=12345", NULL};
    server s;
    start(&s, args, env);

    resp r = request("GET", s.url, "/v1/info", NULL, NULL);
    ck_assert_msg(strstr(r.body, "\"max_body\":1000"), "%s", r.body);
    ck_assert_msg(strstr(r.body, "\"max_numbers\":12345"), "%s", r.body);
    free(r.body);

    char url[128];
    snprintf(url, sizeof url, "%s/v1/entropy", s.url);
    CURL *h = curl_easy_init();
    char *at = padded_body(1000), *over = padded_body(1001), *big = padded_body(50000);
    /* At the limit: read and handed to the api (whatever it answers). */
    r = request_on(h, "POST", url, at, 1000, NULL);
    ck_assert_msg(r.status != 413, "a body of exactly the limit was refused");
    free(r.body);
    /* One byte over, with Content-Length: refused from the headers. */
    r = request_on(h, "POST", url, over, 1001, NULL);
    assert_error(&r, 413, "payload_too_large");
    free(r.body);
    /* Chunked, so the server only learns the size by counting. */
    const char *chunked[] = {"Transfer-Encoding: chunked", NULL};
    r = request_on(h, "POST", url, big, 50000, chunked);
    assert_error(&r, 413, "payload_too_large");
    free(r.body);
    /* A chunked body within the limit is accepted. */
    r = request_on(h, "POST", url, at, 900, chunked);
    ck_assert_msg(r.status != 413, "a chunked body under the limit was refused");
    free(r.body);
    curl_easy_cleanup(h);
    free(at);
    free(over);
    free(big);
    stop(&s);
}
END_TEST

START_TEST(multipart_and_compressed_bodies_are_415) {
    const char *multipart[] = {"Content-Type: multipart/form-data; boundary=x", NULL};
    resp r = request("POST", base_url(), "/v1/entropy",
                     "--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n{}\r\n--x--\r\n",
                     multipart);
    assert_error(&r, 415, "unsupported_media_type");
    free(r.body);

    /* curl's own form encoder, as a user of -F would send it. */
    CURL *h = curl_easy_init();
    curl_mime *m = curl_mime_init(h);
    curl_mimepart *part = curl_mime_addpart(m);
    curl_mime_name(part, "body");
    curl_mime_data(part, "{}", CURL_ZERO_TERMINATED);
    char url[512];
    snprintf(url, sizeof url, "%s/v1/entropy", base_url());
    curl_easy_setopt(h, CURLOPT_MIMEPOST, m);
    resp r2 = request_on(h, "POST", url, NULL, 0, NULL);
    assert_error(&r2, 415, "unsupported_media_type");
    free(r2.body);
    curl_mime_free(m);
    curl_easy_cleanup(h);

    static const char *const encodings[] = {"Content-Encoding: gzip", "Content-Encoding: br",
                                            "Content-Encoding: deflate, identity"};
    for (size_t i = 0; i < 3; i++) {
        const char *hd[] = {encodings[i], NULL};
        r = request("POST", base_url(), "/v1/entropy", "{}", hd);
        assert_error(&r, 415, "unsupported_media_type");
        free(r.body);
    }
    /* A header sent twice counts twice: the second one is not hidden by
     * the first (found by an audit: only the first was read). */
    static const char *const twice[][3] = {
        {"Content-Encoding: identity", "Content-Encoding: gzip", NULL},
        {"Content-Type: application/json", "Content-Type: multipart/form-data; boundary=x", NULL}};
    for (size_t i = 0; i < 2; i++) {
        r = request("POST", base_url(), "/v1/entropy", "{}", twice[i]);
        assert_error(&r, 415, "unsupported_media_type");
        free(r.body);
    }
    /* identity is no encoding at all, and form encoding (curl -d) is read
     * as JSON: neither is refused for its headers. */
    const char *ok[] = {"Content-Encoding: identity",
                        "Content-Type: application/x-www-form-urlencoded", NULL};
    r = request("POST", base_url(), "/v1/entropy", "{}", ok);
    ck_assert_int_ne(r.status, 415);
    free(r.body);
}
END_TEST

/* ==== connections =========================================================== */

START_TEST(keep_alive_reuses_the_connection) {
    CURL *h = curl_easy_init();
    char url[512];
    static const char *const paths[] = {"/healthz", "/v1/info", "/nope", "/v1/entropy"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(url, sizeof url, "%s%s", base_url(), paths[i]);
        int post = i == 3;
        resp r = request_on(h, post ? "POST" : "GET", url, post ? "[" : NULL, post ? 1 : 0, NULL);
        /* The first request opens the connection, the others ride on it. */
        ck_assert_msg(r.connects == (i == 0), "%s opened %ld connections", paths[i], r.connects);
        ck_assert_msg(strcasecmp(r.conn, "close"), "%s closed the connection", paths[i]);
        free(r.body);
    }
    curl_easy_cleanup(h);
}
END_TEST

typedef struct {
    int id;
    int answered, wrong;
    char first_wrong[256];
} hammer_arg;

static void *hammer(void *arg) {
    hammer_arg *a = arg;
    CURL *h = curl_easy_init();
    static const struct {
        const char *method, *path, *body;
        long status;
    } mix[] = {
        {"GET", "/healthz", NULL, 200},
        {"GET", "/v1/info", NULL, 200},
        {"GET", "/nope", NULL, 404},
        {"POST", "/v1/entropy", "{\"distribution\":", 400},
        {"GET", "/v1/entropy", NULL, 405},
    };
    for (int k = 0; k < 50; k++) {
        size_t m = (size_t)(a->id + k) % (sizeof mix / sizeof *mix);
        char url[512];
        snprintf(url, sizeof url, "%s%s", base_url(), mix[m].path);
        resp r;
        memset(&r, 0, sizeof r);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, &r);
        curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
        if (mix[m].body) {
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, mix[m].body);
        } else {
            curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        }
        CURLcode rc = curl_easy_perform(h);
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        if (rc == CURLE_OK) a->answered++;
        if (rc != CURLE_OK || status != mix[m].status || strcmp(r.type, "application/json")) {
            if (!a->wrong++)
                snprintf(a->first_wrong, sizeof a->first_wrong, "%s %s: %s, status %ld, %s",
                         mix[m].method, mix[m].path, curl_easy_strerror(rc), status, r.type);
        }
        free(r.body);
    }
    curl_easy_cleanup(h);
    return NULL;
}

START_TEST(concurrent_requests_are_all_answered) {
    enum { THREADS = 8 };
    pthread_t t[THREADS];
    hammer_arg a[THREADS];
    memset(a, 0, sizeof a);
    for (int i = 0; i < THREADS; i++) {
        a[i].id = i;
        ck_assert_int_eq(pthread_create(&t[i], NULL, hammer, &a[i]), 0);
    }
    int answered = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        ck_assert_msg(!a[i].wrong, "thread %d: %d wrong, first: %s", i, a[i].wrong,
                      a[i].first_wrong);
        answered += a[i].answered;
    }
    ck_assert_int_eq(answered, THREADS * 50);
}
END_TEST

/* ==== the process: flags, spec file, draining =============================== */

START_TEST(bad_flags_exit_2_and_help_lists_them) {
    static const char *const bad[][3] = {{"--port", "99999", NULL},
                                         {"--threads", "lots", NULL},
                                         {"--nope", NULL, NULL},
                                         {"--openapi", "/nonexistent/openapi.yaml", NULL}};
    for (size_t i = 0; i < 4; i++) {
        server s;
        spawn(&s, (const char *const *)bad[i], NULL, -1);
        int status = wait_exit(&s, 20);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 2, "%s: status %d", bad[i][0],
                      status);
        ck_assert_msg(strstr(s.log, "gradserve: ") && strstr(s.log, bad[i][0] + 2),
                      "%s: message \"%s\"", bad[i][0], s.log);
    }
    int out[2];
    ck_assert_int_eq(pipe(out), 0);
    const char *help[] = {"--help", NULL};
    server s;
    spawn(&s, help, NULL, out[1]);
    close(out[1]);
    int status = wait_exit(&s, 20);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    char text[8192];
    ssize_t n = read(out[0], text, sizeof text - 1);
    close(out[0]);
    ck_assert_int_gt(n, 0);
    text[n] = '\0';
    static const char *const want[] = {"--host", "--port", "--threads", "--workers",
                                       "--max-body", "--max-numbers", "--openapi",
                                       "GRADSERVE_PORT", "GRADSERVE_MAX_BODY"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        ck_assert_msg(strstr(text, want[i]), "--help lacks %s", want[i]);
    ck_assert_uint_eq(s.loglen, 0); /* nothing on stderr */
}
END_TEST

START_TEST(openapi_flag_serves_that_file) {
    char path[] = "/tmp/gradserve-openapi-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    const char spec[] = "openapi: 3.0.3\ninfo: {title: test, version: '1'}\npaths: {}\n";
    ck_assert_int_eq((int)write(fd, spec, sizeof spec - 1), (int)sizeof spec - 1);
    close(fd);
    char env[64 + sizeof path];
    snprintf(env, sizeof env, "GRADSERVE_OPENAPI=%s", path);
    const char *envs[] = {env, NULL};
    server s;
    start(&s, NULL, envs);
    resp r = request("GET", s.url, "/openapi.yaml", NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.type, "application/yaml");
    ck_assert_str_eq(r.body, spec);
    free(r.body);
    stop(&s);
    unlink(path);
}
END_TEST

/* Sends the headers of a POST whose body is still to come and waits for
 * the "100 Continue" that libmicrohttpd sends once the request has been
 * routed: from then on the request is in flight. */
static int request_in_flight(const char *url) {
    int fd = connect_to(url);
    ck_assert_int_ge(fd, 0);
    send_all(fd, "POST /v1/entropy HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\n"
                 "Content-Length: 5\r\n\r\n");
    char buf[64] = "";
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    ck_assert_msg(n > 0 && !strncmp(buf, "HTTP/1.1 100", 12), "got %.60s", buf);
    return fd;
}

/* SIGTERM: /readyz turns 503 draining, computing requests on open
 * connections get 503 shutting_down, new connections are refused, and the
 * request already received is still answered before the process exits 0. */
START_TEST(sigterm_drains_then_exits_0) {
    server s;
    start(&s, NULL, NULL);
    CURL *h = curl_easy_init();
    char readyz[128], entropy[128];
    snprintf(readyz, sizeof readyz, "%s/readyz", s.url);
    snprintf(entropy, sizeof entropy, "%s/v1/entropy", s.url);
    resp r = request_on(h, "GET", readyz, NULL, 0, NULL);
    ck_assert_int_eq(r.status, 200);
    free(r.body);

    int fd = request_in_flight(s.url);
    ck_assert_int_eq(kill(s.pid, SIGTERM), 0);
    for (int i = 0;; i++) {
        r = request_on(h, "GET", readyz, NULL, 0, NULL);
        if (r.status == 503) break;
        free(r.body);
        ck_assert_msg(i < 500, "/readyz still answers 200 five seconds after SIGTERM");
        usleep(10000);
    }
    ck_assert_str_eq(r.body, "{\"status\":\"draining\"}");
    ck_assert_int_eq(r.connects, 0);
    free(r.body);
    r = request_on(h, "POST", entropy, "{}", 2, NULL);
    assert_error(&r, 503, "shutting_down");
    free(r.body);
    curl_easy_cleanup(h);

    int fresh = connect_to(s.url);
    ck_assert_msg(fresh < 0 && errno == ECONNREFUSED, "a new connection was accepted");

    /* The request in flight gets its answer (the api's, not a 503). */
    send_all(fd, "[1,2]");
    char *got = read_response(fd);
    ck_assert_msg(!strncmp(got, "HTTP/1.1 4", 10) || !strncmp(got, "HTTP/1.1 2", 10),
                  "in-flight request got: %.200s", got);
    ck_assert_ptr_null(strstr(got, "shutting_down"));
    free(got);
    close(fd);

    int status = wait_exit(&s, 20);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status %d: %s", status,
                  s.log);
    /* At least the request above was in flight (the /readyz before it may
     * still be counted if its thread had not finished with it). */
    ck_assert_msg(strstr(s.log, "draining ") && !strstr(s.log, "draining 0 ") &&
                  !strstr(s.log, "cut short"), "log: %s", s.log);
}
END_TEST

/* A request that never completes holds the exit only for --drain-timeout;
 * a second signal cuts even that short. */
START_TEST(drain_timeout_and_second_signal) {
    const char *args[] = {"--drain-timeout", "1", NULL};
    server s;
    start(&s, args, NULL);
    int fd = request_in_flight(s.url);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    kill(s.pid, SIGTERM);
    int status = wait_exit(&s, 20);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d: %s", status, s.log);
    double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    ck_assert_msg(dt > 0.9 && dt < 10, "exited after %.2f s", dt);
    ck_assert_msg(strstr(s.log, "1 request cut short"), "log: %s", s.log);
    close(fd);

    const char *slow[] = {"--drain-timeout", "60", NULL};
    start(&s, slow, NULL);
    fd = request_in_flight(s.url);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    kill(s.pid, SIGTERM);
    usleep(200000);
    kill(s.pid, SIGINT);
    status = wait_exit(&s, 20);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d: %s", status, s.log);
    dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    ck_assert_msg(dt < 10, "exited after %.2f s despite a second signal", dt);
    ck_assert_msg(strstr(s.log, "second signal"), "log: %s", s.log);
    close(fd);
}
END_TEST

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("server");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, unknown_path_is_404_json);
    tcase_add_test(tc, wrong_method_is_405_with_allow);
    tcase_add_test(tc, invalid_json_is_a_json_error);
    tcase_add_test(tc, healthz_and_readyz);
    tcase_add_test(tc, info_is_json);
    tcase_add_test(tc, openapi_is_the_file);
    tcase_add_test(tc, huge_content_length_is_413_before_the_body);
    tcase_add_test(tc, multipart_and_compressed_bodies_are_415);
    tcase_add_test(tc, keep_alive_reuses_the_connection);
    tcase_add_test(tc, concurrent_requests_are_all_answered);
    suite_add_tcase(s, tc);
    TCase *own = tcase_create("own_servers");
    tcase_set_timeout(own, 90);
    tcase_add_test(own, bodies_over_a_small_limit_are_413);
    tcase_add_test(own, bad_flags_exit_2_and_help_lists_them);
    tcase_add_test(own, openapi_flag_serves_that_file);
    tcase_add_test(own, sigterm_drains_then_exits_0);
    tcase_add_test(own, drain_timeout_and_second_signal);
    suite_add_tcase(s, own);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    curl_global_cleanup();
    return failed ? 1 : 0;
}
