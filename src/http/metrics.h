/* The front's counters for the Prometheus endpoint (docs/operations.md, "Monitoring") and the
 * rings of the last slow and failed requests (`ferry status --slow`). Counting is plain integer
 * arithmetic on the loop thread, at the end of each request: no allocation, no syscall. The text
 * is built only when someone asks (fy_http_metrics_text, http.h). Loop thread only. */
#ifndef FY_HTTP_METRICS_H
#define FY_HTTP_METRICS_H

#include <stdint.h>

#include "core/hist.h"

/* The methods counted by name; any other (or none: a head that never completed) is "OTHER". */
#define FY_HTTP_METRIC_METHODS(X) X(GET) X(HEAD) X(POST) X(PUT) X(DELETE) X(PATCH) X(OPTIONS) X(OTHER)

typedef enum fy_http_metric_method {
#define FY_X(m) FY_HTTP_M_##m,
    FY_HTTP_METRIC_METHODS(FY_X)
#undef FY_X
    FY_HTTP_M_COUNT
} fy_http_metric_method_t;

/* Why ferry itself answered or ended a request: one table for the metric labels, the log and
 * `ferry status --slow`. Kind 'r': refused without a worker (ferry_http_rejections_total); 'f': a
 * worker had it and ferry ended it (ferry_http_failures_total); 'c': the client left. */
#define FY_HTTP_WHYS(X)                                                                        \
    X(NONE, 0, "", "")                                                                         \
    X(QUEUE_FULL, 'r', "queue_full", "the request queue was full")                             \
    X(QUEUE_TIME, 'r', "queue_time", "no worker became free within the max queue time")        \
    X(BOOT_FAILURE, 'r', "boot_failure", "the application could not be started")               \
    X(SHUTTING_DOWN, 'r', "shutting_down", "the server was shutting down")                     \
    X(NO_WORKER, 'r', "no_worker", "no worker was available")                                  \
    X(BAD_REQUEST, 'r', "bad_request", "the request was malformed")                            \
    X(BODY_TOO_LARGE, 'r', "body_too_large", "the request body was over max body size")        \
    X(URI_TOO_LONG, 'r', "uri_too_long", "the request target was over max uri length")         \
    X(HEADERS_TOO_LARGE, 'r', "headers_too_large", "the request headers were too large")       \
    X(EXPECTATION, 'r', "expectation_failed", "an Expect other than 100-continue")             \
    X(NOT_IMPLEMENTED, 'r', "not_implemented", "an unsupported method or transfer coding")     \
    X(HTTP_VERSION, 'r', "http_version", "an HTTP major version other than 1")                 \
    X(BODY_BUFFER, 'r', "body_buffer_failed", "the request body could not be buffered")        \
    X(HEADER_TIMEOUT, 'r', "header_timeout", "the request head did not arrive in time")        \
    X(BODY_TIMEOUT, 'r', "body_timeout", "the request body did not arrive in time")            \
    X(BAD_RESPONSE, 'f', "bad_response", "the worker sent no valid response")                  \
    X(MAX_REQUEST_TIME, 'f', "max_request_time", "the worker passed max request time")         \
    X(RESPONSE_CUT, 'f', "response_cut", "the response was cut short")                         \
    X(CLIENT_GONE, 'c', "client_gone", "the client went away")

typedef enum fy_http_why {
#define FY_X(e, kind, label, text) FY_HTTP_WHY_##e,
    FY_HTTP_WHYS(FY_X)
#undef FY_X
    FY_HTTP_WHY_COUNT
} fy_http_why_t;

/* Bounds of the request duration and queue wait histograms, in milliseconds. */
#define FY_HTTP_DURATION_BUCKETS_MS 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000

typedef struct fy_http_metrics {
    /* finished requests by method and status class (index 0: 1xx .. 4: 5xx) */
    uint64_t requests[FY_HTTP_M_COUNT][5];
    uint64_t response_bytes;              /* body bytes sent to clients */
    uint64_t whys[FY_HTTP_WHY_COUNT];     /* requests ferry refused, ended, or the client left */
    fy_hist_t duration;                   /* first byte (or accept) to the last response byte */
    fy_hist_t queue_wait;                 /* request complete to a worker (or the refusal) */
    uint64_t started_unix_ms;             /* when the server was made: the process start time */
} fy_http_metrics_t;

void fy_http_metrics_init(fy_http_metrics_t *m);

/* The counted method of <method> (a static string, or NULL). */
fy_http_metric_method_t fy_http_metrics_method(const char *method);

/* The label ("queue_full"), kind ('r', 'f', 'c', 0) and text of <why>. */
const char *fy_http_why_label(fy_http_why_t why);
char fy_http_why_kind(fy_http_why_t why);
const char *fy_http_why_text(fy_http_why_t why);

#endif
