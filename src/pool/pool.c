/* The application pool: one app's workers, its FIFO queue and its policies. See pool.h for the
 * contract with the HTTP front and README.md for the states and defaults. */
#include "pool/pool.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/log.h"
#include "ipc/procmem.h"
#include "ipc/sock.h"
#include "spawn/spawn.h"

/* The 10-second rule: a failing app is retried at most once per this many ms. */
#define BOOT_RETRY_PAUSE_MS 10000
/* Policy ticks: queue time and idle time are checked this often. */
#define TICK_MS 200
/* Grace after SIGUSR1 (idle reaping, max requests) before SIGKILL. */
#define SOFT_STOP_GRACE_MS 10000
/* Grace after SIGQUIT (max request time) or SIGTERM (broken worker) before SIGKILL. */
#define HARD_STOP_GRACE_MS 1000
/* tmp/restart.txt is looked at by a checkout at most this often. */
#define RESTART_TXT_CHECK_MS 1000
/* Each worker's PSS is read this often for the memory limit (fy_pool_options_t can lower it for
 * tests). Not on every tick: reading /proc/PID/smaps_rollup walks the worker's page tables in the
 * loop thread, holding its mmap lock; measured at about 1.2 ms for a Python worker with 100 MiB
 * resident (Linux 6.x, 2 vCPUs), so 6 such workers read every 200 ms tick would take 3% of the
 * loop, while every 5 s they take 0.15%. A worker's turn counts from when it became ready, so
 * workers started apart are read on different ticks. */
#define MEMORY_CHECK_INTERVAL_MS 5000

typedef enum worker_state {
    W_SPAWNING = 0,
    W_IDLE,
    W_BUSY,
    W_RETIRING,
    W_GONE,
} worker_state_t;

static const char *const state_names[] = {"spawning", "idle", "busy", "retiring", "gone"};

struct fy_worker {
    fy_pool_t *pool;
    fy_proc_t *proc; /* NULL once its handles are closed */
    worker_state_t state;
    unsigned checkouts; /* requests the front holds it for (more than one only with
                         * dispatch-ahead); freed only after the last check-in */
    unsigned protocol;  /* session protocol it speaks: 1 or 2 */
    void *session;      /* the front's persistent connection to it (v2), or NULL */
    pid_t pid;
    char address[FY_ADDRESS_MAX];
    char secret[FY_SECRET_HEX_LEN + 1];
    unsigned requests;
    uint64_t current_since_ns; /* when the request it serves now started (uv_hrtime) */
    uint64_t idle_since_ms;
    uint64_t ready_at_ms;
    bool retired;              /* told to stop; else any exit is unexpected */
    fy_pool_exit_reason_t retire_reason; /* why it was told to stop */
    uint64_t spawned_at_ms;
    bool retire_lost_request;  /* retired because a request failed (broken, timed out) */
    unsigned generation;       /* the pool's generation when it was spawned */
    bool replacement;          /* spawned by a rolling restart to replace an old worker */
    bool retire_when_free;     /* picked by a restart: retired at check-in, or once ready */
    bool over_memory_limit;    /* busy when its PSS passed the limit: retired at check-in */
    bool forked;               /* spawned by the preloader (smart) */
    bool reforking;            /* forking the next preloader: no request is dispatched to it */
    unsigned spawn_ms;         /* spawn request to ready */
    uint64_t memory_check_at_ms; /* its PSS is read on the first tick from then on */
    fy_worker_t *prev, *next;
};

struct fy_pool {
    uv_loop_t *loop;
    fy_pool_options_t o; /* strings point at the copies below */
    char *app_root, *app_type, *environment, *ferry_bin, *instance_dir;

    fy_worker_t *workers; /* every worker not yet freed */
    fy_pool_waiter_t *qhead, *qtail;
    unsigned queued;

    uv_timer_t kick_timer;     /* zero timer: runs process() on the next loop turn */
    uv_timer_t tick_timer;     /* policies */
    uv_timer_t shutdown_timer; /* SIGKILL deadline of the shutdown */
    int open_handles;

    bool shutting_down;
    bool closing;
    bool closed;
    void (*done)(fy_pool_t *pool, void *data);
    void *done_data;
    uint64_t shutdown_deadline_ms;

    /* Requests done since one ran past the dispatch-ahead young limit (UINT64_MAX: none yet);
     * dispatch-ahead waits for AHEAD_QUIET_REQUESTS of them (pick_ahead). */
    uint64_t done_since_long;

    bool ever_ready; /* a worker of this app has become ready at least once */
    bool has_boot_error;
    uint64_t pause_until_ms;
    char *err_summary, *err_details;
    char err_id[17];
    fy_app_error_t err;

    /* Rolling restarts: workers of a generation below <generation> are old. */
    unsigned generation;
    bool restarting;
    bool restart_failed;
    unsigned restart_replaced; /* old workers the running restart has retired or picked */
    char *restart_txt;         /* APP_ROOT/tmp/restart.txt */
    char *always_restart_txt;  /* APP_ROOT/tmp/always_restart.txt */
    bool always_restart;       /* it existed at the last look */
    uint64_t always_restart_next_check_ms;
    bool restart_txt_seen;     /* it existed at the last look, with this mtime: */
    struct timespec restart_txt_mtime;
    uint64_t restart_txt_next_check_ms;

    bool memory_read_warned; /* a worker's PSS could not be read once: said so, not again */

    fy_preloader_t *preloader; /* smart spawning; NULL: direct */
    /* Re-forking: the worker forking the next preloader now, and whether the preloader booted
     * <refork_starts>-th (fy_preloader_info_t.starts) has had its re-fork (or given up). */
    fy_worker_t *refork_worker;
    bool refork_done;
    unsigned refork_starts;

    void (*worker_gone)(fy_worker_t *w, void *session, void *data);
    void *worker_gone_data;

    fy_pool_stats_t stats;
};

static void process(fy_pool_t *pool);
static void kick(fy_pool_t *pool);

/* --- helpers ----------------------------------------------------------------------------- */

static uint64_t now_ms(const fy_pool_t *pool)
{
    return uv_now(pool->loop);
}

static void count(const fy_pool_t *pool, unsigned n[5])
{
    memset(n, 0, 5 * sizeof n[0]);
    for (fy_worker_t *w = pool->workers; w; w = w->next)
        n[w->state]++;
}

static unsigned live_count(const fy_pool_t *pool)
{
    unsigned n[5];
    count(pool, n);
    return n[W_IDLE] + n[W_BUSY];
}

static bool is_alive(const fy_worker_t *w)
{
    return w->state == W_SPAWNING || w->state == W_IDLE || w->state == W_BUSY;
}

/* Alive and spawned before the last fy_pool_restart. */
static bool is_old(const fy_pool_t *pool, const fy_worker_t *w)
{
    return is_alive(w) && w->generation < pool->generation;
}

static unsigned old_count(const fy_pool_t *pool)
{
    unsigned n = 0;
    for (const fy_worker_t *w = pool->workers; w; w = w->next)
        n += is_old(pool, w);
    return n;
}

static bool in_boot_pause(const fy_pool_t *pool)
{
    return pool->has_boot_error && now_ms(pool) < pool->pause_until_ms;
}

