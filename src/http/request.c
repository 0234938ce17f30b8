/* The llhttp glue: strict RFC 9112 request parsing (llhttp's strict mode, no lenient flags)
 * plus the checks llhttp leaves to us (obs-fold, token header names, the Host rule, the request
 * line's single spaces and HTTP version, bare LF line ends, unknown methods, trailer fields),
 * the size limits (414, 431, 413) and de-chunked body buffering. One request at a time: the
 * parser pauses after each head and each complete message, so pipelined bytes stay with the
 * caller. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/log.h"
#include "http/http_internal.h"
#include "proto/httpdef.h"

#define REQ(p) ((fy_http_request_t *)(p)->data)

/* States of the head scanner (scan_head, below). */
enum {
    SCAN_LEAD = 0,        /* empty lines before the request line */
    SCAN_METHOD,
    SCAN_TARGET_START,    /* the byte after the method's SP */
    SCAN_TARGET,
    SCAN_VERSION_START,   /* the byte after the target's SP */
    SCAN_VERSION,
    SCAN_LINE_LF,         /* the LF after the request line's CR */
    SCAN_FIELDS,          /* header lines, up to the empty line */
    SCAN_DONE,
};

/* Longer than every method llhttp knows: an upper-case token method that reaches this length
 * is refused with 501 at once (RFC 9112 §3.1), without waiting for its end. */
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

