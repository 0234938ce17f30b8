#include <criterion/criterion.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ipc/sock.h"

/* A private directory for socket files, removed by the test. */
static char *make_tmpdir(void)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/fy-test-sock.XXXXXX");
    cr_assert_not_null(mkdtemp(path));
    return path;
}

static bool is_cloexec(int fd)
{
    int flags = fcntl(fd, F_GETFD);
    return flags != -1 && (flags & FD_CLOEXEC);
}

/* Accepts one connection on <lfd>, writes <msg> to it and reads one byte back. */
static void echo_once(int lfd, int cfd)
{
    int afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    cr_assert_geq(afd, 0);
    cr_assert_eq(write(afd, "hi", 2), 2);
    char buf[2];
    cr_assert_eq(read(cfd, buf, 2), 2);
    cr_assert_eq(memcmp(buf, "hi", 2), 0);
    close(afd);
}

Test(sock, abstract_enabled_by_default_and_disabled_by_env)
{
    unsetenv("FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS");
    cr_assert(fy_abstract_sockets_enabled());
    setenv("FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS", "0", 1);
    cr_assert(fy_abstract_sockets_enabled());
    setenv("FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS", "1", 1);
    cr_assert_not(fy_abstract_sockets_enabled());
}

Test(sock, listens_and_connects_on_an_abstract_address)
{
    int before = fy_count_open_fds();
    char addr[FY_ADDRESS_MAX];
    snprintf(addr, sizeof addr, "abstract:fy-test.%d", (int)getpid());
    int lfd = fy_unix_listen(addr, 5);
    cr_assert_geq(lfd, 0, "%s", strerror(-lfd));
    cr_assert(is_cloexec(lfd));
    int cfd = fy_unix_connect(addr, 1000);
    cr_assert_geq(cfd, 0, "%s", strerror(-cfd));
    cr_assert(is_cloexec(cfd));
    cr_assert_eq(fcntl(cfd, F_GETFL) & O_NONBLOCK, 0, "connected fd must be blocking");
    echo_once(lfd, cfd);
    close(cfd);
    close(lfd);
    cr_assert_eq(fy_count_open_fds(), before);
}

Test(sock, listens_on_a_socket_file_with_mode_0600_and_unlinks_it)
{
    char *dir = make_tmpdir();
    char addr[FY_ADDRESS_MAX + 8], path[FY_ADDRESS_MAX];
    snprintf(path, sizeof path, "%s/s.sock", dir);
    snprintf(addr, sizeof addr, "unix:%s", path);
    int lfd = fy_unix_listen(addr, 5);
    cr_assert_geq(lfd, 0, "%s", strerror(-lfd));
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert(S_ISSOCK(st.st_mode));
    cr_assert_eq(st.st_mode & 0777, 0600);
    int cfd = fy_unix_connect(addr, 1000);
    cr_assert_geq(cfd, 0);
    echo_once(lfd, cfd);
    close(cfd);
    close(lfd);
    cr_assert_eq(fy_unix_address_unlink(addr), 0);
    cr_assert_eq(stat(path, &st), -1);
    cr_assert_eq(fy_unix_address_unlink(addr), -ENOENT);
    rmdir(dir);
}

Test(sock, replaces_a_stale_socket_file_but_not_a_regular_file)
{
    char *dir = make_tmpdir();
    char addr[FY_ADDRESS_MAX + 8], path[FY_ADDRESS_MAX];
    snprintf(path, sizeof path, "%s/s.sock", dir);
    snprintf(addr, sizeof addr, "unix:%s", path);
    int lfd = fy_unix_listen(addr, 5);
    cr_assert_geq(lfd, 0);
    close(lfd); /* leaves a stale socket file */
    lfd = fy_unix_listen(addr, 5);
    cr_assert_geq(lfd, 0, "%s", strerror(-lfd));
    close(lfd);
    unlink(path);
    int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(fy_unix_listen(addr, 5), -EEXIST);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "the regular file must survive");
    unlink(path);
    rmdir(dir);
}

