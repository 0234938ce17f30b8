/* The worker side of requests in session protocol v2 (docs/protocol.md §4): one persistent,
 * framed connection per worker (the session), opened at the worker's first request and kept as
 * long as the worker lives; each request on it is a stream. The session writes each stream's
 * REQ, BODY and EOB frames in turn (dispatch-ahead: a later stream's frames may follow before
 * the earlier one's END), reads HEAD, DATA and END for the oldest stream that has no END yet,
 * and checks the worker in at END. A worker that breaks the protocol, or whose session ends
 * during a request, is killed; the stream it was serving gets 502 or a cut connection, and the
 * streams dispatched ahead to it, which it cannot have started, are queued again.
 *
 * Lifetimes: a stream belongs to its session; the client side holds it as c->up until it gets
 * its end or detaches it. A session belongs to its worker (fy_worker_session); it is closed when
 * the worker exits (fy_http_session_worker_gone), when the worker closes it, or when it breaks.
 * Both are freed only from libuv close callbacks or after the last use in a callback. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "http/http_conn.h"
#include "ipc/sock.h"
#include "proto/frame.h"

/* The read buffer holds at least this much free space per read, and grows to hold the largest
 * frame (a 1 MiB DATA) at most once it is announced. */
#define READ_CHUNK 65536u
/* Request body bytes per BODY frame the core writes. */
#define BODY_PIECE FY_HTTP_IO_SIZE

typedef struct session session_t;

typedef struct stream {
    fy_http_upstream_t base;  /* first: the seam's view */
    session_t *s;
    struct stream *next;      /* in s->streams, in the order they were handed to the session */
    uint32_t id;              /* assigned when its REQ is written */
    bool req_sent;            /* its REQ is on the wire */
    bool written;             /* ... and its EOB */
    bool ended;               /* END arrived (or the session died) */
    bool head_seen;
    bool abort_wanted;        /* the client left: ABORT once written */
    bool abort_sent;
    uint64_t body_off;        /* request body bytes written in BODY frames */
} stream_t;

struct session {
    uv_pipe_t pipe;
    uv_timer_t timer;         /* connect retries; then the max request time of a detached
                               * stream the worker is still on */
    uv_timer_t kick;          /* parses buffered frames after a resume, outside the caller */
    int open_handles;
    fy_http_server_t *srv;
    fy_worker_t *worker;      /* NULL once the worker is gone */
    pid_t pid;
    char address[FY_ADDRESS_MAX];
    stream_t *streams;        /* oldest first: those with END removed */
    stream_t *last;
    uint32_t last_id;
    bool connected;
    bool closing;
    bool reading;
    bool paused;
    bool write_busy;          /* a write with a BODY piece is in flight: the next waits */
    bool frames_seen;         /* anything came from the worker on this session */
    bool more_buffered;       /* the frame being handled is not the last one read */
    int connect_tries;
    uint8_t *rbuf;
    size_t rlen, rcap;
};

typedef struct owned_write {
    uv_write_t req;
    session_t *s;
    bool body;                /* ends write_busy */
    size_t len;
    char data[];              /* the part of a write that did not go at once */
} owned_write_t;

static void pump(session_t *s);
static void kill_session(session_t *s, const char *why, bool unreached);
static void parse(session_t *s);
static void arm_deadline(session_t *s);

/* ---- lifetime ---------------------------------------------------------------------------- */

static void on_closed(uv_handle_t *h)
{
    session_t *s = h->data;
    if (--s->open_handles > 0)
        return;
    free(s->rbuf);
    free(s);
}

static void checkin(stream_t *st, fy_worker_outcome_t outcome)
{
    if (st->base.worker == NULL)
        return;
    fy_pool_checkin(st->base.srv->pool, st->base.worker, outcome);
    st->base.worker = NULL;
}

static void undrain(stream_t *st)
{
    if (st->base.draining) {
        st->base.draining = false;
        fy_http_server_drain_remove(st->base.srv, &st->base);
    }
}