/* The idle worker that has waited longest (least recently used), or NULL. */
static fy_worker_t *pick_idle(fy_pool_t *pool)
{
    fy_worker_t *best = NULL;
    for (fy_worker_t *w = pool->workers; w; w = w->next) {
        if (w->state == W_IDLE && (best == NULL || w->idle_since_ms < best->idle_since_ms))
            best = w;
    }
    return best;
}

/* With dispatch-ahead: the busy v2 worker of the current generation with the fewest requests
 * that may take one more (docs/protocol.md §4.3), or NULL. Workers about to be retired, and those
 * that would pass max requests with it, are not chosen. */
/* Dispatch-ahead (docs/protocol.md §4.3) queues a request behind the one a busy v2 worker
 * serves. That saves a wake-up when the requests are short and is head-of-line blocking when the
 * one in front is slow, so it is done only while the app's requests are short: the worker's
 * current request has run less than the young limit (FY_POOL_AHEAD_YOUNG_US), and none of the
 * last AHEAD_QUIET_REQUESTS requests ran longer. A mixed app (1 request in 20 sleeping) thus
 * gets none, and a fast one gets it all the time (docs/performance.md). */
#define AHEAD_QUIET_REQUESTS 1000u

static uint64_t young_ns(const fy_pool_t *pool)
{
    unsigned us = pool->o.dispatch_ahead_young_us ? pool->o.dispatch_ahead_young_us
                                                  : FY_POOL_AHEAD_YOUNG_US;
    return (uint64_t)us * 1000;
}

static fy_worker_t *pick_ahead(fy_pool_t *pool)
{
    unsigned depth = pool->o.dispatch_ahead;
    if (depth == 0)
        return NULL;
    if (pool->done_since_long < AHEAD_QUIET_REQUESTS)
        return NULL; /* the app has slow requests: any busy worker may be serving one */
    fy_worker_t *best = NULL;
    uint64_t young = young_ns(pool);
    uint64_t now_ns = uv_hrtime();
    for (fy_worker_t *w = pool->workers; w; w = w->next) {
        if (w->state != W_BUSY || w->protocol != 2 || w->checkouts > depth ||
            w->retire_when_free || w->over_memory_limit || w->reforking ||
            w->generation < pool->generation)
            continue;
        if (now_ns - w->current_since_ns >= young)
            continue; /* its request may be a slow one: do not queue behind it */
        if (pool->o.max_requests && w->requests + w->checkouts >= pool->o.max_requests)
            continue;
        if (best == NULL || w->checkouts < best->checkouts)
            best = w;
    }
    return best;
}

/* An idle worker, else one that may take a request ahead; marks it checked out once more. */
static fy_worker_t *take_worker(fy_pool_t *pool)
{
    fy_worker_t *w = pick_idle(pool);
    if (w == NULL)
        w = pick_ahead(pool);
    if (w != NULL) {
        if (w->checkouts == 0)
            w->current_since_ns = uv_hrtime();
        w->state = W_BUSY;
        w->checkouts++;
    }
    return w;
}

static void worker_unlink(fy_pool_t *pool, fy_worker_t *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        pool->workers = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
}

static void worker_free(fy_pool_t *pool, fy_worker_t *w)
{
    if (pool->refork_worker == w)
        pool->refork_worker = NULL; /* its re-fork fails on its own, the channel closed */
    worker_unlink(pool, w);
    free(w);
}

/* One line: control characters of <s> escaped, so multi-line details stay on one log line. */
static char *one_line(const char *s)
{
    size_t n = strlen(s);
    char *out = fy_xmalloc(n * 4 + 1);
    size_t k = 0;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '\n') {
            out[k++] = '\\';
            out[k++] = 'n';
        } else if (*c == '\t') {
            out[k++] = '\\';
            out[k++] = 't';
        } else if (*c < 0x20 || *c == 0x7f) {
            k += (size_t)sprintf(out + k, "\\x%02x", *c);
        } else {
            out[k++] = (char)*c;
        }
    }
    out[k] = '\0';
    return out;
}

/* --- the queue ----------------------------------------------------------------------------- */

static void queue_push(fy_pool_t *pool, fy_pool_waiter_t *wt)
{
    wt->next = NULL;
    wt->prev = pool->qtail;
    if (pool->qtail)
        pool->qtail->next = wt;
    else
        pool->qhead = wt;
    pool->qtail = wt;
    wt->queued = 1;
    wt->queued_at_ms = now_ms(pool);
    pool->queued++;
}

static void queue_remove(fy_pool_t *pool, fy_pool_waiter_t *wt)
{
    if (wt->prev)
        wt->prev->next = wt->next;
    else
        pool->qhead = wt->next;
    if (wt->next)
        wt->next->prev = wt->prev;
    else
        pool->qtail = wt->prev;
    wt->prev = wt->next = NULL;
    wt->queued = 0;
    pool->queued--;
}

/* Fails every queued waiter with <status>. A callback may queue a new waiter; those queued
 * after this call began are left alone (they see the pool's new state in checkout). */
static void fail_all(fy_pool_t *pool, int status)
{
    unsigned n = pool->queued;
    while (n-- > 0 && pool->qhead) {
        fy_pool_waiter_t *wt = pool->qhead;
        queue_remove(pool, wt);
        wt->cb(wt, NULL, status);
    }
}

/* Hands idle workers to waiters, oldest waiter first. */
static void dispatch(fy_pool_t *pool)
{
    fy_worker_t *w;
    while (pool->qhead && (w = take_worker(pool)) != NULL) {
        fy_pool_waiter_t *wt = pool->qhead;
        queue_remove(pool, wt);
        wt->cb(wt, w, 0);
    }
}

/* --- workers ------------------------------------------------------------------------------- */

static const char *const exit_labels[] = {
#define FY_X(e, label, text) label,
    FY_POOL_EXIT_REASONS(FY_X)
#undef FY_X
};
static const char *const exit_texts[] = {
#define FY_X(e, label, text) text,
    FY_POOL_EXIT_REASONS(FY_X)
#undef FY_X
};
static const char *const spawn_labels[] = {
#define FY_X(e, label) label,
    FY_POOL_SPAWN_REASONS(FY_X)
#undef FY_X
};
static const uint64_t spawn_bounds_ms[] = {FY_POOL_SPAWN_BUCKETS_MS};

const char *fy_pool_exit_reason_name(fy_pool_exit_reason_t reason)
{
    return (unsigned)reason < FY_POOL_EXIT_COUNT ? exit_labels[reason] : "?";
}

const char *fy_pool_spawn_reason_name(fy_pool_spawn_reason_t reason)
{
    return (unsigned)reason < FY_POOL_SPAWN_COUNT ? spawn_labels[reason] : "?";
}

static void retire(fy_worker_t *w, int sig, unsigned kill_after_ms, fy_pool_exit_reason_t reason)
{
    w->state = W_RETIRING;
    w->retired = true;
    w->retire_reason = reason;
    if (w->proc)
        fy_proc_stop(w->proc, sig, kill_after_ms);
}

static unsigned shutdown_grace_left(const fy_pool_t *pool)
{
    uint64_t now = now_ms(pool);
    return pool->shutdown_deadline_ms > now ? (unsigned)(pool->shutdown_deadline_ms - now) : 1;
}

