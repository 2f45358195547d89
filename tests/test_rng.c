/* test_rng.c - Check suite for gs_rng: Philox known answers, uniform/normal/categorical draws. */
#include "test_core_util.h"
#include "gs_vmath_impl.h"

/* ---- Philox4x32-10 known answers (Random123's kat_vectors) ------------------ */

START_TEST(philox_known_answers) {
    static const struct {
        uint32_t ctr[4], key[2], out[4];
    } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
         {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
         {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (size_t i = 0; i < sizeof kat / sizeof *kat; i++) {
        uint32_t out[4];
        gs_rng_philox(kat[i].ctr, kat[i].key, out);
        for (int w = 0; w < 4; w++)
            ck_assert_msg(out[w] == kat[i].out[w], "vector %zu word %d: %08x, want %08x", i, w,
                          out[w], kat[i].out[w]);
    }
}
END_TEST

/* ---- the documented counter layout -------------------------------------------- */

/* The uniform gs_rng.h documents: block j = 0 of counter (0, m, row_lo,
 * row_hi) under key (seed_lo, seed_hi); 53 bits of words 0-1, centred. */
static double ref_uniform(uint64_t seed, uint64_t row, uint32_t m, uint32_t j, int half) {
    uint32_t ctr[4] = {j, m, (uint32_t)row, (uint32_t)(row >> 32)};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)}, w[4];
    gs_rng_philox(ctr, key, w);
    uint64_t bits = ((((uint64_t)w[2 * half] << 32) | w[2 * half + 1]) >> 11);
    return ((double)bits + 0.5) * 0x1p-53;
}

START_TEST(uniform_matches_counter_layout) {
    static const uint64_t seeds[] = {0, 1, 0xdeadbeefULL, (1ULL << 32) + 7, GS_SEED_MAX};
    static const uint64_t rows[] = {0, 1, 12345, (1ULL << 32) + 3, 0xffffffffffffULL};
    for (size_t s = 0; s < 5; s++) {
        gs_rng rng;
        gs_rng_init(&rng, seeds[s]);
        ck_assert_uint_eq(rng.key[0], (uint32_t)seeds[s]);
        ck_assert_uint_eq(rng.key[1], (uint32_t)(seeds[s] >> 32));
        for (size_t r = 0; r < 5; r++)
            for (uint32_t m = 0; m < 40; m += m % 2 ? 12 : 1) {
                double u = gs_rng_uniform(&rng, rows[r], m);
                /* samples 2i and 2i + 1: the two halves of counter (0, i, row) */
                ck_assert(u == ref_uniform(seeds[s], rows[r], m >> 1, 0, (int)(m & 1)));
            }
    }
    /* Both halves of the seed and of the row reach the generator. */
    gs_rng a, b;
    gs_rng_init(&a, 5);
    gs_rng_init(&b, 5 + (1ULL << 32));
    ck_assert(gs_rng_uniform(&a, 0, 0) != gs_rng_uniform(&b, 0, 0));
    ck_assert(gs_rng_uniform(&a, 1, 0) != gs_rng_uniform(&a, 1 + (1ULL << 32), 0));
    ck_assert(gs_rng_uniform(&a, 0, 1) != gs_rng_uniform(&a, 1, 0));
}
END_TEST

START_TEST(uniform_in_open_interval) {
    gs_rng rng;
    gs_rng_init(&rng, 42);
    const size_t n = 200000;
    double sum = 0.0, sum2 = 0.0, lo = 1.0, hi = 0.0;
    for (size_t i = 0; i < n; i++) {
        double u = gs_rng_uniform(&rng, i / 100, (uint32_t)(i % 100));
        ck_assert_msg(u > 0.0 && u < 1.0, "u = %.17g", u);
        sum += u;
        sum2 += u * u;
        lo = fmin(lo, u);
        hi = fmax(hi, u);
    }
    double mean = sum / n, var = sum2 / n - mean * mean;
    ck_assert_msg(fabs(mean - 0.5) < 4.0 * sqrt(1.0 / 12.0 / n), "mean %g", mean);
    ck_assert_msg(fabs(var - 1.0 / 12.0) < 4.0 * sqrt(1.0 / 180.0 / n), "variance %g", var);
    ck_assert(lo < 1e-4 && hi > 1.0 - 1e-4);
}
END_TEST

