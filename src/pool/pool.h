/* The application pool (docs/operations.md, "Workers"): one app's workers, its request queue,
 * spawning and the policies that retire workers (idle time, max requests, memory limit, max
 * request time, crashes, the 10-second boot rule). Owned by the core; loop thread only.
 *
 * The HTTP front talks to the pool through a checkout/checkin pair: it checks a worker out for
 * one request, talks to the worker's socket itself (address + secret), and checks it back in
 * with what happened. Between the two the worker is busy and serves nobody else. */
#ifndef FY_POOL_POOL_H
#define FY_POOL_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "core/hist.h"
#include "spawn/spawn.h"

typedef struct fy_pool fy_pool_t;
typedef struct fy_worker fy_worker_t;

typedef struct fy_pool_options {
    const char *app_root;             /* absolute path */
    const char *app_type;             /* "rack", "wsgi" or "c" */
    const char *environment;          /* "production" or "development" (FERRY_ENV) */
    const char *ferry_bin;            /* the binary to exec as `ferry worker` */
    const char *instance_dir;         /* fallback socket files live here */
    unsigned max_pool_size;           /* workers in all; default 6 */
    unsigned min_instances;           /* kept alive even when idle; default 1 */
    unsigned pool_idle_time_s;        /* idle workers above min are stopped after this; 0 never */
    unsigned max_request_queue_size;  /* waiting requests beyond this get 503; 0 = unlimited */
    unsigned max_queue_time_s;        /* a request queued longer gets 503; 0 = no limit */
    unsigned max_requests;            /* a worker is replaced after this many; 0 = unlimited */
    unsigned start_timeout_s;         /* a worker not ready by then is killed: boot failure */
    uint64_t memory_limit_kib;        /* a worker whose PSS passes this is replaced; 0 = none */
    /* How often each idle or busy worker's PSS is read against memory_limit_kib; 0 means the
     * default, 5000. Only tests set it (lower, to keep them short). */
    unsigned memory_check_interval_ms;
    /* Dispatch-ahead (docs/protocol.md §4.3): how many requests beyond the one it serves a busy
     * v2 worker may be handed when no worker is idle; 0 (off) .. FY_POOL_DISPATCH_AHEAD_MAX. */
    unsigned dispatch_ahead;
    /* Dispatch-ahead goes only to a worker whose current request has run less than this many
     * microseconds: one that has run longer may run much longer, and a request queued behind it
     * would wait for it; what dispatch-ahead saves (a wake-up, tens of microseconds) matters
     * only for short requests. 0 means the default, FY_POOL_AHEAD_YOUNG_US; tests set it. */
    unsigned dispatch_ahead_young_us;
    /* Smart spawning (docs/architecture.md): workers are forked by a preloader that loaded the
     * app once. Rack and WSGI only; false: every worker loads the app itself (direct). */
    bool smart_spawn;
    unsigned max_preloader_idle_time_s; /* the preloader exits after this long unused; 0 never */
    /* Re-forking (docs/architecture.md): once a smart worker has served this many requests it
     * forks the next preloader, and a rolling replacement forks every worker from it; once per
     * preloader booted from the app's code (a restart, or an idle preloader started again).
     * 0: off. */
    unsigned refork_after;
    /* Workers run as this user and group (a core that stays root, docs/deploying.md "Users");
     * false: as the core. */
    bool worker_set_user;
    uid_t worker_uid;
    gid_t worker_gid;
} fy_pool_options_t;

#define FY_POOL_DISPATCH_AHEAD_MAX 4u
#define FY_POOL_AHEAD_YOUNG_US 1000u

/* A request waiting for a worker. Embedded in the caller's request; the caller sets <cb> and
 * <data>; the rest is the pool's. */
typedef struct fy_pool_waiter fy_pool_waiter_t;
typedef void (*fy_pool_waiter_cb)(fy_pool_waiter_t *waiter, fy_worker_t *worker, int status);
struct fy_pool_waiter {
    fy_pool_waiter_cb cb;
    void *data;
    /* private */
    fy_pool_waiter_t *prev, *next;
    uint64_t queued_at_ms;
    int queued;
};