static void unlink_stream(session_t *s, stream_t *st)
{
    stream_t **p = &s->streams;
    stream_t *prev = NULL;
    while (*p && *p != st) {
        prev = *p;
        p = &(*p)->next;
    }
    if (*p == NULL)
        return;
    *p = st->next;
    if (s->last == st)
        s->last = prev;
    st->next = NULL;
}

/* Closes the session's handles; the worker no longer has it. Streams must be gone already. */
static void close_session(session_t *s)
{
    if (s->closing)
        return;
    s->closing = true;
    if (s->worker != NULL && fy_worker_session(s->worker) == s)
        fy_worker_set_session(s->worker, NULL);
    s->worker = NULL;
    uv_timer_stop(&s->timer);
    uv_timer_stop(&s->kick);
    uv_close((uv_handle_t *)&s->pipe, on_closed);
    uv_close((uv_handle_t *)&s->timer, on_closed);
    uv_close((uv_handle_t *)&s->kick, on_closed);
}

/* The oldest stream whose REQ is on the wire and whose END has not come: the one the worker
 * serves (or will serve next). */
static stream_t *active_stream(const session_t *s)
{
    stream_t *st = s->streams;
    while (st != NULL && st->ended)   /* ended, but its EOB still going out */
        st = st->next;
    return st != NULL && st->req_sent ? st : NULL;
}

/* ---- writing ----------------------------------------------------------------------------- */

static void on_write(uv_write_t *wr, int status)
{
    owned_write_t *ow = wr->data;
    session_t *s = ow->s;
    bool body = ow->body;
    free(ow);
    if (body)
        s->write_busy = false;
    if (s->closing)
        return;
    if (status < 0) {
        char why[128];
        snprintf(why, sizeof why, "write to the worker failed: %s", uv_strerror(status));
        kill_session(s, why, !s->frames_seen && fy_http_unreachable_errno(-status));
        return;
    }
    if (body)
        pump(s);
}

/* Writes whole frames in <bufs>: at once where the socket takes them, the rest copied and
 * queued, so that what the caller points at may change as soon as this returns, and frames
 * never interleave. <body>: the write carries a BODY piece (the next waits for it). Returns
 * false when the session was killed. */
static bool write_frames(session_t *s, uv_buf_t *bufs, unsigned n, bool body)
{
    int rc = uv_try_write((uv_stream_t *)&s->pipe, bufs, n);
    if (rc < 0 && rc != UV_EAGAIN) {
        char why[128];
        snprintf(why, sizeof why, "write to the worker failed: %s", uv_strerror(rc));
        kill_session(s, why, !s->frames_seen && fy_http_unreachable_errno(-rc));
        return false;
    }
    size_t done = rc > 0 ? (size_t)rc : 0;
    size_t left = 0;
    for (unsigned i = 0; i < n; i++)
        left += bufs[i].len;
    left -= done;
    if (left == 0)
        return true;
    owned_write_t *ow = fy_xmalloc(sizeof *ow + left);
    ow->s = s;
    ow->body = body;
    ow->len = left;
    size_t k = 0;
    for (unsigned i = 0; i < n; i++) {
        size_t skip = done < bufs[i].len ? done : bufs[i].len;
        done -= skip;
        memcpy(ow->data + k, bufs[i].base + skip, bufs[i].len - skip);
        k += bufs[i].len - skip;
    }
    ow->req.data = ow;
    uv_buf_t buf = uv_buf_init(ow->data, (unsigned)left);
    if (body)
        s->write_busy = true;
    if (uv_write(&ow->req, (uv_stream_t *)&s->pipe, &buf, 1, on_write) < 0) {
        free(ow);
        s->write_busy = false;
        kill_session(s, "write to the worker failed", false);
        return false;
    }
    return true;
}