Test(sock, refuses_bad_addresses)
{
    cr_assert_eq(fy_unix_listen("tcp:1.2.3.4", 5), -EINVAL);
    cr_assert_eq(fy_unix_listen("abstract:", 5), -EINVAL);
    cr_assert_eq(fy_unix_listen("unix:", 5), -EINVAL);
    cr_assert_eq(fy_unix_listen(NULL, 5), -EINVAL);
    cr_assert_eq(fy_unix_connect("nonsense", 100), -EINVAL);
    cr_assert_eq(fy_unix_address_unlink("nonsense"), -EINVAL);
    cr_assert_eq(fy_unix_address_unlink("abstract:x"), 0);
    char longaddr[300] = "unix:/tmp/";
    memset(longaddr + 10, 'a', 200);
    longaddr[210] = '\0';
    cr_assert_eq(fy_unix_listen(longaddr, 5), -ENAMETOOLONG);
    memcpy(longaddr, "abstract:", 9);
    cr_assert_eq(fy_unix_connect(longaddr, 100), -ENAMETOOLONG);
}

Test(sock, connect_to_nobody_fails_with_econnrefused_or_enoent)
{
    char addr[FY_ADDRESS_MAX];
    snprintf(addr, sizeof addr, "abstract:fy-test-nobody.%d", (int)getpid());
    cr_assert_eq(fy_unix_connect(addr, 100), -ECONNREFUSED);
    cr_assert_eq(fy_unix_connect("unix:/nonexistent-dir/x.sock", 100), -ENOENT);
}

Test(sock, connect_times_out_when_the_backlog_stays_full)
{
    char addr[FY_ADDRESS_MAX];
    snprintf(addr, sizeof addr, "abstract:fy-test-full.%d", (int)getpid());
    int lfd = fy_unix_listen(addr, 0);
    cr_assert_geq(lfd, 0);
    int held[4];
    int n = 0, rc = 0;
    /* Fill the backlog (0 admits one pending connection on Linux). */
    while (n < 4) {
        rc = fy_unix_connect(addr, 50);
        if (rc < 0)
            break;
        held[n++] = rc;
    }
    cr_assert_eq(rc, -ETIMEDOUT, "rc=%d after %d connections", rc, n);
    cr_assert_geq(n, 1);
    for (int i = 0; i < n; i++)
        close(held[i]);
    close(lfd);
}

Test(sock, listen_auto_picks_abstract_when_enabled)
{
    unsetenv("FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS");
    char addr[FY_ADDRESS_MAX], addr2[FY_ADDRESS_MAX];
    int lfd = fy_unix_listen_auto(NULL, "worker", 5, addr);
    cr_assert_geq(lfd, 0);
    cr_assert(strncmp(addr, "abstract:ferry.worker.", 22) == 0, "%s", addr);
    int lfd2 = fy_unix_listen_auto(NULL, "worker", 5, addr2);
    cr_assert_geq(lfd2, 0);
    cr_assert_str_neq(addr, addr2);
    int cfd = fy_unix_connect(addr, 1000);
    cr_assert_geq(cfd, 0);
    echo_once(lfd, cfd);
    close(cfd);
    close(lfd);
    close(lfd2);
}

Test(sock, listen_auto_falls_back_to_a_file_in_dir)
{
    setenv("FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS", "1", 1);
    char *dir = make_tmpdir();
    char addr[FY_ADDRESS_MAX], prefix[FY_ADDRESS_MAX];
    int lfd = fy_unix_listen_auto(dir, "worker", 5, addr);
    cr_assert_geq(lfd, 0, "%s", strerror(-lfd));
    snprintf(prefix, sizeof prefix, "unix:%s/worker.", dir);
    cr_assert(strncmp(addr, prefix, strlen(prefix)) == 0, "%s", addr);
    struct stat st;
    cr_assert_eq(stat(addr + 5, &st), 0);
    cr_assert(S_ISSOCK(st.st_mode));
    int cfd = fy_unix_connect(addr, 1000);
    cr_assert_geq(cfd, 0);
    echo_once(lfd, cfd);
    close(cfd);
    close(lfd);
    cr_assert_eq(fy_unix_address_unlink(addr), 0);
    cr_assert_eq(rmdir(dir), 0, "no file may be left in the dir");
}

Test(sock, listen_auto_refuses_bad_arguments)
{
    char addr[FY_ADDRESS_MAX];
    cr_assert_eq(fy_unix_listen_auto(NULL, "", 5, addr), -EINVAL);
    cr_assert_eq(fy_unix_listen_auto(NULL, "a/b", 5, addr), -EINVAL);
    setenv("FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS", "1", 1);
    cr_assert_eq(fy_unix_listen_auto(NULL, "worker", 5, addr), -EINVAL);
    cr_assert_eq(fy_unix_listen_auto("/nonexistent-dir", "worker", 5, addr), -ENOENT);
    char longdir[200];
    memset(longdir, 'd', sizeof longdir - 1);
    longdir[0] = '/';
    longdir[sizeof longdir - 1] = '\0';
    cr_assert_eq(fy_unix_listen_auto(longdir, "worker", 5, addr), -ENAMETOOLONG);
}