/* What a checked-out worker did with its request. */
typedef enum fy_worker_outcome {
    FY_WORKER_OK = 0,        /* served the request; may serve the next */
    FY_WORKER_BROKEN,        /* connect failed, bad head, reset or EOF early: replaced */
    FY_WORKER_TIMED_OUT,     /* passed max request time: SIGQUIT (backtrace), then killed */
    FY_WORKER_EXITING,       /* served it and said it exits now (v2 END with CLOSING) */
    FY_WORKER_NOT_STARTED,   /* dispatched ahead, never started: not counted as a request */
} fy_worker_outcome_t;

/* The last boot failure of the app: what the 503 page shows. */
typedef struct fy_app_error {
    const char *summary;     /* one line, from the worker's ["error", summary, details] */
    const char *details;     /* the backtrace; may be "" */
    const char *error_id;    /* random id that is also in the log line */
} fy_app_error_t;

/* Creates a pool on <loop>; copies <opts>. Returns 0 or a negative errno. */
int fy_pool_new(uv_loop_t *loop, const fy_pool_options_t *opts, fy_pool_t **out);

/* Spawns min_instances workers (asynchronously). Returns 0 or a negative errno. */
int fy_pool_start(fy_pool_t *pool);

/* Asks for an idle worker. Returns 1 and sets *worker when one is idle now (no callback then);
 * 0 when <waiter> was queued: its cb runs later exactly once, with a worker and status 0, or with
 * NULL and -ETIMEDOUT (max queue time), -ENOEXEC (the app failed to boot: see
 * fy_pool_boot_error), -ESHUTDOWN (the pool is stopping). Returns -EBUSY when the queue is full,
 * -ENOEXEC when the app is failing to boot and inside its 10-second retry pause (and no worker is
 * alive), -ESHUTDOWN after fy_pool_shutdown. Callbacks never run from inside this call.
 * At most once a second it also stats APP_ROOT/tmp/restart.txt: when the file's mtime differs
 * from the one seen last (recorded by fy_pool_new, so a file older than the pool restarts
 * nothing), a rolling restart starts (fy_pool_restart) before this request is placed. */
int fy_pool_checkout(fy_pool_t *pool, fy_pool_waiter_t *waiter, fy_worker_t **worker);

/* Removes a queued <waiter> (its client went away); its cb will not run. No-op if not queued. */
void fy_pool_cancel(fy_pool_t *pool, fy_pool_waiter_t *waiter);

/* The queued waiter after <after> (NULL: the first, next in line), or NULL at the end. For
 * `ferry status`; the queue must not change while it is walked. */
const fy_pool_waiter_t *fy_pool_queue_next(const fy_pool_t *pool, const fy_pool_waiter_t *after);

/* Puts <waiter> back at the head of the queue, with its first queue time, whatever the queue's
 * size: its request was dispatched ahead to a worker that went away before starting it
 * (docs/protocol.md §4.3). Several are put back last first, so that they keep their order. Its
 * cb runs later as for fy_pool_checkout. Returns 0, or -ESHUTDOWN (nothing queued). */
int fy_pool_requeue(fy_pool_t *pool, fy_pool_waiter_t *waiter);

/* Returns a checked-out worker with the outcome of its request. With dispatch-ahead a worker is
 * checked out once per request it was handed and stays busy until the last check-in; a BROKEN
 * or TIMED_OUT outcome retires it at once. */
void fy_pool_checkin(fy_pool_t *pool, fy_worker_t *worker, fy_worker_outcome_t outcome);

/* The front's persistent connection to a v2 worker (docs/protocol.md §4) lives as long as the
 * worker: the pool keeps an opaque pointer to it and, when the worker exits, clears it and calls
 * <cb> with it (the front then closes the connection and checks in whatever it still held).
 * Set once, before the first checkout. */
void fy_pool_set_worker_gone(fy_pool_t *pool,
                             void (*cb)(fy_worker_t *w, void *session, void *data), void *data);
