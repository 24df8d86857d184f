#include "inklet/claimcode.h"

#include "inklet/ids.h"

#include <string.h>

void ink_claim_code_new(char out[INK_CLAIM_CODE_LEN + 1])
{
    static const char alphabet[] = INK_CLAIM_ALPHABET;
    const unsigned n = sizeof alphabet - 1; /* 31 */
    int i = 0;
    while (i < INK_CLAIM_CODE_LEN) {
        unsigned char b[16];
        ink_random_bytes(b, sizeof b);
        for (size_t k = 0; k < sizeof b && i < INK_CLAIM_CODE_LEN; k++) {
            /* rejection sampling keeps every letter equally likely: 248 = 8 * 31 */
            if (b[k] >= 248)
                continue;
            out[i++] = alphabet[b[k] % n];
        }
    }
    out[INK_CLAIM_CODE_LEN] = '\0';
}

bool ink_claim_code_normalize(const char *in, char out[INK_CLAIM_CODE_LEN + 1])
{
    if (!in || strlen(in) != INK_CLAIM_CODE_LEN)
        return false;
    for (int i = 0; i < INK_CLAIM_CODE_LEN; i++) {
        char c = in[i];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (!strchr(INK_CLAIM_ALPHABET, c) || c == '\0')
            return false;
        out[i] = c;
    }
    out[INK_CLAIM_CODE_LEN] = '\0';
    return true;
}
