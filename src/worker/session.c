/* The worker's end of a connection from the core: v1 (docs/protocol.md §2, §3) and session
 * protocol v2 (docs/protocol.md §4) behind one set of functions. See session.h.
 *
 * v2 input. Everything the core sends lands in one buffer, read with recv(MSG_DONTWAIT) as far as
 * room allows, so a small request (REQ + EOB) and often the next ones arrive in one syscall and
 * poll() runs only when nothing is there. Frames are taken strictly in order; a BODY frame's
 * payload is handed to the app from the buffer piece by piece. The frames of a later request
 * stay in the buffer until it is started (§4.3 "Dispatch-ahead"), but they are looked at for an
 * ABORT of the current request, which may come after them. */
#include "worker/session.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/sys.h"
#include "ipc/sock.h"
#include "proto/frame.h"
#include "proto/httpdef.h"
#include "worker/worker_internal.h"

/* Input: one whole frame (the largest is a BODY of 1 MiB) plus this much read ahead. */
#define IN_INITIAL_CAP (64u * 1024)
#define READ_AHEAD_MAX (1024u * 1024)
#define IN_MAX_CAP (FY_FRAME_HEADER_LEN + FY_FRAME_DATA_MAX + READ_AHEAD_MAX)
/* Output: the first allocation of the queue (a HEAD, an END, a 400 answer). */
#define OUT_INITIAL_CAP (4u * 1024)
/* The longest v1 spends discarding a body the app did not read. */
#define V1_DRAIN_TIMEOUT_MS 2000
/* iovecs per sendmsg when a large write is split into frames. */
#define IOV_BATCH 64

static const char password_var[] = "FERRY_CONNECT_PASSWORD";

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static bool stop_requested(const fy_worker_session_t *s)
{
    return s->cfg.stop != NULL && s->cfg.stop->flag != NULL && *s->cfg.stop->flag;
}

/* Logs one [warn] line "pid=N: <prefix>: <what><suffix>", marks the session failed with <rc>
 * and returns it: the shared body of violation() and refuse_session(). */
__attribute__((format(printf, 5, 0))) static int fail_session(fy_worker_session_t *s, int rc,
                                                          const char *prefix, const char *suffix,
                                                          const char *fmt, va_list ap)
{
    char what[256];
    vsnprintf(what, sizeof what, fmt, ap);
    fy_log(FY_LOG_WARN, "worker", "pid=%d: %s: %s%s", (int)getpid(), prefix, what, suffix);
    s->error = rc;
    return rc;
}

/* Logs what the core did wrong, marks the connection for closing and returns <rc>. */
__attribute__((format(printf, 3, 4))) static int violation(fy_worker_session_t *s, int rc,
                                                           const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rc = fail_session(s, rc, "session protocol violation", "; closing the connection", fmt, ap);
    va_end(ap);
    return rc;
}

/* Logs a v2 connection refused before its first request (docs/protocol.md §4.1). */
__attribute__((format(printf, 3, 4))) static int refuse_session(fy_worker_session_t *s, int rc,
                                                                const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rc = fail_session(s, rc, "refused a session", "", fmt, ap);
    va_end(ap);
    return rc;
}

/* Logs a v1 connection refused before its request reached the app (docs/protocol.md §2). */
static int refuse_v1(fy_worker_session_t *s, int rc)
{
    const char *why;
    switch (rc) {
    case -EMSGSIZE:
        why = "request block over 128 KiB";
        break;
    case -EPROTO:
        why = "malformed request block";
        break;
    case -EACCES:
        why = "wrong or missing connect password";
        break;
    case -ETIMEDOUT:
        why = "request block did not arrive in time";
        break;
    case -ECONNRESET:
        why = "connection ended inside the request block";
        break;
    default:
        why = "cannot read the request block";
        break;
    }
    fy_log(FY_LOG_WARN, "worker", "pid=%d: refused a connection: %s", (int)getpid(), why);
    s->error = rc;
    return rc;
}

/* ---- input ---------------------------------------------------------------------------------- */

/* Makes room for more input at the end of the buffer: forgets consumed bytes, moves the rest to
 * the front when the tail is short, grows up to IN_MAX_CAP. Returns false when full at the cap. */
static bool make_room(fy_worker_session_t *s)
{
    if (s->in_off == s->in_len) {
        s->in_off = s->in_len = s->scan_off = 0;
    } else if (s->in_off > 0 && s->in_cap - s->in_len < s->in_cap / 4) {
        memmove(s->in, s->in + s->in_off, s->in_len - s->in_off);
        s->in_len -= s->in_off;
        s->scan_off = s->scan_off > s->in_off ? s->scan_off - s->in_off : 0;
        s->in_off = 0;
    }
    if (s->in_len < s->in_cap)
        return true;
    if (s->in_cap >= IN_MAX_CAP)
        return false;
    size_t cap = s->in_cap * 2;
    if (cap > IN_MAX_CAP)
        cap = IN_MAX_CAP;
    s->in = fy_xrealloc(s->in, cap);
    s->in_cap = cap;
    return true;
}

