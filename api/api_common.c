/* api_common.c - distributions, common fields, row splitting and kernel-error naming. */
#include "api_common.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ==== distributions ====================================================== */

static const char *const TYPES[] = {"categorical", "normal", "tanh_normal", NULL};

/* Reads a parameter array of rank 1 (single row) or 2 into dst. */
static int read_param(api_ctx *c, json_t *obj, const char *dpath, const char *key,
                      size_t rank, const size_t *want, const double **dst,
                      api_arr *a) {
    char p[128];
    api_path(p, sizeof p, dpath, key);
    json_t *v = json_object_get(obj, key);
    if (!v) return api_bad(c, p, "`%s` is required", p);
    if (api_read(c, v, p, rank, want, 0, a)) return -1;
    *dst = a->f;
    return 0;
}

int api_dist_parse(api_ctx *c, json_t *root, const char *key, int accept,
                   api_dist *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->path, sizeof out->path, "%s", key);
    const char *dp = out->path;
    char p[128];
    json_t *obj = json_object_get(root, key);
    if (!obj) return api_bad(c, dp, "`%s` is required", dp);
    if (!json_is_object(obj)) return api_bad(c, dp, "`%s` must be a JSON object", dp);
    int type = 0;
    api_path(p, sizeof p, dp, "type");
    int r = api_get_enum(c, obj, "type", p, TYPES, &type);
    if (r < 0) return -1;
    if (r == 0) return api_bad(c, p, "`%s` is required: \"categorical\", \"normal\" or \"tanh_normal\"", p);
    if (!(accept & (1 << type))) {
        char list[128] = "";
        for (int t = 0; TYPES[t]; t++)
            if (accept & (1 << t)) {
                size_t l = strlen(list);
                snprintf(list + l, sizeof list - l, "%s\"%s\"", l ? " or " : "", TYPES[t]);
            }
        return api_bad(c, p, "`%s` must be %s here, got \"%s\"", p, list, TYPES[type]);
    }
    /* Keys that belong to another type are unknown for this one. (The
     * tanh_normal list used to be the union of all types' keys, which let
     * a stray `logits` pass silently; found by tests/test_api_io.c.) */
    const char *const cat_keys[] = {"type", "logits", "head", "reduction", NULL};
    const char *const normal_keys[] = {"type", "loc", "log_scale", "scale", "head",
                                       "reduction", NULL};
    const char *const tanh_keys[] = {"type", "loc", "log_scale", "scale", "low", "high",
                                     "head", "reduction", NULL};
    if (api_keys(c, obj, dp, type == GS_CATEGORICAL ? cat_keys
                             : type == GS_NORMAL    ? normal_keys
                                                    : tanh_keys))
        return -1;
    gs_dist *d = &out->d;
    d->type = (gs_dist_type)type;
    api_arr a;
    size_t want[2] = {0, 0};
    /* A linear head produces the parameters instead (API.md §8). */
    if (api_head_parse(c, obj, dp, type != GS_CATEGORICAL, &out->head)) return -1;
    if (out->head) {
        static const char *const params[] = {"logits", "loc", "log_scale", "scale"};
        for (int i = 0; i < 4; i++)
            if (json_object_get(obj, params[i]))
                return api_bad(c, api_path(p, sizeof p, dp, params[i]),
                               "`%s.head` produces the parameters: send either `head` or `%s`",
                               dp, params[i]);
        api_head *h = out->head;
        out->single = h->single;
        d->rows = h->h[0].rows;
        d->dim = h->h[0].out;
        if (type == GS_CATEGORICAL) {
            d->logits = h->params[0];
            out->p0name = "logits";
            return 0;
        }
        d->loc = h->params[0];
        d->scale = h->params[1];
        out->p0name = "loc";
        out->p1name = "log_scale";
        goto bounds;
    }
    if (type == GS_CATEGORICAL) {
        json_t *v = json_object_get(obj, "logits");
        size_t rank = api_rank(v) == 1 ? 1 : 2;
        if (read_param(c, obj, dp, "logits", rank, want, &d->logits, &a)) return -1;
        out->single = rank == 1;
        d->rows = rank == 1 ? 1 : a.dims[0];
        d->dim = a.dims[rank - 1];
        out->p0name = "logits";
        return 0;
    }
    json_t *v = json_object_get(obj, "loc");
    size_t rank = api_rank(v) == 1 ? 1 : 2;
    if (read_param(c, obj, dp, "loc", rank, want, &d->loc, &a)) return -1;
    out->single = rank == 1;
    d->rows = rank == 1 ? 1 : a.dims[0];
    d->dim = a.dims[rank - 1];
    out->p0name = "loc";
    int has_ls = json_object_get(obj, "log_scale") != NULL;
    int has_s = json_object_get(obj, "scale") != NULL;
    if (has_ls == has_s)
        return api_bad(c, api_path(p, sizeof p, dp, has_s ? "scale" : "log_scale"),
                       "`%s` takes exactly one of `log_scale` or `scale`%s", dp,
                       has_s ? ", not both" : "");
    out->p1name = has_s ? "scale" : "log_scale";
    memcpy(want, a.dims, sizeof want);
    if (read_param(c, obj, dp, out->p1name, rank, want, &d->scale, &a)) return -1;
    d->scale_is_sigma = has_s;
    if (has_s)
        for (size_t k = 0; k < a.n; k++)
            if (!(a.f[k] > 0.0)) {
                char q[128];
                size_t b = k / d->dim, j = k % d->dim;
                if (out->single) snprintf(q, sizeof q, "%s.scale[%zu]", dp, j);
                else snprintf(q, sizeof q, "%s.scale[%zu][%zu]", dp, b, j);
                return api_bad(c, q, "`%s` must be > 0, got %g", q, a.f[k]);
            }
