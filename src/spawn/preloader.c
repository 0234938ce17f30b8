/* Smart spawning, the core's side (spawn.h; docs/protocol.md §5.4): one preloader process per
 * app, started on demand with the spawn handshake (FERRY_PRELOAD), and the spawns waiting for it.
 * The preloader is an fy_proc like any worker; the workers it forks are fy_procs of their own
 * (spawn.c, "smart spawning"). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/sys.h"
#include "ipc/sock.h"
#include "spawn/spawn.h"
#include "spawn/spawn_internal.h"

struct fy_preloader {
    uv_loop_t *loop;
    fy_spawn_options_t o; /* strings point at the copies below; preload is set */
    char *ferry_bin, *app_root, *app_type, *environment, *instance_dir;

    fy_proc_t *proc; /* the preloader process now (booting or ready), or NULL */
    bool ready;
    char address[FY_ADDRESS_MAX];
    char password[FY_SECRET_HEX_LEN + 1];
    int64_t ready_at_ms;

    fy_proc_t *waiting; /* spawns waiting for it to be ready, oldest first */
    unsigned open_procs; /* preloader processes not closed yet (a replaced one may linger) */
    bool shutting_down;
    bool unsupported; /* the loader answered FERRY_PRELOAD as a worker */

    unsigned starts, forks;
    char last_exit[128];

    /* Re-forking (docs/protocol.md §5.5): the process a worker is forking to be the next
     * preloader, until it is ready; then it replaces <proc>. */
    fy_proc_t *refork_proc;
    pid_t refork_from;
    fy_preloader_refork_cb refork_done;
    void *refork_data;
    unsigned reforks;
};

static const fy_spawn_callbacks_t preloader_cbs;

static void pl_free(fy_preloader_t *pl)
{
    free(pl->ferry_bin);
    free(pl->app_root);
    free(pl->app_type);
    free(pl->environment);
    free(pl->instance_dir);
    free(pl);
}

static fy_proc_t *pop_waiting(fy_preloader_t *pl)
{
    fy_proc_t *p = pl->waiting;
    if (p != NULL) {
        pl->waiting = *fy_proc_wait_next(p);
        *fy_proc_wait_next(p) = NULL;
        fy_proc_forked_set_waiting(p, NULL);
    }
    return p;
}

void fy_preloader_unwait(fy_preloader_t *pl, fy_proc_t *p)
{
    for (fy_proc_t **link = &pl->waiting; *link; link = fy_proc_wait_next(*link)) {
        if (*link == p) {
            *link = *fy_proc_wait_next(p);
            *fy_proc_wait_next(p) = NULL;
            fy_proc_forked_set_waiting(p, NULL);
            return;
        }
    }
}

static void fail_waiting(fy_preloader_t *pl, int status, const char *summary, const char *details)
{
    fy_proc_t *p;
    while ((p = pop_waiting(pl)) != NULL)
        fy_proc_forked_fail(p, status, summary, details);
}

/* Stops the current preloader process (it may be reaped later; on_closed counts it down). */
static void drop_proc(fy_preloader_t *pl)
{
    if (pl->proc == NULL)
        return;
    fy_proc_t *proc = pl->proc;
    pl->proc = NULL;
    pl->ready = false;
    fy_proc_close(proc);
}

static void start_proc(fy_preloader_t *pl)
{
    int r = fy_proc_spawn(pl->loop, &pl->o, &preloader_cbs, pl, &pl->proc);
    if (r < 0) {
        pl->proc = NULL;
        fy_log(FY_LOG_ALERT, "spawn", "app=%s: cannot start a preloader: %s", pl->app_root,
               strerror(-r));
        fail_waiting(pl, r, "cannot start a preloader", NULL);
        return;
    }
    pl->open_procs++;
    pl->starts++;
    fy_log(FY_LOG_INFO, "spawn", "app=%s pid=%d: starting the preloader (smart spawning)",
           pl->app_root, (int)fy_proc_pid(pl->proc));
}

