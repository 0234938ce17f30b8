/* Blocking MessageChannel over a file descriptor. See channel.h and docs/protocol.md.
 *
 * Every call has one deadline (now + timeout_ms) for the whole message; each wait is a poll()
 * with the time left, retried on EINTR. Sockets are read with recvmsg() and a control buffer so
 * that any fd the peer attaches is received and closed rather than silently left in flight;
 * sockets are written with MSG_NOSIGNAL|MSG_DONTWAIT, so a closed peer is -EPIPE, never SIGPIPE,
 * and a write never blocks past the deadline. Pipes and other non-sockets fall back to
 * read()/write(), with SIGPIPE blocked for the duration of the write and writes of at most
 * PIPE_BUF bytes after each poll (so a blocking pipe cannot block past the deadline either). */
#include "channel.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/sys.h"

/* Room for more fds than a well-behaved peer ever sends, so extras are received and closed
 * (whatever does not fit is dropped and closed by the kernel: MSG_CTRUNC). */
#define MAX_FDS_PER_READ 16

void fy_channel_init(fy_channel_t *ch, int fd, int timeout_ms)
{
    ch->fd = fd;
    ch->timeout_ms = timeout_ms;
}

static int64_t deadline_of(const fy_channel_t *ch)
{
    return ch->timeout_ms < 0 ? -1 : fy_monotonic_ms() + ch->timeout_ms;
}

/* Waits until <fd> is ready for <events> or the deadline passes. Returns 0 or -ETIMEDOUT or a
 * negative errno. POLLHUP/POLLERR count as ready: the following read or write reports them. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int timeout = -1;
        if (deadline >= 0) {
            int64_t left = deadline - fy_monotonic_ms();
            if (left < 0)
                left = 0;
            timeout = left > INT_MAX ? INT_MAX : (int)left;
        }
        struct pollfd pfd = {.fd = fd, .events = events};
        int n = poll(&pfd, 1, timeout);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -ETIMEDOUT;
        if (pfd.revents & POLLNVAL)
            return -EBADF;
        return 0;
    }
}

/* Closes every fd carried in <msg>'s control data. Returns how many there were. */
static int close_passed_fds(struct msghdr *msg)
{
    int closed = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            close(fd);
            closed++;
        }
    }
    return closed;
}

/* One read of at most <len> bytes. Returns the byte count, 0 at EOF, or a negative errno
 * (-EAGAIN: nothing yet). Closes any fd attached to the bytes. */
static ssize_t read_once(int fd, void *buf, size_t len)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * MAX_FDS_PER_READ)];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr msg = {
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = control.buf,
        .msg_controllen = sizeof control.buf,
    };
    ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n == -1 && errno == ENOTSOCK) {
        n = read(fd, buf, len);
        if (n == -1)
            return -errno;
        return n;
    }
    if (n == -1)
        return -errno;
    int closed = close_passed_fds(&msg);
    if (closed > 0 || (msg.msg_flags & MSG_CTRUNC))
        fy_log(FY_LOG_WARN, "ipc", "fd=%d fds=%d: unexpected file descriptor received and closed",
               fd, closed);
    return n;
}

/* Reads exactly <len> bytes. Returns 1, 0 when EOF came before the first byte, -EPROTO when EOF
 * came after it (<started>: bytes of this message were read by earlier calls), -ETIMEDOUT. */
static int read_exact(int fd, void *buf, size_t len, int64_t deadline, bool started)
{
    size_t got = 0;
    while (got < len) {
        int rc = wait_fd(fd, POLLIN, deadline);
        if (rc < 0)
            return rc;
        ssize_t n = read_once(fd, (char *)buf + got, len - got);
        if (n == -EAGAIN || n == -EINTR || n == -EWOULDBLOCK)
            continue;
        if (n < 0)
            return (int)n;
        if (n == 0)
            return (started || got > 0) ? -EPROTO : 0;
        got += (size_t)n;
    }
    return 1;
}

/* Blocks SIGPIPE in this thread while writing to a non-socket; a SIGPIPE our write raised is
 * consumed afterwards, so the process never dies of it. */
static ssize_t write_pipe(int fd, const void *buf, size_t len)
{
    sigset_t pipe_set, old_set, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE);
    ssize_t n = write(fd, buf, len < PIPE_BUF ? len : PIPE_BUF);
    int saved = errno;
    if (n == -1 && saved == EPIPE && !was_pending) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) == -1 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old_set, NULL);
    errno = saved;
    return n;
}

static int write_all(int fd, const void *buf, size_t len, int64_t deadline)
{
    size_t done = 0;
    while (done < len) {
        int rc = wait_fd(fd, POLLOUT, deadline);
        if (rc < 0)
            return rc;
        const char *p = (const char *)buf + done;
        ssize_t n = send(fd, p, len - done, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == -1 && errno == ENOTSOCK)
            n = write_pipe(fd, p, len - done);
        if (n == -1) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            return errno == ECONNRESET ? -EPIPE : -errno;
        }
        done += (size_t)n;
    }
    return 0;
}

