/* Unit tests of `ferry start`'s checks before anything is bound or spawned (src/cli/cmd_start.c):
 * exit statuses, the app directory checks and that app type detection (src/cli/apptype.c, whose
 * rules test_apptype.c covers) is the one applied. A detected app is seen through the next step
 * failing: a log file in a directory that does not exist, which stops fy_cmd_start before it
 * listens or spawns. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/commands.h"

extern char **environ;

#define BAD_LOG "/nonexistent-fy-dir/ferry.log"

static char app_dir[64];
static char out[16384];

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void setup(void)
{
    for (;;) {
        char *found = NULL;
        for (char **e = environ; *e != NULL; e++) {
            if (strncmp(*e, "FERRY_", 6) == 0) {
                found = *e;
                break;
            }
        }
        if (found == NULL)
            break;
        char name[256];
        size_t n = strcspn(found, "=");
        cr_assert_lt(n, sizeof name);
        memcpy(name, found, n);
        name[n] = '\0';
        cr_assert_eq(unsetenv(name), 0);
    }
    strcpy(app_dir, "/tmp/fy-test-start-XXXXXX");
    cr_assert_not_null(mkdtemp(app_dir));
}

static void teardown(void)
{
    if (app_dir[0] != '\0')
        nftw(app_dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

TestSuite(start, .init = setup, .fini = teardown);

static void touch(const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", app_dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0, "%s", path);
    close(fd);
}

/* Runs fy_cmd_start(argc, argv) with stdout and stderr captured together into <out>. */
static int run(int argc, char **argv)
{
    char path[] = "/tmp/fy-test-start-out-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    unlink(path);
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(1), saved_err = dup(2);
    cr_assert(saved_out >= 0 && saved_err >= 0);
    dup2(fd, 1);
    dup2(fd, 2);
    int rc = fy_cmd_start(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    ssize_t n = pread(fd, out, sizeof out - 1, 0);
    close(fd);
    out[n > 0 ? n : 0] = '\0';
    return rc;
}

/* Runs `ferry start <app_dir> --log-file BAD_LOG [extra]`: exit 1 with the log file's error
 * means the app directory passed and an app type was found. */
static int run_to_log_file(const char *extra_flag, const char *extra_value)
{
    char *argv[] = {
        (char *)"start",     app_dir, (char *)"--log-file", (char *)BAD_LOG, (char *)extra_flag,
        (char *)extra_value, NULL};
    return run(extra_flag ? 6 : 4, argv);
}

static void expect_detected(void)
{
    cr_assert_eq(run_to_log_file(NULL, NULL), 1);
    cr_assert_str_eq(out, "ferry start: log file " BAD_LOG ": No such file or directory\n");
}

static void expect_no_app(void)
{
    char real[PATH_MAX], want[PATH_MAX + 200];
    cr_assert_not_null(realpath(app_dir, real));
    snprintf(want, sizeof want,
             "ferry start: no app found in %s: looked for config.ru (rack), passenger_wsgi.py, "
             "wsgi.py or app.py (wsgi), and a *.so file (c)\n",
             real);
    cr_assert_eq(run_to_log_file(NULL, NULL), 1);
    cr_assert_str_eq(out, want);
}

Test(start, empty_directory_lists_what_was_looked_for)
{
    expect_no_app();
}

Test(start, detects_config_ru)
{
    touch("config.ru");
    expect_detected();
}

Test(start, detects_passenger_wsgi_py)
{
    touch("passenger_wsgi.py");
    expect_detected();
}

Test(start, detects_wsgi_py)
{
    touch("wsgi.py");
    expect_detected();
}

Test(start, detects_app_py)
{
    touch("app.py");
    expect_detected();
}

Test(start, detects_a_shared_object)
{
    touch("hello.so");
    expect_detected();
}

Test(start, a_directory_named_config_ru_is_not_an_app)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/config.ru", app_dir);
    cr_assert_eq(mkdir(path, 0700), 0);
    expect_no_app();
}

Test(start, a_directory_named_like_a_shared_object_is_not_an_app)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/build.so", app_dir);
    cr_assert_eq(mkdir(path, 0700), 0);
    expect_no_app();
}

Test(start, other_files_are_not_an_app)
{
    touch("main.py");
    touch("app.rb");
    touch("libx.so.1");
    touch(".so");
    expect_no_app();
}

Test(start, explicit_app_type_skips_detection)
{
    cr_assert_eq(run_to_log_file("--app-type", "wsgi"), 1);
    cr_assert_str_eq(out, "ferry start: log file " BAD_LOG ": No such file or directory\n");
}

Test(start, missing_app_dir)
{
    char *argv[] = {(char *)"start", (char *)"/nonexistent-fy-dir/app", NULL};
    cr_assert_eq(run(2, argv), 1);
    cr_assert_str_eq(
        out, "ferry start: app directory /nonexistent-fy-dir/app: No such file or directory\n");
}

Test(start, app_dir_that_is_a_file)
{
    touch("file");
    char path[PATH_MAX], want[PATH_MAX + 100];
    snprintf(path, sizeof path, "%s/file", app_dir);
    snprintf(want, sizeof want, "ferry start: app directory %s: not a directory\n", path);
    char *argv[] = {(char *)"start", path, NULL};
    cr_assert_eq(run(2, argv), 1);
    cr_assert_str_eq(out, want);
}

Test(start, usage_error_exits_2_with_one_line)
{
    char *argv[] = {(char *)"start", app_dir, (char *)"--port", (char *)"x", NULL};
    cr_assert_eq(run(4, argv), 2);
    cr_assert_str_eq(out, "ferry start: --port: 'x' is not a non-negative integer\n");
}

Test(start, config_file_error_exits_2)
{
    touch("config.ru");
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/ferry.json", app_dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("{\"nope\": 1}", f);
    fclose(f);
    char want[PATH_MAX + 100];
    snprintf(want, sizeof want, "ferry start: %s: unknown key 'nope' (see ferry start --help)\n",
             path);
    char *argv[] = {(char *)"start", app_dir, NULL};
    cr_assert_eq(run(2, argv), 2);
    cr_assert_str_eq(out, want);
}

Test(start, help_exits_0_with_the_usage)
{
    char *argv[] = {(char *)"start", (char *)"--help", NULL};
    cr_assert_eq(run(2, argv), 0);
    cr_assert_eq(strncmp(out, "usage: ferry start [APP_DIR] [options]\n", 39), 0, "%s", out);
}

Test(start, help_wins_over_a_bad_environment)
{
    setenv("FERRY_PORT", "abc", 1);
    char *argv[] = {(char *)"start", (char *)"-h", NULL};
    cr_assert_eq(run(2, argv), 0);
    cr_assert_eq(strncmp(out, "usage: ferry start", 18), 0, "%s", out);
}
