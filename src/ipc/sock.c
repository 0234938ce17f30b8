/* Unix socket, fd and process helpers (see sock.h). */
#include "sock.h"
#include "core/sys.h"
#include "handshake.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define ABSTRACT_PREFIX "abstract:"
#define UNIX_PREFIX "unix:"

/* Most fds fy_close_fds_except keeps; the list is copied and sorted on the stack. */
#define KEEP_MAX 64

bool fy_abstract_sockets_enabled(void)
{
    const char *v = getenv(FY_HANDSHAKE_VAR_NO_ABSTRACT_SOCKETS);
    return !(v != NULL && strcmp(v, "1") == 0);
}

/* Fills <sa> and *<sa_len> from an "abstract:NAME" or "unix:PATH" address. Sets *<is_file>.
 * Returns 0, -EINVAL for an unknown scheme or an empty name, -ENAMETOOLONG past sun_path. */
static int parse_address(const char *address, struct sockaddr_un *sa, socklen_t *sa_len,
                         bool *is_file)
{
    if (address == NULL)
        return -EINVAL;
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    const char *name;
    size_t len;
    if (strncmp(address, ABSTRACT_PREFIX, strlen(ABSTRACT_PREFIX)) == 0) {
        name = address + strlen(ABSTRACT_PREFIX);
        len = strlen(name);
        if (len == 0)
            return -EINVAL;
        if (len + 1 > sizeof sa->sun_path)
            return -ENAMETOOLONG;
        memcpy(sa->sun_path + 1, name, len);
        *sa_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len);
        *is_file = false;
        return 0;
    }
    if (strncmp(address, UNIX_PREFIX, strlen(UNIX_PREFIX)) == 0) {
        name = address + strlen(UNIX_PREFIX);
        len = strlen(name);
        if (len == 0)
            return -EINVAL;
        if (len + 1 > sizeof sa->sun_path)
            return -ENAMETOOLONG;
        memcpy(sa->sun_path, name, len + 1);
        *sa_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
        *is_file = true;
        return 0;
    }
    return -EINVAL;
}

int fy_unix_listen(const char *address, int backlog)
{
    struct sockaddr_un sa;
    socklen_t sa_len;
    bool is_file;
    int rc = parse_address(address, &sa, &sa_len, &is_file);
    if (rc < 0)
        return rc;
    if (is_file) {
        /* Only a stale socket is replaced: a regular file of the same name is someone's data. */
        struct stat st;
        if (lstat(sa.sun_path, &st) == 0) {
            if (!S_ISSOCK(st.st_mode))
                return -EEXIST;
            if (unlink(sa.sun_path) == -1 && errno != ENOENT)
                return -errno;
        }
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    if (bind(fd, (struct sockaddr *)&sa, sa_len) == -1) {
        rc = -errno;
        close(fd);
        return rc;
    }
    if (is_file && chmod(sa.sun_path, 0600) == -1) {
        rc = -errno;
        unlink(sa.sun_path);
        close(fd);
        return rc;
    }
    if (listen(fd, backlog) == -1) {
        rc = -errno;
        if (is_file)
            unlink(sa.sun_path);
        close(fd);
        return rc;
    }
    return fd;
}

static void hex_encode(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0xf];
    }
    out[2 * len] = '\0';
}

int fy_unix_listen_auto(const char *dir, const char *name_prefix, int backlog, char *address_out)
{
    if (name_prefix == NULL || name_prefix[0] == '\0' || strchr(name_prefix, '/') != NULL ||
        address_out == NULL)
        return -EINVAL;
    uint8_t raw[8];
    char suffix[2 * sizeof raw + 1];
    int rc = fy_random_bytes(raw, sizeof raw);
    if (rc < 0)
        return rc;
    hex_encode(raw, sizeof raw, suffix);
    char address[FY_ADDRESS_MAX];
    int n;
    if (fy_abstract_sockets_enabled()) {
        n = snprintf(address, sizeof address, ABSTRACT_PREFIX "ferry.%s.%ld.%s", name_prefix,
                     (long)getpid(), suffix);
    } else {
        if (dir == NULL || dir[0] == '\0')
            return -EINVAL;
        n = snprintf(address, sizeof address, UNIX_PREFIX "%s/%s.%s.sock", dir, name_prefix,
                     suffix);
    }
    if (n < 0 || (size_t)n >= sizeof address)
        return -ENAMETOOLONG;
    int fd = fy_unix_listen(address, backlog);
    if (fd < 0)
        return fd;
    memcpy(address_out, address, (size_t)n + 1);
    return fd;
}

