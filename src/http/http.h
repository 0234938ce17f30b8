/* The HTTP/1.1 front end (docs/architecture.md, "The life of a request"): listeners, client
 * connections, strict request parsing with limits, request-body buffering, forwarding one
 * request at a time to a worker checked out of the pool, response framing with backpressure,
 * and the access log.
 *
 * One fy_http_server per `ferry start` process. Owned by the caller (cmd_start); loop thread
 * only. The server borrows the pool: it checks workers out and back in (src/pool/pool.h) but
 * never spawns or stops them. */
#ifndef FY_HTTP_HTTP_H
#define FY_HTTP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "pool/pool.h"

typedef struct fy_http_server fy_http_server_t;

/* Limits and behaviour of the front. Every field has a documented default (FY_HTTP_DEFAULT_*)
 * that fy_http_options_init fills in. Times in milliseconds; 0 means "no limit" only where said. */
typedef struct fy_http_options {
    unsigned header_timeout_ms;     /* from a request's first byte to its empty line: 408 */
    unsigned body_timeout_ms;       /* longest pause between two reads of a body: 408 */
    unsigned keepalive_timeout_ms;  /* an idle keep-alive connection is closed silently */
    unsigned max_request_time_ms;   /* from checkout to the end of the response: 504; 0 = none */
    uint64_t max_body_size;         /* bytes of (de-chunked) request body: 413; 0 = none */
    size_t max_uri_length;          /* bytes of request target: 414 */
    size_t max_header_size;         /* bytes of header names + values: 431 */
    unsigned max_header_count;      /* header lines: 431 */
    size_t body_buffer_threshold;   /* bodies past this go to an unlinked temp file */
    const char *tmp_dir;            /* where those temp files live; borrowed; NULL = $TMPDIR */
    const char *trusted_proxies;    /* comma-separated peer IPs, or "*"; NULL/"" = none */
    bool proxy_protocol;            /* a trusted peer (trusted_proxies) starts each connection
                                     * with a PROXY header (v1 or v2), which names the client; an
                                     * untrusted peer's header is refused */
    const char *health_path;        /* answered by the front (200 with a ready worker, else
                                     * 503); NULL/"" = none */
    const char *environment;        /* "development" shows boot errors in 503 pages */
    bool powered_by;                /* add X-Powered-By: ferry/<version> */
    int access_log_fd;              /* combined format + request time; -1 = off; borrowed */
    unsigned session_protocol;      /* 2: session protocol v2 with every worker that offers it
                                     * (docs/protocol.md §4); 1: v1 with every worker */
    bool request_id_header;         /* add X-Request-Id: <the request's id> to responses (the
                                     * app's own X-Request-Id wins) */
    unsigned slow_request_threshold_ms; /* a request taking longer is logged with its timeline
                                     * (and kept for `ferry status --slow`); 0 = off */
    unsigned access_log_format;     /* FY_HTTP_ACCESS_LOG_COMBINED or _JSON */
    uint64_t response_buffer_max;   /* bytes of one response the core buffers (memory, then a
                                     * temp file) for a slow client before it stops reading the
                                     * worker; 0 = no limit */
} fy_http_options_t;

enum { FY_HTTP_ACCESS_LOG_COMBINED = 0, FY_HTTP_ACCESS_LOG_JSON = 1 };

#define FY_HTTP_DEFAULT_HEADER_TIMEOUT_MS 30000u
#define FY_HTTP_DEFAULT_BODY_TIMEOUT_MS 60000u
#define FY_HTTP_DEFAULT_KEEPALIVE_TIMEOUT_MS 15000u
#define FY_HTTP_DEFAULT_MAX_BODY_SIZE (1024ull * 1024 * 1024)
#define FY_HTTP_DEFAULT_MAX_URI_LENGTH 8192u
#define FY_HTTP_DEFAULT_MAX_HEADER_SIZE 32768u
#define FY_HTTP_DEFAULT_MAX_HEADER_COUNT 100u
#define FY_HTTP_DEFAULT_BODY_BUFFER_THRESHOLD 65536u
#define FY_HTTP_DEFAULT_SESSION_PROTOCOL 2u
#define FY_HTTP_DEFAULT_RESPONSE_BUFFER_MAX (128ull * 1024 * 1024)

/* The response-side write queue size above which the worker socket is no longer read. */
#define FY_HTTP_WRITE_QUEUE_HIGH (256u * 1024)

/* fy_http_server_new raises the soft RLIMIT_NOFILE to the hard limit, at most this. */
#define FY_HTTP_NOFILE_CAP 1048576u

/* Raises the soft RLIMIT_NOFILE of this process to its hard limit (at most FY_HTTP_NOFILE_CAP),
 * logging the change. Returns the soft limit now in force, or a negative errno (logged) when it
 * cannot be raised. Called by fy_http_server_new. */
int fy_http_raise_nofile_limit(void);

/* Fills <opts> with the defaults above. */
void fy_http_options_init(fy_http_options_t *opts);

/* Creates a server on <loop> that serves requests with workers of <pool> (borrowed; must
 * outlive the server). Copies <opts> (the strings it points to are borrowed). Returns 0 or a
 * negative errno. Nothing listens until fy_http_server_listen_*. */
int fy_http_server_new(uv_loop_t *loop, fy_pool_t *pool, const fy_http_options_t *opts,
                       fy_http_server_t **out);

