/* Response framing for the client: the worker's head (docs/protocol.md §3) becomes an HTTP/1.1
 * head with the framing the client can parse (Content-Length, chunked, or close), Date and
 * X-Powered-By; and the front's own error responses. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "http/http_internal.h"
#include "proto/httpdef.h"

const char *fy_http_date_now(void)
{
    static char cached[32];
    static time_t cached_at = -1;
    time_t now = time(NULL);
    if (now != cached_at) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(cached, sizeof cached, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        cached_at = now;
    }
    return cached;
}

void fy_http_html_escape(const char *s, fy_http_buf_t *out)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': fy_http_buf_append(out, "&lt;", 4); break;
        case '>': fy_http_buf_append(out, "&gt;", 4); break;
        case '&': fy_http_buf_append(out, "&amp;", 5); break;
        case '"': fy_http_buf_append(out, "&quot;", 6); break;
        case '\'': fy_http_buf_append(out, "&#39;", 5); break;
        default: fy_http_buf_append(out, s, 1); break;
        }
    }
}

static bool hdr_is(const fy_resphead_header_t *h, const char *name)
{
    size_t n = strlen(name);
    return h->name_len == n && strncasecmp(h->name, name, n) == 0;
}

/* Whether <h> is named as a token in the value of one of the worker's Connection headers
 * (RFC 9110 §7.6.1: such headers are hop-by-hop and not forwarded). */
static bool named_by_connection(const fy_resphead_t *head, const fy_resphead_header_t *h)
{
    for (size_t i = 0; i < head->header_count; i++) {
        const fy_resphead_header_t *c = &head->headers[i];
        if (!hdr_is(c, "connection"))
            continue;
        size_t j = 0;
        while (j < c->value_len) {
            while (j < c->value_len && (c->value[j] == ' ' || c->value[j] == '\t' ||
                                        c->value[j] == ','))
                j++;
            size_t start = j;
            while (j < c->value_len && c->value[j] != ',' && c->value[j] != ' ' &&
                   c->value[j] != '\t')
                j++;
            if (j > start && j - start == h->name_len &&
                strncasecmp(c->value + start, h->name, h->name_len) == 0)
                return true;
        }
    }
    return false;
}

/* Parses a Content-Length value: digits only, no sign, no overflow. */
static int parse_length(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 19)
        return -EPROTO;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EPROTO;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

int fy_http_response_head(const fy_resphead_t *head, const fy_http_request_t *req,
                          bool keep_alive, bool powered_by, fy_http_buf_t *out,
                          fy_http_resp_plan_t *plan)
{
    memset(plan, 0, sizeof *plan);
    int status = head->status;
    /* 1xx are not forwarded; 600..999 are not HTTP status codes (RFC 9110 §15) */
    if (status < 200 || status > 599)
        return -EPROTO;
    bool has_length = false, has_date = false, has_powered = false;
    uint64_t length = 0;
    for (size_t i = 0; i < head->header_count; i++) {
        const fy_resphead_header_t *h = &head->headers[i];
        if (hdr_is(h, "content-length")) {
            uint64_t v;
            if (parse_length(h->value, h->value_len, &v) < 0)
                return -EPROTO;
            if (has_length && v != length)
                return -EPROTO;
            has_length = true;
            length = v;
        } else if (hdr_is(h, "date")) {
            has_date = true;
        } else if (hdr_is(h, "x-powered-by")) {
            has_powered = true;
        }
    }

    /* 205 has no content (RFC 9110 §15.3.6) but, unlike 204 and 304, is not known to have none
     * by its status (RFC 9112 §6.3): the client is told "Content-Length: 0". */
    bool reset_content = status == 205;
    bool no_body = req->is_head || status == 204 || status == 304 || reset_content;
    if (no_body) {
        plan->framing = FY_HTTP_FRAME_NONE;
    } else if (has_length) {
        plan->framing = FY_HTTP_FRAME_LENGTH;
        plan->content_length = length;
    } else if (req->http_minor >= 1) {
        plan->framing = FY_HTTP_FRAME_CHUNKED;
    } else {
        plan->framing = FY_HTTP_FRAME_CLOSE;
        keep_alive = false;
    }
    plan->keep_alive = keep_alive;
    plan->status = status;

    const char *reason = head->reason;
    size_t reason_len = head->reason_len;
    if (reason_len == 0) {
        reason = fy_httpdef_status_reason(status);
        reason_len = strlen(reason);
    }
    /* The hot path formats by hand: vsnprintf was a tenth of the core's instructions. */
    char line[13] = "HTTP/1.1 000 ";
    line[9] = (char)('0' + status / 100 % 10);
    line[10] = (char)('0' + status / 10 % 10);
    line[11] = (char)('0' + status % 10);
    fy_http_buf_append(out, line, sizeof line);
    fy_http_buf_append(out, reason, reason_len);
    fy_http_buf_append(out, "\r\n", 2);
    for (size_t i = 0; i < head->header_count; i++) {
        const fy_resphead_header_t *h = &head->headers[i];
        /* hop-by-hop and framing headers are the front's business */
        if (hdr_is(h, "connection") || hdr_is(h, "keep-alive") ||
            hdr_is(h, "proxy-connection") || hdr_is(h, "te") || hdr_is(h, "trailer") ||
            hdr_is(h, "transfer-encoding") || hdr_is(h, "content-length") ||
            hdr_is(h, "status") || named_by_connection(head, h))
            continue;
        fy_http_buf_append(out, h->name, h->name_len);
        fy_http_buf_append(out, ": ", 2);
        fy_http_buf_append(out, h->value, h->value_len);
        fy_http_buf_append(out, "\r\n", 2);
    }
    if (!has_date) {
        fy_http_buf_append(out, "Date: ", 6);
        fy_http_buf_append_str(out, fy_http_date_now());
        fy_http_buf_append(out, "\r\n", 2);
    }
    if (powered_by && !has_powered)
        fy_http_buf_append(out, "X-Powered-By: ferry/" FERRY_VERSION "\r\n",
                           strlen("X-Powered-By: ferry/" FERRY_VERSION "\r\n"));
    if (reset_content)
        fy_http_buf_append(out, "Content-Length: 0\r\n", 19);
    else if (has_length && status != 204 && !(status == 304 && !req->is_head)) {
        fy_http_buf_append(out, "Content-Length: ", 16);
        fy_http_buf_append_u64(out, length);
        fy_http_buf_append(out, "\r\n", 2);
    }
    if (plan->framing == FY_HTTP_FRAME_CHUNKED)
        fy_http_buf_append(out, "Transfer-Encoding: chunked\r\n", 28);
    if (!keep_alive)
        fy_http_buf_append(out, "Connection: close\r\n", 19);
    else if (req->http_minor == 0)
        fy_http_buf_append(out, "Connection: keep-alive\r\n", 24);
    fy_http_buf_append(out, "\r\n", 2);
    return 0;
}