static bool write_abort(session_t *s, stream_t *st)
{
    uint8_t hdr[FY_FRAME_HEADER_LEN];
    fy_frame_encode_header(hdr, FY_FRAME_ABORT, 0, st->id, 0);
    st->abort_sent = true;
    uv_buf_t buf = uv_buf_init((char *)hdr, sizeof hdr);
    return write_frames(s, &buf, 1, false);
}

/* A stream whose END came and whose frames are all written is over. */
static void maybe_free(stream_t *st)
{
    if (st->ended && st->written)
        free(st);
}

/* Writes the next frames of the first stream not yet written: its REQ (once), a BODY piece,
 * and EOB after the last piece; a stream whose client left, or whose END already came, gets
 * its EOB at once. Runs until a write must wait or nothing is left to write. */
static void pump(session_t *s)
{
    while (s->connected && !s->closing && !s->write_busy) {
        stream_t *st = s->streams;
        while (st != NULL && st->written)
            st = st->next;
        if (st == NULL)
            return;
        fy_http_conn_t *c = st->base.conn;
        uint8_t hdr_req[FY_FRAME_HEADER_LEN], hdr_body[FY_FRAME_HEADER_LEN];
        uint8_t hdr_eob[FY_FRAME_HEADER_LEN], hdr_abort[FY_FRAME_HEADER_LEN];
        char piece_buf[BODY_PIECE];
        uv_buf_t bufs[6];
        unsigned n = 0;
        const uint8_t *block = NULL;
        size_t block_len = 0;
        const fy_http_body_t *body = NULL;
        if (c != NULL)
            fy_http_conn_request_bytes(c, st->base.worker, &block, &block_len, &body);
        if (!st->req_sent) {
            FY_ASSERT(c != NULL && block_len >= 4);   /* unsent streams leave when detached */
            st->id = s->last_id == UINT32_MAX ? 1 : s->last_id + 1;
            s->last_id = st->id;
            fy_frame_encode_header(hdr_req, FY_FRAME_REQ, 0, st->id, (uint32_t)(block_len - 4));
            bufs[n++] = uv_buf_init((char *)hdr_req, sizeof hdr_req);
            bufs[n++] = uv_buf_init((char *)block + 4, (unsigned)(block_len - 4));
            st->req_sent = true;
        }
        bool body_piece = false;
        if (c != NULL && !st->ended && st->body_off < body->len) {
            ssize_t got;
            const char *data;
            if (fy_http_body_in_memory(body)) {
                uint64_t left = body->len - st->body_off;
                got = (ssize_t)(left < BODY_PIECE ? left : BODY_PIECE);
                data = body->mem + st->body_off;
            } else {
                got = fy_http_body_read(body, st->body_off, piece_buf, sizeof piece_buf);
                data = piece_buf;
            }
            if (got <= 0) {
                fy_log(FY_LOG_ERROR, "session", "pid=%d: cannot read the buffered request body "
                       "back: %s; the request ends short", (int)s->pid,
                       strerror(got < 0 ? (int)-got : EIO));
                st->body_off = body->len;   /* EOB now: the worker sees a short body */
            } else {
                fy_frame_encode_header(hdr_body, FY_FRAME_BODY, 0, st->id, (uint32_t)got);
                bufs[n++] = uv_buf_init((char *)hdr_body, sizeof hdr_body);
                bufs[n++] = uv_buf_init((char *)data, (unsigned)got);
                st->body_off += (uint64_t)got;
                body_piece = true;
            }
        }
        if (c == NULL || st->ended || st->body_off >= body->len) {
            fy_frame_encode_header(hdr_eob, FY_FRAME_EOB, 0, st->id, 0);
            bufs[n++] = uv_buf_init((char *)hdr_eob, sizeof hdr_eob);
            st->written = true;
            if (st->abort_wanted && !st->abort_sent && !st->ended) {
                fy_frame_encode_header(hdr_abort, FY_FRAME_ABORT, 0, st->id, 0);
                bufs[n++] = uv_buf_init((char *)hdr_abort, sizeof hdr_abort);
                st->abort_sent = true;
            }
        }
        bool ended = st->ended;
        if (!write_frames(s, bufs, n, body_piece && !st->written))
            return;
        if (ended && st->written) {
            unlink_stream(s, st);   /* END came while its body was still going out */
            maybe_free(st);
        }
    }
}

