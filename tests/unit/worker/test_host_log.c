/* The language hosts' log lines (worker/host.h): key=value fields, quoted and escaped when they
 * must be, cut to the buffer; the detail indented under its line, in one write when it fits. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "worker/host.h"

static char *field(size_t cap, const char *key, const char *value)
{
    char *buf = calloc(1, cap);
    fy_worker_host_log_field(buf, cap, key, value);
    return buf;
}

Test(host_log, plain_value_is_not_quoted)
{
    char *s = field(64, "app", "/srv/shop");
    cr_assert_str_eq(s, " app=/srv/shop");
    free(s);
}

Test(host_log, empty_and_spaced_values_are_quoted)
{
    char *s = field(64, "k", "");
    cr_assert_str_eq(s, " k=\"\"");
    free(s);
    s = field(64, "k", "a b=c");
    cr_assert_str_eq(s, " k=\"a b=c\"");
    free(s);
}

Test(host_log, quotes_backslashes_and_control_characters_are_escaped)
{
    char *s = field(128, "k", "say \"hi\"\\\n\r\t\x01\x7f");
    cr_assert_str_eq(s, " k=\"say \\\"hi\\\"\\\\\\n\\r\\t\\x01\\x7f\"");
    free(s);
}

Test(host_log, fields_append_and_are_cut_to_the_buffer)
{
    char buf[16] = "";
    fy_worker_host_log_field(buf, sizeof buf, "a", "1");
    fy_worker_host_log_field(buf, sizeof buf, "b", "2");
    cr_assert_str_eq(buf, " a=1 b=2");
    fy_worker_host_log_field(buf, sizeof buf, "long", "0123456789");
    cr_assert_eq(strlen(buf), sizeof buf - 1);
    cr_assert_str_eq(buf, " a=1 b=2 long=0");
}

/* What the log wrote while <fn> ran, NUL-terminated. */
static char *captured(void (*fn)(void))
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    int saved = fy_log_get_fd();
    fy_log_set_fd(p[1]);
    fn();
    fy_log_set_fd(saved);
    close(p[1]);
    static char out[65536];
    size_t len = 0;
    ssize_t n;
    while ((n = read(p[0], out + len, sizeof out - 1 - len)) > 0)
        len += (size_t)n;
    close(p[0]);
    out[len] = '\0';
    return out;
}

static void log_with_detail(void)
{
    fy_worker_host_log(FY_LOG_ERROR, "wsgi", " app=x", "it broke",
                       "Traceback:\n  line 1\nValueError\n\n");
}

Test(host_log, detail_is_indented_under_its_line)
{
    char *out = captured(log_with_detail);
    char want[128];
    snprintf(want, sizeof want, "[error] wsgi: pid=%d app=x: it broke\n"
             "    Traceback:\n      line 1\n    ValueError\n", (int)getpid());
    cr_assert(strstr(out, want) != NULL, "got: %s", out);
    cr_assert_eq(out[strlen(out) - 1], '\n');
    cr_assert(strstr(out, "ValueError\n\n") == NULL, "trailing blank lines are dropped");
}

static void log_without_detail(void)
{
    fy_worker_host_log(FY_LOG_INFO, "rack", "", "ready", NULL);
    fy_worker_host_log(FY_LOG_DEBUG, "rack", "", "not at info", NULL);
}

Test(host_log, no_detail_and_levels_below_the_threshold)
{
    fy_log_set_level(FY_LOG_INFO);
    char *out = captured(log_without_detail);
    char want[64];
    snprintf(want, sizeof want, "[info] rack: pid=%d: ready\n", (int)getpid());
    cr_assert(strstr(out, want) != NULL, "got: %s", out);
    cr_assert(strstr(out, "not at info") == NULL);
}

static void log_long_detail(void)
{
    static char detail[20000];
    memset(detail, 'x', sizeof detail - 1);
    detail[sizeof detail - 1] = '\0';
    fy_worker_host_log(FY_LOG_ERROR, "rack", "", "long", detail);
}

Test(host_log, a_detail_too_long_for_one_line_follows_it_whole)
{
    char *out = captured(log_long_detail);
    cr_assert(strstr(out, ": long\n    xxxx") != NULL);
    const char *x = strstr(out, "    x");
    cr_assert_eq(strspn(x + 4, "x"), 19999);
}
