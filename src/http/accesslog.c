/* The access log: the combined format plus the request time in seconds, e.g.
 * 127.0.0.1 - - [01/May/2025:12:00:03 +0000] "GET / HTTP/1.1" 200 12 "-" "curl/7.88" 0.002 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http/http_conn.h"

/* Appends <s> (<len> bytes) with quotes, backslashes and control bytes escaped as \xHH. */
static void append_escaped(fy_http_buf_t *out, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\' || ch < 0x20 || ch >= 0x7f)
            fy_http_buf_appendf(out, "\\x%02X", ch);
        else
            fy_http_buf_append(out, &s[i], 1);
    }
}

static void append_header(fy_http_buf_t *out, const fy_http_request_t *req, const char *name)
{
    size_t len;
    const char *v = req->method ? fy_http_request_header(req, name, &len) : NULL;
    fy_http_buf_append(out, "\"", 1);
    if (v == NULL)
        fy_http_buf_append(out, "-", 1);
    else
        append_escaped(out, v, len);
    fy_http_buf_append(out, "\"", 1);
}

void fy_http_access_log(const fy_http_conn_t *c, uint64_t now_ms)
{
    int fd = c->srv->opts.access_log_fd;
    if (fd < 0)
        return;
    const fy_http_request_t *req = &c->req;
    fy_http_buf_t line = {0};
    char when[64];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(when, sizeof when, "%d/%b/%Y:%H:%M:%S %z", &tm);
    fy_http_buf_appendf(&line, "%s - - [%s] \"", c->remote_addr, when);
    if (req->method != NULL) {
        fy_http_buf_appendf(&line, "%s ", req->method);
        append_escaped(&line, fy_http_request_url(req), req->url_len);
        fy_http_buf_appendf(&line, " HTTP/%u.%u", req->http_major, req->http_minor);
    } else {
        fy_http_buf_append(&line, "-", 1);
    }
    uint64_t bytes = c->body_sent;
    if (c->status != 0 && !c->head_done) {
        /* the front's own page: count its body */
        const char *sep = c->out.data ? memmem(c->out.data, c->out.len, "\r\n\r\n", 4) : NULL;
        bytes = sep ? c->out.len - (size_t)(sep + 4 - c->out.data) : 0;
    }
    fy_http_buf_appendf(&line, "\" %d %llu ", c->status ? c->status : 0, (unsigned long long)bytes);
    append_header(&line, req, "referer");
    fy_http_buf_append(&line, " ", 1);
    append_header(&line, req, "user-agent");
    uint64_t started = c->started_ms ? c->started_ms : now_ms;
    fy_http_buf_appendf(&line, " %.3f\n", (double)(now_ms - started) / 1000.0);
    ssize_t n = write(fd, line.data, line.len);
    (void)n;
    fy_http_buf_dispose(&line);
}
