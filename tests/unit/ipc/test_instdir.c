#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/log.h"
#include "ipc/instdir.h"

/* Every test runs with TMPDIR set to a private directory, so other instances on the machine are
 * never touched; teardown checks it is empty again and removes it. */
static char base[64];

static void setup(void)
{
    snprintf(base, sizeof base, "/tmp/fy-test-instdir.XXXXXX");
    cr_assert_not_null(mkdtemp(base));
    setenv("TMPDIR", base, 1);
}

static void teardown(void)
{
    cr_assert_eq(rmdir(base), 0, "TMPDIR %s not empty: %s", base, strerror(errno));
}

TestSuite(instdir, .init = setup, .fini = teardown);

static pid_t dead_pid(void)
{
    pid_t child = fork();
    cr_assert_neq(child, -1);
    if (child == 0)
        _exit(0);
    int status;
    cr_assert_eq(waitpid(child, &status, 0), child);
    return child;
}

Test(instdir, base_is_tmpdir_or_tmp)
{
    cr_assert_str_eq(fy_instdir_base(), base);
    setenv("TMPDIR", "relative/dir", 1);
    cr_assert_str_eq(fy_instdir_base(), "/tmp");
    unsetenv("TMPDIR");
    cr_assert_str_eq(fy_instdir_base(), "/tmp");
    setenv("TMPDIR", base, 1);
}

Test(instdir, creates_a_0700_dir_named_for_our_pid_even_under_a_loose_umask)
{
    mode_t old = umask(0);
    fy_instdir_t dir;
    cr_assert_eq(fy_instdir_create(&dir), 0);
    umask(old);
    struct stat st;
    cr_assert_eq(stat(dir.path, &st), 0);
    cr_assert(S_ISDIR(st.st_mode));
    cr_assert_eq(st.st_mode & 07777, 0700, "mode %o", st.st_mode & 07777);
    const char *name = strrchr(dir.path, '/') + 1;
    cr_assert_eq(strncmp(dir.path, base, strlen(base)), 0);
    cr_assert_eq(fy_instdir_name_pid(name), getpid(), "%s", name);
    cr_assert_eq(fy_instdir_remove(&dir), 0);
}

Test(instdir, creates_a_different_dir_each_time)
{
    fy_instdir_t a, b;
    cr_assert_eq(fy_instdir_create(&a), 0);
    cr_assert_eq(fy_instdir_create(&b), 0);
    cr_assert_str_neq(a.path, b.path);
    cr_assert_eq(fy_instdir_remove(&a), 0);
    cr_assert_eq(fy_instdir_remove(&b), 0);
}

Test(instdir, create_fails_when_the_base_is_missing)
{
    setenv("TMPDIR", "/nonexistent-ferry-base", 1);
    fy_instdir_t dir;
    cr_assert_eq(fy_instdir_create(&dir), -ENOENT);
    cr_assert_str_eq(dir.path, "");
    cr_assert_eq(fy_instdir_create(NULL), -EINVAL);
}

Test(instdir, create_fails_when_the_path_is_too_long)
{
    char longbase[300];
    memset(longbase, 'x', sizeof longbase - 1);
    longbase[0] = '/';
    longbase[sizeof longbase - 1] = '\0';
    setenv("TMPDIR", longbase, 1);
    fy_instdir_t dir;
    cr_assert_eq(fy_instdir_create(&dir), -ENAMETOOLONG);
}

