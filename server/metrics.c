/* metrics.c - counters, gauges and the latency histogram, lock-free, rendered in the Prometheus text format. */
#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

/* ==== labels ================================================================ */

/* Every path of the routing table, and "other" last: one series per path a
 * client can name would let anyone grow the server's memory (and the
 * scraper's) with made-up URLs. */
static const char *const PATHS[] = {
    "/v1/entropy", "/v1/sample", "/v1/log_prob", "/v1/reparam", "/v1/score",
    "/v1/sac/discrete/actor", "/v1/sac/discrete/policy", "/v1/sac/continuous/actor",
    "/v1/batch", "/healthz", "/readyz", "/metrics", "/v1/info", "/openapi.yaml", "other"};
#define N_PATHS (sizeof PATHS / sizeof *PATHS)

/* The statuses this server answers with; anything else counts as "other". */
static const int STATUSES[] = {200, 400, 401, 404, 405, 413, 415, 422, 500, 503};
#define N_STATUSES (sizeof STATUSES / sizeof *STATUSES + 1)

/* Latency buckets from 100 µs to 10 s, about three per decade. */
static const double BUCKETS[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                 0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,     10};
static const char *const BUCKET_LABELS[] = {"0.0001", "0.00025", "0.0005", "0.001", "0.0025",
                                            "0.005",  "0.01",    "0.025",  "0.05",  "0.1",
                                            "0.25",   "0.5",     "1",      "2.5",   "5",
                                            "10"};
#define N_BUCKETS (sizeof BUCKETS / sizeof *BUCKETS + 1) /* + the +Inf bucket */

static const char *const REASONS[SRV_REJECT_N] = {"overload", "too_large", "unauthorized",
                                                  "draining", "timeout"};

/* ==== shards ================================================================ */

/* Counters are split into shards, one per thread (modulo SHARDS): each
 * HTTP thread adds to its own cache lines with relaxed atomic adds, so no
 * line bounces between cores on the request path, and no lock is taken.
 * A scrape sums the shards; relaxed loads may miss increments made during
 * the scrape, which the next scrape sees. */
#define SHARDS 16

typedef struct {
    _Alignas(64) atomic_uint_fast64_t requests[N_PATHS][N_STATUSES];
    atomic_uint_fast64_t buckets[N_PATHS][N_BUCKETS]; /* not cumulative */
    atomic_uint_fast64_t sum_ns[N_PATHS];
    atomic_uint_fast64_t bytes_in, bytes_out, rows, samples;
    atomic_uint_fast64_t rejected[SRV_REJECT_N];
} shard;

struct srv_metrics {
    srv_gauges g;
    shard *shards; /* SHARDS of them, 64-byte aligned */
    char version[64], commit[64];
    double start_time; /* seconds since the epoch */
};

static _Thread_local int my_shard = -1;
static atomic_uint next_shard;

static shard *this_shard(srv_metrics *m) {
    if (my_shard < 0) my_shard = (int)(atomic_fetch_add(&next_shard, 1) % SHARDS);
    return &m->shards[my_shard];
}

#define ADD(a, v) atomic_fetch_add_explicit(&(a), (v), memory_order_relaxed)
#define GET(a) atomic_load_explicit(&(a), memory_order_relaxed)

