/* A small SHA-256 (FIPS 180-4) for the conformance app's POST /sha256 route. */
#ifndef CONFORMANCE_SHA256_H
#define CONFORMANCE_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct sha256 {
    uint32_t state[8];
    uint64_t total;
    uint8_t block[64];
    size_t block_len;
} sha256_t;

void sha256_init(sha256_t *s);
void sha256_update(sha256_t *s, const void *data, size_t len);
/* Writes the digest as 64 lowercase hex digits and a NUL into <hex>. */
void sha256_final_hex(sha256_t *s, char hex[65]);

#endif
