/* gs_lanes_avx512.c - the categorical kernels eight rows at a time, one row per AVX-512 lane (built with -mavx512f). */
#include <immintrin.h>
#include <math.h>
#include <sleef.h>
#include <stdint.h>
#include <string.h>

#include "gs_lanes_inl.h"
#include "gs_vmath_impl.h"

#if defined(__AVX512F__)

/* Lanes whose log p is -inf: p = 0 there, and a product p t with p is
 * taken as 0 (0 log 0 = 0, MATH.md §2), not 0 times -inf. A finite logit
 * gets a finite log p unless the logits' spread overflows (1e308, -1e308). */
static inline __mmask8 neg_inf(__m512d l) {
    return _mm512_cmp_pd_mask(l, _mm512_set1_pd(-INFINITY), _CMP_EQ_OQ);
}

/* The first pass of every softmax here, lane by lane: x = z - mx (mx = max
 * z, the caller's, from load_t_max), e = exp x, s = e_0 + e_1 + ..., t =
 * e_0 x_0 + e_1 x_1 + ... (left to right), where an x of -inf (a spread of
 * logits that overflows, 1e308 and -1e308) has e = 0 and adds 0 (0 log 0 =
 * 0, MATH.md §2). xt gets x and et gets e (zt may be xt); *ninfo gets the
 * lanes with an x of -inf. Then r = 1 / s, c = r t (the mean of x under p)
 * and the entropy is H = log s - c, two terms >= 0 (t <= 0): no
 * cancellation. */
static inline void sums8(size_t K, const double *zt, double *xt, double *et, __m512d mx,
                         __m512d *so, __m512d *to, __mmask8 *ninfo) {
    __m512d s = _mm512_setzero_pd(), t = _mm512_setzero_pd();
    for (size_t k = 0; k < K; k++) {
        __m512d x = _mm512_sub_pd(ld(zt + 8 * k), mx), e = Sleef_expd8_u10avx512f(x);
        st(xt + 8 * k, x);
        st(et + 8 * k, e);
        s = _mm512_add_pd(s, e);
        t = _mm512_add_pd(t, _mm512_mul_pd(e, x));
    }
    /* 0 (-inf) made t NaN: the sum again with those products as 0 (the
     * same bits in the other lanes). */
    __mmask8 ni = 0;
    if (nonfinite(t)) {
        t = _mm512_setzero_pd();
        for (size_t k = 0; k < K; k++) {
            __m512d x = ld(xt + 8 * k);
            __mmask8 m = neg_inf(x);
            ni |= m;
            t = _mm512_add_pd(t, _mm512_maskz_mul_pd(~m, ld(et + 8 * k), x));
        }
    }
    *so = s;
    *to = t;
    *ninfo = ni;
}

/* sums8, then p = e r over et (in place), lse = log s and H = lse - r t
 * (the max term contributes exp(0) = 1: s >= 1 and its log is finite).
 * The sampled kernels need log p = x - lse at a few columns only and take
 * it from xt; softmax8 forms it everywhere. */
static inline __m512d probs8(size_t K, const double *zt, double *xt, double *pt, __m512d mx,
                             __m512d *lseo, __mmask8 *ninfo) {
    __m512d s, t;
    sums8(K, zt, xt, pt, mx, &s, &t, ninfo);
    __m512d lse = Sleef_logd8_u10avx512f(s), r = _mm512_div_pd(_mm512_set1_pd(1.0), s);
    for (size_t k = 0; k < K; k++) st(pt + 8 * k, _mm512_mul_pd(ld(pt + 8 * k), r));
    *lseo = lse;
    return _mm512_sub_pd(lse, _mm512_mul_pd(r, t));
}

/* The softmax of gs_vm_cat_avx512, lane by lane: probs8, then logp = x -
 * lse in lt. zt may be lt. Returns H; *lseo gets lse, *ninfo the lanes
 * with a logp of -inf. */
static inline __m512d softmax8(size_t K, const double *zt, double *lt, double *pt, __m512d mx,
                               __m512d *lseo, __mmask8 *ninfo) {
    __m512d H = probs8(K, zt, lt, pt, mx, lseo, ninfo);
    for (size_t k = 0; k < K; k++) st(lt + 8 * k, _mm512_sub_pd(ld(lt + 8 * k), *lseo));
    return H;
}

