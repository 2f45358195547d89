/* bench_core.c - times each core kernel on one thread at B = 1..65536 (C half of make bench-core; --check dumps outputs for the PyTorch comparison). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gradserve.h"

/* Shapes fixed by the benchmark's definition (bench/torch_core.py uses the
 * same): K actions for categorical rows, D dimensions and M samples for the
 * continuous ones, M samples for the Monte Carlo categorical ones. */
enum { K = 18, D = 6, M = 16 };
static const double ALPHA = 0.2;
static const uint64_t SEED = 12345;

/* ---- inputs: closed forms that torch_core.py reproduces exactly ------------
 * fill(a, n, off, amp, freq, phase): a[i] = off + amp sin(freq i + phase). */
static void fill(double *a, size_t n, double off, double amp, double freq,
                 double phase) {
    for (size_t i = 0; i < n; i++) a[i] = off + amp * sin(freq * (double)i + phase);
}

/* actions[i] = (7 i + i / 3) mod k */
static void fill_actions(int64_t *a, size_t n, size_t k) {
    for (size_t i = 0; i < n; i++) a[i] = (int64_t)((7 * i + i / 3) % k);
}

typedef struct {
    size_t B; /* capacity in rows */
    /* inputs */
    double *logits, *qk;     /* B x K */
    double *loc, *lsc;       /* B x D */
    double *qm;              /* B x M */
    int64_t *act;            /* B x M */
    double *dq_da, *grad_x, *x_in, *eps; /* B x M x D */
    /* outputs */
    double *o_row[4];        /* B each: entropy / loss / value, and their se */
    double *o_k[4];          /* B x K: grad, se_grad, probs, log_probs */
    double *o_d[4];          /* B x D: grad mu, grad rho, se mu, se rho */
    double *o_m;             /* B x M: log_prob */
    double *o_md;            /* B x M x D: x / actions */
} bufs;

/* Cache-line aligned, as torch's CPU allocator aligns its tensors (and as
 * the server's api_alloc does). */
static void *xmalloc(size_t n) {
    void *p = aligned_alloc(64, ((n ? n : 1) + 63) & ~(size_t)63);
    if (!p) {
        fprintf(stderr, "bench_core: out of memory\n");
        exit(1);
    }
    return p;
}

static void bufs_init(bufs *b, size_t B) {
    b->B = B;
    size_t md = B * M * D;
    b->logits = xmalloc(B * K * sizeof(double));
    b->qk = xmalloc(B * K * sizeof(double));
    b->loc = xmalloc(B * D * sizeof(double));
    b->lsc = xmalloc(B * D * sizeof(double));
    b->qm = xmalloc(B * M * sizeof(double));
    b->act = xmalloc(B * M * sizeof(int64_t));
    b->dq_da = xmalloc(md * sizeof(double));
    b->grad_x = xmalloc(md * sizeof(double));
    b->x_in = xmalloc(md * sizeof(double));
    b->eps = xmalloc(md * sizeof(double));
    for (int i = 0; i < 4; i++) {
        b->o_row[i] = xmalloc(B * sizeof(double));
        b->o_k[i] = xmalloc(B * K * sizeof(double));
        b->o_d[i] = xmalloc(B * D * sizeof(double));
    }
    b->o_m = xmalloc(B * M * sizeof(double));
    b->o_md = xmalloc(md * sizeof(double));

    fill(b->logits, B * K, 0.0, 3.0, 0.37, 1.0);
    fill(b->qk, B * K, 1.0, 2.0, 0.71, 2.0);
    fill(b->loc, B * D, 0.0, 0.8, 0.53, 0.5);
    fill(b->lsc, B * D, -0.5, 0.6, 0.29, 1.5);
    fill(b->qm, B * M, 0.5, 1.5, 0.43, 0.25);
    fill_actions(b->act, B * M, K);
    fill(b->dq_da, md, 0.0, 1.0, 0.61, 0.75);
    fill(b->grad_x, md, 0.0, 1.0, 0.83, 2.5);
    fill(b->x_in, md, 0.0, 1.5, 0.19, 0.1);
    fill(b->eps, md, 0.0, 1.3, 0.97, 0.2);
    /* Touch every output page once so first-touch faults stay out of timings. */
    for (int i = 0; i < 4; i++) {
        memset(b->o_row[i], 0, B * sizeof(double));
        memset(b->o_k[i], 0, B * K * sizeof(double));
        memset(b->o_d[i], 0, B * D * sizeof(double));
    }
    memset(b->o_m, 0, B * M * sizeof(double));
    memset(b->o_md, 0, md * sizeof(double));
}

