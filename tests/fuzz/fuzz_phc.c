/* libFuzzer driver: ink_phc_parse on PHC strings read back from the database.
 * An accepted string must be within every bound, so that hashing with it is safe, and its salt
 * and hash must be the bytes OpenSSL's base64 reads there (no other spelling of them). */
#include "inklet/password.h"

#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* text[0..n) is exactly bytes[0..len) in standard base64 without its padding */
static int same_base64(const char *text, size_t n, const uint8_t *bytes, size_t len)
{
    unsigned char enc[4 * ((64 + 2) / 3) + 1];
    size_t m = (size_t)EVP_EncodeBlock(enc, bytes, (int)len);
    while (m && enc[m - 1] == '=')
        m--;
    return m == n && memcmp(enc, text, n) == 0;
}

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
        const char *salt = strchr(s + 15, '$') + 1, *hash = strchr(salt, '$') + 1;
        if (!same_base64(salt, (size_t)(hash - 1 - salt), p.salt, p.salt_len) ||
            !same_base64(hash, strlen(hash), p.hash, p.hash_len))
            __builtin_trap();
    }
    free(s);
    return 0;
}
