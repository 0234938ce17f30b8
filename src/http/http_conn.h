/* The connection and server structs of src/http (conn.c, server.c, accesslog.c). */
#ifndef FY_HTTP_CONN_H
#define FY_HTTP_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/slab.h"

#include "http/http_internal.h"
#include "http/metrics.h"
#include "pool/pool.h"

#define FY_HTTP_IO_SIZE 65536u
#define FY_HTTP_WBUF_CACHE 64u
#define FY_HTTP_LINGER_MS 2000u
/* A keep-alive connection idle this long gives its per-request buffers back (conn.c,
 * release_idle_buffers): a client that comes back at once keeps them, one that waits costs
 * only the connection's own struct (docs/operations.md, "Memory"). */
#define FY_HTTP_IDLE_TRIM_MS 1000u
/* malloc_trim after this many connections closed or idle ones released their buffers, or after
 * this many when no connection is left. */
#define FY_HTTP_TRIM_EVERY 1024u
#define FY_HTTP_TRIM_MIN 64u
#define FY_HTTP_CONNECT_RETRIES 50
#define FY_HTTP_CONNECT_RETRY_MS 20
/* How many other workers a request tries when its worker cannot be reached at all (it died
 * idle, its socket is gone): nothing reached the app, so another worker is safe. */
#define FY_HTTP_UNREACHABLE_RETRIES 2

typedef struct fy_http_conn fy_http_conn_t;
typedef struct fy_http_upstream fy_http_upstream_t;
typedef struct fy_http_metrics_server fy_http_metrics_server_t;

/* One write to the client (or one read from a worker that becomes one): the libuv request, the
 * chunk-size line, and the data. Cached on the server and reused. A write of bytes that live
 * elsewhere (a head in c->out, a constant) takes a "small" one: the same struct without data. */
typedef struct fy_http_wbuf {
    uv_write_t req;
    fy_http_conn_t *conn;
    struct fy_http_wbuf *next;
    bool small;               /* allocated without data[]: never cached, freed on put */
    char line[24];
    char data[FY_HTTP_IO_SIZE];   /* last member */
} fy_http_wbuf_t;

typedef struct fy_http_listener {
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_handle_t handle;
        uv_stream_t stream;
    } h;
    fy_http_server_t *srv;
    bool is_unix;
    bool open;
    char *unix_path;          /* owned; removed at stop */
    char host[64];
    char port[8];
} fy_http_listener_t;

struct fy_http_server {
    uv_loop_t *loop;
    fy_pool_t *pool;
    fy_http_options_t opts;
    fy_http_listener_t *listeners[8];
    unsigned listener_count;
    fy_http_conn_t *conns;        /* doubly linked */
    size_t conn_count;
    fy_slab_t conn_slab;          /* every fy_http_conn_t: apart from the heap (core/slab.h) */
    unsigned freed_since_trim;    /* connections or idle buffers freed since the last trim */
    fy_http_upstream_t *drains;   /* worker connections whose client went away; doubly linked */
    size_t drain_count;
    char *shared_in;              /* FY_HTTP_IO_SIZE bytes: every read that starts a request */
    fy_http_wbuf_t *free_wbufs;
    unsigned free_wbuf_count;
    bool queue_full_logged;           /* "request queue full" lines: at most one a second */
    uint64_t queue_full_log_ms;
    uint64_t queue_full_unlogged;     /* refusals since the last such line */
    fy_http_metrics_t metrics;        /* counted at the end of each request (metrics.h) */
    fy_http_metrics_server_t *metrics_server;   /* --metrics-address; NULL when off */
    uint64_t request_id_state;        /* fy_http_request_id_generate's generator */
    /* `ferry status --slow`: rings of the last slow [0] and failed [1] requests (observe.c) */
    fy_http_request_record_t records[2][FY_HTTP_RECORDS];
    unsigned record_next[2], record_count[2];
    bool stopping;
    bool stop_timer_open;
    uv_timer_t stop_timer;
    void (*done)(fy_http_server_t *srv, void *data);
    void *done_data;
    bool done_called;
};

