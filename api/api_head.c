/* api_head.c - linear heads in requests: parse, forward through OpenBLAS, backward to the layer. */
#include "api_head.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Reads {"weight": [out][in], "bias": [out]?} at path into h (features set
 * by the caller). out: 0 = take it from the weight. */
static int read_layer(api_ctx *c, json_t *obj, const char *path, size_t in, gs_head *h,
                      int check_keys) {
    static const char *const keys[] = {"weight", "bias", NULL};
    char p[128];
    if (check_keys && api_keys(c, obj, path, keys)) return -1;
    json_t *w = json_object_get(obj, "weight"), *b = json_object_get(obj, "bias");
    api_path(p, sizeof p, path, "weight");
    if (!w) return api_bad(c, p, "`%s` is required", p);
    size_t want[2] = {h->out, in};
    api_arr a;
    if (api_read(c, w, p, 2, want, 0, &a)) return -1;
    h->out = a.dims[0];
    h->weight = a.f;
    if (b) {
        size_t wb[1] = {h->out};
        if (api_read(c, b, api_path(p, sizeof p, path, "bias"), 1, wb, 0, &a)) return -1;
        h->bias = a.f;
    }
    return 0;
}

typedef struct {
    api_head *h;
    const gs_pgrad *g, *se, *terms;
    size_t M;
    double *pw[2], *pb[2], *pw2[2], *pb2[2];
    double *scratch;        /* per block: variance scratch, then M x in */
    size_t blocks, var_scratch, per_block;
} head_work;

static void forward_block(void *arg, size_t k) {
    head_work *w = arg;
    for (int i = 0; i < w->h->n; i++) gs_head_forward(&w->h->h[i], k, w->h->params[i]);
}

/* Runs task over the blocks, on the worker pool when there are several. */
static void over_blocks(api_ctx *c, size_t blocks, void (*task)(void *, size_t), void *arg) {
    const api_exec *x = c->exec;
    if (x && x->run && x->workers > 1 && blocks > 1) x->run(x->ctx, blocks, task, arg);
    else for (size_t k = 0; k < blocks; k++) task(arg, k);
}

int api_head_parse(api_ctx *c, json_t *obj, const char *prefix, int two, api_head **out) {
    *out = NULL;
    json_t *hj = json_object_get(obj, "head");
    static const char *const reds[] = {"mean", "sum", NULL};
    char rp[128];
    int red = 0;
    if (api_get_enum(c, obj, "reduction", api_path(rp, sizeof rp, prefix, "reduction"), reds,
                     &red) < 0)
        return -1;
    if (!hj) return 0;
    api_head *h = api_alloc(c, 1, sizeof *h);
    if (!h) return -1;
    api_path(h->path, sizeof h->path, prefix, "head");
    static const char *const k1[] = {"features", "weight", "bias", NULL};
    static const char *const k2[] = {"features", "loc", "log_scale", NULL};
    if (api_keys(c, hj, h->path, two ? k2 : k1)) return -1;
    char p[128];
    json_t *fj = json_object_get(hj, "features");
    api_path(p, sizeof p, h->path, "features");
    if (!fj) return api_bad(c, p, "`%s` is required", p);
    size_t rank = api_rank(fj) == 1 ? 1 : 2, want[2] = {0, 0};
    api_arr f;
    if (api_read(c, fj, p, rank, want, 0, &f)) return -1;
    h->single = rank == 1;
    size_t B = h->single ? 1 : f.dims[0], in = f.dims[rank - 1];
    h->n = two ? 2 : 1;
    for (int i = 0; i < h->n; i++) {
        gs_head *g = &h->h[i];
        g->rows = B;
        g->in = in;
        g->features = f.f;
        g->out = i ? h->h[0].out : 0; /* log_scale must match loc */
        if (two) {
            h->names[i] = i ? "log_scale" : "loc";
            json_t *lj = json_object_get(hj, h->names[i]);
            api_path(p, sizeof p, h->path, h->names[i]);
            if (!lj) return api_bad(c, p, "`%s` ({\"weight\", \"bias\"}) is required", p);
            if (read_layer(c, lj, p, in, g, 1)) return -1;
        } else if (read_layer(c, hj, h->path, in, g, 0)) {
            return -1;
        }
        if (!(h->params[i] = api_alloc(c, B * g->out, sizeof(double)))) return -1;
    }
    h->r = red ? 1.0 : 1.0 / (double)B;
    head_work w = {.h = h};
    over_blocks(c, gs_head_blocks(B), forward_block, &w);
    for (int i = 0; i < h->n; i++)
        for (size_t k = 0; k < B * h->h[i].out; k++)
            if (!isfinite(h->params[i][k])) {
                char q[160];
                if (h->single) snprintf(q, sizeof q, "%s.features", h->path);
                else snprintf(q, sizeof q, "%s.features[%zu]", h->path, k / h->h[i].out);
                return api_bad(c, q, "the head's output overflows for `%s`: use features or "
                               "weights of smaller magnitude", q);
            }
    *out = h;
    return 0;
}