/* One row of the same arithmetic, for gs_cat_row on AVX-512: the softmax of
 * a single row is bit for bit the one its lane of softmax8 computes, so a
 * draw from gs_sample's p and one from a lane kernel's p agree. The
 * exponentials run eight at a time (SLEEF's lanes are independent); the
 * sums run left to right as a lane's do. */
double gs_vm_cat_avx512(size_t K, const double *z, double *logp, double *p, double *xo, double *co) {
    double mx = z[0];
    for (size_t k = 1; k < K; k++) mx = z[k] > mx ? z[k] : mx;
    __m512d mv = _mm512_set1_pd(mx);
    for (size_t i = 0; i < K; i += 8) {
        __mmask8 m = lane_mask(K - i);
        __m512d x = _mm512_maskz_sub_pd(m, _mm512_maskz_loadu_pd(m, z + i), mv);
        _mm512_mask_storeu_pd(logp + i, m, x);
        if (xo) _mm512_mask_storeu_pd(xo + i, m, x);
        _mm512_mask_storeu_pd(p + i, m, Sleef_expd8_u10avx512f(x));
    }
    double s = 0.0, t = 0.0;
    for (size_t k = 0; k < K; k++) {
        s += p[k];
        t += logp[k] == -INFINITY ? 0.0 : p[k] * logp[k];
    }
    double lse = _mm512_cvtsd_f64(Sleef_logd8_u10avx512f(_mm512_set1_pd(s))), r = 1.0 / s;
    double c = r * t;
    for (size_t k = 0; k < K; k++) {
        logp[k] -= lse;
        p[k] *= r;
    }
    if (co) *co = c;
    return lse - c;
}

/* gs_lanes_score_avx512's blocks: zt, pt, gt, set (K), vt, wt, ut, kt (M),
 * and work: score_reduce8's seven K blocks, which the entropy's pick_v8
 * uses first for its 8 M values (hence one more M block). */
size_t gs_lanes_scratch(size_t K, size_t M) { return 8 * (11 * kpad(K) + 5 * kpad(M)); }

/* ---- exact entropy ------------------------------------------------------------ */

/* Column k of the exact entropy's gradient: (e r) (c - x), 0 where x = -inf. */
static inline __m512d grad8(const double *xt, const double *et, size_t k, __m512d r, __m512d c,
                            __mmask8 ni) {
    __m512d x = ld(xt + 8 * k);
    __m512d g = _mm512_mul_pd(_mm512_mul_pd(ld(et + 8 * k), r), _mm512_sub_pd(c, x));
    return ni ? _mm512_maskz_mov_pd(~neg_inf(x), g) : g;
}

/* h[b] = H of row b of z (n rows of K), grad[b K + j] = dH/dz_j, in one
 * pass over the row after the sums (log p itself is never formed):
 * x = z - max z, e = exp x, s = e_0 + e_1 + ..., t = e_0 x_0 + e_1 x_1 +
 * ... (left to right), lse = log s, r = 1 / s, c = r t (the mean of x
 * under p), H = lse - c (a sum of two terms >= 0, since t <= 0), and
 * grad_j = -p_j (log p_j + H) = p_j (c - x_j) with p_j = e_j r. An x of
 * -inf (a spread of logits that overflows, 1e308 and -1e308) has e = 0 and
 * adds 0 to t and to the gradient (0 log 0 = 0, MATH.md §2). The row
 * loop (gs_estim.c entropy_exact_row) computes the same bits. */
