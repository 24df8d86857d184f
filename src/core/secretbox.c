/* AES-256-GCM with an HKDF-derived key, over OpenSSL 3's EVP interfaces. */
#include "inklet/secretbox.h"

#include "inklet/ids.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <stdio.h>
#include <string.h>

#define VERSION 1
#define NONCE_LEN 12
#define TAG_LEN 16

bool ink_secretbox_init(struct ink_secretbox *box, const unsigned char master[32],
                        const char *purpose)
{
    memset(box, 0, sizeof *box);
    snprintf(box->purpose, sizeof box->purpose, "%s", purpose);
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    EVP_KDF_free(kdf);
    if (!ctx)
        return false;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)master, 32),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, box->purpose, strlen(box->purpose)),
        OSSL_PARAM_construct_end(),
    };
    bool ok = EVP_KDF_derive(ctx, box->key, sizeof box->key, params) == 1;
    EVP_KDF_CTX_free(ctx);
    if (!ok)
        ink_secretbox_wipe(box);
    return ok;
}

void ink_secretbox_wipe(struct ink_secretbox *box)
{
    OPENSSL_cleanse(box->key, sizeof box->key);
}

/* One GCM pass; `seal` picks the direction. in/out may not overlap. */
static bool gcm(const struct ink_secretbox *box, bool seal, const unsigned char *nonce,
                const unsigned char *in, size_t n, unsigned char *out, unsigned char *tag)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (!c)
        return false;
    int len = 0;
    bool ok = (seal ? EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, box->key, nonce)
                    : EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, box->key, nonce)) == 1;
    /* the purpose is associated data: a ciphertext of another purpose never opens here */
    ok = ok && EVP_CipherUpdate(c, NULL, &len, (const unsigned char *)box->purpose,
                                (int)strlen(box->purpose)) == 1;
    ok = ok && EVP_CipherUpdate(c, out, &len, in, (int)n) == 1;
    if (ok && !seal)
        ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) == 1;
    ok = ok && EVP_CipherFinal_ex(c, out + len, &len) == 1;
    if (ok && seal)
        ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok;
}

size_t ink_secretbox_seal(const struct ink_secretbox *box, const void *plain, size_t n,
                          unsigned char *out)
{
    if (n > INK_SECRETBOX_MAX_PLAIN)
        return 0;
    out[0] = VERSION;
    ink_random_bytes(out + 1, NONCE_LEN);
    if (!gcm(box, true, out + 1, plain, n, out + 1 + NONCE_LEN, out + 1 + NONCE_LEN + n))
        return 0;
    return n + INK_SECRETBOX_OVERHEAD;
}

bool ink_secretbox_open(const struct ink_secretbox *box, const unsigned char *sealed, size_t n,
                        char *out, size_t *out_len)
{
    if (n < INK_SECRETBOX_OVERHEAD || n - INK_SECRETBOX_OVERHEAD > INK_SECRETBOX_MAX_PLAIN ||
        sealed[0] != VERSION)
        return false;
    size_t plain = n - INK_SECRETBOX_OVERHEAD;
    unsigned char tag[TAG_LEN];
    memcpy(tag, sealed + n - TAG_LEN, TAG_LEN);
    if (!gcm(box, false, sealed + 1, sealed + 1 + NONCE_LEN, plain, (unsigned char *)out, tag)) {
        OPENSSL_cleanse(out, plain);
        return false;
    }
    out[plain] = '\0';
    *out_len = plain;
    return true;
}