/* Records a boot failure and starts the 10-second pause. Copies <summary> and <details>. */
static void record_boot_error(fy_pool_t *pool, pid_t pid, const char *summary, const char *details)
{
    free(pool->err_summary);
    free(pool->err_details);
    pool->err_summary = fy_xstrdup(summary);
    pool->err_details = fy_xstrdup(details);
    uint8_t id[8];
    if (fy_random_bytes(id, sizeof id) != 0) {
        uint64_t t = uv_hrtime() ^ (uint64_t)pid;
        memcpy(id, &t, sizeof id);
    }
    for (size_t i = 0; i < sizeof id; i++)
        snprintf(pool->err_id + 2 * i, 3, "%02x", id[i]);
    pool->err.summary = pool->err_summary;
    pool->err.details = pool->err_details;
    pool->err.error_id = pool->err_id;
    pool->has_boot_error = true;
    pool->pause_until_ms = now_ms(pool) + BOOT_RETRY_PAUSE_MS;
    pool->stats.boot_failures++;
    char *one = one_line(pool->err_details);
    fy_log(FY_LOG_ERROR, "pool",
           "app=%s pid=%d error_id=%s: could not spawn a worker: %s; details: %s; next attempt "
           "in %d s at the earliest",
           pool->app_root, (int)pid, pool->err_id, pool->err_summary, one,
           BOOT_RETRY_PAUSE_MS / 1000);
    free(one);
}

/* A worker that crashes by itself soon after ready, before serving anything, counts as a boot
 * failure: without this, an app that dies right after booting would be respawned in a tight
 * loop. Operator signals (SIGKILL, SIGTERM, ...) do not count. */
static bool crashed_after_boot(const fy_worker_t *w, int64_t exit_status, int term_signal)
{
    if (w->state != W_IDLE || w->requests > 0 || w->pool->shutting_down)
        return false;
    if (now_ms(w->pool) - w->ready_at_ms >= BOOT_RETRY_PAUSE_MS)
        return false;
    if (term_signal == 0)
        return exit_status != 0;
    return term_signal == SIGSEGV || term_signal == SIGABRT || term_signal == SIGBUS ||
           term_signal == SIGILL || term_signal == SIGFPE;
}

/* --- rolling restarts ----------------------------------------------------------------------- */

/* A boot failure of <w> stops the running restart when <w> is one the restart started or runs
 * the new generation's code: the app is broken, and the old workers left must keep serving.
 * Called after the error was recorded and <w> left the live states. */
static void restart_boot_failed(fy_pool_t *pool, const fy_worker_t *w)
{
    if (!pool->restarting || (!w->replacement && w->generation < pool->generation))
        return;
    pool->restarting = false;
    pool->restart_failed = true;
    fy_log(FY_LOG_ERROR, "pool",
           "app=%s generation=%u error_id=%s replaced=%u old_workers=%u: rolling restart "
           "stopped: a new worker failed to boot; the old workers keep serving (fix the app, "
           "then restart again)",
           pool->app_root, pool->generation, pool->err_id, pool->restart_replaced,
           old_count(pool));
}

/* <replacement> became ready: one old worker goes. An idle one is told to stop now (the oldest
 * generation first, then the one ready longest); else a spawning one is stopped once it is ready,
 * else a busy one after its current request. */
static void retire_an_old_worker(fy_pool_t *pool, fy_worker_t *replacement)
{
    fy_worker_t *idle = NULL, *spawning = NULL, *busy = NULL;
    for (fy_worker_t *w = pool->workers; w; w = w->next) {
        if (w == replacement || !is_old(pool, w) || w->retire_when_free)
            continue;
        if (w->state == W_IDLE) {
            if (idle == NULL || w->generation < idle->generation ||
                (w->generation == idle->generation && w->ready_at_ms < idle->ready_at_ms))
                idle = w;
        } else if (w->state == W_SPAWNING) {
            spawning = w;
        } else {
            busy = w;
        }
    }
    fy_worker_t *old = idle ? idle : spawning ? spawning : busy;
    if (old == NULL)
        return; /* the old workers went by themselves meanwhile */
    pool->restart_replaced++;
    fy_log(FY_LOG_NOTICE, "pool", "app=%s pid=%d generation=%u: replaced by pid=%d; %s",
           pool->app_root, (int)old->pid, old->generation, (int)replacement->pid,
           idle ? "stopping the old worker"
           : spawning ? "stopping the old worker once it is ready"
                      : "stopping the old worker after its current request");
    if (idle)
        retire(old, SIGUSR1, SOFT_STOP_GRACE_MS, FY_POOL_EXIT_RESTART);
    else
        old->retire_when_free = true;
}

static unsigned memory_check_interval(const fy_pool_t *pool)
{
    return pool->o.memory_check_interval_ms ? pool->o.memory_check_interval_ms
                                            : MEMORY_CHECK_INTERVAL_MS;
}

static void on_worker_ready(fy_proc_t *proc, int status, void *data)
{
    fy_worker_t *w = data;
    fy_pool_t *pool = w->pool;
    if (status == -EAGAIN && w->forked) {
        /* The preloader went away under this spawn (fy_proc_spawn_smart): not the app's boot
         * failure; the next spawn starts a new preloader. */
        w->state = W_GONE;
        fy_log(FY_LOG_NOTICE, "pool", "app=%s: %s; spawning again", pool->app_root,
               fy_proc_error_summary(proc));
        fy_proc_close(proc);
        kick(pool);
        return;
    }
    if (status != 0) {
        w->state = W_GONE;
        pool->stats.exits[w->retired ? w->retire_reason : FY_POOL_EXIT_BOOT_FAILURE]++;
        if (!pool->shutting_down) {
            record_boot_error(pool, fy_proc_pid(proc), fy_proc_error_summary(proc),
                              fy_proc_error_details(proc));
            restart_boot_failed(pool, w);
        }
        fy_proc_close(proc);
        kick(pool);
        return;
    }
    w->pid = fy_proc_pid(proc);
    snprintf(w->address, sizeof w->address, "%s", fy_proc_address(proc));
    snprintf(w->secret, sizeof w->secret, "%s", fy_proc_secret(proc));
    w->protocol = fy_proc_protocol(proc);
    w->spawn_ms = fy_proc_spawn_ms(proc);
    w->state = W_IDLE;
    w->idle_since_ms = w->ready_at_ms = now_ms(pool);
    fy_hist_observe(&pool->stats.spawn_duration, w->ready_at_ms - w->spawned_at_ms);
    w->memory_check_at_ms = w->ready_at_ms + memory_check_interval(pool);
    pool->ever_ready = true;
    if (pool->has_boot_error) {
        fy_log(FY_LOG_NOTICE, "pool", "app=%s pid=%d: the app boots again (error_id=%s is over)",
               pool->app_root, (int)w->pid, pool->err_id);
        pool->has_boot_error = false;
    }
    fy_log(FY_LOG_NOTICE, "pool",
           "app=%s pid=%d address=%s: worker ready (protocol v%u, %s spawn in %u ms)",
           pool->app_root, (int)w->pid, w->address, w->protocol,
           w->forked ? "smart" : "direct", w->spawn_ms);
    if (pool->shutting_down) {
        retire(w, SIGUSR1, shutdown_grace_left(pool), FY_POOL_EXIT_SHUTDOWN);
    } else if (w->retire_when_free) {
        retire(w, SIGUSR1, SOFT_STOP_GRACE_MS, FY_POOL_EXIT_RESTART);
    } else if (w->replacement && pool->restarting) {
        retire_an_old_worker(pool, w);
    }
    kick(pool);
}

