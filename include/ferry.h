/* ferry.h — the public C SDK for native ferry applications.
 *
 * A native app is a shared object (built with `-shared -fPIC`, NOT linked against libferry)
 * that exports one entry point:
 *
 *     int ferry_app_init(ferry_init_t *init);
 *
 * `ferry worker APP_DIR --type c` loads it with dlopen(RTLD_NOW | RTLD_LOCAL), fills the
 * read-only part of <init>, calls ferry_app_init once, and then serves requests one at a time,
 * calling init->callbacks.on_request for each. The ferry_* functions below are resolved from the
 * running `ferry` binary, which exports them; there is one copy of the SDK per process.
 *
 * Threading: a worker serves one request at a time on its main thread. Every ferry_request_* and
 * ferry_response_* call must be made from inside on_request, on the thread that called it, with
 * the request it was given; the request is gone when on_request returns.
 *
 * Errors: functions that can fail return an int from ferry_rc_t: FERRY_OK (0) or a negative
 * FERRY_E* value. ferry_request_read returns a byte count or a negative FERRY_E* value.
 *
 * A minimal app:
 *
 *     #include <ferry.h>
 *
 *     static int on_request(ferry_request_t *req)
 *     {
 *         ferry_field_t h[] = {{"Content-Type", "text/plain"}};
 *         int rc = ferry_response_start(req, 200, h, 1);
 *         if (rc == FERRY_OK)
 *             rc = ferry_response_write(req, "hello world\n", 12);
 *         return rc;
 *     }
 *
 *     int ferry_app_init(ferry_init_t *init)
 *     {
 *         init->callbacks.on_request = on_request;
 *         return FERRY_OK;
 *     }
 */
#ifndef FERRY_H
#define FERRY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The SDK version implemented by the running ferry; ferry sets init->api_version to it. */
#define FERRY_API_VERSION 1

/* The name of the entry point ferry looks up with dlsym. */
#define FERRY_APP_INIT_SYMBOL "ferry_app_init"

/* Every return code of the SDK. */
typedef enum ferry_rc {
    FERRY_OK = 0,
    FERRY_ERROR = -1,     /* generic failure; from on_request it means "answer 500" */
    FERRY_EINVAL = -2,    /* a bad argument: NULL, a status outside 100..999, a header name that
                             is not an HTTP token, a value holding CR, LF or NUL */
    FERRY_ESTATE = -3,    /* not allowed now: start twice, add a header after the head was
                             sent, write before start */
    FERRY_EIO = -4,       /* the connection failed (the peer went away); stop writing */
    FERRY_ETOOBIG = -5,   /* the response head would pass 128 KiB */
    FERRY_ETIMEDOUT = -6, /* the request body did not arrive in time */
} ferry_rc_t;

/* One request: the request view and its response. Owned by ferry; valid only inside the
 * on_request call that received it. */
typedef struct ferry_request ferry_request_t;

/* A response header for ferry_response_start. Both strings are borrowed for the call only. */
typedef struct ferry_field {
    const char *name;
    const char *value;
} ferry_field_t;

/* The app's callbacks. Only on_request is required. */
typedef struct ferry_callbacks {
    /* Handles one request. Return FERRY_OK when the response is complete (ferry ends it if the
     * app did not call ferry_response_end). Any other value is an error: when the head has not
     * been sent yet ferry answers 500 Internal Server Error, otherwise the connection is closed
     * early; either way the error is logged and the worker serves the next request. Returning
     * FERRY_OK without ever calling ferry_response_start is an error too (500). */
    int (*on_request)(ferry_request_t *req);
    /* Called once when the worker exits gracefully (SIGUSR1, or after the last request of a
     * soft shutdown), never from a signal handler and never after SIGTERM or owner death. */
    void (*on_shutdown)(void *data);
} ferry_callbacks_t;

/* Passed to ferry_app_init. ferry fills the first block; the app fills the second. */
typedef struct ferry_init {
    /* Set by ferry, read-only for the app. */
    int api_version;         /* FERRY_API_VERSION of the running ferry */
    const char *app_root;    /* absolute path of the app directory (FERRY_APP_ROOT) */
    const char *environment; /* FERRY_ENV: "production", "development", ... */

    /* Set by the app. */
    ferry_callbacks_t callbacks;
    void *data;        /* handed back by ferry_request_data and on_shutdown */
    const char *error; /* optional, when returning an error: why init failed; must stay valid
                          until ferry_app_init returns (a string literal is fine) */
} ferry_init_t;

/* The entry point every native app exports. Return FERRY_OK after setting
 * init->callbacks.on_request, or an error (the worker then reports
 * ["error", "ferry_app_init of <path> failed: <init->error>", ...] and exits). */
int ferry_app_init(ferry_init_t *init);
typedef int (*ferry_app_init_fn)(ferry_init_t *init);

/* ---- request view ------------------------------------------------------------------------
 * Request variables are the CGI-style names of the request block (docs/protocol.md §2):
 * REQUEST_METHOD, REQUEST_URI, PATH_INFO (percent-decoded), QUERY_STRING, SCRIPT_NAME,
 * SERVER_NAME, SERVER_PORT, SERVER_PROTOCOL, REMOTE_ADDR, REMOTE_PORT, HTTPS, CONTENT_LENGTH,
 * CONTENT_TYPE and HTTP_<NAME> for every other request header. The connect password is never
 * visible. Returned strings are NUL-terminated, owned by ferry, valid until on_request returns. */

