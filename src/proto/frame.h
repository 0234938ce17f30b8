/* Session protocol v2 frames (docs/protocol.md §4): the one codec of the persistent, framed
 * core <-> worker connection. Every frame is a 12-byte header
 *
 *     u32 BE payload length | u8 type | u8 flags | u16 reserved (0) | u32 BE request id
 *
 * followed by the payload. Pure: no I/O, no allocation; used by the core (src/http/session.c),
 * the C worker runtime (src/worker/session.c) and the fuzzer. */
#ifndef FY_PROTO_FRAME_H
#define FY_PROTO_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FY_FRAME_HEADER_LEN 12u

/* Payload limits, per type (docs/protocol.md §4.2). A reader refuses a larger announced length
 * from the 12 header bytes alone, before reading the payload. */
#define FY_FRAME_SECRET_MAX 256u       /* HELLO */
#define FY_FRAME_BLOCK_MAX 131072u     /* REQ and HEAD (FY_REQBLOCK_MAX, FY_RESPHEAD_MAX) */
#define FY_FRAME_DATA_MAX 1048576u     /* BODY and DATA: 1 MiB */

/* Frame types. Core -> worker types have the high bit clear, worker -> core types set; a frame
 * that travels the wrong way is a protocol violation. HELLO is 0 so that a worker can tell a v2
 * connection from a v1 one by the fifth byte (docs/protocol.md §4.1). */
typedef enum fy_frame_type {
    FY_FRAME_HELLO = 0x00, /* core -> worker, id 0, payload: the connect password */
    FY_FRAME_REQ = 0x01,   /* the request block (name NUL value NUL ...), without a prefix */
    FY_FRAME_BODY = 0x02,  /* request body bytes */
    FY_FRAME_EOB = 0x03,   /* end of the request body; empty */
    FY_FRAME_ABORT = 0x04, /* the client left: no more HEAD/DATA for this id, then END; empty */
    FY_FRAME_HEAD = 0x81,  /* worker -> core: the response head (docs/protocol.md §3) */
    FY_FRAME_DATA = 0x82,  /* response body bytes */
    FY_FRAME_END = 0x83,   /* the response is complete (flags below); empty */
} fy_frame_type_t;

/* END flags; every other flag bit of every type must be 0. */
#define FY_FRAME_END_APP_FAILED 0x01u /* the app failed after the head: the body is cut */
#define FY_FRAME_END_CLOSING 0x02u    /* the worker exits after this request */
#define FY_FRAME_END_FLAGS (FY_FRAME_END_APP_FAILED | FY_FRAME_END_CLOSING)

/* Which way a frame travels; a decoder accepts only the types of its direction. */
typedef enum fy_frame_dir {
    FY_FRAME_TO_WORKER = 0,
    FY_FRAME_TO_CORE = 1,
} fy_frame_dir_t;

/* A decoded frame. <payload> borrows the decoder's input. */
typedef struct fy_frame {
    uint8_t type;
    uint8_t flags;
    uint32_t id;
    const uint8_t *payload;
    uint32_t len;
} fy_frame_t;

/* The largest payload a frame of <type> may carry, or 0 for the empty types (EOB, ABORT, END)
 * and for unknown types. */
uint32_t fy_frame_max_payload(uint8_t type);

/* Whether <type> is a known type that travels in direction <dir>. */
bool fy_frame_type_valid(uint8_t type, fy_frame_dir_t dir);

/* A short name of <type> for log lines: "HELLO", ..., "END", or "unknown". */
const char *fy_frame_type_name(uint8_t type);

/* Writes the 12-byte header of a frame into <out>. The payload (<len> bytes) is sent after it
 * by the caller, usually in the same writev. Asserts that the frame is valid: a known type,
 * flags allowed for it, <len> within its limit. */
void fy_frame_encode_header(uint8_t out[FY_FRAME_HEADER_LEN], uint8_t type, uint8_t flags,
                            uint32_t id, uint32_t len);

/* Decodes the frame at the start of the <len> bytes at <buf>, travelling in <dir>. Returns 1,
 * fills <out> (whose payload borrows <buf>) and sets *consumed to 12 + payload length; -EAGAIN
 * while the header or payload is incomplete; -EPROTO for an unknown type, a type of the other
 * direction, a non-zero reserved field, or flags not allowed for the type; -EMSGSIZE when the
 * announced payload passes the type's limit (known from the header alone). The checks that
 * need the header run as soon as its 12 bytes are present, before the payload has arrived. */
int fy_frame_decode(const uint8_t *buf, size_t len, fy_frame_dir_t dir, fy_frame_t *out,
                    size_t *consumed);

#endif
