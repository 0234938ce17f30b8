/* Thin wrappers over system calls that every module needs, so each is written once. */
#ifndef FY_CORE_SYS_H
#define FY_CORE_SYS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Writes all <len> bytes of <data> to <fd>, retrying short writes and EINTR. Returns 0 or a
 * negative errno. Async-signal-safe (write(2) only). Blocks if <fd> does: for files, pipes to
 * the log, and sockets where a hang is impossible; use the channel's deadline writes otherwise. */
int fy_write_all(int fd, const void *data, size_t len);

/* Writes <data> to <path> so that a reader sees the old file or the whole new one, never a part:
 * into <tmp_path> (created exclusively, not through a symlink, with <mode> whatever the umask),
 * then renamed over <path>. The temporary file never stays behind. Returns 0 or -errno. */
int fy_write_file_atomic(const char *path, const char *tmp_path, const void *data, size_t len,
                         mode_t mode);

/* Milliseconds of CLOCK_MONOTONIC: for deadlines and timeouts, never for wall-clock time. */
int64_t fy_monotonic_ms(void);

#endif
