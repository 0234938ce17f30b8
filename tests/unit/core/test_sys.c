/* src/core/sys: fy_write_all and fy_write_file_atomic. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/sys.h"

static char dir[] = "/tmp/fy-sys-XXXXXX";
static char path[256], tmp[256];

static void setup(void)
{
    strcpy(dir, "/tmp/fy-sys-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/file", dir);
    snprintf(tmp, sizeof tmp, "%s/.file.tmp", dir);
}

static void teardown(void)
{
    unlink(path);
    unlink(tmp);
    rmdir(dir);
}

static void expect_content(const char *want)
{
    char buf[64] = {0};
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0);
    cr_assert_eq(read(fd, buf, sizeof buf - 1), (ssize_t)strlen(want));
    close(fd);
    cr_assert_str_eq(buf, want);
}

TestSuite(sys, .init = setup, .fini = teardown);

Test(sys, atomic_write_creates_then_replaces_and_leaves_no_temporary_file)
{
    cr_assert_eq(fy_write_file_atomic(path, tmp, "first\n", 6, 0600), 0);
    expect_content("first\n");
    cr_assert_eq(fy_write_file_atomic(path, tmp, "2\n", 2, 0644), 0);
    expect_content("2\n");
    cr_assert_eq(access(tmp, F_OK), -1);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0644);
}

Test(sys, atomic_write_applies_the_mode_whatever_the_umask)
{
    mode_t old = umask(0077);
    int rc = fy_write_file_atomic(path, tmp, "x", 1, 0644);
    umask(old);
    cr_assert_eq(rc, 0);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0644);
}

Test(sys, atomic_write_refuses_a_temporary_path_that_exists_and_keeps_the_old_file)
{
    cr_assert_eq(fy_write_file_atomic(path, tmp, "old", 3, 0600), 0);
    cr_assert_eq(symlink("/tmp/fy-sys-nowhere", tmp), 0);
    cr_assert_eq(fy_write_file_atomic(path, tmp, "new", 3, 0600), -EEXIST);
    expect_content("old");
    struct stat st;
    cr_assert_eq(lstat(tmp, &st), 0, "someone else's file is not removed");
}

Test(sys, atomic_write_into_a_missing_directory_fails_cleanly)
{
    char missing[300], missing_tmp[300];
    snprintf(missing, sizeof missing, "%s/no/file", dir);
    snprintf(missing_tmp, sizeof missing_tmp, "%s/no/.file.tmp", dir);
    cr_assert_eq(fy_write_file_atomic(missing, missing_tmp, "x", 1, 0600), -ENOENT);
}

Test(sys, write_all_writes_everything_and_reports_errors)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    cr_assert_eq(fy_write_all(fds[1], "hello", 5), 0);
    char buf[8] = {0};
    cr_assert_eq(read(fds[0], buf, sizeof buf), 5);
    cr_assert_str_eq(buf, "hello");
    close(fds[0]);
    close(fds[1]);
    cr_assert_eq(fy_write_all(fds[1], "x", 1), -EBADF);
}
