/* The worker side of a request in session protocol v1 (docs/protocol.md §2, §3): a connection
 * of its own to the worker, the request block and body written and the write side shut, the
 * response read until the worker closes. The end of the response is the worker's close, so a
 * body cut short cannot be told from a whole one here; that is what v2 (session.c) fixes. Kept
 * for workers whose ready message offers only v1 (third-party loaders, today's Rack and WSGI). */
#include <errno.h>
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

typedef struct v1_upstream {
    fy_http_upstream_t base;  /* first: the seam's view */
    uv_pipe_t pipe;
    uv_timer_t timer;         /* connect retries; then max request time left while draining */
    uv_write_t write_req;
    int open_handles;
    bool pipe_open;
    bool closing;
    int connect_tries;
    uint64_t body_off;        /* bytes of the request body sent */
    bool reading;
    bool paused;
    bool request_sent;        /* every byte of the request written; our write side shut */
    bool head_done;
    fy_http_buf_t head;       /* the worker's head bytes as they arrive */
    char chunk[FY_HTTP_IO_SIZE];   /* last member: not zeroed */
} v1_upstream_t;

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void send_body_chunk(v1_upstream_t *v);
static void on_write(uv_write_t *wr, int status);

/* ---- lifetime ---------------------------------------------------------------------------- */

static void on_closed(uv_handle_t *h)
{
    v1_upstream_t *v = h->data;
    if (--v->open_handles > 0)
        return;
    fy_http_buf_dispose(&v->head);
    free(v);
}

/* Checks the worker in (once) with <outcome>. */
static void checkin(v1_upstream_t *v, fy_worker_outcome_t outcome)
{
    if (v->base.worker == NULL)
        return;
    fy_pool_checkin(v->base.srv->pool, v->base.worker, outcome);
    v->base.worker = NULL;
}

/* Closes the worker connection and frees the upstream once its handles are closed. */
static void finish(v1_upstream_t *v, fy_worker_outcome_t outcome)
{
    if (v->closing)
        return;
    v->closing = true;
    checkin(v, outcome);
    if (v->base.draining) {
        v->base.draining = false;
        fy_http_server_drain_remove(v->base.srv, &v->base);
    }
    v->base.conn = NULL;
    uv_timer_stop(&v->timer);
    uv_close((uv_handle_t *)&v->timer, on_closed);
    uv_close((uv_handle_t *)&v->pipe, on_closed);
}

/* ---- connecting -------------------------------------------------------------------------- */

int fy_http_worker_connect(const char *address)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t max = sizeof sa.sun_path;
    socklen_t sa_len;
    if (strncmp(address, "abstract:", 9) == 0) {
        size_t n = strlen(address + 9);
        if (n == 0 || n + 1 > max)
            return -EINVAL;
        memcpy(sa.sun_path + 1, address + 9, n);
        sa_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
    } else if (strncmp(address, "unix:", 5) == 0) {
        size_t n = strlen(address + 5);
        if (n == 0 || n + 1 > max)
            return -EINVAL;
        memcpy(sa.sun_path, address + 5, n);
        sa_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    } else {
        return -EINVAL;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sa_len) == -1) {
        int err = errno;
        close(fd);
        return err == EINPROGRESS ? -EAGAIN : -err;
    }
    return fd;
}

bool fy_http_unreachable_errno(int err)
{
    return err == ECONNREFUSED || err == ENOENT || err == ECONNRESET || err == EPIPE;
}

/* The worker failed before its head. */
static void failed(v1_upstream_t *v, const char *why)
{
    fy_http_conn_t *c = v->base.conn;
    finish(v, FY_WORKER_BROKEN);
    if (c != NULL)
        fy_http_conn_worker_failed(c, why);
}

/* Nothing reached the worker (it died idle, its socket is gone): another worker is safe. */
static void unreachable(v1_upstream_t *v, const char *why)
{
    fy_http_conn_t *c = v->base.conn;
    finish(v, FY_WORKER_BROKEN);
    if (c != NULL)
        fy_http_conn_worker_unreachable(c, why);
}