/* ---- killing and ending ------------------------------------------------------------------- */

/* The session cannot go on (the worker broke the protocol, died, or cannot be reached). The
 * stream the worker serves fails (502 before its head, a cut connection after; with
 * <unreached>, nothing reached the worker and it goes to another worker); the streams behind
 * it, which the worker cannot have started, are queued again, in their order. */
static void kill_session(session_t *s, const char *why, bool unreached)
{
    if (s->closing)
        return;
    stream_t *list = s->streams;
    s->streams = s->last = NULL;
    close_session(s);
    while (list != NULL && list->ended) {   /* over already: only their EOB was pending */
        stream_t *next = list->next;
        free(list);
        list = next;
    }
    stream_t *first = list;
    if (first != NULL) {
        fy_http_conn_t *c = first->base.conn;
        first->base.conn = NULL;
        undrain(first);
        checkin(first, FY_WORKER_BROKEN);
        first->ended = first->written = true;
        if (c != NULL) {
            if (unreached)
                fy_http_conn_worker_unreachable(c, why);
            else
                fy_http_conn_worker_failed(c, why);
        }
    }
    /* the rest: put back last first, so that the pool's queue keeps their order */
    size_t rest = 0;
    for (stream_t *st = first ? first->next : NULL; st; st = st->next)
        rest++;
    stream_t **behind = rest ? fy_xcalloc(rest, sizeof *behind) : NULL;
    size_t k = 0;
    for (stream_t *st = first ? first->next : NULL; st; st = st->next)
        behind[k++] = st;
    free(first);
    for (size_t i = rest; i-- > 0;) {
        stream_t *st = behind[i];
        fy_http_conn_t *c = st->base.conn;
        st->base.conn = NULL;
        undrain(st);
        checkin(st, FY_WORKER_NOT_STARTED);
        if (c != NULL)
            fy_http_conn_worker_requeue(c);
        free(st);
    }
    free(behind);
}

/* The worker sent something the protocol does not allow: it is killed and replaced. */
static void violation(session_t *s, const char *what)
{
    char why[256];
    snprintf(why, sizeof why, "protocol violation: %s", what);
    fy_log(FY_LOG_ERROR, "session", "pid=%d address=%s: %s; killing the worker", (int)s->pid,
           s->address, why);
    kill_session(s, why, false);
}

/* END(id) for the active stream <st>. */
static void on_end(session_t *s, stream_t *st, uint8_t flags)
{
    bool closing = (flags & FY_FRAME_END_CLOSING) != 0;
    fy_http_conn_t *c = st->base.conn;
    st->base.conn = NULL;
    st->ended = true;
    undrain(st);
    if (st->written) {
        unlink_stream(s, st);
    } else {
        /* the worker answered before the whole body went out: pump sends EOB next */
    }
    checkin(st, closing ? FY_WORKER_EXITING : FY_WORKER_OK);
    if (c != NULL) {
        bool failed = (flags & FY_FRAME_END_APP_FAILED) != 0;
        fy_http_conn_worker_end(c, !failed, failed ? "the app failed after its head (END with "
                                                     "APP_FAILED)" : NULL);
    }
    maybe_free(st);
    if (s->closing)
        return;
    if (closing) {
        /* The worker exits after this request; what was dispatched ahead to it goes back. */
        fy_log(FY_LOG_INFO, "session", "pid=%d: the worker said it exits after this request",
               (int)s->pid);
        kill_session(s, "the worker exits", false);
        return;
    }
    arm_deadline(s);
    pump(s);
}