int gs_lanes_entropy_cat_avx512(size_t K, const double *z, size_t n, double *h, double *grad,
                                int stream, double *scratch) {
    double *xt = scratch, *et = xt + 8 * kpad(K);
    __mmask8 bad = 0;
    int nt = stream_ok(stream, grad, K);
    for (size_t b = 0; b < n; b += 8) {
        size_t nl = n - b < 8 ? n - b : 8;
        gs_prefetch_rows(z, K, b, n);
        __m512d mx = load_t_max(K, z + b * K, K, nl, xt);
        __m512d s, t;
        __mmask8 ni;
        sums8(K, xt, xt, et, mx, &s, &t, &ni);
        /* The max term contributes exp(0) = 1: s >= 1 and its log is finite. */
        __m512d r = _mm512_div_pd(_mm512_set1_pd(1.0), s), c = _mm512_mul_pd(r, t);
        __m512d H = _mm512_sub_pd(Sleef_logd8_u10avx512f(s), c);
        /* A finite H needs finite sums, so every x is finite or -inf and
         * every gradient finite: each x_j lies in [min x, 0] and so does
         * c, their mean, so |c - x_j| <= |min x| and 0 <= p_j <= 1. A NaN
         * or infinite logit makes x, s, t and H NaN. */
        __mmask8 lm = lane_mask(nl), nf = nonfinite(H);
        _mm512_mask_storeu_pd(h + b, lm, H);
        bad |= nf & lm;
        if (nt && nl == 8) {
            for (size_t k = 0; k < K; k++) st(xt + 8 * k, grad8(xt, et, k, r, c, ni));
            store_rows(K, xt, grad + b * K, nl, nt);
            continue;
        }
        /* Not streaming: eight columns at a time from registers to the
         * rows (store_t's transposes, without the round trip through xt). */
        double *gb = grad + b * K;
        for (size_t k0 = 0; k0 < K; k0 += 8) {
            size_t nc = K - k0 < 8 ? K - k0 : 8;
            if (nc <= 2) {
                for (size_t k = k0; k < K; k++) st(xt + 8 * k, grad8(xt, et, k, r, c, ni));
                store_t2(xt + 8 * k0, gb + k0, K, nl, nc);
                break;
            }
            __m512d v[8];
#pragma GCC unroll 8
            for (size_t j = 0; j < 8; j++) v[j] = j < nc ? grad8(xt, et, k0 + j, r, c, ni) : _mm512_setzero_pd();
            store_cols8(v, gb + k0, K, nl, lane_mask(nc));
        }
    }
    if (nt) gs_stream_fence();
    return bad != 0;
}

/* ---- SAC discrete actor, exact ------------------------------------------------ */

/* L = sum_k p_k (alpha log p_k - Q_k), grad_j = p_j (alpha log p_j - Q_j - L),
 * H; n rows of z and q (K each). A log p_k of -inf adds 0 to L and gets 0. */
int gs_lanes_sac_exact_avx512(size_t K, const double *z, const double *q, double alpha, size_t n,
                              double *loss, double *ent, double *grad, int stream,
                              double *scratch) {
    double *zt = scratch, *pt = zt + 8 * kpad(K), *qt = pt + 8 * kpad(K);
    __m512d a = _mm512_set1_pd(alpha);
    __mmask8 bad = 0;
    int nt = stream_ok(stream, grad, K);
    for (size_t b = 0; b < n; b += 8) {
        size_t nl = n - b < 8 ? n - b : 8;
        __mmask8 lm = lane_mask(nl);
        __m512d mx, lse;
        __mmask8 ni;
        gs_prefetch_rows(z, K, b, n);
        gs_prefetch_rows(q, K, b, n);
        mx = load_t_max(K, z + b * K, K, nl, zt);
        load_t(K, q + b * K, K, nl, qt);
        __m512d H = softmax8(K, zt, zt, pt, mx, &lse, &ni);
        __mmask8 nf = nonfinite(H);
        _mm512_mask_storeu_pd(ent + b, lm, H);
        __m512d L = _mm512_setzero_pd();
        for (size_t k = 0; k < K; k++) {
            /* t_k = alpha log p_k - Q_k; p_k = 0 times a finite t_k adds 0. */
            __m512d l = ld(zt + 8 * k);
            __m512d t = _mm512_sub_pd(_mm512_mul_pd(a, l), ld(qt + 8 * k));
            st(qt + 8 * k, t);
            __m512d term = _mm512_mul_pd(ld(pt + 8 * k), t);
            if (ni) term = _mm512_maskz_mov_pd(~neg_inf(l), term);
            L = _mm512_add_pd(L, term);
        }
        _mm512_mask_storeu_pd(loss + b, lm, L);
        nf |= nonfinite(L);
        for (size_t k = 0; k < K; k++) {
            __m512d g = _mm512_mul_pd(ld(pt + 8 * k), _mm512_sub_pd(ld(qt + 8 * k), L));
            if (ni) g = _mm512_maskz_mov_pd(~neg_inf(ld(zt + 8 * k)), g);
            nf |= nonfinite(g);
            st(qt + 8 * k, g);
        }
        bad |= nf & lm;
        store_rows(K, qt, grad + b * K, nl, nt);
    }
    if (nt) gs_stream_fence();
    return bad != 0;
}

/* ---- Boltzmann policy ----------------------------------------------------------- */

/* z = Q / alpha; log_probs, probs, H and V = alpha (max z + lse) (the value
 * alpha (z_k - log p_k) at the argmax k, where log p_k = 0 - lse exactly).
 * Returns 1 when some row's H, V or a log_prob is not finite. */