/* Listens on TCP <host>:<port> (an IPv4 or IPv6 literal). Returns 0, -EADDRINUSE, -EINVAL for
 * a bad address, or another negative errno. May be called more than once. */
int fy_http_server_listen_tcp(fy_http_server_t *srv, const char *host, unsigned port);

/* Serves on <fd>, a listening stream socket the process inherited (systemd's socket activation,
 * docs/deploying.md): TCP (IPv4 or IPv6) or Unix; made close-on-exec, never closed before the
 * server stops and never unlinked (a Unix socket's file is its creator's). Writes the URL it
 * serves ("http://HOST:PORT", "unix:PATH") into <url>. Returns 0, -EINVAL when <fd> is not a
 * listening stream socket, -EAFNOSUPPORT for another family, -ENOSPC past 8 listeners, or the
 * errno of a failed call. */
int fy_http_server_listen_fd(fy_http_server_t *srv, int fd, char *url, size_t url_len);

/* Listens on the Unix socket file <path> (mode 0666, a stale file replaced; removed again by
 * fy_http_server_stop). Returns 0 or a negative errno. */
int fy_http_server_listen_unix(fy_http_server_t *srv, const char *path);

/* Graceful stop: closes the listeners, closes idle connections, lets requests in flight
 * finish (their connections close afterwards), and after <timeout_ms> closes whatever is left.
 * <done> runs once, from the loop, when no connection remains. */
void fy_http_server_stop(fy_http_server_t *srv, unsigned timeout_ms,
                         void (*done)(fy_http_server_t *srv, void *data), void *data);

/* Frees a stopped server (after its <done> ran). */
void fy_http_server_free(fy_http_server_t *srv);

/* Serves the Prometheus endpoint (GET /metrics, docs/operations.md "Monitoring") on TCP
 * <host>:<port> (an IPv4 or IPv6 literal) in the server's loop, until fy_http_server_stop.
 * Returns 0, -EINVAL for a bad address or a second call, -EADDRINUSE, or another negative errno. */
int fy_http_server_listen_metrics(fy_http_server_t *srv, const char *host, unsigned port);

/* The metrics of the front and of its pool in the Prometheus text format (version 0.0.4), as
 * GET /metrics answers; NUL-terminated, the caller frees it. Reads each worker's memory from
 * /proc. */
char *fy_http_metrics_text(const fy_http_server_t *srv);

/* Where a request's time went (docs/operations.md, "Slow requests"), in loop milliseconds. Each
 * stage runs from one mark to the next: the accept (a connection's first request only, else its
 * first byte), the first byte, the head complete, the body buffered, the dispatch to a worker (or
 * the refusal from the queue), the worker's first response byte, the end. A stage never reached
 * lasts 0 and its time counts in the one before it, so the stages add up to total_ms exactly. */
typedef struct fy_http_timeline {
    uint64_t connect_ms;   /* accept to the first byte (first request of a connection) */
    uint64_t head_ms;      /* first byte to the head complete */
    uint64_t body_ms;      /* head complete to the body buffered */
    uint64_t queue_ms;     /* body buffered to a worker taking it */
    uint64_t app_ms;       /* dispatched to the worker's first response byte */
    uint64_t send_ms;      /* first response byte to the last one written */
    uint64_t total_ms;
} fy_http_timeline_t;

#define FY_HTTP_RECORD_PATH_MAX 128
#define FY_HTTP_RECORDS 100

/* A finished request kept for `ferry status --slow`: the last FY_HTTP_RECORDS slow ones and the
 * last FY_HTTP_RECORDS failed ones (a 5xx ferry made, or a response it cut). */
typedef struct fy_http_request_record {
    uint64_t unix_ms;            /* when it ended (wall clock) */
    fy_http_timeline_t timeline;
    int status;
    int worker_pid;              /* 0: never dispatched */
    char method[16];
    char path[FY_HTTP_RECORD_PATH_MAX];   /* without the query; cut at the size */
    char request_id[65];
    char reason[32];             /* failed: the metric label (queue_full, max_request_time, ...) */
    char why[160];               /* failed: what happened, as the log said */
} fy_http_request_record_t;

/* Copies at most <max> records of the slow (<failed> false) or failed ring into <out>, newest
 * first. Returns how many were copied. */
size_t fy_http_server_records(const fy_http_server_t *srv, bool failed,
                              fy_http_request_record_t *out, size_t max);

/* A request in progress, as `ferry status` lists it. */
typedef struct fy_http_request_info {
    int worker_pid;              /* in flight: the worker that holds it; queued: 0 */
    unsigned position;           /* queued: 1 is next; in flight: 0 */
    uint64_t age_ms;             /* since its first byte */
    uint64_t bytes_sent;         /* response body bytes so far */
    char method[16];
    char path[FY_HTTP_RECORD_PATH_MAX];
    char request_id[65];
} fy_http_request_info_t;

/* Fills at most <max> entries of <out> with the requests that hold a worker (<queued> false),
 * oldest first, or the queued ones (<queued> true), next in line first. Returns how many there
 * are in all, which may exceed <max>. */
size_t fy_http_server_list_requests(const fy_http_server_t *srv, bool queued,
                                    fy_http_request_info_t *out, size_t max);

/* Number of open client connections (for logs and tests). */
size_t fy_http_server_connection_count(const fy_http_server_t *srv);

#endif
