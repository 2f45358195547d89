/* gs_vmath.h - vectorised exp/log family over arrays, through SLEEF. */
#ifndef GS_VMATH_H
#define GS_VMATH_H

#include <stddef.h>

/* Each function computes y[i] = f(x[i]) for i in [0, n) with SLEEF's 1-ULP
 * (u10) kernels (sincospi: 0.5 ULP). The instruction set is chosen at run
 * time: AVX-512F when the CPU has it (with AVX2+FMA), else AVX2+FMA, else
 * SSE2, which every x86-64 has.
 * Tails shorter than a vector are padded and go through the same vector
 * kernel, so y[i] depends only on x[i], never on n or on i's position: a
 * batch split across threads gives bit-identical results. x and y may be the
 * same array. Nothing is allocated. */
void gs_vm_exp(size_t n, const double *x, double *y);
void gs_vm_expm1(size_t n, const double *x, double *y);
void gs_vm_log(size_t n, const double *x, double *y);
void gs_vm_log1p(size_t n, const double *x, double *y);
/* s[i] = sin(pi x[i]), c[i] = cos(pi x[i]). */
void gs_vm_sincospi(size_t n, const double *x, double *s, double *c);

/* The softmax of one categorical row z[0..K): logp = z - logsumexp(z) (max
 * subtracted first), p = exp(logp) (as exp(z - max) / sum); returns the
 * entropy -sum p log p, in which p = 0 adds 0. Sums run in an order fixed by
 * K and the instruction set, never by where the row lies in memory. z may be
 * logp. */
double gs_vm_cat(size_t K, const double *z, double *logp, double *p);

/* "avx512f", "avx2" or "sse2": the instruction set the functions above run
 * on. */
const char *gs_vm_isa(void);

#endif
