/* Unit tests of the MessageChannel codec and incremental parser (src/proto/msgchan.c). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto/msgchan.h"
#include "leak_check.h"

TestSuite(msgchan, .fini = fy_test_leak_check);
TestSuite(msgparser, .fini = fy_test_leak_check);

/* ["ready", "42", "abstract:w", <32 hex digits>]: 2 + 6 + 3 + 11 + 33 = 55 bytes. */
static const char READY_WIRE_STR[] = "\x00\x35"
                                     "ready\0"
                                     "42\0"
                                     "abstract:w\0"
                                     "0123456789abcdef0123456789abcdef\0";
#define READY_WIRE ((const uint8_t *)READY_WIRE_STR)
#define READY_WIRE_LEN (sizeof READY_WIRE_STR - 1)

static const char *const READY_ITEMS[] = {"ready", "42", "abstract:w",
                                          "0123456789abcdef0123456789abcdef"};

/* Feeds <len> bytes one at a time; returns the last result and how many were consumed. */
static int feed_bytewise(fy_msgparser_t *p, const uint8_t *data, size_t len, size_t *total)
{
    int rc = -EAGAIN;
    *total = 0;
    for (size_t i = 0; i < len; i++) {
        size_t used;
        rc = fy_msgparser_feed(p, data + i, 1, &used);
        *total += used;
        if (rc != -EAGAIN)
            return rc;
    }
    return rc;
}

Test(msgchan, encodes_ready_message_byte_for_byte)
{
    uint8_t out[128];
    ssize_t n = fy_array_encode(READY_ITEMS, NULL, 4, out, sizeof out);
    cr_assert_eq(n, (ssize_t)READY_WIRE_LEN);
    cr_assert_arr_eq(out, READY_WIRE, READY_WIRE_LEN);
}

Test(msgchan, encoded_len_matches_encode)
{
    cr_assert_eq(fy_array_encoded_len(READY_ITEMS, NULL, 4), (ssize_t)READY_WIRE_LEN);
}

Test(msgchan, encodes_empty_items)
{
    const char *items[] = {"x", "", ""};
    uint8_t out[16];
    uint8_t want[] = {0x00, 0x04, 'x', 0, 0, 0};
    cr_assert_eq(fy_array_encode(items, NULL, 3, out, sizeof out), (ssize_t)sizeof want);
    cr_assert_arr_eq(out, want, sizeof want);
}

Test(msgchan, encode_uses_explicit_lengths)
{
    const char *items[] = {"hello", "world"};
    size_t lens[] = {2, 0};
    uint8_t out[16];
    uint8_t want[] = {0x00, 0x04, 'h', 'e', 0, 0};
    cr_assert_eq(fy_array_encode(items, lens, 2, out, sizeof out), (ssize_t)sizeof want);
    cr_assert_arr_eq(out, want, sizeof want);
}

Test(msgchan, encode_refuses_zero_items)
{
    uint8_t out[16];
    cr_assert_eq(fy_array_encode(READY_ITEMS, NULL, 0, out, sizeof out), -EINVAL);
}

Test(msgchan, encode_refuses_item_with_nul)
{
    const char *items[] = {"a\0b"};
    size_t lens[] = {3};
    uint8_t out[16];
    cr_assert_eq(fy_array_encode(items, lens, 1, out, sizeof out), -EINVAL);
}

Test(msgchan, encode_refuses_null_item)
{
    const char *items[] = {"a", NULL};
    uint8_t out[16];
    cr_assert_eq(fy_array_encode(items, NULL, 2, out, sizeof out), -EINVAL);
}

Test(msgchan, encode_refuses_small_output_buffer)
{
    uint8_t out[READY_WIRE_LEN - 1];
    cr_assert_eq(fy_array_encode(READY_ITEMS, NULL, 4, out, sizeof out), -EMSGSIZE);
}

Test(msgchan, encode_accepts_payload_at_limit)
{
    size_t len = FY_ARRAY_MAX_PAYLOAD - 1; /* + its NUL = the limit */
    char *big = malloc(len + 1);
    memset(big, 'a', len);
    big[len] = '\0';
    const char *items[] = {big};
    uint8_t *out = malloc(FY_ARRAY_MAX_PAYLOAD + 2);
    cr_assert_eq(fy_array_encode(items, NULL, 1, out, FY_ARRAY_MAX_PAYLOAD + 2),
                 (ssize_t)FY_ARRAY_MAX_PAYLOAD + 2);
    cr_assert_eq(out[0], 0xff);
    cr_assert_eq(out[1], 0xff);
    free(out);
    free(big);
}

