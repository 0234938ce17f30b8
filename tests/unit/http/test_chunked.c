/* The chunked body decoder (src/http/chunked.c): the RFC 9112 §7.1 grammar with BWS around
 * extensions, every split point of the input, limits, trailer lines, and each refusal. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "http/chunked.h"

static char out[1 << 16];
static size_t out_len;
static size_t trailers[16];
static size_t trailer_count;
static int stop_after_data; /* the data sink refuses once this many bytes came; 0: never */

static int on_data(void *ctx, const char *at, size_t len)
{
    (void)ctx;
    cr_assert_leq(out_len + len, sizeof out);
    memcpy(out + out_len, at, len);
    out_len += len;
    return stop_after_data != 0 && out_len >= (size_t)stop_after_data;
}

static int on_trailer(void *ctx, size_t len)
{
    (void)ctx;
    cr_assert_lt(trailer_count, 16);
    trailers[trailer_count++] = len;
    return 0;
}

static const fy_http_chunked_sink_t sink = {.data = on_data, .trailer = on_trailer};

static void setup(void)
{
    out_len = 0;
    trailer_count = 0;
    stop_after_data = 0;
}

TestSuite(chunked, .init = setup);

/* Feeds <wire> in pieces of <step> bytes (0: all at once). Returns the last result; *used is
 * the total consumed, *reason the refusal. */
static int decode(const char *wire, size_t len, size_t step, size_t *used, const char **reason)
{
    fy_http_chunked_t d;
    fy_http_chunked_init(&d);
    out_len = 0;
    trailer_count = 0;
    size_t off = 0;
    int rc = FY_HTTP_CHUNKED_MORE;
    *reason = NULL;
    while (off < len) {
        size_t n = step == 0 || step > len - off ? len - off : step;
        size_t c = 0;
        rc = fy_http_chunked_feed(&d, wire + off, n, &c, &sink, reason);
        off += c;
        if (rc != FY_HTTP_CHUNKED_MORE)
            break;
        cr_assert_eq(c, n, "MORE consumes everything");
    }
    *used = off;
    return rc;
}

static void expect_body(const char *wire, const char *body, size_t ntrailers)
{
    size_t len = strlen(wire);
    for (size_t step = 0; step <= len; step = step == 0 ? 1 : step * 2 + 1) {
        size_t used;
        const char *reason;
        int rc = decode(wire, len, step, &used, &reason);
        cr_assert_eq(rc, FY_HTTP_CHUNKED_DONE, "step %zu: rc %d (%s) for %s", step, rc,
                     reason ? reason : "-", wire);
        cr_assert_eq(used, len, "step %zu", step);
        cr_assert_eq(out_len, strlen(body));
        cr_assert(memcmp(out, body, out_len) == 0);
        cr_assert_eq(trailer_count, ntrailers);
    }
}

static void expect_refused(const char *wire, int want_rc, const char *want_reason)
{
    size_t len = strlen(wire);
    for (size_t step = 0; step <= len; step = step == 0 ? 1 : step + 1) {
        size_t used;
        const char *reason;
        int rc = decode(wire, len, step, &used, &reason);
        cr_assert_eq(rc, want_rc, "step %zu: rc %d for %s", step, rc, wire);
        cr_assert_str_eq(reason, want_reason, "step %zu", step);
    }
}

Test(chunked, decodes_chunks_and_the_last_chunk)
{
    expect_body("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world", 0);
    expect_body("0\r\n\r\n", "", 0);
    expect_body("A\r\n0123456789\r\n000\r\n\r\n", "0123456789", 0);
    expect_body("00000000000000a\r\n0123456789\r\n0\r\n\r\n", "0123456789", 0);
}

Test(chunked, accepts_extensions_with_bws_around_semicolon_and_equals)
{
    expect_body("5;name=value\r\nhello\r\n0\r\n\r\n", "hello", 0);
    expect_body("5 ;name=value\r\nhello\r\n0\r\n\r\n", "hello", 0);
    expect_body("5\t; name = value\r\nhello\r\n0\r\n\r\n", "hello", 0);
    expect_body("5;name = value\r\nhello\r\n0\r\n\r\n", "hello", 0);
    expect_body("5;a;b=1 ; c = \"q \\\" x\"\r\nhello\r\n0;last\r\n\r\n", "hello", 0);
    expect_body("5;flag\r\nhello\r\n0 ; done = yes\r\n\r\n", "hello", 0);
}

Test(chunked, counts_and_drops_trailer_fields)
{
    expect_body("5\r\nhello\r\n0\r\nX-A: 1\r\nHost: evil\r\nContent-Length: 99\r\n\r\n", "hello",
                3);
    size_t used;
    const char *reason;
    decode("0\r\nX-A: 1\r\n\r\n", 14, 0, &used, &reason);
    cr_assert_eq(trailers[0], 6, "the line without its CRLF");
}

Test(chunked, stops_at_the_end_of_the_body)
{
    const char *wire = "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    size_t used;
    const char *reason;
    cr_assert_eq(decode(wire, strlen(wire), 0, &used, &reason), FY_HTTP_CHUNKED_DONE);
    cr_assert_eq(used, strlen("3\r\nabc\r\n0\r\n\r\n"), "the next request is left alone");
}