/* The preloader did not answer a spawn request: it is gone or broken. The next spawn starts a
 * new one; spawns waiting now fail with -EAGAIN so their caller asks again. */
static void lost(fy_preloader_t *pl)
{
    fy_log(FY_LOG_WARN, "spawn", "app=%s pid=%d: the preloader does not answer; stopping it (the "
           "next spawn starts a new one)", pl->app_root,
           pl->proc ? (int)fy_proc_pid(pl->proc) : 0);
    snprintf(pl->last_exit, sizeof pl->last_exit, "did not answer a spawn request");
    drop_proc(pl);
    fail_waiting(pl, -EAGAIN, "the preloader does not answer", NULL);
}

static void ask(fy_preloader_t *pl, fy_proc_t *p)
{
    pl->forks++;
    if (fy_proc_forked_connect(p, pl->address, pl->password) < 0)
        lost(pl);
}

/* pl->proc answered as a preloader: from now on spawns go to its spawn server. */
static void take_ready(fy_preloader_t *pl)
{
    pl->ready = true;
    pl->ready_at_ms = fy_monotonic_ms();
    snprintf(pl->address, sizeof pl->address, "%s", fy_proc_address(pl->proc));
    snprintf(pl->password, sizeof pl->password, "%s", fy_proc_secret(pl->proc));
}

/* Asks the ready preloader for every spawn that waited for it. */
static void ask_waiting(fy_preloader_t *pl)
{
    fy_proc_t *p;
    while (pl->ready && (p = pop_waiting(pl)) != NULL)
        ask(pl, p);
}

/* Ends the running re-fork with <status> (0: its process is the preloader now). */
static void refork_finish(fy_preloader_t *pl, int status)
{
    fy_preloader_refork_cb done = pl->refork_done;
    void *data = pl->refork_data;
    pl->refork_proc = NULL;
    pl->refork_done = NULL;
    pl->refork_data = NULL;
    if (done != NULL)
        done(data, status);
}

/* Stops a re-fork that has not answered yet (a rolling restart, shutdown). */
static void refork_cancel(fy_preloader_t *pl, int status)
{
    if (pl->refork_proc == NULL)
        return;
    fy_proc_close(pl->refork_proc);
    refork_finish(pl, status);
}

static void on_refork_ready(fy_preloader_t *pl, fy_proc_t *proc, int status)
{
    if (status != 0 || !fy_proc_preloads(proc)) {
        fy_log(FY_LOG_WARN, "spawn", "app=%s worker=%d: re-fork failed: %s; workers are still "
               "forked by the preloader pid=%d", pl->app_root, (int)pl->refork_from,
               status != 0 ? fy_proc_error_summary(proc) : "its child did not answer as a "
               "preloader", pl->proc ? (int)fy_proc_pid(pl->proc) : 0);
        fy_proc_close(proc);
        refork_finish(pl, status != 0 ? status : -EPROTO);
        return;
    }
    fy_proc_t *old = pl->proc;
    fy_log(FY_LOG_NOTICE, "spawn", "app=%s pid=%d worker=%d spawn_ms=%u: re-fork: the process "
           "forked from a warmed worker is the preloader now; the old one (pid=%d) stops",
           pl->app_root, (int)fy_proc_pid(proc), (int)pl->refork_from, fy_proc_spawn_ms(proc),
           old ? (int)fy_proc_pid(old) : 0);
    if (old != NULL) {
        snprintf(pl->last_exit, sizeof pl->last_exit, "replaced by a re-fork");
        drop_proc(pl);
    }
    pl->proc = proc;
    pl->reforks++;
    take_ready(pl);
    refork_finish(pl, 0);
    ask_waiting(pl);
}

