/* The request block sent to a worker (docs/protocol.md §2): CGI variables from the parsed
 * request. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http/http_internal.h"
#include "proto/httpdef.h"

int fy_http_percent_decode(const char *in, size_t len, fy_http_buf_t *out)
{
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (in[i] != '%')
            continue;
        fy_http_buf_append(out, in + start, i - start);
        if (i + 2 >= len)
            return -EPROTO;
        int hi = fy_httpdef_hex_value((unsigned char)in[i + 1]);
        int lo = fy_httpdef_hex_value((unsigned char)in[i + 2]);
        if (hi < 0 || lo < 0)
            return -EPROTO;
        char c = (char)(hi * 16 + lo);
        if (c == '\0')
            return -EPROTO;
        fy_http_buf_append(out, &c, 1);
        i += 2;
        start = i + 1;
    }
    fy_http_buf_append(out, in + start, len - start);
    return 0;
}

static void trim(const char **s, size_t *len)
{
    while (*len > 0 && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
        (*len)--;
}

static bool name_is(const fy_http_request_t *req, const fy_http_hdr_t *h, const char *name)
{
    size_t n = strlen(name);
    return h->name_len == n && strncasecmp(req->head.data + h->name_off, name, n) == 0;
}

static bool same_name(const fy_http_request_t *req, const fy_http_hdr_t *a, const fy_http_hdr_t *b)
{
    return a->name_len == b->name_len &&
           strncasecmp(req->head.data + a->name_off, req->head.data + b->name_off, a->name_len) == 0;
}

/* Headers the front consumed itself and never forwards: the body is de-chunked and re-measured,
 * and 100-continue was already answered. */
static bool is_consumed_header(const fy_http_request_t *req, const fy_http_hdr_t *h)
{
    return name_is(req, h, "content-length") || name_is(req, h, "transfer-encoding") ||
           name_is(req, h, "expect");
}

/* Splits a Host value into name and port; "[v6]:port" keeps its brackets in the name. */
static void split_host(const char *host, size_t len, const char **name, size_t *name_len,
                       const char **port, size_t *port_len)
{
    *name = host;
    *name_len = len;
    *port = NULL;
    *port_len = 0;
    const char *colon = NULL;
    if (len > 0 && host[0] == '[') {
        const char *close = memchr(host, ']', len);
        if (close != NULL && (size_t)(close - host) + 1 < len && close[1] == ':')
            colon = close + 1;
    } else {
        colon = memchr(host, ':', len);
    }
    if (colon != NULL) {
        *name_len = (size_t)(colon - host);
        *port = colon + 1;
        *port_len = len - *name_len - 1;
    }
}

#define ADD(name, val, len)                                                                    \
    do {                                                                                       \
        int rc_ = fy_reqblock_add(b, name, strlen(name), val, len);                          \
        if (rc_ < 0)                                                                           \
            return rc_;                                                                        \
    } while (0)
#define ADD_STR(name, val) ADD(name, val, strlen(val))

