/* Criterion .fini helpers that fail the test when it leaked memory or fds. Criterion ignores
 * cr_assert in .fini (it prints the message and still counts a pass), so these abort instead:
 * Criterion then reports "crashed during its setup or teardown" and the test executable exits
 * non-zero, which fails `meson test`. */
#ifndef FY_TEST_LEAK_CHECK_H
#define FY_TEST_LEAK_CHECK_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#if defined(__SANITIZE_ADDRESS__)
#define FY_TEST_HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FY_TEST_HAVE_LSAN 1
#endif
#endif

#ifdef FY_TEST_HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

/* Aborts with <why> on stderr when <ok> is false. For .fini hooks. */
static inline void fy_test_fini_require(int ok, const char *why)
{
    if (!ok) {
        fprintf(stderr, "teardown check failed: %s\n", why);
        abort();
    }
}

/* Criterion ends each test process with _exit, so LeakSanitizer's exit-time check never runs;
 * this asks it explicitly. A no-op in builds without AddressSanitizer. */
static inline void fy_test_leak_check(void)
{
#ifdef FY_TEST_HAVE_LSAN
    fy_test_fini_require(__lsan_do_recoverable_leak_check() == 0,
                         "LeakSanitizer found leaked memory (report above)");
#endif
}

#endif
