/* Unit tests of src/spawn: a real libuv loop, real child processes. fake_worker.py plays a
 * misbehaving `ferry worker`; the real one is run with a tiny WSGI app. */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "spawn/spawn.h"
#include "uvtest.h"

typedef struct ctx {
    uv_loop_t loop;
    fy_proc_t *proc;
    int ready_calls;
    int ready_status;
    pid_t pid;
    bool proc_exited_at_ready;
    int exit_calls;
    int64_t exit_status;
    int term_signal;
    int closed_calls;
    char summary[512];
    char details[4096];
    char address[FY_ADDRESS_MAX];
    char secret[64];
    unsigned protocol;
    uvtest_fds_t fds_before; /* open fds before the spawn, to catch leaked pipe ends */
    bool fds_unchecked;      /* the test itself holds fds open on purpose */
} ctx_t;

static void on_ready(fy_proc_t *p, int status, void *data)
{
    ctx_t *c = data;
    c->ready_calls++;
    c->ready_status = status;
    c->proc_exited_at_ready = fy_proc_exited(p);
    snprintf(c->summary, sizeof c->summary, "%s", fy_proc_error_summary(p));
    snprintf(c->details, sizeof c->details, "%s", fy_proc_error_details(p));
    snprintf(c->address, sizeof c->address, "%s", fy_proc_address(p));
    snprintf(c->secret, sizeof c->secret, "%s", fy_proc_secret(p));
    c->protocol = status == 0 ? fy_proc_protocol(p) : 0;
}

static void on_exit_cb(fy_proc_t *p, int64_t exit_status, int term_signal, void *data)
{
    ctx_t *c = data;
    (void)p;
    c->exit_calls++;
    c->exit_status = exit_status;
    c->term_signal = term_signal;
}

static void on_closed(fy_proc_t *p, void *data)
{
    ctx_t *c = data;
    (void)p;
    c->closed_calls++;
}

static const fy_spawn_callbacks_t cbs = {on_ready, on_exit_cb, on_closed};

static bool ready_called(void *arg)
{
    return ((ctx_t *)arg)->ready_calls > 0;
}
static bool exit_called(void *arg)
{
    return ((ctx_t *)arg)->exit_calls > 0;
}
static bool closed_called(void *arg)
{
    return ((ctx_t *)arg)->closed_calls > 0;
}

static const char *fake_bin(void)
{
    const char *b = getenv("FAKE_WORKER");
    cr_assert(b != NULL, "FAKE_WORKER is not set (run through meson test)");
    return b;
}

static void setup(void)
{
    uvtest_capture_log();
}

static void start(ctx_t *c, const char *bin, const char *root, const char *type,
                  unsigned timeout_ms)
{
    memset(c, 0, sizeof *c);
    cr_assert_eq(uv_loop_init(&c->loop), 0);
    uvtest_fds_snapshot(&c->fds_before);
    fy_spawn_options_t o = {
        .ferry_bin = bin,
        .app_root = root,
        .app_type = type,
        .environment = "development",
        .instance_dir = "/tmp/fy-instance-test",
        .start_timeout_ms = timeout_ms,
    };
    cr_assert_eq(fy_proc_spawn(&c->loop, &o, &cbs, c, &c->proc), 0);
    c->pid = fy_proc_pid(c->proc);
}

/* Closes the proc, runs the loop until it is freed, and checks nothing is left behind. */
static void finish(ctx_t *c)
{
    fy_proc_close(c->proc);
    cr_assert(uvtest_run_until(&c->loop, closed_called, c, 5000), "on_closed never ran");
    cr_assert_eq(c->closed_calls, 1);
    cr_assert(uvtest_pid_gone(c->pid), "pid %d still exists", (int)c->pid);
    uv_run(&c->loop, UV_RUN_NOWAIT);
    cr_assert_eq(uvtest_open_handles(&c->loop), 0, "handles left open");
    cr_assert_eq(uv_loop_close(&c->loop), 0);
    /* After uv_loop_close: the loop's own signal pipe for SIGCHLD is gone too. */
    if (!c->fds_unchecked) {
        int leaked = uvtest_fds_new(&c->fds_before);
        cr_assert_eq(leaked, -1, "fd %d leaked", leaked);
    }
}

