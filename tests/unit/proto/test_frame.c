/* Unit tests of the session protocol v2 frame codec (src/proto/frame.c, docs/protocol.md §4.2). */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/frame.h"
#include "leak_check.h"

TestSuite(frame, .fini = fy_test_leak_check);

/* The table of docs/protocol.md §4.2, written out again so that the codec's own table is checked
 * against the document rather than against itself. */
static const struct {
    uint8_t type;
    fy_frame_dir_t dir;
    uint32_t limit;
    const char *name;
} TYPES[] = {
    {0x00, FY_FRAME_TO_WORKER, 256, "HELLO"},    {0x01, FY_FRAME_TO_WORKER, 131072, "REQ"},
    {0x02, FY_FRAME_TO_WORKER, 1048576, "BODY"}, {0x03, FY_FRAME_TO_WORKER, 0, "EOB"},
    {0x04, FY_FRAME_TO_WORKER, 0, "ABORT"},      {0x81, FY_FRAME_TO_CORE, 131072, "HEAD"},
    {0x82, FY_FRAME_TO_CORE, 1048576, "DATA"},   {0x83, FY_FRAME_TO_CORE, 0, "END"},
};
#define NTYPES (sizeof TYPES / sizeof TYPES[0])

static fy_frame_dir_t other(fy_frame_dir_t dir)
{
    return dir == FY_FRAME_TO_WORKER ? FY_FRAME_TO_CORE : FY_FRAME_TO_WORKER;
}

/* A header written by hand, independent of the encoder. */
static void raw_header(uint8_t out[12], uint32_t len, uint8_t type, uint8_t flags,
                       uint16_t reserved, uint32_t id)
{
    out[0] = (uint8_t)(len >> 24);
    out[1] = (uint8_t)(len >> 16);
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    out[4] = type;
    out[5] = flags;
    out[6] = (uint8_t)(reserved >> 8);
    out[7] = (uint8_t)reserved;
    out[8] = (uint8_t)(id >> 24);
    out[9] = (uint8_t)(id >> 16);
    out[10] = (uint8_t)(id >> 8);
    out[11] = (uint8_t)id;
}

/* A whole frame of <type> with <len> payload bytes 0, 1, 2, ...; the caller frees it. */
static uint8_t *frame_of(uint8_t type, uint8_t flags, uint32_t id, uint32_t len)
{
    uint8_t *wire = malloc(FY_FRAME_HEADER_LEN + (size_t)len);
    raw_header(wire, len, type, flags, 0, id);
    for (uint32_t i = 0; i < len; i++)
        wire[FY_FRAME_HEADER_LEN + i] = (uint8_t)i;
    return wire;
}

/* A payload length that shows every header byte at work, within the type's limit. */
static uint32_t sample_len(uint32_t limit)
{
    return limit < 5 ? limit : 5;
}

static int decode(const uint8_t *buf, size_t len, fy_frame_dir_t dir)
{
    fy_frame_t f;
    size_t consumed;
    return fy_frame_decode(buf, len, dir, &f, &consumed);
}

Test(frame, every_type_round_trips_in_its_direction)
{
    for (size_t i = 0; i < NTYPES; i++) {
        uint8_t flags = TYPES[i].type == FY_FRAME_END ? FY_FRAME_END_FLAGS : 0;
        uint32_t len = sample_len(TYPES[i].limit);
        uint8_t *wire = frame_of(TYPES[i].type, flags, 0x01020304, len);
        fy_frame_t f;
        size_t consumed = 0;
        cr_assert_eq(fy_frame_decode(wire, 12 + len, TYPES[i].dir, &f, &consumed), 1, "%s",
                     TYPES[i].name);
        cr_assert_eq(consumed, 12 + len);
        cr_assert_eq(f.type, TYPES[i].type);
        cr_assert_eq(f.flags, flags);
        cr_assert_eq(f.id, 0x01020304);
        cr_assert_eq(f.len, len);
        cr_assert_eq(f.payload, wire + 12, "the payload borrows the input");

        uint8_t again[12 + 5];
        fy_frame_encode_header(again, f.type, f.flags, f.id, f.len);
        memcpy(again + 12, f.payload, f.len);
        cr_assert_arr_eq(again, wire, 12 + len, "%s", TYPES[i].name);
        free(wire);
    }
}