bounds:
    if (type != GS_TANH_NORMAL) return 0;
    json_t *lo = json_object_get(obj, "low"), *hi = json_object_get(obj, "high");
    if (!lo != !hi)
        return api_bad(c, api_path(p, sizeof p, dp, lo ? "high" : "low"),
                       "`%s.low` and `%s.high` go together: send both or neither", dp, dp);
    if (!lo) return 0;
    size_t wd[1] = {d->dim};
    api_arr la, ha;
    if (api_read(c, lo, api_path(p, sizeof p, dp, "low"), 1, wd, 0, &la)) return -1;
    if (api_read(c, hi, api_path(p, sizeof p, dp, "high"), 1, wd, 0, &ha)) return -1;
    for (size_t j = 0; j < d->dim; j++)
        if (!(la.f[j] < ha.f[j])) {
            char q[128];
            snprintf(q, sizeof q, "%s.high[%zu]", dp, j);
            return api_bad(c, q, "`%s` must be greater than `%s.low[%zu]`: got low %g, high %g",
                           q, dp, j, la.f[j], ha.f[j]);
        }
    for (size_t j = 0; j < d->dim; j++) {
        double cj, sj;
        gs_tanh_bounds(la.f[j], ha.f[j], &cj, &sj);
        if (!(sj > 0.0)) {
            char q[128];
            snprintf(q, sizeof q, "%s.high[%zu]", dp, j);
            return api_bad(c, q, "`%s` is too close to `%s.low[%zu]`: half the gap between "
                           "them (%g and %g) underflows to 0", q, dp, j, la.f[j], ha.f[j]);
        }
    }
    d->low = la.f;
    d->high = ha.f;
    return 0;
}

