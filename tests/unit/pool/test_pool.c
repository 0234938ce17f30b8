/* Unit tests of src/pool: a real libuv loop and real `ferry worker` processes running the native
 * test apps in apps/ (c_hello answers with its pid; c_boot_error fails in ferry_app_init). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ipc/sock.h"
#include "pool/pool.h"
#include "uvtest.h"

#define MAX_PIDS 64

typedef struct waiter {
    fy_pool_waiter_t w;
    int calls;
    int status;
    fy_worker_t *worker;
    int order;
} waiter_t;

typedef struct ctx {
    uv_loop_t loop;
    fy_pool_t *pool;
    bool done;
    pid_t pids[MAX_PIDS]; /* every worker pid seen, checked gone at the end */
    size_t npids;
    int next_order;
    bool in_checkout;
    bool cb_inside_checkout;
} ctx_t;

static ctx_t C;
static uvtest_fds_t fds_before; /* open fds when the pool was created */

static void remember(pid_t pid)
{
    for (size_t i = 0; i < C.npids; i++)
        if (C.pids[i] == pid)
            return;
    if (C.npids < MAX_PIDS)
        C.pids[C.npids++] = pid;
}

static void on_waiter(fy_pool_waiter_t *w, fy_worker_t *worker, int status)
{
    waiter_t *wt = w->data;
    if (C.in_checkout)
        C.cb_inside_checkout = true;
    wt->calls++;
    wt->status = status;
    wt->worker = worker;
    wt->order = ++C.next_order;
    if (worker)
        remember(fy_worker_pid(worker));
}

static void waiter_init(waiter_t *wt)
{
    memset(wt, 0, sizeof *wt);
    wt->w.cb = on_waiter;
    wt->w.data = wt;
}

static fy_pool_options_t default_opts(const char *app_env)
{
    const char *root = getenv(app_env);
    const char *bin = getenv("FERRY_BIN");
    cr_assert(root && bin, "run through meson test");
    fy_pool_options_t o = {
        .app_root = root,
        .app_type = "c",
        .environment = "development",
        .ferry_bin = bin,
        .instance_dir = "/tmp",
        .max_pool_size = 6,
        .min_instances = 1,
        .pool_idle_time_s = 300,
        .max_request_queue_size = 100,
        .max_queue_time_s = 0,
        .max_requests = 0,
        .start_timeout_s = 20,
    };
    return o;
}

static void open_pool(const fy_pool_options_t *o)
{
    memset(&C, 0, sizeof C);
    cr_assert_eq(uv_loop_init(&C.loop), 0);
    /* After uv_loop_init: libuv's process-wide signal lock pipe is created once, there. */
    uvtest_fds_snapshot(&fds_before);
    cr_assert_eq(fy_pool_new(&C.loop, o, &C.pool), 0);
}

static fy_pool_stats_t stats(void)
{
    fy_pool_stats_t s;
    fy_pool_get_stats(C.pool, &s);
    return s;
}

/* Adds the pid of every "spawning a worker" log line to C.pids. */
static void remember_spawned(void)
{
    const char *log = uvtest_log_text();
    for (const char *p = log; (p = strstr(p, ": spawning a worker")) != NULL; p++) {
        const char *q = p;
        while (q > log && q[-1] != '=')
            q--;
        remember((pid_t)atoi(q));
    }
}

static int checkout(waiter_t *wt, fy_worker_t **w)
{
    C.in_checkout = true;
    int r = fy_pool_checkout(C.pool, &wt->w, w);
    C.in_checkout = false;
    if (r == 1)
        remember(fy_worker_pid(*w));
    return r;
}

static unsigned want_idle;
static bool idle_reached(void *arg)
{
    (void)arg;
    return stats().idle == want_idle;
}
static void wait_idle(unsigned n, unsigned ms)
{
    want_idle = n;
    cr_assert(uvtest_run_until(&C.loop, idle_reached, NULL, ms), "idle=%u, wanted %u", stats().idle,
              n);
}

static bool pid_gone(void *arg)
{
    return uvtest_pid_gone(*(pid_t *)arg);
}

static bool called(void *arg)
{
    return ((waiter_t *)arg)->calls > 0;
}
static void wait_called(waiter_t *wt, unsigned ms)
{
    cr_assert(uvtest_run_until(&C.loop, called, wt, ms), "waiter callback never ran");
    cr_assert_eq(wt->calls, 1);
}

static void on_done(fy_pool_t *pool, void *data)
{
    (void)pool;
    (void)data;
    C.done = true;
}
static bool is_done(void *arg)
{
    (void)arg;
    return C.done;
}

/* Shuts the pool down, frees it, and checks that no process, handle or zombie is left. */
static void close_pool(void)
{
    /* Every worker ever spawned, not only those checked out, must be gone at the end. */
    remember_spawned();
    fy_pool_shutdown(C.pool, 3000, on_done, NULL);
    cr_assert(uvtest_run_until(&C.loop, is_done, NULL, 10000), "shutdown never completed");
    fy_pool_free(C.pool);
    uv_run(&C.loop, UV_RUN_NOWAIT);
    cr_assert_eq(uvtest_open_handles(&C.loop), 0, "handles left open");
    cr_assert_eq(uv_loop_close(&C.loop), 0);
    for (size_t i = 0; i < C.npids; i++)
        cr_assert(uvtest_pid_gone(C.pids[i]), "worker %d left behind", (int)C.pids[i]);
    int leaked = uvtest_fds_new(&fds_before);
    cr_assert_eq(leaked, -1, "fd %d leaked", leaked);
}

/* Takes a worker that must be idle now. */
static fy_worker_t *take_idle(void)
{
    waiter_t wt;
    waiter_init(&wt);
    fy_worker_t *w = NULL;
    cr_assert_eq(checkout(&wt, &w), 1);
    cr_assert_not_null(w);
    return w;
}

static void setup(void)
{
    uvtest_capture_log();
}

TestSuite(pool, .init = setup, .timeout = 60);

Test(pool, refuses_invalid_options)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    uv_loop_t loop;
    uv_loop_init(&loop);
    fy_pool_t *p = NULL;
    o.max_pool_size = 0;
    cr_assert_eq(fy_pool_new(&loop, &o, &p), -EINVAL);
    o.max_pool_size = 2;
    o.min_instances = 3;
    cr_assert_eq(fy_pool_new(&loop, &o, &p), -EINVAL);
    o.min_instances = 1;
    o.app_root = NULL;
    cr_assert_eq(fy_pool_new(&loop, &o, &p), -EINVAL);
    o = default_opts("POOL_APP_HELLO");
    o.ferry_bin = NULL;
    cr_assert_eq(fy_pool_new(&loop, &o, &p), -EINVAL);
    cr_assert_null(p);
    uv_loop_close(&loop);
}