Test(msgchan, encode_refuses_payload_one_past_limit)
{
    size_t len = FY_ARRAY_MAX_PAYLOAD;
    char *big = malloc(len + 1);
    memset(big, 'a', len);
    big[len] = '\0';
    const char *items[] = {big};
    uint8_t *out = malloc(FY_ARRAY_MAX_PAYLOAD + 8);
    cr_assert_eq(fy_array_encode(items, NULL, 1, out, FY_ARRAY_MAX_PAYLOAD + 8), -EMSGSIZE);
    free(out);
    free(big);
}

Test(msgchan, encode_refuses_many_items_past_limit)
{
    /* 32768 empty items take 32768 bytes; two such halves pass the limit by one. */
    size_t count = FY_ARRAY_MAX_PAYLOAD + 1;
    const char **items = malloc(count * sizeof *items);
    for (size_t i = 0; i < count; i++)
        items[i] = "";
    uint8_t *out = malloc(FY_ARRAY_MAX_PAYLOAD + 8);
    cr_assert_eq(fy_array_encode(items, NULL, count, out, FY_ARRAY_MAX_PAYLOAD + 8), -EMSGSIZE);
    cr_assert_eq(fy_array_encode(items, NULL, count - 1, out, FY_ARRAY_MAX_PAYLOAD + 8),
                 (ssize_t)FY_ARRAY_MAX_PAYLOAD + 2);
    free(out);
    free(items);
}

Test(msgchan, decode_payload_round_trips_ready)
{
    fy_array_t msg;
    cr_assert_eq(fy_array_decode_payload(READY_WIRE + 2, READY_WIRE_LEN - 2, &msg), 0);
    cr_assert_eq(msg.count, 4);
    for (size_t i = 0; i < 4; i++) {
        cr_assert_str_eq(msg.items[i], READY_ITEMS[i]);
        cr_assert_eq(msg.lens[i], strlen(READY_ITEMS[i]));
    }
    fy_array_dispose(&msg);
    cr_assert_eq(msg.count, 0);
    cr_assert_null(msg.data);
}

Test(msgchan, decode_payload_keeps_empty_items)
{
    const uint8_t payload[] = {'x', 0, 0, 0};
    fy_array_t msg;
    cr_assert_eq(fy_array_decode_payload(payload, sizeof payload, &msg), 0);
    cr_assert_eq(msg.count, 3);
    cr_assert_str_eq(msg.items[1], "");
    cr_assert_eq(msg.lens[2], 0);
    fy_array_dispose(&msg);
}

Test(msgchan, decode_payload_refuses_empty_payload)
{
    fy_array_t msg;
    cr_assert_eq(fy_array_decode_payload((const uint8_t *)"", 0, &msg), -EPROTO);
    cr_assert_null(msg.data);
}

Test(msgchan, decode_payload_refuses_missing_final_nul)
{
    const uint8_t payload[] = {'a', 0, 'b'};
    fy_array_t msg;
    cr_assert_eq(fy_array_decode_payload(payload, sizeof payload, &msg), -EPROTO);
}

Test(msgchan, decode_payload_refuses_payload_past_limit)
{
    uint8_t *payload = calloc(FY_ARRAY_MAX_PAYLOAD + 1, 1);
    fy_array_t msg;
    cr_assert_eq(fy_array_decode_payload(payload, FY_ARRAY_MAX_PAYLOAD + 1, &msg), -EMSGSIZE);
    free(payload);
}

Test(msgchan, all_zero_array_disposes_cleanly)
{
    fy_array_t msg;
    memset(&msg, 0, sizeof msg);
    fy_array_dispose(&msg);
    cr_assert_eq(msg.count, 0);
}

Test(msgchan, scalar_header_round_trips)
{
    uint8_t h[4];
    fy_scalar_encode_header(h, 0x01020304u);
    uint8_t want[] = {1, 2, 3, 4};
    cr_assert_arr_eq(h, want, 4);
    cr_assert_eq(fy_scalar_decode_header(h), 0x01020304u);
}

