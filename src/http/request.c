/* The llhttp glue: strict RFC 9112 request parsing (no lenient flags) plus the checks llhttp
 * leaves to us (obs-fold, token header names, the Host rule, HTTP versions), the size limits
 * (414, 431, 413) and de-chunked body buffering. One request at a time: the parser pauses after
 * each head and each complete message, so pipelined bytes stay with the caller. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/log.h"
#include "http/http_internal.h"

#define REQ(p) ((fy_http_request_t *)(p)->data)

/* The longest method token taken for an unknown method (501) rather than garbage (400). */
#define FY_HTTP_METHOD_MAX 32

static int fail(fy_http_request_t *req, int status, const char *reason)
{
    if (req->state != FY_HTTP_REQ_ERROR) {
        req->state = FY_HTTP_REQ_ERROR;
        req->error_status = status;
        req->error_reason = reason;
    }
    return HPE_USER;
}

static int on_message_begin(llhttp_t *p)
{
    fy_http_request_t *req = REQ(p);
    req->any_bytes = true;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    fy_http_request_t *req = REQ(p);
    req->any_bytes = true;
    if (req->url_len + len > req->opts->max_uri_length)
        return fail(req, 414, "request target too long");
    fy_http_buf_append(&req->head, at, len);
    req->url_len += len;
    return 0;
}

static int add_header_bytes(fy_http_request_t *req, const char *at, size_t len)
{
    if (req->header_bytes + len > req->opts->max_header_size)
        return fail(req, 431, "request headers too large");
    req->header_bytes += len;
    fy_http_buf_append(&req->head, at, len);
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    fy_http_request_t *req = REQ(p);
    if (req->last_cb != 1) {
        if (req->hdr_count + req->trailer_count >= req->opts->max_header_count)
            return fail(req, 431, "too many request headers");
        if (req->hdr_count == req->hdr_cap) {
            req->hdr_cap = req->hdr_cap ? req->hdr_cap * 2 : 16;
            req->hdrs = fy_xrealloc(req->hdrs, req->hdr_cap * sizeof *req->hdrs);
        }
        fy_http_hdr_t *h = &req->hdrs[req->hdr_count++];
        h->name_off = req->head.len;
        h->name_len = 0;
        h->value_off = req->head.len;
        h->value_len = 0;
        req->last_cb = 1;
    }
    if (add_header_bytes(req, at, len) != 0)
        return HPE_USER;
    req->hdrs[req->hdr_count - 1].name_len += len;
    return 0;
}

static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int on_header_field_complete(llhttp_t *p)
{
    fy_http_request_t *req = REQ(p);
    fy_http_hdr_t *h = &req->hdrs[req->hdr_count - 1];
    if (h->name_len == 0)
        return fail(req, 400, "empty header name");
    for (size_t i = 0; i < h->name_len; i++) {
        if (!is_tchar((unsigned char)req->head.data[h->name_off + i]))
            return fail(req, 400, "invalid character in a header name");
    }
    if (!req->headers_seen && h->name_len == 4 &&
        strncasecmp(req->head.data + h->name_off, "host", 4) == 0)
        req->host_count++;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    fy_http_request_t *req = REQ(p);
    /* llhttp accepts obs-fold (CRLF then SP/HTAB continues a value) and hands the continuation
     * over as another piece of the value. A piece that starts right after a line feed is one. */
    if (req->last_cb == 2) {
        char before = at > req->exec_start ? at[-1] : req->prev_last_byte;
        if (before == '\n')
            return fail(req, 400, "obsolete line folding in a header");
    }
    if (req->last_cb == 1) {
        req->hdrs[req->hdr_count - 1].value_off = req->head.len;
        req->last_cb = 2;
    }
    if (add_header_bytes(req, at, len) != 0)
        return HPE_USER;
    req->hdrs[req->hdr_count - 1].value_len += len;
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    fy_http_request_t *req = REQ(p);
    if (req->last_cb == 1) {   /* an empty value: no on_header_value call */
        req->hdrs[req->hdr_count - 1].value_off = req->head.len;
        req->last_cb = 2;
    }
    if (req->headers_seen) {
        /* A trailer field (after the last chunk): checked like a header field and counted
         * against the same limits, then dropped. It must not be merged into the header section
         * (RFC 9110 §6.5.1): "Host" or "X-Forwarded-For" sent as a trailer would otherwise reach
         * the app as a header the client never sent in the head. */
        req->head.len = req->hdrs[--req->hdr_count].name_off;
        req->trailer_count++;
    }
    /* A following value piece would be a fold; a new field resets last_cb. */
    return 0;
}