Test(pool, start_spawns_a_ready_worker_with_address_and_secret)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    open_pool(&o);
    cr_assert_eq(fy_pool_start(C.pool), 0);
    wait_idle(1, 20000);
    fy_worker_t *w = take_idle();
    const char *addr = fy_worker_address(w);
    cr_assert(strncmp(addr, "abstract:", 9) == 0 || strncmp(addr, "unix:", 5) == 0, "%s", addr);
    cr_assert_eq(strlen(fy_worker_secret(w)), 32);
    cr_assert_gt(fy_worker_pid(w), 0);
    int fd = fy_unix_connect(addr, 2000);
    cr_assert_geq(fd, 0, "the worker listens on its address: %d", fd);
    close(fd);
    cr_assert_null(fy_pool_boot_error(C.pool));
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    close_pool();
}

Test(pool, keeps_min_instances)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    o.min_instances = 3;
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(3, 20000);
    uvtest_run_for(&C.loop, 300);
    cr_assert_eq(stats().spawns_started, 3);
    cr_assert_eq(stats().idle, 3);
    close_pool();
}

Test(pool, lists_workers_with_state_and_request_count)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    o.min_instances = 2;
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(2, 20000);
    fy_worker_t *w = take_idle();
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    w = take_idle();
    fy_pool_worker_info_t info[4];
    cr_assert_eq(fy_pool_list_workers(C.pool, NULL, 0), 2);
    cr_assert_eq(fy_pool_list_workers(C.pool, info, 1), 2, "counts past <max>");
    cr_assert_eq(fy_pool_list_workers(C.pool, info, 4), 2);
    int busy = 0, idle = 0;
    unsigned requests = 0;
    for (int i = 0; i < 2; i++) {
        busy += strcmp(info[i].state, "busy") == 0;
        idle += strcmp(info[i].state, "idle") == 0;
        requests += info[i].requests;
        cr_assert_gt(info[i].pid, 0);
    }
    cr_assert_eq(busy, 1);
    cr_assert_eq(idle, 1);
    cr_assert_eq(requests, 1);
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    close_pool();
}

Test(pool, checkout_hands_out_an_idle_worker_without_callback)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(1, 20000);
    waiter_t wt;
    waiter_init(&wt);
    fy_worker_t *w = NULL;
    cr_assert_eq(checkout(&wt, &w), 1);
    cr_assert_eq(stats().busy, 1);
    uvtest_run_for(&C.loop, 100);
    cr_assert_eq(wt.calls, 0);
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    cr_assert_eq(stats().idle, 1);
    close_pool();
}

Test(pool, grows_on_demand_up_to_max_pool_size)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    o.min_instances = 0;
    o.max_pool_size = 2;
    open_pool(&o);
    fy_pool_start(C.pool);
    uvtest_run_for(&C.loop, 100);
    cr_assert_eq(stats().spawns_started, 0, "min_instances 0 spawns nothing up front");
    waiter_t a, b, c;
    waiter_init(&a);
    waiter_init(&b);
    waiter_init(&c);
    fy_worker_t *w = NULL;
    cr_assert_eq(checkout(&a, &w), 0);
    cr_assert_eq(checkout(&b, &w), 0);
    cr_assert_eq(checkout(&c, &w), 0);
    cr_assert(!C.cb_inside_checkout);
    wait_called(&a, 20000);
    wait_called(&b, 20000);
    cr_assert_eq(a.status, 0);
    cr_assert_eq(b.status, 0);
    cr_assert_neq(fy_worker_pid(a.worker), fy_worker_pid(b.worker));
    uvtest_run_for(&C.loop, 300);
    cr_assert_eq(c.calls, 0, "no third worker past max pool size");
    cr_assert_eq(stats().spawns_started, 2);
    fy_pool_checkin(C.pool, a.worker, FY_WORKER_OK);
    wait_called(&c, 2000);
    cr_assert_eq(c.worker, a.worker, "the freed worker goes to the waiter");
    fy_pool_checkin(C.pool, b.worker, FY_WORKER_OK);
    fy_pool_checkin(C.pool, c.worker, FY_WORKER_OK);
    close_pool();
}

Test(pool, full_queue_returns_ebusy)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    o.max_pool_size = 1;
    o.max_request_queue_size = 1;
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(1, 20000);
    fy_worker_t *w = take_idle();
    waiter_t b, c;
    waiter_init(&b);
    waiter_init(&c);
    fy_worker_t *x = NULL;
    cr_assert_eq(checkout(&b, &x), 0);
    cr_assert_eq(checkout(&c, &x), -EBUSY);
    cr_assert_eq(stats().queued, 1);
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    wait_called(&b, 2000);
    fy_pool_checkin(C.pool, b.worker, FY_WORKER_OK);
    cr_assert_eq(c.calls, 0);
    close_pool();
}

Test(pool, serves_waiters_in_fifo_order)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    o.max_pool_size = 1;
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(1, 20000);
    fy_worker_t *w = take_idle();
    waiter_t q[4];
    fy_worker_t *x = NULL;
    for (int i = 0; i < 4; i++) {
        waiter_init(&q[i]);
        cr_assert_eq(checkout(&q[i], &x), 0);
    }
    for (int i = 0; i < 4; i++) {
        fy_pool_checkin(C.pool, w, FY_WORKER_OK);
        wait_called(&q[i], 2000);
        cr_assert_eq(q[i].order, i + 1, "waiter %d served out of order", i);
        w = q[i].worker;
    }
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    close_pool();
}

Test(pool, cancelled_waiter_is_never_called)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    o.max_pool_size = 1;
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(1, 20000);
    fy_worker_t *w = take_idle();
    waiter_t b, c;
    waiter_init(&b);
    waiter_init(&c);
    fy_worker_t *x = NULL;
    cr_assert_eq(checkout(&b, &x), 0);
    cr_assert_eq(checkout(&c, &x), 0);
    fy_pool_cancel(C.pool, &b.w);
    fy_pool_cancel(C.pool, &b.w); /* no-op the second time */
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    wait_called(&c, 2000);
    cr_assert_eq(b.calls, 0);
    fy_pool_checkin(C.pool, c.worker, FY_WORKER_OK);
    close_pool();
}

