/* A client connection: reads and parses one request at a time (pipelined bytes wait in the read
 * buffer), buffers its body, checks a worker out of the pool only once the whole request is in,
 * sends the request block and body to the worker, and streams the worker's response back with
 * backpressure. The client is read throughout, so a client that goes away while its request is
 * queued or served is noticed at once. See README.md for the states. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "http/http_conn.h"

static void process_input(fy_http_conn_t *c, const char *data, size_t len);
static void update_client_reading(fy_http_conn_t *c);
static void resume_upstream(fy_http_conn_t *c);
static void abandon_upstream(fy_http_conn_t *c);
static void log_unfinished(fy_http_conn_t *c);
static void finish_response(fy_http_conn_t *c);
static void close_conn(fy_http_conn_t *c, bool graceful);
static void send_error(fy_http_conn_t *c, int status, const char *title, const char *detail,
                       bool close_after);
static void detach_upstream(fy_http_conn_t *c, fy_worker_outcome_t outcome);

/* ---- handles and lifetime --------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    fy_http_conn_t *c = h->data;
    if (--c->open_handles > 0)
        return;
    fy_http_server_t *srv = c->srv;
    fy_http_request_dispose(&c->req);
    fy_reqblock_builder_dispose(&c->block);
    fy_http_buf_dispose(&c->scratch);
    fy_http_buf_dispose(&c->out);
    fy_http_buf_dispose(&c->resp);
    free(c->in);
    fy_http_server_forget(srv, c);
    free(c);
}

static void on_timeout(uv_timer_t *t);
static void on_client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_client_shutdown(uv_shutdown_t *req, int status)
{
    fy_http_conn_t *c = req->data;
    if (c->state != FY_CONN_LINGER)
        return;
    if (status < 0 || c->read_eof) {
        close_conn(c, false);
        return;
    }
    uv_timer_start(&c->timer, on_timeout, FY_HTTP_LINGER_MS, 0);
    if (!c->reading && !c->read_eof) {
        c->reading = true;
        uv_read_start(&c->client.stream, on_client_alloc, on_client_read);
    }
}

static void close_conn(fy_http_conn_t *c, bool graceful)
{
    if (c->state == FY_CONN_CLOSING)
        return;
    if (c->state == FY_CONN_QUEUED || c->state == FY_CONN_UPSTREAM)
        log_unfinished(c);
    if (c->waiter.queued) {
        fy_pool_cancel(c->srv->pool, &c->waiter);
        c->waiter.queued = 0;
    }
    if (c->up != NULL || c->worker != NULL)
        abandon_upstream(c);
    if (graceful && c->state != FY_CONN_LINGER && !c->read_eof) {
        /* shut our side after the queued writes, then drain what the client still sends so
         * the close does not turn into a reset that destroys our last response */
        c->state = FY_CONN_LINGER;
        uv_timer_stop(&c->req_timer);
        uv_timer_stop(&c->timer);
        c->shutdown_req.data = c;
        if (uv_shutdown(&c->shutdown_req, &c->client.stream, on_client_shutdown) == 0)
            return;
    }
    c->state = FY_CONN_CLOSING;
    uv_timer_stop(&c->timer);
    uv_timer_stop(&c->req_timer);
    uv_close(&c->client.handle, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->req_timer, on_handle_closed);
}

void fy_http_conn_abort(fy_http_conn_t *c)
{
    /* The request is cut at the shutdown deadline: the worker is still busy with it, so it is
     * not fit to serve again and the pool may stop it hard. */
    if (c->worker != NULL)
        detach_upstream(c, FY_WORKER_BROKEN);
    close_conn(c, false);
}

void fy_http_conn_stop(fy_http_conn_t *c)
{
    if (c->state == FY_CONN_IDLE)
        close_conn(c, false);
    else
        c->close_after = true;
}

/* ---- timers ----------------------------------------------------------------------------- */

static void on_timeout(uv_timer_t *t)
{
    fy_http_conn_t *c = t->data;
    switch (c->state) {
    case FY_CONN_IDLE:
        close_conn(c, false);
        break;
    case FY_CONN_HEAD:
        fy_log(FY_LOG_INFO, "http", "peer=%s:%s: request head timed out", c->remote_addr,
               c->remote_port);
        send_error(c, 408, "The request head did not arrive in time.", NULL, true);
        break;
    case FY_CONN_BODY:
        fy_log(FY_LOG_INFO, "http", "peer=%s:%s: request body timed out", c->remote_addr,
               c->remote_port);
        send_error(c, 408, "The request body did not arrive in time.", NULL, true);
        break;
    case FY_CONN_LINGER:
        close_conn(c, false);
        break;
    default:
        break;
    }
}

static void arm_timer(fy_http_conn_t *c, unsigned ms)
{
    if (ms == 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timeout, ms, 0);
}

/* ---- writing to the client -------------------------------------------------------------- */

static void on_client_write(uv_write_t *wr, int status)
{
    fy_http_wbuf_t *w = wr->data;
    fy_http_conn_t *c = w->conn;
    fy_http_wbuf_put(c->srv, w);
    c->pending_writes--;
    if (c->state == FY_CONN_CLOSING || c->state == FY_CONN_LINGER)
        return;
    if (status < 0) {
        fy_log(FY_LOG_INFO, "http", "peer=%s:%s: client went away: %s", c->remote_addr,
               c->remote_port, uv_strerror(status));
        close_conn(c, false);
        return;
    }
    fy_http_upstream_t *up = c->up;
    if (up != NULL && up->paused &&
        uv_stream_get_write_queue_size(&c->client.stream) <= FY_HTTP_WRITE_QUEUE_HIGH / 2) {
        up->paused = false;
        resume_upstream(c);
    }
    if (c->response_done && c->pending_writes == 0)
        finish_response(c);
}

/* Queues <bufs> to the client under <w> (which may be NULL: one is taken). */
static int write_client(fy_http_conn_t *c, fy_http_wbuf_t *w, uv_buf_t *bufs, unsigned n)
{
    if (w == NULL)
        w = fy_http_wbuf_get_small(c);
    w->req.data = w;
    int rc = uv_write(&w->req, &c->client.stream, bufs, n, on_client_write);
    if (rc < 0) {
        fy_http_wbuf_put(c->srv, w);
        return rc;
    }
    c->pending_writes++;
    return 0;
}

