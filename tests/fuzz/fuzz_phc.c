/* libFuzzer driver: ink_phc_parse on PHC strings read back from the database.
 * An accepted string must be within every bound, so that hashing with it is safe. */
#include "inklet/password.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    struct ink_phc p;
    if (ink_phc_parse(s, &p)) {
        const struct ink_argon2_params *a = &p.params;
        if (strncmp(s, "$argon2id$v=19$", 15) != 0 || strlen(s) > 512 || a->m_kib < 8 ||
            a->m_kib > INK_PHC_MAX_M_KIB || a->m_kib < 8 * a->p || a->t < 1 ||
            a->t > INK_PHC_MAX_T || a->p < 1 || a->p > INK_PHC_MAX_P || p.salt_len < 8 ||
            p.salt_len > 64 || p.hash_len < 16 || p.hash_len > 64)
            __builtin_trap();
    }
    free(s);
    return 0;
}
