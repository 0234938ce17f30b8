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
/* Bounds the connect to a preloader's spawn server and the sends of a spawn request (local, and
 * the server accepts on a thread of its own: normally microseconds). */
#define FY_SPAWN_PRELOADER_TIMEOUT_MS 2000

typedef struct fy_proc fy_proc_t;

typedef struct fy_spawn_options {
    const char *ferry_bin;     /* executable run as `<ferry_bin> worker <app_root> --type <type>` */
    const char *app_root;      /* absolute path; also the app= of every log line */
    const char *app_type;      /* "rack", "wsgi", "c", or NULL to let the worker detect it */
    const char *environment;   /* FERRY_ENV; NULL means "production" */
    const char *instance_dir;  /* FERRY_INSTANCE_DIR (fallback socket files); may be NULL */
    unsigned start_timeout_ms; /* not ready by then: SIGKILL and a boot failure; 0 = 60 s */
    bool preload;              /* start a preloader (FERRY_PRELOAD, docs/protocol.md §5.4) */
    unsigned preload_idle_s;   /* its idle time: FERRY_PRELOAD's value; 0 = never */
    bool keep_control;         /* smart workers: keep the control channel after ready, so the
                                  pool can ask one to re-fork (docs/protocol.md §5.5) */
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
/* Milliseconds from the spawn request to ready (0 until ready). */
unsigned fy_proc_spawn_ms(const fy_proc_t *proc);
/* True for a worker forked by a preloader (fy_proc_spawn_smart). */
bool fy_proc_forked(const fy_proc_t *proc);
/* True for a proc started with opts->preload whose ready message named it a preloader (its
 * fifth item "preloader"); false for a loader that ignored FERRY_PRELOAD and became a worker. */
bool fy_proc_preloads(const fy_proc_t *proc);
/* A smart worker's control channel, kept after ready (opts->keep_control): the caller owns the
 * fd from now on. -1 when there is none (not kept, or taken already). */
int fy_proc_take_control(fy_proc_t *proc);

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

/* ---- smart spawning (preloader.c; docs/protocol.md §5.4) ------------------------------------
 * A preloader is one process per app (`ferry worker` with FERRY_PRELOAD) that loaded the app and
 * forks workers on request. fy_proc_spawn_smart gives the same fy_proc lifecycle and callbacks as
 * fy_proc_spawn; the worker is forked by the preloader instead of exec'd by us, and is owned by
 * us exactly as a direct one: its owner pipe's write end is ours (passed over the spawn
 * connection), its stdout and stderr are our pipes, its exit is watched through a pidfd. The
 * preloader is started on the first spawn, and again on the next spawn after it exited (idle
 * time, crash, kill). Loop thread only. */
typedef struct fy_preloader fy_preloader_t;

/* Creates the preloader of one app (nothing starts yet). Copies <opts>; opts->preload and
 * preload_idle_s say how it is started. */
fy_preloader_t *fy_preloader_new(uv_loop_t *loop, const fy_spawn_options_t *opts);

/* Asks for a worker forked by <pl>'s preloader, starting the preloader when none runs. Every
 * outcome comes through <cbs> as for fy_proc_spawn: a preloader that fails to boot fails each
 * waiting spawn with its error (status -ENOEXEC, -ETIMEDOUT, ...); a preloader that could not be
 * reached fails it with -EAGAIN (the preloader is dropped: the next spawn starts a new one, and
 * the caller should not count this as the app's boot failure). Returns 0 and sets *out, or
 * -EINVAL (as fy_proc_spawn), -ESHUTDOWN after fy_preloader_shutdown, or -ENOTSUP once the
 * app's loader turned out not to preload (it answered FERRY_PRELOAD as a worker: the caller
 * spawns directly from then on; fy_preloader_unsupported says so). */
int fy_proc_spawn_smart(fy_preloader_t *pl, const fy_spawn_callbacks_t *cbs, void *data,
                        fy_proc_t **out);

/* True once the app's loader answered FERRY_PRELOAD as a plain worker (a third-party loader
 * that implements only the spawn handshake): smart spawning is not possible for this app. */
bool fy_preloader_unsupported(const fy_preloader_t *pl);

/* The code changed (a rolling restart): the running preloader is stopped now (its workers stay;
 * they are not its to stop) and the next spawn boots a new one. Spawns waiting for a booting
 * preloader wait for the new one. */
void fy_preloader_restart(fy_preloader_t *pl);

/* Re-forking (docs/protocol.md §5.5): asks <worker>, a smart worker of <pl> whose control channel
 * was kept (opts->keep_control) and which gets no requests until <done> runs, to fork the next
 * preloader. When that process is ready it replaces the current preloader (which is stopped;
 * the workers it forked stay) and <done>(<data>, 0) runs; on failure the current preloader stays
 * and <done> gets a negative errno. <done> also runs, from inside the call, when
 * fy_preloader_restart (-ECANCELED) or fy_preloader_shutdown (-ESHUTDOWN) cancels it.
 * Returns 0 (<done> will run), or -EALREADY (one runs), -EAGAIN (no ready preloader), -ENOTCONN
 * (no kept channel), -ESHUTDOWN; <done> does not run then. */
typedef void (*fy_preloader_refork_cb)(void *data, int status);
int fy_preloader_refork(fy_preloader_t *pl, fy_proc_t *worker, fy_preloader_refork_cb done,
                        void *data);

/* Stops the preloader and frees <pl> once its process is reaped; spawns waiting for it fail
 * with -ESHUTDOWN. <pl> must not be used after this call. */
void fy_preloader_shutdown(fy_preloader_t *pl);

/* What `ferry status` shows. */
typedef struct fy_preloader_info {
    const char *state; /* "off" (none runs), "booting", "ready" (static strings) */
    pid_t pid;         /* 0 when off */
    uint64_t age_ms;   /* since it became ready; 0 unless ready */
    unsigned starts;   /* preloaders started since fy_preloader_new */
    unsigned forks;    /* workers asked of it since fy_preloader_new */
    unsigned reforks;  /* preloaders that replaced it by a re-fork */
    pid_t reforking_from; /* the worker forking the next one now, or 0 */
    const char *last_exit; /* why the last preloader ended ("" none yet): "idle time", ... */
} fy_preloader_info_t;
void fy_preloader_get_info(const fy_preloader_t *pl, fy_preloader_info_t *out);

#endif