/* Like write_client, for the worker's response: when nothing is queued it writes at once
 * (uv_try_write) and only queues what the socket did not take. A write finished here has no
 * callback, which is why only callers that check pending_writes themselves afterwards use it:
 * it saves libuv's deferred completion and the epoll re-arm that follows every queued write. */
static int write_client_now(fy_http_conn_t *c, fy_http_wbuf_t *w, uv_buf_t *bufs, unsigned n)
{
    if (c->pending_writes == 0) {
        int rc = uv_try_write(&c->client.stream, bufs, n);
        if (rc < 0 && rc != UV_EAGAIN) {
            if (w)
                fy_http_wbuf_put(c->srv, w);
            return rc;
        }
        size_t done = rc > 0 ? (size_t)rc : 0;
        while (n > 0 && done >= bufs[0].len) {
            done -= bufs[0].len;
            bufs++;
            n--;
        }
        if (n == 0) {
            if (w)
                fy_http_wbuf_put(c->srv, w);
            return 0;
        }
        bufs[0].base += done;
        bufs[0].len -= done;
    }
    return write_client(c, w, bufs, n);
}

/* Writes the front's own response (already in c->out) and finishes the request with it. */
static void send_error(fy_http_conn_t *c, int status, const char *title, const char *detail,
                       bool close_after)
{
    c->status = status;
    if (close_after || c->srv->stopping)
        c->close_after = true;
    if (c->up != NULL || c->worker != NULL)
        detach_upstream(c, FY_WORKER_OK);
    if (c->reading) {
        uv_read_stop(&c->client.stream);
        c->reading = false;
    }
    uv_timer_stop(&c->timer);
    uv_timer_stop(&c->req_timer);
    c->out.len = 0;
    bool is_head = c->req.method != NULL && c->req.is_head;
    fy_http_error_response(status, is_head, !c->close_after, c->srv->opts.powered_by, title,
                           detail, &c->out);
    c->state = FY_CONN_REPLYING;
    c->plan.keep_alive = !c->close_after;
    c->body_sent = 0;
    uv_buf_t buf = uv_buf_init(c->out.data, (unsigned)c->out.len);
    if (write_client(c, NULL, &buf, 1) < 0) {
        close_conn(c, false);
        return;
    }
    c->response_done = true;
}

/* ---- the worker side -------------------------------------------------------------------- */

static void on_upstream_handle_closed(uv_handle_t *h)
{
    fy_http_upstream_t *up = h->data;
    if (--up->open_handles == 0)
        free(up);
}

static void close_upstream_handles(fy_http_upstream_t *up)
{
    uv_timer_stop(&up->drain_timer);
    uv_close((uv_handle_t *)&up->pipe, on_upstream_handle_closed);
    uv_close((uv_handle_t *)&up->drain_timer, on_upstream_handle_closed);
}

/* Creates the worker connection of <c> around the connected socket <fd> (takes ownership).
 * Returns NULL when libuv refuses the fd (it is closed then). */
static fy_http_upstream_t *new_upstream(fy_http_conn_t *c, int fd)
{
    /* the 64 KiB chunk at the end needs no zeroing: only what precedes it */
    fy_http_upstream_t *up = fy_xmalloc(sizeof *up);
    memset(up, 0, offsetof(fy_http_upstream_t, chunk));
    up->srv = c->srv;
    up->conn = c;
    uv_pipe_init(c->srv->loop, &up->pipe, 0);
    up->pipe.data = up;
    uv_timer_init(c->srv->loop, &up->drain_timer);
    up->drain_timer.data = up;
    up->open_handles = 2;
    if (uv_pipe_open(&up->pipe, fd) < 0) {
        close(fd);
        close_upstream_handles(up);
        return NULL;
    }
    return up;
}

/* Ends the conversation with the worker now: closes its socket and checks it in. */
static void detach_upstream(fy_http_conn_t *c, fy_worker_outcome_t outcome)
{
    if (c->up != NULL) {
        c->up->conn = NULL;
        close_upstream_handles(c->up);
        c->up = NULL;
    }
    if (c->worker != NULL) {
        fy_pool_checkin(c->srv->pool, c->worker, outcome);
        c->worker = NULL;
    }
    uv_timer_stop(&c->req_timer);
}

/* A draining upstream is over: check its worker in with <outcome> and free it. */
static void finish_drain(fy_http_upstream_t *up, fy_worker_outcome_t outcome)
{
    fy_http_server_t *srv = up->srv;
    if (up->drain_prev)
        up->drain_prev->drain_next = up->drain_next;
    else
        srv->drains = up->drain_next;
    if (up->drain_next)
        up->drain_next->drain_prev = up->drain_prev;
    srv->drain_count--;
    up->draining = false;
    if (up->worker != NULL) {
        fy_pool_checkin(srv->pool, up->worker, outcome);
        up->worker = NULL;
    }
    close_upstream_handles(up);
    fy_http_server_drain_done(srv);
}

void fy_http_upstream_abort(fy_http_upstream_t *up)
{
    finish_drain(up, FY_WORKER_BROKEN);
}

static void on_drain_timeout(uv_timer_t *t)
{
    fy_http_upstream_t *up = t->data;
    fy_log(FY_LOG_ERROR, "http", "pid=%d: max request time passed while the worker finished a "
           "request whose client went away", up->worker ? (int)fy_worker_pid(up->worker) : 0);
    finish_drain(up, FY_WORKER_TIMED_OUT);
}

static void on_upstream_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_upstream_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* The client no longer wants the response (it went away, or its response is complete while the
 * worker still sends). Before the worker's head has come, the worker is still computing: once
 * every byte of the request is written its connection is read and discarded until the worker
 * closes it, and only then is the worker checked in (FY_WORKER_OK) - it does not get a second
 * request on top of one it is busy computing. Once the head has come, the worker is streaming:
 * its connection is closed and it is checked in at once (below). A request not yet written in
 * full is cut (the worker sees EOF inside its request and refuses it on its own) and the worker
 * checked in at once. */
