/* gs_vmath_impl.h - the AVX2 and AVX-512 kernels of gs_vmath, and the prefetch and streaming-store helpers of the lane loops (internal). */
#ifndef GS_VMATH_IMPL_H
#define GS_VMATH_IMPL_H

#include <stddef.h>
#include <stdint.h>

/* Prefetches the group of eight rows that a lane loop reaches two groups
 * after row b (rows b + 16 .. b + 23, when they are below r1) of a
 * row-major array of ld doubles per row (nothing when base is NULL). At
 * large batches the inputs come from memory, and the hardware prefetcher
 * alone left the lane kernels waiting on them (B = 65536: log_prob at 40 %
 * of its speed, the sampled discrete actor at 65 %). The prefetch is an
 * asm volatile: GCC deletes a loop of __builtin_prefetch (or _mm_prefetch)
 * as a loop without effects, and did so in the lane kernels. */
static inline void gs_prefetch_rows(const void *base, size_t ld, size_t b, size_t r1) {
    if (!base || b + 24 > r1) return;
    const char *p = (const char *)base + (b + 16) * ld * sizeof(double);
    for (size_t o = 0; o < 8 * ld * sizeof(double); o += 64) {
#if defined(__x86_64__) || defined(__i386__)
        __asm__ volatile("prefetcht0 %0" : : "m"(p[o]));
#else
        __builtin_prefetch(p + o);
#endif
    }
}

/* Whether a lane kernel over a batch of `rows` rows, reading and writing
 * `per_row` doubles of each, writes its row outputs with non-temporal
 * stores: when the batch moves at least GS_STREAM_BYTES, about half the
 * last-level cache here (32 MiB), its outputs would not stay in cache, and
 * a streaming store writes a line once instead of reading it for
 * ownership and writing it back later. Measured with make bench-core at B =
 * 65536 (19-28 MB): sac_policy 21M -> 38M rows/s, sac_discrete_exact 24M ->
 * 36M, reparam_normal 2.75M -> 3.2M; at B = 32768 (9-22 MB) streaming was
 * 10 % slower for all but the sampled actor, whose 22 MB gained 15 %.
 * Smaller outputs stay in cache for the caller, which reads them next.
 * Decided on the whole batch, not a worker's share: the workers share the
 * cache. (log_prob, which reads six times what it writes, does not stream:
 * it measured slower.) */
#define GS_STREAM_BYTES ((size_t)16 << 20)
static inline int gs_stream_batch(size_t rows, size_t per_row) {
    return per_row && rows >= GS_STREAM_BYTES / sizeof(double) / per_row;
}

/* Orders a kernel's streaming stores before what follows (the workers'
 * hand-back of their rows). */
static inline void gs_stream_fence(void) {
#if defined(__x86_64__) || defined(__i386__)
    __asm__ volatile("sfence" ::: "memory");
#endif
}

/* Defined in gs_vmath_avx2.c (compiled with -mavx2 -mfma); call only on a
 * CPU with AVX2 and FMA. Same contracts as the gs_vm_* functions. */
void gs_vm_exp_avx2(size_t n, const double *x, double *y);
void gs_vm_expm1_avx2(size_t n, const double *x, double *y);
void gs_vm_log_avx2(size_t n, const double *x, double *y);
void gs_vm_log1p_avx2(size_t n, const double *x, double *y);
void gs_vm_box_muller_avx2(size_t n, const double *u1, const double *u2, double *r,
                           double *s, double *c);
double gs_vm_cat_avx2(size_t K, const double *z, double *logp, double *p, double *x, double *c);

/* Defined in gs_vmath_avx512.c (compiled with -mavx512f); call only on a
 * CPU with AVX-512F (and AVX2 and FMA). */
void gs_vm_exp_avx512(size_t n, const double *x, double *y);
void gs_vm_expm1_avx512(size_t n, const double *x, double *y);
void gs_vm_log_avx512(size_t n, const double *x, double *y);
void gs_vm_log1p_avx512(size_t n, const double *x, double *y);
void gs_vm_box_muller_avx512(size_t n, const double *u1, const double *u2, double *r,
                             double *s, double *c);
/* In gs_lanes_avx512.c: one row of its lane softmax. */
double gs_vm_cat_avx512(size_t K, const double *z, double *logp, double *p, double *x, double *c);
void gs_vm_tanh_parts_avx512(size_t n, const double *u, double *t, double *omt2,
                             double *l1mt2);
