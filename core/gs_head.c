/* gs_head.c - linear heads on OpenBLAS: forward F W^T + b, backward G^T F, sum G, G W. */
#include "gs_head.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

void gs_head_blas_threads(int n) { openblas_set_num_threads(n); }

size_t gs_head_blocks(size_t rows) { return (rows + GS_HEAD_BLOCK - 1) / GS_HEAD_BLOCK; }

static size_t block_rows(const gs_head *h, size_t k, size_t *r0) {
    *r0 = k * GS_HEAD_BLOCK;
    size_t r1 = *r0 + GS_HEAD_BLOCK;
    return (r1 < h->rows ? r1 : h->rows) - *r0;
}

void gs_head_forward(const gs_head *h, size_t k, double *params) {
    size_t r0, n = block_rows(h, k, &r0);
    double *P = params + r0 * h->out;
    /* beta = 1 over rows pre-filled with the bias, else beta = 0. */
    if (h->bias)
        for (size_t b = 0; b < n; b++) memcpy(P + b * h->out, h->bias, h->out * sizeof *P);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)h->out, (int)h->in, 1.0,
                h->features + r0 * h->in, (int)h->in, h->weight, (int)h->in,
                h->bias ? 1.0 : 0.0, P, (int)h->out);
}

void gs_head_backward(const gs_head *h, const double *G, size_t k, double *dF,
                      int accumulate, double *pw, double *pb) {
    size_t r0, n = block_rows(h, k, &r0);
    const double *Gb = G + r0 * h->out, *F = h->features + r0 * h->in;
    if (dF)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)h->in, (int)h->out,
                    1.0, Gb, (int)h->out, h->weight, (int)h->in, accumulate ? 1.0 : 0.0,
                    dF + r0 * h->in, (int)h->in);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)h->out, (int)h->in, (int)n, 1.0,
                Gb, (int)h->out, F, (int)h->in, 0.0, pw, (int)h->in);
    if (pb) {
        memset(pb, 0, h->out * sizeof *pb);
        for (size_t b = 0; b < n; b++)
            for (size_t j = 0; j < h->out; j++) pb[j] += Gb[b * h->out + j];
    }
}

size_t gs_head_var_scratch(const gs_head *h) {
    return GS_HEAD_BLOCK * (h->out + h->in);
}

void gs_head_backward_var(const gs_head *h, const double *S, size_t k,
                          double *pw2, double *pb2, double *scratch) {
    size_t r0, n = block_rows(h, k, &r0);
    double *S2 = scratch, *F2 = scratch + GS_HEAD_BLOCK * h->out;
    for (size_t i = 0; i < n * h->out; i++) S2[i] = S[r0 * h->out + i] * S[r0 * h->out + i];
    for (size_t i = 0; i < n * h->in; i++) {
        double f = h->features[r0 * h->in + i];
        F2[i] = f * f;
    }
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)h->out, (int)h->in, (int)n, 1.0,
                S2, (int)h->out, F2, (int)h->in, 0.0, pw2, (int)h->in);
    if (pb2) {
        memset(pb2, 0, h->out * sizeof *pb2);
        for (size_t b = 0; b < n; b++)
            for (size_t j = 0; j < h->out; j++) pb2[j] += S2[b * h->out + j];
    }
}

void gs_head_reduce(size_t blocks, size_t n, const double *partials, double r,
                    int sqrt_, double *out) {
    for (size_t i = 0; i < n; i++) {
        double s = 0.0;
        for (size_t k = 0; k < blocks; k++) s += partials[k * n + i];
        out[i] = sqrt_ ? r * sqrt(s) : r * s;
    }
}

void gs_head_features_se(const gs_head *heads, const double *const *T, int n,
                         size_t M, size_t b, double *P, double *se) {
    size_t in = heads[0].in;
    for (int i = 0; i < n; i++) {
        const gs_head *h = &heads[i];
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)in, (int)h->out, 1.0,
                    T[i] + b * M * h->out, (int)h->out, h->weight, (int)in, i ? 1.0 : 0.0, P,
                    (int)in);
    }
    for (size_t j = 0; j < in; j++) {
        double s = 0.0, ss = 0.0;
        for (size_t m = 0; m < M; m++) s += P[m * in + j];
        double mean = s / (double)M;
        for (size_t m = 0; m < M; m++) {
            double d = P[m * in + j] - mean;
            ss += d * d;
        }
        se[j] = M > 1 ? sqrt(ss / (double)(M - 1) / (double)M) : 0.0;
    }
}
