/* `ferry worker` argument handling and type detection, run in a child process with its own fds
 * 3 and 4 (so the test runner's fds are never touched). */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/commands.h"
#include "ipc/channel.h"
#include "ipc/handshake.h"

static int control[2] = {-1, -1};
static char dir[] = "/tmp/fy-cmd-XXXXXX";

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
    close(control[0]);
}

TestSuite(cmd, .init = setup, .fini = teardown, .timeout = 30);

/* Runs `ferry worker <args>` in a child. With <with_fds>, fd 3 is a pipe read end whose write end
 * the parent holds until the child ends (an owner EOF would end the worker with status 0 and hide
 * the boot error) and fd 4 a socketpair end whose peer is kept in control[0]. Stdout and stderr go
 * to /dev/null. Returns the exit status. */
static int run(bool with_fds, int argc, char **argv)
{
    int owner[2];
    cr_assert_eq(pipe(owner), 0);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, control), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(devnull, 2);
        int o = fcntl(owner[0], F_DUPFD, 10), c = fcntl(control[1], F_DUPFD, 10);
        close(FY_HANDSHAKE_OWNER_FD);
        close(FY_HANDSHAKE_CONTROL_FD);
        if (with_fds) {
            dup2(o, FY_HANDSHAKE_OWNER_FD);
            dup2(c, FY_HANDSHAKE_CONTROL_FD);
        }
        close(owner[1]);
        _exit(fy_cmd_worker(argc, argv));
    }
    close(owner[0]);
    close(control[1]);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    close(owner[1]);
    cr_assert(WIFEXITED(status), "status %d", status);
    return WEXITSTATUS(status);
}

/* Reads the ["error", summary, details] the child wrote; returns the summary (static). */
static const char *error_summary(void)
{
    fy_channel_t ch;
    fy_channel_init(&ch, control[0], 2000);
    fy_array_t msg;
    memset(&msg, 0, sizeof msg);
    cr_assert_eq(fy_channel_read_array(&ch, &msg), 1);
    cr_assert_eq(msg.count, 3);
    cr_assert_str_eq(msg.items[0], "error");
    static char summary[1024];
    snprintf(summary, sizeof summary, "%s", msg.items[1]);
    fy_array_dispose(&msg);
    return summary;
}

static void touch(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("not really\n", f);
    fclose(f);
}

Test(cmd, help_exits_0)
{
    char *argv[] = {"worker", "--help", NULL};
    cr_assert_eq(run(false, 2, argv), 0);
}

Test(cmd, refuses_an_unknown_type)
{
    char *argv[] = {"worker", dir, "--type", "php", NULL};
    cr_assert_eq(run(true, 4, argv), 2);
}

Test(cmd, refuses_a_missing_app_argument)
{
    char *argv[] = {"worker", NULL};
    cr_assert_eq(run(true, 1, argv), 2);
}

Test(cmd, fails_without_fds_3_and_4)
{
    char *argv[] = {"worker", dir, NULL};
    cr_assert_eq(run(false, 2, argv), 1);
}

Test(cmd, reports_an_app_dir_that_does_not_exist)
{
    char *argv[] = {"worker", "/nonexistent/app", NULL};
    cr_assert_eq(run(true, 2, argv), 1);
    cr_assert(strstr(error_summary(), "/nonexistent/app") != NULL);
}

Test(cmd, reports_a_dir_of_unknown_type_listing_what_it_looked_for)
{
    touch("README");
    char *argv[] = {"worker", dir, NULL};
    cr_assert_eq(run(true, 2, argv), 1);
    const char *s = error_summary();
    cr_assert(strstr(s, "config.ru") != NULL && strstr(s, "wsgi.py") != NULL &&
                  strstr(s, "*.so") != NULL,
              "%s", s);
}

Test(cmd, type_c_without_a_shared_object_is_an_error)
{
    char *argv[] = {"worker", dir, "--type", "c", NULL};
    cr_assert_eq(run(true, 4, argv), 1);
    cr_assert(strstr(error_summary(), "no app.so") != NULL);
}

Test(cmd, detects_a_c_app_and_prefers_app_so)
{
    touch("b.so");
    touch("app.so"); /* not an ELF file: the load error names the file that was chosen */
    char *argv[] = {"worker", dir, NULL};
    cr_assert_eq(run(true, 2, argv), 1);
    const char *s = error_summary();
    cr_assert(strstr(s, "cannot load ") != NULL && strstr(s, "/app.so") != NULL, "%s", s);
}

