/* The worker's side of a re-fork (src/worker/refork.c, docs/protocol.md §5.5): what it does with
 * each message on its control channel, with a fake fork so that each outcome (parent, child,
 * failed fork, no fork at all) is seen in this process. Each test runs in a process of its own,
 * so the runtime's state (its control channel, the preloader flag) starts fresh. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ipc/channel.h"
#include "ipc/handshake.h"
#include "worker/host.h"
#include "worker/worker_internal.h"

static int owner[2] = {-1, -1};
static int control[2] = {-1, -1}; /* [0] the core's end, [1] the worker's */
static int fork_result;
static int forks;

static int fake_fork(void *data)
{
    (void)data;
    forks++;
    return fork_result;
}

static fy_worker_ctx_t ctx = {.fork = fake_fork};

static void setup(void)
{
    cr_assert_eq(pipe(owner), 0);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, control), 0);
    cr_assert_eq(fy_worker_runtime_rebind(owner[0], control[1]), 0);
    cr_assert_eq(fy_worker_host_control_fd(), control[1]);
    forks = 0;
}

TestSuite(refork, .init = setup, .timeout = 30);

/* The core's request: ["refork", <idle>] and two pipe write ends (their read ends returned). */
static void send_request(const char *idle, int out_read[1], int err_read[1])
{
    fy_channel_t ch;
    fy_channel_init(&ch, control[0], 5000);
    cr_assert_eq(fy_channel_write_strings(&ch, 2, FY_REFORK_MESSAGE, idle), 0);
    int out[2], err[2];
    cr_assert_eq(pipe(out), 0);
    cr_assert_eq(pipe(err), 0);
    cr_assert_eq(fy_channel_send_fd(&ch, out[1]), 0);
    cr_assert_eq(fy_channel_send_fd(&ch, err[1]), 0);
    close(out[1]);
    close(err[1]);
    *out_read = out[0];
    *err_read = err[0];
}

/* The worker's answer on the core's end: an ["error", summary, step] with no fd before it. */
static void expect_error(const char *summary_part, const char *step)
{
    fy_channel_t ch;
    fy_channel_init(&ch, control[0], 5000);
    fy_array_t msg = {0};
    cr_assert_eq(fy_channel_read_array(&ch, &msg), 1);
    cr_assert_eq(msg.count, 3);
    cr_assert_str_eq(msg.items[0], "error");
    cr_assert(strstr(msg.items[1], summary_part) != NULL, "%s", msg.items[1]);
    cr_assert_str_eq(msg.items[2], step);
    fy_array_dispose(&msg);
    /* ...and the worker let go of the channel. */
    cr_assert_eq(fy_worker_host_control_fd(), -1);
    char c;
    cr_assert_eq(read(control[0], &c, 1), 0);
}

/* EOF on a pipe: every write end was closed (the worker kept no copy of the fd it was sent). */
static void expect_closed(int read_end)
{
    char c;
    cr_assert_eq(read(read_end, &c, 1), 0);
    close(read_end);
}

Test(refork, a_channel_the_core_closed_is_let_go)
{
    close(control[0]);
    control[0] = -1;
    cr_assert_eq(fy_worker_control_event(&ctx), 0);
    cr_assert_eq(fy_worker_host_control_fd(), -1);
    cr_assert_eq(forks, 0);
    /* Nothing left to watch: a second event is a no-op. */
    cr_assert_eq(fy_worker_control_event(&ctx), 0);
}

Test(refork, an_unknown_message_is_refused)
{
    fy_channel_t ch;
    fy_channel_init(&ch, control[0], 5000);
    cr_assert_eq(fy_channel_write_strings(&ch, 1, "spawn"), 0);
    cr_assert_eq(fy_worker_control_event(&ctx), 0);
    cr_assert_eq(forks, 0);
    expect_error("unexpected control message 'spawn'", "refork_request");
}