typedef enum fy_http_conn_state {
    FY_CONN_IDLE = 0,    /* between requests (keep-alive), nothing of the next one read */
    FY_CONN_HEAD,        /* reading a request head */
    FY_CONN_BODY,        /* reading a request body */
    FY_CONN_QUEUED,      /* the request is complete and waits for a worker */
    FY_CONN_UPSTREAM,    /* a worker has the request; its response goes to the client */
    FY_CONN_REPLYING,    /* the front's own response is being written */
    FY_CONN_LINGER,      /* write side shut, draining the client before the close */
    FY_CONN_CLOSING,     /* handles closing; freed when all are closed */
} fy_http_conn_state_t;

/* ---- the seam between the client side (conn.c) and the worker side -----------------------
 *
 * A request that has a worker holds an upstream: the worker side of its exchange, one of two
 * kinds. v1 (upstream_v1.c) is a connection of its own to the worker, closed at the end of the
 * response (docs/protocol.md §2, §3); v2 (session.c) is a stream on the worker's persistent
 * session (docs/protocol.md §4). The upstream owns the worker's checkout: it checks the worker
 * in when the worker is done with the request, which may be before the client has its whole
 * response (the response is buffered by the client side) or after the client went away.
 *
 * The worker side tells the client side, in order: head (once), data (any number of times),
 * then exactly one of end / failed / requeue / unreachable. After that, or after the client side
 * detached it, it never calls the client side again. */
typedef enum fy_http_detach {
    FY_DETACH_CLIENT_GONE = 0,   /* the client left, or needs nothing more: end the request
                                  * gently (v1: drain or close; v2: ABORT, wait for END) */
    FY_DETACH_TIMED_OUT,         /* max request time: the worker is checked in TIMED_OUT now */
    FY_DETACH_BROKEN,            /* cut at the shutdown deadline: checked in BROKEN now */
} fy_http_detach_t;

struct fy_http_upstream {
    unsigned protocol;          /* 1 or 2 */
    fy_http_conn_t *conn;       /* NULL once detached */
    fy_http_server_t *srv;
    fy_worker_t *worker;        /* the checkout; NULL once checked in */
    uint64_t checkout_ms;
    bool draining;              /* detached and on srv->drains until the worker is done */
    fy_http_upstream_t *drain_prev, *drain_next;
};

/* Client side, called by the worker side (conn.c). */
/* The worker's head is complete. Returns 0, or -EPROTO when it cannot be forwarded (the client
 * got a 502, the caller checks the worker in BROKEN and calls nothing more). */
int fy_http_conn_worker_head(fy_http_conn_t *c, const fy_resphead_t *head);
/* Body bytes after the head. <w> is the write buffer that holds <data> (ownership passes) or
 * NULL (the bytes are borrowed for the call). May pause the upstream (backpressure) or, when the
 * client connection fails, detach it. */
void fy_http_conn_worker_data(fy_http_conn_t *c, fy_http_wbuf_t *w, const char *data, size_t len);
/* The response is over: <complete> false means cut (the client connection is closed without
 * presenting it as whole). The upstream has checked the worker in before this call. */
void fy_http_conn_worker_end(fy_http_conn_t *c, bool complete, const char *why);
/* The worker failed before its head: 502 (before the head) or a cut connection (after it). */
void fy_http_conn_worker_failed(fy_http_conn_t *c, const char *why);
/* Whether less than the response's Content-Length has come so far (v1 checks a worker whose
 * close comes early in BROKEN: its exit looks like a clean close). */
bool fy_http_conn_body_short(const fy_http_conn_t *c);
/* The worker was never reached (v1: connect refused) or never started the request (v2:
 * dispatched ahead to a worker that went away): the request goes to another worker. */
