/* Re-forking (docs/protocol.md §5.5, docs/architecture.md "Re-forking"): a warmed worker forks
 * the app's next preloader, so the caches it filled and the code it loaded lazily are shared
 * again by the workers forked from then on.
 *
 * The core keeps a smart worker's control channel open after ready when re-forking is on, and
 * writes ["refork", IDLE] and two fds (the new process's stdout and stderr) on it. The worker
 * reads it only when idle between requests (the core stops dispatching to it first), forks with
 * the interpreter's own fork and gives the channel to the child: the child hands the core its
 * new owner pipe and then answers as a preloader started by the core would (preloader.c). The
 * parent closes its copy and goes on serving until the core replaces it. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "ipc/channel.h"
#include "ipc/handshake.h"
#include "ipc/sock.h"
#include "proto/msgchan.h"
#include "worker/worker.h"
#include "worker/worker_internal.h"

#define CONTROL_TIMEOUT_MS 5000

/* Refuses the request on the channel (the core reads ["error", ...] with no fd before it) and
 * lets go of the channel: a worker is asked at most once. */
static void refuse(int control_fd, const char *summary, const char *step)
{
    fy_log(FY_LOG_WARN, "worker", "pid=%d step=%s: cannot re-fork: %s", (int)getpid(), step,
           summary);
    fy_channel_t ch;
    fy_channel_init(&ch, control_fd, CONTROL_TIMEOUT_MS);
    fy_channel_write_strings(&ch, 3, "error", summary, step);
    fy_worker_runtime_close_control();
}

/* The child: takes the two pipes as stdout and stderr, hands the core its own owner pipe, and
 * becomes the preloader. Returns 0, or a negative errno after reporting ["error", ...]. */
static int become_preloader(int control_fd, int out_fd, int err_fd, unsigned idle_s)
{
    /* The socket file, if any, is the parent's: unwinding must not remove it. */
    fy_worker_runtime_set_socket_file(NULL);
    /* As a forked worker does (docs/protocol.md §5.4); the parent's owner pipe, SIGUSR1 pipe
     * and owner watcher are left behind. */
    int rc = fy_worker_forked_handover(control_fd, out_fd, err_fd, "re-forked preloader",
                                       "refork");
    if (rc != 0)
        return rc;
    fy_worker_preloader_adopt(idle_s);
    fy_worker_runtime_mark_reforked();
    fy_log(FY_LOG_INFO, "worker", "pid=%d parent=%d idle_time=%u: re-forked: the app's new "
           "preloader", (int)getpid(), (int)getppid(), idle_s);
    return 0;
}

/* Parses the request's idle time: decimal seconds. */
static bool parse_idle(const char *text, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v > UINT_MAX || text[0] == '-')
        return false;
    *out = (unsigned)v;
    return true;
}

int fy_worker_control_event(fy_worker_ctx_t *ctx)
{
    int control_fd = fy_worker_host_control_fd();
    if (control_fd < 0)
        return 0;
    fy_channel_t ch;
    fy_channel_init(&ch, control_fd, CONTROL_TIMEOUT_MS);
    fy_array_t msg = {0};
    int rc = fy_channel_read_array(&ch, &msg);
    if (rc != 1) {
        /* The usual case: the core closed its end after ready (no re-fork for this worker). */
        if (rc != 0)
            fy_log(FY_LOG_WARN, "worker", "pid=%d: control channel: %s; closing it",
                   (int)getpid(), strerror(-rc));
        fy_worker_runtime_close_control();
        return 0;
    }
    unsigned idle_s = 0;
    char summary[160] = "";
    if (msg.count != 2 || strcmp(msg.items[0], FY_REFORK_MESSAGE) != 0)
        snprintf(summary, sizeof summary, "unexpected control message '%.64s' (%zu items)",
                 msg.count > 0 ? msg.items[0] : "", msg.count);
    else if (!parse_idle(msg.items[1], &idle_s))
        snprintf(summary, sizeof summary, "a re-fork request whose idle time is not a number "
                 "of seconds: '%.32s'", msg.items[1]);
    fy_array_dispose(&msg);
    if (summary[0] != '\0') {
        refuse(control_fd, summary, "refork_request");
        return 0;
    }
    fy_array_dispose(&msg);
    int out_fd = -1, err_fd = -1;
    rc = fy_channel_recv_fd(&ch, &out_fd);
    if (rc == 1)
        rc = fy_channel_recv_fd(&ch, &err_fd);
    if (rc != 1) {
        if (out_fd >= 0)
            close(out_fd);
        refuse(control_fd, "the re-fork request came without its stdout and stderr pipes",
               "refork_request");
        return 0;
    }
    if (ctx->fork == NULL) {
        close(out_fd);
        close(err_fd);
        refuse(control_fd, "a native C worker preloads nothing to fork from", "refork");
        return 0;
    }
    fflush(NULL);
    int pid = ctx->fork(ctx->fork_data);
    if (pid == 0) {
        if (become_preloader(control_fd, out_fd, err_fd, idle_s) != 0)
            _exit(1); /* reported on the channel */
        return 1;
    }
    close(out_fd);
    close(err_fd);
    if (pid < 0) {
        snprintf(summary, sizeof summary, "fork failed: %s", strerror(-pid));
        refuse(control_fd, summary, "fork");
        return 0;
    }
    /* The channel is the child's now; this worker goes on serving until it is replaced. */
    fy_worker_runtime_close_control();
    fy_log(FY_LOG_INFO, "worker", "pid=%d child=%d: forked the app's new preloader (re-fork)",
           (int)getpid(), pid);
    return 0;
}
