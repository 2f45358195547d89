/* gs_lanes_cont_avx512.c - the normal and tanh_normal kernels eight rows at a time, one row per AVX-512 lane (built with -mavx512f). */
#include <immintrin.h>
#include <math.h>
#include <sleef.h>
#include <stdint.h>
#include <string.h>

#include "gs_lanes_inl.h"
#include "gs_vmath_avx512_inl.h"
#include "gs_vmath_impl.h"

#if defined(__AVX512F__)
/* ---- normal log-density at given points ----------------------------------------- */

/* gs_log_prob's normal row (gs_dist.c, gs_row.c) lane by lane: sigma =
 * exp(log_scale) (or log_scale = log sigma), 1 / sigma, eps = (x - mu)
 * (1 / sigma); l_m = 0 - 0.5 eps_0 eps_0 - ..., base = 0 - (rho_0 +
 * log(2 pi) / 2) - ..., lp_m = l_m + base; g0 = (sum_m eps) / sigma, g1 =
 * sum_m (eps^2 - 1) (divided by sigma when the scale is sigma). A row's M
 * x D points are one row of M D columns, moved in eight columns at a time;
 * the sums run in the row loop's order. A lane whose sigma or 1 / sigma is
 * not a normal number (the row loop divides there instead) counts as bad. */
int gs_lanes_log_prob_normal_avx512(size_t D, size_t M, const double *loc, const double *scale,
                                    int scale_is_sigma, const double *x, size_t n, double *lp,
                                    double *g0, double *g1, double *scratch) {
    size_t Dp = kpad(D), L = M * D;
    double *mut = scratch, *sgt = mut + 8 * Dp, *ist = sgt + 8 * Dp, *s0t = ist + 8 * Dp,
           *s1t = s0t + 8 * Dp, *lpt = s1t + 8 * Dp;
    const __m512d zero = _mm512_setzero_pd(), one = _mm512_set1_pd(1.0),
                  half = _mm512_set1_pd(0.5), h2pi = _mm512_set1_pd(0.91893853320467274178),
                  tiny = _mm512_set1_pd(0x1p-1022), inf = _mm512_set1_pd(INFINITY);
    __mmask8 bad = 0;
    for (size_t b = 0; b < n; b += 8) {
        size_t nl = n - b < 8 ? n - b : 8;
        __mmask8 lm = lane_mask(nl), nf = 0;
        load_t(D, loc + b * D, D, nl, mut);
        load_t(D, scale + b * D, D, nl, sgt);
        __m512d base = zero;
        for (size_t i = 0; i < D; i++) {
            __m512d sc = ld(sgt + 8 * i), sg, rho;
            if (scale_is_sigma) sg = sc, rho = Sleef_logd8_u10avx512f(sc);
            else rho = sc, sg = Sleef_expd8_u10avx512f(sc);
            __m512d r = _mm512_div_pd(one, sg);
            /* isnormal(sigma) && isnormal(1 / sigma), else the row loop. */
            __m512d as = _mm512_abs_pd(sg), ar = _mm512_abs_pd(r);
            nf |= (__mmask8)~(_mm512_cmp_pd_mask(as, tiny, _CMP_GE_OQ) &
                              _mm512_cmp_pd_mask(as, inf, _CMP_LT_OQ) &
                              _mm512_cmp_pd_mask(ar, tiny, _CMP_GE_OQ) &
                              _mm512_cmp_pd_mask(ar, inf, _CMP_LT_OQ));
            base = _mm512_sub_pd(base, _mm512_add_pd(rho, h2pi));
            st(sgt + 8 * i, sg);
            st(ist + 8 * i, r);
            st(s0t + 8 * i, zero);
            st(s1t + 8 * i, zero);
        }
        const double *xb = x + b * L;
        __m512d l = zero;
        for (size_t k0 = 0, i = 0, m = 0; k0 < L; k0 += 8) {
            __mmask8 cm = lane_mask(L - k0);
            __m512d r[8];
#pragma GCC unroll 8
            for (size_t j = 0; j < 8; j++)
                r[j] = j < nl ? _mm512_maskz_loadu_pd(cm, xb + j * L + k0) : zero;
            tr8(r);
            size_t nc = L - k0 < 8 ? L - k0 : 8;
            for (size_t j = 0; j < nc; j++) {
                __m512d e = _mm512_mul_pd(_mm512_sub_pd(r[j], ld(mut + 8 * i)), ld(ist + 8 * i));
                __m512d e2 = _mm512_mul_pd(e, e);
                l = _mm512_sub_pd(l, _mm512_mul_pd(_mm512_mul_pd(half, e), e));
                st(s0t + 8 * i, _mm512_add_pd(ld(s0t + 8 * i), e));
                st(s1t + 8 * i, _mm512_add_pd(ld(s1t + 8 * i), _mm512_sub_pd(e2, one)));
                if (++i == D) {
                    __m512d v = _mm512_add_pd(l, base);
                    nf |= nonfinite(v);
                    st(lpt + 8 * m, v);
                    l = zero, i = 0, m++;
                }
            }
        }
        for (size_t i = 0; i < D; i++) {
            __m512d sg = ld(sgt + 8 * i);
            __m512d a = _mm512_div_pd(ld(s0t + 8 * i), sg), c = ld(s1t + 8 * i);
            if (scale_is_sigma) c = _mm512_div_pd(c, sg);
            nf |= nonfinite(a) | nonfinite(c);
            st(s0t + 8 * i, a);
            st(s1t + 8 * i, c);
        }
        bad |= nf & lm;
        store_t(M, lpt, lp + b * M, M, nl);
        store_t(D, s0t, g0 + b * D, D, nl);
        store_t(D, s1t, g1 + b * D, D, nl);
    }
    return bad != 0;
}