static void spawn_fake(ctx_t *c, const char *name, unsigned timeout_ms)
{
    char root[PATH_MAX];
    snprintf(root, sizeof root, "/fake/%s", name);
    start(c, fake_bin(), root, "wsgi", timeout_ms);
    cr_assert(uvtest_run_until(&c->loop, ready_called, c, 10000), "on_ready never ran");
    cr_assert_eq(c->ready_calls, 1);
}

TestSuite(spawn, .init = setup, .timeout = 30);

Test(spawn, reports_ready_with_address_and_secret)
{
    ctx_t c;
    spawn_fake(&c, "ready", 5000);
    cr_assert_eq(c.ready_status, 0);
    cr_assert_str_eq(c.secret, "0123456789abcdef0123456789abcdef");
    char want[64];
    snprintf(want, sizeof want, "abstract:fake.%d", (int)c.pid);
    cr_assert_str_eq(c.address, want);
    cr_assert(!c.proc_exited_at_ready);
    finish(&c);
    cr_assert_eq(c.exit_calls, 0, "on_exit must not run after fy_proc_close");
}

Test(spawn, a_four_item_ready_is_a_v1_worker)
{
    ctx_t c;
    spawn_fake(&c, "ready", 5000);
    cr_assert_eq(c.ready_status, 0);
    cr_assert_eq(c.protocol, 1);
    finish(&c);
}

Test(spawn, a_fifth_ready_item_2_offers_session_protocol_v2)
{
    ctx_t c;
    spawn_fake(&c, "ready_v2", 5000);
    cr_assert_eq(c.ready_status, 0);
    cr_assert_eq(c.protocol, 2);
    cr_assert_str_eq(c.secret, "0123456789abcdef0123456789abcdef");
    finish(&c);
}

Test(spawn, an_unknown_fifth_ready_item_falls_back_to_v1_with_a_warning)
{
    ctx_t c;
    spawn_fake(&c, "ready_v9", 5000);
    cr_assert_eq(c.ready_status, 0);
    cr_assert_eq(c.protocol, 1);
    cr_assert(strstr(uvtest_log_text(), "ready offers protocol \"9\"") != NULL, "%s",
              uvtest_log_text());
    finish(&c);
}

Test(spawn, logs_stdout_and_stderr_lines_with_app_and_pid)
{
    ctx_t c;
    spawn_fake(&c, "ready", 5000);
    char want[128];
    snprintf(want, sizeof want, "[info] app: app=/fake/ready pid=%d: hello stdout\n", (int)c.pid);
    uvtest_run_for(&c.loop, 200);
    cr_assert(strstr(uvtest_log_text(), want) != NULL, "%s", uvtest_log_text());
    snprintf(want, sizeof want, "[info] app: app=/fake/ready pid=%d: hello stderr\n", (int)c.pid);
    cr_assert(strstr(uvtest_log_text(), want) != NULL, "%s", uvtest_log_text());
    finish(&c);
}

Test(spawn, passes_handshake_environment_and_arguments)
{
    ctx_t c;
    spawn_fake(&c, "ready", 5000);
    uvtest_run_for(&c.loop, 200);
    cr_assert(strstr(uvtest_log_text(),
                     "env FERRY_ENV=development FERRY_INSTANCE_DIR=/tmp/fy-instance-test "
                     "FERRY_OWNER_FD=3 FERRY_CONTROL_FD=4 FERRY_APP_ROOT=/fake/ready "
                     "FERRY_APP_TYPE=wsgi argv=worker,/fake/ready,--type,wsgi\n") != NULL,
              "%s", uvtest_log_text());
    finish(&c);
}

Test(spawn, splits_over_long_lines_and_flushes_the_last_partial_line)
{
    ctx_t c;
    spawn_fake(&c, "longline", 5000);
    cr_assert_eq(c.ready_status, 0);
    cr_assert_str_eq(c.address, "unix:/tmp/fake.sock");
    finish(&c);
    const char *log = uvtest_log_text();
    cr_assert_eq(uvtest_log_count("app: app=/fake/longline pid="), 4, "%s", log);
    cr_assert(strstr(log, ": no newline at the end\n") != NULL, "%s", log);
}

Test(spawn, reports_exit_after_ready)
{
    ctx_t c;
    spawn_fake(&c, "ready", 5000);
    cr_assert_eq(kill(c.pid, SIGKILL), 0);
    cr_assert(uvtest_run_until(&c.loop, exit_called, &c, 5000));
    cr_assert_eq(c.term_signal, SIGKILL);
    cr_assert(fy_proc_exited(c.proc));
    finish(&c);
}

