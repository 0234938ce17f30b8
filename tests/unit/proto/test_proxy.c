/* Unit tests of the PROXY protocol header parser (src/proto/proxy.c): v1 TCP4, TCP6 and UNKNOWN,
 * v2 PROXY over IPv4 and IPv6 with TLVs, LOCAL, other families; every prefix of a valid header
 * is "need more"; oversized v1 lines and v2 lengths; every malformation. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "proto/proxy.h"

static fy_proxy_header_t h;
static const char *why;

static int parse_text(const char *s)
{
    return fy_proxy_parse((const uint8_t *)s, strlen(s), &h, &why);
}

/* Every proper prefix of <data> is -EAGAIN; the whole is 1 with length <len>. */
static void expect_prefixes_need_more(const uint8_t *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        int rc = fy_proxy_parse(data, i, &h, &why);
        cr_assert_eq(rc, i == 0 ? -EPROTO : -EAGAIN, "prefix %zu: %d (%s)", i, rc, why);
    }
    cr_assert_eq(fy_proxy_parse(data, len, &h, &why), 1, "%s", why);
    cr_assert_eq(h.length, len);
}

Test(proxy, v1_tcp4)
{
    const char *s = "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\nGET / HTTP/1.1\r\n";
    cr_assert_eq(parse_text(s), 1, "%s", why);
    cr_assert_eq(h.version, 1);
    cr_assert(h.has_addresses);
    cr_assert_eq(h.family, AF_INET);
    cr_assert_str_eq(h.src_addr, "192.0.2.1");
    cr_assert_str_eq(h.dst_addr, "198.51.100.7");
    cr_assert_eq(h.src_port, 56324);
    cr_assert_eq(h.dst_port, 443);
    cr_assert_eq(h.length, strlen("PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n"));
    expect_prefixes_need_more((const uint8_t *)s, h.length);
}

Test(proxy, v1_tcp6_canonical_text)
{
    cr_assert_eq(parse_text("PROXY TCP6 2001:DB8:0:0::1 ::1 0 65535\r\n"), 1, "%s", why);
    cr_assert_eq(h.family, AF_INET6);
    cr_assert_str_eq(h.src_addr, "2001:db8::1");
    cr_assert_str_eq(h.dst_addr, "::1");
    cr_assert_eq(h.src_port, 0);
    cr_assert_eq(h.dst_port, 65535);
}

Test(proxy, v1_unknown)
{
    cr_assert_eq(parse_text("PROXY UNKNOWN\r\n"), 1);
    cr_assert(!h.has_addresses);
    cr_assert_eq(h.length, 15);
    cr_assert_eq(parse_text("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nrest"), 1);
    cr_assert(!h.has_addresses);
}

Test(proxy, v1_longest_and_too_long)
{
    /* The spec's worst case: 107 bytes, UNKNOWN with full-length IPv6 addresses. */
    const char *longest = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                          "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    cr_assert_eq(strlen(longest), FY_PROXY_V1_MAX);
    cr_assert_eq(parse_text(longest), 1, "%s", why);
    char line[200];
    memset(line, 'x', sizeof line);
    memcpy(line, "PROXY TCP4 ", 11);
    cr_assert_eq(fy_proxy_parse((const uint8_t *)line, FY_PROXY_V1_MAX - 1, &h, &why), -EAGAIN);
    cr_assert_eq(fy_proxy_parse((const uint8_t *)line, FY_PROXY_V1_MAX, &h, &why), -EMSGSIZE);
    cr_assert_eq(fy_proxy_parse((const uint8_t *)line, sizeof line, &h, &why), -EMSGSIZE);
    cr_assert_str_eq(why, "v1: no CRLF within 107 bytes");
}

Test(proxy, v1_malformed)
{
    static const char *const bad[] = {
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",          /* LF without CR */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",      /* CR inside */
        "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",        /* protocol */
        "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY UNKNOWNX\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",          /* three fields */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",      /* five */
        "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",       /* two spaces */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",       /* trailing space */
        "PROXY TCP4 ::1 5.6.7.8 1 2\r\n",            /* v6 in TCP4 */
        "PROXY TCP6 1.2.3.4 ::1 1 2\r\n",            /* v4 in TCP6 */
        "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",    /* ports */
        "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2x\r\n",
        "PROXY \r\n",
        "PROXY\r\n",                                   /* no space: no signature */
        "GET / HTTP/1.1\r\n",
        "\r\n\r\n\x01",                                /* a v2 signature that goes wrong */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(parse_text(bad[i]), -EPROTO, "%s", bad[i]);
        cr_assert(why != NULL && why[0] != '\0');
    }
    const char nul[] = "PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n";
    cr_assert_eq(fy_proxy_parse((const uint8_t *)nul, sizeof nul - 1, &h, &why), -EPROTO);
}

static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* A v2 header: signature, <ver_cmd>, <fam>, a length of <body_len>, then <body>. */
static size_t v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *body, size_t body_len)
{
    memcpy(out, sig, 12);
    out[12] = ver_cmd;
    out[13] = fam;
    out[14] = (uint8_t)(body_len >> 8);
    out[15] = (uint8_t)body_len;
    if (body_len)
        memcpy(out + 16, body, body_len);
    return 16 + body_len;
}

