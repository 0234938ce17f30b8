/* Unit tests of the systemd protocols' parsing (src/cli/systemd.c): LISTEN_PID / LISTEN_FDS /
 * LISTEN_FDNAMES as sd_listen_fds(3) reads them, and NOTIFY_SOCKET's two address forms; every
 * refusal; and fy_systemd_open taking the variables out of the environment. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli/systemd.h"

static char names[FY_SYSTEMD_LISTEN_FDS_MAX][64];
static char err[200];

static int parse(const char *pid, const char *fds, const char *fdnames)
{
    err[0] = '\0';
    return fy_systemd_parse_listen(pid, fds, fdnames, 4242, names, err, sizeof err);
}

Test(systemd, listen_fds_for_us)
{
    cr_assert_eq(parse("4242", "2", "web:local"), 2);
    cr_assert_str_eq(names[0], "web");
    cr_assert_str_eq(names[1], "local");
    cr_assert_eq(parse("4242", "3", "only"), 3);
    cr_assert_str_eq(names[0], "only");
    cr_assert_str_eq(names[1], "");
    cr_assert_str_eq(names[2], "");
    cr_assert_eq(parse("4242", "1", NULL), 1);
    cr_assert_str_eq(names[0], "");
    cr_assert_eq(parse("4242", "1", "a:b:c"), 1, "extra names are ignored");
    cr_assert_str_eq(names[0], "a");
    cr_assert_eq(parse("4242", "2", "::"), 2);
    cr_assert_str_eq(names[0], "");
}

Test(systemd, not_for_us)
{
    cr_assert_eq(parse(NULL, "1", NULL), 0);
    cr_assert_eq(parse("4242", NULL, NULL), 0);
    cr_assert_eq(parse("4243", "1", NULL), 0, "another process's sockets");
    cr_assert_eq(parse("1", "junk", NULL), 0, "not ours: LISTEN_FDS is not even read");
}

Test(systemd, listen_refusals)
{
    static const char *const bad_pids[] = {"", "0", "-1", "42x", " 42", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad_pids / sizeof bad_pids[0]; i++) {
        cr_assert_eq(parse(bad_pids[i], "1", NULL), -EINVAL, "%s", bad_pids[i]);
        cr_assert(strstr(err, "LISTEN_PID=") != NULL, "%s", err);
    }
    static const char *const bad_fds[] = {"", "0", "9", "1x", "-1", "+1", "18446744073709551617"};
    for (size_t i = 0; i < sizeof bad_fds / sizeof bad_fds[0]; i++) {
        cr_assert_eq(parse("4242", bad_fds[i], NULL), -EINVAL, "%s", bad_fds[i]);
        cr_assert(strstr(err, "LISTEN_FDS=") != NULL, "%s", err);
    }
    char longname[80];
    memset(longname, 'n', 64);
    longname[64] = '\0';
    cr_assert_eq(parse("4242", "1", longname), -EINVAL);
    cr_assert_str_eq(err, "LISTEN_FDNAMES: the name of fd 3 is longer than 63 bytes");
    longname[63] = '\0';
    cr_assert_eq(parse("4242", "1", longname), 1);
    cr_assert_str_eq(names[0], longname);
}

Test(systemd, notify_addresses)
{
    fy_systemd_t sd;
    memset(&sd, 0, sizeof sd);
    cr_assert_eq(fy_systemd_parse_notify("/run/systemd/notify", &sd, err, sizeof err), 0);
    cr_assert_eq(sd.notify_addr_len, strlen("/run/systemd/notify"));
    cr_assert_eq(memcmp(sd.notify_addr, "/run/systemd/notify", sd.notify_addr_len), 0);
    cr_assert_eq(fy_systemd_parse_notify("@ferry-test", &sd, err, sizeof err), 0);
    cr_assert_eq(sd.notify_addr_len, strlen("@ferry-test"));
    cr_assert_eq(sd.notify_addr[0], '\0');
    cr_assert_eq(memcmp(sd.notify_addr + 1, "ferry-test", 10), 0);
    static const char *const bad[] = {"", "relative/path", "notify"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(fy_systemd_parse_notify(bad[i], &sd, err, sizeof err), -EINVAL, "%s", bad[i]);
    char too_long[200];
    memset(too_long, 'x', sizeof too_long - 1);
    too_long[0] = '/';
    too_long[sizeof too_long - 1] = '\0';
    cr_assert_eq(fy_systemd_parse_notify(too_long, &sd, err, sizeof err), -EINVAL);
    too_long[sizeof sd.notify_addr - 1] = '\0';   /* 107 bytes: the longest sun_path */
    cr_assert_eq(fy_systemd_parse_notify(too_long, &sd, err, sizeof err), 0);
}

Test(systemd, open_takes_the_variables_and_notify_sends)
{
    int rx = socket(AF_UNIX, SOCK_DGRAM, 0);
    cr_assert_geq(rx, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    char name[64];
    snprintf(name, sizeof name, "@fy-test-systemd-%d", (int)getpid());
    memcpy(a.sun_path + 1, name + 1, strlen(name) - 1);
    cr_assert_eq(bind(rx, (struct sockaddr *)&a,
                      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(name))), 0);
    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)getpid() + 1);
    setenv("NOTIFY_SOCKET", name, 1);
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "1", 1);
    setenv("LISTEN_FDNAMES", "x", 1);
    fy_systemd_t sd;
    cr_assert_eq(fy_systemd_open(&sd, err, sizeof err), 0, "%s", err);
    cr_assert_eq(sd.listen_fds, 0, "LISTEN_PID is another process's");
    cr_assert_null(getenv("NOTIFY_SOCKET"));
    cr_assert_null(getenv("LISTEN_PID"));
    cr_assert_null(getenv("LISTEN_FDS"));
    cr_assert_null(getenv("LISTEN_FDNAMES"));
    fy_systemd_notify(&sd, "READY=1\nSTATUS=testing");
    char buf[64] = {0};
    cr_assert_eq(recv(rx, buf, sizeof buf - 1, 0), (ssize_t)strlen("READY=1\nSTATUS=testing"));
    cr_assert_str_eq(buf, "READY=1\nSTATUS=testing");
    fy_systemd_close(&sd);
    close(rx);

    setenv("LISTEN_PID", "x", 1);
    setenv("LISTEN_FDS", "1", 1);
    cr_assert_eq(fy_systemd_open(&sd, err, sizeof err), -EINVAL);
    cr_assert_str_eq(err, "LISTEN_PID=x: not a pid");
    cr_assert_null(getenv("LISTEN_PID"), "removed even when malformed");
    fy_systemd_close(&sd);
    fy_systemd_notify(&sd, "READY=1");   /* no NOTIFY_SOCKET: nothing happens */
}
