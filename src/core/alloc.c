#include "alloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static void oom(size_t size) __attribute__((noreturn));
static void oom(size_t size)
{
    fy_log(FY_LOG_ALERT, "alloc", "size=%zu: out of memory", size);
    abort();
}

void *fy_xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (p == NULL)
        oom(size);
    return p;
}

void *fy_xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (p == NULL)
        oom(count * size);
    return p;
}

void *fy_xrealloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size ? size : 1);
    if (p == NULL)
        oom(size);
    return p;
}

char *fy_xstrdup(const char *s)
{
    return fy_xstrndup(s, strlen(s));
}

char *fy_xstrndup(const char *s, size_t len)
{
    char *p = fy_xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *fy_xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *out = NULL;
    int n = vasprintf(&out, fmt, ap);
    va_end(ap);
    if (n < 0)
        oom(0);
    return out;
}

void fy_assert_fail(const char *expr, const char *file, int line)
{
    fy_log(FY_LOG_ALERT, "assert", "%s:%d: assertion failed: %s", file, line, expr);
    abort();
}