Test(proxy, v2_ipv4_with_tlvs)
{
    uint8_t body[12 + 7] = {192, 0, 2, 1, 198, 51, 100, 7, 0xdc, 0x04, 0x01, 0xbb,
                            /* a TLV (PP2_TYPE_ALPN "h2"), skipped */ 0x01, 0x00, 0x02, 'h', '2',
                            0x04, 0x00};
    uint8_t buf[64];
    size_t n = v2(buf, 0x21, 0x11, body, sizeof body);
    expect_prefixes_need_more(buf, n);
    cr_assert_eq(h.version, 2);
    cr_assert(h.has_addresses);
    cr_assert_eq(h.family, AF_INET);
    cr_assert_str_eq(h.src_addr, "192.0.2.1");
    cr_assert_str_eq(h.dst_addr, "198.51.100.7");
    cr_assert_eq(h.src_port, 56324);
    cr_assert_eq(h.dst_port, 443);
}

Test(proxy, v2_ipv6)
{
    uint8_t body[36] = {0};
    body[0] = 0x20;
    body[1] = 0x01;
    body[2] = 0x0d;
    body[3] = 0xb8;
    body[15] = 1;
    body[31] = 1;
    body[32] = 0x12;
    body[33] = 0x34;
    body[35] = 80;
    uint8_t buf[64];
    size_t n = v2(buf, 0x21, 0x21, body, sizeof body);
    cr_assert_eq(fy_proxy_parse(buf, n, &h, &why), 1, "%s", why);
    cr_assert_eq(h.family, AF_INET6);
    cr_assert_str_eq(h.src_addr, "2001:db8::1");
    cr_assert_str_eq(h.dst_addr, "::1");
    cr_assert_eq(h.src_port, 0x1234);
    cr_assert_eq(h.dst_port, 80);
}

Test(proxy, v2_local_and_other_families_keep_the_connections_addresses)
{
    uint8_t buf[128];
    size_t n = v2(buf, 0x20, 0x00, NULL, 0);
    cr_assert_eq(fy_proxy_parse(buf, n, &h, &why), 1);
    cr_assert(!h.has_addresses);
    cr_assert_eq(h.length, 16);
    uint8_t any[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    static const uint8_t families[] = {0x00, 0x12, 0x22, 0x31, 0x32};
    for (size_t i = 0; i < sizeof families; i++) {
        n = v2(buf, 0x21, families[i], any, sizeof any);
        cr_assert_eq(fy_proxy_parse(buf, n, &h, &why), 1, "family %#x", families[i]);
        cr_assert(!h.has_addresses);
    }
    n = v2(buf, 0x20, 0x11, any, sizeof any);   /* LOCAL ignores its addresses */
    cr_assert_eq(fy_proxy_parse(buf, n, &h, &why), 1);
    cr_assert(!h.has_addresses);
}

Test(proxy, v2_refusals)
{
    uint8_t buf[FY_PROXY_V2_MAX + 64];
    uint8_t body[40] = {0};
    size_t n = v2(buf, 0x11, 0x11, body, 12);
    cr_assert_eq(fy_proxy_parse(buf, n, &h, &why), -EPROTO);
    cr_assert_str_eq(why, "v2: the version is not 2");
    n = v2(buf, 0x22, 0x11, body, 12);
    cr_assert_eq(fy_proxy_parse(buf, n, &h, &why), -EPROTO);
    cr_assert_str_eq(why, "v2: the command is neither LOCAL nor PROXY");
    n = v2(buf, 0x21, 0x11, body, 11);
    cr_assert_eq(fy_proxy_parse(buf, n, &h, &why), -EPROTO);
    cr_assert_str_eq(why, "v2: the IPv4 address block is shorter than 12 bytes");
    n = v2(buf, 0x21, 0x21, body, 35);
    cr_assert_eq(fy_proxy_parse(buf, n, &h, &why), -EPROTO);
    cr_assert_str_eq(why, "v2: the IPv6 address block is shorter than 36 bytes");
    /* Oversized: refused from the length alone, before the body arrives. */
    v2(buf, 0x21, 0x11, body, 0);
    buf[14] = (uint8_t)((FY_PROXY_V2_MAX - 16 + 1) >> 8);
    buf[15] = (uint8_t)(FY_PROXY_V2_MAX - 16 + 1);
    cr_assert_eq(fy_proxy_parse(buf, 16, &h, &why), -EMSGSIZE);
    buf[14] = (uint8_t)((FY_PROXY_V2_MAX - 16) >> 8);
    buf[15] = (uint8_t)(FY_PROXY_V2_MAX - 16);
    memset(buf + 16, 0, FY_PROXY_V2_MAX - 16);
    cr_assert_eq(fy_proxy_parse(buf, 16, &h, &why), -EAGAIN);
    cr_assert_eq(fy_proxy_parse(buf, FY_PROXY_V2_MAX, &h, &why), 1, "%s", why);
    buf[14] = buf[15] = 0xff;
    cr_assert_eq(fy_proxy_parse(buf, sizeof buf, &h, &why), -EMSGSIZE);
    /* A signature that differs in its last byte */
    memcpy(buf, sig, 12);
    buf[11] = 'X';
    cr_assert_eq(fy_proxy_parse(buf, 16, &h, &why), -EPROTO);
}

Test(proxy, maybe)
{
    cr_assert(fy_proxy_maybe((const uint8_t *)"PRO", 3));
    cr_assert(fy_proxy_maybe((const uint8_t *)"PROXY TCP4", 10));
    cr_assert(fy_proxy_maybe(sig, 5));
    cr_assert(!fy_proxy_maybe((const uint8_t *)"GET /", 5));
    cr_assert(!fy_proxy_maybe((const uint8_t *)"PROPFIND / HTTP/1.1", 19));
    cr_assert(!fy_proxy_maybe((const uint8_t *)"", 0));
}
