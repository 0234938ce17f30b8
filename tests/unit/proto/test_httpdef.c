/* Unit tests of the shared HTTP definitions (src/proto/httpdef.c): status reasons and tchar. */
#include <criterion/criterion.h>
#include <string.h>

#include "proto/httpdef.h"

Test(httpdef, names_the_reason_of_common_codes)
{
    cr_assert_str_eq(fy_httpdef_status_reason(200), "OK");
    cr_assert_str_eq(fy_httpdef_status_reason(304), "Not Modified");
    cr_assert_str_eq(fy_httpdef_status_reason(404), "Not Found");
    cr_assert_str_eq(fy_httpdef_status_reason(413), "Content Too Large");
    cr_assert_str_eq(fy_httpdef_status_reason(417), "Expectation Failed");
    cr_assert_str_eq(fy_httpdef_status_reason(502), "Bad Gateway");
    cr_assert_str_eq(fy_httpdef_status_reason(505), "HTTP Version Not Supported");
}

Test(httpdef, says_unknown_for_codes_without_a_reason)
{
    cr_assert_str_eq(fy_httpdef_status_reason(299), "Unknown");
    cr_assert_str_eq(fy_httpdef_status_reason(599), "Unknown");
    cr_assert_str_eq(fy_httpdef_status_reason(999), "Unknown");
    cr_assert_str_eq(fy_httpdef_status_reason(0), "Unknown");
    cr_assert_str_eq(fy_httpdef_status_reason(-200), "Unknown");
}

/* Each listed code maps to its own entry, in rising order, and each reason is a non-empty
 * phrase a status line can carry (no CR, LF or other control character). */
Test(httpdef, status_list_is_sorted_and_each_reason_is_a_clean_phrase)
{
#define ENTRY(code, reason) {code, reason},
    static const struct {
        int code;
        const char *reason;
    } list[] = {FY_HTTPDEF_STATUS_LIST(ENTRY)};
#undef ENTRY
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) {
        cr_assert(list[i].code >= 100 && list[i].code <= 599, "%d", list[i].code);
        if (i > 0)
            cr_assert_gt(list[i].code, list[i - 1].code);
        cr_assert_str_eq(fy_httpdef_status_reason(list[i].code), list[i].reason);
        cr_assert_gt(strlen(list[i].reason), 0);
        for (const char *p = list[i].reason; *p; p++)
            cr_assert((unsigned char)*p >= 0x20 && *p != 0x7f, "code %d", list[i].code);
    }
}

/* RFC 9110 §5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" /
 * "_" / "`" / "|" / "~" / DIGIT / ALPHA; checked against every byte value. */
Test(httpdef, tchar_is_exactly_the_rfc_9110_set)
{
    for (int c = 0; c < 256; c++) {
        bool want = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
        cr_assert_eq(fy_httpdef_is_tchar((unsigned char)c), want, "byte 0x%02x", c);
    }
}

Test(httpdef, tchar_symbols_are_the_non_alphanumeric_tchars)
{
    int symbols = 0;
    for (int c = 0x21; c < 0x7f; c++) {
        bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!alnum && fy_httpdef_is_tchar((unsigned char)c)) {
            cr_assert_not_null(strchr(FY_HTTPDEF_TCHAR_SYMBOLS, c), "'%c'", c);
            symbols++;
        }
    }
    cr_assert_eq(symbols, (int)strlen(FY_HTTPDEF_TCHAR_SYMBOLS));
}

Test(httpdef, separators_and_controls_are_not_tchar)
{
    static const char not_tchar[] = " \t\"(),/:;<=>?@[\\]{}\x7f";
    for (const char *p = not_tchar; *p; p++)
        cr_assert(!fy_httpdef_is_tchar((unsigned char)*p), "0x%02x", (unsigned char)*p);
    cr_assert(!fy_httpdef_is_tchar(0));
    cr_assert(!fy_httpdef_is_tchar(0x80));
    cr_assert(!fy_httpdef_is_tchar(0xff));
}