Test(sock, peer_check_accepts_our_own_uid)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pid_t pid = 0;
    uid_t uid = 12345;
    cr_assert_eq(fy_peer_check_uid(sv[0], &pid, &uid), 0);
    cr_assert_eq(pid, getpid());
    cr_assert_eq(uid, getuid());
    cr_assert_eq(fy_peer_check_uid(sv[0], NULL, NULL), 0);
    close(sv[0]);
    close(sv[1]);
}

Test(sock, peer_check_refuses_another_uid)
{
    if (getuid() != 0)
        cr_skip_test("needs root to connect as another uid");
    char addr[FY_ADDRESS_MAX];
    snprintf(addr, sizeof addr, "abstract:fy-test-peer.%d", (int)getpid());
    int lfd = fy_unix_listen(addr, 5);
    cr_assert_geq(lfd, 0);
    pid_t child = fork();
    cr_assert_neq(child, -1);
    if (child == 0) {
        if (setuid(65534) == -1)
            _exit(2);
        int fd = fy_unix_connect(addr, 1000);
        if (fd < 0)
            _exit(3);
        char b;
        ssize_t n = read(fd, &b, 1); /* until the parent closes */
        _exit(n == 0 ? 0 : 4);
    }
    int afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    cr_assert_geq(afd, 0);
    uid_t uid = 0;
    cr_assert_eq(fy_peer_check_uid(afd, NULL, &uid), -EPERM);
    cr_assert_eq(uid, 65534);
    close(afd);
    close(lfd);
    int status;
    cr_assert_eq(waitpid(child, &status, 0), child);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

Test(sock, peer_check_fails_on_a_non_socket)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    cr_assert_eq(fy_peer_check_uid(fds[0], NULL, NULL), -ENOTSOCK);
    close(fds[0]);
    close(fds[1]);
    cr_assert_eq(fy_peer_check_uid(fds[0], NULL, NULL), -EBADF);
}

Test(sock, sets_cloexec_and_nonblock)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    cr_assert_not(is_cloexec(fds[0]));
    cr_assert_eq(fy_fd_set_cloexec(fds[0]), 0);
    cr_assert(is_cloexec(fds[0]));
    cr_assert_eq(fy_fd_set_nonblock(fds[0], true), 0);
    cr_assert(fcntl(fds[0], F_GETFL) & O_NONBLOCK);
    cr_assert_eq(fy_fd_set_nonblock(fds[0], false), 0);
    cr_assert_not(fcntl(fds[0], F_GETFL) & O_NONBLOCK);
    close(fds[0]);
    close(fds[1]);
    cr_assert_eq(fy_fd_set_cloexec(fds[0]), -EBADF);
    cr_assert_eq(fy_fd_set_nonblock(fds[0], true), -EBADF);
}

Test(sock, owner_pipe_is_cloexec_and_reads_eof_when_the_owner_closes)
{
    int fds[2];
    cr_assert_eq(fy_owner_pipe_open(fds), 0);
    cr_assert(is_cloexec(fds[0]));
    cr_assert(is_cloexec(fds[1]));
    close(fds[1]);
    char b;
    cr_assert_eq(read(fds[0], &b, 1), 0);
    close(fds[0]);
}

Test(sock, counts_open_fds)
{
    int before = fy_count_open_fds();
    cr_assert_gt(before, 0);
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    cr_assert_eq(fy_count_open_fds(), before + 1);
    close(fd);
    cr_assert_eq(fy_count_open_fds(), before);
}

/* Runs <closer> in a child that opens fds 3..19 at known numbers, keeps {5, 9, 19, 2, 9};
 * the child reports through its exit status whether exactly 0-2, 5, 9 and 19 survived. */
