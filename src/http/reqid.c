/* Request ids (docs/operations.md, "Request ids"): the check of an id a trusted proxy sends, and
 * ferry's own, 128 random bits in hex. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/http_internal.h"

bool fy_http_request_id_valid(const char *id, size_t len)
{
    if (len == 0 || len > FY_HTTP_REQUEST_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.' || c == ':' || c == '+' || c == '/' ||
                  c == '=' || c == '@';
        if (!ok)
            return false;
    }
    return true;
}

/* splitmix64 (Steele, Lea, Flood 2014): a full-period generator whose outputs pass BigCrush;
 * seeded from getrandom, two outputs make an id that repeats only by chance (2^-128). Not a
 * secret: ids go into logs and responses. */
static uint64_t next64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void fy_http_request_id_generate(uint64_t *state, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t v[2] = {next64(state), next64(state)};
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 16; i++)
            out[k * 16 + i] = hex[(v[k] >> (60 - 4 * i)) & 0xf];
    }
    out[32] = '\0';
}