Test(spawn, stop_sends_the_signal_then_sigkill_after_the_grace_period)
{
    ctx_t c;
    spawn_fake(&c, "ignore_usr1", 5000);
    cr_assert_eq(c.ready_status, 0);
    cr_assert_eq(fy_proc_stop(c.proc, SIGUSR1, 300), 0);
    cr_assert(uvtest_run_until(&c.loop, exit_called, &c, 5000));
    cr_assert_eq(c.term_signal, SIGKILL);
    cr_assert(strstr(uvtest_log_text(), "sending SIGKILL") != NULL);
    finish(&c);
}

Test(spawn, close_kills_and_reaps_a_running_worker)
{
    ctx_t c;
    spawn_fake(&c, "ignore_usr1", 5000);
    finish(&c); /* asserts the pid is gone and not a zombie */
}

Test(spawn, close_right_after_spawn_reaps_the_child)
{
    ctx_t c;
    start(&c, fake_bin(), "/fake/hang", NULL, 5000);
    finish(&c);
    cr_assert_eq(c.ready_calls, 0);
}

Test(spawn, parses_the_error_message)
{
    ctx_t c;
    spawn_fake(&c, "error", 5000);
    cr_assert_eq(c.ready_status, -ENOEXEC);
    cr_assert(c.proc_exited_at_ready, "a boot failure is reported after the exit");
    cr_assert_str_eq(c.summary, "boom: the app failed");
    cr_assert_str_eq(c.details, "line one\nline two");
    finish(&c);
}

Test(spawn, exit_before_ready_is_a_boot_failure_with_the_stderr_tail)
{
    ctx_t c;
    spawn_fake(&c, "exit3", 5000);
    cr_assert_eq(c.ready_status, -ENOEXEC);
    cr_assert_str_eq(c.summary, "worker exited with status 3 before it was ready");
    cr_assert_str_eq(c.details, "first line\nthe last words");
    finish(&c);
}

Test(spawn, start_timeout_kills_the_worker)
{
    ctx_t c;
    spawn_fake(&c, "hang", 500);
    cr_assert_eq(c.ready_status, -ETIMEDOUT);
    cr_assert_str_eq(c.summary, "worker did not become ready within 1 s");
    cr_assert(uvtest_pid_gone(c.pid));
    finish(&c);
}

Test(spawn, closed_control_channel_without_ready_is_a_boot_failure)
{
    ctx_t c;
    uint64_t t0 = uv_hrtime();
    spawn_fake(&c, "closectl", 30000);
    cr_assert_lt((uv_hrtime() - t0) / 1000000u, 5000, "not the start timeout");
    cr_assert_eq(c.ready_status, -ENOEXEC);
    cr_assert_str_eq(c.summary, "worker closed the control channel before it was ready");
    cr_assert(c.proc_exited_at_ready);
    finish(&c);
}

Test(spawn, worker_that_stays_after_its_error_is_killed)
{
    ctx_t c;
    spawn_fake(&c, "error_stay", 30000);
    cr_assert_eq(c.ready_status, -ENOEXEC);
    cr_assert_str_eq(c.summary, "stays after its error");
    cr_assert(strstr(uvtest_log_text(), "did not exit after its handshake ended") != NULL);
    finish(&c);
}

/* Fills every free fd slot below a lowered RLIMIT_NOFILE but <leave>, so the next fd-creating
 * calls fail with EMFILE. */
static void exhaust_fds(int leave)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rl.rlim_cur = 256;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    int fds[256];
    int n = 0;
    int fd;
    while ((fd = dup(0)) >= 0)
        fds[n++] = fd;
    cr_assert_eq(errno, EMFILE);
    for (int i = 0; i < leave && n > 0; i++)
        close(fds[--n]);
}

Test(spawn, reports_a_failed_owner_pipe)
{
    ctx_t c;
    memset(&c, 0, sizeof c);
    c.fds_unchecked = true;
    uvtest_capture_log();
    cr_assert_eq(uv_loop_init(&c.loop), 0);
    exhaust_fds(0);
    fy_spawn_options_t o = {.ferry_bin = fake_bin(), .app_root = "/fake/ready"};
    cr_assert_eq(fy_proc_spawn(&c.loop, &o, &cbs, &c, &c.proc), 0);
    cr_assert(uvtest_run_until(&c.loop, ready_called, &c, 5000));
    cr_assert_eq(c.ready_status, -EMFILE);
    cr_assert(strstr(c.summary, "could not start the worker") != NULL, "%s", c.summary);
    finish(&c);
}