size_t gs_lanes_log_prob_scratch(size_t D, size_t M) { return 8 * (5 * kpad(D) + kpad(M)); }

/* ---- reparameterised kernels: pathwise E[f], entropy, SAC continuous ------------- */

/* Per group of eight rows, in the row loop's order and arithmetic (gs_row.c
 * gs_cont_params, gs_cont_from_eps, gs_cont_finish, gs_cont_points;
 * gs_estim.c and gs_sac.c for the terms; gs_reduce_terms2 and gs_mean_se
 * for the means and standard errors): the noise, then one pass over the
 * M x D columns (u = mu + sigma eps, the tanh quantities, the log-density,
 * the point, the two gradient terms and their column sums), then the
 * means, the two-pass standard errors and the per-row statistics. */

/* Lane blocks of one group (8 x kpad(n) doubles each). */
typedef struct {
    double *eps, *in, *x, *g0, *g1, *lp, *qv, *mu, *sg, *s0, *s1;
} cont_blocks;

static cont_blocks cont_layout(size_t D, size_t M, double *p) {
    size_t L = 8 * kpad(M * D), Mb = 8 * kpad(M), Db = 8 * kpad(D);
    cont_blocks c;
    double **big[] = {&c.eps, &c.in, &c.x, &c.g0, &c.g1};
    for (size_t i = 0; i < sizeof big / sizeof *big; i++, p += L) *big[i] = p;
    c.lp = p, p += Mb;
    c.qv = p, p += Mb;
    double **dims[] = {&c.mu, &c.sg, &c.s0, &c.s1};
    for (size_t i = 0; i < sizeof dims / sizeof *dims; i++, p += Db) *dims[i] = p;
    return c;
}

size_t gs_lanes_cont_scratch(size_t D, size_t M) {
    return 8 * (5 * kpad(M * D) + 2 * kpad(M) + 4 * kpad(D));
}

/* Mean and (when se) the standard error of v[8 m stride] over m < M, lane
 * by lane: the sums of gs_mean_se and gs_reduce_terms, in their order. */
static inline __m512d mean_se8(const double *v, size_t M, size_t stride, __m512d *se) {
    __m512d s = _mm512_setzero_pd();
    for (size_t m = 0; m < M; m++) s = _mm512_add_pd(s, ld(v + 8 * m * stride));
    __m512d mean = _mm512_div_pd(s, _mm512_set1_pd((double)M));
    if (se) {
        __m512d ss = _mm512_setzero_pd();
        for (size_t m = 0; m < M; m++) {
            __m512d dv = _mm512_sub_pd(ld(v + 8 * m * stride), mean);
            ss = _mm512_add_pd(ss, _mm512_mul_pd(dv, dv));
        }
        *se = M > 1 ? _mm512_sqrt_pd(_mm512_div_pd(_mm512_div_pd(ss, _mm512_set1_pd((double)(M - 1))),
                                                   _mm512_set1_pd((double)M)))
                    : _mm512_setzero_pd();
    }
    return mean;
}

