/* Unit tests of the response head parser (src/proto/resphead.c). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/resphead.h"
#include "leak_check.h"

TestSuite(resphead, .fini = fy_test_leak_check);

static const char COOKIES[] = "Status: 200 OK\r\n"
                              "Content-Type: text/plain\r\n"
                              "Set-Cookie: a=1; Path=/\r\n"
                              "Set-Cookie: b=2; Path=/\r\n"
                              "\r\n"
                              "cookies\n";
#define COOKIES_HEAD_LEN (sizeof COOKIES - 1 - strlen("cookies\n"))

static int parse(const char *s, fy_resphead_t *head)
{
    return fy_resphead_parse(s, strlen(s), head);
}

static void assert_header(const fy_resphead_header_t *h, const char *name, const char *value)
{
    cr_assert_eq(h->name_len, strlen(name));
    cr_assert_eq(memcmp(h->name, name, h->name_len), 0);
    cr_assert_eq(h->value_len, strlen(value), "value %.*s", (int)h->value_len, h->value);
    cr_assert_eq(memcmp(h->value, value, h->value_len), 0);
}

Test(resphead, parses_status_form_with_repeated_headers_in_order)
{
    fy_resphead_t head;
    cr_assert_eq(fy_resphead_parse(COOKIES, sizeof COOKIES - 1, &head), 1);
    cr_assert_eq(head.status, 200);
    cr_assert_eq(head.reason_len, 2);
    cr_assert_eq(memcmp(head.reason, "OK", 2), 0);
    cr_assert_eq(head.header_count, 3);
    assert_header(&head.headers[0], "Content-Type", "text/plain");
    assert_header(&head.headers[1], "Set-Cookie", "a=1; Path=/");
    assert_header(&head.headers[2], "Set-Cookie", "b=2; Path=/");
    cr_assert_eq(head.head_len, COOKIES_HEAD_LEN);
    fy_resphead_dispose(&head);
}

Test(resphead, parses_http_status_line)
{
    fy_resphead_t head;
    cr_assert_eq(parse("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", &head), 1);
    cr_assert_eq(head.status, 404);
    cr_assert_eq(head.reason_len, strlen("Not Found"));
    cr_assert_eq(head.header_count, 1);
    fy_resphead_dispose(&head);
}

Test(resphead, parses_http_1_0_status_line)
{
    fy_resphead_t head;
    cr_assert_eq(parse("HTTP/1.0 302 Found\r\nLocation: /x\r\n\r\n", &head), 1);
    cr_assert_eq(head.status, 302);
    fy_resphead_dispose(&head);
}

Test(resphead, accepts_missing_reason)
{
    fy_resphead_t head;
    cr_assert_eq(parse("Status: 204\r\n\r\n", &head), 1);
    cr_assert_eq(head.status, 204);
    cr_assert_eq(head.reason_len, 0);
    cr_assert_eq(head.header_count, 0);
    fy_resphead_dispose(&head);
}

Test(resphead, accepts_status_name_in_any_case)
{
    fy_resphead_t head;
    cr_assert_eq(parse("status:500 Internal Server Error\r\n\r\n", &head), 1);
    cr_assert_eq(head.status, 500);
    fy_resphead_dispose(&head);
}

Test(resphead, tolerates_bare_lf)
{
    fy_resphead_t head;
    const char *s = "Status: 200 OK\nX-A: 1\n\nbody";
    cr_assert_eq(parse(s, &head), 1);
    cr_assert_eq(head.header_count, 1);
    assert_header(&head.headers[0], "X-A", "1");
    cr_assert_eq(head.head_len, strlen(s) - 4);
    fy_resphead_dispose(&head);
}

Test(resphead, strips_spaces_and_tabs_around_values)
{
    fy_resphead_t head;
    cr_assert_eq(parse("Status: 200 OK\r\nX-A: \t spaced out \t\r\nX-Empty:\r\n\r\n", &head), 1);
    assert_header(&head.headers[0], "X-A", "spaced out");
    assert_header(&head.headers[1], "X-Empty", "");
    fy_resphead_dispose(&head);
}

Test(resphead, find_is_case_insensitive_and_returns_the_first)
{
    fy_resphead_t head;
    cr_assert_eq(fy_resphead_parse(COOKIES, sizeof COOKIES - 1, &head), 1);
    const fy_resphead_header_t *h = fy_resphead_find(&head, "set-cookie");
    cr_assert_not_null(h);
    assert_header(h, "Set-Cookie", "a=1; Path=/");
    cr_assert_null(fy_resphead_find(&head, "Set-Cooki"));
    cr_assert_null(fy_resphead_find(&head, "Location"));
    fy_resphead_dispose(&head);
}

Test(resphead, truncated_head_at_every_offset_needs_more)
{
    for (size_t cut = 0; cut < COOKIES_HEAD_LEN; cut++) {
        fy_resphead_t head;
        int rc = fy_resphead_parse(COOKIES, cut, &head);
        cr_assert_eq(rc, -EAGAIN, "cut=%zu rc=%d", cut, rc);
        cr_assert_null(head.headers);
        cr_assert_eq(head.header_count, 0);
    }
}

Test(resphead, refuses_unknown_first_line)
{
    fy_resphead_t head;
    cr_assert_eq(parse("Content-Type: text/plain\r\n\r\n", &head), -EPROTO);
}

Test(resphead, refuses_bad_first_line_before_the_head_ends)
{
    fy_resphead_t head;
    cr_assert_eq(parse("garbage\r\n", &head), -EPROTO);
}

Test(resphead, refuses_empty_first_line)
{
    fy_resphead_t head;
    cr_assert_eq(parse("\r\n\r\n", &head), -EPROTO);
}

Test(resphead, refuses_two_digit_status)
{
    fy_resphead_t head;
    cr_assert_eq(parse("Status: 20 OK\r\n\r\n", &head), -EPROTO);
}

Test(resphead, refuses_four_digit_status)
{
    fy_resphead_t head;
    cr_assert_eq(parse("Status: 2000 OK\r\n\r\n", &head), -EPROTO);
}

Test(resphead, refuses_status_below_100)
{
    fy_resphead_t head;
    cr_assert_eq(parse("Status: 099 Low\r\n\r\n", &head), -EPROTO);
}

Test(resphead, refuses_non_digit_status)
{
    fy_resphead_t head;
    cr_assert_eq(parse("HTTP/1.1 2x0 OK\r\n\r\n", &head), -EPROTO);
}

Test(resphead, refuses_http_2_status_line)
{
    fy_resphead_t head;
    cr_assert_eq(parse("HTTP/2 200 OK\r\n\r\n", &head), -EPROTO);
}

Test(resphead, refuses_header_without_colon)
{
    fy_resphead_t head;
    cr_assert_eq(parse("Status: 200 OK\r\nNoColon\r\n\r\n", &head), -EPROTO);
    cr_assert_null(head.headers);
}

Test(resphead, refuses_empty_header_name)
{
    fy_resphead_t head;
    cr_assert_eq(parse("Status: 200 OK\r\n: value\r\n\r\n", &head), -EPROTO);
}

Test(resphead, refuses_space_in_header_name)
{
    fy_resphead_t head;
    cr_assert_eq(parse("Status: 200 OK\r\nX A: 1\r\n\r\n", &head), -EPROTO);
}

Test(resphead, refuses_space_before_colon)
{
    fy_resphead_t head;
    cr_assert_eq(parse("Status: 200 OK\r\nX-A : 1\r\n\r\n", &head), -EPROTO);
}

Test(resphead, refuses_obs_fold)
{
    fy_resphead_t head;
    cr_assert_eq(parse("Status: 200 OK\r\nX-A: 1\r\n  continued\r\n\r\n", &head), -EPROTO);
}

Test(resphead, refuses_bare_cr)
{
    fy_resphead_t head;
    cr_assert_eq(parse("Status: 200 OK\r\nX-A: 1\rX-B: 2\r\n\r\n", &head), -EPROTO);
}

Test(resphead, refuses_bare_cr_before_the_line_ends)
{
    fy_resphead_t head;
    cr_assert_eq(parse("Status: 200 OK\r\nX-A: 1\rX", &head), -EPROTO);
}

Test(resphead, waits_when_cr_is_the_last_byte)
{
    fy_resphead_t head;
    cr_assert_eq(parse("Status: 200 OK\r\nX-A: 1\r", &head), -EAGAIN);
}

Test(resphead, refuses_nul_in_head)
{
    const char s[] = "Status: 200 OK\r\nX-A: a\0b\r\n\r\n";
    fy_resphead_t head;
    cr_assert_eq(fy_resphead_parse(s, sizeof s - 1, &head), -EPROTO);
}

Test(resphead, refuses_nul_in_incomplete_line)
{
    const char s[] = "Status: 200 OK\r\nX-A: a\0";
    fy_resphead_t head;
    cr_assert_eq(fy_resphead_parse(s, sizeof s - 1, &head), -EPROTO);
}

Test(resphead, refuses_control_character_in_value)
{
    fy_resphead_t head;
    cr_assert_eq(parse("Status: 200 OK\r\nX-A: a\x01"
                       "b\r\n\r\n",
                       &head),
                 -EPROTO);
}

Test(resphead, refuses_control_character_in_reason)
{
    fy_resphead_t head;
    cr_assert_eq(parse("Status: 200 O\x7fK\r\n\r\n", &head), -EPROTO);
}

/* A head of exactly <len> bytes: "Status: 200 OK\r\nX: vvv...\r\n\r\n". */
static char *head_of(size_t len)
{
    const char *start = "Status: 200 OK\r\nX: ";
    size_t start_len = strlen(start);
    char *s = malloc(len + 16);
    memcpy(s, start, start_len);
    memset(s + start_len, 'v', len - start_len - 4);
    memcpy(s + len - 4, "\r\n\r\nbody", 8);
    return s;
}

