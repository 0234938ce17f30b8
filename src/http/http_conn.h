/* The connection and server structs of src/http (conn.c, server.c, accesslog.c). */
#ifndef FY_HTTP_CONN_H
#define FY_HTTP_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "http/http_internal.h"
#include "pool/pool.h"

#define FY_HTTP_IO_SIZE 65536u
#define FY_HTTP_WBUF_CACHE 64u
#define FY_HTTP_LINGER_MS 2000u
#define FY_HTTP_CONNECT_RETRIES 50
#define FY_HTTP_CONNECT_RETRY_MS 20
/* How many other workers a request tries when its worker cannot be reached at all (it died
 * idle, its socket is gone): nothing reached the app, so another worker is safe. */
#define FY_HTTP_UNREACHABLE_RETRIES 2

typedef struct fy_http_conn fy_http_conn_t;
typedef struct fy_http_upstream fy_http_upstream_t;

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
    fy_http_upstream_t *drains;   /* worker connections whose client went away; doubly linked */
    size_t drain_count;
    char *shared_in;              /* FY_HTTP_IO_SIZE bytes: every read that starts a request */
    fy_http_wbuf_t *free_wbufs;
    unsigned free_wbuf_count;
    bool queue_full_logged;           /* "request queue full" lines: at most one a second */
    uint64_t queue_full_log_ms;
    uint64_t queue_full_unlogged;     /* refusals since the last such line */
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

/* The connection to the worker of one request. Attached to its client connection, or, once the
 * client went away (or the response was complete before the worker's EOF), "draining": read and
 * discarded until the worker closes, then the worker is checked in. Freed when both of its
 * handles are closed. */
struct fy_http_upstream {
    uv_pipe_t pipe;
    uv_timer_t drain_timer;   /* max request time left while draining */
    uv_write_t write_req;
    fy_http_conn_t *conn;     /* NULL once detached: callbacks then only drain or clean up */
    fy_http_server_t *srv;
    fy_worker_t *worker;      /* owned only while draining */
    fy_http_upstream_t *drain_prev, *drain_next;
    int open_handles;
    uint64_t body_off;        /* bytes of the request body sent */
    bool reading;
    bool paused;              /* not read while the client's write queue is full */
    bool request_sent;        /* every byte of the request written; our write side shut */
    bool draining;
    char chunk[FY_HTTP_IO_SIZE];   /* last member: new_upstream zeroes only what precedes it */
};

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

    char *in;                 /* bytes read but not parsed yet (pipelined requests): NULL, or
                               * FY_HTTP_IO_SIZE bytes while it holds any; reads that start a
                               * request use the server's shared buffer, so an idle
                               * connection holds no read buffer */
    size_t in_len;

    fy_http_request_t req;
    fy_reqblock_builder_t block;
    fy_http_buf_t scratch;
    fy_http_buf_t out;        /* the response head we write */
    fy_http_buf_t resp;       /* the worker's head bytes as they arrive */

    fy_pool_waiter_t waiter;
    fy_worker_t *worker;
    fy_http_upstream_t *up;
    int connect_tries;
    int unreachable_tries;    /* workers that could not be reached for this request */
    size_t block_base_len;    /* c->block before the worker's secret was added */
    bool head_done;           /* the worker's head was parsed and forwarded */
    bool head_unsent;         /* ... but c->out still waits to go out with the first body bytes */
    bool worker_eof;
    bool response_done;       /* nothing more will be queued for this response */
    fy_http_resp_plan_t plan;
    uint64_t body_sent;       /* response body bytes queued to the client */
    unsigned pending_writes;
    bool close_after;         /* close once the response is written */

    uint64_t started_ms;      /* first byte of the request */
    uint64_t complete_ms;     /* loop time when the request was complete */
    bool fin_with_request;    /* the client's FIN was already in when the request was queued */
    uint64_t checkout_ms;     /* when the worker was checked out */
    bool logged;              /* the access log line of this request is written */
    int status;               /* for the access log */
    char remote_addr[64];
    char remote_port[8];
    bool trusted_peer;
};

/* conn.c */
void fy_http_conn_accept(fy_http_listener_t *lst);
/* Closes <c> at once (server stop timeout). */
void fy_http_conn_abort(fy_http_conn_t *c);
/* Ends a draining worker connection at once and checks its worker in as broken (server stop
 * timeout). */
void fy_http_upstream_abort(fy_http_upstream_t *up);
/* Closes <c> when idle between requests; otherwise marks it to close after its response. */
void fy_http_conn_stop(fy_http_conn_t *c);

/* server.c */
fy_http_wbuf_t *fy_http_wbuf_get(fy_http_server_t *srv, fy_http_conn_t *c);
/* A write request without data[] (a few hundred bytes instead of 64 KiB): for error pages and
 * heads, so a thousand clients refused at once do not take a thousand data buffers. */
fy_http_wbuf_t *fy_http_wbuf_get_small(fy_http_conn_t *c);
void fy_http_wbuf_put(fy_http_server_t *srv, fy_http_wbuf_t *w);
void fy_http_server_forget(fy_http_server_t *srv, fy_http_conn_t *c);
/* A draining upstream has ended: maybe the stopped server is done now. */
void fy_http_server_drain_done(fy_http_server_t *srv);

/* accesslog.c: one line in the combined format plus the request time in seconds. */
void fy_http_access_log(const fy_http_conn_t *c, uint64_t now_ms);

#endif