Test(pool, waiter_past_max_queue_time_gets_etimedout)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    o.max_pool_size = 1;
    o.max_queue_time_s = 1;
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(1, 20000);
    fy_worker_t *w = take_idle();
    waiter_t b;
    waiter_init(&b);
    fy_worker_t *x = NULL;
    uint64_t t0 = uv_hrtime();
    cr_assert_eq(checkout(&b, &x), 0);
    wait_called(&b, 5000);
    uint64_t waited_ms = (uv_hrtime() - t0) / 1000000u;
    cr_assert_eq(b.status, -ETIMEDOUT);
    cr_assert_null(b.worker);
    cr_assert_geq(waited_ms, 900);
    cr_assert_lt(waited_ms, 2500);
    cr_assert_eq(stats().queued, 0);
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    close_pool();
}

Test(pool, stops_workers_idle_past_the_idle_time_down_to_min_instances)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    o.min_instances = 1;
    o.max_pool_size = 2;
    o.pool_idle_time_s = 1;
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(1, 20000);
    fy_worker_t *w = take_idle();
    waiter_t b;
    waiter_init(&b);
    fy_worker_t *x = NULL;
    cr_assert_eq(checkout(&b, &x), 0);
    wait_called(&b, 20000);
    pid_t pa = fy_worker_pid(w), pb = fy_worker_pid(b.worker);
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    fy_pool_checkin(C.pool, b.worker, FY_WORKER_OK);
    wait_idle(2, 1000);
    uvtest_run_for(&C.loop, 2500);
    fy_pool_stats_t s = stats();
    cr_assert_eq(s.idle, 1, "one worker stays (min instances)");
    cr_assert_eq(s.retiring, 0);
    cr_assert(uvtest_pid_gone(pa) != uvtest_pid_gone(pb), "exactly one of the two was stopped");
    cr_assert_eq(uvtest_log_count("stopping an idle worker"), 1);
    close_pool();
}

Test(pool, min_instances_zero_lets_the_last_idle_worker_go)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    o.min_instances = 0;
    o.pool_idle_time_s = 1;
    open_pool(&o);
    fy_pool_start(C.pool);
    waiter_t a;
    waiter_init(&a);
    fy_worker_t *x = NULL;
    cr_assert_eq(checkout(&a, &x), 0);
    wait_called(&a, 20000);
    pid_t pid = fy_worker_pid(a.worker);
    fy_pool_checkin(C.pool, a.worker, FY_WORKER_OK);
    uvtest_run_for(&C.loop, 2500);
    cr_assert_eq(stats().idle, 0);
    cr_assert(uvtest_run_until(&C.loop, pid_gone, &pid, 3000));
    cr_assert_eq(stats().spawns_started, 1, "nothing respawned");
    close_pool();
}

static bool idle_with_new_pid(void *arg)
{
    pid_t old = *(pid_t *)arg;
    if (stats().idle != 1)
        return false;
    waiter_t wt;
    waiter_init(&wt);
    fy_worker_t *w = NULL;
    if (fy_pool_checkout(C.pool, &wt.w, &w) != 1)
        return false;
    pid_t now = fy_worker_pid(w);
    remember(now);
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    return now != old;
}

Test(pool, replaces_a_worker_after_max_requests)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    o.max_requests = 3;
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(1, 20000);
    fy_worker_t *w = take_idle();
    pid_t first = fy_worker_pid(w);
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    w = take_idle();
    cr_assert_eq(fy_worker_pid(w), first);
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    w = take_idle();
    cr_assert_eq(fy_worker_pid(w), first);
    fy_pool_checkin(C.pool, w, FY_WORKER_OK); /* the third: retired */
    cr_assert_eq(stats().retiring, 1);
    wait_idle(1, 20000);
    w = take_idle();
    cr_assert_neq(fy_worker_pid(w), first);
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    uvtest_run_for(&C.loop, 500);
    cr_assert(uvtest_run_until(&C.loop, pid_gone, &first, 3000));
    cr_assert(strstr(uvtest_log_text(), "max requests reached") != NULL);
    close_pool();
}

/* --- memory limit -------------------------------------------------------------------------- */

/* A 1 KiB limit: every ferry worker is past it as soon as its PSS is read. The interval is the
 * test-only knob memory_check_interval_ms, so the check comes within a tick or two. */
static fy_pool_options_t memory_opts(uint64_t limit_kib)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    o.max_pool_size = 1;
    o.memory_limit_kib = limit_kib;
    o.memory_check_interval_ms = 100;
    return o;
}

Test(pool, idle_worker_past_the_memory_limit_is_replaced)
{
    fy_pool_options_t o = memory_opts(1);
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(1, 20000);
    fy_worker_t *w = take_idle();
    pid_t first = fy_worker_pid(w);
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    cr_assert(uvtest_run_until(&C.loop, idle_with_new_pid, &first, 20000), "%s",
              uvtest_log_text());
    cr_assert(uvtest_run_until(&C.loop, pid_gone, &first, 3000));
    char want[160];
    snprintf(want, sizeof want, "[notice] pool: app=%s pid=%d pss_kib=", o.app_root, (int)first);
    cr_assert(strstr(uvtest_log_text(), want) != NULL, "%s", uvtest_log_text());
    cr_assert(strstr(uvtest_log_text(), " limit_kib=1: memory limit passed; replacing the "
                                        "worker\n") != NULL, "%s", uvtest_log_text());
    snprintf(want, sizeof want, "pid=%d status=0 signal=0: worker stopped (memory limit)",
             (int)first);
    cr_assert(strstr(uvtest_log_text(), want) != NULL, "%s", uvtest_log_text());
    cr_assert_geq(stats().memory_limit_replacements, 1);
    close_pool();
}

Test(pool, busy_worker_past_the_memory_limit_is_replaced_at_checkin)
{
    fy_pool_options_t o = memory_opts(1);
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(1, 20000);
    fy_worker_t *w = take_idle();
    pid_t first = fy_worker_pid(w);
    uvtest_run_for(&C.loop, 800); /* several checks while it is busy */
    cr_assert_eq(uvtest_log_count("memory limit passed; replacing the worker after its current "
                                  "request"), 1, "%s", uvtest_log_text());
    cr_assert_eq(stats().busy, 1, "the request is not cut short");
    cr_assert_eq(stats().retiring, 0);
    cr_assert_eq(stats().spawns_started, 1);
    cr_assert_eq(stats().memory_limit_replacements, 0);
    cr_assert(!uvtest_pid_gone(first));
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    cr_assert_eq(stats().retiring, 1);
    cr_assert_eq(stats().memory_limit_replacements, 1);
    cr_assert(uvtest_run_until(&C.loop, idle_with_new_pid, &first, 20000));
    cr_assert(uvtest_run_until(&C.loop, pid_gone, &first, 3000));
    close_pool();
}