Test(spawn, reports_a_failed_control_socketpair)
{
    ctx_t c;
    memset(&c, 0, sizeof c);
    c.fds_unchecked = true;
    uvtest_capture_log();
    cr_assert_eq(uv_loop_init(&c.loop), 0);
    exhaust_fds(2); /* room for the owner pipe, none for the socketpair */
    fy_spawn_options_t o = {.ferry_bin = fake_bin(), .app_root = "/fake/ready"};
    cr_assert_eq(fy_proc_spawn(&c.loop, &o, &cbs, &c, &c.proc), 0);
    cr_assert(uvtest_run_until(&c.loop, ready_called, &c, 5000));
    cr_assert_eq(c.ready_status, -EMFILE);
    finish(&c);
}

static void expect_handshake_error(const char *name, const char *summary)
{
    ctx_t c;
    spawn_fake(&c, name, 5000);
    cr_assert_eq(c.ready_status, -EPROTO, "%s: %d", name, c.ready_status);
    cr_assert_str_eq(c.summary, summary);
    cr_assert(uvtest_pid_gone(c.pid), "a worker with a bad handshake is killed");
    finish(&c);
}

Test(spawn, refuses_a_non_numeric_pid)
{
    expect_handshake_error("badpid", "malformed ready message: pid is not a decimal number");
}

Test(spawn, refuses_an_address_that_is_not_unix_or_abstract)
{
    expect_handshake_error("badaddr",
                           "malformed ready message: address is not abstract:NAME or unix:PATH");
}

Test(spawn, refuses_a_short_secret)
{
    expect_handshake_error("badsecret", "malformed ready message: secret is not 32 hex digits");
}

Test(spawn, refuses_a_ready_message_with_three_items)
{
    expect_handshake_error("shortready", "malformed ready message: expected at least 4 items");
}

Test(spawn, refuses_an_unknown_message)
{
    expect_handshake_error("unknown", "unexpected message 'hello' during the spawn handshake");
}

Test(spawn, refuses_a_malformed_array)
{
    expect_handshake_error("garbage", "malformed control message");
}

Test(spawn, reports_a_message_truncated_by_eof)
{
    expect_handshake_error("truncated", "the control channel closed inside a message");
}

Test(spawn, reports_a_binary_that_cannot_be_executed)
{
    ctx_t c;
    start(&c, "/nonexistent/ferry", "/fake/ready", NULL, 5000);
    cr_assert_eq(c.ready_calls, 0, "never from inside fy_proc_spawn");
    cr_assert(uvtest_run_until(&c.loop, ready_called, &c, 5000));
    cr_assert_eq(c.ready_status, -ENOENT);
    cr_assert(strstr(c.summary, "could not start the worker") != NULL, "%s", c.summary);
    finish(&c);
}

Test(spawn, refuses_missing_options)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    fy_proc_t *p = NULL;
    fy_spawn_options_t o = {.ferry_bin = NULL, .app_root = "/x"};
    cr_assert_eq(fy_proc_spawn(&loop, &o, &cbs, NULL, &p), -EINVAL);
    o.ferry_bin = "/bin/true";
    o.app_root = NULL;
    cr_assert_eq(fy_proc_spawn(&loop, &o, &cbs, NULL, &p), -EINVAL);
    fy_spawn_callbacks_t no_closed = {on_ready, on_exit_cb, NULL};
    o.app_root = "/x";
    cr_assert_eq(fy_proc_spawn(&loop, &o, &no_closed, NULL, &p), -EINVAL);
    cr_assert_null(p);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(spawn, check_ready_accepts_abstract_and_unix_addresses)
{
    pid_t pid = 0;
    const char *why = NULL;
    cr_assert_eq(
        fy_spawn_check_ready("42", "abstract:x", "0123456789abcdef0123456789abcdef", &pid, &why),
        0);
    cr_assert_eq(pid, 42);
    cr_assert_eq(
        fy_spawn_check_ready("7", "unix:/tmp/s", "ffffffffffffffffffffffffffffffff", &pid, &why),
        0);
    cr_assert_eq(pid, 7);
}