Test(frame, encoder_writes_the_headers_of_the_docs_example)
{
    /* docs/protocol.md §4.5: HELLO with LEN 32, REQ(1) with LEN 31, END(1). */
    static const uint8_t hello[12] = {0, 0, 0, 0x20, 0x00, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t req[12] = {0, 0, 0, 0x1f, 0x01, 0, 0, 0, 0, 0, 0, 1};
    static const uint8_t end[12] = {0, 0, 0, 0, 0x83, 0, 0, 0, 0, 0, 0, 1};
    uint8_t out[12];
    fy_frame_encode_header(out, FY_FRAME_HELLO, 0, 0, 32);
    cr_assert_arr_eq(out, hello, 12);
    fy_frame_encode_header(out, FY_FRAME_REQ, 0, 1, 31);
    cr_assert_arr_eq(out, req, 12);
    fy_frame_encode_header(out, FY_FRAME_END, 0, 1, 0);
    cr_assert_arr_eq(out, end, 12);
}

Test(frame, encoder_writes_length_and_id_big_endian)
{
    static const uint8_t want[12] = {0x00, 0x10, 0x00, 0x00, 0x82, 0x00,
                                     0x00, 0x00, 0xde, 0xad, 0xbe, 0xef};
    uint8_t out[12];
    fy_frame_encode_header(out, FY_FRAME_DATA, 0, 0xdeadbeef, FY_FRAME_DATA_MAX);
    cr_assert_arr_eq(out, want, 12);
}

Test(frame, decodes_the_worker_stream_of_the_docs_example)
{
    /* docs/protocol.md §4.5, worker → core: HEAD(1), DATA(1) "hello", END(1). */
    static const char stream[] = "\x00\x00\x00\x12\x81\x00\x00\x00\x00\x00\x00\x01"
                                 "Status: 200 OK\r\n\r\n"
                                 "\x00\x00\x00\x05\x82\x00\x00\x00\x00\x00\x00\x01"
                                 "hello"
                                 "\x00\x00\x00\x00\x83\x00\x00\x00\x00\x00\x00\x01";
    const uint8_t *at = (const uint8_t *)stream;
    size_t left = sizeof stream - 1;
    static const uint8_t want_types[] = {FY_FRAME_HEAD, FY_FRAME_DATA, FY_FRAME_END};
    static const uint32_t want_lens[] = {18, 5, 0};
    for (size_t i = 0; i < 3; i++) {
        fy_frame_t f;
        size_t consumed;
        cr_assert_eq(fy_frame_decode(at, left, FY_FRAME_TO_CORE, &f, &consumed), 1, "frame %zu", i);
        cr_assert_eq(f.type, want_types[i]);
        cr_assert_eq(f.id, 1);
        cr_assert_eq(f.len, want_lens[i]);
        at += consumed;
        left -= consumed;
    }
    cr_assert_eq(left, 0);
}

Test(frame, accepts_payload_at_the_limit_of_each_type)
{
    for (size_t i = 0; i < NTYPES; i++) {
        uint8_t *wire = frame_of(TYPES[i].type, 0, 7, TYPES[i].limit);
        fy_frame_t f;
        size_t consumed;
        cr_assert_eq(
            fy_frame_decode(wire, 12 + (size_t)TYPES[i].limit, TYPES[i].dir, &f, &consumed), 1,
            "%s", TYPES[i].name);
        cr_assert_eq(f.len, TYPES[i].limit);
        cr_assert_eq(consumed, 12 + (size_t)TYPES[i].limit);
        free(wire);
    }
}

Test(frame, refuses_limit_plus_one_from_the_header_alone)
{
    for (size_t i = 0; i < NTYPES; i++) {
        uint8_t header[12];
        raw_header(header, TYPES[i].limit + 1, TYPES[i].type, 0, 0, 7);
        cr_assert_eq(decode(header, sizeof header, TYPES[i].dir), -EMSGSIZE, "%s", TYPES[i].name);
    }
}

Test(frame, refuses_the_largest_length_from_the_header_alone)
{
    for (size_t i = 0; i < NTYPES; i++) {
        uint8_t header[12];
        raw_header(header, UINT32_MAX, TYPES[i].type, 0, 0, 7);
        cr_assert_eq(decode(header, sizeof header, TYPES[i].dir), -EMSGSIZE, "%s", TYPES[i].name);
    }
}

Test(frame, max_payload_follows_the_table)
{
    for (size_t i = 0; i < NTYPES; i++)
        cr_assert_eq(fy_frame_max_payload(TYPES[i].type), TYPES[i].limit, "%s", TYPES[i].name);
}

Test(frame, truncated_header_at_every_length_needs_more)
{
    for (size_t i = 0; i < NTYPES; i++) {
        uint8_t *wire = frame_of(TYPES[i].type, 0, 9, sample_len(TYPES[i].limit));
        for (size_t cut = 0; cut < 12; cut++) {
            cr_assert_eq(decode(wire, cut, TYPES[i].dir), -EAGAIN, "%s cut=%zu", TYPES[i].name,
                         cut);
        }
        free(wire);
    }
}

Test(frame, truncated_payload_at_every_length_needs_more)
{
    for (size_t i = 0; i < NTYPES; i++) {
        uint32_t len = sample_len(TYPES[i].limit);
        uint8_t *wire = frame_of(TYPES[i].type, 0, 9, len);
        for (size_t cut = 12; cut < 12 + (size_t)len; cut++) {
            cr_assert_eq(decode(wire, cut, TYPES[i].dir), -EAGAIN, "%s cut=%zu", TYPES[i].name,
                         cut);
        }
        free(wire);
    }
}

Test(frame, truncated_largest_payload_needs_more_one_byte_short)
{
    uint8_t *wire = frame_of(FY_FRAME_DATA, 0, 9, FY_FRAME_DATA_MAX);
    cr_assert_eq(decode(wire, 12 + FY_FRAME_DATA_MAX - 1, FY_FRAME_TO_CORE), -EAGAIN);
    free(wire);
}

Test(frame, refuses_every_type_of_the_other_direction)
{
    for (size_t i = 0; i < NTYPES; i++) {
        uint8_t header[12];
        raw_header(header, 0, TYPES[i].type, 0, 0, 1);
        cr_assert_eq(decode(header, sizeof header, other(TYPES[i].dir)), -EPROTO, "%s",
                     TYPES[i].name);
        cr_assert_not(fy_frame_type_valid(TYPES[i].type, other(TYPES[i].dir)));
        cr_assert(fy_frame_type_valid(TYPES[i].type, TYPES[i].dir));
    }
}

/* The entry of TYPES for <type>, or -1. */
static int table_index(unsigned type)
{
    for (size_t i = 0; i < NTYPES; i++)
        if (TYPES[i].type == type)
            return (int)i;
    return -1;
}

Test(frame, type_table_holds_exactly_the_documented_types)
{
    for (unsigned t = 0; t < 256; t++) {
        int i = table_index(t);
        bool to_worker = i >= 0 && TYPES[i].dir == FY_FRAME_TO_WORKER;
        bool to_core = i >= 0 && TYPES[i].dir == FY_FRAME_TO_CORE;
        cr_assert_eq(fy_frame_type_valid((uint8_t)t, FY_FRAME_TO_WORKER), to_worker, "0x%02x", t);
        cr_assert_eq(fy_frame_type_valid((uint8_t)t, FY_FRAME_TO_CORE), to_core, "0x%02x", t);
        cr_assert_eq(fy_frame_max_payload((uint8_t)t), i >= 0 ? TYPES[i].limit : 0, "0x%02x", t);
        cr_assert_str_eq(fy_frame_type_name((uint8_t)t), i >= 0 ? TYPES[i].name : "unknown",
                         "0x%02x", t);
    }
}

Test(frame, direction_is_the_high_bit_of_the_type)
{
    for (size_t i = 0; i < NTYPES; i++)
        cr_assert_eq((TYPES[i].type & 0x80) != 0, TYPES[i].dir == FY_FRAME_TO_CORE, "%s",
                     TYPES[i].name);
}

Test(frame, refuses_unknown_types_in_both_directions)
{
    for (unsigned t = 0; t < 256; t++) {
        if (table_index(t) >= 0)
            continue;
        uint8_t header[12];
        raw_header(header, 0, (uint8_t)t, 0, 0, 1);
        cr_assert_eq(decode(header, sizeof header, FY_FRAME_TO_WORKER), -EPROTO, "0x%02x", t);
        cr_assert_eq(decode(header, sizeof header, FY_FRAME_TO_CORE), -EPROTO, "0x%02x", t);
    }
}

Test(frame, refuses_nonzero_reserved)
{
    static const uint16_t reserved[] = {0x0001, 0x0100, 0x8000, 0xffff};
    for (size_t i = 0; i < NTYPES; i++) {
        for (size_t r = 0; r < sizeof reserved / sizeof reserved[0]; r++) {
            uint8_t header[12];
            raw_header(header, 0, TYPES[i].type, 0, reserved[r], 1);
            cr_assert_eq(decode(header, sizeof header, TYPES[i].dir), -EPROTO, "%s reserved=0x%04x",
                         TYPES[i].name, reserved[r]);
        }
    }
}

Test(frame, refuses_flags_on_types_other_than_end)
{
    for (size_t i = 0; i < NTYPES; i++) {
        if (TYPES[i].type == FY_FRAME_END)
            continue;
        for (unsigned bit = 0; bit < 8; bit++) {
            uint8_t header[12];
            raw_header(header, 0, TYPES[i].type, (uint8_t)(1u << bit), 0, 1);
            cr_assert_eq(decode(header, sizeof header, TYPES[i].dir), -EPROTO, "%s bit=%u",
                         TYPES[i].name, bit);
        }
    }
}

Test(frame, end_accepts_every_combination_of_its_flags)
{
    for (unsigned flags = 0; flags <= FY_FRAME_END_FLAGS; flags++) {
        uint8_t header[12];
        raw_header(header, 0, FY_FRAME_END, (uint8_t)flags, 0, 1);
        fy_frame_t f;
        size_t consumed;
        cr_assert_eq(fy_frame_decode(header, sizeof header, FY_FRAME_TO_CORE, &f, &consumed), 1,
                     "flags=0x%02x", flags);
        cr_assert_eq(f.flags, flags);
    }
}

Test(frame, end_refuses_unknown_flag_bits)
{
    for (unsigned flags = 0; flags < 256; flags++) {
        if ((flags & ~FY_FRAME_END_FLAGS) == 0)
            continue;
        uint8_t header[12];
        raw_header(header, 0, FY_FRAME_END, (uint8_t)flags, 0, 1);
        cr_assert_eq(decode(header, sizeof header, FY_FRAME_TO_CORE), -EPROTO, "flags=0x%02x",
                     flags);
    }
}

Test(frame, decodes_id_zero)
{
    uint8_t header[12];
    raw_header(header, 0, FY_FRAME_EOB, 0, 0, 0);
    fy_frame_t f;
    size_t consumed;
    cr_assert_eq(fy_frame_decode(header, sizeof header, FY_FRAME_TO_WORKER, &f, &consumed), 1);
    cr_assert_eq(f.id, 0);
}

Test(frame, decodes_the_largest_id)
{
    uint8_t header[12];
    raw_header(header, 0, FY_FRAME_END, 0, 0, 0xffffffff);
    fy_frame_t f;
    size_t consumed;
    cr_assert_eq(fy_frame_decode(header, sizeof header, FY_FRAME_TO_CORE, &f, &consumed), 1);
    cr_assert_eq(f.id, 0xffffffff);
}

Test(frame, back_to_back_frames_consume_only_the_first)
{
    uint8_t wire[12 + 3 + 12];
    raw_header(wire, 3, FY_FRAME_BODY, 0, 0, 4);
    memcpy(wire + 12, "abc", 3);
    raw_header(wire + 15, 0, FY_FRAME_EOB, 0, 0, 4);
    fy_frame_t f;
    size_t consumed;
    cr_assert_eq(fy_frame_decode(wire, sizeof wire, FY_FRAME_TO_WORKER, &f, &consumed), 1);
    cr_assert_eq(f.type, FY_FRAME_BODY);
    cr_assert_eq(consumed, 15, "consumed points at the second frame");
    cr_assert_arr_eq(f.payload, "abc", 3);
    cr_assert_eq(
        fy_frame_decode(wire + consumed, sizeof wire - consumed, FY_FRAME_TO_WORKER, &f, &consumed),
        1);
    cr_assert_eq(f.type, FY_FRAME_EOB);
    cr_assert_eq(consumed, 12);
}

Test(frame, type_name_of_each_type)
{
    cr_assert_str_eq(fy_frame_type_name(FY_FRAME_HELLO), "HELLO");
    cr_assert_str_eq(fy_frame_type_name(FY_FRAME_REQ), "REQ");
    cr_assert_str_eq(fy_frame_type_name(FY_FRAME_BODY), "BODY");
    cr_assert_str_eq(fy_frame_type_name(FY_FRAME_EOB), "EOB");
    cr_assert_str_eq(fy_frame_type_name(FY_FRAME_ABORT), "ABORT");
    cr_assert_str_eq(fy_frame_type_name(FY_FRAME_HEAD), "HEAD");
    cr_assert_str_eq(fy_frame_type_name(FY_FRAME_DATA), "DATA");
    cr_assert_str_eq(fy_frame_type_name(FY_FRAME_END), "END");
    cr_assert_str_eq(fy_frame_type_name(0x05), "unknown");
    cr_assert_str_eq(fy_frame_type_name(0x80), "unknown");
    cr_assert_str_eq(fy_frame_type_name(0xff), "unknown");
}

Test(frame, encoder_asserts_on_unknown_type, .signal = SIGABRT)
{
    uint8_t out[12];
    fy_frame_encode_header(out, 0x05, 0, 1, 0);
}

Test(frame, encoder_asserts_on_flags_of_a_type_other_than_end, .signal = SIGABRT)
{
    uint8_t out[12];
    fy_frame_encode_header(out, FY_FRAME_DATA, FY_FRAME_END_CLOSING, 1, 0);
}

Test(frame, encoder_asserts_on_unknown_end_flag, .signal = SIGABRT)
{
    uint8_t out[12];
    fy_frame_encode_header(out, FY_FRAME_END, 0x04, 1, 0);
}

Test(frame, encoder_asserts_on_payload_past_the_limit, .signal = SIGABRT)
{
    uint8_t out[12];
    fy_frame_encode_header(out, FY_FRAME_HELLO, 0, 0, FY_FRAME_SECRET_MAX + 1);
}

Test(frame, encoder_asserts_on_payload_in_an_empty_type, .signal = SIGABRT)
{
    uint8_t out[12];
    fy_frame_encode_header(out, FY_FRAME_EOB, 0, 1, 1);
}
