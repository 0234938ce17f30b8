/* Unit tests of the request header block encoder and decoder (src/proto/reqblock.c). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/reqblock.h"
#include "leak_check.h"

TestSuite(reqblock, .fini = fy_test_leak_check);

/* REQUEST_METHOD=GET, QUERY_STRING="" with its prefix: 4 + 15 + 4 + 13 + 1 = 37 bytes. */
static const char WIRE_STR[] = "\x00\x00\x00\x21"
                               "REQUEST_METHOD\0"
                               "GET\0"
                               "QUERY_STRING\0"
                               "\0";
#define WIRE ((const uint8_t *)WIRE_STR)
#define WIRE_LEN (sizeof WIRE_STR - 1)

static void build_sample(fy_reqblock_builder_t *b)
{
    cr_assert_eq(fy_reqblock_add_str(b, "REQUEST_METHOD", "GET"), 0);
    cr_assert_eq(fy_reqblock_add_str(b, "QUERY_STRING", ""), 0);
}

Test(reqblock, builder_encodes_byte_for_byte)
{
    fy_reqblock_builder_t b = {0};
    build_sample(&b);
    const uint8_t *out;
    size_t out_len;
    fy_reqblock_finish(&b, &out, &out_len);
    cr_assert_eq(out_len, WIRE_LEN);
    cr_assert_arr_eq(out, WIRE, WIRE_LEN);
    fy_reqblock_builder_dispose(&b);
}

Test(reqblock, empty_builder_finishes_as_zero_size_block)
{
    fy_reqblock_builder_t b = {0};
    const uint8_t *out;
    size_t out_len;
    fy_reqblock_finish(&b, &out, &out_len);
    uint8_t want[] = {0, 0, 0, 0};
    cr_assert_eq(out_len, 4);
    cr_assert_arr_eq(out, want, 4);
    fy_reqblock_builder_dispose(&b);
}

Test(reqblock, builder_reset_starts_a_new_block)
{
    fy_reqblock_builder_t b = {0};
    cr_assert_eq(fy_reqblock_add_str(&b, "A", "1"), 0);
    fy_reqblock_builder_reset(&b);
    build_sample(&b);
    const uint8_t *out;
    size_t out_len;
    fy_reqblock_finish(&b, &out, &out_len);
    cr_assert_eq(out_len, WIRE_LEN);
    cr_assert_arr_eq(out, WIRE, WIRE_LEN);
    fy_reqblock_builder_dispose(&b);
}

Test(reqblock, round_trips_through_parse)
{
    fy_reqblock_builder_t b = {0};
    build_sample(&b);
    cr_assert_eq(fy_reqblock_add_str(&b, "HTTP_COOKIE", "a=1; b=2"), 0);
    const uint8_t *out;
    size_t out_len;
    fy_reqblock_finish(&b, &out, &out_len);
    uint32_t size;
    cr_assert_eq(fy_reqblock_decode_size(out, &size), 0);
    cr_assert_eq(size, out_len - 4);
    fy_reqblock_t rb;
    cr_assert_eq(fy_reqblock_parse((const char *)out + 4, size, &rb), 0);
    cr_assert_eq(rb.count, 3);
    cr_assert_str_eq(rb.pairs[0].name, "REQUEST_METHOD");
    cr_assert_str_eq(rb.pairs[0].value, "GET");
    cr_assert_eq(rb.pairs[1].value_len, 0);
    cr_assert_str_eq(rb.pairs[2].value, "a=1; b=2");
    cr_assert_eq(rb.pairs[2].name_len, strlen("HTTP_COOKIE"));
    fy_reqblock_dispose(&rb);
    fy_reqblock_builder_dispose(&b);
}

Test(reqblock, get_finds_the_first_pair_by_exact_name)
{
    const char block[] = "A\0one\0B\0\0A\0two\0";
    fy_reqblock_t rb;
    cr_assert_eq(fy_reqblock_parse(block, sizeof block - 1, &rb), 0);
    size_t len = 99;
    cr_assert_str_eq(fy_reqblock_get(&rb, "A", &len), "one");
    cr_assert_eq(len, 3);
    cr_assert_str_eq(fy_reqblock_get(&rb, "B", &len), "");
    cr_assert_eq(len, 0);
    cr_assert_null(fy_reqblock_get(&rb, "a", NULL));
    cr_assert_null(fy_reqblock_get(&rb, "AB", NULL));
    fy_reqblock_dispose(&rb);
}