Test(pool, worker_under_the_memory_limit_is_kept)
{
    fy_pool_options_t o = memory_opts(1024 * 1024); /* 1 GiB */
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(1, 20000);
    fy_worker_t *w = take_idle();
    pid_t first = fy_worker_pid(w);
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    uvtest_run_for(&C.loop, 1000);
    w = take_idle();
    cr_assert_eq(fy_worker_pid(w), first);
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    cr_assert_eq(stats().spawns_started, 1);
    cr_assert_eq(stats().memory_limit_replacements, 0);
    cr_assert_eq(uvtest_log_count("memory limit passed"), 0);
    close_pool();
}

Test(pool, idle_worker_that_dies_is_removed_and_replaced)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(1, 20000);
    fy_worker_t *w = take_idle();
    pid_t first = fy_worker_pid(w);
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    cr_assert_eq(kill(first, SIGKILL), 0);
    cr_assert(uvtest_run_until(&C.loop, idle_with_new_pid, &first, 20000));
    char want[128];
    snprintf(want, sizeof want,
             "[error] pool: app=%s pid=%d status=0 signal=9: worker died while "
             "idle",
             o.app_root, (int)first);
    cr_assert(strstr(uvtest_log_text(), want) != NULL, "%s", uvtest_log_text());
    cr_assert(uvtest_run_until(&C.loop, pid_gone, &first, 3000));
    close_pool();
}

static bool one_idle(void *arg)
{
    (void)arg;
    return stats().idle == 1;
}

Test(pool, busy_worker_that_dies_stays_valid_until_checked_in)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(1, 20000);
    fy_worker_t *w = take_idle();
    pid_t first = fy_worker_pid(w);
    cr_assert_eq(kill(first, SIGKILL), 0);
    cr_assert(uvtest_run_until(&C.loop, one_idle, NULL, 20000), "replacement spawned");
    cr_assert_eq(fy_worker_pid(w), first, "the dead worker is still readable");
    cr_assert(strstr(uvtest_log_text(), "worker died during a request") != NULL);
    fy_pool_checkin(C.pool, w, FY_WORKER_BROKEN);
    cr_assert_eq(stats().busy, 0);
    cr_assert(uvtest_run_until(&C.loop, pid_gone, &first, 3000));
    close_pool();
}

Test(pool, timed_out_worker_gets_sigquit_then_sigkill_and_is_replaced)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(1, 20000);
    fy_worker_t *w = take_idle();
    pid_t first = fy_worker_pid(w);
    fy_pool_checkin(C.pool, w, FY_WORKER_TIMED_OUT);
    cr_assert(uvtest_run_until(&C.loop, idle_with_new_pid, &first, 20000));
    cr_assert(uvtest_run_until(&C.loop, pid_gone, &first, 3000), "SIGKILL after 1 s");
    cr_assert(strstr(uvtest_log_text(), "passed max request time; SIGQUIT") != NULL);
    close_pool();
}

Test(pool, broken_worker_is_replaced)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(1, 20000);
    fy_worker_t *w = take_idle();
    pid_t first = fy_worker_pid(w);
    fy_pool_checkin(C.pool, w, FY_WORKER_BROKEN);
    cr_assert(uvtest_run_until(&C.loop, idle_with_new_pid, &first, 20000));
    cr_assert(uvtest_run_until(&C.loop, pid_gone, &first, 3000));
    close_pool();
}

static bool has_boot_error(void *arg)
{
    (void)arg;
    return fy_pool_boot_error(C.pool) != NULL;
}

Test(pool, boot_failure_fails_waiters_with_enoexec_and_records_the_error)
{
    fy_pool_options_t o = default_opts("POOL_APP_BOOT_ERROR");
    o.min_instances = 0;
    open_pool(&o);
    fy_pool_start(C.pool);
    waiter_t a, b;
    waiter_init(&a);
    waiter_init(&b);
    fy_worker_t *x = NULL;
    cr_assert_eq(checkout(&a, &x), 0);
    cr_assert_eq(checkout(&b, &x), 0);
    wait_called(&a, 20000);
    wait_called(&b, 2000);
    cr_assert_eq(a.status, -ENOEXEC);
    cr_assert_eq(b.status, -ENOEXEC);
    const fy_app_error_t *e = fy_pool_boot_error(C.pool);
    cr_assert_not_null(e);
    cr_assert(strstr(e->summary, "deliberate boot failure") != NULL ||
                  strstr(e->details, "deliberate boot failure") != NULL,
              "summary=%s details=%s", e->summary, e->details);
    cr_assert_eq(strlen(e->error_id), 16);
    cr_assert_eq(strspn(e->error_id, "0123456789abcdef"), 16);
    char want[64];
    snprintf(want, sizeof want, "[error] pool: app=%s", o.app_root);
    const char *line = strstr(uvtest_log_text(), want);
    cr_assert_not_null(line);
    cr_assert(strstr(line, e->error_id) != NULL, "the error id is in the log line");
    waiter_t c;
    waiter_init(&c);
    cr_assert_eq(checkout(&c, &x), -ENOEXEC, "inside the pause");
    cr_assert_eq(stats().spawns_started, 1, "one attempt for both waiters");
    close_pool();
}

/* The app dir holds a symlink app.so → the failing app; the test repoints it at the good one
 * while the pool pauses, so the retry after 10 s succeeds. */
static char recover_dir[] = "/tmp/fy-pool-test-XXXXXX";

/* Runs even when an assertion ended the test early. */
static void remove_recover_dir(void)
{
    char link[sizeof recover_dir + 16];
    snprintf(link, sizeof link, "%s/app.so", recover_dir);
    unlink(link);
    rmdir(recover_dir);
}

Test(pool, failing_app_is_retried_at_most_once_per_10_seconds_and_recovers, .timeout = 60,
     .fini = remove_recover_dir)
{
    char *dir = recover_dir;
    cr_assert_not_null(mkdtemp(dir));
    char link[sizeof recover_dir + 16], target[4096];
    snprintf(link, sizeof link, "%s/app.so", dir);
    snprintf(target, sizeof target, "%s/app.so", getenv("POOL_APP_BOOT_ERROR"));
    cr_assert_eq(symlink(target, link), 0);
    fy_pool_options_t o = default_opts("POOL_APP_BOOT_ERROR");
    o.app_root = dir;
    open_pool(&o);
    fy_pool_start(C.pool);
    cr_assert(uvtest_run_until(&C.loop, has_boot_error, NULL, 20000));
    cr_assert_eq(unlink(link), 0);
    snprintf(target, sizeof target, "%s/app.so", getenv("POOL_APP_HELLO"));
    cr_assert_eq(symlink(target, link), 0);
    uvtest_run_for(&C.loop, 9000);
    cr_assert_eq(stats().spawns_started, 1, "no retry inside 10 s");
    cr_assert_not_null(fy_pool_boot_error(C.pool));
    wait_idle(1, 4000);
    cr_assert_eq(stats().spawns_started, 2, "one retry after 10 s");
    cr_assert_eq(stats().boot_failures, 1);
    cr_assert_null(fy_pool_boot_error(C.pool), "a successful spawn clears the boot error");
    cr_assert(strstr(uvtest_log_text(), "the app boots again") != NULL);
    close_pool();
}