/* mean_se8 of columns i0 .. i0 + W - 1 of both g0 and g1 (stride D) at
 * once, for the gradients' means and standard errors: the same sums in
 * the same order per column, with 2 W independent chains side by side
 * where one column after another waits on each chain's latency (2-4 %
 * faster continuous kernels, measured). mu and se get g0's W columns,
 * then g1's. W (at most 4) is a constant after inlining. */
static inline __attribute__((always_inline)) void cols_mean_se(size_t W, const double *g0,
                                                               const double *g1, size_t M,
                                                               size_t D, size_t i0, int want_se,
                                                               __m512d *mu, __m512d *se) {
    const __m512d fM = _mm512_set1_pd((double)M), f1 = _mm512_set1_pd((double)(M - 1));
    __m512d a[8];
    for (size_t c = 0; c < 2 * W; c++) a[c] = _mm512_setzero_pd();
    for (size_t m = 0; m < M; m++)
        for (size_t c = 0; c < W; c++) {
            a[c] = _mm512_add_pd(a[c], ld(g0 + 8 * (m * D + i0 + c)));
            a[W + c] = _mm512_add_pd(a[W + c], ld(g1 + 8 * (m * D + i0 + c)));
        }
    for (size_t c = 0; c < 2 * W; c++) mu[c] = _mm512_div_pd(a[c], fM), a[c] = _mm512_setzero_pd();
    if (!want_se) return;
    for (size_t m = 0; m < M; m++)
        for (size_t c = 0; c < W; c++) {
            __m512d d0 = _mm512_sub_pd(ld(g0 + 8 * (m * D + i0 + c)), mu[c]);
            __m512d d1 = _mm512_sub_pd(ld(g1 + 8 * (m * D + i0 + c)), mu[W + c]);
            a[c] = _mm512_add_pd(a[c], _mm512_mul_pd(d0, d0));
            a[W + c] = _mm512_add_pd(a[W + c], _mm512_mul_pd(d1, d1));
        }
    for (size_t c = 0; c < 2 * W; c++)
        se[c] = M > 1 ? _mm512_sqrt_pd(_mm512_div_pd(_mm512_div_pd(a[c], f1), fM)) : _mm512_setzero_pd();
}

static inline __m512d neg8(__m512d v) {
    return _mm512_castsi512_pd(
        _mm512_xor_si512(_mm512_castpd_si512(v), _mm512_set1_epi64((long long)0x8000000000000000ULL)));
}

