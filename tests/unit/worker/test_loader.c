/* The dlopen loader against real .so files (the conformance C apps and two unit-test apps). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    int rc = fy_worker_app_load(app_path("FERRY_TEST_C_APPS", "main/app.so"), "/srv", "test",
                                &app, &summary, &details);
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