static void on_preloader_ready(fy_proc_t *proc, int status, void *data)
{
    fy_preloader_t *pl = data;
    if (proc == pl->refork_proc) {
        on_refork_ready(pl, proc, status);
        return;
    }
    if (proc != pl->proc)
        return;
    if (status != 0) {
        const char *summary = fy_proc_error_summary(proc);
        fy_log(FY_LOG_WARN, "spawn", "app=%s pid=%d: the preloader failed to boot: %s",
               pl->app_root, (int)fy_proc_pid(proc), summary);
        snprintf(pl->last_exit, sizeof pl->last_exit, "failed to boot");
        fail_waiting(pl, status, summary, fy_proc_error_details(proc));
        drop_proc(pl);
        return;
    }
    if (!fy_proc_preloads(proc)) {
        fy_log(FY_LOG_WARN, "spawn", "app=%s pid=%d: the app's loader does not preload (its "
               "ready message names no preloader, docs/protocol.md §5.4): spawning its workers "
               "directly", pl->app_root, (int)fy_proc_pid(proc));
        pl->unsupported = true;
        snprintf(pl->last_exit, sizeof pl->last_exit, "the loader does not preload");
        fail_waiting(pl, -EAGAIN, "the app's loader does not preload", NULL);
        drop_proc(pl);
        return;
    }
    take_ready(pl);
    fy_log(FY_LOG_NOTICE, "spawn", "app=%s pid=%d boot_ms=%u: preloader ready", pl->app_root,
           (int)fy_proc_pid(proc), fy_proc_spawn_ms(proc));
    ask_waiting(pl);
}

static void on_preloader_exit(fy_proc_t *proc, int64_t exit_status, int term_signal, void *data)
{
    fy_preloader_t *pl = data;
    if (term_signal)
        snprintf(pl->last_exit, sizeof pl->last_exit, "killed by signal %d", term_signal);
    else if (exit_status == 0)
        snprintf(pl->last_exit, sizeof pl->last_exit, "exited (idle time)");
    else
        snprintf(pl->last_exit, sizeof pl->last_exit, "exited with status %lld",
                 (long long)exit_status);
    fy_log(exit_status == 0 && term_signal == 0 ? FY_LOG_NOTICE : FY_LOG_WARN, "spawn",
           "app=%s pid=%d status=%lld signal=%d: the preloader %s; the next spawn starts a new "
           "one", pl->app_root, (int)fy_proc_pid(proc), (long long)exit_status, term_signal,
           pl->last_exit);
    if (proc == pl->proc) {
        pl->proc = NULL;
        pl->ready = false;
    }
    fy_proc_close(proc);
    /* Spawns that waited for it (none when it was ready) need a new one. */
    if (pl->waiting != NULL && pl->proc == NULL && !pl->shutting_down)
        start_proc(pl);
}

static void on_preloader_closed(fy_proc_t *proc, void *data)
{
    fy_preloader_t *pl = data;
    (void)proc;
    if (--pl->open_procs == 0 && pl->shutting_down)
        pl_free(pl);
}

static const fy_spawn_callbacks_t preloader_cbs = {
    .on_ready = on_preloader_ready,
    .on_exit = on_preloader_exit,
    .on_closed = on_preloader_closed,
};

fy_preloader_t *fy_preloader_new(uv_loop_t *loop, const fy_spawn_options_t *opts)
{
    fy_preloader_t *pl = fy_xcalloc(1, sizeof *pl);
    pl->loop = loop;
    pl->o = *opts;
    pl->ferry_bin = fy_xstrdup(opts->ferry_bin);
    pl->app_root = fy_xstrdup(opts->app_root);
    pl->app_type = opts->app_type ? fy_xstrdup(opts->app_type) : NULL;
    pl->environment = opts->environment ? fy_xstrdup(opts->environment) : NULL;
    pl->instance_dir = opts->instance_dir ? fy_xstrdup(opts->instance_dir) : NULL;
    pl->o.ferry_bin = pl->ferry_bin;
    pl->o.app_root = pl->app_root;
    pl->o.app_type = pl->app_type;
    pl->o.environment = pl->environment;
    pl->o.instance_dir = pl->instance_dir;
    pl->o.preload = true;
    return pl;
}

