/* Logging for every ferry process: one line per event, "<time> [<level>] <module>: <text>".
 * Levels mean something: alert is a ferry bug, error lost a request or a worker, warn needs an
 * operator, notice is a state change, info, debug. Thread-safe (one write(2) per line). */
#ifndef FY_CORE_LOG_H
#define FY_CORE_LOG_H

#include <stdarg.h>

typedef enum fy_log_level {
    FY_LOG_ALERT = 0,
    FY_LOG_ERROR,
    FY_LOG_WARN,
    FY_LOG_NOTICE,
    FY_LOG_INFO,
    FY_LOG_DEBUG,
} fy_log_level_t;

/* Sets the most verbose level that is written (default FY_LOG_INFO). */
void fy_log_set_level(fy_log_level_t level);
fy_log_level_t fy_log_get_level(void);

/* Parses "alert".."debug" into <out>. Returns 0, or -EINVAL for an unknown name. */
int fy_log_parse_level(const char *name, fy_log_level_t *out);

/* Sends log lines to <fd> (default 2). Borrows <fd>. */
void fy_log_set_fd(int fd);
int fy_log_get_fd(void);

/* Writes one line at <level> for <module>. Lines longer than 8 KiB are truncated. */
void fy_log(fy_log_level_t level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void fy_logv(fy_log_level_t level, const char *module, const char *fmt, va_list ap);

/* Async-signal-safe: writes <msg> as one line with write(2) only, no timestamp formatting
 * beyond the level and module. For signal handlers and the child between fork and exec. */
void fy_log_sigsafe(fy_log_level_t level, const char *module, const char *msg);

const char *fy_log_level_name(fy_log_level_t level);

#endif
