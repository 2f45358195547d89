/* test_vmath.c - Check suite for gs_vmath: accuracy vs libm, special values, split invariance. */
#include "test_core_util.h"
#include "gs_vmath_impl.h"

typedef void (*unary_fn)(size_t, const double *, double *);

/* Accuracy over a grid: SLEEF's u10 kernels are within 1 ulp, libm within
 * about 1: the two agree to a few units of 2^-52 relative. */
static void check_grid(unary_fn f, double (*ref)(double), double a, double b, size_t n, double rtol,
                       const char *name) {
    double *x = calloc(n, sizeof *x), *y = calloc(n, sizeof *y);
    for (size_t i = 0; i < n; i++) x[i] = a + (b - a) * (double)i / (double)(n - 1);
    f(n, x, y);
    for (size_t i = 0; i < n; i++) {
        double want = ref(x[i]);
        ck_assert_msg(tc_close(y[i], want, rtol, 1e-300), "%s(%.17g) = %.17g, libm %.17g", name,
                      x[i], y[i], want);
    }
    free(x);
    free(y);
}

START_TEST(accuracy_against_libm) {
    const double rtol = 4.0 * 0x1p-52;
    check_grid(gs_vm_exp, exp, -745.0, 709.7, 100003, rtol, "exp");
    check_grid(gs_vm_exp, exp, -1.0, 1.0, 10001, rtol, "exp");
    check_grid(gs_vm_expm1, expm1, -40.0, 709.0, 100003, rtol, "expm1");
    check_grid(gs_vm_expm1, expm1, -1e-3, 1e-3, 10001, rtol, "expm1");
    check_grid(gs_vm_log, log, 1e-300, 1e300, 100003, rtol, "log");
    check_grid(gs_vm_log, log, 0.5, 2.0, 10001, rtol, "log");
    check_grid(gs_vm_log1p, log1p, -0.999999, 1e300, 100003, rtol, "log1p");
    check_grid(gs_vm_log1p, log1p, -1e-3, 1e-3, 10001, rtol, "log1p");
    /* Subnormal and tiny arguments of log (u1 of Box-Muller is >= 2^-54). */
    double x[4] = {0x1p-54, 0x1p-1074, 0x1p-1022, 1.0 - 0x1p-53}, y[4];
    gs_vm_log(4, x, y);
    for (int i = 0; i < 4; i++) ck_close(y[i], log(x[i]), rtol, 0.0);
}
END_TEST


/* Box-Muller's transform (SLEEF's 3.5-ULP log and sincospi): r within a
 * few ulps of libm's sqrt(-2 log u1) over u1's whole range, sin and cos
 * within a few ulps of 1, and quarter turns exact. */
