/* fy_worker_run end to end in a child process: handshake, one request, owner-pipe exit, and the
 * boot-error path. */
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
#include "core/log.h"
#include "worker/worker.h"
#include "worker/worker_internal.h"

static pid_t child = -1;
static int owner[2] = {-1, -1};
static int control[2] = {-1, -1};

static char *app(const char *dir)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", getenv("FERRY_TEST_C_APPS"), dir);
    return path;
}

/* Forks a child that runs the worker on <so>; the parent keeps owner[1] and control[0]. */
static void start(const char *so)
{
    cr_assert_eq(pipe(owner), 0);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, control), 0);
    child = fork();
    cr_assert_neq(child, -1);
    if (child == 0) {
        close(owner[1]);
        close(control[0]);
        fy_worker_config_t cfg = {
            .app_path = so,
            .app_root = "/",
            .environment = "test",
            .owner_fd = owner[0],
            .control_fd = control[1],
            .socket_dir = "/tmp",
        };
        _exit(fy_worker_run(&cfg));
    }
    close(owner[0]);
    close(control[1]);
}

static void teardown(void)
{
    if (child > 0) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
    }
    close(owner[1]);
    close(control[0]);
}

TestSuite(loop, .fini = teardown, .timeout = 30);

static int wait_exit(void)
{
    int status;
    cr_assert_eq(waitpid(child, &status, 0), child);
    child = -1;
    return status;
}

Test(loop, sends_ready_serves_and_exits_when_the_owner_pipe_closes)
{
    start(app("main/app.so"));
    fy_channel_t ch;
    fy_channel_init(&ch, control[0], 10000);
    fy_array_t msg;
    memset(&msg, 0, sizeof msg);
    cr_assert_eq(fy_channel_read_array(&ch, &msg), 1);
    cr_assert_eq(msg.count, 5);
    cr_assert_str_eq(msg.items[0], "ready");
    cr_assert_str_eq(msg.items[4], "2", "speaks session protocol v2");
    cr_assert_eq(atoi(msg.items[1]), child);
    cr_assert_eq(strlen(msg.items[3]), 32);

    int fd = fy_unix_connect(msg.items[2], 5000);
    cr_assert_geq(fd, 0);
    fy_reqblock_builder_t b;
    memset(&b, 0, sizeof b);
    fy_reqblock_add_str(&b, "REQUEST_METHOD", "GET");
    fy_reqblock_add_str(&b, "PATH_INFO", "/hello");
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
    cr_assert(strstr(buf, "Status: 200 OK\r\n") == buf, "%s", buf);
    cr_assert(strstr(buf, "\r\n\r\nhello world\n") != NULL, "%s", buf);
    fy_array_dispose(&msg);

    close(owner[1]);
    owner[1] = -1;
    int status = wait_exit();
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
}

Test(loop, sigusr1_while_idle_exits_0)
{
    start(app("main/app.so"));
    fy_channel_t ch;
    fy_channel_init(&ch, control[0], 10000);
    fy_array_t msg;
    memset(&msg, 0, sizeof msg);
    cr_assert_eq(fy_channel_read_array(&ch, &msg), 1);
    fy_array_dispose(&msg);
    kill(child, SIGUSR1);
    int status = wait_exit();
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
}

Test(loop, boot_error_is_reported_on_the_control_channel)
{
    start(app("no_entry_point/app.so"));
    fy_channel_t ch;
    fy_channel_init(&ch, control[0], 10000);
    fy_array_t msg;
    memset(&msg, 0, sizeof msg);
    cr_assert_eq(fy_channel_read_array(&ch, &msg), 1);
    cr_assert_eq(msg.count, 3);
    cr_assert_str_eq(msg.items[0], "error");
    cr_assert(strstr(msg.items[1], "has no ferry_app_init") != NULL, "%s", msg.items[1]);
    fy_array_dispose(&msg);
    int status = wait_exit();
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 1, "status %d", status);
}

Test(loop, report_error_without_a_channel_only_logs)
{
    cr_assert_eq(fy_worker_report_error(-1, "summary", "details"), -EBADF);
}

static int never_called(ferry_request_t *req)
{
    (void)req;
    return FERRY_ERROR;
}

Test(loop, second_error_outside_a_request_within_10s_exits_1)
{
    /* A pipe with data polls readable, and accept4 on it fails with ENOTSOCK every time. */
    int p[2];
    cr_assert_eq(pipe(p), 0);
    cr_assert_eq(write(p[1], "x", 1), 1);
    int logs[2];
    cr_assert_eq(pipe(logs), 0);
    fy_log_set_fd(logs[1]);
    fy_worker_app_t app = {.callbacks = {.on_request = never_called}};
    fy_worker_ctx_t ctx = {
        .app = &app, .secret = "s", .header_timeout_ms = 100, .body_timeout_ms = 100};
    cr_assert_eq(fy_worker_serve_loop(&ctx, p[0]), 1);
    fy_log_set_fd(2);
    close(logs[1]);
    char buf[4096];
    ssize_t n = read(logs[0], buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = '\0';
    cr_assert(strstr(buf, "accept failed") != NULL, "%s", buf);
    cr_assert(strstr(buf, "second error outside a request within 10 s: exiting") != NULL, "%s",
              buf);
    close(logs[0]);
    close(p[0]);
    close(p[1]);
}