/* ---- the kernels: each builds its job once (no allocation) -----------------
 * `given_eps` replaces generated noise by b->eps (check mode only: the timed
 * runs always generate their noise, as torch's timed runs call randn). */

typedef struct {
    const char *name;
    int kind;
    union {
        gs_entropy_job ent;
        gs_sac_discrete_job sd;
        gs_sac_policy_job pol;
        gs_sac_continuous_job sc;
        gs_reparam_job rep;
        gs_log_prob_job lp;
    } j;
} kjob;

enum {
    K_ENT_EXACT_CAT,
    K_ENT_SCORE_CAT,
    K_ENT_REPARAM_TANH,
    K_SAC_DISC_EXACT,
    K_SAC_DISC_SAMPLED,
    K_SAC_POLICY,
    K_SAC_CONT,
    K_REPARAM_NORMAL,
    K_LOGPROB_NORMAL,
    K_COUNT
};

static const char *const NAMES[K_COUNT] = {
    "entropy_exact_cat",     "entropy_score_cat_M16",  "entropy_reparam_tanh_M16",
    "sac_discrete_exact",    "sac_discrete_sampled_M16", "sac_policy",
    "sac_continuous_M16",    "reparam_normal_M16",     "log_prob_normal_M16",
};

static gs_dist cat_dist(const bufs *b, size_t B) {
    gs_dist d = {.type = GS_CATEGORICAL, .rows = B, .dim = K, .logits = b->logits};
    return d;
}

static gs_dist cont_dist(const bufs *b, size_t B, gs_dist_type t) {
    gs_dist d = {.type = t, .rows = B, .dim = D, .loc = b->loc, .scale = b->lsc};
    return d;
}