/* The worker is gone: the front closes its session (which checks in what it held). */
static void drop_session(fy_pool_t *pool, fy_worker_t *w)
{
    void *session = w->session;
    if (session == NULL)
        return;
    w->session = NULL;
    if (pool->worker_gone)
        pool->worker_gone(w, session, pool->worker_gone_data);
}

static void on_worker_exit(fy_proc_t *proc, int64_t exit_status, int term_signal, void *data)
{
    fy_worker_t *w = data;
    fy_pool_t *pool = w->pool;
    if (strncmp(w->address, "unix:", 5) == 0)
        fy_unix_address_unlink(w->address);
    if (w->state == W_RETIRING) {
        /* A worker removed for a lost request is an error; a planned stop is a state change. */
        fy_log(w->retire_lost_request ? FY_LOG_ERROR : FY_LOG_NOTICE, "pool",
               "app=%s pid=%d status=%lld signal=%d: worker %s (%s)", pool->app_root, (int)w->pid,
               (long long)exit_status, term_signal, w->retire_lost_request ? "removed" : "stopped",
               exit_texts[w->retire_reason]);
        pool->stats.exits[w->retire_reason]++;
    } else if (crashed_after_boot(w, exit_status, term_signal)) {
        char summary[160];
        if (term_signal)
            snprintf(summary, sizeof summary,
                     "worker was killed by signal %d %llu ms after it became ready", term_signal,
                     (unsigned long long)(now_ms(pool) - w->ready_at_ms));
        else
            snprintf(summary, sizeof summary,
                     "worker exited with status %lld %llu ms after it became ready",
                     (long long)exit_status, (unsigned long long)(now_ms(pool) - w->ready_at_ms));
        char *tail = fy_proc_stderr_tail(proc);
        record_boot_error(pool, w->pid, summary, tail);
        free(tail);
        w->state = W_GONE;
        pool->stats.exits[FY_POOL_EXIT_BOOT_FAILURE]++;
        restart_boot_failed(pool, w);
    } else {
        fy_log(FY_LOG_ERROR, "pool", "app=%s pid=%d status=%lld signal=%d: worker died %s; removed",
               pool->app_root, (int)w->pid, (long long)exit_status, term_signal,
               w->state == W_BUSY ? "during a request" : "while idle");
        pool->stats.exits[FY_POOL_EXIT_CRASH]++;
    }
    w->state = W_GONE;
    drop_session(pool, w);
    fy_proc_close(proc);
    kick(pool);
}

static void maybe_close(fy_pool_t *pool);

static void on_worker_closed(fy_proc_t *proc, void *data)
{
    fy_worker_t *w = data;
    fy_pool_t *pool = w->pool;
    (void)proc;
    w->proc = NULL;
    drop_session(pool, w);
    if (w->checkouts == 0)
        worker_free(pool, w);
    maybe_close(pool);
}

/* How the app's workers (and its preloader) are started. */
static fy_spawn_options_t spawn_options(const fy_pool_t *pool)
{
    fy_spawn_options_t so = {
        .ferry_bin = pool->ferry_bin,
        .app_root = pool->app_root,
        .app_type = pool->app_type,
        .environment = pool->environment,
        .instance_dir = pool->instance_dir,
        .set_user = pool->o.worker_set_user,
        .uid = pool->o.worker_uid,
        .gid = pool->o.worker_gid,
        /* Capped at a day so the product fits in 32 bits. */
        .start_timeout_ms =
            (pool->o.start_timeout_s > 86400 ? 86400 : pool->o.start_timeout_s) * 1000u,
        .preload_idle_s = pool->o.max_preloader_idle_time_s,
        .keep_control = pool->o.refork_after > 0,
    };
    return so;
}

/* Starts one worker of the current generation, for <why> (a rolling restart's replacement:
 * FY_POOL_SPAWN_RESTART). */
static int spawn_one(fy_pool_t *pool, fy_pool_spawn_reason_t why)
{
    bool replacement = why == FY_POOL_SPAWN_RESTART;
    fy_worker_t *w = fy_xcalloc(1, sizeof *w);
    w->pool = pool;
    w->state = W_SPAWNING;
    w->generation = pool->generation;
    w->replacement = replacement;
    fy_spawn_options_t so = spawn_options(pool);
    static const fy_spawn_callbacks_t cbs = {
        .on_ready = on_worker_ready,
        .on_exit = on_worker_exit,
        .on_closed = on_worker_closed,
    };
    w->forked = pool->preloader != NULL;
    int r = w->forked ? fy_proc_spawn_smart(pool->preloader, &cbs, w, &w->proc) : -ENOTSUP;
    if (r == -ENOTSUP) {
        if (pool->preloader) {
            /* The loader does not preload (logged): this app spawns directly from now on. */
            fy_preloader_shutdown(pool->preloader);
            pool->preloader = NULL;
        }
        w->forked = false;
        r = fy_proc_spawn(pool->loop, &so, &cbs, w, &w->proc);
    }
    if (r < 0) {
        fy_log(FY_LOG_ALERT, "pool", "app=%s: fy_proc_spawn refused its options: %s",
               pool->app_root, uv_strerror(r));
        free(w);
        return r;
    }
    w->pid = fy_proc_pid(w->proc);
    w->next = pool->workers;
    if (pool->workers)
        pool->workers->prev = w;
    pool->workers = w;
    pool->stats.spawns_started++;
    pool->stats.spawns[why]++;
    w->spawned_at_ms = now_ms(pool);
    /* A smart spawn's pid is known only at its ready (the preloader forks it): no pid= then. */
    char pid_field[24] = "";
    if (w->pid > 0)
        snprintf(pid_field, sizeof pid_field, " pid=%d", (int)w->pid);
    if (replacement)
        fy_log(FY_LOG_INFO, "pool",
               "app=%s%s spawn=%s: spawning a worker (rolling restart: generation %u)",
               pool->app_root, pid_field, w->forked ? "smart" : "direct", w->generation);
    else
        fy_log(FY_LOG_INFO, "pool", "app=%s%s spawn=%s: spawning a worker", pool->app_root,
               pid_field, w->forked ? "smart" : "direct");
    return 0;
}

/* Starts the spawns the app needs now: up to min instances, and one per waiter not covered by a
 * spawn in flight, never past max pool size. A failing app gets one attempt at a time. */
static void maybe_spawn(fy_pool_t *pool)
{
    for (;;) {
        if (pool->shutting_down || in_boot_pause(pool))
            return;
        unsigned n[5];
        count(pool, n);
        unsigned alive = n[W_SPAWNING] + n[W_IDLE] + n[W_BUSY];
        if (alive >= pool->o.max_pool_size)
            return;
        bool need = alive < pool->o.min_instances || pool->queued > n[W_SPAWNING];
        if (!need)
            return;
        /* Until the app has booted once, and while it fails, one probe at a time: a broken
         * app costs one failed worker, not max_pool_size of them. */
        if ((pool->has_boot_error || !pool->ever_ready) && n[W_SPAWNING] > 0)
            return;
        if (spawn_one(pool, alive < pool->o.min_instances ? FY_POOL_SPAWN_MIN_INSTANCES
                                                          : FY_POOL_SPAWN_DEMAND) < 0)
            return;
    }
}

