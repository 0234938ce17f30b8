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
    uint64_t response_buffer_max;   /* bytes of one response the core buffers (memory, then a
                                     * temp file) for a slow client before it stops reading the
                                     * worker; 0 = no limit */
} fy_http_options_t;

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

/* Number of open client connections (for logs and tests). */
size_t fy_http_server_connection_count(const fy_http_server_t *srv);

#endif