/* fake_worker.py's "ready_then_exit" case reports ready, then exits 1 at once. */
Test(pool, worker_crashing_right_after_ready_counts_as_a_boot_failure)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    o.ferry_bin = getenv("FAKE_WORKER");
    o.app_root = "/fake/ready_then_exit";
    open_pool(&o);
    fy_pool_start(C.pool);
    cr_assert(uvtest_run_until(&C.loop, has_boot_error, NULL, 5000));
    const fy_app_error_t *e = fy_pool_boot_error(C.pool);
    cr_assert(strstr(e->summary, "worker exited with status 1 ") != NULL, "%s", e->summary);
    cr_assert(strstr(e->summary, "ms after it became ready") != NULL, "%s", e->summary);
    cr_assert_str_eq(e->details, "crashing right after boot");
    uvtest_run_for(&C.loop, 1500);
    cr_assert_eq(stats().spawns_started, 1, "no respawn loop");
    waiter_t a;
    waiter_init(&a);
    fy_worker_t *x = NULL;
    cr_assert_eq(checkout(&a, &x), -ENOEXEC);
    close_pool();
}

Test(pool, start_after_shutdown_is_refused)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    open_pool(&o);
    fy_pool_shutdown(C.pool, 1000, on_done, NULL);
    cr_assert_eq(fy_pool_start(C.pool), -ESHUTDOWN);
    fy_pool_shutdown(C.pool, 1000, on_done, NULL); /* a second call is a no-op */
    cr_assert(uvtest_run_until(&C.loop, is_done, NULL, 5000));
    fy_pool_free(C.pool);
    cr_assert_eq(uv_loop_close(&C.loop), 0);
}

static bool spawning_one(void *arg)
{
    (void)arg;
    return stats().spawning == 1;
}

/* fake_worker.py's "hang" case never becomes ready: the worker is caught in the spawning state. */
Test(pool, shutdown_while_spawning_reaps_the_new_worker)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    o.ferry_bin = getenv("FAKE_WORKER");
    o.app_root = "/fake/hang";
    cr_assert_not_null(o.ferry_bin);
    open_pool(&o);
    fy_pool_start(C.pool);
    cr_assert(uvtest_run_until(&C.loop, spawning_one, NULL, 2000));
    uvtest_run_for(&C.loop, 100);
    cr_assert_eq(stats().spawning, 1);
    close_pool();
    cr_assert(strstr(uvtest_log_text(), "still running at the end") == NULL,
              "SIGTERM stopped it, no SIGKILL needed");
}

Test(pool, shutdown_deadline_kills_a_busy_worker_and_waits_for_its_checkin)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(1, 20000);
    fy_worker_t *w = take_idle();
    pid_t pid = fy_worker_pid(w);
    fy_pool_shutdown(C.pool, 300, on_done, NULL);
    cr_assert(uvtest_run_until(&C.loop, pid_gone, &pid, 3000), "SIGKILL at the deadline");
    cr_assert(strstr(uvtest_log_text(), "still running at the end of the shutdown") != NULL);
    uvtest_run_for(&C.loop, 200);
    cr_assert(!C.done, "the front still holds the worker");
    fy_pool_checkin(C.pool, w, FY_WORKER_BROKEN);
    cr_assert(uvtest_run_until(&C.loop, is_done, NULL, 3000));
    fy_pool_free(C.pool);
    uv_run(&C.loop, UV_RUN_NOWAIT);
    cr_assert_eq(uvtest_open_handles(&C.loop), 0);
    cr_assert_eq(uv_loop_close(&C.loop), 0);
}

static bool waiter_a_done(void *arg)
{
    return ((waiter_t *)arg)->calls > 0;
}

Test(pool, shutdown_fails_waiters_and_reaps_every_worker)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    o.min_instances = 2;
    o.max_pool_size = 2;
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(2, 20000);
    fy_worker_t *w1 = take_idle();
    fy_worker_t *w2 = take_idle();
    waiter_t q;
    waiter_init(&q);
    fy_worker_t *x = NULL;
    cr_assert_eq(checkout(&q, &x), 0);
    fy_pool_shutdown(C.pool, 3000, on_done, NULL);
    cr_assert(uvtest_run_until(&C.loop, waiter_a_done, &q, 2000));
    cr_assert_eq(q.status, -ESHUTDOWN);
    waiter_t late;
    waiter_init(&late);
    cr_assert_eq(checkout(&late, &x), -ESHUTDOWN);
    uvtest_run_for(&C.loop, 200);
    cr_assert(!C.done, "busy workers hold the shutdown");
    fy_pool_checkin(C.pool, w1, FY_WORKER_OK);
    fy_pool_checkin(C.pool, w2, FY_WORKER_OK);
    cr_assert(uvtest_run_until(&C.loop, is_done, NULL, 5000));
    fy_pool_free(C.pool);
    remember_spawned();
    uv_run(&C.loop, UV_RUN_NOWAIT);
    cr_assert_eq(uvtest_open_handles(&C.loop), 0);
    cr_assert_eq(uv_loop_close(&C.loop), 0);
    for (size_t i = 0; i < C.npids; i++)
        cr_assert(uvtest_pid_gone(C.pids[i]));
}

Test(pool, shutdown_of_a_pool_never_started_completes)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    open_pool(&o);
    close_pool();
    cr_assert_eq(uvtest_log_count("spawning a worker"), 0);
}

/* --- rolling restarts ---------------------------------------------------------------------- */

/* Samples the pool while a restart runs: the most workers alive and spawning at once. */
typedef struct restart_watch {
    unsigned max_alive;
    unsigned max_spawning;
} restart_watch_t;

static bool restart_over(void *arg)
{
    restart_watch_t *rw = arg;
    fy_pool_stats_t s = stats();
    unsigned alive = s.spawning + s.idle + s.busy;
    if (rw && alive > rw->max_alive)
        rw->max_alive = alive;
    if (rw && s.spawning > rw->max_spawning)
        rw->max_spawning = s.spawning;
    return !s.restarting;
}

static void wait_restart_over(restart_watch_t *rw, unsigned ms)
{
    cr_assert(uvtest_run_until(&C.loop, restart_over, rw, ms), "restart still running: %s",
              uvtest_log_text());
}