/* The running restart's next move: it is done when no old worker is alive; otherwise, one
 * replacement at a time, it spawns the next one. The replacement may be the (max_pool_size + 1)th
 * live worker, not counting old workers already picked to go after their request. */
static void restart_step(fy_pool_t *pool)
{
    if (!pool->restarting || pool->shutting_down)
        return;
    unsigned alive = 0, picked = 0, old_left = 0, old_unpicked = 0;
    bool spawning = false, replacing = false;
    for (const fy_worker_t *w = pool->workers; w; w = w->next) {
        if (!is_alive(w))
            continue;
        alive++;
        picked += w->retire_when_free;
        if (w->state == W_SPAWNING) {
            spawning = true;
            replacing |= w->replacement;
        }
        if (w->generation < pool->generation) {
            old_left++;
            old_unpicked += !w->retire_when_free;
        }
    }
    if (old_left == 0) {
        pool->restarting = false;
        fy_log(FY_LOG_NOTICE, "pool", "app=%s generation=%u replaced=%u: rolling restart done",
               pool->app_root, pool->generation, pool->restart_replaced);
        return;
    }
    if (old_unpicked == 0 || replacing || in_boot_pause(pool))
        return;
    /* The one-probe rule of maybe_spawn holds for replacements too. */
    if ((pool->has_boot_error || !pool->ever_ready) && spawning)
        return;
    if (alive - picked > pool->o.max_pool_size)
        return;
    spawn_one(pool, FY_POOL_SPAWN_RESTART);
}

/* --- the loop side ------------------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    fy_pool_t *pool = h->data;
    if (--pool->open_handles > 0)
        return;
    pool->closed = true;
    fy_log(FY_LOG_INFO, "pool", "app=%s: pool stopped", pool->app_root);
    /* Last use of <pool>: done may free it. */
    if (pool->done)
        pool->done(pool, pool->done_data);
}

/* After a shutdown, once every worker is reaped and checked in: closes the timers, then runs
 * the done callback. */
static void maybe_close(fy_pool_t *pool)
{
    if (!pool->shutting_down || pool->closing || pool->workers != NULL || pool->queued > 0)
        return;
    pool->closing = true;
    pool->open_handles = 3;
    uv_close((uv_handle_t *)&pool->kick_timer, on_handle_closed);
    uv_close((uv_handle_t *)&pool->tick_timer, on_handle_closed);
    uv_close((uv_handle_t *)&pool->shutdown_timer, on_handle_closed);
}

static void process(fy_pool_t *pool)
{
    if (pool->closing)
        return;
    if (pool->shutting_down) {
        fail_all(pool, -ESHUTDOWN);
        maybe_close(pool);
        return;
    }
    dispatch(pool);
    if (in_boot_pause(pool) && live_count(pool) == 0)
        fail_all(pool, -ENOEXEC);
    maybe_spawn(pool);
    restart_step(pool);
}

static void on_kick(uv_timer_t *t)
{
    process(t->data);
}

static void kick(fy_pool_t *pool)
{
    if (!pool->closing)
        uv_timer_start(&pool->kick_timer, on_kick, 0, 0);
}

static void expire_waiters(fy_pool_t *pool)
{
    if (pool->o.max_queue_time_s == 0)
        return;
    uint64_t limit = (uint64_t)pool->o.max_queue_time_s * 1000u;
    uint64_t now = now_ms(pool);
    unsigned n = pool->queued;
    /* FIFO: the oldest are at the head. Waiters queued by a callback are not looked at. */
    while (n-- > 0 && pool->qhead && now - pool->qhead->queued_at_ms >= limit) {
        fy_pool_waiter_t *wt = pool->qhead;
        queue_remove(pool, wt);
        fy_log(FY_LOG_INFO, "pool",
               "app=%s waited_ms=%llu: request waited past max queue "
               "time",
               pool->app_root, (unsigned long long)(now - wt->queued_at_ms));
        wt->cb(wt, NULL, -ETIMEDOUT);
    }
}

static void reap_idle(fy_pool_t *pool)
{
    if (pool->o.pool_idle_time_s == 0)
        return;
    uint64_t limit = (uint64_t)pool->o.pool_idle_time_s * 1000u;
    uint64_t now = now_ms(pool);
    for (fy_worker_t *w = pool->workers; w; w = w->next) {
        if (w->state != W_IDLE || now - w->idle_since_ms < limit)
            continue;
        unsigned n[5];
        count(pool, n);
        if (n[W_SPAWNING] + n[W_IDLE] + n[W_BUSY] <= pool->o.min_instances)
            return;
        fy_log(FY_LOG_NOTICE, "pool", "app=%s pid=%d idle_s=%u: stopping an idle worker",
               pool->app_root, (int)w->pid, pool->o.pool_idle_time_s);
        retire(w, SIGUSR1, SOFT_STOP_GRACE_MS, FY_POOL_EXIT_IDLE);
    }
}

/* The memory limit: reads the PSS of each idle or busy worker whose turn has come (once per
 * memory_check_interval) and replaces a worker past the limit: an idle one now (SIGUSR1), a busy
 * one when it is checked in, so its request completes. The caller's process() spawns the
 * replacement as needed (min instances, waiters), as for max requests. */
static void check_memory(fy_pool_t *pool)
{
    if (pool->o.memory_limit_kib == 0)
        return;
    uint64_t now = now_ms(pool);
    for (fy_worker_t *w = pool->workers; w; w = w->next) {
        if ((w->state != W_IDLE && w->state != W_BUSY) || w->over_memory_limit ||
            w->retire_when_free || now < w->memory_check_at_ms)
            continue;
        w->memory_check_at_ms = now + memory_check_interval(pool);
        uint64_t rss_kib, pss_kib;
        int r = fy_procmem_read(w->pid, &rss_kib, &pss_kib);
        if (r < 0) {
            /* A worker that just exited (its exit callback is still to come) is no news; an
             * unreadable smaps_rollup of a live worker (no /proc, a kernel before 4.14) needs the
             * operator, once. */
            bool gone = r == -ENOENT && kill(w->pid, 0) == -1 && errno == ESRCH;
            if (!gone && !pool->memory_read_warned) {
                pool->memory_read_warned = true;
                fy_log(FY_LOG_WARN, "pool",
                       "app=%s pid=%d: cannot read /proc/%d/smaps_rollup (%s); the memory limit "
                       "is not enforced for workers whose memory cannot be read",
                       pool->app_root, (int)w->pid, (int)w->pid, strerror(-r));
            }
            continue;
        }
        if (pss_kib <= pool->o.memory_limit_kib)
            continue;
        bool busy = w->state == W_BUSY;
        fy_log(FY_LOG_NOTICE, "pool",
               "app=%s pid=%d pss_kib=%llu limit_kib=%llu: memory limit passed; replacing the "
               "worker%s",
               pool->app_root, (int)w->pid, (unsigned long long)pss_kib,
               (unsigned long long)pool->o.memory_limit_kib,
               busy ? " after its current request" : "");
        if (busy) {
            w->over_memory_limit = true;
        } else {
            pool->stats.memory_limit_replacements++;
            retire(w, SIGUSR1, SOFT_STOP_GRACE_MS, FY_POOL_EXIT_MEMORY_LIMIT);
        }
    }
}

