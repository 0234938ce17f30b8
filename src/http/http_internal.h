/* Internals of src/http shared by its files and its unit tests: the growable byte buffer, the
 * request-body buffer, the llhttp glue (fy_http_request), the CGI variable builder and the
 * response framer. Everything here is pure (no libuv) except that the body buffer writes to a
 * temp file. Loop thread only. */
#ifndef FY_HTTP_INTERNAL_H
#define FY_HTTP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "http/chunked.h"
#include "http/http.h"
#include "llhttp.h"
#include "proto/reqblock.h"
#include "proto/resphead.h"

/* ---- growable byte buffer -------------------------------------------------------------- */

/* An all-zero struct is a valid empty buffer. Grows with fy_xrealloc: callers bound sizes that
 * come from input before appending. */
typedef struct fy_http_buf {
    char *data;
    size_t len;
    size_t cap;
} fy_http_buf_t;

void fy_http_buf_append(fy_http_buf_t *b, const void *data, size_t len);
/* Makes room for at least <extra> more bytes after len. */
void fy_http_buf_reserve(fy_http_buf_t *b, size_t extra);
void fy_http_buf_append_str(fy_http_buf_t *b, const char *s);
/* Appends <v> in decimal: the hot path's numbers without vsnprintf's cost. */
void fy_http_buf_append_u64(fy_http_buf_t *b, uint64_t v);
/* Writes <v> in decimal into out (at least 21 bytes), NUL-terminated; returns the length. */
size_t fy_http_format_u64(char *out, uint64_t v);
/* The same in lower-case hex (at least 17 bytes): chunk sizes. */
size_t fy_http_format_hex(char *out, uint64_t v);
void fy_http_buf_appendf(fy_http_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void fy_http_buf_dispose(fy_http_buf_t *b);

/* ---- request body: memory up to a threshold, then an unlinked temp file ------------------- */

typedef struct fy_http_body {
    char *mem;          /* the body while it fits; kept (capacity) across requests */
    size_t mem_cap;
    int fd;             /* -1 while in memory; else the unlinked temp file (owned) */
    uint64_t len;       /* bytes appended */
    size_t threshold;
    const char *tmp_dir;  /* borrowed; NULL = $TMPDIR or /tmp */
} fy_http_body_t;

/* Starts an empty body that spills to a temp file in <tmp_dir> past <threshold> bytes. */
void fy_http_body_init(fy_http_body_t *b, size_t threshold, const char *tmp_dir);
/* Appends <len> bytes. Returns 0, or a negative errno when the temp file cannot be created or
 * written (the body is then unusable until reset). */
int fy_http_body_append(fy_http_body_t *b, const void *data, size_t len);
bool fy_http_body_in_memory(const fy_http_body_t *b);
/* Reads up to <cap> bytes at <offset> into <buf> (either storage). Returns the byte count (0 at
 * the end) or a negative errno. */
ssize_t fy_http_body_read(const fy_http_body_t *b, uint64_t offset, void *buf, size_t cap);
/* Empties the body for the next request: closes the temp file, keeps the memory. */
void fy_http_body_reset(fy_http_body_t *b);
void fy_http_body_dispose(fy_http_body_t *b);

/* ---- request parsing (llhttp glue) ------------------------------------------------------ */

typedef struct fy_http_hdr {
    size_t name_off, name_len;    /* into fy_http_request.head */
    size_t value_off, value_len;
} fy_http_hdr_t;

/* The form of a request target (RFC 9112 §3.2); authority-form is only CONNECT's, refused. */
typedef enum fy_http_target_form {
    FY_HTTP_TARGET_ORIGIN = 0,   /* "/path?query" */
    FY_HTTP_TARGET_ABSOLUTE,     /* "http://authority/path?query" (http or https only) */
    FY_HTTP_TARGET_ASTERISK,     /* "*", OPTIONS only */
} fy_http_target_form_t;

/* A parsed request target: offsets into the target string. For the absolute form, <authority>
 * is the host[:port] and <path> what follows it (may be empty: it means "/"). For the others
 * <path> is the whole target. */
typedef struct fy_http_target {
    fy_http_target_form_t form;
    size_t authority_off, authority_len;
    size_t path_off, path_len;
} fy_http_target_t;

/* Classifies <len> bytes of <target>. Returns 0, or -EPROTO for a target that is none of the
 * three forms, an absolute form whose scheme is not http/https, or whose authority is empty,
 * carries userinfo ("user@") or is not a valid host[:port]. */
int fy_http_target_parse(const char *target, size_t len, fy_http_target_t *out);

/* Whether the path <path> (<len> bytes, the target's path without query or fragment) climbs
 * above the root once percent-decoded: a ".." segment with no segment left to remove
 * ("/../x", "/a/../../x", "/%2e%2E/x", "/a%2f..%2f..%2fx"). Dot segments that stay inside the
 * root are fine (PATH_INFO keeps them; the app resolves them). */
bool fy_http_path_climbs_above_root(const char *path, size_t len);

/* Whether <len> bytes of <value> are a valid Host (RFC 9110 §7.2: uri-host [":" port], an IP
 * literal in brackets, or a reg-name of unreserved / %-escaped / sub-delim characters; the
 * empty value is valid). Refuses spaces, '@', '/', '?', '#', non-ASCII and a bad port. */
bool fy_http_host_valid(const char *value, size_t len);

typedef enum fy_http_req_state {
    FY_HTTP_REQ_HEAD = 0,   /* reading the request line and headers */
    FY_HTTP_REQ_BODY,       /* headers complete, reading the body */
    FY_HTTP_REQ_DONE,       /* the message is complete; the parser is paused */
    FY_HTTP_REQ_ERROR,      /* refused: see error_status */
} fy_http_req_state_t;

/* One connection's parser and the request being read. Reused request after request: reset
 * keeps the buffers. */
typedef struct fy_http_request {
    llhttp_t parser;
    const fy_http_options_t *opts;   /* borrowed limits */
    fy_http_req_state_t state;
    fy_http_buf_t head;              /* the target, then header names and values */
    size_t url_len;                  /* the target is head.data[0 .. url_len) */
    size_t header_bytes;
    fy_http_hdr_t *hdrs;
    unsigned hdr_count, hdr_cap;
    int last_cb;                     /* 0 none, 1 field, 2 value */
    const char *exec_start;          /* the buffer of the running llhttp_execute */
    char prev_last_byte;             /* last byte of the previous fed buffer */
    bool any_bytes;                  /* a byte of this request has arrived */
    bool headers_seen;               /* the head is complete */
    int host_count;
    unsigned trailer_count;          /* trailer fields read (checked, counted, dropped) */
    bool chunk_active;               /* a chunked body is being decoded (chunked.c) */
    fy_http_chunked_t chunk;
    /* the head scanner: what llhttp leaves unchecked in the request line and line ends */
    uint8_t scan_state;
    uint8_t version_len;
    char version[8];                 /* "HTTP/x.y" as it arrives */
    size_t method_len;
    size_t line_bytes;               /* bytes of the current header line before its LF */
    char scan_prev;                  /* the head byte before the next one scanned */
    bool method_done;                /* the space after the method was seen */
    bool method_lower;               /* the method has a lower-case letter */
    bool method_refused;             /* llhttp does not know the method: the scanner decides */
    /* filled at headers complete */
    fy_http_target_t target;         /* the form of the target and where its parts are */
    const char *method;              /* static string */
    unsigned http_major, http_minor;
    bool keep_alive;
    bool has_body;                   /* Content-Length or chunked */
    bool chunked;
    bool expect_continue;
    bool is_head;
    uint64_t content_length;         /* declared, when not chunked */
    fy_http_body_t body;
    /* set when state == FY_HTTP_REQ_ERROR */
    int error_status;                /* 400, 413, 414, 417, 431, 500, 501, 505 */
    const char *error_reason;        /* for the log; static string */
} fy_http_request_t;

enum {
    FY_HTTP_FEED_MORE = 0,      /* all bytes used; the message needs more */
    FY_HTTP_FEED_DONE = 1,      /* the message is complete; bytes after it are not consumed */
};

/* Starts a parser with <opts> (borrowed; must outlive it). */
void fy_http_request_init(fy_http_request_t *req, const fy_http_options_t *opts);
/* Forgets the finished request and resumes parsing for the next one. */
void fy_http_request_reset(fy_http_request_t *req);
/* Between requests (after reset, before a byte of the next): frees the head, field and body
 * buffers; the next request allocates them again. */
void fy_http_request_release(fy_http_request_t *req);
void fy_http_request_dispose(fy_http_request_t *req);

/* Feeds <len> bytes and sets *consumed. Returns FY_HTTP_FEED_MORE or FY_HTTP_FEED_DONE (state
 * FY_HTTP_REQ_BODY after a call means the head is complete and the body is being read: the
 * caller answers Expect: 100-continue then), or -EPROTO when the request is refused:
 * req->error_status says with what (400 malformed, 413 body too large, 414 target too long, 417
 * an expectation other than 100-continue, 431 headers too large, 500 temp file failure, 501
 * CONNECT, an unknown method or a transfer coding other than chunked, 505 an HTTP major
 * version other than 1) and req->error_reason why. After an error the connection must close.
 * "HTTP/1.x" with x > 1 is read as HTTP/1.1 (RFC 9110 §2.5). Trailer fields are checked like
 * header fields and count against the same limits, but are dropped (RFC 9110 §6.5.1). */
int fy_http_request_feed(fy_http_request_t *req, const char *data, size_t len, size_t *consumed);

/* Tells the parser the client closed its side. Returns 0 when no request had started (a clean
 * close), -EPROTO when a request was cut short. */
int fy_http_request_eof(fy_http_request_t *req);

/* The request target (not NUL-terminated). */
static inline const char *fy_http_request_url(const fy_http_request_t *req) { return req->head.data; }

/* The first header named <name> (case-insensitive) or NULL; sets *len. */
const char *fy_http_request_header(const fy_http_request_t *req, const char *name, size_t *len);

/* ---- request ids (docs/operations.md, "Request ids") ------------------------------------ */

/* The longest X-Request-Id taken from a trusted proxy; ferry's own are 32 hex digits. */
#define FY_HTTP_REQUEST_ID_MAX 64

/* Whether <len> bytes of <id> are a well-formed request id: 1..FY_HTTP_REQUEST_ID_MAX of
 * A-Z a-z 0-9 and - _ . : + / = @ (no spaces, quotes or control bytes: it goes into log lines
 * and a response header unescaped). */
bool fy_http_request_id_valid(const char *id, size_t len);

/* Writes a new id into <out> (33 bytes): 128 bits from <state> (splitmix64, seeded from
 * getrandom by the server) as 32 lower-case hex digits. Advances <state>. */
void fy_http_request_id_generate(uint64_t *state, char out[33]);

/* ---- CGI variables (docs/protocol.md §2) ------------------------------------------------ */

typedef struct fy_http_cgi_ctx {
    const char *server_name;     /* the listener's, used when there is no Host */
    const char *server_port;
    const char *remote_addr;
    const char *remote_port;
    bool https;
    bool trusted_peer;           /* honour X-Forwarded-For / X-Forwarded-Proto */
    const char *secret;          /* FERRY_CONNECT_PASSWORD */
    const char *request_id;      /* HTTP_X_REQUEST_ID, in place of the client's X-Request-Id;
                                  * NULL: the client's header goes through as any other */
} fy_http_cgi_ctx_t;

/* Fills <b> (reset first) with the request block of <req>: the CGI variables, HTTP_* for the
 * other headers (names with '_' dropped, repeated headers joined with ", ", cookies with "; "),
 * CONTENT_LENGTH = the body's real length when there is a body, and FERRY_CONNECT_PASSWORD
 * when <ctx>->secret is not NULL. <scratch> is reused memory.
 * Returns 0, -EPROTO for a target that cannot be decoded (bad %-escape, %00), or -EMSGSIZE when
 * the block passes FY_REQBLOCK_MAX. */
int fy_http_cgi_build(const fy_http_request_t *req, const fy_http_cgi_ctx_t *ctx,
                      fy_reqblock_builder_t *b, fy_http_buf_t *scratch);

/* Percent-decodes <len> bytes of <in> into <out> (appended). Returns 0, or -EPROTO for a bad
 * escape or one that decodes to NUL. */
int fy_http_percent_decode(const char *in, size_t len, fy_http_buf_t *out);

/* ---- response framing ------------------------------------------------------------------- */

typedef enum fy_http_framing {
    FY_HTTP_FRAME_NONE = 0,   /* no body goes to the client (HEAD, 204, 304) */
    FY_HTTP_FRAME_LENGTH,     /* exactly content_length bytes */
    FY_HTTP_FRAME_CHUNKED,    /* HTTP/1.1 chunked */
    FY_HTTP_FRAME_CLOSE,      /* until the connection closes (HTTP/1.0) */
} fy_http_framing_t;

typedef struct fy_http_resp_plan {
    int status;
    fy_http_framing_t framing;
    uint64_t content_length;
    bool keep_alive;
} fy_http_resp_plan_t;

/* Writes the client's response head for the worker's <head> into <out> (appended) and decides
 * the framing. <keep_alive> says whether the connection may stay open as far as the request is
 * concerned. Returns 0, or -EPROTO when the head cannot be forwarded (1xx status, a bad or
 * conflicting Content-Length): the caller answers 502. */
int fy_http_response_head(const fy_resphead_t *head, const fy_http_request_t *req,
                          bool keep_alive, bool powered_by, fy_http_buf_t *out,
                          fy_http_resp_plan_t *plan);

/* Writes a complete error response with a small HTML body into <out>. <detail> (may be NULL)
 * is HTML-escaped into the page. Head-only for HEAD requests. */
void fy_http_error_response(int status, bool is_head, bool keep_alive, bool powered_by,
                            const char *title, const char *detail, fy_http_buf_t *out);
/* Appends a complete response of the front's own with the plain-text body <text> (not cached:
 * Cache-Control: no-store), e.g. the --health-path answer; no body for HEAD. */
void fy_http_plain_response(int status, bool is_head, bool keep_alive, bool powered_by,
                            const char *text, fy_http_buf_t *out);

/* The current time as an IMF-fixdate (29 chars + NUL), cached per second. */
const char *fy_http_date_now(void);

/* Appends the HTML-escaped <s> to <out>. */
void fy_http_html_escape(const char *s, fy_http_buf_t *out);

#endif