int gs_lanes_policy_avx512(size_t K, const double *q, double alpha, size_t n, double *probs,
                           double *log_probs, double *ent, double *value, int stream,
                           double *scratch) {
    double *zt = scratch, *pt = zt + 8 * kpad(K);
    __m512d a = _mm512_set1_pd(alpha);
    __mmask8 bad = 0;
    int nt = stream_ok(stream, probs, K) && stream_ok(stream, log_probs, K);
    for (size_t b = 0; b < n; b += 8) {
        size_t nl = n - b < 8 ? n - b : 8;
        __mmask8 lm = lane_mask(nl);
        __m512d mx, lse;
        __mmask8 ni;
        gs_prefetch_rows(q, K, b, n);
        load_t(K, q + b * K, K, nl, zt);
        mx = _mm512_div_pd(ld(zt), a);
        st(zt, mx);
        for (size_t k = 1; k < K; k++) {
            __m512d zk = _mm512_div_pd(ld(zt + 8 * k), a);
            st(zt + 8 * k, zk);
            mx = _mm512_max_pd(zk, mx);
        }
        __m512d H = softmax8(K, zt, zt, pt, mx, &lse, &ni);
        __m512d V = _mm512_mul_pd(a, _mm512_add_pd(mx, lse));
        /* A log_prob of -inf leaves H finite: test it too. */
        __mmask8 nf = nonfinite(H) | nonfinite(V) | ni;
        bad |= nf & lm;
        _mm512_mask_storeu_pd(ent + b, lm, H);
        _mm512_mask_storeu_pd(value + b, lm, V);
        store_rows(K, zt, log_probs + b * K, nl, nt);
        store_rows(K, pt, probs + b * K, nl, nt);
    }
    if (nt) gs_stream_fence();
    return bad != 0;
}

/* ---- categorical score terms -------------------------------------------------- */

/* The values v_m of the samples of a group's n rows, row by row into vr
 * (rows of M): with q, v_m = alpha log p_{k_m} - q_m (SAC), else -log
 * p_{k_m} (entropy), where row l drew ka[l M + m] (rows of M, n of them).
 * z_{k_m} is picked from the row's logits (z, rows of K <= 32) in
 * registers, by vpermt2pd from columns 0-15 or 16-31, then x = z - mx and
 * log p = x - lse with lane l's mx and lse: probs8's bits. Then one
 * transpose of v makes the lane layout, where picking from it took 16
 * scalar loads and stores per row and SAC's actions and q a transpose each. */
/* A sample's value from its log p: alpha lp - q with the critic's q (SAC),
 * else -lp (the entropy; the sign flipped, as the row loop's -lp). */
static inline __m512d sample_v8(__m512d lp, __m512d a, int has_q, __m512d q) {
    return has_q ? _mm512_sub_pd(_mm512_mul_pd(a, lp), q)
                 : _mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(lp),
                                                        _mm512_set1_epi64(INT64_MIN)));
}

static inline void pick_v8(size_t K, size_t M, const double *z, const int64_t *ka, const double *q,
                           __m512d a, __m512d mx, __m512d lse, size_t n, double *vr) {
    const __m512d zero = _mm512_setzero_pd();
    double mxa[8], lsa[8];
    _mm512_storeu_pd(mxa, mx);
    _mm512_storeu_pd(lsa, lse);
    for (size_t l = 0; l < n; l++) {
        const double *zr = z + l * K;
        __m512d z0 = _mm512_maskz_loadu_pd(lane_mask(K), zr);
        __m512d z1 = K > 8 ? _mm512_maskz_loadu_pd(lane_mask(K - 8), zr + 8) : zero;
        __m512d z2 = K > 16 ? _mm512_maskz_loadu_pd(lane_mask(K - 16), zr + 16) : zero;
        __m512d z3 = K > 24 ? _mm512_maskz_loadu_pd(lane_mask(K - 24), zr + 24) : zero;
        __m512d ml = _mm512_set1_pd(mxa[l]), ll = _mm512_set1_pd(lsa[l]);
        for (size_t m0 = 0; m0 < M; m0 += 8) {
            __mmask8 mm = lane_mask(M - m0);
            __m512i k = _mm512_maskz_loadu_epi64(mm, ka + l * M + m0);
            __m512d zk = _mm512_mask_mov_pd(_mm512_permutex2var_pd(z0, k, z1),
                                            _mm512_test_epi64_mask(k, _mm512_set1_epi64(16)),
                                            _mm512_permutex2var_pd(z2, k, z3));
            __m512d lp = _mm512_sub_pd(_mm512_sub_pd(zk, ml), ll);
            __m512d qv = q ? _mm512_maskz_loadu_pd(mm, q + l * M + m0) : zero;
            _mm512_mask_storeu_pd(vr + l * M + m0, mm, sample_v8(lp, a, q != NULL, qv));
        }
    }
}