/* The pids (and generations) of the workers that are not retiring. */
static size_t worker_pids(pid_t *out, size_t max, unsigned *generations)
{
    fy_pool_worker_info_t info[8];
    size_t all = fy_pool_list_workers(C.pool, info, 8), n = 0;
    cr_assert_leq(all, 8);
    for (size_t i = 0; i < all; i++) {
        if (strcmp(info[i].state, "retiring") == 0 || strcmp(info[i].state, "gone") == 0)
            continue;
        cr_assert_lt(n, max);
        out[n] = info[i].pid;
        if (generations)
            generations[n] = info[i].generation;
        n++;
    }
    return n;
}

Test(pool, restart_replaces_every_worker_one_at_a_time)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    o.min_instances = 2;
    o.max_pool_size = 2;
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(2, 20000);
    pid_t before[2];
    unsigned gen[2];
    cr_assert_eq(worker_pids(before, 2, gen), 2);
    cr_assert_eq(gen[0], 1);
    cr_assert_eq(gen[1], 1);
    cr_assert_eq(stats().generation, 1);
    cr_assert_eq(fy_pool_restart(C.pool), 0);
    fy_pool_stats_t s = stats();
    cr_assert(s.restarting);
    cr_assert_eq(s.old_workers, 2);
    cr_assert_eq(s.generation, 2);
    cr_assert_eq(s.restarts, 1);
    restart_watch_t rw = {0};
    wait_restart_over(&rw, 30000);
    cr_assert_leq(rw.max_spawning, 1, "one replacement at a time");
    cr_assert_leq(rw.max_alive, 3, "a replacement passes max_pool_size by one at most");
    wait_idle(2, 5000);
    s = stats();
    cr_assert_eq(s.old_workers, 0);
    cr_assert(!s.restart_failed);
    cr_assert_eq(s.spawns_started, 4);
    pid_t after[2];
    cr_assert_eq(worker_pids(after, 2, gen), 2);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(gen[i], 2);
        cr_assert(after[i] != before[0] && after[i] != before[1], "pid %d is an old one",
                  (int)after[i]);
        cr_assert(uvtest_run_until(&C.loop, pid_gone, &before[i], 3000));
    }
    cr_assert_eq(uvtest_log_count("rolling restart started"), 1);
    cr_assert_eq(uvtest_log_count("worker stopped (rolling restart)"), 2);
    cr_assert_eq(uvtest_log_count("rolling restart done"), 1);
    close_pool();
}

Test(pool, old_idle_workers_serve_while_the_replacement_boots)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(1, 20000);
    fy_worker_t *w = take_idle();
    pid_t old = fy_worker_pid(w);
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    cr_assert_eq(fy_pool_restart(C.pool), 0);
    cr_assert(stats().restarting);
    w = take_idle();
    cr_assert_eq(fy_worker_pid(w), old, "the old worker serves at once, nobody waits");
    /* The replacement boots meanwhile; the busy old worker goes once it is checked in. */
    cr_assert(uvtest_run_until(&C.loop, one_idle, NULL, 20000));
    cr_assert(stats().restarting);
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    wait_restart_over(NULL, 20000);
    w = take_idle();
    cr_assert_neq(fy_worker_pid(w), old);
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    cr_assert(uvtest_run_until(&C.loop, pid_gone, &old, 3000));
    close_pool();
}

Test(pool, busy_old_worker_is_retired_when_checked_in)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    o.max_pool_size = 1;
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(1, 20000);
    fy_worker_t *w = take_idle();
    pid_t old = fy_worker_pid(w);
    cr_assert_eq(fy_pool_restart(C.pool), 0);
    cr_assert(uvtest_run_until(&C.loop, one_idle, NULL, 20000));
    uvtest_run_for(&C.loop, 300);
    fy_pool_stats_t s = stats();
    cr_assert_eq(s.busy, 1, "the old worker keeps its request");
    cr_assert_eq(s.idle, 1, "its replacement is ready: max_pool_size + 1 alive");
    cr_assert_eq(s.spawning, 0, "no further replacement");
    cr_assert(s.restarting);
    cr_assert_eq(s.old_workers, 1);
    cr_assert(!uvtest_pid_gone(old));
    cr_assert(strstr(uvtest_log_text(), "stopping the old worker after its current request"));
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    cr_assert_eq(stats().retiring, 1);
    wait_restart_over(NULL, 5000);
    cr_assert(uvtest_run_until(&C.loop, pid_gone, &old, 3000));
    cr_assert_eq(stats().old_workers, 0);
    close_pool();
}

Test(pool, restart_with_no_worker_alive_is_done_at_once)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    o.min_instances = 0;
    open_pool(&o);
    fy_pool_start(C.pool);
    cr_assert_eq(fy_pool_restart(C.pool), 0);
    fy_pool_stats_t s = stats();
    cr_assert(!s.restarting);
    cr_assert_eq(s.generation, 2);
    cr_assert_eq(s.restarts, 1);
    uvtest_run_for(&C.loop, 200);
    cr_assert_eq(stats().spawns_started, 0);
    close_pool();
}

static bool one_replaced(void *arg)
{
    (void)arg;
    return uvtest_log_count("replaced by pid=") >= 1;
}

Test(pool, restart_asked_again_replaces_every_worker_alive_then)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    o.min_instances = 2;
    o.max_pool_size = 2;
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(2, 20000);
    cr_assert_eq(fy_pool_restart(C.pool), 0);
    cr_assert(uvtest_run_until(&C.loop, one_replaced, NULL, 20000));
    cr_assert_eq(fy_pool_restart(C.pool), 0);
    fy_pool_stats_t s = stats();
    cr_assert(s.restarting);
    cr_assert_eq(s.generation, 3);
    cr_assert_eq(s.old_workers, s.spawning + s.idle + s.busy,
                 "the worker already replaced is old again");
    cr_assert(strstr(uvtest_log_text(), "rolling restart started over"));
    wait_restart_over(NULL, 30000);
    wait_idle(2, 5000);
    pid_t pids[2];
    unsigned gen[2];
    cr_assert_eq(worker_pids(pids, 2, gen), 2);
    cr_assert_eq(gen[0], 3);
    cr_assert_eq(gen[1], 3);
    cr_assert_eq(stats().old_workers, 0);
    close_pool();
}

Test(pool, restart_after_shutdown_is_refused)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    open_pool(&o);
    fy_pool_shutdown(C.pool, 1000, on_done, NULL);
    cr_assert_eq(fy_pool_restart(C.pool), -ESHUTDOWN);
    cr_assert(uvtest_run_until(&C.loop, is_done, NULL, 5000));
    fy_pool_free(C.pool);
    cr_assert_eq(uv_loop_close(&C.loop), 0);
}