Test(refork, an_idle_time_that_is_not_a_number_is_refused)
{
    const char *bad[] = {"", "-1", "12x", "99999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (i > 0) {
            close(control[0]);
            cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, control), 0);
            cr_assert_eq(fy_worker_runtime_rebind(owner[0], control[1]), 0);
        }
        fy_channel_t ch;
        fy_channel_init(&ch, control[0], 5000);
        cr_assert_eq(fy_channel_write_strings(&ch, 2, FY_REFORK_MESSAGE, bad[i]), 0);
        cr_assert_eq(fy_worker_control_event(&ctx), 0, "%s", bad[i]);
        expect_error("idle time is not a number of seconds", "refork_request");
    }
    cr_assert_eq(forks, 0);
}

Test(refork, a_request_without_its_pipes_is_refused)
{
    fy_channel_t ch;
    fy_channel_init(&ch, control[0], 5000);
    cr_assert_eq(fy_channel_write_strings(&ch, 2, FY_REFORK_MESSAGE, "300"), 0);
    shutdown(control[0], SHUT_WR); /* no fds follow */
    cr_assert_eq(fy_worker_control_event(&ctx), 0);
    cr_assert_eq(forks, 0);
    expect_error("without its stdout and stderr pipes", "refork_request");
}

Test(refork, a_native_worker_has_nothing_to_fork)
{
    fy_worker_ctx_t native = {.fork = NULL};
    int out, err;
    send_request("300", &out, &err);
    cr_assert_eq(fy_worker_control_event(&native), 0);
    expect_error("native C worker", "refork");
    expect_closed(out);
    expect_closed(err);
}

Test(refork, a_failed_fork_is_reported_and_the_worker_serves_on)
{
    fork_result = -EAGAIN;
    int out, err;
    send_request("300", &out, &err);
    cr_assert_eq(fy_worker_control_event(&ctx), 0);
    cr_assert_eq(forks, 1);
    expect_error("fork failed", "fork");
    expect_closed(out);
    expect_closed(err);
    cr_assert(!fy_worker_reforked());
    cr_assert(!fy_worker_host_preloading());
}

Test(refork, the_parent_gives_the_channel_to_the_child_and_serves_on)
{
    fork_result = 4242; /* "the child's pid" */
    int out, err;
    send_request("300", &out, &err);
    cr_assert_eq(fy_worker_control_event(&ctx), 0);
    cr_assert_eq(forks, 1);
    cr_assert_eq(fy_worker_host_control_fd(), -1, "the parent keeps no copy of the channel");
    char c;
    cr_assert_eq(read(control[0], &c, 1), 0, "nothing written: the child answers");
    expect_closed(out);
    expect_closed(err);
    cr_assert(!fy_worker_reforked());
    cr_assert(!fy_worker_host_preloading());
}

Test(refork, the_child_hands_over_its_owner_pipe_and_becomes_the_preloader)
{
    fork_result = 0;
    int out, err;
    send_request("17", &out, &err);
    cr_assert_eq(fy_worker_control_event(&ctx), 1, "the child unwinds to the host");
    cr_assert(fy_worker_reforked());
    cr_assert(fy_worker_host_preloading());
    cr_assert_eq(fy_worker_host_control_fd(), control[1], "the channel is the child's now");
    /* Its stdout is the pipe the core sent. */
    cr_assert_eq(write(1, "x", 1), 1);
    char c = 0;
    cr_assert_eq(read(out, &c, 1), 1);
    cr_assert_eq(c, 'x');
    /* The first thing on the channel: the write end of its new owner pipe. */
    fy_channel_t ch;
    fy_channel_init(&ch, control[0], 5000);
    int new_owner = -1;
    cr_assert_eq(fy_channel_recv_fd(&ch, &new_owner), 1);
    cr_assert_geq(new_owner, 0);
    cr_assert_eq(fcntl(new_owner, F_GETFL) & O_ACCMODE, O_WRONLY);
    /* A worker it forks later is a worker again (rebind clears the flag). */
    int again[2];
    cr_assert_eq(pipe(again), 0);
    cr_assert_eq(fy_worker_runtime_rebind(again[0], control[1]), 0);
    cr_assert(!fy_worker_reforked());
}