void *fy_worker_session(const fy_worker_t *worker);
void fy_worker_set_session(fy_worker_t *worker, void *session);
/* 2 when the worker offered session protocol v2 in its ready message, else 1. */
unsigned fy_worker_protocol(const fy_worker_t *worker);

const char *fy_worker_address(const fy_worker_t *worker);   /* "abstract:NAME" or "unix:PATH" */
const char *fy_worker_secret(const fy_worker_t *worker);    /* FERRY_CONNECT_PASSWORD */
pid_t fy_worker_pid(const fy_worker_t *worker);

/* The last boot failure, or NULL when the app's last spawn succeeded. Valid until the next
 * pool call. */
const fy_app_error_t *fy_pool_boot_error(const fy_pool_t *pool);

/* Starts a rolling restart (docs/operations.md, "Restarting"): every worker alive now (spawning,
 * idle or busy) belongs to the old generation and is replaced, one at a time: a new-generation
 * worker is spawned, and once it is ready one old worker is retired (an idle one at once with
 * SIGUSR1; a busy one when it is checked in, after its request; a spawning one as soon as it is
 * ready). Old workers keep serving until they are retired, so no request waits for the restart
 * or fails because of it.
 * The replacement may be the (max_pool_size + 1)th live worker: old workers already marked to
 * retire after their request are not counted for it, retiring ones never are.
 *
 * The restart stops at the first boot failure of a worker it started or of any new-generation
 * worker: the error is recorded as for any boot failure (fy_pool_boot_error, the 10-second rule)
 * and the old workers that are left keep serving; fy_pool_get_stats then says restart_failed.
 * A restart asked while one runs starts over from the current state: the generation number goes
 * up again and every worker alive at that moment, those already replaced included, is old (they
 * may have loaded the code the new restart is for).
 * Returns 0 (also when no worker is alive: nothing to replace) or -ESHUTDOWN. */
int fy_pool_restart(fy_pool_t *pool);

/* Graceful stop: fails queued waiters with -ESHUTDOWN, soft-terminates (SIGUSR1) idle workers
 * now and busy ones as they are checked in, SIGKILLs whatever is left after <timeout_ms>; <done>
 * runs once every worker has exited and been reaped. */
void fy_pool_shutdown(fy_pool_t *pool, unsigned timeout_ms, void (*done)(fy_pool_t *pool, void *data),
                      void *data);

/* Frees a pool whose shutdown completed (its <done> ran; may be called from inside <done>). A
 * pool that was never started still needs fy_pool_shutdown first. */
void fy_pool_free(fy_pool_t *pool);

/* Why a worker process ended (docs/operations.md, "Monitoring": ferry_worker_exits_total): one
 * table, the enum and the label each metric and log line uses. */
#define FY_POOL_EXIT_REASONS(X)                                                                \
    /* enum, metric label, log text ("worker stopped (<text>)") */                            \
    X(CRASH, "crash", "crashed")          /* died by itself while idle or busy */              \
    X(BOOT_FAILURE, "boot_failure", "boot failure") /* never ready, or crashed right after */  \
    X(MAX_REQUESTS, "max_requests", "max requests")                                            \
    X(MEMORY_LIMIT, "memory_limit", "memory limit")                                            \
    X(MAX_REQUEST_TIME, "max_request_time", "max request time")                                \
    X(IDLE, "idle", "idle")                                                                    \
    X(RESTART, "restart", "rolling restart")                                                   \
    X(ALWAYS_RESTART, "always_restart", "always_restart.txt") /* a fresh worker per request */ \
    X(BROKEN, "broken", "broken")         /* broke a request: bad response, early close */     \
    X(SHUTDOWN, "shutdown", "shutdown")                                                        \
    X(SELF, "self", "the worker stopped itself") /* said it exits (v2 END with CLOSING) */

typedef enum fy_pool_exit_reason {
#define FY_X(e, label, text) FY_POOL_EXIT_##e,
    FY_POOL_EXIT_REASONS(FY_X)
#undef FY_X
    FY_POOL_EXIT_COUNT
} fy_pool_exit_reason_t;

