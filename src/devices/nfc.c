#include "inklet/nfc.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

enum ink_status ink_nfc_parse(const char *payload, char hw_id[INK_UUID_STRLEN + 1],
                              char sig[INK_NFC_SIG_LEN + 1])
{
    static const char prefix[] = "inklet:1:";
    size_t pl = sizeof prefix - 1;
    if (!payload || strncmp(payload, prefix, pl) != 0)
        return INK_INVALID;
    const char *hw = payload + pl;
    /* hwId is exactly a UUID and is followed by the last separator */
    if (strlen(hw) != INK_UUID_STRLEN + 1 + INK_NFC_SIG_LEN || hw[INK_UUID_STRLEN] != ':')
        return INK_INVALID;
    memcpy(hw_id, hw, INK_UUID_STRLEN);
    hw_id[INK_UUID_STRLEN] = '\0';
    if (!ink_uuid_valid(hw_id))
        return INK_INVALID;
    const char *s = hw + INK_UUID_STRLEN + 1;
    for (int i = 0; i < INK_NFC_SIG_LEN; i++) {
        if (!isxdigit((unsigned char)s[i]))
            return INK_INVALID;
        sig[i] = (char)tolower((unsigned char)s[i]);
    }
    sig[INK_NFC_SIG_LEN] = '\0';
    return INK_OK;
}

void ink_nfc_sign(const unsigned char key[32], const char *hw_id, char sig[INK_NFC_SIG_LEN + 1])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), key, 32, (const unsigned char *)hw_id, strlen(hw_id), mac, &len);
    ink_hex_encode(mac, INK_NFC_SIG_LEN / 2, sig);
}

bool ink_nfc_verify(const unsigned char key[32], const char *hw_id, const char *sig)
{
    char want[INK_NFC_SIG_LEN + 1];
    ink_nfc_sign(key, hw_id, want);
    return strlen(sig) == INK_NFC_SIG_LEN && CRYPTO_memcmp(want, sig, INK_NFC_SIG_LEN) == 0;
}