Test(msgparser, parses_array_fed_at_once)
{
    fy_msgparser_t p;
    fy_msgparser_init(&p);
    size_t used;
    cr_assert_eq(fy_msgparser_feed(&p, READY_WIRE, READY_WIRE_LEN, &used), 1);
    cr_assert_eq(used, READY_WIRE_LEN);
    fy_array_t msg;
    cr_assert_eq(fy_msgparser_take_array(&p, &msg), 0);
    cr_assert_eq(msg.count, 4);
    cr_assert_str_eq(msg.items[0], "ready");
    cr_assert_str_eq(msg.items[3], READY_ITEMS[3]);
    fy_array_dispose(&msg);
    fy_msgparser_dispose(&p);
}

Test(msgparser, parses_array_fed_byte_by_byte)
{
    fy_msgparser_t p;
    fy_msgparser_init(&p);
    size_t used;
    cr_assert_eq(feed_bytewise(&p, READY_WIRE, READY_WIRE_LEN, &used), 1);
    cr_assert_eq(used, READY_WIRE_LEN);
    fy_array_t msg;
    cr_assert_eq(fy_msgparser_take_array(&p, &msg), 0);
    cr_assert_str_eq(msg.items[2], "abstract:w");
    fy_array_dispose(&msg);
    fy_msgparser_dispose(&p);
}

Test(msgparser, leaves_bytes_after_a_message_unconsumed)
{
    uint8_t two[2 * READY_WIRE_LEN];
    memcpy(two, READY_WIRE, READY_WIRE_LEN);
    memcpy(two + READY_WIRE_LEN, READY_WIRE, READY_WIRE_LEN);
    fy_msgparser_t p;
    fy_msgparser_init(&p);
    size_t used;
    cr_assert_eq(fy_msgparser_feed(&p, two, sizeof two, &used), 1);
    cr_assert_eq(used, READY_WIRE_LEN);
    fy_array_t msg;
    cr_assert_eq(fy_msgparser_take_array(&p, &msg), 0);
    fy_array_dispose(&msg);
    cr_assert_eq(fy_msgparser_feed(&p, two + used, sizeof two - used, &used), 1);
    cr_assert_eq(used, READY_WIRE_LEN);
    cr_assert_eq(fy_msgparser_take_array(&p, &msg), 0);
    cr_assert_eq(msg.count, 4);
    fy_array_dispose(&msg);
    fy_msgparser_dispose(&p);
}

Test(msgparser, feeding_while_a_message_waits_consumes_nothing)
{
    fy_msgparser_t p;
    fy_msgparser_init(&p);
    size_t used;
    cr_assert_eq(fy_msgparser_feed(&p, READY_WIRE, READY_WIRE_LEN, &used), 1);
    cr_assert_eq(fy_msgparser_feed(&p, READY_WIRE, READY_WIRE_LEN, &used), 1);
    cr_assert_eq(used, 0);
    fy_msgparser_dispose(&p);
}

Test(msgparser, truncated_array_at_every_offset_needs_more_and_eof_is_eproto)
{
    for (size_t cut = 0; cut < READY_WIRE_LEN; cut++) {
        fy_msgparser_t p;
        fy_msgparser_init(&p);
        size_t used;
        cr_assert_eq(fy_msgparser_feed(&p, READY_WIRE, cut, &used), -EAGAIN, "cut=%zu", cut);
        cr_assert_eq(used, cut);
        cr_assert_eq(fy_msgparser_eof(&p), cut == 0 ? 0 : -EPROTO, "cut=%zu", cut);
        cr_assert_eq(fy_msgparser_wanted(&p) > 0, 1);
        fy_msgparser_dispose(&p);
    }
}

Test(msgparser, split_at_every_offset_yields_the_same_message)
{
    for (size_t cut = 0; cut <= READY_WIRE_LEN; cut++) {
        fy_msgparser_t p;
        fy_msgparser_init(&p);
        size_t used1, used2;
        int rc = fy_msgparser_feed(&p, READY_WIRE, cut, &used1);
        if (rc == -EAGAIN)
            rc = fy_msgparser_feed(&p, READY_WIRE + cut, READY_WIRE_LEN - cut, &used2);
        else
            used2 = 0;
        cr_assert_eq(rc, 1, "cut=%zu", cut);
        cr_assert_eq(used1 + used2, READY_WIRE_LEN);
        fy_array_t msg;
        cr_assert_eq(fy_msgparser_take_array(&p, &msg), 0);
        uint8_t out[128];
        ssize_t n = fy_array_encode((const char *const *)msg.items, msg.lens, msg.count, out,
                                    sizeof out);
        cr_assert_eq(n, (ssize_t)READY_WIRE_LEN);
        cr_assert_arr_eq(out, READY_WIRE, READY_WIRE_LEN);
        fy_array_dispose(&msg);
        fy_msgparser_dispose(&p);
    }
}