int api_batch_array(api_ctx *c, json_t *root, const char *key, int single,
                    size_t rank, const size_t *want, int integer, int required,
                    api_arr *out, int *present) {
    json_t *v = json_object_get(root, key);
    if (present) *present = v != NULL;
    memset(out, 0, sizeof *out);
    if (!v) return required ? api_bad(c, key, "`%s` is required", key) : 0;
    size_t r = single ? rank - 1 : rank;
    size_t got = api_rank(v);
    if (got != r && got != 0 && (got == rank || got == rank - 1))
        return api_bad(c, key, "`%s` must be %zu-D like the distribution's parameters (%s), "
                       "got %zu-D", key, r,
                       single ? "a single-row request" : "a batch", got);
    if (api_read(c, v, key, r, single ? want + 1 : want, integer, out)) return -1;
    if (single) { /* present it with the batch axis of length 1 */
        memmove(out->dims + 1, out->dims, r * sizeof *out->dims);
        out->dims[0] = 1;
        out->rank = rank;
    }
    return 0;
}

/* ==== common fields ====================================================== */

int api_read_output(api_ctx *c, json_t *root) {
    static const char *const modes[] = {"json", "base64", NULL};
    int m = c->base64;
    if (api_get_enum(c, root, "output", "output", modes, &m) < 0) return -1;
    c->base64 = m;
    return 0;
}

int api_read_seed(api_ctx *c, json_t *root, uint64_t *seed, int *has) {
    int64_t s = 0;
    int r = api_get_int(c, root, "seed", "seed", 0, (int64_t)GS_SEED_MAX, &s);
    if (r < 0) return -1;
    *has = r;
    *seed = r ? (uint64_t)s : api_random_seed();
    return 0;
}

int api_read_samples(api_ctx *c, json_t *root, int64_t lo, int64_t def,
                     size_t *m, int *has) {
    int64_t v = def;
    /* The sample index is 32 bits of the Philox counter: at most 2^32 - 1. */
    int64_t hi = (int64_t)(c->lim->max_numbers < UINT32_MAX ? c->lim->max_numbers : UINT32_MAX);
    json_t *j = json_object_get(root, "samples");
    int64_t x;
    if (j && lo <= hi &&
        ((api_int_value(j, &x) && x > hi) || (json_is_real(j) && json_real_value(j) >= 0x1p63)))
        return api_err(c, 413, "payload_too_large", "samples",
                       "`samples` = %.17g is over this server's limit of %lld numbers per request",
                       json_number_value(j), (long long)hi);
    int r = api_get_int(c, root, "samples", "samples", lo, hi, &v);
    if (r < 0) return -1;
    if (has) *has = r;
    *m = (size_t)v;
    return 0;
}

int api_samples_agree(api_ctx *c, json_t *root, size_t M, const char *key) {
    size_t m;
    int has;
    if (api_read_samples(c, root, 1, 0, &m, &has)) return -1;
    if (has && m != M)
        return api_bad(c, "samples", "`samples` = %zu disagrees with the %zu samples of `%s`; "
                       "leave it out or make them agree", m, M, key);
    return 0;
}

int api_read_baseline(api_ctx *c, json_t *root, gs_baseline *b) {
    static const char *const names[] = {"loo", "none", NULL};
    int i = 0;
    if (api_get_enum(c, root, "baseline", "baseline", names, &i) < 0) return -1;
    *b = i ? GS_BASELINE_NONE : GS_BASELINE_LOO;
    return 0;
}

int api_read_alpha(api_ctx *c, json_t *root, double *alpha) {
    int r = api_get_double(c, root, "alpha", "alpha", alpha);
    if (r < 0) return -1;
    if (r == 0) return api_bad(c, "alpha", "`alpha` (the entropy temperature, > 0) is required");
    if (!(*alpha > 0.0)) return api_bad(c, "alpha", "`alpha` must be > 0, got %g", *alpha);
    return 0;
}

int api_read_target(api_ctx *c, json_t *root, double *t, int *has) {
    int r = api_get_double(c, root, "target_entropy", "target_entropy", t);
    if (r < 0) return -1;
    *has = r;
    return 0;
}

int api_unsupported(api_ctx *c, const char *field, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return api_err(c, 422, "unsupported", field, "%s", msg);
}