/* The column sweeps of gs_reduce_terms (gs_row.c),
 * with their arithmetic: bit-identical to the scalar loops there. */
void gs_vm_reduce_cols_avx512(const double *g, size_t M, size_t dim,
                              double *mean, double *se);
/* gs_reduce_terms2: both arrays' sweeps in one loop, the same bits. */
void gs_vm_reduce_cols2_avx512(const double *g0, const double *g1, size_t M, size_t dim,
                               double *mean0, double *se0, double *mean1, double *se1);
/* u[m D + i] = mu[i] + sigma[i] eps[m D + i] for D <= 8, one sample per
 * vector (a multiply, then an add: the scalar loop's bits). */
void gs_vm_affine_avx512(size_t M, size_t D, const double *mu, const double *sigma,
                         const double *eps, double *u);

/* The per-sample terms of gs_reparam, gs_sac_continuous and the reparam
 * entropy for D <= 8, bit for bit their scalar loops (gs_vmath_avx512.c). */
void gs_vm_reparam_terms_avx512(size_t M, size_t D, int tanh_, const double *sigma,
                                const double *s, const double *eps, const double *omt2,
                                const double *t, const double *gx, const double *glp,
                                double *g0, double *g1);
void gs_vm_sac_cont_terms_avx512(size_t M, size_t D, double alpha, const double *sigma,
                                 const double *s, const double *eps, const double *omt2,
                                 const double *t, const double *dq, double *g0, double *g1);
void gs_vm_entropy_reparam_terms_avx512(size_t M, size_t D, int tanh_, const double *sigma,
                                        const double *eps, const double *t, double *g0,
                                        double *g1);

/* 1 when the AVX-512 kernels may run (the CPU has them and the build allows
 * them): for dispatch outside gs_vmath.c. */
int gs_vm_have_avx512(void);

/* Defined in gs_rng_avx512.c (compiled with -mavx512f): the uniforms of
 * gs_rng_normals' blocks (j, m) for m in [m0, m0 + count), j in [0, nb):
 * u1[i] = u53(words 0-1), u2[i] = 2 u53(words 2-3), with
 * i = (m - m0) nb + j; bit-identical to the scalar Philox path. */
void gs_rng_uniforms_avx512(const uint32_t key[2], uint64_t row, uint32_t m0,
                            size_t nb, size_t count, double *u1, double *u2);

/* u[8 (m - m0) + l] = gs_rng_uniform of (row0 + l, m), m in [m0, m0 +
 * count), l in [0, 8): one row per lane, bit for bit (gs_rng_avx512.c).
 * With one_row, u[m - m0] = gs_rng_uniform of (row0, m) instead (lane 0's
 * uniforms, packed: gs_rng_uniforms of a single row). */
void gs_rng_uniforms_lanes_avx512(const uint32_t key[2], uint64_t row0, uint32_t m0,
                                  size_t count, double *u, int one_row);
/* eps[8 (m D + i) + l] = normal i of sample m of row row0 + l, m < M, i <
 * D: gs_rng_normals' draws one row per lane, bit for bit (gs_rng_avx512.c). */
void gs_rng_normals_lanes_avx512(const uint32_t key[2], uint64_t row0, size_t M, size_t D,
                                 double *eps);

/* Defined in gs_lanes_avx512.c (compiled with -mavx512f): the categorical
 * kernels eight rows at a time, one row per lane. Each takes scratch of
 * gs_lanes_scratch(K, M) doubles (M = 0 for the exact ones) and computes
 * each row's outputs from that row alone, the same bits in any lane. Those
 * returning int return 1 when some output of some row is not finite (the
 * caller then checks row by row), else 0. With stream (gs_stream_batch)
 * the K-column outputs go out by non-temporal stores where they start on
 * a cache line (the same values; the kernel ends with an sfence). */
size_t gs_lanes_scratch(size_t K, size_t M);
/* n rows of logits z (K each): entropy h[b] and its gradient (n x K). */
int gs_lanes_entropy_cat_avx512(size_t K, const double *z, size_t n, double *h, double *grad,
                                int stream, double *scratch);
/* The exact discrete SAC actor of n rows: loss, entropy, grad (n x K). */
int gs_lanes_sac_exact_avx512(size_t K, const double *z, const double *q, double alpha, size_t n,
                              double *loss, double *ent, double *grad, int stream,
                              double *scratch);
