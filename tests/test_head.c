/* test_head.c - Check suite for gs_head: forward, backward, reduce, variances and features standard errors against naive loops, over 256-row blocks. */
#include <cblas.h>
#include <pthread.h>
#include <stdint.h>

#include "test_core_util.h"

/* The batch sizes around the block edges (GS_HEAD_BLOCK = 256). */
static const size_t BS[] = {1, 255, 256, 257, 1000};
#define NBS (sizeof BS / sizeof *BS)

/* (in, out) shapes: a general one, the 1 x 1 corner, one wider than a kernel tile. */
static const size_t SHAPES[][2] = {{5, 3}, {1, 1}, {17, 9}};
#define NSHAPES (sizeof SHAPES / sizeof *SHAPES)

/* ---- inputs ----------------------------------------------------------------------- */

/* splitmix64: reproducible inputs independent of the service's generator. */
static double rnd(uint64_t *st, double lo, double hi) {
    uint64_t z = (*st += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return lo + (hi - lo) * (double)(z >> 11) * 0x1.0p-53;
}

static double *rnd_fill(uint64_t *st, size_t n, double lo, double hi) {
    double *v = malloc((n ? n : 1) * sizeof *v);
    for (size_t k = 0; k < n; k++) v[k] = rnd(st, lo, hi);
    return v;
}

static double *filled(size_t n, double v) {
    double *a = malloc((n ? n : 1) * sizeof *a);
    for (size_t k = 0; k < n; k++) a[k] = v;
    return a;
}

/* A head with owned arrays (the gs_head points into them). */
typedef struct {
    gs_head h;
    double *f, *w, *b;
} thead;

static thead thead_make(size_t B, size_t in, size_t out, int bias, uint64_t seed) {
    uint64_t st = seed * 7919u + 3;
    thead t = {{B, in, out, NULL, NULL, NULL}, NULL, NULL, NULL};
    t.f = rnd_fill(&st, B * in, -2, 2);
    t.w = rnd_fill(&st, out * in, -1, 1);
    t.b = bias ? rnd_fill(&st, out, -1, 1) : NULL;
    t.h.features = t.f;
    t.h.weight = t.w;
    t.h.bias = t.b;
    return t;
}

static void thead_free(thead *t) {
    free(t->f);
    free(t->w);
    free(t->b);
}

/* |got - want| within 1e-12 of the sum of the absolute terms that make want:
 * the bound of any summation order's rounding error for these sizes. */
#define ck_sum_close(got, want, absterms, i)                                                   \
    do {                                                                                       \
        double g_ = (got), w_ = (want), a_ = (absterms);                                       \
        ck_assert_msg(fabs(g_ - w_) <= 1e-12 * a_ + 1e-300,                                   \
                      "[%zu] %s = %.17g, want %.17g (diff %.3g, terms %.3g)", (size_t)(i),     \
                      #got, g_, w_, g_ - w_, a_);                                              \
    } while (0)

/* Rows [r0, r1) of block k, as the header defines them. */
static void block_range(size_t B, size_t k, size_t *r0, size_t *r1) {
    *r0 = k * GS_HEAD_BLOCK;
    *r1 = *r0 + GS_HEAD_BLOCK < B ? *r0 + GS_HEAD_BLOCK : B;
}

/* ==== blocks ========================================================================= */

START_TEST(blocks_count) {
    ck_assert_uint_eq(GS_HEAD_BLOCK, 256);
    ck_assert_uint_eq(gs_head_blocks(0), 0);
    ck_assert_uint_eq(gs_head_blocks(1), 1);
    ck_assert_uint_eq(gs_head_blocks(255), 1);
    ck_assert_uint_eq(gs_head_blocks(256), 1);
    ck_assert_uint_eq(gs_head_blocks(257), 2);
    ck_assert_uint_eq(gs_head_blocks(512), 2);
    ck_assert_uint_eq(gs_head_blocks(513), 3);
    ck_assert_uint_eq(gs_head_blocks(1000), 4);
}
END_TEST

/* ==== forward ========================================================================= */

/* params = F W^T + b by a triple loop, with the sum of absolute terms. */
static void naive_forward(const gs_head *h, double *P, double *absterms) {
    for (size_t b = 0; b < h->rows; b++)
        for (size_t o = 0; o < h->out; o++) {
            double s = h->bias ? h->bias[o] : 0.0, a = h->bias ? fabs(h->bias[o]) : 0.0;
            for (size_t j = 0; j < h->in; j++) {
                double t = h->features[b * h->in + j] * h->weight[o * h->in + j];
                s += t;
                a += fabs(t);
            }
            P[b * h->out + o] = s;
            absterms[b * h->out + o] = a;
        }
}

START_TEST(forward_matches_naive) {
    for (size_t bi = 0; bi < NBS; bi++)
        for (size_t si = 0; si < NSHAPES; si++)
            for (int bias = 0; bias < 2; bias++) {
                size_t B = BS[bi], in = SHAPES[si][0], out = SHAPES[si][1];
                thead t = thead_make(B, in, out, bias, 100 * bi + 10 * si + bias);
                size_t n = B * out, nb = gs_head_blocks(B);
                double *P = filled(n, NAN), *ref = malloc(n * sizeof *ref),
                       *abs_ = malloc(n * sizeof *abs_);
                naive_forward(&t.h, ref, abs_);
                for (size_t k = 0; k < nb; k++) {
                    gs_head_forward(&t.h, k, P);
                    /* Block k wrote its rows and nothing after them. */
                    size_t r0, r1;
                    block_range(B, k, &r0, &r1);
                    for (size_t i = r1 * out; i < n; i++)
                        ck_assert_msg(isnan(P[i]), "B %zu: block %zu wrote row %zu", B, k,
                                      i / out);
                }
                for (size_t i = 0; i < n; i++) ck_sum_close(P[i], ref[i], abs_[i], i);
                free(P);
                free(ref);
                free(abs_);
                thead_free(&t);
            }
}
END_TEST

/* The same rows with a fresh output array and beta = 0: values already in
 * the output (NaN here) are overwritten, never added. */
START_TEST(forward_overwrites_without_bias) {
    thead t = thead_make(300, 4, 3, 0, 5);
    double *P = filled(300 * 3, NAN), *Q = filled(300 * 3, 1e300);
    for (size_t k = 0; k < 2; k++) {
        gs_head_forward(&t.h, k, P);
        gs_head_forward(&t.h, k, Q);
    }
    ck_same_bytes(P, Q, 300 * 3 * sizeof *P);
    ck_all_finite(P, 300 * 3);
    free(P);
    free(Q);
    thead_free(&t);
}
END_TEST

/* ==== backward ========================================================================= */

START_TEST(backward_matches_naive) {
    for (size_t bi = 0; bi < NBS; bi++)
        for (size_t si = 0; si < NSHAPES; si++)
            for (int bias = 0; bias < 2; bias++) {
                size_t B = BS[bi], in = SHAPES[si][0], out = SHAPES[si][1];
                thead t = thead_make(B, in, out, bias, 200 + 100 * bi + 10 * si + bias);
                uint64_t st = 77 + bi;
                double *G = rnd_fill(&st, B * out, -3, 3);
                double *A = rnd_fill(&st, B * in, -1, 1); /* what accumulate adds to */
                size_t nb = gs_head_blocks(B), nw = out * in;
                double *dF = filled(B * in, NAN), *dFa = malloc(B * in * sizeof *dFa);
                memcpy(dFa, A, B * in * sizeof *dFa);
                double *pw = filled(nb * nw, NAN), *pb = filled(nb * out, NAN);
                double *pw2 = filled(nb * nw, NAN);
                for (size_t k = 0; k < nb; k++) {
                    gs_head_backward(&t.h, G, k, dF, 0, pw + k * nw, bias ? pb + k * out : NULL);
                    gs_head_backward(&t.h, G, k, dFa, 1, pw2 + k * nw, NULL);
                    size_t r0, r1;
                    block_range(B, k, &r0, &r1);
                    for (size_t i = r1 * in; i < B * in; i++) {
                        ck_assert_msg(isnan(dF[i]), "B %zu: block %zu wrote dF row %zu", B, k,
                                      i / in);
                        ck_assert_msg(dFa[i] == A[i], "B %zu: block %zu changed dF row %zu", B,
                                      k, i / in);
                    }
                    /* The block's partials against G^T F and sum G over its rows. */
                    for (size_t o = 0; o < out; o++) {
                        for (size_t j = 0; j < in; j++) {
                            double s = 0.0, a = 0.0;
                            for (size_t b = r0; b < r1; b++) {
                                double v = G[b * out + o] * t.f[b * in + j];
                                s += v;
                                a += fabs(v);
                            }
                            ck_sum_close(pw[k * nw + o * in + j], s, a, o * in + j);
                            /* The partial does not depend on dF or accumulate. */
                            ck_assert(pw2[k * nw + o * in + j] == pw[k * nw + o * in + j]);
                        }
                        if (bias) {
                            double s = 0.0, a = 0.0;
                            for (size_t b = r0; b < r1; b++) {
                                s += G[b * out + o];
                                a += fabs(G[b * out + o]);
                            }
                            ck_sum_close(pb[k * out + o], s, a, o);
                        }
                    }
                }
                if (!bias) /* pb NULL: nothing written there */
                    for (size_t i = 0; i < nb * out; i++) ck_assert(isnan(pb[i]));
                /* dF = G W, and dF += G W with accumulate. */
                for (size_t b = 0; b < B; b++)
                    for (size_t j = 0; j < in; j++) {
                        double s = 0.0, a = 0.0;
                        for (size_t o = 0; o < out; o++) {
                            double v = G[b * out + o] * t.w[o * in + j];
                            s += v;
                            a += fabs(v);
                        }
                        ck_sum_close(dF[b * in + j], s, a, b * in + j);
                        ck_sum_close(dFa[b * in + j], A[b * in + j] + s, a + fabs(A[b * in + j]),
                                     b * in + j);
                    }
                free(G);
                free(A);
                free(dF);
                free(dFa);
                free(pw);
                free(pb);
                free(pw2);
                thead_free(&t);
            }
}
END_TEST

/* dF NULL: only the partials, equal to those computed alongside dF. */
START_TEST(backward_without_features) {
    thead t = thead_make(600, 6, 4, 1, 9);
    uint64_t st = 4;
    double *G = rnd_fill(&st, 600 * 4, -1, 1), *dF = malloc(600 * 6 * sizeof *dF);
    size_t nb = gs_head_blocks(600);
    double *pw = malloc(nb * 24 * sizeof *pw), *pb = malloc(nb * 4 * sizeof *pb);
    double *qw = malloc(nb * 24 * sizeof *qw), *qb = malloc(nb * 4 * sizeof *qb);
    for (size_t k = 0; k < nb; k++) {
        gs_head_backward(&t.h, G, k, dF, 0, pw + k * 24, pb + k * 4);
        gs_head_backward(&t.h, G, k, NULL, 0, qw + k * 24, qb + k * 4);
    }
    ck_same_bytes(pw, qw, nb * 24 * sizeof *pw);
    ck_same_bytes(pb, qb, nb * 4 * sizeof *pb);
    free(G);
    free(dF);
    free(pw);
    free(pb);
    free(qw);
    free(qb);
    thead_free(&t);
}
END_TEST

/* ==== reduce ========================================================================== */

START_TEST(reduce_in_block_order) {
    uint64_t st = 11;
    size_t blocks = 5, n = 7;
    /* Magnitudes that make the order of the additions visible. */
    double *p = malloc(blocks * n * sizeof *p);
    for (size_t k = 0; k < blocks; k++)
        for (size_t i = 0; i < n; i++)
            p[k * n + i] = rnd(&st, -1, 1) * (k % 2 ? 1e16 : 1.0) + rnd(&st, 0, 1);
    double out[7], outs[7];
    for (int r = 0; r < 2; r++) {
        double scale = r ? 1.0 : 1.0 / 1000.0;
        gs_head_reduce(blocks, n, p, scale, 0, out);
        gs_head_reduce(blocks, n, p, scale, 1, outs);
        for (size_t i = 0; i < n; i++) {
            double s = 0.0;
            for (size_t k = 0; k < blocks; k++) s += p[k * n + i];
            ck_assert_msg(out[i] == scale * s, "[%zu] %.17g vs %.17g", i, out[i], scale * s);
        }
    }
    /* sqrt: r sqrt(sum) over non-negative partials (variances). */
    for (size_t k = 0; k < blocks * n; k++) p[k] = fabs(p[k]);
    gs_head_reduce(blocks, n, p, 0.25, 1, outs);
    for (size_t i = 0; i < n; i++) {
        double s = 0.0;
        for (size_t k = 0; k < blocks; k++) s += p[k * n + i];
        ck_assert(outs[i] == 0.25 * sqrt(s));
    }
    /* One block: r times the partial; zero blocks: zero. */
    gs_head_reduce(1, n, p, 0.5, 0, out);
    for (size_t i = 0; i < n; i++) ck_assert(out[i] == 0.5 * p[i]);
    gs_head_reduce(0, n, p, 0.5, 0, out);
    for (size_t i = 0; i < n; i++) ck_assert(out[i] == 0.0);
    free(p);
}
END_TEST

/* The reduced weight and bias gradients against r G^T F and r sum G. */
START_TEST(reduce_gives_the_head_gradients) {
    for (size_t bi = 0; bi < NBS; bi++)
        for (int red = 0; red < 2; red++) {
            size_t B = BS[bi], in = 5, out = 3, nw = in * out, nb = gs_head_blocks(B);
            thead t = thead_make(B, in, out, 1, 300 + bi);
            uint64_t st = 5 + bi;
            double *G = rnd_fill(&st, B * out, -2, 2);
            double *pw = malloc(nb * nw * sizeof *pw), *pb = malloc(nb * out * sizeof *pb);
            for (size_t k = 0; k < nb; k++)
                gs_head_backward(&t.h, G, k, NULL, 0, pw + k * nw, pb + k * out);
            double r = red ? 1.0 : 1.0 / (double)B, dw[15], db[3];
            gs_head_reduce(nb, nw, pw, r, 0, dw);
            gs_head_reduce(nb, out, pb, r, 0, db);
            for (size_t o = 0; o < out; o++) {
                for (size_t j = 0; j < in; j++) {
                    double s = 0.0, a = 0.0;
                    for (size_t b = 0; b < B; b++) {
                        s += G[b * out + o] * t.f[b * in + j];
                        a += fabs(G[b * out + o] * t.f[b * in + j]);
                    }
                    ck_sum_close(dw[o * in + j], r * s, r * a, o * in + j);
                }
                double s = 0.0, a = 0.0;
                for (size_t b = 0; b < B; b++) {
                    s += G[b * out + o];
                    a += fabs(G[b * out + o]);
                }
                ck_sum_close(db[o], r * s, r * a, o);
            }
            free(G);
            free(pw);
            free(pb);
            thead_free(&t);
        }
}
END_TEST

/* ==== variances ======================================================================== */

START_TEST(backward_var_matches_naive) {
    for (size_t bi = 0; bi < NBS; bi++)
        for (size_t si = 0; si < NSHAPES; si++)
            for (int bias = 0; bias < 2; bias++) {
                size_t B = BS[bi], in = SHAPES[si][0], out = SHAPES[si][1], nw = in * out;
                thead t = thead_make(B, in, out, bias, 400 + 100 * bi + 10 * si + bias);
                uint64_t st = 31 + bi;
                double *S = rnd_fill(&st, B * out, -1, 1); /* signs must not matter */
                size_t nb = gs_head_blocks(B);
                double *pw2 = filled(nb * nw, NAN), *pb2 = filled(nb * out, NAN);
                /* Exactly the documented scratch, so that a sanitizer sees overruns. */
                double *scratch = malloc(gs_head_var_scratch(&t.h) * sizeof *scratch);
                for (size_t k = 0; k < nb; k++) {
                    gs_head_backward_var(&t.h, S, k, pw2 + k * nw, bias ? pb2 + k * out : NULL,
                                         scratch);
                    size_t r0, r1;
                    block_range(B, k, &r0, &r1);
                    for (size_t o = 0; o < out; o++) {
                        for (size_t j = 0; j < in; j++) {
                            double s = 0.0;
                            for (size_t b = r0; b < r1; b++) {
                                double sv = S[b * out + o], f = t.f[b * in + j];
                                s += sv * sv * f * f;
                            }
                            /* Every term is >= 0: relative to the sum itself. */
                            ck_sum_close(pw2[k * nw + o * in + j], s, s, o * in + j);
                        }
                        if (bias) {
                            double s = 0.0;
                            for (size_t b = r0; b < r1; b++) s += S[b * out + o] * S[b * out + o];
                            ck_sum_close(pb2[k * out + o], s, s, o);
                        }
                    }
                }
                if (!bias)
                    for (size_t i = 0; i < nb * out; i++) ck_assert(isnan(pb2[i]));
                /* Reduced with sqrt: r sqrt(sum_b S^2 F^2), the standard error of
                 * r sum_b G_b F_b for independent rows. */
                double *sw = malloc(nw * sizeof *sw), r = 1.0 / (double)B;
                gs_head_reduce(nb, nw, pw2, r, 1, sw);
                for (size_t o = 0; o < out; o++)
                    for (size_t j = 0; j < in; j++) {
                        double s = 0.0;
                        for (size_t b = 0; b < B; b++) {
                            double sv = S[b * out + o], f = t.f[b * in + j];
                            s += sv * sv * f * f;
                        }
                        ck_close_i(sw[o * in + j], r * sqrt(s), 1e-12, 1e-300, o * in + j);
                    }
                free(sw);
                free(S);
                free(pw2);
                free(pb2);
                free(scratch);
                thead_free(&t);
            }
}
END_TEST

/* ==== features standard errors ============================================================ */

/* se_j of row b from the per-sample terms, one sample at a time. */
static void naive_features_se(const thead *hs, const double *const *T, int n, size_t M,
                              size_t b, double *se, double *scale) {
    size_t in = hs[0].h.in;
    double *P = calloc(M * in, sizeof *P);
    for (size_t m = 0; m < M; m++)
        for (int i = 0; i < n; i++) {
            size_t out = hs[i].h.out;
            for (size_t o = 0; o < out; o++)
                for (size_t j = 0; j < in; j++)
                    P[m * in + j] += T[i][(b * M + m) * out + o] * hs[i].w[o * in + j];
        }
    *scale = 0.0;
    for (size_t j = 0; j < in; j++) {
        double mean = 0.0, ss = 0.0;
        for (size_t m = 0; m < M; m++) mean += P[m * in + j];
        mean /= (double)M;
        for (size_t m = 0; m < M; m++) {
            ss += (P[m * in + j] - mean) * (P[m * in + j] - mean);
            *scale = fmax(*scale, fabs(P[m * in + j]));
        }
        se[j] = M > 1 ? sqrt(ss / (double)(M - 1) / (double)M) : 0.0;
    }
    free(P);
}

START_TEST(features_se_matches_naive) {
    size_t Ms[] = {1, 2, 7, 64};
    for (int n = 1; n <= 2; n++)
        for (size_t mi = 0; mi < 4; mi++)
            for (size_t bi = 0; bi < NBS; bi++) {
                size_t B = BS[bi], M = Ms[mi], in = 6;
                if (B > 257 && M > 7) continue; /* a large M on a small batch is enough */
                /* Two heads of different widths over the same features. */
                thead hs[2] = {thead_make(B, in, 3, 1, 500 + bi),
                               thead_make(B, in, 2, 0, 600 + bi)};
                hs[1].h.features = hs[0].h.features;
                gs_head heads[2] = {hs[0].h, hs[1].h};
                uint64_t st = 8 + mi;
                double *T0 = rnd_fill(&st, B * M * 3, -2, 2), *T1 = rnd_fill(&st, B * M * 2, -2, 2);
                const double *T[2] = {T0, T1};
                double *P = malloc(M * in * sizeof *P), *se = filled(B * in, NAN);
                double ref[6], scale;
                size_t rows[] = {0, B / 2, B - 1};
                for (size_t ri = 0; ri < 3; ri++) {
                    size_t b = rows[ri];
                    gs_head_features_se(heads, T, n, M, b, P, se + b * in);
                    naive_features_se(hs, T, n, M, b, ref, &scale);
                    for (size_t j = 0; j < in; j++) {
                        if (M == 1) ck_assert(se[b * in + j] == 0.0);
                        ck_close_i(se[b * in + j], ref[j], 1e-12, 1e-13 * scale, j);
                    }
                }
                /* Only the rows asked for were written. */
                for (size_t b = 0; b < B; b++)
                    if (b != 0 && b != B / 2 && b != B - 1)
                        for (size_t j = 0; j < in; j++) ck_assert(isnan(se[b * in + j]));
                free(T0);
                free(T1);
                free(P);
                free(se);
                thead_free(&hs[0]);
                hs[1].h.features = NULL;
                thead_free(&hs[1]);
            }
}
END_TEST

/* A row whose per-sample terms are all equal has se 0, not a rounding residue
 * turned into NaN; constant columns stay exactly 0. */
START_TEST(features_se_of_constant_terms) {
    thead t = thead_make(3, 4, 2, 0, 1);
    size_t M = 5;
    double *T0 = malloc(3 * M * 2 * sizeof *T0);
    for (size_t i = 0; i < 3 * M * 2; i++) T0[i] = (i % 2) ? 0.75 : -1.5;
    const double *T[1] = {T0};
    double P[5 * 4], se[4];
    gs_head_features_se(&t.h, T, 1, M, 1, P, se);
    for (size_t j = 0; j < 4; j++) ck_assert_msg(se[j] == 0.0, "se[%zu] = %g", j, se[j]);
    free(T0);
    thead_free(&t);
}
END_TEST

/* ==== bit-identical whatever the block order ================================================== */

typedef struct {
    gs_head h[2];
    const double *G[2], *S[2];
    const double *T[2];
    size_t M, nw[2];
    double *dF, *pw[2], *pb[2], *pw2[2], *pb2[2], *sf, *fwd[2];
    double *scratch; /* per block: variance scratch then M x in */
    size_t per_block, var_scratch;
} pipeline;

/* Everything one block does, in the api's order: forward of both heads,
 * backward (the second head accumulating into dF), variances, features se. */
static void pipeline_block(pipeline *p, size_t k) {
    for (int i = 0; i < 2; i++) gs_head_forward(&p->h[i], k, p->fwd[i]);
    for (int i = 0; i < 2; i++) {
        gs_head_backward(&p->h[i], p->G[i], k, p->dF, i > 0, p->pw[i] + k * p->nw[i],
                         p->pb[i] + k * p->h[i].out);
        gs_head_backward_var(&p->h[i], p->S[i], k, p->pw2[i] + k * p->nw[i],
                             p->pb2[i] + k * p->h[i].out, p->scratch + k * p->per_block);
    }
    size_t r0, r1, in = p->h[0].in;
    block_range(p->h[0].rows, k, &r0, &r1);
    double *P = p->scratch + k * p->per_block + p->var_scratch;
    for (size_t b = r0; b < r1; b++) gs_head_features_se(p->h, p->T, 2, p->M, b, P, p->sf + b * in);
}

typedef struct {
    pipeline *p;
    const size_t *order;
    size_t n, next;
    pthread_mutex_t mu;
} pool;

static void *pool_worker(void *arg) {
    pool *q = arg;
    for (;;) {
        pthread_mutex_lock(&q->mu);
        size_t i = q->next < q->n ? q->next++ : q->n;
        pthread_mutex_unlock(&q->mu);
        if (i >= q->n) return NULL;
        pipeline_block(q->p, q->order[i]);
    }
}

/* The results of one run: forward params, dF, reduced dW, db, their se, sf. */
typedef struct {
    double *fwd[2], *dF, *dw[2], *db[2], *sw[2], *sb[2], *sf;
} results;

static results run_pipeline(const thead *hs, const double *const *G, const double *const *S,
                            const double *const *T, size_t M, const size_t *order,
                            int threads) {
    size_t B = hs[0].h.rows, in = hs[0].h.in, nb = gs_head_blocks(B);
    pipeline p = {{hs[0].h, hs[1].h}, {G[0], G[1]}, {S[0], S[1]}, {T[0], T[1]}, M, {0, 0},
                  NULL, {NULL, NULL}, {NULL, NULL}, {NULL, NULL}, {NULL, NULL}, NULL,
                  {NULL, NULL}, NULL, 0, 0};
    results r;
    for (int i = 0; i < 2; i++) {
        size_t v = gs_head_var_scratch(&p.h[i]);
        p.var_scratch = v > p.var_scratch ? v : p.var_scratch;
        p.nw[i] = p.h[i].out * in;
        p.pw[i] = filled(nb * p.nw[i], NAN);
        p.pb[i] = filled(nb * p.h[i].out, NAN);
        p.pw2[i] = filled(nb * p.nw[i], NAN);
        p.pb2[i] = filled(nb * p.h[i].out, NAN);
        p.fwd[i] = r.fwd[i] = filled(B * p.h[i].out, NAN);
    }
    p.per_block = p.var_scratch + M * in;
    p.scratch = filled(nb * p.per_block, NAN);
    p.dF = r.dF = filled(B * in, NAN);
    p.sf = r.sf = filled(B * in, NAN);
    if (threads > 1) {
        pool q = {&p, order, nb, 0, PTHREAD_MUTEX_INITIALIZER};
        pthread_t th[4];
        for (int t = 0; t < threads - 1; t++)
            ck_assert_int_eq(pthread_create(&th[t], NULL, pool_worker, &q), 0);
        pool_worker(&q);
        for (int t = 0; t < threads - 1; t++) pthread_join(th[t], NULL);
    } else {
        for (size_t k = 0; k < nb; k++) pipeline_block(&p, order[k]);
    }
    double rr = 1.0 / (double)B;
    for (int i = 0; i < 2; i++) {
        size_t out = p.h[i].out;
        r.dw[i] = malloc(p.nw[i] * sizeof(double));
        r.sw[i] = malloc(p.nw[i] * sizeof(double));
        r.db[i] = malloc(out * sizeof(double));
        r.sb[i] = malloc(out * sizeof(double));
        gs_head_reduce(nb, p.nw[i], p.pw[i], rr, 0, r.dw[i]);
        gs_head_reduce(nb, out, p.pb[i], rr, 0, r.db[i]);
        gs_head_reduce(nb, p.nw[i], p.pw2[i], rr, 1, r.sw[i]);
        gs_head_reduce(nb, out, p.pb2[i], rr, 1, r.sb[i]);
        free(p.pw[i]);
        free(p.pb[i]);
        free(p.pw2[i]);
        free(p.pb2[i]);
    }
    free(p.scratch);
    return r;
}

static void results_same(const results *a, const results *b, const thead *hs, const char *how) {
    size_t B = hs[0].h.rows, in = hs[0].h.in;
    ck_assert_msg(!memcmp(a->dF, b->dF, B * in * sizeof(double)), "%s: dF differs", how);
    ck_assert_msg(!memcmp(a->sf, b->sf, B * in * sizeof(double)), "%s: sf differs", how);
    for (int i = 0; i < 2; i++) {
        size_t out = hs[i].h.out;
        ck_assert_msg(!memcmp(a->fwd[i], b->fwd[i], B * out * sizeof(double)),
                      "%s: forward %d differs", how, i);
        ck_assert_msg(!memcmp(a->dw[i], b->dw[i], out * in * sizeof(double)), "%s: dw", how);
        ck_assert_msg(!memcmp(a->db[i], b->db[i], out * sizeof(double)), "%s: db", how);
        ck_assert_msg(!memcmp(a->sw[i], b->sw[i], out * in * sizeof(double)), "%s: sw", how);
        ck_assert_msg(!memcmp(a->sb[i], b->sb[i], out * sizeof(double)), "%s: sb", how);
    }
}

static void results_free(results *r) {
    free(r->dF);
    free(r->sf);
    for (int i = 0; i < 2; i++) {
        free(r->fwd[i]);
        free(r->dw[i]);
        free(r->db[i]);
        free(r->sw[i]);
        free(r->sb[i]);
    }
}

START_TEST(bit_identical_in_any_block_order) {
    for (size_t bi = 0; bi < NBS; bi++) {
        size_t B = BS[bi], in = 7, M = 4, nb = gs_head_blocks(B);
        thead hs[2] = {thead_make(B, in, 3, 1, 700 + bi), thead_make(B, in, 3, 1, 800 + bi)};
        free(hs[1].f);
        hs[1].f = NULL;
        hs[1].h.features = hs[0].f;
        uint64_t st = 99 + bi;
        double *G0 = rnd_fill(&st, B * 3, -2, 2), *G1 = rnd_fill(&st, B * 3, -2, 2);
        double *S0 = rnd_fill(&st, B * 3, 0, 1), *S1 = rnd_fill(&st, B * 3, 0, 1);
        double *T0 = rnd_fill(&st, B * M * 3, -2, 2), *T1 = rnd_fill(&st, B * M * 3, -2, 2);
        const double *G[2] = {G0, G1}, *S[2] = {S0, S1}, *T[2] = {T0, T1};
        size_t *fwd = malloc(nb * sizeof *fwd), *rev = malloc(nb * sizeof *rev),
               *shuf = malloc(nb * sizeof *shuf);
        for (size_t k = 0; k < nb; k++) fwd[k] = k, rev[k] = nb - 1 - k, shuf[k] = k;
        for (size_t k = nb; k > 1; k--) { /* Fisher-Yates */
            size_t j = (size_t)rnd(&st, 0, (double)k);
            size_t tmp = shuf[k - 1];
            shuf[k - 1] = shuf[j];
            shuf[j] = tmp;
        }
        results ref = run_pipeline(hs, G, S, T, M, fwd, 1);
        ck_all_finite(ref.dF, B * in);
        ck_all_finite(ref.sf, B * in);
        results a = run_pipeline(hs, G, S, T, M, rev, 1);
        results_same(&ref, &a, hs, "reverse order");
        results_free(&a);
        a = run_pipeline(hs, G, S, T, M, shuf, 1);
        results_same(&ref, &a, hs, "shuffled order");
        results_free(&a);
        for (int th = 2; th <= 4; th++) {
            a = run_pipeline(hs, G, S, T, M, shuf, th);
            results_same(&ref, &a, hs, "threads");
            results_free(&a);
        }
        results_free(&ref);
        free(fwd);
        free(rev);
        free(shuf);
        free(G0);
        free(G1);
        free(S0);
        free(S1);
        free(T0);
        free(T1);
        thead_free(&hs[0]);
        thead_free(&hs[1]);
    }
}
END_TEST

static Suite *head_suite(void) {
    Suite *s = suite_create("head");
    TCase *tc = tcase_create("forward_backward");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, blocks_count);
    tcase_add_test(tc, forward_matches_naive);
    tcase_add_test(tc, forward_overwrites_without_bias);
    tcase_add_test(tc, backward_matches_naive);
    tcase_add_test(tc, backward_without_features);
    tcase_add_test(tc, reduce_in_block_order);
    tcase_add_test(tc, reduce_gives_the_head_gradients);
    suite_add_tcase(s, tc);
    tc = tcase_create("standard_errors");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, backward_var_matches_naive);
    tcase_add_test(tc, features_se_matches_naive);
    tcase_add_test(tc, features_se_of_constant_terms);
    suite_add_tcase(s, tc);
    tc = tcase_create("determinism");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, bit_identical_in_any_block_order);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    /* As the server does: the blocks are the parallelism, not OpenBLAS's threads. */
    openblas_set_num_threads(1);
    return tc_run(head_suite());
}