static void connect_worker(v1_upstream_t *v);
static void on_connect_retry(uv_timer_t *t) { connect_worker(t->data); }

/* Connects (a non-blocking socket + uv_pipe_open, because libuv cannot connect to abstract
 * names), then sends the block and the body. */
static void connect_worker(v1_upstream_t *v)
{
    fy_http_conn_t *c = v->base.conn;
    const char *address = fy_worker_address(v->base.worker);
    int fd = fy_http_worker_connect(address);
    if (fd == -EAGAIN && v->connect_tries++ < FY_HTTP_CONNECT_RETRIES) {
        uv_timer_start(&v->timer, on_connect_retry, FY_HTTP_CONNECT_RETRY_MS, 0);
        return;
    }
    if (fd < 0) {
        char why[160];
        snprintf(why, sizeof why, "connect to %s: %s", address, strerror(-fd));
        if (fy_http_unreachable_errno(-fd))
            unreachable(v, why);
        else
            failed(v, why);
        return;
    }
    if (uv_pipe_open(&v->pipe, fd) < 0) {
        close(fd);
        failed(v, "uv_pipe_open failed");
        return;
    }
    v->pipe_open = true;
    const uint8_t *block;
    size_t block_len;
    const fy_http_body_t *body;
    fy_http_conn_request_bytes(c, v->base.worker, &block, &block_len, &body);
    uv_buf_t bufs[2];
    unsigned n = 0;
    bufs[n++] = uv_buf_init((char *)block, (unsigned)block_len);
    if (fy_http_body_in_memory(body) && body->len > 0) {
        bufs[n++] = uv_buf_init(body->mem, (unsigned)body->len);
        v->body_off = body->len;
    }
    v->reading = true;
    uv_read_start((uv_stream_t *)&v->pipe, on_alloc, on_read);
    /* The fresh socket's buffer nearly always takes the whole block at once; only the rest, if
     * any, goes through a queued write. */
    int rc = uv_try_write((uv_stream_t *)&v->pipe, bufs, n);
    if (rc < 0 && rc != UV_EAGAIN) {
        /* The first write to a fresh connection failed: the worker was gone before it could
         * read anything (a dead listener resets the connections in its backlog). */
        char why[160];
        snprintf(why, sizeof why, "write to the worker failed: %s", uv_strerror(rc));
        if (fy_http_unreachable_errno(-rc))
            unreachable(v, why);
        else
            failed(v, why);
        return;
    }
    size_t done = rc > 0 ? (size_t)rc : 0;
    unsigned first = 0;
    while (first < n && done >= bufs[first].len)
        done -= bufs[first++].len;
    if (first == n) {
        send_body_chunk(v);
        return;
    }
    bufs[first].base += done;
    bufs[first].len -= (unsigned)done;
    v->write_req.data = v;
    if (uv_write(&v->write_req, (uv_stream_t *)&v->pipe, bufs + first, n - first, on_write) < 0)
        failed(v, "write to the worker failed");
}

fy_http_upstream_t *fy_http_v1_start(fy_http_conn_t *c, fy_worker_t *worker)
{
    /* the 64 KiB chunk at the end needs no zeroing: only what precedes it */
    v1_upstream_t *v = fy_xmalloc(sizeof *v);
    memset(v, 0, offsetof(v1_upstream_t, chunk));
    v->base.protocol = 1;
    v->base.conn = c;
    v->base.srv = c->srv;
    v->base.worker = worker;
    v->base.checkout_ms = uv_now(c->srv->loop);
    uv_pipe_init(c->srv->loop, &v->pipe, 0);
    v->pipe.data = v;
    uv_timer_init(c->srv->loop, &v->timer);
    v->timer.data = v;
    v->open_handles = 2;
    c->up = &v->base;
    connect_worker(v);
    return c->up;
}

/* ---- the request --------------------------------------------------------------------------- */