int fy_proc_spawn_smart(fy_preloader_t *pl, const fy_spawn_callbacks_t *cbs, void *data,
                        fy_proc_t **out)
{
    if (pl == NULL || cbs == NULL || out == NULL || cbs->on_ready == NULL ||
        cbs->on_closed == NULL)
        return -EINVAL;
    if (pl->shutting_down)
        return -ESHUTDOWN;
    if (pl->unsupported)
        return -ENOTSUP;
    fy_spawn_options_t wo = pl->o;
    wo.preload = false;
    fy_proc_t *p = fy_proc_forked_new(pl->loop, &wo, cbs, data);
    *out = p;
    if (pl->proc != NULL && pl->ready) {
        ask(pl, p);
        return 0;
    }
    fy_proc_t **link = &pl->waiting;
    while (*link)
        link = fy_proc_wait_next(*link);
    *link = p;
    fy_proc_forked_set_waiting(p, pl);
    if (pl->proc == NULL)
        start_proc(pl);
    return 0;
}

int fy_preloader_refork(fy_preloader_t *pl, fy_proc_t *worker, fy_preloader_refork_cb done,
                        void *data)
{
    if (pl->shutting_down)
        return -ESHUTDOWN;
    if (pl->refork_proc != NULL)
        return -EALREADY;
    if (pl->proc != NULL && !pl->ready)
        return -EAGAIN; /* booting; with none at all (it went idle) the fork replaces nothing */
    int fd = fy_proc_take_control(worker);
    if (fd < 0)
        return -ENOTCONN;
    fy_proc_t *p = fy_proc_forked_new(pl->loop, &pl->o, &preloader_cbs, pl);
    pl->open_procs++;
    pl->refork_proc = p;
    pl->refork_from = fy_proc_pid(worker);
    pl->refork_done = done;
    pl->refork_data = data;
    fy_log(FY_LOG_INFO, "spawn", "app=%s worker=%d: re-fork: asking the worker to fork the next "
           "preloader", pl->app_root, (int)pl->refork_from);
    /* A failure here is reported through on_ready on the next turn, like any other. */
    (void)fy_proc_forked_refork(p, fd, pl->o.preload_idle_s);
    return 0;
}

bool fy_preloader_unsupported(const fy_preloader_t *pl)
{
    return pl->unsupported;
}

void fy_preloader_restart(fy_preloader_t *pl)
{
    refork_cancel(pl, -ECANCELED); /* it would fork the old code */
    if (pl->proc == NULL)
        return;
    fy_log(FY_LOG_NOTICE, "spawn", "app=%s pid=%d: rolling restart: stopping the preloader; the "
           "next spawn boots a new one with the app as it is now", pl->app_root,
           (int)fy_proc_pid(pl->proc));
    snprintf(pl->last_exit, sizeof pl->last_exit, "replaced by a rolling restart");
    drop_proc(pl);
    if (pl->waiting != NULL)
        start_proc(pl);
}

void fy_preloader_shutdown(fy_preloader_t *pl)
{
    if (pl == NULL)
        return;
    pl->shutting_down = true;
    refork_cancel(pl, -ESHUTDOWN);
    fail_waiting(pl, -ESHUTDOWN, "the server is shutting down", NULL);
    drop_proc(pl);
    if (pl->open_procs == 0)
        pl_free(pl);
}

void fy_preloader_get_info(const fy_preloader_t *pl, fy_preloader_info_t *out)
{
    memset(out, 0, sizeof *out);
    out->state = pl->proc == NULL ? "off" : pl->ready ? "ready" : "booting";
    out->pid = pl->proc ? fy_proc_pid(pl->proc) : 0;
    out->age_ms = pl->ready ? (uint64_t)(fy_monotonic_ms() - pl->ready_at_ms) : 0;
    out->starts = pl->starts;
    out->forks = pl->forks;
    out->reforks = pl->reforks;
    out->reforking_from = pl->refork_proc ? pl->refork_from : 0;
    out->last_exit = pl->last_exit;
}