/* One recv of what the socket holds, without blocking. Returns the count (> 0), 0 at EOF,
 * -EAGAIN when nothing is there, -ENOBUFS when the buffer is full at its cap, or -errno. */
static ssize_t recv_some(fy_worker_session_t *s)
{
    if (s->eof)
        return 0;
    if (!make_room(s))
        return -ENOBUFS;
    for (;;) {
        ssize_t n = recv(s->fd, s->in + s->in_len, s->in_cap - s->in_len, MSG_DONTWAIT);
        if (n > 0) {
            s->in_len += (size_t)n;
            return n;
        }
        if (n == 0) {
            s->eof = true;
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return -EAGAIN;
        return -errno;
    }
}

static int send_iov(fy_worker_session_t *s, struct iovec *iov, int count);

/* Sends what is queued. Returns 0 or -EPIPE (the connection is then broken). */
static int flush_out(fy_worker_session_t *s)
{
    if (s->out_len == 0)
        return 0;
    struct iovec iov = {.iov_base = s->out, .iov_len = s->out_len};
    s->out_len = 0;
    return send_iov(s, &iov, 1);
}

/* Sleeps until the socket is readable or <deadline_ms> (-1: none) passes; with <idle>, also
 * until a soft stop is asked for or the control channel has something. Sends queued output
 * first: the worker never sleeps on bytes the core waits for. Returns 0, -ETIMEDOUT, -ECANCELED
 * (soft stop), -EINPROGRESS (the control channel is readable), or -errno. */
static int wait_readable(fy_worker_session_t *s, int64_t deadline_ms, bool idle)
{
    int rc = flush_out(s);
    if (rc != 0)
        return rc;
    bool wake = idle && s->cfg.stop != NULL && s->cfg.stop->wake_fd >= 0;
    for (;;) {
        int control = idle && s->cfg.stop != NULL && s->cfg.stop->control_fd != NULL
                          ? *s->cfg.stop->control_fd
                          : -1;
        if (idle && stop_requested(s))
            return -ECANCELED;
        int timeout = -1;
        if (deadline_ms >= 0) {
            int64_t left = deadline_ms - fy_monotonic_ms();
            if (left <= 0)
                return -ETIMEDOUT;
            timeout = left > INT_MAX ? INT_MAX : (int)left;
        }
        struct pollfd pfds[3] = {
            {.fd = s->fd, .events = POLLIN},
            {.fd = wake ? s->cfg.stop->wake_fd : -1, .events = POLLIN},
            {.fd = control, .events = POLLIN},
        };
        if (poll(pfds, 3, timeout) == -1) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (pfds[0].revents != 0)
            return 0;
        if (pfds[2].revents != 0)
            return -EINPROGRESS;
        if (wake && pfds[1].revents != 0 && !stop_requested(s)) {
            char junk[16];
            ssize_t ignored = read(s->cfg.stop->wake_fd, junk, sizeof junk);
            (void)ignored;
        }
    }
}

/* Reads until <need> unconsumed bytes are buffered, before s->deadline_ms. Returns 0,
 * -ECONNRESET at EOF first, -ETIMEDOUT, or -errno. */
static int fill_to(fy_worker_session_t *s, size_t need)
{
    while (s->in_len - s->in_off < need) {
        ssize_t n = recv_some(s);
        if (n > 0)
            continue;
        if (n == 0)
            return -ECONNRESET;
        FY_ASSERT(n != -ENOBUFS); /* <need> is at most one block, far below the cap */
        if (n != -EAGAIN)
            return (int)n;
        int rc = wait_readable(s, s->deadline_ms, false);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- v2 frames ------------------------------------------------------------------------------ */

enum wait_kind {
    WAIT_HELLO, /* until s->deadline_ms */
    WAIT_IDLE,  /* between requests: for ever until a frame begins, then header_timeout_ms */
    WAIT_BODY,  /* inside a request: body_timeout_ms for each wait */
};

/* Describes the frame header at <p> (12 bytes present) that fy_frame_decode refused with <rc>. */
static int refused_frame(fy_worker_session_t *s, const uint8_t *p, int rc)
{
    if (rc == -EMSGSIZE)
        return violation(s, -EMSGSIZE, "a %s frame of %" PRIu32 " bytes, over its limit",
                         fy_frame_type_name(p[4]), be32(p));
    return violation(s, -EPROTO,
                     "a frame the decoder refuses (type 0x%02x %s, flags 0x%02x, reserved "
                     "0x%02x%02x, id %" PRIu32 ")",
                     p[4], fy_frame_type_name(p[4]), p[5], p[6], p[7], be32(p + 8));
}

/* Waits for the whole next frame (the current BODY payload must be used up). Returns 1 with <f>
 * (its payload borrows the buffer until the next read) and its size on the wire in *size, to be
 * consumed by the caller; 0 at EOF with no byte of a frame buffered; -EPROTO or -EMSGSIZE for
 * a refused or truncated frame (logged); -ETIMEDOUT or -ECANCELED (not logged); or -errno. */
static int peek_frame(fy_worker_session_t *s, fy_frame_t *f, size_t *size, enum wait_kind kind)
{
    FY_ASSERT(s->body_avail == 0);
    int64_t deadline = -1;
    if (kind == WAIT_HELLO)
        deadline = s->deadline_ms;
    else if (kind == WAIT_BODY)
        deadline = fy_monotonic_ms() + s->cfg.body_timeout_ms;
    for (;;) {
        size_t have = s->in_len - s->in_off;
        int rc = fy_frame_decode(s->in + s->in_off, have, FY_FRAME_TO_WORKER, f, size);
        if (rc == 1)
            return 1;
        if (rc != -EAGAIN)
            return refused_frame(s, s->in + s->in_off, rc);
        if (kind == WAIT_IDLE && have > 0 && deadline < 0)
            deadline = fy_monotonic_ms() + s->cfg.header_timeout_ms;
        ssize_t n = recv_some(s);
        if (n > 0)
            continue;
        if (n == 0) {
            if (have == 0)
                return 0;
            return violation(s, -EPROTO, "the connection ended inside a frame (%zu bytes of it)",
                             have);
        }
        /* Any frame the decoder lets through fits the buffer once it is compacted. */
        FY_ASSERT(n != -ENOBUFS);
        if (n != -EAGAIN) {
            s->error = (int)n;
            return (int)n;
        }
        rc = wait_readable(s, deadline, kind == WAIT_IDLE);
        if (rc != 0)
            return rc;
    }
}

static uint32_t next_id(uint32_t id)
{
    return id == UINT32_MAX ? 1 : id + 1;
}

/* Whether <id> names a request already started (and, unless it is s->id, ended): an ABORT of it
 * may still come, since the core sends ABORT without waiting for END (docs/protocol.md §4.3). */
static bool id_started(const fy_worker_session_t *s, uint32_t id)
{
    return s->id != 0 && id != 0 && (uint32_t)(s->id - id) < 0x80000000u;
}

static void mark_aborted(fy_worker_session_t *s)
{
    if (s->aborted)
        return;
    s->aborted = true;
    /* Only this request's HEAD and DATA can be queued: nothing more but END goes out for it. */
    s->out_len = 0;
    fy_log(FY_LOG_INFO, "worker", "pid=%d id=%" PRIu32 " path=%s: ABORT: the client went away",
           (int)getpid(), s->id, s->path);
}

/* Looks at the complete frames buffered past the consume point for an ABORT of the current
 * request, without taking any. A frame the decoder refuses stops the scan; it is reported when
 * its turn comes. */
static void scan_for_abort(fy_worker_session_t *s)
{
    if (s->version != 2 || !s->in_request || s->aborted)
        return;
    size_t pos = s->in_off + s->body_avail;
    if (s->scan_off > pos)
        pos = s->scan_off;
    while (pos < s->in_len) {
        fy_frame_t f;
        size_t size;
        if (fy_frame_decode(s->in + pos, s->in_len - pos, FY_FRAME_TO_WORKER, &f, &size) != 1)
            break;
        if (f.type == FY_FRAME_ABORT && f.id == s->id) {
            mark_aborted(s);
            break;
        }
        pos += size;
    }
    s->scan_off = pos;
}

/* Takes what the core has sent without blocking, then scans it for an ABORT. At most once per
 * cfg.abort_probe_ms of the request (the first time that long after it started): a short
 * response is over before a client's ABORT could matter, and the END answers a late one anyway
 * (docs/protocol.md §4.3), so a hello request makes no system call for it. */
static void probe_abort(fy_worker_session_t *s)
{
    if (s->version != 2 || !s->in_request || s->aborted || s->error != 0)
        return;
    int64_t now = s->cfg.abort_probe_ms > 0 ? fy_monotonic_ms() : 0;
    if (s->cfg.abort_probe_ms <= 0 || now - s->probed_ms >= s->cfg.abort_probe_ms) {
        s->probed_ms = now;
        (void)recv_some(s); /* EOF or an error shows at the next read or write */
    }
    scan_for_abort(s);
}

/* Takes the next frame of the current request's body: BODY or EOB of its id, or an ABORT of it
 * or of an earlier request. Returns 1 after a BODY (its payload is then s->body_avail bytes at
 * s->in_off), 0 after EOB, or a negative errno (logged; the connection must close). */
static int take_body_frame(fy_worker_session_t *s)
{
    for (;;) {
        fy_frame_t f;
        size_t size;
        int rc = peek_frame(s, &f, &size, WAIT_BODY);
        if (rc == 0)
            return violation(s, -EPROTO,
                             "the connection ended inside request %" PRIu32 " (before its EOB)",
                             s->id);
        if (rc == -ETIMEDOUT) {
            fy_log(FY_LOG_WARN, "worker",
                   "pid=%d id=%" PRIu32 " path=%s timeout_ms=%d: request body stalled; closing "
                   "the connection",
                   (int)getpid(), s->id, s->path, s->cfg.body_timeout_ms);
            s->error = rc;
            return rc;
        }
        if (rc < 0)
            return rc;
        if (f.type == FY_FRAME_ABORT && id_started(s, f.id)) {
            s->in_off += size;
            if (f.id == s->id)
                mark_aborted(s);
            continue;
        }
        if (f.id != s->id || (f.type != FY_FRAME_BODY && f.type != FY_FRAME_EOB))
            return violation(s, -EPROTO,
                             "%s of id %" PRIu32 " inside request %" PRIu32 ", before its EOB",
                             fy_frame_type_name(f.type), f.id, s->id);
        if (f.type == FY_FRAME_EOB) {
            s->in_off += size;
            s->eob_seen = true;
            return 0;
        }
        if (f.len > s->content_length - s->body_taken)
            return violation(s, -EPROTO,
                             "BODY past CONTENT_LENGTH in request %" PRIu32 ": %" PRIu64
                             " bytes of %" PRIu64,
                             s->id, s->body_taken + f.len, s->content_length);
        s->body_taken += f.len;
        s->in_off += FY_FRAME_HEADER_LEN;
        s->body_avail = f.len;
        return 1;
    }
}

/* ---- the request block ---------------------------------------------------------------------- */

/* Parses a CONTENT_LENGTH value: decimal digits only, no sign, no overflow. */
static int parse_length(const char *v, uint64_t *out)
{
    if (*v == '\0')
        return -EPROTO;
    uint64_t n = 0;
    for (; *v; v++) {
        if (*v < '0' || *v > '9')
            return -EPROTO;
        unsigned d = (unsigned)(*v - '0');
        if (n > (UINT64_MAX - d) / 10)
            return -EPROTO;
        n = n * 10 + d;
    }
    *out = n;
    return 0;
}

/* Copies the <len> bytes of a block at <src> and parses the copy into s->rb. Returns 0 or
 * -EPROTO / -EMSGSIZE as fy_reqblock_parse. */
static int take_block(fy_worker_session_t *s, const uint8_t *src, size_t len)
{
    if (len + 1 > s->block_cap) {
        s->block_cap = len + 1 > 4096 ? len + 1 : 4096;
        free(s->block);
        s->block = fy_xmalloc(s->block_cap);
    }
    memcpy(s->block, src, len);
    s->block[len] = '\0';
    fy_reqblock_dispose(&s->rb);
    return fy_reqblock_parse(s->block, len, &s->rb);
}

static bool password_ok(const fy_worker_session_t *s)
{
    size_t len = 0;
    const char *pw = fy_reqblock_get(&s->rb, password_var, &len);
    return pw != NULL && fy_secret_equal(pw, len, s->cfg.secret, strlen(s->cfg.secret));
}

/* Sets the per-request fields from s->rb. Returns 0, or -EPROTO for a CONTENT_LENGTH that is
 * not a decimal number. */
static int start_request(fy_worker_session_t *s)
{
    s->in_request = true;
    s->body_taken = 0;
    s->body_avail = 0;
    s->eob_seen = s->short_logged = s->aborted = s->head_queued = false;
    s->scan_off = s->in_off;
    s->probed_ms = s->cfg.abort_probe_ms > 0 ? fy_monotonic_ms() : 0;
    const char *path = fy_reqblock_get(&s->rb, "PATH_INFO", NULL);
    const char *method = fy_reqblock_get(&s->rb, "REQUEST_METHOD", NULL);
    const char *cl = fy_reqblock_get(&s->rb, "CONTENT_LENGTH", NULL);
    s->path = path != NULL ? path : "";
    s->is_head = method != NULL && strcmp(method, "HEAD") == 0;
    s->content_length = 0;
    if (cl != NULL && parse_length(cl, &s->content_length) != 0) {
        /* Whatever BODY frames come, up to EOB, are discarded without a limit. */
        s->content_length = UINT64_MAX;
        fy_log(FY_LOG_WARN, "worker", "pid=%d path=%s: refused a request: CONTENT_LENGTH is not a "
               "number; answering 400", (int)getpid(), s->path);
        return -EPROTO;
    }
    return 0;
}

static void answer_400(fy_worker_session_t *s)
{
    static const char body[] = "bad request\n";
    char head[160];
    int n = snprintf(head, sizeof head,
                     "Status: 400 %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n\r\n",
                     fy_httpdef_status_reason(400), sizeof body - 1);
    if (fy_worker_session_send_head(s, head, (size_t)n) == 0)
        fy_worker_session_write(s, body, sizeof body - 1);
}

/* ---- open ----------------------------------------------------------------------------------- */

static int open_v2(fy_worker_session_t *s)
{
    fy_frame_t f;
    size_t size;
    int rc = peek_frame(s, &f, &size, WAIT_HELLO);
    if (rc == -ETIMEDOUT)
        return refuse_session(s, rc, "no complete HELLO within %d ms", s->cfg.header_timeout_ms);
    if (rc < 0)
        return rc; /* logged */
    FY_ASSERT(rc == 1); /* five bytes are buffered: EOF shows as a truncated frame */
    if (f.type != FY_FRAME_HELLO || f.id != 0)
        return refuse_session(s, -EPROTO, "the first frame is %s with id %" PRIu32 ", not HELLO",
                              fy_frame_type_name(f.type), f.id);
    if (!fy_secret_equal((const char *)f.payload, f.len, s->cfg.secret, strlen(s->cfg.secret)))
        return refuse_session(s, -EACCES, "wrong connect password in HELLO");
    s->in_off += size;
    return 0;
}

int fy_worker_session_open(fy_worker_session_t *s, int fd, const fy_worker_session_config_t *cfg)
{
    memset(s, 0, sizeof *s);
    s->fd = fd;
    s->cfg = *cfg;
    s->path = "";
    s->in_cap = IN_INITIAL_CAP;
    s->in = fy_xmalloc(s->in_cap);
    s->deadline_ms = fy_monotonic_ms() + cfg->header_timeout_ms;
    /* A v1 block starts with its size and a name, never empty: byte 4 is never NUL there. A v2
     * HELLO header has its type, 0x00, at byte 4 (docs/protocol.md §4.1). */
    int rc = fill_to(s, 4);
    uint32_t size;
    /* Four bytes over the v1 block limit are too much for a HELLO (256) as well: refused from
     * the prefix alone, without waiting for more. */
    if (rc == 0)
        rc = fy_reqblock_decode_size(s->in + s->in_off, &size);
    if (rc == 0)
        rc = fill_to(s, 5);
    if (rc != 0)
        return refuse_v1(s, rc);
    s->version = s->in[s->in_off + 4] == 0 ? 2 : 1;
    return s->version == 2 ? open_v2(s) : 0;
}

void fy_worker_session_dispose(fy_worker_session_t *s)
{
    fy_reqblock_dispose(&s->rb);
    free(s->block);
    free(s->in);
    free(s->out);
    memset(s, 0, sizeof *s);
    s->fd = -1;
    s->path = "";
}

/* ---- next request --------------------------------------------------------------------------- */

static int v1_next_request(fy_worker_session_t *s)
{
    if (s->done)
        return 0;
    s->done = true;
    uint32_t size;
    int rc = fy_reqblock_decode_size(s->in + s->in_off, &size);
    if (rc == 0)
        rc = fill_to(s, 4 + (size_t)size);
    if (rc == 0)
        rc = take_block(s, s->in + s->in_off + 4, size);
    if (rc == 0 && !password_ok(s))
        rc = -EACCES;
    if (rc != 0)
        return refuse_v1(s, rc);
    s->in_off += 4 + (size_t)size;
    if (start_request(s) != 0) {
        answer_400(s);
        s->content_length = 0; /* unknown: the connection closes without draining */
        fy_worker_session_end(s, 0);
        s->error = -EPROTO;
        return -EPROTO;
    }
    return 1;
}

static int v2_next_request(fy_worker_session_t *s)
{
    for (;;) {
        if (s->closing || stop_requested(s))
            return -ECANCELED;
        fy_frame_t f;
        size_t size;
        int rc = peek_frame(s, &f, &size, WAIT_IDLE);
        if (rc == 0) {
            fy_log(FY_LOG_DEBUG, "worker", "pid=%d: the core closed the session", (int)getpid());
            s->done = true;
            return 0;
        }
        if (rc == -ETIMEDOUT)
            return violation(s, rc, "a frame began but was not complete within %d ms",
                             s->cfg.header_timeout_ms);
        if (rc < 0)
            return rc;
        if (f.type == FY_FRAME_ABORT && id_started(s, f.id)) {
            s->in_off += size; /* the client of a request already answered left late */
            continue;
        }
        uint32_t want = next_id(s->id);
        if (f.type != FY_FRAME_REQ)
            return violation(s, -EPROTO,
                             "%s of id %" PRIu32 " between requests (expected REQ %" PRIu32 ")",
                             fy_frame_type_name(f.type), f.id, want);
        if (f.id != want)
            return violation(s, -EPROTO, "REQ of id %" PRIu32 ", expected %" PRIu32, f.id, want);
        rc = take_block(s, f.payload, f.len);
        s->in_off += size;
        if (rc != 0)
            return violation(s, rc, "malformed request block in REQ %" PRIu32, f.id);
        if (!password_ok(s))
            return refuse_session(s, -EACCES,
                                  "wrong or missing connect password in REQ %" PRIu32, f.id);
        s->id = f.id;
        if (start_request(s) != 0) {
            answer_400(s);
            rc = fy_worker_session_end(s, 0);
            if (rc != 0)
                return s->error != 0 ? s->error : rc;
            continue;
        }
        scan_for_abort(s); /* an ABORT may have come right behind the request */
        if (s->aborted) {
            /* Not started yet (docs/protocol.md §4.3): its body is read up to EOB, END alone. */
            rc = fy_worker_session_end(s, 0);
            if (rc != 0)
                return s->error != 0 ? s->error : rc;
            continue;
        }
        return 1;
    }
}

int fy_worker_session_next_request(fy_worker_session_t *s)
{
    FY_ASSERT(!s->in_request);
    if (s->error != 0)
        return s->error;
    return s->version == 2 ? v2_next_request(s) : v1_next_request(s);
}

/* ---- request body --------------------------------------------------------------------------- */

static ssize_t v1_read_body(fy_worker_session_t *s, void *buf, size_t len)
{
    uint64_t left = s->content_length - s->body_taken;
    if (left == 0 || len == 0)
        return 0;
    if (len > left)
        len = (size_t)left;
    if (s->in_off < s->in_len) {
        size_t n = s->in_len - s->in_off < len ? s->in_len - s->in_off : len;
        memcpy(buf, s->in + s->in_off, n);
        s->in_off += n;
        s->body_taken += n;
        return (ssize_t)n;
    }
    int64_t deadline = fy_monotonic_ms() + s->cfg.body_timeout_ms;
    for (;;) {
        ssize_t n = recv(s->fd, buf, len, MSG_DONTWAIT);
        if (n > 0) {
            s->body_taken += (uint64_t)n;
            return n;
        }
        if (n == 0) {
            fy_log(FY_LOG_WARN, "worker",
                   "path=%s body_missing=%" PRIu64 ": connection ended inside the request body",
                   s->path, left);
            return -EIO;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -EIO;
        int rc = wait_readable(s, deadline, false);
        if (rc == -ETIMEDOUT) {
            fy_log(FY_LOG_WARN, "worker", "path=%s timeout_ms=%d: request body stalled", s->path,
                   s->cfg.body_timeout_ms);
            return rc;
        }
        if (rc != 0)
            return -EIO;
    }
}

/* The body ended (EOB) with fewer than CONTENT_LENGTH bytes: logged once, -EIO to the app. */
static ssize_t body_cut(fy_worker_session_t *s)
{
    if (!s->short_logged) {
        s->short_logged = true;
        fy_log(FY_LOG_WARN, "worker",
               "pid=%d id=%" PRIu32 " path=%s body_missing=%" PRIu64
               ": EOB came before CONTENT_LENGTH bytes",
               (int)getpid(), s->id, s->path, s->content_length - s->body_taken);
    }
    return -EIO;
}

static ssize_t v2_read_body(fy_worker_session_t *s, void *buf, size_t len)
{
    if (len == 0)
        return 0;
    for (;;) {
        if (s->error != 0)
            return s->error == -ETIMEDOUT ? -ETIMEDOUT : -EIO;
        if (s->body_avail > 0) {
            size_t n = s->body_avail < len ? s->body_avail : len;
            memcpy(buf, s->in + s->in_off, n);
            s->in_off += n;
            s->body_avail -= n;
            return (ssize_t)n;
        }
        if (s->body_taken == s->content_length)
            return 0; /* all of it; its EOB is taken when the request ends */
        if (s->eob_seen)
            return body_cut(s);
        int rc = take_body_frame(s);
        if (rc < 0)
            return rc == -ETIMEDOUT ? -ETIMEDOUT : -EIO;
    }
}

ssize_t fy_worker_session_read_body(fy_worker_session_t *s, void *buf, size_t len)
{
    FY_ASSERT(s->in_request);
    return s->version == 2 ? v2_read_body(s, buf, len) : v1_read_body(s, buf, len);
}

/* ---- response ------------------------------------------------------------------------------- */

/* Writes all of <iov>[<count>] (modified), blocking while the core does not read. Returns 0, or
 * -EPIPE when the connection failed (it is then broken). */
static int send_iov(fy_worker_session_t *s, struct iovec *iov, int count)
{
    while (count > 0) {
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)count};
        ssize_t n = sendmsg(s->fd, &msg, MSG_NOSIGNAL);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                struct pollfd pfd = {.fd = s->fd, .events = POLLOUT};
                if (poll(&pfd, 1, -1) == -1 && errno != EINTR) {
                    s->error = -EPIPE;
                    return -EPIPE;
                }
                continue;
            }
            s->error = -EPIPE;
            return -EPIPE;
        }
        size_t done = (size_t)n;
        while (count > 0 && done >= iov->iov_len) {
            done -= iov->iov_len;
            iov++;
            count--;
        }
        if (count > 0) {
            iov->iov_base = (char *)iov->iov_base + done;
            iov->iov_len -= done;
        }
    }
    return 0;
}

