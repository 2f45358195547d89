/* gs_error.h - status codes and the error detail every core kernel reports. */
#ifndef GS_ERROR_H
#define GS_ERROR_H

#include <stddef.h>

/* The one list of statuses: name and message, expanded into the enum and
 * into gs_strerror() so that the two can never drift apart (libuv's
 * UV_ERRNO_MAP idiom). 0 is success. */
#define GS_STATUS_MAP(X)                                                       \
    X(OK, "ok")                                                                \
    X(ENONFINITE, "the result would not be a finite number")                   \
    X(EUNSUPPORTED, "the estimator does not apply to this distribution")       \
    X(ENOMEM, "out of memory")                                                 \
    X(EINVAL, "invalid argument")

typedef enum {
#define GS_STATUS_ENUM(name, msg) GS_##name,
    GS_STATUS_MAP(GS_STATUS_ENUM)
#undef GS_STATUS_ENUM
        GS_STATUS_COUNT
} gs_status;

/* Which input a non-finite result is blamed on; the api layer turns it into
 * the request's field path (with row and col). */
typedef enum {
    GS_IN_NONE = 0,
    GS_IN_LOGITS,
    GS_IN_LOC,
    GS_IN_SCALE, /* log_scale or scale, whichever the caller sent */
    GS_IN_X,
    GS_IN_EPS,
    GS_IN_F,
    GS_IN_Q,
    GS_IN_ALPHA,
    GS_IN_GRAD_X,
    GS_IN_GRAD_LOG_PROB,
    GS_IN_DQ_DA,
    GS_IN_TARGET_ENTROPY,
    GS_IN_HEAD,
    GS_IN_ACTIONS /* a caller's action (sample index) whose probability is 0 */
} gs_input;

/* Detail of a failure, filled by the kernel that failed. row and col locate
 * the offending value (col is -1 for a per-row or per-sample scalar, sample
 * is -1 when no sample index applies). The struct is caller-owned; no static
 * state is involved, so kernels may fail concurrently on several threads. */
typedef struct {
    gs_status status;
    gs_input input;
    long row;
    long sample;
    long col;
} gs_error;

/* Returns a static, human-readable message for a status. */
const char *gs_strerror(int status);

/* Records a failure in err (when err is not NULL) and returns status. */
int gs_fail(gs_error *err, gs_status status, gs_input input, long row,
            long sample, long col);

#endif
