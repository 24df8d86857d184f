/* libFuzzer driver: ink_idtoken_parse, then ink_idtoken_check against a fixed RSA key, on
 * hostile token text. Parsed ⇒ exactly three segments and a kid within bounds; checked OK is
 * impossible without the private key, so it traps (a forgery). */
#include "inklet/idtoken.h"

#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static EVP_PKEY *key;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!key)
        key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    char *tok = malloc(size + 1);
    memcpy(tok, data, size);
    tok[size] = '\0';
    struct ink_idtoken t;
    if (ink_idtoken_parse(tok, &t) == INK_IDT_OK) {
        const char *d1 = strchr(tok, '.');
        const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
        if (!d2 || strchr(d2 + 1, '.') || strlen(t.kid) == 0 || strlen(t.kid) > INK_IDTOKEN_KID_MAX)
            __builtin_trap();
        static const char *const iss[] = {"https://accounts.google.com"};
        struct ink_idtoken_rules rules = {iss, 1, "client", NULL, 1800000000LL};
        struct ink_identity id;
        const char *why;
        if (ink_idtoken_check(&t, key, &rules, &id, &why) == INK_IDT_OK)
            __builtin_trap();
        ink_idtoken_free(&t);
    }
    free(tok);
    return 0;
}