START_TEST(box_muller_accuracy) {
    enum { N = 40001 };
    double *u1 = malloc(N * sizeof *u1), *u2 = malloc(N * sizeof *u2), *r = malloc(N * sizeof *r),
           *sn = malloc(N * sizeof *sn), *cs = malloc(N * sizeof *cs);
    for (size_t i = 0; i < N; i++) {
        /* u1 from 2^-54 (the smallest uniform) up to 1 - 2^-53, geometric
         * below 1/2 and linear above; u2 over [0, 2). */
        u1[i] = i < N / 2 ? ldexp(1.0 + (double)i / N, -54 + (int)(53 * (double)i / (N / 2)))
                          : 0.5 + 0.5 * (double)(i - N / 2) / (N - N / 2) * (1.0 - 0x1p-52);
        u2[i] = 2.0 * (double)i / N;
    }
    u1[N - 1] = 1.0 - 0x1p-53;
    gs_vm_box_muller(N, u1, u2, r, sn, cs);
    for (size_t i = 0; i < N; i++) {
        double want = sqrt(-2.0 * log(u1[i]));
        ck_close_i(r[i], want, 8 * 0x1p-52, 0.0, i);
        ck_close_i(sn[i], sin(M_PI * u2[i]), 0.0, 2e-15, i);
        ck_close_i(cs[i], cos(M_PI * u2[i]), 0.0, 2e-15, i);
    }
    double q[4] = {0.0, 0.5, 1.0, 1.5}, one[4] = {1.0, 1.0, 1.0, 1.0}, qr[4], qs[4], qc[4];
    gs_vm_box_muller(4, one, q, qr, qs, qc);
    ck_assert(qr[0] == 0.0 && qs[0] == 0.0 && qc[0] == 1.0);
    ck_assert(qs[1] == 1.0 && fabs(qc[1]) == 0.0 && fabs(qs[2]) == 0.0 && qc[2] == -1.0);
    ck_assert(qs[3] == -1.0 && fabs(qc[3]) == 0.0);
#if defined(__x86_64__) && !defined(GS_VM_BASELINE) && !defined(GS_VM_NO_AVX512)
    /* The AVX-512 and AVX2 kernels share SLEEF's algorithm and FMA use: the
     * same draws on either kind of CPU. */
    if (gs_vm_have_avx512()) {
        double *r2 = malloc(N * sizeof *r2), *s2 = malloc(N * sizeof *s2),
               *c2 = malloc(N * sizeof *c2);
        gs_vm_box_muller_avx2(N, u1, u2, r2, s2, c2);
        ck_same_bytes(r2, r, N * sizeof *r);
        ck_same_bytes(s2, sn, N * sizeof *sn);
        ck_same_bytes(c2, cs, N * sizeof *cs);
        free(r2);
        free(s2);
        free(c2);
    }
#endif
    free(u1);
    free(u2);
    free(r);
    free(sn);
    free(cs);
}
END_TEST

/* tanh u, 1 - tanh^2 u and log(1 - tanh^2 u) against long double, from
 * |u| = 1e-300 to saturation (|u| = 40: 1 - tanh^2 is about 7e-35, still
 * relative-accurate) and both signs. */
START_TEST(tanh_parts_accuracy) {
    enum { N = 20001 };
    double *u = malloc(N * sizeof *u), *tmp = malloc(N * sizeof *tmp), *t = malloc(N * sizeof *t),
           *o = malloc(N * sizeof *o), *l = malloc(N * sizeof *l);
    for (size_t i = 0; i < N; i++) {
        double a = i % 2 ? 40.0 * (double)i / N : ldexp(1.0 + (double)i / N, -(int)(i % 997));
        u[i] = i % 3 ? a : -a;
    }
    gs_vm_tanh_parts(N, u, tmp, t, o, l);
    for (size_t i = 0; i < N; i++) {
        long double th = tanhl(u[i]), ch = coshl(u[i]), om = 1.0L / (ch * ch);
        ck_close_i(t[i], (double)th, 4 * 0x1p-52, 1e-300, i);
        ck_close_i(o[i], (double)om, 8 * 0x1p-52, 1e-300, i);
        ck_close_i(l[i], (double)logl(om), 4 * 0x1p-52, 4e-16, i);
        ck_assert(signbit(t[i]) == signbit(u[i]));
    }
    free(u);
    free(tmp);
    free(t);
    free(o);
    free(l);
}
END_TEST

/* The AVX-512 row sweeps give the bits of their scalar loops: the column
 * reduction (one array or two at once) and u = mu + sigma eps. */