static void on_write(uv_write_t *wr, int status)
{
    v1_upstream_t *v = wr->data;
    if (v->closing)
        return;
    if (status < 0) {
        /* The worker stopped reading (it may have answered early); its response decides. */
        fy_log(FY_LOG_DEBUG, "http", "writing the request to the worker failed: %s",
               uv_strerror(status));
        v->request_sent = true;   /* nothing of ours is pending any more */
        return;
    }
    if (v->base.conn == NULL) {
        /* detached while the body was going out: the worker sees a truncated request */
        return;
    }
    send_body_chunk(v);
}

/* Sends the next piece of a file-backed body, or shuts down the write side after the last. */
static void send_body_chunk(v1_upstream_t *v)
{
    fy_http_conn_t *c = v->base.conn;
    const uint8_t *block;
    size_t block_len;
    const fy_http_body_t *body;
    fy_http_conn_request_bytes(c, v->base.worker, &block, &block_len, &body);
    if (v->body_off >= body->len) {
        /* Nothing of ours is queued on the pipe any more (one write at a time), so the write
         * side is shut at once instead of through uv_shutdown's deferred request. */
        uv_os_fd_t fd;
        if (uv_fileno((uv_handle_t *)&v->pipe, &fd) == 0)
            shutdown(fd, SHUT_WR);
        v->request_sent = true;
        return;
    }
    ssize_t n = fy_http_body_read(body, v->body_off, v->chunk, sizeof v->chunk);
    if (n <= 0) {
        fy_log(FY_LOG_ERROR, "http", "cannot read the buffered request body: %s",
               strerror(n < 0 ? (int)-n : EIO));
        finish(v, FY_WORKER_OK);
        fy_http_conn_worker_failed(c, "the request body could not be read back");
        return;
    }
    v->body_off += (uint64_t)n;
    uv_buf_t buf = uv_buf_init(v->chunk, (unsigned)n);
    v->write_req.data = v;
    if (uv_write(&v->write_req, (uv_stream_t *)&v->pipe, &buf, 1, on_write) < 0)
        failed(v, "write to the worker failed");
}

/* ---- the response ------------------------------------------------------------------------ */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    v1_upstream_t *v = h->data;
    fy_http_conn_t *c = v->base.conn;
    if (c == NULL) {
        *buf = uv_buf_init(v->chunk, sizeof v->chunk);
        return;
    }
    if (!v->head_done) {
        fy_http_buf_reserve(&v->head, 16384);
        *buf = uv_buf_init(v->head.data + v->head.len, (unsigned)(v->head.cap - v->head.len));
        return;
    }
    fy_http_wbuf_t *w = fy_http_wbuf_get(c->srv, c);
    *buf = uv_buf_init(w->data, sizeof w->data);
}

/* Parses what has arrived of the worker's head; hands it over once complete. */
static void try_head(v1_upstream_t *v)
{
    fy_resphead_t head;
    int rc = fy_resphead_parse(v->head.data, v->head.len, &head);
    if (rc == -EAGAIN) {
        if (v->head.len >= FY_RESPHEAD_MAX)
            failed(v, "head larger than 128 KiB");
        return;
    }
    if (rc == -EMSGSIZE) {
        failed(v, "head larger than 128 KiB");
        return;
    }
    if (rc < 0) {
        failed(v, "malformed head");
        return;
    }
    fy_http_conn_t *c = v->base.conn;
    size_t head_len = head.head_len;
    rc = fy_http_conn_worker_head(c, &head);
    fy_resphead_dispose(&head);
    if (rc < 0) {
        finish(v, FY_WORKER_BROKEN);
        return;
    }
    v->head_done = true;
    if (v->head.len > head_len)
        fy_http_conn_worker_data(c, NULL, v->head.data + head_len, v->head.len - head_len);
    else
        fy_http_conn_worker_data(c, NULL, NULL, 0);
}

static void on_eof(v1_upstream_t *v, int err)
{
    fy_http_conn_t *c = v->base.conn;
    if (!v->head_done) {
        failed(v, err == UV_EOF ? "connection closed before the head was complete"
                                : uv_strerror(err));
        return;
    }
    if (err != UV_EOF) {
        finish(v, FY_WORKER_BROKEN);
        fy_http_conn_worker_end(c, false, uv_strerror(err));
        return;
    }
    finish(v, fy_http_conn_body_short(c) ? FY_WORKER_BROKEN : FY_WORKER_OK);
    fy_http_conn_worker_end(c, true, NULL);
}

