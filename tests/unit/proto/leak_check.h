/* A Criterion .fini hook that fails the test when LeakSanitizer finds memory the test leaked.
 * Criterion ends each test process with _exit, so LeakSanitizer's own exit-time check never
 * runs; this asks it explicitly. A no-op in builds without AddressSanitizer. */
#ifndef FY_TEST_LEAK_CHECK_H
#define FY_TEST_LEAK_CHECK_H

#include <criterion/criterion.h>

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

static inline void fy_test_leak_check(void)
{
#ifdef FY_TEST_HAVE_LSAN
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "LeakSanitizer found leaks (see stderr)");
#endif
}

#endif