Test(msgparser, eof_at_boundary_is_end_of_channel)
{
    fy_msgparser_t p;
    fy_msgparser_init(&p);
    cr_assert_eq(fy_msgparser_eof(&p), 0);
    size_t used;
    cr_assert_eq(fy_msgparser_feed(&p, READY_WIRE, READY_WIRE_LEN, &used), 1);
    cr_assert_eq(fy_msgparser_eof(&p), 0);
    fy_array_t msg;
    fy_msgparser_take_array(&p, &msg);
    fy_array_dispose(&msg);
    cr_assert_eq(fy_msgparser_eof(&p), 0);
    fy_msgparser_dispose(&p);
}

Test(msgparser, refuses_zero_length_array)
{
    const uint8_t wire[] = {0x00, 0x00};
    fy_msgparser_t p;
    fy_msgparser_init(&p);
    size_t used;
    cr_assert_eq(fy_msgparser_feed(&p, wire, sizeof wire, &used), -EPROTO);
    fy_msgparser_dispose(&p);
}

Test(msgparser, refuses_array_without_final_nul)
{
    const uint8_t wire[] = {0x00, 0x03, 'a', 0, 'b'};
    fy_msgparser_t p;
    fy_msgparser_init(&p);
    size_t used;
    cr_assert_eq(fy_msgparser_feed(&p, wire, sizeof wire, &used), -EPROTO);
    fy_msgparser_dispose(&p);
}

Test(msgparser, error_is_sticky)
{
    const uint8_t wire[] = {0x00, 0x00};
    fy_msgparser_t p;
    fy_msgparser_init(&p);
    size_t used;
    cr_assert_eq(fy_msgparser_feed(&p, wire, sizeof wire, &used), -EPROTO);
    cr_assert_eq(fy_msgparser_feed(&p, READY_WIRE, READY_WIRE_LEN, &used), -EPROTO);
    cr_assert_eq(used, 0);
    cr_assert_eq(fy_msgparser_eof(&p), -EPROTO);
    cr_assert_eq(fy_msgparser_wanted(&p), 0);
    cr_assert_eq(fy_msgparser_expect(&p, FY_MSG_SCALAR, 10), -EPROTO);
    fy_msgparser_dispose(&p);
}

Test(msgparser, refuses_array_past_max_len)
{
    uint8_t wire[] = {0x00, 0x09, 'r', 'e', 'a', 'd', 'y', 0, '4', '2', 0};
    fy_msgparser_t p;
    fy_msgparser_init(&p);
    cr_assert_eq(fy_msgparser_expect(&p, FY_MSG_ARRAY, 8), 0);
    size_t used;
    cr_assert_eq(fy_msgparser_feed(&p, wire, sizeof wire, &used), -EMSGSIZE);
    cr_assert_eq(used, 2, "nothing past the length prefix is read");
    fy_msgparser_dispose(&p);
}

Test(msgparser, accepts_array_at_max_len)
{
    uint8_t wire[] = {0x00, 0x09, 'r', 'e', 'a', 'd', 'y', 0, '4', '2', 0};
    fy_msgparser_t p;
    fy_msgparser_init(&p);
    cr_assert_eq(fy_msgparser_expect(&p, FY_MSG_ARRAY, 9), 0);
    size_t used;
    cr_assert_eq(fy_msgparser_feed(&p, wire, sizeof wire, &used), 1);
    fy_array_t msg;
    cr_assert_eq(fy_msgparser_take_array(&p, &msg), 0);
    cr_assert_eq(msg.count, 2);
    fy_array_dispose(&msg);
    fy_msgparser_dispose(&p);
}

