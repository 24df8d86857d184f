/** Time helpers: RFC 3339 formatting and monotonic clocks. */
#ifndef INKLET_TIMEUTIL_H
#define INKLET_TIMEUTIL_H
#include <stdint.h>
#include <time.h>

/** "2026-01-15T10:30:00Z" into out[21]. */
void ink_time_rfc3339(time_t t, char out[21]);
/** Monotonic milliseconds. */
int64_t ink_now_mono_ms(void);
/** Monotonic microseconds. */
int64_t ink_now_mono_us(void);

#endif