int fy_unix_connect(const char *address, int timeout_ms)
{
    struct sockaddr_un sa;
    socklen_t sa_len;
    bool is_file;
    int rc = parse_address(address, &sa, &sa_len, &is_file);
    if (rc < 0)
        return rc;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd == -1)
        return -errno;
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : fy_monotonic_ms() + timeout_ms;
    for (;;) {
        if (connect(fd, (struct sockaddr *)&sa, sa_len) == 0)
            break;
        int err = errno;
        if (err == EINTR)
            continue;
        int64_t left = deadline == INT64_MAX ? 10 : deadline - fy_monotonic_ms();
        if (err == EAGAIN) {
            /* A Unix socket with a full backlog: the kernel does not queue us, so retry. */
            if (left <= 0) {
                close(fd);
                return -ETIMEDOUT;
            }
            struct timespec pause = {0, (left < 10 ? left : 10) * 1000000L};
            nanosleep(&pause, NULL);
            continue;
        }
        if (err == EINPROGRESS) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int pr;
            do {
                int64_t wait = timeout_ms < 0 ? -1 : deadline - fy_monotonic_ms();
                pr = poll(&pfd, 1, timeout_ms < 0 ? -1 : (int)(wait > 0 ? wait : 0));
            } while (pr == -1 && errno == EINTR);
            if (pr == 0) {
                close(fd);
                return -ETIMEDOUT;
            }
            int so_error = 0;
            socklen_t so_len = sizeof so_error;
            if (pr == -1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &so_len) == -1)
                so_error = errno;
            if (so_error != 0) {
                close(fd);
                return -so_error;
            }
            break;
        }
        close(fd);
        return -err;
    }
    rc = fy_fd_set_nonblock(fd, false);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

int fy_unix_address_unlink(const char *address)
{
    struct sockaddr_un sa;
    socklen_t sa_len;
    bool is_file;
    int rc = parse_address(address, &sa, &sa_len, &is_file);
    if (rc < 0)
        return rc;
    if (!is_file)
        return 0;
    if (unlink(sa.sun_path) == -1)
        return -errno;
    return 0;
}

static bool extra_uid_set;
static uid_t extra_uid;

void fy_peer_allow_uid(uid_t uid)
{
    extra_uid = uid;
    extra_uid_set = true;
}

int fy_peer_check_uid(int fd, pid_t *peer_pid, uid_t *peer_uid)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1)
        return -errno;
    if (len != sizeof cred)
        return -EPROTO;
    if (peer_pid != NULL)
        *peer_pid = cred.pid;
    if (peer_uid != NULL)
        *peer_uid = cred.uid;
    if (cred.uid != getuid() && cred.uid != 0 && !(extra_uid_set && cred.uid == extra_uid))
        return -EPERM;
    return 0;
}

int fy_fd_set_cloexec(int fd)
{
    int flags = fcntl(fd, F_GETFD);
    if (flags == -1)
        return -errno;
    if (!(flags & FD_CLOEXEC) && fcntl(fd, F_SETFD, flags | FD_CLOEXEC) == -1)
        return -errno;
    return 0;
}

int fy_fd_set_nonblock(int fd, bool on)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags == -1)
        return -errno;
    int want = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
    if (want != flags && fcntl(fd, F_SETFL, want) == -1)
        return -errno;
    return 0;
}

/* Copies <keep> (only fds >= 3) into <sorted>, ascending and without duplicates. Returns the
 * count, or -EINVAL past KEEP_MAX. Async-signal-safe. */
static int sort_keep(const int *keep, size_t keep_count, int sorted[KEEP_MAX])
{
    if (keep_count > 0 && keep == NULL)
        return -EINVAL;
    int n = 0;
    for (size_t i = 0; i < keep_count; i++) {
        int fd = keep[i];
        if (fd < 3)
            continue;
        int j = n;
        bool dup = false;
        for (int k = 0; k < n; k++)
            if (sorted[k] == fd)
                dup = true;
        if (dup)
            continue;
        if (n == KEEP_MAX)
            return -EINVAL;
        while (j > 0 && sorted[j - 1] > fd) {
            sorted[j] = sorted[j - 1];
            j--;
        }
        sorted[j] = fd;
        n++;
    }
    return n;
}

static bool in_sorted(const int *sorted, int n, int fd)
{
    for (int i = 0; i < n; i++)
        if (sorted[i] == fd)
            return true;
    return false;
}

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* Parses a decimal fd name; -1 for anything else. */
static int parse_fd_name(const char *s)
{
    if (*s == '\0')
        return -1;
    long v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
        if (v > INT32_MAX)
            return -1;
    }
    return (int)v;
}

/* Closes by walking /proc/self/fd with getdents64 (no malloc: async-signal-safe); when /proc is
 * unavailable, tries every fd below RLIMIT_NOFILE. */