srv_metrics *srv_metrics_new(const char *version, const char *commit) {
    srv_metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    /* Zeroed memory is a valid zero for lock-free atomics (all of these are
     * on Linux), so no atomic_init per counter. */
    m->shards = aligned_alloc(64, SHARDS * sizeof(shard));
    if (!m->shards) {
        free(m);
        return NULL;
    }
    memset(m->shards, 0, SHARDS * sizeof(shard));
    snprintf(m->version, sizeof m->version, "%s", version);
    snprintf(m->commit, sizeof m->commit, "%s", commit);
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    m->start_time = (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
    return m;
}

void srv_metrics_free(srv_metrics *m) {
    if (!m) return;
    free(m->shards);
    free(m);
}

srv_gauges *srv_metrics_gauges(srv_metrics *m) { return &m->g; }

int srv_metrics_path(const char *path) {
    for (size_t i = 0; i + 1 < N_PATHS; i++)
        if (!strcmp(PATHS[i], path)) return (int)i;
    return (int)N_PATHS - 1;
}

static size_t status_index(int status) {
    for (size_t i = 0; i + 1 < N_STATUSES; i++)
        if (STATUSES[i] == status) return i;
    return N_STATUSES - 1;
}

void srv_metrics_request(srv_metrics *m, int path, int status, double seconds,
                         uint64_t bytes_in, uint64_t bytes_out, uint64_t rows,
                         uint64_t samples) {
    if (!m) return;
    if (path < 0 || (size_t)path >= N_PATHS) path = (int)N_PATHS - 1;
    shard *s = this_shard(m);
    ADD(s->requests[path][status_index(status)], 1);
    size_t b = 0;
    while (b + 1 < N_BUCKETS && seconds > BUCKETS[b]) b++;
    ADD(s->buckets[path][b], 1);
    ADD(s->sum_ns[path], (uint64_t)(seconds > 0 ? seconds * 1e9 : 0));
    if (bytes_in) ADD(s->bytes_in, bytes_in);
    if (bytes_out) ADD(s->bytes_out, bytes_out);
    if (rows) ADD(s->rows, rows);
    if (samples) ADD(s->samples, samples);
}

void srv_metrics_reject(srv_metrics *m, srv_reject reason) {
    if (m && reason < SRV_REJECT_N) ADD(this_shard(m)->rejected[reason], 1);
}

/* ==== the exposition ======================================================== */

static void header(FILE *f, const char *name, const char *type, const char *help) {
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The sum over the shards of one counter, given its address in shard 0. */
static uint64_t sum_at(atomic_uint_fast64_t *first) {
    uint64_t t = 0;
    for (size_t i = 0; i < SHARDS; i++)
        t += GET(*(atomic_uint_fast64_t *)(void *)((char *)first + i * sizeof(shard)));
    return t;
}

#define SUM(field) sum_at(&m->shards[0].field)

/* The process's resident memory and open descriptors, as Prometheus's
 * client libraries export them; 0 where /proc cannot be read. */
static double resident_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long size = 0, rss = 0;
    int n = fscanf(f, "%lu %lu", &size, &rss);
    fclose(f);
    return n == 2 ? (double)rss * (double)sysconf(_SC_PAGESIZE) : 0;
}

static double open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return 0;
    double n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

char *srv_metrics_render(srv_metrics *m, size_t *len) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) return NULL;

    header(f, "gradserve_requests_total", "counter",
           "Requests answered, by path (the routing table's, or other) and status.");
    for (size_t p = 0; p < N_PATHS; p++) {
        for (size_t s = 0; s < N_STATUSES; s++) {
            uint64_t v = SUM(requests[p][s]);
            if (!v) continue;
            if (s + 1 < N_STATUSES)
                fprintf(f, "gradserve_requests_total{path=\"%s\",status=\"%d\"} %llu\n",
                        PATHS[p], STATUSES[s], (unsigned long long)v);
            else
                fprintf(f, "gradserve_requests_total{path=\"%s\",status=\"other\"} %llu\n",
                        PATHS[p], (unsigned long long)v);
        }
    }

    header(f, "gradserve_request_duration_seconds", "histogram",
           "Time from a request's first line to the end of its answer, by path.");
    for (size_t p = 0; p < N_PATHS; p++) {
        uint64_t cum[N_BUCKETS], total = 0;
        for (size_t b = 0; b < N_BUCKETS; b++) cum[b] = total += SUM(buckets[p][b]);
        if (!total) continue;
        for (size_t b = 0; b < N_BUCKETS; b++)
            fprintf(f, "gradserve_request_duration_seconds_bucket{path=\"%s\",le=\"%s\"} %llu\n",
                    PATHS[p], b + 1 < N_BUCKETS ? BUCKET_LABELS[b] : "+Inf",
                    (unsigned long long)cum[b]);
        fprintf(f, "gradserve_request_duration_seconds_sum{path=\"%s\"} %.9f\n", PATHS[p],
                1e-9 * (double)SUM(sum_ns[p]));
        fprintf(f, "gradserve_request_duration_seconds_count{path=\"%s\"} %llu\n", PATHS[p],
                (unsigned long long)total);
    }

    header(f, "gradserve_rejected_requests_total", "counter",
           "Requests refused by the server's own limits, by reason (connections cut for "
           "slowness count as timeout).");
    for (size_t r = 0; r < SRV_REJECT_N; r++)
        fprintf(f, "gradserve_rejected_requests_total{reason=\"%s\"} %llu\n", REASONS[r],
                (unsigned long long)SUM(rejected[r]));

    static const struct {
        const char *name, *help;
        size_t offset;
    } COUNTERS[] = {
        {"gradserve_rows_total", "Rows (batch items) computed; /v1/batch counts its items' rows.",
         offsetof(shard, rows)},
        {"gradserve_samples_total", "Monte Carlo samples computed, over all rows.",
         offsetof(shard, samples)},
        {"gradserve_received_bytes_total", "Request body bytes received.",
         offsetof(shard, bytes_in)},
        {"gradserve_sent_bytes_total", "Response body bytes sent.", offsetof(shard, bytes_out)},
    };
    for (size_t i = 0; i < sizeof COUNTERS / sizeof *COUNTERS; i++) {
        header(f, COUNTERS[i].name, "counter", COUNTERS[i].help);
        fprintf(f, "%s %llu\n", COUNTERS[i].name,
                (unsigned long long)sum_at((atomic_uint_fast64_t *)(void *)((char *)&m->shards[0] +
                                                                    COUNTERS[i].offset)));
    }

    const struct {
        const char *name, *help;
        long v;
    } GAUGES[] = {
        {"gradserve_requests_in_flight", "Requests received and not yet completely answered.",
         atomic_load(&m->g.in_flight)},
        {"gradserve_requests_admitted",
         "Computing requests holding an admission slot: receiving their body, queued or "
         "computing.", atomic_load(&m->g.admitted)},
        {"gradserve_admission_limit",
         "Admission slots (workers + queue-limit); beyond them requests get 503 overloaded.",
         m->g.admission_limit},
        {"gradserve_queue_depth",
         "Computing requests received whole and waiting for a compute thread.",
         atomic_load(&m->g.queued)},
        {"gradserve_requests_computing",
         "Requests being computed (on a compute thread, or a small one on its HTTP thread).",
         atomic_load(&m->g.computing)},
        {"gradserve_connections_open", "Open client connections.",
         atomic_load(&m->g.connections)},
        {"gradserve_connections_limit", "The most connections served at once (max-connections).",
         m->g.max_connections},
    };
    for (size_t i = 0; i < sizeof GAUGES / sizeof *GAUGES; i++) {
        header(f, GAUGES[i].name, "gauge", GAUGES[i].help);
        fprintf(f, "%s %ld\n", GAUGES[i].name, GAUGES[i].v);
    }

    header(f, "gradserve_build_info", "gauge", "Always 1; the labels name the build.");
    fprintf(f, "gradserve_build_info{version=\"%s\",commit=\"%s\"} 1\n", m->version, m->commit);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    header(f, "process_cpu_seconds_total", "counter", "User and system CPU time spent.");
    fprintf(f, "process_cpu_seconds_total %.6f\n",
            (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
                (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec);
    header(f, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    fprintf(f, "process_resident_memory_bytes %.0f\n", resident_bytes());
    header(f, "process_open_fds", "gauge", "Open file descriptors.");
    fprintf(f, "process_open_fds %.0f\n", open_fds());
    header(f, "process_start_time_seconds", "gauge",
           "Start time of the process since the Unix epoch in seconds.");
    fprintf(f, "process_start_time_seconds %.3f\n", m->start_time);

    if (fclose(f)) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}
