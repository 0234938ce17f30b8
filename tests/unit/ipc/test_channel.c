/* Unit tests of the blocking MessageChannel (src/ipc/channel.c), over socketpairs and pipes. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "ipc/channel.h"
#include "../proto/leak_check.h"

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own fd */
}

static int fds_before;
static int sv[2];
static int devnull = -1;

/* Each test gets a fresh socketpair; the fd count is taken before it. Warnings about closed
 * unexpected fds go to /dev/null so the test output stays readable. */
static void setup(void)
{
    devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    cr_assert_geq(devnull, 0);
    fy_log_set_fd(devnull);
    fds_before = open_fds();
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

static void teardown(void)
{
    if (sv[0] >= 0)
        close(sv[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    fy_log_set_fd(2);
    close(devnull);
    fy_test_fini_require(open_fds() == fds_before - 1, "the test leaked a file descriptor");
    fy_test_leak_check();
}

TestSuite(channel, .init = setup, .fini = teardown, .timeout = 20);

/* Sends <len> bytes with <nfds> fds attached in one SCM_RIGHTS message. */
static void send_with_fds(int fd, const void *data, size_t len, const int *fds, size_t nfds)
{
    union {
        char buf[CMSG_SPACE(4 * sizeof(int))];
        struct cmsghdr align;
    } control;
    cr_assert_leq(nfds, 4);
    memset(&control, 0, sizeof control);
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = CMSG_SPACE(nfds * sizeof(int))};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    cr_assert_eq(sendmsg(fd, &msg, 0), (ssize_t)len);
}

static void raw_write(int fd, const void *data, size_t len)
{
    cr_assert_eq(write(fd, data, len), (ssize_t)len);
}

Test(channel, array_round_trip)
{
    fy_channel_t a, b;
    fy_channel_init(&a, sv[0], 1000);
    fy_channel_init(&b, sv[1], 1000);
    cr_assert_eq(fy_channel_write_strings(&a, 4, "ready", "42", "abstract:w", ""), 0);
    fy_array_t msg;
    cr_assert_eq(fy_channel_read_array(&b, &msg), 1);
    cr_assert_eq(msg.count, 4);
    cr_assert_str_eq(msg.items[0], "ready");
    cr_assert_str_eq(msg.items[2], "abstract:w");
    cr_assert_str_eq(msg.items[3], "");
    fy_array_dispose(&msg);
}

Test(channel, array_bytes_on_the_wire_follow_the_format)
{
    fy_channel_t a;
    fy_channel_init(&a, sv[0], 1000);
    const char *items[] = {"ab", "c"};
    cr_assert_eq(fy_channel_write_array(&a, items, NULL, 2), 0);
    uint8_t buf[16];
    uint8_t want[] = {0x00, 0x05, 'a', 'b', 0, 'c', 0};
    cr_assert_eq(read(sv[1], buf, sizeof buf), (ssize_t)sizeof want);
    cr_assert_arr_eq(buf, want, sizeof want);
}

Test(channel, largest_array_round_trip)
{
    size_t len = FY_ARRAY_MAX_PAYLOAD - 1;
    char *big = malloc(len + 1);
    memset(big, 'q', len);
    big[len] = '\0';
    /* A socket buffer may not hold 64 KiB: write from a child process. */
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        fy_channel_t a;
        fy_channel_init(&a, sv[0], 5000);
        _exit(fy_channel_write_strings(&a, 1, big) == 0 ? 0 : 1);
    }
    fy_channel_t b;
    fy_channel_init(&b, sv[1], 5000);
    fy_array_t msg;
    cr_assert_eq(fy_channel_read_array(&b, &msg), 1);
    cr_assert_eq(msg.count, 1);
    cr_assert_eq(msg.lens[0], len);
    fy_array_dispose(&msg);
    free(big);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

Test(channel, write_refuses_array_past_limit)
{
    size_t len = FY_ARRAY_MAX_PAYLOAD;
    char *big = malloc(len + 1);
    memset(big, 'q', len);
    big[len] = '\0';
    fy_channel_t a;
    fy_channel_init(&a, sv[0], 1000);
    cr_assert_eq(fy_channel_write_strings(&a, 1, big), -EMSGSIZE);
    free(big);
}

Test(channel, write_refuses_zero_items)
{
    fy_channel_t a;
    fy_channel_init(&a, sv[0], 1000);
    cr_assert_eq(fy_channel_write_strings(&a, 0), -EINVAL);
}

Test(channel, eof_before_a_message_is_end_of_channel)
{
    close(sv[0]);
    sv[0] = -1;
    fy_channel_t b;
    fy_channel_init(&b, sv[1], 1000);
    fy_array_t msg;
    cr_assert_eq(fy_channel_read_array(&b, &msg), 0);
    cr_assert_eq(msg.count, 0);
}

Test(channel, eof_inside_an_array_at_every_offset_is_eproto)
{
    const uint8_t wire[] = {0x00, 0x05, 'a', 'b', 0, 'c', 0};
    for (size_t cut = 1; cut < sizeof wire; cut++) {
        int pair[2];
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
        raw_write(pair[0], wire, cut);
        close(pair[0]);
        fy_channel_t b;
        fy_channel_init(&b, pair[1], 1000);
        fy_array_t msg;
        cr_assert_eq(fy_channel_read_array(&b, &msg), -EPROTO, "cut=%zu", cut);
        close(pair[1]);
    }
}

Test(channel, refuses_zero_length_array)
{
    const uint8_t wire[] = {0x00, 0x00};
    raw_write(sv[0], wire, sizeof wire);
    fy_channel_t b;
    fy_channel_init(&b, sv[1], 1000);
    fy_array_t msg;
    cr_assert_eq(fy_channel_read_array(&b, &msg), -EPROTO);
}

Test(channel, refuses_array_without_final_nul)
{
    const uint8_t wire[] = {0x00, 0x02, 'a', 'b'};
    raw_write(sv[0], wire, sizeof wire);
    fy_channel_t b;
    fy_channel_init(&b, sv[1], 1000);
    fy_array_t msg;
    cr_assert_eq(fy_channel_read_array(&b, &msg), -EPROTO);
}

Test(channel, read_times_out)
{
    fy_channel_t b;
    fy_channel_init(&b, sv[1], 100);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    fy_array_t msg;
    cr_assert_eq(fy_channel_read_array(&b, &msg), -ETIMEDOUT);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    cr_assert_geq(ms, 90);
    cr_assert_lt(ms, 2000);
}

Test(channel, read_times_out_inside_a_message)
{
    const uint8_t wire[] = {0x00, 0x05, 'a'};
    raw_write(sv[0], wire, sizeof wire);
    fy_channel_t b;
    fy_channel_init(&b, sv[1], 100);
    fy_array_t msg;
    cr_assert_eq(fy_channel_read_array(&b, &msg), -ETIMEDOUT);
}

Test(channel, write_times_out_when_the_peer_does_not_read)
{
    int size = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    fy_channel_t a;
    fy_channel_init(&a, sv[0], 100);
    size_t len = 1 << 20;
    char *big = calloc(len, 1);
    cr_assert_eq(fy_channel_write_scalar(&a, big, len), -ETIMEDOUT);
    free(big);
}

Test(channel, write_to_closed_peer_is_epipe_not_sigpipe)
{
    close(sv[1]);
    sv[1] = -1;
    fy_channel_t a;
    fy_channel_init(&a, sv[0], 1000);
    cr_assert_eq(fy_channel_write_strings(&a, 1, "hello"), -EPIPE);
    cr_assert_eq(fy_channel_write_scalar(&a, "x", 1), -EPIPE);
    cr_assert_eq(fy_channel_send_fd(&a, 0), -EPIPE);
}

Test(channel, write_to_closed_pipe_is_epipe_not_sigpipe)
{
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    close(p[0]);
    fy_channel_t a;
    fy_channel_init(&a, p[1], 1000);
    cr_assert_eq(fy_channel_write_strings(&a, 1, "hello"), -EPIPE);
    sigset_t pending;
    sigpending(&pending);
    cr_assert_not(sigismember(&pending, SIGPIPE), "no SIGPIPE left pending");
    close(p[1]);
}

Test(channel, array_round_trip_over_a_pipe)
{
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    fy_channel_t a, b;
    fy_channel_init(&a, p[1], 1000);
    fy_channel_init(&b, p[0], 1000);
    cr_assert_eq(fy_channel_write_strings(&a, 2, "error", "it broke"), 0);
    fy_array_t msg;
    cr_assert_eq(fy_channel_read_array(&b, &msg), 1);
    cr_assert_str_eq(msg.items[1], "it broke");
    fy_array_dispose(&msg);
    close(p[1]);
    cr_assert_eq(fy_channel_read_array(&b, &msg), 0);
    close(p[0]);
}

Test(channel, scalar_round_trip)
{
    fy_channel_t a, b;
    fy_channel_init(&a, sv[0], 1000);
    fy_channel_init(&b, sv[1], 1000);
    cr_assert_eq(fy_channel_write_scalar(&a, "he\0llo", 6), 0);
    char *data;
    size_t len;
    cr_assert_eq(fy_channel_read_scalar(&b, &data, &len, 6), 1);
    cr_assert_eq(len, 6);
    cr_assert_eq(memcmp(data, "he\0llo", 7), 0, "NUL-terminated");
    free(data);
}

Test(channel, empty_scalar_round_trip)
{
    fy_channel_t a, b;
    fy_channel_init(&a, sv[0], 1000);
    fy_channel_init(&b, sv[1], 1000);
    cr_assert_eq(fy_channel_write_scalar(&a, NULL, 0), 0);
    char *data;
    size_t len;
    cr_assert_eq(fy_channel_read_scalar(&b, &data, &len, 0), 1);
    cr_assert_eq(len, 0);
    cr_assert_str_eq(data, "");
    free(data);
}

Test(channel, scalar_one_past_max_len_is_refused_unallocated)
{
    fy_channel_t a, b;
    fy_channel_init(&a, sv[0], 1000);
    fy_channel_init(&b, sv[1], 1000);
    cr_assert_eq(fy_channel_write_scalar(&a, "hello!", 6), 0);
    char *data;
    size_t len;
    cr_assert_eq(fy_channel_read_scalar(&b, &data, &len, 5), -EMSGSIZE);
    cr_assert_null(data);
}

Test(channel, eof_inside_a_scalar_at_every_offset_is_eproto)
{
    const uint8_t wire[] = {0, 0, 0, 3, 'a', 'b', 'c'};
    for (size_t cut = 1; cut < sizeof wire; cut++) {
        int pair[2];
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
        raw_write(pair[0], wire, cut);
        close(pair[0]);
        fy_channel_t b;
        fy_channel_init(&b, pair[1], 1000);
        char *data;
        size_t len;
        cr_assert_eq(fy_channel_read_scalar(&b, &data, &len, 10), -EPROTO, "cut=%zu", cut);
        cr_assert_null(data);
        close(pair[1]);
    }
}

Test(channel, scalar_eof_before_a_message_is_end_of_channel)
{
    close(sv[0]);
    sv[0] = -1;
    fy_channel_t b;
    fy_channel_init(&b, sv[1], 1000);
    char *data;
    size_t len;
    cr_assert_eq(fy_channel_read_scalar(&b, &data, &len, 10), 0);
}

Test(channel, fd_passing_round_trip)
{
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    fy_channel_t a, b;
    fy_channel_init(&a, sv[0], 1000);
    fy_channel_init(&b, sv[1], 1000);
    cr_assert_eq(fy_channel_send_fd(&a, p[1]), 0);
    close(p[1]);
    int got;
    cr_assert_eq(fy_channel_recv_fd(&b, &got), 1);
    cr_assert_geq(got, 0);
    cr_assert(fcntl(got, F_GETFD) & FD_CLOEXEC, "received fd is CLOEXEC");
    cr_assert_eq(write(got, "z", 1), 1, "the passed fd is the pipe's write end");
    char c;
    cr_assert_eq(read(p[0], &c, 1), 1);
    cr_assert_eq(c, 'z');
    close(got);
    close(p[0]);
}

Test(channel, message_then_fd_are_not_swallowed_by_read_ahead)
{
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    fy_channel_t a, b;
    fy_channel_init(&a, sv[0], 1000);
    fy_channel_init(&b, sv[1], 1000);
    cr_assert_eq(fy_channel_write_strings(&a, 2, "ready", "7"), 0);
    cr_assert_eq(fy_channel_send_fd(&a, p[1]), 0);
    cr_assert_eq(fy_channel_write_strings(&a, 1, "after"), 0);
    close(p[1]);
    fy_array_t msg;
    cr_assert_eq(fy_channel_read_array(&b, &msg), 1);
    cr_assert_str_eq(msg.items[0], "ready");
    fy_array_dispose(&msg);
    int got;
    cr_assert_eq(fy_channel_recv_fd(&b, &got), 1);
    cr_assert_eq(fy_channel_read_array(&b, &msg), 1);
    cr_assert_str_eq(msg.items[0], "after");
    fy_array_dispose(&msg);
    close(got);
    close(p[0]);
}

Test(channel, unexpected_fd_with_a_message_is_closed)
{
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    const uint8_t wire[] = {0x00, 0x03, 'h', 'i', 0};
    send_with_fds(sv[0], wire, sizeof wire, &p[1], 1);
    close(p[1]);
    int mid = open_fds();
    fy_channel_t b;
    fy_channel_init(&b, sv[1], 1000);
    fy_array_t msg;
    cr_assert_eq(fy_channel_read_array(&b, &msg), 1);
    cr_assert_str_eq(msg.items[0], "hi");
    fy_array_dispose(&msg);
    cr_assert_eq(open_fds(), mid, "the unexpected fd was received and closed");
    char c;
    cr_assert_eq(read(p[0], &c, 1), 0, "EOF: no copy of the write end is left open");
    close(p[0]);
}

Test(channel, unexpected_fd_with_a_scalar_is_closed)
{
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    const uint8_t wire[] = {0, 0, 0, 2, 'o', 'k'};
    send_with_fds(sv[0], wire, sizeof wire, p, 2);
    close(p[0]);
    close(p[1]);
    int mid = open_fds();
    fy_channel_t b;
    fy_channel_init(&b, sv[1], 1000);
    char *data;
    size_t len;
    cr_assert_eq(fy_channel_read_scalar(&b, &data, &len, 2), 1);
    cr_assert_str_eq(data, "ok");
    free(data);
    cr_assert_eq(open_fds(), mid, "both unexpected fds were received and closed");
}

Test(channel, recv_fd_without_an_fd_is_eproto)
{
    raw_write(sv[0], "F", 1);
    fy_channel_t b;
    fy_channel_init(&b, sv[1], 1000);
    int got;
    cr_assert_eq(fy_channel_recv_fd(&b, &got), -EPROTO);
    cr_assert_eq(got, -1);
}

Test(channel, recv_fd_with_two_fds_closes_both_and_is_eproto)
{
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    send_with_fds(sv[0], "F", 1, p, 2);
    close(p[0]);
    close(p[1]);
    int mid = open_fds();
    fy_channel_t b;
    fy_channel_init(&b, sv[1], 1000);
    int got;
    cr_assert_eq(fy_channel_recv_fd(&b, &got), -EPROTO);
    cr_assert_eq(got, -1);
    cr_assert_eq(open_fds(), mid);
}

Test(channel, recv_fd_at_eof_is_end_of_channel)
{
    close(sv[0]);
    sv[0] = -1;
    fy_channel_t b;
    fy_channel_init(&b, sv[1], 1000);
    int got;
    cr_assert_eq(fy_channel_recv_fd(&b, &got), 0);
}

Test(channel, recv_fd_times_out)
{
    fy_channel_t b;
    fy_channel_init(&b, sv[1], 50);
    int got;
    cr_assert_eq(fy_channel_recv_fd(&b, &got), -ETIMEDOUT);
}

Test(channel, bad_fd_is_an_error_value)
{
    fy_channel_t b;
    fy_channel_init(&b, 1000000, 50);
    fy_array_t msg;
    cr_assert_eq(fy_channel_read_array(&b, &msg), -EBADF);
    cr_assert_eq(fy_channel_write_strings(&b, 1, "x"), -EBADF);
}

static void on_alarm(int sig)
{
    (void)sig;
}

Test(channel, read_survives_eintr)
{
    struct sigaction sa = {.sa_handler = on_alarm};
    sigemptyset(&sa.sa_mask);
    cr_assert_eq(sigaction(SIGALRM, &sa, NULL), 0); /* no SA_RESTART: poll sees EINTR */
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        struct timespec ts = {0, 200 * 1000000};
        nanosleep(&ts, NULL);
        fy_channel_t a;
        fy_channel_init(&a, sv[0], 1000);
        _exit(fy_channel_write_strings(&a, 1, "late") == 0 ? 0 : 1);
    }
    ualarm(50 * 1000, 0);
    fy_channel_t b;
    fy_channel_init(&b, sv[1], 2000);
    fy_array_t msg;
    cr_assert_eq(fy_channel_read_array(&b, &msg), 1);
    cr_assert_str_eq(msg.items[0], "late");
    fy_array_dispose(&msg);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
