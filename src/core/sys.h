/* Thin wrappers over system calls that every module needs, so each is written once. */
#ifndef FY_CORE_SYS_H
#define FY_CORE_SYS_H

#include <stddef.h>
#include <stdint.h>

/* Writes all <len> bytes of <data> to <fd>, retrying short writes and EINTR. Returns 0 or a
 * negative errno. Async-signal-safe (write(2) only). Blocks if <fd> does: for files, pipes to
 * the log, and sockets where a hang is impossible; use the channel's deadline writes otherwise. */
int fy_write_all(int fd, const void *data, size_t len);

/* Milliseconds of CLOCK_MONOTONIC: for deadlines and timeouts, never for wall-clock time. */
int64_t fy_monotonic_ms(void);

#endif
