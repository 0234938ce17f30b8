/* Unit tests of the request block builder (CGI variables). */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "http/http_internal.h"

static fy_http_options_t opts;
static fy_http_request_t req;
static fy_reqblock_builder_t b;
static fy_http_buf_t scratch;
static fy_reqblock_t parsed;

static const fy_http_cgi_ctx_t ctx = {
    .server_name = "127.0.0.1", .server_port = "3000", .remote_addr = "10.0.0.1",
    .remote_port = "5555", .secret = "s3cret",
};

static void setup(void)
{
    fy_http_options_init(&opts);
    fy_http_request_init(&req, &opts);
    memset(&b, 0, sizeof b);
    memset(&scratch, 0, sizeof scratch);
    memset(&parsed, 0, sizeof parsed);
}

static void teardown(void)
{
    fy_reqblock_dispose(&parsed);
    fy_http_request_dispose(&req);
    fy_reqblock_builder_dispose(&b);
    fy_http_buf_dispose(&scratch);
}

TestSuite(http_cgi, .init = setup, .fini = teardown);

static int build(const char *wire, const fy_http_cgi_ctx_t *c)
{
    size_t used;
    cr_assert_eq(fy_http_request_feed(&req, wire, strlen(wire), &used), FY_HTTP_FEED_DONE);
    int rc = fy_http_cgi_build(&req, c, &b, &scratch);
    if (rc == 0) {
        const uint8_t *out;
        size_t out_len;
        fy_reqblock_finish(&b, &out, &out_len);
        cr_assert_eq(fy_reqblock_parse((const char *)out + 4, out_len - 4, &parsed), 0);
    }
    return rc;
}

static void expect(const char *name, const char *value)
{
    size_t len;
    const char *v = fy_reqblock_get(&parsed, name, &len);
    if (value == NULL) {
        cr_assert(v == NULL, "%s should be absent", name);
        return;
    }
    cr_assert(v != NULL, "%s missing", name);
    cr_assert_str_eq(v, value, "%s", name);
}

Test(http_cgi, fills_the_standard_variables)
{
    cr_assert_eq(build("GET /a%20b/c?x=%20 HTTP/1.1\r\nHost: ex.com:8080\r\nAccept: */*\r\n\r\n", &ctx), 0);
    expect("REQUEST_METHOD", "GET");
    expect("REQUEST_URI", "/a%20b/c?x=%20");
    expect("PATH_INFO", "/a b/c");
    expect("QUERY_STRING", "x=%20");
    expect("SCRIPT_NAME", "");
    expect("SERVER_NAME", "ex.com");
    expect("SERVER_PORT", "8080");
    expect("SERVER_PROTOCOL", "HTTP/1.1");
    expect("REMOTE_ADDR", "10.0.0.1");
    expect("REMOTE_PORT", "5555");
    expect("HTTP_ACCEPT", "*/*");
    expect("HTTP_HOST", "ex.com:8080");
    expect("CONTENT_LENGTH", NULL);
    expect("FERRY_CONNECT_PASSWORD", "s3cret");
}

Test(http_cgi, uses_port_80_for_a_host_without_port)
{
    cr_assert_eq(build("GET / HTTP/1.1\r\nHost: ex.com\r\n\r\n", &ctx), 0);
    expect("SERVER_PORT", "80");
}

Test(http_cgi, uses_the_listener_without_host)
{
    cr_assert_eq(build("GET / HTTP/1.0\r\n\r\n", &ctx), 0);
    expect("SERVER_NAME", "127.0.0.1");
    expect("SERVER_PORT", "3000");
    expect("SERVER_PROTOCOL", "HTTP/1.0");
}

Test(http_cgi, drops_header_names_with_underscores)
{
    cr_assert_eq(build("GET / HTTP/1.1\r\nHost: a\r\nX_Real: 1\r\nX-Real: 2\r\n\r\n", &ctx), 0);
    expect("HTTP_X_REAL", "2");
}

Test(http_cgi, joins_repeated_headers_and_cookies)
{
    cr_assert_eq(build("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nCookie: a=1\r\nX-A: 2\r\n"
                       "Cookie: b=2\r\n\r\n", &ctx), 0);
    expect("HTTP_X_A", "1, 2");
    expect("HTTP_COOKIE", "a=1; b=2");
}