int api_read_noise(api_ctx *c, json_t *root, const api_dist *d, api_noise *n) {
    memset(n, 0, sizeof *n);
    json_t *eps = json_object_get(root, "eps"), *seed = json_object_get(root, "seed");
    if (eps && seed)
        return api_bad(c, "seed", "send the noise as either `eps` or `seed`, not both");
    if (!eps && !seed)
        return api_bad(c, "eps", "`eps` (the noise, [B][M][D] as /v1/sample returns it) or "
                       "`seed` is required");
    if (api_read_samples(c, root, 1, 0, &n->M, &n->samples_sent)) return -1;
    if (seed) {
        int has;
        if (api_read_seed(c, root, &n->seed, &has)) return -1;
        n->from_seed = 1;
        gs_rng_init(&n->noise.rng, n->seed);
        return 0;
    }
    size_t want[3] = {d->d.rows, n->samples_sent ? n->M : 0, d->d.dim};
    api_arr a;
    if (n->samples_sent && api_rank(eps) == (d->single ? 2 : 3)) {
        /* A disagreeing samples is named, not the noise. */
        want[1] = 0;
        if (api_batch_array(c, root, "eps", d->single, 3, want, 0, 1, &a, NULL)) return -1;
        if (a.dims[1] != n->M)
            return api_bad(c, "samples", "`samples` = %zu disagrees with the %zu samples of "
                           "`eps`; leave it out or make them agree", n->M, a.dims[1]);
    } else if (api_batch_array(c, root, "eps", d->single, 3, want, 0, 1, &a, NULL)) {
        return -1;
    }
    n->M = a.dims[1];
    n->noise.eps = a.f;
    return 0;
}

int api_per_sample(api_ctx *c, json_t *root, const char *key, const api_dist *d,
                   size_t rank, int integer, int required, api_noise *n,
                   api_arr *out, int *present) {
    int from_samples = n->samples_sent && !n->noise.eps && n->from_seed;
    size_t want[3] = {d->d.rows, from_samples ? 0 : n->M, d->d.dim};
    if (api_batch_array(c, root, key, d->single, rank, want, integer, required, out, present))
        return -1;
    if (present && !*present) return 0;
    if (from_samples && out->dims[1] != n->M)
        return api_bad(c, "samples", "`samples` = %zu disagrees with the %zu samples of `%s`; "
                       "leave it out or make them agree", n->M, out->dims[1], key);
    n->M = out->dims[1];
    return 0;
}

/* ==== running kernels ===================================================== */

typedef struct {
    api_kernel kernel;
    const void *job;
    size_t rows, tasks;
    gs_error *errs;
    int *rcs;
} split_job;

static void split_task(void *arg, size_t i) {
    split_job *s = arg;
    size_t r0 = s->rows * i / s->tasks, r1 = s->rows * (i + 1) / s->tasks;
    s->rcs[i] = r0 < r1 ? s->kernel(s->job, r0, r1, &s->errs[i]) : 0;
}

int api_run_rows(api_ctx *c, api_kernel kernel, const void *job, size_t rows,
                 size_t per_row, api_name_error name_error) {
    const api_exec *x = c->exec;
    size_t tasks = 1;
    if (x && x->run && x->workers > 1 && rows > 1 &&
        rows * (per_row ? per_row : 1) >= c->lim->split_min) {
        /* A few tasks per worker evens out uneven rows; each task is a
         * contiguous row range, so results do not depend on the split. */
        tasks = 4 * x->workers;
        if (tasks > rows) tasks = rows;
    }
    gs_error one_err;
    int one_rc;
    split_job s = {kernel, job, rows, tasks, &one_err, &one_rc};
    if (tasks > 1) {
        s.errs = api_alloc(c, tasks, sizeof *s.errs);
        s.rcs = api_alloc(c, tasks, sizeof *s.rcs);
        if (!s.errs || !s.rcs) return -1;
        x->run(x->ctx, tasks, split_task, &s);
    } else {
        split_task(&s, 0);
    }
    /* Tasks are in row order: the first failing one holds the lowest row. */
    for (size_t i = 0; i < tasks; i++) {
        if (!s.rcs[i]) continue;
        if (s.rcs[i] == GS_ENOMEM)
            return api_err(c, 413, "payload_too_large", NULL,
                           "the request needs more memory than is available");
        if (s.rcs[i] == GS_EUNSUPPORTED)
            return api_unsupported(c, NULL, "the estimator does not apply to this distribution");
        name_error(c, job, &s.errs[i]);
        if (!c->status) api_bad(c, NULL, "the result would not be a finite number");
        return -1;
    }
    return 0;
}

