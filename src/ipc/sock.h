/* Unix socket, fd and process helpers shared by every component. Every fd opened here has
 * FD_CLOEXEC set. Addresses are strings, as in the spawn handshake: "abstract:NAME" (Linux
 * abstract namespace, no file) or "unix:PATH" (a socket file). */
#ifndef FY_IPC_SOCK_H
#define FY_IPC_SOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define FY_ADDRESS_MAX 128

/* False when FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS=1 is set in the environment. */
bool fy_abstract_sockets_enabled(void);

/* Listens on <address> with <backlog>. For "unix:PATH" a stale socket file at PATH is replaced
 * (any other kind of file is left alone: -EEXIST) and the file is made mode 0600. Returns the
 * listening fd, or a negative errno (-EINVAL bad address, -ENAMETOOLONG path too long for
 * sun_path). */
int fy_unix_listen(const char *address, int backlog);

/* Picks a fresh address for <name_prefix> and listens on it: abstract when enabled
 * ("abstract:ferry.<prefix>.<pid>.<16 hex>"), else a socket file in <dir>
 * ("unix:<dir>/<prefix>.<16 hex>.sock"). Writes the address into <address_out> (FY_ADDRESS_MAX
 * bytes). Returns the fd or a negative errno: -EINVAL for an empty <name_prefix>, one holding '/',
 * or a NULL <dir> when the file fallback is needed; -ENAMETOOLONG when the address does not fit. */
int fy_unix_listen_auto(const char *dir, const char *name_prefix, int backlog, char *address_out);

/* Connects to <address>, waiting at most <timeout_ms>. Returns the fd or a negative errno. */
int fy_unix_connect(const char *address, int timeout_ms);

/* Removes the socket file behind a "unix:" address; no-op for abstract. Returns 0 or -errno. */
int fy_unix_address_unlink(const char *address);

/* Peer credentials: returns 0 when the peer of <fd> runs as our uid or as root, -EPERM otherwise,
 * or another negative errno. Sets *peer_pid and *peer_uid when not NULL. */
int fy_peer_check_uid(int fd, pid_t *peer_pid, uid_t *peer_uid);

/* Lets fy_peer_check_uid accept <uid> too: the app's user when a root core runs its workers as
 * that user (docs/deploying.md, "Users"), so `ferry status` works for both. Once, before any
 * connection; not thread-safe. */
void fy_peer_allow_uid(uid_t uid);

int fy_fd_set_cloexec(int fd);
int fy_fd_set_nonblock(int fd, bool on);

/* Closes every fd >= 3 except those in <keep> (close_range where available, else /proc/self/fd).
 * For the child after fork. Async-signal-safe (no malloc on either path). <keep> holds at most 64
 * distinct fds; entries < 3 are ignored. Returns 0, -EINVAL past 64, or another negative errno. */
int fy_close_fds_except(const int *keep, size_t keep_count);

/* The portable path of fy_close_fds_except, also its fallback when close_range fails: walks the
 * fd directory of /proc with getdents64 (no malloc, async-signal-safe), or tries every fd below
 * RLIMIT_NOFILE when /proc is missing. <keep> holds at most 64 distinct fds >= 3 (-EINVAL past
 * that); fds 0-2 are always kept. Returns 0 or a negative errno. */
int fy_close_fds_except_iterate(const int *keep, size_t keep_count);

/* Number of open fds of this process (counts /proc/self/fd), for leak tests. */
int fy_count_open_fds(void);

/* Owner pipe: fds[0] read end (the child watches it), fds[1] write end (the owner holds it).
 * Both CLOEXEC. Returns 0 or a negative errno. */
int fy_owner_pipe_open(int fds[2]);

/* Random secret: 16 bytes from getrandom as 32 lowercase hex digits + NUL. Returns 0 or -errno. */
#define FY_SECRET_HEX_LEN 32
int fy_secret_generate(char out[FY_SECRET_HEX_LEN + 1]);
/* Fills <buf> with <len> random bytes from getrandom. */
int fy_random_bytes(void *buf, size_t len);

/* After a fork: reseeds the C library's generators (srandom, srand, seed48) from getrandom, so
 * that children of one parent never repeat each other's sequences. */
void fy_random_reseed_libc(void);

/* After a fork: every signal disposition back to SIG_DFL (SIGKILL and SIGSTOP aside) and the
 * signal mask cleared. */
void fy_signals_reset_all(void);

/* Constant-time comparison: the time depends only on <b_len> (the secret), not on where the
 * inputs differ. True when equal. */
bool fy_secret_equal(const char *a, size_t a_len, const char *b, size_t b_len);

#endif
