/* The growable buffer of src/http and its decimal formatting. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "http/http_internal.h"

Test(http_buf, format_u64_matches_printf_at_the_edges)
{
    const uint64_t values[] = {0, 1, 9, 10, 99, 100, 12345, 4294967295u, 4294967296u,
                               UINT64_MAX / 10, UINT64_MAX - 1, UINT64_MAX};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        char got[21], want[32];
        size_t n = fy_http_format_u64(got, values[i]);
        snprintf(want, sizeof want, "%llu", (unsigned long long)values[i]);
        cr_expect_str_eq(got, want);
        cr_expect_eq(n, strlen(want));
    }
}

Test(http_buf, append_u64_and_str_grow_the_buffer)
{
    fy_http_buf_t b = {0};
    for (int i = 0; i < 1000; i++) {
        fy_http_buf_append_str(&b, "n=");
        fy_http_buf_append_u64(&b, (uint64_t)i * 1000003u);
        fy_http_buf_append_str(&b, ";");
    }
    fy_http_buf_t want = {0};
    for (int i = 0; i < 1000; i++)
        fy_http_buf_appendf(&want, "n=%llu;", (unsigned long long)i * 1000003u);
    cr_assert_eq(b.len, want.len);
    cr_expect(memcmp(b.data, want.data, b.len) == 0);
    fy_http_buf_dispose(&b);
    fy_http_buf_dispose(&want);
}

Test(http_buf, appendf_past_the_small_buffer)
{
    fy_http_buf_t b = {0};
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    fy_http_buf_appendf(&b, "<%s>", big);
    cr_assert_eq(b.len, sizeof big + 1);
    cr_expect_eq(b.data[0], '<');
    cr_expect_eq(b.data[b.len - 1], '>');
    fy_http_buf_dispose(&b);
}

Test(http_buf, format_hex_matches_printf_at_the_edges)
{
    const uint64_t values[] = {0, 1, 9, 10, 15, 16, 255, 256, 65535, 65536, 0xdeadbeefu,
                               UINT64_MAX - 1, UINT64_MAX};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        char got[17], want[32];
        size_t n = fy_http_format_hex(got, values[i]);
        snprintf(want, sizeof want, "%llx", (unsigned long long)values[i]);
        cr_expect_str_eq(got, want);
        cr_expect_eq(n, strlen(want));
    }
}
