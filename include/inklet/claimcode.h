/** Claim codes: 6 characters from a 31-letter alphabet without look-alikes (0 O 1 I L). */
#ifndef INKLET_CLAIMCODE_H
#define INKLET_CLAIMCODE_H
#include <stdbool.h>

#define INK_CLAIM_CODE_LEN 6
#define INK_CLAIM_ALPHABET "ABCDEFGHJKMNPQRSTUVWXYZ23456789"

/** A new uniformly random code from the CSPRNG into out[7]. */
void ink_claim_code_new(char out[INK_CLAIM_CODE_LEN + 1]);
/** Upper-cases `in` into out[7]; false unless it is exactly 6 characters of the alphabet. */
bool ink_claim_code_normalize(const char *in, char out[INK_CLAIM_CODE_LEN + 1]);

#endif
