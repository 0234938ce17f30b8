/* Unit tests of the fixed-bucket histogram. */
#include <criterion/criterion.h>

#include "core/alloc.h"
#include "core/hist.h"

static const uint64_t bounds[] = {5, 10, 100};

Test(hist, counts_each_observation_in_the_first_bucket_that_holds_it)
{
    fy_hist_t h;
    fy_hist_init(&h, bounds, FY_ARRAY_SIZE(bounds));
    fy_hist_observe(&h, 0);
    fy_hist_observe(&h, 5);    /* bounds are inclusive (Prometheus "le") */
    fy_hist_observe(&h, 6);
    fy_hist_observe(&h, 100);
    fy_hist_observe(&h, 101);  /* above every bound: +Inf only */
    cr_assert_eq(h.counts[0], 2);
    cr_assert_eq(h.counts[1], 1);
    cr_assert_eq(h.counts[2], 1);
    cr_assert_eq(h.counts[3], 1);
    cr_assert_eq(h.count, 5);
    cr_assert_eq(h.sum_ms, 212);
}

Test(hist, cumulative_counts_rise_to_the_total)
{
    fy_hist_t h;
    fy_hist_init(&h, bounds, FY_ARRAY_SIZE(bounds));
    for (uint64_t ms = 0; ms < 200; ms += 7)
        fy_hist_observe(&h, ms);
    uint64_t prev = 0;
    for (size_t i = 0; i <= h.nbounds; i++) {
        uint64_t c = fy_hist_cumulative(&h, i);
        cr_assert_geq(c, prev);
        prev = c;
    }
    cr_assert_eq(prev, h.count);
    cr_assert_eq(fy_hist_cumulative(&h, 0), 1);   /* only 0 is <= 5 */
}

Test(hist, init_empties_it)
{
    fy_hist_t h;
    fy_hist_init(&h, bounds, FY_ARRAY_SIZE(bounds));
    fy_hist_observe(&h, 3);
    fy_hist_init(&h, bounds, FY_ARRAY_SIZE(bounds));
    cr_assert_eq(h.count, 0);
    cr_assert_eq(fy_hist_cumulative(&h, h.nbounds), 0);
}
