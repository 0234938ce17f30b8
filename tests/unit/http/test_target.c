/* Unit tests of request-target classification and Host validation (RFC 9112 §3.2, RFC 9110
 * §7.2), and of the open-file limit raise. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <sys/resource.h>

#include "http/http_internal.h"

static int parse(const char *t, fy_http_target_t *out)
{
    return fy_http_target_parse(t, strlen(t), out);
}

static bool host_ok(const char *h) { return fy_http_host_valid(h, strlen(h)); }

Test(http_target, origin_form_is_the_whole_target)
{
    fy_http_target_t t;
    cr_assert_eq(parse("/a/b?c", &t), 0);
    cr_assert_eq(t.form, FY_HTTP_TARGET_ORIGIN);
    cr_assert_eq(t.path_off, 0);
    cr_assert_eq(t.path_len, 6);
}

Test(http_target, absolute_form_splits_authority_and_path)
{
    fy_http_target_t t;
    const char *s = "http://Ex.org:81/p?q";
    cr_assert_eq(parse(s, &t), 0);
    cr_assert_eq(t.form, FY_HTTP_TARGET_ABSOLUTE);
    cr_assert_eq(t.authority_len, 9);
    cr_assert(memcmp(s + t.authority_off, "Ex.org:81", 9) == 0);
    cr_assert(memcmp(s + t.path_off, "/p?q", t.path_len) == 0);
}

Test(http_target, absolute_form_may_have_no_path)
{
    fy_http_target_t t;
    cr_assert_eq(parse("HTTPS://ex.org", &t), 0);
    cr_assert_eq(t.form, FY_HTTP_TARGET_ABSOLUTE);
    cr_assert_eq(t.path_len, 0);
    cr_assert_eq(parse("http://ex.org?q", &t), 0);
    cr_assert_eq(t.path_len, 2);
}

Test(http_target, asterisk_form_is_only_a_lone_star)
{
    fy_http_target_t t;
    cr_assert_eq(parse("*", &t), 0);
    cr_assert_eq(t.form, FY_HTTP_TARGET_ASTERISK);
    cr_assert_eq(parse("*x", &t), -EPROTO);
}

Test(http_target, refuses_other_schemes)
{
    fy_http_target_t t;
    cr_assert_eq(parse("ftp://ex.org/", &t), -EPROTO);
    cr_assert_eq(parse("httpx://ex.org/", &t), -EPROTO);
}

Test(http_target, refuses_userinfo_and_an_empty_authority)
{
    fy_http_target_t t;
    cr_assert_eq(parse("http://u:p@ex.org/", &t), -EPROTO);
    cr_assert_eq(parse("http:///p", &t), -EPROTO);
}

Test(http_target, refuses_authority_form_and_garbage)
{
    fy_http_target_t t;
    cr_assert_eq(parse("ex.org:443", &t), -EPROTO);
    cr_assert_eq(parse("http:/ex.org", &t), -EPROTO);
    cr_assert_eq(parse("1http://ex.org/", &t), -EPROTO);
    cr_assert_eq(fy_http_target_parse("", 0, &t), -EPROTO);
}

static bool climbs(const char *path) { return fy_http_path_climbs_above_root(path, strlen(path)); }

Test(http_path, dot_segments_inside_the_root_are_fine)
{
    cr_assert(!climbs("/"));
    cr_assert(!climbs(""));
    cr_assert(!climbs("/a/../b"));
    cr_assert(!climbs("/a/b/../../c"));
    cr_assert(!climbs("/a/.."));
    cr_assert(!climbs("/./a/./../b"));
    cr_assert(!climbs("/a//../b"));
    cr_assert(!climbs("/...x/..y/...."));
    cr_assert(!climbs("/a%2Fb/../.."));
    cr_assert(!climbs("/%25/.."));
}

Test(http_path, a_dot_dot_past_the_root_climbs)
{
    cr_assert(climbs("/.."));
    cr_assert(climbs("/../a"));
    cr_assert(climbs("/a/../../b"));
    cr_assert(climbs("/./../a"));
    cr_assert(climbs("/.//.."));
}

Test(http_path, percent_encoded_dots_and_slashes_count)
{
    cr_assert(climbs("/%2e%2e/etc/passwd"));
    cr_assert(climbs("/%2E./a"));
    cr_assert(climbs("/.%2e"));
    cr_assert(climbs("/a%2f..%2f..%2fb"));
    cr_assert(climbs("/a%2F%2E%2E%2F%2E%2E"));
}

Test(http_host, accepts_names_addresses_ports_and_empty)
{
    cr_assert(host_ok(""));
    cr_assert(host_ok("a"));
    cr_assert(host_ok("a.b-c_d~e:8080"));
    cr_assert(host_ok("127.0.0.1:1"));
    cr_assert(host_ok("[::1]"));
    cr_assert(host_ok("[::ffff:1.2.3.4]:80"));
    cr_assert(host_ok("a%2Db"));
    cr_assert(host_ok("a:"));   /* port = *DIGIT */
}

Test(http_host, refuses_spaces_userinfo_and_delimiters)
{
    cr_assert(!host_ok("a b"));
    cr_assert(!host_ok("u@a"));
    cr_assert(!host_ok("a/b"));
    cr_assert(!host_ok("a?b"));
    cr_assert(!host_ok("a#b"));
    cr_assert(!host_ok("a\"b"));
    cr_assert(!host_ok("a\xc3\xa9"));
}

Test(http_host, refuses_bad_ports_and_ip_literals)
{
    cr_assert(!host_ok("a:80x"));
    cr_assert(!host_ok("a:123456"));
    cr_assert(!host_ok("a:1:2"));
    cr_assert(!host_ok("[::1"));
    cr_assert(!host_ok("[]"));
    cr_assert(!host_ok("[::1]x"));
    cr_assert(!host_ok("[::1]:x"));
    cr_assert(!host_ok("a%2"));
    cr_assert(!host_ok("a%zz"));
}

Test(http_nofile, raises_the_soft_limit_to_the_hard_limit)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max <= 64)
        cr_skip_test("hard limit too low to test");
    rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > FY_HTTP_NOFILE_CAP
                      ? FY_HTTP_NOFILE_CAP : rl.rlim_max;
    rl.rlim_cur = 64;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    cr_assert_eq(fy_http_raise_nofile_limit(), (int)want);
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    cr_assert_eq(rl.rlim_cur, want);
    /* a second call finds nothing to do */
    cr_assert_eq(fy_http_raise_nofile_limit(), (int)want);
}