/* An app dir whose app.so is a symlink the test repoints, and a tmp/ for restart.txt. */
static char deploy_dir[] = "/tmp/fy-pool-deploy-XXXXXX";

static void deploy_path(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", deploy_dir, name);
}

static void deploy(const char *app_env)
{
    char link[256], target[4096];
    deploy_path(link, sizeof link, "app.so");
    unlink(link);
    snprintf(target, sizeof target, "%s/app.so", getenv(app_env));
    cr_assert_eq(symlink(target, link), 0);
}

static void make_deploy_dir(void)
{
    cr_assert_not_null(mkdtemp(deploy_dir));
    char tmp[256];
    deploy_path(tmp, sizeof tmp, "tmp");
    cr_assert_eq(mkdir(tmp, 0700), 0);
}

/* Runs even when an assertion ended the test early. */
static void remove_deploy_dir(void)
{
    char path[256];
    deploy_path(path, sizeof path, "tmp/restart.txt");
    unlink(path);
    deploy_path(path, sizeof path, "tmp");
    rmdir(path);
    deploy_path(path, sizeof path, "app.so");
    unlink(path);
    rmdir(deploy_dir);
}

/* Sets tmp/restart.txt's mtime to <sec> (creating the file). */
static void touch_restart_txt(time_t sec)
{
    char path[256];
    deploy_path(path, sizeof path, "tmp/restart.txt");
    FILE *f = fopen(path, "a");
    cr_assert_not_null(f);
    fclose(f);
    struct timespec ts[2] = {{sec, 0}, {sec, 0}};
    cr_assert_eq(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static bool restart_failed(void *arg)
{
    (void)arg;
    return stats().restart_failed;
}

Test(pool, boot_failure_stops_the_restart_and_old_workers_keep_serving, .timeout = 60,
     .fini = remove_deploy_dir)
{
    make_deploy_dir();
    deploy("POOL_APP_HELLO");
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    o.app_root = deploy_dir;
    o.min_instances = 2;
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(2, 20000);
    pid_t before[2];
    cr_assert_eq(worker_pids(before, 2, NULL), 2);
    deploy("POOL_APP_BOOT_ERROR");
    cr_assert_eq(fy_pool_restart(C.pool), 0);
    cr_assert(uvtest_run_until(&C.loop, restart_failed, NULL, 20000));
    fy_pool_stats_t s = stats();
    cr_assert(!s.restarting);
    cr_assert_eq(s.old_workers, 2);
    cr_assert_eq(s.idle, 2);
    cr_assert_eq(s.boot_failures, 1);
    const fy_app_error_t *e = fy_pool_boot_error(C.pool);
    cr_assert_not_null(e);
    char want[128];
    snprintf(want, sizeof want, "error_id=%s replaced=0 old_workers=2: rolling restart stopped",
             e->error_id);
    cr_assert(strstr(uvtest_log_text(), want), "%s", uvtest_log_text());
    for (int i = 0; i < 4; i++) {
        fy_worker_t *w = take_idle();
        pid_t pid = fy_worker_pid(w);
        cr_assert(pid == before[0] || pid == before[1]);
        fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    }
    /* A later restart tries again, after the 10-second pause. */
    deploy("POOL_APP_HELLO");
    cr_assert_eq(fy_pool_restart(C.pool), 0);
    cr_assert(!stats().restart_failed);
    uvtest_run_for(&C.loop, 2000);
    cr_assert_eq(stats().spawns_started, 3, "no spawn inside the pause");
    wait_restart_over(NULL, 30000);
    cr_assert(!stats().restart_failed);
    cr_assert_null(fy_pool_boot_error(C.pool));
    cr_assert_eq(stats().old_workers, 0);
    close_pool();
}

static bool restarted_once(void *arg)
{
    (void)arg;
    return stats().restarts == 1 && !stats().restarting;
}

/* Checks out and back in now and then for <ms>: each checkout may look at restart.txt. */
static void serve_for(unsigned ms)
{
    for (unsigned t = 0; t < ms; t += 100) {
        fy_worker_t *w = take_idle();
        fy_pool_checkin(C.pool, w, FY_WORKER_OK);
        uvtest_run_for(&C.loop, 100);
    }
}

Test(pool, restart_txt_restarts_on_the_next_request_when_its_mtime_changes, .timeout = 60,
     .fini = remove_deploy_dir)
{
    make_deploy_dir();
    deploy("POOL_APP_HELLO");
    touch_restart_txt(1000000000); /* older than the pool: restarts nothing */
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    o.app_root = deploy_dir;
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(1, 20000);
    serve_for(1500);
    cr_assert_eq(stats().restarts, 0, "an old restart.txt does not restart at boot");
    touch_restart_txt(1000000100);
    uvtest_run_for(&C.loop, 1100);
    cr_assert_eq(stats().restarts, 0, "nothing happens without a request");
    fy_worker_t *w = take_idle();
    cr_assert_eq(stats().restarts, 1, "the next request starts it");
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    cr_assert(uvtest_run_until(&C.loop, restarted_once, NULL, 20000));
    char want[256];
    snprintf(want, sizeof want, "[notice] pool: app=%s file=%s/tmp/restart.txt: restart.txt "
             "changed: rolling restart", deploy_dir, deploy_dir);
    cr_assert(strstr(uvtest_log_text(), want), "%s", uvtest_log_text());
    serve_for(2500);
    cr_assert_eq(stats().restarts, 1, "an unchanged restart.txt does not restart again");
    close_pool();
}

/* ---- session protocol v2: dispatch-ahead, requeue, the session hook ---------------------- */

Test(pool, a_native_worker_offers_session_protocol_v2)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(1, 20000);
    fy_worker_t *w = take_idle();
    cr_assert_eq(fy_worker_protocol(w), 2);
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    close_pool();
}

Test(pool, without_dispatch_ahead_a_second_request_waits_for_the_busy_worker)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    o.max_pool_size = 1;
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(1, 20000);
    fy_worker_t *w = take_idle();
    waiter_t b;
    waiter_init(&b);
    fy_worker_t *x = NULL;
    cr_assert_eq(checkout(&b, &x), 0);
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    wait_called(&b, 2000);
    fy_pool_checkin(C.pool, b.worker, FY_WORKER_OK);
    close_pool();
}