/* ---- normals ------------------------------------------------------------------ */

START_TEST(normals_box_muller_layout) {
    /* z[2j] = r cos(2 pi u2), z[2j+1] = r sin(2 pi u2) from block j of the
     * sample, r = sqrt(-2 log u1); SLEEF is within an ulp or two of libm. */
    const uint64_t seed = 987654321ULL, row = 7;
    const size_t M = 6, D = 5;
    gs_rng rng;
    gs_rng_init(&rng, seed);
    double z[6 * 5], scratch[4 * 3 * 6];
    ck_assert_uint_eq(gs_rng_normals_scratch(M, D), 4 * 3 * 6);
    gs_rng_normals(&rng, row, 3, M, D, z, scratch);
    for (size_t m = 0; m < M; m++)
        for (size_t i = 0; i < D; i++) {
            uint32_t j = (uint32_t)(i / 2);
            double u1 = ref_uniform(seed, row, (uint32_t)(3 + m), j, 0);
            double u2 = ref_uniform(seed, row, (uint32_t)(3 + m), j, 1);
            double r = sqrt(-2.0 * log(u1));
            double want = (i % 2 == 0) ? r * cos(2.0 * M_PI * u2) : r * sin(2.0 * M_PI * u2);
            ck_close_i(z[m * D + i], want, 1e-13, 1e-13, m * D + i);
        }
}
END_TEST

/* The batched paths (eight or sixteen Philox blocks per step on AVX-512)
 * give exactly the draws of the one-block reference: gs_rng_uniforms
 * equals gs_rng_uniform, and gs_rng_normals equals Box-Muller of the
 * reference uniforms through the same gs_vm_box_muller, for counts
 * and dimensions that leave every kind of tail, and rows past 2^32. */
START_TEST(batched_draws_bit_exact) {
    static const uint64_t seeds[] = {3, (1ULL << 32) + 9, GS_SEED_MAX};
    static const uint64_t rows[] = {0, 5, (1ULL << 32) - 1, (1ULL << 32) + 3};
    enum { CMAX = 41, DMAX = 7 };
    static double u[CMAX], z[CMAX * DMAX], scr[4 * 4 * CMAX];
    for (size_t s = 0; s < 3; s++)
        for (size_t r = 0; r < 4; r++) {
            gs_rng rng;
            gs_rng_init(&rng, seeds[s]);
            for (size_t count = 1; count <= CMAX; count += 4) {
                uint32_t m0 = (uint32_t)(count % 5);
                gs_rng_uniforms(&rng, rows[r], m0, count, u);
                for (size_t i = 0; i < count; i++)
                    ck_assert(u[i] == gs_rng_uniform(&rng, rows[r], m0 + (uint32_t)i));
                for (size_t d = 1; d <= DMAX; d++) {
                    gs_rng_normals(&rng, rows[r], m0, count, d, z, scr);
                    for (size_t m = 0; m < count; m++)
                        for (size_t i = 0; i < d; i++) {
                            uint32_t j = (uint32_t)(i / 2), mm = m0 + (uint32_t)m;
                            double u1 = ref_uniform(seeds[s], rows[r], mm, j, 0);
                            double u2 = 2.0 * ref_uniform(seeds[s], rows[r], mm, j, 1);
                            double rr, sn, cs;
                            gs_vm_box_muller(1, &u1, &u2, &rr, &sn, &cs);
                            double want = i % 2 ? rr * sn : rr * cs;
                            ck_assert_msg(z[m * d + i] == want, "seed %zu row %zu count %zu d %zu "
                                          "m %zu i %zu: %.17g vs %.17g", s, r, count, d, m, i,
                                          z[m * d + i], want);
                        }
                }
            }
        }
}
END_TEST

/* gs_rng_normals_lanes_avx512 (eight rows, one per lane, for the lane
 * kernels) draws exactly gs_rng_normals' normals of each row, across the
 * 2^32 row boundary, for odd and even D. */
