/* The client side of a connection: reads and parses one request at a time (pipelined bytes wait
 * in the read buffer), buffers its body, checks a worker out of the pool only once the whole
 * request is in, hands the request to the worker side (upstream_v1.c or session.c, through the
 * seam in http_conn.h) and frames the worker's response for the client, buffering what the
 * client cannot take yet (memory, then a temp file) so that the worker is free at the end of its
 * response however slowly the client reads. The client is read throughout, so a client that goes
 * away while its request is queued or served is noticed at once. See README.md for the states. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "http/http_conn.h"
#include "proto/proxy.h"

/* The spool gives the disk back in steps of this much of what already went out. */
#define SPOOL_PUNCH_STEP (1024u * 1024)

static void process_input(fy_http_conn_t *c, const char *data, size_t len);
static void update_client_reading(fy_http_conn_t *c);
static bool peer_trusted(const fy_http_server_t *srv, const char *addr);
static void log_unfinished(fy_http_conn_t *c);
static void finish_response(fy_http_conn_t *c);
static void close_conn(fy_http_conn_t *c, bool graceful);
static void send_error(fy_http_conn_t *c, int status, const char *title, const char *detail,
                       bool close_after);
static void request_worker(fy_http_conn_t *c);
static void spool_refill(fy_http_conn_t *c);

#define URL_ARGS(c) (int)((c)->req.url_len > 200 ? 200 : (c)->req.url_len), \
                    fy_http_request_url(&(c)->req)

/* The request's id (docs/operations.md, "Request ids"): a trusted proxy's well-formed
 * X-Request-Id once the head is complete, else one of ferry's own, made on first use. */