static void backward_block(void *arg, size_t k) {
    head_work *w = arg;
    api_head *h = w->h;
    for (int i = 0; i < h->n; i++) {
        gs_head *g = &h->h[i];
        size_t nw = g->out * g->in;
        const double *G = i ? w->g->p1 : w->g->p0;
        gs_head_backward(g, G, k, h->df, i > 0, w->pw[i] + k * nw,
                         g->bias ? w->pb[i] + k * g->out : NULL);
        if (w->se) {
            const double *S = i ? w->se->p1 : w->se->p0;
            gs_head_backward_var(g, S, k, w->pw2[i] + k * nw,
                                 g->bias ? w->pb2[i] + k * g->out : NULL,
                                 w->scratch + k * w->per_block);
        }
    }
    /* Features' standard errors: the per-sample terms of each row projected
     * through every head, then the spread of each column over the samples. */
    if (w->terms && w->terms->p0) {
        size_t r0 = k * GS_HEAD_BLOCK, r1 = r0 + GS_HEAD_BLOCK, in = h->h[0].in;
        if (r1 > h->h[0].rows) r1 = h->h[0].rows;
        const double *T[2] = {w->terms->p0, w->terms->p1};
        double *P = w->scratch + k * w->per_block + w->var_scratch;
        for (size_t b = r0; b < r1; b++)
            gs_head_features_se(h->h, T, h->n, w->M, b, P, h->sf + b * in);
    }
}

static int all_finite(const double *a, size_t n) {
    for (size_t i = 0; a && i < n; i++)
        if (!isfinite(a[i])) return 0;
    return 1;
}

int api_head_backward(api_ctx *c, api_head *h, const gs_pgrad *g, const gs_pgrad *se,
                      const gs_pgrad *terms, size_t M) {
    size_t B = h->h[0].rows, in = h->h[0].in, blocks = gs_head_blocks(B);
    head_work w = {.h = h, .g = g, .se = se && se->p0 ? se : NULL, .terms = terms, .M = M,
                   .blocks = blocks};
    if (!(h->df = api_alloc(c, B * in, sizeof(double)))) return -1;
    size_t scratch = 0;
    for (int i = 0; i < h->n; i++) {
        size_t nw = h->h[i].out * in, no = h->h[i].out;
        if (!(h->dw[i] = api_alloc(c, nw, sizeof(double))) ||
            !(w.pw[i] = api_alloc(c, blocks * nw, sizeof(double))) ||
            !(w.pb[i] = api_alloc(c, blocks * no, sizeof(double))) ||
            (h->h[i].bias && !(h->db[i] = api_alloc(c, no, sizeof(double)))))
            return -1;
        if (w.se && (!(h->sw[i] = api_alloc(c, nw, sizeof(double))) ||
                     !(w.pw2[i] = api_alloc(c, blocks * nw, sizeof(double))) ||
                     !(w.pb2[i] = api_alloc(c, blocks * no, sizeof(double))) ||
                     (h->h[i].bias && !(h->sb[i] = api_alloc(c, no, sizeof(double))))))
            return -1;
        size_t s = gs_head_var_scratch(&h->h[i]);
        scratch = s > scratch ? s : scratch;
    }
    int want_sf = w.se && terms && terms->p0;
    if (want_sf && !(h->sf = api_alloc(c, B * in, sizeof(double)))) return -1;
    if (!want_sf) w.terms = NULL;
    w.var_scratch = scratch;
    w.per_block = scratch + (want_sf ? M * in : 0);
    if (w.se && !(w.scratch = api_alloc(c, blocks * w.per_block, sizeof(double)))) return -1;
    over_blocks(c, blocks, backward_block, &w);
    for (int i = 0; i < h->n; i++) {
        size_t nw = h->h[i].out * in, no = h->h[i].out;
        gs_head_reduce(blocks, nw, w.pw[i], h->r, 0, h->dw[i]);
        if (h->db[i]) gs_head_reduce(blocks, no, w.pb[i], h->r, 0, h->db[i]);
        if (w.se) {
            gs_head_reduce(blocks, nw, w.pw2[i], h->r, 1, h->sw[i]);
            if (h->sb[i]) gs_head_reduce(blocks, no, w.pb2[i], h->r, 1, h->sb[i]);
        }
    }
    int ok = all_finite(h->df, B * in) && all_finite(h->sf, B * in);
    for (int i = 0; i < h->n; i++) {
        size_t nw = h->h[i].out * in, no = h->h[i].out;
        ok = ok && all_finite(h->dw[i], nw) && all_finite(h->sw[i], nw) &&
             all_finite(h->db[i], no) && all_finite(h->sb[i], no);
    }
    if (!ok)
        return api_bad(c, h->path, "the gradient w.r.t. `%s` overflows: use features or "
                       "weights of smaller magnitude", h->path);
    return 0;
}

static void write_layer(api_ctx *c, const api_head *h, int i, int se) {
    size_t dw[2] = {h->h[i].out, h->h[i].in}, db[1] = {h->h[i].out};
    w_key(&c->out, "weight");
    api_write(c, se ? h->sw[i] : h->dw[i], NULL, 2, dw);
    if (h->h[i].bias) {
        w_key(&c->out, "bias");
        api_write(c, se ? h->sb[i] : h->db[i], NULL, 1, db);
    }
}

void api_head_write(api_ctx *c, const api_head *h, int se) {
    api_buf *b = &c->out;
    w_key(b, "head");
    w_obj_begin(b);
    if (h->n == 1) {
        write_layer(c, h, 0, se);
    } else {
        for (int i = 0; i < 2; i++) {
            w_key(b, h->names[i]);
            w_obj_begin(b);
            write_layer(c, h, i, se);
            w_obj_end(b);
        }
    }
    const double *f = se ? h->sf : h->df;
    if (f) {
        size_t dims[2] = {h->h[0].rows, h->h[0].in};
        w_key(b, "features");
        if (h->single) api_write(c, f, NULL, 1, dims + 1);
        else api_write(c, f, NULL, 2, dims);
    }
    w_obj_end(b);
}
