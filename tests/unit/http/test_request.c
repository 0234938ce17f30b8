/* Unit tests of the llhttp glue: strict parsing, limits, pipelining, de-chunking. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "http/http_internal.h"

static fy_http_options_t opts;
static fy_http_request_t req;

static void setup(void)
{
    fy_http_options_init(&opts);
    opts.max_uri_length = 64;
    opts.max_header_size = 256;
    opts.max_header_count = 4;
    opts.max_body_size = 100;
    opts.body_buffer_threshold = 16;
    fy_http_request_init(&req, &opts);
}

static void teardown(void) { fy_http_request_dispose(&req); }

static int feed_str(const char *s, size_t *used)
{
    size_t u;
    int rc = fy_http_request_feed(&req, s, strlen(s), used ? used : &u);
    return rc;
}

TestSuite(http_request, .init = setup, .fini = teardown);

Test(http_request, parses_a_simple_get)
{
    cr_assert_eq(feed_str("GET /a?b HTTP/1.1\r\nHost: x\r\nX-Y: z\r\n\r\n", NULL), FY_HTTP_FEED_DONE);
    cr_assert_str_eq(req.method, "GET");
    cr_assert_eq(req.url_len, 4);
    cr_assert(memcmp(fy_http_request_url(&req), "/a?b", 4) == 0);
    size_t len;
    const char *v = fy_http_request_header(&req, "x-y", &len);
    cr_assert(v != NULL && len == 1 && v[0] == 'z');
    cr_assert(req.keep_alive);
    cr_assert(!req.has_body);
}

Test(http_request, needs_more_for_a_partial_head)
{
    size_t used;
    cr_assert_eq(feed_str("GET / HTTP/1.1\r\nHo", &used), FY_HTTP_FEED_MORE);
    cr_assert_eq(used, strlen("GET / HTTP/1.1\r\nHo"));
    cr_assert_eq(feed_str("st: x\r\n\r\n", NULL), FY_HTTP_FEED_DONE);
}

Test(http_request, stops_after_one_message_of_a_pipeline)
{
    const char *two = "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n";
    size_t used;
    cr_assert_eq(feed_str(two, &used), FY_HTTP_FEED_DONE);
    cr_assert_eq(used, strlen(two) / 2);
    fy_http_request_reset(&req);
    size_t used2;
    cr_assert_eq(fy_http_request_feed(&req, two + used, strlen(two) - used, &used2), FY_HTTP_FEED_DONE);
    cr_assert(memcmp(fy_http_request_url(&req), "/2", 2) == 0);
}

Test(http_request, dechunks_a_body_into_a_temp_file_past_the_threshold)
{
    cr_assert_eq(feed_str("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "a\r\n0123456789\r\n14\r\nabcdefghijklmnopqrst\r\n0\r\n\r\n", NULL),
                 FY_HTTP_FEED_DONE);
    cr_assert(req.chunked && req.has_body);
    cr_assert_eq(req.body.len, 30);
    cr_assert(!fy_http_body_in_memory(&req.body));
    char buf[64];
    cr_assert_eq(fy_http_body_read(&req.body, 0, buf, sizeof buf), 30);
    cr_assert(memcmp(buf, "0123456789abcdefghijklmnopqrst", 30) == 0);
}

Test(http_request, flags_expect_continue_once_the_head_is_in)
{
    cr_assert_eq(feed_str("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                          "Expect: 100-continue\r\n\r\n", NULL), FY_HTTP_FEED_MORE);
    cr_assert(req.headers_seen);
    cr_assert(req.expect_continue);
    cr_assert_eq(req.state, FY_HTTP_REQ_BODY);
    cr_assert_eq(feed_str("abc", NULL), FY_HTTP_FEED_DONE);
}

static void expect_refused(const char *wire, int status)
{
    size_t used;
    int rc = fy_http_request_feed(&req, wire, strlen(wire), &used);
    cr_assert_eq(rc, -EPROTO, "wire: %s", wire);
    cr_assert_eq(req.error_status, status, "wire: %s status %d", wire, req.error_status);
}

Test(http_request, refuses_content_length_with_transfer_encoding)
{
    expect_refused("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
}

Test(http_request, refuses_duplicate_content_length)
{
    expect_refused("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400);
}

Test(http_request, refuses_a_bad_chunk_size)
{
    expect_refused("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400);
}

Test(http_request, refuses_obs_fold)
{
    expect_refused("GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400);
}

Test(http_request, refuses_obs_fold_split_across_reads)
{
    size_t used;
    cr_assert_eq(feed_str("GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n", &used), FY_HTTP_FEED_MORE);
    expect_refused(" b\r\n\r\n", 400);
}

Test(http_request, accepts_a_value_split_across_reads)
{
    cr_assert_eq(feed_str("GET / HTTP/1.1\r\nHost: x\r\nX: ab", NULL), FY_HTTP_FEED_MORE);
    cr_assert_eq(feed_str("cd\r\n\r\n", NULL), FY_HTTP_FEED_DONE);
    size_t len;
    const char *v = fy_http_request_header(&req, "x", &len);
    cr_assert(len == 4 && memcmp(v, "abcd", 4) == 0);
}

Test(http_request, refuses_nul_in_a_header)
{
    static const char wire[] = "GET / HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n";
    size_t used;
    cr_assert_eq(fy_http_request_feed(&req, wire, sizeof wire - 1, &used), -EPROTO);
    cr_assert_eq(req.error_status, 400);
}

Test(http_request, refuses_a_bare_cr)
{
    expect_refused("GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n", 400);
}

Test(http_request, refuses_space_before_the_colon)
{
    expect_refused("GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400);
}

Test(http_request, refuses_http_2_and_0_9_versions_with_505)
{
    expect_refused("GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505);
    fy_http_request_dispose(&req);
    fy_http_request_init(&req, &opts);
    expect_refused("GET / HTTP/0.9\r\nHost: x\r\n\r\n", 505);
    fy_http_request_dispose(&req);
    fy_http_request_init(&req, &opts);
    expect_refused("GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505);
}

Test(http_request, refuses_a_major_version_other_than_1_sent_byte_by_byte_with_505)
{
    static const char wire[] = "GET / HTTP/3.0\r\nHost: x\r\n\r\n";
    size_t used;
    int rc = FY_HTTP_FEED_MORE;
    for (size_t i = 0; i < sizeof wire - 1 && rc == FY_HTTP_FEED_MORE; i++)
        rc = fy_http_request_feed(&req, wire + i, 1, &used);
    cr_assert_eq(rc, -EPROTO);
    cr_assert_eq(req.error_status, 505);
}

Test(http_request, reads_a_higher_http_1_minor_version_as_1_1)
{
    cr_assert_eq(feed_str("GET / HTTP/1.2\r\nHost: x\r\n\r\n", NULL), FY_HTTP_FEED_DONE);
    cr_assert_eq(req.http_major, 1);
    cr_assert_eq(req.http_minor, 1);
    cr_assert(req.keep_alive);
}

Test(http_request, reads_a_higher_minor_version_split_before_its_digit)
{
    cr_assert_eq(feed_str("GET / HTTP/1.", NULL), FY_HTTP_FEED_MORE);
    cr_assert_eq(feed_str("9\r\nHost: x\r\n\r\n", NULL), FY_HTTP_FEED_DONE);
    cr_assert_eq(req.http_minor, 1);
}

Test(http_request, refuses_a_version_that_is_not_one_digit_dot_one_digit)
{
    expect_refused("GET / HTTP/1.10\r\nHost: x\r\n\r\n", 400);
    fy_http_request_dispose(&req);
    fy_http_request_init(&req, &opts);
    expect_refused("GET / HTTP/10.1\r\nHost: x\r\n\r\n", 400);
    fy_http_request_dispose(&req);
    fy_http_request_init(&req, &opts);
    expect_refused("GET / http/1.1\r\nHost: x\r\n\r\n", 400);
}

Test(http_request, refuses_more_than_one_space_in_the_request_line)
{
    expect_refused("GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    fy_http_request_dispose(&req);
    fy_http_request_init(&req, &opts);
    expect_refused("GET /  HTTP/1.1\r\nHost: x\r\n\r\n", 400);
}

Test(http_request, refuses_a_bare_lf_ending_the_request_line)
{
    expect_refused("GET / HTTP/1.1\nHost: x\r\n\r\n", 400);
}

Test(http_request, refuses_a_bare_lf_ending_the_head)
{
    expect_refused("GET / HTTP/1.1\r\nHost: x\r\n\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 400);
}

Test(http_request, refuses_a_bare_lf_ending_the_head_in_its_own_read)
{
    cr_assert_eq(feed_str("GET / HTTP/1.1\r\nHost: x\r\n", NULL), FY_HTTP_FEED_MORE);
    expect_refused("\n", 400);
}

Test(http_request, skips_empty_lines_before_the_request_line)
{
    cr_assert_eq(feed_str("\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", NULL), FY_HTTP_FEED_DONE);
    cr_assert_str_eq(req.method, "GET");
}

Test(http_request, refuses_chunk_data_not_followed_by_crlf)
{
    expect_refused("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "5\r\nhelloXX0\r\n\r\n", 400);
}

Test(http_request, refuses_a_bare_lf_ending_the_trailer_section)
{
    expect_refused("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "5\r\nhello\r\n0\r\n\n", 400);
}

Test(http_request, refuses_a_bare_lf_ending_the_trailer_section_in_its_own_read)
{
    cr_assert_eq(feed_str("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "0\r\nX: y\r\n", NULL), FY_HTTP_FEED_MORE);
    expect_refused("\n", 400);
}

Test(http_request, accepts_trailer_fields_and_drops_them)
{
    size_t used;
    const char *wire = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "5\r\nhello\r\n0\r\nHost: evil\r\nX-T: 1\r\n\r\nGET /";
    cr_assert_eq(feed_str(wire, &used), FY_HTTP_FEED_DONE);
    cr_assert_eq(used, strlen(wire) - 5);
    cr_assert_eq(req.body.len, 5);
    cr_assert_eq(req.hdr_count, 2);
    size_t len;
    const char *host = fy_http_request_header(&req, "host", &len);
    cr_assert(host != NULL && len == 1 && host[0] == 'x');
    cr_assert_null(fy_http_request_header(&req, "x-t", &len));
}

Test(http_request, counts_trailer_fields_against_the_header_count_limit)
{
    expect_refused("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", 431);
}

Test(http_request, refuses_an_invalid_method)
{
    expect_refused("G@T / HTTP/1.1\r\nHost: x\r\n\r\n", 400);
}

Test(http_request, refuses_http_11_without_host)
{
    expect_refused("GET / HTTP/1.1\r\n\r\n", 400);
}

Test(http_request, accepts_http_10_without_host)
{
    cr_assert_eq(feed_str("GET / HTTP/1.0\r\n\r\n", NULL), FY_HTTP_FEED_DONE);
    cr_assert(!req.keep_alive);
}

Test(http_request, refuses_connect_with_501)
{
    expect_refused("CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\n", 501);
}

Test(http_request, refuses_a_long_target_with_414)
{
    char wire[256];
    snprintf(wire, sizeof wire, "GET /%0100d HTTP/1.1\r\nHost: x\r\n\r\n", 0);
    expect_refused(wire, 414);
}

Test(http_request, refuses_large_headers_with_431)
{
    char wire[600];
    snprintf(wire, sizeof wire, "GET / HTTP/1.1\r\nHost: x\r\nX: %0300d\r\n\r\n", 0);
    expect_refused(wire, 431);
}

Test(http_request, refuses_too_many_headers_with_431)
{
    expect_refused("GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\n\r\n", 431);
}

Test(http_request, refuses_a_declared_body_over_the_limit_with_413)
{
    expect_refused("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n", 413);
}

Test(http_request, refuses_a_chunked_body_over_the_limit_with_413)
{
    char wire[400];
    snprintf(wire, sizeof wire, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             "65\r\n%0101d\r\n0\r\n\r\n", 0);
    expect_refused(wire, 413);
}

Test(http_request, eof_between_requests_is_clean)
{
    cr_assert_eq(fy_http_request_eof(&req), 0);
}

Test(http_request, eof_inside_a_request_is_an_error)
{
    cr_assert_eq(feed_str("GET / HT", NULL), FY_HTTP_FEED_MORE);
    cr_assert_eq(fy_http_request_eof(&req), -EPROTO);
    cr_assert_eq(req.error_status, 400);
}

Test(http_request, records_an_absolute_form_target)
{
    cr_assert_eq(feed_str("GET http://h:1/p HTTP/1.1\r\nHost: x\r\n\r\n", NULL), FY_HTTP_FEED_DONE);
    cr_assert_eq(req.target.form, FY_HTTP_TARGET_ABSOLUTE);
    cr_assert_eq(req.target.authority_len, 3);
}

Test(http_request, refuses_an_absolute_target_with_another_scheme)
{
    expect_refused("GET ftp://h/p HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

Test(http_request, accepts_asterisk_only_for_options)
{
    cr_assert_eq(feed_str("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", NULL), FY_HTTP_FEED_DONE);
    cr_assert_eq(req.target.form, FY_HTTP_TARGET_ASTERISK);
    fy_http_request_reset(&req);
    expect_refused("GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400);
}

Test(http_request, refuses_a_bad_host_value)
{
    expect_refused("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400);
}

Test(http_request, refuses_a_bad_host_value_in_http_10)
{
    expect_refused("GET / HTTP/1.0\r\nHost: u@a\r\n\r\n", 400);
}

Test(http_request, accepts_host_with_trailing_whitespace)
{
    cr_assert_eq(feed_str("GET / HTTP/1.1\r\nHost: a:80 \r\n\r\n", NULL), FY_HTTP_FEED_DONE);
}

Test(http_request, refuses_an_unknown_coding_before_chunked_with_501)
{
    expect_refused("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
}

Test(http_request, refuses_an_unknown_coding_in_a_second_header_with_501)
{
    expect_refused("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n", 501);
}

Test(http_request, refuses_chunked_that_is_not_final_with_400)
{
    expect_refused("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400);
}

Test(http_request, refuses_chunked_twice_with_400)
{
    expect_refused("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
                   400);
}

Test(http_request, refuses_an_empty_transfer_encoding_with_400)
{
    expect_refused("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: ,\r\n\r\n", 400);
}

Test(http_request, accepts_chunked_with_empty_list_elements)
{
    cr_assert_eq(feed_str("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: , chunked\r\n\r\n"
                          "0\r\n\r\n", NULL), FY_HTTP_FEED_DONE);
    cr_assert(req.chunked);
}

Test(http_request, refuses_transfer_encoding_in_http_10)
{
    expect_refused("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
}

Test(http_request, refuses_an_unknown_expectation_with_417)
{
    expect_refused("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nExpect: nope\r\n\r\n", 417);
}

Test(http_request, ignores_100_continue_from_http_10)
{
    cr_assert_eq(feed_str("POST / HTTP/1.0\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n",
                          NULL), FY_HTTP_FEED_MORE);
    cr_assert(req.headers_seen);
    cr_assert(!req.expect_continue);
}

Test(http_request, refuses_a_signed_or_listed_content_length)
{
    expect_refused("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", 400);
    fy_http_request_dispose(&req);
    fy_http_request_init(&req, &opts);
    expect_refused("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400);
    fy_http_request_dispose(&req);
    fy_http_request_init(&req, &opts);
    expect_refused("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n", 400);
}

Test(http_request, refuses_a_lowercase_method)
{
    expect_refused("get / HTTP/1.1\r\nHost: x\r\n\r\n", 400);
}

Test(http_request, an_unknown_uppercase_method_is_not_implemented)
{
    expect_refused("FOO / HTTP/1.1\r\nHost: x\r\n\r\n", 501);
}

Test(http_request, an_unknown_method_after_empty_lines_is_not_implemented)
{
    expect_refused("\r\nBREW-COFFEE /pot HTTP/1.1\r\nHost: x\r\n\r\n", 501);
}

Test(http_request, a_method_that_is_not_a_token_is_a_bad_request)
{
    expect_refused("G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400);
}

Test(http_request, an_overlong_unknown_method_is_not_implemented)
{
    expect_refused("FOOBARFOOBARFOOBARFOOBARFOOBARFOOBAR / HTTP/1.1\r\nHost: x\r\n\r\n", 501);
}

Test(http_request, an_overlong_lowercase_method_is_a_bad_request)
{
    expect_refused("FOOBARFOOBARFOOBARFOOBARFOOBARfoobar / HTTP/1.1\r\nHost: x\r\n\r\n", 400);
}

Test(http_request, an_unknown_method_sent_byte_by_byte_is_not_implemented)
{
    static const char wire[] = "FROB / HTTP/1.1\r\nHost: x\r\n\r\n";
    size_t used;
    int rc = FY_HTTP_FEED_MORE;
    size_t i = 0;
    for (; i < sizeof wire - 1 && rc == FY_HTTP_FEED_MORE; i++)
        rc = fy_http_request_feed(&req, wire + i, 1, &used);
    cr_assert_eq(rc, -EPROTO);
    cr_assert_eq(req.error_status, 501);
    cr_assert_eq(i, 5, "decided at the space after the method, after %zu bytes", i);
}

Test(http_request, a_lowercase_method_sent_byte_by_byte_is_a_bad_request)
{
    static const char wire[] = "get / HTTP/1.1\r\nHost: x\r\n\r\n";
    size_t used;
    int rc = FY_HTTP_FEED_MORE;
    for (size_t i = 0; i < sizeof wire - 1 && rc == FY_HTTP_FEED_MORE; i++)
        rc = fy_http_request_feed(&req, wire + i, 1, &used);
    cr_assert_eq(rc, -EPROTO);
    cr_assert_eq(req.error_status, 400);
}

Test(http_request, accepts_chunk_extensions_with_optional_whitespace)
{
    size_t used;
    const char *wire = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "5 ;a=b\r\nhello\r\n2;c = \"d\"\r\n!!\r\n0\r\n\r\nGET /2 HTTP/1.1\r\n";
    cr_assert_eq(feed_str(wire, &used), FY_HTTP_FEED_DONE);
    cr_assert_eq(used, strlen(wire) - strlen("GET /2 HTTP/1.1\r\n"));
    cr_assert_eq(req.body.len, 7);
    fy_http_request_reset(&req);
    cr_assert_eq(feed_str("GET /2 HTTP/1.1\r\nHost: x\r\n\r\n", NULL), FY_HTTP_FEED_DONE,
                 "the next request parses after a body ferry de-chunked itself");
    cr_assert(memcmp(fy_http_request_url(&req), "/2", 2) == 0);
}

Test(http_request, a_chunked_body_split_at_every_byte_decodes_the_same)
{
    const char *wire = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "3;x\r\nabc\r\n0\r\nT: 1\r\n\r\n";
    size_t len = strlen(wire);
    for (size_t i = 0; i < len; i++) {
        size_t used;
        int rc = fy_http_request_feed(&req, wire + i, 1, &used);
        cr_assert_eq(used, 1, "byte %zu", i);
        cr_assert_eq(rc, i + 1 == len ? FY_HTTP_FEED_DONE : FY_HTTP_FEED_MORE, "byte %zu", i);
    }
    cr_assert_eq(req.body.len, 3);
}

Test(http_request, framing_and_routing_fields_in_a_trailer_are_dropped_like_any_other)
{
    size_t used;
    const char *wire = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "0\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n";
    cr_assert_eq(feed_str(wire, &used), FY_HTTP_FEED_DONE);
    cr_assert_eq(req.trailer_count, 2);
    size_t len;
    cr_assert_null(fy_http_request_header(&req, "content-length", &len));
}

Test(http_request, refuses_a_repeated_singleton_field_with_400)
{
    expect_refused("GET / HTTP/1.1\r\nHost: x\r\nContent-Type: a\r\ncontent-type: b\r\n\r\n",
                   400);
    cr_assert_str_eq(req.error_reason, "more than one Content-Type header");
}

Test(http_request, a_repeated_list_field_is_accepted)
{
    cr_assert_eq(feed_str("GET / HTTP/1.1\r\nHost: x\r\nAccept: a\r\nAccept: b\r\n\r\n", NULL),
                 FY_HTTP_FEED_DONE);
}