static const char *request_id(fy_http_conn_t *c)
{
    if (c->request_id[0] != '\0')
        return c->request_id;
    size_t len = 0;
    const char *v = c->trusted_peer && c->req.headers_seen
                        ? fy_http_request_header(&c->req, "x-request-id", &len)
                        : NULL;
    while (v != NULL && len > 0 && (v[0] == ' ' || v[0] == '\t')) {
        v++;
        len--;
    }
    while (v != NULL && len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    if (v != NULL && fy_http_request_id_valid(v, len)) {
        memcpy(c->request_id, v, len);
        c->request_id[len] = '\0';
    } else {
        fy_http_request_id_generate(&c->srv->request_id_state, c->request_id);
    }
    return c->request_id;
}

/* Adds "X-Request-Id: <id>" to the response head at the start of c->out (a worker's head, or
 * ferry's own page with its body after it), when the option is on. */
static void add_request_id_header(fy_http_conn_t *c)
{
    if (!c->srv->opts.request_id_header)
        return;
    fy_http_buf_t *out = &c->out;
    const char *end = out->data ? memmem(out->data, out->len, "\r\n\r\n", 4) : NULL;
    if (end == NULL)
        return;
    size_t at = (size_t)(end - out->data) + 2;
    const char *id = request_id(c);
    size_t id_len = strlen(id);
    size_t add = sizeof "X-Request-Id: " - 1 + id_len + 2;
    fy_http_buf_reserve(out, add);
    memmove(out->data + at + add, out->data + at, out->len - at);
    memcpy(out->data + at, "X-Request-Id: ", sizeof "X-Request-Id: " - 1);
    memcpy(out->data + at + sizeof "X-Request-Id: " - 1, id, id_len);
    memcpy(out->data + at + add - 2, "\r\n", 2);
    out->len += add;
}

/* Records why ferry answers or ends the request itself; the first reason given stands (a 504's
 * cut response stays a max request time). */
static void set_why(fy_http_conn_t *c, fy_http_why_t why)
{
    if (c->why == FY_HTTP_WHY_NONE)
        c->why = (uint8_t)why;
}

/* A request ferry failed itself (a 5xx it made, or a response it cut): kept for `ferry status
 * --slow` with <why>, once per request. */
static void record_failure(fy_http_conn_t *c, int status, const char *why)
{
    if (c->failure_recorded)
        return;
    c->failure_recorded = true;
    if (c->status == 0 || !c->head_done)
        c->status = status;
    fy_http_conn_record(c, true, uv_now(c->srv->loop), why);
}

/* A request slower than the threshold: one warn line with its timeline (docs/operations.md,
 * "Slow requests"), and a place in the slow ring. */
static void log_slow(fy_http_conn_t *c, uint64_t now)
{
    fy_http_timeline_t t;
    fy_http_conn_timeline(c, now, &t);
    fy_log(FY_LOG_WARN, "http",
           "request_id=%s pid=%d status=%d method=%s uri=%.*s total_ms=%llu connect_ms=%llu "
           "head_ms=%llu body_ms=%llu queue_ms=%llu app_ms=%llu send_ms=%llu: slow request "
           "(threshold %u ms)",
           request_id(c), c->worker_pid, c->status, c->req.method ? c->req.method : "-",
           c->req.method ? (int)(c->req.url_len > 200 ? 200 : c->req.url_len) : 1,
           c->req.method ? fy_http_request_url(&c->req) : "-",
           (unsigned long long)t.total_ms, (unsigned long long)t.connect_ms,
           (unsigned long long)t.head_ms, (unsigned long long)t.body_ms,
           (unsigned long long)t.queue_ms, (unsigned long long)t.app_ms,
           (unsigned long long)t.send_ms, c->srv->opts.slow_request_threshold_ms);
    fy_http_conn_record(c, false, now, NULL);
}

/* The request is over (its response written, cut, or its client gone): counts it in the
 * metrics, then writes its access log line. Plain arithmetic: no allocation, no syscall. */
static void request_done(fy_http_conn_t *c)
{
    uint64_t now = uv_now(c->srv->loop);
    fy_http_metrics_t *m = &c->srv->metrics;
    if (c->req.method != NULL)
        request_id(c);   /* for the access log */
    int status = c->status;
    unsigned cls = status >= 100 && status <= 599 ? (unsigned)status / 100 - 1 : 4;
    m->requests[fy_http_metrics_method(c->req.method)][cls]++;
    m->response_bytes += fy_http_conn_response_bytes(c);
    uint64_t started = c->started_ms ? c->started_ms : now;
    fy_hist_observe(&m->duration, now - started);
    if (c->pool_entered) {
        uint64_t until = c->checkout_ms ? c->checkout_ms : now;
        fy_hist_observe(&m->queue_wait, until - c->complete_ms);
        c->pool_entered = false;
    }
    if (c->why != FY_HTTP_WHY_NONE)
        m->whys[c->why]++;
    unsigned slow_ms = c->srv->opts.slow_request_threshold_ms;
    if (slow_ms != 0 && now - started > slow_ms)
        log_slow(c, now);
    fy_http_access_log(c, now);
    c->logged = true;
}

/* ---- the worker side, through the seam ---------------------------------------------------- */

static void up_detach(fy_http_conn_t *c, fy_http_detach_t how)
{
    fy_http_upstream_t *up = c->up;
    if (up == NULL)
        return;
    c->up = NULL;
    c->up_paused = false;
    uv_timer_stop(&c->req_timer);
    if (up->protocol == 2)
        fy_http_v2_detach(up, how);
    else
        fy_http_v1_detach(up, how);
}

static void up_pause(fy_http_conn_t *c, bool paused)
{
    if (c->up == NULL || c->up_paused == paused)
        return;
    c->up_paused = paused;
    if (c->up->protocol == 2)
        fy_http_v2_pause(c->up, paused);
    else
        fy_http_v1_pause(c->up, paused);
}

static const char *upstream_pid_text(const fy_http_conn_t *c, char buf[16])
{
    snprintf(buf, 16, "%d", c->up && c->up->worker ? (int)fy_worker_pid(c->up->worker) : 0);
    return buf;
}

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
    fy_http_body_dispose(&c->spool);
    free(c->in);
    fy_http_server_forget(srv, c); /* frees c */
}

static void on_timeout(uv_timer_t *t);
static void arm_timer(fy_http_conn_t *c, unsigned ms);
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