START_TEST(avx512_sweeps_match_scalar) {
#if defined(__x86_64__) && !defined(GS_VM_BASELINE) && !defined(GS_VM_NO_AVX512)
    if (!gs_vm_have_avx512()) return;
    enum { MM = 17, DIM = 11 };
    double g0[MM * DIM], g1[MM * DIM], m0[DIM], s0[DIM], m1[DIM], s1[DIM], rm[DIM], rs[DIM];
    uint64_t x = 88172645463325252ULL;
    for (size_t i = 0; i < MM * DIM; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        g0[i] = (double)(x >> 11) * 0x1p-50 - 4.0;
        g1[i] = g0[i] * g0[i] - 1.0 / (1.0 + (double)i);
    }
    for (size_t M = 1; M <= MM; M += 4)
        for (size_t dim = 1; dim <= DIM; dim++) {
            for (int a = 0; a < 2; a++) {
                const double *g = a ? g1 : g0;
                for (size_t i = 0; i < dim; i++) {
                    double sum = 0.0, ss = 0.0;
                    for (size_t m = 0; m < M; m++) sum += g[m * dim + i];
                    rm[i] = sum / (double)M;
                    for (size_t m = 0; m < M; m++) {
                        double dv = g[m * dim + i] - rm[i];
                        ss += dv * dv;
                    }
                    rs[i] = M > 1 ? sqrt(ss / (double)(M - 1) / (double)M) : 0.0;
                }
                gs_vm_reduce_cols_avx512(g, M, dim, m0, s0);
                ck_same_bytes(m0, rm, dim * sizeof *rm);
                ck_same_bytes(s0, rs, dim * sizeof *rs);
            }
            gs_vm_reduce_cols_avx512(g0, M, dim, rm, rs);
            gs_vm_reduce_cols2_avx512(g0, g1, M, dim, m0, s0, m1, s1);
            ck_same_bytes(m0, rm, dim * sizeof *rm);
            ck_same_bytes(s0, rs, dim * sizeof *rs);
            gs_vm_reduce_cols_avx512(g1, M, dim, rm, rs);
            ck_same_bytes(m1, rm, dim * sizeof *rm);
            ck_same_bytes(s1, rs, dim * sizeof *rs);
            gs_vm_reduce_cols2_avx512(g0, g1, M, dim, m0, NULL, m1, NULL);
            ck_same_bytes(m1, rm, dim * sizeof *rm);
        }
    for (size_t D = 1; D <= 8; D++) {
        double u[MM * 8], want[MM * 8];
        const double *mu = g1, *sigma = g0 + 40;
        for (size_t m = 0; m < MM; m++)
            for (size_t i = 0; i < D; i++) want[m * D + i] = mu[i] + sigma[i] * g0[m * D + i];
        gs_vm_affine_avx512(MM, D, mu, sigma, g0, u);
        ck_same_bytes(u, want, MM * D * sizeof *u);
    }
#endif
}
END_TEST

/* The values the core's stable formulas rely on at the ends of the range. */
START_TEST(special_values) {
    double x[8] = {0.0, -INFINITY, -800.0, 800.0, -80.0, 1.0, -1e-300, 1e-300}, y[8];
    gs_vm_exp(8, x, y);
    ck_assert(y[0] == 1.0 && y[1] == 0.0 && y[2] == 0.0 && isinf(y[3]) && y[3] > 0);
    ck_close(y[5], M_E, 0x1p-52, 0.0);
    gs_vm_expm1(8, x, y);
    ck_assert(y[0] == 0.0 && y[1] == -1.0 && y[2] == -1.0 && y[4] == -1.0 && isinf(y[3]));
    ck_assert(y[6] == -1e-300 && y[7] == 1e-300);
    double l[6] = {1.0, 0.0, 2.0, INFINITY, 1e-320, 4.0}, ly[6];
    gs_vm_log(6, l, ly);
    ck_assert(ly[0] == 0.0 && isinf(ly[1]) && ly[1] < 0 && isinf(ly[3]) && ly[3] > 0);
    ck_close(ly[2], M_LN2, 0x1p-52, 0.0);
    ck_close(ly[4], log(1e-320), 0x1p-51, 0.0);
    double p[4] = {0.0, -1.0, 1e-300, -0.5}, py[4];
    gs_vm_log1p(4, p, py);
    ck_assert(py[0] == 0.0 && isinf(py[1]) && py[1] < 0 && py[2] == 1e-300);
    ck_close(py[3], -M_LN2, 0x1p-52, 0.0);
}
END_TEST

/* y[i] depends only on x[i]: not on n, nor on where x[i] sits relative to
 * the vector width (the padded tail goes through the same kernel). */
