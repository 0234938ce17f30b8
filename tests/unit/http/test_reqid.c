/* Unit tests of request ids: the check of a proxy's id and ferry's own. */
#include <criterion/criterion.h>
#include <string.h>

#include "http/http_internal.h"

Test(http_reqid, accepts_the_usual_id_shapes)
{
    static const char *const good[] = {"a", "0123456789abcdef0123456789abcdef",
                                       "4f2a-11ee-b962-0242ac120002", "lb:1.2/x+y=z@q_"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        cr_assert(fy_http_request_id_valid(good[i], strlen(good[i])), "%s", good[i]);
    char max[FY_HTTP_REQUEST_ID_MAX];
    memset(max, 'x', sizeof max);
    cr_assert(fy_http_request_id_valid(max, sizeof max));
}

Test(http_reqid, refuses_empty_long_and_unsafe_ids)
{
    char long_id[FY_HTTP_REQUEST_ID_MAX + 1];
    memset(long_id, 'x', sizeof long_id);
    cr_assert_not(fy_http_request_id_valid(long_id, sizeof long_id));
    cr_assert_not(fy_http_request_id_valid("", 0));
    static const char *const bad[] = {"a b", "a\"b", "a\\b", "a\tb", "a,b", "a;b", "é"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_not(fy_http_request_id_valid(bad[i], strlen(bad[i])), "%s", bad[i]);
    cr_assert_not(fy_http_request_id_valid("a\0b", 3));
}

Test(http_reqid, generates_32_hex_digits_that_differ)
{
    uint64_t state = 42;
    char a[33], b[33];
    fy_http_request_id_generate(&state, a);
    fy_http_request_id_generate(&state, b);
    cr_assert_eq(strlen(a), 32);
    cr_assert_eq(strspn(a, "0123456789abcdef"), 32);
    cr_assert_str_neq(a, b);
    cr_assert(fy_http_request_id_valid(a, 32));
}