static void abandon_upstream(fy_http_conn_t *c)
{
    fy_http_upstream_t *up = c->up;
    if (up == NULL || c->worker == NULL || !up->request_sent) {
        detach_upstream(c, FY_WORKER_OK);
        return;
    }
    if (c->head_done) {
        /* The worker is sending a body nobody will read. Closing its connection makes its next
         * write fail (EPIPE), which ends the request in every loader (the body is closed, the
         * worker goes back to accept), so it is checked in now instead of after producing the
         * whole body: an endless stream (server-sent events) would hold it for ever. A worker
         * pausing between two writes finishes that pause first; a request handed to it
         * meanwhile waits in its listen queue. */
        detach_upstream(c, FY_WORKER_OK);
        return;
    }
    fy_http_server_t *srv = c->srv;
    c->up = NULL;
    up->conn = NULL;
    up->worker = c->worker;
    c->worker = NULL;
    uv_timer_stop(&c->req_timer);
    up->draining = true;
    up->drain_prev = NULL;
    up->drain_next = srv->drains;
    if (srv->drains)
        srv->drains->drain_prev = up;
    srv->drains = up;
    srv->drain_count++;
    unsigned max_ms = srv->opts.max_request_time_ms;
    if (max_ms > 0) {
        uint64_t used = uv_now(srv->loop) - c->checkout_ms;
        uv_timer_start(&up->drain_timer, on_drain_timeout, used < max_ms ? max_ms - used : 1, 0);
    }
    up->paused = false;
    if (!up->reading) {
        up->reading = true;
        uv_read_start((uv_stream_t *)&up->pipe, on_upstream_alloc, on_upstream_read);
    }
}

/* The worker failed before its head was complete: 502. */
static void upstream_failed(fy_http_conn_t *c, const char *why)
{
    fy_log(FY_LOG_ERROR, "http", "pid=%d uri=%.*s: bad worker response: %s",
           c->worker ? (int)fy_worker_pid(c->worker) : 0, (int)(c->req.url_len > 200 ? 200 : c->req.url_len),
           fy_http_request_url(&c->req), why);
    detach_upstream(c, FY_WORKER_BROKEN);
    send_error(c, 502, "The application sent no valid response.", NULL, false);
}

/* The response cannot be completed after its head went out: the only honest signal left is to
 * close the connection. */
static void response_broken(fy_http_conn_t *c, const char *why, fy_worker_outcome_t outcome)
{
    fy_log(FY_LOG_ERROR, "http", "pid=%d uri=%.*s: response cut short: %s",
           c->worker ? (int)fy_worker_pid(c->worker) : 0, (int)(c->req.url_len > 200 ? 200 : c->req.url_len),
           fy_http_request_url(&c->req), why);
    detach_upstream(c, outcome);
    fy_http_access_log(c, uv_now(c->srv->loop));
    c->logged = true;
    close_conn(c, false);
}

/* The client's response is complete before the worker closed (it sent more than its
 * Content-Length): the rest is drained, and the connection goes on. */
static void response_complete_early(fy_http_conn_t *c)
{
    fy_log(FY_LOG_WARN, "http", "pid=%d uri=%.*s: worker sent more than its Content-Length; "
           "extra bytes dropped", c->worker ? (int)fy_worker_pid(c->worker) : 0,
           (int)(c->req.url_len > 200 ? 200 : c->req.url_len), fy_http_request_url(&c->req));
    abandon_upstream(c);
    c->response_done = true;
    if (c->pending_writes == 0)
        finish_response(c);
}

/* Writes the head held back by try_head, alone. Returns false when the connection was closed. */
static bool flush_head(fy_http_conn_t *c)
{
    if (!c->head_unsent)
        return true;
    c->head_unsent = false;
    uv_buf_t buf = uv_buf_init(c->out.data, (unsigned)c->out.len);
    if (write_client_now(c, NULL, &buf, 1) < 0) {
        close_conn(c, false);
        return false;
    }
    return true;
}

static void forward_body(fy_http_conn_t *c, fy_http_wbuf_t *w, const char *data, size_t len)
{
    bool complete = false;
    if (len == 0 || c->plan.framing == FY_HTTP_FRAME_NONE) {
        if (w)
            fy_http_wbuf_put(c->srv, w);
        flush_head(c);
        return;
    }
    if (c->plan.framing == FY_HTTP_FRAME_LENGTH) {
        uint64_t left = c->plan.content_length - c->body_sent;
        if (len > left) {
            len = (size_t)left;
            complete = true;
        }
        if (len == 0) {
            if (w)
                fy_http_wbuf_put(c->srv, w);
            if (flush_head(c))
                response_complete_early(c);
            return;
        }
    }
    if (w == NULL) {
        w = fy_http_wbuf_get(c->srv, c);
        memcpy(w->data, data, len);
        data = w->data;
    }
    uv_buf_t bufs[4];
    unsigned n = 0;
    if (c->head_unsent) {
        /* head and first body bytes in one writev */
        c->head_unsent = false;
        bufs[n++] = uv_buf_init(c->out.data, (unsigned)c->out.len);
    }
    if (c->plan.framing == FY_HTTP_FRAME_CHUNKED) {
        size_t l = fy_http_format_hex(w->line, len);
        w->line[l++] = '\r';
        w->line[l++] = '\n';
        bufs[n++] = uv_buf_init(w->line, (unsigned)l);
        bufs[n++] = uv_buf_init((char *)data, (unsigned)len);
        bufs[n++] = uv_buf_init((char *)"\r\n", 2);
    } else {
        bufs[n++] = uv_buf_init((char *)data, (unsigned)len);
    }
    c->body_sent += len;
    if (write_client_now(c, w, bufs, n) < 0) {
        close_conn(c, false);
        return;
    }
    if (complete) {
        response_complete_early(c);
        return;
    }
    if (c->up != NULL && !c->up->paused &&
        uv_stream_get_write_queue_size(&c->client.stream) > FY_HTTP_WRITE_QUEUE_HIGH) {
        c->up->paused = true;
        uv_read_stop((uv_stream_t *)&c->up->pipe);
        c->up->reading = false;
    }
}

