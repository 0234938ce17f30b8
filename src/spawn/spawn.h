/* Direct spawning (docs/protocol.md §5, spawn handshake): starts one
 * `ferry worker APP_ROOT --type TYPE` process on a libuv loop, reads its
 * ["ready", pid, address, secret] or ["error", summary, details] from the control channel,
 * captures its stdout/stderr line by line into the log, holds the write end of its owner pipe,
 * and reaps it.
 *
 * A fy_proc is one such child. It is owned by whoever spawned it (the pool); loop thread only.
 * Lifecycle, told by callbacks:
 *   spawn → on_ready(0)            the worker listens; address and secret are valid
 *         → on_ready(<0)           boot failure: the process has already exited and been reaped;
 *                                  summary/details say why (no on_exit follows)
 *   ready → on_exit(status, sig)   the worker exited (after its output was drained)
 *   fy_proc_close → on_closed      every handle is closed and the child reaped; the proc is freed
 *                                  right after on_closed returns
 * Callbacks never run from inside fy_proc_spawn, fy_proc_stop or fy_proc_close. */
#ifndef FY_SPAWN_SPAWN_H
#define FY_SPAWN_SPAWN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "ipc/sock.h"

/* Longest captured output line; longer lines are logged in pieces of this size. */
#define FY_SPAWN_LINE_MAX 4096
/* How much of the worker's stderr is kept for the details of a boot failure. */
#define FY_SPAWN_STDERR_TAIL 4096
/* How long a worker may take to exit after it ended the handshake without ready (an error
 * message, or its control channel closed) before it is killed. */
#define FY_SPAWN_EXIT_GRACE_MS 2000
/* How long after the exit of a child its output pipes may still be drained. */
#define FY_SPAWN_DRAIN_MS 300

typedef struct fy_proc fy_proc_t;

typedef struct fy_spawn_options {
    const char *ferry_bin;     /* executable run as `<ferry_bin> worker <app_root> --type <type>` */
    const char *app_root;      /* absolute path; also the app= of every log line */
    const char *app_type;      /* "rack", "wsgi", "c", or NULL to let the worker detect it */
    const char *environment;   /* FERRY_ENV; NULL means "production" */
    const char *instance_dir;  /* FERRY_INSTANCE_DIR (fallback socket files); may be NULL */
    unsigned start_timeout_ms; /* not ready by then: SIGKILL and a boot failure; 0 = 60 s */
    bool set_user;             /* run the worker as uid/gid (a root core's --user) */
    uid_t uid;
    gid_t gid;
} fy_spawn_options_t;

typedef struct fy_spawn_callbacks {
    /* Exactly once (unless fy_proc_close came first). <status> 0: ready. Negative: boot failure,
     * -ENOEXEC (error message, or exited before ready), -ETIMEDOUT (start timeout), -EPROTO
     * (malformed handshake), or the errno of a failed exec; see fy_proc_error_summary. */
    void (*on_ready)(fy_proc_t *proc, int status, void *data);
    /* Once, for a worker that was ready, when it has exited. <exit_status> is its exit code,
     * <term_signal> the signal that killed it or 0. */
    void (*on_exit)(fy_proc_t *proc, int64_t exit_status, int term_signal, void *data);
    /* Once, after fy_proc_close, when everything is closed and reaped. Required. */
    void (*on_closed)(fy_proc_t *proc, void *data);
} fy_spawn_callbacks_t;

/* Starts a worker on <loop>. Copies <opts> and <cbs>; <data> is passed to every callback.
 * Returns 0 and sets *out (a failed exec is reported later through on_ready, not here), or
 * -EINVAL when ferry_bin, app_root or on_closed is missing. The owner pipe's write end and the
 * parent's end of the control channel are CLOEXEC, so no other child inherits them. */
int fy_proc_spawn(uv_loop_t *loop, const fy_spawn_options_t *opts, const fy_spawn_callbacks_t *cbs,
                  void *data, fy_proc_t **out);

/* The pid of the child process (known right after fy_proc_spawn; 0 when the exec failed). */
pid_t fy_proc_pid(const fy_proc_t *proc);
/* What the ready message said: the worker's address ("abstract:NAME" or "unix:PATH") and its
 * connect password. Empty strings until on_ready(0). */
const char *fy_proc_address(const fy_proc_t *proc);
const char *fy_proc_secret(const fy_proc_t *proc);
/* The session protocol the worker offered: 2 when its ready message had the fifth item "2"
 * (docs/protocol.md §4.1), else 1. Valid after on_ready(0). */
unsigned fy_proc_protocol(const fy_proc_t *proc);
/* Why the boot failed: one line, and the details (the worker's own details, else the tail of its
 * stderr; may be ""). Empty strings unless on_ready reported a failure. */
const char *fy_proc_error_summary(const fy_proc_t *proc);
const char *fy_proc_error_details(const fy_proc_t *proc);
/* The last lines of the child's stderr (at most FY_SPAWN_STDERR_TAIL bytes, starting at a line
 * when cut) as a new string the caller frees; "" when it wrote nothing. */
char *fy_proc_stderr_tail(const fy_proc_t *proc);
/* True once the child has exited. */
bool fy_proc_exited(const fy_proc_t *proc);

/* Sends <sig> to the child now and, when <kill_after_ms> is not 0, SIGKILL if it is still alive
 * that many ms later (a later call replaces that deadline). No-op once the child has exited.
 * Returns 0 or a negative errno from kill(2). */
int fy_proc_stop(fy_proc_t *proc, int sig, unsigned kill_after_ms);

/* Ends the proc: closes the owner pipe (the worker sees EOF and exits) and the control channel;
 * a child that still runs is SIGKILLed and reaped first. No callback but on_closed runs after
 * this call; the proc is freed after on_closed. Call once. */
void fy_proc_close(fy_proc_t *proc);

/* Validates a ready message's fields: <pid> decimal and > 0, <address> "abstract:NAME" or
 * "unix:PATH" with a non-empty name shorter than FY_ADDRESS_MAX, <secret> exactly 32 lowercase
 * hex digits. Returns 0 and sets *pid_out, or -EPROTO and points *why at a static reason. */
int fy_spawn_check_ready(const char *pid, const char *address, const char *secret, pid_t *pid_out,
                         const char **why);

#endif