static void make_job(kjob *k, int kind, bufs *b, size_t B, int given_eps) {
    memset(k, 0, sizeof *k);
    k->kind = kind;
    k->name = NAMES[kind];
    gs_rng rng;
    gs_rng_init(&rng, SEED);
    gs_noise noise = {given_eps ? b->eps : NULL, rng};
    switch (kind) {
    case K_ENT_EXACT_CAT:
        k->j.ent = (gs_entropy_job){.dist = cat_dist(b, B), .estimator = GS_EST_EXACT,
                                    .entropy = b->o_row[0], .grad = {b->o_k[0], NULL}};
        break;
    case K_ENT_SCORE_CAT:
        k->j.ent = (gs_entropy_job){.dist = cat_dist(b, B), .estimator = GS_EST_SCORE,
                                    .baseline = GS_BASELINE_LOO, .samples = M, .rng = rng,
                                    .entropy = b->o_row[0], .grad = {b->o_k[0], NULL},
                                    .se_entropy = b->o_row[1], .se_grad = {b->o_k[1], NULL}};
        break;
    case K_ENT_REPARAM_TANH:
        k->j.ent = (gs_entropy_job){.dist = cont_dist(b, B, GS_TANH_NORMAL),
                                    .estimator = GS_EST_REPARAM, .samples = M, .noise = noise,
                                    .entropy = b->o_row[0], .grad = {b->o_d[0], b->o_d[1]},
                                    .se_entropy = b->o_row[1], .se_grad = {b->o_d[2], b->o_d[3]}};
        break;
    case K_SAC_DISC_EXACT:
        k->j.sd = (gs_sac_discrete_job){.dist = cat_dist(b, B), .alpha = ALPHA, .q = b->qk,
                                        .loss = b->o_row[0], .entropy = b->o_row[1],
                                        .grad = {b->o_k[0], NULL}};
        break;
    case K_SAC_DISC_SAMPLED:
        k->j.sd = (gs_sac_discrete_job){.dist = cat_dist(b, B), .alpha = ALPHA, .q = b->qm,
                                        .actions = b->act, .samples = M,
                                        .baseline = GS_BASELINE_LOO, .loss = b->o_row[0],
                                        .entropy = b->o_row[1], .grad = {b->o_k[0], NULL},
                                        .se_loss = b->o_row[2], .se_grad = {b->o_k[1], NULL}};
        break;
    case K_SAC_POLICY:
        k->j.pol = (gs_sac_policy_job){.rows = B, .K = K, .q = b->qk, .alpha = ALPHA,
                                       .samples = 0, .rng = rng, .probs = b->o_k[2],
                                       .log_probs = b->o_k[3], .entropy = b->o_row[0],
                                       .value = b->o_row[1]};
        break;
    case K_SAC_CONT:
        k->j.sc = (gs_sac_continuous_job){
            .dist = cont_dist(b, B, GS_TANH_NORMAL), .alpha = ALPHA, .samples = M,
            .noise = noise, .dq_da = b->dq_da, .q = b->qm, .loss = b->o_row[0],
            .entropy = b->o_row[1], .log_prob = b->o_m, .actions = b->o_md,
            .grad = {b->o_d[0], b->o_d[1]}, .se_loss = b->o_row[2],
            .se_entropy = b->o_row[3], .se_grad = {b->o_d[2], b->o_d[3]}};
        break;
    case K_REPARAM_NORMAL:
        k->j.rep = (gs_reparam_job){.dist = cont_dist(b, B, GS_NORMAL), .samples = M,
                                    .noise = noise, .grad_x = b->grad_x, .x = b->o_md,
                                    .log_prob = b->o_m, .grad = {b->o_d[0], b->o_d[1]},
                                    .se_grad = {b->o_d[2], b->o_d[3]}};
        break;
    case K_LOGPROB_NORMAL:
        k->j.lp = (gs_log_prob_job){.dist = cont_dist(b, B, GS_NORMAL), .samples = M,
                                    .x = b->x_in, .log_prob = b->o_m,
                                    .grad = {b->o_d[0], b->o_d[1]}};
        break;
    }
}

static int run_job(const kjob *k, size_t B, gs_error *err) {
    switch (k->kind) {
    case K_ENT_EXACT_CAT:
    case K_ENT_SCORE_CAT:
    case K_ENT_REPARAM_TANH: return gs_entropy(&k->j.ent, 0, B, err);
    case K_SAC_DISC_EXACT:
    case K_SAC_DISC_SAMPLED: return gs_sac_discrete(&k->j.sd, 0, B, err);
    case K_SAC_POLICY: return gs_sac_policy(&k->j.pol, 0, B, err);
    case K_SAC_CONT: return gs_sac_continuous(&k->j.sc, 0, B, err);
    case K_REPARAM_NORMAL: return gs_reparam(&k->j.rep, 0, B, err);
    case K_LOGPROB_NORMAL: return gs_log_prob(&k->j.lp, 0, B, err);
    }
    return GS_EINVAL;
}

/* ---- timing ------------------------------------------------------------------ */

/* The clock: this thread's CPU time (the default, immune to other load on
 * the machine; all the kernel's work runs on this thread) or wall time. */
static clockid_t bench_clock = CLOCK_THREAD_CPUTIME_ID;

