/* gs_vmath_impl.h - the AVX2 and AVX-512 kernels of gs_vmath (internal). */
#ifndef GS_VMATH_IMPL_H
#define GS_VMATH_IMPL_H

#include <stddef.h>

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

#endif
