/* libFuzzer driver: the NFC payload a user pastes or a phone reads (ink_nfc_parse), and the
 * signature check. Accepted ⇒ inklet:1:{hwId}:{sig} with a canonical UUID and 16 hex digits,
 * and ink_nfc_verify agrees with HMAC-SHA256 computed independently (OpenSSL HMAC()). */
#include "inklet/ids.h"
#include "inklet/nfc.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char KEY[32] = {
    0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
    0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1024)
        return 0;
    char payload[1025];
    memcpy(payload, data, size);
    payload[size] = '\0';
    char hw[INK_UUID_STRLEN + 1], sig[INK_NFC_SIG_LEN + 1];
    if (ink_nfc_parse(payload, hw, sig) != INK_OK)
        return 0;
    if (!ink_uuid_valid(hw) || strlen(sig) != INK_NFC_SIG_LEN)
        abort();
    for (size_t i = 0; i < INK_NFC_SIG_LEN; i++)
        if (!isxdigit((unsigned char)sig[i]))
            abort();
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    HMAC(EVP_sha256(), KEY, sizeof KEY, (const unsigned char *)hw, strlen(hw), mac, &len);
    char expect[17];
    for (int i = 0; i < 8; i++)
        snprintf(expect + 2 * i, 3, "%02x", mac[i]);
    char lower[INK_NFC_SIG_LEN + 1];
    for (size_t i = 0; i <= INK_NFC_SIG_LEN; i++)
        lower[i] = (char)tolower((unsigned char)sig[i]);
    if (ink_nfc_verify(KEY, hw, sig) != (strcmp(lower, expect) == 0))
        abort();
    return 0;
}
