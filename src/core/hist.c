/* Fixed-bucket histograms: see hist.h. */
#include "core/hist.h"

#include <string.h>

#include "core/alloc.h"

void fy_hist_init(fy_hist_t *h, const uint64_t *bounds_ms, size_t n)
{
    FY_ASSERT(n <= FY_HIST_MAX_BUCKETS);
    for (size_t i = 1; i < n; i++)
        FY_ASSERT(bounds_ms[i - 1] < bounds_ms[i]);
    memset(h, 0, sizeof *h);
    h->bounds_ms = bounds_ms;
    h->nbounds = n;
}

uint64_t fy_hist_cumulative(const fy_hist_t *h, size_t i)
{
    uint64_t total = 0;
    for (size_t k = 0; k <= i && k <= h->nbounds; k++)
        total += h->counts[k];
    return total;
}
