/** A Prometheus-style histogram of durations: fixed upper bounds in seconds, lock-free counts.
 *  Observed by any thread; rendered by metrics.c (cumulative buckets, _sum, _count). */
#ifndef INKLET_HISTOGRAM_H
#define INKLET_HISTOGRAM_H
#include <stdatomic.h>
#include <stddef.h>

#define INK_HIST_MAX_BUCKETS 16

struct ink_histogram {
    const double *bounds; /* ascending upper bounds in seconds (le="..."); +Inf is implied */
    size_t n;             /* number of bounds, at most INK_HIST_MAX_BUCKETS */
    atomic_ullong counts[INK_HIST_MAX_BUCKETS + 1]; /* per bucket (not cumulative); [n] is +Inf */
    atomic_ullong sum_us;                           /* sum of observations in microseconds */
};

/** A histogram over a static array of bounds. */
#define INK_HISTOGRAM(bounds_array)                                                                \
    {                                                                                              \
        .bounds = (bounds_array), .n = sizeof(bounds_array) / sizeof *(bounds_array)               \
    }

/** Counts one observation (negative values count as 0). */
void ink_histogram_observe(struct ink_histogram *h, double seconds);

/** Typical bounds: HTTP requests and upstream calls (1 ms .. 10 s). */
extern const double INK_HIST_REQUEST_BOUNDS[13];

#endif
