/* The runtime for language hosts (worker/host.h) in a child process: the handshake read from the
 * environment, boot before the app, ready and a request through the host's callback, its own
 * reason phrase, the SIGQUIT hook, a soft stop that calls on_shutdown, and the failure paths. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ipc/channel.h"
#include "ipc/sock.h"
#include "proto/reqblock.h"
#include "worker/host.h"

static pid_t child = -1;
static int owner[2] = {-1, -1};
static int control[2] = {-1, -1};
static int events[2] = {-1, -1}; /* the child's hooks write one letter each here */

static void note(char c)
{
    ssize_t ignored = write(events[1], &c, 1);
    (void)ignored;
}

static int on_request(ferry_request_t *req)
{
    ferry_field_t f[] = {{"Content-Type", "text/plain"}};
    int rc = fy_worker_response_start_reason(req, 200, "Host Says Fine", f, 1);
    if (rc == FERRY_OK)
        rc = ferry_response_write(req, "from the host\n", 14);
    return rc;
}

static void on_shutdown(void *data)
{
    note(data == (void *)&child ? 'S' : 'X');
}

static void on_sigquit(void)
{
    note('Q');
}

typedef enum { RUN_SERVE, RUN_BOOT_TWICE, RUN_FAIL, RUN_SERVE_WITHOUT_CALLBACK } run_t;

/* Forks a child that boots as a host with the handshake fds under the names the environment
 * gives (<control_var> NULL: the control fd's own number), then does <what>. */
static void start(run_t what, const char *control_var)
{
    cr_assert_eq(pipe(owner), 0);
    cr_assert_eq(pipe(events), 0);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, control), 0);
    child = fork();
    cr_assert_neq(child, -1);
    if (child != 0) {
        close(owner[0]);
        close(control[1]);
        close(events[1]);
        return;
    }
    close(owner[1]);
    close(control[0]);
    close(events[0]);
    char text[16];
    snprintf(text, sizeof text, "%d", owner[0]);
    setenv("FERRY_OWNER_FD", text, 1);
    snprintf(text, sizeof text, "%d", control[1]);
    setenv("FERRY_CONTROL_FD", control_var ? control_var : text, 1);
    int rc = fy_worker_host_boot();
    if (rc != 0)
        _exit(-rc);
    fy_worker_host_on_sigquit(on_sigquit);
    fy_worker_host_t host = {
        .label = "test host",
        .callbacks = {.on_request = on_request, .on_shutdown = on_shutdown},
        .data = &child,
    };
    switch (what) {
    case RUN_SERVE:
        _exit(fy_worker_host_serve(&host));
    case RUN_BOOT_TWICE:
        _exit(fy_worker_host_boot() == -EALREADY ? 0 : 1);
    case RUN_FAIL:
        fy_worker_host_fail("the app said no", "step=load_app: details");
        _exit(1);
    case RUN_SERVE_WITHOUT_CALLBACK:
        host.callbacks.on_request = NULL;
        _exit(fy_worker_host_serve(&host) == 1 ? 7 : 0);
    }
    _exit(99);
}

static void teardown(void)
{
    if (child > 0) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
    }
    close(owner[1]);
    close(control[0]);
    close(events[0]);
}

TestSuite(host, .fini = teardown, .timeout = 30);

static int wait_exit(void)
{
    int status;
    cr_assert_eq(waitpid(child, &status, 0), child);
    child = -1;
    return status;
}

static void read_message(fy_array_t *msg)
{
    fy_channel_t ch;
    fy_channel_init(&ch, control[0], 10000);
    memset(msg, 0, sizeof *msg);
    cr_assert_eq(fy_channel_read_array(&ch, msg), 1);
}

static char wait_event(void)
{
    char c = 0;
    cr_assert_eq(read(events[0], &c, 1), 1);
    return c;
}

Test(host, boots_sends_ready_and_serves_through_the_host_callback)
{
    start(RUN_SERVE, NULL);
    fy_array_t msg;
    read_message(&msg);
    cr_assert_eq(msg.count, 5);
    cr_assert_str_eq(msg.items[0], "ready");
    cr_assert_str_eq(msg.items[4], "2", "a host speaks session protocol v2 like native apps");
    cr_assert_eq(atoi(msg.items[1]), child);

    int fd = fy_unix_connect(msg.items[2], 5000);
    cr_assert_geq(fd, 0);
    fy_reqblock_builder_t b;
    memset(&b, 0, sizeof b);
    fy_reqblock_add_str(&b, "REQUEST_METHOD", "GET");
    fy_reqblock_add_str(&b, "PATH_INFO", "/");
    fy_reqblock_add_str(&b, "FERRY_CONNECT_PASSWORD", msg.items[3]);
    const uint8_t *wire;
    size_t len;
    fy_reqblock_finish(&b, &wire, &len);
    cr_assert_eq(write(fd, wire, len), (ssize_t)len);
    fy_reqblock_builder_dispose(&b);
    shutdown(fd, SHUT_WR);
    char buf[512];
    size_t got = 0;
    ssize_t n;
    while ((n = read(fd, buf + got, sizeof buf - 1 - got)) > 0)
        got += (size_t)n;
    buf[got] = '\0';
    close(fd);
    fy_array_dispose(&msg);
    cr_assert(strstr(buf, "Status: 200 Host Says Fine\r\nContent-Type: text/plain\r\n") == buf,
              "%s", buf);
    cr_assert(strstr(buf, "\r\n\r\nfrom the host\n") != NULL, "%s", buf);

    kill(child, SIGQUIT);
    cr_assert_eq(wait_event(), 'Q', "the SIGQUIT hook runs after the runtime's own dump");
    kill(child, SIGUSR1);
    cr_assert_eq(wait_event(), 'S', "a soft stop calls on_shutdown");
    int status = wait_exit();
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
}

Test(host, the_owner_pipe_closing_ends_a_host_too)
{
    start(RUN_SERVE, NULL);
    fy_array_t msg;
    read_message(&msg);
    fy_array_dispose(&msg);
    close(owner[1]);
    owner[1] = -1;
    int status = wait_exit();
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
}

Test(host, a_control_fd_that_is_not_open_fails_the_boot)
{
    start(RUN_SERVE, "987");
    int status = wait_exit();
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == EBADF, "status %d", status);
}

Test(host, a_control_fd_that_is_not_a_number_fails_the_boot)
{
    start(RUN_SERVE, "4x");
    int status = wait_exit();
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == EBADF, "status %d", status);
}

Test(host, boot_runs_once_per_process)
{
    start(RUN_BOOT_TWICE, NULL);
    int status = wait_exit();
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
}

Test(host, fail_reports_the_apps_boot_error_on_the_control_channel)
{
    start(RUN_FAIL, NULL);
    fy_array_t msg;
    read_message(&msg);
    cr_assert_eq(msg.count, 3);
    cr_assert_str_eq(msg.items[0], "error");
    cr_assert_str_eq(msg.items[1], "the app said no");
    cr_assert_str_eq(msg.items[2], "step=load_app: details");
    fy_array_dispose(&msg);
    int status = wait_exit();
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 1, "status %d", status);
}

Test(host, serve_without_on_request_refuses_with_status_1)
{
    start(RUN_SERVE_WITHOUT_CALLBACK, NULL);
    int status = wait_exit();
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 7, "status %d", status);
}