static double now(void) {
    struct timespec ts;
    clock_gettime(bench_clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void run_or_die(const kjob *k, size_t B) {
    gs_error err;
    int rc = run_job(k, B, &err);
    if (rc) {
        fprintf(stderr, "bench_core: %s B=%zu failed: %s (row %ld)\n", k->name, B,
                gs_strerror(rc), err.row);
        exit(1);
    }
}

static double time_reps(const kjob *k, size_t B, long reps) {
    double t0 = now();
    for (long r = 0; r < reps; r++) run_or_die(k, B);
    return now() - t0;
}

/* The repetition count of one point: grown until a run takes min_time. */
static long calibrate(const kjob *k, size_t B, double min_time) {
    long reps = 1;
    run_or_die(k, B); /* warm-up: caches, page faults, lazy dispatch */
    for (;;) {
        double t = time_reps(k, B, reps);
        if (t >= min_time) return reps;
        double grow = t > 0 ? 1.2 * min_time / t : 100.0;
        if (grow > 100.0) grow = 100.0;
        if (grow < 2.0) grow = 2.0;
        reps = (long)((double)reps * grow) + 1;
    }
}

/* ---- check mode: outputs for a few rows, read by torch_core.py --check ----- */

static void dump(const char *name, const char *field, const double *a, size_t n) {
    for (size_t i = 0; i < n; i++) printf("%s\t%s\t%zu\t%.17g\n", name, field, i, a[i]);
}

static void check_mode(size_t B) {
    bufs b;
    bufs_init(&b, B);
    printf("# rows %zu\n", B);
    for (int kind = 0; kind < K_COUNT; kind++) {
        kjob k;
        make_job(&k, kind, &b, B, 1);
        const char *n = k.name;
        if (kind == K_ENT_SCORE_CAT) {
            /* gs_sample draws exactly the actions gs_entropy's score estimator
             * draws (same rng, row and sample): torch gets them from here. */
            gs_sample_job s = {.dist = cat_dist(&b, B), .samples = M, .rng = k.j.ent.rng,
                               .actions = b.act, .log_prob = b.o_m};
            gs_error err;
            if (gs_sample(&s, 0, B, &err)) exit(1);
            for (size_t i = 0; i < B * M; i++)
                printf("%s\tactions\t%zu\t%lld\n", n, i, (long long)b.act[i]);
        }
        run_or_die(&k, B);
        switch (kind) {
        case K_ENT_EXACT_CAT:
            dump(n, "entropy", b.o_row[0], B);
            dump(n, "grad", b.o_k[0], B * K);
            break;
        case K_ENT_SCORE_CAT:
            dump(n, "entropy", b.o_row[0], B);
            dump(n, "grad", b.o_k[0], B * K);
            fill_actions(b.act, B * M, K); /* restore for the sampled SAC kernel */
            break;
        case K_ENT_REPARAM_TANH:
            dump(n, "entropy", b.o_row[0], B);
            dump(n, "grad_loc", b.o_d[0], B * D);
            dump(n, "grad_log_scale", b.o_d[1], B * D);
            break;
        case K_SAC_DISC_EXACT:
        case K_SAC_DISC_SAMPLED:
            dump(n, "loss", b.o_row[0], B);
            dump(n, "entropy", b.o_row[1], B);
            dump(n, "grad", b.o_k[0], B * K);
            break;
        case K_SAC_POLICY:
            dump(n, "probs", b.o_k[2], B * K);
            dump(n, "log_probs", b.o_k[3], B * K);
            dump(n, "entropy", b.o_row[0], B);
            dump(n, "value", b.o_row[1], B);
            break;
        case K_SAC_CONT:
            dump(n, "loss", b.o_row[0], B);
            dump(n, "entropy", b.o_row[1], B);
            dump(n, "log_prob", b.o_m, B * M);
            dump(n, "actions", b.o_md, B * M * D);
            dump(n, "grad_loc", b.o_d[0], B * D);
            dump(n, "grad_log_scale", b.o_d[1], B * D);
            break;
        case K_REPARAM_NORMAL:
            dump(n, "x", b.o_md, B * M * D);
            dump(n, "log_prob", b.o_m, B * M);
            dump(n, "grad_loc", b.o_d[0], B * D);
            dump(n, "grad_log_scale", b.o_d[1], B * D);
            break;
        case K_LOGPROB_NORMAL:
            dump(n, "log_prob", b.o_m, B * M);
            dump(n, "grad_loc", b.o_d[0], B * D);
            dump(n, "grad_log_scale", b.o_d[1], B * D);
            break;
        }
    }
}

/* ---- main ----------------------------------------------------------------------- */

static void usage(void) {
    fprintf(stderr,
            "usage: bench_core [--min-time S] [--trials N] [--clock thread|wall]\n"
            "                  [--sizes B1,B2,..] "
            "[--kernels NAME,..]\n"
            "       bench_core --check [B]\n"
            "Prints one tab-separated line per point: kernel B rows_per_s reps.\n");
    exit(2);
}

static int wanted(const char *list, const char *name) {
    if (!list) return 1;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    double min_time = 0.2;
    int trials = 3;
    size_t sizes[16] = {1, 256, 4096, 65536}, nsizes = 4;
    const char *kernels = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--check")) {
            check_mode(i + 1 < argc ? (size_t)strtoul(argv[i + 1], NULL, 10) : 3);
            return 0;
        } else if (!strcmp(argv[i], "--min-time") && i + 1 < argc) {
            min_time = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--clock") && i + 1 < argc) {
            i++;
            if (!strcmp(argv[i], "wall")) bench_clock = CLOCK_MONOTONIC;
            else if (!strcmp(argv[i], "thread")) bench_clock = CLOCK_THREAD_CPUTIME_ID;
            else usage();
        } else if (!strcmp(argv[i], "--trials") && i + 1 < argc) {
            trials = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--kernels") && i + 1 < argc) {
            kernels = argv[++i];
        } else if (!strcmp(argv[i], "--sizes") && i + 1 < argc) {
            nsizes = 0;
            for (char *p = argv[++i]; *p && nsizes < 16;) {
                sizes[nsizes++] = (size_t)strtoul(p, &p, 10);
                if (*p == ',') p++;
                else if (*p) usage();
            }
        } else {
            usage();
        }
    }
    if (trials < 1 || min_time <= 0 || nsizes == 0) usage();
    size_t bmax = 0;
    for (size_t i = 0; i < nsizes; i++) bmax = sizes[i] > bmax ? sizes[i] : bmax;

    bufs b;
    bufs_init(&b, bmax);
    printf("# bench_core: one thread, simd %s, %s clock, min %.2f s per run, best of %d "
           "spread over the run\n",
           gs_vm_isa(), bench_clock == CLOCK_MONOTONIC ? "wall" : "thread CPU", min_time,
           trials);
    /* Every point's best of `trials` runs, the trials spread over the whole
     * run (all points once, then all again, ...): this machine has spells
     * of some seconds at a fraction of its speed, which back-to-back trials
     * of one point would all fall into. */
    struct {
        kjob k;
        size_t B;
        long reps;
        double best;
    } pt[K_COUNT * 16];
    size_t np = 0;
    for (int kind = 0; kind < K_COUNT; kind++) {
        if (!wanted(kernels, NAMES[kind])) continue;
        for (size_t s = 0; s < nsizes; s++, np++) {
            make_job(&pt[np].k, kind, &b, sizes[s], 0);
            pt[np].B = sizes[s];
            pt[np].reps = calibrate(&pt[np].k, sizes[s], min_time);
            pt[np].best = INFINITY;
        }
    }
    for (int t = 0; t < trials; t++)
        for (size_t i = 0; i < np; i++) {
            double dt = time_reps(&pt[i].k, pt[i].B, pt[i].reps);
            if (dt < pt[i].best) pt[i].best = dt;
        }
    for (size_t i = 0; i < np; i++)
        printf("%s\t%zu\t%.6g\t%ld\n", pt[i].k.name, pt[i].B,
               (double)pt[i].B * (double)pt[i].reps / pt[i].best, pt[i].reps);
    return 0;
}