Test(instdir, writes_files_with_the_given_mode_atomically)
{
    fy_instdir_t dir;
    cr_assert_eq(fy_instdir_create(&dir), 0);
    cr_assert_eq(fy_instdir_write_file(&dir, "password", "s3cret", 6, 0600), 0);
    cr_assert_eq(fy_instdir_write_file(&dir, "properties.json", "{}", 2, 0644), 0);
    /* Overwrite replaces the content. */
    cr_assert_eq(fy_instdir_write_file(&dir, "properties.json", "{\"a\":1}", 7, 0644), 0);
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/password", dir.path);
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0600);
    cr_assert_eq(st.st_size, 6);
    snprintf(path, sizeof path, "%s/properties.json", dir.path);
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0644);
    FILE *f = fopen(path, "r");
    char buf[32] = {0};
    cr_assert_eq(fread(buf, 1, sizeof buf - 1, f), 7);
    fclose(f);
    cr_assert_str_eq(buf, "{\"a\":1}");
    cr_assert_eq(fy_instdir_write_file(&dir, "empty", NULL, 0, 0600), 0);
    cr_assert_eq(fy_instdir_remove(&dir), 0);
}

Test(instdir, write_file_refuses_bad_names_and_modes)
{
    fy_instdir_t dir;
    cr_assert_eq(fy_instdir_create(&dir), 0);
    cr_assert_eq(fy_instdir_write_file(&dir, "", "x", 1, 0600), -EINVAL);
    cr_assert_eq(fy_instdir_write_file(&dir, "a/b", "x", 1, 0600), -EINVAL);
    cr_assert_eq(fy_instdir_write_file(&dir, "..", "x", 1, 0600), -EINVAL);
    cr_assert_eq(fy_instdir_write_file(&dir, ".", "x", 1, 0600), -EINVAL);
    cr_assert_eq(fy_instdir_write_file(&dir, NULL, "x", 1, 0600), -EINVAL);
    cr_assert_eq(fy_instdir_write_file(&dir, "x", NULL, 1, 0600), -EINVAL);
    cr_assert_eq(fy_instdir_write_file(&dir, "x", "x", 1, 04755), -EINVAL);
    char longname[600];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    cr_assert_eq(fy_instdir_write_file(&dir, longname, "x", 1, 0600), -ENAMETOOLONG);
    fy_instdir_t empty = {{0}};
    cr_assert_eq(fy_instdir_write_file(&empty, "x", "x", 1, 0600), -EINVAL);
    cr_assert_eq(fy_instdir_remove(&dir), 0);
}

Test(instdir, write_file_fails_when_the_dir_is_gone)
{
    fy_instdir_t dir;
    cr_assert_eq(fy_instdir_create(&dir), 0);
    fy_instdir_t copy = dir;
    cr_assert_eq(fy_instdir_remove(&dir), 0);
    cr_assert_eq(fy_instdir_write_file(&copy, "x", "x", 1, 0600), -ENOENT);
}

Test(instdir, remove_deletes_files_and_the_dir)
{
    fy_instdir_t dir;
    cr_assert_eq(fy_instdir_create(&dir), 0);
    char saved[256];
    strcpy(saved, dir.path);
    cr_assert_eq(fy_instdir_write_file(&dir, "a", "1", 1, 0600), 0);
    cr_assert_eq(fy_instdir_write_file(&dir, "b", "2", 1, 0600), 0);
    char sub[300];
    snprintf(sub, sizeof sub, "%s/emptysub", dir.path);
    cr_assert_eq(mkdir(sub, 0700), 0);
    cr_assert_eq(fy_instdir_remove(&dir), 0);
    cr_assert_str_eq(dir.path, "", "a removed dir is marked empty");
    struct stat st;
    cr_assert_eq(stat(saved, &st), -1);
    cr_assert_eq(errno, ENOENT);
}

Test(instdir, remove_refuses_an_empty_or_missing_dir)
{
    fy_instdir_t dir = {{0}};
    cr_assert_eq(fy_instdir_remove(&dir), -EINVAL);
    cr_assert_eq(fy_instdir_remove(NULL), -EINVAL);
    snprintf(dir.path, sizeof dir.path, "%s/ferry.1.gone", base);
    cr_assert_eq(fy_instdir_remove(&dir), -ENOENT);
}

