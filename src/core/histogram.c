#include "inklet/histogram.h"

const double INK_HIST_REQUEST_BOUNDS[13] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                            0.25,  0.5,    1,     2.5,  5,     10};

void ink_histogram_observe(struct ink_histogram *h, double seconds)
{
    if (!(seconds > 0)) /* negative or NaN */
        seconds = 0;
    size_t b = 0;
    while (b < h->n && seconds > h->bounds[b])
        b++;
    atomic_fetch_add_explicit(&h->counts[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, (unsigned long long)(seconds * 1e6 + 0.5),
                              memory_order_relaxed);
}
