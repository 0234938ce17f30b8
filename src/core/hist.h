/* A fixed-bucket histogram of millisecond durations, for the Prometheus endpoint
 * (docs/operations.md, "Monitoring"). Observing is a short scan of at most FY_HIST_MAX_BUCKETS
 * integer bounds and three additions: no allocation, no syscall, so it runs on the hot path.
 * Buckets are kept per bucket (not cumulative); the renderer adds them up. An all-zero struct
 * with <bounds_ms> set by fy_hist_init is empty. Not thread-safe: one owner thread. */
#ifndef FY_CORE_HIST_H
#define FY_CORE_HIST_H

#include <stddef.h>
#include <stdint.h>

#define FY_HIST_MAX_BUCKETS 16

typedef struct fy_hist {
    const uint64_t *bounds_ms;   /* rising upper bounds (inclusive); borrowed, static */
    size_t nbounds;              /* at most FY_HIST_MAX_BUCKETS */
    uint64_t counts[FY_HIST_MAX_BUCKETS + 1];   /* the last one: above every bound (+Inf) */
    uint64_t sum_ms;
    uint64_t count;
} fy_hist_t;

/* Empties <h> and gives it the <n> bounds at <bounds_ms> (static; rising; n ≤ FY_HIST_MAX_BUCKETS,
 * asserted). */
void fy_hist_init(fy_hist_t *h, const uint64_t *bounds_ms, size_t n);

/* Counts one observation of <ms> milliseconds. */
static inline void fy_hist_observe(fy_hist_t *h, uint64_t ms)
{
    size_t i = 0;
    while (i < h->nbounds && ms > h->bounds_ms[i])
        i++;
    h->counts[i]++;
    h->sum_ms += ms;
    h->count++;
}

/* The cumulative count of observations ≤ bounds_ms[<i>]; <i> == nbounds gives the total. */
uint64_t fy_hist_cumulative(const fy_hist_t *h, size_t i);

#endif