static void out_reserve(fy_worker_session_t *s, size_t more)
{
    if (s->out_len + more <= s->out_cap)
        return;
    size_t cap = s->out_cap ? s->out_cap : OUT_INITIAL_CAP;
    while (cap < s->out_len + more)
        cap *= 2;
    s->out = fy_xrealloc(s->out, cap);
    s->out_cap = cap;
}

static void queue_bytes(fy_worker_session_t *s, const void *data, size_t len)
{
    out_reserve(s, len);
    memcpy(s->out + s->out_len, data, len);
    s->out_len += len;
}

static void queue_frame(fy_worker_session_t *s, uint8_t type, uint8_t flags, const void *payload,
                        size_t len)
{
    out_reserve(s, FY_FRAME_HEADER_LEN + len);
    fy_frame_encode_header(s->out + s->out_len, type, flags, s->id, (uint32_t)len);
    s->out_len += FY_FRAME_HEADER_LEN;
    if (len > 0)
        memcpy(s->out + s->out_len, payload, len);
    s->out_len += len;
}

/* Sends the queue, then <data> in DATA frames of at most FY_FRAME_DATA_MAX, pointing at the
 * app's bytes (no copy). */
static int send_data_frames(fy_worker_session_t *s, const uint8_t *data, size_t len)
{
    uint8_t headers[IOV_BATCH / 2][FY_FRAME_HEADER_LEN];
    while (len > 0) {
        struct iovec iov[IOV_BATCH];
        int count = 0;
        if (s->out_len > 0) {
            iov[count++] = (struct iovec){.iov_base = s->out, .iov_len = s->out_len};
            s->out_len = 0;
                }
        for (size_t h = 0; len > 0 && count + 2 <= IOV_BATCH; h++) {
            size_t piece = len < FY_FRAME_DATA_MAX ? len : FY_FRAME_DATA_MAX;
            fy_frame_encode_header(headers[h], FY_FRAME_DATA, 0, s->id, (uint32_t)piece);
            iov[count++] = (struct iovec){.iov_base = headers[h], .iov_len = FY_FRAME_HEADER_LEN};
            iov[count++] = (struct iovec){.iov_base = (void *)data, .iov_len = piece};
            data += piece;
            len -= piece;
        }
        int rc = send_iov(s, iov, count);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int fy_worker_session_send_head(fy_worker_session_t *s, const void *head, size_t len)
{
    FY_ASSERT(s->in_request && !s->head_queued);
    if (s->error != 0)
        return s->error;
    if (len > FY_FRAME_BLOCK_MAX)
        return -EMSGSIZE;
    if (s->version == 1) {
        queue_bytes(s, head, len);
    } else {
        scan_for_abort(s);
        if (s->aborted)
            return -ECONNABORTED;
        queue_frame(s, FY_FRAME_HEAD, 0, head, len);
    }
    s->head_queued = true;
    return 0;
}

static int v1_write(fy_worker_session_t *s, const void *data, size_t len)
{
    if (s->is_head)
        len = 0;
    struct iovec iov[2];
    int count = 0;
    if (s->out_len > 0) {
        iov[count++] = (struct iovec){.iov_base = s->out, .iov_len = s->out_len};
        s->out_len = 0;
    }
    if (len > 0)
        iov[count++] = (struct iovec){.iov_base = (void *)data, .iov_len = len};
    return count > 0 ? send_iov(s, iov, count) : 0;
}

/* Each write goes out at once, with the HEAD if it is still queued: ferry_response_write returns
 * once its bytes are on their way, so a streaming app's piece reaches the client without waiting
 * for its next one. (Measured: holding small pieces for the END's sendmsg saved nothing visible
 * in the hello benchmark, docs/performance.md.) */
static int v2_write(fy_worker_session_t *s, const void *data, size_t len)
{
    probe_abort(s);
    if (s->aborted)
        return -ECONNABORTED;
    if (s->is_head || len == 0)
        return 0;
    return send_data_frames(s, data, len);
}

int fy_worker_session_write(fy_worker_session_t *s, const void *data, size_t len)
{
    FY_ASSERT(s->in_request && s->head_queued);
    if (s->error != 0)
        return s->error;
    return s->version == 2 ? v2_write(s, data, len) : v1_write(s, data, len);
}

int fy_worker_session_write_final(fy_worker_session_t *s, const void *data, size_t len)
{
    FY_ASSERT(s->in_request && s->head_queued);
    if (s->error != 0)
        return s->error;
    if (s->version != 2 || len > FY_WORKER_FINAL_WRITE_MAX)
        return fy_worker_session_write(s, data, len);
    probe_abort(s);
    if (s->aborted)
        return -ECONNABORTED;
    if (!s->is_head && len > 0)
        queue_frame(s, FY_FRAME_DATA, 0, data, len);
    return 0;
}

int fy_worker_session_flush(fy_worker_session_t *s)
{
    if (s->error != 0)
        return s->error;
    probe_abort(s);
    if (s->aborted)
        return -ECONNABORTED;
    return flush_out(s);
}

bool fy_worker_session_aborted(const fy_worker_session_t *s)
{
    return s->aborted;
}

/* ---- end ------------------------------------------------------------------------------------ */

/* Discards what is left of a v1 body, for at most V1_DRAIN_TIMEOUT_MS, so that closing does not
 * reset the peer. */
static void v1_drain(fy_worker_session_t *s)
{
    int64_t deadline = fy_monotonic_ms() + V1_DRAIN_TIMEOUT_MS;
    char junk[16384];
    while (s->body_taken < s->content_length) {
        uint64_t left = s->content_length - s->body_taken;
        size_t buffered = s->in_len - s->in_off;
        if (buffered > 0) {
            size_t n = buffered < left ? buffered : (size_t)left;
            s->in_off += n;
            s->body_taken += n;
            continue;
        }
        ssize_t n = recv(s->fd, junk, left < sizeof junk ? (size_t)left : sizeof junk,
                         MSG_DONTWAIT);
        if (n > 0) {
            s->body_taken += (uint64_t)n;
            continue;
        }
        if (n == 0 || (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK))
            return;
        if (errno == EINTR)
            continue;
        if (wait_readable(s, deadline, false) != 0)
            return;
    }
}

static int v1_end(fy_worker_session_t *s)
{
    int rc = s->error != 0 ? 0 : flush_out(s);
    shutdown(s->fd, SHUT_WR);
    v1_drain(s);
    return rc;
}

static int v2_end(fy_worker_session_t *s, unsigned flags)
{
    if (s->error != 0)
        return 0; /* already logged; next_request reports it */
    s->in_off += s->body_avail;
    s->body_avail = 0;
    while (!s->eob_seen) {
        int rc = take_body_frame(s);
        if (rc < 0)
            return rc;
        s->in_off += s->body_avail;
        s->body_avail = 0;
    }
    scan_for_abort(s);
    if (s->aborted)
        flags &= ~FY_FRAME_END_APP_FAILED;
    if (stop_requested(s)) {
        flags |= FY_FRAME_END_CLOSING;
        s->closing = true;
    }
    queue_frame(s, FY_FRAME_END, (uint8_t)flags, NULL, 0);
    return flush_out(s);
}

int fy_worker_session_end(fy_worker_session_t *s, unsigned flags)
{
    FY_ASSERT(s->in_request);
    FY_ASSERT((flags & ~FY_FRAME_END_FLAGS) == 0);
    int rc = s->version == 2 ? v2_end(s, flags) : v1_end(s);
    s->in_request = false;
    return rc;
}
