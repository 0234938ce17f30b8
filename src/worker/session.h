/* The worker's end of one connection from the core, in either protocol: v1 (docs/protocol.md §2,
 * §3: one request, its response ends with the connection) or session protocol v2 (§4: HELLO,
 * then framed requests one after another for the life of the connection). The C SDK (sdk.c) sits
 * on it, and so can a language loader: take each request from fy_worker_session_next_request,
 * read its body with fy_worker_session_read_body, answer with send_head / write, finish with
 * fy_worker_session_end, without knowing which protocol carries the bytes.
 *
 * The session owns its buffers; it borrows the connection's fd (the caller closes it after
 * fy_worker_session_dispose) and the config's strings. Main thread only; one request at a time.
 *
 * v2 input is read ahead into a bounded buffer (frames of the next requests may already be there,
 * docs/protocol.md §4.3 "Dispatch-ahead"); a small request usually arrives in one recv. v2 output:
 * the HEAD waits for the first write and leaves with it in one sendmsg; each write goes out at
 * once, pointing at the app's bytes (no copy). */
#ifndef FY_WORKER_SESSION_H
#define FY_WORKER_SESSION_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto/reqblock.h"

/* What an idle session watches besides the core's connection. The soft-stop hook (SIGUSR1):
 * <flag> is set by the signal handler, which then writes a byte to the pipe whose read end is
 * <wake_fd>, so a session idle between requests wakes up and ends. <control_fd> points at the
 * worker's control channel (-1: none): when it becomes readable while the session is idle
 * between requests, fy_worker_session_next_request returns -EINPROGRESS with the session
 * unchanged, so the caller can read the control message (a re-fork request, docs/protocol.md
 * §5.5) and ask for the next request again. */
typedef struct fy_worker_stop {
    volatile sig_atomic_t *flag;
    int wake_fd;
    const int *control_fd;
} fy_worker_stop_t;

/* What a session is opened with. Borrowed for the session's life. */
typedef struct fy_worker_session_config {
    const char *secret;          /* the connect password (HELLO and FERRY_CONNECT_PASSWORD) */
    int header_timeout_ms;       /* v1 block, HELLO, and any v2 frame once it has begun */
    int body_timeout_ms;         /* each wait for request body bytes */
    const fy_worker_stop_t *stop; /* NULL: no soft stop */
    /* A write looks at the socket for an ABORT at most once per this many milliseconds of the
     * request (FY_WORKER_ABORT_PROBE_MS in the runtime; 0: before every write). */
    int abort_probe_ms;
} fy_worker_session_config_t;

/* A response written within its first millisecond makes no system call to look for an ABORT
 * (docs/protocol.md §4.3: the worker notices one at its next write after that). */
#define FY_WORKER_ABORT_PROBE_MS 1

/* One connection. The first block is for callers to read while a request runs; the rest is
 * private to session.c. An all-zero struct may be disposed. */
typedef struct fy_worker_session {
    int version;             /* 1 or 2, set by fy_worker_session_open */
    uint32_t id;             /* v2: the current (or last) request's id; 0 before the first */
    fy_reqblock_t rb;        /* the current request's variables, password included */
    const char *path;        /* its PATH_INFO, "" when absent (for log lines) */
    uint64_t content_length; /* its CONTENT_LENGTH, 0 when absent */
    bool is_head;            /* REQUEST_METHOD is HEAD: body writes are dropped */

    /* private */
    int fd;
    fy_worker_session_config_t cfg;
    int64_t deadline_ms; /* the one deadline of the v1 block or of HELLO */
    int error;           /* 0 while usable; else why the connection must close */
    bool in_request, done, closing, eof;
    /* input: unconsumed bytes are in[in_off .. in_len); in v2 the first body_avail of them are
     * the rest of a BODY payload already taken, frames follow; scan_off is how far complete
     * frames have been looked at for an ABORT of the current request. */
    uint8_t *in;
    size_t in_cap, in_off, in_len, body_avail, scan_off;
    char *block; /* a copy of the current request block, which rb points into */
    size_t block_cap;
    uint64_t body_taken; /* body bytes received (v2: in BODY frames; v1: handed out or dropped) */
    bool eob_seen, short_logged, aborted, head_queued;
    int64_t probed_ms; /* when the socket was last looked at for an ABORT (the request's start) */
    /* output: complete frames (v2) or the head (v1) waiting to be sent */
    uint8_t *out;
    size_t out_len, out_cap;
} fy_worker_session_t;

