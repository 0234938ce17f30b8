/* Fuzzes the MessageChannel incremental parser (src/proto/msgchan.h).
 *
 * Input: byte 0 chooses the mode (bit 0: array or scalar messages) and the feed chunk size (bits
 * 1..7, plus one), byte 1 the scalar maximum; the rest is the byte stream. Properties checked:
 * every array message decoded re-encodes to exactly the bytes it was parsed from; every scalar
 * equals its bytes on the wire; the parser never consumes more than it is given; EOF reports a
 * boundary exactly when no partial message is pending; fy_array_decode_payload agrees with the
 * parser about which payloads are valid. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "proto/msgchan.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_array(const uint8_t *wire, size_t wire_len, fy_array_t *msg)
{
    FY_ASSERT(msg->count >= 1);
    uint8_t *out = malloc(wire_len);
    ssize_t n = fy_array_encode((const char *const *)msg->items, msg->lens, msg->count, out,
                                wire_len);
    FY_ASSERT(n == (ssize_t)wire_len);
    FY_ASSERT(memcmp(out, wire, wire_len) == 0);
    free(out);

    fy_array_t again;
    FY_ASSERT(fy_array_decode_payload(wire + 2, wire_len - 2, &again) == 0);
    FY_ASSERT(again.count == msg->count);
    for (size_t i = 0; i < msg->count; i++) {
        FY_ASSERT(again.lens[i] == msg->lens[i]);
        FY_ASSERT(strlen(msg->items[i]) == msg->lens[i]);
    }
    fy_array_dispose(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int scalar = data[0] & 1;
    size_t chunk = (size_t)(data[0] >> 1) + 1;
    size_t scalar_max = (size_t)data[1] * 4;
    const uint8_t *stream = data + 2;
    size_t len = size - 2;

    fy_msgparser_t p;
    fy_msgparser_init(&p);
    if (scalar)
        FY_ASSERT(fy_msgparser_expect(&p, FY_MSG_SCALAR, scalar_max) == 0);

    size_t pos = 0, msg_start = 0;
    int rc = -EAGAIN;
    while (pos < len) {
        size_t n = len - pos < chunk ? len - pos : chunk;
        size_t consumed = 0;
        rc = fy_msgparser_feed(&p, stream + pos, n, &consumed);
        FY_ASSERT(consumed <= n);
        pos += consumed;
        if (rc == -EAGAIN) {
            FY_ASSERT(consumed == n);
            FY_ASSERT(fy_msgparser_wanted(&p) > 0);
            continue;
        }
        if (rc < 0) {
            FY_ASSERT(rc == -EPROTO || rc == -EMSGSIZE);
            FY_ASSERT(fy_msgparser_eof(&p) == -EPROTO);
            size_t again;
            FY_ASSERT(fy_msgparser_feed(&p, stream, len, &again) == rc && again == 0);
            break;
        }
        FY_ASSERT(rc == 1);
        const uint8_t *wire = stream + msg_start;
        size_t wire_len = pos - msg_start;
        if (scalar) {
            char *body;
            size_t body_len;
            FY_ASSERT(fy_msgparser_take_scalar(&p, &body, &body_len) == 0);
            FY_ASSERT(wire_len == 4 + body_len);
            FY_ASSERT(fy_scalar_decode_header(wire) == body_len);
            FY_ASSERT(body_len <= scalar_max);
            FY_ASSERT(memcmp(body, wire + 4, body_len) == 0);
            FY_ASSERT(body[body_len] == '\0');
            free(body);
        } else {
            fy_array_t msg;
            FY_ASSERT(fy_msgparser_take_array(&p, &msg) == 0);
            check_array(wire, wire_len, &msg);
            fy_array_dispose(&msg);
        }
        msg_start = pos;
    }
    if (rc == 1 || rc == -EAGAIN)
        FY_ASSERT(fy_msgparser_eof(&p) == (msg_start == len ? 0 : -EPROTO));
    fy_msgparser_dispose(&p);

    /* The one-shot decoder agrees with the parser's rule for payloads. */
    fy_array_t msg;
    int drc = fy_array_decode_payload(stream, len, &msg);
    if (len == 0 || stream[len - 1] != '\0')
        FY_ASSERT(drc == (len > FY_ARRAY_MAX_PAYLOAD ? -EMSGSIZE : -EPROTO));
    else if (len > FY_ARRAY_MAX_PAYLOAD)
        FY_ASSERT(drc == -EMSGSIZE);
    else
        FY_ASSERT(drc == 0);
    fy_array_dispose(&msg);
    return 0;
}