/* Why a worker was spawned (ferry_worker_spawns_total). */
#define FY_POOL_SPAWN_REASONS(X)                                                               \
    X(MIN_INSTANCES, "min_instances")     /* fewer alive than min_instances */                 \
    X(DEMAND, "demand")                   /* requests waiting */                               \
    X(RESTART, "restart")                 /* a rolling restart's replacement */

typedef enum fy_pool_spawn_reason {
#define FY_X(e, s) FY_POOL_SPAWN_##e,
    FY_POOL_SPAWN_REASONS(FY_X)
#undef FY_X
    FY_POOL_SPAWN_COUNT
} fy_pool_spawn_reason_t;

/* The label of <reason> ("crash", "max_requests", ...). */
const char *fy_pool_exit_reason_name(fy_pool_exit_reason_t reason);
const char *fy_pool_spawn_reason_name(fy_pool_spawn_reason_t reason);

/* Bounds of the spawn duration histogram (spawn to ready), in milliseconds. */
#define FY_POOL_SPAWN_BUCKETS_MS 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000

/* A snapshot of the pool for `ferry status` and tests. */
typedef struct fy_pool_stats {
    unsigned spawning;        /* started, not ready yet */
    unsigned idle;
    unsigned busy;            /* checked out */
    unsigned retiring;        /* told to stop; not yet reaped */
    unsigned queued;          /* waiters */
    uint64_t spawns_started;  /* every spawn attempt since fy_pool_new */
    uint64_t boot_failures;   /* attempts that ended without ready */
    uint64_t requests_done;   /* check-ins */
    unsigned generation;      /* of workers spawned now; 1, plus one per fy_pool_restart */
    bool restarting;          /* a rolling restart is running */
    unsigned old_workers;     /* spawning, idle or busy workers of an older generation */
    uint64_t restarts;        /* fy_pool_restart calls that started a restart */
    uint64_t reforks;         /* re-forks that replaced the preloader */
    bool restart_failed;      /* the last restart stopped on a boot failure */
    uint64_t memory_limit_replacements; /* workers retired for passing memory_limit_kib */
    unsigned max_pool_size;              /* as configured */
    unsigned max_request_queue_size;     /* as configured; 0 = unlimited */
    uint64_t spawns[FY_POOL_SPAWN_COUNT]; /* spawn attempts by reason (sum: spawns_started) */
    uint64_t exits[FY_POOL_EXIT_COUNT];   /* workers that ended, by reason: counted when reaped
                                           * (a boot failure: when it is known) */
    fy_hist_t spawn_duration;            /* from spawn to ready, for workers that became ready */
} fy_pool_stats_t;

void fy_pool_get_stats(const fy_pool_t *pool, fy_pool_stats_t *out);

/* One worker, as `ferry status` shows it. */
typedef struct fy_pool_worker_info {
    pid_t pid;
    const char *state;   /* "spawning", "idle", "busy", "retiring" or "gone" (static strings) */
    unsigned requests;   /* check-ins so far */
    uint64_t age_ms;     /* since it became ready; 0 while spawning */
    uint64_t idle_ms;    /* since its last check-in when idle, else 0 */
    unsigned generation; /* the pool's generation when it was spawned (see fy_pool_restart) */
    unsigned protocol;   /* session protocol: 1 or 2; 0 while spawning */
    const char *spawn_method; /* "smart" (forked by the preloader) or "direct" */
    unsigned spawn_ms;   /* from the spawn request to ready; 0 while spawning */
} fy_pool_worker_info_t;

/* The app's preloader, for `ferry status`: false when the pool spawns directly. */
bool fy_pool_preloader_info(const fy_pool_t *pool, fy_preloader_info_t *out);

/* Fills at most <max> entries of <out> (may be NULL when <max> is 0) with the pool's workers,
 * newest first. Returns the number of workers, which may exceed <max>. */
size_t fy_pool_list_workers(const fy_pool_t *pool, fy_pool_worker_info_t *out, size_t max);

#endif