Test(spawn, check_ready_refuses_bad_fields)
{
    const char *s = "0123456789abcdef0123456789abcdef";
    const char *why = NULL;
    cr_assert_eq(fy_spawn_check_ready("", "abstract:x", s, NULL, &why), -EPROTO);
    cr_assert_eq(fy_spawn_check_ready("0", "abstract:x", s, NULL, &why), -EPROTO);
    cr_assert_eq(fy_spawn_check_ready("-1", "abstract:x", s, NULL, &why), -EPROTO);
    cr_assert_eq(fy_spawn_check_ready("99999999999", "abstract:x", s, NULL, &why), -EPROTO);
    cr_assert_str_eq(why, "pid is out of range");
    cr_assert_eq(fy_spawn_check_ready("1", "abstract:", s, NULL, &why), -EPROTO);
    cr_assert_eq(fy_spawn_check_ready("1", "unix:", s, NULL, &why), -EPROTO);
    cr_assert_eq(fy_spawn_check_ready("1", "tcp:1", s, NULL, &why), -EPROTO);
    char longaddr[FY_ADDRESS_MAX + 8];
    memset(longaddr, 'a', sizeof longaddr);
    memcpy(longaddr, "unix:", 5);
    longaddr[sizeof longaddr - 1] = '\0';
    cr_assert_eq(fy_spawn_check_ready("1", longaddr, s, NULL, &why), -EPROTO);
    cr_assert_str_eq(why, "address is too long");
    cr_assert_eq(
        fy_spawn_check_ready("1", "abstract:x", "0123456789ABCDEF0123456789ABCDEF", NULL, &why),
        -EPROTO);
    cr_assert_str_eq(why, "secret is not lowercase hex");
    cr_assert_eq(fy_spawn_check_ready("1", "abstract:x", "0123", NULL, &why), -EPROTO);
}

/* The real `ferry worker` with a tiny WSGI app: the handshake end to end. */
Test(spawn, real_wsgi_worker_becomes_ready_and_exits_when_closed)
{
    const char *bin = getenv("FERRY_BIN");
    const char *apps = getenv("SPAWN_APPS_DIR");
    cr_assert(bin && apps);
    char root[PATH_MAX];
    snprintf(root, sizeof root, "%s/wsgi_hello", apps);
    ctx_t c;
    start(&c, bin, root, "wsgi", 20000);
    cr_assert(uvtest_run_until(&c.loop, ready_called, &c, 20000));
    cr_assert_eq(c.ready_status, 0, "%s %s", c.summary, c.details);
    cr_assert(strncmp(c.address, "abstract:", 9) == 0 || strncmp(c.address, "unix:", 5) == 0);
    cr_assert_eq(strlen(c.secret), 32);
    finish(&c);
}

Test(spawn, real_wsgi_worker_boot_error_is_reported)
{
    const char *bin = getenv("FERRY_BIN");
    const char *apps = getenv("SPAWN_APPS_DIR");
    char root[PATH_MAX];
    snprintf(root, sizeof root, "%s/wsgi_boot_error", apps);
    ctx_t c;
    start(&c, bin, root, "wsgi", 20000);
    cr_assert(uvtest_run_until(&c.loop, ready_called, &c, 20000));
    cr_assert_lt(c.ready_status, 0);
    cr_assert(strstr(c.summary, "deliberate boot failure") != NULL ||
                  strstr(c.details, "deliberate boot failure") != NULL,
              "summary=%s details=%s", c.summary, c.details);
    finish(&c);
}

/* ---- smart spawning: a real preloader (`ferry worker` with FERRY_PRELOAD) ------------------ */

static bool preloader_off(void *arg)
{
    fy_preloader_info_t info;
    fy_preloader_get_info(arg, &info);
    return strcmp(info.state, "off") == 0;
}

static bool pid_gone(void *arg)
{
    return uvtest_pid_gone(*(pid_t *)arg);
}

static pid_t parent_of(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *c = strrchr(buf, ')');
    char state;
    int ppid = -1;
    if (c == NULL || sscanf(c + 1, " %c %d", &state, &ppid) != 2)
        return -1;
    return ppid;
}

static fy_preloader_t *smart_preloader(uv_loop_t *loop, const char *app, char *root, size_t cap)
{
    const char *bin = getenv("FERRY_BIN");
    const char *apps = getenv("SPAWN_APPS_DIR");
    cr_assert(bin && apps);
    snprintf(root, cap, "%s/%s", apps, app);
    fy_spawn_options_t o = {
        .ferry_bin = bin,
        .app_root = root,
        .app_type = "wsgi",
        .environment = "development",
        .start_timeout_ms = 20000,
        .preload = true,
        .preload_idle_s = 0,
    };
    return fy_preloader_new(loop, &o);
}