static void on_frame(session_t *s, const fy_frame_t *f)
{
    char what[160];
    stream_t *st = active_stream(s);
    if (st == NULL) {
        snprintf(what, sizeof what, "%s frame (id %u) while no request is open",
                 fy_frame_type_name(f->type), f->id);
        violation(s, what);
        return;
    }
    if (f->id != st->id) {
        snprintf(what, sizeof what, "%s frame for id %u while request %u is open",
                 fy_frame_type_name(f->type), f->id, st->id);
        violation(s, what);
        return;
    }
    fy_http_conn_t *c = st->base.conn;
    switch (f->type) {
    case FY_FRAME_HEAD: {
        if (st->head_seen) {
            snprintf(what, sizeof what, "a second HEAD for id %u", f->id);
            violation(s, what);
            return;
        }
        st->head_seen = true;
        if (c == NULL)
            return;
        fy_resphead_t head;
        int rc = fy_resphead_parse((const char *)f->payload, f->len, &head);
        if (rc != 1 || head.head_len != f->len) {
            if (rc == 1)
                fy_resphead_dispose(&head);
            fy_log(FY_LOG_ERROR, "session", "pid=%d: malformed response head (%u bytes)",
                   (int)s->pid, f->len);
            kill_session(s, "malformed head", false);
            return;
        }
        rc = fy_http_conn_worker_head(c, &head);
        fy_resphead_dispose(&head);
        if (rc < 0) {
            st->base.conn = NULL;   /* the client got its 502 */
            kill_session(s, "head cannot be forwarded", false);
            return;
        }
        /* A head goes out with the first DATA that came in the same read, else alone now. */
        if (!s->more_buffered)
            fy_http_conn_worker_data(c, NULL, NULL, 0);
        return;
    }
    case FY_FRAME_DATA:
        if (!st->head_seen) {
            snprintf(what, sizeof what, "DATA before HEAD for id %u", f->id);
            violation(s, what);
            return;
        }
        if (c != NULL)
            fy_http_conn_worker_data(c, NULL, (const char *)f->payload, f->len);
        return;
    case FY_FRAME_END:
        on_end(s, st, f->flags);
        return;
    default:
        snprintf(what, sizeof what, "frame type 0x%02x", f->type);
        violation(s, what);
        return;
    }
}

/* ---- reading ----------------------------------------------------------------------------- */

/* Handles the complete frames in the read buffer, until one is incomplete, the session is
 * paused, or it closed. */
static void parse(session_t *s)
{
    size_t off = 0;
    while (!s->paused && !s->closing && off < s->rlen) {
        fy_frame_t f;
        size_t used;
        int rc = fy_frame_decode(s->rbuf + off, s->rlen - off, FY_FRAME_TO_CORE, &f, &used);
        if (rc == -EAGAIN)
            break;
        if (rc < 0) {
            const uint8_t *h = s->rbuf + off;
            char what[160];
            snprintf(what, sizeof what, "%s in a frame header (type 0x%02x flags 0x%02x "
                     "reserved 0x%02x%02x length %u)",
                     rc == -EMSGSIZE ? "length over the type's limit" : "bad type, flags or "
                     "reserved field", h[4], h[5], h[6], h[7],
                     (unsigned)h[0] << 24 | (unsigned)h[1] << 16 | (unsigned)h[2] << 8 | h[3]);
            violation(s, what);
            return;
        }
        s->frames_seen = true;
        off += used;
        s->more_buffered = off < s->rlen;
        on_frame(s, &f);
    }
    if (s->closing)
        return;
    if (off > 0) {
        memmove(s->rbuf, s->rbuf + off, s->rlen - off);
        s->rlen -= off;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    session_t *s = h->data;
    size_t want = s->rlen + READ_CHUNK;
    if (s->rlen >= FY_FRAME_HEADER_LEN) {
        /* room for the whole announced frame (its length was checked when it was decoded) */
        const uint8_t *p = s->rbuf;
        size_t frame = FY_FRAME_HEADER_LEN +
                       ((size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3]);
        if (frame <= FY_FRAME_HEADER_LEN + FY_FRAME_DATA_MAX && frame > want)
            want = frame;
    }
    if (want > s->rcap) {
        s->rbuf = fy_xrealloc(s->rbuf, want);
        s->rcap = want;
    }
    *buf = uv_buf_init((char *)s->rbuf + s->rlen, (unsigned)(s->rcap - s->rlen));
}

static void on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    session_t *s = h->data;
    if (s->closing)
        return;
    if (nread > 0) {
        s->rlen += (size_t)nread;
        parse(s);
        return;
    }
    if (nread == 0)
        return;
    if (s->rlen > 0) {
        violation(s, "the session ended inside a frame");
        return;
    }
    if (active_stream(s) != NULL) {
        char why[128];
        snprintf(why, sizeof why, "the worker's session ended during a request: %s",
                 nread == UV_EOF ? "closed" : uv_strerror((int)nread));
        fy_log(FY_LOG_ERROR, "session", "pid=%d: %s", (int)s->pid, why);
        kill_session(s, why, false);
        return;
    }
    /* between requests: the worker stopped (SIGUSR1, idle time, shutdown) */
    kill_session(s, "the worker closed its session", false);
}