Test(pool, dispatch_ahead_hands_a_busy_v2_worker_one_more_request_and_no_more)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    o.max_pool_size = 1;
    o.dispatch_ahead = 1;
    o.dispatch_ahead_young_us = 60000000; /* a loaded machine may take long between calls */
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(1, 20000);
    fy_worker_t *w = take_idle();
    fy_worker_t *ahead = take_idle();   /* no idle worker: the busy one takes it ahead */
    cr_assert_eq(ahead, w);
    waiter_t c;
    waiter_init(&c);
    fy_worker_t *x = NULL;
    cr_assert_eq(checkout(&c, &x), 0, "depth 1: a third request waits");
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    cr_assert_eq(stats().busy, 1, "busy until its last request is checked in");
    wait_called(&c, 2000);
    cr_assert_eq(c.worker, w);
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    cr_assert_eq(stats().idle, 1);
    cr_assert_eq(stats().requests_done, 3);
    close_pool();
}

/* Busy-waits <ms> milliseconds: the request a test holds has then run that long. */
static void run_for_ms(unsigned ms)
{
    uint64_t t0 = uv_hrtime();
    while (uv_hrtime() - t0 < (uint64_t)ms * 1000000)
        ;
}

Test(pool, dispatch_ahead_skips_a_worker_whose_request_has_run_past_the_young_limit)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    o.max_pool_size = 1;
    o.dispatch_ahead = 1;
    o.dispatch_ahead_young_us = 1000;
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(1, 20000);
    fy_worker_t *w = take_idle();
    run_for_ms(2); /* its request has now run 2 ms, past the 1 ms limit */
    waiter_t b;
    waiter_init(&b);
    fy_worker_t *x = NULL;
    cr_assert_eq(checkout(&b, &x), 0, "queued: not behind a request that may be slow");
    cr_assert_null(x);
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    wait_called(&b, 2000);
    cr_assert_eq(b.worker, w);
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    close_pool();
}

Test(pool, after_a_long_request_dispatch_ahead_waits_for_many_short_ones)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    o.max_pool_size = 1;
    o.dispatch_ahead = 1;
    o.dispatch_ahead_young_us = 1000;
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(1, 20000);
    fy_worker_t *w = take_idle();
    run_for_ms(2); /* this request runs 2 ms: the app has slow requests */
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    w = take_idle(); /* young, but the pool has just seen a long one */
    waiter_t b;
    waiter_init(&b);
    fy_worker_t *x = NULL;
    cr_assert_eq(checkout(&b, &x), 0, "queued: no dispatch-ahead right after a slow request");
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    wait_called(&b, 2000);
    fy_pool_checkin(C.pool, b.worker, FY_WORKER_OK);
    close_pool();
}

Test(pool, a_request_dispatched_ahead_but_never_started_is_not_counted)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    o.max_pool_size = 1;
    o.dispatch_ahead = 1;
    o.dispatch_ahead_young_us = 60000000; /* a loaded machine may take long between calls */
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(1, 20000);
    fy_worker_t *w = take_idle();
    fy_worker_t *ahead = take_idle();
    fy_pool_checkin(C.pool, ahead, FY_WORKER_NOT_STARTED);
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    cr_assert_eq(stats().requests_done, 1);
    cr_assert_eq(stats().idle, 1);
    close_pool();
}

Test(pool, a_broken_checkin_retires_a_worker_that_has_requests_dispatched_ahead)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    o.max_pool_size = 1;
    o.dispatch_ahead = 1;
    o.dispatch_ahead_young_us = 60000000; /* a loaded machine may take long between calls */
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(1, 20000);
    fy_worker_t *w = take_idle();
    fy_worker_t *ahead = take_idle();
    pid_t first = fy_worker_pid(w);
    fy_pool_checkin(C.pool, w, FY_WORKER_BROKEN);
    cr_assert_eq(stats().retiring, 1);
    fy_pool_checkin(C.pool, ahead, FY_WORKER_NOT_STARTED);   /* valid until the last check-in */
    cr_assert(uvtest_run_until(&C.loop, idle_with_new_pid, &first, 20000));
    close_pool();
}

Test(pool, requeue_puts_a_request_back_at_the_head_of_the_queue)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    o.max_pool_size = 1;
    o.max_request_queue_size = 1;
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(1, 20000);
    fy_worker_t *w = take_idle();
    waiter_t queued, back;
    waiter_init(&queued);
    waiter_init(&back);
    fy_worker_t *x = NULL;
    cr_assert_eq(checkout(&queued, &x), 0);
    /* the queue is full, but a request put back is not refused */
    cr_assert_eq(fy_pool_requeue(C.pool, &back.w), 0);
    cr_assert_eq(stats().queued, 2);
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    wait_called(&back, 2000);
    cr_assert_eq(queued.calls, 0, "the request put back goes first");
    fy_pool_checkin(C.pool, back.worker, FY_WORKER_OK);
    wait_called(&queued, 2000);
    fy_pool_checkin(C.pool, queued.worker, FY_WORKER_OK);
    close_pool();
}

Test(pool, an_exiting_worker_is_retired_without_a_signal_and_not_handed_out)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    o.max_pool_size = 1;
    open_pool(&o);
    fy_pool_start(C.pool);
    wait_idle(1, 20000);
    fy_worker_t *w = take_idle();
    pid_t pid = fy_worker_pid(w);
    fy_pool_checkin(C.pool, w, FY_WORKER_EXITING);
    cr_assert_eq(stats().retiring, 1);
    cr_assert_eq(stats().idle, 0);
    cr_assert_eq(kill(pid, 0), 0, "no signal that ends it was sent");
    close_pool();
}

static int gone_calls;
static void *gone_session;
static void on_worker_gone(fy_worker_t *w, void *session, void *data)
{
    (void)w;
    (void)data;
    gone_calls++;
    gone_session = session;
}
static bool gone_called(void *arg)
{
    (void)arg;
    return gone_calls > 0;
}

Test(pool, the_session_hook_runs_once_with_the_session_when_its_worker_exits)
{
    fy_pool_options_t o = default_opts("POOL_APP_HELLO");
    open_pool(&o);
    gone_calls = 0;
    gone_session = NULL;
    fy_pool_set_worker_gone(C.pool, on_worker_gone, NULL);
    fy_pool_start(C.pool);
    wait_idle(1, 20000);
    fy_worker_t *w = take_idle();
    static int marker;
    fy_worker_set_session(w, &marker);
    cr_assert_eq(fy_worker_session(w), &marker);
    fy_pool_checkin(C.pool, w, FY_WORKER_OK);
    pid_t pid = fy_worker_pid(w);
    cr_assert_eq(kill(pid, SIGKILL), 0);
    cr_assert(uvtest_run_until(&C.loop, gone_called, NULL, 5000));
    cr_assert_eq(gone_session, &marker);
    uvtest_run_for(&C.loop, 200);
    cr_assert_eq(gone_calls, 1);
    close_pool();
}
