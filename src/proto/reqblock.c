/* Request header block: decoder and builder. See reqblock.h and docs/protocol.md. */
#include "reqblock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

int fy_reqblock_decode_size(const uint8_t prefix[4], uint32_t *size)
{
    uint32_t h = (uint32_t)prefix[0] << 24 | (uint32_t)prefix[1] << 16 |
                 (uint32_t)prefix[2] << 8 | (uint32_t)prefix[3];
    if (h > FY_REQBLOCK_MAX)
        return -EMSGSIZE;
    *size = h;
    return 0;
}

int fy_reqblock_parse(const char *block, size_t len, fy_reqblock_t *out)
{
    memset(out, 0, sizeof *out);
    if (len > FY_REQBLOCK_MAX)
        return -EMSGSIZE;
    if (len == 0)
        return 0;
    if (block[len - 1] != '\0')
        return -EPROTO;
    size_t items = 0;
    for (size_t i = 0; i < len; i++)
        items += block[i] == '\0';
    if (items % 2 != 0)
        return -EPROTO;
    /* items <= len <= FY_REQBLOCK_MAX: bounded before allocating. */
    fy_reqblock_pair_t *pairs = fy_xcalloc(items / 2, sizeof *pairs);
    size_t pos = 0;
    for (size_t i = 0; i < items / 2; i++) {
        size_t name_len = strlen(block + pos);
        if (name_len == 0) {
            free(pairs);
            return -EPROTO;
        }
        pairs[i].name = block + pos;
        pairs[i].name_len = name_len;
        pos += name_len + 1;
        size_t value_len = strlen(block + pos);
        pairs[i].value = block + pos;
        pairs[i].value_len = value_len;
        pos += value_len + 1;
    }
    out->count = items / 2;
    out->pairs = pairs;
    return 0;
}

int fy_reqblock_decode(const uint8_t *wire, size_t len, fy_reqblock_t *out, size_t *consumed)
{
    memset(out, 0, sizeof *out);
    *consumed = 0;
    if (len < 4)
        return -EAGAIN;
    uint32_t size;
    int rc = fy_reqblock_decode_size(wire, &size);
    if (rc < 0)
        return rc;
    if (len - 4 < size)
        return -EAGAIN;
    rc = fy_reqblock_parse((const char *)wire + 4, size, out);
    if (rc < 0)
        return rc;
    *consumed = 4 + (size_t)size;
    return 1;
}

void fy_reqblock_dispose(fy_reqblock_t *rb)
{
    free(rb->pairs);
    memset(rb, 0, sizeof *rb);
}

const char *fy_reqblock_get(const fy_reqblock_t *rb, const char *name, size_t *value_len)
{
    size_t name_len = strlen(name);
    for (size_t i = 0; i < rb->count; i++) {
        const fy_reqblock_pair_t *pair = &rb->pairs[i];
        if (pair->name_len == name_len && memcmp(pair->name, name, name_len) == 0) {
            if (value_len)
                *value_len = pair->value_len;
            return pair->value;
        }
    }
    return NULL;
}

/* Makes room for <extra> more bytes; the total never passes FY_REQBLOCK_MAX + 4. */
static void reserve(fy_reqblock_builder_t *b, size_t extra)
{
    size_t need = b->len + extra;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 512;
    while (cap < need)
        cap *= 2;
    if (cap > FY_REQBLOCK_MAX + 4)
        cap = FY_REQBLOCK_MAX + 4;
    b->buf = fy_xrealloc(b->buf, cap);
    b->cap = cap;
}

static void ensure_prefix(fy_reqblock_builder_t *b)
{
    if (b->len == 0) {
        reserve(b, 4);
        b->len = 4;
    }
}

int fy_reqblock_add(fy_reqblock_builder_t *b, const char *name, size_t name_len,
                    const char *value, size_t value_len)
{
    if (name_len == 0)
        return -EINVAL;
    size_t used = b->len ? b->len - 4 : 0;
    /* Lengths first (compared piecewise so huge ones cannot overflow the sum), so that nothing
     * scans past the limit. */
    if (name_len > FY_REQBLOCK_MAX || value_len > FY_REQBLOCK_MAX ||
        used + name_len + value_len + 2 > FY_REQBLOCK_MAX)
        return -EMSGSIZE;
    if (memchr(name, '\0', name_len) != NULL)
        return -EINVAL;
    if (value_len > 0 && memchr(value, '\0', value_len) != NULL)
        return -EINVAL;
    ensure_prefix(b);
    reserve(b, name_len + value_len + 2);
    memcpy(b->buf + b->len, name, name_len);
    b->len += name_len;
    b->buf[b->len++] = '\0';
    if (value_len > 0)
        memcpy(b->buf + b->len, value, value_len);
    b->len += value_len;
    b->buf[b->len++] = '\0';
    return 0;
}

int fy_reqblock_add_str(fy_reqblock_builder_t *b, const char *name, const char *value)
{
    return fy_reqblock_add(b, name, strlen(name), value, strlen(value));
}

void fy_reqblock_finish(fy_reqblock_builder_t *b, const uint8_t **out, size_t *out_len)
{
    ensure_prefix(b);
    uint32_t h = (uint32_t)(b->len - 4);
    b->buf[0] = (uint8_t)(h >> 24);
    b->buf[1] = (uint8_t)(h >> 16);
    b->buf[2] = (uint8_t)(h >> 8);
    b->buf[3] = (uint8_t)h;
    *out = b->buf;
    *out_len = b->len;
}

void fy_reqblock_builder_reset(fy_reqblock_builder_t *b)
{
    b->len = 0;
}

void fy_reqblock_builder_dispose(fy_reqblock_builder_t *b)
{
    free(b->buf);
    memset(b, 0, sizeof *b);
}