static void on_tick(uv_timer_t *t)
{
    fy_pool_t *pool = t->data;
    if (pool->shutting_down)
        return;
    expire_waiters(pool);
    reap_idle(pool);
    check_memory(pool);
    process(pool);
}

static void on_shutdown_deadline(uv_timer_t *t)
{
    fy_pool_t *pool = t->data;
    for (fy_worker_t *w = pool->workers; w; w = w->next) {
        if (w->proc && !fy_proc_exited(w->proc)) {
            fy_log(FY_LOG_WARN, "pool",
                   "app=%s pid=%d state=%s: still running at the end of "
                   "the shutdown; sending SIGKILL",
                   pool->app_root, (int)w->pid, state_names[w->state]);
            fy_proc_stop(w->proc, SIGKILL, 0);
        }
    }
}

/* --- API ----------------------------------------------------------------------------------- */

int fy_pool_new(uv_loop_t *loop, const fy_pool_options_t *opts, fy_pool_t **out)
{
    if (loop == NULL || opts == NULL || out == NULL || opts->app_root == NULL ||
        opts->ferry_bin == NULL || opts->max_pool_size == 0 ||
        opts->min_instances > opts->max_pool_size)
        return -EINVAL;
    fy_pool_t *pool = fy_xcalloc(1, sizeof *pool);
    pool->loop = loop;
    pool->o = *opts;
    pool->done_since_long = UINT64_MAX;
    pool->app_root = fy_xstrdup(opts->app_root);
    pool->app_type = opts->app_type ? fy_xstrdup(opts->app_type) : NULL;
    pool->environment = fy_xstrdup(opts->environment ? opts->environment : "production");
    pool->ferry_bin = fy_xstrdup(opts->ferry_bin);
    pool->instance_dir = opts->instance_dir ? fy_xstrdup(opts->instance_dir) : NULL;
    pool->o.app_root = pool->app_root;
    pool->o.app_type = pool->app_type;
    pool->o.environment = pool->environment;
    pool->o.ferry_bin = pool->ferry_bin;
    pool->o.instance_dir = pool->instance_dir;
    pool->generation = 1;
    fy_hist_init(&pool->stats.spawn_duration, spawn_bounds_ms, FY_ARRAY_SIZE(spawn_bounds_ms));
    size_t len = strlen(pool->app_root) + sizeof "/tmp/restart.txt";
    pool->restart_txt = fy_xmalloc(len);
    snprintf(pool->restart_txt, len, "%s/tmp/restart.txt", pool->app_root);
    pool->always_restart_txt = fy_xasprintf("%s/tmp/always_restart.txt", pool->app_root);
    /* A restart.txt older than the pool restarts nothing: only a later change does. */
    struct stat st;
    if (stat(pool->restart_txt, &st) == 0) {
        pool->restart_txt_seen = true;
        pool->restart_txt_mtime = st.st_mtim;
    }
    uv_timer_init(loop, &pool->kick_timer);
    uv_timer_init(loop, &pool->tick_timer);
    uv_timer_init(loop, &pool->shutdown_timer);
    pool->kick_timer.data = pool->tick_timer.data = pool->shutdown_timer.data = pool;
    if (opts->smart_spawn) {
        fy_spawn_options_t so = spawn_options(pool);
        so.preload = true;
        pool->preloader = fy_preloader_new(loop, &so);
    }
    *out = pool;
    return 0;
}

int fy_pool_start(fy_pool_t *pool)
{
    if (pool->shutting_down)
        return -ESHUTDOWN;
    if (!uv_is_active((uv_handle_t *)&pool->tick_timer))
        uv_timer_start(&pool->tick_timer, on_tick, TICK_MS, TICK_MS);
    fy_log(FY_LOG_INFO, "pool",
           "app=%s type=%s max_pool_size=%u min_instances=%u spawn_method=%s: pool started",
           pool->app_root, pool->app_type ? pool->app_type : "auto", pool->o.max_pool_size,
           pool->o.min_instances, pool->preloader ? "smart" : "direct");
    kick(pool);
    return 0;
}

/* Starts a rolling restart when tmp/restart.txt appeared or its mtime changed since the last
 * look; looks at most once per RESTART_TXT_CHECK_MS (one stat, not one per request). */
static void check_restart_txt(fy_pool_t *pool)
{
    uint64_t now = now_ms(pool);
    if (now < pool->restart_txt_next_check_ms)
        return;
    pool->restart_txt_next_check_ms = now + RESTART_TXT_CHECK_MS;
    struct stat st;
    if (stat(pool->restart_txt, &st) != 0) {
        pool->restart_txt_seen = false; /* a file created later counts as a change */
        return;
    }
    if (pool->restart_txt_seen && st.st_mtim.tv_sec == pool->restart_txt_mtime.tv_sec &&
        st.st_mtim.tv_nsec == pool->restart_txt_mtime.tv_nsec)
        return;
    pool->restart_txt_seen = true;
    pool->restart_txt_mtime = st.st_mtim;
    fy_log(FY_LOG_NOTICE, "pool", "app=%s file=%s: restart.txt changed: rolling restart",
           pool->app_root, pool->restart_txt);
    fy_pool_restart(pool);
}

/* tmp/always_restart.txt (Passenger's; development only): while it exists every request gets a
 * worker spawned for it, from a preloader booted for it, so every request runs the code as it is
 * on disk. The file is looked for at most once per RESTART_TXT_CHECK_MS. */
static void check_always_restart(fy_pool_t *pool)
{
    /* Looked for at most once per RESTART_TXT_CHECK_MS, like restart.txt: a stat per request
     * is a system call per request on the hot path. */
    uint64_t now = now_ms(pool);
    if (now >= pool->always_restart_next_check_ms) {
        pool->always_restart_next_check_ms = now + RESTART_TXT_CHECK_MS;
        struct stat st;
        bool present = stat(pool->always_restart_txt, &st) == 0;
        if (present != pool->always_restart)
            fy_log(FY_LOG_NOTICE, "pool", "app=%s file=%s: always_restart.txt %s",
                   pool->app_root, pool->always_restart_txt,
                   present ? "exists: a fresh worker for every request" : "is gone");
        pool->always_restart = present;
    }
    if (!pool->always_restart)
        return;
    for (fy_worker_t *w = pool->workers; w; w = w->next)
        if (w->state == W_IDLE)
            retire(w, SIGUSR1, SOFT_STOP_GRACE_MS, FY_POOL_EXIT_ALWAYS_RESTART);
    if (pool->preloader)
        fy_preloader_restart(pool->preloader);
}

int fy_pool_checkout(fy_pool_t *pool, fy_pool_waiter_t *waiter, fy_worker_t **worker)
{
    FY_ASSERT(waiter != NULL && waiter->cb != NULL && worker != NULL && !waiter->queued);
    if (pool->shutting_down)
        return -ESHUTDOWN;
    if (!uv_is_active((uv_handle_t *)&pool->tick_timer))
        uv_timer_start(&pool->tick_timer, on_tick, TICK_MS, TICK_MS);
    check_restart_txt(pool);
    check_always_restart(pool);
    if (in_boot_pause(pool) && live_count(pool) == 0)
        return -ENOEXEC;
    if (pool->queued == 0) {
        fy_worker_t *w = take_worker(pool);
        if (w) {
            *worker = w;
            return 1;
        }
    }
    if (pool->o.max_request_queue_size && pool->queued >= pool->o.max_request_queue_size)
        return -EBUSY;
    queue_push(pool, waiter);
    kick(pool);
    return 0;
}