static void check_close_except(int (*closer)(const int *, size_t))
{
    pid_t child = fork();
    cr_assert_neq(child, -1);
    if (child == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        for (int fd = 3; fd < 20; fd++)
            if (fd != devnull)
                dup2(devnull, fd);
        /* Also one fd far above the rest. */
        dup2(devnull, 200);
        int keep[] = {5, 9, 19, 2, 9};
        if (closer(keep, sizeof keep / sizeof keep[0]) != 0)
            _exit(10);
        for (int fd = 0; fd < 256; fd++) {
            bool open_now = fcntl(fd, F_GETFD) != -1;
            bool want = fd <= 2 || fd == 5 || fd == 9 || fd == 19;
            if (open_now != want)
                _exit(20 + (fd < 200 ? fd : 199));
        }
        _exit(0);
    }
    int status;
    cr_assert_eq(waitpid(child, &status, 0), child);
    cr_assert(WIFEXITED(status));
    cr_assert_eq(WEXITSTATUS(status), 0, "child reported %d", WEXITSTATUS(status));
}

Test(sock, close_fds_except_keeps_exactly_the_set)
{
    check_close_except(fy_close_fds_except);
}

Test(sock, close_fds_except_iterate_keeps_exactly_the_set)
{
    check_close_except(fy_close_fds_except_iterate);
}

static int close_keep_none(const int *keep, size_t n)
{
    (void)keep;
    (void)n;
    return fy_close_fds_except(NULL, 0);
}

Test(sock, close_fds_except_with_an_empty_set_keeps_only_stdio)
{
    pid_t child = fork();
    cr_assert_neq(child, -1);
    if (child == 0) {
        int fd = open("/dev/null", O_RDONLY);
        if (fd < 3 || close_keep_none(NULL, 0) != 0)
            _exit(1);
        _exit(fcntl(fd, F_GETFD) == -1 && errno == EBADF ? 0 : 2);
    }
    int status;
    cr_assert_eq(waitpid(child, &status, 0), child);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

Test(sock, close_fds_except_refuses_too_many_keeps)
{
    int keep[65];
    for (int i = 0; i < 65; i++)
        keep[i] = 100 + i;
    cr_assert_eq(fy_close_fds_except(keep, 65), -EINVAL);
    cr_assert_eq(fy_close_fds_except_iterate(keep, 65), -EINVAL);
    cr_assert_eq(fy_close_fds_except(NULL, 3), -EINVAL);
}

static bool all_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
            return false;
    return true;
}

Test(sock, secret_is_32_lowercase_hex_digits_and_fresh_each_time)
{
    char a[FY_SECRET_HEX_LEN + 1], b[FY_SECRET_HEX_LEN + 1];
    cr_assert_eq(fy_secret_generate(a), 0);
    cr_assert_eq(fy_secret_generate(b), 0);
    cr_assert_eq(strlen(a), 32);
    cr_assert_eq(strlen(b), 32);
    cr_assert(all_lower_hex(a, 32), "%s", a);
    cr_assert(all_lower_hex(b, 32), "%s", b);
    cr_assert_str_neq(a, b);
}

Test(sock, random_bytes_fills_the_buffer)
{
    unsigned char buf[4096];
    memset(buf, 0, sizeof buf);
    cr_assert_eq(fy_random_bytes(buf, sizeof buf), 0);
    int zeros = 0;
    for (size_t i = 0; i < sizeof buf; i++)
        zeros += buf[i] == 0;
    cr_assert_lt(zeros, 100, "zeros=%d", zeros);
    cr_assert_eq(fy_random_bytes(buf, 0), 0);
}

Test(sock, secret_equal_compares_content_and_length)
{
    const char *s = "0123456789abcdef0123456789abcdef";
    cr_assert(fy_secret_equal(s, 32, s, 32));
    cr_assert(fy_secret_equal("0123456789abcdef0123456789abcdef", 32, s, 32));
    cr_assert_not(fy_secret_equal("0123456789abcdef0123456789abcdeX", 32, s, 32));
    cr_assert_not(fy_secret_equal("X123456789abcdef0123456789abcdef", 32, s, 32));
    cr_assert_not(fy_secret_equal(s, 31, s, 32), "a prefix is not equal");
    cr_assert_not(fy_secret_equal("0123456789abcdef0123456789abcdef0", 33, s, 32));
    cr_assert_not(fy_secret_equal(NULL, 0, s, 32));
    cr_assert(fy_secret_equal(NULL, 0, "", 0));
    cr_assert_not(fy_secret_equal("a", 1, "", 0));
    /* A NUL inside does not end the comparison. */
    cr_assert_not(fy_secret_equal("ab\0d", 4, "ab\0c", 4));
    cr_assert(fy_secret_equal("ab\0c", 4, "ab\0c", 4));
}