Test(resphead, accepts_head_at_the_limit)
{
    char *s = head_of(FY_RESPHEAD_MAX);
    fy_resphead_t head;
    cr_assert_eq(fy_resphead_parse(s, FY_RESPHEAD_MAX + 4, &head), 1);
    cr_assert_eq(head.head_len, FY_RESPHEAD_MAX);
    cr_assert_eq(head.headers[0].value_len, FY_RESPHEAD_MAX - 19 - 4);
    fy_resphead_dispose(&head);
    free(s);
}

Test(resphead, refuses_head_one_past_the_limit)
{
    char *s = head_of(FY_RESPHEAD_MAX + 1);
    fy_resphead_t head;
    cr_assert_eq(fy_resphead_parse(s, FY_RESPHEAD_MAX + 5, &head), -EMSGSIZE);
    cr_assert_null(head.headers);
    free(s);
}

Test(resphead, unfinished_head_waits_below_the_limit_and_fails_at_it)
{
    char *s = head_of(FY_RESPHEAD_MAX + 1);
    fy_resphead_t head;
    cr_assert_eq(fy_resphead_parse(s, FY_RESPHEAD_MAX - 1, &head), -EAGAIN);
    cr_assert_eq(fy_resphead_parse(s, FY_RESPHEAD_MAX, &head), -EMSGSIZE);
    free(s);
}

Test(resphead, many_headers_grow_the_array)
{
    size_t count = 1000;
    size_t cap = 32 + count * 8;
    char *s = malloc(cap);
    size_t len = (size_t)snprintf(s, cap, "Status: 200 OK\r\n");
    for (size_t i = 0; i < count; i++)
        len += (size_t)snprintf(s + len, cap - len, "X%zu: %zu\r\n", i % 10, i % 10);
    len += (size_t)snprintf(s + len, cap - len, "\r\n");
    fy_resphead_t head;
    cr_assert_eq(fy_resphead_parse(s, len, &head), 1);
    cr_assert_eq(head.header_count, count);
    assert_header(&head.headers[999], "X9", "9");
    fy_resphead_dispose(&head);
    free(s);
}

Test(resphead, all_zero_head_disposes_cleanly)
{
    fy_resphead_t head;
    memset(&head, 0, sizeof head);
    fy_resphead_dispose(&head);
    cr_assert_null(head.headers);
}
