/* The C worker runtime for language hosts: the WSGI and Rack extension modules (src/ext/) load
 * the app in their own interpreter and hand the runtime one request callback; everything else
 * (the spawn handshake, signals, the owner pipe, the socket, both session protocols, the
 * 10-second rule) is the same code that serves native apps (docs/architecture.md, "One worker
 * runtime"). Main thread of the interpreter's process only; once per process.
 *
 * The order is the native worker's: fy_worker_host_boot() before the app loads (so that SIGTERM
 * and the owner pipe work during a slow import), then either fy_worker_host_fail() or
 * fy_worker_host_serve(). */
#ifndef FY_WORKER_HOST_H
#define FY_WORKER_HOST_H

#include <stddef.h>

#include "ferry.h"

/* What a host serves with. Borrowed for fy_worker_host_serve. */
typedef struct fy_worker_host {
    /* What the ready log line names, e.g. "wsgi passenger_wsgi.py". */
    const char *label;
    /* on_request is required. It runs on the main thread between the runtime's waits; a host
     * with an interpreter lock releases it before fy_worker_host_serve and takes it back in
     * on_request (and releases it around its own blocking SDK calls). */
    ferry_callbacks_t callbacks;
    void *data;
    /* Re-forking (docs/protocol.md §5.5): the interpreter's own fork, so its fork hooks run
     * (Python: PyOS_BeforeFork ... PyOS_AfterFork_*; Ruby: Process.fork). Called on the main
     * thread while the worker is idle, without the interpreter lock, like on_request. Returns the
     * child's pid in the parent, 0 in the child, or a negative errno. NULL: the worker answers a
     * re-fork request with an error. In the child, fy_worker_host_serve then returns (0) with
     * fy_worker_host_preloading() true: the host runs its preloader loop, as in a process started
     * as a preloader (below), and serves again in the workers it forks. */
    int (*fork)(void *data);
} fy_worker_host_t;

/* Reads the spawn handshake from the environment (FERRY_OWNER_FD, FERRY_CONTROL_FD: absent
 * means 3 and 4), marks both fds close-on-exec, installs the worker's signal handlers (SIGTERM,
 * SIGUSR1, SIGQUIT, SIGHUP and SIGPIPE ignored) and starts the owner-pipe watcher. Returns 0, or
 * a negative errno after reporting ["error", ...] on the control channel (when open) and in the
 * log: -EBADF when a handshake fd is not open, -EALREADY on a second call. The host unsets the
 * two variables in its own view of the environment so the app's children do not see them. */
int fy_worker_host_boot(void);

/* The app could not be loaded: writes ["error", <summary>, <details>] on the control channel
 * and logs <summary>. The host then exits with status 1. Returns 0 or a negative errno. */
int fy_worker_host_fail(const char *summary, const char *details);

/* Listens, sends ready (offering session protocol v2), and serves requests through <host>
 * until a soft stop (SIGUSR1) or the 10-second rule; then calls on_shutdown. Returns the
 * process exit status (0 after a soft stop). SIGTERM and the owner pipe's EOF end the process
 * without returning, as for native apps. */
int fy_worker_host_serve(const fy_worker_host_t *host);

/* ---- the preloader (smart spawning, docs/protocol.md §5.4, docs/architecture.md) -------------
 * A host started with FERRY_PRELOAD set loads the app once and then, instead of serving, calls
 * fy_worker_host_preload_start() and loops:
 *
 *     while (fy_worker_host_preload_wait() == 1) {     // without the interpreter lock
 *         pid = the interpreter's own fork();          // so its fork hooks run
 *         fy_worker_host_preload_forked(pid or -errno);
 *         if (pid == 0) break;                         // the child: a worker now
 *     }
 *     child: reseed the interpreter's random generators, then fy_worker_host_serve(host)
 *
 * The fork happens on the host's main thread, the one that loaded the app. */

/* True in a process started as a preloader (after fy_worker_host_boot; false again in a worker
 * forked from it), and in the child of a re-fork once fy_worker_host_serve returned. */
int fy_worker_host_preloading(void);

/* Starts the spawn server (an AbstractServer on a thread of this process, src/admin) and sends
 * ["ready", pid, address, password] on the control channel. Returns 0, or a negative errno after
 * reporting ["error", ...]; the host then exits 1. */
int fy_worker_host_preload_start(void);

/* Blocks until the core asks for a worker (returns 1: fork now), or the preloader's idle time
 * (FERRY_PRELOAD seconds, 0 = never) passed without a request (returns 0, logged: exit 0).
 * Reaps exited workers meanwhile. Main thread, without the interpreter lock. */
int fy_worker_host_preload_wait(void);

/* After the host's fork for the request fy_worker_host_preload_wait returned. In the preloader:
 * <pid> is the child's pid, or a negative errno when fork failed (the core then gets ["error",
 * ...]); returns 1. In the child (<pid> 0): becomes that request's worker (its own owner pipe,
 * whose write end goes to the core first; stdout and stderr from the core; the spawn connection
 * as control channel; C generators reseeded; signal mask cleared) and returns 0, so that
 * fy_worker_host_serve follows; or a negative errno after reporting ["error", ...] (exit 1). */
int fy_worker_host_preload_forked(int pid);

/* Called from SIGQUIT's handler after the runtime's "SIGQUIT: pid=N busy=PATH" line and the C
 * stacks, in the thread that took the signal: must be async-signal-safe (Python: faulthandler's
 * dump; Ruby: rb_postponed_job_register_one). NULL: none. */
void fy_worker_host_on_sigquit(void (*fn)(void));

/* Appends " <key>=<value>" to the NUL-terminated line in <buf> (<cap> bytes; cut to fit). The
 * value is quoted when empty or holding a space, '=', '"' or a control character, with \\ \"
 * \n \r \t and \xNN escapes inside (docs/operations.md, "Log format"). */
void fy_worker_host_log_field(char *buf, size_t cap, const char *key, const char *value);

/* Logs "pid=N<fields>: <message>" at <level> (an fy_log_level_t) under <component> ("wsgi",
 * "rack"); <fields> is "" or " key=value..." from fy_worker_host_log_field. <detail> (a
 * traceback; NULL or "": none) follows on lines indented by four spaces, in the same write when
 * it fits the log's line buffer. Touches no interpreter state. */
void fy_worker_host_log(int level, const char *component, const char *fields,
                        const char *message, const char *detail);

/* ferry_response_start with the app's own reason phrase (WSGI "200 Whatever", Rack has none:
 * NULL takes the standard one). <reason> must be printable (no CR, LF or other control
 * characters) and at most FY_WORKER_REASON_MAX (200) bytes; FERRY_EINVAL otherwise. */
int fy_worker_response_start_reason(ferry_request_t *req, int status, const char *reason,
                                    const ferry_field_t *fields, size_t count);

/* The host knows that nothing of the app's runs between its last write and the end of the
 * request (a WSGI result that is a list or tuple, a Rack body that is an Array: no close() to
 * call): the write that completes a declared Content-Length may then leave with the END, in one
 * message, as for native apps (docs/c-sdk.md). */
void fy_worker_request_final_write_with_end(ferry_request_t *req);

/* True while the current request's client is known to be gone (v2 ABORT): the host may stop
 * producing the body early. */
int fy_worker_request_aborted(const ferry_request_t *req);

#endif
