/* Unit tests of the interpreter choice (src/cli/interp.c): the configured one (path or name on
 * PATH), the app's .venv and venv, python3 / ruby on PATH, the last resorts, and the refusals.
 * Each test gets a fresh directory under /tmp (an app root and a bin/ for PATH), removed after
 * the test; PATH is set per test. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/interp.h"

static char dir[64];
static char *saved_path;

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void setup(void)
{
    strcpy(dir, "/tmp/fy-test-interp-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    const char *p = getenv("PATH");
    saved_path = p ? strdup(p) : NULL;
}

static void teardown(void)
{
    if (dir[0] != '\0')
        nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    if (saved_path) {
        setenv("PATH", saved_path, 1);
        free(saved_path);
    }
}

TestSuite(interp, .init = setup, .fini = teardown);

/* Creates <dir>/<rel> (and its parents) with <mode>; returns its path in a static buffer. */
static const char *make_file(const char *rel, mode_t mode)
{
    static char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    for (char *s = strchr(path + strlen(dir) + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        mkdir(path, 0700);
        *s = '/';
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    cr_assert_geq(fd, 0, "%s", path);
    close(fd);
    chmod(path, mode);
    return path;
}

static void set_path_to(const char *rel)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    setenv("PATH", p, 1);
}

static void expect(const char *type, const char *configured, const char *path_rel,
                   const char *source)
{
    fy_interp_t got;
    char err[256] = "";
    char app[PATH_MAX];
    snprintf(app, sizeof app, "%s/app", dir);
    cr_assert_eq(fy_interp_choose(type, app, configured, &got, err, sizeof err), 0, "%s", err);
    char want[PATH_MAX];
    if (path_rel[0] == '/')
        snprintf(want, sizeof want, "%s", path_rel);
    else
        snprintf(want, sizeof want, "%s/%s", dir, path_rel);
    cr_assert_str_eq(got.path, want);
    cr_assert_str_eq(got.source, source);
}

Test(interp, virtualenvs_then_path_then_default)
{
    make_file("app/wsgi.py", 0644);
    set_path_to("nothing");
    expect("wsgi", NULL, "/usr/bin/python3", "default");
    expect("rack", "", "/usr/bin/ruby", "default");
    make_file("bin/python3", 0755);
    make_file("bin/ruby", 0755);
    set_path_to("bin");
    expect("wsgi", NULL, "bin/python3", "PATH");
    expect("rack", NULL, "bin/ruby", "PATH");
    make_file("app/venv/bin/python", 0755);
    expect("wsgi", NULL, "app/venv/bin/python", "APP_DIR/venv");
    make_file("app/.venv/bin/python", 0755);
    expect("wsgi", "", "app/.venv/bin/python", "APP_DIR/.venv");
    expect("rack", NULL, "bin/ruby", "PATH");   /* a virtualenv is no Ruby's */
}

Test(interp, not_executable_or_not_a_file_is_skipped)
{
    make_file("app/.venv/bin/python", 0644);
    make_file("bin/python3/inside", 0755);   /* bin/python3 is a directory */
    make_file("bin2/python3", 0755);
    char p[2 * PATH_MAX];
    snprintf(p, sizeof p, "%s/bin:%s/bin2", dir, dir);
    setenv("PATH", p, 1);
    expect("wsgi", NULL, "bin2/python3", "PATH");
}

Test(interp, configured_path_and_name)
{
    const char *py = make_file("opt/py/bin/python3.11", 0755);
    char configured[PATH_MAX];
    snprintf(configured, sizeof configured, "%s", py);
    make_file("app/.venv/bin/python", 0755);
    expect("wsgi", configured, "opt/py/bin/python3.11", "--python");
    set_path_to("opt/py/bin");
    expect("wsgi", "python3.11", "opt/py/bin/python3.11", "--python");
    expect("rack", "python3.11", "opt/py/bin/python3.11", "--ruby");
}

Test(interp, configured_refusals)
{
    fy_interp_t got;
    char err[256];
    set_path_to("nothing");
    cr_assert_eq(fy_interp_choose("wsgi", dir, "/nonexistent/python", &got, err, sizeof err),
                 -ENOENT);
    cr_assert_str_eq(err, "--python /nonexistent/python: not an executable file");
    cr_assert_eq(fy_interp_choose("rack", dir, "ruby9", &got, err, sizeof err), -ENOENT);
    cr_assert_str_eq(err, "--ruby ruby9: no executable of that name on PATH");
    const char *plain = make_file("plain", 0644);
    char configured[PATH_MAX];
    snprintf(configured, sizeof configured, "%s", plain);
    cr_assert_eq(fy_interp_choose("wsgi", dir, configured, &got, err, sizeof err), -ENOENT);
    cr_assert_eq(fy_interp_choose("c", dir, NULL, &got, err, sizeof err), -EINVAL);
}

Test(interp, an_empty_path_entry_is_the_current_directory)
{
    make_file("cwd/python3", 0755);
    char cwd[PATH_MAX], old[PATH_MAX];
    cr_assert_not_null(getcwd(old, sizeof old));
    snprintf(cwd, sizeof cwd, "%s/cwd", dir);
    cr_assert_eq(chdir(cwd), 0);
    setenv("PATH", "/nonexistent:", 1);
    fy_interp_t got;
    char err[64];
    int rc = fy_interp_choose("wsgi", dir, NULL, &got, err, sizeof err);
    cr_assert_eq(chdir(old), 0);
    cr_assert_eq(rc, 0);
    cr_assert_str_eq(got.path, "./python3");
    cr_assert_str_eq(got.source, "PATH");
}