static void set_reading(session_t *s, bool on)
{
    if (!s->connected || s->closing || s->reading == on)
        return;
    s->reading = on;
    if (on)
        uv_read_start((uv_stream_t *)&s->pipe, on_alloc, on_read);
    else
        uv_read_stop((uv_stream_t *)&s->pipe);
}

static void on_kick(uv_timer_t *t)
{
    session_t *s = t->data;
    parse(s);
    if (!s->closing && !s->paused)
        set_reading(s, true);
}

/* ---- deadlines --------------------------------------------------------------------------- */

static void on_deadline(uv_timer_t *t)
{
    session_t *s = t->data;
    stream_t *st = active_stream(s);
    if (st == NULL || st->base.conn != NULL || st->base.worker == NULL)
        return;
    fy_log(FY_LOG_ERROR, "session", "pid=%d: max request time passed while the worker finished a "
           "request whose client went away", (int)s->pid);
    checkin(st, FY_WORKER_TIMED_OUT);
}

/* A detached stream the worker is still on has the rest of the max request time to end. */
static void arm_deadline(session_t *s)
{
    stream_t *st = active_stream(s);
    unsigned max_ms = s->srv->opts.max_request_time_ms;
    if (s->closing || st == NULL || st->base.conn != NULL || st->base.worker == NULL ||
        max_ms == 0) {
        if (s->connected && !s->closing)
            uv_timer_stop(&s->timer);
        return;
    }
    uint64_t used = uv_now(s->srv->loop) - st->base.checkout_ms;
    uv_timer_start(&s->timer, on_deadline, used < max_ms ? max_ms - used : 1, 0);
}

/* ---- connecting -------------------------------------------------------------------------- */

static void connect_session(session_t *s);
static void on_connect_retry(uv_timer_t *t) { connect_session(t->data); }

static void connect_session(session_t *s)
{
    int fd = fy_http_worker_connect(s->address);
    if (fd == -EAGAIN && s->connect_tries++ < FY_HTTP_CONNECT_RETRIES) {
        uv_timer_start(&s->timer, on_connect_retry, FY_HTTP_CONNECT_RETRY_MS, 0);
        return;
    }
    if (fd < 0) {
        char why[160];
        snprintf(why, sizeof why, "connect to %s: %s", s->address, strerror(-fd));
        kill_session(s, why, fy_http_unreachable_errno(-fd));
        return;
    }
    if (uv_pipe_open(&s->pipe, fd) < 0) {
        close(fd);
        kill_session(s, "uv_pipe_open failed", false);
        return;
    }
    s->connected = true;
    const char *secret = s->worker ? fy_worker_secret(s->worker) : "";
    size_t secret_len = strlen(secret);
    uint8_t hdr[FY_FRAME_HEADER_LEN];
    fy_frame_encode_header(hdr, FY_FRAME_HELLO, 0, 0, (uint32_t)secret_len);
    uv_buf_t bufs[2] = {uv_buf_init((char *)hdr, sizeof hdr),
                        uv_buf_init((char *)secret, (unsigned)secret_len)};
    if (!write_frames(s, bufs, 2, false))
        return;
    set_reading(s, true);
    pump(s);
}