/* Formats path[row][sample][col], leaving out what does not apply. */
static void fmt_index(char *buf, size_t n, const char *path, int single, long row,
                      long sample, long col) {
    size_t l = (size_t)snprintf(buf, n, "%s", path);
    if (!single && row >= 0 && l < n) l += (size_t)snprintf(buf + l, n - l, "[%ld]", row);
    if (sample >= 0 && l < n) l += (size_t)snprintf(buf + l, n - l, "[%ld]", sample);
    if (col >= 0 && l < n) snprintf(buf + l, n - l, "[%ld]", col);
}

void api_kernel_error(api_ctx *c, const api_dist *d, const gs_error *e) {
    char base[128], p[256];
    /* Parameters a head produced are named by the head's layer and row. */
    if (d && d->head && (e->input == GS_IN_LOGITS || e->input == GS_IN_LOC ||
                         e->input == GS_IN_SCALE)) {
        const api_head *h = d->head;
        if (h->n == 2) snprintf(base, sizeof base, "%s.%s", h->path,
                                e->input == GS_IN_SCALE ? "log_scale" : "loc");
        else snprintf(base, sizeof base, "%s", h->path);
        api_bad(c, base, "the %s the head `%s` produces for row %ld would make the result "
                "non-finite (an exp that over- or underflows); use smaller weights or features",
                e->input == GS_IN_SCALE ? "log_scale" : e->input == GS_IN_LOC ? "loc" : "logits",
                base, e->row);
        return;
    }
    long sample = e->sample;
    switch (e->input) {
    case GS_IN_LOGITS: api_path(base, sizeof base, d->path, "logits"); sample = -1; break;
    case GS_IN_LOC: api_path(base, sizeof base, d->path, "loc"); sample = -1; break;
    case GS_IN_SCALE:
        api_path(base, sizeof base, d->path, d->p1name ? d->p1name : "log_scale");
        fmt_index(p, sizeof p, base, d->single, e->row, -1, e->col);
        api_bad(c, p, "`%s` gives a scale so large or so small that the result (or its "
                "standard error) would not be a finite double; use a value of smaller "
                "magnitude", p);
        return;
    case GS_IN_X: snprintf(base, sizeof base, "x");
        fmt_index(p, sizeof p, base, d->single, e->row, sample, e->col);
        api_bad(c, p, "`%s` lies outside the support of the distribution, or so far from "
                "its centre that its log-density is not a finite double", p);
        return;
    case GS_IN_ACTIONS: snprintf(base, sizeof base, "actions");
        fmt_index(p, sizeof p, base, d ? d->single : 0, e->row, sample, -1);
        api_bad(c, p, "`%s` is an action whose probability is 0 (its logit is more than the "
                "largest double below the row's largest), so its log-probability is not "
                "finite", p);
        return;
    case GS_IN_EPS: snprintf(base, sizeof base, "eps"); break;
    case GS_IN_F: snprintf(base, sizeof base, "f"); break;
    case GS_IN_Q: snprintf(base, sizeof base, "q"); break;
    case GS_IN_GRAD_X: snprintf(base, sizeof base, "grad_x"); break;
    case GS_IN_GRAD_LOG_PROB: snprintf(base, sizeof base, "grad_log_prob"); break;
    case GS_IN_DQ_DA: snprintf(base, sizeof base, "dq_da"); break;
    case GS_IN_ALPHA: snprintf(base, sizeof base, "alpha"); break;
    default: snprintf(base, sizeof base, "%s", d ? d->path : ""); break;
    }
    fmt_index(p, sizeof p, base, d ? d->single : 0, e->row, sample, e->col);
    /* A column index of a per-row result is not a column of a per-sample
     * input: name the row only. */
    if ((e->input == GS_IN_GRAD_X || e->input == GS_IN_DQ_DA || e->input == GS_IN_F) &&
        sample < 0)
        fmt_index(p, sizeof p, base, d ? d->single : 0, e->row, -1, -1);
    if (!*p) snprintf(p, sizeof p, "%s", base);
    api_bad(c, *p ? p : NULL, "`%s` makes the result overflow: it would not be a finite "
            "number; use values of smaller magnitude", p);
}

