/* Internals of src/worker shared by its files and its unit tests: the request object behind
 * ferry_request_t, the per-connection server and the dlopen loader. Main thread only. */
#ifndef FY_WORKER_WORKER_INTERNAL_H
#define FY_WORKER_WORKER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry.h"
#include "proto/reqblock.h"
#include "worker/session.h"

/* How long the whole request block may take to arrive, and how long a body read may wait for
 * its next byte. A stuck or malicious client cannot hold the worker longer than this. */
#define FY_WORKER_HEADER_TIMEOUT_MS 5000
#define FY_WORKER_BODY_TIMEOUT_MS 60000
/* The longest reason phrase a host may give (fy_worker_response_start_reason). */
#define FY_WORKER_REASON_MAX 200

/* A loaded app: what ferry_app_init filled in. */
typedef struct fy_worker_app {
    ferry_callbacks_t callbacks;
    void *data;
    void *dl_handle; /* NULL for apps registered in-process (unit tests) */
    char *path;      /* heap copy of the .so path, or NULL */
    /* The write that completes the declared Content-Length goes out with the END (sdk.c): for
     * native apps, whose on_request returns right after it (docs/c-sdk.md); not for the WSGI
     * and Rack hosts, whose apps may work in close() after the last write. */
    bool final_write_with_end;
} fy_worker_app_t;

/* What one connection is served with. Borrowed by fy_worker_conn_serve. */
typedef struct fy_worker_ctx {
    const fy_worker_app_t *app;
    const char *secret;    /* the connect password */
    int header_timeout_ms; /* FY_WORKER_HEADER_TIMEOUT_MS unless a test shortens it */
    int body_timeout_ms;
    const fy_worker_stop_t *stop; /* SIGUSR1's flag and wake pipe; NULL: none */
    /* Set while a request runs (the path, for the SIGQUIT line); "" when idle. */
    char *busy_path;
    size_t busy_path_cap;
    /* ... and its HTTP_X_REQUEST_ID (docs/operations.md, "Request ids"); "" when none */
    char *busy_request_id;
    size_t busy_request_id_cap;
    /* The interpreter's own fork for a re-fork (host.h); NULL: this worker cannot re-fork (a
     * native app: nothing was preloaded). */
    int (*fork)(void *data);
    void *fork_data;
} fy_worker_ctx_t;

/* The object behind ferry_request_t: the app's view of the session's current request and the
 * response being built. Lives on the stack of whoever calls on_request; borrows the session. */
struct ferry_request {
    fy_worker_session_t *session; /* the connection, v1 or v2: every byte goes through it */
    const char **names; /* the variables the app sees (password removed) */
    const char **values;
    size_t var_count;
    const char *method, *path, *query, *uri, *remote_addr;
    void *app_data;
    /* response */
    int status; /* 0 until ferry_response_start */
    char *head; /* "Status: ..." + header lines; the final CRLF is added when it is sent */
    size_t head_len, head_cap;
    bool head_sent, ended;
    int io_error; /* 0, or the session's error from the write that failed */
    bool final_write_with_end;     /* the app's (fy_worker_app_t) */
    bool declared;                 /* the head has a Content-Length: */
    uint64_t declared_len, written; /* ...its value, and the body bytes written so far */
};

/* Serves one accepted connection <fd> (borrowed; the caller closes it) as a session (session.h):
 * a v1 connection's one request, or a v2 session's requests until the core closes it. Calls the
 * app for each request and finishes its response. Returns 0 when the session ended normally (v1:
 * its request was handed to the app, even one that failed: it got a 500; v2: the core closed it
 * between requests), -ECANCELED after a soft stop, or the refusal or violation that closed it
 * (logged): -EPROTO for a malformed block, frame or CONTENT_LENGTH (v1 answers 400 to the latter),
 * -EMSGSIZE past a limit, -EACCES for a missing or wrong password, -ETIMEDOUT, -ECONNRESET when
 * the v1 block was cut short, -EPIPE when the core stopped reading. */
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

/* Prepares <req> over the current request of <session> (borrowed, with its variables, until
 * fy_worker_request_dispose): the variables without FERRY_CONNECT_PASSWORD. */
void fy_worker_request_init(struct ferry_request *req, fy_worker_session_t *session,
                            void *app_data);
/* Finishes the request after on_request returned <rc>: a 500 when the app failed (or never
 * started) before the head was sent, otherwise the head if still pending; then ends it at the
 * session (v2: END, with APP_FAILED when the app failed after the head). Logs failures. */
void fy_worker_request_finish(struct ferry_request *req, int rc);
void fy_worker_request_dispose(struct ferry_request *req);

/* ---- the runtime's process state (loop.c), for the preloader (preloader.c) ------------------ */

/* In a worker just forked from a preloader: forgets the preloader's owner pipe, control channel
 * and SIGUSR1 wake pipe (closing them), clears the stop flag, and sets the runtime up again with
 * <owner_fd> (the worker's own owner pipe) and <control_fd> (its spawn connection, where ready
 * goes) and a new owner watcher thread. The signal dispositions are the preloader's, which are
 * the worker's already (fy_worker_host_boot). Returns 0, or a negative errno after reporting
 * ["error", ...] on <control_fd>. */
int fy_worker_runtime_rebind(int owner_fd, int control_fd);
/* The socket file SIGTERM and the owner watcher remove before the process ends: the one behind
 * <address> when it is "unix:PATH", none otherwise (the preloader's spawn server). */
void fy_worker_runtime_set_socket_file(const char *address);
/* The control channel fy_worker_host_boot found (or rebind set); -1 before and once closed. */
int fy_worker_host_control_fd(void);
/* Closes the control channel (the core let go of it, or a re-fork handed it to the child). */
void fy_worker_runtime_close_control(void);

/* ---- re-forking (refork.c; docs/protocol.md §5.5) ------------------------------------------ */

/* The control channel became readable while the worker was idle: reads the core's message. A
 * ["refork", IDLE] request with its two fds forks the process through ctx->fork. Returns 0 when
 * the worker goes on serving (the parent after the fork, a refused request, or the core closed
 * the channel), or 1 in the child, which is the app's preloader from now on: the caller unwinds
 * to the host (fy_worker_host_serve returns, fy_worker_host_preloading is true). */
int fy_worker_control_event(fy_worker_ctx_t *ctx);
/* True in the child of a re-fork once it has become the preloader, until the next
 * fy_worker_runtime_rebind (in a worker it forks): the serve loop ends, serve_app unwinds. */
bool fy_worker_reforked(void);
void fy_worker_runtime_mark_reforked(void);

/* In a process just forked for the core (a worker by its preloader, a preloader by a re-fork;
 * preloader.c): makes <out_fd> and <err_fd> its stdout and stderr (closing both), creates its
 * own owner pipe, hands the write end to the core first on <control_fd> (docs/protocol.md §5.4)
 * and re-arms the runtime on the two (fy_worker_runtime_rebind). <what> names the process and
 * <step> the step in an error. Returns 0, or a negative errno after reporting ["error", ...]. */
int fy_worker_forked_handover(int control_fd, int out_fd, int err_fd, const char *what,
                              const char *step);

/* In the child of a re-fork (preloader.c): this process is the app's preloader from now on, with
 * <idle_time_s>; what it inherited of its own preloader's spawn state is reset. */
void fy_worker_preloader_adopt(unsigned idle_time_s);

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