Test(spawn, smart_worker_is_forked_by_the_preloader_and_owned_like_a_direct_one)
{
    ctx_t a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    char root[PATH_MAX];
    fy_preloader_t *pl = smart_preloader(&loop, "wsgi_hello", root, sizeof root);
    fy_preloader_info_t info;
    fy_preloader_get_info(pl, &info);
    cr_assert_str_eq(info.state, "off");
    cr_assert_eq(fy_proc_spawn_smart(pl, &cbs, &a, &a.proc), 0);
    cr_assert_eq(fy_proc_spawn_smart(pl, &cbs, &b, &b.proc), 0);
    fy_preloader_get_info(pl, &info);
    cr_assert_str_eq(info.state, "booting");
    cr_assert_eq(info.starts, 1, "one preloader for both spawns");
    cr_assert(uvtest_run_until(&loop, ready_called, &a, 20000));
    cr_assert(uvtest_run_until(&loop, ready_called, &b, 20000));
    cr_assert_eq(a.ready_status, 0, "%s %s", a.summary, a.details);
    cr_assert_eq(b.ready_status, 0, "%s %s", b.summary, b.details);
    cr_assert(fy_proc_forked(a.proc));
    cr_assert_eq(fy_proc_protocol(a.proc), 2);
    cr_assert_eq(strlen(a.secret), 32);
    cr_assert_str_neq(a.secret, b.secret, "each forked worker has its own secret");
    cr_assert_str_neq(a.address, b.address);
    fy_preloader_get_info(pl, &info);
    cr_assert_str_eq(info.state, "ready");
    cr_assert_eq(info.forks, 2);
    a.pid = fy_proc_pid(a.proc);
    b.pid = fy_proc_pid(b.proc);
    cr_assert_gt(a.pid, 0);
    cr_assert_eq(parent_of(a.pid), info.pid, "forked by the preloader");
    cr_assert_eq(parent_of(b.pid), info.pid);
    pid_t preloader = info.pid;
    /* A signal reaches it, and its exit comes back with that signal (pidfd + zombie status). */
    cr_assert_eq(fy_proc_stop(a.proc, SIGKILL, 0), 0);
    cr_assert(uvtest_run_until(&loop, exit_called, &a, 5000), "no on_exit for the forked worker");
    cr_assert_eq(a.term_signal, SIGKILL, "status=%lld signal=%d", (long long)a.exit_status,
                 a.term_signal);
    fy_proc_close(a.proc);
    cr_assert(uvtest_run_until(&loop, closed_called, &a, 5000));
    /* Closing ours (the owner pipe) ends the other. */
    fy_proc_close(b.proc);
    cr_assert(uvtest_run_until(&loop, closed_called, &b, 5000));
    /* Its parent, the preloader, reaps it within REAP_INTERVAL_MS (1 s). */
    cr_assert(uvtest_run_until(&loop, pid_gone, &b.pid, 3000),
              "the forked worker outlived its owner pipe");
    fy_preloader_shutdown(pl);
    cr_assert(uvtest_run_until(&loop, pid_gone, &preloader, 3000),
              "the preloader outlived its shutdown");
    uvtest_run_for(&loop, 100);
    cr_assert_eq(uvtest_open_handles(&loop), 0, "handles left open");
    cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(spawn, smart_preloader_boot_error_fails_every_waiting_spawn_with_its_error)
{
    ctx_t a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    char root[PATH_MAX];
    fy_preloader_t *pl = smart_preloader(&loop, "wsgi_boot_error", root, sizeof root);
    cr_assert_eq(fy_proc_spawn_smart(pl, &cbs, &a, &a.proc), 0);
    cr_assert_eq(fy_proc_spawn_smart(pl, &cbs, &b, &b.proc), 0);
    cr_assert(uvtest_run_until(&loop, ready_called, &a, 20000));
    cr_assert(uvtest_run_until(&loop, ready_called, &b, 20000));
    cr_assert_eq(a.ready_status, -ENOEXEC);
    cr_assert_eq(b.ready_status, -ENOEXEC);
    cr_assert(strstr(a.summary, "deliberate boot failure") != NULL, "%s", a.summary);
    cr_assert(strstr(b.summary, "deliberate boot failure") != NULL, "%s", b.summary);
    cr_assert(uvtest_run_until(&loop, preloader_off, pl, 5000));
    fy_preloader_info_t info;
    fy_preloader_get_info(pl, &info);
    cr_assert_str_eq(info.last_exit, "failed to boot");
    cr_assert_eq(info.starts, 1);
    fy_proc_close(a.proc);
    fy_proc_close(b.proc);
    cr_assert(uvtest_run_until(&loop, closed_called, &a, 5000));
    cr_assert(uvtest_run_until(&loop, closed_called, &b, 5000));
    fy_preloader_shutdown(pl);
    uvtest_run_for(&loop, 100);
    cr_assert_eq(uvtest_open_handles(&loop), 0, "handles left open");
    cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(spawn, smart_spawns_waiting_at_shutdown_fail_and_nothing_is_left)
{
    ctx_t a;
    memset(&a, 0, sizeof a);
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    char root[PATH_MAX];
    fy_preloader_t *pl = smart_preloader(&loop, "wsgi_hello", root, sizeof root);
    cr_assert_eq(fy_proc_spawn_smart(pl, &cbs, &a, &a.proc), 0);
    fy_preloader_info_t info;
    fy_preloader_get_info(pl, &info);
    pid_t preloader = info.pid;
    fy_preloader_shutdown(pl);
    cr_assert(uvtest_run_until(&loop, ready_called, &a, 5000));
    cr_assert_eq(a.ready_status, -ESHUTDOWN);
    fy_proc_close(a.proc);
    cr_assert(uvtest_run_until(&loop, closed_called, &a, 5000));
    cr_assert(uvtest_run_until(&loop, pid_gone, &preloader, 3000));
    uvtest_run_for(&loop, 100);
    cr_assert_eq(uvtest_open_handles(&loop), 0, "handles left open");
    cr_assert_eq(uv_loop_close(&loop), 0);
}

/* A preloader that answers a spawn request wrongly (fake_worker.py, preloader_*). */
static void smart_fake(const char *name, ctx_t *c, uv_loop_t *loop, fy_preloader_t **pl)
{
    char root[PATH_MAX];
    snprintf(root, sizeof root, "/fake/%s", name);
    fy_spawn_options_t o = {
        .ferry_bin = fake_bin(),
        .app_root = root,
        .app_type = "wsgi",
        .start_timeout_ms = 5000,
        .preload = true,
    };
    memset(c, 0, sizeof *c);
    cr_assert_eq(uv_loop_init(loop), 0);
    *pl = fy_preloader_new(loop, &o);
    cr_assert_eq(fy_proc_spawn_smart(*pl, &cbs, c, &c->proc), 0);
    cr_assert(uvtest_run_until(loop, ready_called, c, 10000), "on_ready never ran");
}

static void smart_fake_finish(ctx_t *c, uv_loop_t *loop, fy_preloader_t *pl)
{
    fy_preloader_info_t info;
    fy_preloader_get_info(pl, &info);
    pid_t preloader = info.pid;
    fy_proc_close(c->proc);
    cr_assert(uvtest_run_until(loop, closed_called, c, 5000));
    fy_preloader_shutdown(pl);
    cr_assert(uvtest_run_until(loop, pid_gone, &preloader, 3000));
    uvtest_run_for(loop, 100);
    cr_assert_eq(uvtest_open_handles(loop), 0, "handles left open");
    cr_assert_eq(uv_loop_close(loop), 0);
}

Test(spawn, smart_ready_without_the_owner_pipe_is_a_handshake_failure)
{
    ctx_t c;
    uv_loop_t loop;
    fy_preloader_t *pl;
    smart_fake("preloader_noowner", &c, &loop, &pl);
    cr_assert_eq(c.ready_status, -EPROTO, "%d %s", c.ready_status, c.summary);
    cr_assert(strstr(c.summary, "without its owner pipe") != NULL, "%s", c.summary);
    smart_fake_finish(&c, &loop, pl);
}

Test(spawn, smart_request_closed_without_a_byte_asks_again_not_a_boot_failure)
{
    ctx_t c;
    uv_loop_t loop;
    fy_preloader_t *pl;
    smart_fake("preloader_close", &c, &loop, &pl);
    cr_assert_eq(c.ready_status, -EAGAIN, "%d %s", c.ready_status, c.summary);
    cr_assert(strstr(c.summary, "without forking") != NULL, "%s", c.summary);
    smart_fake_finish(&c, &loop, pl);
}