void fy_http_conn_worker_unreachable(fy_http_conn_t *c, const char *why);
void fy_http_conn_worker_requeue(fy_http_conn_t *c);
/* The request's block as it goes to <worker> (its secret added), and its body. */
void fy_http_conn_request_bytes(fy_http_conn_t *c, fy_worker_t *worker, const uint8_t **block,
                                size_t *block_len, const fy_http_body_t **body);

/* Worker side, called by the client side (dispatched on <up>->protocol in conn.c). */
/* Starts the request of <c> on <worker> (checked out for it): sets c->up first, and may already
 * call the client side back from inside (a worker that cannot be reached), which clears it.
 * Returns c->up as it is on return. */
fy_http_upstream_t *fy_http_v1_start(fy_http_conn_t *c, fy_worker_t *worker);
fy_http_upstream_t *fy_http_v2_start(fy_http_conn_t *c, fy_worker_t *worker);
void fy_http_v1_pause(fy_http_upstream_t *up, bool paused);
void fy_http_v2_pause(fy_http_upstream_t *up, bool paused);
/* The client side lets go of <up> (it calls nothing of <c> afterwards). */
void fy_http_v1_detach(fy_http_upstream_t *up, fy_http_detach_t how);
void fy_http_v2_detach(fy_http_upstream_t *up, fy_http_detach_t how);

/* server.c: the list of detached upstreams whose worker is not done yet (graceful stop waits). */
void fy_http_server_drain_add(fy_http_server_t *srv, fy_http_upstream_t *up);
void fy_http_server_drain_remove(fy_http_server_t *srv, fy_http_upstream_t *up);

/* upstream_v1.c: a non-blocking connect to "abstract:NAME" / "unix:PATH". Returns the fd, or
 * -EAGAIN (the listen backlog is full: retry), -EINVAL (bad address) or another -errno. */
int fy_http_worker_connect(const char *address);
/* Whether a connect or first-write error means the worker was gone before it read anything. */
bool fy_http_unreachable_errno(int err);

/* session.c: the pool's hook when a worker with a session exits (fy_pool_set_worker_gone). */
void fy_http_session_worker_gone(fy_worker_t *w, void *session, void *data);

struct fy_http_conn {
    fy_http_server_t *srv;
    fy_http_listener_t *listener;
    fy_http_conn_t *prev, *next;
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_handle_t handle;
        uv_stream_t stream;
    } client;
    uv_timer_t timer;         /* header, body, keep-alive, linger, connect retry */
    uv_timer_t req_timer;     /* max request time */
    uv_shutdown_t shutdown_req;
    int open_handles;
    fy_http_conn_state_t state;
    bool reading;
    bool read_eof;
    bool trim_pending;        /* IDLE: the next timeout releases buffers, not the connection */

    char *in;                 /* bytes read but not parsed yet (pipelined requests): NULL, or
                               * FY_HTTP_IO_SIZE bytes while it holds any; reads that start a
                               * request use the server's shared buffer, so an idle
                               * connection holds no read buffer */
    size_t in_len;

    fy_http_request_t req;
    fy_reqblock_builder_t block;
    fy_http_buf_t scratch;
    fy_http_buf_t out;        /* the response head we write */

    fy_pool_waiter_t waiter;
    fy_http_upstream_t *up;   /* the worker side of the request, while it has one */
    int unreachable_tries;    /* workers that could not be reached for this request */
    size_t block_base_len;    /* c->block before the worker's secret was added */
    bool head_done;           /* the worker's head was parsed and forwarded */
    bool head_unsent;         /* ... but c->out still waits to go out with the first body bytes */
    bool worker_done;         /* the worker side ended the response (complete); what is left
                               * is in the spool and the write queue */
    bool response_done;       /* nothing more will be queued for this response */
    bool up_paused;           /* the worker side is paused: the spool is at its high-water */
    /* The response buffer (docs/operations.md "Response buffering"): body bytes the client's
     * write queue cannot take yet, in an unlinked temp file; <spool_off> is how much of it went
     * out. Empty (no file) whenever it has been sent. */
    fy_http_body_t spool;
    uint64_t spool_off;
    uint64_t spool_punched;   /* bytes at the start of the file already given back to the disk */
    fy_http_resp_plan_t plan;
    uint64_t body_sent;       /* response body bytes queued to the client */
    unsigned pending_writes;
    bool close_after;         /* close once the response is written */

    uint64_t accepted_ms;     /* the accept; the first request's timeline starts here */
    uint64_t started_ms;      /* first byte of the request */
    uint64_t head_ms;         /* its head was complete */
    uint64_t complete_ms;     /* loop time when the request was complete */
    uint64_t first_byte_ms;   /* the worker's head arrived */
    bool pool_entered;        /* the request asked the pool for a worker */
    uint8_t why;              /* fy_http_why_t: why ferry answered or ended it itself */
    bool failure_recorded;    /* it is in the failed ring already */
    int worker_pid;           /* the last worker it was dispatched to; 0 none */
    char request_id[FY_HTTP_REQUEST_ID_MAX + 1];   /* "" until its head is complete */
    bool fin_with_request;    /* the client's FIN was already in when the request was queued */
    uint64_t checkout_ms;     /* when the worker was checked out */
    bool logged;              /* the access log line of this request is written */
    int status;               /* for the access log */
    char remote_addr[64];
    char remote_port[8];
    bool trusted_peer;
    bool proxy_pending;       /* --proxy-protocol: the PROXY header of a trusted peer is due */
    bool proxy_checked;       /* --proxy-protocol: the first bytes were looked at */
};

