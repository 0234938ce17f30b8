/* MessageChannel codec and incremental parser. See msgchan.h and docs/protocol.md. */
#include "msgchan.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

void fy_array_dispose(fy_array_t *msg)
{
    free(msg->items);
    free(msg->lens);
    free(msg->data);
    memset(msg, 0, sizeof *msg);
}

ssize_t fy_array_encoded_len(const char *const *items, const size_t *lens, size_t count)
{
    if (count == 0 || items == NULL)
        return -EINVAL;
    size_t payload = 0;
    for (size_t i = 0; i < count; i++) {
        if (items[i] == NULL)
            return -EINVAL;
        size_t len = lens ? lens[i] : strlen(items[i]);
        /* Checked one item at a time, so the sum cannot overflow; before the NUL scan, so
         * nothing scans past the limit. */
        if (len >= FY_ARRAY_MAX_PAYLOAD || payload + len + 1 > FY_ARRAY_MAX_PAYLOAD)
            return -EMSGSIZE;
        if (lens && memchr(items[i], '\0', len) != NULL)
            return -EINVAL;
        payload += len + 1;
    }
    return (ssize_t)(payload + 2);
}

ssize_t fy_array_encode(const char *const *items, const size_t *lens, size_t count, uint8_t *out,
                        size_t cap)
{
    ssize_t wire_len = fy_array_encoded_len(items, lens, count);
    if (wire_len < 0)
        return wire_len;
    if ((size_t)wire_len > cap)
        return -EMSGSIZE;
    size_t payload = (size_t)wire_len - 2;
    out[0] = (uint8_t)(payload >> 8);
    out[1] = (uint8_t)(payload & 0xff);
    size_t pos = 2;
    for (size_t i = 0; i < count; i++) {
        size_t len = lens ? lens[i] : strlen(items[i]);
        if (len > 0)
            memcpy(out + pos, items[i], len);
        pos += len;
        out[pos++] = '\0';
    }
    return wire_len;
}

/* Checks a payload: non-empty and ending in NUL (so every item is terminated). */
static int check_array_payload(const uint8_t *payload, size_t len)
{
    if (len > FY_ARRAY_MAX_PAYLOAD)
        return -EMSGSIZE;
    if (len == 0 || payload[len - 1] != '\0')
        return -EPROTO;
    return 0;
}

/* Splits a checked payload into items. Takes ownership of <data> (<len> bytes). */
static void split_array(char *data, size_t len, fy_array_t *msg)
{
    size_t count = 0;
    for (size_t i = 0; i < len; i++)
        count += data[i] == '\0';
    /* count <= len <= FY_ARRAY_MAX_PAYLOAD: bounded before allocating. */
    msg->items = fy_xcalloc(count, sizeof *msg->items);
    msg->lens = fy_xcalloc(count, sizeof *msg->lens);
    msg->data = data;
    msg->count = count;
    size_t start = 0, item = 0;
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\0') {
            msg->items[item] = data + start;
            msg->lens[item] = i - start;
            item++;
            start = i + 1;
        }
    }
}

int fy_array_decode_payload(const uint8_t *payload, size_t len, fy_array_t *msg)
{
    memset(msg, 0, sizeof *msg);
    int rc = check_array_payload(payload, len);
    if (rc < 0)
        return rc;
    char *data = fy_xmalloc(len);
    memcpy(data, payload, len);
    split_array(data, len, msg);
    return 0;
}

void fy_scalar_encode_header(uint8_t out[4], uint32_t len)
{
    out[0] = (uint8_t)(len >> 24);
    out[1] = (uint8_t)(len >> 16);
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
}

