/* gs_error.c - messages for the status codes of gs_error.h. */
#include "gs_error.h"

const char *gs_strerror(int status) {
    switch (status) {
#define GS_STATUS_MSG(name, msg)                                               \
    case GS_##name:                                                            \
        return msg;
        GS_STATUS_MAP(GS_STATUS_MSG)
#undef GS_STATUS_MSG
    default:
        return "unknown status";
    }
}

int gs_fail(gs_error *err, gs_status status, gs_input input, long row,
            long sample, long col) {
    if (err) {
        err->status = status;
        err->input = input;
        err->row = row;
        err->sample = sample;
        err->col = col;
    }
    return (int)status;
}