/* conn.c */
void fy_http_conn_accept(fy_http_listener_t *lst);
/* Closes <c> at once (server stop timeout). */
void fy_http_conn_abort(fy_http_conn_t *c);
/* Ends a draining upstream at once and checks its worker in as broken (server stop timeout). */
void fy_http_upstream_abort(fy_http_upstream_t *up);
/* Closes <c> when idle between requests; otherwise marks it to close after its response. */
void fy_http_conn_stop(fy_http_conn_t *c);

/* server.c */
fy_http_wbuf_t *fy_http_wbuf_get(fy_http_server_t *srv, fy_http_conn_t *c);
/* A write request without data[] (a few hundred bytes instead of 64 KiB): for error pages and
 * heads, so a thousand clients refused at once do not take a thousand data buffers. */
fy_http_wbuf_t *fy_http_wbuf_get_small(fy_http_conn_t *c);
void fy_http_wbuf_put(fy_http_server_t *srv, fy_http_wbuf_t *w);
/* Unlinks the closed connection <c> from the server and frees it (its slab slot). */
void fy_http_server_forget(fy_http_server_t *srv, fy_http_conn_t *c);
/* Counts one connection closed or one idle connection's buffers released; every so many, the
 * freed heap pages go back to the system (malloc_trim). */
void fy_http_server_note_freed(fy_http_server_t *srv);

/* accesslog.c: one line in the combined format plus the request time in seconds. */
void fy_http_access_log(const fy_http_conn_t *c, uint64_t now_ms);
/* The response body bytes of <c>'s request: the worker's as sent, or those of ferry's own page. */
uint64_t fy_http_conn_response_bytes(const fy_http_conn_t *c);

/* observe.c: <c>'s timeline up to <now_ms>. */
void fy_http_conn_timeline(const fy_http_conn_t *c, uint64_t now_ms, fy_http_timeline_t *t);
/* observe.c: keeps <c>'s request in the slow (<failed> false) or failed ring; <why> may be
 * NULL (slow) and is copied. */
void fy_http_conn_record(fy_http_conn_t *c, bool failed, uint64_t now_ms, const char *why);

/* metrics_server.c: closes the metrics listener and its clients (server stop and free). */
void fy_http_metrics_server_close(fy_http_server_t *srv);

#endif
