/* The status document that `ferry start` answers `ferry status` with (docs/operations.md,
 * "ferry status"), and the human rendering `ferry status` prints. */
#ifndef FY_CLI_ADMIN_STATUS_H
#define FY_CLI_ADMIN_STATUS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "http/http.h"
#include "pool/pool.h"

/* What the core knows about itself besides the pool. Borrowed strings. */
typedef struct fy_status_source {
    const char *app_root, *app_type, *environment, *url, *instance_dir;
    const char *interpreter;        /* rack, wsgi: the loader's interpreter; NULL for c */
    const char *interpreter_source; /* why it was chosen (src/cli/interp.h); NULL for c */
    uint64_t started_unix_s; /* wall clock */
    uint64_t uptime_ms;
    bool stopping;
    unsigned max_pool_size, min_instances, max_request_queue_size;
    uint64_t memory_limit_kib; /* PSS per worker; 0 = no limit */
    unsigned slow_request_threshold_ms;
    const fy_pool_t *pool;
    const fy_http_server_t *http;
} fy_status_source_t;

/* Builds the status document (a new reference), reading each worker's memory from /proc. */
json_t *fy_status_build(const fy_status_source_t *src);

/* Writes <doc> as the human summary `ferry status` prints. */
void fy_status_print(FILE *out, const json_t *doc);

/* The document of `ferry status --slow` (a new reference): the slow and failed request rings,
 * newest first. */
json_t *fy_status_build_slow(const fy_status_source_t *src);
/* Writes it for humans. */
void fy_status_print_slow(FILE *out, const json_t *doc);

#endif
