/** Input rules for account fields (contract §2, "Validation"). */
#ifndef INKLET_VALIDATE_H
#define INKLET_VALIDATE_H
#include <stdbool.h>
#include <stddef.h>

#define INK_EMAIL_MAX 254
#define INK_USERNAME_MIN 3
#define INK_USERNAME_MAX 32

/** Trims surrounding white space and lower-cases into out[INK_EMAIL_MAX+1]; false unless the
 *  result is ≤254 bytes with exactly one '@', non-empty local and domain parts, and no spaces or
 *  control characters. */
bool ink_email_normalize(const char *in, char out[INK_EMAIL_MAX + 1]);
/** 3–32 characters of [A-Za-z0-9_.-]. */
bool ink_username_valid(const char *s);

#endif