START_TEST(normals_lanes_match_rows) {
    if (!gs_vm_have_avx512()) return;
    static const uint64_t rows[] = {0, 13, (1ULL << 32) - 5};
    static const size_t DS[] = {1, 2, 5, 6, 9}, MS[] = {1, 3, 16};
    enum { MM = 16, DD = 9 };
    static double lanes[8 * MM * DD], z[MM * DD], scr[4 * 5 * MM];
    gs_rng rng;
    gs_rng_init(&rng, (1ULL << 40) + 77);
    for (size_t r = 0; r < 3; r++)
        for (size_t di = 0; di < 5; di++)
            for (size_t mi = 0; mi < 3; mi++) {
                size_t D = DS[di], M = MS[mi];
                gs_rng_normals_lanes_avx512(rng.key, rows[r], M, D, lanes);
                for (size_t l = 0; l < 8; l++) {
                    gs_rng_normals(&rng, rows[r] + l, 0, M, D, z, scr);
                    for (size_t j = 0; j < M * D; j++)
                        ck_assert_msg(lanes[8 * j + l] == z[j], "row %zu + %zu D %zu M %zu: %zu",
                                      r, l, D, M, j);
                }
            }
}
END_TEST

START_TEST(normals_moments) {
    gs_rng rng;
    gs_rng_init(&rng, 2024);
    const size_t M = 1000, D = 7, rows = 40; /* odd D: the cosine and the sine halves */
    double *z = malloc(M * D * sizeof *z),
           *scr = malloc(gs_rng_normals_scratch(M, D) * sizeof *scr);
    double s1 = 0, s2 = 0, s3 = 0, s4 = 0;
    double c1[7] = {0}, c2[7] = {0};
    for (size_t r = 0; r < rows; r++) {
        gs_rng_normals(&rng, r, 0, M, D, z, scr);
        for (size_t k = 0; k < M * D; k++) {
            double x = z[k];
            ck_assert(isfinite(x));
            s1 += x, s2 += x * x, s3 += x * x * x, s4 += x * x * x * x;
            c1[k % D] += x;
            c2[k % D] += x * x;
        }
    }
    double n = (double)(M * D * rows);
    double mean = s1 / n, var = s2 / n - mean * mean;
    ck_assert_msg(fabs(mean) < 4.0 / sqrt(n), "mean %g", mean);
    ck_assert_msg(fabs(var - 1.0) < 4.0 * sqrt(2.0 / n), "variance %g", var);
    ck_assert_msg(fabs(s3 / n) < 4.0 * sqrt(15.0 / n), "third moment %g", s3 / n);
    ck_assert_msg(fabs(s4 / n - 3.0) < 4.0 * sqrt(96.0 / n), "fourth moment %g", s4 / n);
    /* Every coordinate (cosine and sine parts) is standard normal. */
    double nc = (double)(M * rows);
    for (size_t i = 0; i < D; i++) {
        ck_assert_msg(fabs(c1[i] / nc) < 4.0 / sqrt(nc), "coordinate %zu mean %g", i, c1[i] / nc);
        ck_assert_msg(fabs(c2[i] / nc - 1.0) < 4.0 * sqrt(2.0 / nc), "coordinate %zu var %g", i,
                      c2[i] / nc);
    }
    free(z);
    free(scr);
}
END_TEST

START_TEST(normals_independent_of_what_else_is_drawn) {
    gs_rng rng;
    gs_rng_init(&rng, 77);
    const size_t D = 3;
    double all[20 * 3], one[3], part[7 * 3], scr[4 * 2 * 20], d4[4], scr4[8];
    gs_rng_normals(&rng, 11, 0, 20, D, all, scr);
    /* Sample m alone, or a window of samples, gives the same bits. */
    for (uint32_t m = 0; m < 20; m++) {
        gs_rng_normals(&rng, 11, m, 1, D, one, scr);
        ck_same_bytes(one, all + m * D, sizeof one);
    }
    gs_rng_normals(&rng, 11, 9, 7, D, part, scr);
    ck_same_bytes(part, all + 9 * D, sizeof part);
    /* The first d coordinates do not depend on d (the sine of an odd last
     * block is dropped, not shifted). */
    gs_rng_normals(&rng, 11, 4, 1, 4, d4, scr4);
    ck_same_bytes(d4, all + 4 * D, 3 * sizeof(double));
    /* Other rows and seeds differ. */
    gs_rng_normals(&rng, 12, 0, 1, D, one, scr);
    ck_assert(memcmp(one, all, sizeof one) != 0);
    gs_rng other;
    gs_rng_init(&other, 78);
    gs_rng_normals(&other, 11, 0, 1, D, one, scr);
    ck_assert(memcmp(one, all, sizeof one) != 0);
}
END_TEST