static int close_iterate(const int *sorted, int n)
{
    int dfd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd == -1) {
        struct rlimit rl;
        long max = 65536;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
            rl.rlim_cur < (rlim_t)max)
            max = (long)rl.rlim_cur;
        for (int fd = 3; fd < max; fd++)
            if (!in_sorted(sorted, n, fd))
                close(fd);
        return 0;
    }
    /* Closing while listing can make the kernel skip entries; list again until a pass closes
     * nothing. */
    bool closed_any;
    do {
        closed_any = false;
        if (lseek(dfd, 0, SEEK_SET) == -1) {
            int rc = -errno;
            close(dfd);
            return rc;
        }
        char buf[4096] __attribute__((aligned(8)));
        for (;;) {
            long got = syscall(SYS_getdents64, dfd, buf, sizeof buf);
            if (got == -1) {
                int rc = -errno;
                close(dfd);
                return rc;
            }
            if (got == 0)
                break;
            for (long off = 0; off < got;) {
                struct linux_dirent64 *d = (struct linux_dirent64 *)(void *)(buf + off);
                off += d->d_reclen;
                int fd = parse_fd_name(d->d_name);
                if (fd < 3 || fd == dfd || in_sorted(sorted, n, fd))
                    continue;
                close(fd);
                closed_any = true;
            }
        }
    } while (closed_any);
    close(dfd);
    return 0;
}

int fy_close_fds_except_iterate(const int *keep, size_t keep_count)
{
    int sorted[KEEP_MAX];
    int n = sort_keep(keep, keep_count, sorted);
    if (n < 0)
        return n;
    return close_iterate(sorted, n);
}

int fy_close_fds_except(const int *keep, size_t keep_count)
{
    int sorted[KEEP_MAX];
    int n = sort_keep(keep, keep_count, sorted);
    if (n < 0)
        return n;
#ifdef FY_HAVE_CLOSE_RANGE
    unsigned lo = 3;
    int i;
    for (i = 0; i < n; i++) {
        unsigned k = (unsigned)sorted[i];
        if (k > lo && close_range(lo, k - 1, 0) == -1)
            break;
        lo = k + 1;
    }
    if (i == n && close_range(lo, ~0u, 0) == 0)
        return 0;
        /* close_range refused (ENOSYS on an old kernel): the portable way closes what is left. */
#endif
    return close_iterate(sorted, n);
}

int fy_count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -errno;
    int own = dirfd(d);
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int fd = parse_fd_name(e->d_name);
        if (fd >= 0 && fd != own)
            count++;
    }
    closedir(d);
    return count;
}

int fy_owner_pipe_open(int fds[2])
{
    if (pipe2(fds, O_CLOEXEC) == -1)
        return -errno;
    return 0;
}

int fy_random_bytes(void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int fy_secret_generate(char out[FY_SECRET_HEX_LEN + 1])
{
    uint8_t raw[FY_SECRET_HEX_LEN / 2];
    int rc = fy_random_bytes(raw, sizeof raw);
    if (rc < 0)
        return rc;
    hex_encode(raw, sizeof raw, out);
    return 0;
}

bool fy_secret_equal(const char *a, size_t a_len, const char *b, size_t b_len)
{
    /* Every byte of <b> is visited whatever <a> holds; a shorter <a> is read as zeros past its
     * end (through a mask, not a branch on the data), and the length difference is folded in. */
    volatile unsigned char diff = (unsigned char)((a_len ^ b_len) != 0);
    for (size_t i = 0; i < b_len; i++) {
        size_t in_a = (size_t)0 - (size_t)(i < a_len); /* all ones when i < a_len */
        size_t ai = i & in_a;
        unsigned char ac = a_len > 0 ? (unsigned char)(a[ai] & (unsigned char)in_a) : 0;
        diff |= (unsigned char)(ac ^ (unsigned char)b[i]);
    }
    return diff == 0;
}

void fy_random_reseed_libc(void)
{
    unsigned short seed48v[3];
    unsigned seed;
    if (fy_random_bytes(&seed, sizeof seed) < 0 || fy_random_bytes(seed48v, sizeof seed48v) < 0) {
        seed = (unsigned)getpid() ^ (unsigned)fy_monotonic_ms();
        seed48v[0] = (unsigned short)seed;
        seed48v[1] = (unsigned short)(seed >> 16);
        seed48v[2] = (unsigned short)getpid();
    }
    srandom(seed);
    srand(seed);
    seed48(seed48v);
}

void fy_signals_reset_all(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        sigaction(sig, &sa, NULL); /* EINVAL for the C library's reserved signals: fine */
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}
