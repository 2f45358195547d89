/* api_endpoints.h - the endpoint table: each op parses, then runs (internal). */
#ifndef API_ENDPOINTS_H
#define API_ENDPOINTS_H

#include "api_common.h"

/* parse validates root and leaves the endpoint's state in c->state and its
 * size in c->cost (checked against the limit); run computes and writes the
 * response body into c->out. Both return 0 or -1 with c's error set. The
 * split lets /v1/batch check the whole batch's size before computing. */
typedef struct {
    const char *op;
    int (*parse)(api_ctx *c, json_t *root);
    int (*run)(api_ctx *c);
} api_endpoint;

#define API_ENDPOINT(name)                                                     \
    int api_##name##_parse(api_ctx *c, json_t *root);                          \
    int api_##name##_run(api_ctx *c);

API_ENDPOINT(entropy)
API_ENDPOINT(sample)
API_ENDPOINT(log_prob)
API_ENDPOINT(reparam)
API_ENDPOINT(score)
API_ENDPOINT(sac_actor)
API_ENDPOINT(sac_policy)
API_ENDPOINT(sac_continuous)

#endif