static void on_drain_timeout(uv_timer_t *t)
{
    v1_upstream_t *v = t->data;
    fy_log(FY_LOG_ERROR, "http", "pid=%d: max request time passed while the worker finished a "
           "request whose client went away",
           v->base.worker ? (int)fy_worker_pid(v->base.worker) : 0);
    finish(v, FY_WORKER_TIMED_OUT);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    v1_upstream_t *v = s->data;
    fy_http_conn_t *c = v->base.conn;
    if (v->closing)
        return;
    if (c == NULL) {
        /* draining: the bytes are dropped; the worker's close ends it */
        if (nread < 0)
            finish(v, nread == UV_EOF ? FY_WORKER_OK : FY_WORKER_BROKEN);
        return;
    }
    bool is_wbuf = v->head_done && buf->base != NULL && buf->base != v->chunk;
    fy_http_wbuf_t *w = is_wbuf ? (fy_http_wbuf_t *)(buf->base - offsetof(fy_http_wbuf_t, data))
                                : NULL;
    if (nread <= 0) {
        if (w)
            fy_http_wbuf_put(c->srv, w);
        if (nread < 0)
            on_eof(v, (int)nread);
        return;
    }
    if (!v->head_done) {
        v->head.len += (size_t)nread;
        try_head(v);
        return;
    }
    fy_http_conn_worker_data(c, w, w->data, (size_t)nread);
}

void fy_http_v1_pause(fy_http_upstream_t *up, bool paused)
{
    v1_upstream_t *v = (v1_upstream_t *)up;
    v->paused = paused;
    if (!v->pipe_open || v->closing)
        return;
    if (paused && v->reading) {
        uv_read_stop((uv_stream_t *)&v->pipe);
        v->reading = false;
    } else if (!paused && !v->reading) {
        v->reading = true;
        uv_read_start((uv_stream_t *)&v->pipe, on_alloc, on_read);
    }
}

/* The client no longer wants the response (it went away, or its response is complete while
 * the worker still sends). Before the worker's head has come, the worker is still computing:
 * once every byte of the request is written its connection is read and discarded until the
 * worker closes it, and only then is the worker checked in (FY_WORKER_OK) - it does not get a
 * second request on top of one it is busy computing. Once the head has come, the worker is
 * streaming: its connection is closed and it is checked in at once, because its next write
 * then fails (EPIPE), which ends the request in every loader; an endless stream (server-sent
 * events) would otherwise hold it for ever. A request not yet written in full is cut (the worker
 * sees EOF inside its request and refuses it on its own) and the worker checked in at once. */
void fy_http_v1_detach(fy_http_upstream_t *up, fy_http_detach_t how)
{
    v1_upstream_t *v = (v1_upstream_t *)up;
    if (v->closing)
        return;
    if (how == FY_DETACH_TIMED_OUT) {
        finish(v, FY_WORKER_TIMED_OUT);
        return;
    }
    if (how == FY_DETACH_BROKEN) {
        finish(v, FY_WORKER_BROKEN);
        return;
    }
    if (v->base.draining)
        return;
    if (!v->pipe_open) {
        finish(v, FY_WORKER_NOT_STARTED);   /* still connecting: nothing was sent */
        return;
    }
    if (!v->request_sent || v->head_done) {
        finish(v, FY_WORKER_OK);
        return;
    }
    fy_http_server_t *srv = v->base.srv;
    v->base.conn = NULL;
    v->base.draining = true;
    fy_http_server_drain_add(srv, &v->base);
    unsigned max_ms = srv->opts.max_request_time_ms;
    if (max_ms > 0) {
        uint64_t used = uv_now(srv->loop) - v->base.checkout_ms;
        uv_timer_start(&v->timer, on_drain_timeout, used < max_ms ? max_ms - used : 1, 0);
    }
    v->paused = false;
    if (!v->reading) {
        v->reading = true;
        uv_read_start((uv_stream_t *)&v->pipe, on_alloc, on_read);
    }
}