START_TEST(independent_of_length_and_position) {
    enum { N = 23 };
    double x[N], full[N], part[N], s_full[N], c_full[N], s_part[N], c_part[N];
    for (int i = 0; i < N; i++) x[i] = -3.7 + 0.61 * i + 1e-3 * (i * i % 7);
    unary_fn fns[4] = {gs_vm_exp, gs_vm_expm1, gs_vm_log1p, gs_vm_log};
    for (int f = 0; f < 4; f++) {
        double in[N];
        for (int i = 0; i < N; i++)
            in[i] = f == 3 ? fabs(x[i]) + 0.01 : (f == 2 ? fabs(x[i]) : x[i]);
        fns[f](N, in, full);
        for (size_t off = 0; off < 6; off++)
            for (size_t n = 0; off + n <= N; n++) {
                memset(part, 0x7f, sizeof part);
                fns[f](n, in + off, part);
                ck_assert_msg(memcmp(part, full + off, n * sizeof(double)) == 0,
                              "function %d, offset %zu, length %zu", f, off, n);
                /* nothing past n is written */
                if (n < N) {
                    double guard;
                    memset(&guard, 0x7f, sizeof guard);
                    ck_assert(memcmp(&part[n], &guard, sizeof guard) == 0);
                }
            }
        /* in place */
        double inplace[N];
        memcpy(inplace, in, sizeof inplace);
        fns[f](N, inplace, inplace);
        ck_same_bytes(inplace, full, sizeof full);
    }
    /* Box-Muller (r in place of u1, as gs_rng_normals calls it) and the
     * tanh quantities. */
    double u1[N], u2[N], r_full[N], t_full[N], o_full[N], l_full[N], tmp[N], a[N], b[N], c[N];
    for (int i = 0; i < N; i++) u1[i] = (i + 0.5) / N, u2[i] = fmod(fabs(x[i]), 2.0);
    gs_vm_box_muller(N, u1, u2, r_full, s_full, c_full);
    gs_vm_tanh_parts(N, x, tmp, t_full, o_full, l_full);
    for (size_t off = 0; off < 6; off++)
        for (size_t n = 0; off + n <= N; n++) {
            memcpy(a, u1 + off, n * sizeof(double));
            gs_vm_box_muller(n, a, u2 + off, a, s_part, c_part);
            ck_assert(memcmp(a, r_full + off, n * sizeof(double)) == 0);
            ck_assert(memcmp(s_part, s_full + off, n * sizeof(double)) == 0);
            ck_assert(memcmp(c_part, c_full + off, n * sizeof(double)) == 0);
            gs_vm_tanh_parts(n, x + off, tmp, a, b, c);
            ck_assert(memcmp(a, t_full + off, n * sizeof(double)) == 0);
            ck_assert(memcmp(b, o_full + off, n * sizeof(double)) == 0);
            ck_assert(memcmp(c, l_full + off, n * sizeof(double)) == 0);
        }
}
END_TEST

START_TEST(isa_reported) {
    const char *isa = gs_vm_isa();
    ck_assert(strcmp(isa, "avx512f") == 0 || strcmp(isa, "avx2") == 0 ||
              strcmp(isa, "sse2") == 0);
#if defined(__x86_64__) && !defined(GS_VM_BASELINE)
    int have = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#if defined(GS_VM_NO_AVX512)
    int have512 = 0;
#else
    int have512 = have && __builtin_cpu_supports("avx512f");
#endif
    ck_assert_str_eq(isa, have512 ? "avx512f" : have ? "avx2" : "sse2");
#endif
}
END_TEST

static Suite *vmath_suite(void) {
    Suite *s = suite_create("vmath");
    TCase *tc = tcase_create("vmath");
    tcase_add_test(tc, accuracy_against_libm);
    tcase_add_test(tc, box_muller_accuracy);
    tcase_add_test(tc, tanh_parts_accuracy);
    tcase_add_test(tc, avx512_sweeps_match_scalar);
    tcase_add_test(tc, special_values);
    tcase_add_test(tc, independent_of_length_and_position);
    tcase_add_test(tc, isa_reported);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tc_run(vmath_suite()); }
