/** In-memory token buckets keyed by client IP (or user id), one table per rate class.
 *  A bucket holds `requests` tokens and refills `requests` per `seconds`. */
#ifndef INKLET_RATELIMIT_H
#define INKLET_RATELIMIT_H
#include "inklet/config.h"
#include "inklet/http.h"

void ink_ratelimit_init(const struct ink_rate rates[INK_RATE_CLASS_COUNT]);
/** Takes one token for `key`. Returns 0 when allowed, else the whole seconds (≥1) until a token
 *  is available. INK_RATE_NONE always allows. */
unsigned ink_ratelimit_take(enum ink_rate_class cls, const char *key);
/** Forgets every bucket (tests). */
void ink_ratelimit_reset(void);

#endif