void fy_pool_cancel(fy_pool_t *pool, fy_pool_waiter_t *waiter)
{
    if (waiter->queued)
        queue_remove(pool, waiter);
}

const fy_pool_waiter_t *fy_pool_queue_next(const fy_pool_t *pool, const fy_pool_waiter_t *after)
{
    return after == NULL ? pool->qhead : after->next;
}

int fy_pool_requeue(fy_pool_t *pool, fy_pool_waiter_t *waiter)
{
    FY_ASSERT(waiter != NULL && waiter->cb != NULL && !waiter->queued);
    if (pool->shutting_down)
        return -ESHUTDOWN;
    uint64_t queued_at = waiter->queued_at_ms;
    queue_push(pool, waiter);
    /* to the head, keeping its first queue time: it was next in line before it went out */
    if (pool->qhead != waiter) {
        queue_remove(pool, waiter);
        waiter->next = pool->qhead;
        waiter->prev = NULL;
        pool->qhead->prev = waiter;
        pool->qhead = waiter;
        waiter->queued = 1;
        pool->queued++;
    }
    if (queued_at != 0)
        waiter->queued_at_ms = queued_at;
    kick(pool);
    return 0;
}

void fy_pool_set_worker_gone(fy_pool_t *pool,
                             void (*cb)(fy_worker_t *w, void *session, void *data), void *data)
{
    pool->worker_gone = cb;
    pool->worker_gone_data = data;
}

unsigned fy_worker_protocol(const fy_worker_t *w)
{
    return w->protocol;
}

void *fy_worker_session(const fy_worker_t *w)
{
    return w->session;
}

void fy_worker_set_session(fy_worker_t *w, void *session)
{
    w->session = session;
}

/* A new generation: every worker alive now is old, and a rolling restart (restart_step)
 * replaces them one at a time. Returns how many there are. */
static unsigned new_generation(fy_pool_t *pool)
{
    pool->generation++;
    pool->restart_failed = false;
    pool->restart_replaced = 0;
    unsigned old = old_count(pool);
    pool->restarting = old > 0;
    return old;
}

/* --- re-forking (docs/architecture.md "Re-forking") ------------------------------------------ */

/* Whether <w>, just checked in with nothing more dispatched to it, is the worker to fork the next
 * preloader: the first of the current generation to reach refork_after requests, once per
 * preloader booted from the code, and not while a restart or another re-fork runs. */
static bool refork_due(fy_pool_t *pool, const fy_worker_t *w)
{
    if (pool->o.refork_after == 0 || pool->preloader == NULL || !w->forked ||
        w->requests < pool->o.refork_after || pool->refork_worker != NULL || pool->restarting ||
        pool->always_restart || w->generation != pool->generation)
        return false;
    fy_preloader_info_t info;
    fy_preloader_get_info(pool->preloader, &info);
    if (pool->refork_done && info.starts == pool->refork_starts)
        return false;
    if (pool->refork_done) /* a preloader booted from the code again (it had gone idle) */
        pool->refork_done = false;
    return true;
}

/* The running preloader has had its re-fork (or given up on it): none until one is booted from
 * the code again. */
static void refork_over(fy_pool_t *pool)
{
    pool->refork_done = true;
    if (pool->preloader) {
        fy_preloader_info_t info;
        fy_preloader_get_info(pool->preloader, &info);
        pool->refork_starts = info.starts;
    }
}

static void on_refork_done(void *data, int status)
{
    fy_pool_t *pool = data;
    fy_worker_t *w = pool->refork_worker;
    pool->refork_worker = NULL;
    refork_over(pool);
    if (w != NULL) {
        w->reforking = false;
        if (w->state == W_BUSY && w->checkouts == 0) {
            w->state = W_IDLE;
            w->idle_since_ms = now_ms(pool);
        }
    }
    if (status == 0 && !pool->shutting_down) {
        pool->stats.reforks++;
        unsigned old = new_generation(pool);
        fy_log(FY_LOG_NOTICE, "pool", "app=%s generation=%u old_workers=%u: re-fork: the "
               "workers are replaced by forks of the new preloader, one at a time",
               pool->app_root, pool->generation, old);
    } else if (status != 0 && status != -ECANCELED && status != -ESHUTDOWN) {
        fy_log(FY_LOG_WARN, "pool", "app=%s: re-fork failed (%s); the workers stay as they are, "
               "and the next re-fork waits for the next restart", pool->app_root,
               strerror(-status));
    }
    kick(pool);
}

/* Asks <w> to fork the next preloader. Returns true when it was asked (it stays busy). */
static bool start_refork(fy_pool_t *pool, fy_worker_t *w)
{
    int r = fy_preloader_refork(pool->preloader, w->proc, on_refork_done, pool);
    if (r == -EAGAIN || r == -EALREADY)
        return false; /* the preloader is booting: a later check-in tries again */
    if (r != 0) {
        fy_log(FY_LOG_WARN, "pool", "app=%s pid=%d: cannot re-fork: %s; the next re-fork waits "
               "for the next restart", pool->app_root, (int)w->pid, strerror(-r));
        refork_over(pool);
        return false;
    }
    fy_log(FY_LOG_NOTICE, "pool", "app=%s pid=%d requests=%u: re-fork: this worker forks the "
           "next preloader (--refork-after %u)", pool->app_root, (int)w->pid, w->requests,
           pool->o.refork_after);
    pool->refork_worker = w;
    w->reforking = true;
    return true;
}

