/* Fuzzes the HTTP/1 request parser (src/http/request.c) and the CGI builder: the input is fed in
 * two pieces (split where its first byte says) and parsed as a pipeline. Properties: the parser
 * never consumes more than it was given, a complete request respects every limit, has a target
 * of a known form, a valid Host, version 1.0 or 1.1 and a path that stays under the root, a
 * refusal carries a known status, and the request block built from any accepted request parses
 * back (PATH_INFO empty only for "*", else starting with '/' for the origin and absolute
 * forms). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "http/http_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_request(const fy_http_request_t *req, const fy_http_options_t *opts)
{
    FY_ASSERT(req->url_len <= opts->max_uri_length);
    FY_ASSERT(req->header_bytes <= opts->max_header_size);
    FY_ASSERT(req->hdr_count <= opts->max_header_count);
    FY_ASSERT(req->body.len <= opts->max_body_size);
    fy_http_target_t target;
    FY_ASSERT(fy_http_target_parse(fy_http_request_url(req), req->url_len, &target) == 0);
    FY_ASSERT(target.form == req->target.form);
    FY_ASSERT(target.form != FY_HTTP_TARGET_ASTERISK || strcmp(req->method, "OPTIONS") == 0);
    size_t host_len;
    const char *host = fy_http_request_header(req, "host", &host_len);
    while (host != NULL && host_len > 0 &&
           (host[host_len - 1] == ' ' || host[host_len - 1] == '\t'))
        host_len--;
    FY_ASSERT(host == NULL || fy_http_host_valid(host, host_len));
    FY_ASSERT(!req->chunked || req->http_minor == 1);
    FY_ASSERT(req->http_major == 1 && req->http_minor <= 1);
    if (target.form != FY_HTTP_TARGET_ASTERISK) {
        const char *path = fy_http_request_url(req) + target.path_off;
        size_t path_len = 0;
        while (path_len < target.path_len && path[path_len] != '?' && path[path_len] != '#')
            path_len++;
        FY_ASSERT(!fy_http_path_climbs_above_root(path, path_len));
    }
    fy_http_cgi_ctx_t ctx = {.server_name = "h", .server_port = "1", .remote_addr = "r",
                             .remote_port = "2", .secret = "s"};
    fy_reqblock_builder_t b = {0};
    fy_http_buf_t scratch = {0};
    int rc = fy_http_cgi_build(req, &ctx, &b, &scratch);
    FY_ASSERT(rc == 0 || rc == -EPROTO || rc == -EMSGSIZE);
    if (rc == 0) {
        const uint8_t *out;
        size_t out_len;
        fy_reqblock_finish(&b, &out, &out_len);
        fy_reqblock_t parsed;
        FY_ASSERT(fy_reqblock_parse((const char *)out + 4, out_len - 4, &parsed) == 0);
        FY_ASSERT(fy_reqblock_get(&parsed, "REQUEST_METHOD", NULL) != NULL);
        size_t path_len;
        const char *path = fy_reqblock_get(&parsed, "PATH_INFO", &path_len);
        FY_ASSERT(path != NULL);
        if (req->target.form == FY_HTTP_TARGET_ASTERISK)
            FY_ASSERT(path_len == 0);
        else
            FY_ASSERT(path_len > 0 && path[0] == '/');
        fy_reqblock_dispose(&parsed);
    }
    fy_reqblock_builder_dispose(&b);
    fy_http_buf_dispose(&scratch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    fy_http_options_t opts;
    fy_http_options_init(&opts);
    opts.max_uri_length = 512;
    opts.max_header_size = 2048;
    opts.max_header_count = 16;
    opts.max_body_size = 4096;
    opts.body_buffer_threshold = 256;
    fy_http_request_t req;
    fy_http_request_init(&req, &opts);
    size_t split = 1 + (size_t)data[0] % size;
    const char *p = (const char *)data + 1;
    size_t left = size - 1;
    size_t first = split - 1 < left ? split - 1 : left;
    size_t pieces[2] = {first, left - first};
    for (int i = 0; i < 2; i++) {
        const char *piece = p;
        size_t len = pieces[i];
        p += len;
        while (len > 0) {
            size_t used = 0;
            int rc = fy_http_request_feed(&req, piece, len, &used);
            FY_ASSERT(used <= len);
            if (rc < 0) {
                int s = req.error_status;
                FY_ASSERT(s == 400 || s == 413 || s == 414 || s == 417 || s == 431 || s == 500 ||
                          s == 501 || s == 505);
                goto out;
            }
            piece += used;
            len -= used;
            if (rc == FY_HTTP_FEED_DONE) {
                check_request(&req, &opts);
                fy_http_request_reset(&req);
            } else {
                FY_ASSERT(len == 0);
            }
        }
    }
    fy_http_request_eof(&req);
out:
    fy_http_request_dispose(&req);
    return 0;
}
