/* The growable byte buffer of src/http. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "http/http_internal.h"

static void reserve(fy_http_buf_t *b, size_t extra)
{
    FY_ASSERT(extra <= SIZE_MAX / 2 - b->len);
    if (b->len + extra <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra)
        cap *= 2;
    b->data = fy_xrealloc(b->data, cap);
    b->cap = cap;
}

void fy_http_buf_reserve(fy_http_buf_t *b, size_t extra) { reserve(b, extra); }

void fy_http_buf_append(fy_http_buf_t *b, const void *data, size_t len)
{
    if (len == 0)
        return;
    reserve(b, len);
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

void fy_http_buf_append_str(fy_http_buf_t *b, const char *s)
{
    fy_http_buf_append(b, s, strlen(s));
}

/* Writes <v> in <base> (10 or 16, lower-case digits) into out, NUL-terminated. */
static size_t format_uint(char *out, uint64_t v, unsigned base)
{
    static const char digits[] = "0123456789abcdef";
    char rev[20];
    size_t n = 0;
    do {
        rev[n++] = digits[v % base];
        v /= base;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = rev[n - 1 - i];
    out[n] = '\0';
    return n;
}

size_t fy_http_format_u64(char *out, uint64_t v) { return format_uint(out, v, 10); }
size_t fy_http_format_hex(char *out, uint64_t v) { return format_uint(out, v, 16); }

void fy_http_buf_append_u64(fy_http_buf_t *b, uint64_t v)
{
    char text[21];
    fy_http_buf_append(b, text, fy_http_format_u64(text, v));
}

void fy_http_buf_appendf(fy_http_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    FY_ASSERT(n >= 0);
    if ((size_t)n < sizeof small) {
        fy_http_buf_append(b, small, (size_t)n);
        return;
    }
    reserve(b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void fy_http_buf_dispose(fy_http_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
