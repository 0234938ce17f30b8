/* The PROXY protocol header, v1 and v2 (see proxy.h). */
#include "proto/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static const uint8_t v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                   0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
static const char v1_sig[6] = "PROXY ";

static int fail(const char **why, const char *reason, int rc)
{
    if (why != NULL)
        *why = reason;
    return rc;
}

bool fy_proxy_maybe(const uint8_t *data, size_t len)
{
    if (len == 0)
        return false;
    if (memcmp(data, v1_sig, len < sizeof v1_sig ? len : sizeof v1_sig) == 0)
        return true;
    return memcmp(data, v2_sig, len < sizeof v2_sig ? len : sizeof v2_sig) == 0;
}

/* One space-terminated field of a v1 line at *p (before <end>); advances past the space (or to
 * <end> for the last field, <last>). Returns its length, or 0 when empty or unterminated. */
static size_t v1_field(const char **p, const char *end, bool last, const char **start)
{
    *start = *p;
    const char *q = *p;
    while (q < end && *q != ' ')
        q++;
    size_t n = (size_t)(q - *p);
    if (n == 0 || (!last && q == end) || (last && q != end))
        return 0;
    *p = last ? q : q + 1;
    return n;
}

/* A decimal port without sign or leading zeros ("0" alone is allowed). */
static bool v1_port(const char *s, size_t n, unsigned *out)
{
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    *out = v;
    return true;
}

static bool v1_addr(int family, const char *s, size_t n, char *out)
{
    char text[46];
    if (n >= sizeof text)
        return false;
    memcpy(text, s, n);
    text[n] = '\0';
    uint8_t bin[16];
    if (inet_pton(family, text, bin) != 1)
        return false;
    /* the canonical text, as a socket's own address would be shown */
    return inet_ntop(family, bin, out, 46) != NULL;
}

static int parse_v1(const uint8_t *data, size_t len, fy_proxy_header_t *out, const char **why)
{
    const char *s = (const char *)data;
    size_t scan = len < FY_PROXY_V1_MAX ? len : FY_PROXY_V1_MAX;
    const char *lf = memchr(s, '\n', scan);
    if (lf == NULL) {
        if (len >= FY_PROXY_V1_MAX)
            return fail(why, "v1: no CRLF within 107 bytes", -EMSGSIZE);
        return fail(why, "v1: incomplete", -EAGAIN);
    }
    if (lf == s || lf[-1] != '\r')
        return fail(why, "v1: the line does not end in CRLF", -EPROTO);
    const char *end = lf - 1;   /* the CR */
    for (const char *c = s; c < end; c++) {
        if (*c == '\r' || *c == '\0')
            return fail(why, "v1: CR or NUL inside the line", -EPROTO);
    }
    out->version = 1;
    out->length = (size_t)(lf - s) + 1;
    const char *p = s + sizeof v1_sig;
    if (end - p >= 7 && memcmp(p, "UNKNOWN", 7) == 0 && (end - p == 7 || p[7] == ' ')) {
        out->has_addresses = false;   /* the rest of the line is ignored, as the spec says */
        return 1;
    }
    int family;
    if (end - p >= 5 && memcmp(p, "TCP4 ", 5) == 0)
        family = AF_INET;
    else if (end - p >= 5 && memcmp(p, "TCP6 ", 5) == 0)
        family = AF_INET6;
    else
        return fail(why, "v1: the protocol is not TCP4, TCP6 or UNKNOWN", -EPROTO);
    p += 5;
    const char *f[4];
    size_t n[4];
    for (int i = 0; i < 4; i++) {
        n[i] = v1_field(&p, end, i == 3, &f[i]);
        if (n[i] == 0)
            return fail(why, "v1: not four fields separated by single spaces", -EPROTO);
    }
    if (!v1_addr(family, f[0], n[0], out->src_addr) || !v1_addr(family, f[1], n[1], out->dst_addr))
        return fail(why, "v1: an address is not one of its family", -EPROTO);
    if (!v1_port(f[2], n[2], &out->src_port) || !v1_port(f[3], n[3], &out->dst_port))
        return fail(why, "v1: a port is not a number from 0 to 65535", -EPROTO);
    out->family = family;
    out->has_addresses = true;
    return 1;
}

static int parse_v2(const uint8_t *data, size_t len, fy_proxy_header_t *out, const char **why)
{
    if (len < 16)
        return fail(why, "v2: incomplete", -EAGAIN);
    uint8_t ver_cmd = data[12], fam = data[13];
    size_t body = ((size_t)data[14] << 8) | data[15];
    if ((ver_cmd >> 4) != 2)
        return fail(why, "v2: the version is not 2", -EPROTO);
    unsigned cmd = ver_cmd & 0x0f;
    if (cmd > 1)
        return fail(why, "v2: the command is neither LOCAL nor PROXY", -EPROTO);
    if (16 + body > FY_PROXY_V2_MAX)
        return fail(why, "v2: longer than 2064 bytes", -EMSGSIZE);
    if (len < 16 + body)
        return fail(why, "v2: incomplete", -EAGAIN);
    out->version = 2;
    out->length = 16 + body;
    out->has_addresses = false;
    if (cmd == 0)
        return 1;   /* LOCAL: the balancer's own connection (a health check) */
    const uint8_t *a = data + 16;
    if (fam == 0x11) {
        if (body < 12)
            return fail(why, "v2: the IPv4 address block is shorter than 12 bytes", -EPROTO);
        inet_ntop(AF_INET, a, out->src_addr, sizeof out->src_addr);
        inet_ntop(AF_INET, a + 4, out->dst_addr, sizeof out->dst_addr);
        out->src_port = ((unsigned)a[8] << 8) | a[9];
        out->dst_port = ((unsigned)a[10] << 8) | a[11];
        out->family = AF_INET;
        out->has_addresses = true;
    } else if (fam == 0x21) {
        if (body < 36)
            return fail(why, "v2: the IPv6 address block is shorter than 36 bytes", -EPROTO);
        inet_ntop(AF_INET6, a, out->src_addr, sizeof out->src_addr);
        inet_ntop(AF_INET6, a + 16, out->dst_addr, sizeof out->dst_addr);
        out->src_port = ((unsigned)a[32] << 8) | a[33];
        out->dst_port = ((unsigned)a[34] << 8) | a[35];
        out->family = AF_INET6;
        out->has_addresses = true;
    }
    /* UNSPEC, UDP, Unix: the addresses are not used; the connection's own stand. */
    return 1;
}

int fy_proxy_parse(const uint8_t *data, size_t len, fy_proxy_header_t *out, const char **why)
{
    memset(out, 0, sizeof *out);
    if (why != NULL)
        *why = "";
    if (len >= sizeof v2_sig && memcmp(data, v2_sig, sizeof v2_sig) == 0)
        return parse_v2(data, len, out, why);
    if (len >= sizeof v1_sig && memcmp(data, v1_sig, sizeof v1_sig) == 0)
        return parse_v1(data, len, out, why);
    if (fy_proxy_maybe(data, len))
        return fail(why, "incomplete signature", -EAGAIN);
    return fail(why, "no PROXY protocol signature", -EPROTO);
}
