/* Fuzzes the PROXY protocol header parser (src/proto/proxy.h).
 *
 * Properties checked: every result is one of the documented ones; an accepted header's length is
 * at most the input and at most its version's maximum, and parsing exactly that many bytes gives
 * the same header while one byte less is "need more"; addresses, when present, are text that
 * inet_pton reads back in their family, ports fit 16 bits; -EAGAIN only for a prefix that could
 * still become a header (fy_proxy_maybe) below the maximum; a v1 header ends in CRLF. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "core/alloc.h"
#include "proto/proxy.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fy_proxy_header_t h;
    const char *why = NULL;
    int rc = fy_proxy_parse(data, size, &h, &why);
    FY_ASSERT(rc == 1 || rc == -EAGAIN || rc == -EMSGSIZE || rc == -EPROTO);
    FY_ASSERT(why != NULL);
    if (rc == -EAGAIN) {
        FY_ASSERT(fy_proxy_maybe(data, size));
        FY_ASSERT(size < FY_PROXY_V2_MAX);
        return 0;
    }
    if (rc != 1) {
        FY_ASSERT(why[0] != '\0');
        return 0;
    }
    FY_ASSERT(h.version == 1 || h.version == 2);
    FY_ASSERT(h.length <= size);
    FY_ASSERT(h.length <= (h.version == 1 ? FY_PROXY_V1_MAX : FY_PROXY_V2_MAX));
    if (h.version == 1)
        FY_ASSERT(h.length >= 2 && data[h.length - 2] == '\r' && data[h.length - 1] == '\n');
    if (h.has_addresses) {
        FY_ASSERT(h.family == AF_INET || h.family == AF_INET6);
        uint8_t bin[16];
        FY_ASSERT(inet_pton(h.family, h.src_addr, bin) == 1);
        FY_ASSERT(inet_pton(h.family, h.dst_addr, bin) == 1);
        FY_ASSERT(h.src_port <= 65535 && h.dst_port <= 65535);
    }
    fy_proxy_header_t again;
    FY_ASSERT(fy_proxy_parse(data, h.length, &again, &why) == 1);
    FY_ASSERT(memcmp(&again, &h, sizeof h) == 0);
    FY_ASSERT(fy_proxy_parse(data, h.length - 1, &again, &why) == -EAGAIN);
    return 0;
}