/* REQUEST_METHOD, e.g. "GET" (never NULL; "" when the core sent none). */
const char *ferry_request_method(const ferry_request_t *req);
/* PATH_INFO, percent-decoded, e.g. "/env" (never NULL). */
const char *ferry_request_path(const ferry_request_t *req);
/* QUERY_STRING without the '?', "" when there is none (never NULL). */
const char *ferry_request_query(const ferry_request_t *req);
/* REQUEST_URI as the client sent it (never NULL). */
const char *ferry_request_uri(const ferry_request_t *req);
/* REMOTE_ADDR, "" when unknown (never NULL). */
const char *ferry_request_remote_addr(const ferry_request_t *req);
/* The body size in bytes (CONTENT_LENGTH), 0 when there is no body. */
uint64_t ferry_request_content_length(const ferry_request_t *req);

/* The value of the request variable <name> (exact CGI name, e.g. "HTTP_USER_AGENT",
 * "CONTENT_TYPE"), or NULL when absent. An empty value is "" (present). */
const char *ferry_request_var(const ferry_request_t *req, const char *name);
/* The value of the request header <name> given as an HTTP header name, case-insensitive
 * ("User-Agent", "content-type"): maps it to its CGI name (Content-Type → CONTENT_TYPE,
 * Content-Length → CONTENT_LENGTH, others → HTTP_<NAME> upper-cased with '-' → '_').
 * NULL when absent or when <name> holds '_' (such headers are dropped by the core). */
const char *ferry_request_header(const ferry_request_t *req, const char *name);

/* The number of request variables, for iteration with ferry_request_var_at. */
size_t ferry_request_var_count(const ferry_request_t *req);
/* Sets *name and *value to the <index>th variable, in the order the core sent them.
 * Returns FERRY_OK, or FERRY_EINVAL when <index> is out of range or an argument is NULL. */
int ferry_request_var_at(const ferry_request_t *req, size_t index, const char **name,
                         const char **value);

/* Reads up to <len> bytes of the request body into <buf>, straight from the connection (the body
 * is never buffered whole). Returns the number of bytes read (> 0), 0 at the end of the body,
 * FERRY_EINVAL for a NULL <buf> with len > 0, FERRY_EIO when the connection ended before
 * CONTENT_LENGTH bytes, FERRY_ETIMEDOUT when no byte arrived for 60 s. */
ssize_t ferry_request_read(ferry_request_t *req, void *buf, size_t len);

/* The init->data pointer the app set in ferry_app_init. */
void *ferry_request_data(const ferry_request_t *req);

/* ---- response -----------------------------------------------------------------------------
 * ferry_response_start once, then any number of ferry_response_add_header, then any number of
 * ferry_response_write, then optionally ferry_response_end. The head is sent with the first write
 * (or at the end), as "Status: NNN Reason\r\n" + headers + "\r\n". ferry does not add headers;
 * the core frames the body for the client (Content-Length when the app gives one, else chunked).
 * For a HEAD request the head is sent and written body bytes are dropped (writes succeed). */

/* Sets the status (100..999) and the first <count> headers (<fields> may be NULL when count is
 * 0). Returns FERRY_OK, FERRY_EINVAL (bad status or header; nothing is kept), FERRY_ESTATE when
 * already started, FERRY_ETOOBIG past the head limit. */
int ferry_response_start(ferry_request_t *req, int status, const ferry_field_t *fields,
                         size_t count);
/* Adds one header; repeated names are kept in order (two Set-Cookie lines stay two). Returns
 * FERRY_OK, FERRY_EINVAL, FERRY_ESTATE before start or after the head was sent, FERRY_ETOOBIG. */
int ferry_response_add_header(ferry_request_t *req, const char *name, const char *value);
/* Sends <len> bytes of body (the head first, if not sent yet), blocking until written: a large
 * response streams with the client's backpressure and bounded memory. Returns FERRY_OK,
 * FERRY_ESTATE before start or after end, FERRY_EIO when the connection failed. */
int ferry_response_write(ferry_request_t *req, const void *data, size_t len);
/* Finishes the response (sends the head if nothing was written). Further writes return
 * FERRY_ESTATE. Returns FERRY_OK, FERRY_ESTATE before start, FERRY_EIO. */
int ferry_response_end(ferry_request_t *req);

/* ---- misc ---------------------------------------------------------------------------------- */

typedef enum ferry_log_level {
    FERRY_LOG_ERROR = 1,
    FERRY_LOG_WARN = 2,
    FERRY_LOG_NOTICE = 3,
    FERRY_LOG_INFO = 4,
    FERRY_LOG_DEBUG = 5,
} ferry_log_level_t;

/* Writes one line to the worker's log (captured by the core), module "app". */
void ferry_log(ferry_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A short English description of a ferry_rc_t value. Never NULL. */
const char *ferry_strerror(int rc);

#ifdef __cplusplus
}
#endif

#endif