/* Parses what has arrived of the worker's head; forwards it once complete. */
static void try_head(fy_http_conn_t *c)
{
    fy_resphead_t head;
    int rc = fy_resphead_parse(c->resp.data, c->resp.len, &head);
    if (rc == -EAGAIN) {
        if (c->resp.len >= FY_RESPHEAD_MAX)
            upstream_failed(c, "head larger than 128 KiB");
        return;
    }
    if (rc == -EMSGSIZE) {
        upstream_failed(c, "head larger than 128 KiB");
        return;
    }
    if (rc < 0) {
        upstream_failed(c, "malformed head");
        return;
    }
    c->out.len = 0;
    bool keep_alive = c->req.keep_alive && !c->close_after && !c->srv->stopping;
    rc = fy_http_response_head(&head, &c->req, keep_alive, c->srv->opts.powered_by, &c->out,
                               &c->plan);
    size_t head_len = head.head_len;
    fy_resphead_dispose(&head);
    if (rc < 0) {
        upstream_failed(c, "head cannot be forwarded (1xx status or bad Content-Length)");
        return;
    }
    c->head_done = true;
    c->status = c->plan.status;
    if (!c->plan.keep_alive)
        c->close_after = true;
    /* Body bytes that came with the head go out with it (forward_body); else the head alone. */
    c->head_unsent = true;
    if (c->plan.framing == FY_HTTP_FRAME_LENGTH && c->plan.content_length == 0 &&
        c->resp.len > head_len) {
        if (flush_head(c))
            response_complete_early(c);
        return;
    }
    if (c->resp.len > head_len)
        forward_body(c, NULL, c->resp.data + head_len, c->resp.len - head_len);
    else
        flush_head(c);
}

static void on_upstream_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    fy_http_upstream_t *up = h->data;
    fy_http_conn_t *c = up->conn;
    if (c == NULL) {
        *buf = uv_buf_init(up->chunk, sizeof up->chunk);
        return;
    }
    if (!c->head_done) {
        fy_http_buf_reserve(&c->resp, 16384);
        *buf = uv_buf_init(c->resp.data + c->resp.len, (unsigned)(c->resp.cap - c->resp.len));
        return;
    }
    fy_http_wbuf_t *w = fy_http_wbuf_get(c->srv, c);
    *buf = uv_buf_init(w->data, sizeof w->data);
}

static void on_upstream_eof(fy_http_conn_t *c, int err)
{
    if (!c->head_done) {
        upstream_failed(c, err == UV_EOF ? "connection closed before the head was complete"
                                         : uv_strerror(err));
        return;
    }
    if (c->plan.framing == FY_HTTP_FRAME_LENGTH && c->body_sent < c->plan.content_length) {
        /* The worker may have died (its exit looks like a clean close from here): replace it
         * rather than hand the next request to a dead socket. */
        response_broken(c, "worker closed before its Content-Length was sent", FY_WORKER_BROKEN);
        return;
    }
    if (err != UV_EOF && c->plan.framing != FY_HTTP_FRAME_LENGTH &&
        c->plan.framing != FY_HTTP_FRAME_NONE) {
        response_broken(c, uv_strerror(err), FY_WORKER_BROKEN);
        return;
    }
    c->worker_eof = true;
    detach_upstream(c, FY_WORKER_OK);
    if (c->plan.framing == FY_HTTP_FRAME_CHUNKED) {
        uv_buf_t buf = uv_buf_init((char *)"0\r\n\r\n", 5);
        if (write_client_now(c, NULL, &buf, 1) < 0) {
            close_conn(c, false);
            return;
        }
    }
    c->response_done = true;
    if (c->pending_writes == 0)
        finish_response(c);
}

static void on_upstream_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    fy_http_upstream_t *up = s->data;
    fy_http_conn_t *c = up->conn;
    if (c == NULL) {
        /* draining (or closing): the bytes are dropped; the worker's close ends it */
        if (up->draining && nread < 0)
            finish_drain(up, nread == UV_EOF ? FY_WORKER_OK : FY_WORKER_BROKEN);
        return;
    }
    bool is_wbuf = c->head_done && buf->base != NULL && buf->base != up->chunk;
    fy_http_wbuf_t *w = is_wbuf ? (fy_http_wbuf_t *)(buf->base - offsetof(fy_http_wbuf_t, data))
                                : NULL;
    if (nread < 0) {
        if (w)
            fy_http_wbuf_put(c->srv, w);
        on_upstream_eof(c, (int)nread);
        return;
    }
    if (nread == 0) {
        if (w)
            fy_http_wbuf_put(c->srv, w);
        return;
    }
    if (!c->head_done) {
        c->resp.len += (size_t)nread;
        try_head(c);
        return;
    }
    forward_body(c, w, w->data, (size_t)nread);
}

static void send_body_chunk(fy_http_upstream_t *up);

static void on_upstream_write(uv_write_t *wr, int status)
{
    fy_http_upstream_t *up = wr->data;
    if (up->conn == NULL)
        return;
    if (status < 0) {
        /* The worker stopped reading (it may have answered early); its response decides. */
        fy_log(FY_LOG_DEBUG, "http", "writing the request to the worker failed: %s",
               uv_strerror(status));
        up->request_sent = true;   /* nothing of ours is pending any more */
        return;
    }
    send_body_chunk(up);
}

/* Sends the next piece of a file-backed body, or shuts down the write side after the last. */
static void send_body_chunk(fy_http_upstream_t *up)
{
    fy_http_conn_t *c = up->conn;
    const fy_http_body_t *body = &c->req.body;
    if (up->body_off >= body->len) {
        /* Nothing of ours is queued on the pipe any more (one write at a time), so the write
         * side is shut at once instead of through uv_shutdown's deferred request. */
        uv_os_fd_t fd;
        if (uv_fileno((uv_handle_t *)&up->pipe, &fd) == 0)
            shutdown(fd, SHUT_WR);
        up->request_sent = true;
        return;
    }
    ssize_t n = fy_http_body_read(body, up->body_off, up->chunk, sizeof up->chunk);
    if (n <= 0) {
        fy_log(FY_LOG_ERROR, "http", "cannot read the buffered request body: %s",
               strerror(n < 0 ? (int)-n : EIO));
        detach_upstream(c, FY_WORKER_OK);
        send_error(c, 500, "The request body could not be read back.", NULL, true);
        return;
    }
    up->body_off += (uint64_t)n;
    uv_buf_t buf = uv_buf_init(up->chunk, (unsigned)n);
    up->write_req.data = up;
    if (uv_write(&up->write_req, (uv_stream_t *)&up->pipe, &buf, 1, on_upstream_write) < 0)
        upstream_failed(c, "write to the worker failed");
}