static session_t *new_session(fy_http_server_t *srv, fy_worker_t *w)
{
    session_t *s = fy_xcalloc(1, sizeof *s);
    s->srv = srv;
    s->worker = w;
    s->pid = fy_worker_pid(w);
    snprintf(s->address, sizeof s->address, "%s", fy_worker_address(w));
    uv_pipe_init(srv->loop, &s->pipe, 0);
    s->pipe.data = s;
    uv_timer_init(srv->loop, &s->timer);
    s->timer.data = s;
    uv_timer_init(srv->loop, &s->kick);
    s->kick.data = s;
    s->open_handles = 3;
    fy_worker_set_session(w, s);
    return s;
}

/* ---- the seam ---------------------------------------------------------------------------- */

fy_http_upstream_t *fy_http_v2_start(fy_http_conn_t *c, fy_worker_t *worker)
{
    session_t *s = fy_worker_session(worker);
    bool fresh = s == NULL;
    if (fresh)
        s = new_session(c->srv, worker);
    stream_t *st = fy_xcalloc(1, sizeof *st);
    st->base.protocol = 2;
    st->base.conn = c;
    st->base.srv = c->srv;
    st->base.worker = worker;
    st->base.checkout_ms = uv_now(c->srv->loop);
    st->s = s;
    if (s->last)
        s->last->next = st;
    else
        s->streams = st;
    s->last = st;
    c->up = &st->base;
    if (fresh)
        connect_session(s);
    else
        pump(s);
    return c->up;
}

void fy_http_v2_pause(fy_http_upstream_t *up, bool paused)
{
    stream_t *st = (stream_t *)up;
    session_t *s = st->s;
    if (s->closing || active_stream(s) != st)
        return;
    s->paused = paused;
    if (paused) {
        set_reading(s, false);
    } else {
        /* frames already read are handled from the loop, not inside the client side's call */
        uv_timer_start(&s->kick, on_kick, 0, 0);
    }
}

void fy_http_v2_detach(fy_http_upstream_t *up, fy_http_detach_t how)
{
    stream_t *st = (stream_t *)up;
    session_t *s = st->s;
    fy_http_conn_t *c = st->base.conn;
    st->base.conn = NULL;
    if (c == NULL && how == FY_DETACH_CLIENT_GONE)
        return;
    if (s->paused && active_stream(s) == st) {
        s->paused = false;
        if (!s->closing)
            uv_timer_start(&s->kick, on_kick, 0, 0);
    }
    if (!st->req_sent) {
        /* never reached the worker: it leaves the session unseen */
        unlink_stream(s, st);
        checkin(st, FY_WORKER_NOT_STARTED);
        free(st);
        return;
    }
    if (how == FY_DETACH_TIMED_OUT) {
        checkin(st, FY_WORKER_TIMED_OUT);   /* killed by the pool; the session then ends */
        return;
    }
    if (how == FY_DETACH_BROKEN) {
        undrain(st);
        checkin(st, FY_WORKER_BROKEN);
        return;
    }
    /* The client left: ABORT, and the worker is checked in at its END. */
    st->abort_wanted = true;
    if (!st->base.draining && st->base.worker != NULL) {
        st->base.draining = true;
        fy_http_server_drain_add(s->srv, &st->base);
    }
    if (st->written && !st->abort_sent && !s->closing)
        write_abort(s, st);
    arm_deadline(s);
}

void fy_http_session_worker_gone(fy_worker_t *w, void *session, void *data)
{
    (void)w;
    (void)data;
    session_t *s = session;
    s->worker = NULL;
    kill_session(s, "the worker exited", false);
}