int gs_lanes_cont_avx512(const gs_lanes_cont *k, size_t b, size_t n, double *scratch) {
    size_t D = k->D, M = k->M, L = M * D, nl = n < 8 ? n : 8;
    cont_blocks c = cont_layout(D, M, scratch);
    const __m512d zero = _mm512_setzero_pd(), one = _mm512_set1_pd(1.0), two = _mm512_set1_pd(2.0),
                  mone = _mm512_set1_pd(-1.0), mtwo = _mm512_set1_pd(-2.0),
                  half = _mm512_set1_pd(0.5), a = _mm512_set1_pd(k->alpha),
                  a2 = _mm512_mul_pd(a, two);
    __mmask8 lm = lane_mask(nl), nf = 0;
    int tanh_ = k->tanh_;

    /* sigma (exp of log_scale, or the scale, whose log is rho) and the
     * log-density's constant: 0 - (rho_i + log(2 pi) / 2) ..., then - log s_i. */
    load_t(D, k->loc + b * D, D, nl, c.mu);
    load_t(D, k->scale + b * D, D, nl, c.sg);
    __m512d base = zero;
    for (size_t i = 0; i < D; i++) {
        __m512d sc = ld(c.sg + 8 * i), rho = sc;
        if (k->scale_is_sigma) rho = Sleef_logd8_u10avx512f(sc);
        else st(c.sg + 8 * i, Sleef_expd8_u10avx512f(sc));
        base = _mm512_sub_pd(base, _mm512_add_pd(rho, _mm512_set1_pd(0.91893853320467274178)));
    }
    if (tanh_)
        for (size_t i = 0; i < D; i++) base = _mm512_sub_pd(base, _mm512_set1_pd(k->logs[i]));

    if (k->eps) load_t(L, k->eps + b * L, L, nl, c.eps);
    else gs_rng_normals_lanes_avx512(k->key, b, M, D, c.eps);
    const double *in = k->kind == GS_LC_REPARAM ? k->gx : k->kind == GS_LC_SAC ? k->dq : NULL;
    const double *qv = k->kind == GS_LC_REPARAM ? k->glp : k->kind == GS_LC_SAC ? k->q : NULL;
    if (in) load_t(L, in + b * L, L, nl, c.in);
    if (qv) load_t(M, qv + b * M, M, nl, c.qv);

    for (size_t m = 0; m < M; m++) {
        __m512d l = zero;
        /* REPARAM: glp_m (0 without); the per-sample coefficient. */
        __m512d cm = k->kind == GS_LC_REPARAM && qv ? ld(c.qv + 8 * m) : zero;
        for (size_t i = 0; i < D; i++) {
            size_t j = m * D + i;
            __m512d e = ld(c.eps + 8 * j), sg = ld(c.sg + 8 * i);
            __m512d u = _mm512_add_pd(ld(c.mu + 8 * i), _mm512_mul_pd(sg, e));
            __m512d t = zero, omt2 = zero, l1, g0, g1;
            l = _mm512_sub_pd(l, _mm512_mul_pd(_mm512_mul_pd(half, e), e));
            if (tanh_) {
                /* The entropy's terms do not use 1 - t^2. */
                tanh8(u, &t, k->kind == GS_LC_ENTROPY ? NULL : &omt2, &l1);
                l = _mm512_sub_pd(l, l1);
            }
            if (k->x) {
                __m512d x = u;
                if (tanh_) {
                    x = _mm512_add_pd(_mm512_set1_pd(k->c[i]), _mm512_mul_pd(_mm512_set1_pd(k->s[i]), t));
                    if (k->low) {
                        __m512d lo = _mm512_set1_pd(k->low[i]), hi = _mm512_set1_pd(k->high[i]);
                        x = _mm512_mask_mov_pd(x, _mm512_cmp_pd_mask(x, lo, _CMP_LT_OQ), lo);
                        x = _mm512_mask_mov_pd(x, _mm512_cmp_pd_mask(x, hi, _CMP_GT_OQ), hi);
                    }
                }
                nf |= nonfinite(x);
                st(c.x + 8 * j, x);
            }
            if (k->kind == GS_LC_REPARAM) {
                __m512d se = _mm512_mul_pd(sg, e);
                __m512d dxdmu = tanh_ ? _mm512_mul_pd(_mm512_set1_pd(k->s[i]), omt2) : one;
                __m512d gd = _mm512_mul_pd(ld(c.in + 8 * j), dxdmu);
                g0 = _mm512_add_pd(gd, _mm512_mul_pd(_mm512_mul_pd(cm, two), t));
                __m512d r = _mm512_add_pd(mone, _mm512_mul_pd(_mm512_mul_pd(two, t), se));
                g1 = _mm512_add_pd(_mm512_mul_pd(gd, se), _mm512_mul_pd(cm, r));
            } else if (k->kind == GS_LC_ENTROPY) {
                g0 = _mm512_mul_pd(mtwo, t);
                /* The normal's term is exactly 1 (never 0 sigma eps). */
                g1 = tanh_ ? _mm512_sub_pd(one, _mm512_mul_pd(_mm512_mul_pd(_mm512_mul_pd(two, t), sg), e))
                           : one;
            } else {
                __m512d se = _mm512_mul_pd(sg, e);
                __m512d dqd = _mm512_mul_pd(ld(c.in + 8 * j), _mm512_mul_pd(_mm512_set1_pd(k->s[i]), omt2));
                g0 = _mm512_sub_pd(_mm512_mul_pd(a2, t), dqd);
                __m512d r = _mm512_add_pd(mone, _mm512_mul_pd(_mm512_mul_pd(two, t), se));
                g1 = _mm512_sub_pd(_mm512_mul_pd(a, r), _mm512_mul_pd(dqd, se));
            }
            st(c.g0 + 8 * j, g0);
            st(c.g1 + 8 * j, g1);
        }
        __m512d v = _mm512_add_pd(l, base);
        nf |= nonfinite(v);
        st(c.lp + 8 * m, v);
    }

    /* Means, standard errors (two passes over the stored terms), and the
     * scale's gradient divided by sigma when the caller sent sigma. */
    int se = k->se0 != NULL;
    __m512d mus[8], ses[8] = {zero, zero, zero, zero, zero, zero, zero, zero};
    for (size_t i = 0; i < D; i++) {
        size_t c4 = i % 4, w = D - (i - c4) < 4 ? D - (i - c4) : 4;
        if (c4 == 0) switch (w) {
            case 4: cols_mean_se(4, c.g0, c.g1, M, D, i, se, mus, ses); break;
            case 3: cols_mean_se(3, c.g0, c.g1, M, D, i, se, mus, ses); break;
            case 2: cols_mean_se(2, c.g0, c.g1, M, D, i, se, mus, ses); break;
            default: cols_mean_se(1, c.g0, c.g1, M, D, i, se, mus, ses); break;
            }
        __m512d mu0 = mus[c4], mu1 = mus[w + c4], e0 = ses[c4], e1 = ses[w + c4];
        if (k->scale_is_sigma) {
            __m512d sg = ld(c.sg + 8 * i);
            mu1 = _mm512_div_pd(mu1, sg);
            if (se) e1 = _mm512_div_pd(e1, sg);
        }
        nf |= nonfinite(mu0) | nonfinite(mu1) | nonfinite(e0) | nonfinite(e1);
        st(c.s0 + 8 * i, mu0);
        st(c.s1 + 8 * i, mu1);
        st(c.mu + 8 * i, e0);
        st(c.sg + 8 * i, e1);
    }

    /* Per-row statistics: the entropy -mean l_m, SAC's loss mean(alpha l_m - q_m). */
    if (k->kind != GS_LC_REPARAM) {
        for (size_t m = 0; m < M; m++) st(c.g0 + 8 * m, neg8(ld(c.lp + 8 * m)));
        __m512d hse = zero, h = mean_se8(c.g0, M, 1, k->kind == GS_LC_ENTROPY ? (k->se_stat ? &hse : NULL)
                                                                            : (k->se_ent ? &hse : NULL));
        double *ho = k->kind == GS_LC_ENTROPY ? k->stat : k->ent;
        double *hs = k->kind == GS_LC_ENTROPY ? k->se_stat : k->se_ent;
        nf |= nonfinite(h) | nonfinite(hse);
        _mm512_mask_storeu_pd(ho + b, lm, h);
        if (hs) _mm512_mask_storeu_pd(hs + b, lm, hse);
        if (k->kind == GS_LC_SAC && k->q) {
            for (size_t m = 0; m < M; m++)
                st(c.g0 + 8 * m, _mm512_sub_pd(_mm512_mul_pd(a, ld(c.lp + 8 * m)), ld(c.qv + 8 * m)));
            __m512d lse = zero, loss = mean_se8(c.g0, M, 1, k->se_stat ? &lse : NULL);
            nf |= nonfinite(loss) | nonfinite(lse);
            _mm512_mask_storeu_pd(k->stat + b, lm, loss);
            if (k->se_stat) _mm512_mask_storeu_pd(k->se_stat + b, lm, lse);
        }
    }

    int sm = k->stream;
    if (k->x) store_rows(L, c.x, k->x + b * L, nl, stream_ok(sm, k->x + b * L, L));
    if (k->lp) store_rows(M, c.lp, k->lp + b * M, nl, stream_ok(sm, k->lp + b * M, M));
    store_rows(D, c.s0, k->g0 + b * D, nl, stream_ok(sm, k->g0 + b * D, D));
    store_rows(D, c.s1, k->g1 + b * D, nl, stream_ok(sm, k->g1 + b * D, D));
    if (se) {
        store_rows(D, c.mu, k->se0 + b * D, nl, stream_ok(sm, k->se0 + b * D, D));
        store_rows(D, c.sg, k->se1 + b * D, nl, stream_ok(sm, k->se1 + b * D, D));
    }
    return (nf & lm) != 0;
}

#else
#error "gs_lanes_cont_avx512.c must be compiled with -mavx512f"
#endif
