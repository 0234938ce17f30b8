/* Unit tests of app-type detection (src/cli/apptype.c), the one set of rules `ferry start` and
 * `ferry worker` share (docs/configuration.md). Each test gets a fresh empty directory under /tmp,
 * removed after the test. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/apptype.h"

static char app_dir[64];

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void setup(void)
{
    strcpy(app_dir, "/tmp/fy-test-apptype-XXXXXX");
    cr_assert_not_null(mkdtemp(app_dir));
}

static void teardown(void)
{
    if (app_dir[0] != '\0')
        nftw(app_dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

TestSuite(apptype, .init = setup, .fini = teardown);

static void touch(const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", app_dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0, "%s", path);
    close(fd);
}

static void make_dir(const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", app_dir, name);
    cr_assert_eq(mkdir(path, 0700), 0, "%s", path);
}

static void make_link(const char *target, const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", app_dir, name);
    cr_assert_eq(symlink(target, path), 0, "%s", path);
}

static void expect_type(const char *want)
{
    const char *got = fy_apptype_detect(app_dir);
    if (want == NULL)
        cr_assert_null(got, "detected %s", got);
    else
        cr_assert(got != NULL && strcmp(got, want) == 0, "want %s, got %s", want,
                  got ? got : "(none)");
}

/* fy_apptype_shared_object(app_dir) is "<app_dir>/<name>" (NULL: none). */
static void expect_shared_object(const char *name)
{
    char *got = fy_apptype_shared_object(app_dir);
    if (name == NULL) {
        cr_assert_null(got, "found %s", got);
        return;
    }
    char want[PATH_MAX];
    snprintf(want, sizeof want, "%s/%s", app_dir, name);
    cr_assert_not_null(got, "want %s", want);
    cr_assert_str_eq(got, want);
    free(got);
}

Test(apptype, an_empty_directory_has_no_type)
{
    expect_type(NULL);
    expect_shared_object(NULL);
}

Test(apptype, a_missing_directory_has_no_type)
{
    char gone[PATH_MAX];
    snprintf(gone, sizeof gone, "%s/nope", app_dir);
    cr_assert_null(fy_apptype_detect(gone));
    cr_assert_null(fy_apptype_shared_object(gone));
}

Test(apptype, config_ru_is_rack)
{
    touch("config.ru");
    expect_type("rack");
}

Test(apptype, passenger_wsgi_py_is_wsgi)
{
    touch("passenger_wsgi.py");
    expect_type("wsgi");
}

Test(apptype, wsgi_py_is_wsgi)
{
    touch("wsgi.py");
    expect_type("wsgi");
}

Test(apptype, app_py_is_wsgi)
{
    touch("app.py");
    expect_type("wsgi");
}

Test(apptype, a_shared_object_is_c)
{
    touch("hello.so");
    expect_type("c");
}

Test(apptype, rack_wins_over_wsgi_and_c)
{
    touch("config.ru");
    touch("wsgi.py");
    touch("app.so");
    expect_type("rack");
}

Test(apptype, wsgi_wins_over_c)
{
    touch("app.py");
    touch("app.so");
    expect_type("wsgi");
}

Test(apptype, directories_do_not_count)
{
    make_dir("config.ru");
    make_dir("wsgi.py");
    make_dir("app.so");
    make_dir("build.so");
    expect_type(NULL);
    expect_shared_object(NULL);
}

Test(apptype, a_directory_named_app_so_leaves_the_other_shared_objects)
{
    make_dir("app.so");
    touch("zeta.so");
    expect_type("c");
    expect_shared_object("zeta.so");
}

Test(apptype, a_symlink_counts_as_what_it_points_to)
{
    touch("real.ru");
    make_link("real.ru", "config.ru");
    expect_type("rack");
}

Test(apptype, a_dangling_symlink_does_not_count)
{
    make_link("nowhere.so", "app.so");
    make_link("nowhere.ru", "config.ru");
    expect_type(NULL);
}

Test(apptype, names_that_only_look_like_apps_do_not_count)
{
    touch("main.py");
    touch("app.rb");
    touch("libx.so.1");
    touch("config.ru.bak");
    touch(".so");
    expect_type(NULL);
    expect_shared_object(NULL);
}

Test(apptype, app_so_is_chosen_over_names_that_sort_first)
{
    touch("aaa.so");
    touch("app.so");
    expect_shared_object("app.so");
}

Test(apptype, otherwise_the_first_shared_object_in_byte_order)
{
    touch("mid.so");
    touch("zeta.so");
    touch("Beta.so");
    touch("alpha.so");
    expect_shared_object("Beta.so");
}

Test(apptype, known_types_are_rack_wsgi_and_c)
{
    cr_assert(fy_apptype_is_known("rack"));
    cr_assert(fy_apptype_is_known("wsgi"));
    cr_assert(fy_apptype_is_known("c"));
    cr_assert(!fy_apptype_is_known("auto"));
    cr_assert(!fy_apptype_is_known("Rack"));
    cr_assert(!fy_apptype_is_known(""));
    cr_assert(!fy_apptype_is_known(NULL));
}

Test(apptype, startup_file_suffix)
{
    cr_assert_str_eq(fy_apptype_of_startup_file("config.ru"), "rack");
    cr_assert_str_eq(fy_apptype_of_startup_file("/srv/app/web.ru"), "rack");
    cr_assert_str_eq(fy_apptype_of_startup_file("server.py"), "wsgi");
    cr_assert_null(fy_apptype_of_startup_file(".py"), "a bare suffix is no file name");
    cr_assert_null(fy_apptype_of_startup_file("serve.wsgi"));
    cr_assert_null(fy_apptype_of_startup_file("app.so"));
    cr_assert_null(fy_apptype_of_startup_file(""));
}

Test(apptype, wsgi_app_spec)
{
    static const char *const good[] = {"app", "pkg.web", "pkg.web:app", "_m:_x.y", "m:f()",
                                       "m:create_app('a', debug=False)", "M1:Obj.attr(1)"};
    static const char *const bad[] = {"", ":app", "pkg web", "1pkg", "pkg.", "pkg..web",
                                      "pkg:", "pkg:1", "pkg:f(", "pkg:f)", "pkg:f() x",
                                      "pkg:a b", "pkg::a", "pkg:a:b", "pkg-web:app"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        cr_assert(fy_apptype_wsgi_app_valid(good[i]), "%s", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert(!fy_apptype_wsgi_app_valid(bad[i]), "%s", bad[i]);
}