Test(instdir, remove_reports_a_non_empty_subdir)
{
    fy_instdir_t dir;
    cr_assert_eq(fy_instdir_create(&dir), 0);
    char sub[300], inner[400];
    snprintf(sub, sizeof sub, "%s/sub", dir.path);
    snprintf(inner, sizeof inner, "%s/f", sub);
    cr_assert_eq(mkdir(sub, 0700), 0);
    int fd = open(inner, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(fy_instdir_remove(&dir), -ENOTEMPTY);
    cr_assert_str_neq(dir.path, "");
    unlink(inner);
    cr_assert_eq(fy_instdir_remove(&dir), 0);
}

Test(instdir, parses_the_pid_out_of_a_name)
{
    cr_assert_eq(fy_instdir_name_pid("ferry.1234.abcd"), 1234);
    cr_assert_eq(fy_instdir_name_pid("ferry.1.x"), 1);
    cr_assert_eq(fy_instdir_name_pid("ferry.1234."), -EINVAL);
    cr_assert_eq(fy_instdir_name_pid("ferry.1234"), -EINVAL);
    cr_assert_eq(fy_instdir_name_pid("ferry..abcd"), -EINVAL);
    cr_assert_eq(fy_instdir_name_pid("ferry.0.abcd"), -EINVAL);
    cr_assert_eq(fy_instdir_name_pid("ferry.12a4.abcd"), -EINVAL);
    cr_assert_eq(fy_instdir_name_pid("ferry.99999999999.abcd"), -EINVAL);
    cr_assert_eq(fy_instdir_name_pid("ferryx.1.abcd"), -EINVAL);
    cr_assert_eq(fy_instdir_name_pid("other"), -EINVAL);
    cr_assert_eq(fy_instdir_name_pid(NULL), -EINVAL);
}

Test(instdir, clean_stale_removes_dirs_of_dead_pids_only)
{
    int logp[2];
    cr_assert_eq(pipe(logp), 0);
    fy_log_set_fd(logp[1]);
    pid_t dead = dead_pid();
    char stale[300], alive[300], notdir[300], other[300], file[400];
    snprintf(stale, sizeof stale, "%s/ferry.%d.dead0001", base, (int)dead);
    snprintf(alive, sizeof alive, "%s/ferry.%d.live0001", base, (int)getppid());
    snprintf(notdir, sizeof notdir, "%s/ferry.%d.file0001", base, (int)dead);
    snprintf(other, sizeof other, "%s/not-ferry.%d.x", base, (int)dead);
    cr_assert_eq(mkdir(stale, 0700), 0);
    snprintf(file, sizeof file, "%s/password", stale);
    int fd = open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(mkdir(alive, 0700), 0);
    cr_assert_eq(mkdir(other, 0700), 0);
    fd = open(notdir, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0);
    close(fd);
    fy_instdir_t ours;
    cr_assert_eq(fy_instdir_create(&ours), 0);

    cr_assert_eq(fy_instdir_clean_stale(), 1);

    struct stat st;
    cr_assert_eq(stat(stale, &st), -1, "the dead pid's dir is removed");
    cr_assert_eq(stat(alive, &st), 0, "a live pid's dir stays");
    cr_assert_eq(stat(notdir, &st), 0, "a plain file stays");
    cr_assert_eq(stat(other, &st), 0, "a non-instance name stays");
    cr_assert_eq(stat(ours.path, &st), 0, "our own dir stays");
    fy_log_set_fd(2);
    close(logp[1]);
    char buf[1024] = {0};
    cr_assert_gt(read(logp[0], buf, sizeof buf - 1), 0);
    close(logp[0]);
    cr_assert_not_null(strstr(buf, "removed stale instance dir"), "%s", buf);

    cr_assert_eq(fy_instdir_clean_stale(), 0, "nothing left to clean");
    rmdir(alive);
    rmdir(other);
    unlink(notdir);
    cr_assert_eq(fy_instdir_remove(&ours), 0);
}

Test(instdir, clean_stale_fails_when_the_base_is_missing)
{
    setenv("TMPDIR", "/nonexistent-ferry-base", 1);
    cr_assert_eq(fy_instdir_clean_stale(), -ENOENT);
}