int fy_http_cgi_build(const fy_http_request_t *req, const fy_http_cgi_ctx_t *ctx,
                      fy_reqblock_builder_t *b, fy_http_buf_t *scratch)
{
    fy_reqblock_builder_reset(b);
    const char *url = fy_http_request_url(req);
    size_t url_len = req->url_len;

    /* absolute-form "http://host/path?q": the path starts after the authority, and the authority
     * replaces Host (RFC 9112 §3.2.2); asterisk-form "*" has an empty PATH_INFO */
    const fy_http_target_t *target = &req->target;
    const char *path = url + target->path_off;
    size_t path_len = target->path_len;
    const char *authority = NULL;
    size_t authority_len = 0;
    if (target->form == FY_HTTP_TARGET_ABSOLUTE) {
        authority = url + target->authority_off;
        authority_len = target->authority_len;
    } else if (target->form == FY_HTTP_TARGET_ASTERISK) {
        path_len = 0;
    }
    const char *query = memchr(path, '?', path_len);
    size_t query_len = 0;
    if (query != NULL) {
        query_len = path_len - (size_t)(query - path) - 1;
        path_len = (size_t)(query - path);
        query++;
    }
    const char *fragment = query ? memchr(query, '#', query_len) : memchr(path, '#', path_len);
    if (fragment != NULL) {
        if (query)
            query_len = (size_t)(fragment - query);
        else
            path_len = (size_t)(fragment - path);
    }

    ADD_STR("REQUEST_METHOD", req->method);
    if (target->form == FY_HTTP_TARGET_ABSOLUTE) {
        /* the origin-form the app would have seen without a proxy in front */
        scratch->len = 0;
        if (path_len == 0 || path[0] != '/')
            fy_http_buf_append(scratch, "/", 1);
        fy_http_buf_append(scratch, path, url_len - target->path_off);
        ADD("REQUEST_URI", scratch->data, scratch->len);
    } else {
        ADD("REQUEST_URI", url, url_len);
    }
    scratch->len = 0;
    int rc = fy_http_percent_decode(path, path_len, scratch);
    if (rc < 0)
        return rc;
    if (target->form == FY_HTTP_TARGET_ABSOLUTE && scratch->len == 0)
        fy_http_buf_append(scratch, "/", 1);
    ADD("PATH_INFO", scratch->data ? scratch->data : "", scratch->len);
    ADD("QUERY_STRING", query ? query : "", query_len);
    ADD_STR("SCRIPT_NAME", "");

    size_t host_len = 0;
    const char *host = authority;
    if (host != NULL)
        host_len = authority_len;
    else
        host = fy_http_request_header(req, "host", &host_len);
    bool https = ctx->https;
    if (ctx->trusted_peer) {
        size_t proto_len;
        const char *proto = fy_http_request_header(req, "x-forwarded-proto", &proto_len);
        if (proto != NULL) {
            trim(&proto, &proto_len);
            https = proto_len == 5 && strncasecmp(proto, "https", 5) == 0;
        }
    }
    if (host != NULL)
        trim(&host, &host_len);
    if (host != NULL && host_len > 0) {
        const char *hn, *hp;
        size_t hn_len, hp_len;
        split_host(host, host_len, &hn, &hn_len, &hp, &hp_len);
        ADD("SERVER_NAME", hn, hn_len);
        if (hp != NULL && hp_len > 0)
            ADD("SERVER_PORT", hp, hp_len);
        else
            ADD_STR("SERVER_PORT", https ? "443" : "80");
    } else {
        ADD_STR("SERVER_NAME", ctx->server_name);
        ADD_STR("SERVER_PORT", ctx->server_port);
    }
    ADD_STR("SERVER_PROTOCOL", req->http_minor == 0 ? "HTTP/1.0" : "HTTP/1.1");

    const char *remote = ctx->remote_addr;
    size_t remote_len = strlen(remote);
    if (ctx->trusted_peer) {
        size_t xff_len;
        const char *xff = fy_http_request_header(req, "x-forwarded-for", &xff_len);
        if (xff != NULL) {
            /* the rightmost entry is the one our trusted proxy added */
            const char *comma = NULL;
            for (size_t i = xff_len; i > 0; i--) {
                if (xff[i - 1] == ',') {
                    comma = xff + i - 1;
                    break;
                }
            }
            const char *last = comma ? comma + 1 : xff;
            size_t last_len = xff_len - (size_t)(last - xff);
            trim(&last, &last_len);
            if (last_len > 0) {
                remote = last;
                remote_len = last_len;
            }
        }
    }
    ADD("REMOTE_ADDR", remote, remote_len);
    ADD_STR("REMOTE_PORT", ctx->remote_port);
    if (https)
        ADD_STR("HTTPS", "on");
    if (req->has_body) {
        char len_text[24];
        fy_http_format_u64(len_text, req->body.len);
        ADD_STR("CONTENT_LENGTH", len_text);
    }

    for (unsigned i = 0; i < req->hdr_count; i++) {
        const fy_http_hdr_t *h = &req->hdrs[i];
        const char *name = req->head.data + h->name_off;
        if (memchr(name, '_', h->name_len) != NULL || is_consumed_header(req, h))
            continue;
        if (ctx->request_id != NULL && name_is(req, h, "x-request-id"))
            continue;   /* replaced by the request's id below */
        bool seen = false;
        for (unsigned j = 0; j < i && !seen; j++)
            seen = same_name(req, &req->hdrs[j], h);
        if (seen)
            continue;
        bool is_type = name_is(req, h, "content-type");
        const char *sep = name_is(req, h, "cookie") ? "; " : ", ";
        scratch->len = 0;
        if (!is_type)
            fy_http_buf_append(scratch, "HTTP_", 5);
        for (size_t k = 0; k < h->name_len; k++) {
            char c = name[k];
            c = c == '-' ? '_' : (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
            fy_http_buf_append(scratch, &c, 1);
        }
        size_t key_len = scratch->len;
        if (authority != NULL && name_is(req, h, "host")) {
            fy_http_buf_append(scratch, authority, authority_len);
            rc = fy_reqblock_add(b, scratch->data, key_len, scratch->data + key_len,
                                 scratch->len - key_len);
            if (rc < 0)
                return rc;
            continue;
        }
        for (unsigned k = i; k < req->hdr_count; k++) {
            if (k != i && !same_name(req, &req->hdrs[k], h))
                continue;
            const char *v = req->head.data + req->hdrs[k].value_off;
            size_t v_len = req->hdrs[k].value_len;
            trim(&v, &v_len);
            if (k != i)
                fy_http_buf_append(scratch, sep, 2);
            fy_http_buf_append(scratch, v, v_len);
        }
        rc = fy_reqblock_add(b, scratch->data, key_len, scratch->data + key_len,
                             scratch->len - key_len);
        if (rc < 0)
            return rc;
    }
    if (ctx->request_id != NULL)
        ADD_STR("HTTP_X_REQUEST_ID", ctx->request_id);
    if (ctx->secret != NULL)
        ADD_STR("FERRY_CONNECT_PASSWORD", ctx->secret);
    return 0;
}
