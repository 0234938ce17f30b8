/* Allocation helpers. fy_x* abort on out-of-memory: they are for small, fixed-size or already
 * bounded sizes. Sizes that come from input are checked against a limit before allocating. */
#ifndef FY_CORE_ALLOC_H
#define FY_CORE_ALLOC_H

#include <stddef.h>

void *fy_xmalloc(size_t size);
void *fy_xcalloc(size_t count, size_t size);
void *fy_xrealloc(void *ptr, size_t size);
char *fy_xstrdup(const char *s);
char *fy_xstrndup(const char *s, size_t len);
/* printf into a new heap string. */
char *fy_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Reports an impossible state and aborts. On in every build. */
#define FY_ASSERT(cond)                                                                        \
    do {                                                                                       \
        if (!(cond))                                                                           \
            fy_assert_fail(#cond, __FILE__, __LINE__);                                         \
    } while (0)

void fy_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));

#define FY_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