/* ==== writing ============================================================== */

void api_write_rows(api_ctx *c, int single, const double *f, const int64_t *i,
                    size_t rank, const size_t *dims) {
    if (single) api_write(c, f, i, rank - 1, dims + 1);
    else api_write(c, f, i, rank, dims);
}

void api_write_pgrad(api_ctx *c, const api_dist *d, const gs_pgrad *g, int se) {
    size_t dims[2] = {d->d.rows, d->d.dim};
    w_obj_begin(&c->out);
    w_key(&c->out, d->p0name);
    api_write_rows(c, d->single, g->p0, NULL, 2, dims);
    if (d->p1name) {
        w_key(&c->out, d->p1name);
        api_write_rows(c, d->single, g->p1, NULL, 2, dims);
    }
    if (d->head) api_head_write(c, d->head, se);
    w_obj_end(&c->out);
}

int api_terms_alloc(api_ctx *c, const api_dist *d, size_t M, gs_pgrad *terms) {
    memset(terms, 0, sizeof *terms);
    if (!d->head || M < 2) return 0;
    size_t n = d->d.rows * M * d->d.dim;
    if (!(terms->p0 = api_alloc(c, n, sizeof(double)))) return -1;
    if (d->p1name && !(terms->p1 = api_alloc(c, n, sizeof(double)))) return -1;
    return 0;
}

int api_dist_backward(api_ctx *c, api_dist *d, const gs_pgrad *g, const gs_pgrad *se,
                      const gs_pgrad *terms, size_t M) {
    return d->head ? api_head_backward(c, d->head, g, se, terms, M) : 0;
}

int api_top_matrix(api_ctx *c, json_t *root, const char *key, int allow_head,
                   api_dist *d) {
    memset(d, 0, sizeof *d);
    d->d.type = GS_CATEGORICAL;
    d->p0name = key;
    if (allow_head) {
        if (api_head_parse(c, root, "", 0, &d->head)) return -1;
        if (d->head) {
            if (json_object_get(root, key))
                return api_bad(c, key, "`head` produces the %s: send either `head` or `%s`",
                               key, key);
            d->single = d->head->single;
            d->d.rows = d->head->h[0].rows;
            d->d.dim = d->head->h[0].out;
            d->d.logits = d->head->params[0];
            return 0;
        }
    }
    json_t *v = json_object_get(root, key);
    if (!v) return api_bad(c, key, "`%s` is required", key);
    size_t rank = api_rank(v) == 1 ? 1 : 2, want[2] = {0, 0};
    api_arr a;
    if (api_read(c, v, key, rank, want, 0, &a)) return -1;
    d->single = rank == 1;
    d->d.rows = d->single ? 1 : a.dims[0];
    d->d.dim = a.dims[rank - 1];
    d->d.logits = a.f;
    return 0;
}

int api_pgrad_alloc(api_ctx *c, const api_dist *d, gs_pgrad *g) {
    size_t n = d->d.rows * d->d.dim;
    g->p0 = api_alloc(c, n, sizeof(double));
    g->p1 = d->p1name ? api_alloc(c, n, sizeof(double)) : NULL;
    return g->p0 && (!d->p1name || g->p1) ? 0 : -1;
}