static void on_req_timeout(uv_timer_t *t)
{
    fy_http_conn_t *c = t->data;
    fy_log(FY_LOG_ERROR, "http", "pid=%d uri=%.*s: max request time (%u ms) passed",
           c->worker ? (int)fy_worker_pid(c->worker) : 0,
           (int)(c->req.url_len > 200 ? 200 : c->req.url_len), fy_http_request_url(&c->req),
           c->srv->opts.max_request_time_ms);
    if (c->head_done) {
        response_broken(c, "max request time passed", FY_WORKER_TIMED_OUT);
        return;
    }
    detach_upstream(c, FY_WORKER_TIMED_OUT);
    send_error(c, 504, "The application did not answer within the maximum request time.", NULL,
               false);
}

/* Builds a sockaddr_un for "abstract:NAME" or "unix:PATH". Returns its length or -EINVAL. */
static int worker_sockaddr(const char *address, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    size_t max = sizeof sa->sun_path;
    if (strncmp(address, "abstract:", 9) == 0) {
        size_t n = strlen(address + 9);
        if (n == 0 || n + 1 > max)
            return -EINVAL;
        memcpy(sa->sun_path + 1, address + 9, n);
        return (int)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
    }
    if (strncmp(address, "unix:", 5) == 0) {
        size_t n = strlen(address + 5);
        if (n == 0 || n + 1 > max)
            return -EINVAL;
        memcpy(sa->sun_path, address + 5, n);
        return (int)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    }
    return -EINVAL;
}

static void connect_worker(fy_http_conn_t *c);
static void request_worker(fy_http_conn_t *c);

/* The worker could not be reached before any byte of the request got to it (it died while
 * idle, its socket is gone): it is checked in as broken, so the pool replaces it, and the
 * request goes to another worker, a bounded number of times, before it becomes a 502. */
static void worker_unreachable(fy_http_conn_t *c, const char *why)
{
    if (c->unreachable_tries >= FY_HTTP_UNREACHABLE_RETRIES) {
        upstream_failed(c, why);
        return;
    }
    c->unreachable_tries++;
    fy_log(FY_LOG_WARN, "http", "pid=%d uri=%.*s: worker unreachable (%s); the request goes to "
           "another worker", (int)fy_worker_pid(c->worker),
           (int)(c->req.url_len > 200 ? 200 : c->req.url_len), fy_http_request_url(&c->req), why);
    detach_upstream(c, FY_WORKER_BROKEN);
    c->block.len = c->block_base_len;
    request_worker(c);
}

static bool unreachable_errno(int err)
{
    return err == ECONNREFUSED || err == ENOENT || err == ECONNRESET || err == EPIPE;
}

static void on_connect_retry(uv_timer_t *t) { connect_worker(t->data); }

/* Connects to the checked-out worker (non-blocking socket + uv_pipe_open, because libuv 1.44
 * cannot connect to abstract names), then sends the block and the body. */
static void connect_worker(fy_http_conn_t *c)
{
    struct sockaddr_un sa;
    const char *address = fy_worker_address(c->worker);
    int sa_len = worker_sockaddr(address, &sa);
    if (sa_len < 0) {
        upstream_failed(c, "bad worker address");
        return;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        fy_log(FY_LOG_ERROR, "http", "socket: %s", strerror(errno));
        detach_upstream(c, FY_WORKER_OK);
        send_error(c, 503, "The server is out of file descriptors.", NULL, false);
        return;
    }
    if (connect(fd, (struct sockaddr *)&sa, (socklen_t)sa_len) == -1) {
        int err = errno;
        close(fd);
        if ((err == EAGAIN || err == EINPROGRESS) && c->connect_tries++ < FY_HTTP_CONNECT_RETRIES) {
            uv_timer_start(&c->timer, on_connect_retry, FY_HTTP_CONNECT_RETRY_MS, 0);
            return;
        }
        char why[160];
        snprintf(why, sizeof why, "connect to %s: %s", address, strerror(err));
        if (unreachable_errno(err))
            worker_unreachable(c, why);
        else
            upstream_failed(c, why);
        return;
    }
    fy_http_upstream_t *up = new_upstream(c, fd);
    if (up == NULL) {
        upstream_failed(c, "uv_pipe_open failed");
        return;
    }
    c->up = up;
    const uint8_t *block;
    size_t block_len;
    fy_reqblock_finish(&c->block, &block, &block_len);
    uv_buf_t bufs[2];
    unsigned n = 0;
    bufs[n++] = uv_buf_init((char *)block, (unsigned)block_len);
    const fy_http_body_t *body = &c->req.body;
    if (fy_http_body_in_memory(body) && body->len > 0) {
        bufs[n++] = uv_buf_init(body->mem, (unsigned)body->len);
        up->body_off = body->len;
    }
    up->reading = true;
    uv_read_start((uv_stream_t *)&up->pipe, on_upstream_alloc, on_upstream_read);
    /* The fresh socket's buffer nearly always takes the whole block at once; only the rest, if
     * any, goes through a queued write. */
    int rc = uv_try_write((uv_stream_t *)&up->pipe, bufs, n);
    if (rc < 0 && rc != UV_EAGAIN) {
        /* The first write to a fresh connection failed: the worker was gone before it could
         * read anything (a dead listener resets the connections in its backlog). */
        char why[160];
        snprintf(why, sizeof why, "write to the worker failed: %s", uv_strerror(rc));
        if (unreachable_errno(-rc))
            worker_unreachable(c, why);
        else
            upstream_failed(c, why);
        return;
    }
    size_t done = rc > 0 ? (size_t)rc : 0;
    unsigned first = 0;
    while (first < n && done >= bufs[first].len)
        done -= bufs[first++].len;
    if (first == n) {
        send_body_chunk(up);
        return;
    }
    bufs[first].base += done;
    bufs[first].len -= (unsigned)done;
    up->write_req.data = up;
    if (uv_write(&up->write_req, (uv_stream_t *)&up->pipe, bufs + first, n - first,
                 on_upstream_write) < 0)
        upstream_failed(c, "write to the worker failed");
}

static void got_worker(fy_http_conn_t *c, fy_worker_t *worker)
{
    c->worker = worker;
    c->state = FY_CONN_UPSTREAM;
    c->connect_tries = 0;
    c->checkout_ms = uv_now(c->srv->loop);
    if (c->srv->opts.max_request_time_ms > 0)
        uv_timer_start(&c->req_timer, on_req_timeout, c->srv->opts.max_request_time_ms, 0);
    c->block_base_len = c->block.len;
    if (fy_reqblock_add_str(&c->block, "FERRY_CONNECT_PASSWORD", fy_worker_secret(worker)) < 0) {
        upstream_failed(c, "request block too large for the secret");
        return;
    }
    connect_worker(c);
}