uint32_t fy_scalar_decode_header(const uint8_t in[4])
{
    return (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | (uint32_t)in[3];
}

/* ---- incremental parser ---- */

static size_t header_size(const fy_msgparser_t *p)
{
    return p->kind == FY_MSG_SCALAR ? 4 : 2;
}

static void reset_message(fy_msgparser_t *p)
{
    p->header_got = 0;
    p->body_len = 0;
    p->body_got = 0;
    p->body = NULL;
    p->done = 0;
}

void fy_msgparser_init(fy_msgparser_t *p)
{
    memset(p, 0, sizeof *p);
    p->kind = FY_MSG_ARRAY;
    p->max_len = FY_ARRAY_MAX_PAYLOAD;
}

void fy_msgparser_dispose(fy_msgparser_t *p)
{
    free(p->body);
    memset(p, 0, sizeof *p);
}

int fy_msgparser_expect(fy_msgparser_t *p, fy_msg_kind_t kind, size_t max_len)
{
    if (p->error)
        return p->error;
    if (kind != FY_MSG_ARRAY && kind != FY_MSG_SCALAR)
        return -EINVAL;
    if (p->done || p->header_got > 0)
        return -EBUSY;
    if (kind == FY_MSG_ARRAY && (max_len == 0 || max_len > FY_ARRAY_MAX_PAYLOAD))
        max_len = FY_ARRAY_MAX_PAYLOAD;
    p->kind = kind;
    p->max_len = max_len;
    return 0;
}

static int fail(fy_msgparser_t *p, int err)
{
    free(p->body);
    reset_message(p);
    p->error = err;
    return err;
}

/* The body is complete: validate it and mark the message done. */
static int complete(fy_msgparser_t *p)
{
    if (p->kind == FY_MSG_ARRAY) {
        int rc = check_array_payload(p->body, p->body_len);
        if (rc < 0)
            return fail(p, rc);
    } else {
        p->body[p->body_len] = '\0';
    }
    p->done = 1;
    return 1;
}

/* The length prefix is complete: check the announced length, then allocate. */
static int start_body(fy_msgparser_t *p)
{
    size_t len;
    if (p->kind == FY_MSG_SCALAR)
        len = fy_scalar_decode_header(p->header);
    else
        len = (size_t)p->header[0] << 8 | p->header[1];
    if (p->kind == FY_MSG_ARRAY && len == 0)
        return fail(p, -EPROTO);
    if (len > p->max_len)
        return fail(p, -EMSGSIZE);
    /* +1: scalars are handed out NUL-terminated. */
    p->body = malloc(len + 1);
    if (p->body == NULL)
        return fail(p, -ENOMEM);
    p->body_len = len;
    p->body_got = 0;
    if (len == 0)
        return complete(p);
    return -EAGAIN;
}

int fy_msgparser_feed(fy_msgparser_t *p, const uint8_t *data, size_t len, size_t *consumed)
{
    *consumed = 0;
    if (p->error)
        return p->error;
    if (p->done)
        return 1;
    size_t used = 0;
    size_t hsize = header_size(p);
    while (p->header_got < hsize) {
        if (used == len) {
            *consumed = used;
            return -EAGAIN;
        }
        p->header[p->header_got++] = data[used++];
        if (p->header_got == hsize) {
            int rc = start_body(p);
            *consumed = used;
            if (rc != -EAGAIN)
                return rc;
        }
    }
    size_t want = p->body_len - p->body_got;
    size_t take = len - used < want ? len - used : want;
    if (take > 0) {
        memcpy(p->body + p->body_got, data + used, take);
        p->body_got += take;
        used += take;
    }
    *consumed = used;
    if (p->body_got < p->body_len)
        return -EAGAIN;
    return complete(p);
}

size_t fy_msgparser_wanted(const fy_msgparser_t *p)
{
    if (p->error || p->done)
        return 0;
    size_t hsize = header_size(p);
    if (p->header_got < hsize)
        return hsize - p->header_got;
    return p->body_len - p->body_got;
}

int fy_msgparser_take_array(fy_msgparser_t *p, fy_array_t *msg)
{
    if (!p->done || p->kind != FY_MSG_ARRAY)
        return -EINVAL;
    memset(msg, 0, sizeof *msg);
    split_array((char *)p->body, p->body_len, msg);
    reset_message(p);
    return 0;
}

int fy_msgparser_take_scalar(fy_msgparser_t *p, char **data, size_t *len)
{
    if (!p->done || p->kind != FY_MSG_SCALAR)
        return -EINVAL;
    *data = (char *)p->body;
    *len = p->body_len;
    reset_message(p);
    return 0;
}

int fy_msgparser_eof(const fy_msgparser_t *p)
{
    if (p->error)
        return -EPROTO;
    if (p->done || p->header_got == 0)
        return 0;
    return -EPROTO;
}
