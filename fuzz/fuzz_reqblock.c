/* Fuzzes the request header block decoder and builder (src/proto/reqblock.h).
 *
 * The input is a wire form (4-byte size prefix, block, body). Properties checked: a block the
 * decoder accepts has non-empty names and NUL-free items, and the builder re-encodes it to
 * exactly the prefix and block it came from; fy_reqblock_decode and fy_reqblock_parse agree;
 * the decoder never reports more bytes than it was given; a refused block is refused for a
 * reason the format names (odd items, missing final NUL, empty name, size). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "proto/reqblock.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_reencodes(const fy_reqblock_t *rb, const uint8_t *wire, size_t wire_len)
{
    fy_reqblock_builder_t b = {0};
    for (size_t i = 0; i < rb->count; i++) {
        const fy_reqblock_pair_t *pair = &rb->pairs[i];
        FY_ASSERT(pair->name_len > 0);
        FY_ASSERT(strlen(pair->name) == pair->name_len);
        FY_ASSERT(strlen(pair->value) == pair->value_len);
        FY_ASSERT(fy_reqblock_add(&b, pair->name, pair->name_len, pair->value, pair->value_len) == 0);
    }
    const uint8_t *out;
    size_t out_len;
    fy_reqblock_finish(&b, &out, &out_len);
    FY_ASSERT(out_len == wire_len);
    FY_ASSERT(memcmp(out, wire, wire_len) == 0);
    fy_reqblock_builder_dispose(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fy_reqblock_t rb;
    size_t consumed = 12345;
    int rc = fy_reqblock_decode(data, size, &rb, &consumed);
    if (rc == 1) {
        FY_ASSERT(consumed >= 4 && consumed <= size);
        FY_ASSERT(consumed - 4 <= FY_REQBLOCK_MAX);
        check_reencodes(&rb, data, consumed);
        const char *first = rb.count ? fy_reqblock_get(&rb, rb.pairs[0].name, NULL) : NULL;
        FY_ASSERT(rb.count == 0 || first == rb.pairs[0].value);
        fy_reqblock_dispose(&rb);
    } else {
        FY_ASSERT(rc == -EAGAIN || rc == -EMSGSIZE || rc == -EPROTO);
        FY_ASSERT(consumed == 0);
        FY_ASSERT(rb.count == 0 && rb.pairs == NULL);
        if (rc == -EAGAIN) {
            uint32_t h;
            FY_ASSERT(size < 4 || (fy_reqblock_decode_size(data, &h) == 0 && size - 4 < h));
        }
    }

    /* The raw parser on the whole input: accepted exactly when the format allows it. */
    rc = fy_reqblock_parse((const char *)data, size, &rb);
    if (size > FY_REQBLOCK_MAX) {
        FY_ASSERT(rc == -EMSGSIZE);
        return 0;
    }
    size_t nuls = 0;
    int empty_name = 0;
    size_t item_start = 0;
    for (size_t i = 0; i < size; i++) {
        if (data[i] == '\0') {
            if (nuls % 2 == 0 && i == item_start)
                empty_name = 1;
            nuls++;
            item_start = i + 1;
        }
    }
    int valid = size == 0 || (data[size - 1] == '\0' && nuls % 2 == 0 && !empty_name);
    FY_ASSERT(rc == (valid ? 0 : -EPROTO));
    if (rc == 0) {
        FY_ASSERT(rb.count == nuls / 2);
        uint8_t *wire = malloc(size + 4);
        wire[0] = (uint8_t)(size >> 24);
        wire[1] = (uint8_t)(size >> 16);
        wire[2] = (uint8_t)(size >> 8);
        wire[3] = (uint8_t)size;
        if (size > 0)
            memcpy(wire + 4, data, size);
        check_reencodes(&rb, wire, size + 4);
        free(wire);
        fy_reqblock_dispose(&rb);
    }
    return 0;
}