/* The head of a response of the front's own: status line, Date, X-Powered-By, <content_type>,
 * the header lines <extra> (each ending in CRLF), Content-Length <len>, Connection: close. */
static void front_head(int status, bool keep_alive, bool powered_by, const char *content_type,
                       const char *extra, size_t len, fy_http_buf_t *out)
{
    fy_http_buf_appendf(out, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status,
                        fy_httpdef_status_reason(status), fy_http_date_now());
    if (powered_by)
        fy_http_buf_append(out, "X-Powered-By: ferry/" FERRY_VERSION "\r\n",
                           strlen("X-Powered-By: ferry/" FERRY_VERSION "\r\n"));
    fy_http_buf_appendf(out, "Content-Type: %s\r\n%sContent-Length: %zu\r\n", content_type,
                        extra, len);
    fy_http_buf_append(out, keep_alive ? "" : "Connection: close\r\n", keep_alive ? 0 : 19);
    fy_http_buf_append(out, "\r\n", 2);
}

void fy_http_error_response(int status, bool is_head, bool keep_alive, bool powered_by,
                            const char *title, const char *detail, fy_http_buf_t *out)
{
    const char *reason = fy_httpdef_status_reason(status);
    fy_http_buf_t body = {0};
    fy_http_buf_appendf(&body, "<!DOCTYPE html>\n<html><head><title>%d %s</title></head>\n"
                        "<body><h1>%d %s</h1>\n", status, reason, status, reason);
    if (title != NULL) {
        fy_http_buf_append(&body, "<p>", 3);
        fy_http_html_escape(title, &body);
        fy_http_buf_append(&body, "</p>\n", 5);
    }
    if (detail != NULL && detail[0] != '\0') {
        fy_http_buf_append(&body, "<pre>", 5);
        fy_http_html_escape(detail, &body);
        fy_http_buf_append(&body, "</pre>\n", 7);
    }
    fy_http_buf_append(&body, "<hr><address>ferry</address></body></html>\n", 43);

    front_head(status, keep_alive, powered_by, "text/html; charset=utf-8", "", body.len, out);
    if (!is_head)
        fy_http_buf_append(out, body.data, body.len);
    fy_http_buf_dispose(&body);
}

void fy_http_plain_response(int status, bool is_head, bool keep_alive, bool powered_by,
                            const char *text, fy_http_buf_t *out)
{
    size_t len = strlen(text);
    front_head(status, keep_alive, powered_by, "text/plain; charset=utf-8",
               "Cache-Control: no-store\r\n", len, out);
    if (!is_head)
        fy_http_buf_append(out, text, len);
}