/* Under overload nearly every request is refused: one warn line per second at most, carrying
 * the count of the refusals it stands for, keeps the log readable and the core off the disk. */
static void log_queue_full(fy_http_conn_t *c)
{
    fy_http_server_t *srv = c->srv;
    uint64_t now = uv_now(srv->loop);
    if (srv->queue_full_logged && now - srv->queue_full_log_ms < 1000) {
        srv->queue_full_unlogged++;
        return;
    }
    if (srv->queue_full_unlogged > 0)
        fy_log(FY_LOG_WARN, "http", "uri=%.*s: request queue full: 503 (and %llu more since the "
               "previous line)", (int)(c->req.url_len > 200 ? 200 : c->req.url_len),
               fy_http_request_url(&c->req), (unsigned long long)srv->queue_full_unlogged);
    else
        fy_log(FY_LOG_WARN, "http", "uri=%.*s: request queue full: 503",
               (int)(c->req.url_len > 200 ? 200 : c->req.url_len), fy_http_request_url(&c->req));
    srv->queue_full_logged = true;
    srv->queue_full_log_ms = now;
    srv->queue_full_unlogged = 0;
}

static void pool_failed(fy_http_conn_t *c, int status)
{
    fy_http_server_t *srv = c->srv;
    switch (status) {
    case -EBUSY:
        log_queue_full(c);
        send_error(c, 503, "The server is too busy: the request queue is full.", NULL, false);
        break;
    case -ETIMEDOUT:
        send_error(c, 503, "No worker became free within the maximum queue time.", NULL, false);
        break;
    case -ENOEXEC: {
        const fy_app_error_t *err = fy_pool_boot_error(srv->pool);
        bool dev = srv->opts.environment != NULL && strcmp(srv->opts.environment, "development") == 0;
        char title[512];
        if (err == NULL) {
            send_error(c, 503, "The application could not be started.", NULL, false);
        } else if (dev) {
            snprintf(title, sizeof title, "The application could not be started: %s (error id %s)",
                     err->summary ? err->summary : "", err->error_id ? err->error_id : "-");
            send_error(c, 503, title, err->details, false);
        } else {
            snprintf(title, sizeof title, "The application could not be started. Error id: %s. "
                     "The details are in the server log.", err->error_id ? err->error_id : "-");
            send_error(c, 503, title, NULL, false);
        }
        break;
    }
    case -ESHUTDOWN:
        send_error(c, 503, "The server is shutting down.", NULL, true);
        break;
    default:
        send_error(c, 503, "No worker is available.", NULL, false);
        break;
    }
}

static void on_waiter(fy_pool_waiter_t *waiter, fy_worker_t *worker, int status)
{
    fy_http_conn_t *c = waiter->data;
    waiter->queued = 0;
    if (c->state != FY_CONN_QUEUED) {   /* cannot happen: cancel runs before any close */
        if (worker != NULL)
            fy_pool_checkin(c->srv->pool, worker, FY_WORKER_OK);
        return;
    }
    if (status == 0 && worker != NULL)
        got_worker(c, worker);
    else
        pool_failed(c, status);
}

/* Whether the client's FIN is already waiting in the socket right behind what was read (the
 * request and any pipelined bytes): the client half-closed together with its requests. */
static bool client_sent_fin(fy_http_conn_t *c)
{
    uv_os_fd_t fd;
    if (c->read_eof || uv_fileno(&c->client.handle, &fd) != 0)
        return c->read_eof;
    char byte;
    return recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

/* The request is complete: build its block, then ask the pool for a worker. */
static void dispatch(fy_http_conn_t *c)
{
    fy_http_cgi_ctx_t ctx = {
        .server_name = c->listener->host,
        .server_port = c->listener->port,
        .remote_addr = c->remote_addr,
        .remote_port = c->remote_port,
        .https = false,
        .trusted_peer = c->trusted_peer,
        .secret = NULL,
    };
    /* The secret is the last variable, added once a worker is known (got_worker). */
    fy_reqblock_builder_t *b = &c->block;
    int rc = fy_http_cgi_build(&c->req, &ctx, b, &c->scratch);
    if (rc == -EPROTO) {
        send_error(c, 400, "The request target cannot be decoded.", NULL, true);
        return;
    }
    if (rc < 0) {
        send_error(c, 431, "The request headers are too large.", NULL, true);
        return;
    }
    c->unreachable_tries = 0;
    request_worker(c);
}

/* Asks the pool for a worker for the request whose block is built. */
static void request_worker(fy_http_conn_t *c)
{
    c->state = FY_CONN_QUEUED;
    c->head_done = false;
    c->head_unsent = false;
    c->worker_eof = false;
    c->response_done = false;
    c->body_sent = 0;
    c->resp.len = 0;
    c->fin_with_request = false;
    c->waiter.cb = on_waiter;
    c->waiter.data = c;
    fy_worker_t *worker = NULL;
    int rc = fy_pool_checkout(c->srv->pool, &c->waiter, &worker);
    if (rc == 1) {
        got_worker(c, worker);
    } else if (rc == 0) {
        c->waiter.queued = 1;
        c->fin_with_request = client_sent_fin(c);
    } else {
        pool_failed(c, rc);
    }
}

/* ---- reading from the client ------------------------------------------------------------ */

/* Writes the access log line of a request whose client went away before its response was
 * complete: the worker's status when its head went out, else 499 (nginx's "client closed
 * request"). */
static void log_unfinished(fy_http_conn_t *c)
{
    if (c->logged || c->req.method == NULL)
        return;
    fy_log(FY_LOG_INFO, "http", "peer=%s:%s uri=%.*s: client went away while its request was %s",
           c->remote_addr, c->remote_port, (int)(c->req.url_len > 200 ? 200 : c->req.url_len),
           fy_http_request_url(&c->req), c->state == FY_CONN_QUEUED ? "queued" : "served");
    if (!c->head_done)
        c->status = 499;
    fy_http_access_log(c, uv_now(c->srv->loop));
    c->logged = true;
}

/* Where the next read goes: the server's shared buffer when it starts a request (nothing is
 * kept then, so an idle connection owns no buffer); the connection's own buffer when bytes
 * must be kept for later (pipelined requests behind one in progress). */
static void on_client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    fy_http_conn_t *c = h->data;
    bool keep = c->in_len > 0 || c->state == FY_CONN_QUEUED || c->state == FY_CONN_UPSTREAM ||
                c->state == FY_CONN_REPLYING;
    if (c->state == FY_CONN_LINGER || !keep) {
        *buf = uv_buf_init(c->srv->shared_in, FY_HTTP_IO_SIZE);
        return;
    }
    if (c->in == NULL)
        c->in = fy_xmalloc(FY_HTTP_IO_SIZE);
    *buf = uv_buf_init(c->in + c->in_len, (unsigned)(FY_HTTP_IO_SIZE - c->in_len));
}