Test(chunked, refuses_malformed_sizes)
{
    expect_refused("zz\r\n", -EPROTO, "invalid chunk size");
    expect_refused("\r\n", -EPROTO, "invalid chunk size");
    expect_refused(" 5\r\n", -EPROTO, "invalid chunk size");
    expect_refused("5x\r\n", -EPROTO, "invalid chunk size");
    expect_refused("ffffffffffffffffff\r\n", -EPROTO, "chunk size too large");
    expect_refused("5\n", -EPROTO, "invalid chunk size");
    expect_refused("5\rX", -EPROTO, "CR without LF in a chunk size line");
}

Test(chunked, refuses_malformed_extensions)
{
    expect_refused("5 \r\n", -EPROTO, "invalid chunk extension");
    expect_refused("5;a=b \r\n", -EPROTO, "invalid chunk extension");
    expect_refused("5;\r\n", -EPROTO, "invalid chunk extension name");
    expect_refused("5;a \r\n", -EPROTO, "invalid chunk extension");
    expect_refused("5;a=\r\n", -EPROTO, "invalid chunk extension value");
    expect_refused("5;a=b\"\r\n", -EPROTO, "invalid chunk extension value");
    expect_refused("5;a=\"x\r\n", -EPROTO, "invalid character in a quoted chunk extension");
    expect_refused("5;a=\"x\"y\r\n", -EPROTO, "invalid chunk extension");
    expect_refused("5;a=\"\\\x01\"\r\n", -EPROTO, "invalid quoted-pair in a chunk extension");
    expect_refused("5;a@b\r\n", -EPROTO, "invalid chunk extension name");
}

Test(chunked, refuses_data_without_its_crlf)
{
    expect_refused("5\r\nhelloXX0\r\n\r\n", -EPROTO, "chunk data not followed by CRLF");
    expect_refused("5\r\nhello\rX", -EPROTO, "chunk data not followed by CRLF");
    expect_refused("5\r\nhello\n0\r\n\r\n", -EPROTO, "chunk data not followed by CRLF");
}

Test(chunked, refuses_malformed_trailers)
{
    expect_refused("0\r\n\n", -EPROTO, "bare LF in the trailer section");
    expect_refused("0\r\nX-A: 1\n\r\n", -EPROTO, "bare LF in the trailer section");
    expect_refused("0\r\nX-A: 1\r\n folded\r\n\r\n", -EPROTO,
                   "obsolete line folding in a trailer");
    expect_refused("0\r\nX A: 1\r\n\r\n", -EPROTO, "invalid character in a trailer field name");
    expect_refused("0\r\nX-A : 1\r\n\r\n", -EPROTO, "invalid character in a trailer field name");
    expect_refused("0\r\n:1\r\n\r\n", -EPROTO, "invalid character in a trailer field name");
    expect_refused("0\r\nX-A: a\x01b\r\n\r\n", -EPROTO,
                   "invalid character in a trailer field value");
    expect_refused("0\r\nX-A: 1\rX", -EPROTO, "CR without LF in the trailer section");
    expect_refused("0\r\n\rX", -EPROTO, "CR without LF at the end of the chunked body");
}

Test(chunked, refuses_lines_past_the_limit)
{
    static char wire[FY_HTTP_CHUNK_LINE_MAX + 64];
    int n = snprintf(wire, sizeof wire, "5;a=");
    memset(wire + n, 'x', FY_HTTP_CHUNK_LINE_MAX);
    wire[n + FY_HTTP_CHUNK_LINE_MAX] = '\0';
    size_t used;
    const char *reason;
    fy_http_chunked_t d;
    fy_http_chunked_init(&d);
    cr_assert_eq(decode(wire, strlen(wire), 0, &used, &reason), -EMSGSIZE);
    cr_assert_str_eq(reason, "chunk size line too long");

    n = snprintf(wire, sizeof wire, "0\r\nX-A: ");
    memset(wire + n, 'v', FY_HTTP_CHUNK_LINE_MAX);
    wire[n + FY_HTTP_CHUNK_LINE_MAX] = '\0';
    fy_http_chunked_init(&d);
    size_t c;
    cr_assert_eq(fy_http_chunked_feed(&d, wire, strlen(wire), &c, &sink, &reason), -EMSGSIZE);
    cr_assert_str_eq(reason, "trailer field too long");
    cr_assert(fy_http_chunked_in_trailer(&d));
}

Test(chunked, a_sink_that_refuses_stops_the_decoder)
{
    stop_after_data = 3;
    fy_http_chunked_t d;
    fy_http_chunked_init(&d);
    size_t c;
    const char *reason;
    const char *wire = "5\r\nhello\r\n0\r\n\r\n";
    cr_assert_eq(fy_http_chunked_feed(&d, wire, strlen(wire), &c, &sink, &reason), -ECANCELED);
    cr_assert_eq(c, 3, "consumed up to the refused data");
}
