/* The PROXY protocol header (HAProxy's "The PROXY protocol", versions 1 and 2), load balancer →
 * core, at the start of a connection: who the real client is behind an L4 balancer. Pure; no
 * I/O. Fuzzed (fuzz/fuzz_proxy.c).
 *
 *   v1: "PROXY TCP4 <src> <dst> <sport> <dport>\r\n", TCP6 likewise, or "PROXY UNKNOWN...\r\n";
 *       at most FY_PROXY_V1_MAX (107) bytes including the CRLF.
 *   v2: the 12-byte signature "\r\n\r\n\0\r\nQUIT\n", version/command (0x20 LOCAL, 0x21 PROXY),
 *       family/transport (0x11 TCP over IPv4, 0x21 TCP over IPv6; others: the addresses are not
 *       used), a 16-bit big-endian length of what follows (addresses, then TLVs, which are
 *       skipped); at most FY_PROXY_V2_MAX bytes in all. */
#ifndef FY_PROTO_PROXY_H
#define FY_PROTO_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FY_PROXY_V1_MAX 107u
#define FY_PROXY_V2_MAX (16u + 2048u)

typedef struct fy_proxy_header {
    unsigned version;        /* 1 or 2 */
    bool has_addresses;      /* false: UNKNOWN, LOCAL, or a family other than TCP4/TCP6; the
                              * connection's own addresses stand */
    int family;              /* AF_INET or AF_INET6 when has_addresses */
    char src_addr[46];       /* text form, as inet_ntop writes it */
    char dst_addr[46];
    unsigned src_port, dst_port;
    size_t length;           /* bytes of the header: the connection's data starts there */
} fy_proxy_header_t;

/* Whether the <len> bytes at <data> could begin a PROXY header (v1 "PROXY " or the v2
 * signature, as far as they go). False for any HTTP request. */
bool fy_proxy_maybe(const uint8_t *data, size_t len);

/* Parses the PROXY header at the start of <data>. Returns 1 and fills <out> when complete;
 * -EAGAIN when more bytes are needed (fewer than the maximum so far); -EMSGSIZE when a v1 line
 * has no CRLF within FY_PROXY_V1_MAX bytes or a v2 length passes FY_PROXY_V2_MAX; -EPROTO when
 * malformed (no signature, a bad v1 protocol, address, port or separator, a v2 version other than
 * 2, an unknown command, an address block shorter than its family needs). <why> (may be NULL) is
 * set to a static reason on every error. */
int fy_proxy_parse(const uint8_t *data, size_t len, fy_proxy_header_t *out, const char **why);

#endif