/* The client closed its side (EOF) or the connection failed (<err>). */
static void client_read_ended(fy_http_conn_t *c, int err)
{
    c->read_eof = true;
    if (c->reading) {
        uv_read_stop(&c->client.stream);
        c->reading = false;
    }
    if (err != UV_EOF) {
        /* reset or error: the client is gone, whatever it was doing */
        close_conn(c, false);
        return;
    }
    switch (c->state) {
    case FY_CONN_IDLE:
        close_conn(c, false);
        break;
    case FY_CONN_HEAD:
    case FY_CONN_BODY:
        if (fy_http_request_eof(&c->req) < 0)
            fy_log(FY_LOG_INFO, "http", "peer=%s:%s: client closed inside a request",
                   c->remote_addr, c->remote_port);
        close_conn(c, false);
        break;
    case FY_CONN_QUEUED:
        /* No worker has the request yet. An EOF that came with the request itself (already
         * there when the request was queued, or read in the same millisecond: `nc -q`,
         * HTTP/1.0 tools) is a half-close and the request waits for its worker. A later one means the client gave up (like
         * HAProxy's abortonclose): the request is cancelled and never takes a worker. */
        if (c->fin_with_request || uv_now(c->srv->loop) == c->complete_ms)
            break;
        close_conn(c, false);
        break;
    default:
        /* A worker has the request: a half-close (shutdown(SHUT_WR) after the request, as nc
         * and some HTTP/1.0 clients do) means "no more requests", and the response still goes
         * out; a client that is really gone shows up as a failed write. */
        break;
    }
}

static void on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    fy_http_conn_t *c = s->data;
    if (c->state == FY_CONN_LINGER) {
        if (nread < 0)
            close_conn(c, false);
        return;
    }
    if (c->state == FY_CONN_CLOSING)
        return;
    if (nread == 0)
        return;
    if (nread == UV_ENOBUFS) {   /* the connection's buffer is full: pause */
        update_client_reading(c);
        return;
    }
    if (nread < 0) {
        client_read_ended(c, (int)nread);
        return;
    }
    if (buf->base == c->srv->shared_in) {
        process_input(c, buf->base, (size_t)nread);
        return;
    }
    c->in_len += (size_t)nread;
    if (c->state == FY_CONN_IDLE || c->state == FY_CONN_HEAD || c->state == FY_CONN_BODY) {
        process_input(c, c->in, c->in_len);
        return;
    }
    update_client_reading(c);   /* kept for later; pauses when the buffer is full */
}

/* Starts or stops reading the client as its state wants: while a request is read, and while one
 * is queued or served (to notice a client that goes away, keeping pipelined bytes up to the
 * buffer size); not while the front writes its own response or after EOF. */
static void update_client_reading(fy_http_conn_t *c)
{
    bool want;
    switch (c->state) {
    case FY_CONN_IDLE:
    case FY_CONN_HEAD:
    case FY_CONN_BODY:
        want = !c->read_eof;
        break;
    case FY_CONN_QUEUED:
    case FY_CONN_UPSTREAM:
        want = !c->read_eof && c->in_len < FY_HTTP_IO_SIZE;
        break;
    case FY_CONN_LINGER:
    case FY_CONN_CLOSING:
        return;
    default:
        want = false;
        break;
    }
    if (want && !c->reading) {
        c->reading = true;
        uv_read_start(&c->client.stream, on_client_alloc, on_client_read);
    } else if (!want && c->reading) {
        uv_read_stop(&c->client.stream);
        c->reading = false;
    }
}

/* Reads the worker again after the client's write queue drained. */
static void resume_upstream(fy_http_conn_t *c)
{
    if (c->up != NULL && c->state == FY_CONN_UPSTREAM && !c->up->reading && !c->up->paused) {
        c->up->reading = true;
        uv_read_start((uv_stream_t *)&c->up->pipe, on_upstream_alloc, on_upstream_read);
    }
}

static void refuse(fy_http_conn_t *c)
{
    const fy_http_request_t *req = &c->req;
    fy_log(FY_LOG_INFO, "http", "peer=%s:%s: %d: %s", c->remote_addr, c->remote_port,
           req->error_status, req->error_reason ? req->error_reason : "refused");
    const char *title;
    switch (req->error_status) {
    case 413: title = "The request body is too large."; break;
    case 414: title = "The request target is too long."; break;
    case 417: title = "The expectation in the Expect header is not supported."; break;
    case 431: title = "The request headers are too large."; break;
    case 500: title = "The request body could not be buffered."; break;
    case 501: title = "This method or transfer coding is not supported."; break;
    case 505: title = "This HTTP version is not supported."; break;
    default: title = "The request is malformed."; break;
    }
    send_error(c, req->error_status, title, req->error_reason, true);
}

/* Keeps the <len> bytes at <rest> (pipelined, after a complete request) in the connection's
 * buffer. <rest> may point into that buffer. */
static void keep_rest(fy_http_conn_t *c, const char *rest, size_t len)
{
    FY_ASSERT(len <= FY_HTTP_IO_SIZE);
    if (len == 0) {
        free(c->in);
        c->in = NULL;
        c->in_len = 0;
        return;
    }
    if (c->in == NULL)
        c->in = fy_xmalloc(FY_HTTP_IO_SIZE);
    memmove(c->in, rest, len);
    c->in_len = len;
}

