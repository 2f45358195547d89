/* gs_vmath.h - vectorised exp/log family over arrays, through SLEEF (and libmvec's expm1). */
#ifndef GS_VMATH_H
#define GS_VMATH_H

#include <stddef.h>

/* Each function computes y[i] = f(x[i]) for i in [0, n) with SLEEF's 1-ULP
 * (u10) kernels. The instruction set is chosen at run
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
/* The noise transform of Box-Muller: r[i] = sqrt(-2 log u1[i]) and s[i],
 * c[i] = sin, cos(pi u2[i]), with SLEEF's 3.5-ULP log and sincospi (about
 * twice as fast as the 1-ULP ones, and as good for drawing normals). u1 in
 * (0, 1], so r is finite. The AVX-512 and AVX2 paths give the same bits;
 * SSE2 (no FMA) may differ in the last ulps. r may alias u1. */
void gs_vm_box_muller(size_t n, const double *u1, const double *u2, double *r,
                      double *s, double *c);

/* The softmax of one categorical row z[0..K): x = z - max z, e = exp x,
 * s = sum e, logp = x - log s, p = e / s; returns the entropy -sum p log p,
 * computed as log s - c with c = sum p x (= (1 / s) sum e x, the mean of x
 * under p: two terms >= 0, no cancellation), in which p = 0 adds 0. When
 * not NULL, x gets x and *c gets c. Sums run in an order fixed by K and the
 * instruction set, never by where the row lies in memory. z may be logp. */
double gs_vm_cat(size_t K, const double *z, double *logp, double *p, double *x, double *c);

/* The tanh quantities of u[0..n) without cancellation, for a = |u| and
 * em = expm1(-2a), q = 2 + em (in (1, 2]):
 *   t[i]     = tanh u         = sign(u) (-em / q)
 *   omt2[i]  = 1 - tanh^2 u   = 4 e^{-2a} / q^2
 *   l1mt2[i] = log(1 - tanh^2 u) = 2 (log 2 - a - log q)
 * (MATH.md's 2 (log 2 - u - softplus(-2u)), symmetric in u). Nothing loses
 * precision as |u| -> 0 or overflows as |u| grows (at |u| = 40, 1 - tanh^2
 * is about 1e-34). On AVX-512 the pass is fused, with libmvec's expm1 and
 * SLEEF's 3.5-ULP log (t within 4 ulps, 1 - t^2 within 8: tests/test_vmath.c).
 * tmp (n) is scratch;
 * u may not alias the outputs. Each element depends on u[i] alone. */
void gs_vm_tanh_parts(size_t n, const double *u, double *tmp, double *t,
                      double *omt2, double *l1mt2);

/* "avx512f", "avx2" or "sse2": the instruction set the functions above run
 * on. */
const char *gs_vm_isa(void);

#endif
