/* api_head.h - linear heads in requests: parsing, forward, gradients to weight/bias/features (internal). */
#ifndef API_HEAD_H
#define API_HEAD_H

#include "api_io.h"

/* The head(s) of a request (API.md §8): one for categorical logits, or a
 * loc and a log_scale head over the same features. */
typedef struct {
    int n;                   /* 1 or 2 heads */
    int single;              /* 1-D features: one row */
    char path[64];           /* "distribution.head" or "head" */
    const char *names[2];    /* NULL (categorical), or "loc", "log_scale" */
    gs_head h[2];
    double *params[2];       /* rows x out: the parameters produced */
    double r;                /* 1/B for reduction mean, 1 for sum */
    /* gradients: weight (out x in), bias (out, NULL without bias), features */
    double *dw[2], *db[2], *df;
    double *sw[2], *sb[2], *sf; /* standard errors, when Monte Carlo M >= 2 */
} api_head;

/* Parses obj.head (obj is the distribution, or the request root for the
 * discrete actor) and obj.reduction, for parameters of dimension `out`
 * being 0 (read from the weight). Runs the forward pass. *head is NULL
 * when obj has no head. */
int api_head_parse(api_ctx *c, json_t *obj, const char *prefix, int two,
                   api_head **head);

/* Backward: from the per-row gradients g (and standard errors se, and
 * per-sample terms, rows x M x out, for M >= 2) to the head gradients. */
int api_head_backward(api_ctx *c, api_head *h, const gs_pgrad *g, const gs_pgrad *se,
                      const gs_pgrad *terms, size_t M);

/* Writes "head": {...} mirroring the request (se: the standard errors). */
void api_head_write(api_ctx *c, const api_head *h, int se);

#endif
