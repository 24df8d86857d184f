/** Shared by the files of src/billing only: reading fields of Stripe objects safely. */
#ifndef INKLET_BILLING_INTERNAL_H
#define INKLET_BILLING_INTERNAL_H
#include <jansson.h>
#include <stdbool.h>

/** Longest Stripe id (or other short string) we accept from an object. */
#define INK_STRIPE_ID_MAX 255

/** obj[key] when it is a non-empty string of at most INK_STRIPE_ID_MAX bytes without control
 *  characters; NULL otherwise. */
const char *ink_stripe_str(json_t *obj, const char *key);
/** True when `id` is shaped like a Stripe object id (letters, digits, '_'): the only ids that may
 *  be put into a request path ("../customers/cus_x" from a hostile answer must not be). */
bool ink_stripe_id_safe(const char *id);
/** A reference to another object: its id string, or the id of the expanded object. */
const char *ink_stripe_ref(json_t *obj, const char *key);
/** obj[key] as a non-negative integer (unix seconds). */
bool ink_stripe_time(json_t *obj, const char *key, long long *out);

/** Wakes the canceller (after an account deletion committed). */
void ink_billing_canceller_kick(void);

#endif