/* Mean and standard errors of the score terms g_mj = w_m (e_{k_m} - p)_j
 * of eight rows at once: the arithmetic of gs_cat_score_reduce (gs_row.c),
 * whose comment derives it, lane by lane; wt is M x 8, the column blocks
 * K x 8, and sample m of lane l drew kt[ksm m + ksl l] (ksm = 8, ksl = 1:
 * the lane layout; ksm = 1, ksl = M: rows). work: 7 x 8 kpad(K) doubles. */
static void score_reduce8(size_t K, size_t M, const double *pt, const int64_t *kt, size_t ksm,
                          size_t ksl, const double *wt, double *gt, double *set, double *work) {
    size_t Kp = kpad(K);
    double *kq = work, *nn = kq + 16 * Kp, *sks = nn + 8 * Kp, *ssd = sks + 8 * Kp,
           *sqd = ssd + 8 * Kp, *sp = sqd + 8 * Kp;
    __m512d fM = _mm512_set1_pd((double)M), zero = _mm512_setzero_pd();
    __m512d W = zero;
    for (size_t m = 0; m < M; m++) W = _mm512_add_pd(W, ld(wt + 8 * m));
    __m512d wbar = _mm512_div_pd(W, fM);
    /* Each sample adds w and d^2 (d = w - wbar) to the column it drew, and
     * 1 to its count: lanes write distinct slots, so plain
     * read-modify-writes (faster here than gather/scatter), the pair (w,
     * d^2) as one 128-bit one into kq, where slot (j, l) is kq[16 j + 2 l]
     * (ks, the sum of w) and the next double (qd, of d^2). The two passes
     * below split ks and qd out of kq in registers. */
    for (size_t j = 0; j < K; j++)
        st(kq + 16 * j, zero), st(kq + 16 * j + 8, zero), st(nn + 8 * j, zero);
    for (size_t m = 0; m < M; m++) {
        __m512d w = ld(wt + 8 * m), d = _mm512_sub_pd(w, wbar), d2 = _mm512_mul_pd(d, d);
        __m512d lo = _mm512_unpacklo_pd(w, d2), hi = _mm512_unpackhi_pd(w, d2);
        __m128d pr[8] = {_mm512_castpd512_pd128(lo), _mm512_castpd512_pd128(hi), lane128(lo, 1),
                         lane128(hi, 1), lane128(lo, 2), lane128(hi, 2), lane128(lo, 3), lane128(hi, 3)};
#pragma GCC unroll 8
        for (size_t l = 0; l < 8; l++) {
            size_t j = (size_t)kt[ksm * m + ksl * l];
            double *q = kq + 16 * j + 2 * l;
            _mm_storeu_pd(q, _mm_add_pd(_mm_loadu_pd(q), pr[l]));
            nn[8 * j + l] += 1.0;
        }
    }
    const __m512i ev = _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0), od = _mm512_set_epi64(15, 13, 11, 9, 7, 5, 3, 1);