int fy_channel_write_array(fy_channel_t *ch, const char *const *items, const size_t *lens,
                           size_t count)
{
    ssize_t wire_len = fy_array_encoded_len(items, lens, count);
    if (wire_len < 0)
        return (int)wire_len;
    /* Bounded by FY_ARRAY_MAX_PAYLOAD + 2. */
    uint8_t *wire = fy_xmalloc((size_t)wire_len);
    ssize_t n = fy_array_encode(items, lens, count, wire, (size_t)wire_len);
    FY_ASSERT(n == wire_len);
    int rc = write_all(ch->fd, wire, (size_t)wire_len, deadline_of(ch));
    free(wire);
    return rc;
}

int fy_channel_write_strings(fy_channel_t *ch, size_t count, ...)
{
    if (count == 0 || count > FY_ARRAY_MAX_PAYLOAD)
        return count == 0 ? -EINVAL : -EMSGSIZE;
    const char **items = fy_xcalloc(count, sizeof *items);
    va_list ap;
    va_start(ap, count);
    for (size_t i = 0; i < count; i++)
        items[i] = va_arg(ap, const char *);
    va_end(ap);
    int rc = fy_channel_write_array(ch, items, NULL, count);
    free(items);
    return rc;
}

/* Drives <p> from the fd, asking for exactly the bytes it wants, until a message is complete. */
static int read_message(fy_channel_t *ch, fy_msgparser_t *p)
{
    int64_t deadline = deadline_of(ch);
    uint8_t chunk[16384];
    bool started = false;
    for (;;) {
        size_t want = fy_msgparser_wanted(p);
        if (want > sizeof chunk)
            want = sizeof chunk;
        int rc = read_exact(ch->fd, chunk, want, deadline, started);
        if (rc <= 0)
            return rc;
        started = true;
        size_t consumed;
        rc = fy_msgparser_feed(p, chunk, want, &consumed);
        if (rc != -EAGAIN)
            return rc;
        FY_ASSERT(consumed == want);
    }
}

int fy_channel_read_array(fy_channel_t *ch, fy_array_t *msg)
{
    memset(msg, 0, sizeof *msg);
    fy_msgparser_t p;
    fy_msgparser_init(&p);
    int rc = read_message(ch, &p);
    if (rc == 1)
        fy_msgparser_take_array(&p, msg);
    fy_msgparser_dispose(&p);
    return rc;
}

int fy_channel_write_scalar(fy_channel_t *ch, const void *data, size_t len)
{
    if (len > UINT32_MAX)
        return -EMSGSIZE;
    uint8_t header[4];
    fy_scalar_encode_header(header, (uint32_t)len);
    int64_t deadline = deadline_of(ch);
    int rc = write_all(ch->fd, header, sizeof header, deadline);
    if (rc == 0 && len > 0)
        rc = write_all(ch->fd, data, len, deadline);
    return rc;
}

int fy_channel_read_scalar(fy_channel_t *ch, char **data, size_t *len, size_t max_len)
{
    *data = NULL;
    *len = 0;
    fy_msgparser_t p;
    fy_msgparser_init(&p);
    fy_msgparser_expect(&p, FY_MSG_SCALAR, max_len);
    int rc = read_message(ch, &p);
    if (rc == 1)
        fy_msgparser_take_scalar(&p, data, len);
    fy_msgparser_dispose(&p);
    return rc;
}

int fy_channel_send_fd(fy_channel_t *ch, int fd)
{
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof control);
    char byte = 'F';
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr msg = {
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = control.buf,
        .msg_controllen = sizeof control.buf,
    };
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    int64_t deadline = deadline_of(ch);
    for (;;) {
        int rc = wait_fd(ch->fd, POLLOUT, deadline);
        if (rc < 0)
            return rc;
        ssize_t n = sendmsg(ch->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == 1)
            return 0;
        if (n == -1 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (n == -1)
            return errno == ECONNRESET ? -EPIPE : -errno;
        return -EIO;
    }
}

int fy_channel_recv_fd(fy_channel_t *ch, int *fd)
{
    *fd = -1;
    int64_t deadline = deadline_of(ch);
    for (;;) {
        int rc = wait_fd(ch->fd, POLLIN, deadline);
        if (rc < 0)
            return rc;
        union {
            char buf[CMSG_SPACE(sizeof(int) * MAX_FDS_PER_READ)];
            struct cmsghdr align;
        } control;
        char byte;
        struct iovec iov = {.iov_base = &byte, .iov_len = 1};
        struct msghdr msg = {
            .msg_iov = &iov,
            .msg_iovlen = 1,
            .msg_control = control.buf,
            .msg_controllen = sizeof control.buf,
        };
        ssize_t n = recvmsg(ch->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n == -1 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (n == -1)
            return -errno;
        if (n == 0) {
            close_passed_fds(&msg);
            return 0;
        }
        /* Exactly one fd in one SCM_RIGHTS message, nothing truncated: anything else is a
         * protocol error and every fd that came is closed. */
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        if (!(msg.msg_flags & MSG_CTRUNC) && c != NULL && c->cmsg_level == SOL_SOCKET &&
            c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)) &&
            CMSG_NXTHDR(&msg, c) == NULL) {
            memcpy(fd, CMSG_DATA(c), sizeof *fd);
            return 1;
        }
        int closed = close_passed_fds(&msg);
        fy_log(FY_LOG_WARN, "ipc", "fd=%d fds=%d: expected exactly one passed fd", ch->fd,
               closed);
        return -EPROTO;
    }
}