Test(reqblock, parses_empty_block)
{
    fy_reqblock_t rb;
    cr_assert_eq(fy_reqblock_parse("", 0, &rb), 0);
    cr_assert_eq(rb.count, 0);
    cr_assert_null(fy_reqblock_get(&rb, "A", NULL));
    fy_reqblock_dispose(&rb);
}

Test(reqblock, refuses_odd_item_count)
{
    const char block[] = "A\0one\0B\0";
    fy_reqblock_t rb;
    cr_assert_eq(fy_reqblock_parse(block, sizeof block - 1, &rb), -EPROTO);
    cr_assert_null(rb.pairs);
}

Test(reqblock, refuses_block_without_final_nul)
{
    const char block[] = "A\0one";
    fy_reqblock_t rb;
    cr_assert_eq(fy_reqblock_parse(block, sizeof block - 1, &rb), -EPROTO);
}

Test(reqblock, refuses_empty_name)
{
    const char block[] = "A\0one\0\0value\0";
    fy_reqblock_t rb;
    cr_assert_eq(fy_reqblock_parse(block, sizeof block - 1, &rb), -EPROTO);
    cr_assert_null(rb.pairs);
}

Test(reqblock, decode_reads_prefix_and_block)
{
    uint8_t wire[WIRE_LEN + 5];
    memcpy(wire, WIRE, WIRE_LEN);
    memcpy(wire + WIRE_LEN, "body!", 5);
    fy_reqblock_t rb;
    size_t consumed;
    cr_assert_eq(fy_reqblock_decode(wire, sizeof wire, &rb, &consumed), 1);
    cr_assert_eq(consumed, WIRE_LEN, "the body starts after the block");
    cr_assert_eq(rb.count, 2);
    cr_assert_str_eq(fy_reqblock_get(&rb, "REQUEST_METHOD", NULL), "GET");
    fy_reqblock_dispose(&rb);
}

Test(reqblock, decode_truncated_wire_at_every_offset_needs_more)
{
    for (size_t cut = 0; cut < WIRE_LEN; cut++) {
        fy_reqblock_t rb;
        size_t consumed = 99;
        cr_assert_eq(fy_reqblock_decode(WIRE, cut, &rb, &consumed), -EAGAIN, "cut=%zu", cut);
        cr_assert_eq(consumed, 0);
        cr_assert_null(rb.pairs);
    }
}

Test(reqblock, decode_refuses_oversized_prefix_before_the_block_arrives)
{
    uint8_t prefix[] = {0x00, 0x02, 0x00, 0x01};
    fy_reqblock_t rb;
    size_t consumed;
    cr_assert_eq(fy_reqblock_decode(prefix, sizeof prefix, &rb, &consumed), -EMSGSIZE);
}

Test(reqblock, decode_refuses_malformed_block)
{
    const char wire[] = "\x00\x00\x00\x03"
                        "A\0b";
    fy_reqblock_t rb;
    size_t consumed;
    cr_assert_eq(fy_reqblock_decode((const uint8_t *)wire, sizeof wire - 1, &rb, &consumed),
                 -EPROTO);
}

Test(reqblock, block_cut_at_every_offset_is_refused_or_holds_fewer_pairs)
{
    /* Without its prefix a cut block is only detectable when it leaves an odd item or a missing
     * NUL; a cut at a pair boundary is a valid shorter block, which is why the wire carries H. */
    const char *block = WIRE_STR + 4;
    size_t len = WIRE_LEN - 4;
    for (size_t cut = 1; cut < len; cut++) {
        fy_reqblock_t rb;
        int rc = fy_reqblock_parse(block, cut, &rb);
        bool pair_boundary = cut == strlen("REQUEST_METHOD") + 1 + strlen("GET") + 1;
        if (pair_boundary) {
            cr_assert_eq(rc, 0, "cut=%zu", cut);
            cr_assert_eq(rb.count, 1);
            fy_reqblock_dispose(&rb);
        } else {
            cr_assert_eq(rc, -EPROTO, "cut=%zu rc=%d", cut, rc);
            cr_assert_eq(rb.count, 0);
        }
    }
}

Test(reqblock, decode_size_accepts_the_limit)
{
    uint8_t prefix[] = {0x00, 0x02, 0x00, 0x00};
    uint32_t size;
    cr_assert_eq(fy_reqblock_decode_size(prefix, &size), 0);
    cr_assert_eq(size, FY_REQBLOCK_MAX);
}

Test(reqblock, decode_size_refuses_one_past_the_limit)
{
    uint8_t prefix[] = {0x00, 0x02, 0x00, 0x01};
    uint32_t size = 7;
    cr_assert_eq(fy_reqblock_decode_size(prefix, &size), -EMSGSIZE);
    cr_assert_eq(size, 7);
}