#define KS(j) _mm512_permutex2var_pd(ld(kq + 16 * (j)), ev, ld(kq + 16 * (j) + 8))
#define QD(j) _mm512_permutex2var_pd(ld(kq + 16 * (j)), od, ld(kq + 16 * (j) + 8))
    /* Suffix sums (columns after j) of ks, sd = ks - n wbar, qd and p. */
    __m512d a0 = zero, a1 = zero, a2 = zero, a3 = zero;
    for (size_t j = K; j-- > 0;) {
        st(sks + 8 * j, a0);
        st(ssd + 8 * j, a1);
        st(sqd + 8 * j, a2);
        st(sp + 8 * j, a3);
        __m512d k = KS(j);
        a0 = _mm512_add_pd(a0, k);
        a1 = _mm512_add_pd(a1, _mm512_sub_pd(k, _mm512_mul_pd(ld(nn + 8 * j), wbar)));
        a2 = _mm512_add_pd(a2, QD(j));
        a3 = _mm512_add_pd(a3, ld(pt + 8 * j));
    }
    /* Multiplications by 1 / M and 1 / ((M - 1) M), and 1 / n_S, 1 / n_T
     * from a table (the correctly rounded reciprocals the scalar loop
     * divides out): divisions and square roots are what this loop waits on. */
    const __m512d rlo = _mm512_set_pd(1.0 / 8, 1.0 / 7, 1.0 / 6, 1.0 / 5, 1.0 / 4, 1.0 / 3, 1.0 / 2, 1.0);
    const __m512d rhi = _mm512_set_pd(1.0 / 16, 1.0 / 15, 1.0 / 14, 1.0 / 13, 1.0 / 12, 1.0 / 11, 1.0 / 10, 1.0 / 9);
    __m512d iM = _mm512_set1_pd(1.0 / (double)M);
    __m512d iF = _mm512_set1_pd(1.0 / (M > 1 ? (double)(M - 1) * (double)M : 1.0));
    __m512d one = _mm512_set1_pd(1.0);
    a0 = a1 = a2 = a3 = zero;
    for (size_t j = 0; j < K; j++) {
        __m512d p = ld(pt + 8 * j), k = KS(j), n = ld(nn + 8 * j);
        __m512d sd = _mm512_sub_pd(k, _mm512_mul_pd(n, wbar)), q2 = QD(j);
        __m512d Tw = _mm512_add_pd(a0, ld(sks + 8 * j)), q = _mm512_add_pd(a3, ld(sp + 8 * j));
        st(gt + 8 * j, _mm512_mul_pd(_mm512_sub_pd(_mm512_mul_pd(q, k), _mm512_mul_pd(p, Tw)), iM));
        if (set) {
            __m512d sT = _mm512_add_pd(a1, ld(ssd + 8 * j)), qT = _mm512_add_pd(a2, ld(sqd + 8 * j));
            __m512d nT = _mm512_sub_pd(fM, n), c = _mm512_mul_pd(k, iM), e0 = _mm512_mul_pd(Tw, iM);
            __m512d muS, muT;
            if (M <= 16) {
                /* 1 / n for a count n in [1, 16]: a lookup, not a division.
                 * n + (2^52 - 1) is exact and its low bits are n - 1, the
                 * index permutex2var reads (bits 0-3). A count of 0 reads
                 * 1/16, but then sd (or sT) is +0 (sums of nothing, and of
                 * +0 columns), so mu is +0, as the row loop's 0 is. */
                const __m512d bias = _mm512_set1_pd(0x1p52 - 1.0);
                __m512d rS = _mm512_permutex2var_pd(rlo, _mm512_castpd_si512(_mm512_add_pd(n, bias)), rhi);
                __m512d rT = _mm512_permutex2var_pd(rlo, _mm512_castpd_si512(_mm512_add_pd(nT, bias)), rhi);
                muS = _mm512_mul_pd(sd, rS);
                muT = _mm512_mul_pd(sT, rT);
            } else {
                __mmask8 hs = _mm512_cmp_pd_mask(n, zero, _CMP_GT_OQ);
                __mmask8 ht = _mm512_cmp_pd_mask(nT, zero, _CMP_GT_OQ);
                __m512d rS = _mm512_div_pd(one, _mm512_mask_mov_pd(one, hs, n));
                __m512d rT = _mm512_div_pd(one, _mm512_mask_mov_pd(one, ht, nT));
                muS = _mm512_maskz_mul_pd(hs, sd, rS);
                muT = _mm512_maskz_mul_pd(ht, sT, rT);
            }
            __m512d xS = _mm512_add_pd(_mm512_mul_pd(q, muS), e0);
            __m512d xT = _mm512_add_pd(_mm512_mul_pd(p, muT), c);
            __m512d vS = _mm512_max_pd(_mm512_sub_pd(q2, _mm512_mul_pd(sd, muS)), zero);
            __m512d vT = _mm512_max_pd(_mm512_sub_pd(qT, _mm512_mul_pd(sT, muT)), zero);
            __m512d ss = _mm512_add_pd(
                _mm512_add_pd(_mm512_mul_pd(n, _mm512_mul_pd(xS, xS)),
                              _mm512_mul_pd(_mm512_mul_pd(q, q), vS)),
                _mm512_add_pd(_mm512_mul_pd(nT, _mm512_mul_pd(xT, xT)),
                              _mm512_mul_pd(_mm512_mul_pd(p, p), vT)));
            st(set + 8 * j, M > 1 ? _mm512_sqrt_pd(_mm512_mul_pd(ss, iF)) : zero);
            a1 = _mm512_add_pd(a1, sd);
            a2 = _mm512_add_pd(a2, q2);
        }
        a0 = _mm512_add_pd(a0, k);
        a3 = _mm512_add_pd(a3, p);
    }