/* Empties the response buffer: its temp file is closed, its memory kept. */
static void spool_reset(fy_http_conn_t *c)
{
    fy_http_body_reset(&c->spool);
    c->spool_off = 0;
    c->spool_punched = 0;
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
    up_detach(c, FY_DETACH_CLIENT_GONE);
    spool_reset(c);
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

void fy_http_upstream_abort(fy_http_upstream_t *up)
{
    if (up->protocol == 2)
        fy_http_v2_detach(up, FY_DETACH_BROKEN);
    else
        fy_http_v1_detach(up, FY_DETACH_BROKEN);
}

void fy_http_conn_abort(fy_http_conn_t *c)
{
    /* The request is cut at the shutdown deadline: the worker is still busy with it, so it is
     * not fit to serve again and the pool may stop it hard. */
    up_detach(c, FY_DETACH_BROKEN);
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

/* What an idle keep-alive connection gives back: the request's head, field index and body
 * memory, the worker request block, the response head and buffer, and the pipelining buffer
 * when it holds nothing. The next request allocates what it needs again. */
static void release_idle_buffers(fy_http_conn_t *c)
{
    fy_http_request_release(&c->req);
    fy_reqblock_builder_dispose(&c->block);
    fy_http_buf_dispose(&c->scratch);
    fy_http_buf_dispose(&c->out);
    fy_http_body_dispose(&c->spool);
    if (c->in_len == 0) {
        free(c->in);
        c->in = NULL;
    }
    fy_http_server_note_freed(c->srv);
}

static void on_timeout(uv_timer_t *t)
{
    fy_http_conn_t *c = t->data;
    switch (c->state) {
    case FY_CONN_IDLE:
        if (c->trim_pending) {
            c->trim_pending = false;
            release_idle_buffers(c);
            unsigned ka = c->srv->opts.keepalive_timeout_ms;
            arm_timer(c, ka == 0 ? 0 : ka - FY_HTTP_IDLE_TRIM_MS);
            break;
        }
        close_conn(c, false);
        break;
    case FY_CONN_HEAD:
        fy_log(FY_LOG_INFO, "http", "peer=%s:%s: request head timed out", c->remote_addr,
               c->remote_port);
        set_why(c, FY_HTTP_WHY_HEADER_TIMEOUT);
        send_error(c, 408, "The request head did not arrive in time.", NULL, true);
        break;
    case FY_CONN_BODY:
        fy_log(FY_LOG_INFO, "http", "peer=%s:%s request_id=%s uri=%.*s: request body timed out",
               c->remote_addr, c->remote_port, request_id(c), URL_ARGS(c));
        set_why(c, FY_HTTP_WHY_BODY_TIMEOUT);
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
        if (c->req.method != NULL)
            fy_log(FY_LOG_INFO, "http", "peer=%s:%s request_id=%s: client went away: %s",
                   c->remote_addr, c->remote_port, request_id(c), uv_strerror(status));
        else
            fy_log(FY_LOG_INFO, "http", "peer=%s:%s: client went away: %s", c->remote_addr,
                   c->remote_port, uv_strerror(status));
        close_conn(c, false);
        return;
    }
    if (c->spool.len > c->spool_off) {
        spool_refill(c);
        if (c->state == FY_CONN_CLOSING || c->state == FY_CONN_LINGER)
            return;
    } else if (c->up_paused && c->spool.len == 0 &&
               uv_stream_get_write_queue_size(&c->client.stream) <= FY_HTTP_WRITE_QUEUE_HIGH / 2) {
        up_pause(c, false);   /* paused on the write queue alone: the spool could not be used */
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
 * it saves libuv's deferred completion and the epoll re-arm that follows every queued write.
 * <bufs> must point into <w> or at memory that outlives the write. */
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

/* The front answers the request itself: the worker side is let go, reading and the timers
 * stop, and c->out is emptied for the response that end_front_response writes. */
static void begin_front_response(fy_http_conn_t *c, int status, bool close_after)
{
    c->status = status;
    if (close_after || c->srv->stopping)
        c->close_after = true;
    up_detach(c, FY_DETACH_CLIENT_GONE);
    if (c->reading) {
        uv_read_stop(&c->client.stream);
        c->reading = false;
    }
    uv_timer_stop(&c->timer);
    uv_timer_stop(&c->req_timer);
    c->out.len = 0;
}

/* Writes the front's own response (in c->out) and finishes the request with it. */
static void end_front_response(fy_http_conn_t *c)
{
    if (c->req.any_bytes)
        add_request_id_header(c);
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

/* Answers with the front's error page. */
static void send_error(fy_http_conn_t *c, int status, const char *title, const char *detail,
                       bool close_after)
{
    begin_front_response(c, status, close_after);
    if (status >= 500)
        record_failure(c, status, title);
    bool is_head = c->req.method != NULL && c->req.is_head;
    fy_http_error_response(status, is_head, !c->close_after, c->srv->opts.powered_by, title,
                           detail, &c->out);
    end_front_response(c);
}

/* --health-path (docs/configuration.md): a request whose path (the query aside) is the health
 * path is answered here, 200 when at least one worker is ready (idle or busy), else 503, so a
 * load balancer or a Kubernetes probe learns whether this instance can serve, without taking a
 * worker. Returns true when it answered. */
static bool answer_health(fy_http_conn_t *c)
{
    const char *want = c->srv->opts.health_path;
    if (want == NULL || want[0] == '\0')
        return false;
    const char *url = fy_http_request_url(&c->req);
    const char *path = url + c->req.target.path_off;
    size_t len = c->req.target.path_len;
    const char *q = memchr(path, '?', len);
    if (q != NULL)
        len = (size_t)(q - path);
    if (len != strlen(want) || memcmp(path, want, len) != 0)
        return false;
    fy_pool_stats_t stats;
    fy_pool_get_stats(c->srv->pool, &stats);
    bool ready = stats.idle + stats.busy > 0 && !c->srv->stopping;
    int status = ready ? 200 : 503;
    begin_front_response(c, status, false);
    char text[96];
    if (ready)
        snprintf(text, sizeof text, "ok: %u worker%s ready\n", stats.idle + stats.busy,
                 stats.idle + stats.busy == 1 ? "" : "s");
    else
        snprintf(text, sizeof text, "%s\n", c->srv->stopping ? "shutting down"
                                                              : "no worker is ready");
    fy_http_plain_response(status, c->req.is_head, !c->close_after, c->srv->opts.powered_by,
                           text, &c->out);
    end_front_response(c);
    return true;
}

/* ---- the response ------------------------------------------------------------------------ */

/* The worker failed before its head was complete: 502. */
static void upstream_failed(fy_http_conn_t *c, const char *why)
{
    char pid[16];
    fy_log(FY_LOG_ERROR, "http", "pid=%s request_id=%s uri=%.*s: bad worker response: %s",
           upstream_pid_text(c, pid), request_id(c), URL_ARGS(c), why);
    set_why(c, FY_HTTP_WHY_BAD_RESPONSE);
    record_failure(c, 502, why);
    up_detach(c, FY_DETACH_CLIENT_GONE);
    send_error(c, 502, "The application sent no valid response.", NULL, false);
}

/* The response cannot be completed after its head went out: the only honest signal left is to
 * close the connection, without the terminating chunk or short of the Content-Length, so that
 * no client or cache takes the part for the whole. */
static void response_broken(fy_http_conn_t *c, const char *why)
{
    char pid[16];
    fy_log(FY_LOG_ERROR, "http", "pid=%s request_id=%s uri=%.*s: response cut short: %s",
           upstream_pid_text(c, pid), request_id(c), URL_ARGS(c), why);
    set_why(c, FY_HTTP_WHY_RESPONSE_CUT);
    record_failure(c, c->status, why);
    up_detach(c, FY_DETACH_CLIENT_GONE);
    request_done(c);
    close_conn(c, false);
}

/* Writes the head held back by fy_http_conn_worker_head, alone. Returns false when the
 * connection was closed. */
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

/* Writes <len> (≤ FY_HTTP_IO_SIZE) body bytes that live in <w>->data, framed, with the held-back
 * head in front when it is still unsent. Takes <w>. Returns false when the connection closed. */
static bool write_piece(fy_http_conn_t *c, fy_http_wbuf_t *w, size_t len)
{
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
        bufs[n++] = uv_buf_init(w->data, (unsigned)len);
        bufs[n++] = uv_buf_init((char *)"\r\n", 2);
    } else {
        bufs[n++] = uv_buf_init(w->data, (unsigned)len);
    }
    if (write_client_now(c, w, bufs, n) < 0) {
        close_conn(c, false);
        return false;
    }
    return true;
}

static uint64_t spool_unread(const fy_http_conn_t *c)
{
    return c->spool.len - c->spool_off;
}

/* Puts body bytes the client cannot take yet into the response buffer's temp file, and pauses
 * the worker side past response_buffer_max. Returns false when the file cannot be written: the
 * caller then queues them in memory and pauses the worker on the write queue instead. */
static bool spool_append(fy_http_conn_t *c, const char *data, size_t len)
{
    if (fy_http_body_append(&c->spool, data, len) < 0) {
        fy_log(FY_LOG_WARN, "http", "uri=%.*s: cannot buffer the response in a temp file; "
               "the worker waits for the client instead", URL_ARGS(c));
        spool_reset(c);
        return false;
    }
    uint64_t max = c->srv->opts.response_buffer_max;
    if (max != 0 && spool_unread(c) >= max)
        up_pause(c, true);
    return true;
}

/* Sends what the response buffer holds while the client's write queue takes it; gives the disk
 * back as it goes; resumes the worker side below half the high-water mark; ends the response
 * once the worker side is done and everything went out. */
static void spool_refill(fy_http_conn_t *c)
{
    while (c->spool.len > c->spool_off &&
           uv_stream_get_write_queue_size(&c->client.stream) < FY_HTTP_WRITE_QUEUE_HIGH) {
        fy_http_wbuf_t *w = fy_http_wbuf_get(c->srv, c);
        ssize_t n = fy_http_body_read(&c->spool, c->spool_off, w->data, sizeof w->data);
        if (n <= 0) {
            fy_http_wbuf_put(c->srv, w);
            fy_log(FY_LOG_ERROR, "http", "uri=%.*s: cannot read the buffered response back: %s",
                   URL_ARGS(c), strerror(n < 0 ? (int)-n : EIO));
            response_broken(c, "response buffer unreadable");
            return;
        }
        c->spool_off += (uint64_t)n;
        if (!write_piece(c, w, (size_t)n))
            return;
        if (c->spool_off - c->spool_punched >= SPOOL_PUNCH_STEP && c->spool.fd != -1) {
            /* an endless stream to a slow reader holds at most the unread part on disk */
            uint64_t upto = c->spool_off - c->spool_off % SPOOL_PUNCH_STEP;
            if (fallocate(c->spool.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                          (off_t)c->spool_punched, (off_t)(upto - c->spool_punched)) == 0)
                c->spool_punched = upto;
        }
    }
    uint64_t max = c->srv->opts.response_buffer_max;
    if (c->spool.len == c->spool_off && c->spool.len > 0)
        spool_reset(c);
    if (c->up_paused && (max == 0 || spool_unread(c) < max / 2))
        up_pause(c, false);
    if (c->spool.len == 0 && c->worker_done && !c->response_done) {
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
}

/* Body bytes from the worker: cut at the Content-Length, framed and written, or buffered when
 * the client's write queue is full (response buffering, docs/operations.md). */
void fy_http_conn_worker_data(fy_http_conn_t *c, fy_http_wbuf_t *w, const char *data, size_t len)
{
    if (len == 0 || c->plan.framing == FY_HTTP_FRAME_NONE || c->worker_done) {
        if (w)
            fy_http_wbuf_put(c->srv, w);
        flush_head(c);
        return;
    }
    if (c->plan.framing == FY_HTTP_FRAME_LENGTH) {
        uint64_t left = c->plan.content_length - c->body_sent;
        if (len > left) {
            /* The client's response is complete: the rest is dropped, the worker side let go
             * (v1: its connection closed; v2: ABORT, checked in at its END) and the connection
             * goes on. */
            fy_log(FY_LOG_WARN, "http", "pid=%d uri=%.*s: worker sent more than its "
                   "Content-Length; extra bytes dropped",
                   c->up && c->up->worker ? (int)fy_worker_pid(c->up->worker) : 0, URL_ARGS(c));
            if (left > 0)
                fy_http_conn_worker_data(c, w, data, (size_t)left);
            else if (w)
                fy_http_wbuf_put(c->srv, w);
            if (c->state != FY_CONN_UPSTREAM || c->worker_done)
                return;
            up_detach(c, FY_DETACH_CLIENT_GONE);
            if (!flush_head(c))
                return;
            c->worker_done = true;
            spool_refill(c);
            return;
        }
    }
    c->body_sent += len;
    if (c->spool.len > 0 ||
        uv_stream_get_write_queue_size(&c->client.stream) > FY_HTTP_WRITE_QUEUE_HIGH) {
        if (!flush_head(c))
            return;
        if (spool_append(c, data, len)) {
            if (w)
                fy_http_wbuf_put(c->srv, w);
            return;
        }
        up_pause(c, true);   /* no spool: fall back to the write queue as backpressure */
    }
    while (len > 0) {
        size_t piece = len < FY_HTTP_IO_SIZE ? len : FY_HTTP_IO_SIZE;
        if (w == NULL || w->data != data) {
            if (w)
                fy_http_wbuf_put(c->srv, w);
            w = fy_http_wbuf_get(c->srv, c);
            memcpy(w->data, data, piece);
        }
        if (!write_piece(c, w, piece))
            return;
        w = NULL;
        data += piece;
        len -= piece;
    }
}

int fy_http_conn_worker_head(fy_http_conn_t *c, const fy_resphead_t *head)
{
    c->out.len = 0;
    bool keep_alive = c->req.keep_alive && !c->close_after && !c->srv->stopping;
    int rc = fy_http_response_head(head, &c->req, keep_alive, c->srv->opts.powered_by, &c->out,
                                   &c->plan);
    if (rc < 0) {
        char why[96];
        if (head->status < 200 || head->status > 599)
            snprintf(why, sizeof why, "status %d cannot be forwarded (200..599 only)",
                     head->status);
        else
            snprintf(why, sizeof why, "bad or conflicting Content-Length");
        c->up = NULL;   /* the worker side checks the worker in itself */
        upstream_failed(c, why);
        return -EPROTO;
    }
    bool app_has_id = false;
    for (size_t i = 0; i < head->header_count && !app_has_id; i++)
        app_has_id = head->headers[i].name_len == 12 &&
                     strncasecmp(head->headers[i].name, "x-request-id", 12) == 0;
    if (!app_has_id)
        add_request_id_header(c);
    c->head_done = true;
    c->first_byte_ms = uv_now(c->srv->loop);
    c->status = c->plan.status;
    if (!c->plan.keep_alive)
        c->close_after = true;
    /* Body bytes that come next go out with the head (write_piece); else it goes alone. */
    c->head_unsent = true;
    return 0;
}

void fy_http_conn_worker_end(fy_http_conn_t *c, bool complete, const char *why)
{
    c->up = NULL;   /* the worker side is done and has checked the worker in */
    c->up_paused = false;
    uv_timer_stop(&c->req_timer);
    if (!c->head_done) {
        upstream_failed(c, why ? why : "the worker ended the response without a head");
        return;
    }
    if (!complete) {
        response_broken(c, why ? why : "the worker ended the response as failed");
        return;
    }
    if (c->plan.framing == FY_HTTP_FRAME_LENGTH && c->body_sent < c->plan.content_length) {
        response_broken(c, "the worker ended the response before its Content-Length was sent");
        return;
    }
    if (!flush_head(c))
        return;
    c->worker_done = true;
    spool_refill(c);
}

bool fy_http_conn_body_short(const fy_http_conn_t *c)
{
    return c->head_done && c->plan.framing == FY_HTTP_FRAME_LENGTH &&
           c->body_sent < c->plan.content_length;
}

void fy_http_conn_worker_failed(fy_http_conn_t *c, const char *why)
{
    c->up = NULL;
    c->up_paused = false;
    if (c->head_done)
        response_broken(c, why);
    else
        upstream_failed(c, why);
}

void fy_http_conn_worker_unreachable(fy_http_conn_t *c, const char *why)
{
    c->up = NULL;
    c->up_paused = false;
    uv_timer_stop(&c->req_timer);
    if (c->unreachable_tries >= FY_HTTP_UNREACHABLE_RETRIES) {
        upstream_failed(c, why);
        return;
    }
    c->unreachable_tries++;
    fy_log(FY_LOG_WARN, "http", "request_id=%s uri=%.*s: worker unreachable (%s); the request "
           "goes to another worker", request_id(c), URL_ARGS(c), why);
    request_worker(c);
}

static void on_waiter(fy_pool_waiter_t *waiter, fy_worker_t *worker, int status);
static void pool_failed(fy_http_conn_t *c, int status);

void fy_http_conn_worker_requeue(fy_http_conn_t *c)
{
    c->up = NULL;
    c->up_paused = false;
    uv_timer_stop(&c->req_timer);
    c->state = FY_CONN_QUEUED;
    c->waiter.cb = on_waiter;
    c->waiter.data = c;
    int rc = fy_pool_requeue(c->srv->pool, &c->waiter);
    if (rc < 0)
        pool_failed(c, rc);
}

void fy_http_conn_request_bytes(fy_http_conn_t *c, fy_worker_t *worker, const uint8_t **block,
                                size_t *block_len, const fy_http_body_t **body)
{
    (void)worker;
    fy_reqblock_finish(&c->block, block, block_len);
    *body = &c->req.body;
}

static void on_req_timeout(uv_timer_t *t)
{
    fy_http_conn_t *c = t->data;
    char pid[16];
    fy_log(FY_LOG_ERROR, "http", "pid=%s request_id=%s uri=%.*s: max request time (%u ms) "
           "passed; the worker's backtrace follows under its pid", upstream_pid_text(c, pid),
           request_id(c), URL_ARGS(c), c->srv->opts.max_request_time_ms);
    set_why(c, FY_HTTP_WHY_MAX_REQUEST_TIME);
    up_detach(c, FY_DETACH_TIMED_OUT);
    if (c->head_done) {
        response_broken(c, "max request time passed");
        return;
    }
    send_error(c, 504, "The application did not answer within the maximum request time.", NULL,
               false);
}

static void got_worker(fy_http_conn_t *c, fy_worker_t *worker)
{
    c->state = FY_CONN_UPSTREAM;
    c->checkout_ms = uv_now(c->srv->loop);
    c->worker_pid = (int)fy_worker_pid(worker);
    c->block.len = c->block_base_len;
    if (fy_reqblock_add_str(&c->block, "FERRY_CONNECT_PASSWORD", fy_worker_secret(worker)) < 0) {
        fy_pool_checkin(c->srv->pool, worker, FY_WORKER_NOT_STARTED);
        upstream_failed(c, "request block too large for the secret");
        return;
    }
    if (c->srv->opts.max_request_time_ms > 0)
        uv_timer_start(&c->req_timer, on_req_timeout, c->srv->opts.max_request_time_ms, 0);
    if (fy_worker_protocol(worker) == 2 && c->srv->opts.session_protocol >= 2)
        fy_http_v2_start(c, worker);
    else
        fy_http_v1_start(c, worker);
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
               "previous line)", URL_ARGS(c), (unsigned long long)srv->queue_full_unlogged);
    else
        fy_log(FY_LOG_WARN, "http", "uri=%.*s: request queue full: 503", URL_ARGS(c));
    srv->queue_full_logged = true;
    srv->queue_full_log_ms = now;
    srv->queue_full_unlogged = 0;
}
static void pool_failed(fy_http_conn_t *c, int status)
{
    fy_http_server_t *srv = c->srv;
    c->checkout_ms = uv_now(srv->loop);   /* the end of its queue wait */
    switch (status) {
    case -EBUSY:
        set_why(c, FY_HTTP_WHY_QUEUE_FULL);
        log_queue_full(c);
        send_error(c, 503, "The server is too busy: the request queue is full.", NULL, false);
        break;
    case -ETIMEDOUT:
        set_why(c, FY_HTTP_WHY_QUEUE_TIME);
        send_error(c, 503, "No worker became free within the maximum queue time.", NULL, false);
        break;
    case -ENOEXEC: {
        set_why(c, FY_HTTP_WHY_BOOT_FAILURE);
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
        set_why(c, FY_HTTP_WHY_SHUTTING_DOWN);
        send_error(c, 503, "The server is shutting down.", NULL, true);
        break;
    default:
        set_why(c, FY_HTTP_WHY_NO_WORKER);
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
            fy_pool_checkin(c->srv->pool, worker, FY_WORKER_NOT_STARTED);
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
    if (answer_health(c))
        return;
    fy_http_cgi_ctx_t ctx = {
        .server_name = c->listener->host,
        .server_port = c->listener->port,
        .remote_addr = c->remote_addr,
        .remote_port = c->remote_port,
        .https = false,
        .trusted_peer = c->trusted_peer,
        .secret = NULL,
        .request_id = request_id(c),
    };
    /* The secret is the last variable, added once a worker is known (got_worker). */
    fy_reqblock_builder_t *b = &c->block;
    int rc = fy_http_cgi_build(&c->req, &ctx, b, &c->scratch);
    if (rc == -EPROTO) {
        set_why(c, FY_HTTP_WHY_BAD_REQUEST);
        send_error(c, 400, "The request target cannot be decoded.", NULL, true);
        return;
    }
    if (rc < 0) {
        set_why(c, FY_HTTP_WHY_HEADERS_TOO_LARGE);
        send_error(c, 431, "The request headers are too large.", NULL, true);
        return;
    }
    c->block_base_len = b->len;
    c->unreachable_tries = 0;
    c->pool_entered = true;
    c->checkout_ms = 0;
    request_worker(c);
}

/* Asks the pool for a worker for the request whose block is built. */
static void request_worker(fy_http_conn_t *c)
{
    c->state = FY_CONN_QUEUED;
    c->head_done = false;
    c->head_unsent = false;
    c->worker_done = false;
    c->response_done = false;
    c->body_sent = 0;
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
    fy_log(FY_LOG_INFO, "http", "peer=%s:%s request_id=%s uri=%.*s: client went away while its "
           "request was %s", c->remote_addr, c->remote_port, request_id(c), URL_ARGS(c),
           c->state == FY_CONN_QUEUED ? "queued" : "served");
    if (!c->head_done)
        c->status = 499;
    set_why(c, FY_HTTP_WHY_CLIENT_GONE);
    request_done(c);
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

static void refuse(fy_http_conn_t *c)
{
    const fy_http_request_t *req = &c->req;
    fy_log(FY_LOG_INFO, "http", "peer=%s:%s request_id=%s: %d: %s", c->remote_addr,
           c->remote_port, request_id(c), req->error_status,
           req->error_reason ? req->error_reason : "refused");
    const char *title;
    fy_http_why_t why;
    switch (req->error_status) {
    case 413: title = "The request body is too large."; why = FY_HTTP_WHY_BODY_TOO_LARGE; break;
    case 414: title = "The request target is too long."; why = FY_HTTP_WHY_URI_TOO_LONG; break;
    case 417:
        title = "The expectation in the Expect header is not supported.";
        why = FY_HTTP_WHY_EXPECTATION;
        break;
    case 431:
        title = "The request headers are too large.";
        why = FY_HTTP_WHY_HEADERS_TOO_LARGE;
        break;
    case 500:
        title = "The request body could not be buffered.";
        why = FY_HTTP_WHY_BODY_BUFFER;
        break;
    case 501:
        title = "This method or transfer coding is not supported.";
        why = FY_HTTP_WHY_NOT_IMPLEMENTED;
        break;
    case 505: title = "This HTTP version is not supported."; why = FY_HTTP_WHY_HTTP_VERSION; break;
    default: title = "The request is malformed."; why = FY_HTTP_WHY_BAD_REQUEST; break;
    }
    set_why(c, why);
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

/* --proxy-protocol (docs/deploying.md, "Behind a load balancer"): the first bytes of a
 * connection. From a trusted peer they must be a PROXY header (HAProxy's protocol, v1 or v2):
 * its source becomes REMOTE_ADDR and REMOTE_PORT (and whether X-Forwarded-* are believed is
 * decided for that address); LOCAL, UNKNOWN and other families keep the connection's own. From
 * an untrusted peer a PROXY header is refused: nobody else may say who the client is. Refused or
 * malformed: logged, the connection closed without an answer. Returns 0 with *used set to the
 * header's bytes (0 for an untrusted peer's plain request), or 1 when it kept the bytes to wait
 * for more or closed the connection. */
static int proxy_header(fy_http_conn_t *c, const char *data, size_t len, size_t *used)
{
    fy_proxy_header_t h;
    const char *why = "";
    int rc = fy_proxy_parse((const uint8_t *)data, len, &h, &why);
    if (!c->trusted_peer) {
        if (rc == -EPROTO || rc == -EMSGSIZE || (rc == -EAGAIN && !fy_proxy_maybe(
                                                     (const uint8_t *)data, len))) {
            c->proxy_checked = true;
            *used = 0;
            return 0;
        }
        if (rc == -EAGAIN) {
            keep_rest(c, data, len);
            return 1;
        }
        fy_log(FY_LOG_WARN, "http", "peer=%s:%s: refused: a PROXY header from a peer that is not "
               "in --trusted-proxy", c->remote_addr, c->remote_port);
        keep_rest(c, NULL, 0);
        close_conn(c, false);
        return 1;
    }
    if (rc == -EAGAIN) {
        keep_rest(c, data, len);
        return 1;
    }
    if (rc < 0) {
        fy_log(FY_LOG_WARN, "http", "peer=%s:%s: refused: bad PROXY header: %s", c->remote_addr,
               c->remote_port, why);
        keep_rest(c, NULL, 0);
        close_conn(c, false);
        return 1;
    }
    c->proxy_checked = true;
    if (h.has_addresses) {
        snprintf(c->remote_addr, sizeof c->remote_addr, "%s", h.src_addr);
        snprintf(c->remote_port, sizeof c->remote_port, "%u", h.src_port);
        c->trusted_peer = peer_trusted(c->srv, c->remote_addr);
    }
    *used = h.length;
    return 0;
}

/* Parses <len> bytes at <data> (the shared buffer, or c->in with c->in_len bytes) until a request
 * is complete (then dispatches it, keeping pipelined bytes in c->in), the bytes are used up, or
 * the request is refused. */
static void process_input(fy_http_conn_t *c, const char *data, size_t len)
{
    if (c->srv->opts.proxy_protocol && !c->proxy_checked) {
        size_t used = 0;
        if (proxy_header(c, data, len, &used) != 0)
            return;   /* waiting for more, or closed */
        data += used;
        len -= used;
        if (len == 0) {
            keep_rest(c, NULL, 0);
            return;
        }
    }
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
            c->head_ms = c->complete_ms = c->first_byte_ms = c->checkout_ms = 0;
            c->worker_pid = 0;
            c->why = FY_HTTP_WHY_NONE;
            c->request_id[0] = '\0';
            c->failure_recorded = false;
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
            c->head_ms = uv_now(c->srv->loop);
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
        request_done(c);
    c->logged = true;
    c->why = FY_HTTP_WHY_NONE;
    c->accepted_ms = 0;   /* the next request's timeline starts at its first byte */
    uv_timer_stop(&c->req_timer);
    bool keep = c->plan.keep_alive && !c->close_after && !c->srv->stopping &&
                !(c->read_eof && c->in_len == 0);
    fy_http_request_reset(&c->req);
    c->response_done = false;
    c->worker_done = false;
    c->head_done = false;
    c->head_unsent = false;
    c->status = 0;
    c->out.len = 0;
    spool_reset(c);
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
    /* First the buffers go, after FY_HTTP_IDLE_TRIM_MS; then, at the keep-alive timeout (0:
     * none), the connection. */
    unsigned ka = c->srv->opts.keepalive_timeout_ms;
    c->trim_pending = ka == 0 || ka > FY_HTTP_IDLE_TRIM_MS;
    arm_timer(c, c->trim_pending ? FY_HTTP_IDLE_TRIM_MS : ka);
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
    fy_http_conn_t *c = fy_slab_alloc(&srv->conn_slab);
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
    fy_http_body_init(&c->spool, 0, srv->opts.tmp_dir);
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
    c->accepted_ms = uv_now(srv->loop);
    arm_timer(c, srv->opts.header_timeout_ms);
    update_client_reading(c);
}
