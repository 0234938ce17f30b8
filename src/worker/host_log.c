/* The log lines of a language host (src/worker/host.h): key=value fields and a traceback or
 * backtrace under its line. One copy for the WSGI and Rack extensions, so the two log alike. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/sys.h"
#include "worker/host.h"

static bool needs_quotes(const char *v)
{
    if (*v == '\0')
        return true;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p <= ' ' || *p == '=' || *p == '"' || *p == 0x7f)
            return true;
    }
    return false;
}

static void put(char *buf, size_t cap, size_t *len, const char *s, size_t n)
{
    if (*len + 1 >= cap)
        return;
    if (n > cap - 1 - *len)
        n = cap - 1 - *len;
    memcpy(buf + *len, s, n);
    *len += n;
    buf[*len] = '\0';
}

void fy_worker_host_log_field(char *buf, size_t cap, const char *key, const char *value)
{
    size_t len = strlen(buf);
    put(buf, cap, &len, " ", 1);
    put(buf, cap, &len, key, strlen(key));
    put(buf, cap, &len, "=", 1);
    if (!needs_quotes(value)) {
        put(buf, cap, &len, value, strlen(value));
        return;
    }
    put(buf, cap, &len, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        char esc[8];
        const char *named = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n"
                            : *p == '\r' ? "\\r" : *p == '\t' ? "\\t" : NULL;
        if (named != NULL) {
            put(buf, cap, &len, named, 2);
        } else if (*p < 0x20 || *p == 0x7f) {
            snprintf(esc, sizeof esc, "\\x%02x", *p);
            put(buf, cap, &len, esc, 4);
        } else {
            put(buf, cap, &len, (const char *)p, 1);
        }
    }
    put(buf, cap, &len, "\"", 1);
}

/* <detail> with each line indented by four spaces and ended by "\n": a heap string. */
static char *indented(const char *detail, size_t *out_len)
{
    size_t n = strlen(detail);
    while (n > 0 && detail[n - 1] == '\n')
        n--;
    size_t lines = 1;
    for (size_t i = 0; i < n; i++)
        lines += detail[i] == '\n';
    char *out = fy_xmalloc(n + lines * 4 + 2);
    size_t len = 0;
    memcpy(out, "    ", 4);
    len = 4;
    for (size_t i = 0; i < n; i++) {
        out[len++] = detail[i];
        if (detail[i] == '\n') {
            memcpy(out + len, "    ", 4);
            len += 4;
        }
    }
    out[len++] = '\n';
    out[len] = '\0';
    *out_len = len;
    return out;
}

void fy_worker_host_log(int level, const char *component, const char *fields,
                        const char *message, const char *detail)
{
    fy_log_level_t lvl = (fy_log_level_t)level;
    if (lvl > fy_log_get_level())
        return;
    if (detail == NULL || *detail == '\0') {
        fy_log(lvl, component, "pid=%d%s: %s", (int)getpid(), fields, message);
        return;
    }
    size_t dlen;
    char *text = indented(detail, &dlen);
    /* One write for the line and its detail when it fits the log's line buffer (8 KiB), so
     * nothing interleaves; a longer one follows in a write of its own. */
    if (strlen(fields) + strlen(message) + dlen < 7900) {
        text[dlen - 1] = '\0'; /* fy_log ends the line */
        fy_log(lvl, component, "pid=%d%s: %s\n%s", (int)getpid(), fields, message, text);
    } else {
        fy_log(lvl, component, "pid=%d%s: %s", (int)getpid(), fields, message);
        (void)fy_write_all(fy_log_get_fd(), text, dlen);
    }
    free(text);
}
