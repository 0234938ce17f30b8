/* The access log (docs/operations.md, "The access log"), one line per request in one of two
 * formats:
 * combined: the combined format plus the request time in seconds and the request id, e.g.
 *   127.0.0.1 - - [01/May/2025:12:00:03 +0000] "GET / HTTP/1.1" 200 12 "-" "curl/7.88" 0.002 4f…
 * json: one object per line with the same fields, the worker's pid and the request's timeline. */
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
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

/* Appends <s> as a JSON string: quotes and backslashes escaped, every byte outside printable
 * ASCII as \u00XX, so the line is valid JSON whatever the client sent. */
static void append_json(fy_http_buf_t *out, const char *s, size_t len)
{
    fy_http_buf_append(out, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            char esc[2] = {'\\', (char)ch};
            fy_http_buf_append(out, esc, 2);
        } else if (ch < 0x20 || ch >= 0x7f) {
            fy_http_buf_appendf(out, "\\u%04x", ch);
        } else {
            fy_http_buf_append(out, &s[i], 1);
        }
    }
    fy_http_buf_append(out, "\"", 1);
}

static const char *header_value(const fy_http_request_t *req, const char *name, size_t *len)
{
    return req->method ? fy_http_request_header(req, name, len) : NULL;
}

static void append_header(fy_http_buf_t *out, const fy_http_request_t *req, const char *name)
{
    size_t len;
    const char *v = header_value(req, name, &len);
    fy_http_buf_append(out, "\"", 1);
    if (v == NULL)
        fy_http_buf_append(out, "-", 1);
    else
        append_escaped(out, v, len);
    fy_http_buf_append(out, "\"", 1);
}

static void json_header(fy_http_buf_t *out, const fy_http_request_t *req, const char *key,
                        const char *name)
{
    size_t len;
    const char *v = header_value(req, name, &len);
    fy_http_buf_appendf(out, ",\"%s\":", key);
    if (v == NULL)
        fy_http_buf_append(out, "null", 4);
    else
        append_json(out, v, len);
}

uint64_t fy_http_conn_response_bytes(const fy_http_conn_t *c)
{
    if (c->status == 0 || c->head_done)
        return c->body_sent;
    /* the front's own page: count its body */
    const char *sep = c->out.data ? memmem(c->out.data, c->out.len, "\r\n\r\n", 4) : NULL;
    return sep ? c->out.len - (size_t)(sep + 4 - c->out.data) : 0;
}

static void json_line(const fy_http_conn_t *c, uint64_t now_ms, fy_http_buf_t *line)
{
    const fy_http_request_t *req = &c->req;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char when[40];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    fy_http_buf_appendf(line, "{\"time\":\"%s.%03dZ\",\"remote_addr\":", when,
                        (int)(tv.tv_usec / 1000));
    append_json(line, c->remote_addr, strlen(c->remote_addr));
    if (req->method != NULL) {
        fy_http_buf_appendf(line, ",\"method\":\"%s\",\"uri\":", req->method);
        append_json(line, fy_http_request_url(req), req->url_len);
        fy_http_buf_appendf(line, ",\"protocol\":\"HTTP/%u.%u\"", req->http_major,
                            req->http_minor);
    } else {
        fy_http_buf_append_str(line, ",\"method\":null,\"uri\":null,\"protocol\":null");
    }
    fy_http_buf_appendf(line, ",\"status\":%d,\"bytes\":%llu", c->status,
                        (unsigned long long)fy_http_conn_response_bytes(c));
    json_header(line, req, "referer", "referer");
    json_header(line, req, "user_agent", "user-agent");
    uint64_t started = c->started_ms ? c->started_ms : now_ms;
    fy_http_buf_appendf(line, ",\"request_time\":%.3f,\"request_id\":", (double)(now_ms - started) / 1000.0);
    if (c->request_id[0] != '\0')
        append_json(line, c->request_id, strlen(c->request_id));
    else
        fy_http_buf_append(line, "null", 4);
    fy_http_timeline_t t;
    fy_http_conn_timeline(c, now_ms, &t);
    fy_http_buf_appendf(line,
                        ",\"worker_pid\":%d,\"reason\":\"%s\",\"timeline\":{\"connect_ms\":%llu,"
                        "\"head_ms\":%llu,\"body_ms\":%llu,\"queue_ms\":%llu,\"app_ms\":%llu,"
                        "\"send_ms\":%llu,\"total_ms\":%llu}}\n",
                        c->worker_pid, fy_http_why_label((fy_http_why_t)c->why),
                        (unsigned long long)t.connect_ms, (unsigned long long)t.head_ms,
                        (unsigned long long)t.body_ms, (unsigned long long)t.queue_ms,
                        (unsigned long long)t.app_ms, (unsigned long long)t.send_ms,
                        (unsigned long long)t.total_ms);
}

void fy_http_access_log(const fy_http_conn_t *c, uint64_t now_ms)
{
    int fd = c->srv->opts.access_log_fd;
    if (fd < 0)
        return;
    const fy_http_request_t *req = &c->req;
    fy_http_buf_t line = {0};
    if (c->srv->opts.access_log_format == FY_HTTP_ACCESS_LOG_JSON) {
        json_line(c, now_ms, &line);
    } else {
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
        fy_http_buf_appendf(&line, "\" %d %llu ", c->status ? c->status : 0,
                            (unsigned long long)fy_http_conn_response_bytes(c));
        append_header(&line, req, "referer");
        fy_http_buf_append(&line, " ", 1);
        append_header(&line, req, "user-agent");
        uint64_t started = c->started_ms ? c->started_ms : now_ms;
        fy_http_buf_appendf(&line, " %.3f %s\n", (double)(now_ms - started) / 1000.0,
                            c->request_id[0] ? c->request_id : "-");
    }
    ssize_t n = write(fd, line.data, line.len);
    (void)n;
    fy_http_buf_dispose(&line);
}
