/* Internals of src/worker shared by its files and its unit tests: the request object behind
 * ferry_request_t, the per-connection server and the dlopen loader. Main thread only. */
#ifndef FY_WORKER_WORKER_INTERNAL_H
#define FY_WORKER_WORKER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry.h"
#include "proto/reqblock.h"

/* How long the whole request block may take to arrive, and how long a body read may wait for
 * its next byte. A stuck or malicious client cannot hold the worker longer than this. */
#define FY_WORKER_HEADER_TIMEOUT_MS 5000
#define FY_WORKER_BODY_TIMEOUT_MS 60000

/* A loaded app: what ferry_app_init filled in. */
typedef struct fy_worker_app {
    ferry_callbacks_t callbacks;
    void *data;
    void *dl_handle; /* NULL for apps registered in-process (unit tests) */
    char *path;      /* heap copy of the .so path, or NULL */
} fy_worker_app_t;

/* What one connection is served with. Borrowed by fy_worker_conn_serve. */
typedef struct fy_worker_ctx {
    const fy_worker_app_t *app;
    const char *secret;    /* the connect password */
    int header_timeout_ms; /* FY_WORKER_HEADER_TIMEOUT_MS unless a test shortens it */
    int body_timeout_ms;
    /* Set while a request runs (the path, for the SIGQUIT line); "" when idle. */
    char *busy_path;
    size_t busy_path_cap;
} fy_worker_ctx_t;

/* The object behind ferry_request_t. Lives on fy_worker_conn_serve's stack. */
struct ferry_request {
    int fd;
    char *block; /* the header block bytes (heap) */
    fy_reqblock_t rb;
    const char **names; /* the variables the app sees (password removed) */
    const char **values;
    size_t var_count;
    const char *method, *path, *query, *uri, *remote_addr;
    uint64_t content_length;
    uint64_t body_left;
    int body_timeout_ms;
    bool is_head;
    void *app_data;
    /* response */
    int status; /* 0 until ferry_response_start */
    char *head; /* "Status: ..." + header lines, without the final CRLF */
    size_t head_len, head_cap;
    bool head_sent, ended, io_failed;
};

/* Serves one accepted connection <fd> (borrowed; the caller closes it): reads the request block
 * within ctx->header_timeout_ms, checks the password in constant time, calls the app, writes the
 * response. Returns 0 when a request was handed to the app (even one that failed: it got a 500),
 * -EPROTO for a malformed block or CONTENT_LENGTH, -EMSGSIZE past 128 KiB, -EACCES for a
 * missing or wrong password, -ETIMEDOUT, -ECONNRESET when the block was cut short; those are
 * closed without a reply (a bad CONTENT_LENGTH gets 400) and logged. */
int fy_worker_conn_serve(fy_worker_ctx_t *ctx, int fd);

/* The accept loop over <listen_fd> (borrowed): serves connections one at a time until SIGUSR1
 * (returns 0) or until a second error outside a request within 10 s (returns 1, logged). */
int fy_worker_serve_loop(fy_worker_ctx_t *ctx, int listen_fd);

/* Loads the app .so at <path> with dlopen(RTLD_NOW | RTLD_LOCAL), looks up ferry_app_init and
 * calls it with <app_root> and <environment>. Returns 0 and fills <app>, or a negative errno
 * (-ENOEXEC cannot load, -ENOENT no entry point, -ECANCELED init failed, -EINVAL init set no
 * on_request) and sets *summary and *details to heap strings the caller frees. */
int fy_worker_app_load(const char *path, const char *app_root, const char *environment,
                       fy_worker_app_t *app, char **summary, char **details);
/* Calls on_shutdown when <call_shutdown>, closes the library, frees <app>'s strings. */
void fy_worker_app_dispose(fy_worker_app_t *app, bool call_shutdown);

/* The reason phrase of <status> ("OK", "Not Found"), "Unknown" for codes without one. */
const char *fy_worker_status_reason(int status);

/* Prepares <req> over <block> (takes ownership of the heap <block>, parsed into <rb> which it
 * also takes) for connection <fd>: hides FERRY_CONNECT_PASSWORD, parses CONTENT_LENGTH.
 * Returns 0, or -EPROTO for a CONTENT_LENGTH that is not a decimal number. */
int fy_worker_request_init(struct ferry_request *req, int fd, char *block, fy_reqblock_t *rb,
                           void *app_data, int body_timeout_ms);
/* Finishes the response after on_request returned <rc>: a 500 when the app failed (or never
 * started) before the head was sent, sends the head if still pending. Logs failures. */
void fy_worker_request_finish(struct ferry_request *req, int rc);
void fy_worker_request_dispose(struct ferry_request *req);

/* Writes all of <data> to the socket <fd> (MSG_NOSIGNAL, EINTR retried). Returns 0 or -errno. */
int fy_worker_send_all(int fd, const void *data, size_t len);

/* ---- SIGQUIT: the backtrace of every thread (backtrace.c) ---------------------------------- */

#include <signal.h>
#include <sys/types.h>

/* Sent by the thread that took SIGQUIT to each other thread so that it writes its own stack.
 * Apps must leave this signal to the worker (docs/c-sdk.md). */
#define FY_WORKER_BACKTRACE_SIGNAL (SIGRTMAX - 1)

/* Installs the handler of FY_WORKER_BACKTRACE_SIGNAL and preloads what backtrace() needs.
 * Returns 0 or -errno. */
int fy_worker_backtraces_install(void);
/* A thread of ferry's own that blocks every signal: not asked (it could not answer). */
void fy_worker_backtraces_skip_thread(pid_t tid);
/* From the SIGQUIT handler: writes the calling thread's stack, then every other thread's, then
 * a summary line. Async-signal-safe. */
void fy_worker_backtraces_write(void);

/* Append <s> / the decimal <v> to <buf> of <cap> at *len, NUL-terminated; async-signal-safe. */
void fy_sig_append(char *buf, size_t cap, size_t *len, const char *s);
void fy_sig_append_int(char *buf, size_t cap, size_t *len, long v);

#endif
