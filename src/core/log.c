#include "log.h"
#include "sys.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static fy_log_level_t current_level = FY_LOG_INFO;
static int log_fd = 2;

static const char *const level_names[] = {"alert", "error", "warn", "notice", "info", "debug"};

void fy_log_set_level(fy_log_level_t level) { current_level = level; }
fy_log_level_t fy_log_get_level(void) { return current_level; }
void fy_log_set_fd(int fd) { log_fd = fd; }
int fy_log_get_fd(void) { return log_fd; }

const char *fy_log_level_name(fy_log_level_t level)
{
    if ((unsigned)level > FY_LOG_DEBUG)
        return "?";
    return level_names[level];
}

int fy_log_parse_level(const char *name, fy_log_level_t *out)
{
    for (unsigned i = 0; i <= FY_LOG_DEBUG; i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            *out = (fy_log_level_t)i;
            return 0;
        }
    }
    return -EINVAL;
}

void fy_logv(fy_log_level_t level, const char *module, const char *fmt, va_list ap)
{
    if (level > current_level)
        return;
    int saved_errno = errno;
    char line[8192];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ [%s] %s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (int)(tv.tv_usec / 1000), fy_log_level_name(level), module);
    if (n < 0)
        n = 0;
    size_t used = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    int m = vsnprintf(line + used, sizeof line - used, fmt, ap);
    if (m > 0)
        used += (size_t)m < sizeof line - used ? (size_t)m : sizeof line - used - 1;
    if (used >= sizeof line - 1)
        used = sizeof line - 2;
    line[used++] = '\n';
    (void)fy_write_all(log_fd, line, used);
    errno = saved_errno;
}

void fy_log(fy_log_level_t level, const char *module, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fy_logv(level, module, fmt, ap);
    va_end(ap);
}

void fy_log_sigsafe(fy_log_level_t level, const char *module, const char *msg)
{
    if (level > current_level)
        return;
    char line[1024];
    size_t used = 0;
    const char *parts[] = {"[", fy_log_level_name(level), "] ", module, ": ", msg};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        size_t len = strlen(parts[i]);
        if (len > sizeof line - 1 - used)
            len = sizeof line - 1 - used;
        memcpy(line + used, parts[i], len);
        used += len;
    }
    line[used++] = '\n';
    (void)fy_write_all(log_fd, line, used);
}