/* Parses <len> bytes at <data> (the shared buffer, or c->in with c->in_len bytes) until a request
 * is complete (then dispatches it, keeping pipelined bytes in c->in), the bytes are used up, or
 * the request is refused. */
static void process_input(fy_http_conn_t *c, const char *data, size_t len)
{
    size_t off = 0;
    while (off < len) {
        if (c->state == FY_CONN_IDLE) {
            if (c->srv->stopping) {
                keep_rest(c, NULL, 0);
                close_conn(c, false);
                return;
            }
            c->state = FY_CONN_HEAD;
            c->started_ms = uv_now(c->srv->loop);
            c->logged = false;
            arm_timer(c, c->srv->opts.header_timeout_ms);
        }
        if (c->state != FY_CONN_HEAD && c->state != FY_CONN_BODY)
            break;
        size_t used = 0;
        int rc = fy_http_request_feed(&c->req, data + off, len - off, &used);
        off += used;
        if (rc < 0) {
            keep_rest(c, NULL, 0);
            refuse(c);
            return;
        }
        if (c->state == FY_CONN_HEAD && c->req.headers_seen) {
            c->state = FY_CONN_BODY;
            arm_timer(c, c->srv->opts.body_timeout_ms);
            if (c->req.expect_continue && rc != FY_HTTP_FEED_DONE) {
                static char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                uv_buf_t b = uv_buf_init(cont, sizeof cont - 1);
                if (write_client(c, NULL, &b, 1) < 0) {
                    keep_rest(c, NULL, 0);
                    close_conn(c, false);
                    return;
                }
            }
        }
        if (rc == FY_HTTP_FEED_DONE) {
            c->complete_ms = uv_now(c->srv->loop);
            keep_rest(c, data + off, len - off);
            uv_timer_stop(&c->timer);
            dispatch(c);
            update_client_reading(c);
            return;
        }
    }
    keep_rest(c, NULL, 0);
    if (c->read_eof && (c->state == FY_CONN_HEAD || c->state == FY_CONN_BODY)) {
        fy_log(FY_LOG_INFO, "http", "peer=%s:%s: client closed inside a request", c->remote_addr,
               c->remote_port);
        close_conn(c, false);
        return;
    }
    if (c->state == FY_CONN_BODY)
        arm_timer(c, c->srv->opts.body_timeout_ms);
    update_client_reading(c);
}

/* The response is fully written: log it, then close or go on to the next request. A client
 * that half-closed gets the requests it sent before its EOF answered, then the close. */
static void finish_response(fy_http_conn_t *c)
{
    if (!c->logged)
        fy_http_access_log(c, uv_now(c->srv->loop));
    c->logged = true;
    uv_timer_stop(&c->req_timer);
    bool keep = c->plan.keep_alive && !c->close_after && !c->srv->stopping &&
                !(c->read_eof && c->in_len == 0);
    fy_http_request_reset(&c->req);
    c->response_done = false;
    c->head_done = false;
    c->head_unsent = false;
    c->status = 0;
    c->out.len = 0;
    c->resp.len = 0;
    if (!keep) {
        keep_rest(c, NULL, 0);
        close_conn(c, !c->read_eof);
        return;
    }
    c->state = FY_CONN_IDLE;
    if (c->in_len > 0) {
        process_input(c, c->in, c->in_len);
        return;
    }
    keep_rest(c, NULL, 0);
    arm_timer(c, c->srv->opts.keepalive_timeout_ms);
    update_client_reading(c);
}

/* ---- accept ----------------------------------------------------------------------------- */

static bool peer_trusted(const fy_http_server_t *srv, const char *addr)
{
    const char *list = srv->opts.trusted_proxies;
    if (list == NULL || list[0] == '\0')
        return false;
    size_t addr_len = strlen(addr);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *end = p;
        while (*end && *end != ',' && *end != ' ')
            end++;
        size_t n = (size_t)(end - p);
        if (n == 1 && p[0] == '*')
            return true;
        if (n == addr_len && memcmp(p, addr, n) == 0)
            return true;
        p = end;
    }
    return false;
}

void fy_http_conn_accept(fy_http_listener_t *lst)
{
    fy_http_server_t *srv = lst->srv;
    fy_http_conn_t *c = fy_xcalloc(1, sizeof *c);
    c->srv = srv;
    c->listener = lst;
    if (lst->is_unix)
        uv_pipe_init(srv->loop, &c->client.pipe, 0);
    else
        uv_tcp_init(srv->loop, &c->client.tcp);
    c->client.handle.data = c;
    uv_timer_init(srv->loop, &c->timer);
    c->timer.data = c;
    uv_timer_init(srv->loop, &c->req_timer);
    c->req_timer.data = c;
    c->open_handles = 3;
    fy_http_request_init(&c->req, &srv->opts);
    /* link before anything can close it */
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->conn_count++;

    if (uv_accept(&lst->h.stream, &c->client.stream) != 0) {
        close_conn(c, false);
        return;
    }
    strcpy(c->remote_addr, "127.0.0.1");
    strcpy(c->remote_port, "0");
    if (!lst->is_unix) {
        struct sockaddr_storage ss;
        int len = sizeof ss;
        if (uv_tcp_getpeername(&c->client.tcp, (struct sockaddr *)&ss, &len) == 0) {
            if (ss.ss_family == AF_INET) {
                struct sockaddr_in *in = (struct sockaddr_in *)&ss;
                uv_ip4_name(in, c->remote_addr, sizeof c->remote_addr);
                snprintf(c->remote_port, sizeof c->remote_port, "%u", ntohs(in->sin_port));
            } else if (ss.ss_family == AF_INET6) {
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
                uv_ip6_name(in6, c->remote_addr, sizeof c->remote_addr);
                snprintf(c->remote_port, sizeof c->remote_port, "%u", ntohs(in6->sin6_port));
            }
        }
        uv_tcp_nodelay(&c->client.tcp, 1);
        c->trusted_peer = peer_trusted(srv, c->remote_addr);
    } else {
        c->trusted_peer = peer_trusted(srv, "unix");
    }
    if (srv->stopping) {
        close_conn(c, false);
        return;
    }
    /* A new connection gets the header timeout to send its first byte (then closed silently,
     * like an idle keep-alive connection); the keep-alive timeout applies between requests. */
    c->state = FY_CONN_IDLE;
    arm_timer(c, srv->opts.header_timeout_ms);
    update_client_reading(c);
}
