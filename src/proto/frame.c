/* Session protocol v2 frame codec. See frame.h and docs/protocol.md §4.2.
 *
 * Every check the decoder makes needs only the 12 header bytes, so a reader refuses a bad frame
 * before it buffers a payload of up to 1 MiB for it. */
#include "frame.h"

#include <errno.h>

#include "core/alloc.h"

/* The type table of docs/protocol.md §4.2, indexed by type byte; a NULL name marks an unknown
 * type. This is the only place that says which types exist, their direction, their LEN limit and
 * their allowed flags. */
static const struct frame_kind {
    const char *name;
    fy_frame_dir_t dir;
    uint32_t max_payload;
    uint8_t flags;
} KINDS[256] = {
    [FY_FRAME_HELLO] = {"HELLO", FY_FRAME_TO_WORKER, FY_FRAME_SECRET_MAX, 0},
    [FY_FRAME_REQ] = {"REQ", FY_FRAME_TO_WORKER, FY_FRAME_BLOCK_MAX, 0},
    [FY_FRAME_BODY] = {"BODY", FY_FRAME_TO_WORKER, FY_FRAME_DATA_MAX, 0},
    [FY_FRAME_EOB] = {"EOB", FY_FRAME_TO_WORKER, 0, 0},
    [FY_FRAME_ABORT] = {"ABORT", FY_FRAME_TO_WORKER, 0, 0},
    [FY_FRAME_HEAD] = {"HEAD", FY_FRAME_TO_CORE, FY_FRAME_BLOCK_MAX, 0},
    [FY_FRAME_DATA] = {"DATA", FY_FRAME_TO_CORE, FY_FRAME_DATA_MAX, 0},
    [FY_FRAME_END] = {"END", FY_FRAME_TO_CORE, 0, FY_FRAME_END_FLAGS},
};

static bool known(uint8_t type)
{
    return KINDS[type].name != NULL;
}

uint32_t fy_frame_max_payload(uint8_t type)
{
    return KINDS[type].max_payload;
}

bool fy_frame_type_valid(uint8_t type, fy_frame_dir_t dir)
{
    return known(type) && KINDS[type].dir == dir;
}

const char *fy_frame_type_name(uint8_t type)
{
    return known(type) ? KINDS[type].name : "unknown";
}

static void put_u32(uint8_t *out, uint32_t v)
{
    out[0] = (uint8_t)(v >> 24);
    out[1] = (uint8_t)(v >> 16);
    out[2] = (uint8_t)(v >> 8);
    out[3] = (uint8_t)v;
}

static uint32_t get_u32(const uint8_t *in)
{
    return (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | (uint32_t)in[3];
}

void fy_frame_encode_header(uint8_t out[FY_FRAME_HEADER_LEN], uint8_t type, uint8_t flags,
                            uint32_t id, uint32_t len)
{
    /* A frame the decoder would refuse is a bug of the sender, never input to handle. */
    FY_ASSERT(known(type));
    FY_ASSERT((flags & ~KINDS[type].flags) == 0);
    FY_ASSERT(len <= KINDS[type].max_payload);
    put_u32(out, len);
    out[4] = type;
    out[5] = flags;
    out[6] = 0;
    out[7] = 0;
    put_u32(out + 8, id);
}

int fy_frame_decode(const uint8_t *buf, size_t len, fy_frame_dir_t dir, fy_frame_t *out,
                    size_t *consumed)
{
    *out = (fy_frame_t){0};
    *consumed = 0;
    if (len < FY_FRAME_HEADER_LEN)
        return -EAGAIN;
    uint32_t payload_len = get_u32(buf);
    uint8_t type = buf[4];
    uint8_t flags = buf[5];
    if (!fy_frame_type_valid(type, dir))
        return -EPROTO;
    if (buf[6] != 0 || buf[7] != 0)
        return -EPROTO;
    if ((flags & ~KINDS[type].flags) != 0)
        return -EPROTO;
    if (payload_len > KINDS[type].max_payload)
        return -EMSGSIZE;
    if (len - FY_FRAME_HEADER_LEN < payload_len)
        return -EAGAIN;
    out->type = type;
    out->flags = flags;
    out->id = get_u32(buf + 8);
    out->payload = buf + FY_FRAME_HEADER_LEN;
    out->len = payload_len;
    *consumed = FY_FRAME_HEADER_LEN + (size_t)payload_len;
    return 1;
}