/* ---- categorical ---------------------------------------------------------------- */

START_TEST(categorical_inverse_cdf) {
    gs_rng rng;
    gs_rng_init(&rng, 31337);
    static const double p[5] = {0.1, 0.0, 0.6, 0.3, 0.0};
    for (uint32_t m = 0; m < 2000; m++) {
        size_t k = gs_rng_categorical(&rng, 3, m, p, 5);
        double u = gs_rng_uniform(&rng, 3, m), cdf = 0.0;
        size_t want = 0;
        for (size_t i = 0; i < 5; i++) {
            cdf += p[i];
            if (p[i] > 0 && u < cdf) {
                want = i;
                break;
            }
        }
        ck_assert_uint_eq(k, want);
    }
}
END_TEST

START_TEST(categorical_frequencies) {
    gs_rng rng;
    gs_rng_init(&rng, 8);
    static const double p[5] = {0.1, 0.0, 0.6, 0.3, 0.0};
    const size_t n = 100000;
    size_t count[5] = {0};
    for (size_t i = 0; i < n; i++)
        count[gs_rng_categorical(&rng, i % 17, (uint32_t)(i / 17), p, 5)]++;
    ck_assert_uint_eq(count[1], 0);
    ck_assert_uint_eq(count[4], 0);
    for (int k = 0; k < 5; k++) {
        double sd = sqrt(n * p[k] * (1 - p[k]));
        ck_assert_msg(fabs(count[k] - n * p[k]) <= 4.0 * sd + 1e-9, "action %d: %zu of %zu", k,
                      count[k], n);
    }
    /* One action of probability 1 (the others underflowed): always it. */
    static const double one[3] = {0.0, 1.0, 0.0};
    for (uint32_t m = 0; m < 1000; m++)
        ck_assert_uint_eq(gs_rng_categorical(&rng, 0, m, one, 3), 1);
    static const double k1[1] = {1.0};
    for (uint32_t m = 0; m < 100; m++) ck_assert_uint_eq(gs_rng_categorical(&rng, 0, m, k1, 1), 0);
    /* Probabilities that sum to slightly less than 1 never fall off the end
     * onto a zero-probability action. */
    static const double shy[3] = {0.5 - 1e-12, 0.5 - 1e-12, 0.0};
    for (uint32_t m = 0; m < 5000; m++)
        ck_assert_uint_lt(gs_rng_categorical(&rng, 1, m, shy, 3), 2);
}
END_TEST

static Suite *rng_suite(void) {
    Suite *s = suite_create("rng");
    TCase *tc = tcase_create("philox");
    tcase_add_test(tc, philox_known_answers);
    tcase_add_test(tc, uniform_matches_counter_layout);
    tcase_add_test(tc, uniform_in_open_interval);
    suite_add_tcase(s, tc);
    tc = tcase_create("normals");
    tcase_add_test(tc, normals_box_muller_layout);
    tcase_add_test(tc, normals_moments);
    tcase_add_test(tc, normals_lanes_match_rows);
    tcase_add_test(tc, normals_independent_of_what_else_is_drawn);
    suite_add_tcase(s, tc);
    tc = tcase_create("categorical");
    tcase_add_test(tc, categorical_inverse_cdf);
    tcase_add_test(tc, categorical_frequencies);
    tcase_add_test(tc, batched_draws_bit_exact);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tc_run(rng_suite()); }