Test(http_cgi, sets_content_length_and_type_for_a_body_and_drops_framing_headers)
{
    cr_assert_eq(build("POST / HTTP/1.1\r\nHost: a\r\nContent-Type: text/x\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", &ctx), 0);
    expect("CONTENT_LENGTH", "3");
    expect("CONTENT_TYPE", "text/x");
    expect("HTTP_TRANSFER_ENCODING", NULL);
    expect("HTTP_CONTENT_TYPE", NULL);
}

Test(http_cgi, refuses_a_bad_percent_escape)
{
    cr_assert_eq(build("GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n", &ctx), -EPROTO);
}

Test(http_cgi, refuses_an_encoded_nul)
{
    cr_assert_eq(build("GET /a%00 HTTP/1.1\r\nHost: a\r\n\r\n", &ctx), -EPROTO);
}

Test(http_cgi, refuses_a_truncated_escape)
{
    cr_assert_eq(build("GET /a%4 HTTP/1.1\r\nHost: a\r\n\r\n", &ctx), -EPROTO);
}

Test(http_cgi, strips_the_authority_of_an_absolute_target)
{
    cr_assert_eq(build("GET http://ex.com/p?q HTTP/1.1\r\nHost: ex.com\r\n\r\n", &ctx), 0);
    expect("PATH_INFO", "/p");
    expect("QUERY_STRING", "q");
}

Test(http_cgi, ignores_forwarded_headers_from_an_untrusted_peer)
{
    cr_assert_eq(build("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\n"
                       "X-Forwarded-Proto: https\r\n\r\n", &ctx), 0);
    expect("REMOTE_ADDR", "10.0.0.1");
    expect("HTTPS", NULL);
}

Test(http_cgi, honours_forwarded_headers_from_a_trusted_peer)
{
    fy_http_cgi_ctx_t trusted = ctx;
    trusted.trusted_peer = true;
    cr_assert_eq(build("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 9.9.9.9, 1.2.3.4\r\n"
                       "X-Forwarded-Proto: https\r\n\r\n", &trusted), 0);
    expect("REMOTE_ADDR", "1.2.3.4");
    expect("HTTPS", "on");
    expect("SERVER_PORT", "443");
}

Test(http_cgi, leaves_out_the_password_without_a_secret)
{
    fy_http_cgi_ctx_t nosecret = ctx;
    nosecret.secret = NULL;
    cr_assert_eq(build("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &nosecret), 0);
    expect("FERRY_CONNECT_PASSWORD", NULL);
}

Test(http_cgi, takes_host_and_server_name_from_an_absolute_target)
{
    cr_assert_eq(build("GET http://ex.com:8080/p?q HTTP/1.1\r\nHost: other\r\n\r\n", &ctx), 0);
    expect("SERVER_NAME", "ex.com");
    expect("SERVER_PORT", "8080");
    expect("HTTP_HOST", "ex.com:8080");
    expect("REQUEST_URI", "/p?q");
}

Test(http_cgi, gives_an_absolute_target_without_path_the_root)
{
    cr_assert_eq(build("GET http://ex.com?q HTTP/1.1\r\nHost: ex.com\r\n\r\n", &ctx), 0);
    expect("PATH_INFO", "/");
    expect("QUERY_STRING", "q");
    expect("REQUEST_URI", "/?q");
}

Test(http_cgi, gives_asterisk_form_an_empty_path_info)
{
    cr_assert_eq(build("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", &ctx), 0);
    expect("PATH_INFO", "");
    expect("REQUEST_URI", "*");
    expect("REQUEST_METHOD", "OPTIONS");
}

Test(http_cgi, request_id_replaces_the_clients_header)
{
    fy_http_cgi_ctx_t c = ctx;
    c.request_id = "0123456789abcdef0123456789abcdef";
    cr_assert_eq(build("GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: spoofed\r\n\r\n", &c), 0);
    expect("HTTP_X_REQUEST_ID", "0123456789abcdef0123456789abcdef");
    size_t n = 0;
    for (size_t i = 0; i < parsed.count; i++)
        n += strcmp(parsed.pairs[i].name, "HTTP_X_REQUEST_ID") == 0;
    cr_assert_eq(n, 1, "the client's header is not passed as well");
}

Test(http_cgi, without_a_request_id_the_clients_header_goes_through)
{
    cr_assert_eq(build("GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: theirs\r\n\r\n", &ctx), 0);
    expect("HTTP_X_REQUEST_ID", "theirs");
}
