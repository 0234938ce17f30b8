/* Unit tests of request-body buffering. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "http/http_internal.h"

Test(http_body, stays_in_memory_up_to_the_threshold)
{
    fy_http_body_t b;
    fy_http_body_init(&b, 8, NULL);
    cr_assert_eq(fy_http_body_append(&b, "12345678", 8), 0);
    cr_assert(fy_http_body_in_memory(&b));
    char buf[8];
    cr_assert_eq(fy_http_body_read(&b, 4, buf, sizeof buf), 4);
    cr_assert(memcmp(buf, "5678", 4) == 0);
    fy_http_body_dispose(&b);
}

Test(http_body, spills_to_a_temp_file_past_the_threshold)
{
    fy_http_body_t b;
    fy_http_body_init(&b, 8, NULL);
    cr_assert_eq(fy_http_body_append(&b, "12345", 5), 0);
    cr_assert_eq(fy_http_body_append(&b, "6789", 4), 0);
    cr_assert(!fy_http_body_in_memory(&b));
    char buf[16];
    cr_assert_eq(fy_http_body_read(&b, 0, buf, sizeof buf), 9);
    cr_assert(memcmp(buf, "123456789", 9) == 0);
    cr_assert_eq(fy_http_body_read(&b, 9, buf, sizeof buf), 0);
    fy_http_body_reset(&b);
    cr_assert(fy_http_body_in_memory(&b));
    cr_assert_eq(b.len, 0);
    fy_http_body_dispose(&b);
}

Test(http_body, fails_cleanly_when_the_temp_dir_is_missing)
{
    fy_http_body_t b;
    fy_http_body_init(&b, 2, "/nonexistent/ferry-test");
    cr_assert_eq(fy_http_body_append(&b, "ab", 2), 0);
    cr_assert_lt(fy_http_body_append(&b, "c", 1), 0);
    fy_http_body_dispose(&b);
}

Test(http_body, percent_decode_handles_plain_and_escaped_bytes)
{
    fy_http_buf_t out = {0};
    cr_assert_eq(fy_http_percent_decode("a%41%7e", 7, &out), 0);
    cr_assert_eq(out.len, 3);
    cr_assert(memcmp(out.data, "aA~", 3) == 0);
    fy_http_buf_dispose(&out);
}
