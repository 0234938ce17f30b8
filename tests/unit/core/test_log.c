#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

static char *capture(void (*emit)(void))
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    int old = fy_log_get_fd();
    fy_log_set_fd(fds[1]);
    emit();
    fy_log_set_fd(old);
    close(fds[1]);
    static char buf[9000];
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    close(fds[0]);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static void emit_warn(void) { fy_log(FY_LOG_WARN, "pool", "app=%s pid=%d: replacing", "/srv", 42); }
static void emit_debug(void) { fy_log(FY_LOG_DEBUG, "pool", "hidden"); }
static void emit_sigsafe(void) { fy_log_sigsafe(FY_LOG_ERROR, "worker", "owner gone"); }
static void emit_long(void)
{
    static char big[20000];
    memset(big, 'x', sizeof big - 1);
    fy_log(FY_LOG_ERROR, "m", "%s", big);
}

Test(log, writes_level_module_and_text_on_one_line)
{
    char *out = capture(emit_warn);
    cr_assert(strstr(out, "[warn] pool: app=/srv pid=42: replacing\n") != NULL, "%s", out);
    cr_assert_eq(out[4], '-');
    cr_assert_eq(strchr(out, '\n'), out + strlen(out) - 1);
}

Test(log, skips_levels_above_the_current_one)
{
    fy_log_set_level(FY_LOG_INFO);
    cr_assert_str_eq(capture(emit_debug), "");
}

Test(log, sigsafe_line)
{
    cr_assert_str_eq(capture(emit_sigsafe), "[error] worker: owner gone\n");
}

Test(log, truncates_long_lines_and_still_ends_with_newline)
{
    char *out = capture(emit_long);
    size_t len = strlen(out);
    cr_assert(len < 8192 && len > 8000, "len=%zu", len);
    cr_assert_eq(out[len - 1], '\n');
}

Test(log, parses_level_names)
{
    fy_log_level_t l;
    cr_assert_eq(fy_log_parse_level("Notice", &l), 0);
    cr_assert_eq(l, FY_LOG_NOTICE);
    cr_assert_eq(fy_log_parse_level("loud", &l), -EINVAL);
}
