/* The dlopen loader against real .so files (the conformance C apps and two unit-test apps). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "worker/worker_internal.h"

static char *app_path(const char *env, const char *dir)
{
    const char *root = getenv(env);
    cr_assert_not_null(root, "%s is not set (run through meson test)", env);
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, dir);
    return path;
}

static fy_worker_app_t app;
static char *summary, *details;

static void teardown(void)
{
    fy_worker_app_dispose(&app, false);
    free(summary);
    free(details);
}

TestSuite(loader, .fini = teardown);

Test(loader, loads_an_app_and_gets_its_callbacks)
{
    int rc = fy_worker_app_load(app_path("FERRY_TEST_C_APPS", "main/app.so"), "/srv", "test", &app,
                                &summary, &details);
    cr_assert_eq(rc, 0, "%s", summary ? summary : "");
    cr_assert_not_null(app.callbacks.on_request);
    cr_assert_not_null(app.dl_handle);
    cr_assert_null(summary);
}

Test(loader, reports_a_file_that_is_not_a_shared_object)
{
    char *path = app_path("FERRY_TEST_C_APPS", "syntax_error/app.so");
    cr_assert_eq(fy_worker_app_load(path, "/srv", "test", &app, &summary, &details), -ENOEXEC);
    cr_assert(strstr(summary, "cannot load ") != NULL, "%s", summary);
    cr_assert(strstr(summary, path) != NULL, "%s", summary);
    cr_assert(strstr(details, "step=load_app") != NULL, "%s", details);
    cr_assert_null(app.dl_handle);
}

Test(loader, reports_a_missing_file)
{
    char *path = app_path("FERRY_TEST_C_APPS", "nope/app.so");
    cr_assert_eq(fy_worker_app_load(path, "/srv", "test", &app, &summary, &details), -ENOEXEC);
    cr_assert(strstr(summary, "No such file") != NULL, "%s", summary);
}

Test(loader, reports_a_missing_entry_point)
{
    char *path = app_path("FERRY_TEST_C_APPS", "no_entry_point/app.so");
    cr_assert_eq(fy_worker_app_load(path, "/srv", "test", &app, &summary, &details), -ENOENT);
    cr_assert(strstr(summary, "has no ferry_app_init") != NULL, "%s", summary);
}

Test(loader, reports_a_missing_dependency)
{
    char *path = app_path("FERRY_TEST_C_APPS", "missing_dependency/app.so");
    cr_assert_eq(fy_worker_app_load(path, "/srv", "test", &app, &summary, &details), -ENOEXEC);
    cr_assert(strstr(summary, "undefined symbol: ferry_conformance_missing_library_call") != NULL,
              "%s", summary);
}

Test(loader, reports_an_init_failure_with_the_apps_message)
{
    char *path = app_path("FERRY_TEST_UNIT_APPS", "init_fails.so");
    cr_assert_eq(fy_worker_app_load(path, "/srv", "test", &app, &summary, &details), -ECANCELED);
    cr_assert(strstr(summary, "ferry_app_init of ") != NULL, "%s", summary);
    cr_assert(strstr(summary, "failed: database unreachable") != NULL, "%s", summary);
}

Test(loader, reports_an_init_without_on_request)
{
    char *path = app_path("FERRY_TEST_UNIT_APPS", "no_on_request.so");
    cr_assert_eq(fy_worker_app_load(path, "/srv", "test", &app, &summary, &details), -EINVAL);
    cr_assert(strstr(summary, "set no on_request") != NULL, "%s", summary);
}

Test(loader, hello_c_example_answers_hello_world)
{
    int rc = fy_worker_app_load(app_path("FERRY_TEST_EXAMPLES", "hello-c/app.so"), "/srv", "test",
                                &app, &summary, &details);
    cr_assert_eq(rc, 0, "%s", summary ? summary : "");
    int fds[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    fy_reqblock_builder_t b;
    memset(&b, 0, sizeof b);
    fy_reqblock_add_str(&b, "PATH_INFO", "/");
    fy_reqblock_add_str(&b, "FERRY_CONNECT_PASSWORD", "pw");
    const uint8_t *wire;
    size_t len;
    fy_reqblock_finish(&b, &wire, &len);
    cr_assert_eq(write(fds[1], wire, len), (ssize_t)len);
    fy_reqblock_builder_dispose(&b);
    shutdown(fds[1], SHUT_WR);
    fy_worker_ctx_t ctx = {
        .app = &app, .secret = "pw", .header_timeout_ms = 1000, .body_timeout_ms = 1000};
    cr_assert_eq(fy_worker_conn_serve(&ctx, fds[0]), 0);
    close(fds[0]);
    char buf[256];
    ssize_t n = read(fds[1], buf, sizeof buf - 1);
    close(fds[1]);
    cr_assert_gt(n, 0);
    buf[n] = '\0';
    cr_assert_str_eq(buf, "Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\n"
                          "hello world\n");
}
