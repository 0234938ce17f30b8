/* Helpers shared by the spawn and pool unit tests: run a private libuv loop until a condition
 * holds, capture the log into a memfd, check that a process is gone. */
#ifndef FY_TEST_UVTEST_H
#define FY_TEST_UVTEST_H

#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "core/log.h"

typedef bool (*uvtest_pred)(void *ctx);

static void uvtest_on_guard(uv_timer_t *t)
{
    (void)t;
}

/* Runs <loop> until <pred>(<ctx>) holds or <timeout_ms> passes. Returns whether it held. */
static inline bool uvtest_run_until(uv_loop_t *loop, uvtest_pred pred, void *ctx,
                                    unsigned timeout_ms)
{
    uv_timer_t guard;
    uv_timer_init(loop, &guard);
    uv_timer_start(&guard, uvtest_on_guard, 10, 10);
    uint64_t deadline = uv_hrtime() / 1000000u + timeout_ms;
    bool held = pred(ctx);
    while (!held && uv_hrtime() / 1000000u < deadline) {
        uv_run(loop, UV_RUN_ONCE);
        held = pred(ctx);
    }
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return held;
}

static bool uvtest_false(void *ctx)
{
    (void)ctx;
    return false;
}

/* Runs <loop> for <ms> milliseconds. */
static inline void uvtest_run_for(uv_loop_t *loop, unsigned ms)
{
    uvtest_run_until(loop, uvtest_false, NULL, ms);
}

/* Sends the log to a memfd; uvtest_log_text returns what was written so far (static buffer). */
static int uvtest_log_fd = -1;

static inline void uvtest_capture_log(void)
{
    uvtest_log_fd = memfd_create("log", MFD_CLOEXEC);
    cr_assert(uvtest_log_fd >= 0);
    fy_log_set_fd(uvtest_log_fd);
    fy_log_set_level(FY_LOG_DEBUG);
}

static inline const char *uvtest_log_text(void)
{
    static char buf[1 << 20];
    ssize_t n = pread(uvtest_log_fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

/* Number of times <needle> occurs in the log. */
static inline int uvtest_log_count(const char *needle)
{
    int n = 0;
    for (const char *p = uvtest_log_text(); (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* True when <pid> is neither running nor a zombie child of ours. */
static inline bool uvtest_pid_gone(pid_t pid)
{
    if (pid <= 0)
        return true;
    /* Look without reaping (WNOWAIT): reaping is the job of the code under test. A zombie
     * child counts as still there. */
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid)
        return false;
    return kill(pid, 0) == -1 && errno == ESRCH;
}

/* Closes every handle still open on <loop> and asserts there were none. */
static void uvtest_walk_count(uv_handle_t *h, void *arg)
{
    (void)h;
    (*(int *)arg)++;
}

static inline int uvtest_open_handles(uv_loop_t *loop)
{
    int n = 0;
    uv_walk(loop, uvtest_walk_count, &n);
    return n;
}

/* The open fds of this process and what they point at, to find fds a test leaked (new ones)
 * even when the test framework closes some of its own meanwhile. */
#define UVTEST_MAX_FDS 1024
typedef struct uvtest_fds {
    char target[UVTEST_MAX_FDS][64];
} uvtest_fds_t;

static inline void uvtest_fds_snapshot(uvtest_fds_t *snap)
{
    memset(snap, 0, sizeof *snap);
    for (int fd = 0; fd < UVTEST_MAX_FDS; fd++) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(path, snap->target[fd], sizeof snap->target[fd] - 1);
        if (n < 0)
            snap->target[fd][0] = '\0';
    }
}

/* Returns the first fd open now that was not open (to the same thing) in <before>, or -1. */
static inline int uvtest_fds_new(const uvtest_fds_t *before)
{
    static uvtest_fds_t now;
    uvtest_fds_snapshot(&now);
    for (int fd = 0; fd < UVTEST_MAX_FDS; fd++) {
        if (now.target[fd][0] && strcmp(now.target[fd], before->target[fd]) != 0)
            return fd;
    }
    return -1;
}

#endif