#undef KS
#undef QD
}

/* Sampled categorical estimators eight rows at a time: the softmax, the
 * per-sample values v_m (SAC: alpha log p_{k_m} - q_m with the caller's
 * actions; entropy: -log p_{k_m} with actions drawn here, bit for bit
 * gs_rng_cat_draw's), their mean and se (gs_mean_se's arithmetic), the
 * baseline (gs_baseline_apply's), then the score terms' mean and se. */
int gs_lanes_score_avx512(const gs_lanes_score *s, size_t r0, size_t r1, double *scratch) {
    size_t K = s->K, M = s->M, Kp = kpad(K), Mp = kpad(M);
    double *zt = scratch, *pt = zt + 8 * Kp, *gt = pt + 8 * Kp, *set = gt + 8 * Kp;
    double *vt = set + 8 * Kp, *wt = vt + 8 * Mp, *ut = wt + 8 * Mp;
    int64_t *kt = (int64_t *)(ut + 8 * Mp);
    double *work = (double *)(kt + 8 * Mp);
    __mmask8 bad = 0;
    __m512d fM = _mm512_set1_pd((double)M), zero = _mm512_setzero_pd();
    int loo = s->loo && M >= 2;
    int nt = stream_ok(s->stream, s->grad + r0 * K, K) &&
             (!s->se_grad || stream_ok(s->stream, s->se_grad + r0 * K, K));
    const __m512d a = _mm512_set1_pd(s->alpha);
    __m512d fl = _mm512_set1_pd(M >= 2 ? (double)M / (double)(M - 1) : 1.0);
    int pick = K <= 32;
    for (size_t b = r0; b < r1; b += 8) {
        size_t nl = r1 - b < 8 ? r1 - b : 8;
        __mmask8 lm = lane_mask(nl);
        __m512d mx, lse;
        __mmask8 ni;
        gs_prefetch_rows(s->logits, K, b, r1);
        gs_prefetch_rows(s->q, M, b, r1);
        gs_prefetch_rows(s->actions, M, b, r1);
        mx = load_t_max(K, s->logits + b * K, K, nl, zt);
        /* zt gets x = z - max z: log p_k = x_k - lse where it is needed. */
        __m512d H = probs8(K, zt, zt, pt, mx, &lse, &ni);
        __mmask8 nf = nonfinite(H);
        if (s->entropy) _mm512_mask_storeu_pd(s->entropy + b, lm, H);
        /* Where sample m of lane l drew its action: kt[ksm m + ksl l]. */
        const int64_t *ka = kt;
        size_t ksm = 8, ksl = 1;
        if (s->actions && pick) {
            /* The caller's actions as they are, in rows (a short last
             * group gets a copy padded with action 0). */
            ksm = 1, ksl = M, ka = s->actions + b * M;
            if (nl < 8) {
                memcpy(kt, ka, nl * M * sizeof *kt);
                memset(kt + nl * M, 0, (8 - nl) * M * sizeof *kt);
                ka = kt;
            }
            pick_v8(K, M, s->logits + b * K, ka, s->q ? s->q + b * M : NULL, a, mx, lse, nl, ut);
            load_t(M, ut, M, nl, vt);
        } else if (s->actions) {
            /* The transposes move bits: int64 actions go through as they are. */
            load_t(M, (const double *)s->actions + b * M, M, nl, (double *)kt);
        } else {
            /* gs_rng_cat_cdf and gs_rng_cat_draw lane by lane: cdf sums
             * left to right, last = the last action with !(p <= 0), the
             * draw counts cdf_i <= u total (or is last when u total is not
             * below the total). */
            gs_rng_uniforms_lanes_avx512(s->key, b, 0, M, ut, 0);
            __m512i last = _mm512_setzero_si512();
            __m512d c = zero;
            for (size_t k = 0; k < K; k++) {
                __m512d p = ld(pt + 8 * k);
                c = _mm512_add_pd(c, p);
                st(gt + 8 * k, c);
                __mmask8 pos = _mm512_cmp_pd_mask(p, zero, _CMP_NLE_UQ);
                last = _mm512_mask_mov_epi64(last, pos, _mm512_set1_epi64((long long)k));
            }
            /* Eight samples at a time in registers, the cdf read once
             * per eight (ut is padded to a multiple of eight samples: the
             * padding's counts are never stored). */
            for (size_t m0 = 0; m0 < M; m0 += 8) {
                __m512d u[8];
                __m512i cnt[8];
#pragma GCC unroll 8
                for (size_t j = 0; j < 8; j++)
                    u[j] = _mm512_mul_pd(ld(ut + 8 * (m0 + j)), c), cnt[j] = _mm512_setzero_si512();
                for (size_t k = 0; k < K; k++) {
                    __m512d ck = ld(gt + 8 * k);
#pragma GCC unroll 8
                    for (size_t j = 0; j < 8; j++)
                        cnt[j] = _mm512_mask_add_epi64(cnt[j], _mm512_cmp_pd_mask(ck, u[j], _CMP_LE_OQ),
                                                       cnt[j], _mm512_set1_epi64(1));
                }
                size_t nm = M - m0 < 8 ? M - m0 : 8;
#pragma GCC unroll 8
                for (size_t j = 0; j < 8; j++)
                    if (j < nm) {
                        __mmask8 in = _mm512_cmp_pd_mask(u[j], c, _CMP_LT_OQ);
                        _mm512_storeu_si512(kt + 8 * (m0 + j), _mm512_mask_mov_epi64(last, in, cnt[j]));
                    }
            }
            if (pick) {
                /* The draws as rows (ut is free again), for pick_v8. */
                store_t(M, (const double *)kt, ut, M, 8);
                pick_v8(K, M, s->logits + b * K, (const int64_t *)ut, NULL, a, mx, lse, nl, work);
                load_t(M, work, M, nl, vt);
            }
        }
        /* K > 32, too many columns for pick_v8: v_m with log p_{k_m} =
         * x_{k_m} - lse, x picked from each lane's own column (padding
         * lanes read action 0 of their zeros) by scalar loads into ut,
         * free once the draws are made (7 % faster at K = 18 than 16
         * gathers, and pick_v8 1.09-1.14x faster than this there). */
        if (!pick) {
            if (s->q) load_t(M, s->q + b * M, M, nl, vt);
            for (size_t i = 0; i < 8 * M; i++) ut[i] = zt[8 * kt[i] + (i & 7)];
            for (size_t m = 0; m < M; m++) {
                __m512d lp = _mm512_sub_pd(ld(ut + 8 * m), lse);
                st(vt + 8 * m, sample_v8(lp, a, s->q != NULL, s->q ? ld(vt + 8 * m) : zero));
            }
        }
        __m512d sum = zero;
        for (size_t m = 0; m < M; m++) sum = _mm512_add_pd(sum, ld(vt + 8 * m));
        __m512d mean = _mm512_div_pd(sum, fM);
        _mm512_mask_storeu_pd(s->stat + b, lm, mean);
        nf |= nonfinite(mean);
        if (s->se_stat) {
            __m512d ss = zero;
            for (size_t m = 0; m < M; m++) {
                __m512d dv = _mm512_sub_pd(ld(vt + 8 * m), mean);
                ss = _mm512_add_pd(ss, _mm512_mul_pd(dv, dv));
            }
            __m512d se = M > 1 ? _mm512_sqrt_pd(_mm512_div_pd(_mm512_div_pd(ss, _mm512_set1_pd((double)(M - 1))), fM))
                               : zero;
            _mm512_mask_storeu_pd(s->se_stat + b, lm, se);
            nf |= nonfinite(se);
        }
        for (size_t m = 0; m < M; m++)
            st(wt + 8 * m, loo ? _mm512_mul_pd(fl, _mm512_sub_pd(ld(vt + 8 * m), mean)) : ld(vt + 8 * m));
        score_reduce8(K, M, pt, ka, ksm, ksl, wt, gt, s->se_grad ? set : NULL, work);
        for (size_t k = 0; k < K; k++) {
            nf |= nonfinite(ld(gt + 8 * k));
            if (s->se_grad) nf |= nonfinite(ld(set + 8 * k));
        }
        bad |= nf & lm;
        store_rows(K, gt, s->grad + b * K, nl, nt);
        if (s->se_grad) store_rows(K, set, s->se_grad + b * K, nl, nt);
    }
    if (nt) gs_stream_fence();
    return bad != 0;
}
#else
#error "gs_lanes_avx512.c must be compiled with -mavx512f"
#endif
