/* Fuzzes the session protocol v2 frame decoder and header encoder (src/proto/frame.h).
 *
 * The input is a stream of frames, decoded from the start, frame after frame, once as the worker
 * reads it (core -> worker) and once as the core reads it (worker -> core). Properties checked for
 * every decoded frame: consumed == 12 + len; the payload borrows the input right after the
 * header; re-encoding the header with fy_frame_encode_header and appending the payload yields
 * exactly the bytes consumed. For the frame where decoding stops: the verdict is the one the
 * table of docs/protocol.md §4.2 gives (written out again here, independent of the codec's), and
 * a refusal needs only the 12 header bytes (the header alone gets the same error). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "proto/frame.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t get_u32(const uint8_t *in)
{
    return (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | (uint32_t)in[3];
}

/* What a decoder in <dir> must answer for the <size> bytes at <at>, per docs/protocol.md §4.2. */
static int expected_verdict(const uint8_t *at, size_t size, fy_frame_dir_t dir)
{
    if (size < FY_FRAME_HEADER_LEN)
        return -EAGAIN;
    uint8_t type = at[4];
    uint8_t flags = at[5];
    uint32_t limit;
    bool to_core = type & 0x80;
    switch (type) {
    case 0x00:
        limit = 256;
        break;
    case 0x01:
    case 0x81:
        limit = 131072;
        break;
    case 0x02:
    case 0x82:
        limit = 1048576;
        break;
    case 0x03:
    case 0x04:
    case 0x83:
        limit = 0;
        break;
    default:
        return -EPROTO;
    }
    if (to_core != (dir == FY_FRAME_TO_CORE))
        return -EPROTO;
    if (at[6] != 0 || at[7] != 0)
        return -EPROTO;
    if (flags != 0 && !(type == 0x83 && (flags & ~0x03u) == 0))
        return -EPROTO;
    uint32_t len = get_u32(at);
    if (len > limit)
        return -EMSGSIZE;
    return size - FY_FRAME_HEADER_LEN < len ? -EAGAIN : 1;
}

/* Room for the largest frame, static so that no run allocates. */
static uint8_t reencoded[FY_FRAME_HEADER_LEN + FY_FRAME_DATA_MAX];

static void check_reencodes(const fy_frame_t *f, const uint8_t *at, size_t consumed)
{
    FY_ASSERT(consumed == FY_FRAME_HEADER_LEN + (size_t)f->len);
    FY_ASSERT(f->payload == at + FY_FRAME_HEADER_LEN);
    fy_frame_encode_header(reencoded, f->type, f->flags, f->id, f->len);
    if (f->len > 0)
        memcpy(reencoded + FY_FRAME_HEADER_LEN, f->payload, f->len);
    FY_ASSERT(memcmp(reencoded, at, consumed) == 0);
}

/* The decoder's answer from the first 12 bytes at <at> only. */
static int header_only_verdict(const uint8_t *at, fy_frame_dir_t dir)
{
    fy_frame_t f;
    size_t consumed;
    return fy_frame_decode(at, FY_FRAME_HEADER_LEN, dir, &f, &consumed);
}

static void decode_stream(const uint8_t *data, size_t size, fy_frame_dir_t dir)
{
    size_t pos = 0;
    for (;;) {
        const uint8_t *at = data + pos;
        size_t left = size - pos;
        fy_frame_t f;
        size_t consumed;
        int rc = fy_frame_decode(at, left, dir, &f, &consumed);
        FY_ASSERT(rc == expected_verdict(at, left, dir));
        if (rc != 1) {
            if (rc != -EAGAIN)
                FY_ASSERT(header_only_verdict(at, dir) == rc);
            return;
        }
        FY_ASSERT(fy_frame_type_valid(f.type, dir));
        FY_ASSERT(f.len <= fy_frame_max_payload(f.type));
        FY_ASSERT(header_only_verdict(at, dir) == (f.len == 0 ? 1 : -EAGAIN));
        check_reencodes(&f, at, consumed);
        pos += consumed;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    decode_stream(data, size, FY_FRAME_TO_WORKER);
    decode_stream(data, size, FY_FRAME_TO_CORE);
    return 0;
}
