/* MessageChannel codec (docs/protocol.md §1): array messages and scalar messages. Pure: no I/O,
 * no libuv. The blocking channel in src/ipc/channel.h and the libuv core both use this codec.
 *
 * Array message: u16 BE LEN, then LEN bytes, each item followed by one NUL. At least one item
 * (the message name); items may be empty and never contain NUL.
 * Scalar message: u32 BE LEN, then LEN raw bytes; readers enforce a caller-given maximum. */
#ifndef FY_PROTO_MSGCHAN_H
#define FY_PROTO_MSGCHAN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define FY_ARRAY_MAX_PAYLOAD 65535u

/* A decoded array message. Owns <data>; items[i] points into it, NUL-terminated, with length
 * lens[i]. An all-zero struct is a valid empty message. Free with fy_array_dispose. */
typedef struct fy_array {
    size_t count;
    char **items;
    size_t *lens;
    char *data;
} fy_array_t;

void fy_array_dispose(fy_array_t *msg);

/* Encodes an array message of <count> items (lens may be NULL: strlen is used) into <out> of
 * capacity <cap>. Returns the number of bytes written, -EINVAL when count is 0 or an item holds a
 * NUL, -EMSGSIZE when the payload passes FY_ARRAY_MAX_PAYLOAD or the wire form passes <cap>. */
ssize_t fy_array_encode(const char *const *items, const size_t *lens, size_t count, uint8_t *out,
                        size_t cap);

/* The wire size (2-byte length included) of the array message fy_array_encode would write, or
 * -EINVAL / -EMSGSIZE as fy_array_encode would return. */
ssize_t fy_array_encoded_len(const char *const *items, const size_t *lens, size_t count);

/* Decodes one complete array payload (without its 2-byte length) into <msg>. Returns 0, or
 * -EPROTO when the payload is empty or does not end in NUL, -EMSGSIZE when <len> passes
 * FY_ARRAY_MAX_PAYLOAD. Copies the payload. On error <msg> is left all-zero. */
int fy_array_decode_payload(const uint8_t *payload, size_t len, fy_array_t *msg);

/* Writes the 4-byte big-endian length prefix of a scalar message of <len> bytes. */
void fy_scalar_encode_header(uint8_t out[4], uint32_t len);
/* Reads the 4-byte big-endian length prefix of a scalar message. */
uint32_t fy_scalar_decode_header(const uint8_t in[4]);

typedef enum fy_msg_kind {
    FY_MSG_ARRAY = 1,
    FY_MSG_SCALAR = 2,
} fy_msg_kind_t;

/* Incremental parser: takes bytes as they arrive and yields one message at a time. The caller
 * says which kind comes next with fy_msgparser_expect (the protocol decides, not the bytes).
 * Allocates at most the announced length, after checking it against the maximum. */
typedef struct fy_msgparser {
    fy_msg_kind_t kind;
    size_t max_len;      /* scalar maximum; arrays are capped at FY_ARRAY_MAX_PAYLOAD */
    uint8_t header[4];
    size_t header_got;
    size_t body_len;
    size_t body_got;
    uint8_t *body;
    int done;            /* a complete message waits to be taken */
    int error;           /* the first error returned by feed; sticky */
} fy_msgparser_t;

/* Starts a parser expecting an array message (of at most FY_ARRAY_MAX_PAYLOAD bytes). */
void fy_msgparser_init(fy_msgparser_t *p);
/* Frees a partly received or untaken message. The parser may be initialised again. */
void fy_msgparser_dispose(fy_msgparser_t *p);

/* Sets what the next message is: FY_MSG_ARRAY, or FY_MSG_SCALAR of at most <max_len> bytes.
 * For arrays <max_len> lowers the payload limit (0 or anything above FY_ARRAY_MAX_PAYLOAD means
 * FY_ARRAY_MAX_PAYLOAD). Only at a message boundary: returns -EBUSY otherwise (also while a
 * complete message waits to be taken), -EINVAL for an unknown kind, the sticky error after one. */
int fy_msgparser_expect(fy_msgparser_t *p, fy_msg_kind_t kind, size_t max_len);

/* Feeds <len> bytes. Sets *consumed to the bytes used. Returns -EAGAIN when all were used and the
 * message is not complete yet, 1 when a message is complete (take it before feeding again; bytes
 * after it are left unconsumed; feeding while one waits consumes nothing and returns 1 again),
 * -EMSGSIZE when the announced length passes the maximum, -EPROTO when an array payload is
 * malformed (empty, or not ending in NUL), -ENOMEM when the announced body cannot be allocated.
 * After an error the parser is unusable: every later feed returns the same error. */
int fy_msgparser_feed(fy_msgparser_t *p, const uint8_t *data, size_t len, size_t *consumed);

/* How many bytes the parser needs to finish the part it is reading (the length prefix, then the
 * body); 0 while a complete message waits or after an error. A blocking reader asks for exactly
 * this many bytes, so it never reads past the end of a message. */
size_t fy_msgparser_wanted(const fy_msgparser_t *p);

/* Takes the completed message; the parser then waits for the next message of the same kind.
 * Return 0, or -EINVAL when no message is complete or the kind differs. take_scalar hands over a
 * heap buffer (*data, NUL-terminated for convenience, *len bytes) that the caller frees. */
int fy_msgparser_take_array(fy_msgparser_t *p, fy_array_t *msg);
int fy_msgparser_take_scalar(fy_msgparser_t *p, char **data, size_t *len);

/* At EOF: returns 0 when the parser stands at a message boundary (end of channel; a complete
 * message may still wait to be taken), -EPROTO when EOF fell inside a message (truncation) or
 * after an error. */
int fy_msgparser_eof(const fy_msgparser_t *p);

#endif