/* A block of exactly <len> bytes: one pair "N" = 'v' * (len - 3). */
static char *block_of(size_t len)
{
    char *block = malloc(len);
    block[0] = 'N';
    block[1] = '\0';
    memset(block + 2, 'v', len - 3);
    block[len - 1] = '\0';
    return block;
}

Test(reqblock, parse_accepts_block_at_the_limit)
{
    char *block = block_of(FY_REQBLOCK_MAX);
    fy_reqblock_t rb;
    cr_assert_eq(fy_reqblock_parse(block, FY_REQBLOCK_MAX, &rb), 0);
    cr_assert_eq(rb.count, 1);
    cr_assert_eq(rb.pairs[0].value_len, FY_REQBLOCK_MAX - 3);
    fy_reqblock_dispose(&rb);
    free(block);
}

Test(reqblock, parse_refuses_block_one_past_the_limit)
{
    char *block = block_of(FY_REQBLOCK_MAX + 1);
    fy_reqblock_t rb;
    cr_assert_eq(fy_reqblock_parse(block, FY_REQBLOCK_MAX + 1, &rb), -EMSGSIZE);
    free(block);
}

Test(reqblock, builder_accepts_block_at_the_limit)
{
    fy_reqblock_builder_t b = {0};
    size_t value_len = FY_REQBLOCK_MAX - 4;
    char *value = malloc(value_len);
    memset(value, 'v', value_len);
    cr_assert_eq(fy_reqblock_add(&b, "AB", 2, value, value_len), 0);
    const uint8_t *out;
    size_t out_len;
    fy_reqblock_finish(&b, &out, &out_len);
    cr_assert_eq(out_len, FY_REQBLOCK_MAX + 4);
    uint32_t size;
    cr_assert_eq(fy_reqblock_decode_size(out, &size), 0);
    cr_assert_eq(size, FY_REQBLOCK_MAX);
    free(value);
    fy_reqblock_builder_dispose(&b);
}

Test(reqblock, builder_refuses_block_one_past_the_limit_and_stays_unchanged)
{
    fy_reqblock_builder_t b = {0};
    cr_assert_eq(fy_reqblock_add_str(&b, "A", "1"), 0);
    size_t value_len = FY_REQBLOCK_MAX - 4 - 4 + 1; /* "A\01\0" + "AB\0" + value + "\0" */
    char *value = malloc(value_len);
    memset(value, 'v', value_len);
    cr_assert_eq(fy_reqblock_add(&b, "AB", 2, value, value_len), -EMSGSIZE);
    cr_assert_eq(fy_reqblock_add(&b, "AB", 2, value, value_len - 1), 0);
    fy_reqblock_builder_reset(&b);
    cr_assert_eq(fy_reqblock_add_str(&b, "A", "1"), 0);
    cr_assert_eq(fy_reqblock_add(&b, "AB", 2, value, value_len), -EMSGSIZE);
    const uint8_t *out;
    size_t out_len;
    fy_reqblock_finish(&b, &out, &out_len);
    cr_assert_eq(out_len, 8);
    free(value);
    fy_reqblock_builder_dispose(&b);
}

Test(reqblock, builder_refuses_huge_lengths_without_overflow)
{
    fy_reqblock_builder_t b = {0};
    cr_assert_eq(fy_reqblock_add(&b, "A", 1, "x", SIZE_MAX - 1), -EMSGSIZE);
    fy_reqblock_builder_dispose(&b);
}

Test(reqblock, builder_refuses_empty_name)
{
    fy_reqblock_builder_t b = {0};
    cr_assert_eq(fy_reqblock_add_str(&b, "", "x"), -EINVAL);
    cr_assert_eq(b.len, 0);
    fy_reqblock_builder_dispose(&b);
}

Test(reqblock, builder_refuses_nul_in_name)
{
    fy_reqblock_builder_t b = {0};
    cr_assert_eq(fy_reqblock_add(&b, "A\0B", 3, "x", 1), -EINVAL);
    fy_reqblock_builder_dispose(&b);
}

Test(reqblock, builder_refuses_nul_in_value)
{
    fy_reqblock_builder_t b = {0};
    cr_assert_eq(fy_reqblock_add(&b, "A", 1, "x\0y", 3), -EINVAL);
    fy_reqblock_builder_dispose(&b);
}

Test(reqblock, all_zero_builder_disposes_cleanly)
{
    fy_reqblock_builder_t b = {0};
    fy_reqblock_builder_dispose(&b);
    cr_assert_null(b.buf);
}