/* ---- request targets, Host, Transfer-Encoding, Expect ----------------------------------- */

static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static bool is_alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

static bool is_hex(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* reg-name characters (RFC 3986): unreserved / sub-delims; '%' is checked with its escape. */
static bool is_regname_char(unsigned char c)
{
    return is_alpha(c) || is_digit(c) || (c != '\0' && strchr("-._~!$&'()*+,;=", c) != NULL);
}

bool fy_http_host_valid(const char *value, size_t len)
{
    const unsigned char *s = (const unsigned char *)value;
    size_t i = 0;
    if (len > 0 && s[0] == '[') {
        /* IP-literal: IPv6 (hex digits, ':' and '.' for an embedded IPv4) or IPvFuture */
        size_t n = 0;
        for (i = 1; i < len && s[i] != ']'; i++, n++) {
            if (!is_hex(s[i]) && s[i] != ':' && s[i] != '.' && !(n > 0 && is_regname_char(s[i])))
                return false;
        }
        if (i == len || n < 2)
            return false;
        i++;   /* past ']' */
    } else {
        for (; i < len && s[i] != ':'; i++) {
            if (s[i] == '%') {
                if (i + 2 >= len || !is_hex(s[i + 1]) || !is_hex(s[i + 2]))
                    return false;
                i += 2;
            } else if (!is_regname_char(s[i])) {
                return false;
            }
        }
    }
    if (i == len)
        return true;
    if (s[i] != ':')
        return false;
    size_t digits = len - i - 1;
    if (digits > 5)
        return false;
    for (i++; i < len; i++) {
        if (!is_digit(s[i]))
            return false;
    }
    return true;
}

int fy_http_target_parse(const char *target, size_t len, fy_http_target_t *out)
{
    memset(out, 0, sizeof *out);
    out->path_len = len;
    if (len == 0)
        return -EPROTO;
    if (target[0] == '/')
        return 0;
    if (len == 1 && target[0] == '*') {
        out->form = FY_HTTP_TARGET_ASTERISK;
        return 0;
    }
    /* absolute-form: scheme "://" authority [path-abempty] [ "?" query ] */
    size_t i = 0;
    if (!is_alpha((unsigned char)target[0]))
        return -EPROTO;
    while (i < len && (is_alpha((unsigned char)target[i]) || is_digit((unsigned char)target[i]) ||
                       target[i] == '+' || target[i] == '-' || target[i] == '.'))
        i++;
    size_t scheme_len = i;
    if (len - i < 3 || memcmp(target + i, "://", 3) != 0)
        return -EPROTO;
    if (!((scheme_len == 4 && strncasecmp(target, "http", 4) == 0) ||
          (scheme_len == 5 && strncasecmp(target, "https", 5) == 0)))
        return -EPROTO;
    size_t auth = i + 3, end = auth;
    while (end < len && target[end] != '/' && target[end] != '?' && target[end] != '#')
        end++;
    if (end == auth || !fy_http_host_valid(target + auth, end - auth))
        return -EPROTO;   /* empty, userinfo ('@' is not a host character) or malformed */
    out->form = FY_HTTP_TARGET_ABSOLUTE;
    out->authority_off = auth;
    out->authority_len = end - auth;
    out->path_off = end;
    out->path_len = len - end;
    return 0;
}

static bool token_is(const char *s, size_t len, const char *word)
{
    size_t n = strlen(word);
    return len == n && strncasecmp(s, word, n) == 0;
}

/* RFC 9112 §6.1 and §6.3: chunked must be the final coding and appear once; a coding we do not
 * implement gets 501; any Transfer-Encoding in an HTTP/1.0 request is faulty framing. */
static int check_transfer_encoding(fy_http_request_t *req)
{
    unsigned codings = 0;
    bool last_chunked = false, chunked_before = false, unknown = false, any = false;
    for (unsigned h = 0; h < req->hdr_count; h++) {
        const fy_http_hdr_t *hdr = &req->hdrs[h];
        if (!token_is(req->head.data + hdr->name_off, hdr->name_len, "transfer-encoding"))
            continue;
        any = true;
        const char *v = req->head.data + hdr->value_off;
        size_t vlen = hdr->value_len, i = 0;
        while (i <= vlen) {
            size_t start = i;
            while (i < vlen && v[i] != ',')
                i++;
            const char *tok = v + start;
            size_t tok_len = i - start;
            while (tok_len > 0 && (*tok == ' ' || *tok == '\t')) {
                tok++;
                tok_len--;
            }
            while (tok_len > 0 && (tok[tok_len - 1] == ' ' || tok[tok_len - 1] == '\t'))
                tok_len--;
            i++;
            if (tok_len == 0)
                continue;   /* empty list elements are allowed and ignored */
            if (last_chunked)
                chunked_before = true;
            codings++;
            last_chunked = token_is(tok, tok_len, "chunked");
            if (!last_chunked)
                unknown = true;
        }
    }
    if (!any)
        return 0;
    if (req->http_minor == 0)
        return fail(req, 400, "Transfer-Encoding in an HTTP/1.0 request");
    if (codings == 0 || !last_chunked || chunked_before)
        return fail(req, 400, "Transfer-Encoding does not end with a single chunked");
    if (unknown)
        return fail(req, 501, "unsupported transfer coding");
    return 0;
}

/* Expect: only 100-continue is known (RFC 9110 §10.1.1); HTTP/1.0 clients' is ignored. */
static int check_expect(fy_http_request_t *req)
{
    for (unsigned h = 0; h < req->hdr_count; h++) {
        const fy_http_hdr_t *hdr = &req->hdrs[h];
        if (!token_is(req->head.data + hdr->name_off, hdr->name_len, "expect"))
            continue;
        const char *v = req->head.data + hdr->value_off;
        size_t vlen = hdr->value_len;
        while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
            vlen--;
        if (vlen == 0)
            continue;
        if (!token_is(v, vlen, "100-continue"))
            return fail(req, 417, "unsupported expectation");
        if (req->http_minor == 1 && req->has_body)
            req->expect_continue = true;
    }
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    fy_http_request_t *req = REQ(p);
    req->http_major = p->http_major;
    req->http_minor = p->http_minor;
    if (req->http_major != 1 || req->http_minor > 1)
        return fail(req, 400, "unsupported HTTP version");
    if (p->method == HTTP_CONNECT)
        return fail(req, 501, "CONNECT is not supported");
    if (req->url_len == 0)
        return fail(req, 400, "empty request target");
    if (fy_http_target_parse(req->head.data, req->url_len, &req->target) < 0)
        return fail(req, 400, "malformed request target");
    if (req->target.form == FY_HTTP_TARGET_ASTERISK && p->method != HTTP_OPTIONS)
        return fail(req, 400, "the target * is only for OPTIONS");
    if (req->http_minor == 1 && req->host_count != 1)
        return fail(req, 400, req->host_count ? "more than one Host header" : "no Host header");
    if (req->host_count > 1)
        return fail(req, 400, "more than one Host header");
    size_t host_len;
    const char *host = fy_http_request_header(req, "host", &host_len);
    while (host != NULL && host_len > 0 &&
           (host[host_len - 1] == ' ' || host[host_len - 1] == '\t'))
        host_len--;
    if (host != NULL && !fy_http_host_valid(host, host_len))
        return fail(req, 400, "invalid Host header");
    if (check_transfer_encoding(req) != 0)
        return HPE_USER;
    req->method = llhttp_method_name((llhttp_method_t)p->method);
    req->is_head = p->method == HTTP_HEAD;
    req->keep_alive = llhttp_should_keep_alive(p) != 0;
    req->chunked = (p->flags & F_CHUNKED) != 0;
    req->has_body = req->chunked || (p->flags & F_CONTENT_LENGTH) != 0;
    req->content_length = req->chunked ? 0 : p->content_length;
    uint64_t max = req->opts->max_body_size;
    if (!req->chunked && max != 0 && req->content_length > max)
        return fail(req, 413, "request body too large");
    if (check_expect(req) != 0)
        return HPE_USER;
    /* No protocol upgrades: an Upgrade request is an ordinary request to the app. */
    p->upgrade = 0;
    req->state = FY_HTTP_REQ_BODY;
    req->headers_seen = true;
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    fy_http_request_t *req = REQ(p);
    uint64_t max = req->opts->max_body_size;
    if (max != 0 && req->body.len + len > max)
        return fail(req, 413, "request body too large");
    if (fy_http_body_append(&req->body, at, len) != 0)
        return fail(req, 500, "cannot buffer the request body");
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    fy_http_request_t *req = REQ(p);
    req->state = FY_HTTP_REQ_DONE;
    return HPE_PAUSED;
}

static llhttp_settings_t settings;
static int settings_ready;

void fy_http_request_init(fy_http_request_t *req, const fy_http_options_t *opts)
{
    if (!settings_ready) {
        llhttp_settings_init(&settings);
        settings.on_message_begin = on_message_begin;
        settings.on_url = on_url;
        settings.on_header_field = on_header_field;
        settings.on_header_field_complete = on_header_field_complete;
        settings.on_header_value = on_header_value;
        settings.on_header_value_complete = on_header_value_complete;
        settings.on_headers_complete = on_headers_complete;
        settings.on_body = on_body;
        settings.on_message_complete = on_message_complete;
        settings_ready = 1;
    }
    memset(req, 0, sizeof *req);
    req->opts = opts;
    llhttp_init(&req->parser, HTTP_REQUEST, &settings);
    req->parser.data = req;
    fy_http_body_init(&req->body, opts->body_buffer_threshold, opts->tmp_dir);
}

void fy_http_request_reset(fy_http_request_t *req)
{
    req->state = FY_HTTP_REQ_HEAD;
    req->head.len = 0;
    req->url_len = 0;
    req->header_bytes = 0;
    req->hdr_count = 0;
    req->last_cb = 0;
    req->any_bytes = false;
    req->headers_seen = false;
    req->host_count = 0;
    req->trailer_count = 0;
    memset(&req->target, 0, sizeof req->target);
    req->method = NULL;
    req->http_major = req->http_minor = 0;
    req->keep_alive = req->has_body = req->chunked = req->expect_continue = req->is_head = false;
    req->content_length = 0;
    req->error_status = 0;
    req->error_reason = NULL;
    fy_http_body_reset(&req->body);
    if (llhttp_get_errno(&req->parser) == HPE_PAUSED)
        llhttp_resume(&req->parser);
}

void fy_http_request_dispose(fy_http_request_t *req)
{
    fy_http_buf_dispose(&req->head);
    free(req->hdrs);
    req->hdrs = NULL;
    fy_http_body_dispose(&req->body);
}

static const char *llhttp_reason(llhttp_errno_t err)
{
    switch (err) {
    case HPE_INVALID_METHOD: return "invalid method";
    case HPE_INVALID_VERSION: return "invalid HTTP version";
    case HPE_INVALID_URL: return "invalid request target";
    case HPE_INVALID_HEADER_TOKEN: return "invalid character in a header";
    case HPE_LF_EXPECTED: return "bare CR or missing LF";
    case HPE_UNEXPECTED_CONTENT_LENGTH: return "conflicting Content-Length / Transfer-Encoding";
    case HPE_INVALID_CONTENT_LENGTH: return "invalid Content-Length";
    case HPE_INVALID_CHUNK_SIZE: return "invalid chunk size";
    case HPE_INVALID_TRANSFER_ENCODING: return "invalid Transfer-Encoding";
    case HPE_STRICT: return "malformed request";
    case HPE_INVALID_CONSTANT: return "malformed request line";
    default: return "malformed request";
    }
}

/* llhttp knows a fixed set of methods. A request whose method is a well-formed upper-case token
 * it does not know (an extension method such as "FOO") is one the server does not implement:
 * 501 (RFC 9110 section 9.1), not 400. Lower-case letters make it 400, as nginx and gunicorn
 * do ("get" is almost always a broken client, not an extension). Looks at the request's first
 * bytes in <data> (the method starts the request, after optional empty lines). */
static bool unknown_method_token(const char *data, size_t len)
{
    size_t i = 0;
    while (i < len && (data[i] == '\r' || data[i] == '\n'))
        i++;
    size_t start = i;
    while (i < len && i - start <= FY_HTTP_METHOD_MAX && is_tchar((unsigned char)data[i]) &&
           !(data[i] >= 'a' && data[i] <= 'z'))
        i++;
    return i > start && i - start <= FY_HTTP_METHOD_MAX && i < len && data[i] == ' ';
}

int fy_http_request_feed(fy_http_request_t *req, const char *data, size_t len, size_t *consumed)
{
    *consumed = 0;
    if (req->state == FY_HTTP_REQ_ERROR)
        return -EPROTO;
    if (req->state == FY_HTTP_REQ_DONE)
        return FY_HTTP_FEED_DONE;
    if (len == 0)
        return FY_HTTP_FEED_MORE;
    if (llhttp_get_errno(&req->parser) == HPE_PAUSED)
        llhttp_resume(&req->parser);
    req->any_bytes = true;
    req->exec_start = data;
    llhttp_errno_t err = llhttp_execute(&req->parser, data, len);
    req->exec_start = NULL;
    if (err == HPE_OK) {
        *consumed = len;
        req->prev_last_byte = data[len - 1];
        return FY_HTTP_FEED_MORE;
    }
    if (err == HPE_PAUSED) {
        const char *pos = llhttp_get_error_pos(&req->parser);
        *consumed = (size_t)(pos - data);
        if (*consumed > 0)
            req->prev_last_byte = data[*consumed - 1];
        FY_ASSERT(req->state == FY_HTTP_REQ_DONE);
        return FY_HTTP_FEED_DONE;
    }
    if (req->state != FY_HTTP_REQ_ERROR) {
        if (err == HPE_INVALID_METHOD && !req->headers_seen && unknown_method_token(data, len))
            fail(req, 501, "method not implemented");
        else
            fail(req, 400, llhttp_reason(err));
    }
    return -EPROTO;
}

int fy_http_request_eof(fy_http_request_t *req)
{
    if (req->state == FY_HTTP_REQ_HEAD && !req->any_bytes)
        return 0;
    if (req->state == FY_HTTP_REQ_DONE)
        return 0;
    fail(req, 400, "request cut short by the client");
    return -EPROTO;
}

const char *fy_http_request_header(const fy_http_request_t *req, const char *name, size_t *len)
{
    size_t name_len = strlen(name);
    for (unsigned i = 0; i < req->hdr_count; i++) {
        const fy_http_hdr_t *h = &req->hdrs[i];
        if (h->name_len == name_len && strncasecmp(req->head.data + h->name_off, name, name_len) == 0) {
            *len = h->value_len;
            return req->head.data + h->value_off;
        }
    }
    return NULL;
}
