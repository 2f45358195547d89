/* gs_head.h - linear policy heads: parameters = features W^T + b, and their gradients (OpenBLAS). */
#ifndef GS_HEAD_H
#define GS_HEAD_H

#include <stddef.h>

/* One linear layer producing a distribution parameter per row (MATH.md §8):
 * params = F W^T + b for features F (rows x in), weight W (out x in), bias b
 * (out, or NULL for a layer without bias). Arrays are row-major and owned
 * by the caller. */
typedef struct {
    size_t rows, in, out;
    const double *features;
    const double *weight;
    const double *bias;
} gs_head;

/* Every head computation works on fixed blocks of GS_HEAD_BLOCK rows
 * (the last one shorter). The blocks depend only on the batch size, and
 * the per-block partial sums of the weight and bias gradients are added
 * in block order, so results are bit-identical however the blocks are
 * spread over threads. Each call is one GEMM into OpenBLAS, whose own
 * threading the process must set to 1 (openblas_set_num_threads): the
 * caller's worker pool provides the parallelism. */
#define GS_HEAD_BLOCK 256

size_t gs_head_blocks(size_t rows);

/* Sets OpenBLAS's own thread count for the whole process (a library-wide
 * setting, the one call here with process scope): a program that splits
 * rows over threads of its own sets 1 once at start. */
void gs_head_blas_threads(int n);

/* params rows of block k (rows x out overall) = F W^T + b. */
void gs_head_forward(const gs_head *h, size_t k, double *params);

/* For per-row gradients G (rows x out) w.r.t. the parameters, block k:
 *   dF rows of the block = G W        (accumulate: dF += G W, for a second
 *                                      head over the same features)
 *   pw (out x in)        = G^T F      (the block's partial weight gradient)
 *   pb (out)             = sum of G   (partial bias gradient; may be NULL)
 * dF may be NULL when not wanted. */
void gs_head_backward(const gs_head *h, const double *G, size_t k, double *dF,
                      int accumulate, double *pw, double *pb);

/* Standard-error partials for block k from per-row standard errors S of G
 * (rows are independent): pw2 = (S^2)^T (F^2), pb2 = sum of S^2. */
void gs_head_backward_var(const gs_head *h, const double *S, size_t k,
                          double *pw2, double *pb2, double *scratch);

/* Size in doubles of gs_head_backward_var's scratch. */
size_t gs_head_var_scratch(const gs_head *h);

/* out[i] = r * sum over blocks of partials[block * n + i], in block
 * order; with sqrt_ set, out[i] = r * sqrt(that sum) (for variances). */
void gs_head_reduce(size_t blocks, size_t n, const double *partials, double r,
                    int sqrt_, double *out);

/* Standard errors of the features gradient of row b when n heads share
 * the features: with T[i] (rows x M x out_i) the per-sample gradient terms
 * w.r.t. head i's parameters, the per-sample feature terms are
 * P = sum_i T[i]_b W_i (M x in), and se[j] = std(P[., j]) / sqrt(M). The
 * covariance between a row's parameters (the same samples drive them all)
 * is thereby counted. P is caller scratch of M x in doubles; se has in. */
void gs_head_features_se(const gs_head *heads, const double *const *T, int n,
                         size_t M, size_t b, double *P, double *se);

#endif