static int on_header_field_complete(llhttp_t *p)
{
    fy_http_request_t *req = REQ(p);
    fy_http_hdr_t *h = &req->hdrs[req->hdr_count - 1];
    if (h->name_len == 0)
        return fail(req, 400, "empty header name");
    for (size_t i = 0; i < h->name_len; i++) {
        if (!fy_httpdef_is_tchar((unsigned char)req->head.data[h->name_off + i]))
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

/* The byte at <s>[*i] with %2E/%2e read as '.' and %2F/%2f as '/' (other escapes stay '%':
 * neither a dot nor a slash); advances *i past it. */
static char path_byte(const char *s, size_t len, size_t *i)
{
    char c = s[*i];
    if (c == '%' && *i + 2 < len && s[*i + 1] == '2') {
        char low = (char)(s[*i + 2] | 0x20);
        if (low == 'e' || low == 'f') {
            *i += 3;
            return low == 'e' ? '.' : '/';
        }
    }
    (*i)++;
    return c;
}

bool fy_http_path_climbs_above_root(const char *path, size_t len)
{
    long depth = 0;
    size_t i = 0;
    while (i < len) {
        /* one segment: its bytes up to the next (decoded) '/' */
        size_t seg_len = 0, dots = 0;
        while (i < len) {
            char c = path_byte(path, len, &i);
            if (c == '/')
                break;
            seg_len++;
            dots += c == '.';
        }
        if (seg_len == 2 && dots == 2) {
            if (--depth < 0)
                return true;
        } else if (seg_len > 0 && !(seg_len == 1 && dots == 1)) {
            depth++;
        }
    }
    return false;
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

/* Request fields that hold one value and are not lists (RFC 9110): sent twice, they cannot be
 * combined into one "a, b" value for the app, so the request is refused as Host is. (Cookie may
 * come split by an HTTP/2 hop and is not here; Content-Length and Host have their own rules.) */
static const struct {
    const char *name;
    const char *refusal;
} singletons[] = {
    {"authorization", "more than one Authorization header"},
    {"content-type", "more than one Content-Type header"},
    {"content-location", "more than one Content-Location header"},
    {"content-range", "more than one Content-Range header"},
    {"date", "more than one Date header"},
    {"from", "more than one From header"},
    {"if-modified-since", "more than one If-Modified-Since header"},
    {"if-range", "more than one If-Range header"},
    {"if-unmodified-since", "more than one If-Unmodified-Since header"},
    {"max-forwards", "more than one Max-Forwards header"},
    {"proxy-authorization", "more than one Proxy-Authorization header"},
    {"range", "more than one Range header"},
    {"referer", "more than one Referer header"},
    {"user-agent", "more than one User-Agent header"},
};

/* The refusal of the first singleton field the head repeats, or NULL. */
static const char *repeated_singleton(const fy_http_request_t *req)
{
    uint32_t seen = 0;
    for (unsigned i = 0; i < req->hdr_count; i++) {
        const fy_http_hdr_t *h = &req->hdrs[i];
        const char *name = req->head.data + h->name_off;
        for (size_t k = 0; k < sizeof singletons / sizeof singletons[0]; k++) {
            if (strlen(singletons[k].name) != h->name_len ||
                strncasecmp(name, singletons[k].name, h->name_len) != 0)
                continue;
            if (seen & (UINT32_C(1) << k))
                return singletons[k].refusal;
            seen |= UINT32_C(1) << k;
            break;
        }
    }
    return NULL;
}

static int on_headers_complete(llhttp_t *p)
{
    fy_http_request_t *req = REQ(p);
    req->http_major = p->http_major;
    req->http_minor = p->http_minor;
    if (req->http_major != 1 || req->http_minor > 1)   /* the head scanner refuses them first */
        return fail(req, 505, "unsupported HTTP version");
    if (p->method == HTTP_CONNECT)
        return fail(req, 501, "CONNECT is not supported");
    if (req->url_len == 0)
        return fail(req, 400, "empty request target");
    if (fy_http_target_parse(req->head.data, req->url_len, &req->target) < 0)
        return fail(req, 400, "malformed request target");
    if (req->target.form == FY_HTTP_TARGET_ASTERISK && p->method != HTTP_OPTIONS)
        return fail(req, 400, "the target * is only for OPTIONS");
    if (req->target.form != FY_HTTP_TARGET_ASTERISK) {
        const char *path = req->head.data + req->target.path_off;
        size_t path_len = req->target.path_len;
        for (size_t i = 0; i < path_len; i++) {
            if (path[i] == '?' || path[i] == '#') {
                path_len = i;
                break;
            }
        }
        if (fy_http_path_climbs_above_root(path, path_len))
            return fail(req, 400, "the path climbs above the root");
    }
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
    const char *repeated = repeated_singleton(req);
    if (repeated != NULL)
        return fail(req, 400, repeated);
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
    if (req->chunked) {
        /* ferry decodes the chunked body itself (chunked.c); llhttp sees the message end here
         * and waits, paused, for the next request. */
        fy_http_chunked_init(&req->chunk);
        return 1;
    }
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
    if (req->chunked)
        req->chunk_active = true; /* the body follows, for chunked.c */
    else
        req->state = FY_HTTP_REQ_DONE;
    return HPE_PAUSED;
}

/* ---- chunked bodies ------------------------------------------------------------------------ */

static int chunk_data(void *ctx, const char *at, size_t len)
{
    return on_body(&((fy_http_request_t *)ctx)->parser, at, len);
}

/* A trailer field: checked by the decoder, counted against the header limits here, then
 * dropped. Trailer fields are never merged into the header section (RFC 9110 §6.5.1), whatever
 * their name: a "Host" or "Content-Length" sent there would otherwise reach the app as a header
 * the client never sent in the head (docs/operations.md, "HTTP strictness"). */
static int chunk_trailer(void *ctx, size_t len)
{
    fy_http_request_t *req = ctx;
    if (req->hdr_count + req->trailer_count >= req->opts->max_header_count)
        return fail(req, 431, "too many request headers");
    if (req->header_bytes + len > req->opts->max_header_size)
        return fail(req, 431, "request headers too large");
    req->header_bytes += len;
    req->trailer_count++;
    return 0;
}

static int feed_chunked(fy_http_request_t *req, const char *data, size_t len, size_t *consumed)
{
    static const fy_http_chunked_sink_t sink_template = {
        .data = chunk_data, .trailer = chunk_trailer};
    fy_http_chunked_sink_t sink = sink_template;
    sink.ctx = req;
    const char *reason;
    int rc = fy_http_chunked_feed(&req->chunk, data, len, consumed, &sink, &reason);
    if (rc == FY_HTTP_CHUNKED_MORE)
        return FY_HTTP_FEED_MORE;
    if (rc == FY_HTTP_CHUNKED_DONE) {
        req->chunk_active = false;
        req->state = FY_HTTP_REQ_DONE;
        return FY_HTTP_FEED_DONE;
    }
    if (rc == -EPROTO || rc == -EMSGSIZE)
        fail(req, rc == -EMSGSIZE && fy_http_chunked_in_trailer(&req->chunk) ? 431 : 400, reason);
    return -EPROTO; /* -ECANCELED: the sink failed the request already */
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
    req->chunk_active = false;
    req->scan_state = SCAN_LEAD;
    req->version_len = 0;
    req->method_len = 0;
    req->line_bytes = 0;
    req->scan_prev = '\0';
    req->method_done = req->method_lower = req->method_refused = false;
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

void fy_http_request_release(fy_http_request_t *req)
{
    FY_ASSERT(req->state == FY_HTTP_REQ_HEAD && !req->any_bytes);
    fy_http_buf_dispose(&req->head);
    free(req->hdrs);
    req->hdrs = NULL;
    req->hdr_cap = 0;
    fy_http_body_dispose(&req->body);
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

/* ---- the head scanner ------------------------------------------------------------------- */

/* llhttp (even in strict mode) takes runs of spaces between the parts of the request line, a
 * bare LF at the end of the request line and of the head, and any method it does not know as a
 * plain parse error. The scanner reads the head's bytes before llhttp does and decides those
 * cases itself: one SP between method, target and version (RFC 9112 §3); CRLF line ends; the
 * version "HTTP/" DIGIT "." DIGIT, whose major must be 1 (else 505) and whose minor above 1 is
 * read as 1 (RFC 9110 §2.5); and whether an unknown method is a well-formed upper-case token
 * (501) or not (400). Empty lines before the request line are skipped, as llhttp does (RFC 9112
 * §2.2). */

/* Scans <len> bytes of <data>, the next bytes of the head. Returns 0 when none is wrong (the
 * head may have ended among them), or the status that refuses the request, with *stop at the
 * offending byte and *reason set. Sets *patch to the offset of a version's minor digit above 1
 * (to be read as '1'), else SIZE_MAX. */
static int scan_head(fy_http_request_t *req, const char *data, size_t len, size_t *stop,
                     size_t *patch, const char **reason)
{
    *patch = SIZE_MAX;
    *stop = len;
    size_t i = 0;
    for (; i < len && req->scan_state != SCAN_DONE; i++) {
        unsigned char ch = (unsigned char)data[i];
        switch (req->scan_state) {
        case SCAN_LEAD:
            if (ch == '\r' || ch == '\n')
                break;
            req->scan_state = SCAN_METHOD;
            /* fall through */
        case SCAN_METHOD:
            if (ch == ' ' && req->method_len > 0) {
                req->method_done = true;
                req->scan_state = SCAN_TARGET_START;
                break;
            }
            if (!fy_httpdef_is_tchar(ch)) {
                *reason = "invalid method";
                goto refuse_400;
            }
            if (ch >= 'a' && ch <= 'z')
                req->method_lower = true;
            if (++req->method_len >= FY_HTTP_METHOD_MAX) {
                *stop = i;
                *reason = "method not implemented";
                return req->method_lower ? 400 : 501;
            }
            break;
        case SCAN_TARGET_START:
        case SCAN_VERSION_START:
            if (ch == ' ') {
                *reason = "more than one space in the request line";
                goto refuse_400;
            }
            req->scan_state++;
            if (req->scan_state == SCAN_VERSION)
                goto version;
            /* fall through */
        case SCAN_TARGET:
            if (ch == ' ')
                req->scan_state = SCAN_VERSION_START;
            else if (ch == '\r' || ch == '\n') {
                *reason = "no HTTP version in the request line";
                goto refuse_400;
            }
            break;
        case SCAN_VERSION:
        version:
            if (ch == '\r') {
                if (req->version_len != 8 || memcmp(req->version, "HTTP/", 5) != 0 ||
                    !is_digit(req->version[5]) || req->version[6] != '.' ||
                    !is_digit(req->version[7])) {
                    *reason = "malformed HTTP version";
                    goto refuse_400;
                }
                req->scan_state = SCAN_LINE_LF;
                break;
            }
            if (ch == '\n') {
                *reason = "bare LF in the request line";
                goto refuse_400;
            }
            if (req->version_len == sizeof req->version) {
                *reason = "malformed HTTP version";
                goto refuse_400;
            }
            req->version[req->version_len++] = (char)ch;
            if (req->version_len == 6 && memcmp(req->version, "HTTP/", 5) == 0 &&
                is_digit(ch) && ch != '1') {
                *stop = i;
                *reason = "unsupported HTTP version";
                return 505;
            }
            if (req->version_len == 8 && memcmp(req->version, "HTTP/1.", 7) == 0 && ch >= '2' &&
                ch <= '9')
                *patch = i;
            break;
        case SCAN_LINE_LF:
            if (ch != '\n') {
                *reason = "bare CR in the request line";
                goto refuse_400;
            }
            req->scan_state = SCAN_FIELDS;
            req->line_bytes = 0;
            break;
        case SCAN_FIELDS: {
            const char *nl = memchr(data + i, '\n', len - i);
            if (nl == NULL) {
                req->line_bytes += len - i;
                i = len - 1;
                break;
            }
            size_t at = (size_t)(nl - data);
            char before = at > 0 ? data[at - 1] : req->scan_prev;
            req->line_bytes += at - i;
            if (before != '\r') {
                i = at;
                *reason = "bare LF in the request head";
                goto refuse_400;
            }
            if (req->line_bytes == 1)   /* just the CR: the empty line that ends the head */
                req->scan_state = SCAN_DONE;
            req->line_bytes = 0;
            i = at;
            break;
        }
        default:
            break;
        }
    }
    if (i > 0)
        req->scan_prev = data[i - 1];
    return 0;
refuse_400:
    *stop = i;
    return 400;
}

/* llhttp refused the method: a well-formed upper-case token is one the server does not
 * implement, 501 (RFC 9110 §9.1); lower-case letters make it 400, as with nginx and gunicorn
 * ("get" is nearly always a broken client, not an extension). Decided once the method's space
 * arrived (the method may come in several reads); until then all of <len> is consumed. */
static int method_verdict(fy_http_request_t *req, int scan_status, const char *scan_reason,
                          size_t len, size_t *consumed)
{
    req->method_refused = true;
    if (req->method_done) {
        if (req->method_lower)
            fail(req, 400, "method with lower-case letters");
        else
            fail(req, 501, "method not implemented");
        return -EPROTO;
    }
    if (scan_status != 0) {
        fail(req, scan_status, scan_reason);
        return -EPROTO;
    }
    *consumed = len;
    return FY_HTTP_FEED_MORE;
}

/* Runs llhttp over <len> bytes at <data>, with the byte at <patch> (when < len) read as '1'. */
static llhttp_errno_t execute(fy_http_request_t *req, const char *data, size_t len, size_t patch)
{
    static const char one = '1';
    if (patch >= len)
        return llhttp_execute(&req->parser, data, len);
    llhttp_errno_t err = HPE_OK;
    if (patch > 0)
        err = llhttp_execute(&req->parser, data, patch);
    if (err == HPE_OK)
        err = llhttp_execute(&req->parser, &one, 1);
    if (err == HPE_OK && patch + 1 < len)
        err = llhttp_execute(&req->parser, data + patch + 1, len - patch - 1);
    return err;
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
    req->any_bytes = true;
    if (req->chunk_active)
        return feed_chunked(req, data, len, consumed);
    /* The scanner sees the head's bytes first; llhttp gets them up to the first wrong one, so
     * that its own refusals and the limits (414, 431) of what precedes it come first. */
    size_t stop = len, patch = SIZE_MAX;
    const char *scan_reason = NULL;
    int scan_status = 0;
    if (req->scan_state != SCAN_DONE)
        scan_status = scan_head(req, data, len, &stop, &patch, &scan_reason);
    if (req->method_refused)
        return method_verdict(req, scan_status, scan_reason, len, consumed);
    if (llhttp_get_errno(&req->parser) == HPE_PAUSED)
        llhttp_resume(&req->parser);
    req->exec_start = data;
    llhttp_errno_t err = execute(req, data, stop, patch);
    req->exec_start = NULL;
    if (err == HPE_OK && scan_status == 0) {
        *consumed = len;
        req->prev_last_byte = data[len - 1];
        return FY_HTTP_FEED_MORE;
    }
    if (err == HPE_PAUSED) {
        const char *pos = llhttp_get_error_pos(&req->parser);
        *consumed = (size_t)(pos - data);
        if (*consumed > 0)
            req->prev_last_byte = data[*consumed - 1];
        if (req->chunk_active) {
            size_t more = 0;
            int rc = feed_chunked(req, data + *consumed, len - *consumed, &more);
            *consumed += more;
            return rc;
        }
        FY_ASSERT(req->state == FY_HTTP_REQ_DONE);
        return FY_HTTP_FEED_DONE;
    }
    if (req->state != FY_HTTP_REQ_ERROR) {
        if (err == HPE_INVALID_METHOD && !req->headers_seen)
            return method_verdict(req, scan_status, scan_reason, len, consumed);
        if (err == HPE_OK || (err == HPE_INVALID_VERSION && scan_status == 505))
            fail(req, scan_status, scan_reason);
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