/* The Boltzmann policy of n rows of Q: probs, log_probs (n x K), entropy
 * and value. Returns 1 when a row's entropy, value or log_probs are not
 * all finite (the caller then checks row by row), else 0. */
int gs_lanes_policy_avx512(size_t K, const double *q, double alpha, size_t n, double *probs,
                           double *log_probs, double *ent, double *value, int stream,
                           double *scratch);
/* A sampled categorical score estimator over rows [r0, r1) (all arrays
 * indexed by absolute row): SAC (q set: v_m = alpha log p_{k_m} - q_m,
 * the caller's actions) or the entropy (q NULL: v_m = -log p_{k_m}, actions
 * drawn from key as gs_rng_cat_draw draws them); stat / se_stat the mean and
 * se of v, w = v with the loo baseline or not, grad / se_grad the mean and
 * se of w_m (e_{k_m} - p) (gs_cat_score_reduce's arithmetic). entropy
 * (exact H), se_stat and se_grad may be NULL. */
typedef struct {
    size_t K, M;
    const double *logits;
    const int64_t *actions;
    const double *q;
    double alpha;
    uint32_t key[2];
    int loo;
    int stream;
    double *entropy, *stat, *se_stat, *grad, *se_grad;
} gs_lanes_score;
int gs_lanes_score_avx512(const gs_lanes_score *s, size_t r0, size_t r1, double *scratch);

/* gs_log_prob of n rows of a normal (D dimensions, M points x each,
 * rows of M D): lp (n x M), g0 and g1 (n x D), the row loop's bits; the
 * scale is log_scale, or sigma when scale_is_sigma. Returns 1 when a row
 * needs the row loop (a sigma or 1 / sigma not normal, an output not
 * finite): its outputs are then unspecified. Scratch of
 * gs_lanes_log_prob_scratch(D, M) doubles. Its outputs are a sixth of
 * what it reads, and streaming them measured slower (B = 65536: 7.6-9.8M
 * rows/s against 11.0-11.1M plain): plain stores. */
size_t gs_lanes_log_prob_scratch(size_t D, size_t M);

/* The reparameterised kernels of a normal or tanh_normal for rows [b, b +
 * n), n <= 8, all arrays indexed by absolute row (gs_lanes_cont_avx512.c):
 * REPARAM is gs_reparam, ENTROPY the reparam estimator of gs_entropy, SAC
 * gs_sac_continuous, with the row loop's bits. c, s and logs are the tanh
 * centre, half-width and its log per dimension, as gs_cont_bounds makes
 * them. Returns 1 when some output of some row is not finite (the caller
 * then redoes the rows with the row loop, which names the fault). Scratch
 * of gs_lanes_cont_scratch(D, M) doubles. Per-sample terms are not made. */
typedef enum { GS_LC_REPARAM, GS_LC_ENTROPY, GS_LC_SAC } gs_lanes_cont_kind;
typedef struct {
    gs_lanes_cont_kind kind;
    size_t D, M;
    int tanh_, scale_is_sigma;
    const double *loc, *scale;  /* rows x D */
    const double *c, *s, *logs; /* D, tanh only */
    const double *low, *high;   /* D, or NULL: no bounds */
    const double *eps;          /* the caller's noise (rows x M x D), or NULL: from key */
    uint32_t key[2];
    const double *gx, *glp;     /* REPARAM: df/dx (rows x M x D), df/dl (rows x M) or NULL */
    const double *dq, *q;       /* SAC: dQ/da (rows x M x D), Q (rows x M) or NULL */
    double alpha;               /* SAC */
    double *x, *lp;             /* the points (rows x M x D) and log-densities (rows x M), or NULL */
    int stream;                 /* gs_stream_batch; the caller then issues gs_stream_fence */
    double *stat, *se_stat;     /* ENTROPY: the entropy; SAC: the loss (with q); se may be NULL */
    double *ent, *se_ent;       /* SAC: the entropy; se may be NULL */
    double *g0, *g1, *se0, *se1; /* rows x D; se0 and se1 NULL: no standard errors */
} gs_lanes_cont;
size_t gs_lanes_cont_scratch(size_t D, size_t M);
int gs_lanes_cont_avx512(const gs_lanes_cont *k, size_t b, size_t n, double *scratch);
int gs_lanes_log_prob_normal_avx512(size_t D, size_t M, const double *loc, const double *scale,
                                    int scale_is_sigma, const double *x, size_t n, double *lp,
                                    double *g0, double *g1, double *scratch);

#endif