/* Starts serving the accepted connection <fd> (borrowed): reads its first five bytes within
 * cfg->header_timeout_ms and tells the versions apart (docs/protocol.md §4.1): byte 4 is 0 for a
 * v2 HELLO, which is then read and its password compared in constant time. Returns 0 (the
 * version is set), or -ETIMEDOUT, -ECONNRESET (the connection ended first), -EPROTO (not a valid
 * HELLO), -EMSGSIZE, -EACCES (wrong password); each refusal is one [warn] line, and the caller
 * closes the connection without a reply. Dispose <s> in every case. */
int fy_worker_session_open(fy_worker_session_t *s, int fd, const fy_worker_session_config_t *cfg);

/* Waits for the next request and makes it current: its variables in s->rb, s->content_length,
 * s->is_head. The previous one must have been ended. Returns 1 with a request; 0 when the session
 * is over (v1: after its one request; v2: the core closed the connection between requests);
 * -ECANCELED when a soft stop ends the session (SIGUSR1 while idle, or after END with CLOSING);
 * -EINPROGRESS when the control channel became readable while idle (see fy_worker_stop_t; the
 * session is as it was: call again);
 * or a negative errno after a refusal or a protocol violation, logged as one [warn] line (v1: as
 * fy_worker_session_open, plus -EPROTO for a malformed block or CONTENT_LENGTH, the latter
 * answered 400). Only v2 waits between requests: for ever, but it wakes for the soft stop. A
 * v2 request whose CONTENT_LENGTH is not a number is answered 400 here, and the next one read. */
int fy_worker_session_next_request(fy_worker_session_t *s);

/* Reads up to <len> bytes of the current request's body into <buf>, never past CONTENT_LENGTH.
 * Returns the count (> 0), 0 at the end of the body, -ETIMEDOUT when no byte came within
 * cfg->body_timeout_ms, -EIO when the body ended short (v1: EOF, v2: EOB; logged) or the
 * connection failed. */
ssize_t fy_worker_session_read_body(fy_worker_session_t *s, void *buf, size_t len);

/* Queues the response head: <len> bytes (at most 131072) of "Status: ..." lines ending in the
 * empty line (docs/protocol.md §3), copied. It leaves with the first write (v1) or in a HEAD
 * frame (v2), sent together with the first write. Once per request, before any write. Returns 0,
 * -ECONNABORTED after an ABORT of the request, or the error that broke the connection. */
int fy_worker_session_send_head(fy_worker_session_t *s, const void *head, size_t len);

/* Sends <len> bytes of response body (dropped for a HEAD request) at once, with the head if it is
 * still queued; v2 in DATA frames of at most 1 MiB. Before v2 bytes go out the session takes what the core has sent without blocking and
 * looks for an ABORT of the request. Blocks while the core does not read. Returns 0,
 * -ECONNABORTED after an ABORT (nothing more but END goes out for the request), -EPIPE when the
 * connection failed, or the error that broke it. */
int fy_worker_session_write(fy_worker_session_t *s, const void *data, size_t len);
/* The last body bytes of the response (the caller knows no more follow): in v2, up to
 * FY_WORKER_FINAL_WRITE_MAX bytes are queued and go out with the END in one message (one system
 * call, and one wake-up of the core, fewer); otherwise as fy_worker_session_write. */
#define FY_WORKER_FINAL_WRITE_MAX (16u * 1024)
int fy_worker_session_write_final(fy_worker_session_t *s, const void *data, size_t len);

/* Sends whatever is queued now. Returns 0 or as fy_worker_session_write. */
int fy_worker_session_flush(fy_worker_session_t *s);

/* Whether the core sent ABORT for the current request (v2 only; never in v1). */
bool fy_worker_session_aborted(const fy_worker_session_t *s);

/* Ends the current request, after its app returned: discards the body it did not read (v2: up
 * to EOB; v1: at most 2 s of it, after shutting down the write side), then v2 sends what is
 * queued and END(<flags>), FY_FRAME_END_APP_FAILED when the app failed after the head (dropped
 * after an ABORT); CLOSING is added when a soft stop was asked for, and the session then ends.
 * The worker is free only after this. Returns 0; -EPIPE when sending failed; or the logged
 * violation or timeout met while discarding. Either way the next call is next_request. */
int fy_worker_session_end(fy_worker_session_t *s, unsigned flags);

/* Frees the session's buffers; does not close the fd. */
void fy_worker_session_dispose(fy_worker_session_t *s);

#endif