Test(msgparser, accepts_largest_array)
{
    size_t wire_len = FY_ARRAY_MAX_PAYLOAD + 2;
    uint8_t *wire = malloc(wire_len);
    wire[0] = 0xff;
    wire[1] = 0xff;
    memset(wire + 2, 'z', FY_ARRAY_MAX_PAYLOAD - 1);
    wire[wire_len - 1] = 0;
    fy_msgparser_t p;
    fy_msgparser_init(&p);
    size_t used;
    cr_assert_eq(fy_msgparser_feed(&p, wire, wire_len, &used), 1);
    fy_array_t msg;
    cr_assert_eq(fy_msgparser_take_array(&p, &msg), 0);
    cr_assert_eq(msg.count, 1);
    cr_assert_eq(msg.lens[0], FY_ARRAY_MAX_PAYLOAD - 1);
    fy_array_dispose(&msg);
    fy_msgparser_dispose(&p);
    free(wire);
}

Test(msgparser, parses_scalar)
{
    const uint8_t wire[] = {0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'};
    fy_msgparser_t p;
    fy_msgparser_init(&p);
    cr_assert_eq(fy_msgparser_expect(&p, FY_MSG_SCALAR, 100), 0);
    size_t used;
    cr_assert_eq(fy_msgparser_feed(&p, wire, sizeof wire, &used), 1);
    char *data;
    size_t len;
    cr_assert_eq(fy_msgparser_take_scalar(&p, &data, &len), 0);
    cr_assert_eq(len, 5);
    cr_assert_str_eq(data, "hello");
    free(data);
    fy_msgparser_dispose(&p);
}

Test(msgparser, parses_empty_scalar)
{
    const uint8_t wire[] = {0, 0, 0, 0};
    fy_msgparser_t p;
    fy_msgparser_init(&p);
    fy_msgparser_expect(&p, FY_MSG_SCALAR, 100);
    size_t used;
    cr_assert_eq(fy_msgparser_feed(&p, wire, sizeof wire, &used), 1);
    char *data;
    size_t len;
    cr_assert_eq(fy_msgparser_take_scalar(&p, &data, &len), 0);
    cr_assert_eq(len, 0);
    cr_assert_str_eq(data, "");
    free(data);
    fy_msgparser_dispose(&p);
}

Test(msgparser, scalar_may_hold_nul_bytes)
{
    const uint8_t wire[] = {0, 0, 0, 3, 'a', 0, 'b'};
    fy_msgparser_t p;
    fy_msgparser_init(&p);
    fy_msgparser_expect(&p, FY_MSG_SCALAR, 3);
    size_t used;
    cr_assert_eq(fy_msgparser_feed(&p, wire, sizeof wire, &used), 1);
    char *data;
    size_t len;
    cr_assert_eq(fy_msgparser_take_scalar(&p, &data, &len), 0);
    cr_assert_eq(len, 3);
    cr_assert_eq(memcmp(data, "a\0b", 3), 0);
    free(data);
    fy_msgparser_dispose(&p);
}

Test(msgparser, truncated_scalar_at_every_offset_needs_more_and_eof_is_eproto)
{
    const uint8_t wire[] = {0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'};
    for (size_t cut = 0; cut < sizeof wire; cut++) {
        fy_msgparser_t p;
        fy_msgparser_init(&p);
        fy_msgparser_expect(&p, FY_MSG_SCALAR, 5);
        size_t used;
        cr_assert_eq(fy_msgparser_feed(&p, wire, cut, &used), -EAGAIN, "cut=%zu", cut);
        cr_assert_eq(fy_msgparser_wanted(&p), cut < 4 ? 4 - cut : sizeof wire - cut);
        cr_assert_eq(fy_msgparser_eof(&p), cut == 0 ? 0 : -EPROTO, "cut=%zu", cut);
        fy_msgparser_dispose(&p);
    }
}

Test(msgparser, refuses_scalar_one_past_max_len_before_allocating)
{
    const uint8_t wire[] = {0, 0, 0, 6, 'h', 'e', 'l', 'l', 'o', '!'};
    fy_msgparser_t p;
    fy_msgparser_init(&p);
    fy_msgparser_expect(&p, FY_MSG_SCALAR, 5);
    size_t used;
    cr_assert_eq(fy_msgparser_feed(&p, wire, sizeof wire, &used), -EMSGSIZE);
    cr_assert_eq(used, 4);
    cr_assert_null(p.body);
    fy_msgparser_dispose(&p);
}

Test(msgparser, refuses_huge_scalar_announcement)
{
    const uint8_t wire[] = {0xff, 0xff, 0xff, 0xff};
    fy_msgparser_t p;
    fy_msgparser_init(&p);
    fy_msgparser_expect(&p, FY_MSG_SCALAR, 1 << 20);
    size_t used;
    cr_assert_eq(fy_msgparser_feed(&p, wire, sizeof wire, &used), -EMSGSIZE);
    fy_msgparser_dispose(&p);
}

Test(msgparser, expect_refuses_mid_message)
{
    fy_msgparser_t p;
    fy_msgparser_init(&p);
    size_t used;
    cr_assert_eq(fy_msgparser_feed(&p, READY_WIRE, 1, &used), -EAGAIN);
    cr_assert_eq(fy_msgparser_expect(&p, FY_MSG_SCALAR, 10), -EBUSY);
    fy_msgparser_dispose(&p);
}

Test(msgparser, expect_refuses_while_a_message_waits)
{
    fy_msgparser_t p;
    fy_msgparser_init(&p);
    size_t used;
    cr_assert_eq(fy_msgparser_feed(&p, READY_WIRE, READY_WIRE_LEN, &used), 1);
    cr_assert_eq(fy_msgparser_expect(&p, FY_MSG_SCALAR, 10), -EBUSY);
    fy_msgparser_dispose(&p);
}

Test(msgparser, expect_refuses_unknown_kind)
{
    fy_msgparser_t p;
    fy_msgparser_init(&p);
    cr_assert_eq(fy_msgparser_expect(&p, (fy_msg_kind_t)7, 10), -EINVAL);
    fy_msgparser_dispose(&p);
}

Test(msgparser, take_refuses_when_nothing_is_complete)
{
    fy_msgparser_t p;
    fy_msgparser_init(&p);
    fy_array_t msg;
    char *data;
    size_t len;
    cr_assert_eq(fy_msgparser_take_array(&p, &msg), -EINVAL);
    cr_assert_eq(fy_msgparser_take_scalar(&p, &data, &len), -EINVAL);
    fy_msgparser_dispose(&p);
}

Test(msgparser, take_refuses_the_wrong_kind)
{
    fy_msgparser_t p;
    fy_msgparser_init(&p);
    size_t used;
    cr_assert_eq(fy_msgparser_feed(&p, READY_WIRE, READY_WIRE_LEN, &used), 1);
    char *data;
    size_t len;
    cr_assert_eq(fy_msgparser_take_scalar(&p, &data, &len), -EINVAL);
    fy_msgparser_dispose(&p);
}

Test(msgparser, switches_between_array_and_scalar)
{
    const uint8_t wire[] = {0x00, 0x04, 'g', 'e', 't', 0, 0, 0, 0, 2, 'o', 'k'};
    fy_msgparser_t p;
    fy_msgparser_init(&p);
    size_t used;
    cr_assert_eq(fy_msgparser_feed(&p, wire, sizeof wire, &used), 1);
    fy_array_t msg;
    cr_assert_eq(fy_msgparser_take_array(&p, &msg), 0);
    cr_assert_str_eq(msg.items[0], "get");
    fy_array_dispose(&msg);
    cr_assert_eq(fy_msgparser_expect(&p, FY_MSG_SCALAR, 2), 0);
    size_t used2;
    cr_assert_eq(fy_msgparser_feed(&p, wire + used, sizeof wire - used, &used2), 1);
    char *data;
    size_t len;
    cr_assert_eq(fy_msgparser_take_scalar(&p, &data, &len), 0);
    cr_assert_str_eq(data, "ok");
    free(data);
    fy_msgparser_dispose(&p);
}

Test(msgparser, dispose_frees_a_partial_message)
{
    fy_msgparser_t p;
    fy_msgparser_init(&p);
    size_t used;
    cr_assert_eq(fy_msgparser_feed(&p, READY_WIRE, 10, &used), -EAGAIN);
    cr_assert_not_null(p.body);
    fy_msgparser_dispose(&p); /* LeakSanitizer in the asan build checks the body is freed */
    cr_assert_null(p.body);
}

Test(msgchan, encode_refuses_huge_explicit_length_without_reading_it)
{
    const char *items[] = {"x"};
    size_t lens[] = {SIZE_MAX - 1};
    uint8_t out[16];
    cr_assert_eq(fy_array_encode(items, lens, 1, out, sizeof out), -EMSGSIZE);
}
