/* gs_vmath_impl.h - the AVX2 and AVX-512 kernels of gs_vmath (internal). */
#ifndef GS_VMATH_IMPL_H
#define GS_VMATH_IMPL_H

#include <stddef.h>
#include <stdint.h>

/* Defined in gs_vmath_avx2.c (compiled with -mavx2 -mfma); call only on a
 * CPU with AVX2 and FMA. Same contracts as the gs_vm_* functions. */
void gs_vm_exp_avx2(size_t n, const double *x, double *y);
void gs_vm_expm1_avx2(size_t n, const double *x, double *y);
void gs_vm_log_avx2(size_t n, const double *x, double *y);
void gs_vm_log1p_avx2(size_t n, const double *x, double *y);
void gs_vm_sincospi_avx2(size_t n, const double *x, double *s, double *c);
double gs_vm_cat_avx2(size_t K, const double *z, double *logp, double *p);

/* Defined in gs_vmath_avx512.c (compiled with -mavx512f); call only on a
 * CPU with AVX-512F (and AVX2 and FMA). */
void gs_vm_exp_avx512(size_t n, const double *x, double *y);
void gs_vm_expm1_avx512(size_t n, const double *x, double *y);
void gs_vm_log_avx512(size_t n, const double *x, double *y);
void gs_vm_log1p_avx512(size_t n, const double *x, double *y);
void gs_vm_sincospi_avx512(size_t n, const double *x, double *s, double *c);
double gs_vm_cat_avx512(size_t K, const double *z, double *logp, double *p);
void gs_vm_tanh_parts_avx512(size_t n, const double *u, double *t, double *omt2,
                             double *l1mt2);
/* The column sweeps of gs_reduce_terms and gs_cat_score_reduce (gs_row.c),
 * with their arithmetic: bit-identical to the scalar loops there. */
void gs_vm_reduce_cols_avx512(const double *g, size_t M, size_t dim,
                              double *mean, double *se);
void gs_vm_cat_sq_avx512(const double *w, const int64_t *k, const double *dev,
                         size_t M, const double *c, const double *p, size_t K,
                         double f, double *se);

/* 1 when the AVX-512 kernels may run (the CPU has them and the build allows
 * them): for dispatch outside gs_vmath.c. */
int gs_vm_have_avx512(void);

/* Defined in gs_rng_avx512.c (compiled with -mavx512f): the uniforms of
 * gs_rng_normals' blocks (j, m) for m in [m0, m0 + count), j in [0, nb):
 * u1[i] = u53(words 0-1), u2[i] = 2 u53(words 2-3) (u2 may be NULL), with
 * i = (m - m0) nb + j; bit-identical to the scalar Philox path. */
void gs_rng_uniforms_avx512(const uint32_t key[2], uint64_t row, uint32_t m0,
                            size_t nb, size_t count, double *u1, double *u2);

#endif