void fy_pool_checkin(fy_pool_t *pool, fy_worker_t *w, fy_worker_outcome_t outcome)
{
    FY_ASSERT(w->pool == pool && w->checkouts > 0);
    w->checkouts--;
    uint64_t now_ns = uv_hrtime();
    if (outcome != FY_WORKER_NOT_STARTED) {
        w->requests++;
        pool->stats.requests_done++;
        if (now_ns - w->current_since_ns >= young_ns(pool))
            pool->done_since_long = 0;
        else if (pool->done_since_long != UINT64_MAX)
            pool->done_since_long++;
    }
    if (w->checkouts > 0)
        w->current_since_ns = now_ns; /* it starts the next request dispatched ahead */
    kick(pool);
    if (w->proc == NULL) {
        /* It died while checked out and is already reaped. */
        if (w->checkouts == 0) {
            worker_free(pool, w);
            maybe_close(pool);
        }
        return;
    }
    if (w->state != W_BUSY)
        return; /* exited or retiring already; its exit callback finishes the job */
    if (outcome == FY_WORKER_EXITING) {
        /* It said it exits after this request (v2 END with CLOSING): nothing to send; SIGKILL
         * only if it has not gone within the grace. */
        retire(w, 0, SOFT_STOP_GRACE_MS, FY_POOL_EXIT_SELF);
        return;
    }
    if (outcome == FY_WORKER_TIMED_OUT) {
        fy_log(FY_LOG_ERROR, "pool",
               "app=%s pid=%d: request passed max request time; SIGQUIT "
               "for a backtrace, SIGKILL in %d ms, then replaced",
               pool->app_root, (int)w->pid, HARD_STOP_GRACE_MS);
        retire(w, SIGQUIT, HARD_STOP_GRACE_MS, FY_POOL_EXIT_MAX_REQUEST_TIME);
        w->retire_lost_request = true;
        return;
    }
    if (outcome == FY_WORKER_BROKEN) {
        fy_log(FY_LOG_ERROR, "pool",
               "app=%s pid=%d: worker broke a request (connect failed, bad "
               "response or early close); replacing it",
               pool->app_root, (int)w->pid);
        retire(w, SIGTERM, HARD_STOP_GRACE_MS, FY_POOL_EXIT_BROKEN);
        w->retire_lost_request = true;
        return;
    }
    if (w->checkouts > 0)
        return; /* requests dispatched ahead to it are still running */
    if (pool->shutting_down) {
        retire(w, SIGUSR1, shutdown_grace_left(pool), FY_POOL_EXIT_SHUTDOWN);
        return;
    }
    if (w->retire_when_free) {
        retire(w, SIGUSR1, SOFT_STOP_GRACE_MS, FY_POOL_EXIT_RESTART);
        return;
    }
    if (pool->always_restart) {
        retire(w, SIGUSR1, SOFT_STOP_GRACE_MS, FY_POOL_EXIT_ALWAYS_RESTART);
        return;
    }
    if (w->over_memory_limit) {
        pool->stats.memory_limit_replacements++;
        retire(w, SIGUSR1, SOFT_STOP_GRACE_MS, FY_POOL_EXIT_MEMORY_LIMIT);
        return;
    }
    if (pool->o.max_requests && w->requests >= pool->o.max_requests) {
        fy_log(FY_LOG_NOTICE, "pool",
               "app=%s pid=%d requests=%u: max requests reached; "
               "replacing the worker",
               pool->app_root, (int)w->pid, w->requests);
        retire(w, SIGUSR1, SOFT_STOP_GRACE_MS, FY_POOL_EXIT_MAX_REQUESTS);
        return;
    }
    if (refork_due(pool, w) && start_refork(pool, w))
        return; /* it stays busy (nothing is dispatched to it) until the re-fork answered */
    w->state = W_IDLE;
    w->idle_since_ms = now_ms(pool);
}

const char *fy_worker_address(const fy_worker_t *w)
{
    return w->address;
}
const char *fy_worker_secret(const fy_worker_t *w)
{
    return w->secret;
}
pid_t fy_worker_pid(const fy_worker_t *w)
{
    return w->pid;
}

int fy_pool_restart(fy_pool_t *pool)
{
    if (pool->shutting_down)
        return -ESHUTDOWN;
    bool again = pool->restarting;
    pool->stats.restarts++;
    unsigned old = new_generation(pool);
    /* New workers come from a new preloader, booted with the app as it is now (which may
     * re-fork again: a running re-fork of the old code is cancelled). */
    if (pool->preloader)
        fy_preloader_restart(pool->preloader);
    pool->refork_done = false;
    if (old == 0) {
        fy_log(FY_LOG_NOTICE, "pool",
               "app=%s generation=%u: rolling restart: no worker to replace; new workers load "
               "the app as it is now", pool->app_root, pool->generation);
        return 0;
    }
    fy_log(FY_LOG_NOTICE, "pool", "app=%s generation=%u old_workers=%u: rolling restart %s",
           pool->app_root, pool->generation, old,
           again ? "started over (asked again while one ran)" : "started");
    kick(pool);
    return 0;
}

const fy_app_error_t *fy_pool_boot_error(const fy_pool_t *pool)
{
    return pool->has_boot_error ? &pool->err : NULL;
}

void fy_pool_shutdown(fy_pool_t *pool, unsigned timeout_ms,
                      void (*done)(fy_pool_t *pool, void *data), void *data)
{
    if (pool->shutting_down)
        return;
    pool->shutting_down = true;
    pool->restarting = false;
    pool->done = done;
    pool->done_data = data;
    pool->shutdown_deadline_ms = now_ms(pool) + timeout_ms;
    uv_timer_stop(&pool->tick_timer);
    fy_log(FY_LOG_INFO, "pool", "app=%s timeout_ms=%u: shutting down", pool->app_root, timeout_ms);
    if (pool->preloader) {
        fy_preloader_shutdown(pool->preloader);
        pool->preloader = NULL;
    }
    for (fy_worker_t *w = pool->workers; w; w = w->next) {
        if (w->state == W_IDLE)
            retire(w, SIGUSR1, timeout_ms ? timeout_ms : 1, FY_POOL_EXIT_SHUTDOWN);
        else if (w->state == W_SPAWNING)
            retire(w, SIGTERM, timeout_ms ? timeout_ms : 1, FY_POOL_EXIT_SHUTDOWN);
    }
    uv_timer_start(&pool->shutdown_timer, on_shutdown_deadline, timeout_ms, 0);
    kick(pool);
}

void fy_pool_free(fy_pool_t *pool)
{
    if (pool == NULL)
        return;
    FY_ASSERT(pool->closed);
    free(pool->app_root);
    free(pool->app_type);
    free(pool->environment);
    free(pool->ferry_bin);
    free(pool->instance_dir);
    free(pool->err_summary);
    free(pool->err_details);
    free(pool->restart_txt);
    free(pool->always_restart_txt);
    free(pool);
}

void fy_pool_get_stats(const fy_pool_t *pool, fy_pool_stats_t *out)
{
    unsigned n[5];
    count(pool, n);
    *out = pool->stats;
    out->spawning = n[W_SPAWNING];
    out->idle = n[W_IDLE];
    out->busy = n[W_BUSY];
    out->retiring = n[W_RETIRING];
    out->queued = pool->queued;
    out->generation = pool->generation;
    out->restarting = pool->restarting;
    out->old_workers = old_count(pool);
    out->restart_failed = pool->restart_failed;
    out->max_pool_size = pool->o.max_pool_size;
    out->max_request_queue_size = pool->o.max_request_queue_size;
}

size_t fy_pool_list_workers(const fy_pool_t *pool, fy_pool_worker_info_t *out, size_t max)
{
    uint64_t now = now_ms(pool);
    size_t n = 0;
    for (const fy_worker_t *w = pool->workers; w; w = w->next, n++) {
        if (n >= max)
            continue;
        fy_pool_worker_info_t *i = &out[n];
        i->pid = w->pid;
        i->state = state_names[w->state];
        i->requests = w->requests;
        i->age_ms = w->ready_at_ms ? now - w->ready_at_ms : 0;
        i->idle_ms = w->state == W_IDLE ? now - w->idle_since_ms : 0;
        i->generation = w->generation;
        i->protocol = w->protocol;
        i->spawn_method = w->forked ? "smart" : "direct";
        i->spawn_ms = w->spawn_ms;
    }
    return n;
}

bool fy_pool_preloader_info(const fy_pool_t *pool, fy_preloader_info_t *out)
{
    if (pool->preloader == NULL)
        return false;
    fy_preloader_get_info(pool->preloader, out);
    return true;
}
