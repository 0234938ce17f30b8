/* The request header block (docs/protocol.md §2), core → worker: u32 BE H, then H bytes of
 * "name NUL value NUL" pairs, then the body. Names non-empty, values may be empty;
 * H ≤ FY_REQBLOCK_MAX; an odd item count or a block not ending in NUL is malformed. Pure. */
#ifndef FY_PROTO_REQBLOCK_H
#define FY_PROTO_REQBLOCK_H

#include <stddef.h>
#include <stdint.h>

#define FY_REQBLOCK_MAX 131072u

typedef struct fy_reqblock_pair {
    const char *name;    /* NUL-terminated, points into the parsed block */
    size_t name_len;
    const char *value;   /* NUL-terminated, may be "" */
    size_t value_len;
} fy_reqblock_pair_t;

/* A parsed block. Borrows the block's bytes (they must outlive it); owns <pairs>. */
typedef struct fy_reqblock {
    size_t count;
    fy_reqblock_pair_t *pairs;
} fy_reqblock_t;

/* Reads the 4-byte size prefix. Returns 0 and sets *size, or -EMSGSIZE past FY_REQBLOCK_MAX. */
int fy_reqblock_decode_size(const uint8_t prefix[4], uint32_t *size);

/* Parses <len> bytes of block (without the prefix). Returns 0, -EMSGSIZE past FY_REQBLOCK_MAX,
 * -EPROTO when empty-named, odd, or not NUL-terminated. len 0 is a valid empty block. */
int fy_reqblock_parse(const char *block, size_t len, fy_reqblock_t *out);
void fy_reqblock_dispose(fy_reqblock_t *rb);

/* Decodes the wire form (4-byte prefix, then the block) at the start of <wire>, for readers that
 * receive it piecemeal. Returns 1 and sets *consumed to 4 + H (the body starts there), -EAGAIN
 * while fewer than 4 + H bytes are present, -EMSGSIZE when H passes FY_REQBLOCK_MAX (known from
 * the prefix alone), -EPROTO as fy_reqblock_parse. <out> borrows <wire>. */
int fy_reqblock_decode(const uint8_t *wire, size_t len, fy_reqblock_t *out, size_t *consumed);

/* The value of the first pair named <name> (exact, case-sensitive), or NULL. */
const char *fy_reqblock_get(const fy_reqblock_t *rb, const char *name, size_t *value_len);

/* Builds a block with its 4-byte prefix. An all-zero struct is a valid empty builder. */
typedef struct fy_reqblock_builder {
    uint8_t *buf;   /* 4-byte prefix space, then the pairs */
    size_t len;     /* bytes used including the prefix space */
    size_t cap;
} fy_reqblock_builder_t;

/* Appends one pair. Returns 0, -EINVAL for an empty name or a NUL inside name or value,
 * -EMSGSIZE when the block would pass FY_REQBLOCK_MAX (the builder is left unchanged). */
int fy_reqblock_add(fy_reqblock_builder_t *b, const char *name, size_t name_len,
                    const char *value, size_t value_len);
/* Convenience for NUL-terminated strings. */
int fy_reqblock_add_str(fy_reqblock_builder_t *b, const char *name, const char *value);

/* Fills the prefix and hands out the wire bytes (prefix + block): *out points into the builder,
 * valid until the builder is changed or disposed. */
void fy_reqblock_finish(fy_reqblock_builder_t *b, const uint8_t **out, size_t *out_len);
void fy_reqblock_builder_reset(fy_reqblock_builder_t *b);   /* keeps the buffer for reuse */
void fy_reqblock_builder_dispose(fy_reqblock_builder_t *b);

#endif