Test(cmd, takes_the_first_so_when_there_is_no_app_so)
{
    touch("b.so");
    touch("a.so");
    char *argv[] = {"worker", dir, NULL};
    cr_assert_eq(run(true, 2, argv), 1);
    cr_assert(strstr(error_summary(), "/a.so") != NULL);
}

Test(cmd, accepts_the_path_of_a_so)
{
    touch("x.so");
    char path[256];
    snprintf(path, sizeof path, "%s/x.so", dir);
    char *argv[] = {"worker", path, NULL};
    cr_assert_eq(run(true, 2, argv), 1);
    cr_assert(strstr(error_summary(), "/x.so: ") != NULL);
}

Test(cmd, reports_a_missing_loader)
{
    touch("config.ru");
    setenv("FERRY_LOADERS_DIR", "/nonexistent-loaders", 1);
    char *argv[] = {"worker", dir, NULL};
    cr_assert_eq(run(true, 2, argv), 1);
    cr_assert(strstr(error_summary(), "rack loader") != NULL);
}

/* Writes <text> to <dir>/<name>, creating the parent directories named in <name>. */
static void write_file(const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    for (char *p = path + strlen(dir) + 1; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        mkdir(path, 0700);
        *p = '/';
    }
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

static const char *read_out(void)
{
    static char buf[4096];
    char path[512];
    snprintf(path, sizeof path, "%s/out.txt", dir);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "the fake loader did not run");
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

Test(cmd, execs_the_rack_loader_with_the_handshake_environment_and_fds)
{
    write_file("app/config.ru", "run nil\n");
    write_file(
        "loaders/ruby/rack_loader.rb",
        "keys = %w[FERRY_APP_ROOT FERRY_APP_TYPE FERRY_ENV FERRY_OWNER_FD FERRY_CONTROL_FD]\n"
        "out = keys.map { |k| \"#{k}=#{ENV[k]}\\n\" }.join\n"
        "out += \"fds=#{File.exist?('/proc/self/fd/3')},#{File.exist?('/proc/self/fd/4')}\\n\"\n"
        "File.write(ENV['FY_TEST_OUT'], out)\n");
    char loaders[256], out[256], app[256];
    snprintf(loaders, sizeof loaders, "%s/loaders", dir);
    snprintf(out, sizeof out, "%s/out.txt", dir);
    snprintf(app, sizeof app, "%s/app/../app", dir);
    setenv("FERRY_LOADERS_DIR", loaders, 1);
    setenv("FY_TEST_OUT", out, 1);
    char *argv[] = {"worker", app, "--environment", "staging", NULL};
    cr_assert_eq(run(true, 4, argv), 0);
    char expected[1024];
    snprintf(expected, sizeof expected,
             "FERRY_APP_ROOT=%s/app\nFERRY_APP_TYPE=rack\nFERRY_ENV=staging\nFERRY_OWNER_FD=3\n"
             "FERRY_CONTROL_FD=4\nfds=true,true\n",
             dir);
    cr_assert_str_eq(read_out(), expected);
}

Test(cmd, execs_the_wsgi_loader_with_ferry_env_defaulting_to_production)
{
    write_file("app/wsgi.py", "application = None\n");
    write_file("loaders/python/wsgi_loader.py",
               "import os\n"
               "keys = ['FERRY_APP_TYPE', 'FERRY_ENV']\n"
               "with open(os.environ['FY_TEST_OUT'], 'w') as f:\n"
               "    f.write(''.join('%s=%s\\n' % (k, os.environ.get(k)) for k in keys))\n");
    char loaders[256], out[256], app[256];
    snprintf(loaders, sizeof loaders, "%s/loaders", dir);
    snprintf(out, sizeof out, "%s/out.txt", dir);
    snprintf(app, sizeof app, "%s/app", dir);
    setenv("FERRY_LOADERS_DIR", loaders, 1);
    setenv("FY_TEST_OUT", out, 1);
    unsetenv("FERRY_ENV");
    char *argv[] = {"worker", app, NULL};
    cr_assert_eq(run(true, 2, argv), 0);
    cr_assert_str_eq(read_out(), "FERRY_APP_TYPE=wsgi\nFERRY_ENV=production\n");
}
